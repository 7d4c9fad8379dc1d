//! The sandbox: the whole network (four pilot cities and the clearing house) started in-process
//! on ports the kernel picks, against a fresh SQLite directory or a fresh PostgreSQL database,
//! with typed clients for every service. A test may start a network file of its own instead
//! ([`Sandbox::start_network`]: the seeds' with every city enabled, say), seeded into fresh
//! stores from the same seed files.
//!
//! Every end-to-end test runs through it, on both databases ([`network_test!`]). PostgreSQL is
//! found at `DATABASE_URL`, else at `postgres://postgres@127.0.0.1:5432/postgres`; when none can
//! be reached the PostgreSQL variants say so loudly and skip, unless `YITONG_REQUIRE_POSTGRES=1`,
//! where that is a failure. A process runs only as many PostgreSQL sandboxes at once as the
//! server's free connections hold, and fails the first test at once, saying what it needs,
//! when not even one fits ([`headroom`]).

pub mod headroom;
mod journal;
pub mod privacy;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use yitong_auth::{Credentials, SharedKeyring};
use yitong_core::{Network, Owner, PoolCode, Service};
use yitong_node::shed::ShedLimits;
use yitong_node::{Bind, LocalNetwork, LocalNetworkOptions, Security, development_callers};
use yitong_proto::audit::v1::audit_service_client::AuditServiceClient;
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::settlement::v1::benefit_service_client::BenefitServiceClient;
use yitong_proto::settlement::v1::certification_service_client::CertificationServiceClient;
use yitong_proto::settlement::v1::filing_service_client::FilingServiceClient;
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_rpc::{CallLimits, Caller, bearer};
use yitong_seeds::load_seeds;
use yitong_store::sqlx::{self, AssertSqlSafe, Connection};
use yitong_store::{Location, PoolLimits};

/// Which database a sandbox runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// The four pilot cities, by the names tests use.
pub const JINAN: &str = "370100";
pub const ZIBO: &str = "370300";
pub const DONGYING: &str = "370500";
pub const BINZHOU: &str = "371600";
pub const PILOT_CITIES: [&str; 4] = [JINAN, ZIBO, DONGYING, BINZHOU];

/// How many times [`Sandbox::restart_server`] tries to start a server again, and the pause
/// between two tries: a minute in all.
pub const RESTART_TRIES: u32 = 120;
const RESTART_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// A client channel of the sandbox: it presents its caller's API key on every call, unless the
/// call carries its own `authorization` ([`as_its_bureau`]), and names the pool it addresses
/// (`yitong-pool`) at a pool's node, as every Yitong client does, unless the call names one
/// itself or the channel was made [`As::unaddressed`].
#[derive(Debug, Clone)]
pub struct Channel {
    inner: tonic::transport::Channel,
    credential: Credential,
    /// The `yitong-pool` value every call carries, if any.
    pool: Option<http::HeaderValue>,
    owner: Owner,
    service: Service,
    journal: journal::Journal,
}

#[derive(Debug, Clone)]
enum Credential {
    Anonymous,
    Fixed(http::HeaderValue),
    /// The default ledger client ([`Sandbox::ledger`]): nodes book and resolve transfers (as
    /// Jinan's node), the clearing house's staff make every other call.
    Ledger {
        node: http::HeaderValue,
        house: http::HeaderValue,
    },
}

/// The ledger's RPCs only nodes make.
const MONEY_MOVING: [&str; 3] = [
    "/yitong.ledger.v1.LedgerService/CreateTransfers",
    "/yitong.ledger.v1.LedgerService/PostPendingTransfers",
    "/yitong.ledger.v1.LedgerService/VoidPendingTransfers",
];

impl tower::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let value = match &self.credential {
            Credential::Anonymous => None,
            Credential::Fixed(value) => Some(value.clone()),
            Credential::Ledger { node, house } => {
                Some(if MONEY_MOVING.contains(&request.uri().path()) {
                    node.clone()
                } else {
                    house.clone()
                })
            }
        };
        if let Some(value) = value {
            request
                .headers_mut()
                .entry(http::header::AUTHORIZATION)
                .or_insert(value);
        }
        if let Some(value) = &self.pool {
            request
                .headers_mut()
                .entry(yitong_rpc::POOL_METADATA)
                .or_insert_with(|| value.clone());
        }
        let caller = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|key| KEYS.keyring.current().authenticate(key).ok())
            .map(|caller| caller.to_string());
        let pending = journal::Pending::new(
            self.journal.clone(),
            self.owner,
            self.service,
            request.uri().path(),
            caller,
        );
        let request = request.map(|body| pending.tap_request(body));
        let call = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            match call.await {
                Ok(response) => Ok(pending.tap_response(response)),
                Err(error) => {
                    pending.finish(None);
                    Err(error)
                }
            }
        })
    }
}

