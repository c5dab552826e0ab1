// Small display helpers.

/** `dm:joao` → `joao`; `public` → null. */
export function dmPeer(conversation: string): string | null {
  return conversation.startsWith("dm:") && conversation.length > 3 ? conversation.slice(3) : null;
}

/** Time of day for today's messages, a short date otherwise. */
export function formatTime(at: number, now: number, locale: string): string {
  const d = new Date(at);
  const n = new Date(now);
  const sameDay = d.toDateString() === n.toDateString();
  return sameDay
    ? d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString(locale, { day: "numeric", month: "short" });
}

/** Notifications newer than the last time the list was opened. */
export function unseenCount(items: { at: number }[], seenAt: number): number {
  return items.filter((n) => n.at > seenAt).length;
}

/** Composer keys: Enter sends, Shift+Enter is a newline (and IME composition never sends). */
export function isSendKey(e: { key: string; shiftKey: boolean; isComposing?: boolean }): boolean {
  return e.key === "Enter" && !e.shiftKey && !e.isComposing;
}

/** Merges rows by key, keeping the newest copy, sorted by `(at, sk)` ascending. */
export function mergeRows<T extends { local_id: number; key: { at: number; sk: number } }>(
  current: T[],
  incoming: T[],
): T[] {
  const byId = new Map<number, T>();
  for (const r of current) byId.set(r.local_id, r);
  for (const r of incoming) byId.set(r.local_id, r);
  return [...byId.values()].sort((a, b) => a.key.at - b.key.at || a.key.sk - b.key.sk);
}

/**
 * Replaces the newest part of a loaded list with a fresh newest page: rows older than the
 * fresh page are kept, everything the fresh page covers comes from it (so discarded rows go).
 * A fresh page shorter than its limit covers the whole conversation.
 */
export function refreshTail<T extends { local_id: number; key: { at: number; sk: number } }>(
  current: T[],
  fresh: T[],
  limit: number,
): T[] {
  const sorted = [...fresh].sort((a, b) => a.key.at - b.key.at || a.key.sk - b.key.sk);
  if (sorted.length < limit) return sorted;
  const oldest = sorted[0].key;
  const older = current.filter(
    (r) => r.key.at < oldest.at || (r.key.at === oldest.at && r.key.sk < oldest.sk),
  );
  return [...older, ...sorted];
}

/** `HH:MM` of a minute after midnight (what `<input type="time">` shows). */
export function minuteToClock(minute: number): string {
  const m = ((Math.trunc(minute) % 1440) + 1440) % 1440;
  return `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}

/** The minute after midnight of an `HH:MM` (or `HH:MM:SS`) time, or null if it is not one. */
export function clockToMinute(clock: string): number | null {
  const m = /^(\d{1,2}):(\d{2})(?::\d{2})?$/.exec(clock.trim());
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (h > 23 || min > 59) return null;
  return h * 60 + min;
}

/**
 * A sentence with one name in it, split around the name so the name can be drawn as a link:
 * `"{actor} liked your post"` → `["", " liked your post"]`. A template without the
 * placeholder is all `before`.
 */
export function aroundName(template: string, placeholder: string): [string, string] {
  const i = template.indexOf(placeholder);
  if (i < 0) return [template, ""];
  return [template.slice(0, i), template.slice(i + placeholder.length)];
}
