//! HTTP handlers: the two export operations and signed, range-capable file downloads.

use super::content::{self, Ending, ExportContent, MeasuredFile, Slice, CHUNK_QUEUE};
use super::lifecycle::{self, NewExport, Sizes, Transition};
use super::{bump, signing, Shared};
use crate::api::{
    AddExportRequest, AddExportResponse, ErrorBody, ExportFile, ExportStatus, GetAllExportsRequest,
    GetAllExportsResponse,
};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashSet;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Operation names of the request log.
const OP_ADD: &str = "exports/add";
/// See [`OP_ADD`].
const OP_GET_ALL: &str = "exports/getAll";
/// See [`OP_ADD`].
const OP_DOWNLOAD: &str = "download";

/// The routes of one server.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/connector/v1/exports/add", post(add))
        .route("/api/connector/v1/exports/getAll", post(get_all))
        .route("/files/{export_id}/{file}", get(download_logged))
        .fallback(unknown_path)
        .with_state(shared)
}

/// `exports/add`: validates, refuses a second running export of the same entity, creates a
/// `Pending` export and starts measuring its files in the background.
async fn add(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let at = Instant::now();
    let response = add_export(Arc::clone(&shared), body);
    shared.log_request(at, OP_ADD, response.status());
    response
}

fn add_export(shared: Arc<Shared>, body: Bytes) -> Response {
    bump(&shared.counters.add_requests);
    let request_id = next_request_id(&shared);
    let request: AddExportRequest = match admit(&shared, &body, &request_id) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let entity = match lifecycle::validate_add(&request, shared.clock.now_micros()) {
        Ok(entity) => entity,
        Err(message) => return api_error(&shared, StatusCode::BAD_REQUEST, message, &request_id),
    };
    let config = &shared.config;
    if config.faults.forbid_entity.as_deref() == Some(entity.entity.as_str()) {
        let message = format!(
            "Exports of {} are not enabled for this enterprise.",
            entity.entity
        );
        return api_error(&shared, StatusCode::FORBIDDEN, message, &request_id);
    }
    let new = NewExport {
        seed: config.seed,
        rows: config.rows_for(&entity.entity),
        files: config.files_per_export,
        gzip: config.gzip,
        fail_entity: config.faults.fail_entity.as_deref(),
        fail_entity_once: config.faults.fail_entity_once.as_deref(),
        expire_entity_once: config.faults.expire_entity_once.as_deref(),
    };
    let export = {
        let mut registry = shared.registry();
        if let Err(message) = registry.check_none_running(&entity.entity) {
            drop(registry);
            return api_error(&shared, StatusCode::BAD_REQUEST, message, &request_id);
        }
        let id = registry.next_id(new.seed);
        let content = Arc::new(
            ExportContent::new(
                entity,
                registry.next_row_seed(new.seed, &entity.entity),
                new.rows,
                new.files,
                new.gzip,
            )
            .filtered(request.filters.as_ref()),
        );
        let sizes = if registry.will_fail(&new, &entity.entity) {
            // A failing export never lists files, so there is nothing to measure.
            watch::channel(Some(Ok(Arc::from(Vec::new())))).1
        } else {
            start_measuring(&shared, &content)
        };
        let export = registry
            .insert(id, &request, entity, content, sizes, &new)
            .view();
        registry.release_spools(&export.entity_type, &export.id);
        export
    };
    bump(&shared.counters.exports_added);
    tracing::debug!(export_id = %export.id, entity = %export.entity_type, "mock export added");
    json_response(StatusCode::OK, &AddExportResponse { export }, &request_id)
}

