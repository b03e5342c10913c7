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
