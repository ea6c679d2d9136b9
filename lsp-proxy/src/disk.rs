//! The session's files on disk: with `syncFiles` (or once this proxy
//! published the folder with `chorus.share`) the session's text files that
//! the editor does not have open are written into the workspace folder and
//! kept in step both ways while the session lasts: others' edits are
//! written, and what other programs change on disk (a formatter, `git
//! checkout`, `mv` in a terminal) is sent to the session (ADR 0007).
//!
//! ```text
//!  welcome ──► files{} ──► files{entries} ──► open{doc} per text file
//!  opened{text} ──► write   remote{op} ──► apply ──► write (≤ every 100 ms)
//!  editor didOpen ──► close{doc}; the document is the editor's (documents.rs)
//!  editor didClose ──► open{doc} again; the disk is ours
//!  watcher ──► scan (writer thread) ──► changed: merged, sent as ops
//!                                       appeared: put    vanished: delete
//!                                       moved: rename
//! ```
//!
//! Each file we keep has a [`DocSync`] like an editor's buffer, and the
//! disk is its editor: one that applies every edit the moment it is sent
//! (the file is written from the sync's mirror), so the ordering,
//! acknowledgement, reconnection and merging of `sync.rs` and
//! `documents.rs` serve it unchanged.
//!
//! Invariants:
//! * A path is the editor's or ours, never both: [`DiskSync::editor_opened`]
//!   drops our subscription before `documents.rs` sends its own `open`,
//!   and the writer neither writes nor reads a path the editor has open.
//! * Nothing is lost on disk: a file that does not hold what we last wrote
//!   or read there was changed by another program. While we watch, that
//!   change is merged into the session (transformed past what the session
//!   did meanwhile) before the file is written again; a file we never
//!   knew (a first contact) is copied to `.chorus/backup/<path>` before it
//!   is replaced, and the user is told once which files were.
//! * Our own writes are never sent back: the writer recognises them by
//!   content (the file holds what it wrote).
//! * What the watcher saw is looked at only while the hub listens and the
//!   tree's listing is fresh (after each welcome), and not while a
//!   document of ours is rejoining: an op sent before a rejoin's answer
//!   would be counted twice.
//! * Writes are atomic, never outside the root: no `..`, no symbolic link
//!   on the way, nothing under `.git/` or `.chorus/` (`disk/writer.rs`).
//!   They happen on one writer thread, in order; the loop never waits for
//!   the disk.
//! * Others' renames and deletes (ADR 0005) reach the files we keep the
//!   same way, in order with the writes: a rename moves the file (a file
//!   already at the new path copied to the backup first); a delete moves
//!   the file to `.chorus/backup/<path>` rather than deleting it, since the
//!   session keeps nothing of a deleted file and the local copy may hold
//!   what someone wants back. Folders left empty are removed.

mod watcher;
mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_protocol::ot::{apply_to_rope, diff, transform, OpError, WireOp};
use chorus_protocol::text::Encoding;
use chorus_protocol::wire::{
    ClientMsg, ErrorCode, FileEntry, NotSynced, PutContent, WorkspaceLimits,
};
use ropey::Rope;
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::MessageType;
use tracing::{debug, error, info, warn};

use crate::core::Event;
use crate::documents::{merge, op_numbers, Opened};
use crate::hub_link::Link;
use crate::moves::{at_or_under, moved_path};
use crate::notifier::Notifier;
use crate::sync::{Change, DocSync, Effect, SyncError};
use crate::workspace::CHORUS_DIR;
pub use watcher::Touched;
use writer::{safe_target, Job, Scan};
pub use writer::{Found, Written};

/// Files asked for (`open` sent, `opened` due) at once, at most: the hub
/// drops a connection whose outbound queue fills (4096 frames), and a big
/// tree's answers all at once would fill it.
const OPENS_IN_FLIGHT: usize = 32;

/// New files put and not yet answered, at most, and their bytes: they go
/// over the editing link (a file watcher's burst is a few files, not a
/// project), so a keystroke waits behind at most this much.
const PUTS_IN_FLIGHT: usize = 8;
const PUT_BYTES_IN_FLIGHT: u64 = 1 << 20;

/// How long remote edits to a file gather before it is written: typing
/// elsewhere reaches the disk within this, without a write per keystroke.
pub(crate) const WRITE_EVERY: Duration = Duration::from_millis(100);

/// How positions are counted between a file's sync and the disk, its
/// editor: characters, as the ropes count them.
const DISK_ENCODING: Encoding = Encoding::Utf32;

/// A change found on disk while its document could not take it (not yet
/// joined, or rejoining): merged once it can.
struct HeldChange {
    /// What we knew the file held before it changed.
    base: String,
    /// What it holds now.
    found: String,
}

enum DiskState {
    /// A new file found on disk, `put` and not yet answered.
    Putting,
    /// `open` sent; its `opened` is due.
    Joining,
    /// In step with the hub.
    Live(Box<DocSync>),
    /// Offered to the hub again after an outage: its answer is merged.
    Rejoining(Box<DocSync>),
}

/// A text file of the session we keep on disk.
struct DiskDoc {
    state: DiskState,
    /// Changed since last written.
    dirty: bool,
    held: Option<HeldChange>,
    /// The session's text when we joined, until the file is first
    /// written: the base of a change the folder's own copy had meanwhile
    /// ([`Found::Edited`]).
    joined_text: Option<String>,
}

