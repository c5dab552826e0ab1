//! Papo client core: the connection supervisor, the SQLite cache, the outbox and the
//! notification policy, with no Tauri inside. The desktop shell and `papo-cli` are thin layers
//! over [`Core`].
//!
//! - [`transport`]: the rust_socketio session behind one small trait (the only module using it).
//! - [`supervisor`]: the task that owns the connection; [`backoff`] its retry delays.
//! - [`cache`]: the offline cache; [`outbox`]: user actions waiting for the server.
//! - [`policy`]: which events raise an OS notification.
//! - [`api`] and [`tokens`]: the account endpoints and where tokens come from.
//! - [`event`]: the typed stream the core publishes.

pub mod api;
pub mod backoff;
pub mod cache;
mod cache_wipe;
pub mod changes;
mod codes;
pub mod compose;
pub mod event;
pub mod outbox;
mod outbox_sender;
pub mod policy;
pub mod secret;
pub mod supervisor;
pub mod tokens;
pub mod transport;
mod unread;

pub use cache::{Cache, CacheError, PageKey};
pub use codes::{ClientErrorCode, CoreErrorCode};
pub use event::{ConnectionState, CoreEvent};
pub use policy::NotificationSettings;
pub use supervisor::{SupervisorConfig, SupervisorHandle};

use api::{Api, ApiError};
use papo_protocol::http::Credentials;
use papo_protocol::{Millis, Notification, Request};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use supervisor::View;
use tokens::{SessionStore, SessionTokens, StoreError, TokenSource};
use transport::{SocketIoTransport, Transport};
use uuid::Uuid;

/// A failure of a core operation. [`CoreError::code`] is a stable machine code for the UI.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not signed in")]
    NotSignedIn,
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error(transparent)]
    Compose(#[from] compose::ComposeError),
}

/// Where the core keeps its data and how it connects.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The SQLite cache file.
    pub cache_path: PathBuf,
    /// Server URL, timeouts, backoff, pacing.
    pub supervisor: SupervisorConfig,
}

impl CoreConfig {
    pub fn new(server_url: impl Into<String>, cache_path: impl Into<PathBuf>) -> Self {
        CoreConfig {
            cache_path: cache_path.into(),
            supervisor: SupervisorConfig::new(server_url),
        }
    }
}

/// The handle the desktop shell (and the CLI) calls. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Arc<Cache>,
    tokens: Arc<SessionTokens>,
    supervisor: SupervisorHandle,
    view: Arc<Mutex<View>>,
}

impl Core {
    /// Opens the cache and starts the connection supervisor (on the current tokio runtime).
    /// The session (tokens) is loaded from `store`; without one the state is `SignedOut` until
    /// [`Core::login`] or [`Core::register`].
    pub fn start(config: CoreConfig, store: Arc<dyn SessionStore>) -> Result<Core, CoreError> {
        Self::start_with_transport(config, store, Arc::new(SocketIoTransport))
    }

    /// Like [`Core::start`] with another transport (tests).
    pub fn start_with_transport(
        config: CoreConfig,
        store: Arc<dyn SessionStore>,
        transport: Arc<dyn Transport>,
    ) -> Result<Core, CoreError> {
        let cache = Arc::new(Cache::open(&config.cache_path)?);
        let api = Api::new(&config.supervisor.server_url);
        let tokens = Arc::new(SessionTokens::new(api, store)?);
        if let Some(me) = tokens.username() {
            cache.set_me(&me)?;
        }
        let view = Arc::new(Mutex::new(View::default()));
        let source: Arc<dyn TokenSource> = tokens.clone();
        let supervisor = supervisor::spawn(
            config.supervisor,
            cache.clone(),
            source,
            transport,
            view.clone(),
        );
        Ok(Core {
            inner: Arc::new(Inner {
                cache,
                tokens,
                supervisor,
                view,
            }),
        })
    }

    // ------------------------------------------------------------------ session

    /// Signs in; the connection starts at once.
    pub async fn login(&self, username: &str, password: &str) -> Result<String, CoreError> {
        let creds = Credentials {
            username: username.to_string(),
            password: password.to_string(),
        };
        let me = self.inner.tokens.login(&creds).await?;
        self.signed_in(&me)?;
        Ok(me)
    }

    /// Creates an account and signs in.
    pub async fn register(&self, username: &str, password: &str) -> Result<String, CoreError> {
        let creds = Credentials {
            username: username.to_string(),
            password: password.to_string(),
        };
        let me = self.inner.tokens.register(&creds).await?;
        self.signed_in(&me)?;
        Ok(me)
    }

    fn signed_in(&self, me: &str) -> Result<(), CoreError> {
        if self.inner.cache.set_me(me)? {
            tracing::info!("the cache belonged to another user and was wiped");
        }
        self.inner.supervisor.signed_in();
        Ok(())
    }

