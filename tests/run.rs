//! `mews-etl run` end to end: the real binary against the embedded Connector API mock,
//! started inside each test on 127.0.0.1:0, with the mock's faults switched on one at a
//! time. Tables are read back through the `<out>/<table>` link and their `Id`s compared
//! with what the mock served.
//!
//! The binary runs on a blocking thread (or as a child polled from async code), so the
//! mock keeps serving on the test's multi-thread runtime meanwhile.

mod common;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::DataType;
use mews_etl::api::{ApiClient, ApiConfig, Secret};
use mews_etl::export::state::RunState;
use mews_etl::mock::{Faults, MockConfig, MockServer, MockStats};
use mews_etl::schema::{self, LINEAGE_EXPORT_ID};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Rows per export in most tests: a few hundred, in three files.
const ROWS: u64 = 300;

/// Longest wait for an observable condition (a state file, bytes served) before a test
/// gives up.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A small mock: `rows` per export in three files, one `Pending` and one `Processing` poll.
fn config(rows: u64, faults: Faults) -> MockConfig {
    MockConfig {
        rows,
        files_per_export: 3,
        faults,
        ..MockConfig::demo()
    }
}

/// The same, with exports `Pending` for six polls: a run waiting 100 ms at 50 ms per poll
/// cannot see the end.
fn pending_config() -> MockConfig {
    MockConfig {
        pending_polls: 6,
        ..config(ROWS, Faults::default())
    }
}

/// The instant `days` days before now, to the second, as `--updated-start` takes it.
fn days_ago(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    mews_etl::calendar::format_utc_seconds(now - days * 86_400)
}

/// A mock and a temporary output directory.
struct Harness {
    mock: MockServer,
    config: MockConfig,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start(config: MockConfig) -> Self {
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

    /// `mews-etl run --out <out> --platform-url <mock> --poll-interval 50ms --compression
    /// snappy <args>`, with the mock's tokens in the environment.
    fn command(&self, args: &[&str]) -> Command {
        self.command_with_tokens(args, &self.config.client_token, &self.config.access_token)
    }

    fn command_with_tokens(&self, args: &[&str], client: &str, access: &str) -> Command {
        let mut cmd = bare_command();
        cmd.arg("run")
            .arg("--out")
            .arg(self.out())
            .arg("--platform-url")
            .arg(self.mock.base_url())
            .arg("--poll-interval")
            .arg("50ms")
            // zstd (the default) is unoptimised C in debug builds and triples the time of a
            // run; the codec is no concern here (tests/convert.rs reads back tables written with it).
            .arg("--compression")
            .arg("snappy")
            .args(args)
            .env("MEWS_CLIENT_TOKEN", client)
            .env("MEWS_ACCESS_TOKEN", access)
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs the command to its end on a blocking thread.
    async fn run(&self, args: &[&str]) -> Output {
        output(self.command(args)).await
    }

    fn state_path(&self) -> PathBuf {
        self.out().join(".mews-etl").join("state.json")
    }

    fn state(&self) -> RunState {
        RunState::load(&self.state_path()).unwrap()
    }

    /// The export the state file names for `entity`.
    fn export_id(&self, entity: &str) -> String {
        let state = self.state();
        let job = state
            .jobs
            .values()
            .find(|j| j.entity == entity)
            .unwrap_or_else(|| panic!("no job for {entity} in {state:?}"));
        job.export_id.clone()
    }

    /// Checks that `entity`'s table holds exactly the rows of the export the state file
    /// names (committed): the same `Id` multiset, no duplicates, every row stamped with that
    /// export. Returns the export id.
    fn assert_loaded(&self, entity: &str) -> String {
        let mut exports = self.assert_loaded_all(entity);
        assert_eq!(exports.len(), 1, "{entity}: one export expected");
        exports.remove(0)
    }

    /// Checks that `entity`'s table holds exactly the rows of the exports the state file
    /// names for it (all committed; ledger entries have one per posting month), each once.
    /// Returns the export ids.
    fn assert_loaded_all(&self, entity: &str) -> Vec<String> {
        let state = self.state();
        let jobs: Vec<_> = state.jobs.values().filter(|j| j.entity == entity).collect();
        assert!(!jobs.is_empty(), "no job for {entity} in {state:?}");
        let mut expected = Vec::new();
        let mut exports = Vec::new();
        for job in jobs {
            assert!(job.committed, "{entity}: not committed: {job:?}");
            let export_id = job.export_id.clone();
            let ids = self
                .mock
                .expected_ids(&export_id)
                .unwrap_or_else(|| panic!("{entity}: the mock does not know export {export_id}"));
            assert!(!ids.is_empty(), "{entity}: export {export_id} is empty");
            expected.extend(ids);
            exports.push(export_id);
        }
        assert_ids(&self.out(), entity, &exports, expected);
        exports
    }

    /// `<out>/<table>` exists in no form (nothing of the entity was committed).
    fn assert_not_committed(&self, entity: &str) {
        let link = self.out().join(table(entity));
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "{} exists, but nothing of {entity} should be committed",
            link.display()
        );
    }
}

/// `mews-etl` with a clean environment for what it reads.
fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mews-etl"));
    for var in [
        "MEWS_CLIENT_TOKEN",
        "MEWS_ACCESS_TOKEN",
        "MEWS_PLATFORM_URL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn table(entity: &str) -> String {
    schema::find(entity).unwrap().table.clone()
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_status(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", describe(o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn strings(array: &ArrayRef) -> Vec<Option<String>> {
    let utf8 = arrow::compute::cast(array, &DataType::Utf8).unwrap();
    utf8.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

/// `(Id, _export_id)` of every row visible in `<out>/<table>`.
fn table_rows(out: &Path, table: &str) -> Vec<(String, String)> {
    let rows = common::read_table(out, table);
    let ids = strings(rows.column_by_name("Id").unwrap());
    let exports = strings(rows.column_by_name(LINEAGE_EXPORT_ID).unwrap());
    ids.into_iter()
        .zip(exports)
        .map(|(id, export)| {
            (
                id.unwrap_or_else(|| panic!("{table}: a row has a null Id")),
                export.unwrap_or_else(|| panic!("{table}: a row has a null _export_id")),
            )
        })
        .collect()
}

/// The table of `entity` holds exactly `expected` (as a multiset, which has no duplicates),
/// every row from `export_id`.
fn assert_ids(out: &Path, entity: &str, exports: &[String], mut expected: Vec<String>) {
    let unique: HashSet<String> = expected.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        expected.len(),
        "{entity}: the mock served repeated Ids"
    );
    let rows = table_rows(out, &table(entity));
    let foreign: Vec<&String> = rows
        .iter()
        .filter(|(_, e)| !exports.contains(e))
        .map(|(_, e)| e)
        .collect();
    assert!(
        foreign.is_empty(),
        "{entity}: {} rows from other exports than {exports:?}, e.g. {:?}",
        foreign.len(),
        foreign.first()
    );
    let mut got: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for id in &got {
        *counts.entry(id).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{entity}: {} Ids appear more than once, e.g. {:?}",
        duplicated.len(),
        duplicated.first()
    );
    got.sort();
    expected.sort();
    if got != expected {
        let have: HashSet<&String> = got.iter().collect();
        let missing = expected.iter().filter(|id| !have.contains(id)).count();
        let extra = got
            .iter()
            .filter(|id| !unique.contains(id.as_str()))
            .count();
        panic!(
            "{entity}: table has {} rows, exports {exports:?} have {}: {missing} missing, {extra} not from them",
            got.len(),
            expected.len()
        );
    }
}

/// Polls `condition` every 10 ms until it holds; fails after [`WAIT_LIMIT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none
/// behind.
struct Running(Option<Child>);

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        // Output is not read while it runs: discard it rather than risk a full pipe.
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        Running(Some(cmd.spawn().unwrap()))
    }

