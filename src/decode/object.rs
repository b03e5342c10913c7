//! `object:` properties → Arrow `Struct`, and the top level of every row.

use super::column::{join_path, make_decoder, ColumnDecoder, Drift, DriftKind, RowContext};
use super::fault::Fault;
use super::json::{Cursor, KeyPattern, Token};
use crate::schema::Property;
use arrow::array::builder::NullBufferBuilder;
use arrow::array::{ArrayRef, StructArray};
use arrow::datatypes::Fields;
use std::sync::Arc;

/// One known property of an object.
struct Member {
    name: Box<str>,
    /// The name with its quotes and a colon, for the byte-exact fast path of key matching.
    quoted: KeyPattern,
    required: bool,
    /// Equal to the decoder's stamp when the member was present in the object being
    /// decoded; the stamp changes per object so that nothing needs clearing between rows.
    seen: u32,
    /// Path used to name drift on this property, computed once.
    path: Arc<str>,
    decoder: Box<dyn ColumnDecoder>,
}

/// Decodes a JSON object: each known property into its child column, unknown properties
/// into the row's `_extra`, missing required ones counted as drift.
pub struct ObjectDecoder {
    fields: Fields,
    members: Vec<Member>,
    /// This object's path template (empty at the top level).
    path: Arc<str>,
    /// Stamp of the object being decoded (see [`Member::seen`]).
    stamp: u32,
    /// A member whose absence makes the value unrepresentable (the row's `Id`).
    key_member: Option<usize>,
    nulls: NullBufferBuilder,
    len: usize,
}

impl ObjectDecoder {
    /// A decoder for an object with `props`, found at `path`.
    pub fn new(props: &[Property], path: &str) -> Self {
        let members: Vec<Member> = props
            .iter()
            .map(|p| {
                let member_path = join_path(path, &p.name);
                Member {
                    name: p.name.as_str().into(),
                    quoted: KeyPattern::new(&p.name),
                    required: p.required,
                    seen: 0,
                    decoder: make_decoder(&p.data_type, &member_path),
                    path: member_path.into(),
                }
            })
            .collect();
        ObjectDecoder {
            fields: crate::schema::fields_of(props).into(),
            members,
            path: path.into(),
            stamp: 0,
            key_member: None,
            nulls: NullBufferBuilder::new(0),
            len: 0,
        }
    }

    /// Makes a line without a non-null `name` unrepresentable (rejected), e.g. the `Id`.
    pub fn with_key(mut self, name: &str) -> Self {
        self.key_member = self.members.iter().position(|m| &*m.name == name);
        self
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.name == key)
    }

    fn next_stamp(&mut self) -> u32 {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            for m in &mut self.members {
                m.seen = 0;
            }
            self.stamp = 1;
        }
        self.stamp
    }

    /// Takes the child columns, leaving the decoder empty (the top level uses this, as its
    /// columns become the record batch's columns rather than one struct).
    pub fn finish_columns(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        self.nulls.finish();
        self.members
            .iter_mut()
            .map(|m| m.decoder.finish())
            .collect()
    }
}

impl ColumnDecoder for ObjectDecoder {
    fn decode(&mut self, cur: &mut Cursor<'_>, ctx: &mut RowContext) -> Result<(), Fault> {
        let token = cur.peek()?;
        if token != Token::Object {
            return Err(Fault::mismatch(cur.offset(), "an object", token.describe()));
        }
        let start = cur.offset();
        cur.begin_object()?;
        let stamp = self.next_stamp();
        let mut guess = 0;
        let mut first = true;
        let mut key_is_null = false;
        // Distinct members present; when all are, no member needs a null appended.
        let mut present = 0;
        while cur.next_member(first)? {
            first = false;
            let key_offset = cur.offset();
            // Exports write properties in a stable order, so the member after the previous
            // one is almost always next: compare its quoted name in place, and only read and
            // unescape the key when that fails.
            let i = match self.members.get(guess) {
                Some(m) if cur.eat_key(&m.quoted) => guess,
                _ => {
                    let raw_key = cur.member_key()?;
                    let key = raw_key.to_cow()?;
                    match self.find(&key) {
                        Some(i) => i,
                        None => {
                            // Named in the error, so a rejection (say, nesting too deep)
                            // says where, as it does for known properties.
                            let raw = cur.raw_value().map_err(|f| f.within(&key))?;
                            if !ctx.unknown_property(&self.path, &key, raw) {
                                return Err(Fault::syntax(key_offset, "property appears twice")
                                    .within(&key));
                            }
                            continue;
                        }
                    }
                }
            };
            guess = i + 1;
            let Some(member) = self.members.get_mut(i) else {
                continue;
            };
            if member.seen == stamp {
                let name = &member.name;
                return Err(Fault::syntax(key_offset, "property appears twice").within(name));
            }
            member.seen = stamp;
            present += 1;
            if cur.at_null() {
                cur.parse_null()?;
                member.decoder.append_null();
                key_is_null |= self.key_member == Some(i);
                if member.required {
                    ctx.drift.push(Drift {
                        kind: DriftKind::MissingRequired,
                        key: member.path.clone(),
                    });
                }
            } else {
                // An empty identifier identifies nothing: as good as none.
                key_is_null |= self.key_member == Some(i) && cur.at_empty_string();
                member
                    .decoder
                    .decode(cur, ctx)
                    .map_err(|f| f.within(&member.name))?;
            }
        }
        let absent = self.members.len() - present;
        let missing = self.members.iter_mut().filter(|m| m.seen != stamp);
        for member in missing.take(absent) {
            member.decoder.append_null();
            if member.required {
                ctx.drift.push(Drift {
                    kind: DriftKind::MissingRequired,
                    key: member.path.clone(),
                });
            }
        }
        if let Some(k) = self.key_member {
            let m = &self.members[k];
            if m.seen != stamp || key_is_null {
                return Err(Fault::syntax(
                    start,
                    format!("no {} (required to identify the row)", m.name),
                ));
            }
        }
        self.nulls.append_non_null();
        self.len += 1;
        Ok(())
    }

    fn append_null(&mut self) {
        for m in &mut self.members {
            m.decoder.append_null();
        }
        self.nulls.append_null();
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) {
        for m in &mut self.members {
            m.decoder.truncate(len);
        }
        self.nulls.truncate(len);
        self.len = len;
    }

    fn finish(&mut self) -> ArrayRef {
        let nulls = self.nulls.finish();
        let columns: Vec<ArrayRef> = self
            .members
            .iter_mut()
            .map(|m| m.decoder.finish())
            .collect();
        self.len = 0;
        Arc::new(StructArray::new(self.fields.clone(), columns, nulls))
    }
}
