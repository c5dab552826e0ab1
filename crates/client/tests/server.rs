//! The client core against the real `papo-server` process.

mod common;

use common::*;
use papo_client::cache::LocalState;
use papo_client::tokens::{FileSessionStore, SessionStore};
use papo_client::{ConnectionState, CoreEvent};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct-horse-battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_exactly_once_in_order_through_a_server_kill_mid_burst() {
    let dir = tempfile::tempdir().unwrap();
    // A generous rate limit: this test is about the kill, not about pacing.
    let mut server = ServerProc::start(
        dir.path(),
        &[
            ("PAPO_RATE", "100000"),
            ("PAPO_BURST", "100000"),
            // WAL + NORMAL still survives a process kill (not a power cut), and is much faster.
            ("PAPO_SQLITE_SYNC", "normal"),
        ],
    );
    let url = server.url();
    let (ana, _) = core(&url, &dir.path().join("ana.sqlite3")).await;
    ana.register("ana", PASSWORD).await.unwrap();
    wait_state(&ana, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;

    let mut senders = Vec::new();
    for name in ["bia", "caio"] {
        let mut config = fast_config(&url, &dir.path().join(format!("{name}.sqlite3")));
        config.supervisor.send_rate = 100_000.0;
        config.supervisor.send_burst = 100_000.0;
        let c = core_with(config).await;
        c.register(name, PASSWORD).await.unwrap();
        for i in 0..2500 {
            c.send_chat(&format!("{name}-{i:04}")).await.unwrap();
        }
        senders.push(c);
    }

    let received = || {
        ana.cache()
            .conversation_page("public", None, 10_000)
            .unwrap()
            .len()
    };
    eventually("part of the burst", Duration::from_secs(60), || {
        received() >= 1000
    })
    .await;
    server.kill();
    let at_kill = received();
    assert!(at_kill < 5000, "the burst finished before the kill");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();

    eventually("the whole burst", Duration::from_secs(120), || {
        received() >= 5000
    })
    .await;
    for c in &senders {
        eventually(
            "senders' outboxes to drain",
            Duration::from_secs(30),
            || c.cache().outbox_counts().unwrap().0 == 0,
        )
        .await;
        assert_eq!(c.cache().outbox_counts().unwrap(), (0, 2500, 0));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut rows = ana
        .cache()
        .conversation_page("public", None, 100_000)
        .unwrap();
    rows.reverse();
    assert_eq!(rows.len(), 5000, "exactly once");
    let ids: HashSet<_> = rows.iter().map(|r| r.server_id.unwrap()).collect();
    assert_eq!(ids.len(), 5000);
    rows.sort_by_key(|r| r.server_id);
    for name in ["bia", "caio"] {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.sender == name)
            .map(|r| r.text.clone())
            .collect();
        let expected: Vec<_> = (0..2500).map(|i| format!("{name}-{i:04}")).collect();
        assert_eq!(mine, expected, "{name}'s messages in order");
    }
    // The sender's own copies were confirmed in place, not duplicated.
    let bia_rows = senders[0]
        .cache()
        .conversation_page("public", None, 100_000)
        .unwrap();
    assert_eq!(bia_rows.len(), 5000);
    assert!(bia_rows
        .iter()
        .all(|r| r.state == LocalState::Sent && r.server_id.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_written_offline_survive_a_restart_of_the_core_and_are_delivered_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let cache_dir = dir.path().join("ana");
    let cli = env!("CARGO_BIN_EXE_papo-cli");
    let out = std::process::Command::new(cli)
        .args(["--server", &url, "--cache"])
        .arg(&cache_dir)
        .args(["register", "ana"])
        .env("PAPO_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    server.kill();

    // The app writes 200 actions while the server is down, then closes.
    {
        let store: Arc<dyn SessionStore> =
            Arc::new(FileSessionStore::new(cache_dir.join("session.json")));
        let core =
            papo_client::Core::start(fast_config(&url, &cache_dir.join("cache.sqlite3")), store)
                .await
                .unwrap();
        for i in 0..200 {
            core.send_chat(&format!("offline-{i:03}")).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(core.cache().outbox_counts().unwrap(), (200, 0, 0));
        core.shutdown().await;
    }

    // A new process of the app starts before the server returns.
    let mut flush = tokio::process::Command::new(cli)
        .args(["--server", &url, "--cache"])
        .arg(&cache_dir)
        .args(["--send-rate", "25", "flush", "--timeout", "90"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();
    let status = tokio::time::timeout(Duration::from_secs(100), flush.wait())
        .await
        .expect("flush finished")
        .unwrap();
    assert!(status.success(), "flush exit {status:?}");

    // Another user sees each message exactly once, in order.
    let (bia, _) = core(&url, &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();
    let expected: Vec<_> = (0..200).map(|i| format!("offline-{i:03}")).collect();
    eventually("bia to see the messages", Duration::from_secs(20), || {
        texts(&bia, "public").len() >= 200
    })
    .await;
    assert_eq!(texts(&bia, "public"), expected);
    // ... and the author's cache has them all sent, with server ids.
    let cache = papo_client::Cache::open(cache_dir.join("cache.sqlite3")).unwrap();
    assert_eq!(cache.outbox_counts().unwrap(), (0, 200, 0));
    let mut rows = cache.conversation_page("public", None, 1000).unwrap();
    rows.reverse();
    assert_eq!(
        rows.iter().map(|r| r.text.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(rows
        .iter()
        .all(|r| r.state == LocalState::Sent && r.server_id.is_some()));
}

/// A TCP proxy that can stop forwarding without closing anything.
struct Proxy {
    port: u16,
    hole: Arc<AtomicBool>,
}

async fn proxy(upstream: u16) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hole = Arc::new(AtomicBool::new(false));
    let h = hole.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let hole = h.clone();
            tokio::spawn(async move {
                if hole.load(Ordering::SeqCst) {
                    // New connections during the black hole: accepted, never answered.
                    while hole.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    drop(client);
                    return;
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, hole.clone()));
                tokio::spawn(pipe(sr, cw, hole));
            });
        }
    });
    Proxy { port, hole }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16384];
    let mut holed = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hole.load(Ordering::SeqCst) {
            holed = true;
        }
        if holed {
            // Swallow everything, keep the socket open: a black hole. This connection never
            // forwards again (as after a NAT mapping vanished).
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_is_noticed_within_seconds_and_recovered_soon_after_it_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let p = proxy(server.port).await;
    let via_proxy = format!("http://127.0.0.1:{}", p.port);
    let (ana, _) = core(&via_proxy, &dir.path().join("ana.sqlite3")).await;
    ana.register("ana", PASSWORD).await.unwrap();
    wait_state(&ana, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;
    let (bia, _) = core(&server.url(), &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();

    p.hole.store(true, Ordering::SeqCst);
    let start = Instant::now();
    wait_state(&ana, Duration::from_secs(10), |s| {
        *s != ConnectionState::Connected
    })
    .await;
    let noticed = start.elapsed();
    assert!(
        noticed < Duration::from_secs(4),
        "noticed after {noticed:?}"
    );

    // Something happens meanwhile.
    bia.send_dm("ana", "are you there?").await.unwrap();
    eventually("bia's DM to be sent", Duration::from_secs(10), || {
        bia.cache().outbox_counts().unwrap() == (0, 1, 0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(ana.connection_state(), ConnectionState::Connected);

    p.hole.store(false, Ordering::SeqCst);
    let lifted = Instant::now();
    wait_state(&ana, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;
    let recovered = lifted.elapsed();
    assert!(
        recovered < Duration::from_secs(4),
        "recovered after {recovered:?}"
    );
    eventually("the missed DM", Duration::from_secs(5), || {
        texts(&ana, "dm:bia") == ["are you there?"]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_error_and_the_core_stays_signed_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let (bia, _) = core(&server.url(), &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();
    let (ana, _) = core(&server.url(), &dir.path().join("ana.sqlite3")).await;
    wait_state(&ana, Duration::from_secs(5), |s| {
        matches!(s, ConnectionState::SignedOut { .. })
    })
    .await;
    let err = ana.login("bia", "wrong-password!").await.unwrap_err();
    assert_eq!(
        err.code(),
        papo_client::CoreErrorCode::Server(papo_protocol::ErrorCode::InvalidCredentials)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        ana.connection_state(),
        ConnectionState::SignedOut { .. }
    ));
    assert!(ana.send_chat("hello").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_signs_out_after_one_refresh_without_a_retry_storm() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[("PAPO_ACCESS_TTL_SECS", "1")]);
    let (ana, store) = core(&server.url(), &dir.path().join("ana.sqlite3")).await;
    ana.register("ana", PASSWORD).await.unwrap();
    wait_state(&ana, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;
    ana.shutdown().await;
    // The session is revoked elsewhere (another device signed out), and the access token ages.
    let session = store.load().unwrap().unwrap();
    papo_client::api::Api::new(&server.url())
        .logout(&session.refresh_token)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let s: Arc<dyn SessionStore> = store.clone();
    let ana = papo_client::Core::start(
        fast_config(&server.url(), &dir.path().join("ana.sqlite3")),
        s,
    )
    .await
    .unwrap();
    let mut rx = ana.subscribe();
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            if matches!(
                ev,
                CoreEvent::Connection(ConnectionState::Connecting { .. })
            ) {
                a.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    wait_state(&ana, Duration::from_secs(10), |s| {
        matches!(s, ConnectionState::SignedOut { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        ana.connection_state(),
        ConnectionState::SignedOut { .. }
    ));
    // At most: the first attempt (refused, expired) and nothing after the refused refresh.
    assert!(
        attempts.load(Ordering::SeqCst) <= 2,
        "{} attempts",
        attempts.load(Ordering::SeqCst)
    );
    assert!(
        store.load().unwrap().is_none(),
        "the refused session is forgotten"
    );
}

/// ana signed in on a phone and a laptop, and bia, each with a cache of their own in `dir`.
async fn ana_on_two_devices_and_bia(
    dir: &std::path::Path,
    url: &str,
) -> (papo_client::Core, papo_client::Core, papo_client::Core) {
    let (phone, _) = core(url, &dir.join("phone.sqlite3")).await;
    phone.register("ana", PASSWORD).await.unwrap();
    let (laptop, _) = core(url, &dir.join("laptop.sqlite3")).await;
    laptop.login("ana", PASSWORD).await.unwrap();
    let (bia, _) = core(url, &dir.join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();
    (phone, laptop, bia)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_user_end_with_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (phone, laptop, bia) = ana_on_two_devices_and_bia(dir.path(), &url).await;

    for i in 0..15 {
        phone.send_chat(&format!("phone {i}")).await.unwrap();
        laptop.send_chat(&format!("laptop {i}")).await.unwrap();
        bia.send_dm("ana", &format!("to ana {i}")).await.unwrap();
        if i % 3 == 0 {
            laptop.send_dm("bia", &format!("to bia {i}")).await.unwrap();
        }
    }
    phone.create_post("a post from the phone").await.unwrap();

    let done = |c: &papo_client::Core| {
        c.cache().outbox_counts().unwrap().0 == 0
            && texts(c, "public").len() == 30
            && texts(c, "dm:bia").len() == 20
            && c.cache().feed_page("ana", None, 10).unwrap().len() == 1
    };
    eventually("both devices to converge", Duration::from_secs(30), || {
        done(&phone) && done(&laptop)
    })
    .await;
    let view = |c: &papo_client::Core, conv: &str| -> Vec<(Option<i64>, String, String)> {
        let mut rows = c.cache().conversation_page(conv, None, 1000).unwrap();
        rows.reverse();
        rows.into_iter()
            .map(|r| (r.server_id, r.sender, r.text))
            .collect()
    };
    assert_eq!(view(&phone, "public"), view(&laptop, "public"));
    assert_eq!(view(&phone, "dm:bia"), view(&laptop, "dm:bia"));
    assert_eq!(
        phone.feed_page(None, 10).await.unwrap()[0].server_id,
        laptop.feed_page(None, 10).await.unwrap()[0].server_id
    );
    eventually(
        "both cursors to reach the same heads",
        Duration::from_secs(5),
        || phone.cache().resume_point().unwrap().0 == laptop.cache().resume_point().unwrap().0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_erases_the_users_messages_from_the_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let cache_path = dir.path().join("ana.sqlite3");
    let (ana, store) = core(&url, &cache_path).await;
    ana.register("ana", PASSWORD).await.unwrap();
    let (bia, _) = core(&url, &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();
    let secret = "only-ana-may-read-this-4c1d";
    for i in 0..20 {
        bia.send_dm("ana", &format!("{secret} {i}")).await.unwrap();
    }
    ana.send_dm("bia", &format!("{secret} reply"))
        .await
        .unwrap();
    eventually("ana to have the DMs", Duration::from_secs(20), || {
        texts(&ana, "dm:bia").len() == 21
    })
    .await;
    // A draft is the user's too: kept by the core, bounded, and erased with the rest.
    let draft = "draft-only-ana-8e2f: amanhã?";
    ana.set_draft("dm:bia", draft).await.unwrap();
    assert_eq!(ana.draft("dm:bia").await.unwrap().as_deref(), Some(draft));
    let too_long = "x".repeat(papo_client::cache::MAX_DRAFT_CHARS + 1);
    let err = ana.set_draft("dm:bia", &too_long).await.unwrap_err();
    assert_eq!(
        err.code(),
        papo_client::CoreErrorCode::Client(papo_client::ClientErrorCode::InvalidInput)
    );
    assert_eq!(ana.draft("dm:bia").await.unwrap().as_deref(), Some(draft));

    ana.sign_out().await.unwrap();
    assert_eq!(ana.draft("dm:bia").await.unwrap(), None);

    assert!(matches!(
        ana.connection_state(),
        ConnectionState::SignedOut { .. }
    ));
    assert!(store.load().unwrap().is_none(), "the session was kept");
    assert!(texts(&ana, "dm:bia").is_empty());
    assert!(ana.search("only", 10).await.unwrap().is_empty());
    assert_eq!(ana.unread_counts().await.unwrap().total, 0);
    for file in ["ana.sqlite3", "ana.sqlite3-wal", "ana.sqlite3-shm"] {
        let Ok(bytes) = std::fs::read(dir.path().join(file)) else {
            continue;
        };
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} still holds the signed-out user's messages"
        );
        assert!(
            !bytes.windows(20).any(|w| w == &draft.as_bytes()[..20]),
            "{file} still holds the signed-out user's draft"
        );
    }
    drop(ana);
    // The next launch opens an empty cache, and signing in again brings the history back.
    let (again, _) = core(&url, &cache_path).await;
    assert!(texts(&again, "dm:bia").is_empty());
    again.login("ana", PASSWORD).await.unwrap();
    eventually("the history to come back", Duration::from_secs(20), || {
        texts(&again, "dm:bia").len() == 21
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_account_signs_out_every_device_and_erases_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (phone, phone_store) = core(&url, &dir.path().join("phone.sqlite3")).await;
    phone.register("ana", PASSWORD).await.unwrap();
    let (laptop, laptop_store) = core(&url, &dir.path().join("laptop.sqlite3")).await;
    laptop.login("ana", PASSWORD).await.unwrap();
    // A tablet that is away (its core stopped, its session kept) when the account goes.
    let tablet_dir = dir.path().join("tablet");
    std::fs::create_dir_all(&tablet_dir).unwrap();
    let tablet_session = tablet_dir.join("session.json");
    let tablet_cache = tablet_dir.join("cache.sqlite3");
    let start_tablet = || async {
        let store: Arc<dyn SessionStore> = Arc::new(FileSessionStore::new(&tablet_session));
        papo_client::Core::start(fast_config(&url, &tablet_cache), store)
            .await
            .unwrap()
    };
    let tablet = start_tablet().await;
    tablet.login("ana", PASSWORD).await.unwrap();
    let (bia, _) = core(&url, &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();
    bia.send_dm("ana", "guarda isso").await.unwrap();
    for c in [&phone, &laptop, &tablet] {
        eventually("the DM on every device", Duration::from_secs(20), || {
            texts(c, "dm:bia").len() == 1
        })
        .await;
    }
    tablet.shutdown().await;
    // A wrong password changes nothing, here or on the server.
    let err = phone.delete_account("not the password").await.unwrap_err();
    assert_eq!(
        err.code(),
        papo_client::CoreErrorCode::Server(papo_protocol::ErrorCode::InvalidCredentials)
    );
    assert_eq!(texts(&phone, "dm:bia").len(), 1);
    assert!(phone_store.load().unwrap().is_some());

    phone.delete_account(PASSWORD).await.unwrap();
    assert!(matches!(
        phone.connection_state(),
        ConnectionState::SignedOut { .. }
    ));
    assert!(
        phone_store.load().unwrap().is_none(),
        "the session was kept"
    );
    assert!(texts(&phone, "dm:bia").is_empty(), "the cache was kept");
    // The other device is disconnected and told the account is gone: it signs out and erases
    // its cache too.
    eventually("the laptop signed out", Duration::from_secs(30), || {
        matches!(
            laptop.connection_state(),
            ConnectionState::SignedOut {
                account_deleted: true,
                suspended: false,
                ..
            }
        )
    })
    .await;
    assert!(laptop_store.load().unwrap().is_none());
    assert!(
        texts(&laptop, "dm:bia").is_empty(),
        "the laptop kept the DMs"
    );
    // The tablet comes back later with its stored session: the same.
    let tablet = start_tablet().await;
    eventually("the tablet signed out", Duration::from_secs(30), || {
        matches!(
            tablet.connection_state(),
            ConnectionState::SignedOut {
                account_deleted: true,
                suspended: false,
                ..
            }
        )
    })
    .await;
    assert!(
        texts(&tablet, "dm:bia").is_empty(),
        "the tablet kept the DMs"
    );
    assert!(
        !tablet_session.exists()
            || FileSessionStore::new(&tablet_session)
                .load()
                .unwrap()
                .is_none()
    );
    tablet.shutdown().await;
    // And the account is gone for good.
    let (again, _) = core(&url, &dir.path().join("again.sqlite3")).await;
    let err = again.login("ana", PASSWORD).await.unwrap_err();
    assert_eq!(
        err.code(),
        papo_client::CoreErrorCode::Server(papo_protocol::ErrorCode::InvalidCredentials)
    );
    let err = again.register("ana", PASSWORD).await.unwrap_err();
    assert_eq!(
        err.code(),
        papo_client::CoreErrorCode::Server(papo_protocol::ErrorCode::UsernameTaken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_reach_every_device_and_reader_and_a_new_device_sees_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (phone, laptop, bia) = ana_on_two_devices_and_bia(dir.path(), &url).await;

    phone.send_dm("bia", "almoço às 12?").await.unwrap();
    phone.send_chat("bom dia a todos").await.unwrap();
    bia.send_dm("ana", "oi ana").await.unwrap();
    let sent = |c: &papo_client::Core, conv: &str, text: &str| -> Option<i64> {
        let rows = c.cache().conversation_page(conv, None, 100).unwrap();
        rows.into_iter()
            .find(|r| r.text == text)
            .and_then(|r| r.server_id)
    };
    eventually("the messages everywhere", Duration::from_secs(20), || {
        sent(&bia, "dm:ana", "almoço às 12?").is_some()
            && sent(&laptop, "public", "bom dia a todos").is_some()
            && sent(&phone, "dm:bia", "oi ana").is_some()
    })
    .await;
    let dm = sent(&phone, "dm:bia", "almoço às 12?").unwrap();
    let public = sent(&phone, "public", "bom dia a todos").unwrap();
    let bias = sent(&phone, "dm:bia", "oi ana").unwrap();
    assert_eq!(
        bia.unread_counts().await.unwrap().total,
        2,
        "ana's DM and chat message"
    );

    // Not mine, or bad text: refused before anything is queued.
    for err in [
        phone.edit_message(bias, "forged").await.unwrap_err(),
        phone.delete_message(bias).await.unwrap_err(),
        phone.edit_message(dm, "   ").await.unwrap_err(),
        phone.edit_message(987_654, "nobody's").await.unwrap_err(),
    ] {
        assert_eq!(
            err.code(),
            papo_client::CoreErrorCode::Client(papo_client::ClientErrorCode::InvalidInput),
            "{err}"
        );
    }

    phone.edit_message(dm, "almoço às 13?").await.unwrap();
    laptop.delete_message(public).await.unwrap();
    let row = |c: &papo_client::Core, conv: &str, id: i64| {
        c.cache()
            .conversation_page(conv, None, 100)
            .unwrap()
            .into_iter()
            .find(|r| r.server_id == Some(id))
            .unwrap()
    };
    eventually(
        "the edit and the delete everywhere",
        Duration::from_secs(20),
        || {
            [(&phone, "dm:bia"), (&laptop, "dm:bia"), (&bia, "dm:ana")]
                .iter()
                .all(|(c, conv)| {
                    let r = row(c, conv, dm);
                    r.text == "almoço às 13?" && r.edited_at.is_some()
                })
                && [&phone, &laptop, &bia].iter().all(|c| {
                    let r = row(c, "public", public);
                    r.deleted && r.text.is_empty()
                })
        },
    )
    .await;
    // The deleted message no longer counts as unread; search finds the new text, not the old.
    assert_eq!(bia.unread_counts().await.unwrap().total, 1);
    assert!(bia.search("bom dia", 10).await.unwrap().is_empty());
    assert!(!bia.search("13", 10).await.unwrap().is_empty());
    assert!(bia.search("12", 10).await.unwrap().is_empty());
    let page = bia.conversations_page(None, 50).await.unwrap();
    assert_eq!(page.unread_total, 1);
    let convs: Vec<_> = page.pinned.into_iter().chain(page.rows).collect();
    let last = |id: &str| convs.iter().find(|c| c.id == id).unwrap().last_text.clone();
    assert_eq!(last("dm:ana"), "oi ana");
    // A deleted message can be neither deleted again nor edited (the core knows it is gone).
    phone.delete_message(public).await.unwrap_err();
    laptop.edit_message(public, "back?").await.unwrap_err();

    // A device signing in now replays the log and ends in the same state.
    let (tablet, _) = core(&url, &dir.path().join("tablet.sqlite3")).await;
    tablet.login("ana", PASSWORD).await.unwrap();
    eventually("the tablet to catch up", Duration::from_secs(20), || {
        texts(&tablet, "dm:bia").len() == 2 && texts(&tablet, "public").len() == 1
    })
    .await;
    let r = row(&tablet, "dm:bia", dm);
    assert_eq!(
        (r.text.as_str(), r.edited_at.is_some()),
        ("almoço às 13?", true)
    );
    assert!(row(&tablet, "public", public).deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_every_device_with_its_quote_which_follows_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (phone, laptop, bia) = ana_on_two_devices_and_bia(dir.path(), &url).await;

    bia.send_chat("quem vem hoje?").await.unwrap();
    bia.send_dm("ana", "e o almoço?").await.unwrap();
    let find = |c: &papo_client::Core, conv: &str, text: &str| {
        c.cache()
            .conversation_page(conv, None, 100)
            .unwrap()
            .into_iter()
            .find(|r| r.text == text && r.server_id.is_some())
    };
    eventually(
        "bia's messages on the phone",
        Duration::from_secs(20),
        || {
            find(&phone, "public", "quem vem hoje?").is_some()
                && find(&phone, "dm:bia", "e o almoço?").is_some()
        },
    )
    .await;
    let question = find(&phone, "public", "quem vem hoje?")
        .unwrap()
        .server_id
        .unwrap();
    let lunch = find(&phone, "dm:bia", "e o almoço?")
        .unwrap()
        .server_id
        .unwrap();

    // A reply must quote a message of its own conversation: refused before it is queued.
    let wrong = phone
        .send_dm_reply("bia", "x", Some(question))
        .await
        .unwrap_err();
    assert_eq!(
        wrong.code(),
        papo_client::CoreErrorCode::Client(papo_client::ClientErrorCode::InvalidInput),
        "{wrong}"
    );
    let target = papo_client::compose::ComposeTarget::Conversation {
        id: "public".into(),
    };
    phone
        .compose(&target, "eu vou", Some(question))
        .await
        .unwrap();
    let dm_target = papo_client::compose::ComposeTarget::Conversation {
        id: "dm:bia".into(),
    };
    phone
        .compose(&dm_target, "12h?", Some(lunch))
        .await
        .unwrap();
    // `/msg` to another conversation goes without the quote.
    phone
        .compose(&target, "/msg bia sem citação", Some(question))
        .await
        .unwrap();

    let quote = |c: &papo_client::Core, conv: &str, text: &str| {
        find(c, conv, text).and_then(|r| r.reply_to)
    };
    eventually(
        "the replies on every device",
        Duration::from_secs(20),
        || {
            [(&laptop, "dm:bia"), (&bia, "dm:ana")]
                .iter()
                .all(|(c, conv)| {
                    quote(c, conv, "12h?").is_some_and(|q| q.server_id == lunch)
                        && find(c, conv, "sem citação").is_some()
                })
                && [&laptop, &bia]
                    .iter()
                    .all(|c| quote(c, "public", "eu vou").is_some_and(|q| q.server_id == question))
        },
    )
    .await;
    let q = quote(&bia, "public", "eu vou").unwrap();
    assert_eq!(
        (q.sender.as_str(), q.excerpt.as_deref()),
        ("bia", Some("quem vem hoje?"))
    );
    assert_eq!(quote(&bia, "dm:ana", "sem citação"), None);
    // bia is told of the public reply (the DM reply is her DM notification).
    eventually("bia's reply notification", Duration::from_secs(20), || {
        bia.cache()
            .notifications_page(None, 50)
            .unwrap()
            .iter()
            .any(|n| n.kind == papo_protocol::NotificationKind::Reply && n.actor == "ana")
    })
    .await;

    // The original edited, then deleted: every device's quote follows.
    bia.edit_message(question, "quem vem amanhã?")
        .await
        .unwrap();
    eventually(
        "the quote edited everywhere",
        Duration::from_secs(20),
        || {
            [&phone, &laptop, &bia].iter().all(|c| {
                quote(c, "public", "eu vou")
                    .and_then(|q| q.excerpt)
                    .as_deref()
                    == Some("quem vem amanhã?")
            })
        },
    )
    .await;
    bia.delete_message(question).await.unwrap();
    eventually(
        "the quote deleted everywhere",
        Duration::from_secs(20),
        || {
            [&phone, &laptop, &bia]
                .iter()
                .all(|c| quote(c, "public", "eu vou").is_some_and(|q| q.excerpt.is_none()))
        },
    )
    .await;
    // Replying to it now is refused with its own code.
    let gone = laptop
        .send_chat_reply("tarde demais", Some(question))
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        papo_client::CoreErrorCode::Client(papo_client::ClientErrorCode::ReplyGone)
    );

    // A device signing in now replays the log and shows the quote as deleted, not its old text.
    let (tablet, _) = core(&url, &dir.path().join("tablet.sqlite3")).await;
    tablet.login("ana", PASSWORD).await.unwrap();
    eventually("the tablet's quote", Duration::from_secs(20), || {
        quote(&tablet, "public", "eu vou").is_some_and(|q| q.excerpt.is_none())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_show_the_connection_without_a_token_or_a_message_and_the_handshake_checks_out()
{
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (ana, store) = core(&url, &dir.path().join("ana.sqlite3")).await;
    ana.register("ana", PASSWORD).await.unwrap();
    let (bia, _) = core(&url, &dir.path().join("bia.sqlite3")).await;
    bia.register("bia", PASSWORD).await.unwrap();
    bia.send_dm("ana", "segredo de estado").await.unwrap();
    eventually("the DM", Duration::from_secs(20), || {
        texts(&ana, "dm:bia").len() == 1
    })
    .await;
    let mut d = ana.diagnostics().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.rtt_ms.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        d = ana.diagnostics().await.unwrap();
    }
    assert_eq!(d.server_url, url);
    assert_eq!(d.state, ConnectionState::Connected);
    assert_eq!(d.transport, papo_client::diag::TransportKind::Websocket);
    assert!(
        d.attempts >= 1 && d.sessions >= 1 && d.connected_at.is_some(),
        "{d:?}"
    );
    assert!(d.rtt_ms.is_some(), "a ping came back: {d:?}");
    let (cursor, epoch) = ana.cache().resume_point().unwrap();
    assert_eq!((d.cursor, d.epoch.clone()), (cursor, epoch));
    assert!(d.cursor.private >= 1);
    assert!(
        d.recent.iter().any(|e| e.name == "log" && e.bytes > 0)
            && d.recent.iter().any(|e| e.name == "sync"),
        "{:?}",
        d.recent
    );
    assert_eq!((d.outbox_pending, d.outbox_wedged), (0, 0));
    // What a copy holds: neither token, nor the text of a message.
    let copied = serde_json::to_string(&d).unwrap();
    let session = store.load().unwrap().unwrap();
    for secret in [&session.access_token, &session.refresh_token] {
        assert!(
            !copied.contains(secret.as_str()),
            "a token in the diagnostics"
        );
    }
    assert!(
        !copied.contains("segredo"),
        "a message's text in the diagnostics"
    );

    // papo-cli diag prints the same, and --handshake the WebSocket upgrade, key checked.
    let cli = env!("CARGO_BIN_EXE_papo-cli");
    let out = std::process::Command::new(cli)
        .args(["--server", &url, "diag", "--handshake"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("> Sec-WebSocket-Key: "), "{text}");
    assert!(
        text.contains("< HTTP/1.1 101 Switching Protocols"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("< sec-websocket-accept: "),
        "{text}"
    );
    assert!(text.contains("accept key: ok"), "{text}");
    // A server that is not there: a clear error, not a hang.
    let gone = std::process::Command::new(cli)
        .args([
            "--server",
            "http://127.0.0.1:9",
            "diag",
            "--handshake",
            "--seconds",
            "3",
        ])
        .output()
        .unwrap();
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stdout).contains("error"),
        "{gone:?}"
    );
}
