//! The treatment side's queries: visits, fee lines, settlements and dead message ids. See
//! `migrations/settlement/0003_visits_and_settlements.sql`, 0005 and 0006, which store the
//! settlements' and visits' states as words, and 0008, which keys message ids by institution.

use yitong_store::now_ms;
use yitong_store::sqlx::{self, AnyConnection, Row, any::AnyRow};

use super::TreatmentError;
use crate::stored::decode_column;

/// Where a visit stands; stored as its word, the name the wire's `VisitStatus` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitStatus {
    /// Registered: fee lines may be added and cancelled, and it may be settled.
    Open,
    /// Settled: its lines are frozen while its settlement stands (a cancellation opens it again).
    Settled,
    /// Cancelled before settlement; final.
    Cancelled,
}

impl VisitStatus {
    pub const ALL: [VisitStatus; 3] = [
        VisitStatus::Open,
        VisitStatus::Settled,
        VisitStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VisitStatus::Open => "open",
            VisitStatus::Settled => "settled",
            VisitStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<VisitStatus> {
        VisitStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// What a settlement id settles: a visit, or the cancellation of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Settlement,
    Cancellation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Settlement => "settlement",
            Kind::Cancellation => "cancellation",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        [Kind::Settlement, Kind::Cancellation]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// The phase of one settlement id in the protocol of [`super::settle`]; stored as its word.
///
/// ```text
/// pending ──record──▶ recorded ──complete──▶ completed
///    │
///    └──decide void──▶ voiding ──peers voided──▶ voided
/// ```
///
/// Only `pending` can move, to `recorded` or to `voiding`, and both moves are conditional
/// updates in one local transaction: exactly one of a record and a void decision wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// The intent is written; whether it settles is not decided yet.
    #[default]
    Pending,
    /// Binding: the HIS was (or will be) answered; the posts are owed.
    Recorded,
    /// Posted at the insured city and in the ledger.
    Completed,
    /// Decided void; the voids at the insured city and in the ledger are owed.
    Voiding,
    /// Voided at the insured city and in the ledger.
    Voided,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Pending,
        Phase::Recorded,
        Phase::Completed,
        Phase::Voiding,
        Phase::Voided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Recorded => "recorded",
            Phase::Completed => "completed",
            Phase::Voiding => "voiding",
            Phase::Voided => "voided",
        }
    }

    fn parse(text: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == text)
    }

    /// A settlement the HIS can see: recorded, whether or not completed yet.
    pub fn is_recorded(self) -> bool {
        matches!(self, Phase::Recorded | Phase::Completed)
    }

    /// A void was decided: the intent never takes effect.
    pub fn is_void(self) -> bool {
        matches!(self, Phase::Voiding | Phase::Voided)
    }
}

/// Hands out the next serial under `prefix`, inside the caller's write transaction (the upsert
/// locks the counter row until the transaction ends, as everywhere: no `SELECT ... FOR UPDATE`).
pub async fn next_serial(conn: &mut AnyConnection, prefix: &str) -> Result<i64, TreatmentError> {
    // The first serial of a prefix is 1, every later one the last plus one.
    let serial: i64 = sqlx::query_scalar(
        "INSERT INTO id_serials (prefix, last_serial) VALUES ($1, 1) \
         ON CONFLICT (prefix) DO UPDATE SET last_serial = id_serials.last_serial + 1 \
         RETURNING last_serial",
    )
    .bind(prefix)
    .fetch_one(&mut *conn)
    .await?;
    Ok(serial)
}

/// Locks the counter row of `prefix` until the transaction ends, creating it (at zero, so the
/// first serial [`next_serial`] hands out is still 1) when the prefix is new: a group of
/// intents takes it before any visit (`writes`).
pub async fn lock_serial(conn: &mut AnyConnection, prefix: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO id_serials (prefix, last_serial) VALUES ($1, 0) \
         ON CONFLICT (prefix) DO UPDATE SET last_serial = id_serials.last_serial",
    )
    .bind(prefix)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One row of `visits`.
#[derive(Debug, Clone)]
pub struct VisitRow {
    pub visit_id: String,
    pub institution_code: String,
    pub person_no: String,
    pub insured_city: String,
    pub insurance_type: i64,
    pub hospital_level: i64,
    pub service_date: String,
    pub status: VisitStatus,
    pub settlement_id: Option<String>,
    pub registered: String,
    pub registered_at_ms: i64,
}

