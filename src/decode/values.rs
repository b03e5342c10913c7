//! Growable, truncatable storage for fixed-width values and their validity.

use arrow::array::builder::NullBufferBuilder;
use arrow::buffer::{NullBuffer, ScalarBuffer};

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

    /// Takes the values and validity, leaving the storage empty.
    pub fn take(&mut self) -> (ScalarBuffer<T>, Option<NullBuffer>) {
        let values = std::mem::take(&mut self.values);
        (ScalarBuffer::from(values), self.nulls.finish())
    }
}
