//! Rejected lines, kept for diagnosis: one JSON object per line with the source file, the
//! 1-based line number, the property concerned, the reason and the original line.
//!
//! The file is written beside a temporary name and renamed into place when the load ends,
//! so a quarantine file is always complete; it is written whether or not the load commits.

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
    /// Length of an over-long line, whose first bytes only are kept (in `prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes rejected lines of one load.
pub struct QuarantineWriter {
    path: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl QuarantineWriter {
    /// A writer for `path`; nothing is created until the first rejection.
    pub fn new(path: PathBuf) -> Self {
        let mut temp = path.clone().into_os_string();
        temp.push(".tmp");
        QuarantineWriter {
            path,
            temp: temp.into(),
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
            self.out = Some(BufWriter::new(File::create(&self.temp)?));
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
            };
            match &r.content {
                RejectedContent::Text(t) => rec.text = Some(t),
                RejectedContent::Bytes(b) => rec.hex = Some(hex(b)),
                RejectedContent::Truncated { length, prefix } => {
                    rec.length = Some(*length);
                    rec.prefix = Some(String::from_utf8_lossy(prefix).into_owned());
                }
            }
            serde_json::to_writer(&mut *out, &rec)?;
            out.write_all(b"\n")?;
            self.written += 1;
        }
        Ok(())
    }

    /// Flushes, syncs and moves the file into place; returns its path if anything was
    /// rejected. A previous quarantine of the same load is replaced (or removed when this
    /// run rejected nothing), so the file always describes the latest attempt.
    pub fn finish(mut self) -> io::Result<Option<PathBuf>> {
        match self.out.take() {
            Some(out) => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(&self.temp, &self.path)?;
                Ok(Some(self.path.clone()))
            }
            None => {
                match std::fs::remove_file(&self.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_complete_records_and_replaces_previous_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q/load.jsonl");
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
        assert!(!path.exists(), "visible before finish");
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
        // A clean rerun of the same load removes the stale quarantine.
        assert_eq!(QuarantineWriter::new(path.clone()).finish().unwrap(), None);
        assert!(!path.exists());
    }
}
