//! The Socket.IO side: handshake auth, request handling, and one delivery pump per socket.
//!
//! Delivery never goes through broadcasts for durable events. Each socket has a pump task that
//! owns its cursor and sends whatever lies between the cursor and the stream heads, reading from
//! the hub's cache or the database. Replay after a reconnect and live delivery are therefore the
//! same loop: there is no seam where an event could be skipped or sent twice, and a slow client
//! simply falls behind in the log and catches up (or is disconnected and resumes by cursor).

use std::sync::Arc;
use std::time::{Duration, Instant};

use papo_protocol::{
    connect_errors, conversation, events, ConnectAuth, Cursor, ErrorCode, Presence, PresenceWatch,
    Reply, ReplyResult, Request, Stream, SyncState, SyncStatus, Typing, TypingSet, MAX_WATCH,
};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::TransportType;
use socketioxide::{SendError, SocketIo};
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth::TokenError;
use crate::error::ApiError;
use crate::hub::StreamState;
use crate::store::{Actor, StoredEvent, StreamKey};
use crate::App;

/// Events read from the log at a time.
const BATCH: usize = 500;
/// Target size of one `log` packet. A socket's write buffer keeps the capacity of the largest
/// frame it ever sent, so a few large replay frames would cost memory for the socket's whole
/// life; many small frames cost almost nothing more to send.
const PACKET_BYTES: usize = 16 * 1024;
/// Names per `presence` packet, for the same reason (a snapshot of everyone online can be big).
const PRESENCE_CHUNK: usize = 200;

/// Per-connection state, kept in the socket's extensions.
pub struct Conn {
    pub actor: Actor,
    pub session_id: String,
    start: Cursor,
    reset: bool,
    closed: watch::Sender<bool>,
    /// Set when a presence change could not be queued for this socket (its buffer was full):
    /// the pump then sends a fresh snapshot once it can.
    presence_stale: tokio::sync::Notify,
}

/// Extension wrapper (extensions need `Clone`).
#[derive(Clone)]
pub struct ConnRef(pub Arc<Conn>);

/// Why a CONNECT was refused; its text is the `connect_error` message clients branch on.
#[derive(Debug)]
pub struct Refusal(&'static str);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

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
    fn wants_ack(&self) -> bool {
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

/// How often presence changes are broadcast, coalesced. A storm of reconnects then costs one
/// broadcast per window instead of one per user.
const PRESENCE_WINDOW: Duration = Duration::from_millis(250);
/// With a shared store: how often a node proves it is alive, and how long after its last proof
/// its users stop counting as online (a node that died).
const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(1);
const PRESENCE_ALIVE_MS: i64 = 5_000;

/// Starts the presence broadcaster. (The namespace itself is registered by the caller, which
/// knows the adapter: `io.ns("/", on_connect.with(authenticate))`.)
pub fn install<A: Adapter>(io: &SocketIo<A>, app: &App) {
    let io = io.clone();
    let app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRESENCE_WINDOW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sync: Option<Instant> = None;
        loop {
            tick.tick().await;
            let changes = app.hub.take_presence_changes();
            let online = if app.store.shared() {
                // Several nodes: this node's counts go to the database, which also says who
                // is online anywhere (on nodes that beat recently).
                let due = last_sync.is_none_or(|t| t.elapsed() >= PRESENCE_HEARTBEAT);
                if changes.is_empty() && !due {
                    continue;
                }
                last_sync = Some(Instant::now());
                match app
                    .store
                    .sync_presence(&app.node_id, changes.clone(), PRESENCE_ALIVE_MS)
                    .await
                {
                    Ok(online) => online,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence sync failed; will retry");
                        app.hub.requeue_presence_changes(changes);
                        continue;
                    }
                }
            } else {
                if changes.is_empty() {
                    continue;
                }
                app.hub.online()
            };
            let (online, offline) = app.hub.set_global_online(online);
            // Every node computes the same change and tells its own sockets that receive the
            // user's presence (the rooms of that user), one packet per user: what a socket
            // gets grows with whom it follows, talks to and watches, not with everyone online.
            let changes = online
                .into_iter()
                .map(|n| (n, true))
                .chain(offline.into_iter().map(|n| (n, false)));
            for (name, on) in changes {
                let p = state_packet(&name, on);
                let rooms = vec![interest_room(&name), watch_room(&name)];
                if let Err(e) = io
                    .local()
                    .to(rooms.clone())
                    .emit(events::PRESENCE, &p)
                    .await
                {
                    // Some sockets had a full buffer; which ones the error does not say. A
                    // change is a state, not a delta, so sending it again to the sockets with
                    // room is harmless; those still full get a snapshot from their pump later.
                    tracing::debug!(error = %e, "presence broadcast incomplete");
                    for socket in io.local().to(rooms).sockets() {
                        if let Err(SendError::Socket(
                            socketioxide::SocketError::InternalChannelFull,
                        )) = socket.emit(events::PRESENCE, &p)
                        {
                            if let Some(ConnRef(conn)) = socket.extensions.get::<ConnRef>() {
                                conn.presence_stale.notify_one();
                            }
                        }
                    }
                }
            }
        }
    });
}

