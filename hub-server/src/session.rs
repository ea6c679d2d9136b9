//! The session actor: one task per session owns its documents, its
//! participants and the order of every edit in it.
//!
//! Connections reach it only through [`SessionHandle`]. The actor never
//! awaits a socket: each participant has a bounded outbound queue drained by
//! its own writer task, and a participant whose queue is full is dropped
//! (its proxy reconnects and resyncs) so that one slow reader cannot stall
//! everyone else.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chorus_protocol::ot::WireOp;
use chorus_protocol::text::checksum;
use chorus_protocol::wire::{
    validate_doc_path, ClientMsg, ErrorCode, LoggedOp, OutputStream, Participant, ServerMsg,
};
use chorus_sandbox::{Chunk, RunRequest, RunStatus, Stream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, error, info, warn};

use crate::document::{Author, DocError, Document};
use crate::storage::{Store, SNAPSHOT_EVERY};
use crate::{HubConfig, Runner};

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
    pub outbound: mpsc::Sender<Message>,
    /// Signalled when the session drops this participant, so that its
    /// connection closes even while its writer is stuck on a full socket.
    pub kick: Arc<Notify>,
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

/// All sessions on this hub, created on first join.
#[derive(Clone, Default)]
pub struct Registry {
    sessions: Arc<Mutex<HashMap<String, SessionHandle>>>,
}

