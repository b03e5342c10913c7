//! Crashes, signals, a busy lock and a full or unwritable disk, through the real binary:
//! after each, what `<out>/<table>` shows is the old load or the new one, complete, and the
//! next run repairs the rest and loads every row exactly once.
//!
//! Crashes are made with the test hook `MEWS_ETL_CRASH_AT=<point>` (see `mews_etl::crash`):
//! the process aborts at that step, like a crash, with no cleanup. Disk-full and read-only
//! tests mount a small tmpfs; where mounting is not allowed (not root) they say so and pass.

mod common;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use common::parquet_files;
use mews_etl::commit::CrashPoint;
use mews_etl::crash::{CRASH_AT_VAR, FAIL_AT_VAR, POINTS};
use mews_etl::export::state::RunState;
use mews_etl::generate::{Generator, Variety};
use mews_etl::mock::{Faults, MockConfig, MockServer};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ENTITY: &str = "OrderItem";
const TABLE: &str = "order_item";
/// SIGABRT, which the crash hook ends the process with.
const SIGABRT: i32 = 6;
/// Longest wait for an observable condition before a test gives up.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// `mews-etl` with a clean environment for what it reads.
fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mews-etl"));
    for var in [
        "MEWS_CLIENT_TOKEN",
        "MEWS_ACCESS_TOKEN",
        "MEWS_PLATFORM_URL",
        "RUST_LOG",
        CRASH_AT_VAR,
        FAIL_AT_VAR,
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `mews-etl convert -e OrderItem --partition-by ConsumedUtc:year --compression snappy
/// --out <out> --export-id <id> <file>`.
fn convert(out: &Path, export_id: &str, file: &Path) -> Command {
    convert_with(out, export_id, file, "snappy")
}

/// [`convert`] with another Parquet compression.
fn convert_with(out: &Path, export_id: &str, file: &Path, compression: &str) -> Command {
    // By year: a few files per load (so "mid-move" is mid-way), not one per month, each
    // synced at commit, which is most of a small convert's time.
    convert_into(out, export_id, file, compression, "ConsumedUtc:year")
}

/// [`convert_with`] with another partitioning.
fn convert_into(
    out: &Path,
    export_id: &str,
    file: &Path,
    compression: &str,
    partition_by: &str,
) -> Command {
    let mut cmd = bare_command();
    cmd.args(["convert", "-e", ENTITY, "--partition-by", partition_by])
        .args(["--compression", compression, "--out"])
        .arg(out)
        .args(["--export-id", export_id])
        .arg(file);
    // Where a core file of an aborted process would land, if the system writes one.
    if let Some(parent) = out.parent() {
        cmd.current_dir(parent);
    }
    cmd
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_status(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", describe(o));
}

/// The process was stopped by the crash hook at `point`, not by anything else.
fn assert_crashed_at(o: &Output, point: &str) {
    assert_eq!(o.status.signal(), Some(SIGABRT), "{point}: {}", describe(o));
    assert!(
        stderr(o).contains(&format!("{CRASH_AT_VAR}={point}: aborting")),
        "{point}: {}",
        describe(o)
    );
}

/// Writes `rows` OrderItem lines starting at row `first`; returns the file and their Ids.
fn input(dir: &Path, name: &str, first: u64, rows: u64) -> (PathBuf, Vec<String>) {
    let schema = mews_etl::schema::find(ENTITY).unwrap();
    let mut bytes = Vec::new();
    Generator::new(schema, 3, Variety::Realistic)
        .write_lines(first, rows, &mut bytes)
        .unwrap();
    let ids = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["Id"].as_str().unwrap().to_owned()
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    (path, ids)
}

/// The `Id` of every row visible through `<out>/<table>`, sorted; empty if no table.
fn visible_ids(out: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let table = out.join(TABLE);
    if std::fs::symlink_metadata(&table).is_err() {
        return ids;
    }
    for f in parquet_files(&table) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col =
                arrow::compute::cast(batch.column_by_name("Id").unwrap(), &DataType::Utf8).unwrap();
            ids.extend(col.as_string::<i32>().iter().map(|v| v.unwrap().to_owned()));
        }
    }
    ids.sort();
    ids
}

/// The table holds exactly `expected` (a set of distinct Ids): nothing missing, nothing
/// doubled, nothing foreign.
fn assert_table(out: &Path, expected: &[String], what: &str) {
    let mut expected = expected.to_vec();
    expected.sort();
    let unique: std::collections::BTreeSet<&String> = expected.iter().collect();
    assert_eq!(
        unique.len(),
        expected.len(),
        "{what}: the input repeats Ids"
    );
    let got = visible_ids(out);
    if got != expected {
        let mut counts: BTreeMap<&String, i64> = BTreeMap::new();
        for id in &got {
            *counts.entry(id).or_default() += 1;
        }
        for id in &expected {
            *counts.entry(id).or_default() -= 1;
        }
        let extra = counts.values().filter(|&&n| n > 0).count();
        let missing = counts.values().filter(|&&n| n < 0).count();
        panic!(
            "{what}: {} rows visible, {} expected: {extra} Ids extra or doubled, {missing} missing",
            got.len(),
            expected.len()
        );
    }
}

