//! [`DockerExecutor`]: one locked-down container per run, driven through bollard.
//!
//! Life of a run:
//! ```text
//!  plan (project.rs) + build payload ─► wait for a slot (FIFO semaphore, cancellable)
//!  ─► ensure the session's cache volume (project builds) ─► create (all limits)
//!  ─► attach ─► start ─► write tar+stdin on stdin, then live input until EOF
//!  ─► select { cancel | wall clock | output chunk (kept for diagnostics) | exit }
//!  ─► SIGKILL if needed ─► inspect (oom_killed) ─► remove (force)
//!  ─► diagnostics from the kept output (diagnostics.rs)
//! ```
//! Invariants:
//! - Every container gets the whole lockdown of `policy.rs`, and this file adds to it
//!   only what the run needs (image, command, environment, labels, stdio); the one
//!   volume, the session's build cache, is part of `policy.rs` too.
//! - A run with a build step gets `Limits::compile_timeout` more wall clock and the
//!   build memory (`effective_limits`); everything else is the configured limits.
//! - Every container carries [`SANDBOX_LABEL`], this executor's [`INSTANCE_LABEL`] and an
//!   [`EXPIRES_LABEL`], and is force-removed before `run` resolves; if the run future is
//!   dropped or panics, the [`ContainerGuard`] removes it from a spawned task; if even
//!   that cannot happen (the runtime or the process died), the next `connect` sweeps it,
//!   and an in-container `timeout` has killed the program long before.
//! - The wall clock and the output cap are enforced here, not by Docker, and both end in
//!   SIGKILL; output past the cap is never forwarded.
//! - Live input ([`RunInput`]) is capped at `Limits::input_bytes` per run and never
//!   holds the run up: text queues behind a program that does not read (bounded by the
//!   cap), an interrupt goes out at once (SIGINT to PID 1, which `timeout` passes on to
//!   the program, see `payload.rs`), and the wall clock is the same with or without it.
//! - A non-zero exit arrives from bollard as `Err(DockerContainerWaitError { code })`, and
//!   the attach stream may not end after the container exits (bollard #251), so the loop
//!   selects on the wait future and gives the stream only a short grace after exit.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    AttachContainerOptions, AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, warn};

use crate::cache;
use crate::diagnostics::{self, Capture, Sources};
use crate::payload::{self, WORK_DIR, WRAPPER};
use crate::policy::{self, CACHE_DIR};
use crate::project::{self, Kind, Planned};
use crate::terminal::{self, Terminal, TerminalSize, TERMINAL_LABEL};
use crate::{
    Chunk, Executor, ExecutorConfig, Limits, Plan, RunInput, RunRequest, RunStatus, SandboxError,
    Stream,
};

/// Label on every container this crate starts (value `"1"`), so operators can find them.
pub const SANDBOX_LABEL: &str = "org.chorus.sandbox";
/// Label naming the executor instance that owns a container.
pub const INSTANCE_LABEL: &str = "org.chorus.sandbox.instance";
/// Label holding the Unix time after which a container is certainly orphaned (its hub
/// died or dropped it during runtime shutdown); [`DockerExecutor::sweep_expired`] removes it.
pub const EXPIRES_LABEL: &str = "org.chorus.sandbox.expires";

/// How long output may keep trickling in after the container exited before we stop
/// reading (the attach stream may never end on its own, bollard #251).
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(300);
/// Bound on engine calls made while tearing a run down, so a wedged engine cannot hang
/// a run forever.
pub(crate) const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time the in-container `timeout` backstop gives over the executor's wall clock,
/// so the executor's kill (which reports `timed_out`) normally comes first.
pub(crate) const BACKSTOP_GRACE: Duration = Duration::from_secs(2);
/// Inspections (and the pause between them) while waiting for a late OOM event.
const OOM_EVENT_ATTEMPTS: u32 = 5;
const OOM_EVENT_DELAY: Duration = Duration::from_millis(50);
/// How long after its wall clock a container counts as orphaned and may be swept.
pub(crate) const EXPIRY_GRACE: Duration = Duration::from_secs(60);

/// Runs requests in Docker containers with the configured limits.
/// How often a connected executor sweeps orphaned containers again.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub struct DockerExecutor {
    shared: Arc<Shared>,
}

