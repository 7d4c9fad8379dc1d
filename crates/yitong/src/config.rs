//! Configuration of `yitong serve`: every setting declared once ([`Settings`]), and the file,
//! the environment and the flags merged in one place by figment ([`Settings::load`]).
//!
//! A setting has one name in three spellings: the flag `--pool-connections-max`, the
//! environment variable `YITONG_POOL_CONNECTIONS_MAX` and the key `pool_connections_max` of the
//! TOML file given by `--config` (or `YITONG_CONFIG`). A flag wins over the environment, the
//! environment over the file, and a setting none of them gives takes its default. An
//! environment variable set to the empty string counts as not set.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The prefix of every setting's environment variable.
const ENV_PREFIX: &str = "YITONG_";

/// Every setting of `yitong serve`, declared once: a flag, an environment variable and a key
/// of the configuration file (see the module's documentation for the spellings and the
/// order). Every one is optional in every layer; secrets (keys, and the database URL, which
/// may hold a password) print as `[REDACTED]` in Debug output.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Region code of a pool this node serves: a city's own pool has the city's code (not for
    /// the ledger, which the clearing house runs). A node the network file shares among pools
    /// of one city serves all of them, named by any one.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// The network file listing every pool's endpoints [default: seeds/network.toml].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<PathBuf>,
    /// postgres://... for production; a directory for embedded SQLite.
    #[arg(long, value_parser = secret)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    pub database_url: Option<SecretString>,
    /// Address to listen on [default: this service's address in the network file].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Base64 of the 32-byte key that seals citizen IDs (identity only).
    #[arg(long, value_parser = secret)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    pub pii_seal_key: Option<SecretString>,
    /// Base64 of the 32-byte key of the citizen-ID lookup hash (identity only).
    #[arg(long, value_parser = secret)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    pub pii_hash_key: Option<SecretString>,
    /// Base64 of the pool's 32-byte Ed25519 key that signs e-vouchers (identity only); its
    /// public half is the pool's `e_voucher_key` in the network file. A node of several pools
    /// takes one key a pool, separated by commas, each matched to its pool by its public half.
    #[arg(long, value_parser = secret)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    pub e_voucher_signing_key: Option<SecretString>,
    /// Connections in the store's pool.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_connections_max: Option<u32>,
    /// Calls from outside (HIS, bureaus, operators) the server runs at once; beyond it calls
    /// are refused RESOURCE_EXHAUSTED (`yitong_node::shed`). Half may start new work.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_in_flight_max: Option<usize>,
    /// Deadline of every call to another node, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u64>,
    /// How many days back a visit may have begun (settlement only): RegisterVisit refuses a
    /// `began_at` dated, in China Standard Time, before today less this many days.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_look_back_days: Option<u32>,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`), "0.0.0.0:9464"; none when
    /// not given.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The network's PKI folder (`yitong pki init`): the server speaks TLS with its node
    /// certificate, checks client certificates against the network's CA, and calls its peers
    /// with its certificate. Without it the server serves plaintext, on loopback only.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pki: Option<PathBuf>,
    /// The key file (`yitong key issue`): hashes of the API keys this server accepts, reread
    /// when it changes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<PathBuf>,
    /// This node's own API key, presented to its peers on a loopback network without a PKI. A
    /// node of several pools takes POOL=KEY for each, separated by commas.
    #[arg(long, value_parser = secret)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    pub node_key: Option<SecretString>,
}

