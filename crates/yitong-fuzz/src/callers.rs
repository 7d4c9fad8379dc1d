//! Who each fuzzed request is made as. The handlers are called without the server layer, so
//! the harness plays it: each request carries the caller that may make it, read from the
//! request's own fields where the handler compares them (an HIS is the institution the request
//! names, a bureau the city it names), so the fuzzed input reaches conversion and validation
//! rather than stopping at the permission check.
//!
//! A fuzzed field rarely holds a valid institution or city code, and a request naming none is
//! refused as not the caller's before anything else of it is read. Half the inputs are
//! therefore *aimed* ([`Acting::aim`]): such a field is replaced with the fuzzed city's own
//! code (an institution of it, the city itself), so the rest of the message is fuzzed past the
//! check; the other half keep the field as generated, and reach the refusal.

use yitong_core::{InstitutionCode, Owner, PoolCode};
use yitong_proto::catalog::v1 as catalog;
use yitong_proto::identity::v1 as identity;
use yitong_proto::ledger::v1 as ledger;
use yitong_proto::settlement::v1 as settlement;
use yitong_rpc::Caller;

use crate::harness::CITY;

/// The caller a request is made as.
pub trait Acting {
    fn caller(&self) -> Caller;

    /// Replaces a field the handler compares with the caller, when it names no one, with the
    /// fuzzed city's own code.
    fn aim(&mut self) {}
}

fn own_city() -> PoolCode {
    PoolCode::parse(CITY).expect("a valid city code")
}

/// The institution a request names, or (when the name is not a code) one of the fuzzed city's:
/// the handler then refuses the request as not the caller's, which is also a path worth
/// fuzzing.
fn institution(code: &str) -> Caller {
    Caller::Institution(InstitutionCode::parse(code).unwrap_or_else(|_| own_institution()))
}

fn own_institution() -> InstitutionCode {
    InstitutionCode::parse(&format!("H{CITY}00001")).expect("valid")
}

/// The bureau of the city a request names, or the fuzzed city's.
fn bureau_of(city: &str) -> Caller {
    Caller::Bureau(Owner::Pool(
        PoolCode::parse(city).unwrap_or_else(|_| own_city()),
    ))
}

/// `code` if it is an institution code, else the fuzzed city's institution.
fn aim_institution(code: &mut String) {
    if InstitutionCode::parse(code).is_err() {
        *code = own_institution().to_string();
    }
}

/// `city` if it is a city code, else the fuzzed city.
fn aim_city(city: &mut String) {
    if PoolCode::parse(city).is_err() {
        *city = CITY.to_owned();
    }
}

/// `id` if it names a city where an application id does (`CA`, the period, the city, a
/// serial: "CA202612370100001"), else the same id for the fuzzed city.
fn aim_application(id: &mut String) {
    if id
        .get(8..14)
        .is_none_or(|city| PoolCode::parse(city).is_err())
    {
        *id = format!("CA202612{CITY}{}", id.get(14..).unwrap_or_default());
    }
}

macro_rules! acting {
    ($caller:expr, aim $aim:expr => $($type:ty),* $(,)?) => {
        $(impl Acting for $type {
            fn caller(&self) -> Caller {
                let caller: fn(&$type) -> Caller = $caller;
                caller(self)
            }

            fn aim(&mut self) {
                let aim: fn(&mut $type) = $aim;
                aim(self)
            }
        })*
    };
    ($caller:expr => $($type:ty),* $(,)?) => {
        $(impl Acting for $type {
            fn caller(&self) -> Caller {
                let caller: fn(&$type) -> Caller = $caller;
                caller(self)
            }
        })*
    };
}

acting!(|r| institution(&r.institution_code), aim |r| aim_institution(&mut r.institution_code) =>
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
    settlement::CheckBenefitRequest,
    settlement::GetRunningTotalsRequest,
    settlement::QueryFilingsRequest,
    settlement::QueryCertificationsRequest,
);
acting!(|_| Caller::Bureau(Owner::Pool(own_city())) =>
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
    catalog::ListDiseasesRequest,
    settlement::FileFilingRequest,
    settlement::CancelFilingRequest,
    settlement::ListFilingsRequest,
    settlement::SetFilingPolicyRequest,
    settlement::GetFilingPolicyRequest,
    settlement::CertifyRequest,
    settlement::CancelCertificationRequest,
    settlement::ListCertificationsRequest,
);
acting!(|_| Caller::Node(Owner::Pool(own_city())) =>
    identity::MoveAccountRequest,
    settlement::QuoteRequest,
    settlement::ReserveRequest,
    settlement::PostRequest,
    settlement::VoidRequest,
    settlement::GetTotalsRequest,
    ledger::CreateTransfersRequest,
    ledger::PostPendingTransfersRequest,
    ledger::VoidPendingTransfersRequest,
    ledger::LookupTransfersRequest,
    ledger::GetBalancesRequest,
    ledger::GetJournalDigestRequest,
    ledger::VerifyJournalRequest,
);
// The clearing house's staff may reconcile any scope, close a month and read every city's days.
acting!(|_| Caller::Bureau(Owner::ClearingHouse) =>
    ledger::ReconcileTotalsRequest,
    ledger::CloseClearingPeriodRequest,
    ledger::GetDailyActivityRequest,
);
acting!(|r| bureau_of(&r.treatment_city), aim |r| aim_city(&mut r.treatment_city) =>
    ledger::ListClearingDetailsRequest,
    ledger::ConfirmClearingDetailsRequest,
    ledger::RollbackClearingConfirmationRequest,
    ledger::ApplyClearingRequest,
);
acting!(|r| bureau_of(r.application_id.get(8..14).unwrap_or_default()), aim |r| aim_application(&mut r.application_id) =>
    ledger::CancelClearingApplicationRequest,
);
acting!(|r| bureau_of(&r.city), aim |r| aim_city(&mut r.city) =>
    ledger::GetClearingStatementRequest,
    ledger::ConfirmClearingStatementRequest,
);
