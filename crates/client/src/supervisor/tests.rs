//! Supervisor behaviour against a scripted fake transport, in paused tokio time.

use super::*;
use crate::backoff::BackoffConfig;
use crate::cache::Cache;
use crate::secret::SecretString;
use crate::tokens::TokenError;
use crate::transport::TransportError;
use crate::transport::{Inbound, Link, Refusal};
use async_trait::async_trait;
use papo_protocol::{events, Cursor, LogBatch, Reply, SyncState, SyncStatus};
use papo_protocol::{ChatMessage, ChatSend, EventBody, LogEvent, ReplyResult, Request, Stream};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::timeout;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// connect() fails at once.
    Fail,
    /// connect() never returns.
    Hang,
    /// connect() succeeds but the server never answers the CONNECT.
    NoOpen,
    /// The server refuses the CONNECT.
    Refuse(&'static str),
    /// A healthy server: opens, answers pings and requests.
    Healthy,
    /// Opens, then goes silent (black hole): emits succeed, nothing comes back.
    Silent,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Behaviour>>,
    default: Mutex<Option<Behaviour>>,
    connects: Mutex<Vec<Instant>>,
    emitted: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    auths: Mutex<Vec<serde_json::Value>>,
    urls: Mutex<Vec<String>>,
    /// How long after `Open` a healthy server's first `sync` comes (its connect handler ran).
    sync_delay: Mutex<Duration>,
    /// The stream heads a healthy server puts in its `sys:ping` replies (None: an older server).
    heads: Arc<Mutex<Option<Cursor>>>,
    /// The inbound channel of the latest session, for a test to play the server.
    last_inbound: Mutex<Option<mpsc::UnboundedSender<Inbound>>>,
}

impl Fake {
    fn new(default: Behaviour, script: &[Behaviour]) -> Arc<Fake> {
        let f = Fake::default();
        *f.default.lock().unwrap() = Some(default);
        f.script.lock().unwrap().extend(script.iter().copied());
        Arc::new(f)
    }
    fn connect_times(&self) -> Vec<Instant> {
        self.connects.lock().unwrap().clone()
    }
    fn requests(&self) -> Vec<String> {
        self.emitted
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e != events::SYS_PING)
            .map(|(_, v)| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn auth_epoch(auths: &[serde_json::Value]) -> String {
    auths
        .last()
        .and_then(|a| a["epoch"].as_str())
        .unwrap_or("e1")
        .to_string()
}

struct FakeLink {
    behaviour: Behaviour,
    inbound: mpsc::UnboundedSender<Inbound>,
    emitted: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    opened: Arc<std::sync::atomic::AtomicBool>,
    heads: Arc<Mutex<Option<Cursor>>>,
}

#[async_trait]
impl Transport for Fake {
    async fn connect(
        &self,
        url: &str,
        auth: serde_json::Value,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Box<dyn Link>, TransportError> {
        self.connects.lock().unwrap().push(Instant::now());
        self.urls.lock().unwrap().push(url.to_string());
        self.auths.lock().unwrap().push(auth);
        let b = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().unwrap().unwrap());
        let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
        *self.last_inbound.lock().unwrap() = Some(inbound.clone());
        match b {
            Behaviour::Fail => return Err(TransportError("connection refused".into())),
            Behaviour::Hang => std::future::pending::<()>().await,
            Behaviour::NoOpen => {}
            Behaviour::Refuse(reason) => {
                let _ = inbound.send(Inbound::Refused(
                    Refusal::from_error_text(&format!(
                        "Received an ConnectError frame: {{\"message\":\"{reason}\"}}"
                    ))
                    .unwrap(),
                ));
            }
            Behaviour::Healthy | Behaviour::Silent => {
                // The open arrives a little later, as over a real network; then, from a healthy
                // server, the `sync` of an (empty) replay, in the auth's epoch.
                let tx = inbound.clone();
                let opened = opened.clone();
                let sync_delay = *self.sync_delay.lock().unwrap();
                let epoch = auth_epoch(&self.auths.lock().unwrap());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    opened.store(true, Ordering::SeqCst);
                    let _ = tx.send(Inbound::Open);
                    if b == Behaviour::Healthy {
                        tokio::time::sleep(sync_delay).await;
                        let status = SyncStatus {
                            state: SyncState::Live,
                            epoch,
                            heads: Cursor::default(),
                            admin: false,
                        };
                        let _ = tx.send(Inbound::Event {
                            name: events::SYNC.into(),
                            data: serde_json::to_value(status).unwrap(),
                        });
                    }
                });
            }
        }
        Ok(Box::new(FakeLink {
            behaviour: b,
            inbound,
            emitted: self.emitted.clone(),
            opened,
            heads: self.heads.clone(),
        }))
    }
}

