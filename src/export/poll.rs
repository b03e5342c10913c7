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

/// Rounds in a row an export may be missing from `exports/getAll` before waiting for it
/// fails.
pub const MISSING_ROUNDS: u32 = 3;

type Waiter = oneshot::Sender<Result<Export, WaitError>>;

/// Why waiting for an export ended without its final status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    /// `exports/getAll` did not list the export in [`MISSING_ROUNDS`] rounds: it is gone
    /// (purged by the API, or added on another platform or by a server that has stopped).
    #[error("export {0} is not listed by exports/getAll")]
    NotListed(String),
    /// Asking `exports/getAll` failed (after the client's retries).
    #[error("polling export status: {message}")]
    Poll {
        /// What failed.
        message: String,
        /// The HTTP status of the API's answer, if it answered.
        status: Option<u16>,
    },
    /// The poller's task ended.
    #[error("the poller stopped")]
    Stopped,
}

/// One export being waited for.
#[derive(Default)]
struct Waiting {
    waiters: Vec<Waiter>,
    /// Rounds in a row in which `exports/getAll` did not list it.
    missing: u32,
    /// Rounds that asked about it: its pause grows with this, so a new export is asked
    /// about soon even while older ones are polled rarely.
    polls: u32,
}

/// Waits for exports to reach a final status (Success, Failed or Expired).
#[derive(Clone)]
pub struct Poller {
    inner: Arc<Inner>,
}

struct Inner {
    client: ApiClient,
    initial: Duration,
    cap: Duration,
    waiting: Mutex<HashMap<String, Waiting>>,
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
    pub async fn wait_final(&self, export_id: &str) -> Result<Export, WaitError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.inner.waiting.lock().await;
            waiting
                .entry(export_id.to_owned())
                .or_default()
                .waiters
                .push(tx);
        }
        self.inner.wake.notify_one();
        rx.await.map_err(|_| WaitError::Stopped)?
    }
}

