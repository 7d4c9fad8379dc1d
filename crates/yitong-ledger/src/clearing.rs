//! Monthly clearing (national 3260-3262, 3203/3204): the treatment cities confirm their
//! cross-city rows of a month and apply; the clearing house closes the month, nets the cities'
//! positions, books the CLEARING_* transfers and issues a statement per city.
//!
//! # Which rows a period holds
//!
//! A period's details for a treatment city are its posted cross-city SETTLEMENT and CANCELLATION
//! rows whose clearing period (fixed when the transfer was created: the settlement date's month,
//! or the first open month when that one was closed, an adjustment) is the period, plus the rows
//! a close carried over: every live row of the closed period not included (excluded, pending at
//! the close, or posted after the city applied). Same-city rows are paid by the city's own pool
//! and never cleared; pending rows are listed once posted.
//!
//! # The close
//!
//! Gross obligation per ordered pair = the included rows' insured-city pay (fund pay plus
//! personal-account pay). A city's net position = what it is owed as treatment city less what it
//! owes as insured city; the positions sum to zero (asserted). Payment instructions settle them:
//! net debtors and net creditors, each sorted largest first, are matched greedily, every payment
//! closing at least one position, so there are at most one fewer payments than cities with a
//! position. For each pair the close books CLEARING_OBLIGATION (the obligation discharged against
//! the treatment city's advances) and CLEARING_FUNDS (insured fund to treatment fund), and for
//! each payment a CLEARING_PAYMENT (payee's fund to payer's), all posted, in one journal append:
//! every fund ends where it stood before (asserted). A pair whose adjustments outweigh its rows
//! has a negative amount, and its two transfers run the other way.
//!
//! Everything that changes clearing state runs under the journal head's lock (the same write
//! transaction order as every append), so a close never races a confirmation or a booking: a
//! cancellation booked after the close sees the period closed and lands in the next one.

use std::collections::{BTreeMap, HashMap};

use yitong_core::{Amount, Invalid, PoolCode};
use yitong_proto::ledger::v1 as pb;
use yitong_store::now_ms;
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, Row, any::AnyRow};

use crate::LedgerError;
use crate::account::Side;
use crate::append::Appender;
use crate::balance::{Balance, Prepaid};
use crate::breakdown::Breakdown;
use crate::journal::{Event, TransferColumns, to_hex};
use crate::period::{Period, is_closed};
use crate::reconcile::Totals;
use crate::repo::{self, RESOLUTION_JOIN};
use crate::tally::{self, Tally};
use crate::transfer::{IDENTIFIER_CHARS_MAX, TransferCode, itemised, parse_fund_payments_text};

/// Most rows per ListClearingDetails page.
pub const DETAILS_PER_PAGE_MAX: u32 = 1_000;
/// Most decisions in one ConfirmClearingDetails, or ids in one rollback.
pub const DECISIONS_PER_REQUEST_MAX: usize = 1_000;
/// Confirmations written by one INSERT: 13 values each, well inside both databases' limit of
/// bound values per statement.
const CONFIRMATIONS_PER_INSERT: usize = 500;
/// Longest exclusion, rollback or cancellation reason, in characters.
pub const REASON_CHARS_MAX: usize = 200;

/// A treatment city's decision on one clearing detail: its `clearing_confirmations` row's
/// status, stored as its word. A detail without a row is unconfirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Cleared in this period.
    Included,
    /// Held out of this period, with a reason; carried into the next one at the close.
    Excluded,
}

impl Decision {
    const ALL: [Decision; 2] = [Decision::Included, Decision::Excluded];

    fn as_str(self) -> &'static str {
        match self {
            Decision::Included => "included",
            Decision::Excluded => "excluded",
        }
    }

    fn parse(text: &str) -> Option<Decision> {
        Decision::ALL
            .into_iter()
            .find(|decision| decision.as_str() == text)
    }

    fn wire(self) -> pb::ConfirmationStatus {
        match self {
            Decision::Included => pb::ConfirmationStatus::Included,
            Decision::Excluded => pb::ConfirmationStatus::Excluded,
        }
    }
}

/// Where a clearing application stands: its `clearing_applications` row's status, stored as
/// its word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ApplicationStatus {
    /// Applied; the city's confirmations are frozen.
    Applied,
    /// Withdrawn before the close; the city may confirm and apply again.
    Cancelled,
    /// The period closed with it.
    Cleared,
}

impl ApplicationStatus {
    const ALL: [ApplicationStatus; 3] = [
        ApplicationStatus::Applied,
        ApplicationStatus::Cancelled,
        ApplicationStatus::Cleared,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::Applied => "applied",
            ApplicationStatus::Cancelled => "cancelled",
            ApplicationStatus::Cleared => "cleared",
        }
    }

    fn parse(text: &str) -> Option<ApplicationStatus> {
        ApplicationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    fn wire(self) -> pb::ClearingApplicationStatus {
        match self {
            ApplicationStatus::Applied => pb::ClearingApplicationStatus::Applied,
            ApplicationStatus::Cancelled => pb::ClearingApplicationStatus::Cancelled,
            ApplicationStatus::Cleared => pb::ClearingApplicationStatus::Cleared,
        }
    }
}

/// Whether a city has confirmed its statement of a closed period: its `clearing_statements`
/// row's status, stored as its word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatementStatus {
    /// Issued by the close, not yet confirmed.
    Issued,
    /// Confirmed by the city's bureau.
    Confirmed,
}

impl StatementStatus {
    const ALL: [StatementStatus; 2] = [StatementStatus::Issued, StatementStatus::Confirmed];

    fn as_str(self) -> &'static str {
        match self {
            StatementStatus::Issued => "issued",
            StatementStatus::Confirmed => "confirmed",
        }
    }

    fn parse(text: &str) -> Option<StatementStatus> {
        StatementStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// The enum value of a word read from `column`; a word none of the enum's is a corrupt store.
fn stored<T>(text: &str, column: &str, parse: fn(&str) -> Option<T>) -> Result<T, LedgerError> {
    parse(text).ok_or_else(|| LedgerError::Corrupt(format!("{column} {text:?}")))
}

/// Which details a listing asks for, by their confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    Unconfirmed,
    Decided(Decision),
}

fn refused(reason: &'static str, message: String) -> LedgerError {
    LedgerError::Refused { reason, message }
}

fn city(text: &str, field: &str) -> Result<PoolCode, Invalid> {
    PoolCode::parse(text).map_err(|invalid| invalid.at(field))
}

