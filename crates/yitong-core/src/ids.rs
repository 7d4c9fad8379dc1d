//! Identifiers the national interface defines: person numbers, institution codes, message ids.

use std::fmt;

use crate::{Invalid, PoolCode};

/// A person number (national psn_no): the insured pool's region code and a ten-digit serial.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PersonNo(String);

impl PersonNo {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                "",
                "must be 16 digits: a pool region code and a ten-digit serial",
            ));
        }
        PoolCode::parse(&text[..6])
            .map_err(|_| Invalid::new("", "must start with the insured pool's region code"))?;
        Ok(PersonNo(text.to_owned()))
    }

    pub fn new(insured_city: PoolCode, serial: u64) -> Self {
        assert!(serial < 10_000_000_000, "person serials have ten digits");
        PersonNo(format!("{insured_city}{serial:010}"))
    }

    /// The pool that insures the person (named city in code and on the wire, as the national
    /// insuplc_admdvs names the pool's region).
    pub fn insured_city(&self) -> PoolCode {
        PoolCode::parse(&self.0[..6]).expect("validated at parse")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PersonNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A designated institution's code (national fixmedins_code): "H" for a hospital or "P" for a
/// pharmacy, the region code of the pool that designated it, and a five-digit serial
/// ("H37030000007").
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct InstitutionCode(String);

impl InstitutionCode {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bytes = text.as_bytes();
        let well_formed = bytes.len() == 12
            && matches!(bytes[0], b'H' | b'P')
            && bytes[1..].iter().all(u8::is_ascii_digit)
            && PoolCode::parse(&text[1..7]).is_ok();
        if !well_formed {
            return Err(Invalid::new(
                "",
                "must be H or P, a pool region code and five digits, such as H37030000007",
            ));
        }
        Ok(InstitutionCode(text.to_owned()))
    }

    /// The pool whose bureau designated the institution: its treatment pool (named city in
    /// code and on the wire, as the national mdtrtarea_admvs names the pool's region).
    pub fn city(&self) -> PoolCode {
        PoolCode::parse(&self.0[1..7]).expect("validated at parse")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstitutionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The caller's message id (national msgid), the idempotency key of a state-changing request.
///
/// The national form is the institution code, a yyyyMMddHHmmssfff timestamp and a serial; bureaus
/// and nodes use their own, so only the character set and length are checked.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct MessageId(String);

impl MessageId {
    pub const LEN_MAX: usize = 64;

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let ok = !text.is_empty()
            && text.len() <= Self::LEN_MAX
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            return Err(Invalid::new(
                "",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(MessageId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the formats of person numbers, institution codes and message ids.
    #[test]
    fn parse_tables() {
        assert_eq!(
            PersonNo::parse("3701000000000042")
                .unwrap()
                .insured_city()
                .to_string(),
            "370100"
        );
        for bad in ["370100000000004", "0701000000000042", "37010000000000x2"] {
            assert!(PersonNo::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            InstitutionCode::parse("H37030000007")
                .unwrap()
                .city()
                .to_string(),
            "370300"
        );
        // An institution of a city's second pool carries the pool's code.
        assert_eq!(
            InstitutionCode::parse("H37059000001")
                .unwrap()
                .city()
                .to_string(),
            "370590"
        );
        for bad in [
            "X37030000007",
            "H3703000007",
            "H07030000007",
            "h37030000007",
        ] {
            assert!(InstitutionCode::parse(bad).is_err(), "{bad}");
        }
        assert!(MessageId::parse("H37030000007202611251030000001").is_ok());
        assert!(MessageId::parse("").is_err());
        assert!(MessageId::parse("has space").is_err());
        assert!(MessageId::parse(&"9".repeat(65)).is_err());
    }
}
