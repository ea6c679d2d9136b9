//! Renames and deletes over the wire, case by case as ADR 0005 decides
//! them (edit vs. rename, edit vs. delete, rename vs. rename, a rename onto
//! a file, directories, two creates of one path, read-only participants),
//! against a hub running in this process, and what of them survives a
//! restart on real SQLite and PostgreSQL (`CHORUS_TEST_POSTGRES`).

#[path = "harness/hub.rs"]
mod hub;

use chorus_hub::access::{self, Access};
use chorus_hub::storage::{now_secs, Database, Store};
use chorus_hub::{HubConfig, WorkspaceLimits, DEFAULT_WORKSPACE_LIMITS};
use serde_json::{json, Value};

use self::hub::{entry, error_code, scratch_dir, stored, Client, TestHub};

/// Room for the trees below, and a session cap small enough to check that
/// deleting gives its bytes back.
const LIMITS: WorkspaceLimits = WorkspaceLimits {
    max_file_bytes: 64,
    max_session_bytes: 100,
    max_files: 20,
};

async fn hub_in_memory() -> TestHub {
    TestHub::start(TestHub::with(LIMITS, None)).await
}

fn renamed(from: &str, to: &str, client_id: &Value) -> Value {
    json!({ "type": "renamed", "from": from, "to": to, "clientId": client_id })
}

fn deleted(path: &str, client_id: &Value) -> Value {
    json!({ "type": "deleted", "path": path, "clientId": client_id })
}

impl Client {
    /// Sends a rename and returns the answer (`renamed` or `error`).
    async fn rename(&mut self, from: &str, to: &str) -> Value {
        self.send(json!({ "type": "rename", "from": from, "to": to }))
            .await;
        self.recv().await
    }

    /// Sends a delete and returns the answer (`deleted` or `error`).
    async fn delete(&mut self, path: &str) -> Value {
        self.send(json!({ "type": "delete", "path": path })).await;
        self.recv().await
    }

    async fn op(&mut self, doc: &str, rev: u64, op: Value) {
        self.send(json!({ "type": "op", "doc": doc, "rev": rev, "op": op }))
            .await;
    }

    /// The document's text now, as a fresh `open` gets it.
    async fn text_of(&mut self, doc: &str) -> Value {
        let opened = self.open(doc, "").await;
        assert_eq!(opened["created"], false, "{doc} is in the session");
        opened["text"].clone()
    }
}

/// Two participants in one session, each knowing the other is there.
async fn pair(hub: &TestHub, session: &str) -> ((Client, Value), (Client, Value)) {
    let (mut ada, ada_welcome) = Client::join(hub, session, "ada").await;
    let (bob, bob_welcome) = Client::join(hub, session, "bob").await;
    ada.until("joined").await;
    (
        (ada, ada_welcome["clientId"].clone()),
        (bob, bob_welcome["clientId"].clone()),
    )
}

