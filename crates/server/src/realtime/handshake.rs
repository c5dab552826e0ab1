//! The handshake: the CONNECT `auth` checked (token, session, cursor and epoch), where replay
//! starts, and the request handlers registered before the CONNECT is answered.

use std::sync::Arc;

use papo_protocol::{connect_errors, events, ConnectAuth, Cursor};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};
use tokio::sync::watch;

use crate::auth::TokenError;
use crate::store::{Actor, StreamKey};
use crate::App;

use super::presence::{on_typing, on_watch};
use super::requests::{on_ping, on_request, on_unknown};
use super::{Conn, ConnRef};

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
        Ok(Some(_)) => return Err(Refusal(connect_errors::TOKEN_INVALID)),
        Ok(None) => {
            // Gone: logged out or revoked, or its account was deleted (then the device is told,
            // so that it erases what it holds).
            let deleted = app
                .store
                .session_of_deleted_account(&claims.sid, crate::now_ms())
                .await
                .unwrap_or(false);
            return Err(Refusal(if deleted {
                connect_errors::ACCOUNT_DELETED
            } else {
                connect_errors::TOKEN_INVALID
            }));
        }
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

pub(super) async fn heads(app: &App, user: i64) -> Result<Cursor, crate::store::StoreError> {
    Ok(Cursor {
        public: app.store.head(StreamKey::Public).await?,
        private: app.store.head(StreamKey::User(user)).await?,
    })
}
