//! The outbox: user actions waiting for the server, one row per request keyed by client id.
//!
//! An action is written in the same transaction as its optimistic local copy. The supervisor
//! sends the oldest `pending` item once the session is open, one at a time (so the server
//! applies them in order), and marks it `sent` when the server's reply or the log event echoes
//! its client id; the local copy then takes the server id and time. Transient errors keep it
//! `pending` with a `next_attempt_at`; other errors mark it `failed` with the server's reason,
//! and the user may [`Cache::retry_outbox`] or [`Cache::discard_outbox`] it.

use crate::cache::{now_ms, parse_uuid, touch_conversation, Cache, CacheError, Result, PENDING_SK};
use papo_protocol::{ErrorBody, ErrorCode, EventBody, LogEvent, Millis, Request};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// State of an outbox item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting to be sent (or re-sent).
    Pending,
    /// Confirmed by the server.
    Sent,
    /// Refused by the server for a reason that retrying will not fix.
    Failed,
}

impl OutboxState {
    fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> OutboxState {
        match s {
            "sent" => OutboxState::Sent,
            "failed" => OutboxState::Failed,
            _ => OutboxState::Pending,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Send order.
    pub seq: i64,
    pub client_id: Uuid,
    pub request: Request,
    pub state: OutboxState,
    pub attempts: i64,
    /// The last error the server gave (the reason, when `failed`).
    pub error: Option<ErrorBody>,
    pub next_attempt_at: Option<Millis>,
    pub created_at: Millis,
}

/// A state change of an outbox item, as published on the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxChange {
    pub client_id: Uuid,
    pub state: OutboxState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<(OutboxItem, String)> {
    let request: String = r.get(2)?;
    let code: Option<String> = r.get(6)?;
    let message: Option<String> = r.get(7)?;
    let error = code.and_then(|c| {
        serde_json::from_value::<ErrorCode>(serde_json::Value::String(c))
            .ok()
            .map(|code| ErrorBody {
                code,
                message: message.unwrap_or_default(),
            })
    });
    Ok((
        OutboxItem {
            seq: r.get(0)?,
            client_id: parse_uuid(Some(r.get(1)?)).unwrap_or_default(),
            request: Request::ChatSend(papo_protocol::ChatSend {
                id: Uuid::nil(),
                text: String::new(),
            }),
            state: OutboxState::parse(&r.get::<_, String>(3)?),
            attempts: r.get(4)?,
            error,
            next_attempt_at: r.get(5)?,
            created_at: r.get(8)?,
        },
        request,
    ))
}

const ITEM_COLUMNS: &str = "seq, client_id, request, state, attempts, next_attempt_at, \
                            error_code, error_message, created_at";

fn finish_item((mut item, request): (OutboxItem, String)) -> Result<OutboxItem> {
    item.request = serde_json::from_str(&request)
        .map_err(|e| CacheError::Corrupt(format!("outbox request: {e}")))?;
    Ok(item)
}

/// Marks an item sent and gives its local copy the server id and time. Returns whether the
/// item was not already marked sent.
pub(crate) fn confirm_in_tx(
    tx: &Transaction<'_>,
    cid: Uuid,
    event: Option<&LogEvent>,
    _me: &str,
    now: Millis,
) -> Result<bool> {
    let cid_s = cid.to_string();
    let changed = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'sent', updated_at = ?2, next_attempt_at = NULL, \
             error_code = NULL, error_message = NULL WHERE client_id = ?1 AND state != 'sent'",
        )?
        .execute(params![cid_s, now])?;
    if let Some(ev) = event {
        match &ev.body {
            EventBody::ChatMessage(m) => {
                tx.prepare_cached(
                    "UPDATE OR IGNORE messages SET server_id = ?1, at = ?2, sk = ?1, state = 'sent' \
                     WHERE client_id = ?3",
                )?
                .execute(params![m.id, m.at, cid_s])?;
            }
            EventBody::DmMessage(m) => {
                tx.prepare_cached(
                    "UPDATE OR IGNORE messages SET server_id = ?1, at = ?2, sk = ?1, state = 'sent' \
                     WHERE client_id = ?3",
                )?
                .execute(params![m.id, m.at, cid_s])?;
            }
            EventBody::PostCreated(p) => {
                tx.prepare_cached(
                    "UPDATE OR IGNORE posts SET server_id = ?1, at = ?2, sk = ?1, state = 'sent' \
                     WHERE client_id = ?3",
                )?
                .execute(params![p.id, p.at, cid_s])?;
            }
            EventBody::CommentCreated(c) => {
                tx.prepare_cached(
                    "UPDATE OR IGNORE comments SET server_id = ?1, at = ?2, state = 'sent' \
                     WHERE client_id = ?3",
                )?
                .execute(params![c.comment.id, c.comment.at, cid_s])?;
            }
            _ => {}
        }
    }
    // Local copies without a server answer carrying ids still stop looking pending.
    for table in ["messages", "posts", "comments"] {
        tx.execute(
            &format!("UPDATE {table} SET state = 'sent' WHERE client_id = ?1 AND state != 'sent'"),
            [&cid_s],
        )?;
    }
    Ok(changed > 0)
}

fn set_local_state(tx: &Transaction<'_>, cid: &str, state: &str) -> Result<()> {
    for table in ["messages", "posts", "comments"] {
        tx.execute(
            &format!("UPDATE {table} SET state = ?2 WHERE client_id = ?1 AND server_id IS NULL"),
            params![cid, state],
        )?;
    }
    Ok(())
}

impl Cache {
    /// Writes a request to the outbox together with its optimistic local copy.
    pub fn enqueue(&self, me: &str, request: &Request) -> Result<OutboxItem> {
        let now = now_ms();
        let cid = request.client_id();
        let cid_s = cid.to_string();
        let json = serde_json::to_string(request)
            .map_err(|e| CacheError::Corrupt(format!("request: {e}")))?;
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO outbox (client_id, event, request, state, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
            params![cid_s, request.event_name(), json, now],
        )?;
        let seq = tx.last_insert_rowid();
        let local_message = |kind: &str, conversation: &str, text: &str| -> Result<()> {
            tx.execute(
                "INSERT INTO messages (kind, conversation, client_id, sender, text, at, sk, state) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 'pending')",
                params![kind, conversation, cid_s, me, text, now],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE messages SET sk = ?2 WHERE id = ?1",
                params![id, PENDING_SK + id],
            )?;
            touch_conversation(&tx, conversation, now, me, text)
        };
        match request {
            Request::ChatSend(r) => {
                local_message("chat", papo_protocol::conversation::PUBLIC, &r.text)?
            }
            Request::DmSend(r) => {
                local_message("dm", &papo_protocol::conversation::dm(&r.to), &r.text)?
            }
            Request::PostCreate(r) => {
                tx.execute(
                    "INSERT INTO posts (client_id, author, text, at, sk, state) \
                     VALUES (?1, ?2, ?3, ?4, 0, 'pending')",
                    params![cid_s, me, r.text, now],
                )?;
                let id = tx.last_insert_rowid();
                tx.execute(
                    "UPDATE posts SET sk = ?2 WHERE id = ?1",
                    params![id, PENDING_SK + id],
                )?;
            }
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
            Request::ReadMark(r) => crate::cache::set_read(&tx, &r.conversation, r.last_read)?,
        }
        tx.commit()?;
        Ok(OutboxItem {
            seq,
            client_id: cid,
            request: request.clone(),
            state: OutboxState::Pending,
            attempts: 0,
            error: None,
            next_attempt_at: None,
            created_at: now,
        })
    }

