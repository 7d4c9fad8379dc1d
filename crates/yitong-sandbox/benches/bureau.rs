//! The bureaus' side at full scale (the reconciliation and clearing issue): one day of a million
//! settlements reconciled, totals and details, and one month of ten million postings closed.
//!
//! Run with `cargo bench -p yitong-sandbox --bench bureau`. It starts the sandbox network (four
//! cities and the clearing house) in-process on each database and times, through gRPC:
//! - the day: ReconcileTotals and a whole ReconcileDetails run for the treatment city, whose
//!   submitted rows are generated as they are streamed (never held in memory);
//! - the month: a sample of ConfirmClearingDetails calls at full size, each city's
//!   ApplyClearing, and CloseClearingPeriod at the clearing house, whose net positions are
//!   checked against the obligations computed here.
//!
//! Booking millions of settlements through CreateTransfers would take most of an hour on these
//! two cores (booking speed is the performance issue's subject), so the postings are loaded
//! straight into the ledger's store with the ledger's own journal code: `Entry::new` builds the
//! same columns, legs and hash chain CreateTransfers writes, `insert_entries` writes them and their
//! clearing tallies as the appender does, and VerifyJournal checks the chain
//! after small runs. The confirmations the sample does not make are loaded the same way, one
//! INSERT of what ConfirmClearingDetails writes.
//!
//! Knobs (environment): `YITONG_BENCH_DAY` settlements in the day (1,000,000),
//! `YITONG_BENCH_MONTH` settlements in the month (5,000,000: ten million journal entries, each
//! settlement created pending and then posted), `YITONG_BENCH_DATABASE` `sqlite`,
//! `postgres` or both (the default). A benchmark, not a test: figures are printed, never
//! asserted; what is asserted is that the answers are right.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use yitong_core::{Amount, Owner, Service};
use yitong_ledger::journal::{Entry, Event, TransferColumns, from_hex, to_hex};
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::ledger::v1::reconcile_details_request::Item as Sent;
use yitong_proto::ledger::v1::reconcile_details_response::Item as Received;
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    ApplyClearingRequest, ClearingPeriod, ClearingTotals, CloseClearingPeriodRequest,
    ConfirmClearingDetailsRequest, ConfirmationStatus, DetailDecision, DetailRow, DetailRowBatch,
    GetBalancesRequest, ReconcileDetailsHeader, ReconcileDetailsRequest, ReconcileTotalsRequest,
    ReconciliationResult, ReconciliationScope, ReconciliationTotals, SettlementRecord, Transfer,
    TransferCode, TransferFlags, VerifyJournalRequest,
};
use yitong_sandbox::Channel;
use yitong_sandbox::{BINZHOU, DONGYING, Database, JINAN, Sandbox, ZIBO};
use yitong_store::Store;
use yitong_store::sqlx::{self, Row};

type Ledger = LedgerServiceClient<Channel>;

const CITIES: [&str; 4] = [JINAN, ZIBO, DONGYING, BINZHOU];
/// Most transfers in one CreateTransfers, rows in one batch, decisions in one confirmation.
const BATCH: u64 = 1_000;
/// The reconciled day, and the closed month.
const DAY: &str = "2026-09-15";
const MONTH: ClearingPeriod = ClearingPeriod {
    year: 2026,
    month: 10,
};

fn main() {
    let day_settlements = knob("YITONG_BENCH_DAY", 1_000_000);
    let month_settlements = knob("YITONG_BENCH_MONTH", 5_000_000);
    let databases = match std::env::var("YITONG_BENCH_DATABASE").as_deref() {
        Ok("sqlite") => vec![Database::Sqlite],
        Ok("postgres") => vec![Database::Postgres],
        _ => vec![Database::Sqlite, Database::Postgres],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for database in databases {
            if day_settlements > 0 {
                let Some(net) = Sandbox::start(database).await else {
                    continue;
                };
                day(&net, database, day_settlements).await;
                net.shut_down().await;
            }
            if month_settlements > 0 {
                let Some(net) = Sandbox::start(database).await else {
                    continue;
                };
                month(&net, database, month_settlements).await;
                net.shut_down().await;
            }
        }
    });
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| value.replace('_', "").parse().expect("a whole number"))
        .unwrap_or(default)
}

