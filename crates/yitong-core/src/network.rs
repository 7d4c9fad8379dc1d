//! The network: which pools take part, the cities that host them, where each pool's node
//! listens, and the clearing house.
//!
//! Nodes find each other only through this file (`seeds/network.toml` for `yitong dev`), never
//! through hard-coded ports. Enabling a city or a pool is a change here and in the seeds, never
//! in code.
//!
//! The file lists pools (`[[pool]]`: its admdvs code, names, the city that hosts it, its node's
//! endpoints). A file written before pools, one `[[city]]` per city, still reads: each city is
//! its own pool, with the city's code. The two may be mixed.
//!
//! Pools of one city that list the same three endpoints are served by one node: one process
//! (one listener per service) holding each pool's stores and services, which dispatches every
//! call to the pool its `yitong-pool` metadata names (the national envelope's region code).

use std::path::Path;

use serde::Deserialize;

use crate::{Amount, CityCode, PoolCode, Service};

/// The whole network as every node sees it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "NetworkFile")]
pub struct Network {
    pub clearing_house: ClearingHouse,
    /// Every pool of the network, enabled or not, in file order (`[[city]]` entries first).
    pub pools: Vec<Pool>,
}

/// The file as written: pools, and the one-pool cities of files written before pools.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    clearing_house: ClearingHouse,
    #[serde(default, rename = "city")]
    cities: Vec<CityEntry>,
    #[serde(default, rename = "pool")]
    pools: Vec<Pool>,
}

impl TryFrom<NetworkFile> for Network {
    type Error = String;

    fn try_from(file: NetworkFile) -> Result<Self, String> {
        let pools = file
            .cities
            .into_iter()
            .map(Pool::from)
            .chain(file.pools)
            .collect();
        Ok(Network {
            clearing_house: file.clearing_house,
            pools,
        })
    }
}

/// The provincial platform that runs the shared ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearingHouse {
    pub name: String,
    /// Endpoint of the ledger service, "http://host:port".
    pub ledger: String,
}

/// One pooling region (统筹区) of the network and the node that serves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The pool's admdvs code: the prefix of its cards, persons and institutions, the key of
    /// its catalog, policy and ledger accounts.
    pub code: PoolCode,
    /// English name, used in logs and the command line ("Zibo", "Shengli Oilfield").
    pub name: String,
    /// Chinese name, used in statements and institutions' names ("淄博", "胜利油田").
    pub name_zh: String,
    /// The city that hosts the pool; a city's own pool has the city's code. What is grouped by
    /// city (figures per city, the metrics' `city` label) goes by it; nothing that insures or
    /// pays does.
    pub city: CityCode,
    /// Whether the pool settles cross-pool claims now. A defined but disabled pool is known
    /// (its codes are recognised) but refused as a treatment or insured pool.
    pub enabled: bool,
    /// Endpoints of the pool's services, "http://host:port".
    pub identity: String,
    pub catalog: String,
    pub settlement: String,
    /// Base64 of the pool's Ed25519 public key, with which every pool verifies the e-vouchers
    /// (scan codes) this pool signs.
    pub e_voucher_key: String,
    /// Low-balance threshold of the pool's prepaid fund at the clearing house, a yuan string in
    /// the file ("500000.00"), parsed when the file is loaded. When the fund's available amount
    /// falls below it the ledger flags the fund and the next statement names the top-up due; a
    /// claim is never refused for it. Absent means zero.
    #[serde(default, deserialize_with = "threshold")]
    pub prepaid_low_balance: Option<Amount>,
}

/// A `[[city]]` of a file written before pools: the city's own pool.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CityEntry {
    code: CityCode,
    name: String,
    name_zh: String,
    enabled: bool,
    identity: String,
    catalog: String,
    settlement: String,
    e_voucher_key: String,
    #[serde(default, deserialize_with = "threshold")]
    prepaid_low_balance: Option<Amount>,
}

impl From<CityEntry> for Pool {
    fn from(city: CityEntry) -> Self {
        Pool {
            code: city.code.into(),
            name: city.name,
            name_zh: city.name_zh,
            city: city.code,
            enabled: city.enabled,
            identity: city.identity,
            catalog: city.catalog,
            settlement: city.settlement,
            e_voucher_key: city.e_voucher_key,
            prepaid_low_balance: city.prepaid_low_balance,
        }
    }
}

impl Pool {
    /// The prepaid fund's low-balance threshold, zero when the file names none.
    pub fn prepaid_low_balance(&self) -> Amount {
        self.prepaid_low_balance.unwrap_or(Amount::ZERO)
    }
}

/// Whether an endpoint names port 0 ("http://127.0.0.1:0"): a server put wherever the kernel
/// picks, as `yitong dev`'s tests start one, never a node another pool shares.
pub fn is_ephemeral(endpoint: &str) -> bool {
    endpoint
        .trim_end_matches('/')
        .rsplit_once(':')
        .is_some_and(|(_, port)| port == "0")
}

