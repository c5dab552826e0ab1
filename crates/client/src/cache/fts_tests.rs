//! Full-text search off the apply path: the tail scan matches like the index, indexing
//! catches up and leaves a consistent index through edits, deletes, resets and wipes.

use super::{fts_query, Matcher};
use crate::cache::tests::public_event;
use crate::cache::{Cache, HitKind, MIGRATIONS};
use papo_protocol::{
    ChatMessage, DirectMessage, EventBody, LogEvent, Post, PostEdited, PostRef, Stream,
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use rusqlite::Connection;

const ME: &str = "ana";

/// Words with case, accents (precomposed and combining), ligatures, non-Latin scripts,
/// digits and punctuation glued on.
const WORDS: &[&str] = &[
    "olá",
    "OLA",
    "Ola",
    "café",
    "cafe\u{301}",
    "CAFÉ",
    "cafés",
    "naïve",
    "naive",
    "São",
    "sao",
    "coração",
    "ação",
    "acao",
    "straße",
    "STRASSE",
    "İstanbul",
    "istanbul",
    "ǖber",
    "über",
    "uber",
    "Łódź",
    "lodz",
    "Ørsted",
    "ﬁne",
    "fine",
    "ǅemal",
    "λόγος",
    "ΛΟΓΟΣ",
    "ёж",
    "ЁЖ",
    "việt",
    "viet",
    "東京",
    "१२३",
    "x\u{e000}y",
    "ab\u{332}cd",
    "ab\u{310}cd",
    "foo-bar",
    "foo_bar",
    "foo.bar",
    "it's",
    "e-mail",
    "email",
    "2026",
    "v1.2",
    "#tag",
    "@bia",
    "100%",
    "(ok)",
    "\"quoted\"",
    "a*b",
    "AND",
    "OR",
    "NOT",
    "NEAR",
    "ﬀ",
    "K",
    "Ω",
    "ȁ",
    "ǻ",
    "ǽ",
    "ǹ",
    "Ḉ",
    "e\u{308}",
    "n\u{303}",
    "!!!",
    "-",
    "é",
    "e",
    "ç",
    "c",
    "ſ",
    "µ",
    "ϑ",
    "σ",
    "ς",
    "Σ",
];

fn text(rng: &mut StdRng) -> String {
    let n = rng.gen_range(1..7);
    let seps = [" ", " ", " ", "  ", ", ", "; ", "/", "\t"];
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(seps.choose(rng).unwrap());
        }
        s.push_str(WORDS.choose(rng).unwrap());
    }
    s
}

/// Queries of every shape: one word, several, prefixes, word pieces, punctuation only.
fn query(rng: &mut StdRng) -> String {
    let n = rng.gen_range(1..4);
    let mut words = Vec::new();
    for _ in 0..n {
        let w: String = WORDS.choose(rng).unwrap().to_string();
        let w = match rng.gen_range(0..4) {
            // A prefix of the word (by characters).
            0 => {
                let chars: Vec<char> = w.chars().collect();
                chars[..rng.gen_range(1..=chars.len())].iter().collect()
            }
            1 => w.to_uppercase(),
            _ => w,
        };
        words.push(w);
    }
    words.join(" ")
}

/// The matcher agrees with FTS5 itself on random texts and queries.
#[test]
fn the_tail_matcher_agrees_with_fts5_on_random_texts_and_queries() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE VIRTUAL TABLE t USING fts5 (text)")
        .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut texts = Vec::new();
    for i in 0..400 {
        let t = text(&mut rng);
        conn.execute("INSERT INTO t (rowid, text) VALUES (?1, ?2)", (i, &t))
            .unwrap();
        texts.push(t);
    }
    // Every word alone, then random shapes.
    let mut queries: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
    queries.extend((0..600).map(|_| query(&mut rng)));
    let mut matched_any = 0;
    for q in &queries {
        let Some(fts) = fts_query(q) else { continue };
        let mut st = conn
            .prepare("SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid")
            .unwrap();
        let want: Vec<i64> = st
            .query_map([&fts], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let m = Matcher::new(q);
        let got: Vec<i64> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| m.matches(t))
            .map(|(i, _)| i as i64)
            .collect();
        assert_eq!(got, want, "query {q:?} ({fts})");
        matched_any += !want.is_empty() as usize;
    }
    assert!(
        matched_any > 100,
        "only {matched_any} queries matched anything"
    );
}

