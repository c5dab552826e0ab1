//! TCP connections the server can cut itself.
//!
//! socketioxide 0.18.9 cannot drop a socket whose internal channel is full:
//! `SocketRef::disconnect()` first queues a DISCONNECT packet and, when the channel is full,
//! returns `InternalChannelFull` and closes nothing. Worse, engine.io's WebSocket writer is then
//! blocked writing to a peer that does not read, and holds the channel's receiver, so even a
//! heartbeat timeout cannot finish closing the session (it waits for that receiver).
//!
//! So the server owns the cut: every accepted TCP stream is wrapped in a [`KillableStream`]
//! whose [`Kill`] handle travels with each HTTP request of the connection (as its
//! `ConnectInfo`). Killing it makes every pending and future read and write of the connection
//! fail at once; engine.io's reader then sees the transport gone and closes the session, its
//! blocked writer errors out and releases the channel, socketioxide runs the disconnect handler,
//! and the kernel socket is reset when dropped (zero linger), so the peer learns at once.
//!
//! For a WebSocket that started as polling (the upgrade is another HTTP request, on another TCP
//! connection) [`Conns`] remembers which connection carries the WebSocket of each engine.io sid.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The switch that cuts one TCP connection.
#[derive(Default)]
pub struct Kill {
    killed: AtomicBool,
    /// Wakers of a pending read (0) and a pending write (1).
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl Kill {
    /// Cuts the connection: pending and future reads and writes fail.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    fn park(&self, slot: usize, cx: &Context<'_>) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        match &wakers[slot] {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => wakers[slot] = Some(cx.waker().clone()),
        }
    }
}

/// What every HTTP request of a connection carries (axum `ConnectInfo<ConnInfo>`).
#[derive(Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub kill: Arc<Kill>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.remote.fmt(f)
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose connections can be cut.
pub struct KillableListener(pub TcpListener);

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The TcpListener implementation retries (and logs) accept errors.
        let (inner, remote) = axum::serve::Listener::accept(&mut self.0).await;
        // Chat frames are small and each one matters now: without this, Nagle's algorithm holds
        // a frame until the previous one is acknowledged, and the peer's delayed ACK makes that
        // up to ~40 ms (Node's HTTP server sets the same by default).
        if let Err(e) = inner.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let kill = Arc::new(Kill::default());
        let io = KillableStream {
            inner,
            kill: kill.clone(),
            reset: false,
        };
        (io, ConnInfo { remote, kill })
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnInfo {
            remote: self.0.local_addr()?,
            kill: Arc::default(),
        })
    }
}

/// A TCP stream that fails every operation once its [`Kill`] switch is thrown.
pub struct KillableStream {
    inner: TcpStream,
    kill: Arc<Kill>,
    reset: bool,
}

impl KillableStream {
    fn cut(&mut self) -> io::Error {
        if !self.reset {
            self.reset = true;
            // Reset instead of a graceful close: the peer may not be reading at all, and the
            // bytes still queued for it are worthless (it resumes from its cursor).
            let _ = self.inner.set_zero_linger();
        }
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection cut by the server",
        )
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.cut()));
        }
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if res.is_pending() {
            self.kill.park(0, cx);
            if self.kill.is_killed() {
                return Poll::Ready(Err(self.cut()));
            }
        }
        res
    }
}

