//! Shared code execution end to end: `chorus.run` from one scripted editor
//! runs the hub's text in a real Docker container, and every editor sees the
//! output (`window/logMessage`, `chorus/runOutput`, `$/progress`) and the
//! result (`window/showMessage`), while editing goes on.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::{chorus_bin, Hub};
use crate::support::hub_client::HubClient;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_log(editor: &Editor, needle: &str) -> Value {
    editor.wait_message("window/logMessage", needle, WAIT).await
}

async fn wait_show(editor: &Editor, needle: &str) -> Value {
    editor
        .wait_message("window/showMessage", needle, WAIT)
        .await
}

/// A two-file Python project whose run fails in helper.py, line 3
/// (NameError), called from main.py.
pub(crate) const FAILING_MAIN: &str = "import helper\n\nprint(helper.greet())\n";
pub(crate) const FAILING_HELPER: &str =
    "def greet():\n    name = 'chorus'\n    return undefined_name + name\n";

const PROGRAM: &str = "import sys\nprint('hello from chorus')\nprint('oops', file=sys.stderr)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reaches_every_editor() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("a_run_reaches_every_editor").await;
    let session = "runs";
    let doc = "hello.py";
    let starter = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    let others = [
        Editor::start(EditorKind::Neovim, &hub, session, "bob").await,
        Editor::start(EditorKind::Helix, &hub, session, "cy").await,
    ];
    starter.open(doc, PROGRAM);
    for editor in &others {
        editor.open(doc, PROGRAM);
    }
    // Bob adds a line: the run must use the session's text, which has it.
    others[0].insert_after(doc, "stderr)\n", "print('typed by bob')\n");
    let all: Vec<&Editor> = std::iter::once(&starter).chain(&others).collect();
    assert_converged(&hub, session, doc, &all).await;

    let code_actions = starter
        .client()
        .request(
            "textDocument/codeAction",
            json!({
                "textDocument": { "uri": starter.uri(doc) },
                "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 0, "character": 0 } },
                "context": { "diagnostics": [] },
            }),
        )
        .await
        .expect("codeAction answers");
    let action = &code_actions[0];
    assert_eq!(action["title"], "Run with Chorus", "{code_actions}");
    assert_eq!(action["command"]["command"], "chorus.run");

    let answer = starter
        .execute("chorus.run", json!([starter.uri(doc)]))
        .await
        .expect("chorus.run is accepted");
    assert_eq!(answer["requested"], doc);

    for editor in &all {
        let line = wait_log(editor, "hello from chorus").await;
        let message = line["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("[run ") && message.contains("· ada] hello from chorus"),
            "{}: output line should name the run and who started it: {message:?}",
            editor.name
        );
        wait_log(editor, "typed by bob").await;
        wait_log(editor, "stderr: oops").await;
        let done = wait_show(editor, "exited with code 0").await;
        assert_eq!(done["type"], 3, "a successful run is reported as info");
        let chunks = editor.client().notifications("chorus/runOutput");
        let stdout: String = chunks
            .iter()
            .filter(|c| c["stream"] == "stdout")
            .map(|c| c["data"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            stdout, "hello from chorus\ntyped by bob\n",
            "{}: stdout in order",
            editor.name
        );
        let seqs: Vec<u64> = chunks.iter().filter_map(|c| c["seq"].as_u64()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seq in order: {seqs:?}"
        );
        let progress = editor.client().notifications("$/progress");
        let kinds: Vec<&str> = progress
            .iter()
            .filter_map(|p| p["value"]["kind"].as_str())
            .collect();
        assert_eq!(
            kinds.first(),
            Some(&"begin"),
            "{}: {progress:?}",
            editor.name
        );
        assert_eq!(kinds.last(), Some(&"end"), "{}: {progress:?}", editor.name);
    }
}

