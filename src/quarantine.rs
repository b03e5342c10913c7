//! Rejected lines, kept for diagnosis: one JSON object per line with the source file, the
//! 1-based line number, the property concerned, the reason and the original line.
//!
//! The file is written beside a temporary name and kept only once the load's fate is known,
//! so a quarantine file is always complete and always describes what it says:
//! - `<table>/<load>.jsonl`: the rejected lines of the load as committed (replaced when the
//!   load is committed again, removed when it then rejects nothing);
//! - `<table>/refused/<load>.jsonl`: those of the latest attempt refused for rejecting more
//!   than its budget, which committed nothing (removed once the load commits);
//! - an attempt that fails or is interrupted leaves both as they were.
//!
//! A committed load's file is put in place just after its commit; a process killed in
//! between leaves the file of the load's previous commit (or none), and the next open of
//! the output directory removes the orphaned temporary file.

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

/// The directory, inside a table's quarantine directory, of refused attempts' rejections.
/// No load's file can be it: those are named `<load>.jsonl`.
const REFUSED_DIR: &str = "refused";

/// What a quarantine file's name ends with while its load is running.
pub const TEMP_SUFFIX: &str = ".jsonl.tmp";

/// Writes rejected lines of one load.
pub struct QuarantineWriter {
    path: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl QuarantineWriter {
    /// A writer for `path` (`<table>/<load>.jsonl`); nothing is created until the first
    /// rejection.
    pub fn new(path: PathBuf) -> Self {
        let temp = temp_path(&path);
        QuarantineWriter {
            path,
            temp,
            out: None,
            written: 0,
        }
    }

    /// Where the file of a committed load is (or will be) written.
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

    /// Flushes and syncs what was written, to be kept once the load's fate is known
    /// ([`QuarantineDraft::committed`], [`QuarantineDraft::refused`]). Nothing visible
    /// changes yet.
    pub fn finish(mut self) -> io::Result<QuarantineDraft> {
        let temp = match self.out.take() {
            Some(out) => {
                let synced = out
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|file| file.sync_all());
                if let Err(e) = synced {
                    let _ = std::fs::remove_file(&self.temp);
                    return Err(e);
                }
                Some(std::mem::take(&mut self.temp))
            }
            None => None,
        };
        Ok(QuarantineDraft {
            path: std::mem::take(&mut self.path),
            temp,
        })
    }
}

impl Drop for QuarantineWriter {
    /// A load that stopped before its end leaves no temporary file behind.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// The rejected lines of a load that has ended, waiting for its outcome; dropped without
/// one (the load failed or was interrupted), it removes its temporary file and leaves the
/// quarantine as it was.
#[derive(Debug)]
#[must_use = "a draft dropped without its load's outcome discards its rejected lines"]
pub struct QuarantineDraft {
    path: PathBuf,
    temp: Option<PathBuf>,
}

impl QuarantineDraft {
    /// Whether any line was rejected.
    pub fn has_rejections(&self) -> bool {
        self.temp.is_some()
    }

    /// The load committed: its rejections replace the load's quarantine file (removed when
    /// there are none), then a refused attempt's file is removed. Returns the file's path
    /// if anything was rejected.
    ///
    /// The load is committed whatever this returns; on an error, the rejections that could
    /// not be put in place are left where the error says.
    pub fn committed(mut self) -> io::Result<Option<PathBuf>> {
        let kept = match self.temp.take() {
            Some(temp) => match std::fs::rename(&temp, &self.path) {
                Ok(()) => Some(self.path.clone()),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{e}; the rejected lines are in {}", temp.display()),
                    ))
                }
            },
            None => {
                remove_if_present(&self.path)?;
                None
            }
        };
        remove_if_present(&refused_path(&self.path))?;
        Ok(kept)
    }

    /// The load was refused over its budget and committed nothing: its rejections go to
    /// `refused/<load>.jsonl`, and the committed load's file, if any, stays as it is.
    /// Returns the file's path if anything was rejected.
    pub fn refused(mut self) -> io::Result<Option<PathBuf>> {
        let Some(temp) = self.temp.take() else {
            return Ok(None);
        };
        let path = refused_path(&self.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(&temp, &path)?;
        Ok(Some(path))
    }
}

impl Drop for QuarantineDraft {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut temp = path.with_extension("").into_os_string();
    temp.push(TEMP_SUFFIX);
    temp.into()
}

/// `<table>/refused/<load>.jsonl` for `<table>/<load>.jsonl`: where the rejections of a
/// load refused over its budget go.
pub fn refused_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    match path.file_name() {
        Some(name) => dir.join(REFUSED_DIR).join(name),
        None => dir.join(REFUSED_DIR),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        // A file in a directory that is not one is not present either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
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
        let draft = q.finish().unwrap();
        assert!(!path.exists(), "visible before the load's outcome");
        assert_eq!(draft.committed().unwrap(), Some(path.clone()));
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
        let clean = QuarantineWriter::new(path.clone()).finish().unwrap();
        assert_eq!(clean.committed().unwrap(), None);
        assert!(!path.exists());
    }

    fn reject(q: &mut QuarantineWriter, line: u64) {
        let rejection = Rejection {
            line,
            property: None,
            reason: "not JSON".into(),
            content: RejectedContent::Text("{".into()),
        };
        q.write("a.jsonl", &[rejection]).unwrap();
    }

    fn lines_of(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    /// The committed load's rejections outlive every later attempt that does not commit.
    #[test]
    fn only_a_commit_replaces_the_committed_loads_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q/load.jsonl");
        let refused = dir.path().join("q/refused/load.jsonl");
        let mut q = QuarantineWriter::new(path.clone());
        reject(&mut q, 7);
        q.finish().unwrap().committed().unwrap();

        // Failed or interrupted, with or without rejections of its own: nothing changes,
        // and no temporary file is left.
        let mut q = QuarantineWriter::new(path.clone());
        reject(&mut q, 1);
        drop(q.finish().unwrap());
        let mut q = QuarantineWriter::new(path.clone());
        reject(&mut q, 2);
        drop(q);
        drop(QuarantineWriter::new(path.clone()).finish().unwrap());
        assert_eq!(lines_of(&path), [7]);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("q"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["load.jsonl"]);

        // Refused over its budget: its rejections go beside, the committed ones stay.
        let mut q = QuarantineWriter::new(path.clone());
        reject(&mut q, 3);
        assert_eq!(
            q.finish().unwrap().refused().unwrap(),
            Some(refused.clone())
        );
        assert_eq!(lines_of(&path), [7]);
        assert_eq!(lines_of(&refused), [3]);

        // Committed again: its rejections replace the load's, the refused file goes.
        let mut q = QuarantineWriter::new(path.clone());
        reject(&mut q, 4);
        q.finish().unwrap().committed().unwrap();
        assert_eq!(lines_of(&path), [4]);
        assert!(!refused.exists());
    }
}
