//! Daily reconciliation (national 3201 and 3202): a submitter's totals and rows compared with the
//! settlement records the journal carries, without asking any city.
//!
//! # What the ledger counts, and when
//!
//! A row is one SETTLEMENT or CANCELLATION transfer: a settlement and its cancellation are one
//! row each, the cancellation's amounts negative, so sums are net. A row counts from the moment
//! its transfer is posted (created posted, or created pending and then posted), on the
//! settlement date its record carries (the treatment city's date, never the day it reached the
//! ledger). A pending transfer does not count yet: the totals leave it out, and a submitted row
//! whose transfer is still pending is a TIMING break, since it will count, on its date, once
//! posted. A voided or expired transfer never counts.
//!
//! Every read is bounded by a journal sequence number taken when the request starts (for a
//! detail run, when the run opens, kept in `reconciliation_runs`): the journal is append-only,
//! so everything up to that number is one unchanging ledger, and a run resumed an hour later
//! compares against exactly what it started with.
//!
//! # The break rules of a detail run
//!
//! Submitted rows arrive in ascending byte order of settlement id; the ledger's rows of the
//! scope, filters and range are read in the same order, a page at a time, and the two are walked
//! together in one pass. For each submitted row:
//!
//! - the same settlement id as the row before it: DUPLICATE (the first one was compared);
//! - every ledger row with a smaller id not yet reported: MISSING_IN_SUBMISSION (or DUPLICATE
//!   when the ledger holds that id twice);
//! - a ledger row with the same id: AMOUNT_MISMATCH when an amount, the cancellation flag, the
//!   visit or the person differs; else TIMING when the dates differ; else MATCHED;
//! - no ledger row with the id in the range: the ledger is asked for the id alone, in the scope
//!   and filters, any date. A posted row on another date, or a row still pending, is TIMING (or
//!   AMOUNT_MISMATCH when its figures differ); nothing live is MISSING_IN_LEDGER.
//!
//! When the submitter closes its side, the ledger rows left are MISSING_IN_SUBMISSION.
//!
//! # Memory and checkpoints
//!
//! The ledger side holds one page ([`LEDGER_ROWS_PER_PAGE_MAX`] rows), the submitter's side one
//! batch (at most [`ROWS_PER_BATCH_MAX`] rows), and replies wait in a bounded channel
//! ([`RESPONSES_BUFFERED_MAX`]), so the stream moves at the pace of the slower side and a day of a
//! million rows is never held. A checkpoint is written and sent when the run opens and after
//! every batch, so one follows at most [`ROWS_PER_BATCH_MAX`] rows, well within the contract's
//! 10,000; it records the last submitted id and every count, and its token resumes the run from
//! there: the ledger rows up to that id have all been reported, so the resumed walk starts after
//! it.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Status;
use yitong_core::{Amount, CityCode, Date, InstitutionCode, Invalid, MessageId, Network, PoolCode};
use yitong_proto::ledger::v1 as pb;
use yitong_proto::ledger::v1::reconciliation_scope::Subject as WireSubject;
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, Row, any::AnyRow};
use yitong_store::{Store, now_ms};

use crate::LedgerError;
use crate::breakdown::Breakdown;
use crate::journal::to_hex;
use crate::repo::{self, RESOLUTION_JOIN};
use crate::transfer::IDENTIFIER_CHARS_MAX;

/// Longest date range of one reconciliation, in days after its first date.
pub const RANGE_DAYS_MAX: i64 = 31;
/// Most rows in one submitted batch.
pub const ROWS_PER_BATCH_MAX: usize = 1_000;
/// Ledger rows read per query while walking a detail run.
pub const LEDGER_ROWS_PER_PAGE_MAX: i64 = 1_000;
/// Replies a detail run may have waiting for the client before it stops reading.
pub const RESPONSES_BUFFERED_MAX: usize = 256;

/// Whose records are reconciled: the journal column that names the submitter, and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    Institution(InstitutionCode),
    /// As treatment pool: one pool (`treatment_city`), or every pool a city hosts
    /// (`treatment_host_city`).
    Treatment(Vec<PoolCode>),
    /// As insured pool: one pool (`insured_city`), or every pool a city hosts
    /// (`insured_host_city`).
    Insured(Vec<PoolCode>),
}

impl Subject {
    fn column(&self) -> &'static str {
        match self {
            Subject::Institution(_) => "institution_code",
            Subject::Treatment(_) => "treatment_city",
            Subject::Insured(_) => "insured_city",
        }
    }

    fn values(&self) -> Vec<String> {
        match self {
            Subject::Institution(code) => vec![code.as_str().to_owned()],
            Subject::Treatment(pools) | Subject::Insured(pools) => {
                pools.iter().map(PoolCode::to_string).collect()
            }
        }
    }
}

/// The pools `text` (a city's region code, at `field`) hosts in `network`, enabled or not: a
/// pool that has left keeps its rows in the journal.
fn hosted(network: &Network, text: &str, field: &str) -> Result<Vec<PoolCode>, Invalid> {
    let city = CityCode::parse(text).map_err(|invalid| invalid.at(field))?;
    let pools: Vec<PoolCode> = network.pools_of(city).map(|pool| pool.code).collect();
    if pools.is_empty() {
        return Err(Invalid::new(
            field,
            format!("no pool of the network is hosted by city {city}"),
        ));
    }
    Ok(pools)
}

/// The rows a reconciliation covers: a subject, optional insurance and clearing types, and an
/// inclusive range of settlement dates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter {
    subject: Subject,
    /// national insutype; `None` for every type.
    insurance_type: Option<i64>,
    /// national clr_type; `None` for every type.
    clearing_type: Option<i64>,
    from: Date,
    to: Date,
}

