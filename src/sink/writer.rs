//! [`PartitionedWriter`]: record batches → Parquet files, one rolling file per partition.
//!
//! A load can touch many partitions at once (rows of a month-partitioned export arrive in
//! no order of month), and a Parquet row group in progress costs memory per column whatever
//! its row count (page buffers, dictionaries, a codec context each). Memory is bounded by
//! named budgets:
//! - an unpartitioned table has one file: rows are encoded into its row group in progress
//!   every [`WRITE_THROUGH_ROWS`] rows, so little is held in Arrow form; the row group ends
//!   at [`WriterOptions::row_group_rows`], or early when its memory passes
//!   [`ENCODED_BYTES_BUDGET`];
//! - a partitioned table's batches wait whole until the rows held in memory pass
//!   [`WriterOptions::buffered_bytes_budget`], or until they hold
//!   [`SPLIT_ROWS_PER_PARTITION`] rows per partition seen; they are then split at once, on
//!   the encoding threads, and each partition whose rows make no whole row group yet has
//!   its part set aside on disk ([`super::spill::SpilledRows`]) by the thread that made
//!   it. Rows gathered in memory (a partition's rest after whole row groups, a batch
//!   within one partition) count against the same budget: past it, the largest
//!   partitions' are set aside until half the budget is left. A partition is written as
//!   whole row groups (one in progress at a time, its rows set aside read back a batch at a
//!   time) once it has [`WriterOptions::row_group_rows`] rows, and its last rows at the
//!   end, so row groups are full whatever the number of partitions; a file between row
//!   groups holds no per-column buffers. At the end, partitions with a small rest (see
//!   [`FINISH_AT_ONCE_SHARE`]) are finished one per encoding thread at a time. At most
//!   [`WriterOptions::max_open_files`] partitions have rows set aside (one file each); past that bound, the largest
//!   partition's rows are written as a smaller row group instead;
//! - at most [`WriterOptions::max_open_files`] Parquet files are open (and as many files
//!   of rows set aside, above), a bound on file handles; opening one more closes the least
//!   recently used, whose partition continues in a new file. Files roll over at [`WriterOptions::max_rows_per_file`].
//!
//! Every file keeps all columns, partition columns included: directory names serve pruning
//! (and may be escaped or truncated), while the exact values stay in the data.

use super::encode::{EncodePool, ParquetFile, ENCODE_SLICE_ROWS};
use super::partition::{partition_rows, PartitionKey};
use super::spill::{ReadAhead, SpilledRows};
use super::SinkError;
use crate::schema::{PartitionSpec, LINEAGE_LINE};
use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Default rows per Parquet file: large enough for efficient scans, small enough that a
/// file (≈ tens of MB compressed for Mews entities) is cheap to rewrite or list.
pub const DEFAULT_MAX_ROWS_PER_FILE: usize = 1_000_000;
/// Default rows per row group: 128 Ki rows keeps statistics useful for pruning and a row
/// group's buffer in the tens of MB.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;
/// Default cap on simultaneously open partition files: enough for ten years of monthly
/// partitions to stream without churn, well inside the usual limit of 1024 file handles.
/// Memory is bounded separately, by [`BUFFERED_BYTES_BUDGET`].
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;
/// Default zstd level: level 1 compresses Mews data nearly as well as level 3 at a fraction
/// of the CPU, and every reader decodes it.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Arrow bytes of decoded rows a partitioned table holds in memory: rows waiting to be
/// split by partition and rows gathered per partition. Past it, the rows waiting are split,
/// and each partition's rows that do not make a whole row group are set aside on disk.
pub const BUFFERED_BYTES_BUDGET: usize = 32 * 1024 * 1024;

/// Rows of an unpartitioned table gathered before they are encoded into the row group in
/// progress: enough that per-call encoding overheads vanish, few enough to stay a few MiB.
pub const WRITE_THROUGH_ROWS: usize = 8 * 1024;

/// Rows split by partition at once, per partition seen so far: about an encoder call's
/// worth a part. The memory budget bounds a split too: it alone ends the first split
/// (before any partition is known) and, with many partitions, every split. Larger parts cost memory for nothing: a 1 GiB load into
/// three yearly partitions peaked at 143, 167, 202 and 235 MiB splitting 4 096, 8 192,
/// 16 384 rows and a budget's worth (~27 000) at once, with the same live memory (the
/// allocator keeps what larger parts leave behind).
pub const SPLIT_ROWS_PER_PARTITION: usize = ENCODE_SLICE_ROWS;

/// Pieces of batches with fewer rows than this on average are copied into one batch before
/// they are encoded or set aside (see `combine`). Half an encoder call: whole decoded batches
/// (2 MiB of JSON, ~1 000 order items) stay as they are, while the parts a split by
/// partition makes when rows spread over hundreds of partitions (~100 rows each) are
/// gathered. At a full encoder call every decoded order item batch was copied once more,
/// 4% of an unpartitioned load's CPU time.
const COMBINE_BELOW_ROWS: usize = ENCODE_SLICE_ROWS / 2;

/// Default of [`WriterOptions::encoded_bytes_budget`]: memory of the row groups in progress
/// as the parquet crate counts it (dictionaries, page buffers; completed pages wait on
/// disk, see [`super::spill`]); past it, a row group ends early. A full row group of a wide
/// entity stays well inside it (128 Ki order items: ≈ 13 MiB); values that defeat the
/// dictionaries and compress badly in every column do not.
pub const ENCODED_BYTES_BUDGET: usize = 64 * 1024 * 1024;

/// At the end of a load, partitions with at most `row_group_rows / FINISH_AT_ONCE_SHARE`
/// rows left are finished one per encoding thread at a time: their row groups are too small
/// for the threads to share one's columns well, and a few of them in progress at once hold
/// less than one full row group. A larger rest is finished alone, its columns shared.
pub const FINISH_AT_ONCE_SHARE: usize = 4;

/// Largest dictionary of a 64-bit column (instants, integers) in one row group, in bytes:
/// 16 Ki distinct values. Instants that repeat (a night's `ConsumedUtc`, a bill's
/// `ClosedUtc`) stay well under it and keep their dictionary; instants that are nearly all
/// distinct (`CreatedUtc` to the second) fall back to plain pages once past it. Plain
/// 8-byte values compress better under zstd than a dictionary of them (the 1 GiB
/// OrderItem file: 102 → 97 MB of Parquet) and cost no hash table: with the parquet
/// crate's 1 MiB default, each of OrderItem's seven instants held 2.3–3.6 MiB per 128 Ki-row
/// group.
pub const INT64_DICTIONARY_BYTES: usize = 128 * 1024;

/// Parquet compression codec of the written files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    /// Zstandard at the given level (1–22): the default, small and fast to decode.
    Zstd(i32),
    /// Snappy: fastest to write, larger files.
    Snappy,
    /// Gzip at its default level: for readers without zstd.
    Gzip,
    /// LZ4, written as the `LZ4_RAW` codec (the old `LZ4` codec is deprecated by the format
    /// because Hadoop and other writers disagreed on its framing).
    Lz4,
    /// No compression.
    None,
}

impl Default for ParquetCompression {
    fn default() -> Self {
        ParquetCompression::Zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl ParquetCompression {
    fn to_parquet(self) -> Result<Compression, SinkError> {
        Ok(match self {
            ParquetCompression::Zstd(level) => Compression::ZSTD(
                ZstdLevel::try_new(level)
                    .map_err(|e| SinkError::InvalidOption(format!("zstd level {level}: {e}")))?,
            ),
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
            ParquetCompression::None => Compression::UNCOMPRESSED,
        })
    }
}

impl FromStr for ParquetCompression {
    type Err = String;

    /// Parses `zstd`, `zstd:<level>`, `snappy`, `gzip`, `lz4` or `none` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "zstd" => Ok(ParquetCompression::default()),
            "snappy" => Ok(ParquetCompression::Snappy),
            "gzip" => Ok(ParquetCompression::Gzip),
            "lz4" => Ok(ParquetCompression::Lz4),
            "none" | "uncompressed" => Ok(ParquetCompression::None),
            other => match other.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(level)) if (1..=22).contains(&level) => Ok(ParquetCompression::Zstd(level)),
                _ => Err(format!(
                    "unknown compression {s:?} (expected zstd, zstd:<1-22>, snappy, gzip, lz4 or none)"
                )),
            },
        }
    }
}

impl fmt::Display for ParquetCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParquetCompression::Zstd(level) if *level == DEFAULT_ZSTD_LEVEL => f.write_str("zstd"),
            ParquetCompression::Zstd(level) => write!(f, "zstd:{level}"),
            ParquetCompression::Snappy => f.write_str("snappy"),
            ParquetCompression::Gzip => f.write_str("gzip"),
            ParquetCompression::Lz4 => f.write_str("lz4"),
            ParquetCompression::None => f.write_str("none"),
        }
    }
}

