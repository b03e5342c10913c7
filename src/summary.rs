//! The end-of-run summary, printed to stdout: a table for people, or one JSON object per
//! load for a scheduler (`--summary-format json`).

use mews_etl::convert::{LoadOutcome, LoadReport};
use mews_etl::export::job::{JobOutcome, JobResult};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the summary is JSON (`--summary-format json`).
static JSON: AtomicBool = AtomicBool::new(false);

/// Makes [`render_chosen`] render JSON (or the table).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Whether the command line asked for JSON (`--summary-format json`).
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// The summary in the format the command line chose, without a trailing newline.
pub fn render_chosen(rows: &[Row]) -> String {
    let text = if is_json() {
        render_json(rows)
    } else {
        render(rows)
    };
    text.trim_end().to_owned()
}

/// One line of the summary; serialized (fields in this order) for `--summary-format json`.
#[derive(serde::Serialize)]
pub struct Row {
    entity: String,
    /// The table the load goes to (`<out>/<table>`).
    table: String,
    /// `run`: the job's key (entity, scope and window), which tells apart the loads of one
    /// entity type (posting months, 180-day parts).
    key: Option<String>,
    /// `None` for a job that failed before its export was added.
    export_id: Option<String>,
    /// The load's name among the table's loads (its manifest is `loads/<load_id>.json`);
    /// `None` where no load was made.
    load_id: Option<String>,
    /// `committed`, `already_loaded`, `over_budget`, `failed` or `conflict`.
    outcome: &'static str,
    /// The table version that holds the load, once committed.
    version: Option<u64>,
    files: usize,
    lines: u64,
    rows: u64,
    rejected: u64,
    bytes: u64,
    #[serde(serialize_with = "milliseconds")]
    seconds: f64,
    /// Why the load did not commit, whole.
    reason: Option<String>,
    /// The file of the load's rejected lines, if any line was rejected.
    rejected_file: Option<String>,
    drift: Vec<String>,
    /// The table's status cell.
    #[serde(skip)]
    status: String,
}

/// Drift counts a load's summary names one by one; the rest are counted, and the load's
/// manifest has them all (up to [`mews_etl::manifest::MAX_DRIFT_KEYS`] per kind).
const MAX_DRIFT_SHOWN: usize = 20;

/// Seconds to the millisecond: more digits are noise.
fn milliseconds<S: serde::Serializer>(seconds: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((seconds * 1000.0).round() / 1000.0)
}

impl Row {
    /// The summary line of one load.
    pub fn from_report(r: &LoadReport) -> Self {
        let c = &r.manifest.counts;
        let mut drift = Vec::new();
        let mut more = 0;
        for (what, map) in [
            ("unknown property", &c.unknown_properties),
            ("unknown enum value", &c.unknown_enum_values),
            ("missing required", &c.missing_required),
        ] {
            // The rows of keys past the manifest's bound come last.
            let others = map.get_key_value(mews_etl::manifest::OTHER_DRIFT);
            let named = map
                .iter()
                .filter(|(k, _)| k.as_str() != mews_etl::manifest::OTHER_DRIFT);
            for (k, n) in named.chain(others) {
                if drift.len() < MAX_DRIFT_SHOWN {
                    drift.push(format!("{what} {k}: {n} row(s)"));
                } else {
                    more += 1;
                }
            }
        }
        if more > 0 {
            drift.push(format!(
                "{more} more drift count(s): see the load's manifest"
            ));
        }
        Row {
            entity: r.manifest.entity.clone(),
            table: r.manifest.table.clone(),
            export_id: Some(r.manifest.export_id.clone()),
            load_id: Some(r.manifest.load_id.clone()),
            rejected_file: r
                .quarantine
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            files: r.manifest.sources.len(),
            lines: c.lines_read - c.blank_lines,
            rows: c.rows_written,
            rejected: c.rejected,
            bytes: r.manifest.sources.iter().map(|s| s.bytes).sum(),
            seconds: r.elapsed.as_secs_f64(),
            status: match &r.outcome {
                LoadOutcome::Committed { version } => format!("committed v{version}"),
                LoadOutcome::OverBudget => "NOT committed (over --max-rejected)".into(),
            },
            outcome: match r.outcome {
                LoadOutcome::Committed { .. } => "committed",
                LoadOutcome::OverBudget => "over_budget",
            },
            version: match r.outcome {
                LoadOutcome::Committed { version } => Some(version),
                LoadOutcome::OverBudget => None,
            },
            key: None,
            reason: match r.outcome {
                LoadOutcome::Committed { .. } => None,
                LoadOutcome::OverBudget => {
                    Some("more lines rejected than --max-rejected allows".into())
                }
            },
            drift,
        }
    }
}

