//! What the connection looks like from here, for the app's Diagnostics page and `papo-cli diag`:
//! counters the supervisor keeps as it runs, and the last packets received — their names and
//! sizes only, never their content, so a copy of the diagnostics holds no token and no text.

use crate::event::ConnectionState;
use papo_protocol::{Cursor, Millis};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use uuid::Uuid;

/// How many received packets the diagnostics keep (the newest).
pub const RECENT: usize = 50;

/// Kept by the supervisor as it runs (shared with the core through the supervisor handle).
#[derive(Debug, Default)]
pub(crate) struct Wire {
    pub(crate) attempts: u32,
    pub(crate) sessions: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) connected_at: Option<Millis>,
    pub(crate) rtt_ms: Option<u64>,
    /// The `sys:ping` waiting for its answer, and when it was sent.
    pub(crate) ping: Option<(Uuid, std::time::Instant)>,
    pub(crate) recent: VecDeque<WireEvent>,
    /// What carries the current (or next) session.
    pub(crate) transport: TransportKind,
}

impl Wire {
    pub(crate) fn received(&mut self, at: Millis, name: &str, data: &serde_json::Value) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(WireEvent {
            at,
            name: name.to_string(),
            bytes: json_len(data),
        });
    }

    /// The answer to a ping: its round trip, when it answers the last one sent.
    pub(crate) fn pong(&mut self, id: Option<Uuid>) {
        if let (Some((sent, at)), Some(id)) = (self.ping, id) {
            if sent == id {
                self.rtt_ms = Some(at.elapsed().as_millis() as u64);
                self.ping = None;
            }
        }
    }
}

/// The length of a value's JSON text, counted without building it.
fn json_len(v: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// One packet received: its Socket.IO event name and the size of its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WireEvent {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    pub name: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub bytes: u64,
}

/// How the connection is carried: WebSocket, or Engine.IO's HTTP long-polling when WebSocket
/// fails (a proxy that refuses upgrades).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    #[default]
    Websocket,
    Polling,
}

/// A snapshot of the connection, safe to copy into a bug report: no token, no message text.
/// `transport` is what carries the current (or the next) session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Diagnostics {
    pub server_url: String,
    pub transport: TransportKind,
    pub state: ConnectionState,
    /// Connection attempts since the core started.
    pub attempts: u32,
    /// Sessions opened (CONNECT answered) since the core started.
    pub sessions: u32,
    /// Why the last session ended, or the last attempt failed.
    pub last_error: Option<String>,
    /// When the current session opened (wall clock).
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub connected_at: Option<Millis>,
    /// The last `sys:ping` round trip.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub rtt_ms: Option<u64>,
    /// The stored position in each stream, and the server epoch it belongs to.
    pub cursor: Cursor,
    pub epoch: Option<String>,
    /// Outbox items waiting to be sent, and stopped by a refusal (wedged).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub outbox_pending: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub outbox_wedged: i64,
    /// The last packets received, oldest first.
    pub recent: Vec<WireEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_packets_with_their_sizes_and_times_pings() {
        let mut w = Wire::default();
        for i in 0..(RECENT as i64 + 5) {
            w.received(i, "log", &serde_json::json!({"n": i}));
        }
        assert_eq!(w.recent.len(), RECENT);
        assert_eq!(w.recent.front().unwrap().at, 5);
        assert_eq!(w.recent.back().unwrap().bytes, r#"{"n":54}"#.len() as u64);
        let id = Uuid::now_v7();
        w.ping = Some((id, std::time::Instant::now()));
        w.pong(Some(Uuid::now_v7()));
        assert_eq!(w.rtt_ms, None, "another ping's answer");
        w.pong(Some(id));
        assert!(w.rtt_ms.is_some());
        assert!(w.ping.is_none());
    }
}
