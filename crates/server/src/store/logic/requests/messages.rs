//! Requests on messages: public chat, DMs (and who are DM peers), editing and deleting one's
//! own messages, read state.

use papo_protocol::{
    conversation, ChatMessage, ChatSend, DirectMessage, DmSend, ErrorCode, EventBody, LogEvent,
    MessageDelete, MessageEdit, MessageEdited, MessageRef, NotificationKind, ReadMark, ReadState,
    ReplyQuote,
};
use uuid::Uuid;

use super::notify::{notify, notify_mentions, About};
use super::{check_text, refuse, Req, TxError};
use crate::store::logic::accounts::find_user;
use crate::store::logic::event_log::append;
use crate::store::sql::Sql;
use crate::store::{StoredEvent, StreamKey, UserId};

pub(super) fn chat_send(q: &mut Req<'_>, r: &ChatSend) -> Result<Option<LogEvent>, TxError> {
    check_text(&r.text)?;
    let quote = match r.reply_to {
        Some(id) => Some(quoted(q.db, q.actor.id, id, None)?),
        None => None,
    };
    let id =
        q.db.query_one(
            "INSERT INTO messages(sender_id, recipient_id, text, created_at, reply_to) \
             VALUES ($1, NULL, $2, $3, $4) RETURNING id",
            &[
                q.actor.id.into(),
                r.text.as_str().into(),
                q.now.into(),
                r.reply_to.into(),
            ],
        )?
        .int(0)?;
    let body = EventBody::ChatMessage(ChatMessage {
        id,
        from: q.actor.username.clone(),
        text: r.text.clone(),
        at: q.now,
        reply_to: quote.as_ref().map(|q| q.quote.clone()),
    });
    let ev = q.public(body)?;
    let about = About {
        message_id: Some(id),
        text: Some(&r.text),
        ..About::default()
    };
    // The author of the message replied to is told of the reply (once, even if also mentioned).
    let replied = quote.and_then(|q| q.live_sender);
    if let Some(to) = replied {
        notify(
            q.db,
            q.out,
            to,
            q.actor,
            NotificationKind::Reply,
            about,
            q.now,
        )?;
    }
    notify_mentions(q.db, q.out, q.actor, about, replied, q.now)?;
    Ok(ev)
}

pub(super) fn dm_send(q: &mut Req<'_>, r: &DmSend) -> Result<Option<LogEvent>, TxError> {
    check_text(&r.text)?;
    let to = find_user(q.db, &r.to)?;
    if to.id == q.actor.id {
        return refuse(
            ErrorCode::BadRequest,
            "cannot send a private message to yourself",
        );
    }
    let quote = match r.reply_to {
        Some(id) => Some(quoted(q.db, q.actor.id, id, Some(to.id))?),
        None => None,
    };
    let id =
        q.db.query_one(
            "INSERT INTO messages(sender_id, recipient_id, text, created_at, reply_to) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                q.actor.id.into(),
                to.id.into(),
                r.text.as_str().into(),
                q.now.into(),
                r.reply_to.into(),
            ],
        )?
        .int(0)?;
    // Both sides are each other's DM peers (whose presence they receive).
    let known = q.db.query_opt(
        "SELECT 1 FROM dm_peers WHERE user_id = $1 AND peer_id = $2",
        &[q.actor.id.into(), to.id.into()],
    )?;
    if known.is_none() {
        q.new_dm_peer = Some(to.clone());
    }
    for (user, peer) in [(q.actor.id, to.id), (to.id, q.actor.id)] {
        q.db.exec(
            "INSERT INTO dm_peers(user_id, peer_id, last_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, peer_id) DO UPDATE SET last_at = excluded.last_at",
            &[user.into(), peer.into(), q.now.into()],
        )?;
    }
    let dm = DirectMessage {
        id,
        from: q.actor.username.clone(),
        to: to.username.clone(),
        text: r.text.clone(),
        at: q.now,
        reply_to: quote.map(|q| q.quote),
    };
    let mine = append(
        q.db,
        q.out,
        StreamKey::User(q.actor.id),
        Some(q.actor.id),
        q.cid,
        EventBody::DmMessage(dm.clone()),
        q.now,
    )?;
    append(
        q.db,
        q.out,
        StreamKey::User(to.id),
        Some(q.actor.id),
        None,
        EventBody::DmMessage(dm),
        q.now,
    )?;
    let about = About {
        message_id: Some(id),
        text: Some(&r.text),
        ..About::default()
    };
    notify(
        q.db,
        q.out,
        to.id,
        q.actor,
        NotificationKind::Dm,
        about,
        q.now,
    )?;
    Ok(Some(mine))
}

