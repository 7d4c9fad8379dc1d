//! Load shedding: a limit on the calls one server runs at once, and on those of one caller,
//! beyond which a call is answered RESOURCE_EXHAUSTED at once instead of waiting in a queue.
//!
//! A call holds its slot until its reply has been sent in full (a streaming reply included),
//! so the limit counts the work the server is actually doing. Health checks never take a slot:
//! a load balancer must see a busy server as busy, not dead. The caller is the one the
//! authentication layer (which runs before this one) put in the request: [`caller_key`].
//!
//! Calls a node makes (the insured city's BenefitService, the ledger's bookings, a lookup
//! forwarded to another city) are made on behalf of calls some node already accepted, and have
//! a budget of their own beside the calls that start work: otherwise a server full of HIS
//! calls would shed the Reserve or the booking each of them needs, and every accepted Settle
//! would fail. The class comes from the authenticated caller, a node's credential, never from
//! anything a client can put in a header. One caller may hold only a share of its server's
//! entry slots, so one HIS cannot starve a city.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

/// Calls that start work one server runs at once, all callers together. A pool of 8
/// connections at tens of milliseconds a write queues a 256th call for about a second, inside
/// the 3 s node-to-node deadline.
pub const SERVER_CALLS_IN_FLIGHT_MAX: usize = 256;
/// Calls that start work one caller runs at once on one server: a quarter of the server's, so
/// one HIS (or one bureau's export) holding its share leaves the rest to the others.
pub const CALLER_CALLS_IN_FLIGHT_MAX: usize = 64;
/// Calls nodes make on behalf of accepted calls, one server runs at once. A backstop, not a
/// budget anyone should meet: a node makes at most one such call at a time for each call it
/// accepted, so every enabled node's entry limit together bounds them (the ledger serves every
/// city's nodes at once).
pub const ON_BEHALF_CALLS_IN_FLIGHT_MAX: usize = 4_096;
/// The same backstop for one node.
pub const NODE_CALLS_IN_FLIGHT_MAX: usize = 1_024;

/// Paths that never take a slot and are never shed.
const EXEMPT_PREFIXES: [&str; 1] = ["/grpc.health.v1.Health/"];

/// Which limits a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    /// A call that starts work: an HIS's, a bureau's, an operator's.
    Entry,
    /// A call a node makes for a call it has accepted.
    OnBehalf,
}

/// A call is on behalf of accepted work when a node's credential made it.
fn class_of<B>(request: &Request<B>) -> Class {
    match request.extensions().get::<yitong_rpc::Caller>() {
        Some(yitong_rpc::Caller::Node(_)) => Class::OnBehalf,
        _ => Class::Entry,
    }
}

/// The limits of one server, for each of the two classes of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedLimits {
    /// Calls that start work, on the whole server.
    pub server_calls_in_flight_max: usize,
    /// Calls that start work, per caller.
    pub caller_calls_in_flight_max: usize,
    /// Calls made on behalf of accepted calls, on the whole server.
    pub on_behalf_calls_in_flight_max: usize,
    /// Calls made on behalf of accepted calls, per node.
    pub node_calls_in_flight_max: usize,
}

impl Default for ShedLimits {
    fn default() -> Self {
        ShedLimits {
            server_calls_in_flight_max: SERVER_CALLS_IN_FLIGHT_MAX,
            caller_calls_in_flight_max: CALLER_CALLS_IN_FLIGHT_MAX,
            on_behalf_calls_in_flight_max: ON_BEHALF_CALLS_IN_FLIGHT_MAX,
            node_calls_in_flight_max: NODE_CALLS_IN_FLIGHT_MAX,
        }
    }
}

impl ShedLimits {
    /// The server's and one caller's limit for calls of `class`.
    fn of(&self, class: Class) -> (usize, usize) {
        match class {
            Class::Entry => (
                self.server_calls_in_flight_max,
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

/// Calls in flight, for the whole server and per caller, by class.
#[derive(Debug, Default)]
struct InFlight {
    server: HashMap<Class, usize>,
    callers: HashMap<(Class, Option<String>), usize>,
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
        let key = (class, caller);
        let (server_max, caller_max) = self.limits.of(class);
        let server = in_flight.server.get(&class).copied().unwrap_or(0);
        if server >= server_max {
            return Err("the server is at its limit of calls in flight");
        }
        let count = in_flight.callers.entry(key.clone()).or_default();
        if *count >= caller_max {
            return Err("this caller is at its limit of calls in flight");
        }
        *count += 1;
        *in_flight.server.entry(class).or_default() += 1;
        Ok(Slot {
            shared: self.clone(),
            key,
        })
    }
}

/// One call's place in the limits, given back when dropped.
#[derive(Debug)]
struct Slot {
    shared: Arc<Shared>,
    key: (Class, Option<String>),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = self.shared.in_flight.lock().expect("in-flight table");
        if let Some(server) = in_flight.server.get_mut(&self.key.0) {
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
            limits.server_calls_in_flight_max > 0
                && limits.caller_calls_in_flight_max > 0
                && limits.on_behalf_calls_in_flight_max > 0
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
