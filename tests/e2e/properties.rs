//! Properties through the whole network: whatever a visit holds and whichever cities treat and
//! insure, settling it and then cancelling it leaves the insured city's running totals (the
//! deductible and cap left, the personal account) and every ledger balance exactly as before.
//! Each case also draws the insured city's filing policy toward the treatment city and the
//! person's filing (any kind, or none): the settlement is priced with the cut the policy gives,
//! or refused NOT_FILED storing nothing. Some cases are chronic-disease visits (medical type
//! 14) of a person the insured city certifies for the drawn disease: they settle against the
//! disease's own totals, which the cancellation restores as exactly, and the fund itemised sums
//! to the fund pay in every case. The treatment city's reconciliation totals of the day (3201)
//! move by exactly the settlement's clearing type and fund lines, and the cancellation takes the
//! amounts back (its row still counts). An ordinary case may first have the insured city's
//! bureau record a version of the patient's policy from today (once a key, as a day takes one
//! version): that Settle, and every later one of the key, is priced under it, which the
//! catalog node's copy of its policies must see the moment it is recorded. The cities are
//! pools: the four pilot cities' and the Shengli Oilfield's, which Dongying's node serves beside
//! Dongying's own, so cases cross two pools of one city and a node shared by both.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use yitong_core::Amount;
use yitong_proto::catalog::v1::{Policy, UpsertPolicyRequest};
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    ClearingTypeTotals, FundTypeTotal, GetBalancesRequest, ReconcileTotalsRequest,
    ReconciliationScope, ReconciliationTotals,
};
use yitong_proto::settlement::v1::{
    BenefitClaim, CancelCertificationRequest, CancelFilingRequest, CertifyRequest, ClaimAmounts,
    FileFilingRequest, FilingKind, FilingPolicy, MedicalType, QuoteRequest, SetFilingPolicyRequest,
    SettleRequest, SettlementSplit, UnfiledVisit,
};
use yitong_sandbox::{Database, PILOT_CITIES, Sandbox};

use crate::settlement::{
    cancel_request, card, fen, hospital, line, register_request, upload_request,
};

/// The pools the cases are drawn from: the four pilot cities' and the Shengli Oilfield's, which
/// the network of these cases serves on Dongying's node (`pools::one_node_for_dongying`), so
/// that random visits cross a shared node and two pools of one city as well.
fn pools() -> Vec<&'static str> {
    PILOT_CITIES
        .iter()
        .copied()
        .chain([crate::pools::OILFIELD])
        .collect()
}

/// Seeded persons whose insurance is active: employees 1, 2, 8 (with an account), residents 3, 4.
const ENTITLED: [u32; 5] = [1, 2, 3, 4, 8];
/// The five diseases of `seeds/diseases.csv`, which every pilot city's policy covers.
const DISEASES: [&str; 5] = ["M03900", "M01600", "M00500", "M07801", "M08300"];
/// Cases per database; each settles and cancels one visit through every service.
const CASES: u32 = 12;

#[derive(Debug, Clone)]
struct Case {
    treatment: usize,
    insured: usize,
    person: u32,
    use_account: bool,
    /// The insured city's filing policy toward the treatment city: 0 waived, 1 required and
    /// the unfiled refused, 2 required and the unfiled cut.
    policy: u8,
    /// The person's filing for the treatment city, by its kind's number; none when absent.
    filed: Option<i32>,
    /// (index into the treatment city's codes, quantity, unit price in millionths of a yuan:
    /// the six fraction digits of the national pric, as per-tablet prices come)
    lines: Vec<(usize, u32, i64)>,
    /// A chronic-disease visit for this disease of `DISEASES`, the person certified for it;
    /// an ordinary outpatient visit when absent.
    disease: Option<usize>,
    /// For an ordinary visit, a version of the patient's policy from today, at this
    /// reimbursement ratio in percent, recorded before the visit (when its key has none yet).
    new_ratio: Option<u32>,
}

