//! Outbox rows: queues, wedging, retry/discard, pruning and the upgrade of a version-1 file.

use super::*;
use crate::outbox::*;
use papo_protocol::{ChatSend, DmSend, PostAction, UserAction};
use papo_protocol::{ErrorBody, ErrorCode, Request};
use rusqlite::params;
use rusqlite::Connection;

fn open() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache.sqlite3")).unwrap();
    cache.set_me("ana").unwrap();
    (dir, cache)
}

fn chat(text: &str) -> Request {
    Request::ChatSend(ChatSend {
        id: Uuid::now_v7(),
        text: text.into(),
        reply_to: None,
    })
}

fn dm(to: &str, text: &str) -> Request {
    Request::DmSend(DmSend {
        id: Uuid::now_v7(),
        to: to.into(),
        text: text.into(),
        reply_to: None,
    })
}

fn heads(cache: &Cache) -> Vec<(String, Uuid)> {
    cache
        .outbox_heads()
        .unwrap()
        .into_iter()
        .map(|i| (i.queue, i.client_id))
        .collect()
}

#[test]
fn every_request_has_a_queue_per_conversation() {
    assert_eq!(queue_of(&chat("a")), "public");
    assert_eq!(queue_of(&dm("bia", "a")), "dm:bia");
    let like = Request::PostLike(PostAction {
        id: Uuid::now_v7(),
        post_id: 1,
    });
    assert_eq!(queue_of(&like), "feed");
    let follow = Request::UserFollow(UserAction {
        id: Uuid::now_v7(),
        username: "bia".into(),
    });
    assert_eq!(queue_of(&follow), "follows");
}

#[test]
fn the_head_of_every_queue_may_go_and_a_wedged_head_does_not_block_its_queue() {
    let (_d, cache) = open();
    let d1 = cache.enqueue("ana", &dm("bia", "d1")).unwrap().client_id;
    let c1 = cache.enqueue("ana", &chat("c1")).unwrap().client_id;
    let d2 = cache.enqueue("ana", &dm("bia", "d2")).unwrap().client_id;
    let e1 = cache.enqueue("ana", &dm("caio", "e1")).unwrap().client_id;
    assert_eq!(
        heads(&cache),
        [
            ("dm:bia".to_string(), d1),
            ("public".to_string(), c1),
            ("dm:caio".to_string(), e1)
        ]
    );
    // A head that waits (deferred) still holds its own queue only.
    cache
        .outbox_defer(
            d1,
            i64::MAX,
            &ErrorBody::new(ErrorCode::RateLimited, "slow"),
        )
        .unwrap();
    assert_eq!(heads(&cache)[0], ("dm:bia".to_string(), d1));
    // Wedged: the next one of that queue becomes its head.
    let reason = WedgeReason::Refused {
        error: ErrorBody::new(ErrorCode::NotFound, "no user named \"bia\""),
    };
    assert!(cache.outbox_wedge(d1, &reason).unwrap());
    assert!(!cache.outbox_wedge(d1, &reason).unwrap());
    assert_eq!(
        heads(&cache),
        [
            ("public".to_string(), c1),
            ("dm:bia".to_string(), d2),
            ("dm:caio".to_string(), e1)
        ]
    );
    let wedged = cache.wedged_outbox(Some("dm:bia")).unwrap();
    assert_eq!(wedged.len(), 1);
    assert_eq!(wedged[0].state, OutboxState::Wedged);
    assert!(wedged[0].is_wedged());
    assert!(!cache.outbox_item(d2).unwrap().unwrap().is_wedged());
    assert_eq!(wedged[0].wedge, Some(reason.clone()));
    assert!(cache.wedged_outbox(Some("public")).unwrap().is_empty());
    assert_eq!(cache.outbox_counts().unwrap(), (3, 0, 1));
    // The local copy shows the failure.
    let rows = cache.conversation_page("dm:bia", None, 10).unwrap();
    let d1_row = rows.iter().find(|r| r.client_id == Some(d1)).unwrap();
    assert_eq!(d1_row.state, crate::cache::LocalState::Failed);
}

