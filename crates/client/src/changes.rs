//! What a write changed, as rows the UI can apply without reading the cache again.
//!
//! Every batch the cache applies (and every local action the outbox writes) produces one
//! [`ChangeSet`]: the message, post, comment and notification rows it added or updated, read
//! back in the same transaction in exactly the shape the page reads return, the conversation
//! list rows it touched (with their maintained unread counters) and the new unread total. The
//! core publishes it once per batch as [`crate::CoreEvent::Changes`]; the UI merges it into
//! what it shows and reads the cache only to page further back into history.

use crate::rows::{
    CommentRow, ConversationRow, MessageRow, PostRow, Result, COMMENT_COLUMNS, MESSAGE_COLUMNS,
    NOTIFICATION_COLUMNS, POST_COLUMNS, POST_FROM,
};
use papo_protocol::{EventBody, LogEvent, MessageEdited, MessageRef, Notification};
use rusqlite::Transaction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The rows one write changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ChangeSet {
    /// The cache was emptied (sync reset, sign-out): everything shown before is gone, and the
    /// rows of this set (if any) are the first of the new content.
    pub reset: bool,
    /// Messages added or updated (a pending copy confirmed, a new message).
    pub messages: Vec<MessageRow>,
    /// Conversation list rows whose last message or unread count changed.
    pub conversations: Vec<ConversationRow>,
    /// Posts added or updated (edits, counters, my like).
    pub posts: Vec<PostRow>,
    /// Posts deleted (their local ids).
    #[cfg_attr(feature = "ts", ts(type = "Array<number>"))]
    pub posts_deleted: Vec<i64>,
    /// Comments added or updated.
    pub comments: Vec<CommentRow>,
    /// Notifications added.
    pub notifications: Vec<Notification>,
    /// Users whose followers or following changed: a profile showing one reads its header and
    /// lists again.
    pub users: Vec<String>,
    /// Unread messages in every conversation after the write (each touched conversation's
    /// own count is on its row in `conversations`), so a change set's size follows what
    /// changed, not how many conversations exist.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub unread_total: i64,
}

impl ChangeSet {
    /// Nothing a view shows changed.
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.messages.is_empty()
            && self.conversations.is_empty()
            && self.posts.is_empty()
            && self.posts_deleted.is_empty()
            && self.comments.is_empty()
            && self.notifications.is_empty()
            && self.users.is_empty()
    }
}

