//! Where the access token comes from, and where the session is kept.
//!
//! The core never stores tokens itself: it asks a [`TokenSource`] for the access token and for
//! a refresh. [`SessionTokens`] is the usual source: it talks to the account API and keeps the
//! session in a [`SessionStore`] — the OS keyring in the desktop shell, a 0600 file for the CLI
//! ([`FileSessionStore`]), memory in tests.

use crate::api::{Api, ApiError};
use crate::secret::SecretString;
use async_trait::async_trait;
use papo_protocol::http::{Credentials, Session};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Why no fresh token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The server refused the refresh token: the user must sign in again.
    #[error("session refused: {0}")]
    Refused(String),
    /// The refresh could not be done now (network); try again later.
    #[error("token refresh unavailable: {0}")]
    Unavailable(String),
    /// The account was deleted (from another device): the session is forgotten, and what is
    /// kept of the account must be erased.
    #[error("this account was deleted")]
    AccountDeleted,
    /// The account is suspended by a moderator: the session is forgotten (the cache stays).
    #[error("this account is suspended by a moderator")]
    AccountSuspended,
}

/// Supplies access tokens to the connection supervisor.
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// The current access token, or `None` when signed out.
    async fn access_token(&self) -> Option<SecretString>;
    /// Obtains a new access token (after the server said the current one expired, or ahead
    /// of its expiry).
    async fn refresh(&self) -> Result<SecretString, TokenError>;
    /// When the current access token should be refreshed, on the monotonic (tokio) clock, so
    /// that no connection is ever opened with an expired one. `None` when unknown: signed out,
    /// or a session loaded from the store, whose age cannot be known (the server's
    /// `token_expired` refusal at connect covers that one; after it, the age is known).
    fn refresh_due(&self) -> Option<Instant> {
        None
    }
    /// Forgets the session here without asking the server (its account is gone).
    fn forget(&self) {}
}

/// How long after receiving a token with this `expires_in` to refresh it: at 80 % of its
/// life, and never later than `expires_in − 60 s` (protocol §1) unless that is under half of it
/// (very short lifetimes, tests).
pub fn refresh_after(expires_in: u64) -> Duration {
    let life = Duration::from_secs(expires_in);
    let protocol = life.saturating_sub(Duration::from_secs(60)).max(life / 2);
    (life * 4 / 5).min(protocol)
}

/// A failure of a [`SessionStore`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

/// Persists the session (both tokens) between runs.
pub trait SessionStore: Send + Sync + 'static {
    fn load(&self) -> Result<Option<Session>, StoreError>;
    fn save(&self, session: &Session) -> Result<(), StoreError>;
    fn clear(&self) -> Result<(), StoreError>;
}

/// Keeps the session in memory only.
#[derive(Default)]
pub struct MemorySessionStore(Mutex<Option<Session>>);

impl SessionStore for MemorySessionStore {
    fn load(&self) -> Result<Option<Session>, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn save(&self, session: &Session) -> Result<(), StoreError> {
        *self.0.lock().unwrap() = Some(session.clone());
        Ok(())
    }
    fn clear(&self) -> Result<(), StoreError> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

/// **CLI only.** Keeps the session in a JSON file created with mode 0600. The desktop shell must
/// use the OS keyring instead (implement [`SessionStore`] over it).
pub struct FileSessionStore {
    path: PathBuf,
}

impl FileSessionStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSessionStore { path: path.into() }
    }
}

impl SessionStore for FileSessionStore {
    fn load(&self) -> Result<Option<Session>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("unreadable session file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }

    fn save(&self, session: &Session) -> Result<(), StoreError> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError(e.to_string()))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts.open(&tmp).map_err(|e| StoreError(e.to_string()))?;
        let bytes = serde_json::to_vec(session).map_err(|e| StoreError(e.to_string()))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| StoreError(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| StoreError(e.to_string()))
    }

    fn clear(&self) -> Result<(), StoreError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }
}

