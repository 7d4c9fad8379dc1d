//! Ratios (self-pay, reimbursement): a decimal from "0" to "1" on the wire, basis points inside.

use std::fmt;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use yitong_core::Invalid;

/// A share from 0 to 1 with at most four fraction digits, held as basis points (ten-thousandths)
/// so that storage and arithmetic stay exact integers.
///
/// The wire carries it as a decimal string ("0.10", "0.8500"); national numeric(5,4).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ratio(u16);

impl Ratio {
    pub const ZERO: Ratio = Ratio(0);
    pub const ONE: Ratio = Ratio(Self::BASIS_POINTS_MAX);
    /// Basis points of a ratio of 1.
    pub const BASIS_POINTS_MAX: u16 = 10_000;
    /// Fraction digits the wire may carry: basis points are exact at four.
    const FRACTION_DIGITS_MAX: u32 = 4;

    /// Parses "0" to "1": digits, optionally a point and one to four digits. No sign, exponent
    /// or separator, so "1e-1", "+0.1" and "0_1" are refused rather than guessed at.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let malformed = || {
            Invalid::new(
                "",
                "must be a ratio from 0 to 1 with at most four decimals, such as 0.10",
            )
        };
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 5
            || !all_digits(whole)
            || !all_digits(fraction)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(malformed());
        }
        let value: Decimal = text.parse().map_err(|_| malformed())?;
        if value.scale() > Self::FRACTION_DIGITS_MAX {
            return Err(Invalid::new("", "must have at most four decimals"));
        }
        if value > Decimal::ONE {
            return Err(Invalid::new("", "must be a ratio from 0 to 1"));
        }
        let basis_points = (value * Decimal::from(Self::BASIS_POINTS_MAX))
            .to_u16()
            .ok_or_else(malformed)?;
        Ok(Ratio(basis_points))
    }

    /// The ratio of `basis_points` ten-thousandths; `None` above 10,000.
    pub fn from_basis_points(basis_points: i64) -> Option<Self> {
        u16::try_from(basis_points)
            .ok()
            .filter(|points| *points <= Self::BASIS_POINTS_MAX)
            .map(Ratio)
    }

    pub fn basis_points(self) -> i64 {
        i64::from(self.0)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Ratio {
    /// At least two and at most four fraction digits: "0.00", "0.10", "0.1234", "1.00".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value = Decimal::new(i64::from(self.0), Self::FRACTION_DIGITS_MAX).normalize();
        if value.scale() < 2 {
            value.rescale(2);
        }
        write!(f, "{value}")
    }
}

impl fmt::Debug for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ratio({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the wire format of ratios: what parses, to how many basis points, what is refused.
    #[test]
    fn parse_table() {
        let cases: [(&str, Option<i64>); 17] = [
            ("0", Some(0)),
            ("0.1", Some(1_000)),
            ("0.10", Some(1_000)),
            ("0.8500", Some(8_500)),
            ("0.1234", Some(1_234)),
            ("1", Some(10_000)),
            ("1.0000", Some(10_000)),
            ("1.0001", None),
            ("1.01", None),
            ("2", None),
            ("0.12345", None),
            ("-0.1", None),
            ("+0.1", None),
            ("1e-1", None),
            ("0_1", None),
            (".5", None),
            ("", None),
        ];
        for (text, points) in cases {
            assert_eq!(
                Ratio::parse(text).ok().map(Ratio::basis_points),
                points,
                "{text:?}"
            );
        }
    }

    // Proves that formatting shows two to four decimals and that parsing reads it back.
    #[test]
    fn display_round_trips() {
        for (points, text) in [
            (0, "0.00"),
            (1_000, "0.10"),
            (1_050, "0.105"),
            (1_234, "0.1234"),
            (10_000, "1.00"),
        ] {
            let ratio = Ratio::from_basis_points(points).unwrap();
            assert_eq!(ratio.to_string(), text);
            assert_eq!(Ratio::parse(text).unwrap(), ratio);
        }
        assert_eq!(Ratio::from_basis_points(10_001), None);
        assert_eq!(Ratio::from_basis_points(-1), None);
    }
}
