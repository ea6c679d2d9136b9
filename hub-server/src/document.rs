//! One shared document as the hub holds it: the authoritative text, its
//! revision and the recent operations that produced it.
//!
//! Invariant: revision `r` is the text after the first `r` operations the
//! hub accepted; `history` holds the operations for revisions
//! `rev - history.len() + 1 ..= rev`, so an op based on any revision in
//! `rev - history.len() ..= rev` can be transformed up to date.

use std::collections::VecDeque;
use std::sync::Arc;

use chorus_protocol::ot::{apply_to_rope, transform, OpError, Operation, OperationSeq};
use ropey::Rope;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    #[error("revision {base} is in the future; the document is at revision {current}")]
    FutureRevision { base: u64, current: u64 },
    #[error("revision {base} is older than the history kept (oldest usable revision {oldest}); resync from the snapshot")]
    StaleRevision { base: u64, oldest: u64 },
    #[error("operation based on revision {base} does not fit the document: {source}")]
    Invalid { base: u64, source: OpError },
    #[error("the document would grow to {chars} characters; this hub allows {max}")]
    TooLarge { chars: usize, max: usize },
    #[error("an operation of {parts} parts based on revision {base} is too costly to bring past {behind} newer ones; resync from the snapshot")]
    TooCostly {
        base: u64,
        parts: usize,
        behind: usize,
    },
}

/// Transform steps one op may cost (its parts times the ops it is
/// transformed past): a few tens of milliseconds. Ordering happens inside
/// the session's actor, so an op of 200,000 parts based 2,000 revisions
/// back would otherwise stop the whole session for seconds. An honest
/// proxy's op is a keystroke or a paste (a few parts), or a merge sent
/// right after it caught up; one refused this way is merged by text.
pub const MAX_TRANSFORM_STEPS: usize = 4_000_000;

/// Bytes of history one document keeps at most, whatever `history_limit`
/// says: ops are kept in memory at roughly ten times their wire size, so a
/// history of large ops is bounded by size as well as by count.
pub const MAX_HISTORY_BYTES: usize = 8 * 1024 * 1024;

/// About how many bytes an op takes on the wire: its inserted text, and
/// a few bytes per part (a number or a quoted string and a comma).
pub fn wire_size(op: &OperationSeq) -> usize {
    op.ops()
        .iter()
        .map(|part| match part {
            Operation::Insert(text) => text.len() + 3,
            _ => 8,
        })
        .sum()
}

/// What an op costs to keep: its parts and the text it inserts.
fn weight(op: &OperationSeq) -> usize {
    let inserted: usize = op
        .ops()
        .iter()
        .map(|part| match part {
            Operation::Insert(text) => text.len(),
            _ => 0,
        })
        .sum();
    std::mem::size_of_val(op.ops()) + inserted
}

/// Who sent an op: a proxy instance and its per-document op number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub instance: Arc<str>,
    pub seq: u64,
}

pub struct Document {
    text: Rope,
    rev: u64,
    history: VecDeque<OperationSeq>,
    /// Who sent each op in `history`, index for index. Kept apart because
    /// it is read only on reconnect: inside the history entries it made the
    /// hot path ~35% slower for the same instructions (cache misses;
    /// BENCHMARKS.md).
    authors: VecDeque<Option<Box<Author>>>,
    /// Beyond this many ops a lagging client gets a snapshot instead: OT cost
    /// grows with divergence, and a client that far behind is reconnecting.
    history_limit: usize,
    /// The sum of `weight` over `history`.
    history_bytes: usize,
    /// The last op number applied from each proxy instance, beyond the
    /// history: a reconnecting proxy learns from it whether its op whose
    /// ack was lost got in. A few entries (one per proxy that edited), and
    /// the instance `Arc` is the participant's, so lookups compare pointers.
    last_seqs: Vec<(Arc<str>, u64)>,
}

impl Document {
    pub fn new(text: &str, history_limit: usize) -> Self {
        Document {
            text: Rope::from_str(text),
            rev: 0,
            history: VecDeque::new(),
            authors: VecDeque::new(),
            history_limit: history_limit.max(1),
            history_bytes: 0,
            last_seqs: Vec::new(),
        }
    }

