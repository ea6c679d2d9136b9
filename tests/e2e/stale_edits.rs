//! Typing while a remote edit is in flight: editor B holds the
//! `applyEdit` carrying A's edits, types, and only then processes it, so
//! the edit arrives stale. VS Code and Helix refuse it (`applied:false`),
//! Neovim skips it and still says `applied:true`; either way the proxy must
//! notice, rebase the edit past B's typing and deliver it again.
//!
//! The hardest variant: B's keystroke is the very text A's edit inserts, at
//! the same place, so B's buffer after typing equals what the proxy expects
//! after its edit. Every keystroke still counts: both line breaks belong in
//! the result. VS Code and Helix say so with `applied:false` on the edit;
//! Neovim (skipped, `applied:true`, same range and text) gives the proxy
//! nothing to tell its keystroke from the echo, so it is not tested there.

use std::time::Duration;

use crate::support::converge::wait_for_mirror;
use crate::support::editor::EditorKind;
use crate::support::{assert_converged, eventually, Editor, Hub};

const DOC: &str = "stale.txt";
const INITIAL: &str = "line one\nline two\nline three\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vscode_types_over_an_edit_in_flight() {
    typing_over_an_edit_in_flight(EditorKind::VsCode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neovim_types_over_an_edit_in_flight() {
    typing_over_an_edit_in_flight(EditorKind::Neovim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_types_over_an_edit_in_flight() {
    typing_over_an_edit_in_flight(EditorKind::Helix).await;
}

/// Runs the scenario twice: B's editor processing the held edit right
/// after typing (its answer and the keystrokes reach the proxy in either
/// order) and well after (the proxy has seen the keystrokes first).
async fn typing_over_an_edit_in_flight(kind: EditorKind) {
    let test = format!("{kind:?}_types_over_an_edit_in_flight").to_lowercase();
    let hub = Hub::start(&test).await;
    for (session, wait) in [("stale-at-once", false), ("stale-later", true)] {
        typing_over_an_edit_in_flight_in(&hub, session, kind, wait).await;
    }
}

async fn typing_over_an_edit_in_flight_in(hub: &Hub, session: &str, kind: EditorKind, wait: bool) {
    let other_kind = if kind == EditorKind::VsCode {
        EditorKind::Helix
    } else {
        EditorKind::VsCode
    };
    let a = Editor::start(other_kind, hub, session, "a").await;
    let b = Editor::start(kind, hub, session, "b").await;
    a.open(DOC, INITIAL);
    b.open(DOC, INITIAL);
    assert_converged(hub, session, DOC, &[&a, &b]).await;

    // B is busy: A's edit reaches it but waits.
    b.hold();
    a.insert_before(DOC, "line two", "alpha ");
    let held = eventually(Duration::from_secs(10), || b.held_count() > 0).await;
    assert!(
        held,
        "the proxy never sent A's edit to B:\n{}",
        b.describe(DOC)
    );
    // A edits again while B's proxy still waits for its first edit.
    a.replace(DOC, "three", "3");

    // B types four keystrokes at the end of its first line, unaware.
    for c in ['b', 'e', 't', 'a'] {
        let end_of_line = b.find(DOC, "\n");
        b.edit(DOC, end_of_line, end_of_line, &c.to_string());
    }
    if wait {
        wait_for_mirror(&b, DOC).await;
    }
    b.release();

    let text = assert_converged(hub, session, DOC, &[&a, &b]).await;
    assert_eq!(text, "line onebeta\nalpha line two\nline 3\n");

    // The stale path really was taken, in this editor's way.
    let stats = b.stats();
    match kind {
        EditorKind::Neovim => assert!(stats.skipped > 0, "no edit was skipped: {stats:?}"),
        _ => assert!(stats.rejected > 0, "no edit was refused: {stats:?}"),
    }

    // And the session still works both ways afterwards.
    b.insert_after(DOC, "line 3", "!");
    a.insert_before(DOC, "line one", ">");
    let text = assert_converged(hub, session, DOC, &[&a, &b]).await;
    assert_eq!(text, ">line onebeta\nalpha line two\nline 3!\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vscode_same_keystroke_as_an_edit_in_flight() {
    same_keystroke_as_an_edit_in_flight(EditorKind::VsCode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_same_keystroke_as_an_edit_in_flight() {
    same_keystroke_as_an_edit_in_flight(EditorKind::Helix).await;
}

/// A and B press Enter at the end of the same line at the same time; B's
/// editor gets A's line break only after its own.
async fn same_keystroke_as_an_edit_in_flight(kind: EditorKind) {
    let test = format!("{kind:?}_same_keystroke_as_an_edit_in_flight").to_lowercase();
    let hub = Hub::start(&test).await;
    let session = "same-keystroke";
    let a = Editor::start(EditorKind::Neovim, &hub, session, "a").await;
    let b = Editor::start(kind, &hub, session, "b").await;
    a.open(DOC, INITIAL);
    b.open(DOC, INITIAL);
    assert_converged(&hub, session, DOC, &[&a, &b]).await;

    b.hold();
    a.insert_after(DOC, "line one", "\n");
    let held = eventually(Duration::from_secs(10), || b.held_count() > 0).await;
    assert!(
        held,
        "the proxy never sent A's edit to B:\n{}",
        b.describe(DOC)
    );
    b.insert_after(DOC, "line one", "\n");
    // Like a user, B typed well before its editor got round to the edit:
    // the proxy has seen the keystroke before the edit's answer.
    wait_for_mirror(&b, DOC).await;
    b.release();

    let text = assert_converged(&hub, session, DOC, &[&a, &b]).await;
    assert_eq!(
        text,
        "line one\n\n\nline two\nline three\n",
        "two people pressed Enter; both line breaks belong in the text.\n{}\n{}",
        a.describe(DOC),
        b.describe(DOC)
    );
}
