//! Change sets: a UI that only applies them holds what the cache holds.

use crate::cache::{Cache, CommentRow, ConversationRow, MessageRow, PageKey, PostRow};
use crate::changes::ChangeSet;
use papo_protocol::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeMap;
use uuid::Uuid;

const ME: &str = "ana";
const PEOPLE: [&str; 4] = ["ana", "bia", "caio", "davi"];

/// What a UI holds when it only ever applies change sets (no reads).
#[derive(Default)]
struct Model {
    messages: BTreeMap<i64, MessageRow>,
    conversations: BTreeMap<String, ConversationRow>,
    posts: BTreeMap<i64, PostRow>,
    comments: BTreeMap<i64, CommentRow>,
    notifications: BTreeMap<i64, Notification>,
    unread_total: i64,
}

impl Model {
    fn apply(&mut self, c: ChangeSet) {
        if c.reset {
            *self = Model::default();
        }
        for m in c.messages {
            self.messages.insert(m.local_id, m);
        }
        for r in c.conversations {
            self.conversations.insert(r.id.clone(), r);
        }
        for p in c.posts {
            self.posts.insert(p.local_id, p);
        }
        for id in c.posts_deleted {
            self.posts.remove(&id);
        }
        for r in c.comments {
            self.comments.insert(r.local_id, r);
        }
        for n in c.notifications {
            self.notifications.insert(n.id, n);
        }
        self.unread_total = c.unread_total;
    }
}

fn newest_first<T: Clone>(rows: impl Iterator<Item = T>, key: impl Fn(&T) -> PageKey) -> Vec<T> {
    let mut v: Vec<T> = rows.collect();
    v.sort_by_key(|r| std::cmp::Reverse((key(r).at, key(r).sk)));
    v
}

