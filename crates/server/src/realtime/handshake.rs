//! The handshake: the CONNECT `auth` checked (token, session, cursor and epoch), where replay
//! starts, and the request handlers registered before the CONNECT is answered.

use std::sync::Arc;

use papo_protocol::{connect_errors, events, ConnectAuth, Cursor};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};
use tokio::sync::watch;

use crate::auth::{Claims, TokenError};
use crate::store::{Actor, Ended, StreamKey};
use crate::App;

use super::presence::{on_typing, on_watch};
use super::requests::{on_admin_request, on_ping, on_request, on_unknown};
use super::{AdminConn, AdminRef, Conn, ConnRef};

/// Why a CONNECT was refused; its text is the `connect_error` message clients branch on.
#[derive(Debug)]
pub struct Refusal(&'static str);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
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
    let claims = verify(&app, &socket, &auth.token).await?;
    // The signature is not enough: the session must still exist (logout revokes it).
    let admin = live_session(&app, &claims).await?;
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
        admin,
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

/// The token's claims, if its signature and expiry hold.
async fn verify<A: Adapter>(
    app: &App,
    socket: &SocketRef<A>,
    token: &str,
) -> Result<Claims, Refusal> {
    let now = crate::now_ms() / 1000;
    let mut verdict = app.signer.verify(token, now);
    if verdict == Err(TokenError::UnknownKey) {
        // Maybe signed by a node that loaded a rotated key file before this one did.
        if let Some(file) = &app.key_file {
            if file.reload_on_demand(&app.signer).await {
                verdict = app.signer.verify(token, now);
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
    Ok(claims)
}

/// Whether the token's session still exists (logout revokes it) and whose it is; its account's
/// admin role. A session ended by its account's deletion or suspension is refused as such, so
/// the device knows why.
async fn live_session(app: &App, claims: &Claims) -> Result<bool, Refusal> {
    match app.store.session(&claims.sid).await {
        Ok(Some(s)) if s.session.user_id == claims.uid => Ok(s.admin),
        Ok(Some(_)) => Err(Refusal(connect_errors::TOKEN_INVALID)),
        Ok(None) => {
            let ended = app
                .store
                .ended_session(&claims.sid, crate::now_ms())
                .await
                .unwrap_or(None);
            Err(Refusal(match ended {
                Some(Ended::AccountDeleted) => connect_errors::ACCOUNT_DELETED,
                Some(Ended::AccountSuspended) => connect_errors::ACCOUNT_SUSPENDED,
                None => connect_errors::TOKEN_INVALID,
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            Err(Refusal("internal"))
        }
    }
}

/// Connect middleware of `/admin`: the token and session as on `/`, and the admin role
/// (`forbidden` without it). The `auth` payload's cursor and epoch are ignored.
pub async fn authenticate_admin<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<ConnectAuth>,
    State(app): State<App>,
) -> Result<(), Refusal> {
    let Ok(auth) = auth else {
        return Err(Refusal(connect_errors::BAD_AUTH));
    };
    let claims = verify(&app, &socket, &auth.token).await?;
    if !live_session(&app, &claims).await? {
        tracing::warn!(user = %claims.name, "admin connect refused: not an admin");
        return Err(Refusal(connect_errors::FORBIDDEN));
    }
    socket.extensions.insert(AdminRef(Arc::new(AdminConn {
        actor: Actor {
            id: claims.uid,
            username: claims.name,
        },
        session_id: claims.sid,
    })));
    // Registered before the CONNECT answer, like on `/`.
    for name in events::ADMIN_REQUESTS {
        socket.on(*name, on_admin_request);
    }
    socket.on_fallback(on_unknown);
    Ok(())
}

pub(super) async fn heads(app: &App, user: i64) -> Result<Cursor, crate::store::StoreError> {
    Ok(Cursor {
        public: app.store.head(StreamKey::Public).await?,
        private: app.store.head(StreamKey::User(user)).await?,
    })
}
