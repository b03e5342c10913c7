//! Table versions, the atomic commit point and the output-directory lock.
//!
//! This is the only module that makes data visible. The layout of an output directory:
//!
//! ```text
//! <out>/
//!   <table>  -> .mews-etl/tables/<table>/v0000000007/data   relative symlink: THE commit point
//!   _quarantine/<table>/<load_id>.jsonl                rejected lines of a refused attempt
//!   .mews-etl/
//!     lock                                             held (flock) for the whole run
//!     staging/<table>/<load_id>-<random>/…             PartitionedWriter output
//!     tables/<table>/v0000000007/data/<partition dirs>/*.parquet
//!     tables/<table>/v0000000007/loads/<load_id>.json  one manifest per load in the version
//!     tables/<table>/v0000000007/loads/<load_id>.rejected.jsonl   and its rejected lines
//! ```
//!
//! The link points at the version's `data`, so what a reader or a warehouse load is
//! pointed at holds Parquet files only (BigQuery and Snowflake, unlike Spark or DuckDB, do
//! not skip names starting with `_`). Versions written before kept their manifests in
//! `_loads/` among the data, the link pointing at the version itself; they are read as they
//! are, and the next commit to the table writes the layout above.
//!
//! A version directory is a complete, immutable snapshot of a table. A commit builds the
//! next version beside the current one (hard links to the files it keeps, the new load's
//! staged files renamed in, its manifest last), then renames a fresh symlink over
//! `<out>/<table>`. That rename is atomic, so a reader globbing `<out>/<table>/**/*.parquet`
//! sees the old version or the new one, complete — never a mix, never an empty table.
//! The previous version is kept until the next commit, so a reader that listed files just
//! before the switch can still open them.
//!
//! A crash at any point leaves the visible table at its last committed version; the
//! leftovers are removed by [`OutputDir::open`].

use crate::manifest::{LoadManifest, WriteMode};
use crate::sink::escape_value;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Directory under the output root holding everything that is not a visible table.
pub const STATE_DIR: &str = ".mews-etl";
/// Directory under the output root holding rejected lines, per table and load.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// Longest load id, in bytes: ids name files and directories, which are limited to 255
/// bytes, and staging directories append a random suffix.
pub const MAX_LOAD_ID_LEN: usize = 128;

const LOCK_FILE: &str = "lock";
const STAGING_DIR: &str = "staging";
const TABLES_DIR: &str = "tables";
/// The directory of a staging directory (and of a version written by earlier releases)
/// holding the load's manifest and rejected lines.
const LOADS_DIR: &str = "_loads";
/// The directory of a table version holding its Parquet files: what the table link shows.
const DATA_DIR: &str = "data";
/// The directory of a table version holding each load's manifest and rejected lines,
/// beside [`DATA_DIR`].
const VERSION_LOADS_DIR: &str = "loads";
/// Further tries at the output directory's lock when it is held, [`LOCK_RETRY_PAUSE`] apart,
/// before a run gives up: enough to outlast a dry run's instant of holding it.
const LOCK_ATTEMPTS: u32 = 5;
/// Pause between tries at the lock.
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
/// Prefix of a version being built; never visible, removed on recovery.
const TMP_VERSION_PREFIX: &str = ".tmp-";
/// Infix of a symlink being prepared for the switch (`.<table>.tmp-<random>`).
const TMP_LINK_INFIX: &str = ".tmp-";

/// Why a commit, or opening the output directory, failed; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process holds the output directory's lock.
    #[error(
        "output directory {root} is in use by another mews-etl process{holder} (lock file {lock})"
    )]
    Locked {
        /// The output directory.
        root: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// `" (pid N)"` when the holder recorded its process id, else empty.
        holder: String,
    },
    /// `<out>/<table>` exists and is not a table version symlink made by this program.
    #[error("{path} is not a table managed by mews-etl ({what}); refusing to replace it — move it away or choose another output directory")]
    NotManaged {
        /// The path found.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// The output directory given lies inside another output directory's own files
    /// (`<out>/<table>` is a link into them): writing there would put files among a
    /// table's data.
    #[error("{given} is inside the files mews-etl keeps for output directory {root}: give {root} itself as the output directory")]
    InsideOutputDir {
        /// The directory given.
        given: PathBuf,
        /// The output directory it lies in.
        root: PathBuf,
    },
    /// A load id that is not a plain file name.
    #[error("invalid load id {load_id:?}: use sanitize_load_id ([A-Za-z0-9._-], not starting with '.' or '_', at most 128 bytes)")]
    InvalidLoadId {
        /// The id given.
        load_id: String,
    },
    /// A table name that is not a plain, non-reserved file name.
    #[error("invalid table name {table:?}: expected [A-Za-z0-9_-], not starting with '_' or '-'")]
    InvalidTable {
        /// The name given.
        table: String,
    },
    /// An append would mix two directory layouts in one table, which hive-partitioned
    /// readers cannot read as one.
    #[error("table {table} is partitioned by {kept:?} (load {load_id}); this load by {new:?}: append with the same --partition-by, or use --mode replace to change the table's layout")]
    LayoutMismatch {
        /// The table.
        table: String,
        /// A load already in the table.
        load_id: String,
        /// Its partition spec.
        kept: String,
        /// The new load's.
        new: String,
    },
    /// An append would put files with other columns (another version's schema) beside a
    /// table's files.
    #[error("table {table} holds load {load_id}, written with other columns (another version of mews-etl's schema): appending would mix them in one table; use --mode replace to rewrite the table with this load")]
    SchemaMismatch {
        /// The table.
        table: String,
        /// A load already in the table.
        load_id: String,
    },
    /// A manifest could not be read, parsed or written.
    #[error("manifest {path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// Staged files or paths do not match what the manifest says.
    #[error("{path}: {message}")]
    Inconsistent {
        /// The path involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A commit stopped at a [`CrashPoint`] on purpose (crash-safety tests).
    #[error("commit stopped at {0:?} on purpose")]
    SimulatedCrash(CrashPoint),
}

/// Attaches an action and a path to an I/O error.
trait IoContext<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T, CommitError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T, CommitError> {
        self.map_err(|source| CommitError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A step of a commit at which [`OutputDir::commit_until`] stops, to test recovery from a
/// crash there. The same steps are named by the process-level test hook in [`crate::crash`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Run the whole commit.
    Never,
    /// Stop with the load's files complete in staging, before anything else is touched.
    AfterStaging,
    /// Stop after the first staged file was moved into the version being built.
    MidMove,
    /// Stop with every file in the version being built, before its manifest is written.
    BeforeManifest,
    /// Stop after the manifest is written, before the built version gets its final name.
    AfterManifest,
    /// Stop after the new version directory is complete, before the symlink switch.
    BeforeSwitch,
    /// Stop after the switch, before old versions and the staging directory are removed.
    AfterSwitch,
}

impl CrashPoint {
    /// Every step at which a commit can stop, in order.
    pub const ALL: [CrashPoint; 6] = [
        CrashPoint::AfterStaging,
        CrashPoint::MidMove,
        CrashPoint::BeforeManifest,
        CrashPoint::AfterManifest,
        CrashPoint::BeforeSwitch,
        CrashPoint::AfterSwitch,
    ];

    /// The name of the step for the [`crate::crash`] hook (`MEWS_ETL_CRASH_AT`).
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::Never => "never",
            CrashPoint::AfterStaging => "after-staging",
            CrashPoint::MidMove => "mid-move",
            CrashPoint::BeforeManifest => "before-manifest",
            CrashPoint::AfterManifest => "after-manifest",
            CrashPoint::BeforeSwitch => "before-switch",
            CrashPoint::AfterSwitch => "after-switch",
        }
    }

    /// Whether a commit stopped here has made its load visible.
    pub fn is_after_commit_point(self) -> bool {
        matches!(self, CrashPoint::AfterSwitch | CrashPoint::Never)
    }
}

