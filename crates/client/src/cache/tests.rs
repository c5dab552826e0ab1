use super::*;
use crate::outbox::OutboxState;
use papo_protocol::{
    ChatMessage, ChatSend, DirectMessage, DmSend, ErrorBody, ErrorCode, LikeChange, Post,
    ReadState, Request,
};
use papo_protocol::{Cursor, EventBody, LogEvent, Stream};
use uuid::Uuid;

fn open() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache.sqlite3")).unwrap();
    cache.set_me("ana").unwrap();
    (dir, cache)
}

fn chat(seq: u64, id: i64, from: &str, text: &str) -> LogEvent {
    LogEvent {
        stream: Stream::Public,
        seq,
        at: 1000 + id,
        cid: None,
        body: EventBody::ChatMessage(ChatMessage {
            id,
            from: from.into(),
            text: text.into(),
            at: 1000 + id,
            reply_to: None,
        }),
    }
}

fn public_texts(cache: &Cache) -> Vec<String> {
    let mut rows = cache.conversation_page("public", None, 100_000).unwrap();
    rows.reverse();
    rows.into_iter().map(|r| r.text).collect()
}

#[test]
fn migrations_apply_to_a_fresh_file_and_reopen_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite3");
    drop(Cache::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, MIGRATIONS.len() as i64);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    Cache::open(&path).unwrap();
}

#[test]
fn a_cache_from_a_newer_app_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite3");
    drop(Cache::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        Cache::open(&path),
        Err(CacheError::TooNew { found: 99, .. })
    ));
    // Or only in refinery's history (a newer app that no longer bumped the legacy marker).
    let path = dir.path().join("d.sqlite3");
    drop(Cache::open(&path).unwrap());
    let next = MIGRATIONS.len() as i64 + 1;
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (?1, 'future', '2030-01-01T00:00:00Z', '1')",
            [next],
        )
        .unwrap();
    match Cache::open(&path) {
        Err(CacheError::TooNew { found, .. }) => assert_eq!(found, next),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refinery_records_every_migration_once_also_for_a_cache_from_before_it() {
    let history = |path: &std::path::Path| -> Vec<i64> {
        let c = Connection::open(path).unwrap();
        let mut st = c
            .prepare("SELECT version FROM refinery_schema_history ORDER BY version")
            .unwrap();
        let v = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<i64>>>()
            .unwrap();
        v
    };
    let all: Vec<i64> = (1..=MIGRATIONS.len() as i64).collect();
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.sqlite3");
    drop(Cache::open(&fresh).unwrap());
    drop(Cache::open(&fresh).unwrap());
    assert_eq!(history(&fresh), all);
    // Made by the hand-written runner at version 2: baselined, then migrated from 3 on.
    let old = dir.path().join("old.sqlite3");
    {
        let c = Connection::open(&old).unwrap();
        for (_, sql) in &MIGRATIONS[..2] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
    }
    let cache = Cache::open(&old).unwrap();
    cache.set_draft("public", "ok").unwrap();
    drop(cache);
    assert_eq!(history(&old), all);
}

#[test]
fn each_event_is_applied_once_and_duplicates_are_skipped() {
    let (_d, cache) = open();
    let out = cache
        .apply_batch("ana", &[chat(1, 1, "bia", "a"), chat(2, 2, "bia", "b")])
        .unwrap();
    assert_eq!(out.applied.len(), 2);
    let out = cache
        .apply_batch(
            "ana",
            &[
                chat(1, 1, "bia", "a"),
                chat(2, 2, "bia", "b"),
                chat(3, 3, "caio", "c"),
            ],
        )
        .unwrap();
    assert_eq!(out.duplicates, 2);
    assert_eq!(out.applied.len(), 1);
    assert_eq!(public_texts(&cache), ["a", "b", "c"]);
    assert_eq!(cache.resume_point().unwrap().0.public, 3);
}

#[test]
fn a_gap_stops_the_batch_and_keeps_what_came_before() {
    let (_d, cache) = open();
    let out = cache
        .apply_batch(
            "ana",
            &[
                chat(1, 1, "bia", "a"),
                chat(3, 3, "bia", "c"),
                chat(4, 4, "bia", "d"),
            ],
        )
        .unwrap();
    assert_eq!(out.gap, Some((Stream::Public, 2, 3)));
    assert_eq!(public_texts(&cache), ["a"]);
    assert_eq!(cache.resume_point().unwrap().0.public, 1);
}

#[test]
fn a_batch_that_fails_midway_leaves_neither_effects_nor_cursor() {
    let (_d, cache) = open();
    cache
        .writer
        .lock()
        .unwrap()
        .execute_batch(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON messages WHEN new.text = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'simulated crash'); END;",
        )
        .unwrap();
    let batch = [
        chat(1, 1, "bia", "a"),
        chat(2, 2, "bia", "boom"),
        chat(3, 3, "bia", "c"),
    ];
    assert!(cache.apply_batch("ana", &batch).is_err());
    assert!(public_texts(&cache).is_empty());
    assert_eq!(cache.resume_point().unwrap().0, Cursor::default());
    // After "restart", the same events arrive again and are applied exactly once.
    drop(cache);
    let cache = Cache::open(_d.path().join("cache.sqlite3")).unwrap();
    let out = cache.apply_batch("ana", &batch).unwrap();
    assert_eq!(out.applied.len(), 3);
    cache.apply_batch("ana", &batch).unwrap();
    assert_eq!(public_texts(&cache), ["a", "boom", "c"]);
}

