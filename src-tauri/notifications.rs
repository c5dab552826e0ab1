//! OS notifications. The core's policy decides *whether* an event deserves one (and emits
//! `CoreEvent::Notify`); this module only raises it. Today it logs; the notify-rust
//! implementation (grouped per conversation, click → `UiEvent::Open`) replaces [`LogNotifier`].

use papo_client::policy::OsNotification;

pub trait Notifier: Send + Sync {
    fn notify(&self, notification: &OsNotification);
}

/// Logs the notification (until native notifications land).
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, n: &OsNotification) {
        tracing::info!(group = %n.group, title = %n.title, "notification");
    }
}
