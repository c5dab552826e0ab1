//! The embedded default store: one SQLite file in WAL mode.
//!
//! Writes go through one connection (SQLite has one writer anyway) inside `BEGIN IMMEDIATE`
//! transactions; reads use a few separate connections so replay never waits for writes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use papo_protocol::{
    conversation, valid_text, ChatMessage, Comment, CommentCreated, DirectMessage, ErrorCode,
    EventBody, FollowChange, LikeChange, LogEvent, Notification, NotificationKind, Post,
    PostEdited, PostRef, ReadState, Reply, ReplyResult, Request, Stream,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use super::{
    error_reply, Actor, Applied, SessionRow, Store, StoreError, StoredEvent, StreamKey, User,
    UserId,
};
use crate::error::ApiError;

/// Numbered migrations, applied in order at open; `PRAGMA user_version` records the last one.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_init.sql")];

/// How durable a commit is. `Full` survives power loss; `Normal` survives a process crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    Full,
    Normal,
}

pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
    epoch: String,
}

fn open_conn(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Applies the migrations the database has not seen yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current as usize > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "database schema version {current} is newer than this server ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let mut writer = open_conn(path, durability)?;
        migrate(&mut writer)?;
        let epoch: Option<String> = writer
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let e = Uuid::new_v4().simple().to_string();
                writer.execute(
                    "INSERT INTO meta(key, value) VALUES ('epoch', ?1)",
                    params![e],
                )?;
                e
            }
        };
        let readers = (0..3)
            .map(|_| open_conn(path, durability).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            next_reader: Default::default(),
            epoch,
        })
    }

    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }

    async fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        let conn = self.readers[i].clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
    })
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        expires_at: r.get(2)?,
    })
}

fn stored_event_row(stream: StreamKey, r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let seq: i64 = r.get(0)?;
    let at: i64 = r.get(1)?;
    let actor: Option<i64> = r.get(2)?;
    let cid: Option<String> = r.get(3)?;
    let body: String = r.get(4)?;
    let body: EventBody = serde_json::from_str(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(StoredEvent {
        event: LogEvent {
            stream: match stream {
                StreamKey::Public => Stream::Public,
                StreamKey::User(_) => Stream::Private,
            },
            seq: seq as u64,
            at,
            cid: cid.and_then(|c| Uuid::parse_str(&c).ok()),
            body,
        },
        actor,
    })
}

/// Appends one event to a stream inside the caller's transaction, numbering it.
fn append(
    tx: &rusqlite::Transaction<'_>,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    stream: StreamKey,
    actor: Option<UserId>,
    cid: Option<Uuid>,
    body: EventBody,
    now: i64,
) -> Result<LogEvent, StoreError> {
    let key = stream.db_key();
    tx.execute(
        "INSERT INTO streams(key, head) VALUES (?1, 0) ON CONFLICT(key) DO NOTHING",
        params![key],
    )?;
    let seq: i64 = tx.query_row(
        "UPDATE streams SET head = head + 1 WHERE key = ?1 RETURNING head",
        params![key],
        |r| r.get(0),
    )?;
    let body_json = serde_json::to_string(&body).map_err(|e| StoreError::Db(e.to_string()))?;
    tx.execute(
        "INSERT INTO events(stream, seq, at, actor_id, cid, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key, seq, now, actor, cid.map(|c| c.to_string()), body_json],
    )?;
    let event = LogEvent {
        stream: match stream {
            StreamKey::Public => Stream::Public,
            StreamKey::User(_) => Stream::Private,
        },
        seq: seq as u64,
        at: now,
        cid,
        body,
    };
    out.push((
        stream,
        StoredEvent {
            event: event.clone(),
            actor,
        },
    ));
    Ok(event)
}

/// Errors inside a request: either a reply-worthy refusal or a database failure.
enum TxError {
    Refused(ApiError),
    Db(StoreError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Db(e.into())
    }
}
impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Db(e)
    }
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, TxError> {
    Err(TxError::Refused(ApiError::new(code, message)))
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

fn excerpt(text: &str) -> String {
    const MAX: usize = 140;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX - 1).collect();
        s.push('…');
        s
    }
}

