//! The event log: stream keys as stored, numbering an event into its stream, reading it back.

use papo_protocol::{EventBody, LogEvent, Stream};
use uuid::Uuid;

use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoredEvent, StreamKey, UserId};

/// Parses the stream key as stored (`public`, `u:<id>`).
pub fn parse_stream_key(key: &str) -> Option<StreamKey> {
    if key == "public" {
        return Some(StreamKey::Public);
    }
    key.strip_prefix("u:")?.parse().ok().map(StreamKey::User)
}

pub(super) fn wire_stream(stream: StreamKey) -> Stream {
    match stream {
        StreamKey::Public => Stream::Public,
        StreamKey::User(_) => Stream::Private,
    }
}

pub(super) fn event_of(stream: StreamKey, r: &Row) -> Result<StoredEvent, StoreError> {
    let body: EventBody = serde_json::from_str(&r.text(4)?)
        .map_err(|e| StoreError::Corrupt(format!("stored event does not parse: {e}")))?;
    Ok(StoredEvent::new(
        LogEvent {
            stream: wire_stream(stream),
            seq: r.int(0)? as u64,
            at: r.int(1)?,
            cid: r.opt_text(3)?.and_then(|c| Uuid::parse_str(&c).ok()),
            body,
        },
        r.opt_int(2)?,
    ))
}

/// Appends one event to a stream inside the caller's transaction, numbering it. The head row
/// is locked by the UPDATE until commit, so concurrent writers get consecutive numbers.
pub(super) fn append(
    db: &mut dyn Sql,
    out: &mut Vec<(StreamKey, StoredEvent)>,
    stream: StreamKey,
    actor: Option<UserId>,
    cid: Option<Uuid>,
    body: EventBody,
    now: i64,
) -> Result<LogEvent, StoreError> {
    let key = stream.db_key();
    db.exec(
        "INSERT INTO streams(key, head) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        &[key.clone().into()],
    )?;
    let seq = db
        .query_one(
            "UPDATE streams SET head = head + 1 WHERE key = $1 RETURNING head",
            &[key.clone().into()],
        )?
        .int(0)?;
    let body_json = serde_json::to_string(&body).map_err(|e| StoreError::Db(e.to_string()))?;
    db.exec(
        "INSERT INTO events(stream, seq, at, actor_id, cid, body) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            key.clone().into(),
            seq.into(),
            now.into(),
            actor.into(),
            cid.map(|c| c.to_string()).into(),
            body_json.into(),
        ],
    )?;
    db.announce(&key, seq as u64)?;
    let event = LogEvent {
        stream: wire_stream(stream),
        seq: seq as u64,
        at: now,
        cid,
        body,
    };
    out.push((stream, StoredEvent::new(event.clone(), actor)));
    Ok(event)
}
