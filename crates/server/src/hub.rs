//! In-memory state of the live server: the head of each stream a connected user reads, a small
//! cache of recent events, and presence counts.
//!
//! The database is the truth; the hub only wakes the per-socket pumps (a `watch` of each
//! stream's head) and spares them a database read for recent events. Every sequence number a
//! head announces is already committed, so a pump that finds the cache short reads the database.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::store::{StoredEvent, StreamKey, UserId};

/// Live view of one stream.
pub struct StreamState {
    head: watch::Sender<u64>,
    recent: Mutex<VecDeque<Arc<StoredEvent>>>,
    capacity: usize,
}

impl StreamState {
    fn new(capacity: usize) -> Self {
        StreamState {
            head: watch::Sender::new(0),
            // Grows as events arrive: most users' streams stay small or empty.
            recent: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// A receiver that wakes when the head moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn advance(&self, seq: u64) {
        self.head.send_if_modified(|h| {
            if seq > *h {
                *h = seq;
                true
            } else {
                false
            }
        });
    }

    fn publish(&self, ev: StoredEvent) {
        let seq = ev.event.seq;
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            // Publishers may race after their commits; keep the cache sorted by seq.
            let pos = recent.partition_point(|e| e.event.seq < seq);
            if recent.get(pos).map(|e| e.event.seq) != Some(seq) {
                recent.insert(pos, Arc::new(ev));
            }
            while recent.len() > self.capacity {
                recent.pop_front();
            }
        }
        self.advance(seq);
    }

    /// The events `after+1 ..= upto` (at most `limit`) if the cache holds all of them.
    pub fn cached_range(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Option<Vec<Arc<StoredEvent>>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let first = recent.front()?.event.seq;
        if first > after + 1 {
            return None;
        }
        let start = (after + 1 - first) as usize;
        let want = ((upto - after) as usize).min(limit);
        let out: Vec<_> = recent.iter().skip(start).take(want).cloned().collect();
        // Contiguity check: a racing publisher may not have inserted a middle event yet.
        let contiguous = out
            .iter()
            .enumerate()
            .all(|(i, e)| e.event.seq == after + 1 + i as u64);
        (out.len() == want && contiguous).then_some(out)
    }
}

/// Shared live state.
pub struct Hub {
    public: Arc<StreamState>,
    users: Mutex<HashMap<UserId, (Arc<StreamState>, usize)>>,
    presence: Mutex<HashMap<String, usize>>,
    /// Users whose device count here changed since the last presence sync.
    presence_changes: Mutex<HashSet<String>>,
    /// Everyone online as last broadcast (on every node, when the store is shared).
    global_online: Mutex<BTreeSet<String>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            public: Arc::new(StreamState::new(4096)),
            users: Mutex::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            presence_changes: Mutex::new(HashSet::new()),
            global_online: Mutex::new(BTreeSet::new()),
        }
    }
}

impl Hub {
    pub fn public(&self) -> Arc<StreamState> {
        self.public.clone()
    }

