//! The types that cross the Tauri boundary, as the UI sees them.
//!
//! The wire and core types live in `papo-protocol` and `papo-client`, which do not depend on a
//! TypeScript generator. This module restates their *serialized shape* with `ts-rs` derives, and
//! the shell converts every value through these types (`serde_json` round trip, see
//! [`to_ui`]), so a shape that drifts fails loudly. `tests/bindings.rs` proves, for a sample
//! of every variant, that the core value and its UI twin serialize to the same JSON, and that
//! `ui/src/lib/bindings/papo.ts` is what these types generate.

#![allow(missing_docs)]

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use ts_rs::TS;

/// Converts a core value into its UI twin (same JSON).
pub fn to_ui<T: Serialize, U: DeserializeOwned>(value: &T) -> Result<U, serde_json::Error> {
    serde_json::from_value(serde_json::to_value(value)?)
}

// ------------------------------------------------------------------ protocol

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Public,
    Private,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Cursor {
    #[ts(type = "number")]
    pub public: u64,
    #[ts(type = "number")]
    pub private: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Reset,
    Live,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SyncStatus {
    pub state: SyncState,
    pub epoch: String,
    pub heads: Cursor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LogEvent {
    pub stream: Stream,
    #[ts(type = "number")]
    pub seq: u64,
    #[ts(type = "number")]
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cid: Option<String>,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    #[serde(rename = "chat.message")]
    ChatMessage(ChatMessage),
    #[serde(rename = "dm.message")]
    DmMessage(DirectMessage),
    #[serde(rename = "post.created")]
    PostCreated(Post),
    #[serde(rename = "post.edited")]
    PostEdited(PostEdited),
    #[serde(rename = "post.deleted")]
    PostDeleted(PostRef),
    #[serde(rename = "post.liked")]
    PostLiked(LikeChange),
    #[serde(rename = "post.unliked")]
    PostUnliked(LikeChange),
    #[serde(rename = "comment.created")]
    CommentCreated(CommentCreated),
    #[serde(rename = "user.followed")]
    UserFollowed(FollowChange),
    #[serde(rename = "user.unfollowed")]
    UserUnfollowed(FollowChange),
    #[serde(rename = "notification")]
    Notification(Notification),
    #[serde(rename = "read.updated")]
    ReadUpdated(ReadState),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ChatMessage {
    #[ts(type = "number")]
    pub id: i64,
    pub from: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct DirectMessage {
    #[ts(type = "number")]
    pub id: i64,
    pub from: String,
    pub to: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Post {
    #[ts(type = "number")]
    pub id: i64,
    pub author: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub edited_at: Option<i64>,
    #[ts(type = "number")]
    pub like_count: i64,
    #[ts(type = "number")]
    pub comment_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PostEdited {
    #[ts(type = "number")]
    pub post_id: i64,
    pub text: String,
    #[ts(type = "number")]
    pub edited_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PostRef {
    #[ts(type = "number")]
    pub post_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LikeChange {
    #[ts(type = "number")]
    pub post_id: i64,
    pub by: String,
    #[ts(type = "number")]
    pub like_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Comment {
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub post_id: i64,
    pub author: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CommentCreated {
    pub comment: Comment,
    #[ts(type = "number")]
    pub comment_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct FollowChange {
    pub follower: String,
    pub followee: String,
    #[ts(type = "number")]
    pub follower_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Like,
    Follow,
    Comment,
    Dm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Notification {
    #[ts(type = "number")]
    pub id: i64,
    pub kind: NotificationKind,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub post_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub comment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub message_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub excerpt: Option<String>,
    #[ts(type = "number")]
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ReadState {
    pub conversation: String,
    #[ts(type = "number")]
    pub last_read: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Presence {
    pub snapshot: bool,
    pub online: Vec<String>,
    pub offline: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Typing {
    pub conversation: String,
    pub username: String,
    pub typing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidText,
    UnknownEvent,
    NotFound,
    Forbidden,
    RateLimited,
    InvalidUsername,
    WeakPassword,
    UsernameTaken,
    InvalidCredentials,
    TokenExpired,
    TokenInvalid,
    IdConflict,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

// ------------------------------------------------------------------ client core

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    Connecting {
        attempt: u32,
    },
    Connected,
    Retrying {
        attempt: u32,
        #[ts(type = "number")]
        at: i64,
        #[ts(type = "number")]
        in_ms: u64,
        reason: String,
    },
    SignedOut {
        reason: String,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Pending,
    Sent,
    Wedged,
}

/// Why an outbox item is wedged (`papo_client::outbox::WedgeReason`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum WedgeReason {
    Refused {
        error: ErrorBody,
    },
    NoAnswer {
        #[ts(type = "number")]
        attempts: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct OutboxChange {
    pub client_id: String,
    pub state: OutboxState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub error: Option<ErrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub wedge: Option<WedgeReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Conversation {
        id: String,
    },
    Post {
        #[ts(type = "number")]
        post_id: i64,
    },
    User {
        username: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct OsNotification {
    pub title: String,
    pub body: String,
    pub target: Target,
    pub group: String,
}

/// Every core event, as forwarded to the UI on the `papo://event` channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum CoreEvent {
    Connection(ConnectionState),
    Log(LogEvent),
    Sync(SyncStatus),
    Presence(Presence),
    Typing(Typing),
    Outbox(OutboxChange),
    Notify(OsNotification),
}

/// What the shell sends the UI: a core event, or "you missed events, reload from the cache".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum UiEvent {
    Core(CoreEvent),
    /// The UI fell behind the core's broadcast; everything must be re-read from the cache.
    Resync,
    /// A notification was clicked (or the shell wants a screen shown).
    Open(Target),
    /// The settings changed outside the UI (the tray's do-not-disturb).
    Settings(Settings),
    /// Signed out outside the UI (the tray menu): show the sign-in screen.
    SignedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum LocalState {
    Pending,
    Sent,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, TS)]
pub struct PageKey {
    #[ts(type = "number")]
    pub at: i64,
    #[ts(type = "number")]
    pub sk: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MessageRow {
    #[ts(type = "number")]
    pub local_id: i64,
    #[ts(type = "number | null")]
    pub server_id: Option<i64>,
    pub client_id: Option<String>,
    pub conversation: String,
    pub sender: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
    pub state: LocalState,
    pub key: PageKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PostRow {
    #[ts(type = "number")]
    pub local_id: i64,
    #[ts(type = "number | null")]
    pub server_id: Option<i64>,
    pub client_id: Option<String>,
    pub author: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
    #[ts(type = "number | null")]
    pub edited_at: Option<i64>,
    #[ts(type = "number")]
    pub like_count: i64,
    #[ts(type = "number")]
    pub comment_count: i64,
    pub liked_by_me: bool,
    pub state: LocalState,
    pub key: PageKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CommentRow {
    #[ts(type = "number")]
    pub local_id: i64,
    #[ts(type = "number | null")]
    pub server_id: Option<i64>,
    #[ts(type = "number")]
    pub post_id: i64,
    pub author: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
    pub state: LocalState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ConversationRow {
    pub id: String,
    #[ts(type = "number")]
    pub last_at: i64,
    pub last_sender: String,
    pub last_text: String,
    #[ts(type = "number")]
    pub unread: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct UnreadCounts {
    #[ts(type = "number")]
    pub total: i64,
    #[ts(type = "Array<[string, number]>")]
    pub conversations: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    Message,
    Post,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SearchHit {
    pub kind: HitKind,
    #[ts(type = "number")]
    pub local_id: i64,
    #[ts(type = "number | null")]
    pub server_id: Option<i64>,
    pub conversation: Option<String>,
    pub author: String,
    pub text: String,
    #[ts(type = "number")]
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct NotificationSettings {
    pub do_not_disturb: bool,
    pub muted: Vec<String>,
    pub likes: bool,
    pub follows: bool,
    pub comments: bool,
    pub direct_messages: bool,
}

// ------------------------------------------------------------------ shell's own

/// The UI language: `system` follows the OS locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    System,
    En,
    PtBr,
}

/// Settings kept by the shell (not secret; a JSON file in the data directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Settings {
    pub notifications: NotificationSettings,
    pub language: Language,
    /// Time the notifications list was last opened (for its unread badge).
    #[ts(type = "number")]
    pub notifications_seen_at: i64,
    /// The server last signed in to (the `PAPO_SERVER` env var / `--server` flag win).
    #[serde(default)]
    pub server_url: Option<String>,
    /// Closing the window hides it to the tray (when there is a tray).
    #[serde(default = "yes")]
    pub close_to_tray: bool,
    /// Start with the window hidden in the tray (also `--minimized`, used by start-at-login).
    #[serde(default)]
    pub start_minimized: bool,
}

fn yes() -> bool {
    true
}

/// The desktop integration's state, shown in Settings and on the sign-in screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct OsStatus {
    /// Where the session is kept: `secret-service`, `keyutils`, `keychain`,
    /// `credential-manager`; `null` when there is no keyring (sign-in lasts for this run).
    pub keyring: Option<String>,
    pub keyring_message: Option<String>,
    /// Whether native notifications can be shown (a notification server answers).
    pub notifications: bool,
    pub notification_server: Option<String>,
    pub notifications_message: Option<String>,
    /// Whether the tray icon exists.
    pub tray: bool,
    /// Whether Papo starts at login.
    pub autostart: bool,
}

/// What the UI needs at start, in one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Boot {
    /// The signed-in user, or the owner of the cache when signed out / offline.
    pub me: Option<String>,
    /// Whether tokens are held (a connection is being made or is up).
    pub session: bool,
    pub server_url: String,
    pub connection: ConnectionState,
    pub settings: Settings,
    /// Events that arrived before the UI was ready, in order.
    pub queued: Vec<UiEvent>,
    /// The OS locale (BCP 47), for `Language::System`.
    pub os_locale: String,
    pub os: OsStatus,
}

/// An error crossing to the UI: a stable machine code and a readable message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct UiError {
    pub code: String,
    pub message: String,
}

/// An outbox item, reduced to what the UI shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct OutboxEntry {
    pub client_id: String,
    /// The request's event name (`chat:send`, `dm:send`, ...).
    pub event: String,
    /// Where it belongs (its send queue): `public`, `dm:<peer>`, `feed`, `follows`,
    /// `read:<conversation>`.
    pub conversation: String,
    /// The text it carries, if any (message, post, comment), for display.
    pub text: Option<String>,
    pub state: OutboxState,
    #[ts(type = "number")]
    pub attempts: i64,
    pub error: Option<ErrorBody>,
    /// Why it is wedged (when `state` is `wedged`).
    pub wedge: Option<WedgeReason>,
}

/// Where a composer sends what is typed in it (`/msg user text` always goes to `dm:user`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ComposeTarget {
    /// A chat: `public` or `dm:<peer>`.
    Conversation { id: String },
    /// A new post in the feed.
    Post,
    /// A comment on a post.
    Comment {
        #[ts(type = "number")]
        post_id: i64,
    },
}

/// What `compose` did with the text typed in a composer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Sent {
    pub client_id: String,
    /// The conversation the message went to (`dm:joao` for `/msg joao ...`); `None` for posts
    /// and comments.
    pub conversation: Option<String>,
}

/// The list of every exported type, in output order.
#[macro_export]
macro_rules! for_each_ui_type {
    ($m:ident) => {
        $m!(
            Stream,
            Cursor,
            SyncState,
            SyncStatus,
            LogEvent,
            EventBody,
            ChatMessage,
            DirectMessage,
            Post,
            PostEdited,
            PostRef,
            LikeChange,
            Comment,
            CommentCreated,
            FollowChange,
            NotificationKind,
            Notification,
            ReadState,
            Presence,
            Typing,
            ErrorCode,
            ErrorBody,
            ConnectionState,
            OutboxState,
            WedgeReason,
            OutboxChange,
            Target,
            OsNotification,
            CoreEvent,
            UiEvent,
            LocalState,
            PageKey,
            MessageRow,
            PostRow,
            CommentRow,
            ConversationRow,
            UnreadCounts,
            HitKind,
            SearchHit,
            NotificationSettings,
            Language,
            Settings,
            OsStatus,
            Boot,
            UiError,
            OutboxEntry,
            ComposeTarget,
            Sent
        )
    };
}

/// The TypeScript file `ui/src/lib/bindings/papo.ts`, generated from the types above.
pub fn typescript() -> String {
    let mut out = String::from(
        "// Generated from src-tauri/ui_types.rs by `cargo test --test bindings` \
         (PAPO_BLESS=1 rewrites it). Do not edit.\n",
    );
    macro_rules! emit {
        ($($t:ident),* $(,)?) => {
            $(
                out.push('\n');
                out.push_str("export ");
                out.push_str(&<$t as TS>::decl());
                out.push('\n');
            )*
        };
    }
    for_each_ui_type!(emit);
    out
}
