//! Value-by-value comparison of JSON input rows with the Arrow rows read back from Parquet.
//!
//! Round-trip tests feed generated exports through the pipeline and must prove that every
//! value arrived exactly. Comparing through `serde_json::Value` would not do: it turns
//! decimals into `f64`, so `0.1` and `0.1000000000000000055` would look equal. This module
//! therefore reads each input line with a small parser that keeps every number's text, and
//! compares numbers as exact decimals.

// Each integration-test binary compiles its own copy of this module and uses a different part.
#![allow(dead_code)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType as ArrowType, Date32Type, Decimal128Type, Float64Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use mews_etl::schema::{DataType, EntitySchema, LINEAGE_EXTRA, LINEAGE_LINE};
use serde_json::Value;

/// What the lineage columns of a row should hold.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedLineage<'a> {
    /// The row's 1-based line number in its source file (`_line`).
    pub line: i64,
    /// The unknown properties by path (`_extra`), or `None` when the row had none and the
    /// column must be null.
    pub extra: Option<&'a Value>,
}

/// Compares one JSON input line against row `row` of `batch`, following the entity schema;
/// returns one description per mismatch (empty = equal).
///
/// For every schema property: absent or `null` in JSON ↔ Arrow null; strings and enums equal;
/// `json` properties equal as parsed JSON; integers and decimals equal as exact decimals (so
/// `1e2` equals `100`); timestamps equal to the microsecond after reading the ISO-8601 offset;
/// dates equal as days; objects and arrays compared member by member. With `lineage`, the
/// `_line` and `_extra` columns are checked too; pass `None` for decoder output, which has no
/// lineage columns. Properties the schema does not know are not compared here: they are what
/// `_extra` holds.
pub fn compare_row(
    schema: &EntitySchema,
    line: &str,
    batch: &RecordBatch,
    row: usize,
    lineage: Option<ExpectedLineage<'_>>,
) -> Vec<String> {
    let mut out = Vec::new();
    if row >= batch.num_rows() {
        out.push(format!(
            "row {row} is past the batch's {} rows",
            batch.num_rows()
        ));
        return out;
    }
    let json = match parse_json(line) {
        Ok(j) => j,
        Err(e) => {
            out.push(format!("input line is not valid JSON: {e}"));
            return out;
        }
    };
    let JsonKind::Object(members) = &json.kind else {
        out.push(format!("input line is not a JSON object: {}", json.raw));
        return out;
    };
    for p in schema.properties.iter() {
        match batch.column_by_name(&p.name) {
            Some(column) => compare_value(
                &p.data_type,
                member(members, &p.name),
                column.as_ref(),
                row,
                &p.name,
                &mut out,
            ),
            None => out.push(format!("{}: no such column in the batch", p.name)),
        }
    }
    if let Some(lineage) = lineage {
        compare_lineage(&lineage, batch, row, &mut out);
    }
    out
}

fn compare_lineage(
    lineage: &ExpectedLineage<'_>,
    batch: &RecordBatch,
    row: usize,
    out: &mut Vec<String>,
) {
    match batch.column_by_name(LINEAGE_LINE) {
        None => out.push(format!("{LINEAGE_LINE}: no such column in the batch")),
        Some(c) => match c.as_primitive_opt::<Int64Type>() {
            None => out.push(format!(
                "{LINEAGE_LINE}: column is {}, expected Int64",
                c.data_type()
            )),
            Some(a) if a.is_null(row) => {
                out.push(format!("{LINEAGE_LINE}: null, expected {}", lineage.line))
            }
            Some(a) if a.value(row) != lineage.line => out.push(format!(
                "{LINEAGE_LINE}: {}, expected {}",
                a.value(row),
                lineage.line
            )),
            Some(_) => {}
        },
    }
    let Some(c) = batch.column_by_name(LINEAGE_EXTRA) else {
        out.push(format!("{LINEAGE_EXTRA}: no such column in the batch"));
        return;
    };
    let got = match string_at(c.as_ref(), row) {
        Err(e) => return out.push(format!("{LINEAGE_EXTRA}: {e}")),
        Ok(got) => got,
    };
    match (lineage.extra, got) {
        (None, None) => {}
        (None, Some(text)) => out.push(format!("{LINEAGE_EXTRA}: {text}, expected null")),
        (Some(want), None) => out.push(format!("{LINEAGE_EXTRA}: null, expected {want}")),
        (Some(want), Some(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(v) if &v == want => {}
            Ok(_) => out.push(format!("{LINEAGE_EXTRA}: {text}, expected {want}")),
            Err(e) => out.push(format!(
                "{LINEAGE_EXTRA}: {text:?} is not JSON ({e}), expected {want}"
            )),
        },
    }
}

/// The last member named `name`: like `serde_json`, a repeated key's last value wins.
fn member<'j, 'a>(members: &'j [(String, Json<'a>)], name: &str) -> Option<&'j Json<'a>> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn compare_value(
    dt: &DataType,
    json: Option<&Json<'_>>,
    array: &dyn Array,
    idx: usize,
    path: &str,
    out: &mut Vec<String>,
) {
    let json = match (
        json.filter(|j| !matches!(j.kind, JsonKind::Null)),
        array.is_null(idx),
    ) {
        (None, true) => return,
        (None, false) => {
            return out.push(format!(
                "{path}: JSON absent or null, column has {}",
                show(array, idx)
            ));
        }
        (Some(j), true) => return out.push(format!("{path}: JSON {}, column is null", j.raw)),
        (Some(j), false) => j,
    };
    if let Err(e) = compare_present(dt, json, array, idx, path, out) {
        out.push(format!("{path}: {e}"));
    }
}

