//! Daily reconciliation as a hospital or a bureau runs it against the clearing house's ledger:
//! totals compared figure by figure (national 3201) and rows compared one by one in a resumable
//! stream (national 3202). The ledger traffic is created directly with CreateTransfers of
//! SETTLEMENT and CANCELLATION transfers carrying their settlement records, as the treatment
//! city's Settle will.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::ledger::v1::lookup_transfers_request::Selector;
use yitong_proto::ledger::v1::reconcile_details_request::Item as Sent;
use yitong_proto::ledger::v1::reconcile_details_response::Item as Received;
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    ApplyClearingRequest, CancelClearingApplicationRequest, ClearingApplicationStatus,
    ClearingDetail, ClearingPeriod, ClearingTotals, CloseClearingPeriodRequest,
    CloseClearingPeriodResponse, ConfirmClearingDetailsRequest, ConfirmClearingStatementRequest,
    ConfirmationStatus, DetailDecision, GetBalancesRequest, GetClearingStatementRequest,
    ListClearingDetailsRequest, LookupTransfersRequest, PendingTransferResult,
    PostPendingTransfersRequest, RollbackClearingConfirmationRequest, StatementStatus, TransferIds,
};
use yitong_proto::ledger::v1::{
    CreateTransferResult, CreateTransfersRequest, DetailResult, DetailRow, DetailRowBatch,
    DetailRowResult, ReconcileDetailsCheckpoint, ReconcileDetailsHeader, ReconcileDetailsRequest,
    ReconcileDetailsSummary, ReconcileTotalsRequest, ReconcileTotalsResponse, ReconciliationFigure,
    ReconciliationResult, ReconciliationScope, ReconciliationTotals, SettlementRecord, Transfer,
    TransferCode, TransferFlags, VoidPendingTransfersRequest,
};
use yitong_sandbox::Channel;
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, ZIBO, network_test};

use crate::support::{assert_invalid, assert_refused, settlement_transfer, transfer_id, yuan};

type Ledger = LedgerServiceClient<Channel>;

/// The n-th transfer id of a test (every test runs on a fresh ledger).
/// The settlement ids of Zibo's hospitals sort by serial.
fn settlement_id(serial: u32) -> String {
    format!("T{ZIBO}{serial:010}")
}

