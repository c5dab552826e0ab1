// The app's reactive state (Svelte 5 runes). It holds only what the screens share; rows are
// read from the cache by the screens themselves when `versions` tell them something changed.
import { api, isUiError } from "./api";
import { bannerFor } from "./banner";
import type { Boot, ConnectionState, ConversationRow, OsStatus, Settings, UiEvent } from "./bindings/papo";
import { refreshFor } from "./events";
import { resolveLocale, translate, type Key, type Locale } from "./i18n";
import { TypingTracker } from "./typing";
import { unseenCount } from "./format";

export type Screen = "feed" | "chat" | "notifications" | "settings";

class AppStore {
  booted = $state(false);
  me = $state<string | null>(null);
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
  showSignIn = $state(false);
  searchOpen = $state(false);
  conversations = $state<ConversationRow[]>([]);
  online = $state<string[]>([]);
  notificationsUnseen = $state(0);
  now = $state(Date.now());
  typingVersion = $state(0);
  /** Bumped when a view's data changed in the cache. */
  versions = $state({ feed: 0, conversations: 0, notifications: 0, messages: {} as Record<string, number>, all: 0 });
  toast = $state<string | null>(null);
  typing = new TypingTracker();

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
      else if (core.event === "presence") void this.refreshOnline();
      else if (core.event === "typing") {
        this.typing.set(core.data.conversation, core.data.username, core.data.typing, Date.now());
        this.typingVersion++;
      } else if (core.event === "log" && core.data.type === "dm.message") {
        // The sender stopped typing once the message is here.
        const m = core.data.data;
        this.typing.set(`dm:${m.from === this.me ? m.to : m.from}`, m.from, false, Date.now());
        this.typingVersion++;
      } else if (core.event === "log" && core.data.type === "chat.message") {
        this.typing.set("public", core.data.data.from, false, Date.now());
        this.typingVersion++;
      }
    } else if (e.kind === "settings") {
      this.settings = e.payload;
    } else if (e.kind === "signed_out") {
      this.session = false;
      this.showSignIn = true;
      // The cache (and with it the owner) is gone; the sign-in form still offers the name.
      if (this.me) this.lastUser = this.me;
      this.me = null;
    } else if (e.kind === "open") {
      const target = e.payload;
      if (target.kind === "conversation") this.openConversation(target.id);
      else this.screen = target.kind === "post" ? "feed" : "notifications";
    }
    const r = refreshFor(e, this.me);
    const v = this.versions;
    if (r.all) v.all++;
    if (r.feed || r.all) v.feed++;
    if (r.conversations || r.all) {
      v.conversations++;
      void this.refreshConversations();
    }
    if (r.notifications || r.all) {
      v.notifications++;
      void this.refreshNotifications();
    }
    for (const c of r.messages) v.messages[c] = (v.messages[c] ?? 0) + 1;
    if (r.all) v.messages["*"] = (v.messages["*"] ?? 0) + 1;
  }

  messagesVersion(conversation: string): number {
    return (this.versions.messages[conversation] ?? 0) + (this.versions.messages["*"] ?? 0) + this.versions.all;
  }

  async refreshShared() {
    await Promise.all([this.refreshConversations(), this.refreshNotifications(), this.refreshOnline()]);
  }

  async refreshConversations() {
    try {
      this.conversations = await api.conversations();
    } catch (e) {
      console.error(e);
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
      const items = await api.notificationsPage(100);
      this.notificationsUnseen = this.screen === "notifications" ? 0 : unseenCount(items, this.settings?.notifications_seen_at ?? 0);
    } catch (e) {
      console.error(e);
    }
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
    if (isUiError(e)) {
      const key = `error.${e.code}` as Key;
      const text = translate(this.locale, key);
      return text === key ? this.t("error.generic", { message: e.message }) : text;
    }
    return this.t("error.generic", { message: String(e) });
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
}

export const app = new AppStore();
