//! `boolean` properties → Arrow `Boolean`.

use super::column::{ColumnDecoder, RowContext};
use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{next_capacity, Validity};
use arrow::array::builder::BooleanBufferBuilder;
use arrow::array::{ArrayRef, BooleanArray};
use arrow::buffer::BooleanBuffer;
use std::sync::Arc;

/// Decodes `true`/`false`.
pub struct BooleanDecoder {
    values: BooleanBufferBuilder,
    nulls: Validity,
}

impl Default for BooleanDecoder {
    fn default() -> Self {
        BooleanDecoder {
            values: BooleanBufferBuilder::new(0),
            nulls: Validity::default(),
        }
    }
}

impl ColumnDecoder for BooleanDecoder {
    fn decode(&mut self, cur: &mut Cursor<'_>, _ctx: &mut RowContext) -> Result<(), Fault> {
        if cur.is_at(Token::Bool) {
            let v = cur.parse_bool()?;
            self.values.append(v);
            self.nulls.append_non_null();
            return Ok(());
        }
        let found = cur.token()?;
        Err(Fault::mismatch(cur.offset(), "a boolean", found.describe()))
    }

    fn append_null(&mut self) {
        self.values.append(false);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.nulls.truncate(len);
    }

    fn finish(&mut self) -> ArrayRef {
        let next = BooleanBufferBuilder::new(next_capacity(self.values.len()));
        let values: BooleanBuffer = std::mem::replace(&mut self.values, next).finish();
        Arc::new(BooleanArray::new(values, self.nulls.finish()))
    }
}
