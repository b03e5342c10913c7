//! Exports and their lifecycle, without I/O: request validation as `operations/exports.md`
//! states it, the one-running-export-per-entity rule, and the status each `getAll` call
//! reports.

use super::content::{ExportContent, MeasuredFile};
use crate::api::{
    AddExportRequest, Export, ExportFilters, ExportScope, ExportStatus, GetAllExportsRequest,
    MAX_IDS_PER_REQUEST,
};
use crate::decode::{parse_date_days, parse_timestamp_micros};
use crate::schema::{self, EntitySchema};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// How long after `Success` an export's files stay available (`use-cases/data-export.md`:
/// "typically 1 week").
const EXPORT_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// The end of an `UpdatedUtc` filter must be at least this far in the past.
const MIN_END_AGE_MICROS: i64 = 5 * 60 * 1_000_000;

/// The longest `UpdatedUtc` interval.
const MAX_INTERVAL_MICROS: i64 = 180 * 24 * 3600 * 1_000_000;

/// Exact sizes (and spool files) of an export's files, once the measuring pass is done; an
/// error text if it failed (only when the server is stopping).
pub(super) type Sizes = Option<Result<Arc<[MeasuredFile]>, String>>;

/// All exports of one server.
pub(super) struct Registry {
    exports: HashMap<String, ExportRecord>,
    /// Exports created so far; numbers the derived export ids.
    added: u64,
    /// Exports created so far of each entity type; numbers their row seeds.
    added_by_entity: HashMap<&'static str, u64>,
    /// Drawn when the server starts and mixed into export ids: two servers never hand out
    /// the same id, so a run into an output directory that a previous server's export was
    /// loaded into is not taken for that load (its rows do not depend on the id).
    id_salt: u64,
}

/// One export and where it is in its lifecycle.
pub(super) struct ExportRecord {
    id: String,
    entity: &'static EntitySchema,
    scope: ExportScope,
    filters: Option<ExportFilters>,
    /// What its files hold.
    pub(super) content: Arc<ExportContent>,
    /// Exact file sizes and spool files, filled in by a background pass started when the
    /// export is added.
    pub(super) sizes: watch::Receiver<Sizes>,
    /// `getAll` calls that have included this export.
    polls: u32,
    status: ExportStatus,
    expires_utc: Option<i64>,
    /// Injected: ends `Failed`.
    will_fail: bool,
    /// Injected: turns `Expired` once its files have been listed.
    expires_when_listed: bool,
    /// Whether a `getAll` has returned its files.
    listed: bool,
}

/// What the registry needs from the configuration to create an export.
pub(super) struct NewExport<'a> {
    /// Server seed.
    pub(super) seed: u64,
    /// Rows in the export.
    pub(super) rows: u64,
    /// Files to split them across.
    pub(super) files: usize,
    /// Whether files are gzip streams.
    pub(super) gzip: bool,
    /// Entity type whose exports end `Failed`.
    pub(super) fail_entity: Option<&'a str>,
    /// Entity type whose first export ends `Failed`.
    pub(super) fail_entity_once: Option<&'a str>,
    /// Entity type whose first export expires after one listing.
    pub(super) expire_entity_once: Option<&'a str>,
}

/// What one `getAll` poll did to an export, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    /// Nothing worth counting.
    None,
    /// Ended `Failed` by injection.
    Failed,
    /// Turned `Expired` by injection.
    Expired,
}

impl Registry {
    /// Whether the next export of `entity` is to end `Failed` (the `fail_entity` and
    /// `fail_entity_once` faults).
    pub(super) fn will_fail(&self, new: &NewExport<'_>, entity: &str) -> bool {
        new.fail_entity == Some(entity) || self.first_of(new.fail_entity_once, entity)
    }

    /// Whether the next export of `entity` is the first of the entity type `fault` names.
    fn first_of(&self, fault: Option<&str>, entity: &str) -> bool {
        fault == Some(entity) && !self.added_by_entity.contains_key(entity)
    }

    /// An empty registry whose export ids are salted with `id_salt`.
    pub(super) fn new(id_salt: u64) -> Self {
        Registry {
            exports: HashMap::new(),
            added: 0,
            added_by_entity: HashMap::new(),
            id_salt,
        }
    }

