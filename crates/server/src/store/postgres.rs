//! The shared store for several server processes: Postgres.
//!
//! Same logic as SQLite (store/logic/). Differences that matter:
//! - Writers on different nodes run concurrently; a stream's head row is locked by the
//!   `UPDATE … RETURNING` that numbers an event, so sequence numbers stay gap-free and commit in
//!   order. Transactions that deadlock (two DMs crossing) are retried.
//! - Every numbered event also does `pg_notify('papo_commits', '<stream>:<seq>')`, delivered
//!   to every node at commit, in commit order: that is how a node learns that another one
//!   wrote to a stream its sockets read.
//!
//! Connections are `tokio-postgres` clients in a `deadpool-postgres` pool; each connection's
//! I/O runs as a task on the server's runtime. The shared logic is synchronous (`Sql`), so a job
//! runs on a blocking thread holding a pooled client, and each statement waits for its answer
//! with `Handle::block_on` (what the synchronous `postgres` crate does, minus its private
//! runtime per connection).

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{AsyncMessage, NoTls};

use super::logic::{parse_stream_key, Backend, Job, SqlStore};
use super::migrations::{self, Dialect};
use super::sql::{Row, Sql, Val};
use super::{StoreError, StreamKey};

/// The Postgres store.
pub type PostgresStore = SqlStore<PostgresBackend>;

/// Migrations (store/migrations.rs) run under this advisory lock so that nodes starting
/// together do not race; refinery itself does not lock.
const MIGRATION_LOCK: i64 = 0x7061_706f; // "papo"
const CHANNEL: &str = "papo_commits";
/// Most connections a process uses at once (the pool's size); further queries wait for one.
/// Several nodes together must stay under the server's `max_connections`.
const MAX_CONNECTIONS: usize = 16;

pub struct PostgresBackend {
    pool: Pool,
    /// The runtime the connections' I/O tasks run on; blocking jobs wait on it.
    runtime: Handle,
    epoch: String,
    commits: Mutex<Option<mpsc::UnboundedReceiver<(StreamKey, u64)>>>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if e.is_closed() {
            return StoreError::ConnectionLost(e.to_string());
        }
        let Some(code) = e.code() else {
            return StoreError::Db(e.to_string());
        };
        let text = format!("{e} (sqlstate {})", code.code());
        if *code == SqlState::UNIQUE_VIOLATION {
            StoreError::Unique(text)
        } else if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
        {
            StoreError::Conflict(text)
        } else if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            // The server ended the session (57P01 / 57P02 / 57P03).
            StoreError::ConnectionLost(text)
        } else {
            StoreError::Db(text)
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            other => StoreError::Db(format!("Postgres connection pool: {other}")),
        }
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) => v.to_sql(ty, out),
            Val::Text(v) => v.as_str().to_sql(ty, out),
            Val::NullInt | Val::NullText => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

fn params(vals: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn row_of(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?
                .map_or(Val::NullInt, Val::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map_or(Val::NullInt, |v| Val::Int(v as i64))
        } else {
            r.try_get::<_, Option<String>>(i)?
                .map_or(Val::NullText, Val::Text)
        };
        out.push(v);
    }
    Ok(Row(out))
}

/// A transaction on a pooled connection, used from a blocking thread.
struct Tx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    runtime: &'a Handle,
}

impl Sql for Tx<'_> {
    fn exec(&mut self, sql: &str, vals: &[Val]) -> Result<u64, StoreError> {
        let tx = &self.tx;
        self.runtime.block_on(async {
            let stmt = tx.prepare_cached(sql).await?;
            Ok(tx.execute(&stmt, &params(vals)).await?)
        })
    }
    fn query(&mut self, sql: &str, vals: &[Val]) -> Result<Vec<Row>, StoreError> {
        let tx = &self.tx;
        let rows = self.runtime.block_on(async {
            let stmt = tx.prepare_cached(sql).await?;
            tx.query(&stmt, &params(vals)).await
        })?;
        rows.iter().map(row_of).collect()
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.tx.batch_execute(sql))?)
    }
    fn announce(&mut self, stream_key: &str, seq: u64) -> Result<(), StoreError> {
        self.exec(
            "SELECT pg_notify($1, $2)",
            &[
                Val::Text(CHANNEL.into()),
                Val::Text(format!("{stream_key}:{seq}")),
            ],
        )?;
        Ok(())
    }
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

