//! The treatment city's SettlementService, as an HIS runs it: register a visit, upload fee lines,
//! pre-settle, settle, replay, cancel and reverse, across every ordered pair of pilot cities; the
//! refusals an HIS meets; and the recovery sweep that resolves a Settle a crash left in doubt.
//! After every workflow the clearing house's ledger agrees with the settlements to the fen.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Request};
use yitong_core::{Amount, Owner, PoolCode, Service};
use yitong_proto::identity::v1::{Credential, InsuranceType, credential::Kind};
use yitong_proto::ledger::v1::{
    GetBalancesRequest, LookupTransfersRequest, TransferStatus, lookup_transfers_request::Selector,
};
use yitong_proto::settlement::v1::settlement_service_server::SettlementService;
use yitong_proto::settlement::v1::{
    CancelFeeLinesRequest, CancelSettlementRequest, CancellationKind, FeeLine,
    GetSettlementRequest, ListSettlementsRequest, MedicalType, PostRequest, PreSettleRequest,
    RegisterVisitRequest, ReservationStatus, ReversalOutcome, ReverseByMessageIdRequest,
    ReversibleTransaction, SettleRequest, Settlement, SettlementStatus, UploadFeeLinesRequest,
    Visit, VoidRequest, get_settlement_request::Key,
};
use yitong_sandbox::{BINZHOU, JINAN, PILOT_CITIES, Sandbox, ZIBO, network_test};
use yitong_settlement::SettlementNode;
use yitong_settlement::treatment::{Started, TreatmentError, TreatmentOptions};
use yitong_store::{Location, PoolLimits, Store};

use crate::support::{assert_invalid, assert_refused, seeded_card};

/// The level-3 hospital of a city: "H37030000001" for Zibo.
pub(crate) fn hospital(city: &str) -> String {
    format!("H{city}00001")
}

/// The person number of the `n`-th seeded person of a city.
fn person_no(city: &str, n: u32) -> String {
    format!("{city}{n:010}")
}

/// The seeded fixtures of each city: 1, 2, 5, 6 and 8 are employees, 3, 4 and 7 residents
/// (`seeds/README.md`).
fn insurance_type(n: u32) -> InsuranceType {
    if matches!(n, 1 | 2 | 5 | 6 | 8) {
        InsuranceType::Employee
    } else {
        InsuranceType::Resident
    }
}

pub(crate) fn card(city: &str, n: u32) -> Option<Credential> {
    Some(Credential {
        kind: Some(Kind::CardNumber(seeded_card(city, n))),
    })
}

pub(crate) fn fen(text: &str) -> i64 {
    Amount::parse_signed(text).expect("amount").fen()
}

pub(crate) fn line(
    serial: &str,
    code: &str,
    quantity: &str,
    unit_price: &str,
    amount: &str,
) -> FeeLine {
    FeeLine {
        serial: serial.into(),
        item_code: code.into(),
        quantity: quantity.into(),
        unit_price: unit_price.into(),
        amount: amount.into(),
        ..Default::default()
    }
}

/// An outpatient visit's lines: an examination above every city's price cap, twenty CT scans
/// (grade A or B by city) and a drug (grade B, or C in Binzhou). 3052.00 yuan in all.
pub(crate) fn visit_lines() -> Vec<FeeLine> {
    vec![
        line("1", "001102000010000", "1", "20.00", "20.00"),
        line("2", "002103000010000", "20", "150.00", "3000.00"),
        line("3", "ZA01AAA001A002000100101", "2", "16.00", "32.00"),
    ]
}

const VISIT_TOTAL: &str = "3052.00";

pub(crate) fn register_request(
    message_id: &str,
    treatment: &str,
    insured: &str,
    n: u32,
) -> RegisterVisitRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    RegisterVisitRequest {
        message_id: message_id.into(),
        person_no: person_no(insured, n),
        credential: card(insured, n),
        insurance_type: insurance_type(n) as i32,
        institution_code: hospital(treatment),
        medical_type: MedicalType::Outpatient as i32,
        began_at: Some(prost_types_timestamp(now as i64 - 60)),
        department_code: "0301".into(),
        department_name: "内科".into(),
        doctor_code: "D001".into(),
        doctor_name: "王医生".into(),
        his_visit_no: format!("HIS-{message_id}"),
        diagnoses: vec![],
        operator_id: "op1".into(),
        disease_code: String::new(),
    }
}

fn prost_types_timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

pub(crate) fn upload_request(
    message_id: &str,
    visit: &Visit,
    lines: Vec<FeeLine>,
) -> UploadFeeLinesRequest {
    UploadFeeLinesRequest {
        message_id: message_id.into(),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        institution_code: visit.institution_code.clone(),
        lines,
        operator_id: "op1".into(),
    }
}

pub(crate) fn settle_request(
    message_id: &str,
    visit: &Visit,
    n: u32,
    use_account: bool,
) -> SettleRequest {
    SettleRequest {
        message_id: message_id.into(),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        credential: card(&visit.insured_city, n),
        insurance_type: visit.insurance_type,
        total_amount: VISIT_TOTAL.into(),
        use_personal_account: use_account,
        institution_code: visit.institution_code.clone(),
        operator_id: "op1".into(),
    }
}

pub(crate) fn cancel_request(message_id: &str, settlement: &Settlement) -> CancelSettlementRequest {
    CancelSettlementRequest {
        message_id: message_id.into(),
        settlement_id: settlement.settlement_id.clone(),
        visit_id: settlement.visit_id.clone(),
        person_no: settlement.person_no.clone(),
        institution_code: settlement.institution_code.clone(),
        reason: "wrong lines".into(),
        operator_id: "op1".into(),
    }
}

/// Registers the `n`-th person of `insured` at `treatment`'s level-3 hospital and uploads the
/// visit's lines.
/// Settles `visit` as an HIS does when the network is loaded: a Settle answered UNAVAILABLE (a
/// call to a peer past its deadline) is sent again under the same message id,
/// SETTLEMENT_IN_PROGRESS is waited out, and after SETTLEMENT_VOIDED the visit is settled again
/// under a new message id. Any other refusal is returned.
pub(crate) async fn settle_as_an_his_would(
    his: &mut yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient<
        yitong_sandbox::Channel,
    >,
    message_id: &str,
    visit: &Visit,
    n: u32,
) -> Result<Settlement, tonic::Status> {
    use tonic_types::StatusExt;
    let mut attempt = 0;
    for _ in 0..100 {
        let id = match attempt {
            0 => message_id.to_owned(),
            _ => format!("{message_id}-{attempt}"),
        };
        match his.settle(settle_request(&id, visit, n, false)).await {
            Ok(reply) => return Ok(reply.into_inner().settlement.expect("settlement")),
            // Shed, or a peer past its deadline: the same call again, after a pause.
            Err(status) if matches!(status.code(), Code::Unavailable | Code::ResourceExhausted) => {
            }
            Err(status) => match status.get_details_error_info().map(|info| info.reason) {
                Some(reason) if reason == "SETTLEMENT_IN_PROGRESS" => {}
                Some(reason) if reason == "SETTLEMENT_VOIDED" => attempt += 1,
                _ => return Err(status),
            },
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{message_id} did not settle in 100 attempts");
}

pub(crate) async fn open_visit(
    net: &Sandbox,
    tag: &str,
    treatment: &str,
    insured: &str,
    n: u32,
) -> Visit {
    let mut his = net.his_settlement(&hospital(treatment));
    let visit = his
        .register_visit(register_request(&format!("R-{tag}"), treatment, insured, n))
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    let uploaded = his
        .upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, visit_lines()))
        .await
        .expect("uploaded")
        .into_inner();
    assert_eq!(uploaded.lines.len(), 3);
    for line in &uploaded.lines {
        let parts = fen(&line.full_self_pay)
            + fen(&line.over_cap_amount)
            + fen(&line.pre_self_pay)
            + fen(&line.in_scope_amount);
        assert_eq!(parts, fen(&line.amount), "a line's parts add up: {line:?}");
    }
    uploaded.visit.expect("visit")
}

