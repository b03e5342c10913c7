//! Partition values of each row of a batch, and their escaping into directory names.
//!
//! A row's partition is a list of `(key, value)` pairs, one per [`PartitionField`]; on disk
//! it becomes nested Hive-style directories `key=value/key=value/`, which DuckDB, Spark,
//! pyarrow and Trino read back as columns.
//!
//! Values come straight from the data, so the directory name must never let a value leave
//! the table directory, form an invalid or special file name, or make two different values
//! share a directory. [`escape_value`] guarantees that; its rules are listed there.

use super::SinkError;
use crate::calendar::{
    civil_from_days, format_date, format_utc_seconds, format_year, SECONDS_PER_DAY,
};
use crate::schema::{Granularity, PartitionField, PartitionSpec};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType as ArrowType, Date32Type, Int64Type, TimeUnit};
use arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Directory value of a null partition value: the name Hive, Spark, DuckDB and Trino all
/// read back as SQL `NULL`.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Directory value of the empty string.
///
/// Hive and Spark write `""` as [`HIVE_DEFAULT_PARTITION`], which merges empty strings with
/// nulls; a `key=` directory is rejected or read as null by several readers. A separate
/// sentinel keeps the two apart on disk (readers see the literal sentinel text, and the
/// manifest keeps the raw `""`). It cannot collide with data: a data value starting with
/// `__` has its first `_` escaped, so no escaped value starts with `__`.
pub const EMPTY_STRING_PARTITION: &str = "__EMPTY_STRING__";

/// Longest escaped value kept whole, in bytes. Longer ones are cut to a prefix plus a hash:
/// file-system components are limited to 255 bytes, and `key=` plus the value must fit.
pub const MAX_VALUE_BYTES: usize = 200;

/// Hex digits of the SHA-256 of the raw value appended to a truncated value: 64 bits, so
/// distinct long values sharing a prefix get distinct directories.
const TRUNCATION_HASH_HEX: usize = 16;

/// Separates a truncated prefix from its hash. `~` is always escaped in data values, so
/// only truncated names contain it and a truncated name never equals a whole one.
const TRUNCATION_MARK: char = '~';

/// Windows device names, which Windows refuses as a file name even with an extension.
const WINDOWS_RESERVED: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// The partition of a group of rows: one `(key name, raw value)` per partition field, in the
/// spec's order; `None` is null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// `(key, value)` pairs, outermost directory first.
    pub values: Vec<(String, Option<String>)>,
}

impl PartitionKey {
    /// The relative directory of this partition, `/`-separated and escaped
    /// (`ConsumedUtc_month=2023-03/AccountType=Guest`); empty when unpartitioned.
    pub fn relative_dir(&self) -> String {
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    None => HIVE_DEFAULT_PARTITION.to_owned(),
                    Some(v) => escape_value(v),
                };
                format!("{}={value}", escape_value(key))
            })
            .collect();
        parts.join("/")
    }

    /// The raw values for the manifest; a null is recorded as [`HIVE_DEFAULT_PARTITION`],
    /// the same spelling readers see.
    pub fn manifest_values(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone()
                        .unwrap_or_else(|| HIVE_DEFAULT_PARTITION.to_owned()),
                )
            })
            .collect()
    }
}

/// The partition of every row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPartitions {
    /// The distinct partitions present, in order of first appearance.
    pub keys: Vec<PartitionKey>,
    /// For each row, the index of its partition in `keys`.
    pub rows: Vec<u32>,
}

