//! Streaming download of an export's files: HTTP body → one continuous byte stream, however
//! often the connection breaks, its URL expires or the server ignores ranges.
//!
//! A file's bytes are handed on as they arrive (nothing is buffered whole). When the body
//! breaks off — a reset, a short body, a timeout — the download reconnects and asks for the
//! rest with `Range: bytes=<received>-`; a server that answers with the whole file instead
//! is read from the start and the bytes already delivered are skipped, so the decompressor
//! and the line framer downstream never notice and no row is read twice. Signed URLs live
//! 10 minutes: an aged URL, or a 403/404, is replaced by a fresh one from `exports/getAll`.
//! The bytes received must add up to the file's `SizeInBytes` exactly, or the file fails.

use crate::api::{redact_url, ApiClient, ApiError, Export, ExportStatus};
use crate::input::Compression;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A signed URL older than this is refreshed before use: they are valid 10 minutes, and a
/// minute of margin covers clock skew and a request in flight.
pub const URL_MAX_AGE: Duration = Duration::from_secs(9 * 60);

/// Reconnections allowed per file before it fails. Each resumes where the last stopped, so
/// this bounds flakiness, not progress.
pub const MAX_RECONNECTS: u32 = 8;

/// First pause before a reconnection; doubled each time, with jitter, up to
/// [`MAX_RECONNECT_DELAY`].
pub const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// Longest pause between reconnections.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// Why a file could not be downloaded whole.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The export expired before its files were read: a new export is needed.
    #[error("export {export_id} expired while its files were being read")]
    Expired {
        /// The export.
        export_id: String,
    },
    /// The file's size disagrees with `SizeInBytes`.
    #[error("{file}: received {received} bytes but SizeInBytes is {expected}")]
    SizeMismatch {
        /// The file (URL without its signature).
        file: String,
        /// Bytes received on the wire.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// Gave up after repeated failures.
    #[error("{file}: gave up after {attempts} attempts at byte {received} of {expected}: {last}")]
    GaveUp {
        /// The file (URL without its signature).
        file: String,
        /// Connection attempts made.
        attempts: u32,
        /// Bytes received before giving up.
        received: u64,
        /// Bytes announced.
        expected: u64,
        /// The last error.
        last: String,
    },
    /// The export no longer lists this file, or fresh URLs could not be fetched.
    #[error("export {export_id}: {message}")]
    Export {
        /// The export.
        export_id: String,
        /// What went wrong.
        message: String,
    },
}

impl DownloadError {
    /// Finds a download error behind an I/O error raised while reading a download.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DownloadError> {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = current {
            if let Some(d) = e.downcast_ref::<DownloadError>() {
                return Some(d);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(inner) = io.get_ref() {
                    if let Some(d) = inner.downcast_ref::<DownloadError>() {
                        return Some(d);
                    }
                }
            }
            current = e.source();
        }
        None
    }
}

/// The current signed URLs of one export's files, refreshed on demand. Shared by the
/// downloads of that export so that one refresh serves them all.
pub struct ExportFiles {
    client: ApiClient,
    export_id: String,
    state: Mutex<(Vec<crate::api::ExportFile>, Instant)>,
}

impl ExportFiles {
    /// The files of `export` (which must be `Success`), as just listed by `exports/getAll`.
    pub fn new(client: ApiClient, export: &Export) -> Arc<Self> {
        Arc::new(ExportFiles {
            client,
            export_id: export.id.clone(),
            state: Mutex::new((export.files.clone(), Instant::now())),
        })
    }

    /// The export's id.
    pub fn export_id(&self) -> &str {
        &self.export_id
    }

    /// Number of files.
    pub async fn file_count(&self) -> usize {
        self.state.lock().await.0.len()
    }

    /// Size in bytes and redacted URL of file `index`.
    pub async fn describe(&self, index: usize) -> Option<(u64, String)> {
        let state = self.state.lock().await;
        state
            .0
            .get(index)
            .map(|f| (f.size_in_bytes, redact_url(&f.url)))
    }