/// Asserts the ledger's posted balances of every advances, pool and obligation account equal
/// what the live settlements put there (fund pay plus account pay), and nothing is pending.
pub(crate) async fn assert_ledger_agrees(net: &Sandbox, live: &[Settlement]) {
    let mut expected: HashMap<String, i64> = HashMap::new();
    for settlement in live {
        assert_eq!(settlement.status, SettlementStatus::Settled as i32);
        let split = settlement.split.as_ref().expect("split");
        let pay = fen(&split.fund_pay) + fen(&split.account_pay);
        let (treatment, insured) = (&settlement.treatment_city, &settlement.insured_city);
        *expected.entry(format!("{treatment}.advances")).or_default() += pay;
        let payer = if treatment == insured {
            format!("{treatment}.pool")
        } else {
            format!("{insured}->{treatment}.obligation")
        };
        *expected.entry(payer).or_default() += pay;
    }
    let mut ids = Vec::new();
    for treatment in PILOT_CITIES {
        ids.push(format!("{treatment}.advances"));
        ids.push(format!("{treatment}.pool"));
        for insured in PILOT_CITIES.iter().filter(|insured| **insured != treatment) {
            ids.push(format!("{insured}->{treatment}.obligation"));
        }
    }
    let balances = net
        .ledger()
        .get_balances(GetBalancesRequest {
            account_ids: ids,
            cities: vec![],
        })
        .await
        .expect("balances")
        .into_inner();
    for account in balances.accounts {
        let want = expected.get(&account.id).copied().unwrap_or(0);
        assert_eq!(
            fen(&account.balance),
            want,
            "posted balance of {}",
            account.id
        );
        assert_eq!(
            fen(&account.debits_pending),
            0,
            "nothing pending on {}",
            account.id
        );
        assert_eq!(
            fen(&account.credits_pending),
            0,
            "nothing pending on {}",
            account.id
        );
    }
}

network_test! {
    /// Proves every ordered pair of the four pilot cities settles (12 cross-city, 4 same-city):
    /// PreSettle quotes exactly what Settle binds, the split adds up, a replay of each Settle
    /// returns the first answer, GetSettlement and ListSettlements show it, the ledger's
    /// balances agree with the settlements, and each cancellation reverses it everywhere.
    async fn every_city_pair_settles_replays_and_cancels(net) {
        let mut live = Vec::new();
        for (index, treatment) in PILOT_CITIES.iter().enumerate() {
            for insured in PILOT_CITIES {
                let n = index as u32 + 1;
                let tag = format!("{treatment}-{insured}");
                let visit = open_visit(net, &tag, treatment, insured, n).await;
                assert_eq!(visit.fee_total, VISIT_TOTAL);
                assert_eq!(visit.insured_city, insured);
                let mut his = net.his_settlement(&hospital(treatment));
                let request = settle_request(&format!("S-{tag}"), &visit, n, n == 1);
                let pre = PreSettleRequest {
                    message_id: format!("P-{tag}"),
                    visit_id: visit.visit_id.clone(),
                    person_no: visit.person_no.clone(),
                    credential: request.credential.clone(),
                    insurance_type: request.insurance_type,
                    total_amount: request.total_amount.clone(),
                    use_personal_account: request.use_personal_account,
                    institution_code: request.institution_code.clone(),
                    operator_id: "op1".into(),
                };
                let quoted = his.pre_settle(pre).await.expect("pre-settled").into_inner().split.expect("split");
                let settled = his.settle(request.clone()).await.expect("settled").into_inner().settlement.expect("settlement");
                let split = settled.split.as_ref().expect("split");
                assert_eq!(split, &quoted, "Settle binds what PreSettle quoted for {tag}");
                assert_eq!(fen(&split.fund_pay) + fen(&split.account_pay) + fen(&split.cash_pay), fen(VISIT_TOTAL));
                assert_eq!(settled.status, SettlementStatus::Settled as i32);
                assert_eq!((settled.treatment_city.as_str(), settled.insured_city.as_str()), (*treatment, insured));
                assert!(settled.settlement_id.starts_with(&format!("J{treatment}")) && settled.settlement_id.len() == 20);
                assert!(settled.completed_at.is_some(), "completed at once when every node answers");

                let replay = his.settle(request).await.expect("replayed").into_inner().settlement.expect("settlement");
                assert_eq!(replay, settled, "a replay returns the first answer");
                let by_message = his
                    .get_settlement(GetSettlementRequest { key: Some(Key::MessageId(format!("S-{tag}"))), institution_code: hospital(treatment) })
                    .await
                    .expect("found")
                    .into_inner()
                    .settlement;
                assert_eq!(by_message.as_ref(), Some(&settled));
                live.push(settled);
            }
        }
        assert_ledger_agrees(net, &live).await;

        let today = &live[0].settlement_date;
        let listed = net
            .his_settlement(&hospital(ZIBO))
            .list_settlements(ListSettlementsRequest {
                institution_code: hospital(ZIBO),
                from_date: today.clone(),
                to_date: today.clone(),
                status: SettlementStatus::Settled as i32,
                page_size: 3,
                page_token: String::new(),
            })
            .await
            .expect("listed")
            .into_inner();
        assert_eq!(listed.settlements.len(), 3);
        assert!(!listed.next_page_token.is_empty());
        let rest = net
            .his_settlement(&hospital(ZIBO))
            .list_settlements(ListSettlementsRequest {
                institution_code: hospital(ZIBO),
                from_date: today.clone(),
                to_date: today.clone(),
                status: SettlementStatus::Settled as i32,
                page_size: 3,
                page_token: listed.next_page_token,
            })
            .await
            .expect("listed")
            .into_inner();
        assert_eq!(rest.settlements.len(), 1, "Zibo's hospital settled four visits");
        assert!(rest.next_page_token.is_empty());

        for (index, settlement) in live.iter().enumerate() {
            let mut his = net.his_settlement(&settlement.institution_code);
            let request = cancel_request(&format!("C-{index}"), settlement);
            let cancelled = his.cancel_settlement(request.clone()).await.expect("cancelled").into_inner().settlement.expect("settlement");
            assert_eq!(cancelled.status, SettlementStatus::Cancelled as i32);
            let cancellation = cancelled.cancellation.as_ref().expect("cancellation");
            assert_eq!(cancellation.kind, CancellationKind::CancelSettlement as i32);
            let reversal = cancellation.split.as_ref().expect("reversing split");
            let original = settlement.split.as_ref().expect("split");
            assert_eq!(fen(&reversal.fund_pay), -fen(&original.fund_pay));
            assert_eq!(fen(&reversal.account_pay), -fen(&original.account_pay));
            let replay = his.cancel_settlement(request).await.expect("replayed").into_inner().settlement.expect("settlement");
            assert_eq!(replay, cancelled);
            let status = his.cancel_settlement(cancel_request(&format!("C2-{index}"), settlement)).await.unwrap_err();
            assert_refused(&status, "ALREADY_CANCELLED");
        }
        assert_ledger_agrees(net, &[]).await;
    }
}