#[test]
fn events_are_deduplicated_by_server_id_even_across_a_reset() {
    let (_d, cache) = open();
    cache
        .apply_batch("ana", &[chat(1, 10, "bia", "a")])
        .unwrap();
    cache.reset("epoch-2").unwrap();
    assert_eq!(
        cache.resume_point().unwrap(),
        (Cursor::default(), Some("epoch-2".into()))
    );
    cache
        .apply_batch("ana", &[chat(1, 10, "bia", "a"), chat(2, 11, "bia", "b")])
        .unwrap();
    assert_eq!(public_texts(&cache), ["a", "b"]);
}

#[test]
fn outbox_write_is_atomic_with_the_local_copy_and_confirmation_gives_server_id() {
    let (_d, cache) = open();
    let cid = Uuid::now_v7();
    let req = Request::ChatSend(ChatSend {
        id: cid,
        text: "oi".into(),
        reply_to: None,
    });
    cache.enqueue("ana", &req).unwrap();
    let rows = cache.conversation_page("public", None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, LocalState::Pending);
    assert_eq!(rows[0].client_id, Some(cid));
    assert_eq!(cache.next_outbox_item().unwrap().unwrap().client_id, cid);

    // The log event with our client id confirms it and replaces nothing twice.
    let mut ev = chat(1, 42, "ana", "oi");
    ev.cid = Some(cid);
    let out = cache.apply_batch("ana", &[ev]).unwrap();
    assert_eq!(out.confirmed, vec![cid]);
    let rows = cache.conversation_page("public", None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].server_id, Some(42));
    assert_eq!(rows[0].state, LocalState::Sent);
    assert!(cache.next_outbox_item().unwrap().is_none());
    assert_eq!(cache.outbox_counts().unwrap(), (0, 1, 0));
}

#[test]
fn reply_confirmation_then_log_event_gives_one_row() {
    let (_d, cache) = open();
    let cid = Uuid::now_v7();
    let req = Request::DmSend(DmSend {
        id: cid,
        to: "joao".into(),
        text: "oi".into(),
        reply_to: None,
    });
    cache.enqueue("ana", &req).unwrap();
    let ev = LogEvent {
        stream: Stream::Private,
        seq: 1,
        at: 5,
        cid: Some(cid),
        body: EventBody::DmMessage(DirectMessage {
            id: 7,
            from: "ana".into(),
            to: "joao".into(),
            text: "oi".into(),
            at: 5,
            reply_to: None,
        }),
    };
    assert!(cache.outbox_confirm("ana", cid, Some(&ev)).unwrap());
    assert!(!cache.outbox_confirm("ana", cid, Some(&ev)).unwrap());
    cache.apply_batch("ana", &[ev]).unwrap();
    let rows = cache.conversation_page("dm:joao", None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].server_id, rows[0].at), (Some(7), 5));
}

