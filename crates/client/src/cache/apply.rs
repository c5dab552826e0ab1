//! Writing what the server sent: log events applied exactly once with the cursor, the rows a
//! local action wrote, presence.

use super::{ApplyOutcome, Cache, Result};
use crate::rows::{now_ms, read_cursor, touch_conversation, write_cursor};
use papo_protocol::{EventBody, LogEvent, Millis, Presence, ReplyQuote};
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

impl Cache {
    /// Applies a batch of log events exactly once, in one transaction with the cursor.
    pub fn apply_batch(&self, me: &str, events: &[LogEvent]) -> Result<ApplyOutcome> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let mut cursor = read_cursor(&tx)?;
        let mut out = ApplyOutcome {
            cursor_before: cursor,
            ..Default::default()
        };
        let now = now_ms();
        let mut touched = crate::changes::Touched::default();
        let mut batch = Batch::default();
        for ev in events {
            let stored = cursor.get(ev.stream);
            if ev.seq <= stored {
                out.duplicates += 1;
                continue;
            }
            if ev.seq > stored + 1 {
                out.gap = Some((ev.stream, stored + 1, ev.seq));
                break;
            }
            apply_effects(&tx, me, ev, &mut batch)?;
            touched.event(me, ev);
            if let Some(cid) = ev.cid {
                if crate::outbox::confirm_in_tx(&tx, cid, None, me, now)? {
                    out.confirmed.push(cid);
                }
            }
            cursor.set(ev.stream, ev.seq);
            out.applied.push(ev.clone());
        }
        batch.flush(&tx)?;
        if !out.applied.is_empty() {
            write_cursor(&tx, &cursor)?;
            out.changes = touched.read(&tx, me, false)?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// The rows a local action just wrote (its optimistic copy under `cid`, and the post or
    /// conversation `request` acts on), for the UI.
    pub fn local_changes(
        &self,
        me: &str,
        cid: Uuid,
        request: Option<&papo_protocol::Request>,
    ) -> Result<crate::changes::ChangeSet> {
        use papo_protocol::Request;
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        let mut touched = crate::changes::Touched::default();
        touched.local(&tx, cid)?;
        match request {
            Some(Request::PostEdit(r)) => {
                touched.post(r.post_id);
                touched.shared_changed(r.post_id);
            }
            Some(Request::PostShare(r)) => {
                touched.post(super::outbox::shared_original(&tx, r.post_id)?)
            }
            Some(Request::PostUnshare(r)) => {
                let original = super::outbox::shared_original(&tx, r.post_id)?;
                touched.post(original);
                // My share, just deleted: the UI drops it.
                let mine: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM posts WHERE share_of = ?1 AND author = ?2 AND deleted = 1 \
                         ORDER BY id DESC LIMIT 1",
                        params![original, me],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = mine {
                    touched.local_post(id);
                }
            }
            Some(Request::PostDelete(r)) => {
                touched.post(r.post_id);
                touched.shared_changed(r.post_id);
            }
            Some(Request::PostLike(r) | Request::PostUnlike(r)) => touched.post(r.post_id),
            Some(Request::CommentCreate(r)) => touched.post(r.post_id),
            Some(
                Request::MessageEdit(papo_protocol::MessageEdit { message_id, .. })
                | Request::MessageDelete(papo_protocol::MessageDelete { message_id, .. }),
            ) => {
                let kind: Option<String> = tx
                    .prepare_cached(
                        "SELECT kind FROM messages WHERE kind IN ('chat', 'dm') AND server_id = ?1",
                    )?
                    .query_row([message_id], |r| r.get(0))
                    .optional()?;
                match kind.as_deref() {
                    Some("chat") => touched.message("chat", *message_id),
                    Some(_) => touched.message("dm", *message_id),
                    None => {}
                }
            }
            Some(Request::ReadMark(r)) => touched.conversation(&r.conversation),
            _ => {}
        }
        let changes = touched.read(&tx, me, false)?;
        tx.commit()?;
        Ok(changes)
    }

    /// Records a presence change (ephemeral, but shown offline as "last known").
    pub fn apply_presence(&self, p: &Presence) -> Result<()> {
        let mut conn = self.writer.lock().unwrap();
        let tx = conn.transaction()?;
        if p.snapshot {
            tx.execute("UPDATE users SET online = 0 WHERE online = 1", [])?;
        }
        for (list, online) in [(&p.online, 1), (&p.offline, 0)] {
            for u in list {
                tx.execute(
                    "INSERT INTO users (username, online) VALUES (?1, ?2) \
                     ON CONFLICT(username) DO UPDATE SET online = excluded.online",
                    params![u, online],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Writes a batch makes once per conversation rather than once per message: the conversation
/// list's last message and the unread counters, gathered while the batch runs and written
/// before anything reads them (a read mark moving, the end of the batch).
#[derive(Default)]
struct Batch {
    /// Per conversation: the newest message so far (`at`, sender, text); on equal times the
    /// later one, as one upsert per message in order would leave it.
    last: HashMap<String, (Millis, String, String)>,
    /// Unread messages added per conversation, not yet written.
    unread: HashMap<String, i64>,
    /// Read marks looked up during the batch.
    last_read: HashMap<String, i64>,
}

impl Batch {
    fn touch(&mut self, conversation: &str, at: Millis, sender: &str, text: &str) {
        match self.last.get_mut(conversation) {
            Some(e) if at < e.0 => {}
            Some(e) => *e = (at, sender.to_string(), text.to_string()),
            None => {
                self.last.insert(
                    conversation.to_string(),
                    (at, sender.to_string(), text.to_string()),
                );
            }
        }
    }

    /// A message row was just inserted: count it if it is unread (see [`crate::unread`]).
    fn message_added(
        &mut self,
        tx: &Transaction<'_>,
        me: &str,
        conversation: &str,
        server_id: i64,
        sender: &str,
    ) -> Result<()> {
        if sender == me {
            return Ok(());
        }
        let last_read = match self.last_read.get(conversation) {
            Some(r) => *r,
            None => {
                let r = crate::unread::last_read(tx, conversation)?;
                self.last_read.insert(conversation.to_string(), r);
                r
            }
        };
        if server_id > last_read {
            *self.unread.entry(conversation.to_string()).or_default() += 1;
        }
        Ok(())
    }

    /// Writes what was gathered.
    fn flush(&mut self, tx: &Transaction<'_>) -> Result<()> {
        for (conversation, (at, sender, text)) in self.last.drain() {
            touch_conversation(tx, &conversation, at, &sender, &text)?;
        }
        for (conversation, n) in self.unread.drain() {
            crate::unread::add(tx, &conversation, n)?;
        }
        Ok(())
    }

    /// A read mark moves: counters must be current first, and the cached mark goes.
    fn set_read(&mut self, tx: &Transaction<'_>, conversation: &str, last_read: i64) -> Result<()> {
        self.flush(tx)?;
        self.last_read.remove(conversation);
        set_read(tx, conversation, last_read)
    }
}

#[allow(clippy::too_many_arguments)]
fn upsert_message(
    tx: &Transaction<'_>,
    batch: &mut Batch,
    me: &str,
    kind: &str,
    conversation: &str,
    server_id: i64,
    cid: Option<Uuid>,
    sender: &str,
    text: &str,
    at: Millis,
    reply: Option<&ReplyQuote>,
) -> Result<()> {
    let mut changed = 0;
    if let Some(cid) = cid {
        changed = tx
            .prepare_cached(
                "UPDATE OR IGNORE messages SET server_id = ?1, at = ?2, sk = ?1, state = 'sent' \
                 WHERE client_id = ?3",
            )?
            .execute(params![server_id, at, cid.to_string()])?;
    }
    if changed == 0 {
        // A quote of a message this cache already shows as deleted (my own delete, not yet
        // sent when the reply was written) says so at once.
        changed = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO messages \
                 (kind, conversation, server_id, client_id, sender, text, at, sk, state, \
                  reply_to, reply_from, reply_excerpt) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?3, 'sent', ?7, ?8, \
                   CASE WHEN ?7 IS NULL THEN NULL \
                        WHEN EXISTS (SELECT 1 FROM messages o WHERE o.kind = ?1 \
                                     AND o.server_id = ?7 AND o.deleted = 1) \
                        THEN NULL ELSE ?9 END)",
            )?
            .execute(params![
                kind,
                conversation,
                server_id,
                sender,
                text,
                at,
                reply.map(|q| q.message_id),
                reply.map(|q| q.from.as_str()),
                reply.map(|q| q.excerpt.as_str()),
            ])?;
        if changed > 0 {
            batch.message_added(tx, me, conversation, server_id, sender)?;
        }
    }
    if changed > 0 {
        batch.touch(conversation, at, sender, text);
    }
    Ok(())
}

fn apply_effects(tx: &Transaction<'_>, me: &str, ev: &LogEvent, batch: &mut Batch) -> Result<()> {
    match &ev.body {
        EventBody::ChatMessage(m) => upsert_message(
            tx,
            batch,
            me,
            "chat",
            papo_protocol::conversation::PUBLIC,
            m.id,
            ev.cid,
            &m.from,
            &m.text,
            m.at,
            m.reply_to.as_ref(),
        )?,
        EventBody::DmMessage(m) => upsert_message(
            tx,
            batch,
            me,
            "dm",
            &m.conversation_for(me),
            m.id,
            ev.cid,
            &m.from,
            &m.text,
            m.at,
            m.reply_to.as_ref(),
        )?,
        EventBody::PostCreated(p) => {
            let mut changed = 0;
            if let Some(cid) = ev.cid {
                changed = tx
                    .prepare_cached(
                        "UPDATE OR IGNORE posts SET server_id = ?1, at = ?2, sk = ?1, \
                         like_count = ?3, comment_count = ?4, state = 'sent' WHERE client_id = ?5",
                    )?
                    .execute(params![
                        p.id,
                        p.at,
                        p.like_count,
                        p.comment_count,
                        cid.to_string()
                    ])?;
            }
            if changed == 0 {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO posts (server_id, author, text, at, sk, edited_at, \
                     like_count, comment_count, state, share_count, share_of) \
                     VALUES (?1, ?2, ?3, ?4, ?1, ?5, ?6, ?7, 'sent', ?8, ?9)",
                )?
                .execute(params![
                    p.id,
                    p.author,
                    p.text,
                    p.at,
                    p.edited_at,
                    p.like_count,
                    p.comment_count,
                    p.share_count,
                    p.share_of
                ])?;
            }
        }
        EventBody::PostEdited(e) => {
            tx.prepare_cached("UPDATE posts SET text = ?2, edited_at = ?3 WHERE server_id = ?1")?
                .execute(params![e.post_id, e.text, e.edited_at])?;
        }
        EventBody::PostDeleted(r) => {
            tx.prepare_cached("UPDATE posts SET deleted = 1 WHERE server_id = ?1")?
                .execute([r.post_id])?;
        }
        EventBody::MessageEdited(e) => message_changed(
            tx,
            batch,
            me,
            ev.stream,
            e.message_id,
            Some((&e.text, e.edited_at)),
        )?,
        EventBody::MessageDeleted(r) => {
            message_changed(tx, batch, me, ev.stream, r.message_id, None)?
        }
        EventBody::PostLiked(l) => {
            tx.prepare_cached("INSERT OR IGNORE INTO likes (post_id, username) VALUES (?1, ?2)")?
                .execute(params![l.post_id, l.by])?;
            tx.prepare_cached("UPDATE posts SET like_count = ?2 WHERE server_id = ?1")?
                .execute(params![l.post_id, l.like_count])?;
        }
        EventBody::PostShared(s) | EventBody::PostUnshared(s) => {
            tx.prepare_cached("UPDATE posts SET share_count = ?2 WHERE server_id = ?1")?
                .execute(params![s.post_id, s.share_count])?;
        }
        EventBody::PostUnliked(l) => {
            tx.prepare_cached("DELETE FROM likes WHERE post_id = ?1 AND username = ?2")?
                .execute(params![l.post_id, l.by])?;
            tx.prepare_cached("UPDATE posts SET like_count = ?2 WHERE server_id = ?1")?
                .execute(params![l.post_id, l.like_count])?;
        }
        EventBody::CommentCreated(c) => {
            let cm = &c.comment;
            let mut changed = 0;
            if let Some(cid) = ev.cid {
                changed = tx
                    .prepare_cached(
                        "UPDATE OR IGNORE comments SET server_id = ?1, at = ?2, state = 'sent' \
                         WHERE client_id = ?3",
                    )?
                    .execute(params![cm.id, cm.at, cid.to_string()])?;
            }
            if changed == 0 {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO comments (server_id, post_id, author, text, at, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'sent')",
                )?
                .execute(params![cm.id, cm.post_id, cm.author, cm.text, cm.at])?;
            }
            tx.prepare_cached("UPDATE posts SET comment_count = ?2 WHERE server_id = ?1")?
                .execute(params![cm.post_id, c.comment_count])?;
        }
        EventBody::CommentRemoved(c) => {
            tx.prepare_cached("UPDATE comments SET text = '', removed = 1 WHERE server_id = ?1")?
                .execute([c.comment_id])?;
            tx.prepare_cached("UPDATE posts SET comment_count = ?2 WHERE server_id = ?1")?
                .execute(params![c.post_id, c.comment_count])?;
        }
        EventBody::UserFollowed(f) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO follows (follower, followee) VALUES (?1, ?2)",
            )?
            .execute(params![f.follower, f.followee])?;
            set_follower_count(tx, &f.followee, f.follower_count)?;
        }
        EventBody::UserUnfollowed(f) => {
            tx.prepare_cached("DELETE FROM follows WHERE follower = ?1 AND followee = ?2")?
                .execute(params![f.follower, f.followee])?;
            set_follower_count(tx, &f.followee, f.follower_count)?;
        }
        EventBody::Notification(n) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO notifications \
                 (id, kind, actor, post_id, comment_id, message_id, excerpt, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                n.id,
                n.kind.as_str(),
                n.actor,
                n.post_id,
                n.comment_id,
                n.message_id,
                n.excerpt,
                n.at
            ])?;
        }
        EventBody::ReadUpdated(r) => batch.set_read(tx, &r.conversation, r.last_read)?,
        // Not understood by this build: only its place in the stream counts.
        EventBody::Unknown => {}
    }
    Ok(())
}

