//! Human- and machine-readable renderings of the schemas: the `schema` command's output,
//! DuckDB DDL, and the README's type table.

use super::model::{DataType, EntitySchema, Property};
use super::{LINEAGE_EXPORT_ID, LINEAGE_EXTRA, LINEAGE_FILE, LINEAGE_LINE};
use std::fmt::Write;

impl DataType {
    /// The DuckDB type of the column as DuckDB reads it from our Parquet files.
    pub fn duckdb_type(&self) -> String {
        match self {
            DataType::String | DataType::Enum(_) | DataType::Json => "VARCHAR".into(),
            DataType::Integer => "BIGINT".into(),
            DataType::Decimal => format!(
                "DECIMAL({}, {})",
                super::DECIMAL_PRECISION,
                super::DECIMAL_SCALE
            ),
            DataType::Double => "DOUBLE".into(),
            DataType::Boolean => "BOOLEAN".into(),
            DataType::Timestamp => "TIMESTAMP WITH TIME ZONE".into(),
            DataType::Date => "DATE".into(),
            DataType::Object(props, _) => {
                let fields: Vec<String> = props
                    .iter()
                    .map(|p| format!("\"{}\" {}", p.name, p.data_type.duckdb_type()))
                    .collect();
                format!("STRUCT({})", fields.join(", "))
            }
            DataType::Array(item) => format!("{}[]", item.duckdb_type()),
        }
    }
}

/// The lineage columns appended to every table, with their meaning.
pub const LINEAGE_COLUMNS: [(&str, &str, &str); 4] = [
    (
        LINEAGE_EXTRA,
        "VARCHAR",
        "properties the schema does not know, as a JSON object keyed by path; null when none",
    ),
    (
        LINEAGE_EXPORT_ID,
        "VARCHAR",
        "the export (or --export-id) the row came from",
    ),
    (LINEAGE_FILE, "VARCHAR", "the source file the row came from"),
    (
        LINEAGE_LINE,
        "BIGINT",
        "1-based line number in the decompressed source file",
    ),
];

fn describe_props(out: &mut String, props: &[Property], indent: usize) {
    for p in props {
        let flags = match (p.required, p.deprecated) {
            (true, true) => " required deprecated",
            (true, false) => " required",
            (false, true) => " deprecated",
            (false, false) => "",
        };
        let ty = format!("{}{flags}", p.data_type.spelling());
        let line = format!(
            "{:indent$}{:<w$} {ty:<40} {}",
            "",
            p.name,
            p.description,
            indent = indent,
            w = 32usize.saturating_sub(indent)
        );
        let _ = writeln!(out, "{}", line.trim_end());
        let mut t = &p.data_type;
        while let DataType::Array(inner) = t {
            t = inner;
        }
        if let DataType::Object(children, _) = t {
            describe_props(out, children, indent + 2);
        }
    }
}

