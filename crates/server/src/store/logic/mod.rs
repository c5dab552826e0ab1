//! What the store does, written once over [`Sql`]: accounts, sessions, applying requests
//! (deduplicated, atomic), numbering events, reading the log, cluster presence. The backends
//! (SQLite, Postgres) only provide connections and transactions.

use std::future::Future;

use async_trait::async_trait;
use papo_protocol::Request;

use super::sql::Sql;
use super::{
    AccountDeleted, Actor, Applied, Credentials, Ended, LiveSession, Rotation, SessionRow, Store,
    StoreError, StoredEvent, StreamKey, User, UserId,
};

mod accounts;
mod event_log;
mod idempotency;
mod requests;

use accounts::{
    delete_session, ended_reason, rotate_refresh, session_of, spent_refresh_session, user_of,
};
use event_log::event_of;
pub use event_log::parse_stream_key;
use idempotency::apply_once;

/// A closure run against a connection on a blocking thread.
/// It may run more than once (a Postgres deadlock is retried), hence `Fn`.
pub type Job<T> = Box<dyn Fn(&mut dyn Sql) -> Result<T, StoreError> + Send>;

/// What a backend provides: connections, transactions, and news of other processes' commits.
pub trait Backend: Send + Sync + 'static {
    /// Runs `job` in a write transaction, committed if it returns Ok.
    fn write<T: Send + 'static>(
        &self,
        job: Job<T>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;
    /// Runs `job` on a read connection.
    fn read<T: Send + 'static>(
        &self,
        job: Job<T>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;
    fn epoch(&self) -> &str;
    /// Whether several server processes share this database.
    fn shared(&self) -> bool;
    /// A query whose one row and column is the database's size on disk, in bytes.
    fn size_query(&self) -> &'static str;
    /// Stream heads moved by any process, when shared (Postgres LISTEN).
    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>>;
}

/// A [`Store`] over any [`Backend`].
pub struct SqlStore<B> {
    pub backend: B,
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn epoch(&self) -> Result<String, StoreError> {
        Ok(self.backend.epoch().to_string())
    }

    fn shared(&self) -> bool {
        self.backend.shared()
    }

    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>> {
        self.backend.commits()
    }

    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, StoreError> {
        let (name, hash) = (username.to_string(), password_hash.to_string());
        let res = self
            .backend
            .write(Box::new(move |db| {
                let r = db.query_one(
                    "INSERT INTO users(username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id, username",
                    &[name.as_str().into(), hash.as_str().into(), crate::now_ms().into()],
                )?;
                user_of(&r)
            }))
            .await;
        match res {
            Err(StoreError::Unique(_)) => Err(StoreError::UsernameTaken),
            other => other,
        }
    }

