//! The `mews-etl` command: parses flags into validated settings, calls the library, prints
//! the summary and maps the outcome to a documented exit status.

mod bars;
mod cli;
mod console;
mod signals;
mod summary;

// The system allocator: measured against mimalloc on a 4 GiB load it costs ~5% more CPU
// but holds a third less memory (mimalloc keeps freed pages for a second before returning
// them), and memory is what a batch job's container limit is set by.

use anyhow::{anyhow, Context};
use clap::Parser;
use cli::{
    Cli, Command, ConvertArgs, LoadArgs, LogFormat, MockServerArgs, RunArgs, SchemaArgs,
    SchemaFormat,
};
use console::{fail, note, note_about, say, tell};
use mews_etl::api::{ApiClient, ApiConfig, ExportScope, Secret};
use mews_etl::commit::{CommitError, OutputDir};
use mews_etl::config::parse_duration;
use mews_etl::config::ErrorBudget;
use mews_etl::convert::{
    load_files, load_id_from_file_name, source_stem, FailureSite, LoadError, LoadOutcome, LoadPlan,
};
use mews_etl::export::job::{Unloaded, UnloadedJob};
use mews_etl::export::poll::Poller;
use mews_etl::export::state::RunState;
use mews_etl::input::Source;
use mews_etl::manifest::{LoadManifest, WriteMode};
use mews_etl::mock::{MockConfig, MockServer};
use mews_etl::schema::{self, EntitySchema};
use mews_etl::sink::{ParquetCompression, WriterOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

/// Documented exit statuses (see `--help`).
mod exit {
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INPUT: u8 = 3;
    pub const OUTPUT: u8 = 4;
    pub const OVER_BUDGET: u8 = 5;
    pub const LOCKED: u8 = 6;
    pub const SOME_FAILED: u8 = 7;
    pub const CONFLICT: u8 = 8;
    // 130 and 143 (stopped by SIGINT or SIGTERM): signals::SIGINT_STATUS, SIGTERM_STATUS.
}

/// Longest wait, after a stop signal, for the threads of abandoned loads to notice that
/// their channels closed; they end within one batch. Bounded because a thread blocked
/// reading stdin cannot be interrupted and would otherwise hold `convert -` until EOF;
/// staging that a thread still writes after the wait is removed by the next run.
const ABANDON_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Ends a run or convert stopped by a signal. The work's futures are dropped already, so
/// nothing new starts and no commit begins; a commit runs without awaiting, so it either
/// finished before or never started. What is left: wait (bounded) for the decoder and
/// writer threads of abandoned loads, then remove their staging directories while the lock
/// is still held. The state file is left as it is: it names the exports, so the next run
/// resumes them.
fn interrupted(
    runtime: tokio::runtime::Runtime,
    out: &OutputDir,
    stop: signals::Stop,
    what: &str,
) -> Failure {
    runtime.shutdown_timeout(ABANDON_WAIT);
    let cleanup = match out.remove_staging() {
        Ok(()) => String::new(),
        Err(e) => format!(" ({e}; the next run removes it)"),
    };
    Failure {
        status: stop.status,
        error: anyhow!("interrupted by {}: {what}{cleanup}", stop.name),
    }
}

/// Warns of an append of a scoped export beside an unscoped one of the same window (or the
/// reverse) that its table holds: the scoped one's rows would be in the table twice. Keys
/// come from the state file, loads from the table (a key whose load a replace has since
/// dropped is no hazard); a table this run replaces is left out.
fn warn_overlapping_scopes(
    state: &RunState,
    specs: &[mews_etl::export::ExportSpec],
    root: &std::path::Path,
) {
    let replaced: std::collections::HashSet<&str> = specs
        .iter()
        .filter(|s| s.mode == WriteMode::Replace)
        .map(|s| s.schema.table.as_str())
        .collect();
    for spec in specs {
        if replaced.contains(spec.schema.table.as_str()) {
            continue;
        }
        let Ok(loads) = mews_etl::commit::loads_at(root, &spec.schema.table) else {
            continue;
        };
        let held = |key: &&str| {
            let load_id = mews_etl::export::load_id_of_key(key);
            loads.iter().any(|m| m.load_id == load_id)
        };
        let loaded = state.jobs.keys().map(String::as_str).filter(held);
        for other in spec.overlapping_scopes(loaded) {
            let key = spec.key();
            note_about!(
                [
                    ("entity", spec.schema.entity.as_str()),
                    ("key", key.as_str()),
                    ("notice", "overlapping_scopes")
                ],
                "{key} appends beside {other}, which table {} holds: the rows of the enterprises or chains of the scoped one would be in it twice (use --mode replace, or another --out per scope)",
                spec.schema.table
            );
        }
    }
}

/// How many unloaded windows of earlier runs a run names one by one; the rest are counted.
const MAX_UNLOADED_NAMED: usize = 10;

/// Names the jobs of earlier runs that no table holds the rows of and that this run does not
/// ask for, after the summary and even with `-q`: a window that failed and is never asked for
/// again would otherwise be left out without a word.
fn name_unloaded(unloaded: &[UnloadedJob], root: &std::path::Path) {
    let state_file = RunState::path_in(root);
    // A schedule that fails the same way every day (an entity type the tokens may not
    // export) would otherwise add a line a day, for ever.
    for job in unloaded.iter().take(MAX_UNLOADED_NAMED) {
        let table = schema::find(&job.entity).map_or(job.entity.as_str(), |s| s.table.as_str());
        let legacy_month = mews_etl::export::legacy_ledger_month(&job.key);
        let until = match legacy_month {
            // A key of an earlier release, which no run asks for any more.
            Some(month) => format!("until a run of posting month {month} loads the month, which takes its place (--posting-start {month}-01, or the default months)"),
            None => "until that window is run again".to_owned(),
        };
        let what = match &job.known {
            Unloaded::Export(export) => format!(
                "export {} (created {}) was never loaded",
                export.export_id, export.created_utc
            ),
            Unloaded::NoExport { first_asked_utc } => format!("a run asked for it at {first_asked_utc} and did not load it (its export failed or was never added)"),
        };
        // Only a run of the job's own key resumes its export.
        let resumed = match (&job.known, legacy_month) {
            (Unloaded::Export(_), None) => "the export is resumed while the API keeps it; ",
            _ => "",
        };
        let holds = match &job.earlier {
            None => format!("its rows are missing from table {table}"),
            Some(export_id) => format!(
                "table {table} holds it as export {export_id} loaded it earlier, without what changed since,"
            ),
        };
        let mut fields = vec![
            ("notice", "window_not_loaded"),
            ("entity", job.entity.as_str()),
            ("key", job.key.as_str()),
        ];
        if let Unloaded::Export(export) = &job.known {
            fields.push(("export_id", export.export_id.as_str()));
        }
        console::notice_about(
            &fields,
            format_args!(
            "{}: {what}, and this run does not ask for it: {holds} {until} ({resumed}to drop it instead, remove its entries under \"jobs\" and \"not_loaded\" in {})",
            job.key,
            state_file.display()
        ));
    }
    if unloaded.len() > MAX_UNLOADED_NAMED {
        note!(
            "{} more windows of earlier runs are not loaded, and this run does not ask for them: they are listed under \"jobs\" and \"not_loaded\" in {}",
            unloaded.len() - MAX_UNLOADED_NAMED,
            state_file.display()
        );
    }
}

/// Longest pause between polls of the embedded mock in `run --demo`.
const DEMO_POLL_CAP: std::time::Duration = std::time::Duration::from_secs(1);

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
            return match e.site() {
                FailureSite::Input => exit::INPUT,
                FailureSite::Usage => exit::USAGE,
                FailureSite::Locked => exit::LOCKED,
                FailureSite::Output => exit::OUTPUT,
                FailureSite::Internal => exit::INTERNAL,
            };
        }
        if let Some(e) = cause.downcast_ref::<CommitError>() {
            return match e {
                CommitError::Locked { .. } => exit::LOCKED,
                _ => exit::OUTPUT,
            };
        }
        // The run's state file (`.mews-etl/state.json`) is part of the output directory.
        if cause.is::<mews_etl::export::state::StateError>() {
            return exit::OUTPUT;
        }
    }
    exit::INTERNAL
}

