//! Each request applied once per (actor, client id): the claim, the stored reply for a repeat,
//! and the savepoint that lets a refusal be recorded without its partial effects.

use papo_protocol::{ErrorBody, ErrorCode, Reply, ReplyResult, Request};

use super::requests::{apply_request, TxError};
use crate::store::sql::Sql;
use crate::store::{error_reply, Actor, Applied, StoreError};

/// Applies a request once per (actor, client id), inside the caller's write transaction.
///
/// The `requests` row is claimed first: with Postgres a concurrent duplicate (another node)
/// waits on that row and then sees it taken, so two nodes can never both apply the same id.
/// It is claimed only while the account is live and not suspended (in the same statement, so
/// the common case costs nothing more): a request that arrives after a suspension or deletion
/// committed is refused, whatever the socket it came on.
pub(super) fn apply_once(
    db: &mut dyn Sql,
    actor: &Actor,
    request: &Request,
    now: i64,
) -> Result<Applied, StoreError> {
    let cid = request.client_id().to_string();
    let event_name = request.event_name();
    let claimed = db.exec(
        "INSERT INTO requests(user_id, cid, event, reply, at) \
         SELECT $1, $2, $3, '', $4 WHERE EXISTS \
         (SELECT 1 FROM users WHERE id = $1 AND suspended_at IS NULL AND deleted_at IS NULL) \
         ON CONFLICT DO NOTHING",
        &[
            actor.id.into(),
            cid.as_str().into(),
            event_name.into(),
            now.into(),
        ],
    )?;
    if claimed == 0 {
        let Some(prev) = db.query_opt(
            "SELECT event, reply FROM requests WHERE user_id = $1 AND cid = $2",
            &[actor.id.into(), cid.as_str().into()],
        )?
        else {
            // Not claimed and not a repeat: the account is suspended or deleted.
            let e = match db.query_opt(
                "SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL",
                &[actor.id.into()],
            )? {
                Some(_) => ErrorBody::new(
                    ErrorCode::AccountSuspended,
                    "this account is suspended by a moderator",
                ),
                None => ErrorBody::new(ErrorCode::AccountDeleted, "this account was deleted"),
            };
            return Ok(Applied {
                reply: error_reply(request, e),
                written: Vec::new(),
                ended_sessions: Vec::new(),
                new_dm_peer: None,
            });
        };
        let reply = if prev.text(0)? == event_name {
            serde_json::from_str::<Reply>(&prev.text(1)?)
                .map_err(|e| StoreError::Corrupt(format!("stored reply does not parse: {e}")))?
        } else {
            let e = ErrorBody::new(
                ErrorCode::IdConflict,
                format!(
                    "client id {cid} was already used for a {} request",
                    prev.text(0)?
                ),
            );
            error_reply(request, e)
        };
        return Ok(Applied {
            reply,
            written: Vec::new(),
            ended_sessions: Vec::new(),
            new_dm_peer: None,
        });
    }

    let mut written = Vec::new();
    let mut new_dm_peer = None;
    let mut ended_sessions = Vec::new();
    // A savepoint lets a refused request leave no partial effect while its refusal is still
    // recorded for idempotency in the same transaction.
    db.batch("SAVEPOINT papo_request")?;
    let applied = apply_request(
        db,
        &mut written,
        &mut new_dm_peer,
        &mut ended_sessions,
        actor,
        request,
        now,
    );
    let reply = match applied {
        Ok(event) => {
            db.batch("RELEASE SAVEPOINT papo_request")?;
            Reply::ok(
                Some(request.client_id()),
                event_name,
                ReplyResult {
                    event,
                    at: Some(now),
                    heads: None,
                },
            )
        }
        Err(TxError::Refused(e)) => {
            db.batch("ROLLBACK TO SAVEPOINT papo_request")?;
            db.batch("RELEASE SAVEPOINT papo_request")?;
            written.clear();
            new_dm_peer = None;
            ended_sessions.clear();
            error_reply(request, e)
        }
        Err(TxError::Db(e)) => return Err(e),
    };
    let reply_json = serde_json::to_string(&reply).map_err(|e| StoreError::Db(e.to_string()))?;
    db.exec(
        "UPDATE requests SET reply = $1 WHERE user_id = $2 AND cid = $3",
        &[reply_json.into(), actor.id.into(), cid.as_str().into()],
    )?;
    Ok(Applied {
        reply,
        written,
        ended_sessions,
        new_dm_peer,
    })
}
