//! `yitong dev`: the whole network in one process, for development and HIS integration.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use yitong_core::{CallLimits, Network, Owner};
use yitong_node::{Bind, LocalNetwork, LocalNetworkOptions};
use yitong_seeds::load_seeds;
use yitong_store::{Location, PoolLimits};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory of the embedded SQLite databases.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Run on PostgreSQL instead (postgres://...), one schema per service and city.
    #[arg(long, env = "YITONG_DATABASE_URL")]
    database_url: Option<String>,
    /// Directory of the seed files; network.toml there says where each node listens.
    #[arg(long, default_value_os_t = crate::default_seeds())]
    seeds: PathBuf,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`) of every node in the process.
    #[arg(long, env = "YITONG_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    metrics_listen: String,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let network = Network::load(&args.seeds.join("network.toml"))?;
    let seeds = load_seeds(&args.seeds)?;
    let location = match &args.database_url {
        Some(url) => Location::parse(url),
        None => Location::Sqlite {
            dir: args.data.clone(),
        },
    };
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
        match location {
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
            Owner::City(code) => {
                let city = running
                    .network()
                    .city(code)
                    .expect("running city is in the network");
                format!("{} {} ({code})", city.name, city.name_zh)
            }
            Owner::ClearingHouse => "clearing house".to_owned(),
        };
        table.add_row([owner, endpoint.service.to_string(), endpoint.url.clone()]);
    }
    println!("{table}");
    println!("Metrics: {metrics_url}");
    println!("Press Ctrl-C to stop.");

    crate::config::shutdown_signal().await;
    println!("Shutting down: finishing the calls in flight.");
    running.shut_down().await;
    Ok(())
}
