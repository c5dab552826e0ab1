//! The sending half of the outbox, used by the supervisor while a session is open: which item
//! goes out next, pacing under the server's rate limit, what is in flight, and what a `reply`
//! (or the log echo) does to an item.
//!
//! The supervisor owns the link and the event stream; this type owns none of them. Per loop
//! turn the supervisor emits what [`OutboxSender::due`] returns, sleeps until
//! [`OutboxSender::wake_at`] (calling [`OutboxSender::on_wake`] then), and hands replies and
//! confirmations in. The state lives for one session; everything durable is in the cache.
//!
//! Order is kept per queue ([`crate::outbox::queue_of`]), not globally: the head of every queue
//! may be in flight at once, so a conversation whose item waits (backoff, no answer) or is
//! wedged never holds up another. A request unanswered within `request_timeout` counts as
//! unanswered (persisted) and waits a backoff before it is sent again with the same client id;
//! after [`crate::outbox::MAX_UNANSWERED`] it is wedged with reason `no_answer` and its queue
//! moves on. A dead connection is the supervisor's business (liveness ping); an unanswered
//! request on a live one means the server dropped it, which the backoff and the bound cover.

use crate::backoff::Backoff;
use crate::cache::CacheError;
use crate::cache_thread::CacheHandle;
use crate::config::{SupervisorConfig, WallClock};
use crate::outbox::{OutboxChange, OutboxItem, WedgeReason};
use papo_protocol::{events, ErrorBody, ErrorCode, Reply};
use std::collections::HashMap;
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

/// Governor's clock on tokio's time (so `tokio::time::pause` drives the pacing in tests):
/// instants are the time since the clock was made.
#[derive(Clone)]
struct TokioClock(Instant);

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.0)
    }
}

/// Paces outbox sends under the server's rate limit: `rate` a second, bursts of `burst`.
struct Bucket {
    limiter: governor::RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        TokioClock,
        governor::middleware::NoOpMiddleware<Duration>,
    >,
    clock: TokioClock,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        // At least one send in 1000 s, at most 10^9 a second (a nanosecond apart); NaN is slow.
        let rate = if rate.is_nan() {
            0.001
        } else {
            rate.clamp(0.001, 1e9)
        };
        let period = Duration::from_secs_f64(1.0 / rate);
        let burst = std::num::NonZeroU32::new(burst.clamp(1.0, u32::MAX as f64) as u32)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::with_period(period)
            .expect("the period is at least a nanosecond")
            .allow_burst(burst);
        let clock = TokioClock(Instant::now());
        Bucket {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }
    /// Takes a send; when there is none, how long until there is.
    fn take(&mut self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(governor::clock::Clock::now(&self.clock)))
    }
}

/// Outbox sending state of one session.
pub(crate) struct OutboxSender {
    /// Per queue: the client id in flight and when it counts as unanswered.
    inflight: HashMap<String, (Uuid, Instant)>,
    dirty: bool,
    /// When a waiting head becomes due or the bucket has a token again.
    next_check: Option<Instant>,
    bucket: Bucket,
    backoff: Backoff,
    request_timeout: Duration,
    wall_clock: WallClock,
}

impl OutboxSender {
    pub(crate) fn new(config: &SupervisorConfig) -> Self {
        OutboxSender {
            inflight: HashMap::new(),
            dirty: true,
            next_check: None,
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

    fn wait_until(&mut self, at: Instant) {
        self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
    }

    fn forget(&mut self, cid: Uuid) -> bool {
        let before = self.inflight.len();
        self.inflight.retain(|_, (c, _)| *c != cid);
        self.inflight.len() != before
    }

    /// The items to emit now, in order: the due head of every queue with nothing in flight.
    /// Each is counted as an attempt and tracked in flight.
    pub(crate) async fn due(&mut self, cache: &CacheHandle) -> Vec<OutboxItem> {
        if !self.dirty {
            return Vec::new();
        }
        self.dirty = false;
        self.next_check = None;
        let heads = match cache.read(|c| c.outbox_heads()).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return Vec::new();
            }
        };
        // An in-flight item that is no longer its queue's pending head was discarded, wedged
        // or confirmed meanwhile (or a retried older item moved in front): stop waiting for it.
        self.inflight.retain(|queue, (cid, _)| {
            heads
                .iter()
                .any(|h| &h.queue == queue && h.client_id == *cid)
        });
        let wall = self.wall_clock.now();
        let mut out = Vec::new();
        for item in heads {
            if self.inflight.contains_key(&item.queue) {
                continue;
            }
            let due = item.next_attempt_at.unwrap_or(0);
            if due > wall {
                self.wait_until(Instant::now() + Duration::from_millis((due - wall) as u64));
                continue;
            }
            if let Err(wait) = self.bucket.take() {
                self.wait_until(Instant::now() + wait);
                break;
            }
            self.inflight.insert(
                item.queue.clone(),
                (item.client_id, Instant::now() + self.request_timeout),
            );
            out.push(item);
        }
        if !out.is_empty() {
            let cids: Vec<Uuid> = out.iter().map(|i| i.client_id).collect();
            let counted = cache
                .write(move |c| cids.iter().try_for_each(|cid| c.outbox_attempt(*cid)))
                .await;
            if let Err(e) = counted {
                tracing::warn!(error = %e, "cannot count an outbox attempt");
            }
        }
        out
    }