    fn has_exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| c.try_wait().unwrap().is_some())
    }

    /// Sends SIGKILL and reaps the child.
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the child to end (on a blocking thread) and returns its exit code.
    async fn wait(mut self) -> Option<i32> {
        let mut child = self.0.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap().code())
            .await
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn all_ten(gzip: bool) {
    let h = Harness::start(MockConfig {
        gzip,
        ..config(ROWS, Faults::default())
    })
    .await;
    let o = h.run(&[]).await;
    assert_status(&o, 0);
    let mut exports = HashSet::new();
    for entity in schema::entity_names() {
        exports.extend(h.assert_loaded_all(entity));
    }
    // One export per entity type, two for ledger entries (the default posting months).
    assert_eq!(exports.len(), 11);
    let stats = h.mock.stats();
    assert_eq!(stats.exports_added, 11);
    // Three files per export, each downloaded once.
    assert_eq!(stats.downloads, 33, "{stats:?}");
    h.mock.shutdown().await;
}

/// 1. All ten entity types, three files each, every `Id` exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_ten_entities_load_exactly() {
    all_ten(false).await;
}

/// 1b. The same with gzip files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_ten_entities_load_exactly_from_gzip_files() {
    all_ten(true).await;
}

/// 2. A run that gives up waiting leaves its export in the state file; the next run resumes
/// it instead of adding another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_export_is_resumed_by_the_next_run() {
    let h = Harness::start(pending_config()).await;
    let first = h
        .run(&["--entity", "OrderItem", "--timeout", "100ms"])
        .await;
    assert_status(&first, 7);
    assert!(
        stderr(&first).contains("a rerun resumes it"),
        "{}",
        describe(&first)
    );
    let export_id = h.export_id("OrderItem");
    assert!(!h.state().jobs.values().any(|j| j.committed));
    h.assert_not_committed("OrderItem");
    assert_eq!(h.mock.stats().exports_added, 1);

    let second = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&second, 0);
    let stats = h.mock.stats();
    assert_eq!((stats.exports_added, stats.add_requests), (1, 1));
    assert_eq!(h.assert_loaded("OrderItem"), export_id);
    h.mock.shutdown().await;
}

/// A resumed export polled with tokens the API refuses (401 from `exports/getAll`) is a
/// matter for a person, as the same refusal from `exports/add` is: exit 2, not 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refused_while_resuming_exit_2() {
    let h = Harness::start(pending_config()).await;
    let first = h
        .run(&["--entity", "OrderItem", "--timeout", "100ms"])
        .await;
    assert_status(&first, 7);
    let cmd = h.command_with_tokens(
        &["--entity", "OrderItem"],
        "wrong-client-token",
        &h.config.access_token,
    );
    let o = output(cmd).await;
    assert_status(&o, 2);
    assert!(stderr(&o).contains("401"), "{}", describe(&o));
    assert_eq!(h.mock.stats().exports_added, 1);
    h.mock.shutdown().await;
}

/// 2a. An export the state file names but the API no longer lists (purged, or added by a
/// server that has stopped, as every `--demo` run starts its own) does not wedge the output
/// directory: the next run warns, adds a new export of the same window and loads it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_the_api_no_longer_lists_is_replaced() {
    let mut h = Harness::start(pending_config()).await;
    let first = h
        .run(&["--entity", "OrderItem", "--timeout", "100ms"])
        .await;
    assert_status(&first, 7);
    let gone = h.export_id("OrderItem");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let fresh = MockServer::start(pending_config(), addr).await.unwrap();
    std::mem::replace(&mut h.mock, fresh).shutdown().await;

    let second = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&second, 0);
    let err = stderr(&second);
    assert!(
        err.contains("no longer lists the export") && err.contains(&gone),
        "{}",
        describe(&second)
    );
    assert_eq!(h.mock.stats().exports_added, 1);
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

