//! What the tests' state-changing calls did, as their clients saw it, and the check at
//! shut-down that every store's audit trail agrees with it (issue 7, acceptance 5).
//!
//! Every [`crate::Channel`] of a sandbox notes each call whose request carries a `message_id`
//! (every state-changing RPC, and the two reads in [`READS_WITH_MESSAGE_ID`]): the server, the RPC, the message id, who the
//! call authenticated as, and the status the client got (none when the call broke before one
//! arrived). [`check`] then holds every store to two sources:
//!
//! - **the calls**: a message id the server answered OK to has exactly one audit row of that
//!   RPC, naming the caller; a call refused (with a status a handler gives before or instead of
//!   committing) added no row with its message id while it ran;
//! - **the store's own state**: every claimed message id has exactly one row of its RPC, and no
//!   row is without one, so changes made by nodes on behalf of a call, and by the command line,
//!   are held too; the insured city's reservations have one Reserve row each, one Post
//!   row each posted one, one Void row each voided one; every detail reconciliation run has one
//!   row.
//!
//! A message id is its sender's in the settlement store (each institution's msgid is its own,
//! settlement migration 0008), so there a call, a claim and an audit row are matched by the
//! caller and the message id together: two hospitals of a city using one id are two claims,
//! each with its own row. In the other stores a message id is the store's.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use yitong_core::{Owner, Service};
use yitong_store::sqlx;
use yitong_store::{Location, PoolLimits, Store};

/// The gRPC frame header: a compression flag and a big-endian length.
const FRAME_HEADER_BYTES: usize = 5;
/// Request bytes kept to find the message id: the first message of any request of the suite.
const CAPTURE_BYTES_MAX: usize = 4 << 20;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(yitong_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
});

/// Reads whose request carries a message id all the same: a quote (the national interface
/// numbers pre-settlement like the settlement it previews), a look-up by message id, and the
/// reads at the counter about a person (the benefit check, the running totals, the filings,
/// the certifications).
const READS_WITH_MESSAGE_ID: [&str; 6] = [
    "PreSettle",
    "GetSettlement",
    "CheckBenefit",
    "GetRunningTotals",
    "QueryFilings",
    "QueryCertifications",
];

/// One state-changing call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    owner: Owner,
    service: Service,
    /// The method's name ("Settle"), as the audit trail names it.
    rpc: String,
    message_id: String,
    /// The caller's canonical name, or `None` for an anonymous or unknown credential.
    caller: Option<String>,
    /// `None` when the call broke before a status arrived.
    status: Option<tonic::Code>,
    streaming: bool,
    /// When the call was sent and when its status arrived, in ms since the epoch (the clock
    /// the audit trail is recorded by).
    sent_ms: i64,
    ended_ms: i64,
}

/// The calls of one sandbox, shared by all its channels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Journal(Arc<Mutex<Vec<Call>>>);

impl Journal {
    fn push(&self, call: Call) {
        self.0.lock().expect("journal").push(call);
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().expect("journal").clone()
    }
}

/// What a channel knows of one call before it is sent.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    journal: Journal,
    owner: Owner,
    service: Service,
    path: String,
    caller: Option<String>,
    request: Arc<Mutex<Vec<u8>>>,
    sent_ms: i64,
}

impl Pending {
    pub(crate) fn new(
        journal: Journal,
        owner: Owner,
        service: Service,
        path: &str,
        caller: Option<String>,
    ) -> Pending {
        Pending {
            journal,
            owner,
            service,
            path: path.to_owned(),
            caller,
            request: Arc::default(),
            sent_ms: yitong_store::now_ms(),
        }
    }

    /// The request body, noting its bytes as they are sent.
    pub(crate) fn tap_request(&self, body: tonic::body::Body) -> tonic::body::Body {
        tonic::body::Body::new(RequestTap {
            inner: body,
            bytes: self.request.clone(),
        })
    }

    /// The response, noting its status when it arrives.
    pub(crate) fn tap_response(
        self,
        response: http::Response<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        // A trailers-only answer (every refusal) has its status among the headers.
        if let Some(code) = response.headers().get("grpc-status") {
            self.finish(Some(tonic::Code::from_bytes(code.as_bytes())));
            return response;
        }
        response.map(|body| {
            tonic::body::Body::new(ResponseTap {
                inner: body,
                pending: Some(self),
            })
        })
    }

