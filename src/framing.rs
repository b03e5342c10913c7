//! Bytes → numbered lines, with a length limit; no I/O.
//!
//! [`LineFramer`] is a push framer: feed it byte chunks split anywhere (inside a CRLF,
//! inside the BOM, inside a line) with [`LineFramer::push`], call [`LineFramer::finish`] at
//! the end of the stream, and it appends the same lines to a [`LineBatch`] as one push of
//! the whole stream would. Keeping this free of I/O lets the async reader in
//! [`crate::input`] stay a thin shell and lets the rules below be tested exhaustively.
//!
//! Rules:
//! - Line numbers are 1-based and count every line, blank ones too, so a number names the
//!   same line a text editor shows.
//! - LF ends a line; a CR right before it is dropped (CRLF files).
//! - A UTF-8 byte order mark at the very start of the stream is skipped; anywhere else it is
//!   data.
//! - A last line without a newline is still a line (emitted by `finish`).
//! - A blank line (empty, or only spaces, tabs and CRs) is counted but carries no row.
//! - A line longer than the limit is never buffered whole: the framer keeps its first
//!   [`OVERSIZED_PREFIX_BYTES`] for the quarantine, counts the rest and drops it.

use memchr::memchr;

/// Default maximum line length: 64 MiB.
///
/// Far above any single Connector API record, yet small enough that one corrupt file
/// without newlines cannot take the process's memory with it.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// How much of an over-long line is kept: enough to recognise the record in a quarantine
/// report without keeping the line itself.
pub const OVERSIZED_PREFIX_BYTES: usize = 1024;

/// The UTF-8 byte order mark, which some Windows tools put at the start of text files.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Splits a byte stream into numbered lines, carrying a partial line across [`push`] calls.
///
/// [`push`]: LineFramer::push
#[derive(Debug)]
pub struct LineFramer {
    /// Longest line content accepted, terminator excluded.
    max_line_bytes: usize,
    /// Line numbers issued so far.
    lines_seen: u64,
    /// How many leading bytes of the stream matched the BOM so far.
    bom_matched: usize,
    /// Whether the start of the stream has been checked for a BOM (and skipped past it).
    is_bom_checked: bool,
    /// The start of a line whose newline has not arrived yet; at most `max_line_bytes + 1`
    /// bytes (the extra byte may be the CR of a CRLF).
    pending: Vec<u8>,
    /// Set while skipping the rest of an over-long line.
    discard: Option<Discard>,
}

/// What is kept of an over-long line while its remaining bytes are skipped.
#[derive(Debug)]
struct Discard {
    /// The first [`OVERSIZED_PREFIX_BYTES`] bytes of the line.
    prefix: Vec<u8>,
    /// Bytes of the line seen so far, a trailing CR included.
    raw_length: u64,
    /// Whether the last byte seen was a CR, which is dropped if an LF follows.
    ends_with_cr: bool,
}

