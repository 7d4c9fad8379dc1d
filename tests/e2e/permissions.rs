//! Who may call what: every RPC of the product tried as every kind of caller, against a table
//! written here from the design (not from the server's own matrix), and the audit trail.

use tonic::Code;
use yitong_proto::audit::v1::ListAuditEntriesRequest;
use yitong_proto::catalog::v1 as catalog;
use yitong_proto::identity::v1 as identity;
use yitong_proto::ledger::v1 as ledger;
use yitong_proto::settlement::v1 as settlement;
use yitong_sandbox::{As, JINAN, Sandbox, ZIBO};
use yitong_store::sqlx;

use crate::support::seeded_card;

/// The callers every RPC is tried as. The servers asked are Zibo's (370300) and the clearing
/// house's; every request names Zibo's hospital H37030000001 or the city of Zibo.
const CALLERS: [(&str, Option<&str>); 11] = [
    ("his", Some("institution:H37030000001")),
    ("his_peer", Some("institution:H37030000002")),
    ("his_far", Some("institution:H37010000001")),
    ("bureau", Some("bureau:370300")),
    ("bureau_far", Some("bureau:370100")),
    ("house", Some("bureau:clearing")),
    ("node", Some("node:370300")),
    ("node_far", Some("node:370100")),
    ("node_house", Some("node:clearing")),
    ("operator", Some("operator:dev")),
    ("anonymous", None),
];

const HIS: &str = "H37030000001";

/// Every RPC, with the callers that may make it. Reads are expected to succeed for them; a
/// write is expected past authorization (its dummy request is then refused for its content,
/// which the end-to-end workflows cover in full).
const TABLE: &[(&str, &[&str])] = &[
    // Jinan's node may ask Zibo for persons, but only for its own city's institutions: the
    // request here names Zibo's hospital, so as Jinan's node it is refused.
    ("GetInsuredPerson", &["his", "bureau", "node"]),
    ("IssueCard", &["bureau"]),
    ("ReportCardLost", &["bureau"]),
    ("ReissueCard", &["bureau"]),
    ("SetInsuranceStatus", &["bureau"]),
    ("IssueEVoucher", &["bureau"]),
    ("MoveAccount", &["node"]),
    (
        "LookupItems",
        &["his", "his_peer", "bureau", "node", "node_far", "operator"],
    ),
    (
        "DownloadCatalog",
        &["his", "his_peer", "bureau", "node", "node_far", "operator"],
    ),
    ("PublishCatalogVersion", &["bureau"]),
    (
        "GetPolicy",
        &["his", "his_peer", "bureau", "node", "node_far", "operator"],
    ),
    ("UpsertPolicy", &["bureau"]),
    (
        "GetInstitution",
        &["his", "his_peer", "bureau", "node", "node_far", "operator"],
    ),
    (
        "ListInstitutions",
        &["his", "his_peer", "bureau", "node", "node_far", "operator"],
    ),
    (
        "ListDiseases",
        &["his", "his_peer", "bureau", "node", "node_far", "operator"],
    ),
    ("RegisterVisit", &["his"]),
    ("CancelVisit", &["his"]),
    ("UploadFeeLines", &["his"]),
    ("CancelFeeLines", &["his"]),
    ("PreSettle", &["his"]),
    ("Settle", &["his"]),
    ("CancelSettlement", &["his"]),
    ("ReverseByMessageId", &["his"]),
    ("GetSettlement", &["his", "bureau", "operator"]),
    ("ListSettlements", &["his", "bureau", "operator"]),
    ("CheckBenefit", &["his"]),
    ("GetRunningTotals", &["his"]),
    ("QueryFilings", &["his"]),
    ("QueryCertifications", &["his"]),
    ("Certify", &["bureau"]),
    ("CancelCertification", &["bureau"]),
    ("ListCertifications", &["bureau", "node", "node_far"]),
    ("FileFiling", &["bureau"]),
    ("CancelFiling", &["bureau"]),
    ("ListFilings", &["bureau", "node", "node_far"]),
    ("SetFilingPolicy", &["bureau"]),
    ("GetFilingPolicy", &["bureau", "node", "node_far"]),
    ("Quote", &["node", "node_far"]),
    ("Reserve", &["node", "node_far"]),
    ("Post", &["node", "node_far"]),
    ("Void", &["node", "node_far"]),
    ("GetTotals", &["node", "node_far"]),
    ("CreateTransfers", &["node", "node_far"]),
    ("PostPendingTransfers", &["node", "node_far"]),
    ("VoidPendingTransfers", &["node", "node_far"]),
    (
        "LookupTransfers",
        &[
            "bureau",
            "bureau_far",
            "house",
            "node",
            "node_far",
            "operator",
        ],
    ),
    // A city's node, like its bureau, reads its own city's accounts only; these are Zibo's.
    ("GetBalances", &["bureau", "house", "node", "operator"]),
    (
        "GetJournalDigest",
        &[
            "bureau",
            "bureau_far",
            "house",
            "node",
            "node_far",
            "operator",
        ],
    ),
    (
        "VerifyJournal",
        &[
            "bureau",
            "bureau_far",
            "house",
            "node",
            "node_far",
            "operator",
        ],
    ),
    ("ReconcileTotals", &["his", "bureau", "house"]),
    ("ReconcileDetails", &["his", "bureau", "house"]),
    ("ListClearingDetails", &["bureau", "house"]),
    ("ConfirmClearingDetails", &["bureau"]),
    ("RollbackClearingConfirmation", &["bureau"]),
    ("ApplyClearing", &["bureau"]),
    ("CancelClearingApplication", &["bureau"]),
    ("CloseClearingPeriod", &["house"]),
    ("GetClearingStatement", &["bureau", "house", "operator"]),
    ("ConfirmClearingStatement", &["bureau"]),
    ("GetDailyActivity", &["bureau", "house", "operator"]),
    ("ListAuditEntries", &["bureau"]),
    (
        "ListAuditEntries@ledger",
        &["bureau", "bureau_far", "house"],
    ),
];

