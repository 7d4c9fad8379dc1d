//! One listener for the pools a node serves: each call goes to the services and stores of the
//! pool it addresses.
//!
//! The national platform runs one endpoint for many regions, and every message's envelope names
//! its region (`mdtrtarea_admvs`). Yitong's calls name it in the `yitong-pool` metadata: Yitong's
//! own clients (peer nodes, the command line, the console, the sandbox) always send it. A call
//! without it goes to the node's one pool when it serves one; at a node of several pools, to
//! the pool of its authenticated caller when that is an institution of one of them (an HIS talks
//! to its own pool's node, and its credential says which pool that is), and health checks and
//! reflection, which are the node's, to its first pool's stack. Anything else is refused before
//! any handler runs, so nothing is stored: INVALID_ARGUMENT naming the metadata key.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use yitong_auth::{SharedKeyring, authenticate};
use yitong_core::{Invalid, Owner, PoolCode};
use yitong_rpc::{Caller, POOL_METADATA, invalid_argument};

/// Everything one pool's (or the clearing house's) services are behind: telemetry,
/// authentication, shedding, the frame check and the routes.
pub(crate) type Stack = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Paths that belong to the node rather than to one of its pools.
const NODE_PATHS: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The service a node's listener serves: the stack of each owner it serves, in the network
/// file's order, and the keyring to tell an HIS's pool by its credential.
#[derive(Clone)]
pub(crate) struct Dispatch {
    stacks: Arc<Vec<(Owner, Stack)>>,
    keyring: SharedKeyring,
}

impl Dispatch {
    pub(crate) fn new(stacks: Vec<(Owner, Stack)>, keyring: SharedKeyring) -> Dispatch {
        assert!(!stacks.is_empty(), "a node serves at least one owner");
        Dispatch {
            stacks: Arc::new(stacks),
            keyring,
        }
    }

    /// The pools served here, for messages: "370500, 370590" (or "clearing").
    fn served(&self) -> String {
        self.stacks
            .iter()
            .map(|(owner, _)| owner.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn stack_of(&self, pool: PoolCode) -> Option<&Stack> {
        self.stacks
            .iter()
            .find(|(owner, _)| *owner == Owner::Pool(pool))
            .map(|(_, stack)| stack)
    }

    /// The stack a request goes to, or the status that refuses it.
    fn route(&self, request: &Request<Body>) -> Result<Stack, tonic::Status> {
        let refuse = |reason: String| invalid_argument(Invalid::new(POOL_METADATA, reason));
        if let Some(value) = request.headers().get(POOL_METADATA) {
            let pool = value
                .to_str()
                .ok()
                .and_then(|text| PoolCode::parse(text).ok())
                .ok_or_else(|| {
                    refuse("must be a pool's six-digit region code (mdtrtarea_admvs)".to_owned())
                })?;
            return self.stack_of(pool).cloned().ok_or_else(|| {
                refuse(format!(
                    "names pool {pool}, which this node does not serve (it serves {})",
                    self.served()
                ))
            });
        }
        if let [(_, only)] = self.stacks.as_slice() {
            return Ok(only.clone());
        }
        let path = request.uri().path();
        if NODE_PATHS.iter().any(|prefix| path.starts_with(prefix)) {
            return Ok(self.stacks[0].1.clone());
        }
        // The stack authenticates the call again, as every call is; this look only picks the
        // pool, and an unauthenticated caller is refused as its stack would refuse it.
        let caller = authenticate(request, &self.keyring)?;
        if let Caller::Institution(code) = &caller
            && let Some(stack) = self.stack_of(code.city())
        {
            return Ok(stack.clone());
        }
        Err(refuse(format!(
            "is required: this node serves pools {}, and {caller} belongs to none of them",
            self.served()
        )))
    }
}

impl tower::Service<Request<Body>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each stack is made ready when the call is routed to it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self.route(&request) {
            Ok(stack) => Box::pin(async move {
                use tower::ServiceExt;
                stack.oneshot(request).await
            }),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}