/// Stops the commit at `here` if the caller asked for it (in-process tests), or aborts the
/// process if the crash hook names it (process-level tests).
fn stop_at(crash: CrashPoint, here: CrashPoint) -> Result<(), CommitError> {
    crate::crash::point(here.name());
    if crash == here {
        return Err(CommitError::SimulatedCrash(here));
    }
    Ok(())
}

/// What a commit made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new version number of the table.
    pub version: u64,
    /// The visible table path, `<out>/<table>`.
    pub table_dir: PathBuf,
    /// The directory of the new version holding its loads' manifests and rejected lines.
    pub loads_dir: PathBuf,
    /// Parquet files in the new version, all loads together.
    pub files: usize,
    /// Rows in the new version, all loads together.
    pub rows_in_table: u64,
}

/// An output directory opened for writing: holds its lock until dropped.
///
/// Only one process may write an output directory at a time; the lock (an advisory
/// `flock` on `.mews-etl/lock`) is released when this value is dropped or the process dies.
#[derive(Debug)]
pub struct OutputDir {
    root: PathBuf,
    /// Held for its lock; dropping the file releases it.
    _lock: File,
}

impl OutputDir {
    /// Opens (creating if needed) the output directory `root`, takes its lock, and removes
    /// what an interrupted earlier run left behind.
    ///
    /// Fails with [`CommitError::Locked`] at once, rather than waiting, if another process
    /// holds the lock.
    pub fn open(root: &Path) -> Result<Self, CommitError> {
        refuse_inside_output_dir(root)?;
        let state = root.join(STATE_DIR);
        for dir in [state.join(STAGING_DIR), state.join(TABLES_DIR)] {
            fs::create_dir_all(&dir).at("creating directory", &dir)?;
        }
        // Work on the absolute path, so that paths handed out (staging directories made by
        // `tempfile`, which are absolute) compare equal with the ones derived from the root.
        let root = &fs::canonicalize(root).at("resolving", root)?;
        let state = root.join(STATE_DIR);
        let lock_path = state.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .at("opening lock file", &lock_path)?;
        let mut attempts = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                // A dry run holds a shared lock for an instant: worth a few more tries.
                Err(fs::TryLockError::WouldBlock) if attempts < LOCK_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(locked(root, lock_path, &mut lock))
                }
                Err(fs::TryLockError::Error(e)) => return Err(e).at("locking", &lock_path),
            }
        }
        // The pid is only a hint for the error message above; the lock itself is the flock.
        lock.set_len(0).at("writing", &lock_path)?;
        write!(lock, "{}", std::process::id()).at("writing", &lock_path)?;
        let out = OutputDir {
            root: root.to_path_buf(),
            _lock: lock,
        };
        out.recover()?;
        Ok(out)
    }

    /// Fails with [`CommitError::Locked`] if another process holds `root`'s lock, reading
    /// only (for a dry run): a shared lock is taken for an instant and let go.
    pub fn check_unlocked(root: &Path) -> Result<(), CommitError> {
        let lock_path = root.join(STATE_DIR).join(LOCK_FILE);
        let mut lock = match File::open(&lock_path) {
            Ok(lock) => lock,
            // No lock file: no run has ever held it, or the directory does not exist yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).at("opening lock file", &lock_path),
        };
        match lock.try_lock_shared() {
            Ok(()) => Ok(()),
            Err(fs::TryLockError::WouldBlock) => Err(locked(root, lock_path, &mut lock)),
            Err(fs::TryLockError::Error(e)) => Err(e).at("locking", &lock_path),
        }
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a fresh, empty staging directory for one load of `table`; hand it to
    /// [`crate::sink::PartitionedWriter`], then to [`OutputDir::commit`] or
    /// [`OutputDir::discard`].
    pub fn new_staging_dir(&self, table: &str, load_id: &str) -> Result<PathBuf, CommitError> {
        check_table(table)?;
        check_load_id(load_id)?;
        let parent = self.staging_root(table);
        fs::create_dir_all(&parent).at("creating directory", &parent)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{load_id}-"))
            .tempdir_in(&parent)
            .at("creating staging directory in", &parent)?;
        Ok(dir.keep())
    }

    /// Where the rejected lines of a load's latest attempt refused over its budget go:
    /// `<out>/_quarantine/<table>/<load_id>.jsonl`. (A committed load's are in its table
    /// version, beside its manifest: [`rejections_path`].)
    ///
    /// A table or load id that is not a valid name is escaped, so the path stays inside the
    /// quarantine directory even for unchecked names.
    pub fn quarantine_path(&self, table: &str, load_id: &str) -> PathBuf {
        let load = if check_load_id(load_id).is_ok() {
            load_id.to_owned()
        } else {
            escape_value(load_id)
        };
        let table = if check_table(table).is_ok() {
            table.to_owned()
        } else {
            escape_value(table)
        };
        self.root
            .join(QUARANTINE_DIR)
            .join(table)
            .join(format!("{load}.jsonl"))
    }

    /// Makes the staged files of a load visible as the next version of its table, with
    /// `manifest.mode` deciding whether earlier loads are kept.
    ///
    /// `staged` must come from [`OutputDir::new_staging_dir`] for `manifest.table`, and
    /// `manifest.files` must list the files in it. On success the staging directory is gone.
    pub fn commit(
        &self,
        staged: &Path,
        manifest: &LoadManifest,
    ) -> Result<CommitOutcome, CommitError> {
        self.commit_until(staged, manifest, CrashPoint::Never)
    }

    /// [`OutputDir::commit`], stopping at `crash` to test recovery.
    #[doc(hidden)]
    pub fn commit_until(
        &self,
        staged: &Path,
        manifest: &LoadManifest,
        crash: CrashPoint,
    ) -> Result<CommitOutcome, CommitError> {
        let table = manifest.table.as_str();
        check_table(table)?;
        check_load_id(&manifest.load_id)?;
        let staging_root = self.staging_root(table);
        if !staged.starts_with(&staging_root) || staged == staging_root {
            return Err(CommitError::Inconsistent {
                path: staged.to_path_buf(),
                message: format!(
                    "not a staging directory of table {table} (expected one under {})",
                    staging_root.display()
                ),
            });
        }
        stop_at(crash, CrashPoint::AfterStaging)?;
        let current = self.current_version(table)?;
        let table_versions = self.tables_root().join(table);
        fs::create_dir_all(&table_versions).at("creating directory", &table_versions)?;
        let next = current.map_or(1, |v| v + 1);
        let next_dir = table_versions.join(version_name(next));
        if next_dir.exists() {
            // Left by a commit of this process that failed before its switch: never visible.
            fs::remove_dir_all(&next_dir).at("removing unfinished version", &next_dir)?;
        }

        // 1. Build the next version in a temporary directory (removed if we fail).
        let building = tempfile::Builder::new()
            .prefix(&format!("{TMP_VERSION_PREFIX}{}-", version_name(next)))
            .tempdir_in(&table_versions)
            .at("creating version directory in", &table_versions)?;
        let build = building.path();
        let mut files = 0usize;
        let mut rows = 0u64;
        let built = VersionDirs::new(build);
        fs::create_dir_all(&built.data).at("creating directory", &built.data)?;
        if let (WriteMode::Append, Some(current)) = (manifest.mode, current) {
            let current_dirs = VersionDirs::of(&table_versions.join(version_name(current)));
            let kept_loads = read_manifests(&current_dirs.loads)?;
            same_layout(
                table,
                &kept_loads,
                &manifest.load_id,
                &manifest.partition_spec,
                &manifest.schema_fingerprint,
            )?;
            for kept in kept_loads {
                if kept.load_id == manifest.load_id {
                    // Re-running a load replaces it: said aloud, as a load id reused by
                    // mistake would otherwise lose the earlier rows unnoticed.
                    tracing::info!(table, load_id = %kept.load_id, rows = kept.counts.rows_written, "replacing the earlier load with this id");
                    continue;
                }
                if manifest.replaces.contains(&kept.load_id) {
                    tracing::info!(table, load_id = %kept.load_id, rows = kept.counts.rows_written, by = %manifest.load_id, "replacing an earlier load of the same rows");
                    continue;
                }
                for file in &kept.files {
                    let rel = relative_path(&file.path, &current_dirs.data)?;
                    link_or_copy(&current_dirs.data.join(&rel), &built.data.join(&rel))?;
                    files += 1;
                    rows += file.rows;
                }
                for name in [manifest_name(&kept.load_id), rejections_name(&kept.load_id)] {
                    let from = current_dirs.loads.join(&name);
                    // Only a load with rejected lines has their file.
                    if from.exists() {
                        link_or_copy(&from, &built.loads.join(&name))?;
                    }
                }
            }
        }
        // Before anything leaves staging, so that what a failure leaves there is the load.
        if crate::crash::fails("version") {
            return Err(io::Error::other(
                "refused on purpose (MEWS_ETL_FAIL_AT=version)",
            ))
            .at("building the next version in", &built.data);
        }
        // The load's rejected lines, published with its rows and its manifest.
        let rejections = rejections_path(staged, &manifest.load_id);
        if rejections.exists() {
            let to = built.loads.join(rejections_name(&manifest.load_id));
            create_parent(&to)?;
            fs::rename(&rejections, &to).at("moving staged file", &rejections)?;
        }
        for file in &manifest.files {
            let rel = relative_path(&file.path, staged)?;
            let (from, to) = (staged.join(&rel), built.data.join(&rel));
            if to.exists() {
                return Err(CommitError::Inconsistent {
                    path: to,
                    message: format!(
                        "load {} would overwrite a file of another load",
                        manifest.load_id
                    ),
                });
            }
            create_parent(&to)?;
            fs::rename(&from, &to).at("moving staged file", &from)?;
            if let Err(e) = stop_at(crash, CrashPoint::MidMove) {
                let _ = building.keep(); // a crash leaves it: recovery must remove it
                return Err(e);
            }
            files += 1;
            rows += file.rows;
        }
        if let Err(e) = stop_at(crash, CrashPoint::BeforeManifest) {
            let _ = building.keep();
            return Err(e);
        }
        write_manifest(&built.loads, manifest)?;
        sync_tree(build)?;
        if let Err(e) = stop_at(crash, CrashPoint::AfterManifest) {
            let _ = building.keep();
            return Err(e);
        }
        fs::rename(build, &next_dir).at("renaming new version to", &next_dir)?;
        let _ = building.keep(); // renamed away: nothing left for the guard to remove
        sync_dir(&table_versions)?;
        stop_at(crash, CrashPoint::BeforeSwitch)?;

        // 2. The commit point: atomically point `<out>/<table>` at the new version.
        self.switch(table, next)?;
        stop_at(crash, CrashPoint::AfterSwitch)?;

        // 3. Clean up. The commit has happened: failures here are logged, not returned.
        self.remove_old_versions(&table_versions, next);
        if let Err(e) = fs::remove_dir_all(staged) {
            tracing::warn!(path = %staged.display(), error = %e, "could not remove staging directory");
        }
        Ok(CommitOutcome {
            version: next,
            table_dir: self.root.join(table),
            loads_dir: VersionDirs::new(&next_dir).loads,
            files,
            rows_in_table: rows,
        })
    }

    /// Removes a staging directory whose load will not be committed.
    pub fn discard(&self, staged: &Path) -> Result<(), CommitError> {
        let staging = self.root.join(STATE_DIR).join(STAGING_DIR);
        if !staged.starts_with(&staging) || staged == staging {
            return Err(CommitError::Inconsistent {
                path: staged.to_path_buf(),
                message: format!(
                    "not a staging directory (expected one under {})",
                    staging.display()
                ),
            });
        }
        match fs::remove_dir_all(staged) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).at("removing staging directory", staged)
            }
            _ => Ok(()),
        }
    }

    /// Manifests of the loads in the visible version of `table`, in commit order; empty if
    /// the table does not exist yet.
    pub fn current_loads(&self, table: &str) -> Result<Vec<LoadManifest>, CommitError> {
        loads_at(&self.root, table)
    }

    /// Checks, before any work, that load `load_id` with partitioning `partition_spec` and
    /// columns `schema_fingerprint` may be appended to `table`: the table's other loads must
    /// share its layout and columns. The commit checks again.
    pub fn check_append(
        &self,
        table: &str,
        load_id: &str,
        partition_spec: &str,
        schema_fingerprint: &str,
    ) -> Result<(), CommitError> {
        check_layout(
            &self.root,
            table,
            WriteMode::Append,
            load_id,
            partition_spec,
            schema_fingerprint,
        )
    }

    fn tables_root(&self) -> PathBuf {
        self.root.join(STATE_DIR).join(TABLES_DIR)
    }

    fn staging_root(&self, table: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(STAGING_DIR).join(table)
    }

    /// The symlink target for a version, relative to the output root: its `data`.
    fn link_target(table: &str, version: u64) -> PathBuf {
        Self::version_dir(table, version).join(DATA_DIR)
    }

    /// A version's directory, relative to the output root: the target of the links made by
    /// earlier releases.
    fn version_dir(table: &str, version: u64) -> PathBuf {
        Path::new(STATE_DIR)
            .join(TABLES_DIR)
            .join(table)
            .join(version_name(version))
    }

    /// The visible version of `table`: `None` if `<out>/<table>` does not exist; an error if
    /// it exists but is not our symlink (never touch user data).
    pub fn current_version(&self, table: &str) -> Result<Option<u64>, CommitError> {
        version_at(&self.root, table)
    }

    /// Points `<out>/<table>` at `version` by renaming a fresh symlink over it.
    fn switch(&self, table: &str, version: u64) -> Result<(), CommitError> {
        let target = Self::link_target(table, version);
        let link = self.root.join(table);
        let tmp = self
            .root
            .join(format!(".{table}{TMP_LINK_INFIX}{}", random_suffix()));
        make_symlink(&target, &tmp).at("creating symlink", &tmp)?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(e).at("switching table symlink", &link);
        }
        // The switch is done and visible: failing now would report a table unchanged that
        // has changed. A crash before the directory reaches the disk shows the previous
        // version, which is as good as the switch not having happened.
        if let Err(e) = sync_dir(&self.root) {
            tracing::warn!(path = %self.root.display(), error = %e, "the table switched, but syncing its directory failed: a crash now may show the previous version");
        }
        Ok(())
    }

    /// Deletes versions older than the one before `current`. The previous version stays so
    /// a reader that listed its files just before the switch can still open them.
    fn remove_old_versions(&self, table_versions: &Path, current: u64) {
        let Ok(entries) = fs::read_dir(table_versions) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(v) = name.to_str().and_then(parse_version) {
                if v + 1 < current {
                    let path = entry.path();
                    if let Err(e) = fs::remove_dir_all(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "could not remove old table version");
                    }
                }
            }
        }
    }

    /// Removes what a crash left behind. Runs under the lock, so nothing here is in use.
    fn recover(&self) -> Result<(), CommitError> {
        // Versions that were being built, or built but never switched to.
        let tables_root = self.tables_root();
        for entry in fs::read_dir(&tables_root).at("listing", &tables_root)? {
            let entry = entry.at("listing", &tables_root)?;
            let Some(table) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_table(&table).is_err() || !entry.path().is_dir() {
                continue;
            }
            let current = match self.current_version(&table) {
                Ok(v) => v,
                Err(CommitError::NotManaged { path, what }) => {
                    // Someone replaced our symlink: leave everything alone; commit will refuse.
                    tracing::warn!(path = %path.display(), what, "table is not managed by mews-etl; skipping recovery");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let versions = entry.path();
            for v in fs::read_dir(&versions).at("listing", &versions)? {
                let v = v.at("listing", &versions)?;
                let name = v.file_name();
                let name = name.to_string_lossy();
                let stale = if name.starts_with(TMP_VERSION_PREFIX) {
                    true
                } else if let Some(n) = parse_version(&name) {
                    current.is_none_or(|c| n > c || n + 1 < c)
                } else {
                    false
                };
                if stale {
                    let path = v.path();
                    tracing::info!(path = %path.display(), "removing leftover of an interrupted commit");
                    fs::remove_dir_all(&path).at("removing leftover version", &path)?;
                }
            }
        }
        // Symlinks prepared for a switch that never happened.
        for entry in fs::read_dir(&self.root).at("listing", &self.root)? {
            let entry = entry.at("listing", &self.root)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if is_link && name.starts_with('.') && name.contains(TMP_LINK_INFIX) {
                let path = entry.path();
                fs::remove_file(&path).at("removing stale symlink", &path)?;
            }
        }
        // Staging directories of loads that never committed.
        self.remove_staging()
    }

    /// Removes every staging directory. The lock makes them all this process's own, so call
    /// it only when no load of this process is still writing (after an interrupted run, or
    /// on open).
    pub fn remove_staging(&self) -> Result<(), CommitError> {
        let staging = self.root.join(STATE_DIR).join(STAGING_DIR);
        fs::remove_dir_all(&staging).at("removing staging directories", &staging)?;
        fs::create_dir_all(&staging).at("creating directory", &staging)?;
        Ok(())
    }
}

/// Turns any text into a valid load id: characters outside `[A-Za-z0-9._-]` become `_`, an
/// id starting with `.` or `_` gets `load` in front (no hidden or `..` names, no data files
/// that readers skip), an empty id becomes `load`, and an id
/// longer than [`MAX_LOAD_ID_LEN`] is cut and suffixed with a hash of the original so
/// distinct long ids stay distinct. Valid ids are returned unchanged.
pub fn sanitize_load_id(raw: &str) -> String {
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        return "load".to_owned();
    }
    // A file or directory whose name starts with `.` or `_` is hidden to readers (pyarrow,
    // Spark): a load's data files, named after it, must not be.
    if id.starts_with(['.', '_']) {
        id.insert_str(0, "load");
    }
    if id.len() > MAX_LOAD_ID_LEN {
        let hash = Sha256::digest(raw.as_bytes());
        id.truncate(MAX_LOAD_ID_LEN - 17);
        id.push('-');
        for b in &hash[..8] {
            id.push_str(&format!("{b:02x}"));
        }
    }
    id
}