    /// The export with this id.
    pub(super) fn get(&self, id: &str) -> Option<&ExportRecord> {
        self.exports.get(id)
    }

    /// The export with this id, to poll it.
    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut ExportRecord> {
        self.exports.get_mut(id)
    }

    /// Refuses an export of an entity type that already has one `Pending` or `Processing`,
    /// as the API does.
    pub(super) fn check_none_running(&self, entity: &str) -> Result<(), String> {
        match self
            .exports
            .values()
            .find(|e| e.entity.entity == entity && !e.status.is_final())
        {
            Some(running) => Err(format!(
                "An export of the entity type {entity} is already {} (export {}).",
                running.status.to_string().to_lowercase(),
                running.id
            )),
            None => Ok(()),
        }
    }

    /// The id the next export will get.
    pub(super) fn next_id(&self, seed: u64) -> String {
        super::signing::derived_uuid("mews-etl mock export", seed ^ self.id_salt, self.added + 1)
    }

    /// Row seed of the next export of `entity`: the server seed mixed with the entity type
    /// and how many of its exports came before, so the n-th export of an entity type holds
    /// the same rows on every server with that seed, whatever the order of the others.
    pub(super) fn next_row_seed(&self, seed: u64, entity: &str) -> u64 {
        let before = self.added_by_entity.get(entity).copied().unwrap_or(0);
        seed ^ super::signing::hash64(&format!("{entity}/{before}"))
    }

    /// Records a new `Pending` export (already validated and checked with
    /// [`Registry::check_none_running`]) under `id` from [`Registry::next_id`].
    pub(super) fn insert(
        &mut self,
        id: String,
        request: &AddExportRequest,
        entity: &'static EntitySchema,
        content: Arc<ExportContent>,
        sizes: watch::Receiver<Sizes>,
        new: &NewExport<'_>,
    ) -> &ExportRecord {
        let fails = self.will_fail(new, &entity.entity);
        let expires_when_listed = self.first_of(new.expire_entity_once, &entity.entity);
        self.added += 1;
        *self
            .added_by_entity
            .entry(entity.entity.as_str())
            .or_default() += 1;
        let record = ExportRecord {
            id: id.clone(),
            entity,
            scope: request.scope.clone().unwrap_or_default(),
            filters: request.filters.clone(),
            content,
            sizes,
            polls: 0,
            status: ExportStatus::Pending,
            expires_utc: None,
            will_fail: fails,
            expires_when_listed,
            listed: false,
        };
        self.exports.entry(id).or_insert(record)
    }

    /// Closes the spool files of every export of `entity` but `keep`, whose files are then
    /// regenerated if they are downloaded again. Called when a newer export of the entity is
    /// added (a client has moved on), so a long-running server keeps at most about one
    /// export per entity type on disk, not every export it ever made.
    pub(super) fn release_spools(&mut self, entity: &str, keep: &str) {
        for record in self
            .exports
            .values_mut()
            .filter(|r| r.entity.entity == entity && r.id != keep)
        {
            record.release_spool();
        }
    }
}

impl ExportRecord {
    /// Drops this export's hold on its spool files, if it has measured them. A pass still
    /// running keeps its files (released by the next call), which only costs disk.
    fn release_spool(&mut self) {
        let released: Arc<[MeasuredFile]> = match &*self.sizes.borrow() {
            Some(Ok(files)) if files.iter().any(|f| f.spool.is_some()) => {
                files.iter().map(MeasuredFile::without_spool).collect()
            }
            _ => return,
        };
        // A receiver whose sender is gone still reads the value it was created with.
        self.sizes = watch::channel(Some(Ok(released))).1;
    }

    /// Whether this export ends `Failed`.
    pub(super) fn will_fail(&self) -> bool {
        self.will_fail
    }

    /// Its status now.
    pub(super) fn status(&self) -> ExportStatus {
        self.status
    }

    /// Whether its files can be downloaded: `Success`, and not expired by injection (which
    /// happens as soon as its files have been listed once).
    pub(super) fn is_downloadable(&self) -> bool {
        self.status == ExportStatus::Success && !(self.expires_when_listed && self.listed)
    }

