//! Emoji (including a ZWJ family), CJK, combining marks and CRLF line
//! endings, edited from every editor kind, so positions cross every
//! encoding the proxies negotiate: a deterministic script with an exact
//! expected text after each step.
//!
//! The proxy picks utf-32 when offered and utf-16 otherwise, so no editor
//! ends up on utf-8; the fourth editor offers *only* utf-8 to check that the
//! proxy then falls back to utf-16, which LSP makes mandatory.

use crate::support::editor::{find_chars, EditorKind};
use crate::support::positions::Encoding;
use crate::support::{assert_converged, Editor, EditorOptions, Hub};

const DOC: &str = "src/unicode.rs";

const INITIAL: &str = "fn main() {\r\n    let s = \"😀 👩\u{200d}👩\u{200d}👧 中文 e\u{301}\";\r\n    // café\r\n}\r\n";

/// One scripted edit, located by text so the script stays readable.
#[derive(Clone, Copy)]
enum Step {
    InsertAfter(&'static str, &'static str),
    InsertBefore(&'static str, &'static str),
    Replace(&'static str, &'static str),
}

impl Step {
    /// `(start, end, text)` in characters of `text`.
    fn locate(self, text: &str) -> (usize, usize, &'static str) {
        let find = |needle: &str| {
            find_chars(text, needle).unwrap_or_else(|| panic!("{needle:?} not in {text:?}"))
        };
        match self {
            Step::InsertAfter(anchor, new) => {
                let at = find(anchor) + anchor.chars().count();
                (at, at, new)
            }
            Step::InsertBefore(anchor, new) => {
                let at = find(anchor);
                (at, at, new)
            }
            Step::Replace(old, new) => {
                let at = find(old);
                (at, at + old.chars().count(), new)
            }
        }
    }

    fn run(self, editor: &Editor) {
        self.run_on(editor, DOC);
    }

    fn run_on(self, editor: &Editor, doc: &str) {
        let text = editor.text(doc).expect("document is open");
        let (start, end, new) = self.locate(&text);
        editor.edit(doc, start, end, new);
    }
}

fn apply(text: &str, (start, end, new): (usize, usize, &str)) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars.splice(start..end, new.chars());
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_and_crlf_converge_exactly() {
    let hub = Hub::start("unicode_and_crlf_converge_exactly").await;
    let session = "unicode";
    let vscode = Editor::start(EditorKind::VsCode, &hub, session, "vscode").await;
    let neovim = Editor::start(EditorKind::Neovim, &hub, session, "neovim").await;
    let helix = Editor::start(EditorKind::Helix, &hub, session, "helix").await;
    let utf8_only = Editor::start_with(
        EditorOptions {
            offered_encodings: Some(vec![Encoding::Utf8]),
            ..EditorOptions::new(EditorKind::Helix, &hub, session, "utf8-only")
        },
        &hub.log_dir,
    )
    .await;
    assert_eq!(vscode.encoding, Encoding::Utf16);
    assert_eq!(neovim.encoding, Encoding::Utf32);
    assert_eq!(helix.encoding, Encoding::Utf32);
    assert_eq!(utf8_only.encoding, Encoding::Utf16);
    let editors = [&vscode, &neovim, &helix, &utf8_only];

    for editor in editors {
        editor.open(DOC, INITIAL);
    }
    let mut expected = INITIAL.to_owned();
    assert_eq!(
        assert_converged(&hub, session, DOC, &editors).await,
        expected
    );

    let script: [(&Editor, Step); 9] = [
        (&vscode, Step::InsertAfter("😀", "🎉")),
        (&neovim, Step::Replace("中文", "漢字😀")),
        (&helix, Step::Replace("e\u{301}", "e")),
        (
            &utf8_only,
            Step::InsertAfter("{", "\r\n    let t = \"👍🏽\";"),
        ),
        (&vscode, Step::InsertAfter("// ", "👩\u{200d}👩\u{200d}👧 ")),
        // Joins two lines: the replaced range spans a CRLF.
        (&neovim, Step::Replace("\";\r\n    // ", "\"; // ")),
        (&helix, Step::Replace("café", "cafe\u{301}s")),
        (&utf8_only, Step::Replace("👍🏽", "中😀\r\n")),
        (&vscode, Step::Replace("s = \"😀🎉", "s = \"🎉")),
    ];
    for (number, (editor, step)) in script.into_iter().enumerate() {
        expected = apply(&expected, step.locate(&expected));
        step.run(editor);
        let text = assert_converged(&hub, session, DOC, &editors).await;
        assert_eq!(
            text, expected,
            "after step {number} by {} ({:?})",
            editor.name, editor.kind
        );
    }

    // All four at once, at distinct places: the result does not depend on
    // the order the hub picks.
    let concurrent: [(&Editor, Step); 4] = [
        (&vscode, Step::InsertBefore("fn", "A😀")),
        (&neovim, Step::InsertAfter("main", "ñ")),
        (
            &helix,
            Step::InsertAfter("}", "\r\nΩ👩\u{200d}👩\u{200d}👧"),
        ),
        (&utf8_only, Step::InsertAfter("漢字", "e\u{301}")),
    ];
    let mut located: Vec<(usize, usize, &str)> = concurrent
        .iter()
        .map(|(_, step)| step.locate(&expected))
        .collect();
    located.sort_by_key(|&(start, _, _)| std::cmp::Reverse(start));
    for edit in located {
        expected = apply(&expected, edit);
    }
    for (editor, step) in concurrent {
        step.run(editor);
    }
    let text = assert_converged(&hub, session, DOC, &editors).await;
    assert_eq!(text, expected, "after the concurrent edits");
}

