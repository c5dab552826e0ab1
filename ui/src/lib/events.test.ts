import { describe, expect, it } from "vitest";
import type { UiEvent } from "./bindings/papo";
import { reloadsEverything } from "./events";

const log = (body: object): UiEvent =>
  ({ kind: "core", payload: { event: "log", data: { stream: "public", seq: 1, at: 1, ...body } } }) as UiEvent;

describe("which events make the screens read the cache again", () => {
  it("a reset, a resync or a sign-out reloads everything", () => {
    expect(reloadsEverything({ kind: "resync" })).toBe(true);
    // Sign-out erased the cache: nothing on screen may stay from the old user.
    expect(reloadsEverything({ kind: "signed_out" })).toBe(true);
    const reset: UiEvent = {
      kind: "core",
      payload: { event: "sync", data: { state: "reset", epoch: "e", heads: { public: 0, private: 0 } } },
    };
    expect(reloadsEverything(reset)).toBe(true);
  });

  it("ordinary events do not: their rows come in change sets", () => {
    expect(reloadsEverything(log({ type: "dm.message", data: { id: 1, from: "joao", to: "ana", text: "x", at: 1 } }))).toBe(false);
    expect(reloadsEverything({ kind: "core", payload: { event: "outbox", data: { client_id: "c", state: "sent" } } })).toBe(false);
    const live: UiEvent = {
      kind: "core",
      payload: { event: "sync", data: { state: "live", epoch: "e", heads: { public: 3, private: 1 } } },
    };
    expect(reloadsEverything(live)).toBe(false);
  });
});
