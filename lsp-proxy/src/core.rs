//! The proxy's main loop: one task that owns every document's state and
//! handles, in order, what the editor reports, what the hub sends and the
//! answers to our `workspace/applyEdit` requests.
//!
//! Architecture invariant: the LSP handlers only send [`Event`]s here, never
//! await; requests to the editor (`applyEdit`) run in spawned tasks that
//! report back as events, so a handler never waits on the editor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chorus_protocol::ot::WireOp;
use chorus_protocol::text::{to_char, to_pos, Encoding, LinePos};
use chorus_protocol::wire::{
    ClientMsg, ErrorCode, LoggedOp, Participant, Selection, ServerMsg, DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};
use ropey::Rope;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::ls_types::{
    ApplyWorkspaceEditParams, DocumentChanges, MessageType, OneOf,
    OptionalVersionedTextDocumentIdentifier, Position, Range, ShowDocumentParams, TextDocumentEdit,
    TextEdit, Uri, WorkspaceEdit,
};
use tower_lsp_server::Client;
use tracing::{debug, error, info, warn};

use crate::hub_link::Link;
use crate::notifier::{Custom, Notifier};
use crate::presence::CursorBoard;
use crate::runs::Runs;
use crate::sync::{apply_changes, Audit, CaughtUp, Change, DocSync, Effect, SyncError};
use crate::Settings;

/// How long the editor gets to answer an `applyEdit`.
const APPLY_EDIT_TIMEOUT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(200);
/// How often each quiet document's text is compared with the hub's.
const AUDIT_EVERY: Duration = Duration::from_secs(5);

pub enum Event {
    /// The editor sent `initialized`.
    Initialized,
    Init {
        settings: Settings,
        root: Option<PathBuf>,
        encoding: Encoding,
        editor: Option<String>,
        work_done_progress: bool,
    },
    /// `workspace/executeCommand`: `chorus.run [uri]` or `chorus.stop`.
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
    Open {
        uri: Uri,
        text: String,
        version: i32,
    },
    Change {
        uri: Uri,
        version: i32,
        changes: Vec<Change>,
    },
    Close {
        uri: Uri,
    },
    DocumentState {
        uri: Uri,
        reply: oneshot::Sender<serde_json::Value>,
    },
    EditDone {
        uri: Uri,
        id: u64,
        /// `None` when the request failed or timed out.
        applied: Option<bool>,
        reason: Option<String>,
    },
    Hub(HubEvent),
}

pub enum HubEvent {
    Msg(ServerMsg),
    Disconnected(String),
}

enum DocState {
    /// `open` sent (or waiting for the hub); `seed` is the text sent.
    Joining {
        seed: String,
        text: Rope,
        version: i32,
    },
    Live(Box<DocSync>),
}

struct Doc {
    path: String,
    state: DocState,
    /// A live document re-opened after the hub connection came back: the
    /// hub's answer is merged, not adopted.
    rejoining: bool,
}

struct Core {
    client: Client,
    events: mpsc::UnboundedSender<Event>,
    encoding: Encoding,
    root: Option<PathBuf>,
    link: Link,
    participants: HashMap<u64, Participant>,
    docs: HashMap<Uri, Doc>,
    by_path: HashMap<String, Uri>,
    /// The document last opened or edited: what `chorus.run` runs by default.
    last_active: Option<Uri>,
    runs: Runs,
    notifier: Notifier,
    /// The editor's plugin handles `chorus/*` itself.
    extensions: bool,
    /// Whether the editor's `applied: true` can be believed (DocSync).
    applied_is_honest: bool,
    /// Collaborators' cursors, for editors without a plugin.
    board: CursorBoard,
    /// Whose cursor this editor follows (`chorus.follow NAME`).
    follow: Option<String>,
    /// This proxy's id at the hub, stable across reconnects.
    instance: String,
    last_audit: Instant,
}