network_test! {
    /// Proves ReverseByMessageId both ways: a Settle that never took effect has its message id
    /// marked dead, and the late Settle is refused and stores nothing; a Settle that did take
    /// effect is cancelled (kind REVERSAL), and a replay of the reversal answers the same.
    async fn reversal_before_and_after_the_settle_took_effect(net) {
        let visit = open_visit(net, "rev", ZIBO, JINAN, 1).await;
        let mut his = net.his_settlement(&hospital(ZIBO));
        let reverse = |message_id: &str, original: &str| ReverseByMessageIdRequest {
            message_id: message_id.into(),
            original_message_id: original.into(),
            original_transaction: ReversibleTransaction::Settle as i32,
            institution_code: hospital(ZIBO),
            reason: "timed out".into(),
            operator_id: "op1".into(),
        };

        // Before: the Settle never arrived.
        let dead = his.reverse_by_message_id(reverse("X-1", "S-lost")).await.expect("reversed").into_inner();
        assert_eq!(dead.outcome, ReversalOutcome::MessageIdDead as i32);
        assert!(dead.settlement.is_none());
        let status = his.settle(settle_request("S-lost", &visit, 1, false)).await.unwrap_err();
        assert_refused(&status, "MESSAGE_ID_DEAD");
        let status = his
            .get_settlement(GetSettlementRequest { key: Some(Key::MessageId("S-lost".into())), institution_code: hospital(ZIBO) })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_ledger_agrees(net, &[]).await;

        // After: the Settle took effect, and the HIS never heard.
        let settled = his.settle(settle_request("S-late", &visit, 1, false)).await.expect("settled").into_inner().settlement.expect("settlement");
        assert_ledger_agrees(net, std::slice::from_ref(&settled)).await;
        let reversed = his.reverse_by_message_id(reverse("X-2", "S-late")).await.expect("reversed").into_inner();
        assert_eq!(reversed.outcome, ReversalOutcome::Cancelled as i32);
        let cancelled = reversed.settlement.clone().expect("settlement");
        assert_eq!(cancelled.settlement_id, settled.settlement_id);
        assert_eq!(cancelled.cancellation.as_ref().expect("cancellation").kind, CancellationKind::Reversal as i32);
        let replay = his.reverse_by_message_id(reverse("X-2", "S-late")).await.expect("replayed").into_inner();
        assert_eq!(replay, reversed);
        let again = his.reverse_by_message_id(reverse("X-3", "S-late")).await.expect("reversed again").into_inner();
        assert_eq!(again.outcome, ReversalOutcome::Cancelled as i32, "already cancelled");
        assert_ledger_agrees(net, &[]).await;
    }
}

/// Another designated institution of Zibo than [`hospital`]'s, also level 3.
const ZIBO_OTHER_HOSPITAL: &str = "H37030000002";

network_test! {
    /// Proves message ids are scoped to the institution that sends them (issue 17): two
    /// hospitals of one city send the same message ids for their own visits, and each call is
    /// its own institution's (registration, upload, settle, replay, cancellation, reversal); a
    /// hospital asking by message id about another's Settle is answered NOT_FOUND with the
    /// words an id nobody used gets; and a reversal of another's message id kills it for the
    /// reverser alone, leaving the other's settlement untouched.
    async fn two_hospitals_of_a_city_use_the_same_message_ids(net) {
        let first = hospital(ZIBO);
        let other = ZIBO_OTHER_HOSPITAL.to_owned();
        let mut his_first = net.his_settlement(&first);
        let mut his_other = net.his_settlement(&other);
        let by_message = |message_id: &str, institution: &str| GetSettlementRequest {
            key: Some(Key::MessageId(message_id.into())),
            institution_code: institution.into(),
        };
        let reverse = |message_id: &str, original: &str, institution: &str| ReverseByMessageIdRequest {
            message_id: message_id.into(),
            original_message_id: original.into(),
            original_transaction: ReversibleTransaction::Settle as i32,
            institution_code: institution.into(),
            reason: "timed out".into(),
            operator_id: "op1".into(),
        };

        // Each registers a visit of its own patient and uploads its lines, under the same ids.
        let visit_first = his_first.register_visit(register_request("R-1", ZIBO, JINAN, 1)).await.expect("registered").into_inner().visit.expect("visit");
        let mut registration = register_request("R-1", ZIBO, JINAN, 2);
        registration.institution_code = other.clone();
        let visit_other = his_other.register_visit(registration).await.expect("the other hospital's R-1 is its own").into_inner().visit.expect("visit");
        assert_ne!(visit_first.visit_id, visit_other.visit_id);
        assert_eq!((visit_first.institution_code.as_str(), visit_other.institution_code.as_str()), (first.as_str(), other.as_str()));
        his_first.upload_fee_lines(upload_request("U-1", &visit_first, visit_lines())).await.expect("uploaded");
        his_other.upload_fee_lines(upload_request("U-1", &visit_other, visit_lines())).await.expect("the other hospital's U-1 is its own");

        // An id nobody used, and the same id once another hospital has settled under it, are
        // answered alike: nothing tells the asker that the other hospital used it.
        let never_used = his_other.get_settlement(by_message("S-1", &other)).await.unwrap_err();
        assert_eq!(never_used.code(), Code::NotFound, "{never_used:?}");
        let settled_first = his_first.settle(settle_request("S-1", &visit_first, 1, false)).await.expect("settled").into_inner().settlement.expect("settlement");
        let asked = his_other.get_settlement(by_message("S-1", &other)).await.unwrap_err();
        assert_eq!((asked.code(), asked.message()), (never_used.code(), never_used.message()), "another's id reads as never used");

        // The other hospital settles under the same id: its own settlement, its own replay.
        let settled_other = his_other.settle(settle_request("S-1", &visit_other, 2, false)).await.expect("the other hospital's S-1 is its own").into_inner().settlement.expect("settlement");
        assert_ne!(settled_first.settlement_id, settled_other.settlement_id);
        assert_eq!((settled_other.institution_code.as_str(), settled_other.visit_id.as_str()), (other.as_str(), visit_other.visit_id.as_str()));
        for (his, institution, visit, n, settled) in [
            (&mut his_first, &first, &visit_first, 1, &settled_first),
            (&mut his_other, &other, &visit_other, 2, &settled_other),
        ] {
            let replay = his.settle(settle_request("S-1", visit, n, false)).await.expect("replayed").into_inner().settlement.expect("settlement");
            assert_eq!(&replay, settled, "{institution}'s replay returns its own first answer");
            let found = his.get_settlement(by_message("S-1", institution)).await.expect("found").into_inner().settlement.expect("settlement");
            assert_eq!(found.settlement_id, settled.settlement_id, "{institution} finds its own S-1");
        }
        assert_ledger_agrees(net, &[settled_first.clone(), settled_other.clone()]).await;

        // Each cancels its own settlement under the same cancellation id.
        his_first.cancel_settlement(cancel_request("C-1", &settled_first)).await.expect("cancelled");
        his_other.cancel_settlement(cancel_request("C-1", &settled_other)).await.expect("the other hospital's C-1 is its own");
        assert_ledger_agrees(net, &[]).await;

        // A reversal of an id the reverser never used kills it for the reverser only: the
        // other hospital settles under it, and then reverses it itself.
        let dead = his_first.reverse_by_message_id(reverse("X-1", "S-2", &first)).await.expect("reversed").into_inner();
        assert_eq!(dead.outcome, ReversalOutcome::MessageIdDead as i32);
        let settled_other = his_other.settle(settle_request("S-2", &visit_other, 2, false)).await.expect("another's dead id is not the other hospital's").into_inner().settlement.expect("settlement");
        let status = his_first.settle(settle_request("S-2", &visit_first, 1, false)).await.unwrap_err();
        assert_refused(&status, "MESSAGE_ID_DEAD");
        let reversed = his_other.reverse_by_message_id(reverse("X-1", "S-2", &other)).await.expect("reversed").into_inner();
        assert_eq!(reversed.outcome, ReversalOutcome::Cancelled as i32);
        assert_eq!(reversed.settlement.expect("settlement").settlement_id, settled_other.settlement_id);
        let replay = his_first.reverse_by_message_id(reverse("X-1", "S-2", &first)).await.expect("replayed").into_inner();
        assert_eq!(replay, dead, "the first hospital's X-1 keeps its own first answer");

        // A Settle the first hospital makes is untouched by the other's reversal of its id.
        let settled_first = his_first.settle(settle_request("S-3", &visit_first, 1, false)).await.expect("settled").into_inner().settlement.expect("settlement");
        let reversed = his_other.reverse_by_message_id(reverse("X-2", "S-3", &other)).await.expect("reversed").into_inner();
        assert_eq!(reversed.outcome, ReversalOutcome::MessageIdDead as i32, "the other hospital's S-3 was never used");
        let found = his_first.get_settlement(by_message("S-3", &first)).await.expect("found").into_inner().settlement.expect("settlement");
        assert_eq!(found.status, SettlementStatus::Settled as i32, "still settled");
        assert_ledger_agrees(net, std::slice::from_ref(&settled_first)).await;
    }
}

