//! One service on one listener, with grpc.health.v1 and server reflection (v1 and v1alpha): of
//! one pool, of several pools of one city (dispatched by the pool each call addresses), or the
//! clearing house's.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use yitong_catalog::CatalogNode;
use yitong_core::Owner;
use yitong_identity::IdentityNode;
use yitong_ledger::LedgerNode;
use yitong_proto::audit::v1::audit_service_server::AuditServiceServer;
use yitong_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use yitong_proto::identity::v1::identity_service_server::IdentityServiceServer;
use yitong_proto::ledger::v1::ledger_service_server::LedgerServiceServer;
use yitong_proto::settlement::v1::benefit_service_server::BenefitServiceServer;
use yitong_proto::settlement::v1::certification_service_server::CertificationServiceServer;
use yitong_proto::settlement::v1::filing_service_server::FilingServiceServer;
use yitong_proto::settlement::v1::settlement_service_server::SettlementServiceServer;
use yitong_settlement::{BenefitNode, SettlementNode};
use yitong_telemetry::grpc::ServerLayer;

use crate::Security;
use crate::audit::AuditNode;
use crate::dispatch::{Dispatch, Stack};
use yitong_auth::AuthLayer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error(
        "refusing to serve plaintext on {0}: only loopback addresses may; give the server a PKI (--pki)"
    )]
    Plaintext(std::net::SocketAddr),
    #[error("cannot read the server's certificate")]
    Pki(#[from] yitong_auth::PkiError),
    #[error("cannot read the listener's address")]
    Address(#[source] std::io::Error),
}
use crate::frames::FrameCheckLayer;
use crate::limits::{self, limited};
use crate::shed::{ShedLayer, ShedLimits};

/// What one server runs. A settlement node serves both the HIS-facing settlement service and
/// the node-facing benefit service, which share the city's settlement store.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a role is built once per server and moved into it"
)]
pub enum Role {
    Identity(Box<IdentityNode>),
    Catalog(CatalogNode),
    Settlement(SettlementNode, BenefitNode),
    Ledger(LedgerNode),
}

impl Role {
    /// The store of the role's services, whose audit trail the server serves.
    pub fn store(&self) -> &yitong_store::Store {
        match self {
            Role::Identity(node) => node.store(),
            Role::Catalog(node) => node.store(),
            Role::Settlement(node, _) => node.store(),
            Role::Ledger(node) => node.store(),
        }
    }

