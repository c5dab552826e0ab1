//! Account endpoints (register, login, refresh, logout) and the health check.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use papo_protocol::http::{Credentials, Health, RefreshRequest, Session};
use papo_protocol::{valid_username, ErrorCode};

use crate::auth::{self, Claims};
use crate::error::ApiError;
use crate::store::{Rotation, SessionRow, User};
use crate::App;

/// Longest accepted password, in bytes (argon2 cost grows with it).
const MAX_PASSWORD: usize = 1024;
const MIN_PASSWORD: usize = 8;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/refresh", post(refresh))
        .route("/api/logout", post(logout))
        .route("/api/delete-account", post(delete_account))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method (see the Allow header)",
    )
}

/// The client's IP address, from the TCP connection (None when the server was not served with
/// connect info, e.g. a router driven directly in a test).
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<crate::transport::ConnInfo>>()
            .map(|c| c.0.remote.ip())
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            });
        Ok(PeerIp(ip))
    }
}

/// Spends one account request of the client's address, before the body is even read, so that
/// malformed requests count too; refuses with 429 when the address's budget is spent.
pub struct AccountRequest;

impl FromRequestParts<App> for AccountRequest {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let PeerIp(ip) = PeerIp::from_request_parts(parts, app)
            .await
            .unwrap_or_else(|never| match never {});
        app.guard.check_ip(ip)?;
        Ok(AccountRequest)
    }
}

/// Reads a JSON body, turning every rejection into our error shape.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(ApiError::new(ErrorCode::BadRequest, e.body_text())),
        }
    }
}

async fn health(State(app): State<App>) -> Json<Health> {
    Json(Health {
        ok: true,
        epoch: app.epoch.clone(),
        protocol: papo_protocol::PROTOCOL_VERSION,
    })
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(ApiError::new(
            ErrorCode::WeakPassword,
            format!("password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long"),
        ));
    }
    Ok(())
}

/// Opens a device session and signs its first tokens.
async fn open_session(app: &App, user: User) -> Result<Session, ApiError> {
    let now = crate::now_ms();
    let refresh_token = auth::new_refresh_token();
    let session = SessionRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        user_id: user.id,
        expires_at: now + app.limits.refresh_ttl_secs as i64 * 1000,
    };
    app.store
        .create_session(&session, &auth::refresh_hash(&refresh_token))
        .await?;
    Ok(sign(app, &user, &session.id, refresh_token))
}

fn sign(app: &App, user: &User, session_id: &str, refresh_token: String) -> Session {
    let ttl = app.limits.access_ttl_secs;
    let now = crate::now_ms() / 1000;
    let access_token = app.signer.sign(&Claims {
        uid: user.id,
        name: user.username.clone(),
        sid: session_id.to_string(),
        iat: now,
        exp: now + ttl as i64,
    });
    Session {
        username: user.username.clone(),
        access_token,
        expires_in: ttl,
        refresh_token,
    }
}

async fn register(
    State(app): State<App>,
    _: AccountRequest,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_username(&c.username) {
        return Err(ApiError::new(
            ErrorCode::InvalidUsername,
            "username must be 3 to 20 characters of a-z, 0-9 and _",
        ));
    }
    check_password(&c.password)?;
    let password = c.password;
    let hash = app
        .guard
        .hashing
        .run(move || auth::hash_password(&password))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::internal()
        })?;
    let user = app.store.create_user(&c.username, &hash).await?;
    tracing::info!(user = %user.username, "registered");
    Ok((StatusCode::OK, Json(open_session(&app, user).await?)))
}

