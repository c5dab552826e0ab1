//! The embedded default store: one SQLite file in WAL mode.
//!
//! Writes go through one connection (SQLite has one writer anyway), owned by a writer thread
//! that commits in groups: every write queued while the previous commit was on its way to the
//! disk runs in the next transaction, each inside its own savepoint, and the group is committed
//! with one fsync. A job's effects are all or nothing (a failing job rolls back to its savepoint
//! and the others are unaffected), and no job's result is handed back before its group's commit
//! has returned, so nothing is acknowledged before it is durable. Reads use a few separate
//! connections so replay never waits for writes.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use uuid::Uuid;

use super::logic::{Backend, Job, SqlStore};
use super::migrations::{self, Dialect};
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
    /// Queue of the writer thread; None once dropping.
    writer: Option<mpsc::Sender<Box<dyn Pending>>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Stops the checkpointer when dropped.
    checkpoint_stop: Option<mpsc::Sender<()>>,
    checkpoint_thread: Option<std::thread::JoinHandle<()>>,
    /// Write transactions run so far (each one commit, however many writes it held).
    groups: Arc<std::sync::atomic::AtomicU64>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
    epoch: String,
}

impl SqliteBackend {
    /// Write transactions committed (or attempted) so far.
    pub fn write_groups(&self) -> u64 {
        self.groups.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        // Closing the queue ends the writer thread once it has finished what is queued; waiting
        // for it means the file is closed when the store is gone.
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
        self.checkpoint_stop.take();
        if let Some(t) = self.checkpoint_thread.take() {
            let _ = t.join();
        }
    }
}

/// Page cache of the writer connection, in KiB.
const WRITER_CACHE_KIB: i64 = 256 * 1024;

/// Most writes committed together. Bounds how long the last of a group waits for the first.
pub const MAX_GROUP: usize = 512;

/// A queued write: run inside the group's transaction, then told how the commit went.
trait Pending: Send {
    /// Runs the job (once); true if it succeeded, so its savepoint is kept.
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Hands the result back: the job's own error, or its value if the group committed.
    fn finish(self: Box<Self>, group: Result<(), &StoreError>);
}

struct Slot<T> {
    job: Job<T>,
    result: Option<Result<T, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send + 'static> Pending for Slot<T> {
    fn run(&mut self, conn: &mut Connection) -> bool {
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| (self.job)(conn)))
            .unwrap_or_else(|_| Err(StoreError::Db("store job panicked".into())));
        let ok = res.is_ok();
        self.result = Some(res);
        ok
    }

    fn finish(self: Box<Self>, group: Result<(), &StoreError>) {
        let out = match (self.result, group) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(StoreError::Db(format!("transaction not committed: {e}"))),
            (None, Ok(())) => Err(StoreError::Db("write did not run".into())),
        };
        // The caller may have gone away (its connection closed): the effects stand anyway.
        let _ = self.reply.send(out);
    }
}

fn exec_cached(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs one group: each job in its own savepoint of one `BEGIN IMMEDIATE` transaction, one
/// `COMMIT`, then every result.
fn run_group(conn: &mut Connection, mut group: Vec<Box<dyn Pending>>) {
    let outcome = (|| {
        exec_cached(conn, "BEGIN IMMEDIATE")?;
        for job in group.iter_mut() {
            exec_cached(conn, "SAVEPOINT job")?;
            if !job.run(conn) {
                exec_cached(conn, "ROLLBACK TO job")?;
            }
            exec_cached(conn, "RELEASE job")?;
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (I/O error, full disk, ...).
                return Err(StoreError::Db(
                    "transaction rolled back by the database".into(),
                ));
            }
        }
        exec_cached(conn, "COMMIT")
    })();
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = &outcome {
        tracing::error!(error = %e, jobs = group.len(), "write group not committed");
    }
    for job in group {
        job.finish(outcome.as_ref().map(|_| ()));
    }
}