/// Reads a threshold as a non-negative yuan string, so a malformed one refuses the whole file.
fn threshold<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Amount>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Amount::parse(&text).map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "prepaid_low_balance {text:?} must be a non-negative yuan amount, such as \"500000.00\""
        ))
    })
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot read network file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("network file {path} is malformed")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("network is inconsistent: {0}")]
    Inconsistent(String),
}

impl Network {
    pub fn load(path: &Path) -> Result<Self, NetworkError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| NetworkError::Read {
            path: display.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|error| match error {
            NetworkError::Parse { source, .. } => NetworkError::Parse {
                path: display,
                source,
            },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, NetworkError> {
        let network: Network = toml::from_str(text).map_err(|source| NetworkError::Parse {
            path: String::new(),
            source,
        })?;
        network.check()?;
        Ok(network)
    }

    fn check(&self) -> Result<(), NetworkError> {
        let mut codes: Vec<PoolCode> = self.pools.iter().map(|pool| pool.code).collect();
        codes.sort();
        if let Some(pair) = codes.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(NetworkError::Inconsistent(format!(
                "pool code {} appears twice",
                pair[0]
            )));
        }
        if !self.pools.iter().any(|pool| pool.enabled) {
            return Err(NetworkError::Inconsistent("no pool is enabled".into()));
        }
        // A city is known by its own pool, whose code is the city's: a pool hosted by a city
        // the file does not hold would be grouped under nothing.
        for pool in &self.pools {
            if self
                .pool(pool.city.into())
                .is_none_or(|own| own.city != pool.city)
            {
                return Err(NetworkError::Inconsistent(format!(
                    "pool {} is hosted by city {}, which has no pool of its own code here",
                    pool.code, pool.city
                )));
            }
        }
        self.check_shared_nodes()?;
        let endpoints = self
            .pools
            .iter()
            .flat_map(|pool| [&pool.identity, &pool.catalog, &pool.settlement])
            .chain([&self.clearing_house.ledger]);
        for endpoint in endpoints {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(NetworkError::Inconsistent(format!(
                    "endpoint {endpoint} must start with http:// or https://"
                )));
            }
        }
        Ok(())
    }

    /// Pools that share a node share all of it: a node is one process for the three services,
    /// in one city, so two pools that list one endpoint in common must list the same three and
    /// be hosted by the same city. And the clearing house's ledger runs apart from every node.
    /// An endpoint on port 0 is no address (its server listens where the kernel puts it, and
    /// the network is told), so it is shared with nothing.
    fn check_shared_nodes(&self) -> Result<(), NetworkError> {
        for (index, pool) in self.pools.iter().enumerate() {
            let endpoints = [&pool.identity, &pool.catalog, &pool.settlement];
            if let Some(endpoint) = endpoints.iter().find(|endpoint| {
                ***endpoint == self.clearing_house.ledger && !is_ephemeral(endpoint)
            }) {
                return Err(NetworkError::Inconsistent(format!(
                    "pool {} lists the clearing house's ledger endpoint {endpoint}",
                    pool.code
                )));
            }
            for other in &self.pools[index + 1..] {
                let theirs = [&other.identity, &other.catalog, &other.settlement];
                let shared = endpoints
                    .iter()
                    .find(|endpoint| theirs.contains(endpoint) && !is_ephemeral(endpoint));
                let Some(shared) = shared else { continue };
                if endpoints != theirs {
                    return Err(NetworkError::Inconsistent(format!(
                        "pools {} and {} share endpoint {shared}, so they share a node and must \
                         list the same identity, catalog and settlement endpoints",
                        pool.code, other.code
                    )));
                }
                if pool.city != other.city {
                    return Err(NetworkError::Inconsistent(format!(
                        "pools {} and {} share a node ({shared}) but are hosted by cities {} and \
                         {}: a node serves pools of one city",
                        pool.code, other.code, pool.city, other.city
                    )));
                }
            }
        }
        Ok(())
    }

    /// The enabled pools served by the node that serves `pool` (the pool itself among them), in
    /// file order: those that list the same endpoints.
    pub fn node_pools(&self, pool: &Pool) -> Vec<&Pool> {
        self.enabled_pools()
            .filter(|other| {
                other.code == pool.code
                    || (other.identity == pool.identity && !is_ephemeral(&pool.identity))
            })
            .collect()
    }

