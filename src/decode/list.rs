//! `array<…>` properties → Arrow `List`.

use super::column::{make_decoder, ColumnDecoder, RowContext};
use super::fault::Fault;
use super::json::{Cursor, Token};
use super::values::{next_capacity, Validity};
use crate::schema::DataType;
use arrow::array::{ArrayRef, ListArray};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{Field, FieldRef};
use std::sync::Arc;

/// Decodes a JSON array element by element into one child column.
pub struct ListDecoder {
    item_field: FieldRef,
    item: Box<dyn ColumnDecoder>,
    offsets: Vec<i32>,
    nulls: Validity,
}

impl ListDecoder {
    /// A decoder for arrays of `item`, found at `path`.
    pub fn new(item: &DataType, path: &str) -> Self {
        ListDecoder {
            item_field: Arc::new(Field::new("item", item.arrow_type(), true)),
            item: make_decoder(item, &format!("{path}[]")),
            offsets: vec![0],
            nulls: Validity::default(),
        }
    }
}

impl ColumnDecoder for ListDecoder {
    fn decode(&mut self, cur: &mut Cursor<'_>, ctx: &mut RowContext) -> Result<(), Fault> {
        let token = cur.peek()?;
        if token != Token::Array {
            return Err(Fault::mismatch(cur.offset(), "an array", token.describe()));
        }
        cur.begin_array()?;
        let mut index = 0usize;
        ctx.list_indices.push(0);
        while cur.next_element(index == 0)? {
            if let Some(last) = ctx.list_indices.last_mut() {
                *last = index;
            }
            if cur.at_null() {
                cur.parse_null()?;
                self.item.append_null();
            } else {
                self.item
                    .decode(cur, ctx)
                    .map_err(|f| f.within(&format!("[{index}]")))?;
            }
            index += 1;
        }
        ctx.list_indices.pop();
        let end = i32::try_from(self.item.len())
            .map_err(|_| Fault::syntax(cur.offset(), "too many array elements in one batch"))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    fn append_null(&mut self) {
        self.offsets.push(*self.offsets.last().unwrap_or(&0));
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.item.truncate(self.offsets[len] as usize);
        self.nulls.truncate(len);
    }

    fn finish(&mut self) -> ArrayRef {
        let mut next = Vec::with_capacity(next_capacity(self.offsets.len()));
        next.push(0);
        let offsets = std::mem::replace(&mut self.offsets, next);
        let values = self.item.finish();
        Arc::new(ListArray::new(
            self.item_field.clone(),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            values,
            self.nulls.finish(),
        ))
    }
}
