//! The per-session Socket.IO transport. This is the ONLY module that touches rust_socketio.
//!
//! The supervisor sees one small trait: [`Transport::connect`] opens one session and forwards
//! everything the server sends into a channel as [`Inbound`]; the returned [`Link`] emits and
//! closes. A fresh rust_socketio client is built for every attempt, with its own reconnection
//! turned off; its callbacks only forward to the channel (they run while the library holds a
//! lock, so doing real work there would starve its ping/pong).

use async_trait::async_trait;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::Value;
use tokio::sync::mpsc;

/// Something the server (or the library) said during a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The namespace CONNECT was accepted: emitting is now safe.
    Open,
    /// A server event with its first argument.
    Event { name: String, data: Value },
    /// The namespace CONNECT was refused.
    Refused(Refusal),
    /// The server closed the namespace (a kick).
    Close,
    /// A library-level error text (often harmless; liveness decides).
    Error(String),
}

/// Why the server refused the CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TokenExpired,
    TokenInvalid,
    BadAuth,
    /// The token's account was deleted (from another device).
    AccountDeleted,
    /// The account is suspended by a moderator.
    AccountSuspended,
    /// `/admin`: the account is not an admin.
    Forbidden,
    Other(String),
}

impl Refusal {
    /// Recognises the refusal inside rust_socketio's `"Received an ConnectError frame: ..."`.
    pub fn from_error_text(text: &str) -> Option<Refusal> {
        if !text.contains("ConnectError") {
            return None;
        }
        use papo_protocol::connect_errors::*;
        Some(if text.contains(TOKEN_EXPIRED) {
            Refusal::TokenExpired
        } else if text.contains(TOKEN_INVALID) {
            Refusal::TokenInvalid
        } else if text.contains(BAD_AUTH) {
            Refusal::BadAuth
        } else if text.contains(ACCOUNT_DELETED) {
            Refusal::AccountDeleted
        } else if text.contains(ACCOUNT_SUSPENDED) {
            Refusal::AccountSuspended
        } else if text.contains(&format!("\"{FORBIDDEN}\"")) {
            Refusal::Forbidden
        } else {
            Refusal::Other(text.to_string())
        })
    }
}

/// A transport failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("transport: {0}")]
pub struct TransportError(pub String);

/// Opens sessions.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Opens one session to `url` with the CONNECT `auth` payload; everything received is sent
    /// to `inbound`. Returns once the underlying connection is up (not necessarily `Open`).
    async fn connect(
        &self,
        url: &str,
        auth: Value,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Box<dyn Link>, TransportError>;

    /// Whether it can also carry a session over HTTP long-polling (then the supervisor falls
    /// back to it when WebSocket fails).
    fn can_poll(&self) -> bool {
        false
    }

    /// [`Transport::connect`] over a given carrier (WebSocket, or HTTP long-polling). A
    /// transport with one carrier only ignores it.
    async fn connect_over(
        &self,
        url: &str,
        auth: Value,
        inbound: mpsc::UnboundedSender<Inbound>,
        _carrier: crate::diag::TransportKind,
    ) -> Result<Box<dyn Link>, TransportError> {
        self.connect(url, auth, inbound).await
    }
}

/// One open session.
#[async_trait]
pub trait Link: Send + Sync {
    /// Sends one event (no library ack: replies are matched by client id).
    async fn emit(&self, event: &str, data: Value) -> Result<(), TransportError>;
    /// Best-effort close; the caller bounds it with a timeout and then drops the link.
    async fn close(&self);
}

/// rust_socketio 0.6 (`async`) over WebSocket.
#[derive(Debug, Default, Clone)]
pub struct SocketIoTransport;

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) => {
            if values.is_empty() {
                Value::Null
            } else {
                values.swap_remove(0)
            }
        }
        #[allow(deprecated)]
        Payload::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        // The protocol has no binary payloads.
        Payload::Binary(_) => Value::Null,
    }
}

