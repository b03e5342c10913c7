//! Whether a file's lines are records of the entity type they are loaded as, or plainly of
//! another one.
//!
//! Drift is loaded, not refused: a property the API added, or a required one it stopped
//! sending, must not stop a load. But a file of another entity type (a Payment export given
//! `--entity OrderItem`) is drift in every property: it would load as rows of nulls, report
//! every column as drift, and exit 0. The two are told apart by the other entity types: a
//! file is refused only when none of its first lines fits the entity type given while every
//! one of them fits one other entity type. Real drift of the given type does not fit
//! another type's required properties, so it still loads.
//!
//! Only the top-level property names count (not values: they are the decoders' business),
//! so the check costs a key scan of [`SAMPLE_LINES`] lines per file.

use super::json::{Cursor, Token};
use crate::framing::LineBatch;
use crate::schema::{self, EntitySchema};
use std::collections::BTreeSet;

/// Lines of a file's first batch that are looked at.
pub const SAMPLE_LINES: usize = 64;

/// Share of a line's properties another entity type must know for the line to be one of its
/// records: not all, so that a file of that type with some drift of its own is still
/// recognised.
const KNOWN_SHARE: f64 = 0.9;

/// Lines that are records of another entity type than the one given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The entity type every sampled line fits.
    pub likely: &'static str,
    /// Lines looked at: the first [`SAMPLE_LINES`] non-blank lines of the file, or fewer.
    pub lines: usize,
    /// The JSON objects among them, all records of [`Mismatch::likely`].
    pub sampled: usize,
    /// Required properties of the given entity type missing from every sampled line.
    pub missing: Vec<String>,
    /// Properties of the sampled lines the given entity type does not have.
    pub unknown: Vec<String>,
}

/// Checks the first lines of `batch` (a file's first batch) against `schema`: `Some` when
/// they are records of another entity type, `None` when they fit `schema`, or fit no type
/// plainly (drift, or not records at all: the decoders say what is wrong with them).
pub fn check(schema: &EntitySchema, batch: &LineBatch) -> Option<Mismatch> {
    let looked_at = batch.lines.len().min(SAMPLE_LINES);
    let lines: Vec<BTreeSet<String>> = batch.lines[..looked_at]
        .iter()
        .filter_map(|line| top_level_keys(batch.line(line)))
        .collect();
    check_keys(schema, looked_at, &lines)
}

/// The verdict on the property names of the JSON objects among `looked_at` lines.
fn check_keys(
    schema: &EntitySchema,
    looked_at: usize,
    lines: &[BTreeSet<String>],
) -> Option<Mismatch> {
    if lines.is_empty() || lines.iter().any(|keys| fits(schema, keys)) {
        return None;
    }
    let mut likely = schema::all()
        .iter()
        .filter(|other| other.entity != schema.entity)
        .filter(|other| lines.iter().all(|keys| is_record_of(other, keys)));
    let likely = likely.next().filter(|_| likely.next().is_none())?;
    let missing = required(schema)
        .filter(|name| lines.iter().all(|keys| !keys.contains(*name)))
        .map(str::to_owned)
        .collect();
    let unknown: BTreeSet<&String> = lines
        .iter()
        .flatten()
        .filter(|key| schema.property(key).is_none())
        .collect();
    Some(Mismatch {
        likely: likely.entity.as_str(),
        lines: looked_at,
        sampled: lines.len(),
        missing,
        unknown: unknown.into_iter().cloned().collect(),
    })
}

/// A record of `schema` with no drift at all: every required property, nothing unknown.
fn fits(schema: &EntitySchema, keys: &BTreeSet<String>) -> bool {
    required(schema).all(|name| keys.contains(name))
        && keys.iter().all(|key| schema.property(key).is_some())
}

/// A record of `schema`, drift allowed within [`KNOWN_SHARE`]: every required property, and
/// most of the line's properties known.
fn is_record_of(schema: &EntitySchema, keys: &BTreeSet<String>) -> bool {
    let known = keys
        .iter()
        .filter(|key| schema.property(key).is_some())
        .count();
    required(schema).all(|name| keys.contains(name))
        && known as f64 >= KNOWN_SHARE * keys.len() as f64
}

fn required(schema: &EntitySchema) -> impl Iterator<Item = &str> {
    schema
        .properties
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
}

