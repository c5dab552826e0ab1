//! The delivery pump: one task per socket that sends both of its streams from its cursor
//! onwards, replay and live alike, in packets of encoded-once events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use papo_protocol::{events, Cursor, Stream, SyncState, SyncStatus};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::SendError;

use crate::hub::StreamState;
use crate::store::{StoredEvent, StreamKey};
use crate::App;

use super::handshake::heads;
use super::presence::{interest_room, send_presence_snapshot};
use super::{cut, Conn};

/// Events read from the log at a time.
pub(super) const BATCH: usize = 500;
/// Target size of one `log` packet. A socket's write buffer keeps the capacity of the largest
/// frame it ever sent, so a few large replay frames would cost memory for the socket's whole
/// life; many small frames cost almost nothing more to send.
pub(super) const PACKET_BYTES: usize = 16 * 1024;

/// Reads `after+1 ..= upto` (at most `limit`) of a stream, from the cache when it can.
pub(super) async fn fetch(
    app: &App,
    state: &StreamState,
    key: StreamKey,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<Arc<StoredEvent>>, crate::store::StoreError> {
    if upto <= after {
        return Ok(Vec::new());
    }
    if let Some(cached) = state.cached_range(after, upto, limit) {
        return Ok(cached);
    }
    let want = ((upto - after) as usize).min(limit);
    let rows = app.store.read_events(key, after, want).await?;
    Ok(rows.into_iter().map(Arc::new).collect())
}

/// An event's JSON as one reader gets it: the shared encoding every socket is sent (encoded once
/// per event, not once per socket), or, for its author's devices, one with the client id.
pub(super) enum Encoded {
    Shared(Arc<StoredEvent>),
    Own(Box<serde_json::value::RawValue>),
}

impl Encoded {
    fn for_reader(ev: Arc<StoredEvent>, reader: i64) -> Self {
        if ev.shows_cid_to(reader) {
            Encoded::Own(ev.json_for(reader))
        } else {
            Encoded::Shared(ev)
        }
    }

    fn raw(&self) -> &serde_json::value::RawValue {
        match self {
            Encoded::Shared(ev) => ev.shared_json(),
            Encoded::Own(raw) => raw,
        }
    }

    /// Length of the JSON, escapes included.
    fn len(&self) -> usize {
        self.raw().get().len()
    }
}

impl serde::Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(s)
    }
}

/// A `log` payload ([`papo_protocol::LogBatch`] on the wire) made of already encoded events.
#[derive(serde::Serialize)]
pub(super) struct RawBatch<'a> {
    events: &'a [Encoded],
}

/// Merges two stream-ordered lists by time without ever reordering within a stream.
pub(super) fn merge(
    reader: i64,
    a: Vec<Arc<StoredEvent>>,
    b: Vec<Arc<StoredEvent>>,
) -> Vec<Encoded> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.event.at <= y.event.at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        if let Some(e) = next {
            out.push(Encoded::for_reader(e, reader));
        }
    }
    out
}

/// `{"events":[` and `]}` around a batch.
pub(super) const BATCH_OVERHEAD: usize = 13;

/// Splits events into packets whose `log` payload JSON is at most [`PACKET_BYTES`] (an event
/// bigger than that goes alone), measured on the encoded JSON.
pub(super) fn packets(events: Vec<Encoded>) -> Vec<Vec<Encoded>> {
    let mut out: Vec<Vec<Encoded>> = Vec::new();
    let mut size = 0;
    for ev in events {
        let n = ev.len();
        match out.last_mut() {
            // +1 for the comma before it.
            Some(cur) if size + 1 + n <= PACKET_BYTES => {
                size += 1 + n;
                cur.push(ev);
            }
            _ => {
                size = BATCH_OVERHEAD + n;
                out.push(vec![ev]);
            }
        }
    }
    out
}