/// A load id for any text that keeps distinct texts apart: [`sanitize_load_id`], plus a
/// hash of the original text when sanitising changed it.
///
/// Sanitising alone maps `a/b`, `a b` and `a_b` to the same id, and re-loading an id
/// replaces that load's rows, so two different export ids would silently replace each
/// other's rows. Valid ids are returned unchanged.
pub fn distinct_load_id(raw: &str) -> String {
    let mut id = sanitize_load_id(raw);
    // Over-long ids already end in a hash of the original text.
    if id == raw || raw.len() > MAX_LOAD_ID_LEN {
        return id;
    }
    let hash = Sha256::digest(raw.as_bytes());
    id.truncate(MAX_LOAD_ID_LEN - 17);
    id.push('-');
    for b in &hash[..8] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn check_load_id(load_id: &str) -> Result<(), CommitError> {
    if load_id.is_empty() || sanitize_load_id(load_id) != load_id {
        return Err(CommitError::InvalidLoadId {
            load_id: load_id.to_owned(),
        });
    }
    Ok(())
}

/// The visible version of `table` in the output directory `root` (see
/// [`OutputDir::current_version`]).
fn version_at(root: &Path, table: &str) -> Result<Option<u64>, CommitError> {
    let link = root.join(table);
    let meta = match fs::symlink_metadata(&link) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("inspecting", &link),
    };
    let not_managed = |what: String| CommitError::NotManaged {
        path: link.clone(),
        what,
    };
    if !meta.file_type().is_symlink() {
        let what = if meta.is_dir() {
            "a real directory"
        } else {
            "a regular file"
        };
        return Err(not_managed(what.to_owned()));
    }
    let target = fs::read_link(&link).at("reading symlink", &link)?;
    let version = target
        .strip_prefix(Path::new(STATE_DIR).join(TABLES_DIR).join(table))
        .ok()
        .and_then(|rest| rest.components().next())
        .and_then(|first| first.as_os_str().to_str())
        .and_then(parse_version);
    match version {
        Some(v)
            if target == OutputDir::link_target(table, v)
                || target == OutputDir::version_dir(table, v) =>
        {
            Ok(Some(v))
        }
        _ => Err(not_managed(format!("a symlink to {}", target.display()))),
    }
}

