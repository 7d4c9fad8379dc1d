//! A month at the clearing house as the four cities live it: prepaid funds drawn down by
//! cross-city settlements and restored by deposits, ten thousand settlements reconciled day by
//! day, breaks injected and classified, the month closed and its statements confirmed. The
//! ledger traffic is created directly with CreateTransfers, as the treatment cities' Settle
//! and CancelSettlement book it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tokio_stream::StreamExt;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::ledger::v1::lookup_transfers_request::Selector;
use yitong_proto::ledger::v1::reconcile_details_request::Item as Sent;
use yitong_proto::ledger::v1::reconcile_details_response::Item as Received;
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    ApplyClearingRequest, ClearingDetail, ClearingPeriod, ClearingTotals,
    CloseClearingPeriodRequest, CloseClearingPeriodResponse, ConfirmClearingDetailsRequest,
    ConfirmClearingStatementRequest, ConfirmationStatus, CreateTransferResult,
    CreateTransfersRequest, DetailDecision, DetailResult, DetailRow, DetailRowBatch,
    DetailRowResult, GetBalancesRequest, GetClearingStatementRequest, ListClearingDetailsRequest,
    LookupTransfersRequest, PrepaidFund, ReconcileDetailsHeader, ReconcileDetailsRequest,
    ReconcileDetailsSummary, ReconciliationFigure, ReconciliationResult, ReconciliationScope,
    SettlementRecord, StatementStatus, Transfer, TransferCode, TransferIds,
};
use yitong_sandbox::Channel;
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, ZIBO, network_test};

use crate::support::{settlement_transfer, transfer_id, yuan};

pub(crate) type Ledger = LedgerServiceClient<Channel>;

const CITIES: [&str; 4] = [JINAN, ZIBO, DONGYING, BINZHOU];
/// Settlements of the simulated month.
const SETTLEMENTS: u32 = 10_000;
/// Every city's low-balance threshold in `seeds/network.toml`, in fen.
const THRESHOLD_FEN: i64 = 50_000_000;
/// Most transfers in one CreateTransfers, most rows in one batch or page, most decisions in one
/// confirmation.
const BATCH_MAX: usize = 1_000;

/// The n-th transfer id of a test (every test runs on a fresh ledger).
fn fen(yuan: &str) -> i64 {
    let (negative, digits) = match yuan.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, yuan),
    };
    let (whole, fraction) = digits.split_once('.').expect("two decimals");
    let value = whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap();
    if negative { -value } else { value }
}

pub(crate) fn october() -> Option<ClearingPeriod> {
    Some(ClearingPeriod {
        year: 2026,
        month: 10,
    })
}

fn november() -> Option<ClearingPeriod> {
    Some(ClearingPeriod {
        year: 2026,
        month: 11,
    })
}

pub(crate) fn october_day(day: u32) -> String {
    format!("2026-10-{day:02}")
}

/// A posted settlement of `fund` + `account` fen (and `cash` at the counter) for a person of
/// `insured` at a `treatment` hospital on `date`, under transfer id `n`.
pub(crate) fn settlement(
    n: u32,
    (insured, treatment): (&str, &str),
    (fund, account, cash): (i64, i64, i64),
    date: &str,
) -> Transfer {
    settlement_transfer(
        n,
        SettlementRecord {
            settlement_id: format!("T{treatment}{n:010}"),
            message_id: format!("H{treatment}00001-{n}"),
            treatment_city: treatment.to_owned(),
            insured_city: insured.to_owned(),
            institution_code: format!("H{treatment}00001"),
            visit_id: format!("S{treatment}{n:010}"),
            person_no: format!("{insured}{n:010}"),
            insurance_type: if n.is_multiple_of(2) { 310 } else { 390 },
            clearing_type: 11,
            settlement_date: date.to_owned(),
            total_amount: yuan(fund + account + cash),
            fund_pay: yuan(fund),
            account_pay: yuan(account),
            cash_pay: yuan(cash),
            cancellation: false,
            original_settlement_id: String::new(),
            fund_payments: Vec::new(),
        },
    )
}

