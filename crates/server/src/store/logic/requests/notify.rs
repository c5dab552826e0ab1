//! Notifications a request causes: likes, comments, follows, DMs and mentions.

use papo_protocol::{EventBody, Notification, NotificationKind};

use super::TxError;
use crate::store::logic::accounts::user_named;
use crate::store::logic::event_log::append;
use crate::store::sql::Sql;
use crate::store::{Actor, StoredEvent, StreamKey, UserId};

/// What a notification is about.
#[derive(Default, Clone, Copy)]
pub(super) struct About<'a> {
    pub(super) post_id: Option<i64>,
    pub(super) comment_id: Option<i64>,
    pub(super) message_id: Option<i64>,
    pub(super) text: Option<&'a str>,
}

/// Notifies each user a public text mentions ([`papo_protocol::mentions`]) that exists, once,
/// never the author, nor `skip` (who is notified of the same thing otherwise).
pub(super) fn notify_mentions(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    actor: &Actor,
    about: About<'_>,
    skip: Option<UserId>,
    now: i64,
) -> Result<(), TxError> {
    let Some(text) = about.text else {
        return Ok(());
    };
    for name in papo_protocol::mentions(text) {
        match user_named(db, &name)? {
            Some(user) if Some(user.id) != skip => {
                notify(
                    db,
                    out,
                    user.id,
                    actor,
                    NotificationKind::Mention,
                    about,
                    now,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Notifies a post's author of what the actor did to it, unless the author's account was
/// deleted (its posts stay, and notify nobody).
pub(super) fn notify_author(
    q: &mut super::Req<'_>,
    author: &super::PostAuthor,
    kind: NotificationKind,
    about: About<'_>,
) -> Result<(), TxError> {
    if !author.live {
        return Ok(());
    }
    notify(q.db, q.out, author.id, q.actor, kind, about, q.now)
}

pub(super) fn notify(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    recipient: UserId,
    actor: &Actor,
    kind: NotificationKind,
    about: About<'_>,
    now: i64,
) -> Result<(), TxError> {
    // Callers resolve the recipient as a live account (find_user, user_named, find_post).
    if recipient == actor.id {
        return Ok(()); // never for my own actions
    }
    let excerpt = about.text.map(papo_protocol::excerpt);
    let id = db
        .query_one(
            "INSERT INTO notifications(user_id, kind, actor_id, post_id, comment_id, message_id, excerpt, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                recipient.into(),
                kind.as_str().into(),
                actor.id.into(),
                about.post_id.into(),
                about.comment_id.into(),
                about.message_id.into(),
                excerpt.clone().into(),
                now.into(),
            ],
        )?
        .int(0)?;
    let body = EventBody::Notification(Notification {
        id,
        kind,
        actor: actor.username.clone(),
        post_id: about.post_id,
        comment_id: about.comment_id,
        message_id: about.message_id,
        excerpt,
        at: now,
    });
    append(
        db,
        out,
        StreamKey::User(recipient),
        Some(actor.id),
        None,
        body,
        now,
    )?;
    Ok(())
}