impl Filter {
    /// Field paths are the request's own ("scope.institution_code", "to_date").
    /// A host city's scope covers the pools `network` says it hosts.
    pub(crate) fn parse(
        network: &Network,
        scope: Option<&pb::ReconciliationScope>,
        insurance_type: i32,
        clearing_type: i32,
        from_date: &str,
        to_date: &str,
    ) -> Result<Filter, Invalid> {
        let subject = match scope.and_then(|scope| scope.subject.as_ref()) {
            None => {
                return Err(Invalid::new(
                    "scope",
                    "name an institution_code, a treatment_city, an insured_city, a \
                     treatment_host_city or an insured_host_city",
                ));
            }
            Some(WireSubject::InstitutionCode(code)) => Subject::Institution(
                InstitutionCode::parse(code)
                    .map_err(|invalid| invalid.at("scope.institution_code"))?,
            ),
            Some(WireSubject::TreatmentCity(city)) => Subject::Treatment(vec![
                PoolCode::parse(city).map_err(|invalid| invalid.at("scope.treatment_city"))?,
            ]),
            Some(WireSubject::InsuredCity(city)) => Subject::Insured(vec![
                PoolCode::parse(city).map_err(|invalid| invalid.at("scope.insured_city"))?,
            ]),
            Some(WireSubject::TreatmentHostCity(city)) => {
                Subject::Treatment(hosted(network, city, "scope.treatment_host_city")?)
            }
            Some(WireSubject::InsuredHostCity(city)) => {
                Subject::Insured(hosted(network, city, "scope.insured_host_city")?)
            }
        };
        let insurance_type = match insurance_type {
            0 => None,
            310 | 390 => Some(i64::from(insurance_type)),
            _ => {
                return Err(Invalid::new(
                    "insurance_type",
                    "must be unspecified, EMPLOYEE (310) or RESIDENT (390)",
                ));
            }
        };
        let clearing_type = match clearing_type {
            0 => None,
            11 | 14 | 41 => Some(i64::from(clearing_type)),
            _ => {
                return Err(Invalid::new(
                    "clearing_type",
                    "must be unspecified, OUTPATIENT (11), CHRONIC_DISEASE (14) or PHARMACY (41)",
                ));
            }
        };
        let from = yitong_core::parse_date(from_date).map_err(|invalid| invalid.at("from_date"))?;
        let to = yitong_core::parse_date(to_date).map_err(|invalid| invalid.at("to_date"))?;
        if to < from {
            return Err(Invalid::new("to_date", "must not be before from_date"));
        }
        if (to - from).num_days() > RANGE_DAYS_MAX {
            return Err(Invalid::new(
                "to_date",
                format!("must be at most {RANGE_DAYS_MAX} days after from_date"),
            ));
        }
        Ok(Filter {
            subject,
            insurance_type,
            clearing_type,
            from,
            to,
        })
    }
}

/// What identifies a detail run's question, whatever its message id, echo mode, resume point
/// or operator: SHA-256 (hex) of the header with those cleared. A resume must ask the same, and
/// the overview finds a day's runs by it (`activity`).
pub(crate) fn run_digest(header: &pb::ReconcileDetailsHeader) -> String {
    let what = pb::ReconcileDetailsHeader {
        message_id: String::new(),
        breaks_only: false,
        resume_token: String::new(),
        operator_id: String::new(),
        ..header.clone()
    };
    to_hex(&Sha256::digest(prost::Message::encode_to_vec(&what)).into())
}

/// A value bound to a query.
enum Bind {
    Int(i64),
    Text(String),
}

/// Builds the WHERE clause over journal creations `c` that a reconciliation reads, with its
/// bound values numbered from `$1`.
struct Query {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl Query {
    /// Creations of SETTLEMENT and CANCELLATION transfers up to `snapshot`, of the filter's
    /// subject and types (not its dates: a point lookup looks at any date).
    fn new(filter: &Filter, snapshot: i64) -> Query {
        let mut query = Query {
            conditions: vec!["c.stage = 0".into(), "c.code IN (3, 4)".into()],
            binds: Vec::new(),
        };
        let sequence = query.bind(Bind::Int(snapshot));
        query.conditions.push(format!("c.sequence <= {sequence}"));
        let column = filter.subject.column();
        let values: Vec<String> = filter
            .subject
            .values()
            .into_iter()
            .map(|value| query.bind(Bind::Text(value)))
            .collect();
        query.conditions.push(match values.as_slice() {
            [one] => format!("c.{column} = {one}"),
            many => format!("c.{column} IN ({})", many.join(", ")),
        });
        if let Some(insurance_type) = filter.insurance_type {
            let value = query.bind(Bind::Int(insurance_type));
            query.conditions.push(format!("c.insurance_type = {value}"));
        }
        if let Some(clearing_type) = filter.clearing_type {
            let value = query.bind(Bind::Int(clearing_type));
            query.conditions.push(format!("c.clearing_type = {value}"));
        }
        query
    }

    /// Binds a value and returns its placeholder.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// Only transfers posted by the snapshot: created posted (no expiry), or a post entry
    /// recorded by then. The query must join [`RESOLUTION_JOIN`].
    fn posted(mut self) -> Query {
        let snapshot = self.snapshot_placeholder();
        self.conditions.push(repo::posted(Some(&snapshot)));
        self
    }

    /// Only transfers neither voided nor expired by the snapshot: pending or posted.
    fn live(mut self) -> Query {
        let snapshot = self.snapshot_placeholder();
        self.conditions.push(format!(
            "NOT EXISTS (SELECT 1 FROM journal v WHERE v.transfer_id = c.transfer_id \
             AND v.stage = 1 AND v.event IN {} AND v.sequence <= {snapshot})",
            repo::released()
        ));
        self
    }

    fn in_range(mut self, filter: &Filter) -> Query {
        let from = self.bind(Bind::Text(filter.from.to_string()));
        if filter.from == filter.to {
            // An equality, so that a one-day page reads the date's index in settlement-id
            // order instead of sorting the day.
            self.conditions.push(format!("c.settlement_date = {from}"));
        } else {
            let to = self.bind(Bind::Text(filter.to.to_string()));
            self.conditions.push(format!(
                "c.settlement_date >= {from} AND c.settlement_date <= {to}"
            ));
        }
        self
    }

    /// The snapshot is always the first value bound.
    fn snapshot_placeholder(&self) -> String {
        "$1".to_owned()
    }

    fn where_clause(&self) -> String {
        self.conditions.join(" AND ")
    }

    async fn fetch_all(
        self,
        conn: &mut AnyConnection,
        sql: String,
    ) -> Result<Vec<AnyRow>, LedgerError> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in self.binds {
            query = match bind {
                Bind::Int(number) => query.bind(number),
                Bind::Text(text) => query.bind(text),
            };
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }

