//! The embedded Connector API: `exports/add`, `exports/getAll` and signed file downloads, as
//! `operations/exports.md` documents them, for the demo, the integration tests and the
//! benchmarks.
//!
//! ```text
//!  POST /api/connector/v1/exports/add     credentials → validation → new Pending export
//!  POST /api/connector/v1/exports/getAll  each call advances Pending → Processing → Success
//!  GET  /files/{export_id}/{n}?exp&sig    file n (1-based) of a Success export, Range-capable
//! ```
//!
//! Export rows come from [`Generator`](crate::generate) and depend only on the server seed,
//! the entity type and how many of its exports came before (export ids also carry a salt
//! drawn when the server starts, so no two servers share one). An export's rows match its
//! filters, as the API's do: `UpdatedUtc` within the update interval, a ledger entry's
//! `PostingDate` within the posting dates (other values are synthetic and unrelated to
//! them). `SizeInBytes` must be exact,
//! so each file is generated once while the export is being "processed" (the `getAll` call
//! that first reports `Success` waits for that pass), and that pass also writes the bytes
//! to a spool file: an anonymous temporary file (it has no name, so its disk is freed when
//! the server closes it or the process ends, however it ends) in the system's temporary
//! directory or [`MockConfig::spool_dir`]. Downloads read the spool in chunks, so the
//! generating work is not done twice and does not compete with the client for CPU while it
//! downloads. Without a spool file (spooling off, the directory missing, a file could not
//! be made, the disk filled up) a file is regenerated while it is streamed instead, with
//! the same bytes. Either way a blocking thread feeds a bounded queue of chunks: a
//! multi-gigabyte export costs a few chunks of memory per download.
//!
//! Spooling costs temporary disk equal to the size of the exports' files (compressed size
//! with [`MockConfig::gzip`]): `run --demo --demo-rows N` needs as much free space in the
//! temporary directory as the ten exports of N rows take. Adding an export releases the
//! spool of the entity type's earlier exports (regenerated if fetched again), so a
//! long-running server keeps about one export per entity type on disk.
//!
//! Faults ([`Faults`]) are counted requests or fixed download numbers, never random, so a
//! test knows which request fails. Time comes from a clock the tests can move
//! ([`MockServer::advance_clock`]), so URL expiry is tested without sleeping.
//!
//! The server binds loopback addresses only: it serves demo tokens and is not meant to be
//! reachable from elsewhere.

mod clock;
mod content;
mod lifecycle;
mod routes;
mod signing;
#[cfg(test)]
mod tests;

use axum::http::StatusCode;
use clock::Clock;
use lifecycle::Registry;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the mock behaves: credentials it accepts, how much data an export holds, how long an
/// export takes, and which faults it injects.
#[derive(Clone)]
pub struct MockConfig {
    /// The `ClientToken` accepted; any other gets 401.
    pub client_token: String,
    /// The `AccessToken` accepted; any other gets 401.
    pub access_token: String,
    /// Mixed into every generated row (and every export id, with a salt drawn when the
    /// server starts: ids differ from one server to the next, rows do not).
    pub seed: u64,
    /// Rows in each export, for entities without an entry in `rows_by_entity`.
    pub rows: u64,
    /// Rows per export for particular entity types (`OrderItem` → 1_000_000), so one large
    /// entity can be benchmarked next to small ones.
    pub rows_by_entity: HashMap<String, u64>,
    /// Files each export's rows are split across, contiguously; at least 1.
    pub files_per_export: usize,
    /// Serve each file as a gzip stream (a `.jsonl.gz`, `Content-Type: application/gzip`,
    /// no `Content-Encoding`); `SizeInBytes` is then the size of the gzip stream.
    pub gzip: bool,
    /// `getAll` calls that see a new export `Pending`.
    pub pending_polls: u32,
    /// `getAll` calls after those that see it `Processing`, before it ends.
    pub processing_polls: u32,
    /// How long a signed file URL works after the `getAll` that returned it;
    /// `Duration::ZERO` gives URLs that are already expired.
    pub url_validity: Duration,
    /// Keep each file's bytes, written once while the export is measured, in a spool file
    /// and serve downloads from it, instead of generating the file again for every
    /// download. Needs temporary disk as large as the exports' files; if the spool cannot be
    /// created the server regenerates instead. Spooling is done on Unix only.
    pub spool: bool,
    /// The directory the server makes its spool files in (files without names, which
    /// leave nothing behind); `None` is the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
    /// Faults to inject.
    pub faults: Faults,
}

