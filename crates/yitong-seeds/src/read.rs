//! Reading the seed files under `seeds/`: the designated institutions and insured persons.
//!
//! Seed files are CSV with a header row, one file per kind for all cities; each row names its
//! city, so enabling a seventh city is a matter of adding rows. Values never appear in error
//! messages (a row may hold a citizen ID); the file, line and column do.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use yitong_catalog::{Item, PolicyVersion, SeedInstitution};
use yitong_core::{Amount, CitizenId, InstitutionCode, Invalid, PoolCode, parse_date};
use yitong_identity::{CardStatus, InsuranceStatus, SeedPerson};
use yitong_settlement::benefit::{DiseasePolicy, parse_disease_code};
use yitong_settlement::split::filing::{FilingPolicy, Unfiled};
use yitong_settlement::split::{InsuranceType, Policy, Ratio};

/// Everything a local network loads into empty stores on first start.
#[derive(Debug, Clone, Default)]
pub struct Seeds {
    pub institutions: Vec<SeedInstitution>,
    pub persons: Vec<(PoolCode, SeedPerson)>,
    /// Each city's catalog items, by the city whose catalog lists them.
    pub items: Vec<(PoolCode, Item)>,
    /// Policy versions, by insured city.
    pub policies: Vec<(PoolCode, PolicyVersion)>,
    /// Cross-city filing policies: insured city, treatment city, policy.
    pub filing_policies: Vec<(PoolCode, PoolCode, FilingPolicy)>,
    /// The national disease catalog of outpatient chronic and special diseases (1309): code and
    /// name.
    pub diseases: Vec<(String, String)>,
    /// Each insured city's disease policy, by insured city.
    pub disease_policies: Vec<(PoolCode, DiseasePolicy)>,
}

impl Seeds {
    pub fn institutions_of(&self, city: PoolCode) -> Vec<SeedInstitution> {
        self.institutions
            .iter()
            .filter(|institution| institution.code.city() == city)
            .cloned()
            .collect()
    }

    /// The filing policies of insured city `city`, by treatment city.
    pub fn filing_policies_of(&self, city: PoolCode) -> Vec<(PoolCode, FilingPolicy)> {
        self.filing_policies
            .iter()
            .filter(|(insured_city, ..)| *insured_city == city)
            .map(|(_, treatment_city, policy)| (*treatment_city, *policy))
            .collect()
    }

    /// The disease policy of insured city `city`.
    pub fn disease_policies_of(&self, city: PoolCode) -> Vec<DiseasePolicy> {
        self.disease_policies
            .iter()
            .filter(|(insured_city, _)| *insured_city == city)
            .map(|(_, policy)| policy.clone())
            .collect()
    }

