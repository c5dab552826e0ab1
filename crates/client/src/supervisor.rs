//! The connection supervisor: one task owns the Socket.IO session; callers hold a
//! [`SupervisorHandle`] (commands in) and subscribe to [`CoreEvent`]s (events and states out).
//!
//! Per attempt: take the access token and the durable cursor, open a fresh transport session
//! (connect timeout), wait for `Open` (open timeout; nothing is emitted before it), then pump:
//! apply `log` batches to the cache, answer `sync`, match `reply` events by client id, drain the
//! outbox one request at a time, and ping on our own timer — silence longer than the liveness
//! timeout ends the session. Requests wait for the session's first `sync`/`log` (see
//! `Pump::ready`: the server drops events that arrive before its connect handler ran). A ping
//! reply whose stream heads are ahead of our cursor must be followed by a `log` (stall check);
//! a wake from sleep or a network change while connected sends a probe ping that must be
//! answered. The access token is refreshed ahead of its expiry, while connected or before
//! connecting. Between attempts: exponential backoff with jitter after the cap, reset after a
//! stable session, skipped on "retry now", on a network change ([`netwatch`]) or when the wall
//! clock jumps ahead of the monotonic clock (the machine slept). A refused token is refreshed
//! once; a second refusal (or a refused refresh) is the `SignedOut` state, which waits for a
//! new sign-in.

use crate::backoff::{Backoff, BackoffConfig};
use crate::cache::{now_ms, Cache};
use crate::event::{ConnectionState, CoreEvent};
use crate::outbox::OutboxChange;
use crate::outbox_sender::OutboxSender;
use crate::policy::{self, NotificationSettings, PolicyContext};
use crate::tokens::{TokenError, TokenSource};
use crate::transport::{Inbound, Link, Refusal, Transport};
use papo_protocol::{
    events, ConnectAuth, Cursor, LogBatch, Millis, Presence, Reply, SyncState, SyncStatus, Typing,
    TypingSet,
};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{interval, interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use uuid::Uuid;

/// How long to wait before trying again a refresh ahead of expiry that could not be done.
const REFRESH_RETRY: Duration = Duration::from_secs(15);

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
        }
    }
}

/// What the notification policy needs from the UI; shared between the core and the task.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub on_screen: Option<String>,
    pub settings: NotificationSettings,
}

enum Command {
    RetryNow,
    NetworkChanged,
    OutboxChanged,
    SignedIn,
    SignOut,
    Typing(TypingSet),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle on the supervisor task.
#[derive(Clone)]
pub struct SupervisorHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<CoreEvent>,
    state: watch::Receiver<ConnectionState>,
}

impl SupervisorHandle {
    /// Skip the current backoff wait.
    pub fn retry_now(&self) {
        let _ = self.commands.send(Command::RetryNow);
    }
    /// The network may have come back (a link, address or route appeared): while waiting to
    /// retry, retry at once; while connected, check the session with a ping.
    pub fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged);
    }
    /// New work in the outbox.
    pub fn outbox_changed(&self) {
        let _ = self.commands.send(Command::OutboxChanged);
    }
    /// New tokens are available (after login): leave `SignedOut`.
    pub fn signed_in(&self) {
        let _ = self.commands.send(Command::SignedIn);
    }
    /// Close the session and stay signed out.
    pub fn sign_out(&self) {
        let _ = self.commands.send(Command::SignOut);
    }
    /// Ephemeral typing indicator (dropped when not connected).
    pub fn typing(&self, conversation: String, typing: bool) {
        let _ = self.commands.send(Command::Typing(TypingSet {
            conversation,
            typing,
        }));
    }
    /// Stops the task (closing the session) and waits for it, at most a few seconds.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = timeout(Duration::from_secs(5), rx).await;
        }
    }
    /// Publishes an event on the core's stream (a change the core made outside the task).
    pub(crate) fn publish(&self, ev: CoreEvent) {
        let _ = self.events.send(ev);
    }
    /// Events and states from now on. A subscriber that lags loses events (it gets
    /// `RecvError::Lagged`) and should re-read the cache, which is the source of truth.
    pub fn subscribe(&self) -> broadcast::Receiver<CoreEvent> {
        self.events.subscribe()
    }
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }
}