/// Computes the partition of every row of `batch` under `spec`.
///
/// Each field is first dictionary-encoded (one string per distinct value, not per row), then
/// the per-field codes are combined, so the cost per row is a hash lookup per field.
/// Time buckets are computed in UTC.
pub fn partition_rows(
    batch: &RecordBatch,
    spec: &PartitionSpec,
) -> Result<RowPartitions, SinkError> {
    let n = batch.num_rows();
    let mut rows = vec![0u32; n];
    // For each combined code: the per-field codes it stands for.
    let mut combos: Vec<Vec<u32>> = vec![Vec::new()];
    let mut field_values: Vec<Vec<Option<String>>> = Vec::with_capacity(spec.fields.len());
    for field in &spec.fields {
        let column =
            batch
                .column_by_name(&field.column)
                .ok_or_else(|| SinkError::MissingColumn {
                    column: field.column.clone(),
                })?;
        let codes = encode_field(field, column)?;
        let mut lookup: HashMap<(u32, u32), u32> = HashMap::new();
        let mut next: Vec<Vec<u32>> = Vec::new();
        for (row, code) in rows.iter_mut().zip(&codes.codes) {
            *row = *lookup.entry((*row, *code)).or_insert_with(|| {
                let mut combo = combos[*row as usize].clone();
                combo.push(*code);
                next.push(combo);
                (next.len() - 1) as u32
            });
        }
        combos = next;
        field_values.push(codes.values);
    }
    if n == 0 {
        combos.clear();
    }
    let keys = combos
        .into_iter()
        .map(|combo| PartitionKey {
            values: spec
                .fields
                .iter()
                .zip(combo)
                .zip(&field_values)
                .map(|((f, code), values)| (f.key_name(), values[code as usize].clone()))
                .collect(),
        })
        .collect();
    Ok(RowPartitions { keys, rows })
}

/// One field dictionary-encoded: a code per row and the raw value of each code.
struct FieldCodes {
    codes: Vec<u32>,
    values: Vec<Option<String>>,
}

fn encode_field(field: &PartitionField, column: &ArrayRef) -> Result<FieldCodes, SinkError> {
    let unsupported = |detail: &str| SinkError::UnsupportedType {
        column: field.column.clone(),
        data_type: column.data_type().to_string(),
        detail: detail.to_owned(),
    };
    match (column.data_type(), field.granularity) {
        (ArrowType::Utf8, None) => Ok(encode_strings(column.as_string::<i32>().iter())),
        (ArrowType::LargeUtf8, None) => Ok(encode_strings(column.as_string::<i64>().iter())),
        (ArrowType::Utf8View, None) => Ok(encode_strings(column.as_string_view().iter())),
        (ArrowType::Int64, None) => {
            Ok(encode_i64(column.as_primitive::<Int64Type>().iter(), |v| {
                v.to_string()
            }))
        }
        (ArrowType::Boolean, None) => Ok(encode_i64(
            column.as_boolean().iter().map(|b| b.map(i64::from)),
            |v| (v != 0).to_string(),
        )),
        (ArrowType::Date32, g) => {
            let days = column
                .as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(i64::from));
            Ok(encode_days(days, g))
        }
        (ArrowType::Timestamp(unit, _), g) => {
            let unit = *unit;
            let per_second = units_per_second(unit);
            let values = timestamp_values(column, unit);
            match g {
                None => Ok(encode_i64(values.into_iter(), |v| {
                    format_timestamp(v, per_second)
                })),
                Some(g) => {
                    let days = values
                        .into_iter()
                        .map(|v| v.map(|v| v.div_euclid(per_second * SECONDS_PER_DAY)));
                    Ok(encode_days(days, Some(g)))
                }
            }
        }
        (_, Some(g)) => Err(unsupported(&format!(
            " (:{} needs a date or timestamp)",
            g.suffix()
        ))),
        _ => Err(unsupported("")),
    }
}

fn units_per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn timestamp_values(column: &ArrayRef, unit: TimeUnit) -> Vec<Option<i64>> {
    use arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => column
            .as_primitive::<TimestampSecondType>()
            .iter()
            .collect(),
        TimeUnit::Millisecond => column
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect(),
        TimeUnit::Microsecond => column
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        TimeUnit::Nanosecond => column
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect(),
    }
}

