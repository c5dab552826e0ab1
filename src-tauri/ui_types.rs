//! The types that cross the Tauri boundary.
//!
//! The protocol and core types are the real ones (`papo-protocol` and `papo-client` derive
//! `ts_rs::TS` behind their `ts` feature) and are passed to the UI as they are; this module
//! adds only the shell's own types (settings, OS status, boot, the UI event envelope), and
//! [`typescript`] writes `ui/src/lib/bindings/papo.ts` from all of them. `tests/bindings.rs`
//! fails when that file is stale.

#![allow(missing_docs)]

pub use papo_client::admin::{AdminAction, AdminState};
pub use papo_client::cache::{
    AroundPage, CommentRow, ConversationPage, ConversationRow, FollowList, HitKind, LocalState,
    MessageRow, PageKey, PostRow, Profile, Quote, SearchHit, SharedPost, UnreadCounts, UnreadStart,
};
pub use papo_client::changes::ChangeSet;
pub use papo_client::compose::{ComposeTarget, Sent};
pub use papo_client::diag::{Diagnostics, TransportKind, WireEvent};
pub use papo_client::outbox::{OutboxChange, OutboxState, WedgeReason};
pub use papo_client::policy::{NotificationSettings, OsNotification, QuietHours, Target};
pub use papo_client::{ClientErrorCode, ConnectionState, CoreErrorCode, CoreEvent};
pub use papo_protocol::{
    AdminStats, ChatMessage, Comment, CommentCreated, CommentRemoved, Cursor, DirectMessage,
    ErrorBody, ErrorCode, EventBody, FollowChange, LikeChange, LogEvent, MessageEdited, MessageRef,
    NodeStats, Notification, NotificationKind, Post, PostEdited, PostRef, Presence, ReadState,
    ReplyQuote, ShareChange, Stream, SyncState, SyncStatus, Typing,
};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

// ------------------------------------------------------------------ shell's own

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
    /// The account held the admin role at its last connection (shows the Admin page).
    pub admin: bool,
}

/// An error crossing to the UI: a stable machine code and a readable message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct UiError {
    pub code: CoreErrorCode,
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
            ReplyQuote,
            Post,
            PostEdited,
            PostRef,
            MessageEdited,
            MessageRef,
            LikeChange,
            ShareChange,
            Comment,
            CommentCreated,
            CommentRemoved,
            FollowChange,
            NotificationKind,
            Notification,
            ReadState,
            Presence,
            Typing,
            ErrorCode,
            ErrorBody,
            ConnectionState,
            AdminStats,
            NodeStats,
            AdminState,
            AdminAction,
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
            Quote,
            AroundPage,
            PostRow,
            SharedPost,
            CommentRow,
            ConversationRow,
            ConversationPage,
            Profile,
            FollowList,
            UnreadCounts,
            UnreadStart,
            HitKind,
            SearchHit,
            ChangeSet,
            NotificationSettings,
            QuietHours,
            Language,
            Settings,
            OsStatus,
            Boot,
            ClientErrorCode,
            CoreErrorCode,
            UiError,
            OutboxEntry,
            ComposeTarget,
            Sent,
            TransportKind,
            WireEvent,
            Diagnostics
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
