//! Credentials never leak: the real binary runs against the embedded mock with distinctive
//! tokens, at every log level and format (and with `RUST_LOG=trace`, which lets the HTTP
//! stack's own logs through), and down every error path the mock can provoke. Afterwards
//! stdout, stderr and every byte of every file under `--out` are searched for the tokens
//! and for every URL signature the mock handed out.
//!
//! Tokens reach the binary both through `MEWS_CLIENT_TOKEN`/`MEWS_ACCESS_TOKEN` and through
//! `--client-token-file`/`--access-token-file`; the token files live outside `--out`, which
//! is why they are not searched.

use mews_etl::api::{ApiClient, ApiConfig, Secret};
use mews_etl::commit::OutputDir;
use mews_etl::mock::{Faults, MockConfig, MockServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_TOKEN: &str = "CT-SECRET-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const ACCESS_TOKEN: &str = "AT-SECRET-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// Sent instead of [`ACCESS_TOKEN`] to provoke a 401; a wrong token is still a secret.
const WRONG_ACCESS_TOKEN: &str = "AT-SECRET-WRONG-77e1d2c3b4a5968778695a4b3c2d1e0f";

/// Rows per export: enough for three files, few enough to keep each run short.
const ROWS: u64 = 120;

/// Longest wait for the mock to have served bytes before the clock is moved.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How the tokens reach the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokens {
    Env,
    Files,
}

/// The secrets of one run, each with a label for failure messages. Besides the whole value,
/// a distinctive fragment of each is searched, so a truncated or re-wrapped token is caught
/// too.
fn needles(signatures: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (label, token) in [
        ("client token", CLIENT_TOKEN),
        ("access token", ACCESS_TOKEN),
        ("wrong access token", WRONG_ACCESS_TOKEN),
    ] {
        out.push((label.to_owned(), token.to_owned()));
        // The random part alone, in case only the tail is printed.
        out.push((
            format!("{label} (tail)"),
            token[token.len() - 16..].to_owned(),
        ));
    }
    for sig in signatures {
        out.push(("URL signature".to_owned(), sig.clone()));
        out.push(("URL signature (head)".to_owned(), sig[..16].to_owned()));
    }
    out
}

/// Every occurrence of a needle in `haystack`, described with its label, `place` and the
/// text around it.
fn find_leaks(place: &str, haystack: &[u8], needles: &[(String, String)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for (label, needle) in needles {
        let needle = needle.as_bytes();
        if needle.is_empty() || haystack.len() < needle.len() {
            continue;
        }
        if let Some(at) = haystack.windows(needle.len()).position(|w| w == needle) {
            let from = at.saturating_sub(120);
            let to = (at + needle.len() + 120).min(haystack.len());
            leaks.push(format!(
                "{label} in {place} at byte {at}: …{}…",
                String::from_utf8_lossy(&haystack[from..to])
            ));
        }
    }
    leaks
}

/// Every regular file under `dir`, symlinks not followed (the table links point into
/// `.mews-etl/`, which is walked anyway).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Searches a run's stdout, stderr and every file under `out`; returns the leaks and the
/// number of files searched.
fn search_run(
    name: &str,
    o: &Output,
    out: &Path,
    needles: &[(String, String)],
) -> (Vec<String>, usize) {
    let mut leaks = find_leaks(&format!("{name}: stdout"), &o.stdout, needles);
    leaks.extend(find_leaks(&format!("{name}: stderr"), &o.stderr, needles));
    let files = files_under(out);
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        leaks.extend(find_leaks(
            &format!("{name}: {}", f.display()),
            &bytes,
            needles,
        ));
    }
    (leaks, files.len())
}

/// One scenario: a mock configuration, extra flags and environment, the exit status it
/// must end with, and whether it must get as far as receiving signed URLs.
#[derive(Clone)]
struct Case {
    name: &'static str,
    config: MockConfig,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
    /// The access token sent (the mock accepts [`ACCESS_TOKEN`] only).
    access_token: &'static str,
    /// Point the binary at a port nobody listens on instead of the mock.
    refused: bool,
    /// Move the mock's clock past the URLs' lifetime once bytes flow, so downloads are
    /// refused (403) and the URLs refreshed.
    expire_urls_midway: bool,
    status: i32,
    /// The run must have been handed signed URLs (so there was something to leak).
    gets_urls: bool,
    /// Before the run, add an export of this entity type with the same tokens, so the run
    /// finds one it did not start (a conflict).
    foreign_export: Option<&'static str>,
    /// A platform address to pass instead of the mock's (one with credentials in it).
    platform: Option<&'static str>,
    /// Secrets of this case besides the tokens and signatures.
    extra_secrets: &'static [&'static str],
    /// Hold the output directory's lock while the binary runs.
    locked: bool,
    /// How tokens are passed: both ways, except for the slow cases (retries running out),
    /// whose path does not depend on where the tokens came from.
    modes: &'static [Tokens],
}