/// What a write touched, collected while it runs; [`Touched::read`] turns it into rows.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// `(kind, server id)` of messages.
    messages: BTreeSet<(&'static str, i64)>,
    /// Local ids of messages (pending copies).
    local_messages: BTreeSet<i64>,
    /// `(kind, server id)` of messages edited or deleted: their conversation's row is read too
    /// (its last message may be the one that changed).
    edited_messages: BTreeSet<(&'static str, i64)>,
    conversations: BTreeSet<String>,
    /// Server ids of posts.
    posts: BTreeSet<i64>,
    /// Server ids of posts edited or deleted: their shares show them, and are read too.
    shared_changed: BTreeSet<i64>,
    local_posts: BTreeSet<i64>,
    /// Server ids of comments.
    comments: BTreeSet<i64>,
    local_comments: BTreeSet<i64>,
    notifications: BTreeSet<i64>,
    /// Users whose follows changed (both sides of each follow and unfollow).
    users: BTreeSet<String>,
}

impl Touched {
    /// Notes what an applied log event changes (`conversation` is the message's, from my side).
    pub(crate) fn event(&mut self, me: &str, ev: &LogEvent) {
        match &ev.body {
            EventBody::ChatMessage(m) => {
                self.messages.insert(("chat", m.id));
                self.conversations
                    .insert(papo_protocol::conversation::PUBLIC.to_string());
            }
            EventBody::DmMessage(m) => {
                self.messages.insert(("dm", m.id));
                self.conversations.insert(m.conversation_for(me));
            }
            EventBody::PostCreated(p) => {
                self.posts.insert(p.id);
            }
            EventBody::PostEdited(e) => {
                self.posts.insert(e.post_id);
                self.shared_changed.insert(e.post_id);
            }
            EventBody::PostDeleted(r) => {
                self.posts.insert(r.post_id);
                self.shared_changed.insert(r.post_id);
            }
            EventBody::PostShared(s) | EventBody::PostUnshared(s) => {
                self.posts.insert(s.post_id);
            }
            EventBody::MessageEdited(MessageEdited { message_id, .. })
            | EventBody::MessageDeleted(MessageRef { message_id }) => {
                let kind = match ev.stream {
                    papo_protocol::Stream::Public => "chat",
                    papo_protocol::Stream::Private => "dm",
                };
                self.messages.insert((kind, *message_id));
                self.edited_messages.insert((kind, *message_id));
            }
            EventBody::PostLiked(l) | EventBody::PostUnliked(l) => {
                self.posts.insert(l.post_id);
            }
            EventBody::CommentCreated(c) => {
                self.comments.insert(c.comment.id);
                self.posts.insert(c.comment.post_id);
            }
            EventBody::CommentRemoved(c) => {
                self.comments.insert(c.comment_id);
                self.posts.insert(c.post_id);
            }
            EventBody::Notification(n) => {
                self.notifications.insert(n.id);
            }
            EventBody::ReadUpdated(r) => {
                self.conversations.insert(r.conversation.clone());
            }
            EventBody::UserFollowed(f) | EventBody::UserUnfollowed(f) => {
                self.users.insert(f.follower.clone());
                self.users.insert(f.followee.clone());
            }
            EventBody::Unknown => {}
        }
    }

    /// Notes the rows a local action wrote under `cid` (its optimistic copy), and the
    /// conversation or post it touched.
    pub(crate) fn local(&mut self, tx: &Transaction<'_>, cid: Uuid) -> Result<()> {
        let cid = cid.to_string();
        let ids = |sql: &str| -> Result<Vec<i64>> {
            let mut st = tx.prepare_cached(sql)?;
            let rows = st.query_map([&cid], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        for id in ids("SELECT id FROM messages WHERE client_id = ?1")? {
            self.local_messages.insert(id);
        }
        for id in ids("SELECT id FROM posts WHERE client_id = ?1")? {
            self.local_posts.insert(id);
        }
        for id in ids("SELECT id FROM comments WHERE client_id = ?1")? {
            self.local_comments.insert(id);
        }
        let conversation: Option<String> = tx
            .prepare_cached("SELECT conversation FROM messages WHERE client_id = ?1")?
            .query_row([&cid], |r| r.get(0))
            .ok();
        self.conversations.extend(conversation);
        Ok(())
    }

    /// A local edit or delete of a sent message (and so its conversation's row).
    pub(crate) fn message(&mut self, kind: &'static str, server_id: i64) {
        self.messages.insert((kind, server_id));
        self.edited_messages.insert((kind, server_id));
    }

    /// A local action on a post or a conversation that wrote no row of its own (a like, a
    /// read mark, an edit).
    pub(crate) fn post(&mut self, server_id: i64) {
        self.posts.insert(server_id);
    }

    /// A post edited or deleted here: its shares show it.
    pub(crate) fn shared_changed(&mut self, server_id: i64) {
        self.shared_changed.insert(server_id);
    }

    /// A post row by its local id (a share of mine deleted here).
    pub(crate) fn local_post(&mut self, local_id: i64) {
        self.local_posts.insert(local_id);
    }

    pub(crate) fn conversation(&mut self, id: &str) {
        self.conversations.insert(id.to_string());
    }

    /// Reads the touched rows back, in the shapes the page reads return.
    pub(crate) fn read(&self, tx: &Transaction<'_>, me: &str, reset: bool) -> Result<ChangeSet> {
        let mut out = ChangeSet {
            reset,
            users: self.users.iter().cloned().collect(),
            ..Default::default()
        };
        // One query per kind for every message of the batch (a batch holds hundreds).
        for kind in ["chat", "dm"] {
            let ids: Vec<i64> = self
                .messages
                .range((kind, i64::MIN)..=(kind, i64::MAX))
                .map(|(_, id)| *id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            let json = serde_json::to_string(&ids).unwrap_or_default();
            let mut st = tx.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE kind = ?1 AND server_id IS NOT NULL \
                 AND server_id IN (SELECT value FROM json_each(?2)) ORDER BY server_id"
            ))?;
            let rows = st.query_map(rusqlite::params![kind, json], crate::rows::message_row)?;
            for row in rows {
                out.messages.push(row?);
            }
        }
        // The replies to a message edited or deleted show its new quote.
        if !self.edited_messages.is_empty() {
            let ids: Vec<i64> = self.edited_messages.iter().map(|(_, id)| *id).collect();
            let json = serde_json::to_string(&ids).unwrap_or_default();
            let mut st = tx.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE reply_to IN (SELECT value FROM json_each(?1)) ORDER BY id"
            ))?;
            let rows = st.query_map([json], crate::rows::message_row)?;
            for row in rows {
                let row = row?;
                if !out.messages.iter().any(|m| m.local_id == row.local_id) {
                    out.messages.push(row);
                }
            }
        }
        for id in &self.local_messages {
            let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
            if let Some(row) = one(tx, &sql, [id], crate::rows::message_row)? {
                if !out.messages.iter().any(|m| m.local_id == row.local_id) {
                    out.messages.push(row);
                }
            }
        }
        for (column, ids) in [("server_id", &self.posts), ("id", &self.local_posts)] {
            for id in ids {
                let sql = format!("SELECT {POST_COLUMNS} FROM {POST_FROM} WHERE p.{column} = ?2");
                let row = one(tx, &sql, rusqlite::params![me, id], |r| {
                    Ok((crate::rows::post_row(r)?, r.get::<_, bool>("deleted")?))
                })?;
                match row {
                    Some((p, true)) if !out.posts_deleted.contains(&p.local_id) => {
                        out.posts_deleted.push(p.local_id)
                    }
                    Some((p, false)) if !out.posts.iter().any(|q| q.local_id == p.local_id) => {
                        out.posts.push(p)
                    }
                    _ => {}
                }
            }
        }
        if !self.shared_changed.is_empty() {
            let json = serde_json::to_string(&self.shared_changed).unwrap_or_default();
            let sql = format!(
                "SELECT {POST_COLUMNS} FROM {POST_FROM} \
                 WHERE p.share_of IN (SELECT value FROM json_each(?2)) AND p.deleted = 0"
            );
            let mut st = tx.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params![me, json], crate::rows::post_row)?;
            for p in rows {
                let p = p?;
                if !out.posts.iter().any(|q| q.local_id == p.local_id) {
                    out.posts.push(p);
                }
            }
        }
        for (column, ids) in [("server_id", &self.comments), ("id", &self.local_comments)] {
            for id in ids {
                let sql = format!("SELECT {COMMENT_COLUMNS} FROM comments WHERE {column} = ?1");
                if let Some(row) = one(tx, &sql, [id], crate::rows::comment_row)? {
                    if !out.comments.iter().any(|c| c.local_id == row.local_id) {
                        out.comments.push(row);
                    }
                }
            }
        }
        for id in &self.notifications {
            let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?1");
            if let Some(n) = one(tx, &sql, [id], crate::rows::notification_row)? {
                out.notifications.push(n);
            }
        }
        let mut conversations = self.conversations.clone();
        for m in &out.messages {
            if m.server_id
                .is_some_and(|id| self.edited_messages.iter().any(|(_, e)| *e == id))
            {
                conversations.insert(m.conversation.clone());
            }
        }
        if !conversations.is_empty() {
            let json = serde_json::to_string(&conversations).unwrap_or_default();
            let mut st = tx.prepare_cached(
                "SELECT c.id, c.last_at, c.last_sender, c.last_text, COALESCE(u.count, 0) \
                 FROM conversations c LEFT JOIN unread u ON u.conversation = c.id \
                 WHERE c.id IN (SELECT value FROM json_each(?1)) ORDER BY c.id",
            )?;
            for row in st.query_map([json], crate::rows::conversation_row)? {
                out.conversations.push(row?);
            }
        }
        out.unread_total = crate::unread::total_in(tx)?;
        Ok(out)
    }
}

/// The first row of a query, mapped.
fn one<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    let mut st = tx.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    match rows.next()? {
        Some(r) => Ok(Some(map(r)?)),
        None => Ok(None),
    }
}
