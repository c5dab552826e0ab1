//! The load generator: thousands of WebSocket clients speaking Engine.IO v4 / Socket.IO v5
//! directly (or raw WebSocket for the baseline), one small tokio task each.
//!
//! Clients never fully parse the hot-path traffic: latency markers (`B<step>|<t_us>|…` for
//! public chat, `D<step>|<t_us>|<to>|…` for DMs) are found with a substring search inside the
//! `"text":"` fields, so the generator spends its share of the 2 cores on sockets, not JSON.
//! Only clients that track sequence numbers (the reconnect storm) parse `log` batches.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------------
// A lock-free log-linear histogram of microseconds (~3% precision).
// ------------------------------------------------------------------------------------------------

const SUB: u32 = 32;
const NB: usize = 64 + 40 * SUB as usize;

pub struct Hist {
    b: Vec<AtomicU64>,
    max: AtomicU64,
    n: AtomicU64,
}

fn bucket(v: u64) -> usize {
    if v < 64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 6
    let sub = (v >> (exp - 5)) & (SUB as u64 - 1);
    (64 + (exp - 6) * SUB + sub as u32).min(NB as u32 - 1) as usize
}

fn bucket_value(i: usize) -> u64 {
    if i < 64 {
        return i as u64;
    }
    let j = (i - 64) as u32;
    let exp = j / SUB + 6;
    let sub = (j % SUB) as u64;
    // upper edge of the bucket: a conservative percentile
    ((SUB as u64 + sub + 1) << (exp - 5)) - 1
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            b: (0..NB).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            n: AtomicU64::new(0),
        }
    }
}

impl Hist {
    pub fn record(&self, v: u64) {
        self.b[bucket(v)].fetch_add(1, Relaxed);
        self.max.fetch_max(v, Relaxed);
        self.n.fetch_add(1, Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.n.load(Relaxed)
    }
    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }
    pub fn quantile(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let target = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.b.iter().enumerate() {
            acc += c.load(Relaxed);
            if acc >= target {
                return bucket_value(i).min(self.max());
            }
        }
        self.max()
    }
}

// ------------------------------------------------------------------------------------------------
// Shared counters
// ------------------------------------------------------------------------------------------------

pub const MAX_STEPS: usize = 64;

#[derive(Default)]
pub struct Step {
    pub delivered: AtomicU64,
    pub hist: Hist,
}

/// Per-client stream positions, for clients that track sequence numbers.
#[derive(Default)]
pub struct Track {
    pub public: AtomicU64,
    pub private: AtomicU64,
    pub gaps: AtomicU64,
    pub lost: AtomicU64,
    pub dups: AtomicU64,
    pub live: AtomicBool,
    /// When `public` first reached `Shared::catch_up_target` (µs since the epoch), 0 if not yet.
    pub caught_up_at: AtomicU64,
}

