//! `mews-etl convert` end to end: the real binary on files in a temporary directory, the
//! Parquet read back through the table link and compared value by value with the input.

mod common;

use common::{assert_ok, parquet_files, read_table};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use mews_etl::generate::{Generator, Variety};
use mews_etl::schema::{self, DataType, EntitySchema, Property};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A temporary working directory with an output directory inside.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Writes rows `rows` of `g` (one a line) to `name` in the working directory.
    fn write_rows(&self, g: &mut Generator, name: &str, rows: std::ops::Range<u64>) -> PathBuf {
        let mut text = Vec::new();
        g.write_lines(rows.start, rows.end - rows.start, &mut text)
            .unwrap();
        self.write(name, &text)
    }

    /// Runs `mews-etl convert --out <out> <args>`.
    fn convert(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mews-etl"));
        cmd.arg("-q")
            .arg("convert")
            .arg("--out")
            .arg(self.out())
            .args(args);
        cmd.current_dir(self.dir.path());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(bytes) = stdin {
            // The process may exit before reading (a usage error); a broken pipe is expected then.
            let _ = child.stdin.take().unwrap().write_all(bytes);
        }
        child.wait_with_output().unwrap()
    }
}

fn lineage(line: i64) -> common::ExpectedLineage<'static> {
    common::ExpectedLineage { line, extra: None }
}

/// The example rows the API reference shows for an entity: the objects of the first
/// array in the response example that precedes the entity's section.
fn reference_examples(schema: &EntitySchema) -> Vec<String> {
    let dir = common::reference_dir();
    let text = std::fs::read_to_string(dir.join(&schema.reference.file)).unwrap();
    let heading = text
        .lines()
        .position(|l| {
            l.trim_start_matches('#').trim() == schema.reference.section && l.starts_with('#')
        })
        .unwrap_or_else(|| panic!("section {} not found", schema.reference.section));
    let lines: Vec<&str> = text.lines().collect();
    // The last ```javascript block before the section heading.
    let Some(start) = (0..heading)
        .rev()
        .find(|&i| lines[i].starts_with("```javascript"))
    else {
        return Vec::new();
    };
    let end = (start + 1..heading)
        .find(|&i| lines[i].starts_with("```"))
        .unwrap();
    let block = lines[start + 1..end].join("\n");
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&block) else {
        return Vec::new();
    };
    let Some(obj) = value.as_object() else {
        return Vec::new();
    };
    for v in obj.values() {
        if let Some(items) = v.as_array() {
            if items.iter().all(|i| i.get("Id").is_some()) && !items.is_empty() {
                return items
                    .iter()
                    .map(|i| serde_json::to_string(i).unwrap())
                    .collect();
            }
        }
    }
    Vec::new()
}

