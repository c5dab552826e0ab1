//! The server scenarios: idle memory, public fan-out, private messages, reconnect storm.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::lg::{
    self, connect_many, drop_all, now_us, ClientSpec, Cmd, Proto, Shared, Target, Track,
};
use crate::procs::{self, cpu_secs, loadavg, machine_busy_secs, rss_kib, Kind, Paths};

/// Handshakes in flight while connecting.
const PARALLEL: usize = 256;
/// The same for the cluster scenario (see `cluster`).
const CLUSTER_PARALLEL: usize = 32;

fn target(kind: Kind, addr: std::net::SocketAddr) -> Target {
    Target {
        addr,
        proto: if kind == Kind::RawWs {
            Proto::Raw
        } else {
            Proto::Sio
        },
    }
}

fn auth(tok: &str) -> String {
    json!({ "token": tok }).to_string()
}

fn specs(kind: Kind, n: usize, toks: &[String], offset: usize) -> Vec<ClientSpec> {
    (offset..offset + n)
        .map(|i| ClientSpec {
            idx: i,
            auth: (kind != Kind::RawWs).then(|| auth(&toks[i])),
            track: None,
        })
        .collect()
}

fn pad(len: usize) -> String {
    "x".repeat(len)
}

fn ms(us: u64) -> f64 {
    (us as f64 / 100.0).round() / 10.0
}

// ------------------------------------------------------------------------------------------------
// 1. Idle connections
// ------------------------------------------------------------------------------------------------

