//! Shared terminals: one persistent locked-down container per session, with a PTY
//! running an interactive shell in `/work`, driven by the hub through a
//! [`TerminalHandle`].
//!
//! Life of a terminal:
//! ```text
//!  tar of the files ─► wait for a place on an engine (the runs' FIFO queue, pool.rs;
//!     held until the end)
//!  ─► ensure the session's cache volume ─► create (policy.rs lockdown, tty, open stdin)
//!  ─► attach ─► start ─► resize ─► watchdog exec ─► setup exec (tar into /work, then the
//!     gate opens and PID 1's script execs `bash -i`)
//!  ─► driver task: select { close | engine down | output (replay + coalesce)
//!                           | shell exit | idle | lifetime | watchdog gone }
//!  ─► drop the attach stream ─► SIGKILL ─► inspect (oom) ─► remove (force)
//!  ─► release the slot ─► [`TerminalEvent::Ended`] with a [`TerminalEnd`]
//! ```
//! Invariants:
//! - The container gets the whole lockdown of `policy.rs` (same memory as a run with a
//!   build step, since a terminal may build), and this file adds only what a terminal
//!   needs: image, command, environment, labels, `tty`/stdin wiring and a hostname.
//! - The files arrive through `docker exec` as the sandbox user: a tar on the exec's
//!   stdin unpacked into `/work` (a read-only root refuses uploads, and a PTY's line
//!   discipline would mangle a tar sent on the terminal's own stdin). PID 1 waits for
//!   the first unpack before it starts the shell, so the shell never sees a half
//!   workspace. Later updates unpack over what is there: files programs wrote stay.
//! - Output memory is bounded whatever the program writes: at most
//!   [`TerminalConfig::output_queue`] chunks of at most [`CHUNK_BYTES`] wait in the
//!   channel, at most [`PENDING_BYTES`] more wait in the coalescer, and the replay
//!   buffer keeps the last [`TerminalConfig::replay_bytes`]. When the channel is full
//!   and the coalescer too, new output is dropped, never queued: the consumer then gets
//!   one [`TerminalEvent::Lagged`] with the count before output resumes, and can resync
//!   from [`TerminalHandle::replay`], which never drops.
//! - The container is always removed: by the driver when the terminal ends (close,
//!   idle, lifetime, shell exit, every handle dropped); by the [`ContainerGuard`] if
//!   `open` is dropped half way; and if the hub dies (kill -9), by the watchdog: an exec
//!   whose stdin is the hub's connection, which kills every process but PID 1 when
//!   that connection closes, so PID 1 exits and the next `connect` sweeps
//!   the stopped container (`sweep_expired`). The user can see and signal the
//!   watchdog (same uid): killing its `cat` ends the terminal (the watchdog goes on to
//!   its kill), as does `kill -9 -1` (it kills the shell's parent); a watchdog whose
//!   `sh` dies first is started again within [`WATCHDOG_RETRY`]. In that window, or
//!   if the user keeps it from starting, the in-container `timeout` (lifetime + grace)
//!   and the expiry label still bound the container's life.
//! - The idle timeout and the lifetime cap are the executor's timers (SIGKILL); only
//!   the lifetime has an in-container backstop.
//! - A terminal whose engine goes away (the health checks mark it down, or a failed
//!   wait is followed by a failed ping) ends at once with [`TerminalEnd::Failed`]
//!   naming the engine; its container is removed when the engine answers again. It is
//!   not moved: the shell's state died with the engine.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cache;
use crate::docker::{
    attach_options, complete_prefix_len, is_not_found, kill, unix_seconds, ContainerGuard, Shared,
    BACKSTOP_GRACE, ENGINE_LABEL, EXPIRES_LABEL, EXPIRY_GRACE, INSTANCE_LABEL, SANDBOX_LABEL,
    TEARDOWN_TIMEOUT,
};
use crate::payload::{self, WORK_DIR};
use crate::policy::{self, CACHE_DIR, SANDBOX_USER};
use crate::pool::{self, Slot};
use crate::{Limits, SandboxError, DEFAULT_IMAGE};

/// Label on terminal containers (value `"1"`), besides the labels every sandbox
/// container carries.
pub const TERMINAL_LABEL: &str = "org.chorus.sandbox.terminal";
/// Idle timeout of a terminal, in seconds: no keystroke, resize, file update or output.
pub const DEFAULT_TERMINAL_IDLE_SECS: u64 = 15 * 60;
/// Lifetime cap of a terminal, in seconds, however busy.
pub const DEFAULT_TERMINAL_LIFETIME_SECS: u64 = 2 * 60 * 60;
/// Bytes of recent output kept for late joiners.
pub const DEFAULT_TERMINAL_REPLAY_BYTES: usize = 64 * 1024;
/// Output chunks waiting for the consumer before output is dropped.
pub const DEFAULT_TERMINAL_OUTPUT_QUEUE: usize = 64;
/// The largest output chunk: what the hub's run output uses too (SECURITY.md).
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Output after a quiet spell goes at once (an echo); within this of the last chunk
/// sent, it waits until this has passed, gathering a burst into few chunks.
pub const GATHER: Duration = Duration::from_millis(25);
/// Output held by the coalescer while the channel is full, before output is dropped.
pub const PENDING_BYTES: usize = 4 * CHUNK_BYTES;
/// How soon a watchdog that ended is started again.
pub const WATCHDOG_RETRY: Duration = Duration::from_secs(1);

