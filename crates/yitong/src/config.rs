//! Configuration of `yitong serve`: a TOML file, overridden by environment variables and flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The configuration file (`--config`, or `YITONG_CONFIG`). Every key is optional; a flag or
/// its environment variable wins over the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The network file listing every city's endpoints.
    pub network: Option<PathBuf>,
    /// postgres://... for production; a directory for embedded SQLite.
    pub database_url: Option<String>,
    /// Address to listen on; defaults to this service's address in the network file.
    pub listen: Option<String>,
    /// Base64 of the 32-byte key that seals citizen IDs (identity only).
    pub pii_seal_key: Option<String>,
    /// Base64 of the 32-byte key of the citizen-ID lookup hash (identity only).
    pub pii_hash_key: Option<String>,
    /// Base64 of the city's 32-byte Ed25519 key that signs e-vouchers (identity only); its
    /// public half is the city's `e_voucher_key` in the network file.
    pub e_voucher_signing_key: Option<String>,
    /// Connections in the store's pool.
    pub pool_connections_max: Option<u32>,
    /// Calls from outside (HIS, bureaus, operators) the server runs at once; beyond it calls
    /// are refused RESOURCE_EXHAUSTED (`yitong_node::shed`). Half may start new work.
    pub calls_in_flight_max: Option<usize>,
    /// Deadline of every call to another node, in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// Address of the Prometheus metrics endpoint; none when absent.
    pub metrics_listen: Option<String>,
    /// The network's PKI folder; without it the server serves plaintext, on loopback only.
    pub pki: Option<PathBuf>,
    /// The key file of the API keys this server accepts.
    pub keys: Option<PathBuf>,
    /// This node's own API key, for its peers on a loopback network without a PKI.
    pub node_key: Option<String>,
}

impl ConfigFile {
    pub fn load(path: Option<&Path>) -> anyhow::Result<ConfigFile> {
        let Some(path) = path else {
            return Ok(ConfigFile::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("config file {} is malformed", path.display()))
    }
}

/// Resolves once the process is asked to stop: Ctrl-C, or SIGTERM from a container runtime.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("can listen for SIGTERM");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