    /// A document restored from storage at revision `rev`. Its history
    /// starts empty: proxies that were further behind resync from the text.
    pub fn restore(text: &str, rev: u64, history_limit: usize) -> Self {
        Document {
            rev,
            ..Document::new(text, history_limit)
        }
    }

    pub fn rev(&self) -> u64 {
        self.rev
    }

    pub fn text(&self) -> &Rope {
        &self.text
    }

    pub fn oldest_rev(&self) -> u64 {
        self.rev - self.history.len() as u64
    }

    /// Orders a client op based on `base_rev`: transforms it past every op
    /// the client had not seen, applies it, and returns it as applied.
    pub fn apply(
        &mut self,
        base_rev: u64,
        op: OperationSeq,
        author: Option<Author>,
    ) -> Result<OperationSeq, DocError> {
        self.apply_within(base_rev, op, author, usize::MAX)
    }

    /// [`Document::apply`], refusing an op that would leave more than
    /// `max_chars` characters. Checked after the transform: ops based on
    /// one revision can each fit alone and not together.
    pub fn apply_within(
        &mut self,
        base_rev: u64,
        mut op: OperationSeq,
        author: Option<Author>,
        max_chars: usize,
    ) -> Result<OperationSeq, DocError> {
        if base_rev > self.rev {
            return Err(DocError::FutureRevision {
                base: base_rev,
                current: self.rev,
            });
        }
        let oldest = self.oldest_rev();
        if base_rev < oldest {
            return Err(DocError::StaleRevision {
                base: base_rev,
                oldest,
            });
        }
        let invalid = |source: OpError| DocError::Invalid {
            base: base_rev,
            source,
        };
        let skip = (base_rev - oldest) as usize;
        let behind = self.history.len() - skip;
        if op.ops().len().saturating_mul(behind) > MAX_TRANSFORM_STEPS {
            return Err(DocError::TooCostly {
                base: base_rev,
                parts: op.ops().len(),
                behind,
            });
        }
        for ordered in self.history.range(skip..) {
            // The client op is not yet ordered: it goes first (see ot.rs).
            op = transform(&op, ordered).map_err(invalid)?.0;
        }
        if op.target_len() > max_chars {
            return Err(DocError::TooLarge {
                chars: op.target_len(),
                max: max_chars,
            });
        }
        apply_to_rope(&mut self.text, &op).map_err(invalid)?;
        self.log(op.clone(), author);
        Ok(op)
    }

    /// Re-applies an op from storage at the current revision.
    pub fn replay(&mut self, op: OperationSeq, author: Option<Author>) -> Result<(), DocError> {
        apply_to_rope(&mut self.text, &op).map_err(|source| DocError::Invalid {
            base: self.rev,
            source,
        })?;
        self.log(op, author);
        Ok(())
    }

    fn log(&mut self, op: OperationSeq, author: Option<Author>) {
        if let Some(author) = &author {
            match self
                .last_seqs
                .iter_mut()
                .find(|(i, _)| Arc::ptr_eq(i, &author.instance) || **i == *author.instance)
            {
                Some((_, seq)) => *seq = author.seq,
                None => self.last_seqs.push((author.instance.clone(), author.seq)),
            }
        }
        self.history_bytes += weight(&op);
        self.history.push_back(op);
        self.authors.push_back(author.map(Box::new));
        self.rev += 1;
        // The newest op always stays: a client that sent it may need it.
        while self.history.len() > self.history_limit
            || (self.history_bytes > MAX_HISTORY_BYTES && self.history.len() > 1)
        {
            if let Some(oldest) = self.history.pop_front() {
                self.history_bytes -= weight(&oldest);
            }
            self.authors.pop_front();
        }
    }

    /// The last op number applied from proxy `instance`, if any (since the
    /// hub started, or since the last snapshot it restored from).
    pub fn last_seq(&self, instance: &str) -> Option<u64> {
        self.last_seqs
            .iter()
            .find(|(i, _)| **i == *instance)
            .map(|(_, seq)| *seq)
    }

