//! The one event stream from the core to the UI.
//!
//! A task forwards every [`papo_client::CoreEvent`] (converted to its UI twin) to a [`Bridge`],
//! a queue the UI drains: `ui_ready` returns what was queued before the UI started, then the UI
//! pulls the rest with `next_events` ([`Bridge::next`]), one batch per call, in order.
//!
//! Pulled, not pushed: a Tauri event (and a Channel message) reaches the page as a script the
//! web process evaluates, and at hundreds of change sets a second that saturated WebKit's main
//! thread and grew the web process by hundreds of MiB in seconds (measured with
//! bench/desktop.sh; Tauri issue #3921). A command's answer is an HTTP response on the app's
//! IPC protocol, and while the UI handles one batch the next one fills up, so a busy room costs
//! one round trip per batch the UI can take, not one script per change set.

use crate::ui_types::UiEvent;
use std::sync::Mutex;
use std::time::Duration;

/// Beyond this many queued events the queue collapses into one [`UiEvent::Resync`]: the UI
/// re-reads everything from the cache anyway (at start, or because it fell this far behind).
pub const MAX_QUEUED: usize = 10_000;

/// A batch carries at most this many events (the rest go in the next one).
pub const MAX_BATCH: usize = 1_000;

/// How long a `next_events` call waits for something before answering with nothing.
pub const PULL_WAIT: Duration = Duration::from_secs(25);

#[derive(Default)]
pub struct Bridge {
    inner: Mutex<State>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    ready: bool,
    /// Bumped by every `ready`: a pull from a page that has since been reloaded gets nothing.
    epoch: u64,
    queue: std::collections::VecDeque<UiEvent>,
}

impl Bridge {
    /// Queues an event for the UI.
    pub fn push(&self, event: UiEvent) {
        self.push_all(vec![event]);
    }

    /// Queues events for the UI, in order.
    pub fn push_all(&self, events: Vec<UiEvent>) {
        if events.is_empty() {
            return;
        }
        let mut st = self.inner.lock().unwrap();
        for event in events {
            if st.queue.len() >= MAX_QUEUED || st.queue.front() == Some(&UiEvent::Resync) {
                st.queue.clear();
                st.queue.push_back(UiEvent::Resync);
            } else {
                st.queue.push_back(event);
            }
        }
        let ready = st.ready;
        drop(st);
        if ready {
            self.wake.notify_waiters();
        }
    }

    /// The UI is ready: returns what was queued, in order; later events are pulled with
    /// [`Bridge::next`].
    pub fn ready(&self) -> Vec<UiEvent> {
        let mut st = self.inner.lock().unwrap();
        st.ready = true;
        st.epoch += 1;
        let queued = std::mem::take(&mut st.queue).into();
        drop(st);
        // A pull still waiting from before (a reloaded page) gives up.
        self.wake.notify_waiters();
        queued
    }

    /// The UI went away (reload): keep the events for its next `ready`.
    pub fn not_ready(&self) {
        self.inner.lock().unwrap().ready = false;
    }

    /// The next events for a ready UI (at most [`MAX_BATCH`]), waiting up to `wait` for the
    /// first; empty after the wait, or when the UI was started again meanwhile.
    pub async fn next(&self, wait: Duration) -> Vec<UiEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        let epoch = self.inner.lock().unwrap().epoch;
        loop {
            // Registered before the queue is looked at: no wake-up falls in between.
            let woken = self.wake.notified();
            {
                let mut st = self.inner.lock().unwrap();
                if st.epoch != epoch {
                    return Vec::new();
                }
                if st.ready && !st.queue.is_empty() {
                    let n = st.queue.len().min(MAX_BATCH);
                    return st.queue.drain(..n).collect();
                }
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui_types::{ConnectionState, CoreEvent};
    use std::sync::Arc;

    fn ev(attempt: u32) -> UiEvent {
        UiEvent::Core(CoreEvent::Connection(ConnectionState::Connecting {
            attempt,
        }))
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn events_before_ready_are_handed_over_then_pulled_in_order() {
        let bridge = Bridge::default();
        bridge.push(ev(1));
        bridge.push_all(vec![ev(2)]);
        assert_eq!(bridge.ready(), vec![ev(1), ev(2)]);
        bridge.push_all(vec![ev(3), ev(4)]);
        bridge.push(ev(5));
        assert_eq!(bridge.next(WAIT).await, vec![ev(3), ev(4), ev(5)]);
        // Nothing more: the pull answers empty after its wait.
        let t = tokio::time::Instant::now();
        assert!(bridge.next(WAIT).await.is_empty());
        assert_eq!(t.elapsed(), WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_pull_wakes_up_for_the_next_event() {
        let bridge = Arc::new(Bridge::default());
        bridge.ready();
        let b = bridge.clone();
        let pull = tokio::spawn(async move { b.next(WAIT).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        bridge.push(ev(7));
        assert_eq!(pull.await.unwrap(), vec![ev(7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_from_before_a_reload_gets_nothing_and_leaves_the_events() {
        let bridge = Arc::new(Bridge::default());
        bridge.ready();
        let b = bridge.clone();
        let stale = tokio::spawn(async move { b.next(WAIT).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        bridge.not_ready();
        bridge.push(ev(8));
        assert!(bridge.ready().contains(&ev(8)));
        assert!(stale.await.unwrap().is_empty());
        bridge.push(ev(9));
        assert_eq!(bridge.next(WAIT).await, vec![ev(9)]);
    }

    #[test]
    fn an_overflowing_queue_collapses_into_a_resync() {
        let bridge = Bridge::default();
        for i in 0..(MAX_QUEUED as u32 + 5) {
            bridge.push(ev(i));
        }
        assert_eq!(bridge.ready(), vec![UiEvent::Resync]);
    }
}
