// @mentions: the rule of papo_protocol::mentions (docs/protocol.md), for highlighting, and the
// `@` completion's reading of what is being typed.

const NAME = /[a-z0-9_]/;

export type Part = { text: string; mention: string | null };

/** `text` cut into plain runs and `@name` mentions (3–20 username characters, not glued to a
 * username character on either side), as the server reads them. */
export function mentionParts(text: string): Part[] {
  const parts: Part[] = [];
  let plain = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const before = i > 0 ? text[i - 1] : "";
    if (c === "@" && !NAME.test(before)) {
      let j = i + 1;
      while (j < text.length && NAME.test(text[j])) j++;
      const len = j - i - 1;
      if (len >= 3 && len <= 20) {
        if (plain) parts.push({ text: plain, mention: null });
        plain = "";
        parts.push({ text: text.slice(i, j), mention: text.slice(i + 1, j) });
        i = j;
        continue;
      }
    }
    plain += c;
    i++;
  }
  if (plain) parts.push({ text: plain, mention: null });
  return parts;
}

/** The `@prefix` being typed right before the caret (0–20 username characters), or null. */
export function typedMention(text: string, caret: number): { start: number; prefix: string } | null {
  let i = caret;
  while (i > 0 && NAME.test(text[i - 1]) && caret - i < 21) i--;
  if (i === 0 || text[i - 1] !== "@" || caret - i > 20) return null;
  const before = i >= 2 ? text[i - 2] : "";
  if (NAME.test(before)) return null;
  return { start: i - 1, prefix: text.slice(i, caret) };
}

/** `text` with the `@prefix` at `start` replaced by `@name ` (and where the caret goes). */
export function completeMention(text: string, caret: number, start: number, name: string): { text: string; caret: number } {
  const inserted = `@${name} `;
  return { text: text.slice(0, start) + inserted + text.slice(caret), caret: start + inserted.length };
}