fn chat(seq: u64, id: i64, text: &str) -> LogEvent {
    LogEvent {
        stream: Stream::Public,
        seq,
        at: 1000 + id,
        cid: None,
        body: EventBody::ChatMessage(ChatMessage {
            id,
            from: "bia".into(),
            text: text.into(),
            at: 1000 + id,
            reply_to: None,
        }),
    }
}

fn dm(seq: u64, id: i64, text: &str) -> LogEvent {
    LogEvent {
        stream: Stream::Private,
        seq,
        at: 1000 + id,
        cid: None,
        body: EventBody::DmMessage(DirectMessage {
            id,
            from: "caio".into(),
            to: ME.into(),
            text: text.into(),
            at: 1000 + id,
            reply_to: None,
        }),
    }
}

fn post(id: i64, text: &str) -> EventBody {
    EventBody::PostCreated(Post {
        id,
        author: "davi".into(),
        text: text.into(),
        at: 1000 + id,
        edited_at: None,
        like_count: 0,
        comment_count: 0,
        share_count: 0,
        share_of: None,
    })
}

fn catch_up(cache: &Cache) {
    let mut steps = 0;
    while cache.index_step().unwrap() {
        steps += 1;
        assert!(steps < 10_000, "indexing does not finish");
    }
    assert_eq!(cache.unindexed_rows().unwrap(), (0, 0));
}

fn integrity(cache: &Cache) {
    let conn = cache.writer.lock().unwrap();
    for t in ["messages_fts", "posts_fts"] {
        conn.execute(
            &format!("INSERT INTO {t} ({t}, rank) VALUES ('integrity-check', 1)"),
            [],
        )
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

type Results = Vec<Vec<(HitKind, i64, String)>>;

fn run(cache: &Cache, queries: &[String]) -> Results {
    queries
        .iter()
        .map(|q| {
            cache
                .search(q, 7)
                .unwrap()
                .into_iter()
                .map(|h| (h.kind, h.local_id, h.text))
                .collect()
        })
        .collect()
}

/// Random messages and posts (edits and deletes too); the results of many queries are the
/// same with everything in the tail, with half indexed, and with everything indexed.
#[test]
fn search_results_are_the_same_whether_rows_are_indexed_or_still_in_the_tail() {
    for seed in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
        cache.set_me(ME).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut public, mut private, mut id) = (0u64, 0u64, 0i64);
        let mut post_ids = Vec::new();
        let mut batch = |cache: &Cache, rng: &mut StdRng, n: usize| {
            let mut evs = Vec::new();
            for _ in 0..n {
                id += 1;
                let roll = rng.gen_range(0..100);
                if roll < 45 {
                    public += 1;
                    evs.push(chat(public, id, &text(rng)));
                } else if roll < 80 {
                    private += 1;
                    evs.push(dm(private, id, &text(rng)));
                } else if roll < 92 || post_ids.is_empty() {
                    public += 1;
                    post_ids.push(id);
                    evs.push(public_event(public, post(id, &text(rng))));
                } else if roll < 97 {
                    public += 1;
                    let p = *post_ids.choose(rng).unwrap();
                    evs.push(public_event(
                        public,
                        EventBody::PostEdited(PostEdited {
                            post_id: p,
                            text: text(rng),
                            edited_at: 5000 + id,
                        }),
                    ));
                } else {
                    public += 1;
                    let p = *post_ids.choose(rng).unwrap();
                    evs.push(public_event(
                        public,
                        EventBody::PostDeleted(PostRef { post_id: p }),
                    ));
                }
            }
            cache.apply_batch(ME, &evs).unwrap();
        };
        let mut queries: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
        queries.extend((0..150).map(|_| query(&mut rng)));

        batch(&cache, &mut rng, 300);
        let all_tail = run(&cache, &queries);
        assert_eq!(
            cache.unindexed_rows().unwrap().0,
            cache_rows(&cache, "messages")
        );
        catch_up(&cache);
        assert_eq!(
            run(&cache, &queries),
            all_tail,
            "seed {seed}: all tail vs indexed"
        );
        integrity(&cache);

        // Edits and deletes of indexed posts, new rows in the tail.
        batch(&cache, &mut rng, 300);
        let half = run(&cache, &queries);
        assert!(cache.unindexed_rows().unwrap().0 > 0);
        catch_up(&cache);
        assert_eq!(run(&cache, &queries), half, "seed {seed}: half vs indexed");
        integrity(&cache);
        assert!(
            half.iter().filter(|r| !r.is_empty()).count() > 50,
            "seed {seed}: a test of nothing"
        );
    }
}

