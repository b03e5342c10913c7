//! One load end to end: sources → framing → decoding → Parquet in staging → commit.
//!
//! ```text
//!  async task per source   bounded(JOB_QUEUE)   decoder threads    bounded(BATCH_QUEUE)   writer thread
//!  open + decompress ───── numbered ─────────▶  RecordDecoder ──── DecodedBatch ───────▶  reorder by number
//!  + frame into batches    LineBatch           (any batch of        (out of order)        PartitionedWriter
//!                                               any source)                               (columns encoded on
//!                                                                                          several threads)
//! ```
//!
//! Reading and decompression stay on the async runtime; decoding and Parquet encoding run
//! on blocking threads, so the stages overlap. Every line batch is numbered within its
//! source and any decoder thread may take it, so even a single large file is decoded on
//! every core; the writer puts each source's batches back in order before writing, so a
//! source's rows keep their order whatever the timing. Sources are read one after another
//! unless the decoders run short of lines (`read_in_turn`); two read at once interleave
//! their rows as they come. Every
//! queue is bounded, so memory is bounded by the queue capacities times the batch size,
//! whatever the size of the input.
//!
//! Nothing becomes visible until [`OutputDir::commit`]: a load that fails, or that rejects
//! more lines than its [`ErrorBudget`] allows, leaves the table as it was. A load's rejected
//! lines share its fate: committed with it, or kept apart for diagnosis when it is refused
//! (see [`crate::quarantine`]).

use crate::commit::{distinct_load_id, rejections_name, rejections_path, CommitError, OutputDir};
use crate::config::ErrorBudget;
use crate::decode::{identify, DecodedBatch, RecordDecoder};
use crate::download::{self, ExportFiles};
use crate::framing::{BatchPool, LineBatch};
use crate::grouping::LineGrouper;
use crate::input::{self, Compression, FrameTotals, InputError, Source};
use crate::manifest::{
    rfc3339_utc, LoadCounts, LoadManifest, SourceSummary, WriteMode, MANIFEST_FORMAT_VERSION,
};
use crate::progress::LoadProgress;
use crate::quarantine::{self, QuarantineWriter};
use crate::schema::{EntitySchema, PartitionSpec};
use crate::sink::{PartitionedWriter, SinkError, WriterOptions, WrittenFile};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Line batches framed ahead of the decoders, per source. With 1 MiB batches this holds a
/// few MiB: enough to absorb read jitter, small enough to keep memory flat.
pub const LINE_QUEUE: usize = 2;

/// Numbered line batches waiting for a decoder thread, all sources together, per decoder
/// thread.
pub const JOB_QUEUE_PER_DECODER: usize = 2;

/// Decoded batches in flight between the decoders and the Parquet writer, per decoder
/// thread (each roughly the size of one line batch in Arrow form).
pub const BATCH_QUEUE_PER_DECODER: usize = 2;

/// Line batches a load holds between framing and writing, per decoder thread: queued for a
/// decoder, being decoded, queued for the writer, or held by the writer until an earlier
/// batch of their source is written. The queues alone do not bound the last: while one
/// decoder is slow on a batch (a line of tens of MiB, a thread descheduled), the others
/// go on, and the writer keeps what they decode until that batch's turn. A batch is framed
/// only once fewer than this many are held, so memory stays bounded whatever the timing.
pub const IN_FLIGHT_PER_DECODER: usize = JOB_QUEUE_PER_DECODER + BATCH_QUEUE_PER_DECODER + 2;

/// Most sources of one load read at the same time (see `read_in_turn`): one per core of
/// the machines this runs on (two), so that slow downloads still keep both busy.
pub const DEFAULT_PARALLEL_SOURCES: usize = 2;

/// How often the reading stage looks whether the decoders have lines waiting.
pub const STARVATION_CHECK: Duration = Duration::from_millis(50);

/// Checks in a row that must find no lines waiting before another source is opened: one
/// empty queue is the ordinary gap of a source handing over to the next.
pub const STARVED_CHECKS: u32 = 2;

