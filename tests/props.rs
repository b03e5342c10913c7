//! Property tests of the whole load: for arbitrary valid rows of every entity type, built
//! from the schema model (`schemas/`), JSON Lines → decode → partitioned Parquet → read back
//! is the identity.
//!
//! Each case generates a tree of typed values per row, following the entity's properties
//! (absent, `null` or a value for each; nested objects and arrays as the schema says), then
//! writes it as one JSON line with spelling that must not matter: member order, whitespace,
//! `\uXXXX` escapes (surrogate pairs included) in strings and keys, decimals with and without
//! exponents and with padding zeros, integers in exponent form, timestamps with any offset and
//! fraction length, CRLF or LF, a BOM, blank lines, no final newline. The expected Arrow value
//! of every leaf is computed from the tree, never by the code under test: decimals are
//! generated as integer units at scale 9, timestamps from calendar fields with an independent
//! day count, strings as the text before escaping.
//!
//! The load runs in-process through [`mews_etl::convert::load_files`] (framing, decoding,
//! partitioned writing, commit), and the table is read back with the `parquet` crate.

mod common;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType as ArrowType, Date32Type, Decimal128Type, Float64Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use mews_etl::commit::OutputDir;
use mews_etl::config::ErrorBudget;
use mews_etl::convert::{load_files, LoadOutcome, LoadPlan};
use mews_etl::input::Source;
use mews_etl::manifest::WriteMode;
use mews_etl::schema::{self, DataType, EntitySchema, Property};
use mews_etl::sink::WriterOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::fmt::Write as _;

/// Cases per entity type: with up to four rows each, enough to meet every property in
/// every state (absent, null, value) many times, and the ten entities together stay well
/// under a minute in a debug build on two cores.
const CASES: u32 = 48;

/// Largest decimal magnitude `Decimal128(38, 9)` holds, in units of 10⁻⁹.
const MAX_DECIMAL_UNITS: i128 = 10i128.pow(38) - 1;

/// A generated value: what the JSON line says, in a form the expected Arrow value follows
/// from directly. How it is spelled is decided when the line is written.
#[derive(Debug, Clone)]
enum Value {
    Null,
    /// A string (also an enum value); the expected text, before any escaping.
    Str(String),
    Int(i64),
    /// Units of 10⁻⁹.
    Dec(i128),
    /// Any finite float.
    Dbl(f64),
    Bool(bool),
    Ts(Instant),
    /// Year, month, day; `bool`: spelled as a midnight-UTC date-time.
    Date(i64, u32, u32, bool),
    /// JSON text, stored verbatim.
    Json(String),
    /// One entry per schema property, in schema order (`None`: absent), and the order the
    /// present ones are written in.
    Obj(Vec<Option<Value>>, Vec<usize>),
    Arr(Vec<Value>),
}

/// An instant as written: local calendar fields and an offset.
#[derive(Debug, Clone)]
struct Instant {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Microseconds, already a multiple of what `fraction_digits` can show.
    micros: u32,
    /// Digits written after the dot (0: no fraction); beyond 6 they are zeros.
    fraction_digits: u32,
    /// Minutes east of UTC; `None` writes `Z`.
    offset_minutes: Option<i32>,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][m as usize - 1]
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year ≥ 1), counted
/// by whole years and months rather than with the era formula the product uses.
fn epoch_days(y: i64, m: u32, d: u32) -> i64 {
    let before = y - 1;
    let days_to_year = before * 365 + before / 4 - before / 100 + before / 400;
    let days_to_month: i64 = (1..m).map(|k| i64::from(days_in_month(y, k))).sum();
    // 719 162 days lie between 0001-01-01 and 1970-01-01.
    days_to_year + days_to_month + i64::from(d) - 1 - 719_162
}

impl Instant {
    fn expected_micros(&self) -> i64 {
        let seconds = epoch_days(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes.unwrap_or(0)) * 60;
        seconds * 1_000_000 + i64::from(self.micros)
    }

