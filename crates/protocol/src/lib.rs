//! The Papo wire contract.
//!
//! Every Socket.IO event and HTTP payload exchanged between the Papo server and its clients is a
//! serde type in this crate. `docs/protocol.md` describes the same contract in prose with JSON
//! examples; when the two disagree, this crate wins and the doc is fixed.
//!
//! Shape of the protocol, in short:
//! - Accounts live behind plain HTTP JSON endpoints ([`http`]).
//! - The Socket.IO CONNECT `auth` payload is [`ConnectAuth`]: an access token and the resume
//!   cursor (one sequence number per stream, plus the server epoch it belongs to).
//! - Durable events reach a client in `log` packets ([`LogBatch`]), each event numbered in its
//!   stream ([`Stream::Public`] shared by everyone, [`Stream::Private`] per user). A client that
//!   reconnects with its cursor gets everything after it, in order, then live events.
//! - Every client request carries a client id ([`uuid::Uuid`], v7 recommended) and is answered
//!   with a [`Reply`] — as the Socket.IO ack if the client asked for one, otherwise as a `reply`
//!   event. The server deduplicates on the client id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of this contract; bumped on incompatible changes. Reported by `GET /healthz`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest chat message, DM, post or comment text, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

/// Unix time in milliseconds.
pub type Millis = i64;

/// Socket.IO event names. None of them collides with names reserved by Socket.IO or by
/// rust_socketio (`message`, `error`, `open`, `close`, `connect`, ...).
pub mod events {
    // client -> server requests (each answered with a `Reply`)
    pub const CHAT_SEND: &str = "chat:send";
    pub const DM_SEND: &str = "dm:send";
    pub const POST_CREATE: &str = "post:create";
    pub const POST_EDIT: &str = "post:edit";
    pub const POST_DELETE: &str = "post:delete";
    pub const MESSAGE_EDIT: &str = "message:edit";
    pub const MESSAGE_DELETE: &str = "message:delete";
    pub const POST_LIKE: &str = "post:like";
    pub const POST_UNLIKE: &str = "post:unlike";
    pub const POST_SHARE: &str = "post:share";
    pub const POST_UNSHARE: &str = "post:unshare";
    pub const COMMENT_CREATE: &str = "comment:create";
    pub const USER_FOLLOW: &str = "user:follow";
    pub const USER_UNFOLLOW: &str = "user:unfollow";
    pub const READ_MARK: &str = "read:mark";
    /// Ephemeral; not logged, not deduplicated.
    pub const TYPING_SET: &str = "typing:set";
    /// Ephemeral: which users (and whether the public room's typing) this connection shows.
    pub const PRESENCE_WATCH: &str = "presence:watch";
    /// Application-level liveness check; answered at once.
    pub const SYS_PING: &str = "sys:ping";

    // client -> server requests on the `/admin` namespace only (each answered with a `Reply`;
    // sent on `/` they are `unknown_event`)
    pub const ADMIN_REMOVE_POST: &str = "admin:remove_post";
    pub const ADMIN_REMOVE_COMMENT: &str = "admin:remove_comment";
    pub const ADMIN_SUSPEND: &str = "admin:suspend";
    pub const ADMIN_UNSUSPEND: &str = "admin:unsuspend";

    // server -> client
    pub const LOG: &str = "log";
    pub const SYNC: &str = "sync";
    pub const REPLY: &str = "reply";
    pub const PRESENCE: &str = "presence";
    pub const TYPING: &str = "typing";
    /// On `/admin`, every second: [`crate::AdminStats`].
    pub const ADMIN_STATS: &str = "admin:stats";

    /// Every request event name an admin may send on the `/admin` namespace.
    pub const ADMIN_REQUESTS: &[&str] = &[
        ADMIN_REMOVE_POST,
        ADMIN_REMOVE_COMMENT,
        ADMIN_SUSPEND,
        ADMIN_UNSUSPEND,
    ];

