//! The `yitong` command line: `dev`, `serve`, `migrate` and `seed`, and the bureaus' `reconcile`,
//! `clearing` and `journal` against a running network.

mod bench;
mod clearing;
mod client;
mod config;
mod console;
#[cfg(test)]
mod debug_output;
mod dev;
mod generate;
mod journal;
mod keygen;
mod logging;
mod output;
mod pki;
mod reconcile;
mod serve;
mod settlement;
mod sink;
mod stores;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use yitong_telemetry::TraceConfig;

/// Yitong (一通): direct cross-city settlement of outpatient claims in the Jinan capital
/// economic circle.
#[derive(Debug, Parser)]
#[command(name = "yitong", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the four pilot cities and the clearing house in one process, on embedded SQLite
    /// under ./data (or PostgreSQL with --database-url). Seeds empty stores on first start.
    Dev(dev::DevArgs),
    /// Run one service of one pool's node (every pool the network file puts on it), or the
    /// clearing house's ledger, as its own process.
    Serve(serve::ServeArgs),
    /// Print fresh secrets for one city's identity node, and the public e-voucher key for the
    /// network file.
    Keygen(keygen::KeygenArgs),
    /// Apply pending migrations to the stores of the enabled cities and the clearing house.
    Migrate(stores::StoresArgs),
    /// Load the seed files into stores that are still empty, or (`seed generate`) write them.
    Seed(SeedCommand),
    /// Reconcile a day's totals or settlement rows against the clearing house's ledger; exits 1
    /// when breaks are found.
    Reconcile(reconcile::ReconcileCommand),
    /// The monthly clearing: extract, confirm, roll back, apply, cancel, close, statements.
    Clearing(clearing::ClearingCommand),
    /// Check the ledger's journal; exits 1 when an entry was altered.
    Journal(journal::JournalCommand),
    /// Load a running network as many HIS clients settling outpatient visits, report visits
    /// per second and latency per RPC, then check the ledger against the settlements made;
    /// exits 1 when the check finds a disagreement.
    Bench(Box<bench::BenchArgs>),
    /// Look at one settlement as its treatment city holds it, with its trace.
    Settlement(settlement::SettlementCommand),
    /// Receive OTLP traces and count them, keeping nothing: a stand-in collector for
    /// measuring what tracing costs.
    OtlpSink(sink::SinkArgs),
    /// The network's CA and certificates: `pki init`, `pki issue`.
    Pki(pki::PkiCommand),
    /// API keys of HIS systems, bureaus and operators: `key issue`, `key revoke`.
    Key(pki::KeyCommand),
    /// The staff's web console (reconciliation, clearing, statements, search, exports) against
    /// a running network, or `console user add` to give a staff member an account.
    Console(console::ConsoleCommand),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SeedCommand {
    #[command(subcommand)]
    action: Option<SeedAction>,
    #[command(flatten)]
    load: stores::SeedArgs,
}

#[derive(Debug, Subcommand)]
enum SeedAction {
    /// Write the seed files (persons, institutions, catalog items, policies, filing policies)
    /// for every city of the network file, from a fixed random seed: the same seed and network
    /// file always give the same files.
    Generate(generate::GenerateArgs),
}

/// Runs the command line and turns the outcome into an exit code: 0 when clean, 1 when a bureau
/// command found breaks or an altered journal, 2 on any error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let outcome = runtime.block_on(async move {
        // Only the commands that serve export traces; the others are clients and log only.
        let traces = match &cli.command {
            Command::Dev(_) => TraceConfig::from_env("yitong-dev", None),
            Command::Serve(args) => {
                let (name, owner) = args.trace_identity();
                TraceConfig::from_env(&name, Some(owner))
            }
            _ => None,
        };
        let telemetry = logging::init(traces);
        let outcome = match cli.command {
            Command::Dev(args) => dev::run(args).await.map(clean),
            Command::Serve(args) => serve::run(args).await.map(clean),
            Command::Keygen(args) => keygen::run(args).map(clean),
            Command::Migrate(args) => stores::migrate(args).await.map(clean),
            Command::Seed(SeedCommand {
                action: Some(SeedAction::Generate(args)),
                ..
            }) => generate::run(args).map(clean),
            Command::Seed(SeedCommand { load, .. }) => stores::seed(load).await.map(clean),
            Command::Reconcile(command) => reconcile::run(command).await,
            Command::Clearing(command) => clearing::run(command).await,
            Command::Journal(command) => journal::run(command).await,
            Command::Bench(args) => bench::run(*args).await,
            Command::Settlement(command) => settlement::run(command).await,
            Command::OtlpSink(args) => sink::run(args).await.map(clean),
            Command::Pki(command) => pki::run(command).map(clean),
            Command::Key(command) => pki::run_key(command).map(clean),
            Command::Console(command) => console::run(command).await.map(clean),
        };
        telemetry.shut_down().await;
        outcome
    });
    match outcome {
        Ok(output::Outcome::Clean) => ExitCode::SUCCESS,
        Ok(output::Outcome::Findings) => ExitCode::from(1),
        Err(error) => {
            eprintln!("yitong: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The commands that report nothing end clean when they succeed.
fn clean((): ()) -> output::Outcome {
    output::Outcome::Clean
}

/// Default location of the seed files, relative to the working directory.
fn default_seeds() -> PathBuf {
    PathBuf::from("seeds")
}
