//! Instants as the wire carries them.

use yitong_core::Invalid;

/// The earliest and latest seconds a `google.protobuf.Timestamp` may hold: 0001-01-01T00:00:00Z
/// and 9999-12-31T23:59:59Z, as the type's definition says.
const SECONDS_MIN: i64 = -62_135_596_800;
const SECONDS_MAX: i64 = 253_402_300_799;
/// Nanos run from 0 to this, whatever the sign of the seconds.
const NANOS_MAX: i32 = 999_999_999;

/// An instant in milliseconds since the Unix epoch as the wire's `google.protobuf.Timestamp`.
pub fn timestamp_of_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1_000),
        nanos: i32::try_from(ms.rem_euclid(1_000) * 1_000_000)
            .expect("below a billion nanoseconds"),
    }
}

/// A wire `google.protobuf.Timestamp` as milliseconds since the Unix epoch (nanos below a
/// millisecond dropped). A value the type cannot hold (seconds before 0001-01-01 or after
/// 9999-12-31, nanos outside 0 to 999,999,999) is refused as out of range, with an empty field
/// path for the caller to name (`Invalid::at`); whether the instant makes sense for the request
/// is the request's own check.
pub fn ms_of_timestamp(value: &prost_types::Timestamp) -> Result<i64, Invalid> {
    if !(SECONDS_MIN..=SECONDS_MAX).contains(&value.seconds)
        || !(0..=NANOS_MAX).contains(&value.nanos)
    {
        return Err(Invalid::new(
            "",
            "is out of range: a Timestamp holds 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, \
             with nanos from 0 to 999999999",
        ));
    }
    // In range, seconds x 1000 is within ±2.6e14: no overflow.
    Ok(value.seconds * 1_000 + i64::from(value.nanos / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    // Proves the conversion keeps every instant a Timestamp may hold, both ends included, and
    // round-trips with timestamp_of_ms.
    #[test]
    fn instants_in_range_convert() {
        let first = Timestamp {
            seconds: SECONDS_MIN,
            nanos: 0,
        };
        assert_eq!(ms_of_timestamp(&first), Ok(SECONDS_MIN * 1_000));
        let last = Timestamp {
            seconds: SECONDS_MAX,
            nanos: NANOS_MAX,
        };
        assert_eq!(ms_of_timestamp(&last), Ok(SECONDS_MAX * 1_000 + 999));
        for ms in [-1_500, -1, 0, 1, 1_764_979_200_123] {
            assert_eq!(ms_of_timestamp(&timestamp_of_ms(ms)), Ok(ms));
        }
    }

    // Proves a value outside what a Timestamp may hold is refused as out of range (issue 17:
    // it was reported as absent), never wrapped or overflowed.
    #[test]
    fn values_past_the_range_are_out_of_range() {
        for (seconds, nanos) in [
            (SECONDS_MIN - 1, 0),
            (SECONDS_MAX + 1, 0),
            (i64::MAX, 0),
            (i64::MIN, 0),
            (0, -1),
            (0, NANOS_MAX + 1),
            (0, i32::MIN),
        ] {
            let refused = ms_of_timestamp(&Timestamp { seconds, nanos })
                .expect_err("outside the range")
                .at("began_at");
            assert!(
                refused.to_string().starts_with("began_at: is out of range"),
                "{seconds} {nanos}: {refused}"
            );
        }
    }
}
