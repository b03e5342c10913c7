//! The schema file format and its validated, resolved form.
//!
//! A schema file (`schemas/<table>.json`) looks like this:
//!
//! ```json
//! {
//!   "entity": "OrderItem",
//!   "table": "order_item",
//!   "reference": { "file": "operations/orderitems.md", "section": "Order item" },
//!   "partition_by": ["ConsumedUtc:month"],
//!   "properties": [
//!     { "name": "Id", "type": "string", "required": true, "description": "…" },
//!     { "name": "UnitAmount", "type": "object:Amount", "required": true },
//!     { "name": "RevenueType", "type": "enum:RevenueType", "required": true },
//!     { "name": "Notes", "type": "string", "deprecated": true }
//!   ],
//!   "objects": {
//!     "Amount": {
//!       "reference": { "file": "operations/_objects.md", "section": "Amount" },
//!       "properties": [ … ]
//!     }
//!   },
//!   "enums": {
//!     "RevenueType": {
//!       "reference": { "file": "operations/orderitems.md", "section": "Revenue type" },
//!       "values": ["Service", "Product", "Additional"]
//!     }
//!   }
//! }
//! ```
//!
//! Property types: `string`, `integer`, `decimal`, `boolean`, `timestamp` (ISO-8601 UTC
//! instant), `date` (ISO-8601 date), `json` (an object whose shape the reference leaves open,
//! kept as JSON text), `enum:<Name>`, `object:<Name>` and `array<…>` of any of these.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An invalid schema file: names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("schema {file}: {message}")]
pub struct SchemaError {
    /// The schema file's name.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Where in the API reference a type is documented.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Reference {
    /// Path relative to the reference root, e.g. `operations/orderitems.md`.
    pub file: String,
    /// Heading text of the section holding the property table, e.g. `Order item`.
    pub section: String,
}

/// A resolved property type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataType {
    /// UTF-8 text.
    String,
    /// A 64-bit signed integer.
    Integer,
    /// An exact decimal number (money, rates): never a float.
    Decimal,
    /// A binary floating-point number, for the few reference `number`s that are measures
    /// rather than amounts (coordinates): a float's shortest spelling
    /// (`50.08745150000001`) reads back as the very float the API held.
    Double,
    /// `true` or `false`.
    Boolean,
    /// An ISO-8601 instant in UTC, stored to the microsecond.
    Timestamp,
    /// An ISO-8601 calendar date.
    Date,
    /// An object whose shape the reference leaves open, kept as JSON text.
    Json,
    /// A string restricted to documented values; others are kept and counted as drift.
    Enum(Arc<Enum>),
    /// A nested object with known properties.
    Object(Arc<[Property]>, String),
    /// A JSON array of one element type.
    Array(Box<DataType>),
}

impl DataType {
    /// The kind the API reference would give this type, used to check schemas against it.
    pub fn reference_kind(&self) -> &'static str {
        match self {
            DataType::String | DataType::Enum(_) => "string",
            DataType::Integer => "integer",
            DataType::Decimal | DataType::Double => "decimal",
            DataType::Boolean => "boolean",
            DataType::Timestamp | DataType::Date => "date-time",
            DataType::Json | DataType::Object(..) => "object",
            DataType::Array(_) => "array",
        }
    }

    /// The type as written in a schema file, e.g. `array<object:TaxValue>`.
    pub fn spelling(&self) -> String {
        match self {
            DataType::String => "string".into(),
            DataType::Integer => "integer".into(),
            DataType::Decimal => "decimal".into(),
            DataType::Double => "double".into(),
            DataType::Boolean => "boolean".into(),
            DataType::Timestamp => "timestamp".into(),
            DataType::Date => "date".into(),
            DataType::Json => "json".into(),
            DataType::Enum(e) => format!("enum:{}", e.name),
            DataType::Object(_, name) => format!("object:{name}"),
            DataType::Array(item) => format!("array<{}>", item.spelling()),
        }
    }
}

/// A documented enumeration.
#[derive(Debug, PartialEq, Eq)]
pub struct Enum {
    /// The enum's name in the schema file.
    pub name: String,
    /// Documented values, in reference order.
    pub values: Vec<String>,
}

/// One property of an entity or nested object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The Mews property name, used verbatim as the column or field name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
    /// Whether the reference documents it as required (missing or null is counted as drift).
    pub required: bool,
    /// Whether the reference marks it deprecated (still decoded: exports may carry it).
    pub deprecated: bool,
    /// The reference's description, for the `schema` command.
    pub description: String,
}

/// A parsed, validated entity schema.
#[derive(Debug)]
pub struct EntitySchema {
    /// Mews entity type, as `exports/add` spells it (`OrderItem`).
    pub entity: String,
    /// Output table name in snake_case (`order_item`).
    pub table: String,
    /// Where the entity's row shape is documented.
    pub reference: Reference,
    /// Default partitioning, e.g. `["ConsumedUtc:month"]`.
    pub partition_by: Vec<String>,
    /// Top-level properties, in file order (which is column order).
    pub properties: Arc<[Property]>,
    /// Every object and enum definition with its reference section, for the reference test.
    pub definitions: Vec<(String, Option<Reference>, Arc<[Property]>)>,
    /// Every enum definition with its reference section.
    pub enums: Vec<(Arc<Enum>, Option<Reference>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    entity: String,
    table: String,
    reference: Reference,
    #[serde(default)]
    partition_by: Vec<String>,
    properties: Vec<RawProperty>,
    #[serde(default)]
    objects: BTreeMap<String, RawObject>,
    #[serde(default)]
    enums: BTreeMap<String, RawEnum>,
    #[serde(default, rename = "$comment")]
    _comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    deprecated: bool,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    reference: Option<Reference>,
    properties: Vec<RawProperty>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnum {
    reference: Option<Reference>,
    values: Vec<String>,
}

/// Resolves `object:` and `enum:` names while guarding against cycles.
struct Resolver<'a> {
    file: &'a str,
    raw: &'a RawSchema,
    objects: BTreeMap<String, Arc<[Property]>>,
    enums: BTreeMap<String, Arc<Enum>>,
    in_progress: Vec<String>,
}

impl Resolver<'_> {
    fn error(&self, message: impl Into<String>) -> SchemaError {
        SchemaError {
            file: self.file.to_owned(),
            message: message.into(),
        }
    }

