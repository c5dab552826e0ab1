//! What each request does inside its transaction, by area; [`apply_request`] dispatches.

mod admin;
mod feed;
mod messages;
mod notify;

use papo_protocol::{valid_text, ErrorBody, ErrorCode, EventBody, LogEvent, Request};
use uuid::Uuid;

use super::event_log::append;
use crate::store::sql::Sql;
use crate::store::{Actor, StoreError, StoredEvent, StreamKey, User, UserId};

/// Errors inside a request: either a reply-worthy refusal or a database failure.
pub(super) enum TxError {
    Refused(ErrorBody),
    Db(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Db(e)
    }
}

pub(super) fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, TxError> {
    Err(TxError::Refused(ErrorBody::new(code, message)))
}

pub(super) fn check_text(text: &str) -> Result<(), TxError> {
    if valid_text(text) {
        Ok(())
    } else {
        refuse(
            ErrorCode::InvalidText,
            format!(
                "text must be non-blank and at most {} characters",
                papo_protocol::MAX_TEXT_CHARS
            ),
        )
    }
}

/// The author of a live (not deleted) post.
pub(super) struct PostAuthor {
    pub(super) id: UserId,
    /// Whether the account still exists: a deleted account's posts stay (and still get likes
    /// and comments), but nobody is notified for it.
    pub(super) live: bool,
}

/// The author of a live (not deleted) post.
pub(super) fn find_post(db: &mut dyn Sql, post_id: i64) -> Result<PostAuthor, TxError> {
    match db.query_opt(
        "SELECT p.author_id, u.deleted_at FROM posts p JOIN users u ON u.id = p.author_id \
         WHERE p.id = $1 AND p.deleted = 0",
        &[post_id.into()],
    )? {
        Some(r) => Ok(PostAuthor {
            id: r.int(0)?,
            live: r.opt_int(1)?.is_none(),
        }),
        None => refuse(ErrorCode::NotFound, format!("no post {post_id}")),
    }
}

/// Runs `UPDATE … RETURNING <counter>` and returns the counter.
pub(super) fn counter(db: &mut dyn Sql, sql: &str, id: i64) -> Result<i64, TxError> {
    Ok(db.query_one(sql, &[id.into()])?.int(0)?)
}

/// One request being applied: its transaction, the events it writes, who acts, and when.
pub(super) struct Req<'a> {
    pub(super) db: &'a mut dyn Sql,
    pub(super) out: &'a mut Vec<(StreamKey, StoredEvent)>,
    pub(super) actor: &'a Actor,
    pub(super) cid: Option<Uuid>,
    pub(super) now: i64,
    /// A DM that made its sender and recipient DM peers for the first time.
    pub(super) new_dm_peer: Option<User>,
    /// Device sessions ended (a suspension).
    pub(super) ended_sessions: Vec<String>,
}

impl Req<'_> {
    /// Appends an event to the public stream, with the request's client id.
    fn public(&mut self, body: EventBody) -> Result<Option<LogEvent>, TxError> {
        let ev = append(
            self.db,
            self.out,
            StreamKey::Public,
            Some(self.actor.id),
            self.cid,
            body,
            self.now,
        )?;
        Ok(Some(ev))
    }
}

/// The effects of one request. Returns the event for the reply (the sender's view).
pub(super) fn apply_request(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    new_dm_peer: &mut Option<User>,
    ended_sessions: &mut Vec<String>,
    actor: &Actor,
    request: &Request,
    now: i64,
) -> Result<Option<LogEvent>, TxError> {
    let mut q = Req {
        db,
        out,
        actor,
        cid: Some(request.client_id()),
        now,
        new_dm_peer: None,
        ended_sessions: Vec::new(),
    };
    if request.is_admin() {
        admin::check_admin(&mut q)?;
    }
    let ev = match request {
        Request::ChatSend(r) => messages::chat_send(&mut q, r),
        Request::DmSend(r) => messages::dm_send(&mut q, r),
        Request::PostCreate(r) => feed::post_create(&mut q, r),
        Request::PostEdit(r) => feed::post_edit(&mut q, r),
        Request::PostDelete(r) => feed::post_delete(&mut q, r),
        Request::MessageEdit(r) => messages::message_edit(&mut q, r),
        Request::MessageDelete(r) => messages::message_delete(&mut q, r),
        Request::PostLike(r) => feed::post_like(&mut q, r),
        Request::PostUnlike(r) => feed::post_unlike(&mut q, r),
        Request::PostShare(r) => feed::post_share(&mut q, r),
        Request::PostUnshare(r) => feed::post_unshare(&mut q, r),
        Request::CommentCreate(r) => feed::comment_create(&mut q, r),
        Request::UserFollow(r) => feed::user_follow(&mut q, r),
        Request::UserUnfollow(r) => feed::user_unfollow(&mut q, r),
        Request::ReadMark(r) => messages::read_mark(&mut q, r),
        Request::AdminRemovePost(r) => admin::remove_post(&mut q, r),
        Request::AdminRemoveComment(r) => admin::remove_comment(&mut q, r),
        Request::AdminSuspend(r) => admin::suspend(&mut q, r),
        Request::AdminUnsuspend(r) => admin::unsuspend(&mut q, r),
    }?;
    *new_dm_peer = q.new_dm_peer;
    *ended_sessions = q.ended_sessions;
    Ok(ev)
}
