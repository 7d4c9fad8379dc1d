//! Load shedding: a limit on the calls one server runs at once, and on those of one caller,
//! beyond which a call is answered RESOURCE_EXHAUSTED at once instead of waiting in a queue.
//!
//! A call holds its slot until its reply has been sent in full (a streaming reply included),
//! so the limit counts the work the server is actually doing. Health checks never take a slot:
//! a load balancer must see a busy server as busy, not dead. The caller is the one the
//! authentication layer (which runs before this one) put in the request: [`caller_key`].
//!
//! Three classes of calls, in the order they are kept when the server is full:
//!
//! - **On behalf**: calls a node makes (the insured city's BenefitService, the ledger's
//!   bookings, a lookup forwarded to another city) for calls some node already accepted. They
//!   have a budget of their own: otherwise a server full of HIS calls would shed the Reserve or
//!   the booking each of them needs, and every accepted Settle would fail. The class comes from
//!   the authenticated caller, a node's credential, never from anything a client can put in a
//!   header.
//! - **Carrying on**: an HIS's calls on a visit it has already opened ([`CARRYING_ON`]). They
//!   may use every entry slot.
//! - **Opening**: everything else from outside (a new visit, a lookup, a bureau's report). They
//!   are admitted only while the server runs fewer entry calls than a share of its limit, so
//!   under overload the visits already begun finish and the new ones are refused at the door:
//!   a visit shed half-way is work thrown away.
//!
//! One caller may hold only a share of its server's entry slots, so one HIS cannot starve a
//! city.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpConnectInfo;
use yitong_proto::settlement::v1::settlement_service_server::SettlementServiceServer;
use yitong_settlement::SettlementNode;

/// Calls that start or carry on work (an HIS's, a bureau's, an operator's) that one server
/// runs at once, all callers together. Well below HTTP/2's streams per connection
/// ([`crate::limits::STREAMS_PER_CONNECTION_MAX`]): beyond what the node's CPU and store can
/// run, more calls at once only queue, and a queue long enough pushes the calls this node makes
/// to its peers past their deadline, so that accepted work fails too. Refused at the door, an
/// excess call costs the HIS a retry instead. The figure is the one the overload run of
/// BENCHMARKS.md holds to its targets; a node's configuration may set its own.
pub const ENTRY_CALLS_IN_FLIGHT_MAX: usize = 32;
/// Calls nodes make on behalf of accepted calls, one server runs at once. A backstop, not a
/// budget anyone should meet: a node makes at most one such call at a time for each call it
/// accepted, so every enabled node's entry limit together bounds them (the ledger serves every
/// city's nodes at once).
pub const ON_BEHALF_CALLS_IN_FLIGHT_MAX: usize = 4_096;
/// The same backstop for one node.
pub const NODE_CALLS_IN_FLIGHT_MAX: usize = 1_024;

/// Paths that never take a slot and are never shed.
const EXEMPT_PREFIXES: [&str; 1] = ["/grpc.health.v1.Health/"];

/// The HIS calls that carry on a visit the HIS has already opened: its fee lines, its
/// pre-settlement and settlement, and the cancellation or reversal of a settlement. Under
/// overload these come first: a visit once begun should be able to finish (and a settlement
/// in doubt be reversed), while new visits and lookups are the ones refused at the door.
const CARRYING_ON: [&str; 7] = [
    "CancelVisit",
    "UploadFeeLines",
    "CancelFeeLines",
    "PreSettle",
    "Settle",
    "CancelSettlement",
    "ReverseByMessageId",
];

/// Which limits a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    /// A call that starts work: a new visit, a lookup, a bureau's report.
    Opening,
    /// A call that carries on work already begun: see [`CARRYING_ON`].
    CarryingOn,
    /// A call a node makes for a call it has accepted.
    OnBehalf,
}

impl Class {
    /// Calls that start or carry on work share the entry limits and a caller's share.
    fn is_entry(self) -> bool {
        matches!(self, Class::Opening | Class::CarryingOn)
    }
}

/// A call is on behalf of accepted work when a node's credential made it; otherwise it
/// carries on a visit when it is one of the settlement service's [`CARRYING_ON`] calls.
fn class_of<B>(request: &Request<B>) -> Class {
    if let Some(yitong_rpc::Caller::Node(_)) = request.extensions().get::<yitong_rpc::Caller>() {
        return Class::OnBehalf;
    }
    let path = request.uri().path().trim_start_matches('/');
    match path.split_once('/') {
        Some((service, method))
            if service == SettlementServiceServer::<SettlementNode>::NAME
                && CARRYING_ON.contains(&method) =>
        {
            Class::CarryingOn
        }
        _ => Class::Opening,
    }
}

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedLimits {
    /// Calls that start or carry on work, on the whole server.
    pub entry_calls_in_flight_max: usize,
    /// A call that starts work is admitted only while fewer entry calls than this are in
    /// flight: the rest of the room is kept for calls that carry on work already begun.
    pub opening_calls_in_flight_max: usize,
    /// Calls that start or carry on work, per caller.
    pub caller_calls_in_flight_max: usize,
    /// Calls made on behalf of accepted calls, on the whole server.
    pub on_behalf_calls_in_flight_max: usize,
    /// Calls made on behalf of accepted calls, per node.
    pub node_calls_in_flight_max: usize,
}