// ---- The generated traffic -----------------------------------------------------------------

/// The n-th settlement of a run, the same every time it is generated: its treatment and insured
/// city, date, and fund, account and cash pay in fen.
#[derive(Clone, Copy)]
struct Claim {
    n: u64,
    treatment: &'static str,
    insured: &'static str,
    month: u32,
    date_day: u32,
    fund_fen: i64,
    account_fen: i64,
    cash_fen: i64,
}

impl Claim {
    /// In the day, every settlement is at Jinan's hospitals, insured in any of the four cities.
    fn of_day(n: u64) -> Claim {
        Claim::new(n, JINAN, CITIES[(n % 4) as usize], (9, 15))
    }

    /// In the month, settlements cycle through the sixteen ordered pairs and the 31 days.
    fn of_month(n: u64) -> Claim {
        let pair = (n % 16) as usize;
        Claim::new(
            n,
            CITIES[pair / 4],
            CITIES[pair % 4],
            (10, (n / 16 % 31) as u32 + 1),
        )
    }

    fn new(
        n: u64,
        treatment: &'static str,
        insured: &'static str,
        (month, date_day): (u32, u32),
    ) -> Claim {
        let spread =
            |modulus: u64, factor: u64| i64::try_from(n * factor % modulus).expect("small");
        Claim {
            n,
            treatment,
            insured,
            month,
            date_day,
            fund_fen: 1_000 + spread(48_611, 7_919),
            account_fen: spread(2_003, 31),
            cash_fen: 500 + spread(4_999, 131),
        }
    }

    /// The settlement date: the reconciled day's claims are in September, the month's in October.
    fn date(&self) -> String {
        format!("2026-{:02}-{:02}", self.month, self.date_day)
    }

    fn cross_city(&self) -> bool {
        self.treatment != self.insured
    }

    /// Byte order of settlement ids is the order of `n`: the digits are zero-padded.
    fn settlement_id(&self) -> String {
        format!("T{}{:012}", self.treatment, self.n)
    }

    fn total_fen(&self) -> i64 {
        self.fund_fen + self.account_fen + self.cash_fen
    }

    fn record(&self, date: &str) -> SettlementRecord {
        SettlementRecord {
            settlement_id: self.settlement_id(),
            message_id: format!("H{}00001-{}", self.treatment, self.n),
            treatment_city: self.treatment.to_owned(),
            insured_city: self.insured.to_owned(),
            institution_code: format!("H{}00001", self.treatment),
            visit_id: format!("S{}{:012}", self.treatment, self.n),
            person_no: format!("{}{:010}", self.insured, self.n % 10_000_000_000),
            insurance_type: if self.n.is_multiple_of(2) { 310 } else { 390 },
            clearing_type: 11,
            settlement_date: date.to_owned(),
            total_amount: yuan(self.total_fen()),
            fund_pay: yuan(self.fund_fen),
            account_pay: yuan(self.account_fen),
            cash_pay: yuan(self.cash_fen),
            cancellation: false,
            original_settlement_id: String::new(),
            fund_payments: Vec::new(),
        }
    }

    /// The posted SETTLEMENT transfer a treatment city's node books for the claim.
    fn transfer(&self, date: &str) -> Transfer {
        let payer = if self.cross_city() {
            format!("{}->{}.obligation", self.insured, self.treatment)
        } else {
            format!("{}.pool", self.treatment)
        };
        Transfer {
            id: format!("00000000-0000-4000-8000-{:012}", self.n),
            debit_account_id: format!("{}.advances", self.treatment),
            credit_account_id: payer,
            amount: yuan(self.fund_fen + self.account_fen),
            code: TransferCode::Settlement as i32,
            settlement: Some(self.record(date)),
            ..Default::default()
        }
    }

