//! The HIS-facing SettlementService of the treatment city: visits, fee lines classified with this
//! city's catalog, pre-settlement, and the cross-city settle, cancel and reverse (`settle`).
//!
//! Every state-changing request claims its message id in the same write transaction as its
//! change (`yitong_store::replies`), so a replay returns the first answer. Message ids are the
//! sending institution's own (the national msgid: fixmedins_code, time and serial), so every
//! claim and every look-up by message id is scoped to the request's institution
//! ([`Scope::Institution`]): two institutions of the city may use the same id independently, and
//! one asking about another's id finds nothing, as for an id nobody used. Calls to other nodes
//! (this city's identity and catalog, the insured city's benefit service, the clearing house's
//! ledger) are made outside any transaction and each carries a deadline and this node's
//! credential (`PeerAccess`).
//!
//! The server layer has authenticated the caller as an institution of this city; each handler
//! then checks that the request's `institution_code` is the caller's own, so an institution
//! acts only on its own visits and settlements (PERMISSION_DENIED otherwise).
//!
//! Where things are: this file holds the node, its options and its message-id helpers;
//! `service` the tonic handlers; `request` the parsed requests; `visits` visits and fee lines;
//! `peers` the calls to identity, catalog and the insured city; `writes` the group commit of
//! the Settle's local transactions; `check` the benefit check and
//! the running totals an HIS reads about a person; `settle` the Settle protocol and
//! the recovery sweep; `cancel` cancellation and reversal; `reads` what callers read; `repo`
//! the SQL; `error` the one mapping to gRPC.

mod cancel;
mod check;
mod error;
mod peers;
mod reads;
mod repo;
mod request;
mod service;
mod settle;
mod visits;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use tokio_util::sync::CancellationToken;
use yitong_core::{Amount, CityCode, InstitutionCode, MessageId, Network, PoolCode};
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::settlement::v1::benefit_service_client::BenefitServiceClient;
use yitong_proto::settlement::v1::certification_service_client::CertificationServiceClient;
use yitong_proto::settlement::v1::filing_service_client::FilingServiceClient;
use yitong_rpc::{PeerAccess, PeerChannel, peer_channel};
use yitong_store::Store;
use yitong_store::replies::{self, Claim, Scope};
use yitong_store::sqlx::{Any, Transaction};
use yitong_telemetry::{PairLabels, PoolOf};

pub use error::TreatmentError;
pub use repo::{Kind, Phase};
pub use settle::{Intent, RecoveryReport, SWEEP_BACKOFF_MAX_MS, Started, transfer_id};
pub use writes::{Booked, Staged, Write};

/// Timing of the settle protocol and of its recovery sweep, and how far back a visit may lie.
#[derive(Debug, Clone, Copy)]
pub struct TreatmentOptions {
    /// How long the insured city holds a reservation for a Settle, in seconds (1 to 600).
    pub reservation_timeout_seconds: u32,
    /// How long the ledger holds a pending transfer, in seconds (1 to 3600): only the protocol
    /// before issue 21 booked one (`step_book`); a Settle now books its transfer posted, after
    /// the record. Longer than any completion should take: a pending transfer that expires
    /// anyway is booked again, posted.
    pub transfer_timeout_seconds: u32,
    /// How old a PENDING intent must be before the sweep voids it, in milliseconds: longer than
    /// a Settle in flight can take (its peer calls under their deadlines), so the sweep never
    /// voids one a live request is still driving.
    pub pending_grace_ms: i64,
    /// Time between two recovery sweeps, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Most settlements one sweep resolves per phase; the rest wait for the next sweep.
    pub sweep_batch_max: i64,
    /// Longest a replay waits for the first call under its message id to finish, in
    /// milliseconds, within the caller's own deadline; then it answers ABORTED.
    pub replay_wait_ms: u64,
    /// How many days back a visit may have begun: RegisterVisit refuses a `began_at` whose
    /// date (China Standard Time) is earlier than today less this many days, a year by
    /// default. A hospital registers a visit on the day, or soon after; a date further back
    /// is a mistyped year, which would otherwise be classified and settled at that date.
    pub visit_look_back_days: u32,
}

