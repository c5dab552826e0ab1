//! The `/admin` connection: opened while an admin looks at the Admin page (or `papo-cli admin`
//! runs), closed when they leave. It carries `admin:stats` every second and the moderation
//! requests, which are never queued: each is sent while the connection is open and answered
//! there, or fails at once (`admin_closed`), so an admin always knows whether it happened.
//!
//! The connection is a second Socket.IO session ([`SocketIoTransport::open`] on the
//! `/admin` namespace, with the same access token): rust_socketio gives every namespace a
//! connection of its own. It retries with backoff (1 s doubling to 30 s) while it is wanted,
//! refreshes the token once when it has expired, and gives up for good when the server says
//! the account is not an admin.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use papo_protocol::{
    connect_errors, events, AdminStats, CommentAction, ErrorBody, ErrorCode, PostAction, Reply,
    Request, UserAction, ADMIN_NAMESPACE,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::diag::TransportKind;
use crate::event::CoreEvent;
use crate::secret::ExposeSecret;
use crate::tokens::{TokenError, TokenSource};
use crate::transport::{Inbound, Link, Refusal, SocketIoTransport};

/// How long a moderation request waits for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening the connection may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed attempt; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The `/admin` connection's state, for the Admin page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AdminState {
    Connecting,
    /// Statistics flow; moderation requests can be sent.
    Open,
    /// Waiting before the next attempt.
    Retrying {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        in_ms: u64,
        reason: String,
    },
    /// The server will not have it (`forbidden`: not an admin; or the session is over). Not
    /// retried.
    Refused {
        reason: String,
    },
    /// Closed on request.
    Closed,
}

/// A moderation action, as the app asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AdminAction {
    RemovePost {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        post_id: i64,
    },
    RemoveComment {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        comment_id: i64,
    },
    Suspend {
        username: String,
    },
    Unsuspend {
        username: String,
    },
}

impl AdminAction {
    /// The request, with a fresh client id.
    pub fn request(&self) -> Request {
        let id = Uuid::now_v7();
        match self.clone() {
            AdminAction::RemovePost { post_id } => {
                Request::AdminRemovePost(PostAction { id, post_id })
            }
            AdminAction::RemoveComment { comment_id } => {
                Request::AdminRemoveComment(CommentAction { id, comment_id })
            }
            AdminAction::Suspend { username } => Request::AdminSuspend(UserAction { id, username }),
            AdminAction::Unsuspend { username } => {
                Request::AdminUnsuspend(UserAction { id, username })
            }
        }
    }
}

/// Why a moderation request did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The `/admin` connection is not open, or closed before the answer: the request may or
    /// may not have been applied (sending it again is safe only with the same id, which this
    /// API does not do: look at the result instead).
    #[error("the admin connection is not open")]
    Closed,
    /// The server refused it.
    #[error("{}", .0.message)]
    Refused(ErrorBody),
}

enum Cmd {
    Send(Request, oneshot::Sender<Result<(), AdminError>>),
    Close,
}

/// The running `/admin` connection, while it is wanted.
#[derive(Clone)]
pub(crate) struct AdminHandle {
    commands: mpsc::UnboundedSender<Cmd>,
}

impl AdminHandle {
    /// Starts the connection task.
    pub(crate) fn open(
        url: String,
        tokens: Arc<dyn TokenSource>,
        events: broadcast::Sender<CoreEvent>,
    ) -> AdminHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(url, tokens, events, rx));
        AdminHandle { commands: tx }
    }

    /// Whether its task still runs (it ends on a refusal or on close).
    pub(crate) fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    pub(crate) fn close(&self) {
        let _ = self.commands.send(Cmd::Close);
    }

    /// Sends a moderation request and waits for its answer.
    pub(crate) async fn send(&self, action: &AdminAction) -> Result<(), AdminError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Cmd::Send(action.request(), tx))
            .map_err(|_| AdminError::Closed)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            _ => Err(AdminError::Closed),
        }
    }
}

/// What ended one session.
enum Ended {
    /// Try again after the backoff delay.
    Retry(String),
    /// Try again at once (a fresh token).
    Now,
    /// Give up for good.
    Refused(String),
    Closed,
}

async fn run(
    url: String,
    tokens: Arc<dyn TokenSource>,
    events: broadcast::Sender<CoreEvent>,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
) {
    let publish = |s: AdminState| {
        let _ = events.send(CoreEvent::Admin(s));
    };
    let mut delay = FIRST_RETRY;
    let mut refreshed = false;
    loop {
        publish(AdminState::Connecting);
        match session(
            &url,
            &*tokens,
            &events,
            &mut commands,
            &mut refreshed,
            &mut delay,
        )
        .await
        {
            Ended::Closed => {
                publish(AdminState::Closed);
                return;
            }
            Ended::Refused(reason) => {
                publish(AdminState::Refused { reason });
                return;
            }
            Ended::Now => continue,
            Ended::Retry(reason) => {
                publish(AdminState::Retrying {
                    in_ms: delay.as_millis() as u64,
                    reason,
                });
                let wait = tokio::time::sleep(delay);
                delay = (delay * 2).min(MAX_RETRY);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        cmd = commands.recv() => match cmd {
                            None | Some(Cmd::Close) => {
                                publish(AdminState::Closed);
                                return;
                            }
                            Some(Cmd::Send(_, answer)) => {
                                let _ = answer.send(Err(AdminError::Closed));
                            }
                        },
                    }
                }
            }
        }
    }
}