    /// The journal columns CreateTransfers stores for the claim's SETTLEMENT transfer, created
    /// pending as Settle books it, by the ledger's own conversion.
    fn columns(&self, created_at_ms: i64) -> TransferColumns {
        let mut wire = self.transfer(&self.date());
        wire.flags = Some(TransferFlags {
            linked: false,
            pending: true,
        });
        wire.pending_timeout_seconds = TRANSFER_TIMEOUT_SECONDS;
        let transfer = yitong_ledger::transfer::Transfer::try_from(wire)
            .expect("the generated transfer is valid");
        yitong_ledger::transfer_columns(&transfer, created_at_ms, None)
    }

    /// The row the treatment city's bureau holds for the claim.
    fn row(&self, date: &str) -> DetailRow {
        let record = self.record(date);
        DetailRow {
            settlement_id: record.settlement_id,
            visit_id: record.visit_id,
            person_no: record.person_no,
            settlement_date: record.settlement_date,
            total_amount: record.total_amount,
            fund_pay: record.fund_pay,
            account_pay: record.account_pay,
            cash_pay: record.cash_pay,
            cancellation: false,
            message_id: record.message_id,
        }
    }
}

fn yuan(fen: i64) -> String {
    Amount::from_fen(fen).to_string()
}

fn report(database: Database, what: &str, rows: u64, elapsed: Duration) {
    let per_second = u128::from(rows) * 1_000 / elapsed.as_millis().max(1);
    println!(
        "{database:?} | {what} | {rows} rows | {:.1} s | {per_second} rows/s",
        elapsed.as_secs_f64()
    );
}

// ---- The day ---------------------------------------------------------------------------------

async fn day(net: &Sandbox, database: Database, count: u64) {
    let ledger = &mut net.ledger();
    let store = &net.ledger_store().await;
    eprintln!("{database:?}: loading one day of {count} settlements at Jinan");
    let started = Instant::now();
    load_journal(store, count, Claim::of_day).await;
    report(
        database,
        "load the day's journal (direct), entries",
        2 * count,
        started.elapsed(),
    );

    let (mut total, mut fund, mut account, mut cash) = (0, 0, 0, 0);
    for n in 0..count {
        let claim = Claim::of_day(n);
        total += claim.total_fen();
        fund += claim.fund_fen;
        account += claim.account_fen;
        cash += claim.cash_fen;
    }
    let scope = || {
        Some(ReconciliationScope {
            subject: Some(Subject::TreatmentCity(JINAN.to_owned())),
        })
    };
    let started = Instant::now();
    let totals = ledger
        .reconcile_totals(ReconcileTotalsRequest {
            message_id: "TOTALS-1".into(),
            scope: scope(),
            from_date: DAY.into(),
            to_date: DAY.into(),
            totals: Some(ReconciliationTotals {
                count,
                total_amount: yuan(total),
                fund_pay: yuan(fund),
                account_pay: yuan(account),
                cash_pay: yuan(cash),
                ..Default::default()
            }),
            operator_id: "jinan-bureau".into(),
            ..Default::default()
        })
        .await
        .expect("ReconcileTotals answers")
        .into_inner();
    report(
        database,
        "ReconcileTotals, one day",
        count,
        started.elapsed(),
    );
    assert_eq!(totals.result(), ReconciliationResult::Matched, "{totals:?}");

    let header = ReconcileDetailsHeader {
        message_id: "DETAILS-1".into(),
        scope: scope(),
        from_date: DAY.into(),
        to_date: DAY.into(),
        breaks_only: true,
        operator_id: "jinan-bureau".into(),
        ..Default::default()
    };
    // Generated batch by batch as the stream is polled.
    let batches = (0..count.div_ceil(BATCH)).map(move |batch| {
        let rows = (batch * BATCH..((batch + 1) * BATCH).min(count))
            .map(|n| Claim::of_day(n).row(DAY))
            .collect();
        Sent::Rows(DetailRowBatch { rows })
    });
    let messages = std::iter::once(Sent::Header(header))
        .chain(batches)
        .map(|item| ReconcileDetailsRequest { item: Some(item) });
    let started = Instant::now();
    let mut stream = ledger
        .reconcile_details(tokio_stream::iter(messages))
        .await
        .expect("the run opens")
        .into_inner();
    let (mut breaks, mut checkpoints, mut summary) = (0u64, 0u64, None);
    while let Some(reply) = stream.next().await {
        match reply.expect("the run ends cleanly").item.expect("an item") {
            Received::Row(_) => breaks += 1,
            Received::Checkpoint(_) => checkpoints += 1,
            Received::Summary(last) => summary = Some(last),
        }
    }
    report(
        database,
        "ReconcileDetails, one day",
        count,
        started.elapsed(),
    );
    let summary = summary.expect("a summary");
    assert_eq!(
        (summary.result(), summary.matched, breaks),
        (ReconciliationResult::Matched, count, 0),
        "{summary:?}"
    );
    eprintln!("  {checkpoints} checkpoints");
}