/// The manifests of the loads `table` shows in the output directory `root`, reading only
/// (no lock taken, nothing mended): what a dry run may look at.
pub fn loads_at(root: &Path, table: &str) -> Result<Vec<LoadManifest>, CommitError> {
    check_table(table)?;
    match version_at(root, table)? {
        Some(v) => {
            read_manifests(&VersionDirs::of(&root.join(OutputDir::version_dir(table, v))).loads)
        }
        None => Ok(Vec::new()),
    }
}

/// Checks, before any work and reading only, that a load may join `table` in the output
/// directory `root` in `mode`; the commit checks again. An append must share the layout
/// and columns of the table's other loads ([`OutputDir::check_append`]). A replace needs
/// only `<out>/<table>` to be absent or this directory's own link (never user data): no
/// earlier manifest is read, so a replace mends a table whose manifests cannot be. It takes
/// no lock and creates or mends nothing, so a dry run can make it too; a directory that
/// does not exist yet takes any load.
pub fn check_layout(
    root: &Path,
    table: &str,
    mode: WriteMode,
    load_id: &str,
    partition_spec: &str,
    schema_fingerprint: &str,
) -> Result<(), CommitError> {
    check_table(table)?;
    match mode {
        WriteMode::Append => same_layout(
            table,
            &loads_at(root, table)?,
            load_id,
            partition_spec,
            schema_fingerprint,
        ),
        WriteMode::Replace => version_at(root, table).map(drop),
    }
}

