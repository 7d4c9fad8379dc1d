//! Reading the catalog seed files: `catalog_items.csv` (each city's catalog) and `policies.csv`
//! (each insured city's policy versions). `seeds/README.md` describes their columns.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use yitong_catalog::{
    Grade, HospitalLevel, InsuranceType, Item, ItemCode, ItemKind, ItemParts, PersonType,
    PolicyKey, PolicyTerms, PolicyVersion, Ratio,
};
use yitong_core::{Amount, Invalid, PoolCode, parse_date};

use crate::read::read_rows;
use crate::{SeedError, Seeds};

impl Seeds {
    /// The catalog items of `city`, in file order.
    pub fn items_of(&self, city: PoolCode) -> Vec<Item> {
        self.items
            .iter()
            .filter(|(item_city, _)| *item_city == city)
            .map(|(_, item)| item.clone())
            .collect()
    }

    /// The policy versions of insured city `city`, in file order.
    pub fn policies_of(&self, city: PoolCode) -> Vec<PolicyVersion> {
        self.policies
            .iter()
            .filter(|(policy_city, _)| *policy_city == city)
            .map(|(_, policy)| *policy)
            .collect()
    }
}

#[derive(Deserialize)]
struct ItemRow {
    city: String,
    code: String,
    name: String,
    kind: String,
    grade: String,
    self_pay_ratio: String,
    price_cap: String,
    valid_from: String,
    valid_until: String,
}

#[derive(Deserialize)]
struct PolicyRow {
    insured_city: String,
    insurance_type: i64,
    person_type: String,
    hospital_level: i64,
    deductible: String,
    reimbursement_ratio: String,
    annual_cap: String,
    effective_from: String,
}

/// Reads `catalog_items.csv`; a code listed twice for one city is refused.
pub(crate) fn load_items(dir: &Path) -> Result<Vec<(PoolCode, Item)>, SeedError> {
    let path = dir.join("catalog_items.csv");
    let items = read_rows(&path, item)?;
    let mut seen = HashSet::new();
    for (index, (city, item)) in items.iter().enumerate() {
        if !seen.insert((*city, item.code().clone())) {
            return Err(SeedError::Row {
                path,
                line: index as u64 + 2,
                problem: format!("code {} is listed twice for city {city}", item.code()),
            });
        }
    }
    Ok(items)
}

/// Reads `policies.csv`; two versions of one policy from the same day are refused.
pub(crate) fn load_policies(dir: &Path) -> Result<Vec<(PoolCode, PolicyVersion)>, SeedError> {
    let path = dir.join("policies.csv");
    let policies = read_rows(&path, policy)?;
    let mut seen = HashSet::new();
    for (index, (city, version)) in policies.iter().enumerate() {
        if !seen.insert((*city, version.key, version.effective_from)) {
            return Err(SeedError::Row {
                path,
                line: index as u64 + 2,
                problem: "a version of this policy with the same effective_from is listed twice"
                    .into(),
            });
        }
    }
    Ok(policies)
}

fn item(row: ItemRow) -> Result<(PoolCode, Item), Invalid> {
    let city = PoolCode::parse(&row.city).map_err(|invalid| invalid.at("city"))?;
    let kind = match row.kind.as_str() {
        "drug" => ItemKind::Drug,
        "medical_service" => ItemKind::MedicalService,
        "consumable" => ItemKind::Consumable,
        _ => {
            return Err(Invalid::new(
                "kind",
                "must be drug, medical_service or consumable",
            ));
        }
    };
    let grade = match row.grade.as_str() {
        "A" => Grade::A,
        "B" => Grade::B,
        "C" => Grade::C,
        _ => return Err(Invalid::new("grade", "must be A, B or C")),
    };
    let item = Item::new(ItemParts {
        code: ItemCode::parse(&row.code).map_err(|invalid| invalid.at("code"))?,
        name: row.name,
        kind,
        grade,
        self_pay_ratio: Ratio::parse(&row.self_pay_ratio)
            .map_err(|invalid| invalid.at("self_pay_ratio"))?,
        price_cap: match row.price_cap.as_str() {
            "" => None,
            text => Some(Amount::parse(text).map_err(|invalid| invalid.at("price_cap"))?),
        },
        valid_from: parse_date(&row.valid_from).map_err(|invalid| invalid.at("valid_from"))?,
        valid_until: match row.valid_until.as_str() {
            "" => None,
            text => Some(parse_date(text).map_err(|invalid| invalid.at("valid_until"))?),
        },
    })?;
    Ok((city, item))
}

fn policy(row: PolicyRow) -> Result<(PoolCode, PolicyVersion), Invalid> {
    let city = PoolCode::parse(&row.insured_city).map_err(|invalid| invalid.at("insured_city"))?;
    let insurance_type = InsuranceType::from_code(row.insurance_type).ok_or_else(|| {
        Invalid::new("insurance_type", "must be 310 (employee) or 390 (resident)")
    })?;
    let person_type = match row.person_type.as_str() {
        "in_service" => PersonType::InService,
        "retired" => PersonType::Retired,
        _ => return Err(Invalid::new("person_type", "must be in_service or retired")),
    };
    let hospital_level = HospitalLevel::from_code(row.hospital_level)
        .ok_or_else(|| Invalid::new("hospital_level", "must be 1, 2 or 3"))?;
    let terms = PolicyTerms::new(
        Amount::parse(&row.deductible).map_err(|invalid| invalid.at("deductible"))?,
        Ratio::parse(&row.reimbursement_ratio)
            .map_err(|invalid| invalid.at("reimbursement_ratio"))?,
        Amount::parse(&row.annual_cap).map_err(|invalid| invalid.at("annual_cap"))?,
    )?;
    let version = PolicyVersion {
        key: PolicyKey {
            insurance_type,
            person_type,
            hospital_level,
        },
        terms,
        effective_from: parse_date(&row.effective_from)
            .map_err(|invalid| invalid.at("effective_from"))?,
    };
    Ok((city, version))
}