network_test! {
    /// Proves each bad input gets its precise status and stores nothing: a bad quantity or
    /// amount (INVALID_ARGUMENT naming the line's field), an unknown visit (NOT_FOUND), too many
    /// lines (INVALID_ARGUMENT), lines after settlement and a suspended person or lost card
    /// (FAILED_PRECONDITION), another institution's visit or settlement (PERMISSION_DENIED), a
    /// reused message id with other content (ALREADY_EXISTS). A refused message id is free to
    /// use again, which shows the refusal left no trace.
    async fn bad_input_is_refused_and_stores_nothing(net) {
        let mut his = net.his_settlement(&hospital(ZIBO));

        // Suspended person and lost card, refused by the insured city's identity.
        let status = his.register_visit(register_request("R-bad", ZIBO, JINAN, 5)).await.unwrap_err();
        assert_refused(&status, "INSURANCE_SUSPENDED");
        let status = his.register_visit(register_request("R-bad", ZIBO, JINAN, 6)).await.unwrap_err();
        assert_refused(&status, "CARD_LOST");
        let visit = his.register_visit(register_request("R-bad", ZIBO, JINAN, 1)).await.expect("the refused message id is free").into_inner().visit.expect("visit");

        // Bad lines.
        let cases = [
            (line("1", "001102000010000", "-1", "20.00", "20.00"), "lines[0].quantity"),
            (line("1", "001102000010000", "0", "20.00", "0.00"), "lines[0].quantity"),
            (line("1", "001102000010000", "3", "3.33", "10.00"), "lines[0].amount"),
            (line("1", "001102000010000", "1", "0.1234567", "0.12"), "lines[0].unit_price"),
            (line("1", "001102000010000", "30", "0.123456", "3.71"), "lines[0].amount"),
        ];
        for (bad, field) in cases {
            let status = his.upload_fee_lines(upload_request("U-bad", &visit, vec![bad])).await.unwrap_err();
            assert_invalid(&status, field);
        }
        let too_many: Vec<FeeLine> = (0..101).map(|index| line(&format!("L{index}"), "001102000010000", "1", "1.00", "1.00")).collect();
        let status = his.upload_fee_lines(upload_request("U-bad", &visit, too_many)).await.unwrap_err();
        assert_invalid(&status, "lines");
        let mut unknown = visit.clone();
        unknown.visit_id = "S3703002601010009999".into();
        let status = his.upload_fee_lines(upload_request("U-bad", &unknown, visit_lines())).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let uploaded = his.upload_fee_lines(upload_request("U-bad", &visit, visit_lines())).await.expect("uploaded").into_inner();
        assert_eq!(uploaded.visit.expect("visit").fee_line_count, 3, "no refused line was stored");

        // Another institution's visit.
        let mut other = settle_request("S-bad", &visit, 1, false);
        other.institution_code = "H37030000002".into();
        let status = his.settle(other).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let settled = his.settle(settle_request("S-bad", &visit, 1, false)).await.expect("settled").into_inner().settlement.expect("settlement");

        // The same message id with other content.
        let status = his.settle(settle_request("S-bad", &visit, 1, true)).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

        // Lines after settlement.
        let status = his.upload_fee_lines(upload_request("U-late", &visit, vec![line("9", "001102000010000", "1", "1.00", "1.00")])).await.unwrap_err();
        assert_refused(&status, "VISIT_SETTLED");
        let status = his
            .cancel_fee_lines(CancelFeeLinesRequest {
                message_id: "CL-late".into(),
                visit_id: visit.visit_id.clone(),
                person_no: visit.person_no.clone(),
                institution_code: visit.institution_code.clone(),
                serials: vec![],
                all_lines: true,
                operator_id: "op1".into(),
            })
            .await
            .unwrap_err();
        assert_refused(&status, "VISIT_SETTLED");

        // Another institution's settlement.
        let mut other = cancel_request("C-bad", &settled);
        other.institution_code = "H37030000002".into();
        let status = his.cancel_settlement(other).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_ledger_agrees(net, std::slice::from_ref(&settled)).await;
        his.cancel_settlement(cancel_request("C-bad", &settled)).await.expect("the refused message id is free");
        assert_ledger_agrees(net, &[]).await;
    }
}

/// A settlement node of Binzhou's of the test's own, on a store of its own, talking to the
/// sandbox's network: a node whose steps a test drives one by one, and then "crashes" (drops).
/// A request to a settlement node a test runs itself (no server layer in front), made as
/// Binzhou's hospital, as the layer would have authenticated it.
pub(crate) fn his_request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .extensions_mut()
        .insert(yitong_rpc::Caller::Institution(
            yitong_core::InstitutionCode::parse(&hospital(BINZHOU)).expect("an institution code"),
        ));
    request
}

pub(crate) async fn own_node(net: &Sandbox, dir: &std::path::Path) -> SettlementNode {
    let city = PoolCode::parse(BINZHOU).expect("city");
    let store = Store::open(
        &Location::Sqlite {
            dir: dir.to_owned(),
        },
        Service::Settlement,
        Owner::Pool(city),
        PoolLimits::default(),
    )
    .await
    .expect("store opens");
    store.migrate().await.expect("store migrates");
    let options = TreatmentOptions {
        pending_grace_ms: 0,
        ..TreatmentOptions::default()
    };
    binzhou_node(net, store).with_options(options)
}

/// A settlement node of Binzhou's on `store`, talking to the sandbox's network.
fn binzhou_node(net: &Sandbox, store: Store) -> SettlementNode {
    let city = PoolCode::parse(BINZHOU).expect("city");
    SettlementNode::new(
        city,
        store,
        Arc::new(net.network().clone()),
        &net.peer_access(Owner::Pool(city)),
    )
    .expect("node")
}

/// A settlement node of Binzhou's of the test's own on the sandbox's own Binzhou store
/// (PostgreSQL or SQLite, as the sandbox runs), with the default timings: a node whose groups a
/// test stages itself, beside the sandbox's node of the same store.
pub(crate) async fn city_node(net: &Sandbox) -> SettlementNode {
    let city = PoolCode::parse(BINZHOU).expect("city");
    binzhou_node(net, net.store(Owner::Pool(city), Service::Settlement).await)
}

