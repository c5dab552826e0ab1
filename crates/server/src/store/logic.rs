//! What the store does, written once over [`Sql`]: accounts, sessions, applying requests
//! (deduplicated, atomic), numbering events, reading the log, cluster presence. The backends
//! (SQLite, Postgres) only provide connections and transactions.

use std::future::Future;

use async_trait::async_trait;
use papo_protocol::{
    conversation, valid_text, ChatMessage, Comment, CommentCreated, DirectMessage, ErrorBody,
    ErrorCode, EventBody, FollowChange, LikeChange, LogEvent, MessageEdited, MessageRef,
    Notification, NotificationKind, Post, PostEdited, PostRef, ReadState, Reply, ReplyResult,
    Request, Stream,
};
use uuid::Uuid;

use super::sql::{Row, Sql};
use super::{
    error_reply, Actor, Applied, Rotation, SessionRow, Store, StoreError, StoredEvent, StreamKey,
    User, UserId,
};

/// A closure run against a connection on a blocking thread.
/// It may run more than once (a Postgres deadlock is retried), hence `Fn`.
pub type Job<T> = Box<dyn Fn(&mut dyn Sql) -> Result<T, StoreError> + Send>;

/// What a backend provides: connections, transactions, and news of other processes' commits.
pub trait Backend: Send + Sync + 'static {
    /// Runs `job` in a write transaction, committed if it returns Ok.
    fn write<T: Send + 'static>(
        &self,
        job: Job<T>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;
    /// Runs `job` on a read connection.
    fn read<T: Send + 'static>(
        &self,
        job: Job<T>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;
    fn epoch(&self) -> &str;
    /// Whether several server processes share this database.
    fn shared(&self) -> bool;
    /// Stream heads moved by any process, when shared (Postgres LISTEN).
    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>>;
}

/// A [`Store`] over any [`Backend`].
pub struct SqlStore<B> {
    pub backend: B,
}

fn user_of(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: r.int(0)?,
        username: r.text(1)?,
    })
}

fn session_of(r: &Row) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.text(0)?,
        user_id: r.int(1)?,
        expires_at: r.int(2)?,
    })
}

