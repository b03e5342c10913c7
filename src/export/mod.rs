//! Export lifecycle: plan the exports of a run, add them (or resume the ones a previous
//! run started), wait for them with one shared poll, and load each into its table.
//!
//! - [`plan`] turns the run's settings into [`ExportSpec`]s: one per entity type and
//!   `UpdatedUtc` window (the API allows at most 180 days per export).
//! - [`state`] remembers the export created for each spec, so a rerun after a crash
//!   resumes it instead of adding another.
//! - [`poll`] asks `exports/getAll` about every pending export in one call per round, the
//!   interval growing from a few seconds towards the documented five minutes.
//! - [`job`] drives one spec from add to commit.

pub mod job;
pub mod poll;
pub mod state;

use crate::api::{DateInterval, ExportFilters, ExportScope, LedgerEntryFilters, TimeInterval};
use crate::calendar::{format_date, format_utc_seconds};
use crate::manifest::WriteMode;
use crate::schema::EntitySchema;

/// Longest `UpdatedUtc` interval of one export (the API's limit): longer ranges become
/// consecutive exports.
pub const MAX_WINDOW_SECS: i64 = 180 * 86_400;

/// How recent the end of an `UpdatedUtc` interval may be (the API's limit).
pub const MIN_END_AGE_SECS: i64 = 5 * 60;

/// One export to run: an entity type with its scope and filters, and how its load joins
/// the table.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// The entity type.
    pub schema: &'static EntitySchema,
    /// Enterprises or chains.
    pub scope: Option<ExportScope>,
    /// Filters.
    pub filters: Option<ExportFilters>,
    /// Append (filtered, incremental) or replace (a full snapshot).
    pub mode: WriteMode,
    /// How the key names the filters: their bounds (` updated=<start>..<end>`), except a
    /// window whose end was left to its default (` updated=2024-01-01T00:00:00Z..`) and a
    /// posting month, default or given (` posting=2024-11`). A later run asking the same then finds
    /// this run's export to resume, and its load replaces this one's rows (a wider window
    /// of the same start, the same month to a later day) instead of adding them again.
    pub key_filters: String,
}

/// A window of a run's filter, in seconds (`UpdatedUtc`) or days (posting dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant or day.
    pub start: i64,
    /// End: exclusive for instants, inclusive for days.
    pub end: i64,
    /// Whether the end was left to its default (and so moves from one run to the next).
    pub open_end: bool,
}

impl Window {
    /// A window with a given end.
    pub fn new(start: i64, end: i64) -> Self {
        Window {
            start,
            end,
            open_end: false,
        }
    }
}

impl ExportSpec {
    /// A stable key naming the job in the state file: entity, scope and filters, so the same
    /// request in a later run finds the export made for it.
    pub fn key(&self) -> String {
        format!("{}{}", self.scope_key(), self.key_filters)
    }

    /// The filters as sent: ` updated=<start>..<end>`, ` posting=<start>..<end>`, or empty.
    pub fn filters_text(&self) -> String {
        filters_text(self.filters.as_ref())
    }

    /// Keys among `loaded` (jobs loaded into the table) of the same entity type and filters
    /// as this append, one of them scoped and the other not: appended beside each other, the
    /// rows of the scoped one's enterprises or chains are in the table twice.
    pub fn overlapping_scopes<'a>(&self, loaded: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        if self.mode != WriteMode::Append {
            return Vec::new();
        }
        let scoped = self.scope.is_some();
        loaded
            .filter(|key| {
                let Some(scope) = key
                    .strip_prefix(self.schema.entity.as_str())
                    .and_then(|rest| rest.strip_suffix(self.key_filters.as_str()))
                else {
                    return false;
                };
                let other_scoped =
                    scope.starts_with(" enterprises=") || scope.starts_with(" chains=");
                (scope.is_empty() || other_scoped) && other_scoped != scoped
            })
            .collect()
    }

    fn scope_key(&self) -> String {
        format!("{}{}", self.schema.entity, self.scope_text())
    }

    /// The scope as sent: ` enterprises=<ids>`, ` chains=<ids>`, or empty.
    pub fn scope_text(&self) -> String {
        let mut key = String::new();
        if let Some(scope) = &self.scope {
            if let Some(ids) = &scope.enterprise_ids {
                key.push_str(&format!(" enterprises={}", ids.join(",")));
            }
            if let Some(ids) = &scope.chain_ids {
                key.push_str(&format!(" chains={}", ids.join(",")));
            }
        }
        key
    }
}

impl ExportSpec {
    /// Whether the job `key` is one this spec's load takes the place of: the same ledger
    /// posting month and scope exported by update window, as releases before ledger entries
    /// were exported by posting month alone named them (`LedgerEntry updated=<a>..<b>
    /// posting=2024-10`). Their loads hold the month's entries again.
    pub fn replaces_key(&self, key: &str) -> bool {
        self.ledger_month().is_some_and(|month| {
            legacy_ledger_month(key) == Some(month)
                && key.starts_with(&format!("{} updated=", self.scope_key()))
        })
    }

    /// The posting month (`2024-10`) of a ledger export; `None` for other entity types.
    pub fn ledger_month(&self) -> Option<&str> {
        self.key_filters
            .strip_prefix(" posting=")
            .filter(|_| self.schema.entity == "LedgerEntry")
    }

