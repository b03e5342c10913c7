//! One export from add to commit: add it (or resume the one the state file names), wait for
//! a final status, download and load its files as one load, and record the commit.

use super::poll::{Poller, WaitError};
use super::state::{JobState, RunState};
use super::ExportSpec;
use crate::api::{ApiClient, ApiError};
use crate::commit::OutputDir;
use crate::config::ErrorBudget;
use crate::convert::{load, FailureSite, LoadError, LoadOutcome, LoadPlan, LoadReport, LoadSource};
use crate::download::{DownloadError, ExportFiles};
use crate::manifest::{rfc3339_utc, LoadManifest};
use crate::sink::WriterOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex;

/// New exports one job may create in one run: the first, and one more if that one expires
/// before its files are read. A second expiry means something is wrong; retrying forever
/// would only hide it.
pub const MAX_EXPORTS_PER_JOB: u32 = 2;

/// How each load of a run is decoded and written (the per-export parts come from the spec).
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Partition specification overriding the entity's default, if any.
    pub partition_by: Option<String>,
    /// Parquet settings.
    pub writer: WriterOptions,
    /// Rejected lines allowed per load.
    pub budget: ErrorBudget,
    /// Longest line accepted.
    pub max_line_bytes: usize,
    /// Line batch size.
    pub batch_bytes: usize,
    /// Files of one export read at the same time.
    pub parallel_sources: usize,
    /// Threads decoding the lines of one load.
    pub decode_threads: usize,
}

/// Everything the jobs of a run share.
pub struct RunContext {
    /// The API client (its limiter is shared by every job).
    pub client: ApiClient,
    /// The output directory (locked for the run).
    pub out: Arc<OutputDir>,
    /// The shared status poll.
    pub poller: Poller,
    /// The run state and where it is saved.
    pub state: Arc<Mutex<RunState>>,
    /// The state file.
    pub state_path: PathBuf,
    /// Load settings.
    pub load: LoadSettings,
    /// Longest wait for one export to finish.
    pub timeout: Duration,
    /// Where each job's state is shown.
    pub progress: crate::progress::RunProgress,
    /// Whether the credentials were accepted yet, and the refusal if they were not: the
    /// first `exports/add` of a run goes alone, so a wrong token costs one refused request,
    /// not one per entity type.
    pub credentials: Mutex<Credentials>,
    /// Exports downloaded and loaded at the same time (`--concurrency`): each takes a
    /// decoder and a writer thread per file in flight, so this bounds CPU and memory.
    pub load_slots: Arc<tokio::sync::Semaphore>,
    /// Set once the state file could not be saved: no job adds an export after that, as
    /// nothing would record it for a later run to resume.
    pub state_unsaved: std::sync::atomic::AtomicBool,
}

/// What the run knows of its credentials.
#[derive(Debug, Default)]
pub enum Credentials {
    /// No `exports/add` has answered yet.
    #[default]
    Unproven,
    /// The API accepted them.
    Accepted,
    /// The API refused them (401; a 403 is a refusal of one request, by the reference's
    /// business rules, and says nothing of the tokens), with its message.
    Refused(String),
}

/// How a job ended.
#[derive(Debug)]
pub enum JobOutcome {
    /// Its load committed.
    Committed(Box<LoadReport>),
    /// A previous run had already committed this export (it crashed before recording it).
    AlreadyLoaded {
        /// The load's manifest.
        manifest: Box<LoadManifest>,
        /// The table version that shows it.
        version: Option<u64>,
    },
    /// More lines were rejected than the budget allows; nothing committed. A rerun with a
    /// larger budget resumes the same export.
    OverBudget(Box<LoadReport>),
    /// An export of this entity type that the state file does not know is pending or
    /// processing: another client's, or one a killed run added but did not live to record
    /// (the API's refusal does not say which export it is, so it cannot be resumed).
    Conflict {
        /// The API's message.
        reason: String,
    },
    /// The job failed; other jobs go on.
    Failed {
        /// The export, if one was created or resumed.
        export_id: Option<String>,
        /// Why.
        reason: String,
        /// What the failure concerns.
        kind: FailureKind,
    },
}

/// What a failed job's failure concerns, which decides the run's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The run as asked cannot succeed: a flag, tokens the API refuses (401), or a request
    /// it refuses as made (another 4xx): a person must change the command first.
    Usage,
    /// The API, the export or its files: a later run may well succeed.
    Remote,
    /// The output directory (its files, the run's state file, a table's layout): a person
    /// must look before a rerun can succeed.
    Output,
    /// A check that only a defect fails (counts that do not reconcile).
    Internal,
}

