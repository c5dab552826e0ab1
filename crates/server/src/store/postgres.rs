//! The shared store for several server processes: Postgres.
//!
//! Same logic as SQLite (store/logic.rs). Differences that matter:
//! - Writers on different nodes run concurrently; a stream's head row is locked by the
//!   `UPDATE … RETURNING` that numbers an event, so sequence numbers stay gap-free and commit in
//!   order. Transactions that deadlock (two DMs crossing) are retried.
//! - Every numbered event also does `pg_notify('papo_commits', '<stream>:<seq>')`, delivered
//!   to every node at commit, in commit order: that is how a node learns that another one
//!   wrote to a stream its sockets read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls};
use tokio::sync::mpsc;

use super::logic::{parse_stream_key, Backend, Job, SqlStore};
use super::migrations;
use super::sql::{Row, Sql, Val};
use super::{StoreError, StreamKey};

/// The Postgres store.
pub type PostgresStore = SqlStore<PostgresBackend>;

/// Migrations (store/migrations.rs) run under this advisory lock so that nodes starting
/// together do not race; refinery itself does not lock.
const MIGRATION_LOCK: i64 = 0x7061_706f; // "papo"
const CHANNEL: &str = "papo_commits";
/// Connections kept open per process (writers and readers share them).
const POOL: usize = 8;
/// Most connections a process uses at once; further queries wait for one. Several nodes
/// together must stay under the server's `max_connections`.
const MAX_CONNECTIONS: usize = 16;

pub struct PostgresBackend {
    config: postgres::Config,
    /// Idle connections. The synchronous client runs its own small runtime, so connections are
    /// made, used and dropped on blocking threads only.
    idle: Arc<Mutex<Vec<Client>>>,
    /// One permit per connection in use.
    in_use: Arc<tokio::sync::Semaphore>,
    epoch: String,
    commits: Mutex<Option<mpsc::UnboundedReceiver<(StreamKey, u64)>>>,
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // Keep the SQLSTATE in the text: callers recognise unique violations and deadlocks.
        match e.code() {
            Some(code) => StoreError::Db(format!("{e} (sqlstate {})", code.code())),
            None => StoreError::Db(e.to_string()),
        }
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
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
    postgres::types::to_sql_checked!();
}

fn params(vals: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn row_of(r: &postgres::Row) -> Result<Row, StoreError> {
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

impl Sql for postgres::Transaction<'_> {
    fn exec(&mut self, sql: &str, vals: &[Val]) -> Result<u64, StoreError> {
        Ok(self.execute(sql, &params(vals))?)
    }
    fn query(&mut self, sql: &str, vals: &[Val]) -> Result<Vec<Row>, StoreError> {
        postgres::Transaction::query(self, sql, &params(vals))?
            .iter()
            .map(row_of)
            .collect()
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.batch_execute(sql)?)
    }
    fn announce(&mut self, stream_key: &str, seq: u64) -> Result<(), StoreError> {
        self.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &format!("{stream_key}:{seq}")],
        )?;
        Ok(())
    }
}

fn connect(config: &postgres::Config) -> Result<Client, StoreError> {
    Ok(config.connect(NoTls)?)
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = migrate_locked(client);
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    result
}

/// Baselines a database from before refinery at its `schema_migrations` version, runs the
/// pending migrations, and keeps `schema_migrations` at the latest version for older binaries.
fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    let known = migrations::POSTGRES.len();
    let list = migrations::list(migrations::POSTGRES)?;
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
    )?;
    let legacy: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    if legacy as usize > known {
        return Err(migrations::newer(legacy, known));
    }
    let has_history: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&migrations::HISTORY_TABLE],
        )?
        .get(0);
    if !has_history && legacy > 0 {
        migrations::baseline(&list, legacy, known)?
            .run(client)
            .map_err(|e| migrations::err(e, known))?;
    }
    migrations::runner(&list)
        .run(client)
        .map_err(|e| migrations::err(e, known))?;
    client.execute(
        "INSERT INTO schema_migrations(version) SELECT generate_series(1, $1::BIGINT) \
         ON CONFLICT DO NOTHING",
        &[&(known as i64)],
    )?;
    Ok(())
}

fn is_retryable(e: &StoreError) -> bool {
    // 40P01 deadlock_detected, 40001 serialization_failure
    matches!(e, StoreError::Db(m) if m.contains("sqlstate 40P01") || m.contains("sqlstate 40001"))
}

/// Listens for commit notifications from every node and forwards them, forever, reconnecting
/// after failures. After each (re)connect it reports every stream head, since notifications
/// sent while it was away are lost.
fn listen(config: postgres::Config, tx: mpsc::UnboundedSender<(StreamKey, u64)>) {
    loop {
        let result = (|| -> Result<(), StoreError> {
            let mut client = connect(&config)?;
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            for r in client.query("SELECT key, head FROM streams", &[])? {
                let key: String = r.get(0);
                let head: i64 = r.get(1);
                if let Some(k) = parse_stream_key(&key) {
                    let _ = tx.send((k, head as u64));
                }
            }
            let mut notifications = client.notifications();
            let mut it = notifications.blocking_iter();
            while let Some(n) = it.next()? {
                let Some((key, seq)) = n.payload().rsplit_once(':') else {
                    continue;
                };
                if let (Some(k), Ok(seq)) = (parse_stream_key(key), seq.parse::<u64>()) {
                    if tx.send((k, seq)).is_err() {
                        return Ok(()); // the server is gone
                    }
                }
            }
            Ok(())
        })();
        if tx.is_closed() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "commit listener lost its connection; reconnecting");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl SqlStore<PostgresBackend> {
    /// Connects, migrates, and starts listening for other nodes' commits.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("bad Postgres URL: {e}")))?;
        Self::open_with(config)
    }

    /// Like [`open`](Self::open), from a parsed configuration.
    pub fn open_with(config: postgres::Config) -> Result<Self, StoreError> {
        let mut client = connect(&config)?;
        migrate(&mut client)?;
        let candidate = uuid::Uuid::new_v4().simple().to_string();
        client.execute(
            "INSERT INTO meta(key, value) VALUES ('epoch', $1) ON CONFLICT DO NOTHING",
            &[&candidate],
        )?;
        let epoch: String = client
            .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])?
            .get(0);
        let (tx, rx) = mpsc::unbounded_channel();
        let listen_config = config.clone();
        std::thread::Builder::new()
            .name("papo-pg-listen".into())
            .spawn(move || listen(listen_config, tx))
            .map_err(|e| StoreError::Db(format!("cannot start the listener: {e}")))?;
        Ok(SqlStore {
            backend: PostgresBackend {
                config,
                idle: Arc::new(Mutex::new(vec![client])),
                in_use: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
                epoch,
                commits: Mutex::new(Some(rx)),
            },
        })
    }
}

