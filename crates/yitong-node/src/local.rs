//! Every service of every enabled city and the clearing house, in one process: one server per
//! node and service, a node serving one pool or several pools of a city.
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
use yitong_core::{Network, Owner, PoolCode, Service, is_ephemeral};
use yitong_rpc::CallLimits;
use yitong_settlement::benefit::{seed_disease_policies, seed_filing_policies};

use crate::shed::ShedLimits;
use crate::{Security, SecurityError, ServeError};
use yitong_identity::{IdentityNode, IdentityStartError, PiiKeys, VoucherSigner, seed_persons};
use yitong_ledger::LedgerNode;
use yitong_settlement::{BenefitNode, SettlementNode};
use yitong_store::{Location, PoolLimits, Store, StoreError};

use yitong_seeds::Seeds;

use crate::{Role, serve_node};

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
    /// Every pool's (and the clearing house's) service, in start order; `stores[i]` is the
    /// store of `endpoints[i]`.
    endpoints: Vec<Endpoint>,
    stores: Vec<Store>,
    /// Every server: the indices in `endpoints` of the owners it serves, one for a node of one
    /// pool or the ledger, several for a node shared by pools of one city, all at one URL.
    nodes: Vec<Vec<usize>>,
    calls: CallLimits,
    shed: ShedLimits,
    security: Security,
    shutdown: CancellationToken,
    servers: Mutex<Servers>,
}

/// The running server tasks, by their index in `nodes`, each with its own shutdown token.
#[derive(Debug, Default)]
struct Servers {
    tasks: HashMap<usize, (ServerTask, CancellationToken)>,
}

type ServerTask = tokio::task::JoinHandle<Result<(), ServeError>>;

/// The services each enabled city runs; the ledger runs once, at the clearing house.
const CITY_SERVICES: [Service; 3] = [Service::Identity, Service::Catalog, Service::Settlement];

impl LocalNetwork {
    /// Binds every server, opens and migrates every store, seeds empty ones, and starts serving.
    /// Pools that list the same endpoints in the network file share one server per service.
    pub async fn start(options: LocalNetworkOptions) -> Result<LocalNetwork, NodeError> {
        let mut network = options.network;
        let cities: Vec<PoolCode> = network.enabled_pools().map(|city| city.code).collect();

        // The servers, each with the endpoint the network file gives it and the owners it
        // serves, in the order their first owner comes.
        let mut planned: Vec<(Service, String, Vec<Owner>)> = Vec::new();
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
            // An endpoint on port 0 is a server of its own wherever the file lists it.
            match planned.iter_mut().find(|(other, url, _)| {
                *other == service && *url == configured && !is_ephemeral(&configured)
            }) {
                Some((_, _, owners)) => owners.push(owner),
                None => planned.push((service, configured, vec![owner])),
            }
        }

        // Bind first: on ephemeral ports, the addresses are only known now, and every node
        // must be told them before it starts calling the others.
        let mut endpoints = Vec::new();
        let mut nodes = Vec::new();
        let mut listeners = Vec::new();
        for (service, configured, owners) in planned {
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
            let mut served = Vec::new();
            for owner in owners {
                let code = match owner {
                    Owner::Pool(city) => city,
                    Owner::ClearingHouse => cities[0],
                };
                network.set_endpoint(code, service, url.clone());
                served.push(endpoints.len());
                endpoints.push(Endpoint {
                    owner,
                    service,
                    url: url.clone(),
                });
            }
            nodes.push(served);
            listeners.push(listener);
        }
        let network = Arc::new(network);

        let shutdown = CancellationToken::new();
        let mut running = LocalNetwork {
            network,
            endpoints,
            stores: Vec::new(),
            nodes,
            calls: options.calls,
            shed: options.shed,
            security: options.security,
            shutdown,
            servers: Mutex::new(Servers::default()),
        };
        for endpoint in &running.endpoints {
            let store = Store::open(
                &options.location,
                endpoint.service,
                endpoint.owner,
                options.pool,
            )
            .await?;
            store.migrate().await?;
            running.stores.push(store);
        }
        for (node, listener) in listeners.into_iter().enumerate() {
            running
                .spawn(node, listener, options.seeds.as_ref())
                .await?;
        }
        Ok(running)
    }

    /// Builds the roles of one server, one per owner it serves, and serves them on `listener`,
    /// under its own shutdown token (a child of the network's) so that it can be stopped alone.
    async fn spawn(
        &self,
        node: usize,
        listener: TcpListener,
        seeds: Option<&Seeds>,
    ) -> Result<(), NodeError> {
        let shutdown = self.shutdown.child_token();
        let mut roles = Vec::new();
        for &index in &self.nodes[node] {
            let endpoint = &self.endpoints[index];
            let role = self
                .role(endpoint, &self.stores[index], seeds, &shutdown)
                .await?;
            roles.push((endpoint.owner, role));
        }
        let security = self.security.clone();
        let stop = shutdown.clone();
        let shed = self.shed;
        let task =
            tokio::spawn(async move { serve_node(roles, listener, &security, shed, stop).await });
        let mut servers = self.servers.lock().expect("server table");
        servers.tasks.insert(node, (task, shutdown));
        Ok(())
    }

    /// The role of one owner's service on its store, seeded from `seeds` when given; its
    /// background work (a settlement node's recovery sweep, the ledger's expiry sweep) runs
    /// until `shutdown`.
    async fn role(
        &self,
        endpoint: &Endpoint,
        store: &Store,
        seeds: Option<&Seeds>,
        shutdown: &CancellationToken,
    ) -> Result<Role, NodeError> {
        let network = &self.network;
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
        Ok(role)
    }

    /// The server that serves `owner`'s `service`.
    fn node_of(&self, owner: Owner, service: Service) -> usize {
        let index = self
            .endpoints
            .iter()
            .position(|endpoint| endpoint.owner == owner && endpoint.service == service)
            .unwrap_or_else(|| panic!("{owner} runs no {service} service"));
        self.nodes
            .iter()
            .position(|served| served.contains(&index))
            .expect("every endpoint is served by a node")
    }

    /// Kills the server of `owner`'s `service` as a crash would: calls in flight are cut,
    /// nothing is drained, and its background work (a settlement node's recovery sweep, the
    /// ledger's expiry sweep) stops with it. At a node shared by several pools, every pool's
    /// service there goes down with it, as the one process would. Its stores stay.
    pub fn abort(&self, owner: Owner, service: Service) {
        let node = self.node_of(owner, service);
        let mut servers = self.servers.lock().expect("server table");
        if let Some((task, shutdown)) = servers.tasks.remove(&node) {
            shutdown.cancel();
            task.abort();
        }
    }

    /// Starts the server of `owner`'s `service` again on its address and its stores, as a
    /// restarted process would.
    pub async fn restart(&self, owner: Owner, service: Service) -> Result<(), NodeError> {
        self.abort(owner, service);
        let node = self.node_of(owner, service);
        let url = &self.endpoints[self.nodes[node][0]].url;
        let address = socket_address(url)?;
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| NodeError::Bind { address, source })?;
        self.spawn(node, listener, None).await
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