/// How [`PartitionedWriter`] encodes and bounds its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Compression codec of every column.
    pub compression: ParquetCompression,
    /// A file is closed, and the partition continues in a new one, at this many rows.
    pub max_rows_per_file: usize,
    /// Rows per row group (Parquet's `max_row_group_size`).
    pub row_group_rows: usize,
    /// Most partition files open at once; the least recently used is closed beyond it.
    pub max_open_files: usize,
    /// Threads that encode the columns of a row group at once (see [`super::encode`]).
    pub encode_threads: usize,
    /// Top-level columns written without a dictionary, because their values are all
    /// distinct (see [`crate::schema::EntitySchema::unique_columns`]).
    pub plain_columns: Vec<String>,
    /// Arrow bytes of rows a partitioned table holds in memory, waiting to be split or
    /// gathered per partition, before they are split and set aside on disk (default
    /// [`BUFFERED_BYTES_BUDGET`]).
    pub buffered_bytes_budget: usize,
    /// Memory of the row groups in progress (default [`ENCODED_BYTES_BUDGET`]): all of an
    /// unpartitioned table's open files together, each of a partitioned table's files
    /// (whose row groups are written one at a time, on each encoding thread at most one).
    pub encoded_bytes_budget: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression: ParquetCompression::default(),
            max_rows_per_file: DEFAULT_MAX_ROWS_PER_FILE,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            encode_threads: crate::config::default_threads(),
            plain_columns: Vec::new(),
            buffered_bytes_budget: BUFFERED_BYTES_BUDGET,
            encoded_bytes_budget: ENCODED_BYTES_BUDGET,
        }
    }
}

/// One complete Parquet file written by a load, as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrittenFile {
    /// Path relative to the table directory, `/`-separated
    /// (`ConsumedUtc_month=2023-03/<name>.parquet`).
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The file's partition: `(key, raw unescaped value)`, outermost first; a null value is
    /// spelled `__HIVE_DEFAULT_PARTITION__`.
    pub partition: Vec<(String, String)>,
}

/// Writes record batches as Parquet files under a staging directory, split by partition.
///
/// Files go to `<dir>/<key>=<value>/…/<prefix>-<partition seq>-<file seq>.parquet`. Nothing
/// is visible to readers until [`crate::commit`] moves the files into a table version.
pub struct PartitionedWriter {
    files: FileSettings,
    spec: PartitionSpec,
    /// Arrow bytes of the rows gathered in all partitions and not yet written (rows not yet
    /// split are in `incoming_bytes`).
    buffered_bytes: usize,
    partitions: HashMap<PartitionKey, PartitionState>,
    /// Partitions seen so far: the next one's `seq`. Not `partitions.len()`, as partitions
    /// are taken out of the map while the encoding threads work on them.
    partitions_seen: usize,
    /// Rows set aside on disk over the load, and splits by partition made, for the log.
    spilled_rows: u64,
    splits: u64,
    /// Highest `buffered_bytes` and encoded bytes of row groups in progress, for the log.
    peak_buffered_bytes: usize,
    peak_encoded_bytes: usize,
    /// Batches not yet split by partition, their rows and their Arrow bytes.
    incoming: Vec<RecordBatch>,
    incoming_rows: usize,
    incoming_bytes: usize,
    /// Logical clock for least-recently-used eviction.
    clock: u64,
    /// Directories created under `dir`, fsynced at `finish` so new entries are durable.
    created_dirs: BTreeSet<PathBuf>,
    /// Reads rows set aside back ahead of the partition being written, one at a time.
    read_ahead: ReadAhead,
}

/// What the files of every partition share: where they go and how they are encoded.
#[derive(Clone)]
struct FileSettings {
    /// The staging directory.
    dir: PathBuf,
    schema: SchemaRef,
    options: WriterOptions,
    properties: Arc<WriterProperties>,
    /// Encoding threads shared by every file of the load.
    pool: Arc<EncodePool>,
    file_prefix: String,
    /// Files open now, across the threads that write them.
    open_files: Arc<OpenFiles>,
}

