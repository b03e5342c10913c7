//! One poll for all pending exports: every round asks `exports/getAll` about every export
//! still waited for, in as few calls as the 1000-id limit allows, so waiting for ten entity
//! types costs the same requests as waiting for one.

use crate::api::{ApiClient, Export, ExportStatus};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, Mutex, Notify};

/// First pause before asking about a new export: exports of small data sets finish in
/// seconds, and asking at once would only spend a request.
pub const INITIAL_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Longest pause between polls: the reference suggests checking every 5 minutes.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Growth of the pause after each round that found exports still running.
pub const POLL_GROWTH: f64 = 1.5;

/// Rounds an export may be missing from `exports/getAll` before waiting for it fails.
pub const MISSING_ROUNDS: u32 = 3;

type Waiter = oneshot::Sender<Result<Export, String>>;

/// Waits for exports to reach a final status (Success, Failed or Expired).
#[derive(Clone)]
pub struct Poller {
    inner: Arc<Inner>,
}

struct Inner {
    client: ApiClient,
    initial: Duration,
    cap: Duration,
    waiting: Mutex<HashMap<String, (Vec<Waiter>, u32)>>,
    statuses: std::sync::Mutex<HashMap<String, ExportStatus>>,
    wake: Arc<Notify>,
}

impl Poller {
    /// A poller using `client`, pausing from `min(INITIAL_POLL_INTERVAL, cap)` up to `cap`.
    pub fn new(client: ApiClient, cap: Duration) -> Self {
        let cap = cap.min(MAX_POLL_INTERVAL);
        let inner = Arc::new(Inner {
            client,
            initial: INITIAL_POLL_INTERVAL.min(cap),
            cap,
            waiting: Mutex::new(HashMap::new()),
            statuses: std::sync::Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(run(Arc::downgrade(&inner)));
        Poller { inner }
    }

    /// The status last seen for an export, for progress display.
    pub fn last_status(&self, export_id: &str) -> Option<ExportStatus> {
        self.inner.statuses.lock().ok()?.get(export_id).copied()
    }

    /// Waits until `export_id` is Success, Failed or Expired, and returns it; an error when
    /// the API cannot be asked or no longer lists the export.
    pub async fn wait_final(&self, export_id: &str) -> Result<Export, String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.inner.waiting.lock().await;
            waiting.entry(export_id.to_owned()).or_default().0.push(tx);
        }
        self.inner.wake.notify_one();
        rx.await.map_err(|_| "the poller stopped".to_owned())?
    }
}

async fn run(inner: Weak<Inner>) {
    let mut interval = Duration::ZERO;
    let mut known = 0usize;
    loop {
        let Some(me) = inner.upgrade() else { return };
        let ids: Vec<String> = me.waiting.lock().await.keys().cloned().collect();
        if ids.is_empty() {
            // Sleep until someone waits; holding only a weak reference meanwhile lets the
            // task end (at the next check) once the poller is dropped. A wake-up sent before
            // we wait is kept by `Notify` as a permit, so none is lost.
            let wake = me.wake.clone();
            drop(me);
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            interval = Duration::ZERO;
            continue;
        }
        if ids.len() > known {
            // A new export joined: ask about it soon rather than at the grown interval.
            interval = me.initial;
        }
        let client = me.client.clone();
        drop(me);
        tokio::time::sleep(interval).await;
        interval = interval.mul_f64(POLL_GROWTH).max(Duration::from_millis(1));
        let Some(me) = inner.upgrade() else { return };
        interval = interval.min(me.cap);
        let ids: Vec<String> = me.waiting.lock().await.keys().cloned().collect();
        let result = client.get_exports(&ids).await;
        let mut waiting = me.waiting.lock().await;
        match result {
            Ok(exports) => {
                let mut seen: HashMap<&str, &Export> = HashMap::new();
                for e in &exports {
                    seen.insert(e.id.as_str(), e);
                    if let Ok(mut s) = me.statuses.lock() {
                        if s.insert(e.id.clone(), e.status) != Some(e.status) {
                            tracing::info!(export_id = %e.id, entity = %e.entity_type, status = %e.status, "export status");
                        }
                    }
                }
                for id in ids {
                    match seen.get(id.as_str()) {
                        Some(e) if e.status.is_final() => {
                            if let Some((waiters, _)) = waiting.remove(&id) {
                                for w in waiters {
                                    let _ = w.send(Ok((*e).clone()));
                                }
                            }
                        }
                        Some(_) => {}
                        None => {
                            let missing = waiting.get_mut(&id).map(|(_, m)| {
                                *m += 1;
                                *m
                            });
                            if missing.unwrap_or(0) >= MISSING_ROUNDS {
                                if let Some((waiters, _)) = waiting.remove(&id) {
                                    for w in waiters {
                                        let _ = w.send(Err(format!("export {id} is not listed by exports/getAll")));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                // The client already retried what was worth retrying: give up on this round's
                // exports, each waiter reports the error for its entity.
                for (_, (waiters, _)) in waiting.drain() {
                    for w in waiters {
                        let _ = w.send(Err(format!("polling export status: {e}")));
                    }
                }
            }
        }
        known = waiting.len();
    }
}