impl EntitySchema {
    /// A readable listing of the table's columns, nested fields indented.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} → table {} (partitioned by {}; reference: {} § {})",
            self.entity,
            self.table,
            self.default_partition_spec(),
            self.reference.file,
            self.reference.section
        );
        describe_props(&mut out, &self.properties, 2);
        for (name, ty, what) in LINEAGE_COLUMNS {
            let _ = writeln!(out, "  {name:<30} {:<40} {what}", ty.to_lowercase());
        }
        out
    }

    /// The table's columns as one JSON object, for tools that generate DDL or checks: entity,
    /// table, default partitioning, and per column its name, schema type, Arrow type (as
    /// Arrow spells it), DuckDB type, nullability, whether the API marks it required, and its
    /// description; the lineage columns last.
    pub fn describe_json(&self) -> serde_json::Value {
        let arrow = self.arrow_schema();
        let arrow_type = |name: &str| {
            arrow
                .field_with_name(name)
                .map(|f| (f.data_type().to_string(), f.is_nullable()))
                .unwrap_or_default()
        };
        let mut columns: Vec<serde_json::Value> = self
            .properties
            .iter()
            .map(|p| {
                let (arrow, nullable) = arrow_type(&p.name);
                serde_json::json!({
                    "name": p.name,
                    "type": p.data_type.spelling(),
                    "arrow": arrow,
                    "duckdb": p.data_type.duckdb_type(),
                    "nullable": nullable,
                    "required": p.required,
                    "deprecated": p.deprecated,
                    "description": p.description,
                })
            })
            .collect();
        for (name, duckdb, what) in LINEAGE_COLUMNS {
            let (arrow, nullable) = arrow_type(name);
            columns.push(serde_json::json!({
                "name": name,
                "type": "lineage",
                "arrow": arrow,
                "duckdb": duckdb,
                "nullable": nullable,
                "required": false,
                "deprecated": false,
                "description": what,
            }));
        }
        serde_json::json!({
            "entity": self.entity,
            "table": self.table,
            "partition_by": self.default_partition_spec().to_string(),
            "columns": columns,
        })
    }

    /// The table's columns as a BigQuery schema (the JSON array `bq mk --table` and
    /// `bq load --schema` take), derived from the Arrow schema the files are written with:
    /// decimals as `NUMERIC` (38 digits, scale 9: the same numbers), instants as
    /// `TIMESTAMP`, objects as `RECORD`, lists as `REPEATED` (as a Parquet load reads them
    /// with `--parquet_enable_list_inference`). Every column is `NULLABLE`: the files allow
    /// nulls wherever the API may leave a value out.
    pub fn bigquery_schema(&self) -> serde_json::Value {
        let description = |name: &str| {
            self.properties
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.description.as_str())
                .or_else(|| {
                    LINEAGE_COLUMNS
                        .iter()
                        .find(|(n, _, _)| *n == name)
                        .map(|(_, _, what)| *what)
                })
                .unwrap_or_default()
        };
        let fields: Vec<serde_json::Value> = self
            .arrow_schema()
            .fields()
            .iter()
            .map(|field| {
                let mut column = bigquery_field(field);
                let text = description(field.name());
                if !text.is_empty() {
                    // BigQuery takes descriptions of at most 1024 characters.
                    let cut: String = text.chars().take(1024).collect();
                    column["description"] = cut.into();
                }
                column
            })
            .collect();
        serde_json::Value::Array(fields)
    }

    /// A DuckDB `CREATE TABLE` statement with the table's exact column types: the columns
    /// of the table's Parquet files, after a comment saying how to load them into it.
    ///
    /// Partition keys are directory names, not columns of the files: a reader that detects
    /// them (DuckDB does, unless told not to) would add a column the table does not have.
    pub fn duckdb_ddl(&self) -> String {
        let spec = self.default_partition_spec();
        let keys: Vec<String> = spec.fields.iter().map(|f| f.key_name()).collect();
        let mut head = format!(
            "-- {table}: the columns of its Parquet files. Load them with\n\
             --   INSERT INTO {table} SELECT * FROM read_parquet('<out>/{table}/**/*.parquet', hive_partitioning = false);\n",
            table = self.table
        );
        if !keys.is_empty() {
            head.push_str(&format!(
                "-- (partition keys, {} unless --partition-by says otherwise, are directory names, not columns: hive_partitioning = false leaves them out)\n",
                keys.join(", ")
            ));
        }
        let mut cols: Vec<String> = self
            .properties
            .iter()
            .map(|p| format!("  \"{}\" {}", p.name, p.data_type.duckdb_type()))
            .collect();
        for (name, ty, _) in LINEAGE_COLUMNS {
            cols.push(format!("  \"{name}\" {ty}"));
        }
        format!(
            "{head}CREATE TABLE {} (\n{}\n);\n",
            self.table,
            cols.join(",\n")
        )
    }
}

