//! One load end to end: sources → framing → decoding → Parquet in staging → commit.
//!
//! ```text
//!  async task          bounded(LINE_QUEUE)    blocking thread      bounded(BATCH_QUEUE)   blocking thread
//!  open + decompress ──── LineBatch ────────▶  RecordDecoder  ──── DecodedBatch ───────▶  PartitionedWriter
//!  + frame each source                          (per source)                              + QuarantineWriter
//! ```
//!
//! Reading and decompression stay on the async runtime; decoding and Parquet encoding run
//! on their own blocking threads, so the stages overlap and both cores stay busy. Every
//! queue is bounded, so memory is bounded by the queue capacities times the batch size,
//! whatever the size of the input.
//!
//! Nothing becomes visible until [`OutputDir::commit`]: a load that fails, or that rejects
//! more lines than its [`ErrorBudget`] allows, leaves the table as it was (its quarantine
//! file is still written, for diagnosis).

use crate::commit::{sanitize_load_id, CommitError, OutputDir};
use crate::config::ErrorBudget;
use crate::decode::{DecodedBatch, RecordDecoder};
use crate::framing::LineBatch;
use crate::input::{self, Compression, FrameTotals, InputError, Source};
use crate::manifest::{
    rfc3339_utc, LoadCounts, LoadManifest, SourceSummary, WriteMode, MANIFEST_FORMAT_VERSION,
};
use crate::quarantine::QuarantineWriter;
use crate::schema::{EntitySchema, PartitionSpec};
use crate::sink::{PartitionedWriter, SinkError, WriterOptions, WrittenFile};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Line batches in flight between the reader and the decoder. With 1 MiB batches this
/// holds a few MiB: enough to absorb read jitter, small enough to keep memory flat.
pub const LINE_QUEUE: usize = 4;

/// Decoded batches in flight between the decoder and the Parquet writer (each roughly the
/// size of one line batch in Arrow form).
pub const BATCH_QUEUE: usize = 4;

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
    /// A pipeline thread stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
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

/// The result of one load, for the summary.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was read, written and counted (also when nothing was committed).
    pub manifest: LoadManifest,
    /// Whether it committed.
    pub outcome: LoadOutcome,
    /// The quarantine file, if any line was rejected.
    pub quarantine: Option<PathBuf>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

/// Derives a load id from a source file name: the name without directories, compression
/// and JSON Lines extensions, and without the `-<n>` part suffix that splits one export
/// into several files (`3fa85f64-…-1.jsonl.gz` → `3fa85f64-…`).
pub fn load_id_from_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut stem = base;
    for ext in [
        ".gz", ".gzip", ".zst", ".zstd", ".jsonl", ".ndjson", ".json", ".txt",
    ] {
        if stem.len() > ext.len() && stem.to_ascii_lowercase().ends_with(ext) {
            stem = &stem[..stem.len() - ext.len()];
        }
    }
    if let Some((head, part)) = stem.rsplit_once('-') {
        if !head.is_empty()
            && !part.is_empty()
            && part.len() <= 4
            && part.bytes().all(|b| b.is_ascii_digit())
        {
            stem = head;
        }
    }
    sanitize_load_id(stem)
}

/// Messages from the reader to the decoder thread: one per source, carrying the source's
/// own bounded queue of line batches.
struct SourceStream {
    index: usize,
    name: String,
    lines: mpsc::Receiver<LineBatch>,
}

/// Messages from the decoder to the writer thread.
enum Decoded {
    Batch {
        index: usize,
        source: Arc<str>,
        batch: DecodedBatch,
    },
}

/// What the writer thread hands back.
struct Written {
    files: Vec<WrittenFile>,
    per_source: Vec<LoadCounts>,
    quarantine: Option<PathBuf>,
}

/// Runs one load of local (or already opened) sources into `out`.
pub async fn load_files(
    out: &OutputDir,
    plan: &LoadPlan,
    sources: &[Source],
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let staging = out.new_staging_dir(&plan.schema.table, &plan.load_id)?;
    let quarantine_path = out.quarantine_path(&plan.schema.table, &plan.load_id);
    let result = run_pipeline(plan, sources, staging.clone(), quarantine_path).await;
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
    for ((c, source), (compression, bytes, totals)) in
        written.per_source.iter().zip(sources).zip(source_info)
    {
        let name = source.display_name();
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
        summaries.push(SourceSummary {
            name,
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
    };
    let lines = manifest.counts.lines_read - manifest.counts.blank_lines;
    let outcome = if plan.budget.allows(manifest.counts.rejected, lines) {
        let committed = out.commit(&staging, &manifest)?;
        LoadOutcome::Committed {
            version: committed.version,
        }
    } else {
        out.discard(&staging)?;
        LoadOutcome::OverBudget
    };
    Ok(LoadReport {
        manifest,
        outcome,
        quarantine: written.quarantine,
        elapsed: started.elapsed(),
    })
}

type SourceInfo = (Compression, u64, FrameTotals);

async fn run_pipeline(
    plan: &LoadPlan,
    sources: &[Source],
    staging: PathBuf,
    quarantine_path: PathBuf,
) -> Result<(Written, Vec<SourceInfo>), LoadError> {
    let (stream_tx, stream_rx) = mpsc::channel::<SourceStream>(1);
    let (decoded_tx, decoded_rx) = std::sync::mpsc::sync_channel::<Decoded>(BATCH_QUEUE);

    let schema = plan.schema;
    let export_id = plan.export_id.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        decode_stage(schema, &export_id, stream_rx, decoded_tx)
    });

    let arrow_schema = plan.schema.arrow_schema();
    let spec = plan.partition.clone();
    let options = plan.writer.clone();
    let prefix = plan.load_id.clone();
    let writer = tokio::task::spawn_blocking(move || {
        write_stage(
            staging,
            arrow_schema,
            spec,
            options,
            prefix,
            quarantine_path,
            decoded_rx,
        )
    });

    let read = read_stage(plan, sources, stream_tx).await;
    // The reader has dropped its sender (even on error), so both threads run to the end.
    let decoded = decoder
        .await
        .map_err(|e| LoadError::Internal(format!("decoder thread: {e}")))?;
    let written = writer
        .await
        .map_err(|e| LoadError::Internal(format!("writer thread: {e}")))?;
    let info = read?;
    decoded?;
    Ok((written?, info))
}

