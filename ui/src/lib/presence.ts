// What the app asks the server to send presence for (see `presence:watch` in docs/protocol.md).
/** Most users one connection may watch (`MAX_WATCH` in the protocol). */
export const MAX_WATCH = 200;

/** The union of what the mounted screens want: users in the order first wanted, at most
 * MAX_WATCH, without repeats; the public room's typing if any screen is the public room. */
export function presenceWatchOf(wants: { users: string[]; publicTyping: boolean }[]) {
  const users: string[] = [];
  const seen = new Set<string>();
  for (const w of wants)
    for (const u of w.users)
      if (!seen.has(u) && users.length < MAX_WATCH) {
        seen.add(u);
        users.push(u);
      }
  return { users, publicTyping: wants.some((w) => w.publicTyping) };
}
