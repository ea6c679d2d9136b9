//! The session actor: one task per session owns its documents, its
//! participants and the order of every edit in it.
//!
//! Connections reach it only through [`SessionHandle`]. The actor never
//! awaits a socket: each participant has a bounded outbound queue drained by
//! its own writer task, and a participant whose queue is full is dropped
//! (its proxy reconnects and resyncs) so that one slow reader cannot stall
//! everyone else.
//!
//! Layout: this file is the actor (joining, documents, edits, delivery);
//! `registry` finds or starts a session's actor; `runs` is the session's
//! one code run at a time; `terminal` its shared terminal; `workspace`
//! the session's file tree beyond its documents (`put`, `files`, the caps,
//! listed files); `moves` its renames and deletes, and where messages
//! naming an old path go (ADR 0005).

mod moves;
mod registry;
mod runs;
use runs::RunWish;
mod terminal;
mod workspace;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chorus_protocol::ot::WireOp;
use chorus_protocol::text::checksum;
use chorus_protocol::wire::{
    validate_doc_path, ClientMsg, ErrorCode, LoggedOp, Participant, Role, ServerMsg,
};
use chorus_sandbox::{Chunk, RunStatus, TerminalEvent};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, error, info, warn};

use self::moves::Redirects;
pub use self::registry::{Full, Registry};
use self::runs::ActiveRun;
use self::terminal::{Opened, SharedTerminal};
use self::workspace::Listed;
use crate::document::{Author, DocError, Document};
use crate::outbound::Outbound;
use crate::storage::{StorageError, Store, SNAPSHOT_EVERY};
use crate::HubConfig;

/// Selections beyond this many in one cursor message are dropped: a cursor
/// relay is presence, not a bulk channel.
const MAX_SELECTIONS: usize = 64;

/// A connection asking to take part in a session.
#[derive(Debug)]
pub struct JoinRequest {
    pub client_id: u64,
    pub name: String,
    pub editor: Option<String>,
    /// The proxy's stable id, logged with its ops.
    pub instance: Option<Arc<str>>,
    pub outbound: Outbound,
    /// Signalled when the session drops this participant, so that its
    /// connection closes even while its writer is stuck on a full socket.
    pub kick: Arc<Notify>,
    /// Signalled when the session sends this participant away with a
    /// reason (revoked, storage lost): the connection closes after sending
    /// what is queued.
    pub end: Arc<Notify>,
    pub role: Role,
}

/// What a connection can ask of its session.
#[derive(Debug)]
pub enum SessionCmd {
    Join(JoinRequest),
    Msg {
        client_id: u64,
        msg: ClientMsg,
    },
    Leave {
        client_id: u64,
    },
    /// Output of the session's run, from its run task.
    RunOutput {
        run_id: u64,
        chunk: Chunk,
    },
    RunFinished {
        run_id: u64,
        status: RunStatus,
    },
    /// The session's terminal started, or could not.
    TerminalOpened {
        terminal_id: u64,
        opened: Opened,
    },
    /// Output, a gap or the end of the session's terminal, from its pump.
    TerminalEvent {
        terminal_id: u64,
        event: TerminalEvent,
    },
    /// The session's tokens were revoked (`chorus session revoke`).
    Revoked,
    /// Another hub claimed the session (ADR 0009): stop serving it.
    Lost,
    /// The hub is shutting down: hand the session over.
    Drain,
}

#[derive(Clone)]
pub struct SessionHandle {
    tx: mpsc::Sender<SessionCmd>,
}

impl SessionHandle {
    /// Returns false when the session actor is gone (hub shutting down).
    pub async fn send(&self, cmd: SessionCmd) -> bool {
        self.tx.send(cmd).await.is_ok()
    }
}

struct ParticipantEntry {
    info: Participant,
    instance: Option<Arc<str>>,
    outbound: Outbound,
    kick: Arc<Notify>,
    end: Arc<Notify>,
    role: Role,
    docs: BTreeSet<String>,
    _counted: crate::metrics::Held,
}

struct SharedDoc {
    doc: Document,
    /// Participants that have this document open, who get its ops.
    subscribers: BTreeSet<u64>,
}

