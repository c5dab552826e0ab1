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
    /// What the tray shows now: unread count, and the end of the quiet hours in force.
    shown: std::sync::Mutex<Shown>,
}

#[derive(Default)]
struct Shown {
    unread: Option<i64>,
    quiet_until: Option<u16>,
}

struct Labels {
    open: &'static str,
    dnd: &'static str,
    sign_out: &'static str,
    quit: &'static str,
    unread: &'static str,
    quiet_until: &'static str,
}

fn labels(locale: &str) -> Labels {
    // The same language rule as the core's notification titles.
    if papo_client::policy::Lang::of_locale(locale) == papo_client::policy::Lang::PtBr {
        Labels {
            open: "Abrir o Papo",
            dnd: "Não perturbe",
            sign_out: "Sair da conta",
            quit: "Encerrar",
            unread: "não lidas",
            quiet_until: "horário silencioso até",
        }
    } else {
        Labels {
            open: "Open Papo",
            dnd: "Do not disturb",
            sign_out: "Sign out",
            quit: "Quit",
            unread: "unread",
            quiet_until: "quiet hours until",
        }
    }
}

/// `HH:MM` of a minute after midnight.
fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The tooltip text for `n` unread messages, and the quiet hours in force (their end minute).
pub fn tooltip(n: i64, quiet_until: Option<u16>, locale: &str) -> String {
    let l = labels(locale);
    let mut t = String::from("Papo");
    if n > 0 {
        t += &format!(" — {n} {}", l.unread);
    }
    if let Some(end) = quiet_until {
        t += &format!(" — {} {}", l.quiet_until, clock(end));
    }
    t
}

/// The do-not-disturb menu item's label: it says when quiet hours are silencing notifications.
pub fn dnd_label(quiet_until: Option<u16>, locale: &str) -> String {
    let l = labels(locale);
    match quiet_until {
        Some(end) => format!("{} ({} {})", l.dnd, l.quiet_until, clock(end)),
        None => l.dnd.to_string(),
    }
}

impl Tray {
    /// Builds the tray; menu clicks go to `on_menu(app, item id)`.
    pub fn build(
        app: &AppHandle,
        dnd_on: bool,
        quiet_until: Option<u16>,
        locale: &str,
        on_menu: impl Fn(&AppHandle, &str) + Send + Sync + 'static,
    ) -> tauri::Result<Tray> {
        let l = labels(locale);
        let open = MenuItem::with_id(app, item::OPEN, l.open, true, None::<&str>)?;
        let dnd_text = dnd_label(quiet_until, locale);
        let dnd = CheckMenuItem::with_id(app, item::DND, dnd_text, true, dnd_on, None::<&str>)?;
        let sign_out = MenuItem::with_id(app, item::SIGN_OUT, l.sign_out, true, None::<&str>)?;
        let quit = MenuItem::with_id(app, item::QUIT, l.quit, true, None::<&str>)?;
        let sep = PredefinedMenuItem::separator(app)?;
        let menu = Menu::with_items(app, &[&open, &dnd, &sep, &sign_out, &quit])?;
        let icon = TrayIconBuilder::with_id(ID)
            .icon(Image::from_bytes(ICON)?)
            .tooltip(tooltip(0, quiet_until, locale))
            .menu(&menu)
            .show_menu_on_left_click(true)
            .on_menu_event(move |app, event| on_menu(app, event.id().as_ref()))
            .build(app)?;
        Ok(Tray {
            icon,
            dnd,
            shown: std::sync::Mutex::new(Shown {
                unread: None,
                quiet_until,
            }),
        })
    }

    /// Shows the unread count (only touches the tray when it changed).
    pub fn set_unread(&self, n: i64, locale: &str) {
        let mut shown = self.shown.lock().unwrap();
        if shown.unread == Some(n) {
            return;
        }
        let had = shown.unread.is_some_and(|m| m > 0);
        shown.unread = Some(n);
        let title = (n > 0).then(|| n.to_string());
        if let Err(e) = self.icon.set_title(title.as_deref()) {
            tracing::warn!("tray title: {e}");
        }
        let _ = self
            .icon
            .set_tooltip(Some(tooltip(n, shown.quiet_until, locale)));
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

    /// Shows whether quiet hours are silencing notifications now (`until`: their end minute);
    /// only touches the tray when that changed.
    pub fn set_quiet(&self, until: Option<u16>, locale: &str) {
        let mut shown = self.shown.lock().unwrap();
        if shown.quiet_until == until {
            return;
        }
        shown.quiet_until = until;
        let _ = self.dnd.set_text(dnd_label(until, locale));
        let n = shown.unread.unwrap_or(0);
        let _ = self.icon.set_tooltip(Some(tooltip(n, until, locale)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooltip_says_the_count_in_the_language() {
        assert_eq!(tooltip(0, None, "en-US"), "Papo");
        assert_eq!(tooltip(3, None, "en-US"), "Papo — 3 unread");
        assert_eq!(tooltip(2, None, "pt-BR"), "Papo — 2 não lidas");
        assert_eq!(
            tooltip(2, Some(7 * 60), "en-US"),
            "Papo — 2 unread — quiet hours until 07:00"
        );
        assert_eq!(
            tooltip(0, Some(6 * 60 + 5), "pt-BR"),
            "Papo — horário silencioso até 06:05"
        );
        let _ = (item::OPEN, item::DND, item::SIGN_OUT, item::QUIT);
    }

    #[test]
    fn the_dnd_item_says_when_quiet_hours_are_on() {
        assert_eq!(dnd_label(None, "en"), "Do not disturb");
        assert_eq!(
            dnd_label(Some(7 * 60), "en"),
            "Do not disturb (quiet hours until 07:00)"
        );
        assert_eq!(
            dnd_label(Some(0), "pt-BR"),
            "Não perturbe (horário silencioso até 00:00)"
        );
    }
}