    fn properties(
        &mut self,
        raw: &[RawProperty],
        owner: &str,
    ) -> Result<Arc<[Property]>, SchemaError> {
        let mut out: Vec<Property> = Vec::with_capacity(raw.len());
        for p in raw {
            if p.name.is_empty() || p.name.starts_with('_') {
                return Err(self.error(format!("{owner}: invalid property name {:?}", p.name)));
            }
            if out.iter().any(|q| q.name == p.name) {
                return Err(self.error(format!("{owner}: property {} listed twice", p.name)));
            }
            let data_type = self
                .data_type(&p.data_type)
                .map_err(|e| self.error(format!("{owner}.{}: {}", p.name, e.message)))?;
            out.push(Property {
                name: p.name.clone(),
                data_type,
                required: p.required,
                deprecated: p.deprecated,
                description: p.description.clone(),
            });
        }
        Ok(out.into())
    }

    fn data_type(&mut self, spelling: &str) -> Result<DataType, SchemaError> {
        let s = spelling.trim();
        if let Some(inner) = s.strip_prefix("array<").and_then(|r| r.strip_suffix('>')) {
            return Ok(DataType::Array(Box::new(self.data_type(inner)?)));
        }
        if let Some(name) = s.strip_prefix("enum:") {
            if let Some(e) = self.enums.get(name) {
                return Ok(DataType::Enum(e.clone()));
            }
            let raw = self
                .raw
                .enums
                .get(name)
                .ok_or_else(|| self.error(format!("unknown enum {name}")))?;
            let e = Arc::new(Enum {
                name: name.to_owned(),
                values: raw.values.clone(),
            });
            self.enums.insert(name.to_owned(), e.clone());
            return Ok(DataType::Enum(e));
        }
        if let Some(name) = s.strip_prefix("object:") {
            if let Some(o) = self.objects.get(name) {
                return Ok(DataType::Object(o.clone(), name.to_owned()));
            }
            if self.in_progress.iter().any(|n| n == name) {
                return Err(self.error(format!("object {name} contains itself")));
            }
            let raw = self
                .raw
                .objects
                .get(name)
                .ok_or_else(|| self.error(format!("unknown object {name}")))?;
            self.in_progress.push(name.to_owned());
            let props = self.properties(&raw.properties, name)?;
            self.in_progress.pop();
            self.objects.insert(name.to_owned(), props.clone());
            return Ok(DataType::Object(props, name.to_owned()));
        }
        Ok(match s {
            "string" => DataType::String,
            "integer" => DataType::Integer,
            "decimal" => DataType::Decimal,
            "double" => DataType::Double,
            "boolean" => DataType::Boolean,
            "timestamp" => DataType::Timestamp,
            "date" => DataType::Date,
            "json" => DataType::Json,
            other => return Err(self.error(format!("unknown type {other:?}"))),
        })
    }
}

impl EntitySchema {
    /// Parses and validates one schema file's text; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<Self, SchemaError> {
        let raw: RawSchema = serde_json::from_str(text).map_err(|e| SchemaError {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let mut resolver = Resolver {
            file,
            raw: &raw,
            objects: BTreeMap::new(),
            enums: BTreeMap::new(),
            in_progress: Vec::new(),
        };
        let properties = resolver.properties(&raw.properties, &raw.entity)?;
        // Resolve every definition, referenced or not, so a typo in an unused one still fails.
        let mut definitions = Vec::new();
        for (name, obj) in &raw.objects {
            let dt = resolver.data_type(&format!("object:{name}"))?;
            let DataType::Object(props, _) = dt else {
                unreachable!()
            };
            definitions.push((name.clone(), obj.reference.clone(), props));
        }
        let mut enums = Vec::new();
        for (name, e) in &raw.enums {
            let DataType::Enum(resolved) = resolver.data_type(&format!("enum:{name}"))? else {
                unreachable!()
            };
            enums.push((resolved, e.reference.clone()));
        }
        let table_ok = !raw.table.is_empty()
            && raw
                .table
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
        if !table_ok {
            return Err(resolver.error(format!("table name {:?} must be snake_case", raw.table)));
        }
        let schema = EntitySchema {
            entity: raw.entity.clone(),
            table: raw.table.clone(),
            reference: raw.reference.clone(),
            partition_by: raw.partition_by.clone(),
            properties,
            definitions,
            enums,
        };
        schema
            .parse_partition_spec(&schema.partition_by.join(","))
            .map_err(|e| resolver.error(format!("partition_by: {e}")))?;
        Ok(schema)
    }

    /// The top-level property named `name`.
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// A short fingerprint of the column layout, recorded in manifests so that loads written
    /// under different schemas can be told apart.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for f in self.arrow_schema().fields() {
            h.update(format!("{f:?}\n").as_bytes());
        }
        let d = h.finalize();
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}
