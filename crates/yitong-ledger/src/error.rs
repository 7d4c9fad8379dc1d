//! Everything the ledger can refuse or fail with, and its one mapping to gRPC.
//!
//! What depends on the ledger's state per transfer (an unknown account, a transfer that exists
//! otherwise, a voided transfer posted) is not an error: it is a result in the reply, one per
//! transfer, as TigerBeetle answers. Errors refuse a whole request.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::{Invalid, PoolCode};
use yitong_rpc::invalid_argument;
use yitong_store::replies::ReplyError;

use crate::balance::Unbalanced;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no account {0}")]
    AccountNotFound(String),
    #[error("{0}")]
    RowNotFound(String),
    #[error("the ledger has no account of city {0}")]
    CityNotFound(PoolCode),
    #[error("message id {0} was already used for a different request")]
    MessageConflict(String),
    #[error("up_to_sequence {requested} is beyond the journal's {head} entries")]
    BeyondHead { requested: u64, head: u64 },
    /// A business refusal (a run still open, a period closed): FAILED_PRECONDITION with a
    /// machine-readable reason in google.rpc.ErrorInfo, so a bureau's tool can tell them apart.
    #[error("{message}")]
    Refused {
        reason: &'static str,
        message: String,
    },
    #[error("storage failed")]
    Store(#[from] yitong_store::sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Unbalanced(#[from] Unbalanced),
}

impl From<ReplyError> for LedgerError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Conflict(message_id) => LedgerError::MessageConflict(message_id),
            ReplyError::Store(error) => LedgerError::Store(error),
            ReplyError::Corrupt(message_id) => {
                LedgerError::Corrupt(format!("reply to message id {message_id}"))
            }
        }
    }
}

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Status {
        let code = match &error {
            LedgerError::Invalid(invalid) => return invalid_argument(invalid.clone()),
            LedgerError::AccountNotFound(_)
            | LedgerError::CityNotFound(_)
            | LedgerError::RowNotFound(_) => Code::NotFound,
            LedgerError::MessageConflict(_) => Code::AlreadyExists,
            LedgerError::BeyondHead { .. } => Code::OutOfRange,
            LedgerError::Refused { reason, message } => {
                let details =
                    ErrorDetails::with_error_info(*reason, "yitong.ledger", HashMap::new());
                return Status::with_error_details(
                    Code::FailedPrecondition,
                    message.clone(),
                    details,
                );
            }
            LedgerError::Store(_) | LedgerError::Corrupt(_) | LedgerError::Unbalanced(_) => {
                tracing::error!(error = %yitong_core::cause_chain(&error), "ledger request failed");
                return Status::internal("internal error");
            }
        };
        Status::new(code, error.to_string())
    }
}
