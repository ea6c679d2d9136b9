//! Who else is in the session and where their cursors are: the user's
//! selections relayed to the hub, collaborators' shown in the editor, and
//! follow mode (`chorus.follow NAME` keeps the editor on NAME's cursor).
//!
//! Editors whose plugin declares the Chorus extensions get `chorus/cursor`
//! and `chorus/presence` and draw cursors themselves; they also send the
//! user's selections. For any other editor (Helix, or any plain LSP
//! client) each collaborator's cursor becomes a Hint diagnostic carrying
//! the person's name ([`CursorBoard`]), republished when it moves and
//! cleared when they leave, and the user's cursor is inferred from their
//! edits.
//!
//! Cursors travel as character offsets in the proxy's mirror of the
//! editor's text. While edits are in flight those are close to, not
//! exactly, the hub's coordinates: good enough for presence, which the next
//! move corrects.

use std::collections::{BTreeMap, HashMap};

use chorus_protocol::text::{to_char, to_pos, Encoding, LinePos};
use chorus_protocol::wire::{ClientMsg, Participant, Selection};
use ropey::Rope;
use tower_lsp_server::ls_types::{
    Diagnostic, DiagnosticSeverity, MessageType, Position, Range, ShowDocumentParams, Uri,
};

use crate::documents::{lsp_pos, Documents};
use crate::hub_link::Link;
use crate::lsp_ext::{self, PresenceParams, RemoteCursorParams, SelectionParam};
use crate::notifier::{Layer, Notifier};

/// Selections relayed per message, at most.
const MAX_SELECTIONS: usize = 64;

/// The session's participants and cursors, as this editor sees them.
pub(crate) struct Presence {
    /// The session's participants by client id, as the hub told us:
    /// who renamed or deleted a file is named from it.
    participants: HashMap<u64, Participant>,
    /// Collaborators' cursors, for editors without a plugin.
    board: CursorBoard,
    /// Whose cursor this editor follows (`chorus.follow NAME`).
    follow: Option<String>,
    /// The editor's plugin handles `chorus/*` itself; from `initialize`.
    extensions: bool,
    /// Where presence, cursors and follow's `showDocument` go.
    notifier: Notifier,
}

impl Presence {
    pub(crate) fn new(notifier: Notifier) -> Self {
        Presence {
            participants: HashMap::new(),
            board: CursorBoard::default(),
            follow: None,
            extensions: false,
            notifier,
        }
    }

    pub(crate) fn set_extensions(&mut self, extensions: bool) {
        self.extensions = extensions;
    }

    /// Follows `name`'s cursor from now on, or no one's.
    pub(crate) fn follow(&mut self, name: Option<String>) {
        self.follow = name;
    }

    /// The name of participant `client_id`, if the hub told us of them.
    pub(crate) fn name_of(&self, client_id: u64) -> Option<&str> {
        self.participants
            .get(&client_id)
            .map(|participant| participant.name.as_str())
    }

    pub(crate) fn following(&self) -> Option<&str> {
        self.follow.as_deref()
    }

    /// The hub's welcome: who was here before us.
    pub(crate) fn welcome(&mut self, participants: Vec<Participant>) {
        // Plugins learn who was already here the same way as later
        // arrivals.
        for participant in &participants {
            self.notifier
                .notify::<lsp_ext::Presence>(PresenceParams::Joined {
                    participant: participant.clone(),
                });
        }
        self.participants = participants.into_iter().map(|p| (p.client_id, p)).collect();
    }

    pub(crate) fn joined(&mut self, participant: Participant, session: &str) {
        self.log(format!("Chorus: {} joined {}", participant.name, session));
        self.notifier
            .notify::<lsp_ext::Presence>(PresenceParams::Joined {
                participant: participant.clone(),
            });
        self.participants.insert(participant.client_id, participant);
    }

    pub(crate) fn left(&mut self, client_id: u64, name: String, session: &str, docs: &Documents) {
        self.log(format!("Chorus: {name} left {session}"));
        self.participants.remove(&client_id);
        let changed = self.board.remove(client_id);
        self.publish_cursors(&changed, docs);
        self.notifier
            .notify::<lsp_ext::Presence>(PresenceParams::Left { client_id, name });
    }

    /// Relays the user's selections in `uri`, from a plugin.
    pub(crate) fn send_cursor(
        &self,
        uri: &Uri,
        selections: &[(LinePos, LinePos)],
        docs: &Documents,
        link: &Link,
    ) {
        let Some((path, sync)) = docs.live_by_uri(uri) else {
            return;
        };
        let encoding = docs.encoding();
        let to_offset = |p: LinePos| to_char(sync.mirror(), p, encoding) as u64;
        let selections = selections
            .iter()
            .take(MAX_SELECTIONS)
            .map(|&(anchor, head)| Selection {
                anchor: to_offset(anchor),
                head: to_offset(head),
            })
            .collect();
        link.send(&ClientMsg::Cursor {
            doc: path,
            rev: sync.rev(),
            selections,
        });
    }

    /// For editors without a plugin, their cursor as their edits show it:
    /// called after each change the documents took.
    pub(crate) fn infer_cursor(&self, uri: &Uri, docs: &mut Documents, link: &Link) {
        if self.extensions {
            return;
        }
        let Some((path, sync)) = docs.live_by_uri_mut(uri) else {
            return;
        };
        if let Some(at) = sync.take_local_cursor() {
            let msg = ClientMsg::Cursor {
                doc: path,
                rev: sync.rev(),
                selections: vec![Selection {
                    anchor: at as u64,
                    head: at as u64,
                }],
            };
            link.send(&msg);
        }
    }

    /// A collaborator's selections in `doc`: followed, drawn by the
    /// plugin, or shown as diagnostics.
    pub(crate) fn receive_cursor(
        &mut self,
        client_id: u64,
        name: String,
        doc: &str,
        selections: Vec<Selection>,
        docs: &Documents,
    ) {
        let Some((uri, sync)) = docs.live(doc) else {
            return;
        };
        let encoding = docs.encoding();
        let position = |offset: u64| lsp_pos(to_pos(sync.mirror(), offset as usize, encoding));
        if self.follow.as_deref() == Some(name.as_str()) {
            if let Some(head) = selections.first().map(|s| position(s.head)) {
                self.notifier.show_document(ShowDocumentParams {
                    uri: uri.clone(),
                    external: Some(false),
                    take_focus: Some(false),
                    selection: Some(Range {
                        start: head,
                        end: head,
                    }),
                });
            }
        }
        if self.extensions {
            let selections = selections
                .iter()
                .map(|s| SelectionParam {
                    anchor: position(s.anchor),
                    head: position(s.head),
                })
                .collect();
            self.notifier
                .notify::<lsp_ext::RemoteCursor>(RemoteCursorParams {
                    client_id,
                    name,
                    uri: uri.clone(),
                    selections,
                });
        } else {
            let changed = self.board.update(client_id, &name, doc, selections);
            self.publish_cursors(&changed, docs);
        }
    }

    /// Republishes the cursor diagnostics of `paths`.
    fn publish_cursors(&self, paths: &[String], docs: &Documents) {
        for path in paths {
            let Some((uri, sync)) = docs.live(path) else {
                continue;
            };
            let diagnostics = self.board.diagnostics(path, sync.mirror(), docs.encoding());
            self.notifier
                .diagnostics(uri.clone(), Layer::Cursors, diagnostics);
        }
    }

    fn log(&self, message: String) {
        self.notifier.log(MessageType::INFO, message);
    }
}

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
