//! The UI's TypeScript types are generated from `src-tauri/ui_types.rs`; this test fails when
//! `ui/src/lib/bindings/papo.ts` is stale (run with `PAPO_BLESS=1` to rewrite it), and proves
//! that each UI twin has exactly the JSON shape of the core/protocol value it stands for.

use papo_app::ui_types as ui;
use papo_client::cache::{
    CommentRow, ConversationRow, HitKind, LocalState, MessageRow, PostRow, SearchHit, UnreadCounts,
};
use papo_client::outbox::{OutboxChange, OutboxState, WedgeReason};
use papo_client::policy::{OsNotification, Target};
use papo_client::{ConnectionState, CoreEvent, NotificationSettings, PageKey};
use papo_protocol::*;
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

const PATH: &str = "ui/src/lib/bindings/papo.ts";

#[test]
fn typescript_bindings_are_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
    let fresh = ui::typescript();
    if std::env::var("PAPO_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{PATH} is stale: run `PAPO_BLESS=1 cargo test --test bindings` and commit it"
    );
}

/// `core` serialized, read as its UI twin, serialized again: the same JSON.
fn same_shape<C: Serialize, U: Serialize + DeserializeOwned>(core: &C) {
    let a = serde_json::to_value(core).unwrap();
    let twin: U = serde_json::from_value(a.clone())
        .unwrap_or_else(|e| panic!("UI twin cannot read {a}: {e}"));
    assert_eq!(serde_json::to_value(&twin).unwrap(), a);
}

fn log(body: EventBody, cid: Option<Uuid>) -> LogEvent {
    LogEvent {
        stream: Stream::Public,
        seq: 7,
        at: 1_795_392_851_072,
        cid,
        body,
    }
}

#[test]
fn every_core_event_has_the_shape_of_its_ui_twin() {
    let post = Post {
        id: 1,
        author: "ana".into(),
        text: "oi".into(),
        at: 5,
        edited_at: Some(6),
        like_count: 2,
        comment_count: 1,
    };
    let bodies = vec![
        EventBody::ChatMessage(ChatMessage {
            id: 1,
            from: "ana".into(),
            text: "olá".into(),
            at: 3,
        }),
        EventBody::DmMessage(DirectMessage {
            id: 2,
            from: "ana".into(),
            to: "joao".into(),
            text: "oi".into(),
            at: 3,
        }),
        EventBody::PostCreated(post.clone()),
        EventBody::PostCreated(Post {
            edited_at: None,
            ..post
        }),
        EventBody::PostEdited(PostEdited {
            post_id: 1,
            text: "x".into(),
            edited_at: 9,
        }),
        EventBody::PostDeleted(PostRef { post_id: 1 }),
        EventBody::PostLiked(LikeChange {
            post_id: 1,
            by: "b".into(),
            like_count: 3,
        }),
        EventBody::PostUnliked(LikeChange {
            post_id: 1,
            by: "b".into(),
            like_count: 2,
        }),
        EventBody::CommentCreated(CommentCreated {
            comment: Comment {
                id: 4,
                post_id: 1,
                author: "c".into(),
                text: "t".into(),
                at: 1,
            },
            comment_count: 1,
        }),
        EventBody::UserFollowed(FollowChange {
            follower: "a".into(),
            followee: "b".into(),
            follower_count: 1,
        }),
        EventBody::UserUnfollowed(FollowChange {
            follower: "a".into(),
            followee: "b".into(),
            follower_count: 0,
        }),
        EventBody::Notification(Notification {
            id: 1,
            kind: NotificationKind::Dm,
            actor: "joao".into(),
            post_id: None,
            comment_id: None,
            message_id: Some(2),
            excerpt: Some("oi".into()),
            at: 8,
        }),
        EventBody::Notification(Notification {
            id: 2,
            kind: NotificationKind::Like,
            actor: "joao".into(),
            post_id: Some(1),
            comment_id: Some(3),
            message_id: None,
            excerpt: None,
            at: 8,
        }),
        EventBody::ReadUpdated(ReadState {
            conversation: "dm:joao".into(),
            last_read: 2,
        }),
    ];
    let mut events = vec![];
    for b in bodies {
        events.push(CoreEvent::Log(log(b.clone(), None)));
        events.push(CoreEvent::Log(log(b, Some(Uuid::now_v7()))));
    }
    events.extend([
        CoreEvent::Connection(ConnectionState::Connecting { attempt: 1 }),
        CoreEvent::Connection(ConnectionState::Connected),
        CoreEvent::Connection(ConnectionState::Retrying {
            attempt: 2,
            at: 10,
            in_ms: 500,
            reason: "closed".into(),
        }),
        CoreEvent::Connection(ConnectionState::SignedOut {
            reason: "token_invalid".into(),
        }),
        CoreEvent::Connection(ConnectionState::Stopped),
        CoreEvent::Sync(SyncStatus {
            state: SyncState::Reset,
            epoch: "e".into(),
            heads: Cursor {
                public: 1,
                private: 2,
            },
        }),
        CoreEvent::Presence(Presence {
            snapshot: true,
            online: vec!["a".into()],
            offline: vec![],
        }),
        CoreEvent::Typing(Typing {
            conversation: "public".into(),
            username: "a".into(),
            typing: true,
        }),
        CoreEvent::Outbox(OutboxChange::wedged(
            Uuid::now_v7(),
            WedgeReason::Refused {
                error: ErrorBody {
                    code: ErrorCode::InvalidText,
                    message: "m".into(),
                },
            },
        )),
        CoreEvent::Outbox(OutboxChange::wedged(
            Uuid::now_v7(),
            WedgeReason::NoAnswer { attempts: 5 },
        )),
        CoreEvent::Outbox(OutboxChange::sent(Uuid::now_v7())),
        CoreEvent::Outbox(OutboxChange {
            client_id: Uuid::now_v7(),
            state: OutboxState::Pending,
            error: None,
            wedge: None,
        }),
    ]);
    for target in [
        Target::Conversation { id: "dm:a".into() },
        Target::Post { post_id: 1 },
        Target::User {
            username: "a".into(),
        },
    ] {
        events.push(CoreEvent::Notify(OsNotification {
            title: "t".into(),
            body: "b".into(),
            target,
            group: "g".into(),
        }));
    }
    for e in &events {
        same_shape::<_, ui::CoreEvent>(e);
    }
    for code in [
        ErrorCode::BadRequest,
        ErrorCode::UnknownEvent,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::InvalidUsername,
        ErrorCode::WeakPassword,
        ErrorCode::UsernameTaken,
        ErrorCode::InvalidCredentials,
        ErrorCode::TokenExpired,
        ErrorCode::TokenInvalid,
        ErrorCode::IdConflict,
        ErrorCode::Internal,
    ] {
        same_shape::<_, ui::ErrorCode>(&code);
    }
}