    /// The id of this spec's load in its table: derived from the spec (entity, scope,
    /// filters), not from the export, so that exporting the same window again replaces the
    /// rows the last export of it loaded instead of appending them a second time. A short
    /// hash of the key keeps distinct specs distinct after sanitising.
    pub fn load_id(&self) -> String {
        load_id_of_key(&self.key())
    }

    /// Whether `load_id` is the load of an update window of this ledger month, unscoped, as
    /// an earlier release named it (`LedgerEntry_updated_<window>_posting_2024-10-<hash>`):
    /// found by its name when the state file no longer records its key.
    pub fn replaces_load(&self, load_id: &str) -> bool {
        let Some(month) = self.ledger_month() else {
            return false;
        };
        self.scope.is_none()
            && load_id
                .strip_prefix("LedgerEntry_updated_")
                .and_then(|rest| rest.rsplit_once('-'))
                .is_some_and(|(readable, hash)| {
                    hash.len() == 12
                        && hash.bytes().all(|b| b.is_ascii_hexdigit())
                        && readable.ends_with(&format!("_posting_{month}"))
                })
    }
}

/// The load id of the job `key` (see [`ExportSpec::load_id`]).
pub fn load_id_of_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(key.as_bytes());
    let readable = crate::commit::sanitize_load_id(&key.replace(' ', "_"));
    let readable: String = readable.chars().take(80).collect();
    let suffix: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{suffix}")
}

/// The posting month (`2024-10`) of a ledger job `key` of an update window, as releases
/// before ledger entries were exported by posting month alone named them: a run of that
/// month replaces it ([`ExportSpec::replaces_key`]).
pub fn legacy_ledger_month(key: &str) -> Option<&str> {
    let (head, month) = key.rsplit_once(" posting=")?;
    let is_month = month.len() == 7
        && month.bytes().enumerate().all(|(i, b)| match i {
            4 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    (key.starts_with("LedgerEntry") && head.contains(" updated=") && is_month).then_some(month)
}

/// What a run asks for, validated.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Entity types to export.
    pub entities: Vec<&'static EntitySchema>,
    /// Enterprises or chains (at most 1000 ids each).
    pub scope: Option<ExportScope>,
    /// `UpdatedUtc` range, seconds since the epoch: `[start, end)`.
    pub updated: Option<Window>,
    /// Ledger posting dates, inclusive, as days since the epoch; `None`: the default months
    /// ([`default_posting`]).
    pub posting: Option<Window>,
    /// Write mode; default: replace for unfiltered, unscoped exports, append for filtered
    /// or scoped ones (ledger entries, always filtered by posting date, included).
    pub mode: Option<WriteMode>,
}

/// Parses a date (`2024-01-31`, midnight UTC) or a date-time (`2024-01-31T10:00:00Z`) into
/// seconds since the epoch.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.len() == 10 {
        let days = crate::decode::parse_date_days(t)?;
        return Ok(i64::from(days) * 86_400);
    }
    crate::decode::parse_timestamp_micros(t).map(|us| us.div_euclid(1_000_000))
}

/// Parses a date (`2024-01-31`) into days since the epoch.
pub fn parse_day(text: &str) -> Result<i64, String> {
    crate::decode::parse_date_days(text.trim()).map(i64::from)
}

/// Export filters as text: ` updated=<start>..<end>`, ` posting=<start>..<end>`, or empty.
pub fn filters_text(filters: Option<&ExportFilters>) -> String {
    let mut text = String::new();
    if let Some(f) = filters {
        if let Some(u) = &f.updated_utc {
            text.push_str(&bounds("updated", &u.start_utc, Some(&u.end_utc)));
        }
        if let Some(l) = &f.ledger_entry_filters {
            text.push_str(&bounds("posting", &l.posting.start, Some(&l.posting.end)));
        }
    }
    text
}

/// ` <name>=<start>..<end>`, or ` <name>=<start>..` for an end left to its default.
fn bounds(name: &str, start: &str, end: Option<&str>) -> String {
    format!(" {name}={start}..{}", end.unwrap_or_default())
}

/// Yesterday (UTC), the last posting day a run exports by default, in days since the epoch.
pub fn yesterday(now_secs: i64) -> i64 {
    now_secs.div_euclid(86_400) - 1
}

/// Default ledger posting windows when none is given (ledger entry exports must name one):
/// the whole month before yesterday's, and yesterday's month up to yesterday, each an
/// export and a load named by its month. A daily or monthly run thus replaces the months
/// it exports and keeps the earlier ones; a month is complete once a run has seen its last
/// day, and a run missed now and then (up to a month) leaves no gap.
pub fn default_posting(now_secs: i64) -> Vec<(Window, String)> {
    let last = yesterday(now_secs);
    let (y, m, _) = crate::calendar::civil_from_days(last);
    let this_month = crate::calendar::days_from_civil(y, m, 1);
    let (py, pm, _) = crate::calendar::civil_from_days(this_month - 1);
    let previous = crate::calendar::days_from_civil(py, pm, 1);
    vec![
        (
            Window::new(previous, this_month - 1),
            format!(" posting={py:04}-{pm:02}"),
        ),
        (
            Window {
                start: this_month,
                end: last,
                open_end: true,
            },
            format!(" posting={y:04}-{m:02}"),
        ),
    ]
}

