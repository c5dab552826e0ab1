import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { draftKeeper, type DraftShell } from "./drafts";

function shell(initial: Record<string, string> = {}) {
  const store = new Map(Object.entries(initial));
  const writes: [string, string][] = [];
  const s: DraftShell = {
    draft: async (c) => store.get(c) ?? null,
    setDraft: async (c, t) => {
      writes.push([c, t]);
      if (t) store.set(c, t);
      else store.delete(c);
    },
  };
  return { s, store, writes };
}

describe("draftKeeper", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("writes once typing pauses, only the last text", async () => {
    const { s, writes } = shell();
    const k = draftKeeper(s, () => "dm:joao", 400);
    await k.load();
    k.changed("o");
    k.changed("oi");
    vi.advanceTimersByTime(399);
    expect(writes).toEqual([]);
    k.changed("oi joao");
    vi.advanceTimersByTime(400);
    expect(writes).toEqual([["dm:joao", "oi joao"]]);
  });

  it("flush writes at once, cancels the pending write, and skips an unchanged text", async () => {
    const { s, writes, store } = shell({ public: "hello" });
    const k = draftKeeper(s, () => "public", 400);
    expect(await k.load()).toBe("hello");
    k.flush("hello");
    expect(writes).toEqual([]);
    k.changed("hello w");
    k.flush("hello world");
    vi.advanceTimersByTime(1000);
    expect(writes).toEqual([["public", "hello world"]]);
    // Sent: the composer is empty, the draft goes.
    k.flush("");
    await Promise.resolve();
    expect(store.has("public")).toBe(false);
    expect(writes.at(-1)).toEqual(["public", ""]);
  });

  it("a blank text removes the draft; no conversation keeps nothing", async () => {
    const { s, writes } = shell({ "dm:ana": "x" });
    const k = draftKeeper(s, () => "dm:ana", 10);
    await k.load();
    k.flush("   ");
    expect(writes).toEqual([["dm:ana", ""]]);
    const none = draftKeeper(s, () => null, 10);
    expect(await none.load()).toBeNull();
    none.flush("text");
    expect(writes.length).toBe(1);
  });

  it("a failed write is tried again with the next change", async () => {
    const writes: string[] = [];
    let fail = true;
    const s: DraftShell = {
      draft: async () => null,
      setDraft: async (_c, t) => {
        writes.push(t);
        if (fail) throw new Error("cache closed");
      },
    };
    const k = draftKeeper(s, () => "public", 10);
    k.flush("a");
    await Promise.resolve();
    await Promise.resolve();
    fail = false;
    k.flush("a");
    expect(writes).toEqual(["a", "a"]);
  });
});