#[async_trait]
impl Link for FakeLink {
    async fn emit(&self, event: &str, data: serde_json::Value) -> Result<(), TransportError> {
        assert!(
            self.opened.load(Ordering::SeqCst),
            "emitted {event} before open"
        );
        self.emitted
            .lock()
            .unwrap()
            .push((event.to_string(), data.clone()));
        if self.behaviour == Behaviour::Healthy {
            let id = data["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
            let mut result = ReplyResult::default();
            if event == events::SYS_PING {
                result.heads = *self.heads.lock().unwrap();
            }
            let reply = Reply::ok(id, event, result);
            let _ = self.inbound.send(Inbound::Event {
                name: events::REPLY.into(),
                data: serde_json::to_value(reply).unwrap(),
            });
        }
        Ok(())
    }
    async fn close(&self) {}
}

struct Tokens {
    refreshes: AtomicUsize,
    refresh_ok: bool,
    /// When the token is due for a refresh (None: unknown); a refresh moves it `life` ahead.
    due: Mutex<Option<Instant>>,
    life: Duration,
    current: Mutex<String>,
}

#[async_trait]
impl TokenSource for Tokens {
    async fn access_token(&self) -> Option<SecretString> {
        Some(SecretString::from(self.current.lock().unwrap().clone()))
    }
    async fn refresh(&self) -> Result<SecretString, TokenError> {
        let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.refresh_ok {
            let token = if n == 1 {
                "tok2".into()
            } else {
                format!("tok{}", n + 1)
            };
            *self.current.lock().unwrap() = token.clone();
            let mut due = self.due.lock().unwrap();
            if due.is_some() {
                *due = Some(Instant::now() + self.life);
            }
            Ok(SecretString::from(token))
        } else {
            Err(TokenError::Refused("token_invalid".into()))
        }
    }
    fn refresh_due(&self) -> Option<Instant> {
        *self.due.lock().unwrap()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    /// The cache file, read synchronously by the test (the supervisor uses the threads).
    cache: Arc<Cache>,
    fake: Arc<Fake>,
    tokens: Arc<Tokens>,
    handle: SupervisorHandle,
    rx: watch::Receiver<ConnectionState>,
}

impl Setup {
    /// Waits (in paused time) for a connection state.
    async fn until(&mut self, f: impl Fn(&ConnectionState) -> bool) -> ConnectionState {
        wait_for(&mut self.rx, f).await
    }
}

fn config() -> SupervisorConfig {
    let mut c = SupervisorConfig::new("http://fake");
    // The OS's network changes have no place in these tests; they call network_changed().
    c.watch_network = false;
    c.backoff = BackoffConfig {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(8),
        jitter: 0.5,
    };
    c
}

fn tokens(refresh_ok: bool, due: Option<Instant>, current: &str) -> Tokens {
    Tokens {
        refreshes: AtomicUsize::new(0),
        refresh_ok,
        due: Mutex::new(due),
        life: Duration::from_secs(720),
        current: Mutex::new(current.into()),
    }
}

fn setup(fake: Arc<Fake>, config: SupervisorConfig, refresh_ok: bool) -> Setup {
    setup_with(fake, config, tokens(refresh_ok, None, "tok"))
}

/// The one setup: a cache owned by "ana" on its threads, the fake server, the supervisor.
fn setup_with(fake: Arc<Fake>, config: SupervisorConfig, tokens: Tokens) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c.sqlite3")).unwrap();
    cache.set_me("ana").unwrap();
    let threads = CacheHandle::spawn(cache).unwrap().holding_paused_clock();
    let tokens = Arc::new(tokens);
    let handle = spawn(
        config,
        threads.clone(),
        tokens.clone(),
        fake.clone(),
        Arc::new(Mutex::new(View::default())),
    );
    Setup {
        _dir: dir,
        cache: threads.cache().clone(),
        fake,
        tokens,
        rx: handle.watch_state(),
        handle,
    }
}

async fn wait_for(
    rx: &mut watch::Receiver<ConnectionState>,
    f: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    timeout(Duration::from_secs(600), async {
        loop {
            let s = rx.borrow_and_update().clone();
            if f(&s) {
                return s;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("state not reached")
}

#[tokio::test(start_paused = true)]
async fn backoff_between_failed_attempts_grows_to_the_cap_with_jitter() {
    let s = setup(Fake::new(Behaviour::Fail, &[]), config(), true);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let times = s.fake.connect_times();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 10, "{} attempts", times.len());
    // Ceilings 1, 2, 4, 8, 8, ... seconds; each delay is in [ceiling/2, ceiling].
    for (i, gap) in gaps.iter().enumerate() {
        let ceiling = Duration::from_secs(1u64 << i.min(3));
        assert!(
            *gap >= ceiling / 2 && *gap <= ceiling + Duration::from_millis(5),
            "gap {i} = {gap:?}, ceiling {ceiling:?}"
        );
    }
    // Jitter is applied after the cap: capped delays differ from each other.
    let capped: Vec<_> = gaps[4..].iter().map(|g| g.as_millis()).collect();
    let mut distinct = capped.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > capped.len() / 2, "{capped:?}");
    match s.handle.state() {
        ConnectionState::Retrying { reason, .. } => assert!(reason.contains("refused")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_connect_is_cut_by_the_connect_timeout() {
    let mut s = setup(
        Fake::new(Behaviour::Fail, &[Behaviour::Hang]),
        config(),
        true,
    );
    let start = Instant::now();
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(
        matches!(st, ConnectionState::Retrying { reason, .. } if reason.contains("connect timed out"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_connect_is_cut_by_the_open_timeout() {
    let mut s = setup(
        Fake::new(Behaviour::Fail, &[Behaviour::NoOpen]),
        config(),
        true,
    );
    let start = Instant::now();
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(
        matches!(st, ConnectionState::Retrying { reason, .. } if reason.contains("open timeout"))
    );
    assert!(
        s.fake.emitted.lock().unwrap().is_empty(),
        "emitted before open"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_refreshed_once_then_signed_out_without_a_storm() {
    let mut s = setup(
        Fake::new(Behaviour::Refuse("token_expired"), &[]),
        config(),
        true,
    );
    s.until(|s| matches!(s, ConnectionState::SignedOut { .. }))
        .await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(s.tokens.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(s.fake.connect_times().len(), 2);
    assert!(matches!(
        s.handle.state(),
        ConnectionState::SignedOut { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_signs_out_at_once_and_sign_in_resumes() {
    let mut s = setup(
        Fake::new(Behaviour::Healthy, &[Behaviour::Refuse("token_invalid")]),
        config(),
        false,
    );
    s.until(|s| matches!(s, ConnectionState::SignedOut { .. }))
        .await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(s.fake.connect_times().len(), 1);
    s.handle.signed_in();
    s.until(|s| *s == ConnectionState::Connected).await;
}

#[tokio::test(start_paused = true)]
async fn a_black_hole_is_noticed_by_liveness_within_a_few_seconds() {
    let mut s = setup(
        Fake::new(Behaviour::Healthy, &[Behaviour::Silent]),
        config(),
        true,
    );
    s.until(|s| *s == ConnectionState::Connected).await;
    let start = Instant::now();
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    let took = start.elapsed();
    assert!(took <= Duration::from_secs(7), "took {took:?}");
    assert!(matches!(st, ConnectionState::Retrying { reason, .. } if reason.contains("silent")));
    // ... and the next (healthy) attempt connects again.
    s.until(|s| *s == ConnectionState::Connected).await;
}

#[tokio::test(start_paused = true)]
async fn retry_now_skips_the_backoff_wait() {
    let mut c = config();
    c.backoff.base = Duration::from_secs(60);
    c.backoff.cap = Duration::from_secs(60);
    let mut s = setup(Fake::new(Behaviour::Healthy, &[Behaviour::Fail]), c, true);
    s.until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    let start = Instant::now();
    s.handle.retry_now();
    s.until(|s| *s == ConnectionState::Connected).await;
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_wakes_the_retry_at_once() {
    let offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut c = config();
    c.backoff.base = Duration::from_secs(60);
    c.backoff.cap = Duration::from_secs(60);
    // Wall clock = paused monotonic clock + offset, as on a real machine that does not sleep.
    let origin = Instant::now();
    let o = offset.clone();
    c.wall_clock = WallClock::new(move || {
        1_000_000 + origin.elapsed().as_millis() as i64 + o.load(Ordering::SeqCst)
    });
    let mut s = setup(Fake::new(Behaviour::Healthy, &[Behaviour::Fail]), c, true);
    s.until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(s.handle.state(), ConnectionState::Retrying { .. }));
    // The machine slept an hour: the monotonic clock did not move, the wall clock did.
    let start = Instant::now();
    offset.store(3_600_000, Ordering::SeqCst);
    s.until(|s| *s == ConnectionState::Connected).await;
    assert!(
        start.elapsed() <= Duration::from_millis(1100),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_stable_session_resets_the_backoff() {
    let fake = Fake::new(
        Behaviour::Fail,
        &[
            Behaviour::Fail,
            Behaviour::Fail,
            Behaviour::Fail,
            Behaviour::Silent,
        ],
    );
    let mut c = config();
    c.stable_after = Duration::from_secs(2);
    c.liveness_timeout = Duration::from_secs(4);
    let mut s = setup(fake, c, true);
    s.until(|s| *s == ConnectionState::Connected).await;
    // The silent session lasts > stable_after, so the next delay is back to the first ceiling.
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    match st {
        ConnectionState::Retrying { attempt, in_ms, .. } => {
            assert_eq!(attempt, 1);
            assert!(in_ms <= 1000);
        }
        _ => unreachable!(),
    }
}

#[tokio::test(start_paused = true)]
async fn outbox_is_sent_after_open_in_order_and_confirmed_by_reply() {
    let mut s = setup(
        Fake::new(Behaviour::Healthy, &[Behaviour::Fail]),
        config(),
        true,
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = Uuid::now_v7();
        ids.push(id);
        s.cache
            .enqueue(
                "ana",
                &Request::ChatSend(ChatSend {
                    id,
                    text: format!("m{i}"),
                    reply_to: None,
                }),
            )
            .unwrap();
    }
    s.handle.outbox_changed();
    s.until(|s| *s == ConnectionState::Connected).await;
    timeout(Duration::from_secs(30), async {
        while s.cache.outbox_counts().unwrap() != (0, 5, 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(s.fake.requests(), ["m0", "m1", "m2", "m3", "m4"]);
}

#[tokio::test(start_paused = true)]
async fn the_durable_cursor_and_epoch_are_sent_on_reconnect() {
    let mut s = setup(Fake::new(Behaviour::Healthy, &[]), config(), true);
    s.until(|s| *s == ConnectionState::Connected).await;
    let ev = |seq: u64| LogEvent {
        stream: Stream::Public,
        seq,
        at: 1,
        cid: None,
        body: EventBody::ChatMessage(ChatMessage {
            id: seq as i64,
            from: "bia".into(),
            text: "x".into(),
            at: 1,
            reply_to: None,
        }),
    };
    s.cache.set_epoch("e1").unwrap();
    s.cache.apply_batch("ana", &[ev(1), ev(2)]).unwrap();
    s.handle.sign_out();
    s.until(|s| matches!(s, ConnectionState::SignedOut { .. }))
        .await;
    s.handle.signed_in();
    s.until(|s| *s == ConnectionState::Connected).await;
    let auths = s.fake.auths.lock().unwrap().clone();
    let last = auths.last().unwrap();
    assert_eq!(last["cursor"]["public"], 2);
    assert_eq!(last["epoch"], "e1");
    assert_eq!(last["token"], "tok");
    assert!(auths[0].get("cursor").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_server_that_stays_down_is_left_for_the_next_node() {
    let mut c = config();
    c.server_url = "http://node-a:1, http://node-b:2/".into();
    let fake = Fake::new(Behaviour::Healthy, &[Behaviour::Fail, Behaviour::Fail]);
    let mut s = setup(fake.clone(), c, true);
    s.until(|s| *s == ConnectionState::Connected).await;
    // a fails, b fails, back to a which answers; every attempt carried the cursor.
    assert_eq!(
        *fake.urls.lock().unwrap(),
        vec!["http://node-a:1", "http://node-b:2", "http://node-a:1"]
    );
}

#[test]
fn server_lists_are_split_and_trimmed() {
    assert_eq!(
        server_urls("http://a:1/, ,http://b:2"),
        vec!["http://a:1".to_string(), "http://b:2".to_string()]
    );
    assert_eq!(server_urls("http://a:1"), vec!["http://a:1".to_string()]);
}

/// Queues one chat message while connected to a server whose `sync` comes after `sync_delay`,
/// and checks that it leaves only after `released_after` (from Connected), not 100 ms before.
async fn first_request_waits(sync_delay: Duration, text: &str, released_after: Duration) {
    let fake = Fake::new(Behaviour::Healthy, &[]);
    *fake.sync_delay.lock().unwrap() = sync_delay;
    let mut s = setup(fake, config(), true);
    s.cache
        .enqueue(
            "ana",
            &Request::ChatSend(ChatSend {
                id: Uuid::now_v7(),
                text: text.into(),
                reply_to: None,
            }),
        )
        .unwrap();
    s.handle.outbox_changed();
    s.until(|s| *s == ConnectionState::Connected).await;
    let margin = Duration::from_millis(100);
    tokio::time::sleep(released_after - margin).await;
    assert!(
        s.fake.requests().is_empty(),
        "sent before the server was ready"
    );
    tokio::time::sleep(2 * margin).await;
    assert_eq!(s.fake.requests(), [text]);
}

#[tokio::test(start_paused = true)]
async fn requests_wait_until_the_server_has_run_its_connect_handler() {
    // The server answers CONNECT (open) before its connect handler has registered the event
    // handlers; a request in between would be dropped unanswered. The handler's first `sync`
    // (or `log`) says it is ready.
    first_request_waits(Duration::from_secs(2), "first", Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_syncs_still_gets_the_requests_after_the_open_timeout() {
    // An odd server (no `sync`, no `log`, but it answers): requests still go out, late.
    first_request_waits(Duration::from_secs(3600), "late", Duration::from_secs(5)).await;
}

fn public_chat(seq: u64) -> LogEvent {
    LogEvent {
        stream: Stream::Public,
        seq,
        at: 1,
        cid: None,
        body: EventBody::ChatMessage(ChatMessage {
            id: seq as i64,
            from: "bia".into(),
            text: format!("m{seq}"),
            at: 1,
            reply_to: None,
        }),
    }
}

fn count_pings(fake: &Fake) -> usize {
    fake.emitted
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| e == events::SYS_PING)
        .count()
}

#[tokio::test(start_paused = true)]
async fn heads_ahead_with_no_log_is_a_stall_and_the_session_is_replaced() {
    let fake = Fake::new(Behaviour::Healthy, &[]);
    // The server has 5 public events we never got, and its pump for us sends nothing.
    *fake.heads.lock().unwrap() = Some(Cursor {
        public: 5,
        private: 0,
    });
    let mut s = setup(fake, config(), true);
    s.until(|s| *s == ConnectionState::Connected).await;
    let start = Instant::now();
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    // First ping at once, then the grace (4 s).
    assert!(
        start.elapsed() <= Duration::from_millis(4100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(st, ConnectionState::Retrying { ref reason, .. } if reason.contains("stalled")),
        "{st:?}"
    );
    s.until(|s| *s == ConnectionState::Connected).await;
    assert_eq!(s.fake.connect_times().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn heads_ahead_followed_by_the_log_is_no_stall() {
    let fake = Fake::new(Behaviour::Healthy, &[]);
    *fake.heads.lock().unwrap() = Some(Cursor {
        public: 1,
        private: 0,
    });
    let mut s = setup(fake, config(), true);
    s.until(|s| *s == ConnectionState::Connected).await;
    // The event behind the heads arrives a moment after the first ping reply.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tx = s.fake.last_inbound.lock().unwrap().clone().unwrap();
    let batch = LogBatch {
        events: vec![public_chat(1)],
    };
    tx.send(Inbound::Event {
        name: events::LOG.into(),
        data: serde_json::to_value(batch).unwrap(),
    })
    .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.handle.state(), ConnectionState::Connected);
    assert_eq!(s.fake.connect_times().len(), 1);
    assert!(count_pings(&s.fake) > 20, "pings kept going");
}

#[tokio::test(start_paused = true)]
async fn ping_replies_without_heads_never_look_like_a_stall() {
    // An older server: no heads in the ping reply, and nothing else for a minute.
    let mut s = setup(Fake::new(Behaviour::Healthy, &[]), config(), true);
    s.until(|s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.handle.state(), ConnectionState::Connected);
    assert_eq!(s.fake.connect_times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_token_is_refreshed_ahead_of_expiry_while_connected() {
    let mut s = setup(Fake::new(Behaviour::Healthy, &[]), config(), true);
    *s.tokens.due.lock().unwrap() = Some(Instant::now() + Duration::from_secs(100));
    s.until(|s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(98)).await;
    assert_eq!(s.tokens.refreshes.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.tokens.refreshes.load(Ordering::SeqCst), 1);
    // The next one 720 s later (the fake's 80 % of a 900 s token), on the same connection.
    tokio::time::sleep(Duration::from_secs(717)).await;
    assert_eq!(s.tokens.refreshes.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.tokens.refreshes.load(Ordering::SeqCst), 2);
    assert_eq!(s.fake.connect_times().len(), 1);
    assert_eq!(s.handle.state(), ConnectionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn a_token_past_its_refresh_point_is_refreshed_before_connecting() {
    let fake = Fake::new(Behaviour::Healthy, &[]);
    let mut s = setup_with(fake, config(), tokens(true, Some(Instant::now()), "old"));
    s.until(|s| *s == ConnectionState::Connected).await;
    let (tokens, fake) = (s.tokens.clone(), s.fake.clone());
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
    let auths = fake.auths.lock().unwrap().clone();
    assert_eq!(auths.len(), 1);
    assert_eq!(
        auths[0]["token"], "tok2",
        "never connected with the old token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_network_change_during_the_backoff_retries_at_once() {
    let mut c = config();
    c.backoff.base = Duration::from_secs(60);
    c.backoff.cap = Duration::from_secs(60);
    let mut s = setup(Fake::new(Behaviour::Healthy, &[Behaviour::Fail]), c, true);
    s.until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.fake.connect_times().len(), 1);
    let start = Instant::now();
    s.handle.network_changed();
    s.until(|s| *s == ConnectionState::Connected).await;
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.fake.connect_times().len(), 2);
}

/// A config whose own pings are rare, so a ping in the test can only be the probe.
fn rare_pings() -> (SupervisorConfig, Arc<std::sync::atomic::AtomicI64>) {
    let offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut c = config();
    c.ping_interval = Duration::from_secs(60);
    c.liveness_timeout = Duration::from_secs(120);
    let origin = Instant::now();
    let o = offset.clone();
    c.wall_clock = WallClock::new(move || {
        1_000_000 + origin.elapsed().as_millis() as i64 + o.load(Ordering::SeqCst)
    });
    (c, offset)
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_while_connected_pings_at_once_and_keeps_a_live_session() {
    let (c, offset) = rare_pings();
    let mut s = setup(Fake::new(Behaviour::Healthy, &[]), c, true);
    s.until(|s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(count_pings(&s.fake), 1, "only the first ping so far");
    // The machine slept an hour while connected.
    offset.store(3_600_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(count_pings(&s.fake), 2, "the wake sent a ping at once");
    // It was answered: the session stays.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.handle.state(), ConnectionState::Connected);
    assert_eq!(s.fake.connect_times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_on_a_dead_session_reconnects_after_the_probe() {
    let (c, offset) = rare_pings();
    let mut s = setup(Fake::new(Behaviour::Healthy, &[Behaviour::Silent]), c, true);
    s.until(|s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let start = Instant::now();
    offset.store(3_600_000, Ordering::SeqCst);
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    // Noticed within one wake check (1 s), then the probe timeout (2 s) — not the 120 s liveness.
    assert!(
        start.elapsed() <= Duration::from_millis(3100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(st, ConnectionState::Retrying { ref reason, .. } if reason.contains("probe")),
        "{st:?}"
    );
    s.until(|s| *s == ConnectionState::Connected).await;
}

#[tokio::test(start_paused = true)]
async fn a_network_change_while_connected_probes_the_session() {
    let (c, _) = rare_pings();
    let mut s = setup(Fake::new(Behaviour::Healthy, &[Behaviour::Silent]), c, true);
    s.until(|s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pings = count_pings(&s.fake);
    let start = Instant::now();
    s.handle.network_changed();
    let st = s
        .until(|s| matches!(s, ConnectionState::Retrying { .. }))
        .await;
    assert_eq!(count_pings(&s.fake), pings + 1);
    assert!(
        start.elapsed() <= Duration::from_millis(2100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(st, ConnectionState::Retrying { ref reason, .. } if reason.contains("probe")),
        "{st:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_presence_watch_is_sent_when_it_changes_and_again_on_every_connection() {
    let mut s = setup(Fake::new(Behaviour::Healthy, &[]), config(), true);
    s.until(|s| *s == ConnectionState::Connected).await;
    let watches = |s: &Setup| -> Vec<serde_json::Value> {
        s.fake
            .emitted
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e == events::PRESENCE_WATCH)
            .map(|(_, v)| v.clone())
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(watches(&s).is_empty(), "nothing watched: nothing sent");
    s.handle
        .watch_presence(vec!["joao".into(), "bia".into(), "bia".into()], true);
    // The same set again (in another order) is not sent twice.
    s.handle
        .watch_presence(vec!["bia".into(), "joao".into()], true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let want = serde_json::json!({"users": ["bia", "joao"], "public_typing": true});
    assert_eq!(watches(&s), vec![want.clone()]);
    // The server forgets it with the connection: a new connection gets it again.
    s.handle.sign_out();
    s.until(|s| matches!(s, ConnectionState::SignedOut { .. }))
        .await;
    s.handle.signed_in();
    s.until(|s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(watches(&s), vec![want.clone(), want]);
    // More than MAX_WATCH names: the first ones are kept.
    let many: Vec<String> = (0..300).map(|i| format!("user{i:03}")).collect();
    s.handle.watch_presence(many, false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last = watches(&s).pop().unwrap();
    assert_eq!(
        last["users"].as_array().unwrap().len(),
        papo_protocol::MAX_WATCH
    );
    assert_eq!(last["users"][0], "user000");
    assert_eq!(last["public_typing"], false);
}
