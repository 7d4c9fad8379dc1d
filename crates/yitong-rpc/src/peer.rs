//! What another node's answer means to the node that asked: a peer's gRPC status mapped onto
//! the three things the asking node can do about it, so no foreign field path, permission
//! error or internal failure of a peer reaches an HIS as if it were its own.

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// How a call to another node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    /// The peer could not answer now: unreachable, past its deadline, shedding load, or asking
    /// for a retry. The caller's own answer is UNAVAILABLE: the same request may be sent again.
    Unavailable,
    /// The peer refused for a business reason about the request's own subject (a lost card, a
    /// suspended person, a settlement not found): its status, code, message and details, is
    /// the caller's answer too.
    Refused,
    /// The peer answered what a correct node never makes it answer (a malformed request, a
    /// permission it should have had, its own internal failure): logged, and INTERNAL to the
    /// caller.
    Internal,
}

impl PeerFault {
    /// Classifies a peer's status. An INVALID_ARGUMENT is the caller's own fault only when
    /// every field it names is one the asking node forwarded unchanged from its caller (the
    /// HIS's `credential`, say): `forwarded` lists those fields' paths.
    pub fn of(status: &Status, forwarded: &[&str]) -> PeerFault {
        if broke_under_the_call(status) {
            return PeerFault::Unavailable;
        }
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted => PeerFault::Unavailable,
            Code::FailedPrecondition | Code::NotFound | Code::OutOfRange => PeerFault::Refused,
            Code::InvalidArgument if names_only(status, forwarded) => PeerFault::Refused,
            _ => PeerFault::Internal,
        }
    }
}

/// True when the status is not the peer's answer but this node's own client's, for an HTTP/2
/// stream or connection that broke under the call (the peer's process died, or the link went):
/// tonic makes those INTERNAL "h2 protocol error", with the h2 error in its source chain (its
/// source, or under the hyper or transport error that is). The peer may or may not have done
/// what was asked, as when it does not answer at all; a peer's own status comes off the wire
/// and has no source.
fn broke_under_the_call(status: &Status) -> bool {
    std::iter::successors(std::error::Error::source(status), |error| error.source())
        .any(|error| error.is::<h2::Error>())
}

/// True when the status names at least one field and every one is under a forwarded path.
fn names_only(status: &Status, forwarded: &[&str]) -> bool {
    let Some(bad_request) = status.get_details_bad_request() else {
        return false;
    };
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|violation| violation.field.as_str())
        .collect();
    !fields.is_empty()
        && fields.iter().all(|field| {
            forwarded.iter().any(|prefix| {
                field == prefix
                    || field
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, FieldViolation};

    fn invalid(field: &str) -> Status {
        let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(field, "is wrong")]);
        Status::with_error_details(Code::InvalidArgument, "bad", details)
    }

    /// Proves each code lands in its class, and a field path passes through only when the
    /// asking node forwarded that field.
    #[test]
    fn statuses_map_onto_three_faults() {
        let table = [
            (Status::unavailable("down"), PeerFault::Unavailable),
            (Status::deadline_exceeded("slow"), PeerFault::Unavailable),
            (Status::resource_exhausted("busy"), PeerFault::Unavailable),
            (Status::aborted("again"), PeerFault::Unavailable),
            (Status::failed_precondition("lost card"), PeerFault::Refused),
            (Status::not_found("no person"), PeerFault::Refused),
            (Status::permission_denied("no"), PeerFault::Internal),
            (Status::internal("boom"), PeerFault::Internal),
            (Status::already_exists("twice"), PeerFault::Internal),
            (Status::invalid_argument("no details"), PeerFault::Internal),
            (invalid("credential.card_number"), PeerFault::Refused),
            (invalid("credential"), PeerFault::Refused),
            (invalid("claim.person_no"), PeerFault::Internal),
            (invalid("credentials"), PeerFault::Internal),
        ];
        for (status, fault) in table {
            assert_eq!(PeerFault::of(&status, &["credential"]), fault, "{status:?}");
        }
    }

    /// A client error with an h2 error beneath it, as hyper's "http2 error" is.
    #[derive(Debug)]
    struct Wrapper(h2::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("http2 error")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Proves a stream that broke under the call (this client's own INTERNAL, its source an h2
    /// error) is the peer's unavailability, while a peer's INTERNAL answer stays internal.
    #[test]
    fn a_broken_stream_is_unavailability_not_the_peer_s_failure() {
        let mut broken = Status::internal("h2 protocol error: http2 error");
        broken.set_source(std::sync::Arc::new(h2::Error::from(
            h2::Reason::INTERNAL_ERROR,
        )));
        assert_eq!(PeerFault::of(&broken, &[]), PeerFault::Unavailable);
        // As hyper reports it: the h2 error under the client's own error.
        let mut wrapped = Status::internal("h2 protocol error: http2 error");
        wrapped.set_source(std::sync::Arc::new(Wrapper(h2::Error::from(
            h2::Reason::PROTOCOL_ERROR,
        ))));
        assert_eq!(PeerFault::of(&wrapped, &[]), PeerFault::Unavailable);
        assert_eq!(
            PeerFault::of(&Status::internal("h2 protocol error: http2 error"), &[]),
            PeerFault::Internal
        );
    }
}
