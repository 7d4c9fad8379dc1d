//! `yitong seed generate`: every generated seed file, for every city of the network file,
//! enabled or not, so that enabling a city is one flag in `network.toml`.
//!
//! Persons, catalog items and policies come from a fixed random seed and the generator's
//! profile of each city of the circle ([`crate::generate_persons`], [`crate::generate_catalog`]);
//! the designated institutions and the filing policies are laid out from the network file
//! alone: each city's twelve institutions named after the city (`name_zh`), and every ordered
//! pair of cities waiving filing for each other (同城化). Cities come in the network file's
//! order, so a city appended to the file leaves every earlier row as it was.

use std::io;
use std::path::Path;

use yitong_core::{Network, PoolCode};

use crate::{write_catalog_seeds, write_persons};

/// The files [`write_seeds`] writes.
pub const GENERATED_FILES: [&str; 5] = [
    "persons.csv",
    "institutions.csv",
    "catalog_items.csv",
    "policies.csv",
    "filing_policies.csv",
];

/// Writes every generated seed file into `dir` for every city of `network`.
pub fn write_seeds(dir: &Path, network: &Network, seed: u64) -> io::Result<()> {
    write_persons(dir, network, seed)?;
    write_institutions(dir, network)?;
    write_catalog_seeds(dir, network, seed)?;
    write_filing_policies(dir, network)
}

/// The error for a city of the network file the generator has no profile of.
pub(crate) fn unknown_city(code: PoolCode) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the seed generator has no profile of pool {code}: it knows the pools of the seven \
             cities of the Jinan capital economic circle and two second pools (the Shengli \
             Oilfield's, the provincial one); another pool's bureau loads its own seed files"
        ),
    )
}

/// One designated institution of every city: kind prefix, serial, name after the city's
/// name, level, first day networked for cross-city settlement (`None`: not networked).
const INSTITUTIONS: [(char, u32, &str, u8, Option<&str>); 12] = [
    ('H', 1, "市中心医院", 3, Some("2024-01-01")),
    ('H', 2, "市人民医院", 3, Some("2024-01-01")),
    ('H', 3, "市中医医院", 3, Some("2024-01-01")),
    ('H', 4, "市妇幼保健院", 3, Some("2024-01-01")),
    ('H', 5, "市第二人民医院", 2, Some("2024-01-01")),
    ('H', 6, "市第三人民医院", 2, Some("2024-01-01")),
    ('H', 7, "市口腔医院", 2, Some("2024-01-01")),
    ('H', 8, "市眼科医院", 2, Some("2024-01-01")),
    ('H', 9, "市城区社区卫生服务中心", 1, Some("2024-01-01")),
    ('H', 10, "市东城街道卫生院", 1, Some("2024-01-01")),
    // The third level-1 health centre does not settle for persons insured elsewhere.
    ('H', 11, "市西城街道卫生院", 1, None),
    ('P', 1, "市漱玉平民大药房", 1, Some("2025-01-01")),
];

/// Writes `institutions.csv`: the same twelve institutions in every city of `network`.
fn write_institutions(dir: &Path, network: &Network) -> io::Result<()> {
    let mut writer = csv::Writer::from_path(dir.join("institutions.csv"))?;
    writer.write_record(["code", "name", "kind", "level", "networked_since"])?;
    for city in &network.pools {
        for (prefix, serial, name, level, networked_since) in INSTITUTIONS {
            let kind = if prefix == 'H' {
                "hospital"
            } else {
                "pharmacy"
            };
            writer.write_record([
                format!("{prefix}{}{serial:05}", city.code).as_str(),
                &format!("{}{name}", city.name_zh),
                kind,
                &level.to_string(),
                networked_since.unwrap_or_default(),
            ])?;
        }
    }
    writer.flush()
}

/// Writes `filing_policies.csv`: every ordered pair of cities of `network` waives filing.
fn write_filing_policies(dir: &Path, network: &Network) -> io::Result<()> {
    let mut writer = csv::Writer::from_path(dir.join("filing_policies.csv"))?;
    writer.write_record([
        "insured_city",
        "treatment_city",
        "filing_required",
        "unfiled",
        "unfiled_cut_points",
        "temporary_cut_points",
    ])?;
    for insured in &network.pools {
        for treatment in network.pools.iter().filter(|t| t.code != insured.code) {
            writer.write_record([
                insured.code.to_string().as_str(),
                &treatment.code.to_string(),
                "false",
                "refused",
                "0",
                "0",
            ])?;
        }
    }
    writer.flush()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn committed_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds")
    }

    /// The committed network file, every city of which the committed seeds cover.
    pub(crate) fn committed_network() -> Network {
        Network::load(&committed_dir().join("network.toml")).expect("seeds/network.toml")
    }

    // Proves the institutions and filing policies are the committed files, laid out from the
    // network file alone, for every city in it, and read back as valid seeds.
    #[test]
    fn institutions_and_filing_policies_are_committed() {
        let dir = std::env::temp_dir().join(format!("yitong-network-seeds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let network = committed_network();
        write_institutions(&dir, &network).unwrap();
        write_filing_policies(&dir, &network).unwrap();
        for file in ["institutions.csv", "filing_policies.csv"] {
            assert!(
                std::fs::read(dir.join(file)).unwrap()
                    == std::fs::read(committed_dir().join(file)).unwrap(),
                "seeds/{file} differs from the generator's output: run `yitong seed generate`"
            );
        }
        let seeds = crate::load_seeds(&committed_dir()).expect("the committed seeds read back");
        let cities = network.pools.len();
        for city in &network.pools {
            assert_eq!(seeds.institutions_of(city.code).len(), INSTITUTIONS.len());
            assert_eq!(seeds.filing_policies_of(city.code).len(), cities - 1);
            // The hand-written disease policies cover every city too: each disease, for
            // employees and residents.
            assert_eq!(
                seeds.disease_policies_of(city.code).len(),
                seeds.diseases.len() * 2,
                "city {} in disease_policies.csv",
                city.code
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    // Proves a city the generator has no profile of is refused by name, not skipped.
    #[test]
    fn an_unknown_city_is_named() {
        let mut network = committed_network();
        network.pools[0].code = PoolCode::parse("370200").unwrap();
        let dir = std::env::temp_dir().join(format!("yitong-unknown-city-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let error = write_seeds(&dir, &network, 1).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("370200"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