/// Baselines a database from before refinery at its `schema_migrations` version, renumbers a
/// history recorded before the two backends shared one, runs the pending migrations, and keeps
/// `schema_migrations` at the latest version for older binaries.
async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let known = migrations::known();
    let list = migrations::list(Dialect::Postgres)?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .await?;
    let legacy: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if legacy as usize > known {
        return Err(migrations::newer(legacy, known));
    }
    let has_history: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&migrations::HISTORY_TABLE],
        )
        .await?
        .get(0);
    if has_history {
        renumber_separate_history(client).await?;
    } else if legacy > 0 {
        // The runner before refinery numbered like the separate history: its version N is
        // shared version N + 1 (shared version 2 is part of its version 1).
        migrations::baseline(&list, legacy + 1, known)?
            .run_async(client)
            .await
            .map_err(|e| migrations::err(e, known))?;
    }
    migrations::runner(&list)
        .run_async(client)
        .await
        .map_err(|e| migrations::err(e, known))?;
    client
        .execute(
            "INSERT INTO schema_migrations(version) SELECT generate_series(1, $1::BIGINT) \
             ON CONFLICT DO NOTHING",
            &[&(known as i64)],
        )
        .await?;
    Ok(())
}

/// How Postgres numbered its versions while it had a history of its own: without SQLite's
/// version 2 (presence), whose tables its version 1 already created.
const SEPARATE_HISTORY: &[(i32, &str)] =
    &[(2, "spent_refresh"), (3, "message_edits"), (4, "dm_peers")];

/// A database migrated while Postgres had its own numbering is recorded again under the shared
/// one, in one transaction: its versions from 2 on move up by one (with the checksums refinery
/// computes for their new numbers) and shared version 2 is recorded as applied. The schema
/// itself is already what those versions build, so no SQL of theirs runs. Runs once: after
/// it, version 2 is `presence`.
async fn renumber_separate_history(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let history = migrations::HISTORY_TABLE;
    let second: Option<String> = client
        .query_opt(
            &format!("SELECT name FROM {history} WHERE version = 2"),
            &[],
        )
        .await?
        .map(|r| r.get(0));
    if second.as_deref() != Some(SEPARATE_HISTORY[0].1) {
        return Ok(());
    }
    let list = migrations::list(Dialect::Postgres)?;
    let checksum = |version: i32| {
        list.iter()
            .find(|m| m.version() == version)
            .map(|m| m.checksum().to_string())
            .ok_or_else(|| migrations::newer(version, list.len()))
    };
    let tx = client.transaction().await?;
    // Highest first, so that no version number is ever held twice.
    for (old, name) in SEPARATE_HISTORY.iter().rev() {
        tx.execute(
            &format!(
                "UPDATE {history} SET version = $1, checksum = $2 WHERE version = $3 AND name = $4"
            ),
            &[&(old + 1), &checksum(old + 1)?, old, name],
        )
        .await?;
    }
    tx.execute(
        &format!(
            "INSERT INTO {history}(version, name, applied_on, checksum) \
             SELECT 2, 'presence', applied_on, $1 FROM {history} WHERE version = 1"
        ),
        &[&checksum(2)?],
    )
    .await?;
    tx.commit().await?;
    tracing::info!("schema history renumbered to the version list shared with SQLite");
    Ok(())
}