    /// Notes the call, if its request was a state-changing one.
    pub(crate) fn finish(self, status: Option<tonic::Code>) {
        let Some((rpc, message_id, streaming)) = self.message_id() else {
            return;
        };
        self.journal.push(Call {
            owner: self.owner,
            service: self.service,
            rpc,
            message_id,
            caller: self.caller,
            status,
            streaming,
            sent_ms: self.sent_ms,
            ended_ms: yitong_store::now_ms(),
        });
    }

    /// The method, the first request message's `message_id` and whether requests stream; `None`
    /// for a request type without one (a read) or a body that is not one plain message.
    fn message_id(&self) -> Option<(String, String, bool)> {
        let (service, method) = self.path.trim_start_matches('/').split_once('/')?;
        let method = POOL
            .get_service_by_name(service)?
            .methods()
            .find(|candidate| candidate.name() == method)?;
        if READS_WITH_MESSAGE_ID.contains(&method.name()) {
            return None;
        }
        let input = method.input();
        input.get_field_by_name("message_id")?;
        let bytes = self.request.lock().expect("request bytes");
        if bytes.len() < FRAME_HEADER_BYTES || bytes[0] != 0 {
            return None;
        }
        let length = u32::from_be_bytes(bytes[1..5].try_into().expect("four bytes")) as usize;
        let body = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length)?;
        let message = DynamicMessage::decode(input, body).ok()?;
        let Value::String(message_id) = message.get_field_by_name("message_id")?.into_owned()
        else {
            return None;
        };
        Some((
            method.name().to_owned(),
            message_id,
            method.is_client_streaming(),
        ))
    }
}

