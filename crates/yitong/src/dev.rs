//! `yitong dev`: the whole network in one process, for development and HIS integration.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use yitong_auth::{Credentials, KeyFile, Keyring, Pki, Validity};
use yitong_core::{Network, Owner};
use yitong_node::shed::ShedLimits;
use yitong_node::{Bind, LocalNetwork, LocalNetworkOptions, Security, development_callers};
use yitong_rpc::{CallLimits, Caller};
use yitong_seeds::Seeds;
use yitong_seeds::load_seeds;
use yitong_store::{Location, PoolLimits};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory of the embedded SQLite databases.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Run on PostgreSQL instead (postgres://...), one schema per service and city.
    #[arg(long, env = "YITONG_DATABASE_URL", hide_env_values = true, value_parser = crate::config::secret)]
    database_url: Option<SecretString>,
    /// Directory of the seed files; network.toml there says where each node listens.
    #[arg(long, default_value_os_t = crate::default_seeds())]
    seeds: PathBuf,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`) of every node in the process.
    #[arg(long, env = "YITONG_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    metrics_listen: String,
    /// Serve TLS, with mutual TLS between the nodes, from a PKI made under the data directory
    /// on first use (data/pki; clients trust data/pki/ca.pem).
    #[arg(long)]
    tls: bool,
    /// Calls from outside (HIS, bureaus, operators) each server runs at once; beyond it calls
    /// are refused RESOURCE_EXHAUSTED. Half may start new work.
    #[arg(long, env = "YITONG_CALLS_IN_FLIGHT_MAX", default_value_t = ShedLimits::default().entry_calls_in_flight_max)]
    calls_in_flight_max: usize,
    /// Address of the staff's web console (`yitong console`); its accounts are written to
    /// data/console-staff.toml on first start.
    #[arg(long, env = "YITONG_CONSOLE_LISTEN", default_value = crate::console::DEFAULT_LISTEN)]
    console_listen: String,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let network = Network::load(&args.seeds.join("network.toml"))?;
    let seeds = load_seeds(&args.seeds)?;
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create {}", args.data.display()))?;
    let credentials_path = args.data.join("credentials.toml");
    let keys_path = args.data.join("keys.toml");
    let pki_dir = args.data.join("pki");
    // The console calls the network with API keys over loopback, so it runs without TLS only.
    let (security, console_credentials) = if args.tls {
        // Mutual TLS: every caller presents a certificate of the network's CA, which names it.
        // The servers take no API key without one, so none is written.
        let security = Security {
            keyring: yitong_auth::SharedKeyring::default(),
            pki: Some(dev_pki(&pki_dir, &network, &seeds)?),
            node_keys: std::collections::HashMap::new(),
        };
        (security, None)
    } else {
        let (credentials, added) = dev_credentials(&credentials_path, &network, &seeds)?;
        dev_key_file(&keys_path, &credentials, &added)?;
        let mut security = Security::loopback(&credentials);
        // The servers accept the keys of the key file, reread when it changes, as `yitong serve
        // --keys` does: `yitong key issue` and `yitong key revoke` work on a running network.
        security.keyring = Keyring::watch(keys_path.clone())
            .with_context(|| format!("cannot load the key file {}", keys_path.display()))?;
        (security, Some(credentials))
    };
    let location = match &args.database_url {
        Some(url) => Location::parse(url.expose_secret()),
        None => Location::Sqlite {
            dir: args.data.clone(),
        },
    };
    // Each city's first institution gets a finance office account in the console.
    let finance_offices: Vec<String> = network
        .enabled_pools()
        .filter_map(|city| seeds.institutions_of(city.code).into_iter().next())
        .map(|institution| institution.code.as_str().to_owned())
        .collect();
    let options = LocalNetworkOptions {
        network,
        location: location.clone(),
        seeds: Some(seeds),
        bind: Bind::FromNetwork,
        // Thirteen stores share one PostgreSQL server: keep each pool small.
        pool: PoolLimits {
            connections_max: 4,
            ..PoolLimits::default()
        },
        calls: CallLimits::default(),
        shed: ShedLimits::with_entry_calls(args.calls_in_flight_max),
        security,
    };
    let running = LocalNetwork::start(options)
        .await
        .context("cannot start the network")?;
    let metrics = tokio::net::TcpListener::bind(&args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", args.metrics_listen))?;
    let metrics_url = format!("http://{}/metrics", metrics.local_addr()?);
    let stop = running.shutdown_token();
    tokio::spawn(yitong_telemetry::serve_metrics(metrics, async move {
        stop.cancelled().await;
    }));

    println!(
        "Yitong dev network is up ({}).",
        match &location {
            Location::Sqlite { dir } => format!("SQLite under {}", dir.display()),
            Location::Postgres { .. } => "PostgreSQL".to_owned(),
        }
    );
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["owner", "service", "endpoint"]);
    for endpoint in running.endpoints() {
        let owner = match endpoint.owner {
            Owner::Pool(code) => {
                let city = running
                    .network()
                    .pool(code)
                    .expect("running city is in the network");
                format!("{} {} ({code})", city.name, city.name_zh)
            }
            Owner::ClearingHouse => "clearing house".to_owned(),
        };
        table.add_row([
            owner,
            endpoint.service.to_string(),
            served_url(endpoint, args.tls),
        ]);
    }
    println!("{table}");
    println!("Metrics: {metrics_url}");
    if args.tls {
        let ledger = running
            .endpoints()
            .iter()
            .find(|endpoint| endpoint.owner == Owner::ClearingHouse)
            .map(|endpoint| served_url(endpoint, true))
            .context("the network has a ledger")?;
        for line in tls_instructions(&pki_dir, &ledger) {
            println!("{line}");
        }
    } else {
        println!(
            "API keys of every HIS, bureau, node and the operator: {}",
            credentials_path.display()
        );
        println!(
            "Keys the servers accept, reread when the file changes: {} (yitong key issue|revoke --keys {})",
            keys_path.display(),
            keys_path.display()
        );
    }
    if let Some(console_credentials) = console_credentials {
        let staff = yitong_console::StaffStore::open(&location, "console")
            .await
            .context("cannot open the console's store")?;
        let staff_path = args.data.join("console-staff.toml");
        crate::console::dev_staff(&staff_path, &staff, running.network(), &finance_offices).await?;
        let listener = tokio::net::TcpListener::bind(&args.console_listen)
            .await
            .with_context(|| format!("cannot listen for the console on {}", args.console_listen))?;
        println!(
            "Console: http://{}/ (accounts and passwords: {})",
            listener.local_addr()?,
            staff_path.display()
        );
        let console = crate::console::console(
            running.network().as_ref().clone(),
            console_credentials,
            staff,
            yitong_console::DEFAULT_TRACE_URL_TEMPLATE.to_owned(),
            String::new(),
            vec![metrics_url.clone()],
        );
        let stop = running.shutdown_token();
        tokio::spawn(yitong_console::serve(console, listener, async move {
            stop.cancelled().await;
        }));
    } else {
        println!("Console: not started (it calls the network over loopback, without TLS)");
    }
    println!("Press Ctrl-C to stop.");

    crate::config::shutdown_signal().await;
    println!("Shutting down: finishing the calls in flight.");
    running.shut_down().await;
    Ok(())
}

