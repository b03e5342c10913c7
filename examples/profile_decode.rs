//! Decodes a generated export in a loop, for profiling the parsing stage with `perf record`
//! or `valgrind --tool=callgrind --toggle-collect='*profile_decode::round*'` (the criterion
//! bench measures it).
//!
//! `cargo run --release --example profile_decode -- [ENTITY] [MIB] [ROUNDS]`

use mews_etl::decode::RecordDecoder;
use mews_etl::framing::{LineBatch, LineFramer, DEFAULT_MAX_LINE_BYTES};
use mews_etl::generate::{Generator, Variety};
use mews_etl::input::DEFAULT_BATCH_BYTES;
use mews_etl::schema::EntitySchema;

fn main() {
    let mut args = std::env::args().skip(1);
    let entity = args.next().unwrap_or_else(|| "OrderItem".into());
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
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
    for _ in 0..rounds {
        rows += round(schema, &bytes);
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
