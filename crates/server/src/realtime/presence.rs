//! Presence and typing by interest: the coalesced presence broadcaster, the rooms that say who
//! receives whose presence (`p:` follows and DM peers, `w:` watches), `presence:watch`,
//! `typing`, and the snapshot a socket gets when it goes live.

use std::time::{Duration, Instant};

use papo_protocol::{
    conversation, events, ErrorCode, Presence, PresenceWatch, Reply, ReplyResult, Request, Typing,
    TypingSet, MAX_WATCH,
};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Extension, SocketRef, State, TryData};
use socketioxide::{SendError, SocketIo};

use crate::error::ApiError;
use crate::App;

use super::pump::emit_patiently;
use super::requests::{rate_limited, refusal, send_reply, truncate, ClientId, Replier, MAX_DETAIL};
use super::{user_room, Conn, ConnRef};

/// Names per `presence` packet, so that a big snapshot stays small frames (a socket keeps the
/// capacity of the largest frame it ever sent).
pub(super) const PRESENCE_CHUNK: usize = 200;

/// How often presence changes are broadcast, coalesced. A storm of reconnects then costs one
/// broadcast per window instead of one per user.
pub(super) const PRESENCE_WINDOW: Duration = Duration::from_millis(250);
/// With a shared store: how often a node proves it is alive, and how long after its last proof
/// its users stop counting as online (a node that died).
pub(super) const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(1);
pub(super) const PRESENCE_ALIVE_MS: i64 = 5_000;

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
pub(super) fn state_packet(name: &str, online: bool) -> Presence {
    let one = vec![name.to_string()];
    Presence {
        snapshot: false,
        online: if online { one.clone() } else { vec![] },
        offline: if online { vec![] } else { one },
    }
}

/// The room of the sockets that always receive `name`'s presence: every device of the users
/// who follow `name` or have a DM conversation with them.
pub(super) fn interest_room(name: &str) -> String {
    format!("p:{name}")
}

/// The room of the sockets that watch `name` with `presence:watch`.
pub(super) fn watch_room(name: &str) -> String {
    format!("w:{name}")
}

/// The sockets that show the public room and so get its `typing`.
pub(super) const PUBLIC_TYPING_ROOM: &str = "t:public";

/// The users whose presence a socket receives (its `p:` and `w:` rooms), sorted, no repeats.
pub(super) fn watched_names<A: Adapter>(socket: &SocketRef<A>) -> Vec<String> {
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
pub(super) fn state_packets(app: &App, names: &[String]) -> Vec<Presence> {
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

/// Keeps the `p:` rooms in step with follows and DMs, on every device (and node) of the users
/// concerned, and tells them the current state of a user they now receive.
pub(super) async fn track_interest<A: Adapter>(
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

pub(super) async fn gain_interest<A: Adapter>(app: &App, io: &SocketIo<A>, user: i64, name: &str) {
    if let Err(e) = io.to(user_room(user)).join(interest_room(name)).await {
        tracing::warn!(error = %e, "presence join incomplete");
    }
    let p = state_packet(name, app.hub.is_online(name));
    if let Err(e) = io.to(user_room(user)).emit(events::PRESENCE, &p).await {
        tracing::debug!(error = %e, "presence state not queued everywhere");
    }
}

/// What every ephemeral request (`presence:watch`, `typing:set`) goes through first: one
/// request of the user's rate budget, and a payload of the event's shape. Err is the refusal
/// to send back (these requests carry no client id).
fn admit<T>(
    app: &App,
    conn: &Conn,
    ev: &str,
    data: Result<T, socketioxide::ParserError>,
) -> Result<T, Box<Reply>> {
    app.metrics.request(ev);
    let none = ClientId::default();
    if rate_limited(app, conn.actor.id) {
        let e = ApiError::new(ErrorCode::RateLimited, "too many requests; slow down");
        return Err(Box::new(refusal(&none, ev, e)));
    }
    data.map_err(|e| {
        let e = ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "malformed {ev} payload: {}",
                truncate(&e.to_string(), MAX_DETAIL)
            ),
        );
        Box::new(refusal(&none, ev, e))
    })
}

/// `presence:watch`: replaces the users this connection watches (and whether it shows the
/// public room), then tells the state of the newly watched ones before answering.
pub(super) async fn on_watch<A: Adapter>(
    socket: SocketRef<A>,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    TryData(data): TryData<PresenceWatch>,
) {
    let ev = events::PRESENCE_WATCH;
    let checked = admit(&app, &conn, ev, data).and_then(|d| {
        if d.users.len() > MAX_WATCH {
            Err(format!("at most {MAX_WATCH} users may be watched"))
        } else if !d.users.iter().all(|u| papo_protocol::valid_username(u)) {
            Err("not a valid username in users".to_string())
        } else {
            Ok(d)
        }
        .map_err(|m| {
            Box::new(refusal(
                &ClientId::default(),
                ev,
                ApiError::new(ErrorCode::BadRequest, m),
            ))
        })
    });
    let data = match checked {
        Ok(d) => d,
        Err(reply) => return send_reply(&app, &socket, &mut replier, &reply).await,
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn on_typing<A: Adapter>(
    socket: SocketRef<A>,
    mut replier: Replier<A>,
    Extension(ConnRef(conn)): Extension<ConnRef>,
    State(app): State<App>,
    io: SocketIo<A>,
    TryData(data): TryData<TypingSet>,
) {
    let ev = events::TYPING_SET;
    let none = ClientId::default();
    let data = match admit(&app, &conn, ev, data) {
        Ok(d) => d,
        Err(reply) => return send_reply(&app, &socket, &mut replier, &reply).await,
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

/// Sends who of the users the socket receives is online now, in chunks: the first replaces the client's view, the others add to
/// it (as changes do). False if the client is gone or too slow.
pub(super) async fn send_presence_snapshot<A: Adapter>(app: &App, socket: &SocketRef<A>) -> bool {
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
