//! A session's workspace end to end: `chorus share` publishes a Python
//! project (what `.gitignore` leaves out stays out, a binary file is only
//! listed); a participant joining with a partial folder and `syncFiles`
//! gets the session's files written, a differing local file backed up
//! first, and keeps getting others' edits to files nobody opened there;
//! a file the editor opens is the editor's. Runs execute the whole tree.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::hub::{chorus_bin, Hub};
use crate::support::hub_client::HubClient;
use crate::support::{eventually, wait_converged};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) const MAIN: &str = "import helper\n\nhelper.greet()\n";
pub(crate) const HELPER: &str = "def greet():\n    print('hello from helper')\n";

/// A two-file Python project, with a file `.gitignore` leaves out and a
/// binary one.
pub(crate) fn project(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the project");
    std::fs::write(dir.join("main.py"), MAIN).expect("write main.py");
    std::fs::write(dir.join("helper.py"), HELPER).expect("write helper.py");
    std::fs::write(dir.join(".gitignore"), "secret.txt\n").expect("write .gitignore");
    std::fs::write(dir.join("secret.txt"), "not for sharing\n").expect("write secret.txt");
    std::fs::write(dir.join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").expect("write logo.png");
}

/// Runs `chorus share DIR` against `hub`; its exit status and stderr.
pub(crate) async fn chorus_share(hub: &Hub, dir: &Path, session: &str) -> (bool, String) {
    let output = Command::new(chorus_bin())
        .arg("share")
        .arg(dir)
        .args(["--hub", &hub.url, "--session", session, "--name", "ada"])
        .env("CHORUS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("chorus share finished in time")
        .expect("run chorus share");
    assert!(
        output.stdout.is_empty(),
        "chorus share keeps stdout for scripts"
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Shares the project from `dir_of(hub, "ada")` and checks what it said.
pub(crate) async fn share_project(hub: &Hub, session: &str) {
    let dir = hub.log_dir.join("ada");
    project(&dir);
    let (ok, stderr) = chorus_share(hub, &dir, session).await;
    assert!(ok, "chorus share failed:\n{stderr}");
    assert!(
        stderr.contains("shared 3 files with session"),
        "main.py, helper.py and .gitignore: {stderr}"
    );
    assert!(
        stderr.contains("listed, not synced: binary (1):\n    logo.png"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret.txt"), "{stderr}");
}

/// A participant whose proxy keeps the session's files in `dir`.
async fn syncing_editor(hub: &Hub, session: &str, name: &str, dir: &Path) -> Editor {
    std::fs::create_dir_all(dir).expect("create the workspace");
    let options = EditorOptions {
        workspace: Some(dir.to_owned()),
        extra_args: vec!["--sync-files".into()],
        ..EditorOptions::new(EditorKind::VsCode, hub, session, name)
    };
    Editor::start_with(options, &hub.log_dir).await
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

async fn wait_file(path: &Path, what: &str, accept: impl Fn(&str) -> bool, editor: &Editor) {
    let held = eventually(WAIT, || read(path).is_some_and(|text| accept(&text))).await;
    assert!(
        held,
        "{}: {what}; it holds {:?}\nproxy log:\n{}",
        path.display(),
        read(path),
        editor.client().log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_project_reaches_a_joiners_disk_and_stays_in_step() {
    let hub = Hub::start("a_shared_project_reaches_a_joiners_disk").await;
    let session = "tree";
    share_project(&hub, session).await;

    // The session's tree, as the hub has it.
    let (mut raw, _) = HubClient::join(&hub.url, session, "observer").await;
    raw.send_json(&json!({ "type": "files" })).await;
    let files = raw.expect_type("files").await;
    let entries: Vec<(String, Value)> = files["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or("").to_owned(),
                e["notSynced"].clone(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (".gitignore".to_owned(), Value::Null),
            ("helper.py".to_owned(), Value::Null),
            ("logo.png".to_owned(), json!("binary")),
            ("main.py".to_owned(), Value::Null),
        ]
    );

    // Bob joins with a partial folder: an older helper.py of his own.
    let bob_dir: PathBuf = hub.log_dir.join("bob");
    std::fs::create_dir_all(&bob_dir).expect("create bob's folder");
    std::fs::write(bob_dir.join("helper.py"), "# bob's old copy\n").expect("write");
    let bob = syncing_editor(&hub, session, "bob", &bob_dir).await;
    wait_file(
        &bob_dir.join("main.py"),
        "main.py written",
        |t| t == MAIN,
        &bob,
    )
    .await;
    wait_file(
        &bob_dir.join("helper.py"),
        "helper.py replaced",
        |t| t == HELPER,
        &bob,
    )
    .await;
    assert_eq!(
        read(&bob_dir.join(".chorus/backup/helper.py")).as_deref(),
        Some("# bob's old copy\n"),
        "the local copy is backed up before it is replaced"
    );
    bob.wait_message(
        "window/showMessage",
        "replaced 1 local file that differed: helper.py",
        WAIT,
    )
    .await;
    bob.wait_message("window/logMessage", "logo.png", WAIT)
        .await;
    assert!(
        !bob_dir.join("logo.png").exists(),
        "a listed file has no content to write"
    );
    assert!(!bob_dir.join("secret.txt").exists());

    // Cy edits helper.py, which bob never opened: it lands on bob's disk.
    let cy = Editor::start(EditorKind::Helix, &hub, session, "cy").await;
    cy.open("helper.py", HELPER);
    cy.insert_after("helper.py", "helper')\n", "    print('edited by cy')\n");
    wait_file(
        &bob_dir.join("helper.py"),
        "cy's edit on disk",
        |t| t.contains("edited by cy"),
        &bob,
    )
    .await;

    // Bob opens main.py: now his editor's. Cy's edit reaches his buffer,
    // not his disk (his buffer is unsaved, as far as Chorus knows).
    let on_disk = read(&bob_dir.join("main.py")).expect("main.py");
    bob.open("main.py", &on_disk);
    cy.open("main.py", MAIN);
    cy.insert_before("main.py", "helper.greet()", "print('first')\n");
    let text = wait_converged(&hub, session, "main.py", &[&bob, &cy])
        .await
        .expect("bob and cy agree on main.py");
    assert!(text.contains("print('first')"), "{text:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read(&bob_dir.join("main.py")).as_deref(),
        Some(MAIN),
        "a file open in the editor is never written over"
    );
    // Closed again, it is the disk's: the session's text is written.
    bob.close("main.py");
    wait_file(
        &bob_dir.join("main.py"),
        "main.py back in step once closed",
        |t| t.contains("print('first')"),
        &bob,
    )
    .await;
    // What was on disk is what Chorus wrote: nothing to back up.
    assert!(!bob_dir.join(".chorus/backup/main.py").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sync_files_a_joiner_is_told_once_what_is_missing() {
    let hub = Hub::start("without_sync_files_a_joiner_is_told").await;
    let session = "told";
    share_project(&hub, session).await;
    let dir = hub.log_dir.join("dan");
    std::fs::create_dir_all(&dir).expect("create");
    std::fs::write(dir.join("main.py"), MAIN).expect("write");
    let options = EditorOptions {
        workspace: Some(dir.clone()),
        ..EditorOptions::new(EditorKind::Neovim, &hub, session, "dan")
    };
    let dan = Editor::start_with(options, &hub.log_dir).await;
    let told = dan
        .wait_message(
            "window/showMessage",
            "missing or different in your folder",
            WAIT,
        )
        .await;
    let message = told["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Chorus: 2 of the session's files"),
        "{message}"
    );
    assert!(
        message.contains(".gitignore, helper.py") && message.contains("--sync-files"),
        "{message}"
    );
    // Nothing is written without syncFiles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!dir.join("helper.py").exists());
    let shown = dan.client().notifications("window/showMessage");
    let about_files = shown
        .iter()
        .filter(|m| {
            m["message"]
                .as_str()
                .is_some_and(|t| t.contains("missing or different"))
        })
        .count();
    assert_eq!(about_files, 1, "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_from_the_editor_reports_progress_and_the_summary() {
    let hub = Hub::start("sharing_from_the_editor").await;
    let session = "from-editor";
    let dir = hub.log_dir.join("ada");
    project(&dir);
    let options = EditorOptions {
        workspace: Some(dir.clone()),
        ..EditorOptions::new(EditorKind::VsCode, &hub, session, "ada")
    };
    let ada = Editor::start_with(options, &hub.log_dir).await;
    let answer = loop {
        let answer = ada
            .client()
            .request(
                "workspace/executeCommand",
                json!({ "command": "chorus.share", "arguments": [] }),
            )
            .await;
        // Until the hub welcomed the proxy, commands say it is not connected.
        match answer {
            Err(err) if err.contains("not connected") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    assert_eq!(answer, Ok(json!({ "requested": "share" })));
    let done = ada
        .wait_message("window/showMessage", "shared 3 files with session", WAIT)
        .await;
    assert_eq!(done["type"], 3, "{done}");
    let progress = ada.client().notifications("$/progress");
    let kinds: Vec<&str> = progress
        .iter()
        .filter_map(|p| p["value"]["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"begin"), "{progress:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{progress:?}");
    assert!(kinds.contains(&"report"), "{progress:?}");
    let text = crate::support::hub_client::hub_text(&hub.url, session, "helper.py")
        .await
        .expect("helper.py is in the session");
    assert_eq!(text.1, HELPER);
}

/// `chorus.run` on main.py, from a participant who only has what the
/// session wrote to disk: helper.py, which nobody opened, is imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_executes_the_whole_tree_including_files_nobody_opened() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("a_run_executes_the_whole_tree").await;
    let session = "tree-run";
    share_project(&hub, session).await;
    let dir = hub.log_dir.join("bob");
    let bob = syncing_editor(&hub, session, "bob", &dir).await;
    wait_file(&dir.join("main.py"), "main.py written", |t| t == MAIN, &bob).await;
    bob.open("main.py", MAIN);
    let answer = loop {
        let answer = bob
            .client()
            .request(
                "workspace/executeCommand",
                json!({ "command": "chorus.run", "arguments": [bob.uri("main.py")] }),
            )
            .await;
        match answer {
            Err(err) if err.contains("not shared") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    assert_eq!(answer, Ok(json!({ "requested": "main.py" })));
    bob.wait_message(
        "window/logMessage",
        "hello from helper",
        Duration::from_secs(60),
    )
    .await;
    bob.wait_message(
        "window/showMessage",
        "exited with code 0",
        Duration::from_secs(60),
    )
    .await;
}

/// More files than either side keeps in flight (puts, opens): all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_many_files_arrives_whole() {
    let hub = Hub::start("a_tree_of_many_files_arrives_whole").await;
    let session = "many";
    let dir = hub.log_dir.join("ada");
    for i in 0..150 {
        let file = dir.join(format!("pkg{}/mod{i}.py", i % 7));
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("create");
        std::fs::write(file, format!("N = {i}\n")).expect("write");
    }
    let (ok, stderr) = chorus_share(&hub, &dir, session).await;
    assert!(ok && stderr.contains("shared 150 files"), "{stderr}");
    let bob_dir = hub.log_dir.join("bob");
    let bob = syncing_editor(&hub, session, "bob", &bob_dir).await;
    let all_there = || {
        (0..150).all(|i| {
            read(&bob_dir.join(format!("pkg{}/mod{i}.py", i % 7))).as_deref()
                == Some(format!("N = {i}\n").as_str())
        })
    };
    assert!(
        eventually(WAIT, all_there).await,
        "not every file arrived\n{}",
        bob.client().log_tail(40)
    );
}