    /// Streams the rows of `sql` into `each`, one at a time.
    async fn fold_each(
        self,
        conn: &mut AnyConnection,
        sql: String,
        mut each: impl FnMut(&AnyRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        use tokio_stream::StreamExt;
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in self.binds {
            query = match bind {
                Bind::Int(number) => query.bind(number),
                Bind::Text(text) => query.bind(text),
            };
        }
        let mut rows = query.fetch(&mut *conn);
        while let Some(row) = rows.next().await {
            each(&row?)?;
        }
        Ok(())
    }
}

/// Totals in fen.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Totals {
    pub count: u64,
    pub total_fen: i64,
    pub fund_fen: i64,
    pub account_fen: i64,
    pub cash_fen: i64,
}

impl Totals {
    /// Parses a submitter's totals; the sums are net, so they may be negative.
    pub(crate) fn parse(totals: Option<&pb::ReconciliationTotals>) -> Result<Totals, Invalid> {
        let totals = totals.ok_or_else(|| Invalid::new("totals", "is required"))?;
        let amount = |text: &str, field: &str| {
            Amount::parse_signed(text)
                .map(Amount::fen)
                .map_err(|invalid| invalid.at(format!("totals.{field}")))
        };
        Ok(Totals {
            count: totals.count,
            total_fen: amount(&totals.total_amount, "total_amount")?,
            fund_fen: amount(&totals.fund_pay, "fund_pay")?,
            account_fen: amount(&totals.account_pay, "account_pay")?,
            cash_fen: amount(&totals.cash_pay, "cash_pay")?,
        })
    }

    /// From a row holding `COUNT(*)` at column `at` and the four sums (total, fund, account,
    /// cash) after it.
    pub(crate) fn of_row(row: &AnyRow, at: usize) -> Result<Totals, LedgerError> {
        let count: i64 = row.try_get(at)?;
        Ok(Totals {
            count: u64::try_from(count).expect("a count is not negative"),
            total_fen: row.try_get(at + 1)?,
            fund_fen: row.try_get(at + 2)?,
            account_fen: row.try_get(at + 3)?,
            cash_fen: row.try_get(at + 4)?,
        })
    }

    /// The totals alone, without a breakdown.
    pub(crate) fn to_wire(self) -> pb::ReconciliationTotals {
        let yuan = |fen| Amount::from_fen(fen).to_string();
        pb::ReconciliationTotals {
            count: self.count,
            total_amount: yuan(self.total_fen),
            fund_pay: yuan(self.fund_fen),
            account_pay: yuan(self.account_fen),
            cash_pay: yuan(self.cash_fen),
            clearing_types: Vec::new(),
            fund_types: Vec::new(),
        }
    }

    /// The totals with their breakdown's lines.
    pub(crate) fn to_wire_with(self, lines: &Breakdown) -> pb::ReconciliationTotals {
        pb::ReconciliationTotals {
            clearing_types: lines.clearing_wire(),
            fund_types: lines.funds_wire(),
            ..self.to_wire()
        }
    }

    /// Figure by figure, `self` and `other` together.
    pub(crate) fn plus(self, other: &Totals) -> Totals {
        Totals {
            count: self.count + other.count,
            total_fen: self.total_fen + other.total_fen,
            fund_fen: self.fund_fen + other.fund_fen,
            account_fen: self.account_fen + other.account_fen,
            cash_fen: self.cash_fen + other.cash_fen,
        }
    }

    /// The figures in which `self` differs from `other`, in the enum's order.
    pub(crate) fn differences(&self, other: &Totals) -> Vec<pb::ReconciliationFigure> {
        use pb::ReconciliationFigure as F;
        [
            (self.count != other.count, F::Count),
            (self.total_fen != other.total_fen, F::TotalAmount),
            (self.fund_fen != other.fund_fen, F::FundPay),
            (self.account_fen != other.account_fen, F::AccountPay),
            (self.cash_fen != other.cash_fen, F::CashPay),
        ]
        .into_iter()
        .filter_map(|(differs, figure)| differs.then_some(figure))
        .collect()
    }
}

/// The ledger's totals of the filter's posted rows, up to journal entry `snapshot`.
pub(crate) async fn ledger_totals(
    conn: &mut AnyConnection,
    filter: &Filter,
    snapshot: i64,
) -> Result<Totals, LedgerError> {
    let query = Query::new(filter, snapshot).posted().in_range(filter);
    // PostgreSQL sums BIGINT into NUMERIC, which sqlx::Any cannot decode: cast back.
    let sum = |column: &str| format!("CAST(COALESCE(SUM(c.{column}), 0) AS BIGINT)");
    let sql = format!(
        "SELECT COUNT(*), {}, {}, {}, {} FROM journal c {RESOLUTION_JOIN} WHERE {}",
        sum("total_amount_fen"),
        sum("fund_pay_fen"),
        sum("account_pay_fen"),
        sum("cash_pay_fen"),
        query.where_clause()
    );
    let rows = query.fetch_all(conn, sql).await?;
    let row = rows
        .first()
        .ok_or_else(|| LedgerError::Corrupt("an aggregate returned no row".into()))?;
    let totals = Totals::of_row(row, 0)?;
    // The record's parts were checked to add up when each transfer was created; sums of rows
    // that add up add up too, so a difference here means a row was altered after it was read.
    if totals.fund_fen + totals.account_fen + totals.cash_fen != totals.total_fen {
        return Err(LedgerError::Corrupt(
            "the reconciled settlement records do not add up".into(),
        ));
    }
    Ok(totals)
}

/// The ledger's breakdown of the same rows as [`ledger_totals`] (read in the same transaction,
/// up to the same `snapshot`): totals per clearing type, and fund pay per fund type and disease
/// (see [`crate::breakdown`]). Checked to sum exactly to `totals`.
pub(crate) async fn ledger_breakdown(
    conn: &mut AnyConnection,
    filter: &Filter,
    snapshot: i64,
    totals: &Totals,
) -> Result<Breakdown, LedgerError> {
    let mut breakdown = Breakdown::default();
    let sum = |column: &str| format!("CAST(COALESCE(SUM(c.{column}), 0) AS BIGINT)");
    let query = Query::new(filter, snapshot).posted().in_range(filter);
    let sql = format!(
        "SELECT c.clearing_type, COUNT(*), {}, {}, {}, {} FROM journal c {RESOLUTION_JOIN} \
         WHERE {} GROUP BY c.clearing_type",
        sum("total_amount_fen"),
        sum("fund_pay_fen"),
        sum("account_pay_fen"),
        sum("cash_pay_fen"),
        query.where_clause()
    );
    for row in query.fetch_all(conn, sql).await? {
        breakdown
            .clearing
            .insert(row.try_get(0)?, Totals::of_row(&row, 1)?);
    }
    // Ordinary rows share the empty text and fold into one group per insurance type; the
    // groups are streamed, never held.
    let query = Query::new(filter, snapshot).posted().in_range(filter);
    let sql = format!(
        "SELECT c.insurance_type, c.fund_payments, COUNT(*), {} FROM journal c \
         {RESOLUTION_JOIN} WHERE {} GROUP BY c.insurance_type, c.fund_payments",
        sum("fund_pay_fen"),
        query.where_clause()
    );
    query
        .fold_each(conn, sql, |row| {
            breakdown.add_fund_group(
                row.try_get(0)?,
                &row.try_get::<String, _>(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            )
        })
        .await?;
    let breakdown = breakdown.settled();
    if !breakdown.sums_to(totals) {
        return Err(LedgerError::Corrupt(
            "the reconciled breakdown does not sum to the totals".into(),
        ));
    }
    Ok(breakdown)
}

/// One settlement row as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LedgerRow {
    sequence: i64,
    settlement_id: String,
    visit_id: String,
    person_no: String,
    settlement_date: String,
    total_fen: i64,
    fund_fen: i64,
    account_fen: i64,
    cash_fen: i64,
    cancellation: bool,
    message_id: String,
    /// Posted by the snapshot; else still pending then.
    posted: bool,
}

const ROW_COLUMNS: &str = "c.sequence, c.settlement_id, c.visit_id, c.person_no, \
     c.settlement_date, c.total_amount_fen, c.fund_pay_fen, c.account_pay_fen, c.cash_pay_fen, \
     c.cancellation, c.settlement_message_id";

impl LedgerRow {
    /// From a row of `SELECT {ROW_COLUMNS}, <posted as 0 or 1>`.
    fn from_row(row: &AnyRow) -> Result<LedgerRow, LedgerError> {
        let cancellation: i64 = row.try_get(9)?;
        let posted: i64 = row.try_get(11)?;
        Ok(LedgerRow {
            sequence: row.try_get(0)?,
            settlement_id: row.try_get(1)?,
            visit_id: row.try_get(2)?,
            person_no: row.try_get(3)?,
            settlement_date: row.try_get(4)?,
            total_fen: row.try_get(5)?,
            fund_fen: row.try_get(6)?,
            account_fen: row.try_get(7)?,
            cash_fen: row.try_get(8)?,
            cancellation: cancellation != 0,
            message_id: row.try_get(10)?,
            posted: posted != 0,
        })
    }

