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
//!
//! The module is split by job: [`handle`] (what callers hold), `session` (connect, auth,
//! resume, liveness, token refresh), `dispatch` (inbound events into the cache and out as
//! [`CoreEvent`]s); outbox sending is in `outbox_sender`, the configuration in
//! [`crate::config`].

use crate::backoff::Backoff;
use crate::cache_thread::CacheHandle;
use crate::event::{ConnectionState, CoreEvent};
use crate::tokens::TokenSource;
use crate::transport::Transport;
use papo_protocol::PresenceWatch;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

pub use crate::config::{server_urls, SupervisorConfig, WallClock};
use handle::Command;
pub use handle::{SupervisorHandle, View};

mod dispatch;
pub mod handle;
pub mod netwatch;
mod session;

/// Starts the supervisor task on the current tokio runtime.
pub fn spawn(
    config: SupervisorConfig,
    cache: CacheHandle,
    tokens: Arc<dyn TokenSource>,
    transport: Arc<dyn Transport>,
    view: Arc<Mutex<View>>,
) -> SupervisorHandle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, _) = broadcast::channel(4096);
    let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting { attempt: 1 });
    let watch_network = config.watch_network;
    let (watching_tx, watching_rx) = watch::channel(PresenceWatch::default());
    let wire = Arc::new(Mutex::new(crate::diag::Wire::default()));
    let sup = Supervisor {
        carrier: crate::diag::TransportKind::Websocket,
        wire: wire.clone(),
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
        watching: watching_rx,
    };
    tokio::spawn(sup.run());
    let handle = SupervisorHandle {
        wire,
        commands: cmd_tx,
        events: ev_tx,
        state: state_rx,
        watching: Arc::new(watching_tx),
    };
    if watch_network {
        netwatch::spawn(handle.clone());
    }
    handle
}

pub(super) enum End {
    Shutdown,
    SignedOut(String),
    /// The account is suspended: sign out, keep the cache.
    Suspended,
    /// The account was deleted from another device: sign out and erase the cache.
    AccountDeleted,
    /// A WebSocket session could not start: the next attempt goes over HTTP long-polling, at
    /// once.
    CarrierFailed(String),
    /// Try again at once (a fresh token was obtained).
    Again,
    Failed {
        reason: String,
        stable: bool,
    },
}

pub(super) fn failed(reason: impl Into<String>) -> End {
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
    /// What carries the next session: WebSocket, or long-polling after WebSocket failed.
    carrier: crate::diag::TransportKind,
    /// Counters and recent packets for the diagnostics.
    wire: Arc<Mutex<crate::diag::Wire>>,
    config: SupervisorConfig,
    /// Every SQLite access goes through the cache threads.
    cache: CacheHandle,
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
    /// What the UI shows (users, the public room): sent as `presence:watch` on every
    /// connection and whenever it changes.
    watching: watch::Receiver<PresenceWatch>,
}

impl Supervisor {
    pub(super) fn publish(&self, ev: CoreEvent) {
        let _ = self.events.send(ev);
    }

    pub(super) fn set_state(&self, s: ConnectionState) {
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
            {
                let mut w = self.wire.lock().unwrap();
                w.attempts += 1;
                w.connected_at = None;
            }
            let reason = match self.session().await {
                End::Shutdown => break,
                End::SignedOut(reason) => {
                    tracing::info!(%reason, "signed out");
                    self.signed_out = true;
                    self.set_state(ConnectionState::SignedOut {
                        reason,
                        account_deleted: false,
                        suspended: false,
                    });
                    continue;
                }
                End::Suspended => {
                    tracing::info!("the account is suspended");
                    self.tokens.forget();
                    self.signed_out = true;
                    self.set_state(ConnectionState::SignedOut {
                        reason: session::SUSPENDED.into(),
                        account_deleted: false,
                        suspended: true,
                    });
                    continue;
                }
                End::AccountDeleted => {
                    // Nothing of a deleted account stays on its devices: the session goes,
                    // and the cache is erased before anyone is told.
                    tracing::info!("the account was deleted: erasing this device's cache");
                    self.tokens.forget();
                    if let Err(e) = self.cache.write(|c| c.wipe()).await {
                        tracing::error!(error = %e, "could not erase the cache of a deleted account");
                    }
                    self.publish(CoreEvent::Changes(crate::changes::ChangeSet {
                        reset: true,
                        ..Default::default()
                    }));
                    self.signed_out = true;
                    self.set_state(ConnectionState::SignedOut {
                        reason: "this account was deleted".into(),
                        account_deleted: true,
                        suspended: false,
                    });
                    continue;
                }
                End::Again => continue,
                End::CarrierFailed(reason) => {
                    tracing::info!(%reason, "WebSocket failed; trying HTTP long-polling");
                    self.wire.lock().unwrap().last_error = Some(reason);
                    self.carrier = crate::diag::TransportKind::Polling;
                    continue;
                }
                End::Failed { reason, stable } => {
                    // Whatever carried it, the next attempt tries WebSocket first.
                    self.carrier = crate::diag::TransportKind::Websocket;
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
            {
                let mut w = self.wire.lock().unwrap();
                w.last_error = Some(reason.clone());
                w.connected_at = None;
            }
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
                        account_deleted: false,
                        suspended: false,
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
    pub(super) fn busy_command(&mut self, cmd: Option<Command>) -> Option<End> {
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
}

#[cfg(test)]
mod tests;