    /// Advances the export for one `getAll` call at `now_secs`: `Pending` for
    /// `pending_polls` calls, then `Processing` for `processing_polls`, then its final
    /// status.
    pub(super) fn poll(
        &mut self,
        pending_polls: u32,
        processing_polls: u32,
        now_secs: i64,
    ) -> Transition {
        self.polls = self.polls.saturating_add(1);
        let mut transition = Transition::None;
        if !self.status.is_final() {
            self.status = if self.polls <= pending_polls {
                ExportStatus::Pending
            } else if self.polls <= pending_polls.saturating_add(processing_polls) {
                ExportStatus::Processing
            } else if self.will_fail {
                transition = Transition::Failed;
                ExportStatus::Failed
            } else {
                self.expires_utc = Some(now_secs + EXPORT_LIFETIME_SECS);
                ExportStatus::Success
            };
        } else if self.status == ExportStatus::Success && self.expires_when_listed && self.listed {
            self.status = ExportStatus::Expired;
            self.expires_utc = Some(now_secs);
            transition = Transition::Expired;
        }
        if self.status == ExportStatus::Success {
            // The caller lists the files of every Success export it reports.
            self.listed = true;
        }
        transition
    }

    /// The export as the API shows it, without files (the caller signs those).
    pub(super) fn view(&self) -> Export {
        Export {
            id: self.id.clone(),
            status: self.status,
            entity_type: self.entity.entity.clone(),
            scope: Some(self.scope.clone()),
            files: Vec::new(),
            expires_utc: self.expires_utc.map(super::clock::format_utc),
            filters: self.filters.clone(),
        }
    }
}

/// Checks an `exports/add` request against the documented contract; returns the entity's
/// schema, or the message of a 400.
pub(super) fn validate_add(
    request: &AddExportRequest,
    now_micros: i64,
) -> Result<&'static EntitySchema, String> {
    if request.client.trim().is_empty() {
        return Err("Invalid Client: it must name the client application.".into());
    }
    // Exact, case-sensitive names: `schema::find` also accepts table names, the API does not.
    let entity = schema::all()
        .iter()
        .find(|s| s.entity == request.entity_type)
        .ok_or_else(|| {
            format!(
                "Invalid EntityType: {:?} is not one of {}.",
                request.entity_type,
                schema::entity_names().join(", ")
            )
        })?;
    if let Some(scope) = &request.scope {
        check_id_count("Scope.EnterpriseIds", scope.enterprise_ids.as_deref())?;
        check_id_count("Scope.ChainIds", scope.chain_ids.as_deref())?;
    }
    let filters = request.filters.as_ref();
    if let Some(interval) = filters.and_then(|f| f.updated_utc.as_ref()) {
        let start = parse_timestamp_micros(&interval.start_utc)
            .map_err(|e| format!("Invalid Filters.UpdatedUtc.StartUtc: {e}."))?;
        let end = parse_timestamp_micros(&interval.end_utc)
            .map_err(|e| format!("Invalid Filters.UpdatedUtc.EndUtc: {e}."))?;
        // StartUtc == EndUtc is the documented equality mode (`_objects.md`, time interval).
        if start > end {
            return Err("Invalid Filters.UpdatedUtc: StartUtc must not be after EndUtc.".into());
        }
        if end > now_micros - MIN_END_AGE_MICROS {
            return Err(
                "Invalid Filters.UpdatedUtc: EndUtc must be at least 5 minutes in the past.".into(),
            );
        }
        if end - start > MAX_INTERVAL_MICROS {
            return Err(
                "Invalid Filters.UpdatedUtc: the interval must not exceed 180 days.".into(),
            );
        }
    }
    if entity.entity == "LedgerEntry" {
        let posting = filters
            .and_then(|f| f.ledger_entry_filters.as_ref())
            .map(|l| &l.posting)
            .ok_or("Invalid Filters: LedgerEntryFilters.Posting is required for EntityType LedgerEntry.")?;
        let start = parse_date_days(&posting.start)
            .map_err(|e| format!("Invalid Filters.LedgerEntryFilters.Posting.Start: {e}."))?;
        let end = parse_date_days(&posting.end)
            .map_err(|e| format!("Invalid Filters.LedgerEntryFilters.Posting.End: {e}."))?;
        if start > end {
            return Err(
                "Invalid Filters.LedgerEntryFilters.Posting: Start must not be after End.".into(),
            );
        }
    }
    Ok(entity)
}

