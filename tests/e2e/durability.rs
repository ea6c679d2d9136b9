//! Durable sessions: with `--data`, every acknowledged character survives a
//! `kill -9` of the hub, and the editors' proxies reconnect by themselves
//! and converge again on the restarted hub.

use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::{log_dir, Hub};
use crate::support::hub_client::hub_text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_edits_survive_kill_9_and_editors_recover() {
    let test = "acknowledged_edits_survive_kill_9";
    let data = log_dir(&format!("{test}-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let mut hub = Hub::start_with(
        test,
        "hub-1.log",
        &["--listen", "127.0.0.1:0", "--data", &data_arg],
    )
    .await;
    let session = "durable";
    let doc = "journal.txt";
    let a = Editor::start(EditorKind::Helix, &hub, session, "a").await;
    let b = Editor::start(EditorKind::Neovim, &hub, session, "b").await;
    a.open(doc, "start\n");
    b.open(doc, "start\n");
    assert_converged(&hub, session, doc, &[&a, &b]).await;
    for i in 0..30 {
        a.insert_after(doc, "start", &format!(" a{i}"));
        b.insert_before(doc, "start", &format!("b{i} "));
    }
    // Converged and synchronized: every edit has been acknowledged.
    let before = assert_converged(&hub, session, doc, &[&a, &b]).await;

    hub.kill().await;
    // Both keep typing while the hub is gone.
    a.insert_after(doc, "a0", " offline-a");
    b.insert_before(doc, "b0", "offline-b ");
    let listen = format!("127.0.0.1:{}", hub.port);
    let hub = Hub::start_with(
        test,
        "hub-2.log",
        &["--listen", &listen, "--data", &data_arg],
    )
    .await;

    // The proxies reconnect on their own (with backoff), replay what the
    // hub logged since their revision and send what it never got.
    let after_restart = assert_converged(&hub, session, doc, &[&a, &b]).await;
    let expected = before
        .replace("a0", "a0 offline-a")
        .replace("b0 ", "offline-b b0 ");
    assert_eq!(
        after_restart, expected,
        "every acknowledged character, and everything typed offline, is there"
    );
    a.insert_after(doc, "a29", " after");
    b.insert_before(doc, "b29", "again ");
    let text = assert_converged(&hub, session, doc, &[&a, &b]).await;
    assert!(
        text.contains("a29 after") && text.contains("again b29"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_data_starts_empty_and_a_bad_data_dir_is_refused() {
    let hub = Hub::start("a_hub_without_data_starts_empty").await;
    let missing = hub_text(&hub.url, "nothing-here", "x.txt").await;
    assert!(
        missing.is_err(),
        "a fresh in-memory hub has no documents: {missing:?}"
    );
    let status = tokio::process::Command::new(crate::support::hub::chorus_bin())
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "/proc/chorus-cannot-be-here",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("run chorus hub");
    assert!(
        !status.success(),
        "an unusable --data directory must stop the hub at start"
    );
}
