//! Accounts and device sessions: rows as users and sessions, refresh-token rotation.

use papo_protocol::ErrorCode;

use super::requests::{refuse, TxError};
use crate::store::sql::{Row, Sql};
use crate::store::{Rotation, SessionRow, StoreError, User};

pub(super) fn user_of(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: r.int(0)?,
        username: r.text(1)?,
    })
}

pub(super) fn session_of(r: &Row) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.text(0)?,
        user_id: r.int(1)?,
        expires_at: r.int(2)?,
    })
}

/// The session that once held this (now spent) refresh token.
pub(super) fn spent_refresh_session(
    db: &mut dyn Sql,
    refresh_hash: &str,
) -> Result<Option<String>, StoreError> {
    db.query_opt(
        "SELECT session_id FROM used_refresh WHERE refresh_hash = $1",
        &[refresh_hash.into()],
    )?
    .map(|r| r.text(0))
    .transpose()
}

/// Deletes a session with every refresh token it ever had.
pub(super) fn delete_session(db: &mut dyn Sql, id: &str) -> Result<(), StoreError> {
    db.exec(
        "DELETE FROM used_refresh WHERE session_id = $1",
        &[id.into()],
    )?;
    db.exec("DELETE FROM sessions WHERE id = $1", &[id.into()])?;
    Ok(())
}

/// See [`Store::rotate_refresh`].
pub(super) fn rotate_refresh(
    db: &mut dyn Sql,
    old: &str,
    new: &str,
    new_expires_at: i64,
    now: i64,
) -> Result<Rotation, StoreError> {
    let current = db
        .query_opt(
            "SELECT id, user_id, expires_at FROM sessions WHERE refresh_hash = $1",
            &[old.into()],
        )?
        .map(|r| session_of(&r))
        .transpose()?;
    if let Some(s) = current {
        if s.expires_at <= now {
            return Ok(Rotation::Unknown);
        }
        // Conditional on the old hash: of two concurrent refreshes with the same token (Postgres,
        // read committed), the second changes nothing here and is then seen as a reuse below.
        let changed = db.exec(
            "UPDATE sessions SET refresh_hash = $1, expires_at = $2 WHERE id = $3 AND refresh_hash = $4",
            &[new.into(), new_expires_at.into(), s.id.as_str().into(), old.into()],
        )?;
        if changed == 1 {
            // Spent tokens are kept until they would have expired; older ones are dropped here.
            db.exec(
                "DELETE FROM used_refresh WHERE session_id = $1 AND expires_at <= $2",
                &[s.id.as_str().into(), now.into()],
            )?;
            db.exec(
                "INSERT INTO used_refresh(refresh_hash, session_id, expires_at) VALUES ($1, $2, $3)",
                &[old.into(), s.id.as_str().into(), s.expires_at.into()],
            )?;
            return Ok(Rotation::Rotated(SessionRow {
                expires_at: new_expires_at,
                ..s
            }));
        }
    }
    match spent_refresh_session(db, old)? {
        Some(session_id) => {
            delete_session(db, &session_id)?;
            Ok(Rotation::Reused { session_id })
        }
        None => Ok(Rotation::Unknown),
    }
}

pub(super) fn find_user(db: &mut dyn Sql, username: &str) -> Result<User, TxError> {
    match user_named(db, username)? {
        Some(u) => Ok(u),
        None => refuse(ErrorCode::NotFound, format!("no user named {username:?}")),
    }
}

pub(super) fn user_named(db: &mut dyn Sql, username: &str) -> Result<Option<User>, TxError> {
    match db.query_opt(
        "SELECT id, username FROM users WHERE username = $1",
        &[username.into()],
    )? {
        Some(r) => Ok(Some(user_of(&r)?)),
        None => Ok(None),
    }
}
