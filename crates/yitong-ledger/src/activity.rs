//! GetDailyActivity: days at a glance for a bureau's overview, read from the journal and the
//! reconciliation runs, with nothing recorded.
//!
//! - Per day and ordered pair of cities, the SETTLEMENT and CANCELLATION rows by the settlement
//!   date their record carries: posted rows counted and summed as reconciliation counts them,
//!   pending ones counted apart (settlements in doubt), voided and expired ones left out.
//! - Per city and day, the prepaid fund at the day's end: the journal's per-entry sums of the
//!   fund and of the city's obligation accounts, added up to the end of each day, as
//!   [`Prepaid`] computes the position now from the stored balances.
//! - Per city and day, the finished detail runs (3202) that asked exactly that day of the city
//!   as treatment city, found by the digest of their question ([`reconcile::run_digest`]).
//!
//! Each part reads the range with one statement per city (or one in all, for the pairs), so a
//! month costs a few queries whatever the number of days.

use std::collections::BTreeMap;

use chrono::{Days, NaiveTime};
use yitong_core::{Amount, Date, Invalid, Network, PoolCode};
use yitong_proto::ledger::v1 as pb;
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, Row};

use crate::LedgerError;
use crate::balance::Prepaid;
use crate::group::threshold_fen;
use crate::reconcile::{self, RANGE_DAYS_MAX};
use crate::repo::{self, RESOLUTION_JOIN};

/// Most cities in one request.
pub(crate) const CITIES_MAX: usize = 10;
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// China Standard Time's offset from UTC in milliseconds.
const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// A parsed GetDailyActivity request.
#[derive(Debug)]
pub(crate) struct ActivityRequest {
    pub from: Date,
    pub to: Date,
    pub cities: Vec<PoolCode>,
}

impl TryFrom<&pb::GetDailyActivityRequest> for ActivityRequest {
    type Error = Invalid;

