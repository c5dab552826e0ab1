//! The sending half of the outbox, used by the supervisor while a session is open: which item
//! goes out next, pacing under the server's rate limit, what is in flight, and what a `reply`
//! (or the log echo) does to an item.
//!
//! The supervisor owns the link and the event stream; this type owns none of them. Per loop
//! turn the supervisor emits what [`OutboxSender::due`] returns, sleeps until
//! [`OutboxSender::wake_at`] (calling [`OutboxSender::on_wake`] then), and hands replies and
//! confirmations in. The state lives for one session; everything durable is in the cache.

use crate::backoff::Backoff;
use crate::cache::{Cache, CacheError};
use crate::outbox::{OutboxChange, OutboxItem, OutboxState};
use crate::supervisor::{SupervisorConfig, WallClock};
use papo_protocol::{events, ErrorBody, ErrorCode, Reply};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// A reply that ends the session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SenderError {
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    #[error("the server refused our token mid-session")]
    TokenRefused,
}

/// Token bucket pacing outbox sends under the server's rate limit.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = (now - self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Outbox sending state of one session.
pub(crate) struct OutboxSender {
    inflight: Option<(Uuid, Instant)>,
    dirty: bool,
    next_send: Option<Instant>,
    bucket: Bucket,
    backoff: Backoff,
    request_timeout: Duration,
    wall_clock: WallClock,
}

impl OutboxSender {
    pub(crate) fn new(config: &SupervisorConfig) -> Self {
        OutboxSender {
            inflight: None,
            dirty: true,
            next_send: None,
            bucket: Bucket::new(config.send_rate, config.send_burst),
            backoff: Backoff::new(config.outbox_backoff.clone()),
            request_timeout: config.request_timeout,
            wall_clock: config.wall_clock.clone(),
        }
    }

    /// New work in the outbox (or a state change that may unblock some).
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The items to emit now, in order; each is counted as an attempt and tracked in flight.
    pub(crate) fn due(&mut self, cache: &Cache) -> Vec<OutboxItem> {
        if self.inflight.is_some() || !self.dirty {
            return Vec::new();
        }
        self.dirty = false;
        self.next_send = None;
        match cache.next_outbox_item() {
            Ok(Some(item)) => {
                let wall = self.wall_clock.now();
                let due = item.next_attempt_at.unwrap_or(0);
                if due > wall {
                    self.next_send =
                        Some(Instant::now() + Duration::from_millis((due - wall) as u64));
                } else if let Err(wait) = self.bucket.take() {
                    self.next_send = Some(Instant::now() + wait);
                } else {
                    let _ = cache.outbox_attempt(item.client_id);
                    self.inflight = Some((item.client_id, Instant::now() + self.request_timeout));
                    return vec![item];
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
        Vec::new()
    }

    /// When [`OutboxSender::on_wake`] should run next, if at all.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        [self.next_send, self.inflight.map(|(_, d)| d)]
            .into_iter()
            .flatten()
            .min()
    }

    /// A pacing wait ended or a request went unanswered. Returns the changes to publish.
    pub(crate) fn on_wake(&mut self, _cache: &Cache) -> Vec<OutboxChange> {
        let now = Instant::now();
        if self.next_send.is_some_and(|t| t <= now) {
            self.next_send = None;
            self.dirty = true;
        }
        if self.inflight.is_some_and(|(_, d)| d <= now) {
            tracing::warn!("outbox request unanswered; sending it again");
            self.inflight = None;
            self.dirty = true;
        }
        Vec::new()
    }

    /// The log echoed an item's client id (the cache already marked it sent).
    pub(crate) fn on_confirmed(&mut self, cid: Uuid) {
        if self.inflight.map(|(c, _)| c) == Some(cid) {
            self.inflight = None;
        }
        self.dirty = true;
    }

    /// A `reply` from the server. Returns the changes to publish.
    pub(crate) fn on_reply(
        &mut self,
        cache: &Cache,
        me: &str,
        reply: Reply,
    ) -> Result<Vec<OutboxChange>, SenderError> {
        if reply.event == events::SYS_PING || reply.event == events::TYPING_SET {
            return Ok(Vec::new());
        }
        let Some(cid) = reply.id else {
            tracing::warn!(event = %reply.event, error = ?reply.error, "reply without id");
            return Ok(Vec::new());
        };
        if self.inflight.map(|(c, _)| c) == Some(cid) {
            self.inflight = None;
            self.dirty = true;
        }
        if reply.ok {
            let ev = reply.result.as_ref().and_then(|r| r.event.as_ref());
            return Ok(if cache.outbox_confirm(me, cid, ev)? {
                vec![OutboxChange {
                    client_id: cid,
                    state: OutboxState::Sent,
                    error: None,
                }]
            } else {
                Vec::new()
            });
        }
        let error = reply
            .error
            .unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "error reply without a body"));
        match error.code {
            code if code.is_transient() => {
                let attempts = cache
                    .outbox_item(cid)
                    .ok()
                    .flatten()
                    .map(|i| i.attempts)
                    .unwrap_or(1);
                let delay = self
                    .backoff
                    .delay_for(attempts.saturating_sub(1).clamp(0, 31) as u32);
                let at = self.wall_clock.now() + delay.as_millis() as i64;
                tracing::info!(code = ?code, delay_ms = delay.as_millis() as u64, "transient request error; will retry");
                cache.outbox_defer(cid, at, &error)?;
                Ok(Vec::new())
            }
            ErrorCode::TokenExpired | ErrorCode::TokenInvalid => Err(SenderError::TokenRefused),
            _ => {
                tracing::warn!(code = ?error.code, message = %error.message, "request refused");
                Ok(if cache.outbox_fail(cid, &error)? {
                    vec![OutboxChange {
                        client_id: cid,
                        state: OutboxState::Failed,
                        error: Some(error),
                    }]
                } else {
                    Vec::new()
                })
            }
        }
    }
}
