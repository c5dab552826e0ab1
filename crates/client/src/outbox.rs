//! The outbox: user actions waiting for the server, one row per request keyed by client id.
//!
//! An action is written in the same transaction as its optimistic local copy. Each item belongs
//! to a *queue* ([`queue_of`]: the public chat, one DM, the feed, follows, the read marks of one
//! conversation). Once the session is open the supervisor (see `outbox_sender`) sends the
//! oldest `pending` item of every queue, one in flight per queue (so the server applies a
//! queue's items in order while one stuck queue never holds up another), and marks it `sent`
//! when the server's reply or the log event echoes its client id; the local copy then takes the
//! server id and time. Resends reuse the client id, and the server deduplicates by it.
//!
//! Transient errors keep an item `pending` with a `next_attempt_at` (backoff). An item is
//! *wedged* (matrix-rust-sdk `send_queue` calls it that) when a person must look at it: the
//! server refused it for good ([`WedgeReason::Refused`]) or it got no answer
//! [`MAX_UNANSWERED`] times ([`WedgeReason::NoAnswer`]). Wedged items do not block their queue;
//! the user may [`Cache::retry_outbox`] (same client id, back at its place in the queue) or
//! [`Cache::discard_outbox`] them. Sent rows are kept for [`SENT_RETENTION_MS`] (so a late
//! echo or `papo-cli send --wait` still finds them), then pruned.

use crate::rows::{parse_uuid, CacheError, Result};
use papo_protocol::{conversation, ErrorBody, ErrorCode, EventBody, LogEvent, Millis, Request};
use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// State of an outbox item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting to be sent (or re-sent).
    Pending,
    /// Confirmed by the server.
    Sent,
    /// Stopped until a person retries or discards it; see [`WedgeReason`].
    Wedged,
}

impl OutboxState {
    fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Wedged => "wedged",
        }
    }
    fn parse(s: &str) -> OutboxState {
        match s {
            "sent" => OutboxState::Sent,
            "wedged" => OutboxState::Wedged,
            _ => OutboxState::Pending,
        }
    }
}

/// Sends without any answer (reply or log echo) within the request timeout after which an item
/// is wedged with [`WedgeReason::NoAnswer`].
pub const MAX_UNANSWERED: i64 = 5;

/// How long confirmed rows stay in the outbox before they are pruned (10 minutes).
pub const SENT_RETENTION_MS: Millis = 10 * 60 * 1000;

/// Why an outbox item is wedged. Serialized with a stable `code` (`refused`, `no_answer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum WedgeReason {
    /// The server refused the request with a non-transient error (see
    /// [`ErrorCode::is_transient`]); sending it again unchanged will not help.
    #[error("refused by the server: {}", .error.message)]
    Refused { error: ErrorBody },
    /// The server never answered, `attempts` times in a row (the connection or the server may
    /// be at fault; it may even have been applied, which a retry with the same id sorts out).
    #[error("no answer from the server after {attempts} attempts")]
    NoAnswer {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        attempts: i64,
    },
}

impl WedgeReason {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            WedgeReason::Refused { .. } => "refused",
            WedgeReason::NoAnswer { .. } => "no_answer",
        }
    }
}

