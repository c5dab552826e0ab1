//! The offline cache: everything the user has seen, in one SQLite file (WAL, numbered
//! migrations in `migrations/`).
//!
//! Each received log event is applied exactly once: its effects and the cursor advance commit
//! in one transaction, events at or below the stored cursor are skipped, and rows are keyed by
//! server id, so a crash at any point neither loses nor doubles anything. The outbox lives in
//! the same file (see [`crate::outbox`]) so a user action and its optimistic copy are written
//! together.

use papo_protocol::{
    Cursor, EventBody, LogEvent, Millis, Notification, NotificationKind, Presence, Stream,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

/// Migrations, applied in order at open; the index + 1 is the schema version (`user_version`).
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_outbox_queues_wedged.sql"),
    include_str!("../migrations/0003_unread_counters.sql"),
];

/// Added to a local row id to order pending rows after confirmed ones with the same time.
pub(crate) const PENDING_SK: i64 = 1 << 62;

/// A cache failure.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the cache was written by a newer app (schema {found}, this app knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("corrupt cache row: {0}")]
    Corrupt(String),
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

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyOutcome {
    /// Events applied now, in order (already-seen ones are left out).
    pub applied: Vec<LogEvent>,
    /// Outbox items confirmed by an applied event carrying their client id.
    pub confirmed: Vec<Uuid>,
    /// Events skipped because they were already applied.
    pub duplicates: usize,
    /// A hole in a stream: `(stream, expected seq, received seq)`. Nothing after it was applied.
    pub gap: Option<(Stream, u64, u64)>,
    /// The cursor before the batch.
    pub cursor_before: Cursor,
    /// The rows the batch added or updated, for the UI ([`crate::changes`]).
    pub changes: crate::changes::ChangeSet,
}

/// The cache: one writer connection and one reader connection over the same WAL file.
pub struct Cache {
    pub(crate) writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Applies the migrations newer than the file's `user_version`.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(CacheError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl Cache {
    /// Opens (creating and migrating if needed) the cache file.
    pub fn open(path: impl AsRef<Path>) -> Result<Cache> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let reader = Connection::open(&path)?;
        configure(&reader)?;
        reader.pragma_update(None, "query_only", true)?;
        Ok(Cache {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // -----------------------------------------------------------------------------------------
    // Meta, cursor, reset
    // -----------------------------------------------------------------------------------------

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let conn = self.reader.lock().unwrap();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The user this cache belongs to.
    pub fn me(&self) -> Result<Option<String>> {
        self.meta("me")
    }

    /// Records whose cache this is. If it belonged to someone else, everything (including the
    /// outbox) is wiped first; returns whether that happened.
    pub fn set_me(&self, username: &str) -> Result<bool> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let current: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'me'", [], |r| r.get(0))
            .optional()?;
        let wiped = match current.as_deref() {
            Some(me) if me == username => false,
            Some(_) => {
                wipe_server_data(&tx)?;
                tx.execute_batch(
                    "DELETE FROM outbox; DELETE FROM messages; DELETE FROM posts; \
                     DELETE FROM comments; DELETE FROM meta WHERE key = 'epoch';",
                )?;
                true
            }
            None => false,
        };
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('me', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [username],
        )?;
        tx.commit()?;
        Ok(wiped)
    }

    /// The resume position and the epoch it belongs to.
    pub fn resume_point(&self) -> Result<(Cursor, Option<String>)> {
        let conn = self.reader.lock().unwrap();
        let cursor = read_cursor(&conn)?;
        let epoch = conn
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok((cursor, epoch))
    }

    /// Stores the server epoch the cursor belongs to.
    pub fn set_epoch(&self, epoch: &str) -> Result<()> {
        let conn = self.writer.lock().unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [epoch],
        )?;
        Ok(())
    }

