//! Everything the treatment side can refuse or fail with, and its one mapping to gRPC.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::Invalid;
use yitong_rpc::{PeerFault, invalid_argument};
use yitong_store::replies::ReplyError;

use crate::split::SplitError;

#[derive(Debug, thiserror::Error)]
pub enum TreatmentError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    /// The request's institution is not the one the visit or settlement belongs to.
    #[error("{what} {id} belongs to another institution")]
    NotYours { what: &'static str, id: String },
    /// A business refusal, with its machine-readable reason (google.rpc.ErrorInfo).
    #[error("{message}")]
    Refused {
        reason: &'static str,
        message: String,
    },
    #[error("message id {0} was already used for a different request")]
    MessageConflict(String),
    /// The first call under a replayed message id is still running: retry the same id.
    #[error("{0}")]
    InProgress(String),
    #[error("{what} {id} already exists")]
    AlreadyExists { what: &'static str, id: String },
    /// Another node refused for a business reason; its status reaches the HIS unchanged (a
    /// lost card, a suspended person, an insured city's refusal).
    #[error("{service} answered: {}", status.message())]
    Remote {
        service: &'static str,
        status: Status,
    },
    #[error("{service} cannot be reached")]
    Unavailable {
        service: &'static str,
        status: Status,
    },
    #[error("storage failed")]
    Store(#[from] yitong_store::sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Another node answered what it should never answer.
    #[error("{0}")]
    Peer(String),
}

impl TreatmentError {
    pub fn refused(reason: &'static str, message: impl Into<String>) -> Self {
        TreatmentError::Refused {
            reason,
            message: message.into(),
        }
    }

    /// A call to another node failed: see [`PeerFault`]. Only the HIS's own `credential`,
    /// which this node forwards unchanged to identity, may come back as the HIS's invalid
    /// argument.
    pub fn remote(service: &'static str, status: Status) -> Self {
        match PeerFault::of(&status, &["credential"]) {
            PeerFault::Unavailable => {
                tracing::warn!(service, code = ?status.code(), message = status.message(), "peer call failed");
                TreatmentError::Unavailable { service, status }
            }
            PeerFault::Refused => TreatmentError::Remote { service, status },
            PeerFault::Internal => TreatmentError::Peer(format!(
                "{service} answered {:?}: {}",
                status.code(),
                status.message()
            )),
        }
    }
}

impl TreatmentError {
    /// The reason a Settle that ended in this error is counted under as refused (one of
    /// `yitong_telemetry::refusal_reasons`): a business refusal's own reason, whether this node
    /// refused or a peer did (its google.rpc.ErrorInfo), else the status class it is answered
    /// with; `None` for what refuses no settlement: a message id reused for another request,
    /// or a first call still in progress.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        Some(match self {
            TreatmentError::Invalid(_) => "INVALID_ARGUMENT",
            TreatmentError::NotFound { .. } => "NOT_FOUND",
            TreatmentError::NotYours { .. } => "PERMISSION_DENIED",
            TreatmentError::Refused { reason, .. } => yitong_telemetry::business_refusal(reason),
            TreatmentError::Remote { status, .. } => match status.code() {
                Code::NotFound => "NOT_FOUND",
                Code::InvalidArgument => "INVALID_ARGUMENT",
                _ => status
                    .get_details_error_info()
                    .map_or("FAILED_PRECONDITION", |info| {
                        yitong_telemetry::business_refusal(&info.reason)
                    }),
            },
            TreatmentError::Unavailable { .. } => "UNAVAILABLE",
            TreatmentError::Store(store) if yitong_store::is_contention(store) => "UNAVAILABLE",
            TreatmentError::Store(_) | TreatmentError::Corrupt(_) | TreatmentError::Peer(_) => {
                "INTERNAL"
            }
            TreatmentError::MessageConflict(_)
            | TreatmentError::AlreadyExists { .. }
            | TreatmentError::InProgress(_) => return None,
        })
    }
}