impl Row {
    /// The summary line of one export job of `run`.
    pub fn from_job(j: &JobResult) -> Self {
        let mut row = match &j.outcome {
            JobOutcome::Committed(r) | JobOutcome::OverBudget(r) => Row::from_report(r),
            JobOutcome::AlreadyLoaded {
                manifest: m,
                version,
            } => Row {
                entity: m.entity.clone(),
                table: m.table.clone(),
                export_id: Some(m.export_id.clone()),
                load_id: Some(m.load_id.clone()),
                rejected_file: None,
                files: m.sources.len(),
                lines: m.counts.lines_read - m.counts.blank_lines,
                rows: m.counts.rows_written,
                rejected: m.counts.rejected,
                bytes: m.sources.iter().map(|s| s.bytes).sum(),
                seconds: 0.0,
                status: "committed by an earlier run".into(),
                outcome: "already_loaded",
                version: *version,
                reason: None,
                key: None,
                drift: Vec::new(),
            },
            JobOutcome::Failed {
                export_id, reason, ..
            } => Row::failed(
                &j.entity,
                export_id.as_deref(),
                "failed",
                format!("FAILED: {reason}"),
                reason,
            ),
            JobOutcome::Conflict { reason } => Row::failed(
                &j.entity,
                None,
                "conflict",
                "NOT started: another export is pending".into(),
                reason,
            ),
        };
        row.seconds = j.elapsed.as_secs_f64();
        row.key = Some(j.key.clone());
        row
    }

    /// The summary line of a load that did not run to its end: `outcome` (`failed` or
    /// `conflict`), the table's status column, and the whole reason.
    pub fn failed(
        entity: &str,
        export_id: Option<&str>,
        outcome: &'static str,
        status: String,
        reason: &str,
    ) -> Self {
        let status: String = status.chars().take(120).collect();
        Row {
            entity: entity.to_owned(),
            table: mews_etl::schema::find(entity).map_or_else(String::new, |s| s.table.clone()),
            export_id: export_id.map(str::to_owned),
            load_id: None,
            rejected_file: None,
            files: 0,
            lines: 0,
            rows: 0,
            rejected: 0,
            bytes: 0,
            seconds: 0.0,
            status,
            outcome,
            version: None,
            reason: Some(reason.to_owned()),
            key: None,
            drift: Vec::new(),
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The table, then any drift, one line each.
pub fn render(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:<24} {:<38} {:>5} {:>12} {:>12} {:>9} {:>11} {:>8}  status",
        "entity", "export", "files", "lines", "rows", "rejected", "bytes", "seconds"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<38} {:>5} {:>12} {:>12} {:>9} {:>11} {:>8.2}  {}",
            r.entity,
            r.export_id.as_deref().unwrap_or("-"),
            r.files,
            r.lines,
            r.rows,
            r.rejected,
            human_bytes(r.bytes),
            r.seconds,
            r.status
        );
    }
    for r in rows {
        for d in &r.drift {
            let _ = writeln!(out, "drift: {} {d}", r.entity);
        }
    }
    out
}

/// One JSON object per load, a line each (see [`Row`]): the table's columns with exact
/// numbers, the outcome as a word, the job's key (`run`), the table version, the whole
/// reason a load did not commit, and any drift.
pub fn render_json(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        // Serializing plain fields cannot fail.
        if let Ok(line) = serde_json::to_string(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}
