//! The column decoder trait, the per-row context, and the factory: the only `match` on
//! property types in the decoding stage.

use super::fault::Fault;
use super::json::Cursor;
use crate::schema::DataType;
use arrow::array::ArrayRef;
use std::sync::Arc;

/// Decodes JSON values of one property type into one Arrow column.
///
/// A decoder never sees `null`: the enclosing object or list handles it with
/// [`ColumnDecoder::append_null`], because only the enclosing object knows whether the
/// property was required. Every decoder can be truncated, so a line that turns out to be
/// unrepresentable half-way through is removed from every column without a trace.
pub trait ColumnDecoder: Send {
    /// Decodes the value at the cursor (positioned at its first byte) and appends it.
    fn decode(&mut self, cur: &mut Cursor<'_>, ctx: &mut RowContext) -> Result<(), Fault>;
    /// Appends a null.
    fn append_null(&mut self);
    /// Number of values appended since the last [`ColumnDecoder::finish`].
    fn len(&self) -> usize;
    /// Whether nothing was appended since the last [`ColumnDecoder::finish`].
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops values so that `len` remain (rolls back a rejected line).
    fn truncate(&mut self, len: usize);
    /// Takes the values appended so far as an Arrow array, leaving the decoder empty.
    fn finish(&mut self) -> ArrayRef;
}

/// A kind of drift: data that differs from the reference but is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// A property the schema does not know; its value goes to `_extra`.
    UnknownProperty,
    /// A documented-required property that is missing or null.
    MissingRequired,
    /// An enum value the reference does not list.
    UnknownEnumValue,
}

/// One drift observation in the row being decoded; committed to the totals only if the
/// row is accepted, so that counts match the rows written.
#[derive(Debug, Clone)]
pub struct Drift {
    /// What kind of drift.
    pub kind: DriftKind,
    /// Property path (`UnitAmount.TaxValues[].Code`), with `=value` for enum values.
    pub key: Arc<str>,
}

/// Per-row state shared by the decoders of one line.
#[derive(Debug, Default)]
pub struct RowContext {
    /// Drift seen in this row.
    pub drift: Vec<Drift>,
    /// Unknown properties of this row, as the members of a JSON object (no braces).
    pub extra: String,
    /// Indices of the array elements being decoded, outermost first, to name unknown
    /// properties inside arrays unambiguously (`Amount.TaxValues[1].Foo`).
    pub list_indices: Vec<usize>,
    /// The names in `extra` so far, so that none is given twice.
    extra_names: Vec<String>,
}

impl RowContext {
    /// Forgets the previous row.
    pub fn clear(&mut self) {
        self.drift.clear();
        self.extra.clear();
        self.list_indices.clear();
        self.extra_names.clear();
    }

    /// Records an unknown property at `path_template` (with `[]` per enclosing array)
    /// and keeps its raw JSON value for `_extra`. Returns `false`, recording nothing, if
    /// `_extra` already has that name:
    /// the property was given twice, or its path is another property's name (`"A.B"` at
    /// the top and `B` inside `A`), and a reader of `_extra` would keep only one value.
    pub fn unknown_property(&mut self, path_template: &str, name: &str, raw: &str) -> bool {
        let template = join_path(path_template, name);
        let mut concrete = String::with_capacity(template.len() + 4);
        let mut indices = self.list_indices.iter();
        let mut rest = template.as_str();
        while let Some(at) = rest.find("[]") {
            concrete.push_str(&rest[..at]);
            match indices.next() {
                Some(i) => concrete.push_str(&format!("[{i}]")),
                None => concrete.push_str("[]"),
            }
            rest = &rest[at + 2..];
        }
        concrete.push_str(rest);
        if self.extra_names.contains(&concrete) {
            return false;
        }
        if !self.extra.is_empty() {
            self.extra.push(',');
        }
        // serde_json escapes the key exactly as JSON requires.
        self.extra
            .push_str(&serde_json::to_string(&concrete).unwrap_or_else(|_| "\"?\"".into()));
        self.extra.push(':');
        self.extra.push_str(raw);
        self.drift.push(Drift {
            kind: DriftKind::UnknownProperty,
            key: template.into(),
        });
        self.extra_names.push(concrete);
        true
    }
}

/// `parent.child`, or `child` at the top level.
pub fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// Builds the decoder for a property type; `path` is the property's path template, used
/// to name drift.
pub fn make_decoder(data_type: &DataType, path: &str) -> Box<dyn ColumnDecoder> {
    use super::{boolean, decimal, double, integer, list, object, string, timestamp};
    match data_type {
        DataType::String => Box::new(string::StringDecoder::new(string::StringKind::Plain)),
        DataType::Enum(e) => Box::new(string::StringDecoder::new(string::StringKind::Enum {
            values: e.clone(),
            path: path.into(),
            index: string::EnumIndex::new(&e.values),
        })),
        DataType::Json => Box::new(string::StringDecoder::new(string::StringKind::Json)),
        DataType::Integer => Box::new(integer::IntegerDecoder::default()),
        DataType::Decimal => Box::new(decimal::DecimalDecoder::default()),
        DataType::Double => Box::new(double::DoubleDecoder::default()),
        DataType::Boolean => Box::new(boolean::BooleanDecoder::default()),
        DataType::Timestamp => Box::new(timestamp::TimestampDecoder::default()),
        DataType::Date => Box::new(timestamp::DateDecoder::default()),
        DataType::Object(props, _) => Box::new(object::ObjectDecoder::new(props, path)),
        DataType::Array(item) => Box::new(list::ListDecoder::new(item, path)),
    }
}
