//! The network: which cities take part, where each node listens, and the clearing house.
//!
//! Nodes find each other only through this file (`seeds/network.toml` for `yitong dev`), never
//! through hard-coded ports. Enabling a city is a change here and in the seeds, never in code.

use std::path::Path;

use serde::Deserialize;

use crate::{Amount, CityCode, Service};

/// The whole network as every node sees it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub clearing_house: ClearingHouse,
    /// Every city of the circle, enabled or not.
    #[serde(rename = "city")]
    pub cities: Vec<City>,
}

/// The provincial platform that runs the shared ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearingHouse {
    pub name: String,
    /// Endpoint of the ledger service, "http://host:port".
    pub ledger: String,
}

/// One city of the circle and its nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub code: CityCode,
    /// English name, used in logs and the command line ("Zibo").
    pub name: String,
    /// Chinese name, used in statements ("淄博").
    pub name_zh: String,
    /// Whether the city settles cross-city claims now. A defined but disabled city is known
    /// (its codes are recognised) but refused as a treatment or insured city.
    pub enabled: bool,
    /// Endpoints of the city's services, "http://host:port".
    pub identity: String,
    pub catalog: String,
    pub settlement: String,
    /// Base64 of the city's Ed25519 public key, with which every city verifies the e-vouchers
    /// (scan codes) this city signs.
    pub e_voucher_key: String,
    /// Low-balance threshold of the city's prepaid fund at the clearing house, a yuan string in
    /// the file ("500000.00"), parsed when the file is loaded. When the fund's available amount
    /// falls below it the ledger flags the fund and the next statement names the top-up due; a
    /// claim is never refused for it. Absent means zero.
    #[serde(default, deserialize_with = "threshold")]
    pub prepaid_low_balance: Option<Amount>,
}

impl City {
    /// The prepaid fund's low-balance threshold, zero when the file names none.
    pub fn prepaid_low_balance(&self) -> Amount {
        self.prepaid_low_balance.unwrap_or(Amount::ZERO)
    }
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
        let mut codes: Vec<CityCode> = self.cities.iter().map(|city| city.code).collect();
        codes.sort();
        if codes.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(NetworkError::Inconsistent(
                "a city code appears twice".into(),
            ));
        }
        if !self.cities.iter().any(|city| city.enabled) {
            return Err(NetworkError::Inconsistent("no city is enabled".into()));
        }
        let endpoints = self
            .cities
            .iter()
            .flat_map(|city| [&city.identity, &city.catalog, &city.settlement])
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

    /// A city of the circle, enabled or not.
    pub fn city(&self, code: CityCode) -> Option<&City> {
        self.cities.iter().find(|city| city.code == code)
    }

    /// The cities that settle now, in file order.
    pub fn enabled_cities(&self) -> impl Iterator<Item = &City> {
        self.cities.iter().filter(|city| city.enabled)
    }

    /// Where a city's service listens; the ledger belongs to the clearing house whatever the city.
    pub fn endpoint(&self, city: &City, service: Service) -> String {
        match service {
            Service::Identity => city.identity.clone(),
            Service::Catalog => city.catalog.clone(),
            Service::Settlement => city.settlement.clone(),
            Service::Ledger => self.clearing_house.ledger.clone(),
        }
    }

    /// Points a service of a city elsewhere, for networks whose ports are chosen at start-up.
    pub fn set_endpoint(&mut self, code: CityCode, service: Service, endpoint: String) {
        if service == Service::Ledger {
            self.clearing_house.ledger = endpoint;
            return;
        }
        let city = self
            .cities
            .iter_mut()
            .find(|city| city.code == code)
            .expect("city is in the network");
        match service {
            Service::Identity => city.identity = endpoint,
            Service::Catalog => city.catalog = endpoint,
            Service::Settlement => city.settlement = endpoint,
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
        let taian = network.city(CityCode::parse("370900").unwrap()).unwrap();
        assert!(!taian.enabled);
        assert_eq!(network.enabled_cities().count(), 1);
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
        let jinan = network.city(CityCode::parse("370100").unwrap()).unwrap();
        assert_eq!(jinan.prepaid_low_balance(), Amount::from_fen(50_000_050));
        let taian = network.city(CityCode::parse("370900").unwrap()).unwrap();
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
                .enabled_cities()
                .all(|city| city.prepaid_low_balance() == Amount::from_fen(50_000_000))
        );
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
