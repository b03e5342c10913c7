//! Tests of the round-trip comparator in `tests/common`: it must accept equal rows whatever
//! their spelling, and report every kind of difference with the path of the value.

mod common;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use common::{
    compare_row, parse_date_days, parse_decimal, parse_json, parse_timestamp_micros,
    ExpectedLineage,
};
use mews_etl::generate::{Generator, Variety};
use mews_etl::schema::EntitySchema;
use serde_json::json;
use std::sync::Arc;

/// A small entity with one property of every type, nested objects and arrays.
const WIDGET: &str = r#"{
  "entity": "Widget",
  "table": "widget",
  "reference": { "file": "widgets.md", "section": "Widget" },
  "properties": [
    { "name": "Id", "type": "string", "required": true },
    { "name": "Count", "type": "integer" },
    { "name": "Price", "type": "decimal" },
    { "name": "Paid", "type": "boolean" },
    { "name": "At", "type": "timestamp" },
    { "name": "On", "type": "date" },
    { "name": "Meta", "type": "json" },
    { "name": "Kind", "type": "enum:Kind" },
    { "name": "Amount", "type": "object:Amount" },
    { "name": "TagIds", "type": "array<string>" },
    { "name": "Note", "type": "string" }
  ],
  "objects": {
    "Amount": { "properties": [
      { "name": "Currency", "type": "string" },
      { "name": "Taxes", "type": "array<object:Tax>" }
    ] },
    "Tax": { "properties": [
      { "name": "Code", "type": "string" },
      { "name": "Value", "type": "decimal" }
    ] }
  },
  "enums": { "Kind": { "values": ["A", "B"] } }
}"#;

/// The input line, spelled the ways an export may spell it (exponent, offset, unknown key).
const SOURCE: &str = r#"{"Id":"a\u00e9","Count":1e2,"Price":93.46,"Paid":true,"At":"2023-03-28T07:28:04.5+01:00","On":"2024-02-29","Meta":{"K":[1,"x"]},"Kind":"B","Amount":{"Currency":"EUR","Taxes":[{"Code":"DE","Value":6.54},{"Value":-0.000000001}]},"TagIds":["t1","t2"],"Note":null,"Unknown":5}"#;

/// What the table should hold for [`SOURCE`], as input for an independent JSON reader.
const STORED: &str = r#"{"Id":"aé","Count":100,"Price":93.46,"Paid":true,"At":"2023-03-28T06:28:04.5Z","On":"2024-02-29","Meta":"{\"K\": [1, \"x\"]}","Kind":"B","Amount":{"Currency":"EUR","Taxes":[{"Code":"DE","Value":6.54},{"Value":-0.000000001}]},"TagIds":["t1","t2"],"_extra":"{\"Unknown\":5}","_export_id":"e","_file":"f","_line":7}"#;

fn widget() -> EntitySchema {
    EntitySchema::from_json("widget.json", WIDGET).unwrap()
}

/// Builds a batch of the entity's table schema from JSON lines with arrow-json, a reader
/// independent of ours.
fn batch(schema: &EntitySchema, lines: &str) -> RecordBatch {
    // arrow-json reads named time zones only with chrono-tz; read with the same instant's
    // offset spelling, then relabel the columns as the table's `UTC`.
    let target = schema.arrow_schema();
    let readable: Vec<Field> = target
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(with_offset_zone(f.data_type()))
        })
        .collect();
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::new(Schema::new(readable)))
        .with_batch_size(100_000)
        .build_decoder()
        .unwrap();
    decoder.decode(lines.as_bytes()).unwrap();
    let read = decoder.flush().unwrap().unwrap();
    let columns = read
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| cast(c, f.data_type()).unwrap())
        .collect();
    RecordBatch::try_new(target, columns).unwrap()
}

fn with_offset_zone(dt: &ArrowType) -> ArrowType {
    let field = |f: &Field| f.clone().with_data_type(with_offset_zone(f.data_type()));
    match dt {
        ArrowType::Timestamp(unit, Some(_)) => ArrowType::Timestamp(*unit, Some("+00:00".into())),
        ArrowType::Struct(fields) => ArrowType::Struct(fields.iter().map(|f| field(f)).collect()),
        ArrowType::List(item) => ArrowType::List(Arc::new(field(item))),
        other => other.clone(),
    }
}

fn lineage(line: i64, extra: Option<&serde_json::Value>) -> Option<ExpectedLineage<'_>> {
    Some(ExpectedLineage { line, extra })
}