/// Starts the supervisor task on the current tokio runtime.
pub fn spawn(
    config: SupervisorConfig,
    cache: Arc<Cache>,
    tokens: Arc<dyn TokenSource>,
    transport: Arc<dyn Transport>,
    view: Arc<Mutex<View>>,
) -> SupervisorHandle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, _) = broadcast::channel(4096);
    let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting { attempt: 1 });
    let watch_network = config.watch_network;
    let sup = Supervisor {
        config,
        cache,
        tokens,
        transport,
        view,
        commands: cmd_rx,
        events: ev_tx.clone(),
        state: state_tx,
        refreshed: false,
        signed_out: false,
        shutdown_ack: None,
        server: 0,
    };
    tokio::spawn(sup.run());
    let handle = SupervisorHandle {
        commands: cmd_tx,
        events: ev_tx,
        state: state_rx,
    };
    if watch_network {
        netwatch::spawn(handle.clone());
    }
    handle
}

enum End {
    Shutdown,
    SignedOut(String),
    /// Try again at once (a fresh token was obtained).
    Again,
    Failed {
        reason: String,
        stable: bool,
    },
}

fn failed(reason: impl Into<String>) -> End {
    End::Failed {
        reason: reason.into(),
        stable: false,
    }
}

enum Wait {
    Timer,
    Now,
    SignedOut,
    Shutdown,
}

struct Supervisor {
    config: SupervisorConfig,
    cache: Arc<Cache>,
    tokens: Arc<dyn TokenSource>,
    transport: Arc<dyn Transport>,
    view: Arc<Mutex<View>>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<CoreEvent>,
    state: watch::Sender<ConnectionState>,
    /// A refresh already succeeded since the last open session.
    refreshed: bool,
    signed_out: bool,
    shutdown_ack: Option<oneshot::Sender<()>>,
    /// Index of the server (in `server_urls`) the next attempt goes to.
    server: usize,
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

impl Supervisor {
    fn publish(&self, ev: CoreEvent) {
        let _ = self.events.send(ev);
    }

    fn set_state(&self, s: ConnectionState) {
        tracing::debug!(state = ?s, "connection state");
        self.state.send_replace(s.clone());
        self.publish(CoreEvent::Connection(s));
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff.clone());
        loop {
            if self.signed_out && !self.wait_signed_in().await {
                break;
            }
            self.set_state(ConnectionState::Connecting {
                attempt: backoff.attempt() + 1,
            });
            let reason = match self.session().await {
                End::Shutdown => break,
                End::SignedOut(reason) => {
                    tracing::info!(%reason, "signed out");
                    self.signed_out = true;
                    self.set_state(ConnectionState::SignedOut { reason });
                    continue;
                }
                End::Again => continue,
                End::Failed { reason, stable } => {
                    if stable {
                        // A session that lasted: its server is worth one more try.
                        backoff.reset();
                    } else {
                        // This server is down or failing: the next attempt goes to the next
                        // node, if there is one.
                        self.server = self.server.wrapping_add(1);
                    }
                    reason
                }
            };
            let delay = backoff.next_delay();
            tracing::info!(%reason, delay_ms = delay.as_millis() as u64, "session ended; retrying");
            self.set_state(ConnectionState::Retrying {
                attempt: backoff.attempt(),
                at: self.config.wall_clock.now() + delay.as_millis() as i64,
                in_ms: delay.as_millis() as u64,
                reason,
            });
            match self.wait_retry(delay).await {
                Wait::Timer | Wait::Now => {}
                Wait::SignedOut => {
                    self.signed_out = true;
                    self.set_state(ConnectionState::SignedOut {
                        reason: "signed out".into(),
                    });
                }
                Wait::Shutdown => break,
            }
        }
        self.set_state(ConnectionState::Stopped);
        if let Some(ack) = self.shutdown_ack.take() {
            let _ = ack.send(());
        }
    }