impl Default for ShedLimits {
    fn default() -> Self {
        ShedLimits::with_entry_calls(ENTRY_CALLS_IN_FLIGHT_MAX)
    }
}

impl ShedLimits {
    /// Limits for a server that runs `entry` calls from outside at once: new work starts only
    /// while it runs fewer than half that many, and one caller may hold half of them.
    pub fn with_entry_calls(entry: usize) -> ShedLimits {
        let entry = entry.max(2);
        ShedLimits {
            entry_calls_in_flight_max: entry,
            opening_calls_in_flight_max: entry / 2,
            caller_calls_in_flight_max: entry / 2,
            on_behalf_calls_in_flight_max: ON_BEHALF_CALLS_IN_FLIGHT_MAX,
            node_calls_in_flight_max: NODE_CALLS_IN_FLIGHT_MAX,
        }
    }

    /// The limit of `class` on the whole server, and that of its entry or node calls per caller.
    fn of(&self, class: Class) -> (usize, usize) {
        match class {
            Class::Opening => (
                self.opening_calls_in_flight_max,
                self.caller_calls_in_flight_max,
            ),
            Class::CarryingOn => (
                self.entry_calls_in_flight_max,
                self.caller_calls_in_flight_max,
            ),
            Class::OnBehalf => (
                self.on_behalf_calls_in_flight_max,
                self.node_calls_in_flight_max,
            ),
        }
    }
}

/// Who is calling, for the per-caller limit: the caller the server layer authenticated (the
/// auth layer runs before this one), else, for anonymous calls, the peer's IP address; `None`
/// when neither is known (such calls share one key).
pub fn caller_key<B>(request: &Request<B>) -> Option<String> {
    match request.extensions().get::<yitong_rpc::Caller>() {
        Some(yitong_rpc::Caller::Anonymous) | None => {}
        Some(caller) => return Some(caller.to_string()),
    }
    request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map(|address| format!("ip:{}", address.ip()))
}

/// Whose limits a call counts against per caller: entry calls of one caller together, or one
/// node's calls on behalf of its accepted work.
type CallerKey = (bool, Option<String>);

/// Calls in flight, for the whole server by class and per caller.
#[derive(Debug, Default)]
struct InFlight {
    server: HashMap<Class, usize>,
    callers: HashMap<CallerKey, usize>,
}

impl InFlight {
    fn of(&self, class: Class) -> usize {
        self.server.get(&class).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
struct Shared {
    limits: ShedLimits,
    in_flight: Mutex<InFlight>,
}

impl Shared {
    /// Takes a slot for `caller`, or says which limit is reached.
    fn admit(self: &Arc<Self>, class: Class, caller: Option<String>) -> Result<Slot, &'static str> {
        let mut in_flight = self.in_flight.lock().expect("in-flight table");
        let (server_max, caller_max) = self.limits.of(class);
        // Entry calls of both kinds count against either's limit: new work starts only while
        // the server is less than so full, so the room above is always there for visits under
        // way, however many new ones arrive.
        let server = match class {
            Class::Opening | Class::CarryingOn => {
                in_flight.of(Class::Opening) + in_flight.of(Class::CarryingOn)
            }
            Class::OnBehalf => in_flight.of(Class::OnBehalf),
        };
        if server >= server_max {
            return Err(match class {
                Class::Opening => "the server is too busy to start new work",
                _ => "the server is at its limit of calls in flight",
            });
        }
        let key = (class.is_entry(), caller);
        let count = in_flight.callers.entry(key.clone()).or_default();
        if *count >= caller_max {
            return Err("this caller is at its limit of calls in flight");
        }
        *count += 1;
        *in_flight.server.entry(class).or_default() += 1;
        Ok(Slot {
            shared: self.clone(),
            class,
            key,
        })
    }
}

/// One call's place in the limits, given back when dropped.
#[derive(Debug)]
struct Slot {
    shared: Arc<Shared>,
    class: Class,
    key: CallerKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = self.shared.in_flight.lock().expect("in-flight table");
        if let Some(server) = in_flight.server.get_mut(&self.class) {
            *server -= 1;
        }
        if let Some(count) = in_flight.callers.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                in_flight.callers.remove(&self.key);
            }
        }
    }
}

/// A tower layer for tonic servers that sheds calls beyond [`ShedLimits`].
#[derive(Debug, Clone)]
pub struct ShedLayer {
    shared: Arc<Shared>,
}

