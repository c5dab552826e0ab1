//! The one typed stream the core publishes: connection states and everything that happened.

use crate::outbox::OutboxChange;
use crate::policy::OsNotification;
use papo_protocol::{LogEvent, Millis, Presence, SyncStatus, Typing};
use serde::{Deserialize, Serialize};

/// Connection state, for the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// Opening a session (attempt 1 is the first after a success or a reset).
    Connecting { attempt: u32 },
    /// The session is open: live events flow and the outbox drains.
    Connected,
    /// Waiting before the next attempt.
    Retrying {
        attempt: u32,
        /// Wall-clock time of the next attempt.
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        at: Millis,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        in_ms: u64,
        reason: String,
    },
    /// The server refused our tokens (after one refresh): the user must sign in.
    SignedOut {
        reason: String,
        /// The account was deleted (from another device), and this device's cache erased.
        account_deleted: bool,
        /// The account is suspended by a moderator (the cache is kept); signing in is refused
        /// until the suspension is lifted.
        #[serde(default)]
        suspended: bool,
    },
    /// The core was shut down.
    Stopped,
}

/// Everything the core tells its subscribers. Serialized as `{"event": "...", "data": ...}` so
/// the shell can forward it to the web UI unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum CoreEvent {
    Connection(ConnectionState),
    /// A durable event, after it was committed to the cache.
    Log(LogEvent),
    /// The rows a batch (or a local action) added or updated, published once per batch after
    /// it was committed: the UI applies them instead of re-reading the cache.
    Changes(crate::changes::ChangeSet),
    /// Replay progress (`reset` means the cache was wiped and is being refilled).
    Sync(SyncStatus),
    Presence(Presence),
    Typing(Typing),
    /// An outbox item changed state.
    Outbox(OutboxChange),
    /// The notification policy says: raise this OS notification.
    Notify(OsNotification),
    /// The `/admin` connection changed state (see [`crate::Core::admin_open`]).
    Admin(crate::admin::AdminState),
    /// `admin:stats`, every second while the `/admin` connection is open.
    AdminStats(papo_protocol::AdminStats),
    /// This message was deleted: withdraw the OS notification that announced it, where the OS
    /// allows (the freedesktop bus does; a burst's notification is shown again without it).
    Withdraw {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        message_id: i64,
    },
}