/// Why a load did not complete. Data errors in single lines are not here: they are
/// rejections, counted against the error budget.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A source could not be opened, read or decompressed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A Parquet file could not be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The output directory could not be prepared or the load committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The quarantine file could not be written.
    #[error("writing quarantine file {path}: {source}")]
    Quarantine {
        /// The quarantine file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The lines read and the rows and rejects produced disagree: a bug, never committed.
    #[error("{source_name}: {detail}; nothing was committed")]
    Unbalanced {
        /// The source whose counts disagree.
        source_name: String,
        /// What disagrees.
        detail: String,
    },
    /// A file of an export could not be downloaded whole.
    #[error(transparent)]
    Download(Box<download::DownloadError>),
    /// A file's lines are records of another entity type than the one given: nothing of
    /// the load is committed.
    #[error("{source_name}: {}", wrong_entity_text(entity, mismatch))]
    WrongEntity {
        /// The file.
        source_name: String,
        /// The entity type it was loaded as.
        entity: String,
        /// What its first lines are.
        mismatch: Box<identify::Mismatch>,
    },
    /// Standard input carried nothing, and the load would replace rows with none: most
    /// likely the command feeding it failed (`curl … | mews-etl convert -`).
    #[error("stdin was empty: this load of no rows would replace the {rows} row(s) {what} holds; nothing was committed. If the export is truly empty, load it from a file")]
    EmptyStdin {
        /// What would lose its rows: a load, or the whole table (`--mode replace`).
        what: String,
        /// Rows it holds.
        rows: u64,
    },
    /// A pipeline thread stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Says which entity type a file's lines are, and why not the one given.
fn wrong_entity_text(entity: &str, m: &identify::Mismatch) -> String {
    let sample = |names: &[String]| {
        let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    let count = |n: usize, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    let read = if m.sampled == m.lines {
        format!("its first {}", count(m.lines, "line"))
    } else {
        format!(
            "the {} among its first {}",
            count(m.sampled, "record"),
            count(m.lines, "line")
        )
    };
    let mut why = Vec::new();
    if !m.missing.is_empty() {
        why.push(format!(
            "none has {entity}'s required {}",
            sample(&m.missing)
        ));
    }
    if !m.unknown.is_empty() {
        why.push(format!("{entity} has no {}", sample(&m.unknown)));
    }
    format!(
        "these are {likely} records, not {entity}: in {read}, {why}; nothing was loaded: convert it with --entity {likely}",
        likely = m.likely,
        why = why.join("; "),
    )
}

/// What to load and how.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The entity type of every source.
    pub schema: &'static EntitySchema,
    /// The load's id: re-loading the same id replaces its earlier rows.
    pub load_id: String,
    /// The export the rows came from, stamped on every row as `_export_id`.
    pub export_id: String,
    /// Append to the table, or replace it.
    pub mode: WriteMode,
    /// Directory layout of the table.
    pub partition: PartitionSpec,
    /// Parquet encoding and file bounds.
    pub writer: WriterOptions,
    /// How many rejected lines still commit.
    pub budget: ErrorBudget,
    /// Longest line accepted, in bytes.
    pub max_line_bytes: usize,
    /// Bytes of line data per batch handed to the decoder.
    pub batch_bytes: usize,
    /// Sources read at the same time.
    pub parallel_sources: usize,
    /// Threads decoding line batches (of any source) at the same time.
    pub decode_threads: usize,
    /// Live counters for progress display.
    pub progress: Arc<LoadProgress>,
    /// Other loads of the table this one takes the place of (see
    /// [`LoadManifest::replaces`]).
    pub replaces: Vec<String>,
}

/// How a load ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The load is visible in the table.
    Committed {
        /// The table version that now holds it.
        version: u64,
    },
    /// More lines were rejected than the budget allows; nothing was committed.
    OverBudget,
}

/// Where a load's failure lies, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureSite {
    /// Reading, downloading or decompressing the input.
    Input,
    /// The command line: files of another entity type than the one given.
    Usage,
    /// Another process holds the output directory.
    Locked,
    /// Writing or committing the output: its files, the commit, the quarantine.
    Output,
    /// A check that only a defect fails (counts that do not reconcile).
    Internal,
}

impl LoadError {
    /// Where the failure lies.
    pub fn site(&self) -> FailureSite {
        match self {
            LoadError::Input(_) | LoadError::Download(_) | LoadError::EmptyStdin { .. } => {
                FailureSite::Input
            }
            LoadError::WrongEntity { .. } => FailureSite::Usage,
            LoadError::Commit(CommitError::Locked { .. }) => FailureSite::Locked,
            LoadError::Sink(_) | LoadError::Commit(_) | LoadError::Quarantine { .. } => {
                FailureSite::Output
            }
            LoadError::Unbalanced { .. } | LoadError::Internal(_) => FailureSite::Internal,
        }
    }
}

/// The result of one load, for the summary.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was read, written and counted (also when nothing was committed).
    pub manifest: LoadManifest,
    /// Whether it committed.
    pub outcome: LoadOutcome,
    /// The file of rejected lines, if any line was rejected: beside the load's manifest
    /// (`.mews-etl/tables/<table>/v…/loads/<load>.rejected.jsonl`) when the load committed,
    /// in `_quarantine/<table>/<load>.jsonl` when it was refused over its budget.
    pub quarantine: Option<PathBuf>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

/// One source of a load: a local file (or stdin), or a file of a successful export.
pub enum LoadSource {
    /// A local file or stdin.
    Local(Source),
    /// File `index` of an export, downloaded as it is decoded.
    Remote {
        /// The export's file list and URL refresher.
        files: Arc<ExportFiles>,
        /// Which file.
        index: usize,
    },
}

/// Derives a load id from a source file name: the name without directories, compression
/// and JSON Lines extensions, and without the `-<n>` part suffix that splits one export
/// into several files (`3fa85f64-…-1.jsonl.gz` → `3fa85f64-…`). The suffix goes only after
/// an export id (a UUID): in any other name a trailing number is part of the name
/// (`orders-2024-06-01.jsonl` and `orders-2024-06-02.jsonl` are two loads, not one).
pub fn load_id_from_file_name(name: &str) -> String {
    let mut stem = source_stem(name);
    if let Some((head, part)) = stem.rsplit_once('-') {
        if is_uuid(head)
            && !part.is_empty()
            && part.len() <= 4
            && part.bytes().all(|b| b.is_ascii_digit())
        {
            stem = head;
        }
    }
    distinct_load_id(stem)
}

