//! The session's file tree: what `put` and `files` do, the caps on the
//! tree, and the files listed but not synced.
//!
//! Every file of the tree is either a document (`Session::docs`, synced
//! with OT, however it arrived: `put` or an editor's `open`) or a listed
//! file (`Session::listed`: its size and why it is not synced). What a put
//! does is decided by [`decide_put`] from the tree's counts alone, without
//! IO; the actor then stores the outcome and answers.
//!
//! Invariants:
//! * a path is never both a document and a listed file: a document made at
//!   a listed path replaces the listing, and a put never lists a path that
//!   has a document (whose text may be live);
//! * documents and listed files together number at most `max_files`: a
//!   new path beyond it, by put or by open, is refused with
//!   `too_many_files` (replacing a listed file adds none);
//! * a put never makes a document larger than `max_file_bytes` or one that
//!   takes the documents' text past `max_session_bytes`; it lists the file
//!   instead. Edits and editors' opens are not held to these caps (only to
//!   `max_document_chars`), but count toward the session's total;
//! * what is stored is what is answered: a put's document or listing is
//!   written before `stored` goes out, as an op before its ack (ADR 0003).

use chorus_protocol::wire::{
    validate_doc_path, ErrorCode, FileEntry, NotSynced, PutContent, ServerMsg, WorkspaceLimits,
};
use tracing::{debug, warn};

use super::{Session, SharedDoc, Stop};
use crate::document::Document;
use crate::storage::StorageError;

/// A file of the tree that is listed but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Listed {
    /// In bytes, as the publisher reported it (or the text's, when the hub
    /// listed a text it would not keep).
    pub size: u64,
    pub reason: NotSynced,
}

/// What is at a put's path before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AtPath {
    Nothing,
    Document,
    Listed(Listed),
}

/// The tree's totals that the caps are about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TreeSize {
    /// Documents and listed files.
    pub files: u64,
    /// UTF-8 bytes of every document's text.
    pub synced_bytes: u64,
}

/// What a put does to the tree.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PutOutcome {
    /// A new path, and the tree holds `max_files` already.
    TooManyFiles,
    /// A document is at the path: its text, perhaps being edited, stays.
    KeepDocument,
    /// The same listing is there already.
    Unchanged(Listed),
    /// A new document, seeded with this text.
    Document(String),
    /// A new listing, or one replacing what was listed at the path.
    List(Listed),
}

/// Decides a put from the tree's state and the caps, without IO.
pub(super) fn decide_put(
    limits: &WorkspaceLimits,
    max_document_chars: usize,
    tree: TreeSize,
    at: AtPath,
    content: PutContent,
) -> PutOutcome {
    if at == AtPath::Document {
        return PutOutcome::KeepDocument;
    }
    if at == AtPath::Nothing && tree.files >= limits.max_files {
        return PutOutcome::TooManyFiles;
    }
    let listed = match content {
        PutContent::Text { text } => {
            let size = text.len() as u64;
            // Characters are never more than bytes: count them only when
            // the bytes alone do not settle it.
            let too_many_chars =
                text.len() > max_document_chars && text.chars().count() > max_document_chars;
            if size > limits.max_file_bytes || too_many_chars {
                Listed {
                    size,
                    reason: NotSynced::TooLarge,
                }
            } else if tree.synced_bytes.saturating_add(size) > limits.max_session_bytes {
                Listed {
                    size,
                    reason: NotSynced::SessionFull,
                }
            } else {
                return PutOutcome::Document(text);
            }
        }
        PutContent::Binary { size } => Listed {
            size,
            reason: NotSynced::Binary,
        },
        PutContent::TooLarge { size } => Listed {
            size,
            reason: NotSynced::TooLarge,
        },
    };
    if at == AtPath::Listed(listed) {
        PutOutcome::Unchanged(listed)
    } else {
        PutOutcome::List(listed)
    }
}

