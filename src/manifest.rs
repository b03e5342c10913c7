//! What one load read, wrote and counted: the manifest written beside its files.

use crate::sink::WrittenFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// Version of the manifest layout; bumped when a field changes meaning, so a reader can
/// refuse manifests it does not understand instead of misreading them.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// How a load's files join the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Keep the files of earlier loads and add this one's (replacing an earlier load with the
    /// same load id, so re-running a load never duplicates rows).
    #[default]
    Append,
    /// The table holds only this load's files afterwards.
    Replace,
}

impl FromStr for WriteMode {
    type Err = String;

    /// Parses `append` or `replace` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "append" => Ok(WriteMode::Append),
            "replace" => Ok(WriteMode::Replace),
            _ => Err(format!(
                "unknown write mode {s:?} (expected append or replace)"
            )),
        }
    }
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteMode::Append => "append",
            WriteMode::Replace => "replace",
        })
    }
}

/// What one load read and wrote: stored as `loads/<load_id>.json` in every table version
/// that contains the load's files (beside its `data/`), so a version describes itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadManifest {
    /// [`MANIFEST_FORMAT_VERSION`] at the time of writing.
    pub format_version: u32,
    /// The load's id: a plain file name (see [`crate::commit::sanitize_load_id`]).
    pub load_id: String,
    /// Mews entity type, e.g. `OrderItem`.
    pub entity: String,
    /// Table name, e.g. `order_item`: the directory under the output root.
    pub table: String,
    /// The Connector API export the rows came from (or the load id for local files).
    pub export_id: String,
    /// Whether the load was appended or replaced the table.
    pub mode: WriteMode,
    /// The partition specification, as text (`ConsumedUtc:month` or `none`).
    pub partition_spec: String,
    /// Fingerprint of the entity schema the files were written with.
    pub schema_fingerprint: String,
    /// When the load was committed, RFC 3339 UTC (`2023-03-31T12:34:56Z`).
    pub created_utc: String,
    /// Each source file read, with its own counts.
    pub sources: Vec<SourceSummary>,
    /// The Parquet files written, relative to the table directory.
    pub files: Vec<WrittenFile>,
    /// Counts of the whole load: the sum of the sources' counts.
    pub counts: LoadCounts,
    /// Other loads of the table that this one took the place of, besides an earlier load
    /// of its own id (a ledger month's load replacing the update windows of that month that
    /// an earlier release loaded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

impl LoadManifest {
    /// Rows in the load's files, from the files themselves.
    pub fn file_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// One source file of a load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// File name or URL (without query string, which may hold credentials).
    pub name: String,
    /// A local file's absolute path, symbolic links resolved: with the name, what tells
    /// `exports/2024-01-01/items.jsonl` from `exports/2024-01-02/items.jsonl` when a later
    /// convert reloads the load. `None` for stdin, a download, or a manifest written before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A local file's last modification, in nanoseconds since 1970-01-01 UTC, as it was
    /// when the load ended: with `path` and `bytes`, what tells the file this load read
    /// from a later file written to the same path. `None` where `path` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_unix_ns: Option<i64>,
    /// Compression detected from content: `gzip`, `zstd` or `none`.
    pub compression: String,
    /// Bytes read as the source stores or sends them (compressed, if they are): a file's
    /// size, what came through stdin, what a download carried.
    pub bytes: u64,
    /// Counts of this source alone.
    pub counts: LoadCounts,
}

/// RFC 3339 UTC text of a point in time, to the second (`2023-03-31T12:34:56Z`), for
/// [`LoadManifest::created_utc`].
pub fn rfc3339_utc(time: SystemTime) -> String {
    let seconds = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    crate::calendar::format_utc_seconds(seconds)
}

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
    /// Values outside a documented enum, by `Property.Path=Value`; kept in the data. At
    /// most [`MAX_DRIFT_KEYS`] keys (see [`count_drift`]).
    pub unknown_enum_values: BTreeMap<String, u64>,
    /// Properties the schema does not know, by path; kept in `_extra`. At most
    /// [`MAX_DRIFT_KEYS`] keys.
    pub unknown_properties: BTreeMap<String, u64>,
    /// Documented-required properties found missing or null, by path; the row is kept. At
    /// most [`MAX_DRIFT_KEYS`] keys.
    pub missing_required: BTreeMap<String, u64>,
}

/// Distinct keys a drift count keeps per kind, per load and per file; the rows of further
/// keys are counted under [`OTHER_DRIFT`]. Keys come from the data, so without a bound a file
/// whose every line names a new property would grow the counts, the manifest and the summary
/// with the file.
pub const MAX_DRIFT_KEYS: usize = 1000;

/// Longest drift key kept, in bytes; longer ones are cut (at a character boundary) to end
/// with `…` within it.
pub const MAX_DRIFT_KEY_BYTES: usize = 256;

/// The key under which a drift count gathers the rows of keys past [`MAX_DRIFT_KEYS`].
pub const OTHER_DRIFT: &str = "(others)";