/// 2c. An entity type with several windows (ledger entries: two posting months). While
/// one window's export is pending the API refuses to add another of the entity type, so a
/// run whose wait timed out does not try the next window (exit 7, not a conflict), and a
/// run that finds a later window's export recorded resumes that one first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_window_is_resumed_before_the_others_are_added() {
    let h = Harness::start(pending_config()).await;
    let first = h
        .run(&["--entity", "LedgerEntry", "--timeout", "100ms"])
        .await;
    assert_status(&first, 7);
    let err = stderr(&first);
    assert!(err.contains("still pending"), "{}", describe(&first));
    assert_eq!(h.mock.stats().add_requests, 1);

    // As if the run had been killed while it waited for the second month's export: the
    // pending export is recorded under the later window's key.
    let mut state = h.state();
    assert_eq!(state.jobs.len(), 1, "{state:?}");
    let (first_key, job) = state.jobs.pop_first().unwrap();
    let (entity, month) = first_key.split_once(" posting=").unwrap();
    let (y, m) = month.split_once('-').unwrap();
    let (y, m): (u32, u32) = (y.parse().unwrap(), m.parse().unwrap());
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    state
        .jobs
        .insert(format!("{entity} posting={y:04}-{m:02}"), job);
    state.save(&h.state_path()).unwrap();

    let second = h.run(&["--entity", "LedgerEntry"]).await;
    assert_status(&second, 0);
    let stats = h.mock.stats();
    assert_eq!(
        (stats.exports_added, stats.add_requests),
        (2, 2),
        "{stats:?}"
    );
    assert_eq!(h.assert_loaded_all("LedgerEntry").len(), 2);
    h.mock.shutdown().await;
}

/// 2b. The same without `--updated-end`: its default (now minus 5 minutes) moves between
/// the runs, yet the next run resumes the export; a run after that exports the wider window
/// afresh and its load replaces the last one's rows instead of adding them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_with_a_default_end_is_resumed_and_then_replaced() {
    let h = Harness::start(pending_config()).await;
    // Ten days back: one window of at most 180 days.
    let start = days_ago(10);
    let window = ["--entity", "OrderItem", "--updated-start", start.as_str()];
    let first = h
        .run(&[&window[..], &["--timeout", "100ms"]].concat())
        .await;
    assert_status(&first, 7);
    let export_id = h.export_id("OrderItem");
    // The default end is to the second: make sure it has moved.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = h.run(&window).await;
    assert_status(&second, 0);
    assert_eq!(h.mock.stats().add_requests, 1, "{}", describe(&second));
    assert_eq!(h.assert_loaded("OrderItem"), export_id);
    // The run says that the window it loaded ends where the first run's did.
    assert!(
        stderr(&second).contains("rows updated after its end arrive with the next run"),
        "{}",
        describe(&second)
    );
    let third = h.run(&window).await;
    assert_status(&third, 0);
    assert_eq!(h.mock.stats().exports_added, 2);
    let latest = h.assert_loaded("OrderItem");
    assert_ne!(latest, export_id, "the third run made a new export");
    h.mock.shutdown().await;
}

/// 3. An export this output directory did not start is pending: exit 8, the entity named,
/// no retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_not_ours_already_pending_is_a_conflict() {
    let h = Harness::start(MockConfig {
        pending_polls: 1000,
        ..config(ROWS, Faults::default())
    })
    .await;
    let client = ApiClient::new(ApiConfig::new(
        h.mock.base_url(),
        Secret::new(h.config.client_token.clone()),
        Secret::new(h.config.access_token.clone()),
    ))
    .unwrap();
    let theirs = client.add_export("Payment", None, None).await.unwrap();

    let started = Instant::now();
    let o = h.run(&["--entity", "Payment"]).await;
    assert_status(&o, 8);
    let err = stderr(&o);
    assert!(
        err.contains("error: Payment:") && err.contains("has no record of"),
        "{}",
        describe(&o)
    );
    assert!(err.contains(&theirs.id), "{}", describe(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    let stats = h.mock.stats();
    // Ours above, and the run's one attempt.
    assert!(stats.add_requests <= 2, "{stats:?}");
    assert_eq!(stats.exports_added, 1);
    h.assert_not_committed("Payment");
    assert!(h.state().jobs.is_empty(), "{:?}", h.state());
    h.mock.shutdown().await;
}

/// Runs Company, OrderItem and Bill against a mock with `faults`, which fail Company: exit
/// 7, the error naming Company and containing each of `reasons`, the others committed.
async fn only_company_fails(faults: Faults, status: i32, reasons: &[&str]) -> MockStats {
    let h = Harness::start(config(ROWS, faults)).await;
    let o = h
        .run(&[
            "--entity",
            "Company",
            "--entity",
            "OrderItem",
            "--entity",
            "Bill",
        ])
        .await;
    assert_status(&o, status);
    let err = stderr(&o);
    assert!(err.contains("error: Company:"), "{}", describe(&o));
    for reason in reasons {
        assert!(err.contains(reason), "{reason}: {}", describe(&o));
    }
    h.assert_not_committed("Company");
    h.assert_loaded("OrderItem");
    h.assert_loaded("Bill");
    let stats = h.mock.stats();
    h.mock.shutdown().await;
    stats
}

/// 4. An export that ends Failed fails its entity (exit 7); the others still commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_fails_only_its_entity() {
    let faults = Faults {
        fail_entity: Some("Company".into()),
        ..Faults::default()
    };
    let stats = only_company_fails(faults, 7, &["Failed"]).await;
    assert_eq!(stats.failed_exports, 1);
}

/// A 403 to one entity type's `exports/add` (a business rule refusing that request) fails
/// that entity alone: unlike a 401, it says nothing of the tokens, so the other entity
/// types still export and commit, even when the refused request was the run's first. Asked
/// again, it would be refused again: exit 2, not 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_export_fails_only_its_entity() {
    let faults = Faults {
        forbid_entity: Some("Company".into()),
        ..Faults::default()
    };
    let stats = only_company_fails(faults, 2, &["403", "not enabled"]).await;
    assert_eq!((stats.forbidden, stats.unauthorized), (1, 0), "{stats:?}");
    assert_eq!(stats.exports_added, 2, "{stats:?}");
}