/// One column (or nested field) of a BigQuery schema, for the Arrow field of our files.
fn bigquery_field(field: &arrow::datatypes::Field) -> serde_json::Value {
    use arrow::datatypes::DataType as Arrow;
    let (data_type, repeated) = match field.data_type() {
        Arrow::List(item) | Arrow::LargeList(item) => (item.data_type(), true),
        other => (other, false),
    };
    let mut column = serde_json::json!({
        "name": field.name(),
        "mode": if repeated { "REPEATED" } else { "NULLABLE" },
    });
    let kind = match data_type {
        Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View => "STRING",
        Arrow::Int64 | Arrow::Int32 => "INT64",
        Arrow::Decimal128(_, _) => "NUMERIC",
        Arrow::Float64 => "FLOAT64",
        Arrow::Boolean => "BOOL",
        Arrow::Timestamp(_, _) => "TIMESTAMP",
        Arrow::Date32 => "DATE",
        Arrow::Struct(fields) => {
            column["fields"] = fields.iter().map(|f| bigquery_field(f)).collect();
            "RECORD"
        }
        // No schema nests a list in a list, which BigQuery could not hold; a test keeps it so.
        other => unreachable!(
            "no BigQuery type for the Arrow type {other} of {}",
            field.name()
        ),
    };
    column["type"] = kind.into();
    column
}

/// The README's type table: each schema type with its Arrow, Parquet and DuckDB types.
pub fn type_table_markdown() -> String {
    use crate::schema::model::Enum;
    use std::sync::Arc;
    let example_enum = DataType::Enum(Arc::new(Enum {
        name: "RevenueType".into(),
        values: vec![],
    }));
    let rows: Vec<(DataType, &str, &str)> = vec![
        (
            DataType::String,
            "`string`",
            "UTF8 (dictionary-encoded, but for columns unique per row: `Id`)",
        ),
        (example_enum, "`enum:<Name>`", "UTF8 (dictionary-encoded)"),
        (DataType::Integer, "`integer`", "INT64"),
        (
            DataType::Decimal,
            "`decimal` (reference `number`/`decimal`)",
            "DECIMAL(38,9), exact",
        ),
        (
            DataType::Double,
            "`double` (reference `number`: coordinates)",
            "DOUBLE",
        ),
        (DataType::Boolean, "`boolean`", "BOOLEAN"),
        (
            DataType::Timestamp,
            "`timestamp` (ISO-8601 instant)",
            "TIMESTAMP(MICROS, UTC)",
        ),
        (DataType::Date, "`date` (ISO-8601 date)", "DATE"),
        (
            DataType::Json,
            "`json` (open-shaped object)",
            "UTF8 holding JSON text",
        ),
        (
            DataType::Object(Arc::from(Vec::<Property>::new()), "Amount".into()),
            "`object:<Name>`",
            "group (struct)",
        ),
        (
            DataType::Array(Box::new(DataType::String)),
            "`array<T>`",
            "LIST",
        ),
    ];
    let mut out =
        String::from("| schema type | Arrow | Parquet | DuckDB |\n| --- | --- | --- | --- |\n");
    for (t, name, parquet) in rows {
        let arrow = match &t {
            DataType::Object(..) => "Struct".to_owned(),
            DataType::Array(_) => "List<T>".to_owned(),
            other => format!("{}", other.arrow_type()),
        };
        let duck = match &t {
            DataType::Object(..) => "STRUCT(…)".to_owned(),
            DataType::Array(_) => "T[]".to_owned(),
            other => other.duckdb_type(),
        };
        let _ = writeln!(out, "| {name} | {arrow} | {parquet} | {duck} |");
    }
    out
}

/// The README's table of default partitionings: each entity type's table, the partitioning
/// `--partition-by` defaults to, and the directory key it writes.
pub fn partition_table_markdown() -> String {
    let mut out = String::from(
        "| entity | table | default `--partition-by` | directory key |\n| --- | --- | --- | --- |\n",
    );
    for schema in crate::schema::all() {
        let spec = schema.default_partition_spec();
        let keys: Vec<String> = spec
            .fields
            .iter()
            .map(|f| format!("`{}=…`", f.key_name()))
            .collect();
        let keys = if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join(" / ")
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | `{spec}` | {keys} |",
            schema.entity, schema.table
        );
    }
    out
}
