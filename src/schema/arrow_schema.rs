//! Entity schema → Arrow schema: the one place that maps property types to Arrow types.

use super::model::{DataType, EntitySchema, Property};
use arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// Decimal precision: 38 digits, the widest Decimal128 and BigQuery's `NUMERIC` precision.
pub const DECIMAL_PRECISION: u8 = 38;
/// Decimal scale: 9 fractional digits, enough for money and exchange rates and equal to
/// BigQuery's `NUMERIC` scale; a value with more significant fractional digits is rejected
/// rather than rounded.
pub const DECIMAL_SCALE: i8 = 9;

/// Lineage column: properties the schema does not know, as a JSON object keyed by their path.
pub const LINEAGE_EXTRA: &str = "_extra";
/// Lineage column: the export (or load) the row came from.
pub const LINEAGE_EXPORT_ID: &str = "_export_id";
/// Lineage column: the name of the source file the row came from.
pub const LINEAGE_FILE: &str = "_file";
/// Lineage column: the row's 1-based line number in its (decompressed) source file.
pub const LINEAGE_LINE: &str = "_line";
/// The property that identifies a row of every entity type.
pub const ROW_KEY: &str = "Id";

impl DataType {
    /// The Arrow type that holds values of this property type.
    pub fn arrow_type(&self) -> ArrowType {
        match self {
            DataType::String | DataType::Enum(_) | DataType::Json => ArrowType::Utf8,
            DataType::Integer => ArrowType::Int64,
            DataType::Decimal => {
                ArrowType::Decimal128(super::DECIMAL_PRECISION, super::DECIMAL_SCALE)
            }
            DataType::Double => ArrowType::Float64,
            DataType::Boolean => ArrowType::Boolean,
            DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Date => ArrowType::Date32,
            DataType::Object(props, _) => ArrowType::Struct(fields_of(props).into()),
            DataType::Array(item) => {
                ArrowType::List(Arc::new(Field::new("item", item.arrow_type(), true)))
            }
        }
    }
}

/// Arrow fields for a list of properties. Every field is nullable: a documented-required
/// property that is missing is counted as drift, and the row is kept.
pub(crate) fn fields_of(props: &[Property]) -> Vec<Field> {
    props
        .iter()
        .map(|p| Field::new(p.name.clone(), p.data_type.arrow_type(), true))
        .collect()
}

impl EntitySchema {
    /// Top-level columns whose values are distinct row by row by their nature: the row key
    /// and the line number. A Parquet dictionary on them only costs time before the writer
    /// gives up on it.
    pub fn unique_columns(&self) -> Vec<String> {
        [ROW_KEY, LINEAGE_LINE]
            .into_iter()
            .filter(|c| *c == LINEAGE_LINE || self.properties.iter().any(|p| p.name == *c))
            .map(str::to_owned)
            .collect()
    }

    /// The Arrow schema of the entity's table: its properties in file order, then the lineage
    /// columns `_extra`, `_export_id`, `_file` and `_line`.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields = fields_of(&self.properties);
        fields.push(Field::new(LINEAGE_EXTRA, ArrowType::Utf8, true));
        fields.push(Field::new(LINEAGE_EXPORT_ID, ArrowType::Utf8, false));
        fields.push(Field::new(LINEAGE_FILE, ArrowType::Utf8, false));
        fields.push(Field::new(LINEAGE_LINE, ArrowType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema of the properties alone, as the decoders build it (no lineage).
    pub fn property_arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(fields_of(&self.properties)))
    }
}
