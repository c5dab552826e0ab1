//! The outbox's operations on the cache (see [`crate::outbox`] for what the outbox is): enqueue
//! with the optimistic copy, the queue heads, confirm, wedge, retry, discard, prune.

use super::Cache;
use crate::outbox::{
    confirm_in_tx, error_code_str, finish_item, prune_sent_in_tx, queue_of, row_to_item,
    set_local_state, OutboxItem, OutboxState, WedgeReason, ITEM_COLUMNS, MAX_UNANSWERED,
};
use crate::rows::{now_ms, touch_conversation, CacheError, Result, PENDING_SK};
use papo_protocol::{ErrorBody, LogEvent, Millis, Request};
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

impl Cache {
    /// Writes a request to the outbox together with its optimistic local copy.
    pub fn enqueue(&self, me: &str, request: &Request) -> Result<OutboxItem> {
        if request.is_admin() {
            return Err(CacheError::NotQueued(request.event_name()));
        }
        let now = now_ms();
        let cid = request.client_id();
        let cid_s = cid.to_string();
        let json = serde_json::to_string(request)
            .map_err(|e| CacheError::Corrupt(format!("request: {e}")))?;
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        // An edit or delete waits behind what is still being sent in the message's conversation
        // (and shows there if it is refused).
        let queue = match request {
            Request::MessageEdit(papo_protocol::MessageEdit { message_id, .. })
            | Request::MessageDelete(papo_protocol::MessageDelete { message_id, .. }) => {
                message_conversation(&tx, *message_id)?.unwrap_or_else(|| queue_of(request))
            }
            _ => queue_of(request),
        };
        tx.execute(
            "INSERT INTO outbox (client_id, event, request, state, queue, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5)",
            params![cid_s, request.event_name(), json, queue, now],
        )?;
        let seq = tx.last_insert_rowid();
        let local_message = |kind: &str,
                             conversation: &str,
                             text: &str,
                             reply_to: Option<i64>|
         -> Result<()> {
            // The quote as this cache shows the original (Core checks it is of this
            // conversation before sending).
            let quote: Option<(String, Option<String>)> = match reply_to {
                Some(id) => tx
                    .prepare_cached(
                        "SELECT sender, text, deleted FROM messages WHERE kind = ?1 AND server_id = ?2",
                    )?
                    .query_row(params![kind, id], |r| {
                        let deleted = r.get::<_, i64>(2)? != 0;
                        let text: String = r.get(1)?;
                        Ok((r.get(0)?, (!deleted).then(|| papo_protocol::excerpt(&text))))
                    })
                    .optional()?,
                None => None,
            };
            let (reply_from, reply_excerpt) = quote.unzip();
            tx.execute(
                "INSERT INTO messages (kind, conversation, client_id, sender, text, at, sk, state, \
                   reply_to, reply_from, reply_excerpt) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 'pending', ?7, ?8, ?9)",
                params![
                    kind,
                    conversation,
                    cid_s,
                    me,
                    text,
                    now,
                    reply_to,
                    reply_from,
                    reply_excerpt.flatten()
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE messages SET sk = ?2 WHERE id = ?1",
                params![id, PENDING_SK + id],
            )?;
            touch_conversation(&tx, conversation, now, me, text)
        };
        match request {
            Request::ChatSend(r) => local_message(
                "chat",
                papo_protocol::conversation::PUBLIC,
                &r.text,
                r.reply_to,
            )?,
            Request::DmSend(r) => local_message(
                "dm",
                &papo_protocol::conversation::dm(&r.to),
                &r.text,
                r.reply_to,
            )?,
            Request::PostCreate(r) => local_post(&tx, &cid_s, me, &r.text, now, None)?,
            Request::PostEdit(r) => {
                tx.execute(
                    "UPDATE posts SET text = ?2, edited_at = ?3 WHERE server_id = ?1",
                    params![r.post_id, r.text, now],
                )?;
            }
            Request::PostDelete(r) => {
                tx.execute(
                    "UPDATE posts SET deleted = 1 WHERE server_id = ?1",
                    [r.post_id],
                )?;
            }
            Request::MessageEdit(r) => {
                tx.execute(
                    "UPDATE messages SET text = ?2, edited_at = ?3 \
                     WHERE kind IN ('chat', 'dm') AND server_id = ?1 AND deleted = 0",
                    params![r.message_id, r.text, now],
                )?;
                super::apply::quote_changed(&tx, r.message_id, Some(&r.text))?;
                if let Some(c) = message_conversation(&tx, r.message_id)? {
                    super::apply::refresh_last_text(&tx, &c)?;
                }
            }
            Request::AdminRemovePost(_)
            | Request::AdminRemoveComment(_)
            | Request::AdminSuspend(_)
            | Request::AdminUnsuspend(_) => {
                // Refused above: never queued.
                return Err(CacheError::NotQueued(request.event_name()));
            }
            Request::MessageDelete(r) => {
                tx.execute(
                    "UPDATE messages SET text = '', deleted = 1 \
                     WHERE kind IN ('chat', 'dm') AND server_id = ?1",
                    [r.message_id],
                )?;
                super::apply::quote_changed(&tx, r.message_id, None)?;
                if let Some(c) = message_conversation(&tx, r.message_id)? {
                    super::apply::refresh_last_text(&tx, &c)?;
                }
            }
            Request::PostLike(r) => {
                let added = tx.execute(
                    "INSERT OR IGNORE INTO likes (post_id, username) VALUES (?1, ?2)",
                    params![r.post_id, me],
                )?;
                if added > 0 {
                    tx.execute(
                        "UPDATE posts SET like_count = like_count + 1 WHERE server_id = ?1",
                        [r.post_id],
                    )?;
                }
            }
            Request::PostShare(r) => {
                // My share at once (pending), pointing at the original (a share's original
                // when a share is shared), and the original's count one up.
                let original = shared_original(&tx, r.post_id)?;
                let mine: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM posts WHERE share_of = ?1 AND author = ?2 AND deleted = 0",
                        params![original, me],
                        |row| row.get(0),
                    )
                    .optional()?;
                if mine.is_none() {
                    local_post(&tx, &cid_s, me, &r.text, now, Some(original))?;
                    tx.execute(
                        "UPDATE posts SET share_count = share_count + 1 WHERE server_id = ?1",
                        [original],
                    )?;
                }
            }
            Request::PostUnshare(r) => {
                let original = shared_original(&tx, r.post_id)?;
                let gone = tx.execute(
                    "UPDATE posts SET deleted = 1 WHERE share_of = ?1 AND author = ?2 AND deleted = 0",
                    params![original, me],
                )?;
                if gone > 0 {
                    tx.execute(
                        "UPDATE posts SET share_count = MAX(share_count - 1, 0) WHERE server_id = ?1",
                        [original],
                    )?;
                }
            }
            Request::PostUnlike(r) => {
                let removed = tx.execute(
                    "DELETE FROM likes WHERE post_id = ?1 AND username = ?2",
                    params![r.post_id, me],
                )?;
                if removed > 0 {
                    tx.execute(
                        "UPDATE posts SET like_count = MAX(like_count - 1, 0) WHERE server_id = ?1",
                        [r.post_id],
                    )?;
                }
            }
            Request::CommentCreate(r) => {
                tx.execute(
                    "INSERT INTO comments (client_id, post_id, author, text, at, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
                    params![cid_s, r.post_id, me, r.text, now],
                )?;
            }
            Request::UserFollow(r) => {
                tx.execute(
                    "INSERT OR IGNORE INTO follows (follower, followee) VALUES (?1, ?2)",
                    params![me, r.username],
                )?;
            }
            Request::UserUnfollow(r) => {
                tx.execute(
                    "DELETE FROM follows WHERE follower = ?1 AND followee = ?2",
                    params![me, r.username],
                )?;
            }
            Request::ReadMark(r) => super::apply::set_read(&tx, &r.conversation, r.last_read)?,
        }
        tx.commit()?;
        Ok(OutboxItem {
            seq,
            client_id: cid,
            queue,
            request: request.clone(),
            state: OutboxState::Pending,
            attempts: 0,
            unanswered: 0,
            error: None,
            wedge: None,
            next_attempt_at: None,
            created_at: now,
        })
    }

