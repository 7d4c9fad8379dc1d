//! How the command line reaches a network as one caller: an API key (`--api-key`), and the
//! network's CA when the network runs TLS (`--ca`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use yitong_auth::Credentials;
use yitong_rpc::{Authorized, Caller, bearer};

/// A channel that presents the command's credential on every call.
pub type Channel = Authorized<tonic::transport::Channel>;

/// The credential flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// API key to call with (yt1.<id>.<secret>). `yitong dev` writes one for every caller to
    /// data/credentials.toml.
    #[arg(long, global = true, env = "YITONG_API_KEY", hide_env_values = true, value_parser = crate::config::secret)]
    pub api_key: Option<SecretString>,
    /// The network's CA certificate (PEM), to reach servers over TLS (https:// endpoints).
    #[arg(long, global = true, env = "YITONG_CA")]
    pub ca: Option<PathBuf>,
    /// This caller's certificate (PEM) for mutual TLS, with --key; its common name names the
    /// caller (`yitong pki issue`).
    #[arg(long, global = true, env = "YITONG_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, global = true, env = "YITONG_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl ClientArgs {
    /// A channel to `url`, connected now, whose calls present the API key. With `--ca` the
    /// channel speaks TLS, to an `http://` endpoint of the network file too (as the nodes do:
    /// one network file serves both), and presents `--cert`, which Yitong's servers require.
    pub async fn connect(&self, url: &str, connect_timeout: Duration) -> anyhow::Result<Channel> {
        let url = match &self.ca {
            Some(_) => url.replacen("http://", "https://", 1),
            None => url.to_owned(),
        };
        let url = url.as_str();
        if self.ca.is_some() && self.cert.is_none() {
            anyhow::bail!(
                "--ca without --cert and --key: Yitong's TLS servers take only clients that present a certificate of the network's CA (yitong dev --tls makes one for every caller; yitong pki issue makes more)"
            );
        }
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("bad endpoint {url}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        if let Some(ca) = &self.ca {
            let pem = std::fs::read_to_string(ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                let read = |path: &PathBuf| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))
                };
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("bad TLS settings")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let authorization = match &self.api_key {
            Some(key) => {
                bearer(key.expose_secret()).context("the API key is not a valid header value")?
            }
            None => None,
        };
        Ok(Authorized::new(channel, authorization))
    }
}

/// Reads a credentials file (what `yitong dev` writes) and finds callers' keys in it.
pub fn load_credentials(path: &std::path::Path) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read credentials {}", path.display()))?;
    Credentials::from_toml(&text).with_context(|| format!("{} is malformed", path.display()))
}

/// The `authorization` value of `caller` in `credentials`.
pub fn authorization_of(
    credentials: &Credentials,
    caller: &Caller,
) -> anyhow::Result<http::HeaderValue> {
    let key = credentials
        .key(caller)
        .with_context(|| format!("the credentials hold no key for {caller}"))?;
    bearer(key)?.context("empty key")
}