fn operator(text: &str) -> Result<String, Invalid> {
    if text.is_empty() || text.chars().count() > IDENTIFIER_CHARS_MAX {
        return Err(Invalid::new(
            "operator_id",
            format!("must be 1 to {IDENTIFIER_CHARS_MAX} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn reason(text: &str, field: &str) -> Result<String, Invalid> {
    if text.is_empty() || text.chars().count() > REASON_CHARS_MAX {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {REASON_CHARS_MAX} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn yuan(fen: i64) -> String {
    Amount::from_fen(fen).to_string()
}

use yitong_rpc::timestamp_of_ms as timestamp;

/// A clearing detail as read: the journal's row and its decision, if any.
#[derive(Clone, Debug)]
struct Detail {
    sequence: i64,
    transfer_id: String,
    settlement_id: String,
    visit_id: String,
    person_no: String,
    insured_city: String,
    treatment_city: String,
    institution_code: String,
    settlement_date: String,
    total_fen: i64,
    fund_fen: i64,
    account_fen: i64,
    cancellation: bool,
    original_settlement_id: String,
    clearing_period: Period,
    /// `None` while unconfirmed.
    status: Option<Decision>,
    reason: String,
    confirmed_at_ms: i64,
    confirmed_by: String,
    /// national clr_type.
    clearing_type: i64,
    /// national insutype, which names the pooling fund of a row without a breakdown.
    insurance_type: i64,
    /// The stored fund breakdown ([`crate::transfer::fund_payments_text`]).
    fund_payments: String,
}

const DETAIL_COLUMNS: &str = "c.sequence, c.transfer_id, c.settlement_id, c.visit_id, \
     c.person_no, c.insured_city, c.treatment_city, c.institution_code, c.settlement_date, \
     c.total_amount_fen, c.fund_pay_fen, c.account_pay_fen, c.cancellation, \
     c.original_settlement_id, c.clearing_period, f.status, COALESCE(f.reason, ''), \
     COALESCE(f.confirmed_at_ms, 0), COALESCE(f.confirmed_by, ''), c.clearing_type, \
     c.insurance_type, c.fund_payments";

impl Detail {
    fn from_row(row: &AnyRow) -> Result<Detail, LedgerError> {
        let cancellation: i64 = row.try_get(12)?;
        let status: Option<String> = row.try_get(15)?;
        Ok(Detail {
            sequence: row.try_get(0)?,
            transfer_id: row.try_get(1)?,
            settlement_id: row.try_get(2)?,
            visit_id: row.try_get(3)?,
            person_no: row.try_get(4)?,
            insured_city: row.try_get(5)?,
            treatment_city: row.try_get(6)?,
            institution_code: row.try_get(7)?,
            settlement_date: row.try_get(8)?,
            total_fen: row.try_get(9)?,
            fund_fen: row.try_get(10)?,
            account_fen: row.try_get(11)?,
            cancellation: cancellation != 0,
            original_settlement_id: row.try_get(13)?,
            clearing_period: Period::stored(&row.try_get::<String, _>(14)?)?,
            status: status
                .map(|word| stored(&word, "clearing_confirmations.status", Decision::parse))
                .transpose()?,
            reason: row.try_get(16)?,
            confirmed_at_ms: row.try_get(17)?,
            confirmed_by: row.try_get(18)?,
            clearing_type: row.try_get(19)?,
            insurance_type: row.try_get(20)?,
            fund_payments: row.try_get(21)?,
        })
    }

    /// A late row booked into a later period than its own month's.
    fn adjustment(&self) -> bool {
        self.settlement_date
            .get(..7)
            .and_then(Period::parse)
            .is_none_or(|month| self.clearing_period > month)
    }

    fn to_wire(&self, period: Period) -> Result<pb::ClearingDetail, LedgerError> {
        let stored = parse_fund_payments_text(&self.fund_payments).ok_or_else(|| {
            LedgerError::Corrupt(format!("the fund breakdown of {}", self.settlement_id))
        })?;
        let fund_payments = itemised(
            &stored,
            self.insurance_type,
            Amount::from_fen(self.fund_fen),
        )
        .into_iter()
        .map(|line| pb::SettlementFundPayment {
            fund_pay_type: line.fund_pay_type,
            disease_code: line.disease_code,
            amount: line.amount.to_string(),
        })
        .collect();
        let confirmation = self
            .status
            .map_or(pb::ConfirmationStatus::Unconfirmed, Decision::wire);
        Ok(pb::ClearingDetail {
            settlement_id: self.settlement_id.clone(),
            visit_id: self.visit_id.clone(),
            person_no: self.person_no.clone(),
            insured_city: self.insured_city.clone(),
            treatment_city: self.treatment_city.clone(),
            institution_code: self.institution_code.clone(),
            settlement_date: self.settlement_date.clone(),
            total_amount: yuan(self.total_fen),
            insured_city_pay: yuan(self.fund_fen + self.account_fen),
            fund_pay: yuan(self.fund_fen),
            account_pay: yuan(self.account_fen),
            cancellation: self.cancellation,
            original_settlement_id: self.original_settlement_id.clone(),
            adjustment: self.adjustment(),
            carried_over: self.clearing_period != period,
            confirmation: confirmation as i32,
            exclusion_reason: if self.status == Some(Decision::Excluded) {
                self.reason.clone()
            } else {
                String::new()
            },
            confirmed_at: self
                .status
                .is_some()
                .then(|| timestamp(self.confirmed_at_ms)),
            confirmed_by: self.confirmed_by.clone(),
            clearing_type: i32::try_from(self.clearing_type).unwrap_or_default(),
            fund_payments,
        })
    }
}

/// Which details to read.
struct Selection<'a> {
    period: Period,
    treatment: &'a str,
    insured: Option<&'a str>,
    /// `None` for all.
    confirmation: Option<Wanted>,
    /// Only these settlement ids; all when empty.
    settlement_ids: &'a [&'a str],
}

impl Selection<'_> {
    /// A WITH clause (or nothing), then FROM and WHERE over journal creations `c` joined to
    /// their decision `f`, with the binds: `format!("{with}SELECT ... {body}")`.
    fn sql_body(&self) -> (String, String, Vec<String>) {
        let mut binds = vec![
            self.period.to_string(),
            self.treatment.to_owned(),
            self.period.next().to_string(),
        ];
        let mut with = String::new();
        let mut source = "journal";
        if !self.settlement_ids.is_empty() {
            // The named rows first, fenced off, so that the planner never prefers to walk the
            // whole city's month and filter it.
            let first = binds.len() + 1;
            binds.extend(self.settlement_ids.iter().map(|id| (*id).to_owned()));
            let placeholders: Vec<String> =
                (first..=binds.len()).map(|n| format!("${n}")).collect();
            with = format!(
                "WITH named AS MATERIALIZED (SELECT * FROM journal \
                 WHERE stage = 0 AND settlement_id IN ({})) ",
                placeholders.join(", ")
            );
            source = "named";
        }
        let posted = repo::posted(None);
        let mut sql = format!(
            "FROM {source} c LEFT JOIN clearing_confirmations f \
             ON f.period = $1 AND f.transfer_id = c.transfer_id \
             {RESOLUTION_JOIN} \
             WHERE c.stage = 0 AND c.code IN (3, 4) AND c.treatment_city = $2 \
             AND c.insured_city <> $2 AND {posted} \
             AND (c.clearing_period = $1 OR EXISTS (SELECT 1 FROM clearing_carryovers co \
                  WHERE co.transfer_id = c.transfer_id AND co.period = $1)) \
             AND (f.transfer_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM clearing_carryovers o \
                  WHERE o.transfer_id = c.transfer_id AND o.period = $3))"
        );
        if let Some(insured) = self.insured {
            binds.push(insured.to_owned());
            sql.push_str(&format!(" AND c.insured_city = ${}", binds.len()));
        }
        match self.confirmation {
            Some(Wanted::Unconfirmed) => sql.push_str(" AND f.transfer_id IS NULL"),
            Some(Wanted::Decided(decision)) => {
                binds.push(decision.as_str().to_owned());
                sql.push_str(&format!(" AND f.status = ${}", binds.len()));
            }
            None => {}
        }
        (with, sql, binds)
    }

    /// A page after `after` (settlement id, sequence) in byte order of settlement id.
    async fn page(
        &self,
        conn: &mut AnyConnection,
        after: &(String, i64),
        limit: i64,
    ) -> Result<Vec<Detail>, LedgerError> {
        let (with, body, mut binds) = self.sql_body();
        binds.push(after.0.clone());
        let id = binds.len();
        // "binary" is byte order on both databases (see crates/yitong-store).
        let sql = format!(
            "{with}SELECT {DETAIL_COLUMNS} {body} \
             AND (c.settlement_id COLLATE \"binary\", c.sequence) > (${id}, ${}) \
             ORDER BY c.settlement_id COLLATE \"binary\", c.sequence LIMIT ${}",
            id + 1,
            id + 2
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query
            .bind(after.1)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(Detail::from_row).collect()
    }
}

/// Page tokens of ListClearingDetails: the last row's settlement id and sequence.
fn page_token(detail: &Detail) -> String {
    format!("{}:{}", detail.sequence, detail.settlement_id)
}

fn parse_page_token(token: &str) -> Result<(String, i64), Invalid> {
    if token.is_empty() {
        // Every settlement id is above the empty text.
        return Ok((String::new(), i64::MAX));
    }
    token
        .split_once(':')
        .and_then(|(sequence, id)| Some((id.to_owned(), sequence.parse().ok()?)))
        .ok_or_else(|| Invalid::new("page_token", "must be a next_page_token of this listing"))
}

/// ListClearingDetails (3260).
pub(crate) async fn list_details(
    conn: &mut AnyConnection,
    request: &pb::ListClearingDetailsRequest,
) -> Result<pb::ListClearingDetailsResponse, LedgerError> {
    let period = Period::from_wire(request.period.as_ref())?;
    let treatment = city(&request.treatment_city, "treatment_city")?.to_string();
    let insured = match request.insured_city.as_str() {
        "" => None,
        text => Some(city(text, "insured_city")?.to_string()),
    };
    let confirmation = match pb::ConfirmationStatus::try_from(request.confirmation) {
        Ok(pb::ConfirmationStatus::Unspecified) => None,
        Ok(pb::ConfirmationStatus::Unconfirmed) => Some(Wanted::Unconfirmed),
        Ok(pb::ConfirmationStatus::Included) => Some(Wanted::Decided(Decision::Included)),
        Ok(pb::ConfirmationStatus::Excluded) => Some(Wanted::Decided(Decision::Excluded)),
        Err(_) => return Err(Invalid::new("confirmation", "is not a ConfirmationStatus").into()),
    };
    if request.page_size == 0 || request.page_size > DETAILS_PER_PAGE_MAX {
        return Err(
            Invalid::new("page_size", format!("must be 1 to {DETAILS_PER_PAGE_MAX}")).into(),
        );
    }
    let after = parse_page_token(&request.page_token)?;
    let selection = Selection {
        period,
        treatment: &treatment,
        insured: insured.as_deref(),
        confirmation,
        settlement_ids: &[],
    };
    let tally = tally::read(conn, period, &treatment, insured.as_deref()).await?;
    let total_rows = match confirmation {
        None => tally.details,
        Some(Wanted::Unconfirmed) => tally.unconfirmed(),
        Some(Wanted::Decided(Decision::Included)) => tally.included,
        Some(Wanted::Decided(Decision::Excluded)) => tally.excluded,
    };
    let total_rows = u64::try_from(total_rows).expect("a tally is not negative");
    // One row more than the page tells whether another page follows.
    let limit = i64::from(request.page_size);
    let mut rows = selection.page(conn, &after, limit + 1).await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(request.page_size).expect("a page size fits"));
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => page_token(last),
        _ => String::new(),
    };
    Ok(pb::ListClearingDetailsResponse {
        details: rows
            .iter()
            .map(|row| row.to_wire(period))
            .collect::<Result<_, _>>()?,
        next_page_token,
        total_rows,
    })
}

/// The applied application of a city for a period, if any: its id.
async fn applied(
    conn: &mut AnyConnection,
    period: Period,
    treatment: &str,
) -> Result<Option<String>, LedgerError> {
    Ok(sqlx::query_scalar(
        "SELECT application_id FROM clearing_applications \
         WHERE period = $1 AND treatment_city = $2 AND status = $3",
    )
    .bind(period.to_string())
    .bind(treatment)
    .bind(ApplicationStatus::Applied.as_str())
    .fetch_optional(&mut *conn)
    .await?)
}

/// Refuses a change to a city's confirmations once it has applied or the period has closed.
async fn confirmations_open(
    conn: &mut AnyConnection,
    period: Period,
    treatment: &str,
) -> Result<(), LedgerError> {
    if is_closed(conn, period).await? {
        return Err(refused(
            "PERIOD_CLOSED",
            format!("clearing period {period} is closed"),
        ));
    }
    if let Some(application) = applied(conn, period, treatment).await? {
        return Err(refused(
            "ALREADY_APPLIED",
            format!(
                "city {treatment} has applied for clearing of {period} ({application}): cancel \
                 the application first"
            ),
        ));
    }
    Ok(())
}

/// Rows of a city's period not confirmed yet, from its tallies.
async fn unconfirmed_left(
    conn: &mut AnyConnection,
    period: Period,
    treatment: &str,
) -> Result<u64, LedgerError> {
    let tally = tally::read(conn, period, treatment, None).await?;
    Ok(u64::try_from(tally.unconfirmed()).expect("a tally is not negative"))
}

/// ConfirmClearingDetails (3261), inside the caller's write transaction.
pub(crate) async fn confirm(
    conn: &mut AnyConnection,
    request: &pb::ConfirmClearingDetailsRequest,
) -> Result<pb::ConfirmClearingDetailsResponse, LedgerError> {
    let period = Period::from_wire(request.period.as_ref())?;
    let treatment = city(&request.treatment_city, "treatment_city")?.to_string();
    let operator_id = operator(&request.operator_id)?;
    if request.decisions.is_empty() || request.decisions.len() > DECISIONS_PER_REQUEST_MAX {
        return Err(Invalid::new(
            "decisions",
            format!("must hold 1 to {DECISIONS_PER_REQUEST_MAX} decisions"),
        )
        .into());
    }
    let mut decisions = Vec::with_capacity(request.decisions.len());
    let mut seen = std::collections::HashSet::new();
    for (index, decision) in request.decisions.iter().enumerate() {
        let field = |name: &str| format!("decisions[{index}].{name}");
        if !seen.insert(decision.settlement_id.as_str()) {
            return Err(Invalid::new(field("settlement_id"), "names a row decided twice").into());
        }
        let status = match pb::ConfirmationStatus::try_from(decision.decision) {
            Ok(pb::ConfirmationStatus::Included) if decision.reason.is_empty() => {
                Decision::Included
            }
            Ok(pb::ConfirmationStatus::Included) => {
                return Err(Invalid::new(field("reason"), "must be empty when including").into());
            }
            Ok(pb::ConfirmationStatus::Excluded) => {
                reason(&decision.reason, &field("reason"))?;
                Decision::Excluded
            }
            _ => {
                return Err(Invalid::new(field("decision"), "must be INCLUDED or EXCLUDED").into());
            }
        };
        decisions.push((
            decision.settlement_id.as_str(),
            status,
            decision.reason.as_str(),
        ));
    }
    confirmations_open(conn, period, &treatment).await?;
    // The rows named, read in one query: the first row of each settlement id in journal order.
    let ids: Vec<&str> = decisions.iter().map(|(id, _, _)| *id).collect();
    let selection = Selection {
        period,
        treatment: &treatment,
        insured: None,
        confirmation: None,
        settlement_ids: &ids,
    };
    let mut rows: HashMap<String, Detail> = HashMap::with_capacity(ids.len());
    for row in selection.page(conn, &(String::new(), 0), i64::MAX).await? {
        rows.entry(row.settlement_id.clone()).or_insert(row);
    }
    let now = now_ms();
    let (mut included, mut excluded) = (0, 0);
    let mut new_rows = Vec::with_capacity(decisions.len());
    for (settlement_id, status, reason) in decisions {
        let row = rows.get(settlement_id).ok_or_else(|| {
            LedgerError::RowNotFound(format!(
                "settlement {settlement_id} is not a clearing detail of {treatment} in {period}"
            ))
        })?;
        match row.status {
            None => {}
            Some(same) if same == status => continue,
            Some(_) => {
                return Err(refused(
                    "ALREADY_CONFIRMED",
                    format!(
                        "settlement {settlement_id} is already confirmed otherwise: roll it back first"
                    ),
                ));
            }
        }
        if status == Decision::Included {
            included += 1;
        } else {
            excluded += 1;
        }
        new_rows.push((row, status, reason));
    }
    let mut decided: BTreeMap<tally::Key, Tally> = BTreeMap::new();
    for (row, status, _) in &new_rows {
        let change = decided
            .entry((period, row.treatment_city.clone(), row.insured_city.clone()))
            .or_default();
        if *status == Decision::Included {
            change.included += 1;
        } else {
            change.excluded += 1;
        }
    }
    tally::add(conn, &decided).await?;
    for chunk in new_rows.chunks(CONFIRMATIONS_PER_INSERT) {
        let sql = yitong_store::multi_row_insert(
            "clearing_confirmations (period, transfer_id, settlement_id, treatment_city, \
             insured_city, status, reason, total_amount_fen, fund_pay_fen, account_pay_fen, \
             adjustment, confirmed_at_ms, confirmed_by)",
            13,
            chunk.len(),
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (row, status, reason) in chunk {
            query = query
                .bind(period.to_string())
                .bind(&row.transfer_id)
                .bind(&row.settlement_id)
                .bind(&row.treatment_city)
                .bind(&row.insured_city)
                .bind(status.as_str())
                .bind(*reason)
                .bind(row.total_fen)
                .bind(row.fund_fen)
                .bind(row.account_fen)
                .bind(i64::from(row.adjustment()))
                .bind(now)
                .bind(&operator_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(pb::ConfirmClearingDetailsResponse {
        included,
        excluded,
        unconfirmed_left: unconfirmed_left(conn, period, &treatment).await?,
    })
}

/// RollbackClearingConfirmation (3262), inside the caller's write transaction.
pub(crate) async fn rollback(
    conn: &mut AnyConnection,
    request: &pb::RollbackClearingConfirmationRequest,
) -> Result<pb::RollbackClearingConfirmationResponse, LedgerError> {
    let period = Period::from_wire(request.period.as_ref())?;
    let treatment = city(&request.treatment_city, "treatment_city")?.to_string();
    operator(&request.operator_id)?;
    let reason = reason(&request.reason, "reason")?;
    if request.settlement_ids.len() > DECISIONS_PER_REQUEST_MAX {
        return Err(Invalid::new(
            "settlement_ids",
            format!("must hold at most {DECISIONS_PER_REQUEST_MAX} ids"),
        )
        .into());
    }
    confirmations_open(conn, period, &treatment).await?;
    // What is deleted is counted out of the tallies: by insured city and status.
    let mut condition = "period = $1 AND treatment_city = $2".to_owned();
    if !request.settlement_ids.is_empty() {
        let placeholders: Vec<String> = (3..request.settlement_ids.len() + 3)
            .map(|n| format!("${n}"))
            .collect();
        condition.push_str(&format!(
            " AND settlement_id IN ({})",
            placeholders.join(", ")
        ));
    }
    let binds = || {
        [period.to_string(), treatment.clone()]
            .into_iter()
            .chain(request.settlement_ids.iter().cloned())
    };
    let mut counted = sqlx::query(AssertSqlSafe(format!(
        "SELECT insured_city, status, COUNT(*) FROM clearing_confirmations WHERE {condition} \
         GROUP BY insured_city, status"
    )));
    for value in binds() {
        counted = counted.bind(value);
    }
    let mut undecided: BTreeMap<tally::Key, Tally> = BTreeMap::new();
    let mut rolled_back = 0;
    for row in counted.fetch_all(&mut *conn).await? {
        let (insured, status, count): (String, String, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let change = undecided
            .entry((period, treatment.clone(), insured))
            .or_default();
        match stored(&status, "clearing_confirmations.status", Decision::parse)? {
            Decision::Included => change.included -= count,
            Decision::Excluded => change.excluded -= count,
        }
        rolled_back += count;
    }
    let mut delete = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM clearing_confirmations WHERE {condition}"
    )));
    for value in binds() {
        delete = delete.bind(value);
    }
    let deleted = delete.execute(&mut *conn).await?.rows_affected();
    assert_eq!(
        i64::try_from(deleted).ok(),
        Some(rolled_back),
        "the rows counted are the rows deleted, in one write transaction"
    );
    tally::add(conn, &undecided).await?;
    tracing::info!(period = %period, treatment_city = %treatment, rolled_back, reason = %reason, "clearing confirmations rolled back");
    Ok(pb::RollbackClearingConfirmationResponse {
        rolled_back: u32::try_from(rolled_back).expect("at most a month of rows"),
        unconfirmed_left: unconfirmed_left(conn, period, &treatment).await?,
    })
}

/// Totals of a set of clearing details, in fen.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Sums {
    count: u64,
    total_fen: i64,
    fund_fen: i64,
    account_fen: i64,
}

impl Sums {
    fn to_wire(self) -> pb::ClearingTotals {
        pb::ClearingTotals {
            count: self.count,
            total_amount: yuan(self.total_fen),
            insured_city_pay: yuan(self.fund_fen + self.account_fen),
            fund_pay: yuan(self.fund_fen),
            account_pay: yuan(self.account_fen),
        }
    }

    fn parse(totals: Option<&pb::ClearingTotals>) -> Result<Sums, Invalid> {
        let totals = totals.ok_or_else(|| Invalid::new("totals", "is required"))?;
        let amount = |text: &str, field: &str| {
            Amount::parse_signed(text)
                .map(Amount::fen)
                .map_err(|invalid| invalid.at(format!("totals.{field}")))
        };
        let sums = Sums {
            count: totals.count,
            total_fen: amount(&totals.total_amount, "total_amount")?,
            fund_fen: amount(&totals.fund_pay, "fund_pay")?,
            account_fen: amount(&totals.account_pay, "account_pay")?,
        };
        if amount(&totals.insured_city_pay, "insured_city_pay")? != sums.fund_fen + sums.account_fen
        {
            return Err(Invalid::new(
                "totals.insured_city_pay",
                "must equal fund_pay plus account_pay",
            ));
        }
        Ok(sums)
    }
}

/// The included rows' sums of a city's period.
async fn included_sums(
    conn: &mut AnyConnection,
    period: Period,
    treatment: &str,
) -> Result<Sums, LedgerError> {
    let row = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(total_amount_fen), 0) AS BIGINT), \
         CAST(COALESCE(SUM(fund_pay_fen), 0) AS BIGINT), \
         CAST(COALESCE(SUM(account_pay_fen), 0) AS BIGINT) \
         FROM clearing_confirmations WHERE period = $1 AND treatment_city = $2 AND status = $3",
    )
    .bind(period.to_string())
    .bind(treatment)
    .bind(Decision::Included.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let count: i64 = row.try_get(0)?;
    Ok(Sums {
        count: u64::try_from(count).expect("a count is not negative"),
        total_fen: row.try_get(1)?,
        fund_fen: row.try_get(2)?,
        account_fen: row.try_get(3)?,
    })
}

const APPLICATION_COLUMNS: &str = "application_id, period, treatment_city, status, row_count, \
     total_amount_fen, fund_pay_fen, account_pay_fen, applied_at_ms, cancelled_at_ms, operator_id";

async fn application(
    conn: &mut AnyConnection,
    application_id: &str,
) -> Result<Option<pb::ClearingApplication>, LedgerError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {APPLICATION_COLUMNS} FROM clearing_applications WHERE application_id = $1"
    )))
    .bind(application_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let period: String = row.try_get(1)?;
    let count: i64 = row.try_get(4)?;
    let cancelled_at_ms: i64 = row.try_get(9)?;
    let sums = Sums {
        count: u64::try_from(count).unwrap_or_default(),
        total_fen: row.try_get(5)?,
        fund_fen: row.try_get(6)?,
        account_fen: row.try_get(7)?,
    };
    Ok(Some(pb::ClearingApplication {
        application_id: row.try_get(0)?,
        period: Some(Period::stored(&period)?.to_wire()),
        treatment_city: row.try_get(2)?,
        status: stored(
            &row.try_get::<String, _>(3)?,
            "clearing_applications.status",
            ApplicationStatus::parse,
        )?
        .wire() as i32,
        totals: Some(sums.to_wire()),
        applied_at: Some(timestamp(row.try_get(8)?)),
        cancelled_at: (cancelled_at_ms != 0).then(|| timestamp(cancelled_at_ms)),
        operator_id: row.try_get(10)?,
    }))
}

