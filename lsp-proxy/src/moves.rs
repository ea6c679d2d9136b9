//! Renames and deletes in the session's tree, as the proxy sees them
//! (ADR 0005): where a path goes when a file or directory is renamed, and
//! the renames and deletes this proxy sent that the hub has yet to answer.
//!
//! Pure: `core.rs` asks, `documents.rs` and `disk.rs` move what they hold.
//!
//! Invariants:
//! * A rename or delete names a file or a directory; every path at it or
//!   under it (`from/…` → `to/…`) moves or goes, never a path that merely
//!   starts with the same letters (`src2/` is not under `src`).
//! * The proxy applies its own editor's renames and deletes at once, when
//!   it sends them (the editor has already done them), so the hub's
//!   confirmation (`renamed`/`deleted` with our client id) changes nothing:
//!   it only ends the entry in [`OwnMoves`]. A refusal ends it too, and
//!   says what the proxy undoes.

use std::collections::VecDeque;

/// Whether `path` is `dir` or a path under it.
pub(crate) fn at_or_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Where `path` is after `from` was renamed to `to`, if it moved.
pub(crate) fn moved_path(path: &str, from: &str, to: &str) -> Option<String> {
    at_or_under(path, from).then(|| format!("{to}{}", &path[from.len()..]))
}

/// A rename or delete this proxy sent and the hub has not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OwnMove {
    Rename { from: String, to: String },
    Delete { path: String },
}

/// What a refusal of one of our moves means for what the proxy holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The rename did not happen: what the proxy moved to `to` is not the
    /// session's there.
    Rename { from: String, to: String },
    /// The delete did not happen; nothing to undo (the editor's files
    /// are gone either way).
    Delete { path: String },
}

/// Our renames and deletes in flight, oldest first; the hub answers each,
/// in order, with a confirmation or an error naming one of its paths.
#[derive(Debug, Default)]
pub(crate) struct OwnMoves {
    sent: VecDeque<OwnMove>,
}

/// How many unanswered moves are remembered: a hub that never answers
/// (a connection lost meanwhile) must not make the list grow for ever.
const REMEMBERED: usize = 256;

impl OwnMoves {
    pub(crate) fn sent(&mut self, sent: OwnMove) {
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back(sent);
    }

    /// The hub confirmed one of our renames (`true`) or deletes (`false`).
    pub(crate) fn confirmed(&mut self, rename: bool) {
        let index = self
            .sent
            .iter()
            .position(|m| matches!(m, OwnMove::Rename { .. }) == rename);
        if let Some(index) = index {
            self.sent.remove(index);
        }
    }

    /// The hub refused something naming `doc`; if it was one of our moves
    /// (the oldest naming that path), what was refused.
    pub(crate) fn refused(&mut self, doc: &str) -> Option<Refused> {
        let index = self.sent.iter().position(|m| match m {
            OwnMove::Rename { from, to } => from == doc || to == doc,
            OwnMove::Delete { path } => path == doc,
        })?;
        Some(match self.sent.remove(index)? {
            OwnMove::Rename { from, to } => Refused::Rename { from, to },
            OwnMove::Delete { path } => Refused::Delete { path },
        })
    }

    /// The connection ended: the hub answers nothing sent before.
    pub(crate) fn clear(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_move_with_their_file_or_directory() {
        assert_eq!(moved_path("a.rs", "a.rs", "b.rs").as_deref(), Some("b.rs"));
        assert_eq!(
            moved_path("src/x/y.rs", "src", "lib").as_deref(),
            Some("lib/x/y.rs")
        );
        assert_eq!(
            moved_path("src/x/y.rs", "src/x", "z").as_deref(),
            Some("z/y.rs")
        );
        assert_eq!(moved_path("src2/y.rs", "src", "lib"), None);
        assert_eq!(moved_path("sr", "src", "lib"), None);
        assert_eq!(moved_path("a.rs.bak", "a.rs", "b.rs"), None);
        assert!(at_or_under("src", "src"));
        assert!(!at_or_under("src.rs", "src"));
    }

    #[test]
    fn our_moves_end_with_their_answer() {
        let mut own = OwnMoves::default();
        own.sent(OwnMove::Rename {
            from: "a".into(),
            to: "b".into(),
        });
        own.sent(OwnMove::Delete { path: "c".into() });
        own.sent(OwnMove::Rename {
            from: "d".into(),
            to: "e".into(),
        });
        own.confirmed(true);
        // Something else refused about a path none of them names.
        assert_eq!(own.refused("zzz"), None);
        assert_eq!(
            own.refused("e"),
            Some(Refused::Rename {
                from: "d".into(),
                to: "e".into()
            })
        );
        assert_eq!(own.refused("c"), Some(Refused::Delete { path: "c".into() }));
        assert_eq!(own.refused("b"), None, "confirmed already");
        own.confirmed(false);
        own.confirmed(true);
        assert!(own.sent.is_empty());
    }
}