#[test]
fn unanswered_sends_are_counted_and_wedge_the_item_at_the_bound() {
    let (_d, cache) = open();
    let a = cache.enqueue("ana", &chat("a")).unwrap().client_id;
    for n in 1..MAX_UNANSWERED {
        cache.outbox_attempt(a).unwrap();
        assert_eq!(cache.outbox_unanswered(a, 1000 + n).unwrap(), None);
        let item = cache.outbox_item(a).unwrap().unwrap();
        assert_eq!(
            (
                item.state,
                item.unanswered,
                item.attempts,
                item.next_attempt_at
            ),
            (OutboxState::Pending, n, n, Some(1000 + n))
        );
    }
    cache.outbox_attempt(a).unwrap();
    let reason = cache.outbox_unanswered(a, 9999).unwrap();
    assert_eq!(
        reason,
        Some(WedgeReason::NoAnswer {
            attempts: MAX_UNANSWERED
        })
    );
    let item = cache.outbox_item(a).unwrap().unwrap();
    assert_eq!(item.state, OutboxState::Wedged);
    assert_eq!(item.next_attempt_at, None);
    // Retry: pending again with the same client id, attempts kept, the unanswered count reset.
    assert!(cache.retry_outbox(a).unwrap());
    assert!(!cache.retry_outbox(a).unwrap());
    let item = cache.outbox_item(a).unwrap().unwrap();
    assert_eq!(
        (item.state, item.unanswered, item.attempts, item.wedge),
        (OutboxState::Pending, 0, MAX_UNANSWERED, None)
    );
    assert_eq!(item.request.client_id(), a);
    // Discard: the row and its local copy are gone.
    assert!(cache.discard_outbox(a).unwrap());
    assert!(cache.outbox_item(a).unwrap().is_none());
    assert!(cache
        .conversation_page("public", None, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn the_wedge_reason_has_stable_codes_on_the_wire() {
    let r = WedgeReason::NoAnswer { attempts: 5 };
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({ "code": "no_answer", "attempts": 5 })
    );
    assert_eq!(r.code(), "no_answer");
    assert_eq!(r.to_string(), "no answer from the server after 5 attempts");
    let r = WedgeReason::Refused {
        error: ErrorBody::new(ErrorCode::Forbidden, "not yours"),
    };
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({ "code": "refused", "error": { "code": "forbidden", "message": "not yours" } })
    );
    assert_eq!(r.code(), "refused");
}

#[test]
fn sent_rows_are_pruned_after_the_retention() {
    let (_d, cache) = open();
    let old = cache.enqueue("ana", &chat("old")).unwrap().client_id;
    let pending = cache.enqueue("ana", &chat("pending")).unwrap().client_id;
    assert!(cache.outbox_confirm("ana", old, None).unwrap());
    assert_eq!(cache.outbox_counts().unwrap(), (1, 1, 0));
    // Within the retention the sent row stays (a late echo finds it)...
    assert_eq!(
        cache
            .prune_sent_outbox(now_ms() - SENT_RETENTION_MS)
            .unwrap(),
        0
    );
    // ...and confirming another item prunes the rows older than it.
    cache
        .writer
        .lock()
        .unwrap()
        .execute(
            "UPDATE outbox SET updated_at = updated_at - ?2 WHERE client_id = ?1",
            params![old.to_string(), SENT_RETENTION_MS + 1],
        )
        .unwrap();
    assert!(cache.outbox_confirm("ana", pending, None).unwrap());
    assert!(cache.outbox_item(old).unwrap().is_none());
    assert_eq!(cache.outbox_counts().unwrap(), (0, 1, 0));
    assert_eq!(cache.prune_sent_outbox(now_ms() + 1).unwrap(), 1);
    assert_eq!(cache.outbox_counts().unwrap(), (0, 0, 0));
    // The local copies are not the outbox's to prune.
    assert_eq!(
        cache.conversation_page("public", None, 10).unwrap().len(),
        2
    );
}

#[test]
fn a_version_1_outbox_is_upgraded_to_queues_and_wedged_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite3");
    let (dm_id, chat_id, failed_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0].1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let rows = [
            (dm_id, dm("bia", "oi"), "pending", None, None),
            (chat_id, chat("hello"), "sent", None, None),
            (
                failed_id,
                dm("zed", "?"),
                "failed",
                Some("not_found"),
                Some("no user named \"zed\""),
            ),
        ];
        for (i, (id, req, state, code, msg)) in rows.into_iter().enumerate() {
            let req = match req {
                Request::ChatSend(r) => Request::ChatSend(ChatSend { id, ..r }),
                Request::DmSend(r) => Request::DmSend(DmSend { id, ..r }),
                other => other,
            };
            conn.execute(
                "INSERT INTO outbox (client_id, event, request, state, attempts, error_code, \
                 error_message, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    id.to_string(),
                    req.event_name(),
                    serde_json::to_string(&req).unwrap(),
                    state,
                    i as i64,
                    code,
                    msg,
                    now_ms()
                ],
            )
            .unwrap();
        }
    }
    let cache = Cache::open(&path).unwrap();
    let v: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, MIGRATIONS.len() as i64);
    let pending = cache.outbox_item(dm_id).unwrap().unwrap();
    assert_eq!(
        (pending.queue.as_str(), pending.state, pending.unanswered),
        ("dm:bia", OutboxState::Pending, 0)
    );
    let sent = cache.outbox_item(chat_id).unwrap().unwrap();
    assert_eq!(
        (sent.queue.as_str(), sent.state),
        ("public", OutboxState::Sent)
    );
    let wedged = cache.outbox_item(failed_id).unwrap().unwrap();
    assert_eq!(wedged.queue, "dm:zed");
    assert_eq!(wedged.state, OutboxState::Wedged);
    assert_eq!(wedged.attempts, 2);
    assert_eq!(
        wedged.wedge,
        Some(WedgeReason::Refused {
            error: ErrorBody::new(ErrorCode::NotFound, "no user named \"zed\"")
        })
    );
    assert_eq!(cache.outbox_counts().unwrap(), (1, 1, 1));
    // The upgraded rows keep working: the wedged one can be retried.
    assert!(cache.retry_outbox(failed_id).unwrap());
    assert_eq!(heads(&cache).len(), 2);
}