/// One session: connect, wait for the CONNECT answer, then stats and requests until it ends.
async fn session(
    url: &str,
    tokens: &dyn TokenSource,
    events: &broadcast::Sender<CoreEvent>,
    commands: &mut mpsc::UnboundedReceiver<Cmd>,
    refreshed: &mut bool,
    delay: &mut Duration,
) -> Ended {
    let Some(token) = tokens.access_token().await else {
        return Ended::Refused("not signed in".into());
    };
    let auth = serde_json::json!({ "token": token.expose_secret() });
    let (tx, mut inbound) = mpsc::unbounded_channel();
    let link = match tokio::time::timeout(
        OPEN_TIMEOUT,
        SocketIoTransport.open(url, ADMIN_NAMESPACE, auth, tx, TransportKind::Websocket),
    )
    .await
    {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => return Ended::Retry(e.to_string()),
        Err(_) => return Ended::Retry("timed out connecting".into()),
    };
    let end = open_session(
        &*link,
        tokens,
        events,
        commands,
        &mut inbound,
        refreshed,
        delay,
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), link.close()).await;
    end
}

async fn open_session(
    link: &dyn Link,
    tokens: &dyn TokenSource,
    events: &broadcast::Sender<CoreEvent>,
    commands: &mut mpsc::UnboundedReceiver<Cmd>,
    inbound: &mut mpsc::UnboundedReceiver<Inbound>,
    refreshed: &mut bool,
    delay: &mut Duration,
) -> Ended {
    // The CONNECT answer.
    let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
        loop {
            match inbound.recv().await {
                Some(Inbound::Open) => return Ok(()),
                Some(Inbound::Refused(r)) => return Err(Some(r)),
                Some(Inbound::Close) | None => return Err(None),
                Some(_) => {}
            }
        }
    })
    .await;
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(Some(r))) => return refused(r, tokens, refreshed).await,
        Ok(Err(None)) => return Ended::Retry("closed before it opened".into()),
        Err(_) => return Ended::Retry("no answer to CONNECT".into()),
    }
    // A session that opened: the next drop starts the backoff again from its first step.
    *refreshed = false;
    *delay = FIRST_RETRY;
    let _ = events.send(CoreEvent::Admin(AdminState::Open));
    let mut waiting: HashMap<Uuid, oneshot::Sender<Result<(), AdminError>>> = HashMap::new();
    let end = loop {
        tokio::select! {
            msg = inbound.recv() => match msg {
                Some(Inbound::Event { name, data }) => match name.as_str() {
                    events::ADMIN_STATS => match serde_json::from_value::<AdminStats>(data) {
                        Ok(s) => {
                            let _ = events.send(CoreEvent::AdminStats(s));
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable admin:stats"),
                    },
                    events::REPLY => match serde_json::from_value::<Reply>(data) {
                        Ok(reply) => {
                            if let Some(answer) = reply.id.and_then(|id| waiting.remove(&id)) {
                                let _ = answer.send(match reply.error {
                                    None => Ok(()),
                                    Some(e) => Err(AdminError::Refused(e)),
                                });
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable admin reply"),
                    },
                    _ => {}
                },
                Some(Inbound::Refused(r)) => break refused(r, tokens, refreshed).await,
                Some(Inbound::Close) | None => break Ended::Retry("the server closed the admin connection".into()),
                Some(_) => {}
            },
            cmd = commands.recv() => match cmd {
                None | Some(Cmd::Close) => break Ended::Closed,
                Some(Cmd::Send(request, answer)) => {
                    match link.emit(request.event_name(), request.payload()).await {
                        Ok(()) => {
                            waiting.insert(request.client_id(), answer);
                        }
                        Err(_) => {
                            let _ = answer.send(Err(AdminError::Closed));
                        }
                    }
                }
            },
        }
    };
    for (_, answer) in waiting {
        let _ = answer.send(Err(AdminError::Closed));
    }
    end
}

async fn refused(r: Refusal, tokens: &dyn TokenSource, refreshed: &mut bool) -> Ended {
    match r {
        Refusal::TokenExpired if !*refreshed => {
            *refreshed = true;
            match tokens.refresh().await {
                Ok(_) => Ended::Now,
                Err(TokenError::Unavailable(m)) => Ended::Retry(m),
                Err(e) => Ended::Refused(e.to_string()),
            }
        }
        Refusal::Forbidden => Ended::Refused(connect_errors::FORBIDDEN.into()),
        Refusal::Other(m) => Ended::Retry(m),
        Refusal::TokenExpired => Ended::Refused(connect_errors::TOKEN_EXPIRED.into()),
        Refusal::TokenInvalid => Ended::Refused(connect_errors::TOKEN_INVALID.into()),
        Refusal::BadAuth => Ended::Refused(connect_errors::BAD_AUTH.into()),
        Refusal::AccountDeleted => Ended::Refused(connect_errors::ACCOUNT_DELETED.into()),
        Refusal::AccountSuspended => Ended::Refused(connect_errors::ACCOUNT_SUSPENDED.into()),
    }
}

impl AdminError {
    /// The server's error code, when it refused.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            AdminError::Refused(e) => Some(e.code),
            AdminError::Closed => None,
        }
    }
}
