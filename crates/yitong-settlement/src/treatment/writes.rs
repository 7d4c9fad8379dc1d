//! Group commit at the treatment city: the local write transactions of a Settle and of a
//! cancellation (step 1, the intent; step 3, the record; step 4's last transaction, the
//! completion) queue to one task per settlement node, which books whatever has queued in one
//! write transaction and one commit (`crate::group`), and then answers each.
//!
//! What a request reads without a lock (the visit and person checks of `prepare`, the
//! reservation and the transfer of a record, the row a completion completes) and every call to
//! another node is made by its handler before it queues, so a group's transaction holds only
//! what must be read and written under the locks. A refused request (a visit not open or not
//! the caller's, a settlement already cancelled, an intent whose void was decided first,
//! SETTLEMENT_VOIDED) is rolled back to its savepoint alone and stores nothing; a storage
//! failure books the group again one request at a time; a crash before the commit loses the
//! whole group, each request then unanswered as after a lost call (an intent never written is
//! sent again; an intent written and not recorded is voided by the sweep; a record lost is
//! voided or recorded again; a completion lost is completed by the sweep).
//!
//! Locks and their order: a group that holds an intent first locks the day's serial row of
//! settlement ids (`repo::lock_serial`), which every intent updates; then its requests are
//! booked in the order of their visit ids, each locking its visit (a Settle's intent and every
//! record) and the visit's settlement rows. Two nodes on one PostgreSQL store (a city scaled
//! out) thus take the serial row before any visit and the visits in one order. What is left
//! (two requests of one visit in each of two groups at once, a group that spans midnight and
//! so two days' serial rows) can still meet in a cycle; PostgreSQL then aborts one of the two
//! transactions as deadlocked, a storage failure, and its requests are booked again one by
//! one, each alone taking only its own visit's rows. On SQLite a write transaction holds the
//! whole database from its start, and no two transactions wait for each other.
//!
//! Not grouped: a void's two transactions (`decide_void`, `carry_void`), and RegisterVisit,
//! UploadFeeLines and CancelFeeLines, each one transaction of its own as before.

use yitong_proto::ledger::v1 as ledger;
use yitong_proto::settlement::v1 as pb;
use yitong_store::Store;
use yitong_store::sqlx::{self, AnyConnection};

use super::cancel::CancelRequest;
use super::repo::{self, SettlementRow};
use super::request::SettleInput;
use super::settle::{Intent, Started};
use super::{SettlementNode, TreatmentError};
use crate::group::{self, Booker, BoxFuture, GroupError, Queue, Request};

/// What one request books, with what its handler read before it queued.
#[derive(Debug)]
pub(super) enum Work {
    /// Step 1 of a Settle.
    Intent { input: SettleInput, digest: String },
    /// Step 1 of a cancellation; `original` as read before the lock (read again under it).
    CancelIntent {
        original: Box<SettlementRow>,
        request: Box<CancelRequest>,
    },
    /// Step 3 of either.
    Record {
        intent: Box<Intent>,
        reservation: Box<pb::Reservation>,
        transfer: Box<ledger::Transfer>,
    },
    /// Step 4's last transaction; `row` as read before the peers were called.
    Complete { row: Box<SettlementRow> },
}

impl Work {
    /// The visit whose rows the request locks: what orders a group.
    fn visit_id(&self) -> &str {
        match self {
            Work::Intent { input, .. } => &input.scope.visit_id,
            Work::CancelIntent { original, .. } => &original.visit_id,
            Work::Record { intent, .. } => &intent.row.visit_id,
            Work::Complete { row } => &row.visit_id,
        }
    }

    fn is_intent(&self) -> bool {
        matches!(self, Work::Intent { .. } | Work::CancelIntent { .. })
    }
}

/// What one request of a group booked.
#[derive(Debug)]
pub enum Booked {
    /// Step 1: a new intent, or the message id claimed by another call first.
    Started(Started),
    /// Step 3: the record, as the HIS sees it.
    Recorded(pb::Settlement),
    /// Step 4: the settlement's record as completed now (`None` for a cancellation, or one
    /// another actor completed first).
    Completed(Option<pb::Settlement>),
}

impl Booked {
    pub fn started(self) -> Result<Started, TreatmentError> {
        match self {
            Booked::Started(started) => Ok(started),
            other => Err(mismatch("an intent", &other)),
        }
    }

    pub fn recorded(self) -> Result<pb::Settlement, TreatmentError> {
        match self {
            Booked::Recorded(settlement) => Ok(settlement),
            other => Err(mismatch("a record", &other)),
        }
    }

    pub fn completed(self) -> Result<Option<pb::Settlement>, TreatmentError> {
        match self {
            Booked::Completed(settlement) => Ok(settlement),
            other => Err(mismatch("a completion", &other)),
        }
    }
}