struct Session {
    id: String,
    config: HubConfig,
    participants: HashMap<u64, ParticipantEntry>,
    docs: HashMap<String, SharedDoc>,
    /// The files of the tree that are listed but not synced; never a path
    /// of `docs` (see `workspace`).
    listed: BTreeMap<String, Listed>,
    /// UTF-8 bytes of every document's text now, for the session cap: kept
    /// up to date by each op rather than summed at each put, which with
    /// thousands of documents would cost more than the put.
    synced_bytes: u64,
    /// Where the newest renames took their files, for messages that still
    /// name the old paths.
    redirects: Redirects,
    run: Option<ActiveRun>,
    terminal: Option<SharedTerminal>,
    /// Since when nobody has been in the session (while it has a terminal).
    orphaned_since: Option<tokio::time::Instant>,
    /// For run tasks to report back; weak so the session can still end.
    me: mpsc::WeakSender<SessionCmd>,
    /// Durable storage, when the hub keeps sessions.
    store: Option<Store>,
    /// The claim this actor serves under, on a database several hubs
    /// share (ADR 0009); released when the actor ends.
    epoch: Option<i64>,
    /// Where the actor unloads itself from when idle.
    registry: Registry,
}

/// Why a session actor stops.
enum Stop {
    /// Its storage failed: nothing more can be acknowledged durably.
    Storage(StorageError),
    Revoked,
    /// Another hub holds the session now (ADR 0009).
    Lost,
    /// The hub is shutting down; its claim is released already.
    Draining,
}

/// Ends a session actor that cannot serve: joins already queued get
/// `answer` and are sent away; the next join starts a new actor.
async fn turn_away(mut rx: mpsc::Receiver<SessionCmd>, answer: &ServerMsg) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        if let SessionCmd::Join(request) = cmd {
            let _ = request.outbound.try_send(Message::text(answer.to_json()));
            request.end.notify_one();
        }
    }
}

impl Session {
    /// Starts the actor of session `id` on a task of its own.
    fn spawn(
        id: &str,
        config: &HubConfig,
        registry: Registry,
        epoch: Option<i64>,
    ) -> SessionHandle {
        let (tx, rx) = mpsc::channel(1024);
        let actor = Session {
            id: id.to_owned(),
            config: config.clone(),
            participants: HashMap::new(),
            docs: HashMap::new(),
            listed: BTreeMap::new(),
            synced_bytes: 0,
            redirects: Redirects::default(),
            run: None,
            terminal: None,
            orphaned_since: None,
            me: tx.downgrade(),
            store: config.store.clone(),
            epoch,
            registry,
        };
        tokio::spawn(actor.run(rx));
        SessionHandle { tx }
    }