    /// Closes the connection, revokes the session, forgets the tokens and erases the cache (the
    /// signed-out user's messages must not stay readable on this machine without a password;
    /// unsent outbox items go with it).
    pub async fn sign_out(&self) -> Result<(), CoreError> {
        self.inner.supervisor.sign_out();
        // Wait until the supervisor has left its session, so no batch in flight is applied
        // after the wipe.
        let mut state = self.inner.supervisor.watch_state();
        let left = state.wait_for(|s| matches!(s, ConnectionState::SignedOut { .. }));
        if tokio::time::timeout(std::time::Duration::from_secs(10), left)
            .await
            .is_err()
        {
            tracing::warn!("the connection did not close within 10 s; erasing the cache anyway");
        }
        self.inner.tokens.sign_out().await;
        let cache = self.inner.cache.clone();
        tokio::task::spawn_blocking(move || cache.wipe())
            .await
            .map_err(|e| CoreError::Invalid(format!("the cache wipe stopped: {e}")))??;
        Ok(())
    }

    /// The signed-in user (or the owner of the cache when offline).
    pub fn me(&self) -> Option<String> {
        self.inner
            .tokens
            .username()
            .or_else(|| self.inner.cache.me().ok().flatten())
    }

    // ------------------------------------------------------------------ connection

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CoreEvent> {
        self.inner.supervisor.subscribe()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.inner.supervisor.state()
    }

    pub fn watch_connection_state(&self) -> tokio::sync::watch::Receiver<ConnectionState> {
        self.inner.supervisor.watch_state()
    }

    /// Skip the backoff wait (a "retry now" button, or the network came back).
    pub fn retry_now(&self) {
        self.inner.supervisor.retry_now();
    }

    /// Stops the connection task; the cache is flushed (every write is already committed).
    pub async fn shutdown(&self) {
        self.inner.supervisor.shutdown().await;
    }

    // ------------------------------------------------------------------ actions

    fn enqueue(&self, request: Request) -> Result<Uuid, CoreError> {
        let me = self.inner.cache.me()?.ok_or(CoreError::NotSignedIn)?;
        self.inner.cache.enqueue(&me, &request)?;
        self.inner.supervisor.outbox_changed();
        let cid = request.client_id();
        self.publish_local(&me, cid, Some(&request));
        Ok(cid)
    }

    /// A local write's rows go to the UI like everything the cache writes.
    fn publish_local(&self, me: &str, cid: Uuid, request: Option<&Request>) {
        match self.inner.cache.local_changes(me, cid, request) {
            Ok(changes) if !changes.is_empty() => {
                self.inner.supervisor.publish(CoreEvent::Changes(changes))
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read back a local change"),
        }
    }

    fn text(text: &str) -> Result<String, CoreError> {
        if papo_protocol::valid_text(text) {
            Ok(text.to_string())
        } else {
            Err(CoreError::Invalid(format!(
                "text must be 1 to {} characters",
                papo_protocol::MAX_TEXT_CHARS
            )))
        }
    }

    fn user(name: &str) -> Result<String, CoreError> {
        if papo_protocol::valid_username(name) {
            Ok(name.to_string())
        } else {
            Err(CoreError::Invalid(format!("not a username: {name:?}")))
        }
    }

    /// Sends what was typed in a composer: `/msg user text` from any composer is a DM, anything
    /// else goes to the composer's target ([`compose::parse`]).
    pub fn compose(
        &self,
        target: &compose::ComposeTarget,
        text: &str,
    ) -> Result<compose::Sent, CoreError> {
        use compose::Action;
        let (client_id, conversation) = match compose::parse(target, text)? {
            Action::Chat { text } => (
                self.send_chat(&text)?,
                Some(papo_protocol::conversation::PUBLIC.to_string()),
            ),
            Action::Dm { to, text } => (
                self.send_dm(&to, &text)?,
                Some(papo_protocol::conversation::dm(&to)),
            ),
            Action::Post { text } => (self.create_post(&text)?, None),
            Action::Comment { post_id, text } => (self.comment(post_id, &text)?, None),
        };
        Ok(compose::Sent {
            client_id,
            conversation,
        })
    }

    /// Public chat message. Returns the client id of the outbox item.
    pub fn send_chat(&self, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::ChatSend(papo_protocol::ChatSend {
            id: Uuid::now_v7(),
            text,
        }))
    }

    pub fn send_dm(&self, to: &str, text: &str) -> Result<Uuid, CoreError> {
        let (to, text) = (Self::user(to)?, Self::text(text)?);
        self.enqueue(Request::DmSend(papo_protocol::DmSend {
            id: Uuid::now_v7(),
            to,
            text,
        }))
    }