/// With `--mode replace` over two windows, the first window's export failing hands the
/// replacing on to the second: the table ends with the second window's rows alone, not
/// with them beside what it held before the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_passes_to_the_next_window_when_the_first_fails() {
    let h = Harness::start(config(
        ROWS,
        Faults {
            fail_entity_once: Some("OrderItem".into()),
            ..Faults::default()
        },
    ))
    .await;
    // The table before the run: a load of some other rows.
    let earlier = h.dir.path().join("earlier.jsonl");
    let mut text = Vec::new();
    mews_etl::generate::Generator::new(
        schema::find("OrderItem").unwrap(),
        77,
        mews_etl::generate::Variety::Realistic,
    )
    .write_lines(0, 40, &mut text)
    .unwrap();
    std::fs::write(&earlier, text).unwrap();
    let mut convert = bare_command();
    convert
        .args(["-q", "convert", "--entity", "OrderItem", "--out"])
        .arg(h.out())
        .arg(&earlier);
    assert_status(&output(convert).await, 0);

    let (start, end) = (days_ago(300), days_ago(1));
    let o = h
        .run(&[
            "--entity",
            "OrderItem",
            "--mode",
            "replace",
            "--updated-start",
            start.as_str(),
            "--updated-end",
            end.as_str(),
        ])
        .await;
    assert_status(&o, 7);
    assert_eq!(h.mock.stats().failed_exports, 1);
    // Only the second window's export is left, committed, and the table holds its rows
    // alone.
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

/// 5. An export that expires before its files are read is replaced by one new export, and
/// its rows arrive once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_export_is_replaced_once() {
    let h = Harness::start(config(
        ROWS,
        Faults {
            expire_entity_once: Some("OrderItem".into()),
            ..Faults::default()
        },
    ))
    .await;
    let o = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&o, 0);
    let stats = h.mock.stats();
    assert_eq!((stats.exports_added, stats.expired_exports), (2, 1));
    let export_id = h.assert_loaded("OrderItem");
    // The loaded export is the second one; the first is not in the table (checked above:
    // every row carries `export_id`).
    assert_eq!(h.state().jobs.len(), 1);
    assert!(!export_id.is_empty());
    h.mock.shutdown().await;
}

/// 6. A 429's `Retry-After` is waited out before the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let h = Harness::start(MockConfig {
        pending_polls: 2,
        ..config(
            ROWS,
            Faults {
                rate_limit_every: Some(3),
                retry_after_secs: 1,
                ..Faults::default()
            },
        )
    })
    .await;
    let o = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&o, 0);
    h.assert_loaded("OrderItem");
    let api: Vec<_> = h
        .mock
        .request_log()
        .into_iter()
        .filter(|r| r.operation != "download")
        .collect();
    let limited: Vec<usize> = (0..api.len()).filter(|&i| api[i].status == 429).collect();
    assert!(limited.len() >= 2, "{api:?}");
    assert_eq!(h.mock.stats().rate_limited, limited.len() as u64);
    for i in limited {
        let next = api
            .get(i + 1)
            .unwrap_or_else(|| panic!("nothing after the 429 at {i}: {api:?}"));
        let gap = next.at.duration_since(api[i].at);
        assert!(
            gap >= Duration::from_secs(1),
            "request {} came {gap:?} after a 429 with Retry-After: 1",
            i + 1
        );
    }
    h.mock.shutdown().await;
}

/// 7. 5xx answers are retried; the rows arrive exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let h = Harness::start(config(
        ROWS,
        Faults {
            server_error_every: Some(2),
            ..Faults::default()
        },
    ))
    .await;
    let o = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&o, 0);
    assert!(h.mock.stats().server_errors >= 2, "{:?}", h.mock.stats());
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

async fn broken_bodies(gzip: bool) {
    let h = Harness::start(MockConfig {
        gzip,
        ..config(
            2000,
            Faults {
                reset_mid_body: Some(1),
                short_body: Some(2),
                ..Faults::default()
            },
        )
    })
    .await;
    let o = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&o, 0);
    let stats = h.mock.stats();
    assert_eq!((stats.resets, stats.short_bodies), (1, 1), "{stats:?}");
    // Both cut files resumed with a range request.
    assert!(stats.range_downloads >= 2, "{stats:?}");
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

/// Files are read one after another while the decoders keep up with one, and two at once
/// while a slow link leaves them waiting for lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_downloads_are_read_two_at_a_time() {
    let h = Harness::start(config(
        1500,
        Faults {
            // 16 KiB every 10 ms: 1.6 MB/s a file, far below what the decoders take.
            trickle: Some((16 * 1024, Duration::from_millis(10))),
            ..Faults::default()
        },
    ))
    .await;
    let o = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&o, 0);
    let stats = h.mock.stats();
    assert_eq!(stats.trickled, 3, "{stats:?}");
    assert_eq!(stats.most_downloads_at_once, 2, "{stats:?}");
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

/// 8. A connection reset mid-body and a body ending short are resumed: no row lost or
/// repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_downloads_resume_without_loss_or_duplication() {
    broken_bodies(false).await;
}

/// 8b. The same through gzip streams, resumed in the middle of compressed data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_gzip_downloads_resume_without_loss_or_duplication() {
    broken_bodies(true).await;
}

/// 9. File URLs that expire during the run are refreshed through `exports/getAll`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_file_urls_are_refreshed() {
    let h = Harness::start(config(
        ROWS,
        Faults {
            // Two files are read at a time, slowly, so the third starts well after the clock
            // has moved.
            trickle: Some((2048, Duration::from_millis(20))),
            ..Faults::default()
        },
    ))
    .await;
    let child = Running::spawn(h.command(&["--entity", "OrderItem"]));
    wait_until("the first bytes to be served", || {
        h.mock.stats().bytes_served > 0
    })
    .await;
    // Past the URLs' ten minutes: every URL listed so far is now refused.
    h.mock.advance_clock(Duration::from_secs(11 * 60));
    assert_eq!(child.wait().await, Some(0));
    let log = h.mock.request_log();
    let refused = log
        .iter()
        .position(|r| r.operation == "download" && r.status == 403)
        .unwrap_or_else(|| panic!("no download was refused: {log:?}"));
    assert!(
        log[refused..]
            .iter()
            .any(|r| r.operation == "exports/getAll" && r.status == 200),
        "no getAll after the refusal: {log:?}"
    );
    assert!(
        log[refused..]
            .iter()
            .any(|r| r.operation == "download" && r.status == 200),
        "no download after the refusal: {log:?}"
    );
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

