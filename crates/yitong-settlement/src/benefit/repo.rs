//! The benefit store's queries: running totals and reservations. See
//! `migrations/settlement/0002_benefits.sql`, and 0006, which stores the reservations' kinds and
//! statuses as words.

use yitong_store::now_ms;
use yitong_store::sqlx::{self, AnyConnection, Row, any::AnyRow};

use super::BenefitError;
use crate::stored::decode_column;

/// What a reservation's settlement id holds; stored as its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReservationKind {
    /// The benefit of a new settlement.
    #[default]
    Settlement,
    /// The exact reversal of a posted settlement's benefit.
    Cancellation,
    /// An id voided before it was ever reserved: a later Reserve of it is refused.
    Tombstone,
}

impl ReservationKind {
    pub const ALL: [ReservationKind; 3] = [
        ReservationKind::Settlement,
        ReservationKind::Cancellation,
        ReservationKind::Tombstone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReservationKind::Settlement => "settlement",
            ReservationKind::Cancellation => "cancellation",
            ReservationKind::Tombstone => "tombstone",
        }
    }

    fn parse(text: &str) -> Option<ReservationKind> {
        ReservationKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// Where a reservation stands; stored as its word.
///
/// ```text
/// (none) ──Reserve──▶ reserved ──Post──▶ posted
///    │                   └──Void──▶ voided
///    └──Void──▶ voided (a tombstone)
/// ```
///
/// EXPIRED is never stored: a reserved row past its `expires_at_ms` reads as expired on the
/// wire, and still holds its room (the treatment city may yet record it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReservationStatus {
    /// Held: counted as used until posted or voided.
    #[default]
    Reserved,
    /// Part of the person's running totals for good.
    Posted,
    /// Released.
    Voided,
}

impl ReservationStatus {
    pub const ALL: [ReservationStatus; 3] = [
        ReservationStatus::Reserved,
        ReservationStatus::Posted,
        ReservationStatus::Voided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "reserved",
            ReservationStatus::Posted => "posted",
            ReservationStatus::Voided => "voided",
        }
    }

    fn parse(text: &str) -> Option<ReservationStatus> {
        ReservationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// One row of `reservations`.
#[derive(Debug, Clone, Default)]
pub struct ReservationRow {
    pub settlement_id: String,
    pub kind: ReservationKind,
    pub original_settlement_id: Option<String>,
    pub status: ReservationStatus,
    pub person_no: String,
    pub benefit_year: i64,
    pub treatment_city: String,
    pub institution_code: String,
    pub visit_id: String,
    pub message_id: String,
    pub request_digest: String,
    pub total_fen: i64,
    pub full_self_pay_fen: i64,
    pub over_cap_self_pay_fen: i64,
    pub pre_self_pay_fen: i64,
    pub in_scope_fen: i64,
    pub policy_id: String,
    pub policy_deductible_fen: i64,
    pub policy_ratio: String,
    pub policy_annual_cap_fen: i64,
    pub insurance_type: i64,
    pub use_personal_account: i64,
    pub before_deductible_used_fen: i64,
    pub before_fund_paid_fen: i64,
    pub before_balance_fen: i64,
    pub deductible_applied_fen: i64,
    pub fund_pay_fen: i64,
    pub account_pay_fen: i64,
    pub account_moved: i64,
    pub split: String,
    pub reserved_at_ms: i64,
    pub expires_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub void_reason: String,
    pub reversed_by: Option<String>,
    /// Which totals the reservation moves: empty for the ordinary outpatient ones, else the
    /// disease's.
    pub disease_code: String,
}

impl ReservationRow {
    /// The row as [`post`] leaves it, posted at `now_ms`.
    pub fn posted_at(&mut self, now_ms: i64) {
        self.status = ReservationStatus::Posted;
        self.resolved_at_ms = Some(now_ms);
    }

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ReservationRow {
            settlement_id: row.try_get("settlement_id")?,
            kind: decode_column(row, "kind", ReservationKind::parse)?,
            original_settlement_id: row.try_get("original_settlement_id")?,
            status: decode_column(row, "status", ReservationStatus::parse)?,
            person_no: row.try_get("person_no")?,
            benefit_year: row.try_get("benefit_year")?,
            treatment_city: row.try_get("treatment_city")?,
            institution_code: row.try_get("institution_code")?,
            visit_id: row.try_get("visit_id")?,
            message_id: row.try_get("message_id")?,
            request_digest: row.try_get("request_digest")?,
            total_fen: row.try_get("total_fen")?,
            full_self_pay_fen: row.try_get("full_self_pay_fen")?,
            over_cap_self_pay_fen: row.try_get("over_cap_self_pay_fen")?,
            pre_self_pay_fen: row.try_get("pre_self_pay_fen")?,
            in_scope_fen: row.try_get("in_scope_fen")?,
            policy_id: row.try_get("policy_id")?,
            policy_deductible_fen: row.try_get("policy_deductible_fen")?,
            policy_ratio: row.try_get("policy_ratio")?,
            policy_annual_cap_fen: row.try_get("policy_annual_cap_fen")?,
            insurance_type: row.try_get("insurance_type")?,
            use_personal_account: row.try_get("use_personal_account")?,
            before_deductible_used_fen: row.try_get("before_deductible_used_fen")?,
            before_fund_paid_fen: row.try_get("before_fund_paid_fen")?,
            before_balance_fen: row.try_get("before_balance_fen")?,
            deductible_applied_fen: row.try_get("deductible_applied_fen")?,
            fund_pay_fen: row.try_get("fund_pay_fen")?,
            account_pay_fen: row.try_get("account_pay_fen")?,
            account_moved: row.try_get("account_moved")?,
            split: row.try_get("split")?,
            reserved_at_ms: row.try_get("reserved_at_ms")?,
            expires_at_ms: row.try_get("expires_at_ms")?,
            resolved_at_ms: row.try_get("resolved_at_ms")?,
            void_reason: row.try_get("void_reason")?,
            reversed_by: row.try_get("reversed_by")?,
            disease_code: row.try_get("disease_code")?,
        })
    }
}