/// Files open at once, and the most seen: the bound on file handles, kept.
#[derive(Debug, Default)]
struct OpenFiles {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl OpenFiles {
    fn opened(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-partition bookkeeping; survives the closing of the partition's file.
struct PartitionState {
    /// Order in which the partition was first seen: part of its file names.
    seq: usize,
    /// Relative directory (escaped), `/`-separated; empty when unpartitioned.
    rel_dir: String,
    /// The partition's directory in the staging directory (created when first seen).
    dir: PathBuf,
    manifest_values: Vec<(String, String)>,
    /// Number of files started for this partition.
    files_started: usize,
    last_used: u64,
    open: Option<OpenFile>,
    /// Rows gathered and not yet written, with their row count and Arrow size.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    /// Older rows of the partition set aside on disk (partitioned tables only).
    spilled: Option<SpilledRows>,
    /// The partition's complete files.
    written: Vec<WrittenFile>,
    /// Most memory a row group in progress of the partition held, as measured.
    peak_group_bytes: usize,
}

/// Where a partition's part of a split went.
enum Placed {
    /// Written behind the partition's rows set aside (the state was taken out of the map
    /// for it and goes back); how many rows, or why not.
    SetAside(Box<PartitionState>, Result<u64, SinkError>),
    /// Made, to be gathered in memory.
    Kept(Result<RecordBatch, SinkError>),
}

struct OpenFile {
    writer: ParquetFile<File>,
    path: PathBuf,
    rel_path: String,
    rows: u64,
    /// Memory of the file's row group in progress, as last measured.
    group_bytes: usize,
}

impl PartitionedWriter {
    /// Creates a writer into the staging directory `dir` (created if missing).
    ///
    /// `file_prefix` starts every file name and must be a plain name (`[A-Za-z0-9._-]`, not
    /// starting with `.`); the load id makes names unique across the loads of a table.
    pub fn new(
        dir: PathBuf,
        schema: SchemaRef,
        spec: PartitionSpec,
        options: WriterOptions,
        file_prefix: String,
    ) -> Result<Self, SinkError> {
        if options.max_rows_per_file == 0
            || options.row_group_rows == 0
            || options.max_open_files == 0
            || options.encode_threads == 0
        {
            return Err(SinkError::InvalidOption(format!(
                "max_rows_per_file, row_group_rows, max_open_files and encode_threads must be positive, got {options:?}"
            )));
        }
        if file_prefix.is_empty()
            || file_prefix.starts_with('.')
            || !file_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(SinkError::InvalidOption(format!(
                "file prefix {file_prefix:?} must be [A-Za-z0-9._-] and not start with '.'"
            )));
        }
        let mut properties = WriterProperties::builder()
            .set_compression(options.compression.to_parquet()?)
            .set_max_row_group_row_count(Some(options.row_group_rows));
        for column in &options.plain_columns {
            properties = properties.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(column.as_str()),
                false,
            );
        }
        // 16-byte decimals are written plain: the parquet crate's dictionary holds each
        // distinct one as a heap allocation of its own (≈ 80 bytes of memory per 16-byte
        // value, the largest part of a row group's memory for money-heavy entities), while
        // zstd compresses repeated amounts in plain pages nearly as well.
        let leaves = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|source| SinkError::Parquet {
                path: dir.clone(),
                partition: String::new(),
                source,
            })?;
        for column in leaves.columns() {
            match column.physical_type() {
                parquet::basic::Type::FIXED_LEN_BYTE_ARRAY => {
                    properties =
                        properties.set_column_dictionary_enabled(column.path().clone(), false);
                }
                parquet::basic::Type::INT64 => {
                    properties = properties.set_column_dictionary_page_size_limit(
                        column.path().clone(),
                        INT64_DICTIONARY_BYTES,
                    );
                }
                _ => {}
            }
        }
        let properties = properties.build();
        std::fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
            action: "creating staging directory",
            path: dir.clone(),
            source,
        })?;
        let pool = EncodePool::new(options.encode_threads).map_err(|source| SinkError::Io {
            action: "starting encoding threads for",
            path: dir.clone(),
            source,
        })?;
        let read_ahead = ReadAhead::start().map_err(|source| SinkError::Io {
            action: "starting the thread that reads rows set aside back for",
            path: dir.clone(),
            source,
        })?;
        Ok(PartitionedWriter {
            files: FileSettings {
                dir,
                schema,
                options,
                properties: Arc::new(properties),
                pool: Arc::new(pool),
                file_prefix,
                open_files: Arc::default(),
            },
            spec,
            buffered_bytes: 0,
            partitions: HashMap::new(),
            partitions_seen: 0,
            spilled_rows: 0,
            splits: 0,
            peak_buffered_bytes: 0,
            peak_encoded_bytes: 0,
            incoming: Vec::new(),
            incoming_rows: 0,
            incoming_bytes: 0,
            clock: 0,
            created_dirs: BTreeSet::new(),
            read_ahead,
        })
    }

    /// Gathers `batch`'s rows for their partitions' files.
    ///
    /// A partitioned table's batches wait whole until they hold
    /// [`SPLIT_ROWS_PER_PARTITION`] rows per partition seen, or the rows held in memory pass
    /// the budget, and are then split by partition at once: the split's per-part costs are
    /// paid once for many rows, and parts are large enough to go to disk as they are (see
    /// the module documentation).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.check_schema(batch)?;
        if self.spec.fields.is_empty() {
            return self.append(PartitionKey::default(), batch.clone());
        }
        self.incoming_rows += batch.num_rows();
        self.incoming_bytes += batch.get_array_memory_size();
        self.incoming.push(batch.clone());
        let held = self.buffered_bytes + self.incoming_bytes;
        self.peak_buffered_bytes = self.peak_buffered_bytes.max(held);
        // Until the first split, the partitions are not known: the budget alone decides.
        let enough_rows = match self.partitions_seen {
            0 => usize::MAX,
            seen => seen * SPLIT_ROWS_PER_PARTITION,
        };
        if held > self.files.options.buffered_bytes_budget || self.incoming_rows >= enough_rows {
            self.split_incoming(false)?;
        }
        Ok(())
    }

    /// Splits the batches waiting by partition, each partition's rows gathered from all of
    /// them in one copy, on the encoding threads.
    ///
    /// A partition whose rows (on disk, gathered and new) still make no whole row group has
    /// its new part written to its file of rows set aside by the thread that made it,
    /// behind the rows it gathered: only a part per thread is in memory at once besides the
    /// batches being split. The parts of other partitions are gathered
    /// ([`PartitionedWriter::append`]). At the end of the load (`at_end`) no file of rows
    /// set aside is started, as its rows would be read back at once; a partition that has
    /// one still writes its last part there, so that the last split holds no more than the
    /// others.
    fn split_incoming(&mut self, at_end: bool) -> Result<(), SinkError> {
        let batches = std::mem::take(&mut self.incoming);
        if !batches.is_empty() {
            self.splits += 1;
        }
        self.incoming_rows = 0;
        self.incoming_bytes = 0;
        // Partitions in order of first appearance, each with its rows' (batch, row).
        let mut order: Vec<PartitionKey> = Vec::new();
        let mut rows_of: HashMap<PartitionKey, Vec<(usize, usize)>> = HashMap::new();
        let mut reordered = false;
        for (b, batch) in batches.iter().enumerate() {
            let parts = partition_rows(batch, &self.spec)?;
            let mut slots: Vec<Vec<(usize, usize)>> = vec![Vec::new(); parts.keys.len()];
            for (row, &k) in parts.rows.iter().enumerate() {
                slots[k as usize].push((b, row));
            }
            if let Some(lines) = line_numbers(batch) {
                for rows in &mut slots {
                    reordered |= restore_line_order(rows, lines);
                }
            }
            for (key, rows) in parts.keys.into_iter().zip(slots) {
                match rows_of.get_mut(&key) {
                    Some(all) => all.extend(rows),
                    None => {
                        order.push(key.clone());
                        rows_of.insert(key, rows);
                    }
                }
            }
        }
        if order.len() == 1 && !reordered {
            // Every row in one partition (one month, say): the batches as they are, no copy.
            let key = order.pop().expect("one key");
            for batch in batches {
                self.append(key.clone(), batch)?;
            }
            return Ok(());
        }
        // Every partition is made before any is taken out of the map, so that a failure to
        // make one leaves the others where they were.
        for key in &order {
            self.partition(key)?;
        }
        let group = self.files.options.row_group_rows;
        let mut spill_room = self
            .files
            .options
            .max_open_files
            .saturating_sub(self.spill_files());
        let mut work = Vec::with_capacity(order.len());
        for key in order {
            let rows = rows_of.remove(&key).expect("listed above");
            let state = &self.partitions[&key];
            let has_file = state.spilled.is_some();
            let to_disk =
                state.rows_left() + rows.len() < group && (has_file || (!at_end && spill_room > 0));
            let state = if to_disk {
                if !has_file {
                    spill_room -= 1;
                }
                let state = self.partitions.remove(&key).expect("made above");
                self.buffered_bytes -= state.pending_bytes.min(self.buffered_bytes);
                Some(state)
            } else {
                None
            };
            work.push((key, rows, state));
        }
        let sources: Vec<&RecordBatch> = batches.iter().collect();
        let schema = &self.files.schema;
        let placed = self.files.pool.map(work, |(key, rows, state)| {
            let part = arrow::compute::interleave_record_batch(&sources, &rows).map_err(|source| {
                SinkError::Arrow {
                    partition: key.relative_dir(),
                    source,
                }
            });
            let placed = match state {
                Some(mut state) => {
                    let rows = part.and_then(|part| state.spill(schema, Some(part)));
                    Placed::SetAside(Box::new(state), rows)
                }
                None => Placed::Kept(part),
            };
            (key, placed)
        });
        // The batches split are freed before the parts kept are gathered.
        drop(sources);
        drop(batches);
        // Every partition taken out goes back before any error is returned.
        let mut result = Ok(());
        let mut kept = Vec::new();
        for (key, placed) in placed {
            match placed {
                Placed::SetAside(state, rows) => {
                    self.partitions.insert(key, *state);
                    match rows {
                        Ok(rows) => self.spilled_rows += rows,
                        Err(e) if result.is_ok() => result = Err(e),
                        Err(_) => {}
                    }
                }
                Placed::Kept(part) => kept.push((key, part)),
            }
        }
        result?;
        for (key, part) in kept {
            self.append(key, part?)?;
        }
        Ok(())
    }

    /// Writes every partition's last rows, closes every file, makes files and directories
    /// durable, and lists the files.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, SinkError> {
        self.split_incoming(true)?;
        if self.partitions.is_empty() {
            // A load without rows still leaves a file, with the table's columns and no row
            // group: a table of empty loads is then an empty table to readers, where a glob
            // that matches no file is an error (DuckDB, Spark). Partitioned, it goes where
            // rows with null keys would, so hive readers see the key columns too.
            let key = PartitionKey {
                values: self
                    .spec
                    .fields
                    .iter()
                    .map(|f| (f.key_name(), None))
                    .collect(),
            };
            self.partition(&key)?;
            let state = self.partitions.get_mut(&key).expect("made above");
            state.open_file(&self.files)?;
        }
        // The files of partitions with nothing left to write are complete.
        for state in self.partitions.values_mut() {
            if state.rows_left() == 0 {
                state.close_file(&self.files)?;
            }
        }
        // Partitions with a small row group left are finished several at a time; in a
        // larger one the columns give the threads enough work each.
        let small = self.files.options.row_group_rows / FINISH_AT_ONCE_SHARE;
        let mut at_once: Vec<(PartitionKey, PartitionState)> = self
            .partitions
            .extract_if(|_, s| (1..=small).contains(&s.rows_left()))
            .collect();
        let threads = self
            .files
            .options
            .encode_threads
            .min(at_once.len())
            .min(self.files.options.max_open_files);
        if threads < 2 {
            self.partitions.extend(at_once.drain(..));
        }
        let alone: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.rows_left() > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for key in alone {
            self.write_pending(&key, false)?;
            self.partitions
                .get_mut(&key)
                .expect("listed above")
                .close_file(&self.files)?;
        }
        if !at_once.is_empty() {
            self.finish_at_once(at_once, threads)?;
        }
        // Children before parents, then the staging directory itself.
        for dir in self
            .created_dirs
            .iter()
            .rev()
            .chain(std::iter::once(&self.files.dir))
        {
            sync_dir(dir)?;
        }
        let mut written: Vec<WrittenFile> = self
            .partitions
            .values_mut()
            .flat_map(|s| std::mem::take(&mut s.written))
            .collect();
        written.sort_by(|a, b| a.path.cmp(&b.path));
        tracing::debug!(
            files = written.len(),
            partitions = self.partitions.len(),
            peak_gathered_mib = self.peak_buffered_bytes >> 20,
            peak_row_groups_mib = self
                .partitions
                .values()
                .map(|s| s.peak_group_bytes)
                .fold(self.peak_encoded_bytes, usize::max)
                >> 20,
            peak_open_files = self.files.open_files.peak.load(Ordering::Relaxed),
            rows_set_aside = self.spilled_rows,
            splits = self.splits,
            "Parquet files written"
        );
        Ok(written)
    }

    /// Writes the last rows of `rest`'s partitions and closes their files, `at_once`
    /// partitions at a time on the encoding threads. Each partition's last rows (read back
    /// from disk, encoded, the file closed) are independent of the others', so each thread
    /// takes whole partitions, instead of all sharing the columns of one small row group
    /// at a time while the rows of the next are read back.
    fn finish_at_once(
        &mut self,
        mut rest: Vec<(PartitionKey, PartitionState)>,
        at_once: usize,
    ) -> Result<(), SinkError> {
        let partitioned = !self.spec.fields.is_empty();
        // A partition being finished may open a file: room is kept for one per thread
        // under the bound on open files, by closing the least recently used.
        let max_open = self.files.options.max_open_files;
        rest.sort_by_key(|(_, s)| s.last_used);
        let mut open = rest.iter().filter(|(_, s)| s.open.is_some()).count();
        for (_, state) in rest.iter_mut() {
            if open + at_once <= max_open {
                break;
            }
            if state.open.is_some() {
                state.close_file(&self.files)?;
                open -= 1;
            }
        }
        // Largest first, so that the last to finish is a small one.
        rest.sort_by_key(|(_, s)| std::cmp::Reverse(s.rows_left()));
        // A partition's columns are encoded on the thread that took it, so that a thread
        // waiting for its columns never takes up another partition (and its memory).
        let serial = FileSettings {
            pool: Arc::new(EncodePool::serial()),
            ..self.files.clone()
        };
        // More encoding threads than open files allowed (not so on any usual machine):
        // in waves, so that no more partitions than the room kept are in progress.
        let wave = if self.files.options.encode_threads > at_once {
            at_once.max(1)
        } else {
            rest.len().max(1)
        };
        while !rest.is_empty() {
            let some: Vec<_> = rest.drain(..wave.min(rest.len())).collect();
            let finished = self.files.pool.map(some, |(key, mut state)| {
                if let Some(file) = state.open.as_mut() {
                    file.writer.set_pool(serial.pool.clone());
                }
                // Several partitions at once: each reads its own rows back.
                state.write_gathered(&serial, false, partitioned, None)?;
                state.close_file(&serial)?;
                Ok((key, state))
            });
            for done in finished {
                let (key, state) = done?;
                self.partitions.insert(key, state);
            }
        }
        Ok(())
    }

    fn check_schema(&self, batch: &RecordBatch) -> Result<(), SinkError> {
        let got = batch.schema();
        let schema = &self.files.schema;
        if got.fields().len() != schema.fields().len() {
            return Err(SinkError::SchemaMismatch {
                detail: format!(
                    "{} columns, expected {}",
                    got.fields().len(),
                    schema.fields().len()
                ),
            });
        }
        for (g, e) in got.fields().iter().zip(schema.fields()) {
            if g.name() != e.name() || g.data_type() != e.data_type() {
                return Err(SinkError::SchemaMismatch {
                    detail: format!(
                        "column {} {}, expected {} {}",
                        g.name(),
                        g.data_type(),
                        e.name(),
                        e.data_type()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Gathers rows of one partition; writes them out as a row group when there are enough,
    /// and writes out the largest partition's rows when all gathered rows pass the budget.
    fn append(&mut self, key: PartitionKey, rows: RecordBatch) -> Result<(), SinkError> {
        self.partition(&key)?;
        let state = self.partitions.get_mut(&key).expect("made above");
        let bytes = rows.get_array_memory_size();
        state.pending_rows += rows.num_rows();
        state.pending_bytes += bytes;
        state.pending.push(rows);
        self.buffered_bytes += bytes;
        self.peak_buffered_bytes = self.peak_buffered_bytes.max(self.buffered_bytes);
        // A row group in progress holds per-column state (page buffers, dictionaries, codec
        // contexts) whatever its row count, so only an unpartitioned table, with its single
        // file, writes through; partitions gather whole row groups and write each at once.
        let threshold = if self.spec.fields.is_empty() {
            WRITE_THROUGH_ROWS.min(self.files.options.row_group_rows)
        } else {
            self.files.options.row_group_rows
        };
        if state.rows_left() >= threshold {
            self.write_pending(&key, true)?;
        }
        if self.buffered_bytes > self.files.options.buffered_bytes_budget
            && !self.spec.fields.is_empty()
        {
            self.spill_largest()?;
        }
        // Unpartitioned, or past the bound on spill files: the largest partition's rows are
        // written, as a smaller row group. Partitioned, down to half the budget, as when rows
        // are set aside: batches then wait for a large split again, instead of each being
        // split alone, a row group written after every one.
        let budget = self.files.options.buffered_bytes_budget;
        if self.buffered_bytes > budget {
            let target = if self.spec.fields.is_empty() {
                budget
            } else {
                budget / 2
            };
            while self.buffered_bytes > target {
                let largest = self
                    .partitions
                    .iter()
                    .filter(|(_, s)| s.pending_rows > 0)
                    .max_by_key(|(_, s)| s.pending_bytes)
                    .map(|(k, _)| k.clone());
                match largest {
                    Some(k) => self.write_pending(&k, false)?,
                    None => break,
                }
            }
        }
        while self.encoded_bytes() > self.files.options.encoded_bytes_budget {
            let largest = self
                .partitions
                .iter_mut()
                .filter(|(_, s)| s.group_bytes() > 0)
                .max_by_key(|(_, s)| s.group_bytes());
            match largest {
                Some((_, state)) => state.end_row_group()?,
                None => break,
            }
        }
        Ok(())
    }

    /// Makes the state of partition `key` (and its directory) when first seen, and marks it
    /// as just used.
    fn partition(&mut self, key: &PartitionKey) -> Result<(), SinkError> {
        self.clock += 1;
        let now = self.clock;
        if !self.partitions.contains_key(key) {
            // Every partition seen gets a file, so its directory is made at once.
            let rel_dir = key.relative_dir();
            let dir = self.partition_dir(&rel_dir)?;
            let state = PartitionState {
                seq: self.partitions_seen,
                rel_dir,
                dir,
                manifest_values: key.manifest_values(),
                files_started: 0,
                last_used: now,
                open: None,
                pending: Vec::new(),
                pending_rows: 0,
                pending_bytes: 0,
                spilled: None,
                written: Vec::new(),
                peak_group_bytes: 0,
            };
            self.partitions.insert(key.clone(), state);
            self.partitions_seen += 1;
        }
        self.partitions
            .get_mut(key)
            .expect("inserted above")
            .last_used = now;
        Ok(())
    }

    /// Sets the largest partitions' gathered rows aside on disk until half the budget is
    /// left, each partition's in a file of its own (at most `max_open_files` of them). The
    /// partitions are written out several at a time on the encoding threads: copying rows
    /// into files is most of what the writer thread did, and it held up the whole load.
    fn spill_largest(&mut self) -> Result<(), SinkError> {
        let target = self.files.options.buffered_bytes_budget / 2;
        let mut largest: Vec<(PartitionKey, usize, bool)> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.pending_rows > 0)
            .map(|(k, s)| (k.clone(), s.pending_bytes, s.spilled.is_some()))
            .collect();
        largest.sort_by_key(|(_, bytes, _)| std::cmp::Reverse(*bytes));
        let mut files = self.spill_files();
        let mut work = Vec::new();
        for (key, _, has_file) in largest {
            if self.buffered_bytes <= target {
                break;
            }
            if !has_file {
                if files >= self.files.options.max_open_files {
                    continue;
                }
                files += 1;
            }
            let state = self.partitions.remove(&key).expect("listed above");
            self.buffered_bytes -= state.pending_bytes.min(self.buffered_bytes);
            work.push((key, state));
        }
        let schema = &self.files.schema;
        let spilled = self.files.pool.map(work, |(key, mut state)| {
            let rows = state.spill(schema, None);
            (key, state, rows)
        });
        let mut result = Ok(());
        for (key, state, rows) in spilled {
            self.partitions.insert(key, state);
            match rows {
                Ok(rows) => self.spilled_rows += rows,
                Err(e) if result.is_ok() => result = Err(e),
                Err(_) => {}
            }
        }
        result
    }

    /// Partitions with rows set aside on disk, one file each.
    fn spill_files(&self) -> usize {
        self.partitions
            .values()
            .filter(|s| s.spilled.is_some())
            .count()
    }

    /// Partitions with an open file (at most `max_open_files`).
    fn open_files(&self) -> usize {
        self.files.open_files.now.load(Ordering::Relaxed)
    }

    /// Memory of the row groups in progress in all open files, as last measured.
    fn encoded_bytes(&self) -> usize {
        self.partitions
            .values()
            .map(PartitionState::group_bytes)
            .sum()
    }

    /// Writes a partition's rows set aside and gathered (see
    /// [`PartitionState::write_gathered`]), first closing the least recently used file if
    /// the partition needs one and none may be opened.
    fn write_pending(&mut self, key: &PartitionKey, whole_groups: bool) -> Result<(), SinkError> {
        if self.partitions[key].open.is_none()
            && self.open_files() >= self.files.options.max_open_files
        {
            self.close_least_recently_used()?;
        }
        let partitioned = !self.spec.fields.is_empty();
        let state = self.partitions.get_mut(key).expect("known partition");
        self.buffered_bytes -= state.pending_bytes.min(self.buffered_bytes);
        state.write_gathered(
            &self.files,
            whole_groups && partitioned,
            partitioned,
            Some(&self.read_ahead),
        )?;
        self.buffered_bytes += state.pending_bytes;
        self.peak_encoded_bytes = self.peak_encoded_bytes.max(self.encoded_bytes());
        Ok(())
    }

    fn close_least_recently_used(&mut self) -> Result<(), SinkError> {
        let oldest = self
            .partitions
            .values_mut()
            .filter(|s| s.open.is_some())
            .min_by_key(|s| s.last_used);
        match oldest {
            Some(state) => state.close_file(&self.files),
            None => Ok(()),
        }
    }

    /// The staging directory of a partition, created (and remembered, to be made durable at
    /// the end) if missing.
    fn partition_dir(&mut self, rel_dir: &str) -> Result<PathBuf, SinkError> {
        let root = &self.files.dir;
        let dir = root.join(rel_dir);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
                action: "creating partition directory",
                path: dir.clone(),
                source,
            })?;
            let mut d = dir.as_path();
            while d != root {
                self.created_dirs.insert(d.to_path_buf());
                d = d.parent().expect("inside the staging directory");
            }
        }
        Ok(dir)
    }
}

impl PartitionState {
    /// Rows gathered or set aside and not yet written.
    fn rows_left(&self) -> usize {
        self.pending_rows + self.spilled.as_ref().map_or(0, SpilledRows::rows)
    }

    /// Memory of the row group in progress, as last measured.
    fn group_bytes(&self) -> usize {
        self.open.as_ref().map_or(0, |f| f.group_bytes)
    }

    /// Takes the rows gathered in memory (the caller takes their bytes out of its budget).
    fn take_pending(&mut self) -> Vec<RecordBatch> {
        self.pending_rows = 0;
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }

    /// Sets the gathered rows aside on disk, as one batch, in the partition's spill file
    /// (created if missing), followed by `newer` rows if given; returns how many rows. The
    /// caller takes the gathered rows' bytes out of its budget.
    fn spill(&mut self, schema: &SchemaRef, newer: Option<RecordBatch>) -> Result<u64, SinkError> {
        let pending = self.take_pending();
        let mut rows = combine(schema, &self.rel_dir, pending)?;
        rows.extend(newer);
        if self.spilled.is_none() {
            let spilled =
                SpilledRows::create(&self.dir, schema.clone()).map_err(|source| SinkError::Io {
                    action: "creating a temporary file for gathered rows in",
                    path: self.dir.clone(),
                    source,
                })?;
            self.spilled = Some(spilled);
        }
        let spilled = self.spilled.as_mut().expect("created above");
        let mut count = 0;
        for batch in rows {
            count += batch.num_rows() as u64;
            spilled.append(&batch).map_err(|source| match source {
                arrow::error::ArrowError::IoError(_, source) => SinkError::Io {
                    action: "setting rows aside in a temporary file in",
                    path: self.dir.clone(),
                    source,
                },
                source => SinkError::Arrow {
                    partition: self.rel_dir.clone(),
                    source,
                },
            })?;
        }
        Ok(count)
    }

    /// Writes the rows set aside and gathered, oldest first, into the file's row group in
    /// progress, rolling files over at `max_rows_per_file`. With `whole_groups`, only whole
    /// row groups are written and the rest stays gathered (`pending_bytes` says how much).
    /// With `end_group`, the row group in progress ends when the rows are written. Rows set
    /// aside are read back on `read_ahead`'s thread if given, else on this one.
    fn write_gathered(
        &mut self,
        files: &FileSettings,
        whole_groups: bool,
        end_group: bool,
        read_ahead: Option<&ReadAhead>,
    ) -> Result<(), SinkError> {
        let pending = self.take_pending();
        let batches = combine(&files.schema, &self.rel_dir, pending)?;
        let spilled = self.spilled.take();
        let spilled_rows = spilled.as_ref().map_or(0, SpilledRows::rows);
        let total = spilled_rows + batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        let group = files.options.row_group_rows;
        let limit = if whole_groups {
            total / group * group
        } else {
            total
        };
        let older = spilled.into_iter().flat_map(|rows| match read_ahead {
            Some(reader) => reader.read(rows),
            None => Box::new(rows.into_batches()),
        });
        let mut written = 0;
        let mut rest = Vec::new();
        // Rows go to the encoder a few thousand at a time: few calls, little held at once.
        let mut chunk = Vec::new();
        let mut chunk_rows = 0;
        for rows in older.chain(batches.into_iter().map(Ok)) {
            let rows = rows.map_err(|source| SinkError::Arrow {
                partition: self.rel_dir.clone(),
                source,
            })?;
            let take = rows.num_rows().min(limit - written);
            if take < rows.num_rows() {
                rest.push(rows.slice(take, rows.num_rows() - take));
            }
            if take > 0 {
                chunk.push(rows.slice(0, take));
                chunk_rows += take;
                written += take;
            }
            if chunk_rows >= WRITE_THROUGH_ROWS {
                self.write_rows(files, std::mem::take(&mut chunk))?;
                chunk_rows = 0;
            }
        }
        if !chunk.is_empty() {
            self.write_rows(files, chunk)?;
        }
        if !rest.is_empty() {
            // A copy of the rows kept, so that they do not hold a whole batch's buffers.
            let kept = arrow::compute::concat_batches(&files.schema, &rest).map_err(|source| {
                SinkError::Arrow {
                    partition: self.rel_dir.clone(),
                    source,
                }
            })?;
            self.pending_rows = kept.num_rows();
            self.pending_bytes = kept.get_array_memory_size();
            self.pending = vec![kept];
        }
        if end_group {
            self.end_row_group()
        } else {
            self.measure_group();
            Ok(())
        }
    }

    /// Encodes rows into the partition's file, opening files as needed and rolling them
    /// over at `max_rows_per_file`.
    fn write_rows(
        &mut self,
        files: &FileSettings,
        batches: Vec<RecordBatch>,
    ) -> Result<(), SinkError> {
        let mut queue: std::collections::VecDeque<RecordBatch> = batches.into();
        while !queue.is_empty() {
            if self.open.is_none() {
                self.open_file(files)?;
            }
            let file = self.open.as_mut().expect("opened above");
            // The rows that still fit in this file, handed to the encoder a few thousand
            // per call (its threads share the work of a call), so that the memory of the
            // row group in progress is measured between calls.
            let room =
                (files.options.max_rows_per_file - file.rows as usize).min(WRITE_THROUGH_ROWS);
            let mut chunk = Vec::new();
            let mut n = 0;
            while n < room {
                let Some(rows) = queue.pop_front() else { break };
                let take = rows.num_rows().min(room - n);
                if take < rows.num_rows() {
                    queue.push_front(rows.slice(take, rows.num_rows() - take));
                }
                chunk.push(rows.slice(0, take));
                n += take;
            }
            file.writer
                .write(&chunk)
                .map_err(|source| SinkError::Parquet {
                    path: file.path.clone(),
                    partition: self.rel_dir.clone(),
                    source,
                })?;
            file.rows += n as u64;
            // A partition writes a whole row group in one go: the budget on memory in
            // progress holds within it too.
            let group_bytes = file.writer.memory_size();
            self.peak_group_bytes = self.peak_group_bytes.max(group_bytes);
            if file.rows as usize >= files.options.max_rows_per_file {
                self.close_file(files)?;
            } else if group_bytes > files.options.encoded_bytes_budget {
                self.end_row_group()?;
            }
        }
        Ok(())
    }

    /// Ends the row group in progress in the partition's file.
    fn end_row_group(&mut self) -> Result<(), SinkError> {
        if let Some(file) = self.open.as_mut() {
            file.writer
                .end_row_group()
                .map_err(|source| SinkError::Parquet {
                    path: file.path.clone(),
                    partition: self.rel_dir.clone(),
                    source,
                })?;
        }
        self.measure_group();
        Ok(())
    }

    /// Updates the encoded size of the row group in progress.
    fn measure_group(&mut self) {
        if let Some(file) = self.open.as_mut() {
            file.group_bytes = file.writer.memory_size();
        }
    }

    fn open_file(&mut self, files: &FileSettings) -> Result<(), SinkError> {
        let name = format!(
            "{}-{:05}-{:05}.parquet",
            files.file_prefix, self.seq, self.files_started
        );
        let rel_path = if self.rel_dir.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", self.rel_dir)
        };
        let path = self.dir.join(&name);
        // `create_new`: two files of one load never share a name, so an existing file is a bug.
        let file = File::create_new(&path).map_err(|source| SinkError::Io {
            action: "creating file",
            path: path.clone(),
            source,
        })?;
        let writer = ParquetFile::try_new(
            file,
            files.schema.clone(),
            (*files.properties).clone(),
            files.pool.clone(),
        )
        .map(|writer| writer.spill_pages_to(self.dir.clone()))
        .map_err(|source| SinkError::Parquet {
            path: path.clone(),
            partition: self.rel_dir.clone(),
            source,
        })?;
        self.files_started += 1;
        files.open_files.opened();
        self.open = Some(OpenFile {
            writer,
            path,
            rel_path,
            rows: 0,
            group_bytes: 0,
        });
        Ok(())
    }

    /// Writes the footer of the open file (if any), fsyncs it and records it.
    fn close_file(&mut self, files: &FileSettings) -> Result<(), SinkError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        files.open_files.closed();
        let file = open
            .writer
            .into_inner()
            .map_err(|source| SinkError::Parquet {
                path: open.path.clone(),
                partition: self.rel_dir.clone(),
                source,
            })?;
        let io_err = |action, source| SinkError::Io {
            action,
            path: open.path.clone(),
            source,
        };
        file.sync_all().map_err(|e| io_err("syncing", e))?;
        let bytes = file
            .metadata()
            .map_err(|e| io_err("reading size of", e))?
            .len();
        self.written.push(WrittenFile {
            path: open.rel_path,
            rows: open.rows,
            bytes,
            partition: self.manifest_values.clone(),
        });
        Ok(())
    }
}