/// Faults the mock injects. Every one is deterministic: counted in requests or downloads
/// since the server started, so a test can say exactly which request fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every Nth API request (`add` and `getAll` together, counting from 1) gets 429 with
    /// `Retry-After: retry_after_secs`, before anything else is checked.
    pub rate_limit_every: Option<u32>,
    /// The `Retry-After` value of injected 429s, in seconds; 0 or 1 keeps tests fast.
    pub retry_after_secs: u64,
    /// Every Nth API request gets 500 with an error body (a request that is also due a 429
    /// gets the 429).
    pub server_error_every: Option<u32>,
    /// The Nth download (counting from 1) stops halfway through with a body error, so the
    /// connection is closed before `Content-Length` bytes arrive.
    pub reset_mid_body: Option<u32>,
    /// The Nth download sends half of its bytes and then ends its body normally; the
    /// declared `Content-Length` is not reached.
    pub short_body: Option<u32>,
    /// Exports of this entity type end `Failed` instead of `Success`.
    pub fail_entity: Option<String>,
    /// The first export of this entity type ends `Failed`; later ones succeed.
    pub fail_entity_once: Option<String>,
    /// `exports/add` for this entity type answers 403, a business rule's refusal of that one
    /// request (`guidelines/responses.md`), which says nothing of the tokens.
    pub forbid_entity: Option<String>,
    /// The first export of this entity type turns `Expired` as soon as a `getAll` has listed
    /// its files once: later `getAll`s report it `Expired` and its files answer 404. Later
    /// exports of the entity behave normally.
    pub expire_entity_once: Option<String>,
    /// Every download is sent in pieces of this many bytes with this pause before each
    /// piece after the first, to exercise slow networks and read timeouts.
    pub trickle: Option<(usize, Duration)>,
    /// The first file of every export of this entity type is listed with a `SizeInBytes` one
    /// byte larger than the file served, as a storage glitch would show.
    pub wrong_size_entity: Option<String>,
}

/// The demo platform's tokens (`guidelines/environments.md`, gross pricing, "Are you ready
/// to integrate with Mews?"), so the demo can be run with the documented values.
const DEMO_CLIENT_TOKEN: &str = "E0D439EE522F44368DC78E1BFB03710C-D24FB11DBE31D4621C4817E028D9E1D";
/// See [`DEMO_CLIENT_TOKEN`].
const DEMO_ACCESS_TOKEN: &str = "C66EF7B239D24632943D115EDE9CB810-EA00F8FD8294692C940F6B5A8F9453D";

/// The API's documented lifetime of a signed file URL.
const DEFAULT_URL_VALIDITY: Duration = Duration::from_secs(10 * 60);

impl MockConfig {
    /// A small, well-behaved server for the demo: the documented demo tokens, a few thousand
    /// rows per entity in three files, one `Pending` and one `Processing` poll, no faults.
    pub fn demo() -> Self {
        MockConfig {
            client_token: DEMO_CLIENT_TOKEN.to_owned(),
            access_token: DEMO_ACCESS_TOKEN.to_owned(),
            seed: 20_240_101,
            rows: 5_000,
            rows_by_entity: HashMap::new(),
            files_per_export: 3,
            gzip: false,
            pending_polls: 1,
            processing_polls: 1,
            url_validity: DEFAULT_URL_VALIDITY,
            spool: true,
            spool_dir: None,
            faults: Faults::default(),
        }
    }

    /// Rows in an export of `entity`.
    pub fn rows_for(&self, entity: &str) -> u64 {
        self.rows_by_entity
            .get(entity)
            .copied()
            .unwrap_or(self.rows)
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig::demo()
    }
}

