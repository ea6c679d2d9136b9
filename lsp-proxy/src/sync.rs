//! Two-party sync for one document: the editor on one side, the hub on the
//! other. Pure: it consumes events and returns [`Effect`]s; `core.rs` does
//! the IO.
//!
//! ```text
//!   editor buffer ══ mirror ──[in-flight edit]──[pending]── local doc L ══ OtClient ══ hub
//! ```
//!
//! * `mirror` is the editor's text as the editor last reported it, at
//!   `version`.
//! * At most one `workspace/applyEdit` is in flight: one contiguous span
//!   (editors report a single replacement back as a single change, so its
//!   echo is recognisable). `expected` is the mirror with it applied.
//! * `pending` is every remote op not yet sent to the editor, composed, on
//!   top of the in-flight edit.
//! * Invariant: `mirror ∘ in-flight ∘ pending` is the text the [`OtClient`]
//!   considers local: the hub's text plus our unacknowledged ops.
//!
//! Echoes are detected by content: after applying a reported change to the
//! mirror, if the mirror equals `expected`, the change was our edit coming
//! back (whatever shape the editor gave it). Any other change is local: the
//! editor's version moved before our edit arrived, so the editor refuses it
//! (VS Code, Helix) or silently skips it (Neovim, which still says
//! `applied: true`). The local change is transformed past the in-flight and
//! pending edits and sent hubward, and the edits are re-sent on the new
//! version. The `applied` flag is never trusted to mean "applied"; `false`
//! only stops a coincidental local change from being taken for the echo.

use std::time::{Duration, Instant};

use chorus_protocol::client::{ClientError, OtClient};
use chorus_protocol::ot::{
    apply_to_rope, diff, split_first_span, transform, OpError, Operation, OperationSeq, Span,
};
use chorus_protocol::text::{splits_crlf, to_char, to_pos, Encoding, LinePos};
use ropey::Rope;

/// An in-flight edit nobody resolved after this long is sent again on the
/// current version, so that a skip nobody reported cannot stall the document.
pub const RESEND_AFTER: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("hub sent revision {got} but revision {expected} was next")]
    RevisionGap { expected: u64, got: u64 },
}

/// One reported change, in the editor's coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// `None` replaces the whole document.
    pub range: Option<(LinePos, LinePos)>,
    pub text: String,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send `op` to the hub, based on revision `rev`.
    SendOp { rev: u64, op: OperationSeq },
    /// Ask the editor to replace `range` with `new_text` at `version`.
    ApplyEdit {
        id: u64,
        version: i32,
        range: (LinePos, LinePos),
        new_text: String,
    },
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    span: Span,
    expected: Rope,
    sent_at: Instant,
    /// The editor answered `applied: false` (or the request failed).
    refused: bool,
}

#[derive(Debug)]
pub struct DocSync {
    mirror: Rope,
    version: i32,
    encoding: Encoding,
    ot: OtClient,
    inflight: Option<InFlight>,
    pending: Option<OperationSeq>,
    next_edit_id: u64,
}

fn is_noop(op: &OperationSeq) -> bool {
    op.ops().iter().all(|o| matches!(o, Operation::Retain(_)))
}

fn compose(first: Option<OperationSeq>, second: OperationSeq) -> Result<OperationSeq, OpError> {
    match first {
        None => Ok(second),
        Some(first) => Ok(first.compose(&second)?),
    }
}

impl DocSync {
    /// A document whose editor text is `editor_text` at `version`, joined to
    /// a hub document at `rev` with text `hub_text`. If they differ, the
    /// editor is brought to the hub's text.
    pub fn new(
        editor_text: Rope,
        version: i32,
        encoding: Encoding,
        rev: u64,
        hub_text: &str,
        out: &mut Vec<Effect>,
    ) -> Self {
        let mut doc = DocSync {
            mirror: editor_text,
            version,
            encoding,
            ot: OtClient::new(rev),
            inflight: None,
            pending: None,
            next_edit_id: 1,
        };
        doc.resync(rev, hub_text, out);
        doc
    }

