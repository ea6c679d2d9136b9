//! The proxy's main loop: one task that owns all of the proxy's state and
//! handles, in order, what the editor reports, what the hub sends and the
//! answers to our `workspace/applyEdit` requests. It only dispatches (and
//! starts the hub link at `initialize`); each job lives in its own module:
//! the documents in `documents.rs`, cursors and participants in
//! `presence.rs`, `chorus.*` in `commands.rs`, runs in `runs.rs`, the
//! shared terminal and its `chorus.terminal*` in `terminal.rs`, the
//! connection's state in `hub_link.rs`, the session's files on disk
//! (`syncFiles`) in `disk.rs`: a path's hub messages go to `disk.rs` while
//! it follows the path for a file the editor does not have open, else to
//! `documents.rs`. Renames and deletes (ADR 0005), the editor's and the
//! session's, go to both, each moving what it holds (`moves.rs`).
//!
//! Invariants:
//! * The LSP handlers only send [`Event`]s here, never await; requests to
//!   the editor (`applyEdit`) run in spawned tasks that report back as
//!   events, so a handler never waits on the editor, nor the loop.
//! * One owner, one order: the parts do not hold each other; the loop
//!   lends them what they need (the link, the documents) per event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chorus_protocol::text::{Encoding, LinePos};
use chorus_protocol::wire::{ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::ls_types::{MessageType, Uri};
use tower_lsp_server::Client;
use tracing::{debug, info, warn};

use crate::commands::Commands;
use crate::disk::{DiskSync, Found, Touched, TreeChange, Written};
use crate::documents::{Documents, Opened};
use crate::hub_link::Link;
use crate::lsp_ext::{
    DocumentStateResult, RunInputParams, TerminalEndedParams, TerminalOutputParams,
    TerminalResizedParams, TerminalStartedParams,
};
use crate::moves::{OwnMove, OwnMoves, Refused};
use crate::notifier::Notifier;
use crate::presence::Presence;
use crate::runs::Runs;
use crate::share::{EditorShare, ShareTarget};
use crate::sync::Change;
use crate::terminal::Terminal;
use crate::Settings;

/// How often edits the editor left unanswered are looked at (and, less
/// often, documents audited against the hub).
const TICK: Duration = Duration::from_millis(200);

/// Everything the loop reacts to, besides its tick.
pub enum Event {
    /// The editor sent `initialized`.
    Initialized,
    /// The editor's `initialize`: where to collaborate and how it counts
    /// columns.
    Init {
        settings: Settings,
        root: Option<PathBuf>,
        encoding: Encoding,
        editor: Option<String>,
        work_done_progress: bool,
        /// The editor renames files a `workspace/applyEdit` asks it to.
        can_rename: bool,
    },
    /// `workspace/executeCommand`: one of `lsp_ext::COMMANDS`.
    Command {
        command: String,
        arguments: Vec<serde_json::Value>,
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// The user's selections, from a plugin.
    Cursor {
        uri: Uri,
        selections: Vec<(LinePos, LinePos)>,
    },
    /// Whether `uri` is shared (for offering "Run with Chorus").
    IsShared {
        uri: Uri,
        reply: oneshot::Sender<bool>,
    },
    /// `textDocument/didOpen`.
    Open {
        uri: Uri,
        text: String,
        version: i32,
    },
    /// `textDocument/didChange`, in the editor's order.
    Change {
        uri: Uri,
        version: i32,
        changes: Vec<Change>,
    },
    /// `textDocument/didClose`.
    Close { uri: Uri },
    /// `textDocument/didSave`.
    Save { uri: Uri },
    /// `workspace/didRenameFiles`: `(old, new)` per file or folder.
    FilesRenamed { renames: Vec<(Uri, Uri)> },
    /// `workspace/didDeleteFiles`: files or folders.
    FilesDeleted { uris: Vec<Uri> },
    /// The editor's answer to our `RenameFile` to `new_uri`.
    RenameDone {
        new_uri: Uri,
        applied: bool,
        reason: Option<String>,
    },
    /// `chorus/documentState`: the proxy's view of a document.
    DocumentState {
        uri: Uri,
        reply: oneshot::Sender<Option<DocumentStateResult>>,
    },
    /// The editor's answer to an `applyEdit` we sent.
    EditDone {
        uri: Uri,
        id: u64,
        /// `None` when the request failed or timed out.
        applied: Option<bool>,
        reason: Option<String>,
    },
    /// A frame from the editor arrived damaged (see transport.rs): about
    /// `uri`, or about an unknown document.
    Damaged {
        uri: Option<Uri>,
        method: Option<String>,
        reason: String,
    },
    /// From the hub link task.
    Hub(HubEvent),
    /// Time to write the files on disk that remote edits changed.
    DiskFlush,
    /// The disk writer's report on one file.
    DiskWritten { path: String, outcome: Written },
    /// The file watcher saw these paths change.
    DiskTouched(Touched),
    /// What the disk writer found changed on disk, in order.
    DiskFound { found: Vec<Found> },
    /// `chorus.share` published the workspace folder.
    Shared,
    /// The terminal's output may have paused: time to log a prompt.
    TerminalIdle,
}

pub enum HubEvent {
    /// A frame from the hub.
    Msg(ServerMsg),
    /// The connection ended or could not be made; the reason is for the
    /// user. The link task retries on its own.
    Disconnected(String),
}

struct Core {
    /// Our own queue, for the hub link task started at `initialize`.
    events: mpsc::UnboundedSender<Event>,
    /// The connection to the hub: the queue to it, whether it is up, and
    /// what the user was told about it. Lent to the parts that send.
    link: Link,
    /// The shared documents: joining, syncing, resyncing, and their edits
    /// to the editor.
    docs: Documents,
    /// The session's participants and cursors, both ways, and follow mode.
    presence: Presence,
    /// `chorus.*` commands, and the document `chorus.run` defaults to.
    commands: Commands,
    /// The session's runs, as the editor shows them.
    runs: Runs,
    /// The session's shared terminal, as the editor shows it.
    terminal: Terminal,
    /// The session's files on disk (`syncFiles`), for those the editor
    /// does not have open.
    disk: DiskSync,
    /// What the editor is told unasked, in order; held back until the
    /// editor says `initialized`.
    notifier: Notifier,
    /// Our editor's renames and deletes the hub has yet to answer.
    own_moves: OwnMoves,
}

pub async fn run(
    client: Client,
    events: mpsc::UnboundedSender<Event>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let notifier = Notifier::spawn(client.clone());
    let mut core = Core {
        docs: Documents::new(client, events.clone(), notifier.clone()),
        disk: DiskSync::new(events.clone(), notifier.clone()),
        terminal: Terminal::new(notifier.clone(), events.clone()),
        events,
        link: Link::new(notifier.clone()),
        presence: Presence::new(notifier.clone()),
        commands: Commands::default(),
        runs: Runs::new(notifier.clone()),
        notifier,
        own_moves: OwnMoves::default(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => core.handle(event),
                None => return,
            },
            _ = tick.tick() => core.tick(),
        }
    }
}

impl Core {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Initialized => self.notifier.open(),
            Event::Init {
                settings,
                root,
                encoding,
                editor,
                work_done_progress,
                can_rename,
            } => {
                self.runs.set_progress_support(work_done_progress);
                self.init(
                    settings,
                    root,
                    encoding,
                    editor,
                    work_done_progress,
                    can_rename,
                )
            }
            Event::Command {
                command,
                arguments,
                reply,
            } => {
                let run_going = self.runs.is_going();
                if let Some(answer) = self
                    .terminal
                    .command(&command, &arguments, run_going, &self.link)
                {
                    let _ = reply.send(answer);
                    return;
                }
                self.commands.execute(
                    &command,
                    &arguments,
                    reply,
                    &self.link,
                    &mut self.docs,
                    &mut self.presence,
                );
            }
            Event::Cursor { uri, selections } => {
                self.presence
                    .send_cursor(&uri, &selections, &self.docs, &self.link)
            }
            Event::IsShared { uri, reply } => {
                let _ = reply.send(self.docs.is_shared(&uri));
            }
            Event::Open { uri, text, version } => {
                self.commands.note_active(&uri);
                if let Some(path) = self.docs.doc_path(&uri) {
                    self.disk.editor_opened(&path, &self.link);
                }
                self.docs.open(uri, text, version, &self.link)
            }
            Event::Change {
                uri,
                version,
                changes,
            } => {
                self.commands.note_active(&uri);
                if self.docs.change(&uri, version, changes, &self.link) {
                    self.presence.infer_cursor(&uri, &mut self.docs, &self.link);
                }
            }
            Event::Close { uri } => {
                let shared = self.docs.close(&uri, &self.link);
                if let Some(path) = self.docs.doc_path(&uri) {
                    self.disk.editor_closed(&path, shared, &self.link);
                }
            }
            Event::Save { uri } => {
                if !self.docs.is_shared(&uri) {
                    if let Some(path) = self.docs.doc_path(&uri) {
                        self.disk.editor_opened(&path, &self.link);
                    }
                }
                self.docs.saved(&uri, &self.link)
            }
            Event::FilesRenamed { renames } => {
                for (old, new) in renames {
                    self.editor_renamed(&old, &new);
                }
            }
            Event::FilesDeleted { uris } => {
                for uri in uris {
                    self.editor_deleted(&uri);
                }
            }
            Event::RenameDone {
                new_uri,
                applied,
                reason,
            } => self
                .docs
                .rename_answered(&new_uri, applied, reason, &self.link),
            Event::Damaged {
                uri,
                method,
                reason,
            } => {
                let why = match &method {
                    Some(method) => format!("its {method} could not be read: {reason}"),
                    None => format!("a message from it could not be read: {reason}"),
                };
                if method.as_deref() == Some("textDocument/didOpen") {
                    // Never passed on: the file may not be text at all.
                    let name = uri.as_ref().map_or("a file", |uri| uri.as_str());
                    self.notifier.tell_user(
                        MessageType::WARNING,
                        format!("Chorus: {name} is not valid UTF-8 text, so it is not shared."),
                    );
                    return;
                }
                // A change about no known document may be about any.
                self.docs.heal(uri.as_ref(), &why, &self.link);
            }
            Event::DocumentState { uri, reply } => {
                let _ = reply.send(self.docs.describe(&uri));
            }
            Event::EditDone {
                uri,
                id,
                applied,
                reason,
            } => self
                .docs
                .edit_answered(&uri, id, applied, reason, &self.link),
            Event::Hub(HubEvent::Msg(msg)) => self.hub_msg(msg),
            Event::Hub(HubEvent::Disconnected(reason)) => {
                self.commands
                    .connection_lost("the connection to the hub dropped");
                self.link.disconnected(&reason)
            }
            Event::DiskFlush => self.disk.flush(),
            Event::DiskWritten { path, outcome } => {
                if let Some(change) = self.disk.written(path, outcome, &self.link) {
                    self.disk_tree_change(change);
                }
            }
            Event::DiskTouched(touched) => self.disk.touched(touched, &self.link),
            Event::DiskFound { found } => self.disk_found(found),
            Event::Shared => self.disk.shared(&self.link),
            Event::TerminalIdle => self.terminal.idle(),
        }
    }

    fn init(
        &mut self,
        settings: Settings,
        root: Option<PathBuf>,
        encoding: Encoding,
        editor: Option<String>,
        work_done_progress: bool,
        can_rename: bool,
    ) {
        let extensions = settings.extensions.unwrap_or(false);
        self.presence.set_extensions(extensions);
        self.terminal.set_extensions(extensions);
        // Neovim's own applyEdit handler answers `applied: true` for edits
        // it skipped as stale; the Chorus plugin replaces it with one that
        // says no (editor-plugins/neovim/lua/chorus/edits.lua).
        let neovim = editor
            .as_deref()
            .is_some_and(|name| name.to_ascii_lowercase().contains("neovim"));
        self.docs
            .configure(root.clone(), encoding, !neovim || extensions, can_rename);
        self.disk
            .configure(root.clone(), settings.sync_files.unwrap_or(false));
        let Some(session) = settings.session.clone() else {
            self.notifier.tell_user(
                MessageType::WARNING,
                "Chorus: no session given (--session or initializationOptions.session); nothing is shared.",
            );
            return;
        };
        let hub = settings
            .hub
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_HUB.into());
        let name = settings.name.clone().unwrap_or_else(crate::default_name);
        info!(%hub, %session, %name, ?encoding, "starting");
        let tls = if hub.starts_with("wss://") {
            match crate::hub_link::tls_config(settings.hub_ca.as_deref().map(Path::new)) {
                Ok(tls) => Some(tls),
                Err(err) => {
                    self.notifier
                        .tell_user(MessageType::ERROR, format!("Chorus: {err}"));
                    return;
                }
            }
        } else {
            None
        };
        if let Some(root) = root {
            self.commands.set_share(EditorShare {
                target: ShareTarget {
                    hub: hub.clone(),
                    session: session.clone(),
                    name: name.clone(),
                    token: settings.token.clone().filter(|t| !t.is_empty()),
                    tls: tls.clone(),
                    editor: format!("{} (chorus.share)", editor.as_deref().unwrap_or("editor")),
                },
                root,
                work_done_progress,
                notifier: self.notifier.clone(),
                running: Default::default(),
                events: self.events.clone(),
            });
        }
        let token = settings.token.clone().filter(|t| !t.is_empty());
        if let Some(warning) = crate::hub_link::token_in_clear(&hub, token.as_deref()) {
            warn!("{warning}");
            self.notifier
                .tell_user(MessageType::WARNING, format!("Chorus: {warning}"));
        }
        let hello = ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            session: session.clone(),
            name,
            editor,
            instance: Some(self.docs.instance().to_owned()),
            token,
        };
        self.link
            .start(session, hub, tls, hello, self.events.clone());
    }

    fn hub_msg(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome {
                client_id,
                participants,
                session,
                role,
                workspace,
                max_message_bytes,
                ..
            } => {
                self.link
                    .welcomed(client_id, &session, role, max_message_bytes);
                // Whatever was unanswered went with the old connection.
                self.own_moves.clear();
                self.terminal.welcomed();
                self.presence.welcome(participants);
                self.docs.rejoin_all(&self.link);
                let disk_asked_files = self.disk.welcomed(workspace, &self.link);
                self.commands
                    .welcomed(workspace.is_some(), disk_asked_files);
            }
            ServerMsg::Opened {
                doc,
                rev,
                text,
                created,
                history,
                last_seq,
            } => {
                let answer = Opened {
                    rev,
                    text,
                    created,
                    history,
                    last_seq,
                };
                if self.disk.owns(&doc) {
                    self.disk
                        .opened(&doc, answer, self.docs.instance(), &self.link)
                } else {
                    self.docs.opened(&doc, answer, &self.link)
                }
            }
            ServerMsg::Ack { doc, rev } if self.disk.owns(&doc) => {
                self.disk.ack(&doc, rev, &self.link)
            }
            ServerMsg::Ack { doc, rev } => self.docs.ack(&doc, rev, &self.link),
            ServerMsg::Remote { doc, rev, op, .. } if self.disk.owns(&doc) => {
                self.disk.remote(&doc, rev, &op, &self.link)
            }
            ServerMsg::Remote { doc, rev, op, .. } => self.docs.remote(&doc, rev, &op, &self.link),
            ServerMsg::Joined { participant } => {
                self.presence.joined(participant, self.link.session())
            }
            ServerMsg::Left { client_id, name } => {
                self.presence
                    .left(client_id, name, self.link.session(), &self.docs)
            }
            ServerMsg::Cursor {
                client_id,
                name,
                doc,
                selections,
                ..
            } => self
                .presence
                .receive_cursor(client_id, name, &doc, selections, &self.docs),
            ServerMsg::Pong { .. } => {}
            // A share's puts go over its own connection; these are the
            // file watcher's.
            ServerMsg::Stored {
                path,
                created,
                not_synced,
            } => {
                if let Some(change) = self.disk.stored(&path, created, not_synced, &self.link) {
                    self.disk_tree_change(change);
                }
            }
            ServerMsg::Files { entries } => {
                if let Some(entries) = self.commands.files_arrived(entries, &self.docs) {
                    self.disk.files(entries, &self.link)
                }
            }
            ServerMsg::FileAdded { entry } => self.disk.file_added(entry, &self.link),
            ServerMsg::Renamed {
                from,
                to,
                client_id,
            } => self.session_renamed(&from, &to, client_id),
            ServerMsg::Deleted { path, client_id } => self.session_deleted(&path, client_id),
            ServerMsg::RunStarted {
                run_id,
                name,
                doc,
                plan,
                ..
            } => self.runs.started(run_id, &name, &doc, &plan),
            ServerMsg::RunOutput {
                run_id,
                seq,
                stream,
                data,
            } => self.runs.output(run_id, seq, stream, &data),
            ServerMsg::RunInput {
                run_id,
                client_id,
                name,
                text,
                eof,
                interrupt,
            } => self.runs.input(RunInputParams {
                run_id,
                client_id,
                name,
                text,
                eof,
                interrupt,
            }),
            ServerMsg::TerminalStarted {
                terminal_id,
                client_id,
                name,
                cols,
                rows,
            } => self.terminal.started(TerminalStartedParams {
                terminal_id,
                client_id,
                name,
                cols,
                rows,
            }),
            ServerMsg::TerminalOutput {
                terminal_id,
                seq,
                data,
                replay,
            } => self.terminal.output(TerminalOutputParams {
                terminal_id,
                seq,
                data,
                replay,
            }),
            ServerMsg::TerminalResized {
                terminal_id,
                client_id,
                cols,
                rows,
            } => self.terminal.resized(TerminalResizedParams {
                terminal_id,
                client_id,
                cols,
                rows,
            }),
            ServerMsg::TerminalEnded {
                terminal_id,
                reason,
            } => self.terminal.ended(TerminalEndedParams {
                terminal_id,
                reason,
            }),
            ServerMsg::RunFinished { run_id, result } => {
                self.runs.finished(run_id, &result, &self.docs)
            }
            ServerMsg::Error {
                doc: Some(doc),
                code:
                    code @ (ErrorCode::AlreadyExists | ErrorCode::UnknownDocument | ErrorCode::BadPath),
                message,
            } if self.own_move_refused(&doc, code, &message) => {}
            ServerMsg::Error {
                doc: Some(doc),
                code,
                message,
            } if self.disk.owns(&doc) || self.disk.is_putting(&doc) => {
                warn!(?code, %message, %doc, "hub refused a file kept on disk");
                self.disk.error(&doc, code, &message, &self.link);
            }
            ServerMsg::Error { code, message, doc } => {
                warn!(?code, %message, ?doc, "hub reported an error");
                if code == ErrorCode::StaleRevision {
                    if let Some(doc) = &doc {
                        self.docs.stale(doc);
                    }
                }
                self.link.hub_error(code, &message);
            }
        }
    }

    /// Someone's rename reached us in the hub's order (ours were applied
    /// when sent: see `moves.rs`).
    fn session_renamed(&mut self, from: &str, to: &str, client_id: u64) {
        if self.link.is_me(client_id) {
            self.own_moves.confirmed(true);
            return;
        }
        info!(%from, %to, client_id, "renamed in the session");
        let by = self.presence.name_of(client_id).unwrap_or("someone");
        let not_renamed = self.docs.renamed(from, to, Some(by), &self.link);
        self.disk.renamed(from, to, true, &self.link);
        for (old, new) in not_renamed {
            self.disk.move_for_editor(&old, &new);
        }
    }

    fn session_deleted(&mut self, path: &str, client_id: u64) {
        if self.link.is_me(client_id) {
            self.own_moves.confirmed(false);
            return;
        }
        info!(%path, client_id, "deleted in the session");
        let by = self.presence.name_of(client_id).unwrap_or("someone");
        self.docs.deleted(path, Some(by));
        self.disk.deleted(path, true, &self.link);
    }

    /// `workspace/didRenameFiles` for one file or folder: the session's
    /// tree follows the editor's, and so does what we hold, now.
    fn editor_renamed(&mut self, old: &Uri, new: &Uri) {
        let (Some(from), Some(to)) = (self.docs.doc_path(old), self.docs.doc_path(new)) else {
            // A file moved into or out of the workspace is not a rename
            // the session can share; its close and open say the rest.
            return;
        };
        if !self.link.is_configured() || from == to {
            return;
        }
        if self.docs.is_rename_we_asked(&from, &to) {
            debug!(%from, %to, "the editor reported a rename we asked for");
            return;
        }
        // Helix (and, it seems, VS Code) close the file under its old name
        // and open it under the new one before they report the rename, so
        // that open made a new file at `to`: it goes, for the old file to
        // be renamed there, and our documents there join that.
        let reopened_first = !self.docs.has_at_or_under(&from) && self.docs.has_at_or_under(&to);
        info!(%from, %to, reopened_first, "the editor renamed a file");
        if reopened_first {
            self.link.send(&ClientMsg::Delete { path: to.clone() });
            self.own_moves.sent(OwnMove::Delete { path: to.clone() });
        }
        self.link.send(&ClientMsg::Rename {
            from: from.clone(),
            to: to.clone(),
        });
        self.own_moves.sent(OwnMove::Rename {
            from: from.clone(),
            to: to.clone(),
        });
        if reopened_first {
            self.docs.rejoin_renamed(&to, &self.link);
        } else {
            self.docs.renamed(&from, &to, None, &self.link);
        }
        self.disk.renamed(&from, &to, false, &self.link);
    }

    /// `workspace/didDeleteFiles` for one file or folder.
    fn editor_deleted(&mut self, uri: &Uri) {
        let Some(path) = self.docs.doc_path(uri) else {
            return;
        };
        if !self.link.is_configured() {
            return;
        }
        info!(%path, "the editor deleted a file");
        self.link.send(&ClientMsg::Delete { path: path.clone() });
        self.own_moves.sent(OwnMove::Delete { path: path.clone() });
        self.docs.deleted(&path, None);
        self.disk.deleted(&path, false, &self.link);
    }

    /// What the disk writer found, in order: changes and new files are the
    /// disk's to send; renames and deletes go out as the editor's do.
    fn disk_found(&mut self, found: Vec<Found>) {
        for found in found {
            match self.disk.tree_change(&found) {
                Some(change) => self.disk_tree_change(change),
                None => self.disk.found(found, &self.link),
            }
        }
        self.disk.found_done(&self.link);
    }

    /// A rename or delete made on disk by another program: sent, and
    /// applied to what we hold now, as for the editor's own.
    fn disk_tree_change(&mut self, change: TreeChange) {
        if !self.link.is_configured() {
            return;
        }
        match change {
            TreeChange::Rename { from, to } => {
                info!(%from, %to, "renamed on disk");
                self.link.send(&ClientMsg::Rename {
                    from: from.clone(),
                    to: to.clone(),
                });
                self.own_moves.sent(OwnMove::Rename {
                    from: from.clone(),
                    to: to.clone(),
                });
                self.docs.renamed(&from, &to, None, &self.link);
                self.disk.renamed(&from, &to, false, &self.link);
            }
            TreeChange::Delete { path } => {
                info!(%path, "deleted on disk");
                self.link.send(&ClientMsg::Delete { path: path.clone() });
                self.own_moves.sent(OwnMove::Delete { path: path.clone() });
                self.docs.deleted(&path, None);
                self.disk.deleted(&path, false, &self.link);
            }
        }
    }

    /// The hub refused something about `doc`: if it was one of our renames
    /// or deletes, undoes what we did when sending it and returns true.
    fn own_move_refused(&mut self, doc: &str, code: ErrorCode, message: &str) -> bool {
        let Some(refused) = self.own_moves.refused(doc) else {
            return false;
        };
        warn!(?code, %message, ?refused, "the hub refused our rename or delete");
        match refused {
            Refused::Rename { from, to } => {
                // What we moved to `to` is not the session's there: the
                // buffers stay, unshared, and saving shares them anew.
                let unshared = self.docs.deleted(&to, None);
                self.disk.deleted(&to, false, &self.link);
                if !unshared.is_empty() || code == ErrorCode::AlreadyExists {
                    self.notifier.tell_user(
                        MessageType::WARNING,
                        format!(
                            "Chorus: renaming {from} to {to} was refused by the session ({message}); {to} is not shared. Save it to share it as a new file."
                        ),
                    );
                }
            }
            // Nothing was there to delete (a file never shared): fine.
            Refused::Delete { .. } => {}
        }
        true
    }

    fn tick(&mut self) {
        self.docs.tick(Instant::now(), &self.link);
    }
}
