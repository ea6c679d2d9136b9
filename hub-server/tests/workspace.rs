//! A session's file tree over the wire: `put`, `stored`, `fileAdded`,
//! `files` and the caps, against a hub running in this process, with real
//! SQLite and PostgreSQL (`CHORUS_TEST_POSTGRES`) for what must survive a
//! restart, and a real Docker engine for a run of files nobody opened.

#[path = "harness/hub.rs"]
mod hub;
#[path = "harness/recorder.rs"]
mod recorder;

use std::sync::Arc;

use chorus_hub::access::{self, Access};
use chorus_hub::storage::{now_secs, Database, Store};
use chorus_hub::{HubConfig, Runner, WorkspaceLimits};
use serde_json::{json, Value};

use self::hub::{entry, error_code, scratch_dir, stored, Client, TestHub};
use self::recorder::Recorder;

/// Small caps, so that each one is reached in a few frames.
const SMALL: WorkspaceLimits = WorkspaceLimits {
    max_file_bytes: 16,
    max_session_bytes: 40,
    max_files: 4,
};

#[tokio::test]
async fn welcome_announces_the_caps() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (_, welcome) = Client::join(&hub, "caps", "ada").await;
    assert_eq!(
        welcome["workspace"],
        json!({ "maxFileBytes": 16, "maxSessionBytes": 40, "maxFiles": 4 })
    );
}

#[tokio::test]
async fn a_put_makes_a_document_the_others_hear_of_and_the_sender_does_not_follow() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (mut ada, _) = Client::join(&hub, "put", "ada").await;
    let (mut bob, _) = Client::join(&hub, "put", "bob").await;
    ada.until("joined").await;

    let answer = ada.put_text("src/util.py", "x = 'é'\n").await;
    assert_eq!(answer, stored("src/util.py", true, None));
    let added = bob.expect("fileAdded").await;
    assert_eq!(added["entry"], entry("src/util.py", 9, None), "UTF-8 bytes");
    assert_eq!(ada.pending().await, Vec::<Value>::new(), "no echo to ada");

    // Bob opens it and finds the put's text; his edits do not reach ada,
    // who never opened it.
    let opened = bob.open("src/util.py", "ignored").await;
    assert_eq!(
        (opened["created"].clone(), opened["text"].clone()),
        (json!(false), json!("x = 'é'\n"))
    );
    bob.send(json!({ "type": "op", "doc": "src/util.py", "rev": 0, "op": [8, "y = 1\n"] }))
        .await;
    bob.expect("ack").await;
    assert_eq!(
        ada.pending().await,
        Vec::<Value>::new(),
        "ada is not subscribed"
    );
    ada.send(json!({ "type": "op", "doc": "src/util.py", "rev": 1, "op": [14, "!"] }))
        .await;
    assert_eq!(
        error_code(&ada.recv().await),
        ("unknown_document", "src/util.py")
    );
}

#[tokio::test]
async fn a_put_where_a_document_is_keeps_its_text() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (mut ada, _) = Client::join(&hub, "keep", "ada").await;
    let (mut bob, _) = Client::join(&hub, "keep", "bob").await;
    ada.until("joined").await;
    ada.open("a.txt", "live").await;
    bob.expect("fileAdded").await;

    assert_eq!(
        bob.put_text("a.txt", "from disk").await,
        stored("a.txt", false, None)
    );
    // Nor does a binary file on disk replace it.
    assert_eq!(
        bob.put("a.txt", json!({ "kind": "binary", "size": 3 }))
            .await,
        stored("a.txt", false, None)
    );
    assert_eq!(ada.pending().await, Vec::<Value>::new(), "nothing changed");
    let opened = bob.open("a.txt", "").await;
    assert_eq!(opened["text"], "live");
    assert_eq!(bob.files().await, vec![entry("a.txt", 4, None)]);
}