/// ApplyClearing (3203), inside the caller's write transaction.
pub(crate) async fn apply(
    conn: &mut AnyConnection,
    request: &pb::ApplyClearingRequest,
) -> Result<pb::ApplyClearingResponse, LedgerError> {
    let period = Period::from_wire(request.period.as_ref())?;
    let treatment = city(&request.treatment_city, "treatment_city")?.to_string();
    let operator_id = operator(&request.operator_id)?;
    let stated = Sums::parse(request.totals.as_ref())?;
    if !period.ended() {
        return Err(refused(
            "PERIOD_NOT_ENDED",
            format!("clearing period {period} has not ended"),
        ));
    }
    confirmations_open(conn, period, &treatment).await?;
    let left = unconfirmed_left(conn, period, &treatment).await?;
    if left > 0 {
        return Err(refused(
            "UNCONFIRMED_ROWS",
            format!("{left} rows of {treatment} in {period} are unconfirmed"),
        ));
    }
    let ledger = included_sums(conn, period, &treatment).await?;
    if ledger != stated {
        return Err(refused(
            "TOTALS_MISMATCH",
            format!("the stated totals {stated:?} differ from the ledger's {ledger:?}"),
        ));
    }
    let serial: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM clearing_applications WHERE period = $1 AND treatment_city = $2",
    )
    .bind(period.to_string())
    .bind(&treatment)
    .fetch_one(&mut *conn)
    .await?;
    let application_id = format!(
        "CA{}{treatment}{:03}",
        period.to_string().replace('-', ""),
        serial + 1
    );
    let count = i64::try_from(ledger.count).expect("a count fits");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO clearing_applications ({APPLICATION_COLUMNS}, cancel_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, '')"
    )))
    .bind(&application_id)
    .bind(period.to_string())
    .bind(&treatment)
    .bind(ApplicationStatus::Applied.as_str())
    .bind(count)
    .bind(ledger.total_fen)
    .bind(ledger.fund_fen)
    .bind(ledger.account_fen)
    .bind(now_ms())
    .bind(&operator_id)
    .execute(&mut *conn)
    .await?;
    Ok(pb::ApplyClearingResponse {
        application: application(conn, &application_id).await?,
    })
}