impl Default for TreatmentOptions {
    fn default() -> Self {
        TreatmentOptions {
            reservation_timeout_seconds: 60,
            transfer_timeout_seconds: 3_600,
            pending_grace_ms: 30_000,
            sweep_interval_ms: 5_000,
            sweep_batch_max: 100,
            replay_wait_ms: 5_000,
            visit_look_back_days: 365,
        }
    }
}

/// The settlement service of one city, as the treatment city of the visits it settles.
#[derive(Debug, Clone)]
pub struct SettlementNode {
    city: PoolCode,
    /// The city that hosts this pool, for the metrics' `city` label beside `pool`.
    host_city: CityCode,
    /// The host city of every pool of the network, for the metrics' `insured_city` label
    /// beside `insured_pool`.
    hosts: Arc<HashMap<PoolCode, CityCode>>,
    store: Store,
    identity: IdentityServiceClient<PeerChannel>,
    catalog: CatalogServiceClient<PeerChannel>,
    /// The BenefitService of every enabled city, this one included (same-city visits).
    benefits: Arc<HashMap<PoolCode, BenefitServiceClient<PeerChannel>>>,
    /// The FilingService of every enabled city, served beside its BenefitService.
    filings: Arc<HashMap<PoolCode, FilingServiceClient<PeerChannel>>>,
    /// The CertificationService of every enabled city, served beside its BenefitService.
    certifications: Arc<HashMap<PoolCode, CertificationServiceClient<PeerChannel>>>,
    ledger: LedgerServiceClient<PeerChannel>,
    options: TreatmentOptions,
    /// The queue of the group commit that books intents, records and completions
    /// ([`writes`]), started by the first of them; shared by every clone of the node.
    writes: Arc<OnceLock<crate::group::Queue<SettlementNode>>>,
}

/// A write request's message id has either been answered before or starts a transaction.
enum Begun {
    Replay(Vec<u8>),
    Fresh(Transaction<'static, Any>),
}

use yitong_rpc::timestamp_of_ms as timestamp;

fn encode<M: Message>(message: &M) -> String {
    BASE64.encode(message.encode_to_vec())
}

fn decode<M: Message + Default>(text: &str, what: &str) -> Result<M, TreatmentError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| TreatmentError::Corrupt(format!("{what} is not base64")))?;
    M::decode(bytes.as_slice())
        .map_err(|_| TreatmentError::Corrupt(format!("{what} does not decode")))
}

fn fen(text: &str, what: &str) -> Result<Amount, TreatmentError> {
    Amount::parse_signed(text)
        .map_err(|_| TreatmentError::Peer(format!("{what} is not an amount: {text:?}")))
}

impl SettlementNode {
    /// The metrics' labels of a settlement here for the persons of `insured_pool` (as the
    /// record stores it): each pool beside its host city. A code the network does not hold (a
    /// peer's malformed answer) is labelled its own city.
    fn pair(&self, insured_pool: &str) -> PairLabels {
        let insured_city = PoolCode::parse(insured_pool)
            .ok()
            .and_then(|pool| self.hosts.get(&pool))
            .map_or_else(|| insured_pool.to_owned(), CityCode::to_string);
        PairLabels::new(
            PoolOf {
                city: &self.host_city.to_string(),
                pool: &self.city.to_string(),
            },
            PoolOf {
                city: &insured_city,
                pool: insured_pool,
            },
        )
    }

