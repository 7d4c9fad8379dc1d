//! Group commit of re-runnable units of work: requests queue to one task per [`Booker`], which
//! books whatever has queued (up to [`GROUP_REQUESTS_MAX`]) in one write transaction and one
//! commit, and then answers each. The treatment city's intents, records and completions
//! (`treatment::writes`) and the insured city's Reserves and Posts (`benefit::writes`) go
//! through it.
//!
//! In a group, each request keeps what it had alone:
//!
//! - its place in order: the requests are booked one after another in the group's
//!   transaction, each seeing everything the ones before it wrote;
//! - its own outcome: in a group of more than one, each request runs inside a savepoint, and a
//!   request refused (any error but a storage failure, [`GroupError::is_storage`]) is rolled
//!   back to it alone while the others go on; a refused request stores nothing, as alone;
//! - its own caller in the audit trail and its own trace: its statements run in its request's
//!   task-local caller and span;
//! - its durability: it is answered only after the group's commit.
//!
//! A storage failure inside a group, or of its commit, rolls the whole group back, and its
//! requests are booked again one group each (a unit of work is re-runnable: it reads
//! everything it decides on inside the transaction), so one request that cannot be booked
//! fails alone. A crash before the commit loses the whole group: nothing of it is written and
//! every request is unanswered, as after a lost call.
//!
//! A group is booked in the order of what its requests lock ([`Booker::order`]), the queue's
//! order kept among equals, and may first take locks every request of it would take anyway
//! ([`Booker::open`]): two services on one PostgreSQL store then take their locks in one
//! order. The answers come back in the order the requests were given.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use yitong_rpc::Caller;
use yitong_store::Store;
use yitong_store::sqlx::{self, AnyConnection};

/// Most requests booked in one group.
pub const GROUP_REQUESTS_MAX: usize = 64;
/// Requests that may wait for a group; a caller waits for room beyond that.
const QUEUED_REQUESTS_MAX: usize = 1_024;

/// A boxed future that may move between threads, as a unit of work returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error of a unit of work: a storage failure is the group's, anything else (a business
/// refusal, a conflict, a peer's answer) its request's own.
pub trait GroupError: std::error::Error + From<sqlx::Error> + Send + 'static {
    /// Whether this is a failure of the store, which rolls the whole group back.
    fn is_storage(&self) -> bool;
    /// The answer of a request whose group ended without one (it panicked).
    fn unanswered() -> Self;
}

/// What books one kind of request in groups: the service node, cloned into the booking task.
pub trait Booker: Clone + Send + Sync + 'static {
    /// One request, with what its caller read before it queued.
    type Work: Send + Sync + 'static;
    type Output: Send + 'static;
    type Error: GroupError;

    fn store(&self) -> &Store;

    /// The labels of this queue in the metrics.
    fn labels(&self) -> yitong_telemetry::GroupLabels;

    /// What a request locks first, which orders a group.
    fn order(work: &Self::Work) -> impl Ord + '_;

    /// Takes, at the start of a group's transaction, locks that its requests would each take
    /// in turn, so that every group takes them before anything else.
    fn open<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        group: &'a [&'a Self::Work],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// One request's reads and writes inside the group's transaction. Re-runnable: everything
    /// it decides on is read here, so booking it again after a failed group decides afresh.
    fn book<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        work: &'a Self::Work,
    ) -> BoxFuture<'a, Result<Self::Output, Self::Error>>;
}

/// The answer to one request.
pub type Reply<B> = Result<<B as Booker>::Output, <B as Booker>::Error>;

/// One request waiting for a group.
struct Queued<B: Booker> {
    work: B::Work,
    caller: Option<Caller>,
    span: tracing::Span,
    answer: oneshot::Sender<Reply<B>>,
}

/// The callers' end of a booker's queue.
pub struct Queue<B: Booker> {
    sender: mpsc::Sender<Queued<B>>,
}

impl<B: Booker> std::fmt::Debug for Queue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl<B: Booker> Queue<B> {
    /// Starts the booking task of `booker`; it ends when the queue is dropped. `booker` must not
    /// hold this queue (it books through [`stage`], never the queue), or it would never end.
    pub fn start(booker: B) -> Queue<B> {
        let (sender, requests) = mpsc::channel(QUEUED_REQUESTS_MAX);
        tokio::spawn(run(booker, requests));
        Queue { sender }
    }

    /// Books `work` in the next group and returns its reply, as the caller and in the span of
    /// the request this is called from.
    pub async fn book(&self, work: B::Work) -> Reply<B> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            work,
            caller: Caller::current(),
            span: tracing::Span::current(),
            answer,
        };
        let stopped = || B::Error::from(sqlx::Error::PoolClosed);
        self.sender.send(queued).await.map_err(|_| stopped())?;
        answered
            .await
            .unwrap_or_else(|_| Err(B::Error::unanswered()))
    }
}

