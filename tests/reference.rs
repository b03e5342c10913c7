//! Checks every schema file under `schemas/` against the Mews Connector API reference.
//!
//! The reference is the markdown copy in `../shared/reference/mews-connector-api` (beside the
//! repository; `MEWS_REFERENCE_DIR` overrides it). For the entity and for every object and enum
//! definition that names a reference section, the checker reads that section's property table
//! (or bullet list of enum values) and compares it with the schema: the same property names,
//! the same kind for each property, the same deprecated and required flags, the same enum
//! values. All differences are collected and reported together, so one run lists everything
//! that drifted.

mod common;

use common::reference_dir;
use mews_etl::schema::{self, EntitySchema, Property, Reference};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// One difference between a schema file and the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mismatch {
    /// The schema's entity type, e.g. `OrderItem`.
    entity: String,
    /// The object or enum definition, or the entity itself for top-level properties.
    owner: String,
    /// The property or enum the difference concerns; empty when it is about the whole section.
    item: String,
    /// What differs, e.g. `kind: schema string, reference integer`.
    detail: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {}", self.entity, self.owner)?;
        if !self.item.is_empty() {
            write!(f, " / {}", self.item)?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// A property as the reference documents it, reduced to what a schema can be compared on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefProperty {
    /// Property name, without the backticks and strike-through.
    name: String,
    /// Kind in the vocabulary of [`mews_etl::schema::DataType::reference_kind`].
    kind: String,
    /// Whether the row is struck through (`~~`Name`~~`).
    deprecated: bool,
    /// Whether the Contract column starts with `required`.
    required: bool,
}

/// What a reference section holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    /// Rows of the first property table: cells as written (name, type, contract, description).
    Table(Vec<[String; 4]>),
    /// The values of a bullet list of `` `Value` `` items: an enum.
    Enum(Vec<String>),
    /// Prose only, or a table whose rows are not named properties (a Dictionary, Localized
    /// text): an object whose keys the reference leaves open.
    Open,
}

/// One heading and the lines up to the next heading.
#[derive(Debug)]
struct Section {
    /// Heading text, trimmed, without the leading `#`s.
    text: String,
    /// GitHub-style anchor, with `-1`, `-2`, … for repeated headings, as links use it.
    slug: String,
    /// What the section documents.
    content: Content,
}

/// The markdown reference: files parsed on first use, keyed by path relative to the root.
struct Library {
    /// Reference root; `None` for a library built from in-memory files only.
    root: Option<PathBuf>,
    /// Parsed files; `None` records a file that does not exist.
    docs: HashMap<String, Option<Vec<Section>>>,
}

impl Library {
    /// A library reading files from `root` as they are needed.
    fn open(root: &Path) -> Self {
        Library {
            root: Some(root.to_owned()),
            docs: HashMap::new(),
        }
    }

    /// A library of the given `(path, markdown)` files only, for testing the checker itself.
    fn in_memory(files: &[(&str, &str)]) -> Self {
        Library {
            root: None,
            docs: files
                .iter()
                .map(|(path, text)| ((*path).to_owned(), Some(parse_sections(text))))
                .collect(),
        }
    }

    /// The sections of `file`, or `None` if the reference has no such file.
    fn sections(&mut self, file: &str) -> Option<&[Section]> {
        if !self.docs.contains_key(file) {
            let parsed = self
                .root
                .as_ref()
                .and_then(|root| std::fs::read_to_string(root.join(file)).ok())
                .map(|text| parse_sections(&text));
            self.docs.insert(file.to_owned(), parsed);
        }
        self.docs[file].as_deref()
    }

    /// The first section of `file` whose heading text is `text`, as schema files name them.
    fn by_text(&mut self, file: &str, text: &str) -> Result<&Section, String> {
        let sections = self
            .sections(file)
            .ok_or_else(|| format!("reference file {file} not found"))?;
        sections
            .iter()
            .find(|s| s.text == text)
            .ok_or_else(|| format!("no section {text:?} in {file}"))
    }

    /// The content a link target points at; `None` if the file or anchor does not exist.
    fn link_target(&mut self, from_file: &str, target: &str) -> Option<Content> {
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file = if path.is_empty() {
            from_file.to_owned()
        } else {
            join_relative(from_file, path)
        };
        let sections = self.sections(&file)?;
        sections
            .iter()
            .find(|s| s.slug == anchor)
            .map(|s| s.content.clone())
    }