    fn text(&self, rng: &mut Layout) -> String {
        let separator = if rng.chance(8) { 't' } else { 'T' };
        let mut s = format!(
            "{:04}-{:02}-{:02}{separator}{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.fraction_digits > 0 {
            let six = format!("{:06}", self.micros);
            let n = self.fraction_digits as usize;
            s.push('.');
            s.push_str(&six[..n.min(6)]);
            s.extend(std::iter::repeat_n('0', n.saturating_sub(6)));
        }
        match self.offset_minutes {
            None if rng.chance(8) => s.push('z'),
            None => s.push('Z'),
            Some(o) => {
                let sign = if o < 0 || (o == 0 && rng.chance(2)) {
                    '-'
                } else {
                    '+'
                };
                let _ = write!(s, "{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60);
            }
        }
        s
    }
}

/// Spelling decisions for one line (whitespace, escapes, number forms), drawn from a seed so
/// that the value tree alone decides what is expected.
struct Layout(u64);

impl Layout {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True once in `n` draws on average.
    fn chance(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn whitespace(&mut self, out: &mut String) {
        match self.below(6) {
            0 => out.push(' '),
            1 => out.push('\t'),
            2 => out.push_str(" \t "),
            _ => {}
        }
    }
}

/// Writes `text` as a JSON string: what JSON requires escaped is, and other characters are
/// sometimes escaped as `\uXXXX` (a surrogate pair beyond the BMP) or a short escape.
fn write_string(text: &str, rng: &mut Layout, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '/' if rng.chance(2) => Some("\\/"),
            _ => None,
        };
        let must = c < ' ' || c == '"' || c == '\\';
        if let Some(s) = short.filter(|_| !rng.chance(3)) {
            out.push_str(s);
        } else if must || rng.chance(5) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                if rng.chance(2) {
                    let _ = write!(out, "\\u{u:04x}");
                } else {
                    let _ = write!(out, "\\u{u:04X}");
                }
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// Writes `units` × 10⁻⁹ as a JSON number `mantissa[e±exponent]`, choosing the exponent,
/// padding zeros and exponent style at random; every spelling has the same exact value.
fn write_decimal(units: i128, rng: &mut Layout, out: &mut String) {
    let digits = units.unsigned_abs().to_string();
    if units < 0 || (units == 0 && rng.chance(4)) {
        out.push('-');
    }
    let exponent: i64 = if rng.chance(3) {
        rng.below(41) as i64 - 20
    } else {
        0
    };
    // The mantissa has 9 + exponent digits after its point (a negative count: zeros to add).
    let fraction = 9 + exponent;
    let mut mantissa = if fraction <= 0 {
        let mut m = digits.clone();
        if m != "0" {
            m.extend(std::iter::repeat_n('0', (-fraction) as usize));
        }
        m
    } else {
        let width = fraction as usize + 1;
        let padded = format!("{digits:0>width$}");
        let (int, frac) = padded.split_at(padded.len() - fraction as usize);
        format!("{int}.{frac}")
    };
    if mantissa.contains('.') {
        // Trailing zeros of the fraction carry nothing: drop some, or add more.
        if rng.chance(2) {
            while mantissa.ends_with('0') && !rng.chance(4) {
                mantissa.pop();
            }
            if mantissa.ends_with('.') {
                mantissa.pop();
            }
        } else if rng.chance(2) {
            mantissa.extend(std::iter::repeat_n('0', rng.below(4) as usize));
        }
    } else if rng.chance(4) {
        mantissa.push_str(".0");
    }
    out.push_str(&mantissa);
    if exponent != 0 || rng.chance(8) {
        out.push(if rng.chance(2) { 'e' } else { 'E' });
        if exponent >= 0 && rng.chance(2) {
            out.push('+');
        }
        let _ = write!(out, "{exponent}");
    }
}

/// Writes an integer, sometimes as `m e k` when it ends in zeros, or with a `.0`.
fn write_integer(v: i64, rng: &mut Layout, out: &mut String) {
    let text = v.to_string();
    let zeros = text.len() - text.trim_end_matches('0').len();
    if v != 0 && zeros > 0 && rng.chance(3) {
        let k = 1 + rng.below(zeros as u64) as usize;
        let _ = write!(out, "{}e{k}", &text[..text.len() - k]);
    } else if rng.chance(6) {
        let _ = write!(out, "{text}.0");
    } else {
        out.push_str(&text);
    }
}

fn write_value(value: &Value, data_type: &DataType, rng: &mut Layout, out: &mut String) {
    match (value, data_type) {
        (Value::Null, _) => out.push_str("null"),
        (Value::Str(s), _) => write_string(s, rng, out),
        (Value::Int(v), _) => write_integer(*v, rng, out),
        (Value::Dec(units), _) => write_decimal(*units, rng, out),
        // The shortest spelling, or with an exponent (`5.0e-3` → `5e-3`), as a JSON writer
        // may put it.
        (Value::Dbl(v), _) => {
            let text = if rng.chance(3) {
                format!("{v:e}")
            } else {
                format!("{v:?}")
            };
            out.push_str(&text);
        }
        (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (Value::Ts(instant), _) => {
            let text = instant.text(rng);
            write_string(&text, rng, out);
        }
        (Value::Date(y, m, d, as_instant), _) => {
            let mut text = format!("{y:04}-{m:02}-{d:02}");
            if *as_instant {
                text.push_str(if rng.chance(2) {
                    "T00:00:00Z"
                } else {
                    "T00:00:00.000+00:00"
                });
            }
            write_string(&text, rng, out);
        }
        (Value::Json(text), _) => out.push_str(text),
        (Value::Obj(members, order), DataType::Object(props, _)) => {
            write_object(members, order, props, rng, out)
        }
        (Value::Arr(items), DataType::Array(item_type)) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    rng.whitespace(out);
                    out.push(',');
                }
                rng.whitespace(out);
                write_value(item, item_type, rng, out);
            }
            rng.whitespace(out);
            out.push(']');
        }
        (v, t) => panic!("generated {v:?} for {}", t.spelling()),
    }
}