/// Compares a non-null JSON value with a non-null Arrow value; `Err` describes a mismatch
/// found at this level.
fn compare_present(
    dt: &DataType,
    json: &Json<'_>,
    array: &dyn Array,
    idx: usize,
    path: &str,
    out: &mut Vec<String>,
) -> Result<(), String> {
    let wrong_type = || {
        format!(
            "column is {}, expected {}",
            array.data_type(),
            dt.arrow_type()
        )
    };
    match dt {
        DataType::String | DataType::Enum(_) => {
            let want = json
                .string()
                .ok_or_else(|| format!("JSON {} is not a string", json.raw))?;
            let got = string_at(array, idx)?.unwrap_or_default();
            if got != want {
                return Err(format!("JSON {want:?}, column {got:?}"));
            }
        }
        DataType::Json => {
            let want: Value = serde_json::from_str(json.raw).map_err(|e| e.to_string())?;
            let text = string_at(array, idx)?.unwrap_or_default();
            let got: Value = serde_json::from_str(&text)
                .map_err(|e| format!("column text {text:?} is not JSON: {e}"))?;
            if got != want {
                return Err(format!("JSON {want}, column {text}"));
            }
        }
        DataType::Integer => {
            let want = json.number(0)?;
            let got = array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(wrong_type)?
                .value(idx);
            if i128::from(got) != want {
                return Err(format!("JSON {}, column {got}", json.raw));
            }
        }
        DataType::Decimal => {
            let ArrowType::Decimal128(_, scale) = array.data_type() else {
                return Err(wrong_type());
            };
            let got = array.as_primitive::<Decimal128Type>().value(idx);
            let want = json.number(*scale)?;
            if got != want {
                return Err(format!("JSON {}, column {}", json.raw, show(array, idx)));
            }
        }
        DataType::Double => {
            // The nearest float to the JSON text, as the standard library rounds it.
            let want: f64 = json
                .raw
                .parse()
                .map_err(|e| format!("JSON {} is not a number: {e}", json.raw))?;
            let got = array
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(wrong_type)?
                .value(idx);
            if got.to_bits() != want.to_bits() {
                return Err(format!("JSON {}, column {got:?}", json.raw));
            }
        }
        DataType::Boolean => {
            let want = match json.kind {
                JsonKind::Bool(b) => b,
                _ => return Err(format!("JSON {} is not a boolean", json.raw)),
            };
            let got = array.as_boolean_opt().ok_or_else(wrong_type)?.value(idx);
            if got != want {
                return Err(format!("JSON {want}, column {got}"));
            }
        }
        DataType::Timestamp => {
            if !matches!(
                array.data_type(),
                ArrowType::Timestamp(TimeUnit::Microsecond, _)
            ) {
                return Err(wrong_type());
            }
            let text = json
                .string()
                .ok_or_else(|| format!("JSON {} is not a string", json.raw))?;
            let want = parse_timestamp_micros(&text)?;
            let got = array.as_primitive::<TimestampMicrosecondType>().value(idx);
            if got != want {
                return Err(format!(
                    "JSON {text:?} = {want} µs, column {got} µs ({})",
                    show(array, idx)
                ));
            }
        }
        DataType::Date => {
            let text = json
                .string()
                .ok_or_else(|| format!("JSON {} is not a string", json.raw))?;
            let want = parse_date_days(&text)?;
            let got = array
                .as_primitive_opt::<Date32Type>()
                .ok_or_else(wrong_type)?
                .value(idx);
            if i64::from(got) != want {
                return Err(format!(
                    "JSON {text:?} = day {want}, column day {got} ({})",
                    show(array, idx)
                ));
            }
        }
        DataType::Object(props, _) => {
            let JsonKind::Object(members) = &json.kind else {
                return Err(format!("JSON {} is not an object", json.raw));
            };
            let fields = array.as_struct_opt().ok_or_else(wrong_type)?;
            for p in props.iter() {
                let here = format!("{path}.{}", p.name);
                match fields.column_by_name(&p.name) {
                    Some(child) => compare_value(
                        &p.data_type,
                        member(members, &p.name),
                        child.as_ref(),
                        idx,
                        &here,
                        out,
                    ),
                    None => out.push(format!("{here}: no such field in the column")),
                }
            }
        }
        DataType::Array(item) => {
            let JsonKind::Array(items) = &json.kind else {
                return Err(format!("JSON {} is not an array", json.raw));
            };
            let list = array.as_list_opt::<i32>().ok_or_else(wrong_type)?;
            let offsets = list.value_offsets();
            let (start, end) = (offsets[idx] as usize, offsets[idx + 1] as usize);
            if end - start != items.len() {
                return Err(format!(
                    "JSON has {} items, column {}",
                    items.len(),
                    end - start
                ));
            }
            let values = list.values();
            for (i, j) in items.iter().enumerate() {
                compare_value(
                    item,
                    Some(j),
                    values.as_ref(),
                    start + i,
                    &format!("{path}[{i}]"),
                    out,
                );
            }
        }
    }
    Ok(())
}

