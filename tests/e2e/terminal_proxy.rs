//! The proxy's side of the shared terminal (issue 16) against a fake hub
//! whose terminal is scripted, so that every message arrives on cue
//! (`terminal.rs` tests the real hub's terminal, which needs Docker):
//! the `chorus.terminal*` commands become the hub's terminal messages; a
//! plugin gets the hub's messages as `chorus/terminal*`; an editor without
//! the extensions (Helix) reads the output in its log, escape sequences
//! gone and a prompt shown though no line break ends it, and types with
//! `chorus.input`, which goes to the terminal when no run is going.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_protocol::wire::{ClientMsg, RunResult, ServerMsg};
use serde_json::{json, Value};

use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::eventually;
use crate::support::fake_hub::{Answer, FakeHub, Room};
use crate::support::hub::log_dir;

const WAIT: Duration = Duration::from_secs(20);
const TERMINAL_ID: u64 = 7;
const RUN_ID: u64 = 3;
/// The fake shell's prompt: bold green `$`, the window's title first.
const PROMPT: &str = "\u{1b}]0;ada@chorus: ~\u{7}\u{1b}[01;32m$\u{1b}[0m ";

/// The fake hub's terminal: who opened it, what it wrote, the line typed.
#[derive(Default)]
struct Shell {
    open: bool,
    next_seq: u64,
    transcript: String,
    typed: String,
}

impl Shell {
    fn write(&mut self, room: &Room, data: &str) {
        room.broadcast(&ServerMsg::TerminalOutput {
            terminal_id: TERMINAL_ID,
            seq: self.next_seq,
            data: data.to_owned(),
            replay: false,
        });
        self.next_seq += 1;
        self.transcript.push_str(data);
    }

    /// `before`, then the prompt: cut inside an escape sequence and, a
    /// moment later, inside its text, so that an editor without the
    /// extensions must wait for the output to pause to log it whole.
    fn prompt(&mut self, room: &Room, before: &str) {
        let (start, rest) = PROMPT.split_at(PROMPT.len() - 8);
        let (dollar, space) = rest.split_at(3);
        self.write(room, &format!("{before}{start}"));
        self.write(room, dollar);
        // Blocks the fake hub's connection task, not the proxy.
        std::thread::sleep(Duration::from_millis(40));
        self.write(room, space);
    }
}

/// A hub with one shared terminal, whose shell echoes what is typed and
/// answers each line with `you said: LINE` (in bold) and its prompt; a
/// `run` starts a run that `stop` ends.
fn scripted_hub() -> Answer {
    let shell = Mutex::new(Shell::default());
    Arc::new(move |room, client_id, msg| {
        let mut shell = shell.lock().unwrap_or_else(|p| p.into_inner());
        let name = room.name_of(client_id);
        match msg {
            ClientMsg::Terminal { cols, rows } => {
                let started = ServerMsg::TerminalStarted {
                    terminal_id: TERMINAL_ID,
                    client_id,
                    name,
                    cols: cols.unwrap_or(80),
                    rows: rows.unwrap_or(24),
                };
                if !shell.open {
                    shell.open = true;
                    room.broadcast(&started);
                    shell.prompt(room, "Chorus terminal\r\n");
                } else {
                    room.send(client_id, &started);
                }
                room.send(
                    client_id,
                    &ServerMsg::TerminalOutput {
                        terminal_id: TERMINAL_ID,
                        seq: shell.next_seq,
                        data: shell.transcript.clone(),
                        replay: true,
                    },
                );
            }
            ClientMsg::TerminalInput { data } => {
                let mut echo = String::new();
                for c in data.chars() {
                    if c == '\r' {
                        let line = std::mem::take(&mut shell.typed);
                        echo.push_str(&format!("\r\n\u{1b}[1myou said:\u{1b}[0m {line}\r\n"));
                        shell.prompt(room, &std::mem::take(&mut echo));
                    } else {
                        shell.typed.push(c);
                        echo.push(c);
                    }
                }
                if !echo.is_empty() {
                    shell.write(room, &echo);
                }
            }
            ClientMsg::TerminalResize { cols, rows } => {
                room.broadcast(&ServerMsg::TerminalResized {
                    terminal_id: TERMINAL_ID,
                    client_id,
                    cols: *cols,
                    rows: *rows,
                });
            }
            ClientMsg::TerminalStop {} => {
                shell.open = false;
                room.broadcast(&ServerMsg::TerminalEnded {
                    terminal_id: TERMINAL_ID,
                    reason: format!("stopped by {name}"),
                });
            }
            ClientMsg::Run { doc, .. } => room.broadcast(&ServerMsg::RunStarted {
                run_id: RUN_ID,
                client_id,
                name,
                doc: doc.clone(),
                plan: String::new(),
            }),
            ClientMsg::Stop {} => room.broadcast(&ServerMsg::RunFinished {
                run_id: RUN_ID,
                result: RunResult {
                    cancelled: true,
                    ..RunResult::default()
                },
            }),
            _ => {}
        }
    })
}