    pub fn mirror(&self) -> &Rope {
        &self.mirror
    }

    pub fn rev(&self) -> u64 {
        self.ot.rev
    }

    /// Nothing unacknowledged at the hub and nothing waiting for the editor.
    pub fn is_synchronized(&self) -> bool {
        self.ot.is_synchronized() && self.inflight.is_none() && self.pending.is_none()
    }

    /// Adopts the hub's text `hub_text` at `rev` as authoritative (a fresh
    /// join or a snapshot after an error); unacknowledged local ops are lost.
    pub fn resync(&mut self, rev: u64, hub_text: &str, out: &mut Vec<Effect>) {
        self.ot = OtClient::new(rev);
        let base = match &self.inflight {
            Some(inflight) => &inflight.expected,
            None => &self.mirror,
        };
        let to_hub = diff(base, hub_text);
        self.pending = (!is_noop(&to_hub)).then_some(to_hub);
        self.dispatch(out);
    }

    /// The editor reported `changes` (applied in order), ending at `version`.
    pub fn editor_changed(
        &mut self,
        version: i32,
        changes: &[Change],
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        for change in changes {
            let op = self.change_to_op(change);
            apply_to_rope(&mut self.mirror, &op)?;
            let echo = self.inflight.as_ref().is_some_and(|f| {
                !f.refused
                    && f.expected.len_chars() == self.mirror.len_chars()
                    && f.expected == self.mirror
            });
            if echo {
                self.inflight = None;
                continue;
            }
            self.local(op, out)?;
        }
        self.version = version;
        self.dispatch(out);
        Ok(())
    }

    /// A change the user made: `c` is an op on the mirror as it was before it.
    fn local(&mut self, mut c: OperationSeq, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        let pending = self.pending.take();
        let mut carried: Option<OperationSeq> = None;
        if let Some(inflight) = self.inflight.take() {
            // The editor's version moved before our edit arrived, so the
            // edit never applies. Carry it over the local change; it goes
            // out again on the new version.
            let f = inflight.span.to_op(c.base_len());
            let (c1, f1) = transform(&c, &f)?;
            c = c1;
            carried = Some(f1);
        }
        if let Some(p) = pending {
            // `pending` sits on top of the in-flight edit (or the mirror).
            let (c2, p1) = transform(&c, &p)?;
            c = c2;
            carried = Some(compose(carried, p1)?);
        }
        self.pending = carried.filter(|p| !is_noop(p));
        self.send_local(c, out)
    }

    /// The hub ordered another participant's op as revision `rev`.
    pub fn remote(
        &mut self,
        rev: u64,
        op: &OperationSeq,
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        if rev != self.ot.rev + 1 {
            return Err(SyncError::RevisionGap {
                expected: self.ot.rev + 1,
                got: rev,
            });
        }
        let local = self.ot.remote(rev, op)?;
        if !is_noop(&local) {
            self.pending = Some(compose(self.pending.take(), local)?);
        }
        self.dispatch(out);
        Ok(())
    }

    /// The hub acknowledged our outstanding op as revision `rev`.
    pub fn ack(&mut self, rev: u64, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        if rev != self.ot.rev + 1 {
            return Err(SyncError::RevisionGap {
                expected: self.ot.rev + 1,
                got: rev,
            });
        }
        if let Some(outgoing) = self.ot.ack(rev)? {
            out.push(Effect::SendOp {
                rev: outgoing.rev,
                op: outgoing.op,
            });
        }
        Ok(())
    }

    /// The editor answered edit `id` with `applied: false`, or the request
    /// failed. Only stops a later change from being taken for its echo; the
    /// change that made it stale (if any) is on its way.
    pub fn edit_refused(&mut self, id: u64) {
        if let Some(inflight) = self.inflight.as_mut().filter(|f| f.id == id) {
            inflight.refused = true;
        }
    }

