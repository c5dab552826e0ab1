//! Native OS notifications. The core's policy decides *whether* an event deserves one (and
//! emits `CoreEvent::Notify` with title, body, target and group); this module raises it.
//!
//! - **Grouping.** One live notification per group (a conversation, a post, "follows"): the next
//!   one in the same group *replaces* it (`replaces_id` on the freedesktop bus), its title
//!   counting the burst ("joao (20)"). A group is forgotten when its notification closes.
//! - **Click.** Every notification carries the `default` action. On Linux the server answers
//!   with `ActionInvoked` on the connection that sent the notification: a waiter per live group
//!   listens there and calls the `on_open` callback with the target (the shell shows the window
//!   and sends `UiEvent::Open`). On macOS and Windows clicking brings the app forward (the OS
//!   does it); the target is not known there.
//! - **No notification server.** Sending fails; the app keeps working, [`NotifierStatus`] says
//!   so (Settings shows it) and the next notification tries again.

use papo_client::policy::{OsNotification, Target};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub trait Notifier: Send + Sync {
    fn notify(&self, notification: &OsNotification);
    fn status(&self) -> NotifierStatus;
}

/// Whether native notifications can be shown (for Settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotifierStatus {
    pub available: bool,
    /// The notification server (`dunst 1.9.0`) when known.
    pub server: Option<String>,
    /// Why notifications cannot be shown.
    pub message: Option<String>,
}

/// What the shell does when a notification is clicked.
pub type OnOpen = Arc<dyn Fn(Target) + Send + Sync>;

/// Logs the notification (tests, and `PAPO_NOTIFICATIONS=log`).
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, n: &OsNotification) {
        tracing::info!(group = %n.group, title = %n.title, "notification");
    }
    fn status(&self) -> NotifierStatus {
        NotifierStatus {
            available: false,
            server: None,
            message: Some("native notifications are turned off".into()),
        }
    }
}

/// The live notification of each group: its server id and how many it stands for.
#[derive(Debug, Default)]
pub struct Groups {
    live: HashMap<String, Live>,
}

#[derive(Debug, Clone)]
struct Live {
    id: u32,
    count: u32,
    target: Target,
}

/// What to send for the next notification of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The server id to replace (0: a new notification).
    pub replaces: u32,
    pub summary: String,
    pub body: String,
}

impl Groups {
    /// The next notification of `n.group`: replaces the live one, counting the burst.
    pub fn plan(&self, n: &OsNotification) -> Plan {
        let (replaces, count) = match self.live.get(&n.group) {
            Some(l) => (l.id, l.count + 1),
            None => (0, 1),
        };
        Plan {
            replaces,
            summary: if count > 1 {
                format!("{} ({count})", n.title)
            } else {
                n.title.clone()
            },
            body: n.body.clone(),
        }
    }

    /// The server showed `n` under `id`.
    pub fn shown(&mut self, n: &OsNotification, id: u32) {
        let count = match self.live.get(&n.group) {
            Some(l) if l.id == id => l.count + 1,
            _ => 1,
        };
        self.live.insert(
            n.group.clone(),
            Live {
                id,
                count,
                target: n.target.clone(),
            },
        );
    }

    /// Notification `id` closed (expired, dismissed, clicked): its group starts afresh.
    pub fn closed(&mut self, id: u32) {
        self.live.retain(|_, l| l.id != id);
    }

    /// What notification `id` is about.
    pub fn target(&self, id: u32) -> Option<Target> {
        self.live
            .values()
            .find(|l| l.id == id)
            .map(|l| l.target.clone())
    }

    pub fn group_of(&self, id: u32) -> Option<String> {
        self.live
            .iter()
            .find(|(_, l)| l.id == id)
            .map(|(g, _)| g.clone())
    }
}

/// Native notifications through notify-rust, raised one at a time by a task.
pub struct NativeNotifier {
    tx: tokio::sync::mpsc::UnboundedSender<OsNotification>,
    status: Arc<Mutex<NotifierStatus>>,
}

impl NativeNotifier {
    /// Starts the notifier task on Tauri's runtime.
    pub fn start(on_open: OnOpen) -> NativeNotifier {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(NotifierStatus::default()));
        tauri::async_runtime::spawn(platform::run(rx, on_open, status.clone()));
        NativeNotifier { tx, status }
    }
}

impl Notifier for NativeNotifier {
    fn notify(&self, n: &OsNotification) {
        let _ = self.tx.send(n.clone());
    }
    fn status(&self) -> NotifierStatus {
        self.status.lock().unwrap().clone()
    }
}