/// The text of a string column's value, whichever string layout the reader chose.
fn string_at(array: &dyn Array, idx: usize) -> Result<Option<String>, String> {
    if array.is_null(idx) {
        return Ok(None);
    }
    let s = match array.data_type() {
        ArrowType::Utf8 => array.as_string::<i32>().value(idx),
        ArrowType::LargeUtf8 => array.as_string::<i64>().value(idx),
        ArrowType::Utf8View => array.as_string_view().value(idx),
        other => return Err(format!("column is {other}, expected a string type")),
    };
    Ok(Some(s.to_owned()))
}

/// One Arrow value as text, for mismatch messages.
fn show(array: &dyn Array, idx: usize) -> String {
    arrow::util::display::ArrayFormatter::try_new(array, &Default::default())
        .map(|f| f.value(idx).to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// A JSON number's exact value as an integer count of `10^-scale` units: `93.46` at scale 9
/// is `93_460_000_000`, `1e2` at scale 0 is `100`. A value with non-zero digits finer than
/// the scale, or beyond `i128`, is an error rather than rounded.
pub fn parse_decimal(text: &str, scale: i8) -> Result<i128, String> {
    let err = |why: &str| format!("{text:?}: {why}");
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (
            &rest[..i],
            rest[i + 1..]
                .parse::<i64>()
                .map_err(|_| err("bad exponent"))?,
        ),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(err("not a JSON number"));
    }
    let digits: String = int.chars().chain(frac.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    // value = trimmed × 10^shift
    let shift =
        exponent - frac.len() as i64 + (digits.len() - trimmed.len()) as i64 + i64::from(scale);
    if trimmed.is_empty() {
        return Ok(0);
    }
    if shift < 0 {
        return Err(err(&format!("has digits finer than scale {scale}")));
    }
    // i128 holds 38 digits: a larger shift overflows whatever the digits (and would loop long).
    if shift > 38 {
        return Err(err("too large for i128"));
    }
    let mut v: i128 = trimmed
        .parse()
        .map_err(|_| err("too many digits for i128"))?;
    for _ in 0..shift {
        v = v.checked_mul(10).ok_or_else(|| err("too large for i128"))?;
    }
    Ok(if negative { -v } else { v })
}

/// Days since 1970-01-01 of an ISO-8601 date `YYYY-MM-DD`.
pub fn parse_date_days(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(r).ok_or_else(|| format!("{text:?}: too short"))?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| format!("{text:?}: bad number"))
        } else {
            Err(format!("{text:?}: not a date"))
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(format!("{text:?}: not a YYYY-MM-DD date"));
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
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
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return Err(format!("{text:?}: no such day"));
    }
    Ok(days_from_civil(y, m, d))
}