/// A source's file name without directories, compression and JSON Lines extensions:
/// `dir/export-1.jsonl.gz` is `export-1`, whatever it was compressed with.
pub fn source_stem(name: &str) -> &str {
    let mut stem = name.rsplit(['/', '\\']).next().unwrap_or(name);
    for ext in [
        ".gz", ".gzip", ".zst", ".zstd", ".jsonl", ".ndjson", ".json", ".txt",
    ] {
        if stem.len() > ext.len() && stem.to_ascii_lowercase().ends_with(ext) {
            stem = &stem[..stem.len() - ext.len()];
        }
    }
    stem
}

/// Whether `text` is a UUID in its usual spelling (`3fa85f64-5717-4562-b3fc-2c963f66afa6`),
/// as the API's export ids are.
pub(crate) fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A numbered batch of one source's lines, for any decoder thread to take.
struct Job {
    source: usize,
    seq: u64,
    name: Arc<str>,
    lines: LineBatch,
    /// Its place among the batches in flight ([`IN_FLIGHT_PER_DECODER`]), given back
    /// once the writer has written it.
    permit: OwnedSemaphorePermit,
}

/// A decoded job, on its way to the writer thread.
struct Decoded {
    source: usize,
    seq: u64,
    name: Arc<str>,
    batch: DecodedBatch,
    permit: OwnedSemaphorePermit,
}

/// What the writer thread hands back.
struct Written {
    files: Vec<WrittenFile>,
    per_source: Vec<LoadCounts>,
    /// The load's rejected lines, in its staging directory, if any.
    quarantine: Option<PathBuf>,
}

/// Runs one load of local files (or stdin) into `out`.
pub async fn load_files(
    out: &OutputDir,
    plan: &LoadPlan,
    sources: &[Source],
) -> Result<LoadReport, LoadError> {
    let sources: Vec<LoadSource> = sources.iter().cloned().map(LoadSource::Local).collect();
    load(out, plan, sources).await
}

/// Runs one load of `sources` into `out`: decodes them, writes Parquet to staging, and
/// commits if the rejected lines are within budget.
pub async fn load(
    out: &OutputDir,
    plan: &LoadPlan,
    sources: Vec<LoadSource>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    if plan.mode == WriteMode::Append {
        out.check_append(
            &plan.schema.table,
            &plan.load_id,
            &plan.partition.to_string(),
            &plan.schema.fingerprint(),
        )?;
    }
    let staging = out.new_staging_dir(&plan.schema.table, &plan.load_id)?;
    let staged_rejections = rejections_path(&staging, &plan.load_id);
    let refused_path = out.quarantine_path(&plan.schema.table, &plan.load_id);
    let result = run_pipeline(plan, &sources, staging.clone(), staged_rejections).await;
    let (written, source_info) = match result {
        Ok(v) => v,
        Err(e) => {
            // Best effort: the error that stopped the load matters more than cleanup, and
            // the next open of the output directory removes leftover staging anyway.
            let _ = out.discard(&staging);
            return Err(e);
        }
    };

    let mut counts = LoadCounts::default();
    let mut summaries = Vec::new();
    if written.per_source.len() != source_info.len() {
        let _ = out.discard(&staging);
        return Err(LoadError::Internal("a source was not decoded".into()));
    }
    let stamps = sources.iter().map(|s| match s {
        LoadSource::Local(source) => source.stamp(),
        LoadSource::Remote { .. } => None,
    });
    for ((c, (name, compression, bytes, totals)), stamp) in
        written.per_source.iter().zip(source_info).zip(stamps)
    {
        let expected_lines = totals.lines_read;
        if c.lines_read != expected_lines || !c.is_balanced() || c.blank_lines != totals.blank_lines
        {
            let _ = out.discard(&staging);
            return Err(LoadError::Unbalanced {
                source_name: name,
                detail: format!(
                    "framed {} lines ({} blank) but decoded {} (rows {}, rejected {}, blank {})",
                    totals.lines_read,
                    totals.blank_lines,
                    c.lines_read,
                    c.rows_written,
                    c.rejected,
                    c.blank_lines
                ),
            });
        }
        counts.merge(c);
        let (path, modified_unix_ns) = match stamp {
            Some(s) => (Some(s.path), s.modified_unix_ns),
            None => (None, None),
        };
        summaries.push(SourceSummary {
            name,
            path,
            modified_unix_ns,
            compression: compression.to_string(),
            bytes,
            counts: c.clone(),
        });
    }
    let file_rows: u64 = written.files.iter().map(|f| f.rows).sum();
    if file_rows != counts.rows_written {
        let _ = out.discard(&staging);
        return Err(LoadError::Unbalanced {
            source_name: plan.load_id.clone(),
            detail: format!(
                "decoded {} rows but the Parquet files hold {file_rows}",
                counts.rows_written
            ),
        });
    }
    let manifest = LoadManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        load_id: plan.load_id.clone(),
        entity: plan.schema.entity.clone(),
        table: plan.schema.table.clone(),
        export_id: plan.export_id.clone(),
        mode: plan.mode,
        partition_spec: plan.partition.to_string(),
        schema_fingerprint: plan.schema.fingerprint(),
        created_utc: rfc3339_utc(SystemTime::now()),
        sources: summaries,
        files: written.files,
        counts,
        replaces: plan.replaces.clone(),
    };
    if let Err(e) = refuse_empty_stdin(out, plan, &sources, &manifest) {
        let _ = out.discard(&staging);
        return Err(e);
    }
    let lines = manifest.counts.lines_read - manifest.counts.blank_lines;
    let (outcome, quarantine) = if plan.budget.allows(manifest.counts.rejected, lines) {
        // The rejected lines are published with the rows, by the commit itself.
        let committed = out.commit(&staging, &manifest).inspect_err(|_| {
            // Whatever step failed, the staged files are no longer wanted: the load is
            // redone from its source. Left, they would hold the space until the next run.
            let _ = out.discard(&staging);
        })?;
        quarantine::forget_refused(&refused_path);
        tracing::info!(
            entity = %manifest.entity,
            load_id = %manifest.load_id,
            export_id = %manifest.export_id,
            rows = manifest.counts.rows_written,
            rejected = manifest.counts.rejected,
            parquet_files = manifest.files.len(),
            version = committed.version,
            rows_in_table = committed.rows_in_table,
            // The load alone (download or read, decode, write, commit), without the wait
            // for an export: what compares `run` with `convert` of the same files.
            // To the millisecond: more digits are noise, and f64 would print them.
            load_seconds = started.elapsed().as_millis() as f64 / 1000.0,
            "load committed"
        );
        let outcome = LoadOutcome::Committed {
            version: committed.version,
        };
        let published = committed.loads_dir.join(rejections_name(&manifest.load_id));
        (outcome, written.quarantine.map(|_| published))
    } else {
        // Kept for diagnosis, outside the table: nothing of the load is committed.
        let kept = written
            .quarantine
            .as_ref()
            .map(|staged| quarantine::keep_refused(staged, &refused_path));
        out.discard(&staging)?;
        if let Some(Err(e)) = kept {
            return Err(LoadError::Quarantine {
                path: refused_path,
                source: e,
            });
        }
        (
            LoadOutcome::OverBudget,
            written.quarantine.map(|_| refused_path),
        )
    };
    Ok(LoadReport {
        manifest,
        outcome,
        quarantine,
        elapsed: started.elapsed(),
    })
}