/// With `one_user`, every socket signs in as the same user (so Papo's presence snapshot, a list
/// of everyone online sent to each new socket, stays one name long).
pub async fn idle(paths: &Paths, kind: Kind, levels: &[usize], one_user: bool) -> Vec<Value> {
    let max = *levels.iter().max().unwrap();
    let (srv, toks) = procs::start(kind, paths, max);
    let t = target(kind, srv.addr);
    procs::settle(srv.pid, 5.0, Duration::from_secs(3)).await;
    let rss0 = rss_kib(srv.pid);
    let shared = Arc::new(Shared::default());
    let mut clients = Vec::new();
    let mut out = Vec::new();
    let mut have = 0;
    for &n in levels {
        let t0 = Instant::now();
        let added0 = have;
        let mut sp = specs(kind, n - have, &toks, have);
        if one_user {
            for s in &mut sp {
                s.auth = Some(auth(&toks[0]));
            }
        }
        let (mut c, failed, errors) = connect_many(&t, sp, &shared, PARALLEL).await;
        let secs = t0.elapsed().as_secs_f64();
        clients.append(&mut c);
        have = n;
        procs::settle(srv.pid, 3.0, Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a0 = machine_busy_secs();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let other = ((machine_busy_secs() - a0) / 0.5 * 100.0).max(0.0);
        let rss = rss_kib(srv.pid);
        let held = shared.connected.load(Relaxed);
        let per = (rss.saturating_sub(rss0)) as f64 * 1024.0 / held.max(1) as f64;
        let label = if one_user {
            format!("{}-one-user", kind.name())
        } else {
            kind.name().to_string()
        };
        eprintln!(
            "idle {:<14} n={n:>6} held={held:>6} failed={failed} rss={rss} KiB per-conn={:.1} KB ({secs:.1}s) {errors:?}",
            label,
            per / 1000.0
        );
        out.push(json!({
            "server": label, "n": n, "held": held, "failed": failed,
            "rss0_kib": rss0, "rss_kib": rss, "per_conn_bytes": per.round(),
            "connect_secs": secs, "connect_rate": (n - added0) as f64 / secs,
            "errors": errors, "load": loadavg(), "machine_cpu_pct_idle": other,
        }));
        if failed > 0 && held < n / 2 {
            break;
        }
    }
    drop_all(clients).await;
    drop(srv);
    out
}

// ------------------------------------------------------------------------------------------------
// 2. Public-room fan-out at a rising rate
// ------------------------------------------------------------------------------------------------

pub struct FanoutOpts {
    pub step_secs: f64,
    pub drain_secs: f64,
    pub targets_dps: Vec<f64>,
    pub slo_p99_ms: f64,
    /// A server's run stops after the first step over this p99 (or under 100% delivery).
    pub stop_p99_ms: f64,
    /// Also measure the CPU of the machine's Postgres and Redis processes (cluster scenario).
    pub backend_cpu: bool,
}

pub async fn fanout(paths: &Paths, kind: Kind, n: usize, o: &FanoutOpts) -> Vec<Value> {
    let (srv, toks) = procs::start(kind, paths, n);
    let t = target(kind, srv.addr);
    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let (clients, failed, errors) =
        connect_many(&t, specs(kind, n, &toks, 0), &shared, PARALLEL).await;
    let connect_secs = t0.elapsed().as_secs_f64();
    procs::settle(srv.pid, 10.0, Duration::from_secs(20)).await;
    eprintln!(
        "fanout {:<14} n={n}: connected {} (failed {failed}) in {connect_secs:.1}s {errors:?}",
        kind.name(),
        shared.connected.load(Relaxed)
    );
    let senders: Vec<&lg::Client> = clients.iter().flatten().take(100.min(n)).collect();
    let out = fanout_steps(
        kind.name(),
        kind == Kind::RawWs,
        n,
        &[srv.pid],
        &senders,
        &shared,
        o,
        |r| {
            r["connect_secs"] = json!(connect_secs);
            r["connect_failed"] = json!(failed);
        },
    )
    .await;
    drop_all(clients).await;
    drop(srv);
    out
}

/// The rising-rate steps of a fan-out run: `senders` write public chat at `target_dps / n`
/// messages per second; every connected client must receive every message. `pids` are the
/// server processes (their CPU is summed). `extra` adds fields to each row.
#[allow(clippy::too_many_arguments)]
async fn fanout_steps(
    label: &str,
    raw: bool,
    n: usize,
    pids: &[u32],
    senders: &[&lg::Client],
    shared: &Shared,
    o: &FanoutOpts,
    extra: impl Fn(&mut Value),
) -> Vec<Value> {
    let server_cpu = || pids.iter().map(|&p| cpu_secs(p)).sum::<f64>();
    let receivers = shared.connected.load(Relaxed) as u64;
    let mut out = Vec::new();
    // The coarse ladder doubles; around the first step that misses the objective it is refined
    // by ×1.25 steps (from the last passing step up, or down from a first step that misses), so
    // the knee is known to within 25% instead of 2×.
    let mut queue: std::collections::VecDeque<(f64, bool)> =
        o.targets_dps.iter().map(|&d| (d, false)).collect();
    let mut last_ok: Option<f64> = None;
    let mut refined = false;
    let mut step = 0;
    while let Some((dps, refining)) = queue.pop_front() {
        step += 1;
        if step >= lg::MAX_STEPS {
            break;
        }
        let rate = dps / n as f64; // messages per second
        let cpu0 = server_cpu();
        let me0 = cpu_secs(std::process::id());
        let db0 = if o.backend_cpu {
            procs::backend_cpu_secs()
        } else {
            0.0
        };
        let all0 = machine_busy_secs();
        let disc0 = shared.disconnected.load(Relaxed);
        let load = loadavg();
        let start = Instant::now();
        let mut sent: u64 = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let filler = pad(40);
        while start.elapsed().as_secs_f64() < o.step_secs {
            tick.tick().await;
            let due = (rate * start.elapsed().as_secs_f64()) as u64;
            while sent < due {
                let text = format!("B{step}|{}|{filler}", now_us());
                let frame = if raw {
                    text
                } else {
                    format!(
                        "42[\"chat:send\",{{\"id\":\"{}\",\"text\":\"{text}\"}}]",
                        uuid::Uuid::new_v4()
                    )
                };
                let _ = senders[(sent as usize) % senders.len()]
                    .tx
                    .send(Cmd::Send(frame));
                sent += 1;
            }
        }
        let send_secs = start.elapsed().as_secs_f64();
        let expected = sent * receivers;
        let st = &shared.steps[step];
        let drain_start = Instant::now();
        while st.delivered.load(Relaxed) < expected
            && drain_start.elapsed().as_secs_f64() < o.drain_secs
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wall = start.elapsed().as_secs_f64();
        let delivered = st.delivered.load(Relaxed);
        let cpu = (server_cpu() - cpu0) / wall * 100.0;
        let me = (cpu_secs(std::process::id()) - me0) / wall * 100.0;
        let db = if o.backend_cpu {
            ((procs::backend_cpu_secs() - db0) / wall * 100.0).max(0.0)
        } else {
            0.0
        };
        let other = ((machine_busy_secs() - all0) / wall * 100.0 - cpu - me - db).max(0.0);
        let pct = if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64 * 100.0
        };
        let (p50, p99, max) = (st.hist.quantile(0.5), st.hist.quantile(0.99), st.hist.max());
        let ok = pct >= 100.0 && ms(p99) <= o.slo_p99_ms;
        eprintln!(
            "fanout {:<14} n={n} step {step}: {rate:.1} msg/s -> {:.0} deliveries/s, {pct:.2}% p50 {:.1} p99 {:.1} max {:.1} ms, cpu {cpu:.0}%{} lg {me:.0}% other {other:.0}% {}",
            label,
            delivered as f64 / send_secs,
            ms(p50), ms(p99), ms(max),
            if o.backend_cpu { format!(" pg+redis {db:.0}%") } else { String::new() },
            if ok { "ok" } else { "KNEE" }
        );
        let mut row = json!({
            "server": label, "n": n, "receivers": receivers, "step": step,
            "msg_rate": rate, "target_dps": dps, "sent": sent, "expected": expected,
            "delivered": delivered, "delivery_pct": pct,
            "dps": delivered as f64 / send_secs,
            "p50_ms": ms(p50), "p99_ms": ms(p99), "max_ms": ms(max),
            "server_cpu_pct": cpu, "loadgen_cpu_pct": me, "other_cpu_pct": other,
            "server_rss_kib": pids.iter().map(|&p| rss_kib(p)).sum::<u64>(),
            "disconnected": shared.disconnected.load(Relaxed) - disc0,
            "sustained": ok,
            "refining": refining,
            "load": load,
        });
        if o.backend_cpu {
            row["backend_cpu_pct"] = json!(db);
        }
        extra(&mut row);
        out.push(row);
        if pct < 100.0 || ms(p99) > o.stop_p99_ms {
            break;
        }
        if ok {
            last_ok = Some(last_ok.map_or(dps, |b: f64| b.max(dps)));
        } else if !refined {
            refined = true;
            let finer: Vec<f64> = match last_ok {
                Some(b) => vec![b * 1.25, b * 1.5625],
                None => vec![dps / 1.5625, dps / 1.25],
            };
            for d in finer.into_iter().rev().filter(|&d| d < dps) {
                queue.push_front((d, true));
            }
        }
        // Let stragglers of this step land before the next one starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    out
}

// ------------------------------------------------------------------------------------------------
// 2b. Scale-out: public fan-out over several nodes sharing Postgres + Redis
// ------------------------------------------------------------------------------------------------

/// One configuration of the cluster scenario.
#[derive(Clone, Copy, Debug)]
pub enum Deploy {
    /// One node, SQLite on disk (the default deployment).
    Sqlite1,
    /// `nodes` nodes on one fresh Postgres database and one Redis.
    Pg(usize),
}

impl Deploy {
    pub fn label(self) -> String {
        match self {
            Deploy::Sqlite1 => "papo-sqlite-1".into(),
            Deploy::Pg(k) => format!("papo-pg-{k}"),
        }
    }
}

/// Public fan-out with `n` clients spread round-robin over the nodes of `deploy` (client i on
/// node i mod k; the 100 senders too, so writes come from every node).
pub async fn cluster(
    paths: &Paths,
    env: &procs::ScaleOutEnv,
    deploy: Deploy,
    n: usize,
    o: &FanoutOpts,
) -> Vec<Value> {
    let label = deploy.label();
    let mut _db = None;
    let (nodes, toks) = match deploy {
        Deploy::Sqlite1 => {
            let (srv, toks) = procs::start(Kind::Papo, paths, n);
            (vec![srv], toks)
        }
        Deploy::Pg(k) => {
            let db = match procs::FreshPg::create(env, &format!("{label}_{n}")) {
                Ok(db) => db,
                Err(e) => {
                    eprintln!("cluster {label} n={n}: SKIPPED: {e}");
                    return vec![json!({"server": label, "n": n, "skipped": e})];
                }
            };
            // The first node creates the schema (migrations under an advisory lock); then the
            // users are seeded and the other nodes start.
            let mut nodes = vec![procs::start_pg_node(
                paths,
                &format!("{label}-1"),
                &db.url,
                Some(&env.redis),
            )];
            let toks = match db.seed(n) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("cluster {label} n={n}: SKIPPED: seeding failed: {e}");
                    return vec![json!({"server": label, "n": n, "skipped": e})];
                }
            };
            for i in 2..=k {
                nodes.push(procs::start_pg_node(
                    paths,
                    &format!("{label}-{i}"),
                    &db.url,
                    Some(&env.redis),
                ));
            }
            _db = Some(db);
            (nodes, toks)
        }
    };
    let k = nodes.len();
    let pids: Vec<u32> = nodes.iter().map(|s| s.pid).collect();
    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let mut by_node: Vec<Vec<Option<lg::Client>>> = Vec::new();
    let mut failed = 0;
    let mut errors = Vec::new();
    for (j, srv) in nodes.iter().enumerate() {
        let sp: Vec<ClientSpec> = (0..n)
            .filter(|i| i % k == j)
            .map(|i| ClientSpec {
                idx: i,
                auth: Some(auth(&toks[i])),
                track: None,
            })
            .collect();
        // Fewer handshakes in flight than elsewhere: each one is a session lookup, and on
        // Postgres every concurrent lookup beyond the node's idle pool opens a connection.
        let (c, f, e) =
            connect_many(&target(Kind::Papo, srv.addr), sp, &shared, CLUSTER_PARALLEL).await;
        by_node.push(c);
        failed += f;
        errors.extend(e);
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    for &p in &pids {
        procs::settle(p, 10.0, Duration::from_secs(10)).await;
    }
    eprintln!(
        "cluster {label:<14} n={n}: {k} node(s), connected {} (failed {failed}) in {connect_secs:.1}s {errors:?}",
        shared.connected.load(Relaxed)
    );
    // Client i is by_node[i % k][i / k]: take the first 100 live ones in index order.
    let senders: Vec<&lg::Client> = (0..n)
        .filter_map(|i| by_node[i % k].get(i / k).and_then(|c| c.as_ref()))
        .take(100.min(n))
        .collect();
    let problems = |nodes: &[procs::ServerProc]| {
        let mut count = 0;
        let mut first = None;
        for s in nodes {
            let (c, f) = procs::log_problems(s);
            count += c;
            first = first.or(f);
        }
        (count, first)
    };
    let (warn0, _) = problems(&nodes);
    let mut out = fanout_steps(&label, false, n, &pids, &senders, &shared, o, |r| {
        r["nodes"] = json!(k);
        r["backend"] = json!(match deploy {
            Deploy::Sqlite1 => "sqlite",
            Deploy::Pg(_) => "postgres+redis",
        });
        r["connect_secs"] = json!(connect_secs);
        r["connect_failed"] = json!(failed);
    })
    .await;
    let (warn1, first) = problems(&nodes);
    if let Some(last) = out.last_mut() {
        last["server_log_warnings"] = json!(warn1 - warn0);
        last["server_log_first_warning"] = json!(first);
    }
    for c in by_node {
        drop_all(c).await;
    }
    drop(nodes);
    out
}