// ---- The month -------------------------------------------------------------------------------

async fn month(net: &Sandbox, database: Database, count: u64) {
    let ledger = net.ledger();
    let store = net.ledger_store().await;
    eprintln!("{database:?}: loading one month of {count} settlements over the sixteen pairs");
    let started = Instant::now();
    load_journal(&store, count, Claim::of_month).await;
    report(
        database,
        "load the month's journal (direct), entries",
        2 * count,
        started.elapsed(),
    );

    // The four cities' balances and prepaid positions, as a bureau or the booking path reads
    // them, with ten million entries in the journal.
    let started = Instant::now();
    let positions = ledger
        .clone()
        .get_balances(GetBalancesRequest {
            account_ids: Vec::new(),
            cities: CITIES.iter().map(|city| (*city).to_owned()).collect(),
        })
        .await
        .expect("GetBalances answers")
        .into_inner();
    report(
        database,
        "GetBalances, four cities' accounts and prepaid positions",
        positions.accounts.len() as u64,
        started.elapsed(),
    );

    // What each ordered pair owes, computed here from the generated claims.
    let mut owed: BTreeMap<(&str, &str), (u64, i64, i64, i64)> = BTreeMap::new();
    for n in 0..count {
        let claim = Claim::of_month(n);
        if claim.cross_city() {
            let pair = owed.entry((claim.insured, claim.treatment)).or_default();
            pair.0 += 1;
            pair.1 += claim.total_fen();
            pair.2 += claim.fund_fen;
            pair.3 += claim.account_fen;
        }
    }
    let cross_city: u64 = owed.values().map(|(count, ..)| count).sum();

    // A sample of Jinan's confirmations through the RPC, a thousand rows a call, at full size.
    let mut jinan = (0..count)
        .map(Claim::of_month)
        .filter(|claim| claim.treatment == JINAN && claim.cross_city());
    let mut sampled = 0;
    let started = Instant::now();
    for index in 0..CONFIRMATION_CALLS_SAMPLED {
        let decisions: Vec<DetailDecision> = jinan
            .by_ref()
            .take(BATCH as usize)
            .map(|claim| DetailDecision {
                settlement_id: claim.settlement_id(),
                decision: ConfirmationStatus::Included as i32,
                reason: String::new(),
            })
            .collect();
        if decisions.is_empty() {
            break;
        }
        sampled += decisions.len() as u64;
        confirm(&mut ledger.clone(), JINAN, index, decisions).await;
    }
    report(
        database,
        "ConfirmClearingDetails sample, 1,000 rows a call",
        sampled,
        started.elapsed(),
    );
    let started = Instant::now();
    load_confirmations(&store).await;
    report(
        database,
        "load the other confirmations (direct)",
        cross_city - sampled,
        started.elapsed(),
    );

    let started = Instant::now();
    for treatment in CITIES {
        let (mut rows, mut total, mut fund, mut account) = (0, 0, 0, 0);
        for ((_, to), (count, pair_total, pair_fund, pair_account)) in &owed {
            if *to == treatment {
                rows += count;
                total += pair_total;
                fund += pair_fund;
                account += pair_account;
            }
        }
        ledger
            .clone()
            .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                message_id: format!("APPLY-{treatment}"),
                period: Some(MONTH),
                treatment_city: treatment.to_owned(),
                totals: Some(ClearingTotals {
                    count: rows,
                    total_amount: yuan(total),
                    insured_city_pay: yuan(fund + account),
                    fund_pay: yuan(fund),
                    account_pay: yuan(account),
                }),
                operator_id: format!("{treatment}-bureau"),
            }))
            .await
            .expect("ApplyClearing answers");
    }
    report(
        database,
        "ApplyClearing, four cities",
        cross_city,
        started.elapsed(),
    );

    let started = Instant::now();
    // A deadline well past the target, so that a slow close is measured rather than cut off.
    let closed = LedgerServiceClient::new(net.channel_with_timeout(
        Owner::ClearingHouse,
        Service::Ledger,
        Duration::from_secs(600),
    ))
    .close_clearing_period(CloseClearingPeriodRequest {
        message_id: "CLOSE-2026-10".into(),
        period: Some(MONTH),
        operator_id: "clearing-house-1".into(),
    })
    .await
    .expect("CloseClearingPeriod answers")
    .into_inner();
    report(
        database,
        "CloseClearingPeriod, the month's entries",
        2 * count,
        started.elapsed(),
    );
    for city in CITIES {
        let receivable: i64 = owed
            .iter()
            .filter(|((_, to), _)| *to == city)
            .map(|(_, (_, _, fund, account))| fund + account)
            .sum();
        let payable: i64 = owed
            .iter()
            .filter(|((from, _), _)| *from == city)
            .map(|(_, (_, _, fund, account))| fund + account)
            .sum();
        let net = closed
            .net_positions
            .iter()
            .find(|net| net.city == city)
            .expect("a net position per city");
        assert_eq!(net.net, yuan(receivable - payable), "{net:?}");
    }
    if count <= VERIFIED_UP_TO {
        let verified = ledger
            .clone()
            .verify_journal(VerifyJournalRequest::default())
            .await
            .expect("VerifyJournal answers")
            .into_inner();
        assert!(verified.intact, "{verified:?}");
    }
}

