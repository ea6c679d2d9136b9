//! Integration tests of the engine pool against two real Docker engines: the local one
//! and a second dockerd on this machine (`sandbox/scripts/ensure-second-docker.sh`:
//! unix:///run/chorus-docker2.sock, and the same engine with mutual TLS on
//! 127.0.0.1:23762).
//!
//! Under plain `cargo test` a missing second engine skips these tests with one line
//! saying how to start it; in the full run (`CHORUS_FULL_TESTS=1`) the first test to
//! need it starts it with the script (about a minute when its image must be copied;
//! `scripts/test.sh` starts it early, in the background). See chorus-testkit.
//! The tests that use the second engine take turns (one of them kills it).
//!
//! Programs wait on their stdin rather than sleep, so "while it runs" is a state the
//! test controls, not a guess at timings.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::{Docker, API_DEFAULT_VERSION};
use chorus_sandbox::{
    Chunk, DockerExecutor, Endpoint, EngineConfig, EngineStatus, Executor, ExecutorConfig, Limits,
    RunInput, RunRequest, RunStatus, SandboxError, Stream, TerminalEnd, TerminalSize, TlsFiles,
    ENGINE_LABEL, INSTANCE_LABEL,
};
use tokio::sync::{mpsc, oneshot};

mod common;
use common::test_limits;

const SECOND_SOCKET: &str = chorus_testkit::SECOND_DOCKER_SOCKET;
const SECOND_PIDFILE: &str = "/run/chorus-docker2.pid";
const SECOND_TLS_ADDRESS: &str = "127.0.0.1:23762";
const SECOND_TLS_DIR: &str = "/var/lib/chorus-docker2-tls";

/// The tests using the second engine, one at a time: one of them kills it.
static SECOND_ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn kill_second_engine() {
    let pid = std::fs::read_to_string(SECOND_PIDFILE).expect("the second engine's pid file");
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid} failed");
}

fn second_engine(capacity: usize) -> EngineConfig {
    EngineConfig {
        name: "docker2".into(),
        endpoint: Endpoint::Unix(SECOND_SOCKET.into()),
        capacity,
    }
}

/// A client of the second engine, to look at what the executor left there.
async fn second_client() -> Docker {
    Docker::connect_with_unix(SECOND_SOCKET, 30, API_DEFAULT_VERSION)
        .expect("second engine client")
        .negotiate_version()
        .await
        .expect("the second engine answers")
}

async fn first_client() -> Docker {
    common::engine().await
}

/// Limits for programs that wait on their input while the test looks around.
fn patient_limits() -> Limits {
    Limits {
        wall_clock: Duration::from_secs(120),
        ..test_limits()
    }
}

async fn connect(engines: Vec<EngineConfig>) -> DockerExecutor {
    DockerExecutor::connect(ExecutorConfig {
        limits: patient_limits(),
        engines,
        ..ExecutorConfig::default()
    })
    .await
    .expect("connect to the pool")
}

fn python(source: &str) -> RunRequest {
    RunRequest {
        main: "main.py".into(),
        files: vec![("main.py".into(), source.into())],
        ..RunRequest::default()
    }
}

/// A run going on in the background, with its input open.
struct Live {
    input: mpsc::Sender<RunInput>,
    output: mpsc::Receiver<Chunk>,
    stdout: String,
    run: tokio::task::JoinHandle<RunStatus>,
}

fn start(executor: &DockerExecutor, request: RunRequest) -> Live {
    let (sender, output) = mpsc::channel(64);
    let (input, input_receiver) = mpsc::channel(8);
    // Never cancelled: the sender goes with the task.
    let (cancel_sender, cancel) = oneshot::channel();
    let run = executor.run_with_input(request, sender, cancel, input_receiver);
    let run = tokio::spawn(async move {
        let status = run.await;
        drop(cancel_sender);
        status
    });
    Live {
        input,
        output,
        stdout: String::new(),
        run,
    }
}

impl Live {
    /// Waits until the run's stdout holds `text`.
    async fn wait_for(&mut self, text: &str) {
        while !self.stdout.contains(text) {
            let chunk = tokio::time::timeout(Duration::from_secs(120), self.output.recv())
                .await
                .unwrap_or_else(|_| panic!("no {text:?} within 120 s; stdout {:?}", self.stdout))
                .unwrap_or_else(|| {
                    panic!("the run ended before {text:?}; stdout {:?}", self.stdout)
                });
            if chunk.stream == Stream::Stdout {
                self.stdout.push_str(&chunk.data);
            }
        }
    }

    async fn send(&self, input: RunInput) {
        self.input.send(input).await.expect("the run takes input");
    }

    /// The status and the whole stdout.
    async fn finish(mut self) -> (RunStatus, String) {
        while let Some(chunk) = self.output.recv().await {
            if chunk.stream == Stream::Stdout {
                self.stdout.push_str(&chunk.data);
            }
        }
        let status = tokio::time::timeout(Duration::from_secs(120), self.run)
            .await
            .expect("the run ends")
            .expect("run task");
        (status, self.stdout)
    }
}

