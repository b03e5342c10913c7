//! The Connector API client: the two export operations and signed-file downloads.
//!
//! API calls (`exports/add`, `exports/getAll`) go through the [`RequestLimiter`] and the
//! [`RetryPolicy`]; file downloads go through neither, because they are not API calls (they
//! do not count against the access token's limit) and because the download stage must own
//! their retries to resume from the byte it reached.
//!
//! Credentials: the two tokens travel only in request bodies and are shown nowhere — not in
//! `Debug`, errors or logs; signed file URLs are shown only through [`redact_url`]. Error
//! bodies quoted in errors are scrubbed of both, in case a proxy echoes a request back.

use super::error::{is_retryable_status, ApiError};
use super::limit::RequestLimiter;
use super::retry::{parse_retry_after, RetryPolicy};
use super::types::{
    redact_url, AddExportRequest, AddExportResponse, ErrorBody, Export, ExportFilters, ExportScope,
    GetAllExportsRequest, GetAllExportsResponse, Secret, MAX_IDS_PER_REQUEST,
};
use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, RANGE, RETRY_AFTER};
use reqwest::{redirect, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The documented demo platform address (`guidelines/environments.md`).
pub const DEMO_PLATFORM_URL: &str = "https://api.mews-demo.com";

/// Default for [`ApiConfig::requests_per_window`]: the documented limit is 200 per access
/// token per 30 s, enforced best-effort across edge locations; 10 % headroom keeps us clear
/// of 429s that would otherwise cost a `Retry-After` wait.
pub const DEFAULT_REQUESTS_PER_WINDOW: u32 = 180;
/// Default for [`ApiConfig::window`]: the documented sliding window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Default for [`ApiConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest API response body read. A `getAll` for 1000 exports with their file lists is a
/// few megabytes; anything far beyond is not a Connector API answer, and reading it whole
/// would only exhaust memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of an error body read: enough for any Mews error, and a cap on HTML pages of
/// proxies and on XML of storage services.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// Most characters of a non-JSON error body quoted in an error message.
const ERROR_TEXT_PREFIX_CHARS: usize = 200;
/// Redirects followed for a file download (storage services may send one to a CDN). API
/// calls follow none: a redirected POST could carry the tokens to another host.
const MAX_DOWNLOAD_REDIRECTS: usize = 5;

const OP_ADD: &str = "exports/add";
const OP_GET_ALL: &str = "exports/getAll";
const OP_DOWNLOAD: &str = "download";

/// Settings of an [`ApiClient`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Platform address, e.g. [`DEMO_PLATFORM_URL`]. Must be `https://`, except `http://` to
    /// a loopback host (127.0.0.0/8, `::1`, `localhost`) for a local mock: the tokens are in
    /// every request body and must not cross a network in clear text.
    pub platform_url: String,
    /// Token identifying this client application.
    pub client_token: Secret,
    /// Access token of the property or portfolio.
    pub access_token: Secret,
    /// Name and version sent as `Client` and as `User-Agent`, e.g. `mews-etl/0.1.0`.
    pub client_name: String,
    /// Retries of API calls.
    pub retry: RetryPolicy,
    /// Most API requests started in any sliding [`ApiConfig::window`].
    pub requests_per_window: u32,
    /// The sliding window of the request limit.
    pub window: Duration,
    /// Limit on one API request, connecting to last body byte; for downloads, the longest
    /// wait for a connection or for the next bytes (a whole file may take much longer).
    pub request_timeout: Duration,
}