    async fn user_credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        let name = username.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT id, username, password_hash, suspended_at FROM users WHERE username = $1 AND deleted_at IS NULL",
                    &[name.as_str().into()],
                )?
                .map(|r| {
                    Ok(Credentials {
                        user: user_of(&r)?,
                        password_hash: r.text(2)?,
                        suspended: r.opt_int(3)?.is_some(),
                    })
                })
                .transpose()
            }))
            .await
    }

    async fn set_admin(&self, username: &str, admin: bool) -> Result<bool, StoreError> {
        let name = username.to_string();
        self.backend
            .write(Box::new(move |db| {
                Ok(db.exec(
                    "UPDATE users SET admin = $2 WHERE username = $1 AND deleted_at IS NULL",
                    &[name.as_str().into(), i64::from(admin).into()],
                )? == 1)
            }))
            .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT id, username FROM users WHERE id = $1 AND deleted_at IS NULL",
                    &[id.into()],
                )?
                .map(|r| user_of(&r))
                .transpose()
            }))
            .await
    }

    async fn presence_interest(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                let followed = db.query(
                    "SELECT u.username FROM follows f JOIN users u ON u.id = f.followee_id \
                     WHERE f.follower_id = $1 ORDER BY f.created_at DESC LIMIT $2",
                    &[
                        user.into(),
                        (papo_protocol::MAX_WATCH_FOLLOWED as i64).into(),
                    ],
                )?;
                let peers = db.query(
                    "SELECT u.username FROM dm_peers d JOIN users u ON u.id = d.peer_id \
                     WHERE d.user_id = $1 ORDER BY d.last_at DESC LIMIT $2",
                    &[user.into(), (papo_protocol::MAX_WATCH_PEERS as i64).into()],
                )?;
                let mut names = followed
                    .iter()
                    .chain(peers.iter())
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, _>>()?;
                names.sort();
                names.dedup();
                Ok(names)
            }))
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let name = username.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT id, username FROM users WHERE username = $1 AND deleted_at IS NULL",
                    &[name.as_str().into()],
                )?
                .map(|r| user_of(&r))
                .transpose()
            }))
            .await
    }

    async fn create_session(&self, s: &SessionRow, refresh_hash: &str) -> Result<(), StoreError> {
        let (s, h) = (s.clone(), refresh_hash.to_string());
        self.backend
            .write(Box::new(move |db| {
                let now = crate::now_ms();
                // Locks the user's row (both dialects): a deletion running now either committed
                // first (the account is gone: no session) or waits and then sees this session.
                let live = db.query_opt(
                    "UPDATE users SET deleted_at = NULL WHERE id = $1 AND deleted_at IS NULL RETURNING suspended_at",
                    &[s.user_id.into()],
                )?;
                match live {
                    None => return Err(StoreError::UserDeleted),
                    // Suspended since the password was checked.
                    Some(r) if r.opt_int(0)?.is_some() => return Err(StoreError::UserSuspended),
                    Some(_) => {}
                }
                // The user's sessions that ran out go when they sign in again, with their spent
                // tokens, so neither table grows with abandoned devices.
                let expired = db.query(
                    "SELECT id FROM sessions WHERE user_id = $1 AND expires_at <= $2",
                    &[s.user_id.into(), now.into()],
                )?;
                for r in expired {
                    delete_session(db, &r.text(0)?)?;
                }
                db.exec(
                    "INSERT INTO sessions(id, user_id, refresh_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[s.id.as_str().into(), s.user_id.into(), h.as_str().into(), s.expires_at.into(), now.into()],
                )?;
                Ok(())
            }))
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<LiveSession>, StoreError> {
        let id = id.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT s.id, s.user_id, s.expires_at, u.admin FROM sessions s \
                     JOIN users u ON u.id = s.user_id WHERE s.id = $1",
                    &[id.as_str().into()],
                )?
                .map(|r| {
                    Ok(LiveSession {
                        session: session_of(&r)?,
                        admin: r.int(3)? != 0,
                    })
                })
                .transpose()
            }))
            .await
    }

    async fn ended_session(&self, id: &str, now: i64) -> Result<Option<Ended>, StoreError> {
        let id = id.to_string();
        self.backend
            .read(Box::new(move |db| {
                db.query_opt(
                    "SELECT reason FROM ended_sessions WHERE id = $1 AND expires_at > $2",
                    &[id.as_str().into(), now.into()],
                )?
                .map(|r| ended_reason(&r.text(0)?))
                .transpose()
            }))
            .await
    }

    async fn rotate_refresh(
        &self,
        old_refresh_hash: &str,
        new_refresh_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (old_refresh_hash.to_string(), new_refresh_hash.to_string());
        self.backend
            .write(Box::new(move |db| {
                rotate_refresh(db, &old, &new, new_expires_at, now)
            }))
            .await
    }

    async fn delete_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let h = refresh_hash.to_string();
        self.backend
            .write(Box::new(move |db| {
                let current = db
                    .query_opt(
                        "SELECT id FROM sessions WHERE refresh_hash = $1",
                        &[h.as_str().into()],
                    )?
                    .map(|r| r.text(0))
                    .transpose()?;
                let id = match current {
                    Some(id) => id,
                    None => match spent_refresh_session(db, &h)? {
                        Some(id) => id,
                        None => return Ok(None),
                    },
                };
                delete_session(db, &id)?;
                Ok(Some(id))
            }))
            .await
    }

    async fn delete_account(&self, user: &User) -> Result<AccountDeleted, StoreError> {
        let user = user.clone();
        self.backend
            .write(Box::new(move |db| {
                accounts::delete_account(db, &user, crate::now_ms())
            }))
            .await
    }

    async fn apply(&self, actor: &Actor, request: &Request) -> Result<Applied, StoreError> {
        let (actor, request) = (actor.clone(), request.clone());
        // The clock is read inside the transaction so that event times follow commit order
        // within a stream as closely as the clock allows.
        self.backend
            .write(Box::new(move |db| {
                apply_once(db, &actor, &request, crate::now_ms())
            }))
            .await
    }

    async fn read_events(
        &self,
        stream: StreamKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                db.query(
                    "SELECT seq, at, actor_id, cid, body FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[stream.db_key().into(), (after as i64).into(), (limit as i64).into()],
                )?
                .iter()
                .map(|r| event_of(stream, r))
                .collect()
            }))
            .await
    }

    async fn head(&self, stream: StreamKey) -> Result<u64, StoreError> {
        self.backend
            .read(Box::new(move |db| {
                Ok(db
                    .query_opt(
                        "SELECT head FROM streams WHERE key = $1",
                        &[stream.db_key().into()],
                    )?
                    .map(|r| r.int(0))
                    .transpose()?
                    .unwrap_or(0) as u64)
            }))
            .await
    }

    async fn sync_node_stats(
        &self,
        node: &str,
        stats: String,
        alive_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let node = node.to_string();
        self.backend
            .write(Box::new(move |db| {
                let now = crate::now_ms();
                db.exec(
                    "INSERT INTO nodes(id, seen_at, stats) VALUES ($1, $2, $3) \
                     ON CONFLICT(id) DO UPDATE SET seen_at = excluded.seen_at, stats = excluded.stats",
                    &[node.as_str().into(), now.into(), stats.as_str().into()],
                )?;
                db.query(
                    "SELECT stats FROM nodes WHERE seen_at >= $1 AND stats IS NOT NULL ORDER BY id",
                    &[(now - alive_ms).into()],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect()
            }))
            .await
    }

    async fn database_bytes(&self) -> Result<u64, StoreError> {
        let sql = self.backend.size_query();
        self.backend
            .read(Box::new(move |db| {
                Ok(db.query_one(sql, &[])?.int(0)?.max(0) as u64)
            }))
            .await
    }

    async fn sync_presence(
        &self,
        node: &str,
        changes: Vec<(String, i64)>,
        alive_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let node = node.to_string();
        self.backend
            .write(Box::new(move |db| {
                let now = crate::now_ms();
                db.exec(
                    "INSERT INTO nodes(id, seen_at) VALUES ($1, $2) ON CONFLICT(id) DO UPDATE SET seen_at = excluded.seen_at",
                    &[node.as_str().into(), now.into()],
                )?;
                for (username, devices) in &changes {
                    if *devices > 0 {
                        db.exec(
                            "INSERT INTO presence(node_id, username, devices) VALUES ($1, $2, $3)
                             ON CONFLICT(node_id, username) DO UPDATE SET devices = excluded.devices",
                            &[node.as_str().into(), username.as_str().into(), (*devices).into()],
                        )?;
                    } else {
                        db.exec(
                            "DELETE FROM presence WHERE node_id = $1 AND username = $2",
                            &[node.as_str().into(), username.as_str().into()],
                        )?;
                    }
                }
                // Forget nodes that stopped beating long ago (their users went offline when
                // they stopped counting as alive).
                db.exec(
                    "DELETE FROM presence WHERE node_id IN (SELECT id FROM nodes WHERE seen_at < $1)",
                    &[(now - 10 * alive_ms).into()],
                )?;
                db.exec("DELETE FROM nodes WHERE seen_at < $1", &[(now - 10 * alive_ms).into()])?;
                db.query(
                    "SELECT DISTINCT p.username FROM presence p JOIN nodes n ON n.id = p.node_id
                     WHERE n.seen_at >= $1 ORDER BY p.username",
                    &[(now - alive_ms).into()],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect()
            }))
            .await
    }
}
