//! Money: integer fen inside, a decimal yuan string on the wire.

use std::fmt;

use crate::Invalid;

/// An amount of renminbi in fen (1 yuan = 100 fen).
///
/// Storage keeps the fen as a 64-bit integer; the wire carries yuan as a decimal string with at
/// most two fraction digits ("123.45"). Amounts never pass through a float. The national
/// interface declares amounts numeric(16,2), so at most 14 integer digits are accepted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

/// Largest magnitude accepted from the wire: 14 integer digits and 2 fraction digits.
const FEN_MAX: i64 = 9_999_999_999_999_999;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_fen(fen: i64) -> Self {
        Amount(fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    /// Parses a non-negative yuan amount: digits, optionally a point and one or two digits.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let amount = Self::parse_signed(text)?;
        if amount.0 < 0 {
            return Err(Invalid::new("", "must not be negative"));
        }
        Ok(amount)
    }

    /// Parses a yuan amount that may carry a leading minus sign (adjustments, reversals).
    pub fn parse_signed(text: &str) -> Result<Self, Invalid> {
        let malformed = || {
            Invalid::new(
                "",
                "must be a yuan amount with at most two decimals, such as 123.45",
            )
        };
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 14 || !all_digits(whole) {
            return Err(malformed());
        }
        if fraction.len() > 2
            || !all_digits(fraction)
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(malformed());
        }
        let whole: i64 = whole.parse().map_err(|_| malformed())?;
        let fraction_fen: i64 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<i64>().map_err(|_| malformed())? * 10,
            _ => fraction.parse().map_err(|_| malformed())?,
        };
        let fen = whole * 100 + fraction_fen;
        debug_assert!(fen <= FEN_MAX);
        Ok(Amount(if negative { -fen } else { fen }))
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn min(self, other: Amount) -> Amount {
        Amount(self.0.min(other.0))
    }

    pub fn max(self, other: Amount) -> Amount {
        Amount(self.0.max(other.0))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Amount {
    /// Always two fraction digits: "0.00", "123.45", "-7.05".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let fen = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", fen / 100, fen % 100)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Proves the wire format: what parses, to how many fen, and what is refused.
    #[test]
    fn parse_table() {
        let cases: [(&str, Option<i64>); 14] = [
            ("0", Some(0)),
            ("0.00", Some(0)),
            ("1", Some(100)),
            ("1.5", Some(150)),
            ("1.05", Some(105)),
            ("123.45", Some(12345)),
            ("99999999999999.99", Some(FEN_MAX)),
            ("100000000000000", None),
            ("1.234", None),
            ("1.", None),
            (".5", None),
            ("-1.00", None),
            ("1e3", None),
            ("", None),
        ];
        for (text, fen) in cases {
            assert_eq!(Amount::parse(text).ok().map(Amount::fen), fen, "{text:?}");
        }
        assert_eq!(Amount::parse_signed("-7.05").unwrap().fen(), -705);
    }

    // Proves formatting shows two decimals and the sign.
    #[test]
    fn display_table() {
        for (fen, text) in [(0, "0.00"), (5, "0.05"), (12345, "123.45"), (-705, "-7.05")] {
            assert_eq!(Amount::from_fen(fen).to_string(), text);
        }
    }

    proptest! {
        // Proves that formatting and parsing are inverse for every amount in range.
        #[test]
        fn display_then_parse_round_trips(fen in -FEN_MAX..=FEN_MAX) {
            let amount = Amount::from_fen(fen);
            prop_assert_eq!(Amount::parse_signed(&amount.to_string()).unwrap(), amount);
        }
    }
}
