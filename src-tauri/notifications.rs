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
//! - **Withdrawal.** A notification that announced a message (a DM, a mention) goes when that
//!   message is deleted (`CoreEvent::Withdraw`): closed on the freedesktop bus if it stood for
//!   that message alone, shown again without it ("joao (19)", the previous text) if it stood
//!   for a burst. macOS and Windows toasts cannot be taken back through notify-rust; there the
//!   app only shows the deletion in place.
//! - **No notification server.** Sending fails; the app keeps working, [`NotifierStatus`] says
//!   so (Settings shows it) and the next notification tries again.

use papo_client::policy::{OsNotification, Target};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub trait Notifier: Send + Sync {
    fn notify(&self, notification: &OsNotification);
    /// The message `message_id` was deleted: withdraw what announced it.
    fn withdraw(&self, message_id: i64);
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
    fn withdraw(&self, message_id: i64) {
        tracing::info!(message_id, "notification withdrawn");
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
    title: String,
    body: String,
    /// The messages it stands for, oldest first, with their text (the newest
    /// [`MAX_TRACKED`]): what a withdrawal shows when the newest one goes.
    messages: Vec<(i64, String)>,
}

/// Messages remembered per live notification for withdrawals.
const MAX_TRACKED: usize = 100;

/// What a deleted message does to the notification that announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawal {
    /// It stood for that message alone: close notification `id`.
    Close { id: u32 },
    /// It stood for a burst: show it again (replacing `plan.replaces`) without that message.
    Replace { plan: Plan },
}

