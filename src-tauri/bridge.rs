//! The one event stream from the core to the UI.
//!
//! A task forwards every [`papo_client::CoreEvent`] (converted to its UI twin) to a [`Bridge`].
//! Until the UI says it is ready (the `ui_ready` command), events are queued, not lost; the
//! command returns the queue and flips the bridge to live delivery under the same lock, so no
//! event is delivered twice or skipped at the seam.

use crate::ui_types::UiEvent;
use std::sync::Mutex;

/// The Tauri event name the UI listens to.
pub const EVENT: &str = "papo://event";

/// Beyond this many queued events the queue collapses into one [`UiEvent::Resync`]: the UI
/// re-reads everything from the cache at start anyway.
pub const MAX_QUEUED: usize = 10_000;

/// Where live events go (the webview in the app; a vector in tests).
pub trait Sink: Send + Sync {
    fn deliver(&self, event: &UiEvent);
}

#[derive(Default)]
pub struct Bridge {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    ready: bool,
    queue: Vec<UiEvent>,
}

impl Bridge {
    /// Delivers at once when the UI is ready, queues otherwise.
    pub fn push(&self, sink: &dyn Sink, event: UiEvent) {
        let mut st = self.inner.lock().unwrap();
        if st.ready {
            sink.deliver(&event);
        } else if st.queue.len() >= MAX_QUEUED || st.queue.first() == Some(&UiEvent::Resync) {
            st.queue.clear();
            st.queue.push(UiEvent::Resync);
        } else {
            st.queue.push(event);
        }
    }

    /// The UI is ready: returns what was queued, in order; later events are delivered live.
    pub fn ready(&self) -> Vec<UiEvent> {
        let mut st = self.inner.lock().unwrap();
        st.ready = true;
        std::mem::take(&mut st.queue)
    }

    /// The UI went away (reload): queue again until it is ready.
    pub fn not_ready(&self) {
        self.inner.lock().unwrap().ready = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui_types::{ConnectionState, CoreEvent};

    #[derive(Default)]
    struct Vec_(Mutex<Vec<UiEvent>>);
    impl Sink for Vec_ {
        fn deliver(&self, event: &UiEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn ev(attempt: u32) -> UiEvent {
        UiEvent::Core(CoreEvent::Connection(ConnectionState::Connecting {
            attempt,
        }))
    }

    #[test]
    fn events_before_ready_are_queued_then_handed_over_in_order() {
        let (bridge, sink) = (Bridge::default(), Vec_::default());
        bridge.push(&sink, ev(1));
        bridge.push(&sink, ev(2));
        assert!(sink.0.lock().unwrap().is_empty());
        assert_eq!(bridge.ready(), vec![ev(1), ev(2)]);
        bridge.push(&sink, ev(3));
        assert_eq!(*sink.0.lock().unwrap(), vec![ev(3)]);
        assert!(bridge.ready().is_empty());
    }

    #[test]
    fn an_overflowing_queue_collapses_into_a_resync() {
        let (bridge, sink) = (Bridge::default(), Vec_::default());
        for i in 0..(MAX_QUEUED as u32 + 5) {
            bridge.push(&sink, ev(i));
        }
        assert_eq!(bridge.ready(), vec![UiEvent::Resync]);
    }
}
