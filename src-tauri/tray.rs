//! The tray icon: unread count (title on Linux, tooltip elsewhere, and an icon variant with a
//! dot), and a menu: open Papo, do-not-disturb, sign out, quit.
//!
//! On Linux the icon is a StatusNotifierItem (libayatana-appindicator) on the session bus,
//! `/org/ayatana/NotificationItem/tray_icon_tray_app_main`, its menu exported over
//! `com.canonical.dbusmenu`; the E2E reads the label and clicks the items there.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Wry};

pub const ID: &str = "main";
const ICON: &[u8] = include_bytes!("../icons/tray.png");
const ICON_UNREAD: &[u8] = include_bytes!("../icons/tray-unread.png");

/// Menu item ids.
pub mod item {
    pub const OPEN: &str = "open";
    pub const DND: &str = "dnd";
    pub const SIGN_OUT: &str = "sign_out";
    pub const QUIT: &str = "quit";
}

pub struct Tray {
    icon: TrayIcon<Wry>,
    dnd: CheckMenuItem<Wry>,
    unread: std::sync::Mutex<Option<i64>>,
}

struct Labels {
    open: &'static str,
    dnd: &'static str,
    sign_out: &'static str,
    quit: &'static str,
    unread: &'static str,
}

fn labels(locale: &str) -> Labels {
    if locale.to_lowercase().starts_with("pt") {
        Labels {
            open: "Abrir o Papo",
            dnd: "Não perturbe",
            sign_out: "Sair da conta",
            quit: "Encerrar",
            unread: "não lidas",
        }
    } else {
        Labels {
            open: "Open Papo",
            dnd: "Do not disturb",
            sign_out: "Sign out",
            quit: "Quit",
            unread: "unread",
        }
    }
}

/// The tooltip / title text for `n` unread messages.
pub fn tooltip(n: i64, locale: &str) -> String {
    if n > 0 {
        format!("Papo — {n} {}", labels(locale).unread)
    } else {
        "Papo".into()
    }
}

impl Tray {
    /// Builds the tray; menu clicks go to `on_menu(app, item id)`.
    pub fn build(
        app: &AppHandle,
        dnd_on: bool,
        locale: &str,
        on_menu: impl Fn(&AppHandle, &str) + Send + Sync + 'static,
    ) -> tauri::Result<Tray> {
        let l = labels(locale);
        let open = MenuItem::with_id(app, item::OPEN, l.open, true, None::<&str>)?;
        let dnd = CheckMenuItem::with_id(app, item::DND, l.dnd, true, dnd_on, None::<&str>)?;
        let sign_out = MenuItem::with_id(app, item::SIGN_OUT, l.sign_out, true, None::<&str>)?;
        let quit = MenuItem::with_id(app, item::QUIT, l.quit, true, None::<&str>)?;
        let sep = PredefinedMenuItem::separator(app)?;
        let menu = Menu::with_items(app, &[&open, &dnd, &sep, &sign_out, &quit])?;
        let icon = TrayIconBuilder::with_id(ID)
            .icon(Image::from_bytes(ICON)?)
            .tooltip("Papo")
            .menu(&menu)
            .show_menu_on_left_click(true)
            .on_menu_event(move |app, event| on_menu(app, event.id().as_ref()))
            .build(app)?;
        Ok(Tray {
            icon,
            dnd,
            unread: std::sync::Mutex::new(None),
        })
    }

    /// Shows the unread count (only touches the tray when it changed).
    pub fn set_unread(&self, n: i64, locale: &str) {
        let mut last = self.unread.lock().unwrap();
        if *last == Some(n) {
            return;
        }
        let had = last.is_some_and(|m| m > 0);
        *last = Some(n);
        let title = (n > 0).then(|| n.to_string());
        if let Err(e) = self.icon.set_title(title.as_deref()) {
            tracing::warn!("tray title: {e}");
        }
        let _ = self.icon.set_tooltip(Some(tooltip(n, locale)));
        if had != (n > 0) {
            let bytes = if n > 0 { ICON_UNREAD } else { ICON };
            if let Err(e) = Image::from_bytes(bytes).and_then(|i| self.icon.set_icon(Some(i))) {
                tracing::warn!("tray icon: {e}");
            }
        }
    }

    /// Keeps the menu's check mark in line with the setting.
    pub fn set_dnd(&self, on: bool) {
        let _ = self.dnd.set_checked(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooltip_says_the_count_in_the_language() {
        assert_eq!(tooltip(0, "en-US"), "Papo");
        assert_eq!(tooltip(3, "en-US"), "Papo — 3 unread");
        assert_eq!(tooltip(2, "pt-BR"), "Papo — 2 não lidas");
        let _ = (item::OPEN, item::DND, item::SIGN_OUT, item::QUIT);
    }
}