impl FailureKind {
    /// The kind of a load's failure.
    fn of(error: &LoadError) -> FailureKind {
        match error.site() {
            FailureSite::Input => FailureKind::Remote,
            FailureSite::Usage | FailureSite::Locked | FailureSite::Output => FailureKind::Output,
            FailureSite::Internal => FailureKind::Internal,
        }
    }
}

/// A finished job, for the summary.
#[derive(Debug)]
pub struct JobResult {
    /// The entity type.
    pub entity: String,
    /// The job's key (entity, scope, filters).
    pub key: String,
    /// How it ended.
    pub outcome: JobOutcome,
    /// Wall time, waiting included.
    pub elapsed: Duration,
}

impl JobResult {
    /// Whether the job's rows are in the table.
    pub fn is_committed(&self) -> bool {
        matches!(
            self.outcome,
            JobOutcome::Committed(_) | JobOutcome::AlreadyLoaded { .. }
        )
    }
}

/// Whether a 400 from `exports/add` says an export is already running (the API rejects a
/// second export of an entity type while one is Pending or Processing).
fn is_already_running(e: &ApiError) -> bool {
    if e.status() != Some(400) {
        return false;
    }
    let text = e.to_string().to_ascii_lowercase();
    ["already", "pending", "processing", "in progress"]
        .iter()
        .any(|w| text.contains(w))
}

/// Whether the API refused `exports/add` as asked: the tokens (401), or the request (any
/// other 4xx but a timeout, a conflict to resubmit, or a rate limit, which the client has
/// retried already). Asking again the same way gets the same answer.
fn is_refused(e: &ApiError) -> bool {
    matches!(e.status(), Some(status) if (400..500).contains(&status) && ![408, 409, 429].contains(&status))
}

/// A job of an earlier run that no table holds the rows of, and that this run does not ask
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnloadedJob {
    /// The job's key (entity, scope and window).
    pub key: String,
    /// The entity type.
    pub entity: String,
    /// What the state file knows of it.
    pub known: Unloaded,
    /// The export of an earlier run of the same job whose load the table still shows: the
    /// window is there, without what changed since.
    pub earlier: Option<String>,
}

/// What the state file knows of an [`UnloadedJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unloaded {
    /// Its export was added and never loaded; a run of its window resumes it while the API
    /// keeps it.
    Export(JobState),
    /// A run asked for it at that time, and no export of it is left to resume: one ended
    /// `Failed`, or none was added (refused, another export pending, the run stopped first).
    NoExport {
        /// When a run first asked for it (RFC 3339 UTC).
        first_asked_utc: String,
    },
}

/// The jobs of earlier runs that `specs` do not ask for and whose rows no table holds: a
/// window that timed out, failed or was killed, followed by runs of other windows (a daily
/// schedule), would otherwise be left out without a word. An export whose load a table
/// shows (committed, but not recorded: a crash, or a state file that could not be saved)
/// is not one of them.
///
/// `root` is the output directory, only read.
pub fn unloaded_jobs(
    state: &RunState,
    specs: &[ExportSpec],
    root: &std::path::Path,
) -> Vec<UnloadedJob> {
    let asked: std::collections::HashSet<String> = specs.iter().map(ExportSpec::key).collect();
    // An unreadable table cannot tell: the job is named rather than passed over.
    let loads = |entity: &str| {
        crate::schema::find(entity)
            .and_then(|schema| crate::commit::loads_at(root, &schema.table).ok())
            .unwrap_or_default()
    };
    let keys: std::collections::BTreeSet<&String> =
        state.jobs.keys().chain(state.not_loaded.keys()).collect();
    keys.into_iter()
        .filter(|key| !asked.contains(*key) && state.is_unloaded(key))
        .filter_map(|key| {
            let (entity, known) = match (state.jobs.get(key), state.not_loaded.get(key)) {
                (Some(job), _) if !job.committed => {
                    (job.entity.clone(), Unloaded::Export(job.clone()))
                }
                (_, Some(asked)) => (
                    asked.entity.clone(),
                    Unloaded::NoExport {
                        first_asked_utc: asked.first_asked_utc.clone(),
                    },
                ),
                _ => return None,
            };
            let loads = loads(&entity);
            if let Unloaded::Export(job) = &known {
                if loads.iter().any(|m| m.export_id == job.export_id) {
                    return None;
                }
            }
            let load_id = super::load_id_of_key(key);
            let earlier = loads
                .into_iter()
                .find(|m| m.load_id == load_id)
                .map(|m| m.export_id);
            Some(UnloadedJob {
                key: key.clone(),
                entity,
                known,
                earlier,
            })
        })
        .collect()
}

