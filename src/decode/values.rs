//! Fixed-width columns: growable, truncatable storage for values and their validity, and
//! the one decoder shared by every fixed-width kind, which differ only in [`PrimitiveKind`].

use super::column::{ColumnDecoder, RowContext};
use super::fault::Fault;
use super::json::{Cursor, Token};
use arrow::array::builder::BooleanBufferBuilder;
use arrow::array::ArrayRef;
use arrow::buffer::{NullBuffer, ScalarBuffer};
use std::marker::PhantomData;

/// Values of one fixed-width column with a validity bitmap that is only materialised once
/// a null appears (most columns of most batches have none).
#[derive(Debug)]
pub struct Values<T> {
    /// One value per row; a default value stands in for nulls.
    pub values: Vec<T>,
    nulls: Validity,
}

impl<T: Copy + Default> Default for Values<T> {
    fn default() -> Self {
        Values {
            values: Vec::new(),
            nulls: Validity::default(),
        }
    }
}

impl<T: Copy + Default + arrow::datatypes::ArrowNativeType> Values<T> {
    /// Appends a valid value.
    #[inline]
    pub fn push(&mut self, v: T) {
        self.values.push(v);
        self.nulls.append_non_null();
    }

    /// Appends a null.
    #[inline]
    pub fn push_null(&mut self) {
        self.values.push(T::default());
        self.nulls.append_null();
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Keeps the first `len` rows.
    pub fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.nulls.truncate(len);
    }

    /// Takes the values and validity, leaving the storage empty but sized for a batch
    /// like this one (the taken buffer moves into the Arrow array, so it cannot be reused).
    pub fn take(&mut self) -> (ScalarBuffer<T>, Option<NullBuffer>) {
        let next = Vec::with_capacity(next_capacity(self.values.len()));
        let values = std::mem::replace(&mut self.values, next);
        (ScalarBuffer::from(values), self.nulls.finish())
    }
}

/// Which rows of a column are null, kept as runs of consecutive nulls rather than a bit
/// per row: marking a row valid is then one addition, where a bitmap builder that has
/// materialised (as it does in any batch with a null) sets a bit and checks its capacity
/// for every row. A column null in every row of a batch is a single run. The bitmap is
/// built once per batch, in [`Validity::finish`].
#[derive(Debug, Default)]
pub struct Validity {
    len: usize,
    /// Null rows as `[start, end)` runs, ascending and not touching.
    runs: Vec<(usize, usize)>,
}

impl Validity {
    /// Appends a valid row.
    #[inline(always)]
    pub fn append_non_null(&mut self) {
        self.len += 1;
    }

    /// Appends a null row.
    #[inline]
    pub fn append_null(&mut self) {
        match self.runs.last_mut() {
            Some((_, end)) if *end == self.len => *end += 1,
            _ => self.runs.push((self.len, self.len + 1)),
        }
        self.len += 1;
    }

    /// Keeps the first `len` rows.
    pub fn truncate(&mut self, len: usize) {
        while let Some((start, end)) = self.runs.last_mut() {
            if *start >= len {
                self.runs.pop();
            } else {
                *end = (*end).min(len);
                break;
            }
        }
        self.len = self.len.min(len);
    }

    /// The validity of the rows appended so far (`None` when none is null), leaving it
    /// empty.
    pub fn finish(&mut self) -> Option<NullBuffer> {
        let len = std::mem::take(&mut self.len);
        if self.runs.is_empty() {
            return None;
        }
        let mut bits = BooleanBufferBuilder::new(len);
        let mut at = 0;
        for (start, end) in self.runs.drain(..) {
            bits.append_n(start - at, true);
            bits.append_n(end - start, false);
            at = end;
        }
        bits.append_n(len - at, true);
        Some(NullBuffer::new(bits.finish()))
    }
}