/// A presence change of one user.
fn state_packet(name: &str, online: bool) -> Presence {
    let one = vec![name.to_string()];
    Presence {
        snapshot: false,
        online: if online { one.clone() } else { vec![] },
        offline: if online { vec![] } else { one },
    }
}

/// The room of the sockets that always receive `name`'s presence: every device of the users
/// who follow `name` or have a DM conversation with them.
fn interest_room(name: &str) -> String {
    format!("p:{name}")
}

/// The room of the sockets that watch `name` with `presence:watch`.
fn watch_room(name: &str) -> String {
    format!("w:{name}")
}

/// The sockets that show the public room and so get its `typing`.
const PUBLIC_TYPING_ROOM: &str = "t:public";

/// The users whose presence a socket receives (its `p:` and `w:` rooms), sorted, no repeats.
fn watched_names<A: Adapter>(socket: &SocketRef<A>) -> Vec<String> {
    let mut names: Vec<String> = socket
        .rooms()
        .iter()
        .filter_map(|r| r.strip_prefix("p:").or_else(|| r.strip_prefix("w:")))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Presence packets telling the state of `names`, at most PRESENCE_CHUNK names each.
fn state_packets(app: &App, names: &[String]) -> Vec<Presence> {
    names
        .chunks(PRESENCE_CHUNK)
        .map(|chunk| {
            let (online, offline) = chunk.iter().cloned().partition(|n| app.hub.is_online(n));
            Presence {
                snapshot: false,
                online,
                offline,
            }
        })
        .collect()
}

/// Connect middleware: checks the token and the session, and works out where replay starts.
pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<ConnectAuth>,
    State(app): State<App>,
) -> Result<(), Refusal> {
    let Ok(auth) = auth else {
        tracing::info!(sid = %socket.id, "connect refused: bad auth payload");
        return Err(Refusal(connect_errors::BAD_AUTH));
    };
    let now = crate::now_ms() / 1000;
    let mut verdict = app.signer.verify(&auth.token, now);
    if verdict == Err(TokenError::UnknownKey) {
        // Maybe signed by a node that loaded a rotated key file before this one did.
        if let Some(file) = &app.key_file {
            if file.reload_on_demand(&app.signer).await {
                verdict = app.signer.verify(&auth.token, now);
            }
        }
    }
    let claims = match verdict {
        Ok(c) => c,
        Err(TokenError::Expired) => return Err(Refusal(connect_errors::TOKEN_EXPIRED)),
        // A retired key: the client refreshes (its refresh token decides), like for an expiry.
        Err(TokenError::UnknownKey) => {
            tracing::info!(sid = %socket.id, "connect refused: token of a key not held (rotated)");
            return Err(Refusal(connect_errors::TOKEN_EXPIRED));
        }
        Err(TokenError::Invalid) => {
            tracing::info!(sid = %socket.id, "connect refused: invalid token");
            return Err(Refusal(connect_errors::TOKEN_INVALID));
        }
    };
    // The signature is not enough: the session must still exist (logout revokes it).
    match app.store.session(&claims.sid).await {
        Ok(Some(s)) if s.user_id == claims.uid => {}
        Ok(_) => return Err(Refusal(connect_errors::TOKEN_INVALID)),
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            return Err(Refusal("internal"));
        }
    }
    let heads = match heads(&app, claims.uid).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "head lookup failed");
            return Err(Refusal("internal"));
        }
    };
    let (start, reset) = match (auth.cursor, auth.epoch.as_deref()) {
        (None, _) => (Cursor::default(), false),
        (Some(c), Some(epoch))
            if epoch == app.epoch && c.public <= heads.public && c.private <= heads.private =>
        {
            (c, false)
        }
        // Another epoch, no epoch, or a cursor ahead of the log (database reset): start over.
        (Some(_), _) => (Cursor::default(), true),
    };
    let conn = Conn {
        actor: Actor {
            id: claims.uid,
            username: claims.name,
        },
        session_id: claims.sid,
        start,
        reset,
        closed: watch::Sender::new(false),
        presence_stale: tokio::sync::Notify::new(),
    };
    socket.extensions.insert(ConnRef(Arc::new(conn)));
    // The request handlers are registered here, before the CONNECT answer goes out:
    // socketioxide answers CONNECT first and runs `on_connect` in a task of its own, so a
    // request the client sends right after the answer could find no handler yet and be
    // dropped without a reply (seen as a first send stuck until its timeout).
    for name in events::REQUESTS {
        match *name {
            events::TYPING_SET => socket.on(*name, on_typing),
            events::PRESENCE_WATCH => socket.on(*name, on_watch),
            events::SYS_PING => socket.on(*name, on_ping),
            _ => socket.on(*name, on_request),
        }
    }
    socket.on_fallback(on_unknown);
    Ok(())
}