/// Most exports one run may add: a range that asks for more is far more likely a typo in a
/// date (`0024` for `2024`) than a wish, and its exports are added one entity type at a
/// time (the API allows one pending export per type).
pub const MAX_EXPORTS_PER_RUN: usize = 1000;

/// Longest wait for a given `--updated-end` to become old enough for the API (see
/// [`end_wait`]): an end up to 5 minutes ahead of the clock.
pub const MAX_END_WAIT_SECS: i64 = 2 * MIN_END_AGE_SECS + END_WAIT_MARGIN_SECS;

/// Seconds waited past the API's 5 minutes, for its clock to be a little behind ours.
pub const END_WAIT_MARGIN_SECS: i64 = 15;

/// Seconds to wait before a window that ends at `end` (seconds since the epoch) is
/// [`MIN_END_AGE_SECS`] old, which the API requires, if that is soon (at most
/// [`MAX_END_WAIT_SECS`]): a scheduler that passes the end of its interval (Airflow's
/// `data_interval_end`) starts the run right at that end, and a refusal would need a person.
/// `None`: no wait needed, or an end too far ahead to wait for.
pub fn end_wait(end: i64, now_secs: i64) -> Option<i64> {
    if end + MIN_END_AGE_SECS <= now_secs {
        return None;
    }
    let wait = end + MIN_END_AGE_SECS + END_WAIT_MARGIN_SECS - now_secs;
    (wait <= MAX_END_WAIT_SECS).then_some(wait)
}

/// Posting dates given on the command line, as the calendar months they touch: each month
/// an export and a load named by its month, like [`default_posting`]'s, so that a backfill
/// and the daily run replace each other's months instead of holding them twice. Each month
/// is exported whole (a load named by a month must hold all of it), up to its last day or
/// to the later of the range's end and `yesterday`, whichever comes first.
fn posting_months(range: Window, yesterday: i64) -> Vec<(Window, String)> {
    use crate::calendar::{civil_from_days, days_from_civil};
    let limit = range.end.max(yesterday);
    let (mut year, mut month, _) = civil_from_days(range.start);
    let mut months = Vec::new();
    loop {
        let first = days_from_civil(year, month, 1);
        if first > range.end {
            break;
        }
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let last_of_month = days_from_civil(next_year, next_month, 1) - 1;
        let last = last_of_month.min(limit);
        months.push((
            Window {
                start: first,
                end: last,
                open_end: last < last_of_month,
            },
            format!(" posting={year:04}-{month:02}"),
        ));
        (year, month) = (next_year, next_month);
    }
    let first = months.first().map_or(range.start, |(w, _)| w.start);
    let last = months.last().map_or(range.end, |(w, _)| w.end);
    if (first, last) != (range.start, range.end) {
        tracing::info!(
            "ledger entries are exported by whole months: posting dates {}..{} become {}..{}",
            format_date(range.start),
            format_date(range.end),
            format_date(first),
            format_date(last)
        );
    }
    months
}

