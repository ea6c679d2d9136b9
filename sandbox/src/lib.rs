//! Runs session code in locked-down Docker containers.
//!
//! Architecture invariant: only this crate starts containers. The hub hands an
//! [`Executor`] a [`RunRequest`] built from its authoritative document texts and gets
//! output [`Chunk`]s streamed back as they are produced, then one [`RunStatus`]. While
//! the run goes, [`RunInput`]s sent on its input channel reach the program's stdin (or
//! interrupt it).
//!
//! Code map:
//! - `limits.rs`: [`Limits`], the per-run caps, and their defaults (`limits::DEFAULT_*`).
//! - `policy.rs`: the container lockdown (user, capabilities, network, filesystem, limits),
//!   every rule with its reason.
//! - `languages.rs`: [`Language`], the defaults, and how a request picks one.
//! - `project.rs`: what a request runs (project detection, modes, dependency checks),
//!   decided before any container exists.
//! - `baked.rs`: [`Baked`], the crates and packages the image holds.
//! - `cache.rs`: the per-session build cache volumes.
//! - `diagnostics.rs`: compiler and interpreter errors found in a run's stderr.
//! - `payload.rs`: path validation and the tar-on-stdin transport into a read-only container.
//! - `docker.rs`: [`DockerExecutor`], the bollard-driven run loop.
//! - `pool.rs`: the Docker engines runs are spread over ([`EngineConfig`]), their
//!   health, and the one FIFO queue in front of them.
//! - `terminal.rs`: shared terminals, one persistent container with a PTY per session,
//!   opened by [`DockerExecutor::open_terminal`] and driven through a [`TerminalHandle`].

mod baked;
mod cache;
pub mod diagnostics;
mod docker;
mod languages;
pub mod limits;
mod payload;
mod policy;
mod pool;
pub mod project;
mod terminal;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use baked::Baked;
pub use cache::{volume_name as cache_volume_name, CACHE_LABEL, CREATED_LABEL, DEFAULT_CACHE_TTL};
pub use docker::{DockerExecutor, ENGINE_LABEL, EXPIRES_LABEL, INSTANCE_LABEL, SANDBOX_LABEL};
pub use languages::{default_languages, Language, DEFAULT_IMAGE};
pub use limits::Limits;
pub use payload::validate_path;
pub use pool::{
    validate as validate_engines, Endpoint, EngineConfig, EngineStatus, TlsFiles, HEALTH_EVERY,
    LOCAL_ENGINE,
};
pub use terminal::{
    Terminal, TerminalConfig, TerminalEnd, TerminalError, TerminalEvent, TerminalHandle,
    TerminalSize, CHUNK_BYTES as TERMINAL_CHUNK_BYTES, DEFAULT_TERMINAL_IDLE_SECS,
    DEFAULT_TERMINAL_LIFETIME_SECS, DEFAULT_TERMINAL_OUTPUT_QUEUE, DEFAULT_TERMINAL_REPLAY_BYTES,
    TERMINAL_LABEL,
};

/// Everything an executor needs besides the requests themselves.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Caps applied to every run.
    pub limits: Limits,
    /// Languages a request may use; the first match wins.
    pub languages: Vec<Language>,
    /// Containers running at once on the local engine, runs and open terminals alike
    /// (a terminal holds its slot until it ends), when `engines` is empty; further ones
    /// wait in a FIFO queue.
    pub max_concurrent: usize,
    /// The Docker engines runs and terminals are spread over, each with its capacity
    /// (see `pool.rs`); one FIFO queue serves them all. Empty (the default) is one
    /// engine: the local socket with `max_concurrent`.
    pub engines: Vec<EngineConfig>,
    /// What the image holds, to refuse a missing dependency before a run; the default
    /// is the catalogue of [`DEFAULT_IMAGE`].
    pub baked: Baked,
    /// Build caches unused for longer than this are swept (see `DockerExecutor::sweep_caches`).
    pub cache_ttl: std::time::Duration,
    /// Shared terminals: idle timeout, lifetime cap, replay and output bounds.
    pub terminal: TerminalConfig,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            limits: Limits::default(),
            languages: default_languages(),
            max_concurrent: limits::DEFAULT_MAX_CONCURRENT,
            engines: Vec::new(),
            baked: Baked::default(),
            cache_ttl: DEFAULT_CACHE_TTL,
            terminal: TerminalConfig::default(),
        }
    }
}

impl ExecutorConfig {
    /// The engines in use: `engines`, or the local one with `max_concurrent`.
    pub fn engine_list(&self) -> Vec<EngineConfig> {
        if self.engines.is_empty() {
            vec![EngineConfig::local(self.max_concurrent)]
        } else {
            self.engines.clone()
        }
    }
}

/// One request to run code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// Workspace-relative path of the file to run, e.g. `src/main.py`; must be in `files`.
    pub main: String,
    /// Every document of the session as (relative path, text); all are placed in the work
    /// dir so multi-file programs run.
    pub files: Vec<(String, String)>,
    /// Language name; `None` picks by `main`'s extension.
    pub language: Option<String>,
    /// Bytes fed to the program's stdin first, before any [`RunInput`]; `None` is
    /// nothing. Whether stdin then closes is up to the input channel (see
    /// [`Executor::run_with_input`]).
    pub stdin: Option<String>,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Run, test or release; projects decide what each means.
    pub mode: RunMode,
    /// A shell command line replacing the detected command (`sh -c` in the work dir).
    pub command: Option<String>,
    /// The session the run belongs to: a build cache is kept per session, never shared.
    pub session: String,
}

