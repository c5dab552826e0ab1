//! The outbox through the whole supervisor, against a scripted server in paused tokio time:
//! per-conversation order, the `no_answer` bound, permanent errors, retry and discard.

use crate::cache::{now_ms, Cache};
use crate::cache_thread::CacheHandle;
use crate::event::CoreEvent;
use crate::outbox::{OutboxChange, OutboxState, WedgeReason, MAX_UNANSWERED};
use crate::secret::SecretString;
use crate::supervisor::{spawn, SupervisorConfig, SupervisorHandle, View, WallClock};
use crate::tokens::{TokenError, TokenSource};
use crate::transport::{Inbound, Link, Transport, TransportError};
use async_trait::async_trait;
use papo_protocol::{events, ChatSend, DmSend, ErrorBody, ErrorCode, Reply, ReplyResult, Request};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{timeout, Instant};
use uuid::Uuid;

/// What the scripted server does with a request.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Ok,
    Silent,
    Refuse(ErrorCode),
}

/// A server that answers pings, applies each client id once, and answers requests by their
/// text as told.
#[derive(Default)]
struct Server {
    /// Text -> answer; texts not listed are answered ok.
    script: Mutex<HashMap<String, Answer>>,
    /// (event, client id, text) of every request emitted, in order.
    emitted: Mutex<Vec<(String, Uuid, String)>>,
    /// Client ids the server applied (once each).
    applied: Mutex<Vec<Uuid>>,
}

impl Server {
    fn answer(&self, text: &str, a: Answer) {
        self.script.lock().unwrap().insert(text.into(), a);
    }
    fn sends_of(&self, cid: Uuid) -> usize {
        self.emitted
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c, _)| *c == cid)
            .count()
    }
    fn texts(&self) -> Vec<String> {
        self.emitted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, t)| t.clone())
            .collect()
    }
}

struct FakeTransport(Arc<Server>);
struct FakeLink {
    server: Arc<Server>,
    inbound: mpsc::UnboundedSender<Inbound>,
}