impl DiskDoc {
    fn new(state: DiskState) -> DiskDoc {
        DiskDoc {
            state,
            dirty: false,
            held: None,
            joined_text: None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut DocSync> {
        match &mut self.state {
            DiskState::Live(sync) => Some(sync),
            _ => None,
        }
    }

    /// Keeps a change until the document can take it: the first base, the
    /// latest text.
    fn hold(&mut self, base: String, found: String) {
        match &mut self.held {
            Some(held) => held.found = found,
            None => self.held = Some(HeldChange { base, found }),
        }
    }
}

/// A change to the session's tree the disk made, for `core.rs` to send
/// (it keeps our renames and deletes in flight, `moves.rs`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TreeChange {
    Rename { from: String, to: String },
    Delete { path: String },
}

/// New files on their way to the session.
#[derive(Default)]
struct Puts {
    queue: VecDeque<(String, PutContent)>,
    /// Sent, unanswered, oldest first: the hub answers in order.
    in_flight: VecDeque<(String, PutContent)>,
    /// Put, then gone from disk before the hub answered: deleted once it
    /// has.
    vanished: HashSet<String>,
}

fn put_bytes(content: &PutContent) -> u64 {
    match content {
        PutContent::Text { text } => text.len() as u64,
        PutContent::Binary { .. } | PutContent::TooLarge { .. } => 0,
    }
}

pub(crate) struct DiskSync {
    /// `syncFiles`, from the settings, or turned on by a share.
    enabled: bool,
    /// The workspace folder, canonical; nothing is written without one.
    root: Option<PathBuf>,
    /// The session's files as last listed, by path (a document's when
    /// `not_synced` is `None`).
    session_files: HashMap<String, FileEntry>,
    /// The files we follow, by path.
    docs: HashMap<String, DiskDoc>,
    /// Files to follow once fewer than [`OPENS_IN_FLIGHT`] are joining.
    to_follow: VecDeque<String>,
    /// Paths the editor has open: the writer leaves them alone.
    editor_open: Arc<Mutex<HashSet<String>>>,
    /// To the writer thread; started with the first job.
    writer: Option<std::sync::mpsc::Sender<Job>>,
    /// Writes sent and not yet reported.
    writes_pending: usize,
    /// Files replaced since the user was last told.
    replaced: Vec<String>,
    /// A [`Event::DiskFlush`] is on its way.
    flush_scheduled: bool,
    /// Whether the user heard which files are only listed (binary, too
    /// large), or (with syncFiles off) that files differ: once each.
    told_listed: bool,
    told_off: Arc<AtomicBool>,
    /// The session's caps, from the welcome: what a new file's `put` says.
    limits: Option<WorkspaceLimits>,
    /// The listing asked for at the last welcome has come: what the
    /// watcher saw can be compared with the session's tree.
    listed: bool,
    /// The folder's watch, once started; `None` also when it could not be.
    watcher: Option<watcher::Watcher>,
    /// Whether a watch was tried (it is, once).
    watch_tried: bool,
    /// What the watcher saw, not yet looked at: it waits while the hub
    /// does not listen (see the module's invariants).
    touched: Touched,
    puts: Puts,
    /// Changes to files of the session made on disk before we followed
    /// them, with the hash of what they held before: see
    /// [`Found::Edited`].
    edits_before_followed: HashMap<String, (u64, String)>,
    /// Whether the user heard that a new file was refused.
    told_put_refused: bool,
    events: mpsc::UnboundedSender<Event>,
    notifier: Notifier,
}

impl DiskSync {
    pub(crate) fn new(events: mpsc::UnboundedSender<Event>, notifier: Notifier) -> Self {
        DiskSync {
            enabled: false,
            root: None,
            session_files: HashMap::new(),
            docs: HashMap::new(),
            to_follow: VecDeque::new(),
            editor_open: Default::default(),
            writer: None,
            writes_pending: 0,
            replaced: Vec::new(),
            flush_scheduled: false,
            told_listed: false,
            told_off: Default::default(),
            limits: None,
            listed: false,
            watcher: None,
            watch_tried: false,
            touched: Touched::default(),
            puts: Puts::default(),
            edits_before_followed: HashMap::new(),
            told_put_refused: false,
            events,
            notifier,
        }
    }

    pub(crate) fn configure(&mut self, root: Option<PathBuf>, enabled: bool) {
        self.root = root.map(|root| root.canonicalize().unwrap_or(root));
        self.enabled = enabled && self.root.is_some();
    }

    /// This proxy published the folder (`chorus.share`): from now on the
    /// disk follows the session and the session follows the disk, as with
    /// `syncFiles` (a publisher whose later changes on disk did not reach
    /// the session would soon share a stale copy).
    pub(crate) fn shared(&mut self, link: &Link) {
        if self.enabled || self.root.is_none() {
            return;
        }
        info!("the folder was shared: its files are kept in step from now on");
        self.enabled = true;
        if link.is_connected() {
            self.listed = false;
            link.send(&ClientMsg::Files {});
        }
    }

    /// Whether `path` is one of ours (its hub messages come here).
    pub(crate) fn owns(&self, path: &str) -> bool {
        self.docs.contains_key(path)
    }

    /// The hub (re)welcomed us: our subscriptions ended with the last
    /// connection. Live files rejoin once the tree's listing says they are
    /// still the session's; files still joining are asked for again.
    /// Returns whether we asked for the listing (its answer is ours).
    pub(crate) fn welcomed(&mut self, workspace: Option<WorkspaceLimits>, link: &Link) -> bool {
        self.limits = workspace;
        self.listed = false;
        self.to_follow.clear();
        self.docs
            .retain(|_, doc| !matches!(doc.state, DiskState::Joining));
        for doc in self.docs.values_mut() {
            let state = std::mem::replace(&mut doc.state, DiskState::Putting);
            doc.state = match state {
                DiskState::Live(sync) | DiskState::Rejoining(sync) => DiskState::Rejoining(sync),
                other => other,
            };
        }
        // Puts unanswered went with the connection: sent again (a second
        // put of a file the hub stored is answered `created: false`).
        while let Some(put) = self.puts.in_flight.pop_back() {
            self.puts.queue.push_front(put);
        }
        let ask = workspace.is_some() && self.root.is_some();
        if ask {
            link.send(&ClientMsg::Files {});
        }
        ask
    }