    /// The live state of a user's private stream, kept while any of its sockets is attached.
    pub fn attach_user(&self, user: UserId) -> Arc<StreamState> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let entry = users
            .entry(user)
            .or_insert_with(|| (Arc::new(StreamState::new(256)), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    pub fn detach_user(&self, user: UserId) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = users.get_mut(&user) {
            entry.1 -= 1;
            if entry.1 == 0 {
                users.remove(&user);
            }
        }
    }

    /// Hands committed events to live readers.
    pub fn publish(&self, written: Vec<(StreamKey, StoredEvent)>) {
        for (key, ev) in written {
            match key {
                StreamKey::Public => self.public.publish(ev),
                StreamKey::User(id) => {
                    let state = {
                        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
                        users.get(&id).map(|(s, _)| s.clone())
                    };
                    // Nobody of that user is connected here: the log has it for later.
                    if let Some(state) = state {
                        state.publish(ev);
                    }
                }
            }
        }
    }

    /// Counts a device in; true if the user just came online.
    pub fn presence_join(&self, username: &str) -> bool {
        let mut p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        let n = p.entry(username.to_string()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts a device out; true if the user just went offline.
    pub fn presence_leave(&self, username: &str) -> bool {
        let mut p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        match p.get_mut(username) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                p.remove(username);
                true
            }
            None => false,
        }
    }

    /// Records that a user's device count here changed, for the next presence sync.
    pub fn presence_changed(&self, username: &str) {
        let mut c = self
            .presence_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.insert(username.to_string());
    }

    /// The users whose count changed since the last call, with their device count here now
    /// (0 = no device here any more).
    pub fn take_presence_changes(&self) -> Vec<(String, i64)> {
        let changed = std::mem::take(
            &mut *self
                .presence_changes
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let counts = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, i64)> = changed
            .into_iter()
            .map(|u| {
                let n = counts.get(&u).copied().unwrap_or(0) as i64;
                (u, n)
            })
            .collect();
        out.sort();
        out
    }

    /// Puts changes back after a failed sync, so they are sent with the next one.
    pub fn requeue_presence_changes(&self, changes: Vec<(String, i64)>) {
        let mut c = self
            .presence_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.extend(changes.into_iter().map(|(u, _)| u));
    }

    /// Replaces the set of everyone online; returns (came online, went offline) since the last
    /// call, each sorted. A user who left and came back in between does not appear.
    pub fn set_global_online(&self, online: Vec<String>) -> (Vec<String>, Vec<String>) {
        let new: BTreeSet<String> = online.into_iter().collect();
        let mut old = self.global_online.lock().unwrap_or_else(|p| p.into_inner());
        let on = new.difference(&old).cloned().collect();
        let off = old.difference(&new).cloned().collect();
        *old = new;
        (on, off)
    }

    /// How many users are online in the last view the broadcaster announced (on any node).
    pub fn online_count(&self) -> usize {
        self.global_online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether a user is online in the last view the broadcaster announced. (Not this node's
    /// own counts: a state told from those could be one the broadcaster never announces a
    /// change from, if the user comes and goes within one window.)
    pub fn is_online(&self, username: &str) -> bool {
        self.global_online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(username)
    }

    /// For a stream read here: the newest sequence number this node already has in its cache
    /// (or its head, when the cache is empty). None when no socket here reads the stream.
    pub fn cached_through(&self, key: StreamKey) -> Option<u64> {
        let state = match key {
            StreamKey::Public => self.public.clone(),
            StreamKey::User(id) => {
                let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
                users.get(&id).map(|(s, _)| s.clone())?
            }
        };
        let last = state
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .back()
            .map(|e| e.event.seq);
        Some(last.unwrap_or_else(|| *state.head.borrow()))
    }

    /// A stream head moved on another node: wake the readers of that stream here.
    pub fn advance(&self, key: StreamKey, seq: u64) {
        let state = match key {
            StreamKey::Public => Some(self.public.clone()),
            StreamKey::User(id) => {
                let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
                users.get(&id).map(|(s, _)| s.clone())
            }
        };
        if let Some(state) = state {
            state.advance(seq);
        }
    }

    /// Everyone online, sorted.
    /// How many users have a device connected to this node.
    pub fn local_online_count(&self) -> usize {
        self.presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn online(&self) -> Vec<String> {
        let p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = p.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use papo_protocol::{ChatMessage, EventBody, LogEvent, Stream};

    fn ev(seq: u64) -> StoredEvent {
        StoredEvent::new(
            LogEvent {
                stream: Stream::Public,
                seq,
                at: 0,
                cid: None,
                body: EventBody::ChatMessage(ChatMessage {
                    id: seq as i64,
                    from: "a".into(),
                    text: "x".into(),
                    at: 0,
                    reply_to: None,
                }),
            },
            None,
        )
    }

    #[test]
    fn cache_serves_only_contiguous_ranges() {
        let s = StreamState::new(4);
        for i in [1, 2, 4] {
            s.publish(ev(i));
        }
        assert_eq!(*s.subscribe().borrow(), 4);
        assert_eq!(s.cached_range(0, 2, 10).unwrap().len(), 2);
        assert!(s.cached_range(0, 4, 10).is_none(), "3 is missing");
        s.publish(ev(3));
        let got: Vec<u64> = s
            .cached_range(1, 4, 10)
            .unwrap()
            .iter()
            .map(|e| e.event.seq)
            .collect();
        assert_eq!(got, vec![2, 3, 4]);
        s.publish(ev(5)); // evicts 1
        assert!(s.cached_range(0, 5, 10).is_none());
        assert_eq!(s.cached_range(1, 5, 2).unwrap().len(), 2);
    }

    #[test]
    fn presence_counts_devices() {
        let h = Hub::default();
        assert!(h.presence_join("ana"));
        assert!(!h.presence_join("ana"));
        assert!(!h.presence_leave("ana"));
        assert!(h.presence_leave("ana"));
        assert!(!h.presence_leave("ana"));
        assert!(h.online().is_empty());
    }

    #[test]
    fn presence_changes_report_current_counts_and_diffs() {
        let h = Hub::default();
        h.presence_join("ana");
        h.presence_changed("ana");
        h.presence_join("bia");
        h.presence_join("bia");
        h.presence_changed("bia");
        h.presence_leave("ana");
        h.presence_changed("ana");
        assert_eq!(
            h.take_presence_changes(),
            vec![("ana".to_string(), 0), ("bia".to_string(), 2)]
        );
        assert!(h.take_presence_changes().is_empty());
        assert_eq!(
            h.set_global_online(vec!["bia".into(), "caio".into()]),
            (vec!["bia".into(), "caio".into()], vec![])
        );
        assert_eq!(
            h.set_global_online(vec!["caio".into()]),
            (vec![], vec!["bia".into()])
        );
        // What was announced last: caio only (bia's two devices here count from the next sync).
        assert!(h.is_online("caio") && !h.is_online("bia") && !h.is_online("ana"));
    }
}
