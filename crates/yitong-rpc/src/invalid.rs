//! A refused input value as the caller sees it: INVALID_ARGUMENT with the field path.

use tonic_types::{ErrorDetails, StatusExt};
use yitong_core::Invalid;

/// INVALID_ARGUMENT naming the field in a `google.rpc.BadRequest` detail, so an HIS developer
/// finds the offending field without reading our code.
pub fn invalid_argument(invalid: Invalid) -> tonic::Status {
    let details = ErrorDetails::with_bad_request_violation(invalid.field(), invalid.reason());
    tonic::Status::with_error_details(tonic::Code::InvalidArgument, invalid.to_string(), details)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the field path reaches the client as a google.rpc.BadRequest detail.
    #[test]
    fn status_carries_the_field_path() {
        let status =
            invalid_argument(Invalid::new("card_number", "must be 15 digits").within("credential"));
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
