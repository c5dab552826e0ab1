// The UI's one interface to the shell: typed Tauri commands and the typed event stream. The
// types come from src/lib/bindings/papo.ts, generated from the Rust types.
import { invoke } from "@tauri-apps/api/core";
import type { UnlistenFn } from "@tauri-apps/api/event";
import type {
  AroundPage,
  Boot,
  CommentRow,
  ComposeTarget,
  ConversationPage,
  ConversationRow,
  AdminAction,
  Diagnostics,
  FollowList,
  MessageRow,
  Notification,
  OsStatus,
  UnreadStart,
  OutboxEntry,
  PageKey,
  PostRow,
  Profile,
  SearchHit,
  Sent,
  Settings,
  UiEvent,
  UnreadCounts,
} from "./bindings/papo";


/** The screen last reported as on screen (restored when the window is shown again). */
let onScreen: string | null = null;

export const api = {
  uiReady: () => invoke<Boot>("ui_ready"),
  signIn: (server_url: string, username: string, password: string, create: boolean) =>
    invoke<string>("sign_in", { server_url, username, password, create }),
  signOut: () => invoke<void>("sign_out"),
  /** Deletes the account on the server (every device is signed out), then signs out here. */
  deleteAccount: (password: string) => invoke<void>("delete_account", { password }),
  retryNow: () => invoke<void>("retry_now"),
  /** Sends a composer's text; `reply_to`: the server id of a message of its conversation it answers. */
  compose: (target: ComposeTarget, text: string, reply_to: number | null = null) =>
    invoke<Sent>("compose", { target, text, reply_to }),
  editPost: (post_id: number, text: string) => invoke<void>("edit_post", { post_id, text }),
  deletePost: (post_id: number) => invoke<void>("delete_post", { post_id }),
  editMessage: (message_id: number, text: string) => invoke<void>("edit_message", { message_id, text }),
  deleteMessage: (message_id: number) => invoke<void>("delete_message", { message_id }),
  setLike: (post_id: number, liked: boolean) => invoke<void>("set_like", { post_id, liked }),
  /** Shares a post with an optional comment (`shared` true), or deletes my share of it. */
  setShare: (post_id: number, shared: boolean, comment = "") => invoke<void>("set_share", { post_id, shared, comment }),
  setFollow: (username: string, follow: boolean) => invoke<void>("set_follow", { username, follow }),
  isFollowing: (username: string) => invoke<boolean>("is_following", { username }),
  /** A user's page, from the cache: counts, follow state, presence. */
  profile: (username: string) => invoke<Profile>("profile", { username }),
  postsBy: (author: string, before: PageKey | null, limit: number) => invoke<PostRow[]>("posts_by", { author, before, limit }),
  followList: (username: string, list: FollowList, after: string | null, limit: number) =>
    invoke<string[]>("follow_list", { username, list, after, limit }),
  knownUsers: (prefix: string) => invoke<string[]>("known_users", { prefix }),
  markRead: (conversation: string, last_read: number) =>
    invoke<void>("mark_read", { conversation, last_read }),
  /** Whose presence the screen shows besides followed users and DM peers (the server sends those
   * anyway), and whether the public room is open (for its typing). The core keeps it across
   * reconnections and sends it only when it changes. */
  watchPresence: (users: string[], public_typing: boolean) =>
    invoke<void>("watch_presence", { users, public_typing }),
  setTyping: (conversation: string, typing: boolean) =>
    invoke<void>("set_typing", { conversation, typing }),
  setOnScreen: (conversation: string | null) => {
    onScreen = conversation;
    return invoke<void>("set_on_screen", { conversation });
  },
  /** A hidden window (in the tray, minimized) shows nothing: every conversation may notify. */
  windowVisible: (visible: boolean) => invoke<void>("set_on_screen", { conversation: visible ? onScreen : null }),
  /** Retries a wedged item; resolves to the client id it is sent under (new after a refusal), or null. */
  retryOutbox: (client_id: string) => invoke<string | null>("retry_outbox", { client_id }),
  discardOutbox: (client_id: string) => invoke<boolean>("discard_outbox", { client_id }),
  outbox: () => invoke<OutboxEntry[]>("outbox"),
  /** Wedged items of one conversation (`public`, `dm:bia`, `feed`, `follows`), or all. */
  wedgedOutbox: (conversation: string | null) => invoke<OutboxEntry[]>("wedged_outbox", { conversation }),
  feedPage: (before: PageKey | null, limit: number) => invoke<PostRow[]>("feed_page", { before, limit }),
  comments: (post_id: number) => invoke<CommentRow[]>("comments", { post_id }),
  conversationPage: (conversation: string, before: PageKey | null, limit: number) =>
    invoke<MessageRow[]>("conversation_page", { conversation, before, limit }),
  /** The rows after `after`, oldest first (paging forward from a window around a quote). */
  conversationPageAfter: (conversation: string, after: PageKey, limit: number) =>
    invoke<MessageRow[]>("conversation_page_after", { conversation, after, limit }),
  /** `context` rows each side of the message `server_id` (the original a reply quotes). */
  conversationAround: (conversation: string, server_id: number, context: number) =>
    invoke<AroundPage | null>("conversation_around", { conversation, server_id, context }),
  /** Where the conversation's unread messages begin (ask before marking it read). */
  unreadStart: (conversation: string) => invoke<UnreadStart | null>("unread_start", { conversation }),
  /** The conversation's unsent composer text (kept across views and restarts). */
  draft: (conversation: string) => invoke<string | null>("draft", { conversation }),
  setDraft: (conversation: string, text: string) => invoke<void>("set_draft", { conversation, text }),
  /** The conversation list a page at a time: the public room pinned (first page), then DMs. */
  conversationsPage: (before: ConversationRow | null, limit: number) =>
    invoke<ConversationPage>("conversations_page", {
      before_at: before?.last_at ?? null,
      before_id: before?.id ?? null,
      limit,
    }),
  notificationsPage: (limit: number) =>
    invoke<Notification[]>("notifications_page", { before_at: null, before_id: null, limit }),
  unreadCounts: () => invoke<UnreadCounts>("unread_counts"),
  search: (query: string, limit: number) => invoke<SearchHit[]>("search", { query, limit }),
  onlineUsers: () => invoke<string[]>("online_users"),
  setSettings: (settings: Settings) => invoke<void>("set_settings", { settings }),
  osStatus: () => invoke<OsStatus>("os_status"),
  /** The connection as the Diagnostics page shows it (no token, no message text). */
  diagnostics: () => invoke<Diagnostics>("diagnostics"),
  /** The Admin page opened: the /admin connection starts (state and stats come as core events). */
  adminOpen: () => invoke<void>("admin_open"),
  adminClose: () => invoke<void>("admin_close"),
  /** A moderation action, answered by the server; never queued (`admin_closed` when offline). */
  admin: (action: AdminAction) => invoke<void>("admin", { action }),
  setAutostart: (enabled: boolean) => invoke<boolean>("set_autostart", { enabled }),
  feedRendered: (posts: number) => invoke<void>("feed_rendered", { posts }),
  /** The next events (one batch, in order); empty when nothing came for a while. */
  nextEvents: () => invoke<UiEvent[]>("next_events"),
  /**
   * The shell's event stream: pulled, one batch per call, for as long as the page lives (see
   * src-tauri/bridge.rs for why it is not pushed). Events before `uiReady` come with its answer.
   */
  onEvent: (handler: (e: UiEvent) => void): Promise<UnlistenFn> => {
    let stopped = false;
    void (async () => {
      while (!stopped) {
        let batch: UiEvent[];
        try {
          batch = await api.nextEvents();
        } catch (e) {
          console.error(e);
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        for (const e of batch) if (!stopped) handler(e);
      }
    })();
    return Promise.resolve(() => {
      stopped = true;
    });
  },
};