/// Emits, waiting for a full socket buffer to drain; false if the client is gone or too slow.
pub(super) async fn emit_patiently<A: Adapter, T: serde::Serialize + ?Sized>(
    app: &App,
    socket: &SocketRef<A>,
    event: &str,
    data: &T,
) -> bool {
    let deadline = Instant::now() + app.limits.slow_client_grace;
    loop {
        match socket.emit(event, data) {
            Ok(()) => return true,
            Err(SendError::Socket(socketioxide::SocketError::InternalChannelFull)) => {
                if Instant::now() >= deadline {
                    tracing::warn!(sid = %socket.id, "slow client: buffer full for too long, disconnecting; it resumes by cursor");
                    cut(&app.conns, socket);
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::debug!(sid = %socket.id, error = %e, "emit failed");
                return false;
            }
        }
    }
}

/// Delivers the socket's two streams from its cursor onwards, forever, in order.
pub(super) async fn pump<A: Adapter>(
    socket: SocketRef<A>,
    app: App,
    conn: Arc<Conn>,
    private: Arc<StreamState>,
) {
    let public = app.hub.public();
    let user = conn.actor.id;
    let mut closed = conn.closed.subscribe();
    // Subscribe first, then read the database heads: anything committed after the read also
    // moves a head we are watching, so nothing falls between the two.
    let mut pub_rx = public.subscribe();
    let mut me_rx = private.subscribe();
    let db_heads = match heads(&app, user).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot read heads; dropping the connection");
            cut(&app.conns, &socket);
            return;
        }
    };
    // The users whose presence every device of this user receives, before the snapshot.
    match app.store.presence_interest(user).await {
        Ok(names) => socket.join(names.iter().map(|n| interest_room(n)).collect::<Vec<_>>()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read whom the user follows; dropping the connection");
            cut(&app.conns, &socket);
            return;
        }
    }
    let mut cursor = conn.start;
    let mut target = Cursor {
        public: db_heads.public.max(*pub_rx.borrow_and_update()),
        private: db_heads.private.max(*me_rx.borrow_and_update()),
    };
    if conn.reset {
        let status = SyncStatus {
            state: SyncState::Reset,
            epoch: app.epoch.clone(),
            heads: target,
            admin: conn.admin,
        };
        if !emit_patiently(&app, &socket, events::SYNC, &status).await {
            return;
        }
    }
    let mut live = false;
    loop {
        while cursor.public < target.public || cursor.private < target.private {
            if *closed.borrow() {
                return;
            }
            let pubs = fetch(
                &app,
                &public,
                StreamKey::Public,
                cursor.public,
                target.public,
                BATCH,
            );
            let privs = fetch(
                &app,
                &private,
                StreamKey::User(user),
                cursor.private,
                target.private,
                BATCH,
            );
            let (pubs, privs) = match tokio::try_join!(pubs, privs) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the log; dropping the connection");
                    cut(&app.conns, &socket);
                    return;
                }
            };
            if let Some(last) = pubs.last() {
                cursor.set(Stream::Public, last.event.seq);
            }
            if let Some(last) = privs.last() {
                cursor.set(Stream::Private, last.event.seq);
            }
            for events in packets(merge(user, pubs, privs)) {
                let batch = RawBatch { events: &events };
                if !emit_patiently(&app, &socket, events::LOG, &batch).await {
                    return;
                }
            }
            target.public = target.public.max(*pub_rx.borrow_and_update());
            target.private = target.private.max(*me_rx.borrow_and_update());
        }
        if !live {
            live = true;
            let status = SyncStatus {
                state: SyncState::Live,
                epoch: app.epoch.clone(),
                heads: cursor,
                admin: conn.admin,
            };
            if !emit_patiently(&app, &socket, events::SYNC, &status).await {
                return;
            }
            if !send_presence_snapshot(&app, &socket).await {
                return;
            }
        }
        if *closed.borrow() {
            return;
        }
        tokio::select! {
            r = pub_rx.changed() => if r.is_err() { return },
            r = me_rx.changed() => if r.is_err() { return },
            r = closed.changed() => if r.is_err() || *closed.borrow() { return },
            () = conn.presence_stale.notified() => {
                if live && !send_presence_snapshot(&app, &socket).await {
                    return;
                }
            }
        }
        target.public = target.public.max(*pub_rx.borrow_and_update());
        target.private = target.private.max(*me_rx.borrow_and_update());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use papo_protocol::{LogBatch, LogEvent};
    use uuid::Uuid;

    fn chat(seq: u64, len: usize) -> LogEvent {
        LogEvent {
            stream: Stream::Public,
            seq,
            at: 0,
            cid: None,
            body: papo_protocol::EventBody::ChatMessage(papo_protocol::ChatMessage {
                id: seq as i64,
                from: "ana".into(),
                text: "x".repeat(len),
                at: 0,
                reply_to: None,
            }),
        }
    }

    fn encoded(evs: &[LogEvent]) -> Vec<Encoded> {
        evs.iter()
            .map(|e| Encoded::Shared(Arc::new(StoredEvent::new(e.clone(), None))))
            .collect()
    }

    fn seqs(ps: &[Vec<Encoded>]) -> Vec<u64> {
        ps.iter()
            .flatten()
            .map(|e| serde_json::from_str::<LogEvent>(e.raw().get()).unwrap().seq)
            .collect()
    }

    fn batch_len(p: &[Encoded]) -> usize {
        serde_json::to_vec(&RawBatch { events: p }).unwrap().len()
    }

    #[test]
    fn packets_stay_small_and_keep_order() {
        let evs: Vec<LogEvent> = (1..=300).map(|i| chat(i, 100)).collect();
        let ps = packets(encoded(&evs));
        assert!(ps.len() > 1);
        for p in &ps {
            let bytes = batch_len(p);
            assert!(bytes <= PACKET_BYTES, "{bytes}");
        }
        assert_eq!(seqs(&ps), (1..=300).collect::<Vec<u64>>());
        // A single event larger than a packet is sent alone.
        let big = packets(encoded(&[chat(1, 10), chat(2, 40_000), chat(3, 10)]));
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    fn chat_text(seq: u64, text: String) -> LogEvent {
        let mut ev = chat(seq, 0);
        if let papo_protocol::EventBody::ChatMessage(m) = &mut ev.body {
            m.text = text;
        }
        ev
    }

    #[test]
    fn packets_are_sized_by_their_encoded_json() {
        // Texts that JSON escapes: quotes, backslashes, control characters (6 bytes each as
        // \u00XX), plus non-ASCII (several bytes each, not escaped). 4000 characters of
        // control characters are 24 KB of JSON.
        let nasty: Vec<String> = vec![
            "\"\\".repeat(2000),
            "\u{1}\u{1f}\n\t".repeat(1000),
            "\u{1}".repeat(4000),
            "olá \"mundo\" \\ \u{7f}\u{2028} 😀".repeat(200),
            "x".repeat(100),
        ];
        let evs: Vec<LogEvent> = (1..=200)
            .map(|i| chat_text(i, nasty[i as usize % nasty.len()].clone()))
            .collect();
        let ps = packets(encoded(&evs));
        for p in &ps {
            let bytes = batch_len(p);
            if p.len() > 1 {
                assert!(bytes <= PACKET_BYTES, "{} events in {bytes} bytes", p.len());
            } else {
                // Alone: the largest possible event still fits what the server accepts.
                assert!(bytes < 64 * 1024, "{bytes}");
            }
        }
        assert_eq!(seqs(&ps), (1..=200).collect::<Vec<u64>>());
        // Small events still share packets.
        let small = packets(encoded(
            &(1..=100)
                .map(|i| chat_text(i, "oi".into()))
                .collect::<Vec<_>>(),
        ));
        assert!(small.len() < 10, "{}", small.len());
        // The size is exact: a batch is its events, commas and the overhead, no more.
        for p in &ps {
            let sum: usize = p.iter().map(Encoded::len).sum();
            assert_eq!(batch_len(p), BATCH_OVERHEAD + sum + p.len() - 1);
        }
    }

    /// Encoding once changes nothing on the wire: a batch of shared encodings is byte for byte
    /// the `LogBatch` the reader would have got by encoding its own copies, the client id shown
    /// to its author only.
    #[test]
    fn shared_encodings_are_the_wire_format_with_the_cid_for_the_author_only() {
        let cid = Uuid::new_v4();
        let author = 7;
        let mut own = chat(1, 5);
        own.cid = Some(cid);
        let stored = vec![
            Arc::new(StoredEvent::new(own.clone(), Some(author))),
            Arc::new(StoredEvent::new(
                chat_text(2, "\"olá\"\u{1}".into()),
                Some(8),
            )),
        ];
        for reader in [author, 8, 9] {
            let mine = merge(reader, stored.clone(), Vec::new());
            let want: Vec<LogEvent> = stored.iter().map(|e| e.for_reader(reader)).collect();
            assert_eq!(
                serde_json::to_string(&RawBatch { events: &mine }).unwrap(),
                serde_json::to_string(&LogBatch { events: want }).unwrap(),
                "reader {reader}"
            );
        }
        let author_view = serde_json::to_string(&RawBatch {
            events: &merge(author, stored.clone(), Vec::new()),
        })
        .unwrap();
        assert!(author_view.contains(&cid.to_string()));
        let other_view = serde_json::to_string(&RawBatch {
            events: &merge(9, stored.clone(), Vec::new()),
        })
        .unwrap();
        assert!(!other_view.contains(&cid.to_string()));
        // The shared encoding is made once and reused.
        let a = stored[1].shared_json() as *const _;
        let b = stored[1].shared_json() as *const _;
        assert_eq!(a, b);
    }
}
