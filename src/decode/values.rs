//! Fixed-width columns: growable, truncatable storage for values and their validity, and
//! the one decoder shared by every fixed-width kind, which differ only in [`PrimitiveKind`].

use super::column::{ColumnDecoder, RowContext};
use super::fault::Fault;
use super::json::{Cursor, Token};
use arrow::array::builder::NullBufferBuilder;
use arrow::array::ArrayRef;
use arrow::buffer::{NullBuffer, ScalarBuffer};
use std::marker::PhantomData;

/// Values of one fixed-width column with a validity bitmap that is only materialised once
/// a null appears (most columns of most batches have none).
#[derive(Debug)]
pub struct Values<T> {
    /// One value per row; a default value stands in for nulls.
    pub values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T: Copy + Default> Default for Values<T> {
    fn default() -> Self {
        Values {
            values: Vec::new(),
            nulls: NullBufferBuilder::new(0),
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
        match cur.token()? {
            t if t == K::TOKEN => {
                let v = K::parse(cur)?;
                self.values.push(v);
                Ok(())
            }
            other => Err(Fault::mismatch(cur.offset(), K::EXPECTED, other.describe())),
        }
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