/// Entries of a directory (empty if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(e) => e
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// No staging directory, no half-built version, no prepared symlink is left.
fn assert_no_debris(out: &Path, what: &str) {
    let state = out.join(".mews-etl");
    let staging = state.join("staging");
    let staged: Vec<String> = entries(&staging)
        .into_iter()
        .flat_map(|t| entries(&staging.join(t)))
        .collect();
    assert!(staged.is_empty(), "{what}: staging left: {staged:?}");
    let building: Vec<String> = entries(&state.join("tables").join(TABLE))
        .into_iter()
        .filter(|v| v.starts_with('.'))
        .collect();
    assert!(
        building.is_empty(),
        "{what}: unfinished versions: {building:?}"
    );
    let links: Vec<String> = entries(out)
        .into_iter()
        .filter(|e| e.starts_with(&format!(".{TABLE}.tmp-")))
        .collect();
    assert!(links.is_empty(), "{what}: prepared symlinks: {links:?}");
}

/// Polls `condition` every 10 ms until it holds; fails after [`WAIT_LIMIT`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none.
struct Running(Option<Child>);

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        Running(Some(cmd.spawn().unwrap()))
    }

    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn has_exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| c.try_wait().unwrap().is_some())
    }

    /// Sends `signal` (a name for kill(1): INT, TERM, KILL) without waiting.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the end (on a blocking thread, so an async mock keeps serving).
    async fn output(mut self) -> Output {
        let child = self.0.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Crash points of `convert`

/// `convert` aborted at each commit step: right after the crash the table shows the first
/// load alone (before the switch) or both loads (after it), never a mix, and the second
/// load's rejected line with it or not at all; the rerun without the hook repairs the
/// debris and leaves both loads, each row once.
#[test]
fn convert_recovers_from_a_crash_at_every_commit_step() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_ids) = input(dir.path(), "first.jsonl", 0, 400);
    // Rows over several years: several files, so "mid-move" is mid-way.
    let (second, second_ids) = input(dir.path(), "second.jsonl", 400, 1200);
    let mut rejected = std::fs::OpenOptions::new()
        .append(true)
        .open(&second)
        .unwrap();
    std::io::Write::write_all(&mut rejected, b"not json\n").unwrap();
    let rejections = |out: &Path| common::in_loads(out, TABLE, "second.rejected.jsonl");
    let both: Vec<String> = first_ids.iter().chain(&second_ids).cloned().collect();
    for point in CrashPoint::ALL {
        let name = point.name();
        let out = dir.path().join(format!("out-{name}"));
        assert_status(&convert(&out, "first", &first).output().unwrap(), 0);
        assert_table(&out, &first_ids, name);

        let mut cmd = convert(&out, "second", &second);
        cmd.env(CRASH_AT_VAR, name);
        let o = cmd.output().unwrap();
        assert_crashed_at(&o, name);
        let after_crash = if point.is_after_commit_point() {
            &both
        } else {
            &first_ids
        };
        assert_table(&out, after_crash, &format!("{name}: right after the crash"));
        assert_eq!(
            rejections(&out).exists(),
            point.is_after_commit_point(),
            "{name}: the rejected line and the rows part ways"
        );

        let o = convert(&out, "second", &second).output().unwrap();
        assert_status(&o, 0);
        assert_table(&out, &both, &format!("{name}: after the rerun"));
        assert!(rejections(&out).exists(), "{name}: after the rerun");
        assert_no_debris(&out, name);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(common::in_loads(&out, TABLE, "second.json")).unwrap(),
        )
        .unwrap();
        let files = manifest["files"].as_array().unwrap().len();
        assert!(files >= 2, "one file: a crash mid-move is not mid-way");
    }
}

/// The hook names exactly the commit steps of [`CrashPoint`] and the two state-file steps,
/// so a renamed step cannot silently stop being tested.
#[test]
fn the_hook_knows_every_commit_step() {
    let commit: Vec<&str> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(&POINTS[..commit.len()], &commit[..]);
    assert_eq!(
        &POINTS[commit.len()..],
        &["before-state-update", "after-state-update"]
    );
}

// ---------------------------------------------------------------------------------------
// `run` against the mock: crash points, the state file, signals, the lock