    /// Fully qualified names of the gRPC services this role serves (the audit trail besides).
    pub fn service_names(&self) -> Vec<&'static str> {
        let mut names = self.own_service_names();
        names.push(AuditServiceServer::<AuditNode>::NAME);
        names
    }

    fn own_service_names(&self) -> Vec<&'static str> {
        match self {
            Role::Identity(_) => vec![IdentityServiceServer::<IdentityNode>::NAME],
            Role::Catalog(_) => vec![CatalogServiceServer::<CatalogNode>::NAME],
            Role::Settlement(..) => vec![
                SettlementServiceServer::<SettlementNode>::NAME,
                BenefitServiceServer::<BenefitNode>::NAME,
                FilingServiceServer::<BenefitNode>::NAME,
                CertificationServiceServer::<BenefitNode>::NAME,
            ],
            Role::Ledger(_) => vec![LedgerServiceServer::<LedgerNode>::NAME],
        }
    }
}

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Creates the call counter and duration histogram of every method of `services` under
/// `owner`, so a server's series are there from start-up (see `Metrics::start_service`).
fn start_metrics(owner: &str, services: &[&str]) {
    let pool = prost_reflect::DescriptorPool::decode(yitong_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set yitong-proto embeds decodes");
    for name in services {
        let Some(service) = pool.get_service_by_name(name) else {
            continue;
        };
        let methods: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
        yitong_telemetry::metrics().start_service(owner, name, methods.iter().map(String::as_str));
    }
}

/// Serves `role`, run by `owner`, on `listener` until `shutdown` is cancelled: a node of one
/// pool, or the clearing house's ledger. See [`serve_node`].
pub async fn serve(
    owner: Owner,
    role: Role,
    listener: TcpListener,
    security: &Security,
    shed: ShedLimits,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_node(vec![(owner, role)], listener, security, shed, shutdown).await
}

/// Serves the roles of a node on `listener` until `shutdown` is cancelled, then finishes the
/// calls in flight and returns: one role per pool the node serves (all of one service), each
/// with its own services and store, behind one listener with one health service and one
/// reflection service; every call goes to the pool it addresses ([`crate::dispatch`]). Every
/// call of a pool's services gets a server span (which continues the caller's trace) and is
/// counted in the process's metrics under its pool; every call is authenticated and checked
/// against the permission matrix as its pool's (`yitong_auth`), then shed beyond `shed`, counted
/// per pool as at a node of its own, since each pool's calls wait on its own stores
/// ([`crate::shed`]). Without a PKI the server speaks plaintext, and
/// refuses to unless it listens on a loopback address; with one it presents the certificate of
/// its first pool's node.
pub async fn serve_node(
    roles: Vec<(Owner, Role)>,
    listener: TcpListener,
    security: &Security,
    shed: ShedLimits,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let first = roles.first().expect("a node serves at least one owner").0;
    let tls = security.server_tls(first)?;
    let address = listener.local_addr().map_err(ServeError::Address)?;
    if tls.is_none() && !address.ip().is_loopback() {
        return Err(ServeError::Plaintext(address));
    }
    let names = roles[0].1.service_names();
    assert!(
        roles.iter().all(|(_, role)| role.service_names() == names),
        "a node's pools run the same service"
    );
    let (health, health_service) = tonic_health::server::health_reporter();

    // Reflection lists exactly what this server serves, so `grpcurl list` tells the truth.
    let reflection = || {
        names
            .iter()
            .copied()
            .chain([HEALTH])
            .chain(REFLECTION)
            .fold(
                tonic_reflection::server::Builder::configure(),
                |builder, name| builder.with_service_name(name),
            )
            .register_encoded_file_descriptor_set(yitong_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("descriptor sets are well formed");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("descriptor sets are well formed");

    let mut stacks: Vec<(Owner, Stack)> = Vec::new();
    for (owner, role) in roles {
        start_metrics(&owner.to_string(), &names);
        let routes = tonic::service::Routes::new(health_service.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone())
            .add_service(AuditServiceServer::new(AuditNode::new(
                owner,
                role.store().clone(),
            )));
        let routes = match role {
            Role::Identity(node) => routes.add_service(limited!(IdentityServiceServer::new(*node))),
            Role::Catalog(node) => routes.add_service(limited!(CatalogServiceServer::new(node))),
            Role::Settlement(settlement, benefit) => routes
                .add_service(limited!(SettlementServiceServer::new(settlement)))
                .add_service(limited!(FilingServiceServer::new(benefit.clone())))
                .add_service(limited!(CertificationServiceServer::new(benefit.clone())))
                .add_service(limited!(BenefitServiceServer::new(benefit))),
            Role::Ledger(node) => routes.add_service(limited!(LedgerServiceServer::new(node))),
        };
        // Outermost first: every call is traced and counted, then authenticated (so a refusal
        // costs no handler), then shed by its authenticated caller when too many are in
        // flight; what is admitted has its request body checked frame by frame, so a message
        // that does not decode is refused INVALID_ARGUMENT (and counted so) before tonic
        // reads it.
        let stack = tower::ServiceBuilder::new()
            .layer(ServerLayer::new(owner.to_string()))
            .layer(AuthLayer::new(owner, security.keyring.clone()))
            .layer(ShedLayer::new(shed))
            .layer(FrameCheckLayer)
            .service(routes.prepare());
        stacks.push((owner, Stack::new(stack)));
    }
    let dispatch = Dispatch::new(stacks, security.keyring.clone());

    let mut builder = Server::builder()
        .max_concurrent_streams(limits::STREAMS_PER_CONNECTION_MAX)
        .http2_max_header_list_size(limits::HEADER_LIST_BYTES_MAX);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    for name in &names {
        health
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }

    let shutting_down = {
        let health = health.clone();
        let names = names.clone();
        async move {
            shutdown.cancelled().await;
            // Tell load balancers first, so no new call is routed here while we drain.
            for name in names {
                health
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
        }
    };
    // Without TCP_NODELAY a reply split over several segments waits for the client's delayed
    // ACK: about 40 ms added to every larger answer.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .serve_with_incoming_shutdown(dispatch, incoming, shutting_down)
        .await?;
    Ok(())
}
