//! The Docker engines runs and terminals are spread over, and the one FIFO queue in
//! front of them.
//!
//! An engine is configured by an [`EngineConfig`]: a name, an [`Endpoint`] (the local
//! socket, another Unix socket, or a remote engine over TCP with mutual TLS) and a
//! capacity, the containers it may run at once. With nothing configured the pool is
//! today's single engine: the local socket with `ExecutorConfig::max_concurrent`.
//!
//! Invariants:
//! - One queue for all engines: a waiter is served before anyone who queued after it,
//!   whichever engine frees a place (what tokio's fair semaphore gave one engine). The
//!   head of the queue goes to the engine its session's build cache is on when that one
//!   has room, else to the least loaded healthy engine with room (ties: the first
//!   configured).
//! - A [`Slot`] is one place on one engine; `running` counts the live ones. Slots are
//!   handed out only for healthy engines below capacity and give their place back when
//!   dropped, whatever ended the run.
//! - Healthy means the engine answered its last ping and holds every image the
//!   executor uses; only then does the pool keep a client for it. A down engine gets no
//!   new work, and whatever runs on it learns through [`Engine::watch`] and ends. It
//!   comes back only through [`reach`]: a fresh client, version negotiation, ping and
//!   the image check again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::SandboxError;

/// Name of the engine at the local socket when none is configured.
pub const LOCAL_ENGINE: &str = "local";
/// How often every engine is pinged (a failing one: reached again).
pub const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// A ping slower than this counts as a failure: a wedged engine must not hold runs.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on reaching an engine (negotiate, ping, image check), so one remote engine
/// behind a dropped network cannot hold up `connect` or the others' checks.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(20);
/// bollard's own per-request default; the wall clock bounds runs well before it.
const CLIENT_TIMEOUT_SECS: u64 = 120;

/// Where an engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// What `docker` itself uses: `DOCKER_HOST`, else `/var/run/docker.sock`.
    Local,
    /// A Unix socket at this path (`unix:///run/other.sock`).
    Unix(PathBuf),
    /// A remote engine, `host:port`, with mutual TLS. There is no plain TCP: the
    /// Docker API is root on its host for whoever reaches it.
    Tls { address: String, tls: TlsFiles },
}

/// The PEM files of a TLS engine: the CA that signed the engine's certificate, and
/// this client's certificate and key, which the engine checks (`--tlsverify`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One engine of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Letters, digits, `-`, `_` and `.`: it names the engine in logs, status and
    /// errors, and labels its containers.
    pub name: String,
    pub endpoint: Endpoint,
    /// Containers (runs and open terminals) on it at once.
    pub capacity: usize,
}

impl EngineConfig {
    /// The local engine (`DOCKER_HOST` or the local socket) named [`LOCAL_ENGINE`].
    pub fn local(capacity: usize) -> Self {
        EngineConfig {
            name: LOCAL_ENGINE.to_owned(),
            endpoint: Endpoint::Local,
            capacity,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Local => write!(f, "the local socket"),
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tls { address, .. } => write!(f, "tcp://{address} (TLS)"),
        }
    }
}

const SPEC: &str = "NAME=ENDPOINT[,capacity=N][,tls-ca=PATH,tls-cert=PATH,tls-key=PATH]";

