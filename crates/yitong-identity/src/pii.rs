//! Keys that protect citizen IDs at rest: an AEAD seals them, a keyed hash finds them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use yitong_core::{CitizenId, PoolCode};

/// The two secrets of a city's identity store.
///
/// Citizen IDs are sealed with ChaCha20-Poly1305 (random nonce per row) so a copy of the
/// database alone reveals none, and looked up by HMAC-SHA256 so a lookup never decrypts.
#[derive(Clone)]
pub struct PiiKeys {
    seal: ChaCha20Poly1305,
    hash_key: [u8; 32],
}

impl std::fmt::Debug for PiiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PiiKeys(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PiiKeyError {
    #[error("key is not base64")]
    NotBase64,
    #[error("key must be 32 bytes, found {0}")]
    WrongLength(usize),
}

impl PiiKeys {
    pub fn new(seal_key: [u8; 32], hash_key: [u8; 32]) -> Self {
        PiiKeys {
            seal: ChaCha20Poly1305::new(&seal_key.into()),
            hash_key,
        }
    }

    /// Keys from two base64-encoded 32-byte secrets, as configuration carries them.
    pub fn from_base64(seal_key: &str, hash_key: &str) -> Result<Self, PiiKeyError> {
        Ok(Self::new(decode_key(seal_key)?, decode_key(hash_key)?))
    }

    /// Well-known keys for `yitong dev` and tests, derived from the city code. Anyone can derive
    /// them: `yitong serve` refuses to start without configured keys.
    pub fn for_development(city: PoolCode) -> Self {
        let derive = |purpose: &str| -> [u8; 32] {
            Sha256::digest(format!("yitong development {purpose} key for {city}")).into()
        };
        Self::new(derive("seal"), derive("hash"))
    }

    /// Seals a citizen ID: base64 of a fresh 12-byte nonce followed by the ciphertext.
    pub fn seal(&self, id: &CitizenId) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .seal
            .encrypt(&nonce, id.expose().as_bytes())
            .expect("sealing a short string cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        BASE64.encode(sealed)
    }

    /// Opens a sealed citizen ID; `None` when it was sealed with another key or altered.
    pub fn open(&self, sealed: &str) -> Option<CitizenId> {
        let bytes = BASE64.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce = Nonce::from(<[u8; 12]>::try_from(nonce).ok()?);
        let plain = self.seal.decrypt(&nonce, ciphertext).ok()?;
        CitizenId::parse(std::str::from_utf8(&plain).ok()?).ok()
    }

    /// The lookup key of a citizen ID: HMAC-SHA256 under the hash key, hex.
    pub fn lookup_hash(&self, id: &CitizenId) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key)
            .expect("HMAC takes any key length");
        mac.update(id.expose().as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

impl PiiKeys {
    /// The digest under which a request's first reply is kept: keyed, because identity requests
    /// carry citizen IDs and a plain hash of one is easy to reverse.
    pub fn request_digest(&self, request: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key)
            .expect("HMAC takes any key length");
        mac.update(b"request:");
        mac.update(request);
        hex(&mac.finalize().into_bytes())
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], PiiKeyError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| PiiKeyError::NotBase64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| PiiKeyError::WrongLength(bytes.len()))
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves sealing round-trips, differs each time, and fails under another city's key.
    #[test]
    fn seal_open_and_hash() {
        let jinan = PiiKeys::for_development(PoolCode::parse("370100").unwrap());
        let zibo = PiiKeys::for_development(PoolCode::parse("370300").unwrap());
        let id = CitizenId::parse("11010519491231002X").unwrap();
        let sealed = jinan.seal(&id);
        assert!(!sealed.contains("1949"));
        assert_ne!(sealed, jinan.seal(&id), "a fresh nonce every time");
        assert_eq!(jinan.open(&sealed), Some(id.clone()));
        assert_eq!(zibo.open(&sealed), None);
        assert_eq!(jinan.lookup_hash(&id), jinan.lookup_hash(&id));
        assert_ne!(jinan.lookup_hash(&id), zibo.lookup_hash(&id));
    }
}
