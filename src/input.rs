//! Opens a source (file or stdin), detects compression from its content, decompresses, and
//! streams the bytes through the [`LineFramer`] into a bounded channel of [`LineBatch`]es.
//!
//! Compression is detected from magic bytes, never from the file name: exports get renamed,
//! and a `.json` that is really gzip must still load. Gzip and zstd decoders always accept
//! several concatenated members/frames (what `cat a.gz b.gz` and parallel compressors
//! produce); decoders are only built through one helper, and `clippy.toml` bans building
//! them anywhere else.
//!
//! Errors say which source failed and whether opening, reading or decompressing did, so a
//! corrupt archive is not mistaken for a disk or network fault.

use crate::framing::{BatchPool, LineBatch, LineFramer};
use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::sync::mpsc;

/// Default batch size: 2 MiB of line data per [`LineBatch`] (about a thousand rows of a
/// wide entity).
///
/// Large enough that the per-batch costs downstream (the channel hops, splitting a decoded
/// batch by partition) cost next to nothing against the work on the lines, small enough
/// that the batches in flight (the channel capacities) stay a few dozen MiB and decoding
/// starts long before the file is read.
pub const DEFAULT_BATCH_BYTES: usize = 2 << 20;

/// Read buffer for files and stdin: big enough for few system calls per MiB.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// Room a batch's buffer has beyond `batch_bytes`, for the line that crosses the mark:
/// more than any Mews record's line, so the buffer is never reallocated in practice.
const BATCH_SLACK_BYTES: usize = 64 << 10;

/// Longest magic number looked for (zstd's).
const MAGIC_BYTES: usize = 4;

/// Gzip member magic number (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// Zstandard frame magic number (RFC 8878), little-endian 0xFD2FB528.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Whether `head` starts a zstd skippable frame (RFC 8878 §3.1.2: magic 0x184D2A5?,
/// little-endian), which `pzstd` and seekable-format writers put before the data frames.
fn is_zstd_skippable_frame(head: &[u8]) -> bool {
    matches!(head, [low, 0x2A, 0x4D, 0x18, ..] if low & 0xF0 == 0x50)
}

/// How a source's bytes are compressed, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// Gzip, one or more members.
    Gzip,
    /// Zstandard, one or more frames.
    Zstd,
    /// HTTP `Content-Encoding: deflate` (a zlib stream); only ever declared, never sniffed.
    Deflate,
    /// HTTP `Content-Encoding: br`; only ever declared, never sniffed.
    Brotli,
}

impl Compression {
    /// Detects compression from the first bytes of a stream (all of it if shorter than
    /// four bytes).
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&ZSTD_MAGIC) || is_zstd_skippable_frame(head) {
            Compression::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Deflate => "deflate",
            Compression::Brotli => "brotli",
        })
    }
}

/// A local file as a load's manifest records it ([`Source::stamp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    /// Absolute path, symbolic links resolved.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification, in nanoseconds since 1970-01-01 UTC, where the system tells it.
    pub modified_unix_ns: Option<i64>,
}

/// A source of JSON lines: a path, or "-" for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    Path(PathBuf),
    /// The process's standard input.
    Stdin,
}

impl Source {
    /// Reads a command-line argument: `-` means stdin, anything else is a path.
    pub fn parse(arg: &str) -> Self {
        if arg == "-" {
            Source::Stdin
        } else {
            Source::Path(PathBuf::from(arg))
        }
    }

