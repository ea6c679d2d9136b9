//! Shared code execution end to end: `chorus.run` from one scripted editor
//! runs the hub's text in a real Docker container, and every editor sees the
//! output (`window/logMessage`, `chorus/runOutput`, `$/progress`) and the
//! result (`window/showMessage`), while editing goes on.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::{chorus_bin, Hub};
use crate::support::hub_client::HubClient;

const WAIT: Duration = Duration::from_secs(60);

async fn run_command(editor: &Editor, command: &str, arguments: Value) -> Result<Value, String> {
    editor
        .client()
        .request(
            "workspace/executeCommand",
            json!({ "command": command, "arguments": arguments }),
        )
        .await
}

async fn wait_log(editor: &Editor, needle: &str) -> Value {
    editor.wait_message("window/logMessage", needle, WAIT).await
}

async fn wait_show(editor: &Editor, needle: &str) -> Value {
    editor
        .wait_message("window/showMessage", needle, WAIT)
        .await
}

const PROGRAM: &str = "import sys\nprint('hello from chorus')\nprint('oops', file=sys.stderr)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reaches_every_editor() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("a_run_reaches_every_editor").await;
    let session = "runs";
    let doc = "hello.py";
    let starter = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    let others = [
        Editor::start(EditorKind::Neovim, &hub, session, "bob").await,
        Editor::start(EditorKind::Helix, &hub, session, "cy").await,
    ];
    starter.open(doc, PROGRAM);
    for editor in &others {
        editor.open(doc, PROGRAM);
    }
    // Bob adds a line: the run must use the session's text, which has it.
    others[0].insert_after(doc, "stderr)\n", "print('typed by bob')\n");
    let all: Vec<&Editor> = std::iter::once(&starter).chain(&others).collect();
    assert_converged(&hub, session, doc, &all).await;

    let code_actions = starter
        .client()
        .request(
            "textDocument/codeAction",
            json!({
                "textDocument": { "uri": starter.uri(doc) },
                "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 0, "character": 0 } },
                "context": { "diagnostics": [] },
            }),
        )
        .await
        .expect("codeAction answers");
    let action = &code_actions[0];
    assert_eq!(action["title"], "Run with Chorus", "{code_actions}");
    assert_eq!(action["command"]["command"], "chorus.run");

    let answer = run_command(&starter, "chorus.run", json!([starter.uri(doc)]))
        .await
        .expect("chorus.run is accepted");
    assert_eq!(answer["requested"], doc);

    for editor in &all {
        let line = wait_log(editor, "hello from chorus").await;
        let message = line["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("[run ") && message.contains("· ada] hello from chorus"),
            "{}: output line should name the run and who started it: {message:?}",
            editor.name
        );
        wait_log(editor, "typed by bob").await;
        wait_log(editor, "stderr: oops").await;
        let done = wait_show(editor, "exited with code 0").await;
        assert_eq!(done["type"], 3, "a successful run is reported as info");
        let chunks = editor.client().notifications("chorus/runOutput");
        let stdout: String = chunks
            .iter()
            .filter(|c| c["stream"] == "stdout")
            .map(|c| c["data"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            stdout, "hello from chorus\ntyped by bob\n",
            "{}: stdout in order",
            editor.name
        );
        let seqs: Vec<u64> = chunks.iter().filter_map(|c| c["seq"].as_u64()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seq in order: {seqs:?}"
        );
        let progress = editor.client().notifications("$/progress");
        let kinds: Vec<&str> = progress
            .iter()
            .filter_map(|p| p["value"]["kind"].as_str())
            .collect();
        assert_eq!(
            kinds.first(),
            Some(&"begin"),
            "{}: {progress:?}",
            editor.name
        );
        assert_eq!(kinds.last(), Some(&"end"), "{}: {progress:?}", editor.name);
    }
}

/// A run that never ends does not hold up editing; a second run is refused
/// while it goes; `chorus.stop` ends it for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_goes_on_during_a_hostile_run_until_it_is_stopped() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("editing_goes_on_during_a_hostile_run").await;
    let session = "loop";
    let doc = "spin.py";
    let text = "while True:\n    pass\n";
    let a = Editor::start(EditorKind::Helix, &hub, session, "a").await;
    let b = Editor::start(EditorKind::Neovim, &hub, session, "b").await;
    a.open(doc, text);
    b.open(doc, text);
    assert_converged(&hub, session, doc, &[&a, &b]).await;

    run_command(&a, "chorus.run", json!([a.uri(doc)]))
        .await
        .expect("first run accepted");
    a.client()
        .wait_notification("chorus/runStarted", WAIT, |_| true)
        .await
        .expect("run started");

    for i in 0..20 {
        a.insert_after(doc, "pass", &format!(" #a{i}"));
        b.insert_before(doc, "while", &format!("#b{i}\n"));
    }
    let text = assert_converged(&hub, session, doc, &[&a, &b]).await;
    assert!(text.contains("#a19") && text.contains("#b19"), "{text:?}");

    run_command(&b, "chorus.run", json!([b.uri(doc)]))
        .await
        .expect("the request itself is accepted");
    wait_show(&b, "still going").await;

    run_command(&b, "chorus.stop", json!([]))
        .await
        .expect("stop accepted");
    for editor in [&a, &b] {
        wait_show(editor, "stopped after").await;
    }
}

/// `chorus.run URI {stdin, args}` hands both to the program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_and_arguments_reach_the_program() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("stdin_and_arguments_reach_the_program").await;
    let doc = "echo.py";
    let text =
        "import sys\nprint('args', sys.argv[1:])\nprint('stdin', sys.stdin.read().strip())\n";
    let editor = Editor::start(EditorKind::Helix, &hub, "io", "io").await;
    editor.open(doc, text);
    assert_converged(&hub, "io", doc, &[&editor]).await;
    run_command(
        &editor,
        "chorus.run",
        json!([editor.uri(doc), { "stdin": "from stdin\n", "args": ["one", "two"] }]),
    )
    .await
    .expect("accepted");
    wait_log(&editor, "args ['one', 'two']").await;
    wait_log(&editor, "stdin from stdin").await;
    let bad = run_command(
        &editor,
        "chorus.run",
        json!([editor.uri(doc), { "args": "nope" }]),
    )
    .await;
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("list of strings")),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_runs_says_why() {
    let mut child = Command::new(chorus_bin())
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--open",
            "--no-runs",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chorus hub");
    let stdout = child.stdout.take().expect("piped");
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("a listening line");
    let url = line.trim_start_matches("listening ").trim().to_owned();
    let (mut client, _) = HubClient::join(&url, "norun", "n").await;
    client.open("x.py", "print(1)\n").await;
    client
        .send_json(&json!({ "type": "run", "doc": "x.py" }))
        .await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "runs_disabled", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--no-runs"),
        "{error}"
    );
    client.send_json(&json!({ "type": "stop" })).await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "no_run", "{error}");
}