    /// A pool of the network, enabled or not.
    pub fn pool(&self, code: PoolCode) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.code == code)
    }

    /// The pools that settle now, in file order.
    pub fn enabled_pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().filter(|pool| pool.enabled)
    }

    /// The cities that host the network's pools, each once, in the order of their own pools.
    pub fn cities(&self) -> Vec<CityCode> {
        let mut cities: Vec<CityCode> = Vec::new();
        for pool in &self.pools {
            if !cities.contains(&pool.city) {
                cities.push(pool.city);
            }
        }
        cities
    }

    /// The city that hosts a pool of the network.
    pub fn city_of(&self, code: PoolCode) -> Option<CityCode> {
        self.pool(code).map(|pool| pool.city)
    }

    /// The pools a city hosts, enabled or not, in file order.
    pub fn pools_of(&self, city: CityCode) -> impl Iterator<Item = &Pool> {
        self.pools.iter().filter(move |pool| pool.city == city)
    }

    /// Where a pool's service listens; the ledger belongs to the clearing house whatever the pool.
    pub fn endpoint(&self, pool: &Pool, service: Service) -> String {
        match service {
            Service::Identity => pool.identity.clone(),
            Service::Catalog => pool.catalog.clone(),
            Service::Settlement => pool.settlement.clone(),
            Service::Ledger => self.clearing_house.ledger.clone(),
        }
    }

    /// Points a service of a pool elsewhere, for networks whose ports are chosen at start-up.
    pub fn set_endpoint(&mut self, code: PoolCode, service: Service, endpoint: String) {
        if service == Service::Ledger {
            self.clearing_house.ledger = endpoint;
            return;
        }
        let pool = self
            .pools
            .iter_mut()
            .find(|pool| pool.code == code)
            .expect("pool is in the network");
        match service {
            Service::Identity => pool.identity = endpoint,
            Service::Catalog => pool.catalog = endpoint,
            Service::Settlement => pool.settlement = endpoint,
            Service::Ledger => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CITIES: &str = r#"
        [clearing_house]
        name = "clearing house"
        ledger = "http://127.0.0.1:7400"

        [[city]]
        code = "370100"
        name = "Jinan"
        name_zh = "济南"
        enabled = true
        identity = "http://127.0.0.1:7111"
        catalog = "http://127.0.0.1:7112"
        settlement = "http://127.0.0.1:7113"
        e_voucher_key = "AAAA"

        [[city]]
        code = "370900"
        name = "Tai'an"
        name_zh = "泰安"
        enabled = false
        identity = "http://127.0.0.1:7161"
        catalog = "http://127.0.0.1:7162"
        settlement = "http://127.0.0.1:7163"
        e_voucher_key = "AAAA"
    "#;

    // Proves a network file is read, and that disabled cities are known but not enabled.
    #[test]
    fn reads_cities_and_endpoints() {
        let network = Network::from_toml(TWO_CITIES).unwrap();
        let taian = network.pool(PoolCode::parse("370900").unwrap()).unwrap();
        assert!(!taian.enabled);
        assert_eq!(network.enabled_pools().count(), 1);
        assert_eq!(
            network.endpoint(taian, Service::Ledger),
            "http://127.0.0.1:7400"
        );
    }

    // Proves the prepaid low-balance threshold is read as an amount, is zero when absent, and
    // that a malformed or negative one refuses the file.
    #[test]
    fn reads_the_prepaid_low_balance_threshold() {
        let with = TWO_CITIES.replacen(
            "enabled = true",
            "enabled = true\n        prepaid_low_balance = \"500000.50\"",
            1,
        );
        let network = Network::from_toml(&with).unwrap();
        let jinan = network.pool(PoolCode::parse("370100").unwrap()).unwrap();
        assert_eq!(jinan.prepaid_low_balance(), Amount::from_fen(50_000_050));
        let taian = network.pool(PoolCode::parse("370900").unwrap()).unwrap();
        assert_eq!(taian.prepaid_low_balance(), Amount::ZERO);
        for bad in ["-1.00", "1.234", "lots", ""] {
            let text = TWO_CITIES.replacen(
                "enabled = true",
                &format!("enabled = true\n        prepaid_low_balance = \"{bad}\""),
                1,
            );
            assert!(
                matches!(Network::from_toml(&text), Err(NetworkError::Parse { .. })),
                "{bad:?} is refused"
            );
        }
        let seeded = Network::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds/network.toml"),
        )
        .unwrap();
        assert!(
            seeded
                .enabled_pools()
                .all(|city| city.prepaid_low_balance() == Amount::from_fen(50_000_000))
        );
    }

    const SECOND_POOL: &str = r#"
        [[pool]]
        code = "370990"
        name = "Tai'an Mines"
        name_zh = "泰安矿区"
        city = "370900"
        enabled = true
        identity = "http://127.0.0.1:7191"
        catalog = "http://127.0.0.1:7192"
        settlement = "http://127.0.0.1:7193"
        e_voucher_key = "AAAA"
    "#;

    // Proves a file written before pools reads as one pool per city, hosted by the city, and
    // that a `[[pool]]` of a city's second pool reads beside them, grouped under its city.
    #[test]
    fn cities_are_their_own_pools_and_a_city_may_host_more() {
        let legacy = Network::from_toml(TWO_CITIES).unwrap();
        for pool in &legacy.pools {
            assert_eq!(pool.code, PoolCode::from(pool.city));
        }
        let text = format!("{TWO_CITIES}{SECOND_POOL}");
        let network = Network::from_toml(&text).unwrap();
        let taian = CityCode::parse("370900").unwrap();
        let mines = PoolCode::parse("370990").unwrap();
        assert_eq!(network.pools.len(), 3);
        assert_eq!(network.city_of(mines), Some(taian));
        assert_eq!(
            network
                .pools_of(taian)
                .map(|pool| pool.code.to_string())
                .collect::<Vec<_>>(),
            ["370900", "370990"]
        );
        assert_eq!(network.cities().len(), 2);
        assert_eq!(network.enabled_pools().count(), 2);

        // A pool whose host has no pool of its own in the file is refused.
        let orphan = SECOND_POOL.replace("city = \"370900\"", "city = \"371500\"");
        assert!(matches!(
            Network::from_toml(&format!("{TWO_CITIES}{orphan}")),
            Err(NetworkError::Inconsistent(_))
        ));
        // A pool's host must be a city code (ending in 00), its code need not be.
        let district = SECOND_POOL.replace("city = \"370900\"", "city = \"370902\"");
        assert!(matches!(
            Network::from_toml(&format!("{TWO_CITIES}{district}")),
            Err(NetworkError::Parse { .. })
        ));
        // The same code as a `[[city]]` and a `[[pool]]` is a pool twice.
        let twice = SECOND_POOL.replace("code = \"370990\"", "code = \"370900\"");
        assert!(matches!(
            Network::from_toml(&format!("{TWO_CITIES}{twice}")),
            Err(NetworkError::Inconsistent(_))
        ));
    }

    // Proves two pools of one city listing the same endpoints are one node, and that a file is
    // refused, naming both pools, when pools share a node only in part, share one across
    // cities, or list the ledger's endpoint.
    #[test]
    fn pools_of_one_city_may_share_a_node() {
        let shared = SECOND_POOL
            .replace("7191", "7161")
            .replace("7192", "7162")
            .replace("7193", "7163");
        let network = Network::from_toml(&format!("{TWO_CITIES}{shared}")).unwrap();
        let taian = network.pool(PoolCode::parse("370900").unwrap()).unwrap();
        assert_eq!(
            network
                .node_pools(taian)
                .iter()
                .map(|pool| pool.code.to_string())
                .collect::<Vec<_>>(),
            // Tai'an's own pool is disabled: the node serves the enabled one.
            ["370990"]
        );
        let jinan = network.pool(PoolCode::parse("370100").unwrap()).unwrap();
        assert_eq!(network.node_pools(jinan).len(), 1);

        let in_part = SECOND_POOL.replace("7191", "7161");
        let Err(NetworkError::Inconsistent(message)) =
            Network::from_toml(&format!("{TWO_CITIES}{in_part}"))
        else {
            panic!("a node shared in part is refused");
        };
        assert!(
            message.contains("370900") && message.contains("370990"),
            "{message}"
        );
        assert!(
            message.contains("same identity, catalog and settlement"),
            "{message}"
        );

        let across = shared.replace("city = \"370900\"", "city = \"370100\"");
        let Err(NetworkError::Inconsistent(message)) =
            Network::from_toml(&format!("{TWO_CITIES}{across}"))
        else {
            panic!("a node shared across cities is refused");
        };
        assert!(message.contains("pools of one city"), "{message}");

        // Port 0 is no address: pools listing it share nothing.
        let mut ephemeral = format!("{TWO_CITIES}{SECOND_POOL}");
        for port in ["7111", "7112", "7113", "7191", "7192", "7193", "7400"] {
            ephemeral = ephemeral.replace(&format!(":{port}"), ":0");
        }
        let network = Network::from_toml(&ephemeral).expect("ephemeral endpoints share nothing");
        let mines = network.pool(PoolCode::parse("370990").unwrap()).unwrap();
        assert_eq!(network.node_pools(mines).len(), 1);

        let ledger = SECOND_POOL.replace("7193", "7400");
        let Err(NetworkError::Inconsistent(message)) =
            Network::from_toml(&format!("{TWO_CITIES}{ledger}"))
        else {
            panic!("a pool on the ledger's endpoint is refused");
        };
        assert!(message.contains("ledger"), "{message}");
    }

    // Proves a duplicated city code is refused.
    #[test]
    fn refuses_duplicate_cities() {
        let doubled = TWO_CITIES.replace("370900", "370100");
        assert!(matches!(
            Network::from_toml(&doubled),
            Err(NetworkError::Inconsistent(_))
        ));
    }
}
