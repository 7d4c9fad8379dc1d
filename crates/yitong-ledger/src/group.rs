//! Group commit: the ledger's bookings (CreateTransfers, PostPendingTransfers,
//! VoidPendingTransfers) queue to one task, which books whatever has queued in one write
//! transaction, under one lock of the journal head and one commit, and then answers each.
//!
//! Every append is serialised by the journal head (`append`), and a booking holds it from its
//! first statement to its commit. Booked one transaction each, the ledger's throughput is one
//! commit and a dozen round trips at a time, whatever the load. Booked in groups, the head is
//! locked, the due expiries swept, the head moved and the commit flushed once per group, and
//! the requests queued behind a commit are booked together by the next one.
//!
//! Each request keeps what it had alone:
//!
//! - its own message id claim, made in the group's transaction, so a replay (also of a request
//!   booked earlier in the same group) is answered with the first reply, and other content
//!   under the id is refused with no change;
//! - its own outcomes, decided against everything booked before it, in the group too;
//! - its own caller in the audit trail and its own trace: its statements run in its request's
//!   task-local caller and span;
//! - its durability: it is answered only after the group's commit.
//!
//! A group that fails (a storage error, a conflict) is rolled back whole and its requests are
//! booked again one group each, so one request that cannot be booked fails alone.
//!
//! A request is checked (message id, transfers, ids, reason) by its handler before it queues,
//! so malformed input never reaches a group. Message ids are claimed under the head's lock
//! here, while the clearing writes claim theirs before they take it; the two only meet on one
//! message id used for a booking and a clearing request at once (refused ALREADY_EXISTS
//! either way), where PostgreSQL's deadlock detection fails one of them and its caller retries.

use std::collections::BTreeSet;
use std::sync::Arc;

use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use yitong_core::{MessageId, Network, PoolCode};
use yitong_proto::ledger::v1 as pb;
use yitong_rpc::Caller;
use yitong_store::Store;
use yitong_store::replies::{self, Claim};
use yitong_store::sqlx::AnyConnection;

use crate::LedgerError;
use crate::account::AccountId;
use crate::append::Appender;
use crate::balance::{Balance, Prepaid};
use crate::book;
use crate::journal::Event;
use crate::repo;
use crate::transfer::{Transfer, TransferId};

/// Most requests booked in one group.
pub const GROUP_REQUESTS_MAX: usize = 64;
/// Requests that may wait for a group; a handler waits for room beyond that.
const QUEUED_REQUESTS_MAX: usize = 1_024;

/// What one request books.
pub(crate) enum Work {
    Create {
        transfers: Vec<Transfer>,
    },
    Resolve {
        ids: Vec<TransferId>,
        resolution: Event,
        reason: String,
    },
}

impl Work {
    /// The cities whose prepaid position this work may move: a fund or an insured city's
    /// obligation on either side (cross-city settlements and cancellations, deposits,
    /// withdrawals).
    fn drawn(&self) -> impl Iterator<Item = PoolCode> + '_ {
        let transfers = match self {
            Work::Create { transfers } => transfers.as_slice(),
            Work::Resolve { .. } => &[],
        };
        transfers
            .iter()
            .flat_map(|transfer| [drawn(&transfer.debit), drawn(&transfer.credit)])
            .flatten()
    }
}

fn drawn(account: &AccountId) -> Option<PoolCode> {
    match *account {
        AccountId::Fund(city) | AccountId::Obligation { insured: city, .. } => Some(city),
        _ => None,
    }
}

/// The answer to one request: the reply to record and return, encoded as its RPC's response
/// (CreateTransfersResponse, or the outcomes of posting or voiding).
pub(crate) type Reply = Result<Vec<u8>, LedgerError>;

/// One request waiting for a group.
pub(crate) struct Booking {
    message_id: MessageId,
    rpc: &'static str,
    digest: String,
    work: Work,
    caller: Option<Caller>,
    span: tracing::Span,
    answer: oneshot::Sender<Reply>,
}

/// The handlers' end of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Bookings {
    queue: mpsc::Sender<Booking>,
}

impl Bookings {
    /// Starts the booking task of `store`; it ends when every handle is dropped.
    pub fn start(store: Store, network: Arc<Network>) -> Bookings {
        // The group counters are there from start-up, at zero.
        let metrics = yitong_telemetry::metrics();
        let _ = metrics.group_commits.get_or_create(&group_labels());
        let _ = metrics.group_requests.get_or_create(&group_labels());
        let (queue, requests) = mpsc::channel(QUEUED_REQUESTS_MAX);
        let booker = Booker { store, network };
        tokio::spawn(booker.run(requests));
        Bookings { queue }
    }