async fn run<B: Booker>(booker: B, mut requests: mpsc::Receiver<Queued<B>>) {
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
            tracing::error!(%error, "a group of writes panicked; its requests were refused");
        }
    }
}

/// Books a group and answers each of its requests; a failed group is booked again one request
/// at a time.
async fn book_group<B: Booker>(booker: &B, mut group: Vec<Queued<B>>) {
    let size = group.len();
    let committed = {
        let requests: Vec<Request<'_, B::Work>> = group
            .iter()
            .map(|queued| Request {
                work: &queued.work,
                caller: queued.caller.clone(),
                span: queued.span.clone(),
            })
            .collect();
        // The group's own statements (begin, its opening locks, commit) run in the span of
        // its first request.
        let span = group[0].span.clone();
        async {
            match stage(booker, &requests).await {
                Ok(staged) => staged.commit().await,
                Err(error) => Err(error),
            }
        }
        .instrument(span)
        .await
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
            let labels = booker.labels();
            tracing::warn!(size, queue = %labels.queue, error = %yitong_core::cause_chain(&error), "a group of writes failed; booking them one by one");
            for queued in group {
                Box::pin(book_group(booker, vec![queued])).await;
            }
        }
    }
}

/// Counts a committed group and its requests, so the mean group size is their ratio.
fn observe<B: Booker>(booker: &B, size: usize) {
    let labels = booker.labels();
    let metrics = yitong_telemetry::metrics();
    metrics.group_commits.get_or_create(&labels).inc();
    metrics
        .group_requests
        .get_or_create(&labels)
        .inc_by(u64::try_from(size).unwrap_or(u64::MAX));
}

/// One request of a group being staged, with the caller and span it runs as.
pub struct Request<'a, W> {
    pub work: &'a W,
    pub caller: Option<Caller>,
    pub span: tracing::Span,
}

impl<'a, W> Request<'a, W> {
    /// `work` as the request this is called from.
    pub fn current(work: &'a W) -> Self {
        Request {
            work,
            caller: Caller::current(),
            span: tracing::Span::current(),
        }
    }
}

/// A group booked in its open transaction, not yet committed: dropped, it is rolled back whole,
/// as a crash before the commit leaves it.
pub struct Staged<B: Booker> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    replies: Vec<Reply<B>>,
}

impl<B: Booker> std::fmt::Debug for Staged<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("requests", &self.replies.len())
            .finish_non_exhaustive()
    }
}

impl<B: Booker> Staged<B> {
    /// Commits the group and returns each request's reply, in the order given. A group all of
    /// whose requests were refused is rolled back instead: it changed nothing.
    pub async fn commit(self) -> Result<Vec<Reply<B>>, B::Error> {
        if self.replies.iter().all(Result::is_err) {
            self.tx.rollback().await?;
        } else {
            self.tx.commit().await?;
        }
        Ok(self.replies)
    }
}

/// Books every request of a group in one transaction, each in its turn in the order of what
/// it locks, and leaves it open. A storage failure is the group's (`Err`); any other failure is
/// its request's own reply.
pub async fn stage<B: Booker>(
    booker: &B,
    group: &[Request<'_, B::Work>],
) -> Result<Staged<B>, B::Error> {
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by(|&a, &b| B::order(group[a].work).cmp(&B::order(group[b].work)));
    let savepoints = group.len() > 1;
    let mut tx = booker.store().begin_write().await?;
    let works: Vec<&B::Work> = order.iter().map(|&index| group[index].work).collect();
    booker.open(&mut tx, &works).await?;
    let mut replies: Vec<Option<Reply<B>>> = group.iter().map(|_| None).collect();
    for index in order {
        let request = &group[index];
        if savepoints {
            sqlx::query("SAVEPOINT request").execute(&mut *tx).await?;
        }
        let work = booker.book(&mut tx, request.work);
        let work = work.instrument(request.span.clone());
        let reply = match request.caller.clone() {
            Some(caller) => caller.scope(work).await,
            None => work.await,
        };
        match reply {
            Err(error) if error.is_storage() => return Err(error),
            Err(refused) => {
                if savepoints {
                    sqlx::query("ROLLBACK TO SAVEPOINT request")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT request")
                        .execute(&mut *tx)
                        .await?;
                }
                replies[index] = Some(Err(refused));
            }
            Ok(output) => {
                if savepoints {
                    sqlx::query("RELEASE SAVEPOINT request")
                        .execute(&mut *tx)
                        .await?;
                }
                replies[index] = Some(Ok(output));
            }
        }
    }
    let replies = replies
        .into_iter()
        .map(|reply| reply.expect("every request of a group is booked"))
        .collect();
    Ok(Staged { tx, replies })
}
