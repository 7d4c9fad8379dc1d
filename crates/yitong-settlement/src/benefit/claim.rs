//! The claim a treatment city sends to the insured city, parsed at the edge.

use std::str::FromStr;

use rust_decimal::Decimal;
use yitong_core::{Amount, Date, InstitutionCode, Invalid, PersonNo, PoolCode};
use yitong_proto::catalog::v1::HospitalLevel;
use yitong_proto::identity::v1::InsuranceType as WireInsuranceType;
use yitong_proto::settlement::v1 as pb;

use crate::split::{self, InsuranceType, Ratio};

/// A parsed `BenefitClaim`.
#[derive(Debug, Clone)]
pub struct BenefitClaim {
    pub person_no: PersonNo,
    pub service_date: Date,
    pub insurance_type: InsuranceType,
    pub hospital_level: HospitalLevel,
    pub treatment_city: PoolCode,
    pub institution_code: InstitutionCode,
    pub visit_id: String,
    pub amounts: split::Claim,
    pub use_personal_account: bool,
    /// The disease of a medical type 14 visit (national dise_codg); `None` for any other.
    pub disease_code: Option<String>,
}

/// Longest visit id or settlement id accepted, in bytes.
pub const ID_BYTES_MAX: usize = 64;

/// Checks an id a node made (visit id, settlement id): letters, digits, '-', '_'.
pub fn parse_id(text: &str, field: &str) -> Result<String, Invalid> {
    let ok = !text.is_empty()
        && text.len() <= ID_BYTES_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {ID_BYTES_MAX} letters, digits, '-' or '_'"),
        ));
    }
    Ok(text.to_owned())
}

pub fn insurance_type(code: i32, field: &str) -> Result<InsuranceType, Invalid> {
    match WireInsuranceType::try_from(code) {
        Ok(WireInsuranceType::Employee) => Ok(InsuranceType::Employee),
        Ok(WireInsuranceType::Resident) => Ok(InsuranceType::Resident),
        _ => Err(Invalid::new(
            field,
            "must be INSURANCE_TYPE_EMPLOYEE or INSURANCE_TYPE_RESIDENT",
        )),
    }
}

pub fn insurance_type_code(insurance_type: InsuranceType) -> i32 {
    match insurance_type {
        InsuranceType::Employee => WireInsuranceType::Employee as i32,
        InsuranceType::Resident => WireInsuranceType::Resident as i32,
    }
}

/// A ratio as the wire and the catalog write it ("0.70").
pub fn ratio(text: &str, field: &str) -> Result<Ratio, Invalid> {
    let value = Decimal::from_str(text)
        .map_err(|_| Invalid::new(field, "must be a decimal ratio such as 0.70"))?;
    Ratio::new(value).map_err(|error| Invalid::new(field, error.to_string()))
}

fn amount(text: &str, field: &str) -> Result<Amount, Invalid> {
    Amount::parse(text).map_err(|invalid| invalid.at(field))
}

impl TryFrom<Option<pb::BenefitClaim>> for BenefitClaim {
    type Error = Invalid;

    fn try_from(claim: Option<pb::BenefitClaim>) -> Result<Self, Invalid> {
        let claim = claim.ok_or_else(|| Invalid::new("claim", "the claim is required"))?;
        let amounts = claim
            .amounts
            .ok_or_else(|| Invalid::new("claim.amounts", "the claim's amounts are required"))?;
        let amounts = split::Claim::new(
            amount(&amounts.total_amount, "claim.amounts.total_amount")?,
            amount(&amounts.full_self_pay, "claim.amounts.full_self_pay")?,
            amount(
                &amounts.over_cap_self_pay,
                "claim.amounts.over_cap_self_pay",
            )?,
            amount(&amounts.pre_self_pay, "claim.amounts.pre_self_pay")?,
            amount(&amounts.in_scope_amount, "claim.amounts.in_scope_amount")?,
        )
        .map_err(|error| {
            Invalid::new(
                format!("claim.amounts.{}", error.field()),
                error.to_string(),
            )
        })?;
        let hospital_level = hospital_level(claim.hospital_level, "claim.hospital_level")?;
        Ok(BenefitClaim {
            person_no: PersonNo::parse(&claim.person_no)
                .map_err(|invalid| invalid.at("claim.person_no"))?,
            service_date: yitong_core::parse_date(&claim.service_date)
                .map_err(|invalid| invalid.at("claim.service_date"))?,
            insurance_type: insurance_type(claim.insurance_type, "claim.insurance_type")?,
            hospital_level,
            treatment_city: PoolCode::parse(&claim.treatment_city)
                .map_err(|invalid| invalid.at("claim.treatment_city"))?,
            institution_code: InstitutionCode::parse(&claim.institution_code)
                .map_err(|invalid| invalid.at("claim.institution_code"))?,
            visit_id: parse_id(&claim.visit_id, "claim.visit_id")?,
            amounts,
            use_personal_account: claim.use_personal_account,
            disease_code: disease(&claim.disease_code, "claim.disease_code")?,
        })
    }
}

/// Whom and what a claim or a GetTotals asks about: the person, the date, the insurance and
/// where they are treated; enough to find the person and the policy.
#[derive(Debug, Clone)]
pub struct Asked {
    pub person_no: PersonNo,
    pub service_date: Date,
    pub insurance_type: InsuranceType,
    pub hospital_level: HospitalLevel,
    pub treatment_city: PoolCode,
    pub institution_code: InstitutionCode,
    /// A disease whose certification and policy are asked about; `None` for none.
    pub disease_code: Option<String>,
}

/// An optional disease code: empty for none, else its shape checked.
fn disease(text: &str, field: &str) -> Result<Option<String>, Invalid> {
    match text {
        "" => Ok(None),
        code => super::disease::parse_disease_code(code, field).map(Some),
    }
}

impl Asked {
    pub fn of_claim(claim: &BenefitClaim) -> Asked {
        Asked {
            person_no: claim.person_no.clone(),
            service_date: claim.service_date,
            insurance_type: claim.insurance_type,
            hospital_level: claim.hospital_level,
            treatment_city: claim.treatment_city,
            institution_code: claim.institution_code.clone(),
            disease_code: claim.disease_code.clone(),
        }
    }
}

fn hospital_level(code: i32, field: &str) -> Result<HospitalLevel, Invalid> {
    match HospitalLevel::try_from(code) {
        Ok(level) if level != HospitalLevel::Unspecified => Ok(level),
        _ => Err(Invalid::new(field, "must be HOSPITAL_LEVEL_1, 2 or 3")),
    }
}

impl TryFrom<pb::GetTotalsRequest> for Asked {
    type Error = Invalid;

    fn try_from(request: pb::GetTotalsRequest) -> Result<Self, Invalid> {
        Ok(Asked {
            person_no: PersonNo::parse(&request.person_no)
                .map_err(|invalid| invalid.at("person_no"))?,
            service_date: yitong_core::parse_date(&request.service_date)
                .map_err(|invalid| invalid.at("service_date"))?,
            insurance_type: insurance_type(request.insurance_type, "insurance_type")?,
            hospital_level: hospital_level(request.hospital_level, "hospital_level")?,
            treatment_city: PoolCode::parse(&request.treatment_city)
                .map_err(|invalid| invalid.at("treatment_city"))?,
            institution_code: InstitutionCode::parse(&request.institution_code)
                .map_err(|invalid| invalid.at("institution_code"))?,
            disease_code: disease(&request.disease_code, "disease_code")?,
        })
    }
}
