//! `string`, `enum:` and `json` properties → Arrow `Utf8`.

use super::column::{ColumnDecoder, Drift, DriftKind, RowContext};
use super::fault::Fault;
use super::json::{short_eq, Cursor, Token};
use super::values::{next_capacity, Validity};
use crate::schema::Enum;
use arrow::array::{ArrayRef, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use std::sync::Arc;

/// What a string column holds.
pub enum StringKind {
    /// Any JSON string.
    Plain,
    /// A documented enum: values outside it are kept and counted as drift.
    Enum {
        /// The documented values.
        values: Arc<Enum>,
        /// The property's path, to name the drift.
        path: Arc<str>,
        /// Finds the only documented value a string can be.
        index: EnumIndex,
    },
    /// Any JSON value, kept as its exact JSON text.
    Json,
}

/// Bits of the [`EnumIndex`] slot number: 256 slots, sparse enough for a perfect hash of
/// the largest documented enums (a few dozen values) to be found within a few tries.
const INDEX_BITS: u32 = 8;

/// Finds an enum value's position with one hash and one comparison rather than comparing
/// it with every documented value: the hash of a value's length and first and last bytes,
/// with a multiplier chosen when the decoder is built so that no two documented values
/// share a slot. When no multiplier separates them all (never for the documented enums),
/// it falls back to comparing with each value.
#[derive(Debug, Clone)]
pub struct EnumIndex {
    multiplier: u64,
    /// Value position + 1 per slot, 0 for an empty slot; empty when there is no perfect hash.
    slots: Box<[u8]>,
}

impl EnumIndex {
    /// The index of `values`.
    pub fn new(values: &[String]) -> Self {
        let size = 1usize << INDEX_BITS;
        if values.len() < size && values.len() < usize::from(u8::MAX) {
            let mut slots = vec![0u8; size];
            for multiplier in (1..4_000u64).map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1) {
                slots.fill(0);
                let placed = values.iter().enumerate().all(|(i, v)| {
                    let slot = &mut slots[Self::slot(multiplier, v.as_bytes())];
                    let free = *slot == 0;
                    *slot = i as u8 + 1;
                    free
                });
                if placed {
                    return EnumIndex {
                        multiplier,
                        slots: slots.into(),
                    };
                }
            }
        }
        EnumIndex {
            multiplier: 0,
            slots: Box::default(),
        }
    }

    #[inline(always)]
    fn slot(multiplier: u64, v: &[u8]) -> usize {
        let n = v.len();
        let word = |at: usize| u64::from_le_bytes(v[at..at + 8].try_into().expect("eight bytes"));
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                v[at..at + 4].try_into().expect("four bytes"),
            ))
        };
        // The first and last eight bytes (or four, or each byte of a short value), so
        // values differing only in the middle of a long name are the only ones left to
        // the fallback.
        let (head, tail) = match n {
            8.. => (word(0), word(n - 8)),
            4..8 => (half(0), half(n - 4)),
            _ => (v.iter().fold(0, |k, &b| k << 8 | u64::from(b)), 0),
        };
        let key = head ^ tail.rotate_left(23) ^ (n as u64) << 58;
        (key.wrapping_mul(multiplier) >> (64 - INDEX_BITS)) as usize
    }

    /// Position of `value` in `values` (the values the index was built from), if any.
    #[inline(always)]
    pub fn find(&self, values: &[String], value: &[u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return Self::find_by_comparing(values, value);
        }
        let i = usize::from(self.slots[Self::slot(self.multiplier, value)]).checked_sub(1)?;
        let candidate = values.get(i)?;
        short_eq(candidate.as_bytes(), value).then_some(i)
    }

    #[inline(never)]
    fn find_by_comparing(values: &[String], value: &[u8]) -> Option<usize> {
        values.iter().position(|v| short_eq(v.as_bytes(), value))
    }
}

/// Counts a value outside the documented enum as drift; out of line, as it is rare.
#[cold]
#[inline(never)]
fn unknown_enum_value(path: &str, value: &[u8], ctx: &mut RowContext) {
    let value = String::from_utf8_lossy(value);
    ctx.drift.push(Drift {
        kind: DriftKind::UnknownEnumValue,
        key: format!("{path}={value}").into(),
    });
}