/// A run that never ends does not hold up editing; a second run is refused
/// while it goes; `chorus.stop` ends it for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_goes_on_during_a_hostile_run_until_it_is_stopped() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("editing_goes_on_during_a_hostile_run").await;
    let session = "loop";
    let doc = "spin.py";
    let text = "while True:\n    pass\n";
    let a = Editor::start(EditorKind::Helix, &hub, session, "a").await;
    let b = Editor::start(EditorKind::Neovim, &hub, session, "b").await;
    a.open(doc, text);
    b.open(doc, text);
    assert_converged(&hub, session, doc, &[&a, &b]).await;

    a.execute("chorus.run", json!([a.uri(doc)]))
        .await
        .expect("first run accepted");
    a.client()
        .wait_notification("chorus/runStarted", WAIT, |_| true)
        .await
        .expect("run started");

    for i in 0..20 {
        a.insert_after(doc, "pass", &format!(" #a{i}"));
        b.insert_before(doc, "while", &format!("#b{i}\n"));
    }
    let text = assert_converged(&hub, session, doc, &[&a, &b]).await;
    assert!(text.contains("#a19") && text.contains("#b19"), "{text:?}");

    b.execute("chorus.run", json!([b.uri(doc)]))
        .await
        .expect("the request itself is accepted");
    wait_show(&b, "still going").await;

    b.execute("chorus.stop", json!([]))
        .await
        .expect("stop accepted");
    for editor in [&a, &b] {
        wait_show(editor, "stopped after").await;
    }
}

/// `chorus.run URI {stdin, args}` hands both to the program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_and_arguments_reach_the_program() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("stdin_and_arguments_reach_the_program").await;
    let doc = "echo.py";
    let text =
        "import sys\nprint('args', sys.argv[1:])\nprint('stdin', sys.stdin.read().strip())\n";
    let editor = Editor::start(EditorKind::Helix, &hub, "io", "io").await;
    editor.open(doc, text);
    assert_converged(&hub, "io", doc, &[&editor]).await;
    editor
        .execute(
            "chorus.run",
            json!([editor.uri(doc), { "stdin": "from stdin\n", "args": ["one", "two"] }]),
        )
        .await
        .expect("accepted");
    wait_log(&editor, "args ['one', 'two']").await;
    wait_log(&editor, "stdin from stdin").await;
    let bad = editor
        .execute("chorus.run", json!([editor.uri(doc), { "args": "nope" }]))
        .await;
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("list of strings")),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_runs_says_why() {
    let mut child = Command::new(chorus_bin())
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--open",
            "--no-runs",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chorus hub");
    let stdout = child.stdout.take().expect("piped");
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("a listening line");
    let url = line.trim_start_matches("listening ").trim().to_owned();
    let (mut client, _) = HubClient::join(&url, "norun", "n").await;
    client.open("x.py", "print(1)\n").await;
    client
        .send_json(&json!({ "type": "run", "doc": "x.py" }))
        .await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "runs_disabled", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--no-runs"),
        "{error}"
    );
    client.send_json(&json!({ "type": "stop" })).await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "no_run", "{error}");
}

/// Issue 18: `--docker-engine` names an engine to run on, and
/// `--no-local-docker` leaves the local one out; runs work there as here,
/// and the hub says at start which engines it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_runs_code_on_an_engine_named_by_flag() {
    if !chorus_testkit::second_docker() {
        return;
    }
    let engine = format!(
        "docker2=unix://{},capacity=1",
        chorus_testkit::SECOND_DOCKER_SOCKET
    );
    let hub = Hub::start_in_memory(
        "a_hub_runs_code_on_an_engine_named_by_flag",
        &["--no-local-docker", "--docker-engine", &engine],
    )
    .await;
    let (mut client, _) = HubClient::join(&hub.url, "elsewhere", "ada").await;
    client.open("where.py", "print('ran elsewhere')\n").await;
    client
        .send_json(&json!({ "type": "run", "doc": "where.py" }))
        .await;
    let mut output = String::new();
    let result = loop {
        let frame = client.recv().await.expect("run frames");
        match frame["type"].as_str() {
            Some("runOutput") => output.push_str(frame["data"].as_str().unwrap_or_default()),
            Some("runFinished") => break frame["result"].clone(),
            _ => {}
        }
    };
    assert_eq!(result["exitCode"], 0, "{result}");
    assert_eq!(output, "ran elsewhere\n");
    let log = hub.log_tail(50);
    assert!(
        log.contains("docker2 (1)") && !log.contains("local ("),
        "{log}"
    );
}