async fn heads(app: &App, user: i64) -> Result<Cursor, crate::store::StoreError> {
    Ok(Cursor {
        public: app.store.head(StreamKey::Public).await?,
        private: app.store.head(StreamKey::User(user)).await?,
    })
}

pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(app): State<App>) {
    let Some(ConnRef(conn)) = socket.extensions.get::<ConnRef>() else {
        tracing::error!(sid = %socket.id, "socket connected without authentication");
        let _ = socket.disconnect();
        return;
    };
    tracing::info!(user = %conn.actor.username, sid = %socket.id, "connected");
    socket.join(user_room(conn.actor.id));
    socket.join(session_room(&conn.session_id));

    // The request handlers were registered by `authenticate`, before the CONNECT answer.
    socket.on_disconnect(on_disconnect);

    let private = app.hub.attach_user(conn.actor.id);
    // Every count change is recorded (the shared store keeps per-node device counts).
    app.hub.presence_join(&conn.actor.username);
    app.hub.presence_changed(&conn.actor.username);
    tokio::spawn(pump(socket.clone(), app, conn, private));
}

async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    reason: DisconnectReason,
    State(app): State<App>,
) {
    let Some(ConnRef(conn)) = socket.extensions.get::<ConnRef>() else {
        return;
    };
    tracing::info!(user = %conn.actor.username, sid = %socket.id, ?reason, "disconnected");
    app.conns.forget(&socket.id.to_string());
    conn.closed.send_replace(true);
    app.hub.detach_user(conn.actor.id);
    app.hub.presence_leave(&conn.actor.username);
    app.hub.presence_changed(&conn.actor.username);
}

pub fn user_room(user: i64) -> String {
    format!("u:{user}")
}

pub fn session_room(session: &str) -> String {
    format!("s:{session}")
}

/// How often a full buffer is retried.
const FULL_RETRY: Duration = Duration::from_millis(10);

/// Closes a socket for real, even when its buffer is full (then `disconnect()` closes nothing).
///
/// A WebSocket's TCP connection is cut (see [`crate::transport`]): the client sees the transport
/// close and reconnects with its cursor. A polling session gets a Socket.IO DISCONNECT as soon
/// as its buffer has room; one that stops polling is closed by the engine.io heartbeat, which
/// fails when the buffer stays full.
pub fn cut<A: Adapter>(conns: &crate::transport::Conns, socket: &SocketRef<A>) {
    let sid = socket.id.to_string();
    let kill = conns.get(&sid).or_else(|| {
        // Opened directly as a WebSocket: the handshake request's own connection carries it.
        (socket.transport_type() == TransportType::Websocket)
            .then(|| {
                socket
                    .req_parts()
                    .extensions
                    .get::<axum::extract::ConnectInfo<crate::transport::ConnInfo>>()
                    .map(|c| c.0.kill.clone())
            })
            .flatten()
    });
    if let Some(kill) = kill {
        tracing::debug!(%sid, "cutting the connection");
        kill.kill();
        return;
    }
    let socket = socket.clone();
    tokio::spawn(async move {
        while socket.connected() {
            match socket.clone().disconnect() {
                Err(socketioxide::SocketError::InternalChannelFull) => {
                    tokio::time::sleep(FULL_RETRY * 5).await
                }
                _ => return,
            }
        }
    });
}

