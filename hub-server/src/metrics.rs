//! What the hub counts for its operators, served as Prometheus text at
//! `GET /metrics` (ADR 0010).
//!
//! The rest of the hub touches this module only through one-line hooks:
//! a guard held for as long as something is open ([`Held`], for the
//! gauges), a timer that observes when dropped ([`Timed`]), and counters
//! bumped where an event happens. One registry per process, like the
//! process itself: a hub is one process, and a hook needs no handle
//! threaded to it.
//!
//! Invariant: no label holds anything a participant chose (a session id,
//! a name, a path). Every label value comes from a closed set in the code
//! or the hub's configuration, so a scrape stays the same size however
//! many sessions come and go, and reading it tells nobody who is working
//! on what.

use std::sync::LazyLock;
use std::time::Instant;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chorus_protocol::wire::{ErrorCode, ServerMsg};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::outbound::Outbound;
use crate::Runner;

/// A label with a value from a closed set in the code.
type Static = [(&'static str, &'static str); 1];
/// A label whose values come from a closed set outside the code: an
/// [`ErrorCode`] (named as on the wire) or an engine's configured name.
type Named = [(&'static str, String); 1];

/// Why the hub dropped a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Its outbound queue filled: it reads slower than its session writes.
    SlowConsumer,
    /// Silent for `idle_timeout`, not even answering pings.
    IdleTimeout,
    /// No `hello` within `hello_timeout` of connecting.
    HelloTimeout,
    /// A frame beyond the transport's hard limit, which the hub cannot
    /// even read to refuse.
    FrameTooLarge,
}

impl Dropped {
    const ALL: [Dropped; 4] = [
        Dropped::SlowConsumer,
        Dropped::IdleTimeout,
        Dropped::HelloTimeout,
        Dropped::FrameTooLarge,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Dropped::SlowConsumer => "slow_consumer",
            Dropped::IdleTimeout => "idle_timeout",
            Dropped::HelloTimeout => "hello_timeout",
            Dropped::FrameTooLarge => "frame_too_large",
        }
    }
}

/// Buckets for latencies inside the hub, in seconds: an op applied in
/// memory takes microseconds, one logged to SQLite tens of them, to
/// PostgreSQL milliseconds; beyond a second something is wrong anyway.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the hub keeps, registered once.
pub struct Metrics {
    registry: Registry,
    sessions_loaded: Gauge,
    connections_open: Gauge,
    participants: Gauge,
    ops_applied: Counter,
    op_latency: Histogram,
    storage_latency: Family<Static, Histogram, fn() -> Histogram>,
    resyncs: Family<Named, Counter>,
    dropped_clients: Family<Static, Counter>,
    refused_frames: Family<Named, Counter>,
    runs_started: Counter,
    runs_active: Gauge,
    terminals_open: Gauge,
    engine_up: Family<Named, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry of its own: the hub has one ([`global`]); tests make
    /// theirs so that nothing else in the process moves their numbers.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("chorus_hub"),
            sessions_loaded: Gauge::default(),
            connections_open: Gauge::default(),
            participants: Gauge::default(),
            ops_applied: Counter::default(),
            op_latency: latency_histogram(),
            storage_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            resyncs: Family::default(),
            dropped_clients: Family::default(),
            refused_frames: Family::default(),
            runs_started: Counter::default(),
            runs_active: Gauge::default(),
            terminals_open: Gauge::default(),
            engine_up: Family::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Metrics {
        // Zero from the start rather than absent until the first drop, so
        // that rate() and alerts see the series begin.
        for reason in Dropped::ALL {
            self.dropped_clients
                .get_or_create_owned(&[("reason", reason.as_str())]);
        }
        let registry = &mut self.registry;
        registry.register(
            "sessions_loaded",
            "Sessions held in memory (an actor each)",
            self.sessions_loaded.clone(),
        );
        registry.register(
            "connections_open",
            "WebSocket connections open, joined or not",
            self.connections_open.clone(),
        );
        registry.register(
            "participants",
            "Participants joined to a session, across all sessions",
            self.participants.clone(),
        );
        registry.register(
            "ops_applied",
            "Edits applied, logged and acknowledged",
            self.ops_applied.clone(),
        );
        registry.register_with_unit(
            "op_latency",
            "Time from the session actor taking an op to its ack being queued, storage included",
            Unit::Seconds,
            self.op_latency.clone(),
        );
        registry.register_with_unit(
            "storage_latency",
            "Time each storage call took, by call",
            Unit::Seconds,
            self.storage_latency.clone(),
        );
        registry.register(
            "resyncs",
            "Documents' texts sent to a client to repair its copy, by the error that preceded it",
            self.resyncs.clone(),
        );
        registry.register(
            "dropped_clients",
            "Connections the hub closed, by reason",
            self.dropped_clients.clone(),
        );
        registry.register(
            "refused_frames",
            "Client frames answered with an error, by error code",
            self.refused_frames.clone(),
        );
        registry.register(
            "runs_started",
            "Code runs started",
            self.runs_started.clone(),
        );
        // Queued and running are not told apart: the queue for a sandbox
        // slot is inside the executor, which does not show it yet.
        registry.register(
            "runs_active",
            "Code runs started and not finished, waiting for a sandbox slot or running",
            self.runs_active.clone(),
        );
        registry.register(
            "terminals_open",
            "Shared terminals whose container is up",
            self.terminals_open.clone(),
        );
        registry.register(
            "engine_up",
            "Whether each code execution engine can take runs (1) or not (0)",
            self.engine_up.clone(),
        );
        self
    }