/// Binzhou's hospital as the server layer authenticates it: what a test runs the requests it
/// sends to a node of its own on the sandbox's store as, so the audit trail names it.
pub(crate) fn binzhou_hospital() -> yitong_rpc::Caller {
    yitong_rpc::Caller::Institution(
        yitong_core::InstitutionCode::parse(&hospital(BINZHOU)).expect("an institution code"),
    )
}

/// Whether `error` is the treatment city's business refusal for `reason`.
pub(crate) fn is_refused(error: &TreatmentError, reason: &str) -> bool {
    matches!(error, TreatmentError::Refused { reason: refused, .. } if *refused == reason)
}

network_test! {
    /// Proves a group of intents, and then a group of records, each booked in one transaction,
    /// answers each request as it would be answered alone, in the order given: the intents of
    /// three visits land with distinct settlement ids; a second Settle of one of those visits in
    /// the same group sees the first's intent and is refused SETTLEMENT_IN_PROGRESS, and one of
    /// a visit settled since it was checked is refused VISIT_SETTLED, both storing nothing
    /// (their message ids stay free); in the group of records, an intent voided since is
    /// refused SETTLEMENT_VOIDED and leaves its visit open, while the others record. Every
    /// settlement then completes, the ledger agrees, and the treatment queue's groups are
    /// counted.
    async fn a_group_books_each_settle_step_as_if_alone(net) {
        binzhou_hospital().scope(group_steps(net)).await;
    }
}

/// The steps of `a_group_books_each_settle_step_as_if_alone`, run as Binzhou's hospital.
async fn group_steps(net: &Sandbox) {
    use crate::protocol::open_own_visit;
    use yitong_telemetry::GroupLabels;
    let labels = GroupLabels {
        owner: BINZHOU.into(),
        queue: "treatment".into(),
    };
    let requests_before = yitong_telemetry::metrics()
        .group_requests
        .get_or_create(&labels)
        .get();
    let node = city_node(net).await;
    let a = open_own_visit(&node, "GA", JINAN, 1).await;
    let b = open_own_visit(&node, "GB", JINAN, 2).await;
    let c = open_own_visit(&node, "GC", JINAN, 3).await;
    let d = open_own_visit(&node, "GD", JINAN, 4).await;
    let e = open_own_visit(&node, "GE", JINAN, 8).await;
    let f = open_own_visit(&node, "GF", JINAN, 1).await;
    let stale = node
        .prepare_intent(&settle_request("S-GD", &d, 4, false))
        .await
        .expect("prepared while open");
    let d_settled = node
        .settle(his_request(settle_request("S-GD0", &d, 4, false)))
        .await
        .expect("settled")
        .into_inner()
        .settlement
        .expect("settlement");
    let writes = vec![
        node.prepare_intent(&settle_request("S-GC", &c, 3, false))
            .await
            .expect("prepared"),
        node.prepare_intent(&settle_request("S-GA", &a, 1, true))
            .await
            .expect("prepared"),
        node.prepare_intent(&settle_request("S-GA2", &a, 1, false))
            .await
            .expect("prepared"),
        stale,
        node.prepare_intent(&settle_request("S-GB", &b, 2, false))
            .await
            .expect("prepared"),
    ];
    let staged = node.stage(&writes).await.expect("staged");
    let mut answers = node.commit(staged).await.expect("committed").into_iter();
    let mut intent = |visit: &Visit| match answers
        .next()
        .expect("an answer per request")
        .expect("an intent")
        .started()
        .expect("step 1")
    {
        Started::Intent(intent) => {
            assert_eq!(
                intent.visit_id(),
                visit.visit_id,
                "answered in the order given"
            );
            intent
        }
        Started::Seen => panic!("a fresh message id starts an intent"),
    };
    let intent_c = intent(&c);
    let intent_a = intent(&a);
    let refused = answers
        .next()
        .expect("an answer")
        .expect_err("a second settle of the visit");
    assert!(
        is_refused(&refused, "SETTLEMENT_IN_PROGRESS"),
        "{refused:?}"
    );
    let refused = answers
        .next()
        .expect("an answer")
        .expect_err("the visit is settled");
    assert!(is_refused(&refused, "VISIT_SETTLED"), "{refused:?}");
    let mut intent = |visit: &Visit| match answers
        .next()
        .expect("an answer")
        .expect("an intent")
        .started()
        .expect("step 1")
    {
        Started::Intent(intent) => {
            assert_eq!(intent.visit_id(), visit.visit_id);
            intent
        }
        Started::Seen => panic!("a fresh message id starts an intent"),
    };
    let intent_b = intent(&b);
    let ids: std::collections::HashSet<&str> = [&intent_a, &intent_b, &intent_c]
        .into_iter()
        .map(|intent| intent.settlement_id())
        .collect();
    assert_eq!(ids.len(), 3, "distinct settlement ids: {ids:?}");

    // An intent voided after its reservation: its record is refused in the group.
    let Started::Intent(intent_e) = node
        .step_intent(&settle_request("S-GE", &e, 8, false))
        .await
        .expect("intent")
    else {
        panic!("a fresh message id starts an intent");
    };
    let reservation_e = node.step_reserve(&intent_e).await.expect("reserved");
    node.void_intent(intent_e.settlement_id(), "test")
        .await
        .expect("voided");
    let mut records = Vec::new();
    for intent in [&intent_c, &intent_e, &intent_a, &intent_b] {
        let reservation = if intent.settlement_id() == intent_e.settlement_id() {
            reservation_e.clone()
        } else {
            node.step_reserve(intent).await.expect("reserved")
        };
        let transfer = node.booking(intent, &reservation).expect("transfer");
        records.push(node.prepare_record(intent, &reservation, &transfer));
    }
    let staged = node.stage(&records).await.expect("staged");
    let mut answers = node.commit(staged).await.expect("committed").into_iter();
    let recorded_c = answers
        .next()
        .expect("answer")
        .expect("C recorded")
        .recorded()
        .expect("step 3");
    let refused = answers.next().expect("answer").expect_err("E was voided");
    assert!(is_refused(&refused, "SETTLEMENT_VOIDED"), "{refused:?}");
    let recorded_a = answers
        .next()
        .expect("answer")
        .expect("A recorded")
        .recorded()
        .expect("step 3");
    let recorded_b = answers
        .next()
        .expect("answer")
        .expect("B recorded")
        .recorded()
        .expect("step 3");
    assert_eq!(recorded_a.settlement_id, intent_a.settlement_id());
    for id in [
        intent_a.settlement_id(),
        intent_b.settlement_id(),
        intent_c.settlement_id(),
    ] {
        node.step_complete(id).await.expect("completed");
    }

    // The refused requests stored nothing: their message ids are free, and the voided
    // record left its visit open.
    let settle_free = |message_id: &'static str, visit: Visit, n: u32| {
        let node = node.clone();
        async move {
            node.settle(his_request(settle_request(message_id, &visit, n, false)))
                .await
                .expect("settled")
                .into_inner()
                .settlement
                .expect("settlement")
        }
    };
    let again_e = settle_free("S-GA2", e.clone(), 8).await;
    let again_f = settle_free("S-GD", f.clone(), 1).await;
    assert_ledger_agrees(
        net,
        &[
            d_settled, recorded_a, recorded_b, recorded_c, again_e, again_f,
        ],
    )
    .await;
    let requests_after = yitong_telemetry::metrics()
        .group_requests
        .get_or_create(&labels)
        .get();
    assert!(
        requests_after >= requests_before + 5 + 4,
        "the treatment queue's requests are counted: {requests_before} then {requests_after}"
    );
    node.store().close().await;
}