#[tokio::test]
async fn an_edit_sent_for_the_old_path_lands_in_the_renamed_document() {
    let hub = hub_in_memory().await;
    let ((mut ada, ada_id), (mut bob, bob_id)) = pair(&hub, "edit-rename").await;
    ada.open("a.txt", "hello").await;
    bob.expect("fileAdded").await;
    bob.open("a.txt", "").await;

    assert_eq!(
        ada.rename("a.txt", "b.txt").await,
        renamed("a.txt", "b.txt", &ada_id)
    );
    assert_eq!(bob.recv().await, renamed("a.txt", "b.txt", &ada_id));
    // Ada types in the renamed document; Bob, not there yet in his
    // editor, types at the same revision under the old name.
    ada.op("b.txt", 0, json!(["> ", 5])).await;
    assert_eq!(ada.expect("ack").await["doc"], "b.txt");
    bob.op("a.txt", 0, json!([5, "!"])).await;
    assert_eq!(
        bob.recv().await,
        json!({ "type": "remote", "doc": "b.txt", "rev": 1, "op": ["> ", 5], "clientId": ada_id })
    );
    assert_eq!(
        bob.recv().await,
        json!({ "type": "ack", "doc": "b.txt", "rev": 2 }),
        "acknowledged under the new path"
    );
    assert_eq!(
        ada.recv().await,
        json!({ "type": "remote", "doc": "b.txt", "rev": 2, "op": [7, "!"], "clientId": bob_id }),
        "transformed past Ada's edit, under the new path"
    );

    // A cursor and a checksum for the old path reach the document too.
    bob.send(json!({ "type": "cursor", "doc": "a.txt", "rev": 2, "selections": [{ "anchor": 1, "head": 1 }] }))
        .await;
    assert_eq!(ada.expect("cursor").await["doc"], "b.txt");
    bob.send(json!({ "type": "checksum", "doc": "a.txt", "rev": 2, "hash": "wrong" }))
        .await;
    assert_eq!(
        error_code(&bob.recv().await),
        ("checksum_mismatch", "b.txt")
    );
    let resync = bob.expect("opened").await;
    assert_eq!(
        (resync["doc"].clone(), resync["text"].clone()),
        (json!("b.txt"), json!("> hello!"))
    );
    // Closing by the old name closes it: Bob hears no more of it.
    bob.send(json!({ "type": "close", "doc": "a.txt" })).await;
    ada.op("b.txt", 2, json!([8, "?"])).await;
    ada.expect("ack").await;
    assert_eq!(bob.pending().await, Vec::<Value>::new());

    assert_eq!(ada.files().await, vec![entry("b.txt", 9, None)]);
    let (mut carol, _) = Client::join(&hub, "edit-rename", "carol").await;
    assert_eq!(carol.text_of("b.txt").await, "> hello!?");
}

#[tokio::test]
async fn an_edit_of_a_deleted_document_is_refused_and_saving_makes_it_anew() {
    let hub = hub_in_memory().await;
    let ((mut ada, ada_id), (mut bob, _)) = pair(&hub, "edit-delete").await;
    ada.open("a.txt", "hello").await;
    bob.expect("fileAdded").await;
    bob.open("a.txt", "").await;

    assert_eq!(ada.delete("a.txt").await, deleted("a.txt", &ada_id));
    assert_eq!(bob.recv().await, deleted("a.txt", &ada_id), "told who");
    bob.op("a.txt", 0, json!([5, "!"])).await;
    assert_eq!(error_code(&bob.recv().await), ("unknown_document", "a.txt"));
    assert_eq!(bob.files().await, Vec::<Value>::new());
    // Bob keeps his text: saving it shares it again, as a new document.
    let opened = bob.open("a.txt", "hello!").await;
    assert_eq!(
        (opened["created"].clone(), opened["rev"].clone()),
        (json!(true), json!(0))
    );
    assert_eq!(
        ada.expect("fileAdded").await["entry"],
        entry("a.txt", 6, None)
    );
}

#[tokio::test]
async fn rename_vs_rename_ends_under_the_second_name() {
    let hub = hub_in_memory().await;
    let ((mut ada, ada_id), (mut bob, bob_id)) = pair(&hub, "rename-rename").await;
    ada.open("a.txt", "text").await;
    ada.put_text("src/main.rs", "fn main() {}").await;
    ada.put_text("src/lib.rs", "").await;
    assert_eq!(bob.pending().await.len(), 3);

    // Both rename the same file; Bob's arrives second, naming a.txt still.
    ada.rename("a.txt", "b.txt").await;
    assert_eq!(
        bob.rename("a.txt", "c.txt").await,
        renamed("a.txt", "b.txt", &ada_id)
    );
    assert_eq!(
        bob.recv().await,
        renamed("b.txt", "c.txt", &bob_id),
        "moved from where the first rename put it"
    );
    assert_eq!(ada.recv().await, renamed("b.txt", "c.txt", &bob_id));
    // Ada, who had it open as a.txt, still reaches it by that name.
    ada.op("a.txt", 0, json!([4, "!"])).await;
    assert_eq!(
        ada.recv().await,
        json!({ "type": "ack", "doc": "c.txt", "rev": 1 })
    );

    // The same for a directory.
    ada.rename("src", "lib").await;
    assert_eq!(
        bob.rename("src", "app").await,
        renamed("src", "lib", &ada_id)
    );
    assert_eq!(bob.recv().await, renamed("lib", "app", &bob_id));
    assert_eq!(ada.recv().await, renamed("lib", "app", &bob_id));
    assert_eq!(
        ada.files().await,
        vec![
            entry("app/lib.rs", 0, None),
            entry("app/main.rs", 12, None),
            entry("c.txt", 5, None),
        ]
    );
}