    /// Books `work` in the next group and returns its reply, as the caller and in the span of
    /// the request this is called from.
    pub async fn book(
        &self,
        message_id: MessageId,
        rpc: &'static str,
        digest: String,
        work: Work,
    ) -> Reply {
        let (answer, answered) = oneshot::channel();
        let booking = Booking {
            message_id,
            rpc,
            digest,
            work,
            caller: Caller::current(),
            span: tracing::Span::current(),
            answer,
        };
        let stopped = || LedgerError::Store(yitong_store::sqlx::Error::PoolClosed);
        self.queue.send(booking).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| {
            LedgerError::Corrupt("the booking of this request failed without an answer".into())
        })?
    }
}

/// The booking task.
#[derive(Clone)]
struct Booker {
    store: Store,
    network: Arc<Network>,
}

/// How one request of a group ended, before the commit.
enum Booked {
    /// A reply to return once the group has committed.
    Reply(Vec<u8>),
    /// Refused without a change (its message id used for other content).
    Refused(LedgerError),
}

impl Booker {
    async fn run(self, mut requests: mpsc::Receiver<Booking>) {
        while let Some(first) = requests.recv().await {
            let mut group = vec![first];
            while group.len() < GROUP_REQUESTS_MAX {
                match requests.try_recv() {
                    Ok(booking) => group.push(booking),
                    Err(_) => break,
                }
            }
            // Each group runs as a task of its own, so a group that panics fails its own
            // requests (their answers are dropped unsent) and the next group books as usual.
            let booker = self.clone();
            if let Err(error) = tokio::spawn(async move { booker.book_group(group).await }).await {
                tracing::error!(%error, "a group of bookings panicked; its requests were refused");
            }
        }
    }

    /// Books a group and answers each of its requests; a failed group is booked again one
    /// request at a time.
    async fn book_group(&self, mut group: Vec<Booking>) {
        let size = group.len();
        // Statements of the group as a whole run in its first request's span.
        let span = group[0].span.clone();
        match self.try_group(&mut group).instrument(span).await {
            Ok(booked) => {
                observe_group(size);
                for (booking, booked) in group.into_iter().zip(booked) {
                    let reply = match booked {
                        Booked::Reply(reply) => Ok(reply),
                        Booked::Refused(error) => Err(error),
                    };
                    let _ = booking.answer.send(reply);
                }
            }
            Err(error) if size == 1 => {
                let booking = group.pop().expect("a group of one");
                let _ = booking.answer.send(Err(error));
            }
            Err(error) => {
                tracing::warn!(size, error = %yitong_core::cause_chain(&error), "a group of bookings failed; booking them one by one");
                for booking in group {
                    Box::pin(self.book_group(vec![booking])).await;
                }
            }
        }
    }

    /// One transaction for the whole group: the head locked, each request claimed and booked in
    /// turn, the head moved, one commit.
    async fn try_group(&self, group: &mut [Booking]) -> Result<Vec<Booked>, LedgerError> {
        let cities: BTreeSet<PoolCode> = group
            .iter()
            .flat_map(|booking| booking.work.drawn())
            .collect();
        let mut tx = self.store.begin_write().await?;
        let mut appender = Appender::open(&mut tx).await?;
        let was = prepaid_of(&self.network, appender.conn(), &cities).await?;
        let mut booked = Vec::with_capacity(group.len());
        for booking in group.iter() {
            let work = book_one(&mut appender, booking);
            let work = work.instrument(booking.span.clone());
            let outcome = match booking.caller.clone() {
                Some(caller) => caller.scope(work).await,
                None => work.await,
            };
            booked.push(outcome?);
        }
        appender.close().await?;
        let now = prepaid_of(&self.network, &mut tx, &cities).await?;
        tx.commit().await?;
        observe_prepaid(&self.network, &was, &now);
        Ok(booked)
    }
}

/// Claims one request's message id and books its work, with what the group booked before it
/// in view.
async fn book_one(appender: &mut Appender<'_>, booking: &Booking) -> Result<Booked, LedgerError> {
    let message_id = booking.message_id.as_str();
    match replies::claim(appender.conn(), message_id, booking.rpc, &booking.digest).await {
        Ok(Claim::Fresh) => {}
        Ok(Claim::Replay(reply)) => return Ok(Booked::Reply(reply)),
        Err(replies::ReplyError::Conflict(id)) => {
            return Ok(Booked::Refused(LedgerError::MessageConflict(id)));
        }
        Err(error) => return Err(error.into()),
    }
    let reply = match &booking.work {
        Work::Create { transfers } => {
            let results = book::create_transfers(appender, transfers, message_id).await?;
            pb::CreateTransfersResponse { results }.encode_to_vec()
        }
        Work::Resolve {
            ids,
            resolution,
            reason,
        } => {
            let results =
                book::resolve_pending(appender, ids, *resolution, message_id, reason).await?;
            // Both replies are one repeated field of outcomes, so either decodes the other's.
            pb::PostPendingTransfersResponse { results }.encode_to_vec()
        }
    };
    // The next request of the group reads what this one booked.
    appender.flush().await?;
    replies::record(appender.conn(), message_id, &reply).await?;
    Ok(Booked::Reply(reply))
}