    /// The server cannot serve our cursor: forget everything derived from the server (local
    /// pending copies and the outbox stay), restart at 0,0 under the new epoch.
    pub fn reset(&self, epoch: &str) -> Result<()> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        wipe_server_data(&tx)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [epoch],
        )?;
        tx.commit()?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Applying events
    // -----------------------------------------------------------------------------------------

    /// Applies a batch of log events exactly once, in one transaction with the cursor.
    pub fn apply_batch(&self, me: &str, events: &[LogEvent]) -> Result<ApplyOutcome> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let mut cursor = read_cursor(&tx)?;
        let mut out = ApplyOutcome {
            cursor_before: cursor,
            ..Default::default()
        };
        let now = now_ms();
        let mut touched = crate::changes::Touched::default();
        for ev in events {
            let stored = cursor.get(ev.stream);
            if ev.seq <= stored {
                out.duplicates += 1;
                continue;
            }
            if ev.seq > stored + 1 {
                out.gap = Some((ev.stream, stored + 1, ev.seq));
                break;
            }
            apply_effects(&tx, me, ev)?;
            touched.event(me, ev);
            if let Some(cid) = ev.cid {
                if crate::outbox::confirm_in_tx(&tx, cid, None, me, now)? {
                    out.confirmed.push(cid);
                }
            }
            cursor.set(ev.stream, ev.seq);
            out.applied.push(ev.clone());
        }
        if !out.applied.is_empty() {
            write_cursor(&tx, &cursor)?;
            out.changes = touched.read(&tx, me, false)?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// The rows a local action just wrote (its optimistic copy under `cid`, and the post or
    /// conversation `request` acts on), for the UI.
    pub fn local_changes(
        &self,
        me: &str,
        cid: Uuid,
        request: Option<&papo_protocol::Request>,
    ) -> Result<crate::changes::ChangeSet> {
        use papo_protocol::Request;
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let mut touched = crate::changes::Touched::default();
        touched.local(&tx, cid)?;
        match request {
            Some(Request::PostEdit(r)) => touched.post(r.post_id),
            Some(Request::PostDelete(r) | Request::PostLike(r) | Request::PostUnlike(r)) => {
                touched.post(r.post_id)
            }
            Some(Request::CommentCreate(r)) => touched.post(r.post_id),
            Some(Request::ReadMark(r)) => touched.conversation(&r.conversation),
            _ => {}
        }
        let changes = touched.read(&tx, me, false)?;
        tx.commit()?;
        Ok(changes)
    }

    /// Records a presence change (ephemeral, but shown offline as "last known").
    pub fn apply_presence(&self, p: &Presence) -> Result<()> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        if p.snapshot {
            tx.execute("UPDATE users SET online = 0 WHERE online = 1", [])?;
        }
        for (list, online) in [(&p.online, 1), (&p.offline, 0)] {
            for u in list {
                tx.execute(
                    "INSERT INTO users (username, online) VALUES (?1, ?2) \
                     ON CONFLICT(username) DO UPDATE SET online = excluded.online",
                    params![u, online],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Reads
    // -----------------------------------------------------------------------------------------

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.reader.lock().unwrap();
        f(&conn)
    }

    /// One page of a conversation, newest first, strictly older than `before`.
    pub fn conversation_page(
        &self,
        conversation: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<MessageRow>> {
        let before = before.unwrap_or(PageKey {
            at: i64::MAX,
            sk: i64::MAX,
        });
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} \
                 FROM messages WHERE conversation = ?1 AND (at, sk) < (?2, ?3) \
                 ORDER BY at DESC, sk DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![conversation, before.at, before.sk, limit as i64],
                message_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// One page of the feed, newest first, strictly older than `before`.
    pub fn feed_page(
        &self,
        me: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<PostRow>> {
        let before = before.unwrap_or(PageKey {
            at: i64::MAX,
            sk: i64::MAX,
        });
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {POST_COLUMNS} \
                 FROM posts p WHERE p.deleted = 0 AND (p.at, p.sk) < (?2, ?3) \
                 ORDER BY p.at DESC, p.sk DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(params![me, before.at, before.sk, limit as i64], post_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Comments of a post (by server id), oldest first.
    pub fn comments(&self, post_id: i64) -> Result<Vec<CommentRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COMMENT_COLUMNS} FROM comments WHERE post_id = ?1 ORDER BY at, id"
            ))?;
            let rows = st.query_map([post_id], comment_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Notifications, newest first, strictly older than `before` = `(at, id)`.
    pub fn notifications_page(
        &self,
        before: Option<(Millis, i64)>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let (at, id) = before.unwrap_or((i64::MAX, i64::MAX));
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} \
                 FROM notifications WHERE (at, id) < (?1, ?2) ORDER BY at DESC, id DESC LIMIT ?3"
            ))?;
            let rows = st.query_map(params![at, id, limit as i64], notification_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Conversations, most recent first, with their unread counts (maintained counters: no
    /// scan of the messages).
    pub fn conversations(&self) -> Result<Vec<ConversationRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT c.id, c.last_at, c.last_sender, c.last_text, COALESCE(u.count, 0) \
                 FROM conversations c LEFT JOIN unread u ON u.conversation = c.id \
                 ORDER BY c.last_at DESC",
            )?;
            let rows = st.query_map([], conversation_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Full-text search over messages and posts (every word must match; the last as a prefix).
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        self.read(|c| {
            let mut out = Vec::new();
            let mut st = c.prepare_cached(
                // The newest matches by rowid come straight off the full-text index (rows are
                // inserted in log order, so rowid follows time); sorting every match by `at`
                // first made a common word cost ~100 ms on a million messages.
                "SELECT m.id, m.server_id, m.conversation, m.sender, m.text, m.at \
                 FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 \
                       ORDER BY rowid DESC LIMIT ?2) f \
                 JOIN messages m ON m.id = f.rowid ORDER BY m.at DESC",
            )?;
            let rows = st.query_map(params![fts, limit as i64], |r| {
                Ok(SearchHit {
                    kind: HitKind::Message,
                    local_id: r.get(0)?,
                    server_id: r.get(1)?,
                    conversation: Some(r.get(2)?),
                    author: r.get(3)?,
                    text: r.get(4)?,
                    at: r.get(5)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
            let mut st = c.prepare_cached(
                "SELECT p.id, p.server_id, p.author, p.text, p.at \
                 FROM (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?1 \
                       ORDER BY rowid DESC LIMIT ?2) f \
                 JOIN posts p ON p.id = f.rowid WHERE p.deleted = 0 ORDER BY p.at DESC",
            )?;
            let rows = st.query_map(params![fts, limit as i64], |r| {
                Ok(SearchHit {
                    kind: HitKind::Post,
                    local_id: r.get(0)?,
                    server_id: r.get(1)?,
                    conversation: None,
                    author: r.get(2)?,
                    text: r.get(3)?,
                    at: r.get(4)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
            out.sort_by_key(|h| std::cmp::Reverse(h.at));
            out.truncate(limit);
            Ok(out)
        })
    }

    /// Users last known to be online.
    pub fn online_users(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT username FROM users WHERE online = 1 ORDER BY username")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Whether `follower` follows `followee`, as far as the cache knows.
    pub fn follows(&self, follower: &str, followee: &str) -> Result<bool> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM follows WHERE follower = ?1 AND followee = ?2)",
                params![follower, followee],
                |r| r.get(0),
            )?)
        })
    }
}

/// Builds a safe FTS5 query: each word quoted (no syntax injection), the last one as a prefix.
fn fts_query(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" ");
    q.push('*');
    Some(q)
}

/// The columns [`message_row`] reads.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, server_id, client_id, conversation, sender, text, at, state, sk";

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
    })
}

/// The columns [`post_row`] reads, from `posts p`; `?1` is the reader (for `liked_by_me`).
/// The last column is `deleted`.
pub(crate) const POST_COLUMNS: &str =
    "p.id, p.server_id, p.client_id, p.author, p.text, p.at, p.edited_at, \
     p.like_count, p.comment_count, p.state, p.sk, \
     EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.server_id AND l.username = ?1), \
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
    })
}

