//! The LedgerService handlers of the clearing house: transfers, balances, the journal, daily
//! reconciliation and monthly clearing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};
use yitong_core::{Invalid, MessageId, Network, Owner, PoolCode};
use yitong_proto::ledger::v1 as pb;
use yitong_proto::ledger::v1::lookup_transfers_request::Selector;
use yitong_rpc::visibility::{self, Parties, Sight};
use yitong_rpc::{Caller, invalid_argument};
use yitong_store::replies::{self, Claim};
use yitong_store::sqlx::{Any, Transaction};
use yitong_store::{Store, now_ms};

use crate::LedgerError;
use crate::account::{AccountId, AccountKind, chart};
use crate::activity;
use crate::append::{Appender, EXPIRIES_PER_SWEEP_MAX};
use crate::balance::{Balance, Prepaid};
use crate::book::{self, Known};
use crate::clearing;
use crate::group::{Bookings, Work, threshold_fen};
use crate::journal::{Altered, Entry, Event, Legs, Verifier, to_hex};
use crate::reconcile::{
    DetailRun, Filter, Halt, Header, Opened, RESPONSES_BUFFERED_MAX, Replies, Totals,
};
use crate::repo;
use crate::transfer::{IDENTIFIER_CHARS_MAX, TransferId, parse_batch, parse_pending_ids};

/// Most account ids in one GetBalances request.
const ACCOUNT_IDS_PER_BALANCES_MAX: usize = 100;
/// Most cities in one GetBalances request.
const CITIES_PER_BALANCES_MAX: usize = 10;
/// Most ids in one LookupTransfers request.
const IDS_PER_LOOKUP_MAX: usize = 100;
/// Longest reason for a void, in characters.
const VOID_REASON_CHARS_MAX: usize = 200;
/// Entries read per query while verifying, so a journal of any length is verified in bounded
/// memory.
const ENTRIES_PER_VERIFY_PAGE_MAX: i64 = 1_000;
/// How often the expiry sweeper looks for pending transfers whose timeout has passed.
const EXPIRY_SWEEP_INTERVAL_MS: u64 = 500;

/// A reply recorded by this ledger, decoded.
fn decode_reply<R: Message + Default>(reply: &[u8]) -> Result<R, LedgerError> {
    R::decode(reply).map_err(|_| LedgerError::Corrupt("a recorded reply does not decode".into()))
}

/// The ledger service of the clearing house.
#[derive(Debug, Clone)]
pub struct LedgerNode {
    store: Store,
    network: Arc<Network>,
    /// The queue of the group commit that books transfers ([`crate::group`]).
    bookings: Bookings,
}