    /// A command while idle (waiting to retry, or signed out).
    fn idle_command(&mut self, cmd: Option<Command>) -> Option<Wait> {
        match cmd {
            None => Some(Wait::Shutdown),
            Some(Command::Shutdown(ack)) => {
                self.shutdown_ack = Some(ack);
                Some(Wait::Shutdown)
            }
            Some(Command::RetryNow) => Some(Wait::Now),
            Some(Command::NetworkChanged) => {
                tracing::info!("network changed: retrying now");
                Some(Wait::Now)
            }
            Some(Command::SignedIn) => {
                self.signed_out = false;
                self.refreshed = false;
                Some(Wait::Now)
            }
            Some(Command::SignOut) => Some(Wait::SignedOut),
            Some(Command::OutboxChanged) | Some(Command::Typing(_)) => None,
        }
    }

    /// A command while connecting or connected that ends the session, if it does.
    fn busy_command(&mut self, cmd: Option<Command>) -> Option<End> {
        match cmd {
            None => Some(End::Shutdown),
            Some(Command::Shutdown(ack)) => {
                self.shutdown_ack = Some(ack);
                Some(End::Shutdown)
            }
            Some(Command::SignOut) => Some(End::SignedOut("signed out".into())),
            _ => None,
        }
    }

    async fn wait_signed_in(&mut self) -> bool {
        loop {
            let cmd = self.commands.recv().await;
            match self.idle_command(cmd) {
                Some(Wait::Shutdown) => return false,
                Some(Wait::Now) if !self.signed_out => return true,
                _ => {}
            }
        }
    }

