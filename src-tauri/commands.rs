//! The Tauri commands the UI calls. Each one is a thin call into the core; values are converted
//! to their UI twins (`ui_types`), errors to `{code, message}`. Every command that touches the
//! core's cache is `async`: Tauri runs those off the main thread, and the core runs SQLite on
//! its own cache threads.

use crate::ui_types::{self as ui, Boot, OsStatus, Settings, UiError, UiEvent};
use crate::AppState;
use papo_client::compose::{ComposeTarget, Sent};
use papo_client::{ClientErrorCode, Core, CoreError};
use papo_protocol::ErrorCode;
use tauri::State;
use uuid::Uuid;

type Res<T> = Result<T, UiError>;

impl From<CoreError> for UiError {
    fn from(e: CoreError) -> Self {
        UiError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// A failure in the shell itself (settings file, start-at-login): `internal`, like the
/// server's "something broke; nothing was done".
fn internal(e: impl std::fmt::Display) -> UiError {
    UiError {
        code: ErrorCode::Internal.into(),
        message: e.to_string(),
    }
}

fn uuid(s: &str) -> Res<Uuid> {
    Uuid::parse_str(s).map_err(|e| UiError {
        code: ClientErrorCode::InvalidInput.into(),
        message: e.to_string(),
    })
}

/// The UI is up: everything it needs to draw, plus the events queued while it loaded.
#[tauri::command(rename_all = "snake_case")]
pub async fn ui_ready(state: State<'_, AppState>, app: tauri::AppHandle) -> Res<Boot> {
    state.mark("ui_ready");
    let core = state.core();
    let connection = core.connection_state();
    let session = !matches!(
        core.connection_state(),
        papo_client::ConnectionState::SignedOut { .. } | papo_client::ConnectionState::Stopped
    );
    Ok(Boot {
        admin: core.is_admin().await.unwrap_or(false),
        me: core.me().await,
        session,
        server_url: state.server_url(),
        connection,
        settings: state.settings.lock().unwrap().clone(),
        queued: state.bridge.ready(),
        os_locale: crate::os_locale(),
        os: state.os_status(&app),
    })
}

/// Signs in (or creates the account), reconnecting to another server if the URL changed.
#[tauri::command(rename_all = "snake_case")]
pub async fn sign_in(
    state: State<'_, AppState>,
    app: tauri::AppHandle,
    server_url: String,
    username: String,
    password: String,
    create: bool,
) -> Res<String> {
    let server_url = server_url.trim().trim_end_matches('/').to_string();
    if !server_url.is_empty() && server_url != state.server_url() {
        state.switch_server(&app, &server_url).await?;
    }
    let core = state.core();
    let username = username.trim().to_lowercase();
    let me = if create {
        core.register(&username, &password).await?
    } else {
        core.login(&username, &password).await?
    };
    Ok(me)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn sign_out(state: State<'_, AppState>) -> Res<()> {
    state.core().sign_out().await?;
    state.refresh_unread().await;
    Ok(())
}

/// Deletes the account on the server (with its password), then signs out and erases the cache.
#[tauri::command(rename_all = "snake_case")]
pub async fn delete_account(state: State<'_, AppState>, password: String) -> Res<()> {
    state.core().delete_account(&password).await?;
    state.refresh_unread().await;
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub fn retry_now(state: State<'_, AppState>) {
    state.core().retry_now();
}

/// Sends what was typed in a composer (`/msg user text` from any composer is a DM), as a reply
/// to the message `reply_to` of the composer's conversation when given.
#[tauri::command(rename_all = "snake_case")]
pub async fn compose(
    state: State<'_, AppState>,
    target: ComposeTarget,
    text: String,
    reply_to: Option<i64>,
) -> Res<Sent> {
    Ok(state.core().compose(&target, &text, reply_to).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn edit_post(state: State<'_, AppState>, post_id: i64, text: String) -> Res<()> {
    state.core().edit_post(post_id, &text).await?;
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn edit_message(state: State<'_, AppState>, message_id: i64, text: String) -> Res<()> {
    state.core().edit_message(message_id, &text).await?;
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn delete_message(state: State<'_, AppState>, message_id: i64) -> Res<()> {
    state.core().delete_message(message_id).await?;
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn delete_post(state: State<'_, AppState>, post_id: i64) -> Res<()> {
    state.core().delete_post(post_id).await?;
    Ok(())
}

/// Shares a post with an optional comment (`shared` true), or un-shares it.
#[tauri::command(rename_all = "snake_case")]
pub async fn set_share(
    state: State<'_, AppState>,
    post_id: i64,
    shared: bool,
    comment: String,
) -> Res<()> {
    let core = state.core();
    if shared {
        core.share(post_id, &comment).await?;
    } else {
        core.unshare(post_id).await?;
    }
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn set_like(state: State<'_, AppState>, post_id: i64, liked: bool) -> Res<()> {
    let core = state.core();
    if liked {
        core.like(post_id).await?;
    } else {
        core.unlike(post_id).await?;
    }
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn set_follow(state: State<'_, AppState>, username: String, follow: bool) -> Res<()> {
    let core = state.core();
    if follow {
        core.follow(&username).await?;
    } else {
        core.unfollow(&username).await?;
    }
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn is_following(state: State<'_, AppState>, username: String) -> Res<bool> {
    Ok(state.core().is_following(&username).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn known_users(state: State<'_, AppState>, prefix: String) -> Res<Vec<String>> {
    Ok(state.core().known_users(&prefix).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn mark_read(
    state: State<'_, AppState>,
    conversation: String,
    last_read: i64,
) -> Res<()> {
    state.core().mark_read(&conversation, last_read).await?;
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
pub fn set_typing(state: State<'_, AppState>, conversation: String, typing: bool) {
    state.core().set_typing(&conversation, typing);
}

/// Whose presence the UI shows besides followed users and DM peers, and whether the public
/// room is open (for its typing indicators).
#[tauri::command(rename_all = "snake_case")]
pub fn watch_presence(state: State<'_, AppState>, users: Vec<String>, public_typing: bool) {
    state.core().watch_presence(users, public_typing);
}

/// The conversation on screen gets no OS notifications.
#[tauri::command(rename_all = "snake_case")]
pub fn set_on_screen(state: State<'_, AppState>, conversation: Option<String>) {
    state.core().set_on_screen(conversation.as_deref());
}

// Outbox: `async` (off the main thread) like the reads; retry and discard wake the sender.

/// Retries a wedged item; returns the client id it is sent under (new after a refusal), or
/// `null` if it was not wedged.
#[tauri::command(rename_all = "snake_case")]
pub async fn retry_outbox(state: State<'_, AppState>, client_id: String) -> Res<Option<String>> {
    Ok(state
        .core()
        .retry_outbox(uuid(&client_id)?)
        .await?
        .map(|c| c.to_string()))
}

#[tauri::command(rename_all = "snake_case")]
pub async fn discard_outbox(state: State<'_, AppState>, client_id: String) -> Res<bool> {
    Ok(state.core().discard_outbox(uuid(&client_id)?).await?)
}

fn outbox_entry(i: &papo_client::outbox::OutboxItem) -> Res<ui::OutboxEntry> {
    use papo_protocol::Request;
    let text = match &i.request {
        Request::ChatSend(r) => Some(r.text.clone()),
        Request::DmSend(r) => Some(r.text.clone()),
        Request::PostCreate(r) => Some(r.text.clone()),
        Request::PostEdit(r) => Some(r.text.clone()),
        Request::CommentCreate(r) => Some(r.text.clone()),
        _ => None,
    };
    Ok(ui::OutboxEntry {
        client_id: i.client_id.to_string(),
        event: i.request.event_name().to_string(),
        conversation: i.queue.clone(),
        text,
        state: i.state,
        attempts: i.attempts,
        error: i.error.clone(),
        wedge: i.wedge.clone(),
    })
}

/// Pending and wedged outbox items, in send order.
#[tauri::command(rename_all = "snake_case")]
pub async fn outbox(state: State<'_, AppState>) -> Res<Vec<ui::OutboxEntry>> {
    state
        .core()
        .outbox()
        .await?
        .iter()
        .map(outbox_entry)
        .collect()
}

/// Wedged outbox items, of one conversation (`public`, `dm:bia`, `feed`, ...) when given.
#[tauri::command(rename_all = "snake_case")]
pub async fn wedged_outbox(
    state: State<'_, AppState>,
    conversation: Option<String>,
) -> Res<Vec<ui::OutboxEntry>> {
    state
        .core()
        .wedged_outbox(conversation.as_deref())
        .await?
        .iter()
        .map(outbox_entry)
        .collect()
}

// ------------------------------------------------------------------ reads (work offline)
// Reads are `async` so Tauri runs them off the main thread: a slow query never blocks the
// webview.

#[tauri::command(rename_all = "snake_case")]
pub async fn feed_page(
    state: State<'_, AppState>,
    before: Option<ui::PageKey>,
    limit: usize,
) -> Res<Vec<ui::PostRow>> {
    Ok(state.core().feed_page(before, limit).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn profile(state: State<'_, AppState>, username: String) -> Res<ui::Profile> {
    Ok(state.core().profile(&username).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn posts_by(
    state: State<'_, AppState>,
    author: String,
    before: Option<ui::PageKey>,
    limit: usize,
) -> Res<Vec<ui::PostRow>> {
    Ok(state.core().posts_by(&author, before, limit).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn follow_list(
    state: State<'_, AppState>,
    username: String,
    list: ui::FollowList,
    after: Option<String>,
    limit: usize,
) -> Res<Vec<String>> {
    Ok(state
        .core()
        .follow_list(&username, list, after, limit)
        .await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn comments(state: State<'_, AppState>, post_id: i64) -> Res<Vec<ui::CommentRow>> {
    Ok(state.core().comments(post_id).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn conversation_page(
    state: State<'_, AppState>,
    conversation: String,
    before: Option<ui::PageKey>,
    limit: usize,
) -> Res<Vec<ui::MessageRow>> {
    Ok(state
        .core()
        .conversation_page(&conversation, before, limit)
        .await?)
}

/// The connection as the Diagnostics page shows it (no token, no message text).
#[tauri::command(rename_all = "snake_case")]
pub async fn diagnostics(state: State<'_, AppState>) -> Res<ui::Diagnostics> {
    Ok(state.core().diagnostics().await?)
}

/// The Admin page opened: the `/admin` connection starts (its states and `admin:stats` arrive
/// as core events).
#[tauri::command(rename_all = "snake_case")]
pub async fn admin_open(state: State<'_, AppState>) -> Res<()> {
    Ok(state.core().admin_open().await?)
}

/// The Admin page closed.
#[tauri::command(rename_all = "snake_case")]
pub fn admin_close(state: State<'_, AppState>) {
    state.core().admin_close();
}

/// A moderation action, answered by the server (never queued).
#[tauri::command(rename_all = "snake_case")]
pub async fn admin(state: State<'_, AppState>, action: ui::AdminAction) -> Res<()> {
    Ok(state.core().admin(action).await?)
}

/// The next page of a conversation after `after`, oldest first.
#[tauri::command(rename_all = "snake_case")]
pub async fn conversation_page_after(
    state: State<'_, AppState>,
    conversation: String,
    after: ui::PageKey,
    limit: usize,
) -> Res<Vec<ui::MessageRow>> {
    Ok(state
        .core()
        .conversation_page_after(&conversation, after, limit)
        .await?)
}

/// A window around a message of a conversation (jumping to the original a reply quotes).
#[tauri::command(rename_all = "snake_case")]
pub async fn conversation_around(
    state: State<'_, AppState>,
    conversation: String,
    server_id: i64,
    context: usize,
) -> Res<Option<ui::AroundPage>> {
    Ok(state
        .core()
        .conversation_around(&conversation, server_id, context)
        .await?)
}

/// Where a conversation's unread messages begin (the UI asks before marking it read).
#[tauri::command(rename_all = "snake_case")]
pub async fn unread_start(
    state: State<'_, AppState>,
    conversation: String,
) -> Res<Option<ui::UnreadStart>> {
    Ok(state.core().unread_start(&conversation).await?)
}

/// The conversation's unsent composer text, if any.
#[tauri::command(rename_all = "snake_case")]
pub async fn draft(state: State<'_, AppState>, conversation: String) -> Res<Option<String>> {
    Ok(state.core().draft(&conversation).await?)
}

/// Keeps the conversation's composer text (blank removes it).
#[tauri::command(rename_all = "snake_case")]
pub async fn set_draft(state: State<'_, AppState>, conversation: String, text: String) -> Res<()> {
    Ok(state.core().set_draft(&conversation, &text).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn conversations_page(
    state: State<'_, AppState>,
    before_at: Option<i64>,
    before_id: Option<String>,
    limit: usize,
) -> Res<ui::ConversationPage> {
    Ok(state
        .core()
        .conversations_page(before_at.zip(before_id), limit)
        .await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn notifications_page(
    state: State<'_, AppState>,
    before_at: Option<i64>,
    before_id: Option<i64>,
    limit: usize,
) -> Res<Vec<ui::Notification>> {
    let before = before_at.zip(before_id);
    Ok(state.core().notifications_page(before, limit).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn unread_counts(state: State<'_, AppState>) -> Res<ui::UnreadCounts> {
    Ok(state.core().unread_counts().await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn search(
    state: State<'_, AppState>,
    query: String,
    limit: usize,
) -> Res<Vec<ui::SearchHit>> {
    Ok(state.core().search(&query, limit).await?)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn online_users(state: State<'_, AppState>) -> Res<Vec<String>> {
    Ok(state.core().online_users().await?)
}

// ------------------------------------------------------------------ settings, diagnostics

#[tauri::command(rename_all = "snake_case")]
pub fn set_settings(state: State<'_, AppState>, settings: Settings) -> Res<()> {
    if let Some(q) = settings.notifications.quiet_hours {
        if !q.is_valid() {
            return Err(UiError {
                code: ClientErrorCode::InvalidInput.into(),
                message: format!(
                    "quiet hours are minutes after midnight, below {}: got {}–{}",
                    papo_client::policy::MINUTES_PER_DAY,
                    q.start,
                    q.end
                ),
            });
        }
    }
    state.apply_settings(settings).map_err(internal)
}

/// Keyring, notification server, tray and start-at-login state (Settings polls it).
#[tauri::command(rename_all = "snake_case")]
pub fn os_status(state: State<'_, AppState>, app: tauri::AppHandle) -> OsStatus {
    state.os_status(&app)
}

/// Start at login on/off (tauri-plugin-autostart; launched with `--minimized`).
#[tauri::command(rename_all = "snake_case")]
pub fn set_autostart(app: tauri::AppHandle, enabled: bool) -> Res<bool> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    if enabled {
        launcher.enable().map_err(internal)?;
    } else {
        launcher.disable().map_err(internal)?;
    }
    launcher.is_enabled().map_err(internal)
}

/// The UI's event stream after `ui_ready`: the next events in order (one batch), waiting up to
/// [`crate::bridge::PULL_WAIT`] for the first; empty when nothing came (the UI asks again).
#[tauri::command(rename_all = "snake_case")]
pub async fn next_events(state: State<'_, AppState>) -> Result<Vec<UiEvent>, UiError> {
    let bridge = state.bridge.clone();
    Ok(bridge.next(crate::bridge::PULL_WAIT).await)
}

/// The UI drew the first page of the feed: logs the time since the process started (the
/// cold-start benchmark reads this line) and exits when `PAPO_EXIT_AFTER_FEED=1`.
#[tauri::command(rename_all = "snake_case")]
pub fn feed_rendered(state: State<'_, AppState>, app: tauri::AppHandle, posts: usize) {
    let ms = state.started.elapsed().as_secs_f64() * 1000.0;
    let marks = state.marks.lock().unwrap().join(" ");
    println!("PAPO_FEED_RENDERED_MS={ms:.1} posts={posts} {marks}");
    tracing::info!(ms, posts, "feed rendered");
    if state.exit_after_feed {
        app.exit(0);
    }
}

/// Current core, for commands (cheap clone).
impl AppState {
    pub fn core(&self) -> Core {
        self.core.lock().unwrap().clone()
    }
}
