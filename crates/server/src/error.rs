//! The one error type that crosses to clients: a stable code and a readable message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use papo_protocol::{http::ErrorResponse, ErrorBody, ErrorCode};

/// An error answered to a client, over HTTP or in a Socket.IO reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds after which a retry may succeed; sent as the HTTP `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// The same error, telling the client when to try again (at least one second).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    pub fn internal() -> Self {
        ApiError::new(
            ErrorCode::Internal,
            "the server could not complete the request; it had no effect, try again",
        )
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
    fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::BadRequest
            | ErrorCode::InvalidText
            | ErrorCode::InvalidUsername
            | ErrorCode::WeakPassword
            | ErrorCode::UnknownEvent => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidCredentials
            | ErrorCode::TokenExpired
            | ErrorCode::TokenInvalid
            | ErrorCode::AccountDeleted => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::AccountSuspended => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::UsernameTaken | ErrorCode::IdConflict => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, Json(ErrorResponse { error: self.body() })).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    /// What a client is told of a store failure: a taken username as such, anything else as an
    /// internal error (logged here, never sent: it may name tables or values).
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::UsernameTaken => {
                ApiError::new(ErrorCode::UsernameTaken, "that username is taken")
            }
            // A sign-in that raced the account's deletion: as if the password were wrong.
            crate::store::StoreError::UserDeleted => {
                ApiError::new(ErrorCode::InvalidCredentials, "wrong username or password")
            }
            crate::store::StoreError::UserSuspended => suspended(),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

/// What a suspended account is told when it signs in, refreshes or sends a request.
pub fn suspended() -> ApiError {
    ApiError::new(
        ErrorCode::AccountSuspended,
        "this account is suspended by a moderator",
    )
}