#[tokio::test]
async fn files_not_synced_are_listed_with_the_reason() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (mut ada, _) = Client::join(&hub, "listed", "ada").await;
    let (mut bob, _) = Client::join(&hub, "listed", "bob").await;
    ada.until("joined").await;

    let binary = ada
        .put("logo.png", json!({ "kind": "binary", "size": 2048 }))
        .await;
    assert_eq!(binary, stored("logo.png", true, Some("binary")));
    let large = ada
        .put("data.csv", json!({ "kind": "tooLarge", "size": 1 << 30 }))
        .await;
    assert_eq!(large, stored("data.csv", true, Some("tooLarge")));
    // A text over max_file_bytes (16) is listed by the hub itself.
    let text = ada.put_text("notes.md", &"n".repeat(17)).await;
    assert_eq!(text, stored("notes.md", true, Some("tooLarge")));
    let added: Vec<Value> = bob.pending().await;
    assert_eq!(
        added,
        vec![
            json!({ "type": "fileAdded", "entry": entry("logo.png", 2048, Some("binary")) }),
            json!({ "type": "fileAdded", "entry": entry("data.csv", 1 << 30, Some("tooLarge")) }),
            json!({ "type": "fileAdded", "entry": entry("notes.md", 17, Some("tooLarge")) }),
        ]
    );
    // The same listing again changes nothing.
    assert_eq!(
        ada.put("logo.png", json!({ "kind": "binary", "size": 2048 }))
            .await,
        stored("logo.png", false, Some("binary"))
    );
    assert_eq!(bob.pending().await, Vec::<Value>::new());

    // The file shrank into text: the listing is replaced by a document.
    assert_eq!(
        ada.put_text("notes.md", "short").await,
        stored("notes.md", true, None)
    );
    assert_eq!(
        bob.expect("fileAdded").await["entry"],
        entry("notes.md", 5, None)
    );
    assert_eq!(
        ada.files().await,
        vec![
            entry("data.csv", 1 << 30, Some("tooLarge")),
            entry("logo.png", 2048, Some("binary")),
            entry("notes.md", 5, None),
        ]
    );
    // An editor opening a listed file makes it a document too.
    let opened = bob.open("logo.png", "<svg/>").await;
    assert_eq!(opened["created"], true);
    assert_eq!(
        ada.expect("fileAdded").await["entry"],
        entry("logo.png", 6, None)
    );
}

#[tokio::test]
async fn past_the_session_cap_files_are_listed_session_full() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (mut ada, _) = Client::join(&hub, "full", "ada").await;
    // 40 bytes per session: an editor's document counts too.
    ada.open("open.txt", &"o".repeat(16)).await;
    assert_eq!(
        ada.put_text("a.txt", &"a".repeat(16)).await,
        stored("a.txt", true, None)
    );
    assert_eq!(
        ada.put_text("b.txt", &"b".repeat(9)).await,
        stored("b.txt", true, Some("sessionFull"))
    );
    assert_eq!(
        ada.put_text("c.txt", &"c".repeat(8)).await,
        stored("c.txt", true, None),
        "exactly at the cap"
    );
    assert_eq!(
        ada.files().await,
        vec![
            entry("a.txt", 16, None),
            entry("b.txt", 9, Some("sessionFull")),
            entry("c.txt", 8, None),
            entry("open.txt", 16, None),
        ]
    );
}