// ------------------------------------------------------------------------------------------------
// 3. Private messages
// ------------------------------------------------------------------------------------------------

pub async fn dms(
    paths: &Paths,
    kind: Kind,
    n: usize,
    rates: &[f64],
    step_secs: f64,
    slo: f64,
) -> Vec<Value> {
    let (srv, toks) = procs::start(kind, paths, n);
    let t = target(kind, srv.addr);
    let shared = Arc::new(Shared::default());
    let (clients, failed, _) = connect_many(&t, specs(kind, n, &toks, 0), &shared, PARALLEL).await;
    procs::settle(srv.pid, 10.0, Duration::from_secs(20)).await;
    let live: Vec<(usize, &lg::Client)> = clients
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
        .collect();
    let mut out = Vec::new();
    let mut rng = rand::thread_rng();
    // A warm-up at the first rate (step 0, not reported): the first seconds of traffic pay for
    // lazily built state (Node's JIT, statement caches, page caches) on either server.
    let ladder = std::iter::once((0, rates[0], 2.0_f64.min(step_secs))).chain(
        rates
            .iter()
            .enumerate()
            .map(|(k, &r)| (k + 1, r, step_secs)),
    );
    for (step, rate, step_secs) in ladder {
        use rand::Rng;
        let cpu0 = cpu_secs(srv.pid);
        let me0 = cpu_secs(std::process::id());
        let all0 = machine_busy_secs();
        let load = loadavg();
        let ok0 = shared.replies_ok.load(Relaxed);
        let err0 = shared.replies_err.load(Relaxed);
        let start = Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while start.elapsed().as_secs_f64() < step_secs {
            tick.tick().await;
            let due = (rate * start.elapsed().as_secs_f64()) as u64;
            while sent < due {
                let (_, from) = live[rng.gen_range(0..live.len())];
                let to = loop {
                    let (j, c) = live[rng.gen_range(0..live.len())];
                    if !std::ptr::eq(c, from) {
                        break j;
                    }
                };
                let frame = format!(
                    "42[\"dm:send\",{{\"id\":\"{}\",\"to\":\"u{to}\",\"text\":\"D{step}|{}|{to}|hello there\"}}]",
                    uuid::Uuid::new_v4(),
                    now_us()
                );
                let _ = from.tx.send(Cmd::Send(frame));
                sent += 1;
            }
        }
        let send_secs = start.elapsed().as_secs_f64();
        let st = &shared.steps[step];
        let d0 = Instant::now();
        while st.delivered.load(Relaxed) < sent && d0.elapsed().as_secs_f64() < 3.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wall = start.elapsed().as_secs_f64();
        let delivered = st.delivered.load(Relaxed);
        let pct = delivered as f64 / sent.max(1) as f64 * 100.0;
        let (p50, p99, max) = (st.hist.quantile(0.5), st.hist.quantile(0.99), st.hist.max());
        let cpu = (cpu_secs(srv.pid) - cpu0) / wall * 100.0;
        let me = (cpu_secs(std::process::id()) - me0) / wall * 100.0;
        let other = ((machine_busy_secs() - all0) / wall * 100.0 - cpu - me).max(0.0);
        let ok = pct >= 100.0 && ms(p99) <= slo;
        if step == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        eprintln!(
            "dm {:<14} n={n} step {step}: {rate} msg/s sent {sent} delivered {pct:.2}% p50 {:.1} p99 {:.1} max {:.1} ms cpu {cpu:.0}% {}",
            kind.name(), ms(p50), ms(p99), ms(max), if ok { "ok" } else { "KNEE" }
        );
        out.push(json!({
            "server": kind.name(), "n": n, "step": step, "rate": rate, "sent": sent,
            "delivered": delivered, "delivery_pct": pct,
            "throughput": delivered as f64 / send_secs,
            "p50_ms": ms(p50), "p99_ms": ms(p99), "max_ms": ms(max),
            "server_cpu_pct": cpu, "loadgen_cpu_pct": me, "other_cpu_pct": other, "replies_ok": shared.replies_ok.load(Relaxed) - ok0,
            "replies_err": shared.replies_err.load(Relaxed) - err0,
            "sustained": ok, "connect_failed": failed, "load": load,
        }));
        if !ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop_all(clients).await;
    drop(srv);
    out
}

// ------------------------------------------------------------------------------------------------
// 4. Reconnect storm
// ------------------------------------------------------------------------------------------------

pub struct StormOpts {
    pub n: usize,
    /// Public messages sent while everyone is connected, before the drop.
    pub before: u64,
    /// Public messages sent while everyone is offline.
    pub offline: u64,
    /// Messages per second sent during the reconnect (live traffic across the seam).
    pub during_rate: f64,
    pub during_secs: f64,
    pub timeout_secs: f64,
}

/// One extra connection (the last user) that writes public chat and waits for its replies.
async fn send_chat(sender: &lg::Client, shared: &Shared, count: u64, rate: f64) {
    let ok0 = shared.replies_ok.load(Relaxed);
    let start = Instant::now();
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while sent < count {
        tick.tick().await;
        let due = ((rate * start.elapsed().as_secs_f64()) as u64).min(count);
        while sent < due {
            let f = format!(
                "42[\"chat:send\",{{\"id\":\"{}\",\"text\":\"storm {sent}\"}}]",
                uuid::Uuid::new_v4()
            );
            let _ = sender.tx.send(Cmd::Send(f));
            sent += 1;
        }
    }
    let d = Instant::now();
    while shared.replies_ok.load(Relaxed) - ok0 < count && d.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn storm(paths: &Paths, kind: Kind, o: &StormOpts) -> Value {
    let n = o.n;
    let (srv, toks) = procs::start(kind, paths, n + 1);
    let t = target(kind, srv.addr);
    let shared = Arc::new(Shared::default());
    let tracks: Vec<Arc<Track>> = (0..n).map(|_| Arc::new(Track::default())).collect();
    let mk = |cursor: bool, epoch: &Option<String>| -> Vec<ClientSpec> {
        (0..n)
            .map(|i| {
                let tr = &tracks[i];
                let a = if cursor {
                    json!({"token": toks[i], "epoch": epoch,
                           "cursor": {"public": tr.public.load(Relaxed), "private": tr.private.load(Relaxed)}})
                } else {
                    json!({"token": toks[i]})
                };
                ClientSpec { idx: i, auth: Some(a.to_string()), track: Some(tr.clone()) }
            })
            .collect()
    };
    let (clients, failed, errs) = connect_many(&t, mk(false, &None), &shared, PARALLEL).await;
    let sender_shared = Arc::new(Shared::default());
    let sender = lg::spawn_client(
        t.clone(),
        ClientSpec {
            idx: n,
            auth: Some(auth(&toks[n])),
            track: None,
        },
        sender_shared.clone(),
    )
    .await
    .expect("sender connects");
    procs::settle(srv.pid, 10.0, Duration::from_secs(20)).await;
    eprintln!(
        "storm {:<14}: {} connected (failed {failed}) {errs:?}",
        kind.name(),
        shared.connected.load(Relaxed)
    );
    // Traffic while connected, then everyone drops at once.
    send_chat(&sender, &sender_shared, o.before, 500.0).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    drop_all(clients).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Traffic while they are gone.
    send_chat(&sender, &sender_shared, o.offline, 1000.0).await;
    let head = o.before + o.offline;
    let epoch = shared.epoch.lock().unwrap().clone();
    shared.catch_up_target.store(head, Relaxed);
    for tr in &tracks {
        if tr.public.load(Relaxed) >= head {
            tr.caught_up_at.store(1, Relaxed);
        }
    }
    let behind_before: u64 = tracks
        .iter()
        .map(|t| head - t.public.load(Relaxed).min(head))
        .sum();
    let cpu0 = cpu_secs(srv.pid);
    let me0 = cpu_secs(std::process::id());
    let all0 = machine_busy_secs();
    let load = loadavg();
    // Everyone reconnects at once with its cursor, while live traffic goes on.
    let t0 = now_us();
    let start = Instant::now();
    let reconnect = {
        let t = t.clone();
        let shared = shared.clone();
        let specs = mk(true, &epoch);
        tokio::spawn(async move { connect_many(&t, specs, &shared, 1024).await })
    };
    send_chat(
        &sender,
        &sender_shared,
        (o.during_rate * o.during_secs) as u64,
        o.during_rate,
    )
    .await;
    let final_head = head + (o.during_rate * o.during_secs) as u64;
    let (clients, failed2, errs2) = reconnect.await.unwrap();
    let connected_secs = start.elapsed().as_secs_f64();
    // Wait until every client has caught up with the head at the time of the reconnect and
    // then with the final head.
    while start.elapsed().as_secs_f64() < o.timeout_secs
        && tracks.iter().any(|t| t.public.load(Relaxed) < final_head)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_secs = start.elapsed().as_secs_f64();
    let mut catch: Vec<f64> = tracks
        .iter()
        .map(|t| match t.caught_up_at.load(Relaxed) {
            0 => f64::INFINITY,
            1 => 0.0,
            at => at.saturating_sub(t0) as f64 / 1e6,
        })
        .collect();
    catch.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| catch[((catch.len() as f64 - 1.0) * p) as usize];
    let gaps: u64 = tracks.iter().map(|t| t.gaps.load(Relaxed)).sum();
    let lost_gaps: u64 = tracks.iter().map(|t| t.lost.load(Relaxed)).sum();
    let short: u64 = tracks
        .iter()
        .map(|t| final_head - t.public.load(Relaxed).min(final_head))
        .sum();
    let dups: u64 = tracks.iter().map(|t| t.dups.load(Relaxed)).sum();
    let caught = catch.iter().filter(|c| c.is_finite()).count();
    let cpu = (cpu_secs(srv.pid) - cpu0) / all_secs * 100.0;
    let me = (cpu_secs(std::process::id()) - me0) / all_secs * 100.0;
    let other = ((machine_busy_secs() - all0) / all_secs * 100.0 - cpu - me).max(0.0);
    eprintln!(
        "storm {:<14}: {n} clients, {behind_before} events owed; all caught up with head {head}: {} of {n}, p50 {:.2}s p99 {:.2}s max {:.2}s; final head {final_head} reached in {all_secs:.2}s; lost {} (gaps {gaps}), dups {dups}, reconnect failed {failed2} {errs2:?}",
        kind.name(), caught, q(0.5), q(0.99), q(1.0), lost_gaps + short
    );
    let v = json!({
        "server": kind.name(), "n": n, "before": o.before, "offline": o.offline,
        "events_owed": behind_before, "head_at_reconnect": head, "final_head": final_head,
        "caught_up": caught, "catch_up_p50_s": q(0.5), "catch_up_p99_s": q(0.99),
        "catch_up_max_s": if q(1.0).is_finite() { json!(q(1.0)) } else { json!(null) },
        "all_final_secs": all_secs, "reconnect_connect_secs": connected_secs,
        "lost": lost_gaps + short, "gaps": gaps, "duplicates_ignored": dups,
        "reconnect_failed": failed2, "errors": errs2, "server_cpu_pct": cpu, "loadgen_cpu_pct": me, "other_cpu_pct": other, "load": load,
    });
    drop_all(clients).await;
    let _ = sender.tx.send(Cmd::Drop);
    drop(srv);
    v
}

// ------------------------------------------------------------------------------------------------
// 5. What an idle connection holds: a heap profile
// ------------------------------------------------------------------------------------------------

/// Frames that only move memory around (allocators, containers, the standard library): the
/// owner of an allocation is the nearest frame to it that is not one of these.
const PLUMBING: &[&str] = &[
    "alloc::",
    "core::",
    "std::",
    "hashbrown::",
    "bytes::",
    "smallvec::",
    "malloc",
    "calloc",
    "realloc",
    "__rust",
    "__libc",
    "operator new",
    "<unknown>",
    "??",
    "_start",
    "main",
];

fn plumbing(frame: &str) -> bool {
    let f = frame.trim_start_matches('<');
    // Empty, unresolved (an address), or a v0-mangled standard library symbol.
    f.is_empty()
        || f.starts_with("0x")
        || f.starts_with("_RN")
        || PLUMBING.iter().any(|p| f.starts_with(p))
}

/// A frame as heaptrack prints it, with Rust's legacy-mangling escapes decoded and the hash
/// suffix dropped.
fn clean_frame(frame: &str) -> String {
    let mut f = frame.trim().to_string();
    if let Some(i) = f.rfind("::h") {
        if f.len() - i == 19 && f[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) {
            f.truncate(i);
        }
    }
    for (a, b) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u3b$", ";"),
        ("$u22$", "\""),
        ("..", "::"),
    ] {
        f = f.replace(a, b);
    }
    f.strip_prefix('_')
        .filter(|r| r.starts_with('<'))
        .map(str::to_string)
        .unwrap_or(f)
}

/// Papo with `n` idle connections (distinct users) under heaptrack: what is allocated and still
/// held once they are all connected and the server is idle (the server is killed there, so
/// heaptrack's "leaked" cost is exactly that heap), by the function that allocated it and by
/// crate, per connection.
pub async fn heap(paths: &Paths, n: usize) -> Value {
    if !std::path::Path::new(procs::HEAPTRACK_PRELOAD).exists() {
        return json!({ "skipped": "heaptrack is not installed (Debian package heaptrack)" });
    }
    let raw = paths
        .work
        .join(format!("papo-heap-{}.raw", std::process::id()));
    let _ = std::fs::remove_file(&raw);
    let mut p = paths.clone();
    p.heap_raw = Some(raw.clone());
    let (srv, toks) = procs::start(Kind::Papo, &p, n);
    let t = target(Kind::Papo, srv.addr);
    procs::settle(srv.pid, 5.0, Duration::from_secs(3)).await;
    let rss0 = rss_kib(srv.pid);
    let shared = Arc::new(Shared::default());
    let (clients, failed, _) =
        connect_many(&t, specs(Kind::Papo, n, &toks, 0), &shared, PARALLEL).await;
    procs::settle(srv.pid, 3.0, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = shared.connected.load(Relaxed).max(1) as u64;
    let rss_per_conn = rss_kib(srv.pid).saturating_sub(rss0) as f64 * 1024.0 / held as f64;
    eprintln!("heap papo n={n}: held {held} (failed {failed}), RSS +{rss_per_conn:.0} B/conn");
    // Killed while idle: what heaptrack saw allocated and not freed is what the idle server held.
    procs::unsafe_kill(srv.pid, 9);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(srv);
    drop_all(clients).await;
    let gz = raw.with_extension("gz");
    let stacks = raw.with_extension("stacks");
    let sh = |cmd: String| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    sh(format!(
        "{} < {} | gzip -c > {}",
        procs::HEAPTRACK_INTERPRET,
        raw.display(),
        gz.display()
    ));
    let summary = sh(format!(
        "heaptrack_print -f {} -p 0 -a 0 -T 0 -F {} --flamegraph-cost-type leaked",
        gz.display(),
        stacks.display()
    ));
    let peak_line = summary
        .lines()
        .filter(|l| {
            l.starts_with("peak heap memory consumption") || l.starts_with("total memory leaked")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut by_fn: std::collections::HashMap<String, u64> = Default::default();
    let mut by_crate: std::collections::HashMap<String, u64> = Default::default();
    let mut total = 0u64;
    for line in std::fs::read_to_string(&stacks).unwrap_or_default().lines() {
        let Some((stack, bytes)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(bytes) = bytes.parse::<u64>() else {
            continue;
        };
        total += bytes;
        // Root first, leaf last: the owner is the last frame that is not plumbing.
        let owner = stack
            .split(';')
            .map(clean_frame)
            .rev()
            .find(|f| !plumbing(f))
            .unwrap_or_else(|| "(allocator only)".to_string());
        let krate = owner
            .trim_start_matches('<')
            .split("::")
            .next()
            .unwrap_or("?")
            .split(" (")
            .next()
            .unwrap_or("?")
            .to_string();
        *by_fn.entry(owner).or_default() += bytes;
        *by_crate.entry(krate).or_default() += bytes;
    }
    let top = |m: std::collections::HashMap<String, u64>, k: usize| -> Vec<Value> {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v.into_iter()
            .take(k)
            .map(|(name, b)| json!({ "name": name, "bytes": b, "per_conn_bytes": b as f64 / held as f64 }))
            .collect()
    };
    for f in [&raw, &gz, &stacks] {
        let _ = std::fs::remove_file(f);
    }
    json!({
        "n": n, "held": held, "rss_per_conn_bytes": rss_per_conn,
        "heaptrack_summary": peak_line,
        "peak_heap_bytes": total, "per_conn_bytes": total as f64 / held as f64,
        "by_crate": top(by_crate, 20), "by_function": top(by_fn, 30),
    })
}