/// A mock and a temporary output directory.
struct Harness {
    mock: MockServer,
    config: MockConfig,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start(faults: Faults) -> Self {
        let config = MockConfig {
            rows: 300,
            files_per_export: 3,
            faults,
            ..MockConfig::demo()
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mock = MockServer::start(config.clone(), addr).await.unwrap();
        Harness {
            mock,
            config,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// `mews-etl run -e OrderItem --out <out>` against the mock.
    fn run(&self) -> Command {
        self.run_into(&self.out())
    }

    /// [`Harness::run`] of the updates of January 2024: a window, so its load appends.
    fn run_window(&self) -> Command {
        self.run_updated("2024-01-01", "2024-02-01")
    }

    /// [`Harness::run`] of the updates from `start` to `end`.
    fn run_updated(&self, start: &str, end: &str) -> Command {
        let mut cmd = self.run();
        cmd.args(["--updated-start", start, "--updated-end", end]);
        cmd
    }

    /// [`Harness::run`] into another output directory.
    fn run_into(&self, out: &Path) -> Command {
        let mut cmd = bare_command();
        cmd.args(["-q", "run", "-e", ENTITY, "--compression", "snappy"])
            .args(["--poll-interval", "50ms", "--platform-url"])
            .arg(self.mock.base_url())
            .arg("--out")
            .arg(out)
            .env("MEWS_CLIENT_TOKEN", &self.config.client_token)
            .env("MEWS_ACCESS_TOKEN", &self.config.access_token)
            .current_dir(self.dir.path());
        cmd
    }

    fn state(&self) -> RunState {
        RunState::load(&self.out().join(".mews-etl").join("state.json")).unwrap()
    }

    /// The job the state file records (the run has one).
    fn job(&self) -> mews_etl::export::state::JobState {
        let state = self.state();
        assert_eq!(state.jobs.len(), 1, "{state:?}");
        state.jobs.into_values().next().unwrap()
    }

    /// The table holds exactly the rows of `export_id`.
    fn assert_loaded(&self, export_id: &str, what: &str) {
        let expected = self.mock.expected_ids(export_id).unwrap();
        assert!(!expected.is_empty());
        assert_table(&self.out(), &expected, what);
    }
}

/// `run` aborted at each step, commit and state file alike: the table shows nothing or the
/// export complete; the state keeps the export id (committed only after the state update);
/// the rerun resumes that export — no second `exports/add` — and the table holds its rows
/// once. After "after-state-update" the job was complete, so the rerun is a fresh run: it
/// adds a new export and the table holds exactly that one's rows (the window is replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_recovers_from_a_crash_at_every_step() {
    for &point in POINTS {
        let h = Harness::start(Faults::default()).await;
        let mut cmd = h.run();
        cmd.env(CRASH_AT_VAR, point);
        let o = output(cmd).await;
        assert_crashed_at(&o, point);
        let job = h.job();
        let committed = !matches!(
            point,
            "after-staging" | "mid-move" | "before-manifest" | "after-manifest" | "before-switch"
        );
        if committed {
            h.assert_loaded(&job.export_id, &format!("{point}: right after the crash"));
        } else {
            assert!(
                std::fs::symlink_metadata(h.out().join(TABLE)).is_err(),
                "{point}: a table is visible before its switch"
            );
        }
        assert_eq!(job.committed, point == "after-state-update", "{point}");
        assert_eq!(h.mock.stats().exports_added, 1, "{point}");

        let o = output(h.run()).await;
        assert_status(&o, 0);
        let rerun = h.job();
        assert!(rerun.committed, "{point}: {rerun:?}");
        let (added, same) = if point == "after-state-update" {
            (2, false)
        } else {
            (1, true)
        };
        assert_eq!(h.mock.stats().exports_added, added, "{point}");
        assert_eq!(rerun.export_id == job.export_id, same, "{point}");
        h.assert_loaded(&rerun.export_id, &format!("{point}: after the rerun"));
        assert_no_debris(&h.out(), point);
        h.mock.shutdown().await;
    }
}

/// A load committed but not recorded (the state file refused the update, made to fail by
/// the test hook): the run reports it committed, with a warning, and exits 0; the rerun
/// finds it by its manifest and records it, without a second export or a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_state_file_cannot_record_is_found_by_the_rerun() {
    let h = Harness::start(Faults::default()).await;
    let mut cmd = h.run();
    cmd.env(FAIL_AT_VAR, "state-update");
    let o = output(cmd).await;
    assert_status(&o, 0);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("committed") && !summary.contains("FAILED"),
        "{}",
        describe(&o)
    );
    let job = h.job();
    assert!(!job.committed, "{job:?}");
    h.assert_loaded(&job.export_id, "right after the run");
    // Its rows are in the table: a run of another window does not call it unloaded.
    let other = output(h.run_window()).await;
    assert_status(&other, 0);
    assert!(
        !stderr(&other).contains("never loaded"),
        "{}",
        describe(&other)
    );

    let mut cmd = h.run();
    cmd.args(["--summary-format", "json"]);
    let o = output(cmd).await;
    assert_status(&o, 0);
    let row: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(row["outcome"], "already_loaded", "{row}");
    // The version that shows it: the other window's load made the second.
    assert_eq!(row["version"], 2, "{row}");
    let rerun = h.state().jobs.remove("OrderItem").unwrap();
    assert!(rerun.committed, "{rerun:?}");
    assert_eq!(rerun.version, Some(2));
    assert_eq!(rerun.export_id, job.export_id);
    assert_eq!(h.mock.stats().exports_added, 2);
    // The table holds both exports' rows, each once.
    let window = h
        .state()
        .jobs
        .into_iter()
        .find(|(key, _)| key != "OrderItem")
        .unwrap()
        .1;
    let mut expected = h.mock.expected_ids(&job.export_id).unwrap();
    expected.extend(h.mock.expected_ids(&window.export_id).unwrap());
    assert_table(&h.out(), &expected, "after the rerun");
    assert_no_debris(&h.out(), "after the rerun");
    h.mock.shutdown().await;
}

/// An export left unloaded by a run that stopped (here a crash), followed by a run of
/// another window (a daily schedule): that run says which window's rows are missing, even
/// with `-q`, until that window is run again, which resumes the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloaded_export_of_another_window_is_named_until_it_is_loaded() {
    let h = Harness::start(Faults::default()).await;
    let window = |start: &str, end: &str| h.run_updated(start, end);
    let mut first = window("2024-01-01", "2024-01-02");
    first.env(CRASH_AT_VAR, "before-switch");
    assert_crashed_at(&output(first).await, "before-switch");
    let unloaded = h.job().export_id;

    let o = output(window("2024-01-02", "2024-01-03")).await;
    assert_status(&o, 0);
    let named = |o: &Output| {
        stderr(o).contains(&format!(
            "updated=2024-01-01T00:00:00Z..2024-01-02T00:00:00Z: export {unloaded}"
        ))
    };
    assert!(named(&o), "{}", describe(&o));
    assert!(stderr(&o).contains("never loaded"), "{}", describe(&o));

    assert_status(&output(window("2024-01-01", "2024-01-02")).await, 0);
    assert_eq!(
        h.mock.stats().exports_added,
        2,
        "the first window's export is resumed"
    );
    let o = output(window("2024-01-02", "2024-01-03")).await;
    assert_status(&o, 0);
    assert!(!named(&o), "{}", describe(&o));
    h.mock.shutdown().await;
}