impl Case {
    fn disease_code(&self) -> &'static str {
        self.disease.map_or("", |index| DISEASES[index])
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        0..pools().len(),
        0..pools().len(),
        prop::sample::select(ENTITLED.to_vec()),
        any::<bool>(),
        0..3u8,
        prop::option::of(1..=6i32),
        prop::collection::vec((0..200usize, 1..=5u32, 1..=500_000_000i64), 1..=4),
        prop::option::of(0..DISEASES.len()),
        prop::option::of(40..=95u32),
    )
        .prop_map(
            |(
                treatment,
                insured,
                person,
                use_account,
                policy,
                filed,
                lines,
                disease,
                new_ratio,
            )| Case {
                treatment,
                insured,
                person,
                use_account,
                policy,
                filed,
                lines,
                disease,
                new_ratio,
            },
        )
}

/// The first 200 catalog codes of every city, from the seeds.
fn codes() -> HashMap<String, Vec<String>> {
    let items = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("catalog_items.csv"))
        .expect("catalog_items.csv");
    let mut codes: HashMap<String, Vec<String>> = HashMap::new();
    for row in items.lines().skip(1) {
        let mut fields = row.split(',');
        let (Some(city), Some(code)) = (fields.next(), fields.next()) else {
            continue;
        };
        let list = codes.entry(city.to_owned()).or_default();
        if list.len() < 200 {
            list.push(code.to_owned());
        }
    }
    codes
}

/// What the insured city would answer for a one-yuan claim now: its view of the running totals.
async fn totals(net: &Sandbox, case: &Case) -> (String, String, String) {
    let (treatment, insured) = (pools()[case.treatment], pools()[case.insured]);
    let employee = matches!(case.person, 1 | 2 | 8);
    let claim = BenefitClaim {
        person_no: format!("{insured}{:010}", case.person),
        service_date: yitong_core::today().to_string(),
        insurance_type: if employee { 310 } else { 390 },
        hospital_level: 3,
        treatment_city: treatment.into(),
        institution_code: hospital(treatment),
        visit_id: "S000000000000000001".into(),
        amounts: Some(ClaimAmounts {
            total_amount: "1.00".into(),
            full_self_pay: "0.00".into(),
            over_cap_self_pay: "0.00".into(),
            pre_self_pay: "0.00".into(),
            in_scope_amount: "1.00".into(),
        }),
        use_personal_account: true,
        disease_code: case.disease_code().into(),
    };
    // Asked as the treatment city's node: a node quotes only claims treated in its own city.
    let split: SettlementSplit = net
        .node(treatment)
        .benefit(insured)
        .quote(QuoteRequest { claim: Some(claim) })
        .await
        .expect("quoted")
        .into_inner()
        .split
        .expect("split");
    (
        split.deductible_left,
        split.annual_cap_left,
        split.account_balance,
    )
}

/// Every settlement-related account balance of the ledger.
async fn balances(net: &Sandbox) -> HashMap<String, String> {
    let mut ids = Vec::new();
    let pools = pools();
    for &treatment in &pools {
        ids.push(format!("{treatment}.advances"));
        ids.push(format!("{treatment}.pool"));
        for insured in pools.iter().filter(|insured| **insured != treatment) {
            ids.push(format!("{insured}->{treatment}.obligation"));
        }
    }
    let reply = net
        .ledger()
        .get_balances(GetBalancesRequest {
            account_ids: ids,
            cities: vec![],
        })
        .await
        .expect("balances")
        .into_inner();
    reply
        .accounts
        .into_iter()
        .map(|account| (account.id, account.balance))
        .collect()
}