    /// Every request event name a client may send.
    pub const REQUESTS: &[&str] = &[
        CHAT_SEND,
        DM_SEND,
        POST_CREATE,
        POST_EDIT,
        MESSAGE_EDIT,
        MESSAGE_DELETE,
        POST_DELETE,
        POST_LIKE,
        POST_UNLIKE,
        POST_SHARE,
        POST_UNSHARE,
        COMMENT_CREATE,
        USER_FOLLOW,
        USER_UNFOLLOW,
        READ_MARK,
        TYPING_SET,
        PRESENCE_WATCH,
        SYS_PING,
    ];
}

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

/// The Socket.IO CONNECT `auth` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectAuth {
    /// Access token from `/api/login`, `/api/register` or `/api/refresh`.
    pub token: String,
    /// Last sequence numbers the client has durably stored. Absent on a first connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// The server epoch the cursor belongs to (from a previous `sync` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// A resume position: the last sequence number received in each stream (0 = nothing yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Cursor {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub public: u64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub private: u64,
}

impl Cursor {
    /// The position in one stream.
    pub fn get(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Public => self.public,
            Stream::Private => self.private,
        }
    }
    /// Moves the position in one stream.
    pub fn set(&mut self, stream: Stream, seq: u64) {
        match stream {
            Stream::Public => self.public = seq,
            Stream::Private => self.private = seq,
        }
    }
}

/// Reasons a CONNECT is refused; sent as the `connect_error` message.
pub mod connect_errors {
    /// The access token has expired: refresh it and connect again.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The token is malformed, forged, revoked or for a deleted user: sign in again.
    pub const TOKEN_INVALID: &str = "token_invalid";
    /// The `auth` payload is missing or not a `ConnectAuth`.
    pub const BAD_AUTH: &str = "bad_auth";
    /// The token's account was deleted: sign out and erase everything kept of it.
    pub const ACCOUNT_DELETED: &str = "account_deleted";
    /// The token's account is suspended by a moderator: its sessions were ended; signing in
    /// is refused until the suspension is lifted.
    pub const ACCOUNT_SUSPENDED: &str = "account_suspended";
    /// `/admin` only: the account is not an admin.
    pub const FORBIDDEN: &str = "forbidden";
}

/// The namespace of the admin connection (the rest of the protocol is on `/`).
pub const ADMIN_NAMESPACE: &str = "/admin";

/// The two kinds of event streams a user reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Shared by everyone: public chat and the feed.
    Public,
    /// The user's own: DMs, notifications, read state.
    Private,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Public => "public",
            Stream::Private => "private",
        }
    }
}

/// `sync` event: tells where the replay stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncStatus {
    pub state: SyncState,
    /// The server's epoch: identifies the event log. Store it with the cursor.
    pub epoch: String,
    /// The heads of both streams at the time of this event.
    pub heads: Cursor,
    /// Whether the account holds the admin role (may open the `/admin` namespace), as of this
    /// connection. Absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[cfg_attr(feature = "ts", ts(as = "Option<bool>", optional))]
    pub admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    /// The cursor sent cannot be served (other epoch, or ahead of the log): forget everything
    /// derived from the server and start again from sequence 0; the replay follows.
    Reset,
    /// Replay reached the heads: from now on events are live.
    Live,
}

/// `log` event: durable events, in stream order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    pub events: Vec<LogEvent>,
}