fn mismatch(asked: &str, booked: &Booked) -> TreatmentError {
    TreatmentError::Corrupt(format!("{asked} was booked as {booked:?}"))
}

/// A write of step 1, 3 or 4, ready to be booked in a group ([`SettlementNode::stage`]).
#[derive(Debug)]
pub struct Write(Work);

/// A group booked in its open transaction, not yet committed: dropped, it is rolled back whole,
/// as a crash before the commit leaves it.
pub type Staged = group::Staged<SettlementNode>;

impl GroupError for TreatmentError {
    fn is_storage(&self) -> bool {
        matches!(self, TreatmentError::Store(_))
    }

    fn unanswered() -> Self {
        TreatmentError::Corrupt("the group of this request failed without an answer".into())
    }
}

impl Booker for SettlementNode {
    type Work = Write;
    type Output = Booked;
    type Error = TreatmentError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn labels(&self) -> yitong_telemetry::GroupLabels {
        yitong_telemetry::GroupLabels {
            owner: self.city.to_string(),
            queue: "treatment".into(),
        }
    }

    fn order(write: &Write) -> impl Ord + '_ {
        write.0.visit_id()
    }

    fn open<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        group: &'a [&'a Write],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            if group.iter().any(|write| write.0.is_intent()) {
                let prefix = self.settlement_prefix(yitong_core::today());
                repo::lock_serial(conn, &prefix).await?;
            }
            Ok(())
        })
    }

    fn book<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        write: &'a Write,
    ) -> BoxFuture<'a, Result<Booked, TreatmentError>> {
        Box::pin(async move {
            Ok(match &write.0 {
                Work::Intent { input, digest } => {
                    Booked::Started(self.intend_locked(conn, input, digest).await?)
                }
                Work::CancelIntent { original, request } => Booked::Started(
                    match self.intend_cancel_locked(conn, original, request).await? {
                        Some(intent) => Started::Intent(Box::new(intent)),
                        None => Started::Seen,
                    },
                ),
                Work::Record {
                    intent,
                    reservation,
                    transfer,
                } => Booked::Recorded(
                    self.record_locked(conn, intent, reservation, transfer)
                        .await?,
                ),
                Work::Complete { row } => Booked::Completed(self.complete_locked(conn, row).await?),
            })
        })
    }
}

impl SettlementNode {
    /// The counters of this node's group commit, there from start-up at zero.
    pub(super) fn start_group_metrics(&self) {
        let metrics = yitong_telemetry::metrics();
        let _ = metrics.group_commits.get_or_create(&self.labels());
        let _ = metrics.group_requests.get_or_create(&self.labels());
    }

    /// Books `work` in the next group commit and returns what it booked.
    pub(super) async fn write(&self, work: Work) -> Result<Booked, TreatmentError> {
        let queue = self.writes.get_or_init(|| {
            // The booking task's own node has a queue of its own, never started: it books
            // through `group::stage`, and holding this queue would keep the task alive after
            // the last handle is dropped.
            let booker = SettlementNode {
                writes: Default::default(),
                ..self.clone()
            };
            Queue::start(booker)
        });
        queue.book(Write(work)).await
    }

    /// Books a prepared write in the next group commit.
    pub(super) async fn book_write(&self, write: Write) -> Result<Booked, TreatmentError> {
        self.write(write.0).await
    }

    /// Step 1 of a Settle as a write to stage, from the wire request: checks the request, the
    /// visit and the credential first, as [`SettlementNode::step_intent`] does.
    pub async fn prepare_intent(
        &self,
        request: &pb::SettleRequest,
    ) -> Result<Write, TreatmentError> {
        let input = SettleInput::try_from(request)?;
        self.prepare(&input).await?;
        self.carry_voids_of_visit(&input.scope.visit_id).await;
        Ok(Write(Work::Intent {
            input,
            digest: super::digest(request),
        }))
    }

    /// Step 3 as a write to stage, as [`SettlementNode::step_record`] books it.
    pub fn prepare_record(
        &self,
        intent: &Intent,
        reservation: &pb::Reservation,
        transfer: &ledger::Transfer,
    ) -> Write {
        Write(Work::Record {
            intent: Box::new(intent.clone()),
            reservation: Box::new(reservation.clone()),
            transfer: Box::new(transfer.clone()),
        })
    }

    /// Books `writes` in one transaction, as the group commit books a group, and leaves it
    /// open: [`SettlementNode::commit`] commits it, and dropping it is a crash before the
    /// commit.
    pub async fn stage(&self, writes: &[Write]) -> Result<Staged, TreatmentError> {
        let requests: Vec<Request<'_, Write>> = writes.iter().map(Request::current).collect();
        group::stage(self, &requests).await
    }

    /// Commits a staged group and returns what each write booked, in the order staged.
    pub async fn commit(
        &self,
        staged: Staged,
    ) -> Result<Vec<Result<Booked, TreatmentError>>, TreatmentError> {
        staged.commit().await
    }
}
