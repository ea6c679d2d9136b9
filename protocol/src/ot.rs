//! Operational-transform helpers on top of the `operational-transform` crate.
//!
//! The crate supplies the algebra (compose, transform) in the ot.js format:
//! lengths counted in Unicode scalar values. This module adds what it lacks:
//!
//! * a validating wire form ([`WireOp`]) — the crate's own serde impl panics
//!   on `i64::MIN` and accepts zero-length or absurd components;
//! * applying an op to a [`Rope`] in place (the crate's `apply` rebuilds the
//!   whole `String`, ~120 µs per op on a 100 KB document);
//! * splitting an op into single contiguous spans, which is how the proxy
//!   hands remote edits to editors (one `TextEdit` per `applyEdit`);
//! * building an op from two texts (prefix/suffix diff).
//!
//! Invariant: every `transform` call in Chorus passes the operation that is
//! *not yet ordered by the hub* first. The crate breaks ties between two
//! inserts at one place in favour of its first argument, so using the same
//! side everywhere is what keeps hub and proxies agreeing.

use std::fmt;

pub use operational_transform::{OTError, Operation, OperationSeq};
use ropey::Rope;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest single retain/delete count accepted from the wire. Far above any
/// real document, far below anything that could overflow length arithmetic.
pub const MAX_COMPONENT_LEN: u64 = 1 << 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    #[error("operation expects a document of {expected} characters, but it has {actual}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("operations do not fit together: {0}")]
    Incompatible(String),
}

impl From<OTError> for OpError {
    fn from(err: OTError) -> Self {
        OpError::Incompatible(err.to_string())
    }
}

/// An [`OperationSeq`] as it travels on the wire: the ot.js array form
/// `[retain, "insert", -delete]`, validated when decoded.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WireOp(pub OperationSeq);

impl Serialize for WireOp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ops = self.0.ops();
        let mut seq = serializer.serialize_seq(Some(ops.len()))?;
        for op in ops {
            match op {
                Operation::Retain(n) => seq.serialize_element(n)?,
                Operation::Delete(n) => seq.serialize_element(&-(*n as i64))?,
                Operation::Insert(s) => seq.serialize_element(s)?,
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for WireOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(WireOpVisitor)
    }
}

struct WireOpVisitor;

impl<'de> Visitor<'de> for WireOpVisitor {
    type Value = WireOp;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an ot.js operation: an array of positive integers (retain), negative integers (delete) and non-empty strings (insert)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireOp, A::Error> {
        let mut op = OperationSeq::default();
        while let Some(component) = seq.next_element::<Component>()? {
            match component {
                Component::Count(n) if n > 0 => {
                    let n = n as u64;
                    if n > MAX_COMPONENT_LEN {
                        return Err(de::Error::custom("retain count too large"));
                    }
                    op.retain(n);
                }
                Component::Count(n) if n < 0 => {
                    let n = n.unsigned_abs();
                    if n > MAX_COMPONENT_LEN {
                        return Err(de::Error::custom("delete count too large"));
                    }
                    op.delete(n);
                }
                Component::Count(_) => {
                    return Err(de::Error::custom("zero-length component"));
                }
                Component::Text(s) if s.is_empty() => {
                    return Err(de::Error::custom("empty insert"));
                }
                Component::Text(s) => op.insert(&s),
            }
        }
        Ok(WireOp(op))
    }
}

/// One element of the ot.js array. `i64` keeps the negative range and serde
/// rejects floats and out-of-range integers for us.
#[derive(Deserialize)]
#[serde(untagged)]
enum Component {
    Count(i64),
    Text(String),
}