#[test]
fn failed_items_keep_the_reason_and_can_be_retried_or_discarded() {
    let (_d, cache) = open();
    let a = Uuid::now_v7();
    let b = Uuid::now_v7();
    for (id, t) in [(a, "a"), (b, "b")] {
        cache
            .enqueue(
                "ana",
                &Request::ChatSend(ChatSend {
                    id,
                    text: t.into(),
                    reply_to: None,
                }),
            )
            .unwrap();
    }
    let err = ErrorBody::new(ErrorCode::InvalidText, "too long");
    assert!(cache.outbox_fail(a, &err).unwrap());
    let item = cache.outbox_item(a).unwrap().unwrap();
    assert_eq!(item.state, OutboxState::Wedged);
    assert_eq!(item.error, Some(err));
    assert_eq!(cache.next_outbox_item().unwrap().unwrap().client_id, b);
    // A refused item is retried under a new client id (the server replays a refusal by id).
    let a = cache.retry_outbox_as(a).unwrap().unwrap();
    assert_eq!(cache.next_outbox_item().unwrap().unwrap().client_id, a);
    assert!(cache.discard_outbox(a).unwrap());
    assert_eq!(public_texts(&cache), ["b"]);
    // Deferral keeps it pending with a due time.
    cache
        .outbox_defer(b, 123, &ErrorBody::new(ErrorCode::RateLimited, "slow"))
        .unwrap();
    let item = cache.next_outbox_item().unwrap().unwrap();
    assert_eq!(item.next_attempt_at, Some(123));
}

#[test]
fn outbox_survives_reopening_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite3");
    let cache = Cache::open(&path).unwrap();
    cache.set_me("ana").unwrap();
    let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    for (i, id) in ids.iter().enumerate() {
        cache
            .enqueue(
                "ana",
                &Request::ChatSend(ChatSend {
                    id: *id,
                    text: format!("m{i}"),
                    reply_to: None,
                }),
            )
            .unwrap();
    }
    drop(cache);
    let cache = Cache::open(&path).unwrap();
    let items = cache.outbox().unwrap();
    assert_eq!(items.iter().map(|i| i.client_id).collect::<Vec<_>>(), ids);
}

#[test]
fn keyset_pages_walk_a_conversation_without_overlap() {
    let (_d, cache) = open();
    let events: Vec<_> = (1..=250)
        .map(|i| chat(i, i as i64, "bia", &format!("m{i}")))
        .collect();
    cache.apply_batch("ana", &events).unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = cache.conversation_page("public", before, 100).unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().key);
        seen.extend(page.into_iter().map(|r| r.server_id.unwrap()));
    }
    assert_eq!(seen, (1..=250).rev().collect::<Vec<i64>>());
}