    /// The properties of the table in `reference`, each with its kind worked out.
    fn properties(&mut self, reference: &Reference) -> Result<Vec<RefProperty>, String> {
        let section = self.by_text(&reference.file, &reference.section)?;
        let Content::Table(rows) = section.content.clone() else {
            return Err(format!(
                "section {:?} in {} has no property table",
                reference.section, reference.file
            ));
        };
        let mut out = Vec::with_capacity(rows.len());
        for [name_cell, type_cell, contract, description] in rows {
            let deprecated = name_cell.starts_with("~~");
            let name = name_cell.replace("~~", "").trim_matches('`').to_owned();
            let kind = self.kind(&reference.file, &name, &type_cell, &description)?;
            out.push(RefProperty {
                required: contract.replace("~~", "").trim().starts_with("required"),
                name,
                kind,
                deprecated,
            });
        }
        Ok(out)
    }

    /// The values of the enum in `reference`.
    fn enum_values(&mut self, reference: &Reference) -> Result<Vec<String>, String> {
        match &self.by_text(&reference.file, &reference.section)?.content {
            Content::Enum(values) => Ok(values.clone()),
            _ => Err(format!(
                "section {:?} in {} is not a list of enum values",
                reference.section, reference.file
            )),
        }
    }

    /// The kind of one property from its Type cell (and, for strings, name and description).
    fn kind(
        &mut self,
        file: &str,
        name: &str,
        type_cell: &str,
        description: &str,
    ) -> Result<String, String> {
        let t = type_cell.replace("~~", "");
        let t = t.trim();
        if t.starts_with("array") {
            return Ok("array".into());
        }
        if let Some(target) = link_target_of(t) {
            // A link names another section: an enum (bullet list) is a string on the wire,
            // anything else is an object. A target the reference does not contain cannot say
            // what shape it has, so it counts as an open object, like a Dictionary.
            return Ok(match self.link_target(file, target) {
                Some(Content::Enum(_)) => "string".into(),
                _ => "object".into(),
            });
        }
        Ok(match t.to_ascii_lowercase().as_str() {
            "string" if is_date_time(name, description) => "date-time".into(),
            "string" => "string".into(),
            "integer" => "integer".into(),
            "number" | "decimal" => "decimal".into(),
            "boolean" => "boolean".into(),
            "object" | "any" => "object".into(),
            _ => {
                return Err(format!(
                    "property {name}: unrecognised reference type {t:?}"
                ))
            }
        })
    }
}

/// Whether a reference `string` carries a date or an instant.
///
/// The reference marks these with "ISO 8601" in the description, except durations ("in ISO
/// 8601 duration format"), which are plain strings. Some `…Utc` instants only say "in UTC
/// timezone", so the `Utc` suffix counts too.
fn is_date_time(name: &str, description: &str) -> bool {
    (description.contains("ISO 8601") && !description.contains("ISO 8601 duration"))
        || name.ends_with("Utc")
}

/// The target of a Type cell that is a single markdown link `[Text](target)`.
fn link_target_of(cell: &str) -> Option<&str> {
    let rest = cell.strip_prefix('[')?;
    let (_, after) = rest.split_once("](")?;
    after.strip_suffix(')')
}

/// Resolves a link `target` written in `from_file` to a path relative to the reference root.
fn join_relative(from_file: &str, target: &str) -> String {
    let mut parts: Vec<&str> = from_file.split('/').collect();
    parts.pop(); // the file itself: links are relative to its folder
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slugify(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Splits one markdown file into sections at every heading outside fenced code blocks.
fn parse_sections(markdown: &str) -> Vec<Section> {
    let mut raw: Vec<(String, Vec<&str>)> = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            // Example payloads may contain lines that look like headings or tables.
            continue;
        }
        if let Some(text) = heading_text(line) {
            raw.push((text.to_owned(), Vec::new()));
        } else if let Some((_, lines)) = raw.last_mut() {
            lines.push(line);
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    raw.into_iter()
        .map(|(text, lines)| {
            let base = slugify(&text);
            let n = seen.entry(base.clone()).or_insert(0);
            let slug = if *n == 0 { base } else { format!("{base}-{n}") };
            *n += 1;
            Section {
                content: section_content(&lines),
                text,
                slug,
            }
        })
        .collect()
}

/// The heading text of a `#`…`######` line, trimmed.
fn heading_text(line: &str) -> Option<&str> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    let rest = &line[hashes..];
    ((1..=6).contains(&hashes) && rest.starts_with([' ', '\t'])).then(|| rest.trim())
}

/// What a section's lines document: its first property table, else its enum values.
fn section_content(lines: &[&str]) -> Content {
    let mut rows = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.starts_with("| `") || line.starts_with("| ~~`") {
            rows.push(table_cells(line));
        } else if !rows.is_empty() && !line.starts_with('|') {
            break; // only the first table belongs to the section's object
        }
    }
    if !rows.is_empty() {
        return Content::Table(rows);
    }
    let values: Vec<String> = lines
        .iter()
        .filter_map(|line| {
            let item = line.trim_start().strip_prefix(['*', '-'])?;
            let item = item.trim_start().strip_prefix('`')?;
            Some(item.split_once('`')?.0.to_owned())
        })
        .collect();
    if values.is_empty() {
        Content::Open
    } else {
        Content::Enum(values)
    }
}