/// The posted CANCELLATION of `original` on `date`, under transfer id `n`.
pub(crate) fn cancellation(n: u32, original: &Transfer, date: &str) -> Transfer {
    let mut transfer = original.clone();
    transfer.id = transfer_id(n);
    transfer.code = TransferCode::Cancellation as i32;
    std::mem::swap(
        &mut transfer.debit_account_id,
        &mut transfer.credit_account_id,
    );
    let record = transfer.settlement.as_mut().expect("a settlement record");
    record.original_settlement_id = record.settlement_id.clone();
    record.settlement_id = format!("C{}", &record.settlement_id[1..]);
    record.message_id = format!("{}-cancel", record.message_id);
    record.cancellation = true;
    record.settlement_date = date.to_owned();
    for amount in [
        &mut record.total_amount,
        &mut record.fund_pay,
        &mut record.account_pay,
        &mut record.cash_pay,
    ] {
        amount.insert(0, '-');
    }
    transfer
}

fn deposit(n: u32, city: &str, fen: i64) -> Transfer {
    Transfer {
        id: transfer_id(n),
        debit_account_id: format!("{city}.bank"),
        credit_account_id: format!("{city}.fund"),
        amount: yuan(fen),
        code: TransferCode::Deposit as i32,
        operator_id: format!("{city}-bureau"),
        ..Default::default()
    }
}

fn record(transfer: &Transfer) -> &SettlementRecord {
    transfer.settlement.as_ref().expect("a settlement record")
}

fn cross_city(transfer: &Transfer) -> bool {
    let record = record(transfer);
    record.insured_city != record.treatment_city
}

/// Creates transfers in batches of at most a thousand and asserts every one was created: no
/// settlement is ever refused, whatever the funds hold.
pub(crate) async fn book(ledger: &mut Ledger, prefix: &str, transfers: &[Transfer]) {
    for (index, chunk) in transfers.chunks(BATCH_MAX).enumerate() {
        let reply = ledger
            .create_transfers(CreateTransfersRequest {
                message_id: format!("{prefix}-{index}"),
                transfers: chunk.to_vec(),
            })
            .await
            .expect("CreateTransfers answers")
            .into_inner();
        assert_eq!(reply.results.len(), chunk.len());
        for outcome in reply.results {
            assert_eq!(outcome.result(), CreateTransferResult::Ok, "{outcome:?}");
        }
    }
}

async fn prepaid(ledger: &mut Ledger, city: &str) -> PrepaidFund {
    ledger
        .get_balances(GetBalancesRequest {
            cities: vec![city.to_owned()],
            ..Default::default()
        })
        .await
        .expect("balances")
        .into_inner()
        .prepaid_funds
        .pop()
        .expect("one prepaid position")
}

/// The row a submitter holds for a booked transfer.
fn row(transfer: &Transfer) -> DetailRow {
    let record = record(transfer);
    DetailRow {
        settlement_id: record.settlement_id.clone(),
        visit_id: record.visit_id.clone(),
        person_no: record.person_no.clone(),
        settlement_date: record.settlement_date.clone(),
        total_amount: record.total_amount.clone(),
        fund_pay: record.fund_pay.clone(),
        account_pay: record.account_pay.clone(),
        cash_pay: record.cash_pay.clone(),
        cancellation: record.cancellation,
        message_id: record.message_id.clone(),
    }
}

/// Runs a whole detail reconciliation of a treatment city's `rows` over a date range, only
/// breaks echoed back; returns the breaks and the summary.
async fn reconcile(
    ledger: &mut Ledger,
    message_id: &str,
    treatment: &str,
    (from, to): (&str, &str),
    rows: &[DetailRow],
) -> (Vec<DetailRowResult>, ReconcileDetailsSummary) {
    let header = ReconcileDetailsHeader {
        message_id: message_id.to_owned(),
        scope: Some(ReconciliationScope {
            subject: Some(Subject::TreatmentCity(treatment.to_owned())),
        }),
        from_date: from.to_owned(),
        to_date: to.to_owned(),
        breaks_only: true,
        operator_id: format!("{treatment}-bureau"),
        ..Default::default()
    };
    let messages: Vec<ReconcileDetailsRequest> = std::iter::once(Sent::Header(header))
        .chain(rows.chunks(BATCH_MAX).map(|chunk| {
            Sent::Rows(DetailRowBatch {
                rows: chunk.to_vec(),
            })
        }))
        .map(|item| ReconcileDetailsRequest { item: Some(item) })
        .collect();
    let mut stream = ledger
        .reconcile_details(tokio_stream::iter(messages))
        .await
        .expect("the run opens")
        .into_inner();
    let mut breaks = Vec::new();
    let mut summary = None;
    while let Some(reply) = stream.next().await {
        match reply.expect("the run ends cleanly").item.expect("an item") {
            Received::Row(row) => breaks.push(row),
            Received::Checkpoint(_) => {}
            Received::Summary(last) => summary = Some(last),
        }
    }
    (breaks, summary.expect("a summary"))
}