#[tokio::test]
async fn a_rename_never_overwrites_and_bad_renames_change_nothing() {
    let hub = hub_in_memory().await;
    let ((mut ada, _), (mut bob, _)) = pair(&hub, "refused").await;
    ada.put_text("a.txt", "a").await;
    ada.put_text("b.txt", "b").await;
    ada.put_text("dir/x.txt", "x").await;
    ada.put("logo.png", json!({ "kind": "binary", "size": 5 }))
        .await;
    let tree = ada.files().await;

    let refusals = [
        (("a.txt", "b.txt"), ("already_exists", "b.txt")),
        (("a.txt", "logo.png"), ("already_exists", "logo.png")),
        (("a.txt", "dir"), ("already_exists", "dir")),
        (
            ("missing.txt", "m.txt"),
            ("unknown_document", "missing.txt"),
        ),
        (("dir", "dir/sub"), ("bad_path", "dir/sub")),
        (("a.txt", "a.txt"), ("bad_path", "a.txt")),
        (("a.txt", "../a.txt"), ("bad_path", "../a.txt")),
        (("/etc/passwd", "p"), ("bad_path", "/etc/passwd")),
    ];
    for ((from, to), expected) in refusals {
        let answer = ada.rename(from, to).await;
        assert_eq!(error_code(&answer), expected, "{from} -> {to}: {answer}");
    }
    for (path, expected) in [("nothing", "unknown_document"), ("a//b", "bad_path")] {
        let answer = ada.delete(path).await;
        assert_eq!(error_code(&answer), (expected, path), "{answer}");
    }
    assert_eq!(ada.files().await, tree, "nothing moved");
    assert_eq!(bob.pending().await.len(), 4, "only the puts' fileAdded");
}

#[tokio::test]
async fn a_directory_moves_and_goes_in_one_message() {
    let hub = hub_in_memory().await;
    let ((mut ada, ada_id), (mut bob, bob_id)) = pair(&hub, "directory").await;
    ada.put_text("src/main.py", "import util\n").await;
    ada.put_text("src/pkg/util.py", "X = 1\n").await;
    ada.put("src/logo.png", json!({ "kind": "binary", "size": 300 }))
        .await;
    ada.put_text("src.txt", "beside src, not in it").await;
    assert_eq!(bob.pending().await.len(), 4);
    bob.open("src/pkg/util.py", "").await;

    assert_eq!(
        ada.rename("src", "app").await,
        renamed("src", "app", &ada_id)
    );
    assert_eq!(
        bob.pending().await,
        vec![renamed("src", "app", &ada_id)],
        "one message for the whole directory"
    );
    assert_eq!(
        bob.files().await,
        vec![
            entry("app/logo.png", 300, Some("binary")),
            entry("app/main.py", 12, None),
            entry("app/pkg/util.py", 6, None),
            entry("src.txt", 21, None),
        ]
    );
    bob.op("src/pkg/util.py", 0, json!([6, "Y = 2\n"])).await;
    assert_eq!(
        bob.recv().await,
        json!({ "type": "ack", "doc": "app/pkg/util.py", "rev": 1 })
    );

    assert_eq!(bob.delete("app").await, deleted("app", &bob_id));
    assert_eq!(ada.pending().await, vec![deleted("app", &bob_id)]);
    assert_eq!(ada.files().await, vec![entry("src.txt", 21, None)]);
    for doc in ["app/pkg/util.py", "src/pkg/util.py"] {
        bob.op(doc, 1, json!([12, "Z = 3\n"])).await;
        assert_eq!(error_code(&bob.recv().await), ("unknown_document", doc));
    }
    // The deleted text no longer counts toward the session's 100 bytes:
    // 21 + 64 fit only because util.py's and main.py's 24 are gone.
    assert_eq!(
        ada.put_text("big.txt", &"b".repeat(64)).await,
        stored("big.txt", true, None)
    );
    assert_eq!(
        ada.put_text("more.txt", &"m".repeat(16)).await,
        stored("more.txt", true, Some("sessionFull"))
    );
    // A directory's files deleted one by one leave nothing behind either.
    ada.put("docs/a.bin", json!({ "kind": "binary", "size": 1 }))
        .await;
    assert_eq!(
        ada.delete("docs/a.bin").await,
        deleted("docs/a.bin", &ada_id)
    );
    assert_eq!(
        error_code(&ada.delete("docs").await),
        ("unknown_document", "docs")
    );
}