/// Parses the hub's `--docker-engine` value: `NAME=ENDPOINT[,capacity=N]
/// [,tls-ca=PATH,tls-cert=PATH,tls-key=PATH]`, ENDPOINT being `unix:///PATH` or
/// `tcp://HOST:PORT` (which needs the three TLS files). Capacity defaults to
/// [`crate::limits::DEFAULT_MAX_CONCURRENT`]. Files are checked by [`validate`].
impl FromStr for EngineConfig {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?} is not {SPEC}"))?;
        check_name(name)?;
        let mut parts = rest.split(',');
        let endpoint = parts.next().unwrap_or_default();
        let (mut capacity, mut ca, mut cert, mut key) = (None, None, None, None);
        for part in parts {
            let (option, value) = part
                .split_once('=')
                .filter(|(_, value)| !value.is_empty())
                .ok_or_else(|| format!("engine {name}: {part:?} is not OPTION=VALUE ({SPEC})"))?;
            let taken = match option {
                "capacity" => {
                    let parsed = value.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(
                        || format!("engine {name}: capacity {value:?} is not a positive whole number"),
                    )?;
                    capacity.replace(parsed).is_some()
                }
                "tls-ca" => ca.replace(PathBuf::from(value)).is_some(),
                "tls-cert" => cert.replace(PathBuf::from(value)).is_some(),
                "tls-key" => key.replace(PathBuf::from(value)).is_some(),
                _ => {
                    return Err(format!(
                        "engine {name}: unknown option {option:?}; there are capacity, tls-ca, tls-cert and tls-key"
                    ))
                }
            };
            if taken {
                return Err(format!("engine {name}: {option} is given twice"));
            }
        }
        let any_tls = ca.is_some() || cert.is_some() || key.is_some();
        let endpoint = if let Some(path) = endpoint.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "engine {name}: {endpoint:?} needs an absolute path, unix:///run/engine.sock"
                ));
            }
            if any_tls {
                return Err(format!(
                    "engine {name}: tls-ca, tls-cert and tls-key are for tcp:// engines"
                ));
            }
            Endpoint::Unix(PathBuf::from(path))
        } else if let Some(address) = endpoint.strip_prefix("tcp://") {
            let port = address
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .filter(|port| *port > 0);
            if port.is_none() || address.contains('/') {
                return Err(format!(
                    "engine {name}: {endpoint:?} is not tcp://HOST:PORT"
                ));
            }
            let (Some(ca), Some(cert), Some(key)) = (ca, cert, key) else {
                return Err(format!(
                    "engine {name}: a tcp:// engine needs tls-ca, tls-cert and tls-key \
                     (plain TCP would hand root on that host to anyone on the network)"
                ));
            };
            Endpoint::Tls {
                address: address.to_owned(),
                tls: TlsFiles { ca, cert, key },
            }
        } else {
            return Err(format!(
                "engine {name}: endpoint {endpoint:?} is neither unix:///PATH nor tcp://HOST:PORT"
            ));
        };
        Ok(EngineConfig {
            name: name.to_owned(),
            endpoint,
            capacity: capacity.unwrap_or(crate::limits::DEFAULT_MAX_CONCURRENT),
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "engine name {name:?} must be 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// Checks a pool before anything connects: at least one engine, names valid and
/// distinct, capacities positive, TLS files readable PEM. A TLS client reads its key
/// only at the first handshake, where a typo would show as a vague TLS failure.
pub fn validate(engines: &[EngineConfig]) -> Result<(), String> {
    if engines.is_empty() {
        return Err("no Docker engine is configured".to_owned());
    }
    for (index, engine) in engines.iter().enumerate() {
        check_name(&engine.name)?;
        if engines[..index]
            .iter()
            .any(|other| other.name == engine.name)
        {
            return Err(format!("two Docker engines are named {}", engine.name));
        }
        if engine.capacity == 0 {
            return Err(format!(
                "engine {}: capacity must be at least 1",
                engine.name
            ));
        }
        if let Endpoint::Tls { tls, .. } = &engine.endpoint {
            for (what, path) in [
                ("tls-ca", &tls.ca),
                ("tls-cert", &tls.cert),
                ("tls-key", &tls.key),
            ] {
                check_pem(path).map_err(|why| format!("engine {}: {what} {why}", engine.name))?;
            }
        }
    }
    Ok(())
}

fn check_pem(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("{}: cannot be read ({err})", path.display()))?;
    if text.contains("-----BEGIN ") {
        Ok(())
    } else {
        Err(format!("{}: is not a PEM file", path.display()))
    }
}

/// A cheap snapshot of one engine, for health checks and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStatus {
    pub name: String,
    /// Answering pings and holding the images: new work may go there.
    pub healthy: bool,
    /// Runs and terminals on it now (a down engine's count falls as they end).
    pub running: usize,
    pub capacity: usize,
}