/// The columns [`comment_row`] reads.
pub(crate) const COMMENT_COLUMNS: &str = "id, server_id, post_id, author, text, at, state";

pub(crate) fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        local_id: r.get(0)?,
        server_id: r.get(1)?,
        post_id: r.get(2)?,
        author: r.get(3)?,
        text: r.get(4)?,
        at: r.get(5)?,
        state: LocalState::parse(&r.get::<_, String>(6)?),
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

fn read_cursor(conn: &Connection) -> Result<Cursor> {
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

fn write_cursor(tx: &Transaction<'_>, cursor: &Cursor) -> Result<()> {
    let mut st = tx.prepare_cached("UPDATE cursor SET seq = ?2 WHERE stream = ?1")?;
    st.execute(params!["public", cursor.public as i64])?;
    st.execute(params!["private", cursor.private as i64])?;
    Ok(())
}

/// Deletes everything that came from the server and resets the cursor. Local copies that the
/// server has not confirmed yet (no server id) stay, as does the outbox.
fn wipe_server_data(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "DELETE FROM messages WHERE server_id IS NOT NULL;
         DELETE FROM posts WHERE server_id IS NOT NULL;
         DELETE FROM comments WHERE server_id IS NOT NULL;
         DELETE FROM likes; DELETE FROM follows; DELETE FROM users;
         DELETE FROM notifications; DELETE FROM read_state; DELETE FROM conversations;
         DELETE FROM unread; UPDATE cursor SET seq = 0;",
    )?;
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

#[allow(clippy::too_many_arguments)]
fn upsert_message(
    tx: &Transaction<'_>,
    me: &str,
    kind: &str,
    conversation: &str,
    server_id: i64,
    cid: Option<Uuid>,
    sender: &str,
    text: &str,
    at: Millis,
) -> Result<()> {
    let mut changed = 0;
    if let Some(cid) = cid {
        changed = tx
            .prepare_cached(
                "UPDATE OR IGNORE messages SET server_id = ?1, at = ?2, sk = ?1, state = 'sent' \
                 WHERE client_id = ?3",
            )?
            .execute(params![server_id, at, cid.to_string()])?;
    }
    if changed == 0 {
        changed = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO messages \
                 (kind, conversation, server_id, client_id, sender, text, at, sk, state) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?3, 'sent')",
            )?
            .execute(params![kind, conversation, server_id, sender, text, at])?;
        if changed > 0 {
            crate::unread::message_added(tx, me, conversation, server_id, sender)?;
        }
    }
    if changed > 0 {
        touch_conversation(tx, conversation, at, sender, text)?;
    }
    Ok(())
}