    fn try_from(request: &pb::GetDailyActivityRequest) -> Result<Self, Invalid> {
        let from = yitong_core::parse_date(&request.from_date)
            .map_err(|invalid| invalid.at("from_date"))?;
        let to =
            yitong_core::parse_date(&request.to_date).map_err(|invalid| invalid.at("to_date"))?;
        if to < from {
            return Err(Invalid::new("to_date", "must not be before from_date"));
        }
        if (to - from).num_days() > RANGE_DAYS_MAX {
            return Err(Invalid::new(
                "to_date",
                format!("must be at most {RANGE_DAYS_MAX} days after from_date"),
            ));
        }
        if request.cities.is_empty() || request.cities.len() > CITIES_MAX {
            return Err(Invalid::new(
                "cities",
                format!("must name 1 to {CITIES_MAX} cities"),
            ));
        }
        let cities = request
            .cities
            .iter()
            .enumerate()
            .map(|(index, city)| {
                PoolCode::parse(city).map_err(|invalid| invalid.at(format!("cities[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ActivityRequest { from, to, cities })
    }
}

impl ActivityRequest {
    /// Every day of the range, in order.
    fn days(&self) -> Vec<Date> {
        let mut days = Vec::new();
        let mut day = self.from;
        while day <= self.to {
            days.push(day);
            day = day
                .checked_add_days(Days::new(1))
                .expect("a date within the calendar");
        }
        days
    }
}

fn text(date: Date) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn yuan(fen: i64) -> String {
    Amount::from_fen(fen).to_string()
}

/// The instant a China Standard Time day begins, in milliseconds since the Unix epoch.
fn day_start_ms(date: Date) -> i64 {
    date.and_time(NaiveTime::MIN).and_utc().timestamp_millis() - CHINA_OFFSET_MS
}

/// The answer to `request`, read through `conn`; `today` bounds the funds reported.
pub(crate) async fn read(
    conn: &mut AnyConnection,
    network: &Network,
    request: &ActivityRequest,
    today: Date,
) -> Result<pb::GetDailyActivityResponse, LedgerError> {
    let pairs = pairs(conn, request).await?;
    let mut funds = Vec::new();
    let mut reconciliations = Vec::new();
    for city in &request.cities {
        funds.extend(fund_days(conn, network, request, *city, today).await?);
        reconciliations.extend(reconciliation_days(conn, request, *city).await?);
    }
    Ok(pb::GetDailyActivityResponse {
        pairs,
        funds,
        reconciliations,
    })
}

/// The settlement rows of the range per day and pair, of the pairs that involve a named city.
async fn pairs(
    conn: &mut AnyConnection,
    request: &ActivityRequest,
) -> Result<Vec<pb::PairDay>, LedgerError> {
    let posted = repo::posted(None);
    let sql = format!(
        "SELECT c.settlement_date, c.treatment_city, c.insured_city, c.cancellation, \
         CASE WHEN {posted} THEN 'posted' WHEN r.event IS NULL THEN 'pending' ELSE 'released' END, \
         COUNT(*), CAST(COALESCE(SUM(c.total_amount_fen), 0) AS BIGINT), \
         CAST(COALESCE(SUM(c.fund_pay_fen), 0) AS BIGINT) \
         FROM journal c {RESOLUTION_JOIN} \
         WHERE c.stage = 0 AND c.code IN (3, 4) AND c.settlement_date >= $1 \
         AND c.settlement_date <= $2 \
         GROUP BY 1, 2, 3, 4, 5"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(text(request.from))
        .bind(text(request.to))
        .fetch_all(&mut *conn)
        .await?;
    let named: Vec<String> = request.cities.iter().map(ToString::to_string).collect();
    let mut by_key: BTreeMap<(String, String, String), pb::PairDay> = BTreeMap::new();
    for row in rows {
        let date: String = row.try_get(0)?;
        let treatment: String = row.try_get(1)?;
        let insured: String = row.try_get(2)?;
        if !named.contains(&treatment) && !named.contains(&insured) {
            continue;
        }
        let cancellation: i64 = row.try_get(3)?;
        let state: String = row.try_get(4)?;
        let count = u64::try_from(row.try_get::<i64, _>(5)?)
            .map_err(|_| LedgerError::Corrupt("a negative count".into()))?;
        let total_fen: i64 = row.try_get(6)?;
        let fund_fen: i64 = row.try_get(7)?;
        let day = by_key
            .entry((date.clone(), treatment.clone(), insured.clone()))
            .or_insert_with(|| pb::PairDay {
                date,
                treatment_city: treatment,
                insured_city: insured,
                total_amount: yuan(0),
                fund_pay: yuan(0),
                ..Default::default()
            });
        match state.as_str() {
            "posted" => {
                if cancellation != 0 {
                    day.cancellations += count;
                } else {
                    day.settlements += count;
                }
                day.total_amount = add_yuan(&day.total_amount, total_fen)?;
                day.fund_pay = add_yuan(&day.fund_pay, fund_fen)?;
            }
            "pending" => day.pending += count,
            _ => {}
        }
    }
    Ok(by_key.into_values().collect())
}

fn add_yuan(text: &str, fen: i64) -> Result<String, LedgerError> {
    let before = Amount::parse_signed(text)
        .map_err(|_| LedgerError::Corrupt(format!("an amount {text:?}")))?
        .fen();
    Ok(yuan(before + fen))
}

/// A city's prepaid fund at the end of each day of the range up to `today`.
async fn fund_days(
    conn: &mut AnyConnection,
    network: &Network,
    request: &ActivityRequest,
    city: PoolCode,
    today: Date,
) -> Result<Vec<pb::FundDay>, LedgerError> {
    let last = request.to.min(today);
    if last < request.from {
        return Ok(Vec::new());
    }
    let start_ms = day_start_ms(request.from);
    let end_ms = day_start_ms(last.checked_add_days(Days::new(1)).expect("a date"));
    let fund = format!("{city}.fund");
    let owed = format!("{city}->%");
    // Each entry's change of the fund's posted balance and of the obligations' balance with
    // pending amounts, by the China day it was recorded on; entries before the range as day -1.
    let sql = format!(
        "SELECT CASE WHEN recorded_at_ms < $1 THEN -1 \
         ELSE (recorded_at_ms + {CHINA_OFFSET_MS}) / {DAY_MS} END, \
         CAST(COALESCE(SUM(CASE WHEN credit_account_id = $2 THEN credit_posted_fen ELSE 0 END \
         - CASE WHEN debit_account_id = $3 THEN debit_posted_fen ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM( \
         CASE WHEN credit_account_id LIKE $4 THEN credit_posted_fen + credit_pending_fen ELSE 0 END \
         - CASE WHEN debit_account_id LIKE $5 THEN debit_posted_fen + debit_pending_fen ELSE 0 END \
         ), 0) AS BIGINT) \
         FROM journal WHERE recorded_at_ms < $6 AND (debit_account_id = $7 \
         OR credit_account_id = $8 OR debit_account_id LIKE $9 OR credit_account_id LIKE $10) \
         GROUP BY 1"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(start_ms)
        .bind(&fund)
        .bind(&fund)
        .bind(&owed)
        .bind(&owed)
        .bind(end_ms)
        .bind(&fund)
        .bind(&fund)
        .bind(&owed)
        .bind(&owed)
        .fetch_all(&mut *conn)
        .await?;
    let mut changes: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for row in rows {
        changes.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    let threshold = threshold_fen(network, city);
    let (mut fund_fen, mut owed_fen) = changes.get(&-1).copied().unwrap_or_default();
    let mut days = Vec::new();
    for day in request.days().into_iter().filter(|day| *day <= last) {
        let index = (day_start_ms(day) + CHINA_OFFSET_MS) / DAY_MS;
        let (fund_change, owed_change) = changes.get(&index).copied().unwrap_or_default();
        fund_fen += fund_change;
        owed_fen += owed_change;
        let prepaid = Prepaid {
            fund_balance_fen: fund_fen,
            outstanding_fen: owed_fen,
            threshold_fen: threshold,
        };
        days.push(pb::FundDay {
            date: text(day),
            city: city.to_string(),
            available: yuan(prepaid.available_fen()),
            low_balance_threshold: yuan(threshold),
            below_threshold: prepaid.below_threshold(),
        });
    }
    Ok(days)
}

/// The header a one-day, unfiltered detail run of `city` as treatment city carries, as far as
/// its digest goes.
fn day_question(city: PoolCode, day: Date) -> pb::ReconcileDetailsHeader {
    pb::ReconcileDetailsHeader {
        scope: Some(pb::ReconciliationScope {
            subject: Some(pb::reconciliation_scope::Subject::TreatmentCity(
                city.to_string(),
            )),
        }),
        from_date: text(day),
        to_date: text(day),
        ..Default::default()
    }
}

/// Whether `city` reconciled each day of the range, and how the latest run ended.
async fn reconciliation_days(
    conn: &mut AnyConnection,
    request: &ActivityRequest,
    city: PoolCode,
) -> Result<Vec<pb::ReconciliationDay>, LedgerError> {
    let days = request.days();
    let digests: Vec<String> = days
        .iter()
        .map(|day| reconcile::run_digest(&day_question(city, *day)))
        .collect();
    let placeholders = (1..=digests.len())
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT request_digest, summary FROM reconciliation_runs \
         WHERE summary <> '' AND request_digest IN ({placeholders}) \
         ORDER BY finished_at_ms, message_id"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for digest in &digests {
        query = query.bind(digest);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut runs: BTreeMap<String, (u64, i32)> = BTreeMap::new();
    for row in rows {
        let digest: String = row.try_get(0)?;
        let summary: String = row.try_get(1)?;
        let summary: pb::ReconcileDetailsSummary = reconcile::from_hex(&summary)
            .and_then(|bytes| prost::Message::decode(&bytes[..]).ok())
            .ok_or_else(|| LedgerError::Corrupt("a reconciliation run's summary".into()))?;
        let entry = runs.entry(digest).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = summary.result;
    }
    Ok(days
        .iter()
        .zip(&digests)
        .map(|(day, digest)| {
            let (count, result) = runs.get(digest).copied().unwrap_or((0, 0));
            pb::ReconciliationDay {
                date: text(*day),
                city: city.to_string(),
                runs: count,
                last_result: result,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A China day starts at 16:00 UTC the day before, and the day index of its start is the
    // index the statement gives every entry recorded during it.
    #[test]
    fn china_days() {
        let day = yitong_core::parse_date("2026-03-05").expect("a date");
        let start = day_start_ms(day);
        assert_eq!(
            chrono::DateTime::from_timestamp_millis(start)
                .expect("an instant")
                .to_rfc3339(),
            "2026-03-04T16:00:00+00:00"
        );
        let index = (start + CHINA_OFFSET_MS) / DAY_MS;
        assert_eq!((start - 1 + CHINA_OFFSET_MS) / DAY_MS, index - 1);
        assert_eq!((start + DAY_MS - 1 + CHINA_OFFSET_MS) / DAY_MS, index);
    }

    // The range is bounded and its cities named.
    #[test]
    fn requests_are_checked() {
        let request = |from: &str, to: &str, cities: &[&str]| {
            ActivityRequest::try_from(&pb::GetDailyActivityRequest {
                from_date: from.into(),
                to_date: to.into(),
                cities: cities.iter().map(|city| (*city).to_owned()).collect(),
            })
            .map_err(|invalid| invalid.field().to_owned())
        };
        assert!(request("2026-03-01", "2026-03-31", &["370100"]).is_ok());
        assert_eq!(
            request("2026-03-01", "2026-04-02", &["370100"]).unwrap_err(),
            "to_date"
        );
        assert_eq!(
            request("2026-03-02", "2026-03-01", &["370100"]).unwrap_err(),
            "to_date"
        );
        assert_eq!(
            request("2026-03-01", "2026-03-01", &[]).unwrap_err(),
            "cities"
        );
        assert_eq!(
            request("2026-03-01", "2026-03-01", &["37010"]).unwrap_err(),
            "cities[0]"
        );
        assert_eq!(
            request("2026-3-1", "2026-03-01", &["370100"]).unwrap_err(),
            "from_date"
        );
    }
}
