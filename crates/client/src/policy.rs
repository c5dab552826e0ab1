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
    /// Do-not-disturb every day in this local-time window, besides the manual switch.
    pub quiet_hours: Option<QuietHours>,
    /// Conversation ids (`"dm:joao"`, `"public"`) that never notify.
    pub muted: BTreeSet<String>,
    pub likes: bool,
    pub follows: bool,
    pub comments: bool,
    pub direct_messages: bool,
    /// Someone wrote `@me` in a public message, post or comment.
    pub mentions: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            do_not_disturb: false,
            quiet_hours: None,
            muted: BTreeSet::new(),
            likes: true,
            follows: true,
            comments: true,
            direct_messages: true,
            mentions: true,
        }
    }
}

/// Minutes in a day: [`QuietHours`] bounds are below this.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// A daily window in local time, in minutes after midnight (`22:00` is 1320). A window whose
/// start is after its end spans midnight (22:00–07:00); start == end is an empty window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QuietHours {
    pub start: u16,
    pub end: u16,
}

impl QuietHours {
    /// Both bounds name a minute of the day.
    pub fn is_valid(&self) -> bool {
        self.start < MINUTES_PER_DAY && self.end < MINUTES_PER_DAY
    }

    /// Whether `minute` (after local midnight) falls in the window: the start minute is in it,
    /// the end minute is not. An invalid window holds nothing.
    pub fn contains(&self, minute: u16) -> bool {
        if !self.is_valid() {
            return false;
        }
        if self.start <= self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl NotificationSettings {
    /// Whether notifications are silenced at `local_minute`: the manual switch or quiet hours.
    pub fn silenced_at(&self, local_minute: u16) -> bool {
        self.do_not_disturb || self.quiet_hours_active(local_minute)
    }

    /// Whether the quiet-hours window holds `local_minute`.
    pub fn quiet_hours_active(&self, local_minute: u16) -> bool {
        self.quiet_hours.is_some_and(|q| q.contains(local_minute))
    }
}

/// The minute after local midnight (in the OS time zone, daylight saving included) at
/// `wall_ms` (unix milliseconds).
pub fn local_minute(wall_ms: i64) -> u16 {
    use chrono::{Local, TimeZone, Timelike};
    match Local.timestamp_millis_opt(wall_ms).earliest() {
        Some(t) => (t.hour() * 60 + t.minute()) as u16,
        None => 0,
    }
}

/// The minute after local midnight now.
pub fn local_minute_now() -> u16 {
    local_minute(crate::rows::now_ms())
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
    /// The message it announces (a DM, a mention in the public room): when that message is
    /// deleted, the core publishes [`crate::CoreEvent::Withdraw`] and the notification goes.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub message_id: Option<i64>,
}

/// The message whose notification must be withdrawn, if `event` deleted one.
pub fn withdrawn(event: &EventBody) -> Option<i64> {
    match event {
        EventBody::MessageDeleted(r) => Some(r.message_id),
        _ => None,
    }
}

/// The language OS notifications are written in (the app's, which the shell sets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    En,
    PtBr,
}

impl Lang {
    /// From a locale name (`pt-BR`, `pt_BR.UTF-8`, `en-US`): Portuguese for `pt*`, else English.
    pub fn of_locale(locale: &str) -> Lang {
        if locale.to_ascii_lowercase().starts_with("pt") {
            Lang::PtBr
        } else {
            Lang::En
        }
    }
}

/// The title of the OS notification for a `notification` of this kind by `actor`, in `lang`
/// (a DM's title is its sender).
pub fn title(kind: NotificationKind, actor: &str, lang: Lang) -> String {
    use NotificationKind::*;
    let what = match (lang, kind) {
        (Lang::En, Like) => "liked your post",
        (Lang::En, Comment) => "commented on your post",
        (Lang::En, Follow) => "followed you",
        (Lang::En, Dm) => "sent you a message",
        (Lang::En, Mention) => "mentioned you",
        (Lang::En, Reply) => "replied to you",
        (Lang::En, Share) => "shared your post",
        (Lang::PtBr, Like) => "curtiu sua publicação",
        (Lang::PtBr, Comment) => "comentou sua publicação",
        (Lang::PtBr, Follow) => "começou a seguir você",
        (Lang::PtBr, Dm) => "mandou uma mensagem",
        (Lang::PtBr, Mention) => "mencionou você",
        (Lang::PtBr, Reply) => "respondeu a você",
        (Lang::PtBr, Share) => "compartilhou sua publicação",
    };
    format!("{actor} {what}")
}

/// Everything besides the event that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    pub me: &'a str,
    /// The language titles are written in.
    pub lang: Lang,
    /// The conversation (or `"post:<id>"` / `"notifications"`) currently on screen, if any.
    pub on_screen: Option<&'a str>,
    pub settings: &'a NotificationSettings,
    /// Now, in minutes after local midnight (see [`local_minute`]), for quiet hours.
    pub local_minute: u16,
}

