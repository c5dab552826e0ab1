//! The shell's settings file: notification settings, language, server URL. Not secret (the
//! tokens never go here); a JSON file in the data directory, written atomically.

use crate::ui_types::{Language, Settings};
use std::path::{Path, PathBuf};

pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    pub fn new(dir: &Path) -> Self {
        SettingsFile {
            path: dir.join("settings.json"),
        }
    }

    /// The stored settings, or defaults when missing or unreadable.
    pub fn load(&self) -> Settings {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(defaults)
    }

    pub fn save(&self, settings: &Settings) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(settings)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

pub fn defaults() -> Settings {
    Settings {
        notifications: papo_client::NotificationSettings::default(),
        language: Language::System,
        notifications_seen_at: 0,
        server_url: None,
        close_to_tray: true,
        start_minimized: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_save_and_load_and_default_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = SettingsFile::new(dir.path());
        assert_eq!(file.load(), defaults());
        let mut s = defaults();
        s.language = Language::PtBr;
        s.notifications.muted.insert("dm:joao".into());
        file.save(&s).unwrap();
        assert_eq!(file.load(), s);
        assert!(file.load().notifications.muted.contains("dm:joao"));
    }

    #[test]
    fn a_settings_file_from_before_the_tray_gets_the_tray_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = serde_json::to_value(defaults()).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("close_to_tray");
        o.remove("start_minimized");
        std::fs::write(dir.path().join("settings.json"), old.to_string()).unwrap();
        let s = SettingsFile::new(dir.path()).load();
        assert!(s.close_to_tray && !s.start_minimized);
    }
}