/// Turns a request into exports: one per entity type and `UpdatedUtc` window of at most
/// 180 days. `now_secs` is the current time, for checking that windows end at least five
/// minutes in the past.
///
/// Each window's key names its bounds, except the windows of a range whose end was left to
/// its default: their keys say only where they start (see [`ExportSpec::key_filters`]). With
/// `--mode replace`, only the first export of an entity type replaces its table; the
/// others append to it, so that the table ends up holding the whole range.
pub fn plan(request: &RunRequest, now_secs: i64) -> Result<Vec<ExportSpec>, String> {
    let windows: Vec<Option<Window>> = match request.updated {
        None => vec![None],
        Some(Window {
            start,
            end,
            open_end,
        }) => {
            if end <= start && open_end {
                return Err(format!(
                    "--updated-start {} is not before the default end of the window, now minus 5 minutes ({}); give a start in the past",
                    format_utc_seconds(start),
                    format_utc_seconds(end)
                ));
            }
            if end <= start {
                return Err("--updated-end must be after --updated-start".into());
            }
            if end > now_secs {
                return Err(format!(
                    "--updated-end {} is more than 5 minutes ahead of the clock; the API takes only windows that ended 5 minutes ago (an end less than 5 minutes ago, or up to 5 minutes ahead, is waited for)",
                    format_utc_seconds(end)
                ));
            }
            if end > now_secs - MIN_END_AGE_SECS {
                return Err(format!(
                    "--updated-end {} is less than 5 minutes ago (the API requires at least 5); leave it out to use now minus 5 minutes",
                    format_utc_seconds(end)
                ));
            }
            let mut out = Vec::new();
            let mut s = start;
            while s < end {
                let e = (s + MAX_WINDOW_SECS).min(end);
                // Every window of a range whose end was left to its default is known by its
                // start alone: the first is the one a run before the range passed 180
                // days exported (and keyed by that start), so its load replaces that one's.
                out.push(Some(Window {
                    start: s,
                    end: e,
                    open_end,
                }));
                s = e;
            }
            out
        }
    };
    let postings: Vec<(Window, String)> = match request.posting {
        Some(w) if w.end < w.start => return Err("--posting-end is before --posting-start".into()),
        Some(w) => posting_months(w, yesterday(now_secs)),
        None => default_posting(now_secs),
    };
    // Sorted and without repeats, so that the key (and so the load) of a scope does not
    // depend on the order its ids were given in.
    let mut scope = request.scope.clone();
    if let Some(scope) = &mut scope {
        for (flag, list) in [
            ("--enterprise-id", &mut scope.enterprise_ids),
            ("--chain-id", &mut scope.chain_ids),
        ] {
            let Some(list) = list else { continue };
            if let Some(bad) = list.iter().find(|id| !crate::convert::is_uuid(id)) {
                return Err(format!("{flag} {bad:?} is not a GUID"));
            }
            // GUIDs are the same in either case; one spelling keeps one key.
            for id in list.iter_mut() {
                id.make_ascii_lowercase();
            }
            list.sort();
            list.dedup();
            if list.len() > crate::api::MAX_IDS_PER_REQUEST {
                return Err(format!(
                    "at most {} enterprise or chain ids per export",
                    crate::api::MAX_IDS_PER_REQUEST
                ));
            }
        }
    }
    let ledger_entities = request
        .entities
        .iter()
        .filter(|s| s.entity == "LedgerEntry")
        .count();
    let planned = windows
        .len()
        .saturating_mul(request.entities.len() - ledger_entities)
        .saturating_add(ledger_entities.saturating_mul(postings.len()));
    if planned > MAX_EXPORTS_PER_RUN {
        return Err(format!(
            "this run would add {planned} exports ({} update window(s){}), more than {MAX_EXPORTS_PER_RUN}: check the dates, or split the range over several runs",
            windows.len(),
            if ledger_entities > 0 {
                format!(" × {} posting month(s) for ledger entries", postings.len())
            } else {
                String::new()
            }
        ));
    }
    if ledger_entities > 0 && request.updated.is_some() {
        tracing::info!("ledger entries are exported by posting month alone: the update window does not apply to them");
    }
    let mut specs = Vec::new();
    for schema in &request.entities {
        let ledger = schema.entity == "LedgerEntry";
        let postings: Vec<Option<&(Window, String)>> = if ledger {
            postings.iter().map(Some).collect()
        } else {
            vec![None]
        };
        // Ledger entries never change once made (the reference calls them immutable):
        // an update window would only make each posting month's load one of many, each
        // holding the month again, where a run of the month replaces its load.
        let windows: &[Option<Window>] = if ledger { &[None] } else { &windows };
        let first = specs.len();
        for window in windows {
            for posting in &postings {
                let updated_utc = window.map(|w| TimeInterval {
                    start_utc: format_utc_seconds(w.start),
                    end_utc: format_utc_seconds(w.end),
                });
                let updated_key = window.map(|w| {
                    let end = (!w.open_end).then(|| format_utc_seconds(w.end));
                    bounds("updated", &format_utc_seconds(w.start), end.as_deref())
                });
                let ledger_entry_filters = posting.map(|(w, _)| LedgerEntryFilters {
                    posting: DateInterval {
                        start: format_date(w.start),
                        end: format_date(w.end),
                    },
                });
                let filtered = updated_utc.is_some() || ledger_entry_filters.is_some();
                let key_filters = format!(
                    "{}{}",
                    updated_key.unwrap_or_default(),
                    posting.map_or("", |(_, key)| key.as_str())
                );
                let mode = match request.mode {
                    // The first export replaces the table, the others join it.
                    Some(WriteMode::Replace) if specs.len() > first => WriteMode::Append,
                    Some(mode) => mode,
                    // A scoped export holds some enterprises' rows: its load joins the
                    // other scopes' instead of replacing them (the same scope again
                    // replaces its own load).
                    None if filtered || scope.is_some() => WriteMode::Append,
                    None => WriteMode::Replace,
                };
                specs.push(ExportSpec {
                    schema,
                    scope: scope.clone(),
                    filters: filtered.then_some(ExportFilters {
                        updated_utc,
                        ledger_entry_filters,
                    }),
                    mode,
                    key_filters,
                });
            }
        }
    }
    Ok(specs)
}

