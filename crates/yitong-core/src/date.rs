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

/// Today in China Standard Time (UTC+8), the calendar every city keeps.
pub fn today() -> Date {
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    Utc::now().with_timezone(&china).date_naive()
}