    /// A URL for file `index` that is young enough to use; refreshes first when `stale`
    /// (the last one was refused) or when it has aged past [`URL_MAX_AGE`].
    async fn url(&self, index: usize, stale: bool) -> Result<String, DownloadError> {
        let mut state = self.state.lock().await;
        if stale || state.1.elapsed() > URL_MAX_AGE {
            let exports = self
                .client
                .get_exports(std::slice::from_ref(&self.export_id))
                .await
                .map_err(|e| DownloadError::Export {
                    export_id: self.export_id.clone(),
                    message: format!("refreshing file URLs: {e}"),
                })?;
            let export = exports
                .into_iter()
                .find(|e| e.id == self.export_id)
                .ok_or_else(|| DownloadError::Export {
                    export_id: self.export_id.clone(),
                    message: "no longer listed by exports/getAll".into(),
                })?;
            match export.status {
                ExportStatus::Success => {}
                ExportStatus::Expired => {
                    return Err(DownloadError::Expired {
                        export_id: self.export_id.clone(),
                    })
                }
                other => {
                    return Err(DownloadError::Export {
                        export_id: self.export_id.clone(),
                        message: format!("status changed to {other} while downloading"),
                    })
                }
            }
            let files =
                match_files(&state.0, export.files).map_err(|message| DownloadError::Export {
                    export_id: self.export_id.clone(),
                    message,
                })?;
            tracing::debug!(export_id = %self.export_id, "refreshed file URLs");
            *state = (files, Instant::now());
        }
        state
            .0
            .get(index)
            .map(|f| f.url.clone())
            .ok_or_else(|| DownloadError::Export {
                export_id: self.export_id.clone(),
                message: format!("has no file {}", index + 1),
            })
    }
}