    /// Counts one session held in memory until the guard drops.
    pub fn session_loaded(&self) -> Held {
        Held::new(&self.sessions_loaded)
    }

    pub fn connection_open(&self) -> Held {
        Held::new(&self.connections_open)
    }

    pub fn participant(&self) -> Held {
        Held::new(&self.participants)
    }

    /// An op taken by the session actor at `started` was acknowledged.
    pub fn op_applied(&self, started: Instant) {
        self.ops_applied.inc();
        self.op_latency.observe(started.elapsed().as_secs_f64());
    }

    /// Times one call to storage, `call` naming it (`"append_op"`), until
    /// the guard drops: failed and abandoned calls count too, as the wait
    /// they caused was real.
    pub fn storage(&self, call: &'static str) -> Timed {
        Timed {
            histogram: self.storage_latency.get_or_create_owned(&[("call", call)]),
            started: Instant::now(),
        }
    }

    /// A client was sent the document's text to repair its copy, after
    /// an error with `code`.
    pub fn resync(&self, code: ErrorCode) {
        self.resyncs
            .get_or_create(&[("code", code_name(code))])
            .inc();
    }

    pub fn dropped(&self, why: Dropped) {
        self.dropped_clients
            .get_or_create(&[("reason", why.as_str())])
            .inc();
    }

    /// Reading a connection failed with `err`: a frame beyond the hard
    /// limit is a drop; a peer that went away is not.
    pub fn read_failed(&self, err: &WsError) {
        if matches!(err, WsError::Capacity(_)) {
            self.dropped(Dropped::FrameTooLarge);
        }
    }

    /// A frame for this participant did not fit in its queue: a drop for
    /// slowness, unless its connection was already ending.
    pub fn slow_consumer(&self, outbound: &Outbound) {
        if !outbound.is_closed() {
            self.dropped(Dropped::SlowConsumer);
        }
    }

    /// Counts `msg` as a refused frame if it is an error.
    pub fn count_refusal(&self, msg: &ServerMsg) {
        if let ServerMsg::Error { code, .. } = msg {
            self.refused_frames
                .get_or_create(&[("code", code_name(*code))])
                .inc();
        }
    }

    /// Counts a run started, and active until the guard drops.
    pub fn run_started(&self) -> Held {
        self.runs_started.inc();
        Held::new(&self.runs_active)
    }

    pub fn terminal_open(&self) -> Held {
        Held::new(&self.terminals_open)
    }

