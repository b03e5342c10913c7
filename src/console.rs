//! Lines for the terminal that never panic: `println!` and `eprintln!` panic when the other
//! end of a pipe has gone (`mews-etl schema | head -1`), which would turn a finished load
//! into exit status 101.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether logs are JSON (`--log-format json`): problems are then log events too, so that a
/// log collector gets them as records instead of stray text lines.
static JSON: AtomicBool = AtomicBool::new(false);

/// Makes [`problem`], [`notice`] and [`announce`] log events (JSON logs) or plain lines (text).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// A problem the run ends with: `error: …` on stderr, or an `ERROR` record in JSON logs.
pub fn problem(args: std::fmt::Arguments<'_>) {
    past_the_filter("ERROR", "error: ", args);
}

/// News a person must see even with `-q` (a quarantine file): a line on stderr, or a
/// `WARN` record in JSON logs.
pub fn notice(args: std::fmt::Arguments<'_>) {
    notice_about(&[], args);
}

/// [`notice`] about one thing a log collector may alert on: in JSON logs, `fields` are
/// fields of the record beside its message (`entity`, `key`, `rejected_file`, …).
pub fn notice_about(fields: &[(&str, &str)], args: std::fmt::Arguments<'_>) {
    if JSON.load(Ordering::Relaxed) {
        record_with("WARN", fields, args);
    } else {
        err(args);
    }
}

/// News that is no problem but must be seen even with `-q` (where a server listens): a
/// line on stderr, or an `INFO` record in JSON logs.
pub fn announce(args: std::fmt::Arguments<'_>) {
    past_the_filter("INFO", "", args);
}

/// A `level` record in JSON logs, or the text after `prefix` on stderr.
fn past_the_filter(level: &str, prefix: &str, args: std::fmt::Arguments<'_>) {
    if JSON.load(Ordering::Relaxed) {
        record(level, args);
    } else {
        err(format_args!("{prefix}{args}"));
    }
}

/// A JSON log record in the shape of the log's others, written past the log filter: `-q`
/// or a `RUST_LOG` naming other crates must not hide what the run ended with.
fn record(level: &str, args: std::fmt::Arguments<'_>) {
    record_with(level, &[], args);
}

/// [`record`] with more fields after the message.
fn record_with(level: &str, fields: &[(&str, &str)], args: std::fmt::Arguments<'_>) {
    // Keys in the order, and the time to the microsecond, of the tracing records around it.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = mews_etl::calendar::format_utc_seconds(since_epoch.as_secs() as i64);
    let timestamp = format!(
        "{}.{:06}Z",
        seconds.trim_end_matches('Z'),
        since_epoch.subsec_micros()
    );
    let text = |value: &str| serde_json::Value::from(value).to_string();
    let more: String = fields
        .iter()
        .map(|(name, value)| format!(",{}:{}", text(name), text(value)))
        .collect();
    err(format_args!(
        r#"{{"timestamp":{},"level":{},"fields":{{"message":{}{more}}},"target":"mews_etl"}}"#,
        text(&timestamp),
        text(level),
        text(&args.to_string())
    ));
}

/// Writes one line to standard output. A reader that has gone away is not an error of
/// ours (the output was only for it); any other failure is logged, since the summary is
/// also in the load's manifest.
pub fn out(args: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() != io::ErrorKind::BrokenPipe {
            tracing::warn!(error = %e, "cannot write to standard output");
        }
    }
}

/// Writes one line to standard error, ignoring failure: there is nowhere left to report it.
pub fn err(args: std::fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` that does not panic (see [`out`]).
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::out(format_args!($($arg)*)) };
}

/// See [`problem`].
macro_rules! fail {
    ($($arg:tt)*) => { $crate::console::problem(format_args!($($arg)*)) };
}

/// See [`notice`].
macro_rules! note {
    ($($arg:tt)*) => { $crate::console::notice(format_args!($($arg)*)) };
}

/// [`note!`] with fields for JSON logs first: `note_about!([("entity", e)], "…", …)`.
macro_rules! note_about {
    ([$(($name:expr, $value:expr)),* $(,)?], $($arg:tt)*) => {
        $crate::console::notice_about(&[$(($name, $value)),*], format_args!($($arg)*))
    };
}

/// See [`announce`].
macro_rules! tell {
    ($($arg:tt)*) => { $crate::console::announce(format_args!($($arg)*)) };
}

pub(crate) use {fail, note, note_about, say, tell};
