//! The disk writer: one thread that does every file operation of
//! `syncFiles` in order — the session's writes, renames and deletes, and
//! the scans the file watcher asks for — so that what it knows a file
//! holds is never made stale by a write of its own still on its way.
//!
//! Invariants:
//! * `known` holds, per path, the text this thread last wrote there or
//!   last read there. A file holding it is as we left it, and its change
//!   events are our own writes' echoes. A file holding something else was
//!   changed by another program: while watching, that change is reported
//!   with `known` as its base, to be merged into the session, and the file
//!   is not written over; without a watcher it is copied to
//!   `.chorus/backup/` before it is replaced (ADR 0006).
//! * A path with no `known` text is a first contact: a file there that
//!   differs from the session's text is backed up before it is replaced,
//!   watching or not (the session's text wins when a folder joins).
//! * Writes are atomic (a temporary file in the same folder, renamed over
//!   the old one), never outside the root: no `..`, no symbolic link on
//!   the way, nothing under `.git/` or `.chorus/`.
//! * A path the editor has open is never written, moved, nor read for a
//!   scan: its buffer owns it.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chorus_protocol::wire::{validate_doc_path, PutContent, DEFAULT_MAX_MESSAGE_BYTES};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::core::Event;
use crate::moves::{at_or_under, moved_path};
use crate::workspace::{self, LocalFile, CHORUS_DIR};

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
    /// Watching, it held neither what we last knew there (`base`) nor the
    /// session's text: another program changed it. Not written; `found`
    /// is what it holds, to be merged.
    Diverged {
        base: String,
        found: String,
    },
    /// Watching, a first write found the folder's own copy changed since
    /// watching began (it held text hashing to `was`): not written over;
    /// see [`Found::Edited`].
    Edited {
        was: u64,
        found: String,
    },
    /// Watching, it was gone although we knew it: another program deleted
    /// it. Not made again; the session is to delete it too.
    Vanished,
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

/// What a scan found changed on disk since we last wrote or read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A file (or a folder: everything under it) we keep is at `to` now,
    /// and nothing is at `from`: the watcher saw a rename, or a file that
    /// vanished holds exactly the text of one that appeared.
    Moved { from: String, to: String },
    /// A file we keep holds `found` instead of `base`.
    Changed {
        path: String,
        base: String,
        found: String,
    },
    /// A file we kept, the session lists, or the folder had when watching
    /// began, is gone.
    Vanished { path: String },
    /// A file we never kept is there, shareable (the share's ignore rules
    /// let it through), with what a `put` would send.
    Appeared { path: String, content: PutContent },
    /// A file of the folder's own (there before watching began, never
    /// kept by us) holds `found` now; it held text whose hash was `was`.
    /// For a file of the session we have yet to follow, that is a change
    /// made since the session's text came from it (the share just
    /// published it) when the session's text hashes to `was`.
    Edited {
        path: String,
        was: u64,
        found: String,
    },
}

/// What the watcher saw, for the writer to look at.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scan {
    /// Document paths (files or folders; `""` is everything) that changed.
    pub touched: Vec<String>,
    /// `(from, to)` pairs the watcher saw renamed.
    pub renames: Vec<(String, String)>,
    /// The session's files listed without content at or under `touched`:
    /// we never write them, so only the listing says they were there.
    pub listed: Vec<String>,
    /// The session's cap on one file, for what an appeared file's `put`
    /// says.
    pub max_file_bytes: u64,
}

