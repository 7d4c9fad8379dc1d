//! Settlement of outpatient visits: the HIS-facing SettlementService at the treatment city and
//! the BenefitService that decides, at the insured city, what the fund pays.
//!
//! Built so far: the split arithmetic (`split`) and the insured city's benefit service
//! (`benefit`). The SettlementService RPCs answer UNIMPLEMENTED until they are built.

pub mod benefit;
pub mod split;

pub use benefit::BenefitNode;

use yitong_core::CityCode;
use yitong_proto::settlement::v1 as pb;
use yitong_store::Store;

/// The settlement service of one city, as the treatment city of the visits it settles.
#[derive(Debug, Clone)]
pub struct SettlementNode {
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

// Every RPC answers UNIMPLEMENTED (the generated default) until the settlement issue builds it.
#[tonic::async_trait]
impl pb::settlement_service_server::SettlementService for SettlementNode {}
