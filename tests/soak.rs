//! Chaos soak: many `mews-etl run`s against the embedded mock, each with faults drawn at
//! random — 429 bursts with `Retry-After`, 5xx, resets mid-body, short bodies, URLs expiring
//! mid-download, slow trickling bodies, an export turning `Expired`, now and then a `Failed`
//! export or a wrong `SizeInBytes` — and in some runs the process killed (SIGKILL) at a
//! random moment, once or twice, then run again.
//!
//! What must hold after every process ends, killed or not:
//! - every visible table (`<out>/<table>`, read through its link) holds exactly the rows of
//!   one export the mock served — the same `Id` multiset, no duplicates, every row stamped
//!   with that export — or does not exist;
//! - a run that ended by itself exited 0 (every table then holds the export the state file
//!   records as committed), or, when an unrecoverable fault was injected, with a documented
//!   failure status: never 1 (internal), never a panic, never a signal;
//! - a run that ended by itself left no staging files, no half-built version and no
//!   temporary link behind.
//!
//! Ignored by default; CI runs it with `cargo test --test soak -- --ignored --nocapture`.
//! `MEWS_ETL_SOAK_RUNS` (default 30) sets the number of runs, `MEWS_ETL_SOAK_SEED` the seed
//! (printed at the start, so a failure's faults can be replayed; kill moments are delays,
//! so where a kill lands still varies with the machine's speed) and
//! `MEWS_ETL_SOAK_PARALLEL` (default 2) how many runs go at once.

mod common;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::DataType;
use common::parquet_files;
use mews_etl::export::state::RunState;
use mews_etl::manifest::LoadManifest;
use mews_etl::mock::{Faults, MockConfig, MockServer, MockStats};
use mews_etl::schema::{self, LINEAGE_EXPORT_ID};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs when `MEWS_ETL_SOAK_RUNS` is not set.
const DEFAULT_RUNS: u32 = 30;

/// Runs at a time when `MEWS_ETL_SOAK_PARALLEL` is not set: a run spends most of its time
/// waiting (polls, backoff, `Retry-After`, trickled bodies), so two overlap well on two
/// cores.
const DEFAULT_PARALLEL: usize = 2;

/// Longest a single process may take before the soak calls it hung.
const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// Exit statuses a run may end with when an unrecoverable fault (a `Failed` export, a wrong
/// `SizeInBytes`) was injected: 7, some entity failed. Anything else — 1 (internal), a
/// panic, a signal — is a bug.
const FAILED_ENTITY: i32 = 7;

/// Exit status of a conflict: an export of the entity type is pending that this output
/// directory has no record of.
const CONFLICT: i32 = 8;

/// What one soak run injects, drawn from the seeded generator.
#[derive(Debug, Clone)]
struct Plan {
    entities: Vec<&'static str>,
    config: MockConfig,
    /// Delays after which the running process is killed, one per kill; a rerun follows each.
    kills: Vec<Duration>,
    /// Delay after the first bytes are served at which the mock's clock jumps past the
    /// URLs' lifetime (so downloads get 403 and URLs are refreshed).
    expire_urls_after: Option<Duration>,
    /// Whether an unrecoverable fault was injected, so exit 7 is acceptable.
    may_fail: bool,
    /// Load flags: `--concurrency`, `--partition-by none`, `--max-rows-per-file`.
    flags: Vec<String>,
}