/// A window whose export ended `Failed` (nothing to resume), followed by a run of another
/// window: that run names the window, even with `-q`, until a run of it loads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_export_failed_is_named_until_it_is_loaded() {
    let h = Harness::start(Faults {
        fail_entity_once: Some(ENTITY.into()),
        ..Faults::default()
    })
    .await;
    let window = |start: &str, end: &str| h.run_updated(start, end);
    let o = output(window("2024-01-01", "2024-01-02")).await;
    assert_status(&o, 7);
    assert!(h.state().jobs.is_empty(), "{:?}", h.state());

    let named = |o: &Output| {
        let text = stderr(o);
        text.contains("updated=2024-01-01T00:00:00Z..2024-01-02T00:00:00Z: a run asked for it at")
            && text.contains("did not load it")
    };
    // A dry run names it too, and changes nothing.
    let before = std::fs::read(h.out().join(".mews-etl").join("state.json")).unwrap();
    let mut dry = window("2024-01-02", "2024-01-03");
    dry.arg("--dry-run");
    let o = output(dry).await;
    assert_status(&o, 0);
    assert!(named(&o), "{}", describe(&o));
    let after = std::fs::read(h.out().join(".mews-etl").join("state.json")).unwrap();
    assert_eq!(before, after);
    for _ in 0..2 {
        let o = output(window("2024-01-02", "2024-01-03")).await;
        assert_status(&o, 0);
        assert!(named(&o), "{}", describe(&o));
    }

    assert_status(&output(window("2024-01-01", "2024-01-02")).await, 0);
    let o = output(window("2024-01-02", "2024-01-03")).await;
    assert_status(&o, 0);
    assert!(!named(&o), "{}", describe(&o));
    assert!(h.state().not_loaded.is_empty(), "{:?}", h.state());
    h.mock.shutdown().await;
}

/// A window loaded once whose later run failed (here, tokens refused) is named as held
/// from the earlier load, not as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_window_whose_refresh_failed_is_named_as_held() {
    let h = Harness::start(Faults::default()).await;
    let window = |start: &str, end: &str| h.run_updated(start, end);
    assert_status(&output(window("2024-01-01", "2024-01-02")).await, 0);
    let loaded = h.job().export_id;
    let mut refused = window("2024-01-01", "2024-01-02");
    refused.env("MEWS_ACCESS_TOKEN", "not-the-token");
    assert_status(&output(refused).await, 2);
    let o = output(window("2024-01-02", "2024-01-03")).await;
    assert_status(&o, 0);
    let text = stderr(&o);
    assert!(
        text.contains(&format!("holds it as export {loaded} loaded it earlier"))
            && !text.contains("missing from table"),
        "{}",
        describe(&o)
    );
    // So is one whose later run added an export and stopped before loading it.
    let mut crashed = window("2024-01-01", "2024-01-02");
    crashed.env(CRASH_AT_VAR, "before-switch");
    assert_crashed_at(&output(crashed).await, "before-switch");
    let o = output(window("2024-01-02", "2024-01-03")).await;
    let text = stderr(&o);
    assert!(
        text.contains("was never loaded")
            && text.contains(&format!("holds it as export {loaded} loaded it earlier"))
            && !text.contains("missing from table"),
        "{}",
        describe(&o)
    );
    h.mock.shutdown().await;
}

/// A ledger posting month's load takes the place of the update windows of that month
/// that an earlier release loaded (keyed by window and month), which hold its entries again,
/// and their records go from the state file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_month_replaces_the_update_windows_an_earlier_release_loaded() {
    let h = Harness::start(Faults::default()).await;
    // What an earlier release left: two loads of update windows of October, named by their
    // keys, one of them still recorded in the state file.
    let legacy = "LedgerEntry updated=2024-11-01T00:00:00Z..2024-11-10T00:00:00Z posting=2024-10";
    let unrecorded =
        "LedgerEntry updated=2024-11-10T00:00:00Z..2024-11-20T00:00:00Z posting=2024-10";
    let other = "LedgerEntry updated=2024-11-01T00:00:00Z..2024-11-10T00:00:00Z posting=2024-09";
    let file = h.dir.path().join("october.jsonl");
    let rows: String = (1..=5)
        .map(|day| {
            format!(
                r#"{{"Id":"old-{day}","PostingDate":"2024-10-0{day}","Value":1,"CreatedUtc":"2024-10-01T10:00:00Z"}}"#
            ) + "\n"
        })
        .collect();
    std::fs::write(&file, rows).unwrap();
    let old_ids: Vec<String> = [legacy, unrecorded]
        .iter()
        .map(|k| mews_etl::export::load_id_of_key(k))
        .collect();
    for (i, id) in old_ids.iter().enumerate() {
        // A copy per load: one file is not loaded twice; two windows' exports are two files.
        let copy = h.dir.path().join(format!("october-{i}.jsonl"));
        std::fs::copy(&file, &copy).unwrap();
        let mut cmd = bare_command();
        cmd.args(["-q", "convert", "-e", "LedgerEntry", "--out"])
            .arg(h.out())
            .args(["--export-id", id])
            .arg(&copy);
        assert_status(&cmd.output().unwrap(), 0);
    }
    let state_path = h.out().join(".mews-etl").join("state.json");
    let mut state = RunState::load(&state_path).unwrap();
    for key in [legacy, other] {
        state.jobs.insert(
            key.into(),
            mews_etl::export::state::JobState {
                entity: "LedgerEntry".into(),
                // Not the export the table shows: a later run of the window added another.
                export_id: "a-later-export".into(),
                created_utc: "2024-11-10T00:05:00Z".into(),
                committed: false,
                version: None,
            },
        );
    }
    state.save(&state_path).unwrap();

    let mut cmd = h.run();
    cmd.args(["-e", "LedgerEntry", "--posting-start", "2024-10-01"])
        .args(["--posting-end", "2024-10-31"]);
    let o = output(cmd).await;
    assert_status(&o, 0);
    // Taken care of by this run: not named after it.
    assert!(!stderr(&o).contains("posting=2024-10:"), "{}", describe(&o));
    let loads = mews_etl::commit::OutputDir::open(&h.out())
        .unwrap()
        .current_loads("ledger_entry")
        .unwrap();
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert!(loads[0].load_id.starts_with("LedgerEntry_posting_2024-10-"));
    let mut replaced = loads[0].replaces.clone();
    replaced.sort();
    let mut expected = old_ids.clone();
    expected.sort();
    assert_eq!(replaced, expected);
    let state = h.state();
    assert!(!state.jobs.contains_key(legacy), "{state:?}");
    // September is not the month loaded: its record stays, and is named.
    assert!(state.jobs.contains_key(other), "{state:?}");
    assert!(
        stderr(&o).contains("until a run of posting month 2024-09 loads the month"),
        "{}",
        describe(&o)
    );
    h.mock.shutdown().await;
}