pub(super) fn message_edit(q: &mut Req<'_>, r: &MessageEdit) -> Result<Option<LogEvent>, TxError> {
    let m = own_message(q.db, q.actor.id, r.message_id, "edit")?;
    if m.deleted {
        return refuse(
            ErrorCode::NotFound,
            format!("message {} was deleted", r.message_id),
        );
    }
    check_text(&r.text)?;
    q.db.exec(
        "UPDATE messages SET text = $1, edited_at = $2 WHERE id = $3",
        &[r.text.as_str().into(), q.now.into(), r.message_id.into()],
    )?;
    let body = EventBody::MessageEdited(MessageEdited {
        message_id: r.message_id,
        text: r.text.clone(),
        edited_at: q.now,
    });
    Ok(Some(to_message_streams(
        q.db, q.out, &m.streams, q.actor.id, q.cid, body, q.now,
    )?))
}

pub(super) fn message_delete(
    q: &mut Req<'_>,
    r: &MessageDelete,
) -> Result<Option<LogEvent>, TxError> {
    let m = own_message(q.db, q.actor.id, r.message_id, "delete")?;
    if m.deleted {
        return Ok(None); // deleted already: idempotent no-op
    }
    q.db.exec(
        "UPDATE messages SET text = '', deleted = 1 WHERE id = $1",
        &[r.message_id.into()],
    )?;
    // The recipient's notification of a deleted DM no longer quotes it.
    q.db.exec(
        "UPDATE notifications SET excerpt = NULL WHERE message_id = $1",
        &[r.message_id.into()],
    )?;
    let body = EventBody::MessageDeleted(MessageRef {
        message_id: r.message_id,
    });
    Ok(Some(to_message_streams(
        q.db, q.out, &m.streams, q.actor.id, q.cid, body, q.now,
    )?))
}

