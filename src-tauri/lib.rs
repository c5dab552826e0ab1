//! Papo desktop shell: wires the client core ([`papo_client::Core`]) to the web UI.
//!
//! - [`commands`]: what the UI can ask (thin calls into the core).
//! - [`bridge`]: the one typed event stream core → UI, queued until the UI is ready.
//! - [`ui_types`]: the types crossing the boundary, generated into TypeScript.
//! - [`settings`]: the settings file; [`session_store`]: tokens in the OS keyring;
//!   [`notifications`]: native notifications (notify-rust), grouped, click → `UiEvent::Open`;
//!   [`tray`]: the tray icon (unread count, menu).
//!
//! Single instance (tauri-plugin-single-instance: a second launch focuses the running window),
//! start at login (tauri-plugin-autostart, launched with `--minimized`), close to tray.
//!
//! Configuration (for tests and power users): `--server URL` / `PAPO_SERVER`,
//! `--data-dir DIR` / `PAPO_DATA_DIR` (a separate profile, with its own single-instance name),
//! `--minimized`, `PAPO_EXIT_AFTER_FEED=1` (benchmark), `PAPO_NOTIFICATIONS=log` (no native
//! notifications), `PAPO_KEYRING=none` (no keyring: session-only sign-in), `PAPO_NO_TRAY=1`,
//! `PAPO_WEBKIT_DEFAULTS=0` (none of the WebKit memory knobs of [`webkit_tuning`]).

pub mod bridge;
pub mod commands;
pub mod notifications;
pub mod session_store;
pub mod settings;
pub mod tray;
pub mod ui_types;
pub mod webkit_tuning;

use bridge::Bridge;
use notifications::{LogNotifier, NativeNotifier, Notifier};
use papo_client::policy::Target;
use papo_client::{Core, CoreConfig, CoreEvent};
use settings::SettingsFile;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tauri::{AppHandle, Manager};
use tauri_plugin_autostart::ManagerExt;
use tray::Tray;
use ui_types::{OsStatus, Settings, UiError, UiEvent};

/// The server used when nothing else is configured.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Shared state behind every command.
pub struct AppState {
    core: Mutex<Core>,
    /// Bumped when the core is replaced (another server): old forwarders stop.
    generation: Arc<AtomicU64>,
    bridge: Arc<Bridge>,
    notifier: Arc<dyn Notifier>,
    tray: OnceLock<Tray>,
    settings: Mutex<Settings>,
    settings_file: SettingsFile,
    cache_path: PathBuf,
    server_url: Mutex<String>,
    started: Instant,
    /// Startup milestones (`name=ms`), printed with the feed-rendered line.
    marks: Mutex<Vec<String>>,
    exit_after_feed: bool,
}

