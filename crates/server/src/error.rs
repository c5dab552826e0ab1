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
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
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
            ErrorCode::InvalidCredentials | ErrorCode::TokenExpired | ErrorCode::TokenInvalid => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::UsernameTaken | ErrorCode::IdConflict => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, Json(ErrorResponse { error: self.body() })).into_response()
    }
}