impl From<SplitError> for TreatmentError {
    fn from(error: SplitError) -> Self {
        TreatmentError::Invalid(Invalid::new(error.field(), error.to_string()))
    }
}

impl From<ReplyError> for TreatmentError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Conflict(message_id) => TreatmentError::MessageConflict(message_id),
            ReplyError::Store(error) => TreatmentError::Store(error),
            ReplyError::Corrupt(message_id) => {
                TreatmentError::Corrupt(format!("reply to message id {message_id}"))
            }
        }
    }
}

impl From<TreatmentError> for Status {
    fn from(error: TreatmentError) -> Status {
        match error {
            TreatmentError::Invalid(invalid) => invalid_argument(invalid),
            TreatmentError::Remote { status, .. } => status,
            TreatmentError::NotFound { .. } => Status::not_found(error.to_string()),
            TreatmentError::NotYours { .. } => Status::permission_denied(error.to_string()),
            TreatmentError::Refused {
                reason,
                ref message,
            } => {
                let details =
                    ErrorDetails::with_error_info(reason, "yitong.settlement", HashMap::new());
                Status::with_error_details(Code::FailedPrecondition, message.clone(), details)
            }
            TreatmentError::MessageConflict(_) | TreatmentError::AlreadyExists { .. } => {
                Status::already_exists(error.to_string())
            }
            TreatmentError::Unavailable { .. } => Status::unavailable(error.to_string()),
            TreatmentError::InProgress(message) => {
                let details = ErrorDetails::with_error_info(
                    "SETTLEMENT_IN_PROGRESS",
                    "yitong.settlement",
                    HashMap::new(),
                );
                Status::with_error_details(Code::Aborted, message, details)
            }
            TreatmentError::Store(ref store) if yitong_store::is_contention(store) => {
                tracing::warn!(error = %yitong_core::cause_chain(&error), "storage busy");
                Status::unavailable("storage is busy: send the same request again")
            }
            TreatmentError::Store(_) | TreatmentError::Corrupt(_) | TreatmentError::Peer(_) => {
                tracing::error!(error = %yitong_core::cause_chain(&error), "settlement request failed");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_refusal(code: Code, reason: &str) -> TreatmentError {
        let details = ErrorDetails::with_error_info(reason, "yitong.identity", HashMap::new());
        TreatmentError::Remote {
            service: "identity",
            status: Status::with_error_details(code, "refused", details),
        }
    }

    #[test]
    fn a_refusal_is_counted_under_its_business_reason_wherever_it_was_refused() {
        let here = TreatmentError::refused("VISIT_SETTLED", "the visit is settled");
        assert_eq!(here.refusal_reason(), Some("VISIT_SETTLED"));
        let at_peer = peer_refusal(Code::FailedPrecondition, "INSURANCE_SUSPENDED");
        assert_eq!(at_peer.refusal_reason(), Some("INSURANCE_SUSPENDED"));
        let at_insured_city = peer_refusal(Code::FailedPrecondition, "NOT_FILED");
        assert_eq!(at_insured_city.refusal_reason(), Some("NOT_FILED"));
    }

    #[test]
    fn an_unlisted_reason_is_counted_under_its_class_so_no_peer_grows_the_label_set() {
        let unlisted = peer_refusal(Code::FailedPrecondition, "SOMETHING_NEW");
        assert_eq!(unlisted.refusal_reason(), Some("FAILED_PRECONDITION"));
        let no_details = TreatmentError::Remote {
            service: "identity",
            status: Status::failed_precondition("refused"),
        };
        assert_eq!(no_details.refusal_reason(), Some("FAILED_PRECONDITION"));
        let not_found = peer_refusal(Code::NotFound, "CARD_LOST");
        assert_eq!(not_found.refusal_reason(), Some("NOT_FOUND"));
        let mine = TreatmentError::refused("SOMETHING_LOCAL", "refused");
        assert_eq!(mine.refusal_reason(), Some("FAILED_PRECONDITION"));
    }
}