#[test]
fn the_conversation_list_pages_in_recency_order_with_the_public_room_pinned() {
    let (_d, cache) = open();
    // 23 DM peers, several sharing a time (the id breaks the tie), and the public room.
    let mut events = vec![chat(1, 1, "bia", "olá")];
    for i in 0..23i64 {
        events.push(LogEvent {
            stream: Stream::Private,
            seq: i as u64 + 1,
            at: 2000 + i / 3,
            cid: None,
            body: EventBody::DmMessage(DirectMessage {
                id: 100 + i,
                from: format!("p{i:02}"),
                to: "ana".into(),
                text: format!("oi {i}"),
                at: 2000 + i / 3,
                reply_to: None,
            }),
        });
    }
    cache.apply_batch("ana", &events).unwrap();
    let all: Vec<_> = cache
        .conversations()
        .unwrap()
        .into_iter()
        .filter(|c| c.id != "public")
        .collect();
    assert_eq!(all.len(), 23);

    let first = cache.conversations_page(None, 5).unwrap();
    assert_eq!(first.pinned.as_ref().map(|c| c.id.as_str()), Some("public"));
    assert_eq!(first.unread_total, 24);
    let mut seen = first.rows.clone();
    let mut more = first.more;
    while more {
        let last = seen.last().unwrap();
        let page = cache
            .conversations_page(Some((last.last_at, last.id.clone())), 5)
            .unwrap();
        assert!(
            page.pinned.is_none(),
            "the public room is pinned on the first page only"
        );
        assert!(page.rows.len() <= 5);
        more = page.more;
        seen.extend(page.rows);
    }
    let key = |c: &ConversationRow| {
        (
            std::cmp::Reverse(c.last_at),
            std::cmp::Reverse(c.id.clone()),
        )
    };
    let mut expected = all.clone();
    expected.sort_by_key(key);
    assert_eq!(
        seen, expected,
        "every DM conversation once, most recent first"
    );

    // A page's cost follows its size: the rows come off the recency index, with no sort of
    // the whole table.
    let plan: Vec<String> = cache
        .read(|c| {
            let mut st = c.prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::read::CONVERSATIONS_PAGE_SQL
            ))?;
            let rows = st.query_map(rusqlite::params![1, "x", 5], |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("conversations_recent")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
}

#[test]
fn a_profile_reads_its_counts_posts_and_follow_lists_off_the_cache() {
    let (_d, cache) = open();
    let post = |seq, id, author: &str| {
        public_event(
            seq,
            EventBody::PostCreated(Post {
                id,
                author: author.into(),
                text: format!("post {id}"),
                at: id,
                edited_at: None,
                like_count: 0,
                comment_count: 0,
                share_count: 0,
                share_of: None,
            }),
        )
    };
    let follow = |seq, follower: &str, followee: &str, follower_count| {
        public_event(
            seq,
            EventBody::UserFollowed(papo_protocol::FollowChange {
                follower: follower.into(),
                followee: followee.into(),
                follower_count,
            }),
        )
    };
    let mut events: Vec<_> = (1..=25)
        .map(|i| post(i, i as i64, if i % 5 == 0 { "caio" } else { "bia" }))
        .collect();
    events.push(follow(26, "ana", "bia", 1));
    events.push(follow(27, "caio", "bia", 2));
    events.push(follow(28, "bia", "caio", 1));
    cache.apply_batch("ana", &events).unwrap();

    let bia = cache.profile("ana", "bia").unwrap();
    assert_eq!(
        (
            bia.follower_count,
            bia.following_count,
            bia.followed_by_me,
            bia.follows_me
        ),
        (2, 1, true, false)
    );
    let caio = cache.profile("ana", "caio").unwrap();
    assert_eq!(
        (
            caio.follower_count,
            caio.following_count,
            caio.followed_by_me
        ),
        (1, 1, false)
    );
    // Someone the cache never heard of: zeros, not an error.
    let nobody = cache.profile("ana", "zeca").unwrap();
    assert_eq!((nobody.follower_count, nobody.following_count), (0, 0));

    // bia's 20 posts, newest first, in pages, none of caio's.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = cache.posts_by("ana", "bia", before, 8).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|p| p.author == "bia"));
        before = Some(page.last().unwrap().key);
        seen.extend(page.into_iter().map(|p| p.server_id.unwrap()));
    }
    let expected: Vec<i64> = (1..=25).rev().filter(|i| i % 5 != 0).collect();
    assert_eq!(seen, expected);

    let followers = |after| {
        cache
            .follow_list("bia", FollowList::Followers, after, 1)
            .unwrap()
    };
    assert_eq!(followers(None), vec!["ana".to_string()]);
    assert_eq!(followers(Some("ana")), vec!["caio".to_string()]);
    assert!(followers(Some("caio")).is_empty());
    assert_eq!(
        cache
            .follow_list("bia", FollowList::Following, None, 10)
            .unwrap(),
        vec!["caio".to_string()]
    );

    // Both reads come off their own index, whatever else the cache holds.
    let plans: Vec<String> = cache
        .read(|c| {
            let mut out = Vec::new();
            for sql in [
                "EXPLAIN QUERY PLAN SELECT id FROM posts p WHERE p.author = 'bia' AND p.deleted = 0 \
                 AND (p.at, p.sk) < (1, 1) ORDER BY p.at DESC, p.sk DESC LIMIT 5",
                "EXPLAIN QUERY PLAN SELECT follower FROM follows WHERE followee = 'bia' \
                 AND follower > '' ORDER BY follower LIMIT 5",
            ] {
                let mut st = c.prepare(sql)?;
                let rows = st.query_map([], |r| r.get::<_, String>(3))?;
                out.push(rows.collect::<Result<Vec<_>, _>>()?.join("; "));
            }
            Ok(out)
        })
        .unwrap();
    assert!(
        plans[0].contains("posts_author") && !plans[0].contains("TEMP B-TREE"),
        "{}",
        plans[0]
    );
    assert!(
        plans[1].contains("follows_followee") && !plans[1].contains("TEMP B-TREE"),
        "{}",
        plans[1]
    );
}

