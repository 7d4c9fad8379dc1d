//! An insured person and the statuses that decide whether a lookup is answered.

use yitong_core::{Amount, CardNumber, CityCode, Date, PersonNo};
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
    pub fn insured_city(&self) -> CityCode {
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
