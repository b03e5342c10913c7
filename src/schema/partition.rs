//! Partition specifications: `--partition-by ConsumedUtc:month,AccountType` or `none`.

use super::model::{DataType, EntitySchema};
use std::fmt;

/// How finely a time column is bucketed into partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// `2023`
    Year,
    /// `2023-03`
    Month,
    /// `2023-03-31`
    Day,
}

impl Granularity {
    /// The suffix used in the partition key name (`ConsumedUtc_month`).
    pub fn suffix(self) -> &'static str {
        match self {
            Granularity::Year => "year",
            Granularity::Month => "month",
            Granularity::Day => "day",
        }
    }
}

/// One partition key: a top-level column, optionally bucketed by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionField {
    /// The top-level property the key derives from.
    pub column: String,
    /// Index of that property among the entity's top-level properties.
    pub column_index: usize,
    /// The column's type.
    pub data_type: DataType,
    /// Time bucket, for `timestamp` and `date` columns; `None` is the identity.
    pub granularity: Option<Granularity>,
}

impl PartitionField {
    /// The directory key: `<column>_<granularity>` for derived keys and `<column>_value`
    /// for identity keys, so that no key clashes with the column it comes from.
    ///
    /// The column stays in the files with its exact value. Hive-style readers (DuckDB,
    /// Spark, pyarrow) replace a file column by a partition key of the same name, and a
    /// directory name cannot always hold the value exactly: a long value is cut to a prefix
    /// and a hash, and the empty string is spelled [`crate::sink::EMPTY_STRING_PARTITION`].
    pub fn key_name(&self) -> String {
        match self.granularity {
            Some(g) => format!("{}_{}", self.column, g.suffix()),
            None => format!("{}_value", self.column),
        }
    }
}

/// An ordered list of partition keys; empty means one unpartitioned directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionSpec {
    /// Keys, outermost directory first.
    pub fields: Vec<PartitionField>,
}

impl fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fields.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|p| match p.granularity {
                Some(g) => format!("{}:{}", p.column, g.suffix()),
                None => p.column.clone(),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl EntitySchema {
    /// The partitioning `--partition-by` gives, if given, else the entity's default.
    pub fn partition_spec_or_default(&self, given: Option<&str>) -> Result<PartitionSpec, String> {
        match given {
            // An empty value is more likely an unset variable than a wish for no partitions.
            Some(spec) if spec.trim().is_empty() => {
                Err("is empty: give none for no partitions, or properties".into())
            }
            Some(spec) => self.parse_partition_spec(spec),
            None => Ok(self.default_partition_spec()),
        }
    }

    /// Parses a partition specification (`ConsumedUtc:month,AccountType`, `none` or empty)
    /// against this entity's properties.
    pub fn parse_partition_spec(&self, spec: &str) -> Result<PartitionSpec, String> {
        let spec = spec.trim();
        if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
            return Ok(PartitionSpec::default());
        }
        let mut fields: Vec<PartitionField> = Vec::new();
        for item in spec.split(',').map(str::trim) {
            let (column, granularity) = match item.split_once(':') {
                Some((c, g)) => {
                    let g = match g.trim().to_ascii_lowercase().as_str() {
                        "year" => Granularity::Year,
                        "month" => Granularity::Month,
                        "day" => Granularity::Day,
                        other => {
                            return Err(format!(
                            "unknown granularity {other:?} for {c} (expected year, month or day)"
                        ))
                        }
                    };
                    (c.trim(), Some(g))
                }
                None => (item, None),
            };
            let Some(column_index) = self.properties.iter().position(|p| p.name == column) else {
                return Err(format!("{} has no property {column:?}", self.entity));
            };
            let data_type = self.properties[column_index].data_type.clone();
            match (&data_type, granularity) {
                (DataType::Timestamp | DataType::Date, _) => {}
                (DataType::String | DataType::Enum(_) | DataType::Integer | DataType::Boolean, None) => {}
                (_, Some(_)) => {
                    return Err(format!(
                        "{column} is {}: only timestamp and date columns take :year, :month or :day",
                        data_type.spelling()
                    ))
                }
                _ => {
                    return Err(format!(
                        "{column} is {}: partition by a string, enum, integer, boolean, date or timestamp column",
                        data_type.spelling()
                    ))
                }
            }
            let field = PartitionField {
                column: column.to_owned(),
                column_index,
                data_type,
                granularity,
            };
            if fields.iter().any(|f| f.key_name() == field.key_name()) {
                return Err(format!("partition key {} listed twice", field.key_name()));
            }
            fields.push(field);
        }
        Ok(PartitionSpec { fields })
    }

    /// The entity's default partitioning, from its schema file.
    pub fn default_partition_spec(&self) -> PartitionSpec {
        self.parse_partition_spec(&self.partition_by.join(","))
            .expect("validated when the schema was loaded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_partition_key_shares_a_name_with_a_column() {
        // A Hive-style reader would otherwise show the directory's text in place of the
        // column's exact value.
        for schema in crate::schema::all() {
            for (index, p) in schema.properties.iter().enumerate() {
                for granularity in [
                    None,
                    Some(Granularity::Year),
                    Some(Granularity::Month),
                    Some(Granularity::Day),
                ] {
                    let key = PartitionField {
                        column: p.name.clone(),
                        column_index: index,
                        data_type: p.data_type.clone(),
                        granularity,
                    }
                    .key_name();
                    assert!(
                        schema.property(&key).is_none(),
                        "{}: key {key}",
                        schema.entity
                    );
                }
            }
        }
    }
}
