//! Social-security card numbers, numbered by the issuing pool so that any pool can route them.

use std::fmt;

use crate::{Invalid, PoolCode};

/// A card number: the issuing pool's region code, an eight-digit serial, a Luhn check digit.
///
/// "370100" + "00000012" + "5" = "370100000000125". The prefix routes the card to its issuer;
/// the check digit catches a mistyped digit before any network call is made.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.len() != 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new("", "must be 15 digits"));
        }
        PoolCode::parse(&text[..6])
            .map_err(|_| Invalid::new("", "must start with the issuing pool's region code"))?;
        if luhn_digit(&text[..14]) != text.as_bytes()[14] {
            return Err(Invalid::new("", "check digit does not match"));
        }
        Ok(CardNumber(text.to_owned()))
    }

    /// The card number a pool gives its `serial`-th card.
    pub fn new(issuer: PoolCode, serial: u32) -> Self {
        assert!(serial < 100_000_000, "card serials have eight digits");
        let body = format!("{issuer}{serial:08}");
        let check = luhn_digit(&body) as char;
        CardNumber(format!("{body}{check}"))
    }

    /// The pool that issued the card and answers for it.
    pub fn issuer(&self) -> PoolCode {
        PoolCode::parse(&self.0[..6]).expect("validated at parse")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Luhn (mod 10) check digit for a string of digits, as an ASCII byte.
fn luhn_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let digit = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves card numbers route to their issuer and that malformed ones are refused.
    #[test]
    fn routing_and_checks() {
        let jinan = PoolCode::parse("370100").unwrap();
        let card = CardNumber::new(jinan, 12);
        assert_eq!(card.as_str(), "370100000000125");
        assert_eq!(
            CardNumber::parse("370100000000125").unwrap().issuer(),
            jinan
        );
        let zibo = CardNumber::new(PoolCode::parse("370300").unwrap(), 99_999_999);
        assert_eq!(
            CardNumber::parse(zibo.as_str())
                .unwrap()
                .issuer()
                .to_string(),
            "370300"
        );

        // A second pool of a city has a code of its own, which need not end in 00.
        let oilfield = CardNumber::new(PoolCode::parse("370590").unwrap(), 7);
        assert_eq!(
            CardNumber::parse(oilfield.as_str())
                .unwrap()
                .issuer()
                .to_string(),
            "370590"
        );

        for bad in [
            "370100000000126", // check digit off by one
            "370100000000152", // two digits swapped
            "37010000000012",  // 14 digits
            "37010X000000125",
            "070100000000125", // no region code starts with 0
            "",
        ] {
            assert!(CardNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
