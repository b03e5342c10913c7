//! Entity schemas: `schemas/*.json` → typed property trees, Arrow schemas and partitioning.
//!
//! The files under `schemas/` are the single source of truth for every exported entity's
//! columns and types. They are embedded in the binary at build time, parsed once, and
//! everything else — the Arrow schema, the decoders, the `schema` command, the README's
//! type table and the demo data generator — derives from the [`EntitySchema`] built here.

mod arrow_schema;
mod model;
mod partition;
mod render;

pub(crate) use arrow_schema::fields_of;
pub use arrow_schema::{
    DECIMAL_PRECISION, DECIMAL_SCALE, LINEAGE_EXPORT_ID, LINEAGE_EXTRA, LINEAGE_FILE, LINEAGE_LINE,
    ROW_KEY,
};
pub use model::{DataType, EntitySchema, Enum, Property, Reference, SchemaError};
pub use partition::{Granularity, PartitionField, PartitionSpec};
pub use render::{partition_table_markdown, type_table_markdown, LINEAGE_COLUMNS};

use std::sync::OnceLock;

/// The embedded schema files, in the order entities are listed by the reference.
///
/// Only file names appear here; every column is defined in the files themselves.
const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "order_item.json",
        include_str!("../../schemas/order_item.json"),
    ),
    ("payment.json", include_str!("../../schemas/payment.json")),
    (
        "reservation.json",
        include_str!("../../schemas/reservation.json"),
    ),
    ("customer.json", include_str!("../../schemas/customer.json")),
    ("company.json", include_str!("../../schemas/company.json")),
    ("bill.json", include_str!("../../schemas/bill.json")),
    (
        "availability_adjustment.json",
        include_str!("../../schemas/availability_adjustment.json"),
    ),
    (
        "availability_block.json",
        include_str!("../../schemas/availability_block.json"),
    ),
    (
        "resource_block.json",
        include_str!("../../schemas/resource_block.json"),
    ),
    (
        "ledger_entry.json",
        include_str!("../../schemas/ledger_entry.json"),
    ),
];

/// All ten exported entity schemas, parsed once.
///
/// # Panics
/// Panics if an embedded schema file is invalid; `tests` parse every file, so a build that
/// passes its tests cannot panic here.
pub fn all() -> &'static [EntitySchema] {
    static ALL: OnceLock<Vec<EntitySchema>> = OnceLock::new();
    ALL.get_or_init(|| {
        SCHEMA_FILES
            .iter()
            .map(|(name, text)| {
                EntitySchema::from_json(name, text)
                    .unwrap_or_else(|e| panic!("embedded schema {name} is invalid: {e}"))
            })
            .collect()
    })
}

/// Finds an entity schema by its Mews entity type (`OrderItem`) or table name (`order_item`),
/// ignoring ASCII case.
pub fn find(name: &str) -> Option<&'static EntitySchema> {
    all().iter().find(|s| {
        s.entity.eq_ignore_ascii_case(name)
            || s.table.eq_ignore_ascii_case(name)
            || s.entity.eq_ignore_ascii_case(&name.replace(['_', '-'], ""))
    })
}

/// Names of all entity types, for error messages and help text.
pub fn entity_names() -> Vec<&'static str> {
    all().iter().map(|s| s.entity.as_str()).collect()
}

/// The entity type whose name is closest to `name` (a typo or a plural: `OrdrItem`,
/// `Payments`), if any is within a few edits of it.
pub fn closest(name: &str) -> Option<&'static EntitySchema> {
    let name = name.to_ascii_lowercase().replace(['_', '-'], "");
    all()
        .iter()
        .map(|s| (edit_distance(&name, &s.entity.to_ascii_lowercase()), s))
        .filter(|(d, s)| *d <= 2.max(s.entity.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s)
}

/// Levenshtein distance between two ASCII-ish names (by chars).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_listing_names_every_column_of_the_arrow_schema_in_order() {
        for s in all() {
            let json = s.describe_json();
            let columns = json["columns"].as_array().unwrap();
            let arrow = s.arrow_schema();
            assert_eq!(columns.len(), arrow.fields().len(), "{}", s.entity);
            for (c, f) in columns.iter().zip(arrow.fields()) {
                assert_eq!(c["name"], f.name().as_str());
                assert_eq!(c["arrow"], f.data_type().to_string());
                assert_eq!(c["nullable"], f.is_nullable());
                assert!(!c["duckdb"].as_str().unwrap().is_empty());
            }
            assert_eq!(json["table"], s.table.as_str());
        }
    }

    /// Every table has a BigQuery schema (no list in a list, which BigQuery cannot hold),
    /// naming the columns of the files in order, with the types a Parquet load gives them.
    #[test]
    fn the_bigquery_schema_names_every_column_with_its_bigquery_type() {
        fn field<'a>(fields: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
            fields
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .unwrap_or_else(|| panic!("no {name}"))
        }
        for s in all() {
            let bq = s.bigquery_schema();
            let names: Vec<&str> = bq
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            let arrow = s.arrow_schema();
            let expected: Vec<&str> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names, expected, "{}", s.entity);
            assert_eq!(field(&bq, LINEAGE_LINE)["type"], "INT64");
        }
        let order = find("OrderItem").unwrap().bigquery_schema();
        let amount = field(&order, "Amount");
        assert_eq!(
            (&amount["type"], &amount["mode"]),
            (&"RECORD".into(), &"NULLABLE".into())
        );
        assert_eq!(field(&amount["fields"], "GrossValue")["type"], "NUMERIC");
        let taxes = field(&amount["fields"], "TaxValues");
        assert_eq!(
            (&taxes["type"], &taxes["mode"]),
            (&"RECORD".into(), &"REPEATED".into())
        );
        assert_eq!(field(&order, "ConsumedUtc")["type"], "TIMESTAMP");
        assert!(field(&order, "Id")["description"].as_str().is_some());
        let ledger = find("LedgerEntry").unwrap().bigquery_schema();
        assert_eq!(field(&ledger, "PostingDate")["type"], "DATE");
        assert_eq!(field(&ledger, "Value")["type"], "NUMERIC");
    }

    #[test]
    fn a_misspelt_entity_type_finds_the_closest() {
        let name = |n: &str| closest(n).map(|s| s.entity.as_str());
        assert_eq!(name("OrdrItem"), Some("OrderItem"));
        assert_eq!(name("Payments"), Some("Payment"));
        assert_eq!(name("reservatoin"), Some("Reservation"));
        assert_eq!(name("ledger-entries"), Some("LedgerEntry"));
        assert_eq!(name("Invoice"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn every_embedded_schema_parses() {
        assert_eq!(all().len(), 10);
        for s in all() {
            assert!(s.property("Id").is_some(), "{} has no Id", s.entity);
            s.arrow_schema();
            s.default_partition_spec();
        }
    }

    #[test]
    fn find_accepts_entity_and_table_names() {
        assert_eq!(find("OrderItem").unwrap().table, "order_item");
        assert_eq!(find("order_item").unwrap().entity, "OrderItem");
        assert_eq!(find("ledger-entry").unwrap().entity, "LedgerEntry");
        assert!(find("Nope").is_none());
    }
}