/// PID 1's script, run by `sh` (dash) with the lifetime backstop in seconds as `$1`.
/// Under `timeout` (the backstop), a shell waits for the first unpack
/// (`/tmp/.chorus-ready`, which `UNPACK` creates), then becomes `bash -i` in `/work`
/// (Debian's `/etc/bash.bashrc` sets the prompt). PID 1 stays `sh` rather than
/// `timeout` because orphans are reparented to PID 1 and only a shell reaps them (dash
/// waits for any child): a fork bomb's zombies would otherwise keep their pids after
/// `kill -9 -1` and the terminal could never fork again. The `exit` keeps dash from
/// `exec`ing `timeout` as its last command. When `timeout` ends (its child killed by
/// the watchdog, the backstop, or the shell exiting), PID 1 exits with its status and
/// the container stops.
const INIT: &str = r#"timeout --foreground -s KILL "$1" sh -c 'until [ -e /tmp/.chorus-ready ]; do sleep 0.05; done; rm -f /tmp/.chorus-ready; exec bash -i'
exit $?"#;

/// Unpacks exactly `$1` bytes of tar from stdin into `/work` (over what is there),
/// then opens the gate (harmless after the first time: PID 1 no longer looks).
const UNPACK: &str = r#"head -c "$1" | tar -x -f - -C /work --no-same-owner --no-same-permissions -m && : > /tmp/.chorus-ready"#;

/// Ends the terminal when the hub's connection to this exec closes: `cat` sees
/// end-of-file, and `kill -KILL -1` kills every process but PID 1 (which the kernel
/// spares) and this one, `timeout` and the shell included, so PID 1 exits.
const WATCHDOG: &str = "cat > /dev/null; kill -KILL -1";

/// What the hub may tune; the executor's limits (memory, pids, CPU, files, disk) apply
/// as they do to runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalConfig {
    /// No keystroke, resize, file update or output for this long ends the terminal.
    pub idle_timeout: Duration,
    /// A terminal ends this long after it opened, however busy; an in-container
    /// `timeout` kills it a little later if the executor could not.
    pub lifetime: Duration,
    /// Bytes of the most recent output [`TerminalHandle::replay`] returns.
    pub replay_bytes: usize,
    /// Chunks the output channel holds before output is dropped (see the module doc).
    pub output_queue: usize,
    /// The image the shell runs in; its tools are what the terminal offers.
    pub image: String,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            idle_timeout: Duration::from_secs(DEFAULT_TERMINAL_IDLE_SECS),
            lifetime: Duration::from_secs(DEFAULT_TERMINAL_LIFETIME_SECS),
            replay_bytes: DEFAULT_TERMINAL_REPLAY_BYTES,
            output_queue: DEFAULT_TERMINAL_OUTPUT_QUEUE,
            image: DEFAULT_IMAGE.to_owned(),
        }
    }
}

/// A terminal's size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    pub cols: u16,
    pub rows: u16,
}

impl Default for TerminalSize {
    fn default() -> Self {
        TerminalSize { cols: 80, rows: 24 }
    }
}

/// What the terminal's output channel carries, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminalEvent {
    /// Raw bytes from the PTY (escape sequences included), at most [`CHUNK_BYTES`],
    /// cut between whole UTF-8 characters when the output is UTF-8.
    Output(Vec<u8>),
    /// This many bytes were dropped because the consumer fell behind; the output that
    /// follows comes after a gap. [`TerminalHandle::replay`] has the recent screen.
    Lagged { dropped_bytes: u64 },
    /// The terminal is over and its container removed; the last event.
    Ended(TerminalEnd),
}

/// Why a terminal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminalEnd {
    /// [`TerminalHandle::close`], or every handle dropped.
    Closed,
    /// The shell exited (`exit`, end-of-file, killed); `oom_killed` when the kernel's
    /// OOM killer ended it.
    ShellExited { code: Option<i64>, oom_killed: bool },
    /// Nothing happened for [`TerminalConfig::idle_timeout`].
    IdleTimeout,
    /// The terminal reached [`TerminalConfig::lifetime`].
    LifetimeExceeded,
    /// The engine failed under it.
    Failed(String),
}

impl std::fmt::Display for TerminalEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TerminalEnd::Closed => write!(f, "the terminal was closed"),
            TerminalEnd::ShellExited {
                oom_killed: true, ..
            } => write!(f, "the shell was killed: out of memory"),
            TerminalEnd::ShellExited {
                code: Some(code), ..
            } => write!(f, "the shell exited with code {code}"),
            TerminalEnd::ShellExited { code: None, .. } => write!(f, "the shell exited"),
            TerminalEnd::IdleTimeout => write!(f, "the terminal was idle too long"),
            TerminalEnd::LifetimeExceeded => write!(f, "the terminal reached its lifetime cap"),
            TerminalEnd::Failed(why) => write!(f, "the terminal failed: {why}"),
        }
    }
}

