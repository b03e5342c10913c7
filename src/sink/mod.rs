//! Partitioning and Parquet writing into a staging directory.
//!
//! The sink never makes anything visible: it writes complete Parquet files under a staging
//! directory handed out by [`crate::commit::OutputDir`], and returns the list of
//! [`WrittenFile`]s that the manifest records and the commit moves into place.
//!
//! - [`partition`] — partition values of each row and their escaping into directory names.
//! - [`encode`] — [`encode::ParquetFile`]: one Parquet file, its columns encoded on several
//!   threads.
//! - [`spill`] — [`spill::SpillPages`]: a row group's encoded pages in a temporary file
//!   until the group ends, so that its memory does not grow with its rows.
//! - [`writer`] — [`PartitionedWriter`]: one rolling Parquet file per partition, with a
//!   cap on open files and on buffered bytes.

pub mod encode;
pub mod partition;
pub mod spill;
pub mod writer;

pub use partition::{
    escape_value, partition_rows, PartitionKey, RowPartitions, EMPTY_STRING_PARTITION,
    HIVE_DEFAULT_PARTITION, MAX_VALUE_BYTES,
};
pub use writer::{ParquetCompression, PartitionedWriter, WriterOptions, WrittenFile};

use std::path::PathBuf;

/// Why the sink could not partition or write a batch; each variant names the file or the
/// partition involved so an operator can find it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file-system operation on a staging path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`creating directory`, `creating file`, `syncing`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Parquet encoder failed for one file.
    #[error("writing Parquet file {path} (partition {partition}): {source}")]
    Parquet {
        /// The Parquet file being written.
        path: PathBuf,
        /// The partition directory of that file, `/`-separated, empty when unpartitioned.
        partition: String,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// Selecting a partition's rows out of a batch failed.
    #[error("splitting rows of partition {partition}: {source}")]
    Arrow {
        /// The partition directory, `/`-separated.
        partition: String,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },
    /// A partition key column is missing from the batch.
    #[error("partition column {column} is not in the batch")]
    MissingColumn {
        /// The column name from the partition spec.
        column: String,
    },
    /// A partition key column has an Arrow type that cannot name a directory.
    #[error("partition column {column} has Arrow type {data_type}, which cannot be a partition key{detail}")]
    UnsupportedType {
        /// The column name.
        column: String,
        /// Its Arrow type.
        data_type: String,
        /// Extra context, such as the granularity asked for.
        detail: String,
    },
    /// The batch's schema differs from the schema the writer was created with.
    #[error("batch schema does not match the table schema: {detail}")]
    SchemaMismatch {
        /// Which field differs.
        detail: String,
    },
    /// A writer option or argument is out of range.
    #[error("invalid sink setting: {0}")]
    InvalidOption(String),
}