/// CancelClearingApplication (3204), inside the caller's write transaction.
pub(crate) async fn cancel_application(
    conn: &mut AnyConnection,
    request: &pb::CancelClearingApplicationRequest,
) -> Result<pb::CancelClearingApplicationResponse, LedgerError> {
    operator(&request.operator_id)?;
    let reason = reason(&request.reason, "reason")?;
    if request.application_id.is_empty() || request.application_id.len() > IDENTIFIER_CHARS_MAX {
        return Err(Invalid::new("application_id", "must name an application").into());
    }
    let found = application(conn, &request.application_id)
        .await?
        .ok_or_else(|| {
            LedgerError::RowNotFound(format!(
                "no clearing application {}",
                request.application_id
            ))
        })?;
    let period = Period::from_wire(found.period.as_ref())?;
    if is_closed(conn, period).await? {
        return Err(refused(
            "PERIOD_CLOSED",
            format!("clearing period {period} is closed"),
        ));
    }
    if found.status != ApplicationStatus::Applied.wire() as i32 {
        return Err(refused(
            "NOT_APPLIED",
            format!("application {} is not applied", request.application_id),
        ));
    }
    sqlx::query(
        "UPDATE clearing_applications SET status = $1, cancelled_at_ms = $2, cancel_reason = $3 \
         WHERE application_id = $4",
    )
    .bind(ApplicationStatus::Cancelled.as_str())
    .bind(now_ms())
    .bind(&reason)
    .bind(&request.application_id)
    .execute(&mut *conn)
    .await?;
    Ok(pb::CancelClearingApplicationResponse {
        application: application(conn, &request.application_id).await?,
    })
}