/// One durable event, numbered in its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LogEvent {
    pub stream: Stream,
    /// 1, 2, 3... without gaps within a stream.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: u64,
    /// Server time the event was written.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    /// Client id of the request that caused it, when the reader is the one who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub cid: Option<Uuid>,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened. Serialized as `"type": "...", "data": {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    #[serde(rename = "message.edited")]
    MessageEdited(MessageEdited),
    #[serde(rename = "message.deleted")]
    MessageDeleted(MessageRef),
    #[serde(rename = "post.liked")]
    PostLiked(LikeChange),
    #[serde(rename = "post.unliked")]
    PostUnliked(LikeChange),
    #[serde(rename = "post.shared")]
    PostShared(ShareChange),
    #[serde(rename = "post.unshared")]
    PostUnshared(ShareChange),
    #[serde(rename = "comment.created")]
    CommentCreated(CommentCreated),
    /// A comment removed by a moderator.
    #[serde(rename = "comment.removed")]
    CommentRemoved(CommentRemoved),
    #[serde(rename = "user.followed")]
    UserFollowed(FollowChange),
    #[serde(rename = "user.unfollowed")]
    UserUnfollowed(FollowChange),
    #[serde(rename = "notification")]
    Notification(Notification),
    #[serde(rename = "read.updated")]
    ReadUpdated(ReadState),
    /// An event this build does not understand (a type, or a value such as a notification
    /// kind, added to the protocol later), kept only for its place in its stream so that a
    /// client moves past it (section 7: clients ignore what they do not know). Never sent by
    /// the server and never serialized; a client makes it when decoding a `log` packet (the
    /// Rust client core's `decode_log`).
    #[serde(skip)]
    #[cfg_attr(feature = "ts", ts(skip))]
    Unknown,
}

/// A public chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ChatMessage {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub id: i64,
    pub from: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    /// The message this one replies to, when it is a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub reply_to: Option<ReplyQuote>,
}

/// The message a reply answers, as it was when the reply was sent: always an earlier message
/// of the same conversation, so a reader that holds the reply was sent the original (and any
/// later `message.edited`/`message.deleted` of it) on the same stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReplyQuote {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub message_id: i64,
    /// The original's sender.
    pub from: String,
    /// The original's text when the reply was sent, cut by [`excerpt`].
    pub excerpt: String,
}

/// A private message, as seen by both the sender and the recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DirectMessage {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub id: i64,
    pub from: String,
    pub to: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    /// The message this one replies to, when it is a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub reply_to: Option<ReplyQuote>,
}

impl DirectMessage {
    /// The conversation this message belongs to, from `me`'s point of view.
    pub fn conversation_for(&self, me: &str) -> String {
        let peer = if self.from == me {
            &self.to
        } else {
            &self.from
        };
        conversation::dm(peer)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Post {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub id: i64,
    pub author: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional, type = "number"))]
    pub edited_at: Option<Millis>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub like_count: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub comment_count: i64,
    /// Live shares of this post.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub share_count: i64,
    /// When this post shares another: the shared post's id — always an earlier post of the
    /// public stream, so a reader holds it (or its deletion). `text` is then the sharer's own
    /// comment, possibly empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional, type = "number"))]
    pub share_of: Option<i64>,
}

/// A share or un-share, with the shared post's share counter after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ShareChange {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
    pub by: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub share_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PostEdited {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub edited_at: Millis,
}

/// A chat message or DM its sender edited (sent where the message was: the public stream, or
/// both users' streams).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MessageEdited {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub message_id: i64,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub edited_at: Millis,
}

/// A chat message or DM its sender deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MessageRef {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub message_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PostRef {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
}

/// A like or unlike, with the post's like counter after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LikeChange {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
    pub by: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub like_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Comment {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
    pub author: String,
    pub text: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CommentCreated {
    pub comment: Comment,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub comment_count: i64,
}

/// A comment that was removed, with its post's comment counter after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CommentRemoved {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub comment_id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub post_id: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub comment_count: i64,
}

/// A follow or unfollow, with the followee's follower counter after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FollowChange {
    pub follower: String,
    pub followee: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub follower_count: i64,
}

