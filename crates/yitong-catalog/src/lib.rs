//! The catalog service of one city: what its hospitals may charge to insurance and how, the
//! policies it applies to the persons it insures, and its designated institutions.
//!
//! The catalog (`item`, `catalog`) is a history of published changes per code, read at a
//! version and a date; policies (`policy`, `policies`) are effective-dated versions;
//! institutions are a registry. The node holds its catalog and policies in memory, checked
//! against their version heads on every read (`cache`). A node answers for its own city and asks the owning city's
//! node for another city's policies and institutions (`routing`).

mod cache;
mod catalog;
mod diseases;
mod error;
mod institutions;
mod item;
mod policies;
mod policy;
mod ratio;
mod requests;
mod routing;
mod service;

pub use catalog::seed_items;
pub use diseases::seed_diseases;
pub use error::{CatalogError, Refusal};
pub use institutions::{SeedInstitution, seed_institutions};
pub use item::{Grade, Item, ItemCode, ItemKind, ItemParts};
pub use policies::seed_policies;
pub use policy::{HospitalLevel, InsuranceType, PersonType, PolicyKey, PolicyTerms, PolicyVersion};
pub use ratio::Ratio;
pub use requests::{
    CHANGES_PER_PAGE_MAX, CHANGES_PER_PUBLISH_MAX, CODES_PER_LOOKUP_MAX, INSTITUTIONS_PER_PAGE_MAX,
};
pub use routing::PeerEndpointError;
pub use service::CatalogNode;

/// A protobuf timestamp of milliseconds since the Unix epoch.
pub(crate) use yitong_rpc::timestamp_of_ms as timestamp;
