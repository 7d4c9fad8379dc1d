//! The gRPC edge every Yitong service shares: the caller of a request, invalid arguments as
//! statuses, wire timestamps, channels to peers, what a peer's answer means, and what each caller
//! sees of the records a read returns (`visibility`).
//!
//! The domain types these speak of are `yitong-core`'s, which knows nothing of the transport.

mod caller;
mod channel;
mod invalid;
mod peer;
mod timestamp;
pub mod visibility;

pub use caller::{BadCaller, Caller, Denied, Role};
pub use channel::{
    Authorized, CallLimits, POOL_METADATA, PeerAccess, PeerChannel, bearer, peer_channel,
    pool_header,
};
pub use invalid::invalid_argument;
pub use peer::PeerFault;
pub use timestamp::{ms_of_timestamp, timestamp_of_ms};
