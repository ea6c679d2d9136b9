//! Renames and deletes (ADR 0005) end to end: a file renamed in one editor
//! moves in the others (their editor renames its buffer, and what anyone
//! typed meanwhile, in flight or held, lands in the renamed document); a
//! file deleted while someone types stays in their buffer, unshared, until
//! they save it; a folder renamed and a file deleted reach a joiner's disk
//! (`syncFiles`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::hub_client::hub_text;
use crate::support::{assert_converged, eventually, Hub, HubClient};

const WAIT: Duration = Duration::from_secs(20);

/// The session's tree, as the hub lists it.
async fn session_files(hub: &Hub, session: &str) -> Vec<String> {
    let (mut raw, _) = HubClient::join(&hub.url, session, "observer").await;
    raw.send_json(&json!({ "type": "files" })).await;
    let files = raw
        .wait_type("files")
        .await
        .expect("the hub lists the files");
    let mut paths: Vec<String> = files["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["path"].as_str().map(str::to_owned))
        .collect();
    paths.sort();
    raw.close().await;
    paths
}

async fn wait_files(hub: &Hub, session: &str, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let files = session_files(hub, session).await;
        if files == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session's tree is {files:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_open(editor: &Editor, path: &str, gone: &str) {
    let renamed = eventually(WAIT, || editor.is_open(path) && !editor.is_open(gone)).await;
    assert!(
        renamed,
        "{}'s buffer {gone} was not renamed to {path}:\n{}\nproxy log:\n{}",
        editor.name,
        editor.describe(gone),
        editor.client().log_tail(30)
    );
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

async fn wait_disk(path: &Path, expected: Option<&str>, editor: &Editor) {
    let held = eventually(WAIT, || read(path).as_deref() == expected).await;
    assert!(
        held,
        "{} holds {:?}, not {expected:?}\nproxy log:\n{}",
        path.display(),
        read(path),
        editor.client().log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_moves_the_document_in_every_editor() {
    let hub = Hub::start("a_rename_moves_the_document_in_every_editor").await;
    let session = "moves";
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    let bob = Editor::start(EditorKind::Neovim, &hub, session, "bob").await;
    let cy = Editor::start(EditorKind::Helix, &hub, session, "cy").await;
    let editors = [&ada, &bob, &cy];
    for editor in editors {
        editor.open("src/old.py", "def main():\n    pass\n");
    }
    assert_converged(&hub, session, "src/old.py", &editors).await;

    // Bob is busy: what the proxy sends him waits, rename included, and
    // he types meanwhile (in flight to the hub under the old path).
    bob.hold();
    bob.insert_after("src/old.py", "pass", "  # bob");
    ada.rename("src/old.py", "src/new.py", true);
    ada.insert_after("src/new.py", "main():", "  # ada");
    // Cy's editor renames its buffer (and reports it back, as Helix does).
    wait_open(&cy, "src/new.py", "src/old.py").await;
    cy.insert_before("src/new.py", "def", "# cy\n");
    bob.insert_after("src/old.py", "# bob", " again");
    bob.release();
    wait_open(&bob, "src/new.py", "src/old.py").await;

    let text = assert_converged(&hub, session, "src/new.py", &editors).await;
    assert_eq!(text, "# cy\ndef main():  # ada\n    pass  # bob again\n");
    wait_files(&hub, session, &["src/new.py"]).await;

    // Typing goes on under the new name, from everyone.
    bob.insert_after("src/new.py", "again", "!");
    ada.insert_after("src/new.py", "# cy", "!");
    let text = assert_converged(&hub, session, "src/new.py", &editors).await;
    assert_eq!(text, "# cy!\ndef main():  # ada\n    pass  # bob again!\n");
    for editor in editors {
        assert!(
            editor.violations().is_empty(),
            "{}",
            editor.describe("src/new.py")
        );
    }
}

/// Helix (and VS Code, it seems) close the buffer under its old name and
/// open it under the new one before reporting the rename: the document
/// still moves, for the others, with what they type meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_reported_after_the_reopen_moves_the_document_too() {
    let hub = Hub::start("a_rename_reported_after_the_reopen").await;
    let session = "late-report";
    let ada = Editor::start(EditorKind::Helix, &hub, session, "ada").await;
    let bob = Editor::start(EditorKind::VsCode, &hub, session, "bob").await;
    let editors = [&ada, &bob];
    for editor in editors {
        editor.open("a.txt", "one\n");
    }
    assert_converged(&hub, session, "a.txt", &editors).await;
    bob.insert_after("a.txt", "one", " bob");
    ada.rename("a.txt", "b.txt", false);
    bob.insert_after("a.txt", "bob", " again");
    wait_open(&bob, "b.txt", "a.txt").await;
    assert_converged(&hub, session, "b.txt", &editors).await;
    ada.insert_after("b.txt", "again", " ada");
    let text = assert_converged(&hub, session, "b.txt", &editors).await;
    assert_eq!(text, "one bob again ada\n");
    wait_files(&hub, session, &["b.txt"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_while_someone_types_stays_in_their_buffer() {
    let hub = Hub::start("a_file_deleted_while_someone_types_stays").await;
    let session = "deletes";
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    let bob = Editor::start(EditorKind::Helix, &hub, session, "bob").await;
    for editor in [&ada, &bob] {
        editor.open("notes.md", "# Notes\n");
    }
    assert_converged(&hub, session, "notes.md", &[&ada, &bob]).await;

    bob.insert_after("notes.md", "Notes", " by bob");
    ada.delete_file("notes.md");
    bob.insert_after("notes.md", "bob", ", still typing");
    bob.wait_message("window/showMessage", "ada deleted notes.md", WAIT)
        .await;
    wait_files(&hub, session, &[]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let unshared = loop {
        let state = bob.document_state("notes.md").await;
        if state.as_ref().is_ok_and(Value::is_null) || tokio::time::Instant::now() >= deadline {
            break state.is_ok_and(|state| state.is_null());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(unshared, "bob's proxy still shares notes.md");
    assert_eq!(
        bob.text("notes.md").as_deref(),
        Some("# Notes by bob, still typing\n"),
        "nothing bob typed is lost"
    );

    // Typing on is fine; saving shares the file again, as a new one.
    bob.insert_after("notes.md", "typing", ".");
    bob.save("notes.md");
    wait_files(&hub, session, &["notes.md"]).await;
    let (_, text) = hub_text(&hub.url, session, "notes.md")
        .await
        .expect("notes.md is in the session again");
    assert_eq!(text, "# Notes by bob, still typing.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_rename_and_a_delete_reach_a_joiners_disk() {
    let hub = Hub::start("a_folder_rename_and_a_delete_reach_a_joiners_disk").await;
    let session = "folders";
    let (a, b) = ("print('a')\n", "print('b')\n");
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    ada.open("pkg/a.py", a);
    ada.open("pkg/b.py", b);
    wait_files(&hub, session, &["pkg/a.py", "pkg/b.py"]).await;

    let bob_dir: PathBuf = hub.log_dir.join("bob");
    std::fs::create_dir_all(&bob_dir).expect("create bob's folder");
    let options = EditorOptions {
        workspace: Some(bob_dir.clone()),
        extra_args: vec!["--sync-files".into()],
        ..EditorOptions::new(EditorKind::VsCode, &hub, session, "bob")
    };
    let bob = Editor::start_with(options, &hub.log_dir).await;
    wait_disk(&bob_dir.join("pkg/a.py"), Some(a), &bob).await;
    wait_disk(&bob_dir.join("pkg/b.py"), Some(b), &bob).await;
    bob.open("pkg/a.py", a);
    assert_converged(&hub, session, "pkg/a.py", &[&ada, &bob]).await;

    // Ada renames the folder: bob's editor renames his buffer (and its
    // file), his proxy moves the file he does not have open.
    ada.rename("pkg", "lib", true);
    wait_open(&bob, "lib/a.py", "pkg/a.py").await;
    wait_disk(&bob_dir.join("lib/b.py"), Some(b), &bob).await;
    wait_disk(&bob_dir.join("pkg/b.py"), None, &bob).await;
    wait_disk(&bob_dir.join("lib/a.py"), Some(a), &bob).await;
    wait_files(&hub, session, &["lib/a.py", "lib/b.py"]).await;

    // Edits go on under the new paths, to bob's buffer and to his disk.
    ada.insert_after("lib/b.py", "'b'", " * 2");
    wait_disk(&bob_dir.join("lib/b.py"), Some("print('b' * 2)\n"), &bob).await;
    bob.insert_after("lib/a.py", "'a'", " * 3");
    let text = assert_converged(&hub, session, "lib/a.py", &[&ada, &bob]).await;
    assert_eq!(text, "print('a' * 3)\n");

    // Ada deletes lib/b.py: bob's copy goes to his backup folder.
    ada.delete_file("lib/b.py");
    wait_disk(&bob_dir.join("lib/b.py"), None, &bob).await;
    wait_disk(
        &bob_dir.join(".chorus/backup/lib/b.py"),
        Some("print('b' * 2)\n"),
        &bob,
    )
    .await;
    wait_files(&hub, session, &["lib/a.py"]).await;
}

/// An editor that cannot rename files for `applyEdit` keeps its buffer
/// under the old name; the proxy moves the file on disk, says so once, and
/// the buffer stays shared as the renamed document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_that_cannot_rename_gets_the_file_moved_and_a_message() {
    let hub = Hub::start("an_editor_that_cannot_rename").await;
    let session = "no-rename";
    let ada = Editor::start(EditorKind::Helix, &hub, session, "ada").await;
    let bob_dir: PathBuf = hub.log_dir.join("bob");
    std::fs::create_dir_all(&bob_dir).expect("create bob's folder");
    std::fs::write(bob_dir.join("main.py"), "x = 1\n").expect("write main.py");
    let options = EditorOptions {
        workspace: Some(bob_dir.clone()),
        resource_operations: false,
        ..EditorOptions::new(EditorKind::VsCode, &hub, session, "bob")
    };
    let bob = Editor::start_with(options, &hub.log_dir).await;
    ada.open("main.py", "x = 1\n");
    bob.open("main.py", "x = 1\n");
    assert_converged(&hub, session, "main.py", &[&ada, &bob]).await;

    ada.rename("main.py", "app.py", true);
    bob.wait_message("window/showMessage", "cannot rename open files", WAIT)
        .await;
    wait_disk(&bob_dir.join("app.py"), Some("x = 1\n"), &bob).await;
    wait_disk(&bob_dir.join("main.py"), None, &bob).await;
    assert!(bob.is_open("main.py"), "bob's buffer keeps its name");

    // His buffer is the renamed document, both ways.
    bob.insert_after("main.py", "1", " + 2");
    ada.insert_before("app.py", "x", "# ada\n");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (ada_text, bob_text) = (ada.text("app.py"), bob.text("main.py"));
        if ada_text.as_deref() == Some("# ada\nx = 1 + 2\n") && ada_text == bob_text {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ada {ada_text:?}, bob {bob_text:?}\n{}",
            bob.client().log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_files(&hub, session, &["app.py"]).await;
}