/// Progress bars are for a person at a terminal: not with JSON logs, -q or -v (whose log
/// lines would tear through the bars).
fn shows_bars(cli: &Cli) -> bool {
    matches!(cli.command, Command::Run(_))
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && cli.log_format == LogFormat::Text
        && !cli.quiet
        && cli.verbose == 0
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        // With bars on screen, info lines would scroll them away; the bars carry that news.
        (false, 0) if shows_bars(cli) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // RUST_LOG, when set, takes the place of the level chosen by flags (e.g.
    // RUST_LOG=mews_etl=trace), for the person who wants another crate's logs too.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("mews_etl={level},mews_etl_cli={level},warn"))
    });
    // Colours only for a terminal (cron mail and orchestrators' log files get plain lines)
    // and not with NO_COLOR set; a failed write of a log line is dropped, not reported by a
    // panic (`2>&1 | head` closes stderr early).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .log_internal_errors(false);
    console::set_json(matches!(cli.log_format, LogFormat::Json));
    summary::set_json(matches!(cli.summary_format, cli::SummaryFormat::Json));
    match cli.log_format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn find_entity(name: &str) -> Result<&'static EntitySchema, Failure> {
    // `--entity "OrderItem, Bill"` splits into "OrderItem" and " Bill".
    let name = name.trim();
    schema::find(name).ok_or_else(|| {
        let hint = schema::closest(name)
            .map(|s| format!("did you mean {}? ", s.entity))
            .unwrap_or_default();
        usage(format!(
            "unknown entity type {name:?}; {hint}expected one of: {}",
            schema::entity_names().join(", ")
        ))
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(e),
    };
    init_logging(&cli);
    let result = match &cli.command {
        Command::Convert(args) => convert(args),
        Command::Schema(args) => print_schema(args),
        Command::Run(args) => run(args, shows_bars(&cli)),
        Command::MockServer(args) => mock_server(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            fail!("{}", mews_etl::with_causes(f.error.as_ref()));
            ExitCode::from(f.status)
        }
    }
}

