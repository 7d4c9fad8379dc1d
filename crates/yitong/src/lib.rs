//! The `yitong` command line: `dev`, `serve`, `migrate` and `seed`.

mod config;
mod dev;
mod generate;
mod keygen;
mod logging;
mod serve;
mod stores;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Run one service of one city (or the clearing house's ledger) as its own process.
    Serve(serve::ServeArgs),
    /// Print fresh secrets for one city's identity node, and the public e-voucher key for the
    /// network file.
    Keygen(keygen::KeygenArgs),
    /// Apply pending migrations to the stores of the enabled cities and the clearing house.
    Migrate(stores::StoresArgs),
    /// Load the seed files into stores that are still empty, or (`seed generate`) write them.
    Seed(SeedCommand),
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
    /// Write the seed files (persons, catalog items, policies) from a fixed random seed: the
    /// same seed always gives the same files.
    Generate(generate::GenerateArgs),
}

/// Runs the command line and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Keygen(args) => keygen::run(args),
            Command::Migrate(args) => stores::migrate(args).await,
            Command::Seed(SeedCommand {
                action: Some(SeedAction::Generate(args)),
                ..
            }) => generate::run(args),
            Command::Seed(SeedCommand { load, .. }) => stores::seed(load).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("yitong: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Default location of the seed files, relative to the working directory.
fn default_seeds() -> PathBuf {
    PathBuf::from("seeds")
}