    /// Loads the session's stored documents, if the hub keeps any.
    async fn load(&mut self) -> Result<(), StorageError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        for stored in store.load_session(&self.id).await? {
            let mut doc = Document::restore(
                &stored.snapshot_text,
                stored.snapshot_rev,
                self.config.history_limit,
            );
            // Replayed into the history too, so that proxies that were
            // connected before a restart can catch up by ops.
            for logged in stored.log {
                if let Err(err) = doc.replay(logged.op, logged.author) {
                    error!(session = %self.id, doc = %stored.path, cause = %err, "stored op does not apply; document restored up to it");
                    break;
                }
            }
            info!(session = %self.id, doc = %stored.path, rev = doc.rev(), "document restored");
            self.synced_bytes += doc.text().len_bytes() as u64;
            self.docs.insert(
                stored.path,
                SharedDoc {
                    doc,
                    subscribers: BTreeSet::new(),
                },
            );
        }
        self.load_listed().await
    }

    async fn run(mut self, rx: mpsc::Receiver<SessionCmd>) {
        let _loaded = crate::metrics::session_loaded();
        let lost = self.serve(rx).await;
        // Whatever ended it, the claim goes (unless it is not ours any
        // more), so that the next hub need not wait for this one's lease.
        if let (Some(store), Some(epoch), false) = (&self.store, self.epoch, lost) {
            if let Err(err) = store.release(&self.id, epoch).await {
                warn!(session = %self.id, cause = %err, "could not release the session's claim; it lapses with this hub's lease");
            }
        }
    }

    /// Serves until the actor ends; true when it ended because another
    /// hub holds the session.
    async fn serve(&mut self, mut rx: mpsc::Receiver<SessionCmd>) -> bool {
        if let Err(err) = self.load().await {
            // Serving from memory would acknowledge edits that a restart
            // then loses: refuse, and let proxies retry.
            error!(session = %self.id, cause = %err, "cannot load the session; refusing joins until storage answers");
            let refusal = ServerMsg::error(
                ErrorCode::Unavailable,
                "the hub cannot load this session from its storage; retrying",
                None,
            );
            turn_away(rx, &refusal).await;
            return false;
        }
        loop {
            // With nobody in it and nothing running, a stored session
            // leaves memory after a while: everything it holds is in
            // storage (acknowledged means stored), and the next join loads
            // it again. Sessions kept only in memory stay.
            let idle = self.participants.is_empty()
                && self.run.is_none()
                && self.terminal.is_none()
                && self.store.is_some();
            let terminal_due = self.terminal_due();
            let cmd = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return false,
                },
                _ = tokio::time::sleep(self.config.unload_idle_after), if idle => {
                    if self.registry.unload_if_unused(&self.id, &self.me) {
                        info!(session = %self.id, "session unloaded from memory (idle)");
                        return false;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(terminal_due.unwrap_or_else(tokio::time::Instant::now)), if terminal_due.is_some() => {
                    self.terminal_tick();
                    continue;
                }
            };
            let stop = match cmd {
                SessionCmd::Join(request) => {
                    self.join(request);
                    None
                }
                SessionCmd::Msg { client_id, msg } => self.handle(client_id, msg).await.err(),
                SessionCmd::Leave { client_id } => {
                    self.leave(client_id);
                    None
                }
                SessionCmd::RunOutput { run_id, chunk } => {
                    self.run_output(run_id, chunk);
                    None
                }
                SessionCmd::RunFinished { run_id, status } => {
                    self.run_finished(run_id, status);
                    None
                }
                SessionCmd::TerminalOpened {
                    terminal_id,
                    opened,
                } => {
                    self.terminal_opened(terminal_id, opened);
                    None
                }
                SessionCmd::TerminalEvent { terminal_id, event } => {
                    self.terminal_event(terminal_id, event);
                    None
                }
                SessionCmd::Revoked => Some(Stop::Revoked),
                SessionCmd::Lost => Some(Stop::Lost),
                SessionCmd::Drain => {
                    // Released before anyone is told, so that the hub their
                    // proxies reach next can claim it at once.
                    if let (Some(store), Some(epoch)) = (&self.store, self.epoch.take()) {
                        if let Err(err) = store.release(&self.id, epoch).await {
                            warn!(session = %self.id, cause = %err, "could not release the session's claim; it lapses with this hub's lease");
                        }
                    }
                    Some(Stop::Draining)
                }
            };
            if let Some(stop) = stop {
                let lost = matches!(stop, Stop::Lost | Stop::Storage(StorageError::Fenced(_)));
                let farewell = self.stop(stop);
                turn_away(rx, &farewell).await;
                return lost;
            }
        }
    }

    /// Sends everyone away with the reason, and the actor ends. Whatever
    /// it holds in memory beyond storage goes with it: the next join loads
    /// the session again, and proxies re-send what was not acknowledged.
    fn stop(&mut self, why: Stop) -> ServerMsg {
        let (code, message) = match why {
            Stop::Revoked => {
                info!(session = %self.id, "session revoked; disconnecting everyone");
                (
                    ErrorCode::Unauthorized,
                    format!("session {:?} was revoked by its owner", self.id),
                )
            }
            Stop::Storage(StorageError::Fenced(why)) => {
                warn!(session = %self.id, cause = %why, "another hub claimed this session; sending everyone there");
                (
                    ErrorCode::Unavailable,
                    "another hub now serves this session; reconnecting".to_owned(),
                )
            }
            Stop::Lost => (
                ErrorCode::Unavailable,
                "another hub now serves this session; reconnecting".to_owned(),
            ),
            Stop::Draining => {
                info!(session = %self.id, "session handed over (hub shutting down)");
                (
                    ErrorCode::Unavailable,
                    "this hub is shutting down; reconnecting to another".to_owned(),
                )
            }
            Stop::Storage(err) => {
                error!(session = %self.id, cause = %err, "storage failed; disconnecting everyone so that nothing unstored is acknowledged");
                (
                    ErrorCode::Unavailable,
                    "the hub lost its storage; reconnecting".to_owned(),
                )
            }
        };
        self.cancel_run();
        self.end_terminal("the session ended".to_owned());
        let farewell = ServerMsg::error(code, message, None);
        for entry in self.participants.values() {
            let _ = entry.outbound.try_send(Message::text(farewell.to_json()));
            entry.end.notify_one();
        }
        self.participants.clear();
        farewell
    }

    fn join(&mut self, request: JoinRequest) {
        let JoinRequest {
            client_id,
            name,
            editor,
            instance,
            outbound,
            kick,
            end,
            role,
        } = request;
        let info = Participant {
            client_id,
            name,
            editor,
        };
        let mut participants: Vec<Participant> =
            self.participants.values().map(|p| p.info.clone()).collect();
        participants.sort_by_key(|p| p.client_id);
        let welcome = ServerMsg::Welcome {
            protocol: chorus_protocol::wire::PROTOCOL_VERSION,
            session: self.id.clone(),
            client_id,
            participants,
            role,
            workspace: Some(self.config.workspace),
            max_message_bytes: Some(self.config.max_message_bytes as u64),
        };
        info!(session = %self.id, client_id, name = %info.name, "participant joined");
        self.broadcast(
            &ServerMsg::Joined {
                participant: info.clone(),
            },
            None,
            Some(client_id),
        );
        self.participants.insert(
            client_id,
            ParticipantEntry {
                info,
                instance,
                outbound,
                kick,
                end,
                role,
                docs: BTreeSet::new(),
                _counted: crate::metrics::participant(),
            },
        );
        self.send(client_id, &welcome);
        self.orphaned_since = None;
        self.show_terminal_to(client_id);
    }

    fn leave(&mut self, client_id: u64) {
        let Some(entry) = self.participants.remove(&client_id) else {
            return;
        };
        for path in &entry.docs {
            if let Some(shared) = self.docs.get_mut(path) {
                shared.subscribers.remove(&client_id);
            }
        }
        self.terminal_left(client_id);
        if self.participants.is_empty() && self.terminal.is_some() {
            self.orphaned_since = Some(tokio::time::Instant::now());
        }
        info!(session = %self.id, client_id, name = %entry.info.name, "participant left");
        self.broadcast(
            &ServerMsg::Left {
                client_id,
                name: entry.info.name,
            },
            None,
            None,
        );
    }

    async fn handle(&mut self, client_id: u64, mut msg: ClientMsg) -> Result<(), Stop> {
        let Some(role) = self.participants.get(&client_id).map(|p| p.role) else {
            return Ok(()); // dropped as a slow consumer; its connection is closing
        };
        self.redirect(client_id, &mut msg);
        if role == Role::ReadOnly && self.refused_read_only(client_id, &msg) {
            return Ok(());
        }
        // What the shared terminal's copy of the files must follow.
        let changes_files = matches!(
            msg,
            ClientMsg::Op { .. }
                | ClientMsg::Open { .. }
                | ClientMsg::Put { .. }
                | ClientMsg::Rename { .. }
        );
        match msg {
            ClientMsg::Hello { .. } => self.send(
                client_id,
                &ServerMsg::error(
                    ErrorCode::AlreadyJoined,
                    "already joined this session",
                    None,
                ),
            ),
            ClientMsg::Open { doc, text, since } => self.open(client_id, doc, text, since).await?,
            ClientMsg::Close { doc } => {
                if let Some(entry) = self.participants.get_mut(&client_id) {
                    entry.docs.remove(&doc);
                }
                if let Some(shared) = self.docs.get_mut(&doc) {
                    shared.subscribers.remove(&client_id);
                }
            }
            ClientMsg::Op { doc, rev, op, seq } => self.op(client_id, doc, rev, op, seq).await?,
            ClientMsg::Cursor {
                doc,
                rev,
                mut selections,
            } => {
                if !self.is_open(client_id, &doc) {
                    self.unknown_doc(client_id, &doc);
                    return Ok(());
                }
                selections.truncate(MAX_SELECTIONS);
                let name = self.participants[&client_id].info.name.clone();
                let msg = ServerMsg::Cursor {
                    client_id,
                    name,
                    doc,
                    rev,
                    selections,
                };
                self.broadcast(&msg, None, Some(client_id));
            }
            ClientMsg::Ping { nonce } => self.send(client_id, &ServerMsg::Pong { nonce }),
            ClientMsg::Run {
                doc,
                language,
                stdin,
                stdin_eof,
                args,
                mode,
                command,
            } => self.start_run(
                client_id,
                doc,
                RunWish {
                    language,
                    // Older proxies' `stdin` was all the program got.
                    stdin_eof: stdin_eof.unwrap_or(stdin.is_some()),
                    stdin,
                    args,
                    mode,
                    command,
                },
            ),
            ClientMsg::Checksum { doc, rev, hash } => self.checksum(client_id, doc, rev, hash),
            ClientMsg::Stop {} => self.stop_run(client_id),
            ClientMsg::Input {
                text,
                eof,
                interrupt,
            } => self.run_input(client_id, text, eof, interrupt),
            ClientMsg::Put { path, content } => self.put(client_id, path, content).await?,
            ClientMsg::Files {} => self.files(client_id),
            ClientMsg::Rename { from, to } => self.rename(client_id, from, to).await?,
            ClientMsg::Delete { path } => self.delete(client_id, path).await?,
            ClientMsg::Terminal { cols, rows } => self.open_terminal(client_id, cols, rows),
            ClientMsg::TerminalInput { data } => self.terminal_input(client_id, data),
            ClientMsg::TerminalResize { cols, rows } => self.terminal_resize(client_id, cols, rows),
            ClientMsg::TerminalStop {} => self.stop_terminal(client_id),
        }
        if changes_files {
            self.terminal_files_changed();
        }
        Ok(())
    }

    /// Refuses what a read-only participant may not do; true if refused.
    /// An edit is answered with the document's text as well, so that the
    /// proxy puts the editor back as it was.
    fn refused_read_only(&mut self, client_id: u64, msg: &ClientMsg) -> bool {
        match msg {
            ClientMsg::Op { doc, .. } => {
                if !self.is_open(client_id, doc) {
                    return false; // answered as an unknown document
                }
                let message =
                    format!("you joined this session read-only, so your edit to {doc} was undone");
                self.refuse_and_resync(client_id, doc, ErrorCode::ReadOnly, message);
                true
            }
            ClientMsg::Open { doc, .. } if !self.docs.contains_key(doc) => {
                let message = format!(
                    "you joined this session read-only, so {doc} (not in the session) stays unshared"
                );
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, Some(doc)),
                );
                true
            }
            ClientMsg::Put { path, .. } => {
                let message =
                    format!("you joined this session read-only, so {path} stays unshared");
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, Some(path)),
                );
                true
            }
            ClientMsg::Rename { from: path, .. } | ClientMsg::Delete { path } => {
                let message = format!(
                    "you joined this session read-only, so you cannot rename or delete {path}"
                );
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, Some(path)),
                );
                true
            }
            ClientMsg::Run { doc, .. } => {
                let message = "you joined this session read-only, so you cannot start runs; you see everyone else's";
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, Some(doc)),
                );
                true
            }
            ClientMsg::Input { .. } => {
                let message =
                    "you joined this session read-only, so you cannot send input to runs; you see everyone else's";
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, None),
                );
                true
            }
            ClientMsg::Stop {} => {
                let message = "you joined this session read-only, so you cannot stop runs";
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, None),
                );
                true
            }
            ClientMsg::Terminal { .. } if self.terminal.is_none() => {
                let message = "you joined this session read-only, so you cannot open the shared terminal; you will see it when someone with edit rights does";
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, None),
                );
                true
            }
            ClientMsg::TerminalInput { .. } | ClientMsg::TerminalStop {} => {
                let message = "you joined this session read-only, so your keystrokes do not reach the shared terminal; you see its output";
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::ReadOnly, message, None),
                );
                true
            }
            _ => false,
        }
    }

    fn checksum(&mut self, client_id: u64, path: String, rev: u64, hash: String) {
        if !self.is_open(client_id, &path) {
            return self.unknown_doc(client_id, &path);
        }
        let Some(shared) = self.docs.get(&path) else {
            return;
        };
        // Only comparable at the same revision; a client behind will check
        // again later.
        if rev != shared.doc.rev() {
            return;
        }
        let ours = checksum(shared.doc.text());
        if ours == hash {
            return;
        }
        error!(session = %self.id, client_id, doc = %path, rev, theirs = %hash, %ours, "client text differs from the hub's; resyncing it");
        let message =
            format!("your text of {path} at revision {rev} differs from the hub's; resyncing");
        self.refuse_and_resync(client_id, &path, ErrorCode::ChecksumMismatch, message);
    }

    /// Answers `code` and then the document's text: after a refused op or
    /// a mismatch the client's view cannot be trusted, so it resyncs from
    /// the authoritative text.
    fn refuse_and_resync(&mut self, client_id: u64, path: &str, code: ErrorCode, message: String) {
        let Some(shared) = self.docs.get(path) else {
            return;
        };
        crate::metrics::resync(code);
        let instance = self
            .participants
            .get(&client_id)
            .and_then(|p| p.instance.clone());
        let snapshot = ServerMsg::Opened {
            doc: path.to_owned(),
            rev: shared.doc.rev(),
            text: shared.doc.text().to_string(),
            created: false,
            history: None,
            last_seq: instance.and_then(|i| shared.doc.last_seq(&i)),
        };
        self.send(client_id, &ServerMsg::error(code, message, Some(path)));
        self.send(client_id, &snapshot);
    }

    fn is_open(&self, client_id: u64, doc: &str) -> bool {
        self.participants
            .get(&client_id)
            .is_some_and(|p| p.docs.contains(doc))
    }

    fn unknown_doc(&mut self, client_id: u64, doc: &str) {
        let message =
            format!("document {doc:?} is not open on this connection; send \"open\" first");
        self.send(
            client_id,
            &ServerMsg::error(ErrorCode::UnknownDocument, message, Some(doc)),
        );
    }

    async fn open(
        &mut self,
        client_id: u64,
        path: String,
        text: String,
        since: Option<u64>,
    ) -> Result<(), Stop> {
        if let Err(message) = validate_doc_path(&path) {
            self.send(
                client_id,
                &ServerMsg::error(ErrorCode::BadPath, message, Some(&path)),
            );
            return Ok(());
        }
        let created = !self.docs.contains_key(&path);
        if created {
            if self.tree_is_full(&path) {
                self.too_many_files(client_id, &path);
                return Ok(());
            }
            // Stored before anyone is told it exists.
            self.create_doc(&path, &text).await?;
        }
        let instance = self
            .participants
            .get(&client_id)
            .and_then(|p| p.instance.clone());
        let Some(shared) = self.docs.get_mut(&path) else {
            return Ok(()); // cannot be: there already, or just created
        };
        shared.subscribers.insert(client_id);
        let reply = ServerMsg::Opened {
            doc: path.clone(),
            rev: shared.doc.rev(),
            text: if created {
                text
            } else {
                shared.doc.text().to_string()
            },
            created,
            // Past a frame's worth of ops, the text is cheaper to send and
            // the proxy merges by it.
            history: since.filter(|_| !created).and_then(|since| {
                let ops = shared.doc.since(since)?;
                let bytes: usize = ops
                    .iter()
                    .map(|(_, op, _)| crate::document::wire_size(op))
                    .sum();
                (bytes <= self.config.max_message_bytes)
                    .then_some(ops)
                    .map(|ops| {
                        ops.into_iter()
                            .map(|(rev, op, author)| LoggedOp {
                                rev,
                                op: WireOp(op.clone()),
                                instance: author.map(|a| a.instance.to_string()),
                                seq: author.map(|a| a.seq),
                            })
                            .collect()
                    })
            }),
            last_seq: instance.and_then(|i| shared.doc.last_seq(&i)),
        };
        debug!(session = %self.id, client_id, doc = %path, created, "document opened");
        if let Some(entry) = self.participants.get_mut(&client_id) {
            entry.docs.insert(path.clone());
        }
        self.send(client_id, &reply);
        if created {
            self.file_added(client_id, &path);
        }
        Ok(())
    }

    async fn op(
        &mut self,
        client_id: u64,
        path: String,
        rev: u64,
        op: WireOp,
        seq: Option<u64>,
    ) -> Result<(), Stop> {
        let started = std::time::Instant::now();
        if !self.is_open(client_id, &path) {
            self.unknown_doc(client_id, &path);
            return Ok(());
        }
        let author = self.participants[&client_id]
            .instance
            .clone()
            .zip(seq)
            .map(|(instance, seq)| Author { instance, seq });
        let Some(shared) = self.docs.get_mut(&path) else {
            self.unknown_doc(client_id, &path);
            return Ok(());
        };
        if op.0.target_len() > self.config.max_document_chars {
            let message = format!(
                "the document would grow to {} characters; this hub allows {}",
                op.0.target_len(),
                self.config.max_document_chars
            );
            self.refuse_and_resync(client_id, &path, ErrorCode::TooLarge, message);
            return Ok(());
        }
        let bytes_before = shared.doc.text().len_bytes() as u64;
        let max_chars = self.config.max_document_chars;
        let applied = match shared
            .doc
            .apply_within(rev, op.0, author.clone(), max_chars)
        {
            Ok(applied) => applied,
            Err(err) => {
                warn!(session = %self.id, client_id, doc = %path, cause = %err, "op refused");
                let code = match err {
                    // Both are cured the same way: the proxy merges by text.
                    DocError::StaleRevision { .. } | DocError::TooCostly { .. } => {
                        ErrorCode::StaleRevision
                    }
                    DocError::TooLarge { .. } => ErrorCode::TooLarge,
                    _ => ErrorCode::InvalidOp,
                };
                self.refuse_and_resync(client_id, &path, code, err.to_string());
                return Ok(());
            }
        };
        let new_rev = shared.doc.rev();
        self.synced_bytes =
            (self.synced_bytes + shared.doc.text().len_bytes() as u64).saturating_sub(bytes_before);
        // Logged before anyone hears of it: acknowledged means durable. If
        // storing fails, the actor stops (Stop::Storage) and the op, applied
        // only in memory, goes with it; its sender still has it unacked
        // and sends it again after reconnecting.
        if let Some(store) = &self.store {
            store
                .append_op(&self.id, &path, new_rev, &applied, author.as_ref())
                .await
                .map_err(Stop::Storage)?;
            if new_rev % SNAPSHOT_EVERY == 0 {
                let text = shared.doc.text().to_string();
                store
                    .snapshot(&self.id, &path, new_rev, &text)
                    .await
                    .map_err(Stop::Storage)?;
            }
        }
        let remote = ServerMsg::Remote {
            doc: path.clone(),
            rev: new_rev,
            op: WireOp(applied),
            client_id,
        };
        crate::metrics::op_applied(started);
        self.send(
            client_id,
            &ServerMsg::Ack {
                doc: path.clone(),
                rev: new_rev,
            },
        );
        self.broadcast(&remote, Some(&path), Some(client_id));
        Ok(())
    }

    fn send(&mut self, client_id: u64, msg: &ServerMsg) {
        crate::metrics::count_refusal(msg);
        let frame = Message::text(msg.to_json());
        self.deliver(client_id, frame);
    }

    /// Sends `msg` to everyone (or everyone with `doc` open) but `except`.
    /// Serialized once; the frame's bytes are shared between queues.
    fn broadcast(&mut self, msg: &ServerMsg, doc: Option<&str>, except: Option<u64>) {
        let frame = Message::text(msg.to_json());
        let targets: Vec<u64> = match doc {
            Some(path) => self
                .docs
                .get(path)
                .map(|d| d.subscribers.iter().copied().collect())
                .unwrap_or_default(),
            None => self.participants.keys().copied().collect(),
        };
        for client_id in targets {
            if Some(client_id) != except {
                self.deliver(client_id, frame.clone());
            }
        }
    }

    fn deliver(&mut self, client_id: u64, frame: Message) {
        let Some(entry) = self.participants.get(&client_id) else {
            return;
        };
        if entry.outbound.try_send(frame).is_err() {
            warn!(session = %self.id, client_id, "outbound queue full (frames or bytes) or closed; dropping participant");
            crate::metrics::slow_consumer(&entry.outbound);
            entry.kick.notify_one();
            self.leave(client_id);
        }
    }
}
