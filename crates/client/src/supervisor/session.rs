//! One session: connect (timeout), auth with the durable cursor, wait for `Open`, then the
//! pump loop with liveness pings, wake and network probes, stall detection and the token
//! refresh ahead of expiry.

use super::dispatch::Pump;
use super::{failed, Command, End, Supervisor};
use crate::config::server_urls;
use crate::diag::TransportKind;
use crate::event::ConnectionState;
use crate::event::CoreEvent;
use crate::outbox_sender::OutboxSender;
use crate::tokens::TokenError;
use crate::transport::{Inbound, Link, Refusal};
use papo_protocol::{events, ConnectAuth, Cursor, PresenceWatch, Reply};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{interval, interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use uuid::Uuid;

/// The sign-out reason of a suspended account.
pub(crate) const SUSPENDED: &str = "this account is suspended by a moderator";

/// How long to wait before trying again a refresh ahead of expiry that could not be done.
const REFRESH_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

impl Supervisor {
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
                    Err(TokenError::AccountDeleted) => End::AccountDeleted,
                    Err(TokenError::AccountSuspended) => End::Suspended,
                    Err(TokenError::Unavailable(m)) => failed(m),
                }
            }
            Refusal::BadAuth => {
                End::SignedOut("the server refused the connection (bad_auth)".into())
            }
            Refusal::AccountDeleted => End::AccountDeleted,
            Refusal::AccountSuspended => End::Suspended,
            Refusal::Forbidden => failed("the server refused the connection (forbidden)"),
            Refusal::Other(m) => failed(m),
        }
    }

    pub(super) async fn session(&mut self) -> End {
        // A token past its refresh point is refreshed before it is used for a connection.
        if self
            .tokens
            .refresh_due()
            .is_some_and(|due| due <= Instant::now())
        {
            match self.tokens.refresh().await {
                Ok(_) => tracing::debug!("access token refreshed before connecting"),
                Err(TokenError::Refused(m)) => return End::SignedOut(m),
                Err(TokenError::AccountDeleted) => return End::AccountDeleted,
                Err(TokenError::AccountSuspended) => return End::Suspended,
                // Perhaps still valid; if not, the refusal path refreshes again.
                Err(TokenError::Unavailable(m)) => {
                    tracing::info!(error = %m, "token refresh failed; connecting with the current token")
                }
            }
        }
        let Some(token) = self.tokens.access_token().await else {
            return End::SignedOut("not signed in".into());
        };
        let point = self.cache.read(|c| Ok((c.me()?, c.resume_point()?))).await;
        let (me, (cursor, epoch)) = match point {
            Ok((Some(me), point)) => (me, point),
            Ok((None, _)) => return End::SignedOut("not signed in".into()),
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
        let carrier = self.carrier;
        self.wire.lock().unwrap().transport = carrier;
        let connect = timeout(
            self.config.connect_timeout,
            transport.connect_over(&url, auth, tx, carrier),
        );
        tokio::pin!(connect);
        let link = loop {
            tokio::select! {
                r = &mut connect => match r {
                    Err(_) => return self.carrier_failed("connect timed out"),
                    Ok(Err(e)) => return self.carrier_failed(e.to_string()),
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
                    return self.carrier_failed("no answer to CONNECT (open timeout)");
                }
                ev = rx.recv() => match ev {
                    Some(Inbound::Open) => {
                        let mut w = self.wire.lock().unwrap();
                        w.sessions += 1;
                        w.connected_at = Some(self.config.wall_clock.now());
                        break;
                    }
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

    /// A session that could not start. Over WebSocket, HTTP long-polling is tried next, at once
    /// (a proxy may refuse or stall the upgrade while plain HTTP goes through); over polling it
    /// is an ordinary failure.
    fn carrier_failed(&self, reason: impl Into<String>) -> End {
        match self.carrier {
            TransportKind::Websocket if self.transport.can_poll() => {
                End::CarrierFailed(reason.into())
            }
            _ => failed(reason),
        }
    }

    async fn emit(&self, link: &dyn Link, event: &str, data: serde_json::Value) -> Result<(), End> {
        match timeout(self.config.liveness_timeout, link.emit(event, data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(format!("emit failed: {e}"))),
            Err(_) => Err(failed("emit timed out")),
        }
    }

    async fn send_watch(&self, link: &dyn Link, w: &PresenceWatch) -> Result<(), End> {
        let data = serde_json::to_value(w).expect("presence watch serializes");
        self.emit(link, events::PRESENCE_WATCH, data).await
    }

    /// Sends a liveness ping that anything from the server must follow within
    /// `probe_timeout` (the select in `connected` ends the session otherwise).
    async fn probe(&self, link: &dyn Link, deadline: &mut Option<Instant>) -> Result<(), End> {
        if deadline.is_some() {
            return Ok(());
        }
        *deadline = Some(Instant::now() + self.config.probe_timeout);
        self.ping(link).await
    }

    /// A `sys:ping`, timed for the diagnostics' round trip.
    async fn ping(&self, link: &dyn Link) -> Result<(), End> {
        let id = Uuid::now_v7();
        self.wire.lock().unwrap().ping = Some((id, std::time::Instant::now()));
        self.emit(link, events::SYS_PING, json!({ "id": id })).await
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
            if let Some(end) = self.inbound(ev, me, &mut s).await {
                return end;
            }
        }
        // The watch set is per connection on the server (a new one starts with none): send it
        // on every connection unless empty, then whenever it changes.
        let mut watching = self.watching.clone();
        let first = watching.borrow_and_update().clone();
        if first != PresenceWatch::default() {
            if let Err(end) = self.send_watch(link, &first).await {
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
        // Over polling, WebSocket is tried again after a while (the session ends, the next one
        // goes over WebSocket and falls back again if it still fails).
        let websocket_again = (self.carrier == TransportKind::Polling)
            .then(|| Instant::now() + self.config.websocket_retry);
        loop {
            if s.ready {
                for item in s.outbox.due(&self.cache).await {
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
                        Err(TokenError::AccountDeleted) => return End::AccountDeleted,
                        Err(TokenError::AccountSuspended) => return End::Suspended,
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
                Ok(()) = watching.changed() => {
                    let w = watching.borrow_and_update().clone();
                    if let Err(end) = self.send_watch(link, &w).await {
                        return end;
                    }
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
                    if let Some(end) = self.inbound(ev, me, &mut s).await {
                        return end;
                    }
                }
                _ = sleep_until(websocket_again.unwrap_or_else(Instant::now)), if websocket_again.is_some() => {
                    tracing::info!("over HTTP long-polling for a while: trying WebSocket again");
                    self.carrier = TransportKind::Websocket;
                    return End::Again;
                }
                _ = ping.tick() => {
                    let silent = last_heard.elapsed();
                    if silent > self.config.liveness_timeout {
                        return failed(format!("server silent for {} ms", silent.as_millis()));
                    }
                    if let Err(end) = self.ping(link).await {
                        return end;
                    }
                }
                _ = sleep_until(outbox_wake.unwrap_or_else(Instant::now)), if outbox_wake.is_some() => {
                    for change in s.outbox.on_wake(&self.cache).await {
                        self.publish(CoreEvent::Outbox(change));
                    }
                }
            }
        }
    }
}

impl Supervisor {
    /// Stall detection. A `sys:ping` reply may carry the server's heads of our two streams
    /// (older servers leave them out: then nothing happens here). Heads ahead of the cursor we
    /// stored mean events exist that we have not received; if no `log` arrives within
    /// `stall_grace`, the session is stalled and ends (see the select in `connected`).
    pub(super) async fn check_heads(&self, reply: &Reply, s: &mut Pump) {
        let Some(heads) = reply.result.as_ref().and_then(|r| r.heads) else {
            return;
        };
        if s.stall_deadline.is_some() {
            return;
        }
        let cursor = match self.cache.read(|c| c.resume_point()).await {
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
