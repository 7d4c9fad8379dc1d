//! Everything the benefit service can refuse or fail with, and its one mapping to gRPC.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::Invalid;
use yitong_rpc::{PeerFault, invalid_argument};

use crate::split::SplitError;

#[derive(Debug, thiserror::Error)]
pub enum BenefitError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no reservation for settlement {0}")]
    NotFound(String),
    #[error("settlement id {0} is already held for another claim")]
    Conflict(String),
    /// A business refusal, with its machine-readable reason.
    #[error("{message}")]
    Refused {
        reason: &'static str,
        message: String,
    },
    /// Identity or catalog of this city refused; the refusal reaches the caller unchanged.
    #[error("{}", .0.message())]
    Upstream(Status),
    #[error("{what} of this city cannot be reached")]
    Unavailable { what: &'static str, status: Status },
    #[error("storage failed")]
    Store(#[from] yitong_store::sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Another node answered what it should never answer (as `TreatmentError::Peer`).
    #[error("{0}")]
    Peer(String),
}

impl BenefitError {
    pub fn refused(reason: &'static str, message: impl Into<String>) -> Self {
        BenefitError::Refused {
            reason,
            message: message.into(),
        }
    }

    /// A service of this city answered a call: see [`PeerFault`]. A business refusal passes
    /// through; silence or load is UNAVAILABLE; anything else is this city's own failure.
    pub fn upstream(what: &'static str, status: Status) -> Self {
        match PeerFault::of(&status, &[]) {
            PeerFault::Unavailable => {
                tracing::warn!(service = what, code = ?status.code(), "call failed");
                BenefitError::Unavailable { what, status }
            }
            PeerFault::Refused => BenefitError::Upstream(status),
            PeerFault::Internal => BenefitError::Peer(format!(
                "{what} answered {:?}: {}",
                status.code(),
                status.message()
            )),
        }
    }
}

impl From<SplitError> for BenefitError {
    fn from(error: SplitError) -> Self {
        BenefitError::Invalid(Invalid::new(error.field(), error.to_string()))
    }
}

impl From<BenefitError> for Status {
    fn from(error: BenefitError) -> Status {
        match error {
            BenefitError::Invalid(invalid) => invalid_argument(invalid),
            BenefitError::Upstream(status) => status,
            BenefitError::NotFound(_) => Status::not_found(error.to_string()),
            BenefitError::Conflict(_) => Status::already_exists(error.to_string()),
            BenefitError::Refused {
                reason,
                ref message,
            } => {
                let details =
                    ErrorDetails::with_error_info(reason, "yitong.settlement", HashMap::new());
                Status::with_error_details(Code::FailedPrecondition, message.clone(), details)
            }
            BenefitError::Unavailable { .. } => Status::unavailable(error.to_string()),
            BenefitError::Store(ref store) if yitong_store::is_contention(store) => {
                tracing::warn!(error = %yitong_core::cause_chain(&error), "storage busy");
                Status::unavailable("storage is busy: send the same request again")
            }
            BenefitError::Store(_) | BenefitError::Corrupt(_) | BenefitError::Peer(_) => {
                tracing::error!(error = %yitong_core::cause_chain(&error), "benefit request failed");
                Status::internal("internal error")
            }
        }
    }
}
