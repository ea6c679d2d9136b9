//! The session's code runs: at most one at a time, started from the hub's
//! own texts, its output relayed to every participant in order.
//!
//! Invariants: a run's files are the hub's authoritative text of every
//! document, never the requester's buffer, whether anyone opened it or it
//! came by `put` (listed files, not being documents, are left out); output and the finish of a run
//! that is no longer the session's current one are dropped; output `seq`
//! numbers count up from 0 within each run; a session that stops kills its
//! run's container; a run whose plan the executor refuses (`run_refused`,
//! to the asker alone) starts nothing, and every participant hears a
//! started run's plan and a finished run's diagnostics alike; input goes
//! only to the current run, in the order the session received it, and
//! everyone hears it (`runInput`, with the sender's name) before any output
//! it causes.

use std::sync::atomic::{AtomicU64, Ordering};

use chorus_protocol::wire::{ErrorCode, OutputStream, RunMode, ServerMsg};
use chorus_sandbox::{Chunk, RunInput, RunRequest, RunStatus, Stream};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{Session, SessionCmd};
use crate::Runner;

/// The session's one run at a time.
pub(super) struct ActiveRun {
    run_id: u64,
    /// Dropping or firing it stops the container.
    cancel: Option<oneshot::Sender<()>>,
    next_seq: u64,
    /// Input to the program; kept until the run ends so that an interrupt
    /// still reaches a program whose stdin is closed.
    input: mpsc::Sender<RunInput>,
    /// An end-of-file was sent: further text or end-of-file is refused.
    stdin_closed: bool,
}

/// Inputs waiting for the executor; a sender past this is told to slow
/// down (the executor takes them at once, so this is only hit when it is
/// wedged).
const INPUT_QUEUE: usize = 64;

/// What a participant asked to run, besides the document.
pub(super) struct RunWish {
    pub language: Option<String>,
    pub stdin: Option<String>,
    /// Close stdin after `stdin` rather than keep it open for `input`.
    pub stdin_eof: bool,
    pub args: Vec<String>,
    pub mode: RunMode,
    pub command: Option<String>,
}

/// Output goes out in pieces of at most this many bytes...
const OUTPUT_PIECE_BYTES: usize = 16 * 1024;
/// ...gathered for at most this long: a program printing a byte at a time
/// becomes some forty messages a second to each participant, not one per
/// byte, and a burst becomes a few large ones.
const OUTPUT_GATHER: std::time::Duration = std::time::Duration::from_millis(25);

/// A run's output on its way to the session: chunks of one stream joined
/// until the piece is large enough or old enough.
#[derive(Default)]
struct Gather {
    piece: Option<Chunk>,
    due: Option<tokio::time::Instant>,
}

impl Gather {
    fn due(&self) -> Option<tokio::time::Instant> {
        self.due
    }

    /// Adds `chunk`; returns the pieces ready to go, in order.
    fn push(&mut self, chunk: Chunk) -> Vec<Chunk> {
        let mut ready = Vec::new();
        if self
            .piece
            .as_ref()
            .is_some_and(|p| p.stream != chunk.stream)
        {
            ready.extend(self.take());
        }
        match &mut self.piece {
            Some(piece) => piece.data.push_str(&chunk.data),
            None => {
                self.piece = Some(chunk);
                self.due = Some(tokio::time::Instant::now() + OUTPUT_GATHER);
            }
        }
        while let Some(piece) = self
            .piece
            .as_mut()
            .filter(|p| p.data.len() >= OUTPUT_PIECE_BYTES)
        {
            let mut cut = OUTPUT_PIECE_BYTES;
            while !piece.data.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = piece.data.split_off(cut);
            let full = std::mem::replace(&mut piece.data, rest);
            ready.push(Chunk {
                stream: piece.stream,
                data: full,
            });
            if piece.data.is_empty() {
                self.piece = None;
                self.due = None;
            }
        }
        ready
    }

    /// The piece gathered so far, if any.
    fn take(&mut self) -> Option<Chunk> {
        self.due = None;
        self.piece.take().filter(|p| !p.data.is_empty())
    }
}

static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(1);

