//! Test hook: stop the process abruptly at a named step, to prove that the next run repairs
//! whatever a crash there leaves behind.
//!
//! When the environment variable [`CRASH_AT_VAR`] (`MEWS_ETL_CRASH_AT`) names a point, the
//! process aborts (SIGABRT: no destructors, no cleanup, locks released by the kernel) the
//! first time it reaches that point. Unset, or naming another point, it costs one string
//! comparison per commit step. It exists for the crash tests in `tests/crash.rs`; it is not
//! a feature and is not part of the command-line interface.
//!
//! Points, in the order a load passes them (see [`crate::commit::CrashPoint`]):
//! `after-staging`, `mid-move`, `before-manifest`, `after-manifest`, `before-switch`,
//! `after-switch` (commit steps), then `before-state-update` and `after-state-update`
//! (`run` recording the commit in its state file).
//!
//! A second variable, [`FAIL_AT_VAR`] (`MEWS_ETL_FAIL_AT`), makes a step fail instead, as
//! if the disk had refused it, for failures no file system permission can make at the
//! right moment (the tests run as root). Its points are `version` (a commit cannot build
//! the next version, while the load's files are all still in staging) and `state-update`
//! (`run` cannot record a load it has just committed).

use std::sync::OnceLock;

/// The environment variable naming the point at which to abort.
pub const CRASH_AT_VAR: &str = "MEWS_ETL_CRASH_AT";

/// Every point the hook knows, in pipeline order.
pub const POINTS: &[&str] = &[
    "after-staging",
    "mid-move",
    "before-manifest",
    "after-manifest",
    "before-switch",
    "after-switch",
    "before-state-update",
    "after-state-update",
];

/// The environment variable naming a step that fails on purpose (see [`fails`]).
pub const FAIL_AT_VAR: &str = "MEWS_ETL_FAIL_AT";

/// Whether [`FAIL_AT_VAR`] names `name` (read once per process): the caller then fails that
/// step as if the disk had refused it.
#[doc(hidden)]
pub fn fails(name: &str) -> bool {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(FAIL_AT_VAR).ok());
    at.as_deref() == Some(name)
}

/// Aborts the process if [`CRASH_AT_VAR`] names `name` (read once per process).
#[doc(hidden)]
pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(CRASH_AT_VAR).ok());
    if at.as_deref() == Some(name) {
        // Say so first: a test tells a crash at the point from a crash elsewhere by this.
        eprintln!("{CRASH_AT_VAR}={name}: aborting on purpose (test hook)");
        std::process::abort();
    }
}