pub struct Shared {
    pub steps: Vec<Step>,
    pub connected: AtomicUsize,
    pub disconnected: AtomicUsize,
    pub replies_ok: AtomicU64,
    pub replies_err: AtomicU64,
    pub epoch: Mutex<Option<String>>,
    pub catch_up_target: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_in: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            steps: (0..MAX_STEPS).map(|_| Step::default()).collect(),
            connected: Default::default(),
            disconnected: Default::default(),
            replies_ok: Default::default(),
            replies_err: Default::default(),
            epoch: Default::default(),
            catch_up_target: AtomicU64::new(u64::MAX),
            bytes_in: Default::default(),
            frames_in: Default::default(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Clients
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Engine.IO v4 + Socket.IO v5 over WebSocket.
    Sio,
    /// Plain WebSocket text frames (the baseline server).
    Raw,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub proto: Proto,
}

pub enum Cmd {
    Send(String),
    /// Drop the connection abruptly (RST, like a lost network).
    Drop,
}

pub struct ClientSpec {
    pub idx: usize,
    /// Socket.IO CONNECT auth payload (JSON), if any.
    pub auth: Option<String>,
    pub track: Option<Arc<Track>>,
}

pub struct Client {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub handle: tokio::task::JoinHandle<()>,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Source addresses 127.0.0.2 … 127.0.0.201 spread the clients over many (source address,
/// port) pairs so repeated scenarios never run out of ephemeral ports. The target is always
/// loopback.
fn source_addr(idx: usize) -> SocketAddr {
    let host = 2 + (idx % 200) as u8;
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0))
}

async fn open(
    target: &Target,
    spec: &ClientSpec,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(source_addr(spec.idx))
        .map_err(|e| format!("bind: {e}"))?;
    #[allow(deprecated)]
    let _ = sock.set_linger(Some(Duration::ZERO));
    let stream = tokio::time::timeout(Duration::from_secs(20), sock.connect(target.addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = match target.proto {
        Proto::Sio => format!("ws://{}/socket.io/?EIO=4&transport=websocket", target.addr),
        Proto::Raw => format!("ws://{}/", target.addr),
    };
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())),
    )
    .await
    .map_err(|_| "ws handshake timeout".to_string())?
    .map_err(|e| format!("ws handshake: {e}"))?;
    if target.proto == Proto::Sio {
        // Engine.IO OPEN, then Socket.IO CONNECT with the auth payload.
        let first = next_text(&mut ws).await?;
        if !first.starts_with('0') {
            return Err(format!("expected engine.io open, got {first:.60}"));
        }
        let connect = match &spec.auth {
            Some(a) => format!("40{a}"),
            None => "40".to_string(),
        };
        ws.send(Message::text(connect))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let t = next_text(&mut ws).await?;
            if t.starts_with("40") {
                break;
            }
            if t.starts_with("44") {
                return Err(format!("connect_error {t:.120}"));
            }
            if t == "2" {
                ws.send(Message::text("3"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(ws)
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Result<String, String> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "timeout waiting for the server".to_string())?
            .ok_or("closed")?
            .map_err(|e| e.to_string())?;
        match m {
            Message::Text(t) => return Ok(t.as_str().to_string()),
            Message::Close(_) => return Err("closed by server".into()),
            _ => continue,
        }
    }
}

/// Starts one client; resolves once it is connected (or failed).
pub async fn spawn_client(
    target: Target,
    spec: ClientSpec,
    shared: Arc<Shared>,
) -> Result<Client, String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    let handle = tokio::spawn(async move {
        let mut ws = match open(&target, &spec).await {
            Ok(ws) => {
                let _ = ready_tx.send(Ok(()));
                ws
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        shared.connected.fetch_add(1, Relaxed);
        loop {
            tokio::select! {
                biased;
                m = ws.next() => {
                    let m = match m {
                        Some(Ok(m)) => m,
                        _ => break,
                    };
                    match m {
                        Message::Text(t) => {
                            let t = t.as_str();
                            shared.frames_in.fetch_add(1, Relaxed);
                            shared.bytes_in.fetch_add(t.len() as u64, Relaxed);
                            match target.proto {
                                Proto::Raw => scan_markers(t, spec.idx, &shared, true),
                                Proto::Sio => {
                                    if t == "2" {
                                        if ws.send(Message::text("3")).await.is_err() { break; }
                                    } else if let Some(ev) = t.strip_prefix("42") {
                                        on_event(ev, &spec, &shared);
                                    } else if t.starts_with('1') || t.starts_with("41") {
                                        break;
                                    }
                                }
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                c = rx.recv() => match c {
                    Some(Cmd::Send(s)) => {
                        if ws.send(Message::text(s)).await.is_err() { break; }
                    }
                    Some(Cmd::Drop) | None => {
                        // Linger 0: the kernel sends RST, as if the network vanished.
                        drop(ws);
                        shared.connected.fetch_sub(1, Relaxed);
                        return;
                    }
                },
            }
        }
        shared.connected.fetch_sub(1, Relaxed);
        shared.disconnected.fetch_add(1, Relaxed);
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(Client { tx, handle }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("client task died".into()),
    }
}

/// Finds `"text":"B…` / `"text":"D…` markers and records their latency.
fn scan_markers(t: &str, idx: usize, shared: &Shared, raw: bool) {
    let now = now_us();
    let bytes = t.as_bytes();
    if raw {
        record_marker(bytes, idx, shared, now);
        return;
    }
    let finder = memchr::memmem::Finder::new(b"\"text\":\"");
    for pos in finder.find_iter(bytes) {
        record_marker(&bytes[pos + 8..], idx, shared, now);
    }
}

fn parse_num(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    (i > 0).then_some((v, i))
}

fn record_marker(b: &[u8], idx: usize, shared: &Shared, now: u64) {
    let kind = match b.first() {
        Some(b'B') => b'B',
        Some(b'D') => b'D',
        _ => return,
    };
    let Some((step, n)) = parse_num(&b[1..]) else {
        return;
    };
    let rest = &b[1 + n..];
    if rest.first() != Some(&b'|') {
        return;
    }
    let Some((t, n2)) = parse_num(&rest[1..]) else {
        return;
    };
    if kind == b'D' {
        // Count a DM only at its recipient (the sender gets its own copy too).
        let rest2 = &rest[1 + n2..];
        if rest2.first() != Some(&b'|') {
            return;
        }
        match parse_num(&rest2[1..]) {
            Some((to, _)) if to as usize == idx => {}
            _ => return,
        }
    }
    let Some(s) = shared.steps.get(step as usize) else {
        return;
    };
    s.delivered.fetch_add(1, Relaxed);
    s.hist.record(now.saturating_sub(t));
}

#[derive(serde::Deserialize)]
struct LogIn<'a> {
    #[serde(borrow)]
    events: Vec<EvIn<'a>>,
}
#[derive(serde::Deserialize)]
struct EvIn<'a> {
    stream: &'a str,
    seq: u64,
}
#[derive(serde::Deserialize)]
struct SyncIn {
    state: String,
    epoch: String,
}

fn on_event(ev: &str, spec: &ClientSpec, shared: &Shared) {
    if ev.starts_with("[\"log\"") {
        scan_markers(ev, spec.idx, shared, false);
        if let Some(track) = &spec.track {
            let Ok((_, batch)) = serde_json::from_str::<(&str, LogIn)>(ev) else {
                return;
            };
            for e in batch.events {
                let pos = if e.stream == "public" {
                    &track.public
                } else {
                    &track.private
                };
                let cur = pos.load(Relaxed);
                if e.seq <= cur {
                    track.dups.fetch_add(1, Relaxed);
                    continue;
                }
                if e.stream == "public" && e.seq > cur + 1 {
                    track.gaps.fetch_add(1, Relaxed);
                    track.lost.fetch_add(e.seq - cur - 1, Relaxed);
                }
                pos.store(e.seq, Relaxed);
                if e.stream == "public"
                    && e.seq >= shared.catch_up_target.load(Relaxed)
                    && track.caught_up_at.load(Relaxed) == 0
                {
                    track.caught_up_at.store(now_us(), Relaxed);
                }
            }
        }
    } else if ev.starts_with("[\"reply\"") {
        if ev.contains("\"ok\":true") {
            shared.replies_ok.fetch_add(1, Relaxed);
        } else {
            shared.replies_err.fetch_add(1, Relaxed);
        }
    } else if ev.starts_with("[\"sync\"") {
        if let Ok((_, s)) = serde_json::from_str::<(String, SyncIn)>(ev) {
            if s.state == "live" {
                if let Some(t) = &spec.track {
                    t.live.store(true, Relaxed);
                }
            }
            let mut e = shared.epoch.lock().unwrap();
            if e.is_none() {
                *e = Some(s.epoch);
            }
        }
    }
}

/// Connects `specs.len()` clients with at most `parallel` handshakes in flight.
pub async fn connect_many(
    target: &Target,
    specs: Vec<ClientSpec>,
    shared: &Arc<Shared>,
    parallel: usize,
) -> (Vec<Option<Client>>, usize, Vec<String>) {
    let sem = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(specs.len());
    for spec in specs {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let target = target.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let r = spawn_client(target, spec, shared).await;
            drop(permit);
            r
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => out.push(Some(c)),
            Ok(Err(e)) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
                out.push(None);
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e.to_string());
                }
                out.push(None);
            }
        }
    }
    (out, failed, errors)
}

/// Drops every client and waits for their tasks to end.
pub async fn drop_all(clients: Vec<Option<Client>>) {
    let mut handles = Vec::new();
    for c in clients.into_iter().flatten() {
        let _ = c.tx.send(Cmd::Drop);
        handles.push(c.handle);
    }
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
}
