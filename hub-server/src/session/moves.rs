//! Renames and deletes in the session's tree, ordered with the edits
//! (ADR 0005), and the table that sends messages still naming an old path
//! to where its file went.
//!
//! A rename or delete names a file or a directory; either way it is one
//! step over every file at the path or under it (`from/…` to `to/…`):
//! stored in one transaction, applied, and then told to everyone, the
//! sender included, so nobody sees half a directory moved.
//!
//! Invariants:
//! * a rename never overwrites: nothing may be at `to` or under it, so the
//!   paths a rename frees and the paths it fills never meet (which is also
//!   what lets storage move rows in one statement without a clash);
//! * a renamed document is the same document (text, revision, history,
//!   subscribers, and the path in each of its readers' open set), so an
//!   op based on any revision still transforms;
//! * [`Redirects`] never sends a path that is in the tree somewhere else:
//!   a file arriving at an old path ends the redirection from it, and
//!   deleting a file ends every redirection to it, so a late message is
//!   either applied to the file its sender meant or refused as for an
//!   unknown document (its proxy then resyncs), never applied to another;
//! * what is stored is what is told: the rows move or go before `renamed`
//!   or `deleted` is sent, as an op before its ack (ADR 0003).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Bound;

use chorus_protocol::wire::{validate_doc_path, ClientMsg, ErrorCode, ServerMsg};
use tracing::{debug, info};

use super::{Session, Stop};

/// Renames remembered per session: the newest ones, which are what a late
/// op can still name (an op in flight is seconds old at most; a proxy
/// offline longer reopens its documents by path).
const MAX_RENAMES: usize = 1024;

/// Renamed files remembered per session, over all remembered renames: a
/// bound on memory when directories of thousands of files move.
const MAX_RENAMED_FILES: usize = 65_536;

/// Whether `path` is `dir` or a path under it.
pub(super) fn at_or_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `path` is strictly under the directory `dir`.
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Where a renamed file or directory is now, and which rename said so.
#[derive(Debug)]
struct Place {
    now: String,
    rename: u64,
}

/// One remembered rename and the paths it added to the table, so that
/// forgetting it takes them out.
#[derive(Debug)]
struct Remembered {
    rename: u64,
    files: Vec<String>,
    dir: Option<String>,
}

/// The session's redirection table: old path → where that file (or
/// directory) is now, for the newest renames. Chains are resolved as they
/// happen (`a`→`b` then `b`→`c` leaves `a`→`c`). Pure: the actor tells it
/// what changed in the tree and asks it where a path went.
#[derive(Debug, Default)]
pub(super) struct Redirects {
    /// Old file path → the file's path now. Never a path in the tree.
    files: HashMap<String, Place>,
    /// Old directory → the directory's path now, for renames and deletes
    /// that name a directory someone else has just renamed. Never a
    /// directory with files in the tree.
    dirs: HashMap<String, Place>,
    /// Oldest first.
    remembered: VecDeque<Remembered>,
    /// Paths the remembered renames added (some since overwritten).
    n_files: usize,
    next_rename: u64,
}

impl Redirects {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Where the file once at `old` is now, if a remembered rename moved it.
    pub(super) fn file(&self, old: &str) -> Option<&str> {
        self.files.get(old).map(|place| place.now.as_str())
    }

    /// Where the directory once at `old` is now, if a remembered rename
    /// moved it.
    pub(super) fn dir(&self, old: &str) -> Option<&str> {
        self.dirs.get(old).map(|place| place.now.as_str())
    }

    /// A file is now at `path` (created, or moved there): the path means
    /// that file from now on, so nothing redirects from it, and a
    /// directory it lands in is no longer only what a rename put there.
    pub(super) fn arrived(&mut self, path: &str) {
        if self.is_empty() {
            return;
        }
        self.files.remove(path);
        self.dirs
            .retain(|old, place| !at_or_under(path, old) && !under(path, &place.now));
    }

