//! The transport limits every server keeps, whatever its service: how large a message may be,
//! how many streams one connection may open, how large its metadata may be.
//!
//! A hostile or broken client must not make a server allocate without bound: tonic refuses a
//! message above the decoding limit with OUT_OF_RANGE before decoding it, and h2 refuses
//! streams and headers above theirs at the connection.

/// Largest request message a server decodes. The largest requests are catalog publications
/// (`ChangeSet::CHANGES_MAX` changes) and clearing confirmations, well under this.
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest reply message a server encodes: what every tonic client accepts by default, so a
/// larger reply would be refused by the caller anyway.
pub const REPLY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Streams one HTTP/2 connection may have open at once; above the server's own limit of calls
/// in flight (`shed::ENTRY_CALLS_IN_FLIGHT_MAX`), so a single connection can still reach that
/// limit and be shed rather than queued.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// Largest header block (metadata) of one call, in bytes; hyper's default is 16 MiB.
pub const HEADER_LIST_BYTES_MAX: u32 = 64 * 1024;
/// Applies the message size limits to a generated service server.
macro_rules! limited {
    ($server:expr) => {
        $server
            .max_decoding_message_size($crate::limits::REQUEST_BYTES_MAX)
            .max_encoding_message_size($crate::limits::REPLY_BYTES_MAX)
    };
}
pub(crate) use limited;
