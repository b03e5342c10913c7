//! The bytes of an export's files: generated once into a spool file, or regenerated on
//! demand.
//!
//! A file is a contiguous slice of the export's rows written by [`Generator`], optionally
//! through a gzip encoder. One pass measures `SizeInBytes` and, when the server has a spool
//! directory, keeps the bytes in an anonymous temporary file there; downloads and ranges are
//! then read from that file in [`CHUNK_BYTES`] chunks ([`serve_spooled`]). Without a spool
//! file the bytes are generated again for every download ([`produce`], which skips the
//! prefix before the range). Writing is deterministic (same generator calls, same encoder,
//! same settings), so both ways give the same bytes.

use crate::api::ExportFilters;
use crate::decode::{parse_date_days, parse_timestamp_micros};
use crate::generate::{Generator, Variety, Within};
use crate::schema::EntitySchema;
use axum::body::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The first whole second at or after `micros` (microseconds since the epoch).
fn ceil_seconds(micros: i64) -> i64 {
    -(micros.saturating_neg().div_euclid(1_000_000))
}

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
    /// Top-level properties kept within an export filter's range: every row the export
    /// holds matches its filters, as the API's would.
    windows: Vec<(&'static str, Within)>,
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
            windows: Vec::new(),
        }
    }

    /// The same content, holding only rows that match `filters`: `UpdatedUtc` within the
    /// update interval (start inclusive, end exclusive), a ledger entry's `PostingDate`
    /// within the posting dates (both inclusive). A filter that no whole second or day
    /// matches leaves the export without rows. Filters are taken as validated by the
    /// caller; one that does not parse is not applied.
    pub(super) fn filtered(mut self, filters: Option<&ExportFilters>) -> Self {
        let Some(filters) = filters else { return self };
        if let Some(interval) = &filters.updated_utc {
            if let (Ok(start), Ok(end)) = (
                parse_timestamp_micros(&interval.start_utc),
                parse_timestamp_micros(&interval.end_utc),
            ) {
                // Whole seconds `s` with start <= s·10⁶ < end; StartUtc == EndUtc is the
                // equality mode, which a whole second matches only if the instant is one.
                let first = ceil_seconds(start);
                let after = if start == end && start % 1_000_000 == 0 {
                    first + 1
                } else {
                    ceil_seconds(end)
                };
                let within = Within::Seconds {
                    start: first,
                    end: after,
                };
                self.windows.push(("UpdatedUtc", within));
            }
        }
        if let Some(posting) = filters.ledger_entry_filters.as_ref().map(|f| &f.posting) {
            if let (Ok(first), Ok(last)) = (
                parse_date_days(&posting.start),
                parse_date_days(&posting.end),
            ) {
                let within = Within::Days {
                    first: first.into(),
                    last: last.into(),
                };
                self.windows.push(("PostingDate", within));
            }
        }
        if self.windows.iter().any(|(_, w)| w.is_empty()) {
            self.rows = 0;
        }
        self
    }

    /// The generator of this content's rows, with its filters' ranges applied.
    fn generator(&self) -> Generator {
        let mut generator = Generator::new(self.schema, self.seed, Variety::Realistic);
        for (name, within) in &self.windows {
            generator.confine(name, *within);
        }
        generator
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
        let mut generator = self.generator();
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

    /// The exact size of file `file` as served, by writing it to a counter and, if
    /// `spool_dir` is given, to a new anonymous temporary file in that directory too.
    ///
    /// The spool file is unlinked from the start (it has no name in `spool_dir`), so its disk
    /// space comes back when the last handle to it closes, even if the process is killed. If
    /// the file cannot be created or written (a full disk), the pass goes on counting and
    /// the file is served by regeneration instead.
    pub(super) fn measure(
        &self,
        file: usize,
        spool_dir: Option<&Path>,
        stopping: &AtomicBool,
    ) -> io::Result<MeasuredFile> {
        let spool = spool_dir.and_then(|dir| match tempfile::tempfile_in(dir) {
            Ok(f) => Some(BufWriter::with_capacity(CHUNK_BYTES, f)),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "mock: cannot create a spool file; the file will be regenerated for each download");
                None
            }
        });
        let mut writer = SpoolWriter {
            bytes: 0,
            spool,
            stopping,
        };
        self.write_file(file, &mut writer)?;
        let size = writer.bytes;
        let spool = writer.finish().map(Arc::new);
        Ok(MeasuredFile { size, spool })
    }

    /// The `Id` of every row, in file order.
    pub(super) fn ids(&self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            #[serde(rename = "Id")]
            id: String,
        }
        let mut generator = self.generator();
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

/// One file of an export after its measuring pass.
#[derive(Debug, Clone)]
pub(super) struct MeasuredFile {
    /// Its exact size as served.
    pub(super) size: u64,
    /// Its bytes, kept by the measuring pass; `None` when the server has no spool directory,
    /// when spooling failed, or once the export's spool has been released
    /// ([`MeasuredFile::without_spool`]): the file is then regenerated for each download.
    pub(super) spool: Option<Arc<File>>,
}

