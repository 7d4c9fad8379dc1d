//! E-vouchers (医保电子凭证): short-lived tokens for a QR code, signed by the insured city.
//!
//! A token is `base64url(payload) "." base64url(signature)`, the payload being
//! `YT1|<issuer city>|<person no>|<issued at>|<expires at>|<nonce>` (seconds since the epoch)
//! and the signature Ed25519 over the payload bytes with the issuing city's key. Every city holds
//! every city's public key in the network file, so any city verifies a token without calling the
//! issuer; a token claiming one city but signed with another's key fails verification.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use yitong_core::{Invalid, Network, PersonNo, PoolCode};

const VERSION: &str = "YT1";

/// Longest and default life of a token. A QR code is shown for a minute or two at a counter;
/// a short life bounds what a photographed code is worth.
pub const TTL_SECONDS_MAX: u32 = 600;
pub const TTL_SECONDS_DEFAULT: u32 = 120;
/// Clock difference between cities tolerated for "issued at".
const CLOCK_SKEW_SECONDS: i64 = 30;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    pub issuer: PoolCode,
    pub person_no: PersonNo,
    pub expires_at: i64,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    #[error(transparent)]
    Malformed(#[from] Invalid),
    #[error("e-voucher expired")]
    Expired,
}

/// Signs tokens for the persons one city insures.
#[derive(Clone)]
pub struct VoucherSigner {
    city: PoolCode,
    key: SigningKey,
}

impl std::fmt::Debug for VoucherSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VoucherSigner({})", self.city)
    }
}

/// The public keys of every city of the network, by city.
#[derive(Debug, Clone)]
pub struct VoucherKeys {
    keys: Vec<(PoolCode, VerifyingKey)>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "e-voucher key of city {city} in the network file is not base64 of a 32-byte Ed25519 public key"
)]
pub struct BadPublicKey {
    pub city: PoolCode,
}

impl VoucherKeys {
    pub fn from_network(network: &Network) -> Result<Self, BadPublicKey> {
        let keys = network
            .pools
            .iter()
            .map(|city| {
                let bytes = BASE64
                    .decode(&city.e_voucher_key)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
                let key = bytes.and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
                key.map(|key| (city.code, key))
                    .ok_or(BadPublicKey { city: city.code })
            })
            .collect::<Result<_, _>>()?;
        Ok(VoucherKeys { keys })
    }

    /// Verifies a token's signature with its issuer's key and its validity at `now` (seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Voucher, VoucherError> {
        let malformed = |reason: &str| VoucherError::Malformed(Invalid::new("", reason));
        let (payload_b64, signature_b64) = token
            .split_once('.')
            .ok_or_else(|| malformed("is not an e-voucher token"))?;
        let payload = BASE64URL
            .decode(payload_b64)
            .map_err(|_| malformed("is not an e-voucher token"))?;
        let signature = BASE64URL
            .decode(signature_b64)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .map(|bytes| Signature::from_bytes(&bytes))
            .ok_or_else(|| malformed("is not an e-voucher token"))?;
        let text =
            std::str::from_utf8(&payload).map_err(|_| malformed("is not an e-voucher token"))?;
        let fields: Vec<&str> = text.split('|').collect();
        let [version, issuer, person_no, issued_at, expires_at, _nonce] = fields[..] else {
            return Err(malformed("is not an e-voucher token"));
        };
        if version != VERSION {
            return Err(malformed("has an unknown version"));
        }
        let issuer = PoolCode::parse(issuer).map_err(|_| malformed("names no city"))?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(city, _)| *city == issuer)
            .ok_or_else(|| malformed("is signed by no city of the network"))?;
        // Verify before trusting any other field: everything below is the issuer's word.
        key.verify_strict(&payload, &signature)
            .map_err(|_| malformed("signature does not verify"))?;
        let person_no = PersonNo::parse(person_no).map_err(|_| malformed("names no person"))?;
        if person_no.insured_city() != issuer {
            return Err(malformed(
                "is signed by a city that does not insure the person",
            ));
        }
        let issued_at: i64 = issued_at
            .parse()
            .map_err(|_| malformed("has a malformed time"))?;
        let expires_at: i64 = expires_at
            .parse()
            .map_err(|_| malformed("has a malformed time"))?;
        if issued_at > now + CLOCK_SKEW_SECONDS {
            return Err(malformed("is issued in the future"));
        }
        if now >= expires_at {
            return Err(VoucherError::Expired);
        }
        Ok(Voucher {
            issuer,
            person_no,
            expires_at,
        })
    }
}