#[tokio::test]
async fn of_two_creates_of_one_path_the_second_gets_the_first_text() {
    let hub = hub_in_memory().await;
    let ((mut ada, _), (mut bob, _)) = pair(&hub, "two-creates").await;
    let first = ada.open("new.rs", "first").await;
    assert_eq!(first["created"], true);
    // Bob's open crossed Ada's: the hub ordered hers first.
    bob.send(json!({ "type": "open", "doc": "new.rs", "text": "second" }))
        .await;
    bob.expect("fileAdded").await;
    let second = bob.expect("opened").await;
    assert_eq!(
        (second["created"].clone(), second["text"].clone()),
        (json!(false), json!("first"))
    );
    assert_eq!(
        bob.put_text("new.rs", "third").await,
        stored("new.rs", false, None)
    );
    assert_eq!(ada.files().await, vec![entry("new.rs", 5, None)]);
}

#[tokio::test]
async fn a_new_file_at_an_old_path_ends_its_redirection() {
    let hub = hub_in_memory().await;
    let ((mut ada, _), (mut bob, _)) = pair(&hub, "reused").await;
    ada.open("a.txt", "old").await;
    bob.expect("fileAdded").await;
    bob.open("a.txt", "").await;
    ada.rename("a.txt", "b.txt").await;
    bob.expect("renamed").await;
    // Someone makes a new a.txt: the name means that file now.
    ada.open("a.txt", "new").await;
    bob.expect("fileAdded").await;
    bob.op("a.txt", 0, json!([3, "!"])).await;
    assert_eq!(
        error_code(&bob.recv().await),
        ("unknown_document", "a.txt"),
        "Bob has b.txt open, not the new a.txt"
    );
    // And once it is gone, a.txt does not lead to b.txt again.
    ada.delete("a.txt").await;
    bob.expect("deleted").await;
    bob.op("a.txt", 0, json!([3, "!"])).await;
    assert_eq!(error_code(&bob.recv().await), ("unknown_document", "a.txt"));
    assert_eq!(bob.text_of("b.txt").await, "old");
}