/// A flag's (or its environment variable's) text as a secret, from the moment it is parsed:
/// the value parser of every flag that holds a key or a password.
pub fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// Hands a secret to figment, which merges the layers as plain values; what comes out of the
/// merge is a [`SecretString`] again.
fn expose<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_some(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// A command of its own around [`Settings`], to read the settings' names off clap.
#[derive(Debug, clap::Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// Every setting's name as the file spells it (`pool_connections_max`): the field names.
    pub fn names() -> Vec<String> {
        SettingsOnly::command()
            .get_arguments()
            .map(|argument| argument.get_id().to_string())
            .filter(|name| name != "help")
            .collect()
    }

    /// The settings as the file at `file` (if any), then the environment, then `flags` give
    /// them, each layer over the one before.
    pub fn load(file: Option<&Path>, flags: &Settings) -> anyhow::Result<Settings> {
        Settings::merge(file, std::env::vars(), flags)
    }

    /// [`Settings::load`] with the environment given, for tests.
    fn merge(
        file: Option<&Path>,
        environment: impl Iterator<Item = (String, String)>,
        flags: &Settings,
    ) -> anyhow::Result<Settings> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            anyhow::ensure!(path.is_file(), "config file {} not found", path.display());
            figment = figment.merge(Toml::file_exact(path));
        }
        // Variables are read as text and left to the settings' types to read (lossily, so
        // "8" is a number where a number is wanted): figment's own `Env` would turn a city's
        // "370100" into a number where a string is wanted.
        let names = Settings::names();
        let variables: std::collections::BTreeMap<String, String> = environment
            .filter_map(|(variable, value)| {
                let name = variable.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
                (names.contains(&name) && !value.is_empty()).then_some((name, value))
            })
            .collect();
        figment
            .merge(Serialized::globals(variables))
            .merge(Serialized::globals(flags))
            .extract_lossy()
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| match file {
                Some(path) => format!(
                    "the settings (config file {}) are not valid",
                    path.display()
                ),
                None => "the settings are not valid".to_owned(),
            })
    }

    /// The flags of a command line, for tests.
    #[cfg(test)]
    fn from_flags(flags: &[&str]) -> Settings {
        use clap::FromArgMatches;
        let matches = SettingsOnly::command()
            .try_get_matches_from(std::iter::once("serve").chain(flags.iter().copied()))
            .expect("valid flags");
        Settings::from_arg_matches(&matches).expect("valid flags")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    // One name in three places, and the order: flags over the environment over the file; a
    // setting only the file gives comes from the file; the city reads as text whatever layer
    // gives it, numbers as numbers.
    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(
            &file,
            "city = \"370100\"\nlisten = \"127.0.0.1:1\"\npool_connections_max = 2\n\
             call_timeout_ms = 100\nnode_key = \"from-file\"\n",
        )
        .unwrap();
        let env = environment(&[
            ("YITONG_LISTEN", "127.0.0.1:2"),
            ("YITONG_POOL_CONNECTIONS_MAX", "3"),
            ("YITONG_CITY", "370300"),
            ("YITONG_LOG_FORMAT", "text"),
            ("YITONG_METRICS_LISTEN", ""),
            ("PATH", "/bin"),
        ]);
        let flags = Settings::from_flags(&["--listen", "127.0.0.1:3"]);
        let merged = Settings::merge(Some(&file), env, &flags).unwrap();
        assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:3"));
        assert_eq!(merged.pool_connections_max, Some(3));
        assert_eq!(merged.city.as_deref(), Some("370300"));
        assert_eq!(merged.call_timeout_ms, Some(100));
        assert_eq!(
            merged.node_key.as_ref().map(|key| key.expose_secret()),
            Some("from-file")
        );
        assert_eq!(merged.metrics_listen, None);
        assert!(merged.database_url.is_none());
    }

    // A key the settings do not have, in the file, is refused by name; a missing file too.
    #[test]
    fn unknown_keys_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "database_urll = \"postgres://x\"\n").unwrap();
        let error =
            Settings::merge(Some(&file), environment(&[]), &Settings::default()).unwrap_err();
        assert!(format!("{error:#}").contains("database_urll"), "{error:#}");
        let missing = dir.path().join("absent.toml");
        assert!(Settings::merge(Some(&missing), environment(&[]), &Settings::default()).is_err());
    }

    // Fifteen settings, each a flag of the same name.
    #[test]
    fn every_setting_has_one_name() {
        let names = Settings::names();
        assert_eq!(names.len(), 15, "{names:?}");
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }
}