/// Sets the case's filing policy and files its filing (a cross-city case only): the cut the
/// settlement must carry, `None` when it must be refused, and the filing to cancel afterwards.
async fn file(net: &Sandbox, case: &Case, tag: u32) -> (Option<u32>, Option<String>) {
    let (treatment, insured) = (pools()[case.treatment], pools()[case.insured]);
    if treatment == insured {
        return (Some(0), None);
    }
    let mut bureau = net.bureau(insured).filing(insured);
    let policy = FilingPolicy {
        treatment_city: treatment.into(),
        filing_required: case.policy != 0,
        unfiled: if case.policy == 2 {
            UnfiledVisit::RatioCut
        } else {
            UnfiledVisit::Refused
        } as i32,
        unfiled_cut_points: if case.policy == 2 { 15 } else { 0 },
        temporary_cut_points: 5,
    };
    bureau
        .set_filing_policy(SetFilingPolicyRequest {
            message_id: format!("P-FP-{tag}"),
            policy: Some(policy.clone()),
        })
        .await
        .expect("policy set");
    let filing = match case.filed {
        Some(kind) => {
            let today = yitong_core::today().to_string();
            let request = FileFilingRequest {
                message_id: format!("P-FF-{tag}"),
                person_no: format!("{insured}{:010}", case.person),
                kind,
                treatment_city: treatment.into(),
                valid_from: today.clone(),
                valid_until: today,
            };
            Some(
                bureau
                    .file_filing(request)
                    .await
                    .expect("filed")
                    .into_inner()
                    .filing
                    .expect("filing")
                    .filing_id,
            )
        }
        None => None,
    };
    let cut = match (case.policy, case.filed) {
        (0, _) => Some(0),
        (_, Some(kind)) if kind == FilingKind::OtherTemporary as i32 => Some(5),
        (_, Some(_)) => Some(0),
        (1, None) => None,
        (_, None) => Some(15),
    };
    (cut, filing)
}

/// The policy key of a case's patient at a level-3 hospital: insured city, insurance type,
/// person type (the seeds' fixtures: 1 and 8 employees in service, 2 retired, 3 a resident,
/// 4 a retired resident).
fn policy_key(case: &Case) -> (&'static str, i32, i32) {
    let insurance_type = if matches!(case.person, 1 | 2 | 8) {
        310
    } else {
        390
    };
    let person_type = if matches!(case.person, 2 | 4) { 2 } else { 1 };
    (pools()[case.insured], insurance_type, person_type)
}

