//! Integration tests of shared terminals (`DockerExecutor::open_terminal`) against the
//! real Docker engine: typing, files in `/work`, resize, replay, the hostile programs
//! of `docker.rs` typed into a terminal, the idle and lifetime caps, the slot a terminal
//! holds, and the sweep of a terminal whose hub died. They skip without the engine as
//! `docker.rs` does (`CHORUS_FULL_TESTS=1` makes them fail instead).

use std::time::{Duration, Instant};

use chorus_sandbox::{
    DockerExecutor, Executor, ExecutorConfig, Limits, RunRequest, Terminal, TerminalConfig,
    TerminalEnd, TerminalError, TerminalEvent, TerminalHandle, TerminalSize, TERMINAL_CHUNK_BYTES,
};
use tokio::sync::{mpsc, oneshot};

mod common;
use common::{assert_no_containers, assert_swept, connect, engine, test_limits};

/// Terminals get the build memory; keep it small so that a memory hog trips it fast.
fn terminal_limits() -> Limits {
    Limits {
        build_memory_bytes: 128 * 1024 * 1024,
        ..test_limits()
    }
}

async fn executor_with(terminal: TerminalConfig, max_concurrent: usize) -> Option<DockerExecutor> {
    connect(ExecutorConfig {
        limits: terminal_limits(),
        max_concurrent,
        terminal,
        ..ExecutorConfig::default()
    })
    .await
}

async fn executor() -> Option<DockerExecutor> {
    executor_with(TerminalConfig::default(), 2).await
}

fn files(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect()
}

/// A terminal as a participant sees it: what it typed and what came back.
struct Screen {
    handle: TerminalHandle,
    output: mpsc::Receiver<TerminalEvent>,
    /// Every output byte so far.
    seen: Vec<u8>,
    /// Where the next `expect` starts looking.
    cursor: usize,
    chunks: usize,
    lagged: u64,
    ended: Option<TerminalEnd>,
}

impl Screen {
    fn new(terminal: Terminal) -> Self {
        Screen {
            handle: terminal.handle,
            output: terminal.output,
            seen: Vec::new(),
            cursor: 0,
            chunks: 0,
            lagged: 0,
            ended: None,
        }
    }

    async fn open(executor: &DockerExecutor, session_files: &[(&str, &str)]) -> Self {
        let terminal = executor
            .open_terminal("", &files(session_files), TerminalSize::default())
            .await
            .expect("open terminal");
        Screen::new(terminal)
    }

    /// Types a line and Enter.
    async fn type_line(&self, line: &str) {
        self.handle
            .write(format!("{line}\r"))
            .await
            .expect("terminal takes keystrokes");
    }

    /// Takes one event; false when the channel is closed.
    fn take(&mut self, event: Option<TerminalEvent>) -> bool {
        match event {
            Some(TerminalEvent::Output(bytes)) => {
                assert!(bytes.len() <= TERMINAL_CHUNK_BYTES, "{} bytes", bytes.len());
                self.chunks += 1;
                self.seen.extend_from_slice(&bytes);
            }
            Some(TerminalEvent::Lagged { dropped_bytes }) => self.lagged += dropped_bytes,
            Some(TerminalEvent::Ended(reason)) => self.ended = Some(reason),
            None => return false,
        }
        true
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits until `needle` appears after the previous match.
    async fn expect(&mut self, needle: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let rest = &self.seen[self.cursor..];
            if let Some(at) = rest
                .windows(needle.len())
                .position(|window| window == needle.as_bytes())
            {
                self.cursor += at + needle.len();
                return;
            }
            let event = tokio::time::timeout_at(deadline, self.output.recv()).await;
            match event.map(|event| self.take(event)) {
                Ok(true) => {}
                _ => panic!(
                    "no {needle:?} within {within:?}; the screen ended with {:?} ({:?})",
                    tail(&self.text(), 2000),
                    self.ended
                ),
            }
        }
    }

