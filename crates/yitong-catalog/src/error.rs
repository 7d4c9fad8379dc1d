//! Everything the catalog service can refuse or fail with, and its one mapping to gRPC.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::{Date, Invalid, PoolCode};
use yitong_rpc::invalid_argument;
use yitong_store::replies::ReplyError;

use crate::ItemCode;

/// A publication or policy rule that the catalog as it stands does not let a request keep.
/// `field` is the request's path to the value at fault ("changed[2].valid_from").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An addition of a code the catalog already covers on its `valid_from`.
    ItemAlreadyListed,
    /// A change or withdrawal of a code the catalog does not cover on its date.
    ItemNotListed,
    /// A change that would not take effect after the code's latest published change.
    ItemChangeNotAfterLatest,
    /// A policy version that would not take effect after the latest version of its key.
    PolicyNotAfterLatest,
}

impl Refusal {
    /// Machine-readable reason (google.rpc.ErrorInfo), so a bureau's tool can tell refusals
    /// apart without parsing our messages.
    fn reason(self) -> &'static str {
        match self {
            Refusal::ItemAlreadyListed => "ITEM_ALREADY_LISTED",
            Refusal::ItemNotListed => "ITEM_NOT_LISTED",
            Refusal::ItemChangeNotAfterLatest => "ITEM_CHANGE_NOT_AFTER_LATEST",
            Refusal::PolicyNotAfterLatest => "POLICY_NOT_AFTER_LATEST",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A value well formed but beyond what the service holds (a version it has not reached).
    #[error("{0}")]
    OutOfRange(Invalid),
    #[error("{field}: {message}")]
    Refused {
        refusal: Refusal,
        field: String,
        message: String,
    },
    #[error(
        "no policy of {city} for this insurance type, person type and level is in force on {date}"
    )]
    NoPolicy { city: PoolCode, date: Date },
    #[error("no designated institution {0}")]
    NoInstitution(String),
    #[error("city {0} does not take part in cross-city settlement")]
    CityNotEnabled(PoolCode),
    /// A forwarded request about a city other than the receiver's: the networks' files disagree.
    #[error("this node answers for {own} only, not for {asked}")]
    NotThisCity { own: PoolCode, asked: PoolCode },
    #[error("message id {0} was already used for a different request")]
    MessageIdReused(String),
    /// The other city answered with a refusal; it reaches the caller unchanged.
    #[error("city {city} answered: {}", status.message())]
    Remote { city: PoolCode, status: Status },
    #[error("city {city} cannot be reached")]
    Unavailable { city: PoolCode, status: Status },
    /// The other city answered what a correct node never makes it answer (its own internal
    /// failure, a permission this node should have had): logged, and INTERNAL to the caller
    /// without the peer's words.
    #[error("city {city} failed: {detail}")]
    Peer { city: PoolCode, detail: String },
    #[error("storage failed")]
    Store(#[from] yitong_store::sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl CatalogError {
    pub(crate) fn refused(refusal: Refusal, field: String, code: &ItemCode, what: String) -> Self {
        CatalogError::Refused {
            refusal,
            field,
            message: format!("item {code} {what}"),
        }
    }

    /// Machine-readable reason of a refusal about cities (publication and policy refusals carry
    /// theirs with the field they concern).
    fn reason(&self) -> Option<&'static str> {
        match self {
            CatalogError::CityNotEnabled(_) => Some("CITY_NOT_ENABLED"),
            CatalogError::NotThisCity { .. } => Some("NOT_THIS_CITY"),
            _ => None,
        }
    }
}

impl From<ReplyError> for CatalogError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Conflict(message_id) => CatalogError::MessageIdReused(message_id),
            ReplyError::Store(error) => CatalogError::Store(error),
            ReplyError::Corrupt(message_id) => {
                CatalogError::Corrupt(format!("the stored reply to {message_id} is unreadable"))
            }
        }
    }
}

impl From<CatalogError> for Status {
    fn from(error: CatalogError) -> Status {
        let code = match &error {
            CatalogError::Invalid(invalid) => return invalid_argument(invalid.clone()),
            CatalogError::OutOfRange(invalid) => {
                let details =
                    ErrorDetails::with_bad_request_violation(invalid.field(), invalid.reason());
                return Status::with_error_details(Code::OutOfRange, error.to_string(), details);
            }
            CatalogError::Remote { status, .. } => return status.clone(),
            CatalogError::Refused {
                refusal,
                field,
                message,
            } => {
                let mut details = ErrorDetails::with_error_info(
                    refusal.reason(),
                    "yitong.catalog",
                    HashMap::new(),
                );
                details.add_precondition_failure_violation(refusal.reason(), field, message);
                return Status::with_error_details(
                    Code::FailedPrecondition,
                    error.to_string(),
                    details,
                );
            }
            CatalogError::NoPolicy { .. } | CatalogError::NoInstitution(_) => Code::NotFound,
            CatalogError::CityNotEnabled(_) | CatalogError::NotThisCity { .. } => {
                Code::FailedPrecondition
            }
            CatalogError::MessageIdReused(_) => Code::AlreadyExists,
            CatalogError::Unavailable { .. } => Code::Unavailable,
            CatalogError::Store(_) | CatalogError::Corrupt(_) | CatalogError::Peer { .. } => {
                tracing::error!(error = %yitong_core::cause_chain(&error), "catalog request failed");
                return Status::internal("internal error");
            }
        };
        match error.reason() {
            Some(reason) => {
                let details =
                    ErrorDetails::with_error_info(reason, "yitong.catalog", HashMap::new());
                Status::with_error_details(code, error.to_string(), details)
            }
            None => Status::new(code, error.to_string()),
        }
    }
}
