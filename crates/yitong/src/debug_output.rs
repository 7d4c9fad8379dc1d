//! The test that every configuration type of the process prints no secret with `{:?}`: the
//! command line of every command that takes a key or a database URL, `yitong serve`'s merged
//! settings, the development credentials, the servers' security and network options, and a
//! node's access to its peers, with and without TLS. The identity node's own key holders
//! (`PiiKeys`, `VoucherSigner`) have no `Debug` at all, so they cannot print.

use clap::Parser;
use secrecy::SecretString;
use yitong_auth::{Credentials, Pki, Validity};
use yitong_core::{Network, Owner};
use yitong_node::shed::ShedLimits;
use yitong_node::{Bind, LocalNetworkOptions, Security, development_callers};
use yitong_rpc::{CallLimits, Caller};
use yitong_store::{Location, PoolLimits};

use crate::Cli;
use crate::client::ClientArgs;
use crate::config::Settings;

const DB_PASSWORD: &str = "Pg-Password-8841";
const SEAL: &str = "SealKeySecret0000000000000000000000000000000=";
const HASH: &str = "HashKeySecret000000000000000000000000000000=";
const SIGNING: &str = "SigningKeySecret00000000000000000000000000=";
const NODE_KEY: &str =
    "yt1.00112233aabbccdd.5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
const API_KEY: &str =
    "yt1.99887766aabbccdd.a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a71a";

fn database_url() -> String {
    format!("postgres://yitong:{DB_PASSWORD}@db.example:5432/yitong")
}

/// The parts of a secret that must never print: the whole text, and for an API key its
/// secret half.
fn forbidden(secret: &str) -> Vec<String> {
    let mut parts = vec![secret.to_owned()];
    if let Some(half) = secret.rsplit('.').next().filter(|half| half.len() == 64) {
        parts.push(half.to_owned());
    }
    parts
}

fn assert_no_secret(what: &str, printed: &str, secrets: &[String]) {
    for secret in secrets.iter().flat_map(|secret| forbidden(secret)) {
        assert!(
            !printed.contains(&secret),
            "{what} prints a secret ({secret}) in Debug output: {printed}"
        );
    }
    // A private key, as PEM text or as the bytes of its PEM ("-----").
    assert!(!printed.contains("PRIVATE KEY"), "{what}: {printed}");
    assert!(!printed.contains("45, 45, 45, 45, 45"), "{what}: {printed}");
}

// Every configuration type formatted with {:?}, holding every kind of secret it can hold.
#[tokio::test]
async fn no_configuration_type_prints_a_secret() {
    let url = database_url();
    let mut secrets: Vec<String> = [DB_PASSWORD, SEAL, HASH, SIGNING, NODE_KEY, API_KEY]
        .map(str::to_owned)
        .to_vec();
    let serve_flags = [
        "--database-url",
        &url,
        "--pii-seal-key",
        SEAL,
        "--pii-hash-key",
        HASH,
        "--e-voucher-signing-key",
        SIGNING,
        "--node-key",
        NODE_KEY,
    ];

    // The command lines, each as clap parsed it.
    let command_lines: Vec<Vec<&str>> = vec![
        [
            &["yitong", "serve", "identity", "--city", "370100"][..],
            &serve_flags[..],
        ]
        .concat(),
        vec!["yitong", "dev", "--database-url", &url],
        vec!["yitong", "migrate", "--database-url", &url],
        vec![
            "yitong",
            "seed",
            "--database-url",
            &url,
            "--pii-seal-key",
            SEAL,
            "--pii-hash-key",
            HASH,
        ],
        vec!["yitong", "journal", "verify", "--api-key", API_KEY],
    ];
    for line in &command_lines {
        let cli = Cli::try_parse_from(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
        assert_no_secret(&format!("{line:?}"), &format!("{cli:?}"), &secrets);
    }

    // yitong serve's settings, merged from the flags.
    let cli = Cli::try_parse_from(&command_lines[0]).unwrap();
    let crate::Command::Serve(serve) = cli.command else {
        unreachable!("a serve command line")
    };
    let settings = Settings::load(None, &serve.flags).unwrap();
    assert!(settings.node_key.is_some() && settings.database_url.is_some());
    assert_no_secret("Settings", &format!("{settings:?}"), &secrets);

    let client = ClientArgs {
        api_key: Some(SecretString::from(API_KEY)),
        ca: None,
        cert: None,
        key: None,
    };
    assert_no_secret("ClientArgs", &format!("{client:?}"), &secrets);

    // The development credentials, and every server's security built from them.
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds");
    let network = Network::load(&seeds.join("network.toml")).unwrap();
    let credentials = Credentials::generate(development_callers(&network, None));
    secrets.extend(credentials.callers().map(|caller| {
        credentials
            .key(&caller)
            .expect("a key per caller")
            .to_owned()
    }));
    assert_no_secret("Credentials", &format!("{credentials:?}"), &secrets);
    let security = Security::loopback(&credentials);
    assert_no_secret("Security", &format!("{security:?}"), &secrets);
    let jinan = Owner::Pool("370100".parse().unwrap());
    let access = security.peer_access(jinan, CallLimits::default()).unwrap();
    assert_no_secret("PeerAccess", &format!("{access:?}"), &secrets);

    let options = LocalNetworkOptions {
        network: network.clone(),
        location: Location::parse(&url),
        seeds: None,
        bind: Bind::Ephemeral,
        pool: PoolLimits::default(),
        calls: CallLimits::default(),
        shed: ShedLimits::default(),
        security: security.clone(),
    };
    let printed = format!("{options:?}");
    assert!(
        printed.contains("db.example"),
        "the URL still shows where: {printed}"
    );
    assert_no_secret("LocalNetworkOptions", &printed, &secrets);

    // On TLS: a node's peer access holds its certificate's private key.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(dir.path(), "test network").unwrap();
    let node = Caller::Node(jinan);
    pki.issue(&node, &["localhost".to_owned()], Validity::days(2))
        .unwrap();
    let pem = std::fs::read_to_string(pki.key_path(&node)).unwrap();
    secrets.extend(
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::to_owned),
    );
    let tls = Security {
        pki: Some(pki),
        ..security
    };
    assert_no_secret("Security (TLS)", &format!("{tls:?}"), &secrets);
    let access = tls.peer_access(jinan, CallLimits::default()).unwrap();
    assert_no_secret("PeerAccess (TLS)", &format!("{access:?}"), &secrets);
}