    pub fn persons_of(&self, city: PoolCode) -> Vec<SeedPerson> {
        self.persons
            .iter()
            .filter(|(insured_city, _)| *insured_city == city)
            .map(|(_, person)| person.clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read seed file {path}")]
    Read { path: PathBuf, source: csv::Error },
    #[error("seed file {path}, line {line}: {problem}")]
    Row {
        path: PathBuf,
        line: u64,
        problem: String,
    },
}

#[derive(Deserialize)]
struct InstitutionRow {
    code: String,
    name: String,
    kind: String,
    level: i64,
    networked_since: String,
}

#[derive(Deserialize)]
struct PersonRow {
    insured_city: String,
    citizen_id: String,
    name: String,
    sex: String,
    insurance_type: i64,
    person_type: String,
    insured_since: String,
    account_balance: String,
    status: String,
    status_since: String,
    card_status: String,
}

/// Reads every seed file of the seeds directory: institutions, persons, catalog items, policies.
pub fn load_seeds(dir: &Path) -> Result<Seeds, SeedError> {
    let institutions = read_rows(&dir.join("institutions.csv"), institution)?;
    let persons = read_persons(&dir.join("persons.csv"))?;
    Ok(Seeds {
        institutions,
        persons,
        items: crate::catalog::load_items(dir)?,
        policies: crate::catalog::load_policies(dir)?,
        filing_policies: load_filing_policies(dir)?,
        diseases: load_diseases(dir)?,
        disease_policies: load_disease_policies(dir)?,
    })
}

#[derive(Deserialize)]
struct DiseaseRow {
    code: String,
    name: String,
}

/// Reads `diseases.csv`, the national disease catalog; a code listed twice is refused.
fn load_diseases(dir: &Path) -> Result<Vec<(String, String)>, SeedError> {
    let path = dir.join("diseases.csv");
    let rows = read_rows(&path, |row: DiseaseRow| {
        let code = parse_disease_code(&row.code, "code")?;
        if row.name.trim().is_empty() {
            return Err(Invalid::new("name", "is required"));
        }
        Ok((code, row.name))
    })?;
    let mut seen = std::collections::HashSet::new();
    for (index, (code, _)) in rows.iter().enumerate() {
        if !seen.insert(code.clone()) {
            return Err(SeedError::Row {
                path,
                line: index as u64 + 2,
                problem: format!("disease {code} is listed twice"),
            });
        }
    }
    Ok(rows)
}

#[derive(Deserialize)]
struct DiseasePolicyRow {
    insured_city: String,
    disease_code: String,
    insurance_type: i64,
    deductible: String,
    ratio: String,
    annual_quota: String,
}

/// Reads `disease_policies.csv`: each row's disease must be in `diseases.csv`, whose name it
/// takes; a city, disease and insurance type listed twice is refused.
fn load_disease_policies(dir: &Path) -> Result<Vec<(PoolCode, DiseasePolicy)>, SeedError> {
    let diseases: std::collections::HashMap<String, String> =
        load_diseases(dir)?.into_iter().collect();
    let path = dir.join("disease_policies.csv");
    let rows = read_rows(&path, |row: DiseasePolicyRow| {
        let city =
            PoolCode::parse(&row.insured_city).map_err(|invalid| invalid.at("insured_city"))?;
        let code = parse_disease_code(&row.disease_code, "disease_code")?;
        let name = diseases
            .get(&code)
            .ok_or_else(|| Invalid::new("disease_code", "is not in diseases.csv"))?;
        let insurance_type = match row.insurance_type {
            310 => InsuranceType::Employee,
            390 => InsuranceType::Resident,
            _ => return Err(Invalid::new("insurance_type", "must be 310 or 390")),
        };
        let amount =
            |text: &str, field: &str| Amount::parse(text).map_err(|invalid| invalid.at(field));
        let ratio = std::str::FromStr::from_str(&row.ratio)
            .ok()
            .and_then(|value| Ratio::new(value).ok())
            .ok_or_else(|| Invalid::new("ratio", "must be a ratio from 0 to 1"))?;
        let policy = Policy::new(
            amount(&row.deductible, "deductible")?,
            ratio,
            amount(&row.annual_quota, "annual_quota")?,
        )
        .map_err(|error| Invalid::new(error.field(), error.to_string()))?;
        Ok((
            city,
            DiseasePolicy {
                disease_code: code,
                disease_name: name.clone(),
                insurance_type,
                policy,
            },
        ))
    })?;
    let mut seen = std::collections::HashSet::new();
    for (index, (city, policy)) in rows.iter().enumerate() {
        if !seen.insert((
            *city,
            policy.disease_code.clone(),
            policy.insurance_type as u8,
        )) {
            return Err(SeedError::Row {
                path,
                line: index as u64 + 2,
                problem: format!(
                    "the policy of {city} for {} is listed twice",
                    policy.disease_code
                ),
            });
        }
    }
    Ok(rows)
}

#[derive(Deserialize)]
struct FilingPolicyRow {
    insured_city: String,
    treatment_city: String,
    filing_required: bool,
    unfiled: String,
    unfiled_cut_points: u32,
    temporary_cut_points: u32,
}

/// Reads `filing_policies.csv`; a pair listed twice, or a city's policy toward itself, is
/// refused.
fn load_filing_policies(dir: &Path) -> Result<Vec<(PoolCode, PoolCode, FilingPolicy)>, SeedError> {
    let path = dir.join("filing_policies.csv");
    let rows = read_rows(&path, filing_policy)?;
    let mut seen = std::collections::HashSet::new();
    for (index, (insured, treatment, _)) in rows.iter().enumerate() {
        if !seen.insert((*insured, *treatment)) {
            return Err(SeedError::Row {
                path,
                line: index as u64 + 2,
                problem: format!("the pair {insured} -> {treatment} is listed twice"),
            });
        }
    }
    Ok(rows)
}

fn filing_policy(row: FilingPolicyRow) -> Result<(PoolCode, PoolCode, FilingPolicy), Invalid> {
    let insured =
        PoolCode::parse(&row.insured_city).map_err(|invalid| invalid.at("insured_city"))?;
    let treatment =
        PoolCode::parse(&row.treatment_city).map_err(|invalid| invalid.at("treatment_city"))?;
    if insured == treatment {
        return Err(Invalid::new(
            "treatment_city",
            "must not be the insured city: a city never asks its own insured persons to file",
        ));
    }
    let unfiled = match row.unfiled.as_str() {
        "refused" if row.unfiled_cut_points == 0 => Unfiled::Refused,
        "refused" => {
            return Err(Invalid::new(
                "unfiled_cut_points",
                "must be 0 when an unfiled visit is refused",
            ));
        }
        "ratio_cut" => Unfiled::RatioCut(row.unfiled_cut_points),
        _ => return Err(Invalid::new("unfiled", "must be refused or ratio_cut")),
    };
    let policy = FilingPolicy::new(row.filing_required, unfiled, row.temporary_cut_points)
        .map_err(|error| Invalid::new("unfiled_cut_points", error.to_string()))?;
    Ok((insured, treatment, policy))
}

/// Reads a persons file.
pub(crate) fn read_persons(path: &Path) -> Result<Vec<(PoolCode, SeedPerson)>, SeedError> {
    read_rows(path, person)
}

pub(crate) fn read_rows<R: for<'de> Deserialize<'de>, T>(
    path: &Path,
    convert: impl Fn(R) -> Result<T, Invalid>,
) -> Result<Vec<T>, SeedError> {
    // Lines starting with '#' are comments (a file's label, such as ILLUSTRATIVE).
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|source| SeedError::Read {
            path: path.to_owned(),
            source,
        })?;
    let read_error = |source| SeedError::Read {
        path: path.to_owned(),
        source,
    };
    let headers = reader.headers().map_err(read_error)?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(read_error)?;
        let line = record.position().map_or(0, |position| position.line());
        let row_error = |problem: String| SeedError::Row {
            path: path.to_owned(),
            line,
            problem,
        };
        let row: R = record
            .deserialize(Some(&headers))
            .map_err(|_| row_error("malformed row".into()))?;
        rows.push(convert(row).map_err(|invalid| row_error(invalid.to_string()))?);
    }
    Ok(rows)
}