/// Pieces of many decoded batches (a few rows each when rows spread over many partitions)
/// become one batch: the encoder's per-call and per-array costs are then paid once per
/// column instead of once per piece. Pieces of [`COMBINE_BELOW_ROWS`] rows or more are
/// not worth the copy.
fn combine(
    schema: &SchemaRef,
    rel_dir: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, SinkError> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if batches.len() > 1 && total / batches.len() < COMBINE_BELOW_ROWS {
        let rows = arrow::compute::concat_batches(schema, &batches).map_err(|source| {
            SinkError::Arrow {
                partition: rel_dir.to_owned(),
                source,
            }
        })?;
        Ok(vec![rows])
    } else {
        Ok(batches)
    }
}

/// The line numbers of `batch`'s rows (its `_line` lineage column), if it has them.
fn line_numbers(batch: &RecordBatch) -> Option<&[i64]> {
    let lines = batch.column_by_name(LINEAGE_LINE)?;
    Some(lines.as_primitive_opt::<Int64Type>()?.values())
}

/// Puts one partition's rows of a batch back in line order, if they are not; true if it
/// had to. A decoder takes a batch's lines grouped by partition ([`crate::grouping`]), and
/// where the grouping's hint and the partition disagree (a null and a missing value, an
/// instant with an offset past the end of a month) one partition's rows come in two runs.
/// A source's rows keep their line order in every file, whatever the grouping did.
fn restore_line_order(rows: &mut [(usize, usize)], lines: &[i64]) -> bool {
    if rows.windows(2).all(|w| lines[w[0].1] <= lines[w[1].1]) {
        return false;
    }
    rows.sort_by_key(|&(_, row)| lines[row]);
    true
}

