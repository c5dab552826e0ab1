//! The long-polling fallback against the real server, through a local HTTP proxy that refuses
//! WebSocket upgrades (as some corporate proxies do) and later allows them again.

mod common;

use common::*;
use papo_client::diag::TransportKind;
use papo_client::ConnectionState;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "correct-horse-battery";

/// A proxy on 127.0.0.1 to `upstream`: each TCP connection's first request is read; an
/// `Upgrade: websocket` request is answered `403` while `refuse` is set; everything else is
/// forwarded byte for byte (keep-alive included).
struct Proxy {
    port: u16,
    refuse: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

async fn proxy(upstream: u16) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let refuse = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicUsize::new(0));
    let (r, n) = (refuse.clone(), refused.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let (refuse, refused) = (r.clone(), n.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if text.contains("upgrade: websocket") && refuse.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let _ = client
                        .write_all(
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                if server.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    Proxy {
        port,
        refuse,
        refused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_that_refuses_websocket_the_client_polls_then_moves_back_to_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let p = proxy(server.port).await;
    let via = format!("http://127.0.0.1:{}", p.port);
    let mut config = fast_config(&via, &dir.path().join("ana.sqlite3"));
    config.supervisor.websocket_retry = Duration::from_secs(3);
    let ana = core_with(config).await;
    ana.register("ana", PASSWORD).await.unwrap();
    let (bia, _) = core(&server.url(), &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();

    wait_state(&ana, Duration::from_secs(20), |s| {
        *s == ConnectionState::Connected
    })
    .await;
    let d = ana.diagnostics().await.unwrap();
    assert_eq!(d.transport, TransportKind::Polling, "{d:?}");
    assert!(
        p.refused.load(Ordering::SeqCst) >= 1,
        "the upgrade was tried"
    );
    assert!(
        d.last_error.is_some(),
        "the WebSocket failure is told: {d:?}"
    );

    // Everything works over polling: both directions, DMs and the public room.
    for i in 0..20 {
        bia.send_chat(&format!("bia {i}")).await.unwrap();
        ana.send_chat(&format!("ana {i}")).await.unwrap();
    }
    bia.send_dm("ana", "por polling?").await.unwrap();
    let want: usize = 40;
    eventually("both sides over polling", Duration::from_secs(30), || {
        texts(&ana, "public").len() == want
            && texts(&bia, "public").len() == want
            && texts(&ana, "dm:bia") == ["por polling?"]
    })
    .await;
    assert_eq!(
        ana.diagnostics().await.unwrap().transport,
        TransportKind::Polling
    );

    // Upgrades allowed again: within the retry period the client is back on WebSocket, and
    // nothing was lost or doubled on the way.
    p.refuse.store(false, Ordering::SeqCst);
    let mut back = false;
    for _ in 0..600 {
        let d = ana.diagnostics().await.unwrap();
        if d.transport == TransportKind::Websocket && d.state == ConnectionState::Connected {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "{:?}", ana.diagnostics().await.unwrap());
    for i in 20..30 {
        bia.send_chat(&format!("bia {i}")).await.unwrap();
    }
    eventually("after the move", Duration::from_secs(30), || {
        texts(&ana, "public").len() == 50
    })
    .await;
    let mut got = texts(&ana, "public");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 50, "a message lost or doubled");
    let bias: Vec<_> = texts(&ana, "public")
        .into_iter()
        .filter(|t| t.starts_with("bia "))
        .collect();
    let ordered: Vec<_> = (0..30).map(|i| format!("bia {i}")).collect();
    assert_eq!(bias, ordered, "bia's messages in order");
}