fn encode_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> FieldCodes {
    let mut lookup: HashMap<Option<&str>, u32> = HashMap::new();
    let mut out = FieldCodes {
        codes: Vec::new(),
        values: Vec::new(),
    };
    for v in values {
        let code = *lookup.entry(v).or_insert_with(|| {
            out.values.push(v.map(str::to_owned));
            (out.values.len() - 1) as u32
        });
        out.codes.push(code);
    }
    out
}

fn encode_i64(
    values: impl Iterator<Item = Option<i64>>,
    format: impl Fn(i64) -> String,
) -> FieldCodes {
    let mut lookup: HashMap<Option<i64>, u32> = HashMap::new();
    let mut out = FieldCodes {
        codes: Vec::new(),
        values: Vec::new(),
    };
    for v in values {
        let code = *lookup.entry(v).or_insert_with(|| {
            out.values.push(v.map(&format));
            (out.values.len() - 1) as u32
        });
        out.codes.push(code);
    }
    out
}

/// Days since 1970-01-01 bucketed by `granularity` (`None`: the day itself).
fn encode_days(
    days: impl Iterator<Item = Option<i64>>,
    granularity: Option<Granularity>,
) -> FieldCodes {
    let granularity = granularity.unwrap_or(Granularity::Day);
    // Bucket to a number first so only distinct buckets are formatted.
    let bucket = days.map(|d| {
        d.map(|d| {
            let (y, m, _) = civil_from_days(d);
            match granularity {
                Granularity::Year => y,
                Granularity::Month => y * 12 + i64::from(m) - 1,
                Granularity::Day => d,
            }
        })
    });
    encode_i64(bucket, move |b| match granularity {
        Granularity::Year => format_year(b),
        Granularity::Month => format!(
            "{}-{:02}",
            format_year(b.div_euclid(12)),
            b.rem_euclid(12) + 1
        ),
        Granularity::Day => format_date(b),
    })
}

/// RFC 3339 UTC text of a timestamp: `2023-03-31T12:34:56Z`, with as many fractional digits
/// as the unit has when the fraction is not zero.
fn format_timestamp(value: i64, per_second: i64) -> String {
    let seconds = value.div_euclid(per_second);
    let fraction = value.rem_euclid(per_second);
    let mut out = format_utc_seconds(seconds);
    out.pop(); // the `Z`, re-added after the fraction
    if fraction != 0 {
        let digits = per_second.ilog10() as usize;
        let _ = write!(out, ".{fraction:0digits$}");
    }
    out.push('Z');
    out
}