fn find_user(tx: &rusqlite::Transaction<'_>, username: &str) -> Result<User, TxError> {
    let user = tx
        .query_row(
            "SELECT id, username FROM users WHERE username = ?1",
            params![username],
            user_row,
        )
        .optional()?;
    match user {
        Some(u) => Ok(u),
        None => refuse(ErrorCode::NotFound, format!("no user named {username:?}")),
    }
}

/// (author id, author name, deleted) of a post.
fn find_post(tx: &rusqlite::Transaction<'_>, post_id: i64) -> Result<(UserId, String), TxError> {
    let row = tx
        .query_row(
            "SELECT p.author_id, u.username, p.deleted FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ?1",
            params![post_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
        )
        .optional()?;
    match row {
        Some((author, name, 0)) => Ok((author, name)),
        _ => refuse(ErrorCode::NotFound, format!("no post {post_id}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn notify(
    tx: &rusqlite::Transaction<'_>,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    recipient: UserId,
    actor: &Actor,
    kind: NotificationKind,
    post_id: Option<i64>,
    comment_id: Option<i64>,
    message_id: Option<i64>,
    text: Option<&str>,
    now: i64,
) -> Result<(), TxError> {
    if recipient == actor.id {
        return Ok(()); // never for my own actions
    }
    let excerpt = text.map(excerpt);
    tx.execute(
        "INSERT INTO notifications(user_id, kind, actor_id, post_id, comment_id, message_id, excerpt, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![recipient, kind.as_str(), actor.id, post_id, comment_id, message_id, excerpt, now],
    )?;
    let id = tx.last_insert_rowid();
    append(
        tx,
        out,
        StreamKey::User(recipient),
        Some(actor.id),
        None,
        EventBody::Notification(Notification {
            id,
            kind,
            actor: actor.username.clone(),
            post_id,
            comment_id,
            message_id,
            excerpt,
            at: now,
        }),
        now,
    )?;
    Ok(())
}

/// The effects of one request. Returns the event for the reply (the sender's view).
fn apply_request(
    tx: &rusqlite::Transaction<'_>,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    actor: &Actor,
    request: &Request,
    now: i64,
) -> Result<Option<LogEvent>, TxError> {
    let cid = Some(request.client_id());
    let me = Some(actor.id);
    match request {
        Request::ChatSend(r) => {
            check_text(&r.text)?;
            tx.execute(
                "INSERT INTO messages(sender_id, recipient_id, text, created_at) VALUES (?1, NULL, ?2, ?3)",
                params![actor.id, r.text, now],
            )?;
            let id = tx.last_insert_rowid();
            let body = EventBody::ChatMessage(ChatMessage {
                id,
                from: actor.username.clone(),
                text: r.text.clone(),
                at: now,
            });
            Ok(Some(append(
                tx,
                out,
                StreamKey::Public,
                me,
                cid,
                body,
                now,
            )?))
        }
        Request::DmSend(r) => {
            check_text(&r.text)?;
            let to = find_user(tx, &r.to)?;
            if to.id == actor.id {
                return refuse(
                    ErrorCode::BadRequest,
                    "cannot send a private message to yourself",
                );
            }
            tx.execute(
                "INSERT INTO messages(sender_id, recipient_id, text, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![actor.id, to.id, r.text, now],
            )?;
            let id = tx.last_insert_rowid();
            let dm = DirectMessage {
                id,
                from: actor.username.clone(),
                to: to.username.clone(),
                text: r.text.clone(),
                at: now,
            };
            let mine = append(
                tx,
                out,
                StreamKey::User(actor.id),
                me,
                cid,
                EventBody::DmMessage(dm.clone()),
                now,
            )?;
            append(
                tx,
                out,
                StreamKey::User(to.id),
                me,
                None,
                EventBody::DmMessage(dm),
                now,
            )?;
            notify(
                tx,
                out,
                to.id,
                actor,
                NotificationKind::Dm,
                None,
                None,
                Some(id),
                Some(&r.text),
                now,
            )?;
            Ok(Some(mine))
        }
        Request::PostCreate(r) => {
            check_text(&r.text)?;
            tx.execute(
                "INSERT INTO posts(author_id, text, created_at) VALUES (?1, ?2, ?3)",
                params![actor.id, r.text, now],
            )?;
            let post = Post {
                id: tx.last_insert_rowid(),
                author: actor.username.clone(),
                text: r.text.clone(),
                at: now,
                edited_at: None,
                like_count: 0,
                comment_count: 0,
            };
            Ok(Some(append(
                tx,
                out,
                StreamKey::Public,
                me,
                cid,
                EventBody::PostCreated(post),
                now,
            )?))
        }
        Request::PostEdit(r) => {
            let (author, _) = find_post(tx, r.post_id)?;
            if author != actor.id {
                return refuse(ErrorCode::Forbidden, "only the author can edit a post");
            }
            check_text(&r.text)?;
            tx.execute(
                "UPDATE posts SET text = ?1, edited_at = ?2 WHERE id = ?3",
                params![r.text, now, r.post_id],
            )?;
            let body = EventBody::PostEdited(PostEdited {
                post_id: r.post_id,
                text: r.text.clone(),
                edited_at: now,
            });
            Ok(Some(append(
                tx,
                out,
                StreamKey::Public,
                me,
                cid,
                body,
                now,
            )?))
        }
        Request::PostDelete(r) => {
            let (author, _) = find_post(tx, r.post_id)?;
            if author != actor.id {
                return refuse(ErrorCode::Forbidden, "only the author can delete a post");
            }
            tx.execute(
                "UPDATE posts SET deleted = 1 WHERE id = ?1",
                params![r.post_id],
            )?;
            let body = EventBody::PostDeleted(PostRef { post_id: r.post_id });
            Ok(Some(append(
                tx,
                out,
                StreamKey::Public,
                me,
                cid,
                body,
                now,
            )?))
        }
        Request::PostLike(r) => {
            let (author, _) = find_post(tx, r.post_id)?;
            let added = tx.execute(
                "INSERT INTO likes(post_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![r.post_id, actor.id],
            )?;
            if added == 0 {
                return Ok(None); // already liked: idempotent no-op
            }
            let like_count: i64 = tx.query_row(
                "UPDATE posts SET like_count = like_count + 1 WHERE id = ?1 RETURNING like_count",
                params![r.post_id],
                |row| row.get(0),
            )?;
            let body = EventBody::PostLiked(LikeChange {
                post_id: r.post_id,
                by: actor.username.clone(),
                like_count,
            });
            let ev = append(tx, out, StreamKey::Public, me, cid, body, now)?;
            notify(
                tx,
                out,
                author,
                actor,
                NotificationKind::Like,
                Some(r.post_id),
                None,
                None,
                None,
                now,
            )?;
            Ok(Some(ev))
        }
        Request::PostUnlike(r) => {
            find_post(tx, r.post_id)?;
            let removed = tx.execute(
                "DELETE FROM likes WHERE post_id = ?1 AND user_id = ?2",
                params![r.post_id, actor.id],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            let like_count: i64 = tx.query_row(
                "UPDATE posts SET like_count = like_count - 1 WHERE id = ?1 RETURNING like_count",
                params![r.post_id],
                |row| row.get(0),
            )?;
            let body = EventBody::PostUnliked(LikeChange {
                post_id: r.post_id,
                by: actor.username.clone(),
                like_count,
            });
            Ok(Some(append(
                tx,
                out,
                StreamKey::Public,
                me,
                cid,
                body,
                now,
            )?))
        }
        Request::CommentCreate(r) => {
            let (author, _) = find_post(tx, r.post_id)?;
            check_text(&r.text)?;
            tx.execute(
                "INSERT INTO comments(post_id, author_id, text, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![r.post_id, actor.id, r.text, now],
            )?;
            let comment_id = tx.last_insert_rowid();
            let comment_count: i64 = tx.query_row(
                "UPDATE posts SET comment_count = comment_count + 1 WHERE id = ?1 RETURNING comment_count",
                params![r.post_id],
                |row| row.get(0),
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
            let ev = append(tx, out, StreamKey::Public, me, cid, body, now)?;
            notify(
                tx,
                out,
                author,
                actor,
                NotificationKind::Comment,
                Some(r.post_id),
                Some(comment_id),
                None,
                Some(&r.text),
                now,
            )?;
            Ok(Some(ev))
        }
        Request::UserFollow(r) => {
            let target = find_user(tx, &r.username)?;
            if target.id == actor.id {
                return refuse(ErrorCode::BadRequest, "cannot follow yourself");
            }
            let added = tx.execute(
                "INSERT INTO follows(follower_id, followee_id, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![actor.id, target.id, now],
            )?;
            if added == 0 {
                return Ok(None);
            }
            let follower_count: i64 = tx.query_row(
                "UPDATE users SET follower_count = follower_count + 1 WHERE id = ?1 RETURNING follower_count",
                params![target.id],
                |row| row.get(0),
            )?;
            let body = EventBody::UserFollowed(FollowChange {
                follower: actor.username.clone(),
                followee: target.username.clone(),
                follower_count,
            });
            let ev = append(tx, out, StreamKey::Public, me, cid, body, now)?;
            notify(
                tx,
                out,
                target.id,
                actor,
                NotificationKind::Follow,
                None,
                None,
                None,
                None,
                now,
            )?;
            Ok(Some(ev))
        }
        Request::UserUnfollow(r) => {
            let target = find_user(tx, &r.username)?;
            let removed = tx.execute(
                "DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2",
                params![actor.id, target.id],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            let follower_count: i64 = tx.query_row(
                "UPDATE users SET follower_count = follower_count - 1 WHERE id = ?1 RETURNING follower_count",
                params![target.id],
                |row| row.get(0),
            )?;
            let body = EventBody::UserUnfollowed(FollowChange {
                follower: actor.username.clone(),
                followee: target.username.clone(),
                follower_count,
            });
            Ok(Some(append(
                tx,
                out,
                StreamKey::Public,
                me,
                cid,
                body,
                now,
            )?))
        }
        Request::ReadMark(r) => {
            if r.conversation != conversation::PUBLIC {
                match conversation::dm_peer(&r.conversation) {
                    Some(peer) => {
                        find_user(tx, peer)?;
                    }
                    None => {
                        return refuse(
                            ErrorCode::BadRequest,
                            "conversation must be \"public\" or \"dm:<username>\"",
                        )
                    }
                }
            }
            if r.last_read < 0 {
                return refuse(ErrorCode::BadRequest, "last_read must be >= 0");
            }
            // Read state only moves forward, so devices marking out of order converge.
            let changed = tx.execute(
                "INSERT INTO read_state(user_id, conversation, last_read) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user_id, conversation) DO UPDATE SET last_read = excluded.last_read
                 WHERE excluded.last_read > read_state.last_read",
                params![actor.id, r.conversation, r.last_read],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            let body = EventBody::ReadUpdated(ReadState {
                conversation: r.conversation.clone(),
                last_read: r.last_read,
            });
            Ok(Some(append(
                tx,
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

fn apply_sync(
    conn: &mut Connection,
    actor: &Actor,
    request: &Request,
    now: i64,
) -> Result<Applied, StoreError> {
    let cid = request.client_id();
    let event_name = request.event_name();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let previous: Option<(String, String)> = tx
        .query_row(
            "SELECT event, reply FROM requests WHERE user_id = ?1 AND cid = ?2",
            params![actor.id, cid.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((event, reply)) = previous {
        let reply = if event == event_name {
            serde_json::from_str::<Reply>(&reply).map_err(|e| StoreError::Db(e.to_string()))?
        } else {
            error_reply(
                request,
                ApiError::new(
                    ErrorCode::IdConflict,
                    format!("client id {cid} was already used for a {event} request"),
                )
                .body(),
            )
        };
        return Ok(Applied {
            reply,
            written: Vec::new(),
        });
    }

    let mut written = Vec::new();
    // A savepoint lets a refused request leave no partial effect while its refusal is still
    // recorded for idempotency in the same transaction.
    tx.execute_batch("SAVEPOINT papo_request")?;
    let reply = match apply_request(&tx, &mut written, actor, request, now) {
        Ok(event) => {
            tx.execute_batch("RELEASE papo_request")?;
            Reply::ok(
                Some(cid),
                event_name,
                ReplyResult {
                    event,
                    at: Some(now),
                },
            )
        }
        Err(TxError::Refused(e)) => {
            tx.execute_batch("ROLLBACK TO papo_request; RELEASE papo_request")?;
            written.clear();
            error_reply(request, e.body())
        }
        Err(TxError::Db(e)) => return Err(e),
    };
    let reply_json = serde_json::to_string(&reply).map_err(|e| StoreError::Db(e.to_string()))?;
    tx.execute(
        "INSERT INTO requests(user_id, cid, event, reply, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![actor.id, cid.to_string(), event_name, reply_json, now],
    )?;
    tx.commit()?;
    Ok(Applied { reply, written })
}

#[async_trait]
impl Store for SqliteStore {
    async fn epoch(&self) -> Result<String, StoreError> {
        Ok(self.epoch.clone())
    }

    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, StoreError> {
        let username = username.to_string();
        let hash = password_hash.to_string();
        self.with_writer(move |c| {
            let now = crate::now_ms();
            match c.execute(
                "INSERT INTO users(username, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![username, hash, now],
            ) {
                Ok(_) => Ok(User {
                    id: c.last_insert_rowid(),
                    username,
                }),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::UsernameTaken)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let username = username.to_string();
        self.with_reader(move |c| {
            Ok(c.query_row(
                "SELECT id, username, password_hash FROM users WHERE username = ?1",
                params![username],
                |r| Ok((user_row(r)?, r.get(2)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.with_reader(move |c| {
            Ok(c.query_row(
                "SELECT id, username FROM users WHERE id = ?1",
                params![id],
                user_row,
            )
            .optional()?)
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_string();
        self.with_reader(move |c| {
            Ok(c.query_row(
                "SELECT id, username FROM users WHERE username = ?1",
                params![username],
                user_row,
            )
            .optional()?)
        })
        .await
    }

    async fn create_session(
        &self,
        session: &SessionRow,
        refresh_hash: &str,
    ) -> Result<(), StoreError> {
        let s = session.clone();
        let h = refresh_hash.to_string();
        self.with_writer(move |c| {
            c.execute(
                "INSERT INTO sessions(id, user_id, refresh_hash, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id, s.user_id, h, s.expires_at, crate::now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let id = id.to_string();
        self.with_reader(move |c| {
            Ok(c.query_row(
                "SELECT id, user_id, expires_at FROM sessions WHERE id = ?1",
                params![id],
                session_row,
            )
            .optional()?)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old_refresh_hash: &str,
        new_refresh_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let old = old_refresh_hash.to_string();
        let new = new_refresh_hash.to_string();
        self.with_writer(move |c| {
            Ok(c.query_row(
                "UPDATE sessions SET refresh_hash = ?1, expires_at = ?2
                 WHERE refresh_hash = ?3 AND expires_at > ?4
                 RETURNING id, user_id, expires_at",
                params![new, new_expires_at, old, now],
                session_row,
            )
            .optional()?)
        })
        .await
    }

    async fn delete_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let h = refresh_hash.to_string();
        self.with_writer(move |c| {
            Ok(c.query_row(
                "DELETE FROM sessions WHERE refresh_hash = ?1 RETURNING id",
                params![h],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn apply(&self, actor: &Actor, request: &Request) -> Result<Applied, StoreError> {
        let actor = actor.clone();
        let request = request.clone();
        // The clock is read under the writer lock so that event times never go backwards
        // within a stream.
        self.with_writer(move |c| apply_sync(c, &actor, &request, crate::now_ms()))
            .await
    }

    async fn read_events(
        &self,
        stream: StreamKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.with_reader(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor_id, cid, body FROM events WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![stream.db_key(), after as i64, limit as i64],
                |r| stored_event_row(stream, r),
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn head(&self, stream: StreamKey) -> Result<u64, StoreError> {
        self.with_reader(move |c| {
            let head: Option<i64> = c
                .query_row(
                    "SELECT head FROM streams WHERE key = ?1",
                    params![stream.db_key()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(head.unwrap_or(0) as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use papo_protocol::{ChatSend, DmSend, PostAction, PostCreate};

    fn open_temp() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
        (dir, store)
    }

    async fn actor(store: &SqliteStore, name: &str) -> Actor {
        let u = store.create_user(name, "hash").await.unwrap();
        Actor {
            id: u.id,
            username: u.username,
        }
    }

    fn chat(text: &str) -> Request {
        Request::ChatSend(ChatSend {
            id: Uuid::now_v7(),
            text: text.into(),
        })
    }

    #[tokio::test]
    async fn reopening_keeps_the_epoch_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let e1 = SqliteStore::open(&path, Durability::Full)
            .unwrap()
            .epoch()
            .await
            .unwrap();
        let e2 = SqliteStore::open(&path, Durability::Full)
            .unwrap()
            .epoch()
            .await
            .unwrap();
        assert_eq!(e1, e2);
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = SqliteStore::open(&path, Durability::Full).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[tokio::test]
    async fn a_repeated_client_id_returns_the_stored_reply_and_writes_nothing() {
        let (_d, store) = open_temp();
        let ana = actor(&store, "ana").await;
        let req = chat("oi");
        let first = store.apply(&ana, &req).await.unwrap();
        assert!(first.reply.ok);
        assert_eq!(first.written.len(), 1);
        let again = store.apply(&ana, &req).await.unwrap();
        assert_eq!(again.reply, first.reply);
        assert!(again.written.is_empty());
        assert_eq!(store.head(StreamKey::Public).await.unwrap(), 1);
        // The same id from another user is a different request (ids are per user).
        let bia = actor(&store, "bia").await;
        let other = store.apply(&bia, &req).await.unwrap();
        assert!(other.reply.ok);
        assert_eq!(store.head(StreamKey::Public).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_refused_request_leaves_no_partial_write_and_is_remembered() {
        let (_d, store) = open_temp();
        let ana = actor(&store, "ana").await;
        let req = Request::DmSend(DmSend {
            id: Uuid::now_v7(),
            to: "nobody".into(),
            text: "oi".into(),
        });
        let r = store.apply(&ana, &req).await.unwrap();
        assert_eq!(r.reply.error.as_ref().unwrap().code, ErrorCode::NotFound);
        assert!(r.written.is_empty());
        let count: i64 = store
            .writer
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
        // Even once "nobody" exists, the same id keeps its first answer.
        actor(&store, "nobody").await;
        let again = store.apply(&ana, &req).await.unwrap();
        assert_eq!(again.reply, r.reply);
    }

    #[tokio::test]
    async fn sequences_stay_gap_free_under_concurrent_writers() {
        let (_d, store) = open_temp();
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            let a = actor(&store, &format!("writer{w}")).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let r = store.apply(&a, &chat(&format!("{w}-{i}"))).await.unwrap();
                    assert!(r.reply.ok);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let evs = store
            .read_events(StreamKey::Public, 0, 10_000)
            .await
            .unwrap();
        let seqs: Vec<u64> = evs.iter().map(|e| e.event.seq).collect();
        assert_eq!(seqs, (1..=320).collect::<Vec<u64>>());
        assert!(evs.windows(2).all(|w| w[0].event.at <= w[1].event.at));
        assert_eq!(store.head(StreamKey::Public).await.unwrap(), 320);
    }

    #[tokio::test]
    async fn likes_count_once_per_user_and_notify_the_author_only() {
        let (_d, store) = open_temp();
        let ana = actor(&store, "ana").await;
        let bia = actor(&store, "bia").await;
        let post = store
            .apply(
                &ana,
                &Request::PostCreate(PostCreate {
                    id: Uuid::now_v7(),
                    text: "p".into(),
                }),
            )
            .await
            .unwrap();
        let post_id = match post.reply.result.unwrap().event.unwrap().body {
            EventBody::PostCreated(p) => p.id,
            other => panic!("{other:?}"),
        };
        let like = |id| Request::PostLike(PostAction { id, post_id });
        let first = store.apply(&bia, &like(Uuid::now_v7())).await.unwrap();
        assert_eq!(
            first.written.len(),
            2,
            "the like and the author's notification"
        );
        let second = store.apply(&bia, &like(Uuid::now_v7())).await.unwrap();
        assert!(second.reply.ok && second.written.is_empty());
        let own = store.apply(&ana, &like(Uuid::now_v7())).await.unwrap();
        assert_eq!(
            own.written.len(),
            1,
            "no notification for liking my own post"
        );
        let private = store
            .read_events(StreamKey::User(ana.id), 0, 10)
            .await
            .unwrap();
        assert_eq!(private.len(), 1);
        assert!(matches!(
            &private[0].event.body,
            EventBody::Notification(n) if n.kind == NotificationKind::Like && n.actor == "bia"
        ));
    }
}