fn header_of(caller: &str) -> http::HeaderValue {
    let key = KEYS.key_of(&caller.parse().expect("tests name valid callers"));
    bearer(&key)
        .expect("keys are header values")
        .expect("keys are not empty")
}

/// A request a city's bureau makes in the clearing: the city its request names (treatment
/// city, statement city, or the city of an application id).
pub trait ClearingRequest {
    fn city(&self) -> &str;
}

macro_rules! clearing_request {
    ($field:ident => $($type:ident),*) => {
        $(impl ClearingRequest for yitong_proto::ledger::v1::$type {
            fn city(&self) -> &str {
                &self.$field
            }
        })*
    };
}

clearing_request!(treatment_city => ConfirmClearingDetailsRequest, RollbackClearingConfirmationRequest, ApplyClearingRequest);
clearing_request!(city => ConfirmClearingStatementRequest);

impl ClearingRequest for yitong_proto::ledger::v1::CancelClearingApplicationRequest {
    fn city(&self) -> &str {
        // "CA" + YYYYMM + the treatment city + a serial.
        self.application_id.get(8..14).unwrap_or_default()
    }
}

/// `message` as the bureau of the city it names, whatever the client's own credential.
pub fn as_its_bureau<T: ClearingRequest>(message: T) -> tonic::Request<T> {
    let header = header_of(&format!("bureau:{}", message.city()));
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        tonic::metadata::AsciiMetadataValue::try_from(header.as_bytes()).expect("ascii"),
    );
    request
}

/// The keys of every sandbox of the process: every node and bureau, the operator
/// `operator:dev`, every seeded institution, and whoever a test asks for since
/// ([`Sandbox::as_caller`]). Every sandbox's servers check against the one keyring.
struct Keys {
    credentials: Mutex<Credentials>,
    keyring: SharedKeyring,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let seeds = seeds_dir();
    let network = Network::load(&seeds.join("network.toml")).expect("seeds/network.toml is valid");
    let seeds = load_seeds(&seeds).expect("seed files are valid");
    let credentials = Credentials::generate(development_callers(&network, Some(&seeds)));
    let keyring = SharedKeyring::new(credentials.keyring());
    Keys {
        credentials: Mutex::new(credentials),
        keyring,
    }
});

impl Keys {
    /// The key of `caller`, issued now if it has none yet.
    fn key_of(&self, caller: &Caller) -> String {
        let mut credentials = self.credentials.lock().expect("sandbox keys");
        if credentials.key(caller).is_none() {
            credentials.insert(caller.clone());
            self.keyring.replace(credentials.keyring());
        }
        credentials.key(caller).expect("just issued").to_owned()
    }

    fn security(&self) -> Security {
        let credentials = self.credentials.lock().expect("sandbox keys");
        let mut security = Security::loopback(&credentials);
        security.keyring = self.keyring.clone();
        security
    }
}

/// A running network and what it takes to clean up after it.
#[derive(Debug)]
pub struct Sandbox {
    network: LocalNetwork,
    /// The network file it started from (its endpoints rewritten as it binds): the seeds'
    /// unless a test gave its own ([`Sandbox::start_network`]).
    configured: Network,
    database: Database,
    location: Location,
    /// The SQLite directory, removed when the sandbox is dropped.
    _sqlite_dir: Option<tempfile::TempDir>,
    /// The PostgreSQL test database, dropped at shut-down.
    postgres: Option<PostgresDatabase>,
    /// The PostgreSQL sandbox's slot of the process's connection budget ([`headroom`]), given
    /// back when the sandbox is dropped.
    _slot: Option<OwnedSemaphorePermit>,
    /// Connections of each store's pool: [`headroom::STORE_CONNECTIONS`], fewer for a network
    /// of a test's own that the PostgreSQL budget holds only that way.
    store_connections: u32,
    /// The state-changing calls of the sandbox's clients, for the audit check at shut-down.
    journal: journal::Journal,
}

#[derive(Debug)]
struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    fn url(&self) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .expect("URL has a database")
            .0;
        format!("{base}/{}", self.name)
    }
}