/// Random batches from the server (messages, posts, likes, comments, deletes,
/// notifications, read marks, echoes of my own requests) and local actions through the
/// outbox, in any order: the view built only from change sets is, after every step, the
/// view a fresh read of the cache gives.
#[test]
fn views_built_from_change_sets_equal_fresh_reads() {
    for seed in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c.sqlite")).unwrap();
        cache.set_me(ME).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::default();
        let (mut public, mut private, mut next) = (0u64, 0u64, 100i64);
        // My requests not yet echoed: (client id, request).
        let mut mine: Vec<(Uuid, Request)> = Vec::new();
        let mut post_ids: Vec<i64> = Vec::new();
        // Public messages the server sent, for replies, edits and deletes: id -> (from, text).
        let mut chats: BTreeMap<i64, (String, String)> = BTreeMap::new();
        let pick = |rng: &mut StdRng, chats: &BTreeMap<i64, (String, String)>| {
            let ids: Vec<i64> = chats.keys().copied().collect();
            (!ids.is_empty()).then(|| ids[rng.gen_range(0..ids.len())])
        };
        for step in 0..150 {
            if rng.gen_bool(0.3) {
                // A local action.
                let id = Uuid::now_v7();
                let request = match rng.gen_range(0..5) {
                    0 => Request::ChatSend(ChatSend {
                        id,
                        text: format!("eu {step}"),
                        reply_to: pick(&mut rng, &chats).filter(|_| rng.gen_bool(0.5)),
                    }),
                    1 => Request::DmSend(DmSend {
                        id,
                        to: PEOPLE[rng.gen_range(1..4)].into(),
                        text: format!("dm {step}"),
                        reply_to: None,
                    }),
                    2 => Request::PostCreate(PostCreate {
                        id,
                        text: format!("post {step}"),
                    }),
                    3 if !post_ids.is_empty() => Request::PostLike(PostAction {
                        id,
                        post_id: post_ids[rng.gen_range(0..post_ids.len())],
                    }),
                    _ if !post_ids.is_empty() => Request::CommentCreate(CommentCreate {
                        id,
                        post_id: post_ids[rng.gen_range(0..post_ids.len())],
                        text: format!("comentário {step}"),
                    }),
                    _ => Request::ChatSend(ChatSend {
                        id,
                        text: format!("eu {step}"),
                        reply_to: None,
                    }),
                };
                cache.enqueue(ME, &request).unwrap();
                model.apply(cache.local_changes(ME, id, Some(&request)).unwrap());
                mine.push((id, request));
            } else {
                let mut batch = Vec::new();
                for _ in 0..rng.gen_range(1..12) {
                    next += 1;
                    let at = next * 10;
                    let from = PEOPLE[rng.gen_range(0..4)].to_string();
                    let (stream, cid, body) = match rng.gen_range(0..11) {
                        // The echo of one of my requests.
                        0 if !mine.is_empty() => {
                            let (cid, req) = mine.remove(0);
                            let body = match req {
                                Request::ChatSend(r) => EventBody::ChatMessage(ChatMessage {
                                    id: next,
                                    from: ME.into(),
                                    text: r.text,
                                    at,
                                    reply_to: r.reply_to.map(|o| ReplyQuote {
                                        message_id: o,
                                        from: chats
                                            .get(&o)
                                            .map(|c| c.0.clone())
                                            .unwrap_or_default(),
                                        excerpt: "as sent".into(),
                                    }),
                                }),
                                Request::DmSend(r) => EventBody::DmMessage(DirectMessage {
                                    id: next,
                                    from: ME.into(),
                                    to: r.to,
                                    text: r.text,
                                    at,
                                    reply_to: None,
                                }),
                                Request::PostCreate(r) => {
                                    post_ids.push(next);
                                    EventBody::PostCreated(Post {
                                        id: next,
                                        author: ME.into(),
                                        text: r.text,
                                        at,
                                        edited_at: None,
                                        like_count: 0,
                                        comment_count: 0,
                                        share_count: 0,
                                        share_of: None,
                                    })
                                }
                                Request::PostLike(r) => EventBody::PostLiked(LikeChange {
                                    post_id: r.post_id,
                                    by: ME.into(),
                                    like_count: rng.gen_range(1..5),
                                }),
                                Request::CommentCreate(r) => {
                                    EventBody::CommentCreated(CommentCreated {
                                        comment: Comment {
                                            id: next,
                                            post_id: r.post_id,
                                            author: ME.into(),
                                            text: r.text,
                                            at,
                                        },
                                        comment_count: rng.gen_range(1..5),
                                    })
                                }
                                _ => unreachable!(),
                            };
                            let stream = if matches!(body, EventBody::DmMessage(_)) {
                                Stream::Private
                            } else {
                                Stream::Public
                            };
                            (stream, Some(cid), body)
                        }
                        1 => {
                            let reply_to = pick(&mut rng, &chats)
                                .filter(|_| rng.gen_bool(0.4))
                                .map(|o| ReplyQuote {
                                    message_id: o,
                                    from: chats[&o].0.clone(),
                                    excerpt: excerpt(&chats[&o].1),
                                });
                            chats.insert(next, (from.clone(), format!("oi {next}")));
                            (
                                Stream::Public,
                                None,
                                EventBody::ChatMessage(ChatMessage {
                                    id: next,
                                    from,
                                    text: format!("oi {next}"),
                                    at,
                                    reply_to,
                                }),
                            )
                        }
                        // Someone edits or deletes a public message (replies quote it).
                        9 if !chats.is_empty() => {
                            let message_id = pick(&mut rng, &chats).unwrap();
                            let text = format!("editada {next}");
                            chats.get_mut(&message_id).unwrap().1 = text.clone();
                            (
                                Stream::Public,
                                None,
                                EventBody::MessageEdited(MessageEdited {
                                    message_id,
                                    text,
                                    edited_at: at,
                                }),
                            )
                        }
                        10 if !chats.is_empty() => {
                            let message_id = pick(&mut rng, &chats).unwrap();
                            chats.remove(&message_id);
                            (
                                Stream::Public,
                                None,
                                EventBody::MessageDeleted(MessageRef { message_id }),
                            )
                        }
                        2 => {
                            let peer = PEOPLE[rng.gen_range(1..4)].to_string();
                            (
                                Stream::Private,
                                None,
                                EventBody::DmMessage(DirectMessage {
                                    id: next,
                                    from: peer,
                                    to: ME.into(),
                                    text: format!("psiu {next}"),
                                    at,
                                    reply_to: None,
                                }),
                            )
                        }
                        3 => {
                            post_ids.push(next);
                            (
                                Stream::Public,
                                None,
                                EventBody::PostCreated(Post {
                                    id: next,
                                    author: from,
                                    text: format!("p {next}"),
                                    at,
                                    edited_at: None,
                                    like_count: 0,
                                    comment_count: 0,
                                    share_count: 0,
                                    share_of: None,
                                }),
                            )
                        }
                        4 if !post_ids.is_empty() => {
                            let post_id = post_ids[rng.gen_range(0..post_ids.len())];
                            (
                                Stream::Public,
                                None,
                                EventBody::PostLiked(LikeChange {
                                    post_id,
                                    by: from,
                                    like_count: rng.gen_range(1..9),
                                }),
                            )
                        }
                        5 if !post_ids.is_empty() => {
                            let post_id = post_ids[rng.gen_range(0..post_ids.len())];
                            (
                                Stream::Public,
                                None,
                                EventBody::PostEdited(PostEdited {
                                    post_id,
                                    text: format!("editado {next}"),
                                    edited_at: at,
                                }),
                            )
                        }
                        6 if !post_ids.is_empty() => {
                            let post_id = post_ids.remove(rng.gen_range(0..post_ids.len()));
                            (
                                Stream::Public,
                                None,
                                EventBody::PostDeleted(PostRef { post_id }),
                            )
                        }
                        7 => (
                            Stream::Private,
                            None,
                            EventBody::Notification(Notification {
                                id: next,
                                kind: NotificationKind::Follow,
                                actor: from,
                                post_id: None,
                                comment_id: None,
                                message_id: None,
                                excerpt: None,
                                at,
                            }),
                        ),
                        _ => {
                            let conversation = if rng.gen_bool(0.5) {
                                "public".to_string()
                            } else {
                                format!("dm:{}", PEOPLE[rng.gen_range(1..4)])
                            };
                            (
                                Stream::Private,
                                None,
                                EventBody::ReadUpdated(ReadState {
                                    conversation,
                                    last_read: rng.gen_range(0..next),
                                }),
                            )
                        }
                    };
                    let seq = match stream {
                        Stream::Public => {
                            public += 1;
                            public
                        }
                        Stream::Private => {
                            private += 1;
                            private
                        }
                    };
                    batch.push(LogEvent {
                        stream,
                        seq,
                        at,
                        cid,
                        body,
                    });
                }
                let out = cache.apply_batch(ME, &batch).unwrap();
                model.apply(out.changes);
            }
            // The model against fresh reads.
            let fresh_convs: BTreeMap<_, _> = cache
                .conversations()
                .unwrap()
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect();
            assert_eq!(
                model.conversations, fresh_convs,
                "seed {seed} step {step}: conversations"
            );
            for id in fresh_convs.keys() {
                let fresh = cache.conversation_page(id, None, 10_000).unwrap();
                let built = newest_first(
                    model
                        .messages
                        .values()
                        .filter(|m| &m.conversation == id)
                        .cloned(),
                    |m| m.key,
                );
                assert_eq!(built, fresh, "seed {seed} step {step}: messages of {id}");
            }
            let fresh_feed = cache.feed_page(ME, None, 10_000).unwrap();
            assert_eq!(
                newest_first(model.posts.values().cloned(), |p| p.key),
                fresh_feed,
                "seed {seed} step {step}: feed"
            );
            for p in &fresh_feed {
                if let Some(sid) = p.server_id {
                    let fresh = cache.comments(sid).unwrap();
                    let mut built: Vec<_> = model
                        .comments
                        .values()
                        .filter(|c| c.post_id == sid)
                        .cloned()
                        .collect();
                    built.sort_by_key(|c| (c.at, c.local_id));
                    assert_eq!(built, fresh, "seed {seed} step {step}: comments of {sid}");
                }
            }
            let fresh_notes = cache.notifications_page(None, 10_000).unwrap();
            let mut built: Vec<_> = model.notifications.values().cloned().collect();
            built.sort_by_key(|n| std::cmp::Reverse((n.at, n.id)));
            assert_eq!(built, fresh_notes, "seed {seed} step {step}: notifications");
            // The total, and each conversation's count as its row carries it.
            let counts = cache.unread_counts().unwrap();
            assert_eq!(
                model.unread_total, counts.total,
                "seed {seed} step {step}: total"
            );
            let built: Vec<(String, i64)> = model
                .conversations
                .values()
                .filter(|c| c.unread > 0)
                .map(|c| (c.id.clone(), c.unread))
                .collect();
            assert_eq!(
                built, counts.conversations,
                "seed {seed} step {step}: unread"
            );
        }
        assert!(
            !model.messages.is_empty() && !model.posts.is_empty(),
            "a test of nothing"
        );
        // Replies were written, and some of their originals changed under them.
        let quotes: Vec<_> = model
            .messages
            .values()
            .filter_map(|m| m.reply_to.clone())
            .collect();
        assert!(
            quotes.iter().any(|q| q.excerpt.is_none())
                && quotes.iter().any(|q| q
                    .excerpt
                    .as_deref()
                    .is_some_and(|e| e.starts_with("editada"))),
            "seed {seed}: no reply saw its original deleted and another edited: {quotes:?}"
        );
    }
}