/// Name, compression, bytes read (on the wire or from disk) and framing totals of a source.
type SourceInfo = (String, Compression, u64, FrameTotals);

async fn run_pipeline(
    plan: &LoadPlan,
    sources: &[LoadSource],
    staging: PathBuf,
    quarantine_path: PathBuf,
) -> Result<(Written, Vec<SourceInfo>), LoadError> {
    let parallel = plan.parallel_sources.clamp(1, sources.len().max(1));
    let threads = plan.decode_threads.max(1);
    LoadProgress::add(&plan.progress.files_total, sources.len() as u64);
    let (job_tx, job_rx) = mpsc::channel::<Job>(JOB_QUEUE_PER_DECODER * threads);
    let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
    let (decoded_tx, decoded_rx) =
        std::sync::mpsc::sync_channel::<Decoded>(BATCH_QUEUE_PER_DECODER * threads);

    // Decoded line batches go back to the framing stage to be filled again.
    let pool = BatchPool::default();
    let mut decoders = Vec::with_capacity(threads);
    for _ in 0..threads {
        let pool = pool.clone();
        let schema = plan.schema;
        let grouper = LineGrouper::new(&plan.partition);
        let export_id = plan.export_id.clone();
        let jobs = job_rx.clone();
        let out = decoded_tx.clone();
        let progress = plan.progress.clone();
        decoders.push(tokio::task::spawn_blocking(move || {
            decode_stage(schema, grouper, &export_id, &jobs, out, &progress, &pool)
        }));
    }
    // Only the decoders hold the queue's receiving end: if they all stop (the writer
    // failed, say), the reader's next send fails instead of waiting for room forever.
    drop(job_rx);
    drop(decoded_tx);

    let mut options = plan.writer.clone();
    options.plain_columns = plan.schema.unique_columns();
    let parquet = PartitionedWriter::new(
        staging,
        plan.schema.arrow_schema(),
        plan.partition.clone(),
        options,
        plan.load_id.clone(),
    )?;
    let source_count = sources.len();
    let writer = tokio::task::spawn_blocking(move || {
        write_stage(parquet, quarantine_path, decoded_rx, source_count)
    });

    let queue = job_tx.clone();
    let starved = move || queue.capacity() == queue.max_capacity();
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_DECODER * threads));
    let read = read_in_turn(sources.len(), parallel, starved, |index| {
        let jobs = JobSender {
            tx: job_tx.clone(),
            in_flight: in_flight.clone(),
        };
        read_source(plan, index, &sources[index], &pool, jobs)
    })
    .await;
    drop(job_tx);
    // Every sender is gone now (even on error), so the threads run to their end.
    let mut decoded = Ok(());
    for d in decoders {
        let r = d
            .await
            .map_err(|e| LoadError::Internal(format!("decoder thread: {e}")))?;
        if decoded.is_ok() {
            decoded = r;
        }
    }
    // Decoding is over: its line buffers (≈ 20 MiB) and the pages its threads freed are
    // handed back before the writer finishes the partitions whose rows were set aside,
    // where a partitioned load reaches its peak.
    drop(pool);
    crate::memory::release_free_memory();
    let written = writer
        .await
        .map_err(|e| LoadError::Internal(format!("writer thread: {e}")))?;
    // A stage that stops makes the stages before it stop too ("decoders stopped early"):
    // the error reported is the one furthest downstream, where it began.
    let written = written?;
    decoded?;
    let info = read.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((written, info))
}

