//! Resident citizen ID numbers (GB 11643), which must never leave the insured city in full.

use std::fmt;

use chrono::NaiveDate;

use crate::Invalid;

/// An 18-character resident citizen ID number with a valid GB 11643 check digit.
///
/// It has no `Display`: the only ways to see it are [`CitizenId::masked`], for replies and logs,
/// and [`CitizenId::expose`], for the code that seals or hashes it. `Debug` prints the masked form
/// so that a stray `{:?}` in a log line cannot leak one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CitizenId(String);

/// GB 11643 weights of the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character by weighted sum modulo 11.
const CHECK: [u8; 11] = *b"10X98765432";

impl CitizenId {
    /// Accepts 17 digits and a check character (a digit or X, lower-case x accepted); checks
    /// that the birth date in positions 7-14 is a real date and that the check digit matches.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bytes = text.as_bytes();
        if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
            return Err(Invalid::new("", "must be 17 digits and a check character"));
        }
        let check = bytes[17].to_ascii_uppercase();
        if !(check.is_ascii_digit() || check == b'X') {
            return Err(Invalid::new("", "check character must be a digit or X"));
        }
        if NaiveDate::parse_from_str(&text[6..14], "%Y%m%d").is_err() {
            return Err(Invalid::new(
                "",
                "birth date in positions 7-14 is not a real date",
            ));
        }
        if check != Self::check_character(&text[..17]) {
            return Err(Invalid::new("", "check digit does not match (GB 11643)"));
        }
        Ok(CitizenId(text.to_ascii_uppercase()))
    }

    /// The GB 11643 check character for 17 leading digits.
    pub fn check_character(first17: &str) -> u8 {
        assert_eq!(
            first17.len(),
            17,
            "a citizen ID has 17 digits before its check character"
        );
        let sum: u32 = first17
            .bytes()
            .zip(WEIGHTS)
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        CHECK[(sum % 11) as usize]
    }

    /// First six and last four characters, the rest masked: "370102********123X".
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// The birth date encoded in the number.
    pub fn birth_date(&self) -> NaiveDate {
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").expect("validated at parse")
    }

    /// The full number, for sealing and keyed hashing only. Never log or return it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Masks a citizen ID as its first six and last four characters. Also used on stored masked
/// forms, so that one rule masks everywhere.
pub(crate) fn mask(full: &str) -> String {
    let stars = full.len().saturating_sub(10);
    format!(
        "{}{}{}",
        &full[..6.min(full.len())],
        "*".repeat(stars),
        &full[full.len().saturating_sub(4)..]
    )
}

impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the GB 11643 rules: valid numbers, a wrong check digit, the X digit, bad dates.
    #[test]
    fn parse_table() {
        let cases = [
            ("11010519491231002X", true), // the standard's own example, X check digit
            ("11010519491231002x", true), // lower-case x is normalised
            ("110105194912310021", false), // wrong check digit
            ("440524188001010014", true),
            ("440524188001010015", false),
            ("370102199002301234", false),  // 30 February
            ("37010219900101123", false),   // 17 characters
            ("3701021990010112345", false), // 19 characters
            ("37010219900101123Y", false),
            ("A70102199001011234", false),
        ];
        for (text, ok) in cases {
            assert_eq!(CitizenId::parse(text).is_ok(), ok, "{text}");
        }
    }

    // Proves that every form of output a citizen ID has is masked.
    #[test]
    fn masking_hides_the_middle() {
        let id = CitizenId::parse("11010519491231002x").unwrap();
        assert_eq!(id.masked(), "110105********002X");
        assert_eq!(format!("{id:?}"), "CitizenId(110105********002X)");
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
    }
}