/// Listens for commit notifications from every node and forwards them, forever, reconnecting
/// after failures. After each (re)connect it reports every stream head, since notifications
/// sent while it was away are lost.
async fn listen(config: tokio_postgres::Config, tx: mpsc::UnboundedSender<(StreamKey, u64)>) {
    loop {
        let result = listen_once(&config, &tx).await;
        if tx.is_closed() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "commit listener lost its connection; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &mpsc::UnboundedSender<(StreamKey, u64)>,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection is driven here; notifications queue until the heads below are sent.
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if notes_tx.send(n).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    let forward = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        for r in client.query("SELECT key, head FROM streams", &[]).await? {
            let key: String = r.get(0);
            let head: i64 = r.get(1);
            if let Some(k) = parse_stream_key(&key) {
                let _ = tx.send((k, head as u64));
            }
        }
        while let Some(n) = notes.recv().await {
            let Some((key, seq)) = n.payload().rsplit_once(':') else {
                continue;
            };
            if let (Some(k), Ok(seq)) = (parse_stream_key(key), seq.parse::<u64>()) {
                if tx.send((k, seq)).is_err() {
                    return Ok(()); // the server is gone
                }
            }
        }
        Ok::<(), StoreError>(())
    };
    let forwarded = forward.await;
    drop(client);
    let driven = driver
        .await
        .map_err(|e| StoreError::Db(format!("commit listener failed: {e}")))?;
    forwarded?;
    Ok(driven?)
}

impl SqlStore<PostgresBackend> {
    /// Connects, migrates, and starts listening for other nodes' commits.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("bad Postgres URL: {e}")))?;
        Self::open_with(config).await
    }

    /// Like [`open`](Self::open), from a parsed configuration.
    pub async fn open_with(config: tokio_postgres::Config) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .build()
            .map_err(|e| StoreError::Db(format!("Postgres connection pool: {e}")))?;
        let mut client: Object = pool.get().await?;
        migrate(&mut client).await?;
        let candidate = uuid::Uuid::new_v4().simple().to_string();
        client
            .execute(
                "INSERT INTO meta(key, value) VALUES ('epoch', $1) ON CONFLICT DO NOTHING",
                &[&candidate],
            )
            .await?;
        let epoch: String = client
            .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])
            .await?
            .get(0);
        drop(client);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(listen(config, tx));
        Ok(SqlStore {
            backend: PostgresBackend {
                pool,
                runtime: Handle::current(),
                epoch,
                commits: Mutex::new(Some(rx)),
            },
        })
    }
}

/// Whether a failure means the connection itself is gone: such a connection is never returned
/// to the pool.
fn is_connection_lost(e: &StoreError, client: &Object) -> bool {
    client.is_closed() || matches!(e, StoreError::ConnectionLost(_))
}

/// Where a transaction attempt failed: before `COMMIT` was sent (nothing is committed, the
/// server rolls back a session it loses) or at `COMMIT` (the outcome is unknown).
enum Failed {
    BeforeCommit(StoreError),
    AtCommit(StoreError),
}

