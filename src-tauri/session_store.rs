//! Where the shell keeps the session tokens.
//!
//! For now the session lives in memory only (sign in once per run); the cache stays readable
//! offline after a restart. The OS keyring implementation (`keyring` crate) slots in here as
//! another [`SessionStore`] — never a plain file.

use papo_client::tokens::{MemorySessionStore, SessionStore};
use std::sync::Arc;

/// The session store the app uses.
pub fn session_store() -> Arc<dyn SessionStore> {
    Arc::new(MemorySessionStore::default())
}