impl ApiConfig {
    /// Settings for `platform_url` with the defaults: client name `mews-etl/<version>`,
    /// default retries, 180 requests per 30 s, 60 s timeout.
    pub fn new(
        platform_url: impl Into<String>,
        client_token: Secret,
        access_token: Secret,
    ) -> Self {
        ApiConfig {
            platform_url: platform_url.into(),
            client_token,
            access_token,
            client_name: concat!("mews-etl/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy::default(),
            requests_per_window: DEFAULT_REQUESTS_PER_WINDOW,
            window: DEFAULT_WINDOW,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A Connector API client for one access token. Cheap to clone: clones share the HTTP
/// connection pool and, since the API counts requests per access token, the limiter.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// For API calls: no redirects.
    api: reqwest::Client,
    /// For file downloads: a few redirects, never to plain HTTP off loopback.
    files: reqwest::Client,
    /// The platform address, validated, without a trailing slash.
    base_url: String,
    client_token: Secret,
    access_token: Secret,
    client_name: String,
    retry: RetryPolicy,
    request_timeout: Duration,
    limiter: RequestLimiter,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written out by hand so that no token can slip in through a field added later.
        let inner = &self.inner;
        f.debug_struct("ApiClient")
            .field("platform_url", &inner.base_url)
            .field("client_name", &inner.client_name)
            .field("retry", &inner.retry)
            .field("limiter", &inner.limiter)
            .field("request_timeout", &inner.request_timeout)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// Validates `config` and builds the HTTP clients; no request is made.
    pub fn new(config: ApiConfig) -> Result<Self, ApiError> {
        let base = validate_platform_url(&config.platform_url)?;
        let invalid = |what: &str| Err(ApiError::InvalidConfig(what.to_owned()));
        if config.client_token.expose().is_empty() || config.access_token.expose().is_empty() {
            return invalid("client token and access token must not be empty");
        }
        if config.client_name.trim().is_empty() {
            return invalid("client name must not be empty");
        }
        if config.requests_per_window == 0 || config.window.is_zero() {
            return invalid("the request limit needs at least 1 request per non-empty window");
        }
        if config.retry.max_attempts == 0 {
            return invalid("retry policy needs at least 1 attempt");
        }
        if config.request_timeout.is_zero() {
            return invalid("request timeout must be positive");
        }

        // A loopback platform is a local mock: a proxy from the environment could not reach
        // it, so it is bypassed.
        let local = is_loopback(&base);
        let build = |builder: reqwest::ClientBuilder| {
            let builder = builder
                .user_agent(config.client_name.clone())
                .connect_timeout(config.request_timeout);
            let builder = if local { builder.no_proxy() } else { builder };
            builder
                .build()
                .map_err(|e| ApiError::InvalidConfig(format!("cannot build HTTP client: {e}")))
        };
        let api = build(reqwest::Client::builder().redirect(redirect::Policy::none()))?;
        let files = build(
            reqwest::Client::builder()
                .redirect(redirect::Policy::custom(follow_safe_redirect))
                // No total timeout: a large file takes as long as it takes; a stalled one is
                // caught by the gap between reads.
                .read_timeout(config.request_timeout),
        )?;

        Ok(ApiClient {
            inner: Arc::new(Inner {
                api,
                files,
                base_url: base.as_str().trim_end_matches('/').to_owned(),
                client_token: config.client_token,
                access_token: config.access_token,
                client_name: config.client_name,
                retry: config.retry,
                request_timeout: config.request_timeout,
                limiter: RequestLimiter::new(config.requests_per_window, config.window),
            }),
        })
    }

    /// Starts an export of `entity_type` (`exports/add`); `None` scope means everything the
    /// token can see, `None` filters all data.
    ///
    /// Retried like every API call. One caveat: if a request times out after the server
    /// created the export, the retry is rejected with a 400 (an export of that entity type
    /// is already pending), and that 400 is what the caller sees.
    pub async fn add_export(
        &self,
        entity_type: &str,
        scope: Option<ExportScope>,
        filters: Option<ExportFilters>,
    ) -> Result<Export, ApiError> {
        let body = AddExportRequest {
            client_token: self.inner.client_token.clone(),
            access_token: self.inner.access_token.clone(),
            client: self.inner.client_name.clone(),
            entity_type: entity_type.to_owned(),
            scope,
            filters,
        };
        let response: AddExportResponse = self.call(OP_ADD, &body).await?;
        Ok(response.export)
    }

    /// Fetches the exports with `ids` (`exports/getAll`), in as many calls of at most
    /// [`MAX_IDS_PER_REQUEST`] ids as needed, one after another; no call for no ids.
    pub async fn get_exports(&self, ids: &[String]) -> Result<Vec<Export>, ApiError> {
        let mut exports = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_REQUEST) {
            let body = GetAllExportsRequest {
                client_token: self.inner.client_token.clone(),
                access_token: self.inner.access_token.clone(),
                client: self.inner.client_name.clone(),
                export_ids: chunk.to_vec(),
            };
            let response: GetAllExportsResponse = self.call(OP_GET_ALL, &body).await?;
            exports.extend(response.exports);
        }
        Ok(exports)
    }

    /// GETs a signed file URL, from byte `from_byte` on when it is not 0 (HTTP `Range:
    /// bytes=N-`), and returns the response as soon as its headers arrived.
    ///
    /// The status is checked: 200 for a whole file, 206 for a range (a 200 to a range request
    /// would restart the file, so it is an error too, as is a `Content-Range` starting
    /// elsewhere). 403 or 404 come back as [`ApiError::Http`] with their status, so the
    /// caller can fetch fresh URLs (they expire after 10 minutes). Not retried and not rate
    /// limited here: the download stage owns its retries, since it must resume.
    pub async fn download(&self, url: &str, from_byte: u64) -> Result<reqwest::Response, ApiError> {
        let shown = redact_url(url);
        let parsed = Url::parse(url).map_err(|e| ApiError::Decode {
            operation: OP_DOWNLOAD,
            message: format!("invalid file URL {shown}: {e}"),
        })?;
        if !is_secure_or_local(&parsed) {
            // The query string is the credential; it must not cross a network in clear text.
            return Err(ApiError::Decode {
                operation: OP_DOWNLOAD,
                message: format!("refusing to fetch {shown}: not https:// and not loopback"),
            });
        }
        let mut request = self.inner.files.get(parsed.clone());
        if from_byte > 0 {
            request = request.header(RANGE, format!("bytes={from_byte}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::transport(OP_DOWNLOAD, url, e))?;

        let status = response.status();
        let expected = if from_byte > 0 {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        if status == expected {
            if from_byte > 0 {
                check_content_range(response.headers(), from_byte, &shown)?;
            }
            return Ok(response);
        }
        if status.is_success() {
            return Err(ApiError::Http {
                operation: OP_DOWNLOAD,
                status: status.as_u16(),
                message: format!(
                    "expected {} for a download from byte {from_byte}",
                    expected.as_u16()
                ),
                request_id: None,
                url: shown,
            });
        }
        // Storage services quote the signature in some error bodies, decoded or not; mask
        // every query value both ways.
        let raw = parsed.query().unwrap_or("").split('&');
        let raw = raw.filter_map(|pair| pair.split_once('=').map(|(_, v)| v.to_owned()));
        let decoded = parsed.query_pairs().map(|(_, v)| v.into_owned());
        let secrets: Vec<String> = raw.chain(decoded).collect();
        Err(http_error(OP_DOWNLOAD, &shown, response, &secrets).await)
    }

    /// POSTs `body` to `operation` with limiting and retries, and decodes the answer.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        operation: &'static str,
        body: &B,
    ) -> Result<R, ApiError> {
        let url = format!("{}/api/connector/v1/{operation}", self.inner.base_url);
        // Encoded once: every attempt sends the same bytes.
        let body = serde_json::to_vec(body).map_err(|e| ApiError::Decode {
            operation,
            message: format!("cannot encode request: {e}"),
        })?;
        let policy = self.inner.retry;
        let mut rng = fastrand::Rng::new();
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            // Every attempt is a request the server counts, retries included.
            self.inner.limiter.acquire().await;
            attempts += 1;
            let (error, retry_after) = match self.attempt(operation, &url, body.clone()).await {
                Ok(bytes) => return self.decode(operation, &bytes),
                Err(failure) => failure,
            };
            if !error.is_retryable() {
                return Err(error);
            }
            let delay = policy.delay(attempts, retry_after, &mut rng);
            if retry_after.is_some() {
                // The server's wait is for the access token: the other calls hold too, even
                // if this one gives up. Within one call's budget, so no call waits longer.
                self.inner
                    .limiter
                    .pause_until(Instant::now() + delay.min(policy.max_total));
            }
            let elapsed = started.elapsed();
            if !policy.allows(attempts, elapsed, delay) {
                return Err(ApiError::RetriesExhausted {
                    operation,
                    attempts,
                    elapsed,
                    last: Box::new(error),
                });
            }
            tracing::warn!(
                operation,
                attempt = attempts,
                status = error.status(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying Connector API request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One request; on failure, the error and the server's `Retry-After`, if any.
    async fn attempt(
        &self,
        operation: &'static str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, (ApiError, Option<Duration>)> {
        let response = self
            .inner
            .api
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.inner.request_timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| (ApiError::transport(operation, url, e), None))?;
        let status = response.status();
        if status.is_success() {
            return match read_limited(response, MAX_RESPONSE_BYTES).await {
                Ok((bytes, true)) => Ok(bytes),
                Ok((_, false)) => Err((
                    ApiError::Decode {
                        operation,
                        message: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                    },
                    None,
                )),
                Err(e) => Err((ApiError::transport(operation, url, e), None)),
            };
        }
        // Documented for 429; honoured on any retryable status, where HTTP also allows it.
        let retry_after = is_retryable_status(status.as_u16())
            .then(|| response.headers().get(RETRY_AFTER))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let secrets = [
            self.inner.client_token.expose().to_owned(),
            self.inner.access_token.expose().to_owned(),
        ];
        let error = http_error(operation, &redact_url(url), response, &secrets).await;
        Err((error, retry_after))
    }

    /// Decodes a success body with the client's tokens as the secrets to scrub.
    fn decode<R: DeserializeOwned>(
        &self,
        operation: &'static str,
        bytes: &[u8],
    ) -> Result<R, ApiError> {
        decode_response(
            operation,
            bytes,
            &[
                self.inner.client_token.expose(),
                self.inner.access_token.expose(),
            ],
        )
    }
}

/// Decodes the success body of `operation` (an `exports/add` or `exports/getAll` answer).
///
/// serde's message may quote the body, so `secrets` are masked in it. Public only so the
/// fuzz targets parse bodies exactly as the client does; not part of the API.
#[doc(hidden)]
pub fn decode_response<R: DeserializeOwned>(
    operation: &'static str,
    bytes: &[u8],
    secrets: &[&str],
) -> Result<R, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Decode {
        operation,
        message: scrub(&without_quoted_values(&e.to_string()), secrets),
    })
}

/// A JSON error message without the values it quotes (`invalid type: string "…"`): a value
/// in the wrong place may be a signed URL, whose signature must not reach a log. Field
/// names, quoted with backticks, stay.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Parses and checks a platform address: https, or http to a loopback host; no user info,
/// query or fragment (a platform address has none, and they would be sent everywhere).
fn validate_platform_url(text: &str) -> Result<Url, ApiError> {
    let shown = redact_url(text.trim());
    let url = Url::parse(text.trim()).map_err(|e| {
        ApiError::InvalidConfig(format!("platform URL {shown:?} is not a valid URL: {e}"))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::InvalidConfig(format!(
            "platform URL {shown:?} must not contain user info"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::InvalidConfig(format!(
            "platform URL {shown:?} must not contain a query or fragment"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ApiError::InvalidConfig(format!(
            "platform URL {shown:?} uses plain http:// to a non-loopback host, which would send \
             the tokens unencrypted; use https:// (http:// is accepted only for 127.0.0.0/8, \
             ::1 and localhost)"
        ))),
        other => Err(ApiError::InvalidConfig(format!(
            "platform URL {shown:?} has scheme {other:?}; expected https://"
        ))),
    }
}

/// Whether the URL's host is 127.0.0.0/8, `::1` or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Whether a URL may carry a credential: https, or http that stays on this machine.
fn is_secure_or_local(url: &Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url))
}

/// Redirect policy of downloads: a few hops, never onto plain HTTP off loopback, since the
/// redirect target may carry a signature of its own.
fn follow_safe_redirect(attempt: redirect::Attempt<'_>) -> redirect::Action {
    if attempt.previous().len() >= MAX_DOWNLOAD_REDIRECTS {
        attempt.error("too many redirects")
    } else if !is_secure_or_local(attempt.url()) {
        attempt.error("refusing a redirect to plain http://")
    } else {
        attempt.follow()
    }
}

/// A 206 must start where we asked; resuming elsewhere would corrupt the file. One without
/// `Content-Range` (which HTTP requires of it) cannot be placed at all.
fn check_content_range(headers: &HeaderMap, from_byte: u64, shown: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_RANGE) else {
        return Err(ApiError::Decode {
            operation: OP_DOWNLOAD,
            message: format!(
                "{shown}: asked from byte {from_byte}, got a partial answer without Content-Range"
            ),
        });
    };
    let start = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if start == Some(from_byte) {
        Ok(())
    } else {
        Err(ApiError::Decode {
            operation: OP_DOWNLOAD,
            message: format!(
                "{shown}: asked from byte {from_byte}, got Content-Range {:?}",
                value.to_str().unwrap_or("(not text)")
            ),
        })
    }
}

/// Builds [`ApiError::Http`] from an error response: the Mews body's `Message` and
/// `RequestId` when it is one, else a short prefix of the text; the `Request-Id` header when
/// the body has no id. `secrets` are masked wherever the body might quote them.
async fn http_error(
    operation: &'static str,
    shown_url: &str,
    response: reqwest::Response,
    secrets: &[String],
) -> ApiError {
    let status = response.status();
    let header_id = response
        .headers()
        .get("Request-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The body explains the error, but failing to read it must not hide the status.
    let body = read_limited(response, MAX_ERROR_BODY_BYTES)
        .await
        .map(|(bytes, _complete)| bytes)
        .unwrap_or_default();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    error_from_body(
        operation,
        status.as_u16(),
        &body,
        header_id,
        shown_url,
        &secrets,
    )
}

/// Builds [`ApiError::Http`] from an error body already read (at most
/// [`MAX_ERROR_BODY_BYTES`] of it): the Mews body's `Message` and `RequestId` when it is
/// one, else a short prefix of the text; `header_id` when the body has no id.
///
/// Public only so the fuzz targets parse error bodies exactly as the client does; not part
/// of the API.
#[doc(hidden)]
pub fn error_from_body(
    operation: &'static str,
    status: u16,
    body: &[u8],
    header_id: Option<String>,
    shown_url: &str,
    secrets: &[&str],
) -> ApiError {
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| !b.message.is_empty());
    let (message, body_id) = match parsed {
        Some(b) => (b.message, b.request_id),
        None => (text_prefix(body, status), None),
    };
    ApiError::Http {
        operation,
        status,
        message: scrub(&message, secrets),
        request_id: body_id.or(header_id),
        url: shown_url.to_owned(),
    }
}

/// The first characters of a non-JSON body on one line, or the status's reason if empty.
fn text_prefix(body: &[u8], status: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = words.join(" ");
    if line.is_empty() {
        return StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no body")
            .to_owned();
    }
    match line.char_indices().nth(ERROR_TEXT_PREFIX_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Replaces every occurrence of each secret (of a length worth masking) with `***`.
fn scrub(text: &str, secrets: &[&str]) -> String {
    // Very short values (a query flag such as `1`) would mask ordinary words, and are not
    // credentials anyway.
    const MIN_SECRET_LEN: usize = 6;
    secrets
        .iter()
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .fold(text.to_owned(), |acc, s| acc.replace(s, "***"))
}

/// Reads at most `limit` bytes of a body, and whether that was all of it; stops reading at
/// the limit rather than buffering whatever a server sends.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{Canned, TestServer};
    use super::*;
    use crate::api::{ExportStatus, TimeInterval};

    const CLIENT_TOKEN: &str = "CLIENT-TOKEN-SECRET";
    const ACCESS_TOKEN: &str = "ACCESS-TOKEN-SECRET";

    fn config(url: &str) -> ApiConfig {
        ApiConfig {
            client_name: "mews-etl/test".into(),
            ..ApiConfig::new(url, Secret::new(CLIENT_TOKEN), Secret::new(ACCESS_TOKEN))
        }
    }

    fn client(server: &TestServer) -> ApiClient {
        ApiClient::new(config(&server.url())).unwrap()
    }

    fn export_json(id: &str) -> String {
        format!(
            r#"{{"Id":"{id}","Status":"Pending","EntityType":"OrderItem","Scope":null,"Files":[],"ExpiresUtc":null,"Filters":null}}"#
        )
    }

    fn added(id: &str) -> Canned {
        Canned::json(200, &format!(r#"{{"Export":{}}}"#, export_json(id)))
    }

    fn assert_no_secret(text: &str) {
        for secret in [CLIENT_TOKEN, ACCESS_TOKEN, "SECRETSIG"] {
            assert!(!text.contains(secret), "{secret} shown in: {text}");
        }
    }

    /// Display, Debug and every source of an error.
    fn all_text(error: &ApiError) -> String {
        let mut text = format!("{error} {error:?}");
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            text.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        text
    }

    #[tokio::test]
    async fn add_export_sends_the_documented_body() {
        let server = TestServer::start([added("e-1")]).await;
        let filters = ExportFilters {
            updated_utc: Some(TimeInterval {
                start_utc: "2020-11-04T00:00:00Z".into(),
                end_utc: "2020-11-05T00:00:00Z".into(),
            }),
            ledger_entry_filters: None,
        };
        let scope = ExportScope {
            enterprise_ids: Some(vec!["ent-1".into()]),
            chain_ids: None,
        };
        let export = client(&server)
            .add_export("OrderItem", Some(scope), Some(filters))
            .await
            .unwrap();
        assert_eq!(export.id, "e-1");
        assert_eq!(export.status, ExportStatus::Pending);

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/api/connector/v1/exports/add");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("user-agent"), Some("mews-etl/test"));
        let body = request.json();
        assert_eq!(body["ClientToken"], CLIENT_TOKEN);
        assert_eq!(body["AccessToken"], ACCESS_TOKEN);
        assert_eq!(body["Client"], "mews-etl/test");
        assert_eq!(body["EntityType"], "OrderItem");
        assert_eq!(body["Scope"]["EnterpriseIds"][0], "ent-1");
        assert!(body["Scope"].get("ChainIds").is_none(), "{body}");
        assert_eq!(
            body["Filters"]["UpdatedUtc"]["StartUtc"],
            "2020-11-04T00:00:00Z"
        );
        assert!(body.get("LanguageCode").is_none(), "{body}");
    }

    #[tokio::test]
    async fn bad_request_fails_fast_with_message_and_request_id() {
        let body = r#"{"Message":"Invalid EntityType.","RequestId":"req-42","Details":null}"#;
        let server = TestServer::start([Canned::json(400, body), added("never")]).await;
        let error = client(&server)
            .add_export("Nope", None, None)
            .await
            .unwrap_err();
        match &error {
            ApiError::Http {
                operation,
                status,
                message,
                request_id,
                url,
            } => {
                assert_eq!(*operation, "exports/add");
                assert_eq!(*status, 400);
                assert_eq!(message, "Invalid EntityType.");
                assert_eq!(request_id.as_deref(), Some("req-42"));
                assert!(url.ends_with("/api/connector/v1/exports/add"), "{url}");
            }
            other => panic!("expected Http, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "exports/add: HTTP 400: Invalid EntityType. (request id req-42)"
        );
        assert!(!error.is_retryable());
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn non_json_error_bodies_are_quoted_short_and_scrubbed() {
        let page = format!(
            "<html>\n<body>Unauthorized: token {ACCESS_TOKEN} rejected {}</body></html>",
            "x".repeat(5000)
        );
        let server =
            TestServer::start([Canned::text(401, &page).header("Request-Id", "hdr-7")]).await;
        let error = client(&server)
            .get_exports(&["a".into()])
            .await
            .unwrap_err();
        let ApiError::Http {
            status,
            message,
            request_id,
            ..
        } = &error
        else {
            panic!("expected Http, got {error:?}");
        };
        assert_eq!(*status, 401);
        assert!(
            message.starts_with("<html> <body>Unauthorized: token *** rejected"),
            "{message}"
        );
        assert!(
            message.chars().count() <= ERROR_TEXT_PREFIX_CHARS + 1,
            "{message}"
        );
        assert_eq!(request_id.as_deref(), Some("hdr-7"));
        assert_no_secret(&all_text(&error));
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_requests_waits_for_retry_after() {
        let server = TestServer::start([
            Canned::json(429, r#"{"Message":"Too many requests."}"#).header("Retry-After", "3"),
            added("e-1"),
        ])
        .await;
        let started = Instant::now();
        let export = client(&server)
            .add_export("OrderItem", None, None)
            .await
            .unwrap();
        assert_eq!(export.id, "e-1");
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_the_other_calls_too() {
        let server = TestServer::start([
            Canned::json(429, r#"{"Message":"Too many requests."}"#).header("Retry-After", "3"),
            added("e-1"),
            added("e-2"),
        ])
        .await;
        let client = client(&server);
        let first = tokio::spawn({
            let client = client.clone();
            async move { client.add_export("OrderItem", None, None).await }
        });
        while server.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        client.add_export("Payment", None, None).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(2800),
            "the second call was sent during the first one's Retry-After: {:?}",
            started.elapsed()
        );
        first.await.unwrap().unwrap();
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_budget_still_holds_the_others_within_it() {
        let server = TestServer::start([
            Canned::json(429, r#"{"Message":"Too many requests."}"#).header("Retry-After", "400"),
            added("e-1"),
        ])
        .await;
        let client = client(&server);
        let error = client
            .add_export("OrderItem", None, None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApiError::RetriesExhausted { attempts: 1, .. }),
            "{error:?}"
        );
        let started = Instant::now();
        client.add_export("Payment", None, None).await.unwrap();
        let held = started.elapsed();
        let budget = RetryPolicy::default().max_total;
        assert!(
            held >= budget - Duration::from_secs(1) && held <= budget,
            "{held:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_are_retried() {
        let unavailable = Canned::text(503, "busy");
        let server = TestServer::start([unavailable.clone(), unavailable, added("e-1")]).await;
        let export = client(&server)
            .add_export("OrderItem", None, None)
            .await
            .unwrap();
        assert_eq!(export.id, "e-1");
        assert_eq!(server.requests().len(), 3);
    }

    /// Collects formatted log lines in memory.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_logged_with_fields_and_without_secrets() {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // tracing-core takes a lone registered dispatcher for the global one and lets whichever
        // thread first reaches a log statement decide whether it is enabled, for everyone; a
        // second, idle dispatcher makes it ask all of them, so other tests running in parallel
        // cannot switch this test's log line off.
        let _idle = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        // The test runtime is single-threaded, so a thread-local subscriber sees every event.
        let _guard = tracing::subscriber::set_default(subscriber);
        let echo = format!("upstream rejected {ACCESS_TOKEN}");
        let server = TestServer::start([Canned::text(502, &echo), added("e-1")]).await;
        client(&server)
            .add_export("OrderItem", None, None)
            .await
            .unwrap();

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        for field in [
            "WARN",
            "operation=\"exports/add\"",
            "attempt=1",
            "status=502",
            "delay_ms=",
        ] {
            assert!(text.contains(field), "{field} missing in: {text}");
        }
        assert_no_secret(&text);
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_server_errors_exhaust_the_policy() {
        let server = TestServer::start_with_fallback([], Some(Canned::text(503, "busy"))).await;
        let error = client(&server)
            .add_export("OrderItem", None, None)
            .await
            .unwrap_err();
        match &error {
            ApiError::RetriesExhausted {
                operation,
                attempts,
                last,
                ..
            } => {
                assert_eq!(*operation, "exports/add");
                assert_eq!(*attempts, RetryPolicy::default().max_attempts);
                assert_eq!(last.status(), Some(503));
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        assert!(error.to_string().contains("after 6 attempts"), "{error}");
        assert_eq!(error.status(), Some(503));
        assert_eq!(server.requests().len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn total_time_bounds_retries_too() {
        // Each 429 asks for 50 s; with a 2-minute budget only three attempts fit.
        let busy = Canned::text(429, "slow down").header("Retry-After", "50");
        let server = TestServer::start_with_fallback([], Some(busy)).await;
        let mut cfg = config(&server.url());
        cfg.retry.max_total = Duration::from_secs(120);
        let error = ApiClient::new(cfg)
            .unwrap()
            .get_exports(&["a".into()])
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApiError::RetriesExhausted { attempts: 3, .. }),
            "{error:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refused_connections_are_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut cfg = config(&url);
        cfg.retry.max_attempts = 3;
        let error = ApiClient::new(cfg)
            .unwrap()
            .get_exports(&["a".into()])
            .await
            .unwrap_err();
        let ApiError::RetriesExhausted { attempts, last, .. } = &error else {
            panic!("expected RetriesExhausted, got {error:?}");
        };
        assert_eq!(*attempts, 3);
        assert!(matches!(**last, ApiError::Transport { .. }), "{last:?}");
    }

    #[tokio::test]
    async fn get_exports_splits_ids_into_calls_of_at_most_1000() {
        let responses = (0..3).map(|i| {
            Canned::json(
                200,
                &format!(r#"{{"Exports":[{}]}}"#, export_json(&format!("e-{i}"))),
            )
        });
        let server = TestServer::start(responses).await;
        let ids: Vec<String> = (0..2500).map(|i| format!("id-{i}")).collect();
        let exports = client(&server).get_exports(&ids).await.unwrap();
        let got: Vec<&str> = exports.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(got, ["e-0", "e-1", "e-2"]);

        let requests = server.requests();
        let sizes: Vec<usize> = requests
            .iter()
            .map(|r| r.json()["ExportIds"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert!(requests
            .iter()
            .all(|r| r.target == "/api/connector/v1/exports/getAll"));
        assert_eq!(requests[2].json()["ExportIds"][499], "id-2499");

        assert!(client(&server).get_exports(&[]).await.unwrap().is_empty());
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_api_requests() {
        let ok = Canned::json(200, r#"{"Exports":[]}"#);
        let server = TestServer::start_with_fallback([], Some(ok)).await;
        let mut cfg = config(&server.url());
        cfg.requests_per_window = 2;
        cfg.window = Duration::from_secs(10);
        let client = ApiClient::new(cfg).unwrap();
        let started = Instant::now();
        for _ in 0..5 {
            client.get_exports(&["a".into()]).await.unwrap();
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(20), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
        assert_eq!(server.requests().len(), 5);
    }

    #[test]
    fn platform_url_must_be_https_unless_loopback() {
        let new = |url: &str| ApiClient::new(config(url));
        for ok in [
            DEMO_PLATFORM_URL,
            "https://api.mews.com/",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://localhost:3000",
            "http://[::1]:3000",
        ] {
            assert!(new(ok).is_ok(), "{ok}: {:?}", new(ok).unwrap_err());
        }
        for bad in [
            "http://api.mews-demo.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "ftp://api.mews.com",
            "https://api.mews.com/?x=1",
            "https://user:pw@api.mews.com",
            "api.mews.com",
        ] {
            let error = new(bad).unwrap_err();
            assert!(
                matches!(error, ApiError::InvalidConfig(_)),
                "{bad}: {error:?}"
            );
        }
        let error = new("http://api.mews-demo.com").unwrap_err().to_string();
        assert!(
            error.contains("https://") && error.contains("loopback"),
            "{error}"
        );

        let mut cfg = config(DEMO_PLATFORM_URL);
        cfg.requests_per_window = 0;
        assert!(ApiClient::new(cfg).is_err());
    }

    #[tokio::test]
    async fn tokens_never_show() {
        let server = TestServer::start([Canned::json(
            403,
            &format!(r#"{{"Message":"Token {CLIENT_TOKEN} / {ACCESS_TOKEN} is disabled."}}"#),
        )])
        .await;
        let client = client(&server);
        assert_no_secret(&format!("{client:?}"));
        assert_no_secret(&format!("{:?}", config(&server.url())));
        let error = client
            .add_export("OrderItem", None, None)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(403));
        assert_no_secret(&all_text(&error));
    }

    #[tokio::test]
    async fn signed_urls_never_show() {
        let xml =
            "<Error><Code>AuthenticationFailed</Code><Signature>SECRETSIG</Signature></Error>";
        let server = TestServer::start([Canned::text(403, xml)]).await;
        let url = format!("{}/exports/1.jsonl?sv=1&sig=SECRETSIG", server.url());
        let error = client(&server).download(&url, 0).await.unwrap_err();
        assert_eq!(error.status(), Some(403));
        let ApiError::Http { url: shown, .. } = &error else {
            panic!("expected Http, got {error:?}");
        };
        assert_eq!(*shown, format!("{}/exports/1.jsonl", server.url()));
        assert_no_secret(&all_text(&error));

        // A transport error: `reqwest` would print the full URL; ours must not.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!(
            "http://{}/f.jsonl?sig=SECRETSIG",
            listener.local_addr().unwrap()
        );
        drop(listener);
        let error = client(&server).download(&closed, 0).await.unwrap_err();
        assert!(matches!(error, ApiError::Transport { .. }), "{error:?}");
        assert!(error.is_retryable());
        assert_no_secret(&all_text(&error));
        // Its text says what failed, not only that a request did.
        assert!(error.to_string().contains("Connection refused"), "{error}");

        let error = client(&server)
            .download("http://files.example/f.jsonl?sig=SECRETSIG", 0)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not https"), "{error}");
        assert_no_secret(&all_text(&error));
    }

    #[tokio::test]
    async fn download_resumes_with_a_range() {
        let server = TestServer::start([
            Canned::text(200, "0123456789"),
            Canned::text(206, "56789").header("Content-Range", "bytes 5-9/10"),
            Canned::text(200, "0123456789"),
            Canned::text(206, "6789").header("Content-Range", "bytes 6-9/10"),
            Canned::text(206, "56789"),
        ])
        .await;
        let client = client(&server);
        let url = format!("{}/f.jsonl?sig=SECRETSIG", server.url());

        let whole = client.download(&url, 0).await.unwrap();
        assert_eq!(whole.text().await.unwrap(), "0123456789");
        let tail = client.download(&url, 5).await.unwrap();
        assert_eq!(tail.text().await.unwrap(), "56789");
        // A server ignoring the range would restart the file under the caller's feet.
        let ignored = client.download(&url, 5).await.unwrap_err();
        assert_eq!(ignored.status(), Some(200));
        let elsewhere = client.download(&url, 5).await.unwrap_err();
        assert!(
            matches!(elsewhere, ApiError::Decode { .. }),
            "{elsewhere:?}"
        );
        // A partial answer that does not say where it starts cannot be placed.
        let unplaced = client.download(&url, 5).await.unwrap_err();
        assert!(
            unplaced.to_string().contains("without Content-Range"),
            "{unplaced:?}"
        );

        let requests = server.requests();
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].target, "/f.jsonl?sig=SECRETSIG");
        assert_eq!(requests[0].header("range"), None);
        assert_eq!(requests[1].header("range"), Some("bytes=5-"));
        // Downloads are not API calls: no tokens, nothing in the body.
        assert!(requests[1].body.is_empty());
    }

    /// A signed URL where the reference has a list: the decode error says what is wrong
    /// and where, but not the value, which carries a signature.
    #[test]
    fn decode_errors_do_not_quote_values() {
        let body = br#"{"Exports":[{"Id":"x","Status":"Success","EntityType":"Bill","Files":"https://h/f?sig=SECRETSIG"}]}"#;
        let error =
            decode_response::<GetAllExportsResponse>("exports/getAll", body, &[]).unwrap_err();
        let text = error.to_string();
        assert_no_secret(&text);
        assert!(
            text.contains("invalid type") && text.contains("line 1"),
            "{text}"
        );
        let missing = decode_response::<GetAllExportsResponse>("exports/getAll", b"{}", &[])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("`Exports`"), "{missing}");
    }

    #[tokio::test]
    async fn success_body_over_the_cap_is_a_decode_error_naming_the_operation() {
        // Valid JSON if read whole, so only the cap can refuse it.
        let mut body = br#"{"Exports":[]}"#.to_vec();
        body.resize(MAX_RESPONSE_BYTES + 1, b' ');
        let server = TestServer::start([Canned::bytes(200, body)]).await;
        let error = client(&server)
            .get_exports(&["a".into()])
            .await
            .unwrap_err();
        let ApiError::Decode { operation, message } = &error else {
            panic!("expected Decode, got {error:?}");
        };
        assert_eq!(*operation, "exports/getAll");
        assert_eq!(
            message,
            &format!("response larger than {MAX_RESPONSE_BYTES} bytes")
        );
        assert!(!error.is_retryable());
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn success_body_at_the_cap_is_read() {
        let mut body = br#"{"Exports":[]}"#.to_vec();
        body.resize(MAX_RESPONSE_BYTES, b' ');
        let server = TestServer::start([Canned::bytes(200, body)]).await;
        let exports = client(&server).get_exports(&["a".into()]).await.unwrap();
        assert!(exports.is_empty());
    }

    #[tokio::test]
    async fn huge_error_body_is_read_only_up_to_its_cap() {
        // A JSON error whose closing brace lies past the cap: cut there, it is no longer
        // JSON, so the message is the short text prefix rather than the whole body.
        let mut body = br#"{"Message":"too big","RequestId":"r-1","Pad":""#.to_vec();
        body.resize(8 << 20, b'x');
        body.extend_from_slice(b"\"}");
        let server = TestServer::start([Canned::bytes(400, body)]).await;
        let error = client(&server)
            .add_export("OrderItem", None, None)
            .await
            .unwrap_err();
        let ApiError::Http {
            operation,
            status,
            message,
            ..
        } = &error
        else {
            panic!("expected Http, got {error:?}");
        };
        assert_eq!((*operation, *status), ("exports/add", 400));
        assert!(message.starts_with(r#"{"Message":"too big""#), "{message}");
        assert!(
            message.chars().count() <= ERROR_TEXT_PREFIX_CHARS + 1,
            "{message}"
        );
    }

    /// `depth` brackets of `open`, for nesting attacks on the body parsers.
    fn nested(prefix: &str, open: &str, depth: usize) -> Vec<u8> {
        let mut body = prefix.as_bytes().to_vec();
        for _ in 0..depth {
            body.extend_from_slice(open.as_bytes());
        }
        body
    }

    #[test]
    fn deeply_nested_bodies_are_clean_errors() {
        for body in [
            nested("", "[", 10_000),
            nested("", r#"{"a":"#, 10_000),
            nested(r#"{"Exports":"#, "[", 10_000),
            nested(r#"{"Exports":[{"Id":"x","Scope":"#, r#"{"X":"#, 10_000),
        ] {
            let error = decode_response::<GetAllExportsResponse>(OP_GET_ALL, &body, &[])
                .expect_err("nested body decoded");
            assert!(matches!(error, ApiError::Decode { .. }), "{error:?}");
            let error = decode_response::<AddExportResponse>(OP_ADD, &body, &[])
                .expect_err("nested body decoded");
            assert!(matches!(error, ApiError::Decode { .. }), "{error:?}");
            let error = error_from_body(OP_ADD, 400, &body, None, "u", &[]);
            let ApiError::Http { message, .. } = &error else {
                panic!("expected Http, got {error:?}");
            };
            assert!(message.chars().count() <= ERROR_TEXT_PREFIX_CHARS + 1);
        }
        // Nesting in a member the error body does not describe is skipped, within limits.
        let mut body = nested(r#"{"Message":"m","Details":"#, "[", 100);
        body.extend(std::iter::repeat_n(b']', 100));
        body.push(b'}');
        let error = error_from_body(OP_ADD, 400, &body, None, "u", &[]);
        assert_eq!(error.to_string(), "exports/add: HTTP 400: m");
    }

    #[test]
    fn text_prefix_is_one_short_line() {
        assert_eq!(text_prefix(b"", 502), "Bad Gateway");
        assert_eq!(text_prefix(b" a\n\tb ", 502), "a b");
        let long = "é".repeat(500);
        assert_eq!(
            text_prefix(long.as_bytes(), 502).chars().count(),
            ERROR_TEXT_PREFIX_CHARS + 1
        );
    }
}