fn write_object(
    members: &[Option<Value>],
    order: &[usize],
    props: &[Property],
    rng: &mut Layout,
    out: &mut String,
) {
    out.push('{');
    let mut first = true;
    for &i in order {
        let Some(value) = &members[i] else { continue };
        if !first {
            rng.whitespace(out);
            out.push(',');
        }
        first = false;
        rng.whitespace(out);
        // Keys are plain ASCII names; escaping one must not stop it matching.
        let mut key_rng = Layout(if rng.chance(6) { rng.next() | 1 } else { 0 });
        if key_rng.0 == 0 {
            let _ = write!(out, "\"{}\"", props[i].name);
        } else {
            let mut escaped = String::new();
            for c in props[i].name.chars() {
                if key_rng.chance(2) {
                    let _ = write!(escaped, "\\u{:04x}", c as u32);
                } else {
                    escaped.push(c);
                }
            }
            let _ = write!(out, "\"{escaped}\"");
        }
        rng.whitespace(out);
        out.push(':');
        rng.whitespace(out);
        write_value(value, &props[i].data_type, rng, out);
    }
    rng.whitespace(out);
    out.push('}');
}

/// Arbitrary text: any Unicode scalar value (controls, quotes, backslashes, astral
/// characters), with plain words mixed in.
fn text_strategy() -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => "[A-Za-z0-9 ]{0,10}",
        1 => proptest::collection::vec(
            prop_oneof![Just('é'), Just('e'), Just('\u{301}'), Just('🏨'), Just('"'), Just('\\')],
            0..6
        )
        .prop_map(String::from_iter),
    ]
    .boxed()
}

/// An instant with valid local fields and any offset a timestamp may carry.
fn instant_strategy() -> BoxedStrategy<Value> {
    let year = prop_oneof![4 => 1990i64..2040, 1 => 1i64..=9999];
    (
        year,
        1u32..=12,
        1u32..=31,
        (0u32..24, 0u32..60, 0u32..60),
        (0u32..1_000_000, 0u32..=9),
        prop_oneof![2 => Just(None), 1 => (-(23 * 60 + 59)..=23 * 60 + 59).prop_map(Some)],
    )
        .prop_map(
            |(year, month, day, (hour, minute, second), (micros, digits), offset)| {
                let day = day.min(days_in_month(year, month));
                // Only what the written digits can show: 10^(6 - digits) divides it.
                let step = 10u32.pow(6u32.saturating_sub(digits));
                Value::Ts(Instant {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    micros: if digits == 0 {
                        0
                    } else {
                        micros - micros % step
                    },
                    fraction_digits: digits,
                    offset_minutes: offset,
                })
            },
        )
        .boxed()
}

