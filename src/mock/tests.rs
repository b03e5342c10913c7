//! The mock over real sockets, with a minimal HTTP/1.1 client on a raw `TcpStream`: the
//! crate's own client is written separately, and these tests must not depend on it.

use super::{Faults, MockConfig, MockServer};
use crate::api::{AddExportResponse, ErrorBody, Export, ExportStatus, GetAllExportsResponse};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as read off the socket.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the body reached its `Content-Length`.
    complete: bool,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: {e}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn error_message(&self) -> String {
        let body: ErrorBody = self.json();
        assert!(body.request_id.is_some(), "error without RequestId");
        assert_eq!(self.header("Request-Id"), body.request_id.as_deref());
        body.message
    }
}

/// Sends one request with `Connection: close` and reads until the server closes; a reset or
/// early close shows as `complete == false`, never as an error.
async fn send(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let host = base.strip_prefix("http://").unwrap();
    let target = target.strip_prefix(base).unwrap_or(target);
    let mut stream = TcpStream::connect(host).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response without a header block");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body,
        complete: true,
    };
    assert_ne!(reply.header("Transfer-Encoding"), Some("chunked"));
    if let Some(len) = reply.header("Content-Length") {
        reply.complete = reply.body.len() as u64 == len.parse::<u64>().unwrap();
    }
    reply
}

/// The two operations, with the credentials a test chooses.
struct Api {
    base: String,
    client_token: String,
    access_token: String,
}

impl Api {
    fn of(server: &MockServer, config: &MockConfig) -> Self {
        Api {
            base: server.base_url(),
            client_token: config.client_token.clone(),
            access_token: config.access_token.clone(),
        }
    }

    async fn call(&self, operation: &str, mut body: Value) -> Reply {
        body["ClientToken"] = json!(self.client_token);
        body["AccessToken"] = json!(self.access_token);
        body["Client"] = json!("mews-etl tests 0");
        let path = format!("/api/connector/v1/exports/{operation}");
        let headers = [("Content-Type", "application/json")];
        send(
            &self.base,
            "POST",
            &path,
            &headers,
            body.to_string().as_bytes(),
        )
        .await
    }

    async fn add(&self, entity: &str) -> Reply {
        self.call("add", json!({ "EntityType": entity })).await
    }

    async fn added(&self, entity: &str) -> Export {
        let reply = self.add(entity).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json::<AddExportResponse>().export
    }

    async fn get_all(&self, ids: &[&str]) -> Reply {
        self.call("getAll", json!({ "ExportIds": ids })).await
    }

    async fn export(&self, id: &str) -> Export {
        let reply = self.get_all(&[id]).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let mut exports = reply.json::<GetAllExportsResponse>().exports;
        assert_eq!(exports.len(), 1);
        exports.remove(0)
    }

    /// Polls until the export is final (bounded: the mock's polls are counted, not timed).
    async fn finished(&self, id: &str) -> Export {
        for _ in 0..20 {
            let export = self.export(id).await;
            if export.status.is_final() {
                return export;
            }
        }
        panic!("export {id} never finished");
    }

    async fn download(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        send(&self.base, "GET", url, headers, b"").await
    }
}

fn small(rows: u64) -> MockConfig {
    MockConfig {
        rows,
        files_per_export: 3,
        ..MockConfig::demo()
    }
}

