//! The cache's own threads: SQLite never runs on an async executor or on the UI's main thread.
//!
//! One writer thread owns every write (log batches, outbox changes, presence, read marks, the
//! wipe) and runs the jobs sent to it in order, answering each through a oneshot; when its
//! queue is empty it does the background full-text indexing in bounded steps
//! ([`Cache::index_step`]), checking for new jobs between steps, and while it is busy it still
//! does one step at least every [`INDEX_EVERY`]. [`READERS`] reader threads share one queue of
//! reads (pages, search, lists), each on a read-only connection of its own from the cache's
//! reader pool (WAL lets readers run beside the writer).
//!
//! [`CacheHandle`] is the async, cheap-to-clone way in. A job's answer comes back as soon as it
//! committed, so a read sent after a write's answer sees the write. When the last handle is
//! dropped the queues close: the writer finishes what is queued and the threads end. A thread
//! that is gone (a job panicked) makes every later call fail with [`CacheError::Closed`],
//! never panic.

use crate::cache::{Cache, CacheError, Result};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Reader threads (and read-only connections in the cache's pool).
pub const READERS: usize = 2;

/// While the writer is busy, it still does an indexing step at least this often.
pub const INDEX_EVERY: Duration = Duration::from_millis(250);

type Job = Box<dyn FnOnce(&Cache) + Send>;

/// Async handle on the cache's threads. Cheap to clone.
#[derive(Clone)]
pub struct CacheHandle {
    shared: Arc<Shared>,
    /// Wait for answers on the blocking pool (see [`CacheHandle::holding_paused_clock`]).
    hold_clock: bool,
}

struct Shared {
    writer: mpsc::Sender<Job>,
    readers: mpsc::Sender<Job>,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHandle")
            .field("path", &self.shared.cache.path())
            .finish()
    }
}

impl CacheHandle {
    /// Opens (creating and migrating if needed) the cache file off the async executor, and
    /// starts its threads.
    pub async fn open(path: impl Into<PathBuf>) -> Result<CacheHandle> {
        let path = path.into();
        let cache = tokio::task::spawn_blocking(move || Cache::open(path))
            .await
            .map_err(|_| CacheError::Closed)??;
        CacheHandle::spawn(cache)
    }

    /// Starts the threads over an open cache.
    pub fn spawn(cache: Cache) -> Result<CacheHandle> {
        let cache = Arc::new(cache);
        let (writer, writer_rx) = mpsc::channel::<Job>();
        let (readers, readers_rx) = mpsc::channel::<Job>();
        let c = cache.clone();
        std::thread::Builder::new()
            .name("papo-cache-writer".into())
            .spawn(move || writer_loop(&c, writer_rx))
            .map_err(|_| CacheError::Closed)?;
        let readers_rx = Arc::new(Mutex::new(readers_rx));
        for i in 0..READERS {
            let (c, rx) = (cache.clone(), readers_rx.clone());
            std::thread::Builder::new()
                .name(format!("papo-cache-reader-{i}"))
                .spawn(move || reader_loop(&c, &rx))
                .map_err(|_| CacheError::Closed)?;
        }
        Ok(CacheHandle {
            shared: Arc::new(Shared {
                writer,
                readers,
                cache,
            }),
            hold_clock: false,
        })
    }

    /// The same handle, for tests that run in paused tokio time: it waits for answers on the
    /// blocking pool, which keeps the paused clock from jumping ahead while a cache thread
    /// works (an idle runtime with a paused clock advances it to the next timer). The job
    /// itself runs on the cache threads as always.
    pub fn holding_paused_clock(&self) -> CacheHandle {
        CacheHandle {
            shared: self.shared.clone(),
            hold_clock: true,
        }
    }

    /// Runs `f` on the writer thread, after every job sent before it.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Cache) -> Result<T> + Send + 'static,
    {
        self.run(&self.shared.writer, f).await
    }

    /// Runs `f` on a reader thread (read-only connections: writes fail there).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Cache) -> Result<T> + Send + 'static,
    {
        self.run(&self.shared.readers, f).await
    }

    /// Waits until the writer has run every job sent before this call.
    pub async fn flush(&self) -> Result<()> {
        self.write(|_| Ok(())).await
    }

    /// The cache itself, for tests and tools that read it synchronously off the runtime.
    #[doc(hidden)]
    pub fn cache(&self) -> &Arc<Cache> {
        &self.shared.cache
    }

    async fn run<T, F>(&self, queue: &mpsc::Sender<Job>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Cache) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |cache| {
            let _ = tx.send(f(cache));
        });
        queue.send(job).map_err(|_| CacheError::Closed)?;
        let answer = if self.hold_clock {
            tokio::task::spawn_blocking(move || rx.blocking_recv())
                .await
                .map_err(|_| CacheError::Closed)?
        } else {
            rx.await
        };
        // The job was dropped unanswered: its thread is gone.
        answer.map_err(|_| CacheError::Closed)?
    }
}

/// The cache's read-only connections. A reader takes a free one (waiting if every one is in
/// use) and puts it back when done, also when its job panics.
pub(crate) struct ReaderPool {
    free: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ReaderPool {
    pub(crate) fn new(connections: Vec<Connection>) -> ReaderPool {
        ReaderPool {
            free: Mutex::new(connections),
            returned: Condvar::new(),
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let conn = loop {
            match free.pop() {
                Some(conn) => break conn,
                None => free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner()),
            }
        };
        drop(free);
        let lease = Lease {
            pool: self,
            conn: Some(conn),
        };
        f(lease.conn.as_ref().expect("leased connection"))
    }
}

struct Lease<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            free.push(conn);
            self.pool.returned.notify_one();
        }
    }
}

fn index_step(cache: &Cache) -> bool {
    match cache.index_step() {
        Ok(more) => more,
        Err(e) => {
            tracing::warn!(error = %e, "background indexing step failed");
            false
        }
    }
}

fn writer_loop(cache: &Cache, jobs: mpsc::Receiver<Job>) {
    // Indexing left over from an earlier run may be waiting.
    let mut more = true;
    let mut last_step = Instant::now();
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) if more => None,
            Err(TryRecvError::Empty) => match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
            // Every handle is gone and the queue is done.
            Err(TryRecvError::Disconnected) => break,
        };
        match job {
            Some(job) => {
                job(cache);
                // A write may have left rows to index.
                more = true;
                if last_step.elapsed() >= INDEX_EVERY {
                    more = index_step(cache);
                    last_step = Instant::now();
                }
            }
            None => {
                more = index_step(cache);
                last_step = Instant::now();
            }
        }
    }
    tracing::debug!("cache writer stopped");
}

fn reader_loop(cache: &Cache, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        match job {
            Ok(job) => job(cache),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
#[path = "cache_thread_tests.rs"]
mod tests;
