// The app's reactive state (Svelte 5 runes). It holds what the screens share (the conversation
// list, the newest notifications, unread totals); the screens hold their own rows. Everyone
// applies the core's change sets (./views) and reads the cache only for a first page, to page
// back into history, or after an event that invalidates everything (./events).
import { presenceWatchOf } from "./presence";
import { api } from "./api";
import { errorText } from "./errors";
import { bannerFor } from "./banner";
import type {
  AdminAction,
  AdminState,
  AdminStats,
  Boot,
  ChangeSet,
  ConnectionState,
  ConversationRow,
  CoreEvent,
  Notification,
  OsStatus,
  Presence,
  Settings,
  UiEvent,
} from "./bindings/papo";
import { reloadsEverything } from "./events";
import { appendConversations, mergeConversations, mergeNotifications } from "./views";
import { resolveLocale, translate, type Key, type Locale } from "./i18n";
import { TypingTracker } from "./typing";
import { unseenCount } from "./format";

export type Screen = "feed" | "chat" | "notifications" | "settings" | "profile" | "diagnostics" | "admin";

class AppStore {
  booted = $state(false);
  me = $state<string | null>(null);
  /** The account holds the admin role (as of its last connection's `sync`): shows the Admin page. */
  isAdmin = $state(false);
  /** The /admin connection, while the Admin page is open. */
  adminState = $state<AdminState | null>(null);
  adminStats = $state<AdminStats | null>(null);
  /** Who was signed in before the last sign-out (prefills the sign-in form). */
  lastUser = $state<string | null>(null);
  session = $state(false);
  serverUrl = $state("");
  osLocale = $state("en");
  connection = $state<ConnectionState>({ state: "connecting", attempt: 1 });
  everConnected = $state(false);
  settings = $state<Settings | null>(null);
  /** Keyring, notification server, tray, autostart. */
  os = $state<OsStatus | null>(null);
  screen = $state<Screen>("feed");
  conversation = $state("public");
  /** Whose profile the profile screen shows. */
  profileUser = $state<string | null>(null);
  showSignIn = $state(false);
  searchOpen = $state(false);
  /** The public room's row in the conversation list (pinned above it). */
  publicConversation = $state<ConversationRow | null>(null);
  /** The loaded DM conversations, most recent first; older ones are paged in on scroll. */
  conversations = $state<ConversationRow[]>([]);
  /** Whether older conversations than the loaded ones exist. */
  conversationsMore = $state(false);
  /** Unread messages in every conversation (loaded or not). */
  unreadTotal = $state(0);
  /** The newest notifications, newest first. */
  notifications = $state<Notification[]>([]);
  online = $state<string[]>([]);
  notificationsUnseen = $state(0);
  now = $state(Date.now());
  typingVersion = $state(0);
  /** Bumped when everything shown must be read again (resync, reset, sign-out). */
  reloads = $state(0);
  toast = $state<string | null>(null);
  typing = new TypingTracker();
  /** What each mounted screen wants presence for (see `watchPresence`). */
  private presenceWants = new Map<string, { users: string[]; publicTyping: boolean }>();
  /** Screens watching change sets and outbox changes. */
  private watchers = new Set<(e: CoreEvent) => void>();

  locale: Locale = $derived(resolveLocale(this.settings?.language ?? "system", this.osLocale));
  banner = $derived(
    bannerFor(this.connection, { everConnected: this.everConnected, hasCache: !!this.me, now: this.now }),
  );

  t = (key: Key, vars?: Record<string, string | number>) => translate(this.locale, key, vars);

  async start() {
    const unlisten = api.onEvent((e) => this.handle(e));
    await unlisten;
    const boot: Boot = await api.uiReady();
    this.me = boot.me;
    this.isAdmin = boot.admin;
    this.session = boot.session;
    this.serverUrl = boot.server_url;
    this.osLocale = boot.os_locale;
    this.settings = boot.settings;
    this.os = boot.os;
    this.setConnection(boot.connection);
    for (const e of boot.queued) this.handle(e);
    this.showSignIn = !this.me;
    this.booted = true;
    setInterval(() => (this.now = Date.now()), 500);
    // After the first screen asked for its rows: the first paint comes first.
    requestAnimationFrame(() => setTimeout(() => void this.refreshShared(), 0));
  }

