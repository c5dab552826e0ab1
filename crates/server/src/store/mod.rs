//! Storage behind one trait, so the embedded SQLite default and a shared database can be swapped
//! without touching the socket layer.

#[cfg(test)]
mod conformance;
pub mod logic;
mod migrations;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;
use papo_protocol::{ErrorBody, LogEvent, Reply, Request};

/// Database row id of a user.
pub type UserId = i64;

/// An event stream in the log: the shared public stream, or one user's private stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKey {
    Public,
    User(UserId),
}

impl StreamKey {
    /// The key as stored in the `streams` and `events` tables.
    pub fn db_key(self) -> String {
        match self {
            StreamKey::Public => "public".to_string(),
            StreamKey::User(id) => format!("u:{id}"),
        }
    }
}

/// An event as stored: the wire event plus who caused it, so the client id can be shown to the
/// author only.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: LogEvent,
    pub actor: Option<UserId>,
    /// The event's JSON as every reader but its author sees it (no `cid`), encoded once on first
    /// use and shared by every socket it is sent to.
    shared_json: std::sync::OnceLock<Box<serde_json::value::RawValue>>,
}

impl PartialEq for StoredEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event && self.actor == other.actor
    }
}

impl StoredEvent {
    pub fn new(event: LogEvent, actor: Option<UserId>) -> Self {
        StoredEvent {
            event,
            actor,
            shared_json: std::sync::OnceLock::new(),
        }
    }

    /// Whether `reader` sees this event with its client id (it is the author, and there is one).
    pub fn shows_cid_to(&self, reader: UserId) -> bool {
        self.actor == Some(reader) && self.event.cid.is_some()
    }

    /// The event as `reader` may see it: the client id only for its author.
    pub fn for_reader(&self, reader: UserId) -> LogEvent {
        let mut ev = self.event.clone();
        if !self.shows_cid_to(reader) {
            ev.cid = None;
        }
        ev
    }

    /// The JSON every reader but the author gets, encoded the first time it is asked for.
    pub fn shared_json(&self) -> &serde_json::value::RawValue {
        self.shared_json.get_or_init(|| {
            let mut ev = self.event.clone();
            ev.cid = None;
            encode(&ev)
        })
    }

    /// The JSON of the event as `reader` may see it, freshly encoded (for its author).
    pub fn json_for(&self, reader: UserId) -> Box<serde_json::value::RawValue> {
        encode(&self.for_reader(reader))
    }
}

fn encode(ev: &LogEvent) -> Box<serde_json::value::RawValue> {
    // A LogEvent is plain data (strings, numbers, maps with string keys): encoding cannot fail.
    serde_json::value::to_raw_value(ev).expect("a log event encodes as JSON")
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
}

/// Who is acting: the authenticated user of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: UserId,
    pub username: String,
}

/// The outcome of applying a request.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The reply to send (fresh, or the stored one for a repeated client id).
    pub reply: Reply,
    /// Events written by this request, to hand to live readers. Empty on a repeat.
    pub written: Vec<(StreamKey, StoredEvent)>,
    /// Device sessions this request ended (a suspension): their sockets must be disconnected.
    pub ended_sessions: Vec<String>,
    /// A DM that made its sender and this recipient DM peers for the first time (each now
    /// receives the other's presence). None otherwise, and on a repeat.
    pub new_dm_peer: Option<User>,
}

/// What deleting an account did (see [`Store::delete_account`]).
#[derive(Debug, Default)]
pub struct AccountDeleted {
    /// The device sessions it ended: their sockets must be disconnected.
    pub sessions: Vec<String>,
    /// The events it wrote (follows undone), to hand to live readers.
    pub written: Vec<(StreamKey, StoredEvent)>,
}

/// A device session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: UserId,
    pub expires_at: i64,
}

/// A user's password hash and standing, for signing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub suspended: bool,
}

/// Why a device session that no longer exists was ended for its device (kept until its
/// refresh token would have expired, so the device is told when it comes back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its account was deleted: the device erases what it holds of it.
    AccountDeleted,
    /// Its account is suspended by a moderator (and still is).
    AccountSuspended,
}

/// A session found by id, with its account's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub session: SessionRow,
    /// The account holds the admin role.
    pub admin: bool,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is spent and the session now holds the new one.
    Rotated(SessionRow),
    /// The token had already been exchanged: someone holds a copy. The whole session (every
    /// refresh token of its family, and with it its access tokens) is deleted.
    Reused { session_id: String },
    /// Unknown, expired or logged out.
    Unknown,
    /// A session ended by its account's deletion or suspension.
    Ended(Ended),
}