impl PostgresBackend {
    /// Runs a job in one transaction. Deadlocks and serialization failures are retried; so is a
    /// job whose connection turns out to be dead (cut by the server, e.g. after a failover or
    /// `pg_terminate_backend`) before its `COMMIT`, on another connection, the dead one being
    /// dropped from the pool. A connection lost during `COMMIT` fails the request, since the
    /// write may or may not have happened (the client's retry with the same idempotency key is
    /// what makes that safe).
    async fn run<T: Send + 'static>(&self, job: Job<T>, write: bool) -> Result<T, StoreError> {
        let mut client = self.pool.get().await?;
        let pool = self.pool.clone();
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let mut contended = 0;
            // Each pooled connection may be dead: a fresh one per pooled one, plus one.
            let mut reconnects = 0;
            loop {
                let r = (|| {
                    let tx = runtime
                        .block_on(client.transaction())
                        .map_err(|e| Failed::BeforeCommit(e.into()))?;
                    let mut tx = Tx {
                        tx,
                        runtime: &runtime,
                    };
                    let v = job(&mut tx).map_err(Failed::BeforeCommit)?;
                    if write {
                        runtime
                            .block_on(tx.tx.commit())
                            .map_err(|e| Failed::AtCommit(e.into()))?;
                    }
                    Ok(v)
                })();
                let (e, committing) = match r {
                    Ok(v) => return Ok(v),
                    Err(Failed::BeforeCommit(e)) => (e, false),
                    Err(Failed::AtCommit(e)) => (e, true),
                };
                if is_connection_lost(&e, &client) {
                    // Taken out of the pool for good, so that nobody else is handed it.
                    drop(Object::take(client));
                    reconnects += 1;
                    if committing || reconnects > MAX_CONNECTIONS + 1 {
                        return Err(e);
                    }
                    tracing::info!(error = %e, "Postgres connection lost; retrying on another");
                    client = runtime.block_on(pool.get())?;
                    continue;
                }
                contended += 1;
                if matches!(e, StoreError::Conflict(_)) && contended < 5 {
                    std::thread::sleep(Duration::from_millis(5 * contended));
                    continue;
                }
                return Err(e);
            }
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }
}

