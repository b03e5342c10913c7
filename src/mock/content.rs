//! The bytes of an export's files, regenerated on demand and never stored.
//!
//! A file is a contiguous slice of the export's rows written by [`Generator`], optionally
//! through a gzip encoder. Writing is deterministic (same generator calls, same encoder, same
//! settings), so every pass over a file yields the same bytes: one pass measures
//! `SizeInBytes`, later passes serve downloads and ranges (by skipping a prefix).

use crate::generate::{Generator, Variety};
use crate::schema::EntitySchema;
use axum::body::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{self, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// Bytes gathered before a chunk is handed to the HTTP body: large enough that per-chunk
/// overhead vanishes, small enough that a download holds little memory.
pub(super) const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks queued between a file producer and its HTTP body. With [`CHUNK_BYTES`] this bounds
/// a download's buffered data to about 1 MiB, however large the file.
pub(super) const CHUNK_QUEUE: usize = 4;

/// What one export's files contain.
#[derive(Debug)]
pub(super) struct ExportContent {
    schema: &'static EntitySchema,
    /// Row seed: the server seed mixed with the export id, so two exports differ.
    seed: u64,
    rows: u64,
    files: usize,
    gzip: bool,
}

impl ExportContent {
    /// Content of `rows` rows of `schema` split across `files` files (at least 1).
    pub(super) fn new(
        schema: &'static EntitySchema,
        seed: u64,
        rows: u64,
        files: usize,
        gzip: bool,
    ) -> Self {
        ExportContent {
            schema,
            seed,
            rows,
            files: files.max(1),
            gzip,
        }
    }

    /// Number of files.
    pub(super) fn file_count(&self) -> usize {
        self.files
    }

    /// Whether files are gzip streams.
    pub(super) fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Row indexes of file `file` (0-based): the rows are split as evenly as possible, in
    /// order, so the files together hold each row once.
    pub(super) fn rows_of(&self, file: usize) -> Range<u64> {
        let n = self.files as u64;
        let at = |k: u64| (u128::from(self.rows) * u128::from(k) / u128::from(n)) as u64;
        at(file as u64)..at(file as u64 + 1)
    }

    /// Writes file `file` (0-based) to `out`, whole.
    pub(super) fn write_file(&self, file: usize, out: &mut impl Write) -> io::Result<()> {
        let rows = self.rows_of(file);
        let mut generator = Generator::new(self.schema, self.seed, Variety::Realistic);
        if self.gzip {
            // Fast compression: the mock must not be what a benchmark measures, and the
            // ratio does not matter; the header is flate2's fixed one (no name, mtime 0), so
            // the stream is the same on every pass.
            let mut encoder = GzEncoder::new(out, Compression::fast());
            generator.write_lines(rows.start, rows.end - rows.start, &mut encoder)?;
            encoder.finish()?;
        } else {
            generator.write_lines(rows.start, rows.end - rows.start, out)?;
        }
        Ok(())
    }

    /// The exact size of file `file` as served, by writing it to a counter.
    pub(super) fn measure(&self, file: usize, stopping: &AtomicBool) -> io::Result<u64> {
        let mut counter = ByteCounter { bytes: 0, stopping };
        self.write_file(file, &mut counter)?;
        Ok(counter.bytes)
    }

    /// The `Id` of every row, in file order.
    pub(super) fn ids(&self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            #[serde(rename = "Id")]
            id: String,
        }
        let mut generator = Generator::new(self.schema, self.seed, Variety::Realistic);
        let mut line = Vec::new();
        (0..self.rows)
            .map(|index| {
                line.clear();
                generator.write_row(index, &mut line);
                let row: IdOnly = serde_json::from_slice(&line)
                    .unwrap_or_else(|e| panic!("generated row {index} has no string Id: {e}"));
                row.id
            })
            .collect()
    }
}

/// Counts bytes written, and stops when the server stops.
struct ByteCounter<'a> {
    bytes: u64,
    stopping: &'a AtomicBool,
}

impl Write for ByteCounter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(io::Error::other("mock server is stopping"));
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a download's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// After all its bytes.
    Complete,
    /// With a body error after the bytes sent, which makes the server drop the connection.
    Reset,
    /// Normally, after the bytes sent, although they fall short of `Content-Length`.
    Short,
}