  setConnection(c: ConnectionState) {
    const was = this.connection.state;
    this.connection = c;
    if (c.state === "connected") this.everConnected = true;
    // Presence is only known while connected: never show stale green dots offline.
    if (c.state !== "connected") this.online = [];
    else if (was !== "connected" && this.booted) void this.refreshOnline();
    if (c.state === "signed_out") this.session = false;
    else if (c.state !== "stopped") this.session = true;
  }

  handle(e: UiEvent) {
    if (e.kind === "core") {
      const core = e.payload;
      if (core.event === "connection") this.setConnection(core.data);
      else if (core.event === "presence") this.applyPresence(core.data);
      else if (core.event === "typing") {
        this.typing.set(core.data.conversation, core.data.username, core.data.typing, Date.now());
        this.typingVersion++;
      } else if (core.event === "changes") {
        this.applyChanges(core.data);
      } else if (core.event === "sync") {
        if (core.data.state === "live") this.isAdmin = !!core.data.admin;
      } else if (core.event === "admin") {
        this.adminState = core.data;
      } else if (core.event === "admin_stats") {
        this.adminStats = core.data;
      }
      if (core.event === "changes" || core.event === "outbox") for (const f of this.watchers) f(core);
    } else if (e.kind === "settings") {
      this.settings = e.payload;
    } else if (e.kind === "signed_out") {
      this.session = false;
      this.showSignIn = true;
      this.isAdmin = false;
      // The cache (and with it the owner) is gone; the sign-in form still offers the name.
      if (this.me) this.lastUser = this.me;
      this.me = null;
    } else if (e.kind === "open") {
      const target = e.payload;
      if (target.kind === "conversation") this.openConversation(target.id);
      else if (target.kind === "user") this.openProfile(target.username);
      else this.screen = "feed";
    }
    if (reloadsEverything(e)) {
      this.reloads++;
      this.clearConversations();
      this.notifications = [];
      void this.refreshShared();
    }
  }

  /**
   * A screen says whose presence it shows (`users`) and whether it is the public room (for its
   * typing); `null` when it goes away. The server only sends presence for followed users, DM
   * peers and what is watched, so every screen that shows a presence dot says so here.
   */
  watchPresence(source: string, want: { users: string[]; publicTyping?: boolean } | null) {
    if (want) this.presenceWants.set(source, { users: want.users, publicTyping: !!want.publicTyping });
    else this.presenceWants.delete(source);
    const all = presenceWatchOf([...this.presenceWants.values()]);
    void api.watchPresence(all.users, all.publicTyping).catch(() => {});
  }

  /** Presence as the server sends it: a snapshot replaces the list, a change edits it. */
  applyPresence(p: Presence) {
    if (this.connection.state !== "connected") return;
    const online = new Set(p.snapshot ? [] : this.online);
    for (const u of p.online) online.add(u);
    for (const u of p.offline) online.delete(u);
    this.online = [...online].sort();
  }