#[test]
fn feed_likes_unread_read_marks_and_search() {
    let (_d, cache) = open();
    let post = |seq, id, text: &str| LogEvent {
        stream: Stream::Public,
        seq,
        at: id,
        cid: None,
        body: EventBody::PostCreated(Post {
            id,
            author: "bia".into(),
            text: text.into(),
            at: id,
            edited_at: None,
            like_count: 0,
            comment_count: 0,
            share_count: 0,
            share_of: None,
        }),
    };
    let liked = LogEvent {
        stream: Stream::Public,
        seq: 3,
        at: 3,
        cid: None,
        body: EventBody::PostLiked(LikeChange {
            post_id: 1,
            by: "ana".into(),
            like_count: 1,
        }),
    };
    cache
        .apply_batch(
            "ana",
            &[
                post(1, 1, "bom dia pessoal"),
                post(2, 2, "boa noite"),
                liked,
            ],
        )
        .unwrap();
    let feed = cache.feed_page("ana", None, 10).unwrap();
    assert_eq!(feed.len(), 2);
    assert_eq!(feed[0].server_id, Some(2));
    assert!(feed[1].liked_by_me && feed[1].like_count == 1);

    let dm = |seq, id, from: &str| LogEvent {
        stream: Stream::Private,
        seq,
        at: id,
        cid: None,
        body: EventBody::DmMessage(DirectMessage {
            id,
            from: from.into(),
            to: "ana".into(),
            text: format!("recado {id}"),
            at: id,
            reply_to: None,
        }),
    };
    cache
        .apply_batch("ana", &[dm(1, 10, "joao"), dm(2, 11, "joao")])
        .unwrap();
    let unread = cache.unread_counts().unwrap();
    assert_eq!(unread.total, 2);
    assert_eq!(unread.conversations, vec![("dm:joao".to_string(), 2)]);
    let read = LogEvent {
        stream: Stream::Private,
        seq: 3,
        at: 12,
        cid: None,
        body: EventBody::ReadUpdated(ReadState {
            conversation: "dm:joao".into(),
            last_read: 10,
        }),
    };
    cache.apply_batch("ana", &[read]).unwrap();
    assert_eq!(cache.unread_counts().unwrap().total, 1);
    let convs = cache.conversations().unwrap();
    assert_eq!(convs[0].id, "dm:joao");
    assert_eq!(convs[0].unread, 1);

    let hits = cache.search("bom", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, HitKind::Post);
    let hits = cache.search("recado", 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].conversation.as_deref(), Some("dm:joao"));
    // Hostile FTS syntax is just text.
    assert!(cache.search("\"unbalanced AND (", 10).unwrap().is_empty());
}

#[test]
fn another_user_signing_in_wipes_the_cache() {
    let (_d, cache) = open();
    cache.apply_batch("ana", &[chat(1, 1, "bia", "a")]).unwrap();
    assert!(!cache.set_me("ana").unwrap());
    assert!(cache.set_me("caio").unwrap());
    assert!(public_texts(&cache).is_empty());
    assert_eq!(cache.resume_point().unwrap(), (Cursor::default(), None));
}

/// An event of the public stream at seq `seq` (also used by the full-text tests).
pub(super) fn public_event(seq: u64, body: EventBody) -> LogEvent {
    LogEvent {
        stream: Stream::Public,
        seq,
        at: 1000 + seq as i64,
        cid: None,
        body,
    }
}

#[test]
fn an_edit_and_a_delete_of_someone_elses_message_apply_and_keep_the_counters_true() {
    use papo_protocol::{MessageEdited, MessageRef};
    let (_dir, cache) = open();
    cache
        .apply_batch(
            "ana",
            &[chat(1, 1, "bia", "primeira"), chat(2, 2, "bia", "segunda")],
        )
        .unwrap();
    assert_eq!(cache.unread_counts().unwrap().total, 2);
    // Both indexed: the edit and the delete must reach the full-text index, not only the tail.
    while cache.index_step().unwrap() {}
    assert_eq!(cache.search("segunda", 10).unwrap().len(), 1);
    // In one batch: an edit of the first, a delete of the second (the newest), and one message
    // the cache never had.
    let out = cache
        .apply_batch(
            "ana",
            &[
                public_event(
                    3,
                    EventBody::MessageEdited(MessageEdited {
                        message_id: 1,
                        text: "primeira, editada".into(),
                        edited_at: 7000,
                    }),
                ),
                public_event(4, EventBody::MessageDeleted(MessageRef { message_id: 2 })),
                public_event(5, EventBody::MessageDeleted(MessageRef { message_id: 99 })),
                public_event(6, EventBody::MessageDeleted(MessageRef { message_id: 2 })),
            ],
        )
        .unwrap();
    assert_eq!(public_texts(&cache), vec!["primeira, editada", ""]);
    let rows = cache.conversation_page("public", None, 10).unwrap();
    assert!(rows[0].deleted && rows[0].edited_at.is_none());
    assert_eq!(rows[1].edited_at, Some(7000));
    assert_eq!(cache.unread_counts().unwrap().total, 1);
    assert_eq!(
        cache.unread_counts().unwrap(),
        cache.recount_unread("ana").unwrap()
    );
    // The change set carries both rows and the conversation, whose last message is deleted.
    assert_eq!(out.changes.messages.len(), 2);
    let conv = &out.changes.conversations[0];
    assert_eq!((conv.id.as_str(), conv.last_text.as_str()), ("public", ""));
    assert!(cache.search("segunda", 10).unwrap().is_empty());
    assert!(cache.search("primeira", 10).unwrap()[0]
        .text
        .contains("editada"));
    assert_eq!(cache.search("editada", 10).unwrap().len(), 1);
}

