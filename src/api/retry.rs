//! When and how long to wait before trying a Connector API request again.
//!
//! What is retried: answers 408, 429 and 5xx, and transport failures (connection refused or
//! reset, timeouts, bodies cut short) — see [`ApiError::is_retryable`](super::ApiError).
//! Everything else fails at once: a 400, 401, 403 or 404 says the request or the credentials
//! are wrong, and repeating it would only spend the rate limit.
//!
//! How long: on 429 the server's `Retry-After`, in full (a retry sent earlier would be
//! refused again and spend an attempt; a wait past the time left gives up instead), else
//! exponential backoff with full jitter, so that many clients failing together do not come
//! back together. Bounded twice: by a number of attempts and by a total time, whichever is
//! reached first. Everything here is pure (the random source and the clock are arguments), so
//! the policy is tested without waiting.

use crate::calendar::days_from_civil;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bounds and pacing of retries of one API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most requests made for one call, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Upper bound of the first backoff; it doubles with each further attempt.
    pub base_delay: Duration,
    /// Longest single backoff (a server's `Retry-After` is waited in full, within
    /// [`RetryPolicy::max_total`]).
    pub max_delay: Duration,
    /// No retry is started if waiting for it would take the call past this time since the
    /// first attempt — a bound on how long a caller can be kept waiting.
    pub max_total: Duration,
}

/// Default for [`RetryPolicy::max_attempts`]: five waits of at most 0.5 + 1 + 2 + 4 + 8 s
/// without `Retry-After`, enough to ride out a brief outage; a 429's `Retry-After` may
/// stretch each wait, within [`DEFAULT_MAX_TOTAL`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default for [`RetryPolicy::base_delay`].
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
/// Default for [`RetryPolicy::max_delay`]: at least the 30 s rate-limit window, so one wait
/// can always span it.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
/// Default for [`RetryPolicy::max_total`].
pub const DEFAULT_MAX_TOTAL: Duration = Duration::from_secs(5 * 60);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            max_total: DEFAULT_MAX_TOTAL,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failed attempt (1-based): uniform in
    /// `[0, min(max_delay, base_delay · 2^(attempt−1))]` ("full jitter").
    pub fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        // Past 2^31 the product overflows and the cap applies anyway.
        let factor = 1u32 << attempt.saturating_sub(1).min(31);
        let ceiling = self
            .base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        // Nanoseconds fit a u64 for 584 years; anything longer is a configuration mistake
        // that the cap already tamed.
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(0..=ceiling_nanos))
    }

    /// The wait before the next attempt: the server's `Retry-After` when it sent one, else
    /// [`RetryPolicy::backoff`]. A wild `Retry-After` cannot stall a load:
    /// [`RetryPolicy::allows`] refuses a wait past [`RetryPolicy::max_total`].
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        match retry_after {
            Some(wait) => wait,
            None => self.backoff(attempt, rng),
        }
    }

    /// Whether, after `attempts` attempts and `elapsed` time, waiting `delay` for another
    /// attempt stays within both bounds.
    pub fn allows(&self, attempts: u32, elapsed: Duration, delay: Duration) -> bool {
        attempts < self.max_attempts && elapsed.saturating_add(delay) <= self.max_total
    }
}

/// Reads a `Retry-After` value: delay seconds (`3`) or an HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the latter measured from `now`; a date in the past
/// means no wait. `None` for anything else, so the caller falls back to backoff.
///
/// Only the IMF-fixdate form of HTTP dates is read, the one servers must send (RFC 9110
/// §5.6.7); the two obsolete forms fall back to backoff, which is safe.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is nonsense; the cap would apply anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → instant.
fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    let (_weekday, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    // Four digits, as the format has them: a wilder year would overflow the arithmetic
    // below (and no server means it).
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let mut hms = parts.next()?.split(':');
    let hour: u64 = hms.next()?.parse().ok()?;
    let minute: u64 = hms.next()?.parse().ok()?;
    let second: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(
        days * 86_400 + hour * 3600 + minute * 60 + second,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let policy = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=12 {
            let ceiling = (policy.base_delay * (1 << (attempt - 1))).min(policy.max_delay);
            let mut longest = Duration::ZERO;
            for _ in 0..2000 {
                let d = policy.backoff(attempt, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                longest = longest.max(d);
            }
            // Full jitter spreads over the whole range, so the largest of many draws comes
            // close to the ceiling.
            assert!(
                longest * 10 >= ceiling * 9,
                "attempt {attempt}: {longest:?}"
            );
        }
        assert!(policy.backoff(u32::MAX, &mut rng) <= policy.max_delay);
    }

    #[test]
    fn retry_after_is_waited_in_full_or_not_at_all() {
        let policy = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let three = Some(Duration::from_secs(3));
        assert_eq!(policy.delay(1, three, &mut rng), Duration::from_secs(3));
        // Longer than a backoff, shorter than the time left: waited, not cut short (a retry
        // sent before the server said would be refused again).
        let two_minutes = policy.delay(1, Some(Duration::from_secs(120)), &mut rng);
        assert_eq!(two_minutes, Duration::from_secs(120));
        assert!(policy.allows(1, Duration::ZERO, two_minutes));
        // Past the time left: no retry.
        let hour = policy.delay(1, Some(Duration::from_secs(3600)), &mut rng);
        assert!(!policy.allows(1, Duration::ZERO, hour));
    }

    #[test]
    fn bounded_by_attempts_and_by_total_time() {
        let policy = RetryPolicy::default();
        let s = Duration::from_secs;
        assert!(policy.allows(1, s(0), s(1)));
        assert!(!policy.allows(6, s(0), s(1)));
        assert!(policy.allows(2, s(299), s(1)));
        assert!(!policy.allows(2, s(299), s(2)));
    }

    /// Any year, day or time a header can name gives a wait or none, never a panic.
    #[test]
    fn no_date_overflows() {
        let mut rng = fastrand::Rng::with_seed(3);
        let now = SystemTime::now();
        let mut years: Vec<i64> = vec![i64::MIN, i64::MAX, -1, 0, 1969, 1970, 9999, 10_000];
        years.extend((0..2000).map(|_| rng.i64(..)));
        for year in years {
            let day = rng.u32(0..40);
            let hour = rng.u64(..);
            let header = format!("Sun, {day:02} Nov {year} {:02}:59:60 GMT", hour % 30);
            if let Some(wait) = parse_retry_after(&header, now) {
                assert!((1970..=9999).contains(&year), "{header}: {wait:?}");
            }
        }
    }

    #[test]
    fn reads_retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Mar 2000 00:00:00 GMT", UNIX_EPOCH),
            Some(Duration::from_secs(951_868_800))
        );
        for bad in [
            "",
            "-1",
            "soon",
            "1.5",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 CET",
            // Years that would overflow the arithmetic (a panic, before).
            "Sun, 06 Nov 300000000000 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov -9223372036854775808 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
