// Generated from src-tauri/ui_types.rs by `cargo test --test bindings` (PAPO_BLESS=1 rewrites it). Do not edit.

export type Stream = "public" | "private";

export type Cursor = { public: number, private: number, };

export type SyncState = "reset" | "live";

export type SyncStatus = { state: SyncState, 
/**
 * The server's epoch: identifies the event log. Store it with the cursor.
 */
epoch: string, 
/**
 * The heads of both streams at the time of this event.
 */
heads: Cursor, 
/**
 * Whether the account holds the admin role (may open the `/admin` namespace), as of this
 * connection. Absent means false.
 */
admin?: boolean, };

export type LogEvent = { stream: Stream, 
/**
 * 1, 2, 3... without gaps within a stream.
 */
seq: number, 
/**
 * Server time the event was written.
 */
at: number, 
/**
 * Client id of the request that caused it, when the reader is the one who sent it.
 */
cid?: string, } & ({ "type": "chat.message", "data": ChatMessage } | { "type": "dm.message", "data": DirectMessage } | { "type": "post.created", "data": Post } | { "type": "post.edited", "data": PostEdited } | { "type": "post.deleted", "data": PostRef } | { "type": "message.edited", "data": MessageEdited } | { "type": "message.deleted", "data": MessageRef } | { "type": "post.liked", "data": LikeChange } | { "type": "post.unliked", "data": LikeChange } | { "type": "post.shared", "data": ShareChange } | { "type": "post.unshared", "data": ShareChange } | { "type": "comment.created", "data": CommentCreated } | { "type": "comment.removed", "data": CommentRemoved } | { "type": "user.followed", "data": FollowChange } | { "type": "user.unfollowed", "data": FollowChange } | { "type": "notification", "data": Notification } | { "type": "read.updated", "data": ReadState });

export type EventBody = { "type": "chat.message", "data": ChatMessage } | { "type": "dm.message", "data": DirectMessage } | { "type": "post.created", "data": Post } | { "type": "post.edited", "data": PostEdited } | { "type": "post.deleted", "data": PostRef } | { "type": "message.edited", "data": MessageEdited } | { "type": "message.deleted", "data": MessageRef } | { "type": "post.liked", "data": LikeChange } | { "type": "post.unliked", "data": LikeChange } | { "type": "post.shared", "data": ShareChange } | { "type": "post.unshared", "data": ShareChange } | { "type": "comment.created", "data": CommentCreated } | { "type": "comment.removed", "data": CommentRemoved } | { "type": "user.followed", "data": FollowChange } | { "type": "user.unfollowed", "data": FollowChange } | { "type": "notification", "data": Notification } | { "type": "read.updated", "data": ReadState };

export type ChatMessage = { id: number, from: string, text: string, at: number, 
/**
 * The message this one replies to, when it is a reply.
 */
reply_to?: ReplyQuote, };

export type DirectMessage = { id: number, from: string, to: string, text: string, at: number, 
/**
 * The message this one replies to, when it is a reply.
 */
reply_to?: ReplyQuote, };

export type ReplyQuote = { message_id: number, 
/**
 * The original's sender.
 */
from: string, 
/**
 * The original's text when the reply was sent, cut by [`excerpt`].
 */
excerpt: string, };

export type Post = { id: number, author: string, text: string, at: number, edited_at?: number, like_count: number, comment_count: number, 
/**
 * Live shares of this post.
 */
share_count: number, 
/**
 * When this post shares another: the shared post's id — always an earlier post of the
 * public stream, so a reader holds it (or its deletion). `text` is then the sharer's own
 * comment, possibly empty.
 */
share_of?: number, };

export type PostEdited = { post_id: number, text: string, edited_at: number, };

export type PostRef = { post_id: number, };

export type MessageEdited = { message_id: number, text: string, edited_at: number, };

export type MessageRef = { message_id: number, };

export type LikeChange = { post_id: number, by: string, like_count: number, };

export type ShareChange = { post_id: number, by: string, share_count: number, };

export type Comment = { id: number, post_id: number, author: string, text: string, at: number, };

export type CommentCreated = { comment: Comment, comment_count: number, };

export type CommentRemoved = { comment_id: number, post_id: number, comment_count: number, };

export type FollowChange = { follower: string, followee: string, follower_count: number, };

export type NotificationKind = "like" | "follow" | "comment" | "dm" | "mention" | "reply" | "share";

export type Notification = { id: number, kind: NotificationKind, 
/**
 * Who did it.
 */
actor: string, post_id?: number, comment_id?: number, message_id?: number, 
/**
 * A short excerpt: the DM or comment text.
 */
excerpt?: string, at: number, };