impl ShedLayer {
    pub fn new(limits: ShedLimits) -> ShedLayer {
        assert!(
            limits.entry_calls_in_flight_max > 0
                && limits.opening_calls_in_flight_max > 0
                && limits.caller_calls_in_flight_max > 0
                && limits.on_behalf_calls_in_flight_max > 0
                && limits.node_calls_in_flight_max > 0
        );
        ShedLayer {
            shared: Arc::new(Shared {
                limits,
                in_flight: Mutex::new(InFlight::default()),
            }),
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`ShedLayer`] builds.
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for Shed<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone is not ready: keep the ready one for this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            return Box::pin(inner.call(request));
        }
        let slot = match self.shared.admit(class_of(&request), caller_key(&request)) {
            Ok(slot) => slot,
            Err(reason) => {
                let status = tonic::Status::resource_exhausted(reason);
                return Box::pin(std::future::ready(Ok(status.into_http::<Body>())));
            }
        };
        let call = inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            // The slot goes with the reply's body, so a streaming reply keeps it until sent.
            Ok(response.map(|body| Body::new(Holding { body, _slot: slot })))
        })
    }
}

/// A reply body that holds its call's slot until it is dropped.
struct Holding {
    body: Body,
    _slot: Slot,
}

impl http_body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(entry: usize) -> Arc<Shared> {
        Arc::new(Shared {
            limits: ShedLimits::with_entry_calls(entry),
            in_flight: Mutex::new(InFlight::default()),
        })
    }

    fn request(path: &str, caller: Option<yitong_rpc::Caller>) -> Request<()> {
        let mut request = Request::builder().uri(path).body(()).expect("request");
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        request
    }

    #[test]
    fn later_calls_of_a_visit_carry_on_and_everything_else_opens() {
        let settle = "/yitong.settlement.v1.SettlementService/Settle";
        assert_eq!(class_of(&request(settle, None)), Class::CarryingOn);
        for method in CARRYING_ON {
            let path = format!("/yitong.settlement.v1.SettlementService/{method}");
            assert_eq!(
                class_of(&request(&path, None)),
                Class::CarryingOn,
                "{method}"
            );
        }
        for path in [
            "/yitong.settlement.v1.SettlementService/RegisterVisit",
            "/yitong.settlement.v1.SettlementService/GetSettlement",
            "/yitong.ledger.v1.LedgerService/CreateTransfers",
            "/yitong.identity.v1.IdentityService/GetInsuredPerson",
            // A method of the same name in another service is not the settlement's.
            "/yitong.settlement.v1.BenefitService/Settle",
        ] {
            assert_eq!(class_of(&request(path, None)), Class::Opening, "{path}");
        }
        let node = yitong_rpc::Caller::Node(yitong_core::Owner::ClearingHouse);
        assert_eq!(
            class_of(&request(
                "/yitong.ledger.v1.LedgerService/CreateTransfers",
                Some(node)
            )),
            Class::OnBehalf
        );
    }

    #[test]
    fn new_work_starts_only_in_a_half_empty_server_and_visits_under_way_use_the_rest() {
        let shared = shared(8);
        let caller = |n: usize| Some(format!("his-{n}"));
        // Two calls carry on visits and two open new ones: the server is half full, and starts
        // nothing new.
        let mut slots: Vec<Slot> = (0..2)
            .map(|n| shared.admit(Class::CarryingOn, caller(n)).expect("room"))
            .chain((2..4).map(|n| {
                shared
                    .admit(Class::Opening, caller(n))
                    .expect("room to open")
            }))
            .collect();
        assert_eq!(
            shared.admit(Class::Opening, caller(9)).err(),
            Some("the server is too busy to start new work")
        );
        // Calls carrying on visits take the rest of the room, then the server is full.
        slots.extend((0..4).map(|n| shared.admit(Class::CarryingOn, caller(n)).expect("room")));
        assert!(shared.admit(Class::CarryingOn, caller(9)).is_err());
        // Calls on behalf of accepted work have a room of their own.
        let node = Some("node:370100".to_owned());
        let on_behalf = shared.admit(Class::OnBehalf, node).expect("on behalf");
        // A slot given back is room again.
        slots.pop();
        let again = shared
            .admit(Class::CarryingOn, caller(9))
            .expect("room again");
        drop((slots, on_behalf, again));
        assert_eq!(shared.in_flight.lock().expect("table").callers.len(), 0);
    }

    #[test]
    fn one_caller_holds_at_most_half_the_room() {
        let shared = shared(8);
        let one = Some("his-1".to_owned());
        let slots: Vec<Slot> = (0..4)
            .map(|_| {
                shared
                    .admit(Class::CarryingOn, one.clone())
                    .expect("its share")
            })
            .collect();
        assert_eq!(
            shared.admit(Class::CarryingOn, one.clone()).err(),
            Some("this caller is at its limit of calls in flight")
        );
        assert!(
            shared
                .admit(Class::CarryingOn, Some("his-2".to_owned()))
                .is_ok()
        );
        drop(slots);
    }
}
