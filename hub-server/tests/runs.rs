//! Runs over the wire with a fake executor ([`Recorder`]): what a
//! participant asks for (mode, command) reaches the executor with the
//! session's id, a plan the executor refuses starts nothing, the plan and
//! the diagnostics reach every participant, read-only participants cannot
//! run, and a revoked session's build cache is forgotten.

#[path = "harness/hub.rs"]
mod hub;
#[path = "harness/recorder.rs"]
mod recorder;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_hub::access::{self, Access};
use chorus_hub::{HubConfig, Runner};
use chorus_sandbox::{RunDiagnostic, RunDiagnosticSeverity, RunMode};
use serde_json::{json, Value};

use self::hub::{error_code, scratch_store, Client, TestHub};
use self::recorder::Recorder;

fn hub_config(recorder: &Recorder) -> HubConfig {
    HubConfig {
        runner: Runner::Enabled(Arc::new(recorder.clone())),
        ..TestHub::with(chorus_hub::DEFAULT_WORKSPACE_LIMITS, None)
    }
}

/// Reads `client`'s frames until the run's end; returns its `runFinished`.
async fn until_finished(client: &mut Client) -> Value {
    client.until("runFinished").await
}

#[tokio::test]
async fn mode_and_command_reach_the_executor_with_the_session() {
    let recorder = Recorder::planning("sh -c 'make check' (command)");
    let hub = TestHub::start(hub_config(&recorder)).await;
    let (mut ada, _) = Client::join(&hub, "modes", "ada").await;
    ada.open("Makefile", "check:\n\ttrue\n").await;
    ada.send(json!({
        "type": "run", "doc": "Makefile", "mode": "test", "command": "make check",
        "args": ["-k"], "stdin": "in",
    }))
    .await;
    until_finished(&mut ada).await;
    ada.send(json!({ "type": "run", "doc": "Makefile", "mode": "release" }))
        .await;
    until_finished(&mut ada).await;
    // An older proxy sends neither: a plain run, detected.
    ada.send(json!({ "type": "run", "doc": "Makefile" })).await;
    until_finished(&mut ada).await;

    let requests = recorder.requests();
    let asked: Vec<(RunMode, Option<&str>, &str)> = requests
        .iter()
        .map(|r| (r.mode, r.command.as_deref(), r.session.as_str()))
        .collect();
    assert_eq!(
        asked,
        [
            (RunMode::Test, Some("make check"), "modes"),
            (RunMode::Release, None, "modes"),
            (RunMode::Run, None, "modes"),
        ]
    );
    assert_eq!(requests[0].args, ["-k"]);
    assert_eq!(requests[0].stdin.as_deref(), Some("in"));
}

#[tokio::test]
async fn a_mode_the_hub_does_not_know_is_a_bad_message() {
    let recorder = Recorder::default();
    let hub = TestHub::start(hub_config(&recorder)).await;
    let (mut ada, _) = Client::join(&hub, "bad-mode", "ada").await;
    ada.open("main.py", "print(1)\n").await;
    ada.send(json!({ "type": "run", "doc": "main.py", "mode": "bench" }))
        .await;
    let answer = ada.expect("error").await;
    assert_eq!(answer["code"], "bad_message", "{answer}");
    assert!(recorder.requests().is_empty());
}

#[tokio::test]
async fn a_refused_plan_starts_nothing_and_only_the_asker_hears_why() {
    let recorder = Recorder::refusing("Cargo.toml: expected `=` at line 3");
    let hub = TestHub::start(hub_config(&recorder)).await;
    let (mut ada, _) = Client::join(&hub, "refused", "ada").await;
    let (mut bob, _) = Client::join(&hub, "refused", "bob").await;
    ada.until("joined").await;
    ada.open("src/main.rs", "fn main() {}\n").await;
    ada.send(json!({ "type": "run", "doc": "src/main.rs" }))
        .await;
    let refusal = ada.expect("error").await;
    assert_eq!(error_code(&refusal), ("run_refused", "src/main.rs"));
    assert!(
        refusal["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expected `=` at line 3"),
        "{refusal}"
    );
    assert_eq!(ada.pending().await, Vec::<Value>::new());
    let heard = bob.pending().await;
    assert!(
        !heard
            .iter()
            .any(|f| f["type"].as_str().is_some_and(|t| t.starts_with("run"))),
        "{heard:?}"
    );
    assert!(recorder.requests().is_empty(), "nothing was run");
    // Nothing is going either: there is no run to stop.
    ada.send(json!({ "type": "stop" })).await;
    assert_eq!(error_code(&ada.expect("error").await).0, "no_run");
}