impl LineFramer {
    /// Creates a framer that accepts lines of up to `max_line_bytes` bytes (terminator
    /// excluded) and reports longer ones as [`OversizedLine`]s.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            lines_seen: 0,
            bom_matched: 0,
            is_bom_checked: false,
            pending: Vec::new(),
            discard: None,
        }
    }

    /// Frames `input`, appending complete lines to `out`. Partial last line is kept.
    pub fn push(&mut self, input: &[u8], out: &mut LineBatch) {
        let input = self.skip_bom(input, out);
        self.push_bytes(input, out);
    }

    /// End of stream: emits a final line without newline, if any.
    ///
    /// The framer is left empty; pushing more bytes afterwards starts a new line (but not a
    /// new stream: line numbers go on and no BOM is looked for).
    pub fn finish(&mut self, out: &mut LineBatch) {
        if !self.is_bom_checked {
            // A stream shorter than the BOM that began like one: those bytes are data.
            self.is_bom_checked = true;
            self.push_bytes(&BOM[..self.bom_matched], out);
        }
        if self.discard.is_some() || !self.pending.is_empty() {
            self.end_pending(false, out);
        }
    }

    /// Line numbers issued so far (blank lines included).
    pub fn lines_seen(&self) -> u64 {
        self.lines_seen
    }

    /// Consumes BOM bytes at the start of the stream and returns the rest of `input`.
    fn skip_bom<'a>(&mut self, mut input: &'a [u8], out: &mut LineBatch) -> &'a [u8] {
        while !self.is_bom_checked {
            let Some((&byte, rest)) = input.split_first() else {
                // Ran out inside a possible BOM: wait for the next push to decide.
                return input;
            };
            if byte == BOM[self.bom_matched] {
                self.bom_matched += 1;
                input = rest;
                self.is_bom_checked = self.bom_matched == BOM.len();
            } else {
                // Not a BOM after all: the bytes held back so far are the line's start.
                self.is_bom_checked = true;
                self.push_bytes(&BOM[..self.bom_matched], out);
            }
        }
        input
    }

    /// Frames bytes that follow the BOM check.
    fn push_bytes(&mut self, mut input: &[u8], out: &mut LineBatch) {
        while let Some(at) = memchr(b'\n', input) {
            let segment = &input[..at];
            if self.pending.is_empty() && self.discard.is_none() {
                // Fast path: the whole line is inside `input`; copy it once, straight to `out`.
                let number = self.next_number();
                emit(number, strip_cr(segment), self.max_line_bytes, out);
            } else {
                self.extend_pending(segment);
                self.end_pending(true, out);
            }
            input = &input[at + 1..];
        }
        if !input.is_empty() {
            self.extend_pending(input);
        }
    }

    /// Adds bytes to the unfinished line, switching to discard mode once it cannot fit.
    fn extend_pending(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(discard) = &mut self.discard {
            discard.add(bytes);
            return;
        }
        // One byte of slack: a line of exactly the limit may still be followed by CR LF.
        let limit = self.max_line_bytes.saturating_add(1);
        if self.pending.len() + bytes.len() <= limit {
            self.pending.extend_from_slice(bytes);
            return;
        }
        let mut discard = Discard {
            prefix: Vec::with_capacity(OVERSIZED_PREFIX_BYTES),
            raw_length: 0,
            ends_with_cr: false,
        };
        discard.add(&self.pending);
        discard.add(bytes);
        self.pending.clear();
        self.discard = Some(discard);
    }

    /// Ends the unfinished line, at an LF if `is_terminated`, else at the end of the stream.
    fn end_pending(&mut self, is_terminated: bool, out: &mut LineBatch) {
        let number = self.next_number();
        if let Some(discard) = self.discard.take() {
            out.lines_read += 1;
            out.oversized
                .push(discard.into_oversized(number, is_terminated));
        } else {
            let content = if is_terminated {
                strip_cr(&self.pending)
            } else {
                &self.pending[..]
            };
            emit(number, content, self.max_line_bytes, out);
            self.pending.clear();
        }
    }

    fn next_number(&mut self) -> u64 {
        self.lines_seen += 1;
        self.lines_seen
    }
}

impl Discard {
    fn add(&mut self, bytes: &[u8]) {
        let room = OVERSIZED_PREFIX_BYTES.saturating_sub(self.prefix.len());
        self.prefix
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.raw_length += bytes.len() as u64;
        if let Some(&last) = bytes.last() {
            self.ends_with_cr = last == b'\r';
        }
    }

    fn into_oversized(mut self, number: u64, is_terminated: bool) -> OversizedLine {
        let mut length = self.raw_length;
        if is_terminated && self.ends_with_cr {
            // The CR belongs to the CRLF terminator, not to the line.
            length -= 1;
            if self.raw_length as usize <= OVERSIZED_PREFIX_BYTES {
                self.prefix.pop();
            }
        }
        OversizedLine {
            number,
            length,
            prefix: self.prefix,
        }
    }
}

