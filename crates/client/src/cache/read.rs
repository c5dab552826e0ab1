//! Reads on the reader connection: pages, the conversation list, search, presence.

use super::Cache;
use crate::rows::{
    comment_row, conversation_row, message_row, notification_row, post_row, CommentRow,
    ConversationRow, HitKind, MessageRow, PageKey, PostRow, Result, SearchHit, UnreadCounts,
    COMMENT_COLUMNS, MESSAGE_COLUMNS, NOTIFICATION_COLUMNS, POST_COLUMNS,
};
use papo_protocol::{Millis, Notification};
use rusqlite::{params, Connection};

impl Cache {
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.with(f)
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

impl Cache {
    /// Unread messages per conversation (messages from others after the read mark), read off
    /// the maintained counters.
    pub fn unread_counts(&self) -> Result<UnreadCounts> {
        self.read(crate::unread::counts_in)
    }

    /// The same counts by scanning every message: what the counters must always equal.
    #[cfg(test)]
    pub(crate) fn recount_unread(&self, me: &str) -> Result<UnreadCounts> {
        self.read(|c| {
            crate::unread::counts(
                c,
                "SELECT m.conversation, COUNT(*) FROM messages m \
                 LEFT JOIN read_state r ON r.conversation = m.conversation \
                 WHERE m.server_id > COALESCE(r.last_read, 0) AND m.sender != ?1 \
                 GROUP BY m.conversation ORDER BY m.conversation",
                [me],
            )
        })
    }
}