/// An endpoint as its clients reach it: `https://` when the network serves TLS.
fn served_url(endpoint: &yitong_node::Endpoint, tls: bool) -> String {
    if tls {
        endpoint.url.replacen("http://", "https://", 1)
    } else {
        endpoint.url.clone()
    }
}

/// What a client of the TLS network needs, as lines to print: where the CA and every caller's
/// certificate are, and commands that work as printed (a test runs them).
fn tls_instructions(pki_dir: &Path, ledger: &str) -> Vec<String> {
    let pki = Pki::at(pki_dir);
    let operator: Caller = yitong_node::DEV_OPERATOR
        .parse()
        .expect("a valid caller name");
    let dir = pki_dir.display();
    vec![
        format!(
            "TLS (mutual): every client trusts {} and presents a certificate of that CA, which names the caller; {dir} holds one for every HIS, bureau, node and the operator (<caller with - for :>.pem and .key).",
            pki_dir.join("ca.pem").display()
        ),
        format!(
            "  Verify the journal as the operator: yitong journal verify --ledger {ledger} --ca {} --cert {} --key {}",
            pki_dir.join("ca.pem").display(),
            pki.cert_path(&operator).display(),
            pki.key_path(&operator).display()
        ),
        format!("  Issue one more certificate: yitong pki issue --pki {dir} operator:oncall"),
    ]
}

/// The development network's keys as their holders have them: read from `path`, with a fresh
/// key for every caller of the network and seeds that has none yet, written back (owner-only)
/// when anything was added; also the callers given a key now. The keys stay the same from one
/// start to the next, so an HIS under integration keeps its key.
fn dev_credentials(
    path: &Path,
    network: &Network,
    seeds: &Seeds,
) -> anyhow::Result<(Credentials, Vec<Caller>)> {
    let mut credentials = if path.exists() {
        crate::client::load_credentials(path)?
    } else {
        Credentials::default()
    };
    let mut added = Vec::new();
    for caller in development_callers(network, Some(seeds)) {
        if credentials.key(&caller).is_none() {
            credentials.insert(caller.clone());
            added.push(caller);
        }
    }
    if !added.is_empty() {
        std::fs::write(path, credentials.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok((credentials, added))
}

/// The server side of the development keys, the key file at `path` (hashes only, the format
/// `yitong serve --keys` reads): made from `credentials` when missing, else kept as it is,
/// with entries added only for the callers given a key at this start (`added`). A key revoked
/// from it stays revoked across restarts even though the holders' file still lists it.
fn dev_key_file(path: &Path, credentials: &Credentials, added: &[Caller]) -> anyhow::Result<()> {
    let all = credentials.key_file();
    let file = if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut file: KeyFile =
            toml::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
        if added.is_empty() {
            return Ok(());
        }
        let added: Vec<String> = added.iter().map(Caller::to_string).collect();
        file.keys.extend(
            all.keys
                .into_iter()
                .filter(|entry| added.contains(&entry.caller)),
        );
        file
    } else {
        all
    };
    std::fs::write(path, file.to_toml()).with_context(|| format!("cannot write {}", path.display()))
}

/// The development network's PKI under `dir`: made on first use, with a certificate for every
/// caller of the network and seeds (every node's valid for localhost and 127.0.0.1), since
/// every client of a TLS network presents one.
fn dev_pki(dir: &Path, network: &Network, seeds: &Seeds) -> anyhow::Result<Pki> {
    if dir.join("ca.pem").exists() {
        return Ok(Pki::at(dir));
    }
    let pki = Pki::init(dir, "Yitong development network")?;
    let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    for caller in development_callers(network, Some(seeds)) {
        let hosts: &[String] = if matches!(caller, Caller::Node(_)) {
            &hosts
        } else {
            &[]
        };
        pki.issue(
            &caller,
            hosts,
            Validity::days(yitong_auth::pki::NODE_VALIDITY_DAYS),
        )?;
    }
    Ok(pki)
}
