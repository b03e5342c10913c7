//! Grouping a batch's lines by partition, as a decoder thread does before decoding: any
//! input, under any partitioning of any entity type, gives back the same lines (each still
//! pointing at its own bytes, with its own number), only perhaps in another order, and
//! never panics.
//!
//! Input: byte 0 picks the entity type (of the ten), byte 1 the partitioning (the
//! entity's own, or one of its columns with or without a time bucket), the rest is the
//! file, framed whole.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mews_etl::framing::{Line, LineBatch, LineFramer, DEFAULT_MAX_LINE_BYTES};
use mews_etl::grouping::LineGrouper;
use mews_etl::schema;

fuzz_target!(|data: &[u8]| {
    let [entity, shape, file @ ..] = data else {
        return;
    };
    let all = schema::all();
    let schema = &all[*entity as usize % all.len()];
    let spec = match shape % 5 {
        0 => schema.default_partition_spec(),
        bucket => {
            let column = &schema.properties[(*shape as usize / 5) % schema.properties.len()];
            let suffix = [":year", ":month", ":day", ""][bucket as usize - 1];
            // Columns that cannot partition (or take no bucket) are refused: nothing to do.
            match schema.parse_partition_spec(&format!("{}{suffix}", column.name)) {
                Ok(spec) => spec,
                Err(_) => return,
            }
        }
    };
    let Some(mut grouper) = LineGrouper::new(&spec) else {
        return;
    };
    let mut framer = LineFramer::new(DEFAULT_MAX_LINE_BYTES);
    let mut batch = LineBatch::default();
    framer.push(file, &mut batch);
    framer.finish(&mut batch);
    let before = batch.clone();
    grouper.group(&mut batch);
    // A second batch through the same grouper, as a decoder reuses one.
    grouper.group(&mut batch);

    assert_eq!(batch.data, before.data);
    let mut lines: Vec<Line> = batch.lines.clone();
    lines.sort_by_key(|l| l.number);
    assert_eq!(lines, before.lines, "the same lines, each once");
});