    /// The session's whole tree.
    pub(crate) fn files(&mut self, entries: Vec<FileEntry>, link: &Link) {
        self.session_files = entries
            .into_iter()
            .map(|entry| (entry.path.clone(), entry))
            .collect();
        self.listed = true;
        if !self.enabled {
            self.check_local_copies(self.session_files.values().cloned().collect());
            return;
        }
        let listed: Vec<&FileEntry> = self
            .session_files
            .values()
            .filter(|e| e.not_synced.is_some())
            .collect();
        if !listed.is_empty() && !self.told_listed {
            self.told_listed = true;
            let mut names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
            names.sort_unstable();
            // Shown once, so that a missing file is no mystery; the whole
            // list goes to the log, the message names the first few.
            const NAMED: usize = 5;
            let more = names.len().saturating_sub(NAMED);
            let shown = if more > 0 {
                format!("{} and {more} more", names[..NAMED].join(", "))
            } else {
                names.join(", ")
            };
            self.notifier.log(
                MessageType::INFO,
                format!(
                    "Chorus: files listed without their content: {}",
                    names.join(", ")
                ),
            );
            self.notifier.tell_user(
                MessageType::INFO,
                format!(
                    "Chorus: {} of the session's files are listed without their content (binary, too large or over the session's size), so not written here: {shown}",
                    names.len(),
                ),
            );
        }
        self.rejoin(link);
        let mut paths: Vec<String> = self
            .session_files
            .values()
            .filter(|e| e.not_synced.is_none())
            .map(|e| e.path.clone())
            .collect();
        paths.sort_unstable();
        for path in paths {
            self.follow(path, link);
        }
        self.start_watching(link);
        self.pump_puts(link);
        self.look(link);
    }

    /// After a welcome, once the listing came: each file of ours still in
    /// the session offers what it holds and merges the answer; one the
    /// session no longer has was deleted or renamed meanwhile, and goes
    /// as for a delete (its copy to the backup).
    fn rejoin(&mut self, link: &Link) {
        let mut rejoining: Vec<String> = self
            .docs
            .iter()
            .filter(|(_, doc)| matches!(doc.state, DiskState::Rejoining(_)))
            .map(|(path, _)| path.clone())
            .collect();
        rejoining.sort_unstable();
        for path in rejoining {
            let in_session = self
                .session_files
                .get(&path)
                .is_some_and(|e| e.not_synced.is_none());
            if !in_session {
                info!(%path, "gone from the session while we were away");
                self.docs.remove(&path);
                self.send_job(Job::Remove { path });
                continue;
            }
            if let Some(DiskState::Rejoining(sync)) = self.docs.get(&path).map(|d| &d.state) {
                link.send(&ClientMsg::Open {
                    doc: path.clone(),
                    text: sync.local_text().to_string(),
                    since: Some(sync.rev()),
                });
            }
        }
    }

    /// Someone added a file to the session.
    pub(crate) fn file_added(&mut self, entry: FileEntry, link: &Link) {
        let synced = entry.not_synced.is_none();
        let path = entry.path.clone();
        if self.writer.is_some() {
            self.send_job(Job::Arrived { path: path.clone() });
        }
        self.session_files.insert(path.clone(), entry.clone());
        if !self.enabled {
            self.check_local_copies(vec![entry]);
        } else if synced {
            self.follow(path, link);
        }
    }

    /// Subscribes to `path` unless the editor has it or we do already;
    /// queued while [`OPENS_IN_FLIGHT`] others are joining.
    fn follow(&mut self, path: String, link: &Link) {
        if self.docs.contains_key(&path) || self.is_editor_open(&path) {
            return;
        }
        if let Err(why) = self.target(&path) {
            warn!(%path, %why, "not kept on disk");
            return;
        }
        // A path queued twice is asked for once: `pump` skips the second.
        self.to_follow.push_back(path);
        self.pump(link);
    }

    /// Sends the queued `open`s there is room for.
    fn pump(&mut self, link: &Link) {
        let mut joining = self
            .docs
            .values()
            .filter(|doc| matches!(doc.state, DiskState::Joining))
            .count();
        while joining < OPENS_IN_FLIGHT {
            let Some(path) = self.to_follow.pop_front() else {
                return;
            };
            if self.docs.contains_key(&path) || self.is_editor_open(&path) {
                continue;
            }
            // The file is in the session's tree, so the hub answers with
            // its text; the empty seed only matters if it is gone meanwhile.
            link.send(&ClientMsg::Open {
                doc: path.clone(),
                text: String::new(),
                since: None,
            });
            self.docs.insert(path, DiskDoc::new(DiskState::Joining));
            joining += 1;
        }
    }

    /// The hub's text for one of ours: the answer to a join (written now),
    /// to a rejoin (merged with what we hold), or a snapshot after an
    /// error (adopted).
    pub(crate) fn opened(&mut self, path: &str, answer: Opened, instance: &str, link: &Link) {
        let Some(doc) = self.docs.get_mut(path) else {
            return;
        };
        let now = Instant::now();
        let mut effects = Vec::new();
        let state = std::mem::replace(&mut doc.state, DiskState::Putting);
        let mut edited = None;
        let sync = match state {
            DiskState::Joining | DiskState::Putting => {
                // Changed on disk before we followed it: if the session's
                // text is what the file held before, that change is ours
                // to send, as any other (a share just published the file).
                edited = self
                    .edits_before_followed
                    .remove(path)
                    .filter(|(was, _)| *was == writer::hash(answer.text.as_bytes()))
                    .map(|(_, found)| (answer.text.clone(), found));
                let mut sync = DocSync::new(
                    now,
                    Rope::from_str(&answer.text),
                    0,
                    DISK_ENCODING,
                    answer.rev,
                    &answer.text,
                    &mut effects,
                );
                sync.number_ops_from(op_numbers());
                doc.joined_text = Some(answer.text.clone());
                Box::new(sync)
            }
            DiskState::Rejoining(mut sync) => {
                merge(path, &mut sync, answer, instance, &mut effects);
                sync
            }
            DiskState::Live(mut sync) => {
                sync.resync(now, answer.rev, &answer.text, &mut effects);
                sync
            }
        };
        doc.state = DiskState::Live(sync);
        // Written now, whatever changed: a first write, or a rejoin's.
        doc.dirty = true;
        self.run(path, effects, link);
        if let Some((base, found)) = edited {
            self.send_job(Job::Record {
                path: path.to_owned(),
                text: found.clone(),
            });
            self.merge_found(path, base, found, link);
        }
        if let Some(held) = self.docs.get_mut(path).and_then(|doc| doc.held.take()) {
            self.merge_found(path, held.base, held.found, link);
        }
        self.flush_one(path);
        self.pump(link);
        self.look(link);
    }