/// Applies `op` to `rope` in place.
pub fn apply_to_rope(rope: &mut Rope, op: &OperationSeq) -> Result<(), OpError> {
    let actual = rope.len_chars();
    if op.base_len() != actual {
        return Err(OpError::LengthMismatch {
            expected: op.base_len(),
            actual,
        });
    }
    let mut pos = 0usize;
    for component in op.ops() {
        match component {
            Operation::Retain(n) => pos += *n as usize,
            Operation::Delete(n) => rope.remove(pos..pos + *n as usize),
            Operation::Insert(s) => {
                rope.insert(pos, s);
                pos += s.chars().count();
            }
        }
    }
    Ok(())
}

/// Applies `op` to a string (for tests and small texts).
pub fn apply_to_string(text: &str, op: &OperationSeq) -> Result<String, OpError> {
    let mut rope = Rope::from_str(text);
    apply_to_rope(&mut rope, op)?;
    Ok(rope.to_string())
}

/// A contiguous replacement: at character `start`, delete `deleted`
/// characters and insert `inserted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub deleted: usize,
    pub inserted: String,
}

impl Span {
    /// The same change, minus what it deletes only to insert again: the
    /// common suffix, then the common prefix, of the replaced text (in
    /// `base`) and the inserted text. Editors report replacements this way
    /// (Neovim sends Enter in mid-line as "replace `b` with `\nb`"); taken
    /// literally, a concurrent delete of `b` would be undone by the
    /// re-insert. Suffix first keeps edits away from the document's end,
    /// where editors handle ranges least well.
    pub fn trimmed(&self, base: &Rope) -> Span {
        let replaced: Vec<char> = base
            .slice(self.start..self.start + self.deleted)
            .chars()
            .collect();
        let inserted: Vec<char> = self.inserted.chars().collect();
        let suffix = replaced
            .iter()
            .rev()
            .zip(inserted.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let (replaced, inserted) = (
            &replaced[..replaced.len() - suffix],
            &inserted[..inserted.len() - suffix],
        );
        let prefix = replaced
            .iter()
            .zip(inserted.iter())
            .take_while(|(a, b)| a == b)
            .count();
        Span {
            start: self.start + prefix,
            deleted: replaced.len() - prefix,
            inserted: inserted[prefix..].iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.deleted == 0 && self.inserted.is_empty()
    }

    pub fn to_op(&self, base_len: usize) -> OperationSeq {
        let mut op = OperationSeq::default();
        op.retain(self.start as u64);
        op.delete(self.deleted as u64);
        op.insert(&self.inserted);
        op.retain((base_len - self.start - self.deleted) as u64);
        op
    }
}

/// Splits `op` into its first contiguous span and the rest, such that
/// `first ∘ rest == op`. Returns `None` for a no-op.
pub fn split_first_span(op: &OperationSeq) -> Option<(Span, OperationSeq)> {
    let ops = op.ops();
    let mut idx = 0;
    let mut start = 0usize;
    while let Some(Operation::Retain(n)) = ops.get(idx) {
        start += *n as usize;
        idx += 1;
    }
    if idx == ops.len() {
        return None;
    }
    let mut span = Span {
        start,
        deleted: 0,
        inserted: String::new(),
    };
    while let Some(component) = ops.get(idx) {
        match component {
            Operation::Retain(_) => break,
            Operation::Delete(n) => span.deleted += *n as usize,
            Operation::Insert(s) => span.inserted.push_str(s),
        }
        idx += 1;
    }
    // `rest` works on the text after `first`: the span's inserted text is
    // kept, everything after it is the original op unchanged.
    let mut rest = OperationSeq::default();
    rest.retain((start + span.inserted.chars().count()) as u64);
    for component in &ops[idx..] {
        match component {
            Operation::Retain(n) => rest.retain(*n),
            Operation::Delete(n) => rest.delete(*n),
            Operation::Insert(s) => rest.insert(s),
        }
    }
    Some((span, rest))
}

/// How long a character diff may search before settling for a coarser
/// (still correct) answer: a full-text change to a large file must not
/// stall the proxy.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(20);

/// The same for a diff that is merged with concurrent edits ([`diff_for_merge`]).
/// The coarse answer replaces a whole stretch (deletes it and inserts its
/// new text), and a concurrent insertion anywhere in that stretch then
/// lands at its edge, inside whatever word is there; a concurrent deletion
/// in it is undone. A merge is rare (a reconnect after the history is
/// gone, a file changed on disk), so it may take longer to be right.
const MERGE_DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// An op on `old` that turns it into `new`, touching as little as it can:
/// the common prefix and suffix are kept, and what lies between is diffed
/// character by character (Myers). Editors that report whole texts (full
/// sync, or several cursors at once) then change only what they changed,
/// so concurrent edits elsewhere in between survive.
///
/// A character diff is ambiguous where text repeats: `<a><b>` to
/// `<a><c><b>` is as well "insert `c><` after `<a><`" as "insert `<c>`
/// after `<a>`". The ambiguous choice matters when the op is merged with a
/// concurrent one (a reconnect's text merge, a file changed on disk): the
/// other side's insertion at the seam lands inside the word. So each pure
/// insertion or deletion is slid, within the text that is equal around it,
/// to the place whose edges are the best boundaries (line, space, outside
/// brackets), as diff-match-patch's semantic cleanup does.
pub fn diff(old: &Rope, new: &str) -> OperationSeq {
    diff_within(old, new, DIFF_DEADLINE)
}

/// [`diff`] for an op that is to be transformed against concurrent ones:
/// it searches longer before settling for a coarse answer
/// ([`MERGE_DIFF_DEADLINE`]).
pub fn diff_for_merge(old: &Rope, new: &str) -> OperationSeq {
    diff_within(old, new, MERGE_DIFF_DEADLINE)
}

fn diff_within(old: &Rope, new: &str, budget: std::time::Duration) -> OperationSeq {
    let old_len = old.len_chars();
    let new_chars: Vec<char> = new.chars().collect();
    let prefix = old
        .chars()
        .zip(new_chars.iter())
        .take_while(|(a, b)| a == *b)
        .count();
    let max_suffix = (old_len - prefix).min(new_chars.len() - prefix);
    let suffix = old
        .chars_at(old_len)
        .reversed()
        .zip(new_chars.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == *b)
        .count();
    let old_middle: Vec<char> = old.slice(prefix..old_len - suffix).chars().collect();
    let new_middle = &new_chars[prefix..new_chars.len() - suffix];
    let deadline = std::time::Instant::now() + budget;
    let steps = similar::capture_diff_slices_deadline(
        similar::Algorithm::Myers,
        &old_middle,
        new_middle,
        Some(deadline),
    );
    // Positions are counted here: `similar` reports a deletion's
    // `new_index` past where it is.
    let (mut old_at, mut new_at) = (prefix, prefix);
    let mut edits: Vec<Edit> = Vec::new();
    for step in steps {
        let (old_len, new_len) = match step {
            similar::DiffOp::Equal { len, .. } => {
                old_at += len;
                new_at += len;
                continue;
            }
            similar::DiffOp::Delete { old_len, .. } => (old_len, 0),
            similar::DiffOp::Insert { new_len, .. } => (0, new_len),
            similar::DiffOp::Replace {
                old_len, new_len, ..
            } => (old_len, new_len),
        };
        edits.push(Edit {
            old_at,
            old_len,
            new_at,
            new_len,
        });
        old_at += old_len;
        new_at += new_len;
    }
    slide_to_boundaries(&mut edits, old, &new_chars);
    let mut op = OperationSeq::default();
    let mut at = 0;
    for edit in &edits {
        op.retain((edit.old_at - at) as u64);
        op.delete(edit.old_len as u64);
        op.insert(
            &new_chars[edit.new_at..edit.new_at + edit.new_len]
                .iter()
                .collect::<String>(),
        );
        at = edit.old_at + edit.old_len;
    }
    op.retain((old_len - at) as u64);
    op
}

/// One change of a diff: `old[old_at..][..old_len]` becomes
/// `new[new_at..][..new_len]`; between two changes the texts are equal.
#[derive(Clone, Copy, Debug)]
struct Edit {
    old_at: usize,
    old_len: usize,
    new_at: usize,
    new_len: usize,
}

/// How far an edit may slide each way: far enough for any word, and a
/// bound on the work in text that repeats one character at length.
const MAX_SLIDE: usize = 256;

/// Moves each pure insertion or deletion to the best-scoring place it can
/// equally be, between the edits around it (see [`diff`]). Sliding by one
/// is possible where the character leaving one end of the edit equals the
/// one joining it at the other; the equal text around is the same in both
/// texts, so old and new positions move together.
fn slide_to_boundaries(edits: &mut [Edit], old: &Rope, new: &[char]) {
    for i in 0..edits.len() {
        let edit = edits[i];
        // The edit's own text, in the text that holds it.
        let (text, at, len, lower, upper): (&dyn Fn(usize) -> char, usize, usize, usize, usize) =
            if edit.old_len == 0 && edit.new_len > 0 {
                let lower = if i == 0 {
                    0
                } else {
                    edits[i - 1].new_at + edits[i - 1].new_len
                };
                let upper = edits.get(i + 1).map_or(new.len(), |next| next.new_at);
                (&|k| new[k], edit.new_at, edit.new_len, lower, upper)
            } else if edit.new_len == 0 && edit.old_len > 0 {
                let lower = if i == 0 {
                    0
                } else {
                    edits[i - 1].old_at + edits[i - 1].old_len
                };
                let upper = edits.get(i + 1).map_or(old.len_chars(), |next| next.old_at);
                (&|k| old.char(k), edit.old_at, edit.old_len, lower, upper)
            } else {
                continue;
            };
        // The leftmost place, then every place to the right.
        let mut start = at;
        while start > lower && at - start < MAX_SLIDE && text(start - 1) == text(start + len - 1) {
            start -= 1;
        }
        let score = |from: usize| {
            let before = (from > 0).then(|| text(from - 1));
            let after = (from + len < text_len(edit, old, new)).then(|| text(from + len));
            boundary_score(before, Some(text(from)))
                + boundary_score(Some(text(from + len - 1)), after)
        };
        let mut best = (score(at), at);
        let mut place = start;
        loop {
            let s = score(place);
            // Ties keep Myers' choice, else the leftmost best.
            if s > best.0 || (s == best.0 && place < best.1 && best.1 != at) {
                best = (s, place);
            }
            if place + len >= upper
                || place - start >= 2 * MAX_SLIDE
                || text(place) != text(place + len)
            {
                break;
            }
            place += 1;
        }
        let shift = best.1 as isize - at as isize;
        let edit = &mut edits[i];
        edit.old_at = (edit.old_at as isize + shift) as usize;
        edit.new_at = (edit.new_at as isize + shift) as usize;
    }
}

/// The length of the text an edit's characters are read from.
fn text_len(edit: Edit, old: &Rope, new: &[char]) -> usize {
    if edit.old_len == 0 {
        new.len()
    } else {
        old.len_chars()
    }
}

/// How good a place the seam between `before` and `after` is for an edit
/// to start or end at; `None` is the start or end of the text.
fn boundary_score(before: Option<char>, after: Option<char>) -> u8 {
    let (Some(a), Some(b)) = (before, after) else {
        return 6;
    };
    let opener = |c: char| matches!(c, '(' | '[' | '{' | '<');
    let closer = |c: char| matches!(c, ')' | ']' | '}' | '>');
    if a == '\n' || b == '\n' {
        5
    } else if a.is_whitespace() || b.is_whitespace() {
        4
    } else if (closer(a) || opener(b)) && !opener(a) && !closer(b) {
        3
    } else if !a.is_alphanumeric() || !b.is_alphanumeric() {
        1
    } else {
        0
    }
}

/// Transforms `op` (not yet ordered) past `ordered` (already ordered) and
/// returns `(op', ordered')`.
pub fn transform(
    op: &OperationSeq,
    ordered: &OperationSeq,
) -> Result<(OperationSeq, OperationSeq), OpError> {
    Ok(op.transform(ordered)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(json: &str) -> Result<WireOp, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn wire_round_trip() {
        let op = decode(r#"[3, "héllo", -2, 4]"#).unwrap();
        assert_eq!(op.0.base_len(), 9);
        assert_eq!(op.0.target_len(), 12);
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"[3,"héllo",-2,4]"#);
    }

    #[test]
    fn wire_rejects_garbage() {
        for bad in [
            r#"[0]"#,
            r#"[""]"#,
            r#"[1.5]"#,
            r#"[-9223372036854775808]"#,
            r#"[99999999999999]"#,
            r#"[null]"#,
            r#"{"a":1}"#,
            r#"[[1]]"#,
        ] {
            assert!(decode(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn apply_checks_length() {
        let mut rope = Rope::from_str("abc");
        let op = decode(r#"[5]"#).unwrap().0;
        assert_eq!(
            apply_to_rope(&mut rope, &op),
            Err(OpError::LengthMismatch {
                expected: 5,
                actual: 3
            })
        );
        assert_eq!(rope.to_string(), "abc");
    }

    #[test]
    fn diff_keeps_what_did_not_change_between_two_edits() {
        // Two cursors typed at once: the text between them is kept, so a
        // concurrent edit there is not undone.
        let op = diff(&Rope::from_str("abcdef"), "aXbcdeYf");
        assert_eq!(
            serde_json::to_string(&WireOp(op)).unwrap(),
            r#"[1,"X",4,"Y",1]"#
        );
    }

    #[test]
    fn diff_keeps_words_and_tags_whole_where_the_text_repeats() {
        // Greedy prefix matching would insert `c><` after `<a><`.
        let op = diff(&Rope::from_str("<a><b>"), "<a><c><b>");
        assert_eq!(
            serde_json::to_string(&WireOp(op)).unwrap(),
            r#"[3,"<c>",3]"#
        );
        let op = diff(&Rope::from_str("<a><c><b>"), "<a><b>");
        assert_eq!(serde_json::to_string(&WireOp(op)).unwrap(), r#"[3,-3,3]"#);
        let op = diff(&Rope::from_str("let x = f(a);\n"), "let x = f(a, a);\n");
        assert_eq!(
            apply_to_string("let x = f(a);\n", &op).unwrap(),
            "let x = f(a, a);\n"
        );
        // A whole line, not `\none` after `one`.
        let op = diff(&Rope::from_str("one\ntwo\n"), "one\none\ntwo\n");
        assert_eq!(
            serde_json::to_string(&WireOp(op)).unwrap(),
            r#"["one\n",8]"#
        );
    }

    #[test]
    fn trimming_keeps_only_the_change() {
        let base = Rope::from_str("ab\n");
        // Enter in mid-line, as Neovim reports it.
        let enter = Span {
            start: 1,
            deleted: 1,
            inserted: "\nb".into(),
        };
        assert_eq!(
            enter.trimmed(&base),
            Span {
                start: 1,
                deleted: 0,
                inserted: "\n".into()
            }
        );
        // A newline doubled at the end lands before the final newline.
        let doubled = Span {
            start: 2,
            deleted: 1,
            inserted: "\n\n".into(),
        };
        assert_eq!(doubled.trimmed(&base).start, 2);
        assert!(Span {
            start: 0,
            deleted: 2,
            inserted: "ab".into()
        }
        .trimmed(&base)
        .is_empty());
    }

    #[test]
    fn split_spans_in_order() {
        let op = decode(r#"[1, "X", -1, 2, -1, "YZ", 1]"#).unwrap().0;
        let (first, rest) = split_first_span(&op).unwrap();
        assert_eq!(
            first,
            Span {
                start: 1,
                deleted: 1,
                inserted: "X".into()
            }
        );
        let (second, rest2) = split_first_span(&rest).unwrap();
        assert_eq!(
            second,
            Span {
                start: 4,
                deleted: 1,
                inserted: "YZ".into()
            }
        );
        assert!(split_first_span(&rest2).is_none());
        let text = "abcdef";
        let step = apply_to_string(text, &first.to_op(6)).unwrap();
        assert_eq!(
            apply_to_string(&step, &rest).unwrap(),
            apply_to_string(text, &op).unwrap()
        );
    }

    /// A random op on a text of `len` characters.
    fn arb_op(len: usize) -> impl Strategy<Value = OperationSeq> {
        proptest::collection::vec((0usize..4, 0usize..5, "[a-zé😀\n]{0,3}"), 0..6).prop_map(
            move |steps| {
                let mut op = OperationSeq::default();
                let mut remaining = len;
                for (kind, n, s) in steps {
                    let n = n.min(remaining);
                    match kind {
                        0 => {
                            op.retain(n as u64);
                            remaining -= n;
                        }
                        1 => {
                            op.delete(n as u64);
                            remaining -= n;
                        }
                        _ => op.insert(&s),
                    }
                }
                op.retain(remaining as u64);
                op
            },
        )
    }

    fn arb_text_and_two_ops() -> impl Strategy<Value = (String, OperationSeq, OperationSeq)> {
        "[a-c\n😀é]{0,12}".prop_flat_map(|text| {
            let len = text.chars().count();
            (Just(text), arb_op(len), arb_op(len))
        })
    }

    proptest! {
        #[test]
        fn transform_converges((text, a, b) in arb_text_and_two_ops()) {
            let (a2, b2) = transform(&a, &b).unwrap();
            let left = apply_to_string(&apply_to_string(&text, &b).unwrap(), &a2).unwrap();
            let right = apply_to_string(&apply_to_string(&text, &a).unwrap(), &b2).unwrap();
            prop_assert_eq!(left, right);
        }

        #[test]
        fn rope_apply_matches_crate_apply((text, a, _b) in arb_text_and_two_ops()) {
            prop_assert_eq!(apply_to_string(&text, &a).unwrap(), a.apply(&text).unwrap());
        }

        #[test]
        fn spans_recompose((text, a, _b) in arb_text_and_two_ops()) {
            let expected = apply_to_string(&text, &a).unwrap();
            let mut current = text.clone();
            let mut rest = a.clone();
            while let Some((span, next)) = split_first_span(&rest) {
                current = apply_to_string(&current, &span.to_op(current.chars().count())).unwrap();
                rest = next;
            }
            prop_assert_eq!(current, expected);
        }

        #[test]
        fn trimmed_spans_do_the_same((text, a, _b) in arb_text_and_two_ops()) {
            let rope = Rope::from_str(&text);
            let mut rest = a.clone();
            let mut current = text.clone();
            while let Some((span, next)) = split_first_span(&rest) {
                let base = Rope::from_str(&current);
                let len = current.chars().count();
                let whole = apply_to_string(&current, &span.to_op(len)).unwrap();
                let trimmed = apply_to_string(&current, &span.trimmed(&base).to_op(len)).unwrap();
                prop_assert_eq!(&whole, &trimmed);
                current = whole;
                rest = next;
            }
            let _ = rope;
        }

        #[test]
        fn diff_reaches_target(old in "[ab<>😀\r\n ]{0,12}", new in "[ab<>😀\r\n ]{0,12}") {
            let op = diff(&Rope::from_str(&old), &new);
            prop_assert_eq!(apply_to_string(&old, &op).unwrap(), new);
        }

        #[test]
        fn wire_form_round_trips((_text, a, _b) in arb_text_and_two_ops()) {
            let json = serde_json::to_string(&WireOp(a.clone())).unwrap();
            let back: WireOp = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.0, a);
        }
    }
}
