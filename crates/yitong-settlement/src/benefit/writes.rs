//! Group commit at the insured city: Reserves (of settlements and cancellations) and Posts queue
//! to one task per benefit service, which books whatever has queued in one write transaction
//! and one commit (`crate::group`, with its guarantees), and then answers each; as the ledger
//! books its transfers (`yitong_ledger`'s `group`).
//!
//! A request's reads that need no lock (the person and the policy from this city's identity
//! and catalog, the reservation a Post or a cancellation names) are made by its handler before
//! it queues, so a group's transaction holds only what must be read and written under the
//! person's lock. Each request is booked under its person's lock (`repo::lock_year`), seeing
//! everything the ones before it in the group wrote, so two reservations of one person in a
//! group see each other as two transactions one after the other would (the second's totals
//! include the first's hold). A refused request (a business refusal, a conflict, a peer's
//! failure) is rolled back to its savepoint alone and stores nothing.
//!
//! A crash before the commit loses the whole group: nothing of it is written, every request is
//! unanswered, and the treatment city retries or voids each as it would after a lost call.
//! Posts that moved a personal account before such a crash move nothing twice when retried
//! (identity keeps one movement per settlement id).
//!
//! The requests of a group are booked in the order of the persons they lock (person number,
//! then benefit year), the queue's order kept among one person's: two benefit services on one
//! PostgreSQL store (a city scaled out) then lock persons in the same order and cannot
//! deadlock on them. A group takes no lock before its requests'.
//!
//! A Post of a reservation posted and moved already needs no transaction: its handler answers
//! it without queuing; staged in a group ([`BenefitNode::stage`]), it is answered with the
//! reservation and writes nothing.

use std::sync::{Arc, OnceLock};

use tonic::Status;
use yitong_core::MessageId;
use yitong_proto::settlement::v1 as pb;
use yitong_store::Store;
use yitong_store::sqlx::{self, AnyConnection};

use super::repo::ReservationRow;
use super::{BenefitError, BenefitNode, Context};
use crate::benefit::claim::BenefitClaim;
use crate::group::{self, Booker, BoxFuture, GroupError, Queue, Request};

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

/// A group booked in its open transaction, not yet committed: dropped, it is rolled back whole,
/// as a crash before the commit leaves it.
pub type Staged = group::Staged<BenefitNode>;

/// The queue of a benefit service's group commit, started by its first write.
pub(crate) type Writes = Arc<OnceLock<Queue<BenefitNode>>>;

impl GroupError for BenefitError {
    fn is_storage(&self) -> bool {
        matches!(self, BenefitError::Store(_))
    }

    fn unanswered() -> Self {
        BenefitError::Corrupt("the group of this request failed without an answer".into())
    }
}

impl Booker for BenefitNode {
    type Work = Write;
    type Output = ReservationRow;
    type Error = BenefitError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn labels(&self) -> yitong_telemetry::GroupLabels {
        yitong_telemetry::GroupLabels {
            owner: self.city.to_string(),
            queue: "benefit".into(),
        }
    }

    fn order(write: &Write) -> impl Ord + '_ {
        write.0.lock()
    }

    fn open<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
        _group: &'a [&'a Write],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        // Each request takes its person's lock in its turn; the group's order is the lock order.
        Box::pin(async { Ok(()) })
    }

    fn book<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        write: &'a Write,
    ) -> BoxFuture<'a, Result<ReservationRow, BenefitError>> {
        Box::pin(async move {
            match &write.0 {
                Prepared::Done(row) => Ok(row.clone()),
                Prepared::Book(Work::Reserve(hold)) => {
                    self.reserve_settlement_locked(conn, hold).await
                }
                Prepared::Book(Work::Cancel {
                    message_id,
                    settlement_id,
                    original,
                    timeout_seconds,
                    digest,
                }) => {
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
                Prepared::Book(Work::Post { message_id, found }) => {
                    self.post_locked(conn, message_id, found).await
                }
            }
        })
    }
}

impl BenefitNode {
    /// The counters of this service's group commit, there from start-up at zero.
    pub(super) fn start_group_metrics(&self) {
        let metrics = yitong_telemetry::metrics();
        let _ = metrics.group_commits.get_or_create(&self.labels());
        let _ = metrics.group_requests.get_or_create(&self.labels());
    }

    /// Books a prepared write in the next group commit (or answers it, if it needs none).
    pub(super) async fn write(&self, write: Write) -> Result<ReservationRow, BenefitError> {
        if let Prepared::Done(row) = write.0 {
            return Ok(row);
        }
        let queue = self.writes.get_or_init(|| {
            // The booking task's own node has a queue of its own, never started: it books
            // through `group::stage`, and holding this queue would keep the task alive after
            // the last handle is dropped.
            let booker = BenefitNode {
                writes: Default::default(),
                ..self.clone()
            };
            Queue::start(booker)
        });
        queue.book(write).await
    }

    /// Books `writes` in one transaction, as the group commit books a group, and leaves it
    /// open: [`BenefitNode::commit`] commits it, and dropping it is a crash before the commit.
    pub async fn stage(&self, writes: &[Write]) -> Result<Staged, Status> {
        let requests: Vec<Request<'_, Write>> = writes.iter().map(Request::current).collect();
        Ok(group::stage(self, &requests).await?)
    }

    /// Commits a staged group and returns each write's answer, in the order staged, as its
    /// RPC would.
    pub async fn commit(
        &self,
        staged: Staged,
    ) -> Result<Vec<Result<pb::Reservation, Status>>, Status> {
        let replies = staged.commit().await?;
        Ok(replies
            .into_iter()
            .map(|reply| Ok(self.reservation_wire(&reply?)?))
            .collect())
    }
}
