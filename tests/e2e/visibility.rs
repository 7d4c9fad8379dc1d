//! Only what each caller may see: every read RPC called as every kind of caller after real
//! settlements, each reply held to the table of ARCHITECTURE.md ("Who may call what": which
//! fields each role sees), and a node that asks as another city refused.
//!
//! Replies are compared field by field through the descriptor set: the set of fields a reply
//! populates (`transfers[0].transfer.settlement.person_no`, ...) must be exactly the reference
//! caller's, or exactly that less the person's fields, or empty; and a whole reply must equal
//! the reference reply value for value.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use tonic::Code;
use yitong_proto::catalog::v1 as catalog;
use yitong_proto::identity::v1 as identity;
use yitong_proto::ledger::v1 as ledger;
use yitong_proto::ledger::v1::lookup_transfers_request::Selector;
use yitong_proto::settlement::v1 as settlement;
use yitong_sandbox::{JINAN, Sandbox, ZIBO};

use crate::settlement::{hospital, register_request, settle_request, upload_request, visit_lines};

/// Zibo's level-3 hospital, where both settlements of the scenario are made.
const HIS: &str = "H37030000001";

/// What one caller must get back from one read.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The reference reply, value for value.
    Whole,
    /// The reference reply's fields less these (`[]` stands for any index).
    Without(&'static [&'static str]),
    /// A reply that populates no field: every record left out.
    Nothing,
    /// PERMISSION_DENIED.
    Denied,
}

use Expect::*;

/// The person's fields of a settlement, of a transfer's settlement record, of a clearing row.
const SETTLEMENT_PERSON: &[&str] = &["settlement.person_no", "settlement.person_name"];
const LISTED_PERSON: &[&str] = &["settlements[].person_no", "settlements[].person_name"];
const TRANSFER_PERSON: &[&str] = &["transfers[].transfer.settlement.person_no"];

