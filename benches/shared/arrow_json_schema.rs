//! The Arrow schema `arrow_json` is given in the parse-stage comparisons (the criterion bench
//! and `examples/profile_decode.rs` include this file).

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use mews_etl::schema::EntitySchema;
use std::sync::Arc;

/// The entity's property columns, with timestamps at the fixed offset `+00:00` instead of the
/// zone name "UTC": `arrow_json`'s timestamp parser (without the optional chrono-tz feature)
/// takes only the former; the values are identical.
pub fn arrow_json_schema(schema: &EntitySchema) -> SchemaRef {
    fn fix(dt: &DataType) -> DataType {
        match dt {
            DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("+00:00".into())),
            DataType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|f| Field::new(f.name(), fix(f.data_type()), true))
                    .collect(),
            ),
            DataType::List(f) => {
                DataType::List(Arc::new(Field::new(f.name(), fix(f.data_type()), true)))
            }
            other => other.clone(),
        }
    }
    let fields: Vec<Field> = schema
        .property_arrow_schema()
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), fix(f.data_type()), true))
        .collect();
    Arc::new(Schema::new(fields))
}