async fn run(inner: Weak<Inner>) {
    loop {
        let Some(me) = inner.upgrade() else { return };
        let youngest = me.waiting.lock().await.values().map(|w| w.polls).min();
        let Some(polls) = youngest else {
            // Sleep until someone waits; holding only a weak reference meanwhile lets the
            // task end (at the next check) once the poller is dropped. A wake-up sent before
            // we wait is kept by `Notify` as a permit, so none is lost.
            let wake = me.wake.clone();
            drop(me);
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        };
        let interval = me
            .initial
            .mul_f64(POLL_GROWTH.powi(polls.min(64) as i32))
            .min(me.cap);
        let client = me.client.clone();
        drop(me);
        tokio::time::sleep(interval).await;
        let Some(me) = inner.upgrade() else { return };
        let ids: Vec<String> = {
            let mut waiting = me.waiting.lock().await;
            // Waiters that gave up (their job timed out) are not asked about any more.
            waiting.retain(|_, w| {
                w.waiters.retain(|tx| !tx.is_closed());
                !w.waiters.is_empty()
            });
            waiting.keys().cloned().collect()
        };
        if ids.is_empty() {
            continue;
        }
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
                    let done = match (seen.get(id.as_str()), waiting.get_mut(&id)) {
                        (_, None) => None,
                        (Some(e), Some(_)) if e.status.is_final() => Some(Ok((*e).clone())),
                        (Some(_), Some(w)) => {
                            w.polls += 1;
                            // Missing rounds count in a row: one listing ends a gap.
                            w.missing = 0;
                            None
                        }
                        (None, Some(w)) => {
                            w.polls += 1;
                            w.missing += 1;
                            (w.missing >= MISSING_ROUNDS)
                                .then(|| Err(WaitError::NotListed(id.clone())))
                        }
                    };
                    if let Some(result) = done {
                        if let Some(w) = waiting.remove(&id) {
                            for tx in w.waiters {
                                let _ = tx.send(result.clone());
                            }
                        }
                    }
                }
            }
            Err(e) => {
                // The client already retried what was worth retrying: give up on this round's
                // exports; each waiter reports the error for its entity. Exports that began
                // waiting during the call were not asked about: their turn is the next round.
                for id in ids {
                    if let Some(w) = waiting.remove(&id) {
                        for tx in w.waiters {
                            let _ = tx.send(Err(WaitError::Poll {
                                message: e.to_string(),
                                status: e.status(),
                            }));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_server::{Canned, TestServer};
    use crate::api::{ApiConfig, Secret};

    /// Polls every 50 ms: the pause starts at the cap when the cap is below
    /// [`INITIAL_POLL_INTERVAL`], and never grows past it.
    const CAP: Duration = Duration::from_millis(50);

    fn poller(server: &TestServer) -> Poller {
        let config = ApiConfig::new(server.url(), Secret::new("client"), Secret::new("access"));
        Poller::new(ApiClient::new(config).unwrap(), CAP)
    }

    fn exports(listed: &[(&str, &str)]) -> Canned {
        let exports: Vec<String> = listed
            .iter()
            .map(|(id, status)| {
                format!(
                    r#"{{"Id":"{id}","Status":"{status}","EntityType":"OrderItem","Scope":null,"Files":[],"ExpiresUtc":null,"Filters":null}}"#
                )
            })
            .collect();
        Canned::json(200, &format!(r#"{{"Exports":[{}]}}"#, exports.join(",")))
    }

    fn asked(server: &TestServer) -> Vec<Vec<String>> {
        server
            .requests()
            .iter()
            .map(|r| {
                let mut ids: Vec<String> = r.json()["ExportIds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|id| id.as_str().unwrap().to_owned())
                    .collect();
                ids.sort();
                ids
            })
            .collect()
    }

    /// Waits for `id` on a task of its own.
    fn spawn_wait(
        poller: &Poller,
        id: &'static str,
    ) -> tokio::task::JoinHandle<Result<Export, WaitError>> {
        let poller = poller.clone();
        tokio::spawn(async move { poller.wait_final(id).await })
    }

    /// Waits until the server has received `n` requests.
    async fn requests_reach(server: &TestServer, n: usize) {
        while server.requests().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A job that stopped waiting (its timeout) takes its export out of the polls: later
    /// rounds ask only about the exports still waited for.
    #[tokio::test]
    async fn an_export_nobody_waits_for_is_not_asked_about() {
        let server = TestServer::start_with_fallback(
            [],
            Some(exports(&[("a", "Processing"), ("b", "Processing")])),
        )
        .await;
        let poller = poller(&server);
        let a = spawn_wait(&poller, "a");
        requests_reach(&server, 1).await;
        a.abort();
        let _ = a.await;
        let b = spawn_wait(&poller, "b");
        // The round under way when `a` gave up may still ask about it; the two after it not.
        let asked_before = server.requests().len();
        requests_reach(&server, asked_before + 3).await;
        b.abort();
        let asked = asked(&server);
        assert_eq!(asked[0], ["a"], "{asked:?}");
        for ids in &asked[asked_before + 1..] {
            assert_eq!(ids, &["b"], "{asked:?}");
        }
    }

    /// An export missing from a few rounds now and then, never [`MISSING_ROUNDS`] in a row,
    /// is still waited for.
    #[tokio::test]
    async fn only_rounds_missing_in_a_row_give_an_export_up() {
        let missing = || exports(&[]);
        let listed = || exports(&[("a", "Processing")]);
        let server = TestServer::start_with_fallback(
            [
                missing(),
                missing(),
                listed(),
                missing(),
                missing(),
                listed(),
            ],
            Some(exports(&[("a", "Success")])),
        )
        .await;
        let done = poller(&server).wait_final("a").await.expect("given up");
        assert_eq!(done.status, ExportStatus::Success);
        assert_eq!(server.requests().len(), 7);
    }

    /// A round that fails fails the exports it asked about, not one that began waiting while
    /// it was under way: that one is asked about in the next round.
    #[tokio::test]
    async fn a_failed_round_fails_only_the_exports_it_asked_about() {
        let server =
            TestServer::start_with_fallback(
                [Canned::json(400, r#"{"Message":"Invalid request."}"#)
                    .after(Duration::from_secs(1))],
                Some(exports(&[("a", "Success"), ("b", "Success")])),
            )
            .await;
        let poller = poller(&server);
        let a = spawn_wait(&poller, "a");
        // The first round, about `a` alone, has reached the server, which answers a second
        // later: `b` begins waiting meanwhile.
        requests_reach(&server, 1).await;
        let b = poller.wait_final("b").await;
        let a = a.await.unwrap();
        let error = a.expect_err("the failed round did not fail export a");
        assert!(
            matches!(&error, WaitError::Poll { message, status: Some(400) } if message.contains("400")),
            "{error}"
        );
        assert_eq!(b.expect("export b failed").status, ExportStatus::Success);
        assert_eq!(asked(&server), [vec!["a"], vec!["b"]]);
    }
}