/// Seeding forty thousand persons and eight thousand catalog items takes seconds; every test of
/// a process starts from a copy of one seeded template instead.
static SQLITE_TEMPLATE: tokio::sync::OnceCell<tempfile::TempDir> =
    tokio::sync::OnceCell::const_new();
/// The PostgreSQL template database's name; `None` when PostgreSQL cannot be reached.
static POSTGRES_TEMPLATE: tokio::sync::OnceCell<Option<String>> =
    tokio::sync::OnceCell::const_new();
/// One permit per PostgreSQL sandbox the server's free connections hold at once, counted when
/// the first one starts ([`headroom`]); `None` when PostgreSQL cannot be reached.
static POSTGRES_SLOTS: tokio::sync::OnceCell<Option<(Arc<Semaphore>, u32)>> =
    tokio::sync::OnceCell::const_new();

/// A slot for one more PostgreSQL sandbox, waiting while the process runs as many as the
/// server holds. `None` when PostgreSQL cannot be reached and is not required. Panics with
/// what a sandbox needs when the server has not room for even one.
async fn postgres_slot() -> Option<OwnedSemaphorePermit> {
    postgres_slots(1).await.map(|(permit, _)| permit)
}

/// Up to `wanted` slots at once, for a sandbox that holds the connections of that many
/// sandboxes of the seeds' network ([`Sandbox::start_network`]): all the server holds when it
/// holds fewer, with how many were granted.
async fn postgres_slots(wanted: u32) -> Option<(OwnedSemaphorePermit, u32)> {
    let (slots, fit) = POSTGRES_SLOTS
        .get_or_init(|| async {
            let url = postgres_admin_url();
            let mut admin = connect_admin(&url).await?;
            let headroom = headroom::Headroom::measure(&mut admin)
                .await
                .expect("PostgreSQL says how many connections it has");
            let _ = admin.close().await;
            let network = Network::load(&seeds_dir().join("network.toml"))
                .expect("seeds/network.toml is valid");
            let stores = headroom::stores_per_sandbox(&network);
            let fit = headroom
                .sandboxes(stores, &yitong_store::redact_url(&url))
                .unwrap_or_else(|shortage| panic!("{shortage}"));
            Some((
                Arc::new(Semaphore::new(fit)),
                u32::try_from(fit).expect("a handful of sandboxes"),
            ))
        })
        .await
        .as_ref()?;
    let granted = wanted.min(*fit);
    let permit = slots
        .clone()
        .acquire_many_owned(granted)
        .await
        .expect("the slots are never closed");
    Some((permit, granted))
}

async fn seed_sqlite_template() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("can create a temporary directory");
    let network = LocalNetwork::start(Sandbox::options(
        Location::Sqlite {
            dir: dir.path().to_owned(),
        },
        true,
        seeds_network(),
        headroom::STORE_CONNECTIONS,
    ))
    .await
    .expect("template network starts");
    // Shutting down closes every connection, which checkpoints the WAL into the database files.
    network.shut_down().await;
    dir
}

async fn seed_postgres_template() -> Option<String> {
    let template = create_postgres_database(None).await?;
    let network = LocalNetwork::start(Sandbox::options(
        Location::Postgres {
            url: template.url(),
        },
        true,
        seeds_network(),
        headroom::STORE_CONNECTIONS,
    ))
    .await
    .expect("template network starts");
    // No connection may remain to a database used as a template.
    network.shut_down().await;
    Some(template.name)
}

/// Copies a directory tree of SQLite files.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Test databases older than this are leftovers of aborted runs and are dropped.
const STALE_DATABASE_SECS: u64 = 3_600;

impl Sandbox {
    /// Starts the network on a fresh database. `None` when PostgreSQL was asked for, cannot be
    /// reached, and is not required: the caller skips.
    pub async fn start(database: Database) -> Option<Sandbox> {
        privacy::install();
        match database {
            Database::Sqlite => {
                let template = SQLITE_TEMPLATE.get_or_init(seed_sqlite_template).await;
                let dir = tempfile::tempdir().expect("can create a temporary directory");
                copy_dir(template.path(), dir.path()).expect("can copy the seeded template");
                let location = Location::Sqlite {
                    dir: dir.path().to_owned(),
                };
                Some(Self::start_on(database, location, Some(dir), None).await)
            }
            Database::Postgres => {
                let slot = postgres_slot().await?;
                let template = POSTGRES_TEMPLATE
                    .get_or_init(seed_postgres_template)
                    .await
                    .as_ref()?;
                let postgres = create_postgres_database(Some(template)).await?;
                let location = Location::Postgres {
                    url: postgres.url(),
                };
                let mut sandbox = Self::start_on(database, location, None, Some(postgres)).await;
                sandbox._slot = Some(slot);
                Some(sandbox)
            }
        }
    }

