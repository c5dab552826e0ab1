//! The Socket.IO side: handshake auth, request handling, and one delivery pump per socket.
//!
//! Delivery never goes through broadcasts for durable events. Each socket has a pump task that
//! owns its cursor and sends whatever lies between the cursor and the stream heads, reading from
//! the hub's cache or the database. Replay after a reconnect and live delivery are therefore the
//! same loop: there is no seam where an event could be skipped or sent twice, and a slow client
//! simply falls behind in the log and catches up (or is disconnected and resumes by cursor).

mod admin;
mod handshake;
mod presence;
mod pump;
mod requests;

use std::sync::Arc;
use std::time::Duration;

use papo_protocol::Cursor;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State};
use socketioxide::socket::DisconnectReason;
use socketioxide::TransportType;
use tokio::sync::watch;

use crate::store::Actor;
use crate::App;

use pump::pump;

pub use admin::{install as install_admin, on_admin_connect};
pub use handshake::{authenticate, authenticate_admin, Refusal};
pub use presence::install;

/// Per-connection state, kept in the socket's extensions.
pub struct Conn {
    pub actor: Actor,
    /// The account held the admin role when this socket connected (told in `sync`).
    pub admin: bool,
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

/// An `/admin` socket's state.
pub struct AdminConn {
    pub actor: Actor,
    pub session_id: String,
}

/// Extension wrapper of [`AdminConn`].
#[derive(Clone)]
pub struct AdminRef(pub Arc<AdminConn>);

pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(app): State<App>) {
    let Some(ConnRef(conn)) = socket.extensions.get::<ConnRef>() else {
        tracing::error!(sid = %socket.id, "socket connected without authentication");
        let _ = socket.disconnect();
        return;
    };
    tracing::info!(user = %conn.actor.username, sid = %socket.id, "connected");
    socket.join(user_room(conn.actor.id));
    socket.join(session_room(&conn.session_id));
    app.metrics.connected();

    // The request handlers were registered by `authenticate`, before the CONNECT answer.
    socket.on_disconnect(on_disconnect);

    let private = app.hub.attach_user(conn.actor.id);
    // Every count change is recorded (the shared store keeps per-node device counts).
    app.hub.presence_join(&conn.actor.username);
    app.hub.presence_changed(&conn.actor.username);
    tokio::spawn(pump(socket.clone(), app, conn, private));
}

pub(super) async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    reason: DisconnectReason,
    State(app): State<App>,
) {
    let Some(ConnRef(conn)) = socket.extensions.get::<ConnRef>() else {
        return;
    };
    tracing::info!(user = %conn.actor.username, sid = %socket.id, ?reason, "disconnected");
    app.conns.forget(&socket.id.to_string());
    app.metrics.disconnected();
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
pub(super) const FULL_RETRY: Duration = Duration::from_millis(10);

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
