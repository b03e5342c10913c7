//! Typed decoding: one JSON line → one row of Arrow columns, following the entity schema.
//!
//! There is no I/O here: [`RecordDecoder`] takes line bytes and returns record batches,
//! rejected lines and counts, so it runs on a blocking thread fed by a bounded channel and
//! is tested with plain `#[test]`s. One file per column kind, behind one trait
//! ([`column::ColumnDecoder`]) and one factory ([`column::make_decoder`]).
//!
//! A line is rejected only when it cannot be represented: invalid UTF-8 or JSON, not an
//! object, a value the column's type cannot hold, a property given twice, or no `Id`.
//! Drift — unknown properties, unknown enum values, missing required properties — is kept
//! and counted.

mod boolean;
pub mod column;
mod decimal;
mod double;
mod fault;
pub mod identify;
mod integer;
pub mod json;
mod list;
mod object;
mod string;
mod timestamp;
mod values;

pub use decimal::parse_decimal;
pub use fault::Fault;
pub use integer::parse_integer;
pub use timestamp::{parse_date_days, parse_timestamp_micros};

use crate::framing::LineBatch;
use crate::manifest::LoadCounts;
use crate::schema::EntitySchema;
use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::SchemaRef;
use column::{ColumnDecoder, DriftKind, RowContext};
use json::Cursor;
use object::ObjectDecoder;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest prefix of an unrepresentable line kept in its rejection when the line is too
/// long to keep whole (only over-long lines are cut; others are kept in full).
pub const REJECT_PREFIX_BYTES: usize = 1024;

/// The original content of a rejected line, as far as it can be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectedContent {
    /// The whole line, valid UTF-8.
    Text(String),
    /// The whole line, which is not valid UTF-8.
    Bytes(Vec<u8>),
    /// A line over the length limit: its length and first bytes (it was never buffered whole).
    Truncated {
        /// Length of the whole line in bytes.
        length: u64,
        /// Its first [`REJECT_PREFIX_BYTES`] bytes.
        prefix: Vec<u8>,
    },
}

/// A line that cannot be represented, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 1-based line number in the (decompressed) source.
    pub line: u64,
    /// The property concerned, as a dotted path, when there is one.
    pub property: Option<String>,
    /// Why the line was rejected.
    pub reason: String,
    /// The line itself.
    pub content: RejectedContent,
}

/// What one call to [`RecordDecoder::flush`] produced.
#[derive(Debug)]
pub struct DecodedBatch {
    /// The accepted rows, in the entity's Arrow schema (properties then lineage columns).
    pub batch: RecordBatch,
    /// The rejected lines, in line order.
    pub rejects: Vec<Rejection>,
    /// Counts for the lines consumed since the previous flush.
    pub counts: LoadCounts,
}

/// Decodes the lines of one entity type into record batches.
pub struct RecordDecoder {
    schema: SchemaRef,
    root: ObjectDecoder,
    ctx: RowContext,
    extra: StringBuilder,
    lines: Vec<i64>,
    rejects: Vec<Rejection>,
    counts: LoadCounts,
    drift: HashMap<(DriftKind, Arc<str>), u64>,
    export_id: ConstantColumn,
    file: ConstantColumn,
}

/// A lineage column holding one value in every row, built once for the largest batch seen
/// and handed out as zero-copy slices, rather than copying the value into every batch.
struct ConstantColumn {
    value: Arc<str>,
    array: StringArray,
}

impl ConstantColumn {
    fn new(value: &str) -> Self {
        ConstantColumn {
            value: value.into(),
            array: StringArray::from(Vec::<&str>::new()),
        }
    }

    /// The column for a batch of `rows` rows.
    fn column(&mut self, rows: usize) -> ArrayRef {
        if self.array.len() < rows {
            let n = values::next_capacity(rows);
            self.array = StringArray::from_iter_values(std::iter::repeat_n(&*self.value, n));
        }
        Arc::new(self.array.slice(0, rows))
    }
}

impl RecordDecoder {
    /// A decoder for `schema`, stamping rows with `export_id` and source `file`.
    pub fn new(schema: &EntitySchema, export_id: &str, file: &str) -> Self {
        RecordDecoder {
            schema: schema.arrow_schema(),
            root: ObjectDecoder::new(&schema.properties, "").with_key(crate::schema::ROW_KEY),
            ctx: RowContext::default(),
            extra: StringBuilder::new(),
            lines: Vec::new(),
            rejects: Vec::new(),
            counts: LoadCounts::default(),
            drift: HashMap::new(),
            export_id: ConstantColumn::new(export_id),
            file: ConstantColumn::new(file),
        }
    }

    /// The Arrow schema of the batches this decoder produces.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows decoded and not yet flushed.
    pub fn buffered_rows(&self) -> usize {
        self.lines.len()
    }