export type ReadState = { conversation: string, 
/**
 * Id of the last message read (chat message id or DM id).
 */
last_read: number, };

export type Presence = { 
/**
 * True for the full list sent right after connecting; false for a change.
 */
snapshot: boolean, online: Array<string>, offline: Array<string>, };

export type Typing = { 
/**
 * From the reader's side: `"public"` or `"dm:<typist>"`.
 */
conversation: string, username: string, typing: boolean, };

export type ErrorCode = "bad_request" | "invalid_text" | "unknown_event" | "not_found" | "forbidden" | "rate_limited" | "invalid_username" | "weak_password" | "username_taken" | "invalid_credentials" | "token_expired" | "token_invalid" | "account_deleted" | "account_suspended" | "id_conflict" | "internal" | "unavailable" | "method_not_allowed";

export type ErrorBody = { code: ErrorCode, message: string, };

export type ConnectionState = { "state": "connecting", attempt: number, } | { "state": "connected" } | { "state": "retrying", attempt: number, 
/**
 * Wall-clock time of the next attempt.
 */
at: number, in_ms: number, reason: string, } | { "state": "signed_out", reason: string, 
/**
 * The account was deleted (from another device), and this device's cache erased.
 */
account_deleted: boolean, 
/**
 * The account is suspended by a moderator (the cache is kept); signing in is refused
 * until the suspension is lifted.
 */
suspended: boolean, } | { "state": "stopped" };

export type AdminStats = { 
/**
 * Server time of this snapshot.
 */
at: number, 
/**
 * Every node serving the database, heard from within the last few seconds (one with the
 * SQLite default), sorted by id.
 */
nodes: Array<NodeStats>, 
/**
 * Users with at least one connection on any node.
 */
users_online: number, 
/**
 * Size of the database on disk, in bytes (SQLite: the main file; Postgres: the database).
 */
database_bytes: number, };

export type NodeStats = { 
/**
 * The node's random id (new at every start).
 */
node: string, started_at: number, 
/**
 * When the node measured these.
 */
at: number, 
/**
 * Open Socket.IO connections on `/` (devices).
 */
connections: number, 
/**
 * Users with at least one connection on this node.
 */
users_online: number, 
/**
 * Log events this node wrote, per second.
 */
events_per_sec: number, 
/**
 * Requests this node received, per second, by event name (`unknown` for names outside
 * the protocol); names without any are left out.
 */
requests_per_sec: { [key in string]?: number }, };

export type AdminState = { "state": "connecting" } | { "state": "open" } | { "state": "retrying", in_ms: number, reason: string, } | { "state": "refused", reason: string, } | { "state": "closed" };

export type AdminAction = { "action": "remove_post", post_id: number, } | { "action": "remove_comment", comment_id: number, } | { "action": "suspend", username: string, } | { "action": "unsuspend", username: string, };

export type OutboxState = "pending" | "sent" | "wedged";

export type WedgeReason = { "code": "refused", error: ErrorBody, } | { "code": "no_answer", attempts: number, };

export type OutboxChange = { client_id: string, state: OutboxState, error?: ErrorBody, wedge?: WedgeReason, };

export type Target = { "kind": "conversation", id: string, } | { "kind": "post", post_id: number, } | { "kind": "user", username: string, };

export type OsNotification = { title: string, body: string, target: Target, 
/**
 * Notifications with the same group replace/stack with each other (one per conversation).
 */
group: string, 
/**
 * The message it announces (a DM, a mention in the public room): when that message is
 * deleted, the core publishes [`crate::CoreEvent::Withdraw`] and the notification goes.
 */
message_id: number | null, };

export type CoreEvent = { "event": "connection", "data": ConnectionState } | { "event": "log", "data": LogEvent } | { "event": "changes", "data": ChangeSet } | { "event": "sync", "data": SyncStatus } | { "event": "presence", "data": Presence } | { "event": "typing", "data": Typing } | { "event": "outbox", "data": OutboxChange } | { "event": "notify", "data": OsNotification } | { "event": "admin", "data": AdminState } | { "event": "admin_stats", "data": AdminStats } | { "event": "withdraw", "data": { message_id: number, } };

export type UiEvent = { "kind": "core", "payload": CoreEvent } | { "kind": "resync" } | { "kind": "open", "payload": Target } | { "kind": "settings", "payload": Settings } | { "kind": "signed_out" };

export type LocalState = "pending" | "sent" | "failed";

