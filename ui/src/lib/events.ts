// What a shell event means for the screens. The core publishes the rows each write changed
// (`changes` events, applied by the screens through ./views); only these events make the
// screens read their views from the cache again, because what was shown may be gone.
import type { UiEvent } from "./bindings/papo";

/** The event invalidates everything on screen: read every view again. */
export function reloadsEverything(ev: UiEvent): boolean {
  // The UI fell behind the core's stream, or sign-out erased the cache.
  if (ev.kind === "resync" || ev.kind === "signed_out") return true;
  // The server could not serve our cursor: the cache was emptied and is being refilled.
  return ev.kind === "core" && ev.payload.event === "sync" && ev.payload.data.state === "reset";
}