/// The session that once held this (now spent) refresh token.
fn spent_refresh_session(
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
fn delete_session(db: &mut dyn Sql, id: &str) -> Result<(), StoreError> {
    db.exec(
        "DELETE FROM used_refresh WHERE session_id = $1",
        &[id.into()],
    )?;
    db.exec("DELETE FROM sessions WHERE id = $1", &[id.into()])?;
    Ok(())
}

/// See [`Store::rotate_refresh`].
fn rotate_refresh(
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

/// Parses the stream key as stored (`public`, `u:<id>`).
pub fn parse_stream_key(key: &str) -> Option<StreamKey> {
    if key == "public" {
        return Some(StreamKey::Public);
    }
    key.strip_prefix("u:")?.parse().ok().map(StreamKey::User)
}

fn wire_stream(stream: StreamKey) -> Stream {
    match stream {
        StreamKey::Public => Stream::Public,
        StreamKey::User(_) => Stream::Private,
    }
}

fn event_of(stream: StreamKey, r: &Row) -> Result<StoredEvent, StoreError> {
    let body: EventBody = serde_json::from_str(&r.text(4)?)
        .map_err(|e| StoreError::Corrupt(format!("stored event does not parse: {e}")))?;
    Ok(StoredEvent::new(
        LogEvent {
            stream: wire_stream(stream),
            seq: r.int(0)? as u64,
            at: r.int(1)?,
            cid: r.opt_text(3)?.and_then(|c| Uuid::parse_str(&c).ok()),
            body,
        },
        r.opt_int(2)?,
    ))
}

/// Appends one event to a stream inside the caller's transaction, numbering it. The head row
/// is locked by the UPDATE until commit, so concurrent writers get consecutive numbers.
fn append(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    stream: StreamKey,
    actor: Option<UserId>,
    cid: Option<Uuid>,
    body: EventBody,
    now: i64,
) -> Result<LogEvent, StoreError> {
    let key = stream.db_key();
    db.exec(
        "INSERT INTO streams(key, head) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        &[key.clone().into()],
    )?;
    let seq = db
        .query_one(
            "UPDATE streams SET head = head + 1 WHERE key = $1 RETURNING head",
            &[key.clone().into()],
        )?
        .int(0)?;
    let body_json = serde_json::to_string(&body).map_err(|e| StoreError::Db(e.to_string()))?;
    db.exec(
        "INSERT INTO events(stream, seq, at, actor_id, cid, body) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            key.clone().into(),
            seq.into(),
            now.into(),
            actor.into(),
            cid.map(|c| c.to_string()).into(),
            body_json.into(),
        ],
    )?;
    db.announce(&key, seq as u64)?;
    let event = LogEvent {
        stream: wire_stream(stream),
        seq: seq as u64,
        at: now,
        cid,
        body,
    };
    out.push((stream, StoredEvent::new(event.clone(), actor)));
    Ok(event)
}

/// Errors inside a request: either a reply-worthy refusal or a database failure.
enum TxError {
    Refused(ErrorBody),
    Db(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Db(e)
    }
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, TxError> {
    Err(TxError::Refused(ErrorBody::new(code, message)))
}

fn check_text(text: &str) -> Result<(), TxError> {
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

fn find_user(db: &mut dyn Sql, username: &str) -> Result<User, TxError> {
    match user_named(db, username)? {
        Some(u) => Ok(u),
        None => refuse(ErrorCode::NotFound, format!("no user named {username:?}")),
    }
}

fn user_named(db: &mut dyn Sql, username: &str) -> Result<Option<User>, TxError> {
    match db.query_opt(
        "SELECT id, username FROM users WHERE username = $1",
        &[username.into()],
    )? {
        Some(r) => Ok(Some(user_of(&r)?)),
        None => Ok(None),
    }
}

/// The author of a live (not deleted) post.
fn find_post(db: &mut dyn Sql, post_id: i64) -> Result<UserId, TxError> {
    match db.query_opt(
        "SELECT author_id FROM posts WHERE id = $1 AND deleted = 0",
        &[post_id.into()],
    )? {
        Some(r) => Ok(r.int(0)?),
        None => refuse(ErrorCode::NotFound, format!("no post {post_id}")),
    }
}

/// A chat message or DM the actor may change: its streams (public, or both users'), and
/// whether it is deleted already.
struct OwnMessage {
    streams: Vec<StreamKey>,
    deleted: bool,
}

fn own_message(
    db: &mut dyn Sql,
    actor: UserId,
    message_id: i64,
    verb: &str,
) -> Result<OwnMessage, TxError> {
    let Some(row) = db.query_opt(
        "SELECT sender_id, recipient_id, deleted FROM messages WHERE id = $1",
        &[message_id.into()],
    )?
    else {
        return refuse(ErrorCode::NotFound, format!("no message {message_id}"));
    };
    let (sender, recipient) = (row.int(0)?, row.opt_int(1)?);
    if sender != actor {
        // A DM of someone else's the actor received, or a public message: not theirs; a DM
        // between two others stays unknown.
        return if recipient.is_none() || recipient == Some(actor) {
            refuse(
                ErrorCode::Forbidden,
                format!("only the sender can {verb} a message"),
            )
        } else {
            refuse(ErrorCode::NotFound, format!("no message {message_id}"))
        };
    }
    let streams = match recipient {
        None => vec![StreamKey::Public],
        Some(to) => vec![StreamKey::User(actor), StreamKey::User(to)],
    };
    Ok(OwnMessage {
        streams,
        deleted: row.int(2)? != 0,
    })
}

/// Appends `body` to each of a message's streams; the sender's copy (the first) carries the
/// client id and is the reply.
fn to_message_streams(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    streams: &[StreamKey],
    actor: UserId,
    cid: Option<Uuid>,
    body: EventBody,
    now: i64,
) -> Result<LogEvent, TxError> {
    let mut reply = None;
    for (i, stream) in streams.iter().enumerate() {
        let ev = append(
            db,
            out,
            *stream,
            Some(actor),
            if i == 0 { cid } else { None },
            body.clone(),
            now,
        )?;
        reply.get_or_insert(ev);
    }
    Ok(reply.expect("a message has at least one stream"))
}

/// What a notification is about.
#[derive(Default, Clone, Copy)]
struct About<'a> {
    post_id: Option<i64>,
    comment_id: Option<i64>,
    message_id: Option<i64>,
    text: Option<&'a str>,
}

/// Notifies each user a public text mentions ([`papo_protocol::mentions`]) that exists, once,
/// never the author, nor `skip` (who is notified of the same thing otherwise).
fn notify_mentions(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    actor: &Actor,
    about: About<'_>,
    skip: Option<UserId>,
    now: i64,
) -> Result<(), TxError> {
    let Some(text) = about.text else {
        return Ok(());
    };
    for name in papo_protocol::mentions(text) {
        match user_named(db, &name)? {
            Some(user) if Some(user.id) != skip => {
                notify(
                    db,
                    out,
                    user.id,
                    actor,
                    NotificationKind::Mention,
                    about,
                    now,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn notify(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    recipient: UserId,
    actor: &Actor,
    kind: NotificationKind,
    about: About<'_>,
    now: i64,
) -> Result<(), TxError> {
    if recipient == actor.id {
        return Ok(()); // never for my own actions
    }
    let excerpt = about.text.map(papo_protocol::excerpt);
    let id = db
        .query_one(
            "INSERT INTO notifications(user_id, kind, actor_id, post_id, comment_id, message_id, excerpt, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                recipient.into(),
                kind.as_str().into(),
                actor.id.into(),
                about.post_id.into(),
                about.comment_id.into(),
                about.message_id.into(),
                excerpt.clone().into(),
                now.into(),
            ],
        )?
        .int(0)?;
    let body = EventBody::Notification(Notification {
        id,
        kind,
        actor: actor.username.clone(),
        post_id: about.post_id,
        comment_id: about.comment_id,
        message_id: about.message_id,
        excerpt,
        at: now,
    });
    append(
        db,
        out,
        StreamKey::User(recipient),
        Some(actor.id),
        None,
        body,
        now,
    )?;
    Ok(())
}

/// Runs `UPDATE … RETURNING <counter>` and returns the counter.
fn counter(db: &mut dyn Sql, sql: &str, id: i64) -> Result<i64, TxError> {
    Ok(db.query_one(sql, &[id.into()])?.int(0)?)
}

/// The effects of one request. Returns the event for the reply (the sender's view).
fn apply_request(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    new_dm_peer: &mut Option<User>,
    actor: &Actor,
    request: &Request,
    now: i64,
) -> Result<Option<LogEvent>, TxError> {
    let cid = Some(request.client_id());
    let me = Some(actor.id);
    let public = |db: &mut dyn Sql, out: &mut Vec<_>, body| {
        append(db, out, StreamKey::Public, me, cid, body, now).map(Some)
    };
    match request {
        Request::ChatSend(r) => {
            check_text(&r.text)?;
            let id = db
                .query_one(
                    "INSERT INTO messages(sender_id, recipient_id, text, created_at) VALUES ($1, NULL, $2, $3) RETURNING id",
                    &[actor.id.into(), r.text.as_str().into(), now.into()],
                )?
                .int(0)?;
            let body = EventBody::ChatMessage(ChatMessage {
                id,
                from: actor.username.clone(),
                text: r.text.clone(),
                at: now,
            });
            let ev = public(db, out, body)?;
            let about = About {
                message_id: Some(id),
                text: Some(&r.text),
                ..About::default()
            };
            notify_mentions(db, out, actor, about, None, now)?;
            Ok(ev)
        }
        Request::DmSend(r) => {
            check_text(&r.text)?;
            let to = find_user(db, &r.to)?;
            if to.id == actor.id {
                return refuse(
                    ErrorCode::BadRequest,
                    "cannot send a private message to yourself",
                );
            }
            let id = db
                .query_one(
                    "INSERT INTO messages(sender_id, recipient_id, text, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[actor.id.into(), to.id.into(), r.text.as_str().into(), now.into()],
                )?
                .int(0)?;
            // Both sides are each other's DM peers (whose presence they receive).
            let known = db.query_opt(
                "SELECT 1 FROM dm_peers WHERE user_id = $1 AND peer_id = $2",
                &[actor.id.into(), to.id.into()],
            )?;
            if known.is_none() {
                *new_dm_peer = Some(to.clone());
            }
            for (user, peer) in [(actor.id, to.id), (to.id, actor.id)] {
                db.exec(
                    "INSERT INTO dm_peers(user_id, peer_id, last_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, peer_id) DO UPDATE SET last_at = excluded.last_at",
                    &[user.into(), peer.into(), now.into()],
                )?;
            }
            let dm = DirectMessage {
                id,
                from: actor.username.clone(),
                to: to.username.clone(),
                text: r.text.clone(),
                at: now,
            };
            let mine = append(
                db,
                out,
                StreamKey::User(actor.id),
                me,
                cid,
                EventBody::DmMessage(dm.clone()),
                now,
            )?;
            append(
                db,
                out,
                StreamKey::User(to.id),
                me,
                None,
                EventBody::DmMessage(dm),
                now,
            )?;
            let about = About {
                message_id: Some(id),
                text: Some(&r.text),
                ..About::default()
            };
            notify(db, out, to.id, actor, NotificationKind::Dm, about, now)?;
            Ok(Some(mine))
        }
        Request::PostCreate(r) => {
            check_text(&r.text)?;
            let id = db
                .query_one(
                    "INSERT INTO posts(author_id, text, created_at) VALUES ($1, $2, $3) RETURNING id",
                    &[actor.id.into(), r.text.as_str().into(), now.into()],
                )?
                .int(0)?;
            let post = Post {
                id,
                author: actor.username.clone(),
                text: r.text.clone(),
                at: now,
                edited_at: None,
                like_count: 0,
                comment_count: 0,
            };
            let ev = public(db, out, EventBody::PostCreated(post))?;
            let about = About {
                post_id: Some(id),
                text: Some(&r.text),
                ..About::default()
            };
            notify_mentions(db, out, actor, about, None, now)?;
            Ok(ev)
        }
        Request::PostEdit(r) => {
            if find_post(db, r.post_id)? != actor.id {
                return refuse(ErrorCode::Forbidden, "only the author can edit a post");
            }
            check_text(&r.text)?;
            db.exec(
                "UPDATE posts SET text = $1, edited_at = $2 WHERE id = $3",
                &[r.text.as_str().into(), now.into(), r.post_id.into()],
            )?;
            let body = EventBody::PostEdited(PostEdited {
                post_id: r.post_id,
                text: r.text.clone(),
                edited_at: now,
            });
            Ok(public(db, out, body)?)
        }
        Request::PostDelete(r) => {
            if find_post(db, r.post_id)? != actor.id {
                return refuse(ErrorCode::Forbidden, "only the author can delete a post");
            }
            db.exec(
                "UPDATE posts SET deleted = 1 WHERE id = $1",
                &[r.post_id.into()],
            )?;
            let body = EventBody::PostDeleted(PostRef { post_id: r.post_id });
            Ok(public(db, out, body)?)
        }
        Request::MessageEdit(r) => {
            let m = own_message(db, actor.id, r.message_id, "edit")?;
            if m.deleted {
                return refuse(
                    ErrorCode::NotFound,
                    format!("message {} was deleted", r.message_id),
                );
            }
            check_text(&r.text)?;
            db.exec(
                "UPDATE messages SET text = $1, edited_at = $2 WHERE id = $3",
                &[r.text.as_str().into(), now.into(), r.message_id.into()],
            )?;
            let body = EventBody::MessageEdited(MessageEdited {
                message_id: r.message_id,
                text: r.text.clone(),
                edited_at: now,
            });
            Ok(Some(to_message_streams(
                db, out, &m.streams, actor.id, cid, body, now,
            )?))
        }
        Request::MessageDelete(r) => {
            let m = own_message(db, actor.id, r.message_id, "delete")?;
            if m.deleted {
                return Ok(None); // deleted already: idempotent no-op
            }
            db.exec(
                "UPDATE messages SET text = '', deleted = 1 WHERE id = $1",
                &[r.message_id.into()],
            )?;
            // The recipient's notification of a deleted DM no longer quotes it.
            db.exec(
                "UPDATE notifications SET excerpt = NULL WHERE message_id = $1",
                &[r.message_id.into()],
            )?;
            let body = EventBody::MessageDeleted(MessageRef {
                message_id: r.message_id,
            });
            Ok(Some(to_message_streams(
                db, out, &m.streams, actor.id, cid, body, now,
            )?))
        }
        Request::PostLike(r) => {
            let author = find_post(db, r.post_id)?;
            let added = db.exec(
                "INSERT INTO likes(post_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[r.post_id.into(), actor.id.into()],
            )?;
            if added == 0 {
                return Ok(None); // already liked: idempotent no-op
            }
            let like_count = counter(
                db,
                "UPDATE posts SET like_count = like_count + 1 WHERE id = $1 RETURNING like_count",
                r.post_id,
            )?;
            let body = EventBody::PostLiked(LikeChange {
                post_id: r.post_id,
                by: actor.username.clone(),
                like_count,
            });
            let ev = public(db, out, body)?;
            let about = About {
                post_id: Some(r.post_id),
                ..About::default()
            };
            notify(db, out, author, actor, NotificationKind::Like, about, now)?;
            Ok(ev)
        }
        Request::PostUnlike(r) => {
            find_post(db, r.post_id)?;
            let removed = db.exec(
                "DELETE FROM likes WHERE post_id = $1 AND user_id = $2",
                &[r.post_id.into(), actor.id.into()],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            let like_count = counter(
                db,
                "UPDATE posts SET like_count = like_count - 1 WHERE id = $1 RETURNING like_count",
                r.post_id,
            )?;
            let body = EventBody::PostUnliked(LikeChange {
                post_id: r.post_id,
                by: actor.username.clone(),
                like_count,
            });
            Ok(public(db, out, body)?)
        }
        Request::CommentCreate(r) => {
            let author = find_post(db, r.post_id)?;
            check_text(&r.text)?;
            let comment_id = db
                .query_one(
                    "INSERT INTO comments(post_id, author_id, text, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[r.post_id.into(), actor.id.into(), r.text.as_str().into(), now.into()],
                )?
                .int(0)?;
            let comment_count = counter(
                db,
                "UPDATE posts SET comment_count = comment_count + 1 WHERE id = $1 RETURNING comment_count",
                r.post_id,
            )?;
            let body = EventBody::CommentCreated(CommentCreated {
                comment: Comment {
                    id: comment_id,
                    post_id: r.post_id,
                    author: actor.username.clone(),
                    text: r.text.clone(),
                    at: now,
                },
                comment_count,
            });
            let ev = public(db, out, body)?;
            let about = About {
                post_id: Some(r.post_id),
                comment_id: Some(comment_id),
                text: Some(&r.text),
                ..About::default()
            };
            notify(
                db,
                out,
                author,
                actor,
                NotificationKind::Comment,
                about,
                now,
            )?;
            // The post's author is told of the comment already.
            notify_mentions(db, out, actor, about, Some(author), now)?;
            Ok(ev)
        }
        Request::UserFollow(r) => {
            let target = find_user(db, &r.username)?;
            if target.id == actor.id {
                return refuse(ErrorCode::BadRequest, "cannot follow yourself");
            }
            let added = db.exec(
                "INSERT INTO follows(follower_id, followee_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[actor.id.into(), target.id.into(), now.into()],
            )?;
            if added == 0 {
                return Ok(None);
            }
            let follower_count = counter(
                db,
                "UPDATE users SET follower_count = follower_count + 1 WHERE id = $1 RETURNING follower_count",
                target.id,
            )?;
            let body = EventBody::UserFollowed(FollowChange {
                follower: actor.username.clone(),
                followee: target.username.clone(),
                follower_count,
            });
            let ev = public(db, out, body)?;
            notify(
                db,
                out,
                target.id,
                actor,
                NotificationKind::Follow,
                About::default(),
                now,
            )?;
            Ok(ev)
        }
        Request::UserUnfollow(r) => {
            let target = find_user(db, &r.username)?;
            let removed = db.exec(
                "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2",
                &[actor.id.into(), target.id.into()],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            let follower_count = counter(
                db,
                "UPDATE users SET follower_count = follower_count - 1 WHERE id = $1 RETURNING follower_count",
                target.id,
            )?;
            let body = EventBody::UserUnfollowed(FollowChange {
                follower: actor.username.clone(),
                followee: target.username.clone(),
                follower_count,
            });
            Ok(public(db, out, body)?)
        }
        Request::ReadMark(r) => {
            // The DM peer, or None for public chat.
            let peer = if r.conversation == conversation::PUBLIC {
                None
            } else {
                match conversation::dm_peer(&r.conversation) {
                    Some(peer) => {
                        let peer = find_user(db, peer)?;
                        if peer.id == actor.id {
                            return refuse(
                                ErrorCode::BadRequest,
                                "there is no conversation with yourself",
                            );
                        }
                        Some(peer.id)
                    }
                    None => {
                        return refuse(
                            ErrorCode::BadRequest,
                            "conversation must be \"public\" or \"dm:<username>\"",
                        )
                    }
                }
            };
            if r.last_read < 0 {
                return refuse(ErrorCode::BadRequest, "last_read must be >= 0");
            }
            // last_read is the id of a message of that conversation (the newest one read), or
            // 0 for none: anything else would stay in the log forever.
            if r.last_read > 0 {
                let row = db.query_opt(
                    "SELECT sender_id, recipient_id FROM messages WHERE id = $1",
                    &[r.last_read.into()],
                )?;
                let belongs = match row {
                    Some(row) => {
                        let (from, to) = (row.int(0)?, row.opt_int(1)?);
                        match peer {
                            None => to.is_none(),
                            Some(p) => {
                                (from == actor.id && to == Some(p))
                                    || (from == p && to == Some(actor.id))
                            }
                        }
                    }
                    None => false,
                };
                if !belongs {
                    return refuse(
                        ErrorCode::BadRequest,
                        format!(
                            "last_read {} is not a message of {}",
                            r.last_read, r.conversation
                        ),
                    );
                }
            }
            // Read state only moves forward, so devices marking out of order converge.
            let changed = db.exec(
                "INSERT INTO read_state(user_id, conversation, last_read) VALUES ($1, $2, $3)
                 ON CONFLICT(user_id, conversation) DO UPDATE SET last_read = excluded.last_read
                 WHERE excluded.last_read > read_state.last_read",
                &[
                    actor.id.into(),
                    r.conversation.as_str().into(),
                    r.last_read.into(),
                ],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            let body = EventBody::ReadUpdated(ReadState {
                conversation: r.conversation.clone(),
                last_read: r.last_read,
            });
            Ok(Some(append(
                db,
                out,
                StreamKey::User(actor.id),
                me,
                cid,
                body,
                now,
            )?))
        }
    }
}

/// Applies a request once per (actor, client id), inside the caller's write transaction.
///
/// The `requests` row is claimed first: with Postgres a concurrent duplicate (another node)
/// waits on that row and then sees it taken, so two nodes can never both apply the same id.
fn apply_once(
    db: &mut dyn Sql,
    actor: &Actor,
    request: &Request,
    now: i64,
) -> Result<Applied, StoreError> {
    let cid = request.client_id().to_string();
    let event_name = request.event_name();
    let claimed = db.exec(
        "INSERT INTO requests(user_id, cid, event, reply, at) VALUES ($1, $2, $3, '', $4) ON CONFLICT DO NOTHING",
        &[actor.id.into(), cid.as_str().into(), event_name.into(), now.into()],
    )?;
    if claimed == 0 {
        let prev = db.query_one(
            "SELECT event, reply FROM requests WHERE user_id = $1 AND cid = $2",
            &[actor.id.into(), cid.as_str().into()],
        )?;
        let reply = if prev.text(0)? == event_name {
            serde_json::from_str::<Reply>(&prev.text(1)?)
                .map_err(|e| StoreError::Corrupt(format!("stored reply does not parse: {e}")))?
        } else {
            let e = ErrorBody::new(
                ErrorCode::IdConflict,
                format!(
                    "client id {cid} was already used for a {} request",
                    prev.text(0)?
                ),
            );
            error_reply(request, e)
        };
        return Ok(Applied {
            reply,
            written: Vec::new(),
            new_dm_peer: None,
        });
    }

    let mut written = Vec::new();
    let mut new_dm_peer = None;
    // A savepoint lets a refused request leave no partial effect while its refusal is still
    // recorded for idempotency in the same transaction.
    db.batch("SAVEPOINT papo_request")?;
    let reply = match apply_request(db, &mut written, &mut new_dm_peer, actor, request, now) {
        Ok(event) => {
            db.batch("RELEASE SAVEPOINT papo_request")?;
            Reply::ok(
                Some(request.client_id()),
                event_name,
                ReplyResult {
                    event,
                    at: Some(now),
                    heads: None,
                },
            )
        }
        Err(TxError::Refused(e)) => {
            db.batch("ROLLBACK TO SAVEPOINT papo_request")?;
            db.batch("RELEASE SAVEPOINT papo_request")?;
            written.clear();
            new_dm_peer = None;
            error_reply(request, e)
        }
        Err(TxError::Db(e)) => return Err(e),
    };
    let reply_json = serde_json::to_string(&reply).map_err(|e| StoreError::Db(e.to_string()))?;
    db.exec(
        "UPDATE requests SET reply = $1 WHERE user_id = $2 AND cid = $3",
        &[reply_json.into(), actor.id.into(), cid.as_str().into()],
    )?;
    Ok(Applied {
        reply,
        written,
        new_dm_peer,
    })
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn epoch(&self) -> Result<String, StoreError> {
        Ok(self.backend.epoch().to_string())
    }

    fn shared(&self) -> bool {
        self.backend.shared()
    }

    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>> {
        self.backend.commits()
    }

    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, StoreError> {
        let (name, hash) = (username.to_string(), password_hash.to_string());
        let res = self
            .backend
            .write(Box::new(move |db| {
                let r = db.query_one(
                    "INSERT INTO users(username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id, username",
                    &[name.as_str().into(), hash.as_str().into(), crate::now_ms().into()],
                )?;
                user_of(&r)
            }))
            .await;
        match res {
            Err(StoreError::Unique(_)) => Err(StoreError::UsernameTaken),
            other => other,
        }
    }

    async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let name = username.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT id, username, password_hash FROM users WHERE username = $1",
                    &[name.as_str().into()],
                )?
                .map(|r| Ok((user_of(&r)?, r.text(2)?)))
                .transpose()
            }))
            .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                db.query_opt("SELECT id, username FROM users WHERE id = $1", &[id.into()])?
                    .map(|r| user_of(&r))
                    .transpose()
            }))
            .await
    }

    async fn presence_interest(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                let followed = db.query(
                    "SELECT u.username FROM follows f JOIN users u ON u.id = f.followee_id \
                     WHERE f.follower_id = $1 ORDER BY f.created_at DESC LIMIT $2",
                    &[
                        user.into(),
                        (papo_protocol::MAX_WATCH_FOLLOWED as i64).into(),
                    ],
                )?;
                let peers = db.query(
                    "SELECT u.username FROM dm_peers d JOIN users u ON u.id = d.peer_id \
                     WHERE d.user_id = $1 ORDER BY d.last_at DESC LIMIT $2",
                    &[user.into(), (papo_protocol::MAX_WATCH_PEERS as i64).into()],
                )?;
                let mut names = followed
                    .iter()
                    .chain(peers.iter())
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, _>>()?;
                names.sort();
                names.dedup();
                Ok(names)
            }))
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let name = username.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT id, username FROM users WHERE username = $1",
                    &[name.as_str().into()],
                )?
                .map(|r| user_of(&r))
                .transpose()
            }))
            .await
    }

    async fn create_session(&self, s: &SessionRow, refresh_hash: &str) -> Result<(), StoreError> {
        let (s, h) = (s.clone(), refresh_hash.to_string());
        self.backend
            .write(Box::new(move |db| {
                let now = crate::now_ms();
                // The user's sessions that ran out go when they sign in again, with their spent
                // tokens, so neither table grows with abandoned devices.
                let expired = db.query(
                    "SELECT id FROM sessions WHERE user_id = $1 AND expires_at <= $2",
                    &[s.user_id.into(), now.into()],
                )?;
                for r in expired {
                    delete_session(db, &r.text(0)?)?;
                }
                db.exec(
                    "INSERT INTO sessions(id, user_id, refresh_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[s.id.as_str().into(), s.user_id.into(), h.as_str().into(), s.expires_at.into(), now.into()],
                )?;
                Ok(())
            }))
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let id = id.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT id, user_id, expires_at FROM sessions WHERE id = $1",
                    &[id.as_str().into()],
                )?
                .map(|r| session_of(&r))
                .transpose()
            }))
            .await
    }

    async fn rotate_refresh(
        &self,
        old_refresh_hash: &str,
        new_refresh_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (old_refresh_hash.to_string(), new_refresh_hash.to_string());
        self.backend
            .write(Box::new(move |db| {
                rotate_refresh(db, &old, &new, new_expires_at, now)
            }))
            .await
    }

    async fn delete_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let h = refresh_hash.to_string();
        self.backend
            .write(Box::new(move |db| {
                let current = db
                    .query_opt(
                        "SELECT id FROM sessions WHERE refresh_hash = $1",
                        &[h.as_str().into()],
                    )?
                    .map(|r| r.text(0))
                    .transpose()?;
                let id = match current {
                    Some(id) => id,
                    None => match spent_refresh_session(db, &h)? {
                        Some(id) => id,
                        None => return Ok(None),
                    },
                };
                delete_session(db, &id)?;
                Ok(Some(id))
            }))
            .await
    }

    async fn apply(&self, actor: &Actor, request: &Request) -> Result<Applied, StoreError> {
        let (actor, request) = (actor.clone(), request.clone());
        // The clock is read inside the transaction so that event times follow commit order
        // within a stream as closely as the clock allows.
        self.backend
            .write(Box::new(move |db| {
                apply_once(db, &actor, &request, crate::now_ms())
            }))
            .await
    }

    async fn read_events(
        &self,
        stream: StreamKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                db.query(
                    "SELECT seq, at, actor_id, cid, body FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[stream.db_key().into(), (after as i64).into(), (limit as i64).into()],
                )?
                .iter()
                .map(|r| event_of(stream, r))
                .collect()
            }))
            .await
    }

    async fn head(&self, stream: StreamKey) -> Result<u64, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                Ok(db
                    .query_opt(
                        "SELECT head FROM streams WHERE key = $1",
                        &[stream.db_key().into()],
                    )?
                    .map(|r| r.int(0))
                    .transpose()?
                    .unwrap_or(0) as u64)
            }))
            .await
    }

    async fn sync_presence(
        &self,
        node: &str,
        changes: Vec<(String, i64)>,
        alive_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let node = node.to_string();
        self.backend
            .write(Box::new(move |db| {
                let now = crate::now_ms();
                db.exec(
                    "INSERT INTO nodes(id, seen_at) VALUES ($1, $2) ON CONFLICT(id) DO UPDATE SET seen_at = excluded.seen_at",
                    &[node.as_str().into(), now.into()],
                )?;
                for (username, devices) in &changes {
                    if *devices > 0 {
                        db.exec(
                            "INSERT INTO presence(node_id, username, devices) VALUES ($1, $2, $3)
                             ON CONFLICT(node_id, username) DO UPDATE SET devices = excluded.devices",
                            &[node.as_str().into(), username.as_str().into(), (*devices).into()],
                        )?;
                    } else {
                        db.exec(
                            "DELETE FROM presence WHERE node_id = $1 AND username = $2",
                            &[node.as_str().into(), username.as_str().into()],
                        )?;
                    }
                }
                // Forget nodes that stopped beating long ago (their users went offline when
                // they stopped counting as alive).
                db.exec(
                    "DELETE FROM presence WHERE node_id IN (SELECT id FROM nodes WHERE seen_at < $1)",
                    &[(now - 10 * alive_ms).into()],
                )?;
                db.exec("DELETE FROM nodes WHERE seen_at < $1", &[(now - 10 * alive_ms).into()])?;
                db.query(
                    "SELECT DISTINCT p.username FROM presence p JOIN nodes n ON n.id = p.node_id
                     WHERE n.seen_at >= $1 ORDER BY p.username",
                    &[(now - alive_ms).into()],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect()
            }))
            .await
    }
}
