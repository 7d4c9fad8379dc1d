//! Region codes of the cities in the circle, the hosts of pools.

use std::fmt;
use std::str::FromStr;

use crate::{Invalid, PoolCode};

/// A six-digit national administrative division code of a prefecture-level city ("370100").
///
/// A city hosts one pool or more ([`crate::PoolCode`]); its code is the key of nothing that
/// insures or pays, only of what is grouped by city: the pools a city hosts, figures summed
/// per city, the metrics' `city` label. Parsing checks the form only; whether the city belongs
/// to the network is the network configuration's business (see [`crate::Network`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CityCode(PoolCode);

impl CityCode {
    /// Accepts exactly six ASCII digits, the first not zero, ending in "00" (a prefecture-level
    /// city, not a district).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match PoolCode::parse(text) {
            Ok(code) if text.ends_with("00") => Ok(CityCode(code)),
            _ => Err(Invalid::new(
                "",
                "must be a six-digit city region code such as 370100",
            )),
        }
    }

    /// The code as a number, for compact storage.
    pub fn as_u32(self) -> u32 {
        self.0.as_u32()
    }
}

impl fmt::Display for CityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CityCode({self})")
    }
}

impl FromStr for CityCode {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        Self::parse(text)
    }
}

impl<'de> serde::Deserialize<'de> for CityCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which region codes are accepted as city codes.
    #[test]
    fn parse_table() {
        let cases = [
            ("370100", true),
            ("371600", true),
            ("370102", false), // a district, not a city
            ("37010", false),
            ("3701000", false),
            ("070100", false),
            ("37a100", false),
            ("", false),
        ];
        for (text, ok) in cases {
            assert_eq!(CityCode::parse(text).is_ok(), ok, "{text:?}");
        }
        assert_eq!(CityCode::parse("370300").unwrap().to_string(), "370300");
    }
}
