//! Everything the identity service can refuse or fail with, and its one mapping to gRPC.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::{CardNumber, Date, Invalid, PersonNo, PoolCode};
use yitong_rpc::invalid_argument;
use yitong_store::replies::ReplyError;

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
    CityNotEnabled(PoolCode),
    #[error("e-voucher expired: ask the patient to refresh the code")]
    EVoucherExpired,
    #[error("the person already holds active card {0}: reissue it instead")]
    AlreadyHoldsCard(CardNumber),
    #[error("person.{0} differs from the enrolled person's record")]
    ParticularsDiffer(&'static str),
    #[error("{what} belongs to city {owner}: only that city acts for it")]
    NotOurs { what: String, owner: PoolCode },
    #[error("the personal account of person {0} does not cover the amount")]
    AccountInsufficient(PersonNo),
    #[error("message id {0} was already used for a different request")]
    MessageConflict(String),
    /// The issuing city answered with a refusal; it reaches the HIS unchanged.
    #[error("issuing city {city} answered: {}", status.message())]
    Remote { city: PoolCode, status: Status },
    #[error("issuing city {city} cannot be reached")]
    Unavailable { city: PoolCode, status: Status },
    /// The issuing city answered what a correct node never makes it answer (its own internal
    /// failure, a permission this node should have had): logged, and INTERNAL to the caller
    /// without the peer's words.
    #[error("issuing city {city} failed: {detail}")]
    Peer { city: PoolCode, detail: String },
    #[error("storage failed")]
    Store(#[from] yitong_store::sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl From<ReplyError> for IdentityError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Conflict(message_id) => IdentityError::MessageConflict(message_id),
            ReplyError::Store(error) => IdentityError::Store(error),
            ReplyError::Corrupt(message_id) => {
                IdentityError::Corrupt(format!("reply to message id {message_id}"))
            }
        }
    }
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
            IdentityError::EVoucherExpired => Some("E_VOUCHER_EXPIRED"),
            IdentityError::AlreadyHoldsCard(_) => Some("ALREADY_HOLDS_CARD"),
            IdentityError::ParticularsDiffer(_) => Some("PARTICULARS_DIFFER"),
            IdentityError::NotOurs { .. } => Some("NOT_ISSUED_HERE"),
            IdentityError::AccountInsufficient(_) => Some("ACCOUNT_INSUFFICIENT"),
            _ => None,
        }
    }
}

impl From<IdentityError> for Status {
    fn from(error: IdentityError) -> Status {
        let code = match &error {
            IdentityError::Invalid(invalid) => return invalid_argument(invalid.clone()),
            IdentityError::Remote { status, .. } => return status.clone(),
            IdentityError::NotFound(_) => Code::NotFound,
            IdentityError::CardLost(_)
            | IdentityError::CardCancelled(_)
            | IdentityError::NotEntitled { .. }
            | IdentityError::NotInsuredOn { .. }
            | IdentityError::CityNotEnabled(_)
            | IdentityError::EVoucherExpired
            | IdentityError::AlreadyHoldsCard(_)
            | IdentityError::ParticularsDiffer(_)
            | IdentityError::NotOurs { .. }
            | IdentityError::AccountInsufficient(_) => Code::FailedPrecondition,
            IdentityError::MessageConflict(_) => Code::AlreadyExists,
            IdentityError::Unavailable { .. } => Code::Unavailable,
            IdentityError::Store(_) | IdentityError::Corrupt(_) | IdentityError::Peer { .. } => {
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
