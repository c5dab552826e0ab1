//! Stress: many connect → first-emit cycles against the real `papo-server`, directly and through
//! a proxy that holds back the server's answer to the namespace CONNECT.
//!
//! This is the regression test for the intermittent stuck send seen in the desktop E2E (a
//! `papo-cli dm` stayed pending for its whole wait although the core said `connected`). Each
//! cycle does what one `papo-cli dm` run does: start a supervisor with a stored session, queue
//! one DM at once, and wait until the server confirmed it. The request timeout is long (60 s), so a
//! first request that was lost cannot be rescued by the resend and shows up as a stuck cycle.
//! All cycles run in one process on one tokio runtime, over one cache, to keep this fast.
//!
//! `PAPO_STRESS_CYCLES` overrides the number of cycles per test (default 1000).
//! `PAPO_TEST_LOG` (an env filter) shows the client's logs, `PAPO_STRESS_SERVER_LOG` sets the
//! server's (its log tail is printed for every stuck cycle).

mod common;

use common::*;
use papo_client::api::Api;
use papo_client::outbox::OutboxState;
use papo_client::secret::SecretString;
use papo_client::supervisor::{self, View};
use papo_client::tokens::{TokenError, TokenSource};
use papo_client::transport::SocketIoTransport;
use papo_client::CacheHandle;
use papo_protocol::http::{Credentials, Session};
use papo_protocol::{DmSend, Request};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PASSWORD: &str = "correct-horse-battery";
/// A cycle whose DM is not confirmed within this is stuck (a healthy one takes milliseconds).
const STUCK_AFTER: Duration = Duration::from_secs(5);

fn cycles() -> usize {
    std::env::var("PAPO_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

async fn account(url: &str, name: &str) -> Session {
    Api::new(url)
        .register(&Credentials {
            username: name.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAPO_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// The stored session's access token, and no refresh (the test never needs one).
struct FixedToken(String);

#[async_trait::async_trait]
impl TokenSource for FixedToken {
    async fn access_token(&self) -> Option<SecretString> {
        Some(SecretString::from(self.0.clone()))
    }
    async fn refresh(&self) -> Result<SecretString, TokenError> {
        Err(TokenError::Unavailable("no refresh in this test".into()))
    }
}

/// Runs `n` connect → first-DM cycles against `url`, each with a fresh supervisor (what a new
/// `papo-cli dm` process starts) over one shared cache; returns the failures.
async fn run_cycles(url: &str, dir: &std::path::Path, session: &Session, n: usize) -> Vec<String> {
    init_logs();
    let mut config = fast_config(url, &dir.join("ana.sqlite3")).supervisor;
    // A lost first request must not be hidden by the resend.
    config.request_timeout = Duration::from_secs(60);
    let threads = CacheHandle::open(dir.join("ana.sqlite3")).await.unwrap();
    threads.write(|c| c.set_me("ana")).await.unwrap();
    let cache = threads.cache().clone();
    let tokens: Arc<dyn TokenSource> = Arc::new(FixedToken(session.access_token.clone()));
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    let (mut total_send, mut total_stop) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    for i in 0..n {
        let handle = supervisor::spawn(
            config.clone(),
            threads.clone(),
            tokens.clone(),
            Arc::new(SocketIoTransport),
            Arc::new(Mutex::new(View::default())),
        );
        // As `papo-cli dm` does: queue at once, while the supervisor is still connecting.
        let t = Instant::now();
        let id = Uuid::now_v7();
        let dm = Request::DmSend(DmSend {
            id,
            to: "bia".into(),
            text: format!("dm {i}"),
            reply_to: None,
        });
        cache.enqueue("ana", &dm).unwrap();
        handle.outbox_changed();
        let state = loop {
            let item = cache.outbox_item(id).unwrap().unwrap();
            if item.state != OutboxState::Pending || t.elapsed() > STUCK_AFTER {
                break item.state;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        slowest = slowest.max(t.elapsed());
        total_send += t.elapsed();
        if state != OutboxState::Sent {
            failures.push(format!(
                "cycle {i}: {state:?} after {:?}, connection {:?}",
                t.elapsed(),
                handle.state()
            ));
            if let Ok(log) = std::fs::read_to_string(dir.join("server.log")) {
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(20)..];
                failures.push(format!("server log tail:\n{}", tail.join("\n")));
            }
            // The next supervisor must not send it: that would not be a first emit any more.
            cache.discard_outbox(id).unwrap();
        }
        let t1 = Instant::now();
        handle.shutdown().await;
        total_stop += t1.elapsed();
    }
    eprintln!(
        "{n} cycles against {url} in {:?} (sending {total_send:?}, stopping {total_stop:?}); \
         slowest {slowest:?}; {} stuck",
        started.elapsed(),
        failures.len() / 2
    );
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_then_first_send_cycles_never_leave_a_send_pending() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::env::var("PAPO_STRESS_SERVER_LOG").unwrap_or_else(|_| "info".into());
    let server = ServerProc::start(
        dir.path(),
        &[
            ("PAPO_SQLITE_SYNC", "normal"),
            ("PAPO_LOG", &log),
            ("PAPO_RATE", "100000"),
            ("PAPO_BURST", "100000"),
        ],
    );
    let url = server.url();
    let session = account(&url, "ana").await;
    account(&url, "bia").await;
    let failures = run_cycles(&url, dir.path(), &session, cycles()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sends_survive_a_server_that_answers_connect_late() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        dir.path(),
        &[
            ("PAPO_SQLITE_SYNC", "normal"),
            ("PAPO_RATE", "100000"),
            ("PAPO_BURST", "100000"),
        ],
    );
    let session = account(&server.url(), "ana").await;
    account(&server.url(), "bia").await;
    let proxy = LateConnectProxy::start(server.port).await;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let failures = run_cycles(&url, dir.path(), &session, cycles()).await;
    assert!(
        proxy.delayed.load(Ordering::SeqCst) > 0,
        "the proxy never saw a CONNECT answer"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A TCP proxy that holds back the server's answer to the Socket.IO namespace CONNECT (the
/// WebSocket text frame `40{...}`) by 0–40 ms, varying from connection to connection; the
/// bytes after it wait behind it, in order. Everything else passes at once.
struct LateConnectProxy {
    port: u16,
    delayed: Arc<AtomicU64>,
}

impl LateConnectProxy {
    async fn start(upstream: u16) -> LateConnectProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delayed = Arc::new(AtomicU64::new(0));
        let d = delayed.clone();
        tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                n += 1;
                // A spread of delays, 0..=40 ms, different for consecutive connections.
                let delay = Duration::from_millis((n * 7919) % 41);
                let delayed = d.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(copy(cr, sw));
                    tokio::spawn(hold_connect_answer(sr, cw, delay, delayed));
                });
            }
        });
        LateConnectProxy { port, delayed }
    }
}

async fn copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
}

async fn hold_connect_answer(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    delayed: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16384];
    let mut held = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if !held && chunk.windows(3).any(|w| w == b"40{") {
            held = true;
            delayed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}