pub(crate) async fn list_all(
    ledger: &mut Ledger,
    period: Option<ClearingPeriod>,
    treatment: &str,
) -> Vec<ClearingDetail> {
    let mut details = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = ledger
            .list_clearing_details(ListClearingDetailsRequest {
                period,
                treatment_city: treatment.to_owned(),
                page_size: BATCH_MAX as u32,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner();
        details.extend(page.details);
        if page.next_page_token.is_empty() {
            assert_eq!(page.total_rows, details.len() as u64);
            return details;
        }
        page_token = page.next_page_token;
    }
}

/// The clearing totals of settlement records, computed here from the generated data.
fn totals_of<'a>(transfers: impl IntoIterator<Item = &'a Transfer>) -> ClearingTotals {
    let (mut count, mut total, mut fund, mut account) = (0, 0, 0, 0);
    for transfer in transfers {
        let record = record(transfer);
        count += 1;
        total += fen(&record.total_amount);
        fund += fen(&record.fund_pay);
        account += fen(&record.account_pay);
    }
    ClearingTotals {
        count,
        total_amount: yuan(total),
        insured_city_pay: yuan(fund + account),
        fund_pay: yuan(fund),
        account_pay: yuan(account),
    }
}

/// The treatment city pulls its October rows, includes every one (checking they are exactly
/// `expected`) and applies with the totals it computed itself.
pub(crate) async fn confirm_and_apply(
    ledger: &mut Ledger,
    treatment: &str,
    expected: &[&Transfer],
) {
    let details = list_all(ledger, october(), treatment).await;
    let listed: BTreeSet<&str> = details.iter().map(|d| d.settlement_id.as_str()).collect();
    let generated: BTreeSet<&str> = expected
        .iter()
        .map(|t| record(t).settlement_id.as_str())
        .collect();
    assert_eq!(listed, generated, "{treatment} lists its cross-city rows");
    let decisions: Vec<DetailDecision> = details
        .iter()
        .map(|detail| DetailDecision {
            settlement_id: detail.settlement_id.clone(),
            decision: ConfirmationStatus::Included as i32,
            reason: String::new(),
        })
        .collect();
    for (index, chunk) in decisions.chunks(BATCH_MAX).enumerate() {
        ledger
            .confirm_clearing_details(yitong_sandbox::as_its_bureau(
                ConfirmClearingDetailsRequest {
                    message_id: format!("CONFIRM-{treatment}-{index}"),
                    period: october(),
                    treatment_city: treatment.to_owned(),
                    decisions: chunk.to_vec(),
                    operator_id: format!("{treatment}-bureau"),
                },
            ))
            .await
            .expect("confirmed");
    }
    ledger
        .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
            message_id: format!("APPLY-{treatment}"),
            period: october(),
            treatment_city: treatment.to_owned(),
            totals: Some(totals_of(expected.iter().copied())),
            operator_id: format!("{treatment}-bureau"),
        }))
        .await
        .expect("applied");
}

pub(crate) async fn close_october(ledger: &mut Ledger) -> CloseClearingPeriodResponse {
    ledger
        .close_clearing_period(CloseClearingPeriodRequest {
            message_id: "CLOSE-2026-10".into(),
            period: october(),
            operator_id: "clearing-house-1".into(),
        })
        .await
        .expect("closed")
        .into_inner()
}

