//! # mews-etl
//!
//! Loads Mews Connector API bulk exports (JSON Lines) into partitioned Parquet, exactly:
//! every exported row arrives once, with money as exact decimals and instants as UTC
//! timestamps, or the load does not commit and the table keeps its previous contents.
//!
//! ```text
//!  api: exports/add → exports/getAll (one shared poll) → Success with signed file URLs
//!        │  download: stream each file; resume with Range; refresh expired URLs
//!        ▼
//!  source file / HTTP body
//!        │  input: open, sniff gzip/zstd from magic bytes, decompress (async)
//!        ▼
//!  framing: bytes → numbered lines, BOM/CRLF/blank lines, length limit (no I/O)
//!        │  bounded channel of LineBatch
//!        ▼
//!  grouping: a partitioned table's lines ordered by partition, from their raw bytes
//!  decode: lines → typed Arrow columns per schemas/, rejects, drift counts (blocking thread)
//!        │  bounded channel of RecordBatch
//!        ▼
//!  sink: partition by key → Parquet files in a staging area (blocking thread)
//!        │
//!        ▼
//!  commit: manifest + atomic swap of the table's visible version
//! ```
//!
//! Modules, in the order data flows:
//! - [`schema`] — `schemas/*.json`, the single source of truth for columns and types.
//! - [`config`] — validated settings with named defaults; no I/O.
//! - [`calendar`] — date arithmetic shared by decoders, partitioning and the mock.
//! - [`api`] — Connector API client: wire types, requests, retries, rate limit.
//! - [`export`] — export lifecycle: plan, add or resume, shared poll, one job per export.
//! - [`download`] — streaming download of an export's files, resumed across failures.
//! - [`input`] — opens a file or stdin, detects compression from content, decompresses.
//! - [`framing`] — splits bytes into numbered lines with a length limit; no I/O.
//! - [`grouping`] — orders a batch's lines by the partition their raw bytes name, so that a
//!   partition's rows are decoded in runs; no I/O.
//! - [`decode`] — typed decoders: one line → one row of Arrow columns; no I/O.
//! - [`quarantine`] — rejected lines with file, line and reason.
//! - [`sink`] — partitioning and Parquet writing into a staging area.
//! - [`manifest`] — what one load wrote and counted.
//! - [`memory`] — hands the allocator's free pages back to the system when decoding ends.
//! - [`commit`] — table versions, the atomic commit point, the output-directory lock.
//! - `crash` — a test hook that aborts the process at a named commit step.
//! - [`convert`] — one load end to end: the pipeline wired with bounded channels.
//! - [`progress`] — live counters and job states for progress display.
//! - [`mock`] — the embedded Connector API (demo, tests, benches).
//! - [`generate`] — deterministic synthetic rows for every entity (mock, tests, benches).

pub mod api;
pub mod calendar;
pub mod commit;
pub mod config;
pub mod convert;
#[doc(hidden)]
pub mod crash;
pub mod decode;
pub mod download;
pub mod export;
pub mod framing;
pub mod generate;
pub mod grouping;
pub mod input;
pub mod manifest;
pub mod memory;
pub mod mock;
pub mod progress;
pub mod quarantine;
pub mod schema;
pub mod sink;

/// An error's text followed by its causes' (`error sending request: client error
/// (Connect): dns error: …`), each cause only if the text so far does not already hold
/// it: many messages carry their cause (as `{source}`), and a chain printed whole would
/// repeat it.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}
