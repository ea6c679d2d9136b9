//! Runs over the wire with a fake executor ([`Recorder`]): what a
//! participant asks for (mode, command) reaches the executor with the
//! session's id, a plan the executor refuses starts nothing, the plan and
//! the diagnostics reach every participant, read-only participants cannot
//! run, and a revoked session's build cache is forgotten. Input reaches the
//! current run and is echoed to everyone with the sender's name; a
//! read-only participant's is refused, and input with no run is `no_run`.

#[path = "harness/hub.rs"]
mod hub;
#[path = "harness/recorder.rs"]
mod recorder;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_hub::access::{self, Access};
use chorus_hub::{HubConfig, Runner};
use chorus_sandbox::{RunDiagnostic, RunDiagnosticSeverity, RunInput, RunMode};
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

/// Ada runs, Bob answers: the program gets Bob's text, and both hear who
/// typed what before the output it causes; input after end-of-file is
/// refused, an interrupt still goes.
#[tokio::test]
async fn input_reaches_the_run_and_everyone_hears_who_sent_it() {
    let recorder = Recorder::interactive();
    let hub = TestHub::start(hub_config(&recorder)).await;
    let (mut ada, _) = Client::join(&hub, "input", "ada").await;
    let (mut bob, bob_welcome) = Client::join(&hub, "input", "bob").await;
    let bob_id = bob_welcome["clientId"].clone();
    ada.until("joined").await;
    ada.open("main.py", "print(input())\n").await;
    ada.send(json!({ "type": "run", "doc": "main.py" })).await;
    let started = bob.until("runStarted").await;
    let run_id = started["runId"].clone();
    bob.send(json!({ "type": "input", "text": "Ada\n" })).await;
    let expected_echo = json!({
        "type": "runInput", "runId": run_id, "clientId": bob_id, "name": "bob", "text": "Ada\n",
    });
    for client in [&mut ada, &mut bob] {
        // The echo comes before the output it caused.
        let mut echoed = false;
        let mut output = String::new();
        while !output.ends_with("got Ada\n") {
            let frame = client.recv().await;
            match frame["type"].as_str() {
                Some("runInput") => {
                    assert_eq!(frame, expected_echo);
                    echoed = true;
                }
                Some("runOutput") => {
                    let data = frame["data"].as_str().unwrap_or_default();
                    assert!(
                        echoed || !data.contains("got"),
                        "output before its echo: {frame}"
                    );
                    output.push_str(data);
                }
                _ => {}
            }
        }
        assert_eq!(output, "main.pygot Ada\n");
    }
    bob.send(json!({ "type": "input", "eof": true })).await;
    assert_eq!(ada.until("runInput").await["eof"], true);
    // The stdin is closed now (the run may be finishing too).
    bob.send(json!({ "type": "input", "text": "late" })).await;
    assert_eq!(error_code(&bob.until("error").await).0, "no_run");
    until_finished(&mut ada).await;
    assert_eq!(
        recorder.inputs(),
        [RunInput::Text("Ada\n".to_owned()), RunInput::Eof]
    );
    // Nothing is running: input has nowhere to go.
    ada.send(json!({ "type": "input", "interrupt": true }))
        .await;
    assert_eq!(error_code(&ada.until("error").await).0, "no_run");
    // A request's `stdin` is all a one-shot run gets, as older proxies meant.
    ada.send(json!({ "type": "run", "doc": "main.py", "stdin": "x" }))
        .await;
    until_finished(&mut ada).await;
    ada.send(json!({ "type": "run", "doc": "main.py", "stdin": "x", "stdinEof": false }))
        .await;
    ada.until("runStarted").await;
    ada.send(json!({ "type": "input", "interrupt": true, "eof": true }))
        .await;
    let echo = ada.until("runInput").await;
    assert_eq!(
        (echo["eof"].clone(), echo["interrupt"].clone()),
        (json!(true), json!(true))
    );
    until_finished(&mut ada).await;
    // The one-shot run's end-of-file, then the second run's (the fake ends
    // there; the interrupt's order was checked in the echo).
    assert_eq!(recorder.inputs()[2..], [RunInput::Eof, RunInput::Eof]);
}

#[tokio::test]
async fn a_read_only_participant_cannot_send_input() {
    let (dir, store) = scratch_store("input-read-only").await;
    let tokens = access::create_session(&store, "ro-input")
        .await
        .expect("create the session");
    let recorder = Recorder::interactive();
    let config = HubConfig {
        access: Access::Tokens,
        store: Some(store),
        ..hub_config(&recorder)
    };
    let hub = TestHub::start(config).await;
    let (mut editor, _) = Client::join_with(&hub, "ro-input", "ed", Some(&tokens.join)).await;
    editor.open("main.py", "print(input())\n").await;
    let (mut watcher, _) =
        Client::join_with(&hub, "ro-input", "wat", Some(&tokens.read_only)).await;
    editor
        .send(json!({ "type": "run", "doc": "main.py" }))
        .await;
    watcher.until("runStarted").await;
    for frame in [
        json!({ "type": "input", "text": "rm -rf /\n" }),
        json!({ "type": "input", "interrupt": true }),
    ] {
        watcher.send(frame).await;
        let refusal = watcher.until("error").await;
        assert_eq!(error_code(&refusal).0, "read_only", "{refusal}");
    }
    editor.send(json!({ "type": "input", "eof": true })).await;
    until_finished(&mut editor).await;
    assert_eq!(recorder.inputs(), [RunInput::Eof]);
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
