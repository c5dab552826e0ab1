//! The cache's row types, how they map from SQL, and the small SQL helpers every writer of the
//! cache file shares (the cursor, the conversation list's last message).
//!
//! This module depends on nothing else in the crate: [`crate::unread`], [`crate::changes`],
//! [`crate::outbox`] and [`crate::cache`] build on it, so there is no import cycle between them.

use papo_protocol::{Cursor, Millis, Notification, NotificationKind};
use rusqlite::{params, Connection, Transaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Added to a local row id to order pending rows after confirmed ones with the same time.
pub(crate) const PENDING_SK: i64 = 1 << 62;

/// A cache failure.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the cache was written by a newer app (schema {found}, this app knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("cache schema migration failed: {0}")]
    Migration(String),
    #[error("corrupt cache row: {0}")]
    Corrupt(String),
    /// The cache thread that would run the job is gone (see [`crate::cache_thread`]).
    #[error("the cache is closed")]
    Closed,
    /// Admin requests are never queued: they are sent on the `/admin` connection, while it is
    /// open, and answered there.
    #[error("{0} is not queued: it is sent on the /admin connection")]
    NotQueued(&'static str),
}

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Unix time in milliseconds, now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Local state of a message, post or comment the user wrote (others' are always `sent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum LocalState {
    Pending,
    Sent,
    Failed,
}

impl LocalState {
    pub(crate) fn parse(s: &str) -> LocalState {
        match s {
            "pending" => LocalState::Pending,
            "failed" => LocalState::Failed,
            _ => LocalState::Sent,
        }
    }
}

/// Keyset position for paging (newest first): pass the last row's key to get older rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PageKey {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub sk: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MessageRow {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub local_id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub server_id: Option<i64>,
    pub client_id: Option<Uuid>,
    pub conversation: String,
    pub sender: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    pub state: LocalState,
    pub key: PageKey,
    /// When its sender last edited it.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub edited_at: Option<Millis>,
    /// Deleted by its sender: the text is empty and the row stands for "message deleted".
    pub deleted: bool,
    /// The message this one replies to, shown as a quote above it.
    pub reply_to: Option<Quote>,
}

/// A window of a conversation around one message (a jump to the message a reply quotes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AroundPage {
    /// Oldest first, the message itself among them.
    pub rows: Vec<MessageRow>,
    /// The message's local id in `rows`.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub target_local_id: i64,
    /// Nothing older than `rows` exists.
    pub older_done: bool,
    /// Nothing newer than `rows` exists: the window reaches the newest message.
    pub newer_done: bool,
}

/// The quote above a reply: the original as this cache knows it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Quote {
    /// The original's server id (jump to it with [`crate::Core::conversation_around`]).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub server_id: i64,
    pub sender: String,
    /// The start of the original's current text; `None` once the original was deleted.
    pub excerpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PostRow {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub local_id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub server_id: Option<i64>,
    pub client_id: Option<Uuid>,
    pub author: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub edited_at: Option<Millis>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub like_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub comment_count: i64,
    pub liked_by_me: bool,
    pub state: LocalState,
    pub key: PageKey,
    /// Live shares of this post.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub share_count: i64,
    /// I share it (a live share of mine points at it).
    pub shared_by_me: bool,
    /// When this post shares another: that post as this cache holds it now. `text` is then my
    /// (the sharer's) comment, possibly empty.
    pub share_of: Option<SharedPost>,
}

/// The post a share points at, as the cache holds it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SharedPost {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub server_id: i64,
    /// False once it was deleted (the share then shows it as unavailable; author and text are
    /// empty).
    pub available: bool,
    pub author: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub edited_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CommentRow {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub local_id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub server_id: Option<i64>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
    pub author: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    pub state: LocalState,
    /// Removed by a moderator (`text` is then empty).
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConversationRow {
    pub id: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub last_at: Millis,
    pub last_sender: String,
    pub last_text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread: i64,
}

/// A user's profile header (see `Cache::profile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Profile {
    pub username: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub follower_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub following_count: i64,
    pub followed_by_me: bool,
    pub follows_me: bool,
    /// Last known presence.
    pub online: bool,
}

/// Which list of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FollowList {
    Followers,
    Following,
}

/// A page of the conversation list (see `Cache::conversations_page`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConversationPage {
    /// The public room, pinned above the list: on the first page only (`None` there until it
    /// has a message).
    pub pinned: Option<ConversationRow>,
    /// DM conversations, most recent first; the next page starts after the last of them.
    pub rows: Vec<ConversationRow>,
    /// Whether older conversations follow.
    pub more: bool,
    /// Unread messages in every conversation, loaded or not.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_total: i64,
}

/// Where the unread messages of a conversation begin: the oldest message of someone else past
/// its read mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnreadStart {
    /// Its page key: the conversation's rows from here on are the unread stretch.
    pub key: PageKey,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub server_id: i64,
    /// How many rows (anyone's) the conversation has from this one to the newest, counted up to
    /// [`UNREAD_START_COUNT_CAP`] (a larger stretch reports the cap).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub rows_since: i64,
}