/// A message was edited (`Some((text, edited_at))`) or deleted (`None`) by its sender. A
/// message this cache does not hold is left alone (nothing shows it). A deleted message keeps
/// its row with an empty text, stops counting as unread, and the notifications about it stop
/// quoting it; the conversation's last message is read again when it was this one.
fn message_changed(
    tx: &Transaction<'_>,
    batch: &mut Batch,
    me: &str,
    stream: papo_protocol::Stream,
    server_id: i64,
    edit: Option<(&str, Millis)>,
) -> Result<()> {
    let kind = match stream {
        papo_protocol::Stream::Public => "chat",
        papo_protocol::Stream::Private => "dm",
    };
    // Counters and last messages gathered so far must be written before this row changes.
    batch.flush(tx)?;
    let row: Option<(String, String, bool)> = tx
        .prepare_cached(
            "SELECT conversation, sender, deleted FROM messages WHERE kind = ?1 AND server_id = ?2",
        )?
        .query_row(params![kind, server_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
        })
        .optional()?;
    let Some((conversation, sender, deleted)) = row else {
        return Ok(());
    };
    if deleted {
        return Ok(());
    }
    match edit {
        Some((text, edited_at)) => {
            tx.prepare_cached(
                "UPDATE messages SET text = ?3, edited_at = ?4 WHERE kind = ?1 AND server_id = ?2",
            )?
            .execute(params![kind, server_id, text, edited_at])?;
        }
        None => {
            tx.prepare_cached(
                "UPDATE messages SET text = '', deleted = 1 WHERE kind = ?1 AND server_id = ?2",
            )?
            .execute(params![kind, server_id])?;
            tx.prepare_cached("UPDATE notifications SET excerpt = NULL WHERE message_id = ?1")?
                .execute([server_id])?;
            if sender != me && server_id > crate::unread::last_read(tx, &conversation)? {
                crate::unread::remove_one(tx, &conversation)?;
            }
        }
    }
    quote_changed(tx, server_id, edit.map(|(text, _)| text))?;
    refresh_last_text(tx, &conversation)
}

