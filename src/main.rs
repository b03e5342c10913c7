//! The `mews-etl` command: a thin shell over the library.

fn main() {}