/// Forgets the export recorded for the job `key`, so that the next turn of its loop (or the
/// next run) adds a new one.
async fn forget_export(ctx: &RunContext, key: &str) -> Result<(), String> {
    update_state(ctx, |s| {
        s.jobs.remove(key);
    })
    .await
}

async fn update_state(ctx: &RunContext, f: impl FnOnce(&mut RunState)) -> Result<(), String> {
    let mut state = ctx.state.lock().await;
    f(&mut state);
    state.save(&ctx.state_path).map_err(|e| {
        ctx.state_unsaved
            .store(true, std::sync::atomic::Ordering::Relaxed);
        e.to_string()
    })
}

/// Runs one export job to its end.
pub async fn run_job(ctx: &RunContext, spec: &ExportSpec) -> JobResult {
    let started = Instant::now();
    let key = spec.key();
    ctx.progress.set_state(&spec.schema.entity, "adding", None);
    let outcome = drive(ctx, spec, &key).await;
    let state = match &outcome {
        JobOutcome::Committed(_) | JobOutcome::AlreadyLoaded { .. } => "committed",
        JobOutcome::OverBudget(_) => "over budget",
        JobOutcome::Conflict { .. } => "conflict",
        JobOutcome::Failed { .. } => "failed",
    };
    ctx.progress.set_state(&spec.schema.entity, state, None);
    JobResult {
        entity: spec.schema.entity.clone(),
        key,
        outcome,
        elapsed: started.elapsed(),
    }
}