    /// Someone's edit to one of ours.
    pub(crate) fn remote(&mut self, path: &str, rev: u64, op: &WireOp, link: &Link) {
        self.with_live(path, link, |sync, out| {
            sync.remote(Instant::now(), rev, &op.0, out)
        });
    }

    /// The hub acknowledged our op on one of ours.
    pub(crate) fn ack(&mut self, path: &str, rev: u64, link: &Link) {
        self.with_live(path, link, |sync, out| sync.ack(rev, out));
    }

    /// Runs `f` on a live file and carries out what it asks for; the file
    /// is written if its text changed. On a sync error it is asked for
    /// again.
    fn with_live(
        &mut self,
        path: &str,
        link: &Link,
        f: impl FnOnce(&mut DocSync, &mut Vec<Effect>) -> Result<(), SyncError>,
    ) {
        let Some(sync) = self.docs.get_mut(path).and_then(DiskDoc::live_mut) else {
            return;
        };
        let mut effects = Vec::new();
        if let Err(err) = f(sync, &mut effects) {
            warn!(%path, cause = %err, "out of step with the hub; asking again");
            return self.resubscribe(path, link);
        }
        self.run(path, effects, link);
    }

    /// Carries out a file's effects. The disk is an editor that applies
    /// each edit the moment it is asked: the edit is reported back to the
    /// sync as the editor's change (its echo) and answered at once, which
    /// may ask for the next. Ops go to the hub.
    fn run(&mut self, path: &str, effects: Vec<Effect>, link: &Link) {
        let Some(doc) = self.docs.get_mut(path) else {
            return;
        };
        let (DiskState::Live(sync) | DiskState::Rejoining(sync)) = &mut doc.state else {
            return;
        };
        let mut queue = VecDeque::from(effects);
        let mut changed = false;
        while let Some(effect) = queue.pop_front() {
            let now = Instant::now();
            let mut more = Vec::new();
            let result = match effect {
                Effect::SendOp { rev, op, seq } => {
                    link.send(&ClientMsg::Op {
                        doc: path.to_owned(),
                        rev,
                        op: WireOp(op),
                        seq: Some(seq),
                    });
                    Ok(())
                }
                Effect::ApplyEdit {
                    id,
                    version,
                    range,
                    new_text,
                } => {
                    changed = true;
                    let echo = Change {
                        range: Some(range),
                        text: new_text,
                    };
                    sync.editor_changed(now, version + 1, &[echo], &mut more)
                        .and_then(|()| sync.edit_answered(now, id, Some(true), &mut more))
                }
                Effect::ReplaceAll { id, .. } => {
                    changed = true;
                    sync.edit_answered(now, id, Some(true), &mut more)
                }
            };
            if let Err(err) = result {
                error!(%path, cause = %err, "cannot keep the file in step; asking the hub again");
                return self.resubscribe(path, link);
            }
            queue.extend(more);
        }
        if changed {
            doc.dirty = true;
            self.schedule_flush();
        }
    }

    /// The hub refused something about one of ours.
    pub(crate) fn error(&mut self, path: &str, code: ErrorCode, message: &str, link: &Link) {
        let Some(doc) = self.docs.get_mut(path) else {
            if self.is_putting(path) {
                self.put_refused(path, message, link);
            }
            return;
        };
        match &doc.state {
            DiskState::Putting => self.put_refused(path, message, link),
            // Refused while joining or rejoining: the file is not to be
            // had; leave it (what the watcher saw meanwhile no longer
            // waits for it).
            DiskState::Joining | DiskState::Rejoining(_) => {
                self.docs.remove(path);
                self.pump(link);
                self.look(link);
            }
            // Our op was fine but too old for the hub: merge with the
            // snapshot that follows, as after an outage.
            DiskState::Live(_) if code == ErrorCode::StaleRevision => {
                let state = std::mem::replace(&mut doc.state, DiskState::Putting);
                if let DiskState::Live(sync) = state {
                    doc.state = DiskState::Rejoining(sync);
                }
            }
            // Deleted meanwhile: its `deleted` says the rest.
            _ if code == ErrorCode::UnknownDocument => {
                self.docs.remove(path);
            }
            // Any other refusal of an op is followed by a snapshot, adopted.
            DiskState::Live(_) => {}
        }
    }

    fn resubscribe(&mut self, path: &str, link: &Link) {
        self.docs.remove(path);
        link.send(&ClientMsg::Close {
            doc: path.to_owned(),
        });
        self.follow(path.to_owned(), link);
    }

