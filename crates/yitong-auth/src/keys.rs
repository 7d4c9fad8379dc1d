//! API keys: how an HIS, a bureau or an operator (and, on a loopback-only development network,
//! a node) says who it is, in the `authorization: Bearer <key>` metadata of every call.
//!
//! A key reads `yt1.<id>.<secret>`. The server keeps only the key file: for each id, the caller
//! it names and the SHA-256 of the secret, so a leaked key file lets nobody call. Rotation is
//! two edits of that file: issue a new key for the same caller (both work), then revoke the old
//! one. A running server rereads the file when it changes ([`Keyring::watch`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use yitong_rpc::Caller;

/// The prefix of every key's text, naming its format.
const KEY_PREFIX: &str = "yt1";
/// How often a watched key file is checked for changes.
const RELOAD_INTERVAL_MS: u64 = 2_000;
/// Key files larger than this are refused: a key file holds a few thousand keys at most.
const KEY_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A key as its holder has it: the id and the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: String,
    secret: String,
}

impl std::fmt::Debug for ApiKey {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.id)
    }
}

impl ApiKey {
    /// A new key from the operating system's random source: a 64-bit id and a 256-bit secret.
    pub fn generate() -> ApiKey {
        let mut id = [0_u8; 8];
        let mut secret = [0_u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        ApiKey {
            id: hex(&id),
            secret: hex(&secret),
        }
    }

    /// Reads a key's text; `None` when it is not a key of this format.
    pub fn parse(text: &str) -> Option<ApiKey> {
        let mut parts = text.split('.');
        let (Some(KEY_PREFIX), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let hex_of =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex_of(id, 16) && hex_of(secret, 64)).then(|| ApiKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The text the holder sends: `yt1.<id>.<secret>`.
    pub fn expose(&self) -> String {
        format!("{KEY_PREFIX}.{}.{}", self.id, self.secret)
    }

    /// What the key file keeps of this key.
    pub fn entry(&self, caller: &Caller) -> KeyEntry {
        KeyEntry {
            id: self.id.clone(),
            caller: caller.to_string(),
            sha256: hex(&Sha256::digest(self.secret.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// One line of the key file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    pub id: String,
    /// The caller the key authenticates, by its canonical name (`institution:H37030000001`).
    pub caller: String,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
}

/// The key file: `[[keys]]` tables of [`KeyEntry`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyFile {
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

impl KeyFile {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a key file serialises")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0} is larger than {KEY_FILE_BYTES_MAX} bytes")]
    TooLarge(PathBuf),
    #[error("key file is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("key {id}: {reason}")]
    Entry { id: String, reason: String },
}

/// Why a presented key was not accepted. The caller learns only UNAUTHENTICATED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("not a key")]
    Malformed,
    #[error("unknown or revoked key")]
    Unknown,
}

#[derive(Debug)]
struct Known {
    caller: Caller,
    sha256: [u8; 32],
}

/// The keys a server accepts, by id.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: HashMap<String, Known>,
}

impl Keyring {
    pub fn from_file(file: &KeyFile) -> Result<Keyring, KeyringError> {
        let mut keys = HashMap::with_capacity(file.keys.len());
        for entry in &file.keys {
            let bad = |reason: &str| KeyringError::Entry {
                id: entry.id.clone(),
                reason: reason.to_owned(),
            };
            let caller: Caller = entry
                .caller
                .parse()
                .map_err(|_| bad("caller is not valid"))?;
            let sha256 =
                decode_sha256(&entry.sha256).ok_or_else(|| bad("sha256 is not 64 hex digits"))?;
            if keys
                .insert(entry.id.clone(), Known { caller, sha256 })
                .is_some()
            {
                return Err(bad("id appears twice"));
            }
        }
        Ok(Keyring { keys })
    }

    pub fn from_toml(text: &str) -> Result<Keyring, KeyringError> {
        Keyring::from_file(&toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let read = |source| KeyringError::Read {
            path: path.to_owned(),
            source,
        };
        if std::fs::metadata(path).map_err(read)?.len() > KEY_FILE_BYTES_MAX {
            return Err(KeyringError::TooLarge(path.to_owned()));
        }
        Keyring::from_toml(&std::fs::read_to_string(path).map_err(read)?)
    }

    /// Who `presented` (a key's text) names. The secret's hash is compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Result<Caller, BadKey> {
        let key = ApiKey::parse(presented).ok_or(BadKey::Malformed)?;
        let known = self.keys.get(&key.id).ok_or(BadKey::Unknown)?;
        let digest: [u8; 32] = Sha256::digest(key.secret.as_bytes()).into();
        if bool::from(digest.ct_eq(&known.sha256)) {
            Ok(known.caller.clone())
        } else {
            Err(BadKey::Unknown)
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0_u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The keyring a server checks calls against, shared by its connections and replaced whole
/// when the key file changes.
#[derive(Debug, Clone, Default)]
pub struct SharedKeyring(Arc<RwLock<Arc<Keyring>>>);

impl SharedKeyring {
    pub fn new(keyring: Keyring) -> SharedKeyring {
        SharedKeyring(Arc::new(RwLock::new(Arc::new(keyring))))
    }

    pub fn current(&self) -> Arc<Keyring> {
        self.0
            .read()
            .expect("keyring lock is never poisoned")
            .clone()
    }

    pub fn replace(&self, keyring: Keyring) {
        *self.0.write().expect("keyring lock is never poisoned") = Arc::new(keyring);
    }
}

impl Keyring {
    /// Loads `path` and keeps the returned keyring in step with it: every two seconds the
    /// file's modification time is checked and, when it moved, the file is read again. A file
    /// that no longer parses is logged and the keys before it stay in force, so a bad edit
    /// does not lock every caller out.
    pub fn watch(path: PathBuf) -> Result<SharedKeyring, KeyringError> {
        let shared = SharedKeyring::new(Keyring::load(&path)?);
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = modified(&path);
        let keyring = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(RELOAD_INTERVAL_MS));
            loop {
                tick.tick().await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match Keyring::load(&path) {
                    Ok(fresh) => {
                        tracing::info!(path = %path.display(), keys = fresh.len(), "key file reloaded");
                        keyring.replace(fresh);
                    }
                    Err(error) => tracing::error!(
                        path = %path.display(),
                        error = %error,
                        "key file changed but cannot be read; the previous keys stay in force"
                    ),
                }
            }
        });
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key authenticates as the caller its entry names; a wrong secret, an unknown id, a
    // revoked key and junk do not.
    #[test]
    fn keys_authenticate_only_their_caller() {
        let his: Caller = "institution:H37030000001".parse().unwrap();
        let bureau: Caller = "bureau:370300".parse().unwrap();
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        let file = KeyFile {
            keys: vec![a.entry(&his), b.entry(&bureau)],
        };
        let keyring = Keyring::from_toml(&file.to_toml()).unwrap();
        assert_eq!(keyring.authenticate(&a.expose()), Ok(his.clone()));
        assert_eq!(keyring.authenticate(&b.expose()), Ok(bureau));

        let forged = format!("yt1.{}.{}", a.id(), "0".repeat(64));
        assert_eq!(keyring.authenticate(&forged), Err(BadKey::Unknown));
        assert_eq!(
            keyring.authenticate(&ApiKey::generate().expose()),
            Err(BadKey::Unknown)
        );
        for junk in ["", "yt1", "yt1..", "Bearer x", &format!("{}.x", a.expose())] {
            assert_eq!(keyring.authenticate(junk), Err(BadKey::Malformed), "{junk}");
        }

        // Revoking is removing the entry.
        let revoked = Keyring::from_file(&KeyFile {
            keys: vec![b.entry(&"bureau:370300".parse().unwrap())],
        })
        .unwrap();
        assert_eq!(revoked.authenticate(&a.expose()), Err(BadKey::Unknown));
    }

    // A key file with a bad caller, a bad hash or a repeated id is refused whole.
    #[test]
    fn bad_key_files_are_refused() {
        let key = ApiKey::generate();
        let good = key.entry(&"operator:wang".parse().unwrap());
        let mut bad_caller = good.clone();
        bad_caller.caller = "root:1".into();
        let mut bad_hash = good.clone();
        bad_hash.sha256 = "abc".into();
        for keys in [vec![bad_caller], vec![bad_hash], vec![good.clone(), good]] {
            assert!(Keyring::from_file(&KeyFile { keys }).is_err());
        }
    }
}

/// Keys as their holders have them, by caller: what `yitong dev` and the test sandbox hand to
/// their clients (`credentials.toml`). A production network never writes such a file; each
/// holder receives its own key once, from `yitong key issue`. Debug output names the callers
/// and redacts their keys.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: std::collections::BTreeMap<String, SecretString>,
}

/// The file's form of [`Credentials`], keys in the clear: only ever read or written whole.
#[derive(Serialize, Deserialize)]
struct CredentialsFile {
    keys: std::collections::BTreeMap<String, String>,
}

impl Credentials {
    /// A fresh key for each of `callers`.
    pub fn generate(callers: impl IntoIterator<Item = Caller>) -> Credentials {
        Credentials {
            keys: callers
                .into_iter()
                .map(|caller| (caller.to_string(), ApiKey::generate().expose().into()))
                .collect(),
        }
    }

    /// The key of `caller`, as its text.
    pub fn key(&self, caller: &Caller) -> Option<&str> {
        self.keys
            .get(&caller.to_string())
            .map(|key| key.expose_secret())
    }

    /// The server side of these keys: their hashes only.
    pub fn key_file(&self) -> KeyFile {
        KeyFile {
            keys: self
                .keys
                .iter()
                .map(|(caller, text)| {
                    let key = ApiKey::parse(text.expose_secret()).expect("generated keys parse");
                    key.entry(&caller.parse().expect("generated callers parse"))
                })
                .collect(),
        }
    }

    pub fn keyring(&self) -> Keyring {
        Keyring::from_file(&self.key_file()).expect("generated keys are valid")
    }

    pub fn to_toml(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|(caller, key)| (caller.clone(), key.expose_secret().to_owned()))
            .collect();
        toml::to_string(&CredentialsFile { keys }).expect("credentials serialise")
    }

    pub fn from_toml(text: &str) -> Result<Credentials, KeyringError> {
        let file: CredentialsFile = toml::from_str(text)?;
        let mut keys = std::collections::BTreeMap::new();
        for (caller, key) in file.keys {
            let bad = |reason: &str| KeyringError::Entry {
                id: caller.clone(),
                reason: reason.to_owned(),
            };
            caller
                .parse::<Caller>()
                .map_err(|_| bad("caller is not valid"))?;
            ApiKey::parse(&key).ok_or_else(|| bad("not a key"))?;
            keys.insert(caller, SecretString::from(key));
        }
        Ok(Credentials { keys })
    }
}

impl Credentials {
    /// The callers these credentials hold keys for.
    pub fn callers(&self) -> impl Iterator<Item = Caller> + '_ {
        self.keys
            .keys()
            .map(|caller| caller.parse().expect("credentials hold valid callers"))
    }
}

impl Credentials {
    /// Issues `caller` a fresh key, replacing any it had.
    pub fn insert(&mut self, caller: Caller) {
        self.keys
            .insert(caller.to_string(), ApiKey::generate().expose().into());
    }
}
