//! Resource bounds of `mews-etl convert`, end to end on the real binary: a line nested
//! 10 000 levels deep and a 1 GiB line are rejected lines with a reason, the lines around
//! them load with their own line numbers, and memory stays bounded while the long line
//! streams through.

mod common;

use common::{assert_ok, read_table};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use mews_etl::framing::{DEFAULT_MAX_LINE_BYTES, OVERSIZED_PREFIX_BYTES};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const GOOD_A: &str =
    r#"{"Id":"a","PostingDate":"2024-01-31","Value":1.5,"CreatedUtc":"2024-01-31T10:00:00Z"}"#;
const GOOD_B: &str =
    r#"{"Id":"b","PostingDate":"2024-02-01","Value":2.5,"CreatedUtc":"2024-02-01T10:00:00Z"}"#;

/// `mews-etl -q convert --entity LedgerEntry --out <dir>/out --max-rejected 10 <args>`,
/// spawned with piped stdin, stdout and stderr.
fn spawn_convert(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args(["-q", "convert", "--entity", "LedgerEntry", "--out"])
        .arg(dir.join("out"))
        .args(["--max-rejected", "10"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `(_line, Id)` of every row, in line order.
fn lines_and_ids(out: &Path) -> Vec<(i64, String)> {
    let b = read_table(out, "ledger_entry");
    let lines = b
        .column_by_name("_line")
        .unwrap()
        .as_primitive::<Int64Type>();
    let ids = b.column_by_name("Id").unwrap().as_string::<i32>();
    (0..b.num_rows())
        .map(|i| (lines.value(i), ids.value(i).to_owned()))
        .collect()
}

/// The quarantine records of load `load`, committed.
fn quarantine(out: &Path, load: &str) -> Vec<serde_json::Value> {
    let path: PathBuf = common::in_loads(out, "ledger_entry", &format!("{load}.rejected.jsonl"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `depth` containers opened with `open`, a `1` inside, all closed again.
fn nest(open: &str, close: &str, depth: usize) -> String {
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn lines_nested_ten_thousand_deep_are_quarantined_and_their_neighbours_load() {
    let dir = tempfile::tempdir().unwrap();
    let arrays = nest("[", "]", 10_000);
    let objects = nest(r#"{"k":"#, "}", 10_000);
    let lines = [
        GOOD_A.to_owned(),
        // In a property the schema does not know (headed for _extra).
        format!(r#"{{"Id":"x","Unknown":{arrays}}}"#),
        format!(r#"{{"Id":"y","Unknown":{objects}}}"#),
        // In a known property, whose type the brackets do not fit.
        format!(r#"{{"Id":"z","Value":{arrays}}}"#),
        // The whole line.
        arrays.clone(),
        GOOD_B.to_owned(),
    ];
    let file = dir.path().join("deep.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let child = spawn_convert(dir.path(), &[file.to_str().unwrap()]);
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    let out = dir.path().join("out");
    assert_eq!(
        lines_and_ids(&out),
        vec![(1, "a".to_owned()), (6, "b".to_owned())]
    );
    let q = quarantine(&out, "deep");
    let got: Vec<(u64, &str)> = q
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    assert!(
        got[0]
            .1
            .starts_with("property Unknown: nested deeper than 128 levels"),
        "{got:?}"
    );
    assert!(
        got[1]
            .1
            .starts_with("property Unknown: nested deeper than 128 levels"),
        "{got:?}"
    );
    assert!(
        got[2].1.starts_with("property Value: expected a decimal"),
        "{got:?}"
    );
    assert!(got[3].1.contains("not a JSON object"), "{got:?}");
    // The rejected line is kept whole for the quarantine (it was within the length limit).
    assert_eq!(q[0]["text"], lines[1]);
}

/// Peak resident memory of a running process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib * 1024
}

/// Generous against the real peak (about 85 MiB in a debug build: the 64 MiB line-limit
/// buffer plus a few batches), far below the line itself: buffering the line whole would
/// exceed it three times over.
const PEAK_RSS_BOUND: u64 = 300 << 20;

#[test]
fn a_one_gib_line_is_rejected_without_being_buffered_and_the_next_line_loads() {
    const LINE_BYTES: u64 = 1 << 30;
    assert!(LINE_BYTES > DEFAULT_MAX_LINE_BYTES as u64);
    let dir = tempfile::tempdir().unwrap();
    // The default line limit, on stdin: the line is streamed from here, never held whole.
    let mut child = spawn_convert(dir.path(), &["--export-id", "big", "-"]);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{GOOD_A}").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..LINE_BYTES / chunk.len() as u64 {
        stdin.write_all(&chunk).unwrap();
    }
    writeln!(stdin).unwrap();
    writeln!(stdin, "{GOOD_B}").unwrap();
    stdin.flush().unwrap();
    // The process waits for the end of its input, so it is still there to be measured; all
    // but a pipe's worth of the line has gone through it by now.
    let peak = peak_rss(pid);
    eprintln!("peak RSS {} MiB", peak >> 20);
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    assert!(
        peak < PEAK_RSS_BOUND,
        "peak RSS {} MiB while a 1 GiB line streamed through",
        peak >> 20
    );
    let out = dir.path().join("out");
    assert_eq!(
        lines_and_ids(&out),
        vec![(1, "a".to_owned()), (3, "b".to_owned())]
    );
    let q = quarantine(&out, "big");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"], 2);
    assert_eq!(q[0]["length"], LINE_BYTES);
    assert_eq!(
        q[0]["reason"],
        format!("line is {LINE_BYTES} bytes long, over the limit")
    );
    assert_eq!(
        q[0]["prefix"].as_str().unwrap(),
        "x".repeat(OVERSIZED_PREFIX_BYTES)
    );
}