async fn drive(ctx: &RunContext, spec: &ExportSpec, key: &str) -> JobOutcome {
    let entity = &spec.schema.entity;
    let failed = |export_id: Option<&str>, reason: String| JobOutcome::Failed {
        export_id: export_id.map(str::to_owned),
        reason,
        kind: FailureKind::Remote,
    };
    let usage_failed = |export_id: Option<&str>, reason: String| JobOutcome::Failed {
        export_id: export_id.map(str::to_owned),
        reason,
        kind: FailureKind::Usage,
    };
    let output_failed = |export_id: Option<&str>, reason: String| JobOutcome::Failed {
        export_id: export_id.map(str::to_owned),
        reason,
        kind: FailureKind::Output,
    };
    let partition = match spec
        .schema
        .partition_spec_or_default(ctx.load.partition_by.as_deref())
    {
        Ok(p) => p,
        Err(e) => return usage_failed(None, format!("--partition-by: {e}")),
    };
    // A table this load cannot join fails before an export is added and waited for.
    let table = &spec.schema.table;
    if let Err(e) = crate::commit::check_layout(
        ctx.out.root(),
        table,
        spec.mode,
        &spec.load_id(),
        &partition.to_string(),
        &spec.schema.fingerprint(),
    ) {
        return output_failed(None, format!("not attempted: {e}"));
    }
    let mut created = 0;
    loop {
        let resumable = {
            let state = ctx.state.lock().await;
            state.resumable(key).map(|j| j.export_id.clone())
        };
        let resumed = resumable.is_some();
        let export_id = match resumable {
            Some(id) => {
                tracing::info!(entity = %entity, export_id = %id, "resuming the export a previous run started");
                id
            }
            None => {
                if created >= MAX_EXPORTS_PER_JOB {
                    return failed(
                        None,
                        format!("{created} exports expired or disappeared before their files could be read"),
                    );
                }
                if ctx.state_unsaved.load(std::sync::atomic::Ordering::Relaxed) {
                    return output_failed(
                        None,
                        "not attempted: the run's state file could not be saved, so nothing would record a new export for a later run to resume".into(),
                    );
                }
                let added = {
                    let mut credentials = ctx.credentials.lock().await;
                    if let Credentials::Refused(reason) = &*credentials {
                        return usage_failed(None, format!("not attempted: {reason}"));
                    }
                    // Until one add has answered, hold the lock across it, so the other jobs
                    // wait for the verdict instead of each sending a request with bad tokens.
                    let unproven = matches!(*credentials, Credentials::Unproven);
                    if !unproven {
                        drop(credentials);
                        ctx.client
                            .add_export(entity, spec.scope.clone(), spec.filters.clone())
                            .await
                    } else {
                        let r = ctx
                            .client
                            .add_export(entity, spec.scope.clone(), spec.filters.clone())
                            .await;
                        *credentials = match &r {
                            Err(e) if e.status() == Some(401) => {
                                Credentials::Refused(e.to_string())
                            }
                            Err(_) => Credentials::Unproven,
                            Ok(_) => Credentials::Accepted,
                        };
                        r
                    }
                };
                match added {
                    Ok(export) => {
                        created += 1;
                        tracing::info!(entity = %entity, export_id = %export.id, "export added");
                        let job = JobState {
                            entity: entity.clone(),
                            export_id: export.id.clone(),
                            created_utc: rfc3339_utc(SystemTime::now()),
                            committed: false,
                            version: None,
                        };
                        // Recorded before waiting, so a crash from here on resumes this export.
                        if let Err(e) = update_state(ctx, |s| {
                            s.jobs.insert(key.to_owned(), job);
                        })
                        .await
                        {
                            return output_failed(
                                Some(&export.id),
                                format!("export {} was added but could not be recorded ({e}); it ends on its own, and the API refuses another export of {entity} until then", export.id),
                            );
                        }
                        export.id
                    }
                    Err(e) if is_already_running(&e) => {
                        // The state file may know it under another key: a window or scope
                        // this run was not asked for.
                        let recorded: Vec<(String, String)> = {
                            let state = ctx.state.lock().await;
                            state
                                .jobs
                                .iter()
                                .filter(|(k, j)| {
                                    &j.entity == entity && !j.committed && k.as_str() != key
                                })
                                .map(|(k, j)| (k.clone(), j.export_id.clone()))
                                .collect()
                        };
                        let reason = match recorded.first() {
                            Some((other, id)) if super::legacy_ledger_month(other).is_some() => format!(
                                "an export of {entity} is pending or processing ({e}); this output directory recorded export {id} for an update window of an earlier release ({other}), which no run asks for any more: wait for it to end (exports end on their own)"
                            ),
                            Some((other, id)) => format!(
                                "an export of {entity} is pending or processing ({e}); this output directory recorded export {id} for another window or scope ({other}) and has not loaded it: if that is the one, run that window again to load it; otherwise, or meanwhile, wait for it to end (exports end on their own)"
                            ),
                            None => format!(
                                "an export of {entity} that this output directory has no record of is pending or processing ({e}): another client started it, or a run here was killed between adding it and recording it; wait for it to finish (exports end on their own), or run with the --out that started it"
                            ),
                        };
                        return JobOutcome::Conflict { reason };
                    }
                    Err(e) if is_refused(&e) => return usage_failed(None, e.to_string()),
                    Err(e) => return failed(None, e.to_string()),
                }
            }
        };
        let load_id = spec.load_id();
        ctx.progress
            .set_state(entity, "exporting", Some(&export_id));
        // The same month's update windows loaded by an earlier release hold its entries
        // again: this load takes their place, and their records go with them.
        let legacy: Vec<String> = {
            let state = ctx.state.lock().await;
            state
                .jobs
                .keys()
                .chain(state.not_loaded.keys())
                .filter(|k| spec.replaces_key(k))
                .cloned()
                .collect()
        };
        let forget_legacy = |s: &mut RunState| {
            for k in &legacy {
                s.jobs.remove(k);
                s.not_loaded.remove(k);
            }
        };

        // A crash between commit and the state update leaves a committed load that the
        // state does not know of: finish the bookkeeping instead of loading it again.
        if let Ok(loads) = ctx.out.current_loads(&spec.schema.table) {
            if let Some(m) = loads.into_iter().find(|m| m.export_id == export_id) {
                let version = ctx.out.current_version(&spec.schema.table).ok().flatten();
                let r = update_state(ctx, |s| {
                    s.loaded(key, version);
                    forget_legacy(s);
                })
                .await;
                if let Err(e) = r {
                    // The table is right; only the bookkeeping lags, and the next run
                    // recognises the load by its manifest again.
                    tracing::warn!(entity = %entity, export_id = %export_id, error = %e, "the load is committed, but the run's state file could not record it");
                }
                return JobOutcome::AlreadyLoaded {
                    manifest: Box::new(m),
                    version,
                };
            }
        }

        let export = match tokio::time::timeout(ctx.timeout, ctx.poller.wait_final(&export_id))
            .await
        {
            Ok(Ok(e)) => e,
            Ok(Err(WaitError::NotListed(_))) => {
                // Gone: purged by the API, or added by a server that has since stopped
                // (each `--demo` run starts a new one). Nothing of it was loaded (that
                // was checked above), so a new export of the same window replaces it;
                // waiting for this one again would fail every later run the same way.
                tracing::warn!(entity = %entity, export_id = %export_id, "exports/getAll no longer lists the export; starting a new one");
                if let Err(e) = forget_export(ctx, key).await {
                    return output_failed(Some(&export_id), e);
                }
                continue;
            }
            // Tokens refused while resuming an export: a person must mend them.
            Ok(Err(
                e @ WaitError::Poll {
                    status: Some(401), ..
                },
            )) => return usage_failed(Some(&export_id), e.to_string()),
            Ok(Err(e)) => return failed(Some(&export_id), e.to_string()),
            Err(_) => {
                return failed(
                    Some(&export_id),
                    format!(
                        "still not finished after {:?}; a rerun resumes it",
                        ctx.timeout
                    ),
                )
            }
        };
        match export.status {
            crate::api::ExportStatus::Success => {
                // A window whose end was left to its default is resumed as the earlier run
                // asked for it: the rows updated since its end come with the next run, whose
                // export of the window replaces this load.
                if let Some(asked) = export.filters.as_ref().filter(|_| resumed) {
                    let (was, now) = (super::filters_text(Some(asked)), spec.filters_text());
                    if was != now {
                        tracing::warn!(entity = %entity, export_id = %export_id, resumed = %was.trim(), planned = %now.trim(), "loading the export a previous run started, for its window; rows updated after its end arrive with the next run");
                    }
                }
            }
            crate::api::ExportStatus::Expired => {
                tracing::warn!(entity = %entity, export_id = %export_id, "export expired before it was read; starting a new one");
                if let Err(e) = forget_export(ctx, key).await {
                    return output_failed(Some(&export_id), e);
                }
                continue;
            }
            status => {
                // Failed: the next run starts a new export rather than resuming this one.
                let _ = forget_export(ctx, key).await;
                return failed(
                    Some(&export_id),
                    format!("export ended with status {status}"),
                );
            }
        }

        // By load id, which follows from the key whichever export loaded it; by name too,
        // for a load whose key the state file no longer holds.
        let legacy_ids: Vec<String> = legacy.iter().map(|k| super::load_id_of_key(k)).collect();
        let replaces: Vec<String> = if spec.ledger_month().is_some() {
            ctx.out
                .current_loads(&spec.schema.table)
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.load_id)
                .filter(|id| legacy_ids.contains(id) || spec.replaces_load(id))
                .collect()
        } else {
            Vec::new()
        };
        let plan = LoadPlan {
            replaces,
            schema: spec.schema,
            load_id,
            export_id: export_id.clone(),
            mode: spec.mode,
            partition: partition.clone(),
            writer: ctx.load.writer.clone(),
            budget: ctx.load.budget,
            max_line_bytes: ctx.load.max_line_bytes,
            batch_bytes: ctx.load.batch_bytes,
            parallel_sources: ctx.load.parallel_sources,
            decode_threads: ctx.load.decode_threads,
            progress: Default::default(),
        };
        ctx.progress.set_load(entity, plan.progress.clone());
        let files = ExportFiles::new(ctx.client.clone(), &export);
        let sources = (0..export.files.len())
            .map(|index| LoadSource::Remote {
                files: files.clone(),
                index,
            })
            .collect();
        ctx.progress.set_state(entity, "queued", Some(&export_id));
        let permit = ctx.load_slots.acquire().await;
        ctx.progress.set_state(entity, "loading", None);
        let loaded = load(&ctx.out, &plan, sources).await;
        drop(permit);
        match loaded {
            Ok(report) => match report.outcome {
                LoadOutcome::Committed { version } => {
                    crate::crash::point("before-state-update");
                    let r = if crate::crash::fails("state-update") {
                        ctx.state_unsaved
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        Err(format!(
                            "{}=state-update: failing on purpose (test hook)",
                            crate::crash::FAIL_AT_VAR
                        ))
                    } else {
                        update_state(ctx, |s| {
                            s.loaded(key, Some(version));
                            forget_legacy(s);
                        })
                        .await
                    };
                    crate::crash::point("after-state-update");
                    if let Err(e) = r {
                        // Committed all the same: the next run finds the load by its
                        // manifest and records it then (its first save fails the run
                        // first, exit 4, if the state file is still unwritable).
                        tracing::warn!(entity = %entity, export_id = %export_id, error = %e, "the load is committed, but the run's state file could not record it");
                    }
                    return JobOutcome::Committed(Box::new(report));
                }
                LoadOutcome::OverBudget => return JobOutcome::OverBudget(Box::new(report)),
            },
            Err(LoadError::Download(d)) if matches!(*d, DownloadError::Expired { .. }) => {
                tracing::warn!(entity = %entity, export_id = %export_id, "export expired while downloading; starting a new one");
                if let Err(e) = forget_export(ctx, key).await {
                    return output_failed(Some(&export_id), e);
                }
            }
            Err(e) => {
                return JobOutcome::Failed {
                    export_id: Some(export_id),
                    reason: e.to_string(),
                    kind: FailureKind::of(&e),
                }
            }
        }
    }
}
