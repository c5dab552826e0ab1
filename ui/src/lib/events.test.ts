import { describe, expect, it } from "vitest";
import type { UiEvent } from "./bindings/papo";
import { refreshFor } from "./events";

const log = (body: object): UiEvent =>
  ({ kind: "core", payload: { event: "log", data: { stream: "public", seq: 1, at: 1, ...body } } }) as UiEvent;

describe("which views an event refreshes", () => {
  it("a DM refreshes the conversation named from my side", () => {
    const mine = refreshFor(log({ type: "dm.message", data: { id: 1, from: "ana", to: "joao", text: "x", at: 1 } }), "ana");
    expect(mine.messages).toEqual(["dm:joao"]);
    const theirs = refreshFor(log({ type: "dm.message", data: { id: 1, from: "joao", to: "ana", text: "x", at: 1 } }), "ana");
    expect(theirs.messages).toEqual(["dm:joao"]);
    expect(theirs.conversations).toBe(true);
  });

  it("feed events refresh the feed, notifications the list", () => {
    expect(refreshFor(log({ type: "post.liked", data: { post_id: 1, by: "a", like_count: 1 } }), "ana").feed).toBe(true);
    expect(
      refreshFor(log({ type: "notification", data: { id: 1, kind: "like", actor: "a", at: 1 } }), "ana").notifications,
    ).toBe(true);
  });

  it("a reset or a resync refreshes everything", () => {
    expect(refreshFor({ kind: "resync" }, "ana").all).toBe(true);
    // Sign-out erased the cache: nothing on screen may stay from the old user.
    expect(refreshFor({ kind: "signed_out" }, "ana").all).toBe(true);
    const reset: UiEvent = {
      kind: "core",
      payload: { event: "sync", data: { state: "reset", epoch: "e", heads: { public: 0, private: 0 } } },
    };
    expect(refreshFor(reset, "ana").all).toBe(true);
  });

  it("an outbox change refreshes local copies everywhere", () => {
    const r = refreshFor({ kind: "core", payload: { event: "outbox", data: { client_id: "c", state: "sent" } } }, "ana");
    expect(r.messages).toEqual(["*"]);
    expect(r.feed).toBe(true);
  });
});