    pub fn create_post(&self, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::PostCreate(papo_protocol::PostCreate {
            id: Uuid::now_v7(),
            text,
        }))
    }

    pub fn edit_post(&self, post_id: i64, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::PostEdit(papo_protocol::PostEdit {
            id: Uuid::now_v7(),
            post_id,
            text,
        }))
    }

    pub fn delete_post(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostDelete(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
    }

    pub fn like(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostLike(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
    }

    pub fn unlike(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostUnlike(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
    }

    pub fn comment(&self, post_id: i64, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::CommentCreate(papo_protocol::CommentCreate {
            id: Uuid::now_v7(),
            post_id,
            text,
        }))
    }

    pub fn follow(&self, username: &str) -> Result<Uuid, CoreError> {
        let username = Self::user(username)?;
        self.enqueue(Request::UserFollow(papo_protocol::UserAction {
            id: Uuid::now_v7(),
            username,
        }))
    }

    pub fn unfollow(&self, username: &str) -> Result<Uuid, CoreError> {
        let username = Self::user(username)?;
        self.enqueue(Request::UserUnfollow(papo_protocol::UserAction {
            id: Uuid::now_v7(),
            username,
        }))
    }

    /// Marks a conversation read up to a message id (synced to my other devices).
    pub fn mark_read(&self, conversation: &str, last_read: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::ReadMark(papo_protocol::ReadMark {
            id: Uuid::now_v7(),
            conversation: conversation.to_string(),
            last_read,
        }))
    }

    /// Ephemeral typing indicator; dropped when offline.
    pub fn set_typing(&self, conversation: &str, typing: bool) {
        self.inner
            .supervisor
            .typing(conversation.to_string(), typing);
    }

    /// Sends a wedged outbox item again, at its place in its queue. Returns the client id it
    /// is sent under (a new one after a refusal, see [`Cache::retry_outbox_as`]), or `None` if
    /// it was not wedged.
    pub fn retry_outbox(&self, client_id: Uuid) -> Result<Option<Uuid>, CoreError> {
        let send_as = self.inner.cache.retry_outbox_as(client_id)?;
        self.inner.supervisor.outbox_changed();
        if let (Some(cid), Some(me)) = (send_as, self.inner.cache.me()?) {
            // The local copy is pending again (under a new client id after a refusal).
            self.publish_local(&me, cid, None);
        }
        Ok(send_as)
    }

    /// Gives up on an unsent outbox item (and its local copy); its queue moves on.
    pub fn discard_outbox(&self, client_id: Uuid) -> Result<bool, CoreError> {
        let changed = self.inner.cache.discard_outbox(client_id)?;
        self.inner.supervisor.outbox_changed();
        Ok(changed)
    }

    /// Pending and wedged outbox items, in send order.
    pub fn outbox(&self) -> Result<Vec<outbox::OutboxItem>, CoreError> {
        Ok(self.inner.cache.outbox()?)
    }

    /// Wedged outbox items (of one queue, e.g. `dm:bia` or `feed`, when given), in order.
    pub fn wedged_outbox(&self, queue: Option<&str>) -> Result<Vec<outbox::OutboxItem>, CoreError> {
        Ok(self.inner.cache.wedged_outbox(queue)?)
    }

    // ------------------------------------------------------------------ reads (offline)

    /// The cache itself, for reads not wrapped here.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    fn me_or_empty(&self) -> String {
        self.me().unwrap_or_default()
    }

    pub fn feed_page(
        &self,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<cache::PostRow>, CoreError> {
        Ok(self
            .inner
            .cache
            .feed_page(&self.me_or_empty(), before, limit)?)
    }

    pub fn conversation_page(
        &self,
        conversation: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<cache::MessageRow>, CoreError> {
        Ok(self
            .inner
            .cache
            .conversation_page(conversation, before, limit)?)
    }

    pub fn conversations(&self) -> Result<Vec<cache::ConversationRow>, CoreError> {
        Ok(self.inner.cache.conversations()?)
    }

    pub fn notifications_page(
        &self,
        before: Option<(Millis, i64)>,
        limit: usize,
    ) -> Result<Vec<Notification>, CoreError> {
        Ok(self.inner.cache.notifications_page(before, limit)?)
    }

    pub fn unread_counts(&self) -> Result<cache::UnreadCounts, CoreError> {
        Ok(self.inner.cache.unread_counts()?)
    }

    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<cache::SearchHit>, CoreError> {
        Ok(self.inner.cache.search(query, limit)?)
    }

    // ------------------------------------------------------------------ notification policy

    /// The conversation on screen (no notifications for it), or `None`.
    pub fn set_on_screen(&self, conversation: Option<&str>) {
        self.inner.view.lock().unwrap().on_screen = conversation.map(str::to_string);
    }

    pub fn set_notification_settings(&self, settings: NotificationSettings) {
        self.inner.view.lock().unwrap().settings = settings;
    }

    pub fn notification_settings(&self) -> NotificationSettings {
        self.inner.view.lock().unwrap().settings.clone()
    }
}
