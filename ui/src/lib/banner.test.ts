import { describe, expect, it } from "vitest";
import { bannerFor } from "./banner";

const ctx = { everConnected: true, hasCache: true, now: 10_000 };

describe("connection banner", () => {
  it("says connected / connecting", () => {
    expect(bannerFor({ state: "connected" }, ctx).kind).toBe("connected");
    expect(bannerFor({ state: "connecting", attempt: 2 }, ctx)).toMatchObject({ kind: "connecting", canRetry: false });
  });

  it("counts down to the next attempt and offers retry now", () => {
    const b = bannerFor({ state: "retrying", attempt: 3, at: 14_200, in_ms: 4200, reason: "closed" }, ctx);
    expect(b).toEqual({ kind: "retrying", seconds: 5, canRetry: true, canSignIn: false });
    const past = bannerFor({ state: "retrying", attempt: 3, at: 9_000, in_ms: 0, reason: "closed" }, ctx);
    expect(past.seconds).toBe(0);
  });

  it("says offline, reading cached data, when it never connected this run", () => {
    const b = bannerFor(
      { state: "retrying", attempt: 1, at: 12_000, in_ms: 2000, reason: "refused" },
      { ...ctx, everConnected: false },
    );
    expect(b.kind).toBe("offline");
    expect(b.canRetry).toBe(true);
  });

  it("says signed out with a sign-in button", () => {
    expect(bannerFor({ state: "signed_out", reason: "token_invalid", account_deleted: false, suspended: false }, ctx)).toMatchObject({
      kind: "signed_out",
      canSignIn: true,
    });
    expect(
      bannerFor({ state: "signed_out", reason: "moderated", account_deleted: false, suspended: true }, ctx),
    ).toMatchObject({ kind: "suspended", canSignIn: true, canRetry: false });
    expect(bannerFor({ state: "signed_out", reason: "gone", account_deleted: true, suspended: false }, ctx)).toMatchObject({
      kind: "account_deleted",
      canSignIn: true,
    });
  });
});
