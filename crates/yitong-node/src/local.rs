//! Every service of every enabled city and the clearing house, in one process.
//!
//! `yitong dev` runs it on the ports of the network file; the test sandbox runs it on ports the
//! kernel picks (port 0), and rewrites the network so the nodes find each other there.

use std::net::SocketAddr;
use std::sync::Arc;

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use yitong_catalog::{CatalogNode, seed_diseases, seed_institutions, seed_items, seed_policies};
use yitong_core::{Network, Owner, PoolCode, Service};
use yitong_rpc::CallLimits;
use yitong_settlement::benefit::{seed_disease_policies, seed_filing_policies};

use crate::shed::ShedLimits;
use crate::{Security, SecurityError, ServeError};
use yitong_identity::{IdentityNode, IdentityStartError, PiiKeys, VoucherSigner, seed_persons};
use yitong_ledger::LedgerNode;
use yitong_settlement::{BenefitNode, SettlementNode};
use yitong_store::{Location, PoolLimits, Store, StoreError};

use yitong_seeds::Seeds;

use crate::{Role, serve};

/// Where the servers of a local network listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// On the addresses the network file gives.
    FromNetwork,
    /// On 127.0.0.1, on ports the kernel picks.
    Ephemeral,
}

#[derive(Debug, Clone)]
pub struct LocalNetworkOptions {
    pub network: Network,
    pub location: Location,
    /// Loaded into stores that are still empty; `None` starts on whatever the stores hold.
    pub seeds: Option<Seeds>,
    pub bind: Bind,
    pub pool: PoolLimits,
    pub calls: CallLimits,
    /// How many calls each server runs at once before it sheds.
    pub shed: ShedLimits,
    /// How the servers check callers and the nodes present themselves.
    pub security: Security,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {address}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("endpoint {0} is not of the form http://host:port")]
    Endpoint(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load the {what} seeds of {owner}")]
    Seed {
        what: &'static str,
        owner: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the identity service")]
    Identity(#[from] IdentityStartError),
    #[error("cannot start the ledger")]
    Ledger(#[from] yitong_ledger::LedgerError),
    #[error("cannot prepare the clients to other nodes")]
    Peers(#[from] tonic::transport::Error),
    #[error("cannot prepare the credentials of a node")]
    Security(#[from] SecurityError),
}

/// One running server: whose, which service, and where.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub owner: Owner,
    pub service: Service,
    pub url: String,
}

/// A running local network.
#[derive(Debug)]
pub struct LocalNetwork {
    network: Arc<Network>,
    /// Every server, in start order; `stores[i]` is the store of `endpoints[i]`.
    endpoints: Vec<Endpoint>,
    stores: Vec<Store>,
    calls: CallLimits,
    shed: ShedLimits,
    security: Security,
    shutdown: CancellationToken,
    servers: Mutex<Servers>,
}

/// The running server tasks, by owner and service, each with its own shutdown token.
#[derive(Debug, Default)]
struct Servers {
    tasks: HashMap<(Owner, Service), (ServerTask, CancellationToken)>,
}

type ServerTask = tokio::task::JoinHandle<Result<(), ServeError>>;

/// The services each enabled city runs; the ledger runs once, at the clearing house.
const CITY_SERVICES: [Service; 3] = [Service::Identity, Service::Catalog, Service::Settlement];

impl LocalNetwork {
    /// Binds every server, opens and migrates every store, seeds empty ones, and starts serving.
    pub async fn start(options: LocalNetworkOptions) -> Result<LocalNetwork, NodeError> {
        let mut network = options.network;
        let cities: Vec<PoolCode> = network.enabled_pools().map(|city| city.code).collect();

        // Bind first: on ephemeral ports, the addresses are only known now, and every node
        // must be told them before it starts calling the others.
        let mut listeners = Vec::new();
        for (owner, service) in cities
            .iter()
            .flat_map(|city| CITY_SERVICES.map(|service| (Owner::Pool(*city), service)))
            .chain([(Owner::ClearingHouse, Service::Ledger)])
        {
            let configured = match owner {
                Owner::Pool(city) => {
                    network.endpoint(network.pool(city).expect("enabled city"), service)
                }
                Owner::ClearingHouse => network.clearing_house.ledger.clone(),
            };
            let address = match options.bind {
                Bind::FromNetwork => socket_address(&configured)?,
                Bind::Ephemeral => "127.0.0.1:0".to_owned(),
            };
            let listener = TcpListener::bind(&address)
                .await
                .map_err(|source| NodeError::Bind { address, source })?;
            let local: SocketAddr = listener.local_addr().map_err(|source| NodeError::Bind {
                address: configured,
                source,
            })?;
            let scheme = if options.security.pki.is_some() {
                "https"
            } else {
                "http"
            };
            let url = format!("{scheme}://{local}");
            let code = match owner {
                Owner::Pool(city) => city,
                Owner::ClearingHouse => cities[0],
            };
            network.set_endpoint(code, service, url.clone());
            listeners.push((
                Endpoint {
                    owner,
                    service,
                    url,
                },
                listener,
            ));
        }
        let network = Arc::new(network);

        let shutdown = CancellationToken::new();
        let mut running = LocalNetwork {
            network,
            endpoints: Vec::new(),
            stores: Vec::new(),
            calls: options.calls,
            shed: options.shed,
            security: options.security,
            shutdown,
            servers: Mutex::new(Servers::default()),
        };
        for (endpoint, listener) in listeners {
            let store = Store::open(
                &options.location,
                endpoint.service,
                endpoint.owner,
                options.pool,
            )
            .await?;
            store.migrate().await?;
            running
                .spawn(&endpoint, &store, listener, options.seeds.as_ref())
                .await?;
            running.stores.push(store);
            running.endpoints.push(endpoint);
        }
        Ok(running)
    }

    /// Builds the role of one server and serves it on `listener`, under its own shutdown token
    /// (a child of the network's) so that it can be stopped alone.
    async fn spawn(
        &self,
        endpoint: &Endpoint,
        store: &Store,
        listener: TcpListener,
        seeds: Option<&Seeds>,
    ) -> Result<(), NodeError> {
        let network = &self.network;
        let shutdown = self.shutdown.child_token();
        let access = self.security.peer_access(endpoint.owner, self.calls)?;
        let access = &access;
        let role = match (endpoint.owner, endpoint.service) {
            (Owner::Pool(city), Service::Identity) => {
                let keys = PiiKeys::for_development(city);
                if let Some(seeds) = seeds {
                    seed_persons(store, &keys, city, &seeds.persons_of(city))
                        .await
                        .map_err(|source| NodeError::Seed {
                            what: "person",
                            owner: city.to_string(),
                            source: source.into(),
                        })?;
                }
                let signer = VoucherSigner::for_development(city);
                Role::Identity(Box::new(IdentityNode::new(
                    city,
                    store.clone(),
                    keys,
                    signer,
                    network.clone(),
                    access,
                )?))
            }
            (Owner::Pool(city), Service::Catalog) => {
                if let Some(seeds) = seeds {
                    let seed_error = |what: &'static str| {
                        move |source: yitong_store::sqlx::Error| NodeError::Seed {
                            what,
                            owner: city.to_string(),
                            source: source.into(),
                        }
                    };
                    seed_institutions(store, city, &seeds.institutions_of(city))
                        .await
                        .map_err(seed_error("institution"))?;
                    seed_items(store, city, &seeds.items_of(city))
                        .await
                        .map_err(seed_error("catalog item"))?;
                    seed_policies(store, city, &seeds.policies_of(city))
                        .await
                        .map_err(seed_error("policy"))?;
                    seed_diseases(store, &seeds.diseases)
                        .await
                        .map_err(seed_error("disease"))?;
                }
                // A peer endpoint that is not a URL is a malformed network file.
                let node = CatalogNode::new(city, store.clone(), network.clone(), access)
                    .map_err(|error| NodeError::Endpoint(error.endpoint))?;
                Role::Catalog(node)
            }
            (Owner::Pool(city), Service::Settlement) => {
                if let Some(seeds) = seeds {
                    seed_filing_policies(store, &seeds.filing_policies_of(city))
                        .await
                        .map_err(|source| NodeError::Seed {
                            what: "filing policy",
                            owner: city.to_string(),
                            source: source.into(),
                        })?;
                    seed_disease_policies(store, &seeds.disease_policies_of(city))
                        .await
                        .map_err(|source| NodeError::Seed {
                            what: "disease policy",
                            owner: city.to_string(),
                            source: source.into(),
                        })?;
                }
                let node = SettlementNode::new(city, store.clone(), network.clone(), access)?;
                // The recovery sweep runs at start-up and then periodically, until shutdown.
                node.spawn_recovery(shutdown.clone());
                Role::Settlement(
                    node,
                    BenefitNode::new(city, store.clone(), network.clone(), access)?,
                )
            }
            (Owner::ClearingHouse, Service::Ledger) => {
                let node = LedgerNode::start(store.clone(), network.clone()).await?;
                // The expiry sweep runs until shutdown, as the settlement's recovery does.
                node.spawn_expiry_sweep(shutdown.clone());
                Role::Ledger(node)
            }
            (owner, service) => unreachable!("{owner} does not run {service}"),
        };
        let security = self.security.clone();
        let owner = endpoint.owner;
        let stop = shutdown.clone();
        let shed = self.shed;
        let task =
            tokio::spawn(async move { serve(owner, role, listener, &security, shed, stop).await });
        let key = (endpoint.owner, endpoint.service);
        let mut servers = self.servers.lock().expect("server table");
        servers.tasks.insert(key, (task, shutdown));
        Ok(())
    }

    /// Kills one server as a crash would: calls in flight are cut, nothing is drained, and its
    /// background work (a settlement node's recovery sweep, the ledger's expiry sweep) stops
    /// with it. Its store stays.
    pub fn abort(&self, owner: Owner, service: Service) {
        let mut servers = self.servers.lock().expect("server table");
        if let Some((task, shutdown)) = servers.tasks.remove(&(owner, service)) {
            shutdown.cancel();
            task.abort();
        }
    }

    /// Starts a server again on its address and its store, as a restarted process would.
    pub async fn restart(&self, owner: Owner, service: Service) -> Result<(), NodeError> {
        self.abort(owner, service);
        let index = self
            .endpoints
            .iter()
            .position(|endpoint| endpoint.owner == owner && endpoint.service == service)
            .unwrap_or_else(|| panic!("{owner} runs no {service} service"));
        let endpoint = self.endpoints[index].clone();
        let address = socket_address(&endpoint.url)?;
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| NodeError::Bind { address, source })?;
        self.spawn(&endpoint, &self.stores[index], listener, None)
            .await
    }

    /// The network as it runs, with the endpoints actually bound.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// A token that stops every server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting calls, lets the calls in flight finish, and closes every store.
    pub async fn shut_down(self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut self.servers.lock().expect("server table").tasks);
        for (_, (task, _)) in tasks {
            if let Ok(Err(error)) = task.await {
                tracing::warn!(error = %yitong_core::cause_chain(&error), "server stopped with an error");
            }
        }
        for store in &self.stores {
            store.close().await;
        }
    }
}

/// "http://127.0.0.1:7111" -> "127.0.0.1:7111".
fn socket_address(endpoint: &str) -> Result<String, NodeError> {
    endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .map(|rest| rest.trim_end_matches('/').to_owned())
        .filter(|address| address.contains(':') && !address.contains('/'))
        .ok_or_else(|| NodeError::Endpoint(endpoint.to_owned()))
}