    /// Starts a network of the test's own, seeded from the seed files into fresh stores: the
    /// seeds' network file edited as a bureau would (more cities enabled, say). Every caller
    /// of its enabled cities' nodes and bureaus is issued a key first. On PostgreSQL it takes
    /// as many of the process's slots as its connections need ([`headroom`]). `None` when
    /// PostgreSQL was asked for, cannot be reached, and is not required: the caller skips.
    pub async fn start_network(database: Database, network: Network) -> Option<Sandbox> {
        privacy::install();
        for city in network.enabled_pools() {
            let owner = Owner::Pool(city.code);
            KEYS.key_of(&Caller::Node(owner));
            KEYS.key_of(&Caller::Bureau(owner));
        }
        match database {
            Database::Sqlite => {
                let dir = tempfile::tempdir().expect("can create a temporary directory");
                let location = Location::Sqlite {
                    dir: dir.path().to_owned(),
                };
                Some(
                    Self::start_seeded(
                        database,
                        location,
                        network,
                        Some(dir),
                        None,
                        headroom::STORE_CONNECTIONS,
                    )
                    .await,
                )
            }
            Database::Postgres => {
                // A network larger than the seeds' takes as many slots as it needs, or all the
                // server holds, and then narrows its stores' pools to fit them.
                let need = headroom::connections_per_sandbox(&network);
                let standard = headroom::connections_per_sandbox(&seeds_network());
                let (slot, granted) = postgres_slots(need.div_ceil(standard)).await?;
                let store_connections = headroom::store_connections_within(
                    &network,
                    granted * standard,
                )
                .unwrap_or_else(|| {
                    panic!(
                        "this network needs {need} PostgreSQL connections, and at least one \
                             per store; the server holds {} for it: raise max_connections or \
                             close other clients",
                        granted * standard
                    )
                });
                let postgres = create_postgres_database(None).await?;
                let location = Location::Postgres {
                    url: postgres.url(),
                };
                let mut sandbox = Self::start_seeded(
                    database,
                    location,
                    network,
                    None,
                    Some(postgres),
                    store_connections,
                )
                .await;
                sandbox._slot = Some(slot);
                Some(sandbox)
            }
        }
    }

    async fn start_seeded(
        database: Database,
        location: Location,
        network: Network,
        sqlite_dir: Option<tempfile::TempDir>,
        postgres: Option<PostgresDatabase>,
        store_connections: u32,
    ) -> Sandbox {
        let running = LocalNetwork::start(Self::options(
            location.clone(),
            true,
            network.clone(),
            store_connections,
        ))
        .await
        .expect("sandbox network starts");
        Sandbox {
            network: running,
            configured: network,
            database,
            location,
            _sqlite_dir: sqlite_dir,
            postgres,
            _slot: None,
            store_connections,
            journal: journal::Journal::default(),
        }
    }

    async fn start_on(
        database: Database,
        location: Location,
        sqlite_dir: Option<tempfile::TempDir>,
        postgres: Option<PostgresDatabase>,
    ) -> Sandbox {
        let configured = seeds_network();
        let network = LocalNetwork::start(Self::options(
            location.clone(),
            false,
            configured.clone(),
            headroom::STORE_CONNECTIONS,
        ))
        .await
        .expect("sandbox network starts");
        Sandbox {
            network,
            configured,
            database,
            location,
            _sqlite_dir: sqlite_dir,
            postgres,
            _slot: None,
            store_connections: headroom::STORE_CONNECTIONS,
            journal: journal::Journal::default(),
        }
    }

    /// Options for `network` on `location`. Only a template (or a network of a test's own) is
    /// seeded (`seeded`); every other test starts on a copy of the template, whose stores
    /// already hold the seeds.
    fn options(
        location: Location,
        seeded: bool,
        network: Network,
        store_connections: u32,
    ) -> LocalNetworkOptions {
        let seeds = seeds_dir();
        // On PostgreSQL every pool is opened whole at the start, so a sandbox holds exactly
        // what the process budgeted for it ([`headroom`]) and a server short of connections
        // fails it there, not halfway through a test.
        let connections_min = match location {
            Location::Postgres { .. } => store_connections,
            Location::Sqlite { .. } => 0,
        };
        LocalNetworkOptions {
            network,
            location,
            seeds: seeded.then(|| load_seeds(&seeds).expect("seed files are valid")),
            bind: Bind::Ephemeral,
            pool: PoolLimits {
                connections_max: store_connections,
                connections_min,
                ..PoolLimits::default()
            },
            calls: CallLimits::default(),
            shed: ShedLimits::default(),
            security: KEYS.security(),
        }
    }

