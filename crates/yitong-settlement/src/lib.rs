//! Settlement of outpatient visits: the HIS-facing SettlementService at the treatment city and
//! the BenefitService that decides, at the insured city, what the fund pays.
//!
//! The RPCs answer UNIMPLEMENTED until the settlement issue builds them.

pub mod split;

use yitong_core::CityCode;
use yitong_proto::settlement::v1 as pb;
use yitong_store::Store;

/// The settlement service of one city, as the treatment city of the visits it settles.
#[derive(Debug, Clone)]
pub struct SettlementNode {
    city: CityCode,
    store: Store,
}

/// The benefit service of one city, as the insured city of the persons it insures.
#[derive(Debug, Clone)]
pub struct BenefitNode {
    city: CityCode,
    store: Store,
}

impl SettlementNode {
    pub fn new(city: CityCode, store: Store) -> Self {
        SettlementNode { city, store }
    }

    pub fn city(&self) -> CityCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl BenefitNode {
    /// The benefit service shares its city's settlement store: one settlement service, two roles.
    pub fn new(city: CityCode, store: Store) -> Self {
        BenefitNode { city, store }
    }

    pub fn city(&self) -> CityCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

// Every RPC answers UNIMPLEMENTED (the generated default) until the settlement issue builds it.
#[tonic::async_trait]
impl pb::settlement_service_server::SettlementService for SettlementNode {}

#[tonic::async_trait]
impl pb::benefit_service_server::BenefitService for BenefitNode {}