    /// What tells this file from any other, and from a later file written to its path: its
    /// resolved path, size and modification time. `None` for a pipe or a device (stdin
    /// included, unless redirected from a file), or a file that cannot be read.
    pub fn stamp(&self) -> Option<FileStamp> {
        let path = match self {
            Source::Path(path) => path.clone(),
            // Redirected from a file (`- < x.jsonl`), stdin is that file; Linux names it.
            Source::Stdin => std::fs::read_link("/proc/self/fd/0").ok()?,
        };
        let resolved = std::fs::canonicalize(path).ok()?;
        // A pipe or a device has no contents of its own to tell apart.
        let meta = std::fs::metadata(&resolved).ok().filter(|m| m.is_file())?;
        let modified_unix_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_nanos()).ok());
        Some(FileStamp {
            path: resolved.to_string_lossy().into_owned(),
            bytes: meta.len(),
            modified_unix_ns,
        })
    }

    /// The name used in errors, logs and the quarantine: the path as given, or `stdin`.
    pub fn display_name(&self) -> String {
        match self {
            Source::Path(path) => path.display().to_string(),
            Source::Stdin => "stdin".to_owned(),
        }
    }
}

/// Formats an export file is sometimes mistaken for, by their first bytes: read as text,
/// each would be a load of rejected lines instead of one clear error.
/// Each with what it is and what to do about it.
const FOREIGN_MAGIC: &[(&[u8], &str, &str)] = &[
    (b"BZh", "bzip2-compressed", DECOMPRESS),
    (&[0xFD, 0x37, 0x7A, 0x58], "xz-compressed", DECOMPRESS),
    (&[0x04, 0x22, 0x4D, 0x18], "LZ4-compressed", DECOMPRESS),
    (b"PK\x03\x04", "a ZIP archive", EXTRACT),
    (&[0x37, 0x7A, 0xBC, 0xAF], "a 7-Zip archive", EXTRACT),
    (
        b"PAR1",
        "a Parquet file",
        "it needs no converting: give the export's JSON Lines file",
    ),
];
const DECOMPRESS: &str = "decompress it first, or recompress it with gzip or zstd";
const EXTRACT: &str = "extract its files first";

/// What a source that is not JSON Lines, plain, gzip or zstd, is, and what to do, if its
/// first bytes say.
fn foreign_format(head: &[u8]) -> Option<(&'static str, &'static str)> {
    FOREIGN_MAGIC
        .iter()
        .find(|(magic, _, _)| head.starts_with(magic))
        .map(|&(_, what, hint)| (what, hint))
}

/// Failure to open, read or decompress a source. These are infrastructure errors: the
/// load cannot go on, unlike a bad line, which the decoder quarantines.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The source could not be opened.
    #[error("cannot open {source_name}: {io}")]
    Open {
        /// The source, as [`Source::display_name`] gives it.
        source_name: String,
        /// The underlying error.
        #[source]
        io: io::Error,
    },
    /// Reading the source failed.
    #[error("cannot read {source_name} after {after_bytes} bytes: {io}")]
    Read {
        /// The source, as [`Source::display_name`] gives it.
        source_name: String,
        /// Decompressed bytes successfully read before the failure.
        after_bytes: u64,
        /// The underlying error.
        #[source]
        io: io::Error,
    },
    /// The source is in a format that is not read (bzip2, a ZIP archive, Parquet…).
    #[error("{source_name} is {format}, not JSON Lines (plain, gzip or zstd): {hint}")]
    Unsupported {
        /// The source, as [`Source::display_name`] gives it.
        source_name: String,
        /// What its first bytes say it is.
        format: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// The source's compressed data is corrupt or truncated.
    #[error(
        "cannot decompress {source_name} ({compression}): {io}: the compressed data is truncated or corrupt ({after_bytes} bytes decompressed before it)"
    )]
    Decompress {
        /// The source, as [`Source::display_name`] gives it.
        source_name: String,
        /// The compression detected for the source.
        compression: Compression,
        /// Decompressed bytes successfully read before the failure.
        after_bytes: u64,
        /// The decoder's error.
        #[source]
        io: io::Error,
    },
}

/// Totals of one [`frame_into`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameTotals {
    /// Lines in the batches delivered, blank and oversized ones included.
    pub lines_read: u64,
    /// Blank lines in the batches delivered.
    pub blank_lines: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
}

/// A boxed reader of decompressed bytes, whatever the source and compression.
pub type DecompressedReader = Box<dyn AsyncBufRead + Send + Unpin>;

