//! The file watcher end to end (ADR 0007): what other programs do in a
//! folder whose files the proxy keeps — `git checkout`, `mv`, a
//! formatter, edits made while the network was down — reaches the
//! session and everyone's disk, and nothing anyone typed meanwhile is
//! lost; the proxy's own writes are never sent back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::hub_client::hub_text;
use crate::support::relay::Relay;
use crate::support::{assert_converged, eventually, Hub, HubClient};

const WAIT: Duration = Duration::from_secs(30);

/// A folder's files as the session should have them: path → text, without
/// `.git/` nor `.chorus/`.
type Tree = BTreeMap<String, String>;

fn tree(files: &[(&str, &str)]) -> Tree {
    files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect()
}

fn write_tree(dir: &Path, files: &Tree) {
    for (path, text) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("create a folder");
        std::fs::write(file, text).expect("write a file");
    }
}

/// What `dir` holds, leaving out `.git/`, `.chorus/` and `ignored`.
fn disk_tree(dir: &Path, ignored: &[&str]) -> Tree {
    fn walk(root: &Path, dir: &Path, ignored: &[&str], out: &mut Tree) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            if rel == ".git" || rel == ".chorus" || ignored.contains(&rel.as_str()) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, ignored, out);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                out.insert(rel, text);
            }
        }
    }
    let mut out = Tree::new();
    walk(dir, dir, ignored, &mut out);
    out
}

/// The session's tree and each document's text, as the hub has them, when
/// its paths are those of `expected` (else the texts are not read: reading
/// opens, and opening a document deleted in between would make it anew).
/// A document gone between the listing and its reading is said as such.
async fn session_tree(hub: &Hub, session: &str, expected: &Tree) -> Tree {
    let (mut raw, _) = HubClient::join(&hub.url, session, "observer").await;
    raw.send_json(&json!({ "type": "files" })).await;
    let files = raw.wait_type("files").await.expect("the hub lists files");
    raw.close().await;
    let mut out = Tree::new();
    let entries = files["entries"].as_array().expect("entries");
    let paths: Vec<&str> = entries.iter().filter_map(|e| e["path"].as_str()).collect();
    let read = paths
        .iter()
        .copied()
        .eq(expected.keys().map(String::as_str));
    for entry in entries {
        let path = entry["path"].as_str().expect("a path").to_owned();
        if !read {
            out.insert(path, "<not read>".into());
        } else if entry["notSynced"].is_null() {
            let text = match hub_text(&hub.url, session, &path).await {
                Ok((_, text)) => text,
                Err(err) => format!("<{err}>"),
            };
            out.insert(path, text);
        }
    }
    out
}