fn draw_plan(rng: &mut fastrand::Rng) -> Plan {
    let all = schema::entity_names();
    let mut entities: Vec<&'static str> = Vec::new();
    for _ in 0..rng.usize(1..=3) {
        let e = all[rng.usize(..all.len())];
        if !entities.contains(&e) {
            entities.push(e);
        }
    }
    let pick = |rng: &mut fastrand::Rng| entities[rng.usize(..entities.len())].to_owned();
    let mut faults = Faults::default();
    if rng.f32() < 0.4 {
        faults.rate_limit_every = Some(rng.u32(3..=8));
        faults.retry_after_secs = rng.u64(0..=1);
    }
    if rng.f32() < 0.4 {
        faults.server_error_every = Some(rng.u32(4..=9));
    }
    if rng.f32() < 0.4 {
        faults.reset_mid_body = Some(rng.u32(1..=4));
    }
    if rng.f32() < 0.4 {
        faults.short_body = Some(rng.u32(1..=4));
    }
    if rng.f32() < 0.3 {
        faults.trickle = Some((
            rng.usize(2048..=16384),
            Duration::from_millis(rng.u64(1..=3)),
        ));
    }
    if rng.f32() < 0.25 {
        faults.expire_entity_once = Some(pick(rng));
    }
    let mut may_fail = false;
    if rng.f32() < 0.08 {
        faults.fail_entity = Some(pick(rng));
        may_fail = true;
    }
    if rng.f32() < 0.05 {
        faults.wrong_size_entity = Some(pick(rng));
        may_fail = true;
    }
    let config = MockConfig {
        seed: rng.u64(..),
        rows: rng.u64(20..=300),
        files_per_export: rng.usize(1..=3),
        gzip: rng.bool(),
        pending_polls: rng.u32(0..=2),
        processing_polls: rng.u32(0..=2),
        faults,
        ..MockConfig::demo()
    };
    // Most runs end within half a second: later kills would mostly find the process gone.
    let kills = if rng.f32() < 0.4 {
        (0..rng.usize(1..=2))
            .map(|_| Duration::from_millis(rng.u64(5..=400)))
            .collect()
    } else {
        Vec::new()
    };
    let expire_urls_after = (rng.f32() < 0.25).then(|| Duration::from_millis(rng.u64(0..=300)));
    let mut flags = vec!["--concurrency".to_owned(), rng.usize(1..=3).to_string()];
    if rng.f32() < 0.3 {
        flags.extend(["--partition-by".to_owned(), "none".to_owned()]);
    }
    if rng.f32() < 0.3 {
        // Several files per partition, so a commit moves many.
        flags.extend([
            "--max-rows-per-file".to_owned(),
            rng.u32(7..=60).to_string(),
        ]);
    }
    Plan {
        entities,
        config,
        kills,
        expire_urls_after,
        may_fail,
        flags,
    }
}

/// The soak's totals.
#[derive(Default)]
struct Tally {
    runs: u32,
    processes: u32,
    kills: u32,
    /// Kills planned but the process had already ended.
    kills_missed: u32,
    url_expiries: u32,
    /// Runs stopped by an export a killed process added but did not live to record.
    orphaned: u32,
    /// Final exit statuses (`None`: killed by a signal) by count.
    outcomes: BTreeMap<String, u32>,
    faults: MockStats,
}

impl Tally {
    /// Adds another tally's counts to this one.
    fn merge(&mut self, other: &Tally) {
        self.runs += other.runs;
        self.processes += other.processes;
        self.kills += other.kills;
        self.kills_missed += other.kills_missed;
        self.url_expiries += other.url_expiries;
        self.orphaned += other.orphaned;
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        self.add_stats(&other.faults);
    }

    fn add_stats(&mut self, s: &MockStats) {
        let t = &mut self.faults;
        t.rate_limited += s.rate_limited;
        t.server_errors += s.server_errors;
        t.resets += s.resets;
        t.short_bodies += s.short_bodies;
        t.trickled += s.trickled;
        t.failed_exports += s.failed_exports;
        t.expired_exports += s.expired_exports;
        t.forbidden += s.forbidden;
        t.range_downloads += s.range_downloads;
        t.downloads += s.downloads;
        t.exports_added += s.exports_added;
        t.bytes_served += s.bytes_served;
    }
}

fn table(entity: &str) -> String {
    schema::find(entity).unwrap().table.clone()
}

fn strings(array: &ArrayRef) -> Vec<Option<String>> {
    let utf8 = arrow::compute::cast(array, &DataType::Utf8).unwrap();
    utf8.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

/// `Id`s by `_export_id` of every row visible in `<out>/<table>`, or a description of why
/// they could not be read.
fn visible_rows(out: &Path, table: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut by_export: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in parquet_files(&out.join(table)) {
        let file = std::fs::File::open(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| format!("{}: {e}", f.display()))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{}: {e}", f.display()))?;
            let (Some(ids), Some(exports)) = (
                batch.column_by_name("Id"),
                batch.column_by_name(LINEAGE_EXPORT_ID),
            ) else {
                return Err(format!("{}: no Id or _export_id column", f.display()));
            };
            for (id, export) in strings(ids).into_iter().zip(strings(exports)) {
                let (Some(id), Some(export)) = (id, export) else {
                    return Err(format!("{}: null Id or _export_id", f.display()));
                };
                by_export.entry(export).or_default().push(id);
            }
        }
    }
    Ok(by_export)
}

