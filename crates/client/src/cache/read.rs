//! Reads on the reader connection: pages, the conversation list, search, presence.

use super::fts::{fts_query, indexed_up_to, Matcher};
use super::Cache;
use crate::rows::{
    comment_row, conversation_row, message_row, notification_row, post_row, AroundPage, CommentRow,
    ConversationPage, ConversationRow, FollowList, HitKind, MessageRow, PageKey, PostRow, Profile,
    Result, SearchHit, UnreadCounts, UnreadStart, COMMENT_COLUMNS, MESSAGE_COLUMNS,
    NOTIFICATION_COLUMNS, POST_COLUMNS, POST_FROM, UNREAD_START_COUNT_CAP,
};
use papo_protocol::{Millis, Notification};
use rusqlite::{params, Connection, OptionalExtension};

/// The most DM conversations one page of the list holds.
pub const MAX_CONVERSATIONS_PAGE: usize = 500;

/// One page of DM conversations older than `(?1, ?2)`, most recent first, `?3` rows at most.
pub(super) const CONVERSATIONS_PAGE_SQL: &str =
    "SELECT c.id, c.last_at, c.last_sender, c.last_text, COALESCE(u.count, 0) \
     FROM conversations c LEFT JOIN unread u ON u.conversation = c.id \
     WHERE c.id != 'public' AND (c.last_at, c.id) < (?1, ?2) \
     ORDER BY c.last_at DESC, c.id DESC LIMIT ?3";

