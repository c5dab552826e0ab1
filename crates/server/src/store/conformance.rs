//! One behaviour suite, run unchanged against every store backend (SQLite always; Postgres in
//! tests marked ignored, which the project's test command runs with `--ignored` against the
//! Postgres it starts — there a missing server fails the run).

use std::sync::Arc;

use papo_protocol::{
    ChatSend, CommentAction, CommentCreate, CommentRemoved, DmSend, ErrorCode, EventBody,
    NotificationKind, PostAction, PostCreate, PostRef, PostShare, Request, ShareChange, UserAction,
};
use uuid::Uuid;

use super::postgres::PostgresStore;
use super::sqlite::{Durability, SqliteStore};
use super::{Actor, Ended, Rotation, Store, StreamKey};

/// A fresh, empty store, and whatever must live as long as it.
pub struct Fresh {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

pub fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
    Fresh {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// A fresh database on the test Postgres server. These tests are `#[ignore]`d, so a plain
/// `cargo test` lists them as ignored; the project's test command runs them with `--ignored`
/// against its own Postgres, where a missing server is a failure.
pub async fn postgres() -> Fresh {
    let url = std::env::var("PAPO_TEST_POSTGRES_URL").expect(
        "PAPO_TEST_POSTGRES_URL must name a Postgres database whose role may create databases \
         (scripts/test-services.sh starts one)",
    );
    let name = format!("papo_t_{}", Uuid::new_v4().simple());
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    let (admin, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("test Postgres");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    config.dbname(&name);
    let store = PostgresStore::open_with(config).await.unwrap();
    Fresh {
        store: Arc::new(store),
        _guard: Box::new(()),
    }
}

async fn actor(store: &dyn Store, name: &str) -> Actor {
    let u = store.create_user(name, "hash").await.unwrap();
    Actor {
        id: u.id,
        username: u.username,
    }
}

fn chat(text: &str) -> Request {
    Request::ChatSend(ChatSend {
        id: Uuid::now_v7(),
        text: text.into(),
        reply_to: None,
    })
}

pub async fn usernames_are_unique(store: Arc<dyn Store>) {
    actor(&*store, "ana").await;
    let err = store.create_user("ana", "other").await.err().unwrap();
    assert!(matches!(err, super::StoreError::UsernameTaken), "{err}");
    assert_eq!(
        store
            .user_credentials("ana")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "hash"
    );
}

pub async fn a_repeated_client_id_returns_the_stored_reply_and_writes_nothing(
    store: Arc<dyn Store>,
) {
    let ana = actor(&*store, "ana").await;
    let req = chat("oi");
    let first = store.apply(&ana, &req).await.unwrap();
    assert!(first.reply.ok);
    assert_eq!(first.written.len(), 1);
    let again = store.apply(&ana, &req).await.unwrap();
    assert_eq!(again.reply, first.reply);
    assert!(again.written.is_empty());
    assert_eq!(store.head(StreamKey::Public).await.unwrap(), 1);
    // The same id from another user is a different request (ids are per user).
    let bia = actor(&*store, "bia").await;
    assert!(store.apply(&bia, &req).await.unwrap().reply.ok);
    assert_eq!(store.head(StreamKey::Public).await.unwrap(), 2);
    // Reusing an id for another kind of request is refused.
    let other = Request::PostCreate(PostCreate {
        id: req.client_id(),
        text: "x".into(),
    });
    let conflict = store.apply(&ana, &other).await.unwrap();
    assert_eq!(conflict.reply.error.unwrap().code, ErrorCode::IdConflict);
}

pub async fn a_refused_request_writes_nothing_and_keeps_its_answer(store: Arc<dyn Store>) {
    let ana = actor(&*store, "ana").await;
    let req = Request::DmSend(DmSend {
        id: Uuid::now_v7(),
        to: "nobody".into(),
        text: "oi".into(),
        reply_to: None,
    });
    let r = store.apply(&ana, &req).await.unwrap();
    assert_eq!(r.reply.error.as_ref().unwrap().code, ErrorCode::NotFound);
    assert!(r.written.is_empty());
    assert_eq!(store.head(StreamKey::User(ana.id)).await.unwrap(), 0);
    // Even once "nobody" exists, the same id keeps its first answer.
    actor(&*store, "nobody").await;
    assert_eq!(store.apply(&ana, &req).await.unwrap().reply, r.reply);
}

pub async fn presence_interest_is_follows_and_dm_peers(store: Arc<dyn Store>) {
    let [ana, bia, caio, davi] = [
        actor(&*store, "ana").await,
        actor(&*store, "bia").await,
        actor(&*store, "caio").await,
        actor(&*store, "davi").await,
    ];
    let dm = |to: &str| {
        Request::DmSend(DmSend {
            id: Uuid::now_v7(),
            to: to.into(),
            text: "oi".into(),
            reply_to: None,
        })
    };
    let follow = Request::UserFollow(UserAction {
        id: Uuid::now_v7(),
        username: "bia".into(),
    });
    assert!(store.presence_interest(ana.id).await.unwrap().is_empty());
    assert!(store
        .apply(&ana, &follow)
        .await
        .unwrap()
        .new_dm_peer
        .is_none());
    // The first DM of a pair says so (even though ana already follows bia); later ones and
    // repeats do not.
    let first = dm("bia");
    let applied = store.apply(&ana, &first).await.unwrap();
    assert_eq!(applied.new_dm_peer.map(|u| u.id), Some(bia.id));
    assert!(store
        .apply(&ana, &first)
        .await
        .unwrap()
        .new_dm_peer
        .is_none());
    assert!(store
        .apply(&bia, &dm("ana"))
        .await
        .unwrap()
        .new_dm_peer
        .is_none());
    assert!(store
        .apply(&caio, &dm("ana"))
        .await
        .unwrap()
        .new_dm_peer
        .is_some());
    // A refused DM changes nothing.
    assert!(store
        .apply(&davi, &dm("davi"))
        .await
        .unwrap()
        .new_dm_peer
        .is_none());
    assert_eq!(
        store.presence_interest(ana.id).await.unwrap(),
        vec!["bia".to_string(), "caio".to_string()]
    );
    assert_eq!(
        store.presence_interest(caio.id).await.unwrap(),
        vec!["ana".to_string()]
    );
    assert!(store.presence_interest(davi.id).await.unwrap().is_empty());
}

pub async fn sequences_stay_gap_free_under_concurrent_writers(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        let a = actor(&*store, &format!("writer{w}")).await;
        let peer = format!("writer{}", (w + 1) % 6);
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                assert!(
                    store
                        .apply(&a, &chat(&format!("{w}-{i}")))
                        .await
                        .unwrap()
                        .reply
                        .ok
                );
                // Crossing DMs lock two private streams in opposite orders.
                let dm = Request::DmSend(DmSend {
                    id: Uuid::now_v7(),
                    to: peer.clone(),
                    text: format!("dm {w}-{i}"),
                    reply_to: None,
                });
                let r = store.apply(&a, &dm).await.unwrap();
                assert!(r.reply.ok || r.reply.error.unwrap().code == ErrorCode::NotFound);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let evs = store
        .read_events(StreamKey::Public, 0, 10_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = evs.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, (1..=150).collect::<Vec<u64>>());
    assert_eq!(store.head(StreamKey::Public).await.unwrap(), 150);
    let w0 = store.user_by_name("writer0").await.unwrap().unwrap();
    let private = store
        .read_events(StreamKey::User(w0.id), 0, 10_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = private.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, (1..=private.len() as u64).collect::<Vec<u64>>());
}

pub async fn likes_count_once_per_user_and_notify_the_author_only(store: Arc<dyn Store>) {
    let ana = actor(&*store, "ana").await;
    let bia = actor(&*store, "bia").await;
    let post = store
        .apply(
            &ana,
            &Request::PostCreate(PostCreate {
                id: Uuid::now_v7(),
                text: "p".into(),
            }),
        )
        .await
        .unwrap();
    let post_id = match post.reply.result.unwrap().event.unwrap().body {
        EventBody::PostCreated(p) => p.id,
        other => panic!("{other:?}"),
    };
    let like = |id| Request::PostLike(PostAction { id, post_id });
    let first = store.apply(&bia, &like(Uuid::now_v7())).await.unwrap();
    assert_eq!(
        first.written.len(),
        2,
        "the like and the author's notification"
    );
    let second = store.apply(&bia, &like(Uuid::now_v7())).await.unwrap();
    assert!(second.reply.ok && second.written.is_empty());
    let own = store.apply(&ana, &like(Uuid::now_v7())).await.unwrap();
    assert_eq!(
        own.written.len(),
        1,
        "no notification for liking my own post"
    );
    match &own.reply.result.unwrap().event.unwrap().body {
        EventBody::PostLiked(l) => assert_eq!(l.like_count, 2),
        other => panic!("{other:?}"),
    }
    let private = store
        .read_events(StreamKey::User(ana.id), 0, 10)
        .await
        .unwrap();
    assert_eq!(private.len(), 1);
    assert!(matches!(
        &private[0].event.body,
        EventBody::Notification(n) if n.kind == NotificationKind::Like && n.actor == "bia"
    ));
}

pub async fn sessions_rotate_and_revoke(store: Arc<dyn Store>) {
    let ana = actor(&*store, "ana").await;
    let s = super::SessionRow {
        id: "s1".into(),
        user_id: ana.id,
        expires_at: crate::now_ms() + 60_000,
    };
    store.create_session(&s, "h1").await.unwrap();
    assert_eq!(
        store.session("s1").await.unwrap().map(|l| l.session),
        Some(s.clone())
    );
    let now = crate::now_ms();
    let rotated = store
        .rotate_refresh("h1", "h2", now + 120_000, now)
        .await
        .unwrap();
    assert_eq!(
        rotated,
        Rotation::Rotated(super::SessionRow {
            expires_at: now + 120_000,
            ..s.clone()
        })
    );
    // Never seen: refused, nothing revoked.
    assert_eq!(
        store.rotate_refresh("nope", "h3", now, now).await.unwrap(),
        Rotation::Unknown
    );
    assert!(store.session("s1").await.unwrap().is_some());
    assert_eq!(
        store.delete_session_by_refresh("h2").await.unwrap(),
        Some("s1".into())
    );
    assert!(store.session("s1").await.unwrap().is_none());
    assert_eq!(
        store.rotate_refresh("h2", "h4", now, now).await.unwrap(),
        Rotation::Unknown,
        "logged out"
    );
    // Expired: refused.
    let old = super::SessionRow {
        id: "s2".into(),
        user_id: ana.id,
        expires_at: now - 1,
    };
    store.create_session(&old, "e1").await.unwrap();
    assert_eq!(
        store
            .rotate_refresh("e1", "e2", now + 1000, now)
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert!(store.session("s2").await.unwrap().is_some());
    // Signing in again drops the user's expired sessions, and only those.
    let live = super::SessionRow {
        id: "s3".into(),
        user_id: ana.id,
        expires_at: now + 60_000,
    };
    store.create_session(&live, "l1").await.unwrap();
    let bia = actor(&*store, "bia").await;
    let bias_old = super::SessionRow {
        id: "s4".into(),
        user_id: bia.id,
        expires_at: now - 1,
    };
    store.create_session(&bias_old, "b1").await.unwrap();
    let again = super::SessionRow {
        id: "s5".into(),
        user_id: ana.id,
        expires_at: now + 60_000,
    };
    store.create_session(&again, "l2").await.unwrap();
    assert!(
        store.session("s2").await.unwrap().is_none(),
        "expired: dropped"
    );
    assert!(store.session("s3").await.unwrap().is_some(), "live: kept");
    assert!(
        store.session("s4").await.unwrap().is_some(),
        "another user's: kept"
    );
}

/// A refresh token presented after it was exchanged revokes its whole session (family), and
/// no other.
pub async fn a_reused_refresh_token_revokes_its_session(store: Arc<dyn Store>) {
    let ana = actor(&*store, "ana").await;
    let now = crate::now_ms();
    let row = |id: &str| super::SessionRow {
        id: id.into(),
        user_id: ana.id,
        expires_at: now + 60_000,
    };
    store.create_session(&row("phone"), "a").await.unwrap();
    store.create_session(&row("laptop"), "x").await.unwrap();
    for (old, new) in [("a", "b"), ("b", "c")] {
        assert!(matches!(
            store.rotate_refresh(old, new, now + 60_000, now).await.unwrap(),
            Rotation::Rotated(s) if s.id == "phone"
        ));
    }
    // "a" again (two rotations ago): the phone's session goes, with its current token "c".
    assert_eq!(
        store
            .rotate_refresh("a", "d", now + 60_000, now)
            .await
            .unwrap(),
        Rotation::Reused {
            session_id: "phone".into()
        }
    );
    assert!(store.session("phone").await.unwrap().is_none());
    for token in ["c", "b", "a", "d"] {
        assert_eq!(
            store
                .rotate_refresh(token, "z", now + 60_000, now)
                .await
                .unwrap(),
            Rotation::Unknown,
            "{token}"
        );
    }
    // The laptop's session is untouched.
    assert!(matches!(
        store.rotate_refresh("x", "y", now + 60_000, now).await.unwrap(),
        Rotation::Rotated(s) if s.id == "laptop"
    ));
    // Logging out with a spent token revokes the session too.
    assert_eq!(
        store.delete_session_by_refresh("x").await.unwrap(),
        Some("laptop".into())
    );
    assert!(store.session("laptop").await.unwrap().is_none());
    assert_eq!(
        store
            .rotate_refresh("y", "w", now + 60_000, now)
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert_eq!(store.delete_session_by_refresh("y").await.unwrap(), None);
}

/// Of many concurrent refreshes with one token, exactly one rotates; the others are reuses, and
/// the session ends revoked.
pub async fn concurrent_refreshes_with_one_token_rotate_once(store: Arc<dyn Store>) {
    let ana = actor(&*store, "ana").await;
    let now = crate::now_ms();
    let s = super::SessionRow {
        id: "race".into(),
        user_id: ana.id,
        expires_at: now + 60_000,
    };
    store.create_session(&s, "r0").await.unwrap();
    let tries = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .rotate_refresh("r0", &format!("r{}", i + 1), now + 60_000, now)
                .await
                .unwrap()
        })
    });
    let mut rotated = 0;
    for t in tries.collect::<Vec<_>>() {
        match t.await.unwrap() {
            Rotation::Rotated(_) => rotated += 1,
            Rotation::Reused { session_id } => assert_eq!(session_id, "race"),
            Rotation::Unknown => {} // the session was already revoked by an earlier reuse
            Rotation::Ended(_) => panic!("no account was deleted or suspended"),
        }
    }
    assert_eq!(rotated, 1);
    assert!(store.session("race").await.unwrap().is_none());
}

pub async fn presence_spans_nodes_and_expires_with_a_dead_node(store: Arc<dyn Store>) {
    let on_a = store
        .sync_presence("a", vec![("ana".into(), 2)], 5_000)
        .await
        .unwrap();
    assert_eq!(on_a, vec!["ana".to_string()]);
    let on_b = store
        .sync_presence("b", vec![("bia".into(), 1), ("ana".into(), 1)], 5_000)
        .await
        .unwrap();
    assert_eq!(on_b, vec!["ana".to_string(), "bia".to_string()]);
    // ana leaves node b but is still on node a.
    let now = store
        .sync_presence("b", vec![("ana".into(), 0)], 5_000)
        .await
        .unwrap();
    assert_eq!(now, vec!["ana".to_string(), "bia".to_string()]);
    // Seen from a node whose window is tiny, nodes a and b have not beaten recently: offline.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let later = store.sync_presence("c", vec![], 10).await.unwrap();
    assert!(later.is_empty(), "{later:?}");
}

pub async fn a_deleted_account_ends_its_sessions_follows_and_private_data(store: Arc<dyn Store>) {
    let [ana, bia, caio] = [
        actor(&*store, "ana").await,
        actor(&*store, "bia").await,
        actor(&*store, "caio").await,
    ];
    let follow = |name: &str| {
        Request::UserFollow(UserAction {
            id: Uuid::now_v7(),
            username: name.into(),
        })
    };
    let dm = |to: &str| {
        Request::DmSend(DmSend {
            id: Uuid::now_v7(),
            to: to.into(),
            text: "oi".into(),
            reply_to: None,
        })
    };
    // ana follows bia, caio follows ana; ana and bia have DMs; ana has two sessions.
    store.apply(&ana, &follow("bia")).await.unwrap();
    store.apply(&caio, &follow("ana")).await.unwrap();
    store.apply(&ana, &dm("bia")).await.unwrap();
    store.apply(&bia, &dm("ana")).await.unwrap();
    for (id, hash) in [("s1", "h1"), ("s2", "h2")] {
        let s = super::SessionRow {
            id: id.into(),
            user_id: ana.id,
            expires_at: crate::now_ms() + 60_000,
        };
        store.create_session(&s, hash).await.unwrap();
    }
    let public_head = store.head(StreamKey::Public).await.unwrap();
    let bia_private = store.head(StreamKey::User(bia.id)).await.unwrap();
    assert!(store.head(StreamKey::User(ana.id)).await.unwrap() > 0);

    // bia's session, for contrast: it stays as it is.
    let bia_session = super::SessionRow {
        id: "b1".into(),
        user_id: bia.id,
        expires_at: crate::now_ms() + 60_000,
    };
    store.create_session(&bia_session, "hb").await.unwrap();

    let user = store.user_by_id(ana.id).await.unwrap().unwrap();
    let deleted = store.delete_account(&user).await.unwrap();
    assert_eq!(deleted.sessions, vec!["s1".to_string(), "s2".to_string()]);
    assert!(store.session("s1").await.unwrap().is_none());
    assert!(store.session("s2").await.unwrap().is_none());
    // A device of ana's that comes back is told the account was deleted (by its refresh token
    // or its session id), until the token would have expired; nobody else is.
    let now = crate::now_ms();
    assert!(matches!(
        store
            .rotate_refresh("h1", "h9", now + 60_000, now)
            .await
            .unwrap(),
        Rotation::Ended(Ended::AccountDeleted)
    ));
    assert_eq!(
        store.ended_session("s2", now).await.unwrap(),
        Some(Ended::AccountDeleted)
    );
    assert_eq!(
        store.ended_session("s2", now + 120_000).await.unwrap(),
        None
    );
    assert!(matches!(
        store
            .rotate_refresh("h1", "h9", now + 180_000, now + 120_000)
            .await
            .unwrap(),
        Rotation::Unknown
    ));
    assert_eq!(store.ended_session("b1", now).await.unwrap(), None);
    assert!(matches!(
        store
            .rotate_refresh("hb", "hb2", now + 60_000, now)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    // The two follows undone, in the public stream, with the counts after them.
    let undone: Vec<_> = deleted
        .written
        .iter()
        .map(|(k, e)| (*k, e.event.body.clone()))
        .collect();
    let unfollowed = |follower: &str, followee: &str| {
        (
            StreamKey::Public,
            EventBody::UserUnfollowed(papo_protocol::FollowChange {
                follower: follower.into(),
                followee: followee.into(),
                follower_count: 0,
            }),
        )
    };
    assert_eq!(
        undone,
        vec![unfollowed("ana", "bia"), unfollowed("caio", "ana")]
    );
    assert_eq!(
        store.head(StreamKey::Public).await.unwrap(),
        public_head + 2
    );
    let read = store
        .read_events(StreamKey::Public, public_head, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    // Nobody finds it by name or id any more, and its name stays taken.
    assert!(store.user_by_name("ana").await.unwrap().is_none());
    assert!(store.user_by_id(ana.id).await.unwrap().is_none());
    assert!(store.user_credentials("ana").await.unwrap().is_none());
    assert!(matches!(
        store.create_user("ana", "hash").await,
        Err(super::StoreError::UsernameTaken)
    ));
    let refused = store.apply(&bia, &dm("ana")).await.unwrap();
    assert_eq!(
        refused.reply.error.as_ref().map(|e| e.code),
        Some(ErrorCode::NotFound)
    );
    // Its private stream is gone; bia's copy of their DMs stays.
    assert!(store
        .read_events(StreamKey::User(ana.id), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.head(StreamKey::User(bia.id)).await.unwrap(),
        bia_private
    );
    assert!(store.presence_interest(bia.id).await.unwrap().is_empty());
    assert!(store.presence_interest(caio.id).await.unwrap().is_empty());
    // A reaction to what it posted before still applies, and notifies nobody.
    let post = Request::PostCreate(PostCreate {
        id: Uuid::now_v7(),
        text: "antes".into(),
    });
    let ana_before = actor(&*store, "ana_twin").await;
    let created = store.apply(&ana_before, &post).await.unwrap();
    let post_id = match created.reply.result.and_then(|r| r.event).map(|e| e.body) {
        Some(EventBody::PostCreated(p)) => p.id,
        other => panic!("{other:?}"),
    };
    let twin = store.user_by_id(ana_before.id).await.unwrap().unwrap();
    store.delete_account(&twin).await.unwrap();
    let like = Request::PostLike(PostAction {
        id: Uuid::now_v7(),
        post_id,
    });
    assert!(store.apply(&bia, &like).await.unwrap().reply.ok);
    assert!(store
        .read_events(StreamKey::User(ana_before.id), 0, 100)
        .await
        .unwrap()
        .is_empty());
}

/// The event a successful request wrote into the sender's view.
fn reply_event(a: &super::Applied) -> EventBody {
    a.reply
        .result
        .as_ref()
        .and_then(|r| r.event.as_ref())
        .map(|e| e.body.clone())
        .unwrap_or_else(|| panic!("no event in {:?}", a.reply))
}

pub async fn a_reply_quotes_its_original_of_the_same_conversation_and_notifies_its_sender(
    store: Arc<dyn Store>,
) {
    let [ana, bia, caio] = [
        actor(&*store, "ana").await,
        actor(&*store, "bia").await,
        actor(&*store, "caio").await,
    ];
    let chat_reply = |text: &str, to: i64| {
        Request::ChatSend(ChatSend {
            id: Uuid::now_v7(),
            text: text.into(),
            reply_to: Some(to),
        })
    };
    let dm = |to: &str, reply_to: Option<i64>| {
        Request::DmSend(DmSend {
            id: Uuid::now_v7(),
            to: to.into(),
            text: "oi".into(),
            reply_to,
        })
    };
    let id_of = |b: &EventBody| match b {
        EventBody::ChatMessage(m) => m.id,
        EventBody::DmMessage(m) => m.id,
        other => panic!("not a message: {other:?}"),
    };
    let long = "x".repeat(300);
    let original = id_of(&reply_event(
        &store.apply(&ana, &chat(&long)).await.unwrap(),
    ));
    // bia replies, mentioning ana too: one notification (the reply), and a quote.
    let applied = store
        .apply(&bia, &chat_reply("concordo @ana", original))
        .await
        .unwrap();
    let EventBody::ChatMessage(reply) = reply_event(&applied) else {
        panic!("not a chat message")
    };
    let quote = reply.reply_to.expect("the reply carries its quote");
    assert_eq!(quote.message_id, original);
    assert_eq!(quote.from, "ana");
    assert_eq!(quote.excerpt, papo_protocol::excerpt(&long));
    let to_ana: Vec<_> = applied
        .written
        .iter()
        .filter(|(k, _)| *k == StreamKey::User(ana.id))
        .map(|(_, e)| match &e.event.body {
            EventBody::Notification(n) => (n.kind, n.message_id, n.actor.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        to_ana,
        vec![(NotificationKind::Reply, Some(reply.id), "bia".to_string())]
    );
    // Replying to my own message notifies nobody.
    let own = store
        .apply(&ana, &chat_reply("e mais", original))
        .await
        .unwrap();
    assert!(own.reply.ok);
    assert_eq!(own.written.len(), 1, "{:?}", own.written);

    // DMs: a reply to a DM of the same two users works, in both streams.
    let ana_bia = id_of(&reply_event(
        &store.apply(&ana, &dm("bia", None)).await.unwrap(),
    ));
    let back = store.apply(&bia, &dm("ana", Some(ana_bia))).await.unwrap();
    let EventBody::DmMessage(back_dm) = reply_event(&back) else {
        panic!("not a DM")
    };
    assert_eq!(back_dm.reply_to.unwrap().message_id, ana_bia);
    for key in [StreamKey::User(ana.id), StreamKey::User(bia.id)] {
        assert!(back.written.iter().any(|(k, e)| *k == key
            && matches!(&e.event.body, EventBody::DmMessage(m) if m.reply_to.is_some())));
    }

    // Anything but a live message of the same conversation is not_found, and writes nothing:
    // a public message quoted in a DM, a DM quoted in public, a DM between two others, a
    // message that does not exist, a deleted one.
    let refused = |a: &super::Applied| {
        assert_eq!(
            a.reply.error.as_ref().map(|e| e.code),
            Some(ErrorCode::NotFound),
            "{:?}",
            a.reply
        );
        assert!(a.written.is_empty());
    };
    refused(&store.apply(&bia, &dm("ana", Some(original))).await.unwrap());
    refused(&store.apply(&bia, &chat_reply("x", ana_bia)).await.unwrap());
    refused(&store.apply(&caio, &dm("ana", Some(ana_bia))).await.unwrap());
    refused(&store.apply(&caio, &chat_reply("x", 999_999)).await.unwrap());
    let gone = id_of(&reply_event(
        &store.apply(&ana, &chat("apago")).await.unwrap(),
    ));
    let delete = Request::MessageDelete(papo_protocol::MessageDelete {
        id: Uuid::now_v7(),
        message_id: gone,
    });
    assert!(store.apply(&ana, &delete).await.unwrap().reply.ok);
    refused(&store.apply(&bia, &chat_reply("x", gone)).await.unwrap());
}

pub async fn shares_count_once_per_user_notify_the_author_and_undo(store: Arc<dyn Store>) {
    let [ana, bia, caio] = [
        actor(&*store, "ana").await,
        actor(&*store, "bia").await,
        actor(&*store, "caio").await,
    ];
    let post = Request::PostCreate(PostCreate {
        id: Uuid::now_v7(),
        text: "um post".into(),
    });
    let EventBody::PostCreated(original) = reply_event(&store.apply(&ana, &post).await.unwrap())
    else {
        panic!("no post")
    };
    let share = |post_id: i64, text: &str| {
        Request::PostShare(papo_protocol::PostShare {
            id: Uuid::now_v7(),
            post_id,
            text: text.into(),
        })
    };
    let a = store
        .apply(&bia, &share(original.id, "olhem isto"))
        .await
        .unwrap();
    let bodies: Vec<_> = a
        .written
        .iter()
        .map(|(k, e)| (*k, e.event.body.clone()))
        .collect();
    let EventBody::PostCreated(bias) = &bodies[0].1 else {
        panic!("{bodies:?}")
    };
    assert_eq!(
        (bias.share_of, bias.text.as_str()),
        (Some(original.id), "olhem isto")
    );
    assert_eq!(
        bodies[1],
        (
            StreamKey::Public,
            EventBody::PostShared(papo_protocol::ShareChange {
                post_id: original.id,
                by: "bia".into(),
                share_count: 1
            })
        )
    );
    assert!(bodies.iter().any(|(k, b)| *k == StreamKey::User(ana.id)
        && matches!(b, EventBody::Notification(n) if n.kind == NotificationKind::Share
            && n.post_id == Some(original.id) && n.excerpt.as_deref() == Some("olhem isto"))));
    // Again: nothing. Sharing bia's share shares the original (caio), without a comment.
    assert!(store
        .apply(&bia, &share(original.id, ""))
        .await
        .unwrap()
        .written
        .is_empty());
    let c = store.apply(&caio, &share(bias.id, "")).await.unwrap();
    let EventBody::PostCreated(caios) = reply_event(&c) else {
        panic!()
    };
    assert_eq!(
        (caios.share_of, caios.text.as_str()),
        (Some(original.id), "")
    );
    assert!(c.written.iter().any(|(_, e)| matches!(&e.event.body,
        EventBody::PostShared(s) if s.share_count == 2)));
    // Un-sharing (by the original's id or the share's) deletes the share and counts down.
    let unshare = |post_id: i64| {
        Request::PostUnshare(PostAction {
            id: Uuid::now_v7(),
            post_id,
        })
    };
    let u = store.apply(&caio, &unshare(caios.id)).await.unwrap();
    let kinds: Vec<_> = u
        .written
        .iter()
        .map(|(_, e)| e.event.body.clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventBody::PostDeleted(papo_protocol::PostRef { post_id: caios.id }),
            EventBody::PostUnshared(papo_protocol::ShareChange {
                post_id: original.id,
                by: "caio".into(),
                share_count: 1
            })
        ]
    );
    assert!(store
        .apply(&caio, &unshare(original.id))
        .await
        .unwrap()
        .written
        .is_empty());
    // Deleting a share as a post counts down too; then caio may share again.
    let delete = Request::PostDelete(PostAction {
        id: Uuid::now_v7(),
        post_id: bias.id,
    });
    let d = store.apply(&bia, &delete).await.unwrap();
    assert!(d.written.iter().any(|(_, e)| matches!(&e.event.body,
        EventBody::PostUnshared(s) if s.share_count == 0)));
    assert!(!store
        .apply(&caio, &share(original.id, ""))
        .await
        .unwrap()
        .written
        .is_empty());
    // A deleted post, or none, cannot be shared; a blank comment is not a comment.
    let gone = Request::PostDelete(PostAction {
        id: Uuid::now_v7(),
        post_id: original.id,
    });
    store.apply(&ana, &gone).await.unwrap();
    for (who, req, code) in [
        (&bia, share(original.id, ""), ErrorCode::NotFound),
        (&bia, share(987_654, ""), ErrorCode::NotFound),
        (&bia, unshare(987_654), ErrorCode::NotFound),
    ] {
        let r = store.apply(who, &req).await.unwrap();
        assert_eq!(r.reply.error.map(|e| e.code), Some(code), "{req:?}");
    }
    let other = Request::PostCreate(PostCreate {
        id: Uuid::now_v7(),
        text: "outro".into(),
    });
    let EventBody::PostCreated(other) = reply_event(&store.apply(&ana, &other).await.unwrap())
    else {
        panic!()
    };
    let blank = store.apply(&bia, &share(other.id, "   ")).await.unwrap();
    assert_eq!(
        blank.reply.error.map(|e| e.code),
        Some(ErrorCode::InvalidText)
    );
}

fn admin_req(kind: &str, target: &str) -> Request {
    let id = Uuid::now_v7();
    match kind {
        "post" => Request::AdminRemovePost(PostAction {
            id,
            post_id: target.parse().unwrap(),
        }),
        "comment" => Request::AdminRemoveComment(CommentAction {
            id,
            comment_id: target.parse().unwrap(),
        }),
        "suspend" => Request::AdminSuspend(UserAction {
            id,
            username: target.into(),
        }),
        _ => Request::AdminUnsuspend(UserAction {
            id,
            username: target.into(),
        }),
    }
}

fn code(applied: &super::Applied) -> Option<ErrorCode> {
    applied.reply.error.as_ref().map(|e| e.code)
}

async fn post_of(store: &dyn Store, author: &Actor, text: &str) -> i64 {
    let applied = store
        .apply(
            author,
            &Request::PostCreate(PostCreate {
                id: Uuid::now_v7(),
                text: text.into(),
            }),
        )
        .await
        .unwrap();
    match applied.reply.result.unwrap().event.unwrap().body {
        EventBody::PostCreated(p) => p.id,
        other => panic!("{other:?}"),
    }
}

pub async fn admin_requests_are_refused_without_the_role_even_after_it_was_revoked(
    store: Arc<dyn Store>,
) {
    let ana = actor(&*store, "ana").await;
    let bia = actor(&*store, "bia").await;
    let post = post_of(&*store, &bia, "oi").await.to_string();
    let head = store.head(StreamKey::Public).await.unwrap();
    for kind in ["post", "comment", "suspend", "unsuspend"] {
        let target = match kind {
            "post" | "comment" => post.as_str(),
            _ => "bia",
        };
        let refused = store.apply(&ana, &admin_req(kind, target)).await.unwrap();
        assert_eq!(code(&refused), Some(ErrorCode::Forbidden), "{kind}");
        assert!(refused.written.is_empty() && refused.ended_sessions.is_empty());
    }
    assert!(!store.set_admin("nobody", true).await.unwrap());
    assert!(store.set_admin("ana", true).await.unwrap());
    let session = super::SessionRow {
        id: "a1".into(),
        user_id: ana.id,
        expires_at: crate::now_ms() + 60_000,
    };
    store.create_session(&session, "ha").await.unwrap();
    assert!(store.session("a1").await.unwrap().unwrap().admin);
    let suspend = admin_req("suspend", "bia");
    assert_eq!(code(&store.apply(&ana, &suspend).await.unwrap()), None);
    assert!(store.set_admin("ana", false).await.unwrap());
    assert!(!store.session("a1").await.unwrap().unwrap().admin);
    let refused = store
        .apply(&ana, &admin_req("unsuspend", "bia"))
        .await
        .unwrap();
    assert_eq!(code(&refused), Some(ErrorCode::Forbidden));
    // The request applied while ana was an admin keeps its answer when repeated.
    assert_eq!(code(&store.apply(&ana, &suspend).await.unwrap()), None);
    assert_eq!(store.head(StreamKey::Public).await.unwrap(), head);
}

pub async fn a_moderator_removes_any_post_or_comment(store: Arc<dyn Store>) {
    let admin = actor(&*store, "mod").await;
    store.set_admin("mod", true).await.unwrap();
    let ana = actor(&*store, "ana").await;
    let bia = actor(&*store, "bia").await;
    let original = post_of(&*store, &ana, "original").await;
    let share = store
        .apply(
            &bia,
            &Request::PostShare(PostShare {
                id: Uuid::now_v7(),
                post_id: original,
                text: String::new(),
            }),
        )
        .await
        .unwrap();
    let share_id = match share.reply.result.unwrap().event.unwrap().body {
        EventBody::PostCreated(p) => p.id,
        other => panic!("{other:?}"),
    };
    let mut comments = Vec::new();
    for text in ["first", "second"] {
        let c = store
            .apply(
                &bia,
                &Request::CommentCreate(CommentCreate {
                    id: Uuid::now_v7(),
                    post_id: original,
                    text: text.into(),
                }),
            )
            .await
            .unwrap();
        match c.reply.result.unwrap().event.unwrap().body {
            EventBody::CommentCreated(c) => comments.push(c.comment.id),
            other => panic!("{other:?}"),
        }
    }
    // A comment goes, with its post's count; twice is not_found, as is one that never was.
    let removed = store
        .apply(&admin, &admin_req("comment", &comments[0].to_string()))
        .await
        .unwrap();
    assert_eq!(code(&removed), None);
    assert_eq!(removed.written.len(), 1);
    assert_eq!(
        removed.written[0].1.event.body,
        EventBody::CommentRemoved(CommentRemoved {
            comment_id: comments[0],
            post_id: original,
            comment_count: 1,
        })
    );
    let again = store
        .apply(&admin, &admin_req("comment", &comments[0].to_string()))
        .await
        .unwrap();
    assert_eq!(code(&again), Some(ErrorCode::NotFound));
    let none = store
        .apply(&admin, &admin_req("comment", "999"))
        .await
        .unwrap();
    assert_eq!(code(&none), Some(ErrorCode::NotFound));
    // Someone else's share goes like its author's delete: its original's count drops, by
    // the sharer's name.
    let gone = store
        .apply(&admin, &admin_req("post", &share_id.to_string()))
        .await
        .unwrap();
    assert_eq!(code(&gone), None);
    let bodies: Vec<_> = gone
        .written
        .iter()
        .map(|(_, e)| e.event.body.clone())
        .collect();
    assert_eq!(
        bodies,
        vec![
            EventBody::PostDeleted(PostRef { post_id: share_id }),
            EventBody::PostUnshared(ShareChange {
                post_id: original,
                by: "bia".into(),
                share_count: 0,
            }),
        ]
    );
    let post = store
        .apply(&admin, &admin_req("post", &original.to_string()))
        .await
        .unwrap();
    assert_eq!(code(&post), None);
    let twice = store
        .apply(&admin, &admin_req("post", &original.to_string()))
        .await
        .unwrap();
    assert_eq!(code(&twice), Some(ErrorCode::NotFound));
}

pub async fn a_suspension_ends_sessions_refuses_requests_and_sign_in_until_lifted(
    store: Arc<dyn Store>,
) {
    let admin = actor(&*store, "mod").await;
    store.set_admin("mod", true).await.unwrap();
    let ana = actor(&*store, "ana").await;
    let now = crate::now_ms();
    for (id, hash) in [("p1", "h1"), ("p2", "h2")] {
        let s = super::SessionRow {
            id: id.into(),
            user_id: ana.id,
            expires_at: now + 60_000,
        };
        store.create_session(&s, hash).await.unwrap();
    }
    // An admin cannot be suspended; nor can nobody.
    let refused = store
        .apply(&admin, &admin_req("suspend", "mod"))
        .await
        .unwrap();
    assert_eq!(code(&refused), Some(ErrorCode::Forbidden));
    let nobody = store
        .apply(&admin, &admin_req("suspend", "nobody"))
        .await
        .unwrap();
    assert_eq!(code(&nobody), Some(ErrorCode::NotFound));

    let suspended = store
        .apply(&admin, &admin_req("suspend", "ana"))
        .await
        .unwrap();
    assert_eq!(code(&suspended), None);
    assert_eq!(
        suspended.ended_sessions,
        vec!["p1".to_string(), "p2".to_string()]
    );
    assert!(store.session("p1").await.unwrap().is_none());
    assert_eq!(
        store.ended_session("p1", now).await.unwrap(),
        Some(Ended::AccountSuspended)
    );
    assert!(matches!(
        store
            .rotate_refresh("h2", "h3", now + 60_000, now)
            .await
            .unwrap(),
        Rotation::Ended(Ended::AccountSuspended)
    ));
    assert!(
        store
            .user_credentials("ana")
            .await
            .unwrap()
            .unwrap()
            .suspended
    );
    let late = super::SessionRow {
        id: "p3".into(),
        user_id: ana.id,
        expires_at: now + 60_000,
    };
    assert!(matches!(
        store.create_session(&late, "h4").await,
        Err(super::StoreError::UserSuspended)
    ));
    // Whatever socket it comes on, a request of ana's is refused and writes nothing.
    let head = store.head(StreamKey::Public).await.unwrap();
    let refused = store.apply(&ana, &chat("still here?")).await.unwrap();
    assert_eq!(code(&refused), Some(ErrorCode::AccountSuspended));
    assert_eq!(store.head(StreamKey::Public).await.unwrap(), head);
    // Suspending again changes nothing.
    let again = store
        .apply(&admin, &admin_req("suspend", "ana"))
        .await
        .unwrap();
    assert_eq!(code(&again), None);
    assert!(again.ended_sessions.is_empty());

    let lifted = store
        .apply(&admin, &admin_req("unsuspend", "ana"))
        .await
        .unwrap();
    assert_eq!(code(&lifted), None);
    assert!(
        !store
            .user_credentials("ana")
            .await
            .unwrap()
            .unwrap()
            .suspended
    );
    // The old devices now sign in again like after a logout; a new session opens.
    assert_eq!(store.ended_session("p1", now).await.unwrap(), None);
    assert!(matches!(
        store
            .rotate_refresh("h2", "h3", now + 60_000, now)
            .await
            .unwrap(),
        Rotation::Unknown
    ));
    store.create_session(&late, "h4").await.unwrap();
    let sent = store.apply(&ana, &chat("back")).await.unwrap();
    assert_eq!(code(&sent), None);
}

pub async fn node_statistics_are_shared_and_a_silent_node_drops_out(store: Arc<dyn Store>) {
    let a = store
        .sync_node_stats("b-node", "{\"n\":1}".into(), 60_000)
        .await
        .unwrap();
    assert_eq!(a, vec!["{\"n\":1}".to_string()]);
    let both = store
        .sync_node_stats("a-node", "{\"n\":2}".into(), 60_000)
        .await
        .unwrap();
    assert_eq!(both, vec!["{\"n\":2}".to_string(), "{\"n\":1}".to_string()]);
    let replaced = store
        .sync_node_stats("b-node", "{\"n\":3}".into(), 60_000)
        .await
        .unwrap();
    assert_eq!(
        replaced,
        vec!["{\"n\":2}".to_string(), "{\"n\":3}".to_string()]
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    // With a window shorter than the time since a-node last wrote, only the writer is left.
    let alone = store
        .sync_node_stats("b-node", "{\"n\":4}".into(), 20)
        .await
        .unwrap();
    assert_eq!(alone, vec!["{\"n\":4}".to_string()]);
    assert!(store.database_bytes().await.unwrap() > 0);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fresh = super::sqlite();
                    super::$name(fresh.store.clone()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Postgres (PAPO_TEST_POSTGRES_URL); scripts/test.sh runs it"]
                async fn $name() {
                    let fresh = super::postgres().await;
                    super::$name(fresh.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    usernames_are_unique,
    presence_interest_is_follows_and_dm_peers,
    a_repeated_client_id_returns_the_stored_reply_and_writes_nothing,
    a_refused_request_writes_nothing_and_keeps_its_answer,
    sequences_stay_gap_free_under_concurrent_writers,
    likes_count_once_per_user_and_notify_the_author_only,
    sessions_rotate_and_revoke,
    a_reused_refresh_token_revokes_its_session,
    concurrent_refreshes_with_one_token_rotate_once,
    presence_spans_nodes_and_expires_with_a_dead_node,
    a_deleted_account_ends_its_sessions_follows_and_private_data,
    a_reply_quotes_its_original_of_the_same_conversation_and_notifies_its_sender,
    shares_count_once_per_user_notify_the_author_and_undo,
    admin_requests_are_refused_without_the_role_even_after_it_was_revoked,
    a_moderator_removes_any_post_or_comment,
    a_suspension_ends_sessions_refuses_requests_and_sign_in_until_lifted,
    node_statistics_are_shared_and_a_silent_node_drops_out,
);