/// Windows that fail every day (an entity type the API refuses to export) are named ten at
/// a time, and the rest counted, so that the notice does not grow a line a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_unloaded_windows_are_counted_past_ten() {
    let h = Harness::start(Faults {
        fail_entity: Some("LedgerEntry".into()),
        ..Faults::default()
    })
    .await;
    let months = |start: &str, end: &str| {
        let mut cmd = h.run();
        cmd.args([
            "-e",
            "LedgerEntry",
            "--posting-start",
            start,
            "--posting-end",
            end,
        ]);
        cmd
    };
    assert_status(&output(months("2023-01-01", "2023-12-31")).await, 7);
    let o = output(months("2024-01-01", "2024-01-31")).await;
    let text = stderr(&o);
    assert_eq!(
        text.matches("a run asked for it at").count(),
        10,
        "{}",
        describe(&o)
    );
    assert!(
        text.contains("2 more windows of earlier runs are not loaded"),
        "{}",
        describe(&o)
    );
    h.mock.shutdown().await;
}

/// Starts `run` against a mock that trickles its files, and waits until it is downloading
/// (its export is in the state file and the mock has served bytes).
async fn downloading(h: &Harness) -> Running {
    let child = Running::spawn(h.run());
    let state_path = h.out().join(".mews-etl").join("state.json");
    let mock = &h.mock;
    tokio::task::block_in_place(|| {
        wait_until("an export in the state file and bytes served", || {
            let named = RunState::load(&state_path).is_ok_and(|s| !s.jobs.is_empty());
            named && mock.stats().bytes_served > 0
        })
    });
    child
}

/// Files served 1 KiB every 10 ms: a run downloads for about two seconds, long enough to
/// be caught in the middle.
fn trickle() -> Faults {
    Faults {
        trickle: Some((1024, Duration::from_millis(10))),
        ..Faults::default()
    }
}

/// SIGINT or SIGTERM in the middle of the downloads: the documented status, a message,
/// nothing visible, no staging left, the export id kept; the rerun resumes the same export
/// and loads it once.
async fn stopped_by(signal: &str, status: i32) {
    let h = Harness::start(trickle()).await;
    let mut child = downloading(&h).await;
    assert!(!child.has_exited(), "the run ended before the signal");
    child.signal(signal);
    let o = child.output().await;
    assert_status(&o, status);
    assert!(
        stderr(&o).contains(&format!("interrupted by SIG{signal}")),
        "{}",
        describe(&o)
    );
    assert!(
        std::fs::symlink_metadata(h.out().join(TABLE)).is_err(),
        "a table is visible after the interrupted run"
    );
    assert_no_debris(&h.out(), signal);
    let job = h.job();
    assert!(!job.committed);
    assert_eq!(h.mock.stats().exports_added, 1);

    let o = output(h.run()).await;
    assert_status(&o, 0);
    assert_eq!(h.mock.stats().exports_added, 1, "the rerun added an export");
    assert_eq!(h.job().export_id, job.export_id);
    h.assert_loaded(&job.export_id, "after the rerun");
    h.mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_run_which_the_next_resumes() {
    stopped_by("INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_which_the_next_resumes() {
    stopped_by("TERM", 143).await;
}

/// A stop while `run` waits for `--updated-end` to pass: the documented status and a message
/// that nothing was exported or recorded, with the signal heard even when the job started
/// with SIGINT ignored.
#[test]
fn a_stop_while_waiting_for_the_window_end_is_reported() {
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("stderr.log");
    let start = mews_etl::manifest::rfc3339_utc(SystemTime::now() - Duration::from_secs(3600));
    let end = mews_etl::manifest::rfc3339_utc(SystemTime::now() + Duration::from_secs(120));
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let mut cmd = Command::new("sh");
        // `trap '' INT` then exec: the job starts with SIGINT ignored, as `cmd &` in a script.
        cmd.arg("-c")
            .arg("trap '' INT; exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_mews-etl"))
            .args(["run", "--demo", "-e", ENTITY, "--updated-start", &start])
            .args(["--updated-end", &end, "--out"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = Running::spawn(cmd);
        wait_until("the wait for --updated-end", || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting"))
        });
        child.signal(signal);
        let o = child.0.take().unwrap().wait_with_output().unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(o.status.code(), Some(status), "{signal}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "interrupted by SIG{signal} while waiting for --updated-end to pass: nothing was exported or recorded"
            )),
            "{stderr}"
        );
        assert!(
            !out.join(".mews-etl").join("state.json").exists(),
            "{stderr}"
        );
    }
}

