//! The session's shared terminal through a real hub and a real Docker
//! engine, at the protocol level: a REPL shared by two participants, late
//! joiners, read-only participants, files kept current, the idle timeout,
//! stop, and a flood. The editors' views are tested in `neovim_terminal.rs`
//! and the VS Code e2e.

use std::time::Duration;

use serde_json::{json, Value};

use crate::access::{create_session, start_token_hub};
use crate::support::hub::{log_dir, Hub};
use crate::support::HubClient;

const WAIT: Duration = Duration::from_secs(60);

/// What one participant's view of the terminal has shown.
#[derive(Default)]
struct Screen {
    text: String,
    /// `seq` of the next live output this view takes.
    next_seq: Option<u64>,
    largest_frame: usize,
    frames: usize,
}

impl Screen {
    /// Takes one frame if it is terminal output, as a view would: the
    /// replay, then live output from the replay's `seq` on.
    fn take(&mut self, frame: &Value) {
        if frame["type"] != "terminalOutput" {
            return;
        }
        let seq = frame["seq"].as_u64().expect("seq");
        let data = frame["data"].as_str().expect("data");
        if frame["replay"] == true {
            self.text = data.to_owned();
            self.next_seq = Some(seq);
        } else if self.next_seq.is_none_or(|next| seq >= next) {
            if let Some(next) = self.next_seq {
                assert_eq!(seq, next, "live output skipped a seq");
            }
            self.text.push_str(data);
            self.next_seq = Some(seq + 1);
        }
        self.largest_frame = self.largest_frame.max(data.len());
        self.frames += 1;
    }
}

/// Reads frames into `screen` until its text holds `needle` (or `stop`
/// says so of a frame); returns the frames of other types it read.
async fn read_until(
    client: &mut HubClient,
    screen: &mut Screen,
    mut stop: impl FnMut(&Screen, &Value) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut others = Vec::new();
    for frame in std::mem::take(&mut client.seen) {
        screen.take(&frame);
        if stop(screen, &frame) {
            return others;
        }
        others.push(frame);
    }
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "terminal never got there; screen so far: {:?}",
            tail(&screen.text)
        );
        let frame = match client.recv().await {
            Ok(frame) => frame,
            Err(err) if err.starts_with("no frame") => continue,
            Err(err) => panic!("{err}; screen so far: {:?}", tail(&screen.text)),
        };
        screen.take(&frame);
        if stop(screen, &frame) {
            return others;
        }
        if frame["type"] != "terminalOutput" {
            others.push(frame);
        }
    }
}

async fn wait_text(client: &mut HubClient, screen: &mut Screen, needle: &str) -> Vec<Value> {
    read_until(client, screen, |screen, _| screen.text.contains(needle)).await
}

async fn wait_frame(client: &mut HubClient, screen: &mut Screen, kind: &str) -> Value {
    let mut found = None;
    read_until(client, screen, |_, frame| {
        let hit = frame["type"] == kind;
        if hit {
            found = Some(frame.clone());
        }
        hit
    })
    .await;
    found.expect("found")
}

fn tail(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars[chars.len().saturating_sub(600)..].iter().collect()
}

async fn keys(client: &mut HubClient, data: &str) {
    client
        .send_json(&json!({ "type": "terminalInput", "data": data }))
        .await;
}

