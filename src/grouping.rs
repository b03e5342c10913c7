//! Orders a batch's lines by the partition their raw bytes name, so that the rows of one
//! partition come out of the decoder in runs.
//!
//! A partitioned load splits every decoded batch by partition, gathering each partition's
//! rows out of the batch column by column (`sink::writer`). When rows arrive in no order of
//! partition (the usual export: three years of months mixed), each gathered value sits a
//! row or more away from the last one, and the gather is bound by memory latency, not by
//! copying. Decoding the lines of a batch grouped by partition turns those gathers into
//! runs of neighbouring values.
//!
//! The grouping only reads the raw JSON, before it is decoded: for each partition column
//! it finds `"Column":` in the line (searching from near where the last line had it) and
//! takes the value's leading bytes (as many as the time bucket needs: `2024` for a year,
//! `2024-03` for a month, `2024-03-31` for a day); lines whose values hash alike are put
//! together, each group in line order. It is a hint, never the partition itself: the
//! writer computes every row's partition from its decoded value, as it always does. A line
//! the hint gets wrong (the key in a nested object first, an escaped key, an instant with a
//! UTC offset near the end of a month, a null beside a missing value, a line that is not
//! JSON) is still written to its own partition, at the cost of a shorter run, and where one
//! partition's rows end up in several groups the writer puts them back in line order. The
//! files hold the same rows in the same order as without grouping.

use crate::decode::json::is_ws;
use crate::framing::{Line, LineBatch};
use crate::schema::{Granularity, PartitionSpec};
use memchr::memmem;

/// Leading bytes of an identity key's value that take part in the grouping: enough to tell
/// the values of one batch apart, few enough that hashing them stays cheap.
const IDENTITY_KEY_BYTES: usize = 64;

/// How far before the last line's match the search for a column's key starts. Lines of
/// one export list their properties in one order, so a key sits at about the same offset
/// line after line; starting near it skips most of a 2 KB line. When the key is not found
/// from there, the whole line is searched.
const SEARCH_MARGIN: usize = 256;

/// Groups lines by the raw values of a partition specification's columns.
#[derive(Debug)]
pub struct LineGrouper {
    fields: Vec<FieldFinder>,
    /// Per line of the batch being grouped: a hash of its columns' raw values, and its
    /// index (reused between batches).
    hints: Vec<(u64, u32)>,
    /// The lines in their new order (swapped with the batch's, reused between batches).
    grouped: Vec<Line>,
}

/// Finds one partition column's value in a raw line.
#[derive(Debug)]
struct FieldFinder {
    /// `"Column"`, quotes included.
    needle: memmem::Finder<'static>,
    /// Bytes of a string value kept, its opening quote included.
    keep: usize,
    /// Where the key was found in the last line that had it.
    last_at: usize,
}

impl LineGrouper {
    /// A grouper for `spec`'s columns, or `None` for an unpartitioned table.
    pub fn new(spec: &PartitionSpec) -> Option<Self> {
        if spec.fields.is_empty() {
            return None;
        }
        let fields = spec
            .fields
            .iter()
            .map(|f| FieldFinder {
                needle: memmem::Finder::new(format!("\"{}\"", f.column).as_bytes()).into_owned(),
                keep: 1 + match f.granularity {
                    Some(Granularity::Year) => 4,
                    Some(Granularity::Month) => 7,
                    Some(Granularity::Day) => 10,
                    None => IDENTITY_KEY_BYTES,
                },
                last_at: 0,
            })
            .collect();
        Some(LineGrouper {
            fields,
            hints: Vec::new(),
            grouped: Vec::new(),
        })
    }