/// One ordered pair's gross obligation, in fen.
#[derive(Clone, Debug, Default)]
struct Gross {
    count: u64,
    fund_fen: i64,
    account_fen: i64,
    adjustments_fen: i64,
    /// The included rows by clearing type and fund type; empty for excluded rows.
    lines: Breakdown,
}

impl Gross {
    fn amount_fen(&self) -> i64 {
        self.fund_fen + self.account_fen
    }

    fn to_wire(&self, insured: &str, treatment: &str) -> pb::CityPairObligation {
        pb::CityPairObligation {
            insured_city: insured.to_owned(),
            treatment_city: treatment.to_owned(),
            count: self.count,
            fund_pay: yuan(self.fund_fen),
            account_pay: yuan(self.account_fen),
            adjustments: yuan(self.adjustments_fen),
            amount: yuan(self.amount_fen()),
            clearing_types: self.lines.clearing_wire(),
            fund_types: self.lines.funds_wire(),
        }
    }
}

/// The fewest payments that settle `nets` (city, net in fen; they sum to zero): net debtors and
/// net creditors, each largest first, matched greedily. Each payment closes at least one of the
/// two positions it touches, so there are at most one fewer than the non-zero positions.
pub(crate) fn payments(nets: &[(String, i64)]) -> Vec<(String, String, i64)> {
    assert_eq!(
        nets.iter().map(|(_, net)| net).sum::<i64>(),
        0,
        "net positions sum to zero"
    );
    let mut debtors: Vec<(String, i64)> = nets
        .iter()
        .filter(|(_, net)| *net < 0)
        .map(|(city, net)| (city.clone(), -net))
        .collect();
    let mut creditors: Vec<(String, i64)> =
        nets.iter().filter(|(_, net)| *net > 0).cloned().collect();
    debtors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    creditors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let positions = debtors.len() + creditors.len();
    let (mut d, mut c) = (0, 0);
    let mut payments = Vec::new();
    while d < debtors.len() && c < creditors.len() {
        let amount = debtors[d].1.min(creditors[c].1);
        payments.push((debtors[d].0.clone(), creditors[c].0.clone(), amount));
        debtors[d].1 -= amount;
        creditors[c].1 -= amount;
        if debtors[d].1 == 0 {
            d += 1;
        }
        if creditors[c].1 == 0 {
            c += 1;
        }
    }
    assert!(
        d == debtors.len() && c == creditors.len(),
        "every position settled"
    );
    assert!(payments.len() < positions.max(1), "at most n - 1 payments");
    payments
}

/// A CLEARING_* transfer of the close, posted.
fn clearing_transfer(
    code: TransferCode,
    debit: String,
    credit: String,
    amount_fen: i64,
    now: i64,
    operator_id: &str,
) -> TransferColumns {
    assert!(amount_fen > 0, "clearing transfers move an amount");
    TransferColumns {
        transfer_id: uuid::Uuid::now_v7().hyphenated().to_string(),
        debit_account_id: debit,
        credit_account_id: credit,
        amount_fen,
        code: code as i64,
        operator_id: operator_id.to_owned(),
        business_date: crate::period::china_date(now).to_string(),
        created_at_ms: now,
        ..TransferColumns::default()
    }
}

/// The balances of `accounts` as this transaction sees them, every entry flushed so far
/// included; an account never moved or not open reads as zero.
async fn balances_now(
    conn: &mut AnyConnection,
    accounts: &[String],
) -> Result<HashMap<String, Balance>, LedgerError> {
    let (stored, _) = repo::balances(conn, accounts).await?;
    Ok(accounts
        .iter()
        .map(|id| (id.clone(), stored.get(id).copied().unwrap_or_default()))
        .collect())
}