impl Cache {
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.with(f)
    }

    /// One page of a conversation, newest first, strictly older than `before`.
    pub fn conversation_page(
        &self,
        conversation: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<MessageRow>> {
        let before = before.unwrap_or(PageKey {
            at: i64::MAX,
            sk: i64::MAX,
        });
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} \
                 FROM messages WHERE conversation = ?1 AND (at, sk) < (?2, ?3) \
                 ORDER BY at DESC, sk DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![conversation, before.at, before.sk, limit as i64],
                message_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// One page of a conversation, oldest first, strictly newer than `after` (paging forward
    /// from a window that does not reach the newest message, after a jump to a quote).
    pub fn conversation_page_after(
        &self,
        conversation: &str,
        after: PageKey,
        limit: usize,
    ) -> Result<Vec<MessageRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} \
                 FROM messages WHERE conversation = ?1 AND (at, sk) > (?2, ?3) \
                 ORDER BY at, sk LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![conversation, after.at, after.sk, limit as i64],
                message_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The rows around the message `server_id` of `conversation`: up to `context` older ones,
    /// the message, and up to `context` newer ones, oldest first, each side read in one
    /// snapshot. None when the conversation holds no such message.
    pub fn conversation_around(
        &self,
        conversation: &str,
        server_id: i64,
        context: usize,
    ) -> Result<Option<AroundPage>> {
        self.read(|c| {
            let target = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages \
                     WHERE conversation = ?1 AND server_id = ?2"
                ))?
                .query_row(params![conversation, server_id], message_row)
                .optional()?;
            let Some(target) = target else {
                return Ok(None);
            };
            let side = |sql: &str| -> Result<Vec<MessageRow>> {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND {sql} ?4"
                ))?;
                let rows = st.query_map(
                    params![
                        conversation,
                        target.key.at,
                        target.key.sk,
                        context as i64 + 1
                    ],
                    message_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            };
            let mut older = side("(at, sk) < (?2, ?3) ORDER BY at DESC, sk DESC LIMIT")?;
            let mut newer = side("(at, sk) > (?2, ?3) ORDER BY at, sk LIMIT")?;
            let older_done = older.len() <= context;
            let newer_done = newer.len() <= context;
            older.truncate(context);
            newer.truncate(context);
            older.reverse();
            let target_local_id = target.local_id;
            let mut rows = older;
            rows.push(target);
            rows.extend(newer);
            Ok(Some(AroundPage {
                rows,
                target_local_id,
                older_done,
                newer_done,
            }))
        })
    }

    /// Where the conversation's unread messages begin (the oldest message of someone else past
    /// its read mark), or None when nothing is unread. Reads the `(conversation, server_id)`
    /// index from the read mark, and counts at most [`UNREAD_START_COUNT_CAP`] rows.
    pub fn unread_start(&self, conversation: &str) -> Result<Option<UnreadStart>> {
        self.read(|c| {
            let first = c
                .prepare_cached(
                    "SELECT m.at, m.sk, m.server_id FROM messages m \
                     WHERE m.conversation = ?1 \
                       AND m.server_id > COALESCE((SELECT last_read FROM read_state \
                                                   WHERE conversation = ?1), 0) \
                       AND m.sender != COALESCE((SELECT value FROM meta WHERE key = 'me'), '') \
                       AND m.deleted = 0 \
                     ORDER BY m.server_id LIMIT 1",
                )?
                .query_row([conversation], |r| {
                    Ok((
                        PageKey {
                            at: r.get(0)?,
                            sk: r.get(1)?,
                        },
                        r.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            let Some((key, server_id)) = first else {
                return Ok(None);
            };
            let rows_since: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM messages \
                     WHERE conversation = ?1 AND (at, sk) >= (?2, ?3) LIMIT ?4)",
                )?
                .query_row(
                    params![conversation, key.at, key.sk, UNREAD_START_COUNT_CAP],
                    |r| r.get(0),
                )?;
            Ok(Some(UnreadStart {
                key,
                server_id,
                rows_since,
            }))
        })
    }

    /// The message with this server id (a chat message or DM), if the cache holds it.
    pub fn message_by_server_id(&self, server_id: i64) -> Result<Option<MessageRow>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE kind IN ('chat', 'dm') AND server_id = ?1"
            ))?
            .query_row([server_id], message_row)
            .optional()?)
        })
    }

    /// One page of the feed, newest first, strictly older than `before`.
    pub fn feed_page(
        &self,
        me: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<PostRow>> {
        self.posts_page(me, None, before, limit)
    }

    /// Posts newest first, strictly older than `before`, by `author` or by anyone; each query
    /// is keyset-paged off its own index (`posts_author`, `posts_feed`).
    fn posts_page(
        &self,
        me: &str,
        author: Option<&str>,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<PostRow>> {
        let before = before.unwrap_or(PageKey {
            at: i64::MAX,
            sk: i64::MAX,
        });
        let by = if author.is_some() {
            "p.author = ?5 AND "
        } else {
            ""
        };
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {POST_COLUMNS} \
                 FROM {POST_FROM} WHERE {by}p.deleted = 0 AND (p.at, p.sk) < (?2, ?3) \
                 ORDER BY p.at DESC, p.sk DESC LIMIT ?4"
            ))?;
            let limit = limit as i64;
            let rows = match author {
                Some(a) => st.query_map(params![me, before.at, before.sk, limit, a], post_row)?,
                None => st.query_map(params![me, before.at, before.sk, limit], post_row)?,
            };
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Comments of a post (by server id), oldest first.
    pub fn comments(&self, post_id: i64) -> Result<Vec<CommentRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COMMENT_COLUMNS} FROM comments WHERE post_id = ?1 ORDER BY at, id"
            ))?;
            let rows = st.query_map([post_id], comment_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Notifications, newest first, strictly older than `before` = `(at, id)`.
    pub fn notifications_page(
        &self,
        before: Option<(Millis, i64)>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let (at, id) = before.unwrap_or((i64::MAX, i64::MAX));
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} \
                 FROM notifications WHERE (at, id) < (?1, ?2) ORDER BY at DESC, id DESC LIMIT ?3"
            ))?;
            let rows = st.query_map(params![at, id, limit as i64], notification_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// A page of the conversation list as the app shows it (at most
    /// [`MAX_CONVERSATIONS_PAGE`] rows): the public room pinned above the
    /// list (on the first page only), then the DM conversations most recent first, strictly
    /// older than `before` = `(last_at, id)`, with unread counts (maintained counters) and the
    /// unread total. Its cost grows with `limit`, not with how many conversations exist: the
    /// rows come off `conversations_recent` (`last_at`, and the table's key `id`) backwards.
    pub fn conversations_page(
        &self,
        before: Option<(Millis, String)>,
        limit: usize,
    ) -> Result<ConversationPage> {
        let limit = limit.clamp(1, MAX_CONVERSATIONS_PAGE);
        self.read(|c| {
            let first = before.is_none();
            let (at, id) = before.unwrap_or((i64::MAX, String::new()));
            let mut st = c.prepare_cached(CONVERSATIONS_PAGE_SQL)?;
            let mut rows = st
                .query_map(params![at, id, limit as i64 + 1], conversation_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            let pinned = if first {
                c.prepare_cached(
                    "SELECT c.id, c.last_at, c.last_sender, c.last_text, COALESCE(u.count, 0) \
                     FROM conversations c LEFT JOIN unread u ON u.conversation = c.id \
                     WHERE c.id = 'public'",
                )?
                .query_row([], conversation_row)
                .optional()?
            } else {
                None
            };
            let unread_total = crate::unread::total_in(c)?;
            Ok(ConversationPage {
                pinned,
                rows,
                more,
                unread_total,
            })
        })
    }

    /// Every conversation, most recent first, with its unread count: for tests and tools; the
    /// app reads [`Cache::conversations_page`].
    pub fn conversations(&self) -> Result<Vec<ConversationRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT c.id, c.last_at, c.last_sender, c.last_text, COALESCE(u.count, 0) \
                 FROM conversations c LEFT JOIN unread u ON u.conversation = c.id \
                 ORDER BY c.last_at DESC",
            )?;
            let rows = st.query_map([], conversation_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Full-text search over messages and posts (every word must match; the last as a prefix).
    ///
    /// Per kind, the newest `limit` matches by local id, then all of them by time. Rows the
    /// full-text index holds come off the index; rows applied since the last
    /// [`Cache::index_step`] are scanned and matched with the same rules, so the result does not
    /// depend on how far indexing has got.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let matcher = Matcher::new(query);
        self.read(|c| {
            let mut out = Vec::new();
            // The mark first: a step committing meanwhile only makes the index hold more, and
            // a row found both ways is kept once.
            let mark = indexed_up_to(c, "messages")?;
            let message_hit = |r: &rusqlite::Row<'_>| {
                Ok(SearchHit {
                    kind: HitKind::Message,
                    local_id: r.get(0)?,
                    server_id: r.get(1)?,
                    conversation: Some(r.get(2)?),
                    author: r.get(3)?,
                    text: r.get(4)?,
                    at: r.get(5)?,
                })
            };
            let mut messages = tail_matches(
                c,
                "SELECT id, server_id, conversation, sender, text, at FROM messages \
                 WHERE id > ?1 ORDER BY id DESC",
                mark,
                &matcher,
                limit,
                message_hit,
            )?;
            let mut st = c.prepare_cached(
                // The newest matches by rowid come straight off the full-text index (rows are
                // inserted in log order, so rowid follows time); sorting every match by `at`
                // first made a common word cost ~100 ms on a million messages.
                "SELECT m.id, m.server_id, m.conversation, m.sender, m.text, m.at \
                 FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 \
                       ORDER BY rowid DESC LIMIT ?2) f \
                 JOIN messages m ON m.id = f.rowid",
            )?;
            for row in st.query_map(params![fts, limit as i64], message_hit)? {
                messages.push(row?);
            }
            out.extend(newest(messages, limit));

            let mark = indexed_up_to(c, "posts")?;
            let post_hit = |r: &rusqlite::Row<'_>| {
                Ok(SearchHit {
                    kind: HitKind::Post,
                    local_id: r.get(0)?,
                    server_id: r.get(1)?,
                    conversation: None,
                    author: r.get(2)?,
                    text: r.get(3)?,
                    at: r.get(4)?,
                })
            };
            let mut posts = tail_matches(
                c,
                "SELECT id, server_id, author, text, at FROM posts \
                 WHERE id > ?1 AND deleted = 0 ORDER BY id DESC",
                mark,
                &matcher,
                limit,
                post_hit,
            )?;
            let mut st = c.prepare_cached(
                "SELECT p.id, p.server_id, p.author, p.text, p.at \
                 FROM (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?1 \
                       ORDER BY rowid DESC LIMIT ?2) f \
                 JOIN posts p ON p.id = f.rowid WHERE p.deleted = 0",
            )?;
            for row in st.query_map(params![fts, limit as i64], post_hit)? {
                posts.push(row?);
            }
            out.extend(newest(posts, limit));
            out.sort_by_key(|h| {
                (
                    std::cmp::Reverse(h.at),
                    h.kind == HitKind::Post,
                    std::cmp::Reverse(h.local_id),
                )
            });
            out.truncate(limit);
            Ok(out)
        })
    }

    /// Users last known to be online.
    pub fn online_users(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT username FROM users WHERE online = 1 ORDER BY username")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Up to `limit` usernames the cache knows (from presence, follows and DM conversations)
    /// starting with `prefix`, alphabetically, without `me`: what `@` completion offers.
    pub fn known_users(&self, prefix: &str, me: &str, limit: usize) -> Result<Vec<String>> {
        // Usernames are `a-z`, `0-9`, `_`, all below `~`: a range scan of the primary keys.
        let prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .take(20)
            .collect();
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name FROM ( \
                   SELECT username AS name FROM users \
                   WHERE username >= ?1 AND username < ?1 || '~' \
                   UNION \
                   SELECT substr(id, 4) FROM conversations \
                   WHERE id >= 'dm:' || ?1 AND id < 'dm:' || ?1 || '~') \
                 WHERE name <> ?2 ORDER BY name LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![prefix, me, limit as i64], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// A user's profile header, as far as the cache knows (the public stream carries every
    /// follow, so the counts are everyone's).
    pub fn profile(&self, me: &str, username: &str) -> Result<Profile> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT \
                   COALESCE((SELECT follower_count FROM users WHERE username = ?2), \
                            (SELECT COUNT(*) FROM follows WHERE followee = ?2)), \
                   (SELECT COUNT(*) FROM follows WHERE follower = ?2), \
                   EXISTS (SELECT 1 FROM follows WHERE follower = ?1 AND followee = ?2), \
                   EXISTS (SELECT 1 FROM follows WHERE follower = ?2 AND followee = ?1), \
                   COALESCE((SELECT online FROM users WHERE username = ?2), 0)",
            )?
            .query_row(params![me, username], |r| {
                Ok(Profile {
                    username: username.to_string(),
                    follower_count: r.get(0)?,
                    following_count: r.get(1)?,
                    followed_by_me: r.get(2)?,
                    follows_me: r.get(3)?,
                    online: r.get(4)?,
                })
            })?)
        })
    }

    /// A user's posts, newest first, strictly older than `before` (like [`Cache::feed_page`]).
    pub fn posts_by(
        &self,
        me: &str,
        author: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<PostRow>> {
        self.posts_page(me, Some(author), before, limit)
    }

    /// Who follows `username` (`Followers`) or whom it follows (`Following`), by name, after
    /// `after`, at most `limit`.
    pub fn follow_list(
        &self,
        username: &str,
        list: FollowList,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let sql = match list {
            FollowList::Followers => {
                "SELECT follower FROM follows WHERE followee = ?1 AND follower > ?2 \
                 ORDER BY follower LIMIT ?3"
            }
            FollowList::Following => {
                "SELECT followee FROM follows WHERE follower = ?1 AND followee > ?2 \
                 ORDER BY followee LIMIT ?3"
            }
        };
        self.read(|c| {
            let mut st = c.prepare_cached(sql)?;
            let rows = st.query_map(params![username, after.unwrap_or(""), limit as i64], |r| {
                r.get(0)
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Whether `follower` follows `followee`, as far as the cache knows.
    pub fn follows(&self, follower: &str, followee: &str) -> Result<bool> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM follows WHERE follower = ?1 AND followee = ?2)",
                params![follower, followee],
                |r| r.get(0),
            )?)
        })
    }
}