/// SIGTERM while `convert` reads stdin (kept open, so the load cannot finish): 143,
/// nothing visible, staging removed, the earlier load intact.
#[test]
fn sigterm_stops_a_convert() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (first, first_ids) = input(dir.path(), "first.jsonl", 0, 200);
    assert_status(&convert(&out, "first", &first).output().unwrap(), 0);
    let (more, _) = input(dir.path(), "more.jsonl", 200, 200);
    let mut cmd = bare_command();
    // With JSON logs, so that the lines the signal makes are checked to be records too.
    cmd.args(["--log-format", "json"])
        .args(["convert", "-e", ENTITY, "--export-id", "stdin"])
        .args(["--partition-by", "ConsumedUtc:year", "--out"])
        .arg(&out)
        .arg("-")
        .stdin(Stdio::piped());
    let mut child = Running::spawn(cmd);
    let mut stdin = child.0.as_mut().unwrap().stdin.take().unwrap();
    stdin.write_all(&std::fs::read(more).unwrap()).unwrap();
    let staging = out.join(".mews-etl").join("staging").join(TABLE);
    wait_until("the load's staging directory", || {
        !entries(&staging).is_empty()
    });
    child.signal("TERM");
    let o = child.0.take().unwrap().wait_with_output().unwrap();
    drop(stdin);
    assert_status(&o, 143);
    assert!(
        stderr(&o).contains("interrupted by SIGTERM"),
        "{}",
        describe(&o)
    );
    assert!(stderr(&o).contains("SIGTERM: stopping"), "{}", describe(&o));
    for line in stderr(&o).lines() {
        let record: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(
            record.is_ok(),
            "not a JSON record: {line}\n{}",
            describe(&o)
        );
    }
    assert_table(&out, &first_ids, "after SIGTERM");
    assert_no_debris(&out, "after SIGTERM");
}

/// A second process on the same output directory fails at once with status 6, naming the
/// lock file and the holder's pid; once the holder is killed (SIGKILL: its lock file stays,
/// its flock goes with it) the next run proceeds and resumes the same export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_refused_and_a_killed_holder_does_not_block() {
    let h = Harness::start(trickle()).await;
    let mut holder = downloading(&h).await;
    let (file, _) = input(h.dir.path(), "other.jsonl", 0, 10);
    let o = output(convert(&h.out(), "other", &file)).await;
    assert_status(&o, 6);
    let err = stderr(&o);
    let lock = h.out().join(".mews-etl").join("lock");
    assert!(err.contains(&lock.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", holder.id())), "{err}");
    let o = output(h.run()).await;
    assert_status(&o, 6);

    assert!(!holder.has_exited(), "the holder ended early");
    let pid = holder.id();
    holder.signal("KILL");
    let _ = holder.output().await;
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        pid.to_string(),
        "the stale lock file names the killed process"
    );
    let job = h.job();
    let o = output(h.run()).await;
    assert_status(&o, 0);
    assert_eq!(h.mock.stats().exports_added, 1);
    h.assert_loaded(&job.export_id, "after the holder was killed");
    h.mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// A full disk and unwritable output directories

/// A tmpfs mounted for one test, unmounted (lazily, so even a busy one goes) when dropped,
/// so a failing test leaves no mount behind.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs with `options` on `dir`; `None`, with a message, where that is not
    /// allowed (not root, no mount(8)).
    fn mount(dir: &Path, options: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let result = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output();
        match result {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_owned())),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({}); run the tests as root to check a full or read-only disk",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount(8) ({e}); run the tests as root to check a full or read-only disk");
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {options}: {}", describe(&o));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A load larger than the free space fails with status 4 and a message naming a path and
/// the cause; the table keeps the earlier load, nothing half-written is left; with space
/// freed (the tmpfs grown) the same command commits the load once.
#[test]
fn a_full_disk_fails_cleanly_and_the_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = Tmpfs::mount(&dir.path().join("mnt"), "size=2m") else {
        return;
    };
    let out = mnt.0.join("out");
    let (first, first_ids) = input(dir.path(), "first.jsonl", 0, 100);
    // Uncompressed, these rows take several times the 2 MiB of the file system.
    let (second, second_ids) = input(dir.path(), "second.jsonl", 100, 6000);
    let o = convert_with(&out, "first", &first, "none")
        .output()
        .unwrap();
    assert_status(&o, 0);

    let big = || convert_with(&out, "second", &second, "none");
    let o = big().output().unwrap();
    assert_status(&o, 4);
    let err = stderr(&o);
    assert!(err.contains("No space left on device"), "{}", describe(&o));
    assert!(err.contains(&out.display().to_string()), "no path: {err}");
    assert_table(&out, &first_ids, "after the failure");
    assert_no_debris(&out, "after the failure");

    mnt.remount("size=64m");
    let o = big().output().unwrap();
    assert_status(&o, 0);
    let both: Vec<String> = first_ids.iter().chain(&second_ids).cloned().collect();
    assert_table(&out, &both, "after the rerun");
    assert_no_debris(&out, "after the rerun");
}

