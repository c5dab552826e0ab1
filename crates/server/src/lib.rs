//! The Papo server: accounts over HTTP, everything else over Socket.IO (socketioxide on axum),
//! persisted in a durable per-user event log.

pub mod auth;
pub mod error;
pub mod guard;
pub mod http;
pub mod hub;
pub mod realtime;
pub mod stats;
pub mod store;
pub mod transport;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use socketioxide::adapter::Adapter;
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::TokenSigner;
use crate::hub::Hub;
use crate::store::postgres::PostgresStore;
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
    /// Database: a SQLite file path (or `sqlite://path`), or a `postgres://` URL shared by
    /// several server processes.
    #[arg(long, env = "PAPO_DB", default_value = "papo.db")]
    pub db: String,
    /// Redis URL for the Socket.IO adapter when several server processes serve the same users
    /// (Redis >= 7, e.g. `redis://127.0.0.1:6379/?protocol=resp3`). Requires a postgres:// `--db`.
    #[arg(long, env = "PAPO_REDIS")]
    pub redis: Option<String>,
    /// SQLite commit durability: `full` survives power loss, `normal` a process crash.
    #[arg(long, env = "PAPO_SQLITE_SYNC", value_enum, default_value = "full")]
    pub sqlite_sync: Durability,
    /// Secret that signs access tokens. If unset, the keys are kept in `--token-secret-file`
    /// (one is generated on first start; `rotate-token-key` rotates them).
    #[arg(long, env = "PAPO_TOKEN_SECRET", hide_env_values = true, value_parser = secret_arg)]
    pub token_secret: Option<SecretString>,
    /// The secret that signed access tokens before `--token-secret` replaced it: still accepted,
    /// so a rotation signs nobody out (drop it once the access-token lifetime has passed).
    #[arg(long, env = "PAPO_TOKEN_SECRET_PREVIOUS", hide_env_values = true, value_parser = secret_arg, requires = "token_secret")]
    pub token_secret_previous: Option<SecretString>,
    /// The key file: one secret per line, the signing key first, then the keys still accepted
    /// (created with mode 0600; re-read every 10 s and on a token of a key not loaded yet).
    /// Defaults to `<database file>.key`.
    #[arg(long, env = "PAPO_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Sign-in and register requests allowed per minute from one client address (IPv6: one
    /// /64), as a burst of that many refilling evenly; 0 = no limit.
    #[arg(long, env = "PAPO_ACCOUNT_IP_PER_MIN", default_value_t = 20)]
    pub account_ip_per_min: u32,
    /// Sign-in attempts allowed per minute for one username, as a burst of that many refilling
    /// evenly; 0 = no limit.
    #[arg(long, env = "PAPO_LOGIN_USER_PER_MIN", default_value_t = 5)]
    pub login_user_per_min: u32,
    /// Passwords hashed or checked at once (0 = one per available core).
    #[arg(long, env = "PAPO_HASH_THREADS", default_value_t = 0)]
    pub hash_threads: usize,
    /// Password checks allowed to wait for a hashing thread; beyond that, and after waiting
    /// `--hash-wait-ms`, requests are refused with 503.
    #[arg(long, env = "PAPO_HASH_QUEUE", default_value_t = 32)]
    pub hash_queue: usize,
    /// Longest wait for a hashing thread, in milliseconds.
    #[arg(long, env = "PAPO_HASH_WAIT_MS", default_value_t = 10_000)]
    pub hash_wait_ms: u64,
}

