import { describe, expect, it } from "vitest";
import type { OutboxEntry } from "./bindings/papo";
import { translate } from "./i18n";
import { actionText, byClientId, reasonText, wedgedIn } from "./outbox";

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