/// Appends one complete line (terminator already removed) to `out`.
fn emit(number: u64, content: &[u8], max_line_bytes: usize, out: &mut LineBatch) {
    out.lines_read += 1;
    if content.len() > max_line_bytes {
        out.oversized.push(OversizedLine {
            number,
            length: content.len() as u64,
            prefix: content[..content.len().min(OVERSIZED_PREFIX_BYTES)].to_vec(),
        });
    } else if is_blank(content) {
        out.blank_lines += 1;
    } else {
        let start = out.data.len();
        out.data.extend_from_slice(content);
        out.lines.push(Line {
            number,
            start,
            end: out.data.len(),
        });
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether a line carries no record. Stops at the first other byte, which for a JSON line
/// is almost always the first one, so this costs next to nothing.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// A batch of framed lines, sharing one byte buffer (reused between batches: clear() keeps capacity).
#[derive(Debug, Default, Clone)]
pub struct LineBatch {
    /// Concatenated line contents, without terminators.
    pub data: Vec<u8>,
    /// Non-blank lines within the limit, in line order as framed (a partitioned load's
    /// decoder regroups them by partition first, see [`crate::grouping`]); each indexes into
    /// `data`.
    pub lines: Vec<Line>,
    /// Lines over the limit, in order; only their prefix is kept.
    pub oversized: Vec<OversizedLine>,
    /// Blank lines framed into this batch.
    pub blank_lines: u64,
    /// All lines framed into this batch (blank + non-blank + oversized).
    pub lines_read: u64,
}

/// Line batches handed back once decoded, for the framing stage to fill again: a load frames
/// its whole input into the few batches in flight (bounded by the queues between stages)
/// instead of allocating a fresh buffer of `batch_bytes` per batch, whose first touch of
/// every page costs a page fault.
#[derive(Debug, Clone, Default)]
pub struct BatchPool {
    free: std::sync::Arc<std::sync::Mutex<Vec<LineBatch>>>,
}

impl BatchPool {
    /// An empty batch whose buffer holds `data_bytes` without growing: one handed back if
    /// any, else a new one.
    pub fn take(&self, data_bytes: usize) -> LineBatch {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match reused {
            // A buffer grown far past the usual size (by a line longer than a batch) is
            // let go rather than kept for the rest of the load.
            Some(mut batch) if batch.data.capacity() <= data_bytes.saturating_mul(2) => {
                batch.data.reserve(data_bytes);
                batch
            }
            _ => LineBatch::with_capacity(data_bytes),
        }
    }

    /// Hands a batch back, emptied, for [`BatchPool::take`].
    pub fn give(&self, mut batch: LineBatch) {
        batch.clear();
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(batch);
    }
}

impl LineBatch {
    /// Creates an empty batch whose buffer holds `data_bytes` without growing.
    pub fn with_capacity(data_bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(data_bytes),
            ..Self::default()
        }
    }

    /// Empties the batch, keeping its allocations for the next one.
    pub fn clear(&mut self) {
        self.data.clear();
        self.lines.clear();
        self.oversized.clear();
        self.blank_lines = 0;
        self.lines_read = 0;
    }

    /// The content of `line`, which must come from this batch.
    pub fn line(&self, line: &Line) -> &[u8] {
        &self.data[line.start..line.end]
    }

    /// Bytes of line content held (line data plus oversized-line prefixes): what a batch
    /// size limit is measured against.
    pub fn len_bytes(&self) -> usize {
        self.data.len() + self.oversized.iter().map(|o| o.prefix.len()).sum::<usize>()
    }

    /// Whether no line of any kind (not even a blank one) was framed into this batch.
    pub fn is_empty(&self) -> bool {
        self.lines_read == 0
    }
}

/// One non-blank line of a [`LineBatch`]: its content is `data[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the (decompressed) stream, blank lines counted.
    pub number: u64,
    /// Offset of the first content byte in [`LineBatch::data`].
    pub start: usize,
    /// Offset one past the last content byte in [`LineBatch::data`].
    pub end: usize,
}

