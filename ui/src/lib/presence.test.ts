import { describe, expect, it } from "vitest";
import { MAX_WATCH, presenceWatchOf } from "./presence";

describe("presenceWatchOf", () => {
  it("unites the screens' users without repeats, in the order first wanted", () => {
    const w = presenceWatchOf([
      { users: ["bia", "ana", "bia"], publicTyping: false },
      { users: ["caio", "ana"], publicTyping: false },
    ]);
    expect(w).toEqual({ users: ["bia", "ana", "caio"], publicTyping: false });
  });

  it("wants the public room's typing while any screen is the public room", () => {
    expect(presenceWatchOf([]).publicTyping).toBe(false);
    expect(
      presenceWatchOf([
        { users: [], publicTyping: true },
        { users: ["ana"], publicTyping: false },
      ]).publicTyping,
    ).toBe(true);
  });

  it("keeps at most MAX_WATCH users, the first ones", () => {
    const many = Array.from({ length: MAX_WATCH + 50 }, (_, i) => `u${i}`);
    const w = presenceWatchOf([{ users: many, publicTyping: false }]);
    expect(w.users).toHaveLength(MAX_WATCH);
    expect(w.users[0]).toBe("u0");
    expect(w.users[MAX_WATCH - 1]).toBe(`u${MAX_WATCH - 1}`);
  });
});
