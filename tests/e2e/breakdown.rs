//! The fund itemised in reconciliation and clearing (#18): a treatment city's day of ordinary
//! (clearing type 11), pharmacy (41) and chronic-disease (14) settlements from other cities,
//! cancellations among them, reconciled (3201) with its totals broken down by clearing type and
//! its fund pay by fund type and disease, each line summing to the totals to the fen, and a
//! submitted breakdown that differs named line by line; the clearing extract (3260) carries each
//! row's clearing type and fund lines; a closed month's statement breaks each pair's obligation
//! down the same way, the net positions unchanged.

use std::collections::BTreeMap;

use yitong_proto::ledger::v1::{
    ClearingPeriod, ClearingType, ClearingTypeTotals, FundTypeTotal, GetClearingStatementRequest,
    ListClearingDetailsRequest, ReconcileTotalsResponse, ReconciliationFigure,
    ReconciliationResult, ReconciliationTotals, SettlementFundPayment, Transfer,
};
use yitong_proto::settlement::v1::{BenefitRefusalReason as Reason, MedicalType, Settlement};
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, Sandbox, ZIBO, network_test};

use crate::disease::{
    HYPERTENSION, certify, certify_request, check_reasons, disease_visit, reconcile_zibo_day,
    settle,
};
use crate::month::{
    book, cancellation, close_october, confirm_and_apply, october, october_day, settlement,
};
use crate::settlement::{
    cancel_request, fen, hospital, line, register_request, settle_request, upload_request,
};
use crate::support::{assert_invalid, yuan};

/// Zibo's designated pharmacy (`seeds/institutions.csv`).
const ZIBO_PHARMACY: &str = "P37030000001";

/// Settles an ordinary outpatient visit of `insured`'s `n`-th person at Zibo's hospital.
async fn ordinary(net: &Sandbox, tag: &str, insured: &str, n: u32) -> Settlement {
    crate::filing::settle(net, tag, ZIBO, insured, n)
        .await
        .expect("settled")
}

/// Settles a purchase (medical type 41) of `insured`'s `n`-th person at Zibo's pharmacy.
async fn purchase(net: &Sandbox, tag: &str, insured: &str, n: u32) -> Settlement {
    let mut his = net.his_settlement(ZIBO_PHARMACY);
    let mut register = register_request(&format!("R-{tag}"), ZIBO, insured, n);
    register.institution_code = ZIBO_PHARMACY.into();
    register.medical_type = MedicalType::Pharmacy as i32;
    let visit = his
        .register_visit(register)
        .await
        .expect("registered at the pharmacy")
        .into_inner()
        .visit
        .expect("visit");
    let drug = line("1", "ZA01AAA001A002000100101", "2", "16.00", "32.00");
    his.upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, vec![drug]))
        .await
        .expect("uploaded");
    let mut settle = settle_request(&format!("S-{tag}"), &visit, n, false);
    settle.total_amount = "32.00".into();
    his.settle(settle)
        .await
        .expect("settled at the pharmacy")
        .into_inner()
        .settlement
        .expect("settlement")
}

async fn cancel(net: &Sandbox, tag: &str, settled: &Settlement) {
    net.his_settlement(&settled.institution_code)
        .cancel_settlement(cancel_request(&format!("C-{tag}"), settled))
        .await
        .expect("cancelled");
}

/// Figures in fen: count, total, fund, account, cash.
type Figures = (u64, i64, i64, i64, i64);

fn add(sum: &mut Figures, sign: i64, settled: &Settlement) {
    let split = settled.split.as_ref().expect("split");
    sum.0 += 1;
    sum.1 += sign * fen(&split.total_amount);
    sum.2 += sign * fen(&split.fund_pay);
    sum.3 += sign * fen(&split.account_pay);
    sum.4 += sign * fen(&split.cash_pay);
}

/// What the day's rows add up to, worked out from the HIS's own replies: totals, totals per
/// clearing type, and net fund pay per (fund type, disease), lines netting to zero left out.
struct Expected {
    totals: Figures,
    by_type: BTreeMap<i32, Figures>,
    by_fund: BTreeMap<(String, String), i64>,
}

