//! The shared terminal (issue 16) in the editors, through a real hub and
//! a real Docker engine: Neovim's `:ChorusTerminal` view, typed into in
//! terminal mode, and an editor without the extensions (Helix, scripted
//! here) reading the same terminal in its log and typing with
//! `chorus.input`. `terminal.rs` tests the hub's side alone.

use std::time::Duration;

use serde_json::{json, Value};

use crate::neovim::{have_neovim, wait_for, wait_joined, workspace, Nvim, Route};
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::Hub;

/// A container starting, then Python: slower than an edit.
const WAIT: Duration = Duration::from_secs(60);

const TERMINAL_TEXT: &str = "require('chorus.terminal').text()";

async fn command(editor: &Editor, command: &str, arguments: Value) -> Value {
    editor
        .client()
        .request(
            "workspace/executeCommand",
            json!({ "command": command, "arguments": arguments }),
        )
        .await
        .unwrap_or_else(|err| panic!("{}: {command}: {err}", editor.name))
}

/// Waits for a `window/logMessage` line that is exactly `line`.
async fn wait_log_line(editor: &Editor, line: &str) {
    let found = editor
        .client()
        .wait_notification("window/logMessage", WAIT, |p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.lines().any(|l| l == line))
        })
        .await;
    assert!(
        found.is_some(),
        "{}: no log line {line:?}; the terminal's: {:#?}\nproxy log:\n{}",
        editor.name,
        terminal_log(editor),
        editor.client().log_tail(30)
    );
}

/// The terminal's lines in `editor`'s log.
fn terminal_log(editor: &Editor) -> Vec<String> {
    editor
        .client()
        .notifications("window/logMessage")
        .iter()
        .filter_map(|p| p["message"].as_str())
        .flat_map(str::lines)
        .filter(|line| line.starts_with("[terminal"))
        .map(str::to_owned)
        .collect()
}

/// Waits until Neovim's terminal buffer shows `needle`; returns its text.
async fn wait_screen(nvim: &Nvim, what: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = nvim.lua(TERMINAL_TEXT).await;
        if accept(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: the terminal never showed {what}; it shows:\n{text}\n{}",
            nvim.name,
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ada opens the terminal in Neovim and starts Python in it, typing in
/// terminal mode; Cy, in an editor without the extensions, hears of it,
/// reads it in the log and types a line with `chorus.input`; both see the
/// answer, computed from what each typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neovim_and_a_helix_style_editor_share_a_python_repl_in_the_terminal() {
    if !have_neovim() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("neovim_terminal_repl").await;
    let session = "nvim-terminal";
    let ws = workspace(&hub, "print('hi')\n");
    let ada = Nvim::launch(
        &hub,
        &ws,
        session,
        "ada",
        hub.token.as_deref(),
        Route::Plugin,
    )
    .await;
    wait_joined(&ada).await;
    let cy = Editor::start(EditorKind::Helix, &hub, session, "cy").await;

    ada.command("ChorusTerminal").await;
    wait_screen(&ada, "the shell's prompt", |t| t.contains("$")).await;
    cy.wait_message(
        "window/showMessage",
        "ada opened the shared terminal: type with :lsp-workspace-command chorus.input",
        WAIT,
    )
    .await;
    // Keys typed in the terminal buffer, in terminal mode, go through its
    // on_input.
    if ada.lua("vim.api.nvim_get_mode().mode").await != "t" {
        ada.keys("i").await;
    }
    wait_for("terminal mode", &ada, "vim.api.nvim_get_mode().mode", |m| {
        m == "t"
    })
    .await;
    ada.keys("python3<CR>").await;
    wait_screen(&ada, "Python's prompt", |t| t.contains(">>> ")).await;
    ada.keys("x = 2<CR>").await;
    wait_log_line(&cy, "[terminal · ada] >>> x = 2").await;

    let answer = command(&cy, "chorus.input", json!(["print(x * 21)"])).await;
    assert_eq!(answer, json!({ "requested": "input" }));
    let screen = wait_screen(&ada, "42", |t| t.lines().any(|l| l.trim_end() == "42")).await;
    assert!(screen.contains(">>> print(x * 21)"), "{screen}");
    wait_log_line(&cy, "[terminal · ada] >>> print(x * 21)").await;
    wait_log_line(&cy, "[terminal · ada] 42").await;
    for line in terminal_log(&cy) {
        assert!(
            !line.contains('\u{1b}') && !line.contains('\r'),
            "an escape sequence reached the log: {line:?}"
        );
    }
    let status = ada.lua("require('chorus').statusline()").await;
    assert!(status.contains("terminal"), "{status}");

    // Ada ends it from Neovim: her buffer says so, Cy is told why.
    ada.keys("<C-\\><C-n>").await;
    ada.command("ChorusTerminal stop").await;
    let screen = wait_screen(&ada, "the end", |t| t.contains("[terminal ended: ")).await;
    assert!(
        screen.contains("ada"),
        "the reason names who stopped it: {screen}"
    );
    cy.wait_message("window/showMessage", "the shared terminal ended: ", WAIT)
        .await;
}

/// An editor without the extensions opens the terminal itself: the
/// replay and bash's prompt, which no line break ends, reach its log, and
/// so does what it types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helix_style_editor_opens_the_terminal_and_reads_it_in_its_log() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("helix_style_terminal").await;
    let cy = Editor::start(EditorKind::Helix, &hub, "hx-terminal", "cy").await;
    cy.client()
        .wait_notification("chorus/connection", WAIT, |p| p["state"] == "online")
        .await
        .expect("online");
    assert_eq!(
        command(&cy, "chorus.terminal", json!([])).await,
        Value::Null
    );
    cy.wait_message("window/showMessage", "cy opened the shared terminal", WAIT)
        .await;
    // bash's prompt ends in `$ ` and no line break.
    let prompt = cy
        .client()
        .wait_notification("window/logMessage", WAIT, |p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[terminal · cy] ") && m.ends_with("$ "))
        })
        .await;
    assert!(
        prompt.is_some(),
        "no prompt logged: {:#?}",
        terminal_log(&cy)
    );
    command(&cy, "chorus.input", json!(["echo $((6 * 7))"])).await;
    wait_log_line(&cy, "[terminal · cy] 42").await;
    let typed = terminal_log(&cy)
        .into_iter()
        .any(|line| line.ends_with("$ echo $((6 * 7))"));
    assert!(typed, "the typed line: {:#?}", terminal_log(&cy));
    command(&cy, "chorus.terminal.stop", json!([])).await;
    cy.wait_message("window/showMessage", "the shared terminal ended: ", WAIT)
        .await;
    for line in terminal_log(&cy) {
        assert!(
            !line.contains('\u{1b}') && !line.contains('\r') && !line.contains('\u{7}'),
            "an escape sequence reached the log: {line:?}"
        );
    }
}
