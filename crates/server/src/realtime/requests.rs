//! Requests from a socket: parsed, rate-limited, applied once by the store, and answered (as
//! the ack or a `reply` event, patiently when the buffer is full); `sys:ping`; unknown events.

use std::sync::Arc;
use std::time::Instant;

use papo_protocol::{events, ErrorCode, Reply, ReplyResult, Request};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketIo};
use uuid::Uuid;

use crate::error::ApiError;
use crate::store::Actor;
use crate::App;

use super::handshake::heads;
use super::presence::track_interest;
use super::{cut, AdminRef, ConnRef, FULL_RETRY};

/// Where a request's reply goes: the ack if the client asked for one, else a `reply` event.
///
/// Unlike socketioxide's [`AckSender`], which is spent by its first try, this can make as many
/// ack senders as it takes to get the reply into a full buffer.
pub struct Replier<A: Adapter> {
    socket: Arc<Socket<A>>,
    /// Only needed to build ack senders (their extractor ignores it); a cheap clone.
    value: Value,
    ack_id: Option<i64>,
}

impl<A: Adapter> FromMessageParts<A> for Replier<A> {
    type Error = std::convert::Infallible;
    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        value: &mut Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Ok(Replier {
            socket: socket.clone(),
            value: value.clone(),
            ack_id: *ack_id,
        })
    }
}

impl<A: Adapter> Replier<A> {
    pub(super) fn wants_ack(&self) -> bool {
        self.ack_id.is_some()
    }

    /// One attempt to put the reply in the socket's buffer.
    fn try_send(&mut self, reply: &Reply) -> Result<(), SendError> {
        if self.ack_id.is_some() {
            let ack =
                match AckSender::from_message_parts(&self.socket, &mut self.value, &self.ack_id) {
                    Ok(ack) => ack,
                    Err(never) => match never {},
                };
            ack.send(reply)
        } else {
            self.socket.emit(events::REPLY, reply)
        }
    }
}

/// Sends a reply the way the client asked: as the ack, or as a `reply` event.
///
/// A full buffer is retried for the slow-client grace period; if it is still full the socket is
/// closed, so a client never waits for a reply that will not come: it gets the reply, or loses
/// the connection and retries the same id (which has no second effect) after reconnecting.
pub(super) async fn send_reply<A: Adapter>(
    app: &App,
    socket: &SocketRef<A>,
    replier: &mut Replier<A>,
    reply: &Reply,
) {
    let deadline = Instant::now() + app.limits.slow_client_grace;
    loop {
        match replier.try_send(reply) {
            Ok(()) => return,
            Err(SendError::Socket(socketioxide::SocketError::InternalChannelFull)) => {
                if Instant::now() >= deadline {
                    tracing::warn!(sid = %socket.id, event = %reply.event, "slow client: no room for a reply, disconnecting; it retries after reconnecting");
                    cut(&app.conns, socket);
                    return;
                }
                tokio::time::sleep(FULL_RETRY).await;
            }
            Err(e) => {
                // Closed: the client retries after reconnecting.
                tracing::debug!(sid = %socket.id, error = %e, "could not send reply");
                return;
            }
        }
    }
}

/// The `id` a payload carries, read even when the rest is malformed so replies can echo it:
/// as a UUID, or (for an id that is not one) as sent, in [`Reply::raw_id`].
#[derive(Default, Clone)]
pub(super) struct ClientId {
    id: Option<Uuid>,
    raw: Option<serde_json::Value>,
}

/// Longest non-UUID id echoed back, in bytes.
pub(super) const MAX_RAW_ID: usize = 128;

pub(super) fn client_id_of(data: &serde_json::Value) -> ClientId {
    match data.get("id") {
        Some(serde_json::Value::String(s)) => match Uuid::parse_str(s) {
            Ok(id) => ClientId {
                id: Some(id),
                raw: None,
            },
            Err(_) if s.len() <= MAX_RAW_ID => ClientId {
                id: None,
                raw: Some(serde_json::Value::String(s.clone())),
            },
            Err(_) => ClientId::default(),
        },
        Some(n @ serde_json::Value::Number(_)) => ClientId {
            id: None,
            raw: Some(n.clone()),
        },
        _ => ClientId::default(),
    }
}

pub(super) fn refusal(id: &ClientId, event: &str, e: ApiError) -> Reply {
    let mut r = Reply::err(id.id, event, e.body());
    r.raw_id = id.raw.clone();
    r
}

/// Spends one request of the user's budget on this node (shared by all of the user's sockets,
/// `/admin` included).
pub(super) fn rate_limited(app: &App, user: crate::store::UserId) -> bool {
    app.requests.check(&user).is_err()
}

/// A request's payload read as the [`Request`] its event name says, or the `bad_request`
/// reply.
fn parse(
    actor: &Actor,
    id: &ClientId,
    event: &str,
    data: serde_json::Value,
) -> Result<Request, Box<Reply>> {
    serde_json::from_value(serde_json::json!({
        "event": event,
        "payload": data,
    }))
    .map_err(|e| {
        tracing::warn!(user = %actor.username, %event, error = %e, "malformed request");
        let e = ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "malformed {event} payload: {}",
                truncate(&e.to_string(), MAX_DETAIL)
            ),
        );
        Box::new(refusal(id, event, e))
    })
}

