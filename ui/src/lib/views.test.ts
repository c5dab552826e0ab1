import { describe, expect, it } from "vitest";
import type { ConversationRow, MessageRow, OutboxChange } from "./bindings/papo";
import {
  appendConversations,
  appendNewer,
  boundWindow,
  mergeBetween,
  mergeConversations,
  mergeWindow,
  mergeWindowNewestFirst,
  older,
  openingLimit,
  patchOutbox,
  UNREAD_CONTEXT,
} from "./views";

/** A small deterministic random source, so a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function conv(id: string, last_at: number, unread: number): ConversationRow {
  return { id, last_at, last_sender: "bia", last_text: "oi", unread };
}

function row(local_id: number, at: number, sk: number, text: string): MessageRow {
  return {
    local_id,
    server_id: sk < 1e9 ? sk : null,
    client_id: null,
    conversation: "public",
    sender: "bia",
    text,
    at,
    edited_at: null,
    deleted: false,
    reply_to: null,
    state: "sent",
    key: { at, sk },
  };
}

const asc = (rows: MessageRow[]) => [...rows].sort((a, b) => a.key.at - b.key.at || a.key.sk - b.key.sk);

describe("views built from change sets", () => {
  it("equal a fresh read of the same window after every change, for random histories", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const r = rng(seed);
      // The cache's rows (the truth), and what the screen first read: the newest page.
      let truth: MessageRow[] = [];
      let next = 1;
      let clock = 1000;
      for (let i = 0; i < 80; i++) {
        clock += 1 + Math.floor(r() * 5);
        truth.push(row(next, clock, next, `m${next}`));
        next++;
      }
      const PAGE = 30;
      let window = asc(truth).slice(-PAGE);
      let complete = false;
      for (let step = 0; step < 300; step++) {
        const roll = r();
        const changed: MessageRow[] = [];
        const removed: number[] = [];
        if (roll < 0.5) {
          // New messages (a batch of 1–5).
          for (let k = 0; k < 1 + Math.floor(r() * 5); k++) {
            clock += Math.floor(r() * 3);
            const m = row(next, clock, next, `m${next}`);
            next++;
            truth.push(m);
            changed.push(m);
          }
        } else if (roll < 0.75 && truth.length > 0) {
          // An update in place, or a pending copy confirmed later (its key moves forward).
          const i = Math.floor(r() * truth.length);
          const old = truth[i];
          const moved = r() < 0.5;
          const at = moved ? clock + 1 : old.at;
          if (moved) clock += 1;
          const m = { ...old, text: old.text + "'", at, key: moved ? { at, sk: old.key.sk } : old.key };
          truth[i] = m;
          changed.push(m);
        } else if (roll < 0.85 && truth.length > 0) {
          // A local copy discarded.
          const i = Math.floor(r() * truth.length);
          removed.push(truth[i].local_id);
          truth.splice(i, 1);
        } else if (roll < 0.95 && !complete) {
          // The user scrolls up: one older page is read (the only read allowed).
          const oldest = window[0]?.key;
          const olderRows = asc(truth.filter((m) => !oldest || older(m.key, oldest))).slice(-PAGE);
          if (olderRows.length < PAGE) complete = true;
          window = asc([...olderRows, ...window]);
          continue;
        } else {
          // A row from long ago (a late replay): shown only once the whole history is loaded.
          const m = row(next, 1 + Math.floor(r() * 900), next, `old${next}`);
          next++;
          truth.push(m);
          changed.push(m);
        }
        window = mergeWindow(window, changed, complete, removed);
        // A fresh read of the same window: every row at or after the window's oldest row.
        const from = window[0]?.key;
        const fresh = asc(truth.filter((m) => complete || !from || !older(m.key, from)));
        expect(window, `seed ${seed} step ${step}`).toEqual(fresh);
      }
      expect(truth.length).toBeGreaterThan(PAGE);
    }
  });

  it("a window around a quoted message takes only rows inside it, and paging forward reaches the newest", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const r = rng(seed);
      let truth: MessageRow[] = [];
      let next = 1;
      let clock = 1000;
      for (let i = 0; i < 120; i++) {
        clock += 1 + Math.floor(r() * 5);
        truth.push(row(next, clock, next, `m${next}`));
        next++;
      }
      const PAGE = 15;
      // Opened around a message in the middle: 10 rows each side.
      const at = 30 + Math.floor(r() * 40);
      let window = asc(truth).slice(at - 10, at + 11);
      let reached = false;
      for (let step = 0; step < 200 && !reached; step++) {
        const roll = r();
        const changed: MessageRow[] = [];
        if (roll < 0.4) {
          clock += 1;
          const m = row(next, clock, next, `m${next}`);
          next++;
          truth.push(m);
          changed.push(m);
        } else if (roll < 0.7) {
          // An edit in place, anywhere (replies' quotes, edits, deletes keep their keys).
          const i = Math.floor(r() * truth.length);
          truth[i] = { ...truth[i], text: truth[i].text + "'" };
          changed.push(truth[i]);
        } else if (roll < 0.8) {
          // A late row that sorts inside the window (a replay): it joins.
          const lo = window[0].key.at;
          const hi = window[window.length - 1].key.at;
          const m = row(next, lo + Math.floor(r() * (hi - lo)), next, `late${next}`);
          next++;
          truth.push(m);
          changed.push(m);
        } else {
          // The user scrolls down: the next page after the window.
          const last = window[window.length - 1].key;
          const page = asc(truth.filter((m) => older(last, m.key))).slice(0, PAGE);
          window = appendNewer(window, page);
          if (page.length < PAGE) reached = true;
          continue;
        }
        window = mergeBetween(window, changed);
        const first = window[0].key;
        const last = window[window.length - 1].key;
        const fresh = asc(truth.filter((m) => !older(m.key, first) && !older(last, m.key)));
        expect(window, `seed ${seed} step ${step}`).toEqual(fresh);
      }
      // Paging forward always catches up within the steps (a page of 15 every fifth step
      // against a row every 2.5): once a page comes back short, the window holds the newest row.
      expect(reached, `seed ${seed}: paging forward never reached the newest row`).toBe(true);
      expect(window[window.length - 1]).toEqual(asc(truth)[truth.length - 1]);
    }
  });

  it("the newest-first variant keeps the feed order and drops deleted posts", () => {
    const a = row(1, 10, 1, "a");
    const b = row(2, 20, 2, "b");
    const c = row(3, 30, 3, "c");
    const feed = [c, b];
    const d = row(4, 40, 4, "d");
    expect(mergeWindowNewestFirst(feed, [d, { ...b, text: "b'" }], false, [3])).toEqual([d, { ...b, text: "b'" }]);
    // Older than the loaded page: left for paging, unless the whole feed is loaded.
    expect(mergeWindowNewestFirst(feed, [a], false)).toEqual(feed);
    expect(mergeWindowNewestFirst(feed, [a], true)).toEqual([c, b, a]);
  });

  it("the conversation list takes changed rows and stays most recent first", () => {
    const list = [conv("dm:bia", 30, 2), conv("public", 20, 0)];
    expect(mergeConversations(list, [conv("public", 40, 1), conv("dm:caio", 10, 1)])).toEqual([
      conv("public", 40, 1),
      conv("dm:bia", 30, 2),
      conv("dm:caio", 10, 1),
    ]);
    // A read mark: same place, unread 0.
    expect(mergeConversations(list, [conv("dm:bia", 30, 0)])[0].unread).toBe(0);
  });

  it("a list loaded a page at a time always equals the first rows of the whole list", () => {
    const order = (a: ConversationRow, b: ConversationRow) => b.last_at - a.last_at || (a.id < b.id ? 1 : -1);
    for (let seed = 1; seed <= 40; seed++) {
      const rand = rng(seed);
      // The cache's rows (ties on last_at on purpose) and the UI's loaded first page.
      const all = new Map<string, ConversationRow>();
      for (let i = 0; i < 30; i++) all.set(`dm:u${i}`, conv(`dm:u${i}`, Math.floor(rand() * 20), 0));
      const sorted = () => [...all.values()].sort(order);
      const PAGE = 4;
      const page = (after: ConversationRow | undefined) => {
        const rows = sorted();
        const from = after ? rows.findIndex((r) => r.id === after.id) + 1 : 0;
        return { rows: rows.slice(from, from + PAGE), more: from + PAGE < rows.length };
      };
      let first = page(undefined);
      let list = first.rows;
      let more = first.more;
      let now = 100;
      for (let step = 0; step < 200; step++) {
        const r = rand();
        const id = `dm:u${Math.floor(rand() * 40)}`;
        if (r < 0.2) {
          const next = page(list.at(-1));
          list = appendConversations(list, next.rows);
          more = next.more;
        } else if (r < 0.6) {
          // A new message: the conversation (maybe a new one) moves to the top.
          const row = conv(id, now++, (all.get(id)?.unread ?? 0) + 1);
          all.set(id, row);
          list = mergeConversations(list, [row], !more);
        } else if (all.has(id)) {
          // A read mark, an edit: same place, new fields.
          const row = { ...all.get(id)!, unread: 0, last_text: `t${step}` };
          all.set(id, row);
          list = mergeConversations(list, [row], !more);
        }
        expect(list).toEqual(sorted().slice(0, list.length));
        if (!more) expect(list.length).toBe(all.size);
      }
    }
  });

  it("an edited or deleted message changes in place, even above the loaded window's edge", () => {
    const window = [row(1, 10, 1, "a"), row(2, 20, 2, "b"), row(3, 30, 3, "c")];
    const edited = { ...row(2, 20, 2, "b2"), edited_at: 99 };
    const deleted = { ...row(1, 10, 1, ""), deleted: true };
    const next = mergeWindow(window, [edited, deleted], false);
    expect(next.map((m) => [m.local_id, m.text, m.edited_at, m.deleted])).toEqual([
      [1, "", null, true],
      [2, "b2", 99, false],
      [3, "c", null, false],
    ]);
    // A change to a row older than the window (not loaded) does not pull it in.
    const above = mergeWindow(window.slice(1), [deleted], false);
    expect(above.map((m) => m.local_id)).toEqual([2, 3]);
  });

  it("an outbox change moves the local copy's state", () => {
    const mine = { ...row(9, 50, 2 ** 62, "eu"), client_id: "c-1", state: "pending" as const };
    const other = row(8, 40, 8, "x");
    const wedged: OutboxChange = { client_id: "c-1", state: "wedged" };
    expect(patchOutbox([other, mine], wedged).map((m) => m.state)).toEqual(["sent", "failed"]);
    const sent: OutboxChange = { client_id: "c-1", state: "sent" };
    const rows = [other, mine];
    expect(patchOutbox(rows, sent)).toBe(rows);
  });
});

describe("an open conversation under sustained traffic", () => {
  it("stays bounded, keeps the newest rows, and pages the cut ones back in from the cache", () => {
    const MAX = 400;
    const KEEP = 300;
    const PAGE = 60;
    // The cache receives 5,000 messages in batches; the screen merges each batch and bounds.
    const cache: MessageRow[] = [];
    let shown: MessageRow[] = [];
    let complete = true;
    let largest = 0;
    for (let i = 1; i <= 5000; i += 10) {
      const batch: MessageRow[] = [];
      for (let j = i; j < i + 10; j++) batch.push(row(j, 1000 + j, j, `m${j}`));
      cache.push(...batch);
      shown = mergeWindow(shown, batch, complete);
      const cut = boundWindow(shown, MAX, KEEP);
      if (cut) {
        shown = cut;
        complete = false;
      }
      largest = Math.max(largest, shown.length);
      // Always the newest rows, contiguous, ending with the last one received.
      expect(shown[shown.length - 1].local_id).toBe(i + 9);
      expect(shown.map((m) => m.local_id)).toEqual(cache.slice(cache.length - shown.length).map((m) => m.local_id));
    }
    expect(largest).toBeLessThanOrEqual(MAX);
    expect(shown.length).toBeGreaterThanOrEqual(KEEP);
    expect(complete).toBe(false);
    // Scrolling up: keyset pages before the oldest shown row bring the history back, in order.
    while (shown[0].local_id > 1) {
      const oldest = shown[0].key;
      const page = cache.filter((m) => older(m.key, oldest)).slice(-PAGE);
      shown = [...page, ...shown];
    }
    expect(shown.map((m) => m.local_id)).toEqual(cache.map((m) => m.local_id));
    // A window within the bound is left alone (same array: nothing to re-render).
    expect(boundWindow(shown.slice(0, MAX), MAX, KEEP)).toBeNull();
  });
});

describe("opening a conversation at its unread messages", () => {
  const start = (rows_since: number) => ({ key: { at: 1, sk: 1 }, server_id: 7, rows_since });
  it("loads a page when nothing is unread or the stretch fits in one", () => {
    expect(openingLimit(null, 60, 500)).toBe(60);
    expect(openingLimit(start(3), 60, 500)).toBe(60);
  });
  it("loads the whole stretch and some context, up to the cap", () => {
    expect(openingLimit(start(200), 60, 500)).toBe(200 + UNREAD_CONTEXT);
    expect(openingLimit(start(1000), 60, 500)).toBe(500);
  });
});