impl Session {
    pub(super) fn start_run(&mut self, client_id: u64, doc: String, wish: RunWish) {
        let executor = match &self.config.runner {
            Runner::Enabled(executor) => executor.clone(),
            Runner::Disabled(reason) => {
                let message = format!("this hub cannot run code: {reason}");
                return self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::RunsDisabled, message, Some(&doc)),
                );
            }
        };
        if let Some(run) = &self.run {
            let message = format!(
                "run {} is still going in this session; stop it first (chorus.stop)",
                run.run_id
            );
            return self.send(
                client_id,
                &ServerMsg::error(ErrorCode::RunBusy, message, Some(&doc)),
            );
        }
        if !self.docs.contains_key(&doc) {
            return self.unknown_doc(client_id, &doc);
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        // The hub's authoritative text of every document, never the
        // requester's buffer.
        let files = self
            .docs
            .iter()
            .map(|(path, shared)| (path.clone(), shared.doc.text().to_string()))
            .collect();
        let request = RunRequest {
            main: doc.clone(),
            files,
            language: wish.language,
            stdin: wish.stdin,
            args: wish.args,
            mode: wish.mode,
            command: wish.command,
            session: self.id.clone(),
        };
        let plan = match executor.plan(&request) {
            Ok(plan) => plan.summary,
            Err(err) => {
                return self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::RunRefused, err.to_string(), Some(&doc)),
                )
            }
        };
        let run_id = NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = oneshot::channel();
        let (input, input_receiver) = mpsc::channel(INPUT_QUEUE);
        if wish.stdin_eof {
            // The channel is new and empty, so this cannot fail.
            let _ = input.try_send(RunInput::Eof);
        }
        self.run = Some(ActiveRun {
            run_id,
            cancel: Some(cancel),
            next_seq: 0,
            input,
            stdin_closed: wish.stdin_eof,
        });
        let name = self.participants[&client_id].info.name.clone();
        info!(session = %self.id, client_id, run_id, doc = %doc, "run started");
        self.broadcast(
            &ServerMsg::RunStarted {
                run_id,
                client_id,
                name,
                doc,
                plan,
            },
            None,
            None,
        );
        tokio::spawn(async move {
            let _active = crate::metrics::run_started();
            let (output, mut chunks) = mpsc::channel(64);
            let run = executor.run_with_input(request, output, cancelled, input_receiver);
            tokio::pin!(run);
            let mut gather = Gather::default();
            let status = loop {
                let due = gather.due();
                tokio::select! {
                    chunk = chunks.recv() => if let Some(chunk) = chunk {
                        for piece in gather.push(chunk) {
                            if me.send(SessionCmd::RunOutput { run_id, chunk: piece }).await.is_err() {
                                return;
                            }
                        }
                    },
                    _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                        if let Some(piece) = gather.take() {
                            if me.send(SessionCmd::RunOutput { run_id, chunk: piece }).await.is_err() {
                                return;
                            }
                        }
                    }
                    status = &mut run => break status,
                }
            };
            // Output produced just before the end is still queued.
            let mut rest = Vec::new();
            while let Ok(chunk) = chunks.try_recv() {
                rest.extend(gather.push(chunk));
            }
            rest.extend(gather.take());
            for piece in rest {
                if me
                    .send(SessionCmd::RunOutput {
                        run_id,
                        chunk: piece,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = me.send(SessionCmd::RunFinished { run_id, status }).await;
        });
    }

    pub(super) fn run_output(&mut self, run_id: u64, chunk: Chunk) {
        let Some(run) = self.run.as_mut().filter(|r| r.run_id == run_id) else {
            return;
        };
        let seq = run.next_seq;
        run.next_seq += 1;
        let stream = match chunk.stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        };
        self.broadcast(
            &ServerMsg::RunOutput {
                run_id,
                seq,
                stream,
                data: chunk.data,
            },
            None,
            None,
        );
    }

    pub(super) fn run_finished(&mut self, run_id: u64, status: RunStatus) {
        if self.run.as_ref().is_none_or(|r| r.run_id != run_id) {
            return;
        }
        self.run = None;
        info!(session = %self.id, run_id, ?status, "run finished");
        self.broadcast(
            &ServerMsg::RunFinished {
                run_id,
                result: status,
            },
            None,
            None,
        );
    }

    /// A participant's `stop`: ends the run if there is one.
    pub(super) fn stop_run(&mut self, client_id: u64) {
        match &self.run {
            Some(run) => {
                info!(session = %self.id, client_id, run_id = run.run_id, "run stopped by participant");
                self.cancel_run();
            }
            None => self.send(
                client_id,
                &ServerMsg::error(ErrorCode::NoRun, "no run is going in this session", None),
            ),
        }
    }

    /// A participant's `input`: text, then end-of-file, then interrupt, to
    /// the current run, told to everyone with the sender's name.
    pub(super) fn run_input(
        &mut self,
        client_id: u64,
        text: Option<String>,
        eof: bool,
        interrupt: bool,
    ) {
        let refuse = |session: &mut Session, message: &str| {
            session.send(
                client_id,
                &ServerMsg::error(ErrorCode::NoRun, message, None),
            )
        };
        let Some(run) = self.run.as_mut() else {
            return refuse(
                self,
                "no run is going in this session, so there is nothing to send input to",
            );
        };
        let run_id = run.run_id;
        let text = text.filter(|text| !text.is_empty());
        let mut items: Vec<RunInput> = Vec::new();
        items.extend(text.clone().map(RunInput::Text));
        if eof {
            items.push(RunInput::Eof);
        }
        if interrupt {
            items.push(RunInput::Interrupt);
        }
        if items.is_empty() {
            return self.send(
                client_id,
                &ServerMsg::error(
                    ErrorCode::BadMessage,
                    "input needs text, eof or interrupt",
                    None,
                ),
            );
        }
        let writes_stdin = items.iter().any(|item| *item != RunInput::Interrupt);
        if writes_stdin && run.stdin_closed {
            return refuse(
                self,
                &format!("run {run_id} has closed its input (end-of-file was sent)"),
            );
        }
        let input = run.input.clone();
        // All or nothing: the echo must say exactly what the program got.
        if input.capacity() < items.len() {
            let message =
                format!("run {run_id} is not taking input as fast as it arrives; try again");
            return self.send(
                client_id,
                &ServerMsg::error(ErrorCode::Overloaded, message, None),
            );
        }
        for item in items {
            if input.try_send(item).is_err() {
                break; // the run is ending; its finish follows
            }
        }
        run.stdin_closed |= eof;
        let name = self.participants[&client_id].info.name.clone();
        info!(session = %self.id, client_id, run_id, eof, interrupt, "run input");
        self.broadcast(
            &ServerMsg::RunInput {
                run_id,
                client_id,
                name,
                text,
                eof,
                interrupt,
            },
            None,
            None,
        );
    }

    /// Kills the current run's container, if any (its cancel fires once).
    pub(super) fn cancel_run(&mut self) {
        if let Some(run) = self.run.as_mut() {
            if let Some(cancel) = run.cancel.take() {
                let _ = cancel.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(stream: Stream, data: &str) -> Chunk {
        Chunk {
            stream,
            data: data.to_owned(),
        }
    }

    #[tokio::test]
    async fn byte_at_a_time_output_is_gathered_into_pieces() {
        let mut gather = Gather::default();
        for _ in 0..1000 {
            assert!(gather.push(chunk(Stream::Stdout, "x")).is_empty());
        }
        assert!(gather.due().is_some());
        let piece = gather.take().unwrap();
        assert_eq!(piece.data.len(), 1000);
        assert!(gather.take().is_none() && gather.due().is_none());
    }

    #[tokio::test]
    async fn pieces_are_bounded_and_split_between_characters() {
        let mut gather = Gather::default();
        let text = "é".repeat(OUTPUT_PIECE_BYTES); // two bytes each
        let ready = gather.push(chunk(Stream::Stdout, &text));
        assert_eq!(ready.len(), 2);
        assert!(ready.iter().all(|p| p.data.len() == OUTPUT_PIECE_BYTES));
        assert!(gather.take().is_none());
        let odd = format!("a{}", "é".repeat(OUTPUT_PIECE_BYTES / 2));
        let ready = gather.push(chunk(Stream::Stdout, &odd));
        assert_eq!(
            ready[0].data.len(),
            OUTPUT_PIECE_BYTES - 1,
            "cut before a split character"
        );
        let rest = gather.take().unwrap();
        assert_eq!(ready[0].data.clone() + &rest.data, odd);
    }

    #[tokio::test]
    async fn streams_are_not_mixed_and_order_is_kept() {
        let mut gather = Gather::default();
        assert!(gather.push(chunk(Stream::Stdout, "out1 ")).is_empty());
        let ready = gather.push(chunk(Stream::Stderr, "err"));
        assert_eq!(ready, vec![chunk(Stream::Stdout, "out1 ")]);
        assert_eq!(gather.take(), Some(chunk(Stream::Stderr, "err")));
    }
}