fn institution(row: InstitutionRow) -> Result<SeedInstitution, Invalid> {
    let kind = match row.kind.as_str() {
        "hospital" => 1,
        "pharmacy" => 2,
        _ => return Err(Invalid::new("kind", "must be hospital or pharmacy")),
    };
    if !(1..=3).contains(&row.level) {
        return Err(Invalid::new("level", "must be 1, 2 or 3"));
    }
    let networked_since = match row.networked_since.as_str() {
        "" => None,
        text => Some(parse_date(text).map_err(|invalid| invalid.at("networked_since"))?),
    };
    Ok(SeedInstitution {
        code: InstitutionCode::parse(&row.code).map_err(|invalid| invalid.at("code"))?,
        name: row.name,
        kind,
        level: row.level,
        networked_since,
    })
}

fn person(row: PersonRow) -> Result<(PoolCode, SeedPerson), Invalid> {
    let city = PoolCode::parse(&row.insured_city).map_err(|invalid| invalid.at("insured_city"))?;
    let sex = match row.sex.as_str() {
        "male" => 1,
        "female" => 2,
        _ => return Err(Invalid::new("sex", "must be male or female")),
    };
    if !matches!(row.insurance_type, 310 | 390) {
        return Err(Invalid::new(
            "insurance_type",
            "must be 310 (employee) or 390 (resident)",
        ));
    }
    let person_type = match row.person_type.as_str() {
        "in_service" => 1,
        "retired" => 2,
        _ => return Err(Invalid::new("person_type", "must be in_service or retired")),
    };
    let status = match row.status.as_str() {
        "active" => InsuranceStatus::Active,
        "suspended" => InsuranceStatus::Suspended,
        "terminated" => InsuranceStatus::Terminated,
        _ => {
            return Err(Invalid::new(
                "status",
                "must be active, suspended or terminated",
            ));
        }
    };
    let card_status = match row.card_status.as_str() {
        "active" => CardStatus::Active,
        "lost" => CardStatus::Lost,
        "cancelled" => CardStatus::Cancelled,
        _ => {
            return Err(Invalid::new(
                "card_status",
                "must be active, lost or cancelled",
            ));
        }
    };
    let account_balance =
        Amount::parse(&row.account_balance).map_err(|invalid| invalid.at("account_balance"))?;
    if row.insurance_type == 390 && account_balance != Amount::ZERO {
        return Err(Invalid::new(
            "account_balance",
            "residents have no personal account",
        ));
    }
    let person = SeedPerson {
        citizen_id: CitizenId::parse(&row.citizen_id)
            .map_err(|invalid| invalid.at("citizen_id"))?,
        name: row.name,
        sex,
        insurance_type: row.insurance_type,
        person_type,
        insured_since: parse_date(&row.insured_since)
            .map_err(|invalid| invalid.at("insured_since"))?,
        account_balance,
        status,
        status_since: parse_date(&row.status_since)
            .map_err(|invalid| invalid.at("status_since"))?,
        card_status,
    };
    Ok((city, person))
}
