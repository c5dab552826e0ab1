//! Accounts and device sessions: rows as users and sessions, refresh-token rotation.

use papo_protocol::{ErrorCode, EventBody, FollowChange};

use super::event_log::append;
use super::requests::{refuse, TxError};
use crate::store::sql::{Row, Sql, Val};
use crate::store::{AccountDeleted, Ended, Rotation, SessionRow, StoreError, StreamKey, User};

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

/// `ended_sessions.reason` as stored.
pub(super) fn ended_reason(reason: &str) -> Result<Ended, StoreError> {
    match reason {
        "deleted" => Ok(Ended::AccountDeleted),
        "suspended" => Ok(Ended::AccountSuspended),
        other => Err(StoreError::Corrupt(format!(
            "unknown reason {other:?} in ended_sessions"
        ))),
    }
}

/// Why [`end_sessions`] ends them.
enum Reason {
    Deleted,
    Suspended,
}

/// Ends every session of `user` for `reason`, remembering them in
/// `ended_sessions` until their refresh tokens would have expired; returns their ids.
fn end_sessions(
    db: &mut dyn Sql,
    user: i64,
    reason: Reason,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    db.exec(
        "DELETE FROM ended_sessions WHERE expires_at <= $1",
        &[now.into()],
    )?;
    // Written into the statement: one of two fixed words, never input.
    let reason = match reason {
        Reason::Deleted => "deleted",
        Reason::Suspended => "suspended",
    };
    db.exec(
        &format!(
            "INSERT INTO ended_sessions(id, refresh_hash, expires_at, reason, user_id) \
             SELECT id, refresh_hash, expires_at, '{reason}', user_id FROM sessions \
             WHERE user_id = $1 AND expires_at > $2"
        ),
        &[user.into(), now.into()],
    )?;
    let sessions = db
        .query(
            "SELECT id FROM sessions WHERE user_id = $1 ORDER BY id",
            &[user.into()],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>, _>>()?;
    for id in &sessions {
        delete_session(db, id)?;
    }
    Ok(sessions)
}

/// Suspends `user` (not an admin: the caller checks): its sessions end, and it cannot sign
/// in until [`unsuspend`]. Returns the sessions ended (none when it already was suspended).
pub(super) fn suspend(db: &mut dyn Sql, user: i64, now: i64) -> Result<Vec<String>, StoreError> {
    let marked = db.exec(
        "UPDATE users SET suspended_at = $2 WHERE id = $1 AND suspended_at IS NULL",
        &[user.into(), now.into()],
    )?;
    if marked == 0 {
        return Ok(Vec::new());
    }
    end_sessions(db, user, Reason::Suspended, now)
}

/// Lifts a suspension: the account may sign in again (its old sessions stay ended, and its
/// devices are now told `token_invalid` instead of `account_suspended`). Whether it was
/// suspended.
pub(super) fn unsuspend(db: &mut dyn Sql, user: i64) -> Result<bool, StoreError> {
    let lifted = db.exec(
        "UPDATE users SET suspended_at = NULL WHERE id = $1 AND suspended_at IS NOT NULL",
        &[user.into()],
    )?;
    db.exec(
        "DELETE FROM ended_sessions WHERE user_id = $1 AND reason = 'suspended'",
        &[user.into()],
    )?;
    Ok(lifted == 1)
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
        None => {
            let ended = db.query_opt(
                "SELECT reason FROM ended_sessions WHERE refresh_hash = $1 AND expires_at > $2",
                &[old.into(), now.into()],
            )?;
            Ok(match ended {
                Some(r) => Rotation::Ended(ended_reason(&r.text(0)?)?),
                None => Rotation::Unknown,
            })
        }
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
        "SELECT id, username FROM users WHERE username = $1 AND deleted_at IS NULL",
        &[username.into()],
    )? {
        Some(r) => Ok(Some(user_of(&r)?)),
        None => Ok(None),
    }
}

/// See [`crate::store::Store::delete_account`]: in one transaction, the account's sessions
/// end, its follows in both directions are undone (one `user.unfollowed` event each, so every
/// follower count stays right), its private data goes, and the row is marked deleted (the name
/// stays taken; what it wrote in public keeps its author).
pub(super) fn delete_account(
    db: &mut dyn Sql,
    user: &User,
    now: i64,
) -> Result<AccountDeleted, StoreError> {
    // First, so that it holds the row's lock: a session being opened concurrently either
    // committed before (and is found below) or finds the account deleted.
    let marked = db.exec(
        "UPDATE users SET deleted_at = $2, password_hash = '' WHERE id = $1 AND deleted_at IS NULL",
        &[user.id.into(), now.into()],
    )?;
    if marked == 0 {
        return Ok(AccountDeleted::default());
    }
    // Its devices that were away learn of the deletion when they come back (account_deleted,
    // from a refresh or a connect), until their refresh token would have expired anyway.
    let sessions = end_sessions(db, user.id, Reason::Deleted, now)?;
    // A suspended account's devices, told so until now, are now told it is gone.
    db.exec(
        "UPDATE ended_sessions SET reason = 'deleted' WHERE user_id = $1",
        &[user.id.into()],
    )?;
    // Whom it followed, then who followed it: each follow undone, counted and announced.
    let mut written = Vec::new();
    for (other_side, this_side) in [
        ("followee_id", "follower_id"),
        ("follower_id", "followee_id"),
    ] {
        let others = db.query(
            &format!(
                "SELECT u.id, u.username FROM follows f JOIN users u ON u.id = f.{other_side} \
                 WHERE f.{this_side} = $1 ORDER BY u.id"
            ),
            &[user.id.into()],
        )?;
        for r in others {
            let other = user_of(&r)?;
            let (follower, followee) = if this_side == "follower_id" {
                (user, &other)
            } else {
                (&other, user)
            };
            let follower_count = unfollow(db, follower.id, followee.id)?;
            let body = EventBody::UserUnfollowed(FollowChange {
                follower: follower.username.clone(),
                followee: followee.username.clone(),
                follower_count,
            });
            append(
                db,
                &mut written,
                StreamKey::Public,
                Some(user.id),
                None,
                body,
                now,
            )?;
        }
    }
    let id: Val = user.id.into();
    db.exec(
        "DELETE FROM dm_peers WHERE user_id = $1 OR peer_id = $1",
        std::slice::from_ref(&id),
    )?;
    for table in ["notifications", "read_state", "requests"] {
        db.exec(
            &format!("DELETE FROM {table} WHERE user_id = $1"),
            std::slice::from_ref(&id),
        )?;
    }
    db.exec(
        "DELETE FROM events WHERE stream = $1",
        &[StreamKey::User(user.id).db_key().into()],
    )?;
    Ok(AccountDeleted { sessions, written })
}

/// Removes one follow and returns the followee's follower count after it.
fn unfollow(db: &mut dyn Sql, follower: i64, followee: i64) -> Result<i64, StoreError> {
    db.exec(
        "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2",
        &[follower.into(), followee.into()],
    )?;
    db.query_one(
        "UPDATE users SET follower_count = follower_count - 1 WHERE id = $1 RETURNING follower_count",
        &[followee.into()],
    )?
    .int(0)
}