impl Expected {
    fn of(settled: &[&Settlement], cancelled: &[&Settlement]) -> Expected {
        let mut expected = Expected {
            totals: Figures::default(),
            by_type: BTreeMap::new(),
            by_fund: BTreeMap::new(),
        };
        for (sign, rows) in [(1, settled), (-1, cancelled)] {
            for row in rows {
                add(&mut expected.totals, sign, row);
                add(
                    expected.by_type.entry(row.clearing_type).or_default(),
                    sign,
                    row,
                );
                for payment in &row.split.as_ref().expect("split").fund_payments {
                    let key = (payment.fund_pay_type.clone(), payment.disease_code.clone());
                    *expected.by_fund.entry(key).or_default() += sign * fen(&payment.amount);
                }
            }
        }
        expected.by_fund.retain(|_, fen| *fen != 0);
        expected
    }

    fn totals(&self) -> ReconciliationTotals {
        let (count, total, fund, account, cash) = self.totals;
        ReconciliationTotals {
            count,
            total_amount: yuan(total),
            fund_pay: yuan(fund),
            account_pay: yuan(account),
            cash_pay: yuan(cash),
            clearing_types: self
                .by_type
                .iter()
                .map(
                    |(clearing_type, (count, total, fund, account, cash))| ClearingTypeTotals {
                        clearing_type: *clearing_type,
                        count: *count,
                        total_amount: yuan(*total),
                        fund_pay: yuan(*fund),
                        account_pay: yuan(*account),
                        cash_pay: yuan(*cash),
                    },
                )
                .collect(),
            fund_types: self
                .by_fund
                .iter()
                .map(|((fund_pay_type, disease_code), fen)| FundTypeTotal {
                    fund_pay_type: fund_pay_type.clone(),
                    disease_code: disease_code.clone(),
                    amount: yuan(*fen),
                })
                .collect(),
        }
    }
}

/// Zibo's bureau reconciles today's totals as treatment city, all types.
async fn reconcile(
    net: &Sandbox,
    message_id: &str,
    totals: ReconciliationTotals,
) -> Result<ReconcileTotalsResponse, tonic::Status> {
    reconcile_zibo_day(net, message_id, ClearingType::Unspecified, totals).await
}

/// A break's line as "clr_type 14" or "fund 310100/M03900", with its figures.
fn named(reply: &ReconcileTotalsResponse) -> Vec<(String, Vec<ReconciliationFigure>)> {
    reply
        .mismatched_lines
        .iter()
        .map(|line| {
            let name = if line.fund_pay_type.is_empty() {
                format!("clr_type {}", line.clearing_type)
            } else {
                format!("fund {}/{}", line.fund_pay_type, line.disease_code)
            };
            (name, line.mismatched_figures().collect())
        })
        .collect()
}

fn sum_fund_lines(lines: &[SettlementFundPayment]) -> i64 {
    lines.iter().map(|line| fen(&line.amount)).sum()
}