network_test! {
    /// Proves the written prepaid-funds policy: a deposit raises a city's fund; its insured
    /// persons' cross-city settlements draw its available amount down past the low-balance
    /// threshold of the network file (GetBalances marks it) and below zero while every
    /// settlement is accepted, same-city settlements leaving it alone; the close leaves the fund
    /// where it stood and the statement names the top-up due against the obligations still
    /// open; a DEPOSIT of that amount restores it.
    async fn prepaid_funds_run_short_without_refusing_a_claim(net) {
        let mut ledger = net.ledger();
        book(&mut ledger, "DEPOSIT-1", &[deposit(900_001, JINAN, 60_000_000)]).await;
        let fund = prepaid(&mut ledger, JINAN).await;
        assert_eq!(
            (fund.fund_balance.as_str(), fund.available.as_str(), fund.low_balance_threshold.as_str()),
            ("600000.00", "600000.00", "500000.00")
        );
        assert!(!fund.below_threshold);

        let to_zibo = settlement(1, (JINAN, ZIBO), (15_000_000, 0, 1_000), "2026-10-05");
        book(&mut ledger, "SETTLE-1", std::slice::from_ref(&to_zibo)).await;
        let fund = prepaid(&mut ledger, JINAN).await;
        assert_eq!((fund.outstanding.as_str(), fund.available.as_str()), ("150000.00", "450000.00"));
        assert!(fund.below_threshold, "below the threshold, and the claim was accepted");

        let to_binzhou = settlement(2, (JINAN, BINZHOU), (49_000_000, 1_000_000, 0), "2026-10-20");
        let at_home = settlement(3, (JINAN, JINAN), (10_000_000, 0, 0), "2026-10-21");
        book(&mut ledger, "SETTLE-2", &[to_binzhou.clone(), at_home.clone()]).await;
        let fund = prepaid(&mut ledger, JINAN).await;
        assert_eq!(fund.available, "-50000.00", "below zero, and the claims were accepted");
        assert!(fund.below_threshold);
        // November's settlement stays owed after October closes.
        let to_dongying = settlement(4, (JINAN, DONGYING), (20_000_000, 0, 0), "2026-11-02");
        book(&mut ledger, "SETTLE-3", std::slice::from_ref(&to_dongying)).await;
        assert_eq!(prepaid(&mut ledger, JINAN).await.available, "-250000.00");

        confirm_and_apply(&mut ledger, ZIBO, &[&to_zibo]).await;
        confirm_and_apply(&mut ledger, BINZHOU, &[&to_binzhou]).await;
        let closed = close_october(&mut ledger).await;
        let statement = closed.statements.iter().find(|s| s.city == JINAN).unwrap();
        assert_eq!(statement.fund_balance_before, "600000.00");
        assert_eq!(statement.fund_balance_after, "600000.00");
        assert_eq!(statement.low_balance_threshold, "500000.00");
        // 500,000 threshold less (600,000 fund less 200,000 still owed to Dongying).
        assert_eq!(statement.top_up_due, "100000.00");
        let zibo = closed.statements.iter().find(|s| s.city == ZIBO).unwrap();
        assert_eq!(zibo.top_up_due, "500000.00", "a city that deposited nothing owes its threshold");
        let confirmed = ledger
            .confirm_clearing_statement(yitong_sandbox::as_its_bureau(ConfirmClearingStatementRequest {
                message_id: "CONFIRM-STATEMENT-JINAN".into(),
                city: JINAN.into(),
                period: october(),
                operator_id: "jinan-bureau".into(),
            }))
            .await
            .expect("confirmed")
            .into_inner();
        assert_eq!(confirmed.statement.unwrap().status(), StatementStatus::Confirmed);
        let fund = prepaid(&mut ledger, JINAN).await;
        assert_eq!((fund.fund_balance.as_str(), fund.available.as_str()), ("600000.00", "400000.00"));
        assert!(fund.below_threshold);

        book(&mut ledger, "DEPOSIT-2", &[deposit(900_002, JINAN, fen(&statement.top_up_due))]).await;
        let fund = prepaid(&mut ledger, JINAN).await;
        assert_eq!((fund.fund_balance.as_str(), fund.available.as_str()), ("700000.00", "500000.00"));
        assert!(!fund.below_threshold, "the top-up restores the threshold");
    }
}