async fn login(
    State(app): State<App>,
    _: AccountRequest,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Json<Session>, ApiError> {
    let (user, suspended) = check_credentials(&app, c).await?;
    if suspended {
        tracing::info!(user = %user.username, "sign-in refused: suspended");
        return Err(crate::error::suspended());
    }
    tracing::info!(user = %user.username, "logged in");
    Ok(Json(open_session(&app, user).await?))
}

/// Deletes the account, with its password: every device session ends (their sockets are
/// disconnected on every node), its follows are undone, its private data goes; the name stays
/// taken. Limited like login (same budget per address and per username).
async fn delete_account(
    State(app): State<App>,
    _: AccountRequest,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<StatusCode, ApiError> {
    // A suspended account may still delete itself (and with it what it holds).
    let (user, _suspended) = check_credentials(&app, c).await?;
    let deleted = app.store.delete_account(&user).await?;
    tracing::info!(
        user = %user.username,
        sessions = deleted.sessions.len(),
        follows = deleted.written.len(),
        "account deleted"
    );
    app.hub.publish(deleted.written);
    for session in deleted.sessions {
        kick(&app, session).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The user these credentials name, if the password is theirs (`invalid_credentials` for an
/// unknown, deleted or malformed name and for a wrong password alike, in the same time), and
/// whether it is suspended (told only to whoever knows the password).
async fn check_credentials(app: &App, c: Credentials) -> Result<(User, bool), ApiError> {
    let well_formed = valid_username(&c.username) && c.password.len() <= MAX_PASSWORD;
    if valid_username(&c.username) {
        app.guard.check_user(&c.username)?;
    }
    let found = if well_formed {
        app.store.user_credentials(&c.username).await?
    } else {
        None
    };
    let (user, hash) = match found {
        Some(c) => (Some((c.user, c.suspended)), Some(c.password_hash)),
        None => (None, None),
    };
    let password = c.password;
    // An unknown user is checked against a dummy hash, so the answer takes as long either way.
    let ok = app
        .guard
        .hashing
        .run(move || {
            auth::verify_password(&password, hash.as_deref().unwrap_or(auth::dummy_hash()))
        })
        .await?;
    match (user, ok) {
        (Some(user), true) => Ok(user),
        _ => {
            tracing::info!("credentials refused");
            Err(ApiError::new(
                ErrorCode::InvalidCredentials,
                "wrong username or password",
            ))
        }
    }
}

async fn refresh(
    State(app): State<App>,
    JsonBody(r): JsonBody<RefreshRequest>,
) -> Result<Json<Session>, ApiError> {
    let now = crate::now_ms();
    let new_token = auth::new_refresh_token();
    let rotation = app
        .store
        .rotate_refresh(
            &auth::refresh_hash(&r.refresh_token),
            &auth::refresh_hash(&new_token),
            now + app.limits.refresh_ttl_secs as i64 * 1000,
            now,
        )
        .await?;
    let session = match rotation {
        Rotation::Rotated(session) => session,
        Rotation::Reused { session_id } => {
            // A copy of a spent token: whoever holds it, the session is no longer safe.
            tracing::warn!(
                session = %session_id,
                "spent refresh token presented again; session revoked"
            );
            kick(&app, session_id).await;
            return Err(ApiError::new(
                ErrorCode::TokenInvalid,
                "refresh token already used: the session is revoked, sign in again",
            ));
        }
        Rotation::Unknown => {
            return Err(ApiError::new(
                ErrorCode::TokenInvalid,
                "refresh token unknown, expired or logged out; sign in again",
            ))
        }
        Rotation::Ended(crate::store::Ended::AccountDeleted) => {
            return Err(ApiError::new(
                ErrorCode::AccountDeleted,
                "this account was deleted",
            ))
        }
        Rotation::Ended(crate::store::Ended::AccountSuspended) => {
            return Err(crate::error::suspended())
        }
    };
    let user = app
        .store
        .user_by_id(session.user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TokenInvalid, "user no longer exists"))?;
    Ok(Json(sign(&app, &user, &session.id, new_token)))
}

async fn logout(
    State(app): State<App>,
    JsonBody(r): JsonBody<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    if let Some(session_id) = app
        .store
        .delete_session_by_refresh(&auth::refresh_hash(&r.refresh_token))
        .await?
    {
        kick(&app, session_id).await;
        tracing::info!("logged out");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Disconnects the sockets of a revoked session: they lose their right to stay connected.
async fn kick(app: &App, session_id: String) {
    if let Some(kick) = app.disconnect_session.get() {
        kick(session_id).await;
    }
}