/// `chorus.run URI {mode, command}`: the command line runs instead of the
/// file (`sh -c` in the project's folder), and the run header says so. A
/// mode the proxy does not know is refused before anything is sent.
///
/// The command line, and the plan in the header, need the sandbox side of
/// issue 15 (an executor that plans and runs `command`); before it, the
/// file runs instead and the assertions on `hi` and code 3 fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_runs_instead_of_the_project() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("a_command_line_runs_instead_of_the_project").await;
    let doc = "main.py";
    let editor = Editor::start(EditorKind::Helix, &hub, "command", "cy").await;
    editor.open(doc, "print('the file ran')\n");
    assert_converged(&hub, "command", doc, &[&editor]).await;

    let refused = editor
        .execute("chorus.run", json!([editor.uri(doc), { "mode": "bench" }]))
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("must be") && e.contains("bench")),
        "{refused:?}"
    );
    assert!(editor
        .client()
        .notifications("chorus/runStarted")
        .is_empty());

    editor
        .execute(
            "chorus.run",
            json!([editor.uri(doc), { "mode": "test", "command": "echo hi; exit 3" }]),
        )
        .await
        .expect("accepted");
    let started = editor
        .client()
        .wait_notification("chorus/runStarted", WAIT, |_| true)
        .await
        .expect("the run started");
    let plan = started["plan"].as_str().unwrap_or_default();
    assert!(!plan.is_empty(), "the header says what runs: {started}");
    wait_log(&editor, &format!("started {doc}: {plan}")).await;
    wait_log(&editor, "] hi").await;
    let done = wait_show(&editor, "exited with code 3").await;
    assert_eq!(done["type"], 2, "a failed run is reported as a warning");
    let logged = editor.client().notifications("window/logMessage");
    assert!(
        !logged.iter().any(|l| l["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the file ran")),
        "the command ran instead of the file: {logged:?}"
    );
}

/// A run's error becomes a diagnostic (source `chorus run`) on the file and
/// line it names, for every participant, the one who did not open the file
/// too (by URI); a clean run clears it. Needs the sandbox's output parser
/// (issue 15) for the diagnostic itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_error_is_a_diagnostic_for_everyone_until_a_clean_run() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("a_run_error_is_a_diagnostic_for_everyone").await;
    let session = "diagnostics";
    let (main, helper) = (FAILING_MAIN, FAILING_HELPER);
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    let bob = Editor::start(EditorKind::Neovim, &hub, session, "bob").await;
    ada.open("helper.py", helper);
    ada.open("main.py", main);
    bob.open("main.py", main);
    assert_converged(&hub, session, "main.py", &[&ada, &bob]).await;
    assert_converged(&hub, session, "helper.py", &[&ada]).await;

    bob.execute("chorus.run", json!([bob.uri("main.py")]))
        .await
        .expect("accepted");
    for editor in [&ada, &bob] {
        let done = wait_show(editor, "exited with code 1").await;
        let uri = editor.uri("helper.py");
        let published = editor
            .client()
            .wait_notification("textDocument/publishDiagnostics", WAIT, |p| {
                p["uri"] == uri.as_str()
                    && p["diagnostics"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|d| d["source"] == "chorus run"))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{}: no run diagnostic for {uri} (finished: {done}); published: {:?}",
                    editor.name,
                    editor
                        .client()
                        .notifications("textDocument/publishDiagnostics")
                )
            });
        let diagnostic = &published["diagnostics"][0];
        assert_eq!(diagnostic["range"]["start"]["line"], 2, "{published}");
        assert_eq!(diagnostic["severity"], 1, "an error: {published}");
        assert!(
            diagnostic["message"]
                .as_str()
                .unwrap_or_default()
                .contains("undefined_name"),
            "{published}"
        );
        assert!(
            done["message"]
                .as_str()
                .unwrap_or_default()
                .contains("error at helper.py:3"),
            "{done}"
        );
    }

    ada.replace("main.py", "print(helper.greet())", "print('fixed')");
    assert_converged(&hub, session, "main.py", &[&ada, &bob]).await;
    let published_before: Vec<usize> = [&ada, &bob]
        .iter()
        .map(|e| {
            e.client()
                .notifications("textDocument/publishDiagnostics")
                .len()
        })
        .collect();
    ada.execute("chorus.run", json!([ada.uri("main.py")]))
        .await
        .expect("accepted");
    for (editor, before) in [&ada, &bob].into_iter().zip(published_before) {
        wait_log(editor, "] fixed").await;
        let uri = editor.uri("helper.py");
        let cleared = editor
            .client()
            .notifications("textDocument/publishDiagnostics")
            .into_iter()
            .skip(before)
            .any(|p| p["uri"] == uri.as_str() && p["diagnostics"] == json!([]));
        assert!(
            cleared,
            "{}: helper.py's run diagnostic was not cleared",
            editor.name
        );
    }
}

