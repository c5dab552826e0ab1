//! `papo-bench`: the Papo benchmark suite. See docs/benchmarks.md; run everything with
//! `bench/run.sh`.

mod baseline;
mod client_core;
mod lg;
mod procs;
mod scen;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use procs::Kind;

#[derive(Parser)]
#[command(
    name = "papo-bench",
    about = "Papo benchmark suite (loopback only, bounded duration)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the server scenarios against Papo, the Node peer and the raw WebSocket baseline,
    /// plus the client-core benchmark, and writes one JSON file.
    Run {
        /// Comma-separated: idle,fanout,dm,storm,client (and the extra idle-jemalloc: Papo's idle
        /// memory with jemalloc preloaded, run with idle; and cluster: public fan-out over 3
        /// nodes on Postgres + Redis vs 1 node, which needs PAPO_BENCH_POSTGRES_URL and
        /// PAPO_BENCH_REDIS_URL, or the PAPO_TEST_* ones)
        #[arg(long, default_value = "idle,fanout,dm,storm,client")]
        scenarios: String,
        #[arg(long, default_value = "bench/results/latest.json")]
        out: PathBuf,
        #[arg(long, default_value = "target/release/papo-server")]
        papo_server: PathBuf,
        #[arg(long, default_value = "bench/node-peer")]
        node_peer: PathBuf,
        /// Where the servers' databases go (a disk, not tmpfs).
        #[arg(long, default_value = "/var/tmp")]
        work: PathBuf,
        /// Seconds of sending per fan-out / DM step.
        #[arg(long, default_value_t = 4.0)]
        step_secs: f64,
        /// Messages in the client-core cache.
        #[arg(long, default_value_t = 1_000_000)]
        client_messages: usize,
        /// A small, fast run (to check the machinery): fewer clients, shorter steps.
        #[arg(long)]
        quick: bool,
    },
    /// The raw WebSocket broadcast baseline server.
    WsBaseline {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
    },
    /// Only the client-core benchmark.
    Client {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::WsBaseline { bind } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(baseline::serve(bind));
        }
        Cmd::Client { messages, keep } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            let v = rt.block_on(client_core::run(messages, keep));
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
        }
        Cmd::Run {
            scenarios,
            out,
            papo_server,
            node_peer,
            work,
            step_secs,
            client_messages,
            quick,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            let paths = procs::Paths {
                papo_server: std::fs::canonicalize(&papo_server)
                    .expect("papo-server binary (build it first)"),
                node_peer: std::fs::canonicalize(&node_peer).expect("node peer folder"),
                self_exe: std::env::current_exe().unwrap(),
                work,
                heap_raw: None,
            };
            let want: Vec<&str> = scenarios.split(',').map(str::trim).collect();
            let v = rt.block_on(run_all(
                &paths,
                &want,
                step_secs,
                client_messages,
                quick,
                &out,
            ));
            if let Some(dir) = out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&out, serde_json::to_string_pretty(&v).unwrap()).unwrap();
            eprintln!("wrote {}", out.display());
        }
    }
}

fn save_partial(out: &std::path::Path, v: &Value) {
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(out, serde_json::to_string_pretty(v).unwrap());
}

