//! One fuzz target per RPC: decode the input as the RPC's request message, the way tonic
//! would, and hand it to the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio_stream::StreamExt;
use tonic::codec::Codec;
use tonic::{Code, Request, Status};
use yitong_proto::catalog::v1::{self as catalog, catalog_service_server::CatalogService};
use yitong_proto::identity::v1::{self as identity, identity_service_server::IdentityService};
use yitong_proto::ledger::v1::{self as ledger, ledger_service_server::LedgerService};
use yitong_proto::settlement::v1::{
    self as settlement, benefit_service_server::BenefitService,
    certification_service_server::CertificationService, filing_service_server::FilingService,
    settlement_service_server::SettlementService,
};

use crate::callers::Acting;
use crate::harness::Harness;

/// Replies of a streaming RPC read before the call is dropped.
const STREAMED_REPLIES_MAX: usize = 4;
/// Metadata a node sets on a request it forwards to another city.
const FORWARDED: &str = "yitong-forwarded";

/// What one input led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The bytes are not the request message; a server refuses them (INVALID_ARGUMENT, its frame
    /// check) before any handler.
    Undecodable,
    /// The handler's answer: OK, or the status code it refused with.
    Answered(Code),
}

pub type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How a target's input becomes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The input is one encoded request message.
    Unary,
    /// The input is a request stream's HTTP body: gRPC frames, each a flag byte, a
    /// four-byte big-endian length and that many bytes of message.
    ClientStream,
}

/// One RPC's fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// "identity.GetInsuredPerson".
    pub name: &'static str,
    /// The request message's full name, "yitong.identity.v1.GetInsuredPersonRequest".
    pub message: &'static str,
    pub shape: Shape,
    /// Runs the handler on the input, sent as `Mode` says.
    pub call: fn(Arc<Harness>, Vec<u8>, Mode) -> Call,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// How an input is sent, besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Marked as forwarded by another node.
    pub forwarded: bool,
    /// Aimed at its caller first ([`Acting::aim`]).
    pub aimed: bool,
}

fn request<T: Acting>(mut message: T, mode: Mode) -> Request<T> {
    if mode.aimed {
        message.aim();
    }
    let caller = message.caller();
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller);
    if mode.forwarded {
        request
            .metadata_mut()
            .insert(FORWARDED, "1".parse().expect("ascii metadata"));
    }
    request
}

fn outcome<T>(result: Result<T, Status>) -> Outcome {
    Outcome::Answered(match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    })
}

/// A target for a unary or server-streaming RPC: `$node` is the harness field, `$service` the
/// generated trait, `$method` its method, `$package` and `$message` the request type.
macro_rules! target {
    ($service_name:literal, $rpc:literal, $node:ident, $service:ident, $method:ident,
     $package:ident :: $message:ident $(, $streams:tt)?) => {
        Target {
            name: concat!($service_name, ".", $rpc),
            message: concat!("yitong.", stringify!($package), ".v1.", stringify!($message)),
            shape: Shape::Unary,
            call: |harness, bytes, mode| -> Call {
                Box::pin(async move {
                    let Ok(message) = $package::$message::decode(bytes.as_slice()) else {
                        return Outcome::Undecodable;
                    };
                    let result =
                        $service::$method(&harness.$node, request(message, mode)).await;
                    target!(@reply result $(, $streams)?)
                })
            },
        }
    };
    (@reply $result:ident) => {
        outcome($result)
    };
    (@reply $result:ident, stream) => {
        match $result {
            Ok(response) => {
                let mut replies = response.into_inner().take(STREAMED_REPLIES_MAX);
                let mut last = Outcome::Answered(Code::Ok);
                while let Some(reply) = replies.next().await {
                    last = outcome(reply);
                }
                last
            }
            Err(status) => Outcome::Answered(status.code()),
        }
    };
}

