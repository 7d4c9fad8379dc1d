//! The server side: every call is authenticated, checked against the permission matrix, and
//! handed to its handler with the [`Caller`] in its extensions and as the task's current
//! caller (for the audit trail).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use yitong_core::Owner;
use yitong_rpc::Caller;

use crate::keys::SharedKeyring;
use crate::permissions::{Verdict, verdict};
use crate::pki::caller_of_certificate;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// A tower layer for a tonic server run by `owner`, checking keys against `keyring`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    owner: Owner,
    keyring: SharedKeyring,
}

impl AuthLayer {
    pub fn new(owner: Owner, keyring: SharedKeyring) -> AuthLayer {
        AuthLayer { owner, keyring }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            owner: self.owner,
            keyring: self.keyring.clone(),
        }
    }
}

/// The service [`AuthLayer`] builds.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    owner: Owner,
    keyring: SharedKeyring,
}

/// Who the request says it is, before the matrix is asked. A client certificate from the
/// network's CA (checked by the TLS handshake) whose common name is a caller names its holder;
/// otherwise an API key does (over TLS, a certificate naming no caller, such as an HIS
/// vendor's gateway, still needs one); otherwise the caller is anonymous. A key that does not
/// authenticate is an error, not anonymity: the caller meant to be someone.
pub fn authenticate<B>(
    request: &Request<B>,
    keyring: &SharedKeyring,
) -> Result<Caller, tonic::Status> {
    let certified = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .and_then(|chain| {
            chain
                .first()
                .and_then(|leaf| caller_of_certificate(leaf.as_ref()))
        });
    if let Some(caller) = certified {
        return Ok(caller);
    }
    let Some(header) = request.headers().get("authorization") else {
        return Ok(Caller::Anonymous);
    };
    let key = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| tonic::Status::unauthenticated("authorization must be \"Bearer <key>\""))?;
    keyring
        .current()
        .authenticate(key)
        .map_err(|error| tonic::Status::unauthenticated(format!("api key refused: {error}")))
}

impl<S, B, RB> tower::Service<Request<B>> for Auth<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Response<RB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is not ready: keep the ready one for this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let refuse = |status: tonic::Status| -> Self::Future {
            Box::pin(std::future::ready(Ok(status.into_http())))
        };
        let caller = match authenticate(&request, &self.keyring) {
            Ok(caller) => caller,
            Err(status) => return refuse(status),
        };
        let path = request.uri().path();
        match verdict(self.owner, path, &caller) {
            Verdict::Allowed | Verdict::Unknown => {}
            Verdict::Refused if caller == Caller::Anonymous => {
                return refuse(tonic::Status::unauthenticated(format!(
                    "{path} needs a credential"
                )));
            }
            Verdict::Refused => {
                return refuse(tonic::Status::permission_denied(format!(
                    "{caller} may not call {path} at {}",
                    self.owner
                )));
            }
        }
        request.extensions_mut().insert(caller.clone());
        Box::pin(caller.scope(inner.call(request)))
    }
}