    /// The session renamed `from` (a file or a directory) to `to`. The
    /// files we keep move on disk (unless `move_files` is false: the
    /// editor, or another program, moved them itself, and this is our own
    /// rename) and we go on following them there.
    pub(crate) fn renamed(&mut self, from: &str, to: &str, move_files: bool, link: &Link) {
        let listed: Vec<String> = self
            .session_files
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        for old in listed {
            if let (Some(mut entry), Some(new)) =
                (self.session_files.remove(&old), moved_path(&old, from, to))
            {
                entry.path = new.clone();
                self.session_files.insert(new, entry);
            }
        }
        for queued in self.to_follow.iter_mut() {
            if let Some(new) = moved_path(queued, from, to) {
                *queued = new;
            }
        }
        let edits: Vec<String> = self
            .edits_before_followed
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        for old in edits {
            if let (Some(edit), Some(new)) = (
                self.edits_before_followed.remove(&old),
                moved_path(&old, from, to),
            ) {
                self.edits_before_followed.insert(new, edit);
            }
        }
        let mut ours: Vec<String> = self
            .docs
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        ours.sort_unstable();
        let mut moved_any = false;
        if !move_files {
            self.send_job(Job::Renamed {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        for old in ours {
            let (Some(mut doc), Some(new)) = (self.docs.remove(&old), moved_path(&old, from, to))
            else {
                continue;
            };
            if self.is_editor_open(&new) {
                // The hub keeps one subscription per path: the editor's.
                continue;
            }
            match &doc.state {
                DiskState::Live(_) => {
                    if move_files {
                        self.send_job(Job::Rename {
                            from: old,
                            to: new.clone(),
                        });
                    }
                    // Written again after the move: a file that was not
                    // there to move is made, one that moved is left as it
                    // is.
                    doc.dirty = true;
                    moved_any = true;
                }
                // Our own rename overtook our `open`: its answer names the
                // old path. Ask again where it is now (the hub sends a
                // close naming the old path where the file went).
                DiskState::Joining if !move_files => {
                    link.send(&ClientMsg::Close { doc: old });
                    self.to_follow.push_back(new);
                    continue;
                }
                DiskState::Rejoining(sync) if !move_files => {
                    link.send(&ClientMsg::Open {
                        doc: new.clone(),
                        text: sync.local_text().to_string(),
                        since: Some(sync.rev()),
                    });
                }
                _ => {}
            }
            self.docs.insert(new, doc);
        }
        for (queued, _) in self.puts.queue.iter_mut().chain(&mut self.puts.in_flight) {
            if let Some(new) = moved_path(queued, from, to) {
                *queued = new;
            }
        }
        if moved_any {
            self.schedule_flush();
        }
        self.pump(link);
    }

    /// Moves the file at `from` to `to` on disk for a document the editor
    /// has open but cannot rename (no `RenameFile` support).
    pub(crate) fn move_for_editor(&mut self, from: &str, to: &str) {
        self.send_job(Job::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }

    /// The session deleted `path` (a file or a directory). The files we
    /// keep there go to the backup folder (unless `remove_files` is false:
    /// they are gone already, the editor or another program deleted them).
    pub(crate) fn deleted(&mut self, path: &str, remove_files: bool, link: &Link) {
        self.session_files
            .retain(|file, _| !at_or_under(file, path));
        self.edits_before_followed
            .retain(|file, _| !at_or_under(file, path));
        self.to_follow.retain(|queued| !at_or_under(queued, path));
        let mut ours: Vec<String> = self
            .docs
            .keys()
            .filter(|file| at_or_under(file, path))
            .cloned()
            .collect();
        ours.sort_unstable();
        for gone in ours {
            let written = matches!(
                self.docs.remove(&gone).map(|doc| doc.state),
                Some(DiskState::Live(_) | DiskState::Rejoining(_))
            );
            if written && remove_files && self.enabled {
                self.send_job(Job::Remove { path: gone });
            } else if !remove_files {
                self.send_job(Job::Forget { path: gone });
            }
        }
        self.pump(link);
    }

    /// The editor opened `path`: from now on it is the editor's.
    pub(crate) fn editor_opened(&mut self, path: &str, link: &Link) {
        if let Ok(mut open) = self.editor_open.lock() {
            open.insert(path.to_owned());
        }
        if self.docs.remove(path).is_some() {
            debug!(%path, "the editor takes the file over");
            link.send(&ClientMsg::Close {
                doc: path.to_owned(),
            });
            self.pump(link);
        }
        if self.writer.is_some() {
            self.send_job(Job::EditorTook {
                path: path.to_owned(),
            });
        }
    }

    /// The editor closed `path`: the file on disk is ours again, if it is
    /// the session's.
    pub(crate) fn editor_closed(&mut self, path: &str, shared: bool, link: &Link) {
        if let Ok(mut open) = self.editor_open.lock() {
            open.remove(path);
        }
        let in_session = shared
            || self
                .session_files
                .get(path)
                .is_some_and(|e| e.not_synced.is_none());
        if self.enabled && in_session && link.is_connected() {
            self.follow(path.to_owned(), link);
        }
    }

    fn is_editor_open(&self, path: &str) -> bool {
        self.editor_open
            .lock()
            .map(|open| open.contains(path))
            .unwrap_or(false)
    }

    /// Starts the watch on the folder, once, if we keep its files.
    fn start_watching(&mut self, link: &Link) {
        if self.watch_tried || !self.enabled || link.is_read_only() {
            return;
        }
        let Some(root) = self.root.clone() else {
            return;
        };
        self.watch_tried = true;
        match watcher::start(&root, self.events.clone()) {
            Ok(watcher) => {
                info!(root = %root.display(), "watching the folder");
                self.notifier.log(
                    MessageType::INFO,
                    format!(
                        "Chorus: watching {} for changes made outside the editor; what other programs change there is shared.",
                        root.display()
                    ),
                );
                self.watcher = Some(watcher);
                self.send_job(Job::Watch);
            }
            Err(why) => {
                warn!(%why, "cannot watch the folder");
                self.notifier.tell_user(
                    MessageType::WARNING,
                    format!("Chorus: cannot watch {} for changes made outside the editor ({why}); they are not shared, and are backed up before the session's text replaces them.", root.display()),
                );
            }
        }
    }

    /// The watcher saw `touched` change.
    pub(crate) fn touched(&mut self, touched: Touched, link: &Link) {
        self.touched.merge(touched);
        self.look(link);
    }

    /// Asks the writer to look at what the watcher saw, if the hub can
    /// hear of it now (see the module's invariants).
    fn look(&mut self, link: &Link) {
        let rejoining = self
            .docs
            .values()
            .any(|doc| matches!(doc.state, DiskState::Rejoining(_)));
        if self.watcher.is_none()
            || self.touched.is_empty()
            || !link.is_connected()
            || !self.listed
            || rejoining
        {
            return;
        }
        let touched = std::mem::take(&mut self.touched);
        let paths: Vec<String> = touched.paths.into_iter().collect();
        let is_touched = |path: &str| {
            paths.iter().any(|t| t.is_empty() || at_or_under(path, t))
                || touched
                    .renames
                    .iter()
                    .any(|(from, to)| at_or_under(path, from) || at_or_under(path, to))
        };
        let listed = self
            .session_files
            .values()
            .filter(|e| e.not_synced.is_some() && is_touched(&e.path))
            .map(|e| e.path.clone())
            .collect();
        let max_file_bytes = self.limits.map_or(0, |l| l.max_file_bytes);
        self.send_job(Job::Scan(Scan {
            touched: paths,
            renames: touched.renames,
            listed,
            max_file_bytes,
        }));
    }

    /// What the writer found changed on disk, but for renames and deletes
    /// (`core.rs` sends those, through [`DiskSync::tree_change`]).
    pub(crate) fn found(&mut self, found: Found, link: &Link) {
        match found {
            Found::Changed { path, base, found } => self.merge_found(&path, base, found, link),
            Found::Appeared { path, content } => self.appeared(path, content, link),
            Found::Edited { path, was, found } => {
                self.edited_before_followed(path, was, found, false, link)
            }
            Found::Moved { .. } | Found::Vanished { .. } => {}
        }
    }

    /// A file we keep changed on disk from `base` to `found`: the change
    /// goes to the session, on top of what the session did meanwhile, and
    /// the file gets both.
    fn merge_found(&mut self, path: &str, base: String, found: String, link: &Link) {
        let Some(doc) = self.docs.get_mut(path) else {
            debug!(%path, "changed on disk, but not ours now");
            return;
        };
        let Some(sync) = doc.live_mut() else {
            doc.hold(base, found);
            return;
        };
        let merged = match merge_disk_change(&base, &found, sync.mirror()) {
            Ok(merged) => merged,
            Err(err) => {
                error!(%path, cause = %err, "cannot merge a change made on disk");
                return;
            }
        };
        debug!(%path, "changed on disk; sending the change");
        let mut effects = Vec::new();
        let version = sync.version() + 1;
        let whole = Change {
            range: None,
            text: merged.clone(),
        };
        if let Err(err) = sync.editor_changed(Instant::now(), version, &[whole], &mut effects) {
            error!(%path, cause = %err, "cannot take a change made on disk; asking the hub again");
            return self.resubscribe(path, link);
        }
        if merged != found {
            // The session changed too meanwhile: the file gets both.
            doc.dirty = true;
            self.schedule_flush();
        }
        self.run(path, effects, link);
    }

    /// A file of the folder's own changed: if the session has it and we
    /// have yet to follow it, the change waits for its text (see
    /// [`Found::Edited`]); else it stays the folder's.
    fn edited_before_followed(
        &mut self,
        path: String,
        was: u64,
        found: String,
        first_write: bool,
        link: &Link,
    ) {
        let in_session = self
            .session_files
            .get(&path)
            .is_some_and(|e| e.not_synced.is_none());
        let joined = self
            .docs
            .get(&path)
            .map(|doc| (&doc.state, &doc.joined_text));
        match joined {
            // Joined, its first write on its way: that write finds the
            // change too ([`Written::Edited`]) and takes it then, once.
            Some((DiskState::Live(_), Some(_))) if !first_write => {}
            // The first write found it: the text it joined with is the
            // base if the file held it when watching began.
            Some((DiskState::Live(_), Some(text))) if writer::hash(text.as_bytes()) == was => {
                let base = text.clone();
                self.send_job(Job::Record {
                    path: path.clone(),
                    text: found.clone(),
                });
                self.merge_found(&path, base, found, link);
            }
            // Else the folder's copy was never the session's: the next
            // write is a first contact (backed up, replaced; ADR 0006).
            Some((DiskState::Live(_), _)) => {
                if let Some(doc) = self.docs.get_mut(&path) {
                    doc.dirty = true;
                }
                self.schedule_flush();
            }
            None | Some((DiskState::Joining, _)) if in_session => {
                self.edits_before_followed.insert(path, (was, found));
            }
            _ => debug!(%path, in_session, "the folder's own file changed; not shared"),
        }
    }

    /// A file nobody shared is on disk: published, as a share would.
    fn appeared(&mut self, path: String, content: PutContent, link: &Link) {
        match self.session_files.get(&path) {
            // A document of the session we have yet to follow: its first
            // write compares (and backs up).
            Some(entry) if entry.not_synced.is_none() => return,
            // A listed file: its new size or kind is put again.
            Some(_) => {}
            None if self.docs.contains_key(&path) => return,
            None => {
                if let PutContent::Text { text } = &content {
                    self.send_job(Job::Record {
                        path: path.clone(),
                        text: text.clone(),
                    });
                }
                self.docs
                    .insert(path.clone(), DiskDoc::new(DiskState::Putting));
            }
        }
        info!(%path, "new on disk; publishing it");
        self.puts.queue.push_back((path, content));
        self.pump_puts(link);
    }

    /// Sends the queued puts there is room for.
    fn pump_puts(&mut self, link: &Link) {
        if !link.is_connected() || !self.listed {
            return;
        }
        loop {
            let bytes: u64 = self.puts.in_flight.iter().map(|(_, c)| put_bytes(c)).sum();
            if self.puts.in_flight.len() >= PUTS_IN_FLIGHT || bytes >= PUT_BYTES_IN_FLIGHT {
                return;
            }
            let Some((path, content)) = self.puts.queue.pop_front() else {
                return;
            };
            link.send(&ClientMsg::Put {
                path: path.clone(),
                content: content.clone(),
            });
            self.puts.in_flight.push_back((path, content));
        }
    }

    /// The oldest put unanswered, or the one at `path`.
    fn take_put(&mut self, path: &str) -> Option<(String, PutContent)> {
        let index = self.puts.in_flight.iter().position(|(p, _)| p == path)?;
        self.puts.in_flight.remove(index)
    }

    /// Whether `path` is a put of ours the hub has yet to answer.
    pub(crate) fn is_putting(&self, path: &str) -> bool {
        self.puts.in_flight.iter().any(|(p, _)| p == path)
    }

    /// The hub's answer to one of our puts. A text file it made a document
    /// is followed from now on; one it already had is followed too, its
    /// text winning as for any other join (our copy backed up). Returns a
    /// delete to send when the file went from disk meanwhile.
    pub(crate) fn stored(
        &mut self,
        path: &str,
        created: bool,
        not_synced: Option<NotSynced>,
        link: &Link,
    ) -> Option<TreeChange> {
        let (path, content) = self.take_put(path)?;
        let size = match &content {
            PutContent::Text { text } => text.len() as u64,
            PutContent::Binary { size } | PutContent::TooLarge { size } => *size,
        };
        debug!(%path, created, ?not_synced, "published");
        self.session_files.insert(
            path.clone(),
            FileEntry {
                path: path.clone(),
                size,
                not_synced,
            },
        );
        if let Some(doc) = self.docs.get_mut(&path) {
            if matches!(doc.state, DiskState::Putting) {
                if !created || not_synced.is_some() {
                    // Not ours as we put it: its first write compares.
                    self.send_job(Job::Forget { path: path.clone() });
                }
                match (&content, not_synced) {
                    // Followed at once (its held change waits with it),
                    // seeded with what we put: if the file is gone from
                    // the session meanwhile, it is made again as on disk.
                    (PutContent::Text { text }, None) => {
                        link.send(&ClientMsg::Open {
                            doc: path.clone(),
                            text: text.clone(),
                            since: None,
                        });
                        if let Some(doc) = self.docs.get_mut(&path) {
                            doc.state = DiskState::Joining;
                        }
                    }
                    _ => {
                        self.docs.remove(&path);
                    }
                }
            }
        }
        self.pump_puts(link);
        if self.puts.vanished.remove(&path) && created {
            return Some(TreeChange::Delete { path });
        }
        None
    }

    /// The hub refused one of our puts (read-only, too many files, a bad
    /// name): the file stays on disk only.
    fn put_refused(&mut self, path: &str, message: &str, link: &Link) {
        self.take_put(path);
        self.docs.remove(path);
        self.puts.vanished.remove(path);
        self.send_job(Job::Forget {
            path: path.to_owned(),
        });
        warn!(%path, %message, "the hub refused a new file");
        let text = format!("Chorus: {path} was not added to the session: {message}");
        if self.told_put_refused {
            self.notifier.log(MessageType::WARNING, text);
        } else {
            self.told_put_refused = true;
            self.notifier.tell_user(MessageType::WARNING, text);
        }
        self.pump_puts(link);
    }

    /// What of a rename or delete found on disk the session needs: `None`
    /// when nothing of it is the session's. A rename onto a path the
    /// session has is not one (it never overwrites): the source goes, and
    /// the target is left as the session's file there.
    pub(crate) fn tree_change(&mut self, found: &Found) -> Option<TreeChange> {
        let (path, to) = match found {
            Found::Moved { from, to } => (from, Some(to)),
            Found::Vanished { path } => (path, None),
            Found::Changed { .. } | Found::Appeared { .. } | Found::Edited { .. } => return None,
        };
        let in_session = |dir: &str| self.session_files.keys().any(|p| at_or_under(p, dir));
        if in_session(path) {
            match to {
                Some(to) if !in_session(to) => {
                    return Some(TreeChange::Rename {
                        from: path.clone(),
                        to: to.clone(),
                    })
                }
                // Onto a path the session has: not a rename (one never
                // overwrites). The source goes; the target stays the
                // session's file, its first write a first contact.
                Some(to) => self.forget_and_look(to),
                None => {}
            }
            return Some(TreeChange::Delete { path: path.clone() });
        }
        if let Some(to) = to {
            // Nothing of it was the session's (a file put a moment ago):
            // what is at the new path is new.
            self.forget_and_look(to);
        }
        // Put and gone before the answer: deleted once stored.
        let putting: Vec<String> = self
            .docs
            .iter()
            .filter(|(p, doc)| at_or_under(p, path) && matches!(doc.state, DiskState::Putting))
            .map(|(p, _)| p.clone())
            .collect();
        for gone in putting {
            self.docs.remove(&gone);
            let before = self.puts.queue.len();
            self.puts.queue.retain(|(p, _)| *p != gone);
            if self.puts.queue.len() == before {
                self.puts.vanished.insert(gone);
            }
        }
        None
    }

    /// A batch of what was found is done: what it asked to look at again
    /// is looked at.
    pub(crate) fn found_done(&mut self, link: &Link) {
        self.look(link);
    }

    /// What we knew of the files at or under `path` no longer counts, and
    /// they are looked at again: what is there is new.
    fn forget_and_look(&mut self, path: &str) {
        self.send_job(Job::Forget {
            path: path.to_owned(),
        });
        self.touched.paths.insert(path.to_owned());
    }

    fn schedule_flush(&mut self) {
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(WRITE_EVERY).await;
            let _ = events.send(Event::DiskFlush);
        });
    }

    /// Writes every file changed since it was last written.
    pub(crate) fn flush(&mut self) {
        self.flush_scheduled = false;
        let mut due: Vec<String> = self
            .docs
            .iter()
            .filter(|(_, doc)| doc.dirty)
            .map(|(path, _)| path.clone())
            .collect();
        due.sort_unstable();
        for path in due {
            self.flush_one(&path);
        }
    }

    /// Writes `path` if it changed since it was last written.
    fn flush_one(&mut self, path: &str) {
        let Some(doc) = self.docs.get_mut(path) else {
            return;
        };
        let DiskState::Live(sync) = &doc.state else {
            return;
        };
        if !std::mem::take(&mut doc.dirty) {
            return;
        }
        let text = sync.mirror().to_string();
        self.send_job(Job::Write {
            path: path.to_owned(),
            text,
        });
    }

    fn send_job(&mut self, job: Job) {
        let Some(root) = self.root.clone() else {
            return;
        };
        let reports = job.reports();
        let writer = self.writer.get_or_insert_with(|| {
            writer::spawn(root, self.editor_open.clone(), self.events.clone())
        });
        if writer.send(job).is_ok() && reports {
            self.writes_pending += 1;
        }
    }

    /// The writer's report on one file; a delete for `core.rs` to send
    /// when another program deleted it.
    pub(crate) fn written(
        &mut self,
        path: String,
        outcome: Written,
        link: &Link,
    ) -> Option<TreeChange> {
        self.writes_pending = self.writes_pending.saturating_sub(1);
        let mut change = None;
        match outcome {
            Written::Replaced { backup } => {
                self.written_first(&path);
                info!(%path, backup = %backup.display(), "replaced a local file");
                self.replaced.push(path);
            }
            Written::Diverged { base, found } => {
                // Changed by another program before the watcher said so:
                // the same change, merged the same way.
                self.merge_found(&path, base, found, link);
            }
            Written::Edited { was, found } => {
                // Found by a first write before the watcher said so.
                self.edited_before_followed(path.clone(), was, found, true, link);
            }
            Written::Vanished => {
                // Deleted before the watcher said so: the same delete.
                change = self.tree_change(&Found::Vanished { path: path.clone() });
            }
            Written::Failed(why) => {
                warn!(%path, %why, "cannot write");
                self.notifier.log(
                    MessageType::WARNING,
                    format!("Chorus: cannot write {path}: {why}"),
                );
            }
            Written::Removed { backup } => {
                info!(%path, backup = %backup.display(), "deleted from the session; moved to the backup");
                self.notifier.log(
                    MessageType::INFO,
                    format!(
                        "Chorus: {path} was deleted from the session; your copy is in {}.",
                        backup.display()
                    ),
                );
            }
            Written::Created | Written::Updated | Written::Unchanged => {
                self.written_first(&path);
                debug!(%path, ?outcome, "written");
            }
            Written::EditorOwns | Written::Moved | Written::Missing => {
                debug!(%path, ?outcome, "written");
            }
        }
        // Once a batch is written: one message for all it replaced.
        if self.writes_pending == 0 && !self.replaced.is_empty() {
            let replaced = std::mem::take(&mut self.replaced);
            self.notifier.tell_user(
                MessageType::INFO,
                format!(
                    "Chorus: the session's text replaced {} local file{} that differed: {}. Your copies are in {CHORUS_DIR}/backup/.",
                    replaced.len(),
                    if replaced.len() == 1 { "" } else { "s" },
                    replaced.join(", ")
                ),
            );
        }
        change
    }

    /// `path` holds what we wrote: a change found there from now on has
    /// what we wrote as its base.
    fn written_first(&mut self, path: &str) {
        if let Some(doc) = self.docs.get_mut(path) {
            doc.joined_text = None;
        }
    }

    /// With syncFiles off: tells the user once if files of the session
    /// are missing here or differ (by size), and how to have them written.
    fn check_local_copies(&self, entries: Vec<FileEntry>) {
        let Some(root) = self.root.clone() else {
            return;
        };
        if self.told_off.load(Ordering::SeqCst) {
            return;
        }
        let told = self.told_off.clone();
        let notifier = self.notifier.clone();
        tokio::task::spawn_blocking(move || {
            let mut differ: Vec<String> = entries
                .into_iter()
                .filter(|e| e.not_synced.is_none())
                .filter(|e| match std::fs::metadata(root.join(&e.path)) {
                    Ok(meta) => meta.len() != e.size,
                    Err(_) => true,
                })
                .map(|e| e.path)
                .collect();
            if differ.is_empty() || told.swap(true, Ordering::SeqCst) {
                return;
            }
            differ.sort_unstable();
            let examples: Vec<&str> = differ.iter().take(5).map(String::as_str).collect();
            notifier.tell_user(
                MessageType::INFO,
                format!(
                    "Chorus: {} of the session's files are missing or different in your folder ({}{}). Open them to get the session's text, or turn on syncFiles (chorus lsp --sync-files, initializationOptions.syncFiles, VS Code's chorus.syncFiles, the Neovim plugin's sync_files) to have them all written here.",
                    differ.len(),
                    examples.join(", "),
                    if differ.len() > examples.len() { ", …" } else { "" }
                ),
            );
        });
    }

    fn target(&self, path: &str) -> Result<PathBuf, String> {
        let root = self.root.as_deref().ok_or("no workspace folder")?;
        safe_target(root, path)
    }
}

/// The text once a change found on disk (`base` → `found`) is put on top
/// of what the session made of `base` meanwhile (`ours`): the disk's edit,
/// as a minimal diff, transformed past the session's, so that both
/// survive where they do not overlap. The disk's edit is the one not yet
/// ordered, so it goes first in `transform` (ARCHITECTURE.md).
pub(crate) fn merge_disk_change(base: &str, found: &str, ours: &Rope) -> Result<String, OpError> {
    let base = Rope::from_str(base);
    if ours.len_chars() == base.len_chars() && *ours == base {
        return Ok(found.to_owned());
    }
    let disk = diff(&base, found);
    let session = diff(&base, &ours.to_string());
    let (disk, _) = transform(&disk, &session)?;
    let mut merged = ours.clone();
    apply_to_rope(&mut merged, &disk)?;
    Ok(merged.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(base: &str, found: &str, ours: &str) -> String {
        merge_disk_change(base, found, &Rope::from_str(ours)).unwrap()
    }

    #[test]
    fn a_change_on_disk_and_the_sessions_meanwhile_both_survive() {
        // Nothing happened in the session: the file's text is taken.
        assert_eq!(merged("a\nb\n", "a\nB\n", "a\nb\n"), "a\nB\n");
        // A formatter reindented one function while someone typed in
        // another.
        let base = "def f():\n  return 1\n\ndef g():\n  return 2\n";
        let formatted = "def f():\n    return 1\n\n\ndef g():\n    return 2\n";
        let typed = "def f():\n  return 1\n\ndef g():\n  return 2  # two\n";
        assert_eq!(
            merged(base, formatted, typed),
            "def f():\n    return 1\n\n\ndef g():\n    return 2  # two\n"
        );
        // Both inserted at the same place: the disk's text first.
        assert_eq!(merged("ab", "aXb", "aYb"), "aXYb");
        // The disk deleted the word the session typed after: the session's
        // insertion stays, the word goes (where exactly depends on how the
        // diff aligns the deletion).
        let both = merged("alpha beta gamma\n", "alpha gamma\n", "alpha beta! gamma\n");
        assert!(both.contains('!') && !both.contains("beta"), "{both:?}");
        assert_eq!(both.replace('!', ""), "alpha gamma\n");
    }
}