    /// The ops after revision `rev`, each with the revision it made, if the
    /// history still reaches back that far.
    pub fn since(&self, rev: u64) -> Option<Vec<(u64, &OperationSeq, Option<&Author>)>> {
        let oldest = self.oldest_rev();
        if rev < oldest || rev > self.rev {
            return None;
        }
        let skip = (rev - oldest) as usize;
        Some(
            self.history
                .range(skip..)
                .zip(self.authors.range(skip..))
                .enumerate()
                .map(|(i, (op, author))| (rev + 1 + i as u64, op, author.as_deref()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_protocol::ot::WireOp;

    fn op(json: &str) -> OperationSeq {
        serde_json::from_str::<WireOp>(json).unwrap().0
    }

    #[test]
    fn concurrent_ops_are_transformed() {
        let mut doc = Document::new("abc", 100);
        doc.apply(0, op(r#"["X", 3]"#), None).unwrap();
        // Based on revision 0, so it must be shifted past the "X".
        let applied = doc.apply(0, op(r#"[3, "Y"]"#), None).unwrap();
        assert_eq!(applied, op(r#"[4, "Y"]"#));
        assert_eq!(doc.text().to_string(), "XabcY");
        assert_eq!(doc.rev(), 2);
    }

    #[test]
    fn bad_ops_change_nothing() {
        let mut doc = Document::new("abc", 100);
        assert!(matches!(
            doc.apply(0, op(r#"[5]"#), None),
            Err(DocError::Invalid { .. })
        ));
        assert_eq!(
            doc.apply(3, op(r#"[3]"#), None),
            Err(DocError::FutureRevision {
                base: 3,
                current: 0
            })
        );
        assert_eq!(doc.text().to_string(), "abc");
        assert_eq!(doc.rev(), 0);
    }

    #[test]
    fn the_size_cap_holds_for_concurrent_ops() {
        // Each fits alone: 3 + 4 <= 8; together they would make 11.
        let mut doc = Document::new("abc", 100);
        doc.apply_within(0, op(r#"[3, "wxyz"]"#), None, 8).unwrap();
        assert_eq!(
            doc.apply_within(0, op(r#"["1234", 3]"#), None, 8),
            Err(DocError::TooLarge { chars: 11, max: 8 })
        );
        assert_eq!(doc.text().to_string(), "abcwxyz");
        assert_eq!(doc.rev(), 1);
    }

    #[test]
    fn an_op_too_costly_to_transform_is_refused() {
        let mut doc = Document::new("", 10_000);
        for rev in 0..2_000u64 {
            let keystroke = OperationSeq::default();
            let mut keystroke = keystroke;
            keystroke.retain(rev);
            keystroke.insert("k");
            doc.apply(rev, keystroke, None).unwrap();
        }
        // 4,001 parts, 2,000 ops behind: 8 million steps.
        let mut wide = OperationSeq::default();
        for _ in 0..2_000 {
            wide.insert("w");
            wide.retain(1);
        }
        wide.insert("w");
        let refused = doc.apply(0, wide.clone(), None);
        assert_eq!(
            refused,
            Err(DocError::TooCostly {
                base: 0,
                parts: 4_001,
                behind: 2_000
            })
        );
        assert_eq!(doc.rev(), 2_000, "nothing applied");
    }

    #[test]
    fn history_is_bounded_in_bytes_too() {
        let mut doc = Document::new("", 2_000);
        let big = "x".repeat(1024 * 1024);
        for rev in 0..20u64 {
            let mut op = OperationSeq::default();
            op.retain(rev * big.len() as u64);
            op.insert(&big);
            doc.apply(rev, op, None).unwrap();
        }
        assert!(
            doc.history_bytes <= MAX_HISTORY_BYTES,
            "{}",
            doc.history_bytes
        );
        assert!(doc.oldest_rev() > 10, "old large ops were let go");
        assert_eq!(doc.rev(), 20);
    }

    #[test]
    fn history_is_bounded() {
        let mut doc = Document::new("", 2);
        for rev in 0..4 {
            doc.apply(
                rev,
                op(&format!(
                    r#"[{}"x"]"#,
                    if rev == 0 {
                        String::new()
                    } else {
                        format!("{rev},")
                    }
                )),
                None,
            )
            .unwrap();
        }
        assert_eq!(doc.oldest_rev(), 2);
        assert_eq!(
            doc.apply(1, op(r#"[1, "y"]"#), None),
            Err(DocError::StaleRevision { base: 1, oldest: 2 })
        );
        assert!(doc.apply(2, op(r#"[2, "y"]"#), None).is_ok());
        assert!(doc.since(1).is_none());
        let since = doc.since(3).unwrap();
        assert_eq!(since.len(), 2);
        assert_eq!(since[0].0, 4);
    }
}