  /**
   * A moderation action from anywhere (a post's or comment's Remove): the /admin connection is
   * opened for it when the Admin page has not opened it, and closed again after.
   */
  async moderate(action: AdminAction) {
    const wasOpen = this.adminState?.state === "open";
    if (!wasOpen) {
      await api.adminOpen();
      const until = Date.now() + 10_000;
      while (this.adminState?.state !== "open" && this.adminState?.state !== "refused" && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      await api.admin(action);
    } finally {
      if (!wasOpen && this.screen !== "admin") void api.adminClose();
    }
  }

  /** Calls `f` with every `changes` and `outbox` event; returns the function that stops it. */
  watch(f: (e: CoreEvent) => void): () => void {
    this.watchers.add(f);
    return () => this.watchers.delete(f);
  }

  /** What the screens share, from a change set. */
  applyChanges(c: ChangeSet) {
    if (c.reset) {
      this.clearConversations();
      this.notifications = [];
    }
    const dms = c.conversations.filter((r) => r.id !== "public");
    this.publicConversation = c.conversations.find((r) => r.id === "public") ?? this.publicConversation;
    this.conversations = mergeConversations(this.conversations, dms, !this.conversationsMore);
    this.unreadTotal = Number(c.unread_total);
    if (c.notifications.length > 0) {
      this.notifications = mergeNotifications(this.notifications, c.notifications, NOTIFICATIONS);
      this.countUnseen();
    }
    // A message from someone ends their typing there.
    for (const m of c.messages) {
      if (m.sender !== this.me) {
        this.typing.set(m.conversation, m.sender, false, Date.now());
        this.typingVersion++;
      }
    }
  }

  private countUnseen() {
    this.notificationsUnseen =
      this.screen === "notifications" ? 0 : unseenCount(this.notifications, this.settings?.notifications_seen_at ?? 0);
  }

  async refreshShared() {
    await Promise.all([this.refreshConversations(), this.refreshNotifications(), this.refreshOnline()]);
  }

  private clearConversations() {
    this.publicConversation = null;
    this.conversations = [];
    this.conversationsMore = false;
    this.unreadTotal = 0;
  }

  async refreshConversations() {
    try {
      const page = await api.conversationsPage(null, CONVERSATIONS);
      this.publicConversation = page.pinned;
      this.conversations = page.rows;
      this.conversationsMore = page.more;
      this.unreadTotal = Number(page.unread_total);
    } catch (e) {
      console.error(e);
    }
  }

  private loadingConversations = false;

  /** The next page of older conversations (the list's end came into view). */
  async moreConversations() {
    const last = this.conversations.at(-1);
    if (!this.conversationsMore || this.loadingConversations || !last) return;
    this.loadingConversations = true;
    const reloads = this.reloads;
    try {
      const page = await api.conversationsPage(last, CONVERSATIONS);
      // Everything shown was read again meanwhile (reset, sign-out): this page is stale.
      if (reloads !== this.reloads) return;
      this.conversations = appendConversations(this.conversations, page.rows);
      this.conversationsMore = page.more;
      this.unreadTotal = Number(page.unread_total);
    } catch (e) {
      console.error(e);
    } finally {
      this.loadingConversations = false;
    }
  }

  async refreshOnline() {
    try {
      const online = await api.onlineUsers();
      this.online = this.connection.state === "connected" ? online : [];
    } catch (e) {
      console.error(e);
    }
  }

  async refreshNotifications() {
    try {
      this.notifications = await api.notificationsPage(NOTIFICATIONS);
      this.countUnseen();
    } catch (e) {
      console.error(e);
    }
  }

  /** Shows a user's page (their posts, followers, following). */
  openProfile(username: string) {
    this.profileUser = username;
    this.screen = "profile";
  }

  openConversation(id: string) {
    this.conversation = id;
    this.screen = "chat";
  }

  async refreshOs() {
    try {
      this.os = await api.osStatus();
    } catch (e) {
      console.error(e);
    }
  }

  async setAutostart(enabled: boolean) {
    try {
      await api.setAutostart(enabled);
    } catch (e) {
      this.flash(this.errorText(e));
    }
    await this.refreshOs();
  }

  async saveSettings(s: Settings) {
    this.settings = s;
    await api.setSettings($state.snapshot(s) as Settings);
  }

  async markNotificationsSeen() {
    if (!this.settings) return;
    this.notificationsUnseen = 0;
    await this.saveSettings({ ...this.settings, notifications_seen_at: Date.now() });
  }

  /** A readable message for an error from a command. */
  errorText(e: unknown): string {
    return errorText(this.locale, e);
  }

  flash(text: string) {
    this.toast = text;
    setTimeout(() => {
      if (this.toast === text) this.toast = null;
    }, 4000);
  }

  async signOut() {
    await api.signOut();
    this.handle({ kind: "signed_out" });
  }

  /** Deletes the account (a refusal, such as a wrong password, is flashed and changes nothing). */
  async deleteAccount(password: string): Promise<void> {
    try {
      await api.deleteAccount(password);
    } catch (e) {
      this.flash(this.errorText(e));
      return;
    }
    this.handle({ kind: "signed_out" });
  }
}

/** How many notifications the list keeps. */
const NOTIFICATIONS = 200;
/** Conversations read a page at a time (the list pages on scroll). */
const CONVERSATIONS = 50;

export const app = new AppStore();

