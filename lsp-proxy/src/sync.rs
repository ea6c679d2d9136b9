//! Two-party sync for one document: the editor on one side, the hub on the
//! other. Pure: it consumes events (each with the time it happened) and
//! returns [`Effect`]s; `documents.rs` does the IO and reads the clock.
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
//! back (whatever shape the editor gave it). Any other change is local: it
//! is transformed past the in-flight and pending edits and sent hubward.
//! The editor's version moved before our edit arrived, so the edit's fate
//! is open:
//! * Neovim without the plugin skips it and still answers `applied: true`:
//!   for it the edit is carried over the change and re-sent at once.
//! * VS Code and Helix refuse it (`applied: false`), and then it is re-sent
//!   on the new version. But VS Code may also apply it late, at its old
//!   range on the newer text, and answer `applied: true` (its extension
//!   host checks the version against a copy that can lag behind the
//!   keystroke). So for editors whose `applied` is honest the edit stays in
//!   flight, moved past the change, until the answer or its late echo
//!   comes; a late echo that landed elsewhere than the moved edit would is
//!   repaired with a follow-up edit.

use std::time::{Duration, Instant};

use chorus_protocol::client::{ClientError, OtClient, Outgoing, State};
use chorus_protocol::ot::{
    apply_to_rope, diff, diff_for_merge, split_first_span, transform, OpError, Operation,
    OperationSeq, Span,
};
use chorus_protocol::text::{checksum, fits, splits_crlf, to_char, to_pos, Encoding, LinePos};
use ropey::Rope;

/// An in-flight edit nobody resolved after this long is sent again on the
/// current version, so that a skip nobody reported cannot stall the document.
pub const RESEND_AFTER: Duration = Duration::from_millis(1000);

/// A whole-text replacement nobody answered after this long is sent again.
/// Longer than the core's wait for an `applyEdit` answer, which reports
/// a timeout itself.
const HEAL_ANSWER: Duration = Duration::from_secs(15);

/// How long, after the editor said it applied a whole-text replacement,
/// its report of it may come: VS Code answers first and reports after.
const HEAL_ECHO: Duration = Duration::from_secs(2);

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

/// A change recognised as the in-flight edit coming back.
struct Echo {
    extra: Option<OperationSeq>,
    /// It came back where the editor put it late, not where the edit
    /// stands now: this op (on the mirror) puts the text where it belongs.
    repair: Option<OperationSeq>,
}

fn ends_with(text: &Rope, suffix: &str) -> bool {
    let (len, n) = (text.len_chars(), suffix.chars().count());
    len >= n && text.slice(len - n..) == suffix
}

/// Whether `mirror` is `expected`, which does not end with a line break,
/// with one line break (`\n`, `\r\n` or `\r`) after it.
fn kept_final_line_break(mirror: &Rope, expected: &Rope) -> bool {
    let (m, e) = (mirror.len_chars(), expected.len_chars());
    let breaks = |rope: &Rope, at: usize| matches!(rope.char(at), '\n' | '\r');
    if e > 0 && breaks(expected, e - 1) {
        return false;
    }
    let kept = match m.checked_sub(e) {
        Some(1) => breaks(mirror, m - 1),
        Some(2) => ends_with(mirror, "\r\n"),
        _ => false,
    };
    kept && mirror.slice(..e) == expected.slice(..)
}

/// `text` with every line break (`\r\n`, `\r`, `\n`) turned into `eol`.
fn normalize_line_breaks(text: &str, eol: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', eol)
}

/// The outcome of [`DocSync::audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audit {
    /// Edits in flight: nothing to compare now.
    Busy,
    Clean {
        rev: u64,
        hash: String,
    },
    /// The editor's text differed from the hub's; it is being repaired.
    Drifted {
        rev: u64,
        hash: String,
    },
}

/// One op from the hub's history, replayed after an outage.
#[derive(Clone, Debug, PartialEq)]
pub enum CaughtUp {
    /// Our own outstanding op: its ack was lost.
    Ours {
        rev: u64,
    },
    Theirs {
        rev: u64,
        op: OperationSeq,
    },
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send `op` to the hub, based on revision `rev`, numbered `seq`.
    SendOp {
        rev: u64,
        op: OperationSeq,
        seq: u64,
    },
    /// Ask the editor to replace `range` with `new_text` at `version`.
    ApplyEdit {
        id: u64,
        version: i32,
        range: (LinePos, LinePos),
        new_text: String,
    },
    /// Ask the editor to replace its whole text with `text`, whatever its
    /// version and length: the mirror cannot say what they are (see
    /// [`DocSync::heal`]).
    ReplaceAll { id: u64, text: String },
}

/// The whole-text edit [`DocSync::heal`] sent, until the editor applies it.
#[derive(Debug)]
struct Healing {
    id: u64,
    /// What the editor holds once it is applied.
    text: Rope,
    sent_at: Instant,
    /// The editor's text as its reports since the heal make it, from the
    /// mirror at the time (a best guess: the mirror was not trusted);
    /// `None` once a report does not fit it.
    shadow: Option<Rope>,
    /// When the editor said it applied the replacement while its report of
    /// it had not come yet (VS Code answers first): that report, a diff
    /// against its old text, must not be read as typing.
    answered_at: Option<Instant>,
}

#[derive(Debug)]
struct InFlight {
    /// Request ids of every copy sent (more than one after a resend).
    ids: Vec<u64>,
    /// The edit as an op on the current mirror (moved past local changes
    /// made since it was sent; then it may be a no-op, or more than one
    /// span).
    op: OperationSeq,
    /// The edit as sent, while no local change has moved it.
    span: Option<Span>,
    expected: Rope,
    sent_at: Instant,
    /// The latest copy as the editor got it: its range, text and version.
    /// An editor that applies it late applies exactly this.
    sent: (LinePos, LinePos, String),
    sent_version: i32,
    /// Local changes came after it was sent, so `op` differs from `sent`.
    moved: bool,
    /// Some copy was answered `applied: true`.
    applied: bool,
    /// Copies answered `applied: false`.
    refusals: usize,
    /// Copies not answered at all yet.
    unanswered: usize,
}

impl InFlight {
    /// Every copy was refused: nothing of it reaches the buffer.
    fn refused(&self) -> bool {
        !self.applied && self.refusals == self.ids.len()
    }
}

/// A change whose result matched the in-flight edit's expected text before
/// the editor answered. It is the echo unless the editor refuses the edit,
/// in which case the user typed exactly what the edit would have done.
#[derive(Debug)]
struct Held {
    op: OperationSeq,
    /// For an echo the editor reshaped (line breaks converted to its own),
    /// the difference from what we sent: a local change on top of it.
    extra: Option<OperationSeq>,
    /// For a late echo: the edit that puts its text where it belongs.
    repair: Option<OperationSeq>,
    since: Instant,
    /// Changes reported after it, replayed once it is classified.
    later: Vec<(i32, Vec<Change>)>,
}