/// ConfirmClearingDetails calls timed before the rest of the confirmations are loaded.
const CONFIRMATION_CALLS_SAMPLED: u64 = 20;
/// Months up to this size are checked with VerifyJournal after the close: the loader must have
/// written exactly what the ledger writes.
const VERIFIED_UP_TO: u64 = 200_000;
/// Settlements per transaction of the loader.
const LOADED_PER_TRANSACTION: u64 = 5_000;
/// The pending timeout Settle gives its SETTLEMENT transfers.
const TRANSFER_TIMEOUT_SECONDS: u32 = 3_600;

/// Appends `count` settlements to the journal as Settle books them through CreateTransfers and
/// PostPendingTransfers: each entry built by the ledger's `Entry::new` after the head, the head
/// moved on in the same transaction. Then the tables are analysed, as PostgreSQL's autovacuum
/// would have done while they grew over the day or month.
async fn load_journal(store: &Store, count: u64, claim: fn(u64) -> Claim) {
    let head = sqlx::query("SELECT sequence, hash FROM journal_head WHERE id = 1")
        .fetch_one(store.pool())
        .await
        .expect("the head reads");
    let mut sequence: i64 = head.get(0);
    let mut hash = from_hex(&head.get::<String, _>(1)).expect("the head's hash is hex");
    let now = yitong_store::now_ms();
    for first in (0..count).step_by(LOADED_PER_TRANSACTION as usize) {
        let last = (first + LOADED_PER_TRANSACTION).min(count);
        // Created pending, then posted, as Settle's book and complete steps do.
        let mut entries = Vec::with_capacity(2 * (last - first) as usize);
        for event in [Event::Created, Event::Posted] {
            for n in first..last {
                sequence += 1;
                let entry = Entry::new(
                    sequence,
                    event,
                    claim(n).columns(now),
                    now,
                    format!("LOAD-{first}-{}", event.as_str()),
                    String::new(),
                    &hash,
                );
                hash = from_hex(&entry.hash).expect("a fresh hash is hex");
                entries.push(entry);
            }
        }
        let mut transaction = store.begin_write().await.expect("a write transaction");
        yitong_ledger::insert_entries(&mut transaction, &entries)
            .await
            .expect("entries insert");
        sqlx::query(
            "UPDATE journal_head SET sequence = $1, hash = $2, recorded_at_ms = $3 WHERE id = 1",
        )
        .bind(sequence)
        .bind(to_hex(&hash))
        .bind(now)
        .execute(&mut *transaction)
        .await
        .expect("the head moves");
        transaction.commit().await.expect("the load commits");
        if first % (count / 20).max(1) < LOADED_PER_TRANSACTION {
            eprintln!("  loaded {last} of {count}");
        }
    }
    sqlx::query("ANALYZE")
        .execute(store.pool())
        .await
        .expect("the tables are analysed");
}

