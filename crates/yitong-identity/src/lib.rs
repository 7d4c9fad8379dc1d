//! The identity service of one city: the persons it insures, their cards and e-vouchers.
//!
//! A node answers for its own persons from its store and for any other city's by asking that
//! city's node ([`routing`]), so an HIS only ever talks to the node of its own city.

mod error;
pub mod evoucher;
mod person;
pub mod pii;
mod repo;
mod routing;
mod service;

pub use error::IdentityError;
pub use evoucher::{VoucherKeys, VoucherSigner};
pub use person::{CardStatus, Enrolment, InsuranceStatus, Person};
pub use pii::PiiKeys;
pub use repo::{SeedPerson, seed_persons};
pub use service::{IdentityNode, IdentityStartError};
