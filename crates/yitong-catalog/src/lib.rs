//! The catalog service of one city: what its hospitals may charge to insurance and how, the
//! policies it applies to the persons it insures, and its designated institutions.
//!
//! Built so far: the store and the institutions registry loaded from seeds. The RPCs answer
//! UNIMPLEMENTED until the catalog issue builds them.

mod institutions;

pub use institutions::{SeedInstitution, seed_institutions};

use yitong_core::CityCode;
use yitong_proto::catalog::v1 as pb;
use yitong_store::Store;

/// The catalog service of one city.
#[derive(Debug, Clone)]
pub struct CatalogNode {
    city: CityCode,
    store: Store,
}

impl CatalogNode {
    pub fn new(city: CityCode, store: Store) -> Self {
        CatalogNode { city, store }
    }

    pub fn city(&self) -> CityCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

// Every RPC answers UNIMPLEMENTED (the generated default) until the catalog issue builds it.
#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogNode {}