/// CloseClearingPeriod, inside the caller's write transaction, appending the clearing transfers
/// through `appender`. `cities` are the enabled cities, each with its prepaid fund's low-balance
/// threshold in fen, from which each statement's top-up due is computed.
///
/// The close runs in named steps, one function each, in this order:
///
/// 1. [`close_step_check`]: the month is over, not closed yet, and every city with rows in it
///    has applied;
/// 2. [`close_step_sum`]: the included and the excluded rows' sums per ordered pair, in one
///    pass over the period's confirmations;
/// 3. [`close_step_net`]: every enabled city's net position and the payment instructions that
///    settle them (at most one fewer than the positions);
/// 4. [`close_step_book`]: the CLEARING_* transfers, posted, in one journal append, with the
///    funds' balances before and after;
/// 5. [`close_step_state`]: every city's statement, written;
/// 6. [`close_step_carry`]: the rows the period did not clear carried into the next one, with
///    their tallies;
/// 7. [`close_step_freeze`]: the applications cleared and the period frozen.
pub(crate) async fn close(
    appender: &mut Appender<'_>,
    cities: &[(PoolCode, i64)],
    request: &pb::CloseClearingPeriodRequest,
    message_id: &str,
) -> Result<pb::CloseClearingPeriodResponse, LedgerError> {
    let period = Period::from_wire(request.period.as_ref())?;
    let operator_id = operator(&request.operator_id)?;
    let names: Vec<String> = cities.iter().map(|(city, _)| city.to_string()).collect();
    close_step_check(appender.conn(), period, &names).await?;
    let sums = close_step_sum(appender.conn(), period).await?;
    let nets = close_step_net(&names, &sums.included);
    let booked = close_step_book(appender, &names, &sums, &nets, &operator_id, message_id).await?;
    let conn = appender.conn();
    let statements = close_step_state(conn, period, cities, &sums, &nets, &booked).await?;
    close_step_carry(conn, period).await?;
    close_step_freeze(conn, period, booked.now_ms, &operator_id).await?;
    Ok(pb::CloseClearingPeriodResponse {
        period: Some(period.to_wire()),
        obligations: sums.included_wire(),
        net_positions: nets.positions_wire(),
        payment_instructions: nets.instructions_wire(),
        statements,
        closed_at: Some(timestamp(booked.now_ms)),
        journal_head_hash: String::new(),
    })
}

/// Step 1: refuses a month not over, a month closed, and a month in which a city has rows but
/// no application.
async fn close_step_check(
    conn: &mut AnyConnection,
    period: Period,
    names: &[String],
) -> Result<(), LedgerError> {
    if !period.ended() {
        return Err(refused(
            "PERIOD_NOT_ENDED",
            format!("clearing period {period} has not ended"),
        ));
    }
    if is_closed(conn, period).await? {
        return Err(refused(
            "PERIOD_CLOSED",
            format!("clearing period {period} is closed"),
        ));
    }
    for treatment in names {
        let rows = tally::read(conn, period, treatment, None).await?;
        if rows.details > 0 && applied(conn, period, treatment).await?.is_none() {
            return Err(refused(
                "NOT_APPLIED",
                format!("city {treatment} has rows in {period} but no application"),
            ));
        }
    }
    Ok(())
}

/// The period's confirmed rows summed per ordered pair (insured city, treatment city).
struct PairSums {
    /// The included rows: each pair's gross obligation.
    included: BTreeMap<(String, String), Gross>,
    /// The excluded rows, which the next period carries.
    excluded: BTreeMap<(String, String), Gross>,
}

impl PairSums {
    fn included_wire(&self) -> Vec<pb::CityPairObligation> {
        self.included
            .iter()
            .map(|((insured, treatment), pair)| pair.to_wire(insured, treatment))
            .collect()
    }
}

