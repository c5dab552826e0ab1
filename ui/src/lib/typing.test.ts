import { describe, expect, it } from "vitest";
import { TYPING_TTL_MS, TypingTracker } from "./typing";

describe("typing indicators", () => {
  it("shows who types, not me, and expires on its own", () => {
    const t = new TypingTracker();
    t.set("public", "joao", true, 0);
    t.set("public", "ana", true, 0);
    t.set("public", "bia", true, 0);
    expect(t.typing("public", 1, "ana")).toEqual(["bia", "joao"]);
    t.set("public", "bia", false, 2);
    expect(t.typing("public", 3, "ana")).toEqual(["joao"]);
    expect(t.typing("public", TYPING_TTL_MS + 1, "ana")).toEqual([]);
    expect(t.typing("dm:x", 0)).toEqual([]);
  });
});
