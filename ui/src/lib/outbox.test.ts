import { describe, expect, it } from "vitest";
import type { OutboxEntry } from "./bindings/papo";
import { translate } from "./i18n";
import {
  actionText,
  byClientId,
  fetchWedged,
  reasonText,
  touchesWedged,
  wedgedActions,
  wedgedIn,
  type OutboxApi,
} from "./outbox";

const t = (key: Parameters<typeof translate>[1], vars?: Record<string, string | number>) => translate("en", key, vars);

const entry = (over: Partial<OutboxEntry>): OutboxEntry => ({
  client_id: "c1",
  event: "dm:send",
  conversation: "dm:bia",
  text: "oi",
  state: "wedged",
  attempts: 5,
  error: null,
  wedge: { code: "no_answer", attempts: 5 },
  ...over,
});

describe("wedged outbox items", () => {
  const entries = [
    entry({ client_id: "a" }),
    entry({ client_id: "b", conversation: "public", event: "chat:send" }),
    entry({ client_id: "c", state: "pending", wedge: null }),
    entry({ client_id: "d", conversation: "feed", event: "post:like", text: null }),
    entry({ client_id: "e", conversation: "follows", event: "user:follow", text: null }),
  ];

  it("are shown in the conversation they belong to, pending ones are not", () => {
    expect(wedgedIn(entries, "dm:bia").map((e) => e.client_id)).toEqual(["a"]);
    expect(wedgedIn(entries, "public").map((e) => e.client_id)).toEqual(["b"]);
    expect(wedgedIn(entries, "feed").map((e) => e.client_id)).toEqual(["d", "e"]);
    expect(wedgedIn(entries, "dm:caio")).toEqual([]);
    expect([...byClientId(entries).keys()]).toEqual(["a", "b", "d", "e"]);
  });

  it("say why they are stuck", () => {
    expect(reasonText({ code: "no_answer", attempts: 5 }, t)).toBe("No answer from the server after 5 attempts");
    expect(
      reasonText({ code: "refused", error: { code: "not_found", message: 'no user named "zed"' } }, t),
    ).toBe('Refused by the server: no user named "zed"');
    expect(reasonText({ code: "refused", error: { code: "forbidden", message: "" } }, t)).toBe(
      "Refused by the server: forbidden",
    );
    expect(reasonText(null, t)).toBe("Not sent");
    expect(translate("pt-BR", "outbox.no_answer", { attempts: 5 })).toBe("Sem resposta do servidor após 5 tentativas");
  });

  it("say what the stuck action was", () => {
    expect(actionText(entries[0], t)).toBe("Message: “oi”");
    expect(actionText(entries[3], t)).toBe("Like");
    expect(actionText(entry({ event: "something:new", text: null }), t)).toBe("Action");
  });
});

/** The shell's outbox commands over an in-memory outbox, like the core's: `wedgedOutbox` lists
 * the wedged items of one queue (or all), Retry puts an item back to pending, Discard deletes it. */
function shell(items: OutboxEntry[]) {
  const calls: string[] = [];
  let broken = false;
  const s: OutboxApi & { calls: string[]; items: OutboxEntry[]; breakAll: () => void } = {
    calls,
    items,
    breakAll: () => (broken = true),
    wedgedOutbox: async (conversation) => {
      calls.push(`list ${conversation}`);
      if (broken) throw { code: "cache", message: "sqlite: disk I/O error" };
      return s.items.filter((e) => e.state === "wedged" && (conversation === null || e.conversation === conversation));
    },
    retryOutbox: async (cid) => {
      calls.push(`retry ${cid}`);
      if (broken) throw { code: "cache", message: "sqlite: disk I/O error" };
      const e = s.items.find((i) => i.client_id === cid && i.state === "wedged");
      if (!e) return null;
      e.state = "pending";
      e.wedge = null;
      return cid;
    },
    discardOutbox: async (cid) => {
      calls.push(`discard ${cid}`);
      if (broken) throw { code: "cache", message: "sqlite: disk I/O error" };
      const before = s.items.length;
      s.items = s.items.filter((i) => i.client_id !== cid);
      return s.items.length < before;
    },
  };
  return s;
}

describe("wedged outbox actions", () => {
  const items = () => [
    entry({ client_id: "a" }),
    entry({ client_id: "b", conversation: "public", event: "chat:send" }),
    entry({ client_id: "d", conversation: "feed", event: "post:like", text: null }),
    entry({ client_id: "e", conversation: "follows", event: "user:follow", text: null }),
  ];

  it("read a conversation's own queue, and the feed's two", async () => {
    const sh = shell(items());
    expect((await fetchWedged(sh, "dm:bia")).map((e) => e.client_id)).toEqual(["a"]);
    expect((await fetchWedged(sh, "feed")).map((e) => e.client_id)).toEqual(["d", "e"]);
    expect(sh.calls).toEqual(["list dm:bia", "list null"]);
    sh.breakAll();
    expect(await fetchWedged(sh, "feed")).toEqual([]);
  });

  it("retry, then show the list as it is now", async () => {
    const sh = shell(items());
    let shown: string[] = ["d", "e"];
    const failed: unknown[] = [];
    const act = wedgedActions({
      view: "feed",
      shell: sh,
      show: (entries) => (shown = entries.map((e) => e.client_id)),
      dropLocal: () => failed.push("dropped"),
      fail: (e) => failed.push(e),
    });
    await act.retry("d");
    expect(shown).toEqual(["e"]);
    expect(sh.calls).toEqual(["retry d", "list null"]);
    expect(sh.items.find((i) => i.client_id === "d")?.state).toBe("pending");
    expect(failed).toEqual([]);
  });

  it("discard drops the local copy and the listed item", async () => {
    const sh = shell(items());
    let shown: string[] = ["a"];
    let local = ["a", "x"];
    const act = wedgedActions({
      view: "dm:bia",
      shell: sh,
      show: (entries) => (shown = entries.map((e) => e.client_id)),
      dropLocal: (cid) => (local = local.filter((l) => l !== cid)),
      fail: (e) => {
        throw e;
      },
    });
    await act.discard("a");
    expect(shown).toEqual([]);
    expect(local).toEqual(["x"]);
    expect(sh.calls).toEqual(["discard a", "list dm:bia"]);
    expect(sh.items.map((i) => i.client_id)).toEqual(["b", "d", "e"]);
  });

  it("report a failed action and leave the view as it was", async () => {
    const sh = shell(items());
    sh.breakAll();
    let shown = ["a"];
    let local = ["a"];
    const failed: unknown[] = [];
    const act = wedgedActions({
      view: "dm:bia",
      shell: sh,
      show: (entries) => (shown = entries.map((e) => e.client_id)),
      dropLocal: (cid) => (local = local.filter((l) => l !== cid)),
      fail: (e) => failed.push(e),
    });
    await act.discard("a");
    await act.retry("a");
    expect(failed).toEqual([
      { code: "cache", message: "sqlite: disk I/O error" },
      { code: "cache", message: "sqlite: disk I/O error" },
    ]);
    expect(shown).toEqual(["a"]);
    expect(local).toEqual(["a"]);
  });

  it("know which outbox changes touch the list", () => {
    const listed = [entry({ client_id: "a" })];
    expect(touchesWedged(listed, { client_id: "z", state: "wedged" })).toBe(true);
    expect(touchesWedged(listed, { client_id: "a", state: "pending" })).toBe(true);
    expect(touchesWedged(listed, { client_id: "z", state: "sent" })).toBe(false);
  });
});