/// Why an engine cannot take work.
#[derive(Debug)]
pub(crate) enum Unusable {
    Unreachable(String),
    ImageMissing {
        image: String,
        language: String,
        cause: String,
    },
}

impl Unusable {
    /// The error of a pool of one: what `connect` said before there were pools.
    pub(crate) fn into_error(self) -> SandboxError {
        match self {
            Unusable::Unreachable(why) => SandboxError::EngineUnreachable(why),
            Unusable::ImageMissing {
                image,
                language,
                cause,
            } => SandboxError::ImageMissing {
                image,
                language,
                cause,
            },
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Unreachable(why) => write!(f, "unreachable ({why})"),
            Unusable::ImageMissing { image, cause, .. } => {
                write!(f, "image `{image}` missing ({cause})")
            }
        }
    }
}

/// A fresh client for `endpoint`, its API version negotiated, after a ping and a
/// look at every image (`images`: image and the language that needs it). The engine
/// here speaks API 1.41 while bollard defaults to a newer one; negotiating only ever
/// lowers the version to what the engine supports.
pub(crate) async fn reach(
    endpoint: &Endpoint,
    images: &[(String, String)],
) -> Result<Docker, Unusable> {
    let unreachable = |err: bollard::errors::Error| Unusable::Unreachable(err.to_string());
    let docker = match endpoint {
        Endpoint::Local => Docker::connect_with_local_defaults(),
        Endpoint::Unix(path) => Docker::connect_with_unix(
            &path.to_string_lossy(),
            CLIENT_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        ),
        Endpoint::Tls { address, tls } => Docker::connect_with_ssl(
            address,
            &tls.key,
            &tls.cert,
            &tls.ca,
            CLIENT_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        ),
    }
    .map_err(unreachable)?
    .negotiate_version()
    .await
    .map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    for (image, language) in images {
        if let Err(err) = docker.inspect_image(image).await {
            return Err(Unusable::ImageMissing {
                image: image.clone(),
                language: language.clone(),
                cause: err.to_string(),
            });
        }
    }
    Ok(docker)
}

/// One engine as the executor knows it; its client lives in the pool's state, there
/// only while it is healthy.
pub(crate) struct Engine {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) capacity: usize,
    /// `true` while healthy; runs and terminals on it end when it turns `false`.
    up: watch::Sender<bool>,
    /// Containers of ours that could not be removed (the engine was gone): removed
    /// when it answers again.
    orphans: Mutex<Vec<String>>,
}

impl Engine {
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    pub(crate) fn orphan(&self, container: String) {
        lock(&self.orphans).push(container);
    }

    pub(crate) fn take_orphans(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.orphans))
    }
}

/// Resolves once `up` says the engine is down; never if the pool is gone.
pub(crate) async fn went_down(up: &mut watch::Receiver<bool>) {
    if up.wait_for(|up| !*up).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) struct Pool {
    pub(crate) engines: Vec<Arc<Engine>>,
    state: Mutex<State>,
}

struct State {
    /// `Some` exactly while the engine is healthy.
    clients: Vec<Option<Docker>>,
    running: Vec<usize>,
    queue: VecDeque<Waiter>,
}

struct Waiter {
    /// The engine holding the session's build cache, if any.
    prefer: Option<usize>,
    sender: oneshot::Sender<Slot>,
}

/// One place on one engine, given back when dropped.
pub(crate) struct Slot {
    pool: Arc<Pool>,
    pub(crate) engine: Arc<Engine>,
    /// The engine's client when the slot was handed out.
    pub(crate) docker: Docker,
    armed: bool,
}

