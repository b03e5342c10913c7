//! The `mews-etl` command: parses flags into validated settings, calls the library, prints
//! the summary and maps the outcome to a documented exit status.

mod cli;
mod summary;

use anyhow::{anyhow, Context};
use clap::Parser;
use cli::{Cli, Command, ConvertArgs, LogFormat, SchemaArgs, SchemaFormat};
use mews_etl::commit::{CommitError, OutputDir};
use mews_etl::config::ErrorBudget;
use mews_etl::convert::{load_files, load_id_from_file_name, LoadError, LoadOutcome, LoadPlan};
use mews_etl::input::Source;
use mews_etl::manifest::WriteMode;
use mews_etl::schema::{self, EntitySchema};
use mews_etl::sink::{ParquetCompression, WriterOptions};
use std::process::ExitCode;

/// Documented exit statuses (see `--help`).
mod exit {
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INPUT: u8 = 3;
    pub const OUTPUT: u8 = 4;
    pub const OVER_BUDGET: u8 = 5;
    pub const LOCKED: u8 = 6;
}

/// An error with the exit status it maps to.
struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let status = status_of(&error);
        Failure { status, error }
    }
}

fn usage(message: String) -> Failure {
    Failure {
        status: exit::USAGE,
        error: anyhow!(message),
    }
}

fn status_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<LoadError>() {
            return match e {
                LoadError::Input(_) | LoadError::Download(_) => exit::INPUT,
                LoadError::Commit(CommitError::Locked { .. }) => exit::LOCKED,
                LoadError::Sink(_) | LoadError::Commit(_) | LoadError::Quarantine { .. } => {
                    exit::OUTPUT
                }
                LoadError::Unbalanced { .. } | LoadError::Internal(_) => exit::INTERNAL,
            };
        }
        if let Some(e) = cause.downcast_ref::<CommitError>() {
            return match e {
                CommitError::Locked { .. } => exit::LOCKED,
                _ => exit::OUTPUT,
            };
        }
    }
    exit::INTERNAL
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // RUST_LOG, when set, refines the level chosen by flags (e.g. RUST_LOG=mews_etl=trace).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("mews_etl={level},mews_etl_cli={level},warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn find_entity(name: &str) -> Result<&'static EntitySchema, Failure> {
    schema::find(name).ok_or_else(|| {
        usage(format!(
            "unknown entity type {name:?}; expected one of: {}",
            schema::entity_names().join(", ")
        ))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let result = match &cli.command {
        Command::Convert(args) => convert(args),
        Command::Schema(args) => print_schema(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.status)
        }
    }
}

fn print_schema(args: &SchemaArgs) -> Result<(), Failure> {
    let schemas: Vec<&EntitySchema> = match &args.entity {
        Some(name) => vec![find_entity(name)?],
        None => schema::all().iter().collect(),
    };
    for s in schemas {
        match args.format {
            SchemaFormat::Text => println!("{}", s.describe()),
            SchemaFormat::Duckdb => println!("{}", s.duckdb_ddl()),
            SchemaFormat::Arrow => println!("{:#?}", s.arrow_schema()),
        }
    }
    Ok(())
}

fn convert(args: &ConvertArgs) -> Result<(), Failure> {
    let schema = find_entity(&args.entity)?;
    let mode: WriteMode = args.mode.parse().map_err(usage)?;
    let budget: ErrorBudget = args
        .max_rejected
        .parse()
        .map_err(|e| usage(format!("--max-rejected: {e}")))?;
    let compression: ParquetCompression = args
        .compression
        .parse()
        .map_err(|e| usage(format!("--compression: {e}")))?;
    let partition = match &args.partition_by {
        Some(spec) => schema
            .parse_partition_spec(spec)
            .map_err(|e| usage(format!("--partition-by: {e}")))?,
        None => schema.default_partition_spec(),
    };
    if args.max_rows_per_file == 0 {
        return Err(usage("--max-rows-per-file must be at least 1".into()));
    }
    if args.max_line_bytes == 0 {
        return Err(usage("--max-line-bytes must be at least 1".into()));
    }
    let sources: Vec<Source> = args.files.iter().map(|f| Source::parse(f)).collect();
    if sources
        .iter()
        .filter(|s| matches!(s, Source::Stdin))
        .count()
        > 1
    {
        return Err(usage("stdin (-) can be given only once".into()));
    }
    let export_id = match &args.export_id {
        Some(id) if id.trim().is_empty() => {
            return Err(usage("--export-id must not be empty".into()))
        }
        Some(id) => id.clone(),
        None => match &sources[0] {
            Source::Stdin => {
                return Err(usage(
                    "reading stdin: give --export-id to name the load".into(),
                ))
            }
            Source::Path(p) => load_id_from_file_name(&p.to_string_lossy()),
        },
    };
    let load_id = mews_etl::commit::sanitize_load_id(&export_id);
    if load_id.is_empty() {
        return Err(usage(format!(
            "--export-id {export_id:?} has no usable characters"
        )));
    }
    let plan = LoadPlan {
        schema,
        load_id,
        export_id,
        mode,
        partition,
        writer: WriterOptions {
            compression,
            max_rows_per_file: args.max_rows_per_file,
            ..WriterOptions::default()
        },
        budget,
        max_line_bytes: args.max_line_bytes,
        batch_bytes: mews_etl::input::DEFAULT_BATCH_BYTES,
        parallel_sources: mews_etl::convert::DEFAULT_PARALLEL_SOURCES,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let out = OutputDir::open(&args.out)?;
    tracing::info!(entity = %schema.entity, load_id = %plan.load_id, files = sources.len(), "converting");
    let report = runtime.block_on(load_files(&out, &plan, &sources))?;
    summary::print(&[summary::Row::from_report(&report)]);
    if let Some(q) = &report.quarantine {
        eprintln!(
            "{} rejected line(s) written to {}",
            report.manifest.counts.rejected,
            q.display()
        );
    }
    match report.outcome {
        LoadOutcome::Committed { .. } => Ok(()),
        LoadOutcome::OverBudget => Err(Failure {
            status: exit::OVER_BUDGET,
            error: anyhow!(
                "{} of {} lines rejected, over --max-rejected {}: nothing committed; {} keeps its previous contents",
                report.manifest.counts.rejected,
                report.manifest.counts.lines_read - report.manifest.counts.blank_lines,
                budget,
                schema.table
            ),
        }),
    }
}