/// Microseconds since the Unix epoch of an ISO-8601 instant `YYYY-MM-DDTHH:MM:SS[.f][Z|±HH:MM]`;
/// a fraction with non-zero digits beyond microseconds is an error rather than rounded.
pub fn parse_timestamp_micros(text: &str) -> Result<i64, String> {
    let err = |why: &str| format!("{text:?}: {why}");
    let days = parse_date_days(text.get(..10).ok_or_else(|| err("too short"))?)?;
    let b = text.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return Err(err("not an ISO-8601 instant"));
    }
    let two = |i: usize| -> Result<i64, String> {
        match (b[i], b[i + 1]) {
            (x @ b'0'..=b'9', y @ b'0'..=b'9') => {
                Ok(i64::from(x - b'0') * 10 + i64::from(y - b'0'))
            }
            _ => Err(err("bad digits")),
        }
    };
    let (h, mi, s) = (two(11)?, two(14)?, two(17)?);
    if h > 23 || mi > 59 || s > 59 {
        return Err(err("time out of range"));
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(err("empty fraction"));
        }
        let (fraction, tail) = r.split_at(n);
        if fraction.len() > 6 && fraction[6..].bytes().any(|c| c != b'0') {
            return Err(err("finer than a microsecond"));
        }
        let kept = &fraction[..fraction.len().min(6)];
        micros = kept.parse::<i64>().expect("digits") * 10i64.pow(6 - kept.len() as u32);
        rest = tail;
    }
    let offset_seconds = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: &u8| {
                c.is_ascii_digit()
                    .then(|| i64::from(c - b'0'))
                    .ok_or_else(|| err("bad offset"))
            };
            let v = (digit(h1)? * 10 + digit(h2)?) * 3600 + (digit(m1)? * 10 + digit(m2)?) * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return Err(err("no Z or ±HH:MM offset")),
    };
    let seconds = days * 86_400 + h * 3600 + mi * 60 + s - offset_seconds;
    Ok(seconds * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A parsed JSON value that keeps its source text, so numbers stay exact.
#[derive(Debug)]
pub struct Json<'a> {
    /// The value's text in the input, e.g. `93.46` or `"a\u00e9"`.
    pub raw: &'a str,
    /// What kind of value it is, with members and items parsed.
    pub kind: JsonKind<'a>,
}

/// The kinds of JSON value; numbers and strings are read from [`Json::raw`].
#[derive(Debug)]
pub enum JsonKind<'a> {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, exactly as written.
    Number,
    /// A string, still escaped in `raw`.
    String,
    /// Items in order.
    Array(Vec<Json<'a>>),
    /// Members in order, repeated keys included.
    Object(Vec<(String, Json<'a>)>),
}

impl Json<'_> {
    /// The unescaped text of a string value.
    pub fn string(&self) -> Option<String> {
        match self.kind {
            JsonKind::String => serde_json::from_str(self.raw).ok(),
            _ => None,
        }
    }

    /// The exact value of a number at `scale` (see [`parse_decimal`]).
    pub fn number(&self, scale: i8) -> Result<i128, String> {
        match self.kind {
            JsonKind::Number => parse_decimal(self.raw, scale),
            _ => Err(format!("JSON {} is not a number", self.raw)),
        }
    }
}

/// Parses one JSON text, keeping every value's source text.
pub fn parse_json(text: &str) -> Result<Json<'_>, String> {
    let mut p = JsonParser { text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(format!("trailing text at byte {}", p.pos));
    }
    Ok(v)
}

/// Nesting beyond this is refused, so a hostile input cannot overflow the stack.
const MAX_JSON_DEPTH: usize = 128;

