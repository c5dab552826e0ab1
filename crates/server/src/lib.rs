//! The Papo server: accounts over HTTP, everything else over Socket.IO (socketioxide on axum),
//! persisted in a durable per-user event log.

pub mod auth;
pub mod error;
pub mod http;
pub mod hub;
pub mod realtime;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use socketioxide::SocketIo;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::TokenSigner;
use crate::hub::Hub;
use crate::store::sqlite::{Durability, SqliteStore};
use crate::store::Store;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Command-line flags and their environment variables.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "papo-server",
    version,
    about = "The Papo chat and notifications server"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "PAPO_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Database: a SQLite file path (or `sqlite://path`).
    #[arg(long, env = "PAPO_DB", default_value = "papo.db")]
    pub db: String,
    /// SQLite commit durability: `full` survives power loss, `normal` a process crash.
    #[arg(long, env = "PAPO_SQLITE_SYNC", value_enum, default_value = "full")]
    pub sqlite_sync: Durability,
    /// Secret that signs access tokens. If unset, one is generated once and kept in
    /// `--token-secret-file`.
    #[arg(long, env = "PAPO_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Where the generated token secret is kept (created with mode 0600). Defaults to
    /// `<database file>.key`.
    #[arg(long, env = "PAPO_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
    /// Browser origins allowed to call the server (comma-separated). Native clients need none.
    #[arg(long, env = "PAPO_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "PAPO_ACCESS_TTL_SECS", default_value_t = 900)]
    pub access_ttl_secs: u64,
    /// Lifetime of refresh tokens (device sessions), in seconds.
    #[arg(long, env = "PAPO_REFRESH_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_ttl_secs: u64,
    /// Requests per second allowed per connection, sustained.
    #[arg(long, env = "PAPO_RATE", default_value_t = 30.0)]
    pub rate_per_sec: f64,
    /// Requests allowed per connection in a burst.
    #[arg(long, env = "PAPO_BURST", default_value_t = 60.0)]
    pub burst: f64,
    /// Packets buffered per socket before the server treats the client as slow.
    #[arg(long, env = "PAPO_SOCKET_BUFFER", default_value_t = 1024)]
    pub socket_buffer: usize,
    /// How long a slow client's full buffer may stay full before it is disconnected (it then
    /// resumes by cursor), in milliseconds.
    #[arg(long, env = "PAPO_SLOW_CLIENT_GRACE_MS", default_value_t = 10_000)]
    pub slow_client_grace_ms: u64,
    /// Largest Socket.IO packet accepted, in bytes.
    #[arg(long, env = "PAPO_MAX_PAYLOAD", default_value_t = 64 * 1024)]
    pub max_payload: u64,
}

/// Tunables shared by the handlers.
#[derive(Debug, Clone)]
pub struct Limits {
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub rate_per_sec: f64,
    pub burst: f64,
    pub slow_client_grace: Duration,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub signer: TokenSigner,
    pub epoch: String,
    pub limits: Arc<Limits>,
    /// Set once the Socket.IO layer is built (it needs the state first).
    pub io: Arc<std::sync::OnceLock<SocketIo>>,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("token secret: {0}")]
    Secret(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad configuration: {0}")]
    Config(String),
}

fn sqlite_path(db: &str) -> Result<PathBuf, StartError> {
    if let Some(rest) = db.strip_prefix("sqlite://") {
        return Ok(PathBuf::from(rest));
    }
    if db.contains("://") {
        return Err(StartError::Config(format!(
            "unsupported database URL {db:?}: use a SQLite file path"
        )));
    }
    Ok(PathBuf::from(db))
}

/// Reads the secret file, or creates it with a fresh random secret readable only by us.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(StartError::Secret(format!(
                "{} is too short (need at least 32 characters)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError::Secret(format!("{}: {e}", path.display()))),
    }
    let secret = auth::new_refresh_token(); // 256 random bits, hex
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts
        .open(path)
        .map_err(|e| StartError::Secret(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(secret.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| StartError::Secret(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a new token secret");
    Ok(secret.into_bytes())
}

/// A bound, ready server.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    io: SocketIo,
}

impl Server {
    /// Opens the database, binds the port and wires everything; does not serve yet.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let path = sqlite_path(&config.db)?;
        let secret = match &config.token_secret {
            Some(s) if s.len() >= 16 => s.as_bytes().to_vec(),
            Some(_) => {
                return Err(StartError::Secret(
                    "PAPO_TOKEN_SECRET must be at least 16 characters".into(),
                ))
            }
            None => {
                let file = config.token_secret_file.clone().unwrap_or_else(|| {
                    let mut p = path.clone().into_os_string();
                    p.push(".key");
                    PathBuf::from(p)
                });
                load_or_create_secret(&file)?
            }
        };
        let store_path = path.clone();
        let durability = config.sqlite_sync;
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&store_path, durability))
            .await
            .map_err(|e| StartError::Config(e.to_string()))??;
        let store: Arc<dyn Store> = Arc::new(store);
        let epoch = store.epoch().await?;

        let app = App {
            store,
            hub: Arc::new(Hub::default()),
            signer: TokenSigner::new(&secret),
            epoch,
            limits: Arc::new(Limits {
                access_ttl_secs: config.access_ttl_secs,
                refresh_ttl_secs: config.refresh_ttl_secs,
                rate_per_sec: config.rate_per_sec,
                burst: config.burst,
                slow_client_grace: Duration::from_millis(config.slow_client_grace_ms),
            }),
            io: Default::default(),
        };
        let (layer, io) = SocketIo::builder()
            .with_state(app.clone())
            .max_payload(config.max_payload)
            .ws_max_message_size(config.max_payload as usize)
            .ws_max_frame_size(config.max_payload as usize)
            .ping_interval(Duration::from_secs(20))
            .ping_timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(20))
            .max_buffer_size(config.socket_buffer.max(8))
            .build_layer();
        let _ = app.io.set(io.clone());
        realtime::install(&io, &app);

        let origins = config
            .cors_origins
            .iter()
            .filter(|o| !o.is_empty())
            .map(|o| {
                o.parse()
                    .map_err(|_| StartError::Config(format!("bad CORS origin {o:?}")))
            })
            .collect::<Result<Vec<axum::http::HeaderValue>, _>>()?;
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([axum::http::header::CONTENT_TYPE]);

        let router = http::routes()
            .with_state(app)
            .layer(layer)
            .layer(cors)
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024));
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        Ok(Server {
            listener,
            router,
            io,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then closes every socket. Every reply already sent was
    /// committed first, so nothing acknowledged is lost.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let io = self.io.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(());
        });
        let closer = async move {
            if rx.await.is_ok() {
                tracing::info!("shutting down: closing sockets");
                io.close().await;
            }
        };
        let (res, ()) = tokio::join!(serve, closer);
        if let Err(e) = res {
            tracing::error!(error = %e, "server error");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