/// The four cells of a table row; escaped pipes (`\|`) stay inside their cell, and any extra
/// cells are folded into the description.
fn table_cells(line: &str) -> [String; 4] {
    let mut cells: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in line.trim().trim_start_matches('|').chars() {
        if c == '|' && !escaped {
            cells.push(cell.trim().to_owned());
            cell.clear();
        } else {
            cell.push(c);
        }
        escaped = c == '\\';
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_owned());
    }
    cells.resize(4, String::new());
    let description = cells[3..].join(" | ");
    [
        cells[0].clone(),
        cells[1].clone(),
        cells[2].clone(),
        description,
    ]
}

/// Compares one schema with the reference and returns every difference.
fn check_schema(library: &mut Library, schema: &EntitySchema) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mismatch = |owner: &str, item: &str, detail: String| Mismatch {
        entity: schema.entity.clone(),
        owner: owner.to_owned(),
        item: item.to_owned(),
        detail,
    };
    let mut tables: Vec<(String, &Reference, &[Property])> = vec![(
        format!("{} (entity)", schema.entity),
        &schema.reference,
        &schema.properties[..],
    )];
    for (name, reference, properties) in &schema.definitions {
        if let Some(reference) = reference {
            tables.push((name.clone(), reference, &properties[..]));
        }
    }
    for (owner, reference, properties) in tables {
        match library.properties(reference) {
            Ok(documented) => out.extend(
                compare_properties(properties, &documented)
                    .into_iter()
                    .map(|(item, detail)| mismatch(&owner, &item, detail)),
            ),
            Err(e) => out.push(mismatch(&owner, "", e)),
        }
    }
    for (e, reference) in &schema.enums {
        let Some(reference) = reference else { continue };
        match library.enum_values(reference) {
            Ok(values) if values == e.values => {}
            Ok(values) => out.push(mismatch(
                &e.name,
                "",
                format!("values: schema {:?}, reference {values:?}", e.values),
            )),
            Err(err) => out.push(mismatch(&e.name, "", err)),
        }
    }
    out
}

/// Differences between a schema's properties and the documented ones, as (property, detail).
fn compare_properties(schema: &[Property], documented: &[RefProperty]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let documented_names: BTreeSet<&str> = documented.iter().map(|p| p.name.as_str()).collect();
    for p in schema {
        if !documented_names.contains(p.name.as_str()) {
            out.push((
                p.name.clone(),
                "in the schema but not in the reference".into(),
            ));
        }
    }
    for d in documented {
        let Some(p) = schema.iter().find(|p| p.name == d.name) else {
            out.push((
                d.name.clone(),
                "in the reference but not in the schema".into(),
            ));
            continue;
        };
        let kind = p.data_type.reference_kind();
        if kind != d.kind {
            out.push((
                d.name.clone(),
                format!(
                    "kind: schema {kind} ({}), reference {}",
                    p.data_type.spelling(),
                    d.kind
                ),
            ));
        }
        if p.deprecated != d.deprecated {
            out.push((
                d.name.clone(),
                format!(
                    "deprecated: schema {}, reference {}",
                    p.deprecated, d.deprecated
                ),
            ));
        }
        if p.required != d.required {
            out.push((
                d.name.clone(),
                format!("required: schema {}, reference {}", p.required, d.required),
            ));
        }
    }
    out
}

#[test]
fn schemas_match_the_api_reference() {
    let root = reference_dir();
    // A missing reference must fail: passing silently would hide every drift.
    assert!(
        root.join("operations").is_dir(),
        "API reference not found at {} (expected a checkout of shared/ beside the repository, \
         or set MEWS_REFERENCE_DIR to the mews-connector-api folder)",
        root.display()
    );
    let mut library = Library::open(&root);
    let mismatches: Vec<Mismatch> = schema::all()
        .iter()
        .flat_map(|s| check_schema(&mut library, s))
        .collect();
    let report: Vec<String> = mismatches.iter().map(|m| format!("  {m}")).collect();
    assert!(
        mismatches.is_empty(),
        "{} difference(s) between schemas/ and the API reference at {}:\n{}",
        mismatches.len(),
        root.display(),
        report.join("\n")
    );
}

mod checker {
    //! The checker itself, on a made-up reference, so that a broken parser cannot pass
    //! unnoticed by finding nothing to compare.

    use super::*;