/// Checks that `<out>/<table>` of `entity` is absent or holds exactly the rows of a few
/// exports, each export's once, each with one load manifest that agrees: one export, or for
/// ledger entries one per default posting month (two). Returns the exports it holds.
fn check_table(mock: &MockServer, out: &Path, entity: &str) -> Result<BTreeSet<String>, String> {
    let link = out.join(table(entity));
    if std::fs::symlink_metadata(&link).is_err() {
        return Ok(BTreeSet::new());
    }
    let by_export = visible_rows(out, &table(entity))?;
    let most = if entity == "LedgerEntry" { 2 } else { 1 };
    if by_export.len() > most {
        let counts: Vec<_> = by_export.iter().map(|(e, ids)| (e, ids.len())).collect();
        return Err(format!(
            "{entity}: visible rows come from {} exports (at most {most} expected): {counts:?}",
            by_export.len()
        ));
    }
    let mut rows = BTreeMap::new();
    for (export_id, mut got) in by_export {
        let mut expected = mock
            .expected_ids(&export_id)
            .ok_or_else(|| format!("{entity}: rows of export {export_id}, unknown to the mock"))?;
        got.sort();
        expected.sort();
        if got != expected {
            let exp: BTreeSet<&String> = expected.iter().collect();
            let have: BTreeSet<&String> = got.iter().collect();
            return Err(format!(
                "{entity}: export {export_id} has {} rows, the table {} ({} duplicated, {} missing, {} foreign)",
                expected.len(),
                got.len(),
                got.len() - have.len(),
                exp.difference(&have).count(),
                have.difference(&exp).count()
            ));
        }
        rows.insert(export_id, got.len() as u64);
    }
    // The version's manifests agree: one load per export, counting its rows.
    let loads = common::in_loads(out, &table(entity), "");
    let manifests: Vec<PathBuf> = std::fs::read_dir(&loads)
        .map_err(|e| format!("{}: {e}", loads.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    if manifests.len() != rows.len() {
        return Err(format!(
            "{entity}: {} manifests in {}, for {} exports",
            manifests.len(),
            loads.display(),
            rows.len()
        ));
    }
    for manifest in &manifests {
        let m: LoadManifest = std::fs::read(manifest)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        if rows.get(&m.export_id) != Some(&m.file_rows()) || m.counts.rejected != 0 {
            return Err(format!(
                "{entity}: manifest {} says export {} with {} rows ({} rejected); the table holds {rows:?}",
                manifest.display(),
                m.export_id,
                m.file_rows(),
                m.counts.rejected,
            ));
        }
    }
    Ok(rows.into_keys().collect())
}

/// Files left behind by a process that ended by itself: anything in staging, a version or
/// link still being built, a temporary file inside a visible table.
fn leftovers(out: &Path, entities: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let state = out.join(".mews-etl");
    for f in walk(&state.join("staging")) {
        if f.is_file() {
            found.push(format!("staging file {}", f.display()));
        }
    }
    // Everything under the output directory, `.mews-etl/` included (a state file save or a
    // version build cut short).
    {
        for f in walk(out) {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.contains(".tmp")) {
                found.push(format!("temporary {}", f.display()));
            }
        }
    }
    for e in entities {
        for f in walk(&out.join(table(e)).join(".")) {
            if f.extension().is_some_and(|x| x == "tmp") {
                found.push(format!(
                    "temporary file in a visible table: {}",
                    f.display()
                ));
            }
        }
    }
    found
}

/// Every path under `dir` (symlinks listed, not followed; `dir` itself may be a link).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// `mews-etl run` against the mock, output to files in `dir` (read on failure).
fn command(mock: &MockServer, plan: &Plan, dir: &Path, n: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mews-etl"));
    for var in ["MEWS_PLATFORM_URL", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.arg("run")
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--platform-url")
        .arg(mock.base_url())
        .args(["--poll-interval", "50ms", "--compression", "snappy"]);
    for e in &plan.entities {
        cmd.args(["--entity", e]);
    }
    cmd.args(&plan.flags);
    cmd.env("MEWS_CLIENT_TOKEN", &plan.config.client_token)
        .env("MEWS_ACCESS_TOKEN", &plan.config.access_token)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{n}.stdout"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{n}.stderr"))).unwrap());
    cmd
}