/// The simulated October: every settlement, the cancellations booked in October, and those
/// booked after the close.
struct Month {
    settlements: Vec<Transfer>,
    cancellations: Vec<Transfer>,
    late: Vec<Transfer>,
}

impl Month {
    /// Ten thousand settlements over all 31 days and all 16 ordered pairs (12 cross-city, 4
    /// same-city), their figures varying; one in fifty cancelled within the month, one in five
    /// hundred cancelled after the close.
    fn simulate() -> Month {
        let mut month = Month {
            settlements: Vec::new(),
            cancellations: Vec::new(),
            late: Vec::new(),
        };
        for n in 1..=SETTLEMENTS {
            let pair = (n % 16) as usize;
            let cities = (CITIES[pair / 4], CITIES[pair % 4]);
            let day = 1 + (n * 7 + n / 16) % 31;
            let fund = 1_000 + i64::from(n * 37 % 50_000);
            let account = if n.is_multiple_of(3) {
                0
            } else {
                i64::from(n % 500) * 10
            };
            let cash = 200 + i64::from(n % 1_000);
            let booked = settlement(n, cities, (fund, account, cash), &october_day(day));
            if n % 50 == 7 {
                let on = october_day((day + 1).min(31));
                month
                    .cancellations
                    .push(cancellation(100_000 + n, &booked, &on));
            }
            if n % 500 == 11 {
                month
                    .late
                    .push(cancellation(200_000 + n, &booked, &october_day(31)));
            }
            month.settlements.push(booked);
        }
        month
    }

    /// The rows booked in October.
    fn october_rows(&self) -> impl Iterator<Item = &Transfer> {
        self.settlements.iter().chain(&self.cancellations)
    }

    /// A treatment city's submitted rows for `dates`, in settlement id order.
    fn rows_of(&self, treatment: &str, dates: impl Fn(&str) -> bool) -> Vec<DetailRow> {
        let mut rows: Vec<DetailRow> = self
            .october_rows()
            .filter(|t| record(t).treatment_city == treatment && dates(&record(t).settlement_date))
            .map(row)
            .collect();
        rows.sort_by(|a, b| a.settlement_id.cmp(&b.settlement_id));
        rows
    }
}