/// Reads sources `0..count` with `read`, one after another as long as that keeps the
/// decoders busy, and up to `parallel` at once while they are not: another source is
/// opened when `starved` (no lines waiting for a decoder) holds at [`STARVED_CHECKS`]
/// checks in a row, [`STARVATION_CHECK`] apart.
///
/// A local file or a download over a fast link frames lines faster than they are decoded,
/// so a second source at once would only share the same cores, and measurably cost time
/// (more buffers in flight, two streams of wake-ups). A download slower than the decoders
/// leaves them starved, and then reading two files at once is what keeps the cores busy.
///
/// Results come back in source order. After a source fails no other is opened: the load
/// fails anyway, and the results of the sources never read are missing.
async fn read_in_turn<T, E, Fut>(
    count: usize,
    parallel: usize,
    mut starved: impl FnMut() -> bool,
    mut read: impl FnMut(usize) -> Fut,
) -> Vec<Result<T, E>>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut results: Vec<Option<Result<T, E>>> = (0..count).map(|_| None).collect();
    let mut active = futures::stream::FuturesUnordered::new();
    let mut open = |index: usize| {
        let reading = read(index);
        async move { (index, reading.await) }
    };
    let mut next = 0;
    let mut failed = false;
    let mut starved_checks = 0;
    let mut check = tokio::time::interval_at(
        tokio::time::Instant::now() + STARVATION_CHECK,
        STARVATION_CHECK,
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if active.is_empty() && next < count && !failed {
            active.push(open(next));
            next += 1;
            starved_checks = 0;
        }
        if active.is_empty() {
            break;
        }
        let may_open = next < count && !failed && active.len() < parallel;
        tokio::select! {
            Some((index, result)) = active.next() => {
                failed |= result.is_err();
                results[index] = Some(result);
            }
            _ = check.tick(), if may_open => {
                starved_checks = if starved() { starved_checks + 1 } else { 0 };
                if starved_checks >= STARVED_CHECKS {
                    tracing::debug!(source = next, reading = active.len(), "decoders waiting for lines: reading one more source at once");
                    active.push(open(next));
                    next += 1;
                    starved_checks = 0;
                }
            }
        }
    }
    results.into_iter().flatten().collect()
}

/// Opens one source and frames it into numbered jobs for the decoder threads.
async fn read_source(
    plan: &LoadPlan,
    index: usize,
    source: &LoadSource,
    pool: &BatchPool,
    jobs: JobSender,
) -> Result<SourceInfo, LoadError> {
    let (reader, compression, name, wire): (
        input::DecompressedReader,
        Compression,
        String,
        WireBytes,
    ) = match source {
        LoadSource::Local(source) => {
            let name = source.display_name();
            // Counted as read, compressed: a file's size, and what a pipe carried.
            let (reader, compression, count) = input::open_counted(source).await?;
            (reader, compression, name, WireBytes::Read(count))
        }
        LoadSource::Remote { files, index } => {
            let (stream, counter, name) = download::open_file(files.clone(), *index)
                .await
                .map_err(|e| LoadError::Download(Box::new(e)))?;
            let mut reader = tokio_util::io::StreamReader::new(stream);
            // The first bytes carry the response headers, and with them the declared encoding.
            tokio::io::AsyncBufReadExt::fill_buf(&mut reader)
                .await
                .map_err(|io| {
                    input_error(
                        plan,
                        InputError::Read {
                            source_name: name.clone(),
                            after_bytes: 0,
                            io,
                        },
                    )
                })?;
            let declared = counter.content_encoding();
            let (reader, compression) = input::decompress_declared(reader, &name, declared)
                .await
                .map_err(|e| input_error(plan, e))?;
            (reader, compression, name, WireBytes::Counted(counter))
        }
    };
    let is_local = matches!(source, LoadSource::Local(_));
    let (tx, mut rx) = mpsc::channel::<LineBatch>(LINE_QUEUE);
    let shared_name: Arc<str> = name.as_str().into();
    // The forwarding owns the receiving end, so that when it stops (the decoders stopped)
    // the framing's next send fails instead of waiting for room that never comes.
    let forward = async move {
        let mut seq = 0;
        let stopped = || LoadError::Internal("decoders stopped early".into());
        while let Some(lines) = rx.recv().await {
            // Files named by hand can be of another entity type; an export's are of its own.
            if seq == 0 && is_local {
                if let Some(mismatch) = identify::check(plan.schema, &lines) {
                    return Err(LoadError::WrongEntity {
                        source_name: shared_name.to_string(),
                        entity: plan.schema.entity.clone(),
                        mismatch: Box::new(mismatch),
                    });
                }
            }
            let permit = jobs.in_flight.clone().acquire_owned().await;
            let job = Job {
                source: index,
                seq,
                name: shared_name.clone(),
                lines,
                permit: permit.map_err(|_| stopped())?,
            };
            if jobs.tx.send(job).await.is_err() {
                return Err(stopped());
            }
            seq += 1;
        }
        Ok(())
    };
    let frame = input::frame_into(
        reader,
        &name,
        plan.max_line_bytes,
        plan.batch_bytes,
        pool,
        tx,
    );
    let (totals, forwarded) = tokio::join!(frame, forward);
    let totals = totals.map_err(|e| input_error(plan, e))?;
    forwarded?;
    LoadProgress::add(&plan.progress.files_done, 1);
    let bytes = match wire {
        WireBytes::Read(n) => n.load(std::sync::atomic::Ordering::Relaxed),
        WireBytes::Counted(c) => c.bytes(),
    };
    Ok((name, compression, bytes, totals))
}

