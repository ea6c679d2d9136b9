//! Durable sessions: with `--data`, every acknowledged character survives a
//! `kill -9` of the hub, and the editors' proxies reconnect by themselves
//! and converge again on the restarted hub.

use crate::support::converge::assert_converged;
use std::time::Duration;

use serde_json::Value;

use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::hub::{log_dir, Hub};
use crate::support::hub_client::hub_text;
use crate::support::relay::Relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_edits_survive_kill_9_and_editors_recover() {
    let test = "acknowledged_edits_survive_kill_9";
    let data = log_dir(&format!("{test}-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let mut hub = Hub::start_with(
        test,
        "hub-1.log",
        &["--listen", "127.0.0.1:0", "--data", &data_arg, "--open"],
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
        &["--listen", &listen, "--data", &data_arg, "--open"],
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
            "--open",
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

/// Both editors type tokens at token boundaries while the hub is killed
/// (`kill -9`) and later restarted on the same port and storage. Every
/// token must end up in the document exactly once: what the hub
/// acknowledged came back from storage, and what it had not, the proxies
/// sent again.
async fn kill_9_while_typing_in(
    test: &str,
    session: &str,
    store_args: &[&str],
    token: Option<String>,
) {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(store_args);
    let mut hub = Hub::start_with(test, "hub-1.log", &args).await;
    hub.token = token.clone();
    let doc = "log.txt";
    let a = Editor::start(EditorKind::VsCode, &hub, session, "a").await;
    let b = Editor::start(EditorKind::Neovim, &hub, session, "b").await;
    a.open(doc, "|");
    assert_converged(&hub, session, doc, &[&a]).await;
    b.open(doc, "");
    assert_converged(&hub, session, doc, &[&a, &b]).await;

    let mut typed = Vec::new();
    let port = hub.port;
    for i in 0..120 {
        for (editor, who) in [(&a, "a"), (&b, "b")] {
            let token = format!("<{who}{i}>");
            type_token(editor, doc, &token, i * 7 + who.len() * 3);
            typed.push(token);
        }
        tokio::time::sleep(std::time::Duration::from_millis(4)).await;
        if i == 40 {
            hub.kill().await;
        }
        if i == 80 {
            let listen = format!("127.0.0.1:{port}");
            let mut args = vec!["--listen", listen.as_str()];
            args.extend_from_slice(store_args);
            hub = Hub::start_with(test, "hub-2.log", &args).await;
            hub.token = token.clone();
        }
    }
    let text = assert_converged(&hub, session, doc, &[&a, &b]).await;
    assert_each_token_once(&text, &typed, "|");
}

/// Types `token` at a boundary between earlier tokens (never inside one):
/// the `pick`-th, counted round the buffer.
pub(crate) fn type_token(editor: &Editor, doc: &str, token: &str, pick: usize) {
    editor.edit_with(doc, |text| {
        let boundaries: Vec<usize> = std::iter::once(0)
            .chain(
                text.iter()
                    .enumerate()
                    .filter(|(_, &c)| c == '>')
                    .map(|(at, _)| at + 1),
            )
            .collect();
        let at = boundaries[pick % boundaries.len()];
        Some((at, at, token.to_owned()))
    });
}

/// The document is `seed` plus every typed token exactly once.
pub(crate) fn assert_each_token_once(text: &str, typed: &[String], seed: &str) {
    for token in typed {
        assert_eq!(
            text.matches(token.as_str()).count(),
            1,
            "{token} must be in the document exactly once: {text:?}"
        );
    }
    assert_eq!(
        text.chars().count(),
        seed.chars().count() + typed.iter().map(|t| t.chars().count()).sum::<usize>(),
        "nothing but the seed and the typed tokens: {text:?}"
    );
}

/// Unique per run: a PostgreSQL database outlives test runs.
pub(crate) fn test_session(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{test}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_typing_loses_nothing_with_sqlite() {
    let test = "kill_9_while_typing_sqlite";
    let data = log_dir(&format!("{test}-data"));
    let data = data.to_string_lossy().into_owned();
    kill_9_while_typing_in(test, test, &["--data", &data, "--open"], None).await;
}

/// Against a real PostgreSQL server (scripts/test.sh starts one and sets
/// CHORUS_TEST_POSTGRES), with tokens: the session is made by
/// `chorus session create --database …`, as an operator would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_typing_loses_nothing_with_postgres() {
    let test = "kill_9_while_typing_postgres";
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    let session = test_session(test);
    let tokens = crate::access::create_session(&["--database", &url], &session).await;
    let store = ["--database", url.as_str()];
    kill_9_while_typing_in(test, &session, &store, Some(tokens.join)).await;
}

/// One proxy loses its network while everyone (it included) keeps typing;
/// when the network is back it reconnects by itself and all converge with
/// every keystroke exactly once. With `history_limit` small, the hub no
/// longer has the ops the proxy missed and it merges by text instead.
async fn offline_proxy_converges(test: &str, history_limit: &str) {
    let hub = Hub::start_in_memory(test, &["--history-limit", history_limit]).await;
    let relay = Relay::start(hub.port).await;
    let session = "offline";
    let doc = "shared.txt";
    let mut options = EditorOptions::new(EditorKind::Helix, &hub, session, "away");
    options.hub_url = relay.url();
    let away = Editor::start_with(options, &hub.log_dir).await;
    let here = Editor::start(EditorKind::VsCode, &hub, session, "here").await;
    let there = Editor::start(EditorKind::Neovim, &hub, session, "there").await;
    here.open(doc, "|");
    assert_converged(&hub, session, doc, &[&here]).await;
    away.open(doc, "");
    there.open(doc, "");
    assert_converged(&hub, session, doc, &[&here, &away, &there]).await;

    let mut typed = Vec::new();
    let type_round = |i: usize, typed: &mut Vec<String>| {
        for (editor, who) in [(&away, "w"), (&here, "h"), (&there, "t")] {
            let token = format!("<{who}{i}>");
            type_token(editor, doc, &token, i * 5 + usize::from(who.as_bytes()[0]));
            typed.push(token);
        }
    };
    for i in 0..10 {
        type_round(i, &mut typed);
    }
    relay.cut();
    // The user is told the proxy is offline, and later that it is back.
    away.wait_message("window/showMessage", "Retrying", Duration::from_secs(10))
        .await;
    for i in 10..60 {
        type_round(i, &mut typed);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    relay.restore();
    away.wait_message(
        "window/showMessage",
        "connected to session",
        Duration::from_secs(15),
    )
    .await;
    // Plugins get the same as a state they can show.
    let states: Vec<Value> = away
        .client()
        .notifications("chorus/connection")
        .iter()
        .map(|n| n["state"].clone())
        .collect();
    assert_eq!(
        states.last(),
        Some(&Value::from("online")),
        "chorus/connection: {states:?}"
    );
    assert!(
        states.contains(&Value::from("offline")),
        "chorus/connection: {states:?}"
    );
    for i in 60..70 {
        type_round(i, &mut typed);
    }
    let text = assert_converged(&hub, session, doc, &[&here, &away, &there]).await;
    assert_each_token_once(&text, &typed, "|");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_offline_while_others_type_catches_up_by_ops() {
    offline_proxy_converges("offline_catches_up_by_ops", "2000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_offline_longer_than_the_history_merges_by_text() {
    offline_proxy_converges("offline_merges_by_text", "5").await;
}

/// The hub's storage fails under it (here: the op log table disappears).
/// The hub must not acknowledge what it could not store: it sends everyone
/// in the session away with a reason and refuses joins until storage
/// answers; the proxies keep the unacknowledged edit, reconnect by
/// themselves once storage is back, and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_acknowledges_nothing_and_everyone_recovers() {
    let test = "storage_failure";
    let data = log_dir(&format!("{test}-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let hub = Hub::start_with(
        test,
        "hub.log",
        &["--listen", "127.0.0.1:0", "--data", &data_arg, "--open"],
    )
    .await;
    let session = "fragile";
    let doc = "notes.txt";
    let a = Editor::start(EditorKind::VsCode, &hub, session, "a").await;
    let b = Editor::start(EditorKind::Helix, &hub, session, "b").await;
    a.open(doc, "stored\n");
    assert_converged(&hub, session, doc, &[&a]).await;
    b.open(doc, "");
    a.insert_after(doc, "stored", " and acked");
    assert_converged(&hub, session, doc, &[&a, &b]).await;

    let db = rusqlite::Connection::open(data.join("chorus.db")).expect("open the hub's database");
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch("ALTER TABLE ops RENAME TO ops_away")
        .expect("take the op log away");
    a.insert_after(doc, "acked", " while broken");
    for editor in [&a, &b] {
        editor
            .wait_message(
                "window/showMessage",
                "lost its storage",
                Duration::from_secs(10),
            )
            .await;
    }
    let state = a.document_state(doc).await.unwrap();
    assert_eq!(
        state["synchronized"], false,
        "the edit was not acknowledged: {state}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.execute_batch("ALTER TABLE ops_away RENAME TO ops")
        .expect("bring the op log back");

    let text = assert_converged(&hub, session, doc, &[&a, &b]).await;
    assert_eq!(text, "stored and acked while broken\n");
    drop(db);
}
