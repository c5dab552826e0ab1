//! The cache threads: work runs off the async runtime, answers arrive in order, and a thread
//! that is gone is an error, never a panic.

use super::*;
use papo_protocol::{ChatMessage, EventBody, LogEvent, Stream};
use std::time::Duration;

fn chat(seq: u64) -> LogEvent {
    LogEvent {
        stream: Stream::Public,
        seq,
        at: seq as i64,
        cid: None,
        body: EventBody::ChatMessage(ChatMessage {
            id: seq as i64,
            from: "bia".into(),
            text: format!("message number {seq} with a few words to index"),
            at: seq as i64,
            reply_to: None,
        }),
    }
}

async fn open(dir: &tempfile::TempDir) -> CacheHandle {
    let cache = CacheHandle::open(dir.path().join("c.sqlite3"))
        .await
        .unwrap();
    cache.write(|c| c.set_me("ana")).await.unwrap();
    cache
}

/// A single-threaded runtime keeps its 10 ms timer ticking while a large batch is applied:
/// the apply runs on the writer thread, not on the runtime's only thread.
#[tokio::test(flavor = "current_thread")]
async fn a_large_apply_leaves_the_runtime_free() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir).await;
    let ticks = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                ticks.lock().unwrap().push(Instant::now());
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Grow the batch until one apply takes long enough to tell (a fast machine needs more).
    let mut next = 1u64;
    let mut size = 20_000u64;
    let (started, took) = loop {
        let batch: Vec<LogEvent> = (next..next + size).map(chat).collect();
        next += size;
        let started = Instant::now();
        let out = cache
            .write(move |c| c.apply_batch("ana", &batch))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(out.applied.len() as u64, size);
        if took >= Duration::from_millis(200) || size >= 640_000 {
            break (started, took);
        }
        size *= 2;
    };
    ticker.abort();
    assert!(
        took >= Duration::from_millis(200),
        "apply too fast: {took:?}"
    );
    let during: Vec<Instant> = ticks
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t >= started && *t <= started + took)
        .collect();
    let mut gaps: Vec<Duration> = during.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.push(during.first().map_or(took, |t| *t - started));
    let worst = gaps.iter().max().copied().unwrap();
    // Blocked, the runtime would see no tick for the whole apply. Loose bounds: the machine
    // is shared.
    assert!(
        during.len() as u128 >= took.as_millis() / 40,
        "{} ticks in {took:?}",
        during.len()
    );
    eprintln!(
        "apply took {took:?}; worst tick gap {worst:?}; {} ticks",
        during.len()
    );
    assert!(worst < took / 2, "worst gap {worst:?} in {took:?}");
}

/// A job that panics takes the writer thread down: every later write is `Closed`, reads go on.
#[tokio::test]
async fn a_gone_writer_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir).await;
    let r: Result<()> = cache.write(|_| panic!("a bug in a job")).await;
    assert!(matches!(r, Err(CacheError::Closed)), "{r:?}");
    let r = cache.write(|c| c.set_epoch("e1")).await;
    assert!(matches!(r, Err(CacheError::Closed)), "{r:?}");
    assert!(matches!(cache.flush().await, Err(CacheError::Closed)));
    assert_eq!(
        cache.read(|c| c.me()).await.unwrap().as_deref(),
        Some("ana")
    );
}

/// A read sent after a write's answer sees the write; writes run in the order sent.
#[tokio::test]
async fn reads_see_answered_writes_and_writes_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir).await;
    let mut pending = Vec::new();
    for seq in 1..=50 {
        let c = cache.clone();
        pending.push(tokio::spawn(async move {
            c.write(move |c| c.apply_batch("ana", &[chat(seq)])).await
        }));
    }
    let mut applied = 0;
    for p in pending {
        applied += p.await.unwrap().unwrap().applied.len();
    }
    // Spawned in order on one thread, so sent in order: no gap, nothing skipped.
    assert_eq!(applied, 50);
    let (cursor, _) = cache.read(|c| c.resume_point()).await.unwrap();
    assert_eq!(cursor.public, 50);
    let page = cache
        .read(|c| c.conversation_page("public", None, 100))
        .await
        .unwrap();
    assert_eq!(page.len(), 50);
}

/// Dropping the last handle lets the writer finish its queue, then the threads end: the file
/// has every write and can be opened again at once.
#[tokio::test]
async fn the_last_handle_dropped_finishes_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir).await;
    let c = cache.clone();
    let queued = tokio::spawn(async move { c.write(|c| c.set_epoch("e9")).await });
    queued.await.unwrap().unwrap();
    drop(cache);
    let again = open(&dir).await;
    assert_eq!(
        again.read(|c| c.resume_point()).await.unwrap().1.as_deref(),
        Some("e9")
    );
}
