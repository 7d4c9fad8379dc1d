//! `yitong console`: the staff's web console against a running network, and `yitong console
//! user add` to give a staff member an account.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use yitong_auth::Credentials;
use yitong_console::{Console, NetworkConnect, StaffStore};
use yitong_core::Network;
use yitong_rpc::Caller;
use yitong_store::Location;

/// Where `yitong console` listens unless told otherwise, and where `yitong dev` serves it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7800";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConsoleCommand {
    #[command(subcommand)]
    action: Option<ConsoleAction>,
    #[command(flatten)]
    serve: ServeConsoleArgs,
}

#[derive(Debug, Subcommand)]
enum ConsoleAction {
    /// Staff accounts: `user add`.
    User(UserCommand),
}

#[derive(Debug, Args)]
struct UserCommand {
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add a staff account. The password is read from standard input (one line), or from
    /// YITONG_CONSOLE_PASSWORD; it is stored only as its Argon2id hash.
    Add(UserAddArgs),
}

/// Where the console keeps its staff accounts.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Directory of the console's SQLite file (<data>/console/console.db).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Keep the accounts on PostgreSQL instead (postgres://...), schema `console`.
    #[arg(long, env = "YITONG_DATABASE_URL", hide_env_values = true, value_parser = crate::config::secret)]
    database_url: Option<SecretString>,
}

impl StoreArgs {
    fn location(&self) -> Location {
        match &self.database_url {
            Some(url) => Location::parse(url.expose_secret()),
            None => Location::Sqlite {
                dir: self.data.clone(),
            },
        }
    }
}

#[derive(Debug, Args)]
struct UserAddArgs {
    /// The user name (a-z, 0-9, '.', '_', '-'; at most 32): also the operator id the services
    /// record with each change the staff member makes.
    username: String,
    /// The caller of the services the account acts as: bureau:<city>, bureau:clearing,
    /// institution:<code> (a finance office) or operator:<name>.
    #[arg(long)]
    acts_as: String,
    /// The name shown in the console.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
struct ServeConsoleArgs {
    /// Address to listen on.
    #[arg(long, env = "YITONG_CONSOLE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// The network file: where each service listens.
    #[arg(long, default_value = "seeds/network.toml")]
    network: PathBuf,
    /// The keys the console calls with, one per caller its staff act as (what `yitong dev`
    /// writes to data/credentials.toml).
    #[arg(
        long,
        env = "YITONG_CONSOLE_CREDENTIALS",
        default_value = "data/credentials.toml"
    )]
    credentials: PathBuf,
    /// The trace viewer's link for a trace id.
    #[arg(long, env = "YITONG_TRACE_URL_TEMPLATE", default_value = yitong_console::DEFAULT_TRACE_URL_TEMPLATE)]
    trace_url_template: String,
    /// Grafana's address, linked from the operations page.
    #[arg(long, env = "YITONG_GRAFANA_URL", default_value = "")]
    grafana_url: String,
    /// A node's Prometheus endpoint (http://host:port/metrics), scraped by the operations page
    /// for call rates; repeat it for every process of the network.
    #[arg(long = "metrics-url")]
    metrics_urls: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(command: ConsoleCommand) -> anyhow::Result<()> {
    match command.action {
        Some(ConsoleAction::User(UserCommand {
            action: UserAction::Add(args),
        })) => add_user(args).await,
        None => serve(command.serve).await,
    }
}

async fn add_user(args: UserAddArgs) -> anyhow::Result<()> {
    let acts_as: Caller = args
        .acts_as
        .parse()
        .map_err(|_| anyhow::anyhow!("--acts-as {} is not a caller", args.acts_as))?;
    let password = match std::env::var("YITONG_CONSOLE_PASSWORD") {
        Ok(password) if !password.is_empty() => password,
        _ => {
            let mut line = String::new();
            std::io::stdin()
                .take(1_024)
                .read_to_string(&mut line)
                .context("cannot read the password from standard input")?;
            line.lines().next().unwrap_or_default().to_owned()
        }
    };
    let store = StaffStore::open(&args.store.location(), "console").await?;
    let name = args.name.unwrap_or_else(|| args.username.clone());
    store
        .add(&args.username, &name, &password, &acts_as)
        .await?;
    store.close().await;
    println!("added {} acting as {acts_as}", args.username);
    Ok(())
}

async fn serve(args: ServeConsoleArgs) -> anyhow::Result<()> {
    let network = Network::load(&args.network)
        .with_context(|| format!("cannot read {}", args.network.display()))?;
    let credentials = crate::client::load_credentials(&args.credentials)?;
    let staff = StaffStore::open(&args.store.location(), "console").await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let console = console(
        network,
        credentials,
        staff,
        args.trace_url_template,
        args.grafana_url,
        args.metrics_urls,
    );
    println!("Console: http://{}/", listener.local_addr()?);
    yitong_console::serve(console, listener, crate::config::shutdown_signal()).await?;
    Ok(())
}

/// The console over `network`, calling with `credentials`.
pub fn console(
    network: Network,
    credentials: Credentials,
    staff: StaffStore,
    trace_url_template: String,
    grafana_url: String,
    metrics_urls: Vec<String>,
) -> Arc<Console> {
    Arc::new(Console {
        connect: Arc::new(NetworkConnect::new(network.clone(), credentials)),
        network,
        staff,
        sessions: Default::default(),
        sign_in: Default::default(),
        trace_url_template,
        grafana_url,
        metrics_urls,
        scrapes: Default::default(),
    })
}

/// `yitong dev`'s staff: on first start one account per bureau, the clearing house, an
/// operator and the finance office of each city's first institution, with random passwords
/// written (owner-only) to `path`; kept from one start to the next.
pub async fn dev_staff(
    path: &Path,
    store: &StaffStore,
    network: &Network,
    institutions: &[String],
) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut accounts: Vec<(String, Caller)> = network
        .enabled_pools()
        .map(|city| {
            (
                format!("bureau-{}", city.code),
                Caller::Bureau(yitong_core::Owner::Pool(city.code)),
            )
        })
        .collect();
    accounts.push((
        "clearing".to_owned(),
        Caller::Bureau(yitong_core::Owner::ClearingHouse),
    ));
    accounts.push((
        "operator".to_owned(),
        "operator:dev"
            .parse()
            .map_err(|_| anyhow::anyhow!("operator:dev"))?,
    ));
    for code in institutions {
        let caller: Caller = format!("institution:{code}")
            .parse()
            .map_err(|_| anyhow::anyhow!("bad institution {code}"))?;
        accounts.push((format!("finance-{}", code.to_lowercase()), caller));
    }
    let mut file = String::from(
        "# yitong dev's console accounts: user name = password (sign in at the console's address)\n",
    );
    for (username, caller) in accounts {
        let password = yitong_console::session::token();
        match store.add(&username, &username, &password, &caller).await {
            Ok(()) => file.push_str(&format!("\"{username}\" = \"{password}\" # {caller}\n")),
            Err(yitong_console::staff::StaffError::Exists(_)) => file.push_str(&format!(
                "# {username} existed already; its password is unchanged\n"
            )),
            Err(error) => return Err(error.into()),
        }
    }
    std::fs::write(path, file).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