/// Sends a reply the way the client asked: as the ack, or as a `reply` event.
///
/// A full buffer is retried for the slow-client grace period; if it is still full the socket is
/// closed, so a client never waits for a reply that will not come: it gets the reply, or loses
/// the connection and retries the same id (which has no second effect) after reconnecting.
async fn send_reply<A: Adapter>(
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
struct ClientId {
    id: Option<Uuid>,
    raw: Option<serde_json::Value>,
}

/// Longest non-UUID id echoed back, in bytes.
const MAX_RAW_ID: usize = 128;

fn client_id_of(data: &serde_json::Value) -> ClientId {
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

fn refusal(id: &ClientId, event: &str, e: ApiError) -> Reply {
    let mut r = Reply::err(id.id, event, e.body());
    r.raw_id = id.raw.clone();
    r
}

/// Spends one request of the user's budget on this node (shared by all of the user's sockets).
fn rate_limited(app: &App, conn: &Conn) -> bool {
    app.requests.check(&conn.actor.id).is_err()
}

#[allow(clippy::too_many_arguments)]
async fn on_request<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    io: SocketIo<A>,
    TryData(data): TryData<serde_json::Value>,
) {
    let data = data.unwrap_or(serde_json::Value::Null);
    let id = client_id_of(&data);
    if rate_limited(&app, &conn) {
        tracing::warn!(user = %conn.actor.username, %event, "rate limited");
        let e = ApiError::new(
            ErrorCode::RateLimited,
            "too many requests from this user; slow down and retry",
        );
        return send_reply(&app, &socket, &mut replier, &refusal(&id, &event, e)).await;
    }
    let request: Request = match serde_json::from_value(serde_json::json!({
        "event": event,
        "payload": data,
    })) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(user = %conn.actor.username, %event, error = %e, "malformed request");
            let e = ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "malformed {event} payload: {}",
                    truncate(&e.to_string(), MAX_DETAIL)
                ),
            );
            return send_reply(&app, &socket, &mut replier, &refusal(&id, &event, e)).await;
        }
    };
    let (reply, new_dm_peer) = match app.store.apply(&conn.actor, &request).await {
        Ok(applied) => {
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

/// Keeps the `p:` rooms in step with follows and DMs, on every device (and node) of the users
/// concerned, and tells them the current state of a user they now receive.
async fn track_interest<A: Adapter>(
    app: &App,
    io: &SocketIo<A>,
    conn: &Conn,
    request: &Request,
    new_dm_peer: Option<crate::store::User>,
) {
    let me = &conn.actor;
    match request {
        Request::UserFollow(r) => gain_interest(app, io, me.id, &r.username).await,
        // Only the first DM between two users changes anything (later ones find both joined).
        Request::DmSend(_) => {
            if let Some(peer) = new_dm_peer {
                gain_interest(app, io, me.id, &peer.username).await;
                gain_interest(app, io, peer.id, &me.username).await;
            }
        }
        Request::UserUnfollow(r) => match app.store.presence_interest(me.id).await {
            // Still a DM peer: keep receiving.
            Ok(still) if still.contains(&r.username) => {}
            Ok(_) => {
                let leave = io.to(user_room(me.id)).leave(interest_room(&r.username));
                if let Err(e) = leave.await {
                    tracing::warn!(error = %e, "presence leave incomplete");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "interest lookup failed; presence leaves at the next connect")
            }
        },
        _ => {}
    }
}

async fn gain_interest<A: Adapter>(app: &App, io: &SocketIo<A>, user: i64, name: &str) {
    if let Err(e) = io.to(user_room(user)).join(interest_room(name)).await {
        tracing::warn!(error = %e, "presence join incomplete");
    }
    let p = state_packet(name, app.hub.is_online(name));
    if let Err(e) = io.to(user_room(user)).emit(events::PRESENCE, &p).await {
        tracing::debug!(error = %e, "presence state not queued everywhere");
    }
}

/// `presence:watch`: replaces the users this connection watches (and whether it shows the
/// public room), then tells the state of the newly watched ones before answering.
async fn on_watch<A: Adapter>(
    socket: SocketRef<A>,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    TryData(data): TryData<PresenceWatch>,
) {
    let ev = events::PRESENCE_WATCH;
    let none = ClientId::default();
    if rate_limited(&app, &conn) {
        let e = ApiError::new(ErrorCode::RateLimited, "too many requests; slow down");
        return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
    }
    let data = match data {
        Ok(d) if d.users.len() > MAX_WATCH => {
            let e = ApiError::new(
                ErrorCode::BadRequest,
                format!("at most {MAX_WATCH} users may be watched"),
            );
            return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
        }
        Ok(d) if !d.users.iter().all(|u| papo_protocol::valid_username(u)) => {
            let e = ApiError::new(ErrorCode::BadRequest, "not a valid username in users");
            return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
        }
        Ok(d) => d,
        Err(e) => {
            let e = ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "malformed {ev} payload: {}",
                    truncate(&e.to_string(), MAX_DETAIL)
                ),
            );
            return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
        }
    };
    let want: std::collections::BTreeSet<String> = data.users.into_iter().collect();
    let have: std::collections::BTreeSet<String> = socket
        .rooms()
        .iter()
        .filter_map(|r| r.strip_prefix("w:").map(str::to_string))
        .collect();
    let gone: Vec<String> = have.difference(&want).map(|n| watch_room(n)).collect();
    let added: Vec<String> = want.difference(&have).cloned().collect();
    socket.leave(gone);
    socket.join(added.iter().map(|n| watch_room(n)).collect::<Vec<_>>());
    if data.public_typing {
        socket.join(PUBLIC_TYPING_ROOM);
    } else {
        socket.leave(PUBLIC_TYPING_ROOM);
    }
    for p in state_packets(&app, &added) {
        if !emit_patiently(&app, &socket, events::PRESENCE, &p).await {
            return;
        }
    }
    if replier.wants_ack() {
        let reply = Reply::ok(None, ev, ReplyResult::default());
        send_reply(&app, &socket, &mut replier, &reply).await;
    }
}