/// Commands other than serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Rotate the access-token signing key in the key file: a new key signs from now on, the
    /// current one is still accepted, an older one is dropped. Running servers using the file
    /// pick the change up within 10 s; nobody is signed out.
    RotateTokenKey,
    /// Grant the admin role to a user (who may then open the `/admin` namespace: live
    /// statistics, moderation). Takes effect at the user's next connection.
    GrantAdmin {
        /// The user's name.
        username: String,
    },
    /// Revoke the admin role. The user's next admin request is refused, and their `/admin`
    /// sockets close within 5 s.
    RevokeAdmin {
        /// The user's name.
        username: String,
    },
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
    /// The key file the signer's keys come from, when they come from one.
    pub key_file: Option<Arc<KeyFile>>,
    pub epoch: String,
    pub limits: Arc<Limits>,
    /// Random id of this server process (presence bookkeeping across nodes).
    pub node_id: String,
    /// Disconnects every socket of a device session, on any node. Set once the Socket.IO layer
    /// is built (it needs the state first).
    pub disconnect_session: Arc<std::sync::OnceLock<SessionKicker>>,
    /// Rate limits and the password-hashing pool of the account endpoints.
    pub guard: Arc<guard::AccountGuard>,
    /// Each user's request budget on this node, shared by all of the user's sockets. Kept
    /// after the last socket closes until it has refilled, so reconnecting does not refill it.
    pub requests: Arc<guard::KeyedLimit<store::UserId>>,
    /// The TCP connections carrying upgraded WebSockets, so a socket can be cut for real.
    pub conns: Arc<transport::Conns>,
    /// What this node counts for `admin:stats`.
    pub metrics: Arc<stats::Metrics>,
}

/// See [`App::disconnect_session`].
pub type SessionKicker = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

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

/// Where the data lives.
enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

fn database(db: &str) -> Result<Database, StartError> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return Ok(Database::Postgres(db.to_string()));
    }
    if let Some(rest) = db.strip_prefix("sqlite://") {
        return Ok(Database::Sqlite(PathBuf::from(rest)));
    }
    if db.contains("://") {
        return Err(StartError::Config(format!(
            "unsupported database URL: use a SQLite file path or postgres://… (got {})",
            db.split("://").next().unwrap_or_default()
        )));
    }
    Ok(Database::Sqlite(PathBuf::from(db)))
}

/// Socket.IO settings shared by every adapter.
fn configure<A: Adapter>(b: SocketIoBuilder<A>, config: &Config) -> SocketIoBuilder<A> {
    b.max_payload(config.max_payload)
        .ws_max_message_size(config.max_payload as usize)
        .ws_max_frame_size(config.max_payload as usize)
        .ping_interval(Duration::from_secs(20))
        .ping_timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(20))
        .max_buffer_size(config.socket_buffer.max(8))
        .ws_read_buffer_size(WS_READ_BUFFER)
}

/// Bytes of tungstenite's read buffer per WebSocket (socketioxide's default is 4 KiB). Allocated
/// and zero-filled for every connection however idle, while requests are a few hundred bytes; a
/// larger frame grows it as needed (docs/benchmarks.md, heap profile).
const WS_READ_BUFFER: usize = 1024;

/// What `serve` needs to close the Socket.IO side, whatever its adapter.
type Closer =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

fn kicker<A: Adapter>(io: SocketIo<A>, conns: Arc<transport::Conns>) -> SessionKicker {
    Arc::new(move |session: String| {
        let io = io.clone();
        let conns = conns.clone();
        Box::pin(async move {
            let room = realtime::session_room(&session);
            if let Err(e) = io.to(room.clone()).disconnect().await {
                tracing::warn!(error = %e, "could not disconnect all of the session's sockets");
            }
            if let Some(admin) = io.of(papo_protocol::ADMIN_NAMESPACE) {
                if let Err(e) = admin.to(room.clone()).disconnect().await {
                    tracing::warn!(error = %e, "could not disconnect the session's admin sockets");
                }
            }
            // A socket whose buffer is full ignores `disconnect()`: cut its connection instead.
            for socket in io.to(room).local().sockets() {
                if socket.connected() {
                    realtime::cut(&conns, &socket);
                }
            }
        })
    })
}

/// `--token-secret` as a secret: `Config`'s Debug shows `[REDACTED]` for it.
fn secret_arg(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(s.into())
}

