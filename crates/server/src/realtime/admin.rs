//! The `/admin` namespace: `admin:stats` pushed every second to the admins connected here (the
//! statistics of every node, shared through the database when there are several), and the
//! role checked again every few seconds, so that revoking it closes their sockets.

use std::time::{Duration, Instant};

use papo_protocol::{events, AdminStats, NodeStats, ADMIN_NAMESPACE};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::SocketIo;

use super::{session_room, AdminRef};
use crate::App;

/// How often `admin:stats` is pushed (and the counters turned into rates).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// A node whose statistics are older than this is left out (it stopped, or lost the database).
const NODE_ALIVE_MS: i64 = 5_000;
/// How often the database's size is measured (Postgres computes it by walking its files).
const SIZE_EVERY: Duration = Duration::from_secs(5);
/// How often each admin socket's role and session are checked again.
const ROLE_EVERY: Duration = Duration::from_secs(5);

pub async fn on_admin_connect<A: Adapter>(socket: SocketRef<A>) {
    let Some(AdminRef(admin)) = socket.extensions.get::<AdminRef>() else {
        let _ = socket.disconnect();
        return;
    };
    tracing::info!(admin = %admin.actor.username, sid = %socket.id, "admin connected");
    // Logging out or a revoked session closes this socket too.
    socket.join(session_room(&admin.session_id));
}

/// Starts the ticker: every second this node's counters become a [`NodeStats`]; with a shared
/// database it is recorded there and every live node's are read back; the admins connected
/// here get the whole [`AdminStats`].
pub fn install<A: Adapter>(io: &SocketIo<A>, app: &App) {
    let io = io.clone();
    let app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last = Instant::now();
        let mut size: Option<(Instant, u64)> = None;
        let mut role_checked = Instant::now();
        loop {
            tick.tick().await;
            let elapsed = last.elapsed();
            last = Instant::now();
            // A count, not the list: this runs every second whether or not an admin looks.
            let local_users = app.hub.local_online_count() as u64;
            let mine = app.metrics.snapshot(&app.node_id, local_users, elapsed);
            let nodes = if app.store.shared() {
                cluster(&app, mine).await
            } else {
                vec![mine]
            };
            let sockets = io
                .of(ADMIN_NAMESPACE)
                .map(|ns| ns.local().sockets())
                .unwrap_or_default();
            if sockets.is_empty() {
                continue;
            }
            if size.is_none_or(|(at, _)| at.elapsed() >= SIZE_EVERY) {
                match app.store.database_bytes().await {
                    Ok(bytes) => size = Some((Instant::now(), bytes)),
                    Err(e) => tracing::warn!(error = %e, "cannot measure the database"),
                }
            }
            let stats = AdminStats {
                at: crate::now_ms(),
                nodes,
                users_online: app.hub.online_count() as u64,
                database_bytes: size.map_or(0, |(_, b)| b),
            };
            let recheck = role_checked.elapsed() >= ROLE_EVERY;
            if recheck {
                role_checked = Instant::now();
            }
            for socket in sockets {
                if recheck && !still_admin(&app, &socket).await {
                    continue;
                }
                // A snapshot: one that finds the buffer full is simply skipped.
                if let Err(e) = socket.emit(events::ADMIN_STATS, &stats) {
                    tracing::debug!(sid = %socket.id, error = %e, "admin:stats not sent");
                }
            }
        }
    });
}

/// Records this node's statistics in the shared database and reads every live node's.
async fn cluster(app: &App, mine: NodeStats) -> Vec<NodeStats> {
    let json = match serde_json::to_string(&mine) {
        Ok(j) => j,
        Err(_) => return vec![mine],
    };
    match app
        .store
        .sync_node_stats(&app.node_id, json, NODE_ALIVE_MS)
        .await
    {
        Ok(all) => all
            .iter()
            .filter_map(|j| match serde_json::from_str::<NodeStats>(j) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable statistics of another node");
                    None
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot share this node's statistics");
            vec![mine]
        }
    }
}

/// Whether the socket's session still exists and its account still holds the role; if not,
/// the socket is closed.
async fn still_admin<A: Adapter>(app: &App, socket: &SocketRef<A>) -> bool {
    let Some(AdminRef(admin)) = socket.extensions.get::<AdminRef>() else {
        return false;
    };
    let ok = match app.store.session(&admin.session_id).await {
        Ok(Some(s)) => s.admin,
        Ok(None) => false,
        // Unknown: keep it; the next check decides.
        Err(_) => true,
    };
    if !ok {
        tracing::info!(admin = %admin.actor.username, "admin role or session gone: closing the admin socket");
        let _ = socket.clone().disconnect();
    }
    ok
}