async fn on_ping<A: Adapter>(
    socket: SocketRef<A>,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    TryData(data): TryData<serde_json::Value>,
) {
    let id = data.as_ref().map(client_id_of).unwrap_or_default();
    if rate_limited(&app, &conn) {
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

#[allow(clippy::too_many_arguments)]
async fn on_typing<A: Adapter>(
    socket: SocketRef<A>,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    io: SocketIo<A>,
    TryData(data): TryData<TypingSet>,
) {
    let ev = events::TYPING_SET;
    let none = ClientId::default();
    if rate_limited(&app, &conn) {
        let e = ApiError::new(ErrorCode::RateLimited, "too many requests; slow down");
        return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
    }
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            let e = ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "malformed {ev} payload: {}",
                    truncate(&e.to_string(), MAX_DETAIL)
                ),
            );
            return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
        }
    };
    let me = &conn.actor.username;
    let result = if data.conversation == conversation::PUBLIC {
        let t = Typing {
            conversation: conversation::PUBLIC.to_string(),
            username: me.clone(),
            typing: data.typing,
        };
        io.to(PUBLIC_TYPING_ROOM)
            .except(user_room(conn.actor.id))
            .emit(events::TYPING, &t)
            .await
            .map_err(|e| e.to_string())
    } else if let Some(peer) = conversation::dm_peer(&data.conversation) {
        match app.store.user_by_name(peer).await {
            Ok(Some(user)) if user.id != conn.actor.id => {
                let t = Typing {
                    conversation: conversation::dm(me),
                    username: me.clone(),
                    typing: data.typing,
                };
                io.to(user_room(user.id))
                    .emit(events::TYPING, &t)
                    .await
                    .map_err(|e| e.to_string())
            }
            Ok(_) => {
                let e = ApiError::new(ErrorCode::NotFound, format!("no user named {peer:?}"));
                return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
            }
            Err(e) => {
                return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e.into()))
                    .await;
            }
        }
    } else {
        let e = ApiError::new(
            ErrorCode::BadRequest,
            "conversation must be \"public\" or \"dm:<username>\"",
        );
        return send_reply(&app, &socket, &mut replier, &refusal(&none, ev, e)).await;
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "typing broadcast incomplete");
    }
    // Typing is fire-and-forget: only answer when an ack was asked for.
    if replier.wants_ack() {
        let reply = Reply::ok(None, ev, ReplyResult::default());
        send_reply(&app, &socket, &mut replier, &reply).await;
    }
}