/// How one process ended.
enum End {
    Killed,
    Exited(Option<i32>),
}

/// Runs one process to its end, killing it after `kill_after` if given, and moving the
/// mock's clock once bytes flow if `expire` says so.
async fn run_process(
    mut child: Child,
    mock: &MockServer,
    kill_after: Option<Duration>,
    expire: &mut Option<Duration>,
    tally: &mut Tally,
) -> End {
    let started = Instant::now();
    let mut first_bytes: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return End::Exited(status.code());
        }
        if first_bytes.is_none() && mock.stats().bytes_served > 0 {
            first_bytes = Some(Instant::now());
        }
        if let (Some(after), Some(t)) = (*expire, first_bytes) {
            if t.elapsed() >= after {
                mock.advance_clock(Duration::from_secs(11 * 60));
                tally.url_expiries += 1;
                *expire = None;
            }
        }
        if kill_after.is_some_and(|k| started.elapsed() >= k) {
            let _ = child.kill();
            let status = child.wait().unwrap();
            return match status.code() {
                // It ended by itself just before the signal.
                Some(code) => End::Exited(Some(code)),
                None => End::Killed,
            };
        }
        if started.elapsed() > PROCESS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return End::Exited(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One soak run; returns problems found (empty = fine).
async fn soak_run(i: u32, plan: Plan, tally: &mut Tally) -> Vec<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mock = MockServer::start(plan.config.clone(), addr).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut problems = Vec::new();
    let mut expire = plan.expire_urls_after;
    let mut kills = plan.kills.clone().into_iter();
    let mut n = 0;
    let mut history = String::new();
    let mut killed_any = false;
    let final_code = loop {
        n += 1;
        tally.processes += 1;
        let kill_after = kills.next();
        let child = command(&mock, &plan, dir.path(), n).spawn().unwrap();
        let end = run_process(child, &mock, kill_after, &mut expire, tally).await;
        for e in &plan.entities {
            if let Err(p) = check_table(&mock, &out, e) {
                problems.push(format!("after process {n}: {p}"));
            }
        }
        match end {
            End::Killed => {
                killed_any = true;
                tally.kills += 1;
                let _ = write!(history, " killed@{:?}", kill_after.unwrap_or_default());
            }
            End::Exited(code) => {
                if kill_after.is_some() {
                    tally.kills_missed += 1;
                }
                let _ = write!(history, " exit {code:?}");
                break code;
            }
        }
    };
    let stderr =
        std::fs::read_to_string(dir.path().join(format!("{n}.stderr"))).unwrap_or_default();
    let stdout =
        std::fs::read_to_string(dir.path().join(format!("{n}.stdout"))).unwrap_or_default();
    // A kill after `exports/add` reached the server but before its answer was recorded
    // leaves an export no run knows the id of (the API does not name it in its refusal);
    // the rerun must then stop with the documented conflict status, not guess.
    let orphaned = killed_any && final_code == Some(CONFLICT);
    if orphaned {
        tally.orphaned += 1;
        if !stderr.contains("has no record of") {
            problems.push("exit 8 without saying why".into());
        }
    }
    let acceptable =
        final_code == Some(0) || (plan.may_fail && final_code == Some(FAILED_ENTITY)) || orphaned;
    if !acceptable {
        problems.push(format!("exit {final_code:?}"));
    }
    if stderr.contains("panicked") {
        problems.push("panicked".into());
    }
    if final_code == Some(0) {
        match RunState::load(&out.join(".mews-etl").join("state.json")) {
            Err(e) => problems.push(format!("state file: {e}")),
            Ok(state) => {
                for e in &plan.entities {
                    let jobs: Vec<_> = state.jobs.values().filter(|j| j.entity == *e).collect();
                    let shown = check_table(&mock, &out, e).ok();
                    let named: BTreeSet<String> =
                        jobs.iter().map(|j| j.export_id.clone()).collect();
                    let all_committed = !jobs.is_empty() && jobs.iter().all(|j| j.committed);
                    if !all_committed || shown.as_ref() != Some(&named) {
                        problems.push(format!(
                            "{e}: exit 0 but the table holds {shown:?} and the state says {jobs:?}"
                        ));
                    }
                }
            }
        }
    }
    if final_code.is_some() {
        for l in leftovers(&out, &plan.entities) {
            problems.push(l);
        }
    }
    let stats = mock.stats();
    tally.add_stats(&stats);
    mock.shutdown().await;
    tally.runs += 1;
    *tally
        .outcomes
        .entry(match final_code {
            Some(c) => format!("exit {c}"),
            None => "signal or hung".into(),
        })
        .or_default() += 1;
    let f = &plan.config.faults;
    println!(
        "run {i}: {:?} rows {} files {} gzip {} {} | 429/{:?} 5xx/{:?} reset#{:?} short#{:?} trickle {:?} expire-export {:?} fail {:?} wrong-size {:?} url-expiry {:?} |{history}",
        plan.entities,
        plan.config.rows,
        plan.config.files_per_export,
        plan.config.gzip,
        plan.flags.join(" "),
        f.rate_limit_every,
        f.server_error_every,
        f.reset_mid_body,
        f.short_body,
        f.trickle.map(|(b, d)| (b, d.as_millis())),
        f.expire_entity_once,
        f.fail_entity,
        f.wrong_size_entity,
        plan.expire_urls_after.map(|d| d.as_millis()),
    );
    if !problems.is_empty() {
        problems.push(format!(
            "last process's stdout:\n{stdout}\nstderr:\n{}",
            stderr
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    problems
        .into_iter()
        .map(|p| format!("run {i} ({:?}): {p}", plan.entities))
        .collect()
}

fn env_number(var: &str) -> Option<u64> {
    let v = std::env::var(var).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={v:?}: {e}")),
    )
}

// More workers than runs at a time: table checks read Parquet on a worker thread, and the
// mocks must keep serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of many runs; CI runs it explicitly with a bounded count"]
async fn chaos_soak() {
    let seed = env_number("MEWS_ETL_SOAK_SEED").unwrap_or_else(|| fastrand::u64(..));
    let runs = env_number("MEWS_ETL_SOAK_RUNS").map_or(DEFAULT_RUNS, |n| n as u32);
    println!("chaos soak: {runs} runs, seed {seed} (MEWS_ETL_SOAK_SEED={seed} replays it)");
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let parallel =
        env_number("MEWS_ETL_SOAK_PARALLEL").map_or(DEFAULT_PARALLEL, |n| n.max(1) as usize);
    // Plans are drawn up front, in order, so a seed replays the same faults whatever the
    // parallelism; only the timing of kills relative to progress varies.
    let plans: Vec<Plan> = (0..runs).map(|_| draw_plan(&mut rng)).collect();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut handles = Vec::new();
    for (i, plan) in (1..).zip(plans) {
        let slots = std::sync::Arc::clone(&slots);
        handles.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let mut tally = Tally::default();
            let problems = soak_run(i, plan, &mut tally).await;
            (problems, tally)
        }));
    }
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    for h in handles {
        let (p, t) = h.await.unwrap();
        problems.extend(p);
        tally.merge(&t);
    }
    let f = &tally.faults;
    println!(
        "chaos soak tally (seed {seed}, {:.1} s): {} runs, {} processes, {} killed (+{} kills missed: already ended), {} URL expiries\n\
         faults injected: {} 429s, {} 5xx, {} resets mid-body, {} short bodies, {} trickled downloads, {} exports Expired, {} exports Failed, {} downloads refused (403/expired URL)\n\
         traffic: {} exports added, {} downloads ({} ranged), {} bytes\n\
         outcomes: {:?} ({} of the exit-8s: an export orphaned by a kill during exports/add)",
        started.elapsed().as_secs_f64(),
        tally.runs,
        tally.processes,
        tally.kills,
        tally.kills_missed,
        tally.url_expiries,
        f.rate_limited,
        f.server_errors,
        f.resets,
        f.short_bodies,
        f.trickled,
        f.expired_exports,
        f.failed_exports,
        f.forbidden,
        f.exports_added,
        f.downloads,
        f.range_downloads,
        f.bytes_served,
        tally.outcomes,
        tally.orphaned,
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