/// Measures (and spools, if the server has a spool directory) every file of an export on
/// blocking threads (one per file, so large exports measure in parallel) and publishes the
/// sizes when all are known.
fn start_measuring(shared: &Shared, content: &Arc<ExportContent>) -> watch::Receiver<Sizes> {
    let (tx, rx) = watch::channel(None);
    let passes: Vec<_> = (0..content.file_count())
        .map(|file| {
            let content = Arc::clone(content);
            let stopping = Arc::clone(&shared.stopping);
            let spool_dir = shared.spool_dir.clone();
            tokio::task::spawn_blocking(move || {
                content.measure(file, spool_dir.as_deref(), &stopping)
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut sizes = Vec::with_capacity(passes.len());
        for pass in passes {
            match pass.await {
                Ok(Ok(size)) => sizes.push(size),
                Ok(Err(e)) => {
                    tx.send_replace(Some(Err(e.to_string())));
                    return;
                }
                Err(e) => {
                    tx.send_replace(Some(Err(e.to_string())));
                    return;
                }
            }
        }
        tx.send_replace(Some(Ok(Arc::from(sizes))));
    });
    rx
}

/// `exports/getAll`: advances every export asked for by one poll and lists fresh signed URLs
/// for those that succeeded. Unknown ids are left out, as the API does.
async fn get_all(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let at = Instant::now();
    let response = get_all_exports(Arc::clone(&shared), body).await;
    shared.log_request(at, OP_GET_ALL, response.status());
    response
}

async fn get_all_exports(shared: Arc<Shared>, body: Bytes) -> Response {
    bump(&shared.counters.get_all_requests);
    let request_id = next_request_id(&shared);
    let request: GetAllExportsRequest = match admit(&shared, &body, &request_id) {
        Ok(r) => r,
        Err(response) => return response,
    };
    if let Err(message) = lifecycle::validate_get_all(&request) {
        return api_error(&shared, StatusCode::BAD_REQUEST, message, &request_id);
    }
    let config = &shared.config;
    let polled: Vec<_> = {
        let mut registry = shared.registry();
        let now = shared.clock.now_secs();
        let mut seen = HashSet::new();
        let mut polled = Vec::new();
        for id in &request.export_ids {
            // An id listed twice is one export, polled once.
            if !seen.insert(id.as_str()) {
                continue;
            }
            let Some(record) = registry.get_mut(id) else {
                continue;
            };
            match record.poll(config.pending_polls, config.processing_polls, now) {
                Transition::Failed => bump(&shared.counters.failed_exports),
                Transition::Expired => bump(&shared.counters.expired_exports),
                Transition::None => 0,
            };
            let sizes = (record.status() == ExportStatus::Success).then(|| record.sizes.clone());
            polled.push((record.view(), sizes));
        }
        polled
    };
    let mut exports = Vec::with_capacity(polled.len());
    for (mut export, sizes) in polled {
        if let Some(mut sizes) = sizes {
            // The first Success listing waits here for the measuring pass; later ones find
            // the sizes ready.
            let measured = sizes
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|s| s.clone());
            match measured {
                Some(Ok(sizes)) => {
                    export.files = signed_files(&shared, &export.id, &export.entity_type, &sizes);
                }
                Some(Err(e)) => {
                    let message = format!("Measuring export {} failed: {e}", export.id);
                    return api_error(
                        &shared,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        message,
                        &request_id,
                    );
                }
                None => {
                    let message = format!("Measuring export {} did not finish", export.id);
                    return api_error(
                        &shared,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        message,
                        &request_id,
                    );
                }
            }
        }
        exports.push(export);
    }
    json_response(
        StatusCode::OK,
        &GetAllExportsResponse { exports },
        &request_id,
    )
}

/// File entries with URLs signed until now + `url_validity` (rounded up to a whole second;
/// zero gives URLs that are already expired). With the `wrong_size_entity` fault, the first
/// file of an export of that entity is announced one byte larger than it is.
fn signed_files(
    shared: &Shared,
    export_id: &str,
    entity: &str,
    files: &[MeasuredFile],
) -> Vec<ExportFile> {
    let wrong_size = shared.config.faults.wrong_size_entity.as_deref() == Some(entity);
    let validity = shared.config.url_validity;
    let validity_secs = validity.as_secs() + u64::from(validity.subsec_nanos() > 0);
    let exp = shared
        .clock
        .now_secs()
        .saturating_add(i64::try_from(validity_secs).unwrap_or(i64::MAX));
    files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let size = file.size;
            let path = format!("/files/{export_id}/{}", i + 1);
            let sig = signing::sign(&shared.url_key, &path, exp);
            shared.record_signature(&sig);
            ExportFile {
                url: format!("{}{path}?exp={exp}&sig={sig}", shared.base_url),
                size_in_bytes: if wrong_size && i == 0 { size + 1 } else { size },
            }
        })
        .collect()
}

