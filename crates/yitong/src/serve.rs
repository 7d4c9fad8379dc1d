//! `yitong serve <service> --city <city>`: one service as its own process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use yitong_catalog::CatalogNode;

use yitong_auth::{Keyring, Pki, SharedKeyring};
use yitong_core::{Network, Owner, PoolCode, Service};
use yitong_identity::{IdentityNode, PiiKeys, VoucherSigner};
use yitong_ledger::LedgerNode;
use yitong_node::shed::ShedLimits;
use yitong_node::{Role, Security, serve};
use yitong_rpc::{CallLimits, PeerAccess};
use yitong_settlement::treatment::TreatmentOptions;
use yitong_settlement::{BenefitNode, SettlementNode};
use yitong_store::{Location, PoolLimits, Store};

use secrecy::ExposeSecret;

use crate::config::{Settings, shutdown_signal};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServiceArg {
    Identity,
    Catalog,
    Settlement,
    Ledger,
}

impl From<ServiceArg> for Service {
    fn from(arg: ServiceArg) -> Service {
        match arg {
            ServiceArg::Identity => Service::Identity,
            ServiceArg::Catalog => Service::Catalog,
            ServiceArg::Settlement => Service::Settlement,
            ServiceArg::Ledger => Service::Ledger,
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Every setting is also an environment variable YITONG_<NAME> \
    (YITONG_DATABASE_URL) and a key <name> of the --config file (database_url). A flag wins \
    over the environment, the environment over the file, the file over the default."
)]
pub struct ServeArgs {
    /// The service to run.
    service: ServiceArg,
    /// Configuration file (TOML); environment variables and flags override it.
    #[arg(long, env = "YITONG_CONFIG")]
    config: Option<PathBuf>,
    /// The settings as the flags give them, before the environment and the file.
    #[command(flatten)]
    pub(crate) flags: Settings,
}

impl ServeArgs {
    /// The trace resource's default service name ("yitong-settlement") and its owner
    /// ("370300", or "clearing" for the ledger), as the settings give them (the flags alone
    /// when the settings do not load: `run` reports why).
    pub fn trace_identity(&self) -> (String, String) {
        let service = Service::from(self.service);
        let settings = Settings::load(self.config.as_deref(), &self.flags)
            .unwrap_or_else(|_| self.flags.clone());
        let owner = match service {
            Service::Ledger => "clearing".to_owned(),
            _ => settings.city.unwrap_or_default(),
        };
        (format!("yitong-{service}"), owner)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref(), &args.flags)?;
    let service = Service::from(args.service);
    let network_path = settings
        .network
        .clone()
        .unwrap_or_else(|| crate::default_seeds().join("network.toml"));
    let network = Arc::new(Network::load(&network_path)?);
    let owner = match (service, &settings.city) {
        (Service::Ledger, _) => Owner::ClearingHouse,
        (_, None) => bail!("--city is required for the {service} service"),
        (_, Some(code)) => {
            let code =
                PoolCode::parse(code).map_err(|invalid| anyhow::anyhow!("--city {invalid}"))?;
            match network.pool(code) {
                Some(city) if city.enabled => Owner::Pool(code),
                Some(_) => bail!("city {code} is not enabled in {}", network_path.display()),
                None => bail!("city {code} is not in {}", network_path.display()),
            }
        }
    };
    if let Owner::Pool(code) = owner {
        alone_at_its_node(&network, code)
            .with_context(|| format!("cannot serve from {}", network_path.display()))?;
    }
    let database_url = settings.database_url.as_ref().context(
        "no database: set --database-url, YITONG_DATABASE_URL or database_url in the config file",
    )?;
    let listen = match &settings.listen {
        Some(listen) => listen.clone(),
        None => {
            let configured = match owner {
                Owner::Pool(code) => {
                    network.endpoint(network.pool(code).expect("checked above"), service)
                }
                Owner::ClearingHouse => network.clearing_house.ledger.clone(),
            };
            configured
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_owned()
        }
    };
    let pool = PoolLimits {
        connections_max: settings
            .pool_connections_max
            .unwrap_or(PoolLimits::default().connections_max),
        ..PoolLimits::default()
    };
    let calls = CallLimits {
        call_timeout_ms: settings
            .call_timeout_ms
            .unwrap_or(CallLimits::default().call_timeout_ms),
        ..CallLimits::default()
    };
    let keyring = match &settings.keys {
        Some(path) => Keyring::watch(path.clone()).context("cannot load the key file")?,
        None => SharedKeyring::default(),
    };
    let security = Security {
        keyring,
        pki: settings.pki.clone().map(Pki::at),
        node_keys: settings
            .node_key
            .clone()
            .map(|key| HashMap::from([(owner, key)]))
            .unwrap_or_default(),
    };
    // The ledger calls no one; every other service needs a credential for its peers.
    let access = match service {
        Service::Ledger => PeerAccess::with_limits(calls),
        _ => security
            .peer_access(owner, calls)
            .context("give --pki, or --node-key on a loopback network")?,
    };
    let calls = &access;