/// A posted SETTLEMENT of settlement `serial` at a Zibo hospital on `date`. The figures, the
/// insured city, the institution and both types vary with the serial, so that every filter
/// selects a different subset.
fn settlement(serial: u32, date: &str) -> Transfer {
    let insured = [JINAN, BINZHOU, DONGYING][serial as usize % 3];
    let fund = 1_000 + i64::from(serial) * 37;
    let account = i64::from(serial % 3) * 100;
    let cash = 500 + i64::from(serial);
    settlement_transfer(
        serial,
        SettlementRecord {
            settlement_id: settlement_id(serial),
            message_id: format!("H3703000000{}-{serial}", 1 + serial % 2),
            treatment_city: ZIBO.to_owned(),
            insured_city: insured.to_owned(),
            institution_code: format!("H3703000000{}", 1 + serial % 2),
            visit_id: format!("S{ZIBO}{serial:010}"),
            person_no: format!("{insured}{serial:010}"),
            insurance_type: if serial.is_multiple_of(2) { 310 } else { 390 },
            clearing_type: if serial.is_multiple_of(5) { 41 } else { 11 },
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
fn cancellation(n: u32, original: &Transfer, date: &str) -> Transfer {
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

fn pending(mut transfer: Transfer) -> Transfer {
    transfer.flags = Some(TransferFlags {
        linked: false,
        pending: true,
    });
    transfer.pending_timeout_seconds = 3_600;
    transfer
}

/// Creates transfers in batches of at most a thousand and asserts every one was created.
async fn book(ledger: &mut Ledger, prefix: &str, transfers: &[Transfer]) {
    for (index, chunk) in transfers.chunks(1_000).enumerate() {
        let reply = ledger
            .create_transfers(CreateTransfersRequest {
                message_id: format!("{prefix}-{index}"),
                transfers: chunk.to_vec(),
            })
            .await
            .expect("CreateTransfers answers")
            .into_inner();
        for outcome in reply.results {
            assert_eq!(outcome.result(), CreateTransferResult::Ok, "{outcome:?}");
        }
    }
}

/// The row a submitter holds for a booked transfer.
fn row(transfer: &Transfer) -> DetailRow {
    let record = transfer.settlement.as_ref().expect("a settlement record");
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

fn fen(yuan: &str) -> i64 {
    let (negative, digits) = match yuan.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, yuan),
    };
    let (whole, fraction) = digits.split_once('.').expect("two decimals");
    let value = whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap();
    if negative { -value } else { value }
}

/// The totals of `transfers`, computed here from the records themselves.
fn totals_of<'a>(transfers: impl IntoIterator<Item = &'a Transfer>) -> ReconciliationTotals {
    let mut sums = [0_i64; 4];
    let mut count = 0;
    for transfer in transfers {
        let record = transfer.settlement.as_ref().expect("a settlement record");
        count += 1;
        for (sum, amount) in sums.iter_mut().zip([
            &record.total_amount,
            &record.fund_pay,
            &record.account_pay,
            &record.cash_pay,
        ]) {
            *sum += fen(amount);
        }
    }
    ReconciliationTotals {
        count,
        total_amount: yuan(sums[0]),
        fund_pay: yuan(sums[1]),
        account_pay: yuan(sums[2]),
        cash_pay: yuan(sums[3]),
        ..Default::default()
    }
}

fn scope(subject: Subject) -> Option<ReconciliationScope> {
    Some(ReconciliationScope {
        subject: Some(subject),
    })
}

fn zibo() -> Option<ReconciliationScope> {
    scope(Subject::TreatmentCity(ZIBO.to_owned()))
}

async fn totals(
    ledger: &mut Ledger,
    request: ReconcileTotalsRequest,
) -> Result<ReconcileTotalsResponse, tonic::Status> {
    ledger
        .reconcile_totals(request)
        .await
        .map(tonic::Response::into_inner)
}

fn header(message_id: &str, from: &str, to: &str) -> ReconcileDetailsHeader {
    ReconcileDetailsHeader {
        message_id: message_id.to_owned(),
        scope: zibo(),
        from_date: from.to_owned(),
        to_date: to.to_owned(),
        operator_id: "zibo-bureau-1".to_owned(),
        ..Default::default()
    }
}

/// What a detail stream answered.
#[derive(Debug, Default)]
struct Answered {
    rows: Vec<DetailRowResult>,
    checkpoints: Vec<ReconcileDetailsCheckpoint>,
    summary: Option<ReconcileDetailsSummary>,
    /// The status that ended the stream, when it was not a clean end.
    error: Option<tonic::Status>,
}

impl Answered {
    /// Result per settlement id of the breaks, in the order they came.
    fn breaks(&self) -> Vec<(String, DetailResult)> {
        self.rows
            .iter()
            .filter(|row| row.result() != DetailResult::Matched)
            .map(|row| (row.settlement_id.clone(), row.result()))
            .collect()
    }
}

fn messages(
    header: ReconcileDetailsHeader,
    batches: Vec<Vec<DetailRow>>,
) -> Vec<ReconcileDetailsRequest> {
    std::iter::once(Sent::Header(header))
        .chain(
            batches
                .into_iter()
                .map(|rows| Sent::Rows(DetailRowBatch { rows })),
        )
        .map(|item| ReconcileDetailsRequest { item: Some(item) })
        .collect()
}

/// Runs a whole detail reconciliation: the header, the batches, then the client's end.
async fn reconcile(
    ledger: &mut Ledger,
    header: ReconcileDetailsHeader,
    batches: Vec<Vec<DetailRow>>,
) -> Answered {
    let requests = tokio_stream::iter(messages(header, batches));
    let mut stream = ledger
        .reconcile_details(requests)
        .await
        .expect("the run opens")
        .into_inner();
    let mut answered = Answered::default();
    loop {
        match stream.next().await {
            None => return answered,
            Some(Err(status)) => {
                answered.error = Some(status);
                return answered;
            }
            Some(Ok(reply)) => match reply.item.expect("an item") {
                Received::Row(row) => answered.rows.push(row),
                Received::Checkpoint(checkpoint) => answered.checkpoints.push(checkpoint),
                Received::Summary(summary) => answered.summary = Some(summary),
            },
        }
    }
}

/// Zibo's day: settlements 1..=`count` on 2026-03-01, posted.
fn day(count: u32) -> Vec<Transfer> {
    (1..=count)
        .map(|serial| settlement(serial, "2026-03-01"))
        .collect()
}

network_test! {
    /// Proves that the ledger's totals are those of the posted settlements and cancellations of
    /// the scope, filters and range (pending, voided and out-of-range rows left out), computed
    /// independently here; that every figure that differs is named and nothing else; and that
    /// a replay returns the first answer even after more settlements were booked.
    async fn totals_match_the_posted_rows_figure_by_figure(net) {
        let mut ledger = net.ledger();
        let mut posted = day(30);
        posted.push(cancellation(31, &posted[3], "2026-03-01"));
        book(&mut ledger, "BOOK", &posted).await;
        let next_day = settlement(40, "2026-03-02");
        book(&mut ledger, "NEXT", std::slice::from_ref(&next_day)).await;
        book(&mut ledger, "PENDING", &[pending(settlement(41, "2026-03-01"))]).await;
        book(&mut ledger, "VOIDED", &[pending(settlement(42, "2026-03-01"))]).await;
        ledger
            .void_pending_transfers(VoidPendingTransfersRequest {
                message_id: "VOID-1".into(),
                pending_transfer_ids: vec![transfer_id(42)],
                reason: "the settlement failed".into(),
            })
            .await
            .expect("voided");

        let request = |message_id: &str, totals: ReconciliationTotals| ReconcileTotalsRequest {
            message_id: message_id.to_owned(),
            scope: zibo(),
            from_date: "2026-03-01".into(),
            to_date: "2026-03-01".into(),
            totals: Some(totals),
            operator_id: "zibo-bureau-1".into(),
            ..Default::default()
        };
        let expected = totals_of(&posted);
        let reply = totals(&mut ledger, request("TOT-1", expected.clone())).await.expect("answered");
        assert_eq!(reply.result(), ReconciliationResult::Matched, "{reply:?}");
        // The ledger breaks its totals down too (tests/e2e/breakdown.rs checks the lines).
        let answered = reply.ledger.clone().expect("the ledger's totals");
        assert_eq!(ReconciliationTotals { clearing_types: vec![], fund_types: vec![], ..answered }, expected);
        assert!(reply.mismatched_figures.is_empty());

        // Two days: the next day's settlement counts too.
        let mut two_days = request("TOT-2", totals_of(posted.iter().chain([&next_day])));
        two_days.to_date = "2026-03-02".into();
        let reply = totals(&mut ledger, two_days).await.expect("answered");
        assert_eq!(reply.result(), ReconciliationResult::Matched, "{reply:?}");

        // Each scope and filter selects its own rows.
        let subsets: [(&str, ReconcileTotalsRequest, Vec<&Transfer>); 4] = [
            (
                "institution",
                ReconcileTotalsRequest {
                    scope: scope(Subject::InstitutionCode("H37030000002".into())),
                    ..request("TOT-3", ReconciliationTotals::default())
                },
                posted.iter().filter(|t| t.settlement.as_ref().unwrap().institution_code == "H37030000002").collect(),
            ),
            (
                "insured city",
                ReconcileTotalsRequest {
                    scope: scope(Subject::InsuredCity(BINZHOU.into())),
                    ..request("TOT-4", ReconciliationTotals::default())
                },
                posted.iter().filter(|t| t.settlement.as_ref().unwrap().insured_city == BINZHOU).collect(),
            ),
            (
                "insurance type",
                ReconcileTotalsRequest {
                    insurance_type: 390,
                    ..request("TOT-5", ReconciliationTotals::default())
                },
                posted.iter().filter(|t| t.settlement.as_ref().unwrap().insurance_type == 390).collect(),
            ),
            (
                "clearing type",
                ReconcileTotalsRequest {
                    clearing_type: 41,
                    ..request("TOT-6", ReconciliationTotals::default())
                },
                posted.iter().filter(|t| t.settlement.as_ref().unwrap().clearing_type == 41).collect(),
            ),
        ];
        for (what, mut subset, rows) in subsets {
            assert!(!rows.is_empty() && rows.len() < posted.len(), "{what} selects a subset");
            subset.totals = Some(totals_of(rows.iter().copied()));
            let reply = totals(&mut ledger, subset).await.expect("answered");
            assert_eq!(reply.result(), ReconciliationResult::Matched, "{what}: {reply:?}");
        }

        // A count and the cash off: exactly those two figures are named.
        let mut off = expected.clone();
        off.count += 1;
        off.cash_pay = yuan(fen(&off.cash_pay) + 1);
        off.total_amount = yuan(fen(&off.total_amount) + 1);
        let first = totals(&mut ledger, request("TOT-7", off.clone())).await.expect("answered");
        assert_eq!(first.result(), ReconciliationResult::Mismatched);
        assert_eq!(
            first.mismatched_figures().collect::<Vec<_>>(),
            [ReconciliationFigure::Count, ReconciliationFigure::TotalAmount, ReconciliationFigure::CashPay]
        );
        assert_eq!(first.submitted.as_ref(), Some(&off));

        // A replay after another booking on that day answers as the first time did.
        book(&mut ledger, "LATE", &[settlement(50, "2026-03-01")]).await;
        let replay = totals(&mut ledger, request("TOT-7", off.clone())).await.expect("replayed");
        assert_eq!(replay, first);
        let mut other = request("TOT-7", off);
        other.operator_id = "someone-else".into();
        let status = totals(&mut ledger, other).await.expect_err("another request under the id");
        assert_eq!(status.code(), Code::AlreadyExists);
    }
}

network_test! {
    /// Proves that a clean day reconciles row by row: every submitted row comes back MATCHED
    /// in settlement-id order, with a checkpoint after each batch, and the summary counts them;
    /// with `breaks_only` nothing but checkpoints and the summary comes back; opening the
    /// finished run again returns only its summary.
    async fn clean_details_match_row_by_row(net) {
        let mut ledger = net.ledger();
        let mut booked = day(25);
        booked.push(cancellation(26, &booked[4], "2026-03-01"));
        book(&mut ledger, "BOOK", &booked).await;
        book(&mut ledger, "PENDING", &[pending(settlement(27, "2026-03-01"))]).await;
        let mut rows: Vec<DetailRow> = booked.iter().map(row).collect();
        rows.sort_by(|a, b| a.settlement_id.cmp(&b.settlement_id));

        let batches: Vec<Vec<DetailRow>> = rows.chunks(10).map(<[DetailRow]>::to_vec).collect();
        let answered = reconcile(&mut ledger, header("DET-1", "2026-03-01", "2026-03-01"), batches.clone()).await;
        assert!(answered.error.is_none(), "{:?}", answered.error);
        assert!(answered.breaks().is_empty(), "{:?}", answered.breaks());
        let ids: Vec<&str> = answered.rows.iter().map(|r| r.settlement_id.as_str()).collect();
        let expected: Vec<&str> = rows.iter().map(|r| r.settlement_id.as_str()).collect();
        assert_eq!(ids, expected);
        assert_eq!(answered.rows[0].ledger.as_ref(), Some(&rows[0]));
        assert_eq!(answered.checkpoints.len(), 1 + batches.len(), "one on opening, one per batch");
        assert_eq!(answered.checkpoints.last().unwrap().rows_received, 26);
        let summary = answered.summary.expect("a summary");
        assert_eq!(summary.result(), ReconciliationResult::Matched);
        assert_eq!((summary.rows_submitted, summary.rows_in_ledger, summary.matched), (26, 26, 26));

        let mut quiet = header("DET-2", "2026-03-01", "2026-03-01");
        quiet.breaks_only = true;
        let answered = reconcile(&mut ledger, quiet, batches).await;
        assert!(answered.rows.is_empty());
        assert_eq!(answered.summary.expect("a summary").matched, 26);

        let again = reconcile(&mut ledger, header("DET-1", "2026-03-01", "2026-03-01"), vec![]).await;
        assert!(again.rows.is_empty() && again.checkpoints.is_empty());
        assert_eq!(again.summary.expect("the first summary"), summary);

        let totals = totals(&mut ledger, ReconcileTotalsRequest {
            message_id: "TOT-1".into(),
            scope: zibo(),
            from_date: "2026-03-01".into(),
            to_date: "2026-03-01".into(),
            totals: Some(totals_of(&booked)),
            ..Default::default()
        }).await.expect("answered");
        assert_eq!(totals.result(), ReconciliationResult::Matched);
    }
}

network_test! {
    /// Proves that each class of break injected into a submission is found and classified
    /// exactly, and nothing else is reported: a local record deleted (missing in submission),
    /// one the ledger never booked (missing in ledger), a row sent twice (duplicate), an amount
    /// altered (amount mismatch, naming the figures), a date shifted, a row the ledger booked
    /// on another day and one still pending there (timing).
    async fn each_break_class_is_found_exactly(net) {
        let mut ledger = net.ledger();
        let mut booked = day(12);
        booked.push(cancellation(20, &booked[1], "2026-03-01"));
        book(&mut ledger, "BOOK", &booked).await;
        let other_day = settlement(13, "2026-03-02");
        book(&mut ledger, "OTHER-DAY", std::slice::from_ref(&other_day)).await;
        let held = pending(settlement(14, "2026-03-01"));
        book(&mut ledger, "PENDING", std::slice::from_ref(&held)).await;

        let mut rows: Vec<DetailRow> = Vec::new();
        for transfer in booked.iter().chain([&other_day, &held]) {
            let mut submitted = row(transfer);
            let serial: u32 = submitted.settlement_id[7..].parse().unwrap();
            match (submitted.cancellation, serial) {
                (false, 3) => continue,
                (false, 5) => {
                    submitted.fund_pay = yuan(fen(&submitted.fund_pay) - 100);
                    submitted.cash_pay = yuan(fen(&submitted.cash_pay) + 100);
                }
                (false, 7) => rows.push(submitted.clone()),
                (false, 9) => submitted.settlement_date = "2026-03-02".into(),
                // The submitter books on the day it settled; the ledger holds 13 on the 2nd.
                (false, 13) => submitted.settlement_date = "2026-03-01".into(),
                _ => {}
            }
            rows.push(submitted);
        }
        let mut unknown = row(&settlement(99, "2026-03-01"));
        unknown.visit_id = "S-NEVER-BOOKED".into();
        rows.push(unknown);
        rows.sort_by(|a, b| a.settlement_id.cmp(&b.settlement_id));

        let answered = reconcile(
            &mut ledger,
            header("DET-1", "2026-03-01", "2026-03-01"),
            rows.chunks(4).map(<[DetailRow]>::to_vec).collect(),
        )
        .await;
        assert!(answered.error.is_none(), "{:?}", answered.error);
        let expected: BTreeMap<String, DetailResult> = [
            (3, DetailResult::MissingInSubmission),
            (5, DetailResult::AmountMismatch),
            (7, DetailResult::Duplicate),
            (9, DetailResult::Timing),
            (13, DetailResult::Timing),
            (14, DetailResult::Timing),
            (99, DetailResult::MissingInLedger),
        ]
        .into_iter()
        .map(|(serial, result)| (settlement_id(serial), result))
        .collect();
        let found: BTreeMap<String, DetailResult> = answered.breaks().into_iter().collect();
        assert_eq!(found, expected);
        assert_eq!(answered.breaks().len(), expected.len(), "each break once");
        let mismatch = answered
            .rows
            .iter()
            .find(|r| r.result() == DetailResult::AmountMismatch)
            .unwrap();
        assert_eq!(mismatch.mismatched_figures().collect::<Vec<_>>(), [ReconciliationFigure::FundPay, ReconciliationFigure::CashPay]);
        let timing_13 = answered.rows.iter().find(|r| r.settlement_id == settlement_id(13)).unwrap();
        assert_eq!(timing_13.ledger.as_ref().map(|r| r.settlement_date.as_str()), Some("2026-03-02"));
        let missing = answered.rows.iter().find(|r| r.result() == DetailResult::MissingInSubmission).unwrap();
        assert!(missing.submitted.is_none() && missing.ledger.is_some());
        let summary = answered.summary.expect("a summary");
        assert_eq!(summary.result(), ReconciliationResult::Mismatched);
        // 12 settlements, one deleted, one sent twice, the cancellation, 13, 14 and 99.
        assert_eq!(summary.rows_submitted, 16);
        // 12 settlements and the cancellation posted on the 1st.
        assert_eq!(summary.rows_in_ledger, 13);
        assert_eq!(
            (summary.matched, summary.missing_in_ledger, summary.missing_in_submission,
             summary.duplicate, summary.amount_mismatch, summary.timing),
            (10, 1, 1, 1, 1, 3)
        );
    }
}

network_test! {
    /// Proves that a day larger than one ledger page streams in bounded batches with a
    /// checkpoint after each, and that a stream broken off resumes from a checkpoint the client
    /// received (even one before the last it was sent): results before it are not sent again,
    /// and the summary counts the whole run exactly once. An unfinished run opened again
    /// without a token is refused.
    async fn details_stream_in_pages_and_resume(net) {
        let mut ledger = net.ledger();
        let booked = day(2_300);
        book(&mut ledger, "BOOK", &booked).await;
        let rows: Vec<DetailRow> = booked.iter().map(row).collect();
        let batches: Vec<Vec<DetailRow>> = rows.chunks(1_000).map(<[DetailRow]>::to_vec).collect();
        assert_eq!(batches.len(), 3);

        // The first stream sends two batches, reads up to the second batch's checkpoint, and
        // breaks off without closing its side.
        let (sender, receiver) = mpsc::channel(4);
        for message in messages(header("DET-1", "2026-03-01", "2026-03-01"), batches[..2].to_vec()) {
            sender.send(message).await.unwrap();
        }
        let mut stream = ledger
            .reconcile_details(ReceiverStream::new(receiver))
            .await
            .expect("the run opens")
            .into_inner();
        let mut checkpoints = Vec::new();
        let mut results = 0;
        while checkpoints.len() < 3 {
            match stream.next().await.expect("more").expect("no error").item.unwrap() {
                Received::Row(_) => results += 1,
                Received::Checkpoint(checkpoint) => checkpoints.push(checkpoint),
                Received::Summary(_) => panic!("the client has not finished"),
            }
        }
        assert_eq!(results, 2_000);
        assert_eq!(checkpoints[1].rows_received, 1_000);
        assert_eq!(checkpoints[1].last_settlement_id, settlement_id(1_000));
        drop(stream);
        drop(sender);

        let status = ledger
            .reconcile_details(tokio_stream::iter(messages(header("DET-1", "2026-03-01", "2026-03-01"), vec![])))
            .await
            .expect_err("an unfinished run needs its token");
        assert_refused(&status, "RUN_UNFINISHED");

        // The client lost the second batch's checkpoint: it resumes after the first one and
        // sends the rest.
        let mut resume = header("DET-1", "2026-03-01", "2026-03-01");
        resume.resume_token = checkpoints[1].resume_token.clone();
        let answered = reconcile(&mut ledger, resume, batches[1..].to_vec()).await;
        assert!(answered.error.is_none(), "{:?}", answered.error);
        assert_eq!(answered.rows.len(), 1_300, "only the rows after the checkpoint");
        assert_eq!(answered.rows[0].settlement_id, settlement_id(1_001));
        assert!(answered.breaks().is_empty());
        assert_eq!(answered.checkpoints.last().unwrap().rows_received, 2_300);
        let summary = answered.summary.expect("a summary");
        assert_eq!(summary.result(), ReconciliationResult::Matched);
        assert_eq!((summary.rows_submitted, summary.rows_in_ledger, summary.matched), (2_300, 2_300, 2_300));
    }
}

network_test! {
    /// Proves that malformed requests are refused with the field's path: a range over 31 days,
    /// a missing scope, rows out of order in the stream, a resume token of no run.
    async fn malformed_reconciliations_name_the_field(net) {
        let mut ledger = net.ledger();
        book(&mut ledger, "BOOK", &day(3)).await;
        let status = totals(&mut ledger, ReconcileTotalsRequest {
            message_id: "TOT-1".into(),
            scope: zibo(),
            from_date: "2026-03-01".into(),
            to_date: "2026-04-02".into(),
            totals: Some(ReconciliationTotals::default()),
            ..Default::default()
        }).await.expect_err("refused");
        assert_invalid(&status, "to_date");
        let status = totals(&mut ledger, ReconcileTotalsRequest {
            message_id: "TOT-1".into(),
            from_date: "2026-03-01".into(),
            to_date: "2026-03-01".into(),
            totals: Some(ReconciliationTotals::default()),
            ..Default::default()
        }).await.expect_err("refused");
        assert_invalid(&status, "scope");

        let mut rows: Vec<DetailRow> = day(3).iter().map(row).collect();
        rows.swap(1, 2);
        let answered = reconcile(&mut ledger, header("DET-1", "2026-03-01", "2026-03-01"), vec![rows]).await;
        let status = answered.error.expect("the stream ends with the refusal");
        assert_invalid(&status, "rows.rows[2].settlement_id");
        assert!(answered.summary.is_none());

        let mut resume = header("DET-2", "2026-03-01", "2026-03-01");
        resume.resume_token = "ckpt1.1".into();
        let status = ledger
            .reconcile_details(tokio_stream::iter(messages(resume, vec![])))
            .await
            .expect_err("no such run");
        assert_invalid(&status, "header.resume_token");
    }
}

// Monthly clearing: the treatment cities extract, confirm and apply; the clearing house closes.

const CITIES: [&str; 4] = [JINAN, ZIBO, DONGYING, BINZHOU];

fn march() -> Option<ClearingPeriod> {
    Some(ClearingPeriod {
        year: 2026,
        month: 3,
    })
}

fn april() -> Option<ClearingPeriod> {
    Some(ClearingPeriod {
        year: 2026,
        month: 4,
    })
}

/// A posted settlement of `fund` + `account` fen for a person of `insured` at a `treatment`
/// hospital on `date`, under transfer id `n`.
fn cross(n: u32, insured: &str, treatment: &str, fund: i64, account: i64, date: &str) -> Transfer {
    let cash = 300;
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
            insurance_type: 310,
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

fn deposit(n: u32, city: &str, fen: i64) -> Transfer {
    Transfer {
        id: transfer_id(n),
        debit_account_id: format!("{city}.bank"),
        credit_account_id: format!("{city}.fund"),
        amount: yuan(fen),
        code: TransferCode::Deposit as i32,
        operator_id: "bureau-operator-1".into(),
        ..Default::default()
    }
}

/// March across the four cities: deposits, cross-city settlements of every ordered pair (their
/// figures varying), same-city ones, a cancellation in March, and one left pending. Returns the
/// posted cross-city rows, the cancellation included.
async fn book_march(ledger: &mut Ledger) -> Vec<Transfer> {
    let deposits: Vec<Transfer> = CITIES
        .iter()
        .enumerate()
        .map(|(index, city)| deposit(9_000 + index as u32, city, 10_000_000))
        .collect();
    book(ledger, "DEPOSITS", &deposits).await;
    let mut cross_rows = Vec::new();
    let mut same_city = Vec::new();
    let mut n = 1;
    for (i, insured) in CITIES.iter().enumerate() {
        for (t, treatment) in CITIES.iter().enumerate() {
            for k in 0..(1 + (i + 2 * t) % 3) {
                let fund = 10_000 + (i as i64 * 1_000) + (t as i64 * 337) + k as i64 * 51;
                let account = if k % 2 == 0 { 0 } else { 2_500 };
                let date = format!("2026-03-{:02}", 1 + (n % 28));
                let transfer = cross(n, insured, treatment, fund, account, &date);
                n += 1;
                if insured == treatment {
                    same_city.push(transfer);
                } else {
                    cross_rows.push(transfer);
                }
            }
        }
    }
    let cancelled = cancellation(500, &cross_rows[2], "2026-03-30");
    let mut all = cross_rows.clone();
    all.extend(same_city);
    all.push(cancelled.clone());
    book(ledger, "MARCH", &all).await;
    book(
        ledger,
        "PENDING",
        &[pending(cross(600, JINAN, ZIBO, 4_000, 0, "2026-03-15"))],
    )
    .await;
    cross_rows.push(cancelled);
    cross_rows
}

async fn list_all(
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
                page_size: 3,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner();
        assert!(page.details.len() <= 3);
        details.extend(page.details);
        assert_eq!(
            page.total_rows,
            details.len().max(page.total_rows as usize) as u64
        );
        if page.next_page_token.is_empty() {
            assert_eq!(page.total_rows, details.len() as u64);
            return details;
        }
        page_token = page.next_page_token;
    }
}

fn include(settlement_id: &str) -> DetailDecision {
    DetailDecision {
        settlement_id: settlement_id.to_owned(),
        decision: ConfirmationStatus::Included as i32,
        reason: String::new(),
    }
}

fn totals_of_details<'a>(details: impl IntoIterator<Item = &'a ClearingDetail>) -> ClearingTotals {
    let (mut count, mut total, mut fund, mut account) = (0, 0, 0, 0);
    for detail in details {
        count += 1;
        total += fen(&detail.total_amount);
        fund += fen(&detail.fund_pay);
        account += fen(&detail.account_pay);
    }
    ClearingTotals {
        count,
        total_amount: yuan(total),
        insured_city_pay: yuan(fund + account),
        fund_pay: yuan(fund),
        account_pay: yuan(account),
    }
}

async fn fund_balances(ledger: &mut Ledger) -> BTreeMap<String, String> {
    ledger
        .get_balances(GetBalancesRequest {
            account_ids: CITIES.iter().map(|city| format!("{city}.fund")).collect(),
            ..Default::default()
        })
        .await
        .expect("balances")
        .into_inner()
        .accounts
        .into_iter()
        .map(|account| (account.id, account.balance))
        .collect()
}

/// Every city confirms all its March rows (Zibo excluding `excluded`, when given) and applies.
async fn confirm_and_apply(ledger: &mut Ledger, excluded: Option<&str>) {
    for treatment in CITIES {
        let details = list_all(ledger, march(), treatment).await;
        let decisions: Vec<DetailDecision> = details
            .iter()
            .map(|detail| match excluded {
                Some(id) if id == detail.settlement_id => DetailDecision {
                    settlement_id: id.to_owned(),
                    decision: ConfirmationStatus::Excluded as i32,
                    reason: "the visit record is under review".into(),
                },
                _ => include(&detail.settlement_id),
            })
            .collect();
        let confirmed = ledger
            .confirm_clearing_details(yitong_sandbox::as_its_bureau(
                ConfirmClearingDetailsRequest {
                    message_id: format!("CONFIRM-{treatment}"),
                    period: march(),
                    treatment_city: treatment.to_owned(),
                    decisions,
                    operator_id: format!("{treatment}-bureau"),
                },
            ))
            .await
            .expect("confirmed")
            .into_inner();
        assert_eq!(confirmed.unconfirmed_left, 0);
        let included = details
            .iter()
            .filter(|d| Some(d.settlement_id.as_str()) != excluded);
        let applied = ledger
            .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                message_id: format!("APPLY-{treatment}"),
                period: march(),
                treatment_city: treatment.to_owned(),
                totals: Some(totals_of_details(included)),
                operator_id: format!("{treatment}-bureau"),
            }))
            .await
            .expect("applied")
            .into_inner();
        assert_eq!(
            applied.application.unwrap().status(),
            ClearingApplicationStatus::Applied
        );
    }
}

