//! The offline cache: everything the user has seen, in one SQLite file (WAL, numbered
//! migrations in `migrations/`).
//!
//! Each received log event is applied exactly once: its effects and the cursor advance commit
//! in one transaction, events at or below the stored cursor are skipped, and rows are keyed by
//! server id, so a crash at any point neither loses nor doubles anything. The outbox lives in
//! the same file (see [`crate::outbox`]) so a user action and its optimistic copy are written
//! together.

pub(crate) use crate::rows::read_cursor;
pub use crate::rows::{
    now_ms, AroundPage, CacheError, CommentRow, ConversationPage, ConversationRow, FollowList,
    HitKind, LocalState, MessageRow, PageKey, PostRow, Profile, Quote, Result, SearchHit,
    SharedPost, UnreadCounts, UnreadStart, UNREAD_START_COUNT_CAP,
};
use papo_protocol::{Cursor, LogEvent, Stream};
use rusqlite::{Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

mod apply;
mod drafts;
pub use drafts::MAX_DRAFT_CHARS;
pub use read::MAX_CONVERSATIONS_PAGE;
mod fts;
mod outbox;
mod read;
mod wipe;

/// Migrations, oldest first, run by `refinery` at open: `(name, SQL)`; version N is the Nth.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__initial",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        "V2__outbox_queues_wedged",
        include_str!("../../migrations/0002_outbox_queues_wedged.sql"),
    ),
    (
        "V3__unread_counters",
        include_str!("../../migrations/0003_unread_counters.sql"),
    ),
    (
        "V4__fts_off_apply_path",
        include_str!("../../migrations/0004_fts_off_apply_path.sql"),
    ),
    (
        "V5__drafts",
        include_str!("../../migrations/0005_drafts.sql"),
    ),
    (
        "V6__message_edits",
        include_str!("../../migrations/0006_message_edits.sql"),
    ),
    (
        "V7__client_id_partial_index",
        include_str!("../../migrations/0007_client_id_partial_index.sql"),
    ),
    (
        "V8__fts_prefix_indexes",
        include_str!("../../migrations/0008_fts_prefix_indexes.sql"),
    ),
    (
        "V9__profiles",
        include_str!("../../migrations/0009_profiles.sql"),
    ),
    (
        "V10__replies",
        include_str!("../../migrations/0010_replies.sql"),
    ),
    (
        "V11__shares",
        include_str!("../../migrations/0011_shares.sql"),
    ),
    (
        "V12__removed_comments",
        include_str!("../../migrations/0012_removed_comments.sql"),
    ),
];

/// refinery's history table; a cache without it is from before refinery (or new).
const HISTORY_TABLE: &str = "refinery_schema_history";

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

/// The cache: one writer connection and a small pool of read-only connections over the same
/// WAL file (one per reader thread, see [`crate::cache_thread`]).
pub struct Cache {
    pub(crate) writer: Mutex<Connection>,
    readers: crate::cache_thread::ReaderPool,
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

/// Applies the migrations the file has not seen yet, with refinery (all pending ones in one
/// transaction). A cache from before refinery has only `PRAGMA user_version` = N: its first N
/// migrations are recorded as applied (`Target::FakeVersion`) before the normal run.
/// `user_version` is kept at the latest version afterwards, so an app from before refinery
/// still refuses a cache newer than it knows instead of migrating it again from the start.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    use refinery_core::{error::Kind, Migration, Runner, Target};
    let known = MIGRATIONS.len() as i64;
    let too_new = |found: i64| CacheError::TooNew { found, known };
    let legacy: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if legacy > known {
        return Err(too_new(legacy));
    }
    let list = MIGRATIONS
        .iter()
        .map(|(name, sql)| Migration::unapplied(name, sql))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CacheError::Migration(e.to_string()))?;
    let runner = || {
        Runner::new(&list)
            .set_grouped(true)
            .set_abort_missing(true)
            .set_abort_divergent(true)
    };
    let failed = |e: refinery_core::Error| match e.kind() {
        Kind::MissingVersion(m) if i64::from(m.version()) > known => too_new(m.version().into()),
        _ => CacheError::Migration(e.to_string()),
    };
    let has_history: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [HISTORY_TABLE],
        |r| r.get(0),
    )?;
    if !has_history && legacy > 0 {
        runner()
            .set_target(Target::FakeVersion(legacy as i32))
            .run(conn)
            .map_err(failed)?;
    }
    runner().run(conn).map_err(failed)?;
    conn.pragma_update(None, "user_version", known)?;
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
        // The writer walks the message indexes at up to ~1k insertion points (one per
        // conversation) on every batch: with SQLite's default 2 MiB page cache their pages fall
        // out between batches on a large cache. 32 MiB is allocated only as the file needs it.
        writer.pragma_update(None, "cache_size", -32_768)?;
        migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(crate::cache_thread::READERS);
        for _ in 0..crate::cache_thread::READERS {
            let reader = Connection::open(&path)?;
            configure(&reader)?;
            reader.pragma_update(None, "query_only", true)?;
            readers.push(reader);
        }
        Ok(Cache {
            writer: Mutex::new(writer),
            readers: crate::cache_thread::ReaderPool::new(readers),
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
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        })
    }

    /// The user this cache belongs to.
    pub fn me(&self) -> Result<Option<String>> {
        self.meta("me")
    }

    /// Whether the account held the admin role at its last connection (its `sync`).
    pub fn is_admin(&self) -> Result<bool> {
        Ok(self.meta("admin")?.as_deref() == Some("1"))
    }

    /// Records the role the server told in `sync`.
    pub fn set_admin(&self, admin: bool) -> Result<()> {
        let conn = self.writer.lock().unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('admin', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [if admin { "1" } else { "0" }],
        )?;
        Ok(())
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
        self.read(|conn| {
            let cursor = read_cursor(conn)?;
            let epoch = conn
                .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok((cursor, epoch))
        })
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "../outbox_tests.rs"]
mod outbox_tests;

#[cfg(test)]
#[path = "unread_tests.rs"]
mod unread_tests;

#[cfg(test)]
#[path = "changes_tests.rs"]
mod changes_tests;
