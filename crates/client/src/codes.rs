//! The machine codes of core errors, one typed enum from the core to the UI.
//!
//! A [`CoreErrorCode`] is either the server's own [`ErrorCode`] (passed through as the server
//! sent it) or a [`ClientErrorCode`] for failures the core finds itself. Both serialize to the
//! same bare snake_case strings the UI has always received (`invalid_credentials`,
//! `unreachable`, ...); the TypeScript bindings carry the union, so the UI cannot name a code
//! that does not exist.

use crate::api::ApiError;
use crate::compose::ComposeError;
use crate::CoreError;
use papo_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The stable machine code of a [`CoreError`], as the UI receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(untagged)]
pub enum CoreErrorCode {
    /// The server refused the request with this code.
    Server(ErrorCode),
    /// The core failed before (or without) a server answer.
    Client(ClientErrorCode),
}

/// Codes for failures the core finds itself. None of them spells a server [`ErrorCode`], so a
/// code string names exactly one [`CoreErrorCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ClientErrorCode {
    /// The server could not be reached, or answered without an error body.
    Unreachable,
    /// The local SQLite cache failed.
    Cache,
    /// The OS keyring (where the session is kept) failed.
    SessionStore,
    /// The action needs a signed-in session.
    NotSignedIn,
    /// An argument is not of the expected form (a conversation id, a client id, ...).
    InvalidInput,
    /// `/msg` without a user or a text.
    MsgUsage,
    /// Nothing to send.
    Empty,
    /// The message a reply quotes was deleted meanwhile.
    ReplyGone,
    /// The `/admin` connection is not open (or closed before the answer came).
    AdminClosed,
}

impl From<ErrorCode> for CoreErrorCode {
    fn from(c: ErrorCode) -> Self {
        CoreErrorCode::Server(c)
    }
}

impl From<ClientErrorCode> for CoreErrorCode {
    fn from(c: ClientErrorCode) -> Self {
        CoreErrorCode::Client(c)
    }
}

impl fmt::Display for CoreErrorCode {
    /// The wire string (`invalid_credentials`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => f.write_str(&s),
            _ => Err(fmt::Error),
        }
    }
}

impl CoreError {
    /// The stable machine code for the UI.
    pub fn code(&self) -> CoreErrorCode {
        match self {
            CoreError::Cache(_) => ClientErrorCode::Cache.into(),
            CoreError::Api(e) => e.core_code(),
            CoreError::Store(_) => ClientErrorCode::SessionStore.into(),
            CoreError::NotSignedIn => ClientErrorCode::NotSignedIn.into(),
            CoreError::Invalid(_) => ClientErrorCode::InvalidInput.into(),
            CoreError::Compose(e) => e.code().into(),
            CoreError::Admin(crate::admin::AdminError::Closed) => {
                ClientErrorCode::AdminClosed.into()
            }
            CoreError::Admin(crate::admin::AdminError::Refused(e)) => e.code.into(),
        }
    }
}

impl ApiError {
    /// The server's code, or `unreachable` when it gave none.
    pub fn core_code(&self) -> CoreErrorCode {
        match self.code() {
            Some(c) => c.into(),
            None => ClientErrorCode::Unreachable.into(),
        }
    }
}

