//! `yitong migrate` and `yitong seed`: preparing the stores of a network ahead of `serve`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use yitong_catalog::{seed_diseases, seed_institutions, seed_items, seed_policies};
use yitong_core::{Network, Owner, Service};
use yitong_identity::{PiiKeys, seed_persons};
use yitong_seeds::load_seeds;
use yitong_store::{Location, PoolLimits, Store};

#[derive(Debug, Args)]
pub struct StoresArgs {
    /// postgres://... or a directory of embedded SQLite databases.
    #[arg(long, env = "YITONG_DATABASE_URL", hide_env_values = true, default_value = "data", value_parser = crate::config::secret)]
    database_url: SecretString,
    /// Directory of the seed files (network.toml names the enabled cities).
    #[arg(long, default_value_os_t = crate::default_seeds())]
    seeds: PathBuf,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    stores: StoresArgs,
    /// Seal citizen IDs with the well-known development keys that `yitong dev` uses, instead
    /// of YITONG_PII_SEAL_KEY and YITONG_PII_HASH_KEY. Never for real data.
    #[arg(long)]
    dev_keys: bool,
    #[arg(long, env = "YITONG_PII_SEAL_KEY", hide_env_values = true, value_parser = crate::config::secret)]
    pii_seal_key: Option<SecretString>,
    #[arg(long, env = "YITONG_PII_HASH_KEY", hide_env_values = true, value_parser = crate::config::secret)]
    pii_hash_key: Option<SecretString>,
}

/// Every (owner, service) pair the enabled network runs.
fn stores_of(network: &Network) -> Vec<(Owner, Service)> {
    network
        .enabled_pools()
        .flat_map(|city| {
            [Service::Identity, Service::Catalog, Service::Settlement]
                .map(|service| (Owner::Pool(city.code), service))
        })
        .chain([(Owner::ClearingHouse, Service::Ledger)])
        .collect()
}

pub async fn migrate(args: StoresArgs) -> anyhow::Result<()> {
    let network = Network::load(&args.seeds.join("network.toml"))?;
    let location = Location::parse(args.database_url.expose_secret());
    for (owner, service) in stores_of(&network) {
        let store = Store::open(&location, service, owner, PoolLimits::default()).await?;
        store.migrate().await?;
        println!("migrated {}", store.name());
        store.close().await;
    }
    Ok(())
}

pub async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let network = Network::load(&args.stores.seeds.join("network.toml"))?;
    let seeds = load_seeds(&args.stores.seeds)?;
    let location = Location::parse(args.stores.database_url.expose_secret());
    for (owner, service) in stores_of(&network) {
        let Owner::Pool(city) = owner else { continue };
        let store = Store::open(&location, service, owner, PoolLimits::default()).await?;
        store.migrate().await?;
        let loaded = match service {
            Service::Identity => {
                let keys = if args.dev_keys {
                    PiiKeys::for_development(city)
                } else {
                    let seal = args
                        .pii_seal_key
                        .as_ref()
                        .context("YITONG_PII_SEAL_KEY is required (or --dev-keys)")?;
                    let hash = args
                        .pii_hash_key
                        .as_ref()
                        .context("YITONG_PII_HASH_KEY is required (or --dev-keys)")?;
                    PiiKeys::from_base64(seal.expose_secret(), hash.expose_secret())
                        .context("malformed citizen-ID key")?
                };
                seed_persons(&store, &keys, city, &seeds.persons_of(city)).await?
            }
            Service::Catalog => {
                seed_institutions(&store, city, &seeds.institutions_of(city)).await?
                    + seed_items(&store, city, &seeds.items_of(city)).await?
                    + seed_policies(&store, city, &seeds.policies_of(city)).await?
                    + seed_diseases(&store, &seeds.diseases).await?
            }
            Service::Settlement => {
                yitong_settlement::benefit::seed_filing_policies(
                    &store,
                    &seeds.filing_policies_of(city),
                )
                .await?
                    + yitong_settlement::benefit::seed_disease_policies(
                        &store,
                        &seeds.disease_policies_of(city),
                    )
                    .await?
            }
            Service::Ledger => 0,
        };
        println!("{}: {loaded} rows seeded", store.name());
        store.close().await;
    }
    Ok(())
}