/// Opens a source and returns a buffered reader of its decompressed bytes, plus the detected compression.
pub async fn open(source: &Source) -> Result<(DecompressedReader, Compression), InputError> {
    open_counted(source)
        .await
        .map(|(reader, compression, _)| (reader, compression))
}

/// [`open`], with a count of the bytes read from the source as they are stored (compressed,
/// if they are), which goes up as the reader is read: what a file's size is, for stdin too.
pub async fn open_counted(
    source: &Source,
) -> Result<(DecompressedReader, Compression, Arc<AtomicU64>), InputError> {
    let name = source.display_name();
    let count = Arc::new(AtomicU64::new(0));
    let counted = |inner: Box<dyn AsyncRead + Send + Unpin>| CountingReader {
        inner,
        count: count.clone(),
    };
    let raw = match source {
        Source::Path(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|io| InputError::Open {
                    source_name: name.clone(),
                    io,
                })?;
            counted(Box::new(file))
        }
        Source::Stdin => counted(Box::new(tokio::io::stdin())),
    };
    let (reader, compression) =
        decompress(BufReader::with_capacity(READ_BUFFER_BYTES, raw), &name).await?;
    Ok((reader, compression, count))
}

/// Counts the bytes read through it.
struct CountingReader {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    count: Arc<AtomicU64>,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

/// Wraps any AsyncBufRead (e.g. an HTTP body later): sniffs magic bytes (gzip 1f 8b, zstd
/// 28 b5 2f fd) with fill_buf without consuming, then wraps in async_compression's tokio
/// decoders.
///
/// If the first read returns fewer bytes than a magic number (a pipe may), those bytes are
/// taken out and put back in front of the stream, so detection never depends on how the
/// source happens to chunk its data.
pub async fn decompress<R: AsyncBufRead + Send + Unpin + 'static>(
    mut reader: R,
    name: &str,
) -> Result<(DecompressedReader, Compression), InputError> {
    let read_error = |io| InputError::Read {
        source_name: name.to_owned(),
        after_bytes: 0,
        io,
    };
    let unsupported = |(format, hint)| InputError::Unsupported {
        source_name: name.to_owned(),
        format,
        hint,
    };
    let head = reader.fill_buf().await.map_err(read_error)?;
    if head.len() >= MAGIC_BYTES || head.is_empty() {
        if let Some(found) = foreign_format(head) {
            return Err(unsupported(found));
        }
        let compression = Compression::detect(head);
        return Ok((wrap_decoder(compression, reader), compression));
    }
    let mut head = Vec::with_capacity(MAGIC_BYTES);
    while head.len() < MAGIC_BYTES {
        let chunk = reader.fill_buf().await.map_err(read_error)?;
        if chunk.is_empty() {
            break;
        }
        let take = chunk.len().min(MAGIC_BYTES - head.len());
        head.extend_from_slice(&chunk[..take]);
        reader.consume(take);
    }
    if let Some(found) = foreign_format(&head) {
        return Err(unsupported(found));
    }
    let compression = Compression::detect(&head);
    let rejoined = io::Cursor::new(head).chain(reader);
    Ok((wrap_decoder(compression, rejoined), compression))
}

/// Puts the decoder for `compression` on top of `reader`, with error tagging on both sides
/// of it so that [`frame_into`] can tell a read failure from corrupt data.
fn wrap_decoder<R: AsyncBufRead + Send + Unpin + 'static>(
    compression: Compression,
    reader: R,
) -> DecompressedReader {
    if compression == Compression::None {
        return Box::new(reader);
    }
    let decoder = multi_member_decoder(compression, TagSourceErrors(reader));
    Box::new(BufReader::with_capacity(
        READ_BUFFER_BYTES,
        TagDecodeErrors {
            inner: decoder,
            compression,
        },
    ))
}