    /// The oldest pending item of every queue, in send order: the items that may be sent next
    /// (wedged items do not hold up the ones behind them).
    pub fn outbox_heads(&self) -> Result<Vec<OutboxItem>> {
        self.read(|c| {
            // A skip scan over the (state, queue, seq) index: O(queues · log n), not a pass
            // over every pending row (this runs after each reply).
            let mut st = c.prepare_cached(&format!(
                "WITH RECURSIVE q(name) AS ( \
                   SELECT MIN(queue) FROM outbox WHERE state = 'pending' \
                   UNION ALL \
                   SELECT (SELECT MIN(queue) FROM outbox WHERE state = 'pending' AND queue > q.name) \
                   FROM q WHERE q.name IS NOT NULL) \
                 SELECT {ITEM_COLUMNS} FROM q JOIN outbox ON outbox.seq = \
                   (SELECT MIN(seq) FROM outbox WHERE state = 'pending' AND queue = q.name) \
                 ORDER BY seq"
            ))?;
            let rows = st.query_map([], row_to_item)?;
            rows.map(|r| finish_item(r?)).collect()
        })
    }

    /// Wedged items, in order; only those of `queue` when given.
    pub fn wedged_outbox(&self, queue: Option<&str>) -> Result<Vec<OutboxItem>> {
        Ok(self
            .outbox()?
            .into_iter()
            .filter(|i| i.is_wedged() && queue.is_none_or(|q| i.queue == q))
            .collect())
    }

