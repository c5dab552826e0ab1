//! Drafts: the unsent text of a conversation's composer, one per conversation.

use super::Cache;
use crate::rows::{now_ms, Result};
use rusqlite::{params, OptionalExtension};

/// The longest draft kept, in characters (a few messages' worth: a draft may be longer than
/// one message can be, and is cut down before it is sent).
pub const MAX_DRAFT_CHARS: usize = 4 * papo_protocol::MAX_TEXT_CHARS;

impl Cache {
    /// The conversation's draft, if there is one.
    pub fn draft(&self, conversation: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT text FROM drafts WHERE conversation = ?1")?
                    .query_row([conversation], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    /// Keeps `text` as the conversation's draft; a blank text removes it. The caller checks
    /// the length ([`MAX_DRAFT_CHARS`]).
    pub fn set_draft(&self, conversation: &str, text: &str) -> Result<()> {
        let conn = self.writer.lock().unwrap();
        if text.trim().is_empty() {
            conn.prepare_cached("DELETE FROM drafts WHERE conversation = ?1")?
                .execute([conversation])?;
        } else {
            conn.prepare_cached(
                "INSERT INTO drafts(conversation, text, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(conversation) DO UPDATE SET text = excluded.text, \
                 updated_at = excluded.updated_at",
            )?
            .execute(params![conversation, text, now_ms()])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_kept_per_conversation_replaced_cleared_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let cache = Cache::open(&path).unwrap();
        assert_eq!(cache.draft("dm:joao").unwrap(), None);
        cache.set_draft("dm:joao", "oi, amanhã às").unwrap();
        cache.set_draft("public", "hello").unwrap();
        cache.set_draft("dm:joao", "oi, amanhã às 10?").unwrap();
        assert_eq!(
            cache.draft("dm:joao").unwrap().as_deref(),
            Some("oi, amanhã às 10?")
        );
        drop(cache);

        let cache = Cache::open(&path).unwrap();
        assert_eq!(
            cache.draft("dm:joao").unwrap().as_deref(),
            Some("oi, amanhã às 10?")
        );
        assert_eq!(cache.draft("public").unwrap().as_deref(), Some("hello"));
        cache.set_draft("public", "  \n").unwrap();
        assert_eq!(cache.draft("public").unwrap(), None);
        assert_eq!(
            cache.draft("dm:joao").unwrap().as_deref(),
            Some("oi, amanhã às 10?")
        );
    }

    #[test]
    fn sign_out_erases_drafts() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache.sqlite")).unwrap();
        cache.set_draft("dm:joao", "segredo").unwrap();
        cache.wipe().unwrap();
        assert_eq!(cache.draft("dm:joao").unwrap(), None);
    }
}