/// The only place decoders are built: both must accept concatenated members/frames, or a
/// multi-member file silently loads only its first part.
#[allow(clippy::disallowed_methods)]
fn multi_member_decoder<R: AsyncBufRead + Send + Unpin + 'static>(
    compression: Compression,
    reader: R,
) -> Box<dyn AsyncRead + Send + Unpin> {
    match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(reader);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Compression::Zstd => {
            let mut decoder = ZstdDecoder::new(reader);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        // Single-stream formats, read as several too: otherwise their decoders stop at the
        // end of the first stream, and bytes after it would go unread and unnoticed (with
        // the download's check of SizeInBytes, made at the end of its body).
        Compression::Deflate => {
            let mut decoder = ZlibDecoder::new(reader);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Compression::Brotli => {
            let mut decoder = BrotliDecoder::new(reader);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
    }
}

impl Compression {
    /// The compression an HTTP `Content-Encoding` value declares, if it is one we decode
    /// (`gzip`, `x-gzip`, `zstd`, `deflate`, `br`); `identity` and absence are `None`.
    pub fn from_content_encoding(value: &str) -> Option<Compression> {
        match value.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "deflate" => Some(Compression::Deflate),
            "br" => Some(Compression::Brotli),
            _ => None,
        }
    }
}

/// Like [`decompress`], for a body whose HTTP `Content-Encoding` declared `declared`: that
/// encoding is decoded first, then the result is sniffed as usual (an export file may be
/// compressed itself and served with a content encoding on top).
pub async fn decompress_declared<R: AsyncBufRead + Send + Unpin + 'static>(
    reader: R,
    name: &str,
    declared: Option<Compression>,
) -> Result<(DecompressedReader, Compression), InputError> {
    match declared {
        None | Some(Compression::None) => decompress(reader, name).await,
        Some(c) => {
            let (inner, _) = decompress(wrap_decoder(c, reader), name).await?;
            Ok((inner, c))
        }
    }
}

/// Marks an error of the compressed source itself as it passes up through a decoder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SourceFailure(io::Error);

/// Marks an error raised by a decoder (corrupt or truncated data).
#[derive(Debug, thiserror::Error)]
#[error("{io}")]
struct DecodeFailure {
    compression: Compression,
    io: io::Error,
}

/// Below a decoder: wraps the source's errors in [`SourceFailure`].
struct TagSourceErrors<R>(R);

fn tag_source(error: io::Error) -> io::Error {
    io::Error::new(error.kind(), SourceFailure(error))
}

impl<R: AsyncRead + Unpin> AsyncRead for TagSourceErrors<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0)
            .poll_read(cx, buf)
            .map_err(tag_source)
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for TagSourceErrors<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().0)
            .poll_fill_buf(cx)
            .map_err(tag_source)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().0).consume(amt);
    }
}

/// Above a decoder: unwraps [`SourceFailure`]s back to the source's error and wraps every
/// other error, which the decoder raised, in [`DecodeFailure`].
struct TagDecodeErrors<R> {
    inner: R,
    compression: Compression,
}

impl<R: AsyncRead + Unpin> AsyncRead for TagDecodeErrors<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        Poll::Ready(result.map_err(|error| {
            if error.get_ref().is_some_and(|e| e.is::<SourceFailure>()) {
                let kind = error.kind();
                match error.into_inner().map(|e| e.downcast::<SourceFailure>()) {
                    Some(Ok(failure)) => failure.0,
                    // Unreachable after the check above; keep the kind either way.
                    _ => io::Error::from(kind),
                }
            } else {
                io::Error::new(
                    error.kind(),
                    DecodeFailure {
                        compression: this.compression,
                        io: error,
                    },
                )
            }
        }))
    }
}

/// Turns a read error from a [`decompress`]ed reader into the matching [`InputError`].
fn classify_read_error(error: io::Error, name: &str, after_bytes: u64) -> InputError {
    if error.get_ref().is_some_and(|e| e.is::<DecodeFailure>()) {
        let kind = error.kind();
        if let Some(Ok(failure)) = error.into_inner().map(|e| e.downcast::<DecodeFailure>()) {
            return InputError::Decompress {
                source_name: name.to_owned(),
                compression: failure.compression,
                after_bytes,
                io: failure.io,
            };
        }
        return InputError::Read {
            source_name: name.to_owned(),
            after_bytes,
            io: io::Error::from(kind),
        };
    }
    InputError::Read {
        source_name: name.to_owned(),
        after_bytes,
        io: error,
    }
}

