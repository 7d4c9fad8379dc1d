//! `yitong serve <service> --city <pool>`: one service of a node (every pool the network file
//! puts on it) as its own process.

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
use yitong_node::{Role, Security, serve_node};
use yitong_rpc::{CallLimits, PeerAccess};
use yitong_settlement::treatment::TreatmentOptions;
use yitong_settlement::{BenefitNode, SettlementNode};
use yitong_store::{Location, PoolLimits, Store};

use secrecy::{ExposeSecret, SecretString};

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
    // The pools this process serves: the node of `--city`, which the network file may share
    // with other pools of its city (they list the same endpoints).
    let owners: Vec<Owner> = match owner {
        Owner::Pool(code) => network
            .node_pools(network.pool(code).expect("checked above"))
            .iter()
            .map(|pool| Owner::Pool(pool.code))
            .collect(),
        Owner::ClearingHouse => vec![Owner::ClearingHouse],
    };
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
        node_keys: match &settings.node_key {
            Some(keys) => node_keys(keys.expose_secret(), &owners).context("--node-key")?,
            None => HashMap::new(),
        },
    };
    let mut signers = match (service, &settings.e_voucher_signing_key) {
        (Service::Identity, Some(keys)) => {
            signers(keys.expose_secret(), &owners, &network).context("--e-voucher-signing-key")?
        }
        (Service::Identity, None) => bail!(
            "the identity service needs YITONG_E_VOUCHER_SIGNING_KEY (base64 of a 32-byte Ed25519 \
             key; one a pool of the node, separated by commas)"
        ),
        _ => HashMap::new(),
    };
    let location = Location::parse(database_url.expose_secret());
    let mut roles = Vec::with_capacity(owners.len());
    for owner in &owners {
        // The ledger calls no one; every other service needs a credential for its peers.
        let access = match service {
            Service::Ledger => PeerAccess::with_limits(calls),
            _ => security
                .peer_access(*owner, calls)
                .context("give --pki, or --node-key on a loopback network")?,
        };
        let store = Store::open(&location, service, *owner, pool).await?;
        store.migrate().await?;
        let role = role(
            Node {
                service,
                owner: *owner,
                network: &network,
                settings: &settings,
                access: &access,
            },
            store,
            signers.remove(owner),
        )
        .await
        .with_context(|| format!("cannot serve {owner} from {}", network_path.display()))?;
        roles.push((*owner, role));
    }

    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let pools: Vec<String> = owners.iter().map(ToString::to_string).collect();
    tracing::info!(service = %service, owners = %pools.join(","), address = %listener.local_addr()?, "serving");
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
    // The settlement nodes' recovery sweeps and the ledger's expiry sweep run at start-up and
    // periodically, until shutdown.
    for (_, role) in &roles {
        match role {
            Role::Settlement(node, _) => {
                node.spawn_recovery(shutdown.clone());
            }
            Role::Ledger(node) => {
                node.spawn_expiry_sweep(shutdown.clone());
            }
            Role::Identity(_) | Role::Catalog(_) => {}
        }
    }
    let shed = ShedLimits::with_entry_calls(
        settings
            .calls_in_flight_max
            .unwrap_or(ShedLimits::default().entry_calls_in_flight_max),
    );
    serve_node(roles, listener, &security, shed, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// What one pool's role at this node is built from.
struct Node<'a> {
    service: Service,
    owner: Owner,
    network: &'a Arc<Network>,
    settings: &'a Settings,
    access: &'a PeerAccess,
}

/// The role `node.owner` plays for its service, on its own `store`; `signer` is its e-voucher
/// signing key (identity only).
async fn role(node: Node<'_>, store: Store, signer: Option<VoucherSigner>) -> anyhow::Result<Role> {
    let Node {
        service,
        owner,
        network,
        settings,
        access,
    } = node;
    Ok(match (owner, service) {
        (Owner::Pool(city), Service::Identity) => {
            let (Some(seal), Some(hash)) = (&settings.pii_seal_key, &settings.pii_hash_key) else {
                bail!(
                    "the identity service needs YITONG_PII_SEAL_KEY and YITONG_PII_HASH_KEY (base64 of 32 random bytes each)"
                );
            };
            let keys = PiiKeys::from_base64(seal.expose_secret(), hash.expose_secret())
                .context("malformed citizen-ID key")?;
            let signer = signer.context("no e-voucher signing key for this pool")?;
            Role::Identity(Box::new(IdentityNode::new(
                city,
                store,
                keys,
                signer,
                network.clone(),
                access,
            )?))
        }
        (Owner::Pool(city), Service::Catalog) => Role::Catalog(
            CatalogNode::new(city, store, network.clone(), access)
                .context("malformed network file")?,
        ),
        (Owner::Pool(city), Service::Settlement) => Role::Settlement(
            SettlementNode::new(city, store.clone(), network.clone(), access)?.with_options(
                TreatmentOptions {
                    visit_look_back_days: settings
                        .visit_look_back_days
                        .unwrap_or(TreatmentOptions::default().visit_look_back_days),
                    ..TreatmentOptions::default()
                },
            ),
            BenefitNode::new(city, store, network.clone(), access)?,
        ),
        (Owner::ClearingHouse, Service::Ledger) => {
            Role::Ledger(LedgerNode::start(store, network.clone()).await?)
        }
        (owner, service) => unreachable!("{owner} does not run {service}"),
    })
}

