//! Writes a deterministic JSON Lines export of one entity, for end-to-end benchmarks
//! (`benches/compare.sh`): Realistic rows with seed 42, row 0 onwards, until the file holds at
//! least MIB mebibytes. The same arguments always give the same bytes.
//!
//! `cargo run --release --example generate -- ENTITY MIB OUT.jsonl`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use mews_etl::generate::{Generator, Variety};

const USAGE: &str = "usage: generate ENTITY MIB OUT.jsonl\n  \
    writes Realistic rows (seed 42) of ENTITY to OUT.jsonl until it reaches MIB mebibytes";

/// Rows per `write_lines` call: small enough that the file overshoots MIB by a few hundred KB.
const ROWS_PER_CALL: u64 = 100;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [entity, mib, out] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let Some(schema) = mews_etl::schema::find(entity) else {
        eprintln!(
            "unknown entity {entity:?}; known: {}\n{USAGE}",
            mews_etl::schema::entity_names().join(", ")
        );
        return ExitCode::from(2);
    };
    let Some(target) = mib.parse::<u64>().ok().and_then(|m| m.checked_mul(1 << 20)) else {
        eprintln!("MIB must be a whole number of mebibytes, got {mib:?}\n{USAGE}");
        return ExitCode::from(2);
    };
    match write(schema, target, out) {
        Ok((rows, bytes)) => {
            println!("{out}: {rows} rows, {bytes} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("writing {out}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(
    schema: &mews_etl::schema::EntitySchema,
    target: u64,
    out: &str,
) -> std::io::Result<(u64, u64)> {
    let mut file = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let mut g = Generator::new(schema, 42, Variety::Realistic);
    let (mut rows, mut bytes) = (0u64, 0u64);
    while bytes < target {
        bytes += g.write_lines(rows, ROWS_PER_CALL, &mut file)?;
        rows += ROWS_PER_CALL;
    }
    file.flush()?;
    Ok((rows, bytes))
}
