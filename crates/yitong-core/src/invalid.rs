//! A refused input value, named by its field path, and its mapping to INVALID_ARGUMENT.

use tonic_types::{ErrorDetails, StatusExt};

/// One input field that failed validation.
///
/// The field path follows the request message ("credential.card_number", "lines[3].quantity"),
/// so an HIS developer finds the offending field without reading our code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    field: String,
    reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Nests this violation under a parent field: `credential` + `card_number`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// Renames the field, for values parsed before their place in the request is known.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl From<Invalid> for tonic::Status {
    fn from(invalid: Invalid) -> Self {
        let details = ErrorDetails::with_bad_request_violation(&invalid.field, &invalid.reason);
        tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            invalid.to_string(),
            details,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the field path reaches the client as a google.rpc.BadRequest detail.
    #[test]
    fn status_carries_the_field_path() {
        let status: tonic::Status = Invalid::new("card_number", "must be 15 digits")
            .within("credential")
            .into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let bad_request = status
            .get_details_bad_request()
            .expect("bad request detail");
        assert_eq!(
            bad_request.field_violations[0].field,
            "credential.card_number"
        );
        assert_eq!(
            status.message(),
            "credential.card_number: must be 15 digits"
        );
    }
}