#[tokio::test]
async fn past_the_file_count_new_paths_are_refused() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (mut ada, _) = Client::join(&hub, "count", "ada").await;
    let (mut bob, _) = Client::join(&hub, "count", "bob").await;
    ada.until("joined").await;
    ada.put_text("1.txt", "1").await;
    ada.put("2.bin", json!({ "kind": "binary", "size": 1 }))
        .await;
    ada.open("3.txt", "3").await;
    ada.put_text("4.txt", "4").await;
    assert_eq!(bob.pending().await.len(), 4, "one fileAdded per file");

    assert_eq!(
        error_code(&ada.put_text("5.txt", "5").await),
        ("too_many_files", "5.txt")
    );
    assert_eq!(
        error_code(&ada.open("6.txt", "6").await),
        ("too_many_files", "6.txt")
    );
    // What is in the tree already can still be put, opened and replaced.
    assert_eq!(
        ada.put_text("1.txt", "one").await,
        stored("1.txt", false, None)
    );
    assert_eq!(ada.open("4.txt", "").await["type"], "opened");
    assert_eq!(
        ada.put_text("2.bin", "two").await,
        stored("2.bin", true, None)
    );
    assert_eq!(ada.files().await.len(), 4);
    assert_eq!(
        bob.pending().await,
        vec![json!({ "type": "fileAdded", "entry": entry("2.bin", 3, None) })]
    );
}

