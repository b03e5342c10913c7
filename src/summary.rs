//! The end-of-run summary table, printed to stdout.

use mews_etl::convert::{LoadOutcome, LoadReport};
use mews_etl::export::job::{JobOutcome, JobResult};

/// One line of the summary.
pub struct Row {
    entity: String,
    export_id: String,
    files: usize,
    lines: u64,
    rows: u64,
    rejected: u64,
    bytes: u64,
    seconds: f64,
    status: String,
    drift: Vec<String>,
}

impl Row {
    /// The summary line of one load.
    pub fn from_report(r: &LoadReport) -> Self {
        let c = &r.manifest.counts;
        let mut drift = Vec::new();
        for (what, map) in [
            ("unknown property", &c.unknown_properties),
            ("unknown enum value", &c.unknown_enum_values),
            ("missing required", &c.missing_required),
        ] {
            for (k, n) in map {
                drift.push(format!("{what} {k}: {n} row(s)"));
            }
        }
        Row {
            entity: r.manifest.entity.clone(),
            export_id: r.manifest.export_id.clone(),
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
            drift,
        }
    }
}

impl Row {
    /// The summary line of one export job of `run`.
    pub fn from_job(j: &JobResult) -> Self {
        let mut row = match &j.outcome {
            JobOutcome::Committed(r) | JobOutcome::OverBudget(r) => Row::from_report(r),
            JobOutcome::AlreadyLoaded(m) => Row {
                entity: m.entity.clone(),
                export_id: m.export_id.clone(),
                files: m.sources.len(),
                lines: m.counts.lines_read - m.counts.blank_lines,
                rows: m.counts.rows_written,
                rejected: m.counts.rejected,
                bytes: m.sources.iter().map(|s| s.bytes).sum(),
                seconds: 0.0,
                status: "committed by an earlier run".into(),
                drift: Vec::new(),
            },
            JobOutcome::Failed {
                export_id, reason, ..
            } => Row::failed(&j.entity, export_id.as_deref(), format!("FAILED: {reason}")),
            JobOutcome::Conflict { .. } => Row::failed(
                &j.entity,
                None,
                "NOT started: another export is pending".into(),
            ),
        };
        row.seconds = j.elapsed.as_secs_f64();
        row
    }

    fn failed(entity: &str, export_id: Option<&str>, status: String) -> Self {
        let status: String = status.chars().take(120).collect();
        Row {
            entity: entity.to_owned(),
            export_id: export_id.unwrap_or("-").to_owned(),
            files: 0,
            lines: 0,
            rows: 0,
            rejected: 0,
            bytes: 0,
            seconds: 0.0,
            status,
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
            r.export_id,
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