fn error_text(payload: Payload) -> String {
    match first_value(payload) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[async_trait]
impl Transport for SocketIoTransport {
    async fn connect(
        &self,
        url: &str,
        auth: Value,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Box<dyn Link>, TransportError> {
        self.connect_over(url, auth, inbound, crate::diag::TransportKind::Websocket)
            .await
    }

    fn can_poll(&self) -> bool {
        true
    }

    async fn connect_over(
        &self,
        url: &str,
        auth: Value,
        inbound: mpsc::UnboundedSender<Inbound>,
        carrier: crate::diag::TransportKind,
    ) -> Result<Box<dyn Link>, TransportError> {
        self.open(url, "/", auth, inbound, carrier).await
    }
}

impl SocketIoTransport {
    /// Opens a session on `namespace` (`/`, or `/admin`: rust_socketio gives each its own
    /// connection).
    pub async fn open(
        &self,
        url: &str,
        namespace: &str,
        auth: Value,
        inbound: mpsc::UnboundedSender<Inbound>,
        carrier: crate::diag::TransportKind,
    ) -> Result<Box<dyn Link>, TransportError> {
        // One carrier per session, never the library's own fallback (`Any` falls back to
        // polling and never upgrades): the supervisor chooses, and tries WebSocket again.
        let carrier = match carrier {
            crate::diag::TransportKind::Websocket => TransportType::Websocket,
            crate::diag::TransportKind::Polling => TransportType::Polling,
        };
        let on_open = inbound.clone();
        let on_close = inbound.clone();
        let on_error = inbound.clone();
        let on_any = inbound;
        let client = ClientBuilder::new(url)
            .namespace(namespace)
            .transport_type(carrier)
            .reconnect(false)
            .reconnect_on_disconnect(false)
            .auth(auth)
            .on("open", move |_p, _c| {
                let _ = on_open.send(Inbound::Open);
                async {}.boxed()
            })
            .on("close", move |_p, _c| {
                let _ = on_close.send(Inbound::Close);
                async {}.boxed()
            })
            .on("error", move |p, _c| {
                let text = error_text(p);
                let msg = match Refusal::from_error_text(&text) {
                    Some(r) => Inbound::Refused(r),
                    None => Inbound::Error(text),
                };
                let _ = on_error.send(msg);
                async {}.boxed()
            })
            .on_any(move |event: Event, p, _c| {
                let _ = on_any.send(Inbound::Event {
                    name: event.as_str().to_string(),
                    data: first_value(p),
                });
                async {}.boxed()
            })
            .connect()
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        Ok(Box::new(SocketIoLink { client }))
    }
}

struct SocketIoLink {
    client: Client,
}

#[async_trait]
impl Link for SocketIoLink {
    async fn emit(&self, event: &str, data: Value) -> Result<(), TransportError> {
        self.client
            .emit(event.to_string(), data)
            .await
            .map_err(|e| TransportError(e.to_string()))
    }

    async fn close(&self) {
        if let Err(e) = self.client.disconnect().await {
            tracing::debug!(error = %e, "disconnect failed (connection probably already gone)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_connect_error_reasons() {
        let t = r#"Received an ConnectError frame: {"message":"token_expired"}"#;
        assert_eq!(Refusal::from_error_text(t), Some(Refusal::TokenExpired));
        let t = r#"Received an ConnectError frame: {"message":"token_invalid"}"#;
        assert_eq!(Refusal::from_error_text(t), Some(Refusal::TokenInvalid));
        let t = r#"Received an ConnectError frame: {"message":"bad_auth"}"#;
        assert_eq!(Refusal::from_error_text(t), Some(Refusal::BadAuth));
        let t = r#"Received an ConnectError frame: {"message":"account_deleted"}"#;
        assert_eq!(Refusal::from_error_text(t), Some(Refusal::AccountDeleted));
        assert_eq!(Refusal::from_error_text("Network error"), None);
    }
}