#[tokio::test]
async fn the_plan_and_the_diagnostics_reach_every_participant() {
    let mut recorder = Recorder::planning("python3 main.py (main.py)");
    recorder.diagnostics = vec![RunDiagnostic {
        path: "helper.py".into(),
        line: 3,
        column: 1,
        severity: RunDiagnosticSeverity::Error,
        message: "NameError: name 'nope' is not defined".into(),
    }];
    let hub = TestHub::start(hub_config(&recorder)).await;
    let (mut ada, _) = Client::join(&hub, "everyone", "ada").await;
    let (mut bob, _) = Client::join(&hub, "everyone", "bob").await;
    ada.until("joined").await;
    ada.open("main.py", "import helper\n").await;
    ada.send(json!({ "type": "run", "doc": "main.py", "mode": "test" }))
        .await;
    for client in [&mut ada, &mut bob] {
        let started = client.until("runStarted").await;
        assert_eq!(started["plan"], "python3 main.py (main.py)", "{started}");
        assert_eq!(started["name"], "ada", "{started}");
        let finished = until_finished(client).await;
        assert_eq!(
            finished["result"]["diagnostics"],
            json!([{
                "path": "helper.py", "line": 3, "column": 1, "severity": "error",
                "message": "NameError: name 'nope' is not defined",
            }]),
            "{finished}"
        );
    }
}

#[tokio::test]
async fn a_read_only_participant_cannot_run_whatever_the_mode() {
    let (dir, store) = scratch_store("runs-read-only").await;
    let tokens = access::create_session(&store, "ro-runs")
        .await
        .expect("create the session");
    let recorder = Recorder::planning("python3 main.py (main.py)");
    let config = HubConfig {
        access: Access::Tokens,
        store: Some(store),
        ..hub_config(&recorder)
    };
    let hub = TestHub::start(config).await;
    let (mut editor, _) = Client::join_with(&hub, "ro-runs", "ed", Some(&tokens.join)).await;
    editor.open("main.py", "print(1)\n").await;
    let (mut watcher, _) = Client::join_with(&hub, "ro-runs", "wat", Some(&tokens.read_only)).await;
    watcher.open("main.py", "").await;
    watcher
        .send(json!({ "type": "run", "doc": "main.py", "mode": "test", "command": "rm -rf ." }))
        .await;
    assert_eq!(
        error_code(&watcher.expect("error").await),
        ("read_only", "main.py")
    );
    assert!(recorder.requests().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `chorus session revoke` is the end of a session: its build cache goes,
/// whether or not the session was live on this hub.
#[tokio::test]
async fn a_revoked_session_is_forgotten_by_the_executor() {
    let (dir, store) = scratch_store("runs-revoked").await;
    let recorder = Recorder::default();
    let config = HubConfig {
        access: Access::Tokens,
        store: Some(store.clone()),
        ..hub_config(&recorder)
    };
    let hub = TestHub::start(config).await;
    let live = access::create_session(&store, "live")
        .await
        .expect("create");
    access::create_session(&store, "idle")
        .await
        .expect("create");
    let (mut ada, _) = Client::join_with(&hub, "live", "ada", Some(&live.join)).await;
    ada.open("main.py", "print(1)\n").await;
    for session in ["live", "idle"] {
        assert!(store.revoke_session(session).await.expect("revoke"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut forgotten = recorder.forgotten();
        forgotten.sort();
        if forgotten == ["idle", "live"] {
            break;
        }
        assert!(Instant::now() < deadline, "forgotten: {forgotten:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(error_code(&ada.until("error").await).0, "unauthorized");
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