network_test! {
    /// Proves the recovery sweep resolves a Settle a crash cut off: one a node before issue 21
    /// left after the insured city reserved and the ledger booked (PENDING) is voided at the
    /// insured city, in the ledger and locally; one left after it was recorded (RECORDED) is
    /// posted at the insured city, booked posted in the ledger and completed here.
    async fn recovery_resolves_settles_left_in_doubt(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await;
        let register = |tag: &str| register_request(&format!("R-{tag}"), BINZHOU, JINAN, 1);
        let visit = node.register_visit(his_request(register("crash"))).await.expect("registered").into_inner().visit.expect("visit");
        node.upload_fee_lines(his_request(upload_request("U-crash", &visit, visit_lines()))).await.expect("uploaded");

        // A node before issue 21 cut off after its step 3: reserved at Jinan and booked pending
        // in the ledger.
        let Started::Intent(intent) = node.step_intent(&settle_request("S-crash", &visit, 1, true)).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        let reservation = node.step_reserve(&intent).await.expect("reserved");
        assert_eq!(reservation.status, ReservationStatus::Reserved as i32);
        node.step_book(&intent, &reservation).await.expect("booked");
        let doomed = intent.settlement_id().to_owned();

        let report = node.recover().await.expect("swept");
        assert_eq!((report.voided, report.completed, report.left), (1, 0, 0));
        let transfers = net
            .ledger()
            .lookup_transfers(LookupTransfersRequest { selector: Some(Selector::SettlementId(doomed.clone())) })
            .await
            .expect("looked up")
            .into_inner()
            .transfers;
        assert_eq!(transfers.len(), 1);
        assert_eq!(transfers[0].status, TransferStatus::Voided as i32, "voided in the ledger");
        let void = VoidRequest { message_id: "V-check".into(), settlement_id: doomed.clone(), reason: "check".into() };
        let held = net.benefit(JINAN).void(void).await.expect("void is idempotent").into_inner().reservation.expect("reservation");
        assert_eq!(held.status, ReservationStatus::Voided as i32, "voided at the insured city");
        let status = node.settle(his_request(settle_request("S-crash", &visit, 1, true))).await.unwrap_err();
        assert_refused(&status, "SETTLEMENT_VOIDED");
        assert_ledger_agrees(net, &[]).await;

        // Cut off after step 3: recorded here, nothing posted or booked yet.
        let Started::Intent(intent) = node.step_intent(&settle_request("S-crash-2", &visit, 1, true)).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        let reservation = node.step_reserve(&intent).await.expect("reserved");
        let transfer = node.booking(&intent, &reservation).expect("transfer");
        node.step_record(&intent, &reservation, &transfer).await.expect("recorded");
        let recorded = intent.settlement_id().to_owned();

        let report = node.recover().await.expect("swept");
        assert_eq!((report.voided, report.completed, report.left), (0, 1, 0));
        let transfers = net
            .ledger()
            .lookup_transfers(LookupTransfersRequest { selector: Some(Selector::SettlementId(recorded.clone())) })
            .await
            .expect("looked up")
            .into_inner()
            .transfers;
        assert_eq!(transfers.len(), 1);
        assert_eq!(transfers[0].status, TransferStatus::Posted as i32, "posted in the ledger");
        let post = PostRequest { message_id: "P-check".into(), settlement_id: recorded.clone() };
        let posted = net.benefit(JINAN).post(post).await.expect("post is idempotent").into_inner().reservation.expect("reservation");
        assert_eq!(posted.status, ReservationStatus::Posted as i32, "posted at the insured city");
        let settlement = node
            .get_settlement(his_request(GetSettlementRequest { key: Some(Key::SettlementId(recorded.clone())), institution_code: hospital(BINZHOU) }))
            .await
            .expect("found")
            .into_inner()
            .settlement
            .expect("settlement");
        assert!(settlement.completed_at.is_some());
        let replay = node.settle(his_request(settle_request("S-crash-2", &visit, 1, true))).await.expect("replayed").into_inner().settlement;
        assert_eq!(replay.as_ref(), Some(&settlement), "the replay answers from the record");
        assert_ledger_agrees(net, std::slice::from_ref(&settlement)).await;

        node.cancel_settlement(his_request(cancel_request("C-crash", &settlement))).await.expect("cancelled");
        assert_ledger_agrees(net, &[]).await;
        node.store().close().await;
    }
}

network_test! {
    /// Proves the visit and fee-line rules: a hospital not networked for cross-city settlement
    /// registers its own city's insured but refuses another city's; a line serial is used once
    /// per visit, even after its line is cancelled (ALREADY_EXISTS); cancelled lines leave the
    /// total; a visit without live lines cannot be priced; a visit holds at most 500 live lines;
    /// the HIS's total must match the lines; a cancelled visit takes no more lines.
    async fn visits_and_fee_lines_follow_the_rules(net) {
        // Every step is the township hospital's own.
        let township = "H37030000011";
        let mut his = net.his_settlement(township);
        let mut foreign = register_request("R-town-1", ZIBO, JINAN, 1);
        foreign.institution_code = township.into();
        let status = his.register_visit(foreign).await.unwrap_err();
        assert_refused(&status, "INSTITUTION_NOT_NETWORKED");
        let mut local = register_request("R-town-1", ZIBO, ZIBO, 1);
        local.institution_code = township.into();
        let visit = his.register_visit(local).await.expect("same-city visits need no network").into_inner().visit.expect("visit");
        assert_eq!(visit.hospital_level, 1, "the level comes from the catalog's institution");
        assert!(visit.visit_id.starts_with(&format!("S{ZIBO}")) && visit.visit_id.len() == 20);

        his.upload_fee_lines(upload_request("U-town-1", &visit, visit_lines())).await.expect("uploaded");
        let status = his.upload_fee_lines(upload_request("U-town-2", &visit, vec![line("2", "001102000010000", "1", "1.00", "1.00")])).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        let cancel = |message_id: &str, serials: Vec<String>, all_lines: bool| CancelFeeLinesRequest {
            message_id: message_id.into(),
            visit_id: visit.visit_id.clone(),
            person_no: visit.person_no.clone(),
            institution_code: visit.institution_code.clone(),
            serials,
            all_lines,
            operator_id: "op1".into(),
        };
        let after = his.cancel_fee_lines(cancel("CL-1", vec!["2".into()], false)).await.expect("cancelled").into_inner();
        assert_eq!(after.cancelled_serials, ["2"]);
        let after = after.visit.expect("visit");
        assert_eq!((after.fee_line_count, after.fee_total.as_str()), (2, "52.00"));
        let status = his.upload_fee_lines(upload_request("U-town-3", &visit, vec![line("2", "001102000010000", "1", "1.00", "1.00")])).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "a cancelled line's serial stays used: {status:?}");
        let mut wrong_total = settle_request("S-town-1", &visit, 1, false);
        wrong_total.total_amount = VISIT_TOTAL.into();
        let status = his.settle(wrong_total).await.unwrap_err();
        assert_invalid(&status, "total_amount");

        his.cancel_fee_lines(cancel("CL-2", vec![], true)).await.expect("cancelled every line");
        let mut empty = settle_request("S-town-1", &visit, 1, false);
        empty.total_amount = "0.00".into();
        let status = his.settle(empty).await.unwrap_err();
        assert_refused(&status, "NO_FEE_LINES");

        for batch in 0..5 {
            let lines = (0..100).map(|index| line(&format!("B{batch}-{index}"), "001102000010000", "1", "1.00", "1.00")).collect();
            his.upload_fee_lines(upload_request(&format!("U-batch-{batch}"), &visit, lines)).await.expect("within the visit's limit");
        }
        let status = his.upload_fee_lines(upload_request("U-batch-5", &visit, vec![line("B5", "001102000010000", "1", "1.00", "1.00")])).await.unwrap_err();
        assert_refused(&status, "TOO_MANY_LINES");

        let cancelled = his
            .cancel_visit(yitong_proto::settlement::v1::CancelVisitRequest {
                message_id: "CV-1".into(),
                visit_id: visit.visit_id.clone(),
                person_no: visit.person_no.clone(),
                institution_code: visit.institution_code.clone(),
                reason: "patient left".into(),
                operator_id: "op1".into(),
            })
            .await
            .expect("cancelled")
            .into_inner()
            .visit
            .expect("visit");
        assert_eq!(cancelled.status, yitong_proto::settlement::v1::VisitStatus::Cancelled as i32);
        let status = his.upload_fee_lines(upload_request("U-gone", &visit, vec![line("Z", "001102000010000", "1", "1.00", "1.00")])).await.unwrap_err();
        assert_refused(&status, "VISIT_CANCELLED");
        assert_ledger_agrees(net, &[]).await;
    }
}