    /// Clients to this city's identity and catalog, to every enabled city's benefit service
    /// (the settlement endpoint of each city serves it) and to the clearing house's ledger,
    /// every one with the network's call deadlines. Nothing connects until first used.
    pub fn new(
        city: PoolCode,
        store: Store,
        network: Arc<Network>,
        access: &PeerAccess,
    ) -> Result<Self, tonic::transport::Error> {
        let own = network
            .pool(city)
            .expect("a node runs for a city of its network");
        let identity = IdentityServiceClient::new(peer_channel(&own.identity, Some(city), access)?);
        let catalog = CatalogServiceClient::new(peer_channel(&own.catalog, Some(city), access)?);
        let mut benefits = HashMap::new();
        let mut filings = HashMap::new();
        let mut certifications = HashMap::new();
        for peer in network.enabled_pools() {
            let channel = peer_channel(&peer.settlement, Some(peer.code), access)?;
            benefits.insert(peer.code, BenefitServiceClient::new(channel.clone()));
            filings.insert(peer.code, FilingServiceClient::new(channel.clone()));
            certifications.insert(peer.code, CertificationServiceClient::new(channel));
        }
        let ledger =
            LedgerServiceClient::new(peer_channel(&network.clearing_house.ledger, None, access)?);
        let insured: Vec<(String, String)> = network
            .enabled_pools()
            .map(|peer| (peer.city.to_string(), peer.code.to_string()))
            .collect();
        yitong_telemetry::metrics().start_treatment_city(
            PoolOf {
                city: &own.city.to_string(),
                pool: &city.to_string(),
            },
            insured.iter().map(|(city, pool)| PoolOf { city, pool }),
        );
        let hosts = network.pools.iter().map(|pool| (pool.code, pool.city));
        let node = SettlementNode {
            city,
            host_city: own.city,
            hosts: Arc::new(hosts.collect()),
            store,
            identity,
            catalog,
            benefits: Arc::new(benefits),
            filings: Arc::new(filings),
            certifications: Arc::new(certifications),
            ledger,
            options: TreatmentOptions::default(),
            writes: Arc::new(OnceLock::new()),
        };
        node.start_group_metrics();
        Ok(node)
    }

    /// The same node with other protocol timings.
    pub fn with_options(mut self, options: TreatmentOptions) -> Self {
        self.options = options;
        self
    }

    pub fn city(&self) -> PoolCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs the recovery sweep now and then every `sweep_interval_ms` until `shutdown` is
    /// cancelled. A sweep that fails is logged and tried again at the next tick.
    pub fn spawn_recovery(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval(Duration::from_millis(node.options.sweep_interval_ms.max(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match node.recover().await {
                    Ok(report) if report.is_empty() => {}
                    Ok(report) => {
                        tracing::info!(city = %node.city, voided = report.voided, completed = report.completed, left = report.left, "recovery sweep")
                    }
                    Err(error) => {
                        tracing::warn!(city = %node.city, error = %yitong_core::cause_chain(&error), "recovery sweep failed")
                    }
                }
            }
        })
    }

    // ---- Message ids ---------------------------------------------------------------------

    /// Claims an institution's message id inside a new write transaction, or returns its first
    /// reply.
    async fn begin(
        &self,
        institution: &InstitutionCode,
        message_id: &MessageId,
        rpc: &str,
        digest: &str,
    ) -> Result<Begun, TreatmentError> {
        let mut tx = self.store.begin_write().await?;
        match replies::claim_in(
            &mut tx,
            scope(institution),
            message_id.as_str(),
            rpc,
            digest,
        )
        .await?
        {
            Claim::Fresh => Ok(Begun::Fresh(tx)),
            Claim::Replay(bytes) => Ok(Begun::Replay(bytes)),
        }
    }

    /// The first reply to a message id, without claiming it: requests that call other nodes
    /// before they write look here first, so a replay is answered as it was.
    async fn peek(
        &self,
        institution: &InstitutionCode,
        message_id: &MessageId,
        rpc: &str,
        digest: &str,
    ) -> Result<Option<Vec<u8>>, TreatmentError> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(replies::peek_in(
            &mut conn,
            scope(institution),
            message_id.as_str(),
            rpc,
            digest,
        )
        .await?)
    }

    async fn finish<R: Message>(
        &self,
        mut tx: Transaction<'static, Any>,
        institution: &InstitutionCode,
        message_id: &MessageId,
        reply: R,
    ) -> Result<R, TreatmentError> {
        let reply_bytes = reply.encode_to_vec();
        replies::record_in(
            &mut tx,
            scope(institution),
            message_id.as_str(),
            &reply_bytes,
        )
        .await?;
        tx.commit().await?;
        Ok(reply)
    }
}

fn decode_reply<R: Message + Default>(bytes: &[u8]) -> Result<R, TreatmentError> {
    R::decode(bytes).map_err(|_| TreatmentError::Corrupt("a recorded reply does not decode".into()))
}

/// Where an institution's message ids are claimed: among its own.
fn scope(institution: &InstitutionCode) -> Scope<'_> {
    Scope::Institution(institution.as_str())
}

fn digest<M: Message>(request: &M) -> String {
    replies::digest(&request.encode_to_vec())
}
