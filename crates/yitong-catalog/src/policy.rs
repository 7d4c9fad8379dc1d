//! Reimbursement policies: what the insured city's fund pays, by insurance type, person type and
//! hospital level, as effective-dated versions.

use yitong_core::{Amount, Date, Invalid, PoolCode};
use yitong_proto::catalog::v1 as pb;
use yitong_proto::identity::v1 as identity_pb;

use crate::Ratio;

/// Insurance type (national insutype); the numbers are the national codes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum InsuranceType {
    /// Employee basic medical insurance (职工基本医疗保险).
    Employee = 310,
    /// Urban and rural resident basic medical insurance (城乡居民基本医疗保险).
    Resident = 390,
}

impl InsuranceType {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            310 => Some(Self::Employee),
            390 => Some(Self::Resident),
            _ => None,
        }
    }
}

/// Person type (national psn_type).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PersonType {
    InService = 1,
    Retired = 2,
}

impl PersonType {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::InService),
            2 => Some(Self::Retired),
            _ => None,
        }
    }
}

/// Level of the treating institution (national hosp_lv, collapsed onto three levels).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum HospitalLevel {
    One = 1,
    Two = 2,
    Three = 3,
}

impl HospitalLevel {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            3 => Some(Self::Three),
            _ => None,
        }
    }
}

/// Which policy: one per insurance type, person type and hospital level in each insured city.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PolicyKey {
    pub insurance_type: InsuranceType,
    pub person_type: PersonType,
    pub hospital_level: HospitalLevel,
}

impl PolicyKey {
    /// Reads the three enums of a request; unspecified or unknown values are refused by name.
    pub(crate) fn from_wire(
        insurance_type: i32,
        person_type: i32,
        hospital_level: i32,
    ) -> Result<Self, Invalid> {
        Ok(PolicyKey {
            insurance_type: InsuranceType::from_code(i64::from(insurance_type)).ok_or_else(
                || {
                    Invalid::new(
                        "insurance_type",
                        "must be INSURANCE_TYPE_EMPLOYEE (310) or INSURANCE_TYPE_RESIDENT (390)",
                    )
                },
            )?,
            person_type: PersonType::from_code(i64::from(person_type)).ok_or_else(|| {
                Invalid::new(
                    "person_type",
                    "must be PERSON_TYPE_IN_SERVICE or PERSON_TYPE_RETIRED",
                )
            })?,
            hospital_level: HospitalLevel::from_code(i64::from(hospital_level)).ok_or_else(
                || Invalid::new("hospital_level", "must be HOSPITAL_LEVEL_1, _2 or _3"),
            )?,
        })
    }
}

/// What a policy version says: the fund's terms.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PolicyTerms {
    /// Yearly deductible (起付线).
    pub deductible: Amount,
    /// The fund's share above the deductible (报销比例).
    pub reimbursement_ratio: Ratio,
    /// Yearly cap on what the fund pays (年度最高支付限额).
    pub annual_cap: Amount,
}

impl PolicyTerms {
    /// Refuses negative amounts; the ratio is in range by its type.
    pub fn new(
        deductible: Amount,
        reimbursement_ratio: Ratio,
        annual_cap: Amount,
    ) -> Result<Self, Invalid> {
        if deductible.is_negative() {
            return Err(Invalid::new("deductible", "must not be negative"));
        }
        if annual_cap.is_negative() {
            return Err(Invalid::new("annual_cap", "must not be negative"));
        }
        Ok(PolicyTerms {
            deductible,
            reimbursement_ratio,
            annual_cap,
        })
    }
}

/// A version of a policy as a bureau or a seed file gives it: in force from `effective_from`
/// until the next version of the same key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PolicyVersion {
    pub key: PolicyKey,
    pub terms: PolicyTerms,
    pub effective_from: Date,
}

impl PolicyVersion {
    /// "370100-310-1-3-2025-01-01": the insured city, the key's national codes, the first day.
    pub fn policy_id(&self, city: PoolCode) -> String {
        format!(
            "{city}-{}-{}-{}-{}",
            self.key.insurance_type as i64,
            self.key.person_type as i64,
            self.key.hospital_level as i64,
            self.effective_from
        )
    }
}

/// A version as recorded, with what only the store knows.
#[derive(Clone, Debug)]
pub(crate) struct RecordedPolicy {
    pub(crate) policy_id: String,
    pub(crate) city: PoolCode,
    pub(crate) version: PolicyVersion,
    /// The day before the next version's first day; `None` while it is the latest.
    pub(crate) effective_until: Option<Date>,
    pub(crate) recorded_at_ms: i64,
}

impl RecordedPolicy {
    pub(crate) fn to_wire(&self) -> pb::Policy {
        let version = &self.version;
        pb::Policy {
            policy_id: self.policy_id.clone(),
            insured_city: self.city.to_string(),
            insurance_type: match version.key.insurance_type {
                InsuranceType::Employee => identity_pb::InsuranceType::Employee,
                InsuranceType::Resident => identity_pb::InsuranceType::Resident,
            } as i32,
            person_type: match version.key.person_type {
                PersonType::InService => identity_pb::PersonType::InService,
                PersonType::Retired => identity_pb::PersonType::Retired,
            } as i32,
            hospital_level: version.key.hospital_level as i32,
            deductible: version.terms.deductible.to_string(),
            reimbursement_ratio: version.terms.reimbursement_ratio.to_string(),
            annual_cap: version.terms.annual_cap.to_string(),
            effective_from: version.effective_from.to_string(),
            effective_until: self
                .effective_until
                .map(|until| until.to_string())
                .unwrap_or_default(),
            recorded_at: Some(crate::timestamp(self.recorded_at_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the wire's enum numbers map onto the national codes, and unknown ones are refused
    // by field.
    #[test]
    fn key_from_wire() {
        let key = PolicyKey::from_wire(310, 2, 3).unwrap();
        assert_eq!(key.insurance_type, InsuranceType::Employee);
        assert_eq!(key.person_type, PersonType::Retired);
        assert_eq!(key.hospital_level, HospitalLevel::Three);
        assert_eq!(
            PolicyKey::from_wire(0, 1, 1).unwrap_err().field(),
            "insurance_type"
        );
        assert_eq!(
            PolicyKey::from_wire(390, 3, 1).unwrap_err().field(),
            "person_type"
        );
        assert_eq!(
            PolicyKey::from_wire(390, 1, 0).unwrap_err().field(),
            "hospital_level"
        );
        let version = PolicyVersion {
            key,
            terms: PolicyTerms::new(Amount::ZERO, Ratio::ONE, Amount::ZERO).unwrap(),
            effective_from: yitong_core::parse_date("2025-01-01").unwrap(),
        };
        assert_eq!(
            version.policy_id(PoolCode::parse("370100").unwrap()),
            "370100-310-2-3-2025-01-01"
        );
    }
}