/// Every read RPC with the callers that try it; the first caller of each row is the reference
/// (it sees the reply whole). "cross" is a Zibo hospital's settlement of a Jinan patient,
/// "local" one of a Zibo patient: Zibo is treatment city of both, Jinan insured city of the
/// first only, Dongying party to neither.
const TABLE: &[(&str, &[(&str, Expect)])] = &[
    (
        "GetInsuredPerson",
        &[
            ("bureau:370300", Whole),
            ("institution:H37030000001", Whole),
            ("node:370300", Whole),
            // The request names Zibo's hospital, which Jinan's node is not.
            ("node:370100", Denied),
            ("institution:H37030000002", Denied),
            ("operator:dev", Denied),
        ],
    ),
    (
        "GetInsuredPerson(no institution)",
        &[
            ("bureau:370300", Whole),
            ("node:370300", Whole),
            ("node:370100", Whole),
        ],
    ),
    (
        "GetSettlement(cross)",
        &[
            ("institution:H37030000001", Whole),
            ("bureau:370300", Whole),
            ("operator:dev", Without(SETTLEMENT_PERSON)),
            ("institution:H37030000002", Denied),
            ("bureau:370100", Denied),
            ("node:370300", Denied),
        ],
    ),
    (
        "ListSettlements",
        &[
            ("institution:H37030000001", Whole),
            ("bureau:370300", Whole),
            ("operator:dev", Without(LISTED_PERSON)),
            ("institution:H37030000002", Denied),
            ("bureau:370100", Denied),
        ],
    ),
    (
        "LookupTransfers(cross)",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("bureau:370100", Whole),
            ("node:370300", Whole),
            ("node:370100", Whole),
            ("operator:dev", Without(TRANSFER_PERSON)),
            ("bureau:370500", Nothing),
            ("node:370500", Nothing),
        ],
    ),
    (
        "LookupTransfers(local)",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("node:370300", Whole),
            ("operator:dev", Without(TRANSFER_PERSON)),
            ("bureau:370100", Nothing),
            ("node:370100", Nothing),
        ],
    ),
    (
        "LookupTransfers(local ids)",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("operator:dev", Without(TRANSFER_PERSON)),
            ("bureau:370100", Nothing),
        ],
    ),
    (
        "GetBalances",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("node:370300", Whole),
            ("operator:dev", Whole),
            ("bureau:370100", Denied),
            ("node:370100", Denied),
        ],
    ),
    (
        "GetJournalDigest",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("bureau:370500", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
    (
        "VerifyJournal",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("bureau:370500", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
    (
        "ReconcileDetails(insured Jinan)",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370100", Whole),
            ("bureau:370300", Denied),
            ("institution:H37030000001", Denied),
        ],
    ),
    (
        "ListClearingDetails(Zibo)",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("bureau:370100", Denied),
            ("operator:dev", Denied),
        ],
    ),
    (
        "ListClearingDetails(Zibo owed by Jinan)",
        &[
            ("bureau:clearing", Whole),
            ("bureau:370300", Whole),
            ("bureau:370100", Whole),
            ("bureau:370500", Denied),
        ],
    ),
    (
        "LookupItems",
        &[
            ("bureau:370300", Whole),
            ("institution:H37030000001", Whole),
            ("institution:H37030000002", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
    (
        "DownloadCatalog",
        &[
            ("bureau:370300", Whole),
            ("institution:H37030000002", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
    (
        "GetPolicy",
        &[
            ("bureau:370300", Whole),
            ("institution:H37030000002", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
    (
        "GetInstitution",
        &[
            ("bureau:370300", Whole),
            ("institution:H37030000002", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
    (
        "ListInstitutions",
        &[
            ("bureau:370300", Whole),
            ("institution:H37030000002", Whole),
            ("node:370100", Whole),
            ("operator:dev", Whole),
        ],
    ),
];

/// What the reads look up: the two settlements and the transfer ids of the local one.
struct Scenario {
    cross: settlement::Settlement,
    local: settlement::Settlement,
    local_transfer_ids: Vec<String>,
}

/// The descriptor set of every Yitong proto, to walk replies by field name.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(yitong_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
});

/// What one read returned: the fields it populates, and its bytes to compare values.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    fields: BTreeSet<String>,
    bytes: Vec<u8>,
}

impl Seen {
    fn of<M: prost::Message>(type_name: &str, message: &M) -> Seen {
        Seen::of_rows(type_name, "", std::slice::from_ref(message))
    }

    /// Rows of one type as one reply: each row's fields under `name[i].` (no prefix when
    /// `name` is empty and there is one row).
    fn of_rows<M: prost::Message>(type_name: &str, name: &str, rows: &[M]) -> Seen {
        let descriptor = POOL
            .get_message_by_name(type_name)
            .unwrap_or_else(|| panic!("{type_name} is in the descriptor set"));
        let mut fields = BTreeSet::new();
        let mut bytes = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let encoded = row.encode_to_vec();
            let message = DynamicMessage::decode(descriptor.clone(), encoded.as_slice())
                .expect("the reply decodes");
            let prefix = match name {
                "" => String::new(),
                name => format!("{name}[{index}]."),
            };
            walk(&message, &prefix, &mut fields);
            bytes.extend(row.encode_length_delimited_to_vec());
        }
        Seen { fields, bytes }
    }
}

fn seen<M: prost::Message>(
    type_name: &str,
    result: Result<tonic::Response<M>, tonic::Status>,
) -> Result<Seen, tonic::Status> {
    result.map(|reply| Seen::of(type_name, reply.get_ref()))
}

/// Every field `message` populates, as paths with indices (`transfers[0].id`).
fn walk(message: &DynamicMessage, prefix: &str, paths: &mut BTreeSet<String>) {
    for (field, value) in message.fields() {
        let path = format!("{prefix}{}", field.name());
        match value {
            Value::Message(inner) => walk(inner, &format!("{path}."), paths),
            Value::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::Message(inner) => walk(inner, &format!("{path}[{index}]."), paths),
                        _ => {
                            paths.insert(format!("{path}[{index}]"));
                        }
                    }
                }
            }
            _ => {
                paths.insert(path);
            }
        }
    }
}

/// A path with its indices written `[]`, as the blanked fields are listed.
fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Makes the read `rpc` as `caller`; `n` makes message ids unique.
async fn read(
    net: &Sandbox,
    scenario: &Scenario,
    rpc: &str,
    caller: &str,
    n: usize,
) -> Result<Seen, tonic::Status> {
    let as_caller = net.as_caller(caller);
    let day = scenario.cross.settlement_date.clone();
    let person = |institution_code: &str| identity::GetInsuredPersonRequest {
        credential: crate::settlement::card(JINAN, 2),
        institution_code: institution_code.into(),
        ..Default::default()
    };
    let lookup = |selector| ledger::LookupTransfersRequest {
        selector: Some(selector),
    };
    let period = || {
        let (year, month) = (&day[0..4], &day[5..7]);
        Some(ledger::ClearingPeriod {
            year: year.parse().expect("year"),
            month: month.parse().expect("month"),
        })
    };
    let clearing = |insured_city: &str| ledger::ListClearingDetailsRequest {
        period: period(),
        treatment_city: ZIBO.into(),
        insured_city: insured_city.into(),
        page_size: 100,
        ..Default::default()
    };
    match rpc {
        "GetInsuredPerson" => seen(
            "yitong.identity.v1.GetInsuredPersonResponse",
            as_caller
                .identity(ZIBO)
                .get_insured_person(person(HIS))
                .await,
        ),
        "GetInsuredPerson(no institution)" => seen(
            "yitong.identity.v1.GetInsuredPersonResponse",
            as_caller
                .identity(ZIBO)
                .get_insured_person(person(""))
                .await,
        ),
        "GetSettlement(cross)" => seen(
            "yitong.settlement.v1.GetSettlementResponse",
            as_caller
                .settlement(ZIBO)
                .get_settlement(settlement::GetSettlementRequest {
                    key: Some(settlement::get_settlement_request::Key::SettlementId(
                        scenario.cross.settlement_id.clone(),
                    )),
                    institution_code: HIS.into(),
                })
                .await,
        ),
        "ListSettlements" => seen(
            "yitong.settlement.v1.ListSettlementsResponse",
            as_caller
                .settlement(ZIBO)
                .list_settlements(settlement::ListSettlementsRequest {
                    institution_code: HIS.into(),
                    from_date: day.clone(),
                    to_date: day.clone(),
                    page_size: 10,
                    ..Default::default()
                })
                .await,
        ),
        "LookupTransfers(cross)" => seen(
            "yitong.ledger.v1.LookupTransfersResponse",
            as_caller
                .ledger()
                .lookup_transfers(lookup(Selector::SettlementId(
                    scenario.cross.settlement_id.clone(),
                )))
                .await,
        ),
        "LookupTransfers(local)" => seen(
            "yitong.ledger.v1.LookupTransfersResponse",
            as_caller
                .ledger()
                .lookup_transfers(lookup(Selector::SettlementId(
                    scenario.local.settlement_id.clone(),
                )))
                .await,
        ),
        "LookupTransfers(local ids)" => seen(
            "yitong.ledger.v1.LookupTransfersResponse",
            as_caller
                .ledger()
                .lookup_transfers(lookup(Selector::Ids(ledger::TransferIds {
                    ids: scenario.local_transfer_ids.clone(),
                })))
                .await,
        ),
        "GetBalances" => seen(
            "yitong.ledger.v1.GetBalancesResponse",
            as_caller
                .ledger()
                .get_balances(ledger::GetBalancesRequest {
                    account_ids: vec![format!("{JINAN}->{ZIBO}.obligation")],
                    cities: vec![ZIBO.into()],
                })
                .await,
        ),
        "GetJournalDigest" => seen(
            "yitong.ledger.v1.GetJournalDigestResponse",
            as_caller
                .ledger()
                .get_journal_digest(ledger::GetJournalDigestRequest {})
                .await,
        ),
        "VerifyJournal" => seen(
            "yitong.ledger.v1.VerifyJournalResponse",
            as_caller
                .ledger()
                .verify_journal(ledger::VerifyJournalRequest { up_to_sequence: 0 })
                .await,
        ),
        "ReconcileDetails(insured Jinan)" => {
            let header = ledger::ReconcileDetailsRequest {
                item: Some(ledger::reconcile_details_request::Item::Header(
                    ledger::ReconcileDetailsHeader {
                        message_id: format!("VIS-RD-{n}"),
                        scope: Some(ledger::ReconciliationScope {
                            subject: Some(ledger::reconciliation_scope::Subject::InsuredCity(
                                JINAN.into(),
                            )),
                        }),
                        from_date: day.clone(),
                        to_date: day.clone(),
                        operator_id: "vis".into(),
                        ..Default::default()
                    },
                )),
            };
            let mut replies = as_caller
                .ledger()
                .reconcile_details(tokio_stream::iter([header]))
                .await?
                .into_inner();
            // The rows, as one message: the checkpoints carry run-specific tokens.
            let mut rows = Vec::new();
            while let Some(reply) = replies.message().await? {
                if let Some(ledger::reconcile_details_response::Item::Row(row)) = reply.item {
                    rows.push(row);
                }
            }
            Ok(Seen::of_rows(
                "yitong.ledger.v1.DetailRowResult",
                "rows",
                &rows,
            ))
        }
        "ListClearingDetails(Zibo)" => seen(
            "yitong.ledger.v1.ListClearingDetailsResponse",
            as_caller.ledger().list_clearing_details(clearing("")).await,
        ),
        "ListClearingDetails(Zibo owed by Jinan)" => seen(
            "yitong.ledger.v1.ListClearingDetailsResponse",
            as_caller
                .ledger()
                .list_clearing_details(clearing(JINAN))
                .await,
        ),
        "LookupItems" => seen(
            "yitong.catalog.v1.LookupItemsResponse",
            as_caller
                .catalog(ZIBO)
                .lookup_items(catalog::LookupItemsRequest {
                    codes: visit_lines()
                        .into_iter()
                        .map(|line| line.item_code)
                        .collect(),
                    ..Default::default()
                })
                .await,
        ),
        "DownloadCatalog" => {
            // The first page of the stream: five changes.
            let mut pages = as_caller
                .catalog(ZIBO)
                .download_catalog(catalog::DownloadCatalogRequest {
                    since_version: 0,
                    page_size: 5,
                })
                .await?
                .into_inner();
            let first = pages.message().await?.expect("a first page");
            Ok(Seen::of(
                "yitong.catalog.v1.DownloadCatalogResponse",
                &first,
            ))
        }
        "GetPolicy" => seen(
            "yitong.catalog.v1.GetPolicyResponse",
            as_caller
                .catalog(ZIBO)
                .get_policy(catalog::GetPolicyRequest {
                    insured_city: ZIBO.into(),
                    insurance_type: identity::InsuranceType::Employee as i32,
                    person_type: identity::PersonType::InService as i32,
                    hospital_level: catalog::HospitalLevel::HospitalLevel3 as i32,
                    date: day.clone(),
                })
                .await,
        ),
        "GetInstitution" => seen(
            "yitong.catalog.v1.GetInstitutionResponse",
            as_caller
                .catalog(ZIBO)
                .get_institution(catalog::GetInstitutionRequest { code: HIS.into() })
                .await,
        ),
        "ListInstitutions" => seen(
            "yitong.catalog.v1.ListInstitutionsResponse",
            as_caller
                .catalog(ZIBO)
                .list_institutions(catalog::ListInstitutionsRequest {
                    city: ZIBO.into(),
                    page_size: 5,
                    ..Default::default()
                })
                .await,
        ),
        other => panic!("no read for {other}"),
    }
}

/// Settles one visit at Zibo's hospital of the `n`-th seeded person of `insured`, and waits for
/// nothing: Settle answers once the insured city and the ledger have posted.
async fn settle(net: &Sandbox, tag: &str, insured: &str, n: u32) -> settlement::Settlement {
    let mut his = net.his_settlement(HIS);
    let visit = his
        .register_visit(register_request(&format!("VIS-{tag}-R"), ZIBO, insured, n))
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    his.upload_fee_lines(upload_request(
        &format!("VIS-{tag}-U"),
        &visit,
        visit_lines(),
    ))
    .await
    .expect("uploaded");
    let settled = his
        .settle(settle_request(&format!("VIS-{tag}-S"), &visit, n, false))
        .await
        .expect("settled")
        .into_inner()
        .settlement
        .expect("settlement");
    assert!(settled.completed_at.is_some(), "{tag} completed");
    settled
}

/// A Zibo hospital's settlement of a Jinan patient, and one of a Zibo patient.
async fn scenario(net: &Sandbox) -> Scenario {
    let cross = settle(net, "X", JINAN, 2).await;
    let local = settle(net, "L", ZIBO, 3).await;
    let local_transfer_ids = transfers_of(net, "bureau:clearing", &local.settlement_id)
        .await
        .expect("the clearing house reads every transfer")
        .into_iter()
        .filter_map(|record| record.transfer.map(|transfer| transfer.id))
        .collect();
    Scenario {
        cross,
        local,
        local_transfer_ids,
    }
}

/// The transfers of a settlement as `caller` sees them.
async fn transfers_of(
    net: &Sandbox,
    caller: &str,
    settlement_id: &str,
) -> Result<Vec<ledger::TransferRecord>, tonic::Status> {
    let reply = net
        .as_caller(caller)
        .ledger()
        .lookup_transfers(ledger::LookupTransfersRequest {
            selector: Some(Selector::SettlementId(settlement_id.to_owned())),
        })
        .await?;
    Ok(reply.into_inner().transfers)
}

fn person_of(record: &ledger::TransferRecord) -> &str {
    record
        .transfer
        .as_ref()
        .and_then(|transfer| transfer.settlement.as_ref())
        .map_or("", |settlement| settlement.person_no.as_str())
}

yitong_sandbox::network_test! {
    /// Proves every read RPC returns to each kind of caller exactly the fields the table of
    /// ARCHITECTURE.md gives it, after a Zibo hospital has settled a Jinan patient and a Zibo
    /// patient: the reference caller of each read sees it whole (and sees the person where the
    /// read carries one); a caller party to the records sees the same reply value for value;
    /// an operator sees the same fields less the person's number and name; a city party to
    /// none of the records gets none of them; a caller that may not make the read, or may not
    /// name what it names, is refused PERMISSION_DENIED.
    async fn every_read_shows_each_caller_its_fields(net) {
        let scenario = scenario(net).await;
        let mut n = 0;
        for (rpc, callers) in TABLE {
            let (reference, Whole) = callers[0] else { panic!("{rpc}: the reference sees the reply whole") };
            n += 1;
            let whole = read(net, &scenario, rpc, reference, n).await.unwrap_or_else(|status| panic!("{rpc} as {reference}: {status:?}"));
            assert!(!whole.fields.is_empty(), "{rpc}: the reference reply holds something");
            for (caller, expect) in &callers[1..] {
                n += 1;
                let got = read(net, &scenario, rpc, caller, n).await;
                match (expect, got) {
                    (Denied, Err(status)) => assert_eq!(status.code(), Code::PermissionDenied, "{rpc} as {caller}: {status:?}"),
                    (Denied, Ok(seen)) => panic!("{rpc} as {caller} was answered: {:?}", seen.fields),
                    (_, Err(status)) => panic!("{rpc} as {caller} was refused: {status:?}"),
                    (Whole, Ok(seen)) => {
                        assert_eq!(seen.fields, whole.fields, "{rpc} as {caller}: the fields");
                        assert_eq!(seen.bytes, whole.bytes, "{rpc} as {caller}: the values");
                    }
                    (Without(blanked), Ok(seen)) => {
                        for field in *blanked {
                            assert!(whole.fields.iter().any(|path| pattern(path) == *field), "{rpc}: {reference} sees no {field}");
                        }
                        let expected: BTreeSet<String> = whole.fields.iter().filter(|path| !blanked.contains(&pattern(path).as_str())).cloned().collect();
                        assert_eq!(seen.fields, expected, "{rpc} as {caller}");
                    }
                    (Nothing, Ok(seen)) => assert!(seen.fields.is_empty(), "{rpc} as {caller} saw {:?}", seen.fields),
                }
            }
        }
    }
}

yitong_sandbox::network_test! {
    /// Proves the ledger shows a settlement's person only to those party to it: after a Zibo
    /// hospital settles a Zibo patient, Jinan's bureau and Jinan's node looking its transfers
    /// up, by settlement id or by transfer id, get none of them (as for an id that is not
    /// there); an operator gets them without the person's number; Zibo's bureau and the
    /// clearing house's staff get them with it. A Zibo hospital's settlement of a Jinan patient
    /// is Jinan's too: its bureau sees the person.
    async fn the_ledger_shows_a_person_only_to_the_cities_party_to_it(net) {
        let local = settle(net, "L", ZIBO, 3).await;
        let whole = transfers_of(net, "bureau:clearing", &local.settlement_id).await.expect("the clearing house reads");
        assert_eq!(whole.len(), 1, "{whole:?}");
        assert_eq!(person_of(&whole[0]), local.person_no);
        assert_eq!(transfers_of(net, "bureau:370300", &local.settlement_id).await.expect("Zibo reads"), whole);

        for stranger in ["bureau:370100", "node:370100"] {
            assert_eq!(transfers_of(net, stranger, &local.settlement_id).await.expect("answered"), vec![], "{stranger}");
            let ids = whole.iter().filter_map(|record| record.transfer.as_ref().map(|transfer| transfer.id.clone())).collect();
            let by_ids = net.as_caller(stranger).ledger().lookup_transfers(ledger::LookupTransfersRequest { selector: Some(Selector::Ids(ledger::TransferIds { ids })) }).await.expect("answered").into_inner().transfers;
            assert_eq!(by_ids, vec![], "{stranger} by ids");
        }

        let operator = transfers_of(net, "operator:dev", &local.settlement_id).await.expect("the operator reads");
        assert_eq!(operator.len(), 1);
        assert_eq!(person_of(&operator[0]), "", "the operator sees no person");
        let mut blanked = whole.clone();
        blanked[0].transfer.as_mut().and_then(|transfer| transfer.settlement.as_mut()).expect("record").person_no.clear();
        assert_eq!(operator, blanked, "the operator sees everything else");

        let cross = settle(net, "X", JINAN, 2).await;
        let jinan = transfers_of(net, "bureau:370100", &cross.settlement_id).await.expect("Jinan reads");
        assert_eq!(jinan.len(), 1);
        assert_eq!(person_of(&jinan[0]), cross.person_no);
    }
}

/// A one-yuan claim of Zibo's first seeded person (an employee) treated in `treatment` at
/// `institution`.
fn claim(treatment: &str, institution: &str) -> settlement::BenefitClaim {
    settlement::BenefitClaim {
        person_no: format!("{ZIBO}0000000001"),
        service_date: yitong_core::today().to_string(),
        insurance_type: identity::InsuranceType::Employee as i32,
        hospital_level: catalog::HospitalLevel::HospitalLevel3 as i32,
        treatment_city: treatment.into(),
        institution_code: institution.into(),
        visit_id: format!("S{treatment}261120000001"),
        amounts: Some(settlement::ClaimAmounts {
            total_amount: "1.00".into(),
            full_self_pay: "0.00".into(),
            over_cap_self_pay: "0.00".into(),
            pre_self_pay: "0.00".into(),
            in_scope_amount: "1.00".into(),
        }),
        use_personal_account: false,
        disease_code: String::new(),
    }
}

/// Asserts a refusal as PERMISSION_DENIED naming `field`.
fn assert_not_the_callers(status: &tonic::Status, field: &str) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "NOT_THE_CALLERS", "{status:?}");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some(field),
        "{status:?}"
    );
}

yitong_sandbox::network_test! {
    /// Proves a node asks only as its own city: Jinan's node quoting or reserving at Zibo's
    /// benefit service a claim treated in Dongying, or one treated in Jinan at a Dongying
    /// hospital, is refused PERMISSION_DENIED naming the field and stores nothing, while
    /// Dongying's node quotes the first and Jinan's node its own claim; and Jinan's node
    /// asking Zibo's identity for a person on behalf of a Zibo hospital is refused the same
    /// way, on behalf of its own city's hospital answered.
    async fn a_node_asks_only_as_its_own_city(net) {
        let jinan = net.node(JINAN);
        let before = net.row_counts().await;
        let dongying_claim = claim("370500", "H37050000001");
        let status = jinan.benefit(ZIBO).quote(settlement::QuoteRequest { claim: Some(dongying_claim.clone()) }).await.unwrap_err();
        assert_not_the_callers(&status, "claim.treatment_city");
        let status = jinan.benefit(ZIBO).quote(settlement::QuoteRequest { claim: Some(claim(JINAN, "H37050000001")) }).await.unwrap_err();
        assert_not_the_callers(&status, "claim.institution_code");
        let reserve = settlement::ReserveRequest {
            message_id: "VIS-RES-1".into(),
            settlement_id: "J3705002611200000001".into(),
            kind: settlement::ReservationKind::Settlement as i32,
            claim: Some(dongying_claim.clone()),
            ..Default::default()
        };
        let status = jinan.benefit(ZIBO).reserve(reserve).await.unwrap_err();
        assert_not_the_callers(&status, "claim.treatment_city");
        assert_eq!(net.row_counts().await, before, "the refusals stored nothing");

        net.node("370500").benefit(ZIBO).quote(settlement::QuoteRequest { claim: Some(dongying_claim) }).await.expect("Dongying's node quotes its own claim");
        jinan.benefit(ZIBO).quote(settlement::QuoteRequest { claim: Some(claim(JINAN, &hospital(JINAN))) }).await.expect("Jinan's node quotes its own claim");

        let lookup = |institution: &str| identity::GetInsuredPersonRequest {
            credential: crate::settlement::card(ZIBO, 1),
            institution_code: institution.into(),
            ..Default::default()
        };
        let status = jinan.identity(ZIBO).get_insured_person(lookup(HIS)).await.unwrap_err();
        assert_not_the_callers(&status, "institution_code");
        jinan.identity(ZIBO).get_insured_person(lookup(&hospital(JINAN))).await.expect("for Jinan's own hospital");
    }
}