impl Registry {
    pub fn get_or_create(&self, id: &str, config: &HubConfig) -> SessionHandle {
        // Held only for a map lookup; never across an await.
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .entry(id.to_owned())
            .or_insert_with(|| {
                info!(session = %id, "session created");
                let (tx, rx) = mpsc::channel(1024);
                let actor = Session {
                    id: id.to_owned(),
                    config: config.clone(),
                    participants: HashMap::new(),
                    docs: HashMap::new(),
                    run: None,
                    me: tx.downgrade(),
                    store: None,
                };
                tokio::spawn(actor.run(rx));
                SessionHandle { tx }
            })
            .clone()
    }

    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct ParticipantEntry {
    info: Participant,
    instance: Option<Arc<str>>,
    outbound: mpsc::Sender<Message>,
    kick: Arc<Notify>,
    docs: BTreeSet<String>,
}

struct SharedDoc {
    doc: Document,
    /// Participants that have this document open, who get its ops.
    subscribers: BTreeSet<u64>,
}

/// The session's one run at a time.
struct ActiveRun {
    run_id: u64,
    /// Dropping or firing it stops the container.
    cancel: Option<oneshot::Sender<()>>,
    next_seq: u64,
}

struct Session {
    id: String,
    config: HubConfig,
    participants: HashMap<u64, ParticipantEntry>,
    docs: HashMap<String, SharedDoc>,
    run: Option<ActiveRun>,
    /// For run tasks to report back; weak so the session can still end.
    me: mpsc::WeakSender<SessionCmd>,
    /// Durable storage, when the hub has `--data`.
    store: Option<Store>,
}

static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// Loads the session's stored documents, if the hub keeps any.
    fn load(&mut self) {
        let Some(dir) = self.config.data_dir.clone() else {
            return;
        };
        let loaded = Store::open(&dir).and_then(|store| {
            let docs = store.load_session(&self.id)?;
            Ok((store, docs))
        });
        match loaded {
            Ok((store, docs)) => {
                for stored in docs {
                    let mut doc = Document::restore(
                        &stored.snapshot_text,
                        stored.snapshot_rev,
                        self.config.history_limit,
                    );
                    // Replayed into the history too, so that proxies that
                    // were connected before a restart can catch up by ops.
                    for logged in stored.log {
                        if let Err(err) = doc.replay(logged.op, logged.author) {
                            error!(session = %self.id, doc = %stored.path, cause = %err, "stored op does not apply; document restored up to it");
                            break;
                        }
                    }
                    info!(session = %self.id, doc = %stored.path, rev = doc.rev(), "document restored");
                    self.docs.insert(
                        stored.path,
                        SharedDoc {
                            doc,
                            subscribers: BTreeSet::new(),
                        },
                    );
                }
                self.store = Some(store);
            }
            Err(err) => {
                error!(session = %self.id, cause = %err, "cannot load the session from storage; it is kept in memory only");
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<SessionCmd>) {
        self.load();
        while let Some(cmd) = rx.recv().await {
            match cmd {
                SessionCmd::Join(request) => self.join(request),
                SessionCmd::Msg { client_id, msg } => self.handle(client_id, msg),
                SessionCmd::Leave { client_id } => self.leave(client_id),
                SessionCmd::RunOutput { run_id, chunk } => self.run_output(run_id, chunk),
                SessionCmd::RunFinished { run_id, status } => self.run_finished(run_id, status),
            }
        }
    }

    fn join(&mut self, request: JoinRequest) {
        let JoinRequest {
            client_id,
            name,
            editor,
            instance,
            outbound,
            kick,
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
                docs: BTreeSet::new(),
            },
        );
        self.send(client_id, &welcome);
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

    fn handle(&mut self, client_id: u64, msg: ClientMsg) {
        if !self.participants.contains_key(&client_id) {
            return; // dropped as a slow consumer; its connection is closing
        }
        match msg {
            ClientMsg::Hello { .. } => self.send(
                client_id,
                &ServerMsg::error(
                    ErrorCode::AlreadyJoined,
                    "already joined this session",
                    None,
                ),
            ),
            ClientMsg::Open { doc, text, since } => self.open(client_id, doc, text, since),
            ClientMsg::Close { doc } => {
                if let Some(entry) = self.participants.get_mut(&client_id) {
                    entry.docs.remove(&doc);
                }
                if let Some(shared) = self.docs.get_mut(&doc) {
                    shared.subscribers.remove(&client_id);
                }
            }
            ClientMsg::Op { doc, rev, op, seq } => self.op(client_id, doc, rev, op, seq),
            ClientMsg::Cursor {
                doc,
                rev,
                mut selections,
            } => {
                if !self.is_open(client_id, &doc) {
                    return self.unknown_doc(client_id, &doc);
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
                args,
            } => self.start_run(client_id, doc, language, stdin, args),
            ClientMsg::Checksum { doc, rev, hash } => self.checksum(client_id, doc, rev, hash),
            ClientMsg::Stop {} => match self.run.as_mut() {
                Some(run) => {
                    info!(session = %self.id, client_id, run_id = run.run_id, "run stopped by participant");
                    if let Some(cancel) = run.cancel.take() {
                        let _ = cancel.send(());
                    }
                }
                None => self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::NoRun, "no run is going in this session", None),
                ),
            },
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
        let snapshot = ServerMsg::Opened {
            doc: path.to_owned(),
            rev: shared.doc.rev(),
            text: shared.doc.text().to_string(),
            created: false,
            history: None,
        };
        self.send(client_id, &ServerMsg::error(code, message, Some(path)));
        self.send(client_id, &snapshot);
    }

    fn start_run(
        &mut self,
        client_id: u64,
        doc: String,
        language: Option<String>,
        stdin: Option<String>,
        args: Vec<String>,
    ) {
        let executor = match &self.config.runner {
            Runner::Enabled(executor) => executor.clone(),
            Runner::Disabled(reason) => {
                let message = format!("this hub cannot run code: {reason}");
                return self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::RunsDisabled, message, Some(&doc)),
                );
            }
        };
        if let Some(run) = &self.run {
            let message = format!(
                "run {} is still going in this session; stop it first (chorus.stop)",
                run.run_id
            );
            return self.send(
                client_id,
                &ServerMsg::error(ErrorCode::RunBusy, message, Some(&doc)),
            );
        }
        if !self.docs.contains_key(&doc) {
            return self.unknown_doc(client_id, &doc);
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        // The hub's authoritative text of every document, never the
        // requester's buffer.
        let files = self
            .docs
            .iter()
            .map(|(path, shared)| (path.clone(), shared.doc.text().to_string()))
            .collect();
        let request = RunRequest {
            main: doc.clone(),
            files,
            language,
            stdin,
            args,
        };
        let run_id = NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = oneshot::channel();
        self.run = Some(ActiveRun {
            run_id,
            cancel: Some(cancel),
            next_seq: 0,
        });
        let name = self.participants[&client_id].info.name.clone();
        info!(session = %self.id, client_id, run_id, doc = %doc, "run started");
        self.broadcast(
            &ServerMsg::RunStarted {
                run_id,
                client_id,
                name,
                doc,
            },
            None,
            None,
        );
        tokio::spawn(async move {
            let (output, mut chunks) = mpsc::channel(64);
            let run = executor.run(request, output, cancelled);
            tokio::pin!(run);
            let status = loop {
                tokio::select! {
                    chunk = chunks.recv() => if let Some(chunk) = chunk {
                        if me.send(SessionCmd::RunOutput { run_id, chunk }).await.is_err() {
                            return;
                        }
                    },
                    status = &mut run => break status,
                }
            };
            // Output produced just before the end is still queued.
            while let Ok(chunk) = chunks.try_recv() {
                if me
                    .send(SessionCmd::RunOutput { run_id, chunk })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = me.send(SessionCmd::RunFinished { run_id, status }).await;
        });
    }

    fn run_output(&mut self, run_id: u64, chunk: Chunk) {
        let Some(run) = self.run.as_mut().filter(|r| r.run_id == run_id) else {
            return;
        };
        let seq = run.next_seq;
        run.next_seq += 1;
        let stream = match chunk.stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        };
        self.broadcast(
            &ServerMsg::RunOutput {
                run_id,
                seq,
                stream,
                data: chunk.data,
            },
            None,
            None,
        );
    }

    fn run_finished(&mut self, run_id: u64, status: RunStatus) {
        if self.run.as_ref().is_none_or(|r| r.run_id != run_id) {
            return;
        }
        self.run = None;
        info!(session = %self.id, run_id, ?status, "run finished");
        self.broadcast(
            &ServerMsg::RunFinished {
                run_id,
                result: status,
            },
            None,
            None,
        );
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

    fn open(&mut self, client_id: u64, path: String, text: String, since: Option<u64>) {
        if let Err(message) = validate_doc_path(&path) {
            return self.send(
                client_id,
                &ServerMsg::error(ErrorCode::BadPath, message, Some(&path)),
            );
        }
        let created = !self.docs.contains_key(&path);
        let history_limit = self.config.history_limit;
        let shared = self.docs.entry(path.clone()).or_insert_with(|| SharedDoc {
            doc: Document::new(&text, history_limit),
            subscribers: BTreeSet::new(),
        });
        shared.subscribers.insert(client_id);
        if created {
            if let Some(store) = &self.store {
                if let Err(err) = store.create_doc(&self.id, &path, &text) {
                    error!(session = %self.id, doc = %path, cause = %err, "cannot store new document");
                }
            }
        }
        let reply = ServerMsg::Opened {
            doc: path.clone(),
            rev: shared.doc.rev(),
            text: if created {
                text
            } else {
                shared.doc.text().to_string()
            },
            created,
            history: since.filter(|_| !created).and_then(|since| {
                shared.doc.since(since).map(|ops| {
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
        };
        debug!(session = %self.id, client_id, doc = %path, created, "document opened");
        if let Some(entry) = self.participants.get_mut(&client_id) {
            entry.docs.insert(path);
        }
        self.send(client_id, &reply);
    }

    fn op(&mut self, client_id: u64, path: String, rev: u64, op: WireOp, seq: Option<u64>) {
        if !self.is_open(client_id, &path) {
            return self.unknown_doc(client_id, &path);
        }
        let author = self.participants[&client_id]
            .instance
            .clone()
            .zip(seq)
            .map(|(instance, seq)| Author { instance, seq });
        let Some(shared) = self.docs.get_mut(&path) else {
            return self.unknown_doc(client_id, &path);
        };
        if op.0.target_len() > self.config.max_document_chars {
            let message = format!(
                "the document would grow to {} characters; this hub allows {}",
                op.0.target_len(),
                self.config.max_document_chars
            );
            return self.refuse_and_resync(client_id, &path, ErrorCode::TooLarge, message);
        }
        match shared.doc.apply(rev, op.0, author.clone()) {
            Ok(applied) => {
                let new_rev = shared.doc.rev();
                // Logged before the ack: acknowledged means durable.
                if let Some(store) = &mut self.store {
                    let stored = store
                        .append_op(&self.id, &path, new_rev, &applied, author.as_ref())
                        .and_then(|()| {
                            if new_rev % SNAPSHOT_EVERY == 0 {
                                store.snapshot(
                                    &self.id,
                                    &path,
                                    new_rev,
                                    &shared.doc.text().to_string(),
                                )
                            } else {
                                Ok(())
                            }
                        });
                    if let Err(err) = stored {
                        error!(session = %self.id, doc = %path, rev = new_rev, cause = %err, "cannot store op");
                    }
                }
                let remote = ServerMsg::Remote {
                    doc: path.clone(),
                    rev: new_rev,
                    op: WireOp(applied),
                    client_id,
                };
                self.send(
                    client_id,
                    &ServerMsg::Ack {
                        doc: path.clone(),
                        rev: new_rev,
                    },
                );
                self.broadcast(&remote, Some(&path), Some(client_id));
            }
            Err(err) => {
                warn!(session = %self.id, client_id, doc = %path, cause = %err, "op refused");
                let code = match err {
                    DocError::StaleRevision { .. } => ErrorCode::StaleRevision,
                    _ => ErrorCode::InvalidOp,
                };
                self.refuse_and_resync(client_id, &path, code, err.to_string());
            }
        }
    }

    fn send(&mut self, client_id: u64, msg: &ServerMsg) {
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
            warn!(session = %self.id, client_id, "outbound queue full or closed; dropping participant");
            entry.kick.notify_one();
            self.leave(client_id);
        }
    }
}