impl AppState {
    /// Records a startup milestone (milliseconds since the process started).
    pub fn mark(&self, name: &str) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.marks.lock().unwrap().push(format!("{name}={ms:.0}"));
    }

    pub fn server_url(&self) -> String {
        self.server_url.lock().unwrap().clone()
    }

    /// The language for texts the shell draws itself (the tray menu) and the core writes for
    /// it (OS notification titles).
    fn locale(&self) -> String {
        locale_of(self.settings.lock().unwrap().language)
    }

    /// Applies and saves new settings (from the UI or the tray) and keeps the tray in line.
    pub fn apply_settings(&self, settings: Settings) -> std::io::Result<()> {
        self.core()
            .set_notification_settings(settings.notifications.clone());
        self.core()
            .set_notification_locale(&locale_of(settings.language));
        if let Some(t) = self.tray.get() {
            t.set_dnd(settings.notifications.do_not_disturb);
        }
        let saved = self.settings_file.save(&settings);
        *self.settings.lock().unwrap() = settings;
        self.refresh_quiet();
        saved
    }

    /// The end minute of the quiet hours silencing notifications now, if they are.
    fn quiet_until(&self) -> Option<u16> {
        let minute = papo_client::policy::local_minute_now();
        let settings = self.settings.lock().unwrap();
        let q = settings.notifications.quiet_hours?;
        q.contains(minute).then_some(q.end)
    }

    /// The tray says whether quiet hours are on (checked when settings change and every 15 s).
    fn refresh_quiet(&self) {
        if let Some(tray) = self.tray.get() {
            tray.set_quiet(self.quiet_until(), &self.locale());
        }
    }

    /// The tray shows this many messages not read yet.
    fn set_unread(&self, total: i64) {
        if let Some(tray) = self.tray.get() {
            tray.set_unread(total, &self.locale());
        }
    }

    /// The tray shows the messages not read yet (read from the cache).
    pub(crate) async fn refresh_unread(&self) {
        let Some(tray) = self.tray.get() else { return };
        match self.core().unread_counts().await {
            Ok(u) => tray.set_unread(u.total, &self.locale()),
            Err(e) => tracing::warn!("unread count: {e}"),
        }
    }

    /// Keyring, notification server, tray, autostart: for Settings and the sign-in screen.
    pub fn os_status(&self, app: &AppHandle) -> OsStatus {
        let keyring = session_store::status();
        let notes = self.notifier.status();
        OsStatus {
            keyring: keyring.backend.clone(),
            keyring_message: keyring.message.clone(),
            notifications: notes.available,
            notification_server: notes.server,
            notifications_message: notes.message,
            tray: self.tray.get().is_some(),
            autostart: app.autolaunch().is_enabled().unwrap_or(false),
        }
    }

    /// Stops the current core and starts one connected to `url` (same cache file; the server's
    /// epoch decides whether it is reused).
    async fn switch_server(&self, app: &AppHandle, url: &str) -> Result<(), UiError> {
        let old = self.core();
        old.shutdown().await;
        let core = start_core(url, &self.cache_path).await?;
        core.set_notification_settings(self.settings.lock().unwrap().notifications.clone());
        core.set_notification_locale(&self.locale());
        let gen = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        spawn_forwarder(app.clone(), &core, gen, self);
        *self.core.lock().unwrap() = core;
        *self.server_url.lock().unwrap() = url.to_string();
        let mut s = self.settings.lock().unwrap();
        s.server_url = Some(url.to_string());
        let _ = self.settings_file.save(&s);
        Ok(())
    }
}

async fn start_core(url: &str, cache_path: &std::path::Path) -> Result<Core, UiError> {
    Core::start(
        CoreConfig::new(url, cache_path),
        session_store::session_store(url),
    )
    .await
    .map_err(UiError::from)
}

/// One event taken from the core's stream by the forwarder.
enum Taken {
    Event(CoreEvent),
    Lagged(u64),
    /// Nothing more right now (only from the non-blocking take).
    Empty,
    Closed,
}

/// Forwards the core's events to the bridge (and OS notifications to the notifier), what has
/// arrived together in one go.
fn spawn_forwarder(app: AppHandle, core: &Core, gen: u64, state: &AppState) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut rx = core.subscribe();
    let (bridge, notifier, generation) = (
        state.bridge.clone(),
        state.notifier.clone(),
        state.generation.clone(),
    );
    tauri::async_runtime::spawn(async move {
        loop {
            let first = match rx.recv().await {
                Ok(e) => Taken::Event(e),
                Err(RecvError::Lagged(n)) => Taken::Lagged(n),
                Err(RecvError::Closed) => Taken::Closed,
            };
            let mut batch = Vec::new();
            // The tray count: the last change set's total, or a read after a reset.
            let mut unread: Option<Option<i64>> = None;
            let mut next = Some(first);
            let mut stop = false;
            while let Some(taken) = next.take() {
                match taken {
                    Taken::Event(event) => {
                        if generation.load(Ordering::SeqCst) != gen {
                            stop = true;
                            break;
                        }
                        match &event {
                            CoreEvent::Notify(n) => notifier.notify(n),
                            CoreEvent::Withdraw { message_id } => notifier.withdraw(*message_id),
                            _ => {}
                        }
                        // The count comes with each change set (maintained in the cache); only
                        // a reset needs a read.
                        match &event {
                            CoreEvent::Changes(c) => unread = Some(Some(c.unread_total)),
                            CoreEvent::Sync(_) => unread = Some(None),
                            _ => {}
                        }
                        batch.push(UiEvent::Core(event));
                    }
                    Taken::Lagged(n) => {
                        tracing::warn!(n, "UI forwarder lagged; asking the UI to resync");
                        batch.push(UiEvent::Resync);
                    }
                    Taken::Empty => break,
                    Taken::Closed => {
                        stop = true;
                        break;
                    }
                }
                if batch.len() >= bridge::MAX_BATCH {
                    break;
                }
                next = Some(match rx.try_recv() {
                    Ok(e) => Taken::Event(e),
                    Err(TryRecvError::Lagged(n)) => Taken::Lagged(n),
                    Err(TryRecvError::Empty) => Taken::Empty,
                    Err(TryRecvError::Closed) => Taken::Closed,
                });
            }
            bridge.push_all(batch);
            if let (Some(total), Some(state)) = (unread, app.try_state::<AppState>()) {
                match total {
                    Some(total) => state.set_unread(total),
                    None => state.refresh_unread().await,
                }
            }
            if stop {
                break;
            }
        }
    });
}