/// Step 2: gross obligations of the included rows, and the excluded rows' count and amount,
/// per ordered pair, in one pass over the period's confirmations.
async fn close_step_sum(conn: &mut AnyConnection, period: Period) -> Result<PairSums, LedgerError> {
    let rows = sqlx::query(
        "SELECT insured_city, treatment_city, status, COUNT(*), \
         CAST(COALESCE(SUM(fund_pay_fen), 0) AS BIGINT), \
         CAST(COALESCE(SUM(account_pay_fen), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN adjustment = 1 THEN fund_pay_fen + account_pay_fen ELSE 0 END), 0) AS BIGINT) \
         FROM clearing_confirmations WHERE period = $1 \
         GROUP BY insured_city, treatment_city, status",
    )
    .bind(period.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut sums = PairSums {
        included: BTreeMap::new(),
        excluded: BTreeMap::new(),
    };
    for row in rows {
        let status: String = row.try_get(2)?;
        let count: i64 = row.try_get(3)?;
        let gross = Gross {
            count: u64::try_from(count).expect("a count is not negative"),
            fund_fen: row.try_get(4)?,
            account_fen: row.try_get(5)?,
            adjustments_fen: row.try_get(6)?,
            lines: Breakdown::default(),
        };
        let pair = (row.try_get(0)?, row.try_get(1)?);
        match stored(&status, "clearing_confirmations.status", Decision::parse)? {
            Decision::Included => sums.included.insert(pair, gross),
            Decision::Excluded => sums.excluded.insert(pair, gross),
        };
    }
    close_step_sum_lines(conn, period, &mut sums.included).await?;
    Ok(sums)
}

/// Step 2, continued: the included rows of each pair by clearing type and by fund type (see
/// [`crate::breakdown`]), read from their journal entries, each pair's lines checked to sum to
/// its obligation's count, fund pay and account pay. The net positions do not read them.
async fn close_step_sum_lines(
    conn: &mut AnyConnection,
    period: Period,
    included: &mut BTreeMap<(String, String), Gross>,
) -> Result<(), LedgerError> {
    use tokio_stream::StreamExt;
    let from = "FROM clearing_confirmations f JOIN journal c \
         ON c.transfer_id = f.transfer_id AND c.stage = 0 \
         WHERE f.period = $1 AND f.status = $2";
    let sum = |column: &str| format!("CAST(COALESCE(SUM(c.{column}), 0) AS BIGINT)");
    let unsummed = |pair: &(String, String)| {
        LedgerError::Corrupt(format!("the included rows of {pair:?} were not summed"))
    };
    let sql = format!(
        "SELECT f.insured_city, f.treatment_city, c.clearing_type, COUNT(*), {}, {}, {}, {} \
         {from} GROUP BY f.insured_city, f.treatment_city, c.clearing_type",
        sum("total_amount_fen"),
        sum("fund_pay_fen"),
        sum("account_pay_fen"),
        sum("cash_pay_fen"),
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(period.to_string())
        .bind(Decision::Included.as_str())
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let pair: (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let gross = included.get_mut(&pair).ok_or_else(|| unsummed(&pair))?;
        gross
            .lines
            .clearing
            .insert(row.try_get(2)?, Totals::of_row(&row, 3)?);
    }
    // Streamed: ordinary rows fold into one group per pair and insurance type, the rows of a
    // chronic disease's quota into one per distinct breakdown.
    let sql = format!(
        "SELECT f.insured_city, f.treatment_city, c.insurance_type, c.fund_payments, COUNT(*), \
         {} {from} GROUP BY f.insured_city, f.treatment_city, c.insurance_type, c.fund_payments",
        sum("fund_pay_fen"),
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(period.to_string())
        .bind(Decision::Included.as_str());
    let mut rows = query.fetch(&mut *conn);
    while let Some(row) = rows.next().await {
        let row = row?;
        let pair: (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let gross = included.get_mut(&pair).ok_or_else(|| unsummed(&pair))?;
        gross.lines.add_fund_group(
            row.try_get(2)?,
            &row.try_get::<String, _>(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
        )?;
    }
    drop(rows);
    for (pair, gross) in included.iter_mut() {
        gross.lines = std::mem::take(&mut gross.lines).settled();
        let lines = gross
            .lines
            .clearing
            .values()
            .fold(Totals::default(), |sum, line| sum.plus(line));
        let agrees = lines.count == gross.count
            && lines.fund_fen == gross.fund_fen
            && lines.account_fen == gross.account_fen
            && gross.lines.funds.values().sum::<i64>() == gross.fund_fen;
        if !agrees {
            return Err(LedgerError::Corrupt(format!(
                "the included rows of {pair:?} by clearing and fund type do not sum to the pair's obligation"
            )));
        }
    }
    Ok(())
}

/// Every enabled city's position and the payments that settle them.
struct Nets {
    /// (city, receivable fen, payable fen), in the order of the enabled cities.
    positions: Vec<(String, i64, i64)>,
    /// (payer, payee, fen).
    instructions: Vec<(String, String, i64)>,
}

impl Nets {
    fn positions_wire(&self) -> Vec<pb::NetPosition> {
        self.positions
            .iter()
            .map(|(city, receivable, payable)| pb::NetPosition {
                city: city.clone(),
                receivable: yuan(*receivable),
                payable: yuan(*payable),
                net: yuan(receivable - payable),
            })
            .collect()
    }

    fn instructions_wire(&self) -> Vec<pb::PaymentInstruction> {
        self.instructions
            .iter()
            .map(|(payer, payee, amount)| pb::PaymentInstruction {
                payer_city: payer.clone(),
                payee_city: payee.clone(),
                amount: yuan(*amount),
            })
            .collect()
    }
}

/// Step 3: the net position of every enabled city (what it is owed as treatment city less
/// what it owes as insured city; they sum to zero, asserted) and the payment instructions.
fn close_step_net(names: &[String], included: &BTreeMap<(String, String), Gross>) -> Nets {
    let mut positions: Vec<(String, i64, i64)> = names.iter().map(|c| (c.clone(), 0, 0)).collect();
    for ((insured, treatment), pair) in included {
        for (city, receivable, payable) in positions.iter_mut() {
            if city == treatment {
                *receivable += pair.amount_fen();
            }
            if city == insured {
                *payable += pair.amount_fen();
            }
        }
    }
    let net_list: Vec<(String, i64)> = positions
        .iter()
        .map(|(city, receivable, payable)| (city.clone(), receivable - payable))
        .collect();
    assert_eq!(
        net_list.iter().map(|(_, net)| net).sum::<i64>(),
        0,
        "net positions sum to zero"
    );
    Nets {
        instructions: payments(&net_list),
        positions,
    }
}

/// What the booking step leaves for the statements.
struct Booked {
    /// The instant of the close: every clearing transfer's, the statements' and the period's.
    now_ms: i64,
    /// `<city>.fund` of every enabled city, in their order.
    funds: Vec<String>,
    /// The funds' balances before the clearing transfers and after them.
    before: HashMap<String, Balance>,
    after: HashMap<String, Balance>,
}

/// Step 4: for each pair, CLEARING_OBLIGATION (the obligation discharged against the treatment
/// city's advances) and CLEARING_FUNDS (insured fund to treatment fund); for each payment
/// instruction a CLEARING_PAYMENT (payee's fund to payer's); all posted, in one journal append
/// through `appender`, between two reads of the funds' balances.
async fn close_step_book(
    appender: &mut Appender<'_>,
    names: &[String],
    sums: &PairSums,
    nets: &Nets,
    operator_id: &str,
    message_id: &str,
) -> Result<Booked, LedgerError> {
    let funds: Vec<String> = names.iter().map(|c| format!("{c}.fund")).collect();
    appender.flush().await?;
    let before = balances_now(appender.conn(), &funds).await?;
    let now = appender.now_ms();
    let mut transfers = Vec::new();
    for ((insured, treatment), pair) in &sums.included {
        let amount = pair.amount_fen();
        let obligation = format!("{insured}->{treatment}.obligation");
        let advances = format!("{treatment}.advances");
        let (insured_fund, treatment_fund) =
            (format!("{insured}.fund"), format!("{treatment}.fund"));
        // A pair whose adjustments outweigh its rows runs the other way.
        let (obligation_pair, funds_pair) = if amount >= 0 {
            ((obligation, advances), (insured_fund, treatment_fund))
        } else {
            ((advances, obligation), (treatment_fund, insured_fund))
        };
        if amount != 0 {
            transfers.push(clearing_transfer(
                TransferCode::ClearingObligation,
                obligation_pair.0,
                obligation_pair.1,
                amount.abs(),
                now,
                operator_id,
            ));
            transfers.push(clearing_transfer(
                TransferCode::ClearingFunds,
                funds_pair.0,
                funds_pair.1,
                amount.abs(),
                now,
                operator_id,
            ));
        }
    }
    for (payer, payee, amount) in &nets.instructions {
        transfers.push(clearing_transfer(
            TransferCode::ClearingPayment,
            format!("{payee}.fund"),
            format!("{payer}.fund"),
            *amount,
            now,
            operator_id,
        ));
    }
    for transfer in transfers {
        appender.append(Event::Created, transfer, message_id, "");
    }
    appender.flush().await?;
    let after = balances_now(appender.conn(), &funds).await?;
    Ok(Booked {
        now_ms: now,
        funds,
        before,
        after,
    })
}

/// Step 5: every enabled city's statement (its receivables, payables, net position, payments,
/// fund before and after, which must be equal (asserted), the top-up its prepaid fund is due,
/// and the rows excluded on either side of it), written as issued.
async fn close_step_state(
    conn: &mut AnyConnection,
    period: Period,
    cities: &[(PoolCode, i64)],
    sums: &PairSums,
    nets: &Nets,
    booked: &Booked,
) -> Result<Vec<pb::ClearingStatement>, LedgerError> {
    let names: Vec<String> = cities.iter().map(|(city, _)| city.to_string()).collect();
    let obligations_wire = sums.included_wire();
    let net_positions = nets.positions_wire();
    let instructions_wire = nets.instructions_wire();
    // Every obligation account's balance after the close.
    let obligation_ids = |name: &String| -> Vec<String> {
        names
            .iter()
            .filter(|other| *other != name)
            .map(|other| format!("{name}->{other}.obligation"))
            .collect()
    };
    let all_obligations: Vec<String> = names.iter().flat_map(obligation_ids).collect();
    let obligations = balances_now(conn, &all_obligations).await?;
    let mut statements = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let fund = &booked.funds[index];
        let fund_before = booked.before[fund].posted(Side::Credit);
        let fund_after = booked.after[fund].posted(Side::Credit);
        assert_eq!(
            fund_before, fund_after,
            "the close leaves every fund where it stood"
        );
        let owed: Vec<Balance> = obligation_ids(name)
            .iter()
            .map(|id| obligations[id])
            .collect();
        let (_, threshold_fen) = cities[index];
        let prepaid = Prepaid::new(&booked.after[fund], &owed, threshold_fen);
        let top_up_due = (prepaid.threshold_fen - prepaid.available_fen()).max(0);
        // The rows excluded on either side of the city: a pair never has it on both.
        let (excluded_count, excluded_fen) = sums
            .excluded
            .iter()
            .filter(|((insured, treatment), _)| insured == name || treatment == name)
            .fold((0, 0), |(count, fen), (_, pair)| {
                (count + pair.count, fen + pair.amount_fen())
            });
        let statement = pb::ClearingStatement {
            city: name.clone(),
            period: Some(period.to_wire()),
            receivables: obligations_wire
                .iter()
                .filter(|o| &o.treatment_city == name)
                .cloned()
                .collect(),
            payables: obligations_wire
                .iter()
                .filter(|o| &o.insured_city == name)
                .cloned()
                .collect(),
            net_position: net_positions.iter().find(|n| &n.city == name).cloned(),
            payments: instructions_wire
                .iter()
                .filter(|p| &p.payer_city == name || &p.payee_city == name)
                .cloned()
                .collect(),
            fund_balance_before: yuan(fund_before),
            fund_balance_after: yuan(fund_after),
            low_balance_threshold: yuan(prepaid.threshold_fen),
            top_up_due: yuan(top_up_due),
            excluded_count,
            excluded_amount: yuan(excluded_fen),
            status: pb::StatementStatus::Issued as i32,
            issued_at: Some(timestamp(booked.now_ms)),
            confirmed_at: None,
            confirmed_by: String::new(),
        };
        sqlx::query(
            "INSERT INTO clearing_statements (period, city, statement, status, confirmed_at_ms, \
             confirmed_by) VALUES ($1, $2, $3, $4, 0, '')",
        )
        .bind(period.to_string())
        .bind(name)
        .bind(hex(&prost::Message::encode_to_vec(&statement)))
        .bind(StatementStatus::Issued.as_str())
        .execute(&mut *conn)
        .await?;
        statements.push(statement);
    }
    Ok(statements)
}

/// Step 6: every live row of the period not included comes back in the next one: the
/// excluded, and those no decision reached because they were still pending or were posted
/// after their city applied. A row is never left behind in a frozen period.
async fn close_step_carry(conn: &mut AnyConnection, period: Period) -> Result<(), LedgerError> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO clearing_carryovers (period, transfer_id) \
         SELECT $1, c.transfer_id FROM journal c \
         WHERE c.stage = 0 AND c.code IN (3, 4) AND c.insured_city <> c.treatment_city \
         AND (c.clearing_period = $2 OR EXISTS (SELECT 1 FROM clearing_carryovers co \
              WHERE co.transfer_id = c.transfer_id AND co.period = $2)) \
         AND NOT EXISTS (SELECT 1 FROM journal r WHERE r.transfer_id = c.transfer_id \
              AND r.stage = 1 AND r.event IN {}) \
         AND NOT EXISTS (SELECT 1 FROM clearing_confirmations f WHERE f.period = $2 \
              AND f.transfer_id = c.transfer_id AND f.status = $3)",
        repo::released()
    )))
    .bind(period.next().to_string())
    .bind(period.to_string())
    .bind(Decision::Included.as_str())
    .execute(&mut *conn)
    .await?;
    carry_tallies(conn, period).await
}