fn rate_refusal(actor: &Actor, id: &ClientId, event: &str) -> Reply {
    tracing::warn!(user = %actor.username, %event, "rate limited");
    let e = ApiError::new(
        ErrorCode::RateLimited,
        "too many requests from this user; slow down and retry",
    );
    refusal(id, event, e)
}

/// A moderation request on `/admin`: the role is checked again in its transaction.
pub(super) async fn on_admin_request<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    mut replier: Replier<A>,
    Extension(AdminRef(admin)): Extension<AdminRef>,
    State(app): State<App>,
    TryData(data): TryData<serde_json::Value>,
) {
    app.metrics.request(&event);
    let data = data.unwrap_or(serde_json::Value::Null);
    let id = client_id_of(&data);
    let actor = &admin.actor;
    if rate_limited(&app, actor.id) {
        let reply = rate_refusal(actor, &id, &event);
        return send_reply(&app, &socket, &mut replier, &reply).await;
    }
    let request = match parse(actor, &id, &event, data) {
        Ok(r) if r.is_admin() => r,
        // Only admin events are registered on /admin; anything else is not one of its own.
        Ok(_) => {
            let e = ApiError::new(ErrorCode::UnknownEvent, format!("unknown event {event:?}"));
            let reply = refusal(&id, &event, e);
            return send_reply(&app, &socket, &mut replier, &reply).await;
        }
        Err(reply) => return send_reply(&app, &socket, &mut replier, &reply).await,
    };
    let reply = match app.store.apply(actor, &request).await {
        Ok(applied) => {
            app.metrics.events_written(applied.written.len());
            app.hub.publish(applied.written);
            if let Some(kick) = app.disconnect_session.get() {
                for session in applied.ended_sessions {
                    kick(session).await;
                }
            }
            applied.reply
        }
        Err(e) => refusal(&id, &event, e.into()),
    };
    if let Some(err) = &reply.error {
        tracing::info!(admin = %actor.username, %event, code = ?err.code, "admin request refused");
    }
    send_reply(&app, &socket, &mut replier, &reply).await;
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn on_request<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    io: SocketIo<A>,
    TryData(data): TryData<serde_json::Value>,
) {
    app.metrics.request(&event);
    let data = data.unwrap_or(serde_json::Value::Null);
    let id = client_id_of(&data);
    if rate_limited(&app, conn.actor.id) {
        let reply = rate_refusal(&conn.actor, &id, &event);
        return send_reply(&app, &socket, &mut replier, &reply).await;
    }
    let request = match parse(&conn.actor, &id, &event, data) {
        Ok(r) => r,
        Err(reply) => return send_reply(&app, &socket, &mut replier, &reply).await,
    };
    let (reply, new_dm_peer) = match app.store.apply(&conn.actor, &request).await {
        Ok(applied) => {
            app.metrics.events_written(applied.written.len());
            app.hub.publish(applied.written);
            (applied.reply, applied.new_dm_peer)
        }
        Err(e) => (refusal(&id, &event, e.into()), None),
    };
    if let Some(err) = &reply.error {
        tracing::info!(user = %conn.actor.username, %event, code = ?err.code, "request refused");
    } else {
        track_interest(&app, &io, &conn, &request, new_dm_peer).await;
    }
    send_reply(&app, &socket, &mut replier, &reply).await;
}

pub(super) async fn on_ping<A: Adapter>(
    socket: SocketRef<A>,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    TryData(data): TryData<serde_json::Value>,
) {
    app.metrics.request(events::SYS_PING);
    let id = data.as_ref().map(client_id_of).unwrap_or_default();
    if rate_limited(&app, conn.actor.id) {
        // Still an answer: a liveness check only needs to hear back.
        let e = ApiError::new(ErrorCode::RateLimited, "too many requests; slow down");
        return send_reply(
            &app,
            &socket,
            &mut replier,
            &refusal(&id, events::SYS_PING, e),
        )
        .await;
    }
    // The committed heads of the caller's streams: a client whose cursor stays behind the heads
    // of an earlier ping, with no `log` arriving, is stalled and should reconnect.
    let heads = match heads(&app, conn.actor.id).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "head lookup failed; ping answered without heads");
            None
        }
    };
    let mut reply = Reply::ok(
        id.id,
        events::SYS_PING,
        ReplyResult {
            event: None,
            at: Some(crate::now_ms()),
            heads,
        },
    );
    reply.raw_id = id.raw;
    send_reply(&app, &socket, &mut replier, &reply).await;
}

pub(super) async fn on_unknown<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    mut replier: Replier<A>,
    State(app): State<App>,
    TryData(data): TryData<serde_json::Value>,
) {
    app.metrics.request(&event);
    tracing::warn!(sid = %socket.id, event = %truncate(&event, 64), "unknown event");
    let id = data.as_ref().map(client_id_of).unwrap_or_default();
    let e = ApiError::new(
        ErrorCode::UnknownEvent,
        format!("unknown event {:?}", truncate(&event, 64)),
    );
    let reply = refusal(&id, &truncate(&event, 64), e);
    send_reply(&app, &socket, &mut replier, &reply).await;
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Longest parser detail quoted in an error message, in characters. (serde quotes the
/// offending value whole: a 60 KB string in a number field would otherwise come back in a
/// reply bigger than any packet the server accepts.)
pub(super) const MAX_DETAIL: usize = 200;