/// Reads `reader` to the end, framing lines into batches of about `batch_bytes` (taken from
/// `pool`: those handed back by their consumers, else new ones) and sending each on `tx` (a
/// bounded tokio mpsc channel: this is the backpressure point). Returns
/// total counts (lines_read, blank_lines) when done; stops quietly with Ok if the receiver
/// is dropped.
///
/// A batch is sent once its [`LineBatch::len_bytes`] reaches `batch_bytes`, so it may
/// exceed that by the rest of the line that crosses the mark. Framing runs on the async task: it is a
/// `memchr` scan and a copy, far cheaper than the read that precedes it. When the receiver
/// is gone the totals count only the batches it was given.
pub async fn frame_into(
    mut reader: impl AsyncBufRead + Unpin,
    name: &str,
    max_line_bytes: usize,
    batch_bytes: usize,
    pool: &BatchPool,
    tx: mpsc::Sender<LineBatch>,
) -> Result<FrameTotals, InputError> {
    let mut framer = LineFramer::new(max_line_bytes);
    // Room for a batch and the line that completes it, so that a batch's buffer is
    // allocated once instead of doubling (and holding twice its bytes) past `batch_bytes`.
    let capacity = batch_bytes.saturating_add(BATCH_SLACK_BYTES);
    let mut batch = pool.take(capacity);
    let mut totals = FrameTotals::default();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(error) => return Err(classify_read_error(error, name, totals.bytes)),
        };
        if chunk.is_empty() {
            break;
        }
        // Only as many bytes as the batch has room for: the rest of the chunk stays in the
        // reader for the next batch.
        let room = batch_bytes.saturating_sub(batch.len_bytes()).max(1);
        let read = chunk.len().min(room);
        framer.push(&chunk[..read], &mut batch);
        reader.consume(read);
        totals.bytes += read as u64;
        if batch.len_bytes() >= batch_bytes {
            let full = std::mem::replace(&mut batch, pool.take(capacity));
            if !send(&tx, full, &mut totals).await {
                return Ok(totals);
            }
        }
    }
    framer.finish(&mut batch);
    if !batch.is_empty() {
        send(&tx, batch, &mut totals).await;
    }
    Ok(totals)
}