    /// Stops the network and starts it again on the same data, as `yitong dev` does after Ctrl-C.
    pub async fn restart(self) -> Sandbox {
        let Sandbox {
            network,
            configured,
            database,
            location,
            _sqlite_dir,
            postgres,
            _slot,
            store_connections,
            journal,
        } = self;
        network.shut_down().await;
        let network = LocalNetwork::start(Self::options(
            location.clone(),
            false,
            configured.clone(),
            store_connections,
        ))
        .await
        .expect("sandbox network restarts");
        Sandbox {
            network,
            configured,
            database,
            location,
            _sqlite_dir,
            postgres,
            _slot,
            store_connections,
            journal,
        }
    }

    /// Stops the network and starts it again on the same data under another network file, as
    /// a running network is upgraded: the stores it kept are migrated and read as they are,
    /// and the stores of pools the new file enables are made and seeded (seeding fills empty
    /// stores only). On PostgreSQL the stores' pools are narrowed to the connections the
    /// sandbox already holds.
    pub async fn restart_with(self, network: Network) -> Sandbox {
        for pool in network.enabled_pools() {
            let owner = Owner::Pool(pool.code);
            KEYS.key_of(&Caller::Node(owner));
            KEYS.key_of(&Caller::Bureau(owner));
        }
        let Sandbox {
            network: running,
            configured,
            database,
            location,
            _sqlite_dir,
            postgres,
            _slot,
            store_connections,
            journal,
        } = self;
        let held = headroom::stores_per_sandbox(&configured) * store_connections
            + headroom::SANDBOX_EXTRA_CONNECTIONS;
        let store_connections = headroom::store_connections_within(&network, held)
            .expect("the upgraded network fits the connections the sandbox holds");
        running.shut_down().await;
        let running = LocalNetwork::start(Self::options(
            location.clone(),
            true,
            network.clone(),
            store_connections,
        ))
        .await
        .expect("sandbox network restarts under the new network file");
        Sandbox {
            network: running,
            configured: network,
            database,
            location,
            _sqlite_dir,
            postgres,
            _slot,
            store_connections,
            journal,
        }
    }

    /// Stops every server, holds every store's audit trail to the state-changing calls the
    /// sandbox's clients made and to the store's own state ([`journal`]), drops the PostgreSQL
    /// test database, and fails the test if the audit trail disagreed or any log line or span
    /// attribute of the process so far held a full citizen ID.
    pub async fn shut_down(self) {
        let servers = self.servers();
        self.network.shut_down().await;
        let problems = journal::check(&self.journal, &self.location, &servers).await;
        if let Some(postgres) = self.postgres {
            drop_database(&postgres.admin_url, &postgres.name).await;
        }
        assert!(
            problems.is_empty(),
            "the audit trail disagrees with the calls made and the stores' state:\n{}",
            problems.join("\n")
        );
        let leaks = privacy::leaks();
        assert!(
            leaks.is_empty(),
            "citizen IDs reached the logs or traces: {leaks:?}"
        );
    }

    pub fn database(&self) -> Database {
        self.database
    }

    /// Where the stores' audit trails disagree with the state-changing calls the sandbox's
    /// clients made so far and with the stores' own state, one line each ([`journal`]); what
    /// [`Sandbox::shut_down`] asserts empty once the servers have stopped.
    pub async fn audit_disagreements(&self) -> Vec<String> {
        journal::check(&self.journal, &self.location, &self.servers()).await
    }

    /// Every running server, by owner and service.
    fn servers(&self) -> Vec<(Owner, Service)> {
        self.endpoints()
            .iter()
            .map(|endpoint| (endpoint.owner, endpoint.service))
            .collect()
    }

    pub fn network(&self) -> &Network {
        self.network.network()
    }

    /// Every running server: owner, service and URL.
    pub fn endpoints(&self) -> &[yitong_node::Endpoint] {
        self.network.endpoints()
    }