/// Reads the key file, or creates it with a fresh random key readable only by us.
fn load_or_create_keys(path: &Path) -> Result<Vec<Vec<u8>>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            return auth::parse_key_file(&s)
                .map_err(|e| StartError::Secret(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError::Secret(format!("{}: {e}", path.display()))),
    }
    let key = auth::new_refresh_token(); // 256 random bits, hex
    write_key_file(path, &format!("{key}\n"), true)?;
    tracing::info!(path = %path.display(), kid = %auth::key_id(key.as_bytes()), "generated a new token key");
    Ok(vec![key.into_bytes()])
}

/// Writes the key file with mode 0600: created (`new`), or replaced atomically (written beside
/// it, synced, renamed over it).
fn write_key_file(path: &Path, text: &str, new: bool) -> Result<(), StartError> {
    use std::io::Write;
    let target = if new {
        path.to_path_buf()
    } else {
        let mut t = path.as_os_str().to_owned();
        t.push(".new");
        PathBuf::from(t)
    };
    if !new {
        // A file left by a rotation that crashed may carry other permissions: start afresh.
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StartError::Secret(format!(
                    "cannot remove {}: {e}",
                    target.display()
                )))
            }
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&target)
        .map_err(|e| StartError::Secret(format!("cannot create {}: {e}", target.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| StartError::Secret(format!("cannot write {}: {e}", target.display())))?;
    if !new {
        std::fs::rename(&target, path)
            .map_err(|e| StartError::Secret(format!("cannot replace {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Where the keys come from.
enum KeySource {
    Env(Vec<Vec<u8>>),
    File(PathBuf),
}

fn key_source(config: &Config, db: &Database) -> Result<KeySource, StartError> {
    Ok(match (&config.token_secret, &config.token_secret_file, db) {
        (Some(s), _, _) => {
            let mut keys = vec![s.expose_secret().as_bytes().to_vec()];
            keys.extend(
                config
                    .token_secret_previous
                    .iter()
                    .map(|p| p.expose_secret().as_bytes().to_vec()),
            );
            if keys.iter().any(|k| k.len() < 16) {
                return Err(StartError::Secret(
                    "PAPO_TOKEN_SECRET (and PAPO_TOKEN_SECRET_PREVIOUS) must be at least 16 characters".into(),
                ));
            }
            KeySource::Env(keys)
        }
        (None, Some(file), _) => KeySource::File(file.clone()),
        (None, None, Database::Sqlite(path)) => {
            let mut p = path.clone().into_os_string();
            p.push(".key");
            KeySource::File(PathBuf::from(p))
        }
        (None, None, Database::Postgres(_)) => {
            return Err(StartError::Secret(
                "with a shared database every node needs the same keys: set PAPO_TOKEN_SECRET or --token-secret-file".into(),
            ))
        }
    })
}

/// `papo-server rotate-token-key`: rotates the key file the same flags would serve with.
/// Returns what to print.
pub fn rotate_token_key(config: &Config) -> Result<String, StartError> {
    let path = match key_source(config, &database(&config.db)?)? {
        KeySource::File(path) => path,
        KeySource::Env(_) => {
            return Err(StartError::Config(
                "the keys come from PAPO_TOKEN_SECRET: rotate by setting PAPO_TOKEN_SECRET_PREVIOUS to the current secret and PAPO_TOKEN_SECRET to a new one, then restarting the nodes one by one".into(),
            ))
        }
    };
    let old = load_or_create_keys(&path)?;
    let (text, fresh) = auth::rotated_key_file(&old);
    write_key_file(&path, &text, false)?;
    let dropped: Vec<String> = old.iter().skip(1).map(|k| auth::key_id(k)).collect();
    Ok(format!(
        "rotated {}: signing key {}, still accepted {}{}",
        path.display(),
        auth::key_id(&fresh),
        auth::key_id(&old[0]),
        if dropped.is_empty() {
            String::new()
        } else {
            format!(", dropped {}", dropped.join(", "))
        }
    ))
}

/// `papo-server grant-admin` / `revoke-admin`: sets the role in the database the same flags
/// would serve. Returns what to print.
pub async fn set_admin(config: &Config, username: &str, admin: bool) -> Result<String, StartError> {
    let store = open_store(config, database(&config.db)?).await?;
    if !store.set_admin(username, admin).await? {
        return Err(StartError::Config(format!("no user named {username:?}")));
    }
    Ok(if admin {
        format!("{username} is an admin (from their next connection)")
    } else {
        format!("{username} is no longer an admin")
    })
}

async fn open_store(config: &Config, db: Database) -> Result<Arc<dyn Store>, StartError> {
    let durability = config.sqlite_sync;
    Ok(match db {
        Database::Sqlite(path) => tokio::task::spawn_blocking(move || {
            SqliteStore::open(&path, durability).map(|s| Arc::new(s) as Arc<dyn Store>)
        })
        .await
        .map_err(|e| StartError::Config(e.to_string()))??,
        Database::Postgres(url) => Arc::new(PostgresStore::open(&url).await?),
    })
}

/// The key file a running server re-reads, so that a rotation reaches it.
pub struct KeyFile {
    path: PathBuf,
    /// What the file held when last loaded, and when it was last read on demand (the 10 s
    /// poll does not count).
    state: tokio::sync::Mutex<(String, Option<tokio::time::Instant>)>,
}

/// How often the key file is re-read in the background.
const KEY_FILE_POLL: Duration = Duration::from_secs(10);
/// The least time between two on-demand reads (a token of a key not loaded yet).
const KEY_FILE_ON_DEMAND: Duration = Duration::from_secs(1);

impl KeyFile {
    /// Re-reads the file and swaps the signer's keys if it changed. A file that cannot be read
    /// or holds no valid key leaves the keys as they are (and says so in the log).
    pub async fn reload(&self, signer: &TokenSigner) -> bool {
        let mut state = self.state.lock().await;
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot re-read the token key file; keeping the keys loaded");
                return false;
            }
        };
        if text == state.0 {
            return false;
        }
        match auth::parse_key_file(&text) {
            Ok(keys) => {
                signer.replace(&keys);
                state.0 = text;
                tracing::info!(kids = ?signer.kids(), "token keys reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "bad token key file; keeping the keys loaded");
                false
            }
        }
    }

    /// [`KeyFile::reload`], unless it was read on demand less than a second ago.
    pub async fn reload_on_demand(&self, signer: &TokenSigner) -> bool {
        {
            let mut state = self.state.lock().await;
            if state.1.is_some_and(|at| at.elapsed() < KEY_FILE_ON_DEMAND) {
                return false;
            }
            state.1 = Some(tokio::time::Instant::now());
        }
        self.reload(signer).await
    }
}

/// See [`transport::track`].
fn track(
    conns: Arc<transport::Conns>,
) -> impl Fn(
    axum::extract::Request,
    axum::middleware::Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |req, next| Box::pin(transport::track(conns.clone(), req, next))
}

/// A bound, ready server.
pub struct Server {
    listener: transport::KillableListener,
    router: axum::Router,
    closer: Closer,
}

impl Server {
    /// Opens the database, binds the port and wires everything; does not serve yet.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let db = database(&config.db)?;
        let (keys, key_file) = match key_source(&config, &db)? {
            KeySource::Env(keys) => (keys, None),
            KeySource::File(path) => {
                let keys = load_or_create_keys(&path)?;
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let file = KeyFile {
                    path,
                    state: tokio::sync::Mutex::new((text, None)),
                };
                (keys, Some(Arc::new(file)))
            }
        };
        let signer = TokenSigner::with_keys(&keys);
        if let Some(file) = &key_file {
            let (file, signer) = (file.clone(), signer.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(KEY_FILE_POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    file.reload(&signer).await;
                }
            });
        }
        if config.redis.is_some() && matches!(db, Database::Sqlite(_)) {
            return Err(StartError::Config(
                "--redis serves several nodes, which need a shared postgres:// database".into(),
            ));
        }
        let store = open_store(&config, db).await?;
        let epoch = store.epoch().await?;
        let hub = Arc::new(Hub::default());
        if let Some(commits) = store.commits() {
            tokio::spawn(follow_commits(commits, store.clone(), hub.clone()));
        }

        let app = App {
            store,
            hub,
            signer,
            key_file,
            epoch,
            limits: Arc::new(Limits {
                access_ttl_secs: config.access_ttl_secs,
                refresh_ttl_secs: config.refresh_ttl_secs,
                rate_per_sec: config.rate_per_sec,
                burst: config.burst,
                slow_client_grace: Duration::from_millis(config.slow_client_grace_ms),
            }),
            node_id: uuid::Uuid::new_v4().simple().to_string(),
            disconnect_session: Default::default(),
            guard: Arc::new(guard::AccountGuard::new(&guard::GuardConfig {
                ip_per_min: config.account_ip_per_min,
                user_per_min: config.login_user_per_min,
                hash_threads: config.hash_threads,
                hash_queue: config.hash_queue,
                hash_wait: Duration::from_millis(config.hash_wait_ms),
            })),
            requests: Arc::new(guard::KeyedLimit::per_second(
                config.rate_per_sec,
                config.burst,
            )),
            conns: Default::default(),
            metrics: Default::default(),
        };
        let builder = SocketIo::builder().with_state(app.clone());
        let (router, closer): (axum::Router, Closer) = match &config.redis {
            None => {
                let (layer, io) = configure(builder, &config).build_layer();
                io.ns("/", realtime::on_connect.with(realtime::authenticate));
                io.ns(
                    papo_protocol::ADMIN_NAMESPACE,
                    realtime::on_admin_connect.with(realtime::authenticate_admin),
                );
                let _ = app
                    .disconnect_session
                    .set(kicker(io.clone(), app.conns.clone()));
                realtime::install(&io, &app);
                realtime::install_admin(&io, &app);
                (
                    http::routes()
                        .with_state(app.clone())
                        .layer(layer)
                        .layer(axum::middleware::from_fn(track(app.conns.clone()))),
                    Box::new(move || Box::pin(async move { io.close().await })),
                )
            }
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| StartError::Config(format!("bad Redis URL: {e}")))?;
                let adapter = RedisAdapterCtr::new_with_redis(&client)
                    .await
                    .map_err(|e| StartError::Config(format!("cannot reach Redis: {e}")))?;
                let (layer, io) =
                    configure(builder.with_adapter::<RedisAdapter<_>>(adapter), &config)
                        .build_layer();
                io.ns("/", realtime::on_connect.with(realtime::authenticate))
                    .await
                    .map_err(|e| StartError::Config(format!("Redis adapter: {e}")))?;
                io.ns(
                    papo_protocol::ADMIN_NAMESPACE,
                    realtime::on_admin_connect.with(realtime::authenticate_admin),
                )
                .await
                .map_err(|e| StartError::Config(format!("Redis adapter: {e}")))?;
                let _ = app
                    .disconnect_session
                    .set(kicker(io.clone(), app.conns.clone()));
                realtime::install(&io, &app);
                realtime::install_admin(&io, &app);
                (
                    http::routes()
                        .with_state(app.clone())
                        .layer(layer)
                        .layer(axum::middleware::from_fn(track(app.conns.clone()))),
                    Box::new(move || Box::pin(async move { io.close().await })),
                )
            }
        };

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
        let router = router
            .layer(cors)
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024));
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        Ok(Server {
            listener: transport::KillableListener(listener),
            router,
            closer,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.0.local_addr()
    }

    /// Serves until `shutdown` resolves, then closes every socket. Every reply already sent was
    /// committed first, so nothing acknowledged is lost.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let closer = self.closer;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let service = self
            .router
            .into_make_service_with_connect_info::<transport::ConnInfo>();
        let serve = axum::serve(self.listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(());
        });
        let closer = async move {
            if rx.await.is_ok() {
                tracing::info!("shutting down: closing sockets");
                closer().await;
            }
        };
        let (res, ()) = tokio::join!(serve, closer);
        if let Err(e) = res {
            tracing::error!(error = %e, "server error");
        }
    }
}

