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
}

impl ExportSpec {
    /// A stable key naming the job in the state file: entity, scope and filters, so the same
    /// request in a later run finds the export made for it.
    pub fn key(&self) -> String {
        let mut key = self.schema.entity.clone();
        if let Some(scope) = &self.scope {
            if let Some(ids) = &scope.enterprise_ids {
                key.push_str(&format!(" enterprises={}", ids.join(",")));
            }
            if let Some(ids) = &scope.chain_ids {
                key.push_str(&format!(" chains={}", ids.join(",")));
            }
        }
        if let Some(f) = &self.filters {
            if let Some(u) = &f.updated_utc {
                key.push_str(&format!(" updated={}..{}", u.start_utc, u.end_utc));
            }
            if let Some(l) = &f.ledger_entry_filters {
                key.push_str(&format!(" posting={}..{}", l.posting.start, l.posting.end));
            }
        }
        key
    }
}

impl ExportSpec {
    /// The id of this spec's load in its table: derived from the spec (entity, scope,
    /// filters), not from the export, so that exporting the same window again replaces the
    /// rows the last export of it loaded instead of appending them a second time. A short
    /// hash of the key keeps distinct specs distinct after sanitising.
    pub fn load_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let key = self.key();
        let hash = Sha256::digest(key.as_bytes());
        let readable = crate::commit::sanitize_load_id(&key.replace(' ', "_"));
        let readable: String = readable.chars().take(80).collect();
        let suffix: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{readable}-{suffix}")
    }
}

/// What a run asks for, validated.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Entity types to export.
    pub entities: Vec<&'static EntitySchema>,
    /// Enterprises or chains (at most 1000 ids each).
    pub scope: Option<ExportScope>,
    /// `UpdatedUtc` range, seconds since the epoch: `[start, end)`.
    pub updated: Option<(i64, i64)>,
    /// Ledger posting dates, inclusive, as days since the epoch.
    pub posting: Option<(i64, i64)>,
    /// Write mode; default: replace for unfiltered exports, append for filtered ones.
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

/// Default ledger posting window when none is given: the 31 days up to yesterday. Ledger
/// entry exports must name one, and a month is what a daily or monthly load usually wants.
pub fn default_posting(now_secs: i64) -> (i64, i64) {
    let yesterday = now_secs.div_euclid(86_400) - 1;
    (yesterday - 30, yesterday)
}

/// Turns a request into exports: one per entity type and `UpdatedUtc` window of at most
/// 180 days. `now_secs` is the current time, for checking that windows end at least five
/// minutes in the past.
pub fn plan(request: &RunRequest, now_secs: i64) -> Result<Vec<ExportSpec>, String> {
    let windows: Vec<Option<(i64, i64)>> = match request.updated {
        None => vec![None],
        Some((start, end)) => {
            if end <= start {
                return Err("--updated-end must be after --updated-start".into());
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
                out.push(Some((s, e)));
                s = e;
            }
            out
        }
    };
    if let Some(scope) = &request.scope {
        for list in [&scope.enterprise_ids, &scope.chain_ids]
            .into_iter()
            .flatten()
        {
            if list.len() > crate::api::MAX_IDS_PER_REQUEST {
                return Err(format!(
                    "at most {} enterprise or chain ids per export",
                    crate::api::MAX_IDS_PER_REQUEST
                ));
            }
        }
    }
    let mut specs = Vec::new();
    for schema in &request.entities {
        for window in &windows {
            let updated_utc = window.map(|(s, e)| TimeInterval {
                start_utc: format_utc_seconds(s),
                end_utc: format_utc_seconds(e),
            });
            let ledger_entry_filters = (schema.entity == "LedgerEntry").then(|| {
                let (s, e) = request.posting.unwrap_or_else(|| default_posting(now_secs));
                LedgerEntryFilters {
                    posting: DateInterval {
                        start: format_date(s),
                        end: format_date(e),
                    },
                }
            });
            let filtered = updated_utc.is_some();
            let filters = (updated_utc.is_some() || ledger_entry_filters.is_some()).then_some(
                ExportFilters {
                    updated_utc,
                    ledger_entry_filters,
                },
            );
            specs.push(ExportSpec {
                schema,
                scope: request.scope.clone(),
                filters,
                mode: request.mode.unwrap_or(if filtered {
                    WriteMode::Append
                } else {
                    WriteMode::Replace
                }),
            });
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
    let results = futures::future::join_all(groups.into_iter().map(|group| {
        let ctx = ctx.clone();
        async move {
            let mut out = Vec::with_capacity(group.len());
            for spec in &group {
                out.push(job::run_job(&ctx, spec).await);
            }
            out
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(updated: Option<(i64, i64)>) -> RunRequest {
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
            "2024-12-30"
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