/// The common front of both operations, in the order a gateway would apply it: injected
/// faults, JSON syntax, credentials, then the operation's own shape.
#[allow(clippy::result_large_err)] // The error is the response itself, returned at once.
fn admit<T: DeserializeOwned>(
    shared: &Shared,
    body: &[u8],
    request_id: &str,
) -> Result<T, Response> {
    let n = bump(&shared.counters.api_requests);
    let faults = &shared.config.faults;
    if is_nth(n, faults.rate_limit_every) {
        let mut response = api_error(
            shared,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, try again later.".into(),
            request_id,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(faults.retry_after_secs),
        );
        return Err(response);
    }
    if is_nth(n, faults.server_error_every) {
        bump(&shared.counters.server_errors);
        return Err(api_error(
            shared,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Injected server error.".into(),
            request_id,
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        api_error(
            shared,
            StatusCode::BAD_REQUEST,
            format!("Invalid JSON: {e}."),
            request_id,
        )
    })?;
    let config = &shared.config;
    let token = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    if token("ClientToken") != Some(config.client_token.as_str())
        || token("AccessToken") != Some(config.access_token.as_str())
    {
        return Err(api_error(
            shared,
            StatusCode::UNAUTHORIZED,
            "Invalid ClientToken or AccessToken.".into(),
            request_id,
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        api_error(
            shared,
            StatusCode::BAD_REQUEST,
            format!("Invalid request: {e}."),
            request_id,
        )
    })
}

/// Whether request number `n` (from 1) is due a fault injected every `every` requests.
fn is_nth(n: u64, every: Option<u32>) -> bool {
    every.is_some_and(|every| every > 0 && n.is_multiple_of(u64::from(every)))
}

fn next_request_id(shared: &Shared) -> String {
    let n = bump(&shared.counters.request_ids);
    signing::derived_uuid("mews-etl mock request", shared.config.seed, n)
}

/// An error in the API's shape (`guidelines/responses.md`): `Message` and `RequestId` in a
/// JSON body, the id also in the `Request-Id` header. Counts it.
fn api_error(shared: &Shared, status: StatusCode, message: String, request_id: &str) -> Response {
    let counters = &shared.counters;
    match status {
        StatusCode::BAD_REQUEST => bump(&counters.bad_requests),
        StatusCode::UNAUTHORIZED => bump(&counters.unauthorized),
        StatusCode::FORBIDDEN => bump(&counters.forbidden),
        StatusCode::TOO_MANY_REQUESTS => bump(&counters.rate_limited),
        _ => 0,
    };
    let body = ErrorBody {
        message,
        request_id: Some(request_id.to_owned()),
    };
    json_response(status, &body, request_id)
}

fn json_response(status: StatusCode, body: &impl Serialize, request_id: &str) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| {
        // Serializing our own wire types cannot fail; if it ever did, say so in the body
        // rather than panic in a handler.
        format!(r#"{{"Message":"serialization failed: {e}"}}"#).into_bytes()
    });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("Request-Id", request_id)
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A plain-text response, as blob storage answers file requests.
fn plain(shared: &Shared, status: StatusCode, message: &str) -> Response {
    let counters = &shared.counters;
    match status {
        StatusCode::FORBIDDEN => bump(&counters.forbidden),
        StatusCode::NOT_FOUND => bump(&counters.not_found),
        _ => 0,
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("{message}\n")))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn unknown_path(State(shared): State<Arc<Shared>>) -> Response {
    plain(&shared, StatusCode::NOT_FOUND, "not found")
}

/// [`download`], recorded in the request log (when the response starts, not when its body
/// ends).
async fn download_logged(
    shared: State<Arc<Shared>>,
    path: Path<(String, String)>,
    query: RawQuery,
    headers: HeaderMap,
) -> Response {
    let at = Instant::now();
    let log = Arc::clone(&shared.0);
    let response = download(shared, path, query, headers).await;
    log.log_request(at, OP_DOWNLOAD, response.status());
    response
}

/// `GET /files/{export_id}/{n}?exp=…&sig=…`: file `n` (from 1) of a `Success` export, read
/// from its spool file or regenerated while it streams; honours `Range: bytes=…` with 206.
async fn download(
    State(shared): State<Arc<Shared>>,
    Path((export_id, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    bump(&shared.counters.file_requests);
    let (content, index, measured) = match locate(&shared, &export_id, &file, query.as_deref()) {
        Ok(found) => found,
        Err((status, message)) => return plain(&shared, status, message),
    };
    let size = measured.size;

    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let slice = match range.map(|r| r.resolve(size)) {
        None => Slice { skip: 0, len: size },
        Some(Some(slice)) => slice,
        Some(None) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_else(|_| Response::new(Body::empty()));
        }
    };

    let counters = &shared.counters;
    let number = bump(&counters.downloads);
    let faults = &shared.config.faults;
    let is_due = |nth: Option<u32>| nth.is_some_and(|nth| u64::from(nth) == number);
    let ending = if is_due(faults.reset_mid_body) {
        bump(&counters.resets);
        Ending::Reset
    } else if is_due(faults.short_body) {
        bump(&counters.short_bodies);
        Ending::Short
    } else {
        Ending::Complete
    };
    // A cut download sends half of what it announces.
    let sent = Slice {
        len: if ending == Ending::Complete {
            slice.len
        } else {
            slice.len / 2
        },
        ..slice
    };
    if faults.trickle.is_some() {
        bump(&counters.trickled);
    }
    tracing::debug!(%export_id, file = index + 1, skip = slice.skip, len = slice.len, ?ending, "mock download");

    let content_type = if content.is_gzip() {
        "application/gzip"
    } else {
        "application/x-ndjson"
    };
    let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
    let stopping = Arc::clone(&shared.stopping);
    tokio::task::spawn_blocking(move || match &measured.spool {
        Some(spool) => content::serve_spooled(spool, sent, ending, &tx, &stopping),
        None => content::produce(&content, index, sent, ending, &tx, &stopping),
    });
    let at_once = bump(&counters.downloads_at_once);
    counters
        .most_downloads_at_once
        .fetch_max(at_once, Ordering::Relaxed);
    let body = Body::from_stream(body_stream(BodyState {
        rx,
        shutdown: shared.shutdown.subscribe(),
        pending: Bytes::new(),
        trickle: faults.trickle,
        started: false,
        done: false,
        shared: Arc::clone(&shared),
    }));

    let mut response = Response::builder()
        .header(header::CONTENT_LENGTH, slice.len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, content_type);
    if range.is_some() {
        bump(&counters.range_downloads);
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", slice.skip, slice.skip + slice.len - 1),
        );
    }
    response
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Finds file `file` (from 1) of an export and checks the URL's signature and expiry;
/// returns the export's content, the file's index (from 0) and its size and spool file, or
/// the refusal.
fn locate(
    shared: &Shared,
    export_id: &str,
    file: &str,
    query: Option<&str>,
) -> Result<(Arc<ExportContent>, usize, MeasuredFile), (StatusCode, &'static str)> {
    let registry = shared.registry();
    let record = registry
        .get(export_id)
        .ok_or((StatusCode::NOT_FOUND, "no such export"))?;
    let index = match file.parse::<usize>() {
        Ok(n) if (1..=record.content.file_count()).contains(&n) => n - 1,
        _ => return Err((StatusCode::NOT_FOUND, "no such file")),
    };
    let path = format!("/files/{export_id}/{file}");
    let (exp, _) = query
        .and_then(parse_signature)
        .filter(|(exp, sig)| signing::verify(&shared.url_key, &path, *exp, sig))
        .ok_or((StatusCode::FORBIDDEN, "signature does not match"))?;
    if shared.clock.now_secs() >= exp {
        return Err((StatusCode::FORBIDDEN, "signed URL has expired"));
    }
    if !record.is_downloadable() {
        return Err((StatusCode::NOT_FOUND, "export files are not available"));
    }
    let measured = match &*record.sizes.borrow() {
        Some(Ok(files)) => files
            .get(index)
            .cloned()
            .ok_or((StatusCode::NOT_FOUND, "no such file"))?,
        _ => return Err((StatusCode::NOT_FOUND, "file not measured yet")),
    };
    Ok((Arc::clone(&record.content), index, measured))
}

/// `exp` and `sig` from a query string.
fn parse_signature(query: &str) -> Option<(i64, String)> {
    let mut exp = None;
    let mut sig = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("exp", v)) => exp = v.parse::<i64>().ok(),
            Some(("sig", v)) => sig = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((exp?, sig?))
}

/// A single byte range, as clients resuming a download send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=N-` or `bytes=N-M` (inclusive).
    From(u64, Option<u64>),
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The slice of a `size`-byte file, or `None` if unsatisfiable (416).
    fn resolve(self, size: u64) -> Option<Slice> {
        match self {
            ByteRange::From(start, end) if start < size => {
                let last = end.map_or(size - 1, |e| e.min(size - 1));
                (last >= start).then_some(Slice {
                    skip: start,
                    len: last - start + 1,
                })
            }
            ByteRange::Suffix(n) if n > 0 && size > 0 => {
                let len = n.min(size);
                Some(Slice {
                    skip: size - len,
                    len,
                })
            }
            _ => None,
        }
    }
}

/// Parses a `Range` header. Forms not understood (other units, several ranges) give `None`,
/// and the whole file is sent, which RFC 9110 allows.
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return end.parse().ok().map(ByteRange::Suffix);
    }
    let start = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(ByteRange::From(start, end))
}