/// A lone `\r` is a line break in LSP too: edits that turn it into a CRLF,
/// type on the line after it and join the lines again must land on the
/// same characters in every editor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_carriage_returns_are_line_breaks() {
    let hub = Hub::start("lone_carriage_returns_are_line_breaks").await;
    let session = "lone-cr";
    let doc = "old-mac.txt";
    let vscode = Editor::start(EditorKind::VsCode, &hub, session, "vscode").await;
    let neovim = Editor::start(EditorKind::Neovim, &hub, session, "neovim").await;
    let helix = Editor::start(EditorKind::Helix, &hub, session, "helix").await;
    let editors = [&vscode, &neovim, &helix];
    let mut expected = "one\rtwo😀\r\nthree\rfour\n".to_owned();
    for editor in editors {
        editor.open(doc, &expected);
    }
    assert_eq!(
        assert_converged(&hub, session, doc, &editors).await,
        expected
    );

    let script: [(&Editor, Step); 5] = [
        // At the start of line 1, right after the lone CR: forms a CRLF.
        (&vscode, Step::InsertAfter("one\r", "\n")),
        (&neovim, Step::InsertBefore("two", "X")),
        // Deletes that CRLF as a whole: lines 0 and 1 join.
        (&helix, Step::Replace("\r\nX", "X")),
        (&vscode, Step::InsertAfter("three\r", "😀")),
        // Turns the last lone CR into a CRLF.
        (&neovim, Step::InsertAfter("three\r", "\n")),
    ];
    for (number, (editor, step)) in script.into_iter().enumerate() {
        expected = apply(&expected, step.locate(&expected));
        step.run_on(editor, doc);
        let text = assert_converged(&hub, session, doc, &editors).await;
        assert_eq!(text, expected, "after step {number} by {}", editor.name);
    }
    assert_eq!(expected, "oneXtwo😀\r\nthree\r\n😀four\n");
}

/// Beyond DESIGN.md's table: real VS Code keeps one end-of-line sequence
/// per document and converts every line break an edit inserts to it. A
/// remote LF edit into a CRLF document therefore comes back as a different
/// text; the proxies must settle on one text, not bounce the edit forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vscode_line_ending_normalization_settles() {
    let hub = Hub::start("vscode_line_ending_normalization_settles").await;
    let session = "eol";
    let doc = "windows.txt";
    let vscode = Editor::start_with(
        EditorOptions {
            normalize_eol: true,
            ..EditorOptions::new(EditorKind::VsCode, &hub, session, "vscode")
        },
        &hub.log_dir,
    )
    .await;
    let helix = Editor::start(EditorKind::Helix, &hub, session, "helix").await;
    let editors = [&vscode, &helix];
    for editor in editors {
        editor.open(doc, "one\r\ntwo\r\n");
    }
    assert_converged(&hub, session, doc, &editors).await;

    helix.insert_after(doc, "one", "\nuno");
    let text = assert_converged(&hub, session, doc, &editors).await;
    // VS Code's CRLF is what everyone ends up with.
    assert_eq!(text, "one\r\nuno\r\ntwo\r\n");
    let stats = vscode.stats();
    assert!(
        stats.applied + stats.rejected < 10,
        "the edit bounced between VS Code and the proxy: {stats:?}"
    );
}
