//! Lines for the terminal that never panic: `println!` and `eprintln!` panic when the other
//! end of a pipe has gone (`mews-etl schema | head -1`), which would turn a finished load
//! into exit status 101.

use std::io::{self, Write};

/// Writes one line to standard output. A reader that has gone away is not an error of
/// ours (the output was only for it); any other failure is logged, since the summary is
/// also in the load's manifest.
pub fn out(args: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() != io::ErrorKind::BrokenPipe {
            tracing::warn!(error = %e, "cannot write to standard output");
        }
    }
}

/// Writes one line to standard error, ignoring failure: there is nowhere left to report it.
pub fn err(args: std::fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` that does not panic (see [`out`]).
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::out(format_args!($($arg)*)) };
}

/// `eprintln!` that does not panic (see [`err`]).
macro_rules! shout {
    ($($arg:tt)*) => { $crate::console::err(format_args!($($arg)*)) };
}

pub(crate) use {say, shout};