async fn on_unknown<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    mut replier: Replier<A>,
    State(app): State<App>,
    TryData(data): TryData<serde_json::Value>,
) {
    tracing::warn!(sid = %socket.id, event = %truncate(&event, 64), "unknown event");
    let id = data.as_ref().map(client_id_of).unwrap_or_default();
    let e = ApiError::new(
        ErrorCode::UnknownEvent,
        format!("unknown event {:?}", truncate(&event, 64)),
    );
    let reply = refusal(&id, &truncate(&event, 64), e);
    send_reply(&app, &socket, &mut replier, &reply).await;
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Longest parser detail quoted in an error message, in characters. (serde quotes the
/// offending value whole: a 60 KB string in a number field would otherwise come back in a
/// reply bigger than any packet the server accepts.)
const MAX_DETAIL: usize = 200;

/// Reads `after+1 ..= upto` (at most `limit`) of a stream, from the cache when it can.
async fn fetch(
    app: &App,
    state: &StreamState,
    key: StreamKey,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<Arc<StoredEvent>>, crate::store::StoreError> {
    if upto <= after {
        return Ok(Vec::new());
    }
    if let Some(cached) = state.cached_range(after, upto, limit) {
        return Ok(cached);
    }
    let want = ((upto - after) as usize).min(limit);
    let rows = app.store.read_events(key, after, want).await?;
    Ok(rows.into_iter().map(Arc::new).collect())
}

/// An event's JSON as one reader gets it: the shared encoding every socket is sent (encoded once
/// per event, not once per socket), or, for its author's devices, one with the client id.
enum Encoded {
    Shared(Arc<StoredEvent>),
    Own(Box<serde_json::value::RawValue>),
}

impl Encoded {
    fn for_reader(ev: Arc<StoredEvent>, reader: i64) -> Self {
        if ev.shows_cid_to(reader) {
            Encoded::Own(ev.json_for(reader))
        } else {
            Encoded::Shared(ev)
        }
    }

    fn raw(&self) -> &serde_json::value::RawValue {
        match self {
            Encoded::Shared(ev) => ev.shared_json(),
            Encoded::Own(raw) => raw,
        }
    }

    /// Length of the JSON, escapes included.
    fn len(&self) -> usize {
        self.raw().get().len()
    }
}

impl serde::Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(s)
    }
}

/// A `log` payload ([`papo_protocol::LogBatch`] on the wire) made of already encoded events.
#[derive(serde::Serialize)]
struct RawBatch<'a> {
    events: &'a [Encoded],
}

/// Merges two stream-ordered lists by time without ever reordering within a stream.
fn merge(reader: i64, a: Vec<Arc<StoredEvent>>, b: Vec<Arc<StoredEvent>>) -> Vec<Encoded> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.event.at <= y.event.at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        if let Some(e) = next {
            out.push(Encoded::for_reader(e, reader));
        }
    }
    out
}

/// `{"events":[` and `]}` around a batch.
const BATCH_OVERHEAD: usize = 13;

/// Splits events into packets whose `log` payload JSON is at most [`PACKET_BYTES`] (an event
/// bigger than that goes alone), measured on the encoded JSON.
fn packets(events: Vec<Encoded>) -> Vec<Vec<Encoded>> {
    let mut out: Vec<Vec<Encoded>> = Vec::new();
    let mut size = 0;
    for ev in events {
        let n = ev.len();
        match out.last_mut() {
            // +1 for the comma before it.
            Some(cur) if size + 1 + n <= PACKET_BYTES => {
                size += 1 + n;
                cur.push(ev);
            }
            _ => {
                size = BATCH_OVERHEAD + n;
                out.push(vec![ev]);
            }
        }
    }
    out
}