/// The RPCs whose allowed calls must succeed outright: reads with real arguments.
const READS: &[&str] = &[
    "GetInsuredPerson",
    "LookupItems",
    "DownloadCatalog",
    "GetInstitution",
    "ListInstitutions",
    "ListDiseases",
    "ListSettlements",
    "ListFilings",
    "GetFilingPolicy",
    "ListCertifications",
    "LookupTransfers",
    "GetBalances",
    "GetJournalDigest",
    "VerifyJournal",
    "ListClearingDetails",
    "GetDailyActivity",
    "ListAuditEntries",
    "ListAuditEntries@ledger",
];

fn period() -> Option<ledger::ClearingPeriod> {
    Some(ledger::ClearingPeriod {
        year: 2026,
        month: 11,
    })
}

/// Makes one call of `rpc` as `caller` and returns its status code.
async fn call(caller: &As<'_>, rpc: &str, n: usize) -> Code {
    let message_id = format!("PERM-{n}");
    let card = Some(identity::Credential {
        kind: Some(identity::credential::Kind::CardNumber(seeded_card(ZIBO, 1))),
    });
    let code_of = |result: Result<(), tonic::Status>| match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    };
    macro_rules! unary {
        ($client:expr, $method:ident, $request:expr) => {
            code_of($client.$method($request).await.map(drop))
        };
    }
    let zibo = || ZIBO.to_owned();
    match rpc {
        "GetInsuredPerson" => unary!(
            caller.identity(ZIBO),
            get_insured_person,
            identity::GetInsuredPersonRequest {
                credential: card,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "IssueCard" => unary!(
            caller.identity(ZIBO),
            issue_card,
            identity::IssueCardRequest {
                message_id,
                ..Default::default()
            }
        ),
        "ReportCardLost" => unary!(
            caller.identity(ZIBO),
            report_card_lost,
            identity::ReportCardLostRequest {
                message_id,
                ..Default::default()
            }
        ),
        "ReissueCard" => unary!(
            caller.identity(ZIBO),
            reissue_card,
            identity::ReissueCardRequest {
                message_id,
                ..Default::default()
            }
        ),
        "SetInsuranceStatus" => unary!(
            caller.identity(ZIBO),
            set_insurance_status,
            identity::SetInsuranceStatusRequest {
                message_id,
                ..Default::default()
            }
        ),
        "IssueEVoucher" => unary!(
            caller.identity(ZIBO),
            issue_e_voucher,
            identity::IssueEVoucherRequest {
                credential: None,
                ttl_seconds: 0
            }
        ),
        "MoveAccount" => unary!(
            caller.identity(ZIBO),
            move_account,
            identity::MoveAccountRequest {
                message_id,
                ..Default::default()
            }
        ),
        "LookupItems" => unary!(
            caller.catalog(ZIBO),
            lookup_items,
            catalog::LookupItemsRequest {
                codes: vec!["X".into()],
                ..Default::default()
            }
        ),
        "DownloadCatalog" => unary!(
            caller.catalog(ZIBO),
            download_catalog,
            catalog::DownloadCatalogRequest {
                since_version: 0,
                page_size: 1
            }
        ),
        "PublishCatalogVersion" => unary!(
            caller.catalog(ZIBO),
            publish_catalog_version,
            catalog::PublishCatalogVersionRequest {
                message_id,
                ..Default::default()
            }
        ),
        "GetPolicy" => unary!(
            caller.catalog(ZIBO),
            get_policy,
            catalog::GetPolicyRequest {
                insured_city: zibo(),
                ..Default::default()
            }
        ),
        "UpsertPolicy" => unary!(
            caller.catalog(ZIBO),
            upsert_policy,
            catalog::UpsertPolicyRequest {
                message_id,
                ..Default::default()
            }
        ),
        "GetInstitution" => unary!(
            caller.catalog(ZIBO),
            get_institution,
            catalog::GetInstitutionRequest { code: HIS.into() }
        ),
        "ListInstitutions" => unary!(
            caller.catalog(ZIBO),
            list_institutions,
            catalog::ListInstitutionsRequest {
                city: zibo(),
                page_size: 10,
                ..Default::default()
            }
        ),
        "ListDiseases" => unary!(
            caller.catalog(ZIBO),
            list_diseases,
            catalog::ListDiseasesRequest {}
        ),
        "RegisterVisit" => unary!(
            caller.settlement(ZIBO),
            register_visit,
            settlement::RegisterVisitRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "CancelVisit" => unary!(
            caller.settlement(ZIBO),
            cancel_visit,
            settlement::CancelVisitRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "UploadFeeLines" => unary!(
            caller.settlement(ZIBO),
            upload_fee_lines,
            settlement::UploadFeeLinesRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "CancelFeeLines" => unary!(
            caller.settlement(ZIBO),
            cancel_fee_lines,
            settlement::CancelFeeLinesRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "PreSettle" => unary!(
            caller.settlement(ZIBO),
            pre_settle,
            settlement::PreSettleRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "Settle" => unary!(
            caller.settlement(ZIBO),
            settle,
            settlement::SettleRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "CancelSettlement" => unary!(
            caller.settlement(ZIBO),
            cancel_settlement,
            settlement::CancelSettlementRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "ReverseByMessageId" => unary!(
            caller.settlement(ZIBO),
            reverse_by_message_id,
            settlement::ReverseByMessageIdRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "GetSettlement" => unary!(
            caller.settlement(ZIBO),
            get_settlement,
            settlement::GetSettlementRequest {
                key: Some(settlement::get_settlement_request::Key::MessageId(
                    message_id
                )),
                institution_code: HIS.into()
            }
        ),
        "ListSettlements" => unary!(
            caller.settlement(ZIBO),
            list_settlements,
            settlement::ListSettlementsRequest {
                institution_code: HIS.into(),
                from_date: "2026-11-01".into(),
                to_date: "2026-11-30".into(),
                page_size: 10,
                ..Default::default()
            }
        ),
        "CheckBenefit" => unary!(
            caller.settlement(ZIBO),
            check_benefit,
            settlement::CheckBenefitRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "GetRunningTotals" => unary!(
            caller.settlement(ZIBO),
            get_running_totals,
            settlement::GetRunningTotalsRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "QueryFilings" => unary!(
            caller.settlement(ZIBO),
            query_filings,
            settlement::QueryFilingsRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "QueryCertifications" => unary!(
            caller.settlement(ZIBO),
            query_certifications,
            settlement::QueryCertificationsRequest {
                message_id,
                institution_code: HIS.into(),
                ..Default::default()
            }
        ),
        "Certify" => unary!(
            caller.certification(ZIBO),
            certify,
            settlement::CertifyRequest {
                message_id,
                ..Default::default()
            }
        ),
        "CancelCertification" => unary!(
            caller.certification(ZIBO),
            cancel_certification,
            settlement::CancelCertificationRequest {
                message_id,
                ..Default::default()
            }
        ),
        "ListCertifications" => unary!(
            caller.certification(ZIBO),
            list_certifications,
            settlement::ListCertificationsRequest {
                person_no: format!("{ZIBO}{:010}", 1)
            }
        ),
        "FileFiling" => unary!(
            caller.filing(ZIBO),
            file_filing,
            settlement::FileFilingRequest {
                message_id,
                ..Default::default()
            }
        ),
        "CancelFiling" => unary!(
            caller.filing(ZIBO),
            cancel_filing,
            settlement::CancelFilingRequest {
                message_id,
                ..Default::default()
            }
        ),
        "ListFilings" => unary!(
            caller.filing(ZIBO),
            list_filings,
            settlement::ListFilingsRequest {
                person_no: format!("{ZIBO}{:010}", 1)
            }
        ),
        "SetFilingPolicy" => unary!(
            caller.filing(ZIBO),
            set_filing_policy,
            settlement::SetFilingPolicyRequest {
                message_id,
                ..Default::default()
            }
        ),
        "GetFilingPolicy" => unary!(
            caller.filing(ZIBO),
            get_filing_policy,
            settlement::GetFilingPolicyRequest {
                treatment_city: JINAN.into()
            }
        ),
        "GetTotals" => unary!(
            caller.benefit(ZIBO),
            get_totals,
            settlement::GetTotalsRequest::default()
        ),
        "Quote" => unary!(
            caller.benefit(ZIBO),
            quote,
            settlement::QuoteRequest { claim: None }
        ),
        "Reserve" => unary!(
            caller.benefit(ZIBO),
            reserve,
            settlement::ReserveRequest {
                message_id,
                ..Default::default()
            }
        ),
        "Post" => unary!(
            caller.benefit(ZIBO),
            post,
            settlement::PostRequest {
                message_id,
                ..Default::default()
            }
        ),
        "Void" => unary!(
            caller.benefit(ZIBO),
            void,
            settlement::VoidRequest {
                message_id,
                ..Default::default()
            }
        ),
        "CreateTransfers" => unary!(
            caller.ledger(),
            create_transfers,
            ledger::CreateTransfersRequest {
                message_id,
                transfers: vec![]
            }
        ),
        "PostPendingTransfers" => unary!(
            caller.ledger(),
            post_pending_transfers,
            ledger::PostPendingTransfersRequest {
                message_id,
                pending_transfer_ids: vec![]
            }
        ),
        "VoidPendingTransfers" => unary!(
            caller.ledger(),
            void_pending_transfers,
            ledger::VoidPendingTransfersRequest {
                message_id,
                ..Default::default()
            }
        ),
        "LookupTransfers" => unary!(
            caller.ledger(),
            lookup_transfers,
            ledger::LookupTransfersRequest {
                selector: Some(ledger::lookup_transfers_request::Selector::SettlementId(
                    "J37030020261101000001".into()
                ))
            }
        ),
        "GetBalances" => unary!(
            caller.ledger(),
            get_balances,
            ledger::GetBalancesRequest {
                account_ids: vec![],
                cities: vec![zibo()]
            }
        ),
        "GetJournalDigest" => unary!(
            caller.ledger(),
            get_journal_digest,
            ledger::GetJournalDigestRequest {}
        ),
        "VerifyJournal" => unary!(
            caller.ledger(),
            verify_journal,
            ledger::VerifyJournalRequest { up_to_sequence: 0 }
        ),
        "ReconcileTotals" => unary!(
            caller.ledger(),
            reconcile_totals,
            ledger::ReconcileTotalsRequest {
                message_id,
                scope: Some(ledger::ReconciliationScope {
                    subject: Some(ledger::reconciliation_scope::Subject::InstitutionCode(
                        HIS.into()
                    ))
                }),
                ..Default::default()
            }
        ),
        "ReconcileDetails" => {
            let header = ledger::ReconcileDetailsRequest {
                item: Some(ledger::reconcile_details_request::Item::Header(
                    ledger::ReconcileDetailsHeader {
                        message_id,
                        scope: Some(ledger::ReconciliationScope {
                            subject: Some(ledger::reconciliation_scope::Subject::InstitutionCode(
                                HIS.into(),
                            )),
                        }),
                        ..Default::default()
                    },
                )),
            };
            let stream = tokio_stream::iter([header]);
            match caller.ledger().reconcile_details(stream).await {
                Ok(mut replies) => match replies.get_mut().message().await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                },
                Err(status) => status.code(),
            }
        }
        "ListClearingDetails" => unary!(
            caller.ledger(),
            list_clearing_details,
            ledger::ListClearingDetailsRequest {
                period: period(),
                treatment_city: zibo(),
                page_size: 10,
                ..Default::default()
            }
        ),
        "ConfirmClearingDetails" => unary!(
            caller.ledger(),
            confirm_clearing_details,
            ledger::ConfirmClearingDetailsRequest {
                message_id,
                treatment_city: zibo(),
                ..Default::default()
            }
        ),
        "RollbackClearingConfirmation" => unary!(
            caller.ledger(),
            rollback_clearing_confirmation,
            ledger::RollbackClearingConfirmationRequest {
                message_id,
                treatment_city: zibo(),
                ..Default::default()
            }
        ),
        "ApplyClearing" => unary!(
            caller.ledger(),
            apply_clearing,
            ledger::ApplyClearingRequest {
                message_id,
                treatment_city: zibo(),
                ..Default::default()
            }
        ),
        "CancelClearingApplication" => unary!(
            caller.ledger(),
            cancel_clearing_application,
            ledger::CancelClearingApplicationRequest {
                message_id,
                application_id: "CA202611370300001".into(),
                ..Default::default()
            }
        ),
        "CloseClearingPeriod" => unary!(
            caller.ledger(),
            close_clearing_period,
            ledger::CloseClearingPeriodRequest {
                message_id,
                period: None,
                operator_id: String::new()
            }
        ),
        "GetClearingStatement" => unary!(
            caller.ledger(),
            get_clearing_statement,
            ledger::GetClearingStatementRequest {
                city: zibo(),
                period: period()
            }
        ),
        "ConfirmClearingStatement" => unary!(
            caller.ledger(),
            confirm_clearing_statement,
            ledger::ConfirmClearingStatementRequest {
                message_id,
                city: zibo(),
                ..Default::default()
            }
        ),
        "GetDailyActivity" => unary!(
            caller.ledger(),
            get_daily_activity,
            ledger::GetDailyActivityRequest {
                from_date: "2026-11-01".into(),
                to_date: "2026-11-30".into(),
                cities: vec![zibo()]
            }
        ),
        "ListAuditEntries" => unary!(
            caller.audit(
                yitong_core::Owner::Pool(ZIBO.parse().expect("region code")),
                yitong_core::Service::Identity
            ),
            list_audit_entries,
            ListAuditEntriesRequest {
                page_size: 10,
                page_token: String::new()
            }
        ),
        "ListAuditEntries@ledger" => unary!(
            caller.audit(
                yitong_core::Owner::ClearingHouse,
                yitong_core::Service::Ledger
            ),
            list_audit_entries,
            ListAuditEntriesRequest {
                page_size: 10,
                page_token: String::new()
            }
        ),
        other => panic!("no call for {other}"),
    }
}

fn caller<'a>(net: &'a Sandbox, name: Option<&str>) -> As<'a> {
    match name {
        Some(name) => net.as_caller(name),
        None => net.anonymous(),
    }
}

yitong_sandbox::network_test! {
    /// Proves the permission matrix: every RPC of every service, tried as an HIS of the
    /// institution the request names, of another institution of the city and of another
    /// city; as the city's bureau, another city's bureau and the clearing house's staff; as a
    /// node of the city, of another city and of the clearing house; as an operator; and with
    /// no credential. What the table allows passes authorization (and reads succeed); what it
    /// does not is refused with PERMISSION_DENIED, or UNAUTHENTICATED without a credential; and
    /// after the refusals every table of every store holds exactly the rows it held before.
    async fn every_rpc_as_every_caller(net) {
        assert_eq!(TABLE.len(), yitong_auth::MATRIX.len() + 1, "the table names every RPC (the audit trail twice)");
        let mut n = 0;
        for (rpc, allowed) in TABLE {
            let before = net.row_counts().await;
            for (name, credential) in CALLERS {
                if allowed.contains(&name) {
                    continue;
                }
                n += 1;
                let code = call(&caller(net, credential), rpc, n).await;
                let expected = if credential.is_none() { Code::Unauthenticated } else { Code::PermissionDenied };
                assert_eq!(code, expected, "{rpc} as {name}");
            }
            assert_eq!(net.row_counts().await, before, "refusals of {rpc} stored nothing");
            for (name, credential) in CALLERS {
                if !allowed.contains(&name) {
                    continue;
                }
                n += 1;
                let code = call(&caller(net, credential), rpc, n).await;
                assert!(!matches!(code, Code::PermissionDenied | Code::Unauthenticated), "{rpc} as {name} was refused: {code:?}");
                if READS.contains(rpc) {
                    assert_eq!(code, Code::Ok, "{rpc} as {name}");
                }
            }
        }
        // A key that is not one the network issued is refused as unauthenticated, for an RPC
        // anyone may otherwise reach.
        let mut forged = net.catalog(ZIBO);
        let mut request = tonic::Request::new(catalog::GetInstitutionRequest { code: HIS.into() });
        request.metadata_mut().insert("authorization", format!("Bearer yt1.{}.{}", "0".repeat(16), "0".repeat(64)).parse().expect("ascii"));
        assert_eq!(forged.get_institution(request).await.unwrap_err().code(), Code::Unauthenticated);
    }
}

/// The audit trail of one server, read as `reader`: (actor, rpc, message id) in order.
async fn trail(
    net: &Sandbox,
    reader: &str,
    owner: yitong_core::Owner,
    service: yitong_core::Service,
) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = net
            .as_caller(reader)
            .audit(owner, service)
            .list_audit_entries(ListAuditEntriesRequest {
                page_size: 2,
                page_token,
            })
            .await
            .expect("the trail is readable by its bureau")
            .into_inner();
        rows.extend(
            page.entries
                .into_iter()
                .map(|entry| (entry.actor, entry.rpc, entry.message_id)),
        );
        if page.next_page_token.is_empty() {
            return rows;
        }
        page_token = page.next_page_token;
    }
}

fn rows(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|(a, r, m)| ((*a).to_owned(), (*r).to_owned(), (*m).to_owned()))
        .collect()
}

yitong_sandbox::network_test! {
    /// Proves the audit trail: a bureau's status change, and a Zibo hospital's cross-city visit
    /// of a Jinan patient settled and cancelled, leave exactly one row per state change in the
    /// store that changed, naming the caller (the hospital at Zibo's settlement service, Zibo's
    /// node at Jinan's benefit service and at the ledger), the RPC and the message id, in order;
    /// replays, refused calls (another city's bureau, a malformed request, a denied HIS) and
    /// reads leave none; each trail is paged, and refused to another city's bureau.
    async fn the_audit_trail_holds_each_change_once(net) {
        use yitong_core::{Owner, Service};
        let zibo = Owner::Pool(ZIBO.parse().expect("region code"));
        let jinan = Owner::Pool(yitong_sandbox::JINAN.parse().expect("region code"));
        let status_change = |message_id: &str| identity::SetInsuranceStatusRequest {
            message_id: message_id.into(),
            person_no: "3703000000000003".into(),
            status: identity::InsuranceStatus::Suspended as i32,
            effective_date: "2026-01-01".into(),
            reason: "contributions unpaid".into(),
            operator_id: "bureau-2".into(),
        };
        // Refused: another city's bureau, then a malformed request by the right one.
        let denied = net.as_caller("bureau:370100").identity(ZIBO).set_insurance_status(status_change("AUD-1")).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        let invalid = net.identity(ZIBO).set_insurance_status(identity::SetInsuranceStatusRequest { reason: String::new(), ..status_change("AUD-1") }).await.unwrap_err();
        assert_eq!(invalid.code(), Code::InvalidArgument);
        // The change, and its replay.
        net.identity(ZIBO).set_insurance_status(status_change("AUD-1")).await.expect("suspended");
        net.identity(ZIBO).set_insurance_status(status_change("AUD-1")).await.expect("replayed");

        // A visit: registered, lines uploaded, settled (and replayed), cancelled; a denied
        // HIS and a read in between.
        let mut his = net.his_settlement(HIS);
        let visit = his.register_visit(crate::settlement::register_request("AUD-R", ZIBO, yitong_sandbox::JINAN, 2)).await.expect("registered").into_inner().visit.expect("visit");
        his.upload_fee_lines(crate::settlement::upload_request("AUD-U", &visit, crate::settlement::visit_lines())).await.expect("uploaded");
        let settle = crate::settlement::settle_request("AUD-S", &visit, 2, false);
        let settled = his.settle(settle.clone()).await.expect("settled").into_inner().settlement.expect("settlement");
        his.settle(settle.clone()).await.expect("replayed");
        let stranger = net.his_settlement("H37030000002").settle(settle).await.unwrap_err();
        assert_eq!(stranger.code(), Code::PermissionDenied);
        his.get_settlement(settlement::GetSettlementRequest { key: Some(settlement::get_settlement_request::Key::MessageId("AUD-S".into())), institution_code: HIS.into() }).await.expect("read");
        his.cancel_settlement(crate::settlement::cancel_request("AUD-C", &settled)).await.expect("cancelled");

        let hospital = format!("institution:{HIS}");
        assert_eq!(trail(net, "bureau:370300", zibo, Service::Identity).await, rows(&[("bureau:370300", "SetInsuranceStatus", "AUD-1")]));
        assert_eq!(
            trail(net, "bureau:370300", zibo, Service::Settlement).await,
            rows(&[(&hospital, "RegisterVisit", "AUD-R"), (&hospital, "UploadFeeLines", "AUD-U"), (&hospital, "Settle", "AUD-S"), (&hospital, "CancelSettlement", "AUD-C")])
        );
        // The insured city's benefit side: what the treatment city's node reserved and posted,
        // under message ids the node derives from its own.
        let benefit = trail(net, "bureau:370100", jinan, Service::Settlement).await;
        let steps: Vec<(&str, &str)> = benefit.iter().map(|(actor, rpc, _)| (actor.as_str(), rpc.as_str())).collect();
        assert_eq!(steps, [("node:370300", "Reserve"), ("node:370300", "Post"), ("node:370300", "Reserve"), ("node:370300", "Post")], "{benefit:?}");
        let ledger = trail(net, "bureau:clearing", Owner::ClearingHouse, Service::Ledger).await;
        let steps: Vec<(&str, &str)> = ledger.iter().map(|(actor, rpc, _)| (actor.as_str(), rpc.as_str())).collect();
        // One booking each, posted at once after the insured city posts: the settlement's and
        // its cancellation's.
        assert_eq!(steps, [("node:370300", "CreateTransfers"), ("node:370300", "CreateTransfers")], "{ledger:?}");
        // At the clearing house a city's bureau reads its own city's callers' rows only.
        assert_eq!(trail(net, "bureau:370300", Owner::ClearingHouse, Service::Ledger).await, ledger);
        assert!(trail(net, "bureau:370100", Owner::ClearingHouse, Service::Ledger).await.is_empty());
        // Nothing happened at Zibo's catalog, and Jinan's bureau may not read Zibo's trails.
        assert!(trail(net, "bureau:370300", zibo, Service::Catalog).await.is_empty());
        let refused = net.as_caller("bureau:370100").audit(zibo, Service::Settlement).list_audit_entries(ListAuditEntriesRequest::default()).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
}

yitong_sandbox::network_test! {
    /// Proves the shut-down check of every test can fail: a change whose audit row is gone,
    /// and a row no change made, are both reported. The trail refuses the UPDATE and DELETE
    /// this takes, so the test first disarms its triggers, as an intruder with the table
    /// owner's rights would, and rearms them when done.
    async fn the_audit_check_finds_a_missing_and_a_stray_row(net) {
        use yitong_core::{Owner, Service};
        let zibo = Owner::Pool(ZIBO.parse().expect("region code"));
        let mut his = net.his_settlement(HIS);
        let visit = his.register_visit(crate::settlement::register_request("CHK-R", ZIBO, yitong_sandbox::JINAN, 2)).await.expect("registered").into_inner().visit.expect("visit");
        assert_eq!(net.audit_disagreements().await, Vec::<String>::new());

        let store = net.store(zibo, Service::Settlement).await;
        let (audit_id,): (String,) = sqlx::query_as("SELECT audit_id FROM audit_trail WHERE message_id = 'CHK-R'").fetch_one(store.pool()).await.expect("the visit's row");
        let disarmed = crate::support::disarm_append_only(&store, "audit_trail").await;
        sqlx::query("UPDATE audit_trail SET message_id = 'CHK-STRAY' WHERE audit_id = $1").bind(&audit_id).execute(store.pool()).await.expect("row moved");
        let found = net.audit_disagreements().await;
        assert!(found.iter().any(|line| line.contains("RegisterVisit CHK-R was answered OK and has 0 audit rows")), "{found:?}");
        assert!(found.iter().any(|line| line.contains("the claim of RegisterVisit CHK-R has 0 audit rows")), "{found:?}");
        assert!(found.iter().any(|line| line.contains("audit rows of RegisterVisit CHK-STRAY but no claim")), "{found:?}");

        sqlx::query("UPDATE audit_trail SET message_id = 'CHK-R' WHERE audit_id = $1").bind(&audit_id).execute(store.pool()).await.expect("row restored");
        disarmed.rearm(&store).await;
        store.close().await;
        assert_eq!(net.audit_disagreements().await, Vec::<String>::new());
        // A refused call that left a row behind is reported too.
        let refused = his.cancel_visit(settlement::CancelVisitRequest { message_id: "CHK-X".into(), institution_code: HIS.into(), visit_id: visit.visit_id.clone(), reason: String::new(), ..Default::default() }).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        let store = net.store(zibo, Service::Settlement).await;
        sqlx::query("INSERT INTO audit_trail (audit_id, recorded_at_ms, actor, actor_city, rpc, message_id) SELECT 'zz-forged', recorded_at_ms, actor, actor_city, 'CancelVisit', 'CHK-X' FROM audit_trail WHERE audit_id = $1").bind(&audit_id).execute(store.pool()).await.expect("row forged");
        let found = net.audit_disagreements().await;
        assert!(found.iter().any(|line| line.contains("audit rows of CancelVisit CHK-X but no claim")), "{found:?}");
        let disarmed = crate::support::disarm_append_only(&store, "audit_trail").await;
        sqlx::query("DELETE FROM audit_trail WHERE audit_id = 'zz-forged'").execute(store.pool()).await.expect("forged row removed");
        disarmed.rearm(&store).await;
        store.close().await;
    }
}

yitong_sandbox::network_test! {
    /// Proves the audit trail is append-only in the database itself, not by convention alone:
    /// once a Zibo bureau's status change, a Zibo catalog publication and a Zibo hospital's
    /// visit of a Jinan patient settled across cities have written their rows the normal way,
    /// an UPDATE and a DELETE of those rows are refused in every store that holds some (Zibo's
    /// identity, catalog and settlement services, Jinan's benefit service, the clearing house's
    /// ledger), and on PostgreSQL a TRUNCATE too; every row is left as it was, and the trail
    /// still takes the rows of the next change.
    async fn the_audit_trail_refuses_updates_and_deletes(net) {
        use yitong_core::{Owner, Service};
        use yitong_store::sqlx::AssertSqlSafe;
        let zibo = Owner::Pool(ZIBO.parse().expect("region code"));
        let jinan = Owner::Pool(yitong_sandbox::JINAN.parse().expect("region code"));
        net.identity(ZIBO).set_insurance_status(identity::SetInsuranceStatusRequest {
            message_id: "AO-1".into(),
            person_no: "3703000000000003".into(),
            status: identity::InsuranceStatus::Suspended as i32,
            effective_date: "2026-01-01".into(),
            reason: "contributions unpaid".into(),
            operator_id: "bureau-2".into(),
        }).await.expect("suspended");
        let mut changed = crate::catalog::publication("AO-CAT", vec![]);
        changed.changed.push(crate::catalog::drug(crate::catalog::ATORVASTATIN, "阿托伐他汀钙片 20mg*7片", catalog::ItemGrade::A, "0", "24.00", &crate::catalog::from_today(20)));
        net.catalog(ZIBO).publish_catalog_version(changed).await.expect("published");
        let mut his = net.his_settlement(HIS);
        let visit = his.register_visit(crate::settlement::register_request("AO-R", ZIBO, yitong_sandbox::JINAN, 2)).await.expect("registered").into_inner().visit.expect("visit");
        his.upload_fee_lines(crate::settlement::upload_request("AO-U", &visit, crate::settlement::visit_lines())).await.expect("uploaded");
        his.settle(crate::settlement::settle_request("AO-S", &visit, 2, false)).await.expect("settled");

        let stores = [(zibo, Service::Identity), (zibo, Service::Catalog), (zibo, Service::Settlement), (jinan, Service::Settlement), (Owner::ClearingHouse, Service::Ledger)];
        for (owner, service) in stores {
            let store = net.store(owner, service).await;
            let place = store.name().to_owned();
            let read = "SELECT audit_id, actor, rpc, message_id FROM audit_trail ORDER BY audit_id";
            let before: Vec<(String, String, String, String)> = sqlx::query_as(read).fetch_all(store.pool()).await.expect("trail read");
            assert!(!before.is_empty(), "{place}: the changes wrote no audit row");
            let mut refused = vec![
                ("UPDATE", "UPDATE audit_trail SET message_id = 'AO-FORGED'".to_owned()),
                ("UPDATE", format!("UPDATE audit_trail SET actor = 'system' WHERE audit_id = '{}'", before[0].0)),
                ("DELETE", format!("DELETE FROM audit_trail WHERE audit_id = '{}'", before[0].0)),
                ("DELETE", "DELETE FROM audit_trail".to_owned()),
            ];
            if store.backend() == yitong_store::Backend::Postgres {
                refused.push(("TRUNCATE", "TRUNCATE audit_trail".to_owned()));
            }
            for (operation, statement) in refused {
                let error = sqlx::query(AssertSqlSafe(statement.clone())).execute(store.pool()).await.expect_err(&format!("{place}: {statement} was not refused"));
                let expected = format!("audit_trail is append-only: {operation} refused");
                assert!(error.to_string().contains(&expected), "{place}: {statement}: {error}");
            }
            let after: Vec<(String, String, String, String)> = sqlx::query_as(read).fetch_all(store.pool()).await.expect("trail read");
            assert_eq!(after, before, "{place}");
            store.close().await;
        }

        // The trail still takes a change's rows the normal way, at every store the visit reaches.
        let before = net.row_counts().await;
        let settled = his.get_settlement(settlement::GetSettlementRequest { key: Some(settlement::get_settlement_request::Key::MessageId("AO-S".into())), institution_code: HIS.into() }).await.expect("read").into_inner().settlement.expect("settlement");
        his.cancel_settlement(crate::settlement::cancel_request("AO-C", &settled)).await.expect("cancelled");
        let after = net.row_counts().await;
        for (owner, service) in [(zibo, Service::Settlement), (jinan, Service::Settlement), (Owner::ClearingHouse, Service::Ledger)] {
            let table = format!("{service}_{owner}.audit_trail");
            let count = |counts: &[(String, i64)]| counts.iter().find(|(name, _)| *name == table).map(|(_, count)| *count).expect("the trail is counted");
            assert!(count(&after) > count(&before), "{table} took no row");
        }
    }
}
