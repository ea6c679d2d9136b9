//! The shared documents: joining each to the hub, rejoining after an
//! outage, resyncing after an error, and carrying out what their
//! [`DocSync`] asks for (ops to the hub, `workspace/applyEdit` to the
//! editor).
//!
//! Invariants:
//! * A document's identity is its protocol path (relative to the workspace
//!   root, `/`-separated); the editor's URI is a field of the document. The
//!   editor's events are found by URI only through [`Documents::doc_path`]
//!   and must match the URI the document was opened with.
//! * The hub answers each `open` with an `opened`, and follows each op it
//!   refuses with a snapshot (another `opened`). The [`DocState`] says
//!   what the next one means: the answer to a join (seeded or adopted), to
//!   a rejoin (merged), or, for a live document, a snapshot (adopted).
//! * At most one `workspace/applyEdit` per document is in flight (the
//!   [`DocSync`] sees to it); its answer comes back as [`Event::EditDone`].
//! * A renamed document is the same document (ADR 0005): it moves to its
//!   new path with its sync, so edits in flight are acknowledged under the
//!   new path (the hub redirects them). The editor may go on naming it by
//!   its old URI until it carries out the rename (a `RenameFile` we ask
//!   for, or its own); `moved` finds it by that name meanwhile, and the
//!   editor's close of the old name is not an unshare.
//! * A deleted document's buffer stays the editor's: it leaves the shared
//!   documents for `unshared`, which follows its text so that saving it
//!   shares it again (as a new file).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chorus_protocol::ot::WireOp;
use chorus_protocol::text::{Encoding, LinePos};
use chorus_protocol::wire::{ClientMsg, LoggedOp};
use ropey::Rope;
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::{
    ApplyWorkspaceEditParams, DocumentChangeOperation, DocumentChanges, MessageType, OneOf,
    OptionalVersionedTextDocumentIdentifier, Position, Range, RenameFile, ResourceOp,
    TextDocumentEdit, TextEdit, Uri, WorkspaceEdit,
};
use tower_lsp_server::Client;
use tracing::{debug, error, warn};

use crate::core::Event;
use crate::hub_link::Link;
use crate::lsp_ext::DocumentStateResult;
use crate::moves::{at_or_under, moved_path};
use crate::notifier::Notifier;
use crate::sync::{apply_changes, Audit, CaughtUp, Change, DocSync, Effect, SyncError};

/// How long the editor gets to answer an `applyEdit`.
const APPLY_EDIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each quiet document's text is compared with the hub's.
const AUDIT_EVERY: Duration = Duration::from_secs(5);

/// The hub's answer to `open`, or a snapshot it sends after an error
/// (`ServerMsg::Opened` without the path).
pub(crate) struct Opened {
    /// The hub's revision of `text`.
    pub rev: u64,
    pub text: String,
    /// The hub had no such document and took our text as its seed.
    pub created: bool,
    /// The ops since the revision we offered, if the hub still has them.
    pub history: Option<Vec<LoggedOp>>,
    /// The number of the last op the hub has from this proxy.
    pub last_seq: Option<u64>,
}

/// A document `open` sent to the hub, waiting for its answer.
struct Joining {
    /// The text sent with `open`.
    seed: String,
    /// The editor's text now: what the user typed since the seed is sent
    /// once the hub answers.
    text: Rope,
    version: i32,
    /// The document was rejoining, or the hub refused one of its ops as
    /// stale, when this join began: another answer is still due, and it
    /// is merged. So once joined the document goes on rejoining.
    rejoin_next: bool,
    /// Answers still due to `open`s sent before this join's, which are
    /// not its answer: skipped (see [`Documents::rejoin_renamed`]).
    answers_to_skip: u32,
}

impl Joining {
    /// A live document asking the hub for its text again. It keeps the
    /// text it had as its seed, so that what the user types meanwhile
    /// stays a local edit on top of it.
    fn from_live(sync: &DocSync, rejoin_next: bool) -> Joining {
        let text = sync.mirror().clone();
        Joining {
            seed: text.to_string(),
            text,
            version: sync.version(),
            rejoin_next,
            answers_to_skip: 0,
        }
    }
}

enum DocState {
    Joining(Joining),
    /// In step with the hub. An `opened` now is a snapshot after an error,
    /// or a hub that lost the document and took ours as its seed: adopted.
    Live(Box<DocSync>),
    /// Live, and offered to the hub again (after the connection came back,
    /// or a stale-revision refusal): the answer is merged with our
    /// unacknowledged edits, not adopted.
    Rejoining(Box<DocSync>),
}