fn listed(owners: &[Owner]) -> String {
    owners
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The node keys of `owners` from `--node-key`: a bare key for a node of one pool, or
/// `POOL=KEY` pairs separated by commas, one for each pool of a node the network file shares.
fn node_keys(text: &str, owners: &[Owner]) -> anyhow::Result<HashMap<Owner, SecretString>> {
    if !text.contains('=') {
        return match owners {
            [one] => Ok(HashMap::from([(*one, SecretString::from(text.trim()))])),
            _ => bail!(
                "this node serves pools {}: give POOL=KEY for each, separated by commas",
                listed(owners)
            ),
        };
    }
    let mut keys = HashMap::new();
    for pair in text.split(',') {
        let (pool, key) = pair
            .split_once('=')
            .context("each entry is POOL=KEY, separated by commas")?;
        let code = PoolCode::parse(pool.trim()).map_err(|invalid| anyhow::anyhow!("{invalid}"))?;
        let owner = Owner::Pool(code);
        if !owners.contains(&owner) {
            bail!(
                "pool {code} is not served by this node ({})",
                listed(owners)
            );
        }
        if keys.insert(owner, SecretString::from(key.trim())).is_some() {
            bail!("pool {code} is given twice");
        }
    }
    if let Some(missing) = owners.iter().find(|owner| !keys.contains_key(owner)) {
        bail!("no key for pool {missing}");
    }
    Ok(keys)
}

/// The e-voucher signing keys of `owners` from `--e-voucher-signing-key`: one key a pool,
/// separated by commas, each matched to its pool by its public half (the pool's
/// `e_voucher_key` in the network file).
fn signers(
    text: &str,
    owners: &[Owner],
    network: &Network,
) -> anyhow::Result<HashMap<Owner, VoucherSigner>> {
    let mut signers = HashMap::new();
    for (n, key) in text.split(',').map(str::trim).enumerate() {
        let n = n + 1;
        let owner = owners
            .iter()
            .find(|owner| {
                let Owner::Pool(code) = owner else {
                    return false;
                };
                let published = &network
                    .pool(*code)
                    .expect("a pool of the node")
                    .e_voucher_key;
                VoucherSigner::from_base64(*code, key)
                    .is_some_and(|signer| &signer.public_key_base64() == published)
            })
            .with_context(|| {
                format!(
                    "key {n} is malformed or signs for none of this node's pools ({}): its \
                     public half is no pool's e_voucher_key in the network file",
                    listed(owners)
                )
            })?;
        let Owner::Pool(code) = owner else {
            unreachable!("matched a pool above")
        };
        let signer = VoucherSigner::from_base64(*code, key).expect("parsed above");
        if signers.insert(*owner, signer).is_some() {
            bail!("key {n} signs for pool {code} again");
        }
    }
    if let Some(missing) = owners.iter().find(|owner| !signers.contains_key(owner)) {
        bail!("no key signs for pool {missing}");
    }
    Ok(signers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(text: &str) -> Owner {
        Owner::Pool(PoolCode::parse(text).expect("a pool code"))
    }

    // Proves a node of one pool takes a bare key, and a node of two pools a key for each as
    // POOL=KEY; a key for a pool the node does not serve, one given twice or one missing is
    // refused, naming the pool.
    #[test]
    fn node_keys_name_their_pools() {
        let one = [pool("370100")];
        let keys = node_keys("yt1.a.b", &one).expect("a bare key");
        assert_eq!(keys[&one[0]].expose_secret(), "yt1.a.b");
        let two = [pool("370500"), pool("370590")];
        let keys = node_keys("370500=yt1.a.b, 370590=yt1.c.d", &two).expect("a key each");
        assert_eq!(keys[&two[1]].expose_secret(), "yt1.c.d");
        for (text, said) in [
            ("yt1.a.b", "POOL=KEY"),
            ("370500=yt1.a.b", "no key for pool 370590"),
            ("370500=a,370590=b,370100=c", "370100 is not served"),
            ("370500=a,370500=b", "given twice"),
        ] {
            let refusal = node_keys(text, &two).expect_err(text).to_string();
            assert!(refusal.contains(said), "{text}: {refusal}");
        }
    }

    // Proves each pool of a shared node gets the signing key whose public half the network
    // file publishes for it, in whatever order the keys come, and that a key signing for no
    // pool of the node, or a pool left without a key, is refused.
    #[test]
    fn signing_keys_are_matched_to_their_pools() {
        use base64::Engine;
        let base64 = base64::engine::general_purpose::STANDARD;
        let mut network = yitong_core::Network::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../seeds/network.toml"
        )))
        .expect("the seeds' network");
        // Each pool publishes the public half of a key of its own: [n; 32] for the n-th.
        for (n, entry) in network.pools.iter_mut().enumerate() {
            entry.enabled = true;
            let n = u8::try_from(n).expect("a handful of pools");
            entry.e_voucher_key = VoucherSigner::new(entry.code, [n; 32]).public_key_base64();
        }
        let secret = |code: &str| {
            let code = PoolCode::parse(code).expect("a pool code");
            let n = network
                .pools
                .iter()
                .position(|entry| entry.code == code)
                .unwrap();
            base64.encode([u8::try_from(n).unwrap(); 32])
        };
        let two = [pool("370500"), pool("370590")];
        let keys = format!("{},{}", secret("370590"), secret("370500"));
        let matched = signers(&keys, &two, &network).expect("a key each");
        for owner in &two {
            let Owner::Pool(code) = owner else {
                unreachable!()
            };
            assert_eq!(
                matched[owner].public_key_base64(),
                network.pool(*code).unwrap().e_voucher_key
            );
        }
        let refusal = signers(&secret("370500"), &two, &network)
            .expect_err("the Oilfield has none")
            .to_string();
        assert!(refusal.contains("370590"), "{refusal}");
        let refusal = signers(
            &format!("{},{}", secret("370500"), secret("370100")),
            &two,
            &network,
        )
        .expect_err("Jinan's key is no pool's of this node")
        .to_string();
        assert!(refusal.contains("key 2"), "{refusal}");
    }
}