/// Fsyncs a directory so entries created in it survive a crash (a no-op where directories
/// cannot be opened as files).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| SinkError::Io {
                action: "syncing directory",
                path: dir.to_path_buf(),
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DataType, Granularity, PartitionField};
    use arrow::array::{AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType as ArrowType, Field, Int64Type, Schema, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::collections::BTreeMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("Kind", ArrowType::Utf8, true),
            Field::new(
                "ConsumedUtc",
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("_line", ArrowType::Int64, false),
        ]))
    }

    fn batch(kinds: &[Option<&str>], first_line: i64) -> RecordBatch {
        let n = kinds.len();
        let day = 86_400_000_000i64;
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(kinds.to_vec())),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        (0..n as i64).map(|i| i * 40 * day),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from_iter_values(
                    first_line..first_line + n as i64,
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn whole_batches_are_kept_and_small_pieces_are_gathered() {
        // Decoded batches of ~1 000 rows (2 MiB of order items) go on as they are, buffers
        // and all; pieces of a split are copied into one batch.
        let whole = vec![
            batch(&vec![Some("a"); 1000], 1),
            batch(&vec![Some("a"); 1000], 1001),
        ];
        let kept = combine(&schema(), "", whole.clone()).unwrap();
        assert_eq!(kept.len(), 2);
        for (out, given) in kept.iter().zip(&whole) {
            assert!(out.column(0).to_data().ptr_eq(&given.column(0).to_data()));
        }
        let pieces: Vec<RecordBatch> = (0..5)
            .map(|i| batch(&vec![Some("b"); 100], 1 + 100 * i))
            .collect();
        let gathered = combine(&schema(), "", pieces.clone()).unwrap();
        assert_eq!(gathered.len(), 1);
        assert_eq!(
            gathered[0],
            arrow::compute::concat_batches(&schema(), &pieces).unwrap()
        );
    }

    /// A writer of `schema()` into `dir` with load id `l`, as most tests need one.
    fn writer(dir: &Path, spec: PartitionSpec, options: WriterOptions) -> PartitionedWriter {
        PartitionedWriter::new(dir.into(), schema(), spec, options, "l".into()).unwrap()
    }

    fn kind_spec() -> PartitionSpec {
        PartitionSpec {
            fields: vec![PartitionField {
                column: "Kind".into(),
                column_index: 0,
                data_type: DataType::String,
                granularity: None,
            }],
        }
    }

    /// Reads every file back: `_line` values per file, checking the footer's row count.
    fn read_lines(dir: &Path, files: &[WrittenFile]) -> BTreeMap<String, Vec<i64>> {
        let mut out = BTreeMap::new();
        for f in files {
            let path = dir.join(&f.path);
            assert!(path.starts_with(dir));
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap();
            let mut lines = Vec::new();
            for b in reader {
                let b = b.unwrap();
                lines.extend(
                    b.column(2)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
            }
            assert_eq!(lines.len() as u64, f.rows, "{}", f.path);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), f.bytes);
            out.insert(f.path.clone(), lines);
        }
        out
    }

    #[test]
    fn rows_land_in_their_partitions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        let spec = PartitionSpec {
            fields: vec![PartitionField {
                column: "ConsumedUtc".into(),
                column_index: 1,
                data_type: DataType::Timestamp,
                granularity: Some(Granularity::Month),
            }],
        };
        let mut w = PartitionedWriter::new(
            dir.clone(),
            schema(),
            spec,
            WriterOptions::default(),
            "load1".into(),
        )
        .unwrap();
        // Rows are 40 days apart from 1970-01-01: January, February, March, May.
        w.write(&batch(&[Some("a"); 4], 1)).unwrap();
        w.write(&batch(&[Some("a"); 2], 5)).unwrap();
        let files = w.finish().unwrap();
        let lines = read_lines(&dir, &files);
        let expected: BTreeMap<String, Vec<i64>> = [
            (
                "ConsumedUtc_month=1970-01/load1-00000-00000.parquet".to_owned(),
                vec![1, 5],
            ),
            (
                "ConsumedUtc_month=1970-02/load1-00001-00000.parquet".to_owned(),
                vec![2, 6],
            ),
            (
                "ConsumedUtc_month=1970-03/load1-00002-00000.parquet".to_owned(),
                vec![3],
            ),
            (
                "ConsumedUtc_month=1970-05/load1-00003-00000.parquet".to_owned(),
                vec![4],
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(lines, expected);
        assert_eq!(
            files[0].partition,
            vec![("ConsumedUtc_month".to_owned(), "1970-01".to_owned())]
        );
    }

    #[test]
    fn files_roll_over_at_max_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let options = WriterOptions {
            max_rows_per_file: 3,
            row_group_rows: 2,
            ..WriterOptions::default()
        };
        let mut w = writer(tmp.path(), PartitionSpec::default(), options);
        w.write(&batch(&[Some("a"); 5], 1)).unwrap();
        w.write(&batch(&[Some("a"); 3], 6)).unwrap();
        let files = w.finish().unwrap();
        let lines = read_lines(tmp.path(), &files);
        assert_eq!(
            lines.into_iter().collect::<Vec<_>>(),
            vec![
                ("l-00000-00000.parquet".to_owned(), vec![1, 2, 3]),
                ("l-00000-00001.parquet".to_owned(), vec![4, 5, 6]),
                ("l-00000-00002.parquet".to_owned(), vec![7, 8]),
            ]
        );
        let meta = ParquetRecordBatchReaderBuilder::try_new(
            File::open(tmp.path().join("l-00000-00000.parquet")).unwrap(),
        )
        .unwrap()
        .metadata()
        .clone();
        assert_eq!(
            meta.num_row_groups(),
            2,
            "row groups of row_group_rows rows"
        );
    }

    /// Files written, the lines of each, and the row-group sizes of each.
    type Spread = (
        Vec<WrittenFile>,
        BTreeMap<String, Vec<i64>>,
        BTreeMap<String, Vec<i64>>,
    );

    /// Rows of each batch the tests write.
    const BATCH_ROWS: usize = 4096;

    /// Writes `rounds` batches of BATCH_ROWS rows spread over `kinds` partitions with a
    /// tiny memory budget; returns the files, the lines of each, and the row-group sizes.
    fn write_spread(kinds: &[&str], rounds: usize, options: WriterOptions) -> Spread {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = writer(tmp.path(), kind_spec(), options);
        let mut line = 1;
        for round in 0..rounds {
            let rows: Vec<Option<&str>> = (0..BATCH_ROWS)
                .map(|i| Some(kinds[(i * 7 + round) % kinds.len()]))
                .collect();
            w.write(&batch(&rows, line)).unwrap();
            line += BATCH_ROWS as i64;
        }
        let open_files = w.files.open_files.clone();
        let max_open_files = w.files.options.max_open_files;
        let files = w.finish().unwrap();
        let names: BTreeSet<&str> = files
            .iter()
            .map(|f| f.path.rsplit_once('/').map_or(f.path.as_str(), |(_, n)| n))
            .collect();
        assert_eq!(names.len(), files.len(), "file names are unique: {files:?}");
        let peak = open_files.peak.load(Ordering::Relaxed);
        assert!(
            peak <= max_open_files,
            "{peak} files open at once, {max_open_files} allowed"
        );
        let lines = read_lines(tmp.path(), &files);
        let mut groups = BTreeMap::new();
        for f in &files {
            groups.insert(f.path.clone(), row_group_sizes(&tmp.path().join(&f.path)));
        }
        let mut left: Vec<PathBuf> = walk(tmp.path());
        left.retain(|p| p.extension().is_none_or(|e| e != "parquet"));
        assert!(
            left.is_empty(),
            "nothing but Parquet files is left: {left:?}"
        );
        (files, lines, groups)
    }

    /// Rows of each row group of the Parquet file at `path`.
    fn row_group_sizes(path: &Path) -> Vec<i64> {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect()
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn partitions_over_the_budget_are_set_aside_and_written_as_whole_row_groups() {
        let kinds = ["a", "b", "c", "d", "e", "f"];
        let options = WriterOptions {
            row_group_rows: 1000,
            buffered_bytes_budget: 16 * 1024,
            ..WriterOptions::default()
        };
        let (files, lines, groups) = write_spread(&kinds, 5, options);
        assert_eq!(files.len(), kinds.len(), "one file per partition");
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        for partition in lines.values() {
            assert!(
                partition.is_sorted(),
                "rows keep their order in a partition"
            );
        }
        all.sort_unstable();
        assert_eq!(all, (1..=5 * BATCH_ROWS as i64).collect::<Vec<_>>());
        for (path, sizes) in &groups {
            let (last, whole) = sizes.split_last().unwrap();
            assert!(whole.iter().all(|&n| n == 1000), "{path}: {sizes:?}");
            assert!(*last <= 1000 && *last > 0, "{path}: {sizes:?}");
        }
    }

    /// A partition writes a whole row group at once; past the budget on memory in progress
    /// it ends the group early there too, and the rows keep their order.
    #[test]
    fn partitions_end_row_groups_early_past_the_encoded_budget() {
        let kinds = ["a", "b"];
        let options = WriterOptions {
            row_group_rows: 100_000,
            encoded_bytes_budget: 1,
            ..WriterOptions::default()
        };
        let (files, lines, groups) = write_spread(&kinds, 40, options);
        assert_eq!(files.len(), kinds.len());
        for (path, rows) in &lines {
            assert!(rows.is_sorted(), "{path}: rows keep their order");
        }
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40 * BATCH_ROWS as i64).collect::<Vec<_>>());
        for (path, sizes) in &groups {
            assert!(sizes.len() > 1, "{path}: {sizes:?}");
        }
    }

    #[test]
    fn batches_wait_for_the_budget_and_are_split_together_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let kinds = ["a", "b", "c", "d"];
        let mixed = |i: usize, line| {
            let rows: Vec<Option<&str>> = (0..100).map(|r| Some(kinds[(r + i) % 4])).collect();
            batch(&rows, line)
        };
        let ten_batches = 10 * mixed(0, 1).get_array_memory_size();
        let options = WriterOptions {
            row_group_rows: 500,
            buffered_bytes_budget: ten_batches,
            ..WriterOptions::default()
        };
        let mut w = writer(tmp.path(), kind_spec(), options);
        let mut line = 1;
        for i in 0..60 {
            // Every fifth batch lies in a partition of its own, between mixed ones.
            let b = if i % 5 == 4 {
                batch(&[Some("z"); 100], line)
            } else {
                mixed(i, line)
            };
            w.write(&b).unwrap();
            line += 100;
            if i == 2 {
                assert_eq!(w.incoming.len(), 3, "batches under the budget wait whole");
            }
        }
        let files = w.finish().unwrap();
        let lines = read_lines(tmp.path(), &files);
        assert_eq!(lines.len(), 5, "one file per partition: {files:?}");
        for (path, rows) in &lines {
            assert!(rows.is_sorted(), "{path}: rows keep their order");
        }
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=6000).collect::<Vec<_>>(), "every row once");
        for f in &files {
            let sizes = row_group_sizes(&tmp.path().join(&f.path));
            let (last, whole) = sizes.split_last().unwrap();
            assert!(whole.iter().all(|&n| n == 500), "{}: {sizes:?}", f.path);
            assert!(*last <= 500, "{}: {sizes:?}", f.path);
        }
    }

    #[test]
    fn rows_of_a_partition_decoded_out_of_line_order_are_written_in_line_order() {
        // Lines grouped by partition before decoding can put one partition's rows in two
        // runs (a null and a missing value are one partition but two groups).
        let tmp = tempfile::tempdir().unwrap();
        let with_lines = |b: RecordBatch, lines: &[i64]| {
            let mut columns = b.columns().to_vec();
            columns[2] = Arc::new(Int64Array::from(lines.to_vec()));
            RecordBatch::try_new(schema(), columns).unwrap()
        };
        let mut w = writer(tmp.path(), kind_spec(), WriterOptions::default());
        // Two partitions, each out of order within the batch; then a batch of one partition
        // only, out of order too, which is not split at all.
        let mixed = batch(&[Some("a"), Some("b"), Some("a"), Some("b"), Some("a")], 1);
        w.write(&with_lines(mixed, &[3, 4, 1, 2, 5])).unwrap();
        w.split_incoming(false).unwrap();
        let single = batch(&[Some("c"), Some("c"), Some("c")], 6);
        w.write(&with_lines(single, &[8, 6, 7])).unwrap();
        w.split_incoming(false).unwrap();
        let files = w.finish().unwrap();
        let lines = read_lines(tmp.path(), &files);
        let by_kind: Vec<&Vec<i64>> = lines.values().collect();
        assert_eq!(by_kind, [&vec![1, 3, 5], &vec![2, 4], &vec![6, 7, 8]]);
    }

    #[test]
    fn past_the_bound_on_spill_files_batches_still_wait_for_a_large_split() {
        // Eight partitions, files of rows set aside for two: the others' rows are written
        // as smaller row groups when memory runs short, down to half the budget, so that
        // the next batches wait for a split of their own instead of being split one by one.
        let tmp = tempfile::tempdir().unwrap();
        let kinds = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mixed = |i: usize, line| {
            let rows: Vec<Option<&str>> = (0..100).map(|r| Some(kinds[(r + i) % 8])).collect();
            batch(&rows, line)
        };
        let options = WriterOptions {
            row_group_rows: 100_000,
            max_open_files: 2,
            buffered_bytes_budget: 10 * mixed(0, 1).get_array_memory_size(),
            ..WriterOptions::default()
        };
        let mut w = writer(tmp.path(), kind_spec(), options);
        for i in 0..200 {
            w.write(&mixed(i, 1 + 100 * i as i64)).unwrap();
        }
        assert!(w.splits <= 60, "{} splits of 200 batches", w.splits);
        let files = w.finish().unwrap();
        let lines = read_lines(tmp.path(), &files);
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=20_000).collect::<Vec<_>>(), "every row once");
    }

    #[test]
    fn partitions_finished_at_once_hold_what_one_at_a_time_would() {
        let kinds = ["a", "b", "c", "d", "e", "f"];
        let by_partition = |lines: &BTreeMap<String, Vec<i64>>| {
            let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for (path, rows) in lines {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
                out.entry(dir).or_default().extend(rows);
            }
            out
        };
        // ≈ 3413 rows a partition: three whole row groups, then a rest of ≈ 113 rows, small
        // enough to be finished at once. Six files allowed, all open at the end: finishing
        // two partitions at once first closes two.
        for max_open_files in [256, 6] {
            let run = |encode_threads| {
                let options = WriterOptions {
                    row_group_rows: 1100,
                    buffered_bytes_budget: 16 * 1024,
                    max_open_files,
                    encode_threads,
                    ..WriterOptions::default()
                };
                write_spread(&kinds, 5, options)
            };
            let (_, one_lines, one_groups) = run(1);
            let (files, lines, groups) = run(2);
            assert_eq!(by_partition(&lines), by_partition(&one_lines));
            let mut all: Vec<i64> = lines.values().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (1..=5 * BATCH_ROWS as i64).collect::<Vec<_>>());
            if max_open_files == 256 {
                assert_eq!(groups, one_groups, "the same files and row groups");
            } else {
                assert!(
                    files.len() > kinds.len(),
                    "open files were closed to make room for those opened at once"
                );
            }
        }
    }

    /// More encoding threads than files allowed: the partitions finished at once at the
    /// end stay within the bound (`write_spread` checks the peak of open files).
    #[test]
    fn finishing_at_once_keeps_to_the_open_files_bound_with_more_threads() {
        let kinds = ["a", "b", "c", "d", "e", "f"];
        // ≈ 20 000 rows a partition, all left for the end: several finishing at once.
        let options = WriterOptions {
            row_group_rows: 100_000,
            max_open_files: 2,
            encode_threads: 4,
            ..WriterOptions::default()
        };
        let (_, lines, _) = write_spread(&kinds, 30, options);
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=30 * BATCH_ROWS as i64).collect::<Vec<_>>());
    }

    #[test]
    fn rows_set_aside_in_more_partitions_than_files_allowed_are_still_written_once() {
        let kinds = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let options = WriterOptions {
            row_group_rows: 1000,
            max_open_files: 2,
            buffered_bytes_budget: 16 * 1024,
            ..WriterOptions::default()
        };
        let (_, lines, groups) = write_spread(&kinds, 4, options);
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=4 * BATCH_ROWS as i64).collect::<Vec<_>>());
        assert!(
            groups.values().flatten().any(|&n| n < 1000),
            "past the bound on spill files, smaller row groups are written: {groups:?}"
        );
    }

    #[test]
    fn lru_close_keeps_every_row_once() {
        let tmp = tempfile::tempdir().unwrap();
        // Row groups of one row: every batch is written at once, so files must be evicted.
        let options = WriterOptions {
            max_open_files: 2,
            row_group_rows: 1,
            buffered_bytes_budget: 16 * 1024,
            ..WriterOptions::default()
        };
        let mut w = writer(tmp.path(), kind_spec(), options);
        let kinds = ["a", "b", "c", "d", "e"];
        let mut line = 1;
        // Each batch passes the budget, so it is split (and written) as it comes.
        for round in 0..3 {
            let rows: Vec<Option<&str>> = (0..BATCH_ROWS)
                .map(|i| Some(kinds[(i + round) % 5]))
                .collect();
            w.write(&batch(&rows, line)).unwrap();
            line += BATCH_ROWS as i64;
            assert!(w.open_files() <= 2);
        }
        let files = w.finish().unwrap();
        let lines = read_lines(tmp.path(), &files);
        let mut all: Vec<i64> = lines.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=3 * BATCH_ROWS as i64).collect::<Vec<_>>());
        assert!(
            files.len() > 5,
            "evicted partitions got more files: {files:?}"
        );
        for f in &files {
            let kind = &f.partition[0].1;
            assert!(f.path.starts_with(&format!("Kind_value={kind}/")), "{f:?}");
        }
    }

    #[test]
    fn decimals_are_written_without_a_dictionary_at_any_depth() {
        use arrow::array::{Decimal128Array, StructArray};
        let amount = ArrowType::Decimal128(38, 9);
        let money = arrow::datatypes::Fields::from(vec![Field::new("Value", amount.clone(), true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("Kind", ArrowType::Utf8, true),
            Field::new("Total", amount.clone(), true),
            Field::new("Amount", ArrowType::Struct(money.clone()), true),
        ]));
        let values = || {
            Decimal128Array::from(vec![Some(1_500_000_000), None, Some(1_500_000_000)])
                .with_precision_and_scale(38, 9)
                .unwrap()
        };
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b"])),
                Arc::new(values()),
                Arc::new(StructArray::new(money, vec![Arc::new(values())], None)),
            ],
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut w = PartitionedWriter::new(
            tmp.path().into(),
            schema,
            PartitionSpec::default(),
            WriterOptions::default(),
            "d".into(),
        )
        .unwrap();
        w.write(&rows).unwrap();
        let files = w.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            File::open(tmp.path().join(&files[0].path)).unwrap(),
        )
        .unwrap();
        let group = reader.metadata().row_group(0).clone();
        let dictionary: Vec<(String, bool)> = group
            .columns()
            .iter()
            .map(|c| {
                (
                    c.column_path().string(),
                    c.dictionary_page_offset().is_some(),
                )
            })
            .collect();
        assert_eq!(
            dictionary,
            [
                ("Kind".to_string(), true),
                ("Total".to_string(), false),
                ("Amount.Value".to_string(), false)
            ]
        );
        let back: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(back, [rows], "values survive plain encoding");
    }

    #[test]
    fn plain_columns_are_written_without_a_dictionary() {
        let tmp = tempfile::tempdir().unwrap();
        let options = WriterOptions {
            plain_columns: vec!["_line".into()],
            ..WriterOptions::default()
        };
        let mut w = writer(tmp.path(), PartitionSpec::default(), options);
        w.write(&batch(&[Some("a"); 50], 1)).unwrap();
        let files = w.finish().unwrap();
        let meta = metadata_of(&tmp.path().join(&files[0].path));
        let dictionary = |name: &str| first_chunk(&meta, name).dictionary_page_offset().is_some();
        assert!(dictionary("Kind"), "other columns keep their dictionary");
        assert!(!dictionary("_line"));
    }

    /// The footer of the Parquet file at `path`.
    fn metadata_of(path: &Path) -> parquet::file::metadata::ParquetMetaData {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .metadata()
            .as_ref()
            .clone()
    }

    /// Column `name`'s chunk in the first row group.
    fn first_chunk<'m>(
        meta: &'m parquet::file::metadata::ParquetMetaData,
        name: &str,
    ) -> &'m parquet::file::metadata::ColumnChunkMetaData {
        meta.row_group(0)
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap()
    }

    #[test]
    fn nearly_distinct_instants_fall_back_to_plain_pages_and_repeated_ones_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = writer(
            tmp.path(),
            PartitionSpec::default(),
            WriterOptions::default(),
        );
        // More distinct instants than the dictionary holds, in one row group.
        let rows = INT64_DICTIONARY_BYTES / 8 + 4096;
        let mut repeated = batch(&vec![Some("a"); rows], 1).columns().to_vec();
        repeated[1] = Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                (0..rows as i64).map(|i| (i % 30) * 86_400_000_000),
            )
            .with_timezone("UTC"),
        );
        w.write(&RecordBatch::try_new(schema(), repeated).unwrap())
            .unwrap();
        w.write(&batch(&vec![Some("a"); rows], rows as i64 + 1))
            .unwrap();
        let files = w.finish().unwrap();
        let meta = metadata_of(&tmp.path().join(&files[0].path));
        assert_eq!(meta.num_row_groups(), 1);
        let data_pages = |name: &str| {
            let mask = *first_chunk(&meta, name).page_encoding_stats_mask().unwrap();
            (
                mask.is_set(parquet::basic::Encoding::RLE_DICTIONARY),
                mask.is_set(parquet::basic::Encoding::PLAIN),
            )
        };
        // The first half repeats 30 instants, the second has a new one every row.
        assert_eq!(
            data_pages("ConsumedUtc"),
            (true, true),
            "dictionary pages, then plain ones"
        );
        assert_eq!(
            data_pages("Kind"),
            (true, false),
            "strings keep their dictionary"
        );
    }

    #[test]
    fn rows_are_gathered_into_one_file_per_partition() {
        // Partitions interleaved in every batch, as months in an export: with row groups
        // larger than the input, each partition ends in exactly one file.
        let tmp = tempfile::tempdir().unwrap();
        let mut w = writer(tmp.path(), kind_spec(), WriterOptions::default());
        let kinds = ["a", "b", "c"];
        for round in 0..20 {
            let rows: Vec<Option<&str>> = (0..9).map(|i| Some(kinds[i % 3])).collect();
            w.write(&batch(&rows, 1 + round * 9)).unwrap();
        }
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files.iter().all(|f| f.rows == 60));
    }

    #[test]
    fn hostile_values_stay_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        let mut w = writer(&dir, kind_spec(), WriterOptions::default());
        let long = "x".repeat(1000);
        let hostile = [
            Some("../../x"),
            Some("/"),
            Some("\\"),
            Some("\0"),
            Some("CON"),
            Some(".."),
            Some(""),
            None,
            Some(long.as_str()),
        ];
        w.write(&batch(&hostile, 1)).unwrap();
        let files = w.finish().unwrap();
        assert_eq!(files.len(), hostile.len());
        read_lines(&dir, &files);
        // Nothing but the staging directory was created next to it.
        let siblings: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, vec![std::ffi::OsString::from("stage")]);
        // One level of partition directories, each holding one file.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            assert!(entry.file_type().unwrap().is_dir());
            assert_eq!(std::fs::read_dir(entry.path()).unwrap().count(), 1);
        }
        let raw: Vec<&str> = files.iter().map(|f| f.partition[0].1.as_str()).collect();
        assert!(
            raw.contains(&"../../x")
                && raw.contains(&"")
                && raw.contains(&"__HIVE_DEFAULT_PARTITION__")
        );
    }

    #[test]
    fn schema_mismatch_and_bad_options_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = WriterOptions {
            max_open_files: 0,
            ..WriterOptions::default()
        };
        assert!(
            PartitionedWriter::new(tmp.path().into(), schema(), kind_spec(), bad, "l".into())
                .is_err()
        );
        assert!(PartitionedWriter::new(
            tmp.path().into(),
            schema(),
            kind_spec(),
            WriterOptions::default(),
            "../l".into()
        )
        .is_err());
        let mut w = writer(tmp.path(), kind_spec(), WriterOptions::default());
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", ArrowType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        assert!(matches!(
            w.write(&other),
            Err(SinkError::SchemaMismatch { .. })
        ));
        let _ = w.finish().unwrap();
    }

    #[test]
    fn compression_parses_and_round_trips() {
        for s in ["zstd", "zstd:9", "snappy", "gzip", "lz4", "none"] {
            let c: ParquetCompression = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            c.to_parquet().unwrap();
        }
        assert_eq!(
            "ZSTD".parse::<ParquetCompression>(),
            Ok(ParquetCompression::Zstd(1))
        );
        assert!("brotli".parse::<ParquetCompression>().is_err());
        assert!("zstd:0".parse::<ParquetCompression>().is_err());
    }
}