/// A load much larger than the free space, still being read when the writer runs out of
/// room: every stage stops and the load fails with status 4 and the cause, in both layouts,
/// instead of the reader waiting forever for room in a queue no one empties any more.
#[test]
fn a_full_disk_stops_a_large_load_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = Tmpfs::mount(&dir.path().join("mnt"), "size=2m") else {
        return;
    };
    // ≈ 60 MB of lines: more than the queues between the stages hold.
    let (file, _) = input(dir.path(), "large.jsonl", 0, 30_000);
    for partition in ["none", "ConsumedUtc:month"] {
        let out = mnt.0.join(partition.replace(':', "-"));
        let mut child = convert_into(&out, "large", &file, "zstd", partition)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(120) {
                child.kill().unwrap();
                let o = child.wait_with_output().unwrap();
                panic!(
                    "{partition}: still running after two minutes: {}",
                    describe(&o)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        assert_status(&o, 4);
        assert!(
            stderr(&o).contains("No space left on device"),
            "{partition}: {}",
            describe(&o)
        );
    }
}

/// An output directory on a read-only file system: status 4 naming the path and the cause,
/// the table as it was; writable again, the load commits.
#[test]
fn a_read_only_output_fails_cleanly_and_the_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = Tmpfs::mount(&dir.path().join("mnt"), "size=16m") else {
        return;
    };
    let out = mnt.0.join("out");
    let (first, first_ids) = input(dir.path(), "first.jsonl", 0, 100);
    let (second, second_ids) = input(dir.path(), "second.jsonl", 100, 100);
    assert_status(&convert(&out, "first", &first).output().unwrap(), 0);

    mnt.remount("ro");
    let o = convert(&out, "second", &second).output().unwrap();
    assert_status(&o, 4);
    let err = stderr(&o);
    assert!(err.contains("Read-only file system"), "{}", describe(&o));
    assert!(err.contains(&out.display().to_string()), "no path: {err}");
    assert_table(&out, &first_ids, "read-only");
    // A fresh output directory there cannot even be created.
    let fresh = mnt.0.join("fresh");
    let o = convert(&fresh, "second", &second).output().unwrap();
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains(&fresh.display().to_string()),
        "{}",
        describe(&o)
    );
    assert!(!fresh.exists());

    mnt.remount("rw");
    assert_status(&convert(&out, "second", &second).output().unwrap(), 0);
    let both: Vec<String> = first_ids.iter().chain(&second_ids).cloned().collect();
    assert_table(&out, &both, "after the rerun");
    assert_no_debris(&out, "after the rerun");
}

/// A commit that fails before its switch (it cannot build the next version, with the load's
/// Parquet files all still in staging) leaves the table as it was and nothing of the load
/// behind: no staged Parquet holding space until the next run, no unfinished version.
#[test]
fn a_failed_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (first, first_ids) = input(dir.path(), "first.jsonl", 0, 100);
    let (second, second_ids) = input(dir.path(), "second.jsonl", 100, 100);
    assert_status(&convert(&out, "first", &first).output().unwrap(), 0);
    let mut failing = convert(&out, "second", &second);
    failing.env(FAIL_AT_VAR, "version");
    let o = failing.output().unwrap();
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains("refused on purpose"),
        "{}",
        describe(&o)
    );
    assert_table(&out, &first_ids, "after the failed commit");
    assert_no_debris(&out, "after the failed commit");
    assert_status(&convert(&out, "second", &second).output().unwrap(), 0);
    let both: Vec<String> = first_ids.iter().chain(&second_ids).cloned().collect();
    assert_table(&out, &both, "after the rerun");
}

/// `--out` below a regular file: status 4 naming the path and the cause; nothing created.
#[test]
fn an_output_below_a_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = input(dir.path(), "first.jsonl", 0, 10);
    let out = file.join("out");
    let before = entries(dir.path());
    let mut cmd = convert(&out, "first", &file);
    cmd.current_dir(dir.path());
    let o = cmd.output().unwrap();
    assert_status(&o, 4);
    let err = stderr(&o);
    assert_eq!(
        err.matches("Not a directory").count(),
        1,
        "{}",
        describe(&o)
    );
    assert!(err.contains(&file.display().to_string()), "no path: {err}");
    assert_eq!(entries(dir.path()), before, "something was created");
}

/// `run` into a file system too small for its Parquet files: the entity fails with status
/// 4 (the output, a person's matter, not 7, a failure a rerun may mend) naming the cause,
/// nothing is visible, the state file keeps the export; with space freed the rerun resumes
/// that export (no second `exports/add`) and loads it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_full_disk_is_resumed_once_space_is_freed() {
    let h = Harness::start(Faults::default()).await;
    // Room for the state file, not for a table: one page per file, and a load writes dozens.
    let Some(mnt) = Tmpfs::mount(&h.out(), "size=64k") else {
        return;
    };
    let o = output(h.run()).await;
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        describe(&o)
    );
    assert!(
        std::fs::symlink_metadata(h.out().join(TABLE)).is_err(),
        "a table is visible after the failure"
    );
    assert_no_debris(&h.out(), "after the failure");
    let job = h.job();
    assert!(!job.committed);

    mnt.remount("size=64m");
    let o = output(h.run()).await;
    assert_status(&o, 0);
    assert_eq!(h.mock.stats().exports_added, 1, "the rerun added an export");
    assert_eq!(h.job().export_id, job.export_id);
    h.assert_loaded(&job.export_id, "after the rerun");
    drop(mnt);
    h.mock.shutdown().await;
}

