//! Parsing-stage throughput: line framing plus typed decoding into Arrow record batches,
//! against `serde_json::Value` per line and `arrow_json` given the same Arrow schema, on the
//! same bytes. Inputs are generated deterministically before timing starts.
//!
//! `cargo bench --bench parse` (add `-- --quick` for a fast look).

use arrow::datatypes::SchemaRef;
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use mews_etl::decode::RecordDecoder;
use mews_etl::framing::{LineBatch, LineFramer, DEFAULT_MAX_LINE_BYTES};
use mews_etl::generate::{Generator, Variety};
use mews_etl::input::DEFAULT_BATCH_BYTES;
use mews_etl::schema::{self, EntitySchema};
use std::hint::black_box;

#[path = "shared/arrow_json_schema.rs"]
mod arrow_json_schema;
use arrow_json_schema::arrow_json_schema;

/// Input size per entity: large enough to dwarf per-batch overheads and to exceed the CPU
/// caches, small enough to generate in a second or two.
const INPUT_BYTES: u64 = 32 << 20;

fn input(schema: &EntitySchema) -> Vec<u8> {
    let mut g = Generator::new(schema, 42, Variety::Realistic);
    let mut out = Vec::with_capacity(INPUT_BYTES as usize + (1 << 20));
    let mut i = 0;
    while (out.len() as u64) < INPUT_BYTES {
        g.write_lines(i, 1000, &mut out).unwrap();
        i += 1000;
    }
    out
}

/// mews-etl: frame into batches of `DEFAULT_BATCH_BYTES`, decode each, flush a record batch per line batch
/// (as the pipeline does).
fn mews_etl_decode(schema: &EntitySchema, bytes: &[u8]) -> usize {
    let mut framer = LineFramer::new(DEFAULT_MAX_LINE_BYTES);
    let mut decoder = RecordDecoder::new(schema, "bench", "bench.jsonl");
    let mut batch = LineBatch::default();
    let mut rows = 0;
    for chunk in bytes.chunks(DEFAULT_BATCH_BYTES) {
        batch.clear();
        framer.push(chunk, &mut batch);
        decoder.decode_batch(&batch);
        rows += decoder.flush().batch.num_rows();
    }
    batch.clear();
    framer.finish(&mut batch);
    decoder.decode_batch(&batch);
    rows + decoder.flush().batch.num_rows()
}

fn serde_json_value(bytes: &[u8]) -> usize {
    let mut n = 0;
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        black_box(&v);
        n += 1;
    }
    n
}

fn arrow_json_decode(schema: &SchemaRef, bytes: &[u8]) -> usize {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(1024)
        .build_decoder()
        .unwrap();
    let mut rows = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let used = decoder.decode(rest).unwrap();
        rest = &rest[used..];
        if let Some(b) = decoder.flush().unwrap() {
            rows += b.num_rows();
        }
    }
    if let Some(b) = decoder.flush().unwrap() {
        rows += b.num_rows();
    }
    rows
}

fn bench_parse(c: &mut Criterion) {
    for entity in ["OrderItem", "Reservation"] {
        let schema = schema::find(entity).unwrap();
        let bytes = input(schema);
        let aj_schema = arrow_json_schema(schema);
        // Same rows from every contender, or the comparison means nothing.
        let rows = mews_etl_decode(schema, &bytes);
        assert_eq!(rows, arrow_json_decode(&aj_schema, &bytes));
        assert_eq!(rows, serde_json_value(&bytes));

        let mut group = c.benchmark_group(format!("parse/{entity}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.sample_size(10);
        group.bench_function(BenchmarkId::from_parameter("mews_etl"), |b| {
            b.iter(|| mews_etl_decode(schema, black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::from_parameter("arrow_json"), |b| {
            b.iter(|| arrow_json_decode(&aj_schema, black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::from_parameter("serde_json_value"), |b| {
            b.iter(|| serde_json_value(black_box(&bytes)))
        });
        group.finish();
    }
}

#[allow(missing_docs)] // the macro generates an undocumented public function
mod group {
    criterion::criterion_group!(benches, super::bench_parse);
}
criterion_main!(group::benches);