    const THINGS_MD: &str = "\
# Things

## Get all things

```javascript
# not a heading
| `Fake` | string | required | Inside a code block. |
```

#### Thing

| Property | Type | Contract | Description |
| :-- | :-- | :-- | :-- |
| `Id` | string | required | Unique identifier. |
| `Count` | integer | required | How many. |
| `Kind` | [Thing kind](#thing-kind) | optional | Kind of thing. |
| `Price` | [Amount](_objects.md#amount) | optional | Price. |
| `CreatedUtc` | string | required | Creation in UTC timezone in ISO 8601 format. |
| `Labels` | array of string | optional | Labels. |
| ~~`Old`~~ | ~~number~~ | ~~optional~~ | **Deprecated!** |

#### Thing kind

* `Big` - A big one.
* `Small`

#### Thing kind

* `Other`
";

    const OBJECTS_MD: &str = "\
# Common objects

### Amount

| Property | Type | Contract | Description |
| :-- | :-- | :-- | :-- |
| `Value` | number | required | The value. |
";

    /// A schema for `Thing`; `count_type` and `kind_values` let a test break it.
    fn thing_schema(count_type: &str, kind_values: &str) -> EntitySchema {
        let text = format!(
            r#"{{
              "entity": "Thing", "table": "thing",
              "reference": {{ "file": "operations/things.md", "section": "Thing" }},
              "properties": [
                {{ "name": "Id", "type": "string", "required": true }},
                {{ "name": "Count", "type": "{count_type}", "required": true }},
                {{ "name": "Kind", "type": "enum:ThingKind" }},
                {{ "name": "Price", "type": "object:Amount" }},
                {{ "name": "CreatedUtc", "type": "timestamp", "required": true }},
                {{ "name": "Labels", "type": "array<string>" }},
                {{ "name": "Old", "type": "decimal", "deprecated": true }}
              ],
              "objects": {{
                "Amount": {{
                  "reference": {{ "file": "operations/_objects.md", "section": "Amount" }},
                  "properties": [ {{ "name": "Value", "type": "decimal", "required": true }} ]
                }}
              }},
              "enums": {{
                "ThingKind": {{
                  "reference": {{ "file": "operations/things.md", "section": "Thing kind" }},
                  "values": {kind_values}
                }}
              }}
            }}"#
        );
        EntitySchema::from_json("thing.json", &text).expect("test schema parses")
    }

    fn library() -> Library {
        Library::in_memory(&[
            ("operations/things.md", THINGS_MD),
            ("operations/_objects.md", OBJECTS_MD),
        ])
    }

    #[test]
    fn a_matching_schema_has_no_mismatches() {
        let mismatches = check_schema(
            &mut library(),
            &thing_schema("integer", r#"["Big", "Small"]"#),
        );
        assert_eq!(mismatches, vec![]);
    }

    #[test]
    fn a_wrong_kind_is_reported() {
        let mismatches = check_schema(
            &mut library(),
            &thing_schema("string", r#"["Big", "Small"]"#),
        );
        assert_eq!(
            mismatches,
            vec![Mismatch {
                entity: "Thing".into(),
                owner: "Thing (entity)".into(),
                item: "Count".into(),
                detail: "kind: schema string (string), reference integer".into(),
            }]
        );
    }

    #[test]
    fn wrong_enum_values_are_reported() {
        let mismatches = check_schema(&mut library(), &thing_schema("integer", r#"["Big"]"#));
        assert_eq!(mismatches.len(), 1, "{mismatches:?}");
        assert_eq!(mismatches[0].owner, "ThingKind");
        assert!(
            mismatches[0].detail.starts_with("values:"),
            "{}",
            mismatches[0]
        );
    }

    #[test]
    fn a_missing_section_is_reported() {
        let mismatches = check_schema(
            &mut Library::in_memory(&[]),
            &thing_schema("integer", r#"["Big", "Small"]"#),
        );
        assert!(
            mismatches
                .iter()
                .any(|m| m.detail.contains("operations/things.md not found")),
            "{mismatches:?}"
        );
    }

    #[test]
    fn repeated_headings_get_numbered_anchors() {
        let slugs: Vec<String> = parse_sections(THINGS_MD)
            .into_iter()
            .map(|s| s.slug)
            .collect();
        assert_eq!(
            slugs,
            [
                "things",
                "get-all-things",
                "thing",
                "thing-kind",
                "thing-kind-1"
            ]
        );
        assert_eq!(
            slugify("Reservation (ver 2023-06-06)"),
            "reservation-ver-2023-06-06"
        );
    }

    #[test]
    fn relative_links_resolve_from_the_linking_file() {
        assert_eq!(
            join_relative("operations/bills.md", "customers.md"),
            "operations/customers.md"
        );
        assert_eq!(
            join_relative("operations/bills.md", "../guidelines/serialization.md"),
            "guidelines/serialization.md"
        );
    }
}
