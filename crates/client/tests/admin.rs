//! The core's `/admin` connection against the real `papo-server` process: the role from the
//! server's CLI, refused to others, statistics, moderation applied in every cache, and a
//! suspension that signs the user's devices out as suspended while keeping their cache.

mod common;

use common::*;
use papo_client::admin::{AdminAction, AdminState};
use papo_client::{ConnectionState, Core, CoreErrorCode, CoreEvent};
use papo_protocol::ErrorCode;
use std::process::Command;
use std::time::Duration;
use tokio::sync::broadcast::Receiver;

const PASSWORD: &str = "correct-horse-battery";

fn grant(server: &ServerProc, command: &str, username: &str) {
    let out = Command::new(server_bin())
        .arg("--db")
        .arg(&server.db)
        .arg(command)
        .arg(username)
        .env("PAPO_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The next `/admin` state other than `connecting`.
async fn admin_state(events: &mut Receiver<CoreEvent>) -> AdminState {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(CoreEvent::Admin(s)) = events.recv().await {
                if s != AdminState::Connecting {
                    return s;
                }
            }
        }
    })
    .await
    .expect("an /admin state")
}

async fn next_stats(events: &mut Receiver<CoreEvent>) -> papo_protocol::AdminStats {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(CoreEvent::AdminStats(s)) = events.recv().await {
                return s;
            }
        }
    })
    .await
    .expect("admin:stats within 5 s")
}

async fn connected(core: &Core) {
    wait_state(core, Duration::from_secs(20), |s| {
        matches!(s, ConnectionState::Connected)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_moderates_from_the_core_and_the_suspended_user_is_signed_out_keeping_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (moderator, _) = core(&url, &dir.path().join("mod.sqlite3")).await;
    moderator.register("moder", PASSWORD).await.unwrap();
    let (ana, _) = core(&url, &dir.path().join("ana.sqlite3")).await;
    ana.register("ana", PASSWORD).await.unwrap();
    connected(&moderator).await;
    connected(&ana).await;

    // Not an admin yet: the page's connection is refused for good, and actions fail at once.
    assert!(!moderator.is_admin().await.unwrap());
    let mut events = moderator.subscribe();
    moderator.admin_open().await.unwrap();
    assert_eq!(
        admin_state(&mut events).await,
        AdminState::Refused {
            reason: "forbidden".into()
        }
    );
    let err = moderator
        .admin(AdminAction::Suspend {
            username: "ana".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        CoreErrorCode::Client(papo_client::ClientErrorCode::AdminClosed)
    );

    // Granted: the next connection's sync says so, and /admin opens.
    grant(&server, "grant-admin", "moder");
    // The role shows from the next connection on: a server restart makes one.
    server.restart();
    eventually("the role in the cache", Duration::from_secs(30), || {
        moderator.cache().is_admin().unwrap()
    })
    .await;
    assert!(moderator.is_admin().await.unwrap());
    connected(&ana).await;
    moderator.admin_open().await.unwrap();
    assert_eq!(admin_state(&mut events).await, AdminState::Open);
    let stats = next_stats(&mut events).await;
    assert_eq!(stats.nodes.len(), 1);
    assert!(stats.nodes[0].connections >= 2, "{stats:?}");

    // A post and a comment of ana's, removed: every cache applies it.
    ana.create_post("spam").await.unwrap();
    let post = loop {
        let page = ana.feed_page(None, 10).await.unwrap();
        if let Some(id) = page.first().and_then(|p| p.server_id) {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ana.comment(post, "spam too").await.unwrap();
    let comment = loop {
        if let Some(id) = ana
            .comments(post)
            .await
            .unwrap()
            .first()
            .and_then(|c| c.server_id)
        {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    moderator
        .admin(AdminAction::RemoveComment {
            comment_id: comment,
        })
        .await
        .unwrap();
    let again = moderator
        .admin(AdminAction::RemoveComment {
            comment_id: comment,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), CoreErrorCode::Server(ErrorCode::NotFound));
    for c in [&ana, &moderator] {
        let mut tries = 0;
        loop {
            let rows = c.comments(post).await.unwrap();
            if rows.len() == 1 && rows[0].removed {
                assert_eq!(rows[0].text, "");
                break;
            }
            tries += 1;
            assert!(tries < 500, "the removed comment in every cache: {rows:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    moderator
        .admin(AdminAction::RemovePost { post_id: post })
        .await
        .unwrap();

    // Suspended: ana's device is signed out as suspended, keeps its cache, cannot sign in.
    moderator
        .admin(AdminAction::Suspend {
            username: "ana".into(),
        })
        .await
        .unwrap();
    wait_state(&ana, Duration::from_secs(20), |s| {
        matches!(
            s,
            ConnectionState::SignedOut {
                suspended: true,
                ..
            }
        )
    })
    .await;
    assert!(
        !ana.comments(post).await.unwrap().is_empty(),
        "a suspension keeps the cache"
    );
    let refused = ana.login("ana", PASSWORD).await.unwrap_err();
    assert_eq!(
        refused.code(),
        CoreErrorCode::Server(ErrorCode::AccountSuspended)
    );
    moderator
        .admin(AdminAction::Unsuspend {
            username: "ana".into(),
        })
        .await
        .unwrap();
    ana.login("ana", PASSWORD).await.unwrap();
    connected(&ana).await;

    // Revoked: the next request is refused as forbidden, and the connection closes for good.
    grant(&server, "revoke-admin", "moder");
    let err = moderator
        .admin(AdminAction::Suspend {
            username: "ana".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), CoreErrorCode::Server(ErrorCode::Forbidden));
    moderator.admin_close();
}