#[async_trait]
impl Transport for FakeTransport {
    async fn connect(
        &self,
        _url: &str,
        _auth: Value,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Box<dyn Link>, TransportError> {
        let _ = inbound.send(Inbound::Open);
        Ok(Box::new(FakeLink {
            server: self.0.clone(),
            inbound,
        }))
    }
}

#[async_trait]
impl Link for FakeLink {
    async fn emit(&self, event: &str, data: Value) -> Result<(), TransportError> {
        let id = data["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        let reply = if event == events::SYS_PING {
            Some(Reply::ok(id, event, ReplyResult::default()))
        } else {
            let cid = id.expect("requests carry a client id");
            let text = data["text"].as_str().unwrap_or_default().to_string();
            self.server
                .emitted
                .lock()
                .unwrap()
                .push((event.to_string(), cid, text.clone()));
            let answer = self.server.script.lock().unwrap().get(&text).cloned();
            match answer.unwrap_or(Answer::Ok) {
                Answer::Silent => None,
                Answer::Refuse(code) => Some(Reply::err(
                    id,
                    event,
                    ErrorBody::new(code, format!("refused {text}")),
                )),
                Answer::Ok => {
                    let mut applied = self.server.applied.lock().unwrap();
                    if !applied.contains(&cid) {
                        applied.push(cid);
                    }
                    Some(Reply::ok(id, event, ReplyResult::default()))
                }
            }
        };
        if let Some(reply) = reply {
            let _ = self.inbound.send(Inbound::Event {
                name: events::REPLY.into(),
                data: serde_json::to_value(reply).unwrap(),
            });
        }
        Ok(())
    }
    async fn close(&self) {}
}

struct Tokens;

#[async_trait]
impl TokenSource for Tokens {
    async fn access_token(&self) -> Option<SecretString> {
        Some(SecretString::from("tok"))
    }
    async fn refresh(&self) -> Result<SecretString, TokenError> {
        Ok(SecretString::from("tok"))
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    cache: Arc<Cache>,
    server: Arc<Server>,
    handle: SupervisorHandle,
    events: broadcast::Receiver<CoreEvent>,
}

fn setup(server: Arc<Server>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
    cache.set_me("ana").unwrap();
    let threads = CacheHandle::spawn(cache).unwrap().holding_paused_clock();
    let mut config = SupervisorConfig::new("http://fake");
    // The wall clock follows tokio's paused clock, so `next_attempt_at` waits end.
    let (wall0, mono0) = (now_ms(), Instant::now());
    config.wall_clock = WallClock::new(move || wall0 + mono0.elapsed().as_millis() as i64);
    let handle = spawn(
        config,
        threads.clone(),
        Arc::new(Tokens),
        Arc::new(FakeTransport(server.clone())),
        Arc::new(Mutex::new(View::default())),
    );
    let events = handle.subscribe();
    Setup {
        _dir: dir,
        cache: threads.cache().clone(),
        server,
        handle,
        events,
    }
}

fn chat(text: &str) -> Request {
    Request::ChatSend(ChatSend {
        id: Uuid::now_v7(),
        text: text.into(),
        reply_to: None,
    })
}

fn dm(to: &str, text: &str) -> Request {
    Request::DmSend(DmSend {
        id: Uuid::now_v7(),
        to: to.into(),
        text: text.into(),
        reply_to: None,
    })
}

impl Setup {
    fn enqueue(&self, r: Request) -> Uuid {
        let cid = self.cache.enqueue("ana", &r).unwrap().client_id;
        self.handle.outbox_changed();
        cid
    }
    fn state(&self, cid: Uuid) -> Option<OutboxState> {
        self.cache.outbox_item(cid).unwrap().map(|i| i.state)
    }
    async fn until(&self, what: &str, f: impl Fn(&Setup) -> bool) {
        timeout(Duration::from_secs(3600), async {
            while !f(self) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never: {what}"));
    }
    /// The outbox changes published so far.
    fn changes(&mut self) -> Vec<OutboxChange> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            if let CoreEvent::Outbox(c) = ev {
                out.push(c);
            }
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_item_is_wedged_after_the_bound_without_holding_up_other_conversations() {
    let server = Arc::new(Server::default());
    server.answer("stuck", Answer::Silent);
    let mut s = setup(server.clone());
    let stuck = s.enqueue(dm("bia", "stuck"));
    let behind = s.enqueue(dm("bia", "behind"));
    let public = s.enqueue(chat("public"));
    let other_dm = s.enqueue(dm("caio", "other"));
    let started = Instant::now();

    // The other conversations go on while dm:bia waits for an answer.
    s.until("other conversations sent", |s| {
        s.state(public) == Some(OutboxState::Sent) && s.state(other_dm) == Some(OutboxState::Sent)
    })
    .await;
    assert_eq!(s.state(stuck), Some(OutboxState::Pending));
    assert_eq!(s.server.sends_of(behind), 0, "order within dm:bia is kept");

    s.until("stuck wedged", |s| {
        s.state(stuck) == Some(OutboxState::Wedged)
    })
    .await;
    let item = s.cache.outbox_item(stuck).unwrap().unwrap();
    let reason = WedgeReason::NoAnswer {
        attempts: MAX_UNANSWERED,
    };
    assert_eq!(item.wedge, Some(reason.clone()));
    assert_eq!(item.attempts, MAX_UNANSWERED);
    assert_eq!(item.unanswered, MAX_UNANSWERED);
    assert_eq!(
        server.sends_of(stuck),
        MAX_UNANSWERED as usize,
        "same client id each time"
    );
    // Request timeouts plus backoff between attempts: it took a while, but a bounded one.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10 * MAX_UNANSWERED as u64),
        "{took:?}"
    );
    assert!(took < Duration::from_secs(300), "{took:?}");

    // Wedged, it no longer blocks its own conversation either.
    s.until("behind sent", |s| {
        s.state(behind) == Some(OutboxState::Sent)
    })
    .await;
    let changes = s.changes();
    assert!(changes.contains(&OutboxChange::wedged(stuck, reason)));
    assert!(changes.contains(&OutboxChange::sent(behind)));
    // The local copy shows it failed; the texts went out in per-conversation order.
    let texts = server.texts();
    let first_behind = texts.iter().position(|t| t == "behind").unwrap();
    let last_stuck = texts.iter().rposition(|t| t == "stuck").unwrap();
    assert!(last_stuck < first_behind, "{texts:?}");
    assert!(texts.iter().position(|t| t == "public").unwrap() < last_stuck);

    // Retry: sent again with the same client id and applied once.
    server.answer("stuck", Answer::Ok);
    assert!(s.cache.retry_outbox(stuck).unwrap());
    s.handle.outbox_changed();
    s.until("stuck sent after retry", |s| {
        s.state(stuck) == Some(OutboxState::Sent)
    })
    .await;
    assert_eq!(server.sends_of(stuck), MAX_UNANSWERED as usize + 1);
    let applied = server.applied.lock().unwrap().clone();
    assert_eq!(applied.iter().filter(|c| **c == stuck).count(), 1);
    assert_eq!(
        applied.into_iter().collect::<HashSet<_>>().len(),
        4,
        "every item applied exactly once"
    );
    s.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_wedges_at_once_with_its_reason_and_discard_drops_the_local_copy() {
    let server = Arc::new(Server::default());
    server.answer("bad", Answer::Refuse(ErrorCode::NotFound));
    server.answer("slow", Answer::Refuse(ErrorCode::RateLimited));
    let mut s = setup(server.clone());
    let bad = s.enqueue(dm("zed", "bad"));
    let next = s.enqueue(dm("zed", "next"));
    let slow = s.enqueue(chat("slow"));
    let after_slow = s.enqueue(chat("after slow"));

    s.until("bad wedged, next sent", |s| {
        s.state(bad) == Some(OutboxState::Wedged) && s.state(next) == Some(OutboxState::Sent)
    })
    .await;
    let item = s.cache.outbox_item(bad).unwrap().unwrap();
    let reason = WedgeReason::Refused {
        error: ErrorBody::new(ErrorCode::NotFound, "refused bad"),
    };
    assert_eq!(item.wedge, Some(reason.clone()));
    assert_eq!(server.sends_of(bad), 1, "a permanent error is not resent");
    assert!(s.changes().contains(&OutboxChange::wedged(bad, reason)));
    assert_eq!(s.cache.wedged_outbox(Some("dm:zed")).unwrap().len(), 1);

    // A transient error is not a wedge: it is resent after a backoff.
    s.until("slow resent", |s| s.server.sends_of(slow) >= 3)
        .await;
    assert_eq!(s.state(slow), Some(OutboxState::Pending));
    // ...and its conversation keeps its order: what follows it waits (dm:zed went on).
    assert_eq!(s.server.sends_of(after_slow), 0);
    server.answer("slow", Answer::Ok);
    s.until("public drained", |s| {
        s.state(after_slow) == Some(OutboxState::Sent)
    })
    .await;
    let texts = server.texts();
    assert!(
        texts.iter().rposition(|t| t == "slow") < texts.iter().position(|t| t == "after slow"),
        "{texts:?}"
    );

    // Discard: the outbox row and the local copy are gone.
    assert!(s.cache.discard_outbox(bad).unwrap());
    assert!(s.cache.outbox_item(bad).unwrap().is_none());
    let texts: Vec<String> = s
        .cache
        .conversation_page("dm:zed", None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.text)
        .collect();
    assert_eq!(texts, ["next"]);
    s.handle.shutdown().await;
}

/// The pacing on paused tokio time: a burst, then one send per period, and the wait it
/// reports is the time until the next one.
#[tokio::test(start_paused = true)]
async fn sends_are_paced_by_a_burst_then_the_rate() {
    let mut b = super::Bucket::new(20.0, 3.0);
    for _ in 0..3 {
        assert_eq!(b.take(), Ok(()));
    }
    assert_eq!(b.take(), Err(Duration::from_millis(50)));
    tokio::time::advance(Duration::from_millis(30)).await;
    assert_eq!(b.take(), Err(Duration::from_millis(20)));
    tokio::time::advance(Duration::from_millis(20)).await;
    assert_eq!(b.take(), Ok(()));
    assert!(b.take().is_err());
    // Idle long enough, the whole burst is back, and no more.
    tokio::time::advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        assert_eq!(b.take(), Ok(()));
    }
    assert!(b.take().is_err());
    // Nonsense settings pace slowly instead of panicking.
    let mut odd = super::Bucket::new(f64::NAN, f64::NAN);
    assert_eq!(odd.take(), Ok(()));
    assert!(odd.take().is_err());
    let mut fast = super::Bucket::new(f64::INFINITY, 2.0);
    assert_eq!((fast.take(), fast.take()), (Ok(()), Ok(())));
}