/// 10. A file whose bytes disagree with its `SizeInBytes` fails its entity, naming the
/// file and both sizes; nothing of it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_mismatch_fails_the_entity() {
    let h = Harness::start(config(
        ROWS,
        Faults {
            wrong_size_entity: Some("Payment".into()),
            ..Faults::default()
        },
    ))
    .await;
    let o = h
        .run(&["--entity", "Payment", "--entity", "OrderItem"])
        .await;
    assert_status(&o, 7);
    let err = stderr(&o);
    let export_id = h.export_id("Payment");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: Payment:"))
        .unwrap_or_else(|| panic!("{}", describe(&o)));
    assert!(
        line.contains(&format!("/files/{export_id}/1")),
        "file not named: {line}"
    );
    assert!(!line.contains("sig="), "signature shown: {line}");
    let number_after = |label: &str| -> u64 {
        let rest = &line[line
            .find(label)
            .unwrap_or_else(|| panic!("{label}: {line}"))
            + label.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{label}: {e}: {line}"))
    };
    let received = number_after("received ");
    let announced = number_after("SizeInBytes is ");
    assert_eq!(announced, received + 1, "{line}");
    h.assert_not_committed("Payment");
    h.assert_loaded("OrderItem");
    h.mock.shutdown().await;
}

/// 11. Wrong credentials fail fast, with the status and the operation, and are not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_fails_fast_without_retrying() {
    let h = Harness::start(config(ROWS, Faults::default())).await;
    let started = Instant::now();
    let cmd = h.command_with_tokens(
        &["--summary-format", "json"],
        "wrong-client-token",
        &h.config.access_token,
    );
    let o = output(cmd).await;
    let elapsed = started.elapsed();
    // A person must mend the tokens: a usage error, not a failure a rerun may mend.
    assert_status(&o, 2);
    // The summary, one JSON object per job: failed, without an export, the reason whole.
    let stdout = String::from_utf8_lossy(&o.stdout);
    for line in stdout.lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(row["outcome"], "failed", "{line}");
        assert_eq!(row["export_id"], serde_json::Value::Null, "{line}");
        assert!(row["reason"].as_str().unwrap().contains("401"), "{line}");
        let (key, entity) = (
            row["key"].as_str().unwrap(),
            row["entity"].as_str().unwrap(),
        );
        assert!(key.starts_with(entity), "{line}");
    }
    assert_eq!(stdout.lines().count(), 11, "{stdout}");
    let err = stderr(&o);
    assert!(
        err.contains("exports/add") && err.contains("401"),
        "{}",
        describe(&o)
    );
    assert!(!err.contains("wrong-client-token"), "token shown");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let stats = h.mock.stats();
    // One refused request in all: the other entity types learn of the refusal without
    // asking again; nothing polled or downloaded.
    assert_eq!(stats.add_requests, 1, "{stats:?}");
    assert_eq!(stats.unauthorized, stats.add_requests, "{stats:?}");
    assert_eq!((stats.get_all_requests, stats.file_requests), (0, 0));
    h.mock.shutdown().await;
}

/// 12. A run killed (SIGKILL) in the middle of its downloads leaves nothing visible; the
/// rerun resumes the same export and loads it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_resumed_by_the_next() {
    let h = Harness::start(config(
        ROWS,
        Faults {
            trickle: Some((2048, Duration::from_millis(10))),
            ..Faults::default()
        },
    ))
    .await;
    let mut child = Running::spawn(h.command(&["--entity", "OrderItem"]));
    let state_path = h.state_path();
    wait_until("an export in the state file and bytes served", || {
        let named = RunState::load(&state_path).is_ok_and(|s| !s.jobs.is_empty());
        named && h.mock.stats().bytes_served > 0
    })
    .await;
    assert!(!child.has_exited(), "the run ended before it was killed");
    child.kill();
    let export_id = h.export_id("OrderItem");
    assert!(!h.state().jobs.values().any(|j| j.committed));
    // The table link does not exist, or names a complete version.
    let link = h.out().join(table("OrderItem"));
    if std::fs::symlink_metadata(&link).is_ok() {
        let expected = h.mock.expected_ids(&export_id).unwrap();
        assert_ids(
            &h.out(),
            "OrderItem",
            std::slice::from_ref(&export_id),
            expected,
        );
    }
    let added = h.mock.stats().exports_added;
    assert_eq!(added, 1);

    let o = h.run(&["--entity", "OrderItem"]).await;
    assert_status(&o, 0);
    assert_eq!(h.mock.stats().exports_added, added);
    assert_eq!(h.assert_loaded("OrderItem"), export_id);
    h.mock.shutdown().await;
}

/// 13. `--demo --dry-run` prints the plan and writes nothing; without tokens (and without
/// `--demo`) the run is a usage error naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_missing_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = bare_command();
    cmd.args(["run", "--demo", "--dry-run", "--out"]).arg(&out);
    let o = output(cmd).await;
    assert_status(&o, 0);
    let stdout = String::from_utf8_lossy(&o.stdout);
    for entity in schema::entity_names() {
        assert!(
            stdout.lines().any(|l| l.starts_with(entity)),
            "{entity} not in the plan:\n{stdout}"
        );
    }
    assert!(stdout.contains("11 export(s)"), "{stdout}");
    assert!(!out.exists(), "--dry-run created {}", out.display());

    // Without tokens, a run and its dry run alike stop at once, naming what is missing.
    for dry_run in [false, true] {
        let mut cmd = bare_command();
        cmd.args(["run", "--out"]).arg(&out);
        if dry_run {
            cmd.arg("--dry-run");
        }
        let o = output(cmd).await;
        assert_status(&o, 2);
        assert!(stderr(&o).contains("MEWS_CLIENT_TOKEN"), "{}", describe(&o));
        assert!(!out.exists(), "a usage error created {}", out.display());
    }
}