#[tokio::test]
async fn bad_paths_are_refused() {
    let hub = TestHub::start(TestHub::with(SMALL, None)).await;
    let (mut ada, _) = Client::join(&hub, "paths", "ada").await;
    for path in ["../etc/passwd", "/etc/passwd", "a//b", "C:\\x", ""] {
        let answer = ada.put_text(path, "x").await;
        assert_eq!(error_code(&answer), ("bad_path", path), "{answer}");
    }
    assert_eq!(ada.files().await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_read_only_participant_cannot_put_but_sees_the_tree() {
    let dir = scratch_dir("read-only");
    let store = Store::open(&Database::Sqlite(dir.clone()))
        .await
        .expect("open SQLite");
    let tokens = access::create_session(&store, "ro")
        .await
        .expect("create the session");
    let config = HubConfig {
        access: Access::Tokens,
        ..TestHub::with(SMALL, Some(store))
    };
    let hub = TestHub::start(config).await;
    let (mut editor, _) = Client::join_with(&hub, "ro", "ed", Some(&tokens.join)).await;
    let (mut watcher, welcome) =
        Client::join_with(&hub, "ro", "wat", Some(&tokens.read_only)).await;
    assert_eq!(welcome["role"], "readOnly");
    editor.until("joined").await;
    editor.put_text("shared.txt", "hi").await;
    watcher.expect("fileAdded").await;

    for content in [
        json!({ "kind": "text", "text": "mine" }),
        json!({ "kind": "binary", "size": 1 }),
    ] {
        let answer = watcher.put("mine.txt", content).await;
        assert_eq!(error_code(&answer), ("read_only", "mine.txt"), "{answer}");
    }
    assert_eq!(watcher.files().await, vec![entry("shared.txt", 2, None)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Documents made by put (and edited), listings, and a listing replaced by
/// a document all come back after a restart of the hub.
async fn the_tree_survives_a_restart(database: Database, session: &str) {
    let open = || async { Store::open(&database).await.expect("open the store") };
    let hub = TestHub::start(TestHub::with(SMALL, Some(open().await))).await;
    let (mut ada, _) = Client::join(&hub, session, "ada").await;
    assert_eq!(
        ada.put_text("main.py", "import helper\n").await,
        stored("main.py", true, None)
    );
    ada.put_text("helper.py", "X = 1\n").await;
    ada.put("img.png", json!({ "kind": "binary", "size": 99 }))
        .await;
    ada.put("became_text.txt", json!({ "kind": "tooLarge", "size": 99 }))
        .await;
    ada.put_text("became_text.txt", "small now").await;
    ada.open("helper.py", "").await;
    ada.send(json!({ "type": "op", "doc": "helper.py", "rev": 0, "op": [6, "Y = 2\n"] }))
        .await;
    ada.expect("ack").await;
    let before = ada.files().await;
    assert_eq!(
        before,
        vec![
            entry("became_text.txt", 9, None),
            entry("helper.py", 12, None),
            entry("img.png", 99, Some("binary")),
            entry("main.py", 14, None),
        ]
    );
    ada.close().await;
    hub.stop().await;

    let hub = TestHub::start(TestHub::with(SMALL, Some(open().await))).await;
    let (mut bob, _) = Client::join(&hub, session, "bob").await;
    assert_eq!(bob.files().await, before);
    assert_eq!(bob.open("main.py", "").await["text"], "import helper\n");
    assert_eq!(bob.open("helper.py", "").await["text"], "X = 1\nY = 2\n");
    // Still listed after the restart: the same listing changes nothing.
    assert_eq!(
        bob.put("img.png", json!({ "kind": "binary", "size": 99 }))
            .await,
        stored("img.png", false, Some("binary"))
    );
}

#[tokio::test]
async fn sqlite_keeps_the_tree_across_a_restart() {
    let dir = scratch_dir("restart");
    the_tree_survives_a_restart(Database::Sqlite(dir.clone()), "tree").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Needs a real server: scripts/test.sh starts one and sets
/// CHORUS_TEST_POSTGRES (and there its absence fails the test).
#[tokio::test]
async fn postgres_keeps_the_tree_across_a_restart() {
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    // A fresh session per run: the database outlives test runs.
    let session = format!("tree-{}-{}", std::process::id(), now_secs());
    the_tree_survives_a_restart(Database::Postgres(url), &session).await;
}

/// The project as `chorus share` would publish it: two Python files and a
/// picture; only main.py is opened in an editor.
async fn share_a_project_and_run_it(hub: &TestHub, session: &str) -> (String, Value) {
    let (mut sharer, _) = Client::join(hub, session, "sharer").await;
    sharer
        .put_text(
            "helper.py",
            "def greet():\n    return 'hello from helper'\n",
        )
        .await;
    sharer
        .put("logo.png", json!({ "kind": "binary", "size": 512 }))
        .await;
    sharer
        .put_text("main.py", "import helper\nprint(helper.greet())\n")
        .await;
    sharer.close().await;
    let (mut editor, _) = Client::join(hub, session, "editor").await;
    editor.open("main.py", "").await;
    editor
        .send(json!({ "type": "run", "doc": "main.py" }))
        .await;
    editor.until("runStarted").await;
    let mut stdout = String::new();
    loop {
        let frame = editor.recv().await;
        match frame["type"].as_str() {
            Some("runOutput") if frame["stream"] == "stdout" => {
                stdout.push_str(frame["data"].as_str().unwrap_or_default());
            }
            Some("runFinished") => return (stdout, frame["result"].clone()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_run_takes_every_document_and_no_listed_file() {
    let recorder = Recorder::default();
    let config = HubConfig {
        runner: Runner::Enabled(Arc::new(recorder.clone())),
        ..TestHub::with(chorus_hub::DEFAULT_WORKSPACE_LIMITS, None)
    };
    let hub = TestHub::start(config).await;
    let (stdout, result) = share_a_project_and_run_it(&hub, "fake-run").await;
    assert_eq!(stdout, "helper.py main.py");
    assert_eq!(result["exitCode"], 0);
    let requests = recorder.requests();
    let helper = requests[0].files.iter().find(|(p, _)| p == "helper.py");
    assert_eq!(
        helper.map(|(_, text)| text.as_str()),
        Some("def greet():\n    return 'hello from helper'\n")
    );
}

/// The same in a real container: `import helper` finds the file that only
/// `put` brought (CHORUS_FULL_TESTS=1 makes a missing engine a failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_imports_a_file_nobody_opened() {
    if !chorus_testkit::docker() {
        return;
    }
    let executor = chorus_sandbox::DockerExecutor::connect(Default::default())
        .await
        .expect("connect to Docker");
    let config = HubConfig {
        runner: Runner::Enabled(Arc::new(executor)),
        ..TestHub::with(chorus_hub::DEFAULT_WORKSPACE_LIMITS, None)
    };
    let hub = TestHub::start(config).await;
    let (stdout, result) = share_a_project_and_run_it(&hub, "docker-run").await;
    assert_eq!(result["exitCode"], 0, "{result}");
    assert_eq!(stdout, "hello from helper\n");
}