/// State every run needs; shared with the run futures, which must be `'static`.
pub(crate) struct Shared {
    pub(crate) docker: Docker,
    pub(crate) config: ExecutorConfig,
    /// One permit per concurrent container (runs and open terminals); tokio's semaphore
    /// is fair, so waiters queue FIFO.
    pub(crate) slots: Arc<Semaphore>,
    /// Distinguishes this executor's containers from other hubs' (and other tests').
    pub(crate) instance: String,
    /// Makes container names unique within this instance.
    pub(crate) next_run: AtomicU64,
    /// Cache volumes this executor used, with the Unix time of their last run: a sweep
    /// spares them even when they were created long ago.
    pub(crate) recent_caches: Mutex<HashMap<String, u64>>,
}

impl DockerExecutor {
    /// Connects to the local engine, checks it answers and that every language's image
    /// exists. The error says why runs are disabled so the hub can log it and go on.
    pub async fn connect(config: ExecutorConfig) -> Result<Self, SandboxError> {
        if config.max_concurrent == 0 {
            return Err(SandboxError::Config(
                "max_concurrent must be at least 1".into(),
            ));
        }
        if let Some(language) = config.languages.iter().find(|l| l.command.is_empty()) {
            return Err(SandboxError::Config(format!(
                "language `{}` has an empty command",
                language.name
            )));
        }
        // The engine here speaks API 1.41 while bollard defaults to a newer version;
        // negotiating only ever lowers the version to what the engine supports.
        let docker = Docker::connect_with_local_defaults()
            .map_err(|err| SandboxError::EngineUnreachable(err.to_string()))?
            .negotiate_version()
            .await
            .map_err(|err| SandboxError::EngineUnreachable(err.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|err| SandboxError::EngineUnreachable(err.to_string()))?;

        let mut checked = HashSet::new();
        for language in &config.languages {
            if !checked.insert(language.image.clone()) {
                continue;
            }
            if let Err(err) = docker.inspect_image(&language.image).await {
                return Err(SandboxError::ImageMissing {
                    image: language.image.clone(),
                    language: language.name.clone(),
                    cause: err.to_string(),
                });
            }
        }

        let executor = DockerExecutor::new(docker, config);
        // Best effort: leftovers of a crashed hub must not block a fresh start.
        match executor.sweep_expired().await {
            Ok(0) => {}
            Ok(removed) => warn!(removed, "removed orphaned sandbox containers"),
            Err(err) => warn!(cause = %err, "could not sweep orphaned sandbox containers"),
        }
        match executor.sweep_caches().await {
            Ok(0) => {}
            Ok(removed) => warn!(removed, "removed expired build caches"),
            Err(err) => warn!(cause = %err, "could not sweep build caches"),
        }
        // Another hub on this engine may have died since (kill -9): its terminals
        // stop by themselves (their watchdog) but stay until someone removes them.
        let weak = Arc::downgrade(&executor.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                match (DockerExecutor { shared }).sweep_expired().await {
                    Ok(0) => {}
                    Ok(removed) => warn!(removed, "removed orphaned sandbox containers"),
                    Err(err) => debug!(cause = %err, "periodic sweep failed"),
                }
            }
        });
        Ok(executor)
    }

    /// Removes build cache volumes unused for longer than `ExecutorConfig::cache_ttl`.
    /// The engine records no last use, so "unused" is: created before the TTL and not
    /// used by this executor within it. Called by `connect`; a hub may call it
    /// periodically. Returns how many were removed.
    pub async fn sweep_caches(&self) -> Result<usize, SandboxError> {
        let now = unix_seconds();
        let ttl = self.shared.config.cache_ttl;
        let keep: Vec<String> = self
            .shared
            .recent_caches
            .lock()
            .map(|mut recent| {
                // What was not used within the TTL is no longer worth remembering.
                recent.retain(|_, used| *used + ttl.as_secs() >= now);
                recent.keys().cloned().collect()
            })
            .unwrap_or_default();
        Ok(cache::sweep(&self.shared.docker, ttl, now, &keep).await?)
    }

    /// Removes the build cache of `session` now (what [`Executor::forget_session`]
    /// starts in the background).
    pub async fn remove_session_cache(&self, session: &str) -> Result<(), SandboxError> {
        let name = cache::volume_name(session);
        if let Ok(mut recent) = self.shared.recent_caches.lock() {
            recent.remove(&name);
        }
        Ok(cache::remove(&self.shared.docker, &name).await?)
    }

    /// Names of the build cache volumes that exist (all sessions, all executors).
    pub async fn list_caches(&self) -> Result<Vec<String>, SandboxError> {
        Ok(cache::list(&self.shared.docker)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    fn new(docker: Docker, config: ExecutorConfig) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let instance = format!("{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff);
        DockerExecutor {
            shared: Arc::new(Shared {
                docker,
                slots: Arc::new(Semaphore::new(config.max_concurrent)),
                config,
                instance,
                next_run: AtomicU64::new(0),
                recent_caches: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Opens the shared terminal of `session`: a persistent locked-down container with
    /// a PTY running `bash -i` in `/work`, which holds `files`. Waits in the same FIFO
    /// queue as runs, and holds one of the `max_concurrent` slots until the terminal
    /// ends. See `terminal.rs` for the life cycle and [`Terminal`] for what the caller
    /// gets; dropping this future before it resolves removes the container.
    pub async fn open_terminal(
        &self,
        session: &str,
        files: &[(String, String)],
        size: TerminalSize,
    ) -> Result<Terminal, SandboxError> {
        terminal::open(self.shared.clone(), session, files, size).await
    }

    /// Force-removes every sandbox container (of any executor) whose [`EXPIRES_LABEL`]
    /// has passed (its run is long over, so its owner is gone), and every terminal
    /// container whose shell has ended (labelled [`TERMINAL_LABEL`]). Called by `connect`, which
    /// schedules it every [`SWEEP_EVERY`] while the executor lives. Returns how many were removed.
    pub async fn sweep_expired(&self) -> Result<usize, SandboxError> {
        let filters = HashMap::from([("label".to_owned(), vec![SANDBOX_LABEL.to_owned()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self.shared.docker.list_containers(Some(options)).await?;
        let now = unix_seconds();
        let mut removed = 0;
        for container in containers {
            let expires = container
                .labels
                .as_ref()
                .and_then(|labels| labels.get(EXPIRES_LABEL))
                .and_then(|value| value.parse::<u64>().ok());
            // A terminal whose shell has ended is over whoever owned it: its watchdog
            // ends it when its hub's connection goes (kill -9 included, see
            // `terminal.rs`), long before its expiry.
            let ended_terminal = container
                .labels
                .as_ref()
                .is_some_and(|labels| labels.contains_key(TERMINAL_LABEL))
                && matches!(
                    container.state,
                    Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD)
                );
            let (Some(expires), Some(id)) = (expires, container.id) else {
                continue;
            };
            if expires < now || ended_terminal {
                // Another executor may be sweeping the same orphan right now; its failure
                // to remove must not stop the sweep of the others.
                match remove_container(&self.shared.docker, &id).await {
                    Ok(()) => removed += 1,
                    Err(err) => debug!(cause = %err, container = %id, "sweep: remove failed"),
                }
            }
        }
        Ok(removed)
    }

    /// The value of [`INSTANCE_LABEL`] on this executor's containers.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance
    }

    /// Names of this executor's containers that still exist, running or not. Empty
    /// whenever no run is in flight: used by tests and health checks.
    pub async fn list_containers(&self) -> Result<Vec<String>, SandboxError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{INSTANCE_LABEL}={}", self.shared.instance)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self.shared.docker.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .flat_map(|summary| summary.names.unwrap_or_default())
            .collect())
    }
}

impl Executor for DockerExecutor {
    fn open_terminal(
        &self,
        session: String,
        files: Vec<(String, String)>,
        size: TerminalSize,
    ) -> Pin<Box<dyn Future<Output = Result<Terminal, SandboxError>> + Send>> {
        let shared = self.shared.clone();
        Box::pin(async move { terminal::open(shared, &session, &files, size).await })
    }

    fn plan(&self, request: &RunRequest) -> Result<Plan, SandboxError> {
        let config = &self.shared.config;
        project::plan(request, &config.languages, &config.baked).map(|planned| Plan {
            summary: planned.summary,
        })
    }

    fn forget_session(&self, session: &str) {
        let name = cache::volume_name(session);
        if let Ok(mut recent) = self.shared.recent_caches.lock() {
            recent.remove(&name);
        }
        // A run of the session may still be tearing down; removal then fails and the
        // TTL sweep gets the volume later.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let docker = self.shared.docker.clone();
            handle.spawn(async move {
                if let Err(err) = cache::remove(&docker, &name).await {
                    warn!(cause = %err, volume = %name, "could not remove a session's build cache");
                }
            });
        }
    }

    fn run(
        &self,
        request: RunRequest,
        output: mpsc::Sender<Chunk>,
        cancel: oneshot::Receiver<()>,
    ) -> Pin<Box<dyn Future<Output = RunStatus> + Send>> {
        // A dropped sender is an end-of-file right after the request's stdin.
        let (_closed, input) = mpsc::channel(1);
        Box::pin(run(self.shared.clone(), request, output, cancel, input))
    }

    fn run_with_input(
        &self,
        request: RunRequest,
        output: mpsc::Sender<Chunk>,
        cancel: oneshot::Receiver<()>,
        input: mpsc::Receiver<RunInput>,
    ) -> Pin<Box<dyn Future<Output = RunStatus> + Send>> {
        Box::pin(run(self.shared.clone(), request, output, cancel, input))
    }
}

/// Force-removes its container when dropped, so a dropped or panicking run still cleans
/// up. The normal path removes the container itself and then disarms the guard.
pub(crate) struct ContainerGuard {
    pub(crate) docker: Docker,
    pub(crate) id: Option<String>,
}

impl ContainerGuard {
    pub(crate) async fn remove(mut self) -> Result<(), DockerError> {
        let Some(id) = self.id.take() else {
            return Ok(());
        };
        remove_container(&self.docker, &id).await
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        // No runtime means the process is shutting down; nothing can be awaited then.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            handle.spawn(async move {
                if let Err(err) = remove_container(&docker, &id).await {
                    warn!(cause = %err, container = %id, "could not remove sandbox container");
                }
            });
        }
    }
}

pub(crate) async fn remove_container(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match tokio::time::timeout(TEARDOWN_TIMEOUT, docker.remove_container(id, Some(options))).await {
        Ok(result) => result,
        Err(_) => Err(DockerError::RequestTimeoutError),
    }
}

/// Sends SIGINT to the container's PID 1, the wrapper's `timeout`, which passes it on
/// to the program (see `payload.rs`).
async fn interrupt(docker: &Docker, id: &str) {
    let options = KillContainerOptionsBuilder::default()
        .signal("SIGINT")
        .build();
    let result = tokio::time::timeout(TEARDOWN_TIMEOUT, docker.kill_container(id, Some(options)));
    if let Ok(Err(err)) = result.await {
        debug!(cause = %err, container = %id, "interrupt failed (container probably exited)");
    }
}

/// What the stdin writer does next, in the order participants sent it.
enum Feed {
    Bytes(Vec<u8>),
    Eof,
}

/// Takes the run's input as it comes: interrupts go out at once, text is counted
/// against the cap and queued for the writer (the cap bounds the queue), and an EOF,
/// or the sender going away, ends the feed.
async fn take_input(
    docker: Docker,
    id: String,
    mut input: mpsc::Receiver<RunInput>,
    feed: mpsc::UnboundedSender<Feed>,
    output: mpsc::Sender<Chunk>,
    cap: usize,
) {
    let mut remaining = cap;
    loop {
        match input.recv().await {
            Some(RunInput::Text(text)) => {
                if text.len() > remaining {
                    let message = format!(
                        "chorus: input refused: this run accepts {cap} bytes of input in all,                          {remaining} are left and {} were sent\n",
                        text.len()
                    );
                    let chunk = Chunk {
                        stream: Stream::Stderr,
                        data: message,
                    };
                    let _ = output.send(chunk).await;
                    continue;
                }
                remaining -= text.len();
                if feed.send(Feed::Bytes(text.into_bytes())).is_err() {
                    return;
                }
            }
            Some(RunInput::Interrupt) => interrupt(&docker, &id).await,
            Some(RunInput::Eof) | None => {
                let _ = feed.send(Feed::Eof);
                break;
            }
        }
    }
    // Interrupts still make sense after an end-of-file; text is ignored.
    while let Some(item) = input.recv().await {
        if item == RunInput::Interrupt {
            interrupt(&docker, &id).await;
        }
    }
}

/// Attach to every stdio stream from the start, without earlier logs: runs and
/// terminals attach before they start, so nothing the program writes is missed.
pub(crate) fn attach_options() -> AttachContainerOptions {
    AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build()
}

/// Sends SIGKILL; an error (usually "not running") is harmless because the caller then
/// waits for the exit and force-removes anyway.
pub(crate) async fn kill(docker: &Docker, id: &str) {
    let options = KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    let result = tokio::time::timeout(TEARDOWN_TIMEOUT, docker.kill_container(id, Some(options)));
    if let Ok(Err(err)) = result.await {
        debug!(cause = %err, container = %id, "kill failed (container probably exited)");
    }
}

/// Turns the first item of bollard's wait stream into an exit code.
fn exit_code(
    item: Option<Result<bollard::models::ContainerWaitResponse, DockerError>>,
) -> Result<i64, String> {
    match item {
        Some(Ok(response)) => Ok(response.status_code),
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(err)) => Err(err.to_string()),
        None => Err("wait stream ended without a status".to_owned()),
    }
}