    /// The oldest pending item overall.
    pub fn next_outbox_item(&self) -> Result<Option<OutboxItem>> {
        self.read(|c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {ITEM_COLUMNS} FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1"
                ))?
                .query_row([], row_to_item)
                .optional()?;
            row.map(finish_item).transpose()
        })
    }

    /// All items not yet sent (pending and wedged), in order.
    pub fn outbox(&self) -> Result<Vec<OutboxItem>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM outbox WHERE state != 'sent' ORDER BY seq"
            ))?;
            let rows = st.query_map([], row_to_item)?;
            rows.map(|r| finish_item(r?)).collect()
        })
    }

    /// One item by client id.
    pub fn outbox_item(&self, cid: Uuid) -> Result<Option<OutboxItem>> {
        self.read(|c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {ITEM_COLUMNS} FROM outbox WHERE client_id = ?1"
                ))?
                .query_row([cid.to_string()], row_to_item)
                .optional()?;
            row.map(finish_item).transpose()
        })
    }

    /// Counts per state: (pending, sent, wedged). Sent rows count until they are pruned.
    pub fn outbox_counts(&self) -> Result<(i64, i64, i64)> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'sent'), 0), \
                 COALESCE(SUM(state = 'wedged'), 0) FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
    }

    /// Counts one more send attempt.
    pub fn outbox_attempt(&self, cid: Uuid) -> Result<()> {
        let conn = self.writer.lock().unwrap();
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, updated_at = ?2 WHERE client_id = ?1",
            params![cid.to_string(), now_ms()],
        )?;
        Ok(())
    }

    /// The server accepted the request. Returns whether this changed the item.
    pub fn outbox_confirm(&self, me: &str, cid: Uuid, event: Option<&LogEvent>) -> Result<bool> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let changed = confirm_in_tx(&tx, cid, event, me, now_ms())?;
        tx.commit()?;
        Ok(changed)
    }

    /// Wedges a pending item (its local copy shows as failed). Returns whether it was pending.
    pub fn outbox_wedge(&self, cid: Uuid, reason: &WedgeReason) -> Result<bool> {
        let (code, message) = match reason {
            WedgeReason::Refused { error } => (error_code_str(error), Some(error.message.clone())),
            WedgeReason::NoAnswer { .. } => (None, None),
        };
        let json = serde_json::to_string(reason)
            .map_err(|e| CacheError::Corrupt(format!("wedge reason: {e}")))?;
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let cid_s = cid.to_string();
        let changed = tx.execute(
            "UPDATE outbox SET state = 'wedged', wedge = ?2, \
             error_code = COALESCE(?3, error_code), error_message = COALESCE(?4, error_message), \
             updated_at = ?5, next_attempt_at = NULL WHERE client_id = ?1 AND state = 'pending'",
            params![cid_s, json, code, message, now_ms()],
        )?;
        if changed > 0 {
            set_local_state(&tx, &cid_s, "failed")?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// The server refused the request for good: wedges it with [`WedgeReason::Refused`].
    pub fn outbox_fail(&self, cid: Uuid, error: &ErrorBody) -> Result<bool> {
        self.outbox_wedge(
            cid,
            &WedgeReason::Refused {
                error: error.clone(),
            },
        )
    }

    /// A send of a pending item got no answer in time. Counts it; at [`MAX_UNANSWERED`] the item
    /// is wedged with [`WedgeReason::NoAnswer`] (returned), otherwise it waits until `retry_at`.
    pub fn outbox_unanswered(&self, cid: Uuid, retry_at: Millis) -> Result<Option<WedgeReason>> {
        let count: Option<i64> = {
            let conn = self.writer.lock().unwrap();
            conn.query_row(
                "UPDATE outbox SET unanswered = unanswered + 1, next_attempt_at = ?2, \
                 updated_at = ?3 WHERE client_id = ?1 AND state = 'pending' RETURNING unanswered",
                params![cid.to_string(), retry_at, now_ms()],
                |r| r.get(0),
            )
            .optional()?
        };
        match count {
            Some(n) if n >= MAX_UNANSWERED => {
                let reason = WedgeReason::NoAnswer { attempts: n };
                Ok(self.outbox_wedge(cid, &reason)?.then_some(reason))
            }
            _ => Ok(None),
        }
    }

    /// Deletes the sent rows last touched before `before` (unix ms); returns how many. Confirming
    /// an item prunes those older than [`SENT_RETENTION_MS`].
    pub fn prune_sent_outbox(&self, before: Millis) -> Result<usize> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let n = prune_sent_in_tx(&tx, before)?;
        tx.commit()?;
        Ok(n)
    }

    /// A transient failure: keep the item pending, not before `at`.
    pub fn outbox_defer(&self, cid: Uuid, at: Millis, error: &ErrorBody) -> Result<()> {
        let code = error_code_str(error);
        let conn = self.writer.lock().unwrap();
        conn.execute(
            "UPDATE outbox SET next_attempt_at = ?2, error_code = ?3, error_message = ?4, \
             updated_at = ?5 WHERE client_id = ?1 AND state = 'pending'",
            params![cid.to_string(), at, code, error.message, now_ms()],
        )?;
        Ok(())
    }

    /// The user asks to try a wedged item again; see [`Cache::retry_outbox_as`].
    pub fn retry_outbox(&self, cid: Uuid) -> Result<bool> {
        Ok(self.retry_outbox_as(cid)?.is_some())
    }

    /// The user asks to try a wedged item again: pending, at its old place in its queue.
    /// Returns the client id it will be sent under, or `None` if it was not wedged.
    ///
    /// - [`WedgeReason::NoAnswer`]: the *same* client id, since the server may have applied it
    ///   and only the answer was lost; its deduplication makes the resend apply at most once.
    /// - [`WedgeReason::Refused`]: a *new* client id (in the row, the request and the local
    ///   copy). The server records a refusal under the id and answers every resend with it,
    ///   and a refused request had no effect, so a new id cannot apply anything twice.
    ///
    /// `attempts` keeps counting; the unanswered count starts again.
    pub fn retry_outbox_as(&self, cid: Uuid) -> Result<Option<Uuid>> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let cid_s = cid.to_string();
        let row: Option<(Option<String>, String)> = tx
            .query_row(
                "SELECT wedge, request FROM outbox WHERE client_id = ?1 AND state = 'wedged'",
                [&cid_s],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((wedge, request)) = row else {
            return Ok(None);
        };
        let refused = wedge
            .and_then(|w| serde_json::from_str::<WedgeReason>(&w).ok())
            .is_some_and(|w| matches!(w, WedgeReason::Refused { .. }));
        let send_as = if refused {
            let new = Uuid::now_v7();
            let mut v: serde_json::Value = serde_json::from_str(&request)
                .map_err(|e| CacheError::Corrupt(format!("outbox request: {e}")))?;
            v["payload"]["id"] = serde_json::Value::String(new.to_string());
            let check: Request = serde_json::from_value(v.clone())
                .map_err(|e| CacheError::Corrupt(format!("outbox request: {e}")))?;
            debug_assert_eq!(check.client_id(), new);
            tx.execute(
                "UPDATE outbox SET client_id = ?2, request = ?3 WHERE client_id = ?1",
                params![cid_s, new.to_string(), v.to_string()],
            )?;
            for table in ["messages", "posts", "comments"] {
                tx.execute(
                    &format!(
                        "UPDATE {table} SET client_id = ?2 WHERE client_id = ?1 AND server_id IS NULL"
                    ),
                    params![cid_s, new.to_string()],
                )?;
            }
            new
        } else {
            cid
        };
        let send_s = send_as.to_string();
        tx.execute(
            "UPDATE outbox SET state = 'pending', unanswered = 0, next_attempt_at = NULL, \
             wedge = NULL, updated_at = ?2 WHERE client_id = ?1",
            params![send_s, now_ms()],
        )?;
        set_local_state(&tx, &send_s, "pending")?;
        tx.commit()?;
        Ok(Some(send_as))
    }

    /// The user gives up on an unsent item: it and its local copy are deleted.
    pub fn discard_outbox(&self, cid: Uuid) -> Result<bool> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let cid_s = cid.to_string();
        let changed = tx.execute(
            "DELETE FROM outbox WHERE client_id = ?1 AND state != 'sent'",
            [&cid_s],
        )?;
        if changed > 0 {
            for table in ["messages", "posts", "comments"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE client_id = ?1 AND server_id IS NULL"),
                    [&cid_s],
                )?;
            }
        }
        tx.commit()?;
        Ok(changed > 0)
    }
}