impl VoucherSigner {
    pub fn new(city: PoolCode, secret: [u8; 32]) -> Self {
        VoucherSigner {
            city,
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// From base64 of a 32-byte Ed25519 secret key, as configuration carries it.
    pub fn from_base64(city: PoolCode, secret: &str) -> Option<Self> {
        let bytes = BASE64.decode(secret.trim()).ok()?;
        Some(Self::new(city, <[u8; 32]>::try_from(bytes).ok()?))
    }

    /// The well-known key `yitong dev` and tests sign with; `seeds/network.toml` carries its
    /// public half. Anyone can derive it: real networks configure their own.
    pub fn for_development(city: PoolCode) -> Self {
        Self::new(
            city,
            Sha256::digest(format!("yitong development e-voucher key for {city}")).into(),
        )
    }

    /// Base64 of the public key, for the network file.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.key.verifying_key().to_bytes())
    }

    /// A token for `person_no`, valid from `now` for `ttl_seconds`.
    pub fn issue(&self, person_no: &PersonNo, now: i64, ttl_seconds: u32) -> (String, i64) {
        assert_eq!(
            person_no.insured_city(),
            self.city,
            "a city signs vouchers for its own persons only"
        );
        let expires_at = now + i64::from(ttl_seconds);
        let nonce = uuid::Uuid::new_v4().simple();
        let payload = format!(
            "{VERSION}|{}|{person_no}|{now}|{expires_at}|{nonce}",
            self.city
        );
        let signature = self.key.sign(payload.as_bytes());
        let token = format!(
            "{}.{}",
            BASE64URL.encode(payload.as_bytes()),
            BASE64URL.encode(signature.to_bytes())
        );
        (token, expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city(code: &str) -> PoolCode {
        PoolCode::parse(code).unwrap()
    }

    fn keys() -> VoucherKeys {
        VoucherKeys {
            keys: ["370100", "370300"]
                .map(|code| {
                    (
                        city(code),
                        VoucherSigner::for_development(city(code))
                            .key
                            .verifying_key(),
                    )
                })
                .to_vec(),
        }
    }

    // Proves the token rules: a good token verifies; expired, forged, tampered and
    // other-city-signed tokens are refused.
    #[test]
    fn signing_and_verification_table() {
        let jinan = VoucherSigner::for_development(city("370100"));
        let zibo = VoucherSigner::for_development(city("370300"));
        let person = PersonNo::new(city("370100"), 42);
        let now = 1_800_000_000;
        let (good, expires_at) = jinan.issue(&person, now, 120);
        assert_eq!(
            keys().verify(&good, now + 119),
            Ok(Voucher {
                issuer: city("370100"),
                person_no: person.clone(),
                expires_at
            })
        );

        assert_eq!(keys().verify(&good, now + 120), Err(VoucherError::Expired));

        // Zibo's key signing a payload that claims Jinan.
        let (payload, _) = good.split_once('.').unwrap();
        let forged_signature = zibo.key.sign(&BASE64URL.decode(payload).unwrap());
        let forged = format!(
            "{payload}.{}",
            BASE64URL.encode(forged_signature.to_bytes())
        );
        assert!(matches!(
            keys().verify(&forged, now),
            Err(VoucherError::Malformed(_))
        ));

        // A later expiry written into a genuine token.
        let text = String::from_utf8(BASE64URL.decode(payload).unwrap()).unwrap();
        let stretched = text.replace(
            &format!("|{expires_at}|"),
            &format!("|{}|", expires_at + 3600),
        );
        let (_, signature) = good.split_once('.').unwrap();
        let tampered = format!("{}.{signature}", BASE64URL.encode(stretched));
        assert!(matches!(
            keys().verify(&tampered, now),
            Err(VoucherError::Malformed(_))
        ));

        // Zibo cannot vouch for a Jinan person even with its own genuine key.
        let zibo_payload = text.replace("|370100|", "|370300|");
        let zibo_signed = format!(
            "{}.{}",
            BASE64URL.encode(&zibo_payload),
            BASE64URL.encode(zibo.key.sign(zibo_payload.as_bytes()).to_bytes())
        );
        assert!(matches!(
            keys().verify(&zibo_signed, now),
            Err(VoucherError::Malformed(_))
        ));

        for garbage in ["", ".", "abc", "abc.def", &good[..good.len() - 2]] {
            assert!(
                matches!(keys().verify(garbage, now), Err(VoucherError::Malformed(_))),
                "{garbage}"
            );
        }
    }
}