network_test! {
    /// Proves a day at Zibo of an ordinary visit of a Jinan employee and one of a Dongying
    /// resident (clearing type 11), a Binzhou person's pharmacy purchase (41) and two Jinan persons'
    /// hypertension visits (14), the first using up the disease's quota (the benefit check then
    /// names DISEASE_QUOTA_EXHAUSTED), one ordinary visit and one hypertension visit cancelled: the
    /// ledger's 3201 totals carry one line per clearing type and one per fund type and disease
    /// (the pooling fund of each insurance type, hypertension's quota), each equal to what the
    /// HIS's replies add up to and together equal to the totals to the fen; submitted with the
    /// same breakdown the day matches; a submission whose lines differ while its totals agree is
    /// MISMATCHED with exactly the differing lines named (clearing types by count, fund lines by
    /// amount); lines that do not sum to the submitted totals are INVALID_ARGUMENT with the
    /// field; the clearing extract lists each row with its clearing type and fund lines summing
    /// to its fund pay.
    async fn a_days_breakdown_reconciles_by_clearing_and_fund_type(net) {
        for n in [1, 8] {
            certify(net, certify_request(&format!("CT-{n}"), n, HYPERTENSION, &[hospital(ZIBO)])).await;
        }
        let jinan = ordinary(net, "o1", JINAN, 2).await;
        let dongying = ordinary(net, "o2", DONGYING, 3).await;
        let pharmacy = purchase(net, "p1", BINZHOU, 8).await;
        assert_eq!(pharmacy.clearing_type, ClearingType::Pharmacy as i32);
        let visit = disease_visit(net, "d1", 1, HYPERTENSION).await;
        let chronic = settle(net, "S-d1", &visit, 1).await.expect("certified, settles");
        let visit = disease_visit(net, "d8", 8, HYPERTENSION).await;
        let chronic_cancelled = settle(net, "S-d8", &visit, 8).await.expect("certified, settles");
        assert_eq!(chronic.clearing_type, ClearingType::ChronicDisease as i32);
        // The visit's in-scope amount at the disease's ratio is far above hypertension's quota:
        // the fund pays what is left of it, and the benefit check now names the quota.
        assert_eq!(chronic.split.as_ref().expect("split").annual_cap_left, "0.00");
        assert_eq!(check_reasons(net, 1, HYPERTENSION).await, [Reason::DiseaseQuotaExhausted]);
        cancel(net, "o1", &jinan).await;
        cancel(net, "d8", &chronic_cancelled).await;

        let expected = Expected::of(
            &[&jinan, &dongying, &pharmacy, &chronic, &chronic_cancelled],
            &[&jinan, &chronic_cancelled],
        );
        assert_eq!(expected.by_type.len(), 3, "three clearing types: {:?}", expected.by_type);
        assert!(expected.by_fund.contains_key(&("310100".to_owned(), HYPERTENSION.to_owned())));
        assert!(expected.by_fund.contains_key(&("390100".to_owned(), String::new())), "Dongying's resident");

        let submitted = expected.totals();
        let reply = reconcile(net, "RT-lines", submitted.clone()).await.expect("reconciled");
        assert_eq!(reply.result(), ReconciliationResult::Matched, "{reply:?}");
        assert!(reply.mismatched_lines.is_empty());
        let ledger = reply.ledger.clone().expect("the ledger's totals");
        assert_eq!(ledger, submitted, "every line as the HIS's replies add it up");
        // The lines sum to the totals to the fen.
        let type_fund: i64 = ledger.clearing_types.iter().map(|line| fen(&line.fund_pay)).sum();
        let type_count: u64 = ledger.clearing_types.iter().map(|line| line.count).sum();
        let fund_lines: i64 = ledger.fund_types.iter().map(|line| fen(&line.amount)).sum();
        assert_eq!((type_count, type_fund, fund_lines), (7, fen(&ledger.fund_pay), fen(&ledger.fund_pay)));

        // Without a breakdown the totals alone are compared, and the ledger still shows its lines.
        let bare = ReconciliationTotals { clearing_types: vec![], fund_types: vec![], ..submitted.clone() };
        let reply = reconcile(net, "RT-bare", bare).await.expect("reconciled");
        assert_eq!(reply.result(), ReconciliationResult::Matched);
        assert_eq!(reply.ledger.expect("ledger").fund_types, submitted.fund_types);

        // One row moved from clearing type 41 to 11 and a fen from the pooling fund to
        // hypertension's quota: the totals agree, the lines name the break.
        let mut moved = submitted.clone();
        let index_of = |clearing_type: ClearingType| {
            moved.clearing_types.iter().position(|line| line.clearing_type == clearing_type as i32).expect("a line")
        };
        let (outpatient, pharmacy_line) = (index_of(ClearingType::Outpatient), index_of(ClearingType::Pharmacy));
        moved.clearing_types[outpatient].count += 1;
        moved.clearing_types[pharmacy_line].count -= 1;
        let pool = moved.fund_types.iter().position(|line| line.fund_pay_type == "390100").expect("390100");
        let quota = moved.fund_types.iter().position(|line| line.disease_code == HYPERTENSION).expect("quota");
        moved.fund_types[pool].amount = yuan(fen(&moved.fund_types[pool].amount) - 1);
        moved.fund_types[quota].amount = yuan(fen(&moved.fund_types[quota].amount) + 1);
        let reply = reconcile(net, "RT-moved", moved).await.expect("reconciled");
        assert_eq!(reply.result(), ReconciliationResult::Mismatched);
        assert!(reply.mismatched_figures.is_empty(), "the totals agree: {reply:?}");
        assert_eq!(
            named(&reply),
            [
                ("clr_type 11".to_owned(), vec![ReconciliationFigure::Count]),
                ("clr_type 41".to_owned(), vec![ReconciliationFigure::Count]),
                (format!("fund 310100/{HYPERTENSION}"), vec![ReconciliationFigure::FundPay]),
                ("fund 390100/".to_owned(), vec![ReconciliationFigure::FundPay]),
            ]
        );
        // A line the ledger does not hold differs from zero.
        let mut extra = submitted.clone();
        extra.fund_types[quota].amount = yuan(fen(&extra.fund_types[quota].amount) - 1);
        extra.fund_types.push(FundTypeTotal { fund_pay_type: "310100".into(), disease_code: "M00500".into(), amount: "0.01".into() });
        let reply = reconcile(net, "RT-extra", extra).await.expect("reconciled");
        assert_eq!(
            named(&reply),
            [
                ("fund 310100/M00500".to_owned(), vec![ReconciliationFigure::FundPay]),
                (format!("fund 310100/{HYPERTENSION}"), vec![ReconciliationFigure::FundPay]),
            ]
        );

        // Lines that do not add up to the submitter's own totals are bad input.
        let mut unsummed = submitted.clone();
        unsummed.fund_types[pool].amount = yuan(fen(&unsummed.fund_types[pool].amount) + 1);
        assert_invalid(&reconcile(net, "RT-unsummed", unsummed).await.unwrap_err(), "totals.fund_types");
        let mut repeated = submitted.clone();
        repeated.clearing_types.push(repeated.clearing_types[0].clone());
        assert_invalid(
            &reconcile(net, "RT-repeated", repeated).await.unwrap_err(),
            &format!("totals.clearing_types[{}].clearing_type", submitted.clearing_types.len()),
        );

        // The clearing extract (3260): each row with its clearing type and fund lines.
        let today = yitong_core::today().to_string();
        let period = Some(ClearingPeriod { year: today[..4].parse().expect("a year"), month: today[5..7].parse().expect("a month") });
        let details = net
            .bureau(ZIBO)
            .ledger()
            .list_clearing_details(ListClearingDetailsRequest { period, treatment_city: ZIBO.into(), page_size: 100, ..Default::default() })
            .await
            .expect("listed")
            .into_inner()
            .details;
        assert_eq!(details.len(), 7, "every cross-city row of the day");
        let mut by_type: BTreeMap<i32, u64> = BTreeMap::new();
        for detail in &details {
            *by_type.entry(detail.clearing_type).or_default() += 1;
            assert_eq!(sum_fund_lines(&detail.fund_payments), fen(&detail.fund_pay), "{detail:?}");
        }
        let counts: BTreeMap<i32, u64> = expected.by_type.iter().map(|(t, figures)| (*t, figures.0)).collect();
        assert_eq!(by_type, counts);
        let chronic_row = details.iter().find(|d| d.settlement_id == chronic.settlement_id).expect("listed");
        assert_eq!(chronic_row.fund_payments, chronic.split.clone().expect("split").fund_payments.iter().map(|p| SettlementFundPayment {
            fund_pay_type: p.fund_pay_type.clone(),
            disease_code: p.disease_code.clone(),
            amount: p.amount.clone(),
        }).collect::<Vec<_>>());
    }
}