async fn read_stage(
    plan: &LoadPlan,
    sources: &[Source],
    streams: mpsc::Sender<SourceStream>,
) -> Result<Vec<SourceInfo>, LoadError> {
    let mut info = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let name = source.display_name();
        let wire_bytes = match source {
            Source::Path(p) => tokio::fs::metadata(p).await.map(|m| m.len()).unwrap_or(0),
            Source::Stdin => 0,
        };
        let (reader, compression) = input::open(source).await?;
        let (tx, rx) = mpsc::channel(LINE_QUEUE);
        let stream = SourceStream {
            index,
            name: name.clone(),
            lines: rx,
        };
        // The decoder takes one source at a time; this hand-over only waits while the
        // previous source is still being decoded.
        if streams.send(stream).await.is_err() {
            return Err(LoadError::Internal("decoder stopped early".into()));
        }
        let totals =
            input::frame_into(reader, &name, plan.max_line_bytes, plan.batch_bytes, tx).await?;
        let bytes = if wire_bytes == 0 {
            totals.bytes
        } else {
            wire_bytes
        };
        info.push((compression, bytes, totals));
    }
    Ok(info)
}

fn decode_stage(
    schema: &'static EntitySchema,
    export_id: &str,
    mut streams: mpsc::Receiver<SourceStream>,
    out: std::sync::mpsc::SyncSender<Decoded>,
) -> Result<(), LoadError> {
    while let Some(mut stream) = streams.blocking_recv() {
        let source: Arc<str> = stream.name.as_str().into();
        let mut decoder = RecordDecoder::new(schema, export_id, &stream.name);
        let mut any = false;
        while let Some(lines) = stream.lines.blocking_recv() {
            decoder.decode_batch(&lines);
            let batch = decoder.flush();
            any = true;
            if out
                .send(Decoded::Batch {
                    index: stream.index,
                    source: source.clone(),
                    batch,
                })
                .is_err()
            {
                return Err(LoadError::Internal("writer stopped early".into()));
            }
        }
        if !any {
            // An empty source still reports (zero) counts, so it appears in the manifest.
            let batch = decoder.flush();
            let msg = Decoded::Batch {
                index: stream.index,
                source,
                batch,
            };
            if out.send(msg).is_err() {
                return Err(LoadError::Internal("writer stopped early".into()));
            }
        }
    }
    Ok(())
}

fn write_stage(
    staging: PathBuf,
    schema: arrow::datatypes::SchemaRef,
    spec: PartitionSpec,
    options: WriterOptions,
    prefix: String,
    quarantine_path: PathBuf,
    batches: std::sync::mpsc::Receiver<Decoded>,
) -> Result<Written, LoadError> {
    let mut writer = PartitionedWriter::new(staging, schema, spec, options, prefix)?;
    let mut quarantine = QuarantineWriter::new(quarantine_path);
    let mut per_source: Vec<LoadCounts> = Vec::new();
    for Decoded::Batch {
        index,
        source,
        batch,
    } in batches
    {
        if batch.batch.num_rows() > 0 {
            writer.write(&batch.batch)?;
        }
        quarantine
            .write(&source, &batch.rejects)
            .map_err(|e| LoadError::Quarantine {
                path: quarantine.path().to_owned(),
                source: e,
            })?;
        if per_source.len() <= index {
            per_source.resize_with(index + 1, LoadCounts::default);
        }
        per_source[index].merge(&batch.counts);
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

    #[test]
    fn load_ids_from_file_names() {
        assert_eq!(
            load_id_from_file_name("dir/3fa85f64-5717-1.jsonl.gz"),
            "3fa85f64-5717"
        );
        assert_eq!(load_id_from_file_name("order_items.jsonl"), "order_items");
        assert_eq!(load_id_from_file_name("C:\\x\\export.ndjson.zst"), "export");
    }
}
