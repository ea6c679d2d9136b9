//! Issue 19: the browser door in real Chromium, with a real Neovim and a
//! scripted editor, all typing at random places at once.
//!
//! Chromium is driven by `web/e2e/browser.mjs` (playwright-core), which
//! loads the page the hub serves at `/s/SESSION`, joins through its form,
//! opens the document from its file tree and types through the keyboard.
//! Each party inserts its own characters (the browser's are outside the
//! BMP: two UTF-16 units in the page, one character at the hub), so once
//! everyone is quiet the text must hold every inserted character exactly
//! once, and the page, Neovim, the editor and the hub must all agree.
//! Replay a seed with `CHORUS_SEEDS=<seed>`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::neovim::{lua_str, wait_for, wait_joined, workspace, Nvim, Route, DOC};
use crate::support::editor::EditorKind;
use crate::support::hub_client::hub_text_with_token;
use crate::support::{wait_converged, Editor, Hub};

/// Units each party inserts per seed.
const UNITS: usize = 30;
const WAIT: Duration = Duration::from_secs(60);
const SEED_TEXT: &str = "def main():\n    print('hi')\n";

/// The page in Chromium, through the driver's line protocol.
struct Page {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Page {
    async fn open(chromium: &Path, url: &str, name: &str, doc: &str, log: &Path) -> Page {
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let log = std::fs::File::create(log).expect("create the driver's log");
        let mut child = Command::new("node")
            .arg(web.join("e2e/browser.mjs"))
            .args([url, name, doc])
            .env("CHROMIUM", chromium)
            .current_dir(&web)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node web/e2e/browser.mjs");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut page = Page {
            _child: child,
            stdin,
            stdout,
        };
        let ready = page.next().await;
        assert_eq!(ready["event"], "ready", "the page did not open: {ready}");
        page
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("the browser driver answers")
            .expect("read the driver's stdout")
            .expect("the browser driver exited early (its log is in the test's log dir)");
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"))
    }

    async fn ask(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the driver");
        let answer = self.next().await;
        assert_ne!(answer["event"], "failed", "{command}: {answer}");
        answer
    }

    async fn state(&mut self) -> Value {
        self.ask(json!({ "cmd": "state" })).await
    }
}

/// Unit `k` of party `party`: one character no other party types. The
/// browser (party 0) types emoji and CJK Extension B, both outside the BMP.
fn unit(party: u32, k: u32) -> String {
    let base = match (party, k % 2) {
        (0, 0) => 0x1f600,
        (0, _) => 0x20000,
        (1, 0) => 0x4e00,
        (1, _) => 0x400,
        (_, 0) => 0x5800,
        (_, _) => 0xc0,
    };
    char::from_u32(base + k / 2)
        .expect("a scalar value")
        .to_string()
}

fn units(party: u32) -> Vec<String> {
    (0..UNITS as u32).map(|k| unit(party, k)).collect()
}

fn counts(text: &str) -> BTreeMap<char, usize> {
    let mut counts = BTreeMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    counts
}