async fn close_march(
    ledger: &mut Ledger,
    message_id: &str,
) -> Result<CloseClearingPeriodResponse, tonic::Status> {
    ledger
        .close_clearing_period(CloseClearingPeriodRequest {
            message_id: message_id.to_owned(),
            period: march(),
            operator_id: "clearing-house-1".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

network_test! {
    /// Proves the month's clearing end to end: each treatment city pulls its cross-city rows in
    /// pages (same-city and pending rows left out), confirms them (a rollback and a cancelled
    /// application along the way) and applies with totals that must equal the ledger's; the
    /// close's gross obligations equal the per-pair fund and account pay computed here from
    /// the booked records, the net positions sum to zero, at most n - 1 payments settle them,
    /// every fund ends where it stood, and each city confirms its statement.
    async fn a_month_clears_to_net_positions_summing_to_zero(net) {
        let mut ledger = net.ledger();
        let booked = book_march(&mut ledger).await;

        // Extract: every treatment city sees exactly its cross-city rows.
        for treatment in CITIES {
            let details = list_all(&mut ledger, march(), treatment).await;
            let mut expected: Vec<String> = booked
                .iter()
                .map(|t| t.settlement.as_ref().unwrap())
                .filter(|r| r.treatment_city == treatment)
                .map(|r| r.settlement_id.clone())
                .collect();
            expected.sort();
            let listed: Vec<String> = details.iter().map(|d| d.settlement_id.clone()).collect();
            assert_eq!(listed, expected, "{treatment}");
            assert!(details.iter().all(|d| d.confirmation() == ConfirmationStatus::Unconfirmed));
        }

        // Zibo confirms two rows, rolls one back, and may not apply with a row unconfirmed.
        let zibo_rows = list_all(&mut ledger, march(), ZIBO).await;
        ledger
            .confirm_clearing_details(yitong_sandbox::as_its_bureau(ConfirmClearingDetailsRequest {
                message_id: "CONFIRM-EARLY".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                decisions: vec![include(&zibo_rows[0].settlement_id), include(&zibo_rows[1].settlement_id)],
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect("confirmed");
        let rolled = ledger
            .rollback_clearing_confirmation(yitong_sandbox::as_its_bureau(RollbackClearingConfirmationRequest {
                message_id: "ROLLBACK-1".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                settlement_ids: vec![zibo_rows[1].settlement_id.clone()],
                reason: "confirmed by mistake".into(),
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect("rolled back")
            .into_inner();
        assert_eq!(rolled.rolled_back, 1);
        assert_eq!(rolled.unconfirmed_left, zibo_rows.len() as u64 - 1);
        let status = ledger
            .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                message_id: "APPLY-EARLY".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                totals: Some(totals_of_details(&zibo_rows[..1])),
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect_err("rows are unconfirmed");
        assert_refused(&status, "UNCONFIRMED_ROWS");

        confirm_and_apply(&mut ledger, None).await;

        // Zibo withdraws its application and applies again.
        let application_id = {
            let status = ledger
                .confirm_clearing_details(yitong_sandbox::as_its_bureau(ConfirmClearingDetailsRequest {
                    message_id: "CONFIRM-LATE".into(),
                    period: march(),
                    treatment_city: ZIBO.into(),
                    decisions: vec![include(&zibo_rows[0].settlement_id)],
                    operator_id: "zibo-bureau".into(),
                }))
                .await
                .expect_err("applied");
            assert_refused(&status, "ALREADY_APPLIED");
            let reapplied = ledger
                .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                    message_id: "APPLY-ZIBO-TWICE".into(),
                    period: march(),
                    treatment_city: ZIBO.into(),
                    totals: Some(totals_of_details(&zibo_rows)),
                    operator_id: "zibo-bureau".into(),
                }))
                .await
                .expect_err("already applied");
            assert_refused(&reapplied, "ALREADY_APPLIED");
            let replay = ledger
                .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                    message_id: format!("APPLY-{ZIBO}"),
                    period: march(),
                    treatment_city: ZIBO.into(),
                    totals: Some(totals_of_details(&zibo_rows)),
                    operator_id: format!("{ZIBO}-bureau"),
                }))
                .await
                .expect("replayed")
                .into_inner();
            replay.application.unwrap().application_id
        };
        let cancelled = ledger
            .cancel_clearing_application(yitong_sandbox::as_its_bureau(CancelClearingApplicationRequest {
                message_id: "CANCEL-1".into(),
                application_id,
                reason: "a figure to check again".into(),
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect("cancelled")
            .into_inner();
        assert_eq!(cancelled.application.unwrap().status(), ClearingApplicationStatus::Cancelled);
        let status = close_march(&mut ledger, "CLOSE-EARLY").await.expect_err("Zibo has not applied");
        assert_refused(&status, "NOT_APPLIED");
        let mut wrong = totals_of_details(&zibo_rows);
        wrong.fund_pay = yuan(fen(&wrong.fund_pay) + 1);
        wrong.insured_city_pay = yuan(fen(&wrong.insured_city_pay) + 1);
        let status = ledger
            .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                message_id: "APPLY-WRONG".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                totals: Some(wrong),
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect_err("totals differ");
        assert_refused(&status, "TOTALS_MISMATCH");
        ledger
            .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                message_id: "APPLY-ZIBO-AGAIN".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                totals: Some(totals_of_details(&zibo_rows)),
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect("applied again");

        let funds_before = fund_balances(&mut ledger).await;
        let closed = close_march(&mut ledger, "CLOSE-1").await.expect("closed");

        // Gross obligations per pair, computed independently from the booked records.
        let mut expected: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for transfer in &booked {
            let record = transfer.settlement.as_ref().unwrap();
            let pair = expected.entry((record.insured_city.clone(), record.treatment_city.clone())).or_default();
            pair.0 += fen(&record.fund_pay);
            pair.1 += fen(&record.account_pay);
        }
        let found: BTreeMap<(String, String), (i64, i64)> = closed
            .obligations
            .iter()
            .map(|o| {
                assert_eq!(fen(&o.amount), fen(&o.fund_pay) + fen(&o.account_pay));
                ((o.insured_city.clone(), o.treatment_city.clone()), (fen(&o.fund_pay), fen(&o.account_pay)))
            })
            .collect();
        assert_eq!(found, expected);
        let mut nets: BTreeMap<String, i64> = BTreeMap::new();
        for ((insured, treatment), (fund, account)) in &expected {
            *nets.entry(treatment.clone()).or_default() += fund + account;
            *nets.entry(insured.clone()).or_default() -= fund + account;
        }
        assert_eq!(closed.net_positions.len(), 4);
        assert_eq!(closed.net_positions.iter().map(|p| fen(&p.net)).sum::<i64>(), 0, "nets sum to zero");
        for position in &closed.net_positions {
            assert_eq!(fen(&position.net), nets[&position.city], "{}", position.city);
            assert_eq!(fen(&position.net), fen(&position.receivable) - fen(&position.payable));
        }
        let non_zero = nets.values().filter(|net| **net != 0).count();
        assert!(closed.payment_instructions.len() < non_zero.max(1));
        let mut settled = nets.clone();
        for payment in &closed.payment_instructions {
            *settled.get_mut(&payment.payer_city).unwrap() += fen(&payment.amount);
            *settled.get_mut(&payment.payee_city).unwrap() -= fen(&payment.amount);
        }
        assert!(settled.values().all(|net| *net == 0), "the payments settle every position");
        assert_eq!(fund_balances(&mut ledger).await, funds_before, "every fund ends where it stood");
        assert_eq!(closed.statements.len(), 4);
        assert_eq!(closed.journal_head_hash.len(), 64);

        for city in CITIES {
            let statement = ledger
                .get_clearing_statement(GetClearingStatementRequest { city: city.into(), period: march() })
                .await
                .expect("a statement")
                .into_inner()
                .statement
                .unwrap();
            assert_eq!(statement.status(), StatementStatus::Issued);
            assert_eq!(fen(&statement.net_position.as_ref().unwrap().net), nets[city]);
            assert_eq!(statement.fund_balance_before, statement.fund_balance_after);
            let confirmed = ledger
                .confirm_clearing_statement(yitong_sandbox::as_its_bureau(ConfirmClearingStatementRequest {
                    message_id: format!("STATEMENT-{city}"),
                    city: city.into(),
                    period: march(),
                    operator_id: format!("{city}-bureau"),
                }))
                .await
                .expect("confirmed")
                .into_inner()
                .statement
                .unwrap();
            assert_eq!(confirmed.status(), StatementStatus::Confirmed);
            assert_eq!(confirmed.confirmed_by, format!("{city}-bureau"));
        }
        let status = ledger
            .get_clearing_statement(GetClearingStatementRequest { city: ZIBO.into(), period: april() })
            .await
            .expect_err("April is open");
        assert_refused(&status, "PERIOD_OPEN");
    }
}

network_test! {
    /// Proves that a closed period is frozen: closing it again, confirming or rolling back in
    /// it is refused; a cancellation of one of its settlements booked after the close lands in
    /// the next period as an adjustment, and a row excluded at the close, or pending then and
    /// posted after, comes back there carried over.
    async fn a_closed_period_refuses_changes_and_late_cancellations_move_on(net) {
        let mut ledger = net.ledger();
        let booked = book_march(&mut ledger).await;
        let zibo_rows = list_all(&mut ledger, march(), ZIBO).await;
        let held_out = zibo_rows[0].settlement_id.clone();
        confirm_and_apply(&mut ledger, Some(&held_out)).await;
        let closed = close_march(&mut ledger, "CLOSE-1").await.expect("closed");
        let zibo_statement = closed.statements.iter().find(|s| s.city == ZIBO).unwrap();
        assert_eq!(zibo_statement.excluded_count, 1);

        let status = close_march(&mut ledger, "CLOSE-2").await.expect_err("closed already");
        assert_refused(&status, "PERIOD_CLOSED");
        let status = ledger
            .rollback_clearing_confirmation(yitong_sandbox::as_its_bureau(RollbackClearingConfirmationRequest {
                message_id: "ROLLBACK-1".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                settlement_ids: vec![],
                reason: "too late".into(),
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect_err("frozen");
        assert_refused(&status, "PERIOD_CLOSED");

        let status = ledger
            .confirm_clearing_details(yitong_sandbox::as_its_bureau(ConfirmClearingDetailsRequest {
                message_id: "CONFIRM-CLOSED".into(),
                period: march(),
                treatment_city: ZIBO.into(),
                decisions: vec![include(&held_out)],
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect_err("frozen");
        assert_refused(&status, "PERIOD_CLOSED");
        let status = ledger
            .confirm_clearing_details(yitong_sandbox::as_its_bureau(ConfirmClearingDetailsRequest {
                message_id: "CONFIRM-UNKNOWN".into(),
                period: april(),
                treatment_city: ZIBO.into(),
                decisions: vec![include("T370300NOSUCHROW")],
                operator_id: "zibo-bureau".into(),
            }))
            .await
            .expect_err("no such row");
        assert_eq!(status.code(), Code::NotFound);

        // A March settlement of Zibo's cancelled after the close, dated in March.
        let original = booked
            .iter()
            .find(|t| {
                let record = t.settlement.as_ref().unwrap();
                record.treatment_city == ZIBO && !record.cancellation && record.settlement_id != held_out
            })
            .unwrap();
        let late = cancellation(700, original, "2026-03-31");
        book(&mut ledger, "LATE", std::slice::from_ref(&late)).await;
        let record = ledger
            .lookup_transfers(LookupTransfersRequest {
                selector: Some(Selector::Ids(TransferIds { ids: vec![transfer_id(700)] })),
            })
            .await
            .expect("found")
            .into_inner()
            .transfers
            .pop()
            .unwrap();
        assert_eq!(record.clearing_period, april());

        let late_id = late.settlement.as_ref().unwrap().settlement_id.clone();
        let april_rows = list_all(&mut ledger, april(), ZIBO).await;
        assert_eq!(april_rows.len(), 2, "a pending row is listed once posted");
        // The settlement left pending in March is posted after the close: it counts in April.
        let posted = ledger
            .post_pending_transfers(PostPendingTransfersRequest {
                message_id: "POST-600".into(),
                pending_transfer_ids: vec![transfer_id(600)],
            })
            .await
            .expect("posted")
            .into_inner();
        assert_eq!(posted.results[0].result(), PendingTransferResult::Ok);
        let april_rows = list_all(&mut ledger, april(), ZIBO).await;
        let summary: Vec<(String, bool, bool)> = april_rows
            .iter()
            .map(|d| (d.settlement_id.clone(), d.adjustment, d.carried_over))
            .collect();
        let mut expected = vec![
            (late_id, true, false),
            (held_out, false, true),
            (format!("T{ZIBO}{:010}", 600), false, true),
        ];
        expected.sort();
        assert_eq!(summary, expected);
        // March itself is unchanged.
        assert_eq!(list_all(&mut ledger, march(), ZIBO).await.len(), zibo_rows.len());
    }
}