/// A cross-city record of clearing type `clearing_type`, its fund pay split over `lines`
/// (fund type, disease, fen) when given.
fn typed(
    mut transfer: Transfer,
    clearing_type: ClearingType,
    lines: &[(&str, &str, i64)],
) -> Transfer {
    let record = transfer.settlement.as_mut().expect("a record");
    record.clearing_type = clearing_type as i32;
    record.fund_payments = lines
        .iter()
        .map(|(fund, disease, fen)| SettlementFundPayment {
            fund_pay_type: (*fund).into(),
            disease_code: (*disease).into(),
            amount: yuan(*fen),
        })
        .collect();
    transfer
}

/// The cancellation of `original`, its fund lines negated like its amounts.
fn cancelled(n: u32, original: &Transfer, date: &str) -> Transfer {
    let mut transfer = cancellation(n, original, date);
    let record = transfer.settlement.as_mut().expect("a record");
    for line in &mut record.fund_payments {
        line.amount = yuan(-fen(&line.amount));
    }
    transfer
}

network_test! {
    /// Proves a closed month's statements carry each pair's obligation by clearing type and by
    /// fund type: October's Jinan->Zibo rows (an ordinary visit, a pharmacy purchase, a
    /// hypertension visit with its quota line and the pooling fund's, and a cancelled ordinary
    /// visit) and Dongying->Zibo's one ordinary visit (a resident: fund 390100) show in Zibo's
    /// receivables and in each insured city's payables with lines summing to the obligation's
    /// count, fund pay and account pay to the fen, while the net positions net fund pay plus
    /// account pay exactly as before.
    async fn a_closed_months_statement_carries_the_breakdown(net) {
        let mut ledger = net.ledger();
        // Even transfer numbers are employees (310), odd ones residents (390).
        let outpatient = typed(settlement(2, (JINAN, ZIBO), (10_000, 500, 2_000), &october_day(3)), ClearingType::Outpatient, &[]);
        let pharmacy = typed(settlement(4, (JINAN, ZIBO), (1_200, 0, 800), &october_day(4)), ClearingType::Pharmacy, &[]);
        let chronic = typed(
            settlement(6, (JINAN, ZIBO), (30_000, 0, 5_000), &october_day(5)),
            ClearingType::ChronicDisease,
            &[("310100", "", 4_000), ("310100", HYPERTENSION, 26_000)],
        );
        let dropped = typed(settlement(8, (JINAN, ZIBO), (7_000, 0, 100), &october_day(6)), ClearingType::Outpatient, &[]);
        let undone = cancelled(9, &dropped, &october_day(7));
        let resident = typed(settlement(11, (DONGYING, ZIBO), (3_000, 0, 300), &october_day(8)), ClearingType::Outpatient, &[]);
        let all = [&outpatient, &pharmacy, &chronic, &dropped, &undone, &resident];
        book(&mut ledger, "OCTOBER", &all.iter().map(|t| (*t).clone()).collect::<Vec<_>>()).await;
        confirm_and_apply(&mut ledger, ZIBO, &all).await;
        let closed = close_october(&mut ledger).await;

        let statement = net
            .bureau(ZIBO)
            .ledger()
            .get_clearing_statement(GetClearingStatementRequest { city: ZIBO.into(), period: october() })
            .await
            .expect("Zibo's statement")
            .into_inner()
            .statement
            .expect("statement");
        let from_jinan = statement.receivables.iter().find(|o| o.insured_city == JINAN).expect("Jinan owes Zibo");
        let types: Vec<(i32, u64, &str, &str)> = from_jinan
            .clearing_types
            .iter()
            .map(|line| (line.clearing_type, line.count, line.fund_pay.as_str(), line.account_pay.as_str()))
            .collect();
        assert_eq!(
            types,
            [(11, 3, "100.00", "5.00"), (14, 1, "300.00", "0.00"), (41, 1, "12.00", "0.00")],
            "the cancelled visit counts twice and nets out"
        );
        let funds: Vec<(&str, &str, &str)> = from_jinan
            .fund_types
            .iter()
            .map(|line| (line.fund_pay_type.as_str(), line.disease_code.as_str(), line.amount.as_str()))
            .collect();
        assert_eq!(funds, [("310100", "", "152.00"), ("310100", HYPERTENSION, "260.00")]);
        assert_eq!((from_jinan.count, from_jinan.fund_pay.as_str(), from_jinan.amount.as_str()), (5, "412.00", "417.00"));
        let from_dongying = statement.receivables.iter().find(|o| o.insured_city == DONGYING).expect("Dongying owes Zibo");
        assert_eq!(from_dongying.fund_types, [FundTypeTotal { fund_pay_type: "390100".into(), disease_code: String::new(), amount: "30.00".into() }]);
        assert_eq!(from_dongying.clearing_types.len(), 1);

        // The insured city's statement shows the same lines as payables.
        let jinan = net
            .bureau(JINAN)
            .ledger()
            .get_clearing_statement(GetClearingStatementRequest { city: JINAN.into(), period: october() })
            .await
            .expect("Jinan's statement")
            .into_inner()
            .statement
            .expect("statement");
        assert_eq!(jinan.payables, std::slice::from_ref(from_jinan));
        // The net positions net fund pay plus account pay, as before the breakdown.
        let zibo_net = closed.net_positions.iter().find(|p| p.city == ZIBO).expect("Zibo's position");
        assert_eq!(zibo_net.net, "447.00");
    }
}