fn cache_rows(cache: &Cache, table: &str) -> i64 {
    let conn = cache.writer.lock().unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_new_message_is_found_as_soon_as_it_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
    cache.set_me(ME).unwrap();
    let evs: Vec<_> = (1..=50).map(|i| chat(i, i as i64, "bom dia")).collect();
    cache.apply_batch(ME, &evs).unwrap();
    catch_up(&cache);
    cache
        .apply_batch(ME, &[chat(51, 51, "palavra-única-zq7")])
        .unwrap();
    let hits = cache.search("ÚNICA zq", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].server_id, Some(51));
    assert_eq!(cache.unindexed_rows().unwrap(), (1, 0));
    catch_up(&cache);
    assert_eq!(cache.search("ÚNICA zq", 10).unwrap(), hits);
    integrity(&cache);
}

/// Resets, a new owner, sign-out wipes and the rowid reuse after deletes never leave the
/// index holding what the table does not (or the reverse, once caught up).
#[test]
fn reset_set_me_and_wipe_keep_the_index_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
    cache.set_me(ME).unwrap();
    let evs: Vec<_> = (1..=100)
        .map(|i| chat(i, i as i64, &format!("antes {i}")))
        .collect();
    cache.apply_batch(ME, &evs).unwrap();
    cache
        .apply_batch(ME, &[public_event(101, post(500, "post antigo"))])
        .unwrap();
    catch_up(&cache);
    // The sync point is lost: every server row goes; new rows take the freed rowids.
    cache.reset("epoch-2").unwrap();
    assert!(cache.search("antes", 10).unwrap().is_empty());
    let evs: Vec<_> = (1..=30)
        .map(|i| chat(i, i as i64, &format!("depois {i}")))
        .collect();
    cache.apply_batch(ME, &evs).unwrap();
    assert_eq!(cache.search("depois", 100).unwrap().len(), 30);
    assert!(cache.search("antes", 10).unwrap().is_empty());
    catch_up(&cache);
    integrity(&cache);
    assert_eq!(cache.search("depois", 100).unwrap().len(), 30);

    // Half indexed, then another user signs in on this cache.
    let evs: Vec<_> = (31..=60)
        .map(|i| chat(i, i as i64, &format!("depois {i}")))
        .collect();
    cache.apply_batch(ME, &evs).unwrap();
    assert!(cache.set_me("bia").unwrap());
    assert!(cache.search("depois", 100).unwrap().is_empty());
    cache
        .apply_batch("bia", &[chat(1, 1, "nova dona")])
        .unwrap();
    assert_eq!(cache.search("dona", 10).unwrap().len(), 1);
    catch_up(&cache);
    integrity(&cache);

    // Sign-out wipe, with rows in the tail.
    cache
        .apply_batch("bia", &[chat(2, 2, "ainda na cauda")])
        .unwrap();
    cache.wipe().unwrap();
    assert!(cache.search("cauda", 10).unwrap().is_empty());
    cache.set_me("caio").unwrap();
    cache
        .apply_batch("caio", &[chat(1, 1, "cauda nova")])
        .unwrap();
    assert_eq!(cache.search("cauda", 10).unwrap().len(), 1);
    catch_up(&cache);
    integrity(&cache);
}