/// One thing for the writer thread to do, in order.
pub(crate) enum Job {
    /// Puts the session's text in the file.
    Write {
        path: String,
        text: String,
    },
    /// Moves the file, as the session's rename did.
    Rename {
        from: String,
        to: String,
    },
    /// The file moved by itself (the editor or another program did it):
    /// what we know of it moves too.
    Renamed {
        from: String,
        to: String,
    },
    /// Moves the file to the backup folder: the session deleted it.
    Remove {
        path: String,
    },
    /// What we knew the files at or under `path` hold no longer counts: a
    /// file we published lost to one the session had, or another program
    /// moved it. The next write is a first contact.
    Forget {
        path: String,
    },
    /// The editor opened `path`: it may save its buffer there, which holds
    /// nothing the session lacks, so that is never a change to merge nor
    /// scan. When the disk takes the file back, a file still holding what
    /// we last wrote is simply updated; one the editor saved is backed up
    /// and replaced, as before the watcher.
    EditorTook {
        path: String,
    },
    /// `path` holds `text`: we published it from there.
    Record {
        path: String,
        text: String,
    },
    /// Someone made a new file at `path` in the session: a file that went
    /// from there before is no reason not to write it.
    Arrived {
        path: String,
    },
    /// The watcher started: from now on a file changed behind our back is
    /// reported, not replaced; the files there now that we do not know
    /// are the folder's own and stay its own until they change.
    Watch,
    Scan(Scan),
}

impl Job {
    /// The path the job is about, for the editor-has-it-open check.
    fn path(&self) -> Option<&str> {
        match self {
            Job::Write { path, .. } | Job::Remove { path } => Some(path),
            Job::Rename { to, .. } => Some(to),
            _ => None,
        }
    }

    /// Whether the job is answered with an [`Event::DiskWritten`].
    pub(crate) fn reports(&self) -> bool {
        matches!(
            self,
            Job::Write { .. } | Job::Rename { .. } | Job::Remove { .. }
        )
    }
}

