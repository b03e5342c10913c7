//! Client-side request limit: at most N request starts in any sliding window, and none
//! while the server has asked the client to wait.
//!
//! The Connector API counts requests per access token in a sliding 30-second window
//! (`guidelines/requests.md`), so a fixed-bucket counter could still overrun it. Keeping the
//! start instants of the last N requests is exact for a sliding window and costs N instants.
//! A 429's `Retry-After` speaks for the token, not for the one request that got it: every
//! other request would be refused too, spending an attempt of its own, so the limiter holds
//! them all until then ([`RequestLimiter::pause_until`]).
//! Time comes from `tokio::time`, so tests run it with paused time.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Lets at most `max_requests` requests start within any `window`.
#[derive(Debug)]
pub struct RequestLimiter {
    max_requests: u32,
    window: Duration,
    /// Start instants of the most recent requests, oldest first, at most `max_requests`.
    /// A Tokio mutex, held while waiting: it queues callers fairly, so slots go out in
    /// arrival order and nobody starves.
    starts: Mutex<VecDeque<Instant>>,
    /// No request starts before this instant (a server's `Retry-After`). Not behind
    /// `starts`, which a waiting caller holds: the request that got the 429 must be able to
    /// set it meanwhile.
    paused_until: std::sync::Mutex<Option<Instant>>,
}

impl RequestLimiter {
    /// A limiter of `max_requests` per `window`; `max_requests` must be at least 1.
    pub fn new(max_requests: u32, window: Duration) -> Self {
        RequestLimiter {
            max_requests: max_requests.max(1),
            window,
            starts: Mutex::new(VecDeque::with_capacity(max_requests.max(1) as usize)),
            paused_until: std::sync::Mutex::new(None),
        }
    }

    /// Holds every request start until `until` (or later, if an earlier pause lasts longer).
    pub fn pause_until(&self, until: Instant) {
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *paused = Some(paused.map_or(until, |p| p.max(until)));
    }

    fn paused_until(&self) -> Option<Instant> {
        *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until one more request may start without exceeding the limit or starting
    /// within a pause, and records it.
    pub async fn acquire(&self) {
        let mut starts = self.starts.lock().await;
        // Both conditions are checked again after either wait: a 429 may come in while
        // this waits for the window.
        loop {
            if let Some(until) = self.paused_until().filter(|&u| u > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            if starts.len() >= self.max_requests as usize {
                // The oldest of the last N starts leaves the window at `oldest + window`;
                // from then on at most N−1 starts remain inside it.
                if let Some(&oldest) = starts.front() {
                    tokio::time::sleep_until(oldest + self.window).await;
                }
                starts.pop_front();
                continue;
            }
            break;
        }
        starts.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_bursts_by_the_window() {
        let limiter = RequestLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let mut offsets = Vec::new();
        for _ in 0..5 {
            limiter.acquire().await;
            offsets.push((Instant::now() - t0).as_secs());
        }
        assert_eq!(offsets, [0, 0, 10, 10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_start_and_is_never_shortened() {
        let limiter = RequestLimiter::new(100, Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.acquire().await;
        limiter.pause_until(t0 + Duration::from_secs(5));
        limiter.pause_until(t0 + Duration::from_secs(3));
        limiter.acquire().await;
        assert_eq!((Instant::now() - t0).as_secs(), 5);
        // Past the pause, starts go at once again.
        limiter.acquire().await;
        assert_eq!((Instant::now() - t0).as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_set_while_waiting_for_the_window_is_kept() {
        let limiter = std::sync::Arc::new(RequestLimiter::new(1, Duration::from_secs(10)));
        let t0 = Instant::now();
        limiter.acquire().await;
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        // While the second start waits for the window (until 10 s), a 429 asks for 15 s.
        tokio::time::sleep(Duration::from_secs(2)).await;
        limiter.pause_until(t0 + Duration::from_secs(15));
        waiting.await.unwrap();
        assert_eq!((Instant::now() - t0).as_secs(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_need_no_wait() {
        let limiter = RequestLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        // Starts at 0, 6, 12, 18: any 10 s window holds at most two.
        assert_eq!((Instant::now() - t0).as_secs(), 24);
    }
}