async fn start(config: &MockConfig) -> (MockServer, Api) {
    let server = MockServer::start(config.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let api = Api::of(&server, config);
    (server, api)
}

fn decompressed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Ids of JSON Lines text, checking every line is a JSON object with a string `Id`.
fn ids_of(text: &[u8]) -> Vec<String> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let row: Value = serde_json::from_slice(line).unwrap();
            row["Id"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn lifecycle(gzip: bool) {
    let config = MockConfig {
        gzip,
        ..small(1000)
    };
    let (server, api) = start(&config).await;
    let export = api.added("OrderItem").await;
    assert_eq!(export.status, ExportStatus::Pending);
    assert!(export.files.is_empty());

    let again = api.add("OrderItem").await;
    assert_eq!(again.status, 400);
    assert!(again.error_message().contains("already pending"));

    assert_eq!(api.export(&export.id).await.status, ExportStatus::Pending);
    let processing = api.export(&export.id).await;
    assert_eq!(processing.status, ExportStatus::Processing);
    assert!(processing.files.is_empty());
    let done = api.export(&export.id).await;
    assert_eq!(done.status, ExportStatus::Success);
    assert_eq!(done.files.len(), 3);
    assert!(done.expires_utc.is_some());

    let mut ids = Vec::new();
    let mut served = 0;
    for file in &done.files {
        let reply = api.download(&file.url, &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.complete);
        assert_eq!(reply.body.len() as u64, file.size_in_bytes);
        served += file.size_in_bytes;
        let text = if gzip {
            assert_eq!(reply.header("Content-Type"), Some("application/gzip"));
            assert_eq!(&reply.body[..2], &[0x1f, 0x8b]);
            decompressed(&reply.body)
        } else {
            reply.body
        };
        ids.extend(ids_of(&text));
    }
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000, "Ids repeat");
    assert_eq!(Some(ids), server.expected_ids(&export.id));

    // Once finished, the entity can be exported again.
    let second = api.added("OrderItem").await;
    assert_ne!(second.id, export.id);

    let stats = server.stats();
    assert_eq!(stats.add_requests, 3);
    assert_eq!(stats.exports_added, 2);
    assert_eq!(stats.bad_requests, 1);
    assert_eq!(stats.get_all_requests, 3);
    assert_eq!(stats.downloads, 3);
    assert_eq!(stats.bytes_served, served);
    server.shutdown().await;
}

#[tokio::test]
async fn an_export_runs_from_add_to_download() {
    lifecycle(false).await;
}

#[tokio::test]
async fn gzip_exports_serve_and_measure_the_gzip_stream() {
    lifecycle(true).await;
}

#[tokio::test]
async fn each_get_all_signs_fresh_urls_and_unknown_ids_are_omitted() {
    let config = MockConfig {
        pending_polls: 0,
        processing_polls: 0,
        ..small(10)
    };
    let (server, api) = start(&config).await;
    let export = api.added("Payment").await;
    let first = api.finished(&export.id).await;
    server.advance_clock(Duration::from_secs(5));
    let reply = api.get_all(&[&export.id, "unknown", &export.id]).await;
    let exports = reply.json::<GetAllExportsResponse>().exports;
    assert_eq!(exports.len(), 1);
    assert_ne!(exports[0].files[0].url, first.files[0].url);
    assert_eq!(
        exports[0].files[0].size_in_bytes,
        first.files[0].size_in_bytes
    );
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_get_401() {
    let config = small(10);
    let (server, mut api) = start(&config).await;
    api.access_token = "wrong".into();
    let reply = api.add("Payment").await;
    assert_eq!(reply.status, 401);
    assert!(!reply.error_message().is_empty());
    api.access_token = config.access_token.clone();
    api.client_token = "wrong".into();
    assert_eq!(api.get_all(&["x"]).await.status, 401);
    assert_eq!(server.stats().unauthorized, 2);
    assert_eq!(server.stats().exports_added, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_get_400_saying_why() {
    let config = small(10);
    let (server, api) = start(&config).await;
    let reply = api.add("LedgerEntry").await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("Posting"));
    let reply = api
        .call(
            "add",
            json!({ "EntityType": "LedgerEntry", "Filters": { "LedgerEntryFilters": {
                "Posting": { "Start": "2024-01-01", "End": "2024-01-31" } } } }),
        )
        .await;
    assert_eq!(reply.status, 200);

    let reply = api.add("Nope").await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("EntityType"));

    // The end of the interval must be 5 minutes old on the server's clock.
    let end = super::clock::format_utc(server.shared.clock.now_secs() - 60);
    let reply = api
        .call(
            "add",
            json!({ "EntityType": "Payment", "Filters": { "UpdatedUtc": {
                "StartUtc": "2024-01-01T00:00:00Z", "EndUtc": end } } }),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("5 minutes"));

    let ids: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let reply = api.get_all(&refs).await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("ExportIds"));

    let base = server.base_url();
    let path = "/api/connector/v1/exports/add";
    let reply = send(&base, "POST", path, &[], b"{\"EntityType\":").await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("Invalid JSON"));
    assert_eq!(send(&base, "GET", "/nowhere", &[], b"").await.status, 404);
    assert_eq!(server.stats().bad_requests, 5);
    server.shutdown().await;
}