/// Refuses a load whose only input was an empty stdin when committing it would replace rows
/// with none: the load of the same id, or with `--mode replace` the whole table. An empty
/// pipe is far likelier a failed command upstream than an export of nothing, and `set -o
/// pipefail` reports that failure only after the rows are gone.
fn refuse_empty_stdin(
    out: &OutputDir,
    plan: &LoadPlan,
    sources: &[LoadSource],
    manifest: &LoadManifest,
) -> Result<(), LoadError> {
    let only_stdin = matches!(sources, [LoadSource::Local(Source::Stdin)]);
    // Blank lines carry no row: `echo "$UNSET" |` sends one.
    if !only_stdin || manifest.counts.lines_read > manifest.counts.blank_lines {
        return Ok(());
    }
    let loads = out.current_loads(&plan.schema.table)?;
    let held = |m: &LoadManifest| m.counts.rows_written;
    let (what, rows) = match plan.mode {
        WriteMode::Replace => (
            format!("table {}", plan.schema.table),
            loads.iter().map(held).sum(),
        ),
        WriteMode::Append => (
            format!("load {} of table {}", plan.load_id, plan.schema.table),
            loads
                .iter()
                .filter(|m| m.load_id == plan.load_id)
                .map(held)
                .sum(),
        ),
    };
    if rows == 0 {
        return Ok(());
    }
    Err(LoadError::EmptyStdin { what, rows })
}

/// Classifies an error reading a source: a [`download::DownloadError`] behind it (an expired
/// export, a size mismatch, a download given up) becomes [`LoadError::Download`], so the
/// caller can react to it (a new export for an expired one); anything else is an input error.
fn input_error(plan: &LoadPlan, e: InputError) -> LoadError {
    match download::DownloadError::find(&e) {
        Some(_) => LoadError::Download(Box::new(match e {
            InputError::Read { io, .. }
            | InputError::Decompress { io, .. }
            | InputError::Open { io, .. } => {
                match io
                    .into_inner()
                    .map(|inner| inner.downcast::<download::DownloadError>())
                {
                    Some(Ok(d)) => *d,
                    _ => download::DownloadError::Export {
                        export_id: plan.export_id.clone(),
                        message: "download failed".into(),
                    },
                }
            }
            unsupported @ InputError::Unsupported { .. } => download::DownloadError::Export {
                export_id: plan.export_id.clone(),
                message: unsupported.to_string(),
            },
        })),
        None => LoadError::Input(e),
    }
}

/// Where a source's numbered line batches go: the decoders' queue, each batch with a place
/// among those in flight.
struct JobSender {
    tx: mpsc::Sender<Job>,
    in_flight: Arc<Semaphore>,
}

/// The bytes of a source as stored or sent (compressed, if they are), counted as they are
/// read: from a local file or stdin, or off the wire.
enum WireBytes {
    Read(Arc<std::sync::atomic::AtomicU64>),
    Counted(Arc<download::WireCounter>),
}

