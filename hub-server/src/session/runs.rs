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
//! started run's plan and a finished run's diagnostics alike.

use std::sync::atomic::{AtomicU64, Ordering};

use chorus_protocol::wire::{ErrorCode, OutputStream, RunMode, ServerMsg};
use chorus_sandbox::{Chunk, RunRequest, RunStatus, Stream};
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
}

/// What a participant asked to run, besides the document.
pub(super) struct RunWish {
    pub language: Option<String>,
    pub stdin: Option<String>,
    pub args: Vec<String>,
    pub mode: RunMode,
    pub command: Option<String>,
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
        self.run = Some(ActiveRun {
            run_id,
            cancel: Some(cancel),
            next_seq: 0,
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
            let (output, mut chunks) = mpsc::channel(64);
            let run = executor.run(request, output, cancelled);
            tokio::pin!(run);
            let status = loop {
                tokio::select! {
                    chunk = chunks.recv() => if let Some(chunk) = chunk {
                        if me.send(SessionCmd::RunOutput { run_id, chunk }).await.is_err() {
                            return;
                        }
                    },
                    status = &mut run => break status,
                }
            };
            // Output produced just before the end is still queued.
            while let Ok(chunk) = chunks.try_recv() {
                if me
                    .send(SessionCmd::RunOutput { run_id, chunk })
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

    /// Kills the current run's container, if any (its cancel fires once).
    pub(super) fn cancel_run(&mut self) {
        if let Some(run) = self.run.as_mut() {
            if let Some(cancel) = run.cancel.take() {
                let _ = cancel.send(());
            }
        }
    }
}