#[test]
fn equal_rows_have_no_mismatches_whatever_their_spelling() {
    let s = widget();
    let b = batch(&s, STORED);
    let extra = json!({"Unknown": 5});
    assert_eq!(
        compare_row(&s, SOURCE, &b, 0, lineage(7, Some(&extra))),
        Vec::<String>::new()
    );
    // Absent and null are the same to the table.
    let absent = SOURCE.replace(r#""Note":null,"#, "");
    assert_eq!(
        compare_row(&s, &absent, &b, 0, lineage(7, Some(&extra))),
        Vec::<String>::new()
    );
    // Without lineage, the lineage columns are not looked at.
    assert_eq!(compare_row(&s, SOURCE, &b, 0, None), Vec::<String>::new());
}

#[test]
fn every_kind_of_difference_is_reported_with_its_path() {
    let s = widget();
    let extra = json!({"Unknown": 5});
    let cases: &[(&str, &str, &str)] = &[
        (r#""Id":"aé""#, r#""Id":"ae""#, "Id"),
        (r#""Count":100"#, r#""Count":101"#, "Count"),
        (r#""Price":93.46"#, r#""Price":93.460000001"#, "Price"),
        (r#""Paid":true"#, r#""Paid":false"#, "Paid"),
        (r#""Paid":true,"#, "", "Paid"),
        ("06:28:04.5Z", "06:28:04.500001Z", "At"),
        ("2024-02-29", "2024-03-01", "On"),
        (r#"\"x\"]}"#, r#"\"y\"]}"#, "Meta"),
        (r#""Kind":"B""#, r#""Kind":"A""#, "Kind"),
        (
            r#""Currency":"EUR""#,
            r#""Currency":"CZK""#,
            "Amount.Currency",
        ),
        (
            r#""Value":6.54"#,
            r#""Value":6.55"#,
            "Amount.Taxes[0].Value",
        ),
        (
            r#""Value":6.54"#,
            r#""Value":null"#,
            "Amount.Taxes[0].Value",
        ),
        (r#",{"Value":-0.000000001}"#, "", "Amount.Taxes"),
        (
            r#"{"Value":-0.000000001}"#,
            r#"{"Code":"X","Value":-0.000000001}"#,
            "Amount.Taxes[1].Code",
        ),
        (r#"["t1","t2"]"#, r#"["t1","t3"]"#, "TagIds[1]"),
        (r#""_extra""#, r#""Note":"x","_extra""#, "Note"),
        (r#""_line":7"#, r#""_line":8"#, "_line"),
        (
            r#""_extra":"{\"Unknown\":5}""#,
            r#""_extra":null"#,
            "_extra",
        ),
        (
            r#""_extra":"{\"Unknown\":5}""#,
            r#""_extra":"{\"Unknown\":6}""#,
            "_extra",
        ),
    ];
    for (from, to, path) in cases {
        assert!(STORED.contains(from), "bad case {from}");
        let b = batch(&s, &STORED.replacen(from, to, 1));
        let found = compare_row(&s, SOURCE, &b, 0, lineage(7, Some(&extra)));
        assert_eq!(found.len(), 1, "{from} → {to}: {found:?}");
        assert!(
            found[0].starts_with(&format!("{path}:")),
            "{from} → {to}: {found:?}"
        );
    }
}

#[test]
fn unreadable_inputs_and_missing_rows_are_reported() {
    let s = widget();
    let b = batch(&s, STORED);
    assert_eq!(compare_row(&s, SOURCE, &b, 1, None).len(), 1);
    assert_eq!(compare_row(&s, "{\"Id\":", &b, 0, None).len(), 1);
    assert_eq!(compare_row(&s, "[1]", &b, 0, None).len(), 1);
    // A number that cannot be stored exactly never equals what was stored.
    let finer = SOURCE.replace("93.46", "93.4600000001");
    assert!(compare_row(&s, &finer, &b, 0, None)[0].starts_with("Price:"));
}

#[test]
fn decimals_are_exact_at_any_spelling() {
    assert_eq!(parse_decimal("93.46", 9), Ok(93_460_000_000));
    assert_eq!(parse_decimal("100", 9), Ok(100_000_000_000));
    assert_eq!(parse_decimal("1e2", 0), Ok(100));
    assert_eq!(parse_decimal("1.5E+1", 0), Ok(15));
    assert_eq!(parse_decimal("-5.5", 9), Ok(-5_500_000_000));
    assert_eq!(parse_decimal("-0", 9), Ok(0));
    assert_eq!(parse_decimal("0.000000001", 9), Ok(1));
    assert_eq!(parse_decimal("12.3400000000000", 9), Ok(12_340_000_000));
    assert_eq!(
        parse_decimal("123e-11", 9),
        Err("\"123e-11\": has digits finer than scale 9".into())
    );
    assert_eq!(
        parse_decimal("99999999999999999999999999999.999999999", 9),
        Ok(99_999_999_999_999_999_999_999_999_999_999_999_999)
    );
    assert!(parse_decimal("0.1000000000000000055", 9).is_err());
    assert!(parse_decimal("1e400", 9).is_err());
    assert!(parse_decimal("1e9999999999", 9).is_err());
    assert!(parse_decimal("abc", 9).is_err());
}

#[test]
fn instants_and_dates_are_read_as_utc() {
    assert_eq!(parse_timestamp_micros("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(
        parse_timestamp_micros("1970-01-01T00:00:00.000001+00:00"),
        Ok(1)
    );
    assert_eq!(parse_timestamp_micros("1970-01-01T01:00:00+01:00"), Ok(0));
    assert_eq!(
        parse_timestamp_micros("1969-12-31T23:59:59.5Z"),
        Ok(-500_000)
    );
    assert_eq!(
        parse_timestamp_micros("2023-03-31T00:00:00Z"),
        Ok(1_680_220_800_000_000)
    );
    assert_eq!(
        parse_timestamp_micros("2023-03-31T00:00:00.1234560Z"),
        Ok(1_680_220_800_123_456)
    );
    assert!(parse_timestamp_micros("2023-03-31T00:00:00.1234567Z").is_err());
    assert!(parse_timestamp_micros("2023-03-31T00:00:00").is_err());
    assert!(parse_timestamp_micros("2023-02-29T00:00:00Z").is_err());
    assert_eq!(parse_date_days("1970-01-01"), Ok(0));
    assert_eq!(parse_date_days("2024-02-29"), Ok(19_782));
    assert!(parse_date_days("2024-13-01").is_err());
}

#[test]
fn json_parser_keeps_number_text_and_rejects_invalid_json() {
    let j = parse_json(r#" {"a" : [0.1000000000000000055, "x\n"], "b": {}} "#).unwrap();
    let common::JsonKind::Object(members) = &j.kind else {
        panic!()
    };
    let common::JsonKind::Array(items) = &members[0].1.kind else {
        panic!()
    };
    assert_eq!(items[0].raw, "0.1000000000000000055");
    assert_eq!(items[1].string().as_deref(), Some("x\n"));
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "01",
        "1.",
        "\"\\x\"",
        "nul",
        "{} {}",
        "{\"a\" 1}",
    ] {
        assert!(parse_json(bad).is_err(), "{bad:?}");
    }
}

/// Generated rows, read by an independent JSON reader, compare equal: the comparator and the
/// generator agree on what every value means, for every tricky spelling the generator sends.
#[test]
fn generated_order_items_read_by_another_reader_compare_equal() {
    let s = mews_etl::schema::find("OrderItem").unwrap();
    for variety in [Variety::Realistic, Variety::Thorough] {
        let mut g = Generator::new(s, 17, variety);
        let (mut source, mut stored) = (Vec::new(), String::new());
        for i in 0..2000u64 {
            let mut row = Vec::new();
            g.write_row(i, &mut row);
            let row = String::from_utf8(row).unwrap();
            let body = row.strip_suffix('}').unwrap();
            let sep = if body.ends_with('{') { "" } else { "," };
            stored.push_str(&format!(
                r#"{body}{sep}"_extra":null,"_export_id":"e","_file":"f","_line":{}}}"#,
                i + 1
            ));
            stored.push('\n');
            source.push(row);
        }
        let b = batch(s, &stored);
        assert_eq!(b.num_rows(), source.len());
        for (i, line) in source.iter().enumerate() {
            let found = compare_row(s, line, &b, i, lineage(i as i64 + 1, None));
            assert!(found.is_empty(), "{variety:?} row {i}: {found:?}\n{line}");
        }
        // And a neighbouring row never passes for this one.
        assert!(!compare_row(s, &source[0], &b, 1, lineage(1, None)).is_empty());
    }
}