#[tokio::test]
async fn a_read_only_participant_cannot_rename_or_delete() {
    let dir = scratch_dir("renames-read-only");
    let store = Store::open(&Database::Sqlite(dir.clone()))
        .await
        .expect("open SQLite");
    let tokens = access::create_session(&store, "ro")
        .await
        .expect("create the session");
    let config = HubConfig {
        access: Access::Tokens,
        ..TestHub::with(LIMITS, Some(store))
    };
    let hub = TestHub::start(config).await;
    let (mut editor, _) = Client::join_with(&hub, "ro", "ed", Some(&tokens.join)).await;
    let (mut watcher, _) = Client::join_with(&hub, "ro", "wat", Some(&tokens.read_only)).await;
    editor.until("joined").await;
    editor.put_text("src/a.txt", "hi").await;
    watcher.expect("fileAdded").await;

    let answer = watcher.rename("src/a.txt", "b.txt").await;
    assert_eq!(error_code(&answer), ("read_only", "src/a.txt"), "{answer}");
    let answer = watcher.delete("src").await;
    assert_eq!(error_code(&answer), ("read_only", "src"), "{answer}");
    assert_eq!(editor.pending().await, Vec::<Value>::new());
    assert_eq!(watcher.files().await, vec![entry("src/a.txt", 2, None)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Renames and deletes of documents with logged ops and of listed files,
/// then a restart: the tree and every text are as before it, the logs
/// moved with their documents (editing goes on at the same revision) and
/// a deleted path made again has only its new text.
async fn tree_changes_survive_a_restart(database: Database, session: &str) {
    let open = || async { Store::open(&database).await.expect("open the store") };
    let limits = DEFAULT_WORKSPACE_LIMITS;
    let hub = TestHub::start(TestHub::with(limits, Some(open().await))).await;
    let (mut ada, _) = Client::join(&hub, session, "ada").await;
    ada.put_text("src/main.py", "import util\n").await;
    ada.put("src/logo.png", json!({ "kind": "binary", "size": 300 }))
        .await;
    ada.open("src/pkg/util.py", "X = 1\n").await;
    ada.op("src/pkg/util.py", 0, json!([6, "Y = 2\n"])).await;
    ada.expect("ack").await;
    ada.open("notes.txt", "n").await;
    ada.op("notes.txt", 0, json!([1, "otes"])).await;
    ada.expect("ack").await;
    ada.open("old/a.txt", "old a").await;
    ada.op("old/a.txt", 0, json!([5, "!"])).await;
    ada.expect("ack").await;
    ada.put("old/b.bin", json!({ "kind": "binary", "size": 1 }))
        .await;
    ada.put_text("kept.txt", "kept").await;

    ada.rename("src", "app").await;
    ada.rename("notes.txt", "docs/notes.md").await;
    // Edited after its rename: the log goes on under the new path.
    ada.op("app/pkg/util.py", 1, json!([12, "Z = 3\n"])).await;
    assert_eq!(
        ada.recv().await,
        json!({ "type": "ack", "doc": "app/pkg/util.py", "rev": 2 })
    );
    ada.delete("old").await;
    ada.open("old/a.txt", "new a").await;
    let before = ada.files().await;
    assert_eq!(
        before,
        vec![
            entry("app/logo.png", 300, Some("binary")),
            entry("app/main.py", 12, None),
            entry("app/pkg/util.py", 18, None),
            entry("docs/notes.md", 5, None),
            entry("kept.txt", 4, None),
            entry("old/a.txt", 5, None),
        ]
    );
    ada.close().await;
    hub.stop().await;

    let hub = TestHub::start(TestHub::with(limits, Some(open().await))).await;
    let (mut bob, _) = Client::join(&hub, session, "bob").await;
    assert_eq!(bob.files().await, before);
    assert_eq!(bob.text_of("app/main.py").await, "import util\n");
    assert_eq!(bob.text_of("docs/notes.md").await, "notes");
    assert_eq!(bob.text_of("old/a.txt").await, "new a");
    let util = bob.open("app/pkg/util.py", "").await;
    assert_eq!(
        (util["rev"].clone(), util["text"].clone()),
        (json!(2), json!("X = 1\nY = 2\nZ = 3\n"))
    );
    bob.op("app/pkg/util.py", 2, json!([18, "W = 4\n"])).await;
    assert_eq!(
        bob.recv().await,
        json!({ "type": "ack", "doc": "app/pkg/util.py", "rev": 3 })
    );
    // The rows moved: nothing is left at the old paths.
    for gone in ["src/main.py", "notes.txt", "src"] {
        assert_eq!(
            error_code(&bob.delete(gone).await),
            ("unknown_document", gone)
        );
    }
}

#[tokio::test]
async fn sqlite_keeps_renames_and_deletes_across_a_restart() {
    let dir = scratch_dir("renames-restart");
    tree_changes_survive_a_restart(Database::Sqlite(dir.clone()), "moves").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Needs a real server: scripts/test.sh starts one and sets
/// CHORUS_TEST_POSTGRES (and there its absence fails the test).
#[tokio::test]
async fn postgres_keeps_renames_and_deletes_across_a_restart() {
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    // A fresh session per run: the database outlives test runs.
    let session = format!("moves-{}-{}", std::process::id(), now_secs());
    tree_changes_survive_a_restart(Database::Postgres(url), &session).await;
}