    /// Waits for a whole output line (the shell's bracketed-paste switch ends the
    /// typed line with `\r`, so a line starts after `\r` or `\n`).
    async fn expect_line(&mut self, line: &str, within: Duration) {
        loop {
            let start = self.cursor;
            self.expect(&format!("{line}\r\n"), within).await;
            let before = self.cursor - line.len() - 2;
            if before == 0 || matches!(self.seen[before - 1], b'\r' | b'\n') {
                return;
            }
            // Part of a longer line (e.g. the typed command): look further.
            assert!(self.cursor > start);
        }
    }

    /// Reads until the terminal reports its end.
    async fn until_end(&mut self, within: Duration) -> TerminalEnd {
        let deadline = tokio::time::Instant::now() + within;
        while self.ended.is_none() {
            let event = tokio::time::timeout_at(deadline, self.output.recv()).await;
            if event.map(|event| self.take(event)) != Ok(true) {
                break;
            }
        }
        self.ended
            .clone()
            .unwrap_or_else(|| panic!("no end within {within:?}: {:?}", tail(&self.text(), 500)))
    }
}

fn tail(text: &str, chars: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(chars)).collect()
}

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn typing_echo_hi_shows_hi_as_nobody_in_work() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    screen.type_line("echo hi").await;
    screen.expect_line("hi", SOON).await;
    screen.type_line("echo \"$(id -u):$(id -g) $PWD\"").await;
    screen.expect_line("65534:65534 /work", SOON).await;
    assert_eq!(screen.handle.close().await, TerminalEnd::Closed);
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn files_are_in_work_and_updates_reach_them_while_written_files_stay() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(
        &executor,
        &[
            ("notes.txt", "first version\n"),
            ("src/app.py", "print(6 * 7)\n"),
        ],
    )
    .await;
    screen.type_line("python3 src/app.py").await;
    screen.expect_line("42", SOON).await;
    screen.type_line("cat notes.txt; echo made > out.txt").await;
    screen.expect_line("first version", SOON).await;

    // A document changes and another appears, in a directory that did not exist.
    screen
        .handle
        .update_files(&files(&[
            ("notes.txt", "second version\n"),
            ("docs/new.md", "# new\n"),
        ]))
        .await
        .expect("update files");
    screen.type_line("cat notes.txt docs/new.md out.txt").await;
    screen
        .expect_line("second version\r\n# new\r\nmade", SOON)
        .await;
    // A bad path is refused before anything reaches the container.
    let refused = screen
        .handle
        .update_files(&files(&[("../escape", "x")]))
        .await;
    assert!(
        matches!(refused, Err(TerminalError::Files(_))),
        "{refused:?}"
    );
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn resize_is_seen_by_stty_size() {
    let Some(executor) = executor().await else {
        return;
    };
    let terminal = executor
        .open_terminal(
            "",
            &[],
            TerminalSize {
                cols: 100,
                rows: 30,
            },
        )
        .await
        .expect("open terminal");
    let mut screen = Screen::new(terminal);
    screen.type_line("stty size").await;
    screen.expect_line("30 100", SOON).await;
    screen
        .handle
        .resize(TerminalSize {
            cols: 132,
            rows: 50,
        })
        .await
        .expect("resize");
    screen.type_line("stty size").await;
    screen.expect_line("50 132", SOON).await;
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_late_joiner_gets_the_recent_output() {
    let Some(executor) = executor_with(
        TerminalConfig {
            replay_bytes: 4096,
            ..TerminalConfig::default()
        },
        2,
    )
    .await
    else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    screen.type_line("seq 1 3000; echo done$((1+1))").await;
    screen.expect_line("done2", SOON).await;
    let replay = String::from_utf8(screen.handle.replay()).expect("utf-8 replay");
    assert!(replay.len() <= 4096, "{} bytes", replay.len());
    assert!(replay.contains("2999\r\n3000\r\ndone2\r\n"), "{replay:?}");
    assert!(!replay.contains("\r\n1\r\n2\r\n"), "{replay:?}");
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_fork_bomb_hits_the_pids_limit_and_the_terminal_recovers() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    // The bomb runs as one job: its subshells have no job control, so they all stay
    // in the job's process group, whose id is `$!` (the job's first process).
    screen
        .type_line("bomb() { bomb | bomb & }; (bomb) & b=$!")
        .await;
    screen
        .expect("Resource temporarily unavailable", Duration::from_secs(20))
        .await;
    // Builtins need no fork: `kill` ends the whole group, and the shell answers.
    screen
        .type_line("kill -9 -- -$b; kill -9 -- -$b; echo calm$((40+2))")
        .await;
    screen.expect("calm42\r\n", SOON).await;
    // PID 1 reaps the orphans, so forking works again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    screen.type_line("/bin/echo forked$((50+5))").await;
    screen
        .expect_line("forked55", Duration::from_secs(20))
        .await;
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed_and_the_shell_goes_on() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    // 300 MiB against the terminal's 128 MiB (no swap).
    screen
        .type_line("python3 -c \"x = b'x' * (300 << 20)\"; echo \"status $?\"")
        .await;
    screen
        .expect("status 137\r\n", Duration::from_secs(20))
        .await;
    screen.type_line("echo still$((1+2))").await;
    screen.expect_line("still3", SOON).await;
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn an_output_flood_is_bounded_coalesced_and_interruptible() {
    let queue = 8;
    let Some(executor) = executor_with(
        TerminalConfig {
            output_queue: queue,
            ..TerminalConfig::default()
        },
        2,
    )
    .await
    else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    screen.type_line("yes").await;
    // Nobody reads for two seconds while `yes` writes as fast as it can.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut queued = 0;
    while let Ok(TerminalEvent::Output(bytes)) = screen.output.try_recv() {
        queued += bytes.len();
    }
    // The channel, then what the coalescer holds: nothing else was kept.
    assert!(
        queued <= queue * TERMINAL_CHUNK_BYTES,
        "{queued} bytes were queued"
    );
    // Reading again: the rest of the held output, then the notice of the gap.
    let deadline = Instant::now() + SOON;
    while screen.lagged == 0 && Instant::now() < deadline {
        let event = screen.output.recv().await;
        screen.take(event);
    }
    assert!(screen.lagged > 1024 * 1024, "dropped {}", screen.lagged);

    // Ctrl-C stops it and the shell answers; output arrived in few, large chunks.
    screen.handle.write(b"\x03".to_vec()).await.expect("ctrl-c");
    screen.type_line("echo over$((20+3))").await;
    screen.expect_line("over23", SOON).await;
    assert!(
        screen.seen.len() / screen.chunks > 1024,
        "{} bytes in {} chunks",
        screen.seen.len(),
        screen.chunks
    );
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn there_is_no_network_inside() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    screen
        .type_line("getent hosts example.com; echo \"dns $?\"")
        .await;
    screen.expect_line("dns 2", SOON).await;
    screen
        .type_line(
            "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 2)\" 2>&1 | tail -n 1",
        )
        .await;
    screen.expect("Network is unreachable", SOON).await;
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn only_work_and_tmp_are_writable() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    screen
        .type_line("touch /etc/x 2>&1; touch /usr/bin/x 2>&1; echo \"root $?\"")
        .await;
    screen.expect("Read-only file system", SOON).await;
    screen.expect_line("root 1", SOON).await;
    screen
        .type_line("touch /work/a /tmp/b && echo \"scratch $((0+0))\"")
        .await;
    screen.expect_line("scratch 0", SOON).await;
    screen.handle.close().await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn an_idle_terminal_ends_and_its_container_goes() {
    let Some(executor) = executor_with(
        TerminalConfig {
            idle_timeout: Duration::from_secs(2),
            ..TerminalConfig::default()
        },
        2,
    )
    .await
    else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    let opened = Instant::now();
    // Activity keeps it open.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        screen.type_line("true").await;
    }
    assert_eq!(screen.handle.ended(), None);
    assert_eq!(screen.until_end(SOON).await, TerminalEnd::IdleTimeout);
    assert!(
        opened.elapsed() >= Duration::from_secs(5),
        "{:?}",
        opened.elapsed()
    );
    assert_eq!(screen.handle.ended(), Some(TerminalEnd::IdleTimeout));
    let refused = screen.handle.write(b"ls\r".to_vec()).await;
    assert!(
        matches!(refused, Err(TerminalError::Ended(TerminalEnd::IdleTimeout))),
        "{refused:?}"
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_terminal_ends_at_its_lifetime_cap_however_busy() {
    let Some(executor) = executor_with(
        TerminalConfig {
            lifetime: Duration::from_secs(3),
            ..TerminalConfig::default()
        },
        2,
    )
    .await
    else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    // A flood keeps the driver as busy as a terminal can.
    screen.type_line("yes").await;
    assert_eq!(screen.until_end(SOON).await, TerminalEnd::LifetimeExceeded);
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn exit_and_close_end_it_and_remove_the_container() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut screen = Screen::open(&executor, &[]).await;
    screen.type_line("exit 3").await;
    assert_eq!(
        screen.until_end(SOON).await,
        TerminalEnd::ShellExited {
            code: Some(3),
            oom_killed: false
        }
    );
    assert_no_containers(&executor).await;

    let mut screen = Screen::open(&executor, &[]).await;
    assert_eq!(executor.list_containers().await.expect("list").len(), 1);
    assert_eq!(screen.handle.close().await, TerminalEnd::Closed);
    assert_no_containers(&executor).await;
    assert_eq!(screen.until_end(SOON).await, TerminalEnd::Closed);

    // Dropping every handle closes it too.
    let screen = Screen::open(&executor, &[]).await;
    let mut output = screen.output;
    drop(screen.handle);
    let mut last = None;
    while let Some(event) = output.recv().await {
        last = Some(event);
    }
    assert_eq!(last, Some(TerminalEvent::Ended(TerminalEnd::Closed)));
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_terminal_holds_a_slot_until_it_closes() {
    let Some(executor) = executor_with(TerminalConfig::default(), 1).await else {
        return;
    };
    let screen = Screen::open(&executor, &[]).await;
    let request = RunRequest {
        main: "main.py".to_owned(),
        files: files(&[("main.py", "print('ran')\n")]),
        ..RunRequest::default()
    };
    let (output, mut chunks) = mpsc::channel(16);
    let (_cancel, cancel) = oneshot::channel();
    let run = tokio::spawn(executor.run(request, output, cancel));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The run waits in the queue behind the terminal.
    assert!(!run.is_finished());
    assert_eq!(executor.list_containers().await.expect("list").len(), 1);
    screen.handle.close().await;
    let status = tokio::time::timeout(SOON, run)
        .await
        .expect("the run starts once the terminal is closed")
        .expect("run task");
    assert_eq!(status.exit_code, Some(0), "{status:?}");
    let mut printed = String::new();
    while let Some(chunk) = chunks.recv().await {
        printed.push_str(&chunk.data);
    }
    assert_eq!(printed, "ran\n");
    assert_no_containers(&executor).await;
}

/// A hub killed with -9 leaves its terminal's container without its driver: the
/// watchdog ends the shell when the hub's connections close, and the next executor's
/// `connect` removes the stopped container.
#[tokio::test]
async fn a_dead_hubs_terminal_stops_and_a_new_executor_sweeps_it() {
    if !chorus_testkit::docker() {
        return;
    }
    // The "hub": its own runtime and engine connections, which go all at once, with no
    // cleanup code running, as when the process dies.
    let name = std::thread::spawn(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let name = runtime.block_on(async {
            let executor = executor().await.expect("executor");
            let mut screen = Screen::open(&executor, &[]).await;
            screen.type_line("echo up$((0+1))").await;
            screen.expect_line("up1", SOON).await;
            let name = screen.handle.container_name().to_owned();
            std::mem::forget(screen);
            std::mem::forget(executor);
            name
        });
        runtime.shutdown_background();
        name
    })
    .join()
    .expect("hub thread");

    let docker = engine().await;
    let state = |inspect: bollard::models::ContainerInspectResponse| {
        inspect.state.and_then(|state| state.running)
    };
    let first = docker.inspect_container(&name, None).await;
    assert!(first.is_ok(), "nothing was left behind to sweep: {first:?}");
    let deadline = Instant::now() + SOON;
    let mut running = true;
    while running && Instant::now() < deadline {
        running = match docker.inspect_container(&name, None).await {
            Ok(inspect) => state(inspect) != Some(false),
            Err(_) => false,
        };
        if running {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(!running, "the orphaned terminal kept running");

    let Some(_executor) = executor().await else {
        return;
    };
    assert_swept(&docker, &name, "the stopped terminal").await;
}