/// Waits until the session's tree is `expected`.
async fn wait_session(hub: &Hub, session: &str, expected: &Tree, proxies: &[&Editor]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = session_tree(hub, session, expected).await;
        if &now == expected {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = proxies
                .iter()
                .map(|p| format!("{}'s proxy:\n{}", p.name, p.client().log_tail(40)))
                .collect();
            panic!(
                "the session holds {now:#?}\nnot {expected:#?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `dir` holds `expected` (besides `ignored`).
async fn wait_disk(dir: &Path, ignored: &[&str], expected: &Tree, proxy: &Editor) {
    let held = eventually(WAIT, || disk_tree(dir, ignored) == *expected).await;
    assert!(
        held,
        "{} holds {:#?}\nnot {expected:#?}\nproxy log:\n{}",
        dir.display(),
        disk_tree(dir, ignored),
        proxy.client().log_tail(60)
    );
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=ada",
            "-c",
            "user.email=ada@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A participant whose proxy keeps the session's files in `dir`.
async fn syncing_editor(hub_url: &str, hub: &Hub, session: &str, name: &str, dir: &Path) -> Editor {
    std::fs::create_dir_all(dir).expect("create the workspace");
    let options = EditorOptions {
        workspace: Some(dir.to_owned()),
        extra_args: vec!["--sync-files".into()],
        hub_url: hub_url.to_owned(),
        ..EditorOptions::new(EditorKind::VsCode, hub, session, name)
    };
    Editor::start_with(options, &hub.log_dir).await
}

/// Runs `chorus.share` in `editor` and waits until it says it is done.
async fn share_from(editor: &Editor, files: usize) {
    let answer = loop {
        let answer = editor
            .client()
            .request(
                "workspace/executeCommand",
                json!({ "command": "chorus.share", "arguments": [] }),
            )
            .await;
        match answer {
            Err(err) if err.contains("not connected") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    assert_eq!(answer, Ok(json!({ "requested": "share" })));
    let shared = match files {
        1 => "shared 1 file with session".to_owned(),
        n => format!("shared {n} files with session"),
    };
    editor
        .wait_message("window/showMessage", &shared, WAIT)
        .await;
}

/// Waits until `editor`'s proxy watches its folder.
async fn wait_watching(editor: &Editor) {
    editor
        .wait_message("window/logMessage", "watching", WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_checkout_in_the_sharers_folder_reaches_the_session_and_a_joiner() {
    if !chorus_testkit::git() {
        return;
    }
    let hub = Hub::start("a_git_checkout_reaches_the_session").await;
    let session = "checkout";
    let main = tree(&[
        (".gitignore", "*.log\n"),
        ("app.py", "def main():\n    print('main')\n"),
        ("util.py", "def helper():\n    return 1\n"),
        ("gone.py", "print('only on main')\n"),
        ("docs/guide.md", "# Guide\n"),
    ]);
    let other = tree(&[
        (".gitignore", "*.log\n"),
        (
            "app.py",
            "from util import helper\n\ndef main():\n    print('other')\n    helper()\n",
        ),
        ("util.py", "def helper():\n    return 1\n"),
        ("docs/guide.md", "# Guide\n\nMore on the other branch.\n"),
        ("feature/new.py", "FEATURE = True\n"),
    ]);
    let ada_dir = hub.log_dir.join("ada");
    std::fs::create_dir_all(&ada_dir).expect("create ada's folder");
    git(&ada_dir, &["init", "-q"]);
    write_tree(&ada_dir, &other);
    std::fs::remove_file(ada_dir.join("gone.py")).ok();
    git(&ada_dir, &["checkout", "-q", "-b", "other"]);
    git(&ada_dir, &["add", "-A"]);
    git(&ada_dir, &["commit", "-q", "-m", "other"]);
    git(&ada_dir, &["checkout", "-q", "--orphan", "main"]);
    git(&ada_dir, &["rm", "-rq", "--cached", "."]);
    for path in other.keys() {
        std::fs::remove_file(ada_dir.join(path)).expect("clear the work tree");
    }
    std::fs::remove_dir(ada_dir.join("feature")).expect("clear the work tree");
    write_tree(&ada_dir, &main);
    git(&ada_dir, &["add", "-A"]);
    git(&ada_dir, &["commit", "-q", "-m", "main"]);
    // Ignored: never shared, on either branch.
    std::fs::write(ada_dir.join("debug.log"), "noise\n").expect("write debug.log");
    assert_eq!(disk_tree(&ada_dir, &["debug.log"]), main);

    // Ada publishes her checkout from the editor, without syncFiles: from
    // then on her folder is kept in step both ways.
    let options = EditorOptions {
        workspace: Some(ada_dir.clone()),
        ..EditorOptions::new(EditorKind::VsCode, &hub, session, "ada")
    };
    let ada = Editor::start_with(options, &hub.log_dir).await;
    share_from(&ada, main.len()).await;
    wait_watching(&ada).await;
    let bob_dir = hub.log_dir.join("bob");
    let bob = syncing_editor(&hub.url, &hub, session, "bob", &bob_dir).await;
    wait_session(&hub, session, &main, &[&ada]).await;
    wait_disk(&bob_dir, &[], &main, &bob).await;

    git(&ada_dir, &["checkout", "-q", "other"]);
    wait_session(&hub, session, &other, &[&ada, &bob]).await;
    wait_disk(&bob_dir, &[], &other, &bob).await;
    // Ada's folder is git's: the proxy wrote nothing over it.
    assert_eq!(disk_tree(&ada_dir, &["debug.log"]), other);
    // What the session deleted, bob keeps in his backup.
    assert_eq!(
        std::fs::read_to_string(bob_dir.join(".chorus/backup/gone.py")).ok(),
        main.get("gone.py").cloned()
    );

    // And back: the tree follows again.
    git(&ada_dir, &["checkout", "-q", "main"]);
    wait_session(&hub, session, &main, &[&ada, &bob]).await;
    wait_disk(&bob_dir, &[], &main, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mv_is_a_rename_and_a_formatter_merges_with_someone_typing() {
    let hub = Hub::start("mv_is_a_rename_and_a_formatter_merges").await;
    let session = "terminal";
    let start = tree(&[
        ("a.py", "print('a')\n"),
        (
            "fmt.py",
            "def f(x):\n  return x\n\n\ndef g(y):\n  return y\n",
        ),
    ]);
    let ada_dir = hub.log_dir.join("ada");
    std::fs::create_dir_all(&ada_dir).expect("create ada's folder");
    write_tree(&ada_dir, &start);
    let ada = syncing_editor(&hub.url, &hub, session, "ada", &ada_dir).await;
    share_from(&ada, start.len()).await;
    wait_watching(&ada).await;
    wait_session(&hub, session, &start, &[&ada]).await;

    // `mv a.py b.py` in a terminal: a rename, not a delete and a create.
    let (mut observer, _) = HubClient::join(&hub.url, session, "observer").await;
    std::fs::rename(ada_dir.join("a.py"), ada_dir.join("b.py")).expect("mv");
    let renamed = observer
        .wait_type("renamed")
        .await
        .expect("the hub tells of the rename");
    assert_eq!(
        (renamed["from"].as_str(), renamed["to"].as_str()),
        (Some("a.py"), Some("b.py")),
        "{renamed}"
    );
    let seen: Vec<&Value> = observer
        .seen
        .iter()
        .filter(|frame| frame["type"] == "deleted" || frame["type"] == "fileAdded")
        .collect();
    assert!(seen.is_empty(), "not a delete and a create: {seen:?}");
    let moved = tree(&[("b.py", "print('a')\n"), ("fmt.py", &start["fmt.py"])]);
    wait_session(&hub, session, &moved, &[&ada]).await;

    // A formatter rewrites fmt.py, which nobody has open, while cy types
    // in it: both survive, on the hub, in cy's buffer and on ada's disk.
    let cy = Editor::start(EditorKind::Helix, &hub, session, "cy").await;
    cy.open("fmt.py", &start["fmt.py"]);
    assert_converged(&hub, session, "fmt.py", &[&cy]).await;
    cy.insert_after("fmt.py", "return y", "  # cy");
    std::fs::write(
        ada_dir.join("fmt.py"),
        "def f(x):\n    return x\n\n\ndef g(y):\n    return y\n",
    )
    .expect("format fmt.py");
    cy.insert_before("fmt.py", "def f", "# typed by cy\n");
    let expected = "# typed by cy\ndef f(x):\n    return x\n\n\ndef g(y):\n    return y  # cy\n";
    wait_hub_text(&hub, session, "fmt.py", expected, &ada).await;
    assert_eq!(
        assert_converged(&hub, session, "fmt.py", &[&cy]).await,
        expected
    );
    let on_disk = eventually(WAIT, || {
        std::fs::read_to_string(ada_dir.join("fmt.py"))
            .ok()
            .as_deref()
            == Some(expected)
    })
    .await;
    assert!(
        on_disk,
        "ada's fmt.py holds {:?}\nproxy log:\n{}",
        std::fs::read_to_string(ada_dir.join("fmt.py")).ok(),
        ada.client().log_tail(60)
    );
    assert!(
        !ada_dir.join(".chorus/backup/fmt.py").exists(),
        "a merged change needs no backup"
    );
}

/// Waits until the hub's text of `doc` is `expected`.
async fn wait_hub_text(hub: &Hub, session: &str, doc: &str, expected: &str, proxy: &Editor) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = hub_text(&hub.url, session, doc).await.map(|(_, text)| text);
        if now.as_deref() == Ok(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub's {doc} holds {now:?}, not {expected:?}\nproxy log:\n{}",
            proxy.client().log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_writes_are_not_sent_back() {
    let hub = Hub::start("the_proxys_own_writes_are_not_sent_back").await;
    let session = "echo";
    let ada_dir = hub.log_dir.join("ada");
    std::fs::create_dir_all(&ada_dir).expect("create ada's folder");
    std::fs::write(ada_dir.join("echo.py"), "x = 1\n").expect("write echo.py");
    let ada = syncing_editor(&hub.url, &hub, session, "ada", &ada_dir).await;
    share_from(&ada, 1).await;
    wait_watching(&ada).await;
    let (rev, _) = hub_text(&hub.url, session, "echo.py")
        .await
        .expect("echo.py is shared");

    // Cy types steadily, so that ada's proxy writes the file many times
    // while more edits arrive: a write taken for a change on disk would
    // be sent back (revisions the hub did not get from cy) and, merged
    // with the edits that came after it, would repeat them.
    let cy = Editor::start(EditorKind::VsCode, &hub, session, "cy").await;
    cy.open("echo.py", "x = 1\n");
    let mut text = String::from("x = 1\n");
    for i in 0..30 {
        let line = format!("v{i} = {i}\n");
        cy.edit("echo.py", text.len(), text.len(), &line);
        text.push_str(&line);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_hub_text(&hub, session, "echo.py", &text, &ada).await;
    assert_converged(&hub, session, "echo.py", &[&cy]).await;
    let cy_rev = cy
        .document_state("echo.py")
        .await
        .expect("cy's proxy knows echo.py")["rev"]
        .as_u64()
        .expect("a revision");
    let written = eventually(WAIT, || {
        std::fs::read_to_string(ada_dir.join("echo.py"))
            .ok()
            .as_deref()
            == Some(text.as_str())
    })
    .await;
    assert!(written, "proxy log:\n{}", ada.client().log_tail(40));
    // Well past the watcher's settling time and the write interval, the
    // hub holds cy's edits and nothing more: every revision since the
    // share is one of cy's ops.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (now, now_text) = hub_text(&hub.url, session, "echo.py")
        .await
        .expect("echo.py is shared");
    assert_eq!(now_text, text);
    assert!(now > rev, "cy's edits made revisions");
    assert_eq!(
        now,
        cy_rev,
        "the hub's revision is the last cy's proxy saw (its own ack): nobody else sent an op\nproxy log:\n{}",
        ada.client().log_tail(40)
    );
    // A change made on disk after that is one op more, once.
    let edited = format!("{text}w = 4\n");
    std::fs::write(ada_dir.join("echo.py"), &edited).expect("edit");
    wait_hub_text(&hub, session, "echo.py", &edited, &ada).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (after, _) = hub_text(&hub.url, session, "echo.py")
        .await
        .expect("echo.py is shared");
    assert_eq!(after, now + 1, "one change on disk, one op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_changed_on_both_sides_during_an_outage_is_all_there_after() {
    let hub = Hub::start("what_changed_on_both_sides_during_an_outage").await;
    let session = "outage";
    let start = tree(&[
        ("both.py", "one = 1\ntwo = 2\nthree = 3\n"),
        ("old.py", "print('old')\n"),
        ("keep.py", "KEEP = 1\n"),
    ]);
    let ada_dir = hub.log_dir.join("ada");
    std::fs::create_dir_all(&ada_dir).expect("create ada's folder");
    write_tree(&ada_dir, &start);
    let relay = Relay::start(hub.port).await;
    let ada = syncing_editor(&relay.url(), &hub, session, "ada", &ada_dir).await;
    share_from(&ada, start.len()).await;
    wait_watching(&ada).await;
    wait_session(&hub, session, &start, &[&ada]).await;
    let cy = Editor::start(EditorKind::Neovim, &hub, session, "cy").await;
    cy.open("both.py", &start["both.py"]);
    assert_converged(&hub, session, "both.py", &[&cy]).await;

    relay.cut();
    ada.wait_message("window/showMessage", "Retrying", WAIT)
        .await;
    // Meanwhile on ada's disk: an edit, a new file, a deleted file...
    std::fs::write(ada_dir.join("both.py"), "one = 'ONE'\ntwo = 2\nthree = 3\n").expect("edit");
    std::fs::write(ada_dir.join("fresh.py"), "FRESH = 1\n").expect("create");
    std::fs::remove_file(ada_dir.join("old.py")).expect("delete");
    // ...and in the session: cy types in the same file and adds one.
    cy.insert_after("both.py", "three = 3\n", "four = 4\n");
    cy.open("cy.py", "CY = 1\n");
    assert_converged(&hub, session, "both.py", &[&cy]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.restore();

    let after = tree(&[
        ("both.py", "one = 'ONE'\ntwo = 2\nthree = 3\nfour = 4\n"),
        ("cy.py", "CY = 1\n"),
        ("fresh.py", "FRESH = 1\n"),
        ("keep.py", "KEEP = 1\n"),
    ]);
    wait_session(&hub, session, &after, &[&ada]).await;
    wait_disk(&ada_dir, &[], &after, &ada).await;
    assert_eq!(
        assert_converged(&hub, session, "both.py", &[&cy]).await,
        after["both.py"]
    );
}