impl KillableStream {
    fn poll_write_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.cut()));
        }
        let res = op(Pin::new(&mut self.inner), cx);
        if res.is_pending() {
            self.kill.park(1, cx);
            if self.kill.is_killed() {
                return Poll::Ready(Err(self.cut()));
            }
        }
        res
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_op(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_op(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_op(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.is_killed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Which connection carries the WebSocket of each engine.io session that upgraded from polling.
#[derive(Default)]
pub struct Conns {
    by_sid: Mutex<HashMap<String, Weak<Kill>>>,
}

impl Conns {
    /// Remembers that `sid`'s WebSocket runs on the connection of `kill`.
    pub fn register(&self, sid: &str, kill: &Arc<Kill>) {
        let mut m = self.by_sid.lock().unwrap_or_else(|p| p.into_inner());
        // Upgrades that never became a socket (or whose connection ended) leave dead entries;
        // sweep them whenever the map has doubled since the last sweep.
        if m.len() >= 1024 && m.len().is_power_of_two() {
            m.retain(|_, k| k.strong_count() > 0);
        }
        // A session has one WebSocket: a second upgrade request for a sid whose WebSocket
        // connection is alive is refused by engine.io and must not take its place here.
        match m.get(sid) {
            Some(live) if live.strong_count() > 0 => {}
            _ => {
                m.insert(sid.to_string(), Arc::downgrade(kill));
            }
        }
    }

    pub fn forget(&self, sid: &str) {
        self.by_sid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
    }

    /// The switch of `sid`'s upgraded WebSocket connection, if it has one.
    pub fn get(&self, sid: &str) -> Option<Arc<Kill>> {
        self.by_sid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .and_then(Weak::upgrade)
    }
}

/// Axum middleware: a WebSocket upgrade of an existing engine.io session (`?sid=…&
/// transport=websocket`) registers its connection, and every request also carries the plain
/// `ConnectInfo<SocketAddr>` for handlers that want the peer address.
pub async fn track(
    conns: Arc<Conns>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut req = own_head(req);
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<ConnInfo>>()
        .map(|c| c.0.clone())
    {
        if let Some(q) = req.uri().query() {
            let mut sid = None;
            let mut ws = false;
            for pair in q.split('&') {
                match pair.split_once('=') {
                    Some(("sid", v)) => sid = Some(v),
                    Some(("transport", "websocket")) => ws = true,
                    _ => {}
                }
            }
            if let (Some(sid), true) = (sid, ws) {
                conns.register(sid, &info.kill);
            }
        }
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(info.remote));
    }
    next.run(req).await
}

/// The request with its URI, header values and `OriginalUri` copied into allocations of their
/// own.
///
/// hyper parses a request head into slices of the connection's read buffer (8–16 KiB), and
/// engineioxide and socketioxide keep each socket's request head (with its extensions) for the
/// socket's whole life, so every idle WebSocket connection kept that whole buffer alive: the
/// largest single item of its heap (see "What an idle connection holds" in
/// docs/benchmarks.md). The router's `OriginalUri` extension is a clone of the parsed URI, so it
/// points into the buffer too. Copying the head's few hundred bytes lets the buffer go once the
/// upgraded connection has read past it.
pub fn own_head(req: axum::extract::Request) -> axum::extract::Request {
    let (mut parts, body) = req.into_parts();
    let mut headers = axum::http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in parts.headers.iter() {
        // `from_bytes` copies; a value hyper accepted is valid, so it cannot fail (if it did,
        // the shared value is kept rather than the request refused).
        let mut owned =
            axum::http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), owned);
    }
    parts.headers = headers;
    let copy = |uri: &axum::http::Uri| axum::http::Uri::try_from(uri.to_string()).ok();
    if let Some(uri) = copy(&parts.uri) {
        parts.uri = uri;
    }
    if let Some(original) = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .and_then(|o| copy(&o.0))
    {
        parts
            .extensions
            .insert(axum::extract::OriginalUri(original));
    }
    axum::extract::Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What [`own_head`] returns shares nothing with the buffer the head was parsed from, and
    /// says the same.
    #[test]
    fn an_owned_head_does_not_point_into_the_read_buffer() {
        let buffer = axum::body::Bytes::from(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nsec-websocket-key: abc==\r\n"
                .to_string()
                + &" ".repeat(16 * 1024),
        );
        let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
        let inside = |p: *const u8| range.contains(&(p as usize));
        let uri = axum::http::Uri::from_maybe_shared(buffer.slice(4..41)).unwrap();
        let key = axum::http::HeaderValue::from_maybe_shared(buffer.slice(71..76)).unwrap();
        let req = axum::http::Request::builder()
            .uri(uri.clone())
            .header("sec-websocket-key", key.clone())
            .header("x-two", "a")
            .header("x-two", "b")
            .extension(axum::extract::OriginalUri(uri))
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(inside(req.uri().path().as_ptr()));
        let req = own_head(req);
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert!(!inside(req.uri().path().as_ptr()));
        assert!(!inside(req.uri().query().unwrap().as_ptr()));
        let original = &req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .unwrap()
            .0;
        assert_eq!(original, "/socket.io/?EIO=4&transport=websocket");
        assert!(!inside(original.path().as_ptr()));
        let v = &req.headers()["sec-websocket-key"];
        assert_eq!(v, &key);
        assert!(!inside(v.as_bytes().as_ptr()));
        let twos: Vec<_> = req.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_cut_wakes_a_blocked_writer_and_reader() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = KillableListener(listener);
        // A peer that never reads.
        let peer = tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            drop(s);
        });
        let (io, info) = axum::serve::Listener::accept(&mut listener).await;
        let (mut rd, mut wr) = tokio::io::split(io);
        let writer = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = wr.write_all(&chunk).await {
                    return e.kind();
                }
            }
        });
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 16];
            rd.read(&mut b).await.map_err(|e| e.kind())
        });
        // Let the writer fill every buffer and block.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!writer.is_finished() && !reader.is_finished());
        info.kill.kill();
        let w = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("writer woken")
            .unwrap();
        assert_eq!(w, io::ErrorKind::ConnectionAborted);
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("reader woken")
            .unwrap();
        assert_eq!(r.unwrap_err(), io::ErrorKind::ConnectionAborted);
        peer.abort();
    }
}