    /// Reorders `batch.lines` so that lines whose partition columns start with the same
    /// bytes are next to each other, each group in line order. Lines keep their numbers;
    /// nothing else of the batch changes. Groups come in no meaningful order.
    pub fn group(&mut self, batch: &mut LineBatch) {
        let n = batch.lines.len();
        let Ok(count) = u32::try_from(n) else {
            return;
        };
        if n < 2 {
            return;
        }
        self.hints.clear();
        for (index, line) in (0..count).zip(&batch.lines) {
            let content = batch.line(line);
            let mut hint = FNV_OFFSET;
            for field in &mut self.fields {
                let (start, end) = field.value_in(content);
                hint = fnv(hint, &content[start..end]);
                // A separator, so that the values of two columns cannot run together.
                hint = fnv(hint, &[0xff]);
            }
            self.hints.push((hint, index));
        }
        if self.hints.windows(2).all(|w| w[0] <= w[1]) {
            return;
        }
        // The index breaks ties, so an unstable sort keeps each group in line order.
        self.hints.sort_unstable();
        self.grouped.clear();
        self.grouped
            .extend(self.hints.iter().map(|&(_, i)| batch.lines[i as usize]));
        std::mem::swap(&mut batch.lines, &mut self.grouped);
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, continuing from `hash`: a few bytes per line, where a general
/// hasher's setup would cost more than the hashing.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl FieldFinder {
    /// The range of `line` that stands for this field's value: a string's opening quote and
    /// its first bytes up to [`FieldFinder::keep`] (stopping at its closing quote or an
    /// escape), or a number, `true`, `false` or `null` up to its end. Empty when the field
    /// is not found.
    fn value_in(&mut self, line: &[u8]) -> (usize, usize) {
        let from = self.last_at.saturating_sub(SEARCH_MARGIN).min(line.len());
        let found = match self.needle.find(&line[from..]) {
            Some(at) => Some(from + at),
            None if from > 0 => self.needle.find(line),
            None => None,
        };
        let Some(at) = found else {
            return (0, 0);
        };
        self.last_at = at;
        let mut i = at + self.needle.needle().len();
        while i < line.len() && is_ws(line[i]) {
            i += 1;
        }
        if line.get(i) != Some(&b':') {
            return (0, 0);
        }
        i += 1;
        while i < line.len() && is_ws(line[i]) {
            i += 1;
        }
        let start = i;
        if line.get(i) == Some(&b'"') {
            let limit = line.len().min(start + self.keep);
            i += 1;
            while i < limit && line[i] != b'"' && line[i] != b'\\' {
                i += 1;
            }
        } else {
            let limit = line.len().min(start + IDENTITY_KEY_BYTES);
            while i < limit && !matches!(line[i], b',' | b'}' | b']') && !is_ws(line[i]) {
                i += 1;
            }
        }
        (start, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    /// A batch of `lines`, numbered from 1.
    fn batch_of(lines: &[&str]) -> LineBatch {
        let mut batch = LineBatch::default();
        for (i, content) in lines.iter().enumerate() {
            let start = batch.data.len();
            batch.data.extend_from_slice(content.as_bytes());
            batch.lines.push(Line {
                number: i as u64 + 1,
                start,
                end: batch.data.len(),
            });
        }
        batch
    }

    fn grouper(spec: &str) -> LineGrouper {
        let schema = schema::find("OrderItem").expect("OrderItem schema");
        let spec = schema.parse_partition_spec(spec).expect("valid spec");
        LineGrouper::new(&spec).expect("a partitioned spec")
    }

    /// `lines` as a batch, grouped under `spec`.
    fn grouped(spec: &str, lines: &[&str]) -> LineBatch {
        let mut batch = batch_of(lines);
        grouper(spec).group(&mut batch);
        batch
    }

    fn numbers(batch: &LineBatch) -> Vec<u64> {
        batch.lines.iter().map(|l| l.number).collect()
    }

    /// Asserts that `batch`'s lines come as `groups`, each in line order, the groups in any
    /// order.
    fn assert_groups(batch: &LineBatch, groups: &[&[u64]]) {
        let got = numbers(batch);
        let mut rest = &got[..];
        let mut left = groups.to_vec();
        while !rest.is_empty() {
            let Some(next) = left.iter().position(|g| rest.starts_with(g)) else {
                panic!("{got:?} is not made of the groups {groups:?}");
            };
            rest = &rest[left.remove(next).len()..];
        }
        assert!(left.is_empty(), "{got:?} lacks the groups {left:?}");
    }

    #[test]
    fn lines_of_a_month_come_together_in_line_order() {
        let mut batch = batch_of(&[
            r#"{"Id":"a","ConsumedUtc":"2024-03-09T10:00:00Z"}"#,
            r#"{"Id":"b","ConsumedUtc":"2023-12-31T23:59:59Z"}"#,
            r#"{"Id":"c", "ConsumedUtc" : "2024-03-01T00:00:00Z"}"#,
            r#"{"Id":"d","ConsumedUtc":"2023-12-01T00:00:00Z"}"#,
            r#"{"Id":"e","ConsumedUtc":"2024-03-31T00:00:00Z"}"#,
        ]);
        let before = batch.clone();
        grouper("ConsumedUtc:month").group(&mut batch);
        assert_groups(&batch, &[&[1, 3, 5], &[2, 4]]);
        // Only the order of the lines changes: each still points at its own content.
        assert_eq!(batch.data, before.data);
        for line in &batch.lines {
            let original = before.lines[line.number as usize - 1];
            assert_eq!(*line, original);
        }
    }

    #[test]
    fn the_granularity_decides_what_counts_as_the_same_key() {
        let lines = [
            r#"{"ConsumedUtc":"2024-03-09T10:00:00Z"}"#,
            r#"{"ConsumedUtc":"2023-12-31T23:59:59Z"}"#,
            r#"{"ConsumedUtc":"2024-03-08T10:00:00Z"}"#,
            r#"{"ConsumedUtc":"2024-03-09T23:00:00Z"}"#,
        ];
        let by_year = grouped("ConsumedUtc:year", &lines);
        assert_groups(&by_year, &[&[1, 3, 4], &[2]]);
        let by_day = grouped("ConsumedUtc:day", &lines);
        assert_groups(&by_day, &[&[1, 4], &[2], &[3]]);
    }

    #[test]
    fn lines_without_a_usable_value_are_grouped_too_and_none_is_lost() {
        let batch = grouped(
            "ConsumedUtc:month",
            &[
                r#"{"ConsumedUtc":"2024-03-09T10:00:00Z"}"#,
                r#"not json at all"#,
                r#"{"ConsumedUtc":null}"#,
                r#"{"ConsumedUtc":"2024-03-\u00309T10:00:00Z"}"#,
                r#"{"Notes":"ConsumedUtc","Id":"x"}"#,
                r#"{"ConsumedUtc""#,
                r#"{"ConsumedUtc":"#,
                r#"{"ConsumedUtc":"2024-03"#,
                r#"{"ConsumedUtc":null}"#,
            ],
        );
        let mut seen = numbers(&batch);
        seen.sort_unstable();
        assert_eq!(seen, (1..=9).collect::<Vec<_>>());
        // The two nulls are one group, in line order.
        let at = |n: u64| batch.lines.iter().position(|l| l.number == n).unwrap();
        assert_eq!(at(9), at(3) + 1);
    }

    #[test]
    fn a_key_far_from_where_the_last_line_had_it_is_still_found() {
        let long = "x".repeat(2 * SEARCH_MARGIN);
        let far = format!(r#"{{"Notes":"{long}","ConsumedUtc":"2024-03-09T10:00:00Z"}}"#);
        let batch = grouped(
            "ConsumedUtc:month",
            &[
                &far,
                r#"{"ConsumedUtc":"2023-12-31T23:59:59Z"}"#,
                &far,
                r#"{"ConsumedUtc":"2023-11-01T00:00:00Z"}"#,
                r#"{"ConsumedUtc":"2023-12-01T00:00:00Z"}"#,
            ],
        );
        // Had the short lines' key not been found, all three would hash as empty and come
        // together in line order, 4 between 2 and 5.
        assert_groups(&batch, &[&[1, 3], &[2, 5], &[4]]);
    }

    #[test]
    fn several_columns_group_by_all_of_them() {
        let batch = grouped(
            "ConsumedUtc:month,AccountType",
            &[
                r#"{"AccountType":"Customer","ConsumedUtc":"2024-03-09T10:00:00Z"}"#,
                r#"{"AccountType":"Company","ConsumedUtc":"2024-03-09T10:00:00Z"}"#,
                r#"{"AccountType":"Customer","ConsumedUtc":"2024-02-09T10:00:00Z"}"#,
                r#"{"AccountType":"Customer","ConsumedUtc":"2024-03-19T10:00:00Z"}"#,
            ],
        );
        assert_groups(&batch, &[&[1, 4], &[2], &[3]]);
    }

    #[test]
    fn lines_of_one_group_stay_as_they_are() {
        let mut batch = batch_of(&[
            r#"{"ConsumedUtc":"2024-03-09T10:00:00Z"}"#,
            r#"{"ConsumedUtc":"2024-03-01T10:00:00Z"}"#,
        ]);
        let before = batch.clone();
        grouper("ConsumedUtc:month").group(&mut batch);
        assert_eq!(batch.lines, before.lines);
    }

    #[test]
    fn an_unpartitioned_table_has_no_grouper() {
        assert!(LineGrouper::new(&PartitionSpec::default()).is_none());
    }
}