/// Why an operation on a terminal failed.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("{0}")]
    Ended(TerminalEnd),
    #[error("{0}")]
    Files(#[from] SandboxError),
    #[error("updating the terminal's files failed: {0}")]
    Update(String),
    #[error("docker engine error: {0}")]
    Engine(#[from] DockerError),
}

/// An open terminal: the handle to drive it and the receiver of its output.
pub struct Terminal {
    /// Cloneable; the terminal ends when every clone is dropped.
    pub handle: TerminalHandle,
    /// Output, lag notices and finally [`TerminalEvent::Ended`]. Dropping it discards
    /// output (the replay buffer still fills); the terminal goes on.
    pub output: mpsc::Receiver<TerminalEvent>,
}

/// Drives one terminal; clones share it.
#[derive(Clone)]
pub struct TerminalHandle {
    inner: Arc<Inner>,
}

/// What every handle clone shares. The senders are why dropping the last clone ends
/// the terminal: the driver sees its control channel close.
struct Inner {
    docker: Docker,
    /// Container id.
    id: String,
    /// Container name (`chorus-term-INSTANCE-N`).
    name: String,
    /// Keystrokes for the writer task, in order.
    keys: mpsc::Sender<Vec<u8>>,
    /// Close requests for the driver.
    control: mpsc::Sender<()>,
    /// Set once, when the terminal has ended and its container is gone.
    end: watch::Receiver<Option<TerminalEnd>>,
    replay: Arc<Mutex<Replay>>,
    activity: Arc<Mutex<Instant>>,
}

impl TerminalHandle {
    /// The container's name, as `docker ps` shows it.
    pub fn container_name(&self) -> &str {
        &self.inner.name
    }

    /// Sends keystrokes (bytes, e.g. `b"ls\r"`, `b"\x03"` for Ctrl-C) to the PTY, in
    /// order. Waits while 64 writes are queued behind a program that does not read.
    pub async fn write(&self, bytes: impl Into<Vec<u8>>) -> Result<(), TerminalError> {
        self.check_open()?;
        self.touch();
        if self.inner.keys.send(bytes.into()).await.is_err() {
            return Err(TerminalError::Ended(self.wait().await));
        }
        Ok(())
    }

    /// Resizes the PTY; the foreground program gets SIGWINCH.
    pub async fn resize(&self, size: TerminalSize) -> Result<(), TerminalError> {
        self.check_open()?;
        self.touch();
        resize(&self.inner.docker, &self.inner.id, size).await?;
        Ok(())
    }

    /// Writes `files` (workspace-relative path, text) into `/work`, over what is there;
    /// files not named, including what programs wrote, are left alone. Resolves once
    /// they are in place. Fails when the unpack fails (e.g. `/work` is full, or a fork
    /// bomb leaves no process for it).
    pub async fn update_files(&self, files: &[(String, String)]) -> Result<(), TerminalError> {
        self.check_open()?;
        let (tar, tar_len) = payload::build(files, "")?;
        self.touch();
        unpack(&self.inner.docker, &self.inner.id, tar, tar_len)
            .await
            .map_err(TerminalError::Update)
    }

    /// The last [`TerminalConfig::replay_bytes`] of output, for a late joiner; starts
    /// at a whole UTF-8 character.
    pub fn replay(&self) -> Vec<u8> {
        self.inner
            .replay
            .lock()
            .map(|replay| replay.snapshot())
            .unwrap_or_default()
    }

    /// Why the terminal ended, once it has (and its container is gone).
    pub fn ended(&self) -> Option<TerminalEnd> {
        self.inner.end.borrow().clone()
    }

    /// Waits until the terminal has ended and its container is removed.
    pub async fn wait(&self) -> TerminalEnd {
        let mut end = self.inner.end.clone();
        let reason = match end.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(TerminalEnd::Closed),
            Err(_) => TerminalEnd::Failed("the terminal's driver is gone".to_owned()),
        };
        reason
    }

    /// Ends the terminal (SIGKILL, container removed) and waits until it is gone.
    /// Returns the reason, which is another one if the terminal had already ended.
    pub async fn close(&self) -> TerminalEnd {
        let _ = self.inner.control.try_send(());
        self.wait().await
    }

    fn check_open(&self) -> Result<(), TerminalError> {
        match self.ended() {
            Some(reason) => Err(TerminalError::Ended(reason)),
            None => Ok(()),
        }
    }

    fn touch(&self) {
        if let Ok(mut last) = self.inner.activity.lock() {
            *last = Instant::now();
        }
    }
}

/// The last N bytes of output.
struct Replay {
    bytes: VecDeque<u8>,
    cap: usize,
}

