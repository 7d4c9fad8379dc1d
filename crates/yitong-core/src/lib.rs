//! Domain types shared by every Yitong service, parsed once at the edge and trusted after.
//!
//! Each type has private fields and a `parse` constructor that names the field it refuses, so a
//! handler converts a wire request into domain values and returns INVALID_ARGUMENT with the
//! field path in one step (`yitong_rpc::invalid_argument`). Nothing here knows the transport.

mod card;
mod citizen_id;
mod city;
mod date;
mod ids;
mod invalid;
mod money;
mod network;
mod pool;
mod report;
mod service;

pub use card::CardNumber;
pub use citizen_id::CitizenId;
pub use city::CityCode;
pub use date::{Date, china, date_of_ms, parse_date, today};
pub use ids::{InstitutionCode, MessageId, PersonNo};
pub use invalid::Invalid;
pub use money::Amount;
pub use network::{ClearingHouse, Network, NetworkError, Pool, is_ephemeral};
pub use pool::PoolCode;
pub use report::cause_chain;
pub use service::{Owner, Service};