/// Step 7: the applications are cleared and the period is frozen.
async fn close_step_freeze(
    conn: &mut AnyConnection,
    period: Period,
    now_ms: i64,
    operator_id: &str,
) -> Result<(), LedgerError> {
    sqlx::query("UPDATE clearing_applications SET status = $1 WHERE period = $2 AND status = $3")
        .bind(ApplicationStatus::Cleared.as_str())
        .bind(period.to_string())
        .bind(ApplicationStatus::Applied.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO clearing_periods (period, closed_at_ms, operator_id, journal_head_hash) \
         VALUES ($1, $2, $3, '')",
    )
    .bind(period.to_string())
    .bind(now_ms)
    .bind(operator_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the tallies of the rows just carried over out of `period`: the posted ones count in the
/// next period (a pending one counts where it is once posted), and those without a decision
/// here no longer count in `period`.
async fn carry_tallies(conn: &mut AnyConnection, period: Period) -> Result<(), LedgerError> {
    let next = period.next();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT c.treatment_city, c.insured_city, COUNT(*), \
         CAST(COALESCE(SUM(CASE WHEN f.transfer_id IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM clearing_carryovers o JOIN journal c ON c.transfer_id = o.transfer_id AND c.stage = 0 \
         {RESOLUTION_JOIN} \
         LEFT JOIN clearing_confirmations f ON f.period = $2 AND f.transfer_id = c.transfer_id \
         WHERE o.period = $1 AND {} \
         GROUP BY c.treatment_city, c.insured_city",
        repo::posted(None)
    )))
    .bind(next.to_string())
    .bind(period.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut changes: BTreeMap<tally::Key, Tally> = BTreeMap::new();
    for row in rows {
        let (treatment, insured): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let (carried, undecided): (i64, i64) = (row.try_get(2)?, row.try_get(3)?);
        changes
            .entry((next, treatment.clone(), insured.clone()))
            .or_default()
            .details += carried;
        changes
            .entry((period, treatment, insured))
            .or_default()
            .details -= undecided;
    }
    tally::add(conn, &changes).await
}

/// Records the journal head the close ended at, once its entries are in.
pub(crate) async fn record_head(
    conn: &mut AnyConnection,
    reply: &mut pb::CloseClearingPeriodResponse,
    head_hash: &crate::journal::Hash,
) -> Result<(), LedgerError> {
    reply.journal_head_hash = to_hex(head_hash);
    let period = Period::from_wire(reply.period.as_ref())?;
    sqlx::query("UPDATE clearing_periods SET journal_head_hash = $1 WHERE period = $2")
        .bind(&reply.journal_head_hash)
        .bind(period.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A city's statement for a closed period.
pub(crate) async fn statement(
    conn: &mut AnyConnection,
    city_text: &str,
    period: Option<&pb::ClearingPeriod>,
) -> Result<pb::ClearingStatement, LedgerError> {
    let name = city(city_text, "city")?.to_string();
    let period = Period::from_wire(period)?;
    let row = sqlx::query(
        "SELECT statement, status, confirmed_at_ms, confirmed_by FROM clearing_statements \
         WHERE period = $1 AND city = $2",
    )
    .bind(period.to_string())
    .bind(&name)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        if is_closed(conn, period).await? {
            return Err(LedgerError::CityNotFound(
                PoolCode::parse(&name).expect("parsed above"),
            ));
        }
        return Err(refused(
            "PERIOD_OPEN",
            format!("clearing period {period} has not closed: there is no statement yet"),
        ));
    };
    let text: String = row.try_get(0)?;
    let mut statement: pb::ClearingStatement = from_hex(&text)
        .and_then(|bytes| prost::Message::decode(bytes.as_slice()).ok())
        .ok_or_else(|| LedgerError::Corrupt(format!("statement of {name} for {period}")))?;
    let status: String = row.try_get(1)?;
    if stored(
        &status,
        "clearing_statements.status",
        StatementStatus::parse,
    )? == StatementStatus::Confirmed
    {
        statement.status = pb::StatementStatus::Confirmed as i32;
        statement.confirmed_at = Some(timestamp(row.try_get(2)?));
        statement.confirmed_by = row.try_get(3)?;
    }
    Ok(statement)
}

/// ConfirmClearingStatement, inside the caller's write transaction. Confirming again changes
/// nothing.
pub(crate) async fn confirm_statement(
    conn: &mut AnyConnection,
    request: &pb::ConfirmClearingStatementRequest,
) -> Result<pb::ConfirmClearingStatementResponse, LedgerError> {
    let operator_id = operator(&request.operator_id)?;
    let found = statement(conn, &request.city, request.period.as_ref()).await?;
    if found.status != pb::StatementStatus::Confirmed as i32 {
        let period = Period::from_wire(request.period.as_ref())?;
        sqlx::query(
            "UPDATE clearing_statements SET status = $1, confirmed_at_ms = $2, confirmed_by = $3 \
             WHERE period = $4 AND city = $5 AND status = $6",
        )
        .bind(StatementStatus::Confirmed.as_str())
        .bind(now_ms())
        .bind(&operator_id)
        .bind(period.to_string())
        .bind(&found.city)
        .bind(StatementStatus::Issued.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(pb::ConfirmClearingStatementResponse {
        statement: Some(statement(conn, &request.city, request.period.as_ref()).await?),
    })
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
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

    // Proves the greedy settlement: positions summing to zero are settled by at most n - 1
    // payments, each from a debtor to a creditor, leaving every position at zero.
    #[test]
    fn payments_settle_every_position() {
        let cases: [&[i64]; 4] = [
            &[500, -300, -200, 0],
            &[100, 100, -150, -50],
            &[0, 0, 0, 0],
            &[1, 2, 3, -6],
        ];
        for nets in cases {
            let named: Vec<(String, i64)> = nets
                .iter()
                .enumerate()
                .map(|(index, net)| (format!("c{index}"), *net))
                .collect();
            let paid = payments(&named);
            let mut left: HashMap<String, i64> = named.iter().cloned().collect();
            for (payer, payee, amount) in &paid {
                assert!(*amount > 0);
                *left.get_mut(payer).unwrap() += amount;
                *left.get_mut(payee).unwrap() -= amount;
            }
            assert!(left.values().all(|net| *net == 0), "{nets:?}");
            let positions = nets.iter().filter(|net| **net != 0).count();
            assert!(paid.len() <= positions.saturating_sub(1), "{nets:?}");
        }
    }
}
