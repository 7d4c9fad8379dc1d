//! Codes of the pooling regions (统筹区), the unit that insures, owns a catalog, sets policy and
//! keeps a fund.

use std::fmt;
use std::str::FromStr;

use crate::Invalid;

/// A pooling region's six-digit national administrative division code (admdvs): "370100" for
/// Jinan's city pool, "370590" for the Shengli Oilfield pool hosted by Dongying (illustrative).
///
/// It is the key of everything a pool owns: cards, e-vouchers and person numbers start with it,
/// institutions are designated under it, catalogs and policies are kept by it, and the ledger's
/// accounts are opened for it. A city's own pool has the city's code; another pool of the same
/// city has a code of its own, which need not end in "00" (see [`crate::CityCode`] for the city
/// that hosts a pool). Parsing checks the form only; whether the pool belongs to the network is
/// the network file's business (see [`crate::Network`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolCode(u32);

impl PoolCode {
    /// Accepts exactly six ASCII digits, the first not zero.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let well_formed =
            text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
        if !well_formed {
            return Err(Invalid::new(
                "",
                "must be a six-digit pool region code such as 370100",
            ));
        }
        text.parse()
            .map(PoolCode)
            .map_err(|_| Invalid::new("", "not a region code"))
    }

    /// The code as a number, for compact storage: the same number a city's code was stored
    /// as before pools, so the rows of a city's own pool read unchanged.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PoolCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl fmt::Debug for PoolCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolCode({self})")
    }
}

impl FromStr for PoolCode {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        Self::parse(text)
    }
}

impl<'de> serde::Deserialize<'de> for PoolCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<crate::CityCode> for PoolCode {
    /// A city's own pool, whose code is the city's.
    fn from(city: crate::CityCode) -> Self {
        PoolCode(city.as_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which region codes are accepted as pool codes: a city's, and a pool's of its own
    // that does not end in 00.
    #[test]
    fn parse_table() {
        let cases = [
            ("370100", true),
            ("371600", true),
            ("370590", true), // a second pool of a city (Dongying's Oilfield, illustrative)
            ("379900", true), // a provincial-level pool
            ("37010", false),
            ("3701000", false),
            ("070100", false),
            ("37a100", false),
            ("", false),
        ];
        for (text, ok) in cases {
            assert_eq!(PoolCode::parse(text).is_ok(), ok, "{text:?}");
        }
        assert_eq!(PoolCode::parse("370590").unwrap().to_string(), "370590");
        let city = crate::CityCode::parse("370500").unwrap();
        assert_eq!(PoolCode::from(city).to_string(), "370500");
    }
}