/// Jinan's annual cap for employees in service at level-3 hospitals on `date`, in fen, from
/// the seeds.
fn jinan_annual_cap_fen(date: &str) -> i64 {
    let policies = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("policies.csv"))
        .expect("policies.csv");
    let row = policies
        .lines()
        .filter(|line| line.starts_with("370100,310,in_service,3,"))
        .rfind(|line| line.split(',').nth(7) <= Some(date))
        .expect("Jinan has an employee policy for level 3");
    fen(row.split(',').nth(6).expect("annual cap"))
}

network_test! {
    /// Proves the annual cap holds under concurrency across cities: 200 Settles for one Jinan
    /// employee, racing at the hospitals of all four cities, never take the fund past the cap,
    /// apply the cap exactly once the claims exceed it, and the ledger agrees with every one.
    /// A Settle answered UNAVAILABLE (the ledger's queue of 200 bookings past a call's 3 s
    /// deadline, on a loaded machine) is retried as an HIS would.
    async fn two_hundred_concurrent_settles_never_pass_the_cap(net) {
        let mut visits = Vec::new();
        for index in 0..200 {
            let city = PILOT_CITIES[index % PILOT_CITIES.len()];
            visits.push(open_visit(net, &format!("cap-{index}"), city, JINAN, 1).await);
        }
        let mut settles = tokio::task::JoinSet::new();
        for (index, visit) in visits.into_iter().enumerate() {
            let mut his = net.his_settlement(&visit.institution_code);
            settles.spawn(async move { settle_as_an_his_would(&mut his, &format!("S-cap-{index}"), &visit, 1).await });
        }
        let mut settled = Vec::new();
        while let Some(outcome) = settles.join_next().await {
            settled.push(outcome.expect("task").expect("every Settle succeeds"));
        }
        let cap = jinan_annual_cap_fen(&settled[0].settlement_date);
        let fund_total: i64 = settled.iter().map(|s| fen(&s.split.as_ref().expect("split").fund_pay)).sum();
        assert!(fund_total <= cap, "fund paid {fund_total} past the cap {cap}");
        assert_eq!(fund_total, cap, "200 claims of 3052.00 exceed the cap, which is used up exactly");
        let cap_left = settled.iter().map(|s| fen(&s.split.as_ref().expect("split").annual_cap_left)).min();
        assert_eq!(cap_left, Some(0));
        assert_ledger_agrees(net, &settled).await;
    }
}

network_test! {
    /// Proves completion survives every hold lapsing: a settlement recorded by a node before
    /// issue 21 (which booked the transfer pending) and then left until both the insured city's
    /// reservation and the ledger's pending transfer expired is still
    /// completed by the sweep: the late Post revives the reservation, and the transfer is booked
    /// again, posted, under its second derived id.
    async fn completion_after_every_hold_expired_still_completes(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await.with_options(TreatmentOptions {
            reservation_timeout_seconds: 1,
            transfer_timeout_seconds: 1,
            pending_grace_ms: 0,
            ..TreatmentOptions::default()
        });
        let request = register_request("R-slow", BINZHOU, JINAN, 2);
        let visit = node.register_visit(his_request(request)).await.expect("registered").into_inner().visit.expect("visit");
        node.upload_fee_lines(his_request(upload_request("U-slow", &visit, visit_lines()))).await.expect("uploaded");
        let Started::Intent(intent) = node.step_intent(&settle_request("S-slow", &visit, 2, true)).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        let reservation = node.step_reserve(&intent).await.expect("reserved");
        // Booked pending and recorded by a node before issue 21; the pending transfer lapses.
        let transfer = node.step_book(&intent, &reservation).await.expect("booked");
        node.step_record(&intent, &reservation, &transfer).await.expect("recorded");
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

        let report = node.recover().await.expect("swept");
        assert_eq!((report.voided, report.completed, report.left), (0, 1, 0));
        let id = intent.settlement_id().to_owned();
        let transfers = net
            .ledger()
            .lookup_transfers(LookupTransfersRequest { selector: Some(Selector::SettlementId(id.clone())) })
            .await
            .expect("looked up")
            .into_inner()
            .transfers;
        let statuses: Vec<i32> = transfers.iter().map(|transfer| transfer.status).collect();
        assert_eq!(statuses, [TransferStatus::Expired as i32, TransferStatus::Posted as i32]);
        let post = PostRequest { message_id: "P-slow".into(), settlement_id: id.clone() };
        let posted = net.benefit(JINAN).post(post).await.expect("posted").into_inner().reservation.expect("reservation");
        assert_eq!(posted.status, ReservationStatus::Posted as i32);
        let settlement = node
            .get_settlement(his_request(GetSettlementRequest { key: Some(Key::SettlementId(id)), institution_code: hospital(BINZHOU) }))
            .await
            .expect("found")
            .into_inner()
            .settlement
            .expect("settlement");
        assert!(settlement.completed_at.is_some());
        assert_ledger_agrees(net, std::slice::from_ref(&settlement)).await;
        node.store().close().await;
    }
}

/// Visits and reservations as the settlement store held them before their states were words
/// (migrations up to 0005): one row of each number each column allowed.
fn states_as_numbers() -> String {
    let mut sql = String::from(
        "INSERT INTO visits (visit_id, institution_code, person_no, insured_city, insurance_type, \
         hospital_level, service_date, status, settlement_id, registered, registered_at_ms) VALUES \
         ('V1', 'H37090000001', '3701000000000001', '370100', 310, 3, '2026-03-01', 1, NULL, '', 1), \
         ('V2', 'H37090000001', '3701000000000001', '370100', 310, 3, '2026-03-01', 2, 'J2', '', 1), \
         ('V3', 'H37090000001', '3701000000000001', '370100', 310, 3, '2026-03-01', 3, NULL, '', 1);\n",
    );
    for (id, kind, status) in [("J1", 1, 1), ("J2", 1, 2), ("J3", 2, 3), ("J4", 0, 3)] {
        sql.push_str(&format!(
            "INSERT INTO reservations (settlement_id, kind, original_settlement_id, status, person_no, \
             benefit_year, treatment_city, institution_code, visit_id, message_id, request_digest, \
             total_fen, full_self_pay_fen, over_cap_self_pay_fen, pre_self_pay_fen, in_scope_fen, \
             policy_id, policy_deductible_fen, policy_ratio, policy_annual_cap_fen, insurance_type, \
             use_personal_account, before_deductible_used_fen, before_fund_paid_fen, \
             before_balance_fen, deductible_applied_fen, fund_pay_fen, account_pay_fen, split, \
             reserved_at_ms, expires_at_ms) VALUES ('{id}', {kind}, NULL, {status}, \
             '3701000000000001', 2026, '370900', 'H37090000001', 'V2', 'M-{id}', '', 0, 0, 0, 0, 0, \
             '', 0, '0', 0, 310, 0, 0, 0, 0, 0, 0, 0, '', 1, 1);\n"
        ));
    }
    sql
}

