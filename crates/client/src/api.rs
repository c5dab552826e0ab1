//! The account endpoints over HTTP JSON: register, login, refresh, logout, health.

use papo_protocol::http::{Credentials, ErrorResponse, Health, RefreshRequest, Session};
use papo_protocol::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why an account request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server could not be reached (or answered garbage at the HTTP level).
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server answered with an error body.
    #[error("{} (HTTP {status}): {}", error_code_str(&.error.code), .error.message)]
    Server { status: u16, error: ErrorBody },
    /// A non-2xx answer without the expected error body.
    #[error("unexpected answer from the server (HTTP {status})")]
    Unexpected { status: u16 },
}

fn error_code_str(code: &ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl ApiError {
    /// The server's machine code, when it gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Server { error, .. } => Some(error.code),
            _ => None,
        }
    }
    /// True when the server refused the credentials or token (as opposed to being unreachable).
    pub fn is_refusal(&self) -> bool {
        match self {
            ApiError::Server { status, .. } | ApiError::Unexpected { status } => {
                (400..500).contains(status)
            }
            ApiError::Network(_) => false,
        }
    }
}

/// Client of the account endpoints. Given several nodes of one deployment (comma-separated),
/// it uses the one that last answered and moves on to the others when it is unreachable.
#[derive(Clone, Debug)]
pub struct Api {
    bases: Vec<String>,
    preferred: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Api {
    /// `base_url` like `http://127.0.0.1:8080` (a trailing slash is fine).
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client builds");
        Api {
            bases: crate::config::server_urls(base_url),
            preferred: Arc::new(AtomicUsize::new(0)),
            http,
        }
    }

    /// The node currently used.
    pub fn base_url(&self) -> &str {
        &self.bases[self.preferred.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Sends a request to the preferred node, then to the others while they are unreachable.
    async fn send(
        &self,
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.bases.len() {
            let idx = (first + i) % self.bases.len();
            match make(&self.bases[idx]).send().await {
                Ok(resp) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => last = Some(ApiError::Network(e.without_url().to_string())),
            }
        }
        Err(last.unwrap_or_else(|| ApiError::Network("no server configured".into())))
    }

    pub async fn register(&self, creds: &Credentials) -> Result<Session, ApiError> {
        self.post("/api/register", creds).await
    }

    pub async fn login(&self, creds: &Credentials) -> Result<Session, ApiError> {
        self.post("/api/login", creds).await
    }

    /// Exchanges a refresh token for a new session (the old refresh token is revoked).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, ApiError> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_string(),
        };
        self.post("/api/refresh", &body).await
    }

    /// Revokes a refresh token.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), ApiError> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_string(),
        };
        let resp = self
            .send(|base| self.http.post(format!("{base}/api/logout")).json(&body))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::error_from(resp).await)
        }
    }

    /// Deletes the account these credentials name (`204`): the server ends every session.
    pub async fn delete_account(&self, creds: &Credentials) -> Result<(), ApiError> {
        let resp = self
            .send(|base| {
                self.http
                    .post(format!("{base}/api/delete-account"))
                    .json(creds)
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::error_from(resp).await)
        }
    }

    pub async fn health(&self) -> Result<Health, ApiError> {
        let resp = self
            .send(|base| self.http.get(format!("{base}/healthz")))
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error_from(resp).await);
        }
        resp.json()
            .await
            .map_err(|e| ApiError::Network(e.without_url().to_string()))
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ApiError> {
        let resp = self
            .send(|base| self.http.post(format!("{base}{path}")).json(body))
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error_from(resp).await);
        }
        resp.json()
            .await
            .map_err(|e| ApiError::Network(e.without_url().to_string()))
    }

    async fn error_from(resp: reqwest::Response) -> ApiError {
        let status = resp.status().as_u16();
        match resp.json::<ErrorResponse>().await {
            Ok(body) => ApiError::Server {
                status,
                error: body.error,
            },
            Err(_) => ApiError::Unexpected { status },
        }
    }
}