#[test]
fn every_cache_row_has_the_shape_of_its_ui_twin() {
    let key = PageKey { at: 1, sk: 2 };
    for state in [LocalState::Pending, LocalState::Sent, LocalState::Failed] {
        same_shape::<_, ui::MessageRow>(&MessageRow {
            local_id: 1,
            server_id: None,
            client_id: Some(Uuid::now_v7()),
            conversation: "public".into(),
            sender: "a".into(),
            text: "t".into(),
            at: 1,
            state,
            key,
        });
        same_shape::<_, ui::PostRow>(&PostRow {
            local_id: 1,
            server_id: Some(3),
            client_id: None,
            author: "a".into(),
            text: "t".into(),
            at: 1,
            edited_at: Some(2),
            like_count: 0,
            comment_count: 0,
            liked_by_me: true,
            state,
            key,
        });
        same_shape::<_, ui::CommentRow>(&CommentRow {
            local_id: 1,
            server_id: None,
            post_id: 3,
            author: "a".into(),
            text: "t".into(),
            at: 1,
            state,
        });
    }
    same_shape::<_, ui::ConversationRow>(&ConversationRow {
        id: "dm:a".into(),
        last_at: 1,
        last_sender: "a".into(),
        last_text: "t".into(),
        unread: 2,
    });
    same_shape::<_, ui::UnreadCounts>(&UnreadCounts {
        total: 2,
        conversations: vec![("dm:a".into(), 2)],
    });
    for kind in [HitKind::Message, HitKind::Post] {
        same_shape::<_, ui::SearchHit>(&SearchHit {
            kind,
            local_id: 1,
            server_id: Some(1),
            conversation: Some("public".into()),
            author: "a".into(),
            text: "t".into(),
            at: 1,
        });
    }
    let mut settings = NotificationSettings::default();
    settings.muted.insert("dm:a".into());
    same_shape::<_, ui::NotificationSettings>(&settings);
}
