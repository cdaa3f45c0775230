//! Timestamps as every backend stores them.

use chrono::{DateTime, SubsecRound, Utc};

/// A point in time in UTC, with microsecond precision.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to whole microseconds.
///
/// PostgreSQL keeps microseconds; truncating everywhere means a record reads back equal to
/// what was written on every backend.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Microseconds since the Unix epoch, the form indexes and cursors use.
pub fn to_micros(at: Timestamp) -> i64 {
    at.timestamp_micros()
}

/// The inverse of [`to_micros`]; out-of-range values saturate to the representable range.
pub fn from_micros(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_round_trips_through_micros() {
        let at = now();
        assert_eq!(from_micros(to_micros(at)), at);
    }
}