    let location = Location::parse(database_url.expose_secret());
    let store = Store::open(&location, service, owner, pool).await?;
    store.migrate().await?;
    let role = match (owner, service) {
        (Owner::Pool(city), Service::Identity) => {
            let (Some(seal), Some(hash)) = (&settings.pii_seal_key, &settings.pii_hash_key) else {
                bail!(
                    "the identity service needs YITONG_PII_SEAL_KEY and YITONG_PII_HASH_KEY (base64 of 32 random bytes each)"
                );
            };
            let keys = PiiKeys::from_base64(seal.expose_secret(), hash.expose_secret())
                .context("malformed citizen-ID key")?;
            let signing_key = settings.e_voucher_signing_key.as_ref().context("the identity service needs YITONG_E_VOUCHER_SIGNING_KEY (base64 of a 32-byte Ed25519 key)")?;
            let signer = VoucherSigner::from_base64(city, signing_key.expose_secret())
                .context("malformed e-voucher signing key")?;
            let published = &network.pool(city).expect("checked above").e_voucher_key;
            if &signer.public_key_base64() != published {
                bail!(
                    "the e-voucher signing key does not match city {city}'s e_voucher_key in the network file"
                );
            }
            Role::Identity(Box::new(IdentityNode::new(
                city,
                store,
                keys,
                signer,
                network.clone(),
                calls,
            )?))
        }
        (Owner::Pool(city), Service::Catalog) => Role::Catalog(
            CatalogNode::new(city, store, network.clone(), calls)
                .with_context(|| format!("malformed network file {}", network_path.display()))?,
        ),
        (Owner::Pool(city), Service::Settlement) => Role::Settlement(
            SettlementNode::new(city, store.clone(), network.clone(), calls)?.with_options(
                TreatmentOptions {
                    visit_look_back_days: settings
                        .visit_look_back_days
                        .unwrap_or(TreatmentOptions::default().visit_look_back_days),
                    ..TreatmentOptions::default()
                },
            ),
            BenefitNode::new(city, store, network.clone(), calls)?,
        ),
        (Owner::ClearingHouse, Service::Ledger) => {
            Role::Ledger(LedgerNode::start(store, network.clone()).await?)
        }
        (owner, service) => unreachable!("{owner} does not run {service}"),
    };

    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(service = %service, owner = %owner, address = %listener.local_addr()?, "serving");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    if let Some(address) = &settings.metrics_listen {
        let metrics = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        tracing::info!(address = %metrics.local_addr()?, "serving metrics");
        let stop = shutdown.clone();
        tokio::spawn(yitong_telemetry::serve_metrics(metrics, async move {
            stop.cancelled().await;
        }));
    }
    // The settlement node's recovery sweep and the ledger's expiry sweep run at start-up and
    // periodically, until shutdown.
    match &role {
        Role::Settlement(node, _) => {
            node.spawn_recovery(shutdown.clone());
        }
        Role::Ledger(node) => {
            node.spawn_expiry_sweep(shutdown.clone());
        }
        Role::Identity(_) | Role::Catalog(_) => {}
    }
    let shed = ShedLimits::with_entry_calls(
        settings
            .calls_in_flight_max
            .unwrap_or(ShedLimits::default().entry_calls_in_flight_max),
    );
    serve(owner, role, listener, &security, shed, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Refuses a pool whose node the network file shares with other pools of its city: this
/// process would serve one pool on an endpoint every one of them is reached at, and the others
/// would find their calls refused. A shared node runs in `yitong dev` (and the sandbox); a
/// process serving every pool of its endpoint, with each pool's keys, is not built yet.
fn alone_at_its_node(network: &Network, code: PoolCode) -> anyhow::Result<()> {
    let pool = network.pool(code).expect("the pool is in the network");
    let others: Vec<String> = network
        .node_pools(pool)
        .iter()
        .filter(|other| other.code != code)
        .map(|other| other.code.to_string())
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    bail!(
        "pool {code} shares its node ({}, {}, {}) with pool {}: `yitong serve` runs the node of \
         one pool; give each pool endpoints of its own, or run the shared node in `yitong dev`",
        pool.identity,
        pool.catalog,
        pool.settlement,
        others.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a pool of a node of its own is served, and a pool whose node the file shares with
    // another pool of its city is refused, naming both pools.
    #[test]
    fn a_pool_of_a_shared_node_is_refused() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../seeds/network.toml"
        ))
        .expect("seeds/network.toml");
        let code = |text: &str| PoolCode::parse(text).expect("a pool code");
        let seeds = Network::from_toml(&text).expect("the seeds' network");
        let dongying = seeds.pool(code("370500")).expect("Dongying");
        let oilfield = seeds.pool(code("370590")).expect("the Oilfield");
        assert!(alone_at_its_node(&seeds, dongying.code).is_ok());

        let mut shared = text.clone();
        for (theirs, ours) in [
            (&oilfield.identity, &dongying.identity),
            (&oilfield.catalog, &dongying.catalog),
            (&oilfield.settlement, &dongying.settlement),
        ] {
            shared = shared.replace(&format!("\"{theirs}\""), &format!("\"{ours}\""));
        }
        let shared = shared.replace("enabled = false", "enabled = true");
        let shared = Network::from_toml(&shared).expect("a shared node is valid");
        let refusal = alone_at_its_node(&shared, dongying.code)
            .expect_err("Dongying's node is shared")
            .to_string();
        assert!(
            refusal.contains("370500") && refusal.contains("370590"),
            "{refusal}"
        );
        assert!(alone_at_its_node(&shared, code("370100")).is_ok());
    }
}