/// Runs every spec: all entity types are added and waited for at once (waiting costs
/// nothing but the shared poll); at most `ctx.load_slots` exports download and load at the
/// same time. The windows of one entity type run one after another, since they commit into
/// the same table.
pub async fn run_all(
    ctx: std::sync::Arc<job::RunContext>,
    specs: Vec<ExportSpec>,
) -> Vec<job::JobResult> {
    let mut groups: Vec<Vec<ExportSpec>> = Vec::new();
    for spec in specs {
        match groups
            .iter_mut()
            .find(|g| g[0].schema.table == spec.schema.table)
        {
            Some(g) => g.push(spec),
            None => groups.push(vec![spec]),
        }
    }
    let results = futures::future::join_all(groups.into_iter().map(|mut group| {
        let ctx = ctx.clone();
        async move {
            resumable_first(&ctx, &mut group).await;
            let mut out = Vec::with_capacity(group.len());
            // The API runs one export per entity type at a time: while one of this group's
            // is still pending (its wait timed out), the next cannot be added.
            let mut pending: Option<String> = None;
            // With `--mode replace`, the first window that commits replaces the table (in
            // whatever order the windows run); one that fails or is refused before it hands
            // that on, so the table never keeps its old rows beside the new windows.
            let replaces = group.iter().any(|s| s.mode == WriteMode::Replace);
            let mut replace_due = replaces;
            for spec in &mut group {
                if replaces {
                    spec.mode = if replace_due {
                        WriteMode::Replace
                    } else {
                        WriteMode::Append
                    };
                }
                if let Some(id) = &pending {
                    out.push(job::JobResult {
                        entity: spec.schema.entity.clone(),
                        key: spec.key(),
                        outcome: job::JobOutcome::Failed {
                            export_id: None,
                            reason: format!(
                                "not attempted: export {id} of the same entity type is still pending (the API runs one at a time); a rerun resumes it, then adds this one"
                            ),
                            kind: job::FailureKind::Remote,
                        },
                        elapsed: std::time::Duration::ZERO,
                    });
                    continue;
                }
                let result = job::run_job(&ctx, spec).await;
                replace_due &= !result.is_committed();
                // An export whose job failed on the output directory is not waited for:
                // nothing may record it, and the next windows say why they cannot start.
                if let job::JobOutcome::Failed {
                    export_id: Some(id),
                    kind: job::FailureKind::Remote,
                    ..
                } = &result.outcome
                {
                    // No status seen (the wait ended before the first poll answered) is
                    // as pending as one seen pending.
                    if ctx.poller.last_status(id).is_none_or(|s| !s.is_final()) {
                        pending = Some(id.clone());
                    }
                }
                out.push(result);
            }
            out
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}

/// Puts first the windows of one entity type whose export a previous run recorded and did
/// not commit: while such an export is pending the API refuses to add another of the entity
/// type, so the windows before it could not start.
async fn resumable_first(ctx: &job::RunContext, group: &mut [ExportSpec]) {
    let state = ctx.state.lock().await;
    // Stable: the resumable ones keep their order, and so do the others.
    group.sort_by_cached_key(|spec| state.jobs.get(&spec.key()).is_none_or(|j| j.committed));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(updated: Option<(i64, i64)>) -> RunRequest {
        let updated = updated.map(|(s, e)| Window::new(s, e));
        RunRequest {
            entities: vec![
                crate::schema::find("OrderItem").unwrap(),
                crate::schema::find("LedgerEntry").unwrap(),
            ],
            scope: None,
            updated,
            posting: None,
            mode: None,
        }
    }

    #[test]
    fn a_scoped_append_beside_an_unscoped_load_of_its_window_is_found() {
        let now = parse_instant("2024-12-31T00:00:00Z").unwrap();
        let window = Some((
            parse_instant("2024-11-01").unwrap(),
            parse_instant("2024-11-02").unwrap(),
        ));
        let unscoped = plan(&request(window), now).unwrap();
        let mut scoped_request = request(window);
        scoped_request.scope = Some(ExportScope {
            enterprise_ids: Some(vec!["3fa85f64-5717-4562-b3fc-2c963f66afa6".into()]),
            chain_ids: None,
        });
        let scoped = plan(&scoped_request, now).unwrap();
        let order = |specs: &[ExportSpec]| {
            specs
                .iter()
                .find(|s| s.schema.entity == "OrderItem")
                .unwrap()
                .clone()
        };
        let (all, some) = (order(&unscoped), order(&scoped));
        let (all_key, some_key) = (all.key(), some.key());
        assert_eq!(
            some.overlapping_scopes([all_key.as_str()].into_iter()),
            vec![all_key.as_str()]
        );
        assert_eq!(
            all.overlapping_scopes([some_key.as_str()].into_iter()),
            vec![some_key.as_str()]
        );
        // The same scope, another window, another entity type, a snapshot: no overlap.
        let other_window = plan(
            &request(Some((
                parse_instant("2024-11-02").unwrap(),
                parse_instant("2024-11-03").unwrap(),
            ))),
            now,
        )
        .unwrap();
        let other_key = order(&other_window).key();
        for key in [
            some_key.as_str(),
            other_key.as_str(),
            "OrderItemX",
            "Payment",
        ] {
            if key != some_key {
                assert!(
                    some.overlapping_scopes([key].into_iter()).is_empty(),
                    "{key}"
                );
            }
        }
        assert!(some
            .overlapping_scopes([some_key.as_str()].into_iter())
            .is_empty());
        let mut snapshot = all.clone();
        snapshot.mode = WriteMode::Replace;
        assert!(snapshot
            .overlapping_scopes([some_key.as_str()].into_iter())
            .is_empty());
    }

    #[test]
    fn long_ranges_become_consecutive_windows() {
        let now = parse_instant("2024-12-31T00:00:00Z").unwrap();
        let start = parse_instant("2024-01-01").unwrap();
        let end = parse_instant("2024-12-01").unwrap();
        let specs = plan(&request(Some((start, end))), now).unwrap();
        let order: Vec<_> = specs
            .iter()
            .filter(|s| s.schema.entity == "OrderItem")
            .collect();
        assert_eq!(order.len(), 2);
        let w0 = order[0]
            .filters
            .as_ref()
            .unwrap()
            .updated_utc
            .as_ref()
            .unwrap();
        let w1 = order[1]
            .filters
            .as_ref()
            .unwrap()
            .updated_utc
            .as_ref()
            .unwrap();
        assert_eq!(w0.start_utc, "2024-01-01T00:00:00Z");
        assert_eq!(w0.end_utc, w1.start_utc);
        assert_eq!(w1.end_utc, "2024-12-01T00:00:00Z");
        assert!(order.iter().all(|s| s.mode == WriteMode::Append));
        let ledger = specs
            .iter()
            .find(|s| s.schema.entity == "LedgerEntry")
            .unwrap();
        assert_eq!(
            ledger
                .filters
                .as_ref()
                .unwrap()
                .ledger_entry_filters
                .as_ref()
                .unwrap()
                .posting
                .end,
            "2024-11-30"
        );
    }

    fn posting(spec: &ExportSpec) -> (String, String) {
        let p = &spec
            .filters
            .as_ref()
            .unwrap()
            .ledger_entry_filters
            .as_ref()
            .unwrap()
            .posting;
        (p.start.clone(), p.end.clone())
    }

    #[test]
    fn default_ledger_months_are_loads_named_by_their_month() {
        let ledger = |now: &str| {
            let mut r = request(None);
            r.entities.retain(|e| e.entity == "LedgerEntry");
            plan(&r, parse_instant(now).unwrap()).unwrap()
        };
        // On the 1st, yesterday ends the month before: it is exported whole.
        let first = ledger("2024-12-01T06:00:00Z");
        assert_eq!(first.len(), 2);
        assert_eq!(
            posting(&first[0]),
            ("2024-10-01".into(), "2024-10-31".into())
        );
        assert_eq!(
            posting(&first[1]),
            ("2024-11-01".into(), "2024-11-30".into())
        );
        let second = ledger("2024-12-02T06:00:00Z");
        assert_eq!(
            posting(&second[0]),
            ("2024-11-01".into(), "2024-11-30".into())
        );
        assert_eq!(
            posting(&second[1]),
            ("2024-12-01".into(), "2024-12-01".into())
        );
        let later = ledger("2024-12-20T06:00:00Z");
        assert_eq!(
            posting(&later[1]),
            ("2024-12-01".into(), "2024-12-19".into())
        );
        // November is one load whichever day it was exported, December too.
        assert_eq!(first[1].load_id(), second[0].load_id());
        assert_eq!(second[1].load_id(), later[1].load_id());
        assert_ne!(second[0].load_id(), second[1].load_id());
        assert!(first.iter().all(|s| s.mode == WriteMode::Append));
        assert_eq!(first[1].key(), "LedgerEntry posting=2024-11");
        // January's previous month is last year's December.
        let january = ledger("2025-01-15T00:00:00Z");
        assert_eq!(
            posting(&january[0]),
            ("2024-12-01".into(), "2024-12-31".into())
        );
    }

    /// A daily run with an update window exports ledger entries by posting month alone, as a
    /// run without one does: each month stays one load, replaced by the next run's.
    #[test]
    fn an_update_window_does_not_apply_to_ledger_entries() {
        let now = parse_instant("2024-12-20T06:00:00Z").unwrap();
        let day = (
            parse_instant("2024-12-18").unwrap(),
            parse_instant("2024-12-19").unwrap(),
        );
        let ledger = |updated| {
            plan(&request(updated), now)
                .unwrap()
                .into_iter()
                .filter(|s| s.schema.entity == "LedgerEntry")
                .collect::<Vec<_>>()
        };
        let (windowed, plain) = (ledger(Some(day)), ledger(None));
        assert_eq!(windowed.len(), 2);
        for (w, p) in windowed.iter().zip(&plain) {
            assert_eq!(w.key(), p.key());
            assert_eq!(w.filters, p.filters);
            assert!(w.filters.as_ref().unwrap().updated_utc.is_none());
        }
        // The other entity types keep the window.
        let order = plan(&request(Some(day)), now).unwrap();
        assert!(order
            .iter()
            .filter(|s| s.schema.entity == "OrderItem")
            .all(|s| s.filters.as_ref().unwrap().updated_utc.is_some()));
    }

    /// A ledger month replaces only the same month and scope exported by update window, as
    /// earlier releases keyed it.
    #[test]
    fn a_ledger_month_replaces_the_update_windows_of_its_month_and_scope() {
        let now = parse_instant("2024-12-20T06:00:00Z").unwrap();
        let specs = plan(&request(None), now).unwrap();
        let november = specs
            .iter()
            .find(|s| s.key() == "LedgerEntry posting=2024-11")
            .unwrap();
        let window = "updated=2024-12-01T00:00:00Z..2024-12-02T00:00:00Z";
        assert!(november.replaces_key(&format!("LedgerEntry {window} posting=2024-11")));
        assert!(november.replaces_key("LedgerEntry updated=2024-12-01T00:00:00Z posting=2024-11"));
        for other in [
            format!("LedgerEntry {window} posting=2024-10"),
            format!("LedgerEntry enterprises=a {window} posting=2024-11"),
            "LedgerEntry posting=2024-11".to_owned(),
            format!("OrderItem {window}"),
        ] {
            assert!(!november.replaces_key(&other), "{other}");
        }
        let order = specs
            .iter()
            .find(|s| s.schema.entity == "OrderItem")
            .unwrap();
        assert!(!order.replaces_key(&format!("LedgerEntry {window} posting=2024-11")));
        // By name, for a load whose key the state file no longer holds: unscoped only, as a
        // scoped key's name is cut before its month.
        let old = load_id_of_key(&format!("LedgerEntry {window} posting=2024-11"));
        assert!(november.replaces_load(&old));
        assert!(!november.replaces_load(&load_id_of_key(&format!(
            "LedgerEntry {window} posting=2024-10"
        ))));
        assert!(!november.replaces_load(&november.load_id()));
        assert!(!order.replaces_load(&old));

        assert_eq!(
            legacy_ledger_month(&format!("LedgerEntry {window} posting=2024-11")),
            Some("2024-11")
        );
        assert_eq!(legacy_ledger_month("LedgerEntry posting=2024-11"), None);
        assert_eq!(
            legacy_ledger_month(&format!(
                "LedgerEntry {window} posting=2024-09-15..2024-11-03"
            )),
            None
        );
    }

    /// Posting dates given are the months they touch, each whole and named by its month:
    /// a backfill's months are the loads the daily run's months replace.
    #[test]
    fn given_posting_dates_are_whole_months_named_like_the_defaults() {
        let now = "2024-12-20T06:00:00Z";
        let ledger = |start: &str, end: Option<&str>| {
            let mut r = request(None);
            r.entities.retain(|e| e.entity == "LedgerEntry");
            let start = parse_day(start).unwrap();
            r.posting = Some(match end {
                Some(end) => Window::new(start, parse_day(end).unwrap()),
                None => Window {
                    start,
                    end: yesterday(parse_instant(now).unwrap()),
                    open_end: true,
                },
            });
            plan(&r, parse_instant(now).unwrap()).unwrap()
        };
        let backfill = ledger("2024-09-15", Some("2024-11-03"));
        let months: Vec<_> = backfill.iter().map(posting).collect();
        assert_eq!(
            months,
            [
                ("2024-09-01".into(), "2024-09-30".into()),
                ("2024-10-01".into(), "2024-10-31".into()),
                ("2024-11-01".into(), "2024-11-30".into()),
            ]
        );
        assert_eq!(backfill[1].key(), "LedgerEntry posting=2024-10");
        // The default months of the day are loads the backfill's months replace.
        let mut daily = request(None);
        daily.entities.retain(|e| e.entity == "LedgerEntry");
        let daily = plan(&daily, parse_instant(now).unwrap()).unwrap();
        assert_eq!(daily[0].load_id(), backfill[2].load_id());
        // Up to yesterday in the month not yet over, whether the end is given or not.
        let open = ledger("2024-11-01", None);
        assert_eq!(open.len(), 2);
        assert_eq!(
            posting(&open[1]),
            ("2024-12-01".into(), "2024-12-19".into())
        );
        assert_eq!(open[1].load_id(), daily[1].load_id());
        let given = ledger("2024-12-05", Some("2024-12-10"));
        assert_eq!(
            posting(&given[0]),
            ("2024-12-01".into(), "2024-12-19".into())
        );
        // An end past yesterday, asked for, is kept; a year's turn is crossed.
        let ahead = ledger("2024-12-30", Some("2025-01-02"));
        assert_eq!(
            ahead.iter().map(posting).collect::<Vec<_>>(),
            [
                ("2024-12-01".into(), "2024-12-31".into()),
                ("2025-01-01".into(), "2025-01-02".into()),
            ]
        );
        assert_eq!(ahead[1].key(), "LedgerEntry posting=2025-01");
    }

    /// A range that would add more than [`MAX_EXPORTS_PER_RUN`] exports (a year mistyped)
    /// is refused before any is planned, however the count comes about.
    #[test]
    fn a_run_of_too_many_exports_is_refused() {
        let now = parse_instant("2026-11-30T00:00:00Z").unwrap();
        let mut r = request(None);
        r.entities.retain(|e| e.entity == "LedgerEntry");
        r.posting = Some(Window::new(
            parse_day("0024-01-01").unwrap(),
            parse_day("2026-11-29").unwrap(),
        ));
        let err = plan(&r, now).unwrap_err();
        assert!(err.contains("more than 1000"), "{err}");
        r.posting = Some(Window::new(
            parse_day("0001-01-01").unwrap(),
            parse_day("9999-12-31").unwrap(),
        ));
        r.updated = Some(Window::new(
            parse_instant("0001-01-01").unwrap(),
            now - 3600,
        ));
        assert!(plan(&r, now).is_err());
        // Twenty years of months is within the bound.
        r.updated = None;
        r.posting = Some(Window::new(
            parse_day("2006-12-01").unwrap(),
            parse_day("2026-11-29").unwrap(),
        ));
        assert_eq!(plan(&r, now).unwrap().len(), 240);
    }

    #[test]
    fn an_end_less_than_five_minutes_ago_is_waited_for_if_soon() {
        let now = 1_000_000;
        let margin = END_WAIT_MARGIN_SECS;
        assert_eq!(end_wait(now - MIN_END_AGE_SECS, now), None);
        assert_eq!(end_wait(now - 3600, now), None);
        assert_eq!(
            end_wait(now - 60, now),
            Some(MIN_END_AGE_SECS - 60 + margin)
        );
        assert_eq!(end_wait(now, now), Some(MIN_END_AGE_SECS + margin));
        assert_eq!(end_wait(now + 300, now), Some(MAX_END_WAIT_SECS));
        assert_eq!(end_wait(now + 301, now), None);
    }

    #[test]
    fn a_default_end_keys_the_window_by_its_start() {
        let start = parse_instant("2024-06-01").unwrap();
        let open = |now: &str| {
            let mut r = request(None);
            r.entities.truncate(1);
            r.updated = Some(Window {
                start,
                end: parse_instant(now).unwrap() - MIN_END_AGE_SECS,
                open_end: true,
            });
            plan(&r, parse_instant(now).unwrap()).unwrap()
        };
        let a = open("2024-07-01T10:00:00Z");
        let b = open("2024-07-02T10:00:00Z");
        assert_eq!(a[0].key(), "OrderItem updated=2024-06-01T00:00:00Z..");
        assert_eq!(a[0].key(), b[0].key());
        assert_eq!(a[0].load_id(), b[0].load_id());
        assert_ne!(a[0].filters_text(), b[0].filters_text());
        assert!(a[0].filters_text().ends_with("..2024-07-01T09:55:00Z"));
        // Over 180 days, each window is known by its start: the first replaces the load of
        // the run before the range grew past 180 days, instead of repeating its rows.
        let long = open("2025-01-10T00:00:00Z");
        assert_eq!(long.len(), 2);
        assert_eq!(long[0].key(), a[0].key());
        assert!(long[0].filters_text().ends_with("..2024-11-28T00:00:00Z"));
        assert_eq!(long[1].key(), "OrderItem updated=2024-11-28T00:00:00Z..");
        assert_eq!(open("2025-01-11T00:00:00Z")[1].key(), long[1].key());
        // A start in the future is named as such, not as an end before it.
        let mut future = request(None);
        future.updated = Some(Window {
            start: parse_instant("2025-02-01").unwrap(),
            end: parse_instant("2025-01-10T00:00:00Z").unwrap() - MIN_END_AGE_SECS,
            open_end: true,
        });
        let err = plan(&future, parse_instant("2025-01-10T00:00:00Z").unwrap()).unwrap_err();
        assert!(
            err.contains("--updated-start 2025-02-01T00:00:00Z is not before the default end"),
            "{err}"
        );
    }

    #[test]
    fn a_scope_keys_its_load_whatever_the_order_of_its_ids_and_appends() {
        let now = parse_instant("2024-12-31T00:00:00Z").unwrap();
        let (a, b) = (
            "4913AA98-bb2c-4d57-a7b7-3a3326342702",
            "11111111-bb2c-4d57-a7b7-3a3326342702",
        );
        let scoped = |ids: &[&str]| {
            let mut r = request(None);
            r.entities.truncate(1);
            r.scope = Some(ExportScope {
                enterprise_ids: Some(ids.iter().map(|s| s.to_string()).collect()),
                chain_ids: None,
            });
            plan(&r, now)
        };
        let ab = scoped(&[a, b]).unwrap();
        let ba = scoped(&[b, a, &a.to_lowercase()]).unwrap();
        let lower = scoped(&[&b.to_lowercase(), &a.to_lowercase()]).unwrap();
        assert_eq!(ab[0].key(), ba[0].key());
        assert_eq!(ab[0].key(), lower[0].key());
        assert_eq!(ab[0].load_id(), ba[0].load_id());
        assert_eq!(
            ba[0]
                .scope
                .as_ref()
                .unwrap()
                .enterprise_ids
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        // Another enterprise's load is kept beside this one.
        assert_eq!(ab[0].mode, WriteMode::Append);
        let err = scoped(&[a, "not-a-guid"]).unwrap_err();
        assert!(err.contains("--enterprise-id \"not-a-guid\""), "{err}");
    }

    #[test]
    fn replace_over_several_windows_replaces_once_then_appends() {
        let now = parse_instant("2024-12-31T00:00:00Z").unwrap();
        let mut r = request(Some((
            parse_instant("2024-01-01").unwrap(),
            parse_instant("2024-12-01").unwrap(),
        )));
        r.mode = Some(WriteMode::Replace);
        let specs = plan(&r, now).unwrap();
        let modes = |entity: &str| -> Vec<WriteMode> {
            specs
                .iter()
                .filter(|s| s.schema.entity == entity)
                .map(|s| s.mode)
                .collect()
        };
        assert_eq!(modes("OrderItem"), [WriteMode::Replace, WriteMode::Append]);
        // Ledger entries: two posting months, whatever the update windows.
        assert_eq!(
            modes("LedgerEntry"),
            [WriteMode::Replace, WriteMode::Append]
        );
    }

    #[test]
    fn load_ids_follow_the_spec_not_the_export() {
        let now = parse_instant("2024-12-31T00:00:00Z").unwrap();
        let start = parse_instant("2024-01-01").unwrap();
        let end = parse_instant("2024-12-01").unwrap();
        let a = plan(&request(Some((start, end))), now).unwrap();
        let b = plan(&request(Some((start, end))), now).unwrap();
        let ids: Vec<String> = a.iter().map(ExportSpec::load_id).collect();
        assert_eq!(ids, b.iter().map(ExportSpec::load_id).collect::<Vec<_>>());
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        for id in &ids {
            assert_eq!(&crate::commit::sanitize_load_id(id), id);
        }
    }

    #[test]
    fn unfiltered_exports_replace_and_recent_ends_are_refused() {
        let now = parse_instant("2024-12-31T00:00:00Z").unwrap();
        let specs = plan(&request(None), now).unwrap();
        assert_eq!(specs[0].mode, WriteMode::Replace);
        assert!(specs[0].filters.is_none());
        let err = plan(&request(Some((now - 3600, now - 60))), now).unwrap_err();
        assert!(err.contains("5 minutes"), "{err}");
    }
}