/// Post edits and deletes, indexed or not, keep the index right.
#[test]
fn post_edits_and_deletes_keep_the_index_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
    cache.set_me(ME).unwrap();
    cache
        .apply_batch(
            ME,
            &[
                public_event(1, post(1, "primeiro texto")),
                public_event(2, post(2, "segundo texto")),
            ],
        )
        .unwrap();
    catch_up(&cache);
    let edit = |seq, post_id, text: &str| {
        public_event(
            seq,
            EventBody::PostEdited(PostEdited {
                post_id,
                text: text.into(),
                edited_at: 9000,
            }),
        )
    };
    cache
        .apply_batch(
            ME,
            &[
                edit(3, 1, "reescrito"),
                public_event(4, post(3, "terceiro texto")),
                edit(5, 3, "terceiro mudado"),
                public_event(6, EventBody::PostDeleted(PostRef { post_id: 2 })),
            ],
        )
        .unwrap();
    let texts = |q: &str| -> Vec<String> {
        cache
            .search(q, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.text)
            .collect()
    };
    assert_eq!(texts("texto"), Vec::<String>::new());
    assert_eq!(texts("reescrito"), vec!["reescrito"]);
    assert_eq!(texts("terceiro"), vec!["terceiro mudado"]);
    catch_up(&cache);
    integrity(&cache);
    assert_eq!(texts("texto"), Vec::<String>::new());
    assert_eq!(texts("mudado"), vec!["terceiro mudado"]);
    // A pending local post discarded before indexing: its row goes without touching the index.
    let req = papo_protocol::Request::PostCreate(papo_protocol::PostCreate {
        id: uuid::Uuid::now_v7(),
        text: "rascunho local".into(),
    });
    let item = cache.enqueue(ME, &req).unwrap();
    assert_eq!(texts("rascunho"), vec!["rascunho local"]);
    assert!(cache.discard_outbox(item.client_id).unwrap());
    assert!(texts("rascunho").is_empty());
    catch_up(&cache);
    integrity(&cache);
}

/// A cache written before indexing left the apply path is upgraded: everything it holds is
/// found, new rows go to the tail, and all of it gets indexed.
#[test]
fn an_old_schema_cache_is_upgraded_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let conn = Connection::open(&path).unwrap();
        for (i, (_, sql)) in MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('me', 'ana');
             INSERT INTO messages (kind, conversation, server_id, sender, text, at, sk, state)
             VALUES ('chat', 'public', 1, 'bia', 'mensagem velha', 1, 1, 'sent'),
                    ('chat', 'public', 2, 'bia', 'outra velha', 2, 2, 'sent');
             INSERT INTO posts (server_id, author, text, at, sk, state)
             VALUES (1, 'bia', 'post velho', 1, 1, 'sent');
             UPDATE cursor SET seq = 2 WHERE stream = 'public';",
        )
        .unwrap();
    }
    let cache = Cache::open(&path).unwrap();
    // Migration 4 counted what the file held as indexed; migration 8 then built the indexes
    // again (prefix indexes), so the old rows are in the tail until the steps catch up.
    assert_eq!(cache.unindexed_rows().unwrap(), (2, 1));
    assert_eq!(cache.search("velha", 10).unwrap().len(), 2);
    assert_eq!(cache.search("velho", 10).unwrap().len(), 1);
    cache
        .apply_batch(ME, &[chat(3, 3, "mensagem nova")])
        .unwrap();
    assert_eq!(cache.search("mensagem", 10).unwrap().len(), 2);
    assert_eq!(cache.unindexed_rows().unwrap(), (3, 1));
    catch_up(&cache);
    integrity(&cache);
    assert_eq!(cache.search("mensagem", 10).unwrap().len(), 2);
}