/// Something another user did that concerns me. Only in the recipient's private stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Notification {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub id: i64,
    pub kind: NotificationKind,
    /// Who did it.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional, type = "number"))]
    pub post_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional, type = "number"))]
    pub comment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional, type = "number"))]
    pub message_id: Option<i64>,
    /// A short excerpt: the DM or comment text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub excerpt: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Like,
    Follow,
    Comment,
    Dm,
    /// Someone wrote `@me` in a public message, a post or a comment.
    Mention,
    /// Someone replied in the public room to a message of mine.
    Reply,
    /// Someone shared a post of mine.
    Share,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Like => "like",
            NotificationKind::Follow => "follow",
            NotificationKind::Comment => "comment",
            NotificationKind::Dm => "dm",
            NotificationKind::Mention => "mention",
            NotificationKind::Reply => "reply",
            NotificationKind::Share => "share",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "like" => NotificationKind::Like,
            "follow" => NotificationKind::Follow,
            "comment" => NotificationKind::Comment,
            "dm" => NotificationKind::Dm,
            "mention" => NotificationKind::Mention,
            "reply" => NotificationKind::Reply,
            "share" => NotificationKind::Share,
            _ => return None,
        })
    }
}

/// How far a user has read a conversation; synced to all of the user's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReadState {
    pub conversation: String,
    /// Id of the last message read (chat message id or DM id).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub last_read: i64,
}

/// Conversation identifiers: `"public"` or `"dm:<username>"` (the peer, from the reader's side).
pub mod conversation {
    pub const PUBLIC: &str = "public";
    pub fn dm(peer: &str) -> String {
        format!("dm:{peer}")
    }
    /// The peer of a DM conversation id, if it is one.
    pub fn dm_peer(conversation: &str) -> Option<&str> {
        conversation.strip_prefix("dm:").filter(|p| !p.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// Ephemeral server -> client events
// ---------------------------------------------------------------------------------------------

/// `presence` event: who came online / went offline (a user is online while any device is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Presence {
    /// True for the full list sent right after connecting; false for a change.
    pub snapshot: bool,
    pub online: Vec<String>,
    pub offline: Vec<String>,
}

/// `typing` event, delivered to the readers of the conversation except the typist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Typing {
    /// From the reader's side: `"public"` or `"dm:<typist>"`.
    pub conversation: String,
    pub username: String,
    pub typing: bool,
}

// ---------------------------------------------------------------------------------------------
// Requests (client -> server)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSend {
    pub id: Uuid,
    pub text: String,
    /// The id of the public message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmSend {
    pub id: Uuid,
    pub to: String,
    pub text: String,
    /// The id of the DM between the same two users this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostCreate {
    pub id: Uuid,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostEdit {
    pub id: Uuid,
    pub post_id: i64,
    pub text: String,
}

/// `message:edit`: a new text for a chat message or DM of mine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdit {
    pub id: Uuid,
    pub message_id: i64,
    pub text: String,
}

/// `message:delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDelete {
    pub id: Uuid,
    pub message_id: i64,
}

/// `post:share`: shares a post (once per user; sharing a share shares its original), with an
/// optional comment of my own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostShare {
    pub id: Uuid,
    pub post_id: i64,
    #[serde(default)]
    pub text: String,
}

/// Used by `post:delete`, `post:like`, `post:unlike`, `post:unshare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostAction {
    pub id: Uuid,
    pub post_id: i64,
}

/// `admin:remove_comment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAction {
    pub id: Uuid,
    pub comment_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentCreate {
    pub id: Uuid,
    pub post_id: i64,
    pub text: String,
}

/// Used by `user:follow` and `user:unfollow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAction {
    pub id: Uuid,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    pub id: Uuid,
    pub conversation: String,
    pub last_read: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingSet {
    pub conversation: String,
    pub typing: bool,
}

/// Most users one connection may watch with `presence:watch`.
pub const MAX_WATCH: usize = 200;
/// Most followed users whose presence a connection receives (the most recently followed).
pub const MAX_WATCH_FOLLOWED: usize = 1000;
/// Most DM peers whose presence a connection receives (the most recent conversations).
pub const MAX_WATCH_PEERS: usize = 200;