impl Replay {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let excess = (self.bytes.len() + bytes.len()).saturating_sub(self.cap);
        self.bytes.drain(..excess);
        self.bytes.extend(bytes);
    }

    fn snapshot(&self) -> Vec<u8> {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        // Skip a character cut by the front of the ring.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|byte| *byte & 0xC0 == 0x80)
            .count();
        bytes[start..].to_vec()
    }
}

/// Gathers output into chunks and sends them without ever waiting for the consumer
/// (see the module doc for the bounds and the drop policy).
struct Coalescer {
    sender: mpsc::Sender<TerminalEvent>,
    pending: Vec<u8>,
    /// Bytes dropped since the channel filled up; reported before output resumes.
    dropping: u64,
    /// When the pending bytes go out even if no chunk is full.
    flush_at: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Coalescer {
    fn new(sender: mpsc::Sender<TerminalEvent>) -> Self {
        Coalescer {
            sender,
            pending: Vec::new(),
            dropping: 0,
            flush_at: None,
            last_sent: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.dropping > 0 || self.pending.len() + bytes.len() > PENDING_BYTES {
            self.dropping += bytes.len() as u64;
        } else {
            self.pending.extend_from_slice(bytes);
        }
        while self.pending.len() >= CHUNK_BYTES {
            if !self.emit(CHUNK_BYTES) {
                break;
            }
        }
        self.schedule();
    }

    /// Timer: sends what is pending, but for a character still being written (it goes
    /// with the next output), or retries later if the channel is full.
    fn flush(&mut self) {
        self.flush_at = None;
        while !self.pending.is_empty() {
            let cut = complete_prefix_len(&self.pending[..self.pending.len().min(CHUNK_BYTES)]);
            if cut == 0 || !self.emit(cut) {
                break;
            }
        }
        self.report_drops();
        self.schedule();
    }

    /// At the end: everything, split characters included, waiting a little if needed.
    async fn finish(&mut self, end: TerminalEnd) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(CHUNK_BYTES) {
            let event = TerminalEvent::Output(chunk.to_vec());
            let _ = tokio::time::timeout_at(deadline, self.sender.send(event)).await;
        }
        if self.dropping > 0 {
            let event = TerminalEvent::Lagged {
                dropped_bytes: self.dropping,
            };
            let _ = tokio::time::timeout_at(deadline, self.sender.send(event)).await;
        }
        let _ =
            tokio::time::timeout_at(deadline, self.sender.send(TerminalEvent::Ended(end))).await;
    }

    /// Tries to send the first `len` (≤ pending) bytes, cut between whole characters
    /// when possible; false when the channel is full.
    fn emit(&mut self, len: usize) -> bool {
        let cut = match complete_prefix_len(&self.pending[..len]) {
            0 => len,
            cut => cut,
        };
        let chunk = self.pending[..cut].to_vec();
        match self.sender.try_send(TerminalEvent::Output(chunk)) {
            Ok(()) => {
                self.pending.drain(..cut);
                self.last_sent = Some(Instant::now());
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // Nobody listens: the output is not wanted (the replay still has it).
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.pending.clear();
                self.dropping = 0;
                true
            }
        }
    }

    fn report_drops(&mut self) {
        if self.dropping == 0 || !self.pending.is_empty() {
            return;
        }
        let event = TerminalEvent::Lagged {
            dropped_bytes: self.dropping,
        };
        match self.sender.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => self.dropping = 0,
            Err(mpsc::error::TrySendError::Full(_)) => {}
        }
    }

