//! Papo client core: the connection supervisor, the SQLite cache, the outbox and the
//! notification policy, with no Tauri inside. The desktop shell and `papo-cli` are thin layers
//! over [`Core`].
//!
//! - [`transport`]: the rust_socketio session behind one small trait (the only module using it).
//! - [`supervisor`]: the task that owns the connection; [`backoff`] its retry delays.
//! - [`cache`]: the offline cache, run on its own threads ([`cache_thread`]); [`outbox`]: user
//!   actions waiting for the server.
//! - [`policy`]: which events raise an OS notification.
//! - [`api`] and [`tokens`]: the account endpoints and where tokens come from.
//! - [`event`]: the typed stream the core publishes.

pub mod admin;
pub mod api;
pub mod backoff;
pub mod cache;
pub mod cache_thread;
pub mod changes;
mod codes;
pub mod compose;
pub mod config;
pub mod diag;
pub mod event;
pub mod outbox;
mod outbox_sender;
pub mod policy;
mod rows;
pub mod secret;
pub mod supervisor;
pub mod tokens;
pub mod transport;
mod unread;

pub use cache::{Cache, CacheError, PageKey};
pub use cache_thread::CacheHandle;
pub use codes::{ClientErrorCode, CoreErrorCode};
pub use config::SupervisorConfig;
pub use event::{ConnectionState, CoreEvent};
pub use policy::NotificationSettings;
pub use supervisor::SupervisorHandle;

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
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
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

/// The handle the desktop shell (and the CLI) calls. Cheap to clone. Every method that touches
/// the cache is `async`: SQLite runs on the cache's own threads ([`cache_thread`]), never on
/// the caller's.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    /// As configured (one URL or several nodes, comma-separated).
    server_url: String,
    cache: CacheHandle,
    tokens: Arc<SessionTokens>,
    supervisor: SupervisorHandle,
    view: Arc<Mutex<View>>,
    /// The `/admin` connection, while it is wanted.
    admin: Mutex<Option<admin::AdminHandle>>,
}

impl Core {
    /// Opens the cache (on its own threads) and starts the connection supervisor (on the
    /// current tokio runtime). The session (tokens) is loaded from `store`; without one the
    /// state is `SignedOut` until [`Core::login`] or [`Core::register`].
    pub async fn start(
        config: CoreConfig,
        store: Arc<dyn SessionStore>,
    ) -> Result<Core, CoreError> {
        Self::start_with_transport(config, store, Arc::new(SocketIoTransport)).await
    }