/// The quotes of the replies to a message follow it: its new text after an edit, none (shown
/// as "message deleted") once it is deleted. The change set reads those replies again
/// ([`crate::changes::Touched::read`]). Server ids of chat messages and DMs never collide, and
/// a reply is always of its original's conversation.
pub(super) fn quote_changed(
    tx: &Transaction<'_>,
    server_id: i64,
    text: Option<&str>,
) -> Result<()> {
    tx.prepare_cached("UPDATE messages SET reply_excerpt = ?2 WHERE reply_to = ?1")?
        .execute(params![server_id, text.map(papo_protocol::excerpt)])?;
    Ok(())
}

/// The conversation list shows its newest message's text: read it again after that message
/// may have changed (an edit, a delete).
pub(super) fn refresh_last_text(tx: &Transaction<'_>, conversation: &str) -> Result<()> {
    let newest: Option<(Millis, String, String)> = tx
        .prepare_cached(
            "SELECT at, sender, text FROM messages WHERE conversation = ?1 \
             ORDER BY at DESC, sk DESC LIMIT 1",
        )?
        .query_row([conversation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((at, sender, text)) = newest {
        tx.prepare_cached(
            "UPDATE conversations SET last_text = ?4 \
             WHERE id = ?1 AND last_at = ?2 AND last_sender = ?3",
        )?
        .execute(params![conversation, at, sender, text])?;
    }
    Ok(())
}

pub(super) fn set_read(tx: &Transaction<'_>, conversation: &str, last_read: i64) -> Result<()> {
    let old = crate::unread::last_read(tx, conversation)?;
    if last_read > old {
        crate::unread::read_moved(tx, conversation, old, last_read)?;
    }
    tx.prepare_cached(
        "INSERT INTO read_state (conversation, last_read) VALUES (?1, ?2) \
         ON CONFLICT(conversation) DO UPDATE SET last_read = MAX(last_read, excluded.last_read)",
    )?
    .execute(params![conversation, last_read])?;
    Ok(())
}

fn set_follower_count(tx: &Transaction<'_>, user: &str, count: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO users (username, follower_count) VALUES (?1, ?2) \
         ON CONFLICT(username) DO UPDATE SET follower_count = excluded.follower_count",
    )?
    .execute(params![user, count])?;
    Ok(())
}
