//! The server's notion of now: wall-clock time plus an offset the tests can advance, so URL
//! expiry and the `UpdatedUtc` rules are tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time shifted forward by [`Clock::advance`].
#[derive(Debug, Default)]
pub(super) struct Clock {
    /// Total shift, in microseconds.
    offset_micros: AtomicU64,
}

impl Clock {
    /// Shifts the clock forward.
    pub(super) fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Microseconds since the Unix epoch.
    pub(super) fn now_micros(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let offset = u128::from(self.offset_micros.load(Ordering::Relaxed));
        i64::try_from(wall + offset).unwrap_or(i64::MAX)
    }

    /// Whole seconds since the Unix epoch.
    pub(super) fn now_secs(&self) -> i64 {
        self.now_micros().div_euclid(1_000_000)
    }
}

/// Formats seconds since the epoch as the API writes instants: `2023-10-26T11:42:28Z`.
pub(super) fn format_utc(secs: i64) -> String {
    crate::calendar::format_utc_seconds(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::parse_timestamp_micros;

    #[test]
    fn formats_instants_the_parser_reads_back() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_698_320_548), "2023-10-26T11:42:28Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        for secs in [-86_401, 1, 4_102_444_800, 1_709_251_199] {
            let text = format_utc(secs);
            assert_eq!(
                parse_timestamp_micros(&text),
                Ok(secs * 1_000_000),
                "{text}"
            );
        }
    }

    #[test]
    fn advancing_moves_now_forward() {
        let clock = Clock::default();
        let before = clock.now_secs();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_secs() >= before + 3600);
    }
}
