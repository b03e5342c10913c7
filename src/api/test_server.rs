//! A scripted HTTP/1.1 server on `127.0.0.1:0` for the client's tests: answers each request
//! with the next canned response (or a fallback once the script runs out) and records what
//! it received. Just enough HTTP for `reqwest`: one request per connection, `Content-Length`
//! bodies, `Connection: close`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response to send.
#[derive(Debug, Clone)]
pub struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Sent as one chunk of a chunked body whose end never comes: the connection closes
    /// after the last byte, as when a connection breaks just then.
    unterminated: bool,
    /// How long the server waits, once the request is read, before answering.
    delay: std::time::Duration,
}

impl Canned {
    /// A JSON response.
    pub fn json(status: u16, body: &str) -> Self {
        Canned::text(status, body).header("Content-Type", "application/json")
    }

    /// A response with any body.
    pub fn text(status: u16, body: &str) -> Self {
        Canned {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            unterminated: false,
            delay: std::time::Duration::ZERO,
        }
    }

    /// A response with a binary body.
    pub fn bytes(status: u16, body: Vec<u8>) -> Self {
        Canned {
            status,
            headers: Vec::new(),
            body,
            unterminated: false,
            delay: std::time::Duration::ZERO,
        }
    }

    /// Sends the body chunked and closes the connection without the chunked body's end.
    pub fn unterminated(mut self) -> Self {
        self.unterminated = true;
        self
    }

    /// Answers only `delay` after the request has arrived, as a slow server would.
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Default)]
struct Script {
    queue: VecDeque<Canned>,
    fallback: Option<Canned>,
    received: Vec<Recorded>,
}

/// The running server; it lives as long as the test's runtime.
pub struct TestServer {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl TestServer {
    /// Serves `responses` in order, then 500 `unscripted request`.
    pub async fn start(responses: impl IntoIterator<Item = Canned>) -> Self {
        Self::start_with_fallback(responses, None).await
    }

    /// Serves `responses` in order, then `fallback` for every further request.
    pub async fn start_with_fallback(
        responses: impl IntoIterator<Item = Canned>,
        fallback: Option<Canned>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let script = Arc::new(Mutex::new(Script {
            queue: responses.into_iter().collect(),
            fallback,
            received: Vec::new(),
        }));
        let shared = Arc::clone(&script);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        TestServer { addr, script }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().received.clone()
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let response = {
        let mut script = script.lock().unwrap();
        script.received.push(request);
        script
            .queue
            .pop_front()
            .or_else(|| script.fallback.clone())
            .unwrap_or_else(|| Canned::text(500, "unscripted request"))
    };
    tokio::time::sleep(response.delay).await;
    let mut head = if response.unterminated {
        format!(
            "HTTP/1.1 {} Canned\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
            response.status
        )
    } else {
        format!(
            "HTTP/1.1 {} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
            response.status,
            response.body.len()
        )
    };
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // The client may have given up already (timeouts); nothing to do about it here.
    let _ = stream.write_all(head.as_bytes()).await;
    if response.unterminated {
        let size = format!("{:x}\r\n", response.body.len());
        let _ = stream.write_all(size.as_bytes()).await;
        let _ = stream.write_all(&response.body).await;
        let _ = stream.write_all(b"\r\n").await;
    } else {
        let _ = stream.write_all(&response.body).await;
    }
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}