    pub fn endpoint(&self, owner: Owner, service: Service) -> String {
        self.endpoints()
            .iter()
            .find(|endpoint| endpoint.owner == owner && endpoint.service == service)
            .map(|endpoint| endpoint.url.clone())
            .unwrap_or_else(|| panic!("{owner} runs no {service} service"))
    }

    /// Kills one server as a crash would (calls in flight cut, nothing drained); its store stays.
    pub fn abort_server(&self, owner: Owner, service: Service) {
        self.network.abort(owner, service);
    }

    /// Starts a killed server again on its address and store, as a restarted process would,
    /// and as a process supervisor would, tries again while the start fails (its store out of
    /// connections on a loaded database server, say) for up to [`RESTART_TRIES`] tries.
    pub async fn restart_server(&self, owner: Owner, service: Service) {
        let mut tries = 0;
        while let Err(error) = self.network.restart(owner, service).await {
            tries += 1;
            assert!(
                tries < RESTART_TRIES,
                "{owner} {service} did not restart in {tries} tries: {error:?}"
            );
            eprintln!("{owner} {service} did not restart ({error:?}); trying again");
            tokio::time::sleep(RESTART_PAUSE).await;
        }
    }

    /// Calls as `caller`, by its canonical name (`institution:H37030000001`, `bureau:370100`,
    /// `node:clearing`, `operator:dev`); a caller without a key yet is issued one.
    pub fn as_caller(&self, caller: &str) -> As<'_> {
        As {
            sandbox: self,
            credential: Credential::Fixed(header_of(caller)),
            addressed: true,
        }
    }

    /// Calls with no credential at all.
    pub fn anonymous(&self) -> As<'_> {
        As {
            sandbox: self,
            credential: Credential::Anonymous,
            addressed: true,
        }
    }

    /// Calls as the HIS of `institution` ("H37030000001").
    pub fn his(&self, institution: &str) -> As<'_> {
        self.as_caller(&format!("institution:{institution}"))
    }

    /// The settlement service of `institution`'s city, as the institution's HIS: where its
    /// counter settles.
    pub fn his_settlement(&self, institution: &str) -> SettlementServiceClient<Channel> {
        let city = institution
            .get(1..7)
            .expect("tests name institutions by their code");
        self.his(institution).settlement(city)
    }

    /// Calls as the bureau of `owner` (a city's region code, or "clearing").
    pub fn bureau(&self, owner: &str) -> As<'_> {
        self.as_caller(&format!("bureau:{owner}"))
    }

    /// Calls as the node of `owner` (a city's region code, or "clearing").
    pub fn node(&self, owner: &str) -> As<'_> {
        self.as_caller(&format!("node:{owner}"))
    }

    /// How a node of `owner` built by a test itself reaches its peers: with the owner's node
    /// key, as the sandbox's own nodes do.
    pub fn peer_access(&self, owner: Owner) -> yitong_rpc::PeerAccess {
        KEYS.security()
            .peer_access(owner, CallLimits::default())
            .expect("every owner has a node key")
    }

    /// Every key the sandbox issued, as `yitong dev`'s credentials file holds them.
    pub fn credentials_toml(&self) -> String {
        KEYS.credentials.lock().expect("sandbox keys").to_toml()
    }

    /// The API key of `caller`, for the command line's `--api-key`.
    pub fn api_key(&self, caller: &str) -> String {
        KEYS.key_of(&caller.parse().expect("tests name valid callers"))
    }

    /// A channel as the bureau that owns the server (the clearing house's staff for the
    /// ledger) whose calls are cut off after 30 s.
    pub fn channel(&self, owner: Owner, service: Service) -> Channel {
        self.bureau(&owner.to_string()).channel(owner, service)
    }

    /// The same, cut off after `timeout`: for the long calls of the benchmarks.
    pub fn channel_with_timeout(
        &self,
        owner: Owner,
        service: Service,
        timeout: Duration,
    ) -> Channel {
        self.bureau(&owner.to_string())
            .channel_with_timeout(owner, service, timeout)
    }

    /// The city's identity service, as its bureau.
    pub fn identity(&self, city: &str) -> IdentityServiceClient<Channel> {
        self.bureau(city).identity(city)
    }

    /// The city's catalog service, as its bureau.
    pub fn catalog(&self, city: &str) -> CatalogServiceClient<Channel> {
        self.bureau(city).catalog(city)
    }

    /// The city's benefit service, as the city's own node: for Post and Void, and for claims
    /// treated in the city itself. A claim treated elsewhere is quoted and reserved only by its
    /// treatment city's node: `net.node(treatment).benefit(city)`.
    pub fn benefit(&self, city: &str) -> BenefitServiceClient<Channel> {
        self.node(city).benefit(city)
    }

    /// The clearing house's ledger: transfers are booked and resolved as a node (Jinan's),
    /// every other call is made as the clearing house's staff. A city's own clearing steps
    /// take [`as_its_bureau`].
    pub fn ledger(&self) -> LedgerServiceClient<Channel> {
        let view = As {
            sandbox: self,
            credential: Credential::Ledger {
                node: header_of(&format!("node:{JINAN}")),
                house: header_of("bureau:clearing"),
            },
            addressed: true,
        };
        view.ledger()
    }

    /// A connection of its own to the clearing house's ledger store, for tests that alter
    /// stored rows behind the service's back (tamper detection). Close it when done.
    pub async fn ledger_store(&self) -> yitong_store::Store {
        self.store(Owner::ClearingHouse, Service::Ledger).await
    }

    /// A connection of its own to one server's store. Close it when done.
    pub async fn store(&self, owner: Owner, service: Service) -> yitong_store::Store {
        let limits = PoolLimits {
            connections_max: 1,
            ..PoolLimits::default()
        };
        yitong_store::Store::open(&self.location, service, owner, limits)
            .await
            .expect("the store opens")
    }

    /// Every table of every store with its row count, in a fixed order: what a refused call
    /// must leave as it found it.
    pub async fn row_counts(&self) -> Vec<(String, i64)> {
        let mut counts = Vec::new();
        for endpoint in self.endpoints() {
            let store = self.store(endpoint.owner, endpoint.service).await;
            let list = match store.backend() {
                yitong_store::Backend::Sqlite => {
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                }
                yitong_store::Backend::Postgres => {
                    "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
                }
            };
            let tables: Vec<(String,)> = sqlx::query_as(list)
                .fetch_all(store.pool())
                .await
                .expect("tables listed");
            for (table,) in tables {
                let (count,): (i64,) =
                    sqlx::query_as(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                        .fetch_one(store.pool())
                        .await
                        .expect("rows counted");
                counts.push((format!("{}.{table}", store.name()), count));
            }
            store.close().await;
        }
        counts
    }
}