/// Most `--threads`: far more cores than any machine this runs on, and few enough that
/// the threads of a run's loads can all be started.
const MAX_THREADS: usize = 256;

/// The async runtime, with room on its blocking pool for every decoding and writing
/// thread of `loads` loads of `threads` decoders at once (and the files, stdin and mock
/// work beside them): with less, the last stage of a load would wait for a thread that
/// never frees, and the run would hang.
fn runtime(loads: usize, threads: usize) -> Result<tokio::runtime::Runtime, Failure> {
    const OTHER_BLOCKING_WORK: usize = 64;
    let blocking = loads
        .max(1)
        .saturating_mul(threads.saturating_add(1))
        .saturating_add(OTHER_BLOCKING_WORK)
        .max(512);
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
        .context("starting the async runtime")?)
}

/// Reports an argument that does not parse: as clap prints it, or, when the command line
/// asks for JSON logs, as one `ERROR` record, so that a log collector never gets stray text.
/// Help and version go to standard output as usual.
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let is_output = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if is_output || !wants_json_logs(std::env::args_os().skip(1)) {
        // Nothing to do if stdout or stderr has gone; the status says what happened.
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
    }
    console::set_json(true);
    let text = e.render().to_string();
    // clap's first paragraph is the error (with the arguments it names, one a line, such
    // as the required ones missing); the rest (usage, a hint to --help) is for a terminal.
    let message: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    fail!("{}", message.join(" ").trim_start_matches("error: "));
    ExitCode::from(exit::USAGE)
}

/// Whether the arguments ask for `--log-format json`, read before they are parsed.
fn wants_json_logs(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let mut previous_was_flag = false;
    for arg in args {
        let arg = arg.to_string_lossy();
        if arg == "--log-format=json" || (previous_was_flag && arg == "json") {
            return true;
        }
        previous_was_flag = arg == "--log-format";
    }
    false
}

/// What standard input is redirected from, when it is a file: the descriptor's own, with
/// no path (`/dev/stdin`) to rely on.
fn stdin_file_metadata() -> Option<std::fs::Metadata> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    std::fs::File::from(fd)
        .metadata()
        .ok()
        .filter(|m| m.is_file())
}

/// Refuses a load that would replace an earlier load of the same id without reading all of
/// its files: `convert <export>-1.jsonl`, then `convert <export>-2.jsonl` (both load
/// `<export>`) would leave only the second file's rows.
fn refuse_partial_reload(
    loads: &[LoadManifest],
    schema: &EntitySchema,
    load_id: &str,
    sources: &[Source],
) -> Result<(), Failure> {
    let Some(earlier) = loads.iter().find(|m| m.load_id == load_id) else {
        return Ok(());
    };
    // A file is its directory and its name without extensions (`x.jsonl.gz` is `x.jsonl`
    // recompressed), so that `d1/part.jsonl` does not stand for `d2/part.jsonl`; both
    // resolved, as manifests record them, so that a link stands for its target. Manifests
    // written before they recorded the resolved path are compared by the names given.
    struct Given {
        resolved: Option<(PathBuf, String)>,
        stem: String,
        shown: String,
    }
    let given: Vec<Given> = sources
        .iter()
        .map(|s| {
            let shown = s.display_name();
            let resolved = match s {
                Source::Path(p) => std::fs::canonicalize(p).ok().and_then(|r| {
                    let stem = source_stem(&r.to_string_lossy()).to_owned();
                    r.parent().map(|dir| (dir.to_path_buf(), stem))
                }),
                Source::Stdin => None,
            };
            Given {
                resolved,
                stem: source_stem(&shown).to_owned(),
                shown,
            }
        })
        .collect();
    let dropped: Vec<&str> = earlier
        .sources
        .iter()
        .filter(|held| {
            let held_resolved = held.path.as_deref().map(Path::new);
            !given.iter().any(|g| match (held_resolved, &g.resolved) {
                (Some(path), Some((dir, stem))) => {
                    path.parent() == Some(dir.as_path())
                        && source_stem(&path.to_string_lossy()) == stem
                }
                _ => source_stem(&held.name) == g.stem,
            })
        })
        .map(|held| held.path.as_deref().unwrap_or(&held.name))
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    let reads: Vec<&str> = given.iter().map(|g| g.shown.as_str()).collect();
    Err(usage(format!(
        "load {load_id} of table {} holds the rows of {} too, which this convert does not read (it reads {}); it would replace them. Give all of the load's files in one convert, or name this load apart with --export-id if its rows are not those of the load already there",
        schema.table,
        dropped.join(", "),
        reads.join(", ")
    )))
}