struct RequestTap {
    inner: tonic::body::Body,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Body for RequestTap {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut bytes = self.bytes.lock().expect("request bytes");
            let room = CAPTURE_BYTES_MAX.saturating_sub(bytes.len());
            bytes.extend_from_slice(&data.chunk()[..data.remaining().min(room)]);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct ResponseTap {
    inner: tonic::body::Body,
    pending: Option<Pending>,
}

impl Body for ResponseTap {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(pending) = self.pending.take()
        {
            let code = trailers
                .get("grpc-status")
                .map(|code| tonic::Code::from_bytes(code.as_bytes()));
            pending.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseTap {
    /// A response dropped before its trailers: the call broke, or the client gave up.
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.finish(None);
        }
    }
}

/// Statuses a handler answers only before, or instead of, committing a change: a call that got
/// one changed nothing. (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED and the like may come after a
/// commit the caller never heard of.)
const REFUSALS: [tonic::Code; 8] = [
    tonic::Code::InvalidArgument,
    tonic::Code::FailedPrecondition,
    tonic::Code::PermissionDenied,
    tonic::Code::Unauthenticated,
    tonic::Code::AlreadyExists,
    tonic::Code::NotFound,
    tonic::Code::OutOfRange,
    tonic::Code::ResourceExhausted,
];

/// Changes the insured city's benefit service records itself, not through a recorded reply:
/// one Post or Void row for each reservation a request resolves, so a request that resolves
/// nothing new (a replay) adds no row.
const BENEFIT_RESOLUTIONS: [&str; 2] = ["Post", "Void"];

/// One audit row as the check needs it.
#[derive(Debug)]
struct Row {
    rpc: String,
    message_id: String,
    actor: String,
    recorded_at_ms: i64,
}

/// Holds every store's audit trail to the calls the sandbox's clients made and to the store's
/// own state; the problems found, one line each.
pub(crate) async fn check(
    journal: &Journal,
    location: &Location,
    servers: &[(Owner, Service)],
) -> Vec<String> {
    let calls = journal.calls();
    let mut problems = Vec::new();
    for &(owner, service) in servers {
        let limits = PoolLimits {
            connections_max: 1,
            ..PoolLimits::default()
        };
        let store = Store::open(location, service, owner, limits)
            .await
            .expect("the store opens");
        let rows: Vec<Row> = sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT rpc, message_id, actor, recorded_at_ms FROM audit_trail ORDER BY audit_id",
        )
        .fetch_all(store.pool())
        .await
        .expect("the audit trail reads")
        .into_iter()
        .map(|(rpc, message_id, actor, recorded_at_ms)| Row {
            rpc,
            message_id,
            actor,
            recorded_at_ms,
        })
        .collect();
        let server = format!("{owner} {service}");
        let mine: Vec<&Call> = calls
            .iter()
            .filter(|call| call.owner == owner && call.service == service)
            .collect();
        // Refused calls whose message id has a row all the same: a Settle or cancellation whose
        // intent was committed and then voided changed the store (its intent stays, voided) and
        // is audited from that commit; a Settle whose id a racing reversal killed has the row of
        // the reversal's claim of it.
        let voided: BTreeSet<(String, String)> = match service {
            Service::Settlement => sqlx::query_as::<_, (String, String)>(
                "SELECT institution_code, message_id FROM settlements \
                 WHERE phase IN ('voiding', 'voided') \
                 UNION SELECT institution_code, message_id FROM dead_message_ids",
            )
            .fetch_all(store.pool())
            .await
            .expect("the settlements read")
            .into_iter()
            .map(|(institution, message_id)| (institution_actor(&institution), message_id))
            .collect(),
            _ => BTreeSet::new(),
        };
        check_calls(&server, service, &rows, &mine, &voided, &mut problems);
        check_state(&server, &store, service, &rows, &mut problems).await;
        store.close().await;
    }
    problems
}

/// Whether a store's message ids are each caller's own rather than the store's: the settlement
/// store's, where an institution's message id is its own national msgid.
fn ids_per_caller(service: Service) -> bool {
    service == Service::Settlement
}

/// The audit trail's actor for the owner of a settlement-store message id: an institution code,
/// or the caller name itself for a bureau's (its filings, `bureau:370100`).
fn institution_actor(institution_code: &str) -> String {
    match institution_code.contains(':') {
        true => institution_code.to_owned(),
        false => format!("institution:{institution_code}"),
    }
}

/// Whose message id a call's is, as the audit trail names its owner: the caller in a store whose
/// ids are each caller's own, nobody ("") where they are the store's.
fn id_owner(service: Service, call: &Call) -> String {
    match (ids_per_caller(service), &call.caller) {
        (true, Some(caller)) => caller.clone(),
        _ => String::new(),
    }
}

fn check_calls(
    server: &str,
    service: Service,
    rows: &[Row],
    calls: &[&Call],
    voided: &BTreeSet<(String, String)>,
    problems: &mut Vec<String>,
) {
    // Whether a row is of the call's message id: of its caller too, where ids are the caller's.
    let of_call = |row: &Row, call: &Call| {
        row.message_id == call.message_id
            && (!ids_per_caller(service)
                || call
                    .caller
                    .as_ref()
                    .is_none_or(|caller| row.actor == *caller))
    };
    let mut answered_ok = BTreeSet::new();
    for call in calls {
        if call.status == Some(tonic::Code::Ok) {
            answered_ok.insert((id_owner(service, call), call.message_id.clone()));
        }
    }
    let mut checked = BTreeSet::new();
    for call in calls {
        if !checked.insert((
            id_owner(service, call),
            call.rpc.as_str(),
            call.message_id.as_str(),
            call.status.map(i32::from),
        )) {
            continue;
        }
        let matching: Vec<&Row> = rows
            .iter()
            .filter(|row| row.rpc == call.rpc && of_call(row, call))
            .collect();
        if call.status == Some(tonic::Code::Ok) && !BENEFIT_RESOLUTIONS.contains(&&*call.rpc) {
            if matching.len() != 1 {
                problems.push(format!(
                    "{server}: {} {} was answered OK and has {} audit rows, not one",
                    call.rpc,
                    call.message_id,
                    matching.len()
                ));
            } else if let Some(caller) = &call.caller
                && matching[0].actor != *caller
            {
                problems.push(format!(
                    "{server}: {} {} was made by {caller}, its audit row names {}",
                    call.rpc, call.message_id, matching[0].actor
                ));
            }
        }
        let refused = call.status.is_some_and(|code| REFUSALS.contains(&code));
        let id = (id_owner(service, call), call.message_id.clone());
        if refused && !call.streaming && !answered_ok.contains(&id) && !voided.contains(&id) {
            // A message id may have a row from another call (a reversal kills the id of a
            // settle it never saw); none may have been added while the refused call ran.
            let added: Vec<&Row> = rows
                .iter()
                .filter(|row| {
                    of_call(row, call)
                        && (call.sent_ms..=call.ended_ms).contains(&row.recorded_at_ms)
                })
                .collect();
            if !added.is_empty() {
                problems.push(format!(
                    "{server}: {} {} was refused ({:?}) yet audit rows were added: {added:?}",
                    call.rpc, call.message_id, call.status
                ));
            }
        }
    }
}

async fn check_state(
    server: &str,
    store: &Store,
    service: Service,
    rows: &[Row],
    problems: &mut Vec<String>,
) {
    let by_rpc = |rpc: &str| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for row in rows.iter().filter(|row| row.rpc == rpc) {
            *counts.entry(row.message_id.clone()).or_default() += 1;
        }
        counts
    };
    // Rows of changes keyed by a claimed message id, against the claims: keyed by whose id it
    // is (the actor, where ids are each caller's own), the RPC and the message id.
    let own = ["Reserve", "Post", "Void", "ReconcileDetails"];
    let per_caller = ids_per_caller(service);
    let mut audited: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for row in rows.iter().filter(|row| !own.contains(&row.rpc.as_str())) {
        let owner = if per_caller {
            row.actor.clone()
        } else {
            String::new()
        };
        *audited
            .entry((owner, row.rpc.clone(), row.message_id.clone()))
            .or_default() += 1;
    }
    let replies: Vec<(String, String, String)> = if per_caller {
        sqlx::query_as("SELECT institution_code, rpc, message_id FROM message_replies")
            .fetch_all(store.pool())
            .await
            .expect("claimed message ids read")
            .into_iter()
            .map(|(institution, rpc, message_id): (String, String, String)| {
                (institution_actor(&institution), rpc, message_id)
            })
            .collect()
    } else {
        sqlx::query_as("SELECT rpc, message_id FROM message_replies")
            .fetch_all(store.pool())
            .await
            .expect("claimed message ids read")
            .into_iter()
            .map(|(rpc, message_id): (String, String)| (String::new(), rpc, message_id))
            .collect()
    };
    // Whose ids a line speaks of, where ids are each caller's own.
    let of_owner = |owner: &str| match owner {
        "" => String::new(),
        owner => format!(" (message ids of {owner})"),
    };
    for key in &replies {
        let count = audited.remove(key).unwrap_or(0);
        if count != 1 {
            let (owner, rpc, message_id) = key;
            problems.push(format!(
                "{server}: the claim of {rpc} {message_id} has {count} audit rows, not one{}",
                of_owner(owner)
            ));
        }
    }
    for ((owner, rpc, message_id), count) in audited {
        problems.push(format!(
            "{server}: {count} audit rows of {rpc} {message_id} but no claim{}",
            of_owner(&owner)
        ));
    }
    if service == Service::Settlement {
        for (rpc, condition) in [
            ("Reserve", "kind IN ('settlement', 'cancellation')"),
            ("Post", "status = 'posted'"),
            ("Void", "status = 'voided'"),
        ] {
            let (expected,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM reservations WHERE {condition}"
            )))
            .fetch_one(store.pool())
            .await
            .expect("reservations counted");
            let found: usize = by_rpc(rpc).values().sum();
            if i64::try_from(found).ok() != Some(expected) {
                problems.push(format!(
                    "{server}: {found} {rpc} audit rows for {expected} reservations ({condition})"
                ));
            }
        }
    }
    if service == Service::Ledger {
        let runs: Vec<(String,)> = sqlx::query_as("SELECT message_id FROM reconciliation_runs")
            .fetch_all(store.pool())
            .await
            .expect("reconciliation runs read");
        let mut audited = by_rpc("ReconcileDetails");
        for (message_id,) in runs {
            let count = audited.remove(&message_id).unwrap_or(0);
            if count != 1 {
                problems.push(format!(
                    "{server}: reconciliation run {message_id} has {count} audit rows, not one"
                ));
            }
        }
        for (message_id, count) in audited {
            problems.push(format!(
                "{server}: {count} ReconcileDetails audit rows of {message_id} but no run"
            ));
        }
    }
}
