/** Keeps a composer's unsent text as the conversation's draft in the core's cache. */

export interface DraftShell {
  draft: (conversation: string) => Promise<string | null>;
  setDraft: (conversation: string, text: string) => Promise<void>;
}

/** How long typing must pause before the draft is written. */
export const DRAFT_SAVE_MS = 400;

/**
 * Writes a draft once typing pauses, at once on `flush` (view closed, message sent), and never
 * twice the same text. `conversation()` is read at each call (null: no draft is kept).
 */
export function draftKeeper(shell: DraftShell, conversation: () => string | null, delay = DRAFT_SAVE_MS) {
  let saved: string | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;

  function write(text: string) {
    clearTimeout(timer);
    timer = undefined;
    const id = conversation();
    const value = text.trim() ? text : "";
    if (!id || value === (saved ?? "")) return;
    saved = value;
    shell.setDraft(id, value).catch(() => {
      // Not kept: try again with the next change.
      saved = null;
    });
  }

  return {
    async load(): Promise<string | null> {
      const id = conversation();
      if (!id) return null;
      saved = await shell.draft(id).catch(() => null);
      return saved;
    },
    changed(text: string) {
      clearTimeout(timer);
      timer = setTimeout(() => write(text), delay);
    },
    flush: write,
  };
}