/// Polls `check` every 100 ms for up to `seconds`; fails saying `what` otherwise.
async fn until(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {seconds} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_of(executor: &DockerExecutor, name: &str) -> EngineStatus {
    executor
        .engines_status()
        .into_iter()
        .find(|engine| engine.name == name)
        .expect("engine in the status")
}

/// This executor's containers on an engine: name → the engine label they carry.
async fn containers_on(docker: &Docker, executor: &DockerExecutor) -> HashMap<String, String> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{INSTANCE_LABEL}={}", executor.instance_id())],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .map(|summary| {
            let name = summary.names.unwrap_or_default().join(",");
            let engine = summary
                .labels
                .unwrap_or_default()
                .get(ENGINE_LABEL)
                .cloned()
                .unwrap_or_default();
            (name, engine)
        })
        .collect()
}

/// Reads one line, says it back: runs until the test sends it something.
const ECHO_LINE: &str = "print('ready', flush=True)\nprint('got', input())\n";

#[tokio::test]
async fn runs_spread_over_two_engines_and_the_third_waits() {
    // First the turn: the engine may be down while another test holds it.
    let _turn = SECOND_ENGINE.lock().await;
    if !chorus_testkit::second_docker() {
        return;
    }
    let executor = connect(vec![EngineConfig::local(1), second_engine(1)]).await;
    let mut first = start(&executor, python(ECHO_LINE));
    let mut second = start(&executor, python(ECHO_LINE));
    first.wait_for("ready").await;
    second.wait_for("ready").await;

    // Each engine runs one, and its container says which engine it is on.
    let on_local = containers_on(&first_client().await, &executor).await;
    let on_second = containers_on(&second_client().await, &executor).await;
    assert_eq!(on_local.len(), 1, "{on_local:?}");
    assert_eq!(on_second.len(), 1, "{on_second:?}");
    assert!(on_local.values().all(|engine| engine == "local"));
    assert!(on_second.values().all(|engine| engine == "docker2"));
    for engine in executor.engines_status() {
        assert!(
            engine.healthy && engine.running == 1 && engine.capacity == 1,
            "{engine:?}"
        );
    }

    // Both are full: a third waits in the queue until one ends.
    let mut third = start(&executor, python(ECHO_LINE));
    until("the third run queued", 30, || executor.queued() == 1).await;
    first.send(RunInput::Text("one\n".into())).await;
    third.wait_for("ready").await;
    assert_eq!(executor.queued(), 0);
    second.send(RunInput::Text("two\n".into())).await;
    third.send(RunInput::Text("three\n".into())).await;
    for (live, word) in [(first, "one"), (second, "two"), (third, "three")] {
        let (status, stdout) = live.finish().await;
        assert_eq!(status.exit_code, Some(0), "{status:?}");
        assert_eq!(stdout, format!("ready\ngot {word}\n"));
    }
    assert!(executor.list_containers().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_engine_killed_mid_run_fails_or_retries_its_work_and_comes_back_swept() {
    // First the turn: the engine may be down while another test holds it.
    let _turn = SECOND_ENGINE.lock().await;
    if !chorus_testkit::second_docker() {
        return;
    }
    let executor = connect(vec![EngineConfig::local(1), second_engine(3)]).await;
    let second = second_client().await;

    // The local engine is busy, so what follows goes to the second one: a run that has
    // written something, one that has not, and a terminal.
    let mut blocker = start(&executor, python(ECHO_LINE));
    blocker.wait_for("ready").await;
    let mut spoke = start(&executor, python(ECHO_LINE));
    spoke.wait_for("ready").await;
    let silent = start(
        &executor,
        python("import sys\nsys.stdin.read()\nprint('silent done')\n"),
    );
    let terminal = executor
        .open_terminal("", &[], TerminalSize::default())
        .await
        .expect("open a terminal");
    let mut on_second = HashMap::new();
    for _ in 0..600 {
        on_second = containers_on(&second, &executor).await;
        if on_second.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(on_second.len(), 3, "{on_second:?}");
    assert!(on_second.values().all(|engine| engine == "docker2"));

    kill_second_engine();

    // The run with output fails saying why; the terminal ends naming the engine.
    let (status, stdout) = spoke.finish().await;
    assert_eq!(stdout, "ready\n");
    assert_eq!(
        status.error.as_deref(),
        Some("the Docker engine docker2 running this went away; run again"),
        "{status:?}"
    );
    match tokio::time::timeout(Duration::from_secs(60), terminal.handle.wait()).await {
        Ok(TerminalEnd::Failed(why)) => assert!(why.contains("docker2"), "{why}"),
        other => panic!("the terminal should fail naming the engine: {other:?}"),
    }
    until("docker2 marked down", 30, || {
        !status_of(&executor, "docker2").healthy
    })
    .await;

    // The silent run is tried again on the local engine once the blocker ends; its
    // end-of-file goes only now, so it cannot have finished on the dead engine.
    blocker.send(RunInput::Text("go\n".into())).await;
    let (status, _) = blocker.finish().await;
    assert_eq!(status.exit_code, Some(0), "{status:?}");
    silent.send(RunInput::Eof).await;
    let (status, stdout) = silent.finish().await;
    assert_eq!(status.exit_code, Some(0), "{status:?}");
    assert_eq!(stdout, "silent done\n");

    // New work goes to the engine that is left.
    let mut next = start(&executor, python(ECHO_LINE));
    next.wait_for("ready").await;
    let local = status_of(&executor, "local");
    assert_eq!((local.healthy, local.running), (true, 1), "{local:?}");
    next.send(RunInput::Text("after\n".into())).await;
    let (status, _) = next.finish().await;
    assert_eq!(status.exit_code, Some(0), "{status:?}");

    // Back up: healthy again, and what died with it removed before it takes work.
    chorus_testkit::start_second_docker();
    until("docker2 healthy again", 60, || {
        status_of(&executor, "docker2").healthy
    })
    .await;
    let left = containers_on(&second_client().await, &executor).await;
    assert!(left.is_empty(), "left on the second engine: {left:?}");
    assert_eq!(status_of(&executor, "docker2").running, 0);
}

#[tokio::test]
async fn an_engine_dead_at_start_is_down_and_the_others_work() {
    if !chorus_testkit::docker() {
        return;
    }
    let ghost = |name: &str| EngineConfig {
        name: name.into(),
        endpoint: Endpoint::Unix(format!("/run/chorus-no-such-engine-{name}.sock").into()),
        capacity: 2,
    };
    let executor = connect(vec![EngineConfig::local(2), ghost("ghost")]).await;
    let status = executor.engines_status();
    assert_eq!(
        status,
        [
            EngineStatus {
                name: "local".into(),
                healthy: true,
                running: 0,
                capacity: 2
            },
            EngineStatus {
                name: "ghost".into(),
                healthy: false,
                running: 0,
                capacity: 2
            }
        ]
    );
    let mut live = start(&executor, python(ECHO_LINE));
    live.wait_for("ready").await;
    live.send(RunInput::Text("hi\n".into())).await;
    let (status, stdout) = live.finish().await;
    assert_eq!(status.exit_code, Some(0), "{status:?}");
    assert_eq!(stdout, "ready\ngot hi\n");

    // With no engine usable there is nothing to run on, and the error names each.
    let err = DockerExecutor::connect(ExecutorConfig {
        engines: vec![ghost("one"), ghost("two")],
        ..ExecutorConfig::default()
    })
    .await
    .err()
    .expect("no engine is usable");
    let message = err.to_string();
    assert!(matches!(err, SandboxError::NoEngine(_)), "{message}");
    assert!(
        message.contains("one: unreachable") && message.contains("two: unreachable"),
        "{message}"
    );
}

#[tokio::test]
async fn a_remote_engine_over_mutual_tls_runs_code() {
    // First the turn: the engine may be down while another test holds it.
    let _turn = SECOND_ENGINE.lock().await;
    if !chorus_testkit::second_docker() {
        return;
    }
    let remote = EngineConfig {
        name: "remote".into(),
        endpoint: Endpoint::Tls {
            address: SECOND_TLS_ADDRESS.into(),
            tls: TlsFiles {
                ca: format!("{SECOND_TLS_DIR}/ca.pem").into(),
                cert: format!("{SECOND_TLS_DIR}/cert.pem").into(),
                key: format!("{SECOND_TLS_DIR}/key.pem").into(),
            },
        },
        capacity: 1,
    };
    let executor = connect(vec![remote]).await;
    let mut live = start(&executor, python(ECHO_LINE));
    live.wait_for("ready").await;
    let there = containers_on(&second_client().await, &executor).await;
    assert_eq!(there.values().collect::<Vec<_>>(), ["remote"], "{there:?}");
    live.send(RunInput::Text("over tls\n".into())).await;
    let (status, stdout) = live.finish().await;
    assert_eq!(status.exit_code, Some(0), "{status:?}");
    assert_eq!(stdout, "ready\ngot over tls\n");
    assert!(executor.list_containers().await.unwrap().is_empty());

    // The engine checks the client: a certificate its CA did not sign is refused.
    let dir = std::env::temp_dir().join(format!("chorus-pool-stranger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=stranger",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(&dir)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let stranger = EngineConfig {
        name: "stranger".into(),
        endpoint: Endpoint::Tls {
            address: SECOND_TLS_ADDRESS.into(),
            tls: TlsFiles {
                ca: format!("{SECOND_TLS_DIR}/ca.pem").into(),
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            },
        },
        capacity: 1,
    };
    let refused = DockerExecutor::connect(ExecutorConfig {
        engines: vec![stranger],
        ..ExecutorConfig::default()
    })
    .await;
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        matches!(refused, Err(SandboxError::EngineUnreachable(_))),
        "{:?}",
        refused.err()
    );
}
