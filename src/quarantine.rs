//! Rejected lines, kept for diagnosis: one JSON object per line with the source file, the
//! 1-based line number, the property concerned, the reason and the original line.
//!
//! A load writes its rejected lines into its staging directory, beside its Parquet files,
//! so that they share the load's fate:
//! - committed, they are published with the load's manifest, atomically, in the table's
//!   version: `.mews-etl/tables/<table>/v…/loads/<load>.rejected.jsonl`
//!   ([`crate::commit::OutputDir::commit`]).
//!   They are there for as long as the load is, and go when a reload or a replace drops it;
//! - refused for rejecting more lines than the budget allows, they are moved to
//!   `_quarantine/<table>/<load>.jsonl` (the latest refused attempt of the load, removed
//!   once the load commits);
//! - failed or interrupted, they go with the staging directory, and nothing else changes.

use crate::decode::{RejectedContent, Rejection};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One rejected line as written to the quarantine file.
#[derive(Serialize)]
struct Record<'a> {
    file: &'a str,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    property: Option<&'a str>,
    reason: &'a str,
    /// The original line, when it is valid UTF-8 and was kept whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    /// The original line in hex, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
    /// Length of an over-long line, whose first bytes only are kept (in `prefix`, or
    /// `prefix_hex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    /// The first bytes of an over-long line, as they are, when they are UTF-8 (a character
    /// the cut split is left out whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    /// The same in hex, when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_hex: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes rejected lines of one load.
pub struct QuarantineWriter {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl QuarantineWriter {
    /// A writer for `path`, in the load's staging directory; nothing is created until the
    /// first rejection.
    pub fn new(path: PathBuf) -> Self {
        QuarantineWriter {
            path,
            out: None,
            written: 0,
        }
    }

    /// Where the file is (or will be) written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the rejections of `file`.
    pub fn write(&mut self, file: &str, rejects: &[Rejection]) -> io::Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        if self.out.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.out = Some(BufWriter::new(File::create(&self.path)?));
        }
        let out = self.out.as_mut().expect("opened above");
        for r in rejects {
            let mut rec = Record {
                file,
                line: r.line,
                property: r.property.as_deref(),
                reason: &r.reason,
                text: None,
                hex: None,
                length: None,
                prefix: None,
                prefix_hex: None,
            };
            match &r.content {
                RejectedContent::Text(t) => rec.text = Some(t),
                RejectedContent::Bytes(b) => rec.hex = Some(hex(b)),
                RejectedContent::Truncated { length, prefix } => {
                    rec.length = Some(*length);
                    match std::str::from_utf8(prefix) {
                        Ok(text) => rec.prefix = Some(text),
                        // Only the last character is cut short: the bytes before it are text.
                        Err(e) if e.error_len().is_none() => {
                            rec.prefix = std::str::from_utf8(&prefix[..e.valid_up_to()]).ok();
                        }
                        Err(_) => rec.prefix_hex = Some(hex(prefix)),
                    }
                }
            }
            serde_json::to_writer(&mut *out, &rec)?;
            out.write_all(b"\n")?;
            self.written += 1;
        }
        Ok(())
    }

    /// Flushes and syncs the file; returns its path if anything was rejected.
    pub fn finish(mut self) -> io::Result<Option<PathBuf>> {
        match self.out.take() {
            Some(out) => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// Moves the rejections of a refused attempt, `staged`, to `path`
/// (`_quarantine/<table>/<load>.jsonl`), replacing an earlier refused attempt's.
pub fn keep_refused(staged: &Path, path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::rename(staged, path)
}

/// Removes the rejections of a refused attempt of a load that has since committed. Best
/// effort: a stale file describes an attempt that was indeed refused.
pub fn forget_refused(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the rejections of an earlier refused attempt of this load");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_complete_records_only_when_something_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("_loads/load.rejected.jsonl");
        assert_eq!(QuarantineWriter::new(path.clone()).finish().unwrap(), None);
        assert!(!path.exists(), "created without a rejection");
        let mut q = QuarantineWriter::new(path.clone());
        q.write(
            "a.jsonl",
            &[
                Rejection {
                    line: 3,
                    property: Some("UnitCount".into()),
                    reason: "expected an integer".into(),
                    content: RejectedContent::Text("{\"Id\":1}".into()),
                },
                Rejection {
                    line: 4,
                    property: None,
                    reason: "invalid UTF-8".into(),
                    content: RejectedContent::Bytes(vec![0xff]),
                },
            ],
        )
        .unwrap();
        assert_eq!(q.written(), 2);
        assert_eq!(q.finish().unwrap(), Some(path.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows[0]["line"], 3);
        assert_eq!(rows[0]["property"], "UnitCount");
        assert_eq!(rows[0]["text"], "{\"Id\":1}");
        assert_eq!(rows[1]["hex"], "ff");
    }

    /// An over-long line's first bytes are kept as they are: as text when they are UTF-8,
    /// without the character the cut split, and in hex when they are not.
    #[test]
    fn an_over_long_lines_prefix_is_kept_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("load.rejected.jsonl");
        let mut q = QuarantineWriter::new(path.clone());
        let long = |prefix: &[u8]| Rejection {
            line: 1,
            property: None,
            reason: "too long".into(),
            content: RejectedContent::Truncated {
                length: 5000,
                prefix: prefix.to_vec(),
            },
        };
        q.write(
            "a.jsonl",
            &[
                long("{\"Name\":\"é".as_bytes()),
                long(&"{\"Name\":\"é".as_bytes()[..10]),
                long(b"{\"Name\":\"\xff\xfe"),
            ],
        )
        .unwrap();
        q.finish().unwrap();
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows[0]["prefix"], "{\"Name\":\"é");
        assert_eq!(rows[1]["prefix"], "{\"Name\":\"");
        assert_eq!(rows[2]["prefix"], serde_json::Value::Null);
        assert_eq!(rows[2]["prefix_hex"], "7b224e616d65223a22fffe");
        assert!(rows.iter().all(|r| r["length"] == 5000));
    }

    #[test]
    fn a_refused_attempt_replaces_the_last_and_is_forgotten_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("q/t/load.jsonl");
        for text in ["first\n", "second\n"] {
            let staged = dir.path().join("staged.jsonl");
            std::fs::write(&staged, text).unwrap();
            keep_refused(&staged, &kept).unwrap();
            assert_eq!(std::fs::read_to_string(&kept).unwrap(), text);
        }
        forget_refused(&kept);
        assert!(!kept.exists());
        // Nothing to forget, or a path through a file: nothing happens.
        forget_refused(&kept);
        forget_refused(&dir.path().join("q/t/load.jsonl/x"));
    }
}
