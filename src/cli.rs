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
    /// Format of the summary on stdout (convert, run).
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text, global = true)]
    pub summary_format: SummaryFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Exit statuses, shown under `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  every load committed (rejected lines within --max-rejected are reported, not fatal)
  1  internal error (a bug: please report it with the log)
  2  usage error (bad flag or argument; convert: files of another entity type than --entity;
     run: tokens the API refuses, or a request it refuses as made)
  3  an input could not be read or decompressed; nothing of that load was committed
  4  the output could not be written or committed (or an append with another
     --partition-by or other columns than the table's); the table keeps its previous contents
  5  more lines rejected than --max-rejected allows; nothing committed, quarantine written
  6  another mews-etl process holds the output directory
  7  run: some entity types failed (their exports failed, timed out or could not be read);
     the others committed
  8  run: an export of an entity type is already pending or processing that this run
     cannot resume (another client's, or one recorded for another window; the API allows
     one at a time)
  When entity types of one run end differently, the status is the first that applies of
  1, 2, 4, 8, 7, 5.
  130, 143  run, convert: stopped by SIGINT (Ctrl-C) or SIGTERM; loads in progress were
     abandoned and nothing of them is visible; run: the next run resumes the same exports
     (a second signal exits at once; the next run cleans up)";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Summary format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// A table, then any drift, a line each.
    Text,
    /// One JSON object per load, a line each: entity, export_id, outcome (committed,
    /// already_loaded, over_budget, failed, conflict), version, files, lines, rows,
    /// rejected, bytes, seconds, reason, drift.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load local export files (JSON Lines, optionally gzip or zstd) of one entity type.
    Convert(Box<ConvertArgs>),
    /// Export entity types from the Connector API and load them: add each export (or
    /// resume the one a previous run started), wait for it, stream its files into Parquet.
    Run(Box<RunArgs>),
    /// Print an entity's columns and types, as derived from schemas/.
    Schema(SchemaArgs),
    /// Serve the embedded Connector API mock (exports/add, exports/getAll, file downloads)
    /// on 127.0.0.1, with synthetic data for all ten entity types.
    MockServer(MockServerArgs),
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Output directory; tables appear as <OUT>/<table>/.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Run against the embedded mock API on 127.0.0.1 with synthetic data; no tokens needed.
    #[arg(long)]
    pub demo: bool,
    /// Entity types to export (repeatable, or comma-separated; default: all ten).
    #[arg(long = "entity", short, value_delimiter = ',')]
    pub entities: Vec<String>,
    /// Export these enterprises only (repeatable, or comma-separated; at most 1000).
    #[arg(long = "enterprise-id", value_delimiter = ',')]
    pub enterprise_ids: Vec<String>,
    /// Export these chains only (repeatable, or comma-separated; at most 1000).
    #[arg(long = "chain-id", value_delimiter = ',')]
    pub chain_ids: Vec<String>,
    /// Only rows updated at or after this instant (2024-01-01 or 2024-01-01T00:00:00Z).
    /// Ranges over 180 days become consecutive exports. Not for LedgerEntry, whose rows
    /// never change: it is exported by posting month.
    #[arg(long)]
    pub updated_start: Option<String>,
    /// Only rows updated before this instant (default with --updated-start: 5 minutes ago;
    /// a later run with the same start and no end then resumes or replaces this one's load).
    /// An end less than 5 minutes ago, or up to 5 minutes ahead, is waited for.
    #[arg(long, requires = "updated_start")]
    pub updated_end: Option<String>,
    /// First ledger posting date for LedgerEntry. Default: two exports, the month before
    /// yesterday's and yesterday's month up to yesterday, each a load named by its month.
    /// Dates given are exported as the whole months they touch, a load each, named likewise.
    #[arg(long)]
    pub posting_start: Option<String>,
    /// Last ledger posting date for LedgerEntry (default with --posting-start: yesterday).
    #[arg(long, requires = "posting_start")]
    pub posting_end: Option<String>,
    /// append or replace. Default: replace for unfiltered exports (full snapshots), append
    /// for filtered or scoped ones (--updated-start windows, ledger posting dates,
    /// --enterprise-id or --chain-id). With replace, an
    /// entity type's first export to commit replaces its table and the others append to it.
    #[arg(long)]
    pub mode: Option<String>,
    /// Platform address.
    #[arg(long, env = "MEWS_PLATFORM_URL", default_value = mews_etl::api::DEMO_PLATFORM_URL)]
    pub platform_url: String,
    /// File holding the client token (default: the MEWS_CLIENT_TOKEN environment variable).
    #[arg(long)]
    pub client_token_file: Option<PathBuf>,
    /// File holding the access token (default: the MEWS_ACCESS_TOKEN environment variable).
    #[arg(long)]
    pub access_token_file: Option<PathBuf>,
    /// Longest pause between status polls: seconds (30) or a duration (500ms, 30s, 5m).
    /// Polls start a few seconds apart and grow towards this.
    #[arg(long, default_value = "5m")]
    pub poll_interval: String,
    /// Longest wait for one export to finish (a duration like 90m or 6h).
    #[arg(long, default_value = "6h")]
    pub timeout: String,
    /// Exports downloaded and loaded at the same time (all are added and waited for at
    /// once).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Check the settings (tokens, platform URL; no request is sent) and that each table can
    /// take its load, print the exports and tables the run would produce, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per export served by --demo. The embedded mock keeps the export files it serves
    /// in the temporary directory ($TMPDIR), so large values need as much free space there
    /// as the exports take.
    #[arg(long, default_value_t = 5000, requires = "demo")]
    pub demo_rows: u64,
    /// Load settings shared with convert.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Flags of `mock-server`.
#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is logged to stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Rows per export.
    #[arg(long, default_value_t = 5000)]
    pub rows: u64,
    /// Files per export (at least 1).
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub files: usize,
    /// Serve files gzip-compressed.
    #[arg(long)]
    pub gzip: bool,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// How loads are decoded and written (shared by `convert` and `run`).
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Partition keys: properties, each optionally :year, :month or :day
    /// (e.g. ConsumedUtc:month,AccountType), or none. Default: the entity's own.
    #[arg(long)]
    pub partition_by: Option<String>,
    /// Parquet compression: zstd (level 1; zstd:N for level N), snappy, gzip, lz4 or none.
    #[arg(long, default_value = "zstd")]
    pub compression: String,
    /// Rows per Parquet file before it rolls over to a new one.
    #[arg(long, default_value_t = mews_etl::sink::writer::DEFAULT_MAX_ROWS_PER_FILE)]
    pub max_rows_per_file: usize,
    /// Rejected lines allowed before a load is refused: a count (100) or a percentage of
    /// the non-blank lines read (1%).
    #[arg(long, default_value = "1%")]
    pub max_rejected: String,
    /// Longest line accepted, in bytes; longer lines are rejected without being buffered.
    #[arg(long, default_value_t = mews_etl::framing::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Threads that decode lines, and threads that encode Parquet columns, per load, at
    /// most 256 (default: the cores available to the process, cgroup CPU limits included).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
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
    /// name without extensions (and without the -<n> part number after an export id).
    /// Required when reading stdin.
    #[arg(long)]
    pub export_id: Option<String>,
    /// append: keep earlier loads beside this one. replace: the table holds only this
    /// load once it commits (right for a full snapshot).
    #[arg(long, default_value = "append")]
    pub mode: String,
    /// Load settings.
    #[command(flatten)]
    pub load: LoadArgs,
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
    /// One JSON object per entity (a line each): columns with their schema, Arrow and
    /// DuckDB types, nullability and descriptions.
    Json,
    /// A BigQuery schema per entity (a JSON array, a line each), for `bq mk --table` or
    /// `bq load --schema`.
    Bigquery,
}

/// A count of at least 1 (`--files`).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