    /// Sets the timer when something can go out: whole characters, or a drop notice.
    /// After a quiet spell it goes at once (a keystroke's echo must not wait);
    /// otherwise at most one piece per [`GATHER`], so a burst becomes few large ones.
    fn schedule(&mut self) {
        let waiting = complete_prefix_len(&self.pending) > 0 || self.dropping > 0;
        if self.flush_at.is_none() && waiting {
            let now = Instant::now();
            self.flush_at = Some(match self.last_sent {
                Some(sent) if now < sent + GATHER => sent + GATHER,
                _ => now,
            });
        }
    }
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, DockerError>> + Send>>;
type InputSink = Pin<Box<dyn AsyncWrite + Send>>;

/// The watchdog exec: its output stream ends when it does; its stdin must stay open.
struct Watchdog {
    output: OutputStream,
    _stdin: InputSink,
}

/// Opens a terminal (see [`crate::DockerExecutor::open_terminal`]).
pub(crate) async fn open(
    shared: Arc<Shared>,
    session: &str,
    files: &[(String, String)],
    size: TerminalSize,
) -> Result<Terminal, SandboxError> {
    let (tar, tar_len) = payload::build(files, "")?;
    let config = shared.config.terminal.clone();
    if config.idle_timeout.is_zero() || config.lifetime.is_zero() || config.output_queue == 0 {
        return Err(SandboxError::Config(
            "terminal idle timeout, lifetime and output queue must not be zero".into(),
        ));
    }
    // A terminal without a session gets no cache rather than a throwaway one.
    let volume = (!session.is_empty()).then(|| cache::volume_name(session));
    let prefer = volume
        .as_deref()
        .and_then(|volume| shared.preferred_engine(volume));
    let slot = shared
        .pool
        .acquire(prefer, false)
        .await
        .ok_or_else(|| SandboxError::Config("the executor is shutting down".into()))?;
    let started = match start(
        &shared,
        &slot,
        volume.as_deref(),
        &config,
        tar,
        tar_len,
        size,
    )
    .await
    {
        Ok(started) => started,
        // What failed may be the engine itself: then say so, and mark it down so the
        // next terminal goes elsewhere.
        Err(err) if !slot.engine_alive().await => {
            debug!(cause = %err, "opening a terminal failed with its engine");
            return Err(SandboxError::EngineGone(slot.engine.name.clone()));
        }
        Err(err) => return Err(err),
    };
    let Started {
        docker,
        id,
        name,
        guard,
        attached,
        watchdog,
        opened,
    } = started;

    let (keys, key_receiver) = mpsc::channel(64);
    let (control, control_receiver) = mpsc::channel(1);
    let (end_sender, end) = watch::channel(None);
    let (output_sender, output) = mpsc::channel(config.output_queue);
    let replay = Arc::new(Mutex::new(Replay {
        bytes: VecDeque::new(),
        cap: config.replay_bytes,
    }));
    let activity = Arc::new(Mutex::new(Instant::now()));
    let writer = tokio::spawn(write_keys(attached.input, key_receiver));
    let driver = Driver {
        docker: docker.clone(),
        id: id.clone(),
        guard,
        engine_up: slot.engine.watch(),
        slot,
        config,
        opened,
        output: attached.output,
        watchdog: Some(watchdog),
        writer,
        control: control_receiver,
        coalescer: Coalescer::new(output_sender),
        replay: replay.clone(),
        activity: activity.clone(),
        end: end_sender,
    };
    tokio::spawn(driver.run());
    Ok(Terminal {
        handle: TerminalHandle {
            inner: Arc::new(Inner {
                docker: docker.clone(),
                id,
                name,
                keys,
                control,
                end,
                replay,
                activity,
            }),
        },
        output,
    })
}

/// A terminal's container, started and holding the files, before its driver exists.
struct Started {
    docker: Docker,
    id: String,
    name: String,
    guard: ContainerGuard,
    attached: bollard::container::AttachContainerResults,
    watchdog: Watchdog,
    opened: Instant,
}

/// Creates, starts and fills the terminal's container on the slot's engine.
async fn start(
    shared: &Shared,
    slot: &Slot,
    volume: Option<&str>,
    config: &TerminalConfig,
    tar: Vec<u8>,
    tar_len: usize,
    size: TerminalSize,
) -> Result<Started, SandboxError> {
    let docker = &slot.docker;
    let number = shared.next_run.fetch_add(1, Ordering::Relaxed);
    let name = format!("chorus-term-{}-{number}", shared.instance);
    if let Some(volume) = volume {
        cache::ensure(docker, volume, unix_seconds()).await?;
        shared.used_cache(volume, slot.engine.index);
    }
    let limits = terminal_limits(&shared.config.limits);
    let body = container_body(
        &limits,
        config,
        &shared.instance,
        &slot.engine.name,
        &config.image,
        volume,
    );
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker.create_container(Some(options), body).await?;
    let guard = ContainerGuard {
        docker: docker.clone(),
        id: Some(created.id.clone()),
        engine: slot.engine.clone(),
    };
    let id = created.id;

    let attached = docker.attach_container(&id, Some(attach_options())).await?;
    docker.start_container(&id, None).await?;
    let opened = Instant::now();
    resize(docker, &id, size).await?;
    let watchdog = start_watchdog(docker, &id).await?;
    unpack(docker, &id, tar, tar_len)
        .await
        .map_err(|why| SandboxError::Payload(format!("cannot unpack into the terminal: {why}")))?;
    Ok(Started {
        docker: docker.clone(),
        id,
        name,
        guard,
        attached,
        watchdog,
        opened,
    })
}

/// A terminal's limits: the runs', with a build's memory (people build in terminals).
fn terminal_limits(limits: &Limits) -> Limits {
    Limits {
        memory_bytes: limits.memory_bytes.max(limits.build_memory_bytes),
        ..limits.clone()
    }
}

/// The terminal's container: the lockdown of `policy.rs`, plus what a terminal needs.
fn container_body(
    limits: &Limits,
    config: &TerminalConfig,
    instance: &str,
    engine: &str,
    image: &str,
    cache_volume: Option<&str>,
) -> ContainerCreateBody {
    let backstop = config.lifetime + BACKSTOP_GRACE;
    let cmd = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        INIT.to_owned(),
        "chorus".to_owned(),
        backstop.as_secs().to_string(),
    ];
    let mut env = vec![
        "HOME=/tmp".to_owned(),
        "TERM=xterm-256color".to_owned(),
        "LANG=C.UTF-8".to_owned(),
    ];
    if cache_volume.is_some() {
        env.extend([
            format!("CARGO_TARGET_DIR={CACHE_DIR}/target"),
            format!("CARGO_HOME={CACHE_DIR}/cargo-home"),
        ]);
    } else {
        env.push("CARGO_TARGET_DIR=/tmp/target".to_owned());
    }
    let expires = unix_seconds() + (backstop + EXPIRY_GRACE).as_secs();
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd),
        entrypoint: Some(Vec::new()),
        working_dir: Some(WORK_DIR.to_owned()),
        hostname: Some("chorus".to_owned()),
        env: Some(env),
        labels: Some(HashMap::from([
            (SANDBOX_LABEL.to_owned(), "1".to_owned()),
            (INSTANCE_LABEL.to_owned(), instance.to_owned()),
            (ENGINE_LABEL.to_owned(), engine.to_owned()),
            (EXPIRES_LABEL.to_owned(), expires.to_string()),
            (TERMINAL_LABEL.to_owned(), "1".to_owned()),
        ])),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(true),
        ..policy::locked_down(limits, cache_volume)
    }
}