/// Splits off an incomplete UTF-8 sequence at the end of `bytes`, so a character cut
/// between two reads is decoded whole with the next read instead of as two U+FFFDs.
pub(crate) fn complete_prefix_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for index in (len.saturating_sub(3)..len).rev() {
        let byte = bytes[index];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let width = match byte {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if index + width > len { index } else { len };
    }
    len
}

/// Per-stream decoder holding back a split character.
#[derive(Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let cut = complete_prefix_len(&self.pending);
        let text = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
        self.pending.drain(..cut);
        text
    }

    fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Forwards output while counting it against the cap.
struct OutputPump {
    sender: mpsc::Sender<Chunk>,
    remaining: usize,
    stdout: Utf8Carry,
    stderr: Utf8Carry,
    truncated: bool,
    /// The forwarded output, kept for diagnostics: compilers and interpreters write
    /// to stderr, test harnesses (`cargo test`, pytest) report failures on stdout.
    stdout_capture: Capture,
    stderr_capture: Capture,
}

impl OutputPump {
    /// Forwards one frame; returns false once the cap is hit (the caller then kills).
    async fn forward(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        deadline: tokio::time::Instant,
    ) -> bool {
        let allowed = bytes.len().min(self.remaining);
        self.remaining -= allowed;
        let carry = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let data = carry.push(&bytes[..allowed]);
        match stream {
            Stream::Stdout => self.stdout_capture.push(&data),
            Stream::Stderr => self.stderr_capture.push(&data),
        }
        self.send(stream, data, deadline).await;
        if allowed < bytes.len() {
            self.truncated = true;
            return false;
        }
        true
    }

