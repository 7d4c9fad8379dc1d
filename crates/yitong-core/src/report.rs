//! Helpers for reporting failures and reaching other nodes.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// The error and its causes, one after another, for a log line: "storage failed: pool timed out".
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// Limits on every call one node makes to another.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Deadline of one call, end to end.
    pub call_timeout_ms: u64,
    /// Deadline for establishing the connection.
    pub connect_timeout_ms: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            call_timeout_ms: 3_000,
            connect_timeout_ms: 1_000,
        }
    }
}

/// A channel to another node: every call has a client span and carries its trace context.
pub type PeerChannel = yitong_telemetry::grpc::Traced<Channel>;

/// A channel to another node that connects on first use and reconnects after failures, with a
/// deadline on every call, so a node never waits without bound on a peer.
pub fn peer_channel(
    endpoint: &str,
    limits: CallLimits,
) -> Result<PeerChannel, tonic::transport::Error> {
    Ok(yitong_telemetry::grpc::Traced::new(
        Endpoint::from_shared(endpoint.to_owned())?
            .timeout(Duration::from_millis(limits.call_timeout_ms))
            .connect_timeout(Duration::from_millis(limits.connect_timeout_ms))
            .tcp_nodelay(true)
            .connect_lazy(),
    ))
}
