//! Everything the identity service can refuse or fail with, and its one mapping to gRPC.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::{CardNumber, CityCode, Date, Invalid, PersonNo};

use crate::InsuranceStatus;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no insured person for this {0}")]
    NotFound(&'static str),
    #[error("card {0} is reported lost")]
    CardLost(CardNumber),
    #[error("card {0} is cancelled")]
    CardCancelled(CardNumber),
    #[error("insurance of person {person_no} is {} since {since}", status.word())]
    NotEntitled {
        person_no: PersonNo,
        status: InsuranceStatus,
        since: Date,
    },
    #[error("person {person_no} is not insured on {date}")]
    NotInsuredOn { person_no: PersonNo, date: Date },
    #[error("city {0} does not take part in cross-city settlement")]
    CityNotEnabled(CityCode),
    #[error("{0}")]
    Unimplemented(&'static str),
    /// The issuing city answered with a refusal; it reaches the HIS unchanged.
    #[error("issuing city {city} answered: {}", status.message())]
    Remote { city: CityCode, status: Status },
    #[error("issuing city {city} cannot be reached")]
    Unavailable { city: CityCode, status: Status },
    #[error("storage failed")]
    Store(#[from] yitong_store::sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl IdentityError {
    /// Machine-readable reason for a business refusal (google.rpc.ErrorInfo), so an HIS can
    /// show the right message without parsing ours.
    fn reason(&self) -> Option<&'static str> {
        match self {
            IdentityError::CardLost(_) => Some("CARD_LOST"),
            IdentityError::CardCancelled(_) => Some("CARD_CANCELLED"),
            IdentityError::NotEntitled {
                status: InsuranceStatus::Suspended,
                ..
            } => Some("INSURANCE_SUSPENDED"),
            IdentityError::NotEntitled { .. } => Some("INSURANCE_TERMINATED"),
            IdentityError::NotInsuredOn { .. } => Some("NOT_INSURED_ON_DATE"),
            IdentityError::CityNotEnabled(_) => Some("CITY_NOT_ENABLED"),
            _ => None,
        }
    }
}

impl From<IdentityError> for Status {
    fn from(error: IdentityError) -> Status {
        let code = match &error {
            IdentityError::Invalid(invalid) => return invalid.clone().into(),
            IdentityError::Remote { status, .. } => return status.clone(),
            IdentityError::NotFound(_) => Code::NotFound,
            IdentityError::CardLost(_)
            | IdentityError::CardCancelled(_)
            | IdentityError::NotEntitled { .. }
            | IdentityError::NotInsuredOn { .. }
            | IdentityError::CityNotEnabled(_) => Code::FailedPrecondition,
            IdentityError::Unimplemented(_) => Code::Unimplemented,
            IdentityError::Unavailable { .. } => Code::Unavailable,
            IdentityError::Store(_) | IdentityError::Corrupt(_) => {
                tracing::error!(error = %yitong_core::cause_chain(&error), "identity request failed");
                return Status::internal("internal error");
            }
        };
        match error.reason() {
            Some(reason) => {
                let details =
                    ErrorDetails::with_error_info(reason, "yitong.identity", HashMap::new());
                Status::with_error_details(code, error.to_string(), details)
            }
            None => Status::new(code, error.to_string()),
        }
    }
}
