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

/// The terminal's lines in `editor`'s log.
fn terminal_log(editor: &Editor) -> Vec<String> {
    let mut lines = editor.log_lines();
    lines.retain(|line| line.starts_with("[terminal"));
    lines
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
    // Told once the container is up, which takes longest.
    cy.wait_message(
        "window/showMessage",
        "ada opened the shared terminal: type with :lsp-workspace-command chorus.input",
        WAIT,
    )
    .await;
    wait_for("the shell's prompt", &ada, TERMINAL_TEXT, |t| {
        t.contains("$")
    })
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
    wait_for("Python's prompt", &ada, TERMINAL_TEXT, |t| {
        t.contains(">>> ")
    })
    .await;
    ada.keys("x = 2<CR>").await;
    cy.wait_log_line("[terminal · ada] >>> x = 2", WAIT).await;

    let answer = cy
        .execute("chorus.input", json!(["print(x * 21)"]))
        .await
        .expect("cy's command");
    assert_eq!(answer, json!({ "requested": "input" }));
    let screen = wait_for("42", &ada, TERMINAL_TEXT, |t| {
        t.lines().any(|l| l.trim_end() == "42")
    })
    .await;
    assert!(screen.contains(">>> print(x * 21)"), "{screen}");
    cy.wait_log_line("[terminal · ada] >>> print(x * 21)", WAIT)
        .await;
    cy.wait_log_line("[terminal · ada] 42", WAIT).await;
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
    let screen = wait_for("the end", &ada, TERMINAL_TEXT, |t| {
        t.contains("[terminal ended: ")
    })
    .await;
    assert!(
        screen.contains("ada"),
        "the reason names who stopped it: {screen}"
    );
    cy.wait_message("window/showMessage", "the shared terminal ended: ", WAIT)
        .await;
}

/// An editor without the extensions opens the terminal itself: bash's
/// prompt, which no line break ends, reaches its log, and so does what
/// it types and what that prints.
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
        cy.execute("chorus.terminal", json!([]))
            .await
            .expect("cy's command"),
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
    cy.execute("chorus.input", json!(["echo $((6 * 7))"]))
        .await
        .expect("cy's command");
    cy.wait_log_line("[terminal · cy] 42", WAIT).await;
    let typed = terminal_log(&cy)
        .into_iter()
        .any(|line| line.ends_with("$ echo $((6 * 7))"));
    assert!(typed, "the typed line: {:#?}", terminal_log(&cy));
    cy.execute("chorus.terminal.stop", json!([]))
        .await
        .expect("cy's command");
    cy.wait_message("window/showMessage", "the shared terminal ended: ", WAIT)
        .await;
    for line in terminal_log(&cy) {
        assert!(
            !line.contains('\u{1b}') && !line.contains('\r') && !line.contains('\u{7}'),
            "an escape sequence reached the log: {line:?}"
        );
    }
}