impl Backend for PostgresBackend {
    async fn write<T: Send + 'static>(&self, job: Job<T>) -> Result<T, StoreError> {
        self.run(job, true).await
    }

    async fn read<T: Send + 'static>(&self, job: Job<T>) -> Result<T, StoreError> {
        self.run(job, false).await
    }

    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn shared(&self) -> bool {
        true
    }

    fn size_query(&self) -> &'static str {
        "SELECT pg_database_size(current_database())"
    }

    fn commits(&self) -> Option<mpsc::UnboundedReceiver<(StreamKey, u64)>> {
        self.commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

#[cfg(test)]
mod tests {
    //! Migration upgrades against a real Postgres (scripts/test-services.sh starts one).
    use super::*;
    use refinery_core::Migration;

    async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
        let (client, connection) = config.connect(NoTls).await.expect("test Postgres");
        tokio::spawn(connection);
        client
    }

    /// A fresh, empty database on the test server.
    async fn fresh_db() -> tokio_postgres::Config {
        let url = std::env::var("PAPO_TEST_POSTGRES_URL").expect(
            "PAPO_TEST_POSTGRES_URL must name a Postgres database whose role may create \
             databases (scripts/test-services.sh starts one)",
        );
        let name = format!("papo_m_{}", uuid::Uuid::new_v4().simple());
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        connect(&config)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        config.dbname(&name);
        config
    }

    async fn versions(client: &tokio_postgres::Client, table: &str) -> Vec<i64> {
        client
            .query(
                &format!("SELECT version::BIGINT FROM {table} ORDER BY version"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn history(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
        client
            .query(
                &format!("SELECT version, applied_on FROM {HISTORY} ORDER BY version"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    async fn open(config: &tokio_postgres::Config) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_with(config.clone()).await
    }

    const HISTORY: &str = migrations::HISTORY_TABLE;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn a_database_from_the_old_runner_is_baselined_and_upgraded_with_its_data() {
        let config = fresh_db().await;
        let c = connect(&config).await;
        // As the runner before refinery left it at version 1, with a user.
        c.batch_execute(migrations::HISTORY[0].postgres)
            .await
            .unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);
             INSERT INTO schema_migrations VALUES (1);
             INSERT INTO users(username, password_hash, created_at) VALUES ('ana', 'h', 1);",
        )
        .await
        .unwrap();
        drop(open(&config).await.unwrap());
        let users: i64 = c
            .query_one("SELECT count(*) FROM users WHERE username = 'ana'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(users, 1);
        // V2 and later ran (their table and columns exist), V1 was only recorded.
        c.batch_execute(
            "SELECT count(*) FROM used_refresh; SELECT edited_at, deleted FROM messages",
        )
        .await
        .unwrap();
        let all: Vec<i64> = (1..=migrations::known() as i64).collect();
        assert_eq!(versions(&c, HISTORY).await, all);
        assert_eq!(versions(&c, "schema_migrations").await, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn a_history_numbered_before_the_backends_shared_one_is_renumbered_in_place() {
        // As the previous release left a database: Postgres's own four versions, recorded by
        // refinery under their own numbers, the legacy marker at 4, and a DM between two users.
        let config = fresh_db().await;
        let mut c = connect(&config).await;
        let separate: Vec<(String, &str)> = std::iter::once(("V1__init".to_string(), 0))
            .chain(
                SEPARATE_HISTORY
                    .iter()
                    .map(|(v, name)| (format!("V{v}__{name}"), *v as usize)),
            )
            .map(|(name, shared)| (name, migrations::HISTORY[shared].postgres))
            .collect();
        let old: Vec<Migration> = separate
            .iter()
            .map(|(name, sql)| Migration::unapplied(name, sql).unwrap())
            .collect();
        migrations::runner(&old).run_async(&mut c).await.unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);
             INSERT INTO schema_migrations VALUES (1), (2), (3), (4);
             INSERT INTO users(username, password_hash, created_at) VALUES ('ana', 'h', 1), ('bia', 'h', 1);
             INSERT INTO messages(sender_id, recipient_id, text, created_at) VALUES (1, 2, 'oi', 5);
             INSERT INTO dm_peers(user_id, peer_id, last_at) VALUES (1, 2, 5), (2, 1, 5);",
        )
        .await
        .unwrap();
        let applied_on = history(&c).await[0].1.clone();

        let store = open(&config).await.unwrap();
        let shared: Vec<(i32, String)> = migrations::HISTORY
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i32 + 1, v.name.split_once("__").unwrap().1.to_string()))
            .collect();
        let rows = c
            .query(
                &format!(
                    "SELECT version, name, applied_on, checksum FROM {HISTORY} ORDER BY version"
                ),
                &[],
            )
            .await
            .unwrap();
        let recorded: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(recorded, shared);
        // Each row carries the checksum refinery computes for its shared number, so a normal
        // run finds nothing divergent; version 2 counts as applied when version 1 was.
        for (row, m) in rows
            .iter()
            .zip(migrations::list(Dialect::Postgres).unwrap())
        {
            assert_eq!(
                row.get::<_, String>(3),
                m.checksum().to_string(),
                "{}",
                m.name()
            );
        }
        assert_eq!(rows[1].get::<_, String>(2), applied_on);
        assert_eq!(
            versions(&c, "schema_migrations").await,
            (1..=migrations::known() as i64).collect::<Vec<_>>()
        );
        // The data is untouched and the store works on it.
        use crate::store::Store;
        let peers = store.presence_interest(1).await.unwrap();
        assert_eq!(peers, vec!["bia".to_string()]);
        drop(store);
        // Reopening renumbers nothing again.
        let before = history(&c).await;
        drop(open(&config).await.unwrap());
        assert_eq!(history(&c).await, before);
    }

    /// What a schema is made of, as both backends can report it: per table, its columns (name,
    /// integer or text, nullable, default), the column sets that are unique (primary key
    /// included), its named non-unique indexes, and its foreign keys.
    #[derive(Debug, PartialEq, Eq, Default)]
    struct TableShape {
        columns: Vec<(String, &'static str, bool, Option<String>)>,
        unique: std::collections::BTreeSet<Vec<String>>,
        indexes: std::collections::BTreeSet<(String, Vec<String>)>,
        foreign_keys: std::collections::BTreeSet<(String, String, String)>,
    }

    type Shape = std::collections::BTreeMap<String, TableShape>;

    fn type_class(declared: &str) -> &'static str {
        let t = declared.to_ascii_lowercase();
        if t.contains("int") || t.contains("serial") {
            "integer"
        } else if t.contains("char") || t.contains("text") {
            "text"
        } else {
            panic!("a column type neither backend should hold: {declared}")
        }
    }

    /// Tables that are bookkeeping of one backend's migrations, not part of the schema.
    fn is_bookkeeping(table: &str) -> bool {
        table == HISTORY || table == "schema_migrations" || table.starts_with("sqlite_")
    }

    fn sqlite_shape(path: &std::path::Path) -> Shape {
        let c = rusqlite::Connection::open(path).unwrap();
        let strings = |sql: &str| -> Vec<Vec<Option<String>>> {
            let mut stmt = c.prepare(sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                            v => Some(v.as_str().unwrap().to_string()),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let mut shape = Shape::new();
        for t in strings("SELECT name FROM sqlite_master WHERE type = 'table'") {
            let table = t[0].clone().unwrap();
            if is_bookkeeping(&table) {
                continue;
            }
            let mut ts = TableShape::default();
            let mut pk: Vec<(i64, String)> = Vec::new();
            // cid, name, type, notnull, dflt_value, pk
            let info = strings(&format!("PRAGMA table_info({table})"));
            let keyed = info.iter().filter(|c| c[5].as_deref() != Some("0")).count();
            for col in info {
                let name = col[1].clone().unwrap();
                let order: i64 = col[5].as_deref().unwrap().parse().unwrap();
                if order > 0 {
                    pk.push((order, name.clone()));
                }
                let declared = col[2].clone().unwrap();
                // A lone INTEGER PRIMARY KEY is SQLite's rowid: never null, numbered by the
                // database (what BIGSERIAL is in Postgres).
                let default = if order > 0 && keyed == 1 && declared == "INTEGER" {
                    Some("generated".to_string())
                } else {
                    col[4].clone()
                };
                // Key columns count as NOT NULL, as Postgres makes them.
                let nullable = col[3].as_deref() == Some("0") && order == 0;
                ts.columns
                    .push((name, type_class(&declared), nullable, default));
            }
            pk.sort();
            ts.unique.insert(pk.into_iter().map(|(_, n)| n).collect());
            // seq, name, unique, origin, partial
            for ix in strings(&format!("PRAGMA index_list({table})")) {
                let name = ix[1].clone().unwrap();
                let cols: Vec<String> = strings(&format!("PRAGMA index_info({name})"))
                    .into_iter()
                    .map(|c| c[2].clone().unwrap())
                    .collect();
                if ix[2].as_deref() == Some("1") {
                    ts.unique.insert(cols);
                } else {
                    ts.indexes.insert((name, cols));
                }
            }
            // id, seq, table, from, to, ...
            for fk in strings(&format!("PRAGMA foreign_key_list({table})")) {
                ts.foreign_keys.insert((
                    fk[3].clone().unwrap(),
                    fk[2].clone().unwrap(),
                    fk[4].clone().unwrap(),
                ));
            }
            shape.insert(table, ts);
        }
        shape
    }

    async fn postgres_shape(c: &tokio_postgres::Client) -> Shape {
        let mut shape = Shape::new();
        let columns = c
            .query(
                "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT, is_nullable::TEXT, \
                        column_default::TEXT \
                 FROM information_schema.columns WHERE table_schema = current_schema() \
                 ORDER BY table_name, ordinal_position",
                &[],
            )
            .await
            .unwrap();
        for r in columns {
            let table: String = r.get(0);
            if is_bookkeeping(&table) {
                continue;
            }
            let default: Option<String> = r.get(4);
            let default = default.map(|d| {
                if d.starts_with("nextval(") {
                    "generated".to_string()
                } else {
                    // Postgres shows a text default with its cast (`'deleted'::text`).
                    d.strip_suffix("::text").map(str::to_string).unwrap_or(d)
                }
            });
            shape.entry(table).or_default().columns.push((
                r.get(1),
                type_class(&r.get::<_, String>(2)),
                r.get::<_, String>(3) == "YES",
                default,
            ));
        }
        let indexes = c
            .query(
                "SELECT t.relname::TEXT, i.relname::TEXT, ix.indisunique, \
                        array_agg(a.attname::TEXT ORDER BY k.ord) \
                 FROM pg_index ix \
                 JOIN pg_class t ON t.oid = ix.indrelid \
                 JOIN pg_class i ON i.oid = ix.indexrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                 WHERE n.nspname = current_schema() \
                 GROUP BY 1, 2, 3",
                &[],
            )
            .await
            .unwrap();
        for r in indexes {
            let table: String = r.get(0);
            if is_bookkeeping(&table) {
                continue;
            }
            let ts = shape.entry(table).or_default();
            let cols: Vec<String> = r.get(3);
            if r.get::<_, bool>(2) {
                ts.unique.insert(cols);
            } else {
                ts.indexes.insert((r.get(1), cols));
            }
        }
        let fks = c
            .query(
                "SELECT cl.relname::TEXT, a.attname::TEXT, rcl.relname::TEXT, ra.attname::TEXT, \
                        cardinality(c.conkey) \
                 FROM pg_constraint c \
                 JOIN pg_class cl ON cl.oid = c.conrelid \
                 JOIN pg_class rcl ON rcl.oid = c.confrelid \
                 JOIN pg_namespace n ON n.oid = cl.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
                 JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] \
                 WHERE c.contype = 'f' AND n.nspname = current_schema()",
                &[],
            )
            .await
            .unwrap();
        for r in fks {
            assert_eq!(r.get::<_, i32>(4), 1, "single-column foreign keys only");
            let table: String = r.get(0);
            shape
                .entry(table)
                .or_default()
                .foreign_keys
                .insert((r.get(1), r.get(2), r.get(3)));
        }
        shape
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn the_two_backends_build_the_same_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.db");
        drop(
            crate::store::sqlite::SqliteStore::open(&path, crate::store::sqlite::Durability::Full)
                .unwrap(),
        );
        let config = fresh_db().await;
        drop(open(&config).await.unwrap());
        let sqlite = sqlite_shape(&path);
        let postgres = postgres_shape(&connect(&config).await).await;
        assert!(sqlite.contains_key("dm_peers") && sqlite.contains_key("used_refresh"));
        let tables = |s: &Shape| s.keys().cloned().collect::<Vec<_>>();
        assert_eq!(tables(&sqlite), tables(&postgres));
        for (table, shape) in &sqlite {
            assert_eq!(Some(shape), postgres.get(table), "table {table}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn a_schema_newer_than_the_binary_is_refused() {
        // Recorded by a newer server through refinery …
        let ours = migrations::known();
        let config = fresh_db().await;
        drop(open(&config).await.unwrap());
        connect(&config)
            .await
            .batch_execute(&format!(
                "INSERT INTO {HISTORY}(version, name, applied_on, checksum) \
                 VALUES ({}, 'future', '2030-01-01T00:00:00Z', '1')",
                ours + 1
            ))
            .await
            .unwrap();
        let err = open(&config).await.err().unwrap().to_string();
        let want = format!(
            "database schema version {} is newer than this server ({ours})",
            ours + 1
        );
        assert!(err.contains(&want), "{err}");
        // … or only in the legacy marker.
        let config = fresh_db().await;
        connect(&config)
            .await
            .batch_execute(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);
                 INSERT INTO schema_migrations VALUES (99);",
            )
            .await
            .unwrap();
        let err = open(&config).await.err().unwrap().to_string();
        let want = format!("database schema version 99 is newer than this server ({ours})");
        assert!(err.contains(&want), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn nodes_opening_together_migrate_once_and_reopening_changes_nothing() {
        let config = fresh_db().await;
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move { open(&config).await.map(drop) })
            })
            .collect();
        for n in nodes {
            n.await.unwrap().unwrap();
        }
        let c = connect(&config).await;
        let before = history(&c).await;
        assert_eq!(before.len(), migrations::known());
        drop(open(&config).await.unwrap());
        assert_eq!(history(&c).await, before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn connections_cut_by_the_server_cost_no_request_and_the_listener_comes_back() {
        use crate::store::Store;
        let config = fresh_db().await;
        let store = open(&config).await.unwrap();
        let mut commits = store.commits().unwrap();
        store.create_user("ana", "h").await.unwrap();
        let admin = connect(&config).await;
        notified(&admin, &mut commits).await;
        let cut: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(cut >= 2, "the pool's and the listener's connections: {cut}");
        // A connection found dead is dropped from the pool and the request runs again on
        // another: no request fails, reads or writes (none of them had reached COMMIT).
        let pooled = store.backend.pool.status().size;
        assert!(pooled >= 1);
        let created = store.create_user("bia", "h").await;
        assert!(created.is_ok(), "{created:?} ({pooled} pooled)");
        for _ in 0..=pooled {
            let found = store.user_by_name("ana").await;
            assert!(matches!(found, Ok(Some(_))), "{found:?} ({pooled} pooled)");
        }
        assert!(matches!(store.user_by_name("bia").await, Ok(Some(_))));
        // The listener reconnects and LISTENs again.
        notified(&admin, &mut commits).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    async fn postgres_errors_are_classified_by_sqlstate_not_by_text() {
        let config = fresh_db().await;
        let (a, b, victim) = (
            connect(&config).await,
            connect(&config).await,
            connect(&config).await,
        );
        a.batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO t VALUES (1, 0), (2, 0)",
        )
        .await
        .unwrap();
        let dup = StoreError::from(
            a.execute("INSERT INTO t VALUES (1, 0)", &[])
                .await
                .unwrap_err(),
        );
        assert!(matches!(dup, StoreError::Unique(_)), "{dup:?}");
        let null = StoreError::from(
            a.execute("INSERT INTO t VALUES (3, NULL)", &[])
                .await
                .unwrap_err(),
        );
        assert!(matches!(null, StoreError::Db(_)), "{null:?}");
        // Two transactions waiting on each other's row: Postgres aborts one of them.
        a.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
            .await
            .unwrap();
        b.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 2")
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            a.execute("UPDATE t SET v = 2 WHERE id = 2", &[]),
            b.execute("UPDATE t SET v = 2 WHERE id = 1", &[])
        );
        let lost: Vec<StoreError> = [ra, rb]
            .into_iter()
            .filter_map(|r| r.err().map(StoreError::from))
            .collect();
        assert!(
            matches!(lost.as_slice(), [StoreError::Conflict(_)]),
            "{lost:?}"
        );
        a.batch_execute("ROLLBACK").await.unwrap();
        b.batch_execute("ROLLBACK").await.unwrap();
        // A session the server ends reads as a lost connection.
        let pid: i32 = victim
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        a.execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let gone = StoreError::from(victim.query_one("SELECT 1", &[]).await.unwrap_err());
        assert!(matches!(gone, StoreError::ConnectionLost(_)), "{gone:?}");
        let again = StoreError::from(victim.query_one("SELECT 1", &[]).await.unwrap_err());
        assert!(matches!(again, StoreError::ConnectionLost(_)), "{again:?}");
    }

    /// Waits until a notification sent now reaches the store's commit receiver.
    async fn notified(
        admin: &tokio_postgres::Client,
        commits: &mut mpsc::UnboundedReceiver<(StreamKey, u64)>,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listener did not come back"
            );
            admin
                .execute("SELECT pg_notify($1, 'public:42')", &[&CHANNEL])
                .await
                .unwrap();
            match tokio::time::timeout(Duration::from_millis(200), commits.recv()).await {
                Ok(Some((StreamKey::Public, 42))) => return,
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => panic!("the listener stopped"),
            }
        }
    }
}
