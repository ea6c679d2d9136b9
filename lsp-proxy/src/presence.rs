//! Collaborators' cursors for editors without a Chorus plugin (Helix, or any
//! plain LSP client): each cursor becomes a Hint diagnostic carrying the
//! person's name, republished when it moves and cleared when they leave.
//!
//! Editors whose plugin declares the Chorus extensions get `chorus/cursor`
//! instead and draw cursors themselves.

use std::collections::{BTreeMap, HashMap};

use chorus_protocol::text::{to_pos, Encoding};
use chorus_protocol::wire::Selection;
use ropey::Rope;
use tower_lsp_server::ls_types::{Diagnostic, DiagnosticSeverity, Position, Range};

/// Selections per collaborator, per document path.
#[derive(Default)]
pub struct CursorBoard {
    docs: HashMap<String, BTreeMap<u64, (String, Vec<Selection>)>>,
}

impl CursorBoard {
    /// Records `client_id`'s selections in `doc`, removing them from any
    /// other document. Returns the documents whose diagnostics changed.
    pub fn update(
        &mut self,
        client_id: u64,
        name: &str,
        doc: &str,
        selections: Vec<Selection>,
    ) -> Vec<String> {
        let mut changed = self.remove(client_id);
        self.docs
            .entry(doc.to_owned())
            .or_default()
            .insert(client_id, (name.to_owned(), selections));
        if !changed.iter().any(|d| d == doc) {
            changed.push(doc.to_owned());
        }
        changed
    }

    /// Forgets `client_id` everywhere; returns the documents it was in.
    pub fn remove(&mut self, client_id: u64) -> Vec<String> {
        let mut changed = Vec::new();
        for (doc, cursors) in &mut self.docs {
            if cursors.remove(&client_id).is_some() {
                changed.push(doc.clone());
            }
        }
        changed
    }

    /// The diagnostics to publish for `doc`, positioned on `text`.
    pub fn diagnostics(&self, doc: &str, text: &Rope, encoding: Encoding) -> Vec<Diagnostic> {
        let Some(cursors) = self.docs.get(doc) else {
            return Vec::new();
        };
        let len = text.len_chars();
        let position = |offset: usize| {
            let p = to_pos(text, offset.min(len), encoding);
            Position {
                line: p.line,
                character: p.column,
            }
        };
        let mut diagnostics = Vec::new();
        for (name, selections) in cursors.values() {
            for selection in selections {
                let (a, b) = (selection.anchor as usize, selection.head as usize);
                let (start, end, message) = if a == b {
                    // A zero-width range is easy to miss: mark the character
                    // under the cursor (or before it at the end of the text).
                    let head = a.min(len);
                    let (s, e) = if head < len {
                        (head, head + 1)
                    } else {
                        (head.saturating_sub(1), head)
                    };
                    (s, e, format!("{name} is here"))
                } else {
                    (a.min(b), a.max(b), format!("{name}'s selection"))
                };
                diagnostics.push(Diagnostic {
                    range: Range {
                        start: position(start),
                        end: position(end),
                    },
                    severity: Some(DiagnosticSeverity::HINT),
                    source: Some("chorus".into()),
                    message,
                    ..Diagnostic::default()
                });
            }
        }
        diagnostics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(at: u64) -> Vec<Selection> {
        vec![Selection {
            anchor: at,
            head: at,
        }]
    }

    #[test]
    fn cursors_move_between_documents_and_clear() {
        let mut board = CursorBoard::default();
        let text = Rope::from_str("ab\ncd");
        assert_eq!(board.update(7, "Ada", "a.rs", cursor(3)), vec!["a.rs"]);
        let diags = board.diagnostics("a.rs", &text, Encoding::Utf16);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].message, "Ada is here");
        assert_eq!(diags[0].severity, Some(DiagnosticSeverity::HINT));
        assert_eq!(
            diags[0].range.start,
            Position {
                line: 1,
                character: 0
            }
        );
        assert_eq!(
            diags[0].range.end,
            Position {
                line: 1,
                character: 1
            }
        );

        let mut changed = board.update(7, "Ada", "b.rs", cursor(0));
        changed.sort();
        assert_eq!(changed, vec!["a.rs", "b.rs"]);
        assert!(board.diagnostics("a.rs", &text, Encoding::Utf16).is_empty());

        assert_eq!(board.remove(7), vec!["b.rs"]);
        assert!(board.diagnostics("b.rs", &text, Encoding::Utf16).is_empty());
    }

    #[test]
    fn at_the_end_marks_the_last_character() {
        let mut board = CursorBoard::default();
        let text = Rope::from_str("xy");
        board.update(1, "Bo", "a", cursor(2));
        let diags = board.diagnostics("a", &text, Encoding::Utf32);
        assert_eq!(
            diags[0].range.start,
            Position {
                line: 0,
                character: 1
            }
        );
    }
}
