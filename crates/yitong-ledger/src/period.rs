//! The clearing calendar: a clearing period is a calendar month of China Standard Time, the
//! calendar every city keeps, and the periods closed so far.
//!
//! A period is stored and written "YYYY-MM" ([`Period`]'s `Display`), so that the text order of
//! the stored column is the order of the months; in code it is a typed year and month, compared
//! as such. The appender (`book`), the tallies (`tally`) and clearing (`clearing`) all read the
//! calendar from here and none of them from another.

use std::fmt;

use chrono::{DateTime, Datelike};
use yitong_core::{Date, Invalid};
use yitong_proto::ledger::v1 as pb;
use yitong_store::sqlx::{self, AnyConnection};

use crate::LedgerError;

/// The first and last year a period may name on the wire.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2999;

/// A clearing period: one month of China Standard Time. Ordered by year, then month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    // The field order is the order of periods (the derived `Ord`).
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Period {
    /// The period of `year` and `month`, when `month` is 1 to 12 and the year one of `YEARS`.
    pub fn new(year: i32, month: u32) -> Option<Period> {
        (YEARS.contains(&year) && (1..=12).contains(&month)).then_some(Period { year, month })
    }

    /// The period a China date falls in.
    pub fn of_date(date: Date) -> Period {
        Period {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The period of an instant (milliseconds since the Unix epoch), by its China date.
    pub fn of_instant_ms(at_ms: i64) -> Period {
        Period::of_date(china_date(at_ms))
    }

    /// The current month in China: no period of it or after it can have closed.
    pub fn current() -> Period {
        Period::of_date(yitong_core::today())
    }

    /// Reads "YYYY-MM", exactly seven characters.
    pub fn parse(text: &str) -> Option<Period> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if !digits(year) || !digits(month) {
            return None;
        }
        Period::new(year.parse().ok()?, month.parse().ok()?)
    }

    /// A period a request names. Field path "period".
    pub(crate) fn from_wire(period: Option<&pb::ClearingPeriod>) -> Result<Period, Invalid> {
        let period = period.ok_or_else(|| Invalid::new("period", "is required"))?;
        let year = i32::try_from(period.year).unwrap_or(i32::MAX);
        if !YEARS.contains(&year) {
            return Err(Invalid::new("period.year", "must be 2000 to 2999"));
        }
        if !(1..=12).contains(&period.month) {
            return Err(Invalid::new("period.month", "must be 1 to 12"));
        }
        Ok(Period {
            year,
            month: period.month,
        })
    }

    /// A period read from the store; one that does not read is a corrupt store.
    pub(crate) fn stored(text: &str) -> Result<Period, LedgerError> {
        Period::parse(text).ok_or_else(|| LedgerError::Corrupt(format!("clearing period {text:?}")))
    }

    pub fn to_wire(self) -> pb::ClearingPeriod {
        pb::ClearingPeriod {
            year: u32::try_from(self.year).expect("a period's year is 2000 to 2999"),
            month: self.month,
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The month after.
    pub fn next(self) -> Period {
        if self.month == 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first day of the month.
    pub fn first_day(self) -> Date {
        Date::from_ymd_opt(self.year, self.month, 1).expect("every month has a first day")
    }

    /// The last day of the month.
    pub fn last_day(self) -> Date {
        self.next()
            .first_day()
            .pred_opt()
            .expect("a month's first day has a day before it")
    }

    /// Whether the month is over in China.
    pub fn ended(self) -> bool {
        Period::current() > self
    }
}

impl fmt::Display for Period {
    /// "YYYY-MM", the stored form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The China date of an instant.
pub(crate) fn china_date(at_ms: i64) -> Date {
    DateTime::from_timestamp_millis(at_ms)
        .expect("instants of this era are in chrono's range")
        .with_timezone(&yitong_core::china())
        .date_naive()
}

/// The latest closed period; `None` when none has closed. Periods close in order, so every
/// period up to it is closed.
pub(crate) async fn closed_through(
    conn: &mut AnyConnection,
) -> Result<Option<Period>, LedgerError> {
    let latest: Option<String> = sqlx::query_scalar("SELECT MAX(period) FROM clearing_periods")
        .fetch_one(&mut *conn)
        .await?;
    latest.as_deref().map(Period::stored).transpose()
}

/// Whether `period` is closed.
pub(crate) async fn is_closed(
    conn: &mut AnyConnection,
    period: Period,
) -> Result<bool, LedgerError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT period FROM clearing_periods WHERE period = $1")
            .bind(period.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(text: &str) -> Period {
        Period::parse(text).expect("a period")
    }

    // Proves periods follow one another across a year's end.
    #[test]
    fn periods_follow_one_another() {
        assert_eq!(period("2026-03").next(), period("2026-04"));
        assert_eq!(period("2026-12").next(), period("2027-01"));
    }

    // Proves the stored text reads back, and what does not read as a period.
    #[test]
    fn text_reads_back() {
        for text in ["2026-01", "2026-12", "2000-01", "2999-12"] {
            assert_eq!(period(text).to_string(), text);
        }
        for text in [
            "", "2026", "2026-1", "2026-13", "2026-00", "26-03", "2026-003", "+026-03", "2026/03",
            "1999-12", "3000-01",
        ] {
            assert_eq!(Period::parse(text), None, "{text:?}");
        }
    }

    // Proves periods order by year, then month, not as numbers of their text.
    #[test]
    fn periods_order_as_months() {
        assert!(period("2026-09") < period("2026-10"));
        assert!(period("2025-12") < period("2026-01"));
        assert!(period("2026-03") == period("2026-03"));
    }

    // Proves a period's first and last days, February of a leap year included.
    #[test]
    fn first_and_last_days() {
        let day = |text: &str| yitong_core::parse_date(text).unwrap();
        assert_eq!(period("2026-03").first_day(), day("2026-03-01"));
        assert_eq!(period("2026-03").last_day(), day("2026-03-31"));
        assert_eq!(period("2028-02").last_day(), day("2028-02-29"));
        assert_eq!(period("2026-12").last_day(), day("2026-12-31"));
    }

    // Proves an instant counts in the month of its China date: 16:30 UTC on the last day of
    // March is already April 1 in China.
    #[test]
    fn instants_count_in_the_china_month() {
        // 2026-03-31T16:30:00Z
        assert_eq!(Period::of_instant_ms(1_774_974_600_000), period("2026-04"));
        // 2026-03-31T15:30:00Z
        assert_eq!(Period::of_instant_ms(1_774_971_000_000), period("2026-03"));
    }

    // Proves the wire's bounds name the field that is out of them.
    #[test]
    fn wire_bounds() {
        let wire = |year, month| Period::from_wire(Some(&pb::ClearingPeriod { year, month }));
        assert_eq!(wire(2026, 3).unwrap(), period("2026-03"));
        assert_eq!(wire(1999, 3).unwrap_err().field(), "period.year");
        assert_eq!(wire(2026, 13).unwrap_err().field(), "period.month");
        assert_eq!(Period::from_wire(None).unwrap_err().field(), "period");
        assert_eq!(
            period("2026-03").to_wire(),
            pb::ClearingPeriod {
                year: 2026,
                month: 3
            }
        );
    }
}