impl ComposeError {
    /// The stable machine code.
    pub fn code(&self) -> ClientErrorCode {
        match self {
            ComposeError::MsgUsage => ClientErrorCode::MsgUsage,
            ComposeError::Empty => ClientErrorCode::Empty,
            ComposeError::BadConversation(_) => ClientErrorCode::InvalidInput,
            ComposeError::ReplyGone => ClientErrorCode::ReplyGone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheError;
    use crate::tokens::StoreError;
    use papo_protocol::ErrorBody;

    /// The strings the UI keys its messages on (`ui/src/lib/errors.ts`); changing one is a
    /// change the UI must follow.
    #[test]
    fn every_core_error_maps_to_the_code_the_ui_expects() {
        let server = |code| {
            CoreError::Api(ApiError::Server {
                status: 400,
                error: ErrorBody::new(code, "refused"),
            })
        };
        let cases: Vec<(CoreError, &str)> = vec![
            (CoreError::Cache(CacheError::Corrupt("x".into())), "cache"),
            (
                CoreError::Api(ApiError::Network("down".into())),
                "unreachable",
            ),
            (
                CoreError::Api(ApiError::Unexpected { status: 502 }),
                "unreachable",
            ),
            (server(ErrorCode::InvalidCredentials), "invalid_credentials"),
            (server(ErrorCode::UsernameTaken), "username_taken"),
            (server(ErrorCode::InvalidUsername), "invalid_username"),
            (server(ErrorCode::WeakPassword), "weak_password"),
            (server(ErrorCode::RateLimited), "rate_limited"),
            (server(ErrorCode::MethodNotAllowed), "method_not_allowed"),
            (server(ErrorCode::Internal), "internal"),
            (
                CoreError::Store(StoreError("locked".into())),
                "session_store",
            ),
            (CoreError::NotSignedIn, "not_signed_in"),
            (
                CoreError::Admin(crate::admin::AdminError::Closed),
                "admin_closed",
            ),
            (CoreError::Invalid("bad".into()), "invalid_input"),
            (CoreError::Compose(ComposeError::MsgUsage), "msg_usage"),
            (CoreError::Compose(ComposeError::Empty), "empty"),
            (CoreError::Compose(ComposeError::ReplyGone), "reply_gone"),
            (
                CoreError::Compose(ComposeError::BadConversation("x".into())),
                "invalid_input",
            ),
        ];
        // Every variant is among the cases (the match has no wildcard: a new variant must be
        // named here, and then given a case).
        let variant = |e: &CoreError| match e {
            CoreError::Cache(_) => "cache",
            CoreError::Api(_) => "api",
            CoreError::Store(_) => "store",
            CoreError::NotSignedIn => "not_signed_in",
            CoreError::Invalid(_) => "invalid",
            CoreError::Compose(_) => "compose",
            CoreError::Admin(_) => "admin",
        };
        let covered: std::collections::BTreeSet<_> =
            cases.iter().map(|(e, _)| variant(e)).collect();
        assert_eq!(covered.len(), 7, "{covered:?}");
        for (err, want) in cases {
            let code = err.code();
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(want),
                "{err:?}"
            );
            assert_eq!(code.to_string(), want);
            // The string names this code and no other.
            let back: CoreErrorCode = serde_json::from_value(want.into()).unwrap();
            assert_eq!(back, code, "{want}");
        }
    }

    #[test]
    fn no_client_code_spells_a_server_code() {
        // No wildcard: a new code must be added to the list below.
        let _exhaustive = |c: ClientErrorCode| match c {
            ClientErrorCode::Unreachable
            | ClientErrorCode::Cache
            | ClientErrorCode::SessionStore
            | ClientErrorCode::NotSignedIn
            | ClientErrorCode::InvalidInput
            | ClientErrorCode::MsgUsage
            | ClientErrorCode::Empty
            | ClientErrorCode::ReplyGone
            | ClientErrorCode::AdminClosed => (),
        };
        for c in [
            ClientErrorCode::Unreachable,
            ClientErrorCode::Cache,
            ClientErrorCode::SessionStore,
            ClientErrorCode::NotSignedIn,
            ClientErrorCode::InvalidInput,
            ClientErrorCode::MsgUsage,
            ClientErrorCode::Empty,
            ClientErrorCode::ReplyGone,
            ClientErrorCode::AdminClosed,
        ] {
            let s = serde_json::to_value(c).unwrap();
            assert!(
                serde_json::from_value::<ErrorCode>(s.clone()).is_err(),
                "{s} is also a server code"
            );
            let back: CoreErrorCode = serde_json::from_value(s).unwrap();
            assert_eq!(back, CoreErrorCode::Client(c));
        }
        assert!(serde_json::from_value::<CoreErrorCode>("no_such_code".into()).is_err());
    }
}
