//! The session's files on disk (`syncFiles`): the session's text files
//! that the editor does not have open are written into the workspace
//! folder and kept in step while the session lasts.
//!
//! ```text
//!  welcome ──► files{} ──► files{entries} ──► open{doc} per text file
//!  opened{text} ──► write   remote{op} ──► apply ──► write (≤ every 100 ms)
//!  editor didOpen ──► close{doc}; the document is the editor's (documents.rs)
//!  editor didClose ──► open{doc} again; the disk is ours
//! ```
//!
//! Invariants:
//! * A path is the editor's or ours, never both: [`DiskSync::editor_opened`]
//!   drops our subscription before `documents.rs` sends its own `open`,
//!   and the writer skips a path the editor has open (it checks right
//!   before writing, so a write queued before the editor opened the file
//!   does not land behind its buffer).
//! * We only follow: nothing here sends an op. What changes a file on disk
//!   is the session's text; what someone changes on disk is not noticed
//!   (there is no watcher), but is never lost: a file whose content is not
//!   what we last wrote is copied to `.chorus/backup/<path>` before it is
//!   replaced, and the user is told once which files were.
//! * Writes are atomic (a temporary file in the same folder, renamed over
//!   the old one), never outside the root: no `..`, no symbolic link on
//!   the way, nothing under `.git/` or `.chorus/`. They happen on one
//!   writer thread, in order; the loop never waits for the disk.
//! * Others' renames and deletes (ADR 0005) reach the files we keep the
//!   same way, in order with the writes: a rename moves the file (one
//!   `rename(2)`, a file already at the new path copied to the backup
//!   first); a delete moves the file to `.chorus/backup/<path>` rather
//!   than deleting it, since the session keeps nothing of a deleted file
//!   and the local copy may hold what someone wants back. Folders left
//!   empty are removed. Files the editor has open are never touched here.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_protocol::ot::{apply_to_rope, WireOp};
use chorus_protocol::wire::{validate_doc_path, ClientMsg, FileEntry, WorkspaceLimits};
use ropey::Rope;
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::MessageType;
use tracing::{debug, info, warn};

use crate::core::Event;
use crate::hub_link::Link;
use crate::moves::{at_or_under, moved_path};
use crate::notifier::Notifier;
use crate::workspace::CHORUS_DIR;

/// Files asked for (`open` sent, `opened` due) at once, at most: the hub
/// drops a connection whose outbound queue fills (4096 frames), and a big
/// tree's answers all at once would fill it.
const OPENS_IN_FLIGHT: usize = 32;

/// How long remote edits to a file gather before it is written: typing
/// elsewhere reaches the disk within this, without a write per keystroke.
pub(crate) const WRITE_EVERY: Duration = Duration::from_millis(100);

/// What the writer did with one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// The file was missing; it is there now.
    Created,
    /// It held what we last wrote; it holds the session's text now.
    Updated,
    /// It held the session's text already.
    Unchanged,
    /// It held something else: copied to `backup`, then replaced.
    Replaced {
        backup: PathBuf,
    },
    /// The editor has it open: left alone.
    EditorOwns,
    /// Renamed (moved) to where the session's rename put it.
    Moved,
    /// Deleted from the session: moved to `backup`.
    Removed {
        backup: PathBuf,
    },
    /// Nothing was there to move or remove.
    Missing,
    Failed(String),
}

/// A text file of the session we keep on disk.
enum DiskDoc {
    /// `open` sent; its `opened` is due.
    Joining,
    Live {
        rev: u64,
        text: Rope,
        /// Changed since last written.
        dirty: bool,
    },
}