impl DocState {
    fn live(&self) -> Option<&DocSync> {
        match self {
            DocState::Live(sync) | DocState::Rejoining(sync) => Some(sync),
            DocState::Joining(_) => None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut DocSync> {
        match self {
            DocState::Live(sync) | DocState::Rejoining(sync) => Some(sync),
            DocState::Joining(_) => None,
        }
    }

    /// The next answer is to be merged: a live document rejoins; one
    /// still joining rejoins once joined.
    fn owe_merge(self) -> DocState {
        match self {
            DocState::Live(mut sync) | DocState::Rejoining(mut sync) => {
                sync.await_rejoin();
                DocState::Rejoining(sync)
            }
            DocState::Joining(joining) => DocState::Joining(Joining {
                rejoin_next: true,
                ..joining
            }),
        }
    }
}

struct Document {
    /// The editor's name for it: where `applyEdit`s and diagnostics go.
    uri: Uri,
    state: DocState,
    /// The name we asked the editor to rename it to (`RenameFile`), until
    /// it reopens it under that name or answers: meanwhile its close of
    /// `uri` is part of the rename, not an unshare.
    renaming_to: Option<Uri>,
    /// Edits for the editor made while it is renaming the buffer, in order.
    /// Sent to the old name, Neovim carried one out after the rename by
    /// opening a new, empty buffer there (a file the session then had
    /// twice); sent to the new name, an editor that has not renamed yet has
    /// nothing there. They go to whichever name its answer leaves. Only
    /// while a rename we asked for is unanswered: one the editor made
    /// itself may never be followed by a reopen.
    held_for_rename: Vec<Effect>,
    asked_to_rename: bool,
}

/// Carries out `effects` of the document at `path`: ops go to the hub at
/// once, edits to the editor unless it is renaming the buffer (see
/// [`Document::held_for_rename`]).
fn carry_out(editor: &Editor, doc: &mut Document, path: &str, effects: Vec<Effect>, link: &Link) {
    if doc.renaming_to.is_none() || !doc.asked_to_rename {
        editor.run_effects(&doc.uri, path, effects, link);
        return;
    }
    let (to_hub, to_editor): (Vec<Effect>, Vec<Effect>) = effects
        .into_iter()
        .partition(|effect| matches!(effect, Effect::SendOp { .. }));
    editor.run_effects(&doc.uri, path, to_hub, link);
    doc.held_for_rename.extend(to_editor);
}

/// The editor is done renaming the buffer (`renaming_to` is cleared): what
/// waited goes out, to the name it has now. The held edits were made for
/// the buffer under its old name and version, which a reopen starts again
/// (Neovim would apply a copy of one twice): each is taken as refused, so
/// that the sync makes it afresh for the buffer as it is now.
fn release_held(editor: &Editor, doc: &mut Document, path: &str, link: &Link) {
    doc.asked_to_rename = false;
    let held = std::mem::take(&mut doc.held_for_rename);
    if held.is_empty() {
        return;
    }
    debug!(doc = %path, effects = held.len(), "sending what was held for a rename");
    let mut effects = Vec::new();
    for effect in held {
        match (effect, doc.state.live_mut()) {
            (Effect::ApplyEdit { id, .. }, Some(sync)) => {
                if let Err(err) = sync.edit_answered(Instant::now(), id, Some(false), &mut effects)
                {
                    warn!(doc = %path, cause = %err, "cannot make a held edit afresh");
                }
            }
            (Effect::ApplyEdit { .. }, None) => {}
            (other, _) => effects.push(other),
        }
    }
    editor.run_effects(&doc.uri, path, effects, link);
}

/// A buffer the editor keeps open whose file the session deleted: not
/// shared, followed so that saving it shares it again.
struct Unshared {
    text: Rope,
    version: i32,
}

/// The documents this editor shares, and what they need to do their IO.
pub(crate) struct Documents {
    /// By protocol path; see the module's invariants.
    docs: HashMap<String, Document>,
    /// The workspace root the paths are relative to; from `initialize`.
    root: Option<PathBuf>,
    /// The editor's position encoding, negotiated at `initialize`.
    encoding: Encoding,
    /// Whether the editor's `applied: true` can be believed (see
    /// [`DocSync::set_applied_is_honest`]).
    applied_is_honest: bool,
    /// This proxy's id at the hub, stable across reconnects: it picks our
    /// own ops out of the hub's history after an outage.
    instance: String,
    /// When the documents were last compared with the hub's.
    last_audit: Instant,
    /// Where the documents' `applyEdit`s go.
    editor: Editor,
    /// For what the user is told about sharing a document.
    notifier: Notifier,
    /// Editor texts replaced whole because they could not be trusted
    /// (see [`DocSync::heal`]); the user hears of the first only.
    heals: u64,
    /// Old URI → path now, for documents renamed while the editor had
    /// them open: it names them by the old URI until it carries out the
    /// rename, or for good if it cannot.
    moved: HashMap<String, String>,
    /// Buffers of deleted files, by URI; see the module's invariants.
    unshared: HashMap<String, Unshared>,
    /// The editor renames files when a `workspace/applyEdit` says so
    /// (`workspace.workspaceEdit.resourceOperations` has `rename`).
    can_rename: bool,
    /// Whether the user was told their editor cannot rename open files.
    told_cannot_rename: bool,
    /// `(old path, new path)` of the renames we asked the editor for: an
    /// editor that reports them back (`didRenameFiles`, as Helix and VS
    /// Code do for renames an `applyEdit` made) is not renaming again.
    renames_asked: Vec<(String, String)>,
}

impl Documents {
    pub(crate) fn new(
        client: Client,
        events: mpsc::UnboundedSender<Event>,
        notifier: Notifier,
    ) -> Self {
        Documents {
            docs: HashMap::new(),
            root: None,
            encoding: Encoding::Utf16,
            applied_is_honest: true,
            instance: new_instance_id(),
            last_audit: Instant::now(),
            editor: Editor { client, events },
            notifier,
            heals: 0,
            moved: HashMap::new(),
            unshared: HashMap::new(),
            can_rename: false,
            told_cannot_rename: false,
            renames_asked: Vec::new(),
        }
    }

    /// What `initialize` told us about the editor.
    pub(crate) fn configure(
        &mut self,
        root: Option<PathBuf>,
        encoding: Encoding,
        applied_is_honest: bool,
        can_rename: bool,
    ) {
        self.root = root;
        self.encoding = encoding;
        self.applied_is_honest = applied_is_honest;
        self.can_rename = can_rename;
    }

    pub(crate) fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// The document id: the path relative to the workspace root, `/`-separated.
    pub(crate) fn doc_path(&self, uri: &Uri) -> Option<String> {
        let path = uri.to_file_path()?;
        let root = self.root.as_deref()?;
        let rel = path.strip_prefix(root).ok()?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_str().map(str::to_owned))
            .collect::<Option<_>>()?;
        let joined = parts.join("/");
        chorus_protocol::wire::validate_doc_path(&joined).ok()?;
        Some(joined)
    }

    /// The URI of the protocol path `path` in this editor's workspace.
    pub(crate) fn uri_of(&self, path: &str) -> Option<Uri> {
        let mut at = self.root.clone()?;
        at.extend(path.split('/'));
        Uri::from_file_path(at)
    }

    /// The path of the shared document the editor calls `uri` (by its old
    /// name too, while a rename is on its way to the editor).
    pub(crate) fn path_of(&self, uri: &Uri) -> Option<String> {
        let direct = self.doc_path(uri);
        let moved = self.moved.get(uri.as_str()).cloned();
        direct
            .into_iter()
            .chain(moved)
            .find(|path| self.docs.get(path).is_some_and(|doc| doc.uri == *uri))
    }

    /// Whether any shared document is at `path` or under it.
    pub(crate) fn has_at_or_under(&self, path: &str) -> bool {
        self.docs.keys().any(|doc| at_or_under(doc, path))
    }

    pub(crate) fn is_shared(&self, uri: &Uri) -> bool {
        self.path_of(uri).is_some()
    }

    /// The live document at `path`, with its URI.
    pub(crate) fn live(&self, path: &str) -> Option<(&Uri, &DocSync)> {
        let doc = self.docs.get(path)?;
        Some((&doc.uri, doc.state.live()?))
    }

    /// The live document the editor calls `uri`, with its path.
    pub(crate) fn live_by_uri(&self, uri: &Uri) -> Option<(String, &DocSync)> {
        let path = self.path_of(uri)?;
        let sync = self.docs.get(&path)?.state.live()?;
        Some((path, sync))
    }

    /// Like [`Documents::live_by_uri`], to change.
    pub(crate) fn live_by_uri_mut(&mut self, uri: &Uri) -> Option<(String, &mut DocSync)> {
        let path = self.path_of(uri)?;
        let sync = self.docs.get_mut(&path)?.state.live_mut()?;
        Some((path, sync))
    }

    /// The proxy's view of a document for `chorus/documentState`.
    pub(crate) fn describe(&self, uri: &Uri) -> Option<DocumentStateResult> {
        let state = self
            .path_of(uri)
            .and_then(|path| self.docs.get(&path))
            .map(|doc| &doc.state);
        match state {
            Some(DocState::Live(sync) | DocState::Rejoining(sync)) => Some(DocumentStateResult {
                text: sync.mirror().to_string(),
                rev: sync.rev(),
                synchronized: sync.is_synchronized(),
                joined: true,
                version: sync.version(),
            }),
            Some(DocState::Joining(Joining { text, version, .. })) => Some(DocumentStateResult {
                text: text.to_string(),
                rev: 0,
                synchronized: false,
                joined: false,
                version: *version,
            }),
            None => None,
        }
    }

    /// The editor opened `uri`: share it if it is in the workspace.
    pub(crate) fn open(&mut self, uri: Uri, text: String, version: i32, link: &Link) {
        if !link.is_configured() {
            return;
        }
        self.unshared.remove(uri.as_str());
        if self.reopened(&uri, &text, version, link) {
            return;
        }
        let Some(path) = self.doc_path(&uri) else {
            debug!(uri = uri.as_str(), "outside the workspace root; not shared");
            return;
        };
        let open = ClientMsg::Open {
            doc: path.clone(),
            text: text.clone(),
            since: None,
        };
        // Before the welcome the hub's limit is not known: the open goes
        // out with `rejoin_all`, which checks it then.
        if link.is_connected() && !self.fits_a_frame(&path, &open, link) {
            return;
        }
        link.send(&open);
        let state = DocState::Joining(Joining {
            text: Rope::from_str(&text),
            seed: text,
            version,
            rejoin_next: false,
            answers_to_skip: 0,
        });
        let doc = Document {
            uri,
            state,
            renaming_to: None,
            held_for_rename: Vec::new(),
            asked_to_rename: false,
        };
        self.docs.insert(path, doc);
    }

    /// The editor opened `uri` where a renamed document now is, under the
    /// name we asked for (or that it gave it itself): the same document,
    /// renamed. Its versions start again; a text that differs from ours
    /// is the editor's change. Returns whether it was one.
    fn reopened(&mut self, uri: &Uri, text: &str, version: i32, link: &Link) -> bool {
        let Some(path) = self.doc_path(uri) else {
            return false;
        };
        let Some(doc) = self.docs.get_mut(&path) else {
            return false;
        };
        if doc.renaming_to.as_ref() != Some(uri) && doc.uri != *uri {
            return false;
        }
        debug!(doc = %path, uri = uri.as_str(), "the editor reopened a renamed document");
        doc.renaming_to = None;
        doc.uri = uri.clone();
        let mut effects = Vec::new();
        let result = match &mut doc.state {
            DocState::Joining(joining) => {
                joining.text = Rope::from_str(text);
                joining.version = version;
                Ok(())
            }
            DocState::Live(sync) | DocState::Rejoining(sync) => {
                sync.reopened(Instant::now(), version, text, &mut effects)
            }
        };
        if let Err(err) = result {
            error!(doc = %path, cause = %err, "cannot take the reopened text; resyncing");
            self.request_resync(&path, link);
            return true;
        }
        carry_out(&self.editor, doc, &path, effects, link);
        release_held(&self.editor, doc, &path, link);
        true
    }

    /// The editor closed `uri`. Returns whether a shared document was
    /// closed at the path `uri` names (so the file there is the
    /// session's), not one renamed away from it.
    pub(crate) fn close(&mut self, uri: &Uri, link: &Link) -> bool {
        self.unshared.remove(uri.as_str());
        let Some(path) = self.path_of(uri) else {
            return false;
        };
        if self
            .docs
            .get(&path)
            .is_some_and(|doc| doc.renaming_to.is_some())
        {
            // The editor carrying out a rename: it reopens the document
            // under its new name next.
            return false;
        }
        self.moved.remove(uri.as_str());
        self.docs.remove(&path);
        let here = self.doc_path(uri).as_deref() == Some(path.as_str());
        link.send(&ClientMsg::Close { doc: path });
        here
    }

    /// The editor saved `uri`: a buffer whose file was deleted from the
    /// session is shared again, as a new file.
    pub(crate) fn saved(&mut self, uri: &Uri, link: &Link) {
        let Some(unshared) = self.unshared.remove(uri.as_str()) else {
            return;
        };
        self.open(
            uri.clone(),
            unshared.text.to_string(),
            unshared.version,
            link,
        );
    }

    /// The session renamed `from` (a file, or a directory: every path
    /// under it) to `to`: the documents there move with their sync. With
    /// `by` (someone else's rename, by that name), the editor is asked to
    /// rename its buffers and the user is told who moved them; without
    /// (the editor's own rename), it already has. Returns the documents
    /// whose buffer the editor could not be asked to rename, as
    /// `(old path, new path)`: their files are for the caller to move.
    pub(crate) fn renamed(
        &mut self,
        from: &str,
        to: &str,
        by: Option<&str>,
        link: &Link,
    ) -> Vec<(String, String)> {
        let ask_editor = by.is_some();
        let mut moving: Vec<String> = self
            .docs
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        moving.sort_unstable();
        let mut not_renamed = Vec::new();
        let mut asked = Vec::new();
        for old in moving {
            let Some(new) = moved_path(&old, from, to) else {
                continue;
            };
            let Some(mut doc) = self.docs.remove(&old) else {
                continue;
            };
            let new_uri = self.uri_of(&new);
            self.moved.insert(doc.uri.as_str().to_owned(), new.clone());
            let joining = matches!(doc.state, DocState::Joining(_));
            if ask_editor {
                match new_uri {
                    Some(new_uri) if self.can_rename => {
                        if self.renames_asked.len() >= 1024 {
                            self.renames_asked.remove(0);
                        }
                        self.renames_asked.push((old.clone(), new.clone()));
                        doc.renaming_to = Some(new_uri.clone());
                        doc.asked_to_rename = true;
                        self.editor.rename_file(doc.uri.clone(), new_uri);
                        asked.push((old.clone(), new.clone()));
                    }
                    _ => not_renamed.push((old.clone(), new.clone())),
                }
            } else {
                doc.renaming_to = new_uri;
            }
            if self.docs.insert(new.clone(), doc).is_some() {
                warn!(doc = %new, "a renamed document replaced one we had at its new path");
            }
            if joining {
                // Our `open` reached the hub after the rename, so its
                // answer names the old path: ask again where it is now.
                link.send(&ClientMsg::Close { doc: old });
                self.request_resync(&new, link);
            }
        }
        if let (Some(by), false) = (by, asked.is_empty()) {
            // Without a word the user would find their buffer under
            // another name (or think the file vanished from the old one).
            let message = match asked.as_slice() {
                [(old, new)] if old == from => {
                    format!("Chorus: {by} renamed {old} to {new}; your buffer follows it.")
                }
                _ => {
                    let moves: Vec<String> = asked
                        .iter()
                        .map(|(old, new)| format!("{old} → {new}"))
                        .collect();
                    format!(
                        "Chorus: {by} renamed {from} to {to}; your buffers there follow ({}).",
                        moves.join(", ")
                    )
                }
            };
            self.notifier.tell_user(MessageType::INFO, message);
        }
        if !not_renamed.is_empty() && !self.told_cannot_rename {
            self.told_cannot_rename = true;
            let names: Vec<String> = not_renamed
                .iter()
                .map(|(old, new)| format!("{old} → {new}"))
                .collect();
            self.notifier.tell_user(
                MessageType::WARNING,
                format!(
                    "Chorus: files you have open were renamed in the session ({}), and your editor cannot rename open files for Chorus: the files were moved on disk and stay shared; reopen them under their new names. (Told once.)",
                    names.join(", ")
                ),
            );
        }
        not_renamed
    }

    /// The editor reported a rename to `to` after it had closed the file
    /// under its old name and opened it under the new one, so the open
    /// made a new file at `to`, which the caller has asked the hub to
    /// delete before it renames the old file there. The documents at `to`
    /// join the renamed file afresh: their text so far is the seed (the
    /// editor is brought to the session's if it differs, which it does
    /// only if someone typed in that moment); answers still due to the
    /// earlier `open`s are skipped.
    pub(crate) fn rejoin_renamed(&mut self, to: &str, link: &Link) {
        let paths: Vec<String> = self
            .docs
            .keys()
            .filter(|path| at_or_under(path, to))
            .cloned()
            .collect();
        for path in paths {
            let Some(doc) = self.docs.get_mut(&path) else {
                continue;
            };
            let (text, version, answers_to_skip) = match &doc.state {
                DocState::Joining(joining) => (
                    joining.text.clone(),
                    joining.version,
                    joining.answers_to_skip + 1,
                ),
                DocState::Rejoining(sync) => (sync.mirror().clone(), sync.version(), 1),
                DocState::Live(sync) => (sync.mirror().clone(), sync.version(), 0),
            };
            let seed = text.to_string();
            link.send(&ClientMsg::Open {
                doc: path.clone(),
                text: seed.clone(),
                since: None,
            });
            doc.state = DocState::Joining(Joining {
                seed,
                text,
                version,
                rejoin_next: false,
                answers_to_skip,
            });
        }
    }

    /// Whether the editor's rename of `from` to `to` is one we asked it
    /// for (reported back), once.
    pub(crate) fn is_rename_we_asked(&mut self, from: &str, to: &str) -> bool {
        let asked = self
            .renames_asked
            .iter()
            .position(|(old, new)| old == from && new == to);
        asked
            .map(|index| self.renames_asked.remove(index))
            .is_some()
    }

    /// The editor's answer to our `RenameFile` to `new_uri`.
    pub(crate) fn rename_answered(
        &mut self,
        new_uri: &Uri,
        applied: bool,
        reason: Option<String>,
        link: &Link,
    ) {
        let Some(path) = self.doc_path(new_uri) else {
            return;
        };
        let Some(doc) = self.docs.get_mut(&path) else {
            return;
        };
        if doc.renaming_to.as_ref() != Some(new_uri) {
            return;
        }
        doc.renaming_to = None;
        if applied {
            // An editor that renamed without reopening calls it so now.
            doc.uri = new_uri.clone();
        }
        release_held(&self.editor, doc, &path, link);
        if applied {
            return;
        }
        warn!(doc = %path, ?reason, "the editor did not rename its buffer");
        self.notifier.tell_user(
            MessageType::WARNING,
            format!(
                "Chorus: {path} was renamed in the session, but your editor did not rename its buffer ({}): it stays shared under the new name; reopen it there.",
                reason.as_deref().unwrap_or("no reason given")
            ),
        );
    }

    /// The session deleted `path` (a file, or a directory: every path
    /// under it): the documents there are no longer shared. Their buffers
    /// stay as they are; `by` (someone else) is named to the user, with
    /// how to share the file again. Returns the paths unshared.
    pub(crate) fn deleted(&mut self, path: &str, by: Option<&str>) -> Vec<String> {
        let mut gone: Vec<String> = self
            .docs
            .keys()
            .filter(|doc| at_or_under(doc, path))
            .cloned()
            .collect();
        gone.sort_unstable();
        for doc_path in &gone {
            let Some(doc) = self.docs.remove(doc_path) else {
                continue;
            };
            self.moved.retain(|_, now| now != doc_path);
            let (text, version) = match &doc.state {
                DocState::Joining(joining) => (joining.text.clone(), joining.version),
                DocState::Live(sync) | DocState::Rejoining(sync) => {
                    (sync.mirror().clone(), sync.version())
                }
            };
            // Its name once the editor carries out a rename on its way.
            let uri = doc.renaming_to.unwrap_or(doc.uri);
            self.unshared
                .insert(uri.as_str().to_owned(), Unshared { text, version });
        }
        if let (Some(by), false) = (by, gone.is_empty()) {
            self.notifier.tell_user(
                MessageType::WARNING,
                format!(
                    "Chorus: {by} deleted {} from the session. Your buffer keeps its text but is no longer shared; save it to share it again.",
                    gone.join(", ")
                ),
            );
        }
        gone
    }

    /// The editor changed `uri`. Returns whether the change was taken,
    /// i.e. the document is shared and still in step.
    pub(crate) fn change(
        &mut self,
        uri: &Uri,
        version: i32,
        changes: Vec<Change>,
        link: &Link,
    ) -> bool {
        let encoding = self.encoding;
        let Some(path) = self.path_of(uri) else {
            if let Some(unshared) = self.unshared.get_mut(uri.as_str()) {
                unshared.version = version;
                if let Err(err) = apply_changes(&mut unshared.text, &changes, encoding) {
                    warn!(uri = uri.as_str(), cause = %err, "cannot follow an unshared buffer");
                    self.unshared.remove(uri.as_str());
                }
            }
            return false;
        };
        let Some(doc) = self.docs.get_mut(&path) else {
            return false;
        };
        let mut effects = Vec::new();
        let mut healed = false;
        let result = match &mut doc.state {
            DocState::Joining(joining) => {
                // Not joined yet: keep the mirror current; the difference to
                // the seed is sent once the hub answers.
                joining.version = version;
                apply_changes(&mut joining.text, &changes, encoding).map_err(SyncError::from)
            }
            DocState::Live(sync) | DocState::Rejoining(sync) => {
                let heals = sync.heals();
                let result = sync.editor_changed(Instant::now(), version, &changes, &mut effects);
                if sync.heals() > heals {
                    healed = true;
                }
                result
            }
        };
        if let Err(err) = result {
            error!(doc = %path, cause = %err, "cannot apply editor change; resyncing");
            self.request_resync(&path, link);
            return false;
        }
        carry_out(&self.editor, doc, &path, effects, link);
        if healed {
            self.told_healed(&path, "a change it reported does not fit the text it had");
        }
        true
    }

    /// The editor sent something about `uri` (every document when `None`)
    /// that could not be read: its text there can no longer be told, so it
    /// is replaced whole with the session's.
    pub(crate) fn heal(&mut self, uri: Option<&Uri>, why: &str, link: &Link) {
        let paths: Vec<String> = match uri {
            Some(uri) => self.path_of(uri).into_iter().collect(),
            None => self.docs.keys().cloned().collect(),
        };
        for path in paths {
            let Some(doc) = self.docs.get_mut(&path) else {
                continue;
            };
            let Some(sync) = doc.state.live_mut() else {
                continue;
            };
            let mut effects = Vec::new();
            sync.heal(Instant::now(), &mut effects);
            carry_out(&self.editor, doc, &path, effects, link);
            self.told_healed(&path, why);
        }
    }

    /// Logs and counts a heal; tells the user of the first.
    fn told_healed(&mut self, path: &str, why: &str) {
        self.heals += 1;
        warn!(doc = %path, heals = self.heals, %why, "the editor's text could not be trusted; replacing it with the session's");
        if self.heals == 1 {
            self.notifier.tell_user(
                MessageType::WARNING,
                format!(
                    "Chorus: your editor's copy of {path} could not be trusted ({why}); \
                     it now shows the session's text again. Whatever you typed in that \
                     moment may be gone. (Told once; later repairs are only logged.)"
                ),
            );
        }
    }

    /// The editor answered (or failed to answer) the `applyEdit` `id`.
    pub(crate) fn edit_answered(
        &mut self,
        uri: &Uri,
        id: u64,
        applied: Option<bool>,
        reason: Option<String>,
        link: &Link,
    ) {
        if applied != Some(true) {
            debug!(
                uri = uri.as_str(),
                id,
                ?applied,
                ?reason,
                "editor did not apply edit"
            );
        }
        // Sent under a name the editor has since renamed: still its answer.
        let path = self
            .path_of(uri)
            .or_else(|| self.moved.get(uri.as_str()).cloned());
        if let Some(path) = path {
            self.with_live(&path, link, |sync, out| {
                sync.edit_answered(Instant::now(), id, applied, out)
            });
        }
    }

    /// The hub acknowledged our op on `path`, making revision `rev`.
    pub(crate) fn ack(&mut self, path: &str, rev: u64, link: &Link) {
        self.with_live(path, link, |sync, out| sync.ack(rev, out));
    }

    /// Someone else's op on `path`, making revision `rev`.
    pub(crate) fn remote(&mut self, path: &str, rev: u64, op: &WireOp, link: &Link) {
        self.with_live(path, link, |sync, out| {
            sync.remote(Instant::now(), rev, &op.0, out)
        });
    }

    /// The hub (re)welcomed us: (re)join every open document. A live one
    /// offers what it holds and merges the hub's answer with its
    /// unacknowledged edits; one still joining sends its seed.
    pub(crate) fn rejoin_all(&mut self, link: &Link) {
        let paths: Vec<String> = self.docs.keys().cloned().collect();
        for path in paths {
            let Some(doc) = self.docs.get(&path) else {
                continue;
            };
            match doc.state.live() {
                Some(sync) => {
                    let msg = ClientMsg::Open {
                        doc: path.clone(),
                        text: sync.local_text().to_string(),
                        since: Some(sync.rev()),
                    };
                    link.send(&msg);
                    self.transition(&path, DocState::owe_merge);
                }
                None => self.request_resync(&path, link),
            }
        }
    }

    /// The hub refused an op on `path` as based on a revision it no
    /// longer keeps. Our op was fine: merge with the snapshot that
    /// follows, as after an outage, instead of dropping our edits.
    pub(crate) fn stale(&mut self, path: &str) {
        self.transition(path, DocState::owe_merge);
    }

    /// The hub's answer for `path`; what it means depends on the state.
    pub(crate) fn opened(&mut self, path: &str, answer: Opened, link: &Link) {
        if let Some(Document {
            state: DocState::Joining(joining),
            ..
        }) = self.docs.get_mut(path)
        {
            if joining.answers_to_skip > 0 {
                joining.answers_to_skip -= 1;
                debug!(doc = %path, "skipped the answer to an earlier open");
                return;
            }
        }
        let encoding = self.encoding;
        let honest = self.applied_is_honest;
        let instance = self.instance.clone();
        let mut effects = Vec::new();
        let mut replaced = false;
        let Some(_) = self.transition(path, |state| match state {
            DocState::Joining(joining) => {
                let rejoin_next = joining.rejoin_next;
                let (sync, shows_hub_text) =
                    join(path, joining, &answer, encoding, honest, &mut effects);
                replaced = shows_hub_text;
                // Editors without a plugin (Helix) show no join state;
                // this line is how their tests and users can tell.
                debug!(doc = %path, rev = answer.rev, "joined the document");
                if rejoin_next {
                    DocState::Rejoining(sync)
                } else {
                    DocState::Live(sync)
                }
            }
            DocState::Rejoining(mut sync) => {
                merge(path, &mut sync, answer, &instance, &mut effects);
                DocState::Live(sync)
            }
            DocState::Live(mut sync) => {
                sync.resync(Instant::now(), answer.rev, &answer.text, &mut effects);
                DocState::Live(sync)
            }
        }) else {
            return;
        };
        if replaced {
            self.notifier.tell_user(
                MessageType::INFO,
                format!("Chorus: {path} is already shared in session {}; your buffer now shows the session's text.", link.session()),
            );
        }
        if let Some(doc) = self.docs.get_mut(path) {
            carry_out(&self.editor, doc, path, effects, link);
        }
    }

    /// Moves the document at `path` to the state `next` makes of its
    /// current one. A state owns its sync, so the document leaves the map
    /// for the move and comes back.
    fn transition(
        &mut self,
        path: &str,
        next: impl FnOnce(DocState) -> DocState,
    ) -> Option<&mut Document> {
        let (path, mut doc) = self.docs.remove_entry(path)?;
        doc.state = next(doc.state);
        Some(self.docs.entry(path).or_insert(doc))
    }

    /// Runs `f` on a live document and carries out what it asks for. On a
    /// sync error the document is resynced from the hub.
    fn with_live(
        &mut self,
        path: &str,
        link: &Link,
        f: impl FnOnce(&mut DocSync, &mut Vec<Effect>) -> Result<(), SyncError>,
    ) {
        let Some(doc) = self.docs.get_mut(path) else {
            return;
        };
        let Some(sync) = doc.state.live_mut() else {
            return;
        };
        let mut effects = Vec::new();
        if let Err(err) = f(sync, &mut effects) {
            error!(doc = %path, cause = %err, "document out of step with the hub; resyncing");
            return self.request_resync(path, link);
        }
        carry_out(&self.editor, doc, path, effects, link);
    }

    /// Asks the hub for its text again; the answer (`opened`) resyncs. A
    /// document still joining keeps the text it was opened with as its seed,
    /// so that what the user typed since stays a local edit on top of it.
    fn request_resync(&mut self, path: &str, link: &Link) {
        let Some(doc) = self.docs.get_mut(path) else {
            return;
        };
        let rejoin_next = matches!(doc.state, DocState::Rejoining(_));
        if let Some(sync) = doc.state.live() {
            doc.state = DocState::Joining(Joining::from_live(sync, rejoin_next));
        }
        let DocState::Joining(joining) = &doc.state else {
            return;
        };
        let msg = ClientMsg::Open {
            doc: path.to_owned(),
            text: joining.seed.clone(),
            since: None,
        };
        if !self.fits_a_frame(path, &msg, link) {
            // Not shared: the editor keeps the document as it is.
            self.docs.remove(path);
            return;
        }
        link.send(&msg);
    }

    /// Whether `open` is within the hub's frame limit; if not, the user is
    /// told why the document is not shared (the hub would refuse the frame
    /// and end the connection, silently as far as the user can see).
    fn fits_a_frame(&self, path: &str, open: &ClientMsg, link: &Link) -> bool {
        let ClientMsg::Open { text, .. } = open else {
            return true;
        };
        let limit = link.max_message_bytes();
        // The hub measures the frame, and JSON escaping makes it larger
        // than the text (by 4% in typical source): measure what is sent,
        // unless the text alone is already too large.
        let frame = if text.len() + 1024 > limit {
            text.len()
        } else {
            serde_json::to_vec(open).map_or(usize::MAX, |frame| frame.len())
        };
        if frame + 1024 <= limit {
            return true;
        }
        self.notifier.tell_user(
            MessageType::WARNING,
            format!(
                "Chorus: {path} is too large to share ({} bytes as sent; the hub takes at most {} bytes, `chorus hub --max-message-bytes`).",
                frame.max(text.len()),
                limit.saturating_sub(1024)
            ),
        );
        false
    }

    /// Re-sends edits the editor left unanswered and, every
    /// [`AUDIT_EVERY`] while connected, compares each quiet document with
    /// the hub's.
    pub(crate) fn tick(&mut self, now: Instant, link: &Link) {
        let audit = link.is_connected() && now.duration_since(self.last_audit) >= AUDIT_EVERY;
        if audit {
            self.last_audit = now;
        }
        let mut checks = Vec::new();
        for (path, doc) in &mut self.docs {
            let Some(sync) = doc.state.live_mut() else {
                continue;
            };
            let mut effects = Vec::new();
            if let Err(err) = sync.tick(now, &mut effects) {
                error!(doc = %path, cause = %err, "resend failed");
            }
            if audit {
                match sync.audit(now, &mut effects) {
                    Audit::Busy => {}
                    Audit::Clean { rev, hash } => checks.push((path.clone(), rev, hash)),
                    Audit::Drifted { rev, hash } => {
                        error!(doc = %path, rev, "the editor's text drifted from the session's; bringing it back");
                        checks.push((path.clone(), rev, hash));
                    }
                }
            }
            if !effects.is_empty() {
                carry_out(&self.editor, doc, path, effects, link);
            }
        }
        for (doc, rev, hash) in checks {
            link.send(&ClientMsg::Checksum { doc, rev, hash });
        }
    }
}

/// The first answer to a document's `open`. Returns its sync, and whether
/// the hub's text replaced the editor's.
fn join(
    path: &str,
    joining: Joining,
    answer: &Opened,
    encoding: Encoding,
    honest: bool,
    effects: &mut Vec<Effect>,
) -> (Box<DocSync>, bool) {
    let Joining {
        seed,
        text,
        version,
        ..
    } = joining;
    if answer.created || answer.text == seed {
        // The hub holds what we sent: what the user typed since is an
        // ordinary local edit on top of it.
        let mut sync = DocSync::new(
            Instant::now(),
            Rope::from_str(&seed),
            version,
            encoding,
            answer.rev,
            &seed,
            effects,
        );
        sync.set_applied_is_honest(honest);
        sync.number_ops_from(op_numbers());
        let current = text.to_string();
        let result = if current != seed {
            sync.editor_changed(
                Instant::now(),
                version,
                &[Change {
                    range: None,
                    text: current,
                }],
                effects,
            )
        } else {
            Ok(())
        };
        if let Err(err) = result {
            error!(doc = %path, cause = %err, "cannot replay edits made while joining");
        }
        (Box::new(sync), false)
    } else {
        // An empty buffer loses nothing to the session's text (a file not
        // on disk here, opened from the session's list): no message.
        // Neovim reports an empty buffer as one line break.
        let had_text = text.chars().any(|c| c != '\n' && c != '\r');
        let replaced = had_text && text != answer.text.as_str();
        let mut sync = DocSync::new(
            Instant::now(),
            text,
            version,
            encoding,
            answer.rev,
            &answer.text,
            effects,
        );
        sync.set_applied_is_honest(honest);
        sync.number_ops_from(op_numbers());
        (Box::new(sync), replaced)
    }
}

/// The answer to a rejoin: merged with what we hold.
pub(crate) fn merge(
    path: &str,
    sync: &mut DocSync,
    answer: Opened,
    instance: &str,
    effects: &mut Vec<Effect>,
) {
    let Opened {
        rev,
        text: hub_text,
        created,
        history,
        last_seq,
    } = answer;
    if created {
        // The hub lost the document and took ours as its seed.
        sync.resync(Instant::now(), rev, &hub_text, effects);
    } else if let Some(history) = history {
        // The hub kept every op since our revision: replay them.
        let ours = sync.outstanding_seq();
        let entries = history
            .into_iter()
            .map(|logged| {
                let mine = logged.instance.as_deref() == Some(instance)
                    && logged.seq.is_some()
                    && logged.seq == ours;
                if mine {
                    CaughtUp::Ours { rev: logged.rev }
                } else {
                    CaughtUp::Theirs {
                        rev: logged.rev,
                        op: logged.op.0,
                    }
                }
            })
            .collect();
        if let Err(err) = sync.catch_up(Instant::now(), entries, effects) {
            error!(doc = %path, cause = %err, "cannot replay the hub's ops; taking its text");
            sync.resync(Instant::now(), rev, &hub_text, effects);
        }
    } else {
        // The hub no longer has the ops since our revision: merge by text.
        if let Err(err) = sync.reconnect(Instant::now(), rev, &hub_text, last_seq, effects) {
            error!(doc = %path, cause = %err, "cannot merge after reconnecting; taking the hub's text");
            sync.resync(Instant::now(), rev, &hub_text, effects);
        }
    }
}

/// The editor, as the documents reach it.
struct Editor {
    /// Sends `workspace/applyEdit` requests.
    client: Client,
    /// Where the answers go, as [`Event::EditDone`]: a request is never
    /// awaited in the loop.
    events: mpsc::UnboundedSender<Event>,
}

impl Editor {
    /// Carries out a document's effects, in order.
    fn run_effects(&self, uri: &Uri, path: &str, effects: Vec<Effect>, link: &Link) {
        for effect in effects {
            match effect {
                Effect::SendOp { rev, op, seq } => link.send(&ClientMsg::Op {
                    doc: path.to_owned(),
                    rev,
                    op: WireOp(op),
                    seq: Some(seq),
                }),
                Effect::ApplyEdit {
                    id,
                    version,
                    range,
                    new_text,
                } => self.apply_edit(uri.clone(), id, Some(version), range, new_text),
                Effect::ReplaceAll { id, text } => {
                    // Past the end of any text: editors clamp it to theirs
                    // (VS Code validates ranges, Neovim clamps end rows).
                    // Unversioned, so that no version check can refuse it.
                    let end = LinePos {
                        line: i32::MAX as u32,
                        column: 0,
                    };
                    let start = LinePos { line: 0, column: 0 };
                    self.apply_edit(uri.clone(), id, None, (start, end), text)
                }
            }
        }
    }

