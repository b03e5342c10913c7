//! Validated settings: plain values with named defaults and units, parsed from the CLI's
//! raw strings; no I/O happens here.

use std::fmt;
use std::str::FromStr;

/// How many rejected lines a load may have and still commit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ErrorBudget {
    /// At most this many rejected lines.
    Count(u64),
    /// At most this percentage of the non-blank lines read (0–100).
    Percent(f64),
}

/// Default error budget: 1 % of lines, so a handful of malformed rows in a large export
/// does not block the load while a systematically broken export does.
pub const DEFAULT_ERROR_BUDGET: ErrorBudget = ErrorBudget::Percent(1.0);

impl ErrorBudget {
    /// Whether `rejected` lines out of `lines` (non-blank lines read) are within budget.
    pub fn allows(&self, rejected: u64, lines: u64) -> bool {
        match *self {
            ErrorBudget::Count(n) => rejected <= n,
            // Compared in floating point on counts below 2^53 (every realistic export), with
            // the percentage applied to the lines rather than dividing by a possible zero.
            ErrorBudget::Percent(p) => (rejected as f64) * 100.0 <= p * lines as f64,
        }
    }
}

impl FromStr for ErrorBudget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage like 1% or 0.5%"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{s:?}: a percentage must be between 0% and 100%"));
            }
            return Ok(ErrorBudget::Percent(p));
        }
        s.parse::<u64>().map(ErrorBudget::Count).map_err(|_| {
            format!("{s:?} is neither a count of lines (like 100) nor a percentage (like 1%)")
        })
    }
}

impl fmt::Display for ErrorBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorBudget::Count(n) => write!(f, "{n} lines"),
            ErrorBudget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages() {
        assert_eq!("1%".parse(), Ok(ErrorBudget::Percent(1.0)));
        assert_eq!(" 0.5 % ".parse(), Ok(ErrorBudget::Percent(0.5)));
        assert_eq!("100".parse(), Ok(ErrorBudget::Count(100)));
        assert!("101%".parse::<ErrorBudget>().is_err());
        assert!("-1".parse::<ErrorBudget>().is_err());
        assert!("abc".parse::<ErrorBudget>().is_err());
    }

    #[test]
    fn budget_boundaries() {
        assert!(ErrorBudget::Percent(1.0).allows(1, 100));
        assert!(!ErrorBudget::Percent(1.0).allows(2, 100));
        assert!(ErrorBudget::Percent(0.0).allows(0, 0));
        assert!(!ErrorBudget::Percent(0.0).allows(1, 1));
        assert!(ErrorBudget::Count(0).allows(0, 10));
        assert!(!ErrorBudget::Count(0).allows(1, 10));
    }
}

/// Threads per pool (line decoding, Parquet encoding) by default: one per core the process
/// may use, cgroup CPU limits included.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Parses a duration: plain seconds (`30`, `1.5`) or a number with a unit (`500ms`, `30s`,
/// `5m`, `6h`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30, 500ms, 30s, 5m or 6h"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{text:?} is not a duration like 30, 500ms, 30s, 5m or 6h"
        ));
    }
    std::time::Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{text:?} is too long"))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