/// `presence:watch` request: the users this connection shows on screen besides the ones it
/// follows and its DM peers (whose presence it always receives), and whether it shows the
/// public room (and so wants its `typing`). Each request replaces the previous one; a new
/// connection starts with none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceWatch {
    /// At most [`MAX_WATCH`] usernames.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub public_typing: bool,
}

/// A request with its event name, as the client core's outbox stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "payload")]
pub enum Request {
    #[serde(rename = "chat:send")]
    ChatSend(ChatSend),
    #[serde(rename = "dm:send")]
    DmSend(DmSend),
    #[serde(rename = "post:create")]
    PostCreate(PostCreate),
    #[serde(rename = "post:edit")]
    PostEdit(PostEdit),
    #[serde(rename = "post:delete")]
    PostDelete(PostAction),
    #[serde(rename = "message:edit")]
    MessageEdit(MessageEdit),
    #[serde(rename = "message:delete")]
    MessageDelete(MessageDelete),
    #[serde(rename = "post:like")]
    PostLike(PostAction),
    #[serde(rename = "post:unlike")]
    PostUnlike(PostAction),
    #[serde(rename = "post:share")]
    PostShare(PostShare),
    #[serde(rename = "post:unshare")]
    PostUnshare(PostAction),
    #[serde(rename = "comment:create")]
    CommentCreate(CommentCreate),
    #[serde(rename = "user:follow")]
    UserFollow(UserAction),
    #[serde(rename = "user:unfollow")]
    UserUnfollow(UserAction),
    #[serde(rename = "read:mark")]
    ReadMark(ReadMark),
    /// `/admin` only.
    #[serde(rename = "admin:remove_post")]
    AdminRemovePost(PostAction),
    /// `/admin` only.
    #[serde(rename = "admin:remove_comment")]
    AdminRemoveComment(CommentAction),
    /// `/admin` only.
    #[serde(rename = "admin:suspend")]
    AdminSuspend(UserAction),
    /// `/admin` only.
    #[serde(rename = "admin:unsuspend")]
    AdminUnsuspend(UserAction),
}

impl Request {
    /// The Socket.IO event name to send it under.
    pub fn event_name(&self) -> &'static str {
        match self {
            Request::ChatSend(_) => events::CHAT_SEND,
            Request::DmSend(_) => events::DM_SEND,
            Request::PostCreate(_) => events::POST_CREATE,
            Request::PostEdit(_) => events::POST_EDIT,
            Request::PostDelete(_) => events::POST_DELETE,
            Request::MessageEdit(_) => events::MESSAGE_EDIT,
            Request::MessageDelete(_) => events::MESSAGE_DELETE,
            Request::PostLike(_) => events::POST_LIKE,
            Request::PostUnlike(_) => events::POST_UNLIKE,
            Request::PostShare(_) => events::POST_SHARE,
            Request::PostUnshare(_) => events::POST_UNSHARE,
            Request::CommentCreate(_) => events::COMMENT_CREATE,
            Request::UserFollow(_) => events::USER_FOLLOW,
            Request::UserUnfollow(_) => events::USER_UNFOLLOW,
            Request::ReadMark(_) => events::READ_MARK,
            Request::AdminRemovePost(_) => events::ADMIN_REMOVE_POST,
            Request::AdminRemoveComment(_) => events::ADMIN_REMOVE_COMMENT,
            Request::AdminSuspend(_) => events::ADMIN_SUSPEND,
            Request::AdminUnsuspend(_) => events::ADMIN_UNSUSPEND,
        }
    }

    /// The client id the server deduplicates on.
    pub fn client_id(&self) -> Uuid {
        match self {
            Request::ChatSend(r) => r.id,
            Request::DmSend(r) => r.id,
            Request::PostCreate(r) => r.id,
            Request::PostEdit(r) => r.id,
            Request::MessageEdit(r) => r.id,
            Request::MessageDelete(r) => r.id,
            Request::PostDelete(r)
            | Request::PostLike(r)
            | Request::PostUnlike(r)
            | Request::PostUnshare(r)
            | Request::AdminRemovePost(r) => r.id,
            Request::AdminRemoveComment(r) => r.id,
            Request::AdminSuspend(r) | Request::AdminUnsuspend(r) => r.id,
            Request::PostShare(r) => r.id,
            Request::CommentCreate(r) => r.id,
            Request::UserFollow(r) | Request::UserUnfollow(r) => r.id,
            Request::ReadMark(r) => r.id,
        }
    }

    /// Whether it belongs to the `/admin` namespace.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Request::AdminRemovePost(_)
                | Request::AdminRemoveComment(_)
                | Request::AdminSuspend(_)
                | Request::AdminUnsuspend(_)
        )
    }

    /// The payload alone, as sent on the wire.
    pub fn payload(&self) -> serde_json::Value {
        let v = serde_json::to_value(self).expect("requests always serialize");
        v.get("payload").cloned().unwrap_or(serde_json::Value::Null)
    }
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

