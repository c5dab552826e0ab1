//! Client core (issues 3 and 10): ingest through the cache's apply path (full-text indexing
//! interleaved the way the writer thread runs it), next to raw batched SQLite inserts, then
//! offline queries on the resulting cache of ~1,000,000 messages, search while ingesting at a
//! sustained rate, and the delay from apply to searchable.

use std::time::{Duration, Instant};

use papo_client::cache::Cache;
use papo_client::{CoreEvent, PageKey};
use papo_protocol::{ChatMessage, DirectMessage, EventBody, LogBatch, LogEvent, Post, Stream};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const MIGRATION: &str = include_str!("../../crates/client/migrations/0001_initial.sql");
const BATCH: usize = 500;
const ME: &str = "me";
const PEERS: usize = 1_000;
/// The writer thread runs an index step at least this often while busy.
const INDEX_EVERY: Duration = Duration::from_millis(250);
/// Sustained ingest rate while searching (events/s).
const SUSTAINED_RATE: usize = 2_000;

struct Corpus {
    vocab: Vec<String>,
}

impl Corpus {
    fn new(rng: &mut impl Rng) -> Corpus {
        const SYL: [&str; 24] = [
            "ba", "ce", "di", "fo", "gu", "la", "me", "ni", "po", "ru", "sa", "te", "vi", "xo",
            "za", "pre", "tro", "qua", "lin", "mor", "sen", "tal", "vor", "ex",
        ];
        let mut vocab = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while vocab.len() < 20_000 {
            let n = rng.gen_range(2..=4);
            let w: String = (0..n).map(|_| SYL[rng.gen_range(0..SYL.len())]).collect();
            if seen.insert(w.clone()) {
                vocab.push(w);
            }
        }
        Corpus { vocab }
    }
    /// Skewed word choice: low indices are common, high ones rare.
    fn text(&self, rng: &mut impl Rng) -> String {
        let n = rng.gen_range(5..=14);
        (0..n)
            .map(|_| {
                let u: f64 = rng.gen();
                self.vocab[((u * u * u) * self.vocab.len() as f64) as usize].as_str()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Synthetic log: public chat (80% of messages), DMs with 1,000 peers (20%), and a post every
/// 21st event. Returns the events in server order.
fn events(messages: usize, corpus: &Corpus, rng: &mut impl Rng) -> Vec<LogEvent> {
    let base = 1_700_000_000_000i64;
    let (mut pubseq, mut privseq, mut id) = (0u64, 0u64, 0i64);
    let mut out = Vec::with_capacity(messages + messages / 20);
    let mut made = 0;
    let mut i = 0i64;
    while made < messages {
        i += 1;
        id += 1;
        let at = base + i * 10;
        if i % 21 == 0 {
            pubseq += 1;
            out.push(LogEvent {
                stream: Stream::Public,
                seq: pubseq,
                at,
                cid: None,
                body: EventBody::PostCreated(Post {
                    id,
                    author: format!("u{}", rng.gen_range(0..PEERS)),
                    text: corpus.text(rng),
                    at,
                    edited_at: None,
                    like_count: 0,
                    comment_count: 0,
                    share_count: 0,
                    share_of: None,
                }),
            });
            continue;
        }
        made += 1;
        if rng.gen_bool(0.8) {
            pubseq += 1;
            out.push(LogEvent {
                stream: Stream::Public,
                seq: pubseq,
                at,
                cid: None,
                body: EventBody::ChatMessage(ChatMessage {
                    id,
                    from: format!("u{}", rng.gen_range(0..PEERS)),
                    text: corpus.text(rng),
                    at,
                    reply_to: None,
                }),
            });
        } else {
            privseq += 1;
            let peer = format!("u{}", rng.gen_range(0..PEERS));
            let (from, to) = if rng.gen_bool(0.5) {
                (peer, ME.to_string())
            } else {
                (ME.to_string(), peer)
            };
            out.push(LogEvent {
                stream: Stream::Private,
                seq: privseq,
                at,
                cid: None,
                body: EventBody::DmMessage(DirectMessage {
                    id,
                    from,
                    to,
                    text: corpus.text(rng),
                    at,
                    reply_to: None,
                }),
            });
        }
    }
    out
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    json!({"median_ms": (q(0.5) * 1000.0).round() / 1000.0, "p99_ms": (q(0.99) * 1000.0).round() / 1000.0,
           "max_ms": (q(1.0) * 1000.0).round() / 1000.0, "runs": v.len()})
}

fn time_ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_secs_f64() * 1000.0, r)
}

fn repeat(runs: usize, mut f: impl FnMut() -> usize) -> (Value, usize) {
    let mut v = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let (ms, n) = time_ms(&mut f);
        v.push(ms);
        rows = n;
    }
    (stats(v), rows)
}

/// Which schema the raw inserts go into.
#[derive(Clone, Copy, Debug)]
enum RawSchema {
    Bare,
    /// Version 1: FTS insert triggers on.
    Initial,
    /// Every migration of this build.
    Current,
}

fn raw_insert(dir: &std::path::Path, evs: &[LogEvent], schema: RawSchema, batch: usize) -> f64 {
    let path = dir.join(format!("raw-{schema:?}-{batch}.db"));
    let mut c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    if let RawSchema::Current = schema {
        for (_, m) in papo_client::cache::MIGRATIONS {
            c.execute_batch(m).unwrap();
        }
    } else if let RawSchema::Initial = schema {
        c.execute_batch(MIGRATION).unwrap();
    } else {
        c.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, kind TEXT, conversation TEXT, server_id INTEGER, \
             client_id TEXT, sender TEXT, text TEXT, at INTEGER, sk INTEGER, state TEXT)",
        )
        .unwrap();
    }
    let rows: Vec<(&str, String, i64, &str, &str, i64)> = evs
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ChatMessage(m) => Some((
                "chat",
                "public".to_string(),
                m.id,
                m.from.as_str(),
                m.text.as_str(),
                m.at,
            )),
            EventBody::DmMessage(m) => Some((
                "dm",
                m.conversation_for(ME),
                m.id,
                m.from.as_str(),
                m.text.as_str(),
                m.at,
            )),
            _ => None,
        })
        .collect();
    let t = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO messages (kind, conversation, server_id, sender, text, at, sk, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3, 'sent')",
                )
                .unwrap();
            for r in chunk {
                st.execute(rusqlite::params![r.0, r.1, r.2, r.3, r.4, r.5])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    rows.len() as f64 / t.elapsed().as_secs_f64()
}

