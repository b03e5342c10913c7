//! The run state file: which export this tool created for each job, and whether its load
//! committed — what lets a run after a crash resume the same exports instead of adding
//! new ones. It holds export ids and counts only, never a token or a URL.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the state file layout. Version 2 added [`RunState::not_loaded`]: a release
/// that knows only version 1 refuses the file rather than rewriting it without them.
pub const STATE_FORMAT_VERSION: u32 = 2;

/// The oldest layout still read (and rewritten as [`STATE_FORMAT_VERSION`]).
const OLDEST_FORMAT_VERSION: u32 = 1;

/// One job's export, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// The entity type.
    pub entity: String,
    /// The export this tool created for the job.
    pub export_id: String,
    /// When it was created (RFC 3339 UTC).
    pub created_utc: String,
    /// Whether its load is committed (then the next run starts a new export).
    pub committed: bool,
    /// The table version that holds it, once committed.
    #[serde(default)]
    pub version: Option<u64>,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// [`STATE_FORMAT_VERSION`].
    pub format_version: u32,
    /// Jobs by key (entity, scope and filters).
    pub jobs: BTreeMap<String, JobState>,
    /// Jobs a run was asked for and that have not loaded since, by key. What names a
    /// window to the later runs that do not ask for it, when nothing else would: its
    /// export ended `Failed`, was never added, or the run was stopped before adding it.
    #[serde(default)]
    pub not_loaded: BTreeMap<String, AskedJob>,
}

/// A job a run was asked for, until it loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedJob {
    /// The entity type.
    pub entity: String,
    /// When a run first asked for it (RFC 3339 UTC).
    pub first_asked_utc: String,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {message}")]
pub struct StateError {
    /// The state file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl RunState {
    /// Reads the state file, or an empty state when there is none.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let err = |message: String| StateError {
            path: path.to_owned(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut state: RunState = serde_json::from_slice(&bytes)
                    .map_err(|e| err(format!("unreadable ({e}); move it away to start afresh")))?;
                if !(OLDEST_FORMAT_VERSION..=STATE_FORMAT_VERSION).contains(&state.format_version) {
                    return Err(err(format!(
                        "format version {} is not one this release reads ({OLDEST_FORMAT_VERSION} to {STATE_FORMAT_VERSION}): it was written by a later release",
                        state.format_version
                    )));
                }
                state.format_version = STATE_FORMAT_VERSION;
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunState {
                format_version: STATE_FORMAT_VERSION,
                ..RunState::default()
            }),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Records that a run asks for job `key`; a job asked for before keeps its first time.
    pub fn ask(&mut self, key: &str, entity: &str, now_utc: &str) {
        self.not_loaded
            .entry(key.to_owned())
            .or_insert_with(|| AskedJob {
                entity: entity.to_owned(),
                first_asked_utc: now_utc.to_owned(),
            });
    }

    /// Whether job `key` is one a run asked for and that has not loaded since: its export
    /// was added and not loaded, or it is in [`RunState::not_loaded`]. A committed job is
    /// loaded, unless a later run asked for it again and did not load it (a failed add leaves
    /// the old job in place).
    pub fn is_unloaded(&self, key: &str) -> bool {
        self.resumable(key).is_some() || self.not_loaded.contains_key(key)
    }

    /// The export a run of `key` resumes: recorded for it and not loaded.
    pub fn resumable(&self, key: &str) -> Option<&JobState> {
        self.jobs.get(key).filter(|j| !j.committed)
    }

    /// The state file of the output directory `out`.
    pub fn path_in(out: &Path) -> PathBuf {
        out.join(crate::commit::STATE_DIR).join("state.json")
    }

    /// Records that job `key`'s load is committed: it starts a new export next time, and is
    /// no longer one to name.
    pub fn loaded(&mut self, key: &str, version: Option<u64>) {
        if let Some(job) = self.jobs.get_mut(key) {
            job.committed = true;
            if version.is_some() {
                job.version = version;
            }
        }
        self.not_loaded.remove(key);
    }

    /// Writes the state file atomically: a temporary file, synced, renamed over the old one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |e: std::io::Error| StateError {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(err)?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        tmp.write_all(&text).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Durability of the rename; not all platforms allow syncing a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Removes temporary files that a process killed in the middle of [`RunState::save`]
    /// left in `dir` (the state file's directory). Call it only while holding the output
    /// directory's lock, when no other process can be saving. Returns how many were removed.
    pub fn remove_leftovers(dir: &Path) -> Result<usize, StateError> {
        let err = |e: std::io::Error| StateError {
            path: dir.to_owned(),
            message: e.to_string(),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(err(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            // Earlier versions used tempfile's default `.tmp` prefix, without a suffix.
            let ours = (name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX))
                || (name.starts_with(".tmp") && name.len() == ".tmp".len() + 6);
            if is_file && ours {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing a state file left half-written by an interrupted run");
                std::fs::remove_file(&path).map_err(err)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Name prefix of the temporary file a save writes before renaming it over the state file.
const TEMP_PREFIX: &str = ".state-";
/// Name suffix of that temporary file.
const TEMP_SUFFIX: &str = ".tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = RunState::load(&path).unwrap();
        assert!(s.jobs.is_empty());
        s.jobs.insert(
            "OrderItem".into(),
            JobState {
                entity: "OrderItem".into(),
                export_id: "e1".into(),
                created_utc: "2024-01-01T00:00:00Z".into(),
                committed: false,
                version: None,
            },
        );
        s.save(&path).unwrap();
        assert_eq!(RunState::load(&path).unwrap(), s);
        std::fs::write(&path, b"{oops").unwrap();
        assert!(RunState::load(&path)
            .unwrap_err()
            .to_string()
            .contains("unreadable"));
    }

    /// A file of the first layout (no `not_loaded`) is read and saved in the current one,
    /// which the releases that know only the first refuse; a later layout is refused here.
    #[test]
    fn the_first_layout_is_read_and_a_later_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, br#"{"format_version":1,"jobs":{}}"#).unwrap();
        let state = RunState::load(&path).unwrap();
        assert!(state.not_loaded.is_empty());
        state.save(&path).unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["format_version"], STATE_FORMAT_VERSION);
        std::fs::write(&path, br#"{"format_version":3,"jobs":{}}"#).unwrap();
        let e = RunState::load(&path).unwrap_err().to_string();
        assert!(e.contains("written by a later release"), "{e}");
    }

    #[test]
    fn leftovers_of_an_interrupted_save_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        RunState::default().save(&path).unwrap();
        let named = |n: &str| dir.path().join(n);
        // What a save killed before its rename leaves: a file named like its temporary.
        let pending = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir.path())
            .unwrap();
        let (_, left) = pending.keep().unwrap();
        std::fs::write(named(".tmpAbC123"), b"{").unwrap();
        std::fs::write(named("lock"), b"1").unwrap();
        std::fs::create_dir(named("staging")).unwrap();
        std::fs::create_dir(named(".tmp-dir")).unwrap();
        assert_eq!(RunState::remove_leftovers(dir.path()).unwrap(), 2);
        assert!(!left.exists() && !named(".tmpAbC123").exists());
        for kept in ["state.json", "lock", "staging", ".tmp-dir"] {
            assert!(named(kept).exists(), "{kept} was removed");
        }
        assert_eq!(RunState::remove_leftovers(&named("missing")).unwrap(), 0);
    }
}
