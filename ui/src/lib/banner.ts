// What the connection banner says: a pure function of the core's connection state, so it can
// be tested without a webview.
import type { ConnectionState } from "./bindings/papo";

export type BannerKind =
  | "connected"
  | "connecting"
  | "retrying"
  | "offline"
  | "signed_out"
  | "account_deleted"
  | "suspended";

export interface Banner {
  kind: BannerKind;
  /** Seconds until the next attempt (retrying / offline while retrying). */
  seconds?: number;
  /** Show the "retry now" button. */
  canRetry: boolean;
  /** Show the "sign in" button. */
  canSignIn: boolean;
}

export interface BannerContext {
  /** A connection was up at some point since the app started. */
  everConnected: boolean;
  /** The cache has data of a signed-in user (the app can be read offline). */
  hasCache: boolean;
  /** Current wall-clock time (ms). */
  now: number;
}

export function bannerFor(state: ConnectionState, ctx: BannerContext): Banner {
  switch (state.state) {
    case "connected":
      return { kind: "connected", canRetry: false, canSignIn: false };
    case "connecting":
      return { kind: "connecting", canRetry: false, canSignIn: false };
    case "retrying": {
      const seconds = Math.max(0, Math.ceil((state.at - ctx.now) / 1000));
      const kind = !ctx.everConnected && ctx.hasCache ? "offline" : "retrying";
      return { kind, seconds, canRetry: true, canSignIn: false };
    }
    case "signed_out":
      // Deleted from another device: nothing of it is left to read here. Suspended: the cache
      // stays readable, signing in is refused until a moderator lifts it.
      if (state.account_deleted) return { kind: "account_deleted", canRetry: false, canSignIn: true };
      if (state.suspended) return { kind: "suspended", canRetry: false, canSignIn: true };
      return { kind: "signed_out", canRetry: false, canSignIn: true };
    case "stopped":
      return { kind: "offline", canRetry: false, canSignIn: false };
  }
}