/// Adds `n` rows to `key` in a drift count, within [`MAX_DRIFT_KEYS`] and
/// [`MAX_DRIFT_KEY_BYTES`].
pub fn count_drift(counts: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    let key = if key.len() > MAX_DRIFT_KEY_BYTES {
        let mut cut = MAX_DRIFT_KEY_BYTES - '…'.len_utf8();
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        std::borrow::Cow::Owned(format!("{}…", &key[..cut]))
    } else {
        std::borrow::Cow::Borrowed(key)
    };
    // The rows counted past another count's bound stay past it: were `(others)` a key like
    // any other, merging a bounded count into another would spend a key on it.
    if let Some(count) = counts.get_mut(key.as_ref()) {
        *count += n;
    } else if key != OTHER_DRIFT
        && counts.len() - usize::from(counts.contains_key(OTHER_DRIFT)) < MAX_DRIFT_KEYS
    {
        counts.insert(key.into_owned(), n);
    } else {
        *counts.entry(OTHER_DRIFT.to_owned()).or_default() += n;
    }
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
                count_drift(mine, k, *v);
            }
        }
    }

    /// Whether every non-blank line read is accounted for as a row or a reject.
    pub fn is_balanced(&self) -> bool {
        self.rows_written + self.rejected == self.lines_read - self.blank_lines.min(self.lines_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn manifest() -> LoadManifest {
        let counts = LoadCounts {
            lines_read: 3,
            blank_lines: 1,
            rows_written: 2,
            ..LoadCounts::default()
        };
        LoadManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            load_id: "load-1".into(),
            entity: "OrderItem".into(),
            table: "order_item".into(),
            export_id: "e1".into(),
            mode: WriteMode::Replace,
            partition_spec: "ConsumedUtc:month".into(),
            schema_fingerprint: "abc".into(),
            created_utc: rfc3339_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(1_680_307_199)),
            sources: vec![SourceSummary {
                name: "a.jsonl.gz".into(),
                path: Some("/exports/a.jsonl.gz".into()),
                modified_unix_ns: Some(1_680_307_000_000_000_000),
                compression: "gzip".into(),
                bytes: 10,
                counts: counts.clone(),
            }],
            files: vec![WrittenFile {
                path: "ConsumedUtc_month=2023-03/load-1-00000-00000.parquet".into(),
                rows: 2,
                bytes: 100,
                partition: vec![("ConsumedUtc_month".into(), "2023-03".into())],
            }],
            counts,
            replaces: Vec::new(),
        }
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = manifest();
        let json = serde_json::to_string_pretty(&m).unwrap();
        assert!(json.contains("\"mode\": \"replace\""), "{json}");
        assert!(
            json.contains("\"created_utc\": \"2023-03-31T23:59:59Z\""),
            "{json}"
        );
        let back: LoadManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.file_rows(), 2);
        assert!(back.counts.is_balanced());
    }

    #[test]
    fn drift_counts_keep_a_bounded_number_of_keys_of_bounded_length() {
        let mut counts = BTreeMap::new();
        for i in 0..MAX_DRIFT_KEYS + 500 {
            count_drift(&mut counts, &format!("Property{i}"), 2);
        }
        assert_eq!(counts.len(), MAX_DRIFT_KEYS + 1);
        assert_eq!(counts[OTHER_DRIFT], 1000);
        assert_eq!(
            counts.values().sum::<u64>(),
            2 * (MAX_DRIFT_KEYS as u64 + 500)
        );
        // A key seen before the bound was reached is still counted under its own name.
        count_drift(&mut counts, "Property0", 1);
        assert_eq!(counts["Property0"], 3);

        // A long key is cut at a character boundary; keys sharing that start share a count.
        let mut counts = BTreeMap::new();
        let long = format!("{}é{}", "a".repeat(MAX_DRIFT_KEY_BYTES - 4), "b".repeat(10));
        count_drift(&mut counts, &long, 1);
        count_drift(&mut counts, &format!("{long}c"), 1);
        let (key, n) = counts.iter().next().unwrap();
        assert_eq!(*n, 2);
        assert_eq!(key, &format!("{}…", "a".repeat(MAX_DRIFT_KEY_BYTES - 4)));
        assert!(key.len() <= MAX_DRIFT_KEY_BYTES);

        // Merging keeps the bound too.
        let mut a = LoadCounts::default();
        let mut b = LoadCounts::default();
        for i in 0..MAX_DRIFT_KEYS {
            count_drift(&mut a.unknown_properties, &format!("A{i}"), 1);
            count_drift(&mut b.unknown_properties, &format!("B{i}"), 1);
        }
        a.merge(&b);
        assert_eq!(a.unknown_properties.len(), MAX_DRIFT_KEYS + 1);
        assert_eq!(a.unknown_properties[OTHER_DRIFT], MAX_DRIFT_KEYS as u64);
    }

    #[test]
    fn write_mode_parses_and_prints() {
        for mode in [WriteMode::Append, WriteMode::Replace] {
            assert_eq!(mode.to_string().parse::<WriteMode>(), Ok(mode));
        }
        assert_eq!("REPLACE".parse::<WriteMode>(), Ok(WriteMode::Replace));
        assert!("upsert".parse::<WriteMode>().is_err());
    }
}