/// The OS locale as a BCP 47 tag (`pt-BR`): the user's preferred UI languages as the OS reports
/// them (`sys-locale`: `GetUserPreferredUILanguages` on Windows, `CFLocale` on macOS,
/// `LANGUAGE`/`LC_ALL`/`LC_MESSAGES`/`LANG` elsewhere), "en" when it names none.
pub fn os_locale() -> String {
    first_real_locale(sys_locale::get_locales())
}

/// The first locale that names a language: the POSIX "C" locale does not.
fn first_real_locale(locales: impl IntoIterator<Item = String>) -> String {
    locales
        .into_iter()
        .map(|l| l.trim().to_string())
        .find(|l| !l.is_empty() && l != "C" && l != "POSIX")
        .unwrap_or_else(|| "en".into())
}

/// Brings the main window up: shown, not minimized, focused.
pub fn show_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// A notification was clicked: the window comes up on the thing it is about.
fn open_target(app: &AppHandle, target: Target) {
    show_main(app);
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    match serde_json::to_value(&target).and_then(serde_json::from_value) {
        Ok(t) => state.bridge.push(UiEvent::Open(t)),
        Err(e) => tracing::error!("target with an unexpected shape: {e}"),
    }
}

fn on_tray_menu(app: &AppHandle, id: &str) {
    tracing::info!(item = id, "tray menu");
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    match id {
        tray::item::OPEN => show_main(app),
        tray::item::DND => {
            let mut s = state.settings.lock().unwrap().clone();
            s.notifications.do_not_disturb = !s.notifications.do_not_disturb;
            if let Err(e) = state.apply_settings(s.clone()) {
                tracing::warn!("could not save the settings: {e}");
            }
            state.bridge.push(UiEvent::Settings(s));
        }
        tray::item::SIGN_OUT => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let state = app.state::<AppState>();
                if let Err(e) = state.core().sign_out().await {
                    tracing::error!("sign-out could not erase the cache: {e}");
                }
                state.bridge.push(UiEvent::SignedOut);
                state.refresh_unread().await;
                show_main(&app);
            });
        }
        tray::item::QUIT => app.exit(0),
        _ => {}
    }
}

/// The desktop app's command line (`papo --help`).
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "papo",
    version,
    about = "Papo desktop: chat and social notifications"
)]
struct Args {
    /// The Papo server (else the one saved in the settings, else http://127.0.0.1:8080).
    #[arg(long, env = "PAPO_SERVER")]
    server: Option<String>,
    /// A separate profile: settings and cache in this directory, its own single instance.
    #[arg(long, env = "PAPO_DATA_DIR")]
    data_dir: Option<String>,
    /// Start in the tray, without showing the window (used by start at login).
    #[arg(long)]
    minimized: bool,
    /// Added by WebKitWebDriver when it launches the app for a WebDriver session.
    #[arg(long, hide = true)]
    automation: bool,
}