fn decode_stage(
    schema: &'static EntitySchema,
    mut grouper: Option<LineGrouper>,
    export_id: &str,
    jobs: &std::sync::Mutex<mpsc::Receiver<Job>>,
    out: std::sync::mpsc::SyncSender<Decoded>,
    progress: &LoadProgress,
    pool: &BatchPool,
) -> Result<(), LoadError> {
    // The decoder of the source last decoded: consecutive jobs mostly share a source, and
    // a new decoder for another source costs little next to a batch of lines.
    let mut current: Option<(usize, RecordDecoder)> = None;
    loop {
        // Hold the lock only while taking the next job, not while decoding it.
        let next = match jobs.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => return Err(LoadError::Internal("a decoder thread panicked".into())),
        };
        let Some(mut job) = next else { break };
        if let Some(grouper) = &mut grouper {
            grouper.group(&mut job.lines);
        }
        let decoder = match &mut current {
            Some((source, decoder)) if *source == job.source => decoder,
            _ => {
                let decoder = RecordDecoder::new(schema, export_id, &job.name);
                &mut current.insert((job.source, decoder)).1
            }
        };
        decoder.decode_batch(&job.lines);
        let batch = decoder.flush();
        LoadProgress::add(&progress.bytes, job.lines.len_bytes() as u64);
        LoadProgress::add(&progress.rows, batch.batch.num_rows() as u64);
        LoadProgress::add(&progress.rejected, batch.rejects.len() as u64);
        pool.give(job.lines);
        let decoded = Decoded {
            source: job.source,
            seq: job.seq,
            name: job.name,
            batch,
            permit: job.permit,
        };
        if out.send(decoded).is_err() {
            return Err(LoadError::Internal("writer stopped early".into()));
        }
    }
    Ok(())
}

