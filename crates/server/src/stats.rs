//! What a node counts for `admin:stats`: its connections, the log events it writes and the
//! requests it receives, by kind. Counting is a few atomic adds per request; the `/admin`
//! ticker turns them into per-second rates once a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use papo_protocol::{events, Millis, NodeStats};

/// Counters of one node.
pub struct Metrics {
    started_at: Millis,
    connections: AtomicU64,
    events: AtomicU64,
    /// Requests since the last snapshot, by event name (the protocol's names, or `unknown`).
    requests: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started_at: crate::now_ms(),
            connections: AtomicU64::new(0),
            events: AtomicU64::new(0),
            requests: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The protocol's name for `event`, or `unknown`: what a client sends is never a key as is, so
/// the counters cannot grow with made-up names.
fn known(event: &str) -> &'static str {
    events::REQUESTS
        .iter()
        .chain(events::ADMIN_REQUESTS)
        .find(|n| **n == event)
        .copied()
        .unwrap_or("unknown")
}

impl Metrics {
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A request arrived (whatever becomes of it).
    pub fn request(&self, event: &str) {
        let name = known(event);
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_insert(0) += 1;
    }

    /// This node wrote `n` log events.
    pub fn events_written(&self, n: usize) {
        self.events.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The rates since the previous snapshot, `elapsed` ago; the counters start again.
    pub fn snapshot(&self, node: &str, users_online: u64, elapsed: Duration) -> NodeStats {
        let secs = elapsed.as_secs_f64().max(0.001);
        let requests =
            std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()));
        NodeStats {
            node: node.to_string(),
            started_at: self.started_at,
            at: crate::now_ms(),
            connections: self.connections.load(Ordering::Relaxed),
            users_online,
            events_per_sec: self.events.swap(0, Ordering::Relaxed) as f64 / secs,
            requests_per_sec: requests
                .into_iter()
                .map(|(k, n)| (k.to_string(), n as f64 / secs))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_by_known_name_and_start_again() {
        let m = Metrics::default();
        m.connected();
        m.connected();
        m.disconnected();
        for _ in 0..6 {
            m.request("chat:send");
        }
        m.request("admin:suspend");
        m.request("no:such-thing");
        m.request("another:made-up-name");
        m.events_written(8);
        let s = m.snapshot("n1", 1, Duration::from_secs(2));
        assert_eq!(s.connections, 1);
        assert_eq!(s.events_per_sec, 4.0);
        assert_eq!(s.requests_per_sec["chat:send"], 3.0);
        assert_eq!(s.requests_per_sec["admin:suspend"], 0.5);
        assert_eq!(s.requests_per_sec["unknown"], 1.0);
        assert_eq!(s.requests_per_sec.len(), 3);
        let again = m.snapshot("n1", 1, Duration::from_secs(1));
        assert!(again.requests_per_sec.is_empty());
        assert_eq!(again.events_per_sec, 0.0);
        assert_eq!(again.connections, 1);
    }
}
