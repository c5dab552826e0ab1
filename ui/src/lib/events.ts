// What a core event means for the screens: which views must re-read the cache. The cache is the
// source of truth; events only say "something changed here".
import type { UiEvent } from "./bindings/papo";

export interface Refresh {
  feed: boolean;
  conversations: boolean;
  /** Conversation ids whose messages changed (`*` = all of them). */
  messages: string[];
  notifications: boolean;
  /** Everything (sync reset, resync after a lag). */
  all: boolean;
}

export function none(): Refresh {
  return { feed: false, conversations: false, messages: [], notifications: false, all: false };
}

/** `me` is needed to name a DM's conversation from my side. */
export function refreshFor(ev: UiEvent, me: string | null): Refresh {
  const r = none();
  // Sign-out erases the cache: every view re-reads (and shows nothing of the old user).
  if (ev.kind === "resync" || ev.kind === "signed_out") {
    r.all = true;
    return r;
  }
  if (ev.kind !== "core") return r;
  const core = ev.payload;
  switch (core.event) {
    case "log": {
      const body = core.data;
      switch (body.type) {
        case "chat.message":
          r.messages.push("public");
          r.conversations = true;
          break;
        case "dm.message": {
          const peer = body.data.from === me ? body.data.to : body.data.from;
          r.messages.push(`dm:${peer}`);
          r.conversations = true;
          break;
        }
        case "read.updated":
          r.conversations = true;
          r.messages.push(body.data.conversation);
          break;
        case "notification":
          r.notifications = true;
          break;
        default:
          r.feed = true;
      }
      break;
    }
    case "sync":
      if (core.data.state === "reset") r.all = true;
      break;
    case "outbox":
      // A pending item became sent or wedged: its local copy (and the wedged lists) changed.
      r.feed = true;
      r.conversations = true;
      r.messages.push("*");
      break;
    default:
      break;
  }
  return r;
}