fn write_stage(
    mut writer: PartitionedWriter,
    quarantine_path: PathBuf,
    batches: std::sync::mpsc::Receiver<Decoded>,
    sources: usize,
) -> Result<Written, LoadError> {
    let mut quarantine = QuarantineWriter::new(quarantine_path);
    let mut per_source: Vec<LoadCounts> = vec![LoadCounts::default(); sources];
    // Batches that arrived before an earlier batch of their source: fewer than the batches
    // in flight, whose places are given back only here, once written.
    let mut early: BTreeMap<(usize, u64), Decoded> = BTreeMap::new();
    let mut next_seq: Vec<u64> = vec![0; sources];
    for decoded in batches {
        let source = decoded.source;
        if source >= sources {
            return Err(LoadError::Internal(format!(
                "batch of unknown source {source}"
            )));
        }
        early.insert((source, decoded.seq), decoded);
        while let Some(Decoded {
            name,
            batch,
            permit,
            ..
        }) = early.remove(&(source, next_seq[source]))
        {
            next_seq[source] += 1;
            if batch.batch.num_rows() > 0 {
                writer.write(&batch.batch)?;
            }
            quarantine
                .write(&name, &batch.rejects)
                .map_err(|e| LoadError::Quarantine {
                    path: quarantine.path().to_owned(),
                    source: e,
                })?;
            per_source[source].merge(&batch.counts);
            // What the writer keeps of the batch now is its own to bound.
            drop(permit);
        }
    }
    if let Some(((source, seq), _)) = early.first_key_value() {
        return Err(LoadError::Internal(format!(
            "batch {seq} of source {source} arrived without batch {}",
            next_seq[*source]
        )));
    }
    let files = writer.finish()?;
    let path = quarantine.path().to_owned();
    let quarantine = quarantine
        .finish()
        .map_err(|e| LoadError::Quarantine { path, source: e })?;
    Ok(Written {
        files,
        per_source,
        quarantine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `read_in_turn` over sources that each take `takes` (and fail where `fails`),
    /// and returns their results and the most read at once.
    async fn read_sources(
        takes: &[Duration],
        fails: Option<usize>,
        starved: impl FnMut() -> bool,
    ) -> (Vec<Result<usize, usize>>, usize) {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let results = read_in_turn(takes.len(), 2, starved, |i| {
            let (now, most, take) = (now.clone(), most.clone(), takes[i]);
            async move {
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(take).await;
                now.fetch_sub(1, Ordering::SeqCst);
                if fails == Some(i) {
                    Err(i)
                } else {
                    Ok(i)
                }
            }
        })
        .await;
        (results, most.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn sources_are_read_in_turn_while_the_decoders_have_lines() {
        let takes = [Duration::from_secs(1); 4];
        let (results, most) = read_sources(&takes, None, || false).await;
        assert_eq!(results, vec![Ok(0), Ok(1), Ok(2), Ok(3)]);
        assert_eq!(most, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn starved_decoders_get_a_second_source_but_never_a_third() {
        let takes = [
            Duration::from_secs(3),
            Duration::from_millis(10),
            Duration::from_secs(1),
            Duration::from_secs(2),
        ];
        let (results, most) = read_sources(&takes, None, || true).await;
        assert_eq!(results, vec![Ok(0), Ok(1), Ok(2), Ok(3)], "in source order");
        assert_eq!(most, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn one_starved_check_is_not_enough() {
        let mut checks = 0;
        let starved = move || {
            checks += 1;
            checks % STARVED_CHECKS != 0
        };
        let (results, most) = read_sources(&[Duration::from_secs(2); 3], None, starved).await;
        assert_eq!(results.len(), 3);
        assert_eq!(
            most, 1,
            "starved at fewer than {STARVED_CHECKS} checks in a row"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_source_is_opened_after_one_fails() {
        let takes = [Duration::from_secs(1); 4];
        let (results, most) = read_sources(&takes, Some(1), || false).await;
        assert_eq!(results, vec![Ok(0), Err(1)]);
        assert_eq!(most, 1);
    }

    /// An OrderItem load of one source read into line batches of `batch_bytes`, for tests of
    /// the reading stage alone.
    fn reading_plan(batch_bytes: usize) -> LoadPlan {
        LoadPlan {
            schema: crate::schema::find("OrderItem").expect("schema"),
            load_id: "t".into(),
            export_id: "e".into(),
            mode: WriteMode::Append,
            partition: PartitionSpec::default(),
            writer: WriterOptions::default(),
            budget: ErrorBudget::Count(0),
            max_line_bytes: 1 << 20,
            batch_bytes,
            parallel_sources: 1,
            decode_threads: 1,
            progress: Default::default(),
            replaces: Vec::new(),
        }
    }

    /// The reading stage stops framing once the batches in flight hold every place, however
    /// much room the queue to the decoders has, and goes on as soon as one is given back.
    #[tokio::test]
    async fn framing_waits_for_a_place_in_flight() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lines.jsonl");
        std::fs::write(&path, "{\"Id\":\"x\"}\n".repeat(1000)).expect("write");
        let plan = reading_plan(64);
        let (tx, mut rx) = mpsc::channel::<Job>(1000);
        let in_flight = Arc::new(Semaphore::new(3));
        let jobs = JobSender {
            tx,
            in_flight: in_flight.clone(),
        };
        let pool = BatchPool::default();
        let source = LoadSource::Local(Source::Path(path));
        let reading =
            tokio::spawn(async move { read_source(&plan, 0, &source, &pool, jobs).await });
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(rx.recv().await.expect("a job"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "a fourth batch was framed");
        assert_eq!(in_flight.available_permits(), 0);
        held.remove(0);
        let fourth = rx.recv().await.expect("a job once a place is free");
        assert_eq!(fourth.seq, 3);
        drop((held, fourth));
        let mut seen = 4;
        while let Some(job) = rx.recv().await {
            assert_eq!(job.seq, seen);
            seen += 1;
        }
        let (_, _, _, totals) = reading.await.expect("task").expect("read");
        assert_eq!(totals.lines_read, 1000);
        assert!(seen > 100, "{seen} batches");
    }

    /// Bytes after the end of a deflate stream are read too (as another stream, which they
    /// are not): the source fails instead of loading what came before them as the whole
    /// file, and the download reads to its end, where SizeInBytes is checked.
    #[tokio::test]
    async fn bytes_after_a_deflate_stream_fail_the_file() {
        use crate::api::test_server::{Canned, TestServer};
        use async_compression::tokio::bufread::ZlibEncoder;
        use tokio::io::AsyncReadExt;
        let text = b"{\"Id\":\"a\"}\n".repeat(20);
        let mut body = Vec::new();
        ZlibEncoder::new(&text[..])
            .read_to_end(&mut body)
            .await
            .unwrap();
        body.extend_from_slice(b"{\"Id\":\"hidden\"}\n");
        let server = TestServer::start([
            Canned::bytes(200, body.clone()).header("Content-Encoding", "deflate")
        ])
        .await;
        let plan = reading_plan(1 << 16);
        let (tx, mut rx) = mpsc::channel::<Job>(100);
        let jobs = JobSender {
            tx,
            in_flight: Arc::new(Semaphore::new(100)),
        };
        let source = LoadSource::Remote {
            files: download::one_file_export(&server, body.len()),
            index: 0,
        };
        let result = read_source(&plan, 0, &source, &BatchPool::default(), jobs).await;
        rx.close();
        match result {
            Err(LoadError::Input(e)) => assert!(e.to_string().contains("127.0.0.1"), "{e}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("loaded a file without the bytes after its deflate stream"),
        }
    }

    #[test]
    fn load_ids_from_file_names() {
        assert_eq!(
            load_id_from_file_name("dir/3fa85f64-5717-4562-b3fc-2c963f66afa6-1.jsonl.gz"),
            "3fa85f64-5717-4562-b3fc-2c963f66afa6"
        );
        assert_eq!(
            load_id_from_file_name("3FA85F64-5717-4562-B3FC-2C963F66AFA6-12.jsonl"),
            "3FA85F64-5717-4562-B3FC-2C963F66AFA6"
        );
        assert_eq!(
            load_id_from_file_name("3fa85f64-5717-4562-b3fc-2c963f66afa6.jsonl"),
            "3fa85f64-5717-4562-b3fc-2c963f66afa6"
        );
        // Dated names keep their day: two days are two loads.
        assert_eq!(
            load_id_from_file_name("orders-2024-06-01.jsonl"),
            "orders-2024-06-01"
        );
        assert_ne!(
            load_id_from_file_name("orders-2024-06-01.jsonl"),
            load_id_from_file_name("orders-2024-06-02.jsonl")
        );
        assert_eq!(load_id_from_file_name("export-1.jsonl"), "export-1");
        assert_eq!(load_id_from_file_name("order_items.jsonl"), "order_items");
        assert_eq!(load_id_from_file_name("C:\\x\\export.ndjson.zst"), "export");
    }
}