/// Records the case's new policy version, if it draws one and its key has none from today yet:
/// `recorded` keeps the policy id of each key's version from today.
async fn record_policy(
    net: &Sandbox,
    case: &Case,
    tag: u32,
    recorded: &mut HashMap<(&'static str, i32, i32), String>,
) {
    let key = policy_key(case);
    let (Some(percent), None) = (case.new_ratio, case.disease) else {
        return;
    };
    if recorded.contains_key(&key) {
        return;
    }
    let (insured, insurance_type, person_type) = key;
    let today = yitong_core::today().to_string();
    let reply = net
        .catalog(insured)
        .upsert_policy(UpsertPolicyRequest {
            message_id: format!("P-POL-{tag}"),
            policy: Some(Policy {
                insured_city: insured.into(),
                insurance_type,
                person_type,
                hospital_level: 3,
                deductible: "300.00".into(),
                reimbursement_ratio: format!("0.{percent:02}"),
                annual_cap: "6000.00".into(),
                effective_from: today,
                ..Default::default()
            }),
            reason: "a version from today, drawn".into(),
            operator_id: "bureau-op".into(),
        })
        .await
        .expect("policy version recorded")
        .into_inner();
    recorded.insert(key, reply.policy.expect("policy").policy_id);
}

async fn settle_then_cancel(
    net: &Sandbox,
    codes: &HashMap<String, Vec<String>>,
    case: &Case,
    tag: u32,
    recorded: &mut HashMap<(&'static str, i32, i32), String>,
) {
    let (treatment, insured) = (pools()[case.treatment], pools()[case.insured]);
    record_policy(net, case, tag, recorded).await;
    let (cut, filing) = file(net, case, tag).await;
    let certification = match case.disease {
        Some(_) => Some(
            net.bureau(insured)
                .certification(insured)
                .certify(CertifyRequest {
                    message_id: format!("P-CT-{tag}"),
                    person_no: format!("{insured}{:010}", case.person),
                    disease_code: case.disease_code().into(),
                    valid_from: yitong_core::today().to_string(),
                    valid_until: yitong_core::today().to_string(),
                    institution_codes: vec![],
                })
                .await
                .expect("certified")
                .into_inner()
                .certification
                .expect("certification")
                .certification_id,
        ),
        None => None,
    };
    // A quote of a visit the policy refuses is refused too: its totals are not read.
    let totals_before = match cut {
        Some(_) => Some(totals(net, case).await),
        None => None,
    };
    let balances_before = balances(net).await;
    let day_before = day_lines(net, treatment, format!("P-RT-{tag}-before")).await;
    // Every earlier case was cancelled, so every fund line of the day nets to zero.
    assert!(day_before.fund_types.is_empty(), "{day_before:?}");

    let mut his = net.his_settlement(&hospital(treatment));
    let mut register = register_request(&format!("P-R-{tag}"), treatment, insured, case.person);
    if case.disease.is_some() {
        register.medical_type = MedicalType::ChronicDisease as i32;
        register.disease_code = case.disease_code().into();
    }
    let visit = his
        .register_visit(register)
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    let mut total = 0;
    let lines = case
        .lines
        .iter()
        .enumerate()
        .map(|(index, (code, quantity, price_micro))| {
            // quantity x price in fen, rounded half up to the fen in integers: a millionth of
            // a yuan is a ten-thousandth of a fen.
            let amount = (i64::from(*quantity) * price_micro + 5_000) / 10_000;
            total += amount;
            let code = &codes[treatment][*code % codes[treatment].len()];
            line(
                &format!("{}", index + 1),
                code,
                &quantity.to_string(),
                &format!("{}.{:06}", price_micro / 1_000_000, price_micro % 1_000_000),
                &Amount::from_fen(amount).to_string(),
            )
        })
        .collect();
    his.upload_fee_lines(upload_request(&format!("P-U-{tag}"), &visit, lines))
        .await
        .expect("uploaded");
    let settle = SettleRequest {
        message_id: format!("P-S-{tag}"),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        credential: card(insured, case.person),
        insurance_type: visit.insurance_type,
        total_amount: Amount::from_fen(total).to_string(),
        use_personal_account: case.use_account,
        institution_code: visit.institution_code.clone(),
        operator_id: "op1".into(),
    };
    let settled = his.settle(settle).await;
    let Some(cut) = cut else {
        let status = settled.expect_err("the unfiled are refused");
        crate::support::assert_refused(&status, "NOT_FILED");
        assert_eq!(
            balances(net).await,
            balances_before,
            "a refusal moves nothing: {case:?}"
        );
        cancel_certification(net, case, certification, tag).await;
        return;
    };
    let settlement = settled
        .expect("settled")
        .into_inner()
        .settlement
        .expect("settlement");
    let split = settlement.split.as_ref().expect("split");
    let standing = split.filing.as_ref().expect("the filing standing");
    assert_eq!(standing.ratio_cut_points, cut, "{case:?}");
    assert_eq!(
        fen(&split.total_amount),
        total,
        "the split adds up to the lines"
    );
    assert_eq!(
        fen(&split.fund_pay) + fen(&split.account_pay) + fen(&split.cash_pay),
        total
    );
    assert_eq!(split.disease_code, case.disease_code(), "{case:?}");
    if case.disease.is_none() {
        let today = yitong_core::today().to_string();
        match recorded.get(&policy_key(case)) {
            Some(policy_id) => assert_eq!(&split.policy_id, policy_id, "{case:?}"),
            None => assert!(
                !split.policy_id.ends_with(&today),
                "{case:?}: {}",
                split.policy_id
            ),
        }
    }
    assert_eq!(
        split
            .fund_payments
            .iter()
            .map(|payment| fen(&payment.amount))
            .sum::<i64>(),
        fen(&split.fund_pay),
        "the fund itemised sums to the fund pay: {case:?}"
    );
    let day_settled = day_lines(net, treatment, format!("P-RT-{tag}-settled")).await;
    let (count, fund) = clearing_line(&day_before, settlement.clearing_type);
    assert_eq!(
        clearing_line(&day_settled, settlement.clearing_type),
        (count + 1, fund + fen(&split.fund_pay)),
        "the settlement's clearing type line moved by it: {case:?}"
    );
    let itemised: Vec<(String, String, i64)> = split
        .fund_payments
        .iter()
        .map(|payment| {
            (
                payment.fund_pay_type.clone(),
                payment.disease_code.clone(),
                fen(&payment.amount),
            )
        })
        .collect();
    assert_eq!(
        fund_lines(&day_settled.fund_types),
        itemised,
        "the day's fund lines are the settlement's: {case:?}"
    );
    his.cancel_settlement(cancel_request(&format!("P-C-{tag}"), &settlement))
        .await
        .expect("cancelled");
    let day_after = day_lines(net, treatment, format!("P-RT-{tag}-after")).await;
    assert_eq!(
        clearing_line(&day_after, settlement.clearing_type),
        (count + 2, fund),
        "the cancellation takes the amounts back and counts a row: {case:?}"
    );
    assert!(day_after.fund_types.is_empty(), "{day_after:?}");

    assert_eq!(
        Some(totals(net, case).await),
        totals_before,
        "running totals restored: {case:?}"
    );
    assert_eq!(
        balances(net).await,
        balances_before,
        "ledger balances restored: {case:?}"
    );
    if let Some(filing_id) = filing {
        net.bureau(insured)
            .filing(insured)
            .cancel_filing(CancelFilingRequest {
                message_id: format!("P-CF-{tag}"),
                filing_id,
            })
            .await
            .expect("the filing is cancelled");
    }
    cancel_certification(net, case, certification, tag).await;
}

/// The ledger's totals of the treatment city's day, with their lines by clearing type and fund
/// type, as its bureau reconciles them (3201).
async fn day_lines(net: &Sandbox, treatment: &str, message_id: String) -> ReconciliationTotals {
    let today = yitong_core::today().to_string();
    net.bureau(treatment)
        .ledger()
        .reconcile_totals(ReconcileTotalsRequest {
            message_id,
            scope: Some(ReconciliationScope {
                subject: Some(Subject::TreatmentCity(treatment.into())),
            }),
            from_date: today.clone(),
            to_date: today,
            totals: Some(ReconciliationTotals {
                total_amount: "0.00".into(),
                fund_pay: "0.00".into(),
                account_pay: "0.00".into(),
                cash_pay: "0.00".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("reconciled")
        .into_inner()
        .ledger
        .expect("the ledger's totals")
}

/// The line of `clearing_type` in `totals`, zero when it has none.
fn clearing_line(totals: &ReconciliationTotals, clearing_type: i32) -> (u64, i64) {
    totals
        .clearing_types
        .iter()
        .find(|line| line.clearing_type == clearing_type)
        .map_or((0, 0), |line: &ClearingTypeTotals| {
            (line.count, fen(&line.fund_pay))
        })
}

/// The fund lines as (fund type, disease, fen).
fn fund_lines(lines: &[FundTypeTotal]) -> Vec<(String, String, i64)> {
    lines
        .iter()
        .map(|line| {
            (
                line.fund_pay_type.clone(),
                line.disease_code.clone(),
                fen(&line.amount),
            )
        })
        .collect()
}

/// Cancels the case's certification, if it has one, so a later case of the person may certify
/// the same disease again.
async fn cancel_certification(net: &Sandbox, case: &Case, certification: Option<String>, tag: u32) {
    let Some(certification_id) = certification else {
        return;
    };
    let insured = pools()[case.insured];
    net.bureau(insured)
        .certification(insured)
        .cancel_certification(CancelCertificationRequest {
            message_id: format!("P-CC-{tag}"),
            certification_id,
        })
        .await
        .expect("the certification is cancelled");
}

fn settle_then_cancel_restores_everything(database: Database) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(net) = runtime.block_on(Sandbox::start_network(
        database,
        crate::pools::one_node_for_dongying(),
    )) else {
        return;
    };
    let codes = codes();
    // The runner takes a `Fn`: the counter that keeps message ids apart is shared, not mutable.
    let tag = std::sync::atomic::AtomicU32::new(0);
    // The policy versions recorded from today, by key, across the cases of this network.
    let recorded = std::cell::RefCell::new(HashMap::new());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&cases(), |case| {
        let tag = tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut recorded = recorded.borrow_mut();
        runtime.block_on(settle_then_cancel(&net, &codes, &case, tag, &mut recorded));
        Ok(())
    });
    runtime.block_on(net.shut_down());
    outcome.expect("settle then cancel restores every total and balance");
}

/// Proves, for random visits, city pairs, persons and account choices, on SQLite, that settling
/// and cancelling leaves the running totals and every ledger balance as before.
#[test]
fn settle_then_cancel_restores_everything_on_sqlite() {
    settle_then_cancel_restores_everything(Database::Sqlite);
}

/// The same on PostgreSQL.
#[test]
fn settle_then_cancel_restores_everything_on_postgres() {
    settle_then_cancel_restores_everything(Database::Postgres);
}
