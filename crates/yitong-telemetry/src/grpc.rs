//! Spans, W3C trace context and metrics on every gRPC hop.
//!
//! [`ServerLayer`] wraps a tonic server: each call gets a server span named after its method
//! with the OpenTelemetry RPC attributes, continues the caller's trace from the `traceparent`
//! metadata (an HIS's own trace included), and is counted and timed in [`crate::metrics()`].
//! [`Traced`] wraps a client channel: each outgoing call gets a client span and carries the
//! span's trace context to the peer. While the process exports no traces
//! ([`crate::tracing_on`]), neither makes a span; calls are still counted and timed.
//!
//! A call dropped before its answer (a fan-out call abandoned once another answered, a server
//! call whose client went away) ends its span CANCELLED, as the RPC conventions record it, and
//! a served one is counted so.
//! Every served call also writes one log line of its own (target `yitong::calls`, at info),
//! with the method, the status and the time it took, in its span.
//!
//! The status code comes from the response head. Tonic answers every error of a unary call
//! "trailers-only", with `grpc-status` in the head, so a head without it is a call that
//! succeeded; an error a streaming reply sends after its first message is not seen here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{MethodLabels, metrics};

/// Services left out of spans and metrics: health probes and reflection are infrastructure,
/// and a probe every few seconds would drown the traces of claims.
const UNTRACED_PREFIXES: [&str; 2] = ["/grpc.health.", "/grpc.reflection."];

/// "/yitong.settlement.v1.SettlementService/Settle" -> ("yitong.settlement.v1.SettlementService", "Settle").
fn rpc_of(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""))
}

/// The gRPC status code of a response head: its `grpc-status`, else OK (see the module docs).
fn status_code<B>(response: &Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The status's name as gRPC spells it, for metric labels.
fn status_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Records the outcome on a span: the gRPC code, and an error status for the codes that mean
/// the server failed (the OpenTelemetry RPC conventions leave client errors unmarked on the
/// server side).
fn record_status(span: &tracing::Span, code: i32, server: bool) {
    span.record("rpc.grpc.status_code", code);
    let failed = if server {
        matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
    } else {
        code != 0
    };
    if failed {
        span.record("otel.status_code", "ERROR");
    }
}

/// Ends a call's span: records its status when the call finished, CANCELLED when its future
/// was dropped before that (the span would otherwise end with no status at all).
struct Ending {
    span: tracing::Span,
    server: bool,
    finished: bool,
    /// A served call's labels and start: a call whose client went away is counted CANCELLED.
    served: Option<(MethodLabels, Instant)>,
}

impl Ending {
    fn client(span: tracing::Span) -> Ending {
        Ending {
            span,
            server: false,
            finished: false,
            served: None,
        }
    }

    fn server(span: tracing::Span, labels: MethodLabels, started: Instant) -> Ending {
        Ending {
            span,
            server: true,
            finished: false,
            served: Some((labels, started)),
        }
    }

    fn finish(&mut self, code: i32) {
        self.finished = true;
        record_status(&self.span, code, self.server);
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        record_status(&self.span, CANCELLED, self.server);
        if let Some((labels, started)) = self.served.take() {
            metrics().observe_rpc(labels, status_name(CANCELLED), started.elapsed());
        }
    }
}

/// gRPC's CANCELLED: the caller went away before the answer.
const CANCELLED: i32 = 1;

/// The host and port of a URI, the port from its scheme when it names none.
fn host_and_port(uri: &http::Uri) -> (String, u16) {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    (host.to_owned(), port)
}

/// The local and remote addresses of the connection a served call came on, as tonic records
/// them (a plaintext or a TLS connection over TCP).
fn connection_of<B>(request: &Request<B>) -> Option<tonic::transport::server::TcpConnectInfo> {
    let extensions = request.extensions();
    extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .cloned()
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TlsConnectInfo<
                    tonic::transport::server::TcpConnectInfo,
                >>()
                .map(|info| info.get_ref().clone())
        })
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// A tower layer for tonic servers: a server span, trace context extraction and RPC metrics
/// for every call. `owner` names who serves ("370300", "clearing").
#[derive(Debug, Clone)]
pub struct ServerLayer {
    owner: String,
}

impl ServerLayer {
    pub fn new(owner: impl Into<String>) -> ServerLayer {
        ServerLayer {
            owner: owner.into(),
        }
    }
}

impl<S> tower::Layer<S> for ServerLayer {
    type Service = Server<S>;

    fn layer(&self, inner: S) -> Server<S> {
        Server {
            inner,
            owner: self.owner.clone(),
        }
    }
}

/// The service [`ServerLayer`] builds.
#[derive(Debug, Clone)]
pub struct Server<S> {
    inner: S,
    owner: String,
}