async fn resize(docker: &Docker, id: &str, size: TerminalSize) -> Result<(), DockerError> {
    let options = ResizeContainerTTYOptionsBuilder::default()
        .w(i32::from(size.cols.max(1)))
        .h(i32::from(size.rows.max(1)))
        .build();
    docker.resize_container_tty(id, options).await
}

/// Starts an exec of `argv` as the sandbox user in `/work`, attached, without a TTY.
async fn exec(
    docker: &Docker,
    id: &str,
    argv: &[&str],
) -> Result<(String, OutputStream, InputSink), DockerError> {
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(argv.iter().map(|arg| (*arg).to_owned()).collect()),
        user: Some(SANDBOX_USER.to_owned()),
        working_dir: Some(WORK_DIR.to_owned()),
        ..Default::default()
    };
    let created = docker.create_exec(id, config).await?;
    match docker
        .start_exec(&created.id, None::<StartExecOptions>)
        .await?
    {
        StartExecResults::Attached { output, input } => Ok((created.id, output, input)),
        StartExecResults::Detached => Err(DockerError::DockerResponseServerError {
            status_code: 500,
            message: "exec started detached".to_owned(),
        }),
    }
}

async fn start_watchdog(docker: &Docker, id: &str) -> Result<Watchdog, DockerError> {
    let (_, output, stdin) = exec(docker, id, &["sh", "-c", WATCHDOG]).await?;
    Ok(Watchdog {
        output,
        _stdin: stdin,
    })
}

