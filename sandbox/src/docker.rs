//! [`DockerExecutor`]: one locked-down container per run, driven through bollard, on
//! one engine of a pool (`pool.rs`).
//!
//! Life of a run:
//! ```text
//!  plan (project.rs) + build payload ─► wait for a place on an engine (pool.rs: one
//!  FIFO queue; the engine of the session's cache when it has room, else the least
//!  loaded healthy one; cancellable)
//!  ─► ensure the session's cache volume (project builds) ─► create (all limits)
//!  ─► attach ─► start ─► write tar+stdin on stdin, then live input until EOF
//!  ─► select { cancel | engine down | wall clock | output chunk (kept for diagnostics)
//!              | exit }
//!  ─► SIGKILL if needed ─► inspect (oom_killed) ─► remove (force)
//!  ─► diagnostics from the kept output (diagnostics.rs)
//! ```
//! Invariants:
//! - Every container gets the whole lockdown of `policy.rs`, and this file adds to it
//!   only what the run needs (image, command, environment, labels, stdio); the one
//!   volume, the session's build cache, is part of `policy.rs` too.
//! - A run with a build step gets `Limits::compile_timeout` more wall clock and the
//!   build memory (`effective_limits`); everything else is the configured limits.
//! - Every container carries [`SANDBOX_LABEL`], this executor's [`INSTANCE_LABEL`], its
//!   engine's [`ENGINE_LABEL`] and an [`EXPIRES_LABEL`], and is force-removed before
//!   `run` resolves; if the run future is dropped or panics, the [`ContainerGuard`]
//!   removes it from a spawned task; if even that cannot happen (the runtime or the
//!   process died), the next `connect` sweeps it, and an in-container `timeout` has
//!   killed the program long before.
//! - An engine that goes away under a run (a failed engine call, then a failed ping;
//!   or the health check marking it down) ends the run's attempt without further calls
//!   to it. The run is tried once more, at the head of the queue, on another healthy
//!   engine when nothing could have been seen or lost: no output forwarded and no live
//!   input taken. Otherwise it fails saying which engine went away. Its container is
//!   remembered and removed when that engine answers again (or by the expiry sweep).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::cache;
use crate::diagnostics::{self, Capture, Sources};
use crate::payload::{self, WORK_DIR, WRAPPER};
use crate::policy::{self, CACHE_DIR};
use crate::pool::{self, Engine, EngineStatus, Pool, Slot, Unusable, REACH_TIMEOUT};
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
/// Label naming the engine of the pool a container was placed on (`EngineConfig::name`).
pub const ENGINE_LABEL: &str = "org.chorus.sandbox.engine";
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
/// How often a connected executor sweeps orphaned containers again.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Runs requests in Docker containers with the configured limits, on a pool of engines.
pub struct DockerExecutor {
    shared: Arc<Shared>,
}

/// State every run needs; shared with the run futures, which must be `'static`.
pub(crate) struct Shared {
    /// The engines and the FIFO queue of runs and terminals waiting for a place.
    pub(crate) pool: Arc<Pool>,
    pub(crate) config: ExecutorConfig,
    /// Distinguishes this executor's containers from other hubs' (and other tests').
    pub(crate) instance: String,
    /// Makes container names unique within this instance.
    pub(crate) next_run: AtomicU64,
    /// Cache volumes this executor used, with the engines they are on and the Unix time
    /// of their last use there: a sweep spares them even when they were created long
    /// ago, and a session's next run goes where its cache was used last (warm there).
    pub(crate) recent_caches: Mutex<HashMap<String, Vec<(usize, u64)>>>,
}

impl Shared {
    /// The engine where `volume` was used last, if this executor used it.
    pub(crate) fn preferred_engine(&self, volume: &str) -> Option<usize> {
        let recent = self.recent_caches.lock().ok()?;
        let uses = recent.get(volume)?;
        uses.iter()
            .max_by_key(|(_, used)| *used)
            .map(|(engine, _)| *engine)
    }

