//! `yitong pki` and `yitong key`: the network's certificates and API keys.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use yitong_auth::pki::{CA_VALIDITY_DAYS, NODE_VALIDITY_DAYS};
use yitong_auth::{ApiKey, KeyFile, Pki, Validity};
use yitong_core::{Network, Owner};
use yitong_rpc::Caller;

#[derive(Debug, Args)]
pub struct PkiCommand {
    #[command(subcommand)]
    action: PkiAction,
}

#[derive(Debug, Subcommand)]
enum PkiAction {
    /// Make the network's CA and a certificate for every node of the network file (valid for
    /// the hosts of its endpoints, localhost and 127.0.0.1).
    Init {
        /// The network file.
        #[arg(long, default_value = "seeds/network.toml")]
        network: PathBuf,
        /// Folder to write the CA and certificates to; must not hold a CA yet. The default is
        /// where `yitong dev --tls` keeps its PKI.
        #[arg(long, default_value = "data/pki")]
        out: PathBuf,
    },
    /// Issue one certificate from the network's CA: a node's renewal, or a certificate for an
    /// HIS, a bureau or an operator that authenticates by certificate instead of a key.
    Issue {
        /// The PKI folder holding ca.pem and ca.key (by default `yitong dev --tls`'s).
        #[arg(long, default_value = "data/pki")]
        pki: PathBuf,
        /// Who the certificate names: institution:<code>, bureau:<city>, node:<city|clearing>,
        /// operator:<name>.
        caller: String,
        /// A host name or IP address the certificate is valid for as a server (repeatable).
        #[arg(long)]
        host: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = NODE_VALIDITY_DAYS)]
        days: i64,
    },
}

pub fn run(command: PkiCommand) -> anyhow::Result<()> {
    match command.action {
        PkiAction::Init { network, out } => {
            let network = Network::load(&network)?;
            let pki = Pki::init(&out, &network.clearing_house.name)?;
            for city in network.enabled_pools() {
                let hosts = hosts_of([&city.identity, &city.catalog, &city.settlement]);
                pki.issue(
                    &Caller::Node(Owner::Pool(city.code)),
                    &hosts,
                    Validity::days(NODE_VALIDITY_DAYS),
                )?;
            }
            pki.issue(
                &Caller::Node(Owner::ClearingHouse),
                &hosts_of([&network.clearing_house.ledger]),
                Validity::days(NODE_VALIDITY_DAYS),
            )?;
            println!(
                "CA (valid {CA_VALIDITY_DAYS} days) and node certificates written to {}; keep ca.key offline",
                out.display()
            );
        }
        PkiAction::Issue {
            pki,
            caller,
            host,
            days,
        } => {
            let caller: Caller = caller.parse()?;
            if days <= 0 {
                bail!("--days must be above zero");
            }
            let pki = Pki::at(pki);
            pki.issue(&caller, &host, Validity::days(days))?;
            println!("{}", pki.cert_path(&caller).display());
        }
    }
    Ok(())
}

/// The hosts of `endpoints` ("http://10.0.0.5:7111" -> "10.0.0.5"), with localhost and
/// 127.0.0.1.
fn hosts_of<'a>(endpoints: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for endpoint in endpoints {
        let rest = endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let host = rest.rsplit_once(':').map_or(rest, |(host, _)| host);
        if !hosts.iter().any(|known| known == host) {
            hosts.push(host.to_owned());
        }
    }
    hosts
}

#[derive(Debug, Args)]
pub struct KeyCommand {
    #[command(subcommand)]
    action: KeyAction,
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// Issue an API key: its hash goes into the key file, the key itself is printed once and
    /// kept nowhere. Servers reading the file accept it within seconds. Issuing a second key
    /// for the same caller and revoking the first rotates it.
    Issue {
        /// The key file the servers read (by default `yitong dev`'s).
        #[arg(long, default_value = "data/keys.toml")]
        keys: PathBuf,
        /// Who the key names: institution:<code>, bureau:<city|clearing>, operator:<name>, or
        /// node:<city> on a loopback network.
        caller: String,
    },
    /// Revoke an API key by its id (the part after "yt1.").
    Revoke {
        /// The key file the servers read (by default `yitong dev`'s).
        #[arg(long, default_value = "data/keys.toml")]
        keys: PathBuf,
        id: String,
    },
}

fn read_key_file(path: &std::path::Path) -> anyhow::Result<KeyFile> {
    if !path.exists() {
        return Ok(KeyFile::default());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: KeyFile =
        toml::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
    // Refuse to edit a file the servers would refuse.
    yitong_auth::Keyring::from_file(&file)?;
    Ok(file)
}

fn write_key_file(path: &std::path::Path, file: &KeyFile) -> anyhow::Result<()> {
    // Written whole to a neighbour and renamed, so a server never reads half a file.
    let partial = path.with_extension("toml.partial");
    std::fs::write(&partial, file.to_toml())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run_key(command: KeyCommand) -> anyhow::Result<()> {
    match command.action {
        KeyAction::Issue { keys, caller } => {
            let caller: Caller = caller.parse()?;
            let mut file = read_key_file(&keys)?;
            let key = ApiKey::generate();
            file.keys.push(key.entry(&caller));
            write_key_file(&keys, &file)?;
            eprintln!("issued key {} for {caller}; it is shown once:", key.id());
            println!("{}", key.expose());
        }
        KeyAction::Revoke { keys, id } => {
            let mut file = read_key_file(&keys)?;
            let before = file.keys.len();
            file.keys.retain(|entry| entry.id != id);
            if file.keys.len() == before {
                bail!("{} holds no key {id}", keys.display());
            }
            write_key_file(&keys, &file)?;
            eprintln!("revoked key {id}");
        }
    }
    Ok(())
}