    /// When [`OutboxSender::on_wake`] should run next, if at all.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.inflight
            .values()
            .map(|(_, d)| *d)
            .chain(self.next_check)
            .min()
    }

    /// A wait ended or requests went unanswered. Returns the changes to publish.
    pub(crate) async fn on_wake(&mut self, cache: &CacheHandle) -> Vec<OutboxChange> {
        let now = Instant::now();
        if self.next_check.is_some_and(|t| t <= now) {
            self.next_check = None;
            self.dirty = true;
        }
        let expired: Vec<Uuid> = self
            .inflight
            .values()
            .filter(|(_, d)| *d <= now)
            .map(|(c, _)| *c)
            .collect();
        let mut changes = Vec::new();
        for cid in expired {
            self.forget(cid);
            self.dirty = true;
            let unanswered = cache
                .read(move |c| c.outbox_item(cid))
                .await
                .ok()
                .flatten()
                .map_or(0, |i| i.unanswered);
            let delay = self.backoff.delay_for(unanswered.clamp(0, 31) as u32);
            let at = self.wall_clock.now() + delay.as_millis() as i64;
            match cache.write(move |c| c.outbox_unanswered(cid, at)).await {
                Ok(Some(reason)) => {
                    tracing::warn!(%cid, "outbox request never answered; wedged");
                    changes.push(OutboxChange::wedged(cid, reason));
                }
                Ok(None) => tracing::warn!(
                    %cid,
                    delay_ms = delay.as_millis() as u64,
                    "outbox request unanswered; will send it again"
                ),
                Err(e) => tracing::error!(error = %e, "cannot record an unanswered request"),
            }
        }
        changes
    }

    /// The log echoed an item's client id (the cache already marked it sent).
    pub(crate) fn on_confirmed(&mut self, cid: Uuid) {
        self.forget(cid);
        self.dirty = true;
    }

    /// A `reply` from the server. Returns the changes to publish.
    pub(crate) async fn on_reply(
        &mut self,
        cache: &CacheHandle,
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
        if self.forget(cid) {
            self.dirty = true;
        }
        if reply.ok {
            let ev = reply.result.as_ref().and_then(|r| r.event.as_ref());
            let (me, ev) = (me.to_string(), ev.cloned());
            let confirmed = cache
                .write(move |c| c.outbox_confirm(&me, cid, ev.as_ref()))
                .await?;
            return Ok(if confirmed {
                vec![OutboxChange::sent(cid)]
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
                    .read(move |c| c.outbox_item(cid))
                    .await
                    .ok()
                    .flatten()
                    .map(|i| i.attempts)
                    .unwrap_or(1);
                self.dirty = true;
                let delay = self
                    .backoff
                    .delay_for(attempts.saturating_sub(1).clamp(0, 31) as u32);
                let at = self.wall_clock.now() + delay.as_millis() as i64;
                tracing::info!(code = ?code, delay_ms = delay.as_millis() as u64, "transient request error; will retry");
                cache
                    .write(move |c| c.outbox_defer(cid, at, &error))
                    .await?;
                Ok(Vec::new())
            }
            ErrorCode::TokenExpired | ErrorCode::TokenInvalid => Err(SenderError::TokenRefused),
            _ => {
                tracing::warn!(code = ?error.code, message = %error.message, "request refused; wedged");
                let reason = WedgeReason::Refused { error };
                let stored = reason.clone();
                let wedged = cache.write(move |c| c.outbox_wedge(cid, &stored)).await?;
                Ok(if wedged {
                    self.dirty = true;
                    vec![OutboxChange::wedged(cid, reason)]
                } else {
                    Vec::new()
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "outbox_sender_tests.rs"]
mod tests;
