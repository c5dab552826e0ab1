// Who is typing where. Indicators expire on their own (a lost "stopped typing" must not leave a
// ghost indicator).

export const TYPING_TTL_MS = 6000;

export class TypingTracker {
  private until = new Map<string, Map<string, number>>();

  set(conversation: string, username: string, typing: boolean, now: number): void {
    let users = this.until.get(conversation);
    if (!users) {
      users = new Map();
      this.until.set(conversation, users);
    }
    if (typing) users.set(username, now + TYPING_TTL_MS);
    else users.delete(username);
  }

  /** Users typing in a conversation, sorted, excluding `me`. */
  typing(conversation: string, now: number, me?: string | null): string[] {
    const users = this.until.get(conversation);
    if (!users) return [];
    return [...users.entries()]
      .filter(([u, t]) => t > now && u !== me)
      .map(([u]) => u)
      .sort();
  }
}