    /// `from` moved to `to`, the files in `moved` (old path, new path) with
    /// it; `moved` holds every file that was at `from` or under it.
    pub(super) fn renamed(&mut self, from: &str, to: &str, moved: &[(String, String)]) {
        for (_, new) in moved {
            self.arrived(new);
        }
        let rename = self.next_rename;
        self.next_rename += 1;
        // Chains: whatever pointed at a moved file or directory follows it.
        let new_of: HashMap<&str, &str> = moved
            .iter()
            .map(|(old, new)| (old.as_str(), new.as_str()))
            .collect();
        for place in self.files.values_mut() {
            if let Some(new) = new_of.get(place.now.as_str()) {
                place.now = (*new).to_owned();
            }
        }
        for place in self.dirs.values_mut() {
            if at_or_under(&place.now, from) {
                place.now = format!("{to}{}", &place.now[from.len()..]);
            }
        }
        let mut remembered = Remembered {
            rename,
            files: Vec::with_capacity(moved.len()),
            dir: None,
        };
        for (old, new) in moved {
            let place = Place {
                now: new.clone(),
                rename,
            };
            self.files.insert(old.clone(), place);
            remembered.files.push(old.clone());
        }
        if moved.iter().any(|(old, _)| under(old, from)) {
            let place = Place {
                now: to.to_owned(),
                rename,
            };
            self.dirs.insert(from.to_owned(), place);
            remembered.dir = Some(from.to_owned());
        }
        self.n_files += remembered.files.len();
        self.remembered.push_back(remembered);
        while self.remembered.len() > MAX_RENAMES
            || (self.n_files > MAX_RENAMED_FILES && self.remembered.len() > 1)
        {
            self.forget_oldest();
        }
    }

    /// `path` and the files in `removed` (every file at it or under it)
    /// are gone: nothing redirects to them any more, so that a file made
    /// there later is not taken for them.
    pub(super) fn deleted(&mut self, path: &str, removed: &[String]) {
        if self.is_empty() {
            return;
        }
        let removed: HashSet<&str> = removed.iter().map(String::as_str).collect();
        self.files
            .retain(|_, place| !removed.contains(place.now.as_str()));
        // A directory that lost files, or was inside the one deleted, is
        // no longer what its rename moved.
        self.dirs
            .retain(|_, place| !at_or_under(&place.now, path) && !under(path, &place.now));
    }

    fn forget_oldest(&mut self) {
        let Some(oldest) = self.remembered.pop_front() else {
            return;
        };
        self.n_files -= oldest.files.len();
        for old in oldest.files {
            if self
                .files
                .get(&old)
                .is_some_and(|place| place.rename == oldest.rename)
            {
                self.files.remove(&old);
            }
        }
        if let Some(old) = oldest.dir {
            if self
                .dirs
                .get(&old)
                .is_some_and(|place| place.rename == oldest.rename)
            {
                self.dirs.remove(&old);
            }
        }
    }
}

impl Session {
    /// Every file of the tree (documents and listed files) at `path` or
    /// under it.
    fn files_at_or_under(&self, path: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .docs
            .keys()
            .filter(|doc| at_or_under(doc, path))
            .cloned()
            .collect();
        let listed = self
            .listed
            .range::<str, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(|(listed, _)| listed.starts_with(path))
            .filter(|(listed, _)| at_or_under(listed, path))
            .map(|(listed, _)| listed.clone());
        found.extend(listed);
        found
    }

    fn has_files_at_or_under(&self, path: &str) -> bool {
        self.docs.keys().any(|doc| at_or_under(doc, path))
            || self
                .listed
                .range::<str, _>((Bound::Included(path), Bound::Unbounded))
                .take_while(|(listed, _)| listed.starts_with(path))
                .any(|(listed, _)| at_or_under(listed, path))
    }

    /// Where what a participant calls `path` is now: `path` itself while
    /// anything is there, else where a remembered rename took the file or
    /// directory once there.
    fn locate(&self, path: &str) -> Option<String> {
        if self.has_files_at_or_under(path) {
            return Some(path.to_owned());
        }
        let file = self
            .redirects
            .file(path)
            .filter(|now| self.docs.contains_key(*now) || self.listed.contains_key(*now));
        let dir = || {
            self.redirects
                .dir(path)
                .filter(|now| self.has_files_at_or_under(now))
        };
        file.or_else(dir).map(str::to_owned)
    }