/// A line longer than the limit, reported instead of being buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedLine {
    /// 1-based line number in the (decompressed) stream.
    pub number: u64,
    /// Full length of the line content in bytes, terminator excluded.
    pub length: u64,
    /// The first [`OVERSIZED_PREFIX_BYTES`] bytes of the line.
    pub prefix: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_handed_back_are_filled_again_empty() {
        let pool = BatchPool::default();
        let mut framer = LineFramer::new(DEFAULT_MAX_LINE_BYTES);
        let mut batch = pool.take(64);
        framer.push(b"{\"a\":1}\n\n", &mut batch);
        let buffer = batch.data.as_ptr();
        pool.give(batch);
        let again = pool.take(64);
        assert_eq!(again.data.as_ptr(), buffer, "the same buffer");
        assert!(again.is_empty() && again.data.is_empty() && again.lines.is_empty());
        assert_eq!((again.lines_read, again.blank_lines), (0, 0));
        assert!(again.data.capacity() >= 64);
        let other = pool.take(64);
        assert_ne!(other.data.as_ptr(), buffer, "a new one when none is free");
        let mut grown = pool.take(64);
        grown.data.extend_from_slice(&[b'x'; 1000]);
        pool.give(grown);
        assert!(
            pool.take(64).data.capacity() < 1000,
            "a buffer grown by a long line is let go"
        );
    }

    /// Everything a framing run produced, independent of how batches were cut.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Framed {
        lines: Vec<(u64, Vec<u8>)>,
        oversized: Vec<OversizedLine>,
        blank_lines: u64,
        lines_read: u64,
        lines_seen: u64,
    }

    impl Framed {
        fn absorb(&mut self, batch: &LineBatch) {
            for line in &batch.lines {
                self.lines.push((line.number, batch.line(line).to_vec()));
            }
            self.oversized.extend(batch.oversized.iter().cloned());
            self.blank_lines += batch.blank_lines;
            self.lines_read += batch.lines_read;
        }
    }

    /// Frames `chunks` in order into one batch.
    fn frame_chunks(chunks: &[&[u8]], max: usize) -> Framed {
        let mut framer = LineFramer::new(max);
        let mut batch = LineBatch::default();
        for chunk in chunks {
            framer.push(chunk, &mut batch);
        }
        framer.finish(&mut batch);
        let mut framed = Framed::default();
        framed.absorb(&batch);
        framed.lines_seen = framer.lines_seen();
        assert_eq!(framed.lines_seen, framed.lines_read);
        framed
    }

    /// Frames `chunks`, draining and clearing the batch after every push.
    fn frame_chunks_draining(chunks: &[&[u8]], max: usize) -> Framed {
        let mut framer = LineFramer::new(max);
        let mut batch = LineBatch::default();
        let mut framed = Framed::default();
        for chunk in chunks {
            framer.push(chunk, &mut batch);
            framed.absorb(&batch);
            batch.clear();
            assert!(batch.is_empty() && batch.len_bytes() == 0);
        }
        framer.finish(&mut batch);
        framed.absorb(&batch);
        framed.lines_seen = framer.lines_seen();
        framed
    }

    /// A plain restatement of the rules, to check the framer against.
    fn reference(input: &[u8], max: usize) -> Framed {
        let body = input.strip_prefix(&BOM[..]).unwrap_or(input);
        let mut framed = Framed::default();
        let mut parts: Vec<(&[u8], bool)> = Vec::new();
        let mut rest = body;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            parts.push((&rest[..at], true));
            rest = &rest[at + 1..];
        }
        if !rest.is_empty() {
            parts.push((rest, false));
        }
        for (index, (part, is_terminated)) in parts.into_iter().enumerate() {
            let number = index as u64 + 1;
            let content = if is_terminated {
                part.strip_suffix(b"\r").unwrap_or(part)
            } else {
                part
            };
            framed.lines_read += 1;
            if content.len() > max {
                framed.oversized.push(OversizedLine {
                    number,
                    length: content.len() as u64,
                    prefix: content[..content.len().min(OVERSIZED_PREFIX_BYTES)].to_vec(),
                });
            } else if content.iter().all(|b| b" \t\r".contains(b)) {
                framed.blank_lines += 1;
            } else {
                framed.lines.push((number, content.to_vec()));
            }
        }
        framed.lines_seen = framed.lines_read;
        framed
    }

    /// Small deterministic generator, so failures reproduce without a seed in the output.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &point in points {
            chunks.push(&input[start..point]);
            start = point;
        }
        chunks.push(&input[start..]);
        chunks
    }

    /// Checks every one- and two-point split, byte-at-a-time and random multi-splits
    /// against one push of the whole input and against the reference.
    fn check_all_splits(input: &[u8], max: usize) {
        let whole = frame_chunks(&[input], max);
        assert_eq!(whole, reference(input, max), "whole input {input:?}");
        let n = input.len();
        for i in 0..=n {
            let chunks = split_at_points(input, &[i]);
            assert_eq!(
                frame_chunks(&chunks, max),
                whole,
                "split at {i} of {input:?}"
            );
            assert_eq!(frame_chunks_draining(&chunks, max), whole);
            if n <= 40 {
                for j in i..=n {
                    let chunks = split_at_points(input, &[i, j]);
                    assert_eq!(frame_chunks(&chunks, max), whole, "split {i},{j}");
                }
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(frame_chunks_draining(&bytes, max), whole, "byte at a time");
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ n as u64);
        for _ in 0..50 {
            let mut points: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(n + 1)).collect();
            points.sort_unstable();
            let chunks = split_at_points(input, &points);
            assert_eq!(
                frame_chunks_draining(&chunks, max),
                whole,
                "splits {points:?}"
            );
        }
    }

    fn line(number: u64, content: &str) -> (u64, Vec<u8>) {
        (number, content.as_bytes().to_vec())
    }

    #[test]
    fn lf_lines_are_numbered_from_one() {
        let framed = frame_chunks(&[b"{\"a\":1}\n{\"b\":2}\n"], 100);
        assert_eq!(
            framed.lines,
            vec![line(1, "{\"a\":1}"), line(2, "{\"b\":2}")]
        );
        assert_eq!((framed.lines_read, framed.blank_lines), (2, 0));
        check_all_splits(b"{\"a\":1}\n{\"b\":2}\n", 100);
    }

    #[test]
    fn crlf_is_stripped_at_every_split() {
        let input = b"{\"a\":1}\r\n{\"b\":2}\r\n";
        let framed = frame_chunks(&[input], 100);
        assert_eq!(
            framed.lines,
            vec![line(1, "{\"a\":1}"), line(2, "{\"b\":2}")]
        );
        check_all_splits(input, 100);
    }

    #[test]
    fn only_one_cr_is_stripped_and_only_before_lf() {
        let framed = frame_chunks(&[b"a\r\r\nb\rc\nd\r"], 100);
        assert_eq!(
            framed.lines,
            vec![line(1, "a\r"), line(2, "b\rc"), line(3, "d\r")]
        );
        check_all_splits(b"a\r\r\nb\rc\nd\r", 100);
    }

    #[test]
    fn bom_is_skipped_at_start_only() {
        let input = b"\xEF\xBB\xBF{}\n\xEF\xBB\xBF{}\n";
        let framed = frame_chunks(&[input], 100);
        assert_eq!(
            framed.lines,
            vec![line(1, "{}"), (2, b"\xEF\xBB\xBF{}".to_vec())]
        );
        check_all_splits(input, 100);
    }

    #[test]
    fn partial_bom_is_data() {
        for input in [
            &b"\xEF\xBB"[..],
            b"\xEF\xBBx\n",
            b"\xEFx",
            b"\xEF\n",
            b"\xEF\xBB\xEF",
        ] {
            let framed = frame_chunks(&[input], 100);
            assert_eq!(framed.lines_read, 1, "{input:?}");
            assert_eq!(framed.lines.len(), 1, "{input:?}");
            check_all_splits(input, 100);
        }
    }

    #[test]
    fn last_line_without_newline_is_emitted_by_finish() {
        let mut framer = LineFramer::new(100);
        let mut batch = LineBatch::default();
        framer.push(b"{}\n{\"x\":1}", &mut batch);
        assert_eq!(batch.lines.len(), 1);
        framer.finish(&mut batch);
        assert_eq!(batch.lines.len(), 2);
        assert_eq!(batch.line(&batch.lines[1]), b"{\"x\":1}");
        assert_eq!(batch.lines[1].number, 2);
        check_all_splits(b"{}\n{\"x\":1}", 100);
    }

    #[test]
    fn blank_and_whitespace_lines_are_counted_not_emitted() {
        let input = b"\n{}\n  \n\t\r\n \r\n{}\n\n";
        let framed = frame_chunks(&[input], 100);
        assert_eq!(framed.lines, vec![line(2, "{}"), line(6, "{}")]);
        assert_eq!(framed.blank_lines, 5);
        assert_eq!(framed.lines_read, 7);
        check_all_splits(input, 100);
        check_all_splits(b"   ", 100);
        check_all_splits(b"\r\n\r\n\r", 100);
    }

    #[test]
    fn empty_input_and_bom_only_give_no_lines() {
        assert_eq!(frame_chunks(&[], 100), Framed::default());
        assert_eq!(frame_chunks(&[b""], 100), Framed::default());
        assert_eq!(frame_chunks(&[b"\xEF\xBB\xBF"], 100), Framed::default());
        check_all_splits(b"\xEF\xBB\xBF", 100);
        let framed = frame_chunks(&[b"\xEF\xBB\xBF\n"], 100);
        assert_eq!((framed.lines_read, framed.blank_lines), (1, 1));
    }

    #[test]
    fn line_of_exactly_max_is_accepted_and_max_plus_one_is_not() {
        let max = 8;
        for terminator in ["", "\n", "\r\n"] {
            let exact = format!("{{\"a\":12}}{terminator}");
            let framed = frame_chunks(&[exact.as_bytes()], max);
            assert_eq!(framed.lines, vec![line(1, "{\"a\":12}")], "{exact:?}");
            check_all_splits(exact.as_bytes(), max);

            let over = format!("{{\"a\":123}}{terminator}");
            let framed = frame_chunks(&[over.as_bytes()], max);
            assert!(framed.lines.is_empty());
            assert_eq!(
                framed.oversized,
                vec![OversizedLine {
                    number: 1,
                    length: 9,
                    prefix: b"{\"a\":123}".to_vec()
                }],
                "{over:?}"
            );
            check_all_splits(over.as_bytes(), max);
        }
    }

    #[test]
    fn oversized_lines_keep_numbering_and_neighbours() {
        let input = b"ab\r\nabcdefgh\r\n\ncd\nabcdefghijk\nabcdef";
        let framed = frame_chunks(&[input], 4);
        assert_eq!(framed.lines, vec![line(1, "ab"), line(4, "cd")]);
        let numbers: Vec<(u64, u64)> = framed
            .oversized
            .iter()
            .map(|o| (o.number, o.length))
            .collect();
        assert_eq!(numbers, vec![(2, 8), (5, 11), (6, 6)]);
        assert_eq!(framed.oversized[0].prefix, b"abcdefgh");
        assert_eq!((framed.lines_read, framed.blank_lines), (6, 1));
        check_all_splits(input, 4);
        check_all_splits(input, 0);
        check_all_splits(input, 5);
    }

    #[test]
    fn oversized_prefix_is_capped_and_line_is_not_buffered() {
        let max = 2000;
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\r\n{}\n");
        let mut framer = LineFramer::new(max);
        let mut batch = LineBatch::default();
        for chunk in input.chunks(100) {
            framer.push(chunk, &mut batch);
            assert!(framer.pending.len() <= max + 1);
        }
        framer.finish(&mut batch);
        assert_eq!(batch.oversized.len(), 1);
        assert_eq!(batch.oversized[0].length, 10_000);
        assert_eq!(
            batch.oversized[0].prefix,
            vec![b'x'; OVERSIZED_PREFIX_BYTES]
        );
        assert_eq!(
            batch.lines,
            vec![Line {
                number: 2,
                start: 0,
                end: 2
            }]
        );
        assert_eq!(frame_chunks(&[&input], max), reference(&input, max));
    }

    #[test]
    fn oversized_prefix_drops_crlf_cr_at_every_prefix_boundary() {
        // Lines whose raw length (with CR) sits around the prefix size.
        for len in OVERSIZED_PREFIX_BYTES - 2..=OVERSIZED_PREFIX_BYTES + 2 {
            let mut input = vec![b'y'; len];
            input.extend_from_slice(b"\r\n");
            let expected = reference(&input, 10);
            for at in [1, 11, 12, len - 1, len, len + 1] {
                let chunks = split_at_points(&input, &[at]);
                assert_eq!(frame_chunks(&chunks, 10), expected, "len {len} split {at}");
            }
        }
    }

    #[test]
    fn random_inputs_match_the_reference_at_random_splits() {
        let alphabet = b"a{} \t\r\n\n\xEF\xBB\xBF";
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        for round in 0..400 {
            let len = rng.below(30);
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if round % 4 == 0 {
                input.splice(0..0, BOM);
            }
            let max = rng.below(6);
            check_all_splits(&input, max);
            check_all_splits(&input, 100);
        }
    }

    /// One line of a generated stream: its content and how it ends.
    #[derive(Debug, Clone)]
    struct ModelLine {
        content: Vec<u8>,
        is_crlf: bool,
    }

    /// A stream built from lines, a BOM flag and whether the last line has a newline, with
    /// what framing it must give computed from the parts (not by re-splitting the bytes).
    fn model_stream(
        lines: &[ModelLine],
        has_bom: bool,
        has_final_newline: bool,
        max: usize,
    ) -> (Vec<u8>, Framed) {
        let mut bytes = Vec::new();
        if has_bom {
            bytes.extend_from_slice(&BOM);
        }
        let mut expected = Framed::default();
        for (index, line) in lines.iter().enumerate() {
            let is_last = index + 1 == lines.len();
            let is_terminated = !is_last || has_final_newline;
            bytes.extend_from_slice(&line.content);
            let mut content = line.content.clone();
            if is_terminated {
                bytes.extend_from_slice(if line.is_crlf { b"\r\n" } else { b"\n" });
                // An LF right after a CR the content ends with makes that CR the terminator's.
                if !line.is_crlf && content.last() == Some(&b'\r') {
                    content.pop();
                }
            } else if content.is_empty() {
                // An unterminated empty last line is no line at all.
                continue;
            }
            if index == 0 && !has_bom && content.starts_with(&BOM) {
                content.drain(..BOM.len());
            }
            let number = index as u64 + 1;
            expected.lines_read += 1;
            if content.len() > max {
                expected.oversized.push(OversizedLine {
                    number,
                    length: content.len() as u64,
                    prefix: content[..content.len().min(OVERSIZED_PREFIX_BYTES)].to_vec(),
                });
            } else if content.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                expected.blank_lines += 1;
            } else {
                expected.lines.push((number, content));
            }
        }
        expected.lines_seen = expected.lines_read;
        (bytes, expected)
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn model_line() -> impl Strategy<Value = ModelLine> {
            // JSON-ish bytes, whitespace, CR, the BOM's bytes and multi-byte UTF-8, so
            // splits land inside CRLF, inside the BOM and inside characters.
            let byte = proptest::sample::select(b"{}\":,ab \t\r\xEF\xBB\xBF\xC3\xA9".to_vec());
            (proptest::collection::vec(byte, 0..12), any::<bool>())
                .prop_map(|(content, is_crlf)| ModelLine { content, is_crlf })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Any chunking of any stream gives the lines the stream is made of, numbered
            /// from one, for LF, CRLF, mixed endings, a BOM, blank lines and no final newline.
            #[test]
            fn any_chunking_gives_the_lines_of_the_stream(
                lines in proptest::collection::vec(model_line(), 0..8),
                has_bom in any::<bool>(),
                has_final_newline in any::<bool>(),
                max in prop_oneof![Just(1000usize), 0usize..8],
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
            ) {
                let (bytes, expected) = model_stream(&lines, has_bom, has_final_newline, max);
                let mut points: Vec<usize> =
                    cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
                points.sort_unstable();
                let chunks = split_at_points(&bytes, &points);
                prop_assert_eq!(
                    &frame_chunks_draining(&chunks, max),
                    &expected,
                    "cuts {:?}",
                    points
                );
                prop_assert_eq!(&frame_chunks(&chunks, max), &expected);
                let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
                prop_assert_eq!(&frame_chunks_draining(&single_bytes, max), &expected);
                prop_assert_eq!(&reference(&bytes, max), &expected);
            }
        }
    }

    #[test]
    fn line_offsets_index_the_shared_buffer() {
        let mut framer = LineFramer::new(100);
        let mut batch = LineBatch::default();
        framer.push(b"one\ntw", &mut batch);
        framer.push(b"o\nthree\n", &mut batch);
        let contents: Vec<&[u8]> = batch.lines.iter().map(|l| batch.line(l)).collect();
        assert_eq!(contents, vec![&b"one"[..], b"two", b"three"]);
        assert_eq!(batch.data, b"onetwothree");
        assert_eq!(batch.len_bytes(), 11);
        assert_eq!(framer.lines_seen(), 3);
        let capacity = batch.data.capacity();
        batch.clear();
        assert_eq!(batch.data.capacity(), capacity);
    }
}