impl Cache {
    /// Unread messages per conversation (messages from others after the read mark), read off
    /// the maintained counters.
    pub fn unread_counts(&self) -> Result<UnreadCounts> {
        self.read(crate::unread::counts_in)
    }

    /// The same counts by scanning every message: what the counters must always equal.
    #[cfg(test)]
    pub(crate) fn recount_unread(&self, me: &str) -> Result<UnreadCounts> {
        self.read(|c| {
            crate::unread::counts(
                c,
                "SELECT m.conversation, COUNT(*) FROM messages m \
                 LEFT JOIN read_state r ON r.conversation = m.conversation \
                 WHERE m.server_id > COALESCE(r.last_read, 0) AND m.sender != ?1 \
                   AND m.deleted = 0 \
                 GROUP BY m.conversation ORDER BY m.conversation",
                [me],
            )
        })
    }
}

/// The newest `limit` matches (by local id, once each) among rows scanned above the full-text
/// mark, in `sql` (`?1` = the mark, newest first; column 4 of a message, 3 of a post, is text).
fn tail_matches(
    c: &Connection,
    sql: &str,
    mark: i64,
    matcher: &Matcher,
    limit: usize,
    hit: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<SearchHit>,
) -> Result<Vec<SearchHit>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query([mark])?;
    while let Some(r) = rows.next()? {
        let h = hit(r)?;
        if matcher.matches(&h.text) {
            out.push(h);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The `limit` hits with the highest local ids, each once.
fn newest(mut hits: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    hits.sort_by_key(|h| std::cmp::Reverse(h.local_id));
    hits.dedup_by_key(|h| h.local_id);
    hits.truncate(limit);
    hits
}