/// A write request's message id has either been answered before or starts a transaction.
enum Begun<R> {
    Replay(R),
    Fresh(Transaction<'static, Any>),
}

impl LedgerNode {
    /// Opens the chart of accounts of every enabled city of the network (accounts already open
    /// are left as they are, so this runs at every start). The expiry sweeper is started apart,
    /// with [`LedgerNode::spawn_expiry_sweep`], by whoever owns the server's lifetime.
    pub async fn start(store: Store, network: Arc<Network>) -> Result<LedgerNode, LedgerError> {
        let bookings = Bookings::start(store.clone(), network.clone());
        let node = LedgerNode {
            store,
            network,
            bookings,
        };
        let opened = node.open_accounts().await?;
        tracing::info!(opened, "ledger accounts ready");
        // Every series the ledger counts is there from start-up.
        crate::group::observe_prepaid_at_start(&node.store, &node.network).await?;
        let cities: Vec<String> = node
            .network
            .enabled_pools()
            .map(|city| city.code.to_string())
            .collect();
        yitong_telemetry::metrics().start_reconciliation(cities.iter().map(String::as_str));
        Ok(node)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens the accounts of the enabled cities that are not open yet; returns how many.
    async fn open_accounts(&self) -> Result<u64, LedgerError> {
        let cities: Vec<PoolCode> = self.network.enabled_pools().map(|c| c.code).collect();
        let mut tx = self.store.begin_write().await?;
        let opened = repo::open_accounts(&mut tx, &chart(&cities), now_ms()).await?;
        tx.commit().await?;
        Ok(opened)
    }

    /// Books the expiry of every pending transfer whose timeout has passed; returns how many.
    /// Every write request does the same first, so this only matters to readers in between.
    pub async fn sweep_expiries(&self) -> Result<u64, LedgerError> {
        let mut expired = 0;
        loop {
            let due = {
                let mut conn = self.store.pool().acquire().await?;
                repo::expiry_due(&mut conn, now_ms()).await?
            };
            if !due {
                return Ok(expired);
            }
            let mut tx = self.store.begin_write().await?;
            let appender = Appender::open(&mut tx).await?;
            let booked = appender.expired;
            appender.close().await?;
            tx.commit().await?;
            expired += booked;
            if booked < u64::try_from(EXPIRIES_PER_SWEEP_MAX).unwrap_or(u64::MAX) {
                return Ok(expired);
            }
        }
    }

    /// Books due expiries every [`EXPIRY_SWEEP_INTERVAL_MS`] until `shutdown` is cancelled or
    /// the store is closed. The sweeper belongs to the server: a server that stops or crashes
    /// cancels it, so no sweeper outlives its server (a crashed process sweeps nothing).
    pub fn spawn_expiry_sweep(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(EXPIRY_SWEEP_INTERVAL_MS));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                if node.store.pool().is_closed() {
                    return;
                }
                match node.sweep_expiries().await {
                    Ok(0) => {}
                    Ok(expired) => tracing::info!(expired, "pending transfers expired"),
                    Err(LedgerError::Store(yitong_store::sqlx::Error::PoolClosed)) => return,
                    Err(error) => {
                        tracing::warn!(error = %yitong_core::cause_chain(&error), "expiry sweep failed");
                    }
                }
            }
        })
    }

    /// Claims a message id inside a new write transaction, or returns its first reply.
    async fn begin<R: Message + Default>(
        &self,
        message_id: &MessageId,
        rpc: &str,
        request: &impl Message,
    ) -> Result<Begun<R>, LedgerError> {
        let digest = replies::digest(&request.encode_to_vec());
        let mut tx = self.store.begin_write().await?;
        match replies::claim(&mut tx, message_id.as_str(), rpc, &digest).await? {
            Claim::Fresh => Ok(Begun::Fresh(tx)),
            Claim::Replay(bytes) => R::decode(bytes.as_slice())
                .map(Begun::Replay)
                .map_err(|_| LedgerError::Corrupt(format!("reply to message id {message_id}"))),
        }
    }

    /// Records the reply with the change and commits both.
    async fn finish<R: Message>(
        &self,
        mut tx: Transaction<'static, Any>,
        message_id: &MessageId,
        reply: R,
    ) -> Result<R, LedgerError> {
        replies::record(&mut tx, message_id.as_str(), &reply.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(reply)
    }

    async fn create_transfers(
        &self,
        request: pb::CreateTransfersRequest,
    ) -> Result<pb::CreateTransfersResponse, LedgerError> {
        let message_id = message_id(&request.message_id)?;
        let transfers = parse_batch(&request.transfers)?;
        let digest = replies::digest(&request.encode_to_vec());
        let reply = self
            .bookings
            .book(
                message_id,
                "CreateTransfers",
                digest,
                Work::Create { transfers },
            )
            .await?;
        decode_reply(&reply)
    }

    async fn resolve_pending(
        &self,
        rpc: &'static str,
        request: &impl Message,
        message_id: &str,
        ids: &[String],
        resolution: Event,
        reason: &str,
    ) -> Result<Vec<pb::PendingTransferOutcome>, LedgerError> {
        let message_id = self::message_id(message_id)?;
        let ids = parse_pending_ids(ids)?;
        if reason.chars().count() > VOID_REASON_CHARS_MAX {
            return Err(Invalid::new(
                "reason",
                format!("must be at most {VOID_REASON_CHARS_MAX} characters"),
            )
            .into());
        }
        let digest = replies::digest(&request.encode_to_vec());
        let work = Work::Resolve {
            ids,
            resolution,
            reason: reason.to_owned(),
        };
        let reply = self.bookings.book(message_id, rpc, digest, work).await?;
        // Both replies are one repeated field of outcomes, so either decodes the other's.
        Ok(decode_reply::<pb::PostPendingTransfersResponse>(&reply)?.results)
    }

    async fn lookup(
        &self,
        request: pb::LookupTransfersRequest,
    ) -> Result<pb::LookupTransfersResponse, LedgerError> {
        let mut conn = self.store.pool().acquire().await?;
        let transfers = match Lookup::try_from(request)? {
            Lookup::Ids(ids) => {
                let texts: Vec<&str> = ids.iter().map(TransferId::as_str).collect();
                let known =
                    book::known_transfers(repo::entries_of_transfers(&mut conn, &texts).await?)?;
                ids.iter()
                    .filter_map(|id| known.get(id.as_str()))
                    .map(Known::to_wire)
                    .collect::<Result<Vec<_>, _>>()?
            }
            Lookup::Settlement(settlement_id) => {
                let known = book::known_transfers(
                    repo::entries_of_settlement(&mut conn, &settlement_id).await?,
                )?;
                let mut known: Vec<&Known> = known.values().collect();
                known.sort_by_key(|transfer| transfer.created_sequence);
                known
                    .into_iter()
                    .map(Known::to_wire)
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(pb::LookupTransfersResponse { transfers })
    }

    async fn balances(
        &self,
        request: pb::GetBalancesRequest,
    ) -> Result<pb::GetBalancesResponse, LedgerError> {
        let request = BalancesRequest::try_from(request)?;
        let mut conn = self.store.pool().acquire().await?;
        let named: Vec<String> = request
            .account_ids
            .iter()
            .map(ToString::to_string)
            .collect();
        let open = repo::open_account_ids(&mut conn, &named).await?;
        if let Some(missing) = named.iter().find(|id| !open.contains(id)) {
            return Err(LedgerError::AccountNotFound(missing.clone()));
        }
        let mut listed: Vec<AccountId> = request.account_ids.clone();
        let mut city_accounts: Vec<(PoolCode, Vec<AccountId>)> = Vec::new();
        for city in &request.cities {
            let ids = repo::accounts_of_city(&mut conn, &city.to_string()).await?;
            if ids.is_empty() {
                return Err(LedgerError::CityNotFound(*city));
            }
            let ids = ids
                .iter()
                .map(|id| {
                    AccountId::parse(id)
                        .map_err(|_| LedgerError::Corrupt(format!("account id {id} is malformed")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            listed.extend(&ids);
            city_accounts.push((*city, ids));
        }
        let mut unique: Vec<String> = listed.iter().map(ToString::to_string).collect();
        unique.sort();
        unique.dedup();
        // The balances and the entry they stand at, read in one statement: one consistent
        // reading whatever is appended meanwhile.
        let (stored, head_sequence) = repo::balances(&mut conn, &unique).await?;
        let balances: HashMap<AccountId, Balance> = listed
            .iter()
            .map(|account| {
                let balance = stored.get(&account.to_string()).copied();
                (*account, balance.unwrap_or_default())
            })
            .collect();
        let accounts = listed
            .iter()
            .map(|account| balances[account].to_wire(*account))
            .collect();
        let prepaid_funds = city_accounts
            .iter()
            .map(|(city, ids)| {
                let fund = balances
                    .get(&AccountId::Fund(*city))
                    .copied()
                    .unwrap_or_default();
                let owed: Vec<Balance> = ids
                    .iter()
                    .filter(|id| id.kind() == AccountKind::Obligation)
                    .map(|id| balances[id])
                    .collect();
                let prepaid = Prepaid::new(&fund, &owed, threshold_fen(&self.network, *city));
                prepaid.to_wire(&city.to_string())
            })
            .collect();
        Ok(pb::GetBalancesResponse {
            accounts,
            prepaid_funds,
            journal_sequence: sequence(head_sequence),
        })
    }

    async fn digest(&self) -> Result<pb::GetJournalDigestResponse, LedgerError> {
        let mut conn = self.store.pool().acquire().await?;
        let head = repo::read_head(&mut conn).await?;
        Ok(pb::GetJournalDigestResponse {
            head_hash: to_hex(&head.hash),
            entry_count: sequence(head.sequence),
            head_recorded_at: (head.sequence > 0).then(|| timestamp(head.recorded_at_ms)),
        })
    }

    async fn verify(&self, up_to_sequence: u64) -> Result<pb::VerifyJournalResponse, LedgerError> {
        let mut conn = self.store.pool().acquire().await?;
        // The stored balances first, with the entry they stand at, which the head read next is
        // at or after: the walk sums every account's entries up to that one and compares.
        let (stored, stored_at) = repo::balances(&mut conn, &[]).await?;
        let head = repo::read_head(&mut conn).await?;
        let head_count = sequence(head.sequence);
        let last = match up_to_sequence {
            0 => head.sequence,
            requested if requested <= head_count => {
                i64::try_from(requested).expect("at most the head, which fits")
            }
            requested => {
                return Err(LedgerError::BeyondHead {
                    requested,
                    head: head_count,
                });
            }
        };
        let mut verifier = Verifier::default();
        let mut summed = BalanceSums::default();
        let mut after = 0;
        let failure = 'walk: loop {
            let page =
                repo::entries_after(&mut conn, after, last, ENTRIES_PER_VERIFY_PAGE_MAX).await?;
            let Some(last_read) = page.last() else {
                break verifier.finish(last).err();
            };
            after = last_read.sequence;
            for entry in &page {
                if let Err(altered) = verifier.check(entry) {
                    break 'walk Some(altered);
                }
                if entry.sequence <= stored_at {
                    summed.add(entry);
                }
            }
        };
        // An intact chain walked at least to where the stored balances stand: they must be
        // the sums of its entries.
        let failure = match failure {
            None if last >= stored_at => summed.compare(&stored).err().map(|detail| Altered {
                sequence: 0,
                detail,
            }),
            failure => failure,
        };
        // The head row must name the last entry; a head that moved without its entry is an
        // alteration of that entry's place in the chain.
        let failure = failure.or_else(|| {
            (last == head.sequence && verifier.last_hash != head.hash).then(|| Altered {
                sequence: head.sequence,
                detail: format!("the journal head does not match entry {}", head.sequence),
            })
        });
        if let Some(altered) = &failure {
            tracing::error!(sequence = altered.sequence, detail = %altered.detail, "the journal has an altered entry");
        }
        Ok(pb::VerifyJournalResponse {
            intact: failure.is_none(),
            entries_checked: verifier.checked,
            first_altered_sequence: failure
                .as_ref()
                .map(|altered| sequence(altered.sequence))
                .unwrap_or(0),
            head_hash: to_hex(&verifier.last_hash),
            detail: failure.map(|altered| altered.detail).unwrap_or_default(),
        })
    }
}

impl LedgerNode {
    /// ReconcileTotals: the ledger's totals of the submitter's posted rows, figure by figure
    /// against the submitter's. The run is recorded under its message id (the audit trail), so
    /// a replay returns the first answer even after more settlements were booked.
    async fn reconcile_totals(
        &self,
        request: pb::ReconcileTotalsRequest,
    ) -> Result<pb::ReconcileTotalsResponse, LedgerError> {
        let message_id = message_id(&request.message_id)?;
        let filter = Filter::parse(
            &self.network,
            request.scope.as_ref(),
            request.insurance_type,
            request.clearing_type,
            &request.from_date,
            &request.to_date,
        )?;
        let submitted = Totals::parse(request.totals.as_ref())?;
        let submitted_lines = crate::breakdown::Submitted::parse(
            request
                .totals
                .as_ref()
                .expect("Totals::parse requires them"),
            &submitted,
        )?;
        if request.operator_id.chars().count() > IDENTIFIER_CHARS_MAX {
            return Err(Invalid::new(
                "operator_id",
                format!("must be at most {IDENTIFIER_CHARS_MAX} characters"),
            )
            .into());
        }
        let mut tx = match self.begin(&message_id, "ReconcileTotals", &request).await? {
            Begun::Replay(reply) => return Ok(reply),
            Begun::Fresh(tx) => tx,
        };
        let head = repo::read_head(&mut tx).await?;
        let ledger = crate::reconcile::ledger_totals(&mut tx, &filter, head.sequence).await?;
        let lines =
            crate::reconcile::ledger_breakdown(&mut tx, &filter, head.sequence, &ledger).await?;
        let mismatched = submitted.differences(&ledger);
        let mismatched_lines = submitted_lines.line_breaks(&lines);
        let result = if mismatched.is_empty() && mismatched_lines.is_empty() {
            pb::ReconciliationResult::Matched
        } else {
            pb::ReconciliationResult::Mismatched
        };
        let reply = pb::ReconcileTotalsResponse {
            result: result as i32,
            submitted: Some(submitted.to_wire_with(&submitted_lines.to_breakdown())),
            ledger: Some(ledger.to_wire_with(&lines)),
            mismatched_figures: mismatched.into_iter().map(|figure| figure as i32).collect(),
            mismatched_lines,
        };
        let reply = self.finish(tx, &message_id, reply).await?;
        // Counted once, when first answered: a replay returned above.
        if reply.result == pb::ReconciliationResult::Mismatched as i32 {
            count_breaks(request.scope.as_ref(), [("totals", 1)]);
        }
        Ok(reply)
    }

    /// ReconcileDetails: reads the header, opens (or resumes, or finds finished) the run, and
    /// leaves the walk to a task that answers through a bounded channel.
    async fn reconcile_details(
        &self,
        caller: &Caller,
        mut stream: Streaming<pb::ReconcileDetailsRequest>,
    ) -> Result<ReceiverStream<Result<pb::ReconcileDetailsResponse, Status>>, Status> {
        use pb::reconcile_details_request::Item;
        let header = match stream.message().await?.and_then(|message| message.item) {
            Some(Item::Header(header)) => header,
            _ => {
                return Err(invalid_argument(Invalid::new(
                    "header",
                    "must be the first message",
                )));
            }
        };
        reconcile_for(caller, header.scope.as_ref())?;
        let header_scope = header.scope.clone();
        let header = Header::parse(&self.network, header)
            .map_err(|invalid| invalid_argument(invalid.within("header")))?;
        let opened = DetailRun::open(&self.store, header).await?;
        let (replies, receiver) = mpsc::channel(RESPONSES_BUFFERED_MAX);
        match opened {
            Opened::Finished(summary) => {
                // The channel is empty and holds more than one reply.
                let item = pb::reconcile_details_response::Item::Summary(summary);
                let _ = replies
                    .send(Ok(pb::ReconcileDetailsResponse { item: Some(item) }))
                    .await;
            }
            Opened::Running(run) => {
                // The run's replies pass through a counter of the breaks its summary names;
                // a finished run opened again (above) is not counted twice.
                let (counted, receiver_counted) = mpsc::channel(RESPONSES_BUFFERED_MAX);
                tokio::spawn(count_detail_breaks(
                    header_scope.clone(),
                    ReceiverStream::new(receiver),
                    counted,
                ));
                // The run records its reply as this caller's, on a task of its own.
                tokio::spawn(caller.clone().scope(drive_details(run, stream, replies)));
                return Ok(ReceiverStream::new(receiver_counted));
            }
        }
        Ok(ReceiverStream::new(receiver))
    }
}

impl LedgerNode {
    /// A clearing request that changes state: its message id claimed, the change made under
    /// the journal head's lock (so it is ordered with every append and with a close), the reply
    /// recorded.
    async fn clearing_write<Q: Message, R: Message + Default>(
        &self,
        rpc: &str,
        message_id: &str,
        request: &Q,
        change: impl AsyncFnOnce(&mut Appender<'_>) -> Result<R, LedgerError>,
    ) -> Result<R, LedgerError> {
        let message_id = self::message_id(message_id)?;
        let mut tx = match self.begin::<R>(&message_id, rpc, request).await? {
            Begun::Replay(reply) => return Ok(reply),
            Begun::Fresh(tx) => tx,
        };
        let mut appender = Appender::open(&mut tx).await?;
        let reply = change(&mut appender).await?;
        appender.close().await?;
        self.finish(tx, &message_id, reply).await
    }
}

/// Counts reconciliation breaks of `scope` in the process's metrics, by class.
fn count_breaks<'a>(
    scope: Option<&pb::ReconciliationScope>,
    classes: impl IntoIterator<Item = (&'a str, u64)>,
) {
    use pb::reconciliation_scope::Subject;
    let (scope, subject) = match scope.and_then(|scope| scope.subject.as_ref()) {
        Some(Subject::InstitutionCode(code)) => ("institution", code.as_str()),
        Some(Subject::TreatmentCity(city)) => ("treatment_city", city.as_str()),
        Some(Subject::InsuredCity(city)) => ("insured_city", city.as_str()),
        Some(Subject::TreatmentHostCity(city)) => ("treatment_host_city", city.as_str()),
        Some(Subject::InsuredHostCity(city)) => ("insured_host_city", city.as_str()),
        None => ("none", ""),
    };
    for (class, breaks) in classes {
        if breaks > 0 {
            yitong_telemetry::metrics()
                .reconciliation_breaks
                .get_or_create(&yitong_telemetry::BreakLabels {
                    scope: scope.to_owned(),
                    subject: subject.to_owned(),
                    class: class.to_owned(),
                })
                .inc_by(breaks);
        }
    }
}

/// Passes a detail run's replies on, counting the breaks of its summary when it comes.
async fn count_detail_breaks(
    scope: Option<pb::ReconciliationScope>,
    mut from: ReceiverStream<Result<pb::ReconcileDetailsResponse, Status>>,
    to: Replies,
) {
    use pb::reconcile_details_response::Item;
    use tokio_stream::StreamExt;
    while let Some(reply) = from.next().await {
        if let Ok(pb::ReconcileDetailsResponse {
            item: Some(Item::Summary(summary)),
        }) = &reply
        {
            count_breaks(
                scope.as_ref(),
                [
                    ("missing_in_ledger", summary.missing_in_ledger),
                    ("missing_in_submission", summary.missing_in_submission),
                    ("duplicate", summary.duplicate),
                    ("amount_mismatch", summary.amount_mismatch),
                    ("timing", summary.timing),
                ],
            );
        }
        if to.send(reply).await.is_err() {
            // The client went away; the run stops when its own channel closes.
            return;
        }
    }
}

/// Walks a detail run as the client's batches arrive; a refusal ends the stream with its status.
async fn drive_details(
    mut run: Box<DetailRun>,
    mut stream: Streaming<pb::ReconcileDetailsRequest>,
    replies: Replies,
) {
    use pb::reconcile_details_request::Item;
    let outcome = async {
        let checkpoint = run
            .checkpoint_reply()
            .item
            .expect("a checkpoint has its item");
        DetailRun::send(&replies, checkpoint).await?;
        loop {
            match stream.message().await {
                Ok(Some(message)) => match message.item {
                    Some(Item::Rows(batch)) => run.feed(&replies, batch).await?,
                    Some(Item::Header(_)) => {
                        return Err(Halt::from(Invalid::new(
                            "header",
                            "must be sent once, first",
                        )));
                    }
                    None => return Err(Halt::from(Invalid::new("item", "give rows"))),
                },
                Ok(None) => return run.finish(&replies).await,
                // A message that does not decode, refused by the server's frame check: the
                // stream ends with that refusal, and the client resumes from its last
                // checkpoint once it sends what decodes.
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    return Err(Halt::Refused(status));
                }
                // The client's side broke: it resumes from its last checkpoint.
                Err(_) => return Err(Halt::ClientGone),
            }
        }
    }
    .await;
    match outcome {
        Err(Halt::Failed(error)) => {
            let _ = replies.send(Err(error.into())).await;
        }
        Err(Halt::Refused(status)) => {
            let _ = replies.send(Err(status)).await;
        }
        Ok(()) | Err(Halt::ClientGone) => {}
    }
}

fn message_id(text: &str) -> Result<MessageId, Invalid> {
    MessageId::parse(text).map_err(|invalid| invalid.at("message_id"))
}

fn sequence(value: i64) -> u64 {
    u64::try_from(value).expect("journal sequence numbers are not negative")
}

use yitong_rpc::timestamp_of_ms as timestamp;

/// A parsed GetBalances request.
#[derive(Debug)]
struct BalancesRequest {
    account_ids: Vec<AccountId>,
    cities: Vec<PoolCode>,
}

impl TryFrom<pb::GetBalancesRequest> for BalancesRequest {
    type Error = Invalid;

    fn try_from(request: pb::GetBalancesRequest) -> Result<Self, Invalid> {
        if request.account_ids.len() > ACCOUNT_IDS_PER_BALANCES_MAX {
            return Err(Invalid::new(
                "account_ids",
                format!("must hold at most {ACCOUNT_IDS_PER_BALANCES_MAX} ids"),
            ));
        }
        if request.cities.len() > CITIES_PER_BALANCES_MAX {
            return Err(Invalid::new(
                "cities",
                format!("must hold at most {CITIES_PER_BALANCES_MAX} cities"),
            ));
        }
        if request.account_ids.is_empty() && request.cities.is_empty() {
            return Err(Invalid::new(
                "account_ids",
                "name at least one account id or city",
            ));
        }
        let account_ids = request
            .account_ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                AccountId::parse(id).map_err(|invalid| invalid.at(format!("account_ids[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        let cities = request
            .cities
            .iter()
            .enumerate()
            .map(|(index, city)| {
                PoolCode::parse(city).map_err(|invalid| invalid.at(format!("cities[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        Ok(BalancesRequest {
            account_ids,
            cities,
        })
    }
}

/// A parsed LookupTransfers request.
#[derive(Debug)]
enum Lookup {
    Ids(Vec<TransferId>),
    Settlement(String),
}

impl TryFrom<pb::LookupTransfersRequest> for Lookup {
    type Error = Invalid;

    fn try_from(request: pb::LookupTransfersRequest) -> Result<Self, Invalid> {
        match request.selector {
            None => Err(Invalid::new(
                "selector",
                "give ids or a settlement_id to look up",
            )),
            Some(Selector::Ids(ids)) => {
                if ids.ids.is_empty() || ids.ids.len() > IDS_PER_LOOKUP_MAX {
                    return Err(Invalid::new(
                        "ids.ids",
                        format!("must hold 1 to {IDS_PER_LOOKUP_MAX} ids"),
                    ));
                }
                ids.ids
                    .iter()
                    .enumerate()
                    .map(|(index, id)| {
                        TransferId::parse(id)
                            .map_err(|invalid| invalid.at(format!("ids.ids[{index}]")))
                    })
                    .collect::<Result<_, _>>()
                    .map(Lookup::Ids)
            }
            Some(Selector::SettlementId(id)) => {
                let ok = !id.is_empty()
                    && id.chars().count() <= IDENTIFIER_CHARS_MAX
                    && id.bytes().all(|byte| byte.is_ascii_graphic());
                if !ok {
                    return Err(Invalid::new(
                        "settlement_id",
                        format!("must be 1 to {IDENTIFIER_CHARS_MAX} printable ASCII characters"),
                    ));
                }
                Ok(Lookup::Settlement(id))
            }
        }
    }
}

/// Reading a city's figures (its clearing, its statement): whoever the visibility rule lets
/// see that city's records, which for the callers the matrix admits is the city's own bureau,
/// the clearing house's staff and operators.
fn read_city(caller: &Caller, city: &str) -> Result<(), Status> {
    if visibility::sight(caller, &Parties::of(&[city], "")) == Sight::Hidden {
        return Err(Status::permission_denied(format!(
            "{caller} may not read the figures of city {city:?}"
        )));
    }
    Ok(())
}

/// Acting in a city's clearing (confirming, applying, confirming its statement): only that
/// city's own bureau.
fn act_for_city(caller: &Caller, city: &str) -> Result<(), Status> {
    match caller {
        Caller::Bureau(Owner::Pool(own)) if own.to_string() == city => Ok(()),
        _ => Err(Status::permission_denied(format!(
            "{caller} may not act in the clearing of city {city:?}"
        ))),
    }
}

/// Reconciling a scope: an institution its own settlements, a bureau its own pool's (as
/// treatment or insured pool) and, the bureau of a city's own pool, the city's (every pool it
/// hosts), the clearing house's staff any scope.
fn reconcile_for(caller: &Caller, scope: Option<&pb::ReconciliationScope>) -> Result<(), Status> {
    use pb::reconciliation_scope::Subject;
    let subject = scope.and_then(|scope| scope.subject.as_ref());
    let allowed = match (caller, subject) {
        (Caller::Bureau(Owner::ClearingHouse), _) => true,
        (Caller::Institution(own), Some(Subject::InstitutionCode(code))) => own.as_str() == code,
        // A city's bureau reconciles its own institutions too: a code names its city.
        (Caller::Bureau(Owner::Pool(own)), Some(Subject::InstitutionCode(code))) => {
            code.get(1..7) == Some(own.to_string().as_str())
        }
        (
            Caller::Bureau(Owner::Pool(own)),
            Some(Subject::TreatmentCity(city) | Subject::InsuredCity(city)),
        ) => own.to_string() == *city,
        // A city's figures over all its pools: the bureau of the city's own pool (whose code
        // is the city's), not the bureau of another pool it hosts.
        (
            Caller::Bureau(Owner::Pool(own)),
            Some(Subject::TreatmentHostCity(city) | Subject::InsuredHostCity(city)),
        ) => own.to_string() == *city,
        // No subject: the request is refused as invalid by the handler.
        (Caller::Institution(_) | Caller::Bureau(_), None) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{caller} may not reconcile this scope"
        )))
    }
}

#[tonic::async_trait]
impl pb::ledger_service_server::LedgerService for LedgerNode {
    async fn list_clearing_details(
        &self,
        request: Request<pb::ListClearingDetailsRequest>,
    ) -> Result<Response<pb::ListClearingDetailsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if read_city(&caller, &request.treatment_city).is_err() {
            read_city(&caller, &request.insured_city)?;
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(LedgerError::from)?;
        let mut reply = clearing::list_details(&mut conn, &request).await?;
        reply.details = visibility::seen_all_by(&caller, reply.details);
        Ok(Response::new(reply))
    }

    async fn confirm_clearing_details(
        &self,
        request: Request<pb::ConfirmClearingDetailsRequest>,
    ) -> Result<Response<pb::ConfirmClearingDetailsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        act_for_city(&caller, &request.treatment_city)?;
        let reply = self
            .clearing_write(
                "ConfirmClearingDetails",
                &request.message_id,
                &request,
                async |appender| clearing::confirm(appender.conn(), &request).await,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn rollback_clearing_confirmation(
        &self,
        request: Request<pb::RollbackClearingConfirmationRequest>,
    ) -> Result<Response<pb::RollbackClearingConfirmationResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        act_for_city(&caller, &request.treatment_city)?;
        let reply = self
            .clearing_write(
                "RollbackClearingConfirmation",
                &request.message_id,
                &request,
                async |appender| clearing::rollback(appender.conn(), &request).await,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn apply_clearing(
        &self,
        request: Request<pb::ApplyClearingRequest>,
    ) -> Result<Response<pb::ApplyClearingResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        act_for_city(&caller, &request.treatment_city)?;
        let reply = self
            .clearing_write(
                "ApplyClearing",
                &request.message_id,
                &request,
                async |appender| clearing::apply(appender.conn(), &request).await,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn cancel_clearing_application(
        &self,
        request: Request<pb::CancelClearingApplicationRequest>,
    ) -> Result<Response<pb::CancelClearingApplicationResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        // An application id names its treatment city: "CA" + YYYYMM + city + serial.
        act_for_city(
            &caller,
            request.application_id.get(8..14).unwrap_or_default(),
        )?;
        let reply = self
            .clearing_write(
                "CancelClearingApplication",
                &request.message_id,
                &request,
                async |appender| clearing::cancel_application(appender.conn(), &request).await,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn close_clearing_period(
        &self,
        request: Request<pb::CloseClearingPeriodRequest>,
    ) -> Result<Response<pb::CloseClearingPeriodResponse>, Status> {
        Caller::of(&request).require_bureau(Owner::ClearingHouse)?;
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let cities: Vec<(PoolCode, i64)> = self
            .network
            .enabled_pools()
            .map(|c| (c.code, c.prepaid_low_balance().fen()))
            .collect();
        let mut tx = match self
            .begin::<pb::CloseClearingPeriodResponse>(&message_id, "CloseClearingPeriod", &request)
            .await?
        {
            Begun::Replay(reply) => return Ok(Response::new(reply)),
            Begun::Fresh(tx) => tx,
        };
        let mut appender = Appender::open(&mut tx).await?;
        let mut reply =
            clearing::close(&mut appender, &cities, &request, message_id.as_str()).await?;
        let head = appender.close().await?;
        clearing::record_head(&mut tx, &mut reply, &head.hash).await?;
        tracing::info!(period = ?reply.period, payments = reply.payment_instructions.len(), "clearing period closed");
        Ok(Response::new(self.finish(tx, &message_id, reply).await?))
    }

    async fn get_clearing_statement(
        &self,
        request: Request<pb::GetClearingStatementRequest>,
    ) -> Result<Response<pb::GetClearingStatementResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        read_city(&caller, &request.city)?;
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(LedgerError::from)?;
        let statement =
            clearing::statement(&mut conn, &request.city, request.period.as_ref()).await?;
        Ok(Response::new(pb::GetClearingStatementResponse {
            statement: Some(statement),
        }))
    }

    async fn confirm_clearing_statement(
        &self,
        request: Request<pb::ConfirmClearingStatementRequest>,
    ) -> Result<Response<pb::ConfirmClearingStatementResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        act_for_city(&caller, &request.city)?;
        let reply = self
            .clearing_write(
                "ConfirmClearingStatement",
                &request.message_id,
                &request,
                async |appender| clearing::confirm_statement(appender.conn(), &request).await,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn get_daily_activity(
        &self,
        request: Request<pb::GetDailyActivityRequest>,
    ) -> Result<Response<pb::GetDailyActivityResponse>, Status> {
        // The cities are named in the request, so one the caller may not see refuses the
        // request, before anything is read; the pairs reported are those of the named cities.
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let parsed = activity::ActivityRequest::try_from(&request).map_err(LedgerError::from)?;
        for city in &request.cities {
            read_city(&caller, city)?;
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(LedgerError::from)?;
        let reply = activity::read(&mut conn, &self.network, &parsed, yitong_core::today()).await?;
        Ok(Response::new(reply))
    }

    async fn reconcile_totals(
        &self,
        request: Request<pb::ReconcileTotalsRequest>,
    ) -> Result<Response<pb::ReconcileTotalsResponse>, Status> {
        reconcile_for(&Caller::of(&request), request.get_ref().scope.as_ref())?;
        Ok(Response::new(
            LedgerNode::reconcile_totals(self, request.into_inner()).await?,
        ))
    }

    async fn reconcile_details(
        &self,
        request: Request<Streaming<pb::ReconcileDetailsRequest>>,
    ) -> Result<Response<BoxStream<pb::ReconcileDetailsResponse>>, Status> {
        let caller = Caller::of(&request);
        let replies = LedgerNode::reconcile_details(self, &caller, request.into_inner()).await?;
        Ok(Response::new(Box::pin(replies)))
    }

    async fn create_transfers(
        &self,
        request: Request<pb::CreateTransfersRequest>,
    ) -> Result<Response<pb::CreateTransfersResponse>, Status> {
        Ok(Response::new(
            LedgerNode::create_transfers(self, request.into_inner()).await?,
        ))
    }

    async fn post_pending_transfers(
        &self,
        request: Request<pb::PostPendingTransfersRequest>,
    ) -> Result<Response<pb::PostPendingTransfersResponse>, Status> {
        let request = request.into_inner();
        let results = self
            .resolve_pending(
                "PostPendingTransfers",
                &request,
                &request.message_id,
                &request.pending_transfer_ids,
                Event::Posted,
                "",
            )
            .await?;
        Ok(Response::new(pb::PostPendingTransfersResponse { results }))
    }

    async fn void_pending_transfers(
        &self,
        request: Request<pb::VoidPendingTransfersRequest>,
    ) -> Result<Response<pb::VoidPendingTransfersResponse>, Status> {
        let request = request.into_inner();
        let results = self
            .resolve_pending(
                "VoidPendingTransfers",
                &request,
                &request.message_id,
                &request.pending_transfer_ids,
                Event::Voided,
                &request.reason,
            )
            .await?;
        Ok(Response::new(pb::VoidPendingTransfersResponse { results }))
    }

    async fn lookup_transfers(
        &self,
        request: Request<pb::LookupTransfersRequest>,
    ) -> Result<Response<pb::LookupTransfersResponse>, Status> {
        // A transfer id does not say whose it is, so a transfer the caller may not see is left
        // out, as an unknown id is: the reply tells it nothing of other cities' settlements.
        let caller = Caller::of(&request);
        let mut reply = self.lookup(request.into_inner()).await?;
        reply.transfers = visibility::seen_all_by(&caller, reply.transfers);
        Ok(Response::new(reply))
    }

    async fn get_balances(
        &self,
        request: Request<pb::GetBalancesRequest>,
    ) -> Result<Response<pb::GetBalancesResponse>, Status> {
        // Accounts and cities are named in the request, so one the caller may not see refuses
        // the request, before anything is read.
        let caller = Caller::of(&request);
        let named = request.get_ref();
        let hidden = named
            .account_ids
            .iter()
            .map(String::as_str)
            .map(Parties::of_account)
            .chain(named.cities.iter().map(|city| Parties::of(&[city], "")))
            .any(|parties| visibility::sight(&caller, &parties) == Sight::Hidden);
        if hidden {
            return Err(Status::permission_denied(format!(
                "{caller} may read only its own city's accounts"
            )));
        }
        Ok(Response::new(self.balances(request.into_inner()).await?))
    }

    async fn get_journal_digest(
        &self,
        _request: Request<pb::GetJournalDigestRequest>,
    ) -> Result<Response<pb::GetJournalDigestResponse>, Status> {
        Ok(Response::new(self.digest().await?))
    }

    async fn verify_journal(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        Ok(Response::new(
            self.verify(request.into_inner().up_to_sequence).await?,
        ))
    }
}

/// Every account's legs summed over journal entries, for VerifyJournal to compare with the
/// stored balances.
#[derive(Default)]
struct BalanceSums {
    /// Per account: the legs of the entries that debit it and of those that credit it.
    legs: HashMap<String, (Legs, Legs)>,
}

impl BalanceSums {
    fn add(&mut self, entry: &Entry) {
        let add = |sum: &mut Legs| {
            sum.debit_pending_fen += entry.legs.debit_pending_fen;
            sum.debit_posted_fen += entry.legs.debit_posted_fen;
            sum.credit_pending_fen += entry.legs.credit_pending_fen;
            sum.credit_posted_fen += entry.legs.credit_posted_fen;
        };
        add(&mut self
            .legs
            .entry(entry.transfer.debit_account_id.clone())
            .or_default()
            .0);
        add(&mut self
            .legs
            .entry(entry.transfer.credit_account_id.clone())
            .or_default()
            .1);
    }

    /// Whether `stored` holds exactly these sums, every account's legs balanced; else what
    /// differs first, by account id.
    fn compare(&self, stored: &HashMap<String, Balance>) -> Result<(), String> {
        let mut ids: Vec<&String> = stored.keys().chain(self.legs.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let (debiting, crediting) = self.legs.get(id).copied().unwrap_or_default();
            let summed = Balance::from_sums(id, Some(debiting), Some(crediting))
                .map_err(|unbalanced| unbalanced.to_string())?;
            let Some(kept) = stored.get(id) else {
                return Err(format!("entries move account {id}, which is not open"));
            };
            if *kept != summed {
                return Err(format!(
                    "the stored balance of account {id} ({kept:?}) is not the sum of its entries \
                     ({summed:?})"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use pb::ledger_service_server::LedgerService;
    use yitong_core::{Owner, Service};
    use yitong_store::{Location, PoolLimits};

    use super::*;

    /// A ledger on a fresh SQLite store, without the expiry sweeper, so that a test decides
    /// when expiries are swept.
    async fn node() -> (LedgerNode, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let location = Location::Sqlite {
            dir: dir.path().to_owned(),
        };
        let store = Store::open(
            &location,
            Service::Ledger,
            Owner::ClearingHouse,
            PoolLimits::default(),
        )
        .await
        .expect("the store opens");
        store.migrate().await.expect("migrations run");
        let network =
            Network::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds/network.toml"))
                .expect("the seeded network file is valid");
        let network = Arc::new(network);
        let node = LedgerNode {
            bookings: Bookings::start(store.clone(), network.clone()),
            store,
            network,
        };
        assert_eq!(node.open_accounts().await.expect("accounts open"), 4 * 7);
        assert_eq!(
            node.open_accounts().await.expect("opening is idempotent"),
            0
        );
        (node, dir)
    }

    fn pending_deposit(id: &str) -> pb::Transfer {
        pb::Transfer {
            id: id.to_owned(),
            debit_account_id: "370100.bank".into(),
            credit_account_id: "370100.fund".into(),
            amount: "10.00".into(),
            code: pb::TransferCode::Deposit as i32,
            flags: Some(pb::TransferFlags {
                linked: false,
                pending: true,
            }),
            pending_timeout_seconds: 1,
            ..Default::default()
        }
    }

    async fn create(node: &LedgerNode, message_id: &str, transfer: pb::Transfer) {
        let reply = LedgerService::create_transfers(
            node,
            Request::new(pb::CreateTransfersRequest {
                message_id: message_id.into(),
                transfers: vec![transfer],
            }),
        )
        .await
        .expect("created")
        .into_inner();
        assert_eq!(reply.results[0].result(), pb::CreateTransferResult::Ok);
    }

    async fn entry_count(node: &LedgerNode) -> u64 {
        node.digest().await.expect("digest").entry_count
    }

    // Proves that a post arriving after the timeout, before any sweep, finds the transfer
    // expired: the write transaction books the expiry first, and the post is refused.
    #[tokio::test]
    async fn a_post_after_the_timeout_finds_it_expired() {
        let (node, _dir) = node().await;
        let id = "00000000-0000-4000-8000-000000000001";
        create(&node, "MSG-1", pending_deposit(id)).await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(entry_count(&node).await, 1, "nothing swept yet");
        let reply = LedgerService::post_pending_transfers(
            &node,
            Request::new(pb::PostPendingTransfersRequest {
                message_id: "MSG-2".into(),
                pending_transfer_ids: vec![id.into()],
            }),
        )
        .await
        .expect("answered")
        .into_inner();
        assert_eq!(
            reply.results[0].result(),
            pb::PendingTransferResult::PendingTransferExpired
        );
        assert_eq!(entry_count(&node).await, 2, "the creation and the expiry");
        assert!(node.verify(0).await.expect("verified").intact);
    }

    // Proves the sweeper books each due expiry once, leaves transfers not yet due, and skips
    // transfers resolved before their timeout.
    #[tokio::test]
    async fn the_sweeper_expires_what_is_due_once() {
        let (node, _dir) = node().await;
        create(
            &node,
            "MSG-1",
            pending_deposit("00000000-0000-4000-8000-000000000001"),
        )
        .await;
        let mut later = pending_deposit("00000000-0000-4000-8000-000000000002");
        later.pending_timeout_seconds = 3_600;
        create(&node, "MSG-2", later).await;
        create(
            &node,
            "MSG-3",
            pending_deposit("00000000-0000-4000-8000-000000000003"),
        )
        .await;
        node.resolve_pending(
            "VoidPendingTransfers",
            &pb::VoidPendingTransfersRequest::default(),
            "MSG-4",
            &["00000000-0000-4000-8000-000000000003".into()],
            Event::Voided,
            "",
        )
        .await
        .expect("voided");
        assert_eq!(
            node.sweep_expiries().await.expect("swept"),
            0,
            "nothing due yet"
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(node.sweep_expiries().await.expect("swept"), 1);
        assert_eq!(node.sweep_expiries().await.expect("swept"), 0);
        assert_eq!(entry_count(&node).await, 5);
        let balances = node
            .balances(pb::GetBalancesRequest {
                account_ids: vec!["370100.fund".into()],
                ..Default::default()
            })
            .await
            .expect("balances");
        assert_eq!(
            balances.accounts[0].credits_pending, "10.00",
            "the later one"
        );
        assert_eq!(balances.journal_sequence, 5);
    }
}