#[test]
fn completion_offers_known_users_by_prefix_without_me() {
    use papo_protocol::{DirectMessage, FollowChange};
    let (_dir, cache) = open();
    let follow = |seq, followee: &str| {
        public_event(
            seq,
            EventBody::UserFollowed(FollowChange {
                follower: "ana".into(),
                followee: followee.into(),
                follower_count: 1,
            }),
        )
    };
    let dm = LogEvent {
        stream: Stream::Private,
        seq: 1,
        at: 9000,
        cid: None,
        body: EventBody::DmMessage(DirectMessage {
            id: 1,
            from: "joaquim".into(),
            to: "ana".into(),
            text: "oi".into(),
            at: 9000,
            reply_to: None,
        }),
    };
    cache
        .apply_batch(
            "ana",
            &[follow(1, "joao"), follow(2, "bia"), follow(3, "anabel"), dm],
        )
        .unwrap();
    assert_eq!(
        cache.known_users("jo", "ana", 8).unwrap(),
        ["joao", "joaquim"]
    );
    assert_eq!(cache.known_users("an", "ana", 8).unwrap(), ["anabel"]);
    assert_eq!(cache.known_users("", "ana", 2).unwrap(), ["anabel", "bia"]);
    // Whatever is typed, only username characters reach the query.
    assert!(cache.known_users("x%'", "ana", 8).unwrap().is_empty());
}

#[test]
fn a_reply_keeps_its_quote_true_to_the_original_through_edits_and_deletes() {
    use papo_protocol::{MessageEdited, MessageRef, ReplyQuote};
    let (_d, cache) = open();
    let mut reply = chat(2, 11, "bia", "concordo");
    if let EventBody::ChatMessage(m) = &mut reply.body {
        m.reply_to = Some(ReplyQuote {
            message_id: 10,
            from: "caio".into(),
            excerpt: "vamos às 8?".into(),
        });
    }
    cache
        .apply_batch(
            "ana",
            &[
                chat(1, 10, "caio", "vamos às 8?"),
                reply,
                chat(3, 12, "bia", "x"),
            ],
        )
        .unwrap();
    let quote_of = |rows: &[MessageRow], text: &str| {
        rows.iter()
            .find(|m| m.text == text)
            .unwrap_or_else(|| panic!("no row {text}"))
            .reply_to
            .clone()
    };
    let page = cache.conversation_page("public", None, 10).unwrap();
    assert_eq!(
        quote_of(&page, "concordo"),
        Some(Quote {
            server_id: 10,
            sender: "caio".into(),
            excerpt: Some("vamos às 8?".into()),
        })
    );
    assert_eq!(quote_of(&page, "x"), None);

    // My own reply, before the server has it: the quote comes from the cache.
    let cid = Uuid::now_v7();
    let mine = Request::ChatSend(ChatSend {
        id: cid,
        text: "eu também".into(),
        reply_to: Some(10),
    });
    cache.enqueue("ana", &mine).unwrap();
    let local = cache.local_changes("ana", cid, Some(&mine)).unwrap();
    assert_eq!(
        quote_of(&local.messages, "eu também")
            .unwrap()
            .excerpt
            .as_deref(),
        Some("vamos às 8?")
    );

    // The original edited: both replies' quotes follow, and the change set carries them.
    let edit = LogEvent {
        stream: Stream::Public,
        seq: 4,
        at: 2000,
        cid: None,
        body: EventBody::MessageEdited(MessageEdited {
            message_id: 10,
            text: "vamos às 9?".into(),
            edited_at: 2000,
        }),
    };
    let out = cache.apply_batch("ana", &[edit]).unwrap();
    for text in ["concordo", "eu também"] {
        assert_eq!(
            quote_of(&out.changes.messages, text)
                .unwrap()
                .excerpt
                .as_deref(),
            Some("vamos às 9?"),
            "{text}"
        );
    }
    let page = cache.conversation_page("public", None, 10).unwrap();
    assert_eq!(
        quote_of(&page, "concordo").unwrap().excerpt.as_deref(),
        Some("vamos às 9?")
    );

    // Deleted: the quotes stop quoting it (the UI shows "message deleted").
    let delete = LogEvent {
        stream: Stream::Public,
        seq: 5,
        at: 2001,
        cid: None,
        body: EventBody::MessageDeleted(MessageRef { message_id: 10 }),
    };
    let out = cache.apply_batch("ana", &[delete]).unwrap();
    for text in ["concordo", "eu também"] {
        let q = quote_of(&out.changes.messages, text).unwrap();
        assert_eq!((q.server_id, q.excerpt), (10, None), "{text}");
    }
    let page = cache.conversation_page("public", None, 10).unwrap();
    assert_eq!(quote_of(&page, "concordo").unwrap().excerpt, None);
    // A late reply to it (written before the delete reached its sender) says so at once.
    let mut late = chat(6, 13, "bia", "tarde");
    if let EventBody::ChatMessage(m) = &mut late.body {
        m.reply_to = Some(ReplyQuote {
            message_id: 10,
            from: "caio".into(),
            excerpt: "vamos às 9?".into(),
        });
    }
    cache.apply_batch("ana", &[late]).unwrap();
    let page = cache.conversation_page("public", None, 10).unwrap();
    assert_eq!(quote_of(&page, "tarde").unwrap().excerpt, None);
}