/// Emits, waiting for a full socket buffer to drain; false if the client is gone or too slow.
async fn emit_patiently<A: Adapter, T: serde::Serialize + ?Sized>(
    app: &App,
    socket: &SocketRef<A>,
    event: &str,
    data: &T,
) -> bool {
    let deadline = Instant::now() + app.limits.slow_client_grace;
    loop {
        match socket.emit(event, data) {
            Ok(()) => return true,
            Err(SendError::Socket(socketioxide::SocketError::InternalChannelFull)) => {
                if Instant::now() >= deadline {
                    tracing::warn!(sid = %socket.id, "slow client: buffer full for too long, disconnecting; it resumes by cursor");
                    cut(&app.conns, socket);
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::debug!(sid = %socket.id, error = %e, "emit failed");
                return false;
            }
        }
    }
}

/// Sends who of the users the socket receives is online now, in chunks: the first replaces the client's view, the others add to
/// it (as changes do). False if the client is gone or too slow.
async fn send_presence_snapshot<A: Adapter>(app: &App, socket: &SocketRef<A>) -> bool {
    let online: Vec<String> = watched_names(socket)
        .into_iter()
        .filter(|n| app.hub.is_online(n))
        .collect();
    let mut chunks = online.chunks(PRESENCE_CHUNK).peekable();
    let first = chunks.next().map(<[String]>::to_vec).unwrap_or_default();
    let mut packets = vec![Presence {
        snapshot: true,
        online: first,
        offline: vec![],
    }];
    packets.extend(chunks.map(|c| Presence {
        snapshot: false,
        online: c.to_vec(),
        offline: vec![],
    }));
    for p in &packets {
        if !emit_patiently(app, socket, events::PRESENCE, p).await {
            return false;
        }
    }
    true
}

/// Delivers the socket's two streams from its cursor onwards, forever, in order.
async fn pump<A: Adapter>(
    socket: SocketRef<A>,
    app: App,
    conn: Arc<Conn>,
    private: Arc<StreamState>,
) {
    let public = app.hub.public();
    let user = conn.actor.id;
    let mut closed = conn.closed.subscribe();
    // Subscribe first, then read the database heads: anything committed after the read also
    // moves a head we are watching, so nothing falls between the two.
    let mut pub_rx = public.subscribe();
    let mut me_rx = private.subscribe();
    let db_heads = match heads(&app, user).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot read heads; dropping the connection");
            cut(&app.conns, &socket);
            return;
        }
    };
    // The users whose presence every device of this user receives, before the snapshot.
    match app.store.presence_interest(user).await {
        Ok(names) => socket.join(names.iter().map(|n| interest_room(n)).collect::<Vec<_>>()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read whom the user follows; dropping the connection");
            cut(&app.conns, &socket);
            return;
        }
    }
    let mut cursor = conn.start;
    let mut target = Cursor {
        public: db_heads.public.max(*pub_rx.borrow_and_update()),
        private: db_heads.private.max(*me_rx.borrow_and_update()),
    };
    if conn.reset {
        let status = SyncStatus {
            state: SyncState::Reset,
            epoch: app.epoch.clone(),
            heads: target,
        };
        if !emit_patiently(&app, &socket, events::SYNC, &status).await {
            return;
        }
    }
    let mut live = false;
    loop {
        while cursor.public < target.public || cursor.private < target.private {
            if *closed.borrow() {
                return;
            }
            let pubs = fetch(
                &app,
                &public,
                StreamKey::Public,
                cursor.public,
                target.public,
                BATCH,
            );
            let privs = fetch(
                &app,
                &private,
                StreamKey::User(user),
                cursor.private,
                target.private,
                BATCH,
            );
            let (pubs, privs) = match tokio::try_join!(pubs, privs) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the log; dropping the connection");
                    cut(&app.conns, &socket);
                    return;
                }
            };
            if let Some(last) = pubs.last() {
                cursor.set(Stream::Public, last.event.seq);
            }
            if let Some(last) = privs.last() {
                cursor.set(Stream::Private, last.event.seq);
            }
            for events in packets(merge(user, pubs, privs)) {
                let batch = RawBatch { events: &events };
                if !emit_patiently(&app, &socket, events::LOG, &batch).await {
                    return;
                }
            }
            target.public = target.public.max(*pub_rx.borrow_and_update());
            target.private = target.private.max(*me_rx.borrow_and_update());
        }
        if !live {
            live = true;
            let status = SyncStatus {
                state: SyncState::Live,
                epoch: app.epoch.clone(),
                heads: cursor,
            };
            if !emit_patiently(&app, &socket, events::SYNC, &status).await {
                return;
            }
            if !send_presence_snapshot(&app, &socket).await {
                return;
            }
        }
        if *closed.borrow() {
            return;
        }
        tokio::select! {
            r = pub_rx.changed() => if r.is_err() { return },
            r = me_rx.changed() => if r.is_err() { return },
            r = closed.changed() => if r.is_err() || *closed.borrow() { return },
            () = conn.presence_stale.notified() => {
                if live && !send_presence_snapshot(&app, &socket).await {
                    return;
                }
            }
        }
        target.public = target.public.max(*pub_rx.borrow_and_update());
        target.private = target.private.max(*me_rx.borrow_and_update());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use papo_protocol::{LogBatch, LogEvent};

    fn chat(seq: u64, len: usize) -> LogEvent {
        LogEvent {
            stream: Stream::Public,
            seq,
            at: 0,
            cid: None,
            body: papo_protocol::EventBody::ChatMessage(papo_protocol::ChatMessage {
                id: seq as i64,
                from: "ana".into(),
                text: "x".repeat(len),
                at: 0,
            }),
        }
    }

    fn encoded(evs: &[LogEvent]) -> Vec<Encoded> {
        evs.iter()
            .map(|e| Encoded::Shared(Arc::new(StoredEvent::new(e.clone(), None))))
            .collect()
    }

    fn seqs(ps: &[Vec<Encoded>]) -> Vec<u64> {
        ps.iter()
            .flatten()
            .map(|e| serde_json::from_str::<LogEvent>(e.raw().get()).unwrap().seq)
            .collect()
    }

    fn batch_len(p: &[Encoded]) -> usize {
        serde_json::to_vec(&RawBatch { events: p }).unwrap().len()
    }

    #[test]
    fn packets_stay_small_and_keep_order() {
        let evs: Vec<LogEvent> = (1..=300).map(|i| chat(i, 100)).collect();
        let ps = packets(encoded(&evs));
        assert!(ps.len() > 1);
        for p in &ps {
            let bytes = batch_len(p);
            assert!(bytes <= PACKET_BYTES, "{bytes}");
        }
        assert_eq!(seqs(&ps), (1..=300).collect::<Vec<u64>>());
        // A single event larger than a packet is sent alone.
        let big = packets(encoded(&[chat(1, 10), chat(2, 40_000), chat(3, 10)]));
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    fn chat_text(seq: u64, text: String) -> LogEvent {
        let mut ev = chat(seq, 0);
        if let papo_protocol::EventBody::ChatMessage(m) = &mut ev.body {
            m.text = text;
        }
        ev
    }

    #[test]
    fn packets_are_sized_by_their_encoded_json() {
        // Texts that JSON escapes: quotes, backslashes, control characters (6 bytes each as
        // \u00XX), plus non-ASCII (several bytes each, not escaped). 4000 characters of
        // control characters are 24 KB of JSON.
        let nasty: Vec<String> = vec![
            "\"\\".repeat(2000),
            "\u{1}\u{1f}\n\t".repeat(1000),
            "\u{1}".repeat(4000),
            "olá \"mundo\" \\ \u{7f}\u{2028} 😀".repeat(200),
            "x".repeat(100),
        ];
        let evs: Vec<LogEvent> = (1..=200)
            .map(|i| chat_text(i, nasty[i as usize % nasty.len()].clone()))
            .collect();
        let ps = packets(encoded(&evs));
        for p in &ps {
            let bytes = batch_len(p);
            if p.len() > 1 {
                assert!(bytes <= PACKET_BYTES, "{} events in {bytes} bytes", p.len());
            } else {
                // Alone: the largest possible event still fits what the server accepts.
                assert!(bytes < 64 * 1024, "{bytes}");
            }
        }
        assert_eq!(seqs(&ps), (1..=200).collect::<Vec<u64>>());
        // Small events still share packets.
        let small = packets(encoded(
            &(1..=100)
                .map(|i| chat_text(i, "oi".into()))
                .collect::<Vec<_>>(),
        ));
        assert!(small.len() < 10, "{}", small.len());
        // The size is exact: a batch is its events, commas and the overhead, no more.
        for p in &ps {
            let sum: usize = p.iter().map(Encoded::len).sum();
            assert_eq!(batch_len(p), BATCH_OVERHEAD + sum + p.len() - 1);
        }
    }

    /// Encoding once changes nothing on the wire: a batch of shared encodings is byte for byte
    /// the `LogBatch` the reader would have got by encoding its own copies, the client id shown
    /// to its author only.
    #[test]
    fn shared_encodings_are_the_wire_format_with_the_cid_for_the_author_only() {
        let cid = Uuid::new_v4();
        let author = 7;
        let mut own = chat(1, 5);
        own.cid = Some(cid);
        let stored = vec![
            Arc::new(StoredEvent::new(own.clone(), Some(author))),
            Arc::new(StoredEvent::new(
                chat_text(2, "\"olá\"\u{1}".into()),
                Some(8),
            )),
        ];
        for reader in [author, 8, 9] {
            let mine = merge(reader, stored.clone(), Vec::new());
            let want: Vec<LogEvent> = stored.iter().map(|e| e.for_reader(reader)).collect();
            assert_eq!(
                serde_json::to_string(&RawBatch { events: &mine }).unwrap(),
                serde_json::to_string(&LogBatch { events: want }).unwrap(),
                "reader {reader}"
            );
        }
        let author_view = serde_json::to_string(&RawBatch {
            events: &merge(author, stored.clone(), Vec::new()),
        })
        .unwrap();
        assert!(author_view.contains(&cid.to_string()));
        let other_view = serde_json::to_string(&RawBatch {
            events: &merge(9, stored.clone(), Vec::new()),
        })
        .unwrap();
        assert!(!other_view.contains(&cid.to_string()));
        // The shared encoding is made once and reused.
        let a = stored[1].shared_json() as *const _;
        let b = stored[1].shared_json() as *const _;
        assert_eq!(a, b);
    }
}