/// The error for a lock another process holds, naming it by the pid it wrote (only a hint:
/// the lock itself is the flock).
fn locked(root: &Path, lock_path: PathBuf, lock: &mut File) -> CommitError {
    let mut text = String::new();
    let _ = lock.read_to_string(&mut text);
    let holder = match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    };
    CommitError::Locked {
        root: root.to_path_buf(),
        lock: lock_path,
        holder,
    }
}

/// Refuses an output directory inside another's own files: `--out out/order_item`, where
/// `out/order_item` is the link to a table version's data, would write this directory's
/// state and tables among that version's Parquet files, which readers of the table list;
/// `--out out/_quarantine` would take the other's refused lines among its tables' data.
/// The nearest existing ancestor is resolved, so links are followed and a directory not yet
/// made is judged by where it would be.
pub fn refuse_inside_output_dir(root: &Path) -> Result<(), CommitError> {
    // The nearest existing ancestor resolved, with the part not made yet after it.
    let Some(resolved) = root.ancestors().find_map(|a| {
        let existing = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        let rest = root.strip_prefix(a).ok()?;
        fs::canonicalize(existing).ok().map(|r| r.join(rest))
    }) else {
        return Ok(());
    };
    // Its state directory and its quarantine are an output directory's own (a directory
    // merely named so, `~/.mews-etl/warehouse`, is anyone's: only one beside which tables
    // are kept counts).
    let holds_tables = |dir: &Path| dir.join(STATE_DIR).join(TABLES_DIR).is_dir();
    let inside = resolved.ancestors().find_map(|a| {
        let name = a.file_name()?;
        let parent = a.parent()?;
        ((name == STATE_DIR || name == QUARANTINE_DIR) && holds_tables(parent)).then_some(parent)
    });
    match inside {
        Some(managed) => Err(CommitError::InsideOutputDir {
            given: root.to_path_buf(),
            root: managed.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Table names come from schema files (`order_item`); anything else is refused, so a table
/// can never be `.mews-etl`, `_quarantine` or a path.
fn check_table(table: &str) -> Result<(), CommitError> {
    let valid = !table.is_empty()
        && table.len() <= MAX_LOAD_ID_LEN
        && !table.starts_with(['_', '-'])
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !valid {
        return Err(CommitError::InvalidTable {
            table: table.to_owned(),
        });
    }
    Ok(())
}

fn version_name(version: u64) -> String {
    format!("v{version:010}")
}

fn parse_version(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn manifest_name(load_id: &str) -> String {
    format!("{load_id}.json")
}

/// Where a load's rejected lines are kept in its staging directory `dir` until it commits:
/// `<dir>/_loads/<load_id>.rejected.jsonl`.
pub fn rejections_path(dir: &Path, load_id: &str) -> PathBuf {
    dir.join(LOADS_DIR).join(rejections_name(load_id))
}

/// The name of the file of a load's rejected lines, beside its manifest.
pub fn rejections_name(load_id: &str) -> String {
    format!("{load_id}.rejected.jsonl")
}

/// Where a table version keeps its Parquet files and its loads' manifests.
struct VersionDirs {
    /// The Parquet files, in their partition directories: what the table link shows.
    data: PathBuf,
    /// Each load's manifest and rejected lines.
    loads: PathBuf,
}

impl VersionDirs {
    /// The layout this release writes, for the version directory `dir`.
    fn new(dir: &Path) -> Self {
        VersionDirs {
            data: dir.join(DATA_DIR),
            loads: dir.join(VERSION_LOADS_DIR),
        }
    }

    /// The layout of the existing version directory `dir`: this release's, or that of the
    /// releases before it (data and `_loads` in the version directory itself).
    fn of(dir: &Path) -> Self {
        let dirs = Self::new(dir);
        if dirs.data.is_dir() {
            dirs
        } else {
            VersionDirs {
                data: dir.to_owned(),
                loads: dir.join(LOADS_DIR),
            }
        }
    }
}

/// A manifest's file path as a relative path that cannot leave `base`.
fn relative_path(path: &str, base: &Path) -> Result<PathBuf, CommitError> {
    let rel = PathBuf::from(path);
    let plain = !path.is_empty()
        && !path.contains(['\\', '\0'])
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(CommitError::Inconsistent {
            path: base.join(path),
            message: "manifest lists a file path that is not a plain relative path".to_owned(),
        });
    }
    Ok(rel)
}

fn create_parent(path: &Path) -> Result<(), CommitError> {
    let parent = path.parent().expect("a file inside a version");
    fs::create_dir_all(parent).at("creating directory", parent)
}

/// Hard-links a file of the current version into the next (no data copied); copies it
/// where hard links are not supported.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), CommitError> {
    create_parent(to)?;
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).at("copying", from)?;
    File::open(to).and_then(|f| f.sync_all()).at("syncing", to)
}

/// Writes `<dir>/<load_id>.json`: temporary file, fsync, rename.
fn write_manifest(dir: &Path, manifest: &LoadManifest) -> Result<(), CommitError> {
    fs::create_dir_all(dir).at("creating directory", dir)?;
    let path = dir.join(manifest_name(&manifest.load_id));
    let json = serde_json::to_vec_pretty(manifest).map_err(|source| CommitError::Manifest {
        path: path.clone(),
        source,
    })?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".manifest-");
    // Readable as the data files are (the umask decides), not only by the owner as
    // temporary files are made: whoever may read the table may read what its loads hold.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).at("creating file in", dir)?;
    tmp.write_all(&json).at("writing", tmp.path())?;
    tmp.as_file().sync_all().at("syncing", tmp.path())?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .at("renaming manifest to", &path)?;
    Ok(())
}

/// Refuses an append whose partitioning or columns differ from a load it would sit beside
/// (a load with the same id is replaced, so its own do not matter): readers take a table's
/// files as one, and files of two layouts, or with a column of two types, do not read so.
fn same_layout(
    table: &str,
    kept: &[LoadManifest],
    load_id: &str,
    partition_spec: &str,
    schema_fingerprint: &str,
) -> Result<(), CommitError> {
    for other in kept.iter().filter(|k| k.load_id != load_id) {
        if other.partition_spec != partition_spec {
            return Err(CommitError::LayoutMismatch {
                table: table.to_owned(),
                load_id: other.load_id.clone(),
                kept: other.partition_spec.clone(),
                new: partition_spec.to_owned(),
            });
        }
        if other.schema_fingerprint != schema_fingerprint {
            return Err(CommitError::SchemaMismatch {
                table: table.to_owned(),
                load_id: other.load_id.clone(),
            });
        }
    }
    Ok(())
}

/// The manifests in a version's loads directory `dir`, ordered by commit time, then load
/// id.
fn read_manifests(dir: &Path) -> Result<Vec<LoadManifest>, CommitError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at("listing", dir),
    };
    for entry in entries {
        let path = entry.at("listing", dir)?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = fs::read(&path).at("reading", &path)?;
        let manifest: LoadManifest =
            serde_json::from_slice(&text).map_err(|source| CommitError::Manifest {
                path: path.clone(),
                source,
            })?;
        out.push(manifest);
    }
    out.sort_by(|a, b| (&a.created_utc, &a.load_id).cmp(&(&b.created_utc, &b.load_id)));
    Ok(out)
}

