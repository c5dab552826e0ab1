// Wedged outbox items as the UI shows them: which ones belong to a view, and the reason in
// words. An item is wedged when the server refused it for good or never answered it after a
// bounded number of attempts; it waits for the user's Retry or Discard (the core keeps the
// rest of its conversation, and every other one, moving).
import type { api } from "./api";
import type { OutboxChange, OutboxEntry, WedgeReason } from "./bindings/papo";
import type { Key } from "./i18n";

type T = (key: Key, vars?: Record<string, string | number>) => string;

/** The outbox queues a view shows: a conversation shows its own; the feed shows feed actions and follows. */
export function queuesOf(view: string): string[] {
  return view === "feed" ? ["feed", "follows"] : [view];
}

/** The wedged entries of a view, in send order. */
export function wedgedIn(entries: OutboxEntry[], view: string): OutboxEntry[] {
  const queues = queuesOf(view);
  return entries.filter((e) => e.state === "wedged" && queues.includes(e.conversation));
}

/** What the wedged-item actions call in the shell (the `api` object). */
export type OutboxApi = Pick<typeof api, "wedgedOutbox" | "retryOutbox" | "discardOutbox">;

/** The wedged entries of a view, read from the core; none when that read fails. */
export function fetchWedged(shell: OutboxApi, view: string): Promise<OutboxEntry[]> {
  const queues = queuesOf(view);
  return shell.wedgedOutbox(queues.length === 1 ? queues[0] : null).then(
    (entries) => wedgedIn(entries, view),
    () => [],
  );
}

/** Whether an outbox change can change a view's wedged list: an item got wedged, or a listed one moved on. */
export function touchesWedged(wedged: OutboxEntry[], change: OutboxChange): boolean {
  return change.state === "wedged" || wedged.some((w) => w.client_id === change.client_id);
}

/** A view that lists its wedged items with Retry / Discard. */
export interface WedgedView {
  /** `feed` or a conversation id. */
  view: string;
  shell: OutboxApi;
  /** Shows the view's wedged items (after each Retry / Discard and on `load`). */
  show: (entries: OutboxEntry[]) => void;
  /** Drops a discarded item's local copy from the view (the core has deleted it). */
  dropLocal: (clientId: string) => void;
  /** Tells the user a Retry / Discard failed. */
  fail: (e: unknown) => void;
}

/** Load / Retry / Discard for a view's wedged items; each action reads the list again after it. */
export function wedgedActions(v: WedgedView) {
  const load = async () => v.show(await fetchWedged(v.shell, v.view));
  const act = async (f: () => Promise<unknown>) => {
    try {
      await f();
      await load();
    } catch (e) {
      v.fail(e);
    }
  };
  return {
    load,
    retry: (clientId: string) => act(() => v.shell.retryOutbox(clientId)),
    discard: (clientId: string) =>
      act(async () => {
        await v.shell.discardOutbox(clientId);
        v.dropLocal(clientId);
      }),
  };
}

/** Wedged entries by client id, to put the reason next to a message's local copy. */
export function byClientId(entries: OutboxEntry[]): Map<string, OutboxEntry> {
  return new Map(entries.filter((e) => e.state === "wedged").map((e) => [e.client_id, e]));
}

/** Why it is stuck, in words. */
export function reasonText(wedge: WedgeReason | null | undefined, t: T): string {
  if (!wedge) return t("outbox.wedged");
  switch (wedge.code) {
    case "no_answer":
      return t("outbox.no_answer", { attempts: wedge.attempts });
    case "refused":
      return t("outbox.refused", { message: wedge.error.message || wedge.error.code });
  }
}

const ACTION_KEYS: Record<string, Key> = {
  "chat:send": "outbox.action.message",
  "dm:send": "outbox.action.message",
  "post:create": "outbox.action.post",
  "post:edit": "outbox.action.edit",
  "post:delete": "outbox.action.delete",
  "post:like": "outbox.action.like",
  "post:unlike": "outbox.action.unlike",
  "comment:create": "outbox.action.comment",
  "user:follow": "outbox.action.follow",
  "user:unfollow": "outbox.action.unfollow",
  "read:mark": "outbox.action.read",
};

/** What the stuck action was: its text when it has one, else the kind of action. */
export function actionText(entry: OutboxEntry, t: T): string {
  const kind = t(ACTION_KEYS[entry.event] ?? "outbox.action.other");
  return entry.text ? `${kind}: “${entry.text}”` : kind;
}