/// Includes every cross-city row of the month not confirmed yet, as the treatment cities'
/// ConfirmClearingDetails would: the row's figures copied from its journal entry.
async fn load_confirmations(store: &Store) {
    let mut transaction = store.begin_write().await.expect("a write transaction");
    sqlx::query(
        "INSERT INTO clearing_confirmations (period, transfer_id, settlement_id, \
         treatment_city, insured_city, status, reason, total_amount_fen, fund_pay_fen, \
         account_pay_fen, adjustment, confirmed_at_ms, confirmed_by) \
         SELECT clearing_period, transfer_id, settlement_id, treatment_city, insured_city, \
         'included', '', total_amount_fen, fund_pay_fen, account_pay_fen, 0, $1, \
         treatment_city || '-bureau' \
         FROM journal c WHERE clearing_period = '2026-10' AND stage = 0 AND code = 3 \
         AND insured_city <> treatment_city AND NOT EXISTS (SELECT 1 FROM clearing_confirmations f \
         WHERE f.period = '2026-10' AND f.transfer_id = c.transfer_id)",
    )
    .bind(yitong_store::now_ms())
    .execute(&mut *transaction)
    .await
    .expect("confirmations insert");
    // And counted as included, as ConfirmClearingDetails counts them (crates/yitong-ledger/src/tally.rs).
    sqlx::query(
        "UPDATE clearing_tallies SET included_count = (SELECT COUNT(*) FROM clearing_confirmations f \
         WHERE f.period = clearing_tallies.period AND f.treatment_city = clearing_tallies.treatment_city \
         AND f.insured_city = clearing_tallies.insured_city AND f.status = 'included') \
         WHERE period = '2026-10'",
    )
    .execute(&mut *transaction)
    .await
    .expect("tallies update");
    transaction.commit().await.expect("the load commits");
}

async fn confirm(ledger: &mut Ledger, treatment: &str, index: u64, decisions: Vec<DetailDecision>) {
    ledger
        .confirm_clearing_details(yitong_sandbox::as_its_bureau(
            ConfirmClearingDetailsRequest {
                message_id: format!("CONFIRM-{treatment}-{index}"),
                period: Some(MONTH),
                treatment_city: treatment.to_owned(),
                decisions,
                operator_id: format!("{treatment}-bureau"),
            },
        ))
        .await
        .expect("ConfirmClearingDetails answers");
}