/// Where [`UnreadStart::rows_since`] stops counting.
pub const UNREAD_START_COUNT_CAP: i64 = 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnreadCounts {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub total: i64,
    #[cfg_attr(feature = "ts", ts(type = "Array<[string, number]>"))]
    pub conversations: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    Message,
    Post,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SearchHit {
    pub kind: HitKind,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub local_id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub server_id: Option<i64>,
    /// For messages: the conversation.
    pub conversation: Option<String>,
    pub author: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
}

/// The columns [`message_row`] reads.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, server_id, client_id, conversation, sender, text, at, state, sk, edited_at, deleted, \
     reply_to, reply_from, reply_excerpt";

pub(crate) fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        local_id: r.get(0)?,
        server_id: r.get(1)?,
        client_id: parse_uuid(r.get::<_, Option<String>>(2)?),
        conversation: r.get(3)?,
        sender: r.get(4)?,
        text: r.get(5)?,
        at: r.get(6)?,
        state: LocalState::parse(&r.get::<_, String>(7)?),
        key: PageKey {
            at: r.get(6)?,
            sk: r.get(8)?,
        },
        edited_at: r.get(9)?,
        deleted: r.get::<_, i64>(10)? != 0,
        reply_to: match r.get::<_, Option<i64>>(11)? {
            Some(server_id) => Some(Quote {
                server_id,
                sender: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                excerpt: r.get(13)?,
            }),
            None => None,
        },
    })
}

/// The columns [`post_row`] reads, from `posts p`; `?1` is the reader (for `liked_by_me`).
/// The last column is `deleted`.
/// What [`POST_COLUMNS`] reads from: the post `p` and the post it shares, `o`.
pub(crate) const POST_FROM: &str = "posts p LEFT JOIN posts o ON o.server_id = p.share_of";

pub(crate) const POST_COLUMNS: &str =
    "p.id, p.server_id, p.client_id, p.author, p.text, p.at, p.edited_at, \
     p.like_count, p.comment_count, p.state, p.sk, \
     EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.server_id AND l.username = ?1), \
     p.share_count, \
     EXISTS (SELECT 1 FROM posts s WHERE s.share_of = p.server_id AND s.author = ?1 \
             AND s.deleted = 0), \
     p.share_of, o.deleted AS shared_deleted, o.author, o.text, o.at, o.edited_at, \
     p.deleted";

pub(crate) fn post_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PostRow> {
    Ok(PostRow {
        local_id: r.get(0)?,
        server_id: r.get(1)?,
        client_id: parse_uuid(r.get::<_, Option<String>>(2)?),
        author: r.get(3)?,
        text: r.get(4)?,
        at: r.get(5)?,
        edited_at: r.get(6)?,
        like_count: r.get(7)?,
        comment_count: r.get(8)?,
        state: LocalState::parse(&r.get::<_, String>(9)?),
        key: PageKey {
            at: r.get(5)?,
            sk: r.get(10)?,
        },
        liked_by_me: r.get(11)?,
        share_count: r.get(12)?,
        shared_by_me: r.get(13)?,
        share_of: match r.get::<_, Option<i64>>(14)? {
            None => None,
            Some(server_id) => {
                let available = r.get::<_, Option<i64>>(15)? == Some(0);
                Some(SharedPost {
                    server_id,
                    available,
                    author: if available { r.get(16)? } else { String::new() },
                    text: if available { r.get(17)? } else { String::new() },
                    at: r.get::<_, Option<i64>>(18)?.unwrap_or_default(),
                    edited_at: if available { r.get(19)? } else { None },
                })
            }
        },
    })
}

/// The columns [`comment_row`] reads.
pub(crate) const COMMENT_COLUMNS: &str = "id, server_id, post_id, author, text, at, state, removed";

pub(crate) fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        local_id: r.get(0)?,
        server_id: r.get(1)?,
        post_id: r.get(2)?,
        author: r.get(3)?,
        text: r.get(4)?,
        at: r.get(5)?,
        state: LocalState::parse(&r.get::<_, String>(6)?),
        removed: r.get(7)?,
    })
}

/// The columns [`notification_row`] reads.
pub(crate) const NOTIFICATION_COLUMNS: &str =
    "id, kind, actor, post_id, comment_id, message_id, excerpt, at";

pub(crate) fn notification_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    let kind: String = r.get(1)?;
    let kind = NotificationKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            format!("notification kind {kind}").into(),
        )
    })?;
    Ok(Notification {
        id: r.get(0)?,
        kind,
        actor: r.get(2)?,
        post_id: r.get(3)?,
        comment_id: r.get(4)?,
        message_id: r.get(5)?,
        excerpt: r.get(6)?,
        at: r.get(7)?,
    })
}

pub(crate) fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: r.get(0)?,
        last_at: r.get(1)?,
        last_sender: r.get(2)?,
        last_text: r.get(3)?,
        unread: r.get(4)?,
    })
}

pub(crate) fn parse_uuid(s: Option<String>) -> Option<Uuid> {
    s.and_then(|s| Uuid::parse_str(&s).ok())
}

pub(crate) fn read_cursor(conn: &Connection) -> Result<Cursor> {
    let mut cursor = Cursor::default();
    let mut st = conn.prepare_cached("SELECT stream, seq FROM cursor")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (stream, seq) = row?;
        match stream.as_str() {
            "public" => cursor.public = seq as u64,
            "private" => cursor.private = seq as u64,
            other => return Err(CacheError::Corrupt(format!("cursor stream {other}"))),
        }
    }
    Ok(cursor)
}

pub(crate) fn write_cursor(tx: &Transaction<'_>, cursor: &Cursor) -> Result<()> {
    let mut st = tx.prepare_cached("UPDATE cursor SET seq = ?2 WHERE stream = ?1")?;
    st.execute(params!["public", cursor.public as i64])?;
    st.execute(params!["private", cursor.private as i64])?;
    Ok(())
}

pub(crate) fn touch_conversation(
    tx: &Transaction<'_>,
    conversation: &str,
    at: Millis,
    sender: &str,
    text: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO conversations (id, last_at, last_sender, last_text) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(id) DO UPDATE SET last_at = excluded.last_at, \
            last_sender = excluded.last_sender, last_text = excluded.last_text \
         WHERE excluded.last_at >= conversations.last_at",
    )?
    .execute(params![conversation, at, sender, text])?;
    Ok(())
}
