//! Clearing tallies: how many clearing details each period holds per ordered city pair, and how
//! many of them are included or excluded, kept up to date as the rows change.
//!
//! A clearing detail of period P at treatment city T is a posted, cross-city SETTLEMENT or
//! CANCELLATION of T whose clearing period is P or that was carried into P, and that was
//! confirmed in P or not carried on out of it (`clearing::Selection`). Counting them means reading
//! the city's whole month: ten seconds a call at ten million entries. So every change that makes
//! or unmakes a detail moves its tally in the same transaction instead:
//!
//! - the appender counts a row when it becomes a detail: created posted, or posted from pending;
//! - ConfirmClearingDetails and RollbackClearingConfirmation count decisions in and out;
//! - CloseClearingPeriod moves the rows it carries over into the next period.
//!
//! The counts answer `unconfirmed_left`, `total_rows` and whether a city has rows at all. The
//! end-to-end tests compare them with the rows actually listed.

use std::collections::BTreeMap;

use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, Row};

use crate::LedgerError;
use crate::journal::{Entry, Event};
use crate::period::Period;

/// SETTLEMENT and CANCELLATION, the transfer codes that carry a settlement record.
const SETTLEMENT_CODES: [i64; 2] = [3, 4];

/// One period's counts for one treatment city, over one insured city or all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub details: i64,
    pub included: i64,
    pub excluded: i64,
}

impl Tally {
    pub(crate) fn unconfirmed(&self) -> i64 {
        self.details - self.included - self.excluded
    }
}

/// Reads the counts of `treatment`'s details in `period`, of one insured city or of all.
pub(crate) async fn read(
    conn: &mut AnyConnection,
    period: Period,
    treatment: &str,
    insured: Option<&str>,
) -> Result<Tally, LedgerError> {
    let sum = |column: &str| format!("CAST(COALESCE(SUM({column}), 0) AS BIGINT)");
    let mut sql = format!(
        "SELECT {}, {}, {} FROM clearing_tallies WHERE period = $1 AND treatment_city = $2",
        sum("details_count"),
        sum("included_count"),
        sum("excluded_count"),
    );
    if insured.is_some() {
        sql.push_str(" AND insured_city = $3");
    }
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(period.to_string())
        .bind(treatment);
    if let Some(insured) = insured {
        query = query.bind(insured);
    }
    let row = query.fetch_one(&mut *conn).await?;
    Ok(Tally {
        details: row.try_get(0)?,
        included: row.try_get(1)?,
        excluded: row.try_get(2)?,
    })
}

/// A change of counts for one (period, treatment city, insured city).
pub(crate) type Key = (Period, String, String);

/// Adds `changes` to the tallies.
pub(crate) async fn add(
    conn: &mut AnyConnection,
    changes: &BTreeMap<Key, Tally>,
) -> Result<(), LedgerError> {
    for ((period, treatment, insured), change) in changes {
        if *change == Tally::default() {
            continue;
        }
        sqlx::query(
            "INSERT INTO clearing_tallies (period, treatment_city, insured_city, details_count, \
             included_count, excluded_count) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (period, treatment_city, insured_city) DO UPDATE SET \
             details_count = clearing_tallies.details_count + EXCLUDED.details_count, \
             included_count = clearing_tallies.included_count + EXCLUDED.included_count, \
             excluded_count = clearing_tallies.excluded_count + EXCLUDED.excluded_count",
        )
        .bind(period.to_string())
        .bind(treatment)
        .bind(insured)
        .bind(change.details)
        .bind(change.included)
        .bind(change.excluded)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Counts the rows that `entries` (about to be inserted) make clearing details: cross-city
/// settlement records created posted, or posted from pending.
///
/// A row counts in its clearing period, unless that period has closed while it was pending: the
/// close carried it over, and it counts where it was carried last.
pub(crate) async fn count_new_details(
    conn: &mut AnyConnection,
    entries: &[Entry],
) -> Result<(), LedgerError> {
    let mut changes: BTreeMap<Key, Tally> = BTreeMap::new();
    // Read once, when a row of an earlier month is met: `None` until then.
    let mut closed_through: Option<Option<Period>> = None;
    let this_month = Period::current();
    for entry in entries {
        let t = &entry.transfer;
        let detail = SETTLEMENT_CODES.contains(&t.code)
            && t.insured_city != t.treatment_city
            && match Event::parse(&entry.event) {
                Some(Event::Created) => t.expires_at_ms == 0,
                Some(Event::Posted) => true,
                _ => false,
            };
        if !detail {
            continue;
        }
        let mut period = Period::stored(&t.clearing_period)?;
        // A period of this month or later cannot have closed: only an earlier one is looked up.
        if period < this_month {
            let closed = match closed_through {
                Some(closed) => closed,
                None => *closed_through.insert(crate::period::closed_through(conn).await?),
            };
            if closed.is_some_and(|closed| period <= closed) {
                let carried: Option<String> = sqlx::query_scalar(
                    "SELECT MAX(period) FROM clearing_carryovers WHERE transfer_id = $1",
                )
                .bind(&t.transfer_id)
                .fetch_one(&mut *conn)
                .await?;
                if let Some(carried) = carried {
                    period = Period::stored(&carried)?;
                }
            }
        }
        changes
            .entry((period, t.treatment_city.clone(), t.insured_city.clone()))
            .or_default()
            .details += 1;
    }
    add(conn, &changes).await
}
