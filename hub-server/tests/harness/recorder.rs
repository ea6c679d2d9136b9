//! A fake executor for the hub's wire tests: it records what it was asked
//! to run (and which sessions it was told to forget), answers `plan` as it
//! was set up to, and "runs" by printing the names of the files it got.
//! Included by each test binary with `#[path]`; a binary uses only some of
//! it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use chorus_sandbox::{
    Chunk, Executor, Plan, RunDiagnostic, RunRequest, RunStatus, SandboxError, Stream,
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
}