/// Any JSON value, as compact text with optional spaces: what a `json` property stores as is.
fn json_text_strategy() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("-0.5e+3".to_owned()),
        text_strategy().prop_map(|s| serde_json::to_string(&s).expect("a string serialises")),
    ];
    let tree = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((text_strategy(), inner), 0..4).prop_map(|members| {
                let parts: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("{}: {v}", serde_json::to_string(&k).expect("key")))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }),
        ]
    });
    prop_oneof![
        4 => proptest::collection::vec((text_strategy(), tree.clone()), 0..4).prop_map(|members| {
            let parts: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).expect("key")))
                .collect();
            format!("{{{}}}", parts.join(","))
        }),
        // Any other value but `null`, which is the property's null, not JSON text.
        1 => tree.prop_filter("a json property's null is a null", |t| t != "null"),
    ]
    .boxed()
}

/// A value of `data_type`, never `null` (callers add nulls where the schema allows them).
fn value_strategy(data_type: &DataType) -> BoxedStrategy<Value> {
    match data_type {
        DataType::String => text_strategy().prop_map(Value::Str).boxed(),
        DataType::Enum(e) => {
            let documented = e.values.clone();
            prop_oneof![
                // An undocumented value is drift, kept as it is.
                1 => text_strategy().prop_map(Value::Str),
                6 => proptest::sample::select(documented).prop_map(Value::Str),
            ]
            .boxed()
        }
        DataType::Integer => prop_oneof![
            any::<i64>(),
            -1000i64..1000,
            (-99i64..99, 0u32..17).prop_map(|(m, k)| m * 10i64.pow(k)),
            Just(i64::MIN),
            Just(i64::MAX),
        ]
        .prop_map(Value::Int)
        .boxed(),
        DataType::Decimal => prop_oneof![
            // Money in cents, rates, and anything up to 38 digits.
            any::<i32>().prop_map(|c| i128::from(c) * 10_000_000),
            -10i128.pow(15)..10i128.pow(15),
            -MAX_DECIMAL_UNITS..=MAX_DECIMAL_UNITS,
            Just(MAX_DECIMAL_UNITS),
            Just(-MAX_DECIMAL_UNITS),
            Just(0i128),
        ]
        .prop_map(Value::Dec)
        .boxed(),
        DataType::Double => prop_oneof![
            -90.0f64..90.0,
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            Just(0.1 + 0.2),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE / 4.0),
        ]
        .prop_map(Value::Dbl)
        .boxed(),
        DataType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        DataType::Timestamp => instant_strategy(),
        DataType::Date => (1i64..=9999, 1u32..=12, 1u32..=31, any::<bool>())
            .prop_map(|(y, m, d, t)| Value::Date(y, m, d.min(days_in_month(y, m)), t))
            .boxed(),
        DataType::Json => json_text_strategy().prop_map(Value::Json).boxed(),
        DataType::Object(props, _) => object_strategy(props, None),
        DataType::Array(item) => {
            let item = prop_oneof![1 => Just(Value::Null), 5 => value_strategy(item)];
            proptest::collection::vec(item, 0..4)
                .prop_map(Value::Arr)
                .boxed()
        }
    }
}

/// An object of `props`: each property absent, `null` or a value, written in any order.
/// `key` names a property that is always present with a value (the row's `Id`).
fn object_strategy(props: &[Property], key: Option<&str>) -> BoxedStrategy<Value> {
    let members: Vec<BoxedStrategy<Option<Value>>> = props
        .iter()
        .map(|p| {
            let value = value_strategy(&p.data_type);
            if Some(p.name.as_str()) == key {
                // An empty key identifies no row and rejects its line: keys are never empty.
                value
                    .prop_filter(
                        "a non-empty key",
                        |v| !matches!(v, Value::Str(s) if s.is_empty()),
                    )
                    .prop_map(Some)
                    .boxed()
            } else {
                prop_oneof![
                    1 => Just(None),
                    1 => Just(Some(Value::Null)),
                    4 => value.prop_map(Some),
                ]
                .boxed()
            }
        })
        .collect();
    let order = Just((0..props.len()).collect::<Vec<usize>>()).prop_shuffle();
    (members, order)
        .prop_map(|(members, order)| Value::Obj(members, order))
        .boxed()
}