/// The labels of the ledger's group commit in the metrics.
pub(crate) fn group_labels() -> yitong_telemetry::GroupLabels {
    yitong_telemetry::GroupLabels {
        owner: "clearing".into(),
        queue: "ledger".into(),
    }
}

/// Counts a committed group and its requests, so the mean group size is their ratio.
fn observe_group(size: usize) {
    let metrics = yitong_telemetry::metrics();
    metrics.group_commits.get_or_create(&group_labels()).inc();
    metrics
        .group_requests
        .get_or_create(&group_labels())
        .inc_by(u64::try_from(size).unwrap_or(u64::MAX));
}

/// The city's low-balance threshold from the network file, in fen; zero when it names none.
pub(crate) fn threshold_fen(network: &Network, city: PoolCode) -> i64 {
    network
        .pool(city)
        .map_or(0, |city| city.prepaid_low_balance().fen())
}

/// The prepaid positions of `cities`, from their stored balances as `conn` sees them.
async fn prepaid_of(
    network: &Network,
    conn: &mut AnyConnection,
    cities: &BTreeSet<PoolCode>,
) -> Result<Vec<(PoolCode, Prepaid)>, LedgerError> {
    if cities.is_empty() {
        return Ok(Vec::new());
    }
    let enabled: Vec<PoolCode> = network.enabled_pools().map(|c| c.code).collect();
    // What a city owes as the insured city, one obligation per other enabled city.
    let obligations = |insured: PoolCode| -> Vec<String> {
        enabled
            .iter()
            .filter(|treatment| **treatment != insured)
            .map(|treatment| {
                AccountId::Obligation {
                    insured,
                    treatment: *treatment,
                }
                .to_string()
            })
            .collect()
    };
    let mut ids: Vec<String> = Vec::new();
    for city in cities {
        ids.push(AccountId::Fund(*city).to_string());
        ids.extend(obligations(*city));
    }
    let (balances, _) = repo::balances(conn, &ids).await?;
    let balance = |id: &str| balances.get(id).copied().unwrap_or_default();
    Ok(cities
        .iter()
        .map(|city| {
            let fund = balance(&AccountId::Fund(*city).to_string());
            let owed: Vec<Balance> = obligations(*city).iter().map(|id| balance(id)).collect();
            (
                *city,
                Prepaid::new(&fund, &owed, threshold_fen(network, *city)),
            )
        })
        .collect())
}

/// Sets the prepaid gauges of every enabled city from the stored balances, at start-up: a
/// low balance shows (and is warned of) before the first transfer moves it.
pub(crate) async fn observe_prepaid_at_start(
    store: &Store,
    network: &Network,
) -> Result<(), LedgerError> {
    let cities: BTreeSet<PoolCode> = network.enabled_pools().map(|city| city.code).collect();
    let mut conn = store.pool().acquire().await?;
    let now = prepaid_of(network, &mut conn, &cities).await?;
    for (city, prepaid) in &now {
        if prepaid.below_threshold() {
            tracing::warn!(
                city = %city,
                available_fen = prepaid.available_fen(),
                threshold_fen = prepaid.threshold_fen,
                "prepaid fund is below its low-balance threshold"
            );
        }
    }
    observe_prepaid(network, &now, &now);
    Ok(())
}

/// The prepaid positions a group moved, in the metrics, with a warning for each city whose
/// fund fell below its threshold. The bookings stand all the same: a claim is never refused
/// at the counter for want of prepaid funds.
fn observe_prepaid(network: &Network, was: &[(PoolCode, Prepaid)], now: &[(PoolCode, Prepaid)]) {
    for ((city, was), (_, now)) in was.iter().zip(now) {
        let host = network
            .city_of(*city)
            .expect("prepaid positions are of the network's pools");
        let labels = yitong_telemetry::PoolLabels {
            city: host.to_string(),
            pool: city.to_string(),
        };
        let metrics = yitong_telemetry::metrics();
        metrics
            .prepaid_available_fen
            .get_or_create(&labels)
            .set(now.available_fen());
        metrics
            .prepaid_below_threshold
            .get_or_create(&labels)
            .set(i64::from(now.below_threshold()));
        if now.fell_below(was) {
            tracing::warn!(
                city = %city,
                available_fen = now.available_fen(),
                threshold_fen = now.threshold_fen,
                "prepaid fund fell below its low-balance threshold"
            );
        }
    }
}