export type PageKey = { at: number, sk: number, };

export type MessageRow = { local_id: number, server_id: number | null, client_id: string | null, conversation: string, sender: string, text: string, at: number, state: LocalState, key: PageKey, 
/**
 * When its sender last edited it.
 */
edited_at: number | null, 
/**
 * Deleted by its sender: the text is empty and the row stands for "message deleted".
 */
deleted: boolean, 
/**
 * The message this one replies to, shown as a quote above it.
 */
reply_to: Quote | null, };

export type Quote = { 
/**
 * The original's server id (jump to it with [`crate::Core::conversation_around`]).
 */
server_id: number, sender: string, 
/**
 * The start of the original's current text; `None` once the original was deleted.
 */
excerpt: string | null, };

export type AroundPage = { 
/**
 * Oldest first, the message itself among them.
 */
rows: Array<MessageRow>, 
/**
 * The message's local id in `rows`.
 */
target_local_id: number, 
/**
 * Nothing older than `rows` exists.
 */
older_done: boolean, 
/**
 * Nothing newer than `rows` exists: the window reaches the newest message.
 */
newer_done: boolean, };

export type PostRow = { local_id: number, server_id: number | null, client_id: string | null, author: string, text: string, at: number, edited_at: number | null, like_count: number, comment_count: number, liked_by_me: boolean, state: LocalState, key: PageKey, 
/**
 * Live shares of this post.
 */
share_count: number, 
/**
 * I share it (a live share of mine points at it).
 */
shared_by_me: boolean, 
/**
 * When this post shares another: that post as this cache holds it now. `text` is then my
 * (the sharer's) comment, possibly empty.
 */
share_of: SharedPost | null, };

export type SharedPost = { server_id: number, 
/**
 * False once it was deleted (the share then shows it as unavailable; author and text are
 * empty).
 */
available: boolean, author: string, text: string, at: number, edited_at: number | null, };

export type CommentRow = { local_id: number, server_id: number | null, post_id: number, author: string, text: string, at: number, state: LocalState, 
/**
 * Removed by a moderator (`text` is then empty).
 */
removed: boolean, };

export type ConversationRow = { id: string, last_at: number, last_sender: string, last_text: string, unread: number, };

export type ConversationPage = { 
/**
 * The public room, pinned above the list: on the first page only (`None` there until it
 * has a message).
 */
pinned: ConversationRow | null, 
/**
 * DM conversations, most recent first; the next page starts after the last of them.
 */
rows: Array<ConversationRow>, 
/**
 * Whether older conversations follow.
 */
more: boolean, 
/**
 * Unread messages in every conversation, loaded or not.
 */
unread_total: number, };

export type Profile = { username: string, follower_count: number, following_count: number, followed_by_me: boolean, follows_me: boolean, 
/**
 * Last known presence.
 */
online: boolean, };

export type FollowList = "followers" | "following";

export type UnreadCounts = { total: number, conversations: Array<[string, number]>, };

export type UnreadStart = { 
/**
 * Its page key: the conversation's rows from here on are the unread stretch.
 */
key: PageKey, server_id: number, 
/**
 * How many rows (anyone's) the conversation has from this one to the newest, counted up to
 * [`UNREAD_START_COUNT_CAP`] (a larger stretch reports the cap).
 */
rows_since: number, };

export type HitKind = "message" | "post";

export type SearchHit = { kind: HitKind, local_id: number, server_id: number | null, 
/**
 * For messages: the conversation.
 */
conversation: string | null, author: string, text: string, at: number, };

export type ChangeSet = { 
/**
 * The cache was emptied (sync reset, sign-out): everything shown before is gone, and the
 * rows of this set (if any) are the first of the new content.
 */
reset: boolean, 
/**
 * Messages added or updated (a pending copy confirmed, a new message).
 */
messages: Array<MessageRow>, 
/**
 * Conversation list rows whose last message or unread count changed.
 */
conversations: Array<ConversationRow>, 
/**
 * Posts added or updated (edits, counters, my like).
 */
posts: Array<PostRow>, 
/**
 * Posts deleted (their local ids).
 */
posts_deleted: Array<number>, 
/**
 * Comments added or updated.
 */
comments: Array<CommentRow>, 
/**
 * Notifications added.
 */
notifications: Array<Notification>, 
/**
 * Users whose followers or following changed: a profile showing one reads its header and
 * lists again.
 */
users: Array<string>, 
/**
 * Unread messages in every conversation after the write (each touched conversation's
 * own count is on its row in `conversations`), so a change set's size follows what
 * changed, not how many conversations exist.
 */
unread_total: number, };

