//! Line framing plus the typed decoder of one entity type, as the load pipeline drives
//! them: every input gives rows or rejected lines, never a panic, and
//! - every framed line is accounted for exactly once (row, rejection or blank line);
//! - the record batch is well formed, one `_line` per row, in line order;
//! - `_extra` holds a JSON object whenever it is set;
//! - a rejected line leaves nothing behind: decoding only the accepted lines gives the
//!   same batch.
//!
//! Input: byte 0 picks the entity type (of the ten), byte 1 the chunk size and line
//! limit, the rest is the file.

#![no_main]

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use libfuzzer_sys::fuzz_target;
use mews_etl::decode::{DecodedBatch, RecordDecoder};
use mews_etl::framing::{LineBatch, LineFramer, DEFAULT_MAX_LINE_BYTES};
use mews_etl::schema;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Two decoders per entity type, reused from input to input as the pipeline reuses one
    /// from batch to batch (and because building one per input would dominate the run
    /// time). Whatever an input leaves behind after a flush would show in the comparison.
    static DECODERS: RefCell<HashMap<usize, [RecordDecoder; 2]>> = RefCell::new(HashMap::new());
}

/// Frames `file` `chunk` bytes at a time and decodes each framed batch, flushing after the
/// first batch with lines and at the end; also returns the framer's line count and the
/// framed non-blank lines.
fn load(
    decoder: &mut RecordDecoder,
    file: &[u8],
    chunk: usize,
    max_line: usize,
) -> (Vec<DecodedBatch>, u64, Vec<(u64, Vec<u8>)>) {
    let mut framer = LineFramer::new(max_line);
    let mut batch = LineBatch::default();
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut step = |framer: &mut LineFramer, piece: Option<&[u8]>| {
        batch.clear();
        match piece {
            Some(piece) => framer.push(piece, &mut batch),
            None => framer.finish(&mut batch),
        }
        for l in &batch.lines {
            lines.push((l.number, batch.line(l).to_vec()));
        }
        decoder.decode_batch(&batch);
        if piece.is_none() || (out.is_empty() && !batch.is_empty()) {
            out.push(decoder.flush());
        }
    };
    for piece in file.chunks(chunk) {
        step(&mut framer, Some(piece));
    }
    step(&mut framer, None);
    (out, framer.lines_seen(), lines)
}

fuzz_target!(|data: &[u8]| {
    let [entity, shape, file @ ..] = data else {
        return;
    };
    let all = schema::all();
    let chunk = (*shape as usize % 64 + 1) * 37;
    let max_line = if shape & 0x80 != 0 {
        (*shape as usize & 0x7f) * 16
    } else {
        DEFAULT_MAX_LINE_BYTES
    };

    let index = *entity as usize % all.len();
    DECODERS.with(|cell| {
        let mut map = cell.borrow_mut();
        let [first, replay] = map.entry(index).or_insert_with(|| {
            let schema = &all[index];
            [
                RecordDecoder::new(schema, "fuzz", "fuzz.jsonl"),
                RecordDecoder::new(schema, "fuzz", "fuzz.jsonl"),
            ]
        });
        check(first, replay, file, chunk, max_line);
    });
});

/// Loads `file` with `first`, checks the invariants, and replays the accepted lines alone
/// through `replay`.
fn check(
    first: &mut RecordDecoder,
    replay: &mut RecordDecoder,
    file: &[u8],
    chunk: usize,
    max_line: usize,
) {
    let (decoded, lines_seen, framed) = load(first, file, chunk, max_line);
    let mut lines_read = 0;
    let mut accounted = 0;
    let mut last_line = 0;
    let mut accepted: Vec<i64> = Vec::new();
    let mut rows = Vec::new();
    for d in &decoded {
        let b = &d.batch;
        let c = &d.counts;
        lines_read += c.lines_read;
        accounted += c.rows_written + c.rejected + c.blank_lines;
        assert_eq!(c.rows_written, b.num_rows() as u64);
        assert_eq!(c.rejected, d.rejects.len() as u64);
        for column in b.columns() {
            assert_eq!(column.len(), b.num_rows());
        }
        let line = b
            .column_by_name("_line")
            .unwrap()
            .as_primitive::<Int64Type>();
        for n in line.values().iter() {
            assert!(*n > last_line, "rows out of line order");
            last_line = *n;
            accepted.push(*n);
        }
        let extra = b.column_by_name("_extra").unwrap().as_string::<i32>();
        for value in extra.iter().flatten() {
            // IgnoredAny checks the syntax without converting numbers, which JSON does not
            // bound (1e400 is valid JSON and is kept as written).
            match serde_json::from_str::<serde::de::IgnoredAny>(value) {
                Ok(_) => assert!(value.starts_with('{'), "_extra {value:?}"),
                // A kept value at the decoder's own depth limit sits one level deeper in
                // _extra than serde_json's default limit; that is the only way to fail.
                Err(e) => assert!(
                    e.to_string().starts_with("recursion limit exceeded"),
                    "_extra {value:?}: {e}"
                ),
            }
        }
        for r in &d.rejects {
            assert!(r.line >= 1 && r.line <= lines_seen);
            assert!(!r.reason.is_empty());
        }
        if b.num_rows() > 0 {
            rows.push(b.clone());
        }
    }
    assert_eq!(lines_read, lines_seen);
    assert_eq!(accounted, lines_seen);

    // The accepted lines alone, through the other decoder, must give exactly the same rows.
    let decoder = replay;
    let mut kept = accepted.iter().peekable();
    for (number, content) in &framed {
        if kept.peek().is_some_and(|&&n| n == *number as i64) {
            kept.next();
            decoder.decode_line(*number, content);
        }
    }
    assert!(kept.next().is_none(), "an accepted line was not framed");
    let again = decoder.flush();
    assert!(again.rejects.is_empty(), "{:?}", again.rejects);
    let first = arrow::compute::concat_batches(decoder.schema(), &rows).unwrap();
    assert_eq!(first, again.batch);
}
