// How the screens apply what the core says changed (`changes` events) to what they show, so
// that nothing re-reads the cache after the core has just written it. A screen reads the cache
// only to fill its first page and to page further back into history; everything newer arrives
// as rows in a ChangeSet (or as an outbox state change of a local copy).
import type { ConversationRow, LocalState, Notification, OutboxChange, PageKey, UnreadStart } from "./bindings/papo";

export type Keyed = { local_id: number; key: PageKey };

/** `a` sorts before (is older than) `b`. */
export function older(a: PageKey, b: PageKey): boolean {
  return a.at < b.at || (a.at === b.at && a.sk < b.sk);
}

function ascending(a: Keyed, b: Keyed): number {
  return a.key.at - b.key.at || a.key.sk - b.key.sk;
}

/**
 * A window of rows, oldest first, that reaches from its oldest row to the newest one (or the
 * whole history when `complete`), with `incoming` rows merged in: a row already shown is
 * replaced (its key may have changed: a pending copy confirmed), a new row joins when it falls
 * inside the window, a row older than the window is left for paging. `removed` are local ids
 * that are gone.
 */
export function mergeWindow<T extends Keyed>(window: T[], incoming: T[], complete: boolean, removed: number[] = []): T[] {
  if (incoming.length === 0 && removed.length === 0) return window;
  const byId = new Map<number, T>();
  for (const r of window) byId.set(r.local_id, r);
  const oldest = window.length > 0 ? window.reduce((o, r) => (older(r.key, o) ? r.key : o), window[0].key) : null;
  for (const r of incoming) {
    if (byId.has(r.local_id) || complete || oldest === null || !older(r.key, oldest)) byId.set(r.local_id, r);
  }
  for (const id of removed) byId.delete(id);
  return [...byId.values()].sort(ascending);
}

/**
 * A window that does not reach the newest row (opened around a quoted message): a row already
 * shown is replaced, a new row joins only when it falls between the window's oldest and newest
 * rows; newer ones are left for paging forward (and older ones for paging back).
 */
export function mergeBetween<T extends Keyed>(window: T[], incoming: T[]): T[] {
  if (incoming.length === 0 || window.length === 0) return window;
  const first = window[0].key;
  const last = window[window.length - 1].key;
  const byId = new Map<number, T>();
  for (const r of window) byId.set(r.local_id, r);
  for (const r of incoming) {
    if (byId.has(r.local_id) || (!older(r.key, first) && !older(last, r.key))) byId.set(r.local_id, r);
  }
  return [...byId.values()].sort(ascending);
}

/** Rows read after a window's newest row appended to it (a row already shown stays as it is). */
export function appendNewer<T extends Keyed>(window: T[], page: T[]): T[] {
  const known = new Set(window.map((r) => r.local_id));
  return [...window, ...page.filter((r) => !known.has(r.local_id))].sort(ascending);
}

/** The same for a window kept newest first (the feed). */
export function mergeWindowNewestFirst<T extends Keyed>(
  window: T[],
  incoming: T[],
  complete: boolean,
  removed: number[] = [],
): T[] {
  if (incoming.length === 0 && removed.length === 0) return window;
  return mergeWindow([...window].reverse(), incoming, complete, removed).reverse();
}

/** The conversation list's order (the core's): most recent first, then by id, descending. */
function newerConversation(a: ConversationRow, b: ConversationRow): number {
  return b.last_at - a.last_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/**
 * The loaded part of the conversation list, most recent first, with changed rows merged in.
 * While older pages are not loaded (`complete` false), a row that is new to the list and sorts
 * below its last row is left for its page: taking it would skip the rows in between.
 */
export function mergeConversations(list: ConversationRow[], rows: ConversationRow[], complete = true): ConversationRow[] {
  if (rows.length === 0) return list;
  const edge = list.at(-1);
  const byId = new Map(list.map((c) => [c.id, c] as const));
  for (const r of rows) {
    if (!complete && edge && !byId.has(r.id) && newerConversation(edge, r) < 0) continue;
    byId.set(r.id, r);
  }
  return [...byId.values()].sort(newerConversation);
}

/**
 * The next (older) page appended to the loaded list. A row already loaded is kept as it is:
 * a change set that arrived while the page was read is newer than the page's copy.
 */
export function appendConversations(list: ConversationRow[], page: ConversationRow[]): ConversationRow[] {
  const known = new Set(list.map((c) => c.id));
  return [...list, ...page.filter((c) => !known.has(c.id))].sort(newerConversation);
}

/** The newest notifications (at most `limit`), newest first, with new ones merged in. */
export function mergeNotifications(list: Notification[], rows: Notification[], limit: number): Notification[] {
  if (rows.length === 0) return list;
  const byId = new Map(list.map((n) => [n.id, n] as const));
  for (const n of rows) byId.set(n.id, n);
  return [...byId.values()].sort((a, b) => b.at - a.at || b.id - a.id).slice(0, limit);
}

/** A local copy's state after an outbox change (a wedged item's copy shows as failed). */
export function patchOutbox<T extends { client_id: string | null; state: LocalState }>(rows: T[], change: OutboxChange): T[] {
  const state: LocalState | null =
    change.state === "wedged" ? "failed" : change.state === "pending" ? "pending" : null;
  // `sent` changes nothing here: the confirmed row (server id, time) comes in a change set.
  if (state === null || !rows.some((r) => r.client_id === change.client_id && r.state !== state)) return rows;
  return rows.map((r) => (r.client_id === change.client_id ? { ...r, state } : r));
}

/**
 * Keeps a window that only grows while new rows arrive (the open conversation, oldest first)
 * bounded: once it holds more than `max` rows, only the newest `keep` stay. Returns null when
 * nothing is cut. The rows cut are still in the cache; the screen pages them back in when
 * scrolled up (its window is no longer `complete`). Only call it while the newest rows are in
 * view: rows someone is reading must not disappear under them.
 */
export function boundWindow<T>(window: T[], max: number, keep: number): T[] | null {
  if (window.length <= max) return null;
  return window.slice(window.length - Math.min(keep, max));
}

/** Rows of context above the first unread message when a conversation opens there. */
export const UNREAD_CONTEXT = 10;

/**
 * How many of the newest rows to load when a conversation opens: a page, or the unread
 * stretch and a little context above it, up to `max` (a longer stretch opens at the oldest
 * row loaded; paging back reaches the rest).
 */
export function openingLimit(start: UnreadStart | null, page: number, max: number): number {
  if (!start) return page;
  return Math.min(max, Math.max(page, start.rows_since + UNREAD_CONTEXT));
}