/// Clients of a sandbox acting as one caller.
#[derive(Debug, Clone)]
pub struct As<'a> {
    sandbox: &'a Sandbox,
    credential: Credential,
    /// Whether calls name the pool they address (`yitong-pool`), as Yitong's clients do.
    addressed: bool,
}

impl As<'_> {
    /// The same caller, its calls naming no pool: as an HIS that knows nothing of the
    /// metadata calls, to be dispatched by its credential.
    pub fn unaddressed(mut self) -> Self {
        self.addressed = false;
        self
    }

    /// A channel to one server whose calls are cut off after 30 s.
    pub fn channel(&self, owner: Owner, service: Service) -> Channel {
        self.channel_with_timeout(owner, service, Duration::from_secs(30))
    }

    pub fn channel_with_timeout(
        &self,
        owner: Owner,
        service: Service,
        timeout: Duration,
    ) -> Channel {
        let url = self.sandbox.endpoint(owner, service);
        let channel = tonic::transport::Endpoint::from_shared(url)
            .expect("endpoint URL is valid")
            .timeout(timeout)
            .connect_lazy();
        let pool = match owner {
            Owner::Pool(code) if self.addressed => Some(yitong_rpc::pool_header(code)),
            _ => None,
        };
        Channel {
            inner: channel,
            credential: self.credential.clone(),
            pool,
            owner,
            service,
            journal: self.sandbox.journal.clone(),
        }
    }

    pub fn identity(&self, city: &str) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel(city_owner(city), Service::Identity))
    }

    pub fn catalog(&self, city: &str) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel(city_owner(city), Service::Catalog))
    }

    /// The settlement service of `city`.
    pub fn settlement(&self, city: &str) -> SettlementServiceClient<Channel> {
        SettlementServiceClient::new(self.channel(city_owner(city), Service::Settlement))
    }

    pub fn benefit(&self, city: &str) -> BenefitServiceClient<Channel> {
        BenefitServiceClient::new(self.channel(city_owner(city), Service::Settlement))
    }

    pub fn ledger(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(self.channel(Owner::ClearingHouse, Service::Ledger))
    }

    /// The certification service of `city`, served beside its benefit service.
    pub fn certification(&self, city: &str) -> CertificationServiceClient<Channel> {
        CertificationServiceClient::new(self.channel(city_owner(city), Service::Settlement))
    }

    /// The filing service of `city`, served beside its benefit service.
    pub fn filing(&self, city: &str) -> FilingServiceClient<Channel> {
        FilingServiceClient::new(self.channel(city_owner(city), Service::Settlement))
    }

    /// The audit trail of one server.
    pub fn audit(&self, owner: Owner, service: Service) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel(owner, service))
    }
}