impl<S, B, RB> tower::Service<Request<B>> for Server<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Response<RB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone is not ready: keep the ready one for this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if UNTRACED_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            return Box::pin(inner.call(request));
        }
        let (service, method) = rpc_of(path);
        let labels = MethodLabels {
            owner: self.owner.clone(),
            service: service.to_owned(),
            method: method.to_owned(),
        };
        let started = Instant::now();
        // While nothing exports traces no span is made: one would only cost the subscriber's
        // work. A disabled span records nothing and instruments for free.
        let span = if crate::tracing_on() {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
                yitong.owner = %self.owner,
                server.address = Empty,
                server.port = Empty,
                network.peer.address = Empty,
                network.peer.port = Empty,
                network.transport = "tcp",
            );
            if let Some(connection) = connection_of(&request) {
                if let Some(local) = connection.local_addr() {
                    span.record("server.address", local.ip().to_string());
                    span.record("server.port", i64::from(local.port()));
                }
                if let Some(remote) = connection.remote_addr() {
                    span.record("network.peer.address", remote.ip().to_string());
                    span.record("network.peer.port", i64::from(remote.port()));
                }
            }
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
            // Fails only when no OpenTelemetry layer is installed: then there is nothing to
            // continue.
            let _ = span.set_parent(parent);
            span
        } else {
            tracing::Span::none()
        };
        let call = inner.call(request).instrument(span.clone());
        let mut ending = Ending::server(span, labels.clone(), started);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => status_code(response),
                // A transport failure: the call did not get a gRPC answer.
                Err(_) => 2,
            };
            ending.finish(code);
            let elapsed = started.elapsed();
            tracing::info!(
                target: "yitong::calls",
                parent: &ending.span,
                owner = %labels.owner,
                rpc.service = %labels.service,
                rpc.method = %labels.method,
                code = status_name(code),
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "call served"
            );
            metrics().observe_rpc(labels, status_name(code), elapsed);
            result
        })
    }
}

/// A client channel whose every call has a client span and carries its trace context.
#[derive(Debug, Clone)]
pub struct Traced<C> {
    inner: C,
    /// The peer's host and port, for `server.address` and `server.port`: a request reaching
    /// this layer names only its path (the channel adds the origin below it).
    server: std::sync::Arc<(String, u16)>,
}

impl<C> Traced<C> {
    /// `inner` is a channel to `endpoint` ("http://127.0.0.1:7121").
    pub fn new(inner: C, endpoint: &http::Uri) -> Traced<C> {
        Traced {
            inner,
            server: std::sync::Arc::new(host_and_port(endpoint)),
        }
    }
}

impl<C, B, RB> tower::Service<Request<B>> for Traced<C>
where
    C: tower::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = C::Error;
    type Future = BoxFuture<Response<RB>, C::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !crate::tracing_on() {
            return Box::pin(inner.call(request));
        }
        let (service, method) = rpc_of(request.uri().path());
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            server.address = self.server.0.as_str(),
            server.port = i64::from(self.server.1),
        );
        // With no OpenTelemetry layer the context is empty and nothing is injected.
        TraceContextPropagator::new()
            .inject_context(&span.context(), &mut HeaderInjector(request.headers_mut()));
        let call = inner.call(request).instrument(span.clone());
        let mut ending = Ending::client(span);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => status_code(response),
                // The peer could not be reached: what tonic reports as UNAVAILABLE.
                Err(_) => 14,
            };
            ending.finish(code);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a method path splits into the service and the method the RPC conventions name,
    // and that a head without grpc-status is read as OK and one with it as its code.
    #[test]
    fn paths_and_status_codes_are_read_as_grpc_means_them() {
        assert_eq!(
            rpc_of("/yitong.settlement.v1.SettlementService/Settle"),
            ("yitong.settlement.v1.SettlementService", "Settle")
        );
        let ok = Response::new(());
        assert_eq!(status_code(&ok), 0);
        let mut refused = Response::new(());
        refused
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static("9"));
        assert_eq!(status_code(&refused), 9);
        assert_eq!(status_name(9), "FAILED_PRECONDITION");
    }

    // Proves a client span names its peer as the endpoint does, the port from the scheme when
    // the endpoint leaves it out.
    #[test]
    fn the_peer_is_named_by_host_and_port() {
        let uri = |text: &str| text.parse::<http::Uri>().expect("a URI");
        assert_eq!(
            host_and_port(&uri("http://127.0.0.1:7121")),
            ("127.0.0.1".to_owned(), 7121)
        );
        assert_eq!(
            host_and_port(&uri("https://zibo-identity")),
            ("zibo-identity".to_owned(), 443)
        );
        assert_eq!(
            host_and_port(&uri("http://[::1]:80")),
            ("::1".to_owned(), 80)
        );
    }
}