/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Copies the WAL into the database file from its own connection, so the writer never pays for
/// it inside a commit. PASSIVE: it never blocks the writer or readers, and the writer restarts
/// the WAL from its beginning once a checkpoint has caught up with it.
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let res = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    queue: mpsc::Receiver<Box<dyn Pending>>,
    groups: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Ok(first) = queue.recv() {
        groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(&mut conn, group);
    }
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
    let known = migrations::known();
    let list = migrations::list(Dialect::Sqlite)?;
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
        // The writer keeps the pages it touches (stream heads, index leaves) in memory instead of
        // re-reading them, and leaves checkpoints to the checkpointer.
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = open_conn(path, durability)?;
        let (checkpoint_stop, stop) = mpsc::channel();
        let checkpoint_thread = std::thread::Builder::new()
            .name("papo-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop))
            .map_err(|e| StoreError::Db(format!("cannot start the checkpoint thread: {e}")))?;
        let readers = (0..3)
            .map(|_| open_conn(path, durability).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<Vec<_>, _>>()?;
        let (queue, jobs) = mpsc::channel();
        let groups = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = groups.clone();
        let writer_thread = std::thread::Builder::new()
            .name("papo-sqlite-writer".into())
            .spawn(move || writer_loop(writer, jobs, counter))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(SqlStore {
            backend: SqliteBackend {
                writer: Some(queue),
                writer_thread: Some(writer_thread),
                checkpoint_stop: Some(checkpoint_stop),
                checkpoint_thread: Some(checkpoint_thread),
                groups,
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
        let (reply, result) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Db("the store's writer has stopped".into());
        self.writer
            .as_ref()
            .ok_or_else(stopped)?
            .send(Box::new(Slot {
                job,
                result: None,
                reply,
            }))
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
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

    fn size_query(&self) -> &'static str {
        "SELECT p.page_count * s.page_size FROM pragma_page_count() p, pragma_page_size() s"
    }

    fn commits(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(StreamKey, u64)>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    /// A write under way, as the test polls it.
    type Queued<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

    #[test]
    fn sqlite_errors_are_classified_by_result_code_not_by_text() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER NOT NULL);
             INSERT INTO t VALUES (1, 'ana', 0);",
        )
        .unwrap();
        let err = |sql: &str| StoreError::from(c.execute(sql, []).unwrap_err());
        let dup_name = err("INSERT INTO t VALUES (2, 'ana', 0)");
        assert!(matches!(dup_name, StoreError::Unique(_)), "{dup_name:?}");
        let dup_key = err("INSERT INTO t VALUES (1, 'bia', 0)");
        assert!(matches!(dup_key, StoreError::Unique(_)), "{dup_key:?}");
        // Another constraint is not a uniqueness conflict: it must not read as a taken name.
        let null = err("INSERT INTO t VALUES (3, 'caio', NULL)");
        assert!(matches!(null, StoreError::Db(_)), "{null:?}");
        let wrong_type = StoreError::from(
            c.query_row("SELECT name FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap_err(),
        );
        assert!(
            matches!(wrong_type, StoreError::Corrupt(_)),
            "{wrong_type:?}"
        );
    }

    fn meta_value(path: &Path, key: &str) -> Option<String> {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .unwrap()
    }

    /// Writes queued while a commit is under way share the next transaction; one failing or
    /// panicking write rolls back only its own effects, and every caller gets its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
        let groups0 = store.backend.write_groups();
        // The first write holds the writer until every other write is queued.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, writer_busy) = tokio::sync::oneshot::channel::<()>();
        let hold = Mutex::new(Some((hold, started)));
        let s = store.clone();
        let first = tokio::spawn(async move {
            s.backend
                .write(Box::new(move |db| {
                    if let Some((hold, started)) = hold.lock().unwrap().take() {
                        let _ = started.send(());
                        hold.recv().unwrap();
                    }
                    db.exec("INSERT INTO meta(key, value) VALUES ('first', '1')", &[])
                }))
                .await
        });
        writer_busy.await.unwrap();
        let mut rest: Vec<Queued<u32>> = Vec::new();
        for i in 0..100u32 {
            let s = store.clone();
            rest.push(Box::pin(async move {
                s.backend
                    .write(Box::new(move |db| {
                        db.exec(
                            "INSERT INTO meta(key, value) VALUES ($1, 'x')",
                            &[format!("k{i}").as_str().into()],
                        )?;
                        match i {
                            13 => Err(StoreError::Db("refused".into())),
                            42 => panic!("a bug in one write"),
                            _ => Ok(i),
                        }
                    }))
                    .await
            }));
        }
        // Polling each once queues it; only then is the writer freed.
        std::future::poll_fn(|cx| {
            for f in rest.iter_mut() {
                assert!(f.as_mut().poll(cx).is_pending());
            }
            Poll::Ready(())
        })
        .await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        for (i, f) in rest.into_iter().enumerate() {
            let r = f.await;
            match i {
                13 => assert_eq!(r.unwrap_err().to_string(), "database error: refused"),
                42 => assert!(r.unwrap_err().to_string().contains("panicked")),
                _ => assert_eq!(r.unwrap(), i as u32),
            }
        }
        // One transaction for the first write, one for the hundred queued behind it.
        assert_eq!(store.backend.write_groups() - groups0, 2);
        drop(store);
        assert_eq!(meta_value(&path, "first").as_deref(), Some("1"));
        assert_eq!(meta_value(&path, "k0").as_deref(), Some("x"));
        assert_eq!(meta_value(&path, "k99").as_deref(), Some("x"));
        assert_eq!(meta_value(&path, "k13"), None);
        assert_eq!(meta_value(&path, "k42"), None);
    }

    /// A write that fails at commit is reported as failed to every write of its group.
    #[tokio::test]
    async fn a_failed_commit_fails_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        // A deferred foreign key is checked at COMMIT: the commit fails, so must the write.
        let err = store
            .backend
            .write(Box::new(|db| {
                db.batch("PRAGMA defer_foreign_keys = ON")?;
                db.exec(
                    "INSERT INTO sessions(id, user_id, refresh_hash, created_at, expires_at) \
                     VALUES ('s', 999, 'h', 0, 1)",
                    &[],
                )
            }))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not committed"), "{err}");
        let n: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        // The writer goes on.
        store
            .backend
            .write(Box::new(|db| {
                db.exec("INSERT INTO meta(key, value) VALUES ('after', '1')", &[])
            }))
            .await
            .unwrap();
    }

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
        for v in &migrations::HISTORY[..version] {
            c.execute_batch(v.sqlite).unwrap();
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
            let latest = migrations::known() as i64;
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
        assert_eq!(first.len(), migrations::known());
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
        let ours = migrations::known() as i64;
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