/// Capacity to reserve for the next batch of a column that held `len` items in the last:
/// batches of one load are alike, so this saves growing the buffer by doubling (and copying
/// it) every batch, with some headroom so that a slightly larger batch needs no regrowth.
pub fn next_capacity(len: usize) -> usize {
    len + len / 8
}

/// What sets one fixed-width column kind apart: which JSON values it takes, how one becomes
/// its native value, and which Arrow array holds the values.
pub trait PrimitiveKind: 'static {
    /// The Arrow native type of a value.
    type Native: Copy + Default + arrow::datatypes::ArrowNativeType + Send;
    /// The JSON token its values start with.
    const TOKEN: Token;
    /// How the kind is named in errors (`an integer`).
    const EXPECTED: &'static str;
    /// Parses the value at the cursor, which is at a [`PrimitiveKind::TOKEN`].
    fn parse(cur: &mut Cursor<'_>) -> Result<Self::Native, Fault>;
    /// Builds the Arrow array of the values.
    fn array(values: ScalarBuffer<Self::Native>, nulls: Option<NullBuffer>) -> ArrayRef;
}

/// Decodes one fixed-width kind of value into [`Values`].
pub struct PrimitiveDecoder<K: PrimitiveKind> {
    values: Values<K::Native>,
    kind: PhantomData<fn() -> K>,
}

impl<K: PrimitiveKind> Default for PrimitiveDecoder<K> {
    fn default() -> Self {
        PrimitiveDecoder {
            values: Values::default(),
            kind: PhantomData,
        }
    }
}

impl<K: PrimitiveKind> ColumnDecoder for PrimitiveDecoder<K> {
    #[inline]
    fn decode(&mut self, cur: &mut Cursor<'_>, _ctx: &mut RowContext) -> Result<(), Fault> {
        if cur.is_at(K::TOKEN) {
            let v = K::parse(cur)?;
            self.values.push(v);
            return Ok(());
        }
        let found = cur.token()?;
        Err(Fault::mismatch(cur.offset(), K::EXPECTED, found.describe()))
    }

    fn append_null(&mut self) {
        self.values.push_null();
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
    }

    fn finish(&mut self) -> ArrayRef {
        let (values, nulls) = self.values.take();
        K::array(values, nulls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::builder::NullBufferBuilder;

    /// Null runs give the same validity as arrow's builder over any sequence of appends,
    /// rollbacks and batch ends (a small deterministic generator covers long and short
    /// runs, truncation into, before and after runs, and empty batches).
    /// Row validity as booleans; no buffer means every row is valid.
    fn bits(nulls: &Option<NullBuffer>, len: usize) -> Vec<bool> {
        match nulls {
            Some(n) => n.iter().collect(),
            None => vec![true; len],
        }
    }

    #[test]
    fn validity_agrees_with_the_null_buffer_builder() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut ours = Validity::default();
        let mut theirs = NullBufferBuilder::new(0);
        let mut len = 0usize;
        for step in 0..20_000 {
            match next(100) {
                0..=44 => {
                    ours.append_non_null();
                    theirs.append_non_null();
                    len += 1;
                }
                45..=89 => {
                    ours.append_null();
                    theirs.append_null();
                    len += 1;
                }
                90..=96 => {
                    let keep = next(len as u64 + 1) as usize;
                    ours.truncate(keep);
                    theirs.truncate(keep);
                    len = keep;
                }
                _ => {
                    let ours = ours.finish();
                    assert_eq!(bits(&ours, len), bits(&theirs.finish(), len), "step {step}");
                    // Arrow's builder may keep a buffer without nulls; this never does.
                    assert!(ours.is_none_or(|n| n.null_count() > 0));
                    len = 0;
                }
            }
        }
        assert_eq!(bits(&ours.finish(), len), bits(&theirs.finish(), len));
        // A batch without nulls has no buffer at all.
        ours.append_non_null();
        assert_eq!(ours.finish(), None);
    }
}
