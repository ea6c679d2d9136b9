//! A fake executor for the hub's wire tests: it records what it was asked
//! to run (and which sessions it was told to forget), answers `plan` as it
//! was set up to, and "runs" by printing the names of the files it got.
//! An interactive recorder then also takes input: it records each
//! [`RunInput`], prints `got TEXT` for text, and ends at end-of-file.
//! Included by each test binary with `#[path]`; a binary uses only some of
//! it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use chorus_sandbox::{
    Chunk, Executor, Plan, RunDiagnostic, RunInput, RunRequest, RunStatus, SandboxError, Stream,
};
use tokio::sync::{mpsc, oneshot};

/// Records every request; clones share what they recorded.
#[derive(Clone, Default)]
pub struct Recorder {
    pub requests: Arc<Mutex<Vec<RunRequest>>>,
    /// The sessions `forget_session` was called for, in order.
    pub forgotten: Arc<Mutex<Vec<String>>>,
    /// The summary `plan` answers with...
    pub plan: String,
    /// ... unless it refuses, for this reason.
    pub refuse: Option<String>,
    /// Put in every run's result.
    pub diagnostics: Vec<RunDiagnostic>,
    /// Runs take input until end-of-file instead of ending at once.
    pub interactive: bool,
    /// Every input an interactive run received, in order.
    pub inputs: Arc<Mutex<Vec<RunInput>>>,
}

impl Recorder {
    pub fn planning(summary: &str) -> Recorder {
        Recorder {
            plan: summary.to_owned(),
            ..Recorder::default()
        }
    }

    pub fn refusing(why: &str) -> Recorder {
        Recorder {
            refuse: Some(why.to_owned()),
            ..Recorder::default()
        }
    }

    pub fn requests(&self) -> Vec<RunRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn interactive() -> Recorder {
        Recorder {
            interactive: true,
            ..Recorder::default()
        }
    }

    pub fn inputs(&self) -> Vec<RunInput> {
        self.inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn forgotten(&self) -> Vec<String> {
        self.forgotten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Executor for Recorder {
    fn plan(&self, _request: &RunRequest) -> Result<Plan, SandboxError> {
        match &self.refuse {
            None => Ok(Plan {
                summary: self.plan.clone(),
            }),
            Some(why) => Err(SandboxError::Config(why.clone())),
        }
    }

    fn forget_session(&self, session: &str) {
        self.forgotten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session.to_owned());
    }

    fn run(
        &self,
        request: RunRequest,
        output: mpsc::Sender<Chunk>,
        _cancel: oneshot::Receiver<()>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = RunStatus> + Send>> {
        let mut names: Vec<String> = request.files.iter().map(|(p, _)| p.clone()).collect();
        names.sort();
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        let diagnostics = self.diagnostics.clone();
        Box::pin(async move {
            let chunk = Chunk {
                stream: Stream::Stdout,
                data: names.join(" "),
            };
            let _ = output.send(chunk).await;
            RunStatus {
                exit_code: Some(if diagnostics.is_empty() { 0 } else { 1 }),
                diagnostics,
                ..RunStatus::default()
            }
        })
    }

    fn run_with_input(
        &self,
        request: RunRequest,
        output: mpsc::Sender<Chunk>,
        cancel: oneshot::Receiver<()>,
        mut input: mpsc::Receiver<RunInput>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = RunStatus> + Send>> {
        if !self.interactive {
            return self.run(request, output, cancel);
        }
        let printed = self.run(request, output.clone(), cancel);
        let inputs = self.inputs.clone();
        Box::pin(async move {
            let status = printed.await;
            while let Some(item) = input.recv().await {
                inputs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(item.clone());
                match item {
                    RunInput::Text(text) => {
                        let chunk = Chunk {
                            stream: Stream::Stdout,
                            data: format!("got {text}"),
                        };
                        let _ = output.send(chunk).await;
                    }
                    RunInput::Eof => break,
                    RunInput::Interrupt => {}
                }
            }
            status
        })
    }
}