/// The conversation of the message with this server id, if the cache holds it.
/// The optimistic copy of a post (or a share of `share_of`) of mine, pending, sorted after
/// every sent post until the server's copy replaces it.
fn local_post(
    tx: &rusqlite::Connection,
    cid: &str,
    me: &str,
    text: &str,
    now: Millis,
    share_of: Option<i64>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO posts (client_id, author, text, at, sk, state, share_of) \
         VALUES (?1, ?2, ?3, ?4, 0, 'pending', ?5)",
        params![cid, me, text, now, share_of],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE posts SET sk = ?2 WHERE id = ?1",
        params![id, PENDING_SK + id],
    )?;
    Ok(())
}

/// The post a share of `post_id` points at: its original when it is itself a share.
pub(crate) fn shared_original(tx: &rusqlite::Connection, post_id: i64) -> Result<i64> {
    let of: Option<Option<i64>> = tx
        .query_row(
            "SELECT share_of FROM posts WHERE server_id = ?1",
            [post_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(of.flatten().unwrap_or(post_id))
}

pub(crate) fn message_conversation(
    tx: &rusqlite::Connection,
    server_id: i64,
) -> Result<Option<String>> {
    Ok(tx
        .prepare_cached(
            "SELECT conversation FROM messages WHERE kind IN ('chat', 'dm') AND server_id = ?1",
        )?
        .query_row([server_id], |r| r.get(0))
        .optional()?)
}