async fn type_at_random(editor: &Editor, seed: u64, units: Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    for unit in units {
        let pick: usize = rng.random_range(0..1_000_000);
        editor.edit_with(DOC, |buffer| {
            // Never after the final line break: Neovim would add another
            // to end its new last line (`fixendofline`), and the count of
            // line breaks is checked too.
            let at = pick % buffer.len().max(1);
            Some((at, at, unit))
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_neovim_and_an_editor_typing_at_random_converge() {
    let Some(chromium) = chorus_testkit::chromium() else {
        return;
    };
    if chorus_testkit::neovim().is_none() {
        return;
    }
    for seed in crate::support::seeds(&[1, 2]) {
        let test = format!("browser_random_{seed}");
        let hub = Hub::start(&test).await;
        let session = format!("browser-{seed}");
        let ws = workspace(&hub, SEED_TEXT);
        let nvim = Nvim::launch(&hub, &ws, &session, "ada", None, Route::Plugin).await;
        wait_joined(&nvim).await;
        let editor = Editor::start(EditorKind::VsCode, &hub, &session, "bot").await;
        editor.open(DOC, SEED_TEXT);
        wait_converged(&hub, &session, DOC, &[&editor])
            .await
            .unwrap_or_else(|report| panic!("the editor joins: {report}"));
        let url = format!("http://127.0.0.1:{}/s/{session}", hub.port);
        let mut page = Page::open(
            &chromium,
            &url,
            "web",
            DOC,
            &hub.log_dir.join("browser.log"),
        )
        .await;

        let file = hub.log_dir.join("nvim-units.json");
        std::fs::write(&file, serde_json::to_string(&units(1)).expect("json")).expect("write");
        let browser_typing =
            page.ask(json!({ "cmd": "type", "seed": seed, "units": units(0), "gap": 20 }));
        let nvim_typing = async {
            nvim.lua(&format!(
                "T.edit_random({seed}, {}, {UNITS}, 'i', 20) or 'ok'",
                lua_str(&file.display().to_string())
            ))
            .await;
            wait_for("all its typing done", &nvim, "T.done", |done| {
                done == UNITS.to_string()
            })
            .await;
        };
        let editor_typing = type_at_random(&editor, seed, units(2));
        tokio::join!(browser_typing, nvim_typing, editor_typing);

        // Quiet now: wait until every party holds the hub's text.
        let deadline = tokio::time::Instant::now() + WAIT;
        let text = loop {
            let (_, hub_text) = hub_text_with_token(&hub.url, &session, DOC, None)
                .await
                .expect("the hub's text");
            let browser = page.state().await["state"].clone();
            let nvim_text = nvim.lua("T.text()").await;
            let editor_text = editor.text(DOC).unwrap_or_default();
            let agreed = browser["text"] == hub_text.as_str()
                && browser["synchronized"] == true
                && nvim_text == hub_text
                && editor_text == hub_text;
            if agreed {
                break hub_text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "seed {seed}: no convergence within {WAIT:?}\nhub:     {hub_text:?}\n\
                 browser: {browser}\nneovim:  {nvim_text:?}\neditor:  {editor_text:?}\n\
                 hub log:\n{}",
                hub.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let typed: String = (0..3).flat_map(units).collect();
        assert_eq!(
            counts(&text),
            counts(&format!("{SEED_TEXT}{typed}")),
            "seed {seed}: characters lost or doubled in {text:?}"
        );
        let last = page.state().await;
        assert_eq!(last["state"]["csp"], json!([]), "no CSP violations: {last}");
        assert_eq!(last["problems"], json!([]), "no page errors: {last}");
        // The main states for a person to look at (docs/browser/ keeps a set).
        for (name, scheme, width, height) in [
            ("light", "light", 1280, 720),
            ("dark", "dark", 1280, 720),
            ("narrow", "light", 390, 844),
        ] {
            let path = hub.log_dir.join(format!("browser-{name}.png"));
            page.ask(json!({ "cmd": "screenshot", "path": path, "colorScheme": scheme, "width": width, "height": height }))
                .await;
        }
    }
}

/// Waits until the page's state satisfies `accept`; returns it.
async fn page_wait(page: &mut Page, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = page.state().await["state"].clone();
        if accept(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed {what}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page, Neovim and the hub hold one text, the page's OT
/// client synchronized; returns the text.
async fn page_and_nvim_agree(hub: &Hub, session: &str, page: &mut Page, nvim: &Nvim) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hub_text = hub_text_with_token(&hub.url, session, DOC, hub.token.as_deref()).await;
        let browser = page.state().await["state"].clone();
        let nvim_text = nvim.lua("T.text()").await;
        if let Ok((_, hub_text)) = &hub_text {
            if browser["text"] == hub_text.as_str()
                && browser["synchronized"] == true
                && &nvim_text == hub_text
            {
                return hub_text.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence within {WAIT:?}\nhub: {hub_text:?}\nbrowser: {browser}\n\
             neovim: {nvim_text:?}\nhub log:\n{}",
            hub.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Cursors both ways between the page and Neovim, and the page following
/// Neovim from file to file; then the hub is killed,
/// both type while it is gone, it restarts on the same port and storage,
/// and nothing typed is lost or doubled (the page resends its pending op
/// by identity, ADR 0002).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_cross_both_ways_and_typing_survives_a_hub_restart() {
    let Some(chromium) = chorus_testkit::chromium() else {
        return;
    };
    if chorus_testkit::neovim().is_none() {
        return;
    }
    let test = "browser_restart";
    let data = crate::support::hub::log_dir(test).join("data");
    let data = data.to_string_lossy().into_owned();
    let mut hub = Hub::start_with(
        test,
        "hub-1.log",
        &["--listen", "127.0.0.1:0", "--data", &data, "--open"],
    )
    .await;
    let session = "browser-restart";
    let ws = workspace(&hub, SEED_TEXT);
    let nvim = Nvim::launch(&hub, &ws, session, "ada", None, Route::Plugin).await;
    wait_joined(&nvim).await;
    let url = format!("http://127.0.0.1:{}/s/{session}", hub.port);
    let log = hub.log_dir.join("browser.log");
    let mut page = Page::open(&chromium, &url, "web", DOC, &log).await;

    // The page's caret on line 2 ("    print…"), column 4.
    page.ask(json!({ "cmd": "cursor", "at": 16 })).await;
    wait_for("the page's cursor", &nvim, "T.cursors()", |m| {
        m.contains(r#"["web",1,4]"#)
    })
    .await;
    // Neovim's to line 1, column 3 ("def| main").
    nvim.keys("gg03l").await;
    page_wait(&mut page, "Neovim's cursor", |s| {
        s["remoteCursors"] == json!([{ "name": "ada", "at": 3 }])
    })
    .await;

    // Following Neovim: the file it opens opens in the page too.
    page.ask(json!({ "cmd": "press", "selector": "button[data-follow=\"ada\"]", "key": "Enter" }))
        .await;
    std::fs::write(ws.join("other.py"), "print('other')\n").expect("write other.py");
    nvim.command("edit other.py").await;
    nvim.keys("l").await;
    page_wait(&mut page, "Neovim's file", |s| {
        s["doc"] == "other.py" && s["text"] == "print('other')\n"
    })
    .await;
    nvim.command("buffer main.py").await;
    nvim.keys("gg03l").await;
    page_wait(&mut page, "Neovim's file again", |s| {
        s["doc"] == DOC && s["remoteCursors"] == json!([{ "name": "ada", "at": 3 }])
    })
    .await;

    hub.kill().await;
    page_wait(&mut page, "that it is offline", |s| {
        s["connection"] != "connected"
    })
    .await;
    let offline = units(0);
    page.ask(json!({ "cmd": "type", "seed": 7, "units": offline, "gap": 0 }))
        .await;
    nvim.lua("vim.api.nvim_buf_set_text(T.buf(), 0, 0, 0, 0, { 'Ж' }) or 'ok'")
        .await;
    let listen = format!("127.0.0.1:{}", hub.port);
    let hub = Hub::start_with(
        test,
        "hub-2.log",
        &["--listen", &listen, "--data", &data, "--open"],
    )
    .await;
    let text = page_and_nvim_agree(&hub, session, &mut page, &nvim).await;
    let typed: String = units(0).concat();
    assert_eq!(
        counts(&text),
        counts(&format!("Ж{SEED_TEXT}{typed}")),
        "everything typed offline is there once: {text:?}"
    );
    let last = page.state().await;
    assert_eq!(last["state"]["error"], Value::Null, "{last}");
    let cursors = last["state"]["remoteCursors"].as_array().map(Vec::len);
    assert_eq!(
        cursors,
        Some(1),
        "one cursor for Neovim, none stale: {last}"
    );
    // Chromium logs each refused reconnect attempt; anything else is a bug.
    let problems: Vec<&str> = last["problems"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_str)
        .filter(|p| !p.contains("ERR_CONNECTION_REFUSED"))
        .collect();
    assert!(problems.is_empty(), "page errors: {problems:?}");
}

/// A read-only token gives a page that shows the session, says it is
/// read-only and cannot type; Neovim's edits still reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_page_watches_and_cannot_type() {
    let Some(chromium) = chorus_testkit::chromium() else {
        return;
    };
    if chorus_testkit::neovim().is_none() {
        return;
    }
    let test = "browser_read_only";
    let data = crate::support::hub::log_dir(test).join("data");
    let store = ["--data", data.to_str().expect("a UTF-8 path")];
    let session = "browser-ro";
    let tokens = crate::access::create_session(&store, session).await;
    let mut hub = crate::access::start_token_hub(test, &data).await;
    hub.token = Some(tokens.join.clone());
    let ws = workspace(&hub, SEED_TEXT);
    let nvim = Nvim::launch(&hub, &ws, session, "ada", Some(&tokens.join), Route::Plugin).await;
    wait_joined(&nvim).await;
    // The token in the fragment, as a shared link carries it.
    let url = format!(
        "http://127.0.0.1:{}/s/{session}#token={}",
        hub.port, tokens.read_only
    );
    let log = hub.log_dir.join("browser.log");
    let mut page = Page::open(&chromium, &url, "watcher", DOC, &log).await;
    let state = page_wait(&mut page, "the read-only role", |s| s["role"] == "readOnly").await;
    assert_eq!(state["readOnlyNote"], true, "the page says so: {state}");
    assert_eq!(
        state["editable"], "false",
        "the editor takes no input: {state}"
    );

    page.ask(json!({ "cmd": "type", "seed": 3, "units": ["x", "y"], "gap": 0 }))
        .await;
    nvim.lua("vim.api.nvim_buf_set_text(T.buf(), 0, 0, 0, 0, { 'Ж' }) or 'ok'")
        .await;
    let text = page_and_nvim_agree(&hub, session, &mut page, &nvim).await;
    assert_eq!(text, format!("Ж{SEED_TEXT}"), "only Neovim's edit is there");
    let last = page.state().await;
    assert_eq!(
        last["state"]["error"],
        Value::Null,
        "the page never sent an edit the hub refused: {last}"
    );
    assert!(
        last["state"]["status"]
            .as_str()
            .is_some_and(|s| s.contains("read-only")),
        "the status line says read-only: {last}"
    );
}

const PROGRAM: &str = "import sys\nprint('ready 😀')\nline = sys.stdin.readline()\nprint('got ' + line.strip()[::-1])\n";

/// Run from the page, by keyboard: the output streams into it, a line of
/// input reaches the program, and the status line follows the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_in_the_page_streams_its_output_and_takes_input() {
    let Some(chromium) = chorus_testkit::chromium() else {
        return;
    };
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("browser_run").await;
    let session = "browser-run";
    let (mut seeder, _) = crate::support::HubClient::join(&hub.url, session, "seeder").await;
    seeder.open("main.py", PROGRAM).await;
    let url = format!("http://127.0.0.1:{}/s/{session}", hub.port);
    let log = hub.log_dir.join("browser.log");
    let mut page = Page::open(&chromium, &url, "web", "main.py", &log).await;

    page.ask(json!({ "cmd": "press", "selector": "#run", "key": "Enter" }))
        .await;
    page_wait(&mut page, "the program's first line", |s| {
        s["output"].as_str().is_some_and(|o| o.contains("ready 😀"))
    })
    .await;
    page.ask(json!({ "cmd": "fill", "selector": "#stdin", "text": "olleh" }))
        .await;
    page.ask(json!({ "cmd": "press", "selector": "#stdin", "key": "Enter" }))
        .await;
    let state = page_wait(&mut page, "the run's end", |s| {
        s["status"]
            .as_str()
            .is_some_and(|t| t.contains("run finished"))
    })
    .await;
    let output = state["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("got hello"),
        "the input reached the program: {output:?}"
    );
    assert!(output.contains("exit code 0"), "{output:?}");
    assert!(
        state["status"]
            .as_str()
            .is_some_and(|t| t.contains("exit code 0")),
        "{state}"
    );
}

/// The shared terminal in the page (xterm.js, under the page's CSP): the
/// page opens it and types into it with real keystrokes, a raw client
/// joins it (and gets the replay) and types too, both read one screen.
/// A second page joining late shows the replay from the DOM renderer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_opens_the_shared_terminal_and_types_with_another_client() {
    let Some(chromium) = chorus_testkit::chromium() else {
        return;
    };
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("browser_terminal").await;
    let session = "browser-terminal";
    let (mut seeder, _) = crate::support::HubClient::join(&hub.url, session, "seeder").await;
    seeder.open("main.py", "x = 1\n").await;
    let url = format!("http://127.0.0.1:{}/s/{session}", hub.port);
    let mut page = Page::open(
        &chromium,
        &url,
        "web",
        "main.py",
        &hub.log_dir.join("browser.log"),
    )
    .await;

    page.ask(json!({ "cmd": "press", "selector": "#terminal-open", "key": "Enter" }))
        .await;
    page_wait(&mut page, "bash's prompt", |s| {
        s["terminal"].as_str().is_some_and(|t| t.contains("$"))
    })
    .await;
    let keys = |text: &str| json!({ "cmd": "keys", "selector": "#terminal .xterm-helper-textarea", "text": text });
    page.ask(keys("python3 -q")).await;
    page.ask(
        json!({ "cmd": "press", "selector": "#terminal .xterm-helper-textarea", "key": "Enter" }),
    )
    .await;
    page_wait(&mut page, "python's prompt", |s| {
        s["terminal"].as_str().is_some_and(|t| t.contains(">>>"))
    })
    .await;
    page.ask(keys("x = 2")).await;
    page.ask(
        json!({ "cmd": "press", "selector": "#terminal .xterm-helper-textarea", "key": "Enter" }),
    )
    .await;

    // Another participant joins the open terminal: it gets the replay.
    seeder
        .send_json(&json!({ "type": "terminal", "cols": 80, "rows": 24 }))
        .await;
    let mut screen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !screen.contains("x = 2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never showed the page's typing: {screen:?}"
        );
        let msg = seeder.recv().await.expect("the hub answers");
        if msg["type"] == "terminalOutput" {
            screen.push_str(msg["data"].as_str().unwrap_or_default());
        }
    }
    seeder
        .send_json(&json!({ "type": "terminalInput", "data": "print(x * 21)\r" }))
        .await;
    while !screen.contains("42") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other client never saw 42: {screen:?}"
        );
        let msg = seeder.recv().await.expect("the hub answers");
        if msg["type"] == "terminalOutput" {
            screen.push_str(msg["data"].as_str().unwrap_or_default());
        }
    }
    let state = page_wait(&mut page, "42 in the page's terminal", |s| {
        s["terminal"]
            .as_str()
            .is_some_and(|t| t.lines().any(|l| l.trim() == "42"))
    })
    .await;
    let text = state["terminal"].as_str().unwrap_or_default();
    assert!(text.contains(">>> x = 2"), "the page's keystrokes: {text}");
    assert!(text.contains("print(x * 21)"), "the other's input: {text}");

    // A page that joins late shows the replay.
    let mut late = Page::open(
        &chromium,
        &url,
        "late",
        "main.py",
        &hub.log_dir.join("browser-late.log"),
    )
    .await;
    page_wait(&mut late, "the replay", |s| {
        s["terminal"]
            .as_str()
            .is_some_and(|t| t.contains("print(x * 21)") && t.lines().any(|l| l.trim() == "42"))
    })
    .await;

    page.ask(json!({ "cmd": "press", "selector": "#terminal-stop", "key": "Enter" }))
        .await;
    for p in [&mut page, &mut late] {
        let state = page_wait(p, "the terminal's end", |s| {
            s["terminal"]
                .as_str()
                .is_some_and(|t| t.contains("[terminal ended:"))
        })
        .await;
        assert_eq!(state["csp"], json!([]), "CSP violations: {state}");
        let problems = p.state().await["problems"].clone();
        assert_eq!(problems, json!([]), "the page's console: {problems}");
    }
}

/// The page's network goes away while another editor types more ops
/// than the hub keeps (`--history-limit 3`) and the page types too. Back
/// online, the hub cannot catch the page up by ops; the page merges by
/// text (web/src/merge.ts): its offline typing goes out as one op on the
/// hub's text, and every character both sides typed is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_offline_survives_when_the_hub_lost_the_history() {
    let Some(chromium) = chorus_testkit::chromium() else {
        return;
    };
    let test = "browser_offline_merge";
    let hub = Hub::start_in_memory(test, &["--history-limit", "3"]).await;
    let relay = crate::support::relay::Relay::start(hub.port).await;
    let session = "browser-offline";
    let editor = Editor::start(EditorKind::VsCode, &hub, session, "bot").await;
    editor.open(DOC, SEED_TEXT);
    wait_converged(&hub, session, DOC, &[&editor])
        .await
        .unwrap_or_else(|report| panic!("the editor joins: {report}"));
    // The page reaches the hub through the relay, which the test cuts.
    let url = format!("http://127.0.0.1:{}/s/{session}", relay.port);
    let log = hub.log_dir.join("browser.log");
    let mut page = Page::open(&chromium, &url, "web", DOC, &log).await;
    let page_units = units(0);
    let (online, offline) = page_units.split_at(5);
    page.ask(json!({ "cmd": "type", "seed": 5, "units": online, "gap": 0 }))
        .await;
    page_and_editor_agree(&hub, session, &mut page, &editor).await;

    relay.cut();
    page_wait(&mut page, "that it is offline", |s| {
        s["connection"] != "connected"
    })
    .await;
    type_at_random(&editor, 11, units(2)).await;
    page.ask(json!({ "cmd": "type", "seed": 9, "units": offline, "gap": 0 }))
        .await;
    relay.restore();

    let text = page_and_editor_agree(&hub, session, &mut page, &editor).await;
    let typed: String = [units(0), units(2)].concat().concat();
    assert_eq!(
        counts(&text),
        counts(&format!("{SEED_TEXT}{typed}")),
        "both sides' typing is there once: {text:?}"
    );
    let last = page.state().await;
    assert_eq!(
        last["state"]["error"],
        Value::Null,
        "nothing was dropped: {last}"
    );
    assert_eq!(
        last["state"]["merges"], 1,
        "the page merged by text (the hub had no history to send): {last}"
    );
}

/// Waits until the page, the scripted editor and the hub hold one text,
/// the page's OT client synchronized; returns the text.
async fn page_and_editor_agree(
    hub: &Hub,
    session: &str,
    page: &mut Page,
    editor: &Editor,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, hub_text) = hub_text_with_token(&hub.url, session, DOC, None)
            .await
            .expect("the hub's text");
        let browser = page.state().await["state"].clone();
        let editor_text = editor.text(DOC).unwrap_or_default();
        if browser["text"] == hub_text.as_str()
            && browser["synchronized"] == true
            && editor_text == hub_text
        {
            return hub_text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence within {WAIT:?}\nhub: {hub_text:?}\nbrowser: {browser}\n\
             editor: {editor_text:?}\nhub log:\n{}",
            hub.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
