//! The proxy's side of a run's diagnostics, against a hub that reports
//! them: a fake one here, since the real hub's come from the sandbox's
//! output parser (issue 15; `runs.rs` and `neovim_runs.rs` test the whole
//! path with it). Two scripted editors: whoever starts a run, both see its
//! errors on the right lines, counted in their own position encodings,
//! also on a file neither has open; the next run clears them everywhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_protocol::wire::{
    ClientMsg, RunDiagnostic, RunDiagnosticSeverity, RunResult, ServerMsg,
};
use serde_json::{json, Value};

use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::fake_hub::FakeHub;
use crate::support::hub::log_dir;

const WAIT: Duration = Duration::from_secs(20);

/// A hub for runs: it answers each `run` by telling everyone it started
/// and how it ended, the n-th with the n-th of `results`.
async fn fake_hub(results: Vec<RunResult>) -> FakeHub {
    let results = Mutex::new(results.into_iter());
    FakeHub::start(Arc::new(move |room, client_id, msg| {
        let ClientMsg::Run { doc, .. } = msg else {
            return;
        };
        let result = results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next()
            .expect("a result for every run");
        let run_id = result.duration_ms;
        room.broadcast(&ServerMsg::RunStarted {
            run_id,
            client_id,
            name: format!("client {client_id}"),
            doc: doc.clone(),
            plan: "python3 main.py (main.py)".into(),
        });
        room.broadcast(&ServerMsg::RunFinished { run_id, result });
    }))
    .await
}

fn error_at(path: &str, line: u32, column: u32) -> RunDiagnostic {
    RunDiagnostic {
        path: path.into(),
        line,
        column,
        severity: RunDiagnosticSeverity::Error,
        message: format!("boom at {line}:{column}"),
    }
}

/// The last `publishDiagnostics` `editor` got for `path`, once it
/// satisfies `accept`.
async fn diagnostics_of(editor: &Editor, path: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let uri = editor.uri(path);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = editor
            .client()
            .notifications("textDocument/publishDiagnostics")
            .into_iter()
            .rfind(|p| p["uri"] == uri.as_str());
        if let Some(last) = last.filter(|l| accept(&l["diagnostics"])) {
            return last["diagnostics"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: diagnostics of {path} never as expected; all: {:?}",
            editor.name,
            editor
                .client()
                .notifications("textDocument/publishDiagnostics")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(line, character)` of each run diagnostic's start.
fn starts(diagnostics: &Value) -> Vec<(u64, u64)> {
    diagnostics
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["source"] == "chorus run")
        .map(|d| {
            let start = &d["range"]["start"];
            (
                start["line"].as_u64().unwrap_or(u64::MAX),
                start["character"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_diagnostics_reach_every_editor_in_its_encoding_and_the_next_run_clears_them() {
    let failed = RunResult {
        exit_code: Some(1),
        duration_ms: 1,
        diagnostics: vec![
            // Column 3 of line 2 is after "😀x": two UTF-16 units for the
            // emoji, so character 3 in VS Code, 2 in UTF-32.
            error_at("main.py", 2, 3),
            error_at("helper.py", 3, 5),
        ],
        ..RunResult::default()
    };
    let clean = RunResult {
        exit_code: Some(0),
        duration_ms: 2,
        ..RunResult::default()
    };
    let hub = fake_hub(vec![failed, clean]).await;
    let logs = log_dir("run_diagnostics_reach_every_editor");
    let text = "import helper\n😀x = helper.greet()\n";
    let start =
        |kind, name| Editor::start_with(EditorOptions::at(kind, &hub.url, "fake", name), &logs);
    let vscode = start(EditorKind::VsCode, "ada").await;
    let helix = start(EditorKind::Helix, "cy").await;
    for editor in [&vscode, &helix] {
        editor.open("main.py", text);
    }
    for editor in [&vscode, &helix] {
        editor
            .client()
            .wait_notification("chorus/connection", WAIT, |p| p["state"] == "online")
            .await;
    }
    // Let both joins be answered before the run.
    tokio::time::sleep(Duration::from_millis(300)).await;

    helix
        .client()
        .request(
            "workspace/executeCommand",
            json!({ "command": "chorus.run", "arguments": [helix.uri("main.py")] }),
        )
        .await
        .expect("chorus.run accepted");
    // VS Code counts UTF-16, Helix's proxy picked UTF-32.
    let vscode_main = diagnostics_of(&vscode, "main.py", |d| !starts(d).is_empty()).await;
    assert_eq!(starts(&vscode_main), [(1, 3)], "{vscode_main}");
    let helix_main = diagnostics_of(&helix, "main.py", |d| !starts(d).is_empty()).await;
    assert_eq!(starts(&helix_main), [(1, 2)], "{helix_main}");
    for editor in [&vscode, &helix] {
        // Nobody opened helper.py: the diagnostic goes to its URI all the same.
        let helper = diagnostics_of(editor, "helper.py", |d| !starts(d).is_empty()).await;
        assert_eq!(starts(&helper), [(2, 4)], "{}: {helper}", editor.name);
        assert_eq!(helper[0]["severity"], 1, "{helper}");
        assert_eq!(helper[0]["message"], "boom at 3:5", "{helper}");
        editor
            .wait_message(
                "window/showMessage",
                "error at main.py:2:3 and 1 more",
                WAIT,
            )
            .await;
    }

    vscode
        .client()
        .request(
            "workspace/executeCommand",
            json!({ "command": "chorus.run", "arguments": [vscode.uri("main.py"), { "mode": "test" }] }),
        )
        .await
        .expect("chorus.run accepted");
    for editor in [&vscode, &helix] {
        editor
            .wait_message("window/showMessage", "exited with code 0", WAIT)
            .await;
        for path in ["main.py", "helper.py"] {
            diagnostics_of(editor, path, |d| starts(d).is_empty()).await;
        }
    }
}