/// The property names of a line holding one JSON object; `None` for anything else.
fn top_level_keys(line: &[u8]) -> Option<BTreeSet<String>> {
    let mut cursor = Cursor::from_bytes(line);
    if cursor.peek().ok()? != Token::Object {
        return None;
    }
    cursor.begin_object().ok()?;
    let mut keys = BTreeSet::new();
    let mut first = true;
    while let Some(key) = cursor.next_key(first).ok()? {
        keys.insert(key.to_cow().ok()?.into_owned());
        cursor.raw_value_bytes().ok()?;
        first = false;
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::LineFramer;

    fn batch(text: &str) -> LineBatch {
        let mut batch = LineBatch::default();
        let mut framer = LineFramer::new(1 << 20);
        framer.push(text.as_bytes(), &mut batch);
        framer.finish(&mut batch);
        batch
    }

    /// A line with every top-level property of `schema`, all null (only names count).
    fn full_line(schema: &EntitySchema) -> String {
        let members: Vec<String> = schema
            .properties
            .iter()
            .map(|p| format!("\"{}\":null", p.name))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    fn entity(name: &str) -> &'static EntitySchema {
        schema::find(name).expect("entity")
    }

    #[test]
    fn every_entity_types_records_are_told_from_every_other_type() {
        for from in schema::all() {
            let lines = batch(&format!("{}\n", full_line(from)).repeat(3));
            assert_eq!(check(from, &lines), None, "{} as itself", from.entity);
            for other in schema::all().iter().filter(|s| s.entity != from.entity) {
                let found = check(other, &lines);
                assert_eq!(
                    found.as_ref().map(|m| m.likely),
                    Some(from.entity.as_str()),
                    "{} loaded as {}",
                    from.entity,
                    other.entity
                );
            }
        }
    }

    #[test]
    fn only_required_properties_are_enough_to_be_recognised() {
        let order_item = entity("OrderItem");
        let members: Vec<String> = required(order_item)
            .map(|name| format!("\"{name}\":1"))
            .collect();
        let lines = batch(&format!("{{{}}}\n", members.join(",")));
        let found = check(entity("Reservation"), &lines).expect("a mismatch");
        assert_eq!(found.likely, "OrderItem");
        assert_eq!((found.lines, found.sampled), (1, 1));
        assert!(found.missing.iter().any(|m| m == "Number"), "{found:?}");
        assert!(found.unknown.iter().any(|m| m == "UnitAmount"), "{found:?}");
    }

    #[test]
    fn drift_of_the_given_type_still_loads() {
        let reservation = entity("Reservation");
        // A property the API added, and a required one it stopped sending.
        let first_required = required(reservation).find(|n| *n != "Id").expect("one");
        let line = full_line(reservation)
            .replace(&format!("\"{first_required}\":null,"), "")
            .replacen('{', "{\"SomethingNew\":1,", 1);
        assert_eq!(check(reservation, &batch(&format!("{line}\n"))), None);
    }

    #[test]
    fn one_line_that_fits_the_given_type_is_enough() {
        let text = format!(
            "{}\n{}\n",
            full_line(entity("OrderItem")),
            full_line(entity("Reservation"))
        );
        assert_eq!(check(entity("Reservation"), &batch(&text)), None);
    }

    #[test]
    fn lines_that_are_not_objects_are_looked_at_but_not_counted_as_records() {
        let text = format!("garbage\n[1]\n{}\n", full_line(entity("Payment")));
        let found = check(entity("OrderItem"), &batch(&text)).expect("a mismatch");
        assert_eq!(
            (found.likely, found.lines, found.sampled),
            ("Payment", 3, 1)
        );
    }

    #[test]
    fn lines_of_no_type_and_non_objects_give_no_verdict() {
        let text = "{\"a\":1}\n[1,2]\nnot json\n{\"Id\":\"x\"\n\"str\"\n";
        assert_eq!(check(entity("OrderItem"), &batch(text)), None);
        assert_eq!(check(entity("OrderItem"), &batch("")), None);
    }

    #[test]
    fn escaped_and_spaced_keys_are_read_as_names() {
        let order_item = entity("OrderItem");
        let members: Vec<String> = required(order_item)
            .map(|name| format!(" \"{}\" : 1 ", name.replacen('I', "\\u0049", 1)))
            .collect();
        let lines = batch(&format!("{{{}}}\n", members.join(",")));
        assert_eq!(
            check(entity("Payment"), &lines).map(|m| m.likely),
            Some("OrderItem")
        );
    }
}
