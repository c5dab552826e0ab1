//! The outbox against the real `papo-server`: a permanent error wedges one conversation
//! without blocking the others, retry delivers it once under the same client id, discard
//! drops the local copy, and sent rows are pruned.

mod common;

use common::*;
use papo_client::cache::LocalState;
use papo_client::outbox::{OutboxState, WedgeReason};
use papo_client::ConnectionState;
use papo_protocol::ErrorCode;
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_item_is_wedged_in_its_conversation_retried_once_or_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let url = server.url();
    let (ana, _) = core(&url, &dir.path().join("ana.sqlite3")).await;
    ana.register("ana", PASSWORD).await.unwrap();
    wait_state(&ana, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;

    // zed does not exist yet: the DM is refused for good and wedged, with the reason.
    let to_zed = ana.send_dm("zed", "hi zed").await.unwrap();
    let to_nobody = ana.send_dm("nobody", "hello?").await.unwrap();
    let public = ana.send_chat("still flowing").await.unwrap();
    let state = |cid| ana.cache().outbox_item(cid).unwrap().map(|i| i.state);
    eventually("both DMs wedged", Duration::from_secs(10), || {
        state(to_zed) == Some(OutboxState::Wedged) && state(to_nobody) == Some(OutboxState::Wedged)
    })
    .await;
    eventually("public sent", Duration::from_secs(10), || {
        state(public) == Some(OutboxState::Sent)
    })
    .await;
    let item = ana.cache().outbox_item(to_zed).unwrap().unwrap();
    match item.wedge {
        Some(WedgeReason::Refused { error }) => assert_eq!(error.code, ErrorCode::NotFound),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(item.attempts, 1, "a permanent error is not resent");
    let wedged = ana.wedged_outbox(Some("dm:zed")).await.unwrap();
    assert_eq!(wedged.len(), 1);
    assert_eq!(wedged[0].client_id, to_zed);
    let rows = ana.cache().conversation_page("dm:zed", None, 10).unwrap();
    assert_eq!(rows[0].state, LocalState::Failed);

    // The server replays its refusal for that client id: resending it is useless.
    let (zed, _) = core(&url, &dir.path().join("zed.sqlite3")).await;
    zed.register("zed", PASSWORD).await.unwrap();
    // zed signed up; Retry sends the refused request under a new client id (the refused one
    // had no effect), and it is applied once.
    let sent_as = ana
        .retry_outbox(to_zed)
        .await
        .unwrap()
        .expect("it was wedged");
    assert_ne!(sent_as, to_zed);
    assert!(ana.cache().outbox_item(to_zed).unwrap().is_none());
    eventually("retried DM sent", Duration::from_secs(10), || {
        state(sent_as) == Some(OutboxState::Sent)
    })
    .await;
    assert_eq!(
        ana.retry_outbox(sent_as).await.unwrap(),
        None,
        "a sent item is not retried"
    );
    eventually("zed got the DM", Duration::from_secs(10), || {
        texts(&zed, "dm:ana") == ["hi zed"]
    })
    .await;
    let rows = ana.cache().conversation_page("dm:zed", None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, LocalState::Sent);
    assert_eq!(rows[0].client_id, Some(sent_as));
    assert!(rows[0].server_id.is_some());

    // Discard: the wedged DM to nobody and its local copy are gone.
    assert!(ana.discard_outbox(to_nobody).await.unwrap());
    assert!(!ana.discard_outbox(to_nobody).await.unwrap());
    assert!(ana.cache().outbox_item(to_nobody).unwrap().is_none());
    assert!(texts(&ana, "dm:nobody").is_empty());
    assert!(ana.wedged_outbox(None).await.unwrap().is_empty());

    // Pruning: sent rows go, the messages stay.
    assert_eq!(ana.cache().outbox_counts().unwrap(), (0, 2, 0));
    assert_eq!(
        ana.cache()
            .prune_sent_outbox(papo_client::cache::now_ms() + 1)
            .unwrap(),
        2
    );
    assert_eq!(ana.cache().outbox_counts().unwrap(), (0, 0, 0));
    assert_eq!(texts(&ana, "public"), ["still flowing"]);
    assert_eq!(texts(&ana, "dm:zed"), ["hi zed"]);
    // A restarted core does not send anything again (zed still has exactly one DM).
    ana.shutdown().await;
    let (ana2, _) = core(&url, &dir.path().join("ana.sqlite3")).await;
    ana2.login("ana", PASSWORD).await.unwrap();
    wait_state(&ana2, Duration::from_secs(10), |s| {
        *s == ConnectionState::Connected
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(texts(&zed, "dm:ana"), ["hi zed"]);
}