    /// Re-sends an edit that nothing resolved for [`RESEND_AFTER`]. It goes
    /// out unchanged (same span, new id): if the first copy was only slow,
    /// its echo must still match, and the editor refuses whichever copy
    /// comes second because the version moved.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        let next_id = self.next_edit_id;
        let Some(inflight) = self
            .inflight
            .as_mut()
            .filter(|f| now.duration_since(f.sent_at) >= RESEND_AFTER)
        else {
            return Ok(());
        };
        // No change arrived since it was sent (any change resolves it), so
        // the range is still right on the current mirror and version.
        inflight.id = next_id;
        inflight.sent_at = now;
        inflight.refused = false;
        let span = &inflight.span;
        out.push(Effect::ApplyEdit {
            id: next_id,
            version: self.version,
            range: (
                to_pos(&self.mirror, span.start, self.encoding),
                to_pos(&self.mirror, span.start + span.deleted, self.encoding),
            ),
            new_text: span.inserted.clone(),
        });
        self.next_edit_id += 1;
        Ok(())
    }

    /// Sends the first span of `pending` to the editor if nothing is in flight.
    fn dispatch(&mut self, out: &mut Vec<Effect>) {
        if self.inflight.is_some() {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some((mut span, rest)) = split_first_span(&pending) else {
            return;
        };
        self.pending = (!is_noop(&rest)).then_some(rest);
        // No LSP position can name the middle of a CRLF: widen the edit to
        // take the whole pair and put back what it took.
        if splits_crlf(&self.mirror, span.start) {
            span.start -= 1;
            span.deleted += 1;
            span.inserted.insert(0, '\r');
        }
        if splits_crlf(&self.mirror, span.start + span.deleted) {
            span.deleted += 1;
            span.inserted.push('\n');
        }
        let mut expected = self.mirror.clone();
        let op = span.to_op(self.mirror.len_chars());
        if apply_to_rope(&mut expected, &op).is_err() {
            // Cannot happen: the span was built on this mirror.
            return;
        }
        let id = self.next_edit_id;
        self.next_edit_id += 1;
        let range = (
            to_pos(&self.mirror, span.start, self.encoding),
            to_pos(&self.mirror, span.start + span.deleted, self.encoding),
        );
        out.push(Effect::ApplyEdit {
            id,
            version: self.version,
            range,
            new_text: span.inserted.clone(),
        });
        self.inflight = Some(InFlight {
            id,
            span,
            expected,
            sent_at: Instant::now(),
            refused: false,
        });
    }

    fn send_local(&mut self, c: OperationSeq, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        if is_noop(&c) {
            return Ok(());
        }
        if let Some(outgoing) = self.ot.local(c)? {
            out.push(Effect::SendOp {
                rev: outgoing.rev,
                op: outgoing.op,
            });
        }
        Ok(())
    }

    fn change_to_op(&self, change: &Change) -> OperationSeq {
        change_to_op(&self.mirror, change, self.encoding)
    }

    pub fn version(&self) -> i32 {
        self.version
    }
}

/// The op a reported change makes on `mirror`.
pub fn change_to_op(mirror: &Rope, change: &Change, encoding: Encoding) -> OperationSeq {
    match change.range {
        None => diff(mirror, &change.text),
        Some((start, end)) => {
            let a = to_char(mirror, start, encoding);
            let b = to_char(mirror, end, encoding);
            let (start, end) = (a.min(b), a.max(b));
            Span {
                start,
                deleted: end - start,
                inserted: change.text.clone(),
            }
            .to_op(mirror.len_chars())
        }
    }
}

/// Applies reported changes to a mirror that is not (yet) synced.
pub fn apply_changes(
    mirror: &mut Rope,
    changes: &[Change],
    encoding: Encoding,
) -> Result<(), OpError> {
    for change in changes {
        let op = change_to_op(mirror, change, encoding);
        apply_to_rope(mirror, &op)?;
    }
    Ok(())
}