/// Refuses to load a file, unchanged since, that another load of the table holds: its rows
/// would be in the table twice. The load id comes from the first file's name, so
/// `convert a.jsonl b.jsonl`, then `convert b.jsonl a.jsonl`, would be two loads of the same
/// rows. A file rewritten at the same path since (another size or modification time) is
/// another file; manifests written before they recorded modification times are not
/// compared.
fn refuse_loaded_elsewhere(
    loads: &[LoadManifest],
    schema: &EntitySchema,
    load_id: &str,
    sources: &[Source],
) -> Result<(), Failure> {
    for source in sources {
        let Some(stamp) = source.stamp() else {
            continue;
        };
        let holder = loads.iter().filter(|m| m.load_id != load_id).find(|m| {
            m.sources.iter().any(|held| {
                held.path.as_deref() == Some(stamp.path.as_str())
                    && held.bytes == stamp.bytes
                    && held.modified_unix_ns.is_some()
                    && held.modified_unix_ns == stamp.modified_unix_ns
            })
        });
        if let Some(m) = holder {
            let name = match source {
                Source::Stdin => format!("stdin ({})", stamp.path),
                Source::Path(_) => source.display_name(),
            };
            return Err(usage(format!(
                "{name} is already loaded, unchanged since, by load {} of table {}: loading it again as load {load_id} would put its rows in the table twice. To load it again, give it with --export-id {:?} (and that load's other files), or use --mode replace",
                m.load_id,
                schema.table,
                m.export_id
            )));
        }
    }
    Ok(())
}

fn print_schema(args: &SchemaArgs) -> Result<(), Failure> {
    let schemas: Vec<&EntitySchema> = match &args.entity {
        Some(name) => vec![find_entity(name)?],
        None => schema::all().iter().collect(),
    };
    for s in schemas {
        match args.format {
            SchemaFormat::Text => say!("{}", s.describe()),
            SchemaFormat::Duckdb => say!("{}", s.duckdb_ddl()),
            SchemaFormat::Arrow => say!("{:#?}", s.arrow_schema()),
            SchemaFormat::Json => say!("{}", s.describe_json()),
            SchemaFormat::Bigquery => say!("{}", s.bigquery_schema()),
        }
    }
    Ok(())
}

/// The validated load settings shared by `convert` and `run`.
struct Load {
    budget: ErrorBudget,
    /// Decoding threads (Parquet encoding threads are in `writer`).
    threads: usize,
    writer: WriterOptions,
}

fn load_settings(args: &LoadArgs) -> Result<Load, Failure> {
    let budget: ErrorBudget = args
        .max_rejected
        .parse()
        .map_err(|e| usage(format!("--max-rejected: {e}")))?;
    let compression: ParquetCompression = args
        .compression
        .parse()
        .map_err(|e| usage(format!("--compression: {e}")))?;
    if args.max_rows_per_file == 0 {
        return Err(usage("--max-rows-per-file must be at least 1".into()));
    }
    if args.max_line_bytes == 0 {
        return Err(usage("--max-line-bytes must be at least 1".into()));
    }
    let threads = match args.threads {
        Some(0) => return Err(usage("--threads must be at least 1".into())),
        Some(n) if n > MAX_THREADS => {
            return Err(usage(format!("--threads must be at most {MAX_THREADS}")))
        }
        Some(n) => n,
        None => mews_etl::config::default_threads().min(MAX_THREADS),
    };
    Ok(Load {
        budget,
        threads,
        writer: WriterOptions {
            compression,
            max_rows_per_file: args.max_rows_per_file,
            encode_threads: threads,
            ..WriterOptions::default()
        },
    })
}