    fn to_wire(&self) -> pb::DetailRow {
        let yuan = |fen| Amount::from_fen(fen).to_string();
        pb::DetailRow {
            settlement_id: self.settlement_id.clone(),
            visit_id: self.visit_id.clone(),
            person_no: self.person_no.clone(),
            settlement_date: self.settlement_date.clone(),
            total_amount: yuan(self.total_fen),
            fund_pay: yuan(self.fund_fen),
            account_pay: yuan(self.account_fen),
            cash_pay: yuan(self.cash_fen),
            cancellation: self.cancellation,
            message_id: self.message_id.clone(),
        }
    }
}

/// Settlement ids are compared in byte order, as the submitter must send them: "binary"
/// is SQLite's byte-order collation, and the store gives every PostgreSQL schema one of that name
/// (PostgreSQL's default collation follows the locale and may sort "a" before "B").
const BYTE_ORDER: &str = " COLLATE \"binary\"";

/// The next page of posted rows of the filter's range after `(settlement id, sequence)`, in
/// byte order of settlement id and then journal order.
async fn ledger_page(
    conn: &mut AnyConnection,
    filter: &Filter,
    snapshot: i64,
    after: &(String, i64),
) -> Result<Vec<LedgerRow>, LedgerError> {
    let mut query = Query::new(filter, snapshot).posted().in_range(filter);
    let id = query.bind(Bind::Text(after.0.clone()));
    let sequence = query.bind(Bind::Int(after.1));
    // A row value, so that both databases walk the date's index from where the page starts.
    query.conditions.push(format!(
        "(c.settlement_id{BYTE_ORDER}, c.sequence) > ({id}, {sequence})"
    ));
    let limit = query.bind(Bind::Int(LEDGER_ROWS_PER_PAGE_MAX));
    let sql = format!(
        "SELECT {ROW_COLUMNS}, 1 FROM journal c {RESOLUTION_JOIN} WHERE {} \
         ORDER BY c.settlement_id{BYTE_ORDER}, c.sequence LIMIT {limit}",
        query.where_clause()
    );
    let rows = query.fetch_all(conn, sql).await?;
    rows.iter().map(LedgerRow::from_row).collect()
}

/// The live (pending or posted) rows with `settlement_id` in the filter's subject and types, on
/// any date, in journal order: at most two, since one is enough to classify and two show a
/// duplicate.
async fn ledger_rows_of(
    conn: &mut AnyConnection,
    filter: &Filter,
    snapshot: i64,
    settlement_id: &str,
) -> Result<Vec<LedgerRow>, LedgerError> {
    let mut query = Query::new(filter, snapshot).live();
    let id = query.bind(Bind::Text(settlement_id.to_owned()));
    query.conditions.push(format!("c.settlement_id = {id}"));
    let sql = format!(
        "SELECT {ROW_COLUMNS}, CASE WHEN {} THEN 1 ELSE 0 END FROM journal c {RESOLUTION_JOIN} \
         WHERE {} ORDER BY c.sequence LIMIT 2",
        repo::posted(Some("$1")),
        query.where_clause()
    );
    let rows = query.fetch_all(conn, sql).await?;
    rows.iter().map(LedgerRow::from_row).collect()
}

/// A submitted row, checked.
#[derive(Clone, Debug)]
struct SubmittedRow {
    wire: pb::DetailRow,
    total_fen: i64,
    fund_fen: i64,
    account_fen: i64,
    cash_fen: i64,
}

impl TryFrom<pb::DetailRow> for SubmittedRow {
    type Error = Invalid;

