//! An insured person and the statuses that decide whether a lookup is answered.

use yitong_core::{Amount, CardNumber, CitizenId, Date, Invalid, PersonNo, PoolCode};
use yitong_proto::identity::v1 as pb;

/// Insurance status (national psn_insu_stas); the numbers are the national codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsuranceStatus {
    Active = 1,
    Suspended = 2,
    Terminated = 4,
}

impl InsuranceStatus {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Active),
            2 => Some(Self::Suspended),
            4 => Some(Self::Terminated),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
        }
    }
}

/// Card status as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardStatus {
    Active = 1,
    Lost = 2,
    Cancelled = 3,
}

impl CardStatus {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Active),
            2 => Some(Self::Lost),
            3 => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A person as their insured city's store knows them, with the status at one date.
#[derive(Debug, Clone)]
pub struct Person {
    pub person_no: PersonNo,
    /// Masked when stored; the full number is only in the sealed column.
    pub citizen_id_masked: String,
    pub name: String,
    /// national gend: 1 male, 2 female.
    pub sex: i64,
    pub birth_date: Date,
    /// national insutype: 310 or 390.
    pub insurance_type: i64,
    /// 1 in service, 2 retired.
    pub person_type: i64,
    pub insured_since: Date,
    pub account_balance: Amount,
    /// Status at the date asked about and the day it took effect; `None` before enrolment.
    pub status: Option<(InsuranceStatus, Date)>,
    /// The person's active card, if any.
    pub active_card: Option<CardNumber>,
}

impl Person {
    pub fn insured_city(&self) -> PoolCode {
        self.person_no.insured_city()
    }

    pub fn to_wire(&self) -> pb::InsuredPerson {
        let (status, since) = match self.status {
            Some((status, since)) => (status as i32, since.to_string()),
            None => (pb::InsuranceStatus::Unspecified as i32, String::new()),
        };
        pb::InsuredPerson {
            person_no: self.person_no.to_string(),
            citizen_id_masked: self.citizen_id_masked.clone(),
            name: self.name.clone(),
            sex: i32::try_from(self.sex).unwrap_or_default(),
            birth_date: self.birth_date.to_string(),
            insurance_type: i32::try_from(self.insurance_type).unwrap_or_default(),
            person_type: i32::try_from(self.person_type).unwrap_or_default(),
            insurance_status: status,
            insurance_status_since: since,
            insured_city: self.insured_city().to_string(),
            account_balance: self.account_balance.to_string(),
            card_number: self
                .active_card
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }
    }
}

/// A bureau's enrolment of a person, parsed and checked.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub citizen_id: CitizenId,
    pub name: String,
    /// national gend: 1 male, 2 female.
    pub sex: i64,
    /// national insutype: 310 or 390.
    pub insurance_type: i64,
    /// 1 in service, 2 retired.
    pub person_type: i64,
    pub insured_since: Date,
    pub account_balance: Amount,
}

/// Longest name accepted, in characters.
const NAME_CHARS_MAX: usize = 50;

impl TryFrom<Option<pb::PersonEnrolment>> for Enrolment {
    type Error = Invalid;

    fn try_from(enrolment: Option<pb::PersonEnrolment>) -> Result<Self, Invalid> {
        let enrolment =
            enrolment.ok_or_else(|| Invalid::new("person", "the person to enrol is required"))?;
        let citizen_id = CitizenId::parse(&enrolment.citizen_id)
            .map_err(|invalid| invalid.at("person.citizen_id"))?;
        let name = enrolment.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
            return Err(Invalid::new(
                "person.name",
                format!("must be 1 to {NAME_CHARS_MAX} characters"),
            ));
        }
        let sex = match pb::Sex::try_from(enrolment.sex) {
            Ok(pb::Sex::Male) => 1,
            Ok(pb::Sex::Female) => 2,
            _ => return Err(Invalid::new("person.sex", "must be SEX_MALE or SEX_FEMALE")),
        };
        let birth_date = yitong_core::parse_date(&enrolment.birth_date)
            .map_err(|invalid| invalid.at("person.birth_date"))?;
        if birth_date != citizen_id.birth_date() {
            return Err(Invalid::new(
                "person.birth_date",
                "differs from the birth date in the citizen ID",
            ));
        }
        let insurance_type = match pb::InsuranceType::try_from(enrolment.insurance_type) {
            Ok(pb::InsuranceType::Employee) => 310,
            Ok(pb::InsuranceType::Resident) => 390,
            _ => {
                return Err(Invalid::new(
                    "person.insurance_type",
                    "must be INSURANCE_TYPE_EMPLOYEE or INSURANCE_TYPE_RESIDENT",
                ));
            }
        };
        let person_type = match pb::PersonType::try_from(enrolment.person_type) {
            Ok(pb::PersonType::InService) => 1,
            Ok(pb::PersonType::Retired) => 2,
            _ => {
                return Err(Invalid::new(
                    "person.person_type",
                    "must be PERSON_TYPE_IN_SERVICE or PERSON_TYPE_RETIRED",
                ));
            }
        };
        let insured_since = yitong_core::parse_date(&enrolment.insured_since)
            .map_err(|invalid| invalid.at("person.insured_since"))?;
        if insured_since < birth_date {
            return Err(Invalid::new(
                "person.insured_since",
                "is before the birth date",
            ));
        }
        let account_balance = match enrolment.account_balance.as_str() {
            "" => Amount::ZERO,
            text => Amount::parse(text).map_err(|invalid| invalid.at("person.account_balance"))?,
        };
        if insurance_type == 390 && account_balance != Amount::ZERO {
            return Err(Invalid::new(
                "person.account_balance",
                "must be 0.00: residents have no personal account",
            ));
        }
        Ok(Enrolment {
            citizen_id,
            name,
            sex,
            insurance_type,
            person_type,
            insured_since,
            account_balance,
        })
    }
}

impl Enrolment {
    /// The first particular in which an enrolled person's record differs from this enrolment.
    pub fn differs_from(&self, person: &Person) -> Option<&'static str> {
        if person.name != self.name {
            Some("name")
        } else if person.sex != self.sex {
            Some("sex")
        } else if person.insurance_type != self.insurance_type {
            Some("insurance_type")
        } else if person.person_type != self.person_type {
            Some("person_type")
        } else {
            None
        }
    }
}