/// What a request will run, decided before it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One line for the run's header, e.g. `cargo run --offline (Cargo.toml)`.
    pub summary: String,
}

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of output, sent as soon as it arrives; chunks come in production order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Where the bytes were written.
    pub stream: Stream,
    /// Lossy UTF-8; a character split across reads is held back until it is whole.
    pub data: String,
}

/// Something sent to a running program while it runs, in the order sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunInput {
    /// Bytes for the program's stdin. At most [`Limits::input_bytes`] of them per run;
    /// text past that is refused with a `chorus:` line on the run's stderr.
    Text(String),
    /// Close the program's stdin: `read()` returns what it has, `input()` raises
    /// `EOFError`. Input after it is ignored. Dropping the channel's sender does the same.
    Eof,
    /// SIGINT to the program the run started (Python raises `KeyboardInterrupt`).
    Interrupt,
}

/// How a run ended: the protocol's own type, so that the hub hands it to
/// participants as it is.
pub use chorus_protocol::wire::RunResult as RunStatus;
pub use chorus_protocol::wire::{RunDiagnostic, RunDiagnosticSeverity, RunMode};

/// Something that runs code. The hub holds one behind an `Arc<dyn Executor>`; tests may
/// use a fake.
pub trait Executor: Send + Sync + 'static {
    /// What `request` would run, or why it cannot (unknown language, bad
    /// project file...), without starting anything.
    fn plan(&self, _request: &RunRequest) -> Result<Plan, SandboxError> {
        Ok(Plan::default())
    }

    /// The session is gone: drop whatever the executor keeps for it (its build cache).
    fn forget_session(&self, _session: &str) {}

    /// Streams output chunks into `output` as they are produced (never the whole buffer
    /// again); resolves when the run ends; `cancel` resolving (or its sender dropping)
    /// stops the run (SIGKILL). Waits in a queue while every engine is full.
    /// Dropping the returned future also kills and removes the container.
    /// The program's stdin is the request's `stdin` and then closed (a one-shot run).
    fn run(
        &self,
        request: RunRequest,
        output: mpsc::Sender<Chunk>,
        cancel: oneshot::Receiver<()>,
    ) -> Pin<Box<dyn Future<Output = RunStatus> + Send>>;

    /// [`Executor::run`], with the program's stdin kept open after the request's
    /// `stdin`: every [`RunInput`] received on `input` reaches the program as it comes,
    /// until [`RunInput::Eof`] or the sender is dropped (which closes stdin). The
    /// default ignores `input` and closes stdin at once, as `run` does.
    fn run_with_input(
        &self,
        request: RunRequest,
        output: mpsc::Sender<Chunk>,
        cancel: oneshot::Receiver<()>,
        input: mpsc::Receiver<RunInput>,
    ) -> Pin<Box<dyn Future<Output = RunStatus> + Send>> {
        drop(input);
        self.run(request, output, cancel)
    }

    /// The engines runs go to, with their health and load now (for
    /// metrics and `chorus hub --check`); none for an executor without.
    fn engines(&self) -> Vec<EngineStatus> {
        Vec::new()
    }

    /// Opens `session`'s shared terminal holding `files` (see
    /// [`DockerExecutor::open_terminal`]). The default has none.
    fn open_terminal(
        &self,
        _session: String,
        _files: Vec<(String, String)>,
        _size: TerminalSize,
    ) -> Pin<Box<dyn Future<Output = Result<Terminal, SandboxError>> + Send>> {
        Box::pin(async { Err(SandboxError::NoTerminals) })
    }
}

/// Why the executor cannot be used or a request cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("code execution disabled: cannot reach the Docker engine ({0}); start it with sandbox/scripts/ensure-docker.sh")]
    EngineUnreachable(String),
    #[error("code execution disabled: image `{image}` for {language} is missing ({cause}); build it with sandbox/images/build-local.sh")]
    ImageMissing {
        image: String,
        language: String,
        cause: String,
    },
    #[error("code execution disabled: no Docker engine is usable ({0})")]
    NoEngine(String),
    #[error("the Docker engine {0} went away")]
    EngineGone(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("unknown language `{0}`")]
    UnknownLanguage(String),
    #[error("no language for `{0}`: name one or use a known extension")]
    NoLanguageFor(String),
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("main file `{0}` is not among the session's files")]
    MainMissing(String),
    #[error("cannot build the workspace archive: {0}")]
    Payload(String),
    #[error("the run's command is empty")]
    EmptyCommand,
    #[error("{0}")]
    MissingDependency(String),
    #[error("bad project file: {0}")]
    Project(String),
    #[error("docker engine error: {0}")]
    Engine(#[from] bollard::errors::Error),
    #[error("this hub's executor has no shared terminals")]
    NoTerminals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stream_have_the_documented_wire_shape() {
        let status = RunStatus {
            exit_code: Some(0),
            timed_out: false,
            oom_killed: true,
            truncated: false,
            cancelled: false,
            duration_ms: 12,
            error: None,
            diagnostics: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"exitCode":0,"timedOut":false,"oomKilled":true,"truncated":false,"cancelled":false,"durationMs":12}"#
        );
        // A reason, when there is one, is part of the shape too.
        assert_eq!(
            serde_json::to_value(RunStatus::failed("no engine")).unwrap()["error"],
            "no engine"
        );
        assert_eq!(
            serde_json::to_string(&Stream::Stderr).unwrap(),
            r#""stderr""#
        );
    }
}