impl Session {
    /// Loads the session's listed files, after its documents.
    pub(super) async fn load_listed(&mut self) -> Result<(), StorageError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        for file in store.load_listed(&self.id).await? {
            if self.docs.contains_key(&file.path) {
                // Left by a hub that stopped between storing a document
                // and taking its listing away: the document is the file.
                warn!(session = %self.id, path = %file.path, "listed file is also a document; keeping the document");
                continue;
            }
            let listed = Listed {
                size: file.size,
                reason: file.reason,
            };
            self.listed.insert(file.path, listed);
        }
        Ok(())
    }

    /// `put`: adds one file to the tree, as a document or a listing, and
    /// tells the others if the tree changed.
    pub(super) async fn put(
        &mut self,
        client_id: u64,
        path: String,
        content: PutContent,
    ) -> Result<(), Stop> {
        if let Err(message) = validate_doc_path(&path) {
            self.send(
                client_id,
                &ServerMsg::error(ErrorCode::BadPath, message, Some(&path)),
            );
            return Ok(());
        }
        let at = match (self.docs.contains_key(&path), self.listed.get(&path)) {
            (true, _) => AtPath::Document,
            (false, Some(listed)) => AtPath::Listed(*listed),
            (false, None) => AtPath::Nothing,
        };
        let tree = TreeSize {
            files: self.n_files(),
            synced_bytes: self.synced_bytes,
        };
        let outcome = decide_put(
            &self.config.workspace,
            self.config.max_document_chars,
            tree,
            at,
            content,
        );
        let (created, not_synced) = match outcome {
            PutOutcome::TooManyFiles => {
                self.too_many_files(client_id, &path);
                return Ok(());
            }
            PutOutcome::KeepDocument => (false, None),
            PutOutcome::Unchanged(listed) => (false, Some(listed.reason)),
            PutOutcome::Document(text) => {
                self.create_doc(&path, &text).await?;
                (true, None)
            }
            PutOutcome::List(listed) => {
                self.list(&path, listed).await?;
                (true, Some(listed.reason))
            }
        };
        debug!(session = %self.id, client_id, %path, created, ?not_synced, "file put");
        self.send(
            client_id,
            &ServerMsg::Stored {
                path: path.clone(),
                created,
                not_synced,
            },
        );
        if created {
            self.file_added(client_id, &path);
        }
        Ok(())
    }

    /// `files`: every document and listed file, sorted by path.
    pub(super) fn files(&mut self, client_id: u64) {
        let mut entries: Vec<FileEntry> = self
            .docs
            .iter()
            .map(|(path, shared)| doc_entry(path, shared))
            .chain(
                self.listed
                    .iter()
                    .map(|(path, listed)| listed_entry(path, *listed)),
            )
            .collect();
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        self.send(client_id, &ServerMsg::Files { entries });
    }

    /// Makes a document at `path` seeded with `text`, with no subscribers:
    /// stored before anyone is told of it, replacing a listing at the path,
    /// and counted toward the session's bytes.
    pub(super) async fn create_doc(&mut self, path: &str, text: &str) -> Result<(), Stop> {
        let was_listed = self.listed.contains_key(path);
        if let Some(store) = &self.store {
            store
                .create_doc(&self.id, path, text)
                .await
                .map_err(Stop::Storage)?;
            // After the document: a hub stopping in between leaves both,
            // and loading keeps the document.
            if was_listed {
                store
                    .delete_listed(&self.id, path)
                    .await
                    .map_err(Stop::Storage)?;
            }
        }
        self.listed.remove(path);
        self.redirects.arrived(path);
        self.synced_bytes += text.len() as u64;
        let doc = Document::new(text, self.config.history_limit);
        self.docs.insert(
            path.to_owned(),
            SharedDoc {
                doc,
                subscribers: Default::default(),
            },
        );
        Ok(())
    }

    /// Lists `path` (never a document's path), stored first.
    async fn list(&mut self, path: &str, listed: Listed) -> Result<(), Stop> {
        if let Some(store) = &self.store {
            store
                .put_listed(&self.id, path, listed.size, listed.reason)
                .await
                .map_err(Stop::Storage)?;
        }
        self.listed.insert(path.to_owned(), listed);
        self.redirects.arrived(path);
        Ok(())
    }

    /// Files in the tree: documents and listed files.
    fn n_files(&self) -> u64 {
        (self.docs.len() + self.listed.len()) as u64
    }

    /// Whether a new file at `path` would take the tree past `max_files`
    /// (a path already in the tree adds none).
    pub(super) fn tree_is_full(&self, path: &str) -> bool {
        !self.docs.contains_key(path)
            && !self.listed.contains_key(path)
            && self.n_files() >= self.config.workspace.max_files
    }

    pub(super) fn too_many_files(&mut self, client_id: u64, path: &str) {
        let message = format!(
            "this session holds {} files, the most this hub allows (--max-files); {path} was not added",
            self.n_files()
        );
        self.send(
            client_id,
            &ServerMsg::error(ErrorCode::TooManyFiles, message, Some(path)),
        );
    }

    /// Tells everyone but `client_id` what is now at `path`.
    pub(super) fn file_added(&mut self, client_id: u64, path: &str) {
        let entry = match (self.docs.get(path), self.listed.get(path)) {
            (Some(shared), _) => doc_entry(path, shared),
            (None, Some(listed)) => listed_entry(path, *listed),
            (None, None) => return,
        };
        self.broadcast(&ServerMsg::FileAdded { entry }, None, Some(client_id));
    }
}