/// `admin:stats`: what the server is doing, pushed every second to every `/admin` socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AdminStats {
    /// Server time of this snapshot.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    /// Every node serving the database, heard from within the last few seconds (one with the
    /// SQLite default), sorted by id.
    pub nodes: Vec<NodeStats>,
    /// Users with at least one connection on any node.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub users_online: u64,
    /// Size of the database on disk, in bytes (SQLite: the main file; Postgres: the database).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub database_bytes: u64,
}

/// One server process's share of [`AdminStats`], over the last second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NodeStats {
    /// The node's random id (new at every start).
    pub node: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub started_at: Millis,
    /// When the node measured these.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at: Millis,
    /// Open Socket.IO connections on `/` (devices).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub connections: u64,
    /// Users with at least one connection on this node.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub users_online: u64,
    /// Log events this node wrote, per second.
    pub events_per_sec: f64,
    /// Requests this node received, per second, by event name (`unknown` for names outside
    /// the protocol); names without any are left out.
    pub requests_per_sec: std::collections::BTreeMap<String, f64>,
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// The answer to every request: the Socket.IO ack, or a `reply` event when no ack was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's client id, echoed (absent only when the request was too malformed to read
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The request's `id` exactly as sent when it is not a UUID (a string of at most 128 bytes,
    /// or a number), so such a request's error can still be matched. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_id: Option<serde_json::Value>,
    /// The request's event name, echoed.
    pub event: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ReplyResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// What a successful request produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplyResult {
    /// The event the request wrote into the sender's view (public stream, or the sender's
    /// private stream for DMs and read marks). Absent when the request changed nothing (a like
    /// of a post already liked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<LogEvent>,
    /// Server time, for `sys:ping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
    /// For `sys:ping`: the heads of the caller's two streams when the ping was answered. A
    /// client whose stored cursor stays behind these without receiving `log` events is stalled
    /// and should reconnect with its cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<Cursor>,
}

/// An error with a stable machine code and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Stable error codes (snake_case on the wire). Clients branch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not JSON of the expected shape.
    BadRequest,
    /// A text is empty or longer than [`MAX_TEXT_CHARS`].
    InvalidText,
    /// The event name is not part of the protocol.
    UnknownEvent,
    /// The user, post or conversation does not exist.
    NotFound,
    /// The thing exists but is not yours to change.
    Forbidden,
    /// Too many requests on this connection; slow down.
    RateLimited,
    /// Username not of the allowed form.
    InvalidUsername,
    /// Password too short or too long.
    WeakPassword,
    /// Registering a username that exists.
    UsernameTaken,
    /// Wrong username or password.
    InvalidCredentials,
    /// Token expired (refresh it).
    TokenExpired,
    /// Token malformed, forged or revoked (sign in again).
    TokenInvalid,
    /// The token's account was deleted (from another device): erase what is kept of it.
    AccountDeleted,
    /// The account is suspended by a moderator: signing in is refused until it is lifted.
    AccountSuspended,
    /// The same client id was already used for a different request.
    IdConflict,
    /// Something broke on the server; the request had no effect and may be retried.
    Internal,
    /// The server is too busy to take the request now (e.g. its password-hashing queue is
    /// full); nothing was done, retry after the `Retry-After` delay.
    Unavailable,
    /// The HTTP method is not allowed on that path.
    MethodNotAllowed,
}