pub(crate) struct DiskSync {
    /// `syncFiles`, from the settings.
    enabled: bool,
    /// The workspace folder, canonical; nothing is written without one.
    root: Option<PathBuf>,
    /// The session's files as last listed, by path (a document's when
    /// `not_synced` is `None`).
    session_files: HashMap<String, FileEntry>,
    /// The files we follow, by path.
    docs: HashMap<String, DiskDoc>,
    /// Files to follow once fewer than [`OPENS_IN_FLIGHT`] are joining.
    to_follow: std::collections::VecDeque<String>,
    /// Paths the editor has open: the writer leaves them alone.
    editor_open: Arc<Mutex<HashSet<String>>>,
    /// To the writer thread; started with the first write.
    writer: Option<std::sync::mpsc::Sender<WriteJob>>,
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
    events: mpsc::UnboundedSender<Event>,
    notifier: Notifier,
}

/// One thing for the writer thread to do, in order.
enum WriteJob {
    Write { path: String, text: String },
    Rename { from: String, to: String },
    Remove { path: String },
}

impl WriteJob {
    /// The path the report is about.
    fn path(&self) -> &str {
        match self {
            WriteJob::Write { path, .. } | WriteJob::Remove { path } => path,
            WriteJob::Rename { to, .. } => to,
        }
    }
}

impl DiskSync {
    pub(crate) fn new(events: mpsc::UnboundedSender<Event>, notifier: Notifier) -> Self {
        DiskSync {
            enabled: false,
            root: None,
            session_files: HashMap::new(),
            docs: HashMap::new(),
            to_follow: Default::default(),
            editor_open: Default::default(),
            writer: None,
            writes_pending: 0,
            replaced: Vec::new(),
            flush_scheduled: false,
            told_listed: false,
            told_off: Default::default(),
            events,
            notifier,
        }
    }

    pub(crate) fn configure(&mut self, root: Option<PathBuf>, enabled: bool) {
        self.root = root.map(|root| root.canonicalize().unwrap_or(root));
        self.enabled = enabled && self.root.is_some();
    }

    /// Whether `path` is one of ours (its hub messages come here).
    pub(crate) fn owns(&self, path: &str) -> bool {
        self.docs.contains_key(path)
    }

