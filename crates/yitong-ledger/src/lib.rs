//! The clearing house's ledger: the double-entry journal every cross-city claim lands in, daily
//! reconciliation and monthly clearing between the cities.
//!
//! The RPCs answer UNIMPLEMENTED until the settlement and clearing issues build them.

use yitong_proto::ledger::v1 as pb;
use yitong_store::Store;

/// The ledger service of the clearing house.
#[derive(Debug, Clone)]
pub struct LedgerNode {
    store: Store,
}

impl LedgerNode {
    pub fn new(store: Store) -> Self {
        LedgerNode { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

// Every RPC answers UNIMPLEMENTED (the generated default) until the ledger is built.
#[tonic::async_trait]
impl pb::ledger_service_server::LedgerService for LedgerNode {}