pub async fn run(
    client: Client,
    events: mpsc::UnboundedSender<Event>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let notifier = Notifier::spawn(client.clone());
    let mut core = Core {
        client: client.clone(),
        events,
        encoding: Encoding::Utf16,
        root: None,
        link: Link::new(notifier.clone()),
        participants: HashMap::new(),
        docs: HashMap::new(),
        by_path: HashMap::new(),
        last_active: None,
        runs: Runs::new(notifier.clone()),
        notifier,
        extensions: false,
        applied_is_honest: true,
        board: CursorBoard::default(),
        follow: None,
        instance: new_instance_id(),
        last_audit: Instant::now(),
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

fn lsp_pos(pos: LinePos) -> Position {
    Position {
        line: pos.line,
        character: pos.column,
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
            } => {
                self.runs.set_progress_support(work_done_progress);
                self.init(settings, root, encoding, editor)
            }
            Event::Command {
                command,
                arguments,
                reply,
            } => {
                let _ = reply.send(self.command(&command, &arguments));
            }
            Event::Cursor { uri, selections } => self.send_cursor(&uri, &selections),
            Event::IsShared { uri, reply } => {
                let _ = reply.send(self.docs.contains_key(&uri));
            }
            Event::Open { uri, text, version } => {
                self.last_active = Some(uri.clone());
                self.open(uri, text, version)
            }
            Event::Change {
                uri,
                version,
                changes,
            } => {
                if self.last_active.as_ref() != Some(&uri) {
                    self.last_active = Some(uri.clone());
                }
                self.change(uri, version, changes)
            }
            Event::Close { uri } => self.close(uri),
            Event::DocumentState { uri, reply } => {
                let state = match self.docs.get(&uri).map(|d| &d.state) {
                    Some(DocState::Live(sync)) => json!({
                        "text": sync.mirror().to_string(),
                        "rev": sync.rev(),
                        "synchronized": sync.is_synchronized(),
                        "joined": true,
                    }),
                    Some(DocState::Joining { text, .. }) => json!({
                        "text": text.to_string(),
                        "rev": 0,
                        "synchronized": false,
                        "joined": false,
                    }),
                    None => serde_json::Value::Null,
                };
                let _ = reply.send(state);
            }
            Event::EditDone {
                uri,
                id,
                applied,
                reason,
            } => {
                if applied != Some(true) {
                    debug!(
                        uri = uri.as_str(),
                        id,
                        ?applied,
                        ?reason,
                        "editor did not apply edit"
                    );
                }
                if let Some(path) = self.docs.get(&uri).map(|d| d.path.clone()) {
                    self.with_live(&path, |sync, out| sync.edit_answered(id, applied, out));
                }
            }
            Event::Hub(HubEvent::Msg(msg)) => self.hub_msg(msg),
            Event::Hub(HubEvent::Disconnected(reason)) => self.link.disconnected(&reason),
        }
    }

    fn init(
        &mut self,
        settings: Settings,
        root: Option<PathBuf>,
        encoding: Encoding,
        editor: Option<String>,
    ) {
        self.encoding = encoding;
        self.root = root;
        self.extensions = settings.extensions.unwrap_or(false);
        // Neovim's own applyEdit handler answers `applied: true` for edits
        // it skipped as stale; the Chorus plugin replaces it with one that
        // says no (editor-plugins/neovim/lua/chorus/edits.lua).
        let neovim = editor
            .as_deref()
            .is_some_and(|name| name.to_ascii_lowercase().contains("neovim"));
        self.applied_is_honest = !neovim || self.extensions;
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
            .unwrap_or_else(|| "ws://127.0.0.1:7420/".into());
        let name = settings.name.clone().unwrap_or_else(default_name);
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
        let hello = ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            session: session.clone(),
            name,
            editor,
            instance: Some(self.instance.clone()),
            token: settings.token.clone().filter(|t| !t.is_empty()),
        };
        self.link
            .start(session, hub, tls, hello, self.events.clone());
    }

    /// The document id: the path relative to the workspace root, `/`-separated.
    fn doc_path(&self, uri: &Uri) -> Option<String> {
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

    fn open(&mut self, uri: Uri, text: String, version: i32) {
        if !self.link.is_configured() {
            return;
        }
        let Some(path) = self.doc_path(&uri) else {
            debug!(uri = uri.as_str(), "outside the workspace root; not shared");
            return;
        };
        if text.len() + 1024 > DEFAULT_MAX_MESSAGE_BYTES {
            self.notifier.tell_user(
                MessageType::WARNING,
                format!(
                    "Chorus: {path} is too large to share (over {} bytes).",
                    DEFAULT_MAX_MESSAGE_BYTES
                ),
            );
            return;
        }
        self.link.send(&ClientMsg::Open {
            doc: path.clone(),
            text: text.clone(),
            since: None,
        });
        self.by_path.insert(path.clone(), uri.clone());
        self.docs.insert(
            uri,
            Doc {
                path,
                state: DocState::Joining {
                    text: Rope::from_str(&text),
                    seed: text,
                    version,
                },
                rejoining: false,
            },
        );
    }

    fn close(&mut self, uri: Uri) {
        if let Some(doc) = self.docs.remove(&uri) {
            self.by_path.remove(&doc.path);
            self.link.send(&ClientMsg::Close { doc: doc.path });
        }
    }

    fn change(&mut self, uri: Uri, version: i32, changes: Vec<Change>) {
        let encoding = self.encoding;
        let Some(doc) = self.docs.get_mut(&uri) else {
            return;
        };
        let mut effects = Vec::new();
        let result = match &mut doc.state {
            DocState::Joining {
                text, version: v, ..
            } => {
                // Not joined yet: keep the mirror current; the difference to
                // the seed is sent once the hub answers.
                *v = version;
                apply_changes(text, &changes, encoding).map_err(SyncError::from)
            }
            DocState::Live(sync) => sync.editor_changed(version, &changes, &mut effects),
        };
        let path = doc.path.clone();
        if let Err(err) = result {
            error!(doc = %path, cause = %err, "cannot apply editor change; resyncing");
            return self.request_resync(&uri);
        }
        self.run_effects(&uri, &path, effects);
        self.infer_cursor(&uri);
    }

    fn hub_msg(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome {
                client_id,
                participants,
                session,
                role,
                ..
            } => {
                self.link.welcomed(client_id, &session, role);
                // Plugins learn who was already here the same way as later
                // arrivals.
                for participant in &participants {
                    self.presence(json!({"event": "joined", "participant": participant}));
                }
                self.participants = participants.into_iter().map(|p| (p.client_id, p)).collect();
                // (Re)join every open document. A live one offers what it
                // holds and merges the hub's answer with its unacknowledged
                // edits; one still joining sends its seed.
                let uris: Vec<Uri> = self.docs.keys().cloned().collect();
                for uri in uris {
                    let Some(doc) = self.docs.get_mut(&uri) else {
                        continue;
                    };
                    match &doc.state {
                        DocState::Live(sync) => {
                            doc.rejoining = true;
                            let msg = ClientMsg::Open {
                                doc: doc.path.clone(),
                                text: sync.local_text().to_string(),
                                since: Some(sync.rev()),
                            };
                            self.link.send(&msg);
                        }
                        DocState::Joining { .. } => self.request_resync(&uri),
                    }
                }
            }
            ServerMsg::Opened {
                doc,
                rev,
                text,
                created,
                history,
                last_seq,
            } => self.opened(doc, rev, text, created, history, last_seq),
            ServerMsg::Ack { doc, rev } => self.with_live(&doc, |sync, out| sync.ack(rev, out)),
            ServerMsg::Remote { doc, rev, op, .. } => {
                self.with_live(&doc, |sync, out| sync.remote(rev, &op.0, out))
            }
            ServerMsg::Joined { participant } => {
                self.log(format!(
                    "Chorus: {} joined {}",
                    participant.name,
                    self.link.session()
                ));
                self.presence(json!({"event": "joined", "participant": participant}));
                self.participants.insert(participant.client_id, participant);
            }
            ServerMsg::Left { client_id, name } => {
                self.log(format!("Chorus: {name} left {}", self.link.session()));
                self.participants.remove(&client_id);
                let changed = self.board.remove(client_id);
                self.publish_cursors(&changed);
                self.presence(json!({"event": "left", "clientId": client_id, "name": name}));
            }
            ServerMsg::Cursor {
                client_id,
                name,
                doc,
                selections,
                ..
            } => self.receive_cursor(client_id, name, &doc, selections),
            ServerMsg::Pong { .. } => {}
            ServerMsg::RunStarted {
                run_id, name, doc, ..
            } => self.runs.started(run_id, &name, &doc),
            ServerMsg::RunOutput {
                run_id,
                seq,
                stream,
                data,
            } => self.runs.output(run_id, seq, stream, &data),
            ServerMsg::RunFinished { run_id, result } => self.runs.finished(run_id, &result),
            ServerMsg::Error { code, message, doc } => {
                warn!(?code, %message, ?doc, "hub reported an error");
                if code == ErrorCode::StaleRevision {
                    // Our op was fine but based on a revision the hub no
                    // longer keeps: merge with the snapshot that follows,
                    // as after an outage, instead of dropping our edits.
                    if let Some(uri) = doc.as_ref().and_then(|d| self.by_path.get(d)).cloned() {
                        if let Some(doc) = self.docs.get_mut(&uri) {
                            doc.rejoining = true;
                        }
                    }
                }
                self.link.hub_error(code, &message);
            }
        }
    }

    /// Relays the user's selections, as character offsets in the mirror.
    /// While edits are in flight those are close to, not exactly, the hub's
    /// coordinates: good enough for presence, which the next move corrects.
    fn send_cursor(&self, uri: &Uri, selections: &[(LinePos, LinePos)]) {
        let Some(Doc {
            path,
            state: DocState::Live(sync),
            ..
        }) = self.docs.get(uri)
        else {
            return;
        };
        let to_offset = |p: LinePos| to_char(sync.mirror(), p, self.encoding) as u64;
        let selections = selections
            .iter()
            .take(64)
            .map(|&(anchor, head)| Selection {
                anchor: to_offset(anchor),
                head: to_offset(head),
            })
            .collect();
        self.link.send(&ClientMsg::Cursor {
            doc: path.clone(),
            rev: sync.rev(),
            selections,
        });
    }

    fn receive_cursor(
        &mut self,
        client_id: u64,
        name: String,
        doc: &str,
        selections: Vec<Selection>,
    ) {
        let Some(uri) = self.by_path.get(doc).cloned() else {
            return;
        };
        let Some(Doc {
            state: DocState::Live(sync),
            ..
        }) = self.docs.get(&uri)
        else {
            return;
        };
        let position = |offset: u64| lsp_pos(to_pos(sync.mirror(), offset as usize, self.encoding));
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
            let selections: Vec<_> = selections
                .iter()
                .map(|s| json!({"anchor": position(s.anchor), "head": position(s.head)}))
                .collect();
            self.cursor(json!({"clientId": client_id, "name": name, "uri": uri.as_str(), "selections": selections}));
        } else {
            let changed = self.board.update(client_id, &name, doc, selections);
            self.publish_cursors(&changed);
        }
    }

    /// Republishes the cursor diagnostics of `docs`.
    fn publish_cursors(&self, docs: &[String]) {
        for doc in docs {
            let Some(uri) = self.by_path.get(doc) else {
                continue;
            };
            let Some(Doc {
                state: DocState::Live(sync),
                ..
            }) = self.docs.get(uri)
            else {
                continue;
            };
            let diagnostics = self.board.diagnostics(doc, sync.mirror(), self.encoding);
            self.notifier.diagnostics(uri.clone(), diagnostics);
        }
    }

    /// For editors without a plugin, their cursor as their edits show it.
    fn infer_cursor(&mut self, uri: &Uri) {
        if self.extensions {
            return;
        }
        let Some(Doc {
            path,
            state: DocState::Live(sync),
            ..
        }) = self.docs.get_mut(uri)
        else {
            return;
        };
        if let Some(at) = sync.take_local_cursor() {
            let msg = ClientMsg::Cursor {
                doc: path.clone(),
                rev: sync.rev(),
                selections: vec![Selection {
                    anchor: at as u64,
                    head: at as u64,
                }],
            };
            self.link.send(&msg);
        }
    }

    /// `chorus.run [uri]` asks the hub to run; `chorus.stop` stops the
    /// session's run. The answer only says the request went out: output
    /// and the result arrive as notifications, at every participant.
    fn command(
        &mut self,
        command: &str,
        arguments: &[serde_json::Value],
    ) -> Result<serde_json::Value, String> {
        if !self.link.is_configured() {
            return Err("Chorus: no session configured".into());
        }
        if !self.link.is_connected() {
            return Err("Chorus: not connected to the hub".into());
        }
        match command {
            "chorus.run" => {
                let uri = match arguments.first() {
                    Some(value) => {
                        let text = value
                            .as_str()
                            .ok_or("chorus.run takes a document URI string")?;
                        text.parse::<Uri>()
                            .map_err(|err| format!("chorus.run: bad URI {text:?}: {err}"))?
                    }
                    None => self
                        .last_active
                        .clone()
                        .ok_or("chorus.run: no document to run; open one or pass its URI")?,
                };
                let doc = self.docs.get(&uri).map(|d| d.path.clone()).ok_or_else(|| {
                    format!("chorus.run: {} is not shared in this session", uri.as_str())
                })?;
                // Optional second argument: {"stdin": "...", "args": [...], "language": "..."}.
                let options = arguments.get(1);
                let text_field = |key: &str| {
                    options
                        .and_then(|o| o.get(key))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                };
                let args = match options.and_then(|o| o.get("args")) {
                    None => Vec::new(),
                    Some(list) => serde_json::from_value::<Vec<String>>(list.clone())
                        .map_err(|_| "chorus.run: \"args\" must be a list of strings".to_owned())?,
                };
                self.link.send(&ClientMsg::Run {
                    doc: doc.clone(),
                    language: text_field("language"),
                    stdin: text_field("stdin"),
                    args,
                });
                Ok(json!({"requested": doc}))
            }
            "chorus.follow" => {
                self.follow = match arguments.first() {
                    None => None,
                    Some(value) => Some(
                        value
                            .as_str()
                            .ok_or("chorus.follow takes a participant's name")?
                            .to_owned(),
                    ),
                };
                Ok(json!({"following": self.follow}))
            }
            "chorus.stop" => {
                self.link.send(&ClientMsg::Stop {});
                Ok(json!({"requested": "stop"}))
            }
            other => Err(format!(
                "unknown command {other:?}; Chorus offers chorus.run, chorus.stop and chorus.follow"
            )),
        }
    }

    fn opened(
        &mut self,
        path: String,
        rev: u64,
        hub_text: String,
        created: bool,
        history: Option<Vec<LoggedOp>>,
        last_seq: Option<u64>,
    ) {
        let instance = self.instance.clone();
        let Some(uri) = self.by_path.get(&path).cloned() else {
            return;
        };
        let encoding = self.encoding;
        let honest = self.applied_is_honest;
        let Some(doc) = self.docs.get_mut(&uri) else {
            return;
        };
        let mut effects = Vec::new();
        let mut replaced = false;
        let state = std::mem::replace(
            &mut doc.state,
            DocState::Joining {
                seed: String::new(),
                text: Rope::new(),
                version: 0,
            },
        );
        doc.state = match state {
            DocState::Joining {
                seed,
                text,
                version,
            } => {
                if created || hub_text == seed {
                    // The hub holds what we sent: what the user typed since
                    // is an ordinary local edit on top of it.
                    let mut sync = DocSync::new(
                        Rope::from_str(&seed),
                        version,
                        encoding,
                        rev,
                        &seed,
                        &mut effects,
                    );
                    sync.set_applied_is_honest(honest);
                    let current = text.to_string();
                    let result = if current != seed {
                        sync.editor_changed(
                            version,
                            &[Change {
                                range: None,
                                text: current,
                            }],
                            &mut effects,
                        )
                    } else {
                        Ok(())
                    };
                    if let Err(err) = result {
                        error!(doc = %path, cause = %err, "cannot replay edits made while joining");
                    }
                    DocState::Live(Box::new(sync))
                } else {
                    replaced = text != hub_text.as_str();
                    let mut sync =
                        DocSync::new(text, version, encoding, rev, &hub_text, &mut effects);
                    sync.set_applied_is_honest(honest);
                    DocState::Live(Box::new(sync))
                }
            }
            DocState::Live(mut sync) => {
                let rejoining = std::mem::take(&mut doc.rejoining);
                if let (true, false, Some(history)) = (rejoining, created, history) {
                    // The hub kept every op since our revision: replay them.
                    let ours = sync.outstanding_seq();
                    let entries = history
                        .into_iter()
                        .map(|logged| {
                            let mine = logged.instance.as_deref() == Some(instance.as_str())
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
                    if let Err(err) = sync.catch_up(entries, &mut effects) {
                        error!(doc = %path, cause = %err, "cannot replay the hub's ops; taking its text");
                        sync.resync(rev, &hub_text, &mut effects);
                    }
                } else if rejoining && !created {
                    // The hub no longer has the ops since our revision:
                    // merge by text.
                    if let Err(err) = sync.reconnect(rev, &hub_text, last_seq, &mut effects) {
                        error!(doc = %path, cause = %err, "cannot merge after reconnecting; taking the hub's text");
                        sync.resync(rev, &hub_text, &mut effects);
                    }
                } else {
                    // A snapshot after an error, or a hub that lost the
                    // document and took ours as its seed.
                    sync.resync(rev, &hub_text, &mut effects);
                }
                DocState::Live(sync)
            }
        };
        if replaced {
            self.notifier.tell_user(
                MessageType::INFO,
                format!("Chorus: {path} is already shared in session {}; your buffer now shows the session's text.", self.link.session()),
            );
        }
        self.run_effects(&uri, &path, effects);
    }

    /// Runs `f` on a live document and carries out what it asks for. On a
    /// sync error the document is resynced from the hub.
    fn with_live(
        &mut self,
        path: &str,
        f: impl FnOnce(&mut DocSync, &mut Vec<Effect>) -> Result<(), SyncError>,
    ) {
        let Some(uri) = self.by_path.get(path).cloned() else {
            return;
        };
        let Some(Doc {
            state: DocState::Live(sync),
            ..
        }) = self.docs.get_mut(&uri)
        else {
            return;
        };
        let mut effects = Vec::new();
        if let Err(err) = f(sync, &mut effects) {
            error!(doc = %path, cause = %err, "document out of step with the hub; resyncing");
            return self.request_resync(&uri);
        }
        let path = path.to_owned();
        self.run_effects(&uri, &path, effects);
    }

    /// Asks the hub for its text again; the answer (`opened`) resyncs. A
    /// document still joining keeps the text it was opened with as its seed,
    /// so that what the user typed since stays a local edit on top of it.
    fn request_resync(&mut self, uri: &Uri) {
        let Some(doc) = self.docs.get_mut(uri) else {
            return;
        };
        if let DocState::Live(sync) = &doc.state {
            let text = sync.mirror().clone();
            doc.state = DocState::Joining {
                seed: text.to_string(),
                text,
                version: sync.version(),
            };
        }
        let DocState::Joining { seed, .. } = &doc.state else {
            return;
        };
        let msg = ClientMsg::Open {
            doc: doc.path.clone(),
            text: seed.clone(),
            since: None,
        };
        self.link.send(&msg);
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let audit = self.link.is_connected() && now.duration_since(self.last_audit) >= AUDIT_EVERY;
        if audit {
            self.last_audit = now;
        }
        let mut work = Vec::new();
        let mut checks = Vec::new();
        for (uri, doc) in &mut self.docs {
            if let DocState::Live(sync) = &mut doc.state {
                let mut effects = Vec::new();
                if let Err(err) = sync.tick(now, &mut effects) {
                    error!(doc = %doc.path, cause = %err, "resend failed");
                }
                if audit {
                    match sync.audit(&mut effects) {
                        Audit::Busy => {}
                        Audit::Clean { rev, hash } => checks.push((doc.path.clone(), rev, hash)),
                        Audit::Drifted { rev, hash } => {
                            error!(doc = %doc.path, rev, "the editor's text drifted from the session's; bringing it back");
                            checks.push((doc.path.clone(), rev, hash));
                        }
                    }
                }
                if !effects.is_empty() {
                    work.push((uri.clone(), doc.path.clone(), effects));
                }
            }
        }
        for (uri, path, effects) in work {
            self.run_effects(&uri, &path, effects);
        }
        for (doc, rev, hash) in checks {
            self.link.send(&ClientMsg::Checksum { doc, rev, hash });
        }
    }

    fn run_effects(&mut self, uri: &Uri, path: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::SendOp { rev, op, seq } => self.link.send(&ClientMsg::Op {
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
                } => self.apply_edit(uri.clone(), id, version, range, new_text),
            }
        }
    }

    fn apply_edit(
        &self,
        uri: Uri,
        id: u64,
        version: i32,
        range: (LinePos, LinePos),
        new_text: String,
    ) {
        let edit = WorkspaceEdit {
            document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                text_document: OptionalVersionedTextDocumentIdentifier {
                    uri: uri.clone(),
                    version: Some(version),
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
            let answer = tokio::time::timeout(
                APPLY_EDIT_TIMEOUT,
                client.send_request::<tower_lsp_server::ls_types::request::ApplyWorkspaceEdit>(
                    params,
                ),
            )
            .await;
            let (applied, reason) = match answer {
                Ok(Ok(response)) => (Some(response.applied), response.failure_reason),
                Ok(Err(err)) => (None, Some(err.to_string())),
                Err(_) => (None, Some("timed out".into())),
            };
            let _ = events.send(Event::EditDone {
                uri,
                id,
                applied,
                reason,
            });
        });
    }

    fn log(&self, message: String) {
        self.notifier.log(MessageType::INFO, message);
    }

    fn presence(&self, params: serde_json::Value) {
        self.notifier.custom(Custom::Presence, params);
    }

    fn cursor(&self, params: serde_json::Value) {
        self.notifier.custom(Custom::Cursor, params);
    }
}

/// Unique enough among one session's proxies: process id and start time.
fn new_instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{:x}", std::process::id(), nanos)
}

fn default_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "anonymous".into())
}