impl fmt::Debug for MockConfig {
    // The tokens are left out: a real token pasted into a test config must not reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConfig")
            .field("seed", &self.seed)
            .field("rows", &self.rows)
            .field("rows_by_entity", &self.rows_by_entity)
            .field("files_per_export", &self.files_per_export)
            .field("gzip", &self.gzip)
            .field("pending_polls", &self.pending_polls)
            .field("processing_polls", &self.processing_polls)
            .field("url_validity", &self.url_validity)
            .field("spool", &self.spool)
            .field("spool_dir", &self.spool_dir)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// What the server has seen and done since it started, for assertions and the soak report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockStats {
    /// `exports/add` requests received, including refused ones.
    pub add_requests: u64,
    /// `exports/getAll` requests received, including refused ones.
    pub get_all_requests: u64,
    /// File requests received, including refused ones.
    pub file_requests: u64,
    /// Exports created.
    pub exports_added: u64,
    /// File responses started (200 or 206).
    pub downloads: u64,
    /// Of those, range responses (206).
    pub range_downloads: u64,
    /// Body bytes handed to the connection by file responses.
    pub bytes_served: u64,
    /// 401 responses (wrong credentials).
    pub unauthorized: u64,
    /// 400 responses (invalid requests, export already pending).
    pub bad_requests: u64,
    /// 403 responses (bad or expired file signatures, `exports/add` refused by
    /// [`Faults::forbid_entity`]).
    pub forbidden: u64,
    /// 404 responses (unknown paths, exports or files).
    pub not_found: u64,
    /// Injected 429 responses.
    pub rate_limited: u64,
    /// Injected 500 responses.
    pub server_errors: u64,
    /// Downloads aborted mid-body by injection.
    pub resets: u64,
    /// Downloads ended short by injection.
    pub short_bodies: u64,
    /// Downloads slowed down by injection.
    pub trickled: u64,
    /// Most file bodies being sent at the same time.
    pub most_downloads_at_once: u64,
    /// Exports ended `Failed` by injection.
    pub failed_exports: u64,
    /// Exports turned `Expired` by injection.
    pub expired_exports: u64,
}

/// Live counters behind [`MockStats`], updated by handlers without a lock.
#[derive(Default)]
struct Counters {
    add_requests: AtomicU64,
    get_all_requests: AtomicU64,
    file_requests: AtomicU64,
    exports_added: AtomicU64,
    downloads: AtomicU64,
    range_downloads: AtomicU64,
    bytes_served: AtomicU64,
    unauthorized: AtomicU64,
    bad_requests: AtomicU64,
    forbidden: AtomicU64,
    not_found: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    resets: AtomicU64,
    short_bodies: AtomicU64,
    trickled: AtomicU64,
    /// File bodies being sent now, and the most at once.
    downloads_at_once: AtomicU64,
    most_downloads_at_once: AtomicU64,
    failed_exports: AtomicU64,
    expired_exports: AtomicU64,
    /// API requests (`add` + `getAll`), numbering them for the every-Nth faults.
    api_requests: AtomicU64,
    /// Request ids handed out.
    request_ids: AtomicU64,
}

/// Adds one to a counter and returns the new value.
fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

impl Counters {
    fn snapshot(&self) -> MockStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MockStats {
            add_requests: get(&self.add_requests),
            get_all_requests: get(&self.get_all_requests),
            file_requests: get(&self.file_requests),
            exports_added: get(&self.exports_added),
            downloads: get(&self.downloads),
            range_downloads: get(&self.range_downloads),
            bytes_served: get(&self.bytes_served),
            unauthorized: get(&self.unauthorized),
            bad_requests: get(&self.bad_requests),
            forbidden: get(&self.forbidden),
            not_found: get(&self.not_found),
            rate_limited: get(&self.rate_limited),
            server_errors: get(&self.server_errors),
            resets: get(&self.resets),
            short_bodies: get(&self.short_bodies),
            trickled: get(&self.trickled),
            most_downloads_at_once: get(&self.most_downloads_at_once),
            failed_exports: get(&self.failed_exports),
            expired_exports: get(&self.expired_exports),
        }
    }
}