/// One input file: rows with the seed of their spelling, and the file's framing.
#[derive(Debug, Clone)]
struct Case {
    rows: Vec<(Value, u64)>,
    /// Blank lines before each row (and one more entry for the end).
    blanks: Vec<u8>,
    is_crlf: bool,
    has_bom: bool,
    has_final_newline: bool,
}

fn case_strategy(schema: &EntitySchema) -> impl Strategy<Value = Case> {
    let row = (
        object_strategy(&schema.properties, Some("Id")),
        any::<u64>(),
    );
    (
        proptest::collection::vec(row, 1..=4),
        proptest::collection::vec(prop_oneof![4 => Just(0u8), 1 => 1u8..3], 5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(rows, blanks, is_crlf, has_bom, has_final_newline)| Case {
            rows,
            blanks,
            is_crlf,
            has_bom,
            has_final_newline,
        })
}

/// The file's bytes and the line number of each row.
fn render(case: &Case, schema: &EntitySchema) -> (Vec<u8>, Vec<i64>) {
    let eol = if case.is_crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    if case.has_bom {
        text.push('\u{FEFF}');
    }
    let mut numbers = Vec::new();
    let mut line = 0i64;
    let blank = |n: u8, text: &mut String, line: &mut i64| {
        for k in 0..n {
            text.push_str(if k % 2 == 0 { "" } else { " \t" });
            text.push_str(eol);
            *line += 1;
        }
    };
    for (i, (row, seed)) in case.rows.iter().enumerate() {
        blank(case.blanks[i], &mut text, &mut line);
        let Value::Obj(members, order) = row else {
            unreachable!("rows are objects")
        };
        let mut rng = Layout(seed | 1);
        rng.whitespace(&mut text);
        write_object(members, order, &schema.properties, &mut rng, &mut text);
        rng.whitespace(&mut text);
        line += 1;
        numbers.push(line);
        if i + 1 < case.rows.len() || case.has_final_newline {
            text.push_str(eol);
        }
    }
    if case.has_final_newline {
        blank(case.blanks[4], &mut text, &mut line);
    }
    (text.into_bytes(), numbers)
}

/// The text of a string value, whichever string layout the reader chose.
fn string_at(array: &dyn Array, i: usize) -> Result<String, String> {
    match array.data_type() {
        ArrowType::Utf8 => Ok(array.as_string::<i32>().value(i).to_owned()),
        ArrowType::LargeUtf8 => Ok(array.as_string::<i64>().value(i).to_owned()),
        ArrowType::Utf8View => Ok(array.as_string_view().value(i).to_owned()),
        other => Err(format!("a string column read back as {other}")),
    }
}

/// Compares the expected value with row `i` of `array`.
fn check(
    value: &Value,
    data_type: &DataType,
    array: &dyn Array,
    i: usize,
    path: &str,
) -> Result<(), String> {
    let fail = |what: String| Err(format!("{path}: {what}"));
    if let Value::Null = value {
        return if array.is_null(i) {
            Ok(())
        } else {
            fail("expected null".into())
        };
    }
    if array.is_null(i) {
        return fail(format!("expected {value:?}, read back null"));
    }
    match (value, data_type) {
        (Value::Str(s) | Value::Json(s), _) => {
            let got = string_at(array, i)?;
            if &got != s {
                return fail(format!("expected {s:?}, got {got:?}"));
            }
        }
        (Value::Int(v), _) => {
            let got = array
                .as_primitive_opt::<Int64Type>()
                .ok_or("not Int64")?
                .value(i);
            if got != *v {
                return fail(format!("expected {v}, got {got}"));
            }
        }
        (Value::Dec(units), _) => {
            if array.data_type() != &ArrowType::Decimal128(38, 9) {
                return fail(format!("type {}", array.data_type()));
            }
            let got = array.as_primitive::<Decimal128Type>().value(i);
            if got != *units {
                return fail(format!("expected {units} units, got {got}"));
            }
        }
        (Value::Dbl(v), _) => {
            let got = array
                .as_primitive_opt::<Float64Type>()
                .ok_or("not Float64")?
                .value(i);
            if got.to_bits() != v.to_bits() {
                return fail(format!("expected {v:?}, got {got:?}"));
            }
        }
        (Value::Bool(b), _) => {
            let got = array.as_boolean_opt().ok_or("not Boolean")?.value(i);
            if got != *b {
                return fail(format!("expected {b}, got {got}"));
            }
        }
        (Value::Ts(instant), _) => {
            if !matches!(array.data_type(), ArrowType::Timestamp(TimeUnit::Microsecond, Some(tz)) if &**tz == "UTC")
            {
                return fail(format!("type {}", array.data_type()));
            }
            let got = array.as_primitive::<TimestampMicrosecondType>().value(i);
            let expected = instant.expected_micros();
            if got != expected {
                return fail(format!("{instant:?}: expected {expected} µs, got {got}"));
            }
        }
        (Value::Date(y, m, d, _), _) => {
            let got = i64::from(
                array
                    .as_primitive_opt::<Date32Type>()
                    .ok_or("not Date32")?
                    .value(i),
            );
            let expected = epoch_days(*y, *m, *d);
            if got != expected {
                return fail(format!("{y}-{m}-{d}: expected day {expected}, got {got}"));
            }
        }
        (Value::Obj(members, _), DataType::Object(props, _)) => {
            let s = array.as_struct_opt().ok_or("not a struct")?;
            check_members(members, props, s.columns(), i, path)?;
        }
        (Value::Arr(items), DataType::Array(item_type)) => {
            let list = array.as_list_opt::<i32>().ok_or("not a list")?;
            let values = list.value(i);
            if values.len() != items.len() {
                return fail(format!("{} items, expected {}", values.len(), items.len()));
            }
            for (k, item) in items.iter().enumerate() {
                check(item, item_type, &values, k, &format!("{path}[{k}]"))?;
            }
        }
        (v, t) => return fail(format!("generated {v:?} for {}", t.spelling())),
    }
    Ok(())
}

fn check_members(
    members: &[Option<Value>],
    props: &[Property],
    columns: &[arrow::array::ArrayRef],
    i: usize,
    path: &str,
) -> Result<(), String> {
    for ((member, prop), column) in members.iter().zip(props).zip(columns) {
        let path = if path.is_empty() {
            prop.name.clone()
        } else {
            format!("{path}.{}", prop.name)
        };
        check(
            member.as_ref().unwrap_or(&Value::Null),
            &prop.data_type,
            column,
            i,
            &path,
        )?;
    }
    Ok(())
}

/// Loads one case through the real pipeline and compares the table with the value trees.
fn run_case(
    schema: &'static EntitySchema,
    case: &Case,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), TestCaseError> {
    let (bytes, numbers) = render(case, schema);
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let out_path = dir.path().join("out");
    let out = OutputDir::open(&out_path).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let plan = LoadPlan {
        schema,
        load_id: "prop".into(),
        export_id: "prop-export".into(),
        mode: WriteMode::Replace,
        partition: schema.default_partition_spec(),
        writer: WriterOptions::default(),
        budget: ErrorBudget::Count(0),
        max_line_bytes: mews_etl::framing::DEFAULT_MAX_LINE_BYTES,
        // Tiny batches for half the cases, so that a case's lines are decoded by two threads
        // and put back in order by the writer; one batch for the others, so that its lines
        // are grouped by partition before they are decoded.
        batch_bytes: if case.rows.len().is_multiple_of(2) {
            256
        } else {
            1 << 16
        },
        parallel_sources: 1,
        decode_threads: 2,
        progress: Default::default(),
        replaces: Vec::new(),
    };
    let report = runtime
        .block_on(load_files(&out, &plan, &[Source::Path(input)]))
        .map_err(|e| TestCaseError::fail(format!("load failed: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let quarantine = report
        .quarantine
        .as_ref()
        .and_then(|q| std::fs::read_to_string(q).ok())
        .unwrap_or_default();
    prop_assert!(
        matches!(report.outcome, LoadOutcome::Committed { .. }),
        "not committed; quarantine: {quarantine}\ninput: {text}"
    );
    let counts = &report.manifest.counts;
    prop_assert_eq!(counts.rejected, 0, "quarantine: {}", quarantine);
    prop_assert_eq!(counts.rows_written, case.rows.len() as u64);
    prop_assert!(counts.unknown_properties.is_empty(), "{:?}", counts);

    let mut batches: Vec<RecordBatch> = Vec::new();
    for path in common::parquet_files(&out_path.join(&schema.table)) {
        let file = std::fs::File::open(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut last_line = 0;
        for batch in reader {
            let batch = batch.map_err(|e| TestCaseError::fail(e.to_string()))?;
            // A file holds its rows in line order, however the lines were grouped or
            // split on their way.
            let lines = batch
                .column_by_name(schema::LINEAGE_LINE)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| TestCaseError::fail("no _line column"))?;
            for &line in lines.values() {
                prop_assert!(
                    line > last_line,
                    "line {} after {} in {}",
                    line,
                    last_line,
                    path.display()
                );
                last_line = line;
            }
            batches.push(batch);
        }
    }
    let arrow_schema = schema.arrow_schema();
    let all = arrow::compute::concat_batches(&arrow_schema, &batches)
        .map_err(|e| TestCaseError::fail(format!("read back: {e}")))?;
    prop_assert_eq!(all.num_rows(), case.rows.len());
    let lines = all
        .column_by_name(schema::LINEAGE_LINE)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| TestCaseError::fail("no _line column"))?;
    let extra = all
        .column_by_name(schema::LINEAGE_EXTRA)
        .ok_or_else(|| TestCaseError::fail("no _extra column"))?;
    for ((row, _), number) in case.rows.iter().zip(&numbers) {
        let Some(i) = (0..all.num_rows()).find(|&i| lines.value(i) == *number) else {
            return Err(TestCaseError::fail(format!(
                "no row read back for line {number}"
            )));
        };
        let Value::Obj(members, _) = row else {
            unreachable!("rows are objects")
        };
        check_members(
            members,
            &schema.properties,
            &all.columns()[..schema.properties.len()],
            i,
            "",
        )
        .map_err(|e| TestCaseError::fail(format!("line {number}: {e}\ninput: {text}")))?;
        prop_assert!(extra.is_null(i), "_extra of line {}", number);
    }
    Ok(())
}

/// Runs the round-trip property for one entity type.
fn round_trip(entity: &str) {
    let schema = schema::find(entity).expect("entity exists");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        // Shrinking a failing case down to one property is what makes it readable; the
        // budget keeps a failure from running for long.
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case_strategy(schema), |case| {
        run_case(schema, &case, &runtime)
    });
    if let Err(e) = result {
        panic!("{entity}: {e}");
    }
}

macro_rules! round_trip_tests {
    ($($name:ident => $entity:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                round_trip($entity);
            }
        )*

        /// The list above covers every schema, so a new entity type cannot go untested.
        #[test]
        fn every_entity_has_a_round_trip_property() {
            let mut listed = vec![$($entity),*];
            listed.sort_unstable();
            let mut all: Vec<&str> = schema::entity_names();
            all.sort_unstable();
            assert_eq!(listed, all);
        }
    };
}

round_trip_tests! {
    order_item_round_trips => "OrderItem",
    payment_round_trips => "Payment",
    reservation_round_trips => "Reservation",
    customer_round_trips => "Customer",
    company_round_trips => "Company",
    bill_round_trips => "Bill",
    availability_adjustment_round_trips => "AvailabilityAdjustment",
    availability_block_round_trips => "AvailabilityBlock",
    resource_block_round_trips => "ResourceBlock",
    ledger_entry_round_trips => "LedgerEntry",
}

#[test]
fn independent_day_count_agrees_with_known_dates() {
    // Checks the test's own calendar, so a round-trip pass cannot come from two equal bugs.
    assert_eq!(epoch_days(1970, 1, 1), 0);
    assert_eq!(epoch_days(2000, 3, 1), 11_017);
    assert_eq!(epoch_days(1969, 12, 31), -1);
    assert_eq!(epoch_days(1, 1, 1), -719_162);
    assert_eq!(epoch_days(9999, 12, 31), 2_932_896);
    assert_eq!(epoch_days(2024, 2, 29) + 1, epoch_days(2024, 3, 1));
}

/// Partition values taken from free text: separators, traversal, sentinels, device names,
/// invisible and astral characters, and values longer than a file name may be.
fn hostile_partition_value() -> BoxedStrategy<Option<String>> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        1 => proptest::sample::select(vec![
            "/", "\\", ".", "..", " ", "%", "%2F", "~", "__", "=", "\0", "CON", "nul.txt",
            "__HIVE_DEFAULT_PARTITION__", "__EMPTY_STRING__", "e\u{301}", "\u{202E}", "🏨",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z]{100,160}",
    ];
    prop_oneof![
        1 => Just(None),
        8 => proptest::collection::vec(piece, 0..8).prop_map(|p| Some(p.concat())),
    ]
    .boxed()
}

