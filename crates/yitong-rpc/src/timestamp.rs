//! Instants as the wire carries them.

/// An instant in milliseconds since the Unix epoch as the wire's `google.protobuf.Timestamp`.
pub fn timestamp_of_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1_000),
        nanos: i32::try_from(ms.rem_euclid(1_000) * 1_000_000)
            .expect("below a billion nanoseconds"),
    }
}