export type NotificationSettings = { do_not_disturb: boolean, 
/**
 * Do-not-disturb every day in this local-time window, besides the manual switch.
 */
quiet_hours: QuietHours | null, 
/**
 * Conversation ids (`"dm:joao"`, `"public"`) that never notify.
 */
muted: Array<string>, likes: boolean, follows: boolean, comments: boolean, direct_messages: boolean, 
/**
 * Someone wrote `@me` in a public message, post or comment.
 */
mentions: boolean, };

export type QuietHours = { start: number, end: number, };

export type Language = "system" | "en" | "pt_br";

export type Settings = { notifications: NotificationSettings, language: Language, 
/**
 * Time the notifications list was last opened (for its unread badge).
 */
notifications_seen_at: number, 
/**
 * The server last signed in to (the `PAPO_SERVER` env var / `--server` flag win).
 */
server_url: string | null, 
/**
 * Closing the window hides it to the tray (when there is a tray).
 */
close_to_tray: boolean, 
/**
 * Start with the window hidden in the tray (also `--minimized`, used by start-at-login).
 */
start_minimized: boolean, };

export type OsStatus = { 
/**
 * Where the session is kept: `secret-service`, `keyutils`, `keychain`,
 * `credential-manager`; `null` when there is no keyring (sign-in lasts for this run).
 */
keyring: string | null, keyring_message: string | null, 
/**
 * Whether native notifications can be shown (a notification server answers).
 */
notifications: boolean, notification_server: string | null, notifications_message: string | null, 
/**
 * Whether the tray icon exists.
 */
tray: boolean, 
/**
 * Whether Papo starts at login.
 */
autostart: boolean, };

export type Boot = { 
/**
 * The signed-in user, or the owner of the cache when signed out / offline.
 */
me: string | null, 
/**
 * Whether tokens are held (a connection is being made or is up).
 */
session: boolean, server_url: string, connection: ConnectionState, settings: Settings, 
/**
 * Events that arrived before the UI was ready, in order.
 */
queued: Array<UiEvent>, 
/**
 * The OS locale (BCP 47), for `Language::System`.
 */
os_locale: string, os: OsStatus, 
/**
 * The account held the admin role at its last connection (shows the Admin page).
 */
admin: boolean, };

export type ClientErrorCode = "unreachable" | "cache" | "session_store" | "not_signed_in" | "invalid_input" | "msg_usage" | "empty" | "reply_gone" | "admin_closed";

export type CoreErrorCode = ErrorCode | ClientErrorCode;

export type UiError = { code: CoreErrorCode, message: string, };

export type OutboxEntry = { client_id: string, 
/**
 * The request's event name (`chat:send`, `dm:send`, ...).
 */
event: string, 
/**
 * Where it belongs (its send queue): `public`, `dm:<peer>`, `feed`, `follows`,
 * `read:<conversation>`.
 */
conversation: string, 
/**
 * The text it carries, if any (message, post, comment), for display.
 */
text: string | null, state: OutboxState, attempts: number, error: ErrorBody | null, 
/**
 * Why it is wedged (when `state` is `wedged`).
 */
wedge: WedgeReason | null, };

export type ComposeTarget = { "kind": "conversation", id: string, } | { "kind": "post" } | { "kind": "comment", post_id: number, };

export type Sent = { 
/**
 * The outbox item's client id.
 */
client_id: string, 
/**
 * The conversation the message went to (`dm:joao` for `/msg joao ...`); `None` for posts
 * and comments.
 */
conversation: string | null, };

export type TransportKind = "websocket" | "polling";

export type WireEvent = { at: number, name: string, bytes: number, };

export type Diagnostics = { server_url: string, transport: TransportKind, state: ConnectionState, 
/**
 * Connection attempts since the core started.
 */
attempts: number, 
/**
 * Sessions opened (CONNECT answered) since the core started.
 */
sessions: number, 
/**
 * Why the last session ended, or the last attempt failed.
 */
last_error: string | null, 
/**
 * When the current session opened (wall clock).
 */
connected_at: number | null, 
/**
 * The last `sys:ping` round trip.
 */
rtt_ms: number | null, 
/**
 * The stored position in each stream, and the server epoch it belongs to.
 */
cursor: Cursor, epoch: string | null, 
/**
 * Outbox items waiting to be sent, and stopped by a refusal (wedged).
 */
outbox_pending: number, outbox_wedged: number, 
/**
 * The last packets received, oldest first.
 */
recent: Array<WireEvent>, };