    /// Asks the editor to rename its buffer (and file) `old_uri` to
    /// `new_uri`; the answer comes back as [`Event::RenameDone`].
    fn rename_file(&self, old_uri: Uri, new_uri: Uri) {
        let rename = RenameFile {
            old_uri,
            new_uri: new_uri.clone(),
            options: None,
            annotation_id: None,
        };
        let edit = WorkspaceEdit {
            document_changes: Some(DocumentChanges::Operations(vec![
                DocumentChangeOperation::Op(ResourceOp::Rename(rename)),
            ])),
            ..WorkspaceEdit::default()
        };
        let params = ApplyWorkspaceEditParams {
            label: Some("Chorus: renamed in the session".into()),
            edit,
        };
        let client = self.client.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let (applied, reason) = send_apply(&client, params).await;
            let applied = applied == Some(true);
            let _ = events.send(Event::RenameDone {
                new_uri,
                applied,
                reason,
            });
        });
    }

    fn apply_edit(
        &self,
        uri: Uri,
        id: u64,
        version: Option<i32>,
        range: (LinePos, LinePos),
        new_text: String,
    ) {
        let edit = WorkspaceEdit {
            document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                text_document: OptionalVersionedTextDocumentIdentifier {
                    uri: uri.clone(),
                    version,
                },
                edits: vec![OneOf::Left(TextEdit {
                    range: Range {
                        start: lsp_pos(range.0),
                        end: lsp_pos(range.1),
                    },
                    new_text,
                })],
            }])),
            ..WorkspaceEdit::default()
        };
        let params = ApplyWorkspaceEditParams {
            // No label: Neovim prints it on every remote keystroke.
            label: None,
            edit,
        };
        let client = self.client.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let (applied, reason) = send_apply(&client, params).await;
            let _ = events.send(Event::EditDone {
                uri,
                id,
                applied,
                reason,
            });
        });
    }
}