/// Opens the terminal and waits for its prompt (bash's `$ ` in /work).
async fn open_terminal(client: &mut HubClient, screen: &mut Screen) -> Value {
    client
        .send_json(&json!({ "type": "terminal", "cols": 100, "rows": 30 }))
        .await;
    let started = wait_frame(client, screen, "terminalStarted").await;
    wait_text(client, screen, "$ ").await;
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_share_a_python_repl() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("two_participants_share_a_python_repl").await;
    let (mut ada, _) = HubClient::join(&hub.url, "repl", "ada").await;
    let (mut bob, bob_welcome) = HubClient::join(&hub.url, "repl", "bob").await;
    let (mut ada_screen, mut bob_screen) = (Screen::default(), Screen::default());
    let started = open_terminal(&mut ada, &mut ada_screen).await;
    assert_eq!(started["name"], "ada");
    // Bob hears of it without asking, then asks to see it (his view).
    let told = wait_frame(&mut bob, &mut bob_screen, "terminalStarted").await;
    assert_eq!(told["terminalId"], started["terminalId"]);
    bob.send_json(&json!({ "type": "terminal", "cols": 90, "rows": 20 }))
        .await;
    keys(&mut ada, "python3 -q\r").await;
    wait_text(&mut ada, &mut ada_screen, ">>> ").await;
    keys(&mut ada, "x = 2\r").await;
    wait_text(&mut bob, &mut bob_screen, "x = 2").await;
    keys(&mut bob, "print(x * 21)\r").await;
    let answered = |screen: &Screen| {
        screen
            .text
            .find("print(x * 21)")
            .is_some_and(|at| screen.text[at..].contains("\n42\r\n"))
    };
    let mut seen_by_ada = Vec::new();
    for (client, screen, seen) in [
        (&mut ada, &mut ada_screen, Some(&mut seen_by_ada)),
        (&mut bob, &mut bob_screen, None),
    ] {
        let others = read_until(client, screen, |screen, _| answered(screen)).await;
        if let Some(seen) = seen {
            *seen = others;
        }
    }
    // Bob typed last: the terminal took his view's size, and said so.
    let resized = match seen_by_ada.iter().find(|f| f["type"] == "terminalResized") {
        Some(frame) => frame.clone(),
        None => wait_frame(&mut ada, &mut ada_screen, "terminalResized").await,
    };
    assert_eq!(
        (resized["cols"].as_u64(), resized["rows"].as_u64()),
        (Some(90), Some(20))
    );
    assert_eq!(resized["clientId"], bob_welcome["clientId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_sees_recent_output_then_live_output() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("a_late_joiner_sees_recent_output").await;
    let (mut ada, _) = HubClient::join(&hub.url, "late", "ada").await;
    let mut ada_screen = Screen::default();
    open_terminal(&mut ada, &mut ada_screen).await;
    keys(&mut ada, "echo before-$((6 * 7))\r").await;
    wait_text(&mut ada, &mut ada_screen, "before-42").await;

    let (mut cy, _) = HubClient::join(&hub.url, "late", "cy").await;
    let mut cy_screen = Screen::default();
    let started = wait_frame(&mut cy, &mut cy_screen, "terminalStarted").await;
    assert_eq!(started["name"], "ada");
    wait_text(&mut cy, &mut cy_screen, "before-42").await;
    keys(&mut cy, "echo after-$((7 * 7))\r").await;
    for (client, screen) in [(&mut ada, &mut ada_screen), (&mut cy, &mut cy_screen)] {
        wait_text(client, screen, "after-49").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_participant_watches_but_cannot_type_or_stop() {
    if !chorus_testkit::docker() {
        return;
    }
    let test = "terminal_read_only";
    let data = log_dir(&format!("{test}-data"));
    let tokens = create_session(&["--data", data.to_str().unwrap()], "watched").await;
    let hub = start_token_hub(test, &data).await;
    let join = |token: String, name: &'static str| {
        let url = hub.url.clone();
        async move {
            let mut client = HubClient::connect(&url).await;
            client
                .send_json(&json!({
                    "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
                    "session": "watched", "name": name, "token": token,
                }))
                .await;
            let welcome = client.expect_type("welcome").await;
            (client, welcome)
        }
    };
    let (mut viewer, welcome) = join(tokens.read_only.clone(), "viewer").await;
    assert_eq!(welcome["role"], "readOnly");
    let mut viewer_screen = Screen::default();
    viewer.send_json(&json!({ "type": "terminal" })).await;
    let refused = viewer.wait_type("terminalStarted").await.unwrap_err();
    assert!(
        refused.contains("read_only") && refused.contains("cannot open"),
        "{refused}"
    );

    let (mut ada, _) = join(tokens.join.clone(), "ada").await;
    let mut ada_screen = Screen::default();
    open_terminal(&mut ada, &mut ada_screen).await;
    keys(&mut ada, "echo shared-$((40 + 2))\r").await;
    wait_text(&mut viewer, &mut viewer_screen, "shared-42").await;
    keys(&mut viewer, "touch /work/by-viewer\r").await;
    let error = wait_frame(&mut viewer, &mut viewer_screen, "error").await;
    assert_eq!(error["code"], "read_only");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("keystrokes do not reach"));
    viewer.send_json(&json!({ "type": "terminalStop" })).await;
    let error = wait_frame(&mut viewer, &mut viewer_screen, "error").await;
    assert_eq!(error["code"], "read_only");
    // Nothing of the viewer's reached the shell.
    keys(&mut ada, "ls /work; echo listed-$((1 + 1))\r").await;
    wait_text(&mut ada, &mut ada_screen, "listed-2").await;
    assert!(
        !ada_screen.text.contains("by-viewer"),
        "{}",
        tail(&ada_screen.text)
    );
    ada.ping(1).await.expect("the terminal is still going");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_has_the_sessions_files_as_they_are_edited() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("the_terminal_has_the_sessions_files").await;
    let (mut ada, _) = HubClient::join(&hub.url, "files", "ada").await;
    ada.open("src/greet.py", "print('v1')\n").await;
    let mut screen = Screen::default();
    open_terminal(&mut ada, &mut screen).await;
    keys(&mut ada, "python3 src/greet.py\r").await;
    wait_text(&mut ada, &mut screen, "\rv1\r\n").await;
    // An edit: `v1` becomes `v2` (delete one character, insert one).
    ada.send_json(&json!({ "type": "op", "doc": "src/greet.py", "rev": 0, "op": [8, -1, "2", 3] }))
        .await;
    ada.expect_type("ack").await;
    // The debounce is a quarter second; the file is there before the
    // next command is typed by anyone human, and here it is polled.
    keys(
        &mut ada,
        "until grep -q v2 src/greet.py; do sleep 0.1; done; python3 src/greet.py\r",
    )
    .await;
    wait_text(&mut ada, &mut screen, "\rv2\r\n").await;
    // What the shell writes stays in the container, not in the session.
    keys(
        &mut ada,
        "echo local > notes.txt && echo wrote-$((2 * 2))\r",
    )
    .await;
    wait_text(&mut ada, &mut screen, "wrote-4").await;
    ada.send_json(&json!({ "type": "files" })).await;
    let files = ada.expect_type("files").await;
    let paths: Vec<&str> = files["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src/greet.py"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_the_idle_timeout_end_it_for_everyone_and_remove_the_container() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start_in_memory("terminal_stop_and_idle", &["--terminal-idle-secs", "3"]).await;
    let (mut ada, _) = HubClient::join(&hub.url, "ending", "ada").await;
    let (mut bob, _) = HubClient::join(&hub.url, "ending", "bob").await;
    let (mut ada_screen, mut bob_screen) = (Screen::default(), Screen::default());
    open_terminal(&mut ada, &mut ada_screen).await;
    let container = container_of(&hub);
    assert!(container_exists(&container).await, "{container} is running");
    bob.send_json(&json!({ "type": "terminalStop" })).await;
    for (client, screen) in [(&mut ada, &mut ada_screen), (&mut bob, &mut bob_screen)] {
        let ended = wait_frame(client, screen, "terminalEnded").await;
        assert_eq!(ended["reason"], "stopped by bob");
    }
    assert!(
        !container_exists(&container).await,
        "{container} was removed"
    );
    bob.send_json(&json!({ "type": "terminalInput", "data": "ls\r" }))
        .await;
    let error = wait_frame(&mut bob, &mut bob_screen, "error").await;
    assert_eq!(error["code"], "no_terminal");

    // A new one, left alone: the idle timeout ends it.
    let mut screen = Screen::default();
    open_terminal(&mut ada, &mut screen).await;
    let ended = wait_frame(&mut ada, &mut screen, "terminalEnded").await;
    assert!(
        ended["reason"].as_str().unwrap().contains("idle"),
        "{ended}"
    );
    let container = container_of(&hub);
    assert!(
        !container_exists(&container).await,
        "{container} was removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_flood_comes_in_bounded_frames_and_the_session_keeps_serving() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("terminal_output_flood").await;
    let (mut ada, _) = HubClient::join(&hub.url, "flood", "ada").await;
    let mut screen = Screen::default();
    open_terminal(&mut ada, &mut screen).await;
    // Output right after a flood may be dropped with it: the markers wait
    // for the queues to drain.
    keys(
        &mut ada,
        "yes chorus-flood-line | head -c 30000000; sleep 3; echo flood-done-$((3*3))\r",
    )
    .await;
    wait_text(&mut ada, &mut screen, "flood-done-9").await;
    assert!(
        screen.largest_frame <= chorus_sandbox::TERMINAL_CHUNK_BYTES,
        "largest output frame {} bytes",
        screen.largest_frame
    );
    // 30 MB at the hub's relay rate would take half a minute: most of it
    // was dropped, and the view was told.
    assert!(
        screen.text.len() < 20_000_000,
        "{} bytes relayed",
        screen.text.len()
    );
    assert!(
        screen.text.contains("bytes of output dropped"),
        "{}",
        tail(&screen.text)
    );
    // Interrupt works, and the shell and the session are alive.
    keys(&mut ada, "yes\r").await;
    wait_text(&mut ada, &mut screen, "y\r\ny\r\n").await;
    keys(&mut ada, "\u{3}").await;
    keys(&mut ada, "sleep 3; echo alive-$((5*5))\r").await;
    wait_text(&mut ada, &mut screen, "alive-25").await;
    ada.ping(7).await.expect("the session answers");
}

/// The container of the terminal the hub opened last, from its log.
fn container_of(hub: &Hub) -> String {
    let log = std::fs::read_to_string(&hub.log_path).expect("hub log");
    log.lines()
        .rev()
        .filter(|line| line.contains("terminal open"))
        .find_map(|line| {
            let at = line.find("container=")? + "container=".len();
            Some(
                line[at..]
                    .split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| panic!("no terminal in the hub's log"))
}

async fn container_exists(name: &str) -> bool {
    let out = tokio::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("name=^{name}$")])
        .output()
        .await
        .expect("docker ps");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_outlives_a_reconnect_but_not_an_empty_session() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start_in_memory("terminal_orphan", &["--terminal-orphan-secs", "4"]).await;
    let (mut ada, _) = HubClient::join(&hub.url, "orphan", "ada").await;
    let mut screen = Screen::default();
    open_terminal(&mut ada, &mut screen).await;
    keys(&mut ada, "export MARK=kept-$((8*8))\r").await;
    let container = container_of(&hub);
    ada.close().await;
    // Back within the grace: the same shell.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut ada, _) = HubClient::join(&hub.url, "orphan", "ada").await;
    let mut screen = Screen::default();
    wait_frame(&mut ada, &mut screen, "terminalStarted").await;
    keys(&mut ada, "echo $MARK\r").await;
    wait_text(&mut ada, &mut screen, "kept-64").await;
    ada.close().await;
    // Gone for longer: the terminal ends and its container goes.
    let mut gone = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !container_exists(&container).await {
            gone = true;
            break;
        }
    }
    assert!(gone, "{container} outlived the empty session");
    let (mut ada, _) = HubClient::join(&hub.url, "orphan", "ada").await;
    ada.ping(1).await.expect("joined");
    assert!(
        !ada.seen
            .iter()
            .any(|frame| frame["type"] == "terminalStarted"),
        "no terminal is shown to the next joiner: {:?}",
        ada.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hubs_terminal_is_removed() {
    if !chorus_testkit::docker() {
        return;
    }
    let mut hub = Hub::start("terminal_hub_killed").await;
    let (mut ada, _) = HubClient::join(&hub.url, "killed", "ada").await;
    let mut screen = Screen::default();
    open_terminal(&mut ada, &mut screen).await;
    let container = container_of(&hub);
    hub.kill().await;
    // The watchdog stops it; the next hub's executor sweeps what is left.
    let _next = Hub::start_with(
        "terminal_hub_killed",
        "hub-2.log",
        &["--listen", "127.0.0.1:0", "--in-memory", "--open"],
    )
    .await;
    // Within a periodic sweep (30 s) at worst.
    let mut gone = false;
    for _ in 0..100 {
        if !container_exists(&container).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(gone, "{container} outlived its hub");
}
