//! A production network: TLS on every server, mutual TLS for every caller, certificates from
//! the network's CA only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use yitong_auth::{Pki, SharedKeyring, Validity};
use yitong_core::{Network, Owner, Service};
use yitong_node::{Bind, LocalNetwork, LocalNetworkOptions, Role, Security, ServeError, serve};
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::catalog::v1::{GetPolicyRequest, ListInstitutionsRequest};
use yitong_rpc::{CallLimits, Caller, PeerAccess};
use yitong_sandbox::{JINAN, ZIBO, seeds_dir};
use yitong_store::{Location, PoolLimits, Store};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("PKI file")
}

/// A TLS client trusting `pki`'s CA, presenting `holder`'s certificate from `holders` if any.
async fn client(
    url: &str,
    pki: &Pki,
    holders: Option<(&Pki, &Caller)>,
) -> Result<CatalogServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&pki.ca_pem_path())))
        .domain_name("localhost");
    if let Some((holders, holder)) = holders {
        tls = tls.identity(Identity::from_pem(
            read(&holders.cert_path(holder)),
            read(&holders.key_path(holder)),
        ));
    }
    let channel = Endpoint::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(CatalogServiceClient::new(channel))
}

/// Whether one call as this client gets any answer from the server.
async fn answered(
    client: Result<CatalogServiceClient<tonic::transport::Channel>, tonic::transport::Error>,
) -> Result<(), String> {
    let mut client = client.map_err(|error| format!("connect: {error}"))?;
    client
        .list_institutions(ListInstitutionsRequest {
            city: ZIBO.into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

/// Proves the transport rules of a production network: with a certificate of the network's CA
/// a bureau is served, and the nodes reach each other over mutual TLS (Zibo's catalog asks
/// Jinan's); a plaintext connection, a TLS connection without a client certificate, an
/// expired certificate and a certificate of another CA are all refused; and a server without a
/// PKI refuses to listen anywhere but on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_network_speaks_only_mutual_tls() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let network = Network::load(&seeds_dir().join("network.toml")).expect("network file");
    let pki = Pki::init(dir.path().join("pki"), "test network").expect("CA");
    let year = Validity::days(365);
    let localhost = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    for owner in network
        .enabled_pools()
        .map(|city| Owner::Pool(city.code))
        .chain([Owner::ClearingHouse])
    {
        pki.issue(&Caller::Node(owner), &localhost, year)
            .expect("node certificate");
    }
    let bureau: Caller = "bureau:370300".parse().expect("caller");
    let expired: Caller = "operator:expired".parse().expect("caller");
    pki.issue(&bureau, &[], year).expect("bureau certificate");
    pki.issue(
        &expired,
        &[],
        Validity {
            from_days: -30,
            to_days: -1,
        },
    )
    .expect("expired certificate");
    let other = Pki::init(dir.path().join("other"), "another network").expect("other CA");
    other
        .issue(&bureau, &[], year)
        .expect("other CA's certificate");

    let running = LocalNetwork::start(LocalNetworkOptions {
        network,
        location: Location::Sqlite {
            dir: dir.path().join("data"),
        },
        seeds: None,
        bind: Bind::Ephemeral,
        pool: PoolLimits {
            connections_max: 2,
            ..PoolLimits::default()
        },
        calls: CallLimits::default(),
        shed: yitong_node::shed::ShedLimits::default(),
        security: Security {
            keyring: SharedKeyring::default(),
            pki: Some(pki.clone()),
            node_keys: HashMap::new(),
        },
    })
    .await
    .expect("network starts on TLS");
    let zibo: Owner = Owner::Pool(ZIBO.parse().expect("region code"));
    let url = running
        .endpoints()
        .iter()
        .find(|endpoint| endpoint.owner == zibo && endpoint.service == Service::Catalog)
        .expect("Zibo's catalog")
        .url
        .clone();
    assert!(url.starts_with("https://"), "{url}");

    // A bureau with the network's certificate is served.
    answered(client(&url, &pki, Some((&pki, &bureau))).await)
        .await
        .expect("served over mutual TLS");
    // Zibo's catalog asks Jinan's for Jinan's policy, node to node with their certificates: Jinan
    // answers (it holds no policy, the stores are empty), so the hop was made and authorized.
    let status = client(&url, &pki, Some((&pki, &bureau)))
        .await
        .expect("connects")
        .get_policy(GetPolicyRequest {
            insured_city: JINAN.into(),
            date: "2026-11-01".into(),
            ..Default::default()
        })
        .await
        .expect_err("no policy in an empty store");
    assert!(
        !matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied
                | tonic::Code::Internal
        ),
        "the node-to-node call failed: {status:?}"
    );

    // Plaintext to a TLS port.
    let plaintext = Endpoint::from_shared(url.replacen("https://", "http://", 1))
        .expect("url")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map(CatalogServiceClient::new);
    assert!(answered(plaintext).await.is_err(), "plaintext was served");
    // TLS without a client certificate, with an expired one, with another CA's.
    assert!(
        answered(client(&url, &pki, None).await).await.is_err(),
        "a caller without a certificate was served"
    );
    assert!(
        answered(client(&url, &pki, Some((&pki, &expired))).await)
            .await
            .is_err(),
        "an expired certificate was accepted"
    );
    assert!(
        answered(client(&url, &pki, Some((&other, &bureau))).await)
            .await
            .is_err(),
        "another CA's certificate was accepted"
    );
    running.shut_down().await;

    // Without a PKI, a server refuses any address but loopback.
    let store = Store::open(
        &Location::Sqlite {
            dir: dir.path().join("alone"),
        },
        Service::Catalog,
        zibo,
        PoolLimits::default(),
    )
    .await
    .expect("store");
    store.migrate().await.expect("migrates");
    let network = Arc::new(Network::load(&seeds_dir().join("network.toml")).expect("network file"));
    let node = yitong_catalog::CatalogNode::new(
        ZIBO.parse().expect("region code"),
        store,
        network,
        &PeerAccess::default(),
    )
    .expect("catalog node");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("listens");
    let security = Security {
        keyring: SharedKeyring::default(),
        pki: None,
        node_keys: HashMap::new(),
    };
    let refused = serve(
        zibo,
        Role::Catalog(node),
        listener,
        &security,
        yitong_node::shed::ShedLimits::default(),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(refused, Err(ServeError::Plaintext(_))),
        "{refused:?}"
    );
}
