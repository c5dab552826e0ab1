//! Unread counters: maintained vs. recounted, and the upgrade of an old cache.

use crate::cache::{Cache, UnreadStart, UNREAD_START_COUNT_CAP};
use papo_protocol::{ChatMessage, DirectMessage, EventBody, LogEvent, ReadState, Stream};
use rand::{rngs::StdRng, Rng, SeedableRng};

const ME: &str = "ana";
const PEOPLE: [&str; 5] = ["ana", "bia", "caio", "davi", "eva"];

/// Thousands of random events — messages from anyone (me included) in random
/// conversations, replays of events already applied, read marks forward, backward and past
/// the newest message, a reset in the middle — and after each batch the maintained
/// counters equal a full recount.
#[test]
fn maintained_unread_counters_equal_a_full_recount_under_random_events() {
    for seed in 0..4u64 {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c.sqlite")).unwrap();
        cache.set_me(ME).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut public_seq, mut private_seq, mut next_id) = (0u64, 0u64, 1i64);
        let mut applied: Vec<LogEvent> = Vec::new();
        // Every message so far and its stream, for deletes.
        let mut sent: Vec<(i64, Stream)> = Vec::new();
        for batch_no in 0..60 {
            let mut batch = Vec::new();
            for _ in 0..rng.gen_range(1..60) {
                let at = next_id * 10;
                let roll = rng.gen_range(0..100);
                let ev = if roll < 40 {
                    public_seq += 1;
                    next_id += 1;
                    sent.push((next_id, Stream::Public));
                    LogEvent {
                        stream: Stream::Public,
                        seq: public_seq,
                        at,
                        cid: None,
                        body: EventBody::ChatMessage(ChatMessage {
                            id: next_id,
                            from: PEOPLE[rng.gen_range(0..PEOPLE.len())].into(),
                            text: format!("chat {next_id}"),
                            at,
                            reply_to: None,
                        }),
                    }
                } else if roll < 75 {
                    private_seq += 1;
                    next_id += 1;
                    sent.push((next_id, Stream::Private));
                    let peer = PEOPLE[rng.gen_range(1..PEOPLE.len())];
                    let (from, to) = if rng.gen_bool(0.3) {
                        (ME, peer)
                    } else {
                        (peer, ME)
                    };
                    LogEvent {
                        stream: Stream::Private,
                        seq: private_seq,
                        at,
                        cid: None,
                        body: EventBody::DmMessage(DirectMessage {
                            id: next_id,
                            from: from.into(),
                            to: to.into(),
                            text: format!("dm {next_id}"),
                            at,
                            reply_to: None,
                        }),
                    }
                } else if roll < 85 && !sent.is_empty() {
                    // A message deleted by its sender (sometimes twice, or one read already).
                    let (id, stream) = sent[rng.gen_range(0..sent.len())];
                    let seq = match stream {
                        Stream::Public => {
                            public_seq += 1;
                            public_seq
                        }
                        Stream::Private => {
                            private_seq += 1;
                            private_seq
                        }
                    };
                    LogEvent {
                        stream,
                        seq,
                        at,
                        cid: None,
                        body: EventBody::MessageDeleted(papo_protocol::MessageRef {
                            message_id: id,
                        }),
                    }
                } else {
                    private_seq += 1;
                    let conversation = if rng.gen_bool(0.4) {
                        "public".to_string()
                    } else {
                        format!("dm:{}", PEOPLE[rng.gen_range(1..PEOPLE.len())])
                    };
                    // Anywhere from long ago to past the newest message.
                    let last_read = rng.gen_range(0..next_id + 5);
                    LogEvent {
                        stream: Stream::Private,
                        seq: private_seq,
                        at,
                        cid: None,
                        body: EventBody::ReadUpdated(ReadState {
                            conversation,
                            last_read,
                        }),
                    }
                };
                batch.push(ev);
            }
            // Sometimes a replay of what was applied already (ignored by sequence).
            if !applied.is_empty() && rng.gen_bool(0.2) {
                let from = rng.gen_range(0..applied.len());
                let mut replay: Vec<LogEvent> = applied[from..].to_vec();
                replay.extend(batch.iter().cloned());
                cache.apply_batch(ME, &replay).unwrap();
            } else {
                cache.apply_batch(ME, &batch).unwrap();
            }
            applied.extend(batch);
            if batch_no == 30 && seed % 2 == 1 {
                cache.reset("another-epoch").unwrap();
                (public_seq, private_seq) = (0, 0);
                applied.clear();
                sent.clear();
            }
            assert_eq!(
                cache.unread_counts().unwrap(),
                cache.recount_unread(ME).unwrap(),
                "seed {seed}, batch {batch_no}"
            );
            check_unread_start(&cache, &format!("seed {seed}, batch {batch_no}"));
        }
        assert!(
            cache.recount_unread(ME).unwrap().total > 0,
            "seed {seed}: a test of nothing"
        );
    }
}