/// Loads rows partitioned by a text property and checks the directories: one path
/// component under the table each, at most 255 bytes, one value per directory, one
/// directory per value, and every row back with its exact value.
fn check_identity_partitions(
    values: &[Option<String>],
    runtime: &tokio::runtime::Runtime,
) -> Result<(), TestCaseError> {
    let fail = |e: String| TestCaseError::fail(e);
    let schema = schema::find("ResourceBlock").expect("entity exists");
    let mut text = String::new();
    for (i, v) in values.iter().enumerate() {
        let _ = writeln!(
            text,
            r#"{{"Id":"{i}","EnterpriseId":{}}}"#,
            serde_json::to_string(v).map_err(|e| fail(e.to_string()))?
        );
    }
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, text).map_err(|e| fail(e.to_string()))?;
    let out_path = dir.path().join("out");
    let out = OutputDir::open(&out_path).map_err(|e| fail(e.to_string()))?;
    let plan = LoadPlan {
        schema,
        load_id: "prop".into(),
        export_id: "prop".into(),
        mode: WriteMode::Replace,
        partition: schema
            .parse_partition_spec("EnterpriseId")
            .map_err(|e| fail(e.to_string()))?,
        writer: WriterOptions::default(),
        budget: ErrorBudget::Count(0),
        max_line_bytes: mews_etl::framing::DEFAULT_MAX_LINE_BYTES,
        batch_bytes: mews_etl::input::DEFAULT_BATCH_BYTES,
        parallel_sources: 1,
        decode_threads: 2,
        progress: Default::default(),
        replaces: Vec::new(),
    };
    let report = runtime
        .block_on(load_files(&out, &plan, &[Source::Path(input)]))
        .map_err(|e| fail(format!("load failed: {e}")))?;
    let committed = matches!(report.outcome, LoadOutcome::Committed { .. });
    prop_assert!(committed, "not committed");
    let table =
        std::fs::canonicalize(out_path.join(&schema.table)).map_err(|e| fail(e.to_string()))?;
    // Directory → the value its rows hold; row id → value read back.
    let mut by_dir: std::collections::BTreeMap<String, Option<String>> = Default::default();
    let mut rows: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for path in common::parquet_files(&table) {
        let parent = path.parent().ok_or_else(|| fail("no parent".into()))?;
        prop_assert_eq!(parent.parent(), Some(table.as_path()), "{}", path.display());
        let name = parent
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| fail(format!("{}", path.display())))?
            .to_owned();
        prop_assert!(name.len() <= 255, "{} bytes", name.len());
        let file = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| fail(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            let ids = batch
                .column_by_name("Id")
                .ok_or_else(|| fail("Id".into()))?;
            let vals = batch
                .column_by_name("EnterpriseId")
                .ok_or_else(|| fail("EnterpriseId".into()))?;
            for i in 0..batch.num_rows() {
                let value = (!vals.is_null(i))
                    .then(|| string_at(vals, i))
                    .transpose()
                    .map_err(fail)?;
                let first = by_dir.entry(name.clone()).or_insert_with(|| value.clone());
                prop_assert_eq!(&*first, &value, "two values in {}", name);
                rows.insert(string_at(ids, i).map_err(fail)?, value);
            }
        }
    }
    let distinct: std::collections::BTreeSet<&Option<String>> = values.iter().collect();
    prop_assert_eq!(by_dir.len(), distinct.len());
    let expected: std::collections::BTreeMap<String, Option<String>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v.clone()))
        .collect();
    prop_assert_eq!(rows, expected);
    Ok(())
}

#[test]
fn free_text_partition_values_get_one_safe_directory_each() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let values = proptest::collection::vec(hostile_partition_value(), 1..8);
    if let Err(e) = runner.run(&values, |values| {
        check_identity_partitions(&values, &runtime)
    }) {
        panic!("{e}");
    }
}
