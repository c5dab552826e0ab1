//! Where the shell keeps the session tokens: the OS keyring, never a plain file, never a log.
//!
//! - Linux: the Secret Service (GNOME Keyring, KWallet…) when one answers on the session bus,
//!   else the kernel key retention service (keyutils); macOS: the Keychain; Windows: the
//!   Credential Manager. One entry per server: service [`SERVICE`], account = the server URL,
//!   secret = the session (username, access and refresh tokens) as JSON.
//! - No keyring at all: the session lives in memory for this run only, and the UI says so
//!   ([`KeyringStatus::message`]). There is no plain-text fallback.
//!
//! Error texts never carry the secret: [`describe`] drops the payload of `BadEncoding` and
//! `Ambiguous`.

use papo_client::tokens::{MemorySessionStore, SessionStore, StoreError};
use papo_protocol::http::Session;
use serde::Serialize;
use std::sync::{Arc, OnceLock};

/// The keyring service name of every Papo entry.
pub const SERVICE: &str = "app.papo.desktop";

/// Which keyring holds the session (shown in Settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyringStatus {
    /// `secret-service`, `keyutils`, `keychain`, `credential-manager`; `None` when there is no
    /// keyring and sign-in lasts for this session only.
    pub backend: Option<String>,
    /// Why no keyring is used (for the UI), when `backend` is `None`.
    pub message: Option<String>,
}

static STATUS: OnceLock<KeyringStatus> = OnceLock::new();

/// Picks the keyring once per process. `PAPO_KEYRING=none` forces the no-keyring path (for
/// tests, and for people who do not want the session kept); on Linux `PAPO_KEYRING=keyutils`
/// skips the Secret Service.
pub fn status() -> &'static KeyringStatus {
    STATUS.get_or_init(|| {
        let st = probe();
        match &st.backend {
            Some(b) => tracing::info!(backend = %b, "session tokens are kept in the OS keyring"),
            None => tracing::warn!(
                reason = st.message.as_deref().unwrap_or(""),
                "no OS keyring: sign-in lasts for this session only"
            ),
        }
        st
    })
}

fn unavailable(message: String) -> KeyringStatus {
    KeyringStatus {
        backend: None,
        message: Some(message),
    }
}

fn probe() -> KeyringStatus {
    if std::env::var("PAPO_KEYRING").as_deref() == Ok("none") {
        return unavailable("the OS keyring is turned off (PAPO_KEYRING=none)".into());
    }
    probe_platform()
}

#[cfg(target_os = "linux")]
fn probe_platform() -> KeyringStatus {
    // The Secret Service first: a search for our (maybe missing) entry answers `NoEntry` when
    // the service is there, a platform error when nobody owns org.freedesktop.secrets.
    let ss = if std::env::var("PAPO_KEYRING").as_deref() == Ok("keyutils") {
        "skipped (PAPO_KEYRING=keyutils)".to_string()
    } else {
        match keyring::Entry::new(SERVICE, "papo-probe").and_then(|e| e.get_password()) {
            Ok(_) | Err(keyring::Error::NoEntry) => return backend("secret-service"),
            Err(e) => describe(&e),
        }
    };
    // Then the kernel keyring. `NoEntry` is ambiguous there (keyring 3 reports a refused write
    // as NoEntry), so write, read back and delete a probe entry.
    keyring::set_default_credential_builder(keyring::keyutils::default_credential_builder());
    let probe = format!("papo-probe-{}", std::process::id());
    let ku = keyring::Entry::new(SERVICE, &probe).and_then(|e| {
        e.set_password("probe")?;
        let back = e.get_password();
        let _ = e.delete_credential();
        back
    });
    match ku {
        Ok(v) if v == "probe" => backend("keyutils"),
        Ok(_) => unavailable(format!(
            "Secret Service: {ss}; kernel keyring: read back garbage"
        )),
        Err(e) => unavailable(format!(
            "no Secret Service on the session bus ({ss}) and no kernel keyring ({})",
            describe(&e)
        )),
    }
}

#[cfg(target_os = "macos")]
fn probe_platform() -> KeyringStatus {
    backend("keychain")
}

#[cfg(windows)]
fn probe_platform() -> KeyringStatus {
    backend("credential-manager")
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn probe_platform() -> KeyringStatus {
    match keyring::Entry::new(SERVICE, "papo-probe").and_then(|e| e.get_password()) {
        Ok(_) | Err(keyring::Error::NoEntry) => backend("secret-service"),
        Err(e) => unavailable(describe(&e)),
    }
}

fn backend(name: &str) -> KeyringStatus {
    KeyringStatus {
        backend: Some(name.into()),
        message: None,
    }
}

/// A keyring error as text, without any secret it may carry.
pub fn describe(e: &keyring::Error) -> String {
    match e {
        keyring::Error::BadEncoding(_) => "the stored secret is not UTF-8".into(),
        keyring::Error::Ambiguous(v) => format!("{} matching entries", v.len()),
        other => other.to_string(),
    }
}

/// The session store for `server_url`: the OS keyring when there is one, memory otherwise.
pub fn session_store(server_url: &str) -> Arc<dyn SessionStore> {
    if status().backend.is_none() {
        return Arc::new(MemorySessionStore::default());
    }
    match keyring::Entry::new(SERVICE, server_url) {
        Ok(entry) => Arc::new(KeyringSessionStore { entry }),
        Err(e) => {
            tracing::warn!(error = %describe(&e), "keyring entry refused; session in memory");
            Arc::new(MemorySessionStore::default())
        }
    }
}

/// The session in one OS keyring entry.
pub struct KeyringSessionStore {
    entry: keyring::Entry,
}

impl SessionStore for KeyringSessionStore {
    fn load(&self) -> Result<Option<Session>, StoreError> {
        match self.entry.get_password() {
            Ok(json) => match serde_json::from_str(&json) {
                Ok(s) => Ok(Some(s)),
                Err(_) => {
                    // Never echo the content: it may be a token.
                    tracing::warn!("unreadable session in the keyring; signing in again");
                    Ok(None)
                }
            },
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => {
                // A locked or vanished keyring must not stop the app: start signed out.
                tracing::warn!(error = %describe(&e), "could not read the keyring");
                Ok(None)
            }
        }
    }

    fn save(&self, session: &Session) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).map_err(|e| StoreError(e.to_string()))?;
        self.entry
            .set_password(&json)
            .map_err(|e| StoreError(describe(&e)))
    }

    fn clear(&self) -> Result<(), StoreError> {
        match self.entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(StoreError(describe(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_carry_the_secret() {
        let e = keyring::Error::BadEncoding(b"refresh-token-123".to_vec());
        assert!(!describe(&e).contains("refresh-token-123"));
    }

    /// Round trip through whatever keyring this machine has (run inside `keyctl session -` or
    /// with an unlocked gnome-keyring; `cargo test -p papo -- --ignored keyring`).
    #[test]
    #[ignore = "needs an OS keyring"]
    fn keyring_round_trip_and_delete() {
        let st = status();
        assert!(st.backend.is_some(), "no keyring: {:?}", st.message);
        let url = format!("test://papo-{}", std::process::id());
        let store = session_store(&url);
        let s = Session {
            username: "ana".into(),
            access_token: "acc".into(),
            expires_in: 900,
            refresh_token: "ref".into(),
        };
        assert_eq!(store.load().unwrap(), None);
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), Some(s));
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.clear().unwrap();
    }
}