/// An update window does not apply to ledger entries: a run of them alone says so and
/// neither waits for a recent end nor refuses one ahead of the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_run_ignores_an_update_window_without_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let soon = mews_etl::manifest::rfc3339_utc(
        std::time::SystemTime::now() + std::time::Duration::from_secs(120),
    );
    let mut cmd = bare_command();
    cmd.args(["run", "--demo", "--dry-run", "-e", "LedgerEntry"])
        .args([
            "--updated-start",
            "2024-01-01",
            "--updated-end",
            &soon,
            "--out",
        ])
        .arg(dir.path().join("out"));
    let o = output(cmd).await;
    assert_status(&o, 0);
    let text = stderr(&o);
    assert!(
        text.contains("do not apply to LedgerEntry") && !text.contains("wait"),
        "{}",
        describe(&o)
    );
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(!plan.contains("updated="), "{plan}");
}

/// Posting dates end yesterday at the latest, as the default months do: an end ahead is
/// brought back to yesterday (no month not yet posted, no one-day month), and a start ahead
/// is refused naming the flag given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_dates_ahead_of_yesterday_are_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |range: &[&str]| {
        let mut cmd = bare_command();
        cmd.args(["run", "--demo", "--dry-run", "-e", "LedgerEntry"])
            .args(range)
            .arg("--out")
            .arg(dir.path().join("out"));
        cmd
    };
    let (yesterday, next_month) = (&days_ago(1)[..10], &days_ago(-40)[..10]);
    let month = &yesterday[..7];
    let o = output(plan(&[
        "--posting-start",
        yesterday,
        "--posting-end",
        next_month,
    ]))
    .await;
    assert_status(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("posting={month}-01..{yesterday}")),
        "{}",
        describe(&o)
    );
    assert!(text.contains("1 export(s)"), "{}", describe(&o));
    assert!(
        stderr(&o).contains("is after yesterday"),
        "{}",
        describe(&o)
    );
    for range in [
        vec!["--posting-start", next_month],
        vec!["--posting-start", next_month, "--posting-end", next_month],
    ] {
        let o = output(plan(&range)).await;
        assert_status(&o, 2);
        assert!(
            stderr(&o).contains(&format!("--posting-start {next_month} is after yesterday")),
            "{}",
            describe(&o)
        );
    }
}

/// A dry run says what a run would meet first: another process holding the directory
/// (exit 6, as the run), and an export recorded for its window that it would resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_finds_the_directory_held_and_the_export_it_would_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let dry = || {
        let mut cmd = bare_command();
        cmd.args(["run", "--demo", "--dry-run", "-e", "Company", "--out"])
            .arg(&out);
        cmd
    };
    let mut first = bare_command();
    first
        .args([
            "-q",
            "run",
            "--demo",
            "--demo-rows",
            "20",
            "-e",
            "Company",
            "--out",
        ])
        .arg(&out);
    assert_status(&output(first).await, 0);
    let state_path = out.join(".mews-etl").join("state.json");
    let mut state = RunState::load(&state_path).unwrap();
    let key = state.jobs.keys().next().unwrap().clone();
    let job = state.jobs.get_mut(&key).unwrap();
    job.committed = false;
    job.export_id = "an-export-not-loaded".into();
    state.save(&state_path).unwrap();

    // An output directory inside this one's table: exit 4, as the run.
    let mut inside = bare_command();
    inside
        .args(["run", "--demo", "--dry-run", "-e", "Company", "--out"])
        .arg(out.join("company").join("x"));
    let o = output(inside).await;
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains("itself as the output directory"),
        "{}",
        describe(&o)
    );

    let lock = std::fs::File::open(out.join(".mews-etl").join("lock")).unwrap();
    lock.lock().unwrap();
    let o = output(dry()).await;
    assert_status(&o, 6);
    assert!(
        stderr(&o).contains("a run now would stop at once (--dry-run): output directory"),
        "{}",
        describe(&o)
    );
    lock.unlock().unwrap();
    let o = output(dry()).await;
    assert_status(&o, 0);
    assert!(
        stderr(&o).contains("Company: a run would first resume export an-export-not-loaded"),
        "{}",
        describe(&o)
    );
    assert_eq!(
        RunState::load(&state_path).unwrap().jobs[&key].export_id,
        "an-export-not-loaded"
    );
}

/// Scope ids comma-separated are the same scope as the ids repeated, in any order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_ids_may_be_comma_separated() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "4fa85f64-5717-4562-b3fc-2c963f66afa6",
    );
    let mut plans = Vec::new();
    for ids in [vec![format!("{a},{b}")], vec![b.to_owned(), a.to_owned()]] {
        let mut cmd = bare_command();
        cmd.args(["--summary-format", "json", "run", "--demo", "--dry-run"])
            .args(["-e", "Company"]);
        for id in &ids {
            cmd.args(["--enterprise-id", id]);
        }
        cmd.arg("--out").arg(dir.path().join("out"));
        let o = output(cmd).await;
        assert_status(&o, 0);
        let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        plans.push(plan);
    }
    assert_eq!(plans[0], plans[1]);
    assert_eq!(plans[0]["key"], format!("Company enterprises={a},{b}"));
    assert_eq!(plans[0]["table"], "company");
    assert!(plans[0]["path"].as_str().unwrap().ends_with("out/company"));
}