impl Slot {
    /// Pings the slot's engine now (after an engine call failed); a failure marks it
    /// down, which ends everything else on it too.
    pub(crate) async fn engine_alive(&self) -> bool {
        self.pool.alive(self.engine.index).await
    }

    /// Whether another engine could take a retry: healthy, full or not.
    pub(crate) fn another_engine_healthy(&self) -> bool {
        let state = lock(&self.pool.state);
        state
            .clients
            .iter()
            .enumerate()
            .any(|(index, client)| index != self.engine.index && client.is_some())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release(self.engine.index);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the counts are
    // still the best there is.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    /// Every engine down; `connect` and the health checks bring them up.
    pub(crate) fn new(configs: &[EngineConfig]) -> Arc<Pool> {
        let engines = configs
            .iter()
            .enumerate()
            .map(|(index, config)| {
                Arc::new(Engine {
                    index,
                    name: config.name.clone(),
                    endpoint: config.endpoint.clone(),
                    capacity: config.capacity,
                    up: watch::Sender::new(false),
                    orphans: Mutex::new(Vec::new()),
                })
            })
            .collect::<Vec<_>>();
        Arc::new(Pool {
            state: Mutex::new(State {
                clients: vec![None; engines.len()],
                running: vec![0; engines.len()],
                queue: VecDeque::new(),
            }),
            engines,
        })
    }

    /// Waits for a place, in FIFO order; `front` puts a retry ahead of everyone (it
    /// had waited its turn already). Dropping the future leaves the queue. `None`
    /// only if the pool is going away.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        prefer: Option<usize>,
        front: bool,
    ) -> Option<Slot> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            let waiter = Waiter { prefer, sender };
            if front {
                state.queue.push_front(waiter);
            } else {
                state.queue.push_back(waiter);
            }
            self.dispatch(&mut state);
        }
        receiver.await.ok()
    }

    /// Hands places to the head of the queue while some engine can take it.
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        loop {
            while state
                .queue
                .front()
                .is_some_and(|waiter| waiter.sender.is_closed())
            {
                state.queue.pop_front();
            }
            let Some(waiter) = state.queue.front() else {
                return;
            };
            let Some(index) = self.choose(state, waiter.prefer) else {
                return;
            };
            let Some(waiter) = state.queue.pop_front() else {
                return;
            };
            let Some(docker) = state.clients[index].clone() else {
                return;
            };
            state.running[index] += 1;
            let slot = Slot {
                pool: self.clone(),
                engine: self.engines[index].clone(),
                docker,
                armed: true,
            };
            // The waiter left between the check and now: take the place back here,
            // since the slot's own drop would lock the state again.
            if let Err(mut slot) = waiter.sender.send(slot) {
                slot.armed = false;
                state.running[index] -= 1;
            }
        }
    }

    /// The preferred engine if it has room, else the least loaded one with room.
    fn choose(&self, state: &State, prefer: Option<usize>) -> Option<usize> {
        let room = |index: usize| {
            state.clients[index].is_some() && state.running[index] < self.engines[index].capacity
        };
        if let Some(index) = prefer.filter(|index| *index < self.engines.len() && room(*index)) {
            return Some(index);
        }
        // running/capacity compared without division; `min_by` keeps the first of
        // equals, so ties go to the engine configured first.
        (0..self.engines.len())
            .filter(|index| room(*index))
            .min_by(|a, b| {
                (state.running[*a] * self.engines[*b].capacity)
                    .cmp(&(state.running[*b] * self.engines[*a].capacity))
            })
    }

    fn release(self: &Arc<Self>, index: usize) {
        let mut state = lock(&self.state);
        state.running[index] = state.running[index].saturating_sub(1);
        self.dispatch(&mut state);
    }

    /// The engine answers again, with this client: it takes work.
    pub(crate) fn mark_up(self: &Arc<Self>, index: usize, docker: Docker) {
        let mut state = lock(&self.state);
        state.clients[index] = Some(docker);
        self.engines[index].up.send_replace(true);
        self.dispatch(&mut state);
    }

    /// The engine failed a ping: no new work, and what runs there ends.
    pub(crate) fn mark_down(&self, index: usize, why: &str) {
        let was_up = lock(&self.state).clients[index].take().is_some();
        self.engines[index].up.send_replace(false);
        if was_up {
            warn!(engine = %self.engines[index].name, cause = %why, "Docker engine down; no new work goes there until it answers");
        }
    }

    /// The client of a healthy engine.
    pub(crate) fn client(&self, index: usize) -> Option<Docker> {
        lock(&self.state).clients[index].clone()
    }

    /// Every healthy engine with its client, in configuration order.
    pub(crate) fn healthy(&self) -> Vec<(Arc<Engine>, Docker)> {
        let state = lock(&self.state);
        self.engines
            .iter()
            .zip(&state.clients)
            .filter_map(|(engine, client)| Some((engine.clone(), client.clone()?)))
            .collect()
    }

    /// Pings a healthy engine; a failure or a slow answer marks it down.
    pub(crate) async fn alive(&self, index: usize) -> bool {
        let Some(docker) = self.client(index) else {
            return false;
        };
        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => {
                self.mark_down(index, &err.to_string());
                false
            }
            Err(_) => {
                self.mark_down(index, "no answer to a ping within 5 s");
                false
            }
        }
    }

    pub(crate) fn status(&self) -> Vec<EngineStatus> {
        let state = lock(&self.state);
        self.engines
            .iter()
            .map(|engine| EngineStatus {
                name: engine.name.clone(),
                healthy: state.clients[engine.index].is_some(),
                running: state.running[engine.index],
                capacity: engine.capacity,
            })
            .collect()
    }

    /// Runs and terminals waiting for a place.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.state)
            .queue
            .iter()
            .filter(|waiter| !waiter.sender.is_closed())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(name: &str, capacity: usize) -> EngineConfig {
        EngineConfig {
            name: name.to_owned(),
            endpoint: Endpoint::Unix(PathBuf::from(format!("/run/{name}.sock"))),
            capacity,
        }
    }

    /// A client placement hands out but never calls (nothing listens there).
    fn client() -> Docker {
        Docker::connect_with_http("http://127.0.0.1:9", 1, API_DEFAULT_VERSION).expect("client")
    }

    fn pool_of(engines: &[EngineConfig]) -> Arc<Pool> {
        let pool = Pool::new(engines);
        for index in 0..engines.len() {
            pool.mark_up(index, client());
        }
        pool
    }

    async fn take(pool: &Arc<Pool>, prefer: Option<usize>) -> Slot {
        tokio::time::timeout(Duration::from_secs(5), pool.acquire(prefer, false))
            .await
            .expect("a place at once")
            .expect("pool alive")
    }

    /// Queues a waiter and returns once it is in the queue, so order is known.
    async fn queue(
        pool: &Arc<Pool>,
        prefer: Option<usize>,
        front: bool,
    ) -> tokio::task::JoinHandle<Option<Slot>> {
        let before = pool.queued();
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire(prefer, front).await })
        };
        while pool.queued() == before {
            tokio::task::yield_now().await;
        }
        waiter
    }

    async fn served(waiter: tokio::task::JoinHandle<Option<Slot>>) -> usize {
        let slot = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("served")
            .expect("task")
            .expect("pool alive");
        let index = slot.engine.index;
        // Kept so the place stays taken for the rest of the test.
        std::mem::forget(slot);
        index
    }

    fn running(pool: &Pool) -> Vec<usize> {
        pool.status().iter().map(|engine| engine.running).collect()
    }

    #[test]
    fn flag_values_parse_with_their_options() {
        let local: EngineConfig = "docker2=unix:///run/chorus-docker2.sock".parse().unwrap();
        assert_eq!(
            local,
            EngineConfig {
                name: "docker2".into(),
                endpoint: Endpoint::Unix("/run/chorus-docker2.sock".into()),
                capacity: crate::limits::DEFAULT_MAX_CONCURRENT,
            }
        );
        let remote: EngineConfig =
            "big-1=tcp://127.0.0.1:2376,capacity=16,tls-ca=/etc/c/ca.pem,tls-cert=/etc/c/cert.pem,tls-key=/etc/c/key.pem"
                .parse()
                .unwrap();
        assert_eq!(
            remote,
            EngineConfig {
                name: "big-1".into(),
                endpoint: Endpoint::Tls {
                    address: "127.0.0.1:2376".into(),
                    tls: TlsFiles {
                        ca: "/etc/c/ca.pem".into(),
                        cert: "/etc/c/cert.pem".into(),
                        key: "/etc/c/key.pem".into(),
                    },
                },
                capacity: 16,
            }
        );
    }

    #[test]
    fn bad_flag_values_say_what_is_wrong() {
        let tls = ",tls-ca=/a,tls-cert=/b,tls-key=/c";
        let cases = [
            ("docker2", "is not NAME=ENDPOINT"),
            ("two words=unix:///s", "must be 1 to 64 letters"),
            ("=unix:///s", "must be 1 to 64 letters"),
            ("x=unix://run/s", "needs an absolute path"),
            ("x=tcp://host:2376", "needs tls-ca, tls-cert and tls-key"),
            (
                "x=tcp://host:2376,tls-ca=/a",
                "needs tls-ca, tls-cert and tls-key",
            ),
            ("x=unix:///s,tls-ca=/a", "are for tcp:// engines"),
            ("x=unix:///s,capacity=0", "not a positive whole number"),
            ("x=unix:///s,capacity=many", "not a positive whole number"),
            (
                "x=unix:///s,capacity=2,capacity=3",
                "capacity is given twice",
            ),
            ("x=unix:///s,colour=red", "unknown option \"colour\""),
            ("x=unix:///s,capacity", "is not OPTION=VALUE"),
            (
                "x=http://host:2375",
                "neither unix:///PATH nor tcp://HOST:PORT",
            ),
            ("x=/run/s.sock", "neither unix:///PATH nor tcp://HOST:PORT"),
        ];
        for (spec, expected) in cases {
            let err = spec.parse::<EngineConfig>().unwrap_err();
            assert!(err.contains(expected), "{spec}: {err}");
        }
        for port in ["host:0", "host:x", ":2376", "host"] {
            let err = format!("x=tcp://{port}{tls}")
                .parse::<EngineConfig>()
                .unwrap_err();
            assert!(err.contains("is not tcp://HOST:PORT"), "{port}: {err}");
        }
    }

    #[test]
    fn validate_refuses_duplicates_empty_pools_and_bad_tls_files() {
        assert!(validate(&[]).unwrap_err().contains("no Docker engine"));
        let twice = [unix("a", 1), unix("b", 1), unix("a", 2)];
        assert!(validate(&twice)
            .unwrap_err()
            .contains("two Docker engines are named a"));
        assert!(validate(&[unix("a", 0)]).unwrap_err().contains("capacity"));
        assert_eq!(validate(&[EngineConfig::local(4), unix("b", 1)]), Ok(()));

        let dir = std::env::temp_dir().join(format!("chorus-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ok.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let remote = |key: PathBuf| EngineConfig {
            name: "remote".into(),
            endpoint: Endpoint::Tls {
                address: "127.0.0.1:2376".into(),
                tls: TlsFiles {
                    ca: pem.clone(),
                    cert: pem.clone(),
                    key,
                },
            },
            capacity: 1,
        };
        assert_eq!(validate(&[remote(pem.clone())]), Ok(()));
        let err = validate(&[remote(dir.join("missing.pem"))]).unwrap_err();
        assert!(
            err.contains("tls-key") && err.contains("missing.pem: cannot be read"),
            "{err}"
        );
        let err = validate(&[remote(not_pem)]).unwrap_err();
        assert!(err.contains("is not a PEM file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_least_loaded_engine_by_share_of_capacity_gets_the_next_place() {
        let pool = pool_of(&[unix("a", 4), unix("b", 1)]);
        let first = take(&pool, None).await;
        let second = take(&pool, None).await;
        let third = take(&pool, None).await;
        // Ties go to the first configured; then b (0 of 1) beats a (1 of 4).
        assert_eq!(
            [first.engine.index, second.engine.index, third.engine.index],
            [0, 1, 0]
        );
        assert_eq!(running(&pool), [2, 1]);
        drop((first, second, third));
        assert_eq!(running(&pool), [0, 0]);
    }

    #[tokio::test]
    async fn the_queue_is_first_come_first_served_whichever_engine_frees_up() {
        let pool = pool_of(&[unix("a", 1), unix("b", 1)]);
        let on_a = take(&pool, None).await;
        let on_b = take(&pool, None).await;
        // The second waiter prefers b (its cache), yet the first is served first.
        let first = queue(&pool, None, false).await;
        let second = queue(&pool, Some(1), false).await;
        assert_eq!(pool.queued(), 2);
        drop(on_b);
        assert_eq!(served(first).await, 1);
        assert!(!second.is_finished());
        drop(on_a);
        assert_eq!(served(second).await, 0);
        assert_eq!(pool.queued(), 0);
    }

    #[tokio::test]
    async fn a_session_goes_back_to_its_engine_while_it_has_room() {
        let pool = pool_of(&[unix("a", 1), unix("b", 1)]);
        let warm = take(&pool, Some(1)).await;
        assert_eq!(warm.engine.index, 1, "its cache is on b");
        let cold = take(&pool, Some(1)).await;
        assert_eq!(cold.engine.index, 0, "b is full: a, with a cold cache");
    }

    #[tokio::test]
    async fn a_retry_goes_ahead_of_the_queue() {
        let pool = pool_of(&[unix("a", 1)]);
        let busy = take(&pool, None).await;
        let waiting = queue(&pool, None, false).await;
        let retry = queue(&pool, None, true).await;
        drop(busy);
        assert_eq!(served(retry).await, 0);
        assert!(!waiting.is_finished());
        waiting.abort();
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_takes_no_place() {
        let pool = pool_of(&[unix("a", 1)]);
        let busy = take(&pool, None).await;
        let gone = queue(&pool, None, false).await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(pool.queued(), 0);
        drop(busy);
        assert_eq!(running(&pool), [0]);
        let next = take(&pool, None).await;
        assert_eq!(next.engine.index, 0);
    }

    #[tokio::test]
    async fn a_down_engine_gets_no_work_until_it_is_back() {
        let pool = Pool::new(&[unix("a", 1), unix("b", 1)]);
        pool.mark_up(0, client());
        let on_a = take(&pool, None).await;
        let waiting = queue(&pool, None, false).await;
        let mut b_up = pool.engines[1].watch();
        assert!(!*b_up.borrow());
        pool.mark_up(1, client());
        assert_eq!(served(waiting).await, 1);
        assert!(*b_up.borrow_and_update());

        // What runs on a down engine sees it go, and still holds its place until it ends.
        let mut a_up = pool.engines[0].watch();
        pool.mark_down(0, "test");
        tokio::time::timeout(Duration::from_secs(5), went_down(&mut a_up))
            .await
            .expect("the watch says down");
        let status = pool.status();
        assert_eq!(
            status[0],
            EngineStatus {
                name: "a".into(),
                healthy: false,
                running: 1,
                capacity: 1
            }
        );
        drop(on_a);
        let waiting = queue(&pool, None, false).await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a is down and b is full");
        assert!(!pool.alive(0).await, "a down engine is not alive");
        pool.mark_up(0, client());
        assert_eq!(served(waiting).await, 0);
    }
}