    async fn send(&self, stream: Stream, data: String, deadline: tokio::time::Instant) {
        if data.is_empty() {
            return;
        }
        // A slow consumer must not hold the run past its wall clock; a gone consumer
        // just means nobody is listening any more, which is not the program's fault.
        let _ = tokio::time::timeout_at(deadline, self.sender.send(Chunk { stream, data })).await;
    }

    async fn finish(&mut self, deadline: tokio::time::Instant) {
        let stdout = self.stdout.finish();
        self.stdout_capture.push(&stdout);
        self.send(Stream::Stdout, stdout, deadline).await;
        let stderr = self.stderr.finish();
        self.stderr_capture.push(&stderr);
        self.send(Stream::Stderr, stderr, deadline).await;
    }
}

/// The limits of one run: the configured ones, with the wall clock extended by the
/// compile limit and the memory raised to the build memory when the plan has a build
/// step (see `limits.rs`).
fn effective_limits(limits: &Limits, planned: &Planned) -> Limits {
    let mut effective = limits.clone();
    if planned.builds {
        // A project may lower its compile limit, never raise it above the hub's.
        effective.compile_timeout = planned
            .compile_timeout
            .map_or(limits.compile_timeout, |own| {
                own.min(limits.compile_timeout)
            });
        effective.wall_clock += effective.compile_timeout;
        effective.memory_bytes = limits.memory_bytes.max(limits.build_memory_bytes);
    }
    effective
}