/// A group's title, counting the burst it stands for.
fn summary(title: &str, count: u32) -> String {
    if count > 1 {
        format!("{title} ({count})")
    } else {
        title.to_string()
    }
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
            summary: summary(&n.title, count),
            body: n.body.clone(),
        }
    }

    /// The server showed `n` under `id`.
    pub fn shown(&mut self, n: &OsNotification, id: u32) {
        let (count, mut messages) = match self.live.remove(&n.group) {
            Some(l) if l.id == id => (l.count + 1, l.messages),
            _ => (1, Vec::new()),
        };
        if let Some(m) = n.message_id {
            messages.push((m, n.body.clone()));
            if messages.len() > MAX_TRACKED {
                messages.remove(0);
            }
        }
        self.live.insert(
            n.group.clone(),
            Live {
                id,
                count,
                target: n.target.clone(),
                title: n.title.clone(),
                body: n.body.clone(),
                messages,
            },
        );
    }

    /// Message `message_id` was deleted: what to do with the live notification that stands
    /// for it, if any (its group's state is updated already).
    pub fn withdraw(&mut self, message_id: i64) -> Option<Withdrawal> {
        let (group, live) = self
            .live
            .iter_mut()
            .find(|(_, l)| l.messages.iter().any(|(m, _)| *m == message_id))?;
        live.messages.retain(|(m, _)| *m != message_id);
        live.count = live.count.saturating_sub(1);
        if live.count == 0 {
            let id = live.id;
            let group = group.clone();
            self.live.remove(&group);
            return Some(Withdrawal::Close { id });
        }
        if let Some((_, body)) = live.messages.last() {
            live.body = body.clone();
        }
        Some(Withdrawal::Replace {
            plan: Plan {
                replaces: live.id,
                summary: summary(&live.title, live.count),
                body: live.body.clone(),
            },
        })
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

/// What the notifier task is asked to do, in order.
pub enum Cmd {
    Show(OsNotification),
    Withdraw(i64),
}

/// Native notifications through notify-rust, raised one at a time by a task.
pub struct NativeNotifier {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
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
        let _ = self.tx.send(Cmd::Show(n.clone()));
    }
    fn withdraw(&self, message_id: i64) {
        let _ = self.tx.send(Cmd::Withdraw(message_id));
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
    use notify_rust::{Hint, Notification, NotificationHandle, NotificationResponse};
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

    /// The task's state: the groups, and per live notification its handle (to close it) and
    /// per group the task waiting for its answer.
    #[derive(Default)]
    struct Live {
        groups: Groups,
        handles: HashMap<u32, Arc<NotificationHandle>>,
        waiters: HashMap<String, tauri::async_runtime::JoinHandle<()>>,
    }

    pub async fn run(
        mut rx: UnboundedReceiver<Cmd>,
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
        let mut live = Live::default();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Cmd::Show(n)) => {
                        let plan = live.groups.plan(&n);
                        if let Some(id) = raise(&plan, &n.target, &answers_tx, &status, &mut live, &n.group).await {
                            live.groups.shown(&n, id);
                        }
                    }
                    Some(Cmd::Withdraw(message_id)) => match live.groups.withdraw(message_id) {
                        None => {}
                        Some(Withdrawal::Close { id }) => {
                            tracing::info!(id, message_id, "notification withdrawn: closed");
                            live.groups.closed(id);
                            if let Some(h) = live.handles.remove(&id) {
                                h.close_async().await;
                            }
                        }
                        Some(Withdrawal::Replace { plan }) => {
                            tracing::info!(id = plan.replaces, message_id, "notification withdrawn: shown without it");
                            let id = plan.replaces;
                            if let (Some(group), Some(target)) = (live.groups.group_of(id), live.groups.target(id)) {
                                raise(&plan, &target, &answers_tx, &status, &mut live, &group).await;
                            }
                        }
                    },
                },
                Some(a) = answers.recv() => match a {
                    Answer::Invoked(id) => {
                        if let Some(target) = live.groups.target(id) {
                            tracing::info!(id, ?target, "notification clicked");
                            on_open(target);
                        }
                        forget(id, &mut live);
                    }
                    Answer::Closed(id) => forget(id, &mut live),
                }
            }
        }
    }

    fn forget(id: u32, live: &mut Live) {
        if let Some(g) = live.groups.group_of(id) {
            live.waiters.remove(&g);
        }
        live.handles.remove(&id);
        live.groups.closed(id);
    }

    /// Sends `plan` to the notification server (as `group`'s notification); returns the id
    /// the server gave it, and listens for its answer.
    async fn raise(
        plan: &Plan,
        target: &Target,
        answers: &UnboundedSender<Answer>,
        status: &Mutex<NotifierStatus>,
        live: &mut Live,
        group: &str,
    ) -> Option<u32> {
        let mut note = Notification::new();
        note.appname("Papo")
            .summary(&plan.summary)
            .body(&plan.body)
            .icon("papo")
            .action("default", "Open")
            .hint(Hint::Category(
                match target {
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
                let handle = Arc::new(handle);
                let answers = answers.clone();
                let waiting = handle.clone();
                let waiter = tauri::async_runtime::spawn(async move {
                    waiting
                        .wait_for_action_async(|r| {
                            let _ = answers.send(match r {
                                NotificationResponse::Closed(_) => Answer::Closed(id),
                                _ => Answer::Invoked(id),
                            });
                        })
                        .await;
                });
                // The replaced notification's waiter listens on an older connection.
                if let Some(old) = live.waiters.insert(group.to_string(), waiter) {
                    old.abort();
                }
                if plan.replaces != 0 && plan.replaces != id {
                    live.handles.remove(&plan.replaces);
                }
                live.handles.insert(id, handle);
                Some(id)
            }
            Err(e) => {
                set_status(status, no_server(e));
                None
            }
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
        mut rx: UnboundedReceiver<Cmd>,
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
        while let Some(cmd) = rx.recv().await {
            // A toast cannot be taken back through notify-rust here.
            let Cmd::Show(n) = cmd else { continue };
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
            message_id: text.parse().ok(),
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
            message_id: None,
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

    #[test]
    fn a_deleted_message_closes_its_own_notification_and_leaves_a_burst_without_it() {
        let mut g = Groups::default();
        // One DM: its deletion closes the notification, and the group starts afresh.
        g.shown(&dm("1"), 7);
        assert_eq!(g.withdraw(99), None, "a message no notification announced");
        assert_eq!(g.withdraw(1), Some(Withdrawal::Close { id: 7 }));
        assert_eq!(g.plan(&dm("2")).replaces, 0);
        assert_eq!(g.withdraw(1), None, "withdrawn once");

        // A burst of 3: deleting the newest shows the burst again, counted without it and with
        // the text before it; deleting one in the middle keeps the newest text.
        for i in 2..=4 {
            g.shown(&dm(&i.to_string()), 8);
        }
        let replace = |replaces: u32, summary: &str, body: &str| {
            Some(Withdrawal::Replace {
                plan: Plan {
                    replaces,
                    summary: summary.into(),
                    body: body.into(),
                },
            })
        };
        assert_eq!(g.withdraw(4), replace(8, "joao (2)", "3"));
        assert_eq!(g.withdraw(2), replace(8, "joao", "3"));
        // The next DM replaces it and counts from what is left.
        assert_eq!(g.plan(&dm("5")).summary, "joao (2)");
        assert_eq!(g.withdraw(3), Some(Withdrawal::Close { id: 8 }));
        // Notifications without a message (a like) are never withdrawn.
        let like = OsNotification {
            title: "joao liked your post".into(),
            body: String::new(),
            target: Target::Post { post_id: 3 },
            group: "post:3".into(),
            message_id: None,
        };
        g.shown(&like, 9);
        assert_eq!(g.withdraw(0), None);
        assert_eq!(g.target(9), Some(Target::Post { post_id: 3 }));
    }
}