/// Sends one batch, waiting for room; returns false if the receiver is gone.
async fn send(tx: &mpsc::Sender<LineBatch>, batch: LineBatch, totals: &mut FrameTotals) -> bool {
    let (lines_read, blank_lines) = (batch.lines_read, batch.blank_lines);
    if tx.send(batch).await.is_err() {
        return false;
    }
    totals.lines_read += lines_read;
    totals.blank_lines += blank_lines;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::DEFAULT_MAX_LINE_BYTES;
    use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
    use std::path::Path;

    /// What a run produced: (line number, content) for non-blank lines, plus totals.
    type Lines = Vec<(u64, Vec<u8>)>;

    async fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzipEncoder::new(data).read_to_end(&mut out).await.unwrap();
        out
    }

    async fn zstd(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ZstdEncoder::new(data).read_to_end(&mut out).await.unwrap();
        out
    }

    /// JSON lines with a blank line and a CRLF among them, numbered 1..=n.
    fn sample(n: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for i in 1..=n {
            if i % 7 == 0 {
                data.extend_from_slice(b"\r\n");
            } else {
                data.extend_from_slice(format!("{{\"Id\":{i}}}\n").as_bytes());
            }
        }
        data
    }

    /// Frames `data` in one push, as the reference for the streamed runs.
    fn frame_at_once(data: &[u8]) -> (Lines, u64, u64) {
        let mut framer = LineFramer::new(DEFAULT_MAX_LINE_BYTES);
        let mut batch = LineBatch::default();
        framer.push(data, &mut batch);
        framer.finish(&mut batch);
        let lines = batch
            .lines
            .iter()
            .map(|l| (l.number, batch.line(l).to_vec()))
            .collect();
        (lines, batch.lines_read, batch.blank_lines)
    }

    /// Runs `frame_into` with a consumer that collects every batch.
    async fn frame_through_channel(
        reader: impl AsyncBufRead + Unpin,
        name: &str,
        batch_bytes: usize,
        capacity: usize,
    ) -> Result<(Lines, FrameTotals, usize), InputError> {
        let (tx, mut rx) = mpsc::channel::<LineBatch>(capacity);
        let consumer = tokio::spawn(async move {
            let (mut lines, mut batches) = (Vec::new(), 0);
            while let Some(batch) = rx.recv().await {
                batches += 1;
                for line in &batch.lines {
                    lines.push((line.number, batch.line(line).to_vec()));
                }
            }
            (lines, batches)
        });
        let totals = frame_into(
            reader,
            name,
            DEFAULT_MAX_LINE_BYTES,
            batch_bytes,
            &BatchPool::default(),
            tx,
        )
        .await?;
        let (lines, batches) = consumer.await.unwrap();
        Ok((lines, totals, batches))
    }

    async fn open_and_frame(path: &Path) -> Result<(Compression, Lines, FrameTotals), InputError> {
        let source = Source::Path(path.to_owned());
        let (reader, compression) = open(&source).await?;
        let (lines, totals, _) =
            frame_through_channel(reader, &source.display_name(), 64, 2).await?;
        Ok((compression, lines, totals))
    }

    fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[tokio::test]
    async fn detects_compression_from_content_not_extension() {
        let data = sample(100);
        let expected = frame_at_once(&data);
        let dir = tempfile::tempdir().unwrap();
        // A skippable frame (as `pzstd` writes one) before the data's frame.
        let mut skippable = vec![0x5A, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        skippable.extend(zstd(&data).await);
        let cases = [
            ("plain.jsonl.gz", data.clone(), Compression::None),
            ("gzip.jsonl", gzip(&data).await, Compression::Gzip),
            ("zstd.jsonl.gz", zstd(&data).await, Compression::Zstd),
            ("pzstd.jsonl.zst", skippable, Compression::Zstd),
        ];
        for (name, bytes, compression) in cases {
            let path = write_temp(&dir, name, &bytes);
            let (detected, lines, totals) = open_and_frame(&path).await.unwrap();
            assert_eq!(detected, compression, "{name}");
            assert_eq!(lines, expected.0, "{name}");
            assert_eq!(
                (totals.lines_read, totals.blank_lines),
                (expected.1, expected.2)
            );
            assert_eq!(totals.bytes, data.len() as u64, "{name}");
        }
    }

    /// Files of a format that is not read are named for what they are, from their first
    /// bytes, however few a read returns, instead of being read as lines of text.
    #[tokio::test]
    async fn a_format_that_is_not_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 6] = [
            ("a.bz2", b"BZh91AY&SY\x01\x02", "bzip2-compressed"),
            ("a.xz", b"\xFD7zXZ\x00\x00\x04", "xz-compressed"),
            ("a.lz4", b"\x04\x22\x4D\x18\x64\x40", "LZ4-compressed"),
            ("a.zip", b"PK\x03\x04\x14\x00", "a ZIP archive"),
            ("a.7z", b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
            ("a.parquet", b"PAR1\x15\x04", "a Parquet file"),
        ];
        for (name, bytes, what) in cases {
            let path = write_temp(&dir, name, bytes);
            let error = open_and_frame(&path).await.unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
            assert!(
                error.contains(&format!(" is {what}, not JSON Lines")),
                "{error}"
            );
            // A pipe may hand over the first bytes one at a time.
            let (reader, mut writer) = tokio::io::duplex(1);
            let body = bytes.to_vec();
            let feed = tokio::spawn(async move {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut writer, &body).await;
            });
            let error = decompress(BufReader::with_capacity(1, reader), name)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.contains(&format!(" is {what}, not JSON Lines")),
                "{name}: {error}"
            );
            feed.abort();
        }
    }

    #[tokio::test]
    async fn multi_member_gzip_and_multi_frame_zstd_are_read_to_the_end() {
        let (first, second) = (sample(30), b"{\"Id\":\"tail\"}\n".to_vec());
        let whole = [first.clone(), second.clone()].concat();
        let expected = frame_at_once(&whole);
        let dir = tempfile::tempdir().unwrap();
        let gz = [gzip(&first).await, gzip(&second).await].concat();
        let zst = [zstd(&first).await, zstd(&second).await].concat();
        for (name, bytes) in [("multi.gz", gz), ("multi.zst", zst)] {
            let path = write_temp(&dir, name, &bytes);
            let (_, lines, totals) = open_and_frame(&path).await.unwrap();
            assert_eq!(lines, expected.0, "{name}");
            assert_eq!(
                lines.last().unwrap().0,
                31,
                "{name}: numbering runs across members"
            );
            assert_eq!(totals.bytes, whole.len() as u64);
        }
    }

    #[tokio::test]
    async fn corrupt_gzip_names_the_file() {
        let mut bytes = gzip(&sample(200)).await;
        let middle = bytes.len() / 2;
        for b in &mut bytes[12..middle] {
            *b = 0xFF;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "broken.jsonl.gz", &bytes);
        let error = open_and_frame(&path).await.unwrap_err();
        assert!(
            matches!(&error, InputError::Decompress { source_name, compression: Compression::Gzip, .. }
                if source_name.ends_with("broken.jsonl.gz")),
            "{error:?}"
        );
        assert!(error.to_string().contains("broken.jsonl.gz"), "{error}");
    }

    #[tokio::test]
    async fn truncated_zstd_is_a_decompress_error() {
        let bytes = zstd(&sample(200)).await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "cut.zst", &bytes[..bytes.len() - 5]);
        let error = open_and_frame(&path).await.unwrap_err();
        assert!(
            matches!(
                error,
                InputError::Decompress {
                    compression: Compression::Zstd,
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("cut.zst (zstd)") && text.contains("truncated or corrupt"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn missing_file_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.jsonl");
        let Err(error) = open(&Source::Path(path)).await else {
            panic!("opened a missing file");
        };
        assert!(
            matches!(&error, InputError::Open { source_name, .. } if source_name.ends_with("absent.jsonl"))
        );
    }

    /// A reader that fails after its data, as a dropped connection would.
    struct FailingAfter(io::Cursor<Vec<u8>>);

    impl AsyncRead for FailingAfter {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.0).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn source_failure_under_a_decoder_is_a_read_error() {
        let bytes = gzip(&sample(50)).await;
        let cut = bytes[..bytes.len() / 2].to_vec();
        let reader = BufReader::with_capacity(16, FailingAfter(io::Cursor::new(cut)));
        let (reader, compression) = decompress(reader, "remote").await.unwrap();
        assert_eq!(compression, Compression::Gzip);
        let error = frame_through_channel(reader, "remote", 64, 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, InputError::Read { source_name, io, .. }
                if source_name == "remote" && io.kind() == io::ErrorKind::ConnectionReset),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn small_channel_and_tiny_reads_give_the_same_lines_as_one_push() {
        let data = [
            b"\xEF\xBB\xBF".to_vec(),
            sample(500),
            b"{\"Id\":\"last\"}".to_vec(),
        ]
        .concat();
        let expected = frame_at_once(&data);
        for (read_buffer, batch_bytes) in [(1, 1), (3, 10), (7, 1000), (4096, 0)] {
            let reader = BufReader::with_capacity(read_buffer, io::Cursor::new(data.clone()));
            let (reader, _) = decompress(reader, "mem").await.unwrap();
            let (lines, totals, batches) = frame_through_channel(reader, "mem", batch_bytes, 1)
                .await
                .unwrap();
            assert_eq!(lines, expected.0, "read {read_buffer}, batch {batch_bytes}");
            assert_eq!(
                (totals.lines_read, totals.blank_lines),
                (expected.1, expected.2)
            );
            assert!(batches > 1, "batches were cut");
        }
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_size_even_when_reads_are_larger() {
        let data = sample(5000);
        let longest = data.split(|b| *b == b'\n').map(<[u8]>::len).max().unwrap();
        let reader = BufReader::with_capacity(64 << 10, io::Cursor::new(data.clone()));
        let (tx, mut rx) = mpsc::channel::<LineBatch>(1);
        let consumer = tokio::spawn(async move {
            let mut sizes = Vec::new();
            while let Some(batch) = rx.recv().await {
                sizes.push((batch.len_bytes(), batch.data.capacity()));
            }
            sizes
        });
        frame_into(
            reader,
            "mem",
            DEFAULT_MAX_LINE_BYTES,
            1000,
            &BatchPool::default(),
            tx,
        )
        .await
        .unwrap();
        let sizes = consumer.await.unwrap();
        assert!(sizes.len() > 10, "{sizes:?}");
        for (bytes, capacity) in sizes {
            assert!(bytes < 1000 + longest, "{bytes} bytes in a batch of 1000");
            assert_eq!(
                capacity,
                1000 + BATCH_SLACK_BYTES,
                "the buffer was never regrown"
            );
        }
    }

    #[tokio::test]
    async fn detection_survives_one_byte_reads() {
        let data = sample(20);
        let bytes = zstd(&data).await;
        let reader = BufReader::with_capacity(1, io::Cursor::new(bytes));
        let (reader, compression) = decompress(reader, "mem").await.unwrap();
        assert_eq!(compression, Compression::Zstd);
        let (lines, _, _) = frame_through_channel(reader, "mem", 64, 1).await.unwrap();
        assert_eq!(lines, frame_at_once(&data).0);
    }

    #[tokio::test]
    async fn short_and_empty_streams_are_plain() {
        for data in [&b""[..], b"\x1f", b"{}", b"\x28\xb5\x2f"] {
            let (mut reader, compression) = decompress(io::Cursor::new(data.to_vec()), "mem")
                .await
                .unwrap();
            assert_eq!(compression, Compression::None, "{data:?}");
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, data);
        }
    }

    #[tokio::test]
    async fn dropped_receiver_stops_quietly() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let data = sample(100);
        let totals = frame_into(
            io::Cursor::new(data.clone()),
            "mem",
            1024,
            16,
            &BatchPool::default(),
            tx,
        )
        .await
        .unwrap();
        assert_eq!(totals.lines_read, 0);
    }

    #[tokio::test]
    async fn line_numbers_count_decompressed_lines() {
        let data = b"{\"a\":1}\n\n   \n{\"b\":2}\r\n{\"c\":3}".to_vec();
        let dir = tempfile::tempdir().unwrap();
        let path = write_temp(&dir, "numbers", &gzip(&data).await);
        let (_, lines, totals) = open_and_frame(&path).await.unwrap();
        let numbers: Vec<u64> = lines.iter().map(|l| l.0).collect();
        assert_eq!(numbers, vec![1, 4, 5]);
        assert_eq!((totals.lines_read, totals.blank_lines), (5, 2));
    }

    #[test]
    fn source_parse_and_names() {
        assert_eq!(Source::parse("-"), Source::Stdin);
        assert_eq!(Source::Stdin.display_name(), "stdin");
        let source = Source::parse("exports/reservations.jsonl.gz");
        assert_eq!(
            source,
            Source::Path(PathBuf::from("exports/reservations.jsonl.gz"))
        );
        assert_eq!(source.display_name(), "exports/reservations.jsonl.gz");
        assert_eq!(Compression::Gzip.to_string(), "gzip");
    }
}