/// Every RPC of every service.
pub fn all() -> Vec<Target> {
    vec![
        target!(
            "identity",
            "GetInsuredPerson",
            identity,
            IdentityService,
            get_insured_person,
            identity::GetInsuredPersonRequest
        ),
        target!(
            "identity",
            "IssueCard",
            identity,
            IdentityService,
            issue_card,
            identity::IssueCardRequest
        ),
        target!(
            "identity",
            "ReportCardLost",
            identity,
            IdentityService,
            report_card_lost,
            identity::ReportCardLostRequest
        ),
        target!(
            "identity",
            "ReissueCard",
            identity,
            IdentityService,
            reissue_card,
            identity::ReissueCardRequest
        ),
        target!(
            "identity",
            "SetInsuranceStatus",
            identity,
            IdentityService,
            set_insurance_status,
            identity::SetInsuranceStatusRequest
        ),
        target!(
            "identity",
            "IssueEVoucher",
            identity,
            IdentityService,
            issue_e_voucher,
            identity::IssueEVoucherRequest
        ),
        target!(
            "identity",
            "MoveAccount",
            identity,
            IdentityService,
            move_account,
            identity::MoveAccountRequest
        ),
        target!(
            "catalog",
            "LookupItems",
            catalog,
            CatalogService,
            lookup_items,
            catalog::LookupItemsRequest
        ),
        target!(
            "catalog",
            "DownloadCatalog",
            catalog,
            CatalogService,
            download_catalog,
            catalog::DownloadCatalogRequest,
            stream
        ),
        target!(
            "catalog",
            "PublishCatalogVersion",
            catalog,
            CatalogService,
            publish_catalog_version,
            catalog::PublishCatalogVersionRequest
        ),
        target!(
            "catalog",
            "GetPolicy",
            catalog,
            CatalogService,
            get_policy,
            catalog::GetPolicyRequest
        ),
        target!(
            "catalog",
            "UpsertPolicy",
            catalog,
            CatalogService,
            upsert_policy,
            catalog::UpsertPolicyRequest
        ),
        target!(
            "catalog",
            "GetInstitution",
            catalog,
            CatalogService,
            get_institution,
            catalog::GetInstitutionRequest
        ),
        target!(
            "catalog",
            "ListInstitutions",
            catalog,
            CatalogService,
            list_institutions,
            catalog::ListInstitutionsRequest
        ),
        target!(
            "catalog",
            "ListDiseases",
            catalog,
            CatalogService,
            list_diseases,
            catalog::ListDiseasesRequest
        ),
        target!(
            "settlement",
            "RegisterVisit",
            settlement,
            SettlementService,
            register_visit,
            settlement::RegisterVisitRequest
        ),
        target!(
            "settlement",
            "CancelVisit",
            settlement,
            SettlementService,
            cancel_visit,
            settlement::CancelVisitRequest
        ),
        target!(
            "settlement",
            "UploadFeeLines",
            settlement,
            SettlementService,
            upload_fee_lines,
            settlement::UploadFeeLinesRequest
        ),
        target!(
            "settlement",
            "CancelFeeLines",
            settlement,
            SettlementService,
            cancel_fee_lines,
            settlement::CancelFeeLinesRequest
        ),
        target!(
            "settlement",
            "PreSettle",
            settlement,
            SettlementService,
            pre_settle,
            settlement::PreSettleRequest
        ),
        target!(
            "settlement",
            "Settle",
            settlement,
            SettlementService,
            settle,
            settlement::SettleRequest
        ),
        target!(
            "settlement",
            "CancelSettlement",
            settlement,
            SettlementService,
            cancel_settlement,
            settlement::CancelSettlementRequest
        ),
        target!(
            "settlement",
            "ReverseByMessageId",
            settlement,
            SettlementService,
            reverse_by_message_id,
            settlement::ReverseByMessageIdRequest
        ),
        target!(
            "settlement",
            "GetSettlement",
            settlement,
            SettlementService,
            get_settlement,
            settlement::GetSettlementRequest
        ),
        target!(
            "settlement",
            "ListSettlements",
            settlement,
            SettlementService,
            list_settlements,
            settlement::ListSettlementsRequest
        ),
        target!(
            "settlement",
            "CheckBenefit",
            settlement,
            SettlementService,
            check_benefit,
            settlement::CheckBenefitRequest
        ),
        target!(
            "settlement",
            "GetRunningTotals",
            settlement,
            SettlementService,
            get_running_totals,
            settlement::GetRunningTotalsRequest
        ),
        target!(
            "settlement",
            "QueryFilings",
            settlement,
            SettlementService,
            query_filings,
            settlement::QueryFilingsRequest
        ),
        target!(
            "settlement",
            "QueryCertifications",
            settlement,
            SettlementService,
            query_certifications,
            settlement::QueryCertificationsRequest
        ),
        target!(
            "certification",
            "Certify",
            benefit,
            CertificationService,
            certify,
            settlement::CertifyRequest
        ),
        target!(
            "certification",
            "CancelCertification",
            benefit,
            CertificationService,
            cancel_certification,
            settlement::CancelCertificationRequest
        ),
        target!(
            "certification",
            "ListCertifications",
            benefit,
            CertificationService,
            list_certifications,
            settlement::ListCertificationsRequest
        ),
        target!(
            "filing",
            "FileFiling",
            benefit,
            FilingService,
            file_filing,
            settlement::FileFilingRequest
        ),
        target!(
            "filing",
            "CancelFiling",
            benefit,
            FilingService,
            cancel_filing,
            settlement::CancelFilingRequest
        ),
        target!(
            "filing",
            "ListFilings",
            benefit,
            FilingService,
            list_filings,
            settlement::ListFilingsRequest
        ),
        target!(
            "filing",
            "SetFilingPolicy",
            benefit,
            FilingService,
            set_filing_policy,
            settlement::SetFilingPolicyRequest
        ),
        target!(
            "filing",
            "GetFilingPolicy",
            benefit,
            FilingService,
            get_filing_policy,
            settlement::GetFilingPolicyRequest
        ),
        target!(
            "benefit",
            "GetTotals",
            benefit,
            BenefitService,
            get_totals,
            settlement::GetTotalsRequest
        ),
        target!(
            "benefit",
            "Quote",
            benefit,
            BenefitService,
            quote,
            settlement::QuoteRequest
        ),
        target!(
            "benefit",
            "Reserve",
            benefit,
            BenefitService,
            reserve,
            settlement::ReserveRequest
        ),
        target!(
            "benefit",
            "Post",
            benefit,
            BenefitService,
            post,
            settlement::PostRequest
        ),
        target!(
            "benefit",
            "Void",
            benefit,
            BenefitService,
            void,
            settlement::VoidRequest
        ),
        target!(
            "ledger",
            "CreateTransfers",
            ledger,
            LedgerService,
            create_transfers,
            ledger::CreateTransfersRequest
        ),
        target!(
            "ledger",
            "PostPendingTransfers",
            ledger,
            LedgerService,
            post_pending_transfers,
            ledger::PostPendingTransfersRequest
        ),
        target!(
            "ledger",
            "VoidPendingTransfers",
            ledger,
            LedgerService,
            void_pending_transfers,
            ledger::VoidPendingTransfersRequest
        ),
        target!(
            "ledger",
            "LookupTransfers",
            ledger,
            LedgerService,
            lookup_transfers,
            ledger::LookupTransfersRequest
        ),
        target!(
            "ledger",
            "GetBalances",
            ledger,
            LedgerService,
            get_balances,
            ledger::GetBalancesRequest
        ),
        target!(
            "ledger",
            "GetJournalDigest",
            ledger,
            LedgerService,
            get_journal_digest,
            ledger::GetJournalDigestRequest
        ),
        target!(
            "ledger",
            "VerifyJournal",
            ledger,
            LedgerService,
            verify_journal,
            ledger::VerifyJournalRequest
        ),
        target!(
            "ledger",
            "ReconcileTotals",
            ledger,
            LedgerService,
            reconcile_totals,
            ledger::ReconcileTotalsRequest
        ),
        reconcile_details(),
        target!(
            "ledger",
            "ListClearingDetails",
            ledger,
            LedgerService,
            list_clearing_details,
            ledger::ListClearingDetailsRequest
        ),
        target!(
            "ledger",
            "ConfirmClearingDetails",
            ledger,
            LedgerService,
            confirm_clearing_details,
            ledger::ConfirmClearingDetailsRequest
        ),
        target!(
            "ledger",
            "RollbackClearingConfirmation",
            ledger,
            LedgerService,
            rollback_clearing_confirmation,
            ledger::RollbackClearingConfirmationRequest
        ),
        target!(
            "ledger",
            "ApplyClearing",
            ledger,
            LedgerService,
            apply_clearing,
            ledger::ApplyClearingRequest
        ),
        target!(
            "ledger",
            "CancelClearingApplication",
            ledger,
            LedgerService,
            cancel_clearing_application,
            ledger::CancelClearingApplicationRequest
        ),
        target!(
            "ledger",
            "CloseClearingPeriod",
            ledger,
            LedgerService,
            close_clearing_period,
            ledger::CloseClearingPeriodRequest
        ),
        target!(
            "ledger",
            "GetClearingStatement",
            ledger,
            LedgerService,
            get_clearing_statement,
            ledger::GetClearingStatementRequest
        ),
        target!(
            "ledger",
            "ConfirmClearingStatement",
            ledger,
            LedgerService,
            confirm_clearing_statement,
            ledger::ConfirmClearingStatementRequest
        ),
        target!(
            "ledger",
            "GetDailyActivity",
            ledger,
            LedgerService,
            get_daily_activity,
            ledger::GetDailyActivityRequest
        ),
    ]
}