/// A dry run makes the layout checks a run makes before adding an export: an append the
/// table cannot take (another partitioning) exits 4, as the run would, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_finds_an_append_the_table_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let window = |start: &str, end: &str| {
        let mut cmd = bare_command();
        cmd.args([
            "-q",
            "run",
            "--demo",
            "--demo-rows",
            "40",
            "-e",
            "OrderItem",
        ])
        .args(["--updated-start", start, "--updated-end", end, "--out"])
        .arg(&out);
        cmd
    };
    let mut first = window("2024-03-01", "2024-04-01");
    first.args(["--partition-by", "none"]);
    assert_status(&output(first).await, 0);
    let before = common::parquet_files(&out);
    let mut dry = window("2024-04-01", "2024-05-01");
    dry.arg("--dry-run");
    let o = output(dry).await;
    assert_status(&o, 4);
    assert!(
        stderr(&o)
            .contains("OrderItem: a run would fail: table order_item is partitioned by \"none\""),
        "{}",
        describe(&o)
    );
    assert_eq!(common::parquet_files(&out), before);
    let mut same = window("2024-04-01", "2024-05-01");
    same.args(["--partition-by", "none", "--dry-run"]);
    assert_status(&output(same).await, 0);
    // A replace over two windows (over 180 days): the second window appends to the layout
    // the first gives the table, as in the run, not to the table as it is.
    let mut replace = window("2023-01-01", "2024-05-01");
    replace.args(["--mode", "replace", "--dry-run"]);
    let o = output(replace).await;
    assert_status(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 export(s)"),
        "{}",
        describe(&o)
    );
}

/// The most threads allowed, in as many loads at once as the run has: every decoder and
/// writer of every load gets a thread (with too few, the last stage waited forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_threads_in_concurrent_loads_do_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let mut cmd = bare_command();
    cmd.args(["-q", "run", "--demo", "--demo-rows", "50"])
        .args([
            "--entity",
            "OrderItem,Payment",
            "--threads",
            "256",
            "--concurrency",
            "2",
        ])
        .arg("--out")
        .arg(&out);
    let mut running = Running::spawn(cmd);
    wait_until("the run to end", || running.has_exited()).await;
    assert_eq!(running.wait().await, Some(0));
    assert_eq!(table_rows(&out, "order_item").len(), 50);
    assert_eq!(table_rows(&out, "payment").len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loads_every_table_and_duckdb_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let mut cmd = bare_command();
    cmd.args([
        "run",
        "--demo",
        "--demo-rows",
        "300",
        "--compression",
        "snappy",
        "--out",
    ])
    .arg(&out);
    let o = output(cmd).await;
    assert_status(&o, 0);
    let summary = String::from_utf8_lossy(&o.stdout);
    for s in schema::all() {
        // Ledger entries come in two exports, the default posting months.
        let exports = if s.entity == "LedgerEntry" { 2 } else { 1 };
        assert_eq!(
            table_rows(&out, &s.table).len(),
            300 * exports,
            "{}",
            s.table
        );
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with(&s.entity) && l.contains("committed")),
            "{} missing from the summary:\n{summary}",
            s.entity
        );
    }
    // DuckDB, an independent reader, loads every table as the README shows. CI installs it
    // (.ci/run sets MEWS_ETL_REQUIRE_DUCKDB); elsewhere the check says why it was skipped.
    if !common::duckdb_available() {
        return;
    }
    let tables: Vec<String> = schema::all().iter().map(|s| s.table.clone()).collect();
    let rows = |t: &str| if t == "ledger_entry" { 600 } else { 300 };
    let script = format!(
        "import duckdb\nfor t in {tables:?}:\n    n = duckdb.sql(f\"select count(*) from read_parquet('{}/{{t}}/**/*.parquet', hive_partitioning = true)\").fetchall()[0][0]\n    print(t, n)\n",
        out.display()
    );
    let o = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for t in &tables {
        assert!(
            text.lines().any(|l| l == format!("{t} {}", rows(t))),
            "{t}: {text}"
        );
    }

    // The README's quick-start query, as printed there, runs on this output and counts
    // every order item once.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let quick_start = readme
        .split("<!-- quickstart:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- quickstart:end -->").next())
        .expect("README has a quick-start section");
    let sql = quick_start
        .lines()
        .find_map(|l| l.strip_prefix("duckdb -c \"")?.strip_suffix('"'))
        .expect("the quick start queries with duckdb -c \"…\"");
    let sql = sql.replace("'data/", &format!("'{}/", out.display()));
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import duckdb, sys; print(sum(r[2] for r in duckdb.sql(sys.argv[1]).fetchall()))",
            &sql,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{sql}\n{}", describe(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "300", "{sql}");
}

/// Exporting the same `UpdatedUtc` window again replaces what its last export loaded
/// (append mode keeps other windows), so a rerun never doubles a window's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_exported_again_replaces_its_rows() {
    let h = Harness::start(config(ROWS, Faults::default())).await;
    let window = [
        "--entity",
        "OrderItem",
        "--updated-start",
        "2024-01-01",
        "--updated-end",
        "2024-02-01",
    ];
    assert_status(&h.run(&window).await, 0);
    let first = h.assert_loaded("OrderItem");
    let other = [
        "--entity",
        "OrderItem",
        "--updated-start",
        "2024-02-01",
        "--updated-end",
        "2024-03-01",
    ];
    assert_status(&h.run(&other).await, 0);
    assert_status(&h.run(&window).await, 0);
    let exports: HashSet<String> = table_rows(&h.out(), "order_item")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(h.mock.stats().exports_added, 3);
    assert_eq!(exports.len(), 2, "one export per window: {exports:?}");
    assert!(
        !exports.contains(&first),
        "the first export of the window is still there"
    );
    assert_eq!(
        table_rows(&h.out(), "order_item").len() as u64,
        2 * ROWS,
        "each window's rows once"
    );
    // The mock keeps the filter, as the API does: each export's rows were updated within
    // its own window.
    let rows = common::read_table(&h.out(), "order_item");
    let updated = rows.column_by_name("UpdatedUtc").unwrap();
    let updated = updated.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let (jan, feb, mar) = (
        1_704_067_200_000_000,
        1_706_745_600_000_000,
        1_709_251_200_000_000,
    );
    let mut windows: BTreeMap<String, HashSet<bool>> = BTreeMap::new();
    for (i, (_, export)) in table_rows(&h.out(), "order_item").into_iter().enumerate() {
        let at = updated.value(i);
        assert!(
            (jan..mar).contains(&at),
            "UpdatedUtc {at} outside both windows"
        );
        windows.entry(export).or_default().insert(at >= feb);
    }
    assert!(windows.values().all(|w| w.len() == 1), "{windows:?}");
    h.mock.shutdown().await;
}