/// Errors of a store call, classified where they arise (SQLite extended result codes, Postgres
/// SQLSTATEs), so that callers decide by variant and never by the text of a message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username already taken")]
    UsernameTaken,
    /// The account was deleted (a session for it cannot be opened any more).
    #[error("the account was deleted")]
    UserDeleted,
    /// The account is suspended (a session for it cannot be opened until it is lifted).
    #[error("the account is suspended")]
    UserSuspended,
    /// A write broke a uniqueness rule (unique index or primary key).
    #[error("unique constraint violated: {0}")]
    Unique(String),
    /// The database gave up this transaction because of concurrent ones (deadlock,
    /// serialization failure): nothing was written, running it again may succeed.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The connection to the database is gone (closed socket, or the server ended the
    /// session). Nothing it had not committed was written.
    #[error("database connection lost: {0}")]
    ConnectionLost(String),
    /// The database was migrated by a newer server than this one.
    #[error("database schema version {found} is newer than this server ({known})")]
    SchemaTooNew { found: String, known: usize },
    /// What the store read back is not what it wrote (a bug, or a damaged database).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// Any other failure of the database or of the store's own machinery.
    #[error("database error: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Unique(e.to_string())
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Db(e.to_string()),
        }
    }
}

/// Everything the server persists.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Identifies this event log; changes only when the database is recreated.
    async fn epoch(&self) -> Result<String, StoreError>;

    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, StoreError>;
    /// The live user of that name, with its password hash and whether it is suspended.
    async fn user_credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError>;
    /// Grants (`true`) or revokes the admin role; false when there is no such live user.
    async fn set_admin(&self, username: &str, admin: bool) -> Result<bool, StoreError>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// The users whose presence `user` always receives: the most recently followed (at most
    /// [`papo_protocol::MAX_WATCH_FOLLOWED`]) and the most recent DM peers (at most
    /// [`papo_protocol::MAX_WATCH_PEERS`]), sorted, without repeats.
    async fn presence_interest(&self, user: UserId) -> Result<Vec<String>, StoreError>;

    async fn create_session(
        &self,
        session: &SessionRow,
        refresh_hash: &str,
    ) -> Result<(), StoreError>;
    async fn session(&self, id: &str) -> Result<Option<LiveSession>, StoreError>;
    /// Why session `id` was ended, when its account was deleted or is suspended (kept until
    /// its refresh token would have expired; a lifted suspension forgets it).
    async fn ended_session(&self, id: &str, now: i64) -> Result<Option<Ended>, StoreError>;
    /// Replaces the refresh token of the session that holds `old_refresh_hash` (remembering the
    /// old one as spent until it would have expired); if `old_refresh_hash` was already spent,
    /// deletes its session instead (see [`Rotation`]).
    async fn rotate_refresh(
        &self,
        old_refresh_hash: &str,
        new_refresh_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<Rotation, StoreError>;
    /// Deletes the session holding this refresh token, current or already spent; returns its id.
    async fn delete_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Deletes an account for good, atomically: its device sessions end, its follows in both
    /// directions are undone (events written), its private stream, notifications, read marks
    /// and idempotency records go, and the user row is marked deleted, so that lookups by name
    /// or id no longer find it while the name stays taken.
    async fn delete_account(&self, user: &User) -> Result<AccountDeleted, StoreError>;

    /// Applies a request exactly once per (actor, client id), atomically: its effects, its
    /// events and the stored reply commit together or not at all.
    async fn apply(&self, actor: &Actor, request: &Request) -> Result<Applied, StoreError>;

    /// Events of a stream with `seq > after`, in order, at most `limit`.
    async fn read_events(
        &self,
        stream: StreamKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The last sequence number of a stream (0 if empty).
    async fn head(&self, stream: StreamKey) -> Result<u64, StoreError>;

    /// Whether several server processes share this store (then presence and stream heads must
    /// be learned from it, not only from this process).
    fn shared(&self) -> bool;

    /// Stream heads advanced by any process sharing the store, as they commit. None when this
    /// process is the only writer.
    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>>;

    /// Records this node's last statistics (JSON) and that it is alive, and returns the last
    /// statistics of every node seen within `alive_ms`, this one included, sorted by node id.
    async fn sync_node_stats(
        &self,
        node: &str,
        stats: String,
        alive_ms: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Size of the database on disk, in bytes.
    async fn database_bytes(&self) -> Result<u64, StoreError>;

    /// Records this node's presence changes (username, devices here; 0 = gone) and that the node
    /// is alive, and returns everyone online on any node seen within `alive_ms`.
    async fn sync_presence(
        &self,
        node: &str,
        changes: Vec<(String, i64)>,
        alive_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
}

/// A permanent error reply for a request, as stored for idempotency.
pub fn error_reply(request: &Request, error: ErrorBody) -> Reply {
    Reply::err(Some(request.client_id()), request.event_name(), error)
}
