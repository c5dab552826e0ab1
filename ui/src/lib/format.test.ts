import { describe, expect, it } from "vitest";
import { aroundName, clockToMinute, dmPeer, isSendKey, mergeRows, minuteToClock, refreshTail, unseenCount } from "./format";

const row = (local_id: number, at: number, sk = local_id) => ({ local_id, key: { at, sk } });

describe("format helpers", () => {
  it("Enter sends, Shift+Enter and IME composition do not", () => {
    expect(isSendKey({ key: "Enter", shiftKey: false })).toBe(true);
    expect(isSendKey({ key: "Enter", shiftKey: true })).toBe(false);
    expect(isSendKey({ key: "Enter", shiftKey: false, isComposing: true })).toBe(false);
    expect(isSendKey({ key: "a", shiftKey: false })).toBe(false);
  });

  it("names DM peers", () => {
    expect(dmPeer("dm:joao")).toBe("joao");
    expect(dmPeer("public")).toBeNull();
    expect(dmPeer("dm:")).toBeNull();
  });

  it("counts unseen notifications", () => {
    expect(unseenCount([{ at: 1 }, { at: 5 }, { at: 9 }], 5)).toBe(1);
  });

  it("merges rows by id in (at, sk) order", () => {
    const merged = mergeRows([row(1, 10), row(2, 20)], [row(2, 25), row(3, 5)]);
    expect(merged.map((r) => r.local_id)).toEqual([3, 1, 2]);
  });

  it("refreshes the newest page and keeps older rows; discarded rows go away", () => {
    const loaded = [row(1, 1), row(2, 2), row(3, 3), row(4, 4)];
    // A full fresh page (limit 2) covering rows 3.. where 4 was discarded and 5 arrived.
    expect(refreshTail(loaded, [row(5, 5), row(3, 3)], 2).map((r) => r.local_id)).toEqual([1, 2, 3, 5]);
    // A short page covers everything.
    expect(refreshTail(loaded, [row(1, 1)], 10).map((r) => r.local_id)).toEqual([1]);
  });
});

describe("quiet-hours clock", () => {
  it("turns minutes into HH:MM and back", () => {
    expect(minuteToClock(0)).toBe("00:00");
    expect(minuteToClock(22 * 60)).toBe("22:00");
    expect(minuteToClock(7 * 60 + 5)).toBe("07:05");
    expect(minuteToClock(1440 + 61)).toBe("01:01");
    for (let m = 0; m < 1440; m += 7) expect(clockToMinute(minuteToClock(m))).toBe(m);
  });
  it("refuses what is not a time of day", () => {
    expect(clockToMinute("07:30:00")).toBe(450);
    for (const bad of ["", "24:00", "12:60", "7", "ab:cd", "12:5"]) expect(clockToMinute(bad)).toBeNull();
  });
});

describe("aroundName", () => {
  it("splits a sentence around its name, wherever the name is", () => {
    expect(aroundName("{actor} liked your post", "{actor}")).toEqual(["", " liked your post"]);
    expect(aroundName("Veja: {actor} respondeu", "{actor}")).toEqual(["Veja: ", " respondeu"]);
    expect(aroundName("no name here", "{actor}")).toEqual(["no name here", ""]);
  });
});