/// A state file save cut short by a kill leaves a temporary file in `.mews-etl/`; the next
/// run removes it (a SIGKILL at the wrong moment used to leave one behind for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_state_file_is_cleaned_up() {
    let h = Harness::start(config(ROWS, Faults::default())).await;
    let state_dir = h.out().join(".mews-etl");
    std::fs::create_dir_all(&state_dir).unwrap();
    let leftovers = [
        state_dir.join(".tmpX1y2Z3"),
        state_dir.join(".state-abc.tmp"),
    ];
    for f in &leftovers {
        std::fs::write(f, b"{\"format_version\":").unwrap();
    }
    let o = h.run(&["--entity", "Company"]).await;
    assert_status(&o, 0);
    h.assert_loaded("Company");
    for f in &leftovers {
        assert!(!f.exists(), "{} is still there", f.display());
    }
    h.mock.shutdown().await;
}

/// A state file that cannot be read is a problem of the output directory (exit 4, its
/// path named), not a bug; nothing is exported. Zero poll intervals and timeouts are usage
/// errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_and_zero_durations_are_refused() {
    let h = Harness::start(config(ROWS, Faults::default())).await;
    std::fs::create_dir_all(h.out().join(".mews-etl")).unwrap();
    std::fs::write(h.state_path(), b"{\"format_version\":").unwrap();
    let o = h.run(&["--entity", "Company"]).await;
    assert_status(&o, 4);
    assert!(stderr(&o).contains("state.json"), "{}", describe(&o));
    assert_eq!(h.mock.stats().add_requests, 0);
    let o = h.run(&["--entity", "Company", "--timeout", "0"]).await;
    assert_status(&o, 2);
    assert!(
        stderr(&o).contains("--timeout must be more than 0"),
        "{}",
        describe(&o)
    );
    let out = h.out();
    h.mock.shutdown().await;
    let mut cmd = bare_command();
    cmd.args([
        "run",
        "--demo",
        "--dry-run",
        "--poll-interval",
        "0ms",
        "--out",
    ])
    .arg(&out);
    let o = output(cmd).await;
    assert_status(&o, 2);
    assert!(
        stderr(&o).contains("--poll-interval must be more than 0"),
        "{}",
        describe(&o)
    );
    // A flag that means nothing without another (--demo-rows without --demo), and an empty
    // --partition-by (an unset variable, rather than a wish for no partitions), are refused
    // rather than ignored.
    for (args, message) in [
        (
            vec!["--demo-rows", "10", "--client-token-file", "/dev/null"],
            "required arguments were not provided:\n  --demo",
        ),
        (
            vec!["--demo", "--partition-by", ""],
            "--partition-by: is empty: give none for no partitions",
        ),
    ] {
        let mut cmd = bare_command();
        cmd.args(["run", "--dry-run", "-e", "OrderItem"])
            .args(&args)
            .arg("--out")
            .arg(&out);
        let o = output(cmd).await;
        assert_status(&o, 2);
        assert!(stderr(&o).contains(message), "{args:?}: {}", describe(&o));
    }
}

/// `mews-etl mock-server --port 0` announces the port the system picked, and `run` loads
/// from it with the tokens it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_server_on_port_0_announces_the_port_it_listens_on() {
    use std::io::BufRead;
    let mut server = bare_command()
        .args(["mock-server", "--port", "0", "--rows", "40", "--quiet"])
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let announced = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("serving the Connector API mock on "))
    })
    .await
    .unwrap();
    let Some(line) = announced else {
        let _ = server.kill();
        panic!("mock-server ended without announcing where it listens");
    };
    let url = line
        .trim_start_matches("serving the Connector API mock on ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "{line}");
    let token = |name: &str| {
        let (_, after) = line.split_once(&format!("{name} token ")).unwrap();
        after.split([',', ')']).next().unwrap().to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bare_command();
    cmd.args(["run", "--entity", "Bill", "--compression", "snappy"])
        .args(["--poll-interval", "50ms", "--platform-url", &url, "--out"])
        .arg(dir.path().join("out"))
        .env("MEWS_CLIENT_TOKEN", token("client"))
        .env("MEWS_ACCESS_TOKEN", token("access"));
    let o = output(cmd).await;
    // SIGTERM (how a container is stopped) ends the server as Ctrl-C does: status 0.
    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = tokio::task::spawn_blocking(move || server.wait().unwrap())
        .await
        .unwrap();
    assert_status(&o, 0);
    assert_eq!(
        status.code(),
        Some(0),
        "mock-server after SIGTERM: {status:?}"
    );
    let table = common::read_table(&dir.path().join("out"), &table("Bill"));
    assert_eq!(table.num_rows(), 40);
}

/// `mock-server` on a port another process holds is a matter of the command (exit 2, naming
/// the port), not an internal error; and an export of no files is refused, not mended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_server_refuses_a_busy_port_and_no_files() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let mut cmd = bare_command();
    cmd.args(["mock-server", "--port", &port]);
    let o = output(cmd).await;
    assert_status(&o, 2);
    assert!(
        stderr(&o).contains(&format!("--port {port}")),
        "{}",
        describe(&o)
    );
    let mut cmd = bare_command();
    cmd.args(["mock-server", "--port", "0", "--files", "0"]);
    let o = output(cmd).await;
    assert_status(&o, 2);
    assert!(stderr(&o).contains("--files"), "{}", describe(&o));
    drop(busy);
}
