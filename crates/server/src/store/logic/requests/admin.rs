//! Requests of the `/admin` namespace: moderation by an account holding the admin role. The
//! role is checked here, inside the request's transaction, whatever the socket layer checked
//! at CONNECT: a role revoked while an admin is connected stops their next request.

use papo_protocol::{
    CommentAction, CommentRemoved, ErrorCode, EventBody, LogEvent, PostAction, UserAction,
};

use super::feed::delete_post;
use super::{counter, find_post, refuse, Req, TxError};
use crate::store::logic::accounts::{find_user, suspend as suspend_user, unsuspend as lift};

/// `forbidden` unless the actor holds the admin role.
pub(super) fn check_admin(q: &mut Req<'_>) -> Result<(), TxError> {
    let admin =
        q.db.query_opt(
            "SELECT admin FROM users WHERE id = $1 AND deleted_at IS NULL",
            &[q.actor.id.into()],
        )?
        .map(|r| r.int(0))
        .transpose()?;
    if admin.unwrap_or(0) == 0 {
        return refuse(ErrorCode::Forbidden, "only admins can do that");
    }
    Ok(())
}

/// `admin:remove_post`: any live post, as its author would delete it (`post.deleted`, and a
/// share leaves its original's count).
pub(super) fn remove_post(q: &mut Req<'_>, r: &PostAction) -> Result<Option<LogEvent>, TxError> {
    find_post(q.db, r.post_id)?;
    tracing::info!(admin = %q.actor.username, post = r.post_id, "moderation: post removed");
    delete_post(q, r.post_id)
}

/// `admin:remove_comment`: a comment leaves its post (`comment.removed` with the new count).
pub(super) fn remove_comment(
    q: &mut Req<'_>,
    r: &CommentAction,
) -> Result<Option<LogEvent>, TxError> {
    let Some(row) = q.db.query_opt(
        "UPDATE comments SET removed = 1 WHERE id = $1 AND removed = 0 RETURNING post_id",
        &[r.comment_id.into()],
    )?
    else {
        return refuse(ErrorCode::NotFound, format!("no comment {}", r.comment_id));
    };
    let post_id = row.int(0)?;
    let comment_count = counter(
        q.db,
        "UPDATE posts SET comment_count = comment_count - 1 WHERE id = $1 RETURNING comment_count",
        post_id,
    )?;
    tracing::info!(admin = %q.actor.username, comment = r.comment_id, "moderation: comment removed");
    q.public(EventBody::CommentRemoved(CommentRemoved {
        comment_id: r.comment_id,
        post_id,
        comment_count,
    }))
}

/// `admin:suspend`: the account's sessions end (the caller disconnects their sockets), it
/// cannot sign in, and its requests are refused. Admins cannot be suspended (revoke the role
/// first). Suspending a suspended account changes nothing.
pub(super) fn suspend(q: &mut Req<'_>, r: &UserAction) -> Result<Option<LogEvent>, TxError> {
    let user = find_user(q.db, &r.username)?;
    let admin =
        q.db.query_one("SELECT admin FROM users WHERE id = $1", &[user.id.into()])?
            .int(0)?;
    if admin != 0 {
        return refuse(
            ErrorCode::Forbidden,
            "an admin cannot be suspended: revoke the role first (papo-server revoke-admin)",
        );
    }
    q.ended_sessions = suspend_user(q.db, user.id, q.now)?;
    tracing::info!(admin = %q.actor.username, user = %user.username, sessions = q.ended_sessions.len(), "moderation: user suspended");
    Ok(None)
}

/// `admin:unsuspend`: the account may sign in again. Lifting no suspension changes nothing.
pub(super) fn unsuspend(q: &mut Req<'_>, r: &UserAction) -> Result<Option<LogEvent>, TxError> {
    let user = find_user(q.db, &r.username)?;
    if lift(q.db, user.id)? {
        tracing::info!(admin = %q.actor.username, user = %user.username, "moderation: suspension lifted");
    }
    Ok(None)
}