#[test]
fn a_window_around_a_message_and_the_pages_after_it_walk_the_conversation() {
    let (_d, cache) = open();
    let events: Vec<_> = (1..=50)
        .map(|i| chat(i as u64, i, "bia", &format!("m{i}")))
        .collect();
    cache.apply_batch("ana", &events).unwrap();
    let texts = |rows: &[MessageRow]| rows.iter().map(|r| r.text.clone()).collect::<Vec<_>>();
    let around = cache.conversation_around("public", 20, 3).unwrap().unwrap();
    assert_eq!(
        texts(&around.rows),
        ["m17", "m18", "m19", "m20", "m21", "m22", "m23"]
    );
    assert_eq!(around.rows[3].local_id, around.target_local_id);
    assert!(!around.older_done && !around.newer_done);
    // At the edges, each side says when nothing is beyond it.
    let first = cache.conversation_around("public", 2, 3).unwrap().unwrap();
    assert_eq!(texts(&first.rows), ["m1", "m2", "m3", "m4", "m5"]);
    assert!(first.older_done && !first.newer_done);
    let last = cache.conversation_around("public", 47, 3).unwrap().unwrap();
    assert!(!last.older_done && last.newer_done);
    // Not of this conversation, or not cached: nothing.
    assert!(cache
        .conversation_around("dm:bia", 20, 3)
        .unwrap()
        .is_none());
    assert!(cache
        .conversation_around("public", 99, 3)
        .unwrap()
        .is_none());
    // Paging forward from the window reaches the newest message without overlap.
    let mut seen = texts(&around.rows);
    let mut after = around.rows.last().unwrap().key;
    loop {
        let page = cache.conversation_page_after("public", after, 10).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().key;
        seen.extend(texts(&page));
    }
    let want: Vec<_> = (17..=50).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn an_event_this_build_does_not_understand_moves_the_cursor_and_changes_nothing() {
    let (_d, cache) = open();
    let unknown = LogEvent {
        stream: Stream::Public,
        seq: 2,
        at: 1002,
        cid: None,
        body: EventBody::Unknown,
    };
    let out = cache
        .apply_batch(
            "ana",
            &[chat(1, 1, "bia", "a"), unknown, chat(3, 3, "bia", "c")],
        )
        .unwrap();
    assert_eq!(out.gap, None);
    assert_eq!(out.applied.len(), 3);
    assert_eq!(public_texts(&cache), ["a", "c"]);
    assert_eq!(
        cache.resume_point().unwrap().0,
        Cursor {
            public: 3,
            private: 0
        }
    );
}

#[test]
fn a_share_shows_its_original_as_the_cache_holds_it_and_counts_follow() {
    use papo_protocol::{Post, PostAction, PostEdited, PostRef, PostShare, ShareChange};
    let (_d, cache) = open();
    let public = |seq: u64, body: EventBody| LogEvent {
        stream: Stream::Public,
        seq,
        at: 1000 + seq as i64,
        cid: None,
        body,
    };
    let post = |id: i64, author: &str, text: &str, share_of: Option<i64>| {
        EventBody::PostCreated(Post {
            id,
            author: author.into(),
            text: text.into(),
            at: 1000 + id,
            edited_at: None,
            like_count: 0,
            comment_count: 0,
            share_count: 0,
            share_of,
        })
    };
    cache
        .apply_batch(
            "ana",
            &[
                public(1, post(20, "caio", "o original", None)),
                public(2, post(21, "bia", "vejam", Some(20))),
                public(
                    3,
                    EventBody::PostShared(ShareChange {
                        post_id: 20,
                        by: "bia".into(),
                        share_count: 1,
                    }),
                ),
            ],
        )
        .unwrap();
    let feed = cache.feed_page("ana", None, 10).unwrap();
    let by = |rows: &[PostRow], server_id: i64| {
        rows.iter()
            .find(|p| p.server_id == Some(server_id))
            .cloned()
            .unwrap()
    };
    let original = by(&feed, 20);
    assert_eq!((original.share_count, original.shared_by_me), (1, false));
    let share = by(&feed, 21).share_of.unwrap();
    assert_eq!(
        (share.available, share.author.as_str(), share.text.as_str()),
        (true, "caio", "o original")
    );

    // I share it too: my pending share, the original one up and shared by me.
    let cid = Uuid::now_v7();
    let mine = Request::PostShare(PostShare {
        id: cid,
        post_id: 21, // a share: its original is what is shared
        text: String::new(),
    });
    cache.enqueue("ana", &mine).unwrap();
    let local = cache.local_changes("ana", cid, Some(&mine)).unwrap();
    let o = local
        .posts
        .iter()
        .find(|p| p.server_id == Some(20))
        .unwrap();
    assert_eq!((o.share_count, o.shared_by_me), (2, true));
    let pending = local
        .posts
        .iter()
        .find(|p| p.client_id == Some(cid))
        .unwrap();
    assert_eq!(pending.share_of.as_ref().map(|s| s.server_id), Some(20));
    assert_eq!(pending.state, LocalState::Pending);

    // The original edited, then deleted: every share shows it as it is now.
    let out = cache
        .apply_batch(
            "ana",
            &[public(
                4,
                EventBody::PostEdited(PostEdited {
                    post_id: 20,
                    text: "o original, editado".into(),
                    edited_at: 2000,
                }),
            )],
        )
        .unwrap();
    for p in [
        by(&out.changes.posts, 21),
        pending_of(&out.changes.posts, cid),
    ] {
        assert_eq!(p.share_of.unwrap().text, "o original, editado");
    }
    let out = cache
        .apply_batch(
            "ana",
            &[public(5, EventBody::PostDeleted(PostRef { post_id: 20 }))],
        )
        .unwrap();
    let gone = by(&out.changes.posts, 21).share_of.unwrap();
    assert_eq!((gone.available, gone.text.as_str()), (false, ""));
    assert!(out.changes.posts_deleted.contains(&original.local_id));

    // Un-sharing drops my share from the views.
    let undo_cid = Uuid::now_v7();
    let undo = Request::PostUnshare(PostAction {
        id: undo_cid,
        post_id: 20,
    });
    cache.enqueue("ana", &undo).unwrap();
    let local = cache.local_changes("ana", undo_cid, Some(&undo)).unwrap();
    assert!(local.posts_deleted.contains(&pending.local_id), "{local:?}");
    assert!(cache
        .feed_page("ana", None, 10)
        .unwrap()
        .iter()
        .all(|p| p.client_id != Some(cid)));
}

fn pending_of(rows: &[PostRow], cid: Uuid) -> PostRow {
    rows.iter()
        .find(|p| p.client_id == Some(cid))
        .cloned()
        .unwrap_or_else(|| panic!("no row for {cid} in {rows:?}"))
}