/// One step is bounded: a large tail takes several steps.
#[test]
fn an_index_step_is_bounded_and_the_steps_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
    cache.set_me(ME).unwrap();
    let n = super::INDEX_STEP_ROWS as u64 * 2 + 10;
    let evs: Vec<_> = (1..=n)
        .map(|i| chat(i, i as i64, "muitas linhas"))
        .collect();
    cache.apply_batch(ME, &evs).unwrap();
    assert!(cache.index_step().unwrap());
    let (left, _) = cache.unindexed_rows().unwrap();
    assert!(left >= n as i64 - super::INDEX_STEP_ROWS as i64, "{left}");
    catch_up(&cache);
    integrity(&cache);
    assert_eq!(cache.search("linhas", 5).unwrap().len(), 5);
}

/// Migration 7 rebuilds the messages table (client ids unique only where present), migration 8
/// the full-text indexes (with prefix indexes): the rows and their ids survive, search finds
/// every row before and after the index is rebuilt, and a client id is still unique.
#[test]
fn the_messages_and_index_rebuilds_keep_rows_ids_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.sqlite3");
    {
        // A cache as version 6 left it: received rows, a pending local copy, 40 rows indexed.
        let c = Connection::open(&path).unwrap();
        for (_, sql) in &MIGRATIONS[..6] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        for i in 1..=50i64 {
            c.execute(
                "INSERT INTO messages (kind, conversation, server_id, sender, text, at, sk, state) \
                 VALUES ('chat', 'public', ?1, 'bia', ?2, ?1, ?1, 'sent')",
                rusqlite::params![i, format!("linha {i}")],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO messages (kind, conversation, client_id, sender, text, at, sk, state) \
             VALUES ('chat', 'public', 'c-1', 'ana', 'linha minha', 99, 4611686018427387904, \
             'pending')",
            [],
        )
        .unwrap();
        c.execute_batch(
            "INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages WHERE id <= 40;
             UPDATE fts_indexed SET indexed = 40 WHERE tbl = 'messages';",
        )
        .unwrap();
    }
    let cache = Cache::open(&path).unwrap();
    cache.set_me(ME).unwrap();
    assert_eq!(cache_rows(&cache, "messages"), 51);
    // Indexed rows come off the index, the rest off the tail scan: all of them, same ids.
    let hits = cache.search("linha", 100).unwrap();
    assert_eq!(hits.len(), 51);
    assert!(hits.iter().all(|h| h.local_id >= 1 && h.local_id <= 51));
    // Migration 8 built the indexes again (with prefix indexes): everything is in the tail
    // until the background steps catch up, and search found it all the same.
    assert_eq!(cache.unindexed_rows().unwrap(), (51, 0));
    catch_up(&cache);
    assert_eq!(cache.unindexed_rows().unwrap(), (0, 0));
    integrity(&cache);
    assert_eq!(cache.search("linha", 100).unwrap().len(), 51);
    let conn = cache.writer.lock().unwrap();
    // Still unique where present, and looked up through the partial index.
    let dup = conn.execute(
        "INSERT INTO messages (kind, conversation, client_id, sender, text, at, sk, state) \
         VALUES ('chat', 'public', 'c-1', 'ana', 'x', 1, 1, 'pending')",
        [],
    );
    assert!(dup.is_err(), "a second row with client id c-1 was accepted");
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE client_id = 'c-1'",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("messages_client_id"), "{plan}");
    for t in ["messages_fts", "posts_fts"] {
        let sql: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [t], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(sql.contains("prefix = '1 2 3 4 5 6'"), "{sql}");
    }
    // The column constraint's own index (a NULL entry per received row) is gone.
    let autoindexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master \
             WHERE tbl_name = 'messages' AND name LIKE 'sqlite_autoindex%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(autoindexes, 0);
}