    /// The hub (re)welcomed us: our subscriptions ended with the last
    /// connection; the tree's listing says what to follow again. Returns
    /// whether we asked for it (its answer is ours).
    pub(crate) fn welcomed(&mut self, workspace: Option<WorkspaceLimits>, link: &Link) -> bool {
        self.docs.clear();
        self.to_follow.clear();
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
            self.notifier.log(
                MessageType::INFO,
                format!(
                    "Chorus: {} of the session's files are listed without their content (binary, too large or over the session's size), so not written here: {}",
                    names.len(),
                    names.join(", ")
                ),
            );
        }
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
    }

    /// Someone added a file to the session.
    pub(crate) fn file_added(&mut self, entry: FileEntry, link: &Link) {
        let synced = entry.not_synced.is_none();
        let path = entry.path.clone();
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
            .filter(|doc| matches!(doc, DiskDoc::Joining))
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
            self.docs.insert(path, DiskDoc::Joining);
            joining += 1;
        }
    }

    /// The hub's text for one of ours: written now.
    pub(crate) fn opened(&mut self, path: &str, rev: u64, text: String, link: &Link) {
        let Some(doc) = self.docs.get_mut(path) else {
            return;
        };
        *doc = DiskDoc::Live {
            rev,
            text: Rope::from_str(&text),
            dirty: false,
        };
        self.write(path.to_owned(), text);
        self.pump(link);
    }

    /// Someone's edit to one of ours.
    pub(crate) fn remote(&mut self, path: &str, rev: u64, op: &WireOp, link: &Link) {
        let Some(DiskDoc::Live {
            rev: ours,
            text,
            dirty,
        }) = self.docs.get_mut(path)
        else {
            return;
        };
        let applied = if rev == *ours + 1 {
            apply_to_rope(text, &op.0).map_err(|err| err.to_string())
        } else {
            Err(format!("revision {rev} after {ours}"))
        };
        match applied {
            Ok(()) => {
                *ours = rev;
                *dirty = true;
                self.schedule_flush();
            }
            Err(why) => {
                warn!(%path, %why, "out of step with the hub; asking again");
                self.resubscribe(path, link);
            }
        }
    }

    /// The hub refused something about one of ours: ask for it again.
    pub(crate) fn error(&mut self, path: &str, link: &Link) {
        if matches!(self.docs.get(path), Some(DiskDoc::Live { .. })) {
            self.resubscribe(path, link);
        } else {
            // Refused while joining: the file is not to be had; leave it.
            self.docs.remove(path);
            self.pump(link);
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
    /// editor moved them itself) and we go on following them there.
    pub(crate) fn renamed(&mut self, from: &str, to: &str, move_files: bool) {
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
        let mut ours: Vec<String> = self
            .docs
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        ours.sort_unstable();
        let mut moved_any = false;
        for old in ours {
            let (Some(doc), Some(new)) = (self.docs.remove(&old), moved_path(&old, from, to))
            else {
                continue;
            };
            if self.is_editor_open(&new) {
                // The hub keeps one subscription per path: the editor's.
                continue;
            }
            if let DiskDoc::Live { rev, text, .. } = doc {
                if move_files {
                    self.send_job(WriteJob::Rename {
                        from: old,
                        to: new.clone(),
                    });
                }
                // Written again after the move: a file that was not there
                // to move is made, one that moved is left as it is.
                let dirty = true;
                self.docs.insert(new, DiskDoc::Live { rev, text, dirty });
                moved_any = true;
            } else {
                self.docs.insert(new, doc);
            }
        }
        if moved_any {
            self.schedule_flush();
        }
    }

    /// Moves the file at `from` to `to` on disk for a document the editor
    /// has open but cannot rename (no `RenameFile` support).
    pub(crate) fn move_for_editor(&mut self, from: &str, to: &str) {
        self.send_job(WriteJob::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }

    /// The session deleted `path` (a file or a directory). The files we
    /// keep there go to the backup folder (unless `remove_files` is false:
    /// the editor deleted them itself).
    pub(crate) fn deleted(&mut self, path: &str, remove_files: bool, link: &Link) {
        self.session_files
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
            let written = matches!(self.docs.remove(&gone), Some(DiskDoc::Live { .. }));
            if written && remove_files && self.enabled {
                self.send_job(WriteJob::Remove { path: gone });
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
        let mut due = Vec::new();
        for (path, doc) in &mut self.docs {
            if let DiskDoc::Live { text, dirty, .. } = doc {
                if std::mem::take(dirty) {
                    due.push((path.clone(), text.to_string()));
                }
            }
        }
        for (path, text) in due {
            self.write(path, text);
        }
    }

    fn write(&mut self, path: String, text: String) {
        self.send_job(WriteJob::Write { path, text });
    }

    fn send_job(&mut self, job: WriteJob) {
        let Some(root) = self.root.clone() else {
            return;
        };
        let writer = self.writer.get_or_insert_with(|| {
            spawn_writer(root, self.editor_open.clone(), self.events.clone())
        });
        if writer.send(job).is_ok() {
            self.writes_pending += 1;
        }
    }

    /// The writer's report on one file.
    pub(crate) fn written(&mut self, path: String, outcome: Written) {
        self.writes_pending = self.writes_pending.saturating_sub(1);
        match outcome {
            Written::Replaced { backup } => {
                info!(%path, backup = %backup.display(), "replaced a local file");
                self.replaced.push(path);
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
            Written::Created
            | Written::Updated
            | Written::Unchanged
            | Written::EditorOwns
            | Written::Moved
            | Written::Missing => {
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

/// Where `path` is written under `root`, or why it must not be: not a
/// plain relative path, inside `.git/` or the root's `.chorus/`, or
/// reached through a symbolic link (which could lead out of the root).
pub(crate) fn safe_target(root: &Path, path: &str) -> Result<PathBuf, String> {
    validate_doc_path(path)?;
    let parts: Vec<&str> = path.split('/').collect();
    if parts.contains(&".git") || parts[0] == CHORUS_DIR {
        return Err(format!("{path} is inside .git/ or {CHORUS_DIR}/"));
    }
    let mut at = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!("{} is a symbolic link", at.display()))
            }
            Ok(meta) if !last && !meta.is_dir() => {
                return Err(format!("{} is not a folder", at.display()))
            }
            Ok(meta) if last && meta.is_dir() => {
                return Err(format!("{} is a folder", at.display()))
            }
            Ok(_) => {}
            // The rest does not exist yet: it will be made, as folders.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
            Err(err) => return Err(format!("{}: {err}", at.display())),
        }
    }
    Ok(at_path(root, &parts))
}

fn at_path(root: &Path, parts: &[&str]) -> PathBuf {
    let mut at = root.to_path_buf();
    at.extend(parts);
    at
}

fn spawn_writer(
    root: PathBuf,
    editor_open: Arc<Mutex<HashSet<String>>>,
    events: mpsc::UnboundedSender<Event>,
) -> std::sync::mpsc::Sender<WriteJob> {
    let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
    std::thread::spawn(move || {
        let mut writer = Writer {
            root,
            last_written: HashMap::new(),
        };
        while let Ok(job) = rx.recv() {
            let owned = editor_open
                .lock()
                .map(|open| open.contains(job.path()))
                .unwrap_or(false);
            let path = job.path().to_owned();
            let outcome = match job {
                _ if owned => Written::EditorOwns,
                WriteJob::Write { path, text } => writer.write(&path, &text),
                WriteJob::Rename { from, to } => writer.rename(&from, &to),
                WriteJob::Remove { path } => writer.remove(&path),
            };
            if events.send(Event::DiskWritten { path, outcome }).is_err() {
                return;
            }
        }
    });
    tx
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub root: PathBuf,
    /// A hash of what we last wrote to each file: a file that no longer
    /// holds it was changed by someone else, and is backed up first.
    pub last_written: HashMap<String, u64>,
}

impl Writer {
    pub(crate) fn write(&mut self, path: &str, text: &str) -> Written {
        match self.try_write(path, text) {
            Ok(outcome) => outcome,
            Err(why) => Written::Failed(why),
        }
    }

    fn try_write(&mut self, path: &str, text: &str) -> Result<Written, String> {
        let target = safe_target(&self.root, path)?;
        let existing = match std::fs::read(&target) {
            Ok(bytes) => Some(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err.to_string()),
        };
        let new_hash = hash(text.as_bytes());
        let outcome = match &existing {
            Some(bytes) if bytes == text.as_bytes() => {
                self.last_written.insert(path.to_owned(), new_hash);
                return Ok(Written::Unchanged);
            }
            Some(bytes) if self.last_written.get(path) == Some(&hash(bytes)) => Written::Updated,
            Some(bytes) => Written::Replaced {
                backup: self.back_up(path, bytes)?,
            },
            None => Written::Created,
        };
        let dir = target.parent().ok_or("no parent folder")?;
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        // The folders just made are plain folders; check again that
        // nothing on the way became a link meanwhile.
        safe_target(&self.root, path)?;
        write_atomically(&target, text.as_bytes())?;
        self.last_written.insert(path.to_owned(), new_hash);
        Ok(outcome)
    }

    /// Moves the file at `from` to `to` (the session renamed it), making
    /// the folders on the way and removing those left empty. A file
    /// already at `to` is backed up first.
    pub(crate) fn rename(&mut self, from: &str, to: &str) -> Written {
        match self.try_rename(from, to) {
            Ok(outcome) => outcome,
            Err(why) => Written::Failed(why),
        }
    }

    fn try_rename(&mut self, from: &str, to: &str) -> Result<Written, String> {
        let source = safe_target(&self.root, from)?;
        let target = safe_target(&self.root, to)?;
        match std::fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(format!("{} is not a file", source.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Written::Missing),
            Err(err) => return Err(format!("{}: {err}", source.display())),
        }
        match std::fs::read(&target) {
            Ok(bytes) => {
                self.back_up(to, &bytes)?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("{}: {err}", target.display())),
        }
        let dir = target.parent().ok_or("no parent folder")?;
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        safe_target(&self.root, to)?;
        std::fs::rename(&source, &target).map_err(|err| format!("{}: {err}", source.display()))?;
        if let Some(hash) = self.last_written.remove(from) {
            self.last_written.insert(to.to_owned(), hash);
        }
        self.remove_empty_folders(from);
        Ok(Written::Moved)
    }

    /// Moves the file at `path` to the backup folder (the session deleted
    /// it) and removes the folders left empty.
    pub(crate) fn remove(&mut self, path: &str) -> Written {
        match self.try_remove(path) {
            Ok(outcome) => outcome,
            Err(why) => Written::Failed(why),
        }
    }

    fn try_remove(&mut self, path: &str) -> Result<Written, String> {
        let target = safe_target(&self.root, path)?;
        let bytes = match std::fs::read(&target) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.last_written.remove(path);
                return Ok(Written::Missing);
            }
            Err(err) => return Err(format!("{}: {err}", target.display())),
        };
        let backup = self.back_up(path, &bytes)?;
        std::fs::remove_file(&target).map_err(|err| format!("{}: {err}", target.display()))?;
        self.last_written.remove(path);
        self.remove_empty_folders(path);
        Ok(Written::Removed { backup })
    }

    /// Removes the folders of `path` that are empty now, deepest first,
    /// never the root.
    fn remove_empty_folders(&self, path: &str) {
        let parts: Vec<&str> = path.split('/').collect();
        for depth in (1..parts.len()).rev() {
            let dir = at_path(&self.root, &parts[..depth]);
            // Fails, and stops, at the first folder with anything in it.
            if std::fs::remove_dir(&dir).is_err() {
                return;
            }
        }
    }

    /// Copies `bytes` (what `path` held) to `.chorus/backup/<path>`, or
    /// `<path>.N` beside an earlier backup.
    fn back_up(&self, path: &str, bytes: &[u8]) -> Result<PathBuf, String> {
        let chorus = self.root.join(CHORUS_DIR);
        let base = chorus.join("backup").join(path);
        let mut backup = base.clone();
        let mut n = 1;
        while backup.exists() {
            backup = PathBuf::from(format!("{}.{n}", base.display()));
            n += 1;
        }
        let dir = backup.parent().ok_or("no parent folder")?;
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        // Keep the backups out of git and of shares.
        let ignore = chorus.join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(&ignore, "*\n");
        }
        write_atomically(&backup, bytes)?;
        Ok(backup)
    }
}

/// A temporary file beside `target`, renamed over it: readers see the old
/// content or the new, never half. Keeps the old file's permissions.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = target.parent().ok_or("no parent folder")?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("no file name")?;
    let temp = dir.join(format!(".{name}.chorus-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = std::fs::metadata(target) {
            file.set_permissions(meta.permissions())?;
        }
        drop(file);
        std::fs::rename(&temp, target)
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("{}: {err}", target.display()));
    }
    Ok(())
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn writer(root: &Path) -> Writer {
        Writer {
            root: root.canonicalize().unwrap(),
            last_written: HashMap::new(),
        }
    }

    #[test]
    fn missing_files_are_created_with_their_folders() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        assert_eq!(w.write("src/pkg/mod.py", "x = 1\n"), Written::Created);
        assert_eq!(
            fs::read_to_string(dir.path().join("src/pkg/mod.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(w.write("src/pkg/mod.py", "x = 1\n"), Written::Unchanged);
        assert_eq!(w.write("src/pkg/mod.py", "x = 2\n"), Written::Updated);
        assert_eq!(
            fs::read_to_string(dir.path().join("src/pkg/mod.py")).unwrap(),
            "x = 2\n"
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("src/pkg"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["mod.py"]);
    }

    #[test]
    fn a_different_local_file_is_backed_up_before_it_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("main.py"), "mine\n").unwrap();
        let mut w = writer(&root);
        let Written::Replaced { backup } = w.write("main.py", "session\n") else {
            panic!("not replaced");
        };
        assert_eq!(backup, root.join(".chorus/backup/main.py"));
        assert_eq!(fs::read_to_string(&backup).unwrap(), "mine\n");
        assert_eq!(
            fs::read_to_string(root.join("main.py")).unwrap(),
            "session\n"
        );
        assert_eq!(
            fs::read_to_string(root.join(".chorus/.gitignore")).unwrap(),
            "*\n"
        );
        // Changed on disk behind our back: backed up again, beside the first.
        fs::write(root.join("main.py"), "edited outside\n").unwrap();
        let Written::Replaced { backup } = w.write("main.py", "session 2\n") else {
            panic!("not replaced");
        };
        assert_eq!(backup, root.join(".chorus/backup/main.py.1"));
        assert_eq!(fs::read_to_string(&backup).unwrap(), "edited outside\n");
    }

    #[test]
    fn nothing_is_written_outside_the_root_or_into_git() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.join("file-link")).unwrap();
        let mut w = writer(&root);
        for path in [
            "link/evil.py",
            "file-link",
            "../escape.py",
            "/etc/passwd",
            ".git/hooks/pre-commit",
            "sub/.git/config",
            ".chorus/backup/x",
        ] {
            assert!(
                matches!(w.write(path, "x"), Written::Failed(_)),
                "{path} was written"
            );
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!root.join(".git").exists());
    }

    #[test]
    fn renames_move_files_and_leave_no_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.write("src/a/one.py", "1\n");
        w.write("src/a/two.py", "2\n");
        assert_eq!(w.rename("src/a/one.py", "lib/a/one.py"), Written::Moved);
        assert_eq!(w.rename("src/a/two.py", "lib/a/two.py"), Written::Moved);
        assert_eq!(
            fs::read_to_string(root.join("lib/a/two.py")).unwrap(),
            "2\n"
        );
        assert!(!root.join("src").exists(), "empty folders are removed");
        // What we wrote moved with it: an update is not a replacement.
        assert_eq!(w.write("lib/a/one.py", "1 more\n"), Written::Updated);
        // Nothing to move: the next write makes the file.
        assert_eq!(w.rename("gone.py", "here.py"), Written::Missing);
        // A file already at the new path is kept in the backup.
        fs::write(root.join("mine.py"), "mine\n").unwrap();
        assert_eq!(w.rename("lib/a/two.py", "mine.py"), Written::Moved);
        assert_eq!(fs::read_to_string(root.join("mine.py")).unwrap(), "2\n");
        assert_eq!(
            fs::read_to_string(root.join(".chorus/backup/mine.py")).unwrap(),
            "mine\n"
        );
        // Never out of the root or into git.
        assert!(matches!(w.rename("mine.py", "../x.py"), Written::Failed(_)));
        assert!(matches!(
            w.rename("mine.py", ".git/hooks/x"),
            Written::Failed(_)
        ));
        assert!(root.join("mine.py").exists());
    }

    #[test]
    fn deleted_files_go_to_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.write("pkg/mod.py", "x = 1\n");
        fs::write(root.join("pkg/local.txt"), "kept\n").unwrap();
        let Written::Removed { backup } = w.remove("pkg/mod.py") else {
            panic!("not removed");
        };
        assert_eq!(backup, root.join(".chorus/backup/pkg/mod.py"));
        assert_eq!(fs::read_to_string(&backup).unwrap(), "x = 1\n");
        assert!(!root.join("pkg/mod.py").exists());
        // A folder with a file of ours only is kept while it has others.
        assert!(root.join("pkg/local.txt").exists());
        assert_eq!(w.remove("pkg/mod.py"), Written::Missing);
        assert!(matches!(w.remove("../outside"), Written::Failed(_)));
    }

    #[test]
    fn permissions_survive_a_rewrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.write("run.sh", "echo 1\n");
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(w.write("run.sh", "echo 2\n"), Written::Updated);
        let mode = fs::metadata(root.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