/// Whether a run of this kind gets the session's build cache: those that may build.
fn uses_cache(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Cargo | Kind::Make | Kind::RunToml | Kind::Command
    )
}

/// The run's container: the lockdown of `policy.rs`, plus what this run needs.
fn container_body(
    limits: &Limits,
    instance: &str,
    planned: &Planned,
    cache_volume: Option<&str>,
    tar_len: usize,
) -> ContainerCreateBody {
    let mut cmd = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        WRAPPER.to_owned(),
        "chorus".to_owned(),
    ];
    cmd.extend(planned.argv.iter().cloned());
    let mut env = vec![
        format!("CHORUS_TAR_BYTES={tar_len}"),
        format!(
            "CHORUS_KILL_AFTER={}",
            (limits.wall_clock + BACKSTOP_GRACE).as_secs()
        ),
        format!("CHORUS_COMPILE_SECS={}", limits.compile_timeout.as_secs()),
        // Toolchains (cargo, node, pip) look for a writable home.
        "HOME=/tmp".to_owned(),
    ];
    if cache_volume.is_some() {
        env.extend([
            format!("CHORUS_CACHE_KIB={}", limits.cache_bytes / 1024),
            format!("CARGO_TARGET_DIR={CACHE_DIR}/target"),
            format!("CARGO_HOME={CACHE_DIR}/cargo-home"),
        ]);
    } else {
        env.push("CARGO_TARGET_DIR=/tmp/target".to_owned());
    }
    env.extend(
        planned
            .env
            .iter()
            .map(|(name, value)| format!("{name}={value}")),
    );
    ContainerCreateBody {
        image: Some(planned.image.clone()),
        cmd: Some(cmd),
        // Clear any entrypoint of a registry image so `cmd` is the whole command line.
        entrypoint: Some(Vec::new()),
        working_dir: Some(WORK_DIR.to_owned()),
        env: Some(env),
        labels: Some(HashMap::from([
            (SANDBOX_LABEL.to_owned(), "1".to_owned()),
            (INSTANCE_LABEL.to_owned(), instance.to_owned()),
            (
                EXPIRES_LABEL.to_owned(),
                (unix_seconds() + (limits.wall_clock + EXPIRY_GRACE).as_secs()).to_string(),
            ),
        ])),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        // The lockdown's fields; none of them is set above, so none is
        // loosened here (tested below).
        ..policy::locked_down(limits, cache_volume)
    }
}