/// `unread_start` of every conversation equals what a scan of all its rows finds: the oldest
/// message of someone else past the read mark, and the rows from it to the newest.
fn check_unread_start(cache: &Cache, when: &str) {
    let unread = cache.unread_counts().unwrap();
    for conv in
        std::iter::once("public".to_string()).chain(PEOPLE[1..].iter().map(|p| format!("dm:{p}")))
    {
        let rows = cache.conversation_page(&conv, None, 1_000_000).unwrap();
        let last_read: i64 = cache
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COALESCE((SELECT last_read FROM read_state WHERE conversation = ?1), 0)",
                    [&conv],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        let want = rows
            .iter()
            .filter(|m| m.sender != ME && !m.deleted && m.server_id.is_some_and(|s| s > last_read))
            .min_by_key(|m| m.server_id)
            .map(|m| UnreadStart {
                key: m.key,
                server_id: m.server_id.unwrap(),
                rows_since: (rows
                    .iter()
                    .filter(|r| (r.key.at, r.key.sk) >= (m.key.at, m.key.sk))
                    .count() as i64)
                    .min(UNREAD_START_COUNT_CAP),
            });
        let got = cache.unread_start(&conv).unwrap();
        assert_eq!(got, want, "{when}, {conv}");
        let count = unread
            .conversations
            .iter()
            .find(|(c, _)| *c == conv)
            .map_or(0, |(_, n)| *n);
        assert_eq!(
            got.is_some(),
            count > 0,
            "{when}, {conv}: start vs count {count}"
        );
    }
}

/// A cache written before the counters existed gets them counted once at upgrade.
#[test]
fn an_old_cache_gets_its_counters_at_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/0001_initial.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO meta (key, value) VALUES ('me', 'ana');
             INSERT INTO messages (kind, conversation, server_id, sender, text, at, sk, state)
             VALUES ('dm', 'dm:bia', 1, 'bia', 'a', 1, 1, 'sent'),
                    ('dm', 'dm:bia', 2, 'ana', 'b', 2, 2, 'sent'),
                    ('dm', 'dm:bia', 3, 'bia', 'c', 3, 3, 'sent'),
                    ('chat', 'public', 4, 'caio', 'd', 4, 4, 'sent'),
                    ('chat', 'public', 5, 'ana', 'e', 5, 5, 'sent');
             INSERT INTO conversations VALUES ('dm:bia', 3, 'bia', 'c'), ('public', 5, 'ana', 'e');
             INSERT INTO read_state VALUES ('dm:bia', 1);",
        )
        .unwrap();
    }
    let cache = Cache::open(&path).unwrap();
    let counts = cache.unread_counts().unwrap();
    assert_eq!(counts, cache.recount_unread(ME).unwrap());
    assert_eq!(
        counts.conversations,
        vec![("dm:bia".to_string(), 1), ("public".to_string(), 1)]
    );
    let unread: Vec<_> = cache
        .conversations()
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.unread))
        .collect();
    assert_eq!(unread, vec![("public".into(), 1), ("dm:bia".into(), 1)]);
}