    /// Like [`Core::start`] with another transport (tests).
    pub async fn start_with_transport(
        config: CoreConfig,
        store: Arc<dyn SessionStore>,
        transport: Arc<dyn Transport>,
    ) -> Result<Core, CoreError> {
        let cache = CacheHandle::open(&config.cache_path).await?;
        let api = Api::new(&config.supervisor.server_url);
        let server_url = config.supervisor.server_url.clone();
        let tokens = Arc::new(SessionTokens::new(api, store)?);
        if let Some(me) = tokens.username() {
            cache.write(move |c| c.set_me(&me)).await?;
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
                server_url,
                cache,
                tokens,
                supervisor,
                view,
                admin: Mutex::new(None),
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
        self.signed_in(&me).await?;
        Ok(me)
    }

    /// Creates an account and signs in.
    pub async fn register(&self, username: &str, password: &str) -> Result<String, CoreError> {
        let creds = Credentials {
            username: username.to_string(),
            password: password.to_string(),
        };
        let me = self.inner.tokens.register(&creds).await?;
        self.signed_in(&me).await?;
        Ok(me)
    }

    async fn signed_in(&self, me: &str) -> Result<(), CoreError> {
        let me = me.to_string();
        if self.inner.cache.write(move |c| c.set_me(&me)).await? {
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
        self.inner.cache.write(|c| c.wipe()).await?;
        Ok(())
    }

    /// Deletes the signed-in account on the server, with its password, then leaves like
    /// [`Core::sign_out`]: the connection closes, the tokens are forgotten and the cache is
    /// erased. A wrong password is `invalid_credentials` and changes nothing; so does being
    /// offline (the server must confirm the deletion before anything local goes).
    pub async fn delete_account(&self, password: &str) -> Result<(), CoreError> {
        let username = self.inner.tokens.username().ok_or(CoreError::NotSignedIn)?;
        let creds = Credentials {
            username,
            password: password.to_string(),
        };
        self.inner.tokens.api().delete_account(&creds).await?;
        tracing::info!("account deleted on the server");
        self.sign_out().await
    }

    /// The signed-in user (or the owner of the cache when offline).
    pub async fn me(&self) -> Option<String> {
        if let Some(me) = self.inner.tokens.username() {
            return Some(me);
        }
        self.inner.cache.read(|c| c.me()).await.ok().flatten()
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

    /// Stops the connection task, then waits until the cache's writer has run every job queued
    /// before (each one commits, so nothing is left to flush).
    pub async fn shutdown(&self) {
        self.inner.supervisor.shutdown().await;
        if let Err(e) = self.inner.cache.flush().await {
            tracing::warn!(error = %e, "the cache writer was already gone at shutdown");
        }
    }

    // ------------------------------------------------------------------ actions

    async fn enqueue(&self, request: Request) -> Result<Uuid, CoreError> {
        let cid = request.client_id();
        // One writer job: the outbox row and its optimistic copy, then the rows it touched.
        let changes = self
            .inner
            .cache
            .write(move |c| {
                let Some(me) = c.me()? else {
                    return Ok(None);
                };
                c.enqueue(&me, &request)?;
                Ok(Some(c.local_changes(&me, cid, Some(&request))))
            })
            .await?
            .ok_or(CoreError::NotSignedIn)?;
        self.inner.supervisor.outbox_changed();
        self.publish_changes(changes);
        Ok(cid)
    }

    /// A local write's rows go to the UI like everything the cache writes.
    fn publish_changes(&self, changes: Result<crate::changes::ChangeSet, CacheError>) {
        match changes {
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
    /// else goes to the composer's target ([`compose::parse`]). `reply_to` (the server id of a
    /// message of the composer's conversation) makes a chat message or DM a reply; a `/msg` to
    /// another conversation goes without it, and posts and comments cannot reply.
    pub async fn compose(
        &self,
        target: &compose::ComposeTarget,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<compose::Sent, CoreError> {
        use compose::Action;
        let own = match target {
            compose::ComposeTarget::Conversation { id } => Some(id.as_str()),
            _ => None,
        };
        let reply_in = |conversation: &str| reply_to.filter(|_| own == Some(conversation));
        let (client_id, conversation) = match compose::parse(target, text)? {
            Action::Chat { text } => {
                let public = papo_protocol::conversation::PUBLIC.to_string();
                let reply = reply_in(&public);
                (self.send_chat_reply(&text, reply).await?, Some(public))
            }
            Action::Dm { to, text } => {
                let conversation = papo_protocol::conversation::dm(&to);
                let reply = reply_in(&conversation);
                (
                    self.send_dm_reply(&to, &text, reply).await?,
                    Some(conversation),
                )
            }
            Action::Post { text } => (self.create_post(&text).await?, None),
            Action::Comment { post_id, text } => (self.comment(post_id, &text).await?, None),
        };
        Ok(compose::Sent {
            client_id,
            conversation,
        })
    }

    /// Public chat message. Returns the client id of the outbox item.
    pub async fn send_chat(&self, text: &str) -> Result<Uuid, CoreError> {
        self.send_chat_reply(text, None).await
    }

    /// Public chat message replying to the public message `reply_to` (when given).
    pub async fn send_chat_reply(
        &self,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.check_reply(papo_protocol::conversation::PUBLIC, reply_to)
            .await?;
        self.enqueue(Request::ChatSend(papo_protocol::ChatSend {
            id: Uuid::now_v7(),
            text,
            reply_to,
        }))
        .await
    }

    pub async fn send_dm(&self, to: &str, text: &str) -> Result<Uuid, CoreError> {
        self.send_dm_reply(to, text, None).await
    }

    /// Private message replying to the DM `reply_to` of the same conversation (when given).
    pub async fn send_dm_reply(
        &self,
        to: &str,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<Uuid, CoreError> {
        let (to, text) = (Self::user(to)?, Self::text(text)?);
        self.check_reply(&papo_protocol::conversation::dm(&to), reply_to)
            .await?;
        self.enqueue(Request::DmSend(papo_protocol::DmSend {
            id: Uuid::now_v7(),
            to,
            text,
            reply_to,
        }))
        .await
    }

    /// A reply answers a message this cache holds, of the same conversation, not deleted (the
    /// server refuses anything else with `not_found`; refusing here keeps it out of the outbox).
    async fn check_reply(
        &self,
        conversation: &str,
        reply_to: Option<i64>,
    ) -> Result<(), CoreError> {
        let Some(id) = reply_to else {
            return Ok(());
        };
        let original = self
            .inner
            .cache
            .read(move |c| c.message_by_server_id(id))
            .await?;
        match original {
            Some(m) if m.conversation == conversation && !m.deleted => Ok(()),
            Some(m) if m.conversation == conversation => {
                Err(CoreError::Compose(compose::ComposeError::ReplyGone))
            }
            _ => Err(CoreError::Invalid(format!(
                "no message {id} to reply to in {conversation}"
            ))),
        }
    }

    pub async fn create_post(&self, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::PostCreate(papo_protocol::PostCreate {
            id: Uuid::now_v7(),
            text,
        }))
        .await
    }

    pub async fn edit_post(&self, post_id: i64, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::PostEdit(papo_protocol::PostEdit {
            id: Uuid::now_v7(),
            post_id,
            text,
        }))
        .await
    }

    pub async fn delete_post(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostDelete(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
        .await
    }

    /// A new text for a chat message or DM of mine (sent, not deleted); every device and
    /// reader sees it marked edited.
    pub async fn edit_message(&self, message_id: i64, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.own_message(message_id).await?;
        self.enqueue(Request::MessageEdit(papo_protocol::MessageEdit {
            id: Uuid::now_v7(),
            message_id,
            text,
        }))
        .await
    }

    /// Deletes a chat message or DM of mine: it stays in place as "message deleted".
    pub async fn delete_message(&self, message_id: i64) -> Result<Uuid, CoreError> {
        self.own_message(message_id).await?;
        self.enqueue(Request::MessageDelete(papo_protocol::MessageDelete {
            id: Uuid::now_v7(),
            message_id,
        }))
        .await
    }

    /// Refuses, before anything is queued, a message this cache does not hold as one of mine
    /// that was sent and not deleted (the server would refuse it too).
    async fn own_message(&self, message_id: i64) -> Result<(), CoreError> {
        let found = self
            .inner
            .cache
            .read(move |c| c.message_by_server_id(message_id))
            .await?;
        let me = self.me().await;
        match found {
            Some(m) if Some(&m.sender) == me.as_ref() && !m.deleted => Ok(()),
            Some(m) if m.deleted => Err(CoreError::Invalid(format!(
                "message {message_id} was deleted"
            ))),
            Some(_) => Err(CoreError::Invalid(format!(
                "message {message_id} is not yours"
            ))),
            None => Err(CoreError::Invalid(format!("no message {message_id}"))),
        }
    }

    pub async fn like(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostLike(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
        .await
    }

    /// Shares a post (a share's original when it is a share), with an optional comment (empty:
    /// none). Sharing a post I share already changes nothing.
    pub async fn share(&self, post_id: i64, comment: &str) -> Result<Uuid, CoreError> {
        let text = if comment.trim().is_empty() {
            String::new()
        } else {
            Self::text(comment)?
        };
        self.enqueue(Request::PostShare(papo_protocol::PostShare {
            id: Uuid::now_v7(),
            post_id,
            text,
        }))
        .await
    }

    /// Deletes my share of a post (or of its original).
    pub async fn unshare(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostUnshare(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
        .await
    }

    pub async fn unlike(&self, post_id: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::PostUnlike(papo_protocol::PostAction {
            id: Uuid::now_v7(),
            post_id,
        }))
        .await
    }

    pub async fn comment(&self, post_id: i64, text: &str) -> Result<Uuid, CoreError> {
        let text = Self::text(text)?;
        self.enqueue(Request::CommentCreate(papo_protocol::CommentCreate {
            id: Uuid::now_v7(),
            post_id,
            text,
        }))
        .await
    }

    pub async fn follow(&self, username: &str) -> Result<Uuid, CoreError> {
        let username = Self::user(username)?;
        self.enqueue(Request::UserFollow(papo_protocol::UserAction {
            id: Uuid::now_v7(),
            username,
        }))
        .await
    }

    pub async fn unfollow(&self, username: &str) -> Result<Uuid, CoreError> {
        let username = Self::user(username)?;
        self.enqueue(Request::UserUnfollow(papo_protocol::UserAction {
            id: Uuid::now_v7(),
            username,
        }))
        .await
    }

    /// Marks a conversation read up to a message id (synced to my other devices).
    pub async fn mark_read(&self, conversation: &str, last_read: i64) -> Result<Uuid, CoreError> {
        self.enqueue(Request::ReadMark(papo_protocol::ReadMark {
            id: Uuid::now_v7(),
            conversation: conversation.to_string(),
            last_read,
        }))
        .await
    }

    /// Whose presence the app shows besides followed users and DM peers (for example the
    /// authors on screen), and whether the public room is open (to receive its typing). See
    /// [`SupervisorHandle::watch_presence`].
    pub fn watch_presence(&self, users: Vec<String>, public_typing: bool) {
        self.inner.supervisor.watch_presence(users, public_typing);
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
    pub async fn retry_outbox(&self, client_id: Uuid) -> Result<Option<Uuid>, CoreError> {
        let (send_as, local) = self
            .inner
            .cache
            .write(move |c| {
                let send_as = c.retry_outbox_as(client_id)?;
                // The local copy is pending again (under a new client id after a refusal).
                let local = match (send_as, c.me()?) {
                    (Some(cid), Some(me)) => Some(c.local_changes(&me, cid, None)),
                    _ => None,
                };
                Ok((send_as, local))
            })
            .await?;
        self.inner.supervisor.outbox_changed();
        if let Some(changes) = local {
            self.publish_changes(changes);
        }
        Ok(send_as)
    }

    /// Gives up on an unsent outbox item (and its local copy); its queue moves on.
    pub async fn discard_outbox(&self, client_id: Uuid) -> Result<bool, CoreError> {
        let changed = self
            .inner
            .cache
            .write(move |c| c.discard_outbox(client_id))
            .await?;
        self.inner.supervisor.outbox_changed();
        Ok(changed)
    }

    /// Pending and wedged outbox items, in send order.
    pub async fn outbox(&self) -> Result<Vec<outbox::OutboxItem>, CoreError> {
        self.read(|c| c.outbox()).await
    }

    /// Wedged outbox items (of one queue, e.g. `dm:bia` or `feed`, when given), in order.
    pub async fn wedged_outbox(
        &self,
        queue: Option<&str>,
    ) -> Result<Vec<outbox::OutboxItem>, CoreError> {
        let queue = queue.map(str::to_string);
        self.read(move |c| c.wedged_outbox(queue.as_deref())).await
    }

    /// One outbox item by client id (`None` once it is gone).
    pub async fn outbox_item(
        &self,
        client_id: Uuid,
    ) -> Result<Option<outbox::OutboxItem>, CoreError> {
        self.read(move |c| c.outbox_item(client_id)).await
    }

    /// Outbox items `(pending, sent, failed)`.
    pub async fn outbox_counts(&self) -> Result<(i64, i64, i64), CoreError> {
        self.read(|c| c.outbox_counts()).await
    }

    // ------------------------------------------------------------------ reads (offline)

    /// The cache's threads (for tests and tools; the shell uses the methods here).
    #[doc(hidden)]
    pub fn cache_handle(&self) -> &CacheHandle {
        &self.inner.cache
    }

    /// The cache itself, read synchronously: for tests only (it blocks the calling thread).
    #[doc(hidden)]
    pub fn cache(&self) -> &Arc<Cache> {
        self.inner.cache.cache()
    }

    async fn me_or_empty(&self) -> String {
        self.me().await.unwrap_or_default()
    }

    pub async fn feed_page(
        &self,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<cache::PostRow>, CoreError> {
        let me = self.me_or_empty().await;
        self.read(move |c| c.feed_page(&me, before, limit)).await
    }

    /// Comments of a post (by server id), oldest first.
    pub async fn comments(&self, post_id: i64) -> Result<Vec<cache::CommentRow>, CoreError> {
        self.read(move |c| c.comments(post_id)).await
    }

    pub async fn conversation_page(
        &self,
        conversation: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<cache::MessageRow>, CoreError> {
        let conversation = conversation.to_string();
        self.read(move |c| c.conversation_page(&conversation, before, limit))
            .await
    }

    /// The next page of a conversation after `after`, oldest first (paging forward from a
    /// window opened around a quoted message).
    pub async fn conversation_page_after(
        &self,
        conversation: &str,
        after: PageKey,
        limit: usize,
    ) -> Result<Vec<cache::MessageRow>, CoreError> {
        let conversation = conversation.to_string();
        self.read(move |c| c.conversation_page_after(&conversation, after, limit))
            .await
    }

    /// A window of `context` rows each side of the message `server_id` of `conversation` (the
    /// original a reply quotes); None when the cache does not hold it there.
    pub async fn conversation_around(
        &self,
        conversation: &str,
        server_id: i64,
        context: usize,
    ) -> Result<Option<cache::AroundPage>, CoreError> {
        let conversation = conversation.to_string();
        self.read(move |c| c.conversation_around(&conversation, server_id, context))
            .await
    }

    /// Where the unread messages of a conversation begin (read before marking it read).
    pub async fn unread_start(
        &self,
        conversation: &str,
    ) -> Result<Option<cache::UnreadStart>, CoreError> {
        let conversation = conversation.to_string();
        self.read(move |c| c.unread_start(&conversation)).await
    }

    /// The unsent text of a conversation's composer (kept across views and restarts).
    pub async fn draft(&self, conversation: &str) -> Result<Option<String>, CoreError> {
        let conversation = conversation.to_string();
        self.read(move |c| c.draft(&conversation)).await
    }

    /// Keeps (or, blank, removes) a conversation's draft. Refused past
    /// [`cache::MAX_DRAFT_CHARS`] characters.
    pub async fn set_draft(&self, conversation: &str, text: &str) -> Result<(), CoreError> {
        let chars = text.chars().count();
        if chars > cache::MAX_DRAFT_CHARS {
            return Err(CoreError::Invalid(format!(
                "a draft holds at most {} characters ({chars} given)",
                cache::MAX_DRAFT_CHARS
            )));
        }
        let (conversation, text) = (conversation.to_string(), text.to_string());
        Ok(self
            .inner
            .cache
            .write(move |c| c.set_draft(&conversation, &text))
            .await?)
    }

    /// A page of the conversation list: the public room pinned (first page), then DMs most
    /// recent first, older than `before` = `(last_at, id)` of the last row shown.
    pub async fn conversations_page(
        &self,
        before: Option<(Millis, String)>,
        limit: usize,
    ) -> Result<cache::ConversationPage, CoreError> {
        self.read(move |c| c.conversations_page(before, limit))
            .await
    }

    pub async fn notifications_page(
        &self,
        before: Option<(Millis, i64)>,
        limit: usize,
    ) -> Result<Vec<Notification>, CoreError> {
        self.read(move |c| c.notifications_page(before, limit))
            .await
    }

    pub async fn unread_counts(&self) -> Result<cache::UnreadCounts, CoreError> {
        self.read(|c| c.unread_counts()).await
    }

    pub async fn search(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<cache::SearchHit>, CoreError> {
        let query = query.to_string();
        self.read(move |c| c.search(&query, limit)).await
    }

    /// Users last known to be online.
    pub async fn online_users(&self) -> Result<Vec<String>, CoreError> {
        self.read(|c| c.online_users()).await
    }

    /// Whether the signed-in user follows `username`, as far as the cache knows (false when
    /// signed out).
    /// Usernames to offer when `@prefix` is being typed (at most 8), from what the cache knows.
    pub async fn known_users(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        let me = self.me().await.unwrap_or_default();
        let prefix = prefix.to_string();
        self.read(move |c| c.known_users(&prefix, &me, 8)).await
    }

    /// A user's profile header (counts, whether I follow them and they me, last known
    /// presence), from the cache: works offline.
    pub async fn profile(&self, username: &str) -> Result<cache::Profile, CoreError> {
        let me = self.me_or_empty().await;
        let username = username.to_string();
        self.read(move |c| c.profile(&me, &username)).await
    }

    /// A user's posts, newest first, older than `before`.
    pub async fn posts_by(
        &self,
        author: &str,
        before: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<cache::PostRow>, CoreError> {
        let me = self.me_or_empty().await;
        let author = author.to_string();
        self.read(move |c| c.posts_by(&me, &author, before, limit))
            .await
    }

    /// A user's followers or followed users, by name, after `after`.
    pub async fn follow_list(
        &self,
        username: &str,
        list: cache::FollowList,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>, CoreError> {
        let username = username.to_string();
        self.read(move |c| c.follow_list(&username, list, after.as_deref(), limit))
            .await
    }

    pub async fn is_following(&self, username: &str) -> Result<bool, CoreError> {
        let Some(me) = self.me().await else {
            return Ok(false);
        };
        let username = username.to_string();
        self.read(move |c| c.follows(&me, &username)).await
    }

    /// The resume position `(cursor, epoch)` stored in the cache.
    pub async fn resume_point(&self) -> Result<(papo_protocol::Cursor, Option<String>), CoreError> {
        self.read(|c| c.resume_point()).await
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

    /// A snapshot of the connection for the Diagnostics page and `papo-cli diag` (no token, no
    /// message text).
    /// A read of the cache, on its reader threads.
    async fn read<T, F>(&self, f: F) -> Result<T, CoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Cache) -> Result<T, CacheError> + Send + 'static,
    {
        Ok(self.inner.cache.read(f).await?)
    }

    /// Whether the account held the admin role at its last connection (the server tells it
    /// in every `sync`; `papo-server grant-admin` takes effect at the next one).
    pub async fn is_admin(&self) -> Result<bool, CoreError> {
        self.read(|c| c.is_admin()).await
    }

    /// Opens the `/admin` connection (if it is not open already): [`CoreEvent::Admin`] tells
    /// its state, [`CoreEvent::AdminStats`] arrives every second while it is open. It retries
    /// until [`Core::admin_close`], and stops for good if the server refuses (not an admin).
    pub async fn admin_open(&self) -> Result<(), CoreError> {
        if self.inner.tokens.username().is_none() {
            return Err(CoreError::NotSignedIn);
        }
        let mut admin = self.inner.admin.lock().unwrap();
        if admin.as_ref().is_some_and(|a| a.is_running()) {
            return Ok(());
        }
        let url = config::server_urls(&self.inner.server_url)
            .into_iter()
            .next()
            .unwrap_or_default();
        *admin = Some(admin::AdminHandle::open(
            url,
            self.inner.tokens.clone(),
            self.inner.supervisor.events(),
        ));
        Ok(())
    }

    /// Closes the `/admin` connection.
    pub fn admin_close(&self) {
        if let Some(a) = self.inner.admin.lock().unwrap().take() {
            a.close();
        }
    }

    /// Sends a moderation request on the `/admin` connection and waits for its answer
    /// (at most [`admin::ANSWER_TIMEOUT`]). Never queued: `admin_closed` when the connection
    /// is not open.
    pub async fn admin(&self, action: admin::AdminAction) -> Result<(), CoreError> {
        let handle = {
            let admin = self.inner.admin.lock().unwrap();
            match admin.as_ref() {
                Some(a) if a.is_running() => a.clone(),
                _ => return Err(admin::AdminError::Closed.into()),
            }
        };
        Ok(handle.send(&action).await?)
    }

    pub async fn diagnostics(&self) -> Result<diag::Diagnostics, CoreError> {
        let ((cursor, epoch), (pending, _sent, failed)) = self
            .inner
            .cache
            .read(|c| Ok((c.resume_point()?, c.outbox_counts()?)))
            .await?;
        let state = self.connection_state();
        let w = self.inner.supervisor.wire.lock().unwrap();
        Ok(diag::Diagnostics {
            server_url: self.inner.server_url.clone(),
            transport: w.transport,
            state,
            attempts: w.attempts,
            sessions: w.sessions,
            last_error: w.last_error.clone(),
            connected_at: w.connected_at,
            rtt_ms: w.rtt_ms,
            cursor,
            epoch,
            outbox_pending: pending,
            outbox_wedged: failed,
            recent: w.recent.iter().cloned().collect(),
        })
    }

    /// The language of OS notification titles (the app's: `en`, `pt-BR`, an OS locale name).
    pub fn set_notification_locale(&self, locale: &str) {
        self.inner.view.lock().unwrap().lang = policy::Lang::of_locale(locale);
    }
}
