//! Interop: the supervisor against a stock Node `socket.io` 4.8 server (tests/node/server.js),
//! not only against ours. Needs node and `npm ci --prefix crates/client/tests/node`, so the tests
//! are `#[ignore]`d in a plain `cargo test`; the project's test command runs them with
//! `--ignored`, where a missing peer is a failure.

mod common;

use common::*;
use papo_client::tokens::{MemorySessionStore, SessionStore};
use papo_client::{ConnectionState, Core};
use papo_protocol::http::Session;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

struct NodeServer {
    child: Child,
    port: u16,
}

impl NodeServer {
    fn start(port: u16, state: &Path, seed: usize) -> NodeServer {
        for _ in 0..40 {
            let mut child = Command::new("node")
                .arg(node_dir().join("server.js"))
                .arg(port.to_string())
                .arg(state)
                .env("SEED", seed.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn node");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.starts_with("listening on ") => {
                    let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
                    return NodeServer { child, port };
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        panic!("node server did not start");
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails (never skips) when the Node peer cannot run.
fn require_node() {
    assert!(
        node_dir().join("node_modules/socket.io").exists(),
        "run `npm ci --prefix crates/client/tests/node` first"
    );
    assert!(
        Command::new("node").arg("--version").output().is_ok(),
        "`node` is not installed"
    );
}

fn session(token: &str) -> Arc<MemorySessionStore> {
    let store = Arc::new(MemorySessionStore::default());
    store
        .save(&Session {
            username: "ana".into(),
            access_token: token.into(),
            expires_in: 900,
            refresh_token: "unused".into(),
        })
        .unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and crates/client/tests/node/node_modules; scripts/test.sh runs it"]
async fn connects_receives_and_resumes_after_restarts_against_a_stock_node_socketio_server() {
    require_node();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("node-state.json");
    let node = NodeServer::start(0, &state, 5);
    let port = node.port;
    let url = format!("http://127.0.0.1:{port}");
    let store: Arc<dyn SessionStore> = session("node-token");
    let core = Core::start(fast_config(&url, &dir.path().join("ana.sqlite3")), store)
        .await
        .unwrap();

    wait_state(&core, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;
    eventually("the replay", Duration::from_secs(10), || {
        texts(&core, "public").len() == 5
    })
    .await;

    core.send_chat("from rust").await.unwrap();
    eventually("the echo", Duration::from_secs(10), || {
        core.cache().outbox_counts().unwrap() == (0, 1, 0) && texts(&core, "public").len() == 6
    })
    .await;

    // Restart twice (SIGKILL), with new messages each time: resumed by cursor, no duplicates.
    let mut node = node;
    for round in 0..2 {
        drop(node);
        tokio::time::sleep(Duration::from_millis(200)).await;
        node = NodeServer::start(port, &state, 2);
        let expected = 6 + 2 * (round + 1);
        eventually("the resume", Duration::from_secs(15), || {
            texts(&core, "public").len() == expected
        })
        .await;
        wait_state(&core, Duration::from_secs(5), |s| {
            *s == ConnectionState::Connected
        })
        .await;
    }
    let t = texts(&core, "public");
    assert_eq!(
        t,
        [
            "node-1",
            "node-2",
            "node-3",
            "node-4",
            "node-5",
            "from rust",
            "node-7",
            "node-8",
            "node-9",
            "node-10"
        ]
    );
    assert_eq!(core.cache().resume_point().unwrap().0.public, 10);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and crates/client/tests/node/node_modules; scripts/test.sh runs it"]
async fn a_refusal_from_a_stock_node_server_signs_out() {
    require_node();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeServer::start(0, &dir.path().join("s.json"), 0);
    let url = format!("http://127.0.0.1:{}", node.port);
    let store: Arc<dyn SessionStore> = session("wrong-token");
    let core = Core::start(fast_config(&url, &dir.path().join("ana.sqlite3")), store)
        .await
        .unwrap();
    // token_invalid -> one refresh (refused: no account server here) -> signed out.
    wait_state(&core, Duration::from_secs(15), |s| {
        matches!(s, ConnectionState::SignedOut { .. })
    })
    .await;
}
