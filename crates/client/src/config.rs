//! The client's connection settings, shared by the account API, the supervisor and the outbox
//! sender (kept here so none of them imports another for its configuration).

use crate::backoff::BackoffConfig;
use crate::cache::now_ms;
use papo_protocol::Millis;
use std::sync::Arc;
use std::time::Duration;

/// Reads the wall clock (unix ms). Injectable so tests can simulate a wake from sleep.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> Millis + Send + Sync>);

impl WallClock {
    pub fn new(f: impl Fn() -> Millis + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(f))
    }
    pub fn now(&self) -> Millis {
        (self.0)()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new(now_ms)
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

/// Timeouts and pacing of the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8080`; several nodes of one deployment may be
    /// given separated by commas, and the supervisor moves to the next one when a connection
    /// attempt fails (resuming by cursor there).
    pub server_url: String,
    pub connect_timeout: Duration,
    pub open_timeout: Duration,
    /// How often we send `sys:ping`.
    pub ping_interval: Duration,
    /// A session that heard nothing for this long is dead.
    pub liveness_timeout: Duration,
    /// A `sys:ping` reply whose stream heads are ahead of our stored cursor must be followed
    /// by a `log` within this, or the session is stalled (the server's pump for us stopped
    /// while the socket still answers) and is replaced, resuming by cursor.
    pub stall_grace: Duration,
    pub close_timeout: Duration,
    /// A session that lasted this long resets the backoff.
    pub stable_after: Duration,
    /// An outbox request unanswered for this long is sent again (same client id).
    pub request_timeout: Duration,
    pub backoff: BackoffConfig,
    /// Backoff for transient request errors (`rate_limited`, `internal`).
    pub outbox_backoff: BackoffConfig,
    /// Outbox requests per second (below the server's per-connection limit).
    pub send_rate: f64,
    pub send_burst: f64,
    /// How often the wall clock is compared with the monotonic clock while waiting.
    pub wake_check: Duration,
    /// A wall-clock advance this much larger than the monotonic one means we slept.
    pub wake_jump: Duration,
    /// After a wake or a network change while connected, a liveness ping must be answered
    /// (by anything) within this, or the session is replaced at once.
    pub probe_timeout: Duration,
    /// Watch the OS for network changes (see [`netwatch`]) and feed them in as
    /// [`SupervisorHandle::network_changed`].
    pub watch_network: bool,
    pub wall_clock: WallClock,
    /// While the connection is carried by HTTP long-polling (WebSocket failed: a proxy that
    /// refuses upgrades), WebSocket is tried again after this long.
    pub websocket_retry: Duration,
}

impl SupervisorConfig {
    pub fn new(server_url: impl Into<String>) -> Self {
        SupervisorConfig {
            server_url: server_url.into(),
            connect_timeout: Duration::from_secs(5),
            open_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(2),
            liveness_timeout: Duration::from_secs(4),
            stall_grace: Duration::from_secs(4),
            close_timeout: Duration::from_secs(1),
            stable_after: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            outbox_backoff: BackoffConfig {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
                jitter: 0.5,
            },
            send_rate: 20.0,
            send_burst: 40.0,
            wake_check: Duration::from_secs(1),
            wake_jump: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            watch_network: true,
            wall_clock: WallClock::default(),
            websocket_retry: Duration::from_secs(60),
        }
    }
}

/// The servers of a comma-separated `server_url`, in order.
pub fn server_urls(server_url: &str) -> Vec<String> {
    let urls: Vec<String> = server_url
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        vec![server_url.to_string()]
    } else {
        urls
    }
}
