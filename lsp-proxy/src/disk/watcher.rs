//! The file watcher: what other programs change in the workspace folder
//! (`git checkout`, `mv` in a terminal, a formatter) reaches the loop as
//! the document paths they touched, a burst at a time.
//!
//! `notify` (with `notify-debouncer-full`) rather than our own: each
//! platform's API (inotify, FSEvents, ReadDirectoryChangesW) has its own
//! traps (watches on folders made after the start, queue overflows, a
//! rename reported as two halves), and the debouncer already coalesces a
//! burst, pairs the halves of a rename and drops the events a create
//! makes redundant. What is left to us is the meaning: which paths to look
//! at. The events say little that can be trusted on their own (a rename
//! may come as a delete and a create, an editor's save as a rename over
//! the file), so the writer looks at the files themselves ([`super::writer`]'s
//! scan): the events only say where.
//!
//! Invariants:
//! * Nothing under `.git/` nor the root's `.chorus/` is reported, nor our
//!   own temporary files; the rest is filtered by the share's ignore
//!   rules when the files are listed, not here.
//! * An error or an overflow (`need_rescan`) reports the root: the whole
//!   folder is compared again, since events may have been lost.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use notify_debouncer_full::notify::event::{ModifyKind, RenameMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::writer::is_temp_name;
use crate::core::Event;
use crate::workspace::{doc_path, CHORUS_DIR};

/// How long a path stays quiet before its events are reported: a burst
/// (`git checkout`, a formatter over a tree) is looked at once, and a
/// save's half-written state (truncate, then write) is not.
const SETTLE: Duration = Duration::from_millis(150);

/// The document paths the watcher saw change, since they were last taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Files or folders; `""` is the whole root.
    pub paths: BTreeSet<String>,
    /// `(from, to)` of each rename seen whole.
    pub renames: Vec<(String, String)>,
}

impl Touched {
    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.renames.is_empty()
    }

    /// Adds what `other` saw.
    pub(crate) fn merge(&mut self, other: Touched) {
        self.paths.extend(other.paths);
        self.renames.extend(other.renames);
    }

    /// Everything: events may have been lost.
    fn everything() -> Touched {
        Touched {
            paths: BTreeSet::from([String::new()]),
            renames: Vec::new(),
        }
    }

    /// What a burst of events under `root` touched.
    fn from_events(root: &Path, events: &[(EventKind, Vec<std::path::PathBuf>, bool)]) -> Touched {
        let mut touched = Touched::default();
        for (kind, paths, rescan) in events {
            if *rescan {
                touched.paths.insert(String::new());
                continue;
            }
            if matches!(kind, EventKind::Access(_)) {
                continue;
            }
            let rel: Vec<Option<String>> = paths.iter().map(|p| relative(root, p)).collect();
            if let (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [Some(from), Some(to)]) =
                (kind, rel.as_slice())
            {
                touched.renames.push((from.clone(), to.clone()));
            }
            touched.paths.extend(rel.into_iter().flatten());
        }
        touched
    }
}

/// The watch on a folder; dropping it stops it.
pub(crate) struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// Watches `root` (canonical) and everything under it; what changes is
/// sent to the loop as [`Event::DiskTouched`].
pub(crate) fn start(root: &Path, events: mpsc::UnboundedSender<Event>) -> Result<Watcher, String> {
    let base = root.to_owned();
    let mut debouncer = new_debouncer(SETTLE, None, move |result: DebounceEventResult| {
        let touched = match result {
            Ok(batch) => {
                let batch: Vec<_> = batch
                    .iter()
                    .map(|e| (e.kind, e.paths.clone(), e.need_rescan()))
                    .collect();
                Touched::from_events(&base, &batch)
            }
            Err(errors) => {
                for error in errors {
                    warn!(cause = %error, "the file watcher reported an error; looking at the whole folder");
                }
                Touched::everything()
            }
        };
        if !touched.is_empty() {
            debug!(?touched, "changed on disk");
            let _ = events.send(Event::DiskTouched(touched));
        }
    })
    .map_err(|err| err.to_string())?;
    debouncer
        .watch(root, RecursiveMode::Recursive)
        .map_err(|err| format!("cannot watch {}: {err}", root.display()))?;
    Ok(Watcher {
        _debouncer: debouncer,
    })
}

/// The document path of `path` under `root`: `""` for the root itself,
/// `None` for what is never looked at (outside the root, `.git/`,
/// `.chorus/`, our temporary files, names no document can have).
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    if rel.as_os_str().is_empty() {
        return Some(String::new());
    }
    let doc = doc_path(rel).ok()?;
    let mut parts = doc.split('/');
    if parts.clone().any(|part| part == ".git") || parts.next() == Some(CHORUS_DIR) {
        return None;
    }
    let name = doc.rsplit('/').next().unwrap_or_default();
    (!is_temp_name(name)).then_some(doc)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use notify_debouncer_full::notify::event::{AccessKind, CreateKind, RemoveKind};

    use super::*;

    #[test]
    fn events_become_document_paths_and_renames() {
        let root = Path::new("/w");
        let p = |s: &str| PathBuf::from(s);
        let events = [
            (
                EventKind::Create(CreateKind::File),
                vec![p("/w/src/a.py")],
                false,
            ),
            (
                EventKind::Access(AccessKind::Any),
                vec![p("/w/read.py")],
                false,
            ),
            (
                EventKind::Remove(RemoveKind::File),
                vec![p("/w/.git/index.lock")],
                false,
            ),
            (
                EventKind::Create(CreateKind::File),
                vec![p("/w/.chorus/backup/x.py")],
                false,
            ),
            (
                EventKind::Create(CreateKind::File),
                vec![p("/w/src/.a.py.chorus-42.tmp")],
                false,
            ),
            (
                EventKind::Create(CreateKind::File),
                vec![p("/elsewhere/x")],
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                vec![p("/w/old.py"), p("/w/new.py")],
                false,
            ),
        ];
        let touched = Touched::from_events(root, &events);
        assert_eq!(
            touched.paths.iter().map(String::as_str).collect::<Vec<_>>(),
            ["new.py", "old.py", "src/a.py"]
        );
        assert_eq!(touched.renames, [("old.py".into(), "new.py".into())]);
        // A lost event means everything is looked at again.
        let rescan = [(EventKind::Any, vec![], true)];
        assert_eq!(Touched::from_events(root, &rescan), Touched::everything());
    }
}
