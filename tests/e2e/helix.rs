//! Plugin-less editors (Helix): everything through standard LSP alone.
//! Collaborators' cursors arrive as Hint diagnostics that move and clear;
//! the Helix user's own cursor is inferred from their edits; follow mode
//! uses `window/showDocument`; runs are offered as a code action.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::Hub;

const WAIT: Duration = Duration::from_secs(20);

/// The latest diagnostics published for `uri`.
fn latest_diagnostics(editor: &Editor, uri: &str) -> Option<Vec<Value>> {
    editor
        .client()
        .notifications("textDocument/publishDiagnostics")
        .into_iter()
        .rev()
        .find(|p| p["uri"] == uri)
        .map(|p| p["diagnostics"].as_array().cloned().unwrap_or_default())
}

/// Waits until the latest diagnostics for `uri` satisfy `accept`.
async fn wait_diagnostics(
    editor: &Editor,
    uri: &str,
    what: &str,
    accept: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(diags) = latest_diagnostics(editor, uri) {
            if accept(&diags) {
                return diags;
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{}: diagnostics never showed {what}; latest: {:?}",
                editor.name,
                latest_diagnostics(editor, uri)
            );
        }
        // Whatever arrives next is checked on the next pass.
        let _ = editor
            .client()
            .wait_notification(
                "textDocument/publishDiagnostics",
                Duration::from_millis(200),
                |_| false,
            )
            .await;
    }
}

pub(crate) fn cursor_at(editor: &Editor, doc: &str, line: u32, character: u32) {
    let at = json!({ "line": line, "character": character });
    editor.client().notify(
        "chorus/cursor",
        json!({ "uri": editor.uri(doc), "selections": [{ "anchor": at, "head": at }] }),
    );
}

fn hint_named<'a>(diags: &'a [Value], name: &str) -> Option<&'a Value> {
    diags
        .iter()
        .find(|d| d["message"].as_str().is_some_and(|m| m.starts_with(name)) && d["severity"] == 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collaborators_appear_as_hint_diagnostics_that_move_and_clear() {
    let hub = Hub::start("collaborators_appear_as_hint_diagnostics").await;
    let session = "helix";
    let doc = "main.rs";
    let text = "fn main() {\n    println!(\"hi\");\n}\n";
    let helix = Editor::start(EditorKind::Helix, &hub, session, "hx").await;
    let vscode = Editor::start(EditorKind::VsCode, &hub, session, "code").await;
    helix.open(doc, text);
    vscode.open(doc, text);
    assert_converged(&hub, session, doc, &[&helix, &vscode]).await;
    let uri = helix.uri(doc);

    // The VS Code side reports its cursor (as its plugin does).
    cursor_at(&vscode, doc, 1, 4);
    let diags = wait_diagnostics(&helix, &uri, "code's cursor on line 1", |d| {
        hint_named(d, "code").is_some_and(|h| h["range"]["start"]["line"] == 1)
    })
    .await;
    let hint = hint_named(&diags, "code").expect("a hint");
    assert_eq!(hint["range"]["start"]["character"], 4, "{hint}");
    assert_eq!(hint["source"], "chorus");

    // It moves.
    cursor_at(&vscode, doc, 2, 0);
    wait_diagnostics(&helix, &uri, "code's cursor moved to line 2", |d| {
        d.len() == 1 && hint_named(d, "code").is_some_and(|h| h["range"]["start"]["line"] == 2)
    })
    .await;

    // Helix has no way to send its cursor: its edits stand in for it.
    helix.insert_after(doc, "println!(", "\"x\", ");
    assert_converged(&hub, session, doc, &[&helix, &vscode]).await;
    let vscode_uri = vscode.uri(doc);
    let diags = wait_diagnostics(&vscode, &vscode_uri, "hx's inferred cursor", |d| {
        hint_named(d, "hx").is_some()
    })
    .await;
    let hint = hint_named(&diags, "hx").expect("a hint");
    assert_eq!(hint["range"]["start"]["line"], 1, "{hint}");
    assert_eq!(
        hint["range"]["start"]["character"], 18,
        "right after the inserted text: {hint}"
    );

    // Running is offered as a code action Helix lists under `space a`.
    let actions = helix
        .client()
        .request(
            "textDocument/codeAction",
            json!({
                "textDocument": { "uri": uri },
                "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 0, "character": 0 } },
                "context": { "diagnostics": [] },
            }),
        )
        .await
        .expect("codeAction answers");
    assert_eq!(actions[0]["title"], "Run with Chorus", "{actions}");
    assert_eq!(actions[0]["command"]["arguments"][0], uri);

    // They leave: the hint goes.
    vscode.kill_proxy().await;
    wait_diagnostics(&helix, &uri, "no more cursors", |d| d.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_mode_shows_the_followed_cursor() {
    let hub = Hub::start("follow_mode_shows_the_followed_cursor").await;
    let session = "follow";
    let doc = "notes.md";
    let text = "one\ntwo\nthree\n";
    let helix = Editor::start(EditorKind::Helix, &hub, session, "hx").await;
    let guide = Editor::start(EditorKind::Neovim, &hub, session, "guide").await;
    helix.open(doc, text);
    guide.open(doc, text);
    assert_converged(&hub, session, doc, &[&helix, &guide]).await;

    let answer = helix
        .client()
        .request(
            "workspace/executeCommand",
            json!({ "command": "chorus.follow", "arguments": ["guide"] }),
        )
        .await
        .expect("chorus.follow accepted");
    assert_eq!(answer["following"], "guide");

    cursor_at(&guide, doc, 2, 3);
    let shown = helix
        .client()
        .wait_notification("window/showDocument", WAIT, |p| {
            p["selection"]["start"]["line"] == 2
        })
        .await
        .expect("window/showDocument for the followed cursor");
    assert_eq!(shown["uri"], helix.uri(doc));
    assert_eq!(shown["selection"]["start"]["character"], 3);
    assert_eq!(shown["takeFocus"], false);
}