    /// Decodes one non-blank line numbered `number`; an unrepresentable line is recorded
    /// as a rejection (and counted), never half-written.
    pub fn decode_line(&mut self, number: u64, line: &[u8]) {
        self.counts.lines_read += 1;
        match self.try_decode(line) {
            Ok(()) => {
                self.lines.push(number as i64);
                self.counts.rows_written += 1;
                for d in self.ctx.drift.drain(..) {
                    *self.drift.entry((d.kind, d.key)).or_default() += 1;
                }
                if self.ctx.extra.is_empty() {
                    self.extra.append_null();
                } else {
                    self.extra.append_value(format!("{{{}}}", self.ctx.extra));
                }
            }
            Err(fault) => {
                let content = match std::str::from_utf8(line) {
                    Ok(text) => RejectedContent::Text(text.to_owned()),
                    Err(_) => RejectedContent::Bytes(line.to_vec()),
                };
                self.reject(number, fault.property(), fault.to_string(), content);
            }
        }
    }

    fn reject(
        &mut self,
        line: u64,
        property: Option<String>,
        reason: String,
        content: RejectedContent,
    ) {
        self.counts.rejected += 1;
        self.rejects.push(Rejection {
            line,
            property,
            reason,
            content,
        });
    }

    fn try_decode(&mut self, line: &[u8]) -> Result<(), Fault> {
        self.ctx.clear();
        let mut cur = Cursor::from_bytes(line);
        let rows = self.root.len();
        let result = self.root.decode(&mut cur, &mut self.ctx).and_then(|()| {
            if cur.is_at_end() {
                Ok(())
            } else {
                Err(Fault::syntax(
                    cur.offset(),
                    "unexpected data after the object",
                ))
            }
        });
        if result.is_err() {
            self.root.truncate(rows);
        }
        result.map_err(|f| {
            // The cursor checks UTF-8 only where it reads text, so a line that is not UTF-8
            // may fail for another reason first; it is reported as not UTF-8, as a whole.
            if let Err(e) = std::str::from_utf8(line) {
                Fault::syntax(e.valid_up_to(), "invalid UTF-8")
            } else if f.property().is_none()
                && f.offset() == 0
                && f.message().starts_with("expected an object")
            {
                Fault::syntax(0, format!("line is not a JSON object ({})", f.message()))
            } else {
                f
            }
        })
    }

    /// Decodes every line of a framed batch: blank lines are counted, over-long lines
    /// rejected without their content, other lines decoded.
    pub fn decode_batch(&mut self, batch: &LineBatch) {
        self.counts.lines_read += batch.blank_lines;
        self.counts.blank_lines += batch.blank_lines;
        for o in &batch.oversized {
            self.counts.lines_read += 1;
            let mut prefix = o.prefix.clone();
            prefix.truncate(REJECT_PREFIX_BYTES);
            self.reject(
                o.number,
                None,
                format!("line is {} bytes long, over the limit", o.length),
                RejectedContent::Truncated {
                    length: o.length,
                    prefix,
                },
            );
        }
        for l in &batch.lines {
            self.decode_line(l.number, batch.line(l));
        }
    }

    /// Takes everything decoded since the last flush.
    pub fn flush(&mut self) -> DecodedBatch {
        let rows = self.lines.len();
        let mut columns = self.root.finish_columns();
        columns.push(Arc::new(self.extra.finish()) as ArrayRef);
        let lines = std::mem::replace(
            &mut self.lines,
            Vec::with_capacity(values::next_capacity(rows)),
        );
        columns.push(self.export_id.column(rows));
        columns.push(self.file.column(rows));
        columns.push(Arc::new(Int64Array::from(lines)));
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .expect("decoders build columns of the schema's types and equal length");
        let mut counts = std::mem::take(&mut self.counts);
        // In key order, not the map's (seeded at random): past the bound on drift keys,
        // which are named and which are counted under `(others)` must not vary by run.
        let mut drift: Vec<_> = self.drift.drain().collect();
        drift.sort_unstable_by(|((_, a), _), ((_, b), _)| a.cmp(b));
        for ((kind, key), n) in drift {
            let map = match kind {
                DriftKind::UnknownProperty => &mut counts.unknown_properties,
                DriftKind::MissingRequired => &mut counts.missing_required,
                DriftKind::UnknownEnumValue => &mut counts.unknown_enum_values,
            };
            crate::manifest::count_drift(map, &key, n);
        }
        // Rejections are recorded in line order within each kind; merge them.
        let mut rejects = std::mem::take(&mut self.rejects);
        rejects.sort_by_key(|r| r.line);
        DecodedBatch {
            batch,
            rejects,
            counts,
        }
    }
}

#[cfg(test)]
mod tests;
