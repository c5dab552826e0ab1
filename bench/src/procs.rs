//! Starting the servers under test, and reading their CPU and memory from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::params;

pub const SECRET: &str = "papo-bench-secret-0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// papo-server, SQLite on disk, synchronous=FULL (its default).
    Papo,
    /// papo-server with its database on tmpfs and synchronous=NORMAL: storage in RAM. Papo has
    /// no mode without a database, so this is the closest to "no persistence".
    PapoTmpfs,
    /// papo-server as `Papo`, with jemalloc preloaded (LD_PRELOAD) instead of glibc malloc: the
    /// effect of an allocator change without touching the server.
    PapoJemalloc,
    /// Node socket.io 4.8 + better-sqlite3 (WAL, synchronous=FULL).
    Node,
    /// Node socket.io 4.8, no database.
    NodeNoPersist,
    /// tokio-tungstenite broadcast: no Socket.IO framing, no persistence.
    RawWs,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Papo => "papo",
            Kind::PapoTmpfs => "papo-tmpfs",
            Kind::PapoJemalloc => "papo-jemalloc",
            Kind::Node => "node",
            Kind::NodeNoPersist => "node-nopersist",
            Kind::RawWs => "raw-ws",
        }
    }
}

pub const JEMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

#[derive(Clone)]
pub struct Paths {
    pub papo_server: PathBuf,
    pub node_peer: PathBuf,
    pub self_exe: PathBuf,
    pub work: PathBuf,
    /// Papo runs under heaptrack's preload library, writing its raw data here.
    pub heap_raw: Option<PathBuf>,
}

/// heaptrack's preload library and interpreter (Debian's `heaptrack` package).
pub const HEAPTRACK_PRELOAD: &str = "/usr/lib/heaptrack/libheaptrack_preload.so";
pub const HEAPTRACK_INTERPRET: &str = "/usr/lib/heaptrack/libexec/heaptrack_interpret";

pub struct ServerProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub dir: PathBuf,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // SIGTERM by pid (only the process we started), then make sure.
        unsafe_kill(self.pid, 15);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Users u0 … u{n-1} with one session each, written straight into a Papo database whose schema