async fn editor(hub: &FakeHub, test: &str, kind: EditorKind, name: &str) -> Editor {
    let mut options = EditorOptions::at(kind, &hub.url, "terminal", name);
    // The plugins declare the extensions; Helix has none to declare.
    options.extensions = kind != EditorKind::Helix;
    let editor = Editor::start_with(options, &log_dir(test)).await;
    editor
        .client()
        .wait_notification("chorus/connection", WAIT, |p| p["state"] == "online")
        .await
        .unwrap_or_else(|| panic!("{name} never online:\n{}", editor.client().log_tail(30)));
    editor
}

/// The frames about terminals and input the hub received, in order.
fn terminal_frames(hub: &FakeHub) -> Vec<ClientMsg> {
    hub.room()
        .received()
        .into_iter()
        .map(|(_, msg)| msg)
        .filter(|msg| {
            matches!(
                msg,
                ClientMsg::Terminal { .. }
                    | ClientMsg::TerminalInput { .. }
                    | ClientMsg::TerminalResize { .. }
                    | ClientMsg::TerminalStop {}
                    | ClientMsg::Input { .. }
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_commands_become_the_hubs_terminal_messages() {
    let hub = FakeHub::start(Arc::new(|_: &Room, _: u64, _: &ClientMsg| {})).await;
    let ada = editor(&hub, "terminal_commands", EditorKind::VsCode, "ada").await;
    let calls = [
        ("chorus.terminal", json!([{ "cols": 100, "rows": 30 }])),
        ("chorus.terminal", json!([])),
        ("chorus.terminal.input", json!([{ "data": "ls\r" }])),
        ("chorus.terminal.input", json!(["\u{0}\u{3}"])),
        (
            "chorus.terminal.resize",
            json!([{ "cols": 120, "rows": 40 }]),
        ),
        ("chorus.terminal.stop", json!([])),
    ];
    for (name, arguments) in calls {
        let answer = ada.execute(name, arguments).await;
        assert_eq!(answer, Ok(Value::Null), "{name}");
    }
    for (name, arguments, why) in [
        (
            "chorus.terminal.resize",
            json!([{ "cols": 0, "rows": 40 }]),
            "at least 1",
        ),
        ("chorus.terminal.input", json!([]), "keystrokes"),
        ("chorus.terminal", json!(["big"]), "cols"),
    ] {
        let refused = ada.execute(name, arguments).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains(why)),
            "{name}: {refused:?}"
        );
    }
    let expected = vec![
        ClientMsg::Terminal {
            cols: Some(100),
            rows: Some(30),
        },
        ClientMsg::Terminal {
            cols: None,
            rows: None,
        },
        ClientMsg::TerminalInput {
            data: "ls\r".into(),
        },
        ClientMsg::TerminalInput {
            data: "\u{0}\u{3}".into(),
        },
        ClientMsg::TerminalResize {
            cols: 120,
            rows: 40,
        },
        ClientMsg::TerminalStop {},
    ];
    hub.wait_received("the six terminal messages", WAIT, |received| {
        received.len() >= expected.len()
    })
    .await;
    assert_eq!(terminal_frames(&hub), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_gets_the_terminal_as_chorus_notifications() {
    let hub = FakeHub::start(scripted_hub()).await;
    let ada = editor(&hub, "terminal_plugin", EditorKind::VsCode, "ada").await;
    let bob = editor(&hub, "terminal_plugin", EditorKind::Neovim, "bob").await;
    let answer = ada
        .execute("chorus.terminal", json!([{ "cols": 90, "rows": 20 }]))
        .await;
    assert_eq!(answer, Ok(Value::Null));
    for editor in [&ada, &bob] {
        let started = editor
            .client()
            .wait_notification("chorus/terminalStarted", WAIT, |_| true)
            .await
            .unwrap_or_else(|| panic!("{}: no chorus/terminalStarted", editor.name));
        assert_eq!(
            started,
            json!({ "terminalId": TERMINAL_ID, "clientId": 1, "name": "ada", "cols": 90, "rows": 20 })
        );
    }
    // The replay is ada's alone, and repeats the two live chunks.
    let replay = ada
        .client()
        .wait_notification("chorus/terminalOutput", WAIT, |p| p["replay"] == true)
        .await
        .expect("ada's replay");
    assert_eq!(replay["seq"], 3, "{replay}");
    assert_eq!(replay["data"], format!("Chorus terminal\r\n{PROMPT}"));
    bob.execute("chorus.terminal.input", json!(["ls\r"]))
        .await
        .expect("chorus.terminal.input");
    for editor in [&ada, &bob] {
        let echo = editor
            .client()
            .wait_notification("chorus/terminalOutput", WAIT, |p| {
                p["seq"] == 3 && p.get("replay").is_none()
            })
            .await
            .unwrap_or_else(|| panic!("{}: no echo", editor.name));
        // As the terminal wrote it, escape sequences and all.
        let (prompt_start, _) = PROMPT.split_at(PROMPT.len() - 8);
        assert_eq!(
            echo,
            json!({
                "terminalId": TERMINAL_ID,
                "seq": 3,
                "data": format!("ls\r\n\u{1b}[1myou said:\u{1b}[0m ls\r\n{prompt_start}"),
            })
        );
    }
    bob.execute(
        "chorus.terminal.resize",
        json!([{ "cols": 132, "rows": 43 }]),
    )
    .await
    .expect("chorus.terminal.resize");
    ada.execute("chorus.terminal.stop", json!([]))
        .await
        .expect("chorus.terminal.stop");
    let expected = [
        (
            "chorus/terminalResized",
            json!({ "terminalId": TERMINAL_ID, "clientId": 2, "cols": 132, "rows": 43 }),
        ),
        (
            "chorus/terminalEnded",
            json!({ "terminalId": TERMINAL_ID, "reason": "stopped by ada" }),
        ),
    ];
    for editor in [&ada, &bob] {
        for (method, params) in &expected {
            let got = editor
                .client()
                .wait_notification(method, WAIT, |_| true)
                .await;
            assert_eq!(got.as_ref(), Some(params), "{}: {method}", editor.name);
        }
        // The plugin draws the terminal: nothing of it in the log.
        let logged: Vec<String> = editor
            .log_lines()
            .into_iter()
            .filter(|line| line.contains("terminal"))
            .collect();
        assert!(logged.is_empty(), "{}: {logged:?}", editor.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_without_extensions_reads_the_terminal_in_its_log_and_types_with_chorus_input() {
    let hub = FakeHub::start(scripted_hub()).await;
    let ada = editor(&hub, "terminal_log", EditorKind::VsCode, "ada").await;
    let cy = editor(&hub, "terminal_log", EditorKind::Helix, "cy").await;
    ada.execute("chorus.terminal", json!([]))
        .await
        .expect("chorus.terminal");
    cy.wait_message(
        "window/showMessage",
        "ada opened the shared terminal: type with :lsp-workspace-command chorus.input",
        WAIT,
    )
    .await;
    cy.wait_log_line("[terminal · ada] Chorus terminal", WAIT)
        .await;
    // The prompt ends no line, yet it shows once the output pauses.
    cy.wait_log_line("[terminal · ada] $ ", WAIT).await;

    let answer = cy.execute("chorus.input", json!(["echo hi"])).await;
    assert_eq!(answer, Ok(json!({ "requested": "input" })));
    cy.wait_log_line("[terminal · ada] $ echo hi", WAIT).await;
    cy.wait_log_line("[terminal · ada] you said: echo hi", WAIT)
        .await;
    // The next prompt, whole, before typing again: typing would log the
    // part of it come so far.
    let prompts = || {
        let lines = cy.log_lines();
        lines.iter().filter(|l| *l == "[terminal · ada] $ ").count()
    };
    assert!(
        eventually(WAIT, || prompts() == 2).await,
        "{:#?}",
        cy.log_lines()
    );
    let received = terminal_frames(&hub);
    assert_eq!(
        received.last(),
        Some(&ClientMsg::TerminalInput {
            data: "echo hi\r".into()
        }),
        "{received:?}"
    );
    // Ctrl-C for an interrupt.
    cy.execute("chorus.input", json!([{ "interrupt": true }]))
        .await
        .expect("chorus.input interrupt");
    hub.wait_received("the interrupt", WAIT, |received| {
        received.iter().any(|(_, msg)| {
            *msg == ClientMsg::TerminalInput {
                data: "\u{3}".into(),
            }
        })
    })
    .await;

    ada.execute("chorus.terminal.stop", json!([]))
        .await
        .expect("stop");
    cy.wait_message(
        "window/showMessage",
        "the shared terminal ended: stopped by ada",
        WAIT,
    )
    .await;
    let lines = cy.log_lines();
    let terminal: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("[terminal"))
        .collect();
    for line in &terminal {
        assert!(
            !line.contains('\u{1b}') && !line.contains('\r') && !line.contains('\u{7}'),
            "an escape or control character was logged: {line:?}"
        );
    }
    // Each line once, whole: the prompt logged alone is logged again only
    // with what was typed after it, and the next prompt before the end.
    let expected: Vec<String> = [
        "opened (80×24)",
        "Chorus terminal",
        "$ ",
        "$ echo hi",
        "you said: echo hi",
        "$ ",
        "ended: stopped by ada",
    ]
    .iter()
    .map(|line| format!("[terminal · ada] {line}"))
    .collect();
    assert_eq!(terminal, expected.iter().collect::<Vec<_>>());
    // The other editor, with the extensions, logs none of it.
    assert!(
        !ada.log_lines().iter().any(|l| l.starts_with("[terminal")),
        "{:?}",
        ada.log_lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_input_goes_to_the_run_while_one_is_going_else_to_the_open_terminal() {
    let hub = FakeHub::start(scripted_hub()).await;
    let cy = editor(&hub, "terminal_input_routing", EditorKind::Helix, "cy").await;
    cy.open("main.py", "input()\n");
    let send = |text: &'static str| {
        let cy = &cy;
        async move {
            cy.execute("chorus.input", json!([text]))
                .await
                .expect("chorus.input")
        }
    };
    // Neither a run nor a terminal: for the hub to refuse, as always.
    send("one").await;
    cy.execute("chorus.terminal", json!([]))
        .await
        .expect("open");
    cy.wait_message("window/showMessage", "opened the shared terminal", WAIT)
        .await;
    send("two").await;
    cy.execute("chorus.run", json!([cy.uri("main.py")]))
        .await
        .expect("chorus.run");
    cy.wait_message("window/logMessage", "[run 3 · cy] started", WAIT)
        .await;
    send("three").await;
    cy.execute("chorus.stop", json!([])).await.expect("stop");
    cy.wait_message("window/showMessage", "stopped after", WAIT)
        .await;
    send("four").await;
    hub.wait_received("the fourth input", WAIT, |received| {
        received.iter().any(|(_, msg)| {
            *msg == ClientMsg::TerminalInput {
                data: "four\r".into(),
            }
        })
    })
    .await;
    let input = |text: &str| ClientMsg::Input {
        text: Some(format!("{text}\n")),
        eof: false,
        interrupt: false,
    };
    let typed = |data: &str| ClientMsg::TerminalInput {
        data: format!("{data}\r"),
    };
    let frames: Vec<ClientMsg> = terminal_frames(&hub)
        .into_iter()
        .filter(|msg| !matches!(msg, ClientMsg::Terminal { .. }))
        .collect();
    assert_eq!(
        frames,
        [input("one"), typed("two"), input("three"), typed("four")]
    );
}