pub(super) fn read_mark(q: &mut Req<'_>, r: &ReadMark) -> Result<Option<LogEvent>, TxError> {
    // The DM peer, or None for public chat.
    let peer = if r.conversation == conversation::PUBLIC {
        None
    } else {
        match conversation::dm_peer(&r.conversation) {
            Some(peer) => {
                let peer = find_user(q.db, peer)?;
                if peer.id == q.actor.id {
                    return refuse(
                        ErrorCode::BadRequest,
                        "there is no conversation with yourself",
                    );
                }
                Some(peer.id)
            }
            None => {
                return refuse(
                    ErrorCode::BadRequest,
                    "conversation must be \"public\" or \"dm:<username>\"",
                )
            }
        }
    };
    if r.last_read < 0 {
        return refuse(ErrorCode::BadRequest, "last_read must be >= 0");
    }
    // last_read is the id of a message of that conversation (the newest one read), or
    // 0 for none: anything else would stay in the log forever.
    if r.last_read > 0 {
        let row = q.db.query_opt(
            "SELECT sender_id, recipient_id FROM messages WHERE id = $1",
            &[r.last_read.into()],
        )?;
        let belongs = match row {
            Some(row) => {
                let (from, to) = (row.int(0)?, row.opt_int(1)?);
                match peer {
                    None => to.is_none(),
                    Some(p) => {
                        (from == q.actor.id && to == Some(p))
                            || (from == p && to == Some(q.actor.id))
                    }
                }
            }
            None => false,
        };
        if !belongs {
            return refuse(
                ErrorCode::BadRequest,
                format!(
                    "last_read {} is not a message of {}",
                    r.last_read, r.conversation
                ),
            );
        }
    }
    // Read state only moves forward, so devices marking q.out of order converge.
    let changed = q.db.exec(
        "INSERT INTO read_state(user_id, conversation, last_read) VALUES ($1, $2, $3)
             ON CONFLICT(user_id, conversation) DO UPDATE SET last_read = excluded.last_read
             WHERE excluded.last_read > read_state.last_read",
        &[
            q.actor.id.into(),
            r.conversation.as_str().into(),
            r.last_read.into(),
        ],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let body = EventBody::ReadUpdated(ReadState {
        conversation: r.conversation.clone(),
        last_read: r.last_read,
    });
    Ok(Some(append(
        q.db,
        q.out,
        StreamKey::User(q.actor.id),
        Some(q.actor.id),
        q.cid,
        body,
        q.now,
    )?))
}

/// The message a reply answers: the quote its event carries, and who is told of the reply.
struct Quoted {
    quote: ReplyQuote,
    /// The original's sender, when the account still exists.
    live_sender: Option<UserId>,
}

/// The message `message_id` that `actor` replies to in the public room (`peer` None) or in the
/// DM with `peer`: it must be a live message of that same conversation. Anything else — no such
/// message, a deleted one, one of another conversation (including a DM between two other
/// users) — is `not_found`, so a reply never reveals a message its sender could not read.
fn quoted(
    db: &mut dyn Sql,
    actor: UserId,
    message_id: i64,
    peer: Option<UserId>,
) -> Result<Quoted, TxError> {
    let row = db.query_opt(
        "SELECT m.sender_id, m.recipient_id, m.deleted, m.text, u.username, u.deleted_at \
         FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = $1",
        &[message_id.into()],
    )?;
    let not_found = || {
        refuse(
            ErrorCode::NotFound,
            format!("no message {message_id} to reply to in this conversation"),
        )
    };
    let Some(row) = row else {
        return not_found();
    };
    let (from, to) = (row.int(0)?, row.opt_int(1)?);
    let same_conversation = match peer {
        None => to.is_none(),
        Some(p) => (from == actor && to == Some(p)) || (from == p && to == Some(actor)),
    };
    if !same_conversation {
        return not_found();
    }
    if row.int(2)? != 0 {
        return refuse(
            ErrorCode::NotFound,
            format!("message {message_id} was deleted"),
        );
    }
    Ok(Quoted {
        quote: ReplyQuote {
            message_id,
            from: row.text(4)?,
            excerpt: papo_protocol::excerpt(&row.text(3)?),
        },
        live_sender: row.opt_int(5)?.is_none().then_some(from),
    })
}

/// A chat message or DM the actor may change: its streams (public, or both users'), and
/// whether it is deleted already.
pub(super) struct OwnMessage {
    streams: Vec<StreamKey>,
    deleted: bool,
}

pub(super) fn own_message(
    db: &mut dyn Sql,
    actor: UserId,
    message_id: i64,
    verb: &str,
) -> Result<OwnMessage, TxError> {
    let Some(row) = db.query_opt(
        "SELECT sender_id, recipient_id, deleted FROM messages WHERE id = $1",
        &[message_id.into()],
    )?
    else {
        return refuse(ErrorCode::NotFound, format!("no message {message_id}"));
    };
    let (sender, recipient) = (row.int(0)?, row.opt_int(1)?);
    if sender != actor {
        // A DM of someone else's the actor received, or a public message: not theirs; a DM
        // between two others stays unknown.
        return if recipient.is_none() || recipient == Some(actor) {
            refuse(
                ErrorCode::Forbidden,
                format!("only the sender can {verb} a message"),
            )
        } else {
            refuse(ErrorCode::NotFound, format!("no message {message_id}"))
        };
    }
    let streams = match recipient {
        None => vec![StreamKey::Public],
        Some(to) => vec![StreamKey::User(actor), StreamKey::User(to)],
    };
    Ok(OwnMessage {
        streams,
        deleted: row.int(2)? != 0,
    })
}

/// Appends `body` to each of a message's streams; the sender's copy (the first) carries the
/// client id and is the reply.
pub(super) fn to_message_streams(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    streams: &[StreamKey],
    actor: UserId,
    cid: Option<Uuid>,
    body: EventBody,
    now: i64,
) -> Result<LogEvent, TxError> {
    let mut reply = None;
    for (i, stream) in streams.iter().enumerate() {
        let ev = append(
            db,
            out,
            *stream,
            Some(actor),
            if i == 0 { cid } else { None },
            body.clone(),
            now,
        )?;
        reply.get_or_insert(ev);
    }
    Ok(reply.expect("a message has at least one stream"))
}