/// The usual [`TokenSource`]: the account API plus a [`SessionStore`].
pub struct SessionTokens {
    api: Api,
    store: Arc<dyn SessionStore>,
    current: Mutex<Option<Session>>,
    /// When the current access token is due for a refresh (known only for tokens received by
    /// this process: counted from when the answer arrived, on the monotonic clock).
    due: Mutex<Option<Instant>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl SessionTokens {
    /// Loads any saved session from the store.
    pub fn new(api: Api, store: Arc<dyn SessionStore>) -> Result<Self, StoreError> {
        let current = store.load()?;
        Ok(SessionTokens {
            api,
            store,
            current: Mutex::new(current),
            due: Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The signed-in username, if any.
    pub fn username(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.username.clone())
    }

    /// Creates an account and keeps its session.
    pub async fn register(&self, creds: &Credentials) -> Result<String, ApiError> {
        let session = self.api.register(creds).await?;
        self.keep(session)
    }

    /// Signs in and keeps the session.
    pub async fn login(&self, creds: &Credentials) -> Result<String, ApiError> {
        let session = self.api.login(creds).await?;
        self.keep(session)
    }

    /// Revokes the refresh token (best effort) and forgets the session.
    pub async fn sign_out(&self) {
        let session = self.current.lock().unwrap().take();
        *self.due.lock().unwrap() = None;
        if let Some(s) = session {
            if let Err(e) = self.api.logout(&s.refresh_token).await {
                tracing::warn!(error = %e, "logout request failed; forgetting the session anyway");
            }
        }
        if let Err(e) = self.store.clear() {
            tracing::warn!(error = %e, "could not clear the stored session");
        }
    }

    fn keep(&self, session: Session) -> Result<String, ApiError> {
        let username = session.username.clone();
        if let Err(e) = self.store.save(&session) {
            tracing::warn!(error = %e, "could not store the session; it lives in memory only");
        }
        *self.due.lock().unwrap() = Some(Instant::now() + refresh_after(session.expires_in));
        *self.current.lock().unwrap() = Some(session);
        Ok(username)
    }
}

#[async_trait]
impl TokenSource for SessionTokens {
    async fn access_token(&self) -> Option<SecretString> {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| SecretString::from(s.access_token.clone()))
    }

    async fn refresh(&self) -> Result<SecretString, TokenError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let refresh_token = match self.current.lock().unwrap().as_ref() {
            Some(s) => s.refresh_token.clone(),
            None => return Err(TokenError::Refused("not signed in".into())),
        };
        match self.api.refresh(&refresh_token).await {
            Ok(session) => {
                let token = SecretString::from(session.access_token.clone());
                let _ = self.keep(session);
                Ok(token)
            }
            Err(e) if e.is_refusal() => {
                self.forget();
                if e.code() == Some(papo_protocol::ErrorCode::AccountDeleted) {
                    return Err(TokenError::AccountDeleted);
                }
                if e.code() == Some(papo_protocol::ErrorCode::AccountSuspended) {
                    return Err(TokenError::AccountSuspended);
                }
                Err(TokenError::Refused(e.to_string()))
            }
            Err(e) => Err(TokenError::Unavailable(e.to_string())),
        }
    }

    fn refresh_due(&self) -> Option<Instant> {
        *self.due.lock().unwrap()
    }

    fn forget(&self) {
        *self.current.lock().unwrap() = None;
        *self.due.lock().unwrap() = None;
        if let Err(e) = self.store.clear() {
            tracing::warn!(error = %e, "could not clear the stored session");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            username: "ana".into(),
            access_token: "acc".into(),
            expires_in: 900,
            refresh_token: "ref".into(),
        }
    }

    #[test]
    fn refresh_comes_at_80_percent_and_before_the_last_minute() {
        assert_eq!(refresh_after(900), Duration::from_secs(720));
        assert_eq!(refresh_after(3600), Duration::from_secs(2880));
        // 80 % of 200 s is 160 s, the protocol's latest point is 140 s.
        assert_eq!(refresh_after(200), Duration::from_secs(140));
        assert_eq!(refresh_after(60), Duration::from_secs(30));
        assert_eq!(refresh_after(0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_received_token_is_due_at_80_percent_a_loaded_one_is_unknown() {
        let store = Arc::new(MemorySessionStore::default());
        store.save(&session()).unwrap();
        let tokens = SessionTokens::new(Api::new("http://127.0.0.1:9"), store).unwrap();
        assert_eq!(
            tokens.refresh_due(),
            None,
            "age of a stored token is unknown"
        );
        let now = Instant::now();
        tokens.keep(session()).unwrap();
        assert_eq!(tokens.refresh_due(), Some(now + Duration::from_secs(720)));
        tokens.sign_out().await;
        assert_eq!(tokens.refresh_due(), None);
    }

    #[tokio::test]
    async fn debug_of_the_token_holders_never_shows_a_token() {
        use crate::secret::ExposeSecret;
        let access = "v1.eyJ1aWQiOjF9.c2lnbmF0dXJl";
        let refresh = "0123456789abcdef0123456789abcdef";
        let s = Session {
            access_token: access.into(),
            refresh_token: refresh.into(),
            ..session()
        };
        let store = Arc::new(MemorySessionStore::default());
        store.save(&s).unwrap();
        let tokens = SessionTokens::new(Api::new("http://127.0.0.1:9"), store.clone()).unwrap();
        let token = tokens.access_token().await.unwrap();
        assert_eq!(token.expose_secret(), access);
        for shown in [
            format!("{token:?}"),
            format!("{:?}", Some(token.clone())),
            format!("{s:?}"),
            format!("{:?}", store.load().unwrap()),
        ] {
            assert!(!shown.contains(access), "{shown}");
            assert!(!shown.contains(refresh), "{shown}");
            assert!(
                shown.contains("REDACTED") || shown.contains("redacted"),
                "{shown}"
            );
        }
    }

    #[test]
    fn file_store_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSessionStore::new(dir.path().join("session.json"));
        assert!(store.load().unwrap().is_none());
        store.save(&session()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("session.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(store.load().unwrap(), Some(session()));
        store.clear().unwrap();
        assert!(store.load().unwrap().is_none());
    }
}