    /// The oldest pending item: the only one that may be sent next (order is preserved).
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

    /// All items not yet sent (pending and failed), in order.
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

    /// Counts per state: (pending, sent, failed).
    pub fn outbox_counts(&self) -> Result<(i64, i64, i64)> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'sent'), 0), \
                 COALESCE(SUM(state = 'failed'), 0) FROM outbox",
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

    /// The server refused the request for good.
    pub fn outbox_fail(&self, cid: Uuid, error: &ErrorBody) -> Result<bool> {
        let code = serde_json::to_value(error.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let cid_s = cid.to_string();
        let changed = tx.execute(
            "UPDATE outbox SET state = 'failed', error_code = ?2, error_message = ?3, \
             updated_at = ?4, next_attempt_at = NULL WHERE client_id = ?1 AND state = 'pending'",
            params![cid_s, code, error.message, now_ms()],
        )?;
        set_local_state(&tx, &cid_s, "failed")?;
        tx.commit()?;
        Ok(changed > 0)
    }

    /// A transient failure: keep the item pending, not before `at`.
    pub fn outbox_defer(&self, cid: Uuid, at: Millis, error: &ErrorBody) -> Result<()> {
        let code = serde_json::to_value(error.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let conn = self.writer.lock().unwrap();
        conn.execute(
            "UPDATE outbox SET next_attempt_at = ?2, error_code = ?3, error_message = ?4, \
             updated_at = ?5 WHERE client_id = ?1 AND state = 'pending'",
            params![cid.to_string(), at, code, error.message, now_ms()],
        )?;
        Ok(())
    }

    /// The user asks to try a failed item again. Returns whether it was failed.
    pub fn retry_outbox(&self, cid: Uuid) -> Result<bool> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let cid_s = cid.to_string();
        let changed = tx.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = NULL, \
             updated_at = ?2 WHERE client_id = ?1 AND state = 'failed'",
            params![cid_s, now_ms()],
        )?;
        if changed > 0 {
            set_local_state(&tx, &cid_s, "pending")?;
        }
        tx.commit()?;
        Ok(changed > 0)
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

impl OutboxState {
    /// The wire/SQL spelling.
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}
