//! The supervisor's handle (commands in, events and states out) and the view the notification
//! policy reads.

use crate::event::{ConnectionState, CoreEvent};
use crate::policy::NotificationSettings;
use papo_protocol::{PresenceWatch, TypingSet, MAX_WATCH};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::timeout;

/// What the notification policy needs from the UI; shared between the core and the task.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub on_screen: Option<String>,
    pub settings: NotificationSettings,
    /// The language OS notification titles are written in.
    pub lang: crate::policy::Lang,
}

pub(super) enum Command {
    RetryNow,
    NetworkChanged,
    OutboxChanged,
    SignedIn,
    SignOut,
    Typing(TypingSet),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle on the supervisor task.
#[derive(Clone)]
pub struct SupervisorHandle {
    /// What the diagnostics show of the connection (kept by the supervisor).
    pub(crate) wire: Arc<Mutex<crate::diag::Wire>>,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) events: broadcast::Sender<CoreEvent>,
    pub(super) state: watch::Receiver<ConnectionState>,
    pub(super) watching: Arc<watch::Sender<PresenceWatch>>,
}

impl SupervisorHandle {
    /// Skip the current backoff wait.
    pub fn retry_now(&self) {
        let _ = self.commands.send(Command::RetryNow);
    }
    /// The network may have come back (a link, address or route appeared): while waiting to
    /// retry, retry at once; while connected, check the session with a ping.
    pub fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged);
    }
    /// New work in the outbox.
    pub fn outbox_changed(&self) {
        let _ = self.commands.send(Command::OutboxChanged);
    }
    /// New tokens are available (after login): leave `SignedOut`.
    pub fn signed_in(&self) {
        let _ = self.commands.send(Command::SignedIn);
    }
    /// Close the session and stay signed out.
    pub fn sign_out(&self) {
        let _ = self.commands.send(Command::SignOut);
    }
    /// Ephemeral typing indicator (dropped when not connected).
    pub fn typing(&self, conversation: String, typing: bool) {
        let _ = self.commands.send(Command::Typing(TypingSet {
            conversation,
            typing,
        }));
    }
    /// Whose presence to receive besides the followed users and DM peers (the server sends
    /// those anyway), and whether the public room is on screen (for its typing). Kept across
    /// reconnections; at most [`MAX_WATCH`] users (the first ones are kept). Sent only when it
    /// changes.
    pub fn watch_presence(&self, mut users: Vec<String>, public_typing: bool) {
        users.sort();
        users.dedup();
        users.truncate(MAX_WATCH);
        let want = PresenceWatch {
            users,
            public_typing,
        };
        self.watching.send_if_modified(|w| {
            if *w == want {
                false
            } else {
                *w = want;
                true
            }
        });
    }
    /// Stops the task (closing the session) and waits for it, at most a few seconds.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = timeout(Duration::from_secs(5), rx).await;
        }
    }
    /// Publishes an event on the core's stream (a change the core made outside the task).
    pub(crate) fn publish(&self, ev: CoreEvent) {
        let _ = self.events.send(ev);
    }
    /// Events and states from now on. A subscriber that lags loses events (it gets
    /// `RecvError::Lagged`) and should re-read the cache, which is the source of truth.
    pub fn subscribe(&self) -> broadcast::Receiver<CoreEvent> {
        self.events.subscribe()
    }
    /// Where the core's events are published (the `/admin` connection publishes there too).
    pub(crate) fn events(&self) -> broadcast::Sender<CoreEvent> {
        self.events.clone()
    }
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }
}