/// The rows of an export, from its files (plain JSON Lines).
async fn served_rows(api: &Api, export: &Export) -> Vec<Value> {
    let mut rows = Vec::new();
    for file in &export.files {
        let reply = api.download(&file.url, &[]).await;
        assert_eq!(reply.status, 200);
        rows.extend(
            reply
                .body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice::<Value>(l).unwrap()),
        );
    }
    rows
}

#[tokio::test]
async fn filtered_exports_hold_only_rows_that_match_their_filters() {
    let config = small(200);
    let (server, api) = start(&config).await;
    let added = |body: Value| {
        let api = &api;
        async move {
            let reply = api.call("add", body).await;
            assert_eq!(
                reply.status,
                200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            let export = reply.json::<AddExportResponse>().export;
            api.finished(&export.id).await
        }
    };
    let payments = added(
        json!({ "EntityType": "Payment", "Filters": { "UpdatedUtc": {
        "StartUtc": "2024-03-01T10:00:00.5Z", "EndUtc": "2024-03-01T12:00:00Z" } } }),
    )
    .await;
    let rows = served_rows(&api, &payments).await;
    assert_eq!(rows.len(), 200);
    let micros = |row: &Value| {
        crate::decode::parse_timestamp_micros(row["UpdatedUtc"].as_str().unwrap()).unwrap()
    };
    let (start, end) = (1_709_287_200_500_000, 1_709_294_400_000_000);
    assert!(rows.iter().all(|r| (start..end).contains(&micros(r))));

    let entries = added(
        json!({ "EntityType": "LedgerEntry", "Filters": { "LedgerEntryFilters": {
        "Posting": { "Start": "2024-02-28", "End": "2024-03-01" } } } }),
    )
    .await;
    let dates: HashSet<String> = served_rows(&api, &entries)
        .await
        .iter()
        .map(|r| r["PostingDate"].as_str().unwrap().to_owned())
        .collect();
    let expected = ["2024-02-28", "2024-02-29", "2024-03-01"];
    assert_eq!(dates, expected.iter().map(|d| d.to_string()).collect());

    // Equality mode (StartUtc == EndUtc): that instant only.
    let instant = added(
        json!({ "EntityType": "Company", "Filters": { "UpdatedUtc": {
        "StartUtc": "2024-03-01T10:00:00Z", "EndUtc": "2024-03-01T10:00:00Z" } } }),
    )
    .await;
    let rows = served_rows(&api, &instant).await;
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|r| micros(r) == 1_709_287_200_000_000));

    // Less than a whole second: no generated row can match.
    let none = added(
        json!({ "EntityType": "Customer", "Filters": { "UpdatedUtc": {
        "StartUtc": "2024-03-01T10:00:00.1Z", "EndUtc": "2024-03-01T10:00:00.9Z" } } }),
    )
    .await;
    assert!(served_rows(&api, &none).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn urls_are_refused_once_expired_tampered_or_unknown() {
    let config = MockConfig {
        url_validity: Duration::from_secs(60),
        ..small(30)
    };
    let (server, api) = start(&config).await;
    let export = api.added("Customer").await;
    let done = api.finished(&export.id).await;
    let url = &done.files[0].url;
    assert_eq!(api.download(url, &[]).await.status, 200);

    let tampered = url.replace("exp=", "exp=1");
    assert_eq!(api.download(&tampered, &[]).await.status, 403);
    let other_file = url.replace("/1?", "/2?");
    assert_eq!(api.download(&other_file, &[]).await.status, 403);
    let unknown = url.replace(&export.id, "nope");
    assert_eq!(api.download(&unknown, &[]).await.status, 404);
    let beyond = url.replace("/1?", "/4?");
    assert_eq!(api.download(&beyond, &[]).await.status, 404);

    server.advance_clock(Duration::from_secs(61));
    let expired = api.download(url, &[]).await;
    assert_eq!(expired.status, 403);
    assert!(String::from_utf8_lossy(&expired.body).contains("expired"));
    let fresh = api.export(&export.id).await;
    assert_eq!(api.download(&fresh.files[0].url, &[]).await.status, 200);
    assert_eq!(server.stats().forbidden, 3);
    assert_eq!(server.stats().not_found, 2);
    server.shutdown().await;

    let config = MockConfig {
        url_validity: Duration::ZERO,
        ..small(30)
    };
    let (server, api) = start(&config).await;
    let export = api.added("Customer").await;
    let done = api.finished(&export.id).await;
    assert_eq!(api.download(&done.files[0].url, &[]).await.status, 403);
    server.shutdown().await;
}

async fn ranges(gzip: bool) {
    let config = MockConfig { gzip, ..small(300) };
    let (server, api) = start(&config).await;
    let export = api.added("Reservation").await;
    let done = api.finished(&export.id).await;
    let file = &done.files[1];
    let whole = api.download(&file.url, &[]).await.body;
    let size = file.size_in_bytes;

    let tail = api.download(&file.url, &[("Range", "bytes=100-")]).await;
    assert_eq!(tail.status, 206);
    assert!(tail.complete);
    assert_eq!(tail.body, whole[100..]);
    let expected_range = format!("bytes 100-{}/{size}", size - 1);
    assert_eq!(tail.header("Content-Range"), Some(expected_range.as_str()));

    let middle = api.download(&file.url, &[("Range", "bytes=10-19")]).await;
    assert_eq!(middle.status, 206);
    assert_eq!(middle.body, whole[10..20]);

    let beyond = format!("bytes={size}-");
    let refused = api.download(&file.url, &[("Range", beyond.as_str())]).await;
    assert_eq!(refused.status, 416);
    assert_eq!(server.stats().range_downloads, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn range_requests_return_the_tail() {
    ranges(false).await;
}

#[tokio::test]
async fn range_requests_return_the_tail_of_gzip_streams() {
    ranges(true).await;
}

#[tokio::test]
async fn api_faults_fire_on_the_configured_requests() {
    let config = MockConfig {
        pending_polls: 0,
        processing_polls: 0,
        faults: Faults {
            rate_limit_every: Some(3),
            retry_after_secs: 1,
            server_error_every: Some(4),
            ..Faults::default()
        },
        ..small(10)
    };
    let (server, api) = start(&config).await;
    let export = api.added("Bill").await; // 1
    assert_eq!(api.get_all(&[&export.id]).await.status, 200); // 2
    let limited = api.get_all(&[&export.id]).await; // 3
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("Retry-After"), Some("1"));
    assert!(!limited.error_message().is_empty());
    let failed = api.get_all(&[&export.id]).await; // 4
    assert_eq!(failed.status, 500);
    assert!(!failed.error_message().is_empty());
    assert_eq!(api.get_all(&[&export.id]).await.status, 200); // 5
    assert_eq!(api.get_all(&[&export.id]).await.status, 429); // 6
    let stats = server.stats();
    assert_eq!((stats.rate_limited, stats.server_errors), (2, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn download_faults_cut_the_configured_downloads() {
    let config = MockConfig {
        faults: Faults {
            reset_mid_body: Some(1),
            short_body: Some(2),
            ..Faults::default()
        },
        ..small(2000)
    };
    let (server, api) = start(&config).await;
    let export = api.added("OrderItem").await;
    let done = api.finished(&export.id).await;
    let file = &done.files[0];
    let reset = api.download(&file.url, &[]).await;
    assert_eq!(reset.status, 200);
    assert!(!reset.complete);
    assert!(reset.body.len() as u64 <= file.size_in_bytes / 2);
    let short = api.download(&file.url, &[]).await;
    assert!(!short.complete);
    // The server stops at half the file; how much of that reaches the client before the
    // connection is torn down depends on timing, so only the bound is certain.
    assert!(short.body.len() as u64 <= file.size_in_bytes / 2);
    let whole = api.download(&file.url, &[]).await;
    assert!(whole.complete);
    assert_eq!(whole.body[..short.body.len()], short.body);
    let stats = server.stats();
    assert_eq!(
        (stats.resets, stats.short_bodies, stats.downloads),
        (1, 1, 3)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn exports_fail_or_expire_as_configured() {
    let config = MockConfig {
        faults: Faults {
            fail_entity: Some("Company".into()),
            expire_entity_once: Some("Payment".into()),
            ..Faults::default()
        },
        ..small(50)
    };
    let (server, api) = start(&config).await;
    let company = api.added("Company").await;
    let failed = api.finished(&company.id).await;
    assert_eq!(failed.status, ExportStatus::Failed);
    assert!(failed.files.is_empty());
    assert_eq!(server.expected_ids(&company.id), Some(Vec::new()));

    let payment = api.added("Payment").await;
    let listed = api.finished(&payment.id).await;
    assert_eq!(listed.status, ExportStatus::Success);
    assert_eq!(api.download(&listed.files[0].url, &[]).await.status, 404);
    let expired = api.export(&payment.id).await;
    assert_eq!(expired.status, ExportStatus::Expired);
    assert!(expired.files.is_empty());

    let again = api.added("Payment").await;
    let done = api.finished(&again.id).await;
    assert_eq!(done.status, ExportStatus::Success);
    assert_eq!(api.download(&done.files[0].url, &[]).await.status, 200);
    assert_eq!(api.export(&again.id).await.status, ExportStatus::Success);
    let stats = server.stats();
    assert_eq!((stats.failed_exports, stats.expired_exports), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_sizes_are_announced_for_the_configured_entity() {
    let config = MockConfig {
        faults: Faults {
            wrong_size_entity: Some("Bill".into()),
            ..Faults::default()
        },
        ..small(30)
    };
    let (server, api) = start(&config).await;
    let bill = api.finished(&api.added("Bill").await.id).await;
    let first = api.download(&bill.files[0].url, &[]).await;
    assert!(first.complete);
    assert_eq!(first.body.len() as u64 + 1, bill.files[0].size_in_bytes);
    let second = api.download(&bill.files[1].url, &[]).await;
    assert_eq!(second.body.len() as u64, bill.files[1].size_in_bytes);
    let other = api.finished(&api.added("Payment").await.id).await;
    let reply = api.download(&other.files[0].url, &[]).await;
    assert_eq!(reply.body.len() as u64, other.files[0].size_in_bytes);
    server.shutdown().await;
}

#[tokio::test]
async fn the_request_log_records_operations_and_statuses() {
    let config = MockConfig {
        pending_polls: 0,
        processing_polls: 0,
        faults: Faults {
            rate_limit_every: Some(2),
            ..Faults::default()
        },
        ..small(10)
    };
    let (server, api) = start(&config).await;
    let export = api.added("Bill").await; // 1
    assert_eq!(api.get_all(&[&export.id]).await.status, 429); // 2
    let done = api.finished(&export.id).await; // 3
    assert_eq!(api.download(&done.files[0].url, &[]).await.status, 200);
    let log: Vec<_> = server
        .request_log()
        .iter()
        .map(|r| (r.operation, r.status))
        .collect();
    assert_eq!(
        log,
        [
            ("exports/add", 200),
            ("exports/getAll", 429),
            ("exports/getAll", 200),
            ("download", 200)
        ]
    );
    let times: Vec<_> = server.request_log().iter().map(|r| r.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    server.shutdown().await;
}

#[tokio::test]
async fn trickled_downloads_arrive_whole() {
    let config = MockConfig {
        faults: Faults {
            trickle: Some((4096, Duration::from_millis(1))),
            ..Faults::default()
        },
        ..small(100)
    };
    let (server, api) = start(&config).await;
    let export = api.added("ResourceBlock").await;
    let done = api.finished(&export.id).await;
    let reply = api.download(&done.files[0].url, &[]).await;
    assert!(reply.complete);
    assert_eq!(reply.body.len() as u64, done.files[0].size_in_bytes);
    assert_eq!(server.stats().trickled, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_exports_stream_in_chunks() {
    const ROWS: u64 = 200_000;
    let config = MockConfig {
        files_per_export: 2,
        ..small(ROWS)
    };
    let (server, api) = start(&config).await;
    let export = api.added("AvailabilityAdjustment").await;
    let done = api.finished(&export.id).await;
    let mut lines = 0;
    for file in &done.files {
        let reply = api.download(&file.url, &[]).await;
        assert!(reply.complete);
        assert_eq!(reply.body.len() as u64, file.size_in_bytes);
        assert!(file.size_in_bytes > 4 * super::content::CHUNK_BYTES as u64);
        lines += reply.body.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    assert_eq!(lines, ROWS);
    let ids = server.expected_ids(&export.id).unwrap();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len() as u64,
        ROWS,
        "Ids repeat"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let refused = MockServer::start(small(1), "0.0.0.0:0".parse().unwrap()).await;
    assert!(refused.is_err());
    let no_files = MockConfig {
        files_per_export: 0,
        ..small(1)
    };
    assert!(MockServer::start(no_files, "127.0.0.1:0".parse().unwrap())
        .await
        .is_err());
}

#[tokio::test]
async fn shutdown_ends_open_downloads() {
    let config = MockConfig {
        files_per_export: 1,
        ..small(100_000)
    };
    let (server, api) = start(&config).await;
    let export = api.added("AvailabilityAdjustment").await;
    let done = api.finished(&export.id).await;
    let host = api.base.strip_prefix("http://").unwrap().to_owned();
    let target = done.files[0]
        .url
        .strip_prefix(&api.base)
        .unwrap()
        .to_owned();
    // A client that asks for a large file and never reads it holds the body open.
    let mut stalled = TcpStream::connect(&host).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    stalled.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Time for the server to fill the socket's buffers, after which nothing polls the body
    // and it cannot see the stop (a shutdown that came sooner passed this test by chance,
    // and hung under load).
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown waited for a stalled download");
    // Whatever was buffered drains, then the connection ends short of the file.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    assert!((rest.len() as u64) < done.files[0].size_in_bytes);
}

/// The measured files of an export (sizes and spool handles).
fn measured(server: &MockServer, id: &str) -> Vec<super::content::MeasuredFile> {
    let registry = server.shared.registry();
    let record = registry.get(id).expect("no such export");
    let files = match &*record.sizes.borrow() {
        Some(Ok(files)) => files.to_vec(),
        _ => panic!("export {id} is not measured"),
    };
    files
}

/// File `file` (from 0) of an export, generated afresh, as a download must serve it.
fn generated(server: &MockServer, id: &str, file: usize) -> Vec<u8> {
    let content = std::sync::Arc::clone(&server.shared.registry().get(id).unwrap().content);
    let mut out = Vec::new();
    content.write_file(file, &mut out).unwrap();
    out
}

/// Downloads every file of `done` whole and by several ranges (one crossing a chunk
/// boundary) and checks each against the generated bytes.
async fn check_served_bytes(server: &MockServer, api: &Api, done: &Export) {
    let chunk = super::content::CHUNK_BYTES;
    for (i, file) in done.files.iter().enumerate() {
        let expected = generated(server, &done.id, i);
        assert_eq!(file.size_in_bytes, expected.len() as u64);
        let whole = api.download(&file.url, &[]).await;
        assert_eq!(whole.status, 200);
        assert!(whole.complete);
        assert!(
            whole.body == expected,
            "file {i} differs from the generated bytes"
        );
        let n = expected.len();
        let ranges = [
            ("bytes=0-0".to_owned(), 0..1),
            (
                format!("bytes=7-{}", (chunk + 9).min(n - 1)),
                7..(chunk + 10).min(n),
            ),
            (format!("bytes={}-", n / 2), n / 2..n),
            ("bytes=-5".to_owned(), n - 5..n),
        ];
        for (header, want) in ranges {
            let part = api.download(&file.url, &[("Range", header.as_str())]).await;
            assert_eq!(part.status, 206, "{header}");
            assert!(part.complete, "{header}");
            assert!(
                part.body == expected[want],
                "file {i}, {header}: wrong bytes"
            );
        }
    }
}

/// A spooled file is served, whole and by ranges, exactly as generated, and so is a file
/// of a server that regenerates; only the spooling server holds spool files.
async fn spooled_and_regenerated(gzip: bool) {
    let spooling = MockConfig {
        gzip,
        files_per_export: 2,
        ..small(3000)
    };
    let regenerating = MockConfig {
        spool: false,
        ..spooling.clone()
    };
    for (config, spools) in [(spooling, true), (regenerating, false)] {
        let (server, api) = start(&config).await;
        assert_eq!(server.spool_dir().is_some(), spools);
        let export = api.added("OrderItem").await;
        let done = api.finished(&export.id).await;
        assert_eq!(done.status, ExportStatus::Success);
        let files = measured(&server, &done.id);
        assert!(files.iter().all(|f| f.spool.is_some() == spools));
        if !gzip {
            let chunk = super::content::CHUNK_BYTES as u64;
            assert!(done.files.iter().all(|f| f.size_in_bytes > chunk + 10));
        }
        check_served_bytes(&server, &api, &done).await;
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_files_serve_the_generated_bytes_whole_and_by_ranges() {
    spooled_and_regenerated(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_gzip_files_serve_the_generated_bytes_whole_and_by_ranges() {
    spooled_and_regenerated(true).await;
}

/// Downloads read the spool file (a byte changed in it shows in the download), and adding
/// a newer export of the entity releases the older one's spool, whose files are then
/// regenerated with their original bytes.
#[cfg(unix)]
#[tokio::test]
async fn downloads_read_the_spool_until_a_newer_export_releases_it() {
    use std::os::unix::fs::FileExt;
    let config = small(200);
    let (server, api) = start(&config).await;
    let old = api.finished(&api.added("Payment").await.id).await;
    let expected = generated(&server, &old.id, 0);
    assert_eq!(expected[0], b'{');
    let spool = measured(&server, &old.id)[0]
        .spool
        .clone()
        .expect("not spooled");
    spool.write_all_at(b"#", 0).unwrap();
    let marked = api.download(&old.files[0].url, &[]).await;
    assert_eq!(
        marked.body[0], b'#',
        "the download did not come from the spool"
    );
    assert_eq!(marked.body[1..], expected[1..]);
    drop(spool);

    let new = api.finished(&api.added("Payment").await.id).await;
    assert!(measured(&server, &old.id).iter().all(|f| f.spool.is_none()));
    assert!(measured(&server, &new.id).iter().all(|f| f.spool.is_some()));
    let regenerated = api.download(&old.files[0].url, &[]).await;
    assert!(regenerated.complete);
    assert!(
        regenerated.body == expected,
        "the released file was not regenerated"
    );
    check_served_bytes(&server, &api, &new).await;
    server.shutdown().await;
}

/// Spool files are made in the configured directory and have no names there, so nothing
/// is left behind however the process ends (it makes no directory of its own either); a
/// spool directory that does not exist means regeneration.
#[tokio::test]
async fn spool_files_leave_no_name_behind() {
    let parent = tempfile::tempdir().unwrap();
    let config = MockConfig {
        spool_dir: Some(parent.path().to_owned()),
        ..small(300)
    };
    let (server, api) = start(&config).await;
    assert_eq!(server.spool_dir(), Some(parent.path()));
    let done = api.finished(&api.added("Customer").await.id).await;
    assert!(measured(&server, &done.id)
        .iter()
        .all(|f| f.spool.is_some()));
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    assert!(api.download(&done.files[0].url, &[]).await.complete);
    server.shutdown().await;
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);

    let impossible = MockConfig {
        spool_dir: Some(parent.path().join("missing").join("deeper")),
        ..small(300)
    };
    let (server, api) = start(&impossible).await;
    assert!(server.spool_dir().is_none());
    let done = api.finished(&api.added("Customer").await.id).await;
    assert!(measured(&server, &done.id)
        .iter()
        .all(|f| f.spool.is_none()));
    check_served_bytes(&server, &api, &done).await;
    server.shutdown().await;
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}