fn city_owner(city: &str) -> Owner {
    Owner::Pool(PoolCode::parse(city).expect("tests name cities by region code"))
}

/// The repository's `seeds/` directory.
pub fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds")
}

/// The seeds' network file, `seeds/network.toml`.
pub fn seeds_network() -> Network {
    Network::load(&seeds_dir().join("network.toml")).expect("seeds/network.toml is valid")
}

/// The server and role of this process's PostgreSQL sandboxes when a test chose them
/// ([`use_postgres`]).
static POSTGRES_URL: OnceLock<String> = OnceLock::new();

/// Runs every PostgreSQL sandbox of this process against `admin_url` (a database of the
/// server, reached as the role the sandboxes use) instead of `DATABASE_URL`: for a test that
/// runs its sandboxes as a role of its own. Call it before the first sandbox starts; a
/// second call is refused.
pub fn use_postgres(admin_url: String) {
    POSTGRES_URL
        .set(admin_url)
        .expect("the sandboxes' PostgreSQL is chosen once, before the first starts");
}

/// The PostgreSQL server and role the sandboxes use: [`use_postgres`]'s, else `DATABASE_URL`,
/// else the local server's `postgres` role.
pub fn postgres_admin_url() -> String {
    if let Some(url) = POSTGRES_URL.get() {
        return url.clone();
    }
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A connection to the server's administration database, or `None` (after saying so loudly)
/// when it cannot be reached and is not required.
async fn connect_admin(admin_url: &str) -> Option<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    let shown = yitong_store::redact_url(admin_url);
    match sqlx::AnyConnection::connect(admin_url).await {
        Ok(connection) => Some(connection),
        Err(error) if postgres_required() => panic!(
            "PostgreSQL is required (YITONG_REQUIRE_POSTGRES=1) but {shown} cannot be reached: {error}"
        ),
        Err(error) => {
            eprintln!(
                "\n*** SKIPPED: PostgreSQL at {shown} cannot be reached ({error}); this test ran on SQLite only. Set YITONG_REQUIRE_POSTGRES=1 to make this a failure. ***\n"
            );
            None
        }
    }
}

fn postgres_required() -> bool {
    std::env::var("YITONG_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// Creates an empty database, or a copy of `template`, after dropping leftovers of aborted runs.
async fn create_postgres_database(template: Option<&str>) -> Option<PostgresDatabase> {
    let admin_url = postgres_admin_url();
    let mut admin = connect_admin(&admin_url).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'yitong_test_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in stale {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|secs| secs.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > STALE_DATABASE_SECS {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    let name = format!("yitong_test_{now}_{}", uuid::Uuid::new_v4().simple());
    let create = match template {
        Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
        None => format!("CREATE DATABASE {name}"),
    };
    sqlx::raw_sql(AssertSqlSafe(create))
        .execute(&mut admin)
        .await
        .expect("can create a test database");
    let _ = admin.close().await;
    Some(PostgresDatabase { admin_url, name })
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await {
        if let Err(error) = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        {
            tracing::warn!(database = name, error = %error, "cannot drop the test database");
        }
        let _ = admin.close().await;
    }
}

/// Declares an end-to-end test that runs once on SQLite and once on PostgreSQL:
///
/// ```text
/// network_test! {
///     /// What the test proves.
///     async fn zibo_finds_a_jinan_card(net) { ... }
/// }
/// ```
///
/// expands to a module `zibo_finds_a_jinan_card` with tests `sqlite` and `postgres`. The body
/// sees `net: &Sandbox`.
#[macro_export]
macro_rules! network_test {
    ($(#[$meta:meta])* async fn $name:ident($net:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($net: &$crate::Sandbox) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let sandbox = $crate::Sandbox::start($crate::Database::Sqlite).await.expect("SQLite always starts");
                case(&sandbox).await;
                sandbox.shut_down().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(sandbox) = $crate::Sandbox::start($crate::Database::Postgres).await else { return };
                case(&sandbox).await;
                sandbox.shut_down().await;
            }
        }
    };
}