/// Unpacks a tar into `/work` through an exec; the error carries what it printed.
async fn unpack(docker: &Docker, id: &str, tar: Vec<u8>, tar_len: usize) -> Result<(), String> {
    let length = tar_len.to_string();
    let work = async {
        let (exec_id, mut output, mut stdin) =
            exec(docker, id, &["sh", "-c", UNPACK, "chorus", &length])
                .await
                .map_err(|err| err.to_string())?;
        stdin.write_all(&tar).await.map_err(|err| err.to_string())?;
        stdin.flush().await.map_err(|err| err.to_string())?;
        let mut said = Vec::new();
        while let Some(item) = output.next().await {
            if let Ok(frame) = item {
                said.extend_from_slice(&frame.into_bytes());
            }
        }
        let inspect = docker
            .inspect_exec(&exec_id)
            .await
            .map_err(|err| err.to_string())?;
        match inspect.exit_code {
            Some(0) => Ok(()),
            code => Err(format!(
                "exit {code:?}: {}",
                String::from_utf8_lossy(&said).trim()
            )),
        }
    };
    tokio::time::timeout(TEARDOWN_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// Feeds keystrokes to the PTY in order; ends when every handle is gone or the
/// connection breaks.
async fn write_keys(mut input: InputSink, mut keys: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = keys.recv().await {
        let written = async {
            input.write_all(&bytes).await?;
            input.flush().await
        };
        if let Err(err) = written.await {
            debug!(cause = %err, "writing to the terminal failed (it ended?)");
            break;
        }
    }
    // Keep the connection until the driver aborts this task.
    std::future::pending::<()>().await;
}

/// Owns one terminal from open to removal.
struct Driver {
    docker: Docker,
    id: String,
    guard: ContainerGuard,
    /// The place on the engine, given back when the driver ends.
    slot: Slot,
    /// Turns `false` when the engine is found gone.
    engine_up: watch::Receiver<bool>,
    config: TerminalConfig,
    opened: Instant,
    output: OutputStream,
    watchdog: Option<Watchdog>,
    writer: tokio::task::JoinHandle<()>,
    control: mpsc::Receiver<()>,
    coalescer: Coalescer,
    replay: Arc<Mutex<Replay>>,
    activity: Arc<Mutex<Instant>>,
    end: watch::Sender<Option<TerminalEnd>>,
}

impl Driver {
    async fn run(mut self) {
        let docker = self.docker.clone();
        let id = self.id.clone();
        let mut wait = docker.wait_container(&id, None).boxed().into_future();
        let lifetime_at = self.opened + self.config.lifetime;
        let mut watchdog_retry: Option<Instant> = None;
        let mut stream_open = true;
        let mut exited: Option<Option<i64>> = None;
        let mut engine_gone = false;
        let reason = loop {
            let idle_at = self.last_activity() + self.config.idle_timeout;
            let flush_at = self.coalescer.flush_at;
            // Biased, output last: a flood keeps the output arm always ready, and it
            // must not starve the timers (lifetime, idle, flush) or a close.
            tokio::select! {
                biased;
                request = self.control.recv() => {
                    // `None`: every handle is gone, which is a close too.
                    let _ = request;
                    break TerminalEnd::Closed;
                }
                // The health checks, or a run, found the engine gone: its connections
                // may hang rather than fail (a remote host that vanished).
                _ = pool::went_down(&mut self.engine_up) => {
                    engine_gone = true;
                    break self.engine_gone();
                }
                (item, _rest) = &mut wait => {
                    let code = match item {
                        Some(Ok(response)) => Some(response.status_code),
                        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Some(code),
                        // The wait itself failed, which is how a killed engine shows.
                        _ if !self.slot.engine_alive().await => {
                            engine_gone = true;
                            break self.engine_gone();
                        }
                        _ => None,
                    };
                    exited = Some(code);
                    break TerminalEnd::ShellExited { code, oom_killed: false };
                }
                _ = sleep_until_some(flush_at) => self.coalescer.flush(),
                _ = tokio::time::sleep_until(idle_at) => {
                    if self.last_activity() + self.config.idle_timeout <= Instant::now() {
                        break TerminalEnd::IdleTimeout;
                    }
                }
                _ = tokio::time::sleep_until(lifetime_at) => break TerminalEnd::LifetimeExceeded,
                _ = watchdog_ended(&mut self.watchdog) => {
                    debug!(container = %self.id, "terminal watchdog ended; starting another");
                    self.watchdog = None;
                    watchdog_retry = Some(Instant::now() + WATCHDOG_RETRY);
                }
                _ = sleep_until_some(watchdog_retry) => {
                    watchdog_retry = None;
                    match start_watchdog(&docker, &self.id).await {
                        Ok(watchdog) => self.watchdog = Some(watchdog),
                        Err(err) => {
                            debug!(cause = %err, container = %self.id, "cannot start the terminal watchdog");
                            watchdog_retry = Some(Instant::now() + WATCHDOG_RETRY);
                        }
                    }
                }
                item = self.output.next(), if stream_open => match item {
                    Some(Ok(frame)) => {
                        let bytes = frame.into_bytes();
                        self.touch();
                        if let Ok(mut replay) = self.replay.lock() {
                            replay.push(&bytes);
                        }
                        self.coalescer.push(&bytes);
                    }
                    Some(Err(err)) => {
                        debug!(cause = %err, container = %self.id, "terminal stream failed");
                        stream_open = false;
                    }
                    None => stream_open = false,
                },
            }
        };
        drop(wait);
        self.finish(reason, exited, engine_gone).await;
    }

    fn engine_gone(&self) -> TerminalEnd {
        TerminalEnd::Failed(format!(
            "the Docker engine {} running this terminal went away",
            self.slot.engine.name
        ))
    }

    /// Tears down: unread output would block the engine's kill and inspect, so the
    /// attach stream goes first; then kill, inspect, remove, release the slot, report.
    /// A gone engine is asked nothing: its container waits for the engine's return.
    async fn finish(self, mut reason: TerminalEnd, exited: Option<Option<i64>>, engine_gone: bool) {
        let Driver {
            docker,
            id,
            guard,
            slot,
            output,
            watchdog,
            writer,
            mut coalescer,
            end,
            ..
        } = self;
        drop(output);
        drop(watchdog);
        writer.abort();
        if engine_gone {
            guard.abandon();
        } else {
            if exited.is_none() {
                kill(&docker, &id).await;
            } else if let TerminalEnd::ShellExited { code, oom_killed } = &mut reason {
                if *code == Some(137) {
                    if let Ok(Ok(inspect)) =
                        tokio::time::timeout(TEARDOWN_TIMEOUT, docker.inspect_container(&id, None))
                            .await
                    {
                        *oom_killed = inspect
                            .state
                            .and_then(|state| state.oom_killed)
                            .unwrap_or(false);
                    }
                }
            }
            match guard.remove().await {
                Ok(()) => {}
                // Swept already by another executor (a stopped terminal is fair game).
                Err(err) if is_not_found(&err) => {}
                Err(err) => {
                    warn!(cause = %err, container = %id, "could not remove terminal container")
                }
            }
        }
        drop(slot);
        let _ = end.send(Some(reason.clone()));
        coalescer.finish(reason).await;
    }

    fn last_activity(&self) -> Instant {
        self.activity
            .lock()
            .map(|last| *last)
            .unwrap_or_else(|_| Instant::now())
    }

    fn touch(&self) {
        if let Ok(mut last) = self.activity.lock() {
            *last = Instant::now();
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the watchdog's exec has ended; never when there is none.
async fn watchdog_ended(watchdog: &mut Option<Watchdog>) {
    match watchdog {
        Some(watchdog) => while watchdog.output.next().await.is_some() {},
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coalescer(capacity: usize) -> (Coalescer, mpsc::Receiver<TerminalEvent>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Coalescer::new(sender), receiver)
    }

    #[test]
    fn the_replay_keeps_the_last_bytes_from_a_whole_character() {
        let mut replay = Replay {
            bytes: VecDeque::new(),
            cap: 5,
        };
        replay.push(b"abc");
        replay.push("dé".as_bytes());
        assert_eq!(replay.snapshot(), "bcdé".as_bytes());
        replay.push(b"x");
        // "cdé" + "x" is 5 bytes: nothing cut.
        assert_eq!(replay.snapshot(), "cdéx".as_bytes());
        replay.push("€".as_bytes());
        // The ring holds the second byte of "é", skipped.
        assert_eq!(replay.snapshot(), "x€".as_bytes());
        replay.push(&[b'z'; 9]);
        assert_eq!(replay.snapshot(), b"zzzzz");
    }

    #[tokio::test]
    async fn an_echo_after_quiet_goes_at_once_and_a_burst_waits_its_turn() {
        let (mut coalescer, mut receiver) = coalescer(8);
        coalescer.push(b"a");
        let first = coalescer.flush_at.expect("scheduled");
        assert!(first <= Instant::now(), "nothing was sent lately: now");
        coalescer.flush();
        assert_eq!(
            receiver.try_recv(),
            Ok(TerminalEvent::Output(b"a".to_vec()))
        );
        coalescer.push(b"b");
        let next = coalescer.flush_at.expect("scheduled");
        assert!(next >= first + GATHER, "just sent: after the gather window");
    }

    #[tokio::test]
    async fn output_is_gathered_into_bounded_chunks() {
        let (mut coalescer, mut receiver) = coalescer(8);
        for _ in 0..3 * CHUNK_BYTES / 4 {
            coalescer.push(b"y\n"); // `yes`, a read at a time
        }
        coalescer.flush();
        let mut sizes = Vec::new();
        while let Ok(TerminalEvent::Output(chunk)) = receiver.try_recv() {
            sizes.push(chunk.len());
        }
        assert_eq!(
            sizes,
            vec![CHUNK_BYTES, (3 * CHUNK_BYTES / 2) - CHUNK_BYTES]
        );
    }

    #[tokio::test]
    async fn a_full_channel_drops_output_and_says_how_much() {
        let (mut coalescer, mut receiver) = coalescer(1);
        let flood = vec![b'y'; CHUNK_BYTES];
        for _ in 0..10 {
            coalescer.push(&flood);
        }
        // One chunk in the channel, four pending, the other five dropped.
        assert_eq!(coalescer.pending.len(), PENDING_BYTES);
        assert_eq!(coalescer.dropping, 5 * CHUNK_BYTES as u64);
        let mut events = Vec::new();
        for _ in 0..10 {
            if let Ok(event) = receiver.try_recv() {
                events.push(event);
            }
            coalescer.flush();
        }
        let outputs = events
            .iter()
            .filter(|event| matches!(event, TerminalEvent::Output(_)))
            .count();
        assert_eq!(outputs, 5);
        assert_eq!(
            events.last(),
            Some(&TerminalEvent::Lagged {
                dropped_bytes: 5 * CHUNK_BYTES as u64
            })
        );
        // Output flows again after the notice.
        coalescer.push(b"after");
        coalescer.flush();
        assert_eq!(
            receiver.try_recv().ok(),
            Some(TerminalEvent::Output(b"after".to_vec()))
        );
    }

    #[test]
    fn chunks_end_between_characters() {
        let (mut coalescer, _receiver) = coalescer(8);
        let mut text = vec![b'a'; CHUNK_BYTES - 1];
        text.extend_from_slice("€".as_bytes());
        coalescer.push(&text);
        // The euro sign straddles the chunk size, so it waits for the next chunk.
        assert_eq!(coalescer.pending, "€".as_bytes());
    }

    #[test]
    fn a_terminal_container_keeps_the_whole_lockdown() {
        let limits = terminal_limits(&Limits::default());
        let body = container_body(
            &limits,
            &TerminalConfig::default(),
            "instance",
            "engine",
            "image",
            Some("volume"),
        );
        let lockdown = policy::locked_down(&limits, Some("volume"));
        assert_eq!(body.user, lockdown.user);
        assert_eq!(body.network_disabled, lockdown.network_disabled);
        assert_eq!(body.host_config, lockdown.host_config);
        assert_eq!(body.tty, Some(true));
        let labels = body.labels.unwrap_or_default();
        for label in [SANDBOX_LABEL, INSTANCE_LABEL, EXPIRES_LABEL, TERMINAL_LABEL] {
            assert!(labels.contains_key(label), "{label}");
        }
        assert_eq!(labels.get(ENGINE_LABEL).map(String::as_str), Some("engine"));
        // The in-container backstop is the lifetime plus a grace.
        let cmd = body.cmd.unwrap_or_default();
        assert_eq!(cmd[3..], ["chorus", "7202"]);
    }
}