impl VisitRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(VisitRow {
            visit_id: row.try_get("visit_id")?,
            institution_code: row.try_get("institution_code")?,
            person_no: row.try_get("person_no")?,
            insured_city: row.try_get("insured_city")?,
            insurance_type: row.try_get("insurance_type")?,
            hospital_level: row.try_get("hospital_level")?,
            service_date: row.try_get("service_date")?,
            status: decode_column(row, "status", VisitStatus::parse)?,
            settlement_id: row.try_get("settlement_id")?,
            registered: row.try_get("registered")?,
            registered_at_ms: row.try_get("registered_at_ms")?,
        })
    }
}

pub async fn insert_visit(conn: &mut AnyConnection, v: &VisitRow) -> Result<(), TreatmentError> {
    sqlx::query(
        "INSERT INTO visits (visit_id, institution_code, person_no, insured_city, insurance_type, hospital_level, \
         service_date, status, settlement_id, registered, registered_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(v.visit_id.clone())
    .bind(v.institution_code.clone())
    .bind(v.person_no.clone())
    .bind(v.insured_city.clone())
    .bind(v.insurance_type)
    .bind(v.hospital_level)
    .bind(v.service_date.clone())
    .bind(v.status.as_str())
    .bind(v.settlement_id.clone())
    .bind(v.registered.clone())
    .bind(v.registered_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn visit(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<Option<VisitRow>, TreatmentError> {
    let row = sqlx::query("SELECT * FROM visits WHERE visit_id = $1")
        .bind(visit_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| VisitRow::from_row(&row)).transpose()?)
}

/// Locks a visit's row for the rest of the transaction (a no-op UPDATE) and reads it, so lines,
/// settles and cancels of one visit queue on it.
pub async fn lock_visit(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<Option<VisitRow>, TreatmentError> {
    let row = sqlx::query("UPDATE visits SET status = status WHERE visit_id = $1 RETURNING *")
        .bind(visit_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| VisitRow::from_row(&row)).transpose()?)
}

pub async fn set_visit_status(
    conn: &mut AnyConnection,
    visit_id: &str,
    status: VisitStatus,
    settlement_id: Option<&str>,
) -> Result<(), TreatmentError> {
    sqlx::query("UPDATE visits SET status = $2, settlement_id = $3 WHERE visit_id = $1")
        .bind(visit_id)
        .bind(status.as_str())
        .bind(settlement_id.map(str::to_owned))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One fee line as stored.
#[derive(Debug, Clone)]
pub struct LineRow {
    pub serial: String,
    pub amount_fen: i64,
    pub full_self_pay_fen: i64,
    pub over_cap_fen: i64,
    pub pre_self_pay_fen: i64,
    pub in_scope_fen: i64,
    pub classified: String,
}

pub async fn live_lines(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<Vec<LineRow>, TreatmentError> {
    let rows = sqlx::query(
        "SELECT serial, amount_fen, full_self_pay_fen, over_cap_fen, pre_self_pay_fen, in_scope_fen, classified \
         FROM fee_lines WHERE visit_id = $1 AND live = 1 ORDER BY position",
    )
    .bind(visit_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LineRow {
                serial: row.try_get("serial")?,
                amount_fen: row.try_get("amount_fen")?,
                full_self_pay_fen: row.try_get("full_self_pay_fen")?,
                over_cap_fen: row.try_get("over_cap_fen")?,
                pre_self_pay_fen: row.try_get("pre_self_pay_fen")?,
                in_scope_fen: row.try_get("in_scope_fen")?,
                classified: row.try_get("classified")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Live lines and their total, for the visit's reply.
pub async fn line_totals(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<(i64, i64), TreatmentError> {
    let totals: (i64, i64) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT) FROM fee_lines \
         WHERE visit_id = $1 AND live = 1",
    )
    .bind(visit_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(totals)
}

/// Every serial the visit has used, live or cancelled.
pub async fn used_serials(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<Vec<(String, bool)>, TreatmentError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT serial, live FROM fee_lines WHERE visit_id = $1")
            .bind(visit_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(serial, live)| (serial, live == 1))
        .collect())
}

/// Inserts a request's lines, live, at positions from `first_position` on, in one statement
/// (a request holds at most 100 lines, 1,100 parameters, well inside both databases' limits).
pub async fn insert_lines(
    conn: &mut AnyConnection,
    visit_id: &str,
    first_position: i64,
    lines: &[LineRow],
) -> Result<(), TreatmentError> {
    if lines.is_empty() {
        return Ok(());
    }
    let sql = yitong_store::multi_row_insert(
        "fee_lines (visit_id, serial, position, amount_fen, full_self_pay_fen, over_cap_fen, \
         pre_self_pay_fen, in_scope_fen, live, classified, cancelled_at_ms)",
        11,
        lines.len(),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (offset, line) in (0i64..).zip(lines) {
        query = query
            .bind(visit_id.to_owned())
            .bind(line.serial.clone())
            .bind(first_position + offset)
            .bind(line.amount_fen)
            .bind(line.full_self_pay_fen)
            .bind(line.over_cap_fen)
            .bind(line.pre_self_pay_fen)
            .bind(line.in_scope_fen)
            .bind(1i64)
            .bind(line.classified.clone())
            .bind(None::<i64>);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

pub async fn cancel_line(
    conn: &mut AnyConnection,
    visit_id: &str,
    serial: &str,
) -> Result<(), TreatmentError> {
    sqlx::query(
        "UPDATE fee_lines SET live = 0, cancelled_at_ms = $3 WHERE visit_id = $1 AND serial = $2",
    )
    .bind(visit_id)
    .bind(serial)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One row of `settlements`.
#[derive(Debug, Clone, Default)]
pub struct SettlementRow {
    pub settlement_id: String,
    pub kind: Kind,
    pub original_settlement_id: Option<String>,
    pub visit_id: String,
    pub institution_code: String,
    pub insured_city: String,
    pub person_no: String,
    pub message_id: String,
    pub phase: Phase,
    pub reserve_request: String,
    pub transfer: String,
    pub settlement_date: String,
    pub total_fen: i64,
    pub fund_pay_fen: i64,
    pub account_pay_fen: i64,
    pub record: String,
    pub cancelled_by: Option<String>,
    pub created_at_ms: i64,
    pub settled_at_ms: Option<i64>,
    /// Why the intent was voided, decided once with the move to `voiding`.
    pub void_reason: String,
    /// The recovery sweep's failed attempts at this row.
    pub attempts: i64,
    /// The recovery sweep's last failure at this row; empty once it completed.
    pub last_error: String,
}

impl SettlementRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(SettlementRow {
            settlement_id: row.try_get("settlement_id")?,
            kind: decode_column(row, "kind", Kind::parse)?,
            original_settlement_id: row.try_get("original_settlement_id")?,
            visit_id: row.try_get("visit_id")?,
            institution_code: row.try_get("institution_code")?,
            insured_city: row.try_get("insured_city")?,
            person_no: row.try_get("person_no")?,
            message_id: row.try_get("message_id")?,
            phase: decode_column(row, "phase", Phase::parse)?,
            reserve_request: row.try_get("reserve_request")?,
            transfer: row.try_get("transfer")?,
            settlement_date: row.try_get("settlement_date")?,
            total_fen: row.try_get("total_fen")?,
            fund_pay_fen: row.try_get("fund_pay_fen")?,
            account_pay_fen: row.try_get("account_pay_fen")?,
            record: row.try_get("record")?,
            cancelled_by: row.try_get("cancelled_by")?,
            created_at_ms: row.try_get("created_at_ms")?,
            settled_at_ms: row.try_get("settled_at_ms")?,
            void_reason: row.try_get("void_reason")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
        })
    }
}

/// Writes an intent (phase `pending`); the sweep first looks at it at `first_sweep_at_ms`.
pub async fn insert_intent(
    conn: &mut AnyConnection,
    s: &SettlementRow,
    first_sweep_at_ms: i64,
) -> Result<(), TreatmentError> {
    sqlx::query(
        "INSERT INTO settlements (settlement_id, kind, original_settlement_id, visit_id, institution_code, insured_city, \
         person_no, message_id, phase, reserve_request, settlement_date, created_at_ms, next_attempt_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(s.settlement_id.clone())
    .bind(s.kind.as_str())
    .bind(s.original_settlement_id.clone())
    .bind(s.visit_id.clone())
    .bind(s.institution_code.clone())
    .bind(s.insured_city.clone())
    .bind(s.person_no.clone())
    .bind(s.message_id.clone())
    .bind(Phase::Pending.as_str())
    .bind(s.reserve_request.clone())
    .bind(s.settlement_date.clone())
    .bind(s.created_at_ms)
    .bind(first_sweep_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn settlement(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<Option<SettlementRow>, TreatmentError> {
    let row = sqlx::query("SELECT * FROM settlements WHERE settlement_id = $1")
        .bind(settlement_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| SettlementRow::from_row(&row)).transpose()?)
}

/// The settlement or cancellation written under an institution's message id: another
/// institution's use of the same id is not it.
pub async fn settlement_by_message(
    conn: &mut AnyConnection,
    institution_code: &str,
    message_id: &str,
) -> Result<Option<SettlementRow>, TreatmentError> {
    let row =
        sqlx::query("SELECT * FROM settlements WHERE institution_code = $1 AND message_id = $2")
            .bind(institution_code)
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|row| SettlementRow::from_row(&row)).transpose()?)
}

/// Locks a settlement's row for the rest of the transaction and reads it.
pub async fn lock_settlement(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<Option<SettlementRow>, TreatmentError> {
    let row =
        sqlx::query("UPDATE settlements SET phase = phase WHERE settlement_id = $1 RETURNING *")
            .bind(settlement_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|row| SettlementRow::from_row(&row)).transpose()?)
}

/// A settlement or cancellation of the visit (or of the original) that is not settled yet:
/// pending (not decided), or voiding (its void decided but not yet carried to the peers, which
/// still hold its reservation and its transfer). While one is in flight, nothing else may
/// change what it covers: the ledger books one live cancellation per settlement, and the
/// insured city's cap and balance still count what the voiding one holds.
pub async fn in_flight(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<Option<String>, TreatmentError> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT settlement_id FROM settlements WHERE visit_id = $1 AND phase IN ($2, $3) \
         ORDER BY created_at_ms LIMIT 1",
    )
    .bind(visit_id)
    .bind(Phase::Pending.as_str())
    .bind(Phase::Voiding.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// The settlements and cancellations of the visit whose void is decided but not carried.
pub async fn voiding_of_visit(
    conn: &mut AnyConnection,
    visit_id: &str,
) -> Result<Vec<SettlementRow>, TreatmentError> {
    let rows = sqlx::query(
        "SELECT * FROM settlements WHERE visit_id = $1 AND phase = $2 ORDER BY created_at_ms",
    )
    .bind(visit_id)
    .bind(Phase::Voiding.as_str())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(SettlementRow::from_row)
        .collect::<Result<_, _>>()?)
}

/// Decides a void: `pending` becomes `voiding` with its reason, and the sweep may carry the
/// voids to the peers from `next_attempt_at_ms` on. False when the intent was not pending any
/// more (a record, or another void, decided first).
pub async fn decide_void(
    conn: &mut AnyConnection,
    settlement_id: &str,
    reason: &str,
    next_attempt_at_ms: i64,
) -> Result<bool, TreatmentError> {
    let moved = sqlx::query(
        "UPDATE settlements SET phase = $2, void_reason = $3, next_attempt_at_ms = $4 \
         WHERE settlement_id = $1 AND phase = $5",
    )
    .bind(settlement_id)
    .bind(Phase::Voiding.as_str())
    .bind(reason)
    .bind(next_attempt_at_ms)
    .bind(Phase::Pending.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// The peers confirmed a decided void: `voiding` becomes `voided`. False when it was not
/// voiding (already voided by another actor).
pub async fn finish_void(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<bool, TreatmentError> {
    let moved = sqlx::query(
        "UPDATE settlements SET phase = $2, last_error = '' WHERE settlement_id = $1 AND phase = $3",
    )
    .bind(settlement_id)
    .bind(Phase::Voided.as_str())
    .bind(Phase::Voiding.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// Step 4's write: the binding figures, the transfer to post, and the record the HIS sees;
/// `pending` becomes `recorded`. False when the intent was not pending any more (a void was
/// decided first).
pub async fn record(
    conn: &mut AnyConnection,
    s: &SettlementRow,
    next_attempt_at_ms: i64,
) -> Result<bool, TreatmentError> {
    let moved = sqlx::query(
        "UPDATE settlements SET phase = $2, transfer = $3, total_fen = $4, fund_pay_fen = $5, account_pay_fen = $6, \
         record = $7, settled_at_ms = $8, next_attempt_at_ms = $9 WHERE settlement_id = $1 AND phase = $10",
    )
    .bind(s.settlement_id.clone())
    .bind(Phase::Recorded.as_str())
    .bind(s.transfer.clone())
    .bind(s.total_fen)
    .bind(s.fund_pay_fen)
    .bind(s.account_pay_fen)
    .bind(s.record.clone())
    .bind(s.settled_at_ms)
    .bind(next_attempt_at_ms)
    .bind(Phase::Pending.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

pub async fn set_record(
    conn: &mut AnyConnection,
    settlement_id: &str,
    record: &str,
) -> Result<(), TreatmentError> {
    sqlx::query("UPDATE settlements SET record = $2 WHERE settlement_id = $1")
        .bind(settlement_id)
        .bind(record)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_cancelled_by(
    conn: &mut AnyConnection,
    settlement_id: &str,
    cancellation_id: &str,
) -> Result<(), TreatmentError> {
    sqlx::query("UPDATE settlements SET cancelled_by = $2 WHERE settlement_id = $1")
        .bind(settlement_id)
        .bind(cancellation_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The peers confirmed the posts: `recorded` becomes `completed`. False when it was not
/// recorded (completed by another actor first).
pub async fn complete(
    conn: &mut AnyConnection,
    settlement_id: &str,
    at_ms: i64,
) -> Result<bool, TreatmentError> {
    let moved = sqlx::query(
        "UPDATE settlements SET phase = $2, completed_at_ms = $3, last_error = '' WHERE settlement_id = $1 AND phase = $4",
    )
    .bind(settlement_id)
    .bind(Phase::Completed.as_str())
    .bind(at_ms)
    .bind(Phase::Recorded.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// A failed attempt at a row in doubt: why, and when the sweep may try it again.
pub async fn attempt_failed(
    conn: &mut AnyConnection,
    settlement_id: &str,
    error: &str,
    next_attempt_at_ms: i64,
) -> Result<(), TreatmentError> {
    sqlx::query(
        "UPDATE settlements SET last_error = $2, attempts = attempts + 1, next_attempt_at_ms = $3 \
         WHERE settlement_id = $1",
    )
    .bind(settlement_id)
    .bind(error)
    .bind(next_attempt_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows of a phase whose next attempt is due, the longest-waiting first: a row that fails is
/// pushed back behind the others, so the sweep always reaches every row.
pub async fn due(
    conn: &mut AnyConnection,
    phase: Phase,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<SettlementRow>, TreatmentError> {
    let rows = sqlx::query(
        "SELECT * FROM settlements WHERE phase = $1 AND next_attempt_at_ms <= $2 \
         ORDER BY next_attempt_at_ms, settlement_id LIMIT $3",
    )
    .bind(phase.as_str())
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(SettlementRow::from_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// How many rows are in doubt: recorded or voiding, or pending past their first sweep.
pub async fn in_doubt(conn: &mut AnyConnection, now_ms: i64) -> Result<i64, TreatmentError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM settlements \
         WHERE phase IN ($1, $2) OR (phase = $3 AND next_attempt_at_ms <= $4)",
    )
    .bind(Phase::Recorded.as_str())
    .bind(Phase::Voiding.as_str())
    .bind(Phase::Pending.as_str())
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    Ok(count)
}

/// A page of an institution's recorded settlements (never the cancellation rows, which their
/// originals carry), by settlement time and id, after the `after` position.
pub async fn list(
    conn: &mut AnyConnection,
    institution_code: &str,
    from_date: &str,
    to_date: &str,
    cancelled: Option<bool>,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<SettlementRow>, TreatmentError> {
    let (after_ms, after_id) = after.unwrap_or((i64::MIN, String::new()));
    let state = match cancelled {
        None => "",
        Some(true) => " AND cancelled_by IS NOT NULL",
        Some(false) => " AND cancelled_by IS NULL",
    };
    let sql = format!(
        "SELECT * FROM settlements WHERE institution_code = $1 AND kind = $7 AND phase IN ($8, $9) \
         AND settlement_date >= $2 AND settlement_date <= $3{state} \
         AND (settled_at_ms > $4 OR (settled_at_ms = $4 AND settlement_id > $5)) \
         ORDER BY settled_at_ms, settlement_id LIMIT $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(institution_code)
        .bind(from_date)
        .bind(to_date)
        .bind(after_ms)
        .bind(after_id)
        .bind(limit)
        .bind(Kind::Settlement.as_str())
        .bind(Phase::Recorded.as_str())
        .bind(Phase::Completed.as_str())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(SettlementRow::from_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Whether a reversal killed the institution's Settle message id.
pub async fn is_dead(
    conn: &mut AnyConnection,
    institution_code: &str,
    message_id: &str,
) -> Result<bool, TreatmentError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT dead_at_ms FROM dead_message_ids WHERE institution_code = $1 AND message_id = $2",
    )
    .bind(institution_code)
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

pub async fn mark_dead(
    conn: &mut AnyConnection,
    institution_code: &str,
    message_id: &str,
) -> Result<(), TreatmentError> {
    sqlx::query(
        "INSERT INTO dead_message_ids (institution_code, message_id, dead_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (institution_code, message_id) DO NOTHING",
    )
    .bind(institution_code)
    .bind(message_id)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