impl PostgresBackend {
    async fn run<T: Send + 'static>(&self, job: Job<T>, write: bool) -> Result<T, StoreError> {
        let idle = self.idle.clone();
        let config = self.config.clone();
        let permit = self
            .in_use
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Db("connection pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut client = match pooled {
                Some(c) if !c.is_closed() => c,
                _ => connect(&config)?,
            };
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                let r = (|| {
                    let mut tx = client.transaction()?;
                    let v = job(&mut tx)?;
                    if write {
                        tx.commit()?;
                    }
                    Ok(v)
                })();
                match r {
                    Err(e) if is_retryable(&e) && attempt < 5 => {
                        std::thread::sleep(Duration::from_millis(5 * attempt));
                    }
                    other => break other,
                }
            };
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            if !client.is_closed() && idle.len() < POOL {
                idle.push(client);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        // Dropping a synchronous client inside an async context would panic: do it aside.
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = std::thread::spawn(move || drop(idle));
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

    /// A fresh, empty database on the test server.
    fn fresh_db() -> postgres::Config {
        let url = std::env::var("PAPO_TEST_POSTGRES_URL").expect(
            "PAPO_TEST_POSTGRES_URL must name a Postgres database whose role may create \
             databases (scripts/test-services.sh starts one)",
        );
        let name = format!("papo_m_{}", uuid::Uuid::new_v4().simple());
        let mut admin = Client::connect(&url, NoTls).expect("test Postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut config: postgres::Config = url.parse().unwrap();
        config.dbname(&name);
        config
    }

    fn versions(client: &mut Client, table: &str) -> Vec<i64> {
        client
            .query(
                &format!("SELECT version::BIGINT FROM {table} ORDER BY version"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn open(config: &postgres::Config) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_with(config.clone())
    }

    #[test]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    fn a_database_from_the_old_runner_is_baselined_and_upgraded_with_its_data() {
        let config = fresh_db();
        let mut c = connect(&config).unwrap();
        // As the runner before refinery left it at version 1, with a user.
        c.batch_execute(migrations::POSTGRES[0].1).unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);
             INSERT INTO schema_migrations VALUES (1);
             INSERT INTO users(username, password_hash, created_at) VALUES ('ana', 'h', 1);",
        )
        .unwrap();
        drop(open(&config).unwrap());
        let users: i64 = c
            .query_one("SELECT count(*) FROM users WHERE username = 'ana'", &[])
            .unwrap()
            .get(0);
        assert_eq!(users, 1);
        // V2 ran (its table exists), V1 was only recorded.
        c.batch_execute("SELECT count(*) FROM used_refresh")
            .unwrap();
        assert_eq!(versions(&mut c, HISTORY), vec![1, 2]);
        assert_eq!(versions(&mut c, "schema_migrations"), vec![1, 2]);
    }

    const HISTORY: &str = migrations::HISTORY_TABLE;

    #[test]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    fn a_schema_newer_than_the_binary_is_refused() {
        // Recorded by a newer server through refinery …
        let config = fresh_db();
        drop(open(&config).unwrap());
        let mut c = connect(&config).unwrap();
        c.batch_execute(&format!(
            "INSERT INTO {HISTORY}(version, name, applied_on, checksum) \
             VALUES (3, 'future', '2030-01-01T00:00:00Z', '1')"
        ))
        .unwrap();
        let err = open(&config).err().unwrap().to_string();
        assert!(
            err.contains("database schema version 3 is newer than this server (2)"),
            "{err}"
        );
        // … or only in the legacy marker.
        let config = fresh_db();
        let mut c = connect(&config).unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);
             INSERT INTO schema_migrations VALUES (99);",
        )
        .unwrap();
        let err = open(&config).err().unwrap().to_string();
        assert!(
            err.contains("database schema version 99 is newer than this server (2)"),
            "{err}"
        );
    }

    #[test]
    #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
    fn nodes_opening_together_migrate_once_and_reopening_changes_nothing() {
        let config = fresh_db();
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                std::thread::spawn(move || open(&config).map(drop))
            })
            .collect();
        for n in nodes {
            n.join().unwrap().unwrap();
        }
        let mut c = connect(&config).unwrap();
        let before = c
            .query(
                &format!("SELECT version, applied_on FROM {HISTORY} ORDER BY version"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>();
        assert_eq!(before.len(), migrations::POSTGRES.len());
        drop(open(&config).unwrap());
        let after = c
            .query(
                &format!("SELECT version, applied_on FROM {HISTORY} ORDER BY version"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>();
        assert_eq!(before, after);
    }
}
