//! Reaching other nodes: the limits and the credential of every call, and the channel.

use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use yitong_core::PoolCode;

/// Limits on every call one node makes to another.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Deadline of one call, end to end.
    pub call_timeout_ms: u64,
    /// Deadline for establishing the connection.
    pub connect_timeout_ms: u64,
    /// How often an open connection is pinged (HTTP/2 PING), busy or idle. Without pings a
    /// connection across a link that was cut stays open on TCP's retransmission back-off, and
    /// calls keep failing for a minute and more after the link is back (PARTITIONS.md).
    pub keep_alive_interval_ms: u64,
    /// How long a ping's answer may take before the connection is taken for dead and dropped;
    /// the next call connects afresh.
    pub keep_alive_timeout_ms: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            call_timeout_ms: 3_000,
            connect_timeout_ms: 1_000,
            keep_alive_interval_ms: 2_000,
            keep_alive_timeout_ms: 2_000,
        }
    }
}

/// How this node reaches its peers: the limits on every call, and the credential that says
/// the caller is this node. Debug output shows neither the key (a sensitive header prints as
/// `Sensitive`) nor the TLS identity's private key (only whether there is one).
#[derive(Clone, Default)]
pub struct PeerAccess {
    pub limits: CallLimits,
    /// `Bearer <key>`: the node's API key, presented on every call. Loopback-only networks
    /// (`yitong dev`, the test sandbox) authenticate nodes this way; a network on TLS uses the
    /// node's certificate instead and leaves this empty.
    pub authorization: Option<http::HeaderValue>,
    /// The network's CA and this node's certificate, when the network runs TLS; every peer
    /// endpoint is then reached over `https`.
    pub tls: Option<ClientTlsConfig>,
}

impl std::fmt::Debug for PeerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAccess")
            .field("limits", &self.limits)
            .field("authorization", &self.authorization)
            .field("tls", &self.tls.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl PeerAccess {
    pub fn with_limits(limits: CallLimits) -> PeerAccess {
        PeerAccess {
            limits,
            ..PeerAccess::default()
        }
    }
}

/// The metadata key that names the pool a call is addressed to: the national envelope's
/// `mdtrtarea_admvs`, the region of the node's side of the call. A node that serves several
/// pools of its city dispatches each call by it; a node of one pool takes a call without it,
/// and refuses one naming another pool.
pub const POOL_METADATA: &str = "yitong-pool";

/// The `yitong-pool` value of `pool`. A pool code is six ASCII digits, always a header value.
pub fn pool_header(pool: PoolCode) -> http::HeaderValue {
    http::HeaderValue::from_str(&pool.to_string()).expect("a pool code is a header value")
}

/// A channel that presents a credential on every call: the `authorization` metadata, unless
/// the call carries its own; and, when it reaches a pool's node, the pool it addresses
/// (`yitong-pool`), unless the call names one itself.
#[derive(Debug, Clone)]
pub struct Authorized<C> {
    inner: C,
    authorization: Option<http::HeaderValue>,
    pool: Option<http::HeaderValue>,
}

impl<C> Authorized<C> {
    pub fn new(inner: C, authorization: Option<http::HeaderValue>) -> Authorized<C> {
        Authorized {
            inner,
            authorization,
            pool: None,
        }
    }

    /// Every call addresses `pool` at the node it reaches (`None`: the clearing house, which
    /// serves no pool).
    pub fn addressed_to(mut self, pool: Option<PoolCode>) -> Authorized<C> {
        self.pool = pool.map(pool_header);
        self
    }
}

impl<C, B> tower::Service<http::Request<B>> for Authorized<C>
where
    C: tower::Service<http::Request<B>>,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(value) = &self.authorization {
            request
                .headers_mut()
                .entry(http::header::AUTHORIZATION)
                .or_insert_with(|| value.clone());
        }
        if let Some(value) = &self.pool {
            request
                .headers_mut()
                .entry(POOL_METADATA)
                .or_insert_with(|| value.clone());
        }
        self.inner.call(request)
    }
}

/// `Bearer <key>` as a header value; `None` for an empty key. Keys are ASCII by construction,
/// so a key that is not a valid header value is refused here rather than at every call.
pub fn bearer(key: &str) -> Result<Option<http::HeaderValue>, http::header::InvalidHeaderValue> {
    if key.is_empty() {
        return Ok(None);
    }
    let mut value = http::HeaderValue::from_str(&format!("Bearer {key}"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// A channel to another node: every call has a client span, carries its trace context and
/// presents this node's credential.
pub type PeerChannel = yitong_telemetry::grpc::Traced<Authorized<Channel>>;

/// A channel to another node that connects on first use and reconnects after failures, with a
/// deadline on every call, so a node never waits without bound on a peer. Every call names
/// `pool`, the pool it addresses at that node (`None` for the clearing house's ledger).
pub fn peer_channel(
    endpoint: &str,
    pool: Option<PoolCode>,
    access: &PeerAccess,
) -> Result<PeerChannel, tonic::transport::Error> {
    let limits = access.limits;
    let mut builder = match &access.tls {
        Some(tls) => Endpoint::from_shared(endpoint.replacen("http://", "https://", 1))?
            .tls_config(tls.clone())?,
        None => Endpoint::from_shared(endpoint.to_owned())?,
    };
    builder = builder
        .timeout(Duration::from_millis(limits.call_timeout_ms))
        .connect_timeout(Duration::from_millis(limits.connect_timeout_ms))
        .http2_keep_alive_interval(Duration::from_millis(limits.keep_alive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(limits.keep_alive_timeout_ms))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let server = builder.uri().clone();
    Ok(yitong_telemetry::grpc::Traced::new(
        Authorized::new(builder.connect_lazy(), access.authorization.clone()).addressed_to(pool),
        &server,
    ))
}