/// The single-instance D-Bus name: the app's identifier, plus a hash of the data directory
/// when a separate profile is used (`--data-dir`), so two profiles can run side by side.
fn instance_id(data_dir: Option<&str>) -> String {
    use std::hash::{Hash, Hasher};
    let base = "app.papo.desktop".to_string();
    match data_dir {
        None => base,
        Some(d) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            d.hash(&mut h);
            format!("{base}.p{:016x}", h.finish())
        }
    }
}

/// The locale a language setting stands for (`System`: the OS's).
fn locale_of(language: ui_types::Language) -> String {
    match language {
        ui_types::Language::En => "en".into(),
        ui_types::Language::PtBr => "pt-BR".into(),
        ui_types::Language::System => os_locale(),
    }
}

/// Runs the desktop app until its window is closed.
pub fn run() {
    let started = Instant::now();
    // Before any thread exists and before GTK/WebKit read their environment.
    webkit_tuning::apply_env_defaults();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,papo_client=info".into()),
        )
        .try_init();

    let args = <Args as clap::Parser>::parse();
    let data_dir_arg = args.data_dir.clone();
    tauri::Builder::default()
        // First: a second launch hands its arguments over and exits before anything else.
        .plugin(
            tauri_plugin_single_instance::Builder::new()
                .dbus_id(instance_id(data_dir_arg.as_deref()))
                .callback(|app, _args, _cwd| {
                    tracing::info!("another instance was started: focusing this one");
                    show_main(app);
                })
                .build(),
        )
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--minimized"]),
        ))
        .setup(move |app| {
            let data_dir = match data_dir_arg {
                Some(d) => PathBuf::from(d),
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&data_dir)?;
            let settings_file = SettingsFile::new(&data_dir);
            let settings = settings_file.load();
            let server_url = args
                .server
                .clone()
                .or_else(|| settings.server_url.clone())
                .unwrap_or_else(|| DEFAULT_SERVER.to_string());
            let cache_path = data_dir.join("cache.sqlite");
            tracing::info!(data_dir = %data_dir.display(), server = %server_url, "starting");
            let core = tauri::async_runtime::block_on(start_core(&server_url, &cache_path))
                .map_err(|e| format!("{}: {}", e.code, e.message))?;
            core.set_notification_settings(settings.notifications.clone());
            core.set_notification_locale(&locale_of(settings.language));
            let notifier: Arc<dyn Notifier> =
                if std::env::var("PAPO_NOTIFICATIONS").as_deref() == Ok("log") {
                    Arc::new(LogNotifier)
                } else {
                    let handle = app.handle().clone();
                    Arc::new(NativeNotifier::start(Arc::new(move |t| {
                        open_target(&handle, t)
                    })))
                };
            let (dnd, minimized) = (
                settings.notifications.do_not_disturb,
                args.minimized || settings.start_minimized,
            );
            let state = AppState {
                core: Mutex::new(core.clone()),
                generation: Arc::new(AtomicU64::new(0)),
                bridge: Arc::new(Bridge::default()),
                notifier,
                tray: OnceLock::new(),
                settings: Mutex::new(settings),
                settings_file,
                cache_path,
                server_url: Mutex::new(server_url),
                started,
                marks: Mutex::new(vec![format!(
                    "core_started={:.0}",
                    started.elapsed().as_secs_f64() * 1000.0
                )]),
                exit_after_feed: std::env::var("PAPO_EXIT_AFTER_FEED").as_deref() == Ok("1"),
            };
            spawn_forwarder(app.handle().clone(), &core, 0, &state);
            app.manage(state);
            let state = app.state::<AppState>();
            if std::env::var("PAPO_NO_TRAY").as_deref() != Ok("1") {
                let quiet = state.quiet_until();
                match Tray::build(app.handle(), dnd, quiet, &state.locale(), on_tray_menu) {
                    Ok(t) => {
                        let _ = state.tray.set(t);
                        // Quiet hours start and end with the clock, not with a setting.
                        let app_q = app.handle().clone();
                        tauri::async_runtime::spawn(async move {
                            let mut tick =
                                tokio::time::interval(std::time::Duration::from_secs(15));
                            loop {
                                tick.tick().await;
                                app_q.state::<AppState>().refresh_quiet();
                            }
                        });
                        // The count is read on the cache threads, not here on the main thread.
                        let app = app.handle().clone();
                        tauri::async_runtime::spawn(async move {
                            app.state::<AppState>().refresh_unread().await;
                        });
                    }
                    Err(e) => tracing::warn!("no tray icon: {e}"),
                }
            }
            if let Some(w) = app.get_webview_window("main") {
                webkit_tuning::apply_webview_defaults(&w);
            }
            if minimized && state.tray.get().is_some() {
                if let Some(w) = app.get_webview_window("main") {
                    let _ = w.hide();
                }
            }
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window hides it to the tray (when configured and there is a tray).
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                if let Some(state) = window.try_state::<AppState>() {
                    if state.tray.get().is_some() && state.settings.lock().unwrap().close_to_tray {
                        api.prevent_close();
                        let _ = window.hide();
                    }
                }
            }
        })
        .on_page_load(|webview, payload| {
            // A reload drops the UI's listeners: queue until it says it is ready again.
            if matches!(payload.event(), tauri::webview::PageLoadEvent::Started) {
                if let Some(state) = webview.try_state::<AppState>() {
                    state.bridge.not_ready();
                }
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::ui_ready,
            commands::next_events,
            commands::sign_in,
            commands::sign_out,
            commands::retry_now,
            commands::compose,
            commands::edit_post,
            commands::delete_post,
            commands::set_like,
            commands::set_follow,
            commands::is_following,
            commands::mark_read,
            commands::set_typing,
            commands::set_on_screen,
            commands::retry_outbox,
            commands::discard_outbox,
            commands::outbox,
            commands::wedged_outbox,
            commands::feed_page,
            commands::comments,
            commands::conversation_page,
            commands::unread_start,
            commands::conversation_page_after,
            commands::diagnostics,
            commands::admin_open,
            commands::admin_close,
            commands::admin,
            commands::set_share,
            commands::conversation_around,
            commands::draft,
            commands::set_draft,
            commands::known_users,
            commands::edit_message,
            commands::delete_message,
            commands::conversations_page,
            commands::profile,
            commands::posts_by,
            commands::follow_list,
            commands::delete_account,
            commands::notifications_page,
            commands::unread_counts,
            commands::search,
            commands::online_users,
            commands::watch_presence,
            commands::set_settings,
            commands::os_status,
            commands::set_autostart,
            commands::feed_rendered,
        ])
        .build(tauri::generate_context!())
        .expect("error while building the Papo app")
        .run(|app, event| {
            if let tauri::RunEvent::Exit = event {
                if let Some(state) = app.try_state::<AppState>() {
                    let core = state.core();
                    tauri::async_runtime::block_on(core.shutdown());
                }
            }
        });
}

