//! Unread counters, maintained where messages and read marks are written.
//!
//! A message counts as unread for its conversation when someone else sent it and its server id
//! is past the conversation's read mark. Instead of counting those rows after every event (a
//! `GROUP BY` over every message), the counter of a conversation changes in the same
//! transaction as the row that changes it: a new message adds one, a read mark moving forward
//! subtracts the messages it passed over (a range read on the `(conversation, server_id)`
//! index, proportional to what was just read). Reading the totals is one small table.

use crate::rows::{Result, UnreadCounts};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// `n` more unread messages in a conversation (new messages of others past its read mark; the
/// apply path counts them per batch).
pub(crate) fn add(tx: &Transaction<'_>, conversation: &str, n: i64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO unread (conversation, count) VALUES (?1, ?2) \
         ON CONFLICT(conversation) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(rusqlite::params![conversation, n])?;
    Ok(())
}

/// An unread message of a conversation was deleted by its sender: one fewer.
pub(crate) fn remove_one(tx: &Transaction<'_>, conversation: &str) -> Result<()> {
    tx.prepare_cached("UPDATE unread SET count = MAX(count - 1, 0) WHERE conversation = ?1")?
        .execute([conversation])?;
    Ok(())
}

/// The read mark of a conversation moved from `old` to `new` (`new > old`): the messages of
/// others in between are read now.
pub(crate) fn read_moved(
    tx: &Transaction<'_>,
    conversation: &str,
    old: i64,
    new: i64,
) -> Result<()> {
    let me: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'me'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let passed: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM messages \
             WHERE conversation = ?1 AND server_id > ?2 AND server_id <= ?3 AND sender != ?4 \
               AND deleted = 0",
        )?
        .query_row(
            params![conversation, old, new, me.unwrap_or_default()],
            |r| r.get(0),
        )?;
    if passed > 0 {
        tx.prepare_cached("UPDATE unread SET count = MAX(count - ?2, 0) WHERE conversation = ?1")?
            .execute(params![conversation, passed])?;
    }
    Ok(())
}

/// The read mark of a conversation (0 = nothing read).
pub(crate) fn last_read(tx: &Transaction<'_>, conversation: &str) -> Result<i64> {
    Ok(tx
        .prepare_cached("SELECT last_read FROM read_state WHERE conversation = ?1")?
        .query_row([conversation], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The maintained counters, read on `c` (a reader, or the writer inside a transaction).
/// The unread total: one row per conversation with unread messages, no scan of the messages.
pub(crate) fn total_in(c: &Connection) -> Result<i64> {
    Ok(
        c.prepare_cached("SELECT COALESCE(SUM(count), 0) FROM unread")?
            .query_row([], |r| r.get(0))?,
    )
}

pub(crate) fn counts_in(c: &Connection) -> Result<UnreadCounts> {
    counts(
        c,
        "SELECT conversation, count FROM unread WHERE count > 0 ORDER BY conversation",
        [],
    )
}

/// `(conversation, count)` rows and their total.
pub(crate) fn counts(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<UnreadCounts> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(params, |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let conversations = rows.collect::<Result<Vec<_>, _>>()?;
    let total = conversations.iter().map(|(_, n)| n).sum();
    Ok(UnreadCounts {
        total,
        conversations,
    })
}