impl ErrorCode {
    /// Whether retrying the same request later can succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable
        )
    }
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl Reply {
    pub fn ok(id: Option<Uuid>, event: &str, result: ReplyResult) -> Self {
        Reply {
            id,
            raw_id: None,
            event: event.to_string(),
            ok: true,
            result: Some(result),
            error: None,
        }
    }
    pub fn err(id: Option<Uuid>, event: &str, error: ErrorBody) -> Self {
        Reply {
            id,
            raw_id: None,
            event: event.to_string(),
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Bodies of the account endpoints (`/api/register`, `/api/login`, `/api/refresh`,
/// `/api/logout`) and `/healthz`.
pub mod http {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Credentials {
        pub username: String,
        pub password: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RefreshRequest {
        pub refresh_token: String,
    }

    /// Answer of register, login and refresh.
    #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Session {
        pub username: String,
        pub access_token: String,
        /// Seconds until the access token expires.
        pub expires_in: u64,
        pub refresh_token: String,
    }

    impl std::fmt::Debug for Session {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Session")
                .field("username", &self.username)
                .field("access_token", &"<redacted>")
                .field("expires_in", &self.expires_in)
                .field("refresh_token", &"<redacted>")
                .finish()
        }
    }

    /// Error body of every non-2xx answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ErrorResponse {
        pub error: ErrorBody,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Health {
        pub ok: bool,
        pub epoch: String,
        pub protocol: u32,
    }
}

/// Username rule shared by server and clients: 3–20 of `a-z 0-9 _`.
pub fn valid_username(name: &str) -> bool {
    (3..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Longest excerpt of a DM or comment carried in a notification, in characters.
pub const EXCERPT_CHARS: usize = 140;

/// The start of a text, at most [`EXCERPT_CHARS`] characters, with `…` when it was cut. Used for
/// notification excerpts on the server and notification bodies on clients.
pub fn excerpt(text: &str) -> String {
    if text.chars().count() <= EXCERPT_CHARS {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(EXCERPT_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// Most distinct users one text can mention (later ones are not notified).
pub const MAX_MENTIONS: usize = 20;

/// The usernames a text mentions, in order of first appearance, each once, at most
/// [`MAX_MENTIONS`]: `@` at the start or after a character that cannot be in a username,
/// then 3–20 of `a-z`, `0-9`, `_`, not followed by another such character (so `a@bc.de`,
/// `@ab` and `@toolongnamexxxxxxxxxx` mention nobody; `(@ana)` and `@ana,` do).
pub fn mentions(text: &str) -> Vec<String> {
    let name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut found: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !prev.is_some_and(name_char) {
            let rest = &text[i + 1..];
            let len = rest.chars().take_while(|&c| name_char(c)).count();
            if (3..=20).contains(&len) {
                let name = &rest[..len];
                if !found.iter().any(|f| f == name) {
                    found.push(name.to_string());
                    if found.len() == MAX_MENTIONS {
                        break;
                    }
                }
            }
        }
        prev = Some(c);
    }
    found
}

/// Text rule shared by server and clients: not blank, at most [`MAX_TEXT_CHARS`] characters.
pub fn valid_text(text: &str) -> bool {
    !text.trim().is_empty() && text.chars().count() <= MAX_TEXT_CHARS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_event_wire_shape_is_flat_type_and_data() {
        let ev = LogEvent {
            stream: Stream::Public,
            seq: 7,
            at: 1,
            cid: None,
            body: EventBody::ChatMessage(ChatMessage {
                id: 3,
                from: "ana".into(),
                text: "oi".into(),
                at: 1,
                reply_to: None,
            }),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "chat.message");
        assert_eq!(v["data"]["from"], "ana");
        assert_eq!(v["stream"], "public");
        let back: LogEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn request_payload_and_event_name() {
        let id = Uuid::now_v7();
        let r = Request::DmSend(DmSend {
            id,
            to: "joao".into(),
            text: "oi".into(),
            reply_to: None,
        });
        assert_eq!(r.event_name(), "dm:send");
        assert_eq!(r.client_id(), id);
        assert_eq!(r.payload()["to"], "joao");
        let stored = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&stored).unwrap(), r);
    }

    #[test]
    fn no_reserved_event_names() {
        let reserved = [
            "message",
            "error",
            "open",
            "close",
            "connect",
            "connect_error",
            "disconnect",
            "disconnecting",
        ];
        let all = events::REQUESTS.iter().chain(
            [
                events::LOG,
                events::SYNC,
                events::REPLY,
                events::PRESENCE,
                events::TYPING,
            ]
            .iter(),
        );
        for name in all {
            assert!(
                !reserved.contains(&name.to_ascii_lowercase().as_str()),
                "{name}"
            );
        }
    }

    #[test]
    fn usernames_and_texts() {
        assert!(valid_username("joao_1"));
        assert!(!valid_username("Joao"));
        assert!(!valid_username("jo"));
        assert!(!valid_username("a b c"));
        assert!(valid_text("oi"));
        assert!(!valid_text("   "));
        assert!(!valid_text(&"x".repeat(MAX_TEXT_CHARS + 1)));
        assert!(valid_text(&"é".repeat(MAX_TEXT_CHARS)));
        assert_eq!(excerpt("oi"), "oi");
        let long = excerpt(&"á".repeat(500));
        assert_eq!(long.chars().count(), EXCERPT_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn error_codes_are_snake_case() {
        let v = serde_json::to_value(ErrorCode::RateLimited).unwrap();
        assert_eq!(v, "rate_limited");
        let v = serde_json::to_value(ErrorCode::MethodNotAllowed).unwrap();
        assert_eq!(v, "method_not_allowed");
        assert!(ErrorCode::Unavailable.is_transient());
        assert!(!ErrorCode::MethodNotAllowed.is_transient());
    }

    #[test]
    fn dm_conversation_is_from_the_readers_side() {
        let m = DirectMessage {
            id: 1,
            from: "ana".into(),
            to: "joao".into(),
            text: "oi".into(),
            at: 0,
            reply_to: None,
        };
        assert_eq!(m.conversation_for("ana"), "dm:joao");
        assert_eq!(m.conversation_for("joao"), "dm:ana");
        assert_eq!(conversation::dm_peer("dm:joao"), Some("joao"));
        assert_eq!(conversation::dm_peer("public"), None);
    }
}

#[cfg(test)]
mod mention_tests {
    use super::mentions;

    #[test]
    fn mentions_follow_the_username_rule_and_are_distinct() {
        assert_eq!(
            mentions("oi @ana e @joao_2, (@bia) @ana"),
            ["ana", "joao_2", "bia"]
        );
        assert!(mentions("mail a@bcd.de, @ab, @Ana, @toolongnamexxxxxxxxxx").is_empty());
        assert_eq!(mentions("@ana."), ["ana"]);
        assert_eq!(mentions("ç@ana"), ["ana"]); // not a username character before it
        let many: String = (0..30).map(|i| format!("@user{i:02} ")).collect();
        assert_eq!(mentions(&many).len(), super::MAX_MENTIONS);
    }
}