    /// Field paths are relative to the row ("fund_pay").
    fn try_from(row: pb::DetailRow) -> Result<Self, Invalid> {
        let id_ok = !row.settlement_id.is_empty()
            && row.settlement_id.chars().count() <= IDENTIFIER_CHARS_MAX
            && row
                .settlement_id
                .bytes()
                .all(|byte| byte.is_ascii_graphic());
        if !id_ok {
            return Err(Invalid::new(
                "settlement_id",
                format!("must be 1 to {IDENTIFIER_CHARS_MAX} printable ASCII characters"),
            ));
        }
        yitong_core::parse_date(&row.settlement_date)
            .map_err(|invalid| invalid.at("settlement_date"))?;
        let amount = |text: &str, field: &str| {
            Amount::parse_signed(text)
                .map(Amount::fen)
                .map_err(|invalid| invalid.at(field))
        };
        Ok(SubmittedRow {
            total_fen: amount(&row.total_amount, "total_amount")?,
            fund_fen: amount(&row.fund_pay, "fund_pay")?,
            account_fen: amount(&row.account_pay, "account_pay")?,
            cash_fen: amount(&row.cash_pay, "cash_pay")?,
            wire: row,
        })
    }
}

/// The class of a submitted row against the ledger's row with its settlement id, and the
/// figures that differ.
fn compare(
    submitted: &SubmittedRow,
    ledger: &LedgerRow,
) -> (pb::DetailResult, Vec<pb::ReconciliationFigure>) {
    use pb::ReconciliationFigure as F;
    let figures: Vec<F> = [
        (submitted.total_fen != ledger.total_fen, F::TotalAmount),
        (submitted.fund_fen != ledger.fund_fen, F::FundPay),
        (submitted.account_fen != ledger.account_fen, F::AccountPay),
        (submitted.cash_fen != ledger.cash_fen, F::CashPay),
    ]
    .into_iter()
    .filter_map(|(differs, figure)| differs.then_some(figure))
    .collect();
    let other_content = submitted.wire.cancellation != ledger.cancellation
        || submitted.wire.visit_id != ledger.visit_id
        || submitted.wire.person_no != ledger.person_no;
    if !figures.is_empty() || other_content {
        return (pb::DetailResult::AmountMismatch, figures);
    }
    if submitted.wire.settlement_date != ledger.settlement_date || !ledger.posted {
        return (pb::DetailResult::Timing, Vec::new());
    }
    (pb::DetailResult::Matched, Vec::new())
}

/// What a run has counted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Counts {
    rows_received: u64,
    rows_in_ledger: u64,
    matched: u64,
    missing_in_ledger: u64,
    missing_in_submission: u64,
    duplicate: u64,
    amount_mismatch: u64,
    timing: u64,
}

impl Counts {
    fn add(&mut self, result: pb::DetailResult) {
        use pb::DetailResult as R;
        let counter = match result {
            R::Matched => &mut self.matched,
            R::MissingInLedger => &mut self.missing_in_ledger,
            R::MissingInSubmission => &mut self.missing_in_submission,
            R::Duplicate => &mut self.duplicate,
            R::AmountMismatch => &mut self.amount_mismatch,
            R::Timing => &mut self.timing,
            R::Unspecified => unreachable!("every row is classified"),
        };
        *counter += 1;
    }

    fn breaks(&self) -> u64 {
        self.missing_in_ledger
            + self.missing_in_submission
            + self.duplicate
            + self.amount_mismatch
            + self.timing
    }

    fn summary(&self) -> pb::ReconcileDetailsSummary {
        pb::ReconcileDetailsSummary {
            result: if self.breaks() == 0 {
                pb::ReconciliationResult::Matched
            } else {
                pb::ReconciliationResult::Mismatched
            } as i32,
            rows_submitted: self.rows_received,
            rows_in_ledger: self.rows_in_ledger,
            matched: self.matched,
            missing_in_ledger: self.missing_in_ledger,
            missing_in_submission: self.missing_in_submission,
            duplicate: self.duplicate,
            amount_mismatch: self.amount_mismatch,
            timing: self.timing,
        }
    }
}

/// A parsed ReconcileDetails header.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    message_id: MessageId,
    filter: Filter,
    breaks_only: bool,
    /// The checkpoint to resume after; `None` for a new run.
    resume_from: Option<i64>,
    operator_id: String,
    /// What a resume must ask again: the scope, filters and range.
    digest: String,
}

/// Prefix of a resume token, naming its version.
const TOKEN_PREFIX: &str = "ckpt1.";

impl Header {
    /// Field paths are relative to the header ("from_date").
    pub(crate) fn parse(
        network: &Network,
        header: pb::ReconcileDetailsHeader,
    ) -> Result<Self, Invalid> {
        let message_id =
            MessageId::parse(&header.message_id).map_err(|invalid| invalid.at("message_id"))?;
        let filter = Filter::parse(
            network,
            header.scope.as_ref(),
            header.insurance_type,
            header.clearing_type,
            &header.from_date,
            &header.to_date,
        )?;
        let resume_from = match header.resume_token.as_str() {
            "" => None,
            token => Some(
                token
                    .strip_prefix(TOKEN_PREFIX)
                    .and_then(|number| number.parse::<i64>().ok())
                    .filter(|number| *number >= 0)
                    .ok_or_else(|| {
                        Invalid::new("resume_token", "must be a token from a checkpoint")
                    })?,
            ),
        };
        if header.operator_id.chars().count() > IDENTIFIER_CHARS_MAX {
            return Err(Invalid::new(
                "operator_id",
                format!("must be at most {IDENTIFIER_CHARS_MAX} characters"),
            ));
        }
        let digest = run_digest(&header);
        Ok(Header {
            message_id,
            filter,
            breaks_only: header.breaks_only,
            resume_from,
            operator_id: header.operator_id,
            digest,
        })
    }
}

/// Why a run stopped early.
pub(crate) enum Halt {
    /// The client went away; nothing more to say.
    ClientGone,
    /// A refusal or failure, sent to the client as the stream's status.
    Failed(LedgerError),
    /// The client's stream was refused as it was read (a message that does not decode): its
    /// status ends the stream.
    Refused(tonic::Status),
}

impl From<LedgerError> for Halt {
    fn from(error: LedgerError) -> Self {
        Halt::Failed(error)
    }
}

impl From<Invalid> for Halt {
    fn from(invalid: Invalid) -> Self {
        Halt::Failed(invalid.into())
    }
}

pub(crate) type Replies = mpsc::Sender<Result<pb::ReconcileDetailsResponse, Status>>;

/// How a detail run opened.
pub(crate) enum Opened {
    /// The run had finished before: its summary, all there is to send.
    Finished(pb::ReconcileDetailsSummary),
    /// A run to feed rows to.
    Running(Box<DetailRun>),
}

/// A detail run in progress: the one-pass walk of both sides.
pub(crate) struct DetailRun {
    store: Store,
    message_id: String,
    filter: Filter,
    breaks_only: bool,
    snapshot: i64,
    counts: Counts,
    /// The last submitted settlement id; empty before the first.
    last_submitted: String,
    /// Where the next ledger page starts: after this (settlement id, sequence).
    ledger_after: (String, i64),
    /// The ledger page being walked.
    ledger_page: VecDeque<LedgerRow>,
    ledger_exhausted: bool,
    /// The settlement id of the last ledger row walked past, to find one booked twice.
    last_ledger: String,
    /// Number of the last checkpoint written.
    checkpoint: i64,
}