fn mock_config(faults: Faults) -> MockConfig {
    MockConfig {
        client_token: CLIENT_TOKEN.to_owned(),
        access_token: ACCESS_TOKEN.to_owned(),
        rows: ROWS,
        files_per_export: 3,
        faults,
        ..MockConfig::demo()
    }
}

fn case(name: &'static str, faults: Faults, args: &[&'static str], status: i32) -> Case {
    Case {
        name,
        config: mock_config(faults),
        args: args.to_vec(),
        env: Vec::new(),
        access_token: ACCESS_TOKEN,
        refused: false,
        expire_urls_midway: false,
        status,
        gets_urls: status == 0,
        foreign_export: None,
        platform: None,
        extra_secrets: &[],
        locked: false,
        modes: &[Tokens::Env, Tokens::Files],
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Success at every log level and format, two entity types (one gzip-served below).
    for (name, flags) in [
        ("default level", &[][..]),
        ("-v", &["-v"][..]),
        ("-vv", &["-vv"][..]),
        ("-vvv", &["-vvv"][..]),
        ("-vvv json", &["-vvv", "--log-format", "json"][..]),
        ("-q", &["-q"][..]),
    ] {
        let mut args = flags.to_vec();
        args.extend(["--entity", "OrderItem", "--entity", "Payment"]);
        if name != "default level" {
            // One partition per table: fewer files to write and sync, same log lines.
            args.extend(["--partition-by", "none"]);
        }
        cases.push(case(name, Faults::default(), &args, 0));
    }
    for (name, flags) in [
        ("RUST_LOG=trace", &[][..]),
        ("RUST_LOG=trace json", &["--log-format", "json"][..]),
    ] {
        let mut args = flags.to_vec();
        args.extend(["--entity", "OrderItem", "--partition-by", "none"]);
        let mut c = case(name, Faults::default(), &args, 0);
        c.env.push(("RUST_LOG", "trace"));
        cases.push(c);
    }
    let mut gz = case(
        "gzip files -vvv",
        Faults::default(),
        &["-vvv", "--entity", "Bill"],
        0,
    );
    gz.config.gzip = true;
    gz.env.push(("RUST_LOG", "trace"));
    cases.push(gz);

    // Retried faults that end well: 429, 5xx, a reset and a short body, an Expired export,
    // URLs expiring mid-download.
    cases.push(case(
        "retried faults",
        Faults {
            rate_limit_every: Some(4),
            retry_after_secs: 0,
            server_error_every: Some(5),
            reset_mid_body: Some(1),
            short_body: Some(2),
            expire_entity_once: Some("OrderItem".into()),
            ..Faults::default()
        },
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        0,
    ));
    let mut refresh = case(
        "URL refresh after 403",
        Faults {
            trickle: Some((4096, Duration::from_millis(20))),
            ..Faults::default()
        },
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        0,
    );
    refresh.expire_urls_midway = true;
    refresh.env.push(("RUST_LOG", "trace"));
    cases.push(refresh);

    // Error paths.
    let mut unauthorized = case(
        "401 wrong access token",
        Faults::default(),
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        2,
    );
    unauthorized.access_token = WRONG_ACCESS_TOKEN;
    unauthorized.env.push(("RUST_LOG", "trace"));
    cases.push(unauthorized);
    cases.push(case(
        "429 until retries run out",
        Faults {
            rate_limit_every: Some(1),
            retry_after_secs: 0,
            ..Faults::default()
        },
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        7,
    ));
    let mut server_errors = case(
        "5xx until retries run out",
        Faults {
            server_error_every: Some(1),
            ..Faults::default()
        },
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        7,
    );
    server_errors.modes = &[Tokens::Files];
    cases.push(server_errors);
    cases.push(case(
        "Failed export",
        Faults {
            fail_entity: Some("OrderItem".into()),
            ..Faults::default()
        },
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        7,
    ));
    let mut size = case(
        "SizeInBytes mismatch",
        Faults {
            wrong_size_entity: Some("OrderItem".into()),
            ..Faults::default()
        },
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        7,
    );
    size.gets_urls = true;
    cases.push(size);
    let mut refused = case(
        "connection refused",
        Faults::default(),
        &["-vvv", "--entity", "OrderItem", "--partition-by", "none"],
        7,
    );
    refused.refused = true;
    refused.modes = &[Tokens::Env];
    cases.push(refused);
    let mut userinfo = case(
        "credentials in the platform URL",
        Faults::default(),
        &["-vvv", "--entity", "OrderItem"],
        2,
    );
    userinfo.platform = Some("http://user:PU-SECRET-5e6f7a8b9c0d1e2f@127.0.0.1:1/");
    userinfo.extra_secrets = &["PU-SECRET-5e6f7a8b9c0d1e2f"];
    userinfo.env.push(("RUST_LOG", "trace"));
    cases.push(userinfo);
    let mut query = case(
        "a query in the platform URL",
        Faults::default(),
        &["-vvv", "--entity", "OrderItem"],
        2,
    );
    query.platform = Some("http://127.0.0.1:1/?sig=PQ-SECRET-a1b2c3d4e5f6a7b8");
    query.extra_secrets = &["PQ-SECRET-a1b2c3d4e5f6a7b8"];
    cases.push(query);
    let mut locked = case(
        "output directory locked",
        Faults::default(),
        &["-vvv", "--entity", "OrderItem"],
        6,
    );
    locked.locked = true;
    cases.push(locked);
    let mut conflict = case(
        "export not ours pending",
        Faults::default(),
        &["-vvv", "--entity", "Payment"],
        8,
    );
    conflict.config.pending_polls = 1000;
    conflict.foreign_export = Some("Payment");
    cases.push(conflict);
    let mut dry = case("--dry-run", Faults::default(), &["-vvv", "--dry-run"], 0);
    dry.gets_urls = false;
    cases.push(dry);
    cases.push(case(
        "bad flag",
        Faults::default(),
        &["-vvv", "--poll-interval", "soon"],
        2,
    ));
    cases
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs one case with tokens passed as `tokens`; returns its name, the leaks found (and any
/// way the run missed the path it was meant to take) and the files searched.
async fn run_case(c: Case, tokens: Tokens) -> (String, Vec<String>, usize) {
    let name = format!("{} ({tokens:?})", c.name);
    let started = Instant::now();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mock = MockServer::start(c.config.clone(), addr).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    if let Some(entity) = c.foreign_export {
        let client = ApiClient::new(ApiConfig::new(
            mock.base_url(),
            Secret::new(CLIENT_TOKEN),
            Secret::new(ACCESS_TOKEN),
        ))
        .unwrap();
        client.add_export(entity, None, None).await.unwrap();
    }
    let platform = if let Some(p) = c.platform {
        p.to_owned()
    } else if c.refused {
        format!("http://127.0.0.1:{}", closed_port())
    } else {
        mock.base_url()
    };
    let _lock = c.locked.then(|| OutputDir::open(&out).unwrap());

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mews-etl"));
    for var in [
        "MEWS_CLIENT_TOKEN",
        "MEWS_ACCESS_TOKEN",
        "MEWS_PLATFORM_URL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("run")
        .arg("--out")
        .arg(&out)
        .arg("--platform-url")
        .arg(&platform)
        .arg("--poll-interval")
        .arg("50ms")
        // Uncompressed Parquet, so a secret in a column or in metadata would be visible to
        // a byte search.
        .args(["--compression", "none"])
        .args(&c.args)
        .envs(c.env.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match tokens {
        Tokens::Env => {
            cmd.env("MEWS_CLIENT_TOKEN", CLIENT_TOKEN)
                .env("MEWS_ACCESS_TOKEN", c.access_token);
        }
        Tokens::Files => {
            let client = dir.path().join("client-token");
            let access = dir.path().join("access-token");
            // A trailing newline, as an editor or `echo` leaves it.
            std::fs::write(&client, format!("{CLIENT_TOKEN}\n")).unwrap();
            std::fs::write(&access, format!("{}\n", c.access_token)).unwrap();
            cmd.arg("--client-token-file")
                .arg(&client)
                .arg("--access-token-file")
                .arg(&access);
        }
    }

    let child = cmd.spawn().unwrap();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    if c.expire_urls_midway {
        let deadline = Instant::now() + WAIT_LIMIT;
        while mock.stats().bytes_served == 0 {
            assert!(Instant::now() < deadline, "{name}: no bytes served");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        mock.advance_clock(Duration::from_secs(11 * 60));
    }
    let o = waiting.await.unwrap();
    let stats = mock.stats();
    let signatures = mock.issued_signatures();
    mock.shutdown().await;

    let described = format!(
        "{name}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Whether the run went down the path the case is about; a run that ended elsewhere
    // proves nothing about that path.
    let mut problems = Vec::new();
    if o.status.code() != Some(c.status) {
        problems.push(format!("expected exit {}: {described}", c.status));
    }
    if String::from_utf8_lossy(&o.stderr).contains("panicked") {
        problems.push(format!("panicked: {described}"));
    }
    if c.gets_urls && signatures.is_empty() {
        problems.push(format!("{name}: no URLs handed out: {stats:?}"));
    }
    if c.expire_urls_midway && stats.forbidden == 0 {
        problems.push(format!("{name}: no download was refused: {stats:?}"));
    }
    let mut secrets = needles(&signatures);
    secrets.extend(
        c.extra_secrets
            .iter()
            .map(|&x| ("secret of the case".to_owned(), x.to_owned())),
    );
    let (mut leaks, searched) = search_run(&name, &o, &out, &secrets);
    if c.status == 0 && !c.args.contains(&"--dry-run") && searched < 3 {
        // state.json, manifests and Parquet files at least: the search saw the output.
        problems.push(format!(
            "{name}: only {searched} files under {}",
            out.display()
        ));
    }
    leaks.extend(problems);
    eprintln!(
        "{name}: exit {:?}, {} signature(s), {searched} file(s) searched, {:.1} s",
        o.status.code(),
        signatures.len(),
        started.elapsed().as_secs_f64()
    );
    (name, leaks, searched)
}

/// The search itself finds what it looks for: planted in output text, in a file deep in
/// the output directory, in the middle of binary bytes.
#[test]
fn the_search_finds_planted_secrets() {
    let sig = "0123456789abcdef".repeat(4);
    let needles = needles(std::slice::from_ref(&sig));
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join(".mews-etl/tables/t/v0000000001/loads");
    std::fs::create_dir_all(&deep).unwrap();
    let mut bytes = vec![0u8, 159, 146, 150];
    bytes.extend_from_slice(&ACCESS_TOKEN.as_bytes()[4..]);
    bytes.extend_from_slice(&[0xff, 0]);
    std::fs::write(deep.join("x.parquet"), &bytes).unwrap();
    let o = Output {
        status: Command::new("true").status().unwrap(),
        stdout: format!("url=http://h/f?sig={}", &sig[..20]).into_bytes(),
        stderr: format!("token {CLIENT_TOKEN}").into_bytes(),
    };
    let (leaks, searched) = search_run("planted", &o, dir.path(), &needles);
    assert_eq!(searched, 1);
    let joined = leaks.join("\n");
    assert!(
        joined.contains("client token in planted: stderr"),
        "{joined}"
    );
    assert!(
        joined.contains("URL signature (head) in planted: stdout"),
        "{joined}"
    );
    assert!(
        joined.contains("access token (tail) in planted: ") && joined.contains("x.parquet"),
        "{joined}"
    );
    let (clean, _) = search_run(
        "clean",
        &Output {
            stdout: b"nothing here".to_vec(),
            stderr: Vec::new(),
            ..o
        },
        &dir.path().join("missing"),
        &needles,
    );
    assert!(clean.is_empty(), "{clean:?}");
}

/// Every case, with tokens from the environment and from files, leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_url_signature_appears_anywhere() {
    let started = Instant::now();
    // Several runs at once: most of their time is spent waiting (polls, backoff).
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    let mut runs = Vec::new();
    for c in cases() {
        for &tokens in c.modes {
            let slots = Arc::clone(&slots);
            let c = c.clone();
            runs.push(tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                run_case(c, tokens).await
            }));
        }
    }
    let mut leaks = Vec::new();
    let mut files = 0;
    let count = runs.len();
    for r in runs {
        let (_, l, searched) = r.await.unwrap();
        leaks.extend(l);
        files += searched;
    }
    eprintln!(
        "{count} runs, {files} output files searched, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        leaks.is_empty(),
        "secrets leaked or cases went wrong:\n{}",
        leaks.join("\n")
    );
}