/// Most events a node reads at once to fill its cache after another node's commit.
const MAX_FILL: u64 = 1000;

/// Follows commits announced by every node sharing the store. For each stream this node's
/// sockets read, the new events are read from the database once and put in the node's cache,
/// then the stream's head moves, so the sockets' pumps find them in memory instead of each
/// reading the database.
async fn follow_commits(
    mut commits: tokio::sync::mpsc::UnboundedReceiver<(store::StreamKey, u64)>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
) {
    while let Some(first) = commits.recv().await {
        // Coalesce whatever is queued: only the newest sequence of each stream matters.
        let mut latest = std::collections::HashMap::from([first]);
        while let Ok((key, seq)) = commits.try_recv() {
            let e = latest.entry(key).or_insert(0);
            *e = (*e).max(seq);
        }
        for (key, seq) in latest {
            let Some(have) = hub.cached_through(key) else {
                continue; // nobody here reads that stream
            };
            if seq <= have {
                continue; // committed here: already in the cache
            }
            let from = have.max(seq.saturating_sub(MAX_FILL));
            match store.read_events(key, from, (seq - from) as usize).await {
                Ok(events) => hub.publish(events.into_iter().map(|e| (key, e)).collect()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fill the cache; readers will read the log")
                }
            }
            hub.advance(key, seq);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_token_secret() {
        let secret = "hunter2-hunter2-hunter2";
        let previous = "swordfish-swordfish-swordfish";
        let c = Config::try_parse_from([
            "papo-server",
            "--token-secret",
            secret,
            "--token-secret-previous",
            previous,
        ])
        .unwrap();
        assert_eq!(c.token_secret.as_ref().unwrap().expose_secret(), secret);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains(secret) && !shown.contains(previous),
            "{shown}"
        );
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    /// File modes exist on Unix only: this test is not built elsewhere.
    #[cfg(unix)]
    #[test]
    fn the_key_file_stays_private_through_rotations_even_over_a_crashed_ones_leftover() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("papo.db");
        let db = db.to_str().unwrap();
        let c = Config::try_parse_from(["papo-server", "--db", db, "rotate-token-key"]).unwrap();
        let mode = || {
            std::fs::metadata(format!("{db}.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        rotate_token_key(&c).unwrap();
        assert_eq!(mode(), 0o600);
        // A leftover of a crashed rotation, readable by all, does not lend its permissions.
        std::fs::write(format!("{db}.key.new"), "partial").unwrap();
        let open = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(format!("{db}.key.new"), open).unwrap();
        rotate_token_key(&c).unwrap();
        assert_eq!(mode(), 0o600);
    }

    #[test]
    fn rotation_rewrites_the_key_file_and_refuses_keys_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("papo.db");
        let db = db.to_str().unwrap();
        let c = Config::try_parse_from(["papo-server", "--db", db, "rotate-token-key"]).unwrap();
        assert!(matches!(c.command, Some(Command::RotateTokenKey)));
        // No key file yet: one is made, then rotated; twice keeps two keys.
        rotate_token_key(&c).unwrap();
        let first =
            auth::parse_key_file(&std::fs::read_to_string(format!("{db}.key")).unwrap()).unwrap();
        assert_eq!(first.len(), 2);
        let said = rotate_token_key(&c).unwrap();
        let second =
            auth::parse_key_file(&std::fs::read_to_string(format!("{db}.key")).unwrap()).unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!(second[1], first[0]);
        assert!(
            said.contains(&format!("dropped {}", auth::key_id(&first[1]))),
            "{said}"
        );
        // A broken key file is refused, not replaced.
        std::fs::write(format!("{db}.key"), "short\n").unwrap();
        assert!(rotate_token_key(&c)
            .unwrap_err()
            .to_string()
            .contains("too short"));
        let env = Config::try_parse_from([
            "papo-server",
            "--token-secret",
            "hunter2-hunter2-hunter2",
            "rotate-token-key",
        ])
        .unwrap();
        assert!(rotate_token_key(&env)
            .unwrap_err()
            .to_string()
            .contains("PAPO_TOKEN_SECRET_PREVIOUS"));
    }
}
