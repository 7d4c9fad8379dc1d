//! Who may call what. Every server authenticates each call (a client certificate from the
//! network's CA, or an API key), checks it against the permission matrix, and hands the handler
//! the [`yitong_rpc::Caller`]; every node presents its own credential to its peers.
//!
//! - [`keys`]: API keys, stored by the server only as hashes, rotatable without a restart.
//! - [`permissions`]: the matrix of roles and RPCs.
//! - [`layer`]: the server layer that applies both.
//! - [`pki`]: the network's CA and certificates (`yitong pki init`), and the TLS settings of
//!   servers and clients.

pub mod keys;
pub mod layer;
pub mod permissions;
pub mod pki;

pub use keys::{ApiKey, Credentials, KeyEntry, KeyFile, Keyring, KeyringError, SharedKeyring};
pub use layer::{AuthLayer, authenticate};
pub use permissions::{Grant, MATRIX, Verdict};
pub use pki::{Pki, PkiError, Validity};