impl DetailRun {
    /// Opens a new run, resumes one from a checkpoint, or finds it finished.
    pub(crate) async fn open(store: &Store, header: Header) -> Result<Opened, LedgerError> {
        let message_id = header.message_id.as_str().to_owned();
        let mut tx = store.begin_write().await?;
        let existing: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT request_digest, snapshot_sequence, summary FROM reconciliation_runs \
             WHERE message_id = $1",
        )
        .bind(&message_id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut run = DetailRun {
            store: store.clone(),
            message_id: message_id.clone(),
            filter: header.filter,
            breaks_only: header.breaks_only,
            snapshot: 0,
            counts: Counts::default(),
            last_submitted: String::new(),
            // Every settlement id is above the empty text.
            ledger_after: (String::new(), i64::MAX),
            ledger_page: VecDeque::new(),
            ledger_exhausted: false,
            last_ledger: String::new(),
            checkpoint: 0,
        };
        match (existing, header.resume_from) {
            (None, Some(_)) => Err(Invalid::new(
                "header.resume_token",
                "names no run: a resumed run carries its first message id",
            )
            .into()),
            (None, None) => {
                run.snapshot = repo::read_head(&mut tx).await?.sequence;
                let inserted = sqlx::query(
                    "INSERT INTO reconciliation_runs (message_id, request_digest, \
                     snapshot_sequence, operator_id, started_at_ms, summary, finished_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, '', 0) ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&message_id)
                .bind(&header.digest)
                .bind(run.snapshot)
                .bind(&header.operator_id)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Another stream opened the run with this id between our read and our insert.
                if inserted == 0 {
                    return Err(LedgerError::Refused {
                        reason: "RUN_UNFINISHED",
                        message: format!("run {message_id} was opened by another stream"),
                    });
                }
                run.write_checkpoint(&mut tx).await?;
                yitong_store::audit::record(&mut tx, "ReconcileDetails", &message_id).await?;
                tx.commit().await?;
                Ok(Opened::Running(Box::new(run)))
            }
            (Some((digest, _, _)), _) if digest != header.digest => {
                Err(LedgerError::MessageConflict(message_id))
            }
            (Some((_, _, summary)), _) if !summary.is_empty() => {
                let summary = from_hex(&summary)
                    .and_then(|bytes| prost::Message::decode(bytes.as_slice()).ok())
                    .ok_or_else(|| LedgerError::Corrupt(format!("summary of run {message_id}")))?;
                Ok(Opened::Finished(summary))
            }
            (Some(_), None) => Err(LedgerError::Refused {
                reason: "RUN_UNFINISHED",
                message: format!(
                    "run {message_id} is unfinished: resume it with the resume_token of the \
                     last checkpoint received, or start a new run under a new message id"
                ),
            }),
            (Some((_, snapshot, _)), Some(number)) => {
                let row = sqlx::query(
                    "SELECT last_settlement_id, rows_received, rows_in_ledger, matched, \
                     missing_in_ledger, missing_in_submission, duplicate, amount_mismatch, \
                     timing FROM reconciliation_checkpoints WHERE message_id = $1 AND number = $2",
                )
                .bind(&message_id)
                .bind(number)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    Invalid::new("header.resume_token", "names no checkpoint of this run")
                })?;
                let count = |index: usize| -> Result<u64, LedgerError> {
                    let value: i64 = row.try_get(index)?;
                    u64::try_from(value)
                        .map_err(|_| LedgerError::Corrupt("a negative checkpoint count".into()))
                };
                run.snapshot = snapshot;
                run.last_submitted = row.try_get(0)?;
                run.counts = Counts {
                    rows_received: count(1)?,
                    rows_in_ledger: count(2)?,
                    matched: count(3)?,
                    missing_in_ledger: count(4)?,
                    missing_in_submission: count(5)?,
                    duplicate: count(6)?,
                    amount_mismatch: count(7)?,
                    timing: count(8)?,
                };
                // Every ledger row up to the last submitted id was reported before the
                // checkpoint, its duplicates included.
                run.ledger_after = (run.last_submitted.clone(), i64::MAX);
                run.last_ledger = run.last_submitted.clone();
                // Checkpoints written after this one belong to a stream the client lost.
                sqlx::query(
                    "DELETE FROM reconciliation_checkpoints WHERE message_id = $1 AND number > $2",
                )
                .bind(&message_id)
                .bind(number)
                .execute(&mut *tx)
                .await?;
                run.checkpoint = number;
                tx.commit().await?;
                Ok(Opened::Running(Box::new(run)))
            }
        }
    }

    /// The checkpoint reply for the last one written.
    pub(crate) fn checkpoint_reply(&self) -> pb::ReconcileDetailsResponse {
        pb::ReconcileDetailsResponse {
            item: Some(pb::reconcile_details_response::Item::Checkpoint(
                pb::ReconcileDetailsCheckpoint {
                    resume_token: format!("{TOKEN_PREFIX}{}", self.checkpoint),
                    last_settlement_id: self.last_submitted.clone(),
                    rows_received: self.counts.rows_received,
                },
            )),
        }
    }

    async fn write_checkpoint(&self, conn: &mut AnyConnection) -> Result<(), LedgerError> {
        let count = |value: u64| i64::try_from(value).expect("counts fit in 63 bits");
        let c = &self.counts;
        sqlx::query(
            "INSERT INTO reconciliation_checkpoints (message_id, number, last_settlement_id, \
             rows_received, rows_in_ledger, matched, missing_in_ledger, missing_in_submission, \
             duplicate, amount_mismatch, timing, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&self.message_id)
        .bind(self.checkpoint)
        .bind(&self.last_submitted)
        .bind(count(c.rows_received))
        .bind(count(c.rows_in_ledger))
        .bind(count(c.matched))
        .bind(count(c.missing_in_ledger))
        .bind(count(c.missing_in_submission))
        .bind(count(c.duplicate))
        .bind(count(c.amount_mismatch))
        .bind(count(c.timing))
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn send(
        replies: &Replies,
        item: pb::reconcile_details_response::Item,
    ) -> Result<(), Halt> {
        replies
            .send(Ok(pb::ReconcileDetailsResponse { item: Some(item) }))
            .await
            .map_err(|_| Halt::ClientGone)
    }

    /// Counts and sends one row's result.
    async fn report(
        &mut self,
        replies: &Replies,
        result: pb::DetailResult,
        settlement_id: &str,
        submitted: Option<pb::DetailRow>,
        ledger: Option<&LedgerRow>,
        figures: Vec<pb::ReconciliationFigure>,
    ) -> Result<(), Halt> {
        self.counts.add(result);
        if self.breaks_only && result == pb::DetailResult::Matched {
            return Ok(());
        }
        let row = pb::DetailRowResult {
            settlement_id: settlement_id.to_owned(),
            result: result as i32,
            submitted,
            ledger: ledger.map(LedgerRow::to_wire),
            mismatched_figures: figures.into_iter().map(|figure| figure as i32).collect(),
        };
        Self::send(replies, pb::reconcile_details_response::Item::Row(row)).await
    }

    /// The next ledger row of the range, reading a page when the last one is used up.
    async fn peek_ledger(&mut self) -> Result<Option<&LedgerRow>, LedgerError> {
        if self.ledger_page.is_empty() && !self.ledger_exhausted {
            let mut conn = self.store.pool().acquire().await?;
            let page =
                ledger_page(&mut conn, &self.filter, self.snapshot, &self.ledger_after).await?;
            self.ledger_exhausted =
                i64::try_from(page.len()).unwrap_or(i64::MAX) < LEDGER_ROWS_PER_PAGE_MAX;
            if let Some(last) = page.last() {
                self.ledger_after = (last.settlement_id.clone(), last.sequence);
            }
            self.ledger_page = page.into();
        }
        Ok(self.ledger_page.front())
    }

    /// Takes the ledger row peeked, counting it.
    fn take_ledger(&mut self) -> LedgerRow {
        let row = self
            .ledger_page
            .pop_front()
            .expect("a row was peeked before it is taken");
        self.counts.rows_in_ledger += 1;
        row
    }

    /// Reports every ledger row whose settlement id is below `limit` (or equal to it, when
    /// `inclusive`) as missing in the submission, or as a duplicate of the row before it.
    async fn drain_ledger_below(
        &mut self,
        replies: &Replies,
        limit: Option<&str>,
        inclusive: bool,
    ) -> Result<(), Halt> {
        loop {
            let below = match (self.peek_ledger().await?, limit) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(row), Some(limit)) => {
                    let id = row.settlement_id.as_bytes();
                    id < limit.as_bytes() || (inclusive && id == limit.as_bytes())
                }
            };
            if !below {
                return Ok(());
            }
            let row = self.take_ledger();
            let result = if row.settlement_id == self.last_ledger {
                pb::DetailResult::Duplicate
            } else {
                pb::DetailResult::MissingInSubmission
            };
            self.last_ledger = row.settlement_id.clone();
            self.report(
                replies,
                result,
                &row.settlement_id.clone(),
                None,
                Some(&row),
                Vec::new(),
            )
            .await?;
        }
    }

    /// Compares one batch of submitted rows, then writes and sends a checkpoint.
    pub(crate) async fn feed(
        &mut self,
        replies: &Replies,
        batch: pb::DetailRowBatch,
    ) -> Result<(), Halt> {
        if batch.rows.is_empty() || batch.rows.len() > ROWS_PER_BATCH_MAX {
            return Err(Invalid::new(
                "rows.rows",
                format!("must hold 1 to {ROWS_PER_BATCH_MAX} rows"),
            )
            .into());
        }
        for (index, row) in batch.rows.into_iter().enumerate() {
            let field = format!("rows.rows[{index}]");
            let row = SubmittedRow::try_from(row).map_err(|invalid| invalid.within(&field))?;
            let id = row.wire.settlement_id.clone();
            if !self.last_submitted.is_empty() && id.as_bytes() < self.last_submitted.as_bytes() {
                return Err(Invalid::new(
                    format!("{field}.settlement_id"),
                    "rows must come in ascending byte order of settlement_id",
                )
                .into());
            }
            self.counts.rows_received += 1;
            if id == self.last_submitted {
                self.report(
                    replies,
                    pb::DetailResult::Duplicate,
                    &id,
                    Some(row.wire),
                    None,
                    Vec::new(),
                )
                .await?;
                continue;
            }
            self.drain_ledger_below(replies, Some(&id), false).await?;
            self.last_submitted = id.clone();
            let in_range = match self.peek_ledger().await? {
                Some(ledger) if ledger.settlement_id == id => Some(self.take_ledger()),
                _ => None,
            };
            let ledger = match in_range {
                Some(ledger) => {
                    self.last_ledger = id.clone();
                    Some(ledger)
                }
                // Not posted in the range: booked on another date, or still pending, or absent.
                None => {
                    let mut conn = self
                        .store
                        .pool()
                        .acquire()
                        .await
                        .map_err(LedgerError::from)?;
                    ledger_rows_of(&mut conn, &self.filter, self.snapshot, &id)
                        .await?
                        .into_iter()
                        .next()
                }
            };
            match ledger {
                Some(ledger) => {
                    let (result, figures) = compare(&row, &ledger);
                    self.report(replies, result, &id, Some(row.wire), Some(&ledger), figures)
                        .await?;
                }
                None => {
                    self.report(
                        replies,
                        pb::DetailResult::MissingInLedger,
                        &id,
                        Some(row.wire),
                        None,
                        Vec::new(),
                    )
                    .await?;
                }
            }
        }
        // Ledger rows booked twice under the last id are reported before the checkpoint, which
        // promises that everything up to that id is final.
        let last = self.last_submitted.clone();
        self.drain_ledger_below(replies, Some(&last), true).await?;
        self.checkpoint += 1;
        let mut tx = self.store.begin_write().await.map_err(LedgerError::from)?;
        self.write_checkpoint(&mut tx).await?;
        tx.commit().await.map_err(LedgerError::from)?;
        Self::send(
            replies,
            self.checkpoint_reply()
                .item
                .expect("a checkpoint reply has its item"),
        )
        .await
    }

    /// After the client's last row: the ledger rows left are missing in the submission; the
    /// summary is recorded with the run and sent.
    pub(crate) async fn finish(&mut self, replies: &Replies) -> Result<(), Halt> {
        self.drain_ledger_below(replies, None, false).await?;
        let summary = self.counts.summary();
        // The pairing of the counts: every submitted row got exactly one result, so the classes
        // only a submitted row can have are at most the rows received, and with the duplicates
        // (which either side can have) at least as many.
        let c = &self.counts;
        let submitted_only = c.matched + c.amount_mismatch + c.timing + c.missing_in_ledger;
        assert!(
            submitted_only <= c.rows_received && c.rows_received <= submitted_only + c.duplicate,
            "every submitted row is classified once: {c:?}"
        );
        let mut tx = self.store.begin_write().await.map_err(LedgerError::from)?;
        sqlx::query(
            "UPDATE reconciliation_runs SET summary = $1, finished_at_ms = $2 \
             WHERE message_id = $3 AND summary = ''",
        )
        .bind(hex(&prost::Message::encode_to_vec(&summary)))
        .bind(now_ms())
        .bind(&self.message_id)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::from)?;
        tx.commit().await.map_err(LedgerError::from)?;
        tracing::info!(
            message_id = %self.message_id,
            rows_submitted = summary.rows_submitted,
            breaks = self.counts.breaks(),
            "detail reconciliation finished"
        );
        Self::send(
            replies,
            pb::reconcile_details_response::Item::Summary(summary),
        )
        .await
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_row() -> LedgerRow {
        LedgerRow {
            sequence: 1,
            settlement_id: "T1".into(),
            visit_id: "V1".into(),
            person_no: "3701000000000001".into(),
            settlement_date: "2026-03-01".into(),
            total_fen: 10_000,
            fund_fen: 7_000,
            account_fen: 1_000,
            cash_fen: 2_000,
            cancellation: false,
            message_id: "M1".into(),
            posted: true,
        }
    }

    fn submitted(edit: impl FnOnce(&mut pb::DetailRow)) -> SubmittedRow {
        let mut row = ledger_row().to_wire();
        edit(&mut row);
        SubmittedRow::try_from(row).expect("a valid row")
    }

    // Proves the classification of one row against the ledger's: amounts before dates, the
    // figures named, a pending ledger row a timing break.
    #[test]
    fn rows_are_classified() {
        use pb::DetailResult as R;
        use pb::ReconciliationFigure as F;
        let ledger = ledger_row();
        assert_eq!(compare(&submitted(|_| {}), &ledger), (R::Matched, vec![]));
        assert_eq!(
            compare(
                &submitted(|r| r.settlement_date = "2026-03-02".into()),
                &ledger
            ),
            (R::Timing, vec![])
        );
        assert_eq!(
            compare(
                &submitted(|r| {
                    r.fund_pay = "69.99".into();
                    r.cash_pay = "20.01".into();
                    r.settlement_date = "2026-03-02".into();
                }),
                &ledger
            ),
            (R::AmountMismatch, vec![F::FundPay, F::CashPay])
        );
        assert_eq!(
            compare(&submitted(|r| r.visit_id = "V2".into()), &ledger),
            (R::AmountMismatch, vec![])
        );
        let pending = LedgerRow {
            posted: false,
            ..ledger_row()
        };
        assert_eq!(compare(&submitted(|_| {}), &pending), (R::Timing, vec![]));
    }

    // Proves totals name exactly the figures that differ.
    #[test]
    fn totals_name_their_differences() {
        let ledger = Totals {
            count: 3,
            total_fen: 300,
            fund_fen: 200,
            account_fen: 50,
            cash_fen: 50,
        };
        assert!(ledger.differences(&ledger).is_empty());
        let submitted = Totals {
            count: 4,
            cash_fen: 49,
            ..ledger
        };
        assert_eq!(
            submitted.differences(&ledger),
            [
                pb::ReconciliationFigure::Count,
                pb::ReconciliationFigure::CashPay
            ]
        );
    }

    // Proves the range rules: at most 31 days, not backwards.
    fn seeds_network() -> Network {
        Network::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds/network.toml"),
        )
        .expect("the seeded network file is valid")
    }

    // Proves a host city's scope covers every pool the city hosts, enabled or not (Dongying's
    // own and the Oilfield's), read as one IN list, and that a code hosting no pool, or not a
    // city's, is refused at its field.
    #[test]
    fn a_host_city_scope_covers_its_pools() {
        let network = seeds_network();
        let parse = |subject: WireSubject| {
            Filter::parse(
                &network,
                Some(&pb::ReconciliationScope {
                    subject: Some(subject),
                }),
                0,
                0,
                "2026-03-01",
                "2026-03-01",
            )
        };
        let pools = |codes: &[&str]| -> Vec<PoolCode> {
            codes
                .iter()
                .map(|code| PoolCode::parse(code).unwrap())
                .collect()
        };
        let dongying = parse(WireSubject::TreatmentHostCity("370500".into())).unwrap();
        assert_eq!(
            dongying.subject,
            Subject::Treatment(pools(&["370500", "370590"]))
        );
        let query = Query::new(&dongying, 9);
        assert!(
            query
                .conditions
                .contains(&"c.treatment_city IN ($2, $3)".to_owned()),
            "{:?}",
            query.conditions
        );
        assert_eq!(
            parse(WireSubject::InsuredHostCity("370300".into()))
                .unwrap()
                .subject,
            Subject::Insured(pools(&["370300"]))
        );
        let one = Query::new(
            &parse(WireSubject::InsuredCity("370590".into())).unwrap(),
            9,
        );
        assert!(one.conditions.contains(&"c.insured_city = $2".to_owned()));
        for (subject, field) in [
            (
                WireSubject::TreatmentHostCity("370200".into()),
                "scope.treatment_host_city",
            ),
            (
                WireSubject::InsuredHostCity("370590".into()),
                "scope.insured_host_city",
            ),
        ] {
            assert_eq!(parse(subject).unwrap_err().field(), field);
        }
    }

    #[test]
    fn ranges_are_bounded() {
        let scope = pb::ReconciliationScope {
            subject: Some(WireSubject::TreatmentCity("370300".into())),
        };
        let network = seeds_network();
        let parse = |from: &str, to: &str| Filter::parse(&network, Some(&scope), 0, 0, from, to);
        assert!(parse("2026-03-01", "2026-04-01").is_ok());
        assert_eq!(
            parse("2026-03-01", "2026-04-02").unwrap_err().field(),
            "to_date"
        );
        assert_eq!(
            parse("2026-03-02", "2026-03-01").unwrap_err().field(),
            "to_date"
        );
        assert_eq!(
            Filter::parse(&network, None, 0, 0, "2026-03-01", "2026-03-01")
                .unwrap_err()
                .field(),
            "scope"
        );
        assert_eq!(
            Filter::parse(&network, Some(&scope), 311, 0, "2026-03-01", "2026-03-01")
                .unwrap_err()
                .field(),
            "insurance_type"
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            from_hex(&hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(from_hex("0"), None);
    }
}