/// One run, start to finish. Every early return after `create` goes through the guard.
async fn run(
    shared: Arc<Shared>,
    request: RunRequest,
    output: mpsc::Sender<Chunk>,
    mut cancel: oneshot::Receiver<()>,
    input: mpsc::Receiver<RunInput>,
) -> RunStatus {
    // Everything that can be refused is refused before queueing or touching the engine.
    let prepared = project::plan(&request, &shared.config.languages, &shared.config.baked)
        .and_then(|planned| {
            let stdin = request.stdin.as_deref().unwrap_or("");
            let (bytes, tar_len) = payload::build(&request.files, stdin)?;
            Ok((planned, bytes, tar_len))
        });
    let (planned, payload_bytes, tar_len) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => return RunStatus::failed(err.to_string()),
    };
    let limits = effective_limits(&shared.config.limits, &planned);

    // Queue for a slot; a cancel while queued ends the run without a container.
    let _permit = tokio::select! {
        permit = shared.slots.clone().acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return RunStatus::failed("executor is shutting down"),
        },
        _ = &mut cancel => {
            return RunStatus { cancelled: true, ..blank_status() };
        }
    };

    let docker = &shared.docker;
    let run_number = shared.next_run.fetch_add(1, Ordering::Relaxed);
    let name = format!("chorus-run-{}-{run_number}", shared.instance);
    // A run without a session still builds in a volume (the tmpfs is too small for a
    // target dir), but one of its own that goes with the run.
    let cache_volume = uses_cache(planned.kind).then(|| {
        if request.session.is_empty() {
            (
                format!("chorus-cache-run-{}-{run_number}", shared.instance),
                true,
            )
        } else {
            (cache::volume_name(&request.session), false)
        }
    });
    if let Some((volume, _)) = &cache_volume {
        if let Err(err) = cache::ensure(docker, volume, unix_seconds()).await {
            return RunStatus::failed(format!("cannot create the build cache: {err}"));
        }
        if let Ok(mut recent) = shared.recent_caches.lock() {
            recent.insert(volume.clone(), unix_seconds());
        }
    }
    let body = container_body(
        &limits,
        &shared.instance,
        &planned,
        cache_volume.as_ref().map(|(volume, _)| volume.as_str()),
        tar_len,
    );
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = match docker.create_container(Some(options), body).await {
        Ok(created) => created,
        Err(err) => return RunStatus::failed(format!("cannot create container: {err}")),
    };
    let guard = ContainerGuard {
        docker: docker.clone(),
        id: Some(created.id.clone()),
    };
    let id = created.id;

    let (mut status, stdout, stderr) = drive(
        &shared,
        &limits,
        &id,
        payload_bytes,
        output,
        &mut cancel,
        input,
    )
    .await;
    if let Err(err) = guard.remove().await {
        warn!(cause = %err, container = %id, "could not remove sandbox container");
    }
    if let Some((volume, true)) = &cache_volume {
        if let Err(err) = cache::remove(docker, volume).await {
            warn!(cause = %err, volume = %volume, "could not remove a throwaway build cache");
        }
    }
    let stderr = stderr.text();
    if planned.builds
        && stderr
            .lines()
            .any(|line| line.starts_with(project::COMPILE_STOPPED))
    {
        status.timed_out = true;
    }
    let output = format!("{stderr}\n{}", stdout.text());
    status.diagnostics =
        diagnostics::parse(&output, &Sources::new(&request.files, &planned.project_dir));
    status
}