fn set_status(status: &Mutex<NotifierStatus>, new: NotifierStatus) {
    let mut st = status.lock().unwrap();
    if *st != new {
        match &new.message {
            None => tracing::info!(server = ?new.server, "native notifications available"),
            Some(m) => tracing::warn!("native notifications unavailable: {m}"),
        }
        *st = new;
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
mod platform {
    use super::*;
    use notify_rust::{Hint, Notification, NotificationResponse};
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    enum Answer {
        Invoked(u32),
        Closed(u32),
    }

    fn no_server(e: impl std::fmt::Display) -> NotifierStatus {
        NotifierStatus {
            available: false,
            server: None,
            message: Some(format!(
                "no notification server on the session bus ({e}); notifications appear in the \
                 app only"
            )),
        }
    }

    pub async fn run(
        mut rx: UnboundedReceiver<OsNotification>,
        on_open: OnOpen,
        status: Arc<Mutex<NotifierStatus>>,
    ) {
        let probe = tauri::async_runtime::spawn_blocking(notify_rust::get_server_information)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        set_status(
            &status,
            match probe {
                Ok(info) => NotifierStatus {
                    available: true,
                    server: Some(format!("{} {}", info.name, info.version)),
                    message: None,
                },
                Err(e) => no_server(e),
            },
        );
        let (answers_tx, mut answers) = unbounded_channel::<Answer>();
        let mut groups = Groups::default();
        // The task listening for the answer to each group's live notification.
        let mut waiters: HashMap<String, tauri::async_runtime::JoinHandle<()>> = HashMap::new();
        loop {
            tokio::select! {
                n = rx.recv() => {
                    let Some(n) = n else { break };
                    show(&n, &mut groups, &mut waiters, &answers_tx, &status).await;
                }
                Some(a) = answers.recv() => match a {
                    Answer::Invoked(id) => {
                        if let Some(target) = groups.target(id) {
                            tracing::info!(id, ?target, "notification clicked");
                            on_open(target);
                        }
                        forget(id, &mut groups, &mut waiters);
                    }
                    Answer::Closed(id) => forget(id, &mut groups, &mut waiters),
                }
            }
        }
    }

    fn forget(
        id: u32,
        groups: &mut Groups,
        waiters: &mut HashMap<String, tauri::async_runtime::JoinHandle<()>>,
    ) {
        if let Some(g) = groups.group_of(id) {
            waiters.remove(&g);
        }
        groups.closed(id);
    }

    async fn show(
        n: &OsNotification,
        groups: &mut Groups,
        waiters: &mut HashMap<String, tauri::async_runtime::JoinHandle<()>>,
        answers: &UnboundedSender<Answer>,
        status: &Mutex<NotifierStatus>,
    ) {
        let plan = groups.plan(n);
        let mut note = Notification::new();
        note.appname("Papo")
            .summary(&plan.summary)
            .body(&plan.body)
            .icon("papo")
            .action("default", "Open")
            .hint(Hint::Category(
                match n.target {
                    Target::Conversation { .. } => "im.received",
                    _ => "presence",
                }
                .into(),
            ));
        if plan.replaces != 0 {
            note.id(plan.replaces);
        }
        match note.show_async().await {
            Ok(handle) => {
                let id = handle.id();
                if !status.lock().unwrap().available {
                    set_status(
                        status,
                        NotifierStatus {
                            available: true,
                            server: None,
                            message: None,
                        },
                    );
                }
                groups.shown(n, id);
                let answers = answers.clone();
                let waiter = tauri::async_runtime::spawn(async move {
                    handle
                        .wait_for_action_async(|r| {
                            let _ = answers.send(match r {
                                NotificationResponse::Closed(_) => Answer::Closed(id),
                                _ => Answer::Invoked(id),
                            });
                        })
                        .await;
                });
                // The replaced notification's waiter listens on an older connection.
                if let Some(old) = waiters.insert(n.group.clone(), waiter) {
                    old.abort();
                }
            }
            Err(e) => set_status(status, no_server(e)),
        }
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
mod platform {
    use super::*;
    use notify_rust::Notification;
    use tokio::sync::mpsc::UnboundedReceiver;

    /// macOS / Windows: one toast per notification (no replacement there); clicking it brings
    /// the app forward, the target is not reported back.
    pub async fn run(
        mut rx: UnboundedReceiver<OsNotification>,
        _on_open: OnOpen,
        status: Arc<Mutex<NotifierStatus>>,
    ) {
        set_status(
            &status,
            NotifierStatus {
                available: true,
                server: None,
                message: None,
            },
        );
        while let Some(n) = rx.recv().await {
            let shown = tauri::async_runtime::spawn_blocking(move || {
                Notification::new()
                    .appname("Papo")
                    .summary(&n.title)
                    .body(&n.body)
                    .show()
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            if let Err(e) = shown {
                set_status(
                    &status,
                    NotifierStatus {
                        available: false,
                        server: None,
                        message: Some(format!("notifications cannot be shown: {e}")),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm(text: &str) -> OsNotification {
        OsNotification {
            title: "joao".into(),
            body: text.into(),
            target: Target::Conversation {
                id: "dm:joao".into(),
            },
            group: "dm:joao".into(),
        }
    }

    #[test]
    fn a_burst_in_one_group_replaces_one_notification_and_counts() {
        let mut g = Groups::default();
        let p = g.plan(&dm("1"));
        assert_eq!((p.replaces, p.summary.as_str()), (0, "joao"));
        g.shown(&dm("1"), 7);
        for i in 2..=20 {
            let p = g.plan(&dm(&i.to_string()));
            assert_eq!(p.replaces, 7);
            assert_eq!(p.summary, format!("joao ({i})"));
            assert_eq!(p.body, i.to_string());
            g.shown(&dm(&i.to_string()), 7);
        }
        assert_eq!(
            g.target(7),
            Some(Target::Conversation {
                id: "dm:joao".into()
            })
        );
    }

    #[test]
    fn other_groups_are_separate_and_a_closed_group_starts_afresh() {
        let mut g = Groups::default();
        g.shown(&dm("1"), 7);
        let like = OsNotification {
            title: "joao liked your post".into(),
            body: "hi".into(),
            target: Target::Post { post_id: 3 },
            group: "post:3".into(),
        };
        assert_eq!(g.plan(&like).replaces, 0);
        g.shown(&like, 8);
        g.closed(7);
        assert_eq!(g.plan(&dm("2")).replaces, 0);
        assert_eq!(g.plan(&like).replaces, 8);
        // The server may hand out a new id instead of replacing: the count restarts.
        g.shown(&like, 9);
        assert_eq!(g.plan(&like).replaces, 9);
    }
}