pub async fn run(messages: usize, keep: Option<std::path::PathBuf>) -> Value {
    let tmp = tempfile::Builder::new()
        .prefix("papo-bench-client-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let _ = std::fs::create_dir_all(&dir);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let corpus = Corpus::new(&mut rng);
    let extra = (messages / 10).min(20_000);
    let mut evs = events(messages + extra, &corpus, &mut rng);
    // The last events arrive later, at a sustained rate, while searches run.
    let later = evs.split_off(evs.len() - extra);
    let total_events = evs.len();
    eprintln!(
        "client: {} events ({} messages), serializing batches",
        total_events, messages
    );
    // What arrives from the socket: one JSON `log` payload per 500 events.
    let frames: Vec<String> = evs
        .chunks(BATCH)
        .map(|c| serde_json::to_string(&LogBatch { events: c.to_vec() }).unwrap())
        .collect();

    // ---- raw batched inserts (same machine, same rows) --------------------------------------
    let raw_bare = raw_insert(&dir, &evs, RawSchema::Bare, BATCH);
    let raw_schema = raw_insert(&dir, &evs, RawSchema::Initial, BATCH);
    let raw_schema_5000 = raw_insert(&dir, &evs, RawSchema::Initial, 5000);
    let raw_current = raw_insert(&dir, &evs, RawSchema::Current, BATCH);
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("raw-") {
            let _ = std::fs::remove_file(f.path());
        }
    }
    eprintln!("client: raw batched inserts {raw_bare:.0} rows/s (bare table), {raw_schema:.0} rows/s (version-1 schema, indexes + FTS triggers), {raw_schema_5000:.0} rows/s (same, 5000 per transaction), {raw_current:.0} rows/s (current schema)");

    // ---- ingest: receive (parse) -> apply (cache transaction) -> publish (broadcast) ---------
    let path = dir.join("cache.db");
    let _ = std::fs::remove_file(&path);
    let cache = Cache::open(&path).unwrap();
    cache.set_me(ME).unwrap();
    let (tx, mut rx) = tokio::sync::broadcast::channel::<CoreEvent>(4096);
    let consumer = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            match rx.recv().await {
                Ok(_) => n += 1,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => n += k,
                Err(_) => return n,
            }
        }
    });
    let (mut parse, mut apply, mut publish) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut index = Duration::ZERO;
    let mut index_steps = 0usize;
    let mut last_step = Instant::now();
    let mut applied = 0usize;
    let mut segment_rates = Vec::new();
    let t0 = Instant::now();
    let mut seg_t = Instant::now();
    let mut seg_n = 0usize;
    for (i, f) in frames.iter().enumerate() {
        let a = Instant::now();
        let batch: LogBatch = serde_json::from_str(f).unwrap();
        let b = Instant::now();
        let out = cache.apply_batch(ME, &batch.events).unwrap();
        let c = Instant::now();
        applied += out.applied.len();
        seg_n += out.applied.len();
        for ev in out.applied {
            let _ = tx.send(CoreEvent::Log(ev));
        }
        let d = Instant::now();
        parse += b - a;
        apply += c - b;
        publish += d - c;
        // The writer thread's schedule while busy: an index step at least every 250 ms.
        if last_step.elapsed() >= INDEX_EVERY {
            let t = Instant::now();
            cache.index_step().unwrap();
            index += t.elapsed();
            index_steps += 1;
            last_step = Instant::now();
        }
        if i % 400 == 399 {
            segment_rates.push(seg_n as f64 / seg_t.elapsed().as_secs_f64());
            seg_t = Instant::now();
            seg_n = 0;
        }
        if i % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (tail_after_burst, _) = cache.unindexed_rows().unwrap();
    // Then idle: index steps back to back until the index has caught up.
    let t = Instant::now();
    let mut catch_up_steps = 0usize;
    while cache.index_step().unwrap() {
        catch_up_steps += 1;
    }
    let catch_up_secs = t.elapsed().as_secs_f64();
    eprintln!("client: {index_steps} index steps during the burst ({:.1}s); {tail_after_burst} rows unindexed after it, caught up in {catch_up_secs:.1}s ({catch_up_steps} steps)", index.as_secs_f64());
    drop(tx);
    let published = consumer.await.unwrap();
    let ingest = applied as f64 / secs;
    eprintln!(
        "client: ingest {applied} events in {secs:.1}s = {ingest:.0} events/s (parse {:.1}s, apply {:.1}s, publish {:.1}s, index steps {:.1}s); published {published}",
        parse.as_secs_f64(), apply.as_secs_f64(), publish.as_secs_f64(), index.as_secs_f64()
    );
    drop(cache);

    // ---- open ----------------------------------------------------------------------------------
    let mut opens = Vec::new();
    for _ in 0..30 {
        let (ms, _) = time_ms(|| {
            let c = Cache::open(&path).unwrap();
            let p = c.feed_page(ME, None, 20).unwrap();
            assert_eq!(p.len(), 20);
        });
        opens.push(ms);
    }
    let open = stats(opens);

    // ---- queries on the full cache --------------------------------------------------------------
    let cache = Cache::open(&path).unwrap();
    let mid_at = 1_700_000_000_000i64 + (total_events as i64 / 2) * 10;
    let (conv_first, _) = repeat(200, || {
        cache.conversation_page("public", None, 50).unwrap().len()
    });
    let (conv_deep, _) = repeat(200, || {
        cache
            .conversation_page(
                "public",
                Some(PageKey {
                    at: mid_at,
                    sk: i64::MAX,
                }),
                50,
            )
            .unwrap()
            .len()
    });
    let (dm_first, _) = repeat(200, || {
        cache.conversation_page("dm:u7", None, 50).unwrap().len()
    });
    let (feed_first, _) = repeat(200, || cache.feed_page(ME, None, 20).unwrap().len());
    let (convs, nconv) = repeat(200, || cache.conversations().unwrap().len());
    let (unread, _) = repeat(200, || cache.unread_counts().unwrap().conversations.len());
    let (convs_unread, _) = repeat(200, || {
        cache.conversations().unwrap().len() + cache.unread_counts().unwrap().conversations.len()
    });
    // What the app reads: the first page of the list (public room pinned, 50 DMs, unread
    // total), and a page from the middle of the list.
    let (list_page, _) = repeat(200, || {
        let p = cache.conversations_page(None, 50).unwrap();
        assert!(p.more && p.rows.len() == 50 && p.pinned.is_some());
        p.rows.len()
    });
    let middle = {
        let all = cache.conversations().unwrap();
        let m = &all[all.len() / 2];
        (m.last_at, m.id.clone())
    };
    let (list_page_deep, _) = repeat(200, || {
        cache
            .conversations_page(Some(middle.clone()), 50)
            .unwrap()
            .rows
            .len()
    });
    let rare = corpus.vocab[corpus.vocab.len() - 10].clone();
    let mid = corpus.vocab[corpus.vocab.len() / 3].clone();
    let common = corpus.vocab[3].clone();
    let shapes = [
        ("rare word", rare.clone()),
        ("mid-frequency word", mid.clone()),
        ("common word", common.clone()),
        ("two words", format!("{common} {mid}")),
        ("prefix", common[..common.len().min(4)].to_string()),
        ("rare prefix", rare[..rare.len().min(5)].to_string()),
        // What search-as-you-type sends after one and two letters.
        ("one-letter prefix", common[..1].to_string()),
        ("two-letter prefix", common[..2].to_string()),
        ("no match", "zzqqxx".to_string()),
    ];
    let mut searches = Vec::new();
    for (label, q) in &shapes {
        let (s, hits) = repeat(200, || cache.search(q, 50).unwrap().len());
        let matching: i64 = {
            let c = rusqlite::Connection::open(&path).unwrap();
            let fq = q
                .split_whitespace()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(" ")
                + "*";
            c.query_row(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
                [fq],
                |r| r.get(0),
            )
            .unwrap_or(-1)
        };
        eprintln!("client: search {label:?} {q:?}: {hits} hits shown of {matching} matching, {s}");
        searches.push(json!({"label": label, "query": q, "hits": hits, "matching_messages": matching, "time": s}));
    }

    // ---- search while ingesting at a sustained rate ---------------------------------------------
    // One thread applies `later` at SUSTAINED_RATE events/s in batches of 100 and runs index
    // steps like the writer thread (when idle, and at least every 250 ms); this thread searches
    // on the reader meanwhile, cycling through the shapes.
    let sustained = {
        let per_batch = 100usize;
        let interval = Duration::from_secs_f64(per_batch as f64 / SUSTAINED_RATE as f64);
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); shapes.len()];
        let mut max_tail = 0i64;
        let (applied_n, wall) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let start = Instant::now();
                let mut n = 0usize;
                let mut last_step = Instant::now();
                for (i, chunk) in later.chunks(per_batch).enumerate() {
                    let out = cache.apply_batch(ME, chunk).unwrap();
                    n += out.applied.len();
                    let due = start + interval * (i as u32 + 1);
                    // Idle until the next batch is due: index (bounded steps), then wait.
                    while Instant::now() < due {
                        if last_step.elapsed() >= INDEX_EVERY
                            || Instant::now() + Duration::from_millis(25) < due
                        {
                            let more = cache.index_step().unwrap();
                            last_step = Instant::now();
                            if more {
                                continue;
                            }
                        }
                        std::thread::sleep(
                            due.saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(5)),
                        );
                    }
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                (n, start.elapsed().as_secs_f64())
            });
            let mut k = 0usize;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let i = k % shapes.len();
                let (ms, _) = time_ms(|| cache.search(&shapes[i].1, 50).unwrap().len());
                lat[i].push(ms);
                if k.is_multiple_of(50) {
                    max_tail = max_tail.max(cache.unindexed_rows().unwrap().0);
                }
                k += 1;
            }
            writer.join().unwrap()
        });
        let per_shape: Vec<Value> = shapes
            .iter()
            .zip(lat)
            .map(|((label, q), v)| json!({"label": label, "query": q, "time": stats(v)}))
            .collect();
        eprintln!("client: search while ingesting {applied_n} events at {:.0} events/s; largest unindexed tail seen {max_tail}", applied_n as f64 / wall);
        for p in &per_shape {
            eprintln!("client:   {} {}", p["label"], p["time"]);
        }
        json!({"events": applied_n, "events_per_sec": applied_n as f64 / wall, "max_unindexed_rows": max_tail, "search": per_shape})
    };

    // ---- apply -> searchable ------------------------------------------------------------------
    let mut fresh = Vec::new();
    let last = cache.resume_point().unwrap().0;
    for k in 0..20u64 {
        let word = format!("frescor{k}qz");
        let id = 10_000_000 + k as i64;
        let ev = LogEvent {
            stream: Stream::Public,
            seq: last.public + k + 1,
            at: 1_800_000_000_000 + k as i64,
            cid: None,
            body: EventBody::ChatMessage(ChatMessage {
                id,
                from: "u1".into(),
                text: format!("mensagem {word} nova"),
                at: 1_800_000_000_000 + k as i64,
                reply_to: None,
            }),
        };
        cache.apply_batch(ME, &[ev]).unwrap();
        let t = Instant::now();
        let mut tries = 0;
        while cache.search(&word, 5).unwrap().is_empty() {
            tries += 1;
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{word} not searchable"
            );
        }
        fresh.push((t.elapsed().as_secs_f64() * 1000.0, tries));
    }
    let fresh_retries: usize = fresh.iter().map(|f| f.1).sum();
    let fresh = stats(fresh.into_iter().map(|f| f.0).collect());
    eprintln!("client: apply -> searchable {fresh} ({fresh_retries} searches came back empty)");

    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!("client: open + first feed page {open}; conversation page {conv_first}; deep {conv_deep}; dm {dm_first}; feed {feed_first}; conversations list ({nconv}) {convs}; unread totals {unread}; list + totals {convs_unread}");
    json!({
        "messages": messages, "events": total_events, "cache_bytes": size,
        "ingest_events_per_sec": ingest, "ingest_secs": secs,
        "ingest_stage_secs": {"parse": parse.as_secs_f64(), "apply": apply.as_secs_f64(), "publish": publish.as_secs_f64(), "index_steps": index.as_secs_f64()},
        "index_steps_during_ingest": index_steps, "unindexed_after_ingest": tail_after_burst,
        "index_catch_up_secs": catch_up_secs, "index_catch_up_steps": catch_up_steps,
        "ingest_segment_rates": segment_rates, "published": published,
        "raw_insert_rows_per_sec_bare": raw_bare, "raw_insert_rows_per_sec_schema": raw_schema, "raw_insert_rows_per_sec_schema_5000": raw_schema_5000,
        "raw_insert_rows_per_sec_current_schema": raw_current, "peers": PEERS,
        "open_first_page": open,
        "conversation_page_first": conv_first, "conversation_page_deep": conv_deep,
        "dm_page_first": dm_first, "feed_page_first": feed_first,
        "conversations_list": convs, "conversations": nconv, "unread_counts": unread,
        "conversations_list_and_unread": convs_unread,
        "conversation_list_first_page": list_page, "conversation_list_middle_page": list_page_deep,
        "search": searches,
        "search_while_ingesting": sustained, "apply_to_searchable": fresh,
        "apply_to_searchable_empty_searches": fresh_retries,
        "load": crate::procs::loadavg(),
    })
}