    async fn wait_retry(&mut self, delay: Duration) -> Wait {
        let deadline = Instant::now() + delay;
        let step = self.config.wake_check;
        let mut check = interval_at(Instant::now() + step, step);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_wall = self.config.wall_clock.now();
        let mut last_mono = Instant::now();
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return Wait::Timer,
                _ = check.tick() => {
                    let wall = self.config.wall_clock.now();
                    let mono = Instant::now();
                    let wall_d = wall - last_wall;
                    let mono_d = (mono - last_mono).as_millis() as i64;
                    last_wall = wall;
                    last_mono = mono;
                    if wall_d - mono_d > self.config.wake_jump.as_millis() as i64 {
                        tracing::info!(jump_ms = wall_d - mono_d, "woke from sleep: retrying now");
                        return Wait::Now;
                    }
                }
                cmd = self.commands.recv() => {
                    if let Some(w) = self.idle_command(cmd) {
                        return w;
                    }
                }
            }
        }
    }

    async fn teardown(&self, link: Box<dyn Link>) {
        let _ = timeout(self.config.close_timeout, link.close()).await;
        drop(link);
    }

    async fn refused(&mut self, r: Refusal) -> End {
        match r {
            Refusal::TokenExpired | Refusal::TokenInvalid => {
                if self.refreshed {
                    return End::SignedOut(format!("{r:?} after a refresh: sign in again"));
                }
                match self.tokens.refresh().await {
                    Ok(_) => {
                        self.refreshed = true;
                        End::Again
                    }
                    Err(TokenError::Refused(m)) => End::SignedOut(m),
                    Err(TokenError::Unavailable(m)) => failed(m),
                }
            }
            Refusal::BadAuth => {
                End::SignedOut("the server refused the connection (bad_auth)".into())
            }
            Refusal::Other(m) => failed(m),
        }
    }

    async fn session(&mut self) -> End {
        // A token past its refresh point is refreshed before it is used for a connection.
        if self
            .tokens
            .refresh_due()
            .is_some_and(|due| due <= Instant::now())
        {
            match self.tokens.refresh().await {
                Ok(_) => tracing::debug!("access token refreshed before connecting"),
                Err(TokenError::Refused(m)) => return End::SignedOut(m),
                // Perhaps still valid; if not, the refusal path refreshes again.
                Err(TokenError::Unavailable(m)) => {
                    tracing::info!(error = %m, "token refresh failed; connecting with the current token")
                }
            }
        }
        let Some(token) = self.tokens.access_token().await else {
            return End::SignedOut("not signed in".into());
        };
        let me = match self.cache.me() {
            Ok(Some(me)) => me,
            Ok(None) => return End::SignedOut("not signed in".into()),
            Err(e) => return failed(format!("cache: {e}")),
        };
        let (cursor, epoch) = match self.cache.resume_point() {
            Ok(x) => x,
            Err(e) => return failed(format!("cache: {e}")),
        };
        let auth = ConnectAuth {
            token: crate::secret::ExposeSecret::expose_secret(&token).to_string(),
            cursor: (epoch.is_some() || cursor != Cursor::default()).then_some(cursor),
            epoch,
        };
        let auth = serde_json::to_value(&auth).expect("auth serializes");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let transport = self.transport.clone();
        let urls = server_urls(&self.config.server_url);
        let url = urls[self.server % urls.len()].clone();
        let connect = timeout(
            self.config.connect_timeout,
            transport.connect(&url, auth, tx),
        );
        tokio::pin!(connect);
        let link = loop {
            tokio::select! {
                r = &mut connect => match r {
                    Err(_) => return failed("connect timed out"),
                    Ok(Err(e)) => return failed(e.to_string()),
                    Ok(Ok(link)) => break link,
                },
                cmd = self.commands.recv() => {
                    if let Some(end) = self.busy_command(cmd) {
                        return end;
                    }
                }
            }
        };

        // Nothing may be emitted before the server accepted the namespace CONNECT.
        let open_deadline = Instant::now() + self.config.open_timeout;
        let mut early = Vec::new();
        loop {
            tokio::select! {
                _ = sleep_until(open_deadline) => {
                    self.teardown(link).await;
                    return failed("no answer to CONNECT (open timeout)");
                }
                ev = rx.recv() => match ev {
                    Some(Inbound::Open) => break,
                    Some(Inbound::Refused(r)) => {
                        self.teardown(link).await;
                        return self.refused(r).await;
                    }
                    Some(ev @ Inbound::Event { .. }) => early.push(ev),
                    Some(Inbound::Error(e)) => tracing::debug!(error = %e, "transport error before open"),
                    Some(Inbound::Close) | None => {
                        self.teardown(link).await;
                        return failed("closed before open");
                    }
                },
                cmd = self.commands.recv() => {
                    if let Some(end) = self.busy_command(cmd) {
                        self.teardown(link).await;
                        return end;
                    }
                }
            }
        }

        self.refreshed = false;
        self.set_state(ConnectionState::Connected);
        let started = Instant::now();
        let end = self.connected(&*link, &mut rx, &me, early).await;
        self.teardown(link).await;
        match end {
            End::Failed { reason, .. } => End::Failed {
                reason,
                stable: started.elapsed() >= self.config.stable_after,
            },
            other => other,
        }
    }

    async fn emit(&self, link: &dyn Link, event: &str, data: serde_json::Value) -> Result<(), End> {
        match timeout(self.config.liveness_timeout, link.emit(event, data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(format!("emit failed: {e}"))),
            Err(_) => Err(failed("emit timed out")),
        }
    }

    /// Sends a liveness ping that anything from the server must follow within
    /// `probe_timeout` (the select in `connected` ends the session otherwise).
    async fn probe(&self, link: &dyn Link, deadline: &mut Option<Instant>) -> Result<(), End> {
        if deadline.is_some() {
            return Ok(());
        }
        *deadline = Some(Instant::now() + self.config.probe_timeout);
        self.emit(link, events::SYS_PING, json!({ "id": Uuid::now_v7() }))
            .await
    }

    async fn connected(
        &mut self,
        link: &dyn Link,
        rx: &mut mpsc::UnboundedReceiver<Inbound>,
        me: &str,
        early: Vec<Inbound>,
    ) -> End {
        let mut s = Pump {
            outbox: OutboxSender::new(&self.config),
            live: false,
            ready: false,
            stall_deadline: None,
        };
        for ev in early {
            if let Some(end) = self.inbound(ev, me, &mut s) {
                return end;
            }
        }
        let mut last_heard = Instant::now();
        let mut ping = interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // See `Pump::ready`: requests wait for the server's first `sync`/`log`, or this.
        let ready_deadline = Instant::now() + self.config.open_timeout;
        // Refresh ahead of expiry, while connected, so that the next connection never meets an
        // expired token. The HTTP request runs in its own task: the pump goes on meanwhile.
        let (refresh_tx, mut refresh_rx) = mpsc::unbounded_channel();
        let mut refreshing = false;
        let mut refresh_retry: Option<Instant> = None;
        // Wake from sleep while connected: the wall clock jumps ahead of the monotonic one
        // (which stood still, so no timer noticed). Then, and on a network change, one ping
        // must be answered within `probe_timeout`.
        let step = self.config.wake_check;
        let mut wake = interval_at(Instant::now() + step, step);
        wake.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_wall = self.config.wall_clock.now();
        let mut last_mono = Instant::now();
        let mut probe_deadline: Option<Instant> = None;
        loop {
            if s.ready {
                for item in s.outbox.due(&self.cache) {
                    let r = &item.request;
                    if let Err(end) = self.emit(link, r.event_name(), r.payload()).await {
                        return end;
                    }
                }
            }
            let outbox_wake = s.outbox.wake_at();
            let refresh_at = match (refreshing, self.tokens.refresh_due()) {
                (false, Some(due)) => Some(refresh_retry.map_or(due, |r| r.max(due))),
                _ => None,
            };
            tokio::select! {
                _ = wake.tick() => {
                    let wall = self.config.wall_clock.now();
                    let mono = Instant::now();
                    let jump = (wall - last_wall) - (mono - last_mono).as_millis() as i64;
                    last_wall = wall;
                    last_mono = mono;
                    if jump > self.config.wake_jump.as_millis() as i64 {
                        tracing::info!(jump_ms = jump, "woke from sleep while connected");
                        if let Err(end) = self.probe(link, &mut probe_deadline).await {
                            return end;
                        }
                    }
                }
                _ = sleep_until(probe_deadline.unwrap_or_else(Instant::now)), if probe_deadline.is_some() => {
                    return failed("no answer to the liveness probe (after a wake or a network change)");
                }
                _ = sleep_until(refresh_at.unwrap_or_else(Instant::now)), if refresh_at.is_some() => {
                    refreshing = true;
                    let tokens = self.tokens.clone();
                    let tx = refresh_tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(tokens.refresh().await.map(|_| ()));
                    });
                }
                Some(r) = refresh_rx.recv() => {
                    refreshing = false;
                    match r {
                        Ok(()) => {
                            refresh_retry = None;
                            tracing::debug!("access token refreshed ahead of its expiry");
                        }
                        Err(TokenError::Refused(m)) => return End::SignedOut(m),
                        Err(TokenError::Unavailable(m)) => {
                            tracing::info!(error = %m, "token refresh failed; trying again soon");
                            refresh_retry = Some(Instant::now() + REFRESH_RETRY);
                        }
                    }
                }
                _ = sleep_until(s.stall_deadline.unwrap_or_else(Instant::now)), if s.stall_deadline.is_some() => {
                    return failed(format!(
                        "stalled: the server's stream heads are ahead of our cursor and no log came for {} ms",
                        self.config.stall_grace.as_millis()
                    ));
                }
                _ = sleep_until(ready_deadline), if !s.ready => {
                    tracing::warn!("no sync or log from the server since open; sending anyway");
                    s.ready = true;
                }
                cmd = self.commands.recv() => match cmd {
                    Some(Command::OutboxChanged) => s.outbox.mark_dirty(),
                    Some(Command::Typing(t)) => {
                        let data = serde_json::to_value(&t).expect("typing serializes");
                        if let Err(end) = self.emit(link, events::TYPING_SET, data).await {
                            return end;
                        }
                    }
                    Some(Command::NetworkChanged) => {
                        tracing::info!("network changed while connected");
                        if let Err(end) = self.probe(link, &mut probe_deadline).await {
                            return end;
                        }
                    }
                    Some(Command::RetryNow) | Some(Command::SignedIn) => {}
                    other => {
                        if let Some(end) = self.busy_command(other) {
                            return end;
                        }
                    }
                },
                ev = rx.recv() => {
                    let Some(ev) = ev else { return failed("transport gone") };
                    last_heard = Instant::now();
                    probe_deadline = None;
                    if let Some(end) = self.inbound(ev, me, &mut s) {
                        return end;
                    }
                }
                _ = ping.tick() => {
                    let silent = last_heard.elapsed();
                    if silent > self.config.liveness_timeout {
                        return failed(format!("server silent for {} ms", silent.as_millis()));
                    }
                    let data = json!({ "id": Uuid::now_v7() });
                    if let Err(end) = self.emit(link, events::SYS_PING, data).await {
                        return end;
                    }
                }
                _ = sleep_until(outbox_wake.unwrap_or_else(Instant::now)), if outbox_wake.is_some() => {
                    for change in s.outbox.on_wake(&self.cache) {
                        self.publish(CoreEvent::Outbox(change));
                    }
                }
            }
        }
    }

    fn inbound(&mut self, ev: Inbound, me: &str, s: &mut Pump) -> Option<End> {
        match ev {
            Inbound::Open => None,
            Inbound::Close => Some(failed("the server closed the session")),
            Inbound::Refused(r) => Some(failed(format!("refused mid-session: {r:?}"))),
            Inbound::Error(e) => {
                tracing::debug!(error = %e, "transport error");
                None
            }
            Inbound::Event { name, data } => self.server_event(&name, data, me, s),
        }
    }

    fn server_event(
        &mut self,
        name: &str,
        data: serde_json::Value,
        me: &str,
        s: &mut Pump,
    ) -> Option<End> {
        match name {
            events::LOG => {
                s.ready = true;
                // Progress: the stall check starts over with the next ping reply.
                s.stall_deadline = None;
                let batch: LogBatch = match serde_json::from_value(data) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable log packet: resyncing");
                        return Some(failed("undecodable log packet"));
                    }
                };
                let out = match self.cache.apply_batch(me, &batch.events) {
                    Ok(out) => out,
                    Err(e) => return Some(failed(format!("cache: {e}"))),
                };
                for cid in &out.confirmed {
                    s.outbox.on_confirmed(*cid);
                    self.publish(CoreEvent::Outbox(OutboxChange::sent(*cid)));
                }
                if !out.changes.is_empty() {
                    self.publish(CoreEvent::Changes(out.changes.clone()));
                }
                let view = self.view.lock().unwrap().clone();
                for ev in out.applied {
                    // No OS notifications while filling an empty cache; once this
                    // connection reached live, every event is new (a new account's first
                    // like or DM notifies too).
                    if s.live || out.cursor_before.get(ev.stream) > 0 {
                        let ctx = PolicyContext {
                            me,
                            on_screen: view.on_screen.as_deref(),
                            settings: &view.settings,
                        };
                        if let Some(n) = policy::decide(&ev.body, &ctx) {
                            self.publish(CoreEvent::Notify(n));
                        }
                    }
                    self.publish(CoreEvent::Log(ev));
                }
                if let Some((stream, expected, got)) = out.gap {
                    return Some(failed(format!(
                        "gap in the {} stream: expected {expected}, got {got}",
                        stream.as_str()
                    )));
                }
            }
            events::SYNC => {
                s.ready = true;
                let status: SyncStatus = match serde_json::from_value(data) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable sync packet");
                        return None;
                    }
                };
                let r = match status.state {
                    SyncState::Reset => self.cache.reset(&status.epoch),
                    SyncState::Live => {
                        s.live = true;
                        self.cache.set_epoch(&status.epoch)
                    }
                };
                if let Err(e) = r {
                    return Some(failed(format!("cache: {e}")));
                }
                self.publish(CoreEvent::Sync(status));
            }
            events::REPLY => match serde_json::from_value::<Reply>(data) {
                Ok(reply) => return self.reply(reply, me, s),
                Err(e) => tracing::warn!(error = %e, "undecodable reply"),
            },
            events::PRESENCE => match serde_json::from_value::<Presence>(data) {
                Ok(p) => {
                    if let Err(e) = self.cache.apply_presence(&p) {
                        tracing::warn!(error = %e, "cannot store presence");
                    }
                    self.publish(CoreEvent::Presence(p));
                }
                Err(e) => tracing::warn!(error = %e, "undecodable presence"),
            },
            events::TYPING => match serde_json::from_value::<Typing>(data) {
                Ok(t) => self.publish(CoreEvent::Typing(t)),
                Err(e) => tracing::warn!(error = %e, "undecodable typing"),
            },
            other => tracing::debug!(event = other, "ignoring unknown event"),
        }
        None
    }

    fn reply(&mut self, reply: Reply, me: &str, s: &mut Pump) -> Option<End> {
        if reply.event == events::SYS_PING {
            self.check_heads(&reply, s);
        }
        match s.outbox.on_reply(&self.cache, me, reply) {
            Ok(changes) => {
                for change in changes {
                    self.publish(CoreEvent::Outbox(change));
                }
                None
            }
            Err(e) => Some(failed(e.to_string())),
        }
    }
}