/// Sends `workspace/applyEdit` and waits for the answer: `Some(applied)`,
/// or `None` when the request failed or timed out, with the reason.
async fn send_apply(
    client: &Client,
    params: ApplyWorkspaceEditParams,
) -> (Option<bool>, Option<String>) {
    let answer = tokio::time::timeout(
        APPLY_EDIT_TIMEOUT,
        client.send_request::<tower_lsp_server::ls_types::request::ApplyWorkspaceEdit>(params),
    )
    .await;
    match answer {
        Ok(Ok(response)) => (Some(response.applied), response.failure_reason),
        Ok(Err(err)) => (None, Some(err.to_string())),
        Err(_) => (None, Some("timed out".into())),
    }
}

pub(crate) fn lsp_pos(pos: LinePos) -> Position {
    Position {
        line: pos.line,
        character: pos.column,
    }
}

/// Where a new document sync starts numbering its ops (`seq`): a block
/// of its own, above every earlier sync's of this proxy. The hub knows a
/// proxy's ops by `(instance, seq)` per document, and one document may be
/// synced by several syncs of one proxy in turn (the disk's, then the
/// editor's once it opens the file, then the disk's again): numbers from 1
/// each time would let a rejoin take an earlier sync's op for the current
/// one's, and drop it as delivered (ADR 0002).
pub(crate) fn op_numbers() -> u64 {
    static BLOCKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let block = BLOCKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (block << 32) + 1
}

/// Unique enough among one session's proxies: process id and start time.
fn new_instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{:x}", std::process::id(), nanos)
}