    /// Points an `op`, `cursor`, `checksum`, `close` or `run` that names a
    /// path with no document at the document a remembered rename took
    /// there; replies then name the document's path now.
    pub(super) fn redirect(&self, client_id: u64, msg: &mut ClientMsg) {
        if self.redirects.is_empty() {
            return;
        }
        let doc = match msg {
            ClientMsg::Op { doc, .. }
            | ClientMsg::Cursor { doc, .. }
            | ClientMsg::Checksum { doc, .. }
            | ClientMsg::Close { doc }
            | ClientMsg::Run { doc, .. } => doc,
            _ => return,
        };
        if self.docs.contains_key(doc.as_str()) {
            return;
        }
        if let Some(now) = self
            .redirects
            .file(doc)
            .filter(|now| self.docs.contains_key(*now))
        {
            debug!(session = %self.id, client_id, from = %doc, to = %now, "message for a renamed document redirected");
            *doc = now.to_owned();
        }
    }

    /// `rename`: moves the file or directory at `from` (or where a
    /// remembered rename took it) to `to`, stored first, and tells
    /// everyone.
    pub(super) async fn rename(
        &mut self,
        client_id: u64,
        from: String,
        to: String,
    ) -> Result<(), Stop> {
        for path in [&from, &to] {
            if let Err(message) = validate_doc_path(path) {
                self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::BadPath, message, Some(path)),
                );
                return Ok(());
            }
        }
        let Some(source) = self.locate(&from) else {
            return self.nothing_at(client_id, &from);
        };
        if at_or_under(&to, &source) {
            let message = if to == source {
                format!("{from} is at {to} already")
            } else {
                format!("cannot move {source} into itself ({to})")
            };
            self.send(
                client_id,
                &ServerMsg::error(ErrorCode::BadPath, message, Some(&to)),
            );
            return Ok(());
        }
        if let Some(taken) = self.files_at_or_under(&to).into_iter().min() {
            let message = if taken == to {
                format!(
                    "{to} exists in this session; a rename never replaces a file: delete it first"
                )
            } else {
                format!("{to} is a directory in this session ({taken} is in it); a rename never merges: pick a new path")
            };
            self.send(
                client_id,
                &ServerMsg::error(ErrorCode::AlreadyExists, message, Some(&to)),
            );
            return Ok(());
        }
        if let Some(store) = &self.store {
            store
                .rename_paths(&self.id, &source, &to)
                .await
                .map_err(Stop::Storage)?;
        }
        let moved: Vec<(String, String)> = self
            .files_at_or_under(&source)
            .into_iter()
            .map(|old| {
                let new = format!("{to}{}", &old[source.len()..]);
                (old, new)
            })
            .collect();
        for (old, new) in &moved {
            if let Some(shared) = self.docs.remove(old) {
                for reader in &shared.subscribers {
                    if let Some(entry) = self.participants.get_mut(reader) {
                        if entry.docs.remove(old) {
                            entry.docs.insert(new.clone());
                        }
                    }
                }
                self.docs.insert(new.clone(), shared);
            }
            if let Some(listed) = self.listed.remove(old) {
                self.listed.insert(new.clone(), listed);
            }
        }
        self.redirects.renamed(&source, &to, &moved);
        info!(session = %self.id, client_id, from = %source, %to, files = moved.len(), "renamed");
        self.broadcast(
            &ServerMsg::Renamed {
                from: source,
                to,
                client_id,
            },
            None,
            None,
        );
        Ok(())
    }

    /// `delete`: removes the file or directory at `path` (or where a
    /// remembered rename took it) with every document's history, stored
    /// first, and tells everyone. Readers keep their buffers.
    pub(super) async fn delete(&mut self, client_id: u64, path: String) -> Result<(), Stop> {
        if let Err(message) = validate_doc_path(&path) {
            self.send(
                client_id,
                &ServerMsg::error(ErrorCode::BadPath, message, Some(&path)),
            );
            return Ok(());
        }
        let Some(source) = self.locate(&path) else {
            return self.nothing_at(client_id, &path);
        };
        if let Some(store) = &self.store {
            store
                .delete_paths(&self.id, &source)
                .await
                .map_err(Stop::Storage)?;
        }
        let removed = self.files_at_or_under(&source);
        for gone in &removed {
            if let Some(shared) = self.docs.remove(gone) {
                self.synced_bytes = self
                    .synced_bytes
                    .saturating_sub(shared.doc.text().len_bytes() as u64);
                for reader in &shared.subscribers {
                    if let Some(entry) = self.participants.get_mut(reader) {
                        entry.docs.remove(gone);
                    }
                }
            }
            self.listed.remove(gone);
        }
        self.redirects.deleted(&source, &removed);
        info!(session = %self.id, client_id, path = %source, files = removed.len(), "deleted");
        self.broadcast(
            &ServerMsg::Deleted {
                path: source,
                client_id,
            },
            None,
            None,
        );
        Ok(())
    }

    fn nothing_at(&mut self, client_id: u64, path: &str) -> Result<(), Stop> {
        let message = format!("nothing is at {path} in this session's tree");
        self.send(
            client_id,
            &ServerMsg::error(ErrorCode::UnknownDocument, message, Some(path)),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn moves(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(old, new)| ((*old).to_owned(), (*new).to_owned()))
            .collect()
    }

    #[test]
    fn paths_under_a_directory() {
        assert!(at_or_under("src", "src"));
        assert!(at_or_under("src/a.rs", "src"));
        assert!(!at_or_under("srcs/a.rs", "src"));
        assert!(!at_or_under("sr", "src"));
        assert!(!under("src", "src"));
        assert!(under("src/x/y", "src/x"));
    }

    #[test]
    fn chains_end_where_the_file_is() {
        let mut table = Redirects::default();
        table.renamed("a", "b", &moves(&[("a", "b")]));
        table.renamed("b", "c", &moves(&[("b", "c")]));
        assert_eq!(table.file("a"), Some("c"));
        assert_eq!(table.file("b"), Some("c"));
        // And back: the path it returns to is in the tree, not an old one.
        table.renamed("c", "a", &moves(&[("c", "a")]));
        assert_eq!(table.file("a"), None);
        assert_eq!(table.file("b"), Some("a"));
        assert_eq!(table.file("c"), Some("a"));
    }

    #[test]
    fn a_directory_moves_its_files_and_itself() {
        let mut table = Redirects::default();
        let src = moves(&[("src/a.rs", "lib/a.rs"), ("src/x/b.rs", "lib/x/b.rs")]);
        table.renamed("src", "lib", &src);
        assert_eq!(table.file("src/x/b.rs"), Some("lib/x/b.rs"));
        assert_eq!(table.dir("src"), Some("lib"));
        // A file alone is no directory.
        table.renamed("lib/a.rs", "a.rs", &moves(&[("lib/a.rs", "a.rs")]));
        assert_eq!(table.file("src/a.rs"), Some("a.rs"));
        assert_eq!(table.dir("lib/a.rs"), None);
        // The renamed directory moves on: both names lead to it.
        table.renamed("lib", "core", &moves(&[("lib/x/b.rs", "core/x/b.rs")]));
        assert_eq!(table.dir("src"), Some("core"));
        assert_eq!(table.dir("lib"), Some("core"));
        assert_eq!(table.file("src/x/b.rs"), Some("core/x/b.rs"));
    }

    #[test]
    fn a_file_made_at_an_old_path_ends_its_redirection() {
        let mut table = Redirects::default();
        table.renamed("a", "b", &moves(&[("a", "b")]));
        table.renamed("d", "e", &moves(&[("d/x", "e/x")]));
        table.arrived("a");
        assert_eq!(table.file("a"), None);
        // A new file in the old directory: "d" is a directory again.
        table.arrived("d/new");
        assert_eq!(table.dir("d"), None);
        assert_eq!(table.file("d/x"), Some("e/x"), "files keep theirs");
    }

    #[test]
    fn deleting_a_file_ends_the_redirections_to_it() {
        let mut table = Redirects::default();
        table.renamed("a", "b", &moves(&[("a", "b")]));
        table.renamed("d", "e", &moves(&[("d/x", "e/x"), ("d/y", "e/y")]));
        table.deleted("b", &["b".to_owned()]);
        assert_eq!(table.file("a"), None);
        table.deleted("e/x", &["e/x".to_owned()]);
        assert_eq!(table.file("d/x"), None);
        assert_eq!(table.file("d/y"), Some("e/y"));
        assert_eq!(table.dir("d"), None, "no longer the directory it was");
        assert!(!table.is_empty());
        table.deleted("e", &["e/y".to_owned()]);
        assert!(table.is_empty());
    }

    #[test]
    fn only_the_newest_renames_are_remembered() {
        let mut table = Redirects::default();
        for n in 0..MAX_RENAMES + 10 {
            let (old, new) = (format!("f{n}"), format!("g{n}"));
            table.renamed(&old, &new, &[(old.clone(), new.clone())]);
        }
        assert_eq!(table.file("f0"), None);
        assert_eq!(table.file("f9"), None);
        assert_eq!(table.file("f10"), Some("g10"));
        assert_eq!(table.files.len(), MAX_RENAMES);
        // A path renamed again belongs to its newer rename.
        let mut table = Redirects::default();
        table.renamed("a", "b", &moves(&[("a", "b")]));
        table.arrived("a");
        table.renamed("a", "c", &moves(&[("a", "c")]));
        table.forget_oldest();
        assert_eq!(table.file("a"), Some("c"));
    }

    #[test]
    fn a_huge_directory_is_remembered_whole_but_forgets_older_ones() {
        let mut table = Redirects::default();
        table.renamed("a", "b", &moves(&[("a", "b")]));
        let many: Vec<(String, String)> = (0..MAX_RENAMED_FILES)
            .map(|n| (format!("d/{n}"), format!("e/{n}")))
            .collect();
        table.renamed("d", "e", &many);
        assert_eq!(table.file("a"), None);
        assert_eq!(table.file("d/7"), Some("e/7"));
        assert_eq!(table.dir("d"), Some("e"));
    }

    #[derive(Clone, Debug)]
    enum Change {
        Create(String),
        Rename(String, String),
        Delete(String),
    }

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..3)
            .prop_map(|parts| parts.join("/"))
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            path().prop_map(Change::Create),
            (path(), path()).prop_map(|(from, to)| Change::Rename(from, to)),
            path().prop_map(Change::Delete),
        ]
    }

    proptest! {
        /// Whatever the order of creates, renames and deletes, the table
        /// sends an old path to the very file that was last there, if it
        /// still exists, and nowhere else.
        #[test]
        fn the_table_follows_each_file(changes in proptest::collection::vec(change(), 0..40)) {
            let mut table = Redirects::default();
            // Path → id of the file there; id of the file last at a path.
            let mut tree: BTreeMap<String, u32> = BTreeMap::new();
            let mut last_at: BTreeMap<String, u32> = BTreeMap::new();
            let mut next_id = 0;
            for change in changes {
                match change {
                    Change::Create(path) => {
                        if tree.contains_key(&path) {
                            continue;
                        }
                        tree.insert(path.clone(), next_id);
                        last_at.insert(path.clone(), next_id);
                        next_id += 1;
                        table.arrived(&path);
                    }
                    Change::Rename(from, to) => {
                        let sources: Vec<String> =
                            tree.keys().filter(|p| at_or_under(p, &from)).cloned().collect();
                        if sources.is_empty()
                            || at_or_under(&to, &from)
                            || tree.keys().any(|p| at_or_under(p, &to))
                        {
                            continue;
                        }
                        let moved: Vec<(String, String)> = sources
                            .into_iter()
                            .map(|old| {
                                let new = format!("{to}{}", &old[from.len()..]);
                                (old, new)
                            })
                            .collect();
                        for (old, new) in &moved {
                            let id = tree.remove(old).unwrap();
                            tree.insert(new.clone(), id);
                            last_at.insert(new.clone(), id);
                        }
                        table.renamed(&from, &to, &moved);
                    }
                    Change::Delete(path) => {
                        let removed: Vec<String> =
                            tree.keys().filter(|p| at_or_under(p, &path)).cloned().collect();
                        if removed.is_empty() {
                            continue;
                        }
                        for gone in &removed {
                            tree.remove(gone);
                        }
                        table.deleted(&path, &removed);
                    }
                }
                let location: BTreeMap<u32, &String> =
                    tree.iter().map(|(path, id)| (*id, path)).collect();
                let all: BTreeSet<&String> = last_at.keys().collect();
                for old in all {
                    let expected = if tree.contains_key(old) {
                        None
                    } else {
                        location.get(&last_at[old]).map(|p| p.as_str())
                    };
                    prop_assert_eq!(table.file(old), expected, "from {}", old);
                }
                for old in table.dirs.keys() {
                    prop_assert!(!tree.keys().any(|p| at_or_under(p, old)), "{} has files", old);
                }
            }
        }
    }
}