fn doc_entry(path: &str, shared: &SharedDoc) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        size: shared.doc.text().len_bytes() as u64,
        not_synced: None,
    }
}

fn listed_entry(path: &str, listed: Listed) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        size: listed.size,
        not_synced: Some(listed.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WorkspaceLimits = WorkspaceLimits {
        max_file_bytes: 10,
        max_session_bytes: 20,
        max_files: 3,
    };

    fn put(tree: (u64, u64), at: AtPath, content: PutContent) -> PutOutcome {
        let tree = TreeSize {
            files: tree.0,
            synced_bytes: tree.1,
        };
        decide_put(&LIMITS, 1000, tree, at, content)
    }

    fn text(text: &str) -> PutContent {
        PutContent::Text { text: text.into() }
    }

    fn listed(size: u64, reason: NotSynced) -> Listed {
        Listed { size, reason }
    }

    #[test]
    fn a_text_within_the_caps_becomes_a_document() {
        assert_eq!(
            put((0, 0), AtPath::Nothing, text("print(1)")),
            PutOutcome::Document("print(1)".into())
        );
        // Exactly at both caps still fits.
        assert_eq!(
            put((2, 10), AtPath::Nothing, text("0123456789")),
            PutOutcome::Document("0123456789".into())
        );
    }

    #[test]
    fn a_document_at_the_path_keeps_its_text() {
        for content in [text("new"), PutContent::Binary { size: 3 }] {
            assert_eq!(
                put((3, 20), AtPath::Document, content),
                PutOutcome::KeepDocument
            );
        }
    }

    #[test]
    fn texts_over_the_caps_are_listed() {
        // Bytes, not characters: "é" is two.
        assert_eq!(
            put((0, 0), AtPath::Nothing, text("ééééé!")),
            PutOutcome::List(listed(11, NotSynced::TooLarge))
        );
        assert_eq!(
            put((1, 15), AtPath::Nothing, text("123456")),
            PutOutcome::List(listed(6, NotSynced::SessionFull))
        );
        // Over both: too large says more.
        assert_eq!(
            put((1, 20), AtPath::Nothing, text("0123456789ab")),
            PutOutcome::List(listed(12, NotSynced::TooLarge))
        );
        let tree = TreeSize {
            files: 0,
            synced_bytes: 0,
        };
        assert_eq!(
            decide_put(&LIMITS, 3, tree, AtPath::Nothing, text("abcd")),
            PutOutcome::List(listed(4, NotSynced::TooLarge)),
            "beyond --max-document-chars"
        );
    }

    #[test]
    fn files_not_synced_are_listed_as_the_publisher_says() {
        assert_eq!(
            put((0, 0), AtPath::Nothing, PutContent::Binary { size: 4 }),
            PutOutcome::List(listed(4, NotSynced::Binary))
        );
        assert_eq!(
            put((0, 0), AtPath::Nothing, PutContent::TooLarge { size: 4 }),
            PutOutcome::List(listed(4, NotSynced::TooLarge))
        );
    }

    #[test]
    fn a_full_tree_refuses_new_paths_but_not_replacements() {
        assert_eq!(
            put((3, 0), AtPath::Nothing, text("x")),
            PutOutcome::TooManyFiles
        );
        let binary = AtPath::Listed(listed(4, NotSynced::Binary));
        assert_eq!(
            put((3, 0), binary, text("now text")),
            PutOutcome::Document("now text".into())
        );
        assert_eq!(
            put((3, 0), binary, PutContent::Binary { size: 5 }),
            PutOutcome::List(listed(5, NotSynced::Binary))
        );
        assert_eq!(
            put((3, 0), binary, PutContent::Binary { size: 4 }),
            PutOutcome::Unchanged(listed(4, NotSynced::Binary))
        );
    }
}