/// Attaches, starts and watches one created container until it is gone or killed;
/// returns the status and the kept stdout and stderr.
async fn drive(
    shared: &Shared,
    limits: &Limits,
    id: &str,
    payload_bytes: Vec<u8>,
    output: mpsc::Sender<Chunk>,
    cancel: &mut oneshot::Receiver<()>,
    run_input: mpsc::Receiver<RunInput>,
) -> (RunStatus, Capture, Capture) {
    let docker = &shared.docker;
    let mut status = blank_status();

    let attached = match docker.attach_container(id, Some(attach_options())).await {
        Ok(attached) => attached,
        Err(err) => {
            let status = RunStatus::failed(format!("cannot attach to container: {err}"));
            return (status, Capture::default(), Capture::default());
        }
    };
    let mut log_stream = attached.output;
    let mut input = attached.input;

    if let Err(err) = docker.start_container(id, None).await {
        let status = RunStatus::failed(format!("cannot start container: {err}"));
        return (status, Capture::default(), Capture::default());
    }
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limits.wall_clock;

    // The writer runs beside the output loop so a large payload, or a program that
    // does not read its input, cannot stall reading. It sends the payload, then live
    // input as it comes; an end-of-file shuts the connection's write half, which the
    // engine (`stdin_once`) turns into the program's stdin closing.
    let (feed, mut fed) = mpsc::unbounded_channel();
    let taker = tokio::spawn(take_input(
        docker.clone(),
        id.to_owned(),
        run_input,
        feed,
        output.clone(),
        limits.input_bytes,
    ));
    let writer = tokio::spawn(async move {
        let result = async {
            input.write_all(&payload_bytes).await?;
            input.flush().await?;
            while let Some(item) = fed.recv().await {
                match item {
                    Feed::Bytes(bytes) => {
                        input.write_all(&bytes).await?;
                        input.flush().await?;
                    }
                    Feed::Eof => {
                        input.shutdown().await?;
                        break;
                    }
                }
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(err) = result {
            debug!(cause = %err, "writing stdin failed (container ended early?)");
        }
        // Keep the connection open until the run is over (a shut write half still
        // carries output).
        std::future::pending::<()>().await;
    });

    // Created only now: the default "not-running" condition would return at once for a
    // container that has not started yet.
    let mut wait = docker.wait_container(id, None).boxed().into_future();
    let mut pump = OutputPump {
        sender: output,
        remaining: limits.output_bytes,
        stdout: Utf8Carry::default(),
        stderr: Utf8Carry::default(),
        truncated: false,
        stdout_capture: Capture::default(),
        stderr_capture: Capture::default(),
    };

    let mut exited: Option<Result<i64, String>> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut must_kill = false;
    // Set when the attach stream ended first: output is complete, only the exit is missing.
    let mut stream_ended = false;
    loop {
        let drain_sleep = tokio::time::sleep_until(drain_until.unwrap_or(deadline));
        tokio::select! {
            biased;
            _ = &mut *cancel => {
                status.cancelled = true;
                must_kill = true;
                break;
            }
            _ = tokio::time::sleep_until(deadline), if exited.is_none() => {
                status.timed_out = true;
                must_kill = true;
                break;
            }
            item = log_stream.next(), if !stream_ended => match item {
                Some(Ok(frame)) => {
                    let (stream, bytes) = match frame {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => (Stream::Stdout, message),
                        LogOutput::StdErr { message } => (Stream::Stderr, message),
                        LogOutput::StdIn { .. } => continue,
                    };
                    if !pump.forward(stream, &bytes, deadline).await {
                        must_kill = exited.is_none();
                        break;
                    }
                    if exited.is_some() {
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                }
                Some(Err(err)) => {
                    debug!(cause = %err, container = %id, "attach stream failed");
                    if exited.is_some() { break; }
                    stream_ended = true;
                }
                None => {
                    if exited.is_some() { break; }
                    stream_ended = true;
                }
            },
            (item, _rest) = &mut wait, if exited.is_none() => {
                status.duration_ms = elapsed_ms(started);
                exited = Some(exit_code(item));
                if stream_ended { break; }
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = drain_sleep, if drain_until.is_some() => break,
        }
    }

    // Close the attach connection before anything else: while output sits unread in it,
    // the engine blocks the container's exit (and kill, wait and inspect with it) on the
    // stuck copy; a flood that hit the cap would otherwise hang teardown for seconds.
    drop(log_stream);
    taker.abort();
    writer.abort();
    let _ = writer.await;
    if must_kill {
        kill(docker, id).await;
        status.duration_ms = elapsed_ms(started);
        if exited.is_none() {
            // Collect the exit code of the kill (137), but never wait unboundedly.
            exited = match tokio::time::timeout(TEARDOWN_TIMEOUT, &mut wait).await {
                Ok((item, _rest)) => Some(exit_code(item)),
                Err(_) => Some(Err("container did not stop after SIGKILL".to_owned())),
            };
        }
    }
    if !status.cancelled {
        pump.finish(deadline.max(tokio::time::Instant::now() + DRAIN_GRACE))
            .await;
    }
    status.truncated = pump.truncated;

    match exited {
        Some(Ok(code)) => status.exit_code = Some(code),
        Some(Err(err)) => status.error = Some(format!("waiting for the container failed: {err}")),
        None => {}
    }
    // The engine records `OOMKilled` from a separate OOM event that can land just after
    // the exit event. A SIGKILL we did not send is the OOM killer's signature, so only
    // then is it worth asking again for a moment.
    let killed_by_kernel = !must_kill && status.exit_code == Some(137);
    let attempts = if killed_by_kernel {
        OOM_EVENT_ATTEMPTS
    } else {
        1
    };
    for attempt in 1..=attempts {
        match tokio::time::timeout(TEARDOWN_TIMEOUT, docker.inspect_container(id, None)).await {
            Ok(Ok(inspect)) => {
                if let Some(state) = inspect.state {
                    status.oom_killed = state.oom_killed.unwrap_or(false);
                    if status.exit_code.is_none() {
                        status.exit_code = state.exit_code;
                    }
                }
            }
            Ok(Err(err)) => warn!(cause = %err, container = %id, "inspect failed"),
            Err(_) => warn!(container = %id, "inspect timed out"),
        }
        if status.oom_killed || attempt == attempts {
            break;
        }
        tokio::time::sleep(OOM_EVENT_DELAY).await;
    }
    (status, pump.stdout_capture, pump.stderr_capture)
}

/// A status with nothing set yet, filled in as the run goes.
fn blank_status() -> RunStatus {
    RunStatus::default()
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_container_keeps_the_whole_lockdown() {
        let limits = Limits::default();
        let planned = Planned {
            summary: String::new(),
            image: "image".into(),
            argv: vec!["x".into()],
            env: vec![("HOME".into(), "/elsewhere".into())],
            kind: Kind::Cargo,
            project_dir: String::new(),
            builds: true,
            compile_timeout: None,
        };
        let body = container_body(&limits, "instance", &planned, Some("volume"), 10);
        let lockdown = policy::locked_down(&limits, Some("volume"));
        assert_eq!(body.user, lockdown.user);
        assert_eq!(body.network_disabled, lockdown.network_disabled);
        assert_eq!(body.host_config, lockdown.host_config);
        // And the lockdown sets nothing but those three fields.
        assert_eq!(
            ContainerCreateBody {
                user: None,
                network_disabled: None,
                host_config: None,
                ..lockdown
            },
            ContainerCreateBody::default()
        );
    }

    #[test]
    fn utf8_carry_joins_split_characters() {
        let text = "é€😀";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let mut carry = Utf8Carry::default();
            let mut out = carry.push(&bytes[..split]);
            out.push_str(&carry.push(&bytes[split..]));
            out.push_str(&carry.finish());
            assert_eq!(out, text, "split at {split}");
        }
    }

    #[test]
    fn utf8_carry_is_lossy_on_garbage() {
        let mut carry = Utf8Carry::default();
        let mut out = carry.push(b"a\xffb");
        out.push_str(&carry.push(b"\xe2\x82"));
        out.push_str(&carry.finish());
        assert_eq!(out, "a\u{fffd}b\u{fffd}");
    }
}