/// ReconcileDetails streams its requests: the input is the request body, decoded frame by
/// frame by tonic's own `Streaming`, as the server does (bad frames included).
fn reconcile_details() -> Target {
    Target {
        name: "ledger.ReconcileDetails",
        message: "yitong.ledger.v1.ReconcileDetailsRequest",
        shape: Shape::ClientStream,
        call: |harness, bytes, _mode| -> Call {
            Box::pin(async move {
                let mut codec = tonic_prost::ProstCodec::<
                    ledger::ReconcileDetailsResponse,
                    ledger::ReconcileDetailsRequest,
                >::default();
                // The body as a server reads it: through the frame check, which refuses what
                // does not decode before tonic does.
                let body = yitong_node::frames::checked(
                    "/yitong.ledger.v1.LedgerService/ReconcileDetails",
                    false,
                    tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(bytes))),
                );
                let stream = tonic::Streaming::new_request(
                    codec.decoder(),
                    body,
                    None,
                    Some(yitong_node::limits::REQUEST_BYTES_MAX),
                );
                let mut request = Request::new(stream);
                // The clearing house's staff may reconcile any scope.
                request.extensions_mut().insert(yitong_rpc::Caller::Bureau(
                    yitong_core::Owner::ClearingHouse,
                ));
                let result = LedgerService::reconcile_details(&harness.ledger, request).await;
                target!(@reply result, stream)
            })
        },
    }
}

/// Frames encoded messages as a gRPC request body.
pub fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for message in messages {
        body.push(0);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
    }
    body
}
