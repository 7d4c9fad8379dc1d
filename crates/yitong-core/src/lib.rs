//! Domain types shared by every Yitong service, parsed once at the edge and trusted after.
//!
//! Each type has private fields and a `parse` constructor that names the field it refuses, so a
//! handler converts a wire request into domain values and returns INVALID_ARGUMENT with the
//! field path in one step.

mod caller;
mod card;
mod citizen_id;
mod city;
mod date;
mod ids;
mod invalid;
mod money;
mod network;
mod peer;
mod report;
mod service;

pub use caller::{BadCaller, Caller, Denied, Role};
pub use card::CardNumber;
pub use citizen_id::CitizenId;
pub use city::CityCode;
pub use date::{Date, china, date_of_ms, parse_date, timestamp_of_ms, today};
pub use ids::{InstitutionCode, MessageId, PersonNo};
pub use invalid::Invalid;
pub use money::Amount;
pub use network::{City, ClearingHouse, Network, NetworkError};
pub use peer::PeerFault;
pub use report::{
    Authorized, CallLimits, PeerAccess, PeerChannel, bearer, cause_chain, peer_channel,
};
pub use service::{Owner, Service};