/// A second signal exits at once. `convert -` with stdin held open cannot finish its
/// graceful stop quickly (the stdin reader waits for EOF, and the stop waits up to three
/// seconds for it), so a second signal sent as soon as the first is acknowledged lands
/// inside that wait; the process ends with the second signal's status, saying so. On a
/// machine so loaded that the second signal comes after the wait, the process ends by the
/// first one; such an attempt shows nothing either way and is made again (three at most).
#[test]
fn a_second_signal_exits_at_once() {
    for attempt in 1..=3 {
        match second_signal_attempt() {
            Some(()) => return,
            None => eprintln!("attempt {attempt}: the second signal came after the wait"),
        }
    }
    panic!("the second signal never landed inside the graceful stop's wait");
}

/// One attempt of [`a_second_signal_exits_at_once`]; `None` if the process ended by the
/// first signal before the second was sent.
fn second_signal_attempt() -> Option<()> {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (more, _) = input(dir.path(), "more.jsonl", 0, 50);
    let mut cmd = bare_command();
    cmd.args(["convert", "-e", ENTITY, "--export-id", "stdin", "--out"])
        .arg(&out)
        .arg("-")
        .stdin(Stdio::piped());
    let mut child = Running::spawn(cmd);
    let c = child.0.as_mut().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(more).unwrap()).unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr_pipe = c.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let staging = out.join(".mews-etl").join("staging").join(TABLE);
    wait_until("the load's staging directory", || {
        !entries(&staging).is_empty()
    });
    child.signal("INT");
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(WAIT_LIMIT)
            .unwrap_or_else(|e| panic!("no acknowledgement of SIGINT ({e}): {seen:?}"));
        let acknowledged = line.starts_with("SIGINT: stopping");
        seen.push(line);
        if acknowledged {
            break;
        }
    }
    child.signal("TERM");
    let status = child.0.take().unwrap().wait().unwrap();
    drop(stdin);
    seen.extend(lines.iter());
    assert!(
        std::fs::symlink_metadata(out.join(TABLE)).is_err(),
        "a table is visible"
    );
    if status.code() == Some(130) && !seen.iter().any(|l| l.starts_with("SIGTERM")) {
        return None;
    }
    assert_eq!(status.code(), Some(143), "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("SIGTERM: exiting at once")),
        "{seen:?}"
    );
    Some(())
}

/// A state file that cannot be saved fails the run before any export is added (status 4):
/// an export added then would be one no later run knows of, and the API would refuse the
/// entity type's next export until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_cannot_be_saved_adds_no_export() {
    let h = Harness::start(Faults::default()).await;
    let Some(mnt) = Tmpfs::mount(&h.dir.path().join("mnt"), "size=8m") else {
        return;
    };
    let out = mnt.0.join("out");
    let run = || h.run_into(&out);
    assert_status(&output(run()).await, 0);
    assert_eq!(h.mock.stats().exports_added, 1);
    // Fill what is left of the file system.
    let mut fill = std::fs::File::create(mnt.0.join("fill")).unwrap();
    let block = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut fill, &block).is_ok() {}
    drop(fill);

    let o = output(run()).await;
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        describe(&o)
    );
    assert_eq!(h.mock.stats().exports_added, 1, "an export nothing records");
    drop(mnt);
    h.mock.shutdown().await;
}

/// An append the table cannot take (another partitioning) fails before its export is
/// added and waited for, with status 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_the_table_cannot_take_adds_no_export() {
    let h = Harness::start(Faults::default()).await;
    assert_status(&output(h.run()).await, 0);
    let mut cmd = h.run_window();
    cmd.args(["--partition-by", "none"]);
    let o = output(cmd).await;
    assert_status(&o, 4);
    assert!(stderr(&o).contains("partitioned by"), "{}", describe(&o));
    assert_eq!(h.mock.stats().exports_added, 1);
    h.mock.shutdown().await;
}

/// An export pending for a window this output directory recorded is named, not called
/// unknown, when another window of the entity type is refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_export_of_another_window_is_named() {
    let h = Harness::start(Faults::default()).await;
    let mut cmd = h.run_window();
    cmd.args(["--timeout", "1ms"]);
    let o = output(cmd).await;
    assert_status(&o, 7);
    let pending = h.job().export_id;

    let o = output(h.run()).await;
    assert_status(&o, 8);
    let err = stderr(&o);
    assert!(
        err.contains(&pending) && err.contains("another window or scope"),
        "{}",
        describe(&o)
    );
    assert!(!err.contains("has no record of it"), "{}", describe(&o));
    h.mock.shutdown().await;
}

/// A table whose manifest cannot be read is mended by a replace: the check made before
/// the export is added asks only that the table be this directory's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_mends_a_table_whose_manifest_cannot_be_read() {
    let h = Harness::start(Faults::default()).await;
    assert_status(&output(h.run()).await, 0);
    let loads = common::in_loads(&h.out(), TABLE, "");
    let manifest = std::fs::read_dir(&loads)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // Replaced, not written in place: the file is a hard link shared with older versions.
    std::fs::remove_file(&manifest).unwrap();
    std::fs::write(&manifest, b"{").unwrap();
    let o = output(h.run()).await;
    assert_status(&o, 0);
    let job = h.job();
    h.assert_loaded(&job.export_id, "after the replace");
    h.mock.shutdown().await;
}
