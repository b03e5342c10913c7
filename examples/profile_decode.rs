//! Decodes a generated export in a loop, for profiling the parsing stage with `perf record`
//! or `valgrind --tool=callgrind --toggle-collect='*profile_decode::round*'` (the criterion
//! bench measures it).
//!
//! `cargo run --release --example profile_decode -- [ENTITY] [MIB] [ROUNDS] [arrow_json]`
//!
//! With `arrow_json` last, the same input is decoded by `arrow_json` with the same schema
//! instead (in `arrow_json_round`), to compare instruction counts under callgrind.

use arrow::datatypes::SchemaRef;
use mews_etl::decode::RecordDecoder;
use mews_etl::framing::{LineBatch, LineFramer, DEFAULT_MAX_LINE_BYTES};
use mews_etl::generate::{Generator, Variety};
use mews_etl::input::DEFAULT_BATCH_BYTES;
use mews_etl::schema::EntitySchema;

#[path = "../benches/shared/arrow_json_schema.rs"]
mod arrow_json_schema;
use arrow_json_schema::arrow_json_schema;

fn main() {
    let mut args = std::env::args().skip(1);
    let entity = args.next().unwrap_or_else(|| "OrderItem".into());
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let with_arrow_json = args.next().as_deref() == Some("arrow_json");
    let schema = mews_etl::schema::find(&entity).expect("known entity");
    let mut g = Generator::new(schema, 42, Variety::Realistic);
    let mut bytes = Vec::new();
    let mut i = 0;
    while bytes.len() < mib << 20 {
        g.write_lines(i, 1000, &mut bytes)
            .expect("writing to memory");
        i += 1000;
    }
    let start = std::time::Instant::now();
    let mut rows = 0;
    let aj_schema = arrow_json_schema(schema);
    for _ in 0..rounds {
        rows += if with_arrow_json {
            arrow_json_round(&aj_schema, &bytes)
        } else {
            round(schema, &bytes)
        };
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{entity}: {rows} rows, {:.0} MiB/s",
        (bytes.len() * rounds) as f64 / secs / (1 << 20) as f64
    );
}

/// One pass over the input as the pipeline runs it: frame, decode, flush per batch. Kept
/// out of line so that `callgrind --toggle-collect='*profile_decode::round*'` counts the
/// parsing stage alone, without the input generation.
#[inline(never)]
fn round(schema: &EntitySchema, bytes: &[u8]) -> usize {
    let mut rows = 0;
    let mut framer = LineFramer::new(DEFAULT_MAX_LINE_BYTES);
    let mut decoder = RecordDecoder::new(schema, "profile", "profile.jsonl");
    let mut batch = LineBatch::default();
    for chunk in bytes.chunks(DEFAULT_BATCH_BYTES) {
        batch.clear();
        framer.push(chunk, &mut batch);
        decoder.decode_batch(&batch);
        rows += decoder.flush().batch.num_rows();
    }
    rows
}

/// One pass with `arrow_json`, batches of 1024 rows as in the criterion bench.
#[inline(never)]
fn arrow_json_round(schema: &SchemaRef, bytes: &[u8]) -> usize {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(1024)
        .build_decoder()
        .expect("a valid schema");
    let mut rows = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let used = decoder.decode(rest).expect("valid input");
        rest = &rest[used..];
        if let Some(b) = decoder.flush().expect("valid input") {
            rows += b.num_rows();
        }
    }
    if let Some(b) = decoder.flush().expect("valid input") {
        rows += b.num_rows();
    }
    rows
}