fn convert(args: &ConvertArgs) -> Result<(), Failure> {
    let schema = find_entity(&args.entity)?;
    let mode: WriteMode = args
        .mode
        .parse()
        .map_err(|e| usage(format!("--mode: {e}")))?;
    let Load {
        budget,
        threads,
        writer,
    } = load_settings(&args.load)?;
    let partition = schema
        .partition_spec_or_default(args.load.partition_by.as_deref())
        .map_err(|e| usage(format!("--partition-by: {e}")))?;
    let sources: Vec<Source> = args.files.iter().map(|f| Source::parse(f)).collect();
    if sources
        .iter()
        .filter(|s| matches!(s, Source::Stdin))
        .count()
        > 1
    {
        return Err(usage("stdin (-) can be given only once".into()));
    }
    // One file given twice would load its rows twice into one load. Compared by device and
    // inode: other spellings, symbolic links and hard links all name the same file.
    // Standard input redirected from a file (`- < x.jsonl`) is that file too.
    let mut seen = std::collections::HashMap::new();
    for (given, source) in args.files.iter().zip(&sources) {
        let meta = match source {
            Source::Path(path) => std::fs::metadata(path).ok(),
            Source::Stdin => stdin_file_metadata(),
        };
        if let Some(meta) = meta {
            use std::os::unix::fs::MetadataExt;
            let shown = if given == "-" { "stdin (-)" } else { given };
            if let Some(first) = seen.insert((meta.dev(), meta.ino()), shown) {
                return Err(usage(format!(
                    "{shown} is the same file as {first}: each file can be given once"
                )));
            }
        }
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
    let load_id = mews_etl::commit::distinct_load_id(&export_id);
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
        writer,
        budget,
        max_line_bytes: args.load.max_line_bytes,
        batch_bytes: mews_etl::input::DEFAULT_BATCH_BYTES,
        parallel_sources: mews_etl::convert::DEFAULT_PARALLEL_SOURCES,
        decode_threads: threads,
        progress: Default::default(),
        replaces: Vec::new(),
    };
    let runtime = runtime(1, threads)?;
    let mut signals = signals::Signals::listen().context("listening for SIGINT and SIGTERM")?;
    // Past the arguments' checks, a load that fails still has its line in the summary.
    let failed = |f: Failure| {
        let reason = mews_etl::with_causes(f.error.as_ref()).to_string();
        let row = summary::Row::failed(
            &schema.entity,
            Some(&plan.export_id),
            "failed",
            format!("FAILED: {reason}"),
            &reason,
        );
        say!("{}", summary::render_chosen(&[row]));
        f
    };
    let out = OutputDir::open(&args.out).map_err(|e| failed(e.into()))?;
    if mode == WriteMode::Append {
        // An unreadable table is reported by the load itself, with its path.
        if let Ok(loads) = out.current_loads(&schema.table) {
            refuse_partial_reload(&loads, schema, &plan.load_id, &sources)?;
            refuse_loaded_elsewhere(&loads, schema, &plan.load_id, &sources)?;
        }
    }
    tracing::info!(entity = %schema.entity, load_id = %plan.load_id, files = sources.len(), "converting");
    let report = runtime.block_on(async {
        tokio::select! {
            r = load_files(&out, &plan, &sources) => Ok(r),
            stop = signals.stopped() => Err(stop),
        }
    });
    let report = match report {
        Ok(r) => r.map_err(|e| failed(e.into()))?,
        Err(stop) => {
            return Err(interrupted(
                runtime,
                &out,
                stop,
                &format!("nothing of this load was committed ({} keeps its previous contents); run the same command again to load it", schema.table),
            ))
        }
    };
    say!(
        "{}",
        summary::render_chosen(&[summary::Row::from_report(&report)])
    );
    if let Some(q) = &report.quarantine {
        note_about!(
            [
                ("notice", "rejected_lines"),
                ("entity", report.manifest.entity.as_str()),
                ("load_id", report.manifest.load_id.as_str()),
                ("rejected_file", &q.to_string_lossy())
            ],
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

fn read_token(file: Option<&std::path::Path>, var: &str, flag: &str) -> Result<Secret, Failure> {
    let value = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| usage(format!("{flag} {}: {e}", path.display())))?,
        None => std::env::var(var).map_err(|_| {
            usage(format!(
                "no {var}: set it, or pass {flag}, or use --demo to run against the embedded mock"
            ))
        })?,
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(usage(match file {
            Some(path) => format!("{flag} {} is empty", path.display()),
            None => format!("{var} is empty"),
        }));
    }
    Ok(Secret::new(value))
}

fn run(args: &RunArgs, show_bars: bool) -> Result<(), Failure> {
    use mews_etl::export::{self, job, RunRequest};
    let mut entities: Vec<&'static EntitySchema> = Vec::new();
    if args.entities.is_empty() {
        entities.extend(schema::all());
    }
    for name in &args.entities {
        let s = find_entity(name)?;
        if !entities.iter().any(|e| e.entity == s.entity) {
            entities.push(s);
        }
    }
    let mode = args
        .mode
        .as_deref()
        .map(str::parse::<WriteMode>)
        .transpose()
        .map_err(|e| usage(format!("--mode: {e}")))?;
    let scope =
        (!args.enterprise_ids.is_empty() || !args.chain_ids.is_empty()).then(|| ExportScope {
            enterprise_ids: (!args.enterprise_ids.is_empty()).then(|| args.enterprise_ids.clone()),
            chain_ids: (!args.chain_ids.is_empty()).then(|| args.chain_ids.clone()),
        });
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let instant =
        |flag: &str, v: &str| export::parse_instant(v).map_err(|e| usage(format!("{flag}: {e}")));
    let updated = match (&args.updated_start, &args.updated_end) {
        (Some(start), Some(end)) => Some(export::Window::new(
            instant("--updated-start", start)?,
            instant("--updated-end", end)?,
        )),
        (Some(start), None) => Some(export::Window {
            start: instant("--updated-start", start)?,
            end: now - export::MIN_END_AGE_SECS,
            open_end: true,
        }),
        (None, Some(_)) => return Err(usage("--updated-end needs --updated-start".into())),
        (None, None) => None,
    };
    let day = |flag: &str, v: &str| export::parse_day(v).map_err(|e| usage(format!("{flag}: {e}")));
    // Entries are posted up to today, which is not over: as the default months, a range
    // ends yesterday at the latest.
    let last_day = export::yesterday(now);
    let posting = match (&args.posting_start, &args.posting_end) {
        (None, None) => None,
        (Some(s), end) => {
            let start = day("--posting-start", s)?;
            if start > last_day {
                return Err(usage(format!(
                    "--posting-start {s} is after yesterday ({}), the last posting day a run exports: no entry of it can be exported whole yet",
                    mews_etl::calendar::format_date(last_day)
                )));
            }
            let end = match end {
                Some(e) => {
                    let end = day("--posting-end", e)?;
                    if end > last_day {
                        tracing::info!(
                            "--posting-end {e} is after yesterday: ledger entries are exported up to {}",
                            mews_etl::calendar::format_date(last_day)
                        );
                    }
                    end.min(last_day)
                }
                None => last_day,
            };
            Some(export::Window {
                start,
                end,
                open_end: args.posting_end.is_none(),
            })
        }
        (None, Some(_)) => return Err(usage("--posting-end needs --posting-start".into())),
    };
    if (args.posting_start.is_some() || args.posting_end.is_some())
        && !entities.iter().any(|e| e.entity == "LedgerEntry")
    {
        tracing::warn!("--posting-start and --posting-end apply to LedgerEntry only, which this run does not export");
    }
    let updated = match updated {
        Some(_) if entities.iter().all(|e| e.entity == "LedgerEntry") => {
            tracing::warn!("--updated-start and --updated-end do not apply to LedgerEntry, the only entity type of this run: it is exported by posting month");
            None
        }
        updated => updated,
    };
    // An end the API would refuse as too recent is waited for, once everything else is
    // known to be right; the plan is made for the time the wait ends.
    let end_wait = updated
        .filter(|w| !w.open_end)
        .and_then(|w| export::end_wait(w.end, now).map(|wait| (w.end, wait)));
    let now = now + end_wait.map_or(0, |(_, wait)| wait);
    let request = RunRequest {
        entities,
        scope,
        updated,
        posting,
        mode,
    };
    let specs = export::plan(&request, now).map_err(usage)?;
    let Load {
        budget,
        threads,
        writer,
    } = load_settings(&args.load)?;
    if args.load.partition_by.is_some() {
        for spec in &specs {
            spec.schema
                .partition_spec_or_default(args.load.partition_by.as_deref())
                .map_err(|e| usage(format!("--partition-by: {e}")))?;
        }
    }
    let mut poll_cap =
        parse_duration(&args.poll_interval).map_err(|e| usage(format!("--poll-interval: {e}")))?;
    if args.demo {
        // The embedded mock is local and cheap to ask: poll it every second at most, so the
        // demo spends its time loading rather than waiting.
        poll_cap = poll_cap.min(DEMO_POLL_CAP);
    }
    let timeout = parse_duration(&args.timeout).map_err(|e| usage(format!("--timeout: {e}")))?;
    // Zero would poll without pause (spending the request budget the downloads need) or
    // give up before the first poll.
    for (flag, value) in [("--poll-interval", poll_cap), ("--timeout", timeout)] {
        if value.is_zero() {
            return Err(usage(format!("{flag} must be more than 0")));
        }
    }
    if args.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1".into()));
    }

    // Checked before a dry run too, so that a dry run says whether the real one could
    // start: the tokens are read and the platform URL validated, and no request is sent.
    let client = if args.demo {
        if args.platform_url != mews_etl::api::DEMO_PLATFORM_URL
            || args.client_token_file.is_some()
            || args.access_token_file.is_some()
        {
            tracing::warn!("--demo uses its embedded mock: the platform URL and token files given are not used");
        }
        None
    } else {
        let client_token = read_token(
            args.client_token_file.as_deref(),
            "MEWS_CLIENT_TOKEN",
            "--client-token-file",
        )?;
        let access_token = read_token(
            args.access_token_file.as_deref(),
            "MEWS_ACCESS_TOKEN",
            "--access-token-file",
        )?;
        let config = ApiConfig::new(args.platform_url.clone(), client_token, access_token);
        Some(ApiClient::new(config).map_err(|e| usage(e.to_string()))?)
    };

    let end_waited = |end: i64, wait: i64, verb: &str| {
        tracing::info!(
            "--updated-end {} is not yet {} minutes past: {verb} {wait} s, as the API takes only windows that ended that long ago",
            mews_etl::calendar::format_utc_seconds(end),
            export::MIN_END_AGE_SECS / 60
        );
    };
    if args.dry_run {
        if let Some((end, wait)) = end_wait {
            end_waited(end, wait, "a run would first wait");
        }
        if summary::is_json() {
            // One JSON object per export, as the summary of a run would have one per load.
            for spec in &specs {
                let text = format!("{}{}", spec.scope_text(), spec.filters_text());
                let line = serde_json::json!({
                    "entity": spec.schema.entity,
                    "key": spec.key(),
                    "mode": spec.mode.to_string(),
                    "filters": text.trim(),
                    "table": spec.schema.table,
                    "path": args.out.join(&spec.schema.table).display().to_string(),
                });
                say!("{line}");
            }
        } else {
            say!("{:<24} {:<8} {:<60} table", "entity", "mode", "filters");
            for spec in &specs {
                let text = format!("{}{}", spec.scope_text(), spec.filters_text());
                let filters = text.trim();
                say!(
                    "{:<24} {:<8} {:<60} {}",
                    spec.schema.entity,
                    spec.mode.to_string(),
                    if filters.is_empty() {
                        "(all rows)"
                    } else {
                        filters
                    },
                    args.out.join(&spec.schema.table).display()
                );
            }
            say!("{} export(s); nothing was changed (--dry-run)", specs.len());
        }
        let state =
            RunState::load(&RunState::path_in(&args.out)).context("reading the run state")?;
        warn_overlapping_scopes(&state, &specs, &args.out);
        for spec in &specs {
            if let Some(job) = state.resumable(&spec.key()) {
                note!(
                    "{}: a run would first resume export {} (created {}), which this directory recorded for this window and did not load",
                    spec.schema.entity,
                    job.export_id,
                    job.created_utc
                );
            }
        }
        name_unloaded(&job::unloaded_jobs(&state, &specs, &args.out), &args.out);
        // The layout checks a run makes before adding an export, reading only. After a
        // replace of a table, the run's appends join the layout that replace gives it.
        let mut refused = 0;
        let mut replaced = std::collections::HashSet::new();
        for spec in &specs {
            if spec.mode == WriteMode::Append && replaced.contains(&spec.schema.table) {
                continue;
            }
            if spec.mode == WriteMode::Replace {
                replaced.insert(spec.schema.table.clone());
            }
            let partition = spec
                .schema
                .partition_spec_or_default(args.load.partition_by.as_deref())
                .map_err(|e| usage(format!("--partition-by: {e}")))?;
            if let Err(e) = mews_etl::commit::check_layout(
                &args.out,
                &spec.schema.table,
                spec.mode,
                &spec.load_id(),
                &partition.to_string(),
                &spec.schema.fingerprint(),
            ) {
                fail!("{}: a run would fail: {e}", spec.schema.entity);
                refused += 1;
            }
        }
        // As a run would, before anything else: the directory is inside another's, or
        // another process holds it.
        mews_etl::commit::refuse_inside_output_dir(&args.out)
            .and_then(|()| OutputDir::check_unlocked(&args.out))
            .context("a run now would stop at once (--dry-run)")?;
        if refused > 0 {
            return Err(Failure {
                status: exit::OUTPUT,
                error: anyhow!(
                    "{refused} of {} export(s) could not be loaded into {} as they are (--dry-run)",
                    specs.len(),
                    args.out.display()
                ),
            });
        }
        return Ok(());
    }

    let runtime = runtime(args.concurrency.min(specs.len()), threads)?;
    let mut signals = signals::Signals::listen().context("listening for SIGINT and SIGTERM")?;
    if let Some((end, wait)) = end_wait {
        // Listened for from here, so that a stop while waiting is reported as one, even where
        // the job was started with SIGINT ignored (`cmd &` in a script).
        end_waited(end, wait, "waiting");
        let wait = std::time::Duration::from_secs(wait.unsigned_abs());
        let stopped = runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(wait) => None,
                stop = signals.stopped() => Some(stop),
            }
        });
        if let Some(stop) = stopped {
            return Err(Failure {
                status: stop.status,
                error: anyhow!(
                    "interrupted by {} while waiting for --updated-end to pass: nothing was exported or recorded; run the same command again",
                    stop.name
                ),
            });
        }
    }
    let load = job::LoadSettings {
        partition_by: args.load.partition_by.clone(),
        writer,
        budget,
        max_line_bytes: args.load.max_line_bytes,
        batch_bytes: mews_etl::input::DEFAULT_BATCH_BYTES,
        parallel_sources: mews_etl::convert::DEFAULT_PARALLEL_SOURCES,
        decode_threads: threads,
    };
    let (results, out, unloaded) = runtime.block_on(async {
        // First the output directory (made, locked, recovered): a run that cannot write there
        // starts nothing, not even the demo's mock.
        let out = Arc::new(OutputDir::open(&args.out)?);
        let (client, mock) = match client {
            Some(client) => {
                // The default is the demo platform: a production token sent there is
                // refused, and this line says where it went (the URL is checked by now: no
                // credentials, no query).
                tracing::info!(platform = %mews_etl::api::redact_url(&args.platform_url), "Connector API");
                (client, None)
            }
            None => {
                let mut config = MockConfig::demo();
                config.rows = args.demo_rows;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                let mock = MockServer::start(config.clone(), addr)
                    .await
                    .context("starting the embedded mock API")?;
                tracing::info!(url = %mock.base_url(), "demo: embedded Connector API mock started");
                let config = ApiConfig::new(
                    mock.base_url(),
                    Secret::new(config.client_token),
                    Secret::new(config.access_token),
                );
                let client = ApiClient::new(config).map_err(|e| usage(e.to_string()))?;
                (client, Some(mock))
            }
        };
        let run_out = out.clone();
        let state_path = RunState::path_in(out.root());
        // The lock is held: no other process is saving, so temporaries are leftovers.
        if let Some(dir) = state_path.parent() {
            if let Err(e) = RunState::remove_leftovers(dir) {
                tracing::warn!(error = %e, "could not remove leftovers of an interrupted run");
            }
        }
        let mut state = RunState::load(&state_path).context("reading the run state")?;
        warn_overlapping_scopes(&state, &specs, out.root());
        let unloaded = job::unloaded_jobs(&state, &specs, out.root());
        let now = mews_etl::manifest::rfc3339_utc(std::time::SystemTime::now());
        for spec in &specs {
            state.ask(&spec.key(), &spec.schema.entity, &now);
        }
        // Saved once before any export is added: a state file that cannot be written (a
        // full disk, a read-only directory) fails the run here, not after exports were added
        // that nothing records.
        state
            .save(&state_path)
            .context("writing the run state")?;
        let progress = mews_etl::progress::RunProgress::default();
        let bars = show_bars.then(|| bars::Bars::start(progress.clone()));
        let ctx = Arc::new(job::RunContext {
            progress,
            poller: Poller::new(client.clone(), poll_cap),
            client,
            out: run_out,
            state: Arc::new(tokio::sync::Mutex::new(state)),
            state_path,
            load,
            timeout,
            load_slots: Arc::new(tokio::sync::Semaphore::new(args.concurrency)),
            credentials: Default::default(),
            state_unsaved: Default::default(),
        });
        let state = ctx.state.clone();
        let results = tokio::select! {
            results = export::run_all(ctx, specs) => Ok(results),
            stop = signals.stopped() => Err(stop),
        };
        if let Some(bars) = bars {
            bars.stop().await;
        }
        if let (Some(mock), Ok(_)) = (mock, &results) {
            mock.shutdown().await;
        }
        // What this run loaded in passing (a ledger month takes the place of an earlier
        // release's windows of it) is no longer to be named.
        let mut unloaded = unloaded;
        {
            let state = state.lock().await;
            unloaded.retain(|u| state.is_unloaded(&u.key));
        }
        Ok::<_, Failure>((results, out, unloaded))
    })?;
    let results = match results {
        Ok(r) => r,
        Err(stop) => {
            return Err(interrupted(
                runtime,
                &out,
                stop,
                "the loads in progress were abandoned and nothing of them is visible; loads committed before stay committed; the state file keeps the export ids, so the next run resumes them",
            ))
        }
    };

    let rows: Vec<summary::Row> = results.iter().map(summary::Row::from_job).collect();
    say!("{}", summary::render_chosen(&rows));
    name_unloaded(&unloaded, out.root());
    let mut status = 0;
    for r in &results {
        let s = match &r.outcome {
            job::JobOutcome::Committed(report) => {
                if let Some(q) = &report.quarantine {
                    note_about!(
                        [
                            ("notice", "rejected_lines"),
                            ("entity", r.entity.as_str()),
                            ("key", r.key.as_str()),
                            ("load_id", report.manifest.load_id.as_str()),
                            ("rejected_file", &q.to_string_lossy())
                        ],
                        "{}: {} rejected line(s) written to {}",
                        r.entity,
                        report.manifest.counts.rejected,
                        q.display()
                    );
                }
                0
            }
            job::JobOutcome::AlreadyLoaded { .. } => 0,
            job::JobOutcome::OverBudget(report) => {
                fail!(
                    "{}: {} line(s) rejected, more than --max-rejected allows; nothing committed; they are in {}; a rerun with a larger budget resumes the same export",
                    r.entity,
                    report.manifest.counts.rejected,
                    report
                        .quarantine
                        .as_deref()
                        .map_or_else(|| "the quarantine".into(), |q| q.display().to_string())
                );
                exit::OVER_BUDGET
            }
            job::JobOutcome::Failed { reason, kind, .. } => {
                fail!("{}: {reason}", r.entity);
                match kind {
                    job::FailureKind::Usage => exit::USAGE,
                    job::FailureKind::Remote => exit::SOME_FAILED,
                    job::FailureKind::Output => exit::OUTPUT,
                    job::FailureKind::Internal => exit::INTERNAL,
                }
            }
            job::JobOutcome::Conflict { reason } => {
                fail!("{}: {reason}", r.entity);
                exit::CONFLICT
            }
        };
        // The most specific problem wins: a defect, then the command, the output directory
        // and a conflict, which need a person, then a failure, which a rerun may mend.
        let rank = |s: u8| match s {
            exit::INTERNAL => 6,
            exit::USAGE => 5,
            exit::OUTPUT => 4,
            exit::CONFLICT => 3,
            exit::SOME_FAILED => 2,
            exit::OVER_BUDGET => 1,
            _ => 0,
        };
        if rank(s) > rank(status) {
            status = s;
        }
    }
    if status == 0 {
        Ok(())
    } else {
        Err(Failure {
            status,
            error: anyhow!(
                "{} of {} export(s) did not commit",
                results.iter().filter(|r| !r.is_committed()).count(),
                results.len()
            ),
        })
    }
}

fn mock_server(args: &MockServerArgs) -> Result<(), Failure> {
    let mut config = MockConfig::demo();
    config.rows = args.rows;
    config.files_per_export = args.files;
    config.gzip = args.gzip;
    config.seed = args.seed;
    let runtime = runtime(1, 1)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let (client_token, access_token) = (config.client_token.clone(), config.access_token.clone());
    let announce = move |url: &str| {
        tell!(
            "serving the Connector API mock on {url} (client token {client_token}, access token {access_token}); Ctrl-C or SIGTERM stops"
        );
    };
    runtime
        .block_on(mews_etl::mock::serve_forever(config, addr, announce))
        .map_err(|e| match e.kind() {
            // The port given cannot be had: a matter of the command, not a defect.
            std::io::ErrorKind::AddrInUse
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::PermissionDenied => usage(format!(
                "--port {}: {e}; choose another (0 picks a free one)",
                args.port
            )),
            _ => Failure::from(anyhow::Error::from(e).context("serving the mock")),
        })?;
    Ok(())
}