/// State of one download body.
struct BodyState {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    shutdown: watch::Receiver<bool>,
    /// Received but not yet yielded (only non-empty when trickling).
    pending: Bytes,
    trickle: Option<(usize, Duration)>,
    /// Whether a piece has been yielded (trickling pauses before every later one).
    started: bool,
    /// Whether the body has ended with an error; nothing follows it.
    done: bool,
    shared: Arc<Shared>,
}

impl Drop for BodyState {
    fn drop(&mut self) {
        // Sent whole, cut off or left by the client: the body is over either way.
        self.shared
            .counters
            .downloads_at_once
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Turns the producer's chunks into an HTTP body: ends with an error when the server stops,
/// splits and delays chunks when trickling, and counts bytes served.
fn body_stream(state: BodyState) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if st.pending.is_empty() {
            let next = tokio::select! {
                item = st.rx.recv() => item,
                _ = st.shutdown.wait_for(|stop| *stop) => {
                    Some(Err(io::Error::other("mock server is stopping")))
                }
            };
            if st.started && !matches!(next, Some(Ok(_))) {
                // Hyper flushes what it has buffered only while the body is pending. An
                // error, or an end short of `Content-Length`, straight after the last chunk
                // would make it drop that chunk unsent, and an injected reset or short body
                // would reach the client with no bytes at all whenever they are ready at
                // once (spooled files), so it could not be resumed with a range.
                tokio::task::yield_now().await;
            }
            match next? {
                Ok(chunk) => st.pending = chunk,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
        let piece = match st.trickle {
            Some((bytes, pause)) => {
                if st.started {
                    tokio::time::sleep(pause).await;
                }
                st.pending.split_to(bytes.max(1).min(st.pending.len()))
            }
            None => std::mem::take(&mut st.pending),
        };
        st.started = true;
        st.shared
            .counters
            .bytes_served
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        Some((Ok(piece), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!(parse_range("bytes=10-"), Some(ByteRange::From(10, None)));
        assert_eq!(
            parse_range("bytes=10-19"),
            Some(ByteRange::From(10, Some(19)))
        );
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("bytes=1-2,4-5"), None);
        assert_eq!(parse_range("items=1-"), None);
        let s = ByteRange::From(10, None).resolve(100).unwrap();
        assert_eq!((s.skip, s.len), (10, 90));
        let s = ByteRange::From(10, Some(500)).resolve(100).unwrap();
        assert_eq!((s.skip, s.len), (10, 90));
        let s = ByteRange::Suffix(500).resolve(100).unwrap();
        assert_eq!((s.skip, s.len), (0, 100));
        assert!(ByteRange::From(100, None).resolve(100).is_none());
        assert!(ByteRange::Suffix(1).resolve(0).is_none());
    }

    #[test]
    fn every_nth() {
        assert!(!is_nth(1, Some(2)));
        assert!(is_nth(2, Some(2)));
        assert!(is_nth(4, Some(2)));
        assert!(!is_nth(4, None));
        assert!(!is_nth(4, Some(0)));
    }

    #[test]
    fn signatures_come_from_the_query() {
        assert_eq!(
            parse_signature("exp=12&sig=ab"),
            Some((12, "ab".to_owned()))
        );
        assert_eq!(parse_signature("sig=ab"), None);
        assert_eq!(parse_signature("exp=x&sig=ab"), None);
    }
}