/// One request as the server answered it, for assertions on pacing (e.g. that a client
/// waited out a `Retry-After` before asking again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// When the request arrived.
    pub at: Instant,
    /// `exports/add`, `exports/getAll` or `download`.
    pub operation: &'static str,
    /// The status answered.
    pub status: u16,
}

/// How long [`MockServer::shutdown`] waits for open downloads to end once told to stop. A
/// download whose client stopped reading cannot see the signal: its socket is full, so
/// nothing polls its body. Past this the server stops waiting for it; such a connection ends
/// at its next write, once its client reads again, or when the client goes away.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Requests kept in the request log; later ones are not recorded, so a long-running
/// `mock-server` does not grow without bound.
pub const REQUEST_LOG_CAP: usize = 100_000;

/// State shared by all handlers of one server.
struct Shared {
    config: MockConfig,
    /// `http://127.0.0.1:PORT`, the prefix of signed file URLs.
    base_url: String,
    /// The directory measuring passes create their spool files in; `None` when the server
    /// regenerates files for every download.
    spool_dir: Option<PathBuf>,
    /// Key of the URL signatures; random per server, so a URL from one run (or one test)
    /// never works on another.
    url_key: [u8; 32],
    clock: Clock,
    counters: Counters,
    /// Requests in arrival order, at most [`REQUEST_LOG_CAP`].
    request_log: Mutex<Vec<RequestRecord>>,
    /// The distinct `sig` values of the file URLs handed out, at most [`REQUEST_LOG_CAP`],
    /// so a test can search everything the client wrote for them.
    signatures: Mutex<std::collections::BTreeSet<String>>,
    /// Held only for short, synchronous updates, never across an `.await`.
    registry: Mutex<Registry>,
    /// Set when the server stops: size passes and file producers check it between writes
    /// and give up, so shutdown does not wait for gigabytes to be generated.
    stopping: Arc<AtomicBool>,
    /// Tells open download bodies to end, so graceful shutdown is not held up by a slow
    /// client.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A handler that panicked while holding the lock left a registry that is still
        // consistent (every update is a single assignment), so poisoning is ignored.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a request that arrived `at` and was answered with `status`.
    fn log_request(&self, at: Instant, operation: &'static str, status: StatusCode) {
        let mut log = self
            .request_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.len() < REQUEST_LOG_CAP {
            log.push(RequestRecord {
                at,
                operation,
                status: status.as_u16(),
            });
        }
    }

    /// Remembers a signature handed out in a file URL.
    fn record_signature(&self, sig: &str) {
        let mut signatures = self
            .signatures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if signatures.len() < REQUEST_LOG_CAP {
            signatures.insert(sig.to_owned());
        }
    }
}

/// A running mock server.
pub struct MockServer {
    shared: Arc<Shared>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MockServer {
    /// Binds `addr` (a loopback address; port 0 picks a free port) and serves until
    /// [`MockServer::shutdown`].
    ///
    /// # Errors
    /// `InvalidInput` if `addr` is not a loopback address or `files_per_export` is 0; any
    /// error from binding the socket.
    pub async fn start(config: MockConfig, addr: SocketAddr) -> std::io::Result<MockServer> {
        if !addr.ip().is_loopback() {
            return Err(invalid_input(format!(
                "the mock server binds loopback addresses only, not {addr}"
            )));
        }
        if config.files_per_export == 0 {
            return Err(invalid_input("files_per_export must be at least 1".into()));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let spool_dir = if config.spool && cfg!(unix) {
            spool_dir(config.spool_dir.as_deref())
        } else {
            None
        };
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            base_url: format!("http://{local}"),
            spool_dir,
            url_key: signing::random_key(),
            clock: Clock::default(),
            counters: Counters::default(),
            request_log: Mutex::new(Vec::new()),
            signatures: Mutex::new(std::collections::BTreeSet::new()),
            registry: Mutex::new(Registry::new({
                let key = signing::random_key();
                u64::from_le_bytes(std::array::from_fn(|i| key[i]))
            })),
            stopping: Arc::new(AtomicBool::new(false)),
            shutdown,
            config,
        });
        let app = routes::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either a shutdown request or the sender going away ends serving.
                    let _ = shutdown_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(base_url = %shared.base_url, "mock connector api listening");
        Ok(MockServer { shared, task })
    }