/// Checks an `exports/getAll` request; returns the message of a 400.
pub(super) fn validate_get_all(request: &GetAllExportsRequest) -> Result<(), String> {
    if request.client.trim().is_empty() {
        return Err("Invalid Client: it must name the client application.".into());
    }
    check_id_count("ExportIds", Some(&request.export_ids))
}

fn check_id_count(name: &str, ids: Option<&[String]>) -> Result<(), String> {
    match ids {
        Some(ids) if ids.len() > MAX_IDS_PER_REQUEST => Err(format!(
            "Invalid {name}: {} items, at most {MAX_IDS_PER_REQUEST} are allowed.",
            ids.len()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DateInterval, LedgerEntryFilters, Secret, TimeInterval};

    /// 2024-06-01T00:00:00Z.
    const NOW: i64 = 1_717_200_000 * 1_000_000;

    fn add(entity: &str) -> AddExportRequest {
        AddExportRequest {
            client_token: Secret::new("c"),
            access_token: Secret::new("a"),
            client: "test 1.0".into(),
            entity_type: entity.into(),
            scope: None,
            filters: None,
        }
    }

    fn updated(start: &str, end: &str) -> Option<ExportFilters> {
        Some(ExportFilters {
            updated_utc: Some(TimeInterval {
                start_utc: start.into(),
                end_utc: end.into(),
            }),
            ledger_entry_filters: None,
        })
    }

    #[test]
    fn validation_follows_the_reference() {
        assert!(validate_add(&add("OrderItem"), NOW).is_ok());
        assert!(validate_add(&add("order_item"), NOW)
            .unwrap_err()
            .contains("EntityType"));
        let mut r = add("OrderItem");
        r.client = " ".into();
        assert!(validate_add(&r, NOW).unwrap_err().contains("Client"));

        r = add("Payment");
        r.scope = Some(ExportScope {
            enterprise_ids: Some(vec!["x".into(); 1001]),
            chain_ids: None,
        });
        assert!(validate_add(&r, NOW).unwrap_err().contains("1001"));

        r.scope = None;
        r.filters = updated("2024-05-01T00:00:00Z", "2024-05-31T23:55:00Z");
        assert!(validate_add(&r, NOW).is_ok());
        r.filters = updated("2024-05-01T00:00:00Z", "2024-05-31T23:55:01Z");
        assert!(validate_add(&r, NOW).unwrap_err().contains("5 minutes"));
        r.filters = updated("2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z");
        assert!(validate_add(&r, NOW).unwrap_err().contains("after"));
        r.filters = updated("2024-05-01T00:00:00Z", "2024-05-01T00:00:00Z");
        assert!(validate_add(&r, NOW).is_ok(), "equality mode");
        r.filters = updated("2023-11-01T00:00:00Z", "2024-05-01T00:00:00Z");
        assert!(validate_add(&r, NOW).unwrap_err().contains("180 days"));
        r.filters = updated("yesterday", "2024-05-01T00:00:00Z");
        assert!(validate_add(&r, NOW).unwrap_err().contains("StartUtc"));

        let mut l = add("LedgerEntry");
        assert!(validate_add(&l, NOW).unwrap_err().contains("Posting"));
        l.filters = Some(ExportFilters {
            updated_utc: None,
            ledger_entry_filters: Some(LedgerEntryFilters {
                posting: DateInterval {
                    start: "2024-01-01".into(),
                    end: "2024-01-31".into(),
                },
            }),
        });
        assert!(validate_add(&l, NOW).is_ok());
    }

    #[test]
    fn get_all_limits_ids() {
        let mut r = GetAllExportsRequest {
            client_token: Secret::new("c"),
            access_token: Secret::new("a"),
            client: "test".into(),
            export_ids: vec!["x".into(); 1000],
        };
        assert!(validate_get_all(&r).is_ok());
        r.export_ids.push("y".into());
        assert!(validate_get_all(&r).unwrap_err().contains("ExportIds"));
    }
}
