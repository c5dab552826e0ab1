//! Routing what the server sends: `log` batches into the cache (and out as change sets, log
//! events and notifications), `sync`, `reply` (to the outbox sender), presence and typing.

use super::{failed, End, Supervisor};
use crate::event::CoreEvent;
use crate::outbox::OutboxChange;
use crate::outbox_sender::OutboxSender;
use crate::policy::{self, PolicyContext};
use crate::transport::Inbound;
use papo_protocol::{
    events, EventBody, LogBatch, LogEvent, Presence, Reply, Stream, SyncState, SyncStatus, Typing,
};
use serde::Deserialize;
use tokio::time::Instant;

impl Supervisor {
    pub(super) async fn inbound(&mut self, ev: Inbound, me: &str, s: &mut Pump) -> Option<End> {
        match ev {
            Inbound::Open => None,
            Inbound::Close => Some(failed("the server closed the session")),
            Inbound::Refused(r) => Some(failed(format!("refused mid-session: {r:?}"))),
            Inbound::Error(e) => {
                tracing::debug!(error = %e, "transport error");
                None
            }
            Inbound::Event { name, data } => {
                let at = self.config.wall_clock.now();
                self.wire.lock().unwrap().received(at, &name, &data);
                self.server_event(&name, data, me, s).await
            }
        }
    }

    async fn server_event(
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
                let batch = match decode_log(data) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable log packet: resyncing");
                        return Some(failed("undecodable log packet"));
                    }
                };
                let me_owned = me.to_string();
                let out = match self
                    .cache
                    .write(move |c| c.apply_batch(&me_owned, &batch.events))
                    .await
                {
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
                let local_minute = policy::local_minute(self.config.wall_clock.now());
                for ev in out.applied {
                    // No OS notifications while filling an empty cache; once this
                    // connection reached live, every event is new (a new account's first
                    // like or DM notifies too).
                    if s.live || out.cursor_before.get(ev.stream) > 0 {
                        let ctx = PolicyContext {
                            me,
                            lang: view.lang,
                            on_screen: view.on_screen.as_deref(),
                            settings: &view.settings,
                            local_minute,
                        };
                        if let Some(n) = policy::decide(&ev.body, &ctx) {
                            self.publish(CoreEvent::Notify(n));
                        }
                    }
                    if let Some(message_id) = policy::withdrawn(&ev.body) {
                        self.publish(CoreEvent::Withdraw { message_id });
                    }
                    if ev.body != EventBody::Unknown {
                        self.publish(CoreEvent::Log(ev));
                    }
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
                let epoch = status.epoch.clone();
                let r = match status.state {
                    SyncState::Reset => self.cache.write(move |c| c.reset(&epoch)).await,
                    SyncState::Live => {
                        s.live = true;
                        let admin = status.admin;
                        self.cache
                            .write(move |c| {
                                c.set_epoch(&epoch)?;
                                c.set_admin(admin)
                            })
                            .await
                    }
                };
                if let Err(e) = r {
                    return Some(failed(format!("cache: {e}")));
                }
                self.publish(CoreEvent::Sync(status));
            }
            events::REPLY => match serde_json::from_value::<Reply>(data) {
                Ok(reply) => return self.reply(reply, me, s).await,
                Err(e) => tracing::warn!(error = %e, "undecodable reply"),
            },
            events::PRESENCE => match serde_json::from_value::<Presence>(data) {
                Ok(p) => {
                    let stored = p.clone();
                    if let Err(e) = self.cache.write(move |c| c.apply_presence(&stored)).await {
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

    async fn reply(&mut self, reply: Reply, me: &str, s: &mut Pump) -> Option<End> {
        if reply.event == events::SYS_PING {
            self.wire.lock().unwrap().pong(reply.id);
            self.check_heads(&reply, s).await;
        }
        match s.outbox.on_reply(&self.cache, me, reply).await {
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

pub(super) struct Pump {
    /// Outbox sending: next item, pacing, in flight, replies.
    pub(super) outbox: OutboxSender,
    /// The server said the replay is done (`sync` live) on this connection.
    pub(super) live: bool,
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
    pub(super) ready: bool,
    /// Set when a ping reply showed heads ahead of our cursor; cleared by any `log`.
    pub(super) stall_deadline: Option<Instant>,
}

/// A `log` packet's events. An event this build does not understand (a type, or a value such
/// as a notification kind, added to the protocol later) still holds its place in its stream:
/// it becomes [`EventBody::Unknown`], so the cursor moves past it and nothing after it waits
/// (protocol section 7). Only a packet whose events lack their stream and sequence number is
/// undecodable.
pub(crate) fn decode_log(data: serde_json::Value) -> Result<LogBatch, serde_json::Error> {
    // The common case: everything known, decoded in one pass.
    if let Ok(batch) = LogBatch::deserialize(&data) {
        return Ok(batch);
    }
    #[derive(Deserialize)]
    struct Raw {
        events: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Place {
        stream: Stream,
        seq: u64,
        #[serde(default)]
        at: papo_protocol::Millis,
    }
    let raw = Raw::deserialize(&data)?;
    let mut events = Vec::with_capacity(raw.events.len());
    for v in raw.events {
        match LogEvent::deserialize(&v) {
            Ok(ev) => events.push(ev),
            Err(e) => {
                let place = Place::deserialize(&v)?;
                tracing::info!(
                    stream = place.stream.as_str(),
                    seq = place.seq,
                    error = %e,
                    "skipping an event this client does not understand"
                );
                events.push(LogEvent {
                    stream: place.stream,
                    seq: place.seq,
                    at: place.at,
                    cid: None,
                    body: EventBody::Unknown,
                });
            }
        }
    }
    Ok(LogBatch { events })
}

#[cfg(test)]
mod decode_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_of_unknown_types_or_values_keep_their_place_and_the_rest_is_decoded() {
        let data = json!({"events": [
            {"stream": "public", "seq": 1, "at": 10, "type": "chat.message",
             "data": {"id": 1, "from": "ana", "text": "oi", "at": 10}},
            {"stream": "public", "seq": 2, "at": 11, "type": "poll.created", "data": {"q": "?"}},
            {"stream": "private", "seq": 7, "at": 12, "type": "notification",
             "data": {"id": 3, "kind": "sticker", "actor": "bia", "at": 12}},
            {"stream": "private", "seq": 8, "at": 13, "type": "read.updated",
             "data": {"conversation": "public", "last_read": 1}}
        ]});
        let batch = decode_log(data).unwrap();
        let got: Vec<_> = batch
            .events
            .iter()
            .map(|e| (e.stream, e.seq, e.body == EventBody::Unknown))
            .collect();
        assert_eq!(
            got,
            [
                (Stream::Public, 1, false),
                (Stream::Public, 2, true),
                (Stream::Private, 7, true),
                (Stream::Private, 8, false)
            ]
        );
        // Without its place an event cannot be skipped: the packet is undecodable.
        let bad = json!({"events": [{"type": "chat.message", "data": {}}]});
        assert!(decode_log(bad).is_err());
        assert!(decode_log(json!({"nope": 1})).is_err());
    }
}