/// Properties of `line` that the schema does not know, keyed by path as `_extra` holds
/// them (the reference's own examples carry a few, e.g. a misspelt property).
fn unknown_properties(schema: &EntitySchema, line: &str) -> Option<serde_json::Value> {
    fn walk(
        props: &[Property],
        value: &serde_json::Value,
        path: &str,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        let Some(obj) = value.as_object() else { return };
        for (k, v) in obj {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match props.iter().find(|p| &p.name == k) {
                None => {
                    out.insert(here, v.clone());
                }
                Some(p) => walk_type(&p.data_type, v, &here, out),
            }
        }
    }
    fn walk_type(
        t: &DataType,
        v: &serde_json::Value,
        path: &str,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        match (t, v) {
            (DataType::Object(props, _), _) => walk(props, v, path, out),
            (DataType::Array(item), serde_json::Value::Array(items)) => {
                for (i, x) in items.iter().enumerate() {
                    walk_type(item, x, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let mut out = serde_json::Map::new();
    walk(&schema.properties, &value, "", &mut out);
    (!out.is_empty()).then_some(serde_json::Value::Object(out))
}

#[test]
fn every_entity_round_trips_value_by_value() {
    let env = Env::new();
    let mut seen_examples = 0;
    for schema in schema::all() {
        let mut lines = reference_examples(schema);
        seen_examples += lines.len();
        let mut generator = Generator::new(schema, 7, Variety::Thorough);
        for i in 0..300 {
            let mut row = Vec::new();
            generator.write_row(i, &mut row);
            lines.push(String::from_utf8(row).unwrap());
        }
        let text = lines.join("\n") + "\n";
        let file = env.write(&format!("{}.jsonl", schema.table), text.as_bytes());
        let o = env.convert(&[
            "--entity",
            &schema.entity,
            "--max-rejected",
            "0",
            file.to_str().unwrap(),
        ]);
        assert_ok(&o);
        let batch = read_table(&env.out(), &schema.table);
        assert_eq!(batch.num_rows(), lines.len(), "{}", schema.entity);
        let mut problems = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let extra = unknown_properties(schema, line);
            let expected = common::ExpectedLineage {
                line: (i + 1) as i64,
                extra: extra.as_ref(),
            };
            for p in common::compare_row(schema, line, &batch, i, Some(expected)) {
                problems.push(format!("{} line {}: {p}", schema.entity, i + 1));
            }
        }
        assert!(
            problems.is_empty(),
            "{}",
            problems[..problems.len().min(20)].join("\n")
        );
    }
    assert!(
        seen_examples >= 9,
        "reference examples found: {seen_examples}"
    );
}

#[test]
fn input_edge_cases_keep_line_numbers() {
    let env = Env::new();
    let schema = schema::find("Payment").unwrap();
    let mut g = Generator::new(schema, 1, Variety::Realistic);
    let rows: Vec<String> = (0..4)
        .map(|i| {
            let mut r = Vec::new();
            g.write_row(i, &mut r);
            String::from_utf8(r).unwrap()
        })
        .collect();
    // BOM, CRLF, a blank line, a whitespace-only line, no final newline.
    let text = format!(
        "\u{feff}{}\r\n\r\n{}\n   \n{}\r\n{}",
        rows[0], rows[1], rows[2], rows[3]
    );
    let plain = env.write("p.jsonl", text.as_bytes());
    let o = env.convert(&[
        "--entity",
        "Payment",
        "--export-id",
        "plain",
        plain.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let b = read_table(&env.out(), "payment");
    let lines: Vec<i64> = b
        .column_by_name("_line")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(lines, vec![1, 3, 5, 6]);
    for (i, line_no) in lines.iter().enumerate() {
        let problems = common::compare_row(schema, &rows[i], &b, i, Some(lineage(*line_no)));
        assert!(problems.is_empty(), "{problems:?}");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_zstd_and_stdin_are_read_by_content() {
    let env = Env::new();
    let schema = schema::find("Customer").unwrap();
    let mut g = Generator::new(schema, 3, Variety::Realistic);
    let mut text = Vec::new();
    g.write_lines(0, 50, &mut text).unwrap();
    // Misleading extensions on purpose: detection is by content.
    let gz = env.write("a.jsonl", &gzip(&text));
    let zst = env.write("b.gz", &zstd::encode_all(&text[..], 1).unwrap());
    let o = env.convert(&[
        "--entity",
        "Customer",
        "--export-id",
        "x",
        gz.to_str().unwrap(),
        zst.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert_eq!(read_table(&env.out(), "customer").num_rows(), 100);
    let piped = gzip(&text);
    let o = env.run_with_stdin(
        &[
            "--summary-format",
            "json",
            "--entity",
            "Customer",
            "--export-id",
            "y",
            "-",
        ],
        Some(&piped),
    );
    assert_ok(&o);
    assert_eq!(read_table(&env.out(), "customer").num_rows(), 150);
    // Bytes are counted as stored, compressed, from stdin as from a file.
    let row: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(row["bytes"], piped.len() as u64);
    // stdin without --export-id is a usage error.
    let o = env.run_with_stdin(&["--entity", "Customer", "-"], Some(&text));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn rejected_lines_go_to_quarantine_with_file_line_and_reason() {
    let env = Env::new();
    let good =
        r#"{"Id":"a","PostingDate":"2024-01-31","Value":1.5,"CreatedUtc":"2024-01-31T10:00:00Z"}"#;
    let lines = [
        good.to_owned(),
        String::new(),
        "{not json".to_owned(),
        "[1]".to_owned(),
        good.replace("1.5", "\"abc\""),
        good.replace("\"Id\":\"a\",", ""),
        good.replace("2024-01-31T10:00:00Z", "noon"),
        "x".repeat(300),
        good.replace("\"a\"", "\"b\""),
    ];
    let f = env.write("le.jsonl", (lines.join("\n") + "\n").as_bytes());
    let o = env.convert(&[
        "--entity",
        "LedgerEntry",
        "--max-rejected",
        "10",
        "--max-line-bytes",
        "200",
        f.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("committed"), "{stdout}");
    let q = std::fs::read_to_string(common::in_loads(
        &env.out(),
        "ledger_entry",
        "le.rejected.jsonl",
    ))
    .unwrap();
    let records: Vec<serde_json::Value> = q
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(u64, String)> = records
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7, 8]
    );
    assert!(
        got[0].1.contains("expected a property name") || got[0].1.contains("unexpected"),
        "{got:?}"
    );
    assert!(got[1].1.contains("not a JSON object"));
    assert!(got[2].1.contains("property Value"));
    assert!(got[3].1.contains("no Id"));
    assert!(got[4].1.contains("property CreatedUtc"));
    assert!(got[5].1.contains("over the limit"));
    assert_eq!(records[2]["text"], lines[4]);
    assert_eq!(records[0]["file"].as_str().unwrap(), f.to_str().unwrap());
    assert_eq!(read_table(&env.out(), "ledger_entry").num_rows(), 2);
    // The manifest balances: rows + rejected = non-blank lines.
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::in_loads(&env.out(), "ledger_entry", "le.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["counts"]["rows_written"], 2);
    assert_eq!(m["counts"]["rejected"], 6);
    assert_eq!(m["counts"]["lines_read"], 9);
    assert_eq!(m["counts"]["blank_lines"], 1);
}

#[test]
fn over_budget_commits_nothing_and_keeps_the_previous_table() {
    let env = Env::new();
    let good =
        r#"{"Id":"a","PostingDate":"2024-01-31","Value":1,"CreatedUtc":"2024-01-31T10:00:00Z"}"#;
    let f1 = env.write("first.jsonl", format!("{good}\n").as_bytes());
    assert_ok(&env.convert(&["--entity", "LedgerEntry", f1.to_str().unwrap()]));
    let f2 = env.write("second.jsonl", format!("{good}\nbroken\n").as_bytes());
    let o = env.convert(&[
        "--entity",
        "LedgerEntry",
        "--mode",
        "replace",
        f2.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing committed"));
    let b = read_table(&env.out(), "ledger_entry");
    assert_eq!(b.num_rows(), 1);
    assert_eq!(
        b.column_by_name("_export_id")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "first"
    );
    assert!(env
        .out()
        .join("_quarantine/ledger_entry/second.jsonl")
        .exists());
    // Nothing is left in staging.
    let staging = env.out().join(".mews-etl/staging");
    assert!(parquet_files(&staging).is_empty());
}

/// A load's rejected lines share its fate: published with it, kept as they were by an
/// attempt over budget (whose own go to `_quarantine`), a failed one or a `replace` of
/// another load that drops it.
#[test]
fn a_loads_rejected_lines_share_its_fate() {
    let env = Env::new();
    let committed = common::in_loads(&env.out(), "ledger_entry", "day.rejected.jsonl");
    let refused = env.out().join("_quarantine/ledger_entry/day.jsonl");
    let lines_of = |path: &std::path::Path| -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let good = |i: usize| {
        format!(
            r#"{{"Id":"{i}","PostingDate":"2024-01-31","Value":{i},"CreatedUtc":"2024-01-31T10:00:00Z"}}"#
        )
    };
    let convert = |text: &[u8], extra: &[&str]| {
        let f = env.write("day.jsonl", text);
        let mut args = vec!["--entity", "LedgerEntry"];
        args.extend_from_slice(extra);
        args.push(f.to_str().unwrap());
        env.convert(&args)
    };
    // Committed with one rejected line of 301, within the 1% budget.
    let mut text: String = (0..300).map(|i| good(i) + "\n").collect();
    text.push_str("broken\n");
    let o = convert(text.as_bytes(), &[]);
    assert_ok(&o);
    assert_eq!(lines_of(&committed), [301]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/loads/day.rejected.jsonl"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Over budget: exit 5, the committed load's rejections stay, the attempt's go apart.
    let o = convert(format!("{}\nbroken\nbroken\n", good(1)).as_bytes(), &[]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("_quarantine/ledger_entry/day.jsonl"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(lines_of(&committed), [301]);
    assert_eq!(lines_of(&refused), [2, 3]);

    // Failed after rejecting a line (a gzip stream cut short): nothing changes.
    let mut long: String = String::from("broken\n");
    long.extend((0..40_000).map(|i| good(i) + "\n"));
    let packed = gzip(long.as_bytes());
    let o = convert(&packed[..packed.len() * 4 / 5], &[]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(lines_of(&committed), [301]);
    assert_eq!(lines_of(&refused), [2, 3]);

    // Committed again without rejections: both go.
    assert_ok(&convert(format!("{}\n", good(1)).as_bytes(), &[]));
    assert!(!committed.exists());
    assert!(!refused.exists());

    // Committed with rejections, then dropped by a replace with another load: they go too.
    assert_ok(&convert(text.as_bytes(), &[]));
    assert_eq!(lines_of(&committed), [301]);
    let other = env.write("other.jsonl", format!("{}\n", good(7)).as_bytes());
    assert_ok(&env.convert(&[
        "--entity",
        "LedgerEntry",
        "--mode",
        "replace",
        other.to_str().unwrap(),
    ]));
    assert!(!committed.exists());
}

#[test]
fn converting_the_same_load_twice_keeps_its_rows_once() {
    let env = Env::new();
    let schema = schema::find("OrderItem").unwrap();
    let mut g = Generator::new(schema, 5, Variety::Realistic);
    let mut text = Vec::new();
    g.write_lines(0, 200, &mut text).unwrap();
    let f = env.write("export-1.jsonl", &text);
    let other = env.write(
        "other.jsonl",
        &text[..text.len() / 2
            + text[text.len() / 2..]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap()
            + 1],
    );
    assert_ok(&env.convert(&["--entity", "OrderItem", f.to_str().unwrap()]));
    assert_ok(&env.convert(&["--entity", "OrderItem", f.to_str().unwrap()]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 200);
    // Append keeps a different load beside it; replace leaves only the new load.
    assert_ok(&env.convert(&["--entity", "OrderItem", other.to_str().unwrap()]));
    let n_other = read_table(&env.out(), "order_item").num_rows() - 200;
    assert!(n_other > 0);
    assert_ok(&env.convert(&[
        "--entity",
        "OrderItem",
        "--mode",
        "replace",
        other.to_str().unwrap(),
    ]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), n_other);
}

/// An export's part files are one load: converting them one at a time would make the
/// second replace the first's rows, so it is refused, naming the file left out; all parts
/// in one convert replace the load whole.
#[test]
fn a_reload_without_all_of_a_loads_files_is_refused() {
    let env = Env::new();
    let schema = schema::find("OrderItem").unwrap();
    let mut g = Generator::new(schema, 9, Variety::Realistic);
    let export = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let mut parts = Vec::new();
    for (n, rows) in [(1u64, 0..30u64), (2, 30..50)] {
        parts.push(env.write_rows(&mut g, &format!("{export}-{n}.jsonl"), rows));
    }
    let [one, two] = [parts[0].to_str().unwrap(), parts[1].to_str().unwrap()];
    assert_ok(&env.convert(&["--entity", "OrderItem", one]));
    let o = env.convert(&["--entity", "OrderItem", two]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&format!("{export}-1.jsonl")), "{stderr}");
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 30);
    assert_ok(&env.convert(&["--entity", "OrderItem", one, two]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    // Named apart, or in replace mode, a part loads on its own.
    assert_ok(&env.convert(&["--entity", "OrderItem", "--mode", "replace", two]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 20);
}

/// Files of one name in two directories (an export a day, each in its own directory) are
/// not the same load's file: the second convert is refused, naming the first by its path,
/// instead of replacing its rows. The same file under another spelling still reloads.
#[test]
fn a_file_of_the_same_name_in_another_directory_does_not_replace_a_load() {
    let env = Env::new();
    let schema = schema::find("OrderItem").unwrap();
    let mut g = Generator::new(schema, 5, Variety::Realistic);
    let mut days = Vec::new();
    for (day, rows) in [("2024-01-01", 0..30u64), ("2024-01-02", 30..50)] {
        std::fs::create_dir_all(env.dir.path().join(day)).unwrap();
        days.push(env.write_rows(&mut g, &format!("{day}/order_items.jsonl"), rows));
    }
    assert_ok(&env.convert(&["--entity", "OrderItem", days[0].to_str().unwrap()]));
    let o = env.convert(&["--entity", "OrderItem", days[1].to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("2024-01-01/order_items.jsonl"), "{stderr}");
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 30);
    // Another spelling of the first day's file (through a `..`) is the same file.
    let respelled = env
        .dir
        .path()
        .join("2024-01-02/../2024-01-01/order_items.jsonl");
    assert_ok(&env.convert(&["--entity", "OrderItem", respelled.to_str().unwrap()]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 30);
    assert_ok(&env.convert(&[
        "--entity",
        "OrderItem",
        "--export-id",
        "order_items-2024-01-02",
        days[1].to_str().unwrap(),
    ]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    // A link stands for its target: through a link of another name (a content-addressed
    // store), the first day's file is still the one load `order_items` holds, refused as a
    // load of its own and reloaded into that load when named so.
    let link = env.dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&days[0], &link).unwrap();
    let o = env.convert(&["--entity", "OrderItem", link.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("by load order_items"), "{stderr}");
    for _ in 0..2 {
        let o = env.convert(&[
            "--entity",
            "OrderItem",
            "--export-id",
            "order_items",
            link.to_str().unwrap(),
        ]);
        assert_ok(&o);
    }
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
}

/// A file that another load of the table holds, unchanged since, is refused as a load of
/// its own (exit 2), whichever way the load is named: its rows would be in the table twice.
/// The default load id comes from the first file's name, so the same files in another
/// order were such a load. Written anew at the same path, it is another file.
#[test]
fn a_file_another_load_holds_is_not_loaded_twice() {
    let env = Env::new();
    let schema = schema::find("OrderItem").unwrap();
    let mut g = Generator::new(schema, 7, Variety::Realistic);
    let mut files = Vec::new();
    for (name, rows) in [("a.jsonl", 0..30u64), ("b.jsonl", 30..50)] {
        files.push(env.write_rows(&mut g, name, rows));
    }
    assert_ok(&env.convert(&["--entity", "OrderItem", "a.jsonl", "b.jsonl"]));
    for args in [
        vec!["b.jsonl", "a.jsonl"],
        vec!["b.jsonl"],
        vec!["--export-id", "again", "a.jsonl", "b.jsonl"],
    ] {
        let o = env.convert(&[&["--entity", "OrderItem"], args.as_slice()].concat());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("is already loaded, unchanged since, by load a of table order_item"),
            "{stderr}"
        );
        assert!(stderr.contains("--export-id \"a\""), "{stderr}");
    }
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    // Stdin redirected from a file another load holds is that file.
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args([
            "-q",
            "convert",
            "--entity",
            "OrderItem",
            "--export-id",
            "piped",
            "--out",
        ])
        .arg(env.out())
        .arg("-")
        .stdin(std::fs::File::open(&files[0]).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stdin ("), "{stderr}");
    assert!(
        stderr.contains("is already loaded, unchanged since, by load a"),
        "{stderr}"
    );
    // The same command again reloads its own load.
    assert_ok(&env.convert(&["--entity", "OrderItem", "a.jsonl", "b.jsonl"]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    // The same bytes written again (another modification time) make another file, which
    // only its modification time tells apart: a load of its own.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_ok(&env.convert(&["--entity", "OrderItem", "--export-id", "b-again", "b.jsonl"]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 70);
    assert_ok(&env.convert(&[
        "--entity",
        "OrderItem",
        "--mode",
        "replace",
        "--export-id",
        "reset",
        "a.jsonl",
        "b.jsonl",
    ]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    // A later file written to b.jsonl's path (another day's rows) is a load of its own.
    env.write_rows(&mut g, "b.jsonl", 50..60);
    assert_ok(&env.convert(&["--entity", "OrderItem", "b.jsonl"]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 60);
    // --mode replace makes the table this load alone, so nothing is held twice.
    assert_ok(&env.convert(&["--entity", "OrderItem", "--mode", "replace", "a.jsonl"]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 30);
}

/// Standard input redirected from a file given by name too is that file twice.
#[test]
fn stdin_redirected_from_a_file_given_too_is_refused() {
    let env = Env::new();
    let f = env.write(
        "a.jsonl",
        &reference_examples(schema::find("OrderItem").unwrap())[0]
            .clone()
            .into_bytes(),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args([
            "-q",
            "convert",
            "--entity",
            "OrderItem",
            "--export-id",
            "x",
            "--out",
        ])
        .arg(env.out())
        .args(["-", "a.jsonl"])
        .current_dir(env.dir.path())
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a.jsonl is the same file as stdin (-)"),
        "{stderr}"
    );
    assert!(!env.out().join("order_item").exists());
}

/// An output directory given inside another's table (through the table's link) is refused
/// before anything is written: its files would be among the table's Parquet files.
#[test]
fn an_output_directory_inside_a_table_is_refused() {
    let env = Env::new();
    let line = reference_examples(schema::find("OrderItem").unwrap())[0].clone();
    env.write("a.jsonl", line.as_bytes());
    assert_ok(&env.convert(&["--entity", "OrderItem", "a.jsonl"]));
    let data = std::fs::canonicalize(env.out().join("order_item")).unwrap();
    let before: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for inside in [
        "out/order_item",
        "out/order_item/new",
        "out/.mews-etl",
        "out/_quarantine",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
            .args([
                "-q",
                "convert",
                "--entity",
                "OrderItem",
                "--export-id",
                "y",
                "--out",
                inside,
                "a.jsonl",
            ])
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "{inside}: {stderr}");
        assert!(stderr.contains("give "), "{stderr}");
        assert!(
            stderr.contains("itself as the output directory"),
            "{stderr}"
        );
    }
    let after: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after);
    assert!(!env.out().join("_quarantine").exists());
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 1);
    // A directory merely named .mews-etl, with no tables beside it, is anyone's.
    std::fs::create_dir_all(env.dir.path().join("home/.mews-etl")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args(["-q", "convert", "--entity", "OrderItem", "--out"])
        .arg("home/.mews-etl/warehouse")
        .arg("a.jsonl")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_ok(&o);
}

/// A file of another entity type among a convert's files is refused with the whole load
/// (exit 2), naming the file and the type its lines are; nothing is committed.
#[test]
fn a_file_of_another_entity_type_is_refused() {
    let env = Env::new();
    let lines = |entity: &str, seed: u64| {
        let mut g = Generator::new(schema::find(entity).unwrap(), seed, Variety::Realistic);
        let mut text = Vec::new();
        g.write_lines(0, 40, &mut text).unwrap();
        text
    };
    let items = env.write("items.jsonl", &lines("OrderItem", 1));
    let payments = env.write("payments.jsonl", &lines("Payment", 2));
    let [items, payments] = [items.to_str().unwrap(), payments.to_str().unwrap()];
    let o = env.convert(&["--entity", "OrderItem", items, payments]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "payments.jsonl: these are Payment records, not OrderItem: in its first 40 lines,"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--entity Payment"), "{stderr}");
    assert!(parquet_files(&env.out()).is_empty());
    assert_ok(&env.convert(&["--entity", "Payment", payments]));
    assert_eq!(read_table(&env.out(), "payment").num_rows(), 40);
}

/// A named pipe is read like a file, and the summary counts the bytes that came through it
/// (it has no size of its own: the summary once said 0 B).
#[test]
fn a_named_pipe_is_read_and_its_bytes_counted() {
    let env = Env::new();
    let fifo = env.dir.path().join("export.jsonl");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut g = Generator::new(schema::find("OrderItem").unwrap(), 4, Variety::Realistic);
    let mut text = Vec::new();
    g.write_lines(0, 30, &mut text).unwrap();
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    };
    let o = env.convert(&["--entity", "OrderItem", fifo.to_str().unwrap()]);
    writer.join().unwrap();
    assert_ok(&o);
    let summary = String::from_utf8_lossy(&o.stdout);
    let row = summary
        .lines()
        .find(|l| l.starts_with("OrderItem"))
        .unwrap();
    assert!(!row.contains(" 0 B "), "{summary}");
    assert!(row.contains(" KiB "), "{summary}");
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 30);
}

#[test]
fn dated_file_names_are_separate_loads_and_layouts_do_not_mix() {
    let env = Env::new();
    let schema = schema::find("OrderItem").unwrap();
    let mut g = Generator::new(schema, 6, Variety::Realistic);
    let (mut day1, mut day2) = (Vec::new(), Vec::new());
    g.write_lines(0, 30, &mut day1).unwrap();
    g.write_lines(30, 20, &mut day2).unwrap();
    let f1 = env.write("orders-2024-06-01.jsonl", &day1);
    let f2 = env.write("orders-2024-06-02.jsonl", &day2);
    assert_ok(&env.convert(&["--entity", "OrderItem", f1.to_str().unwrap()]));
    assert_ok(&env.convert(&["--entity", "OrderItem", f2.to_str().unwrap()]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    // Appending another layout is refused before any work, and the table is unchanged.
    let f3 = env.write("orders-2024-06-03.jsonl", &day2);
    let o = env.convert(&[
        "--entity",
        "OrderItem",
        "--partition-by",
        "none",
        f3.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--mode replace"), "{stderr}");
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 50);
    assert_ok(&env.convert(&[
        "--entity",
        "OrderItem",
        "--partition-by",
        "none",
        "--mode",
        "replace",
        f3.to_str().unwrap(),
    ]));
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 20);
}

#[test]
fn hostile_partition_values_stay_inside_the_table_directory() {
    let env = Env::new();
    let lines = [
        r#"{"Id":"1","EnterpriseId":"../../x","CreatedUtc":"2024-01-01T00:00:00Z"}"#,
        r#"{"Id":"2","EnterpriseId":"/etc/passwd","CreatedUtc":"2024-01-01T00:00:00Z"}"#,
        r#"{"Id":"3","EnterpriseId":"..","CreatedUtc":"2024-01-01T00:00:00Z"}"#,
        r#"{"Id":"4","EnterpriseId":"a\\b\u0000c","CreatedUtc":"2024-01-01T00:00:00Z"}"#,
        r#"{"Id":"5","EnterpriseId":null,"CreatedUtc":"2024-01-01T00:00:00Z"}"#,
    ];
    let f = env.write("rb.jsonl", (lines.join("\n") + "\n").as_bytes());
    let o = env.convert(&[
        "--entity",
        "ResourceBlock",
        "--partition-by",
        "EnterpriseId",
        f.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let table = std::fs::canonicalize(env.out().join("resource_block")).unwrap();
    let files = parquet_files(&table);
    assert_eq!(files.len(), 5);
    for file in &files {
        let real = std::fs::canonicalize(file).unwrap();
        assert!(
            real.starts_with(&table),
            "{} escaped {}",
            real.display(),
            table.display()
        );
        assert_eq!(
            real.parent().unwrap().parent().unwrap(),
            table,
            "{}",
            real.display()
        );
    }
    assert!(!env.dir.path().join("x").exists());
    assert_eq!(read_table(&env.out(), "resource_block").num_rows(), 5);
}

#[test]
fn unknown_entity_and_bad_flags_are_usage_errors() {
    let env = Env::new();
    let f = env.write("a.jsonl", b"{\"Id\":\"1\"}\n");
    for args in [
        vec!["--entity", "Nope", f.to_str().unwrap()],
        vec![
            "--entity",
            "OrderItem",
            "--partition-by",
            "Nope:month",
            f.to_str().unwrap(),
        ],
        vec![
            "--entity",
            "OrderItem",
            "--partition-by",
            "Notes:month",
            f.to_str().unwrap(),
        ],
        vec![
            "--entity",
            "OrderItem",
            "--max-rejected",
            "abc",
            f.to_str().unwrap(),
        ],
        vec![
            "--entity",
            "OrderItem",
            "--compression",
            "rar",
            f.to_str().unwrap(),
        ],
        vec![
            "--entity",
            "OrderItem",
            "--mode",
            "upsert",
            f.to_str().unwrap(),
        ],
        // More threads than can all be started would hang the load, not fail it.
        vec![
            "--entity",
            "OrderItem",
            "--threads",
            "257",
            f.to_str().unwrap(),
        ],
    ] {
        let o = env.convert(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // One file given twice, by the same or another path, would load its rows twice.
    let o = env.convert(&["--entity", "OrderItem", "a.jsonl", "./a.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("./a.jsonl is the same file as a.jsonl"),
        "{stderr}"
    );
    std::fs::hard_link(&f, env.dir.path().join("b.jsonl")).unwrap();
    let o = env.convert(&["--entity", "OrderItem", "a.jsonl", "b.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("b.jsonl is the same file as a.jsonl"),
        "{stderr}"
    );
    assert!(!env.out().join("order_item").exists());
    // With JSON logs, an argument clap refuses is a JSON record too.
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args(["--log-format", "json", "convert", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let record: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON record");
    assert_eq!(record["level"], "ERROR", "{stderr}");
    assert!(record["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("--bogus"));
    // A missing argument is named in the record, not only announced.
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args(["--log-format", "json", "run"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let record: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON record");
    assert!(
        record["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("--out"),
        "{stderr}"
    );
    let o = env.convert(&["--entity", "OrderItem", "missing.jsonl"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jsonl"));
}

/// Output whose reader has gone (`mews-etl schema | head -1`, a log collector that died)
/// ends neither the program nor a load with a panic; and logs sent anywhere but a terminal
/// carry no colour codes.
#[test]
fn closed_pipes_and_log_files_get_no_panic_and_no_colours() {
    let env = Env::new();
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sample/order_item.jsonl"
    );
    let spawn = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
            .args(args)
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the program can have written anything.
        drop(child.stdout.take());
        child
    };
    let schema = spawn(&["schema"]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&schema.stderr);
    assert_eq!(schema.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = env.out();
    let convert = [
        "convert",
        "--entity",
        "OrderItem",
        "--out",
        out.to_str().unwrap(),
        sample,
    ];
    let mut closed = spawn(&convert);
    drop(closed.stderr.take());
    assert_eq!(closed.wait().unwrap().code(), Some(0));
    assert!(out.join("order_item").exists());

    let logged = spawn(&convert).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&logged.stderr);
    assert_eq!(logged.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");

    // With JSON logs, the error the program ends with is a JSON record too.
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args([
            "--log-format",
            "json",
            "convert",
            "--entity",
            "OrderItem",
            "--out",
        ])
        .arg(&out)
        .arg("missing.jsonl")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let records: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        records.iter().any(|r| r["level"] == "ERROR"
            && r["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("missing.jsonl"))),
        "{stderr}"
    );
}

#[test]
fn an_independent_reader_loads_the_output() {
    // DuckDB reads the table as a data engineer would. CI installs it (.ci/run); elsewhere
    // the test says why it did nothing, unless MEWS_ETL_REQUIRE_DUCKDB demands it.
    if !common::duckdb_available() {
        return;
    }
    let env = Env::new();
    let schema = schema::find("OrderItem").unwrap();
    let mut lines = reference_examples(schema);
    lines.push(
        lines[1]
            .replace("93.46", "-0.000000001")
            .replace("bd11dc4a", "cd11dc4a"),
    );
    let f = env.write("oi.jsonl", (lines.join("\n") + "\n").as_bytes());
    assert_ok(&env.convert(&["--entity", "OrderItem", f.to_str().unwrap()]));
    let sql = format!(
        "import duckdb; print(duckdb.sql(\"select string_agg(UnitAmount.NetValue::varchar, ',' order by _line), \
         min(ConsumedUtc)::varchar, count(*), min(ConsumedUtc_month) from read_parquet('{}/order_item/**/*.parquet', hive_partitioning=true)\").fetchall())",
        env.out().display()
    );
    let o = Command::new("python3").args(["-c", &sql]).output().unwrap();
    assert_ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("5.000000000,93.460000000,-0.000000001"),
        "{text}"
    );
    assert!(text.contains("2023-03-31 00:00:00+00"), "{text}");
    assert!(text.contains("3, '2023-03'"), "{text}");
}

/// `schema --format duckdb` prints a table the Parquet files load into as its comment says,
/// for every entity type in its default partitioning: the partition key, a directory name,
/// must not become a column the table lacks.
#[test]
fn the_duckdb_ddl_takes_the_tables_files_as_it_says() {
    if !common::duckdb_available() {
        return;
    }
    let env = Env::new();
    let mut script = String::from("import duckdb\nc = duckdb.connect()\n");
    for schema in schema::all() {
        let mut generator = Generator::new(schema, 11, Variety::Realistic);
        let mut text = Vec::new();
        for i in 0..50 {
            generator.write_row(i, &mut text);
            text.push(b'\n');
        }
        let file = env.write(&format!("{}.jsonl", schema.table), &text);
        assert_ok(&env.convert(&["--entity", &schema.entity, file.to_str().unwrap()]));
        let ddl = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
            .args(["schema", &schema.entity, "--format", "duckdb"])
            .output()
            .unwrap();
        assert_ok(&ddl);
        let ddl = String::from_utf8(ddl.stdout).unwrap();
        let insert = ddl
            .lines()
            .find_map(|l| {
                l.trim_start_matches("--")
                    .trim()
                    .strip_prefix("INSERT INTO")
            })
            .unwrap_or_else(|| panic!("no INSERT in the comment: {ddl}"))
            .replace("<out>", &env.out().display().to_string());
        script.push_str(&format!(
            "c.execute({ddl:?})\nc.execute({insert:?})\nprint({table:?}, c.execute('select count(*) from {table}').fetchall()[0][0])\n",
            insert = format!("INSERT INTO{insert}"),
            table = schema.table,
        ));
    }
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_ok(&o);
    let printed = String::from_utf8_lossy(&o.stdout);
    for schema in schema::all() {
        assert!(
            printed.contains(&format!("{} 50", schema.table)),
            "{}: {printed}",
            schema.table
        );
    }
}

/// A load without rows leaves one file with the table's columns and no rows, so that an
/// empty table reads as one (a glob that matches nothing is an error to DuckDB); in a
/// partitioned table it sits in the null partition, so the key column is there too.
#[test]
fn an_empty_load_leaves_a_readable_empty_table() {
    let env = Env::new();
    let f = env.write("empty.jsonl", b"");
    for partition in ["ConsumedUtc:month", "none"] {
        assert_ok(&env.convert(&[
            "--entity",
            "OrderItem",
            "--mode",
            "replace",
            "--partition-by",
            partition,
            f.to_str().unwrap(),
        ]));
        let files = common::parquet_files(&env.out().join("order_item"));
        assert_eq!(files.len(), 1, "{partition}: {files:?}");
        // The manifest is as readable as the data files (not owner-only, as temporary
        // files are made).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
            let manifest = common::in_loads(&env.out(), "order_item", "empty.json");
            assert_eq!(mode(&manifest), mode(&files[0]));
        }
        let table = common::read_table(&env.out(), "order_item");
        assert_eq!(table.num_rows(), 0);
        if !common::duckdb_available() {
            continue;
        }
        let sql = format!(
            "import duckdb; print(duckdb.sql(\"select count(*), count(Id) from read_parquet('{}/order_item/**/*.parquet', hive_partitioning=true)\").fetchall())",
            env.out().display()
        );
        let o = Command::new("python3").args(["-c", &sql]).output().unwrap();
        assert_ok(&o);
        assert!(String::from_utf8_lossy(&o.stdout).contains("(0, 0)"));
    }
}

/// `--summary-format json`: one JSON object per load on stdout, with exact numbers and the
/// outcome as a word, for a scheduler to read (the table's cells hold spaces and units).
#[test]
fn the_summary_can_be_one_json_object_per_load() {
    let env = Env::new();
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sample/order_item.jsonl"
    );
    let bytes = std::fs::metadata(sample).unwrap().len();
    let summary = |o: &Output| -> serde_json::Value {
        let stdout = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let o = env.convert(&[
        "--summary-format",
        "json",
        "--entity",
        "OrderItem",
        "--export-id",
        "my export",
        sample,
    ]);
    assert_ok(&o);
    let s = summary(&o);
    let rows = read_table(&env.out(), "order_item").num_rows() as u64;
    assert_eq!(s["entity"], "OrderItem");
    assert_eq!(s["table"], "order_item");
    assert_eq!(s["export_id"], "my export");
    // The id, made a file name (with a hash of the id given, as it had to change).
    let load_id = s["load_id"].as_str().unwrap();
    assert!(load_id.starts_with("my_export-"), "{load_id}");
    let manifest = common::in_loads(&env.out(), "order_item", &format!("{load_id}.json"));
    assert!(manifest.exists(), "{}", manifest.display());
    assert_eq!(s["rejected_file"], serde_json::Value::Null);
    assert_eq!(s["outcome"], "committed");
    assert_eq!(s["version"], 1);
    assert_eq!(s["rows"], rows);
    assert_eq!(s["bytes"], bytes);
    assert_eq!(s["reason"], serde_json::Value::Null);

    let bad = env.write("bad.jsonl", b"{not json\n");
    let o = env.convert(&[
        "--summary-format",
        "json",
        "--entity",
        "OrderItem",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(5));
    let s = summary(&o);
    assert_eq!(s["outcome"], "over_budget");
    assert_eq!(
        (s["rejected"].as_u64(), s["rows"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(s["version"], serde_json::Value::Null);
    let rejected = s["rejected_file"].as_str().unwrap();
    assert!(
        rejected.ends_with("_quarantine/order_item/bad.jsonl"),
        "{rejected}"
    );
    assert!(std::fs::read_to_string(rejected)
        .unwrap()
        .contains("{not json"));
}

/// A file whose every line names a property of its own: the summary names twenty drift
/// counts and counts the rest, and the manifest keeps a bounded number of keys.
#[test]
fn drift_of_many_distinct_properties_is_bounded() {
    let env = Env::new();
    let line = reference_examples(schema::find("OrderItem").unwrap())[0].clone();
    let mut text = String::new();
    for i in 0..1200 {
        let extra = format!("{{\"New{i}\":{i},");
        text.push_str(&line.replacen('{', &extra, 1).replace('\n', ""));
        text.push('\n');
    }
    env.write("a.jsonl", text.as_bytes());
    let o = env.convert(&["--entity", "OrderItem", "a.jsonl"]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let drift: Vec<&str> = stdout.lines().filter(|l| l.starts_with("drift:")).collect();
    assert_eq!(drift.len(), 21, "{stdout}");
    assert!(
        drift[20].contains("981 more drift count(s): see the load's manifest"),
        "{stdout}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::in_loads(&env.out(), "order_item", "a.json")).unwrap(),
    )
    .unwrap();
    let unknown = manifest["counts"]["unknown_properties"]
        .as_object()
        .unwrap();
    assert_eq!(unknown.len(), mews_etl::manifest::MAX_DRIFT_KEYS + 1);
    assert_eq!(unknown["(others)"], 200);
    // The keys named are the first in key order, whatever order a map drains in.
    let mut named: Vec<&String> = unknown.keys().filter(|k| *k != "(others)").collect();
    let mut all: Vec<String> = (0..1200).map(|i| format!("New{i}")).collect();
    all.sort();
    named.sort();
    assert_eq!(named, all.iter().take(1000).collect::<Vec<_>>());
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 1200);
}

/// A load that fails once its arguments are checked (exit 3 here) still has its line in the
/// summary, with the outcome `failed` and the reason: a scheduler reading stdout sees it.
#[test]
fn a_failed_load_has_its_line_in_the_summary() {
    let env = Env::new();
    env.write("broken.jsonl.gz", b"\x1f\x8b\x08\x00\x00\x00");
    let o = env.convert(&["--entity", "OrderItem", "broken.jsonl.gz"]);
    assert_eq!(o.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("FAILED: cannot decompress broken.jsonl.gz"),
        "{stdout}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args([
            "-q",
            "--summary-format",
            "json",
            "convert",
            "--entity",
            "OrderItem",
            "--out",
        ])
        .arg(env.out())
        .arg("missing.jsonl")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let row: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(row["outcome"], "failed");
    assert_eq!(row["export_id"], "missing");
    assert!(row["reason"]
        .as_str()
        .unwrap()
        .contains("cannot open missing.jsonl"));
    // A usage error has no load to report: nothing on stdout.
    let o = env.convert(&["--entity", "OrderItem", "--threads", "0", "missing.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

/// An empty stdin that would replace rows with none (the load of the same id, or the whole
/// table with --mode replace) is refused with exit 3 and the table kept: an empty pipe is
/// likelier a failed command upstream than an empty export. One that replaces nothing loads.
#[test]
fn an_empty_stdin_does_not_replace_rows_with_none() {
    let env = Env::new();
    let line = reference_examples(schema::find("OrderItem").unwrap())[0].clone() + "\n";
    let o = env.run_with_stdin(
        &["--entity", "OrderItem", "--export-id", "daily", "-"],
        Some(line.as_bytes()),
    );
    assert_ok(&o);
    // Nothing at all, or blank lines only (`echo "$UNSET" |`).
    for (args, stdin) in [
        (vec!["--export-id", "daily", "-"], &b""[..]),
        (vec!["--export-id", "daily", "-"], &b"\n\n"[..]),
        (
            vec!["--export-id", "other", "--mode", "replace", "-"],
            &b""[..],
        ),
    ] {
        let o = env.run_with_stdin(
            &[&["--entity", "OrderItem"], args.as_slice()].concat(),
            Some(stdin),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("stdin was empty: this load of no rows would replace the 1 row(s)"),
            "{stderr}"
        );
        assert_eq!(read_table(&env.out(), "order_item").num_rows(), 1);
    }
    let o = env.run_with_stdin(
        &["--entity", "OrderItem", "--export-id", "new", "-"],
        Some(b""),
    );
    assert_ok(&o);
    assert_eq!(read_table(&env.out(), "order_item").num_rows(), 1);
}

/// With JSON logs, the notice of rejected lines is a record a collector can alert on: the
/// entity, the load and the file are fields of their own, beside the message.
#[test]
fn the_rejected_lines_notice_has_fields_in_json_logs() {
    let env = Env::new();
    let line = reference_examples(schema::find("OrderItem").unwrap())[0].clone();
    env.write("a.jsonl", format!("{{bad\n{line}\n").as_bytes());
    let o = Command::new(env!("CARGO_BIN_EXE_mews-etl"))
        .args([
            "-q",
            "--log-format",
            "json",
            "convert",
            "--entity",
            "OrderItem",
        ])
        .args(["--max-rejected", "100%", "--out"])
        .arg(env.out())
        .arg("a.jsonl")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let notice: serde_json::Value = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["fields"]["rejected_file"].is_string())
        .unwrap_or_else(|| panic!("no record with rejected_file: {stderr}"));
    assert_eq!(notice["level"], "WARN");
    assert_eq!(notice["fields"]["entity"], "OrderItem");
    assert_eq!(notice["fields"]["load_id"], "a");
    let file = notice["fields"]["rejected_file"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(file).unwrap().contains("{bad"),
        "{file}"
    );
}