pub async fn reservation(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<Option<ReservationRow>, BenefitError> {
    let row = sqlx::query("SELECT * FROM reservations WHERE settlement_id = $1")
        .bind(settlement_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| ReservationRow::from_row(&row)).transpose()?)
}

/// Inserts a reservation (or a tombstone); false when a row of its settlement id exists
/// already (a racing Reserve or Void inserted it first, without the person's lock).
pub async fn insert_reservation(
    conn: &mut AnyConnection,
    r: &ReservationRow,
) -> Result<bool, BenefitError> {
    let inserted = sqlx::query(
        "INSERT INTO reservations (settlement_id, kind, original_settlement_id, status, person_no, benefit_year, \
         treatment_city, institution_code, visit_id, message_id, request_digest, total_fen, full_self_pay_fen, \
         over_cap_self_pay_fen, pre_self_pay_fen, in_scope_fen, policy_id, policy_deductible_fen, policy_ratio, \
         policy_annual_cap_fen, insurance_type, use_personal_account, before_deductible_used_fen, before_fund_paid_fen, \
         before_balance_fen, deductible_applied_fen, fund_pay_fen, account_pay_fen, account_moved, split, reserved_at_ms, \
         expires_at_ms, resolved_at_ms, void_reason, reversed_by, disease_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36) ON CONFLICT (settlement_id) DO NOTHING",
    )
    .bind(r.settlement_id.clone())
    .bind(r.kind.as_str())
    .bind(r.original_settlement_id.clone())
    .bind(r.status.as_str())
    .bind(r.person_no.clone())
    .bind(r.benefit_year)
    .bind(r.treatment_city.clone())
    .bind(r.institution_code.clone())
    .bind(r.visit_id.clone())
    .bind(r.message_id.clone())
    .bind(r.request_digest.clone())
    .bind(r.total_fen)
    .bind(r.full_self_pay_fen)
    .bind(r.over_cap_self_pay_fen)
    .bind(r.pre_self_pay_fen)
    .bind(r.in_scope_fen)
    .bind(r.policy_id.clone())
    .bind(r.policy_deductible_fen)
    .bind(r.policy_ratio.clone())
    .bind(r.policy_annual_cap_fen)
    .bind(r.insurance_type)
    .bind(r.use_personal_account)
    .bind(r.before_deductible_used_fen)
    .bind(r.before_fund_paid_fen)
    .bind(r.before_balance_fen)
    .bind(r.deductible_applied_fen)
    .bind(r.fund_pay_fen)
    .bind(r.account_pay_fen)
    .bind(r.account_moved)
    .bind(r.split.clone())
    .bind(r.reserved_at_ms)
    .bind(r.expires_at_ms)
    .bind(r.resolved_at_ms)
    .bind(r.void_reason.clone())
    .bind(r.reversed_by.clone())
    .bind(r.disease_code.clone())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Locks a person's running totals for a year for the rest of the transaction, creating them
/// at zero on first use, in one upsert: its no-op DO UPDATE of an existing row takes
/// PostgreSQL's row lock (and any PostgreSQL-compatible engine's) without `SELECT ... FOR
/// UPDATE`, which SQLite lacks; on SQLite the transaction already holds the database's write
/// lock.
pub async fn lock_year(
    conn: &mut AnyConnection,
    person_no: &str,
    year: i64,
) -> Result<(), BenefitError> {
    sqlx::query(
        "INSERT INTO benefit_years (person_no, benefit_year, deductible_used_fen, fund_paid_fen) VALUES ($1, $2, 0, 0) \
         ON CONFLICT (person_no, benefit_year) DO UPDATE SET fund_paid_fen = benefit_years.fund_paid_fen",
    )
    .bind(person_no)
    .bind(year)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What a person has used of a year's deductible and cap (of the ordinary outpatient totals for
/// `disease` empty, else of the disease's): posted totals plus every settlement
/// reservation still held, past its timeout too (the treatment city may yet record it, and
/// then its post must fit). Held cancellations free nothing until posted, so a race can only
/// make the totals look fuller, never emptier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    pub deductible_fen: i64,
    pub fund_fen: i64,
    /// Account pays promised but not yet taken from the account by identity.
    pub account_held_fen: i64,
}

pub async fn used(
    conn: &mut AnyConnection,
    person_no: &str,
    year: i64,
    disease: &str,
    excluding: &str,
) -> Result<Used, BenefitError> {
    let (posted_deductible, posted_fund) = posted(conn, person_no, year, disease).await?;
    let live: (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(deductible_applied_fen), 0) AS BIGINT), CAST(COALESCE(SUM(fund_pay_fen), 0) AS BIGINT) \
         FROM reservations WHERE person_no = $1 AND benefit_year = $2 AND kind = $3 AND status = $4 \
         AND settlement_id <> $5 AND disease_code = $6",
    )
    .bind(person_no)
    .bind(year)
    .bind(ReservationKind::Settlement.as_str())
    .bind(ReservationStatus::Reserved.as_str())
    .bind(excluding)
    .bind(disease)
    .fetch_one(&mut *conn)
    .await?;
    // Posted and not yet moved counts too: a Post that crashed between identity's movement and
    // its commit leaves the row reserved, so a race can only hold too much, never too little.
    let account_held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(account_pay_fen), 0) AS BIGINT) FROM reservations WHERE person_no = $1 AND kind = $2 \
         AND (status = $3 OR (status = $4 AND account_moved = 0)) AND settlement_id <> $5",
    )
    .bind(person_no)
    .bind(ReservationKind::Settlement.as_str())
    .bind(ReservationStatus::Reserved.as_str())
    .bind(ReservationStatus::Posted.as_str())
    .bind(excluding)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Used {
        deductible_fen: posted_deductible + live.0,
        fund_fen: posted_fund + live.1,
        account_held_fen: account_held,
    })
}