fn apply_effects(tx: &Transaction<'_>, me: &str, ev: &LogEvent) -> Result<()> {
    match &ev.body {
        EventBody::ChatMessage(m) => upsert_message(
            tx,
            me,
            "chat",
            papo_protocol::conversation::PUBLIC,
            m.id,
            ev.cid,
            &m.from,
            &m.text,
            m.at,
        )?,
        EventBody::DmMessage(m) => upsert_message(
            tx,
            me,
            "dm",
            &m.conversation_for(me),
            m.id,
            ev.cid,
            &m.from,
            &m.text,
            m.at,
        )?,
        EventBody::PostCreated(p) => {
            let mut changed = 0;
            if let Some(cid) = ev.cid {
                changed = tx
                    .prepare_cached(
                        "UPDATE OR IGNORE posts SET server_id = ?1, at = ?2, sk = ?1, \
                         like_count = ?3, comment_count = ?4, state = 'sent' WHERE client_id = ?5",
                    )?
                    .execute(params![
                        p.id,
                        p.at,
                        p.like_count,
                        p.comment_count,
                        cid.to_string()
                    ])?;
            }
            if changed == 0 {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO posts (server_id, author, text, at, sk, edited_at, \
                     like_count, comment_count, state) VALUES (?1, ?2, ?3, ?4, ?1, ?5, ?6, ?7, 'sent')",
                )?
                .execute(params![
                    p.id,
                    p.author,
                    p.text,
                    p.at,
                    p.edited_at,
                    p.like_count,
                    p.comment_count
                ])?;
            }
        }
        EventBody::PostEdited(e) => {
            tx.prepare_cached("UPDATE posts SET text = ?2, edited_at = ?3 WHERE server_id = ?1")?
                .execute(params![e.post_id, e.text, e.edited_at])?;
        }
        EventBody::PostDeleted(r) => {
            tx.prepare_cached("UPDATE posts SET deleted = 1 WHERE server_id = ?1")?
                .execute([r.post_id])?;
        }
        EventBody::PostLiked(l) => {
            tx.prepare_cached("INSERT OR IGNORE INTO likes (post_id, username) VALUES (?1, ?2)")?
                .execute(params![l.post_id, l.by])?;
            tx.prepare_cached("UPDATE posts SET like_count = ?2 WHERE server_id = ?1")?
                .execute(params![l.post_id, l.like_count])?;
        }
        EventBody::PostUnliked(l) => {
            tx.prepare_cached("DELETE FROM likes WHERE post_id = ?1 AND username = ?2")?
                .execute(params![l.post_id, l.by])?;
            tx.prepare_cached("UPDATE posts SET like_count = ?2 WHERE server_id = ?1")?
                .execute(params![l.post_id, l.like_count])?;
        }
        EventBody::CommentCreated(c) => {
            let cm = &c.comment;
            let mut changed = 0;
            if let Some(cid) = ev.cid {
                changed = tx
                    .prepare_cached(
                        "UPDATE OR IGNORE comments SET server_id = ?1, at = ?2, state = 'sent' \
                         WHERE client_id = ?3",
                    )?
                    .execute(params![cm.id, cm.at, cid.to_string()])?;
            }
            if changed == 0 {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO comments (server_id, post_id, author, text, at, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'sent')",
                )?
                .execute(params![cm.id, cm.post_id, cm.author, cm.text, cm.at])?;
            }
            tx.prepare_cached("UPDATE posts SET comment_count = ?2 WHERE server_id = ?1")?
                .execute(params![cm.post_id, c.comment_count])?;
        }
        EventBody::UserFollowed(f) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO follows (follower, followee) VALUES (?1, ?2)",
            )?
            .execute(params![f.follower, f.followee])?;
            set_follower_count(tx, &f.followee, f.follower_count)?;
        }
        EventBody::UserUnfollowed(f) => {
            tx.prepare_cached("DELETE FROM follows WHERE follower = ?1 AND followee = ?2")?
                .execute(params![f.follower, f.followee])?;
            set_follower_count(tx, &f.followee, f.follower_count)?;
        }
        EventBody::Notification(n) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO notifications \
                 (id, kind, actor, post_id, comment_id, message_id, excerpt, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                n.id,
                n.kind.as_str(),
                n.actor,
                n.post_id,
                n.comment_id,
                n.message_id,
                n.excerpt,
                n.at
            ])?;
        }
        EventBody::ReadUpdated(r) => set_read(tx, &r.conversation, r.last_read)?,
    }
    Ok(())
}

pub(crate) fn set_read(tx: &Transaction<'_>, conversation: &str, last_read: i64) -> Result<()> {
    let old = crate::unread::last_read(tx, conversation)?;
    if last_read > old {
        crate::unread::read_moved(tx, conversation, old, last_read)?;
    }
    tx.prepare_cached(
        "INSERT INTO read_state (conversation, last_read) VALUES (?1, ?2) \
         ON CONFLICT(conversation) DO UPDATE SET last_read = MAX(last_read, excluded.last_read)",
    )?
    .execute(params![conversation, last_read])?;
    Ok(())
}

fn set_follower_count(tx: &Transaction<'_>, user: &str, count: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO users (username, follower_count) VALUES (?1, ?2) \
         ON CONFLICT(username) DO UPDATE SET follower_count = excluded.follower_count",
    )?
    .execute(params![user, count])?;
    Ok(())
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