/// Decodes strings (or raw JSON) into one contiguous value buffer plus offsets.
pub struct StringDecoder {
    kind: StringKind,
    bytes: Vec<u8>,
    offsets: Vec<i32>,
    nulls: Validity,
}

impl StringDecoder {
    /// A decoder for `kind`.
    pub fn new(kind: StringKind) -> Self {
        StringDecoder {
            kind,
            bytes: Vec::new(),
            offsets: vec![0],
            nulls: Validity::default(),
        }
    }

    #[inline]
    fn close_value(&mut self, at: usize) -> Result<(), Fault> {
        let end = i32::try_from(self.bytes.len())
            .map_err(|_| Fault::syntax(at, "more than 2 GiB of text in one batch"))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }
}

impl ColumnDecoder for StringDecoder {
    #[inline]
    fn decode(&mut self, cur: &mut Cursor<'_>, ctx: &mut RowContext) -> Result<(), Fault> {
        let at = cur.offset();
        let is_string = cur.is_at(Token::String);
        match &self.kind {
            StringKind::Plain if is_string => {
                cur.string_into(&mut self.bytes)?;
            }
            StringKind::Enum {
                values,
                path,
                index,
            } if is_string => {
                let start = self.bytes.len();
                cur.string_into(&mut self.bytes)?;
                let value = &self.bytes[start..];
                if index.find(&values.values, value).is_none() {
                    unknown_enum_value(path, value, ctx);
                }
            }
            StringKind::Json => {
                let raw = cur.raw_value_bytes()?;
                self.bytes.extend_from_slice(raw);
            }
            _ => {
                let found = cur.token()?;
                return Err(Fault::mismatch(at, "a string", found.describe()));
            }
        }
        self.close_value(at)
    }

    fn append_null(&mut self) {
        self.offsets.push(self.bytes.len() as i32);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.bytes.truncate(self.offsets[len] as usize);
        self.nulls.truncate(len);
    }

    fn finish(&mut self) -> ArrayRef {
        let mut next_offsets = Vec::with_capacity(next_capacity(self.offsets.len()));
        next_offsets.push(0);
        let offsets = std::mem::replace(&mut self.offsets, next_offsets);
        let next_bytes = Vec::with_capacity(next_capacity(self.bytes.len()));
        let bytes = std::mem::replace(&mut self.bytes, next_bytes);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        // Every value was copied from validated UTF-8 text or unescaped into UTF-8, so this
        // check cannot fail; it is kept (rather than skipped with `unsafe`) as a guard.
        let array = StringArray::try_new(offsets, Buffer::from_vec(bytes), self.nulls.finish())
            .expect("decoded strings are valid UTF-8");
        Arc::new(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented enum gets a perfect hash (so no decoder falls back to comparing
    /// with each value), and the index finds exactly the documented values.
    #[test]
    fn enum_indexes_find_exactly_the_documented_values() {
        for schema in crate::schema::all() {
            for (e, _) in &schema.enums {
                let index = EnumIndex::new(&e.values);
                assert!(!index.slots.is_empty(), "no perfect hash for {}", e.name);
                for (i, v) in e.values.iter().enumerate() {
                    assert_eq!(index.find(&e.values, v.as_bytes()), Some(i), "{v}");
                    for other in [format!("{v}x"), v.to_lowercase(), v[1..].to_owned()] {
                        if !e.values.contains(&other) {
                            assert_eq!(index.find(&e.values, other.as_bytes()), None);
                        }
                    }
                }
                assert_eq!(index.find(&e.values, b""), None);
            }
        }
    }

    #[test]
    fn an_enum_without_a_perfect_hash_falls_back_to_comparing() {
        // Values the hash cannot tell apart: same length, first and last eight bytes.
        let values: Vec<String> = ["FirstEig1LastEight", "FirstEig2LastEight"]
            .map(String::from)
            .into();
        let index = EnumIndex::new(&values);
        assert!(index.slots.is_empty());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(index.find(&values, v.as_bytes()), Some(i));
        }
        assert_eq!(index.find(&values, b"FirstEig3LastEight"), None);
    }
}