#[test]
fn a_refused_item_is_retried_under_a_new_client_id_and_its_local_copy_follows() {
    let (_d, cache) = open();
    let old = cache.enqueue("ana", &dm("zed", "hi")).unwrap().client_id;
    let reason = WedgeReason::Refused {
        error: ErrorBody::new(ErrorCode::NotFound, "no user named \"zed\""),
    };
    assert!(cache.outbox_wedge(old, &reason).unwrap());
    let new = cache.retry_outbox_as(old).unwrap().unwrap();
    assert_ne!(new, old);
    assert!(cache.outbox_item(old).unwrap().is_none());
    let item = cache.outbox_item(new).unwrap().unwrap();
    assert_eq!(item.request.client_id(), new);
    assert_eq!((item.state, item.wedge), (OutboxState::Pending, None));
    assert_eq!(item.queue, "dm:zed");
    let rows = cache.conversation_page("dm:zed", None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].client_id, Some(new));
    assert_eq!(rows[0].state, crate::cache::LocalState::Pending);
    // Confirming the new id confirms the local copy.
    assert!(cache.outbox_confirm("ana", new, None).unwrap());
    let rows = cache.conversation_page("dm:zed", None, 10).unwrap();
    assert_eq!(rows[0].state, crate::cache::LocalState::Sent);
    assert_eq!(cache.retry_outbox_as(new).unwrap(), None);
}
