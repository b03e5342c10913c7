//! What one load read, wrote and counted: the manifest written beside its files.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counts of one load (or one source file of it). Invariant, checked before commit:
/// `rows_written + rejected == lines_read - blank_lines`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadCounts {
    /// Lines read, blank ones included.
    pub lines_read: u64,
    /// Blank (empty or whitespace-only) lines, which carry no row.
    pub blank_lines: u64,
    /// Rows decoded and written.
    pub rows_written: u64,
    /// Lines rejected to the quarantine.
    pub rejected: u64,
    /// Values outside a documented enum, by `Property.Path=Value`; kept in the data.
    pub unknown_enum_values: BTreeMap<String, u64>,
    /// Properties the schema does not know, by path; kept in `_extra`.
    pub unknown_properties: BTreeMap<String, u64>,
    /// Documented-required properties found missing or null, by path; the row is kept.
    pub missing_required: BTreeMap<String, u64>,
}

impl LoadCounts {
    /// Adds another set of counts into this one.
    pub fn merge(&mut self, other: &LoadCounts) {
        self.lines_read += other.lines_read;
        self.blank_lines += other.blank_lines;
        self.rows_written += other.rows_written;
        self.rejected += other.rejected;
        for (mine, theirs) in [
            (&mut self.unknown_enum_values, &other.unknown_enum_values),
            (&mut self.unknown_properties, &other.unknown_properties),
            (&mut self.missing_required, &other.missing_required),
        ] {
            for (k, v) in theirs {
                *mine.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// Whether every non-blank line read is accounted for as a row or a reject.
    pub fn is_balanced(&self) -> bool {
        self.rows_written + self.rejected == self.lines_read - self.blank_lines.min(self.lines_read)
    }
}