struct JsonParser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> JsonParser<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.as_bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        self.skip_ws();
        if self.text.as_bytes().get(self.pos) == Some(&b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {:?}", b as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, String> {
        if depth > MAX_JSON_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.skip_ws();
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let kind = match bytes.get(self.pos) {
            None => return Err(self.err("unexpected end")),
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if bytes.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        let key = self.value(depth + 1)?;
                        let name = key
                            .string()
                            .ok_or_else(|| format!("object key {} is not a string", key.raw))?;
                        self.expect(b':')?;
                        members.push((name, self.value(depth + 1)?));
                        self.skip_ws();
                        match bytes.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.err("expected ',' or '}'")),
                        }
                    }
                }
                JsonKind::Object(members)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if bytes.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.skip_ws();
                        match bytes.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.err("expected ',' or ']'")),
                        }
                    }
                }
                JsonKind::Array(items)
            }
            Some(b'"') => {
                self.pos += 1;
                loop {
                    match bytes.get(self.pos) {
                        None => return Err(self.err("unterminated string")),
                        Some(b'\\') => self.pos += 2,
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                // serde_json checks and unescapes the string when it is read.
                serde_json::from_str::<String>(&self.text[start..self.pos])
                    .map_err(|e| self.err(&e.to_string()))?;
                JsonKind::String
            }
            Some(b'-' | b'0'..=b'9') => {
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = bytes.get(self.pos)
                {
                    self.pos += 1;
                }
                // serde_json checks the number's grammar; its value is read later, exactly.
                serde_json::from_str::<serde::de::IgnoredAny>(&self.text[start..self.pos])
                    .map_err(|e| self.err(&format!("bad number: {e}")))?;
                JsonKind::Number
            }
            Some(_) => {
                let rest = &self.text[self.pos..];
                let (kind, len) = if rest.starts_with("null") {
                    (JsonKind::Null, 4)
                } else if rest.starts_with("true") {
                    (JsonKind::Bool(true), 4)
                } else if rest.starts_with("false") {
                    (JsonKind::Bool(false), 5)
                } else {
                    return Err(self.err("unexpected character"));
                };
                self.pos += len;
                kind
            }
        };
        Ok(Json {
            raw: &self.text[start..self.pos],
            kind,
        })
    }
}

/// The API reference root: `MEWS_REFERENCE_DIR`, else `../shared/reference/mews-connector-api`
/// beside the repository (where CI lays it out).
pub fn reference_dir() -> std::path::PathBuf {
    match std::env::var_os("MEWS_REFERENCE_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/mews-connector-api"),
    }
}

/// Every Parquet file under `dir`, recursively and in name order, following links (so a
/// table's `<out>/<table>` link leads to its current version).
pub fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Fails with the exit status, stdout and stderr unless the command succeeded.
pub fn assert_ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// All rows of the table `<out>/<table>` as one batch, ordered by source file and line.
pub fn read_table(out: &std::path::Path, table: &str) -> RecordBatch {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let schema = mews_etl::schema::find(table).unwrap().arrow_schema();
    let mut batches = Vec::new();
    for f in parquet_files(&out.join(table)) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        batches.extend(reader.map(Result::unwrap));
    }
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let files = all.column_by_name("_file").unwrap().as_string::<i32>();
    let lines = all
        .column_by_name(LINEAGE_LINE)
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut order: Vec<usize> = (0..all.num_rows()).collect();
    order.sort_by_key(|&i| (files.value(i).to_owned(), lines.value(i)));
    let idx = arrow::array::UInt32Array::from_iter_values(order.iter().map(|&i| i as u32));
    arrow::compute::take_record_batch(&all, &idx).unwrap()
}

/// Whether `python3` can import DuckDB, the independent reader of the output. CI installs
/// it (`.ci/run` sets `MEWS_ETL_REQUIRE_DUCKDB`, and then its absence fails the test);
/// elsewhere the caller skips its check and this says why.
pub fn duckdb_available() -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("MEWS_ETL_REQUIRE_DUCKDB").is_none(),
        "MEWS_ETL_REQUIRE_DUCKDB is set but python3 cannot import duckdb"
    );
    eprintln!("skipped a DuckDB check: python3 cannot import duckdb (pip install duckdb)");
    false
}

/// `name` in the loads directory of the version `<out>/<table>` shows: the `loads/` beside
/// the `data/` that the table link points at (the kernel resolves `..` after following the
/// link, so the path holds whatever version is visible when it is opened).
pub fn in_loads(out: &std::path::Path, table: &str, name: &str) -> std::path::PathBuf {
    out.join(table).join("..").join("loads").join(name)
}