/// Issue 17: a program writing one byte at a time used to become one
/// message per byte to every participant. Output is gathered into bounded
/// pieces now, in order, every byte there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_at_a_time_output_is_gathered_into_few_messages() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("byte_at_a_time_output").await;
    let (mut client, _) = HubClient::join(&hub.url, "drip", "drip").await;
    let program = "import sys, time\nfor i in range(2000):\n    sys.stdout.write('x')\n    sys.stdout.flush()\n    time.sleep(0.001)\nprint('|end')\n";
    client.open("drip.py", program).await;
    client
        .send_json(&json!({ "type": "run", "doc": "drip.py" }))
        .await;
    let mut output = String::new();
    let mut messages = 0;
    loop {
        let frame = client.recv().await.expect("run frames");
        match frame["type"].as_str() {
            Some("runOutput") => {
                messages += 1;
                output.push_str(frame["data"].as_str().unwrap_or_default());
            }
            Some("runFinished") => break,
            _ => {}
        }
    }
    assert_eq!(output, format!("{}|end\n", "x".repeat(2000)));
    assert!(
        messages < 400,
        "2000 one-byte writes came as {messages} messages"
    );
}

/// Issue 16: Ada's run asks for a name; Cy, in (the model of) Helix,
/// answers with `:lsp-workspace-command chorus.input Grace`, which is a
/// line; both logs show who answered what, then the program's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_from_another_editor_answers_the_program() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("input_from_another_editor_answers_the_program").await;
    let session = "input";
    let doc = "ask.py";
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    let cy = Editor::start(EditorKind::Helix, &hub, session, "cy").await;
    ada.open(doc, "name = input('name? ')\nprint('hi', name)\n");
    assert_converged(&hub, session, doc, &[&ada]).await;
    // Cy opens it too: then Cy's proxy is surely joined.
    cy.open(doc, "");
    assert_converged(&hub, session, doc, &[&ada, &cy]).await;
    // Nothing runs yet: the hub says so (the command itself only sends).
    cy.execute("chorus.input", json!(["early"]))
        .await
        .expect("sent");
    cy.wait_message("window/showMessage", "no run is going", WAIT)
        .await;
    ada.execute("chorus.run", json!([ada.uri(doc)]))
        .await
        .expect("accepted");
    wait_log(&cy, "started ask.py").await;
    let answer = cy.execute("chorus.input", json!(["Grace"])).await;
    assert_eq!(answer, Ok(json!({ "requested": "input" })));
    for editor in [&ada, &cy] {
        wait_log(editor, "> Grace  (from cy)").await;
        wait_log(editor, "hi Grace").await;
        wait_show(editor, "exited with code 0").await;
    }
    let bad = cy.execute("chorus.input", json!([{ "text": 3 }])).await;
    assert!(bad.is_err_and(|e| e.contains("chorus.input takes")));
}