/// Fsyncs every directory under `root` (children first) and `root` itself, so the
/// entries of a new version survive a crash once it is visible.
fn sync_tree(root: &Path) -> Result<(), CommitError> {
    for entry in fs::read_dir(root).at("listing", root)? {
        let entry = entry.at("listing", root)?;
        if entry.file_type().at("inspecting", &entry.path())?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(root)
}

fn sync_dir(dir: &Path) -> Result<(), CommitError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("syncing directory", dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    // Windows needs privileges for symlinks and cannot rename one over another atomically.
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "table versions need a Unix file system",
    ))
}

/// 16 random hex digits for temporary names (std's per-process random hash keys, mixed
/// with the time, so concurrent processes and repeated calls differ).
fn random_suffix() -> String {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{LoadCounts, MANIFEST_FORMAT_VERSION};
    use crate::sink::WrittenFile;
    use std::collections::BTreeSet;

    const TABLE: &str = "order_item";

    /// Stages fake Parquet files (content is irrelevant to the commit) and their manifest.
    fn stage(
        out: &OutputDir,
        load_id: &str,
        mode: WriteMode,
        files: &[(&str, u64)],
    ) -> (PathBuf, LoadManifest) {
        let staged = out.new_staging_dir(TABLE, load_id).unwrap();
        let mut written = Vec::new();
        for (i, (month, rows)) in files.iter().enumerate() {
            let path = format!("ConsumedUtc_month={month}/{load_id}-{i:05}-00000.parquet");
            let full = staged.join(&path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(&full, format!("{load_id} {month}")).unwrap();
            written.push(WrittenFile {
                path,
                rows: *rows,
                bytes: 10,
                partition: vec![("ConsumedUtc_month".into(), (*month).into())],
            });
        }
        let rows = files.iter().map(|f| f.1).sum();
        let manifest = LoadManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            load_id: load_id.into(),
            entity: "OrderItem".into(),
            table: TABLE.into(),
            export_id: "export".into(),
            mode,
            partition_spec: "ConsumedUtc:month".into(),
            schema_fingerprint: "fp".into(),
            created_utc: "2024-01-01T00:00:00Z".into(),
            sources: Vec::new(),
            files: written,
            counts: LoadCounts {
                lines_read: rows,
                rows_written: rows,
                ..LoadCounts::default()
            },
            replaces: Vec::new(),
        };
        (staged, manifest)
    }

    /// Every file visible through `<out>/<table>`, relative to it.
    fn visible(root: &Path) -> BTreeSet<String> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let mut out = BTreeSet::new();
        let table = root.join(TABLE);
        walk(&table, &table, &mut out);
        out
    }

    /// The ids of the loads the table shows, in commit order.
    fn load_ids(out: &OutputDir) -> Vec<String> {
        out.current_loads(TABLE)
            .unwrap()
            .into_iter()
            .map(|m| m.load_id)
            .collect()
    }

    fn versions(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root.join(STATE_DIR).join(TABLES_DIR).join(TABLE))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn first_commit_creates_symlink_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let (staged, m) = stage(
            &out,
            "l1",
            WriteMode::Append,
            &[("2023-03", 5), ("2023-04", 2)],
        );
        let outcome = out.commit(&staged, &m).unwrap();
        assert_eq!(
            outcome,
            CommitOutcome {
                version: 1,
                table_dir: tmp.path().join(TABLE),
                loads_dir: tmp
                    .path()
                    .join(".mews-etl/tables/order_item/v0000000001/loads"),
                files: 2,
                rows_in_table: 7
            }
        );
        assert_eq!(
            fs::read_link(tmp.path().join(TABLE)).unwrap(),
            Path::new(".mews-etl/tables/order_item/v0000000001/data")
        );
        assert!(outcome.loads_dir.join("l1.json").is_file());
        assert_eq!(
            visible(tmp.path()),
            BTreeSet::from([
                "ConsumedUtc_month=2023-03/l1-00000-00000.parquet".to_owned(),
                "ConsumedUtc_month=2023-04/l1-00001-00000.parquet".to_owned(),
            ])
        );
        assert!(!staged.exists(), "staging directory removed after commit");
    }

    #[test]
    fn append_keeps_earlier_loads_and_reloading_replaces_them() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 5)]);
        out.commit(&s, &m).unwrap();
        let (s, m) = stage(&out, "l2", WriteMode::Append, &[("2023-03", 3)]);
        let outcome = out.commit(&s, &m).unwrap();
        assert_eq!(
            (outcome.version, outcome.files, outcome.rows_in_table),
            (2, 2, 8)
        );
        // The same load again (say with fixed data): its old files go, the rows count once.
        let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-04", 4)]);
        let outcome = out.commit(&s, &m).unwrap();
        assert_eq!(
            (outcome.version, outcome.files, outcome.rows_in_table),
            (3, 2, 7)
        );
        assert_eq!(
            visible(tmp.path()),
            BTreeSet::from([
                "ConsumedUtc_month=2023-03/l2-00000-00000.parquet".to_owned(),
                "ConsumedUtc_month=2023-04/l1-00000-00000.parquet".to_owned(),
            ])
        );
        assert_eq!(load_ids(&out), ["l1", "l2"]);
        // Current and previous versions are kept, older ones collected.
        assert_eq!(versions(tmp.path()), ["v0000000002", "v0000000003"]);
    }

    #[test]
    fn append_refuses_a_second_layout_and_replace_changes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 5)]);
        out.commit(&s, &m).unwrap();
        let (s, mut m) = stage(&out, "l2", WriteMode::Append, &[("2023-03", 3)]);
        m.partition_spec = "none".into();
        let err = out.commit(&s, &m).unwrap_err();
        assert!(
            matches!(&err, CommitError::LayoutMismatch { load_id, .. } if load_id == "l1"),
            "{err}"
        );
        assert!(err.to_string().contains("--mode replace"), "{err}");
        assert_eq!(versions(tmp.path()), ["v0000000001"]);
        // Reloading the only load, or replacing the table, may change the layout.
        let (s, mut m) = stage(&out, "l1", WriteMode::Append, &[("2023-04", 2)]);
        m.partition_spec = "none".into();
        out.commit(&s, &m).unwrap();
        let (s, m) = stage(&out, "l3", WriteMode::Replace, &[("2023-04", 2)]);
        out.commit(&s, &m).unwrap();
        // Other columns (a later schema) are refused beside the table's loads too.
        let (s, mut m) = stage(&out, "l4", WriteMode::Append, &[("2023-04", 2)]);
        m.schema_fingerprint = "other".into();
        let err = out.commit(&s, &m).unwrap_err();
        assert!(
            matches!(&err, CommitError::SchemaMismatch { load_id, .. } if load_id == "l3"),
            "{err}"
        );
        assert!(out
            .check_append(TABLE, "l4", "ConsumedUtc:month", "other")
            .is_err());
        assert!(out
            .check_append(TABLE, "l3", "ConsumedUtc:month", "other")
            .is_ok());
    }

    /// A table written by an earlier release (the link at the version itself, manifests in
    /// `_loads/` among the data) is read as it is, and the next commit writes this layout.
    #[test]
    fn a_version_of_the_earlier_layout_is_read_and_rewritten_by_the_next_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 5)]);
        out.commit(&s, &m).unwrap();
        let v1 = tmp.path().join(".mews-etl/tables/order_item/v0000000001");
        for entry in fs::read_dir(v1.join(DATA_DIR)).unwrap() {
            let entry = entry.unwrap();
            fs::rename(entry.path(), v1.join(entry.file_name())).unwrap();
        }
        fs::remove_dir(v1.join(DATA_DIR)).unwrap();
        fs::rename(v1.join(VERSION_LOADS_DIR), v1.join(LOADS_DIR)).unwrap();
        let link = tmp.path().join(TABLE);
        fs::remove_file(&link).unwrap();
        make_symlink(Path::new(".mews-etl/tables/order_item/v0000000001"), &link).unwrap();
        assert_eq!(out.current_loads(TABLE).unwrap().len(), 1);

        let (s, m) = stage(&out, "l2", WriteMode::Append, &[("2023-04", 2)]);
        let outcome = out.commit(&s, &m).unwrap();
        assert_eq!((outcome.files, outcome.rows_in_table), (2, 7));
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new(".mews-etl/tables/order_item/v0000000002/data")
        );
        assert_eq!(
            visible(tmp.path()),
            BTreeSet::from([
                "ConsumedUtc_month=2023-03/l1-00000-00000.parquet".to_owned(),
                "ConsumedUtc_month=2023-04/l2-00000-00000.parquet".to_owned(),
            ])
        );
        assert_eq!(load_ids(&out), ["l1", "l2"]);
    }

    #[test]
    fn replace_leaves_only_the_new_load() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 5)]);
        out.commit(&s, &m).unwrap();
        let (s, m) = stage(&out, "l2", WriteMode::Replace, &[("2023-05", 1)]);
        let outcome = out.commit(&s, &m).unwrap();
        assert_eq!((outcome.files, outcome.rows_in_table), (1, 1));
        assert_eq!(
            visible(tmp.path()),
            BTreeSet::from(["ConsumedUtc_month=2023-05/l2-00000-00000.parquet".to_owned(),])
        );
        let loads = out.current_loads(TABLE).unwrap();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0], m);
    }

    #[test]
    fn interrupted_commit_is_cleaned_on_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let before;
        {
            let out = OutputDir::open(tmp.path()).unwrap();
            let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 5)]);
            out.commit(&s, &m).unwrap();
            before = visible(tmp.path());
            let (s, m) = stage(&out, "l2", WriteMode::Append, &[("2023-04", 1)]);
            let err = out
                .commit_until(&s, &m, CrashPoint::BeforeSwitch)
                .unwrap_err();
            assert!(matches!(
                err,
                CommitError::SimulatedCrash(CrashPoint::BeforeSwitch)
            ));
            // More debris of a crash: a half-built version and a prepared symlink.
            let versions_dir = tmp.path().join(STATE_DIR).join(TABLES_DIR).join(TABLE);
            fs::create_dir(versions_dir.join(".tmp-v0000000003-x")).unwrap();
            make_symlink(Path::new("nowhere"), &tmp.path().join(".order_item.tmp-1")).unwrap();
            assert_eq!(
                versions(tmp.path()),
                [".tmp-v0000000003-x", "v0000000001", "v0000000002"]
            );
            assert_eq!(visible(tmp.path()), before, "readers still see version 1");
        }
        let out = OutputDir::open(tmp.path()).unwrap();
        assert_eq!(versions(tmp.path()), ["v0000000001"]);
        assert_eq!(visible(tmp.path()), before);
        assert!(!tmp.path().join(".order_item.tmp-1").exists());
        let staging = tmp.path().join(STATE_DIR).join(STAGING_DIR);
        assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
        // And the table keeps working.
        let (s, m) = stage(&out, "l2", WriteMode::Append, &[("2023-04", 1)]);
        assert_eq!(out.commit(&s, &m).unwrap().version, 2);
    }

    /// A commit stopped at each step leaves the visible table at the old load or at the
    /// new one, complete; the next open removes the debris and the load commits once.
    #[test]
    fn every_crash_point_is_recovered() {
        for point in CrashPoint::ALL {
            let tmp = tempfile::tempdir().unwrap();
            let old;
            let new;
            {
                let out = OutputDir::open(tmp.path()).unwrap();
                let (s, m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 5)]);
                out.commit(&s, &m).unwrap();
                old = visible(tmp.path());
                let (s, m) = stage(
                    &out,
                    "l2",
                    WriteMode::Append,
                    &[("2023-03", 1), ("2023-04", 2), ("2023-05", 3)],
                );
                let err = out.commit_until(&s, &m, point).unwrap_err();
                assert!(
                    matches!(err, CommitError::SimulatedCrash(p) if p == point),
                    "{point:?}: {err}"
                );
                new = old
                    .iter()
                    .cloned()
                    .chain([
                        "ConsumedUtc_month=2023-03/l2-00000-00000.parquet".to_owned(),
                        "ConsumedUtc_month=2023-04/l2-00001-00000.parquet".to_owned(),
                        "ConsumedUtc_month=2023-05/l2-00002-00000.parquet".to_owned(),
                    ])
                    .collect::<BTreeSet<_>>();
                let seen = visible(tmp.path());
                let expected = if point.is_after_commit_point() {
                    &new
                } else {
                    &old
                };
                assert_eq!(&seen, expected, "{point:?}: visible right after the crash");
            }
            let out = OutputDir::open(tmp.path()).unwrap();
            let expected = if point.is_after_commit_point() {
                &new
            } else {
                &old
            };
            assert_eq!(&visible(tmp.path()), expected, "{point:?}: after recovery");
            let staging = tmp.path().join(STATE_DIR).join(STAGING_DIR);
            assert_eq!(fs::read_dir(&staging).unwrap().count(), 0, "{point:?}");
            let leftovers: Vec<String> = versions(tmp.path())
                .into_iter()
                .filter(|v| parse_version(v).is_none())
                .collect();
            assert!(leftovers.is_empty(), "{point:?}: {leftovers:?}");
            // The rerun commits the load once: no file doubled, the old load kept.
            let (s, m) = stage(
                &out,
                "l2",
                WriteMode::Append,
                &[("2023-03", 1), ("2023-04", 2), ("2023-05", 3)],
            );
            let outcome = out.commit(&s, &m).unwrap();
            assert_eq!((outcome.files, outcome.rows_in_table), (4, 11), "{point:?}");
            assert_eq!(visible(tmp.path()), new, "{point:?}: after the rerun");
        }
    }

    #[test]
    fn crash_after_switch_keeps_the_new_version() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let out = OutputDir::open(tmp.path()).unwrap();
            for (id, crash) in [
                ("l1", CrashPoint::Never),
                ("l2", CrashPoint::Never),
                ("l3", CrashPoint::AfterSwitch),
            ] {
                let (s, m) = stage(&out, id, WriteMode::Append, &[("2023-03", 1)]);
                let _ = out.commit_until(&s, &m, crash);
            }
            assert_eq!(
                versions(tmp.path()),
                ["v0000000001", "v0000000002", "v0000000003"]
            );
        }
        let out = OutputDir::open(tmp.path()).unwrap();
        assert_eq!(versions(tmp.path()), ["v0000000002", "v0000000003"]);
        assert_eq!(out.current_loads(TABLE).unwrap().len(), 3);
    }

    #[test]
    fn a_real_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join(TABLE);
        fs::create_dir(&user).unwrap();
        fs::write(user.join("precious.parquet"), "data").unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let (s, m) = stage(&out, "l1", WriteMode::Replace, &[("2023-03", 1)]);
        let err = out.commit(&s, &m).unwrap_err();
        assert!(matches!(err, CommitError::NotManaged { .. }), "{err}");
        assert!(err.to_string().contains("real directory"), "{err}");
        assert_eq!(
            fs::read_to_string(user.join("precious.parquet")).unwrap(),
            "data"
        );
        drop(out);
        OutputDir::open(tmp.path()).unwrap();
        assert!(user.join("precious.parquet").exists());
    }

    #[test]
    fn a_second_open_fails_while_the_first_is_alive() {
        let tmp = tempfile::tempdir().unwrap();
        let first = OutputDir::open(tmp.path()).unwrap();
        let err = OutputDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, CommitError::Locked { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&tmp.path().display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        OutputDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn paths_and_names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        assert!(out.new_staging_dir("../x", "l1").is_err());
        assert!(out.new_staging_dir(TABLE, "../l1").is_err());
        assert!(out.new_staging_dir("_quarantine", "l1").is_err());
        let (s, mut m) = stage(&out, "l1", WriteMode::Append, &[("2023-03", 1)]);
        m.files[0].path = "../../escape.parquet".into();
        assert!(matches!(
            out.commit(&s, &m),
            Err(CommitError::Inconsistent { .. })
        ));
        assert!(
            out.commit(tmp.path(), &m).is_err(),
            "not a staging directory"
        );
        out.discard(&s).unwrap();
        assert!(!s.exists());
        assert!(out.discard(tmp.path()).is_err());
        assert!(!tmp.path().join(TABLE).exists());
        assert_eq!(
            out.quarantine_path(TABLE, "l1"),
            tmp.path().join("_quarantine").join(TABLE).join("l1.jsonl")
        );
        // Named like the load's manifest, whatever the name...
        assert_eq!(
            out.quarantine_path(TABLE, "nul"),
            tmp.path().join("_quarantine").join(TABLE).join("nul.jsonl")
        );
        // ...and an unchecked one still cannot leave the quarantine directory.
        let hostile = out.quarantine_path("../x", "../../l1");
        assert!(hostile.starts_with(tmp.path().join("_quarantine")));
        assert_eq!(
            hostile.components().count(),
            tmp.path().components().count() + 3
        );
    }

    #[test]
    fn written_files_are_readable_through_the_table_link() {
        use crate::schema::{DataType, Granularity, PartitionField, PartitionSpec};
        use crate::sink::{PartitionedWriter, WriterOptions};
        use arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use std::sync::Arc;

        let tmp = tempfile::tempdir().unwrap();
        let out = OutputDir::open(tmp.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ConsumedUtc",
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("_line", ArrowType::Int64, false),
        ]));
        let spec = PartitionSpec {
            fields: vec![PartitionField {
                column: "ConsumedUtc".into(),
                column_index: 0,
                data_type: DataType::Timestamp,
                granularity: Some(Granularity::Day),
            }],
        };
        let staged = out.new_staging_dir(TABLE, "l1").unwrap();
        let mut writer = PartitionedWriter::new(
            staged.clone(),
            schema.clone(),
            spec,
            WriterOptions::default(),
            "l1".into(),
        )
        .unwrap();
        let day = 86_400_000_000i64;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, day, 2 * day, day])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        let (_, mut manifest) = stage(&out, "unused", WriteMode::Append, &[]);
        manifest.load_id = "l1".into();
        manifest.files = writer.finish().unwrap();
        let outcome = out.commit(&staged, &manifest).unwrap();
        assert_eq!((outcome.files, outcome.rows_in_table), (3, 4));
        let mut rows = 0;
        for f in &manifest.files {
            let file = File::open(outcome.table_dir.join(&f.path)).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
        }
        assert_eq!(rows, 4);
        assert!(visible(tmp.path()).contains("ConsumedUtc_day=1970-01-02/l1-00001-00000.parquet"));
    }

    #[test]
    fn load_ids_are_sanitized() {
        assert_eq!(
            sanitize_load_id("2024-01-01T00:00:00Z_export.1"),
            "2024-01-01T00_00_00Z_export.1"
        );
        assert_eq!(sanitize_load_id("../etc/passwd"), "load.._etc_passwd");
        assert_eq!(sanitize_load_id(".hidden"), "load.hidden");
        assert_eq!(sanitize_load_id(""), "load");
        assert_eq!(sanitize_load_id("ok-id_1.2"), "ok-id_1.2");
        let long_a = sanitize_load_id(&"a".repeat(300));
        let long_b = sanitize_load_id(&("a".repeat(299) + "b"));
        assert_eq!(long_a.len(), MAX_LOAD_ID_LEN);
        assert_ne!(long_a, long_b);
        let distinct: Vec<String> = ["a/b", "a b", "a_b", "", "load", ".x", "_x", "../x"]
            .iter()
            .map(|raw| distinct_load_id(raw))
            .collect();
        for (i, id) in distinct.iter().enumerate() {
            assert!(!distinct[..i].contains(id), "{distinct:?}");
            assert_eq!(&distinct_load_id(id), id, "idempotent");
            check_load_id(id).unwrap();
        }
        assert_eq!(distinct_load_id("a_b"), "a_b");
        // Readers skip files whose names start with `_` or `.`: a load's never do.
        for raw in ["_x", ".x", "#1", "..", "_"] {
            let id = distinct_load_id(raw);
            assert!(id.starts_with("load"), "{raw:?}: {id}");
        }
        assert_eq!(
            distinct_load_id(&"a".repeat(300)),
            sanitize_load_id(&"a".repeat(300))
        );
        assert!(distinct_load_id(&"é".repeat(100)).len() <= MAX_LOAD_ID_LEN);
        for id in [long_a, sanitize_load_id("é/ü")] {
            assert_eq!(sanitize_load_id(&id), id, "idempotent");
            check_load_id(&id).unwrap();
        }
    }
}
