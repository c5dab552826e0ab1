import { describe, expect, it } from "vitest";
import { adminActionOf, formatBytes, formatRate, topRequests } from "./admin";

describe("admin form", () => {
  it("reads ids for posts and comments and names for users, refusing what does not fit", () => {
    expect(adminActionOf("remove_post", " 42 ")).toEqual({ action: "remove_post", post_id: 42 });
    expect(adminActionOf("remove_comment", "7")).toEqual({ action: "remove_comment", comment_id: 7 });
    expect(adminActionOf("suspend", "@ana_1")).toEqual({ action: "suspend", username: "ana_1" });
    expect(adminActionOf("unsuspend", "bia")).toEqual({ action: "unsuspend", username: "bia" });
    for (const bad of ["", "0", "-3", "1.5", "abc", "12345678901234567"]) {
      expect(adminActionOf("remove_post", bad)).toBeNull();
    }
    for (const bad of ["", "Ana", "ab", "a b", "toolongnamexxxxxxxxxx", "42!"]) {
      expect(adminActionOf("suspend", bad)).toBeNull();
    }
  });
});

describe("admin stats", () => {
  it("lists the busiest request kinds first and leaves out idle ones", () => {
    expect(topRequests({ "chat:send": 3, "sys:ping": 0.2, "post:like": 3, unknown: 0, x: undefined }, 2)).toEqual([
      ["chat:send", 3],
      ["post:like", 3],
    ]);
  });
  it("formats rates and sizes", () => {
    expect(formatRate(0.25)).toBe("0.3/s");
    expect(formatRate(12.4)).toBe("12/s");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(250 * 1024 * 1024)).toBe("250 MiB");
  });
});