async fn run_all(
    paths: &procs::Paths,
    want: &[&str],
    step_secs: f64,
    client_messages: usize,
    quick: bool,
    out: &std::path::Path,
) -> Value {
    let started = Instant::now();
    let mut res = json!({
        "started_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "load_at_start": procs::loadavg(),
        "quick": quick,
        "step_secs": step_secs,
        "idle": [], "fanout": [], "dm": [], "storm": [], "client": null, "cluster": [],
    });
    let servers = [Kind::Papo, Kind::Node];
    if want.contains(&"idle") {
        let levels: Vec<usize> = if quick {
            vec![500, 1000]
        } else {
            vec![1000, 5000, 15000, 19000]
        };
        let mut kinds = vec![Kind::Papo, Kind::Node, Kind::RawWs];
        if want.contains(&"idle-jemalloc") && std::path::Path::new(procs::JEMALLOC).exists() {
            kinds.push(Kind::PapoJemalloc);
        }
        for k in kinds {
            let rows = scen::idle(paths, k, &levels, false).await;
            res["idle"].as_array_mut().unwrap().extend(rows);
            save_partial(out, &res);
        }
        // Papo again with every socket signed in as one user: separates the presence snapshot.
        let rows = scen::idle(paths, Kind::Papo, &levels, true).await;
        res["idle"].as_array_mut().unwrap().extend(rows);
        save_partial(out, &res);
    }
    if want.contains(&"heap") {
        let n = if quick { 500 } else { 5000 };
        res["heap"] = scen::heap(paths, n).await;
        save_partial(out, &res);
    }
    if want.contains(&"fanout") {
        let opts = scen::FanoutOpts {
            step_secs,
            drain_secs: 3.0,
            targets_dps: vec![
                25_000.0, 50_000.0, 100_000.0, 200_000.0, 400_000.0, 800_000.0,
            ],
            slo_p99_ms: 250.0,
            stop_p99_ms: 2000.0,
            backend_cpu: false,
        };
        let ns: Vec<usize> = if quick {
            vec![500]
        } else {
            vec![1000, 5000, 10000]
        };
        for &n in &ns {
            for k in [Kind::Papo, Kind::Node, Kind::RawWs] {
                let rows = scen::fanout(paths, k, n, &opts).await;
                res["fanout"].as_array_mut().unwrap().extend(rows);
                save_partial(out, &res);
            }
        }
        // Transport vs storage: the same at 5k with storage in RAM / no storage.
        let n = if quick { 500 } else { 5000 };
        for k in [Kind::PapoTmpfs, Kind::NodeNoPersist] {
            let rows = scen::fanout(paths, k, n, &opts).await;
            res["fanout"].as_array_mut().unwrap().extend(rows);
            save_partial(out, &res);
        }
    }
    if want.contains(&"dm") {
        let n = if quick { 500 } else { 5000 };
        for k in [Kind::Papo, Kind::Node, Kind::PapoTmpfs] {
            let rows = scen::dms(
                paths,
                k,
                n,
                // ×2 up to where one commit per DM ran out, then ×1.25 towards the target.
                &[
                    500.0, 1000.0, 2000.0, 2500.0, 3200.0, 4000.0, 5000.0, 6400.0, 8000.0, 10000.0,
                    12500.0, 16000.0,
                ],
                step_secs,
                // docs/benchmarks.md's target: durable DMs at p99 ≤ 50 ms.
                50.0,
            )
            .await;
            res["dm"].as_array_mut().unwrap().extend(rows);
            save_partial(out, &res);
        }
    }
    if want.contains(&"storm") {
        // 5,000 clients, and the 19,000 of the target.
        let sizes: &[usize] = if quick { &[500] } else { &[5000, 19000] };
        for &n in sizes {
            let o = scen::StormOpts {
                n,
                before: 100,
                offline: 1000,
                during_rate: 50.0,
                during_secs: 3.0,
                timeout_secs: 60.0,
            };
            for k in servers {
                let v = scen::storm(paths, k, &o).await;
                res["storm"].as_array_mut().unwrap().push(v);
                save_partial(out, &res);
            }
        }
    }
    if want.contains(&"cluster") {
        cluster(paths, quick, &mut res, out).await;
    }
    if want.contains(&"client") {
        let m = if quick { 100_000 } else { client_messages };
        res["client"] = client_core::run(m, None).await;
    }
    res["load_at_end"] = json!(procs::loadavg());
    res["total_secs"] = json!(started.elapsed().as_secs_f64());
    res
}

/// Scale-out: the same public fan-out on one node with SQLite, one node with Postgres + Redis,
/// and three nodes sharing that Postgres + Redis, at rising rates (3 s steps, 5k to 400k
/// deliveries/s).
async fn cluster(paths: &procs::Paths, quick: bool, res: &mut Value, out: &std::path::Path) {
    let env = match procs::ScaleOutEnv::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cluster: SKIPPED: {e}");
            res["cluster_skipped"] = json!(e);
            return;
        }
    };
    res["cluster_env"] = json!({
        "postgres": redact(&env.postgres),
        "redis": redact(&env.redis),
    });
    let opts = scen::FanoutOpts {
        step_secs: if quick { 2.0 } else { 3.0 },
        drain_secs: 3.0,
        targets_dps: vec![
            5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0, 200_000.0, 400_000.0,
        ],
        slo_p99_ms: 250.0,
        stop_p99_ms: 2000.0,
        backend_cpu: true,
    };
    let ns: Vec<usize> = if quick { vec![300] } else { vec![1000, 3000] };
    for &n in &ns {
        for d in [
            scen::Deploy::Sqlite1,
            scen::Deploy::Pg(1),
            scen::Deploy::Pg(3),
        ] {
            let rows = scen::cluster(paths, &env, d, n, &opts).await;
            res["cluster"].as_array_mut().unwrap().extend(rows);
            save_partial(out, res);
        }
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            let user = cred.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