    /// Sets `engine_up` from each engine's health now.
    pub fn set_engines(&self, engines: &[(String, bool)]) {
        for (name, up) in engines {
            self.engine_up
                .get_or_create(&[("engine", name.clone())])
                .set(i64::from(*up));
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and no metric here has a
        // native-only histogram (the only other failure).
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// An error code as the protocol spells it (`too_large`); the set is the
/// protocol's, so bounded.
fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{code:?}"),
    }
}

/// One more on a gauge until dropped: whatever way the thing it counts
/// ends (returned, failed, its task dropped), the gauge comes back down.
#[derive(Debug)]
#[must_use = "the gauge goes back down when this is dropped"]
pub struct Held(Gauge);

impl Held {
    fn new(gauge: &Gauge) -> Held {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Observes the time since it was made when dropped.
#[must_use = "the time is observed when this is dropped"]
pub struct Timed {
    histogram: Histogram,
    started: Instant,
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The hub's metrics: what the hooks count into and `/metrics` shows.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Each engine that runs code, by its configured name, with whether it can
/// take runs now (the pool pings them every few seconds); a hub that runs
/// no code shows its local engine down.
pub fn engines(runner: &Runner) -> Vec<(String, bool)> {
    match runner {
        Runner::Enabled(executor) => executor
            .engines()
            .into_iter()
            .map(|engine| (engine.name, engine.healthy))
            .collect(),
        Runner::Disabled(_) => vec![("local".to_owned(), false)],
    }
}

/// `GET /metrics`, for the server's router.
///
/// Served like `/healthz`: read-only, the same answer for everyone, no
/// CORS headers (so a web page cannot read it), and `nosniff` so that no
/// browser takes it for a script or a style sheet.
pub fn routes<S: Clone + Send + Sync + 'static>(runner: &Runner) -> Router<S> {
    let runner = runner.clone();
    Router::new().route(
        "/metrics",
        get(move || {
            let engines = engines(&runner);
            async move {
                let metrics = global();
                metrics.set_engines(&engines);
                (
                    [
                        (header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    metrics.encode(),
                )
                    .into_response()
            }
        }),
    )
}

/// `global().session_loaded()`: these shorthands keep each hook one line.
pub fn session_loaded() -> Held {
    global().session_loaded()
}

pub fn connection_open() -> Held {
    global().connection_open()
}

pub fn participant() -> Held {
    global().participant()
}

pub fn op_applied(started: Instant) {
    global().op_applied(started)
}

pub fn storage(call: &'static str) -> Timed {
    global().storage(call)
}

pub fn resync(code: ErrorCode) {
    global().resync(code)
}

pub fn dropped(why: Dropped) {
    global().dropped(why)
}

pub fn read_failed(err: &WsError) {
    global().read_failed(err)
}

pub fn slow_consumer(outbound: &Outbound) {
    global().slow_consumer(outbound)
}

pub fn count_refusal(msg: &ServerMsg) {
    global().count_refusal(msg)
}

pub fn run_started() -> Held {
    global().run_started()
}

pub fn terminal_open() -> Held {
    global().terminal_open()
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use chorus_sandbox::{Chunk, Executor, RunRequest, RunStatus};
    use tokio::sync::{mpsc, oneshot};
    use tower::ServiceExt;

    use super::*;

    /// The value of one series (`name{labels}`) in an exposition.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    fn error(code: ErrorCode, message: &str) -> ServerMsg {
        ServerMsg::error(code, message, Some("src/secret_plans.rs"))
    }

    #[test]
    fn gauges_follow_what_is_open_and_counters_what_happened() {
        let metrics = Metrics::new();
        let session = metrics.session_loaded();
        let connections = [metrics.connection_open(), metrics.connection_open()];
        let participant = metrics.participant();
        let run = metrics.run_started();
        let terminal = metrics.terminal_open();
        for _ in 0..3 {
            metrics.op_applied(Instant::now());
        }
        drop(metrics.storage("append_op"));
        drop(metrics.storage("append_op"));
        drop(metrics.storage("snapshot"));
        metrics.resync(ErrorCode::ChecksumMismatch);
        metrics.dropped(Dropped::IdleTimeout);
        metrics.count_refusal(&error(ErrorCode::TooLarge, "too big"));
        metrics.count_refusal(&error(ErrorCode::TooLarge, "too big again"));
        metrics.count_refusal(&ServerMsg::Pong { nonce: 1 });
        metrics.set_engines(&[("local".to_owned(), true)]);

        let text = metrics.encode();
        let at =
            |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
        assert_eq!(at("chorus_hub_sessions_loaded"), 1.0);
        assert_eq!(at("chorus_hub_connections_open"), 2.0);
        assert_eq!(at("chorus_hub_participants"), 1.0);
        assert_eq!(at("chorus_hub_runs_active"), 1.0);
        assert_eq!(at("chorus_hub_runs_started_total"), 1.0);
        assert_eq!(at("chorus_hub_terminals_open"), 1.0);
        assert_eq!(at("chorus_hub_ops_applied_total"), 3.0);
        assert_eq!(at("chorus_hub_op_latency_seconds_count"), 3.0);
        assert_eq!(at("chorus_hub_op_latency_seconds_bucket{le=\"+Inf\"}"), 3.0);
        assert_eq!(
            at("chorus_hub_storage_latency_seconds_count{call=\"append_op\"}"),
            2.0
        );
        assert_eq!(
            at("chorus_hub_storage_latency_seconds_count{call=\"snapshot\"}"),
            1.0
        );
        assert_eq!(
            at("chorus_hub_resyncs_total{code=\"checksum_mismatch\"}"),
            1.0
        );
        assert_eq!(
            at("chorus_hub_dropped_clients_total{reason=\"idle_timeout\"}"),
            1.0
        );
        // Reasons that never happened are there from the start, at zero.
        assert_eq!(
            at("chorus_hub_dropped_clients_total{reason=\"slow_consumer\"}"),
            0.0
        );
        assert_eq!(
            at("chorus_hub_refused_frames_total{code=\"too_large\"}"),
            2.0
        );
        assert_eq!(at("chorus_hub_engine_up{engine=\"local\"}"), 1.0);
        assert!(
            text.contains("# TYPE chorus_hub_op_latency_seconds histogram"),
            "{text}"
        );

        drop((session, connections, participant, run, terminal));
        metrics.set_engines(&[("local".to_owned(), false)]);
        let text = metrics.encode();
        for gauge in [
            "chorus_hub_sessions_loaded",
            "chorus_hub_connections_open",
            "chorus_hub_participants",
            "chorus_hub_runs_active",
            "chorus_hub_terminals_open",
            "chorus_hub_engine_up{engine=\"local\"}",
        ] {
            assert_eq!(value(&text, gauge), Some(0.0), "{gauge} in\n{text}");
        }
        assert_eq!(value(&text, "chorus_hub_runs_started_total"), Some(1.0));
    }

    #[test]
    fn what_clients_chose_never_becomes_a_label() {
        let metrics = Metrics::new();
        metrics.count_refusal(&error(
            ErrorCode::ReadOnly,
            "session team-secret is read-only",
        ));
        metrics.resync(ErrorCode::StaleRevision);
        let text = metrics.encode();
        assert!(!text.contains("secret"), "{text}");
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        // Each refusal of a kind already seen adds nothing.
        for n in 0..100 {
            let message = format!("session s{n}");
            metrics.count_refusal(&error(ErrorCode::ReadOnly, &message));
        }
        let after = metrics.encode();
        assert_eq!(
            after.lines().filter(|l| !l.starts_with('#')).count(),
            series
        );
    }

    /// An executor that is never asked to run anything, on two engines.
    struct Idle;

    impl Executor for Idle {
        fn engines(&self) -> Vec<chorus_sandbox::EngineStatus> {
            let engine = |name: &str, healthy| chorus_sandbox::EngineStatus {
                name: name.to_owned(),
                healthy,
                running: 0,
                capacity: 2,
            };
            vec![engine("local", true), engine("docker2", false)]
        }

        fn run(
            &self,
            _request: RunRequest,
            _output: mpsc::Sender<Chunk>,
            _cancel: oneshot::Receiver<()>,
        ) -> Pin<Box<dyn std::future::Future<Output = RunStatus> + Send>> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn each_engine_is_up_or_down_as_the_pool_says() {
        let disabled = Runner::Disabled("--no-runs".into());
        assert_eq!(engines(&disabled), vec![("local".to_owned(), false)]);
        let enabled = Runner::Enabled(Arc::new(Idle));
        assert_eq!(
            engines(&enabled),
            vec![("local".to_owned(), true), ("docker2".to_owned(), false)]
        );
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text() {
        let app: Router = routes(&Runner::Disabled("--no-runs".into()));
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        // The process-wide registry: other tests move its numbers, not its
        // names, and this hub's one engine is down.
        assert_eq!(
            value(&text, "chorus_hub_engine_up{engine=\"local\"}"),
            Some(0.0)
        );
        assert!(
            text.contains("# TYPE chorus_hub_ops_applied_total counter"),
            "{text}"
        );
    }
}