/// Escapes a raw partition value (or key) into a safe directory-name part.
///
/// Rules, each for a reason:
/// - Hive's escape set — `" # % ' * / : = ? [ \ ] ^ { }`, control characters (NUL
///   included) and DEL — is written as `%XX`, so Hive, Spark and DuckDB decode the name
///   back to the value, and `/`, `\` and `=` cannot split or fake a directory.
/// - Windows' forbidden `< > |` and our truncation mark `~` are escaped too.
/// - Non-printable Unicode (C1 controls, zero-width, bidirectional controls, line and
///   paragraph separators, BOM, noncharacters) is escaped byte by byte as UTF-8 `%XX`, so a
///   listing cannot be spoofed; other Unicode stays as UTF-8.
/// - A leading or trailing space or dot is escaped: Windows drops trailing ones, and this
///   also turns `.` and `..` into `%2E` and `%2E%2E`.
/// - Windows device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9`, any
///   case, with or without extension) get their first letter escaped. Today the value is
///   always behind `key=`, so this is defence in depth should a value ever name a file.
/// - A value starting with `__` gets its first `_` escaped, so no data value can equal
///   [`HIVE_DEFAULT_PARTITION`] (null) or [`EMPTY_STRING_PARTITION`].
/// - The empty string becomes [`EMPTY_STRING_PARTITION`].
/// - A result longer than [`MAX_VALUE_BYTES`] is cut at a character and escape boundary and
///   followed by `~` and 16 hex digits of the SHA-256 of the raw value.
///
/// Distinct values give distinct names (for truncated names, up to a 64-bit hash collision).
pub fn escape_value(raw: &str) -> String {
    if raw.is_empty() {
        return EMPTY_STRING_PARTITION.to_owned();
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, c) in raw.char_indices() {
        let is_edge = i == 0 || i + c.len_utf8() == raw.len();
        let escape = must_escape(c)
            || (is_edge && (c == ' ' || c == '.'))
            || (i == 0 && c == '_' && raw.starts_with("__"))
            || (i == 0 && is_windows_reserved(raw));
        if escape {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if out.len() > MAX_VALUE_BYTES {
        let mut cut = MAX_VALUE_BYTES - 1 - TRUNCATION_HASH_HEX;
        let bytes = out.as_bytes();
        while !out.is_char_boundary(cut) || bytes[cut - 1] == b'%' || bytes[cut - 2] == b'%' {
            cut -= 1;
        }
        out.truncate(cut);
        let hash = Sha256::digest(raw.as_bytes());
        out.push(TRUNCATION_MARK);
        for b in &hash[..TRUNCATION_HASH_HEX / 2] {
            let _ = write!(out, "{b:02x}");
        }
    }
    out
}

fn must_escape(c: char) -> bool {
    matches!(
        c,
        '"' | '#'
            | '%'
            | '\''
            | '*'
            | '/'
            | ':'
            | '='
            | '?'
            | '['
            | '\\'
            | ']'
            | '^'
            | '{'
            | '}'
            | '<'
            | '>'
            | '|'
    ) || c == TRUNCATION_MARK
        || c.is_control()
        || is_invisible(c)
}

/// Unicode format and separator characters that render as nothing (or reorder text).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{FFFE}'
            | '\u{FFFF}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

fn is_windows_reserved(raw: &str) -> bool {
    // Windows ignores everything from the first dot, and trailing spaces before it.
    let base = raw.split('.').next().unwrap_or(raw).trim_end_matches(' ');
    if WINDOWS_RESERVED
        .iter()
        .any(|r| base.eq_ignore_ascii_case(r))
    {
        return true;
    }
    let mut chars = base.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: String = chars.collect();
    (prefix.eq_ignore_ascii_case("COM") || prefix.eq_ignore_ascii_case("LPT"))
        && matches!(
            rest.as_str(),
            "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DataType;
    use arrow::array::{
        BooleanArray, Date32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn field(
        column: &str,
        data_type: DataType,
        granularity: Option<Granularity>,
    ) -> PartitionField {
        PartitionField {
            column: column.into(),
            column_index: 0,
            data_type,
            granularity,
        }
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn dirs(parts: &RowPartitions) -> Vec<String> {
        parts
            .rows
            .iter()
            .map(|&r| parts.keys[r as usize].relative_dir())
            .collect()
    }

    const MICROS_2023_03_31_235959: i64 = 1_680_307_199_000_000;

    #[test]
    fn timestamps_bucket_in_utc() {
        let ts = TimestampMicrosecondArray::from(vec![
            Some(MICROS_2023_03_31_235959),
            Some(MICROS_2023_03_31_235959 + 1_000_000),
            None,
            Some(-1),
        ])
        .with_timezone("UTC");
        let b = batch(vec![("ConsumedUtc", Arc::new(ts))]);
        for (g, expected) in [
            (
                Granularity::Year,
                [
                    "ConsumedUtc_year=2023",
                    "ConsumedUtc_year=2023",
                    "ConsumedUtc_year=__HIVE_DEFAULT_PARTITION__",
                    "ConsumedUtc_year=1969",
                ],
            ),
            (
                Granularity::Month,
                [
                    "ConsumedUtc_month=2023-03",
                    "ConsumedUtc_month=2023-04",
                    "ConsumedUtc_month=__HIVE_DEFAULT_PARTITION__",
                    "ConsumedUtc_month=1969-12",
                ],
            ),
            (
                Granularity::Day,
                [
                    "ConsumedUtc_day=2023-03-31",
                    "ConsumedUtc_day=2023-04-01",
                    "ConsumedUtc_day=__HIVE_DEFAULT_PARTITION__",
                    "ConsumedUtc_day=1969-12-31",
                ],
            ),
        ] {
            let spec = PartitionSpec {
                fields: vec![field("ConsumedUtc", DataType::Timestamp, Some(g))],
            };
            let parts = partition_rows(&b, &spec).unwrap();
            assert_eq!(dirs(&parts), expected);
        }
    }

    #[test]
    fn identity_values_and_combined_keys() {
        let b = batch(vec![
            (
                "Kind",
                Arc::new(StringArray::from(vec![
                    Some("a/b"),
                    Some("a/b"),
                    None,
                    Some(""),
                ])) as ArrayRef,
            ),
            (
                "N",
                Arc::new(Int64Array::from(vec![Some(-5), Some(7), Some(-5), None])),
            ),
            (
                "B",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(true),
                    Some(false),
                    None,
                ])),
            ),
            (
                "D",
                Arc::new(Date32Array::from(vec![
                    Some(19_447),
                    Some(0),
                    None,
                    Some(-1),
                ])),
            ),
            (
                "T",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_500_000), Some(0), Some(-1), None])
                        .with_timezone("UTC"),
                ),
            ),
        ]);
        let spec = PartitionSpec {
            fields: vec![
                field("Kind", DataType::String, None),
                field("N", DataType::Integer, None),
                field("B", DataType::Boolean, None),
                field("D", DataType::Date, None),
                field("T", DataType::Timestamp, None),
            ],
        };
        let parts = partition_rows(&b, &spec).unwrap();
        assert_eq!(parts.keys.len(), 4);
        assert_eq!(
            dirs(&parts),
            [
                "Kind_value=a%2Fb/N_value=-5/B_value=true/D_value=2023-03-31/T_value=1970-01-01T00%3A00%3A01.500000Z",
                "Kind_value=a%2Fb/N_value=7/B_value=true/D_value=1970-01-01/T_value=1970-01-01T00%3A00%3A00Z",
                "Kind_value=__HIVE_DEFAULT_PARTITION__/N_value=-5/B_value=false/D_value=__HIVE_DEFAULT_PARTITION__/T_value=1969-12-31T23%3A59%3A59.999999Z",
                "Kind_value=__EMPTY_STRING__/N_value=__HIVE_DEFAULT_PARTITION__/B_value=__HIVE_DEFAULT_PARTITION__/D_value=1969-12-31/T_value=__HIVE_DEFAULT_PARTITION__",
            ]
        );
        assert_eq!(
            parts.keys[0].values[0],
            ("Kind_value".to_owned(), Some("a/b".to_owned()))
        );
        assert_eq!(
            parts.keys[2].manifest_values()[0],
            ("Kind_value".to_owned(), HIVE_DEFAULT_PARTITION.to_owned())
        );
    }

    #[test]
    fn rows_group_by_first_appearance() {
        let b = batch(vec![(
            "K",
            Arc::new(StringArray::from(vec!["x", "y", "x", "z", "y"])) as ArrayRef,
        )]);
        let spec = PartitionSpec {
            fields: vec![field("K", DataType::String, None)],
        };
        let parts = partition_rows(&b, &spec).unwrap();
        assert_eq!(parts.rows, [0, 1, 0, 2, 1]);
        let unpartitioned = partition_rows(&b, &PartitionSpec::default()).unwrap();
        assert_eq!(unpartitioned.keys.len(), 1);
        assert_eq!(unpartitioned.keys[0].relative_dir(), "");
        assert_eq!(unpartitioned.rows, [0; 5]);
    }

    #[test]
    fn unsupported_types_are_named() {
        let b = batch(vec![(
            "K",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )]);
        let spec = PartitionSpec {
            fields: vec![field("K", DataType::String, Some(Granularity::Month))],
        };
        let err = partition_rows(&b, &spec).unwrap_err().to_string();
        assert!(err.contains("K") && err.contains(":month"), "{err}");
        let spec = PartitionSpec {
            fields: vec![field("Missing", DataType::String, None)],
        };
        assert!(matches!(
            partition_rows(&b, &spec),
            Err(SinkError::MissingColumn { .. })
        ));
    }

    /// The escaped value is a single, ordinary directory-name part.
    fn assert_safe(escaped: &str) {
        assert!(!escaped.is_empty());
        assert!(escaped.len() <= MAX_VALUE_BYTES, "{} bytes", escaped.len());
        assert!(escaped != "." && escaped != "..");
        assert!(
            !escaped.contains(['/', '\\', '\0', ':', '=']),
            "{escaped:?}"
        );
        assert!(!escaped.ends_with(['.', ' ']) && !escaped.starts_with(['.', ' ']));
        assert!(!escaped.chars().any(char::is_control));
    }

    #[test]
    fn hostile_values_are_escaped() {
        let cases = [
            ("../../x", "%2E.%2F..%2Fx"),
            ("/", "%2F"),
            ("\\", "%5C"),
            ("\0", "%00"),
            (".", "%2E"),
            ("..", "%2E%2E"),
            ("CON", "%43ON"),
            ("con.txt", "%63on.txt"),
            ("Lpt9", "%4Cpt9"),
            ("COM10", "COM10"),
            ("CONSOLE", "CONSOLE"),
            (" a b ", "%20a b%20"),
            ("a=b%c#d", "a%3Db%25c%23d"),
            ("x\u{202E}y", "x%E2%80%AEy"),
            ("__HIVE_DEFAULT_PARTITION__", "%5F_HIVE_DEFAULT_PARTITION__"),
            ("__EMPTY_STRING__", "%5F_EMPTY_STRING__"),
            ("_a", "_a"),
            ("a~b", "a%7Eb"),
            ("", EMPTY_STRING_PARTITION),
        ];
        for (raw, expected) in cases {
            let escaped = escape_value(raw);
            assert_eq!(escaped, expected, "{raw:?}");
            assert_safe(&escaped);
        }
        assert_ne!(escape_value(""), HIVE_DEFAULT_PARTITION);
        assert_ne!(escape_value(""), escape_value("\0"));
    }

    /// Undoes the `%XX` escapes: what Hive, Spark and DuckDB do when they read a directory
    /// name back as a value.
    fn unescape(name: &str) -> Option<String> {
        let bytes = name.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    #[test]
    fn windows_names_and_look_alike_separators_stay_one_plain_component() {
        let cases = [
            ("aux.txt", "%61ux.txt"),
            ("nul.tar.gz", "%6Eul.tar.gz"),
            ("COM1", "%43OM1"),
            ("com¹", "%63om¹"),
            ("CONIN$", "%43ONIN$"),
            ("CON ", "%43ON%20"),
            ("trailing.", "trailing%2E"),
            ("...", "%2E.%2E"),
            // Not separators on any file system: kept as the text they are.
            ("a\u{FF0F}b", "a\u{FF0F}b"),
            ("a\u{2215}b", "a\u{2215}b"),
            // Bidirectional override and zero-width space could disguise a listing.
            ("\u{202E}txt.exe", "%E2%80%AEtxt.exe"),
            ("a\u{200B}b", "a%E2%80%8Bb"),
            // A value that looks escaped is escaped again, so it cannot pose as `/`.
            ("%2F", "%252F"),
        ];
        for (raw, expected) in cases {
            let escaped = escape_value(raw);
            assert_eq!(escaped, expected, "{raw:?}");
            assert_safe(&escaped);
            assert_eq!(unescape(&escaped).as_deref(), Some(raw));
        }
    }

    #[test]
    fn unicode_normal_forms_stay_distinct() {
        // NFC and NFD spell the same text with different code points. The data keeps the
        // bytes it was given, so the directories do too: merging them would put two
        // different column values under one partition value.
        let nfc = escape_value("Caf\u{E9}");
        let nfd = escape_value("Cafe\u{301}");
        assert_ne!(nfc, nfd);
        assert_eq!(unescape(&nfd).as_deref(), Some("Cafe\u{301}"));
    }

    #[test]
    fn every_partition_key_and_value_fit_one_path_component() {
        // File systems refuse components over 255 bytes: `key=` plus the longest escaped
        // value must fit for every property a table could be partitioned by.
        for schema in crate::schema::all() {
            for p in schema.properties.iter() {
                let key = escape_value(&format!("{}_month", p.name));
                assert!(
                    key.len() + 1 + MAX_VALUE_BYTES <= 255,
                    "{}.{}",
                    schema.entity,
                    p.name
                );
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text built to hit the rules: separators, dots, spaces, `%`, `~`, `_`, Windows
        /// device names, controls, invisible and astral characters, and lengths around the
        /// truncation limit.
        fn hostile_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                4 => any::<char>().prop_map(String::from),
                1 => proptest::sample::select(vec![
                    "/", "\\", ".", "..", " ", "%", "%2F", "~", "__", "=", "\0", "CON", "nul",
                    "COM1", "é", "e\u{301}", "\u{202E}", "\u{FEFF}", "🏨", "\u{FF0F}",
                ])
                .prop_map(str::to_owned),
                1 => "[a-z]{1,80}",
            ];
            proptest::collection::vec(piece, 0..40).prop_map(|parts| parts.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Whatever the value, its directory name is one safe path component.
            #[test]
            fn escaped_value_is_one_safe_component(raw in hostile_text()) {
                let escaped = escape_value(&raw);
                assert_safe(&escaped);
            }

            /// Distinct values get distinct names: a whole name unescapes to its value, and
            /// only truncated names (which carry a hash of the value) contain `~`.
            #[test]
            fn escaping_is_injective(
                prefix in hostile_text(),
                a in hostile_text(),
                b in hostile_text(),
            ) {
                let (raw_a, raw_b) = (prefix.clone() + &a, prefix + &b);
                let (ea, eb) = (escape_value(&raw_a), escape_value(&raw_b));
                prop_assert_eq!(raw_a == raw_b, ea == eb, "{:?} {:?}", ea, eb);
                for (raw, escaped) in [(&raw_a, &ea), (&raw_b, &eb)] {
                    if escaped.contains(TRUNCATION_MARK) {
                        prop_assert!(escaped.len() <= MAX_VALUE_BYTES);
                    } else if raw.is_empty() {
                        prop_assert_eq!(escaped.as_str(), EMPTY_STRING_PARTITION);
                    } else {
                        let back = unescape(escaped);
                        prop_assert_eq!(back.as_ref(), Some(raw));
                        prop_assert!(!escaped.starts_with("__"));
                    }
                }
            }
        }
    }

    #[test]
    fn unicode_stays_utf8() {
        assert_eq!(escape_value("Zürich 東京 🏨"), "Zürich 東京 🏨");
    }

    #[test]
    fn long_values_are_truncated_distinctly() {
        let a = "é".repeat(150) + "a";
        let b = "é".repeat(150) + "b";
        let (ea, eb) = (escape_value(&a), escape_value(&b));
        assert_ne!(ea, eb);
        assert_safe(&ea);
        assert!(ea.starts_with("éé") && ea.contains('~'));
        // Escapes are never cut in half.
        let slashes = escape_value(&"/".repeat(300));
        assert_safe(&slashes);
        let prefix = slashes.split('~').next().unwrap();
        assert!(prefix.len().is_multiple_of(3) && prefix.chars().all(|c| "%2F".contains(c)));
        // A value just at the limit is kept whole.
        assert_eq!(
            escape_value(&"x".repeat(MAX_VALUE_BYTES)),
            "x".repeat(MAX_VALUE_BYTES)
        );
        assert_ne!(
            escape_value(&"x".repeat(MAX_VALUE_BYTES + 1)),
            "x".repeat(MAX_VALUE_BYTES + 1)
        );
    }
}
