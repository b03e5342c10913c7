//! Live progress of a run: counters the pipeline updates as it goes and a registry of the
//! state of each export job, read by whatever displays them (progress bars on a terminal).
//! Updating is a relaxed atomic add or a short lock per batch, never per row.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one load.
#[derive(Debug, Default)]
pub struct LoadProgress {
    /// Decompressed bytes framed into lines so far.
    pub bytes: AtomicU64,
    /// Rows decoded and handed to the writer.
    pub rows: AtomicU64,
    /// Lines rejected.
    pub rejected: AtomicU64,
    /// Source files read to their end.
    pub files_done: AtomicU64,
    /// Source files of the load.
    pub files_total: AtomicU64,
}

impl LoadProgress {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What one export job is doing.
#[derive(Debug, Clone)]
pub struct JobView {
    /// Short state: `adding`, `Pending`, `Processing`, `loading`, `committed`, `failed`…
    pub state: String,
    /// The export, once known.
    pub export_id: Option<String>,
    /// The load's counters, once loading.
    pub load: Option<Arc<LoadProgress>>,
}

/// The state of every job of a run, by entity type.
#[derive(Debug, Default, Clone)]
pub struct RunProgress {
    jobs: Arc<Mutex<BTreeMap<String, JobView>>>,
}

impl RunProgress {
    /// Records `entity`'s state (and export id, when given).
    pub fn set_state(&self, entity: &str, state: &str, export_id: Option<&str>) {
        if let Ok(mut jobs) = self.jobs.lock() {
            let view = jobs.entry(entity.to_owned()).or_insert_with(|| JobView {
                state: String::new(),
                export_id: None,
                load: None,
            });
            view.state = state.to_owned();
            if let Some(id) = export_id {
                view.export_id = Some(id.to_owned());
            }
        }
    }

    /// Attaches the counters of `entity`'s load.
    pub fn set_load(&self, entity: &str, load: Arc<LoadProgress>) {
        if let Ok(mut jobs) = self.jobs.lock() {
            if let Some(view) = jobs.get_mut(entity) {
                view.load = Some(load);
            }
        }
    }

    /// A copy of every job's view, by entity type.
    pub fn snapshot(&self) -> BTreeMap<String, JobView> {
        self.jobs.lock().map(|j| j.clone()).unwrap_or_default()
    }
}