impl Supervisor {
    /// Stall detection. A `sys:ping` reply may carry the server's heads of our two streams
    /// (older servers leave them out: then nothing happens here). Heads ahead of the cursor we
    /// stored mean events exist that we have not received; if no `log` arrives within
    /// `stall_grace`, the session is stalled and ends (see the select in `connected`).
    fn check_heads(&self, reply: &Reply, s: &mut Pump) {
        let Some(heads) = reply.result.as_ref().and_then(|r| r.heads) else {
            return;
        };
        if s.stall_deadline.is_some() {
            return;
        }
        let cursor = match self.cache.resume_point() {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cursor for the stall check");
                return;
            }
        };
        if heads.public > cursor.public || heads.private > cursor.private {
            tracing::debug!(
                ?heads,
                ?cursor,
                "server heads ahead of our cursor; expecting a log"
            );
            s.stall_deadline = Some(Instant::now() + self.config.stall_grace);
        }
    }
}

struct Pump {
    /// Outbox sending: next item, pacing, in flight, replies.
    outbox: OutboxSender,
    /// The server said the replay is done (`sync` live) on this connection.
    live: bool,
    /// The server has run its connect handler for this session: requests may go out.
    ///
    /// This is the fix for the intermittent stuck first send (a `papo-cli dm` pending for its
    /// whole wait while `Connected`). socketioxide 0.18 queues the namespace CONNECT answer (our
    /// `Open`) *before* it calls the server's connect handler, and calls it in a spawned task;
    /// papo-server registers its event handlers in that handler. An event arriving in between
    /// finds no handler and no fallback and is dropped with no error and no reply (socketioxide
    /// `Socket::recv_event`). A request emitted right after `Open` loses that race now and then
    /// on a busy machine — seen in the server's debug log: `reading event="dm:send"` 0.1 ms
    /// before the handler's `connected` line — and then waits out `request_timeout` (10 s, as
    /// long as `papo-cli dm --wait`) on a healthy session. The first `sync` or `log` of a session
    /// comes from the pump that the connect handler starts after registering its handlers, so
    /// it proves they are in place. (Pings and typing may still go early: losing one is
    /// harmless.) Reproduced and guarded by `tests/connect_stress.rs`.
    ready: bool,
    /// Set when a ping reply showed heads ahead of our cursor; cleared by any `log`.
    stall_deadline: Option<Instant>,
}

#[path = "netwatch.rs"]
pub mod netwatch;

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
