//! Who each fuzzed request is made as. The handlers are called without the server layer, so
//! the harness plays it: each request carries the caller that may make it, read from the
//! request's own fields where the handler compares them (an HIS is the institution the request
//! names, a bureau the city it names), so the fuzzed input reaches conversion and validation
//! rather than stopping at the permission check.

use yitong_core::{Caller, CityCode, InstitutionCode, Owner};
use yitong_proto::catalog::v1 as catalog;
use yitong_proto::identity::v1 as identity;
use yitong_proto::ledger::v1 as ledger;
use yitong_proto::settlement::v1 as settlement;

use crate::harness::CITY;

/// The caller a request is made as.
pub trait Acting {
    fn caller(&self) -> Caller;
}

fn own_city() -> CityCode {
    CityCode::parse(CITY).expect("a valid city code")
}

/// The institution a request names, or (when the name is not a code) one of the fuzzed city's:
/// the handler then refuses the request as not the caller's, which is also a path worth
/// fuzzing.
fn institution(code: &str) -> Caller {
    Caller::Institution(
        InstitutionCode::parse(code)
            .unwrap_or_else(|_| InstitutionCode::parse(&format!("H{CITY}00001")).expect("valid")),
    )
}

/// The bureau of the city a request names, or the fuzzed city's.
fn bureau_of(city: &str) -> Caller {
    Caller::Bureau(Owner::City(
        CityCode::parse(city).unwrap_or_else(|_| own_city()),
    ))
}

macro_rules! acting {
    ($caller:expr => $($type:ty),* $(,)?) => {
        $(impl Acting for $type {
            fn caller(&self) -> Caller {
                let caller: fn(&$type) -> Caller = $caller;
                caller(self)
            }
        })*
    };
}

acting!(|r| institution(&r.institution_code) =>
    identity::GetInsuredPersonRequest,
    settlement::RegisterVisitRequest,
    settlement::CancelVisitRequest,
    settlement::UploadFeeLinesRequest,
    settlement::CancelFeeLinesRequest,
    settlement::PreSettleRequest,
    settlement::SettleRequest,
    settlement::CancelSettlementRequest,
    settlement::ReverseByMessageIdRequest,
    settlement::GetSettlementRequest,
    settlement::ListSettlementsRequest,
);
acting!(|_| Caller::Bureau(Owner::City(own_city())) =>
    identity::IssueCardRequest,
    identity::ReportCardLostRequest,
    identity::ReissueCardRequest,
    identity::SetInsuranceStatusRequest,
    identity::IssueEVoucherRequest,
    catalog::LookupItemsRequest,
    catalog::DownloadCatalogRequest,
    catalog::PublishCatalogVersionRequest,
    catalog::GetPolicyRequest,
    catalog::UpsertPolicyRequest,
    catalog::GetInstitutionRequest,
    catalog::ListInstitutionsRequest,
);
acting!(|_| Caller::Node(Owner::City(own_city())) =>
    identity::MoveAccountRequest,
    settlement::QuoteRequest,
    settlement::ReserveRequest,
    settlement::PostRequest,
    settlement::VoidRequest,
    ledger::CreateTransfersRequest,
    ledger::PostPendingTransfersRequest,
    ledger::VoidPendingTransfersRequest,
    ledger::LookupTransfersRequest,
    ledger::GetBalancesRequest,
    ledger::GetJournalDigestRequest,
    ledger::VerifyJournalRequest,
);
// The clearing house's staff may reconcile any scope and close a month.
acting!(|_| Caller::Bureau(Owner::ClearingHouse) =>
    ledger::ReconcileTotalsRequest,
    ledger::CloseClearingPeriodRequest,
);
acting!(|r| bureau_of(&r.treatment_city) =>
    ledger::ListClearingDetailsRequest,
    ledger::ConfirmClearingDetailsRequest,
    ledger::RollbackClearingConfirmationRequest,
    ledger::ApplyClearingRequest,
);
acting!(|r| bureau_of(r.application_id.get(8..14).unwrap_or_default()) =>
    ledger::CancelClearingApplicationRequest,
);
acting!(|r| bureau_of(&r.city) =>
    ledger::GetClearingStatementRequest,
    ledger::ConfirmClearingStatementRequest,
);