/// The ordering queue of a request: items of one queue are sent in order, one at a time;
/// different queues go on independently.
pub fn queue_of(request: &Request) -> String {
    match request {
        Request::ChatSend(_) => conversation::PUBLIC.to_string(),
        Request::DmSend(r) => conversation::dm(&r.to),
        Request::ReadMark(r) => format!("read:{}", r.conversation),
        // The cache puts these in the message's conversation when it holds the message.
        Request::MessageEdit(_) | Request::MessageDelete(_) => "messages".to_string(),
        Request::UserFollow(_) | Request::UserUnfollow(_) => "follows".to_string(),
        Request::PostCreate(_)
        | Request::PostEdit(_)
        | Request::PostDelete(_)
        | Request::PostLike(_)
        | Request::PostUnlike(_)
        | Request::PostShare(_)
        | Request::PostUnshare(_)
        | Request::CommentCreate(_) => "feed".to_string(),
        // Never queued (sent on /admin): see `Cache::enqueue`.
        Request::AdminRemovePost(_)
        | Request::AdminRemoveComment(_)
        | Request::AdminSuspend(_)
        | Request::AdminUnsuspend(_) => "admin".to_string(),
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Send order.
    pub seq: i64,
    pub client_id: Uuid,
    /// The ordering queue ([`queue_of`]): `public`, `dm:<peer>`, `feed`, `follows`,
    /// `read:<conversation>`.
    pub queue: String,
    pub request: Request,
    pub state: OutboxState,
    /// Times it was emitted (counting resends).
    pub attempts: i64,
    /// Sends in a row that got no answer in time.
    pub unanswered: i64,
    /// The last error the server gave.
    pub error: Option<ErrorBody>,
    /// Why it is wedged (only when `state` is `Wedged`).
    pub wedge: Option<WedgeReason>,
    pub next_attempt_at: Option<Millis>,
    pub created_at: Millis,
}

impl OutboxItem {
    /// Stopped until a person retries or discards it ([`OutboxItem::wedge`] says why).
    pub fn is_wedged(&self) -> bool {
        self.state == OutboxState::Wedged
    }
}

/// A state change of an outbox item, as published on the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OutboxChange {
    pub client_id: Uuid,
    pub state: OutboxState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub error: Option<ErrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub wedge: Option<WedgeReason>,
}

impl OutboxChange {
    /// The item was confirmed.
    pub fn sent(client_id: Uuid) -> Self {
        OutboxChange {
            client_id,
            state: OutboxState::Sent,
            error: None,
            wedge: None,
        }
    }
    /// The item was wedged.
    pub fn wedged(client_id: Uuid, reason: WedgeReason) -> Self {
        OutboxChange {
            client_id,
            state: OutboxState::Wedged,
            error: match &reason {
                WedgeReason::Refused { error } => Some(error.clone()),
                WedgeReason::NoAnswer { .. } => None,
            },
            wedge: Some(reason),
        }
    }
}

pub(crate) fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<(OutboxItem, String)> {
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
    let wedge: Option<String> = r.get(11)?;
    let wedge = wedge.and_then(|w| serde_json::from_str::<WedgeReason>(&w).ok());
    Ok((
        OutboxItem {
            seq: r.get(0)?,
            client_id: parse_uuid(Some(r.get(1)?)).unwrap_or_default(),
            queue: r.get(9)?,
            unanswered: r.get(10)?,
            wedge,
            request: Request::ChatSend(papo_protocol::ChatSend {
                id: Uuid::nil(),
                text: String::new(),
                reply_to: None,
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

pub(crate) const ITEM_COLUMNS: &str = "seq, client_id, request, state, attempts, next_attempt_at, \
                            error_code, error_message, created_at, queue, unanswered, wedge";

pub(crate) fn finish_item((mut item, request): (OutboxItem, String)) -> Result<OutboxItem> {
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
             error_code = NULL, error_message = NULL, wedge = NULL \
             WHERE client_id = ?1 AND state != 'sent'",
        )?
        .execute(params![cid_s, now])?;
    if changed > 0 {
        prune_sent_in_tx(tx, now - SENT_RETENTION_MS)?;
    }
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

/// Deletes the sent rows last touched before `before`.
pub(crate) fn prune_sent_in_tx(tx: &Transaction<'_>, before: Millis) -> Result<usize> {
    Ok(tx
        .prepare_cached("DELETE FROM outbox WHERE state = 'sent' AND updated_at < ?1")?
        .execute([before])?)
}

pub(crate) fn error_code_str(error: &ErrorBody) -> Option<String> {
    serde_json::to_value(error.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

pub(crate) fn set_local_state(tx: &Transaction<'_>, cid: &str, state: &str) -> Result<()> {
    for table in ["messages", "posts", "comments"] {
        tx.execute(
            &format!("UPDATE {table} SET state = ?2 WHERE client_id = ?1 AND server_id IS NULL"),
            params![cid, state],
        )?;
    }
    Ok(())
}

impl OutboxState {
    /// The wire/SQL spelling.
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}