pub(crate) fn spawn(
    root: PathBuf,
    editor_open: Arc<Mutex<HashSet<String>>>,
    events: mpsc::UnboundedSender<Event>,
) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::spawn(move || {
        let mut writer = Writer::new(root);
        writer.editor_open = editor_open;
        while let Ok(job) = rx.recv() {
            let owned = job.path().is_some_and(|path| writer.editor_has(path));
            let event = match job {
                Job::Write { path, .. } | Job::Remove { path } if owned => Event::DiskWritten {
                    path,
                    outcome: Written::EditorOwns,
                },
                Job::Rename { to, .. } if owned => Event::DiskWritten {
                    path: to,
                    outcome: Written::EditorOwns,
                },
                Job::Write { path, text } => {
                    let outcome = writer.write(&path, &text);
                    Event::DiskWritten { path, outcome }
                }
                Job::Rename { from, to } => {
                    let outcome = writer.rename(&from, &to);
                    Event::DiskWritten { path: to, outcome }
                }
                Job::Remove { path } => {
                    let outcome = writer.remove(&path);
                    Event::DiskWritten { path, outcome }
                }
                Job::Renamed { from, to } => {
                    writer.move_known(&from, &to);
                    continue;
                }
                Job::EditorTook { path } => {
                    if let Some(text) = writer.known.remove(&path) {
                        writer.taken.insert(path, text);
                    }
                    continue;
                }
                Job::Forget { path } => {
                    writer.known.retain(|known, _| !at_or_under(known, &path));
                    continue;
                }
                Job::Record { path, text } => {
                    writer.gone.remove(&path);
                    writer.known.insert(path, text);
                    continue;
                }
                Job::Arrived { path } => {
                    writer.gone.remove(&path);
                    continue;
                }
                Job::Watch => {
                    writer.watch();
                    continue;
                }
                Job::Scan(scan) => {
                    let found = writer.scan(&scan);
                    if found.is_empty() {
                        continue;
                    }
                    Event::DiskFound { found }
                }
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    tx
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub root: PathBuf,
    /// The text we last wrote to, or read from, each file: see the
    /// module's invariants. The whole text rather than a hash because it
    /// is the base a change found on disk is merged from.
    known: HashMap<String, String>,
    /// A file changed behind our back is reported, not replaced.
    merging: bool,
    /// Files that were in the folder when watching began and that we did
    /// not know, with a hash of what they held (`None`: too large to
    /// read): the folder's own, never published. One the session has too
    /// and that changes before we follow it is reported with the hash it
    /// had ([`Found::Edited`]).
    baseline: HashMap<String, Option<u64>>,
    /// What we last wrote to files the editor took since: see
    /// [`Job::EditorTook`].
    taken: HashMap<String, String>,
    /// Paths whose file went while watching (a scan or a first write saw
    /// it gone): a first write there does not make it again, until the
    /// session makes a new file there ([`Job::Arrived`]).
    gone: HashSet<String>,
    /// Paths the editor has open, shared with the loop.
    editor_open: Arc<Mutex<HashSet<String>>>,
}

impl Writer {
    pub(crate) fn new(root: PathBuf) -> Writer {
        Writer {
            root,
            known: HashMap::new(),
            merging: false,
            baseline: HashMap::new(),
            taken: HashMap::new(),
            gone: HashSet::new(),
            editor_open: Default::default(),
        }
    }

    fn editor_has(&self, path: &str) -> bool {
        self.editor_open
            .lock()
            .map(|open| open.contains(path))
            .unwrap_or(false)
    }

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
        // Back from the editor, the file is compared with what we wrote
        // before it took it, and never merged.
        let taken = self.taken.remove(path);
        let (known, merging) = match &taken {
            Some(taken) => (Some(taken), false),
            None => (self.known.get(path), self.merging),
        };
        let outcome = match &existing {
            Some(bytes) if bytes == text.as_bytes() => {
                self.known.insert(path.to_owned(), text.to_owned());
                return Ok(Written::Unchanged);
            }
            Some(bytes) if known.is_some_and(|k| k.as_bytes() == bytes) => Written::Updated,
            Some(bytes) => match (known, merging, as_text(bytes)) {
                (Some(base), true, Some(found)) => {
                    let outcome = Written::Diverged {
                        base: base.clone(),
                        found: found.to_owned(),
                    };
                    self.known.insert(path.to_owned(), found.to_owned());
                    return Ok(outcome);
                }
                // The folder's own copy, changed since watching began: a
                // change of the session's file if the session's text is
                // what it held then (the loop knows), never overwritten.
                (None, true, Some(found))
                    if self
                        .baseline
                        .get(path)
                        .copied()
                        .flatten()
                        .is_some_and(|was| was != hash(bytes)) =>
                {
                    let was = self
                        .baseline
                        .get(path)
                        .copied()
                        .flatten()
                        .unwrap_or_default();
                    self.baseline.insert(path.to_owned(), Some(hash(bytes)));
                    return Ok(Written::Edited {
                        was,
                        found: found.to_owned(),
                    });
                }
                // A first contact, or a change that is no text to merge.
                _ => Written::Replaced {
                    backup: self.back_up(path, bytes)?,
                },
            },
            None if known.is_some() && merging => {
                self.known.remove(path);
                return Ok(Written::Vanished);
            }
            // Gone since watching began (the folder had it, or a scan saw
            // it go): a delete or a rename the session hears of from the
            // scan, not a file to make again behind it.
            None if known.is_none()
                && self.merging
                && (self.baseline.contains_key(path) || self.gone.contains(path)) =>
            {
                self.gone.insert(path.to_owned());
                return Ok(Written::Missing);
            }
            None => Written::Created,
        };
        let dir = target.parent().ok_or("no parent folder")?;
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        // The folders just made are plain folders; check again that
        // nothing on the way became a link meanwhile.
        safe_target(&self.root, path)?;
        write_atomically(&target, text.as_bytes())?;
        self.known.insert(path.to_owned(), text.to_owned());
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
        self.move_known(from, to);
        self.remove_empty_folders(from);
        Ok(Written::Moved)
    }

    /// What we know of the files at or under `from` is now of `to`.
    fn move_known(&mut self, from: &str, to: &str) {
        let moving: Vec<String> = self
            .known
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        for old in moving {
            if let (Some(text), Some(new)) = (self.known.remove(&old), moved_path(&old, from, to)) {
                self.gone.remove(&new);
                self.known.insert(new, text);
            }
        }
        let moving: Vec<String> = self
            .baseline
            .keys()
            .filter(|path| at_or_under(path, from))
            .cloned()
            .collect();
        for old in moving {
            if let (Some(hash), Some(new)) =
                (self.baseline.remove(&old), moved_path(&old, from, to))
            {
                self.baseline.insert(new, hash);
            }
        }
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
                self.known.remove(path);
                return Ok(Written::Missing);
            }
            Err(err) => return Err(format!("{}: {err}", target.display())),
        };
        let backup = self.back_up(path, &bytes)?;
        std::fs::remove_file(&target).map_err(|err| format!("{}: {err}", target.display()))?;
        self.known.remove(path);
        self.remove_empty_folders(path);
        Ok(Written::Removed { backup })
    }

    /// Turns merging on and takes the baseline: every shareable file the
    /// folder holds that we do not know, read once to hash it.
    pub(crate) fn watch(&mut self) {
        self.merging = true;
        match workspace::list(&self.root) {
            Ok(listing) => {
                self.baseline = listing
                    .files
                    .into_iter()
                    .filter(|file| !self.known.contains_key(&file.path))
                    .map(|file| {
                        let hash = (file.size <= DEFAULT_MAX_MESSAGE_BYTES as u64)
                            .then(|| std::fs::read(&file.abs).ok().map(|b| hash(&b)))
                            .flatten();
                        (file.path, hash)
                    })
                    .collect();
            }
            Err(err) => warn!(cause = %err, "cannot list the folder to watch"),
        }
    }

    /// Compares what the watcher touched with what we know: see [`Found`].
    /// Renames come first (a change found at a renamed file's new path
    /// comes after its move), then changes, then what vanished and what
    /// appeared.
    pub(crate) fn scan(&mut self, scan: &Scan) -> Vec<Found> {
        let mut moved = Vec::new();
        let mut touched = scan.touched.clone();
        for (from, to) in &scan.renames {
            if self.renamed_on_disk(from, to) {
                let went = self
                    .known
                    .keys()
                    .chain(self.baseline.keys())
                    .filter(|path| at_or_under(path, from))
                    .cloned()
                    .collect::<Vec<_>>();
                self.gone.extend(went);
                self.move_known(from, to);
                moved.push(Found::Moved {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
            touched.push(from.clone());
            touched.push(to.clone());
        }
        let is_touched = |path: &str| touched.iter().any(|t| at_or_under(path, t));
        let mut known: Vec<String> = self
            .known
            .keys()
            .filter(|path| is_touched(path))
            .cloned()
            .collect();
        known.sort_unstable();
        let mut changed = Vec::new();
        let mut vanished: Vanished = Vec::new();
        for path in known {
            if self.editor_has(&path) {
                continue;
            }
            let bytes = match safe_target(&self.root, &path).map(std::fs::read) {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(err)) if err.kind() != std::io::ErrorKind::NotFound => {
                    warn!(%path, cause = %err, "cannot read a file that changed");
                    continue;
                }
                // Gone, or a folder or a link now: no file of ours.
                _ => {
                    let held = self.known.remove(&path).map(|text| hash(text.as_bytes()));
                    vanished.push((path, held));
                    continue;
                }
            };
            let Some(base) = self.known.get_mut(&path) else {
                continue;
            };
            if base.as_bytes() == bytes {
                continue;
            }
            match as_text(&bytes) {
                Some(found) => {
                    let base = std::mem::replace(base, found.to_owned());
                    changed.push(Found::Changed {
                        path,
                        base,
                        found: found.to_owned(),
                    });
                }
                None => warn!(%path, "a synced file is no longer text; its change is not shared"),
            }
        }
        for path in &scan.listed {
            if is_touched(path) && !self.editor_has(path) && !exists(&self.root, path) {
                vanished.push((path.clone(), None));
            }
        }
        // The folder's own files that went: the session may have them too
        // (a file just shared, not yet followed), which the loop knows.
        let mut gone_own: Vec<(String, Option<u64>)> = self
            .baseline
            .iter()
            .filter(|(path, _)| {
                is_touched(path) && !self.editor_has(path) && !exists(&self.root, path)
            })
            .map(|(path, held)| (path.clone(), *held))
            .collect();
        gone_own.sort_unstable();
        for (path, _) in &gone_own {
            self.baseline.remove(path);
        }
        let own: HashSet<String> = gone_own.iter().map(|(path, _)| path.clone()).collect();
        vanished.extend(gone_own);
        let mut appeared = Vec::new();
        let mut edited = Vec::new();
        match workspace::list_touched(&self.root, &touched) {
            Ok(listing) => {
                for file in listing.files {
                    if self.known.contains_key(&file.path)
                        || self.taken.contains_key(&file.path)
                        || self.editor_has(&file.path)
                    {
                        continue;
                    }
                    // A file the session lists is reported whatever the
                    // baseline says: its listing may be out of date.
                    if !scan.listed.contains(&file.path) {
                        if let Some(was) = self.baseline.get(&file.path) {
                            if let Some(found) = edited_since_baseline(&file, *was) {
                                edited.push(found);
                            }
                            continue;
                        }
                    }
                    match workspace::read_for_put(&file, scan.max_file_bytes) {
                        Ok(content) => appeared.push((file, content)),
                        Err(err) => {
                            debug!(path = %file.path, cause = %err, "gone before it was read")
                        }
                    }
                }
            }
            Err(err) => warn!(cause = %err, "cannot list what changed"),
        }
        self.gone
            .extend(vanished.iter().map(|(path, _)| path.clone()));
        let (pairs, vanished, appeared) = pair_by_content(vanished, appeared);
        for (from, to, text) in pairs {
            // What we knew of it, or that it is the folder's own, moves.
            if own.contains(&from) {
                self.baseline
                    .insert(to.clone(), Some(hash(text.as_bytes())));
            } else {
                self.known.insert(to.clone(), text);
            }
            moved.push(Found::Moved { from, to });
        }
        moved.extend(changed);
        moved.extend(edited);
        moved.extend(
            vanished
                .into_iter()
                .map(|(path, _)| Found::Vanished { path }),
        );
        moved.extend(appeared.into_iter().map(|(file, content)| Found::Appeared {
            path: file.path,
            content,
        }));
        moved
    }

    /// Whether the watcher's rename of `from` to `to` moved files we know
    /// (or the folder's own, which the session may have too) to where we
    /// know none, and is still so.
    fn renamed_on_disk(&self, from: &str, to: &str) -> bool {
        let knows = |dir: &str| {
            self.known
                .keys()
                .chain(self.baseline.keys())
                .any(|path| at_or_under(path, dir))
        };
        knows(from)
            && !knows(to)
            && !self.editor_has(from)
            && !exists(&self.root, from)
            && checked(&self.root, to, true).is_ok()
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

/// Files that vanished (with a hash of what they held, when known) and
/// files that appeared, as a scan finds them.
type Vanished = Vec<(String, Option<u64>)>;
type Appeared = Vec<(LocalFile, PutContent)>;

/// Files that vanished paired with files that appeared holding exactly
/// what they held (a rename the watcher saw as a delete and a create, as
/// `git` does it): `(from, to, text)`, and the rest of both lists. Only
/// what one file lost and one file gained pairs; anything else is
/// ambiguous and stays a delete and a create.
fn pair_by_content(
    vanished: Vanished,
    appeared: Appeared,
) -> (Vec<(String, String, String)>, Vanished, Appeared) {
    let mut lost: HashMap<u64, usize> = HashMap::new();
    for (_, held) in &vanished {
        if let Some(held) = held {
            *lost.entry(*held).or_default() += 1;
        }
    }
    let mut gained: HashMap<u64, usize> = HashMap::new();
    for (_, content) in &appeared {
        if let PutContent::Text { text } = content {
            *gained.entry(hash(text.as_bytes())).or_default() += 1;
        }
    }
    let unique: HashSet<u64> = lost
        .iter()
        .filter(|(held, n)| **n == 1 && gained.get(*held) == Some(&1))
        .map(|(held, _)| *held)
        .collect();
    if unique.is_empty() {
        return (Vec::new(), vanished, appeared);
    }
    let mut from_of: HashMap<u64, String> = HashMap::new();
    let mut rest_vanished = Vec::new();
    for (path, held) in vanished {
        match held {
            Some(held) if unique.contains(&held) => {
                from_of.insert(held, path);
            }
            held => rest_vanished.push((path, held)),
        }
    }
    let mut pairs = Vec::new();
    let mut rest_appeared = Vec::new();
    for (file, content) in appeared {
        let from = match &content {
            PutContent::Text { text } => from_of.remove(&hash(text.as_bytes())),
            _ => None,
        };
        match (from, content) {
            (Some(from), PutContent::Text { text }) => pairs.push((from, file.path, text)),
            (_, content) => rest_appeared.push((file, content)),
        }
    }
    pairs.sort_unstable();
    (pairs, rest_vanished, rest_appeared)
}

/// The bytes as text, when they are UTF-8 without NUL bytes (what `put`
/// calls text).
fn as_text(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// A baseline file that no longer holds what it held (`was`). The
/// baseline keeps `was` until the loop takes the change (a first write
/// that finds the file so reports it too, [`Written::Edited`]), so the
/// change is reported again if touched again, and taken once.
fn edited_since_baseline(file: &LocalFile, was: Option<u64>) -> Option<Found> {
    let was = was?;
    let bytes = std::fs::read(&file.abs).ok()?;
    if hash(&bytes) == was {
        return None;
    }
    Some(Found::Edited {
        path: file.path.clone(),
        was,
        found: as_text(&bytes)?.to_owned(),
    })
}

/// A hash of a file's bytes, to tell whether it changed.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Whether anything is at `path` under `root` (a link counts).
fn exists(root: &Path, path: &str) -> bool {
    std::fs::symlink_metadata(root.join(path)).is_ok()
}

/// Where `path` is written under `root`, or why it must not be: not a
/// plain relative path, inside `.git/` or the root's `.chorus/`, or
/// reached through a symbolic link (which could lead out of the root).
pub(crate) fn safe_target(root: &Path, path: &str) -> Result<PathBuf, String> {
    checked(root, path, false)
}

/// [`safe_target`], where `folder` lets the path be a folder.
fn checked(root: &Path, path: &str, folder: bool) -> Result<PathBuf, String> {
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
            Ok(meta) if last && meta.is_dir() && !folder => {
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

/// A temporary file beside `target`, renamed over it: readers see the old
/// content or the new, never half. Keeps the old file's permissions.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = target.parent().ok_or("no parent folder")?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("no file name")?;
    let temp = dir.join(temp_name(name));
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

/// The name of the temporary file a write to `name` goes through.
fn temp_name(name: &str) -> String {
    format!(".{name}.chorus-{}.tmp", std::process::id())
}

/// Whether a file name is one of our temporary files: the watcher need
/// not look at them.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.contains(".chorus-")
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn writer(root: &Path) -> Writer {
        Writer::new(root.canonicalize().unwrap())
    }

    fn scan(w: &mut Writer, touched: &[&str]) -> Vec<Found> {
        w.scan(&Scan {
            touched: touched.iter().map(|t| t.to_string()).collect(),
            max_file_bytes: 1000,
            ..Scan::default()
        })
    }

    fn text(text: &str) -> PutContent {
        PutContent::Text { text: text.into() }
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
        assert!(is_temp_name(&temp_name("mod.py")));
        assert!(!is_temp_name("mod.py"));
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
    fn watching_a_file_changed_behind_our_back_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("local.py"), "mine\n").unwrap();
        let mut w = writer(&root);
        w.watch();
        // A first contact still backs the local copy up.
        assert!(matches!(
            w.write("local.py", "session\n"),
            Written::Replaced { .. }
        ));
        assert_eq!(w.write("main.py", "a\n"), Written::Created);
        fs::write(root.join("main.py"), "a formatted\n").unwrap();
        assert_eq!(
            w.write("main.py", "a\nb\n"),
            Written::Diverged {
                base: "a\n".into(),
                found: "a formatted\n".into()
            }
        );
        assert_eq!(
            fs::read_to_string(root.join("main.py")).unwrap(),
            "a formatted\n",
            "not written over"
        );
        // What it found is what it knows now: the merged text goes in.
        assert_eq!(w.write("main.py", "a formatted\nb\n"), Written::Updated);
        assert!(!root.join(".chorus/backup/main.py").exists());
        // Deleted behind our back: not made again.
        fs::remove_file(root.join("main.py")).unwrap();
        assert_eq!(w.write("main.py", "a formatted\nb\nc\n"), Written::Vanished);
        assert!(!root.join("main.py").exists());
        assert_eq!(w.write("main.py", "a\n"), Written::Created);
        // A change that is no text cannot be merged: backed up, replaced.
        fs::write(root.join("main.py"), b"\0binary").unwrap();
        assert!(matches!(
            w.write("main.py", "c\n"),
            Written::Replaced { .. }
        ));
    }

    #[test]
    fn a_file_gone_since_watching_began_is_not_made_again_until_the_session_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("a.py"), "a\n").unwrap();
        let mut w = writer(&root);
        w.watch();
        // Moved away before the session's text was first written here.
        fs::rename(root.join("a.py"), root.join("b.py")).unwrap();
        assert_eq!(w.write("a.py", "a\n"), Written::Missing);
        assert!(!root.join("a.py").exists());
        assert_eq!(
            scan(&mut w, &["a.py", "b.py"]),
            [Found::Moved {
                from: "a.py".into(),
                to: "b.py".into()
            }]
        );
        assert_eq!(w.write("a.py", "a\n"), Written::Missing, "still gone");
        // Someone made a new a.py in the session.
        w.gone.remove("a.py");
        assert_eq!(w.write("a.py", "new\n"), Written::Created);
    }

    #[test]
    fn a_file_back_from_the_editor_is_never_merged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.watch();
        w.write("saved.py", "a\n");
        w.write("unsaved.py", "b\n");
        w.editor_open.lock().unwrap().insert("saved.py".into());
        for path in ["saved.py", "unsaved.py"] {
            if let Some(text) = w.known.remove(path) {
                w.taken.insert(path.into(), text);
            }
        }
        // The editor saved its buffer, whose edits the session has.
        fs::write(root.join("saved.py"), "a typed\n").unwrap();
        assert_eq!(scan(&mut w, &["saved.py", "unsaved.py"]), []);
        w.editor_open.lock().unwrap().clear();
        assert!(matches!(
            w.write("saved.py", "a typed, and more\n"),
            Written::Replaced { .. }
        ));
        assert_eq!(w.write("unsaved.py", "b more\n"), Written::Updated);
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

    #[test]
    fn a_scan_sees_our_own_writes_as_nothing_and_others_changes_as_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.watch();
        w.write("a.py", "a\n");
        w.write("pkg/b.py", "b\n");
        assert_eq!(scan(&mut w, &["a.py", "pkg"]), [], "our own writes");
        fs::write(root.join("a.py"), "a formatted\n").unwrap();
        assert_eq!(
            scan(&mut w, &["a.py"]),
            [Found::Changed {
                path: "a.py".into(),
                base: "a\n".into(),
                found: "a formatted\n".into()
            }]
        );
        assert_eq!(scan(&mut w, &["a.py"]), [], "reported once");
        fs::remove_file(root.join("pkg/b.py")).unwrap();
        assert_eq!(
            scan(&mut w, &["pkg"]),
            [Found::Vanished {
                path: "pkg/b.py".into()
            }]
        );
        // Not touched: not looked at.
        fs::write(root.join("a.py"), "again\n").unwrap();
        assert_eq!(scan(&mut w, &["pkg"]), []);
    }

    #[test]
    fn a_scan_reports_new_files_as_a_put_would_send_them_honouring_the_ignore_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        fs::write(root.join("old.txt"), "the folder's own\n").unwrap();
        let mut w = writer(&root);
        w.watch();
        fs::create_dir_all(root.join("new/deep")).unwrap();
        fs::write(root.join("new/deep/c.py"), "c\n").unwrap();
        fs::write(root.join("new/logo.png"), b"\x89PNG\0").unwrap();
        fs::write(root.join("new/debug.log"), "ignored\n").unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref\n").unwrap();
        fs::write(root.join("old.txt"), "the folder's own, edited\n").unwrap();
        assert_eq!(
            scan(&mut w, &["new", ".git/HEAD", "old.txt"]),
            [
                // Not new: the loop decides whether the change is shared.
                Found::Edited {
                    path: "old.txt".into(),
                    was: hash(b"the folder's own\n"),
                    found: "the folder's own, edited\n".into()
                },
                Found::Appeared {
                    path: "new/deep/c.py".into(),
                    content: text("c\n")
                },
                Found::Appeared {
                    path: "new/logo.png".into(),
                    content: PutContent::Binary { size: 5 }
                },
            ]
        );
        // The folder's own file counts as new once it went and came back.
        // Its going is reported: the session may have it too (shared, not
        // yet followed); the loop knows.
        fs::remove_file(root.join("old.txt")).unwrap();
        assert_eq!(
            scan(&mut w, &["old.txt"]),
            [Found::Vanished {
                path: "old.txt".into()
            }]
        );
        fs::write(root.join("old.txt"), "back\n").unwrap();
        assert_eq!(
            scan(&mut w, &["old.txt"]),
            [Found::Appeared {
                path: "old.txt".into(),
                content: text("back\n")
            }]
        );
    }

    #[test]
    fn a_delete_and_a_create_of_the_same_text_is_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.watch();
        w.write("a.py", "same\n");
        w.write("x.py", "empty twin\n");
        w.write("y.py", "empty twin\n");
        fs::rename(root.join("a.py"), root.join("b.py")).unwrap();
        fs::remove_file(root.join("x.py")).unwrap();
        fs::remove_file(root.join("y.py")).unwrap();
        fs::write(root.join("z.py"), "empty twin\n").unwrap();
        assert_eq!(
            scan(&mut w, &["a.py", "b.py", "x.py", "y.py", "z.py"]),
            [
                Found::Moved {
                    from: "a.py".into(),
                    to: "b.py".into()
                },
                Found::Vanished {
                    path: "x.py".into()
                },
                Found::Vanished {
                    path: "y.py".into()
                },
                Found::Appeared {
                    path: "z.py".into(),
                    content: text("empty twin\n")
                },
            ],
            "two files lost the same text: no rename can be told"
        );
        // The folder's own file moved is the folder's own where it went.
        fs::write(root.join("own.txt"), "own\n").unwrap();
        w.watch();
        fs::rename(root.join("own.txt"), root.join("moved.txt")).unwrap();
        assert_eq!(
            scan(&mut w, &["own.txt", "moved.txt"]),
            [Found::Moved {
                from: "own.txt".into(),
                to: "moved.txt".into()
            }]
        );
        fs::write(root.join("moved.txt"), "own, edited\n").unwrap();
        assert!(matches!(
            scan(&mut w, &["moved.txt"]).as_slice(),
            [Found::Edited { .. }]
        ));
        // What we know moved with it.
        assert_eq!(w.write("b.py", "same\nmore\n"), Written::Updated);
    }

    #[test]
    fn a_folder_the_watcher_saw_renamed_moves_whole_and_its_edits_follow() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.watch();
        w.write("src/one.py", "1\n");
        w.write("src/two.py", "2\n");
        fs::rename(root.join("src"), root.join("lib")).unwrap();
        fs::write(root.join("lib/two.py"), "2 edited\n").unwrap();
        let found = w.scan(&Scan {
            renames: vec![("src".into(), "lib".into())],
            max_file_bytes: 1000,
            ..Scan::default()
        });
        assert_eq!(
            found,
            [
                Found::Moved {
                    from: "src".into(),
                    to: "lib".into()
                },
                Found::Changed {
                    path: "lib/two.py".into(),
                    base: "2\n".into(),
                    found: "2 edited\n".into()
                },
            ]
        );
    }

    #[test]
    fn a_listed_file_that_is_gone_vanishes_and_an_open_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut w = writer(&root);
        w.watch();
        w.write("open.py", "x\n");
        w.editor_open.lock().unwrap().insert("open.py".into());
        fs::remove_file(root.join("open.py")).unwrap();
        let found = w.scan(&Scan {
            touched: vec!["open.py".into(), "logo.png".into()],
            listed: vec!["logo.png".into()],
            max_file_bytes: 1000,
            ..Scan::default()
        });
        assert_eq!(
            found,
            [Found::Vanished {
                path: "logo.png".into()
            }]
        );
    }
}
