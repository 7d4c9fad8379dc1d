//! Group commit at the insured city: Reserves (of settlements and cancellations) and Posts queue
//! to one task per benefit service, which books whatever has queued in one write transaction
//! and one commit, and then answers each; as the ledger books its transfers
//! (`yitong_ledger`'s `group`).
//!
//! A request's reads that need no lock (the person and the policy from this city's identity
//! and catalog, the reservation a Post or a cancellation names) are made by its handler before
//! it queues, so a group's transaction holds only what must be read and written under the
//! person's lock. In the group, each request keeps what it had alone:
//!
//! - its place in order: the requests are booked one after another in the group's
//!   transaction, each under its person's lock (`repo::lock_year`) and seeing everything the
//!   ones before it wrote, so two reservations of one person in a group see each other as two
//!   transactions one after the other would (the second's totals include the first's hold);
//! - its own outcome: in a group of more than one, each request runs inside a savepoint, and a
//!   request refused (a business refusal, a conflict, a peer's failure) is rolled back to it
//!   alone, while the others go on; a refused request stores nothing, as alone;
//! - its own caller in the audit trail and its own trace: its statements run in its request's
//!   task-local caller and span;
//! - its durability: it is answered only after the group's commit.
//!
//! A storage failure inside a group, or of its commit, rolls the whole group back, and its
//! requests are booked again one group each, so one request that cannot be booked fails
//! alone. A crash before the commit loses the whole group: nothing of it is written, every
//! request is unanswered, and the treatment city retries or voids each as it would after a
//! lost call. Posts that moved a personal account before such a crash move nothing twice when
//! retried (identity keeps one movement per settlement id).
//!
//! The requests of a group are booked in the order of the persons they lock (person number,
//! then benefit year), the queue's order kept among one person's: two benefit services on one
//! PostgreSQL store (a city scaled out) then lock persons in the same order and cannot
//! deadlock on them.

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use yitong_rpc::Caller;
use yitong_store::sqlx::{self, AnyConnection};

use super::repo::ReservationRow;
use super::{BenefitError, BenefitNode, Context};
use crate::benefit::claim::BenefitClaim;
use yitong_core::MessageId;

/// Most requests booked in one group.
pub const GROUP_REQUESTS_MAX: usize = 64;
/// Requests that may wait for a group; a handler waits for room beyond that.
const QUEUED_REQUESTS_MAX: usize = 1_024;

/// A new settlement's hold, with the person and the policy its handler read.
#[derive(Debug)]
pub(crate) struct Hold {
    pub message_id: MessageId,
    pub settlement_id: String,
    pub claim: BenefitClaim,
    pub context: Context,
    pub timeout_seconds: u32,
    pub digest: String,
}

/// What one request books, with what its handler read before it queued.
#[derive(Debug)]
pub(crate) enum Work {
    /// Holds a new settlement's benefit.
    Reserve(Hold),
    /// Holds the exact reversal of a posted settlement's benefit; `original` as read before
    /// the lock (read again under it).
    Cancel {
        message_id: MessageId,
        settlement_id: String,
        original: ReservationRow,
        timeout_seconds: u32,
        digest: String,
    },
    /// Posts a reservation; `found` as read before the lock (read again under it).
    Post {
        message_id: MessageId,
        found: ReservationRow,
    },
}

impl Prepared {
    /// The person's yearly totals the write locks: what orders a group.
    fn lock(&self) -> (&str, i64) {
        let work = match self {
            Prepared::Book(work) => work,
            Prepared::Done(_) => return ("", 0),
        };
        match work {
            Work::Reserve(hold) => (
                hold.claim.person_no.as_str(),
                i64::from(chrono::Datelike::year(&hold.claim.service_date)),
            ),
            Work::Cancel { original, .. } => (&original.person_no, original.benefit_year),
            Work::Post { found, .. } => (&found.person_no, found.benefit_year),
        }
    }
}

/// A write a benefit service is asked for, checked and read as far as it can be without a
/// lock, ready to be booked in a group ([`BenefitNode::stage`]).
#[derive(Debug)]
pub struct Write(pub(crate) Prepared);

#[derive(Debug)]
pub(crate) enum Prepared {
    /// Needs a transaction.
    Book(Work),
    /// Answered without one (a Post of a reservation posted and moved already).
    Done(ReservationRow),
}

/// The answer to one request.
pub(crate) type Reply = Result<ReservationRow, BenefitError>;

/// One request waiting for a group.
struct Queued {
    work: Prepared,
    caller: Option<Caller>,
    span: tracing::Span,
    answer: oneshot::Sender<Reply>,
}

/// The handlers' end of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    queue: mpsc::Sender<Queued>,
}

impl Writes {
    /// Starts the booking task of `booker`; it ends when every handle is dropped. `booker`
    /// must not hold this queue (it books through [`BenefitNode::stage`], never the queue).
    pub fn start(booker: BenefitNode) -> Writes {
        let (queue, requests) = mpsc::channel(QUEUED_REQUESTS_MAX);
        tokio::spawn(run(booker, requests));
        Writes { queue }
    }

    /// Books `work` in the next group and returns its reply, as the caller and in the span of
    /// the request this is called from.
    pub async fn book(&self, work: Prepared) -> Reply {
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            work,
            caller: Caller::current(),
            span: tracing::Span::current(),
            answer,
        };
        let stopped = || BenefitError::Store(sqlx::Error::PoolClosed);
        self.queue.send(queued).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| {
            BenefitError::Corrupt("the group of this request failed without an answer".into())
        })?
    }
}