/// Decides whether `event` deserves an OS notification.
///
/// Notifies for private messages (from `dm.message`) and for likes, follows and comments (from
/// the `notification` events the server puts in my private stream). Never for my own actions,
/// the conversation on screen, muted conversations, under do-not-disturb (the switch or quiet
/// hours), or kinds turned off.
pub fn decide(event: &EventBody, ctx: &PolicyContext<'_>) -> Option<OsNotification> {
    if ctx.settings.silenced_at(ctx.local_minute) {
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
                message_id: Some(m.id),
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
                        title(n.kind, &n.actor, ctx.lang),
                        Target::Post { post_id },
                        format!("post:{post_id}"),
                    )
                }
                // Shares go with likes: someone passing my post on.
                NotificationKind::Share => {
                    let post_id = n.post_id?;
                    (
                        ctx.settings.likes,
                        title(n.kind, &n.actor, ctx.lang),
                        Target::Post { post_id },
                        format!("post:{post_id}"),
                    )
                }
                NotificationKind::Comment => {
                    let post_id = n.post_id?;
                    (
                        ctx.settings.comments,
                        title(n.kind, &n.actor, ctx.lang),
                        Target::Post { post_id },
                        format!("post:{post_id}"),
                    )
                }
                NotificationKind::Mention => {
                    // In the public room (a message), or in a post or its comments.
                    let (target, group) = match (n.message_id, n.post_id) {
                        (Some(_), _) => (
                            Target::Conversation {
                                id: conversation::PUBLIC.to_string(),
                            },
                            conversation::PUBLIC.to_string(),
                        ),
                        (None, Some(post_id)) => {
                            (Target::Post { post_id }, format!("post:{post_id}"))
                        }
                        (None, None) => return None,
                    };
                    (
                        ctx.settings.mentions,
                        title(n.kind, &n.actor, ctx.lang),
                        target,
                        group,
                    )
                }
                // A reply to my message in the public room (the mentions switch covers both:
                // someone talking to me where everyone reads).
                NotificationKind::Reply => {
                    n.message_id?;
                    (
                        ctx.settings.mentions,
                        title(n.kind, &n.actor, ctx.lang),
                        Target::Conversation {
                            id: conversation::PUBLIC.to_string(),
                        },
                        conversation::PUBLIC.to_string(),
                    )
                }
                NotificationKind::Follow => (
                    ctx.settings.follows,
                    title(n.kind, &n.actor, ctx.lang),
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
                message_id: n.message_id,
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

    #[test]
    fn quiet_hours_windows_within_a_day_across_midnight_empty_and_invalid() {
        let w = |start, end| QuietHours { start, end };
        let day = w(9 * 60, 17 * 60);
        assert!(day.contains(9 * 60) && day.contains(16 * 60 + 59));
        assert!(!day.contains(17 * 60) && !day.contains(8 * 60 + 59));
        let night = w(22 * 60, 7 * 60);
        assert!(night.contains(22 * 60) && night.contains(0) && night.contains(6 * 60 + 59));
        assert!(!night.contains(7 * 60) && !night.contains(21 * 60 + 59));
        assert!((0..MINUTES_PER_DAY).all(|m| !w(300, 300).contains(m)));
        assert!(!w(MINUTES_PER_DAY, 10).is_valid());
        assert!((0..MINUTES_PER_DAY).all(|m| !w(MINUTES_PER_DAY, 10).contains(m)));
    }

    #[test]
    fn local_minute_is_a_minute_of_the_day() {
        let now = 1_780_000_000_000;
        let m = local_minute(now);
        assert!(m < MINUTES_PER_DAY);
        // One hour later is 60 minutes later on the clock (no DST change at that instant in
        // the zones tests run in), modulo the day.
        assert_eq!(local_minute(now + 3_600_000), (m + 60) % MINUTES_PER_DAY);
    }
    use papo_protocol::{DirectMessage, Notification};

    fn dm(from: &str, to: &str) -> EventBody {
        EventBody::DmMessage(DirectMessage {
            id: 1,
            from: from.into(),
            to: to.into(),
            text: "oi".into(),
            at: 0,
            reply_to: None,
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
            lang: Lang::En,
            on_screen,
            settings: s,
            local_minute: 12 * 60,
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
        // It names the message, so that deleting it withdraws the notification.
        assert_eq!(n.message_id, Some(1));
        let deleted = EventBody::MessageDeleted(papo_protocol::MessageRef { message_id: 1 });
        assert_eq!(withdrawn(&deleted), Some(1));
        assert_eq!(withdrawn(&dm("joao", "ana")), None);
        // A like names no message.
        let like = decide(&notif(NotificationKind::Like, "joao"), &ctx(&s, None)).unwrap();
        assert_eq!(like.message_id, None);
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

        // Quiet hours across midnight: silent from 22:00 up to (not at) 07:00, for every kind.
        let s = NotificationSettings {
            quiet_hours: Some(QuietHours {
                start: 22 * 60,
                end: 7 * 60,
            }),
            ..Default::default()
        };
        let at = |local_minute: u16| PolicyContext {
            local_minute,
            ..ctx(&s, None)
        };
        for m in [22 * 60, 23 * 60 + 59, 0, 6 * 60 + 59] {
            assert!(decide(&dm("bia", "ana"), &at(m)).is_none(), "minute {m}");
            assert!(decide(&notif(NotificationKind::Like, "bia"), &at(m)).is_none());
        }
        for m in [7 * 60, 12 * 60, 21 * 60 + 59] {
            assert!(decide(&dm("bia", "ana"), &at(m)).is_some(), "minute {m}");
        }

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
    fn a_mention_notifies_by_its_own_switch_and_opens_where_it_was_written() {
        let mut s = NotificationSettings::default();
        let in_post = decide(&notif(NotificationKind::Mention, "bia"), &ctx(&s, None)).unwrap();
        assert_eq!(in_post.title, "bia mentioned you");
        assert_eq!(in_post.target, Target::Post { post_id: 9 });
        let EventBody::Notification(mut n) = notif(NotificationKind::Mention, "bia") else {
            unreachable!()
        };
        (n.post_id, n.message_id) = (None, Some(4));
        let in_room = EventBody::Notification(n);
        let room = decide(&in_room, &ctx(&s, None)).unwrap();
        assert_eq!(
            room.target,
            Target::Conversation {
                id: "public".into()
            }
        );
        // Not while the public room is on screen, nor for my own mention, nor when switched off.
        assert!(decide(&in_room, &ctx(&s, Some("public"))).is_none());
        assert!(decide(&notif(NotificationKind::Mention, "ana"), &ctx(&s, None)).is_none());
        s.mentions = false;
        assert!(decide(&in_room, &ctx(&s, None)).is_none());
    }

    #[test]
    fn titles_are_written_in_the_apps_language() {
        let s = NotificationSettings::default();
        let pt = |kind| {
            let c = PolicyContext {
                lang: Lang::of_locale("pt_BR.UTF-8"),
                ..ctx(&s, None)
            };
            decide(&notif(kind, "bia"), &c).map(|n| n.title)
        };
        assert_eq!(
            pt(NotificationKind::Like).as_deref(),
            Some("bia curtiu sua publicação")
        );
        assert_eq!(
            pt(NotificationKind::Follow).as_deref(),
            Some("bia começou a seguir você")
        );
        assert_eq!(
            pt(NotificationKind::Mention).as_deref(),
            Some("bia mencionou você")
        );
        assert_eq!(Lang::of_locale("en-US"), Lang::En);
        assert_eq!(Lang::of_locale("C"), Lang::En);
        // Every kind has a title in both languages, each different from the other.
        for kind in [
            NotificationKind::Like,
            NotificationKind::Comment,
            NotificationKind::Follow,
            NotificationKind::Dm,
            NotificationKind::Mention,
            NotificationKind::Reply,
            NotificationKind::Share,
        ] {
            assert_ne!(title(kind, "x", Lang::En), title(kind, "x", Lang::PtBr));
        }
    }

    #[test]
    fn a_reply_notifies_by_the_mentions_switch_and_opens_the_public_room() {
        let mut s = NotificationSettings::default();
        let EventBody::Notification(mut n) = notif(NotificationKind::Reply, "bia") else {
            unreachable!()
        };
        (n.post_id, n.message_id) = (None, Some(4));
        let reply = EventBody::Notification(n);
        let os = decide(&reply, &ctx(&s, None)).unwrap();
        assert_eq!(os.title, "bia replied to you");
        assert_eq!(
            os.target,
            Target::Conversation {
                id: "public".into()
            }
        );
        assert!(decide(&reply, &ctx(&s, Some("public"))).is_none());
        s.mentions = false;
        assert!(decide(&reply, &ctx(&s, None)).is_none());
    }

    #[test]
    fn public_chat_and_feed_events_do_not_notify() {
        let s = NotificationSettings::default();
        let chat = EventBody::ChatMessage(papo_protocol::ChatMessage {
            id: 1,
            from: "bia".into(),
            text: "oi".into(),
            at: 0,
            reply_to: None,
        });
        assert!(decide(&chat, &ctx(&s, None)).is_none());
    }
}