/// the server created (argon2 registration would take ~50 ms a user); returns their tokens.
pub fn seed_papo(paths: &Paths, db: &Path, users: usize) -> Vec<String> {
    // Let papo-server create and migrate the database, then stop it.
    {
        let mut c = Command::new(&paths.papo_server);
        c.arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(db)
            .arg("--token-secret")
            .arg(SECRET)
            .env("PAPO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = c.spawn().expect("start papo-server to create the schema");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ok = lines.any(|l| l.map(|l| l.starts_with("listening on")).unwrap_or(false));
        unsafe_kill(child.id(), 15);
        let _ = child.wait();
        assert!(ok, "papo-server did not start");
    }
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let now = now_ms();
    let tx = conn.transaction().unwrap();
    {
        let mut u = tx
            .prepare("INSERT INTO users (id, username, password_hash, created_at) VALUES (?1, ?2, 'x', ?3)")
            .unwrap();
        let mut s = tx
            .prepare("INSERT INTO sessions (id, user_id, refresh_hash, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for i in 0..users {
            let id = i as i64 + 1;
            u.execute(params![id, format!("u{i}"), now]).unwrap();
            s.execute(params![
                format!("s{i}"),
                id,
                format!("h{i}"),
                now + 86_400_000,
                now
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    tokens(users)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Access tokens for u0 … u{n-1} (valid for 6 hours): standard HS256 JWTs (the `jsonwebtoken`
/// crate) with the claims papo-server reads (`sub` = user id, `name`, `sid`, `iat`, `exp`) and
/// the `kid` it gives [`SECRET`] (base64url SHA-256 of the secret, 16 characters).
pub fn tokens(users: usize) -> Vec<String> {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use sha2::Digest;
    let now = now_ms() / 1000;
    let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(SECRET.as_bytes()))[..16]
        .to_string();
    let header = Header {
        kid: Some(kid),
        ..Header::new(Algorithm::HS256)
    };
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    (0..users)
        .map(|i| {
            let claims = serde_json::json!({"sub": (i + 1).to_string(), "name": format!("u{i}"), "sid": format!("s{i}"), "iat": now, "exp": now + 6 * 3600});
            jsonwebtoken::encode(&header, &claims, &key).expect("HS256 signs")
        })
        .collect()
}

/// Starts a server; for Papo the database is seeded with `users` users first.
pub fn start(kind: Kind, paths: &Paths, users: usize) -> (ServerProc, Vec<String>) {
    let base = if kind == Kind::PapoTmpfs {
        PathBuf::from("/dev/shm")
    } else {
        paths.work.clone()
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("papo-bench-{}-", kind.name()))
        .tempdir_in(&base)
        .expect("tempdir")
        .keep();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let (mut cmd, toks) = match kind {
        Kind::Papo | Kind::PapoTmpfs | Kind::PapoJemalloc => {
            let db = dir.join("papo.db");
            let toks = seed_papo(paths, &db, users);
            let mut c = Command::new(&paths.papo_server);
            c.arg("--bind")
                .arg("127.0.0.1:0")
                .arg("--db")
                .arg(&db)
                .arg("--token-secret")
                .arg(SECRET)
                .arg("--sqlite-sync")
                .arg(if kind == Kind::Papo { "full" } else { "normal" })
                .arg("--rate-per-sec")
                .arg("100000")
                .arg("--burst")
                .arg("100000")
                .env("PAPO_LOG", "warn");
            if kind == Kind::PapoJemalloc {
                c.env("LD_PRELOAD", JEMALLOC);
            }
            if let Some(raw) = &paths.heap_raw {
                c.env("LD_PRELOAD", HEAPTRACK_PRELOAD)
                    .env("DUMP_HEAPTRACK_OUTPUT", raw);
            }
            (c, toks)
        }
        Kind::Node | Kind::NodeNoPersist => {
            let mut c = Command::new("node");
            c.arg(paths.node_peer.join("server.js"))
                .arg("--port")
                .arg("0")
                .arg("--db")
                .arg(dir.join("node.db"))
                .arg("--secret")
                .arg(SECRET)
                .arg("--sync")
                .arg("full");
            if kind == Kind::NodeNoPersist {
                c.arg("--no-persist");
            }
            (c, tokens(users))
        }
        Kind::RawWs => {
            let mut c = Command::new(&paths.self_exe);
            c.arg("ws-baseline").arg("--bind").arg("127.0.0.1:0");
            (c, Vec::new())
        }
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.trim().parse::<SocketAddr>().expect("address");
                }
            }
            _ => panic!(
                "{} exited before listening; see {}",
                kind.name(),
                dir.join("server.log").display()
            ),
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (
        ServerProc {
            child,
            addr,
            pid,
            dir,
        },
        toks,
    )
}

/// CPU time (user + system) of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = s.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // after the command: state(0) ... utime(11) stime(12)
    let ut: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (ut + st) / 100.0
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("VmRSS:") {
            return v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    0
}

/// CPU time the whole machine spent busy (all cores, all processes), in seconds.
pub fn machine_busy_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = s.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return 0.0;
    }
    let total: f64 = v.iter().take(8).sum();
    (total - v[3] - v[4]) / 100.0
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Waits until the process uses less than `pct`% of a core over 500 ms windows (max `max`).
pub async fn settle(pid: u32, pct: f64, max: Duration) {
    let deadline = Instant::now() + max;
    let mut last = cpu_secs(pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while Instant::now() < deadline {
        let now = cpu_secs(pid);
        if (now - last) / 0.5 * 100.0 < pct {
            return;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ------------------------------------------------------------------------------------------------
// Scale-out: several papo-server nodes on one Postgres database + one Redis
// ------------------------------------------------------------------------------------------------

/// Where the cluster scenario finds Postgres and Redis: `PAPO_BENCH_POSTGRES_URL` /
/// `PAPO_BENCH_REDIS_URL`, falling back to the test suite's `PAPO_TEST_POSTGRES_URL` /
/// `PAPO_TEST_REDIS_URL` (`eval "$(bash scripts/test-services.sh)"` prints those). The
/// Postgres role must be allowed to CREATE DATABASE: every run gets a fresh one.
pub struct ScaleOutEnv {
    pub postgres: String,
    pub redis: String,
}

impl ScaleOutEnv {
    pub fn from_env() -> Result<Self, String> {
        let get = |a: &str, b: &str| {
            std::env::var(a)
                .ok()
                .or_else(|| std::env::var(b).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let pg = get("PAPO_BENCH_POSTGRES_URL", "PAPO_TEST_POSTGRES_URL");
        let redis = get("PAPO_BENCH_REDIS_URL", "PAPO_TEST_REDIS_URL");
        match (pg, redis) {
            (Some(postgres), Some(redis)) => Ok(ScaleOutEnv { postgres, redis }),
            (pg, redis) => Err(format!(
                "the cluster scenario needs Postgres and Redis; missing: {}. Set \
                 PAPO_BENCH_POSTGRES_URL (a role that may CREATE DATABASE) and \
                 PAPO_BENCH_REDIS_URL (Redis >= 7, '?protocol=resp3'), or run \
                 `eval \"$(bash scripts/test-services.sh)\"` first (PAPO_TEST_* are used as a fallback)",
                [
                    pg.is_none().then_some("PAPO_BENCH_POSTGRES_URL"),
                    redis.is_none().then_some("PAPO_BENCH_REDIS_URL"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            )),
        }
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
pub fn pg_url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A database created for one run and dropped (FORCE) when this value is dropped.
pub struct FreshPg {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl FreshPg {
    pub fn create(env: &ScaleOutEnv, tag: &str) -> Result<Self, String> {
        let name = format!(
            "papo_bench_{}_{}_{}",
            std::process::id(),
            now_ms(),
            tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        psql(&env.postgres, &format!("CREATE DATABASE {name}"))?;
        Ok(FreshPg {
            admin_url: env.postgres.clone(),
            url: pg_url_with_db(&env.postgres, &name),
            name,
        })
    }

    /// Users u0 … u{n-1} with one session each (the schema must exist: a node has started),
    /// the same rows `seed_papo` writes into SQLite; returns their tokens.
    pub fn seed(&self, users: usize) -> Result<Vec<String>, String> {
        let now = now_ms();
        let n = users as i64;
        psql(
            &self.url,
            &format!(
                "BEGIN;
                 INSERT INTO users (id, username, password_hash, created_at)
                   SELECT i + 1, 'u' || i, 'x', {now} FROM generate_series(0, {n} - 1) AS i;
                 INSERT INTO sessions (id, user_id, refresh_hash, expires_at, created_at)
                   SELECT 's' || i, i + 1, 'h' || i, {exp}, {now} FROM generate_series(0, {n} - 1) AS i;
                 SELECT setval('users_id_seq', GREATEST({n}, 1));
                 COMMIT;",
                exp = now + 86_400_000
            ),
        )?;
        Ok(tokens(users))
    }
}

impl Drop for FreshPg {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}

/// Starts one papo-server node on a Postgres database (and Redis, when given), with the
/// same flags as `start(Kind::Papo, …)` otherwise.
pub fn start_pg_node(paths: &Paths, label: &str, db_url: &str, redis: Option<&str>) -> ServerProc {
    let dir = tempfile::Builder::new()
        .prefix(&format!("papo-bench-{label}-"))
        .tempdir_in(&paths.work)
        .expect("tempdir")
        .keep();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut c = Command::new(&paths.papo_server);
    c.arg("--bind")
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(db_url)
        .arg("--token-secret")
        .arg(SECRET)
        .arg("--rate-per-sec")
        .arg("100000")
        .arg("--burst")
        .arg("100000")
        .env("PAPO_LOG", "warn");
    if let Some(r) = redis {
        c.arg("--redis").arg(r);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start papo-server: {e}"));
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.trim().parse::<SocketAddr>().expect("address");
                }
            }
            _ => panic!(
                "papo-server ({label}) exited before listening; see {}",
                dir.join("server.log").display()
            ),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    ServerProc {
        child,
        addr,
        pid,
        dir,
    }
}

/// Lines of a node's log at WARN or ERROR level so far (the servers run with PAPO_LOG=warn).
pub fn log_problems(srv: &ServerProc) -> (usize, Option<String>) {
    let Ok(s) = std::fs::read_to_string(srv.dir.join("server.log")) else {
        return (0, None);
    };
    let bad: Vec<&str> = s
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    (bad.len(), bad.first().map(|l| strip_ansi(l, 300)))
}

/// `s` without terminal colour codes (`ESC [ … m`), at most `max` characters.
fn strip_ansi(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.chars().take(max).collect()
}

fn stat_fields(pid: u32) -> Option<(String, Vec<String>)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f = s[close + 2..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((comm, f))
}

/// CPU seconds used so far by the machine's Postgres (every `postgres` process, plus what the
/// postmaster collected from backends that already exited) and Redis (`redis-server`)
/// processes: the shared backend the nodes talk to.
pub fn backend_cpu_secs() -> f64 {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let procs: Vec<(u32, String, Vec<String>)> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat_fields(pid).map(|(c, f)| (pid, c, f)))
        .collect();
    let is_backend = |c: &str| c == "postgres" || c.starts_with("redis-server");
    let num = |f: &[String], i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    let mut ticks = 0.0;
    for (_, comm, f) in &procs {
        if !is_backend(comm) {
            continue;
        }
        ticks += num(f, 11) + num(f, 12);
        // The postmaster (a postgres process whose parent is not one) reaps exited backends.
        let ppid = f.get(1).and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
        let parent_is_pg = procs.iter().any(|(p, c, _)| *p == ppid && c == "postgres");
        if comm == "postgres" && !parent_is_pg {
            ticks += num(f, 13) + num(f, 14);
        }
    }
    ticks / 100.0
}