network_test! {
    /// Proves the settlement store an older release left, its visits' and reservations' states
    /// stored as numbers, reads them as words once migrated (settlement 0006), and that the
    /// CHECK constraints then refuse a number.
    async fn states_stored_as_numbers_migrate_to_words(net) {
        let store = crate::support::store_no_server_runs(net, Service::Settlement).await;
        crate::support::migrate_through(&store, 5).await;
        crate::support::execute_script(&store, &states_as_numbers()).await;
        store.migrate().await.expect("the later migrations run");

        let visits: Vec<(String, String)> = yitong_store::sqlx::query_as("SELECT visit_id, status FROM visits ORDER BY visit_id")
            .fetch_all(store.pool()).await.expect("visits read");
        let words = |rows: &[(&str, &str)]| rows.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>();
        assert_eq!(visits, words(&[("V1", "open"), ("V2", "settled"), ("V3", "cancelled")]));
        let reservations: Vec<(String, String, String)> =
            yitong_store::sqlx::query_as("SELECT settlement_id, kind, status FROM reservations ORDER BY settlement_id")
                .fetch_all(store.pool()).await.expect("reservations read");
        let expected = [
            ("J1", "settlement", "reserved"),
            ("J2", "settlement", "posted"),
            ("J3", "cancellation", "voided"),
            ("J4", "tombstone", "voided"),
        ];
        assert_eq!(reservations, expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));

        for refused in [
            "UPDATE visits SET status = '2' WHERE visit_id = 'V1'",
            "UPDATE reservations SET status = '2' WHERE settlement_id = 'J1'",
            "UPDATE reservations SET kind = '1' WHERE settlement_id = 'J1'",
        ] {
            let result = yitong_store::sqlx::query(refused).execute(store.pool()).await;
            assert!(result.is_err(), "{refused} was not refused");
        }
        store.close().await;
    }
}

/// Claims as the settlement store held them before message ids were scoped by institution
/// (migrations up to 0007), keyed by message id alone: one whose institution the settlement
/// written under it says, one a reversal's dead mark says, one only its audit row says, and one
/// nothing says.
const CLAIMS_PER_CITY: &str = "\
INSERT INTO settlements (settlement_id, kind, visit_id, institution_code, insured_city, person_no, \
 message_id, phase, reserve_request, settlement_date, created_at_ms) VALUES ('J1', 'settlement', \
 'V1', 'H37090000001', '370100', '3701000000000001', 'S-settled', 'completed', '', '2026-01-05', 1);
INSERT INTO dead_message_ids (message_id, institution_code, dead_at_ms) VALUES ('S-dead', 'H37090000002', 2);
INSERT INTO audit_trail (audit_id, recorded_at_ms, actor, actor_city, rpc, message_id) VALUES \
 ('01900000-0000-7000-8000-000000000001', 3, 'institution:H37090000003', '370900', 'RegisterVisit', 'R-visit');
INSERT INTO audit_trail (audit_id, recorded_at_ms, actor, actor_city, rpc, message_id) VALUES \
 ('01900000-0000-7000-8000-000000000002', 4, 'node:370100', '370100', 'Reserve', 'R-orphan');
INSERT INTO message_replies (message_id, rpc, request_digest, reply, created_at_ms) VALUES \
 ('S-settled', 'Settle', 'd1', '', 1);
INSERT INTO message_replies (message_id, rpc, request_digest, reply, created_at_ms) VALUES \
 ('S-dead', 'Settle', 'dead', '', 2);
INSERT INTO message_replies (message_id, rpc, request_digest, reply, created_at_ms) VALUES \
 ('R-visit', 'RegisterVisit', 'd3', '', 3);
INSERT INTO message_replies (message_id, rpc, request_digest, reply, created_at_ms) VALUES \
 ('R-orphan', 'RegisterVisit', 'd4', '', 4);
";

network_test! {
    /// Proves the settlement store an older release left, its message ids unique per city,
    /// keys them by institution once migrated (settlement 0008): each claim takes the
    /// institution of its settlement, of its dead mark or of its claim's audit row (one with
    /// none of them keeps an empty institution, which no request names), and afterwards two
    /// institutions may hold the same message id in every table keyed by it, one institution
    /// still only once.
    async fn message_ids_of_an_older_store_migrate_to_their_institutions(net) {
        let store = crate::support::store_no_server_runs(net, Service::Settlement).await;
        crate::support::migrate_through(&store, 7).await;
        crate::support::execute_script(&store, CLAIMS_PER_CITY).await;
        store.migrate().await.expect("the later migrations run");

        let claims: Vec<(String, String, String)> = yitong_store::sqlx::query_as(
            "SELECT message_id, institution_code, request_digest FROM message_replies ORDER BY message_id",
        )
        .fetch_all(store.pool())
        .await
        .expect("claims read");
        let expected = [
            ("R-orphan", "", "d4"),
            ("R-visit", "H37090000003", "d3"),
            ("S-dead", "H37090000002", "dead"),
            ("S-settled", "H37090000001", "d1"),
        ];
        assert_eq!(claims, expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));

        let same_id_elsewhere = [
            "INSERT INTO message_replies (institution_code, message_id, rpc, request_digest, reply, created_at_ms) \
             VALUES ('H37090000002', 'S-settled', 'Settle', 'd5', '', 5)",
            "INSERT INTO dead_message_ids (institution_code, message_id, dead_at_ms) VALUES ('H37090000001', 'S-dead', 6)",
            "INSERT INTO settlements (settlement_id, kind, visit_id, institution_code, insured_city, person_no, \
             message_id, phase, reserve_request, settlement_date, created_at_ms) VALUES ('J2', 'settlement', \
             'V2', 'H37090000002', '370100', '3701000000000002', 'S-settled', 'pending', '', '2026-01-05', 7)",
        ];
        for statement in same_id_elsewhere {
            yitong_store::sqlx::query(statement).execute(store.pool()).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
        let same_id_again = [
            "INSERT INTO message_replies (institution_code, message_id, rpc, request_digest, reply, created_at_ms) \
             VALUES ('H37090000001', 'S-settled', 'Settle', 'd8', '', 8)",
            "INSERT INTO dead_message_ids (institution_code, message_id, dead_at_ms) VALUES ('H37090000002', 'S-dead', 9)",
            "INSERT INTO settlements (settlement_id, kind, visit_id, institution_code, insured_city, person_no, \
             message_id, phase, reserve_request, settlement_date, created_at_ms) VALUES ('J3', 'settlement', \
             'V3', 'H37090000001', '370100', '3701000000000003', 'S-settled', 'pending', '', '2026-01-05', 10)",
        ];
        for statement in same_id_again {
            let result = yitong_store::sqlx::query(statement).execute(store.pool()).await;
            assert!(result.is_err(), "{statement} was not refused");
        }
        store.close().await;
    }
}