async fn run(booker: BenefitNode, mut requests: mpsc::Receiver<Queued>) {
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_REQUESTS_MAX {
            match requests.try_recv() {
                Ok(queued) => group.push(queued),
                Err(_) => break,
            }
        }
        // Each group runs as a task of its own, so a group that panics fails its own requests
        // (their answers are dropped unsent) and the next group books as usual.
        let booker = booker.clone();
        if let Err(error) = tokio::spawn(async move { book_group(&booker, group).await }).await {
            tracing::error!(%error, "a group of benefit writes panicked; its requests were refused");
        }
    }
}

/// Books a group and answers each of its requests; a failed group is booked again one request
/// at a time.
async fn book_group(booker: &BenefitNode, mut group: Vec<Queued>) {
    group.sort_by(|a, b| a.work.lock().cmp(&b.work.lock()));
    let size = group.len();
    let span = group[0].span.clone();
    let staged = {
        let requests: Vec<Request<'_>> = group
            .iter()
            .map(|queued| Request {
                work: &queued.work,
                caller: queued.caller.clone(),
                span: queued.span.clone(),
            })
            .collect();
        booker.stage_requests(&requests).instrument(span).await
    };
    let committed = match staged {
        Ok(staged) => staged.commit().await,
        Err(error) => Err(error),
    };
    match committed {
        Ok(replies) => {
            observe(booker, size);
            for (queued, reply) in group.into_iter().zip(replies) {
                let _ = queued.answer.send(reply);
            }
        }
        Err(error) if size == 1 => {
            let queued = group.pop().expect("a group of one");
            let _ = queued.answer.send(Err(error));
        }
        Err(error) => {
            tracing::warn!(size, error = %yitong_core::cause_chain(&error), "a group of benefit writes failed; booking them one by one");
            for queued in group {
                Box::pin(book_group(booker, vec![queued])).await;
            }
        }
    }
}

/// The labels of a benefit service's group commit in the metrics.
pub(crate) fn labels(node: &BenefitNode) -> yitong_telemetry::GroupLabels {
    yitong_telemetry::GroupLabels {
        owner: node.city().to_string(),
        queue: "benefit".into(),
    }
}

/// Counts a committed group and its requests, so the mean group size is their ratio.
fn observe(booker: &BenefitNode, size: usize) {
    let labels = labels(booker);
    let metrics = yitong_telemetry::metrics();
    metrics.group_commits.get_or_create(&labels).inc();
    metrics
        .group_requests
        .get_or_create(&labels)
        .inc_by(u64::try_from(size).unwrap_or(u64::MAX));
}

/// One request of a group being staged.
pub(crate) struct Request<'a> {
    pub work: &'a Prepared,
    pub caller: Option<Caller>,
    pub span: tracing::Span,
}

/// A group booked in its open transaction, not yet committed: dropped, it is rolled back whole,
/// as a crash before the commit leaves it.
pub struct Staged {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    replies: Vec<Reply>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("requests", &self.replies.len())
            .finish_non_exhaustive()
    }
}

impl Staged {
    /// Commits the group and returns each request's reply, in the order staged. A group all of
    /// whose requests were refused is rolled back instead: it changed nothing.
    pub(crate) async fn commit(self) -> Result<Vec<Reply>, BenefitError> {
        if self.replies.iter().all(Result::is_err) {
            self.tx.rollback().await?;
        } else {
            self.tx.commit().await?;
        }
        Ok(self.replies)
    }
}

impl BenefitNode {
    /// Books every request of a group in one transaction, each in its turn, and leaves it open.
    /// A storage failure is the group's (`Err`); any other failure is its request's own reply.
    pub(crate) async fn stage_requests(
        &self,
        group: &[Request<'_>],
    ) -> Result<Staged, BenefitError> {
        let savepoints = group.len() > 1;
        let mut tx = self.store().begin_write().await?;
        let mut replies = Vec::with_capacity(group.len());
        for request in group {
            let work = match request.work {
                Prepared::Book(work) => work,
                Prepared::Done(row) => {
                    replies.push(Ok(row.clone()));
                    continue;
                }
            };
            if savepoints {
                sqlx::query("SAVEPOINT request").execute(&mut *tx).await?;
            }
            let work = self.book_one(&mut tx, work);
            let work = work.instrument(request.span.clone());
            let reply = match request.caller.clone() {
                Some(caller) => caller.scope(work).await,
                None => work.await,
            };
            match reply {
                Err(BenefitError::Store(error)) => return Err(BenefitError::Store(error)),
                Err(refused) => {
                    if savepoints {
                        rollback_to_savepoint(&mut tx).await?;
                    }
                    replies.push(Err(refused));
                }
                Ok(row) => {
                    if savepoints {
                        sqlx::query("RELEASE SAVEPOINT request")
                            .execute(&mut *tx)
                            .await?;
                    }
                    replies.push(Ok(row));
                }
            }
        }
        Ok(Staged { tx, replies })
    }

    /// One request's writes, under its person's lock, with what the group wrote before it in
    /// view.
    async fn book_one(&self, conn: &mut AnyConnection, work: &Work) -> Reply {
        match work {
            Work::Reserve(hold) => self.reserve_settlement_locked(conn, hold).await,
            Work::Cancel {
                message_id,
                settlement_id,
                original,
                timeout_seconds,
                digest,
            } => {
                self.reserve_cancellation_locked(
                    conn,
                    message_id,
                    settlement_id,
                    original,
                    *timeout_seconds,
                    digest,
                )
                .await
            }
            Work::Post { message_id, found } => self.post_locked(conn, message_id, found).await,
        }
    }
}

async fn rollback_to_savepoint(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("ROLLBACK TO SAVEPOINT request")
        .execute(&mut *conn)
        .await?;
    sqlx::query("RELEASE SAVEPOINT request")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