#[cfg(test)]
mod args_tests {
    use super::Args;
    use clap::Parser;

    #[test]
    fn the_command_line_takes_both_spellings_and_the_webdriver_flag() {
        let a = Args::try_parse_from([
            "papo",
            "--automation",
            "--server",
            "http://127.0.0.1:9",
            "--data-dir=/tmp/profile",
            "--minimized",
        ])
        .unwrap();
        assert_eq!(a.server.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(a.data_dir.as_deref(), Some("/tmp/profile"));
        assert!(a.minimized);
        let none = Args::try_parse_from(["papo"]).unwrap();
        assert!(!none.minimized);
        // A typo is refused with a usage message, not silently ignored.
        let err = Args::try_parse_from(["papo", "--sever", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}

#[cfg(test)]
mod locale_tests {
    use super::first_real_locale;

    fn pick(l: &[&str]) -> String {
        first_real_locale(l.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_first_locale_that_names_a_language_wins() {
        assert_eq!(pick(&["pt-BR", "en-US"]), "pt-BR");
        // The POSIX locale and blanks name no language: the next one counts.
        assert_eq!(pick(&["C", "", " POSIX ", "pt-PT"]), "pt-PT");
        assert_eq!(pick(&["C"]), "en");
        assert_eq!(pick(&[]), "en");
    }
}
