//! The embedded default store: one SQLite file in WAL mode.
//!
//! Writes go through one connection (SQLite has one writer anyway) inside `BEGIN IMMEDIATE`
//! transactions; reads use a few separate connections so replay never waits for writes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use uuid::Uuid;

use super::logic::{Backend, Job, SqlStore};
use super::migrations;
use super::sql::{to_sqlite_placeholders, Row, Sql, Val};
use super::{StoreError, StreamKey};

/// How durable a commit is. `Full` survives power loss; `Normal` survives a process crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    Full,
    Normal,
}

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// Connections to one SQLite file.
pub struct SqliteBackend {
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
    epoch: String,
}

fn open_conn(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Applies the migrations the database has not seen yet (see store/migrations.rs), after
/// baselining a database from before refinery at its `PRAGMA user_version`.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = migrations::SQLITE.len();
    let list = migrations::list(migrations::SQLITE)?;
    let legacy: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if legacy as usize > known {
        return Err(migrations::newer(legacy, known));
    }
    let has_history: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [migrations::HISTORY_TABLE],
        |r| r.get(0),
    )?;
    if !has_history && legacy > 0 {
        migrations::baseline(&list, legacy, known)?
            .run(conn)
            .map_err(|e| migrations::err(e, known))?;
    }
    migrations::runner(&list)
        .run(conn)
        .map_err(|e| migrations::err(e, known))?;
    conn.pragma_update(None, "user_version", known as i64)?;
    Ok(())
}

impl SqlStore<SqliteBackend> {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let mut writer = open_conn(path, durability)?;
        migrate(&mut writer)?;
        let epoch: Option<String> = writer
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let e = Uuid::new_v4().simple().to_string();
                writer.execute("INSERT INTO meta(key, value) VALUES ('epoch', ?1)", [&e])?;
                e
            }
        };
        let readers = (0..3)
            .map(|_| open_conn(path, durability).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqlStore {
            backend: SqliteBackend {
                writer: Arc::new(Mutex::new(writer)),
                readers,
                next_reader: Default::default(),
                epoch,
            },
        })
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::NullInt | Val::NullText => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

impl Sql for Connection {
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare_cached(&to_sqlite_placeholders(sql))?;
        Ok(stmt.execute(params_from_iter(params))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare_cached(&to_sqlite_placeholders(sql))?;
        let n = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(match r.get_ref(i)? {
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Null => Val::NullInt,
                    ValueRef::Real(f) => Val::Int(f as i64),
                    ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }

    fn announce(&mut self, _stream_key: &str, _seq: u64) -> Result<(), StoreError> {
        Ok(()) // one process: the hub already knows
    }
}

async fn blocking<T: Send + 'static>(
    conn: Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
}

impl Backend for SqliteBackend {
    async fn write<T: Send + 'static>(&self, job: Job<T>) -> Result<T, StoreError> {
        blocking(self.writer.clone(), move |c| {
            c.execute_batch("BEGIN IMMEDIATE")?;
            match job(c) {
                Ok(v) => {
                    c.execute_batch("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }

    async fn read<T: Send + 'static>(&self, job: Job<T>) -> Result<T, StoreError> {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        blocking(self.readers[i].clone(), move |c| job(c)).await
    }

    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn shared(&self) -> bool {
        false
    }

    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn reopening_keeps_the_epoch_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let e1 = SqliteStore::open(&path, Durability::Full)
            .unwrap()
            .epoch()
            .await
            .unwrap();
        let e2 = SqliteStore::open(&path, Durability::Full)
            .unwrap()
            .epoch()
            .await
            .unwrap();
        assert_eq!(e1, e2);
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = SqliteStore::open(&path, Durability::Full).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    /// A database as an older release (the runner before refinery) left it: the first
    /// `version` migrations, `PRAGMA user_version` as the only marker, and a user.
    fn legacy_db(path: &Path, version: usize) {
        let c = Connection::open(path).unwrap();
        for (_, sql) in &migrations::SQLITE[..version] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", version as i64)
            .unwrap();
        c.execute(
            "INSERT INTO users(username, password_hash, created_at) VALUES ('ana', 'h', 1)",
            [],
        )
        .unwrap();
    }

    fn history(path: &Path) -> Vec<(i64, String)> {
        let c = Connection::open(path).unwrap();
        let mut stmt = c
            .prepare("SELECT version, name FROM refinery_schema_history ORDER BY version")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows
    }

    fn user_version(path: &Path) -> i64 {
        let c = Connection::open(path).unwrap();
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn legacy_databases_are_baselined_and_migrated_in_place() {
        for version in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.db");
            legacy_db(&path, version);
            let store = SqliteStore::open(&path, Durability::Full).unwrap();
            assert!(store.user_by_name("ana").await.unwrap().is_some());
            // Schema 2 (presence) exists whatever the starting point.
            let online = store
                .sync_presence("node", vec![("ana".into(), 1)], 5000)
                .await
                .unwrap();
            assert_eq!(online, vec!["ana".to_string()]);
            drop(store);
            let latest = migrations::SQLITE.len() as i64;
            let names: Vec<_> = history(&path).into_iter().map(|(v, _)| v).collect();
            assert_eq!(
                names,
                (1..=latest).collect::<Vec<_>>(),
                "from version {version}"
            );
            assert_eq!(user_version(&path), latest);
        }
    }

    #[tokio::test]
    async fn migrating_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut c = Connection::open(&path).unwrap();
        migrate(&mut c).unwrap();
        let first = history(&path);
        assert_eq!(first.len(), migrations::SQLITE.len());
        migrate(&mut c).unwrap();
        drop(c);
        assert_eq!(history(&path), first);
        SqliteStore::open(&path, Durability::Full).unwrap();
        assert_eq!(history(&path), first);
    }

    #[tokio::test]
    async fn a_database_migrated_by_a_newer_server_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path, Durability::Full).unwrap());
        // A newer server added the next version and recorded it; the legacy marker is left.
        let ours = migrations::SQLITE.len() as i64;
        let c = Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO refinery_schema_history(version, name, applied_on, checksum) \
             VALUES (?1, 'future', '2030-01-01T00:00:00Z', '1')",
            [ours + 1],
        )
        .unwrap();
        drop(c);
        let err = SqliteStore::open(&path, Durability::Full).err().unwrap();
        let want = format!(
            "database schema version {} is newer than this server ({ours})",
            ours + 1
        );
        assert!(err.to_string().contains(&want), "{err}");
    }

    #[tokio::test]
    async fn a_version_1_database_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        legacy_db(&path, 1);
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        assert!(store.user_by_name("ana").await.unwrap().is_some());
        let online = store
            .sync_presence("node", vec![("ana".into(), 1)], 5000)
            .await
            .unwrap();
        assert_eq!(online, vec!["ana".to_string()]);
    }
}