impl MeasuredFile {
    /// The same file, to be served by regeneration; the spool file is closed (and its disk
    /// space freed) when downloads still reading it end.
    pub(super) fn without_spool(&self) -> MeasuredFile {
        MeasuredFile {
            size: self.size,
            spool: None,
        }
    }
}

/// Counts bytes written and copies them to a spool file; stops when the server stops.
struct SpoolWriter<'a> {
    bytes: u64,
    /// Dropped (closing and freeing the file) at the first write error.
    spool: Option<BufWriter<File>>,
    stopping: &'a AtomicBool,
}

impl SpoolWriter<'_> {
    /// The spool file, flushed, if every byte counted reached it.
    fn finish(self) -> Option<File> {
        let file = self
            .spool?
            .into_inner()
            .map_err(|e| spool_failed(e.error()))
            .ok()?;
        match file.metadata() {
            Ok(meta) if meta.len() == self.bytes => Some(file),
            Ok(meta) => {
                spool_failed(&io::Error::other(format!(
                    "spool file holds {} bytes, not {}",
                    meta.len(),
                    self.bytes
                )));
                None
            }
            Err(e) => {
                spool_failed(&e);
                None
            }
        }
    }
}

fn spool_failed(e: &io::Error) {
    tracing::warn!(error = %e, "mock: writing a spool file failed; the file will be regenerated for each download");
}

impl Write for SpoolWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(io::Error::other("mock server is stopping"));
        }
        if let Some(spool) = &mut self.spool {
            if let Err(e) = spool.write_all(buf) {
                spool_failed(&e);
                self.spool = None;
            }
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The spool is flushed once, by `finish`; the encoder's flushes change nothing.
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
    end_body(ending, tx);
}

/// Sends `slice` of a spooled file to `tx` in [`CHUNK_BYTES`] chunks read from `spool`, then
/// ends as `ending` says; like [`produce`], but reading instead of generating. Runs on a
/// blocking thread; returns when done, when the receiver is gone or when the server stops.
/// Reads at explicit offsets, so concurrent downloads of one file share the handle.
pub(super) fn serve_spooled(
    spool: &File,
    slice: Slice,
    ending: Ending,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    stopping: &AtomicBool,
) {
    let mut offset = slice.skip;
    let end = slice.skip.saturating_add(slice.len);
    let buffers = ChunkBuffers::default();
    while offset < end {
        if stopping.load(Ordering::Relaxed) {
            let _ = tx.blocking_send(Err(io::Error::other("mock server is stopping")));
            return;
        }
        let want = usize::try_from(end - offset).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
        let mut buf = buffers.take();
        if let Err(e) = read_exact_at(spool, &mut buf[..want], offset) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        offset += want as u64;
        if tx.blocking_send(Ok(buffers.chunk(buf, want))).is_err() {
            return;
        }
    }
    end_body(ending, tx);
}

/// The chunk buffers of one download, each handed back when the HTTP body has sent its
/// bytes. A download reads its file through the few buffers in flight (the queue and the
/// socket's writes) instead of allocating a fresh zeroed one per chunk: with the mock and
/// the client on the same cores (`run --demo`), that zeroing and the page faults behind it
/// were a quarter of the server's CPU.
#[derive(Clone, Default)]
struct ChunkBuffers {
    free: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl ChunkBuffers {
    /// A buffer of [`CHUNK_BYTES`]: one handed back, or a new one.
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![0; CHUNK_BYTES])
    }

    /// The first `len` bytes of `buf` as a chunk that hands `buf` back once dropped.
    fn chunk(&self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Recycled {
            buf,
            len,
            home: self.clone(),
        })
    }
}

/// A chunk's buffer on its way through the HTTP body; see [`ChunkBuffers`].
struct Recycled {
    buf: Vec<u8>,
    len: usize,
    home: ChunkBuffers,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.home
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(buf);
    }
}

/// Fills `buf` from `file` at `offset`, without moving a shared file position.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        // The server spools on Unix only (see `MockServer::start`), so this is not reached.
        let _ = (file, buf, offset);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Ends a body whose bytes have all been sent: with an injected error for [`Ending::Reset`].
fn end_body(ending: Ending, tx: &mpsc::Sender<io::Result<Bytes>>) {
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

    #[test]
    fn chunk_buffers_come_back_once_their_bytes_are_sent() {
        let buffers = ChunkBuffers::default();
        let mut buf = buffers.take();
        assert_eq!(buf.len(), CHUNK_BYTES);
        buf[..3].copy_from_slice(b"abc");
        let at = buf.as_ptr();
        let chunk = buffers.chunk(buf, 3);
        assert_eq!(&chunk[..], b"abc");
        let rest = chunk.slice(1..);
        drop(chunk);
        assert!(
            buffers.free.lock().unwrap().is_empty(),
            "a slice of the chunk still uses the buffer"
        );
        assert_eq!(&rest[..], b"bc");
        drop(rest);
        let again = buffers.take();
        assert_eq!(again.as_ptr(), at, "the same buffer is used again");
        assert_eq!(again.len(), CHUNK_BYTES);
    }

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
                assert_eq!(
                    c.measure(file, None, &stopping).unwrap().size,
                    a.len() as u64
                );
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
