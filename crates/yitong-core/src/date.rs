//! Calendar dates as the wire carries them ("YYYY-MM-DD", China Standard Time).

use chrono::{FixedOffset, NaiveDate, Utc};

use crate::Invalid;

pub type Date = NaiveDate;

/// Parses a "YYYY-MM-DD" date.
pub fn parse_date(text: &str) -> Result<Date, Invalid> {
    if text.len() != 10 {
        return Err(Invalid::new("", "must be a date as YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Invalid::new("", "must be a real date as YYYY-MM-DD"))
}

/// China Standard Time (UTC+8), the calendar every city keeps.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Today in China Standard Time.
pub fn today() -> Date {
    Utc::now().with_timezone(&china()).date_naive()
}

/// The China Standard Time date of an instant in milliseconds since the Unix epoch.
pub fn date_of_ms(ms: i64) -> Date {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&china())
        .date_naive()
}
