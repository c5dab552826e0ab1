//! The raw WebSocket broadcast baseline: tokio-tungstenite, no Socket.IO framing, no
//! persistence. Every text frame a client sends is written to every connected client
//! (including the sender), through a tokio broadcast channel.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub async fn serve(bind: SocketAddr) {
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    println!("listening on {}", listener.local_addr().unwrap());
    let (tx, _) = broadcast::channel::<Utf8Bytes>(8192);
    let tx = Arc::new(tx);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            let cfg = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await
            else {
                return;
            };
            let (mut sink, mut source) = ws.split();
            let mut rx = tx.subscribe();
            loop {
                tokio::select! {
                    m = source.next() => match m {
                        Some(Ok(Message::Text(t))) => { let _ = tx.send(t); }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        _ => {}
                    },
                    r = rx.recv() => match r {
                        Ok(t) => {
                            // Write everything already queued, then flush once.
                            if sink.feed(Message::Text(t)).await.is_err() { return; }
                            while let Ok(t) = rx.try_recv() {
                                if sink.feed(Message::Text(t)).await.is_err() { return; }
                            }
                            if sink.flush().await.is_err() { return; }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                }
            }
        });
    }
}
