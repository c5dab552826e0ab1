//! `papo-cli`: the Papo client core from a terminal or a script.
//!
//! The cache lives in `--cache DIR` (env `PAPO_CACHE`) as `cache.sqlite3`. **CLI only:** the
//! session (tokens) is kept next to it in `session.json`, mode 0600; the desktop app keeps it in
//! the OS keyring instead. Output is JSON (one object per line for `tail`).

use clap::{Parser, Subcommand};
use papo_client::tokens::FileSessionStore;
use papo_client::{ConnectionState, Core, CoreConfig, CoreEvent};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

#[derive(Parser)]
#[command(name = "papo-cli", about = "Papo chat from the command line", version)]
struct Cli {
    /// Server URL.
    #[arg(
        long,
        env = "PAPO_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Directory of the cache (and, for the CLI, of the session file).
    #[arg(long, env = "PAPO_CACHE", global = true)]
    cache: Option<PathBuf>,
    /// Outbox requests per second (keep under the server's rate limit).
    #[arg(long, env = "PAPO_SEND_RATE", default_value_t = 20.0, global = true)]
    send_rate: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account and sign in.
    Register {
        username: String,
        /// Password (else env PAPO_PASSWORD, else read from stdin).
        #[arg(long, env = "PAPO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Sign in.
    Login {
        username: String,
        #[arg(long, env = "PAPO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Sign out (revokes the session).
    Logout,
    /// Delete the signed-in account on the server (every device is signed out), then sign out
    /// here and erase the cache.
    DeleteAccount {
        #[arg(long, env = "PAPO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Connection diagnostics as JSON: server, transport, round trip, attempts and the last
    /// error, cursor and epoch, outbox depth, the last packets received (names and sizes; never
    /// a token).
    Diag {
        /// Instead, open a WebSocket upgrade by hand and print the HTTP exchange (request and
        /// response headers), checking the server's Sec-WebSocket-Accept.
        #[arg(long)]
        handshake: bool,
        /// How long to wait for the connection and a ping's round trip.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Admin only: the `/admin` namespace (statistics, moderation).
    Admin {
        #[command(subcommand)]
        what: AdminCommand,
    },
    /// Print every event as a JSON line.
    Tail {
        /// Exit once the replay reached live.
        #[arg(long)]
        until_live: bool,
        /// Exit after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Public chat message, read like the app's chat composer: `/msg <user> <text>` sends a
    /// private message instead.
    Send {
        text: String,
        /// Reply to this public message (server id).
        #[arg(long)]
        reply_to: Option<i64>,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Private message.
    Dm {
        to: String,
        text: String,
        /// Reply to this DM of the same conversation (server id).
        #[arg(long)]
        reply_to: Option<i64>,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// New post.
    Post {
        text: String,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Like a post (server id).
    Like {
        post_id: i64,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Share a post (server id), with an optional comment.
    Share {
        post_id: i64,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Delete a post of mine (server id).
    DeletePost {
        post_id: i64,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Delete my share of a post.
    Unshare {
        post_id: i64,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Edit a chat message or DM of mine (server id, as `history` prints it).
    EditMessage {
        message_id: i64,
        text: String,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Delete a chat message or DM of mine (server id).
    DeleteMessage {
        message_id: i64,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Follow a user.
    Follow {
        username: String,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Stop following a user.
    Unfollow {
        username: String,
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Connect and wait until the outbox is empty.
    Flush {
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Full-text search in the cache (offline).
    Search {
        query: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A conversation from the cache (offline), oldest first.
    History {
        #[arg(default_value = "public")]
        conversation: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Who I am, cursor, outbox and unread counts (offline).
    Status,
}

fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("papo");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/papo");
    }
    PathBuf::from(".papo")
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print `admin:stats` as JSON lines for a while.
    Stats {
        /// How many snapshots to print.
        #[arg(long, default_value_t = 3)]
        count: usize,
    },
    /// Remove any post.
    RemovePost { post_id: i64 },
    /// Remove any comment.
    RemoveComment { comment_id: i64 },
    /// Suspend an account: its sessions end, its sockets close, sign-in is refused.
    Suspend { username: String },
    /// Lift a suspension.
    Unsuspend { username: String },
}

fn print(v: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn password(given: Option<String>) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAPO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            print(&serde_json::json!({ "error": e }));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    if let Command::Diag {
        handshake: true,
        seconds,
    } = cli.command
    {
        return handshake(&cli.server, seconds).await;
    }
    let dir = cli.cache.clone().unwrap_or_else(default_cache_dir);
    if matches!(
        cli.command,
        Command::Search { .. } | Command::History { .. } | Command::Status
    ) {
        // Offline reads: no connection at all, and SQLite off the async runtime.
        let path = dir.join("cache.sqlite3");
        return tokio::task::spawn_blocking(move || {
            let cache = papo_client::Cache::open(path).map_err(|e| e.to_string())?;
            offline(&cache, cli.command)
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let store = Arc::new(FileSessionStore::new(dir.join("session.json")));
    let mut config = CoreConfig::new(&cli.server, dir.join("cache.sqlite3"));
    config.supervisor.send_rate = cli.send_rate;
    config.supervisor.send_burst = cli.send_rate.max(1.0);
    let core = Core::start(config, store)
        .await
        .map_err(|e| e.to_string())?;
    let code = command(&core, cli.command).await;
    core.shutdown().await;
    code
}

async fn command(core: &Core, command: Command) -> Result<ExitCode, String> {
    let action = |r: Result<uuid::Uuid, papo_client::CoreError>| r.map_err(|e| e.to_string());
    match command {
        Command::Register {
            username,
            password: p,
        } => {
            let me = core
                .register(&username, &password(p)?)
                .await
                .map_err(|e| e.to_string())?;
            print(&serde_json::json!({ "signed_in": me }));
        }
        Command::Login {
            username,
            password: p,
        } => {
            let me = core
                .login(&username, &password(p)?)
                .await
                .map_err(|e| e.to_string())?;
            print(&serde_json::json!({ "signed_in": me }));
        }
        Command::Logout => {
            core.sign_out().await.map_err(|e| e.to_string())?;
            print(&serde_json::json!({ "signed_out": true }));
        }
        Command::DeleteAccount { password: p } => {
            core.delete_account(&password(p)?)
                .await
                .map_err(|e| e.to_string())?;
            print(&serde_json::json!({ "account_deleted": true }));
        }
        Command::Tail {
            until_live,
            seconds,
        } => return tail(core, until_live, seconds).await,
        Command::Diag { seconds, .. } => return diag(core, seconds).await,
        Command::Admin { what } => return admin(core, what).await,
        Command::Send {
            text,
            reply_to,
            wait,
        } => {
            let target = papo_client::compose::ComposeTarget::Conversation {
                id: papo_protocol::conversation::PUBLIC.to_string(),
            };
            let sent = core
                .compose(&target, &text, reply_to)
                .await
                .map_err(|e| e.to_string())?;
            return deliver(core, sent.client_id, wait).await;
        }
        Command::Dm {
            to,
            text,
            reply_to,
            wait,
        } => {
            let sent = core.send_dm_reply(&to, &text, reply_to).await;
            return deliver(core, action(sent)?, wait).await;
        }
        Command::Post { text, wait } => {
            return deliver(core, action(core.create_post(&text).await)?, wait).await
        }
        Command::Share {
            post_id,
            comment,
            wait,
        } => return deliver(core, action(core.share(post_id, &comment).await)?, wait).await,
        Command::DeletePost { post_id, wait } => {
            return deliver(core, action(core.delete_post(post_id).await)?, wait).await
        }
        Command::Unshare { post_id, wait } => {
            return deliver(core, action(core.unshare(post_id).await)?, wait).await
        }
        Command::Like { post_id, wait } => {
            return deliver(core, action(core.like(post_id).await)?, wait).await
        }
        Command::EditMessage {
            message_id,
            text,
            wait,
        } => {
            return deliver(
                core,
                action(core.edit_message(message_id, &text).await)?,
                wait,
            )
            .await
        }
        Command::DeleteMessage { message_id, wait } => {
            return deliver(core, action(core.delete_message(message_id).await)?, wait).await
        }
        Command::Follow { username, wait } => {
            return deliver(core, action(core.follow(&username).await)?, wait).await
        }
        Command::Unfollow { username, wait } => {
            return deliver(core, action(core.unfollow(&username).await)?, wait).await
        }
        Command::Flush { timeout } => return flush(core, timeout).await,
        Command::Search { .. } | Command::History { .. } | Command::Status => {
            unreachable!("offline commands are handled before the core starts")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn offline(cache: &papo_client::Cache, command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Search { query, limit } => {
            for hit in cache.search(&query, limit).map_err(|e| e.to_string())? {
                print(&hit);
            }
        }
        Command::History {
            conversation,
            limit,
        } => {
            let mut rows = cache
                .conversation_page(&conversation, None, limit)
                .map_err(|e| e.to_string())?;
            rows.reverse();
            for row in rows {
                print(&row);
            }
        }
        Command::Status => {
            let (cursor, epoch) = cache.resume_point().map_err(|e| e.to_string())?;
            let (pending, sent, failed) = cache.outbox_counts().map_err(|e| e.to_string())?;
            let me = cache.me().map_err(|e| e.to_string())?;
            let unread = cache.unread_counts().map_err(|e| e.to_string())?;
            print(&serde_json::json!({
                "me": me,
                "cursor": cursor,
                "epoch": epoch,
                // `failed` is the old name of `wedged`, kept for scripts.
                "outbox": { "pending": pending, "sent": sent, "wedged": failed, "failed": failed },
                "unread": unread,
            }));
        }
        _ => unreachable!(),
    }
    Ok(ExitCode::SUCCESS)
}

async fn tail(core: &Core, until_live: bool, seconds: Option<u64>) -> Result<ExitCode, String> {
    let mut rx = core.subscribe();
    print(&CoreEvent::Connection(core.connection_state()));
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        tokio::select! {
            r = next => match r {
                None => return Ok(ExitCode::SUCCESS),
                Some(Ok(ev)) => {
                    print(&ev);
                    match &ev {
                        CoreEvent::Sync(s) if until_live && s.state == papo_protocol::SyncState::Live => {
                            return Ok(ExitCode::SUCCESS)
                        }
                        CoreEvent::Connection(ConnectionState::SignedOut { .. }) => {
                            return Ok(ExitCode::from(4))
                        }
                        _ => {}
                    }
                }
                Some(Err(RecvError::Lagged(n))) => {
                    print(&serde_json::json!({ "event": "lagged", "data": { "missed": n } }))
                }
                Some(Err(RecvError::Closed)) => return Ok(ExitCode::SUCCESS),
            },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Waits (at most `seconds`) until the connection is up and a ping has come back, then prints
/// the diagnostics. Exit 0 when connected, 5 when not.
/// How long `admin` waits for the `/admin` connection to open.
const ADMIN_OPEN: Duration = Duration::from_secs(15);

/// `admin …`: opens `/admin`, does one thing, closes it. Exit 7 when the server refuses the
/// connection (not an admin).
async fn admin(core: &Core, what: AdminCommand) -> Result<ExitCode, String> {
    use papo_client::admin::{AdminAction, AdminState};
    let mut events = core.subscribe();
    core.admin_open().await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + ADMIN_OPEN;
    let mut wanted = match &what {
        AdminCommand::Stats { count } => *count,
        _ => 0,
    };
    let mut open = false;
    while !open || wanted > 0 {
        let ev = match tokio::time::timeout_at(
            deadline + Duration::from_secs(wanted as u64 * 2),
            events.recv(),
        )
        .await
        {
            Err(_) => return Err("timed out waiting for the /admin connection".into()),
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Err(RecvError::Closed)) => return Err("the core stopped".into()),
            Ok(Ok(ev)) => ev,
        };
        match ev {
            CoreEvent::Admin(AdminState::Open) => open = true,
            CoreEvent::Admin(AdminState::Refused { reason }) => {
                print(&serde_json::json!({ "admin": "refused", "reason": reason }));
                return Ok(ExitCode::from(7));
            }
            CoreEvent::AdminStats(s) if open && wanted > 0 => {
                print(&s);
                wanted -= 1;
            }
            _ => {}
        }
    }
    let action = match what {
        AdminCommand::Stats { .. } => None,
        AdminCommand::RemovePost { post_id } => Some(AdminAction::RemovePost { post_id }),
        AdminCommand::RemoveComment { comment_id } => {
            Some(AdminAction::RemoveComment { comment_id })
        }
        AdminCommand::Suspend { username } => Some(AdminAction::Suspend { username }),
        AdminCommand::Unsuspend { username } => Some(AdminAction::Unsuspend { username }),
    };
    let result = match &action {
        Some(a) => core.admin(a.clone()).await,
        None => Ok(()),
    };
    core.admin_close();
    match (action, result) {
        (None, _) => {}
        (Some(a), Ok(())) => print(&serde_json::json!({ "done": a })),
        (Some(_), Err(e)) => {
            print(&serde_json::json!({ "error": e.to_string(), "code": e.code().to_string() }));
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn diag(core: &Core, seconds: u64) -> Result<ExitCode, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let d = core.diagnostics().await.map_err(|e| e.to_string())?;
        let up = d.state == ConnectionState::Connected && d.rtt_ms.is_some();
        if up || tokio::time::Instant::now() >= deadline {
            print(&d);
            return Ok(if up {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(5)
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The GUID RFC 6455 appends to the key before hashing it into `Sec-WebSocket-Accept`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `diag --handshake`: the Engine.IO WebSocket upgrade done by hand over TCP, printed line by
/// line (`>` sent, `<` received), then whether the server's accept key is the one the key
/// asks for. Exit 0 for `101 Switching Protocols` with the right key, 6 otherwise.
async fn handshake(server: &str, seconds: u64) -> Result<ExitCode, String> {
    use base64::Engine as _;
    use sha1::Digest as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let first = server.split(',').next().unwrap_or(server).trim();
    let rest = first
        .strip_prefix("http://")
        .ok_or("--handshake speaks plain http:// only (use curl or openssl for https)")?;
    let host = rest.split('/').next().unwrap_or(rest);
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 || head.len() > 16 * 1024 {
                return Err(
                    "the server closed the connection before the end of its headers".into(),
                );
            }
            head.extend_from_slice(&buf[..n]);
        }
        let end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(head.len());
        Ok::<String, String>(String::from_utf8_lossy(&head[..end]).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(seconds), exchange)
        .await
        .map_err(|_| format!("no answer within {seconds} s"))??;
    for line in request.trim_end().lines() {
        println!("> {line}");
    }
    for line in response.lines() {
        println!("< {line}");
    }
    let status = response.lines().next().unwrap_or("");
    let switched = status.split_whitespace().nth(1) == Some("101");
    let accept = response.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim().to_string())
    });
    let expected = base64::engine::general_purpose::STANDARD
        .encode(sha1::Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
    let key_ok = accept.as_deref() == Some(expected.as_str());
    println!(
        "status: {}",
        if switched {
            "101 Switching Protocols"
        } else {
            status
        }
    );
    println!(
        "accept key: {} (expected base64(sha1(key + {WS_GUID})) = {expected})",
        if key_ok { "ok" } else { "MISMATCH" }
    );
    Ok(if switched && key_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(6)
    })
}

/// Waits until one outbox item is sent or failed. Exit codes: 0 sent, 2 failed, 3 still queued
/// (it stays in the outbox and goes out on the next run), 4 signed out.
async fn deliver(core: &Core, id: uuid::Uuid, wait: u64) -> Result<ExitCode, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let item = core
            .outbox_item(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("outbox item vanished")?;
        let state = item.state;
        let done = state != papo_client::outbox::OutboxState::Pending;
        let signed_out = matches!(core.connection_state(), ConnectionState::SignedOut { .. });
        if done || signed_out || tokio::time::Instant::now() >= deadline {
            print(&serde_json::json!({
                "client_id": id,
                "state": state,
                "error": item.error,
                "wedge": item.wedge,
                "connection": core.connection_state(),
            }));
            return Ok(ExitCode::from(match state {
                papo_client::outbox::OutboxState::Sent => 0,
                papo_client::outbox::OutboxState::Wedged => 2,
                _ if signed_out => 4,
                _ => 3,
            }));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Connects and waits until no outbox item is pending.
async fn flush(core: &Core, timeout: u64) -> Result<ExitCode, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let (pending, sent, failed) = core.outbox_counts().await.map_err(|e| e.to_string())?;
        let signed_out = matches!(core.connection_state(), ConnectionState::SignedOut { .. });
        if pending == 0 || signed_out || tokio::time::Instant::now() >= deadline {
            print(&serde_json::json!({
                "pending": pending, "sent": sent, "wedged": failed, "failed": failed,
                "connection": core.connection_state(),
            }));
            return Ok(ExitCode::from(if pending == 0 {
                0
            } else if signed_out {
                4
            } else {
                3
            }));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