#[derive(Debug)]
pub struct DocSync {
    mirror: Rope,
    version: i32,
    encoding: Encoding,
    ot: OtClient,
    inflight: Option<InFlight>,
    held: Option<Held>,
    pending: Option<OperationSeq>,
    next_edit_id: u64,
    /// Number of the next op sent hubward, and of the one awaiting its ack.
    next_seq: u64,
    outstanding_seq: Option<u64>,
    /// Where the user's last own change ended (mirror offset): their
    /// cursor, as far as an editor without a plugin lets us know it.
    local_cursor: Option<usize>,
    /// The hub's text at `ot.rev`: the common base for a three-way merge
    /// when the connection comes back after an outage.
    server: Rope,
    /// Whether the editor's `applied: true` means applied (or will be).
    /// False for Neovim without the Chorus plugin, which says it for edits
    /// it skipped.
    applied_is_honest: bool,
    /// When the event being handled happened, as the caller says: the
    /// clock is never read here, so a simulation replays exactly.
    now: Instant,
    /// The mirror is not to be trusted and the editor is being brought to
    /// this text whole; until it says it did, its changes are not read.
    healing: Option<Healing>,
    /// How many times [`DocSync::heal`] ran, for the log and the user.
    heals: u64,
    /// Our rejoin (`open` with `since`) is unanswered. An op sent now
    /// would reach the hub after it wrote that answer; the answer's history
    /// would not hold it, so [`DocSync::catch_up`] would send it again and
    /// the hub apply it twice. Ops made meanwhile stay outstanding, unsent,
    /// and go out with the answer.
    rejoining: bool,
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
        now: Instant,
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
            held: None,
            pending: None,
            next_edit_id: 1,
            next_seq: 1,
            outstanding_seq: None,
            local_cursor: None,
            server: Rope::from_str(hub_text),
            applied_is_honest: true,
            now,
            healing: None,
            heals: 0,
            rejoining: false,
        };
        doc.resync(now, rev, hub_text, out);
        doc
    }

    /// Numbers the ops sent from now on from `first` up (see
    /// `documents::op_numbers`). Only before the first op is sent.
    pub fn number_ops_from(&mut self, first: u64) {
        if self.outstanding_seq.is_none() {
            self.next_seq = first.max(1);
        }
    }

    pub fn mirror(&self) -> &Rope {
        &self.mirror
    }

    /// See [`DocSync::applied_is_honest`]; true unless told otherwise.
    pub fn set_applied_is_honest(&mut self, honest: bool) {
        self.applied_is_honest = honest;
    }

    pub fn rev(&self) -> u64 {
        self.ot.rev
    }

    /// The end of the user's last own change, once.
    pub fn take_local_cursor(&mut self) -> Option<usize> {
        self.local_cursor.take()
    }

    /// Changes are held until the editor answers the in-flight edit.
    pub fn awaiting_answer(&self) -> bool {
        self.held.is_some()
    }

    /// Nothing unacknowledged at the hub and nothing waiting for the editor.
    pub fn is_synchronized(&self) -> bool {
        self.ot.is_synchronized()
            && self.inflight.is_none()
            && self.held.is_none()
            && self.pending.is_none()
            && self.healing.is_none()
    }

    /// The editor's text can no longer be told from the mirror (a change it
    /// sent arrived damaged, or a plugin saw its buffer differ): replace it
    /// whole with the text this proxy holds, which is the hub's plus our
    /// unacknowledged ops. Changes the editor reports until it applies that
    /// are not read (their positions mean nothing against the mirror): the
    /// user's typing in that moment is overwritten, never sent.
    pub fn heal(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.now = now;
        self.heals += 1;
        let text = self.local_text();
        self.inflight = None;
        self.held = None;
        self.pending = None;
        let shadow = Some(self.mirror.clone());
        self.send_heal(text, shadow, out);
    }

    fn send_heal(&mut self, text: Rope, shadow: Option<Rope>, out: &mut Vec<Effect>) {
        let id = self.next_edit_id;
        self.next_edit_id += 1;
        out.push(Effect::ReplaceAll {
            id,
            text: text.to_string(),
        });
        self.healing = Some(Healing {
            id,
            text,
            sent_at: self.now,
            shadow,
            answered_at: None,
        });
    }

    /// The replacement is in the editor: its text is the healed one.
    fn healed(&mut self, text: Rope, out: &mut Vec<Effect>) {
        self.healing = None;
        self.mirror = text;
        self.dispatch(out);
    }

    /// Whether a whole-text replacement is on its way to the editor.
    pub fn is_healing(&self) -> bool {
        self.healing.is_some()
    }

    /// How many times the editor's text was replaced whole because it
    /// could not be trusted (a damaged change, a range outside the mirror,
    /// a version going back).
    pub fn heals(&self) -> u64 {
        self.heals
    }

    /// Adopts the hub's text `hub_text` at `rev` as authoritative (a fresh
    /// join or a snapshot after an error); unacknowledged local ops are lost.
    pub fn resync(&mut self, now: Instant, rev: u64, hub_text: &str, out: &mut Vec<Effect>) {
        self.now = now;
        self.rejoining = false;
        self.ot = OtClient::new(rev);
        self.server = Rope::from_str(hub_text);
        let base = match (&self.healing, &self.inflight) {
            (Some(healing), _) => &healing.text,
            (None, Some(inflight)) => &inflight.expected,
            (None, None) => &self.mirror,
        };
        let to_hub = diff_for_merge(base, hub_text);
        self.pending = (!is_noop(&to_hub)).then_some(to_hub);
        self.dispatch(out);
    }

    /// The editor reopened the document under another name (a rename,
    /// ADR 0005) with `text` at `version`: its versions start again. A
    /// text that differs from the mirror is a change like any other: the
    /// echo of the edit in flight, if the editor applied it before the
    /// rename (one it did not apply is refused and sent again, to the new
    /// name), else the user's typing.
    pub fn reopened(
        &mut self,
        now: Instant,
        version: i32,
        text: &str,
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        self.now = now;
        self.version = version;
        if self.mirror == text {
            return Ok(());
        }
        let whole = Change {
            range: None,
            text: text.to_owned(),
        };
        self.editor_changed(now, version, &[whole], out)
    }

    /// The editor reported `changes` (applied in order), ending at `version`.
    pub fn editor_changed(
        &mut self,
        now: Instant,
        version: i32,
        changes: &[Change],
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        self.now = now;
        if let Some(healing) = &mut self.healing {
            // Not read as typing: the replacement overwrites it. Followed
            // only to tell when the replacement's own report has come.
            self.version = version;
            if let Some(shadow) = &mut healing.shadow {
                if apply_changes(shadow, changes, self.encoding).is_err() {
                    healing.shadow = None;
                }
            }
            if healing.answered_at.is_some() && healing.shadow.as_ref() == Some(&healing.text) {
                let text = healing.text.clone();
                self.healed(text, out);
            }
            return Ok(());
        }
        if let Some(held) = &mut self.held {
            held.later.push((version, changes.to_vec()));
            return Ok(());
        }
        if version < self.version {
            // Versions only grow: this editor's document is not the one
            // the mirror follows.
            self.heal(now, out);
            self.version = version;
            return Ok(());
        }
        for (idx, change) in changes.iter().enumerate() {
            let outside = change.range.is_some_and(|(start, end)| {
                !fits(&self.mirror, start, self.encoding) || !fits(&self.mirror, end, self.encoding)
            });
            if outside {
                self.heal(now, out);
                self.version = version;
                return Ok(());
            }
            let op = self.change_to_op(change);
            let before = self.mirror.clone();
            apply_to_rope(&mut self.mirror, &op)?;
            let Some(echo) = self.recognise_echo(&before) else {
                self.local(op, out)?;
                continue;
            };
            if self.inflight.as_ref().is_some_and(|f| f.applied) {
                // Already answered: it is the echo. The next edit goes out
                // below, once `version` is current.
                self.inflight = None;
                self.settle_echo(echo, out)?;
                continue;
            }
            // Wait for the editor's answer before deciding.
            self.version = version;
            self.held = Some(Held {
                op,
                extra: echo.extra,
                repair: echo.repair,
                since: self.now,
                later: vec![(version, changes[idx + 1..].to_vec())],
            });
            return Ok(());
        }
        self.version = version;
        self.dispatch(out);
        Ok(())
    }

    /// The editor answered edit `id`: `Some(applied)`, or `None` when the
    /// request failed or timed out. `applied: true` alone proves nothing
    /// (Neovim says it for edits it skipped); it only settles a change that
    /// already matched by content.
    pub fn edit_answered(
        &mut self,
        now: Instant,
        id: u64,
        applied: Option<bool>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        self.now = now;
        if let Some(mut healing) = self.healing.take_if(|h| h.id == id) {
            if applied != Some(true) {
                // Refused or unanswered: nothing else can be trusted
                // either, so ask again.
                self.send_heal(healing.text, healing.shadow, out);
            } else if healing
                .shadow
                .as_ref()
                .is_none_or(|shadow| *shadow == healing.text)
            {
                // Reported already (or the editor held that text, or its
                // reports cannot tell): it is in.
                self.healed(healing.text, out);
            } else {
                healing.answered_at = Some(now);
                self.healing = Some(healing);
            }
            return Ok(());
        }
        if self.healing.is_some() {
            return Ok(()); // an edit from before: the replacement covers it
        }
        let Some(inflight) = self.inflight.as_mut().filter(|f| f.ids.contains(&id)) else {
            return Ok(());
        };
        inflight.unanswered = inflight.unanswered.saturating_sub(1);
        match applied {
            Some(true) => inflight.applied = true,
            Some(false) => inflight.refusals += 1,
            // No answer: the content match, if any, is the best evidence.
            None if self.held.is_some() => inflight.applied = true,
            None => {}
        }
        let decided = inflight.applied || inflight.refused();
        if decided && self.held.is_some() {
            self.settle_held(out)?;
        } else if inflight.refused() && inflight.sent_version != self.version {
            // Refused because the version moved: the changes that moved it
            // are in; send it again on the new version.
            if let Some(refused) = self.inflight.take() {
                self.replan(refused.op)?;
                self.dispatch(out);
            }
        }
        Ok(())
    }

    /// Classifies the held change (echo unless every copy was refused) and
    /// replays what the editor reported after it.
    fn settle_held(&mut self, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        if self.inflight.as_ref().is_some_and(InFlight::refused) {
            self.local(held.op, out)?;
        } else {
            self.inflight = None;
            self.settle_echo(
                Echo {
                    extra: held.extra,
                    repair: held.repair,
                },
                out,
            )?;
        }
        for (version, changes) in held.later {
            self.editor_changed(self.now, version, &changes, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    /// The in-flight edit came back (it is already out of `inflight`).
    fn settle_echo(&mut self, echo: Echo, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        if let Some(repair) = echo.repair {
            // The editor holds the edit at the wrong place; `pending`
            // still stands on the text it should have had. (A repaired
            // late echo cannot also be reshaped.)
            return self.replan(repair);
        }
        if let Some(extra) = echo.extra {
            self.local(extra, out)?;
        }
        Ok(())
    }

    /// Whether the mirror (just changed from `before`) now shows the
    /// in-flight edit: exactly, or with its line breaks converted the way
    /// VS Code converts inserted text to the document's end-of-line, or
    /// applied late at the range it was sent with.
    fn recognise_echo(&self, before: &Rope) -> Option<Echo> {
        let f = self.inflight.as_ref().filter(|f| !f.refused())?;
        if f.expected.len_chars() == self.mirror.len_chars() && f.expected == self.mirror {
            return Some(Echo {
                extra: None,
                repair: None,
            });
        }
        if kept_final_line_break(&self.mirror, &f.expected) {
            // Neovim (its 'eol' on, as for every buffer it made) cannot
            // hold a text that does not end with a line break: asked to
            // delete the last one, it reports the rest of the edit alone.
            // Waiting for the deletion asked for it again and again, for
            // good. So the edit came back, and the line break it kept is
            // the editor's own edit: the session's text ends with one
            // again.
            return Some(Echo {
                extra: Some(diff(&f.expected, &self.mirror.to_string())),
                repair: None,
            });
        }
        if f.moved {
            let (from, to, text) = &f.sent;
            let start = to_char(before, *from, self.encoding);
            let end = to_char(before, *to, self.encoding).max(start);
            let late = Span {
                start,
                deleted: end - start,
                inserted: text.clone(),
            };
            let mut candidate = before.clone();
            if apply_to_rope(&mut candidate, &late.to_op(before.len_chars())).is_ok()
                && candidate.len_chars() == self.mirror.len_chars()
                && candidate == self.mirror
            {
                // Undo exactly what the editor did (its text put back, the
                // edit's text taken out) and do the edit where it stands
                // now. Only the edit's own text moves: a repair made by
                // diffing could move the user's text instead, and then lose
                // their next keystroke on it.
                let undo = Span {
                    start,
                    deleted: late.inserted.chars().count(),
                    inserted: before.slice(start..end).to_string(),
                }
                .to_op(self.mirror.len_chars());
                let repair = undo.compose(&f.op).ok()?;
                return Some(Echo {
                    extra: None,
                    repair: Some(repair),
                });
            }
        }
        let span = f.span.as_ref()?;
        if !span.inserted.contains(['\r', '\n']) {
            return None;
        }
        for eol in ["\r\n", "\n"] {
            let inserted = normalize_line_breaks(&span.inserted, eol);
            if inserted == span.inserted {
                continue;
            }
            let reshaped = Span {
                inserted,
                ..span.clone()
            };
            let mut candidate = before.clone();
            if apply_to_rope(&mut candidate, &reshaped.to_op(before.len_chars())).is_ok()
                && candidate == self.mirror
            {
                return Some(Echo {
                    extra: Some(diff(&f.expected, &self.mirror.to_string())),
                    repair: None,
                });
            }
        }
        None
    }

    /// A change the user made: `c` is an op on the mirror as it was before it.
    fn local(&mut self, mut c: OperationSeq, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        if let Some((span, _)) = split_first_span(&c) {
            self.local_cursor = Some(span.start + span.inserted.chars().count());
        }
        let pending = self.pending.take();
        let mut carried: Option<OperationSeq> = None;
        if let Some(mut inflight) = self.inflight.take() {
            if self.applied_is_honest && !inflight.refused() {
                // Its fate is open (see the module docs): keep it in
                // flight, moved past the change, until the editor says. It
                // may even have become a no-op: an editor that applies it
                // late still applies the old range. The edit goes first at
                // a tie: inserted at the same place as the user's text, a
                // late apply puts it before theirs.
                let (f1, c1) = transform(&inflight.op, &c)?;
                c = c1;
                // `self.mirror` already includes the local change.
                let mut expected = self.mirror.clone();
                apply_to_rope(&mut expected, &f1)?;
                inflight.op = f1;
                inflight.span = None;
                inflight.expected = expected;
                inflight.moved = true;
                self.inflight = Some(inflight);
            } else {
                // Skipped or refused: carry it over the change; it goes out
                // again on the new version.
                let (c1, f1) = transform(&c, &inflight.op)?;
                c = c1;
                carried = Some(f1);
            }
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
        now: Instant,
        rev: u64,
        op: &OperationSeq,
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        self.now = now;
        if rev != self.ot.rev + 1 {
            return Err(SyncError::RevisionGap {
                expected: self.ot.rev + 1,
                got: rev,
            });
        }
        apply_to_rope(&mut self.server, op)?;
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
        let outstanding = match &self.ot.state {
            State::AwaitingConfirm(o) | State::AwaitingWithBuffer(o, _) => Some(o.clone()),
            State::Synchronized => None,
        };
        if let Some(outgoing) = self.ot.ack(rev)? {
            self.emit(outgoing, out);
        }
        if let Some(o) = outstanding {
            apply_to_rope(&mut self.server, &o)?;
        }
        Ok(())
    }

    /// For the periodic check, when nothing is in flight: the revision and
    /// the checksum of the hub's text as this proxy holds it. If the
    /// editor's text has drifted from it, the editor is brought back first
    /// and `Drifted` says so.
    pub fn audit(&mut self, now: Instant, out: &mut Vec<Effect>) -> Audit {
        self.now = now;
        if !self.is_synchronized() {
            return Audit::Busy;
        }
        let hash = checksum(&self.server);
        if self.mirror.len_chars() != self.server.len_chars() || self.mirror != self.server {
            let server = self.server.to_string();
            self.resync(now, self.ot.rev, &server, out);
            return Audit::Drifted {
                rev: self.ot.rev,
                hash,
            };
        }
        Audit::Clean {
            rev: self.ot.rev,
            hash,
        }
    }

    /// The text this proxy holds for the document: the editor's, plus the
    /// edits on their way to it. Equals the hub's text plus our
    /// unacknowledged ops.
    pub fn local_text(&self) -> Rope {
        let mut text = match (&self.healing, &self.inflight) {
            (Some(healing), _) => healing.text.clone(),
            (None, Some(inflight)) => inflight.expected.clone(),
            (None, None) => self.mirror.clone(),
        };
        if let Some(pending) = &self.pending {
            // Cannot fail: `pending` is always an op on that text.
            let _ = apply_to_rope(&mut text, pending);
        }
        text
    }

    /// The connection came back and the hub has `hub_text` at `rev`. Merges
    /// three ways with the hub's text as we last knew it as the base: our
    /// unacknowledged ops are transformed past whatever changed at the hub
    /// meanwhile (others' edits), and sent again; their edits reach the
    /// editor. Nothing typed on either side is lost. If our outstanding op
    /// had reached the hub just before the connection broke (its ack lost),
    /// it is not sent twice: `last_seq`, the hub's last op number from us,
    /// says so, or else the hub's text shows it exactly.
    pub fn reconnect(
        &mut self,
        now: Instant,
        rev: u64,
        hub_text: &str,
        last_seq: Option<u64>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        self.now = now;
        self.rejoining = false;
        let (outstanding, buffer) = match std::mem::take(&mut self.ot.state) {
            State::Synchronized => (None, None),
            State::AwaitingConfirm(o) => (Some(o), None),
            State::AwaitingWithBuffer(o, b) => (Some(o), Some(b)),
        };
        let mut ours = outstanding.clone();
        let got_in = last_seq.is_some() && last_seq >= self.outstanding_seq;
        if let Some(o) = &outstanding {
            let mut with_ours = self.server.clone();
            apply_to_rope(&mut with_ours, o)?;
            if got_in
                || (with_ours.len_chars() == hub_text.chars().count() && with_ours == hub_text)
            {
                self.server = with_ours;
                ours = None;
            }
        }
        if let Some(b) = buffer {
            ours = Some(compose(ours, b)?);
        }
        let theirs = diff_for_merge(&self.server, hub_text);
        let (ours, theirs) = match ours {
            Some(ours) => transform(&ours, &theirs)?,
            None => (OperationSeq::default(), theirs),
        };
        self.ot = OtClient::new(rev);
        self.server = Rope::from_str(hub_text);
        if !is_noop(&theirs) {
            self.pending = Some(compose(self.pending.take(), theirs)?);
        }
        self.send_local(ours, out)?;
        self.dispatch(out);
        Ok(())
    }

    /// Re-sends an edit that nothing resolved for [`RESEND_AFTER`]. It goes
    /// out unchanged (same span, new id): if the first copy was only slow,
    /// its echo must still match, and the editor refuses whichever copy
    /// comes second because the version moved.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        self.now = now;
        if let Some(healing) = &self.healing {
            if healing
                .answered_at
                .is_some_and(|at| now.duration_since(at) >= HEAL_ECHO)
            {
                // Applied, but its report never matched what we followed:
                // the editor's text is not known; replace it again, this
                // time trusting the answer.
                let text = healing.text.clone();
                self.send_heal(text, None, out);
            } else if now.duration_since(healing.sent_at) >= RESEND_AFTER.max(HEAL_ANSWER) {
                let text = healing.text.clone();
                let shadow = healing.shadow.clone();
                self.send_heal(text, shadow, out);
            }
            return Ok(());
        }
        if let Some(held) = &self.held {
            // An editor that never answers: trust the content match.
            if now.duration_since(held.since) >= RESEND_AFTER {
                if let Some(inflight) = &mut self.inflight {
                    inflight.applied = true;
                }
                self.settle_held(out)?;
            }
            return Ok(());
        }
        let honest = self.applied_is_honest;
        let due = self.inflight.as_ref().is_some_and(|f| {
            // An honest editor that has not answered may still apply the
            // copy it has, even late: a second copy could land twice.
            now.duration_since(f.sent_at) >= RESEND_AFTER && !(honest && f.unanswered > 0)
        });
        if !due {
            return Ok(());
        }
        let next_id = self.next_edit_id;
        let version = self.edit_version();
        let Some(inflight) = self.inflight.as_mut() else {
            return Ok(());
        };
        let Some(span) = inflight.span.clone() else {
            // Moved since it was sent: plan it afresh on the current mirror.
            if let Some(moved) = self.inflight.take() {
                self.replan(moved.op)?;
                self.dispatch(out);
            }
            return Ok(());
        };
        // Unmoved: no change arrived since it was sent, so the range is
        // still right on the current mirror and version.
        inflight.ids.push(next_id);
        inflight.unanswered += 1;
        inflight.sent_at = now;
        inflight.sent_version = self.version;
        out.push(Effect::ApplyEdit {
            id: next_id,
            version,
            range: (inflight.sent.0, inflight.sent.1),
            new_text: span.inserted,
        });
        self.next_edit_id += 1;
        Ok(())
    }

    /// The version an edit for the editor's current text is sent with.
    /// Neovim checks an edit's version only when it is above 0 (its
    /// runtime `lsp/util.lua`), and reports a buffer nobody has changed
    /// yet as version 0: an edit sent for it would be applied even after
    /// the user's next keystroke, at its old range, and its echo taken for
    /// their typing (issue 14's duplicate). Version 1 is as current for
    /// that buffer (0 is not above 1) and stale after any change (Neovim's
    /// versions are then its changedtick, always above 2). Only for
    /// Neovim without the plugin: Helix, which also starts at 0, wants the
    /// exact version, and the plugin checks version 0 itself.
    fn edit_version(&self) -> i32 {
        if self.applied_is_honest {
            self.version
        } else {
            self.version.max(1)
        }
    }

    /// Puts an edit that will not arrive as sent back in front of
    /// `pending` (`op` is on the mirror; `pending` on the text after it).
    fn replan(&mut self, op: OperationSeq) -> Result<(), SyncError> {
        let pending = match self.pending.take() {
            Some(pending) => compose(Some(op), pending)?,
            None => op,
        };
        self.pending = (!is_noop(&pending)).then_some(pending);
        Ok(())
    }

    /// Sends the first span of `pending` to the editor if nothing is in flight.
    fn dispatch(&mut self, out: &mut Vec<Effect>) {
        if self.inflight.is_some() || self.healing.is_some() {
            return;
        }
        let mut span = loop {
            let Some(pending) = self.pending.take() else {
                return;
            };
            let Some((span, rest)) = split_first_span(&pending) else {
                return;
            };
            let span = span.trimmed(&self.mirror);
            if span.is_empty() {
                // Replaces text with itself: nothing for the editor to do,
                // and `rest` applies to the unchanged mirror.
                self.pending = (!is_noop(&rest)).then_some(rest);
                continue;
            }
            self.pending = (!is_noop(&rest)).then_some(rest);
            break span;
        };
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
        // Past the final line break is LSP's (line count, 0), which
        // Neovim's own applyEdit handler gets wrong: it appends the text
        // as lines, adding a line break. Without the plugin (which
        // reshapes such edits) it then took the line break for typing and
        // was sent the edit again, for good, the text doubling each time.
        // Text inserted there that ends with that line break goes before
        // it instead, line break first: the same text.
        let len = self.mirror.len_chars();
        if span.deleted == 0 && span.start == len {
            let eol = if ends_with(&self.mirror, "\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            if ends_with(&self.mirror, eol) && span.inserted.ends_with(eol) {
                let text = &span.inserted[..span.inserted.len() - eol.len()];
                span.inserted = format!("{eol}{text}");
                span.start -= eol.chars().count();
            }
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
            version: self.edit_version(),
            range,
            new_text: span.inserted.clone(),
        });
        self.inflight = Some(InFlight {
            ids: vec![id],
            sent: (range.0, range.1, span.inserted.clone()),
            sent_version: self.version,
            moved: false,
            op,
            span: Some(span),
            expected,
            sent_at: self.now,
            applied: false,
            refusals: 0,
            unanswered: 1,
        });
    }

    fn send_local(&mut self, c: OperationSeq, out: &mut Vec<Effect>) -> Result<(), SyncError> {
        if is_noop(&c) {
            return Ok(());
        }
        if let Some(outgoing) = self.ot.local(c)? {
            self.emit(outgoing, out);
        }
        Ok(())
    }

    /// Sends an op hubward under the next number (or, while rejoining,
    /// only numbers it: see [`DocSync::await_rejoin`]).
    fn emit(&mut self, outgoing: Outgoing, out: &mut Vec<Effect>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding_seq = Some(seq);
        if self.rejoining {
            return;
        }
        out.push(Effect::SendOp {
            rev: outgoing.rev,
            op: outgoing.op,
            seq,
        });
    }

    /// We asked the hub to rejoin (after an outage or a refusal): until
    /// its answer ([`DocSync::catch_up`], [`DocSync::reconnect`] or
    /// [`DocSync::resync`]), what the user types is kept, not sent.
    pub fn await_rejoin(&mut self) {
        self.rejoining = true;
    }

    /// The number of the op awaiting the hub's ack, if any.
    pub fn outstanding_seq(&self) -> Option<u64> {
        (!self.ot.is_synchronized())
            .then_some(self.outstanding_seq)
            .flatten()
    }

    /// Back after an outage, the hub still had every op since our
    /// revision: replay them in order. Our own outstanding op among them is
    /// its lost ack; the rest are others' edits. If ours is not there it
    /// never arrived, and goes again under the same number.
    pub fn catch_up(
        &mut self,
        now: Instant,
        history: Vec<CaughtUp>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SyncError> {
        self.now = now;
        self.rejoining = false;
        let outstanding = self.outstanding_seq();
        for entry in history {
            match entry {
                CaughtUp::Ours { rev } if rev > self.ot.rev => self.ack(rev, out)?,
                CaughtUp::Theirs { rev, op } if rev > self.ot.rev => {
                    self.remote(now, rev, &op, out)?
                }
                _ => {}
            }
        }
        if let (Some(seq), true) = (outstanding, self.outstanding_seq() == outstanding) {
            if let State::AwaitingConfirm(o) | State::AwaitingWithBuffer(o, _) = &self.ot.state {
                out.push(Effect::SendOp {
                    rev: self.ot.rev,
                    op: o.clone(),
                    seq,
                });
            }
        }
        self.dispatch(out);
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
            .trimmed(mirror)
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

#[cfg(test)]
mod tests {
    //! VS Code's late apply, step by step (the simulation in `sync_sim.rs`
    //! covers it among everything else, but only where the edit still
    //! lands where it belongs).

    use super::*;

    /// These tests never wait for a timer: one instant serves them all.
    fn t0() -> Instant {
        thread_local!(static T0: Instant = Instant::now());
        T0.with(|t| *t)
    }

    fn pos(column: u32) -> LinePos {
        LinePos { line: 0, column }
    }

    fn insert(at: u64, text: &str, len: u64) -> OperationSeq {
        let mut op = OperationSeq::default();
        op.retain(at);
        op.insert(text);
        op.retain(len - at);
        op
    }

    /// A document "hello world\n" in an editor that speaks utf-32.
    fn doc() -> DocSync {
        let mut out = Vec::new();
        let text = "hello world\n";
        let sync = DocSync::new(
            t0(),
            Rope::from_str(text),
            1,
            Encoding::Utf32,
            0,
            text,
            &mut out,
        );
        assert!(out.is_empty());
        sync
    }

    fn edits(out: &[Effect]) -> Vec<(u64, i32, LinePos, LinePos, String)> {
        out.iter()
            .filter_map(|e| match e {
                Effect::ApplyEdit {
                    id,
                    version,
                    range,
                    new_text,
                } => Some((*id, *version, range.0, range.1, new_text.clone())),
                _ => None,
            })
            .collect()
    }

    fn sent_text(out: &[Effect]) -> String {
        out.iter()
            .filter_map(|e| match e {
                Effect::SendOp { op, .. } => Some(
                    op.ops()
                        .iter()
                        .filter_map(|o| match o {
                            Operation::Insert(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()
    }

    fn typed(at: u32, text: &str) -> Vec<Change> {
        vec![Change {
            range: Some((pos(at), pos(at))),
            text: text.into(),
        }]
    }

    /// Found while building the file watcher: typing between the hub's
    /// welcome and its answer to our rejoin went out at once, was missing
    /// from the answer's history (written before it arrived), and was sent
    /// again by the catch-up: the hub applied it twice. It now waits for
    /// the answer and goes out once.
    #[test]
    fn typing_while_a_rejoin_is_unanswered_is_sent_once_after_it() {
        let mut sync = doc();
        let mut out = Vec::new();
        sync.await_rejoin();
        sync.editor_changed(t0(), 2, &typed(11, "!"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "", "not before the answer: {out:?}");
        out.clear();
        sync.catch_up(t0(), Vec::new(), &mut out).unwrap();
        let sent: Vec<u64> = out
            .iter()
            .filter_map(|e| match e {
                Effect::SendOp { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 1, "once, with the answer: {out:?}");
        assert_eq!(sent_text(&out), "!");
        out.clear();
        sync.editor_changed(t0(), 3, &typed(12, "?"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "", "buffered behind the outstanding op");
    }

    #[test]
    fn a_late_echo_where_the_edit_belongs_is_the_echo() {
        let mut sync = doc();
        let mut out = Vec::new();
        // A collaborator's "X" at the start; the editor says it applied it.
        sync.remote(t0(), 1, &insert(0, "X", 12), &mut out).unwrap();
        let [(id, 1, ..)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
        // The user's keystroke at the end reaches us first...
        out.clear();
        sync.editor_changed(t0(), 2, &typed(11, "!"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "!");
        assert!(edits(&out).is_empty(), "nothing re-sent: {out:?}");
        // ...then VS Code's late apply of "X" at its old range.
        out.clear();
        sync.editor_changed(t0(), 3, &typed(0, "X"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "", "X is not the user's: {out:?}");
        assert!(edits(&out).is_empty(), "nothing to repair: {out:?}");
        assert_eq!(sync.mirror().to_string(), "Xhello world!\n");
        assert_eq!(sync.local_text().to_string(), "Xhello world!\n");
    }

    #[test]
    fn a_misplaced_late_echo_is_moved_where_it_belongs() {
        let mut sync = doc();
        let mut out = Vec::new();
        // "X" before "world"...
        sync.remote(t0(), 1, &insert(6, "X", 12), &mut out).unwrap();
        let [(id, ..)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
        // ...the user types "__" at the start of the same line...
        out.clear();
        sync.editor_changed(t0(), 2, &typed(0, "__"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "__");
        // ...and VS Code applies "X" at its old column: inside "hello".
        out.clear();
        sync.editor_changed(t0(), 3, &typed(6, "X"), &mut out)
            .unwrap();
        assert_eq!(sync.mirror().to_string(), "__hellXo world\n");
        assert_eq!(sent_text(&out), "", "X is not the user's: {out:?}");
        // The proxy moves it, with edits of its own, to where it belongs.
        let mut editor = sync.mirror().clone();
        let mut version = 3;
        let mut pending = edits(&out);
        while let Some((id, v, from, to, text)) = pending.pop() {
            assert_eq!(v, version);
            let (a, b) = (
                to_char(&editor, from, Encoding::Utf32),
                to_char(&editor, to, Encoding::Utf32),
            );
            editor.remove(a..b);
            editor.insert(a, &text);
            version += 1;
            out.clear();
            sync.editor_changed(
                t0(),
                version,
                &[Change {
                    range: Some((from, to)),
                    text,
                }],
                &mut out,
            )
            .unwrap();
            sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
            assert_eq!(sent_text(&out), "");
            pending.extend(edits(&out));
        }
        assert_eq!(editor.to_string(), "__hello Xworld\n");
        assert_eq!(sync.local_text().to_string(), "__hello Xworld\n");
        assert!(sync.inflight.is_none() && sync.pending.is_none());
    }

    #[test]
    fn a_refusal_after_the_user_typed_resends_at_once_on_the_new_version() {
        let mut sync = doc();
        let mut out = Vec::new();
        sync.remote(t0(), 1, &insert(0, "X", 12), &mut out).unwrap();
        let [(id, 1, ..)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        out.clear();
        // Typed before the edit arrived: honest editors refuse it, but the
        // proxy waits for them to say so.
        sync.editor_changed(t0(), 2, &typed(11, "!"), &mut out)
            .unwrap();
        assert!(edits(&out).is_empty(), "{out:?}");
        out.clear();
        sync.edit_answered(t0(), id, Some(false), &mut out).unwrap();
        let [(_, 2, from, to, ref text)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!((from, to, text.as_str()), (pos(0), pos(0), "X"));
    }

    /// Neovim without the plugin, as its runtime `lsp/util.lua` handles
    /// `workspace/applyEdit`: an edit whose version is above 0 and below
    /// the buffer's is skipped, anything else applied; the answer is
    /// `applied: true` either way.
    struct Neovim {
        buffer: Rope,
        version: i32,
    }

    impl Neovim {
        fn types(&mut self, sync: &mut DocSync, at: (u32, u32), text: &str, out: &mut Vec<Effect>) {
            let at = LinePos {
                line: at.0,
                column: at.1,
            };
            let offset = to_char(&self.buffer, at, Encoding::Utf32);
            self.buffer.insert(offset, text);
            // changedtick: the first change jumps past the load's ticks.
            self.version = self.version.max(2) + 1;
            sync.editor_changed(
                t0(),
                self.version,
                &[Change {
                    range: Some((at, at)),
                    text: text.into(),
                }],
                out,
            )
            .unwrap();
        }

        fn handles(
            &mut self,
            sync: &mut DocSync,
            edit: (u64, i32, LinePos, LinePos, String),
        ) -> Vec<Effect> {
            let (id, version, from, to, text) = edit;
            let mut out = Vec::new();
            if !(version > 0 && self.version > version) {
                let a = to_char(&self.buffer, from, Encoding::Utf32);
                let b = to_char(&self.buffer, to, Encoding::Utf32);
                self.buffer.remove(a..b);
                self.buffer.insert(a, &text);
                self.version += 1;
                sync.editor_changed(
                    t0(),
                    self.version,
                    &[Change {
                        range: Some((from, to)),
                        text,
                    }],
                    &mut out,
                )
                .unwrap();
            }
            sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
            out
        }
    }

    /// Issue 14's duplicate, as three real Neovims produced it: a
    /// collaborator's edit goes out while the buffer is untouched (version
    /// 0), the user types before Neovim handles it, and Neovim applies it
    /// anyway, after the keystroke. Sent for version 0 it was re-sent and
    /// its late echo taken for the user's typing: the hub got it twice.
    #[test]
    fn neovim_skips_an_edit_that_waited_behind_the_first_keystroke() {
        let text = "def main():\n    print('hi')\n";
        let mut out = Vec::new();
        let mut sync = DocSync::new(
            t0(),
            Rope::from_str(text),
            0,
            Encoding::Utf32,
            0,
            text,
            &mut out,
        );
        sync.set_applied_is_honest(false);
        let mut nvim = Neovim {
            buffer: Rope::from_str(text),
            version: 0,
        };
        sync.remote(t0(), 1, &insert(24, "Ѐ", 28), &mut out)
            .unwrap();
        let first = edits(&out);
        assert_eq!(first.len(), 1, "{out:?}");
        assert!(
            first[0].1 > 0,
            "Neovim would not check version {}",
            first[0].1
        );
        // Another collaborator's edit, before it in the text, waits behind
        // it; the keystroke reaches Neovim before either.
        out.clear();
        sync.remote(t0(), 2, &insert(1, "Ā", 29), &mut out).unwrap();
        assert!(edits(&out).is_empty(), "one edit in flight at a time");
        nvim.types(&mut sync, (0, 6), "一", &mut out);
        let mut waiting = first;
        waiting.extend(edits(&out));
        while let Some(edit) = (!waiting.is_empty()).then(|| waiting.remove(0)) {
            waiting.extend(edits(&nvim.handles(&mut sync, edit)));
        }
        // The proxy's local text is the hub's plus our unacknowledged ops.
        assert_eq!(
            nvim.buffer.to_string(),
            "dĀef ma一in():\n    print('hЀi')\n"
        );
        assert_eq!(sync.local_text(), nvim.buffer);
    }

    fn replaced(out: &[Effect]) -> Vec<(u64, String)> {
        out.iter()
            .filter_map(|e| match e {
                Effect::ReplaceAll { id, text } => Some((*id, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// A change the editor reported was lost on the way (the transport
    /// guard says so): the editor is given the session's text whole; what
    /// it reports meanwhile is not read; remote edits wait and follow.
    #[test]
    fn a_heal_replaces_the_editor_text_whole_and_then_carries_on() {
        let mut sync = doc();
        let mut out = Vec::new();
        sync.editor_changed(t0(), 2, &typed(0, "A"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "A");
        out.clear();
        sync.heal(t0(), &mut out);
        let [(id, ref text)] = replaced(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(text, "Ahello world\n", "our unacknowledged typing stays");
        assert!(sync.is_healing() && !sync.is_synchronized());
        // Whatever the editor says before it answers means nothing now...
        out.clear();
        sync.editor_changed(t0(), 3, &typed(40, "?"), &mut out)
            .unwrap();
        assert!(out.is_empty(), "{out:?}");
        // ...and a collaborator's edit waits for the replacement.
        sync.ack(1, &mut out).unwrap();
        sync.remote(t0(), 2, &insert(13, "!", 13), &mut out)
            .unwrap();
        assert!(edits(&out).is_empty(), "{out:?}");
        // The editor replaces its "Ahello world\n?" and says so.
        sync.editor_changed(
            t0(),
            4,
            &[Change {
                range: None,
                text: "Ahello world\n".into(),
            }],
            &mut out,
        )
        .unwrap();
        sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
        assert!(!sync.is_healing());
        assert_eq!(sync.mirror().to_string(), "Ahello world\n");
        let [(_, _, from, _, ref text)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!((from, text.as_str()), (LinePos { line: 1, column: 0 }, "!"));
        assert_eq!(sync.heals(), 1);
    }

    /// Found by the VS Code end-to-end test: VS Code answers a whole-text
    /// replacement before it reports it, and reports it as a diff against
    /// its old text. Read once the heal was over, that diff was taken for
    /// typing and its text sent to the hub again: "Y" became "YY"
    /// everywhere. Now the report is recognised as the replacement's.
    #[test]
    fn a_heal_answered_before_its_report_does_not_read_the_report_as_typing() {
        let mut sync = doc();
        let mut out = Vec::new();
        // A collaborator's "Y" that the editor has not applied yet.
        sync.remote(t0(), 1, &insert(0, "Y", 12), &mut out).unwrap();
        out.clear();
        sync.heal(t0(), &mut out);
        let [(id, ref text)] = replaced(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(text, "Yhello world\n");
        out.clear();
        sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
        assert!(sync.is_healing(), "its report is still to come");
        // The report: a diff against "hello world\n".
        sync.editor_changed(t0(), 2, &typed(0, "Y"), &mut out)
            .unwrap();
        assert!(!sync.is_healing());
        assert_eq!(sent_text(&out), "", "nothing typed: {out:?}");
        assert_eq!(sync.mirror().to_string(), "Yhello world\n");
        // Typing goes on as usual.
        sync.editor_changed(t0(), 3, &typed(1, "!"), &mut out)
            .unwrap();
        assert_eq!(sent_text(&out), "!");
    }

    /// An editor that says it applied the replacement and never reports
    /// what fits it: its text is unknown, so it is replaced again, this
    /// time on its word.
    #[test]
    fn a_heal_whose_report_never_fits_is_sent_again_on_the_editors_word() {
        let mut sync = doc();
        let mut out = Vec::new();
        sync.remote(t0(), 1, &insert(0, "Y", 12), &mut out).unwrap();
        out.clear();
        sync.heal(t0(), &mut out);
        let [(id, _)] = replaced(&out)[..] else {
            panic!("{out:?}")
        };
        out.clear();
        sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
        sync.tick(t0() + HEAL_ECHO, &mut out).unwrap();
        let [(again, ref text)] = replaced(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(text, "Yhello world\n");
        out.clear();
        sync.edit_answered(t0() + HEAL_ECHO, again, Some(true), &mut out)
            .unwrap();
        assert!(!sync.is_healing());
        assert_eq!(sync.mirror().to_string(), "Yhello world\n");
    }

    #[test]
    fn a_refused_or_unanswered_heal_is_sent_again() {
        let mut sync = doc();
        let mut out = Vec::new();
        sync.heal(t0(), &mut out);
        let [(first, _)] = replaced(&out)[..] else {
            panic!("{out:?}")
        };
        out.clear();
        sync.edit_answered(t0(), first, None, &mut out).unwrap();
        let [(second, ref text)] = replaced(&out)[..] else {
            panic!("{out:?}")
        };
        assert!(second != first && text == "hello world\n");
        out.clear();
        sync.edit_answered(t0(), second, Some(false), &mut out)
            .unwrap();
        assert_eq!(replaced(&out).len(), 1, "{out:?}");
    }

    /// Changes that cannot be the editor's text as the mirror has it: a
    /// range past the end of a line or of the text, a version going back.
    #[test]
    fn a_change_that_does_not_fit_the_mirror_heals() {
        for (version, change) in [
            (2, typed(30, "x")),
            (
                2,
                vec![Change {
                    range: Some((
                        LinePos { line: 5, column: 0 },
                        LinePos { line: 5, column: 0 },
                    )),
                    text: "x".into(),
                }],
            ),
            (0, typed(0, "x")),
        ] {
            let mut sync = doc();
            let mut out = Vec::new();
            sync.editor_changed(t0(), version, &change, &mut out)
                .unwrap();
            assert_eq!(sent_text(&out), "", "{change:?}: nothing sent hubward");
            assert_eq!(replaced(&out).len(), 1, "{change:?}: {out:?}");
            assert_eq!(sync.heals(), 1);
        }
        // The end of the text (the line after the last newline) fits.
        let mut sync = doc();
        let mut out = Vec::new();
        let end = LinePos { line: 1, column: 0 };
        let change = Change {
            range: Some((end, end)),
            text: "x".into(),
        };
        sync.editor_changed(t0(), 2, &[change], &mut out).unwrap();
        assert_eq!(sent_text(&out), "x");
        assert_eq!(sync.heals(), 0);
    }

    /// Issue 14, found by three Neovims deleting the last line at once:
    /// an edit that deletes the final line break is one Neovim cannot
    /// carry out ('eol'). It reports the edit without the deletion; asking
    /// again looped for good (hundreds of edits a second without the
    /// plugin, the text growing with it). The line break it kept is its
    /// edit, sent on: the document ends with one again, in step.
    #[test]
    fn neovim_keeps_the_final_line_break_and_the_session_gets_it_back() {
        for honest in [true, false] {
            let mut sync = doc();
            sync.set_applied_is_honest(honest);
            let mut out = Vec::new();
            // Someone deleted "world" and the final line break.
            let mut op = OperationSeq::default();
            op.retain(6);
            op.delete(6);
            sync.remote(t0(), 1, &op, &mut out).unwrap();
            let [(id, 1, from, to, ref text)] = edits(&out)[..] else {
                panic!("{out:?}")
            };
            assert_eq!(
                (from, to, text.as_str()),
                (pos(6), LinePos { line: 1, column: 0 }, "")
            );
            sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
            out.clear();
            // Neovim deleted "world" alone.
            let change = Change {
                range: Some((pos(6), pos(11))),
                text: String::new(),
            };
            sync.editor_changed(t0(), 2, &[change], &mut out).unwrap();
            assert!(
                edits(&out).is_empty(),
                "honest {honest}: asked again: {out:?}"
            );
            assert_eq!(sent_text(&out), "\n", "honest {honest}: {out:?}");
            sync.ack(2, &mut out).unwrap();
            assert!(sync.is_synchronized(), "honest {honest}");
            assert_eq!(sync.mirror().to_string(), "hello \n");
            assert_eq!(sync.local_text().to_string(), "hello \n");
        }
    }

    /// Found with Neovim without the plugin: a line put after the last
    /// one elsewhere was sent at (line count, 0), where Neovim's handler
    /// adds a line break of its own, and the edit doubled for good.
    #[test]
    fn text_after_the_final_line_break_is_sent_before_it() {
        for (text, eol) in [("hello world\n", "\n"), ("hello world\r\n", "\r\n")] {
            let mut out = Vec::new();
            let mut sync = DocSync::new(
                t0(),
                Rope::from_str(text),
                1,
                Encoding::Utf32,
                0,
                text,
                &mut out,
            );
            let len = text.chars().count() as u64;
            sync.remote(t0(), 1, &insert(len, &format!("more{eol}"), len), &mut out)
                .unwrap();
            let [(_, 1, from, to, ref new_text)] = edits(&out)[..] else {
                panic!("{out:?}")
            };
            assert_eq!((from, to), (pos(11), pos(11)), "{eol:?}");
            assert_eq!(new_text, &format!("{eol}more"));
        }
    }

    #[test]
    fn kept_final_line_breaks_are_told_from_other_changes() {
        let check = |mirror: &str, expected: &str| {
            kept_final_line_break(&Rope::from_str(mirror), &Rope::from_str(expected))
        };
        assert!(check("ab\n", "ab"));
        assert!(check("ab\r\n", "ab"));
        assert!(check("\n", ""));
        assert!(!check("ab\n", "ab\n"), "nothing kept");
        assert!(!check("ab\n\n", "ab\n"), "expected ends with a line break");
        assert!(!check("ax\n", "ab"), "text differs");
        assert!(!check("ab\n\n", "ab"), "two line breaks");
        assert!(!check("abc", "ab"), "not a line break");
    }

    #[test]
    fn for_neovim_without_the_plugin_the_edit_is_resent_at_once() {
        let mut sync = doc();
        sync.set_applied_is_honest(false);
        let mut out = Vec::new();
        sync.remote(t0(), 1, &insert(0, "X", 12), &mut out).unwrap();
        let [(id, ..)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        // It skipped the edit and still says yes: its word counts for
        // nothing, the edit goes out again on the new version.
        sync.edit_answered(t0(), id, Some(true), &mut out).unwrap();
        out.clear();
        sync.editor_changed(t0(), 2, &typed(11, "!"), &mut out)
            .unwrap();
        let [(_, 2, from, _, ref text)] = edits(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!((from, text.as_str()), (pos(0), "X"));
    }
}