/// Puts a refreshed list of an export's files in the order of the list before it: a file is
/// the one with the same URL without its signature, or, where the URLs do not say, the one
/// in the same place. Either way each must keep its size: a download resumes from a byte of
/// the file it began with, never of another.
fn match_files(
    old: &[crate::api::ExportFile],
    mut new: Vec<crate::api::ExportFile>,
) -> Result<Vec<crate::api::ExportFile>, String> {
    if new.len() != old.len() {
        return Err(format!(
            "now lists {} files instead of {}",
            new.len(),
            old.len()
        ));
    }
    let key = |f: &crate::api::ExportFile| redact_url(&f.url);
    let places: Option<Vec<usize>> = old
        .iter()
        .map(|o| {
            let mut same = new.iter().enumerate().filter(|(_, n)| key(n) == key(o));
            match (same.next(), same.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
        .collect();
    if let Some(places) = places {
        let mut taken: Vec<Option<crate::api::ExportFile>> = new.drain(..).map(Some).collect();
        new = places
            .into_iter()
            .filter_map(|i| taken.get_mut(i).and_then(Option::take))
            .collect();
        if new.len() != old.len() {
            return Err("lists two files under one address".into());
        }
    }
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        if o.size_in_bytes != n.size_in_bytes {
            return Err(format!(
                "file {} ({}) is now {} bytes instead of {}",
                i + 1,
                key(n),
                n.size_in_bytes,
                o.size_in_bytes
            ));
        }
    }
    Ok(new)
}

/// Progress of one download, readable while it runs.
#[derive(Debug, Default)]
pub struct WireCounter {
    bytes: AtomicU64,
    /// The `Content-Encoding` the server declared for the file, once connected.
    encoding: std::sync::Mutex<Option<Compression>>,
}

impl WireCounter {
    /// Bytes received on the wire so far (compressed, if the file is).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The content encoding the server declared (known once the first bytes arrived).
    pub fn content_encoding(&self) -> Option<Compression> {
        self.encoding.lock().ok().and_then(|e| *e)
    }
}

struct Body {
    files: Arc<ExportFiles>,
    index: usize,
    name: String,
    expected: u64,
    received: u64,
    response: Option<futures::stream::BoxStream<'static, reqwest::Result<Bytes>>>,
    /// Bytes still to drop from the current response: a server that ignored our range
    /// resent the file from its start.
    skip: u64,
    attempts: u32,
    stale_url: bool,
    last_error: String,
    counter: Arc<WireCounter>,
    finished: bool,
}

impl Body {
    fn gave_up(&self) -> DownloadError {
        DownloadError::GaveUp {
            file: self.name.clone(),
            attempts: self.attempts,
            received: self.received,
            expected: self.expected,
            last: self.last_error.clone(),
        }
    }

    /// Records the `Content-Encoding` of the file's first response, and checks that every
    /// later one (a resumption) declares the same: the bytes of two encodings spliced
    /// together would decode to nonsense, or worse, to other lines.
    fn same_encoding(&self, response: &reqwest::Response) -> Result<(), DownloadError> {
        // Byte offsets (ranges, SizeInBytes) count the encoded bytes, so the encoding is
        // decoded downstream, never by the HTTP client.
        let declared = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .and_then(Compression::from_content_encoding);
        let Ok(mut first) = self.counter.encoding.lock() else {
            return Ok(());
        };
        if self.received == 0 {
            *first = declared;
            return Ok(());
        }
        if *first == declared {
            return Ok(());
        }
        let name = |c: Option<Compression>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
        Err(DownloadError::Export {
            export_id: self.files.export_id.clone(),
            message: format!(
                "{}: resumed at byte {} with Content-Encoding {} where the file began with {}",
                self.name,
                self.received,
                name(declared),
                name(*first)
            ),
        })
    }

    async fn connect(&mut self) -> Result<(), DownloadError> {
        loop {
            if self.attempts > MAX_RECONNECTS {
                return Err(self.gave_up());
            }
            if self.attempts > 0 {
                pause(self.attempts).await;
            }
            self.attempts += 1;
            let url = self.files.url(self.index, self.stale_url).await?;
            self.stale_url = false;
            match self.files.client.download(&url, self.received).await {
                Ok(response) => {
                    self.same_encoding(&response)?;
                    self.skip = 0;
                    self.response = Some(response.bytes_stream().boxed());
                    return Ok(());
                }
                Err(e) => {
                    match e.status() {
                        // The signature expired or the file moved: fresh URLs, try again.
                        Some(403 | 404) => self.stale_url = true,
                        // The server ignored our range: read from the start, skip what we have.
                        Some(200) if self.received > 0 => {
                            match self.files.client.download(&url, 0).await {
                                Ok(response) => {
                                    self.same_encoding(&response)?;
                                    self.skip = self.received;
                                    self.response = Some(response.bytes_stream().boxed());
                                    return Ok(());
                                }
                                Err(e) => self.last_error = e.to_string(),
                            }
                            continue;
                        }
                        // Range not satisfiable: the file is shorter than announced.
                        Some(416) => {
                            return Err(DownloadError::SizeMismatch {
                                file: self.name.clone(),
                                received: self.received,
                                expected: self.expected,
                            })
                        }
                        _ if !is_worth_retrying(&e) => {
                            self.last_error = e.to_string();
                            return Err(self.gave_up());
                        }
                        _ => {}
                    }
                    tracing::warn!(file = %self.name, attempt = self.attempts, error = %e, "download failed; retrying");
                    self.last_error = e.to_string();
                }
            }
        }
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, DownloadError>> {
        loop {
            if self.finished {
                return None;
            }
            if self.response.is_none() {
                if let Err(e) = self.connect().await {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
            let stream = self.response.as_mut().expect("connected above");
            match stream.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64) as usize;
                        self.skip -= drop as u64;
                        chunk = chunk.slice(drop..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.received += chunk.len() as u64;
                    self.counter.bytes.store(self.received, Ordering::Relaxed);
                    if self.received > self.expected {
                        self.finished = true;
                        return Some(Err(DownloadError::SizeMismatch {
                            file: self.name.clone(),
                            received: self.received,
                            expected: self.expected,
                        }));
                    }
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    self.response = None;
                    if self.received == self.expected && self.skip == 0 {
                        // Every byte arrived before the connection broke (the body's end
                        // was lost): the file is whole, and a range from its end would be
                        // refused as beyond it.
                        tracing::debug!(file = %self.name, error = %ApiError::transport("download", "", e).to_string(), "connection broke after the last byte");
                        self.finished = true;
                        return None;
                    }
                    tracing::warn!(file = %self.name, received = self.received, error = %ApiError::transport("download", "", e).to_string(), "download interrupted; resuming");
                    self.last_error = "connection interrupted".into();
                }
                None => {
                    self.response = None;
                    if self.received == self.expected && self.skip == 0 {
                        self.finished = true;
                        return None;
                    }
                    tracing::warn!(file = %self.name, received = self.received, expected = self.expected, "download ended early; resuming");
                    self.last_error = format!("body ended at byte {}", self.received);
                }
            }
        }
    }
}

/// Waits before reconnection `attempt`: exponential with full jitter.
async fn pause(attempt: u32) {
    let exp = FIRST_RECONNECT_DELAY.saturating_mul(1 << attempt.min(16));
    let cap = exp.min(MAX_RECONNECT_DELAY);
    tokio::time::sleep(cap.mul_f64(fastrand::f64())).await;
}

fn is_worth_retrying(e: &ApiError) -> bool {
    e.is_retryable()
}

/// Opens file `index` of an export as a stream of its bytes (as served: compressed if the
/// file is), resuming across failures, with a counter of bytes received.
pub async fn open_file(
    files: Arc<ExportFiles>,
    index: usize,
) -> Result<
    (
        impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
        Arc<WireCounter>,
        String,
    ),
    DownloadError,
> {
    let (expected, name) = files
        .describe(index)
        .await
        .ok_or_else(|| DownloadError::Export {
            export_id: files.export_id.clone(),
            message: format!("has no file {}", index + 1),
        })?;
    let counter = Arc::new(WireCounter::default());
    let body = Body {
        files,
        index,
        name: name.clone(),
        expected,
        received: 0,
        response: None,
        skip: 0,
        attempts: 0,
        stale_url: false,
        last_error: String::new(),
        counter: counter.clone(),
        finished: false,
    };
    let stream = futures::stream::unfold(body, |mut body| async move {
        body.next_chunk()
            .await
            .map(|r| (r.map_err(std::io::Error::other), body))
    })
    .boxed();
    Ok((stream, counter, name))
}

/// The files of a successful export of one file of `size` bytes, served by `server` at
/// `/f/1` (tests).
#[cfg(test)]
pub(crate) fn one_file_export(
    server: &crate::api::test_server::TestServer,
    size: usize,
) -> Arc<ExportFiles> {
    use crate::api::{ApiConfig, ExportFile, Secret};
    let client = ApiClient::new(ApiConfig::new(
        server.url(),
        Secret::new("c"),
        Secret::new("a"),
    ))
    .expect("client");
    let export = Export {
        id: "e".into(),
        status: ExportStatus::Success,
        entity_type: "OrderItem".into(),
        scope: None,
        files: vec![ExportFile {
            url: format!("{}/f/1?sig=x", server.url()),
            size_in_bytes: size as u64,
        }],
        expires_utc: None,
        filters: None,
    };
    ExportFiles::new(client, &export)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_server::{Canned, TestServer};
    use crate::api::ExportFile;
    use tokio::io::AsyncReadExt;

    async fn encode(kind: &str, text: &[u8]) -> Vec<u8> {
        use async_compression::tokio::bufread::{BrotliEncoder, ZlibEncoder};
        let mut out = Vec::new();
        match kind {
            "br" => BrotliEncoder::new(text).read_to_end(&mut out).await,
            "deflate" => ZlibEncoder::new(text).read_to_end(&mut out).await,
            _ => unreachable!(),
        }
        .unwrap();
        out
    }

    fn file(url: &str, size: u64) -> ExportFile {
        ExportFile {
            url: url.into(),
            size_in_bytes: size,
        }
    }

    #[test]
    fn refreshed_files_are_matched_by_address_then_place() {
        let old = [
            file("https://h/e-1.jsonl?sig=a", 10),
            file("https://h/e-2.jsonl?sig=a", 20),
        ];
        // Listed the other way round, with new signatures: put back in place.
        let swapped = vec![
            file("https://h/e-2.jsonl?sig=b", 20),
            file("https://h/e-1.jsonl?sig=b", 10),
        ];
        let matched = match_files(&old, swapped).unwrap();
        assert_eq!(matched[0].url, "https://h/e-1.jsonl?sig=b");
        assert_eq!(matched[1].url, "https://h/e-2.jsonl?sig=b");
        // Addresses that say nothing (a new host): by place, sizes checked.
        let moved = vec![file("https://g/x?sig=b", 10), file("https://g/y?sig=b", 20)];
        assert_eq!(
            match_files(&old, moved).unwrap()[1].url,
            "https://g/y?sig=b"
        );
        let other = vec![file("https://g/x?sig=b", 20), file("https://g/y?sig=b", 10)];
        assert!(match_files(&old, other)
            .unwrap_err()
            .contains("bytes instead of"));
        let resized = vec![
            file("https://h/e-1.jsonl?sig=b", 11),
            file("https://h/e-2.jsonl?sig=b", 20),
        ];
        assert!(match_files(&old, resized).is_err());
        assert!(match_files(&old, vec![file("https://h/e-1.jsonl", 10)])
            .unwrap_err()
            .contains("1 files instead of 2"));
    }

    /// A resumption that declares another encoding than the file began with is refused,
    /// not spliced.
    #[tokio::test]
    async fn a_resumption_in_another_encoding_fails_the_file() {
        let text = b"{\"Id\":\"a\"}\n".repeat(50);
        let half = text.len() / 2;
        let range = format!("bytes {half}-{}/{}", text.len() - 1, text.len());
        let server = TestServer::start([
            Canned::bytes(200, text[..half].to_vec()).unterminated(),
            Canned::bytes(206, text[half..].to_vec())
                .header("Content-Range", &range)
                .header("Content-Encoding", "gzip"),
        ])
        .await;
        let (stream, _, _) = open_file(one_file_export(&server, text.len()), 0)
            .await
            .unwrap();
        let mut reader = tokio_util::io::StreamReader::new(stream);
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).await.unwrap_err();
        assert!(
            error.to_string().contains("Content-Encoding gzip"),
            "{error}"
        );
        assert_eq!(server.requests().len(), 2);
    }

    /// A connection that breaks after the last byte (the chunked body's end lost) leaves
    /// the file whole: no reconnection, which a server would refuse (416), and no error.
    #[tokio::test]
    async fn a_break_after_the_last_byte_ends_the_file() {
        let text = b"{\"Id\":\"a\"}\n".repeat(50);
        let server = TestServer::start([Canned::bytes(200, text.clone()).unterminated()]).await;
        let (stream, counter, _) = open_file(one_file_export(&server, text.len()), 0)
            .await
            .unwrap();
        let mut reader = tokio_util::io::StreamReader::new(stream);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, text);
        assert_eq!(counter.bytes(), text.len() as u64);
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn declared_content_encodings_are_decoded_downstream() {
        let text = b"{\"Id\":\"a\"}\n{\"Id\":\"b\"}\n".repeat(100);
        for kind in ["br", "deflate"] {
            let body = encode(kind, &text).await;
            let server = TestServer::start([
                Canned::bytes(200, body.clone()).header("Content-Encoding", kind)
            ])
            .await;
            let files = one_file_export(&server, body.len());
            let (stream, counter, name) = open_file(files, 0).await.unwrap();
            let mut reader = tokio_util::io::StreamReader::new(stream);
            tokio::io::AsyncBufReadExt::fill_buf(&mut reader)
                .await
                .unwrap();
            let declared = counter.content_encoding();
            assert!(declared.is_some(), "{kind}");
            let (mut decoded, compression) =
                crate::input::decompress_declared(reader, &name, declared)
                    .await
                    .unwrap();
            let mut out = Vec::new();
            decoded.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, text, "{kind} ({compression})");
            assert_eq!(counter.bytes(), body.len() as u64);
        }
    }
}