    pub(crate) fn used_cache(&self, volume: &str, engine: usize) {
        if let Ok(mut recent) = self.recent_caches.lock() {
            let uses = recent.entry(volume.to_owned()).or_default();
            uses.retain(|(other, _)| *other != engine);
            uses.push((engine, unix_seconds()));
        }
    }
}

/// The images runs need, each with a language using it, for the checks that an
/// engine can run them.
fn images_of(config: &ExecutorConfig) -> Vec<(String, String)> {
    let mut checked = HashSet::new();
    config
        .languages
        .iter()
        .filter(|language| checked.insert(language.image.clone()))
        .map(|language| (language.image.clone(), language.name.clone()))
        .collect()
}

async fn reach(engine: &Engine, images: &[(String, String)]) -> Result<Docker, Unusable> {
    match tokio::time::timeout(REACH_TIMEOUT, pool::reach(&engine.endpoint, images)).await {
        Ok(result) => result,
        Err(_) => Err(Unusable::Unreachable(format!(
            "no answer within {} s",
            REACH_TIMEOUT.as_secs()
        ))),
    }
}

impl DockerExecutor {
    /// Connects to every configured engine (`ExecutorConfig::engines`, by default the
    /// local one), checks each answers and holds every language's image. Engines that
    /// do not are left down for the health checks to bring back; only when none is
    /// usable does this fail, saying why, so the hub can log it and go on without runs.
    pub async fn connect(config: ExecutorConfig) -> Result<Self, SandboxError> {
        if config.engines.is_empty() && config.max_concurrent == 0 {
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
        let engines = config.engine_list();
        pool::validate(&engines).map_err(SandboxError::Config)?;
        let images = images_of(&config);
        let executor = DockerExecutor::new(config, &engines);
        let pool = executor.shared.pool.clone();
        let reached = join_all(pool.engines.iter().map(|engine| reach(engine, &images))).await;
        let mut unusable = Vec::new();
        for (engine, result) in pool.engines.iter().zip(reached) {
            match result {
                Ok(docker) => pool.mark_up(engine.index, docker),
                Err(why) => unusable.push((engine.clone(), why)),
            }
        }
        if unusable.len() == pool.engines.len() {
            if unusable.len() == 1 {
                if let Some((_, why)) = unusable.pop() {
                    return Err(why.into_error());
                }
            }
            let whys: Vec<String> = unusable
                .iter()
                .map(|(engine, why)| format!("{}: {why}", engine.name))
                .collect();
            return Err(SandboxError::NoEngine(whys.join("; ")));
        }
        for (engine, why) in &unusable {
            warn!(engine = %engine.name, endpoint = %engine.endpoint, cause = %why,
                "Docker engine unusable; runs go to the others until it answers");
        }

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
        // Another hub on an engine may have died since (kill -9): its terminals
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
        let weak = Arc::downgrade(&executor.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(pool::HEALTH_EVERY).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let images = images_of(&shared.config);
                join_all(
                    shared
                        .pool
                        .engines
                        .iter()
                        .map(|engine| check_engine(&shared, engine, &images)),
                )
                .await;
            }
        });
        Ok(executor)
    }

    /// Each engine: runs and terminals on it, whether it takes work, its capacity.
    /// Cheap (one lock, no engine call), for health endpoints and metrics.
    pub fn engines_status(&self) -> Vec<EngineStatus> {
        self.shared.pool.status()
    }

    /// Runs and terminals waiting for a place on an engine.
    pub fn queued(&self) -> usize {
        self.shared.pool.queued()
    }

    /// Removes build cache volumes unused for longer than `ExecutorConfig::cache_ttl`,
    /// on every healthy engine. The engine records no last use, so "unused" is: created
    /// before the TTL and not used by this executor on that engine within it. Called by
    /// `connect`; a hub may call it periodically. Returns how many were removed.
    pub async fn sweep_caches(&self) -> Result<usize, SandboxError> {
        let now = unix_seconds();
        let ttl = self.shared.config.cache_ttl.as_secs();
        let recent: Vec<(String, Vec<(usize, u64)>)> = self
            .shared
            .recent_caches
            .lock()
            .map(|mut recent| {
                // What was not used within the TTL is no longer worth remembering.
                recent.retain(|_, uses| {
                    uses.retain(|(_, used)| *used + ttl >= now);
                    !uses.is_empty()
                });
                recent
                    .iter()
                    .map(|(name, uses)| (name.clone(), uses.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut removed = 0;
        let mut failure = None;
        for (engine, docker) in self.shared.pool.healthy() {
            let keep: Vec<String> = recent
                .iter()
                .filter(|(_, uses)| uses.iter().any(|(on, _)| *on == engine.index))
                .map(|(name, _)| name.clone())
                .collect();
            match cache::sweep(&docker, self.shared.config.cache_ttl, now, &keep).await {
                Ok(count) => removed += count,
                Err(err) => failure = Some(err),
            }
        }
        match failure {
            Some(err) if removed == 0 => Err(err.into()),
            _ => Ok(removed),
        }
    }

    /// Removes the build cache of `session` now, on every healthy engine (what
    /// [`Executor::forget_session`] starts in the background).
    pub async fn remove_session_cache(&self, session: &str) -> Result<(), SandboxError> {
        let name = cache::volume_name(session);
        if let Ok(mut recent) = self.shared.recent_caches.lock() {
            recent.remove(&name);
        }
        let mut result = Ok(());
        for (_, docker) in self.shared.pool.healthy() {
            if let Err(err) = cache::remove(&docker, &name).await {
                result = Err(err.into());
            }
        }
        result
    }

    /// Names of the build cache volumes that exist on the healthy engines (all
    /// sessions, all executors), each once.
    pub async fn list_caches(&self) -> Result<Vec<String>, SandboxError> {
        let mut names = Vec::new();
        for (_, docker) in self.shared.pool.healthy() {
            names.extend(
                cache::list(&docker)
                    .await?
                    .into_iter()
                    .map(|(name, _)| name),
            );
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn new(config: ExecutorConfig, engines: &[pool::EngineConfig]) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let instance = format!("{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff);
        DockerExecutor {
            shared: Arc::new(Shared {
                pool: Pool::new(engines),
                config,
                instance,
                next_run: AtomicU64::new(0),
                recent_caches: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Opens the shared terminal of `session`: a persistent locked-down container with
    /// a PTY running `bash -i` in `/work`, which holds `files`. Waits in the same FIFO
    /// queue as runs, and holds a place on its engine until the terminal ends. See
    /// `terminal.rs` for the life cycle and [`Terminal`] for what the caller gets;
    /// dropping this future before it resolves removes the container.
    pub async fn open_terminal(
        &self,
        session: &str,
        files: &[(String, String)],
        size: TerminalSize,
    ) -> Result<Terminal, SandboxError> {
        terminal::open(self.shared.clone(), session, files, size).await
    }

    /// On every healthy engine: removes this executor's containers it could not remove
    /// while their engine was gone, then force-removes every sandbox container (of any
    /// executor) whose [`EXPIRES_LABEL`] has passed (its run is long over, so its owner
    /// is gone), and every terminal container whose shell has ended (labelled
    /// [`TERMINAL_LABEL`]). Called by `connect`, which schedules it every
    /// [`SWEEP_EVERY`] while the executor lives, and for an engine that answers again.
    /// Returns how many were removed.
    pub async fn sweep_expired(&self) -> Result<usize, SandboxError> {
        let mut removed = 0;
        let mut failure = None;
        for (engine, docker) in self.shared.pool.healthy() {
            match sweep_engine(&engine, &docker).await {
                Ok(count) => removed += count,
                Err(err) => failure = Some(err),
            }
        }
        match failure {
            Some(err) if removed == 0 => Err(err.into()),
            _ => Ok(removed),
        }
    }

    /// The value of [`INSTANCE_LABEL`] on this executor's containers.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance
    }

    /// Names of this executor's containers that still exist on the healthy engines,
    /// running or not. Empty whenever no run is in flight: used by tests and health
    /// checks.
    pub async fn list_containers(&self) -> Result<Vec<String>, SandboxError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{INSTANCE_LABEL}={}", self.shared.instance)],
        )]);
        let mut names = Vec::new();
        for (_, docker) in self.shared.pool.healthy() {
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            let containers = docker.list_containers(Some(options)).await?;
            names.extend(
                containers
                    .into_iter()
                    .flat_map(|summary| summary.names.unwrap_or_default()),
            );
        }
        Ok(names)
    }
}

/// One engine's turn of the health checks: a healthy one is pinged (a failure marks it
/// down); a down one is reached afresh (client, version, ping, images) and, when that
/// works, swept of what died with it and given work again.
async fn check_engine(shared: &Arc<Shared>, engine: &Arc<Engine>, images: &[(String, String)]) {
    if shared.pool.client(engine.index).is_some() {
        shared.pool.alive(engine.index).await;
        return;
    }
    match reach(engine, images).await {
        Ok(docker) => {
            match sweep_engine(engine, &docker).await {
                Ok(0) => {}
                Ok(removed) => {
                    info!(engine = %engine.name, removed, "removed sandbox containers left by the engine's outage")
                }
                Err(err) => {
                    debug!(engine = %engine.name, cause = %err, "sweep of a returning engine failed")
                }
            }
            shared.pool.mark_up(engine.index, docker);
            info!(engine = %engine.name, "Docker engine answers again; it takes work");
        }
        Err(why) => debug!(engine = %engine.name, cause = %why, "Docker engine still unusable"),
    }
}

/// [`DockerExecutor::sweep_expired`] on one engine.
async fn sweep_engine(engine: &Engine, docker: &Docker) -> Result<usize, DockerError> {
    let mut removed = 0;
    for id in engine.take_orphans() {
        match remove_container(docker, &id).await {
            Ok(()) => removed += 1,
            Err(err) if is_not_found(&err) => {}
            Err(err) => {
                debug!(cause = %err, container = %id, "sweep: remove failed");
                engine.orphan(id);
            }
        }
    }
    let filters = HashMap::from([("label".to_owned(), vec![SANDBOX_LABEL.to_owned()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker.list_containers(Some(options)).await?;
    let now = unix_seconds();
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
            match remove_container(docker, &id).await {
                Ok(()) => removed += 1,
                Err(err) => debug!(cause = %err, container = %id, "sweep: remove failed"),
            }
        }
    }
    Ok(removed)
}

impl Executor for DockerExecutor {
    fn engines(&self) -> Vec<EngineStatus> {
        self.engines_status()
    }

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
        // TTL sweep gets the volume later, as it does on an engine that is down now.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            for (engine, docker) in self.shared.pool.healthy() {
                let name = name.clone();
                handle.spawn(async move {
                    if let Err(err) = cache::remove(&docker, &name).await {
                        warn!(cause = %err, volume = %name, engine = %engine.name, "could not remove a session's build cache");
                    }
                });
            }
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
/// up. The normal path removes the container itself and then disarms the guard. What
/// cannot be removed (the engine is gone) is left to the engine's next sweep.
pub(crate) struct ContainerGuard {
    pub(crate) docker: Docker,
    pub(crate) id: Option<String>,
    pub(crate) engine: Arc<Engine>,
}

impl ContainerGuard {
    pub(crate) async fn remove(mut self) -> Result<(), DockerError> {
        let Some(id) = self.id.take() else {
            return Ok(());
        };
        let result = remove_container(&self.docker, &id).await;
        if result.as_ref().is_err_and(|err| !is_not_found(err)) {
            self.engine.orphan(id);
        }
        result
    }

    /// The engine is gone: no call to it could succeed, so the container is only
    /// remembered, for removal when the engine answers again.
    pub(crate) fn abandon(mut self) {
        if let Some(id) = self.id.take() {
            self.engine.orphan(id);
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        // No runtime means the process is shutting down; nothing can be awaited then.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let engine = self.engine.clone();
            handle.spawn(async move {
                if let Err(err) = remove_container(&docker, &id).await {
                    if !is_not_found(&err) {
                        warn!(cause = %err, container = %id, "could not remove sandbox container");
                        engine.orphan(id);
                    }
                }
            });
        }
    }
}

pub(crate) fn is_not_found(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
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

/// A run's live input, shared by its attempts: a retry on another engine reads on from
/// the same channel, and may only happen while nothing of it reached a program.
struct InputFeed {
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<RunInput>>>,
    /// Text or an interrupt was taken: a retry would lose or repeat it.
    touched: AtomicBool,
    /// An explicit end-of-file was taken (a closed channel needs no memory: it says
    /// `None` again), so the next attempt's stdin closes right after the payload.
    eof: AtomicBool,
}

/// Takes the run's input as it comes: interrupts go out at once, text is counted
/// against the cap and queued for the writer (the cap bounds the queue), and an EOF,
/// or the sender going away, ends the feed.
async fn take_input(
    docker: Docker,
    id: String,
    shared_input: Arc<InputFeed>,
    feed: mpsc::UnboundedSender<Feed>,
    output: mpsc::Sender<Chunk>,
    cap: usize,
) {
    // Held until this task ends or is aborted; the next attempt's taker waits for it.
    let mut input = shared_input.receiver.clone().lock_owned().await;
    let mut remaining = cap;
    while !shared_input.eof.load(Ordering::Relaxed) {
        match input.recv().await {
            Some(RunInput::Text(text)) => {
                if text.len() > remaining {
                    let message = format!(
                        "chorus: input refused: this run accepts {cap} bytes of input in all, \
                         {remaining} are left and {} were sent\n",
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
                shared_input.touched.store(true, Ordering::Relaxed);
                if feed.send(Feed::Bytes(text.into_bytes())).is_err() {
                    return;
                }
            }
            Some(RunInput::Interrupt) => {
                shared_input.touched.store(true, Ordering::Relaxed);
                interrupt(&docker, &id).await;
            }
            Some(RunInput::Eof) => shared_input.eof.store(true, Ordering::Relaxed),
            None => break,
        }
    }
    let _ = feed.send(Feed::Eof);
    // Interrupts still make sense after an end-of-file; text is ignored.
    while let Some(item) = input.recv().await {
        if item == RunInput::Interrupt {
            shared_input.touched.store(true, Ordering::Relaxed);
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
    engine: &str,
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
            (ENGINE_LABEL.to_owned(), engine.to_owned()),
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

/// One run, start to finish: at most two attempts, the second only when the engine of
/// the first went away before anything could be seen (see the module doc).
async fn run(
    shared: Arc<Shared>,
    request: RunRequest,
    output: mpsc::Sender<Chunk>,
    mut cancel: oneshot::Receiver<()>,
    input: mpsc::Receiver<RunInput>,
) -> RunStatus {
    // Everything that can be refused is refused before queueing or touching an engine.
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
    let run = Run {
        request,
        planned,
        limits,
        payload: Arc::new(payload_bytes),
        tar_len,
        input: Arc::new(InputFeed {
            receiver: Arc::new(tokio::sync::Mutex::new(input)),
            touched: AtomicBool::new(false),
            eof: AtomicBool::new(false),
        }),
    };
    let session_cache = (uses_cache(run.planned.kind) && !run.request.session.is_empty())
        .then(|| cache::volume_name(&run.request.session));

    let mut retry = false;
    loop {
        // A retry goes first: it waited its turn already. A cancel while queued ends
        // the run without a container.
        let prefer = session_cache
            .as_deref()
            .and_then(|volume| shared.preferred_engine(volume));
        let slot = tokio::select! {
            slot = shared.pool.acquire(prefer, retry) => match slot {
                Some(slot) => slot,
                None => return RunStatus::failed("executor is shutting down"),
            },
            _ = &mut cancel => {
                return RunStatus { cancelled: true, ..blank_status() };
            }
        };
        match attempt(&shared, &slot, &run, output.clone(), &mut cancel).await {
            Attempt::Done(status) => return status,
            Attempt::EngineGone {
                output_started,
                duration_ms,
            } => {
                let engine = &slot.engine.name;
                if !retry
                    && !output_started
                    && !run.input.touched.load(Ordering::Relaxed)
                    && slot.another_engine_healthy()
                {
                    info!(engine = %engine, "the Docker engine of a run went away before any output; trying another");
                    retry = true;
                    continue;
                }
                return RunStatus {
                    duration_ms,
                    ..RunStatus::failed(format!(
                        "the Docker engine {engine} running this went away; run again"
                    ))
                };
            }
        }
    }
}

/// What a run is, whichever engine it lands on.
struct Run {
    request: RunRequest,
    planned: Planned,
    limits: Limits,
    /// The code tar and the request's stdin, sent again by a retry.
    payload: Arc<Vec<u8>>,
    tar_len: usize,
    input: Arc<InputFeed>,
}

enum Attempt {
    Done(RunStatus),
    /// The engine went away under the attempt; its container is left for the sweep.
    EngineGone {
        output_started: bool,
        duration_ms: u64,
    },
}

/// One attempt of a run on the slot's engine. Every early return after `create` goes
/// through the guard.
async fn attempt(
    shared: &Shared,
    slot: &Slot,
    run: &Run,
    output: mpsc::Sender<Chunk>,
    cancel: &mut oneshot::Receiver<()>,
) -> Attempt {
    let docker = &slot.docker;
    let engine = &slot.engine;
    let run_number = shared.next_run.fetch_add(1, Ordering::Relaxed);
    let name = format!("chorus-run-{}-{run_number}", shared.instance);
    let gone = Attempt::EngineGone {
        output_started: false,
        duration_ms: 0,
    };
    // A run without a session still builds in a volume (the tmpfs is too small for a
    // target dir), but one of its own that goes with the run.
    let cache_volume = uses_cache(run.planned.kind).then(|| {
        if run.request.session.is_empty() {
            (
                format!("chorus-cache-run-{}-{run_number}", shared.instance),
                true,
            )
        } else {
            (cache::volume_name(&run.request.session), false)
        }
    });
    if let Some((volume, throwaway)) = &cache_volume {
        if let Err(err) = cache::ensure(docker, volume, unix_seconds()).await {
            if !slot.engine_alive().await {
                return gone;
            }
            return Attempt::Done(RunStatus::failed(format!(
                "cannot create the build cache: {err}"
            )));
        }
        if !throwaway {
            shared.used_cache(volume, engine.index);
        }
    }
    let body = container_body(
        &run.limits,
        &shared.instance,
        &engine.name,
        &run.planned,
        cache_volume.as_ref().map(|(volume, _)| volume.as_str()),
        run.tar_len,
    );
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = match docker.create_container(Some(options), body).await {
        Ok(created) => created,
        Err(err) => {
            if !slot.engine_alive().await {
                // It may have been created before the engine went.
                engine.orphan(name);
                return gone;
            }
            return Attempt::Done(RunStatus::failed(format!("cannot create container: {err}")));
        }
    };
    let guard = ContainerGuard {
        docker: docker.clone(),
        id: Some(created.id.clone()),
        engine: engine.clone(),
    };
    let id = created.id;

    let driven = drive(slot, &id, run, output, cancel).await;
    if driven.engine_gone {
        guard.abandon();
        return Attempt::EngineGone {
            output_started: driven.output_started,
            duration_ms: driven.status.duration_ms,
        };
    }
    let mut status = driven.status;
    if let Err(err) = guard.remove().await {
        warn!(cause = %err, container = %id, "could not remove sandbox container");
    }
    if let Some((volume, true)) = &cache_volume {
        if let Err(err) = cache::remove(docker, volume).await {
            warn!(cause = %err, volume = %volume, "could not remove a throwaway build cache");
        }
    }
    let stderr = driven.stderr.text();
    if run.planned.builds
        && stderr
            .lines()
            .any(|line| line.starts_with(project::COMPILE_STOPPED))
    {
        status.timed_out = true;
    }
    let output = format!("{stderr}\n{}", driven.stdout.text());
    status.diagnostics = diagnostics::parse(
        &output,
        &Sources::new(&run.request.files, &run.planned.project_dir),
    );
    Attempt::Done(status)
}

/// How [`drive`] left a container.
struct Driven {
    status: RunStatus,
    stdout: Capture,
    stderr: Capture,
    /// The engine went away: nothing more was asked of it.
    engine_gone: bool,
    /// Some output reached the run's consumer.
    output_started: bool,
}

impl Driven {
    fn failed(message: String, engine_gone: bool) -> Self {
        Driven {
            status: RunStatus::failed(message),
            stdout: Capture::default(),
            stderr: Capture::default(),
            engine_gone,
            output_started: false,
        }
    }
}

/// Attaches, starts and watches one created container until it is gone or killed, or
/// its engine is.
async fn drive(
    slot: &Slot,
    id: &str,
    run: &Run,
    output: mpsc::Sender<Chunk>,
    cancel: &mut oneshot::Receiver<()>,
) -> Driven {
    let docker = &slot.docker;
    let limits = &run.limits;
    let mut engine_up = slot.engine.watch();
    let mut status = blank_status();

    let attached = match docker.attach_container(id, Some(attach_options())).await {
        Ok(attached) => attached,
        Err(err) => {
            let gone = !slot.engine_alive().await;
            return Driven::failed(format!("cannot attach to container: {err}"), gone);
        }
    };
    let mut log_stream = attached.output;
    let mut input = attached.input;

    if let Err(err) = docker.start_container(id, None).await {
        let gone = !slot.engine_alive().await;
        return Driven::failed(format!("cannot start container: {err}"), gone);
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
        run.input.clone(),
        feed,
        output.clone(),
        limits.input_bytes,
    ));
    let payload_bytes = run.payload.clone();
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
    let mut engine_gone = false;
    // Set when the attach stream ended first: output is complete, only the exit is missing.
    let mut stream_ended = false;
    // The attach stream broke: normal when the container ends early, or the engine died.
    let mut stream_failed = false;
    loop {
        let drain_sleep = tokio::time::sleep_until(drain_until.unwrap_or(deadline));
        tokio::select! {
            biased;
            _ = &mut *cancel => {
                status.cancelled = true;
                must_kill = true;
                break;
            }
            // The health checks, or another run, found the engine gone: its
            // connections may hang rather than fail (a remote host that vanished).
            _ = pool::went_down(&mut engine_up) => {
                engine_gone = true;
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
                    stream_failed = true;
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
    // The input channel is free for a retry only once the taker is gone.
    let _ = taker.await;
    let output_started = pump.remaining < limits.output_bytes;
    // A failed wait is how a killed engine shows first; a ping tells it from a
    // container that merely went.
    if !engine_gone && (stream_failed || matches!(exited, Some(Err(_)))) {
        engine_gone = !slot.engine_alive().await;
    }
    if engine_gone {
        status.duration_ms = elapsed_ms(started);
        return Driven {
            status,
            stdout: pump.stdout_capture,
            stderr: pump.stderr_capture,
            engine_gone,
            output_started,
        };
    }
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
    Driven {
        status,
        stdout: pump.stdout_capture,
        stderr: pump.stderr_capture,
        engine_gone: false,
        output_started,
    }
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
        let body = container_body(&limits, "instance", "engine", &planned, Some("volume"), 10);
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