network_test! {
    /// Proves acceptance 1 and 2 of the reconcile-and-clear issue on a simulated month of ten
    /// thousand settlements across the four cities: every city's every day reconciles clean;
    /// one break of each class injected into a bureau's month of rows (a row deleted, one the
    /// ledger never booked, one duplicated, an amount altered, a date shifted) is found and
    /// classified exactly, and nothing else is reported; the close's gross obligations equal
    /// the fund and account pay per pair computed here, the net positions sum to zero and
    /// equal receivables less payables, the funds end where they stood with the top-up due the
    /// policy names, every statement is confirmed, and cancellations after the close land in
    /// November as adjustments.
    async fn a_month_of_ten_thousand_settlements_reconciles_and_clears(net) {
        let started = Instant::now();
        let mut ledger = net.ledger();
        let month = Month::simulate();
        let deposits_fen = [30_000_000, 80_000_000, 60_000_000, 45_000_000];
        let deposits: Vec<Transfer> = CITIES
            .iter()
            .zip(deposits_fen)
            .enumerate()
            .map(|(index, (city, amount))| deposit(900_000 + index as u32, city, amount))
            .collect();
        book(&mut ledger, "DEPOSITS", &deposits).await;
        book(&mut ledger, "OCTOBER", &month.settlements).await;
        book(&mut ledger, "OCTOBER-CANCELLATIONS", &month.cancellations).await;
        let booked_in = started.elapsed();

        // Every treatment city reconciles every day of October: clean.
        for day in 1..=31 {
            let date = october_day(day);
            for city in CITIES {
                let rows = month.rows_of(city, |d| d == date);
                assert!(!rows.is_empty(), "{city} settled on {date}");
                let (breaks, summary) =
                    reconcile(&mut ledger, &format!("DAILY-{city}-{day}"), city, (&date, &date), &rows).await;
                assert!(breaks.is_empty(), "{city} {date}: {breaks:?}");
                assert_eq!(summary.result(), ReconciliationResult::Matched);
                assert_eq!((summary.matched, summary.rows_in_ledger), (rows.len() as u64, rows.len() as u64));
            }
        }
        let reconciled_in = started.elapsed();

        // Zibo's bureau reconciles its month with one break of each class in its rows.
        let mut rows = month.rows_of(ZIBO, |_| true);
        let clean_count = rows.len();
        let deleted = rows.remove(100);
        let altered = &mut rows[200];
        altered.fund_pay = yuan(fen(&altered.fund_pay) - 100);
        altered.cash_pay = yuan(fen(&altered.cash_pay) + 100);
        let altered = altered.settlement_id.clone();
        let doubled = rows[300].clone();
        rows.insert(301, doubled.clone());
        let shifted = &mut rows[400];
        let day: u32 = shifted.settlement_date[8..].parse().expect("a day of the month");
        shifted.settlement_date = october_day(if day == 31 { 30 } else { day + 1 });
        let shifted = shifted.settlement_id.clone();
        let mut unknown = row(&settlement(99_999, (JINAN, ZIBO), (1_000, 0, 100), "2026-10-15"));
        unknown.visit_id = "S-NEVER-BOOKED".into();
        rows.push(unknown.clone());
        rows.sort_by(|a, b| a.settlement_id.cmp(&b.settlement_id));
        let (breaks, summary) = reconcile(
            &mut ledger,
            "MONTH-ZIBO-BROKEN",
            ZIBO,
            (&october_day(1), &october_day(31)),
            &rows,
        )
        .await;
        let found: BTreeMap<String, DetailResult> =
            breaks.iter().map(|b| (b.settlement_id.clone(), b.result())).collect();
        let expected: BTreeMap<String, DetailResult> = [
            (deleted.settlement_id.clone(), DetailResult::MissingInSubmission),
            (unknown.settlement_id.clone(), DetailResult::MissingInLedger),
            (doubled.settlement_id.clone(), DetailResult::Duplicate),
            (altered.clone(), DetailResult::AmountMismatch),
            (shifted.clone(), DetailResult::Timing),
        ]
        .into_iter()
        .collect();
        assert_eq!(found, expected);
        assert_eq!(breaks.len(), expected.len(), "each break once, nothing else");
        let mismatch = breaks.iter().find(|b| b.settlement_id == altered).unwrap();
        assert_eq!(
            mismatch.mismatched_figures().collect::<Vec<_>>(),
            [ReconciliationFigure::FundPay, ReconciliationFigure::CashPay]
        );
        assert_eq!(summary.result(), ReconciliationResult::Mismatched);
        assert_eq!(summary.rows_in_ledger, clean_count as u64);
        assert_eq!(
            (summary.missing_in_ledger, summary.missing_in_submission, summary.duplicate,
             summary.amount_mismatch, summary.timing),
            (1, 1, 1, 1, 1)
        );
        // The deleted, altered and shifted rows break; the doubled row matches once and its
        // second copy is the duplicate.
        assert_eq!(summary.matched, clean_count as u64 - 3);

        let broken_in = started.elapsed();

        // The month closes.
        for treatment in CITIES {
            let cross: Vec<&Transfer> = month
                .october_rows()
                .filter(|t| cross_city(t) && record(t).treatment_city == treatment)
                .collect();
            confirm_and_apply(&mut ledger, treatment, &cross).await;
        }
        let applied_in = started.elapsed();
        let closed = close_october(&mut ledger).await;
        let closed_in = started.elapsed();

        // Per ordered pair, from the generated records: count, fund pay, account pay.
        let mut pairs: BTreeMap<(String, String), (u64, i64, i64)> = BTreeMap::new();
        for transfer in month.october_rows().filter(|t| cross_city(t)) {
            let record = record(transfer);
            let pair = pairs
                .entry((record.insured_city.clone(), record.treatment_city.clone()))
                .or_default();
            pair.0 += 1;
            pair.1 += fen(&record.fund_pay);
            pair.2 += fen(&record.account_pay);
        }
        assert_eq!(pairs.len(), 12, "every cross-city pair settled");
        let obligations: BTreeMap<(String, String), (u64, i64, i64)> = closed
            .obligations
            .iter()
            .map(|o| {
                assert_eq!(fen(&o.amount), fen(&o.fund_pay) + fen(&o.account_pay));
                assert_eq!(o.adjustments, "0.00");
                (
                    (o.insured_city.clone(), o.treatment_city.clone()),
                    (o.count, fen(&o.fund_pay), fen(&o.account_pay)),
                )
            })
            .collect();
        assert_eq!(obligations, pairs);
        let nets: BTreeMap<String, i64> = closed
            .net_positions
            .iter()
            .map(|p| (p.city.clone(), fen(&p.net)))
            .collect();
        assert_eq!(nets.values().sum::<i64>(), 0, "net positions sum to zero");
        for city in CITIES {
            let receivable: i64 = pairs
                .iter()
                .filter(|((_, treatment), _)| treatment == city)
                .map(|(_, (_, fund, account))| fund + account)
                .sum();
            let payable: i64 = pairs
                .iter()
                .filter(|((insured, _), _)| insured == city)
                .map(|(_, (_, fund, account))| fund + account)
                .sum();
            assert_eq!(nets[city], receivable - payable, "{city}'s net position");
        }
        assert!(
            closed.payment_instructions.len() < CITIES.len(),
            "at most one payment fewer than the cities"
        );

        // The funds end where they stood; each statement names the top-up to the threshold.
        for (city, deposited) in CITIES.iter().zip(deposits_fen) {
            let statement = closed.statements.iter().find(|s| &s.city == city).unwrap();
            assert_eq!(statement.fund_balance_before, yuan(deposited));
            assert_eq!(statement.fund_balance_after, yuan(deposited));
            assert_eq!(statement.low_balance_threshold, yuan(THRESHOLD_FEN));
            assert_eq!(statement.top_up_due, yuan((THRESHOLD_FEN - deposited).max(0)), "{city}");
            ledger
                .confirm_clearing_statement(yitong_sandbox::as_its_bureau(ConfirmClearingStatementRequest {
                    message_id: format!("CONFIRM-STATEMENT-{city}"),
                    city: (*city).to_owned(),
                    period: october(),
                    operator_id: format!("{city}-bureau"),
                }))
                .await
                .expect("confirmed");
            let statement = ledger
                .get_clearing_statement(GetClearingStatementRequest {
                    city: (*city).to_owned(),
                    period: october(),
                })
                .await
                .expect("a statement")
                .into_inner()
                .statement
                .unwrap();
            assert_eq!(statement.status(), StatementStatus::Confirmed);
        }

        // Cancellations after the close land in November as adjustments; October is frozen.
        let zibo_october = list_all(&mut ledger, october(), ZIBO).await.len();
        book(&mut ledger, "LATE", &month.late).await;
        let looked_up = ledger
            .lookup_transfers(LookupTransfersRequest {
                selector: Some(Selector::Ids(TransferIds {
                    ids: month.late.iter().map(|t| t.id.clone()).collect(),
                })),
            })
            .await
            .expect("found")
            .into_inner()
            .transfers;
        assert_eq!(looked_up.len(), month.late.len());
        assert!(looked_up.iter().all(|t| t.clearing_period == november()));
        for treatment in CITIES {
            let expected: BTreeSet<String> = month
                .late
                .iter()
                .filter(|t| cross_city(t) && record(t).treatment_city == treatment)
                .map(|t| record(t).settlement_id.clone())
                .collect();
            let november_rows = list_all(&mut ledger, november(), treatment).await;
            assert!(november_rows.iter().all(|d| d.adjustment && d.cancellation));
            let listed: BTreeSet<String> =
                november_rows.into_iter().map(|d| d.settlement_id).collect();
            assert_eq!(listed, expected, "{treatment}'s adjustments");
        }
        assert_eq!(list_all(&mut ledger, october(), ZIBO).await.len(), zibo_october);
        eprintln!(
            "month of {SETTLEMENTS} settlements on {:?}: booked {booked_in:?}, reconciled daily by {reconciled_in:?}, breaks found by {broken_in:?}, applied by {applied_in:?}, closed by {closed_in:?}, done in {:?}",
            net.database(),
            started.elapsed()
        );
    }
}
