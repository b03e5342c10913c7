//! Command-line definitions. Doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Load Mews Connector API bulk exports (JSON Lines) into partitioned Parquet, exactly.
#[derive(Debug, Parser)]
#[command(name = "mews-etl", version, propagate_version = true)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). Logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors in the log; the summary is still printed.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Exit statuses, shown under `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  every load committed (rejected lines within --max-rejected are reported, not fatal)
  1  internal error (a bug: please report it with the log)
  2  usage error (bad flag or argument)
  3  an input could not be read or decompressed; nothing of that load was committed
  4  the output could not be written or committed; the table keeps its previous contents
  5  more lines rejected than --max-rejected allows; nothing committed, quarantine written
  6  another mews-etl process holds the output directory";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load local export files (JSON Lines, optionally gzip or zstd) of one entity type.
    Convert(ConvertArgs),
    /// Print an entity's columns and types, as derived from schemas/.
    Schema(SchemaArgs),
}

/// Flags of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Entity type of the files: OrderItem, Payment, Reservation, Customer, Company, Bill,
    /// AvailabilityAdjustment, AvailabilityBlock, ResourceBlock or LedgerEntry (table names
    /// like order_item work too).
    #[arg(long, short)]
    pub entity: String,
    /// Output directory; tables appear as <OUT>/<table>/.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The export these files came from, stamped on every row as _export_id and naming
    /// the load (re-converting the same id replaces its rows). Default: the first file's
    /// name without extensions and part number. Required when reading stdin.
    #[arg(long)]
    pub export_id: Option<String>,
    /// append: keep earlier loads beside this one. replace: the table holds only this
    /// load once it commits (right for a full snapshot).
    #[arg(long, default_value = "append")]
    pub mode: String,
    /// Partition keys: properties, each optionally :year, :month or :day
    /// (e.g. ConsumedUtc:month,AccountType), or none. Default: the entity's own.
    #[arg(long)]
    pub partition_by: Option<String>,
    /// Parquet compression: zstd, snappy, gzip, lz4 or none.
    #[arg(long, default_value = "zstd")]
    pub compression: String,
    /// Rows per Parquet file before it rolls over to a new one.
    #[arg(long, default_value_t = mews_etl::sink::writer::DEFAULT_MAX_ROWS_PER_FILE)]
    pub max_rows_per_file: usize,
    /// Rejected lines allowed before the load is refused: a count (100) or a percentage
    /// of lines read (1%).
    #[arg(long, default_value = "1%")]
    pub max_rejected: String,
    /// Longest line accepted, in bytes; longer lines are rejected without being buffered.
    #[arg(long, default_value_t = mews_etl::framing::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Input files (.jsonl, gzip or zstd, detected from content); - reads stdin.
    #[arg(required = true)]
    pub files: Vec<String>,
}

/// Flags of `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Entity type (default: all ten).
    pub entity: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SchemaFormat::Text)]
    pub format: SchemaFormat,
}

/// How `schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// Columns, types and descriptions.
    Text,
    /// A DuckDB CREATE TABLE statement per entity.
    Duckdb,
    /// The Arrow schema as JSON-like text.
    Arrow,
}
