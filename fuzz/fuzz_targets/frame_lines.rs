//! The line framer against a plain restatement of its rules, with the input pushed in
//! chunks of a size the input chooses: the lines, numbers, oversized reports and counts
//! must not depend on where the chunks were cut, and no line may exceed the limit.
//!
//! Input: byte 0 picks the line limit, byte 1 the chunk size, the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mews_etl::framing::{LineBatch, LineFramer, OVERSIZED_PREFIX_BYTES};

/// Everything a framing run produced, independent of how the stream was cut.
#[derive(Debug, Default, PartialEq, Eq)]
struct Framed {
    lines: Vec<(u64, Vec<u8>)>,
    oversized: Vec<(u64, u64, Vec<u8>)>,
    blank_lines: u64,
    lines_read: u64,
}

impl Framed {
    fn absorb(&mut self, batch: &LineBatch) {
        for line in &batch.lines {
            self.lines.push((line.number, batch.line(line).to_vec()));
        }
        for o in &batch.oversized {
            self.oversized.push((o.number, o.length, o.prefix.clone()));
        }
        self.blank_lines += batch.blank_lines;
        self.lines_read += batch.lines_read;
    }
}

/// Frames `stream` pushed `chunk` bytes at a time, clearing the batch after every push
/// (as the pipeline does) when `drain` is set.
fn frame(stream: &[u8], max: usize, chunk: usize, drain: bool) -> Framed {
    let mut framer = LineFramer::new(max);
    let mut batch = LineBatch::default();
    let mut framed = Framed::default();
    for piece in stream.chunks(chunk.max(1)) {
        framer.push(piece, &mut batch);
        if drain {
            framed.absorb(&batch);
            batch.clear();
        }
    }
    framer.finish(&mut batch);
    framed.absorb(&batch);
    assert_eq!(framer.lines_seen(), framed.lines_read);
    framed
}

/// The rules, stated as plainly as possible.
fn reference(stream: &[u8], max: usize) -> Framed {
    let body = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let mut parts: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    // A trailing newline ends the last line rather than starting an empty one.
    let terminated = parts.len() - 1;
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    let mut framed = Framed::default();
    for (index, part) in parts.into_iter().enumerate() {
        let number = index as u64 + 1;
        let content = if index < terminated {
            part.strip_suffix(b"\r").unwrap_or(part)
        } else {
            part
        };
        framed.lines_read += 1;
        if content.len() > max {
            let prefix = content[..content.len().min(OVERSIZED_PREFIX_BYTES)].to_vec();
            framed
                .oversized
                .push((number, content.len() as u64, prefix));
        } else if content.iter().all(|b| b" \t\r".contains(b)) {
            framed.blank_lines += 1;
        } else {
            framed.lines.push((number, content.to_vec()));
        }
    }
    framed
}

fuzz_target!(|data: &[u8]| {
    let [limit, chunk, stream @ ..] = data else {
        return;
    };
    // Small limits exercise the oversized path; 255 stands for "no practical limit".
    let max = if *limit == 255 {
        usize::MAX
    } else {
        *limit as usize * 8
    };
    let chunk = *chunk as usize + 1;
    let expected = reference(stream, max);
    let whole = frame(stream, max, stream.len(), false);
    assert_eq!(whole, expected);
    assert_eq!(frame(stream, max, chunk, true), expected);
    assert_eq!(frame(stream, max, chunk, false), expected);
    for (_, content) in &expected.lines {
        assert!(content.len() <= max);
    }
});
