//! Helpers for tests against real `papo-server` processes.
#![allow(dead_code)]

use papo_client::tokens::{MemorySessionStore, SessionStore};
use papo_client::{ConnectionState, Core, CoreConfig};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The server binary: `PAPO_SERVER_BIN`, else next to the test executable's directory.
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PAPO_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("papo-server");
    assert!(
        bin.exists(),
        "papo-server not found at {} (run `cargo build --workspace --bins` or set PAPO_SERVER_BIN)",
        bin.display()
    );
    bin
}

/// A running `papo-server` child process.
pub struct ServerProc {
    child: Option<Child>,
    pub port: u16,
    pub db: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl ServerProc {
    /// Starts a server on a new port.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> ServerProc {
        let mut s = ServerProc {
            child: None,
            port: 0,
            db: dir.join("server.db"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: dir.join("server.log"),
        };
        s.spawn(0);
        s
    }

    fn spawn(&mut self, port: u16) {
        for attempt in 0..40 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut cmd = Command::new(server_bin());
            cmd.arg("--bind")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--db")
                .arg(&self.db)
                .arg("--token-secret")
                .arg(SECRET)
                .env("PAPO_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log));
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("spawn papo-server");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.starts_with("listening on ") => {
                    let addr = line.trim().trim_start_matches("listening on ");
                    self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
                    self.child = Some(child);
                    return;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if attempt == 39 {
                        panic!(
                            "papo-server did not start; log:\n{}",
                            std::fs::read_to_string(&self.log).unwrap_or_default()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and database.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(port);
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A config with short timeouts so the tests are fast.
pub fn fast_config(url: &str, cache: &Path) -> CoreConfig {
    let mut c = CoreConfig::new(url, cache);
    let s = &mut c.supervisor;
    s.connect_timeout = Duration::from_secs(2);
    s.open_timeout = Duration::from_secs(2);
    s.ping_interval = Duration::from_millis(500);
    s.liveness_timeout = Duration::from_secs(2);
    s.stable_after = Duration::from_secs(2);
    s.backoff.base = Duration::from_millis(100);
    s.backoff.cap = Duration::from_secs(1);
    s.send_rate = 25.0;
    s.send_burst = 50.0;
    c
}

pub async fn core(url: &str, cache: &Path) -> (Core, Arc<MemorySessionStore>) {
    let store = Arc::new(MemorySessionStore::default());
    let s: Arc<dyn SessionStore> = store.clone();
    (
        Core::start(fast_config(url, cache), s).await.unwrap(),
        store,
    )
}

pub async fn core_with(config: CoreConfig) -> Core {
    Core::start(config, Arc::new(MemorySessionStore::default()))
        .await
        .unwrap()
}

/// Polls `f` until it returns true or the timeout passes.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_state(core: &Core, timeout: Duration, f: impl Fn(&ConnectionState) -> bool) {
    let mut rx = core.watch_connection_state();
    tokio::time::timeout(timeout, async {
        loop {
            if f(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("state not reached; now {:?}", core.connection_state()));
}

/// Texts of a conversation, oldest first.
pub fn texts(core: &Core, conversation: &str) -> Vec<String> {
    // Synchronous on purpose: `eventually` polls it from a plain closure (test accessor).
    let mut rows = core
        .cache()
        .conversation_page(conversation, None, 1_000_000)
        .unwrap();
    rows.reverse();
    rows.into_iter().map(|r| r.text).collect()
}