/// Which bytes of a file one response carries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slice {
    /// Bytes of the file skipped before the first one sent.
    pub(super) skip: u64,
    /// Bytes sent after the skipped ones.
    pub(super) len: u64,
}

/// Regenerates file `file` and sends `slice` of it to `tx` in chunks, then ends as `ending`
/// says. Runs on a blocking thread; returns when done, when the receiver is gone (the
/// client left) or when the server stops.
pub(super) fn produce(
    content: &ExportContent,
    file: usize,
    slice: Slice,
    ending: Ending,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    stopping: &AtomicBool,
) {
    let mut sink = ChunkSink {
        tx,
        skip: slice.skip,
        remaining: slice.len,
        buf: Vec::with_capacity(CHUNK_BYTES),
        stopping,
    };
    let written = content.write_file(file, &mut sink);
    match written {
        Ok(()) => {}
        Err(e) if is_slice_done(&e) => {}
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    }
    if sink.send_buffered().is_err() {
        return;
    }
    if ending == Ending::Reset {
        let _ = tx.blocking_send(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected reset mid-body",
        )));
    }
}

/// Marks the end of the requested slice: generation stops early by failing the write.
#[derive(Debug)]
struct SliceDone;

impl std::fmt::Display for SliceDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("requested bytes written")
    }
}

impl std::error::Error for SliceDone {}

fn is_slice_done(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SliceDone>())
}

/// Skips a prefix, keeps a slice, and sends it in [`CHUNK_BYTES`] chunks over a bounded
/// channel, so the generator waits (backpressure) while the client is slower than it.
struct ChunkSink<'a> {
    tx: &'a mpsc::Sender<io::Result<Bytes>>,
    skip: u64,
    remaining: u64,
    buf: Vec<u8>,
    stopping: &'a AtomicBool,
}

impl ChunkSink<'_> {
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "download receiver gone"))
    }
}

impl Write for ChunkSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(io::Error::other("mock server is stopping"));
        }
        let mut rest = data;
        if self.skip > 0 {
            let skipped = rest
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            rest = &rest[skipped..];
            self.skip -= skipped as u64;
        }
        if !rest.is_empty() {
            if self.remaining == 0 {
                return Err(io::Error::other(SliceDone));
            }
            let kept = rest
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            self.buf.extend_from_slice(&rest[..kept]);
            self.remaining -= kept as u64;
            if self.buf.len() >= CHUNK_BYTES {
                self.send_buffered()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks go out when full or at the end; the encoder's flushes must not produce
        // tiny chunks.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(gzip: bool) -> ExportContent {
        let schema = crate::schema::find("Payment").unwrap();
        ExportContent::new(schema, 9, 500, 3, gzip)
    }

    fn whole(c: &ExportContent, file: usize) -> Vec<u8> {
        let mut out = Vec::new();
        c.write_file(file, &mut out).unwrap();
        out
    }

    #[test]
    fn files_split_rows_contiguously() {
        let c = content(false);
        assert_eq!(c.rows_of(0), 0..166);
        assert_eq!(c.rows_of(1), 166..333);
        assert_eq!(c.rows_of(2), 333..500);
        let empty = ExportContent::new(c.schema, 1, 2, 3, false);
        assert_eq!(empty.rows_of(0), 0..0);
    }

    #[test]
    fn passes_are_identical_and_measured_exactly() {
        let stopping = AtomicBool::new(false);
        for gzip in [false, true] {
            let c = content(gzip);
            for file in 0..3 {
                let a = whole(&c, file);
                assert_eq!(a, whole(&c, file));
                assert_eq!(c.measure(file, &stopping).unwrap(), a.len() as u64);
            }
        }
    }

    #[test]
    fn produce_sends_exactly_the_slice() {
        let c = content(true);
        let full = whole(&c, 1);
        let stopping = AtomicBool::new(false);
        let (tx, mut rx) = mpsc::channel(1024);
        let slice = Slice {
            skip: 10,
            len: full.len() as u64 - 20,
        };
        produce(&c, 1, slice, Ending::Reset, &tx, &stopping);
        drop(tx);
        let mut got = Vec::new();
        let mut errors = 0;
        while let Some(item) = rx.blocking_recv() {
            match item {
                Ok(bytes) => got.extend_from_slice(&bytes),
                Err(_) => errors += 1,
            }
        }
        assert_eq!(got, full[10..full.len() - 10]);
        assert_eq!(errors, 1);
    }
}