    /// The directory this server makes its (nameless) spool files in, if it spools.
    pub fn spool_dir(&self) -> Option<&Path> {
        self.shared.spool_dir.as_deref()
    }

    /// The platform address, `http://127.0.0.1:PORT`; the API is at
    /// `{base_url}/api/connector/v1/exports/add` and `…/getAll`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Counters of requests, responses and injected faults so far.
    pub fn stats(&self) -> MockStats {
        self.shared.counters.snapshot()
    }

    /// Every request answered so far (the first [`REQUEST_LOG_CAP`]), sorted by arrival.
    /// Requests are logged when their response starts, so one still being handled is
    /// missing.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        let mut log = self
            .shared
            .request_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        log.sort_by_key(|r| r.at);
        log
    }

    /// The `sig` query values of every signed file URL listed so far (the first
    /// [`REQUEST_LOG_CAP`] distinct ones): bearer secrets that must never reach a log, an
    /// error message or the output directory.
    pub fn issued_signatures(&self) -> Vec<String> {
        self.shared
            .signatures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The `Id` of every row in the files of export `export_id`, in file order (empty for an
    /// export that ends `Failed`); `None` for an unknown export. Regenerates every row on the
    /// calling thread, so it is meant for tests of modest size.
    pub fn expected_ids(&self, export_id: &str) -> Option<Vec<String>> {
        let content = {
            let registry = self.shared.registry();
            let record = registry.get(export_id)?;
            if record.will_fail() {
                return Some(Vec::new());
            }
            Arc::clone(&record.content)
        };
        Some(content.ids())
    }

    /// Moves the server's clock forward, for URL expiry and the "end of `UpdatedUtc` at
    /// least 5 minutes ago" rule, without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Stops accepting connections, ends open downloads and waits for the server to stop —
    /// for downloads whose client stopped reading, at most [`SHUTDOWN_GRACE`].
    pub async fn shutdown(mut self) {
        self.signal_stop();
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "mock server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "mock server task failed"),
            Err(_) => {
                tracing::debug!(
                    "mock: a download whose client stopped reading is still open; no longer waiting for it"
                );
                self.task.abort();
            }
        }
    }
}

impl MockServer {
    fn signal_stop(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.shutdown.send_replace(true);
    }
}

impl Drop for MockServer {
    // A server dropped without `shutdown` (a test that panicked, a benchmark that returned
    // early) still stops serving and generating, instead of running on in the background.
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Runs a mock server on `addr` until Ctrl-C (for `mews-etl mock-server`), calling
/// `started` with its base URL once it listens (the port the system picked, for port 0).
///
/// # Errors
/// As [`MockServer::start`], or if Ctrl-C cannot be listened for.
pub async fn serve_forever(
    config: MockConfig,
    addr: SocketAddr,
    started: impl FnOnce(&str),
) -> std::io::Result<()> {
    let server = MockServer::start(config, addr).await?;
    started(&server.base_url());
    let waited = stop_signal().await;
    server.shutdown().await;
    waited
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM (how a container or a service manager stops a
/// process): either is the ordinary end of a server.
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// The directory spool files go to: `dir`, or the system's temporary directory; `None`
/// (files regenerated for each download) if it is not a directory.
fn spool_dir(dir: Option<&Path>) -> Option<PathBuf> {
    let dir = dir.map_or_else(std::env::temp_dir, Path::to_owned);
    if dir.is_dir() {
        Some(dir)
    } else {
        tracing::warn!(dir = %dir.display(), "mock: the spool directory is not a directory; files will be regenerated for each download");
        None
    }
}

fn invalid_input(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}
