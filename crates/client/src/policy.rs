//! Notification policy: a pure function from an event plus context to "raise this OS
//! notification" or nothing.

use papo_protocol::{conversation, EventBody, NotificationKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The user's notification settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct NotificationSettings {
    pub do_not_disturb: bool,
    /// Conversation ids (`"dm:joao"`, `"public"`) that never notify.
    pub muted: BTreeSet<String>,
    pub likes: bool,
    pub follows: bool,
    pub comments: bool,
    pub direct_messages: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            do_not_disturb: false,
            muted: BTreeSet::new(),
            likes: true,
            follows: true,
            comments: true,
            direct_messages: true,
        }
    }
}

/// What the notification opens when clicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Conversation {
        id: String,
    },
    Post {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        post_id: i64,
    },
    User {
        username: String,
    },
}

/// An OS notification to raise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OsNotification {
    pub title: String,
    pub body: String,
    pub target: Target,
    /// Notifications with the same group replace/stack with each other (one per conversation).
    pub group: String,
}

/// Everything besides the event that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    pub me: &'a str,
    /// The conversation (or `"post:<id>"` / `"notifications"`) currently on screen, if any.
    pub on_screen: Option<&'a str>,
    pub settings: &'a NotificationSettings,
}

/// Decides whether `event` deserves an OS notification.
///
/// Notifies for private messages (from `dm.message`) and for likes, follows and comments (from
/// the `notification` events the server puts in my private stream). Never for my own actions,
/// the conversation on screen, muted conversations, under do-not-disturb, or kinds turned off.
pub fn decide(event: &EventBody, ctx: &PolicyContext<'_>) -> Option<OsNotification> {
    if ctx.settings.do_not_disturb {
        return None;
    }
    let n = match event {
        EventBody::DmMessage(m) => {
            if m.from == ctx.me || !ctx.settings.direct_messages {
                return None;
            }
            let conv = conversation::dm(&m.from);
            OsNotification {
                title: m.from.clone(),
                body: papo_protocol::excerpt(&m.text),
                target: Target::Conversation { id: conv.clone() },
                group: conv,
            }
        }
        EventBody::Notification(n) => {
            if n.actor == ctx.me {
                return None;
            }
            let (enabled, title, target, group) = match n.kind {
                // DMs notify from the message itself (above), not twice.
                NotificationKind::Dm => return None,
                NotificationKind::Like => {
                    let post_id = n.post_id?;
                    (
                        ctx.settings.likes,
                        format!("{} liked your post", n.actor),
                        Target::Post { post_id },
                        format!("post:{post_id}"),
                    )
                }
                NotificationKind::Comment => {
                    let post_id = n.post_id?;
                    (
                        ctx.settings.comments,
                        format!("{} commented on your post", n.actor),
                        Target::Post { post_id },
                        format!("post:{post_id}"),
                    )
                }
                NotificationKind::Follow => (
                    ctx.settings.follows,
                    format!("{} followed you", n.actor),
                    Target::User {
                        username: n.actor.clone(),
                    },
                    "follows".to_string(),
                ),
            };
            if !enabled {
                return None;
            }
            OsNotification {
                title,
                body: n
                    .excerpt
                    .as_deref()
                    .map(papo_protocol::excerpt)
                    .unwrap_or_default(),
                target,
                group,
            }
        }
        _ => return None,
    };
    if ctx.settings.muted.contains(&n.group) {
        return None;
    }
    if ctx.on_screen == Some(n.group.as_str()) {
        return None;
    }
    if ctx.on_screen == Some("notifications") && !matches!(n.target, Target::Conversation { .. }) {
        return None;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use papo_protocol::{DirectMessage, Notification};

    fn dm(from: &str, to: &str) -> EventBody {
        EventBody::DmMessage(DirectMessage {
            id: 1,
            from: from.into(),
            to: to.into(),
            text: "oi".into(),
            at: 0,
        })
    }

    fn notif(kind: NotificationKind, actor: &str) -> EventBody {
        EventBody::Notification(Notification {
            id: 1,
            kind,
            actor: actor.into(),
            post_id: Some(9),
            comment_id: None,
            message_id: None,
            excerpt: Some("nice".into()),
            at: 0,
        })
    }

    fn ctx<'a>(s: &'a NotificationSettings, on_screen: Option<&'a str>) -> PolicyContext<'a> {
        PolicyContext {
            me: "ana",
            on_screen,
            settings: s,
        }
    }

    #[test]
    fn private_message_from_someone_else_notifies_grouped_by_conversation() {
        let s = NotificationSettings::default();
        let n = decide(&dm("joao", "ana"), &ctx(&s, None)).unwrap();
        assert_eq!(n.title, "joao");
        assert_eq!(n.body, "oi");
        assert_eq!(n.group, "dm:joao");
        assert_eq!(
            n.target,
            Target::Conversation {
                id: "dm:joao".into()
            }
        );
    }

    #[test]
    fn never_my_own_actions() {
        let s = NotificationSettings::default();
        assert!(decide(&dm("ana", "joao"), &ctx(&s, None)).is_none());
        assert!(decide(&notif(NotificationKind::Like, "ana"), &ctx(&s, None)).is_none());
    }

    #[test]
    fn not_the_conversation_on_screen_but_others_yes() {
        let s = NotificationSettings::default();
        assert!(decide(&dm("joao", "ana"), &ctx(&s, Some("dm:joao"))).is_none());
        assert!(decide(&dm("joao", "ana"), &ctx(&s, Some("dm:bia"))).is_some());
        assert!(decide(&dm("joao", "ana"), &ctx(&s, Some("public"))).is_some());
    }

    #[test]
    fn muted_dnd_and_per_kind_settings_silence() {
        let mut s = NotificationSettings::default();
        s.muted.insert("dm:joao".into());
        assert!(decide(&dm("joao", "ana"), &ctx(&s, None)).is_none());
        assert!(decide(&dm("bia", "ana"), &ctx(&s, None)).is_some());

        let s = NotificationSettings {
            do_not_disturb: true,
            ..Default::default()
        };
        assert!(decide(&dm("bia", "ana"), &ctx(&s, None)).is_none());
        assert!(decide(&notif(NotificationKind::Follow, "bia"), &ctx(&s, None)).is_none());

        let s = NotificationSettings {
            likes: false,
            ..Default::default()
        };
        assert!(decide(&notif(NotificationKind::Like, "bia"), &ctx(&s, None)).is_none());
        assert!(decide(&notif(NotificationKind::Comment, "bia"), &ctx(&s, None)).is_some());
    }

    #[test]
    fn likes_follows_comments_notify_with_targets() {
        let s = NotificationSettings::default();
        let like = decide(&notif(NotificationKind::Like, "bia"), &ctx(&s, None)).unwrap();
        assert_eq!(like.title, "bia liked your post");
        assert_eq!(like.target, Target::Post { post_id: 9 });
        let follow = decide(&notif(NotificationKind::Follow, "bia"), &ctx(&s, None)).unwrap();
        assert_eq!(
            follow.target,
            Target::User {
                username: "bia".into()
            }
        );
        let comment = decide(&notif(NotificationKind::Comment, "bia"), &ctx(&s, None)).unwrap();
        assert_eq!(comment.body, "nice");
        // A DM notification record does not notify a second time.
        assert!(decide(&notif(NotificationKind::Dm, "bia"), &ctx(&s, None)).is_none());
    }

    #[test]
    fn public_chat_and_feed_events_do_not_notify() {
        let s = NotificationSettings::default();
        let chat = EventBody::ChatMessage(papo_protocol::ChatMessage {
            id: 1,
            from: "bia".into(),
            text: "oi".into(),
            at: 0,
        });
        assert!(decide(&chat, &ctx(&s, None)).is_none());
    }
}