/// Posted totals alone (the ordinary outpatient ones for `disease` empty, else the disease's),
/// for reversing a posted settlement.
pub async fn posted(
    conn: &mut AnyConnection,
    person_no: &str,
    year: i64,
    disease: &str,
) -> Result<(i64, i64), BenefitError> {
    let posted: Option<(i64, i64)> = match disease {
        "" => sqlx::query_as("SELECT deductible_used_fen, fund_paid_fen FROM benefit_years WHERE person_no = $1 AND benefit_year = $2")
            .bind(person_no)
            .bind(year)
            .fetch_optional(&mut *conn)
            .await?,
        _ => sqlx::query_as("SELECT deductible_used_fen, fund_paid_fen FROM disease_years WHERE person_no = $1 AND benefit_year = $2 AND disease_code = $3")
            .bind(person_no)
            .bind(year)
            .bind(disease)
            .fetch_optional(&mut *conn)
            .await?,
    };
    Ok(posted.unwrap_or((0, 0)))
}

/// Marks a reservation posted and adds what it holds to the year's totals.
pub async fn post(conn: &mut AnyConnection, r: &ReservationRow) -> Result<i64, BenefitError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE reservations SET status = $3, resolved_at_ms = $2 WHERE settlement_id = $1",
    )
    .bind(r.settlement_id.clone())
    .bind(now)
    .bind(ReservationStatus::Posted.as_str())
    .execute(&mut *conn)
    .await?;
    match r.disease_code.as_str() {
        "" => sqlx::query(
            "UPDATE benefit_years SET deductible_used_fen = deductible_used_fen + $3, fund_paid_fen = fund_paid_fen + $4 \
             WHERE person_no = $1 AND benefit_year = $2",
        )
        .bind(r.person_no.clone())
        .bind(r.benefit_year)
        .bind(r.deductible_applied_fen)
        .bind(r.fund_pay_fen)
        .execute(&mut *conn)
        .await?,
        // The first posting of a disease in a year creates its row at zero, then every posting
        // adds to it. Not one upsert: the row an INSERT proposes is checked (non-negative)
        // before its conflict is found, and a cancellation's amounts are negative.
        disease => {
            sqlx::query(
                "INSERT INTO disease_years (person_no, benefit_year, disease_code, deductible_used_fen, fund_paid_fen) \
                 VALUES ($1, $2, $3, 0, 0) ON CONFLICT (person_no, benefit_year, disease_code) DO NOTHING",
            )
            .bind(r.person_no.clone())
            .bind(r.benefit_year)
            .bind(disease)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE disease_years SET deductible_used_fen = deductible_used_fen + $4, fund_paid_fen = fund_paid_fen + $5 \
                 WHERE person_no = $1 AND benefit_year = $2 AND disease_code = $3",
            )
            .bind(r.person_no.clone())
            .bind(r.benefit_year)
            .bind(disease)
            .bind(r.deductible_applied_fen)
            .bind(r.fund_pay_fen)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(now)
}

/// Voids a reserved reservation; false when it was not reserved.
pub async fn void(
    conn: &mut AnyConnection,
    settlement_id: &str,
    reason: &str,
) -> Result<bool, BenefitError> {
    let voided = sqlx::query(
        "UPDATE reservations SET status = $4, resolved_at_ms = $2, void_reason = $3 \
         WHERE settlement_id = $1 AND status = $5",
    )
    .bind(settlement_id)
    .bind(now_ms())
    .bind(reason)
    .bind(ReservationStatus::Voided.as_str())
    .bind(ReservationStatus::Reserved.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(voided == 1)
}

pub async fn set_reversed_by(
    conn: &mut AnyConnection,
    original: &str,
    cancellation: Option<&str>,
) -> Result<(), BenefitError> {
    sqlx::query("UPDATE reservations SET reversed_by = $2 WHERE settlement_id = $1")
        .bind(original)
        .bind(cancellation.map(str::to_owned))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn mark_account_moved(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<(), BenefitError> {
    sqlx::query("UPDATE reservations SET account_moved = 1 WHERE settlement_id = $1")
        .bind(settlement_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
