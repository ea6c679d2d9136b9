//! Integration tests of `DockerExecutor` against the real Docker engine.
//!
//! They need the engine and the local image: `sandbox/scripts/ensure-docker.sh` prepares
//! both (the project's test script runs it first, and there a missing engine fails every
//! test). Under plain `cargo test` without them, each test returns at once and the binary
//! prints one line saying so (chorus-testkit). Limits are small so the whole file runs in well
//! under a minute on two cores. Every test also checks that its executor left no
//! container behind (containers are found by this executor's instance label).

use std::time::{Duration, Instant};

use chorus_sandbox::{
    Chunk, DockerExecutor, Executor, Limits, RunDiagnosticSeverity, RunInput, RunMode, RunRequest,
    RunStatus, Stream,
};
use tokio::sync::{mpsc, oneshot};

mod common;
use common::{assert_no_containers, assert_swept, engine, executor_with, test_limits};

async fn executor() -> Option<DockerExecutor> {
    executor_with(test_limits(), 2).await
}

fn request(main: &str, files: &[(&str, &str)]) -> RunRequest {
    RunRequest {
        main: main.to_owned(),
        files: files
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect(),
        ..RunRequest::default()
    }
}

fn python(source: &str) -> RunRequest {
    request("main.py", &[("main.py", source)])
}

/// What a finished run produced.
struct Outcome {
    status: RunStatus,
    chunks: Vec<Chunk>,
    elapsed: Duration,
}

impl Outcome {
    fn text(&self, stream: Stream) -> String {
        self.chunks
            .iter()
            .filter(|chunk| chunk.stream == stream)
            .map(|chunk| chunk.data.as_str())
            .collect()
    }

    fn stdout(&self) -> String {
        self.text(Stream::Stdout)
    }

    fn stderr(&self) -> String {
        self.text(Stream::Stderr)
    }
}

async fn run(executor: &DockerExecutor, request: RunRequest) -> Outcome {
    let (sender, mut receiver) = mpsc::channel(64);
    let (_cancel_sender, cancel) = oneshot::channel();
    let started = Instant::now();
    let run = tokio::spawn(executor.run(request, sender, cancel));
    let mut chunks = Vec::new();
    while let Some(chunk) = receiver.recv().await {
        chunks.push(chunk);
    }
    let status = run.await.expect("run task panicked");
    Outcome {
        status,
        chunks,
        elapsed: started.elapsed(),
    }
}

fn assert_success(outcome: &Outcome) {
    assert_eq!(
        outcome.status.exit_code,
        Some(0),
        "status {:?}, stdout {:?}, stderr {:?}",
        outcome.status,
        outcome.stdout(),
        outcome.stderr()
    );
    assert!(!outcome.status.timed_out && !outcome.status.truncated && !outcome.status.oom_killed);
    assert_eq!(outcome.status.error, None);
}

#[tokio::test]
async fn hello_world_in_every_language() {
    // rustc shares the run's limits; on a busy two-core machine give it some headroom.
    let Some(executor) = executor_with(
        Limits {
            wall_clock: Duration::from_secs(20),
            memory_bytes: 256 * 1024 * 1024,
            ..test_limits()
        },
        2,
    )
    .await
    else {
        return;
    };
    let cases = [
        (
            "main.rs",
            "fn main() { println!(\"hello from rust\"); }\n",
            "rust",
        ),
        ("main.py", "print('hello from python')\n", "python"),
        (
            "main.js",
            "console.log('hello from javascript');\n",
            "javascript",
        ),
        (
            "main.c",
            "#include <stdio.h>\nint main(void) { puts(\"hello from c\"); return 0; }\n",
            "c",
        ),
        ("main.sh", "echo hello from shell\n", "shell"),
    ];
    for (main, source, language) in cases {
        let outcome = run(&executor, request(main, &[(main, source)])).await;
        assert_success(&outcome);
        assert_eq!(
            outcome.stdout(),
            format!("hello from {language}\n"),
            "{language}"
        );
    }
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn multi_file_python_imports_a_sibling_module() {
    let Some(executor) = executor().await else {
        return;
    };
    let request = request(
        "src/main.py",
        &[
            (
                "src/main.py",
                "from helper import greet\nprint(greet('chorus'))\n",
            ),
            (
                "src/helper.py",
                "def greet(name):\n    return f'hi {name}'\n",
            ),
            ("README.md", "not code\n"),
        ],
    );
    let outcome = run(&executor, request).await;
    assert_success(&outcome);
    assert_eq!(outcome.stdout(), "hi chorus\n");
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn stdin_args_exit_code_and_utf8() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut request = python(
        "import sys\n\
         data = sys.stdin.read()\n\
         print('args', sys.argv[1:])\n\
         print('stdin', data.upper())\n\
         print('héllo ✓ 😀')\n\
         sys.exit(3)\n",
    );
    request.stdin = Some("line one\nline two\n".to_owned());
    request.args = vec!["--name".to_owned(), "two words".to_owned()];
    let outcome = run(&executor, request).await;
    assert_eq!(outcome.status.exit_code, Some(3), "{:?}", outcome.status);
    assert_eq!(
        outcome.stdout(),
        "args ['--name', 'two words']\nstdin LINE ONE\nLINE TWO\n\nhéllo ✓ 😀\n"
    );
    assert_no_containers(&executor).await;
}

/// Runs `request` with its input open; each step waits until the stdout so far contains
/// its text, then sends its inputs. The input sender lives until the run ends (no
/// implicit end-of-file).
async fn run_interactive(
    executor: &DockerExecutor,
    request: RunRequest,
    steps: Vec<(&str, Vec<RunInput>)>,
) -> Outcome {
    let (sender, mut receiver) = mpsc::channel(64);
    let (_cancel_sender, cancel) = oneshot::channel();
    let (input, input_receiver) = mpsc::channel(64);
    let started = Instant::now();
    let run = tokio::spawn(executor.run_with_input(request, sender, cancel, input_receiver));
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut steps = steps.into_iter().peekable();
    while let Some(chunk) = receiver.recv().await {
        chunks.push(chunk);
        let stdout: String = chunks
            .iter()
            .filter(|chunk| chunk.stream == Stream::Stdout)
            .map(|chunk| chunk.data.as_str())
            .collect();
        while let Some((_, inputs)) = steps.next_if(|(wait_for, _)| stdout.contains(wait_for)) {
            for item in inputs {
                input.send(item).await.expect("the run takes input");
            }
        }
    }
    let status = run.await.expect("run task panicked");
    drop(input);
    Outcome {
        status,
        chunks,
        elapsed: started.elapsed(),
    }
}

fn text(text: &str) -> RunInput {
    RunInput::Text(text.to_owned())
}

/// `input()` is answered by live input, after the request's own `stdin` (sent first).
#[tokio::test]
async fn input_answers_a_program_that_asks() {
    let Some(executor) = executor().await else {
        return;
    };
    let mut request = python(
        "first = input()\n\
         name = input('name? ')\n\
         print('hi', name, 'after', first)\n",
    );
    request.stdin = Some("one\n".to_owned());
    let outcome = run_interactive(&executor, request, vec![("name? ", vec![text("Ada\n")])]).await;
    assert_success(&outcome);
    assert_eq!(outcome.stdout(), "name? hi Ada after one\n");
    assert!(
        outcome.elapsed < Duration::from_secs(4),
        "{:?}",
        outcome.elapsed
    );
    assert_no_containers(&executor).await;
}

/// An end-of-file ends `sys.stdin.read()` with what was sent.
#[tokio::test]
async fn eof_ends_a_read_of_all_stdin() {
    let Some(executor) = executor().await else {
        return;
    };
    let request = python(
        "import sys\n\
         print('ready', flush=True)\n\
         data = sys.stdin.read()\n\
         print('got', repr(data))\n",
    );
    let steps = vec![("ready", vec![text("abc\n"), text("déf"), RunInput::Eof])];
    let outcome = run_interactive(&executor, request, steps).await;
    assert_success(&outcome);
    assert_eq!(outcome.stdout(), "ready\ngot 'abc\\ndéf'\n");
    assert_no_containers(&executor).await;
}

/// An interrupt is SIGINT to the program: Python raises `KeyboardInterrupt`, and a
/// second interrupt reaches it too.
#[tokio::test]
async fn interrupt_raises_keyboard_interrupt_in_the_program() {
    let Some(executor) = executor().await else {
        return;
    };
    let request = python(
        "import time\n\
         for attempt in (1, 2):\n\
         \x20   try:\n\
         \x20       print('waiting', attempt, flush=True)\n\
         \x20       time.sleep(30)\n\
         \x20   except KeyboardInterrupt:\n\
         \x20       print('interrupted', attempt, flush=True)\n",
    );
    let steps = vec![
        ("waiting 1", vec![RunInput::Interrupt]),
        ("waiting 2", vec![RunInput::Interrupt]),
    ];
    let outcome = run_interactive(&executor, request, steps).await;
    assert_success(&outcome);
    assert_eq!(
        outcome.stdout(),
        "waiting 1\ninterrupted 1\nwaiting 2\ninterrupted 2\n"
    );
    assert!(
        outcome.elapsed < Duration::from_secs(4),
        "{:?}",
        outcome.elapsed
    );
    assert_no_containers(&executor).await;
}

/// Input past the run's cap never reaches the program and says why; input within it
/// still does.
#[tokio::test]
async fn input_past_the_cap_is_refused_with_a_message() {
    let Some(executor) = executor_with(
        Limits {
            input_bytes: 8,
            ..test_limits()
        },
        2,
    )
    .await
    else {
        return;
    };
    let request = python(
        "print('ready', flush=True)\n\
         print('got', input())\n",
    );
    let steps = vec![("ready", vec![text("far too long\n"), text("short\n")])];
    let outcome = run_interactive(&executor, request, steps).await;
    assert_success(&outcome);
    assert_eq!(outcome.stdout(), "ready\ngot short\n");
    assert!(
        outcome
            .stderr()
            .contains("chorus: input refused: this run accepts 8 bytes of input in all"),
        "{:?}",
        outcome.stderr()
    );
    assert_no_containers(&executor).await;
}

/// A program that never reads is unaffected by input, however much arrives, and the
/// wall clock still ends one that runs on with its input open.
#[tokio::test]
async fn a_run_that_ignores_input_is_unaffected() {
    let Some(executor) = executor().await else {
        return;
    };
    let request = python(
        "import time\n\
         print('start', flush=True)\n\
         time.sleep(0.5)\n\
         print('done')\n",
    );
    let steps = vec![(
        "start",
        (0..40).map(|_| text(&"x".repeat(16 * 1024))).collect(),
    )];
    let outcome = run_interactive(&executor, request, steps).await;
    assert_success(&outcome);
    assert_eq!(outcome.stdout(), "start\ndone\n");

    let request = python("import time\ntime.sleep(30)\n");
    let started = Instant::now();
    let outcome = run_interactive(&executor, request, vec![]).await;
    assert!(outcome.status.timed_out, "{:?}", outcome.status);
    assert!(started.elapsed() < Duration::from_secs(9));
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_order() {
    let Some(executor) = executor().await else {
        return;
    };
    // Docker reads the two pipes separately, so order across streams is the order the
    // engine sees; a short pause between writes makes that the order of production.
    let outcome = run(
        &executor,
        python(
            "import sys, time\n\
             for i in range(6):\n\
             \x20   stream = sys.stdout if i % 2 == 0 else sys.stderr\n\
             \x20   stream.write(f'{i}\\n'); stream.flush(); time.sleep(0.03)\n",
        ),
    )
    .await;
    assert_success(&outcome);
    let sequence: Vec<(Stream, String)> = outcome
        .chunks
        .iter()
        .map(|chunk| (chunk.stream, chunk.data.clone()))
        .collect();
    let expected: Vec<(Stream, String)> = (0..6)
        .map(|i| {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            (stream, format!("{i}\n"))
        })
        .collect();
    assert_eq!(sequence, expected);
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn runs_as_nobody_without_capabilities_or_new_privileges() {
    let Some(executor) = executor().await else {
        return;
    };
    let outcome = run(
        &executor,
        request(
            "main.sh",
            &[(
                "main.sh",
                "id -u; id -g\n\
                 grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status\n\
                 test -e /var/run/docker.sock && echo socket-visible || echo no-socket\n",
            )],
        ),
    )
    .await;
    assert_success(&outcome);
    assert_eq!(
        outcome.stdout(),
        "65534\n65534\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\nno-socket\n"
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn fork_bombs_hit_the_pids_limit_and_the_clock() {
    let Some(executor) = executor_with(
        Limits {
            wall_clock: Duration::from_secs(3),
            pids: 32,
            ..test_limits()
        },
        2,
    )
    .await
    else {
        return;
    };
    // Counts its successful forks, so the limit itself is visible, then keeps PID 1 alive.
    let counting = python(
        "import os, time\n\
         n = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       if os.fork() == 0:\n\
         \x20           time.sleep(100); os._exit(0)\n\
         \x20       n += 1\n\
         except OSError as err:\n\
         \x20   print('fork failed after', n, err.errno, flush=True)\n\
         time.sleep(100)\n",
    );
    let outcome = run(&executor, counting).await;
    let stdout = outcome.stdout();
    let forks: usize = stdout
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?} {:?}", outcome.status));
    assert!(forks < 32, "forked {forks} times under a limit of 32");
    assert!(outcome.status.timed_out, "{:?}", outcome.status);
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "took {:?}",
        outcome.elapsed
    );

    // The classic shell bomb. PID 1 then spins on builtins (no fork needed, since forks
    // fail now) to keep the container alive until the clock kills it; unless PID 1's own
    // fork fails first, which `sh` treats as fatal ("Cannot fork"): contained either way.
    let classic = request(
        "bomb.sh",
        &[(
            "bomb.sh",
            "bomb() { bomb | bomb & }\nbomb\nwhile :; do :; done\n",
        )],
    );
    let outcome = run(&executor, classic).await;
    assert!(
        outcome.status.timed_out
            || (outcome.status.exit_code != Some(0) && outcome.stderr().contains("fork")),
        "{:?} {:?}",
        outcome.status,
        outcome.stderr()
    );
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "took {:?}",
        outcome.elapsed
    );
    assert_no_containers(&executor).await;

    // The engine and the executor are still fine afterwards.
    let outcome = run(&executor, python("print('still alive')\n")).await;
    assert_success(&outcome);
}

#[tokio::test]
async fn memory_hog_is_oom_killed() {
    let Some(executor) = executor_with(
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            ..test_limits()
        },
        2,
    )
    .await
    else {
        return;
    };
    // `b'x' * n` writes every page, so the memory is really used (calloc'd zero pages
    // would not be).
    let outcome = run(
        &executor,
        python("hog = []\nwhile True:\n    hog.append(b'x' * (8 * 1024 * 1024))\n"),
    )
    .await;
    assert!(
        outcome.status.oom_killed,
        "{:?} {:?}",
        outcome.status,
        outcome.stderr()
    );
    assert_eq!(outcome.status.exit_code, Some(137));
    assert!(!outcome.status.timed_out);
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn infinite_loop_times_out() {
    let Some(executor) = executor_with(
        Limits {
            wall_clock: Duration::from_secs(2),
            ..test_limits()
        },
        2,
    )
    .await
    else {
        return;
    };
    let outcome = run(
        &executor,
        python("print('spinning', flush=True)\nwhile True:\n    pass\n"),
    )
    .await;
    assert!(outcome.status.timed_out, "{:?}", outcome.status);
    assert_eq!(outcome.status.exit_code, Some(137));
    assert_eq!(outcome.stdout(), "spinning\n");
    assert!(outcome.status.duration_ms >= 2000, "{:?}", outcome.status);
    assert!(
        outcome.elapsed < Duration::from_secs(6),
        "took {:?}",
        outcome.elapsed
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn flood_of_output_is_truncated_and_killed_quickly() {
    let Some(executor) = executor().await else {
        return;
    };
    // 100 MB in 1 MiB writes, to both streams.
    let outcome = run(
        &executor,
        python(
            "import sys\n\
             block = 'x' * (1024 * 1024)\n\
             for i in range(100):\n\
             \x20   (sys.stdout if i % 2 else sys.stderr).write(block)\n",
        ),
    )
    .await;
    assert!(outcome.status.truncated, "{:?}", outcome.status);
    assert!(!outcome.status.timed_out, "{:?}", outcome.status);
    let received: usize = outcome.chunks.iter().map(|chunk| chunk.data.len()).sum();
    assert_eq!(received, 64 * 1024);
    assert!(
        outcome.elapsed < Duration::from_secs(4),
        "took {:?}",
        outcome.elapsed
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn network_is_absent_inside() {
    let Some(executor) = executor().await else {
        return;
    };
    // A listener on the host's loopback: if the container shared the host's network it
    // could reach it. Only loopback addresses are ever used here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let source = format!(
        "import os, socket\n\
         print('interfaces', sorted(os.listdir('/sys/class/net')))\n\
         routes = open('/proc/net/route').read().splitlines()[1:]\n\
         print('routes', len(routes))\n\
         try:\n\
         \x20   socket.create_connection(('127.0.0.1', {port}), timeout=2)\n\
         \x20   print('connected')\n\
         except OSError as err:\n\
         \x20   print('connect failed', type(err).__name__)\n"
    );
    let outcome = run(&executor, python(&source)).await;
    assert_success(&outcome);
    assert_eq!(
        outcome.stdout(),
        "interfaces ['lo']\nroutes 0\nconnect failed ConnectionRefusedError\n"
    );
    assert!(listener.accept().is_err(), "the host listener was reached");
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn root_fs_is_read_only_and_host_files_are_invisible() {
    let Some(executor) = executor().await else {
        return;
    };
    let secret = std::env::temp_dir().join(format!("chorus-sandbox-secret-{}", std::process::id()));
    std::fs::write(&secret, "host secret").expect("write host secret");
    let source = format!(
        "import os\n\
         for path in ['/evil', '/usr/bin/evil', '/etc/passwd']:\n\
         \x20   try:\n\
         \x20       open(path, 'a').write('x')\n\
         \x20       print('wrote', path)\n\
         \x20   except OSError as err:\n\
         \x20       print('refused', path, err.errno)\n\
         try:\n\
         \x20   open('/etc/shadow').read()\n\
         \x20   print('read shadow')\n\
         except OSError as err:\n\
         \x20   print('shadow', type(err).__name__)\n\
         print('host file visible', os.path.exists({secret:?}))\n\
         open('scratch.txt', 'w').write('ok')\n\
         print('work dir writable', open('scratch.txt').read())\n",
        secret = secret.display().to_string()
    );
    let outcome = run(&executor, python(&source)).await;
    std::fs::remove_file(&secret).ok();
    assert_success(&outcome);
    // EROFS (30) for new files: the read-only root refuses; an existing root-owned file is
    // refused by permissions first (EACCES, 13).
    assert_eq!(
        outcome.stdout(),
        "refused /evil 30\nrefused /usr/bin/evil 30\nrefused /etc/passwd 13\n\
         shadow PermissionError\nhost file visible False\nwork dir writable ok\n"
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn cancel_stops_a_running_program() {
    let Some(executor) = executor().await else {
        return;
    };
    let (sender, mut receiver) = mpsc::channel(64);
    let (cancel_sender, cancel) = oneshot::channel();
    let started = Instant::now();
    let run = tokio::spawn(executor.run(
        python("import time\nprint('started', flush=True)\ntime.sleep(30)\n"),
        sender,
        cancel,
    ));
    // `python -u` may write the text and the newline separately.
    let mut seen = String::new();
    while !seen.contains('\n') {
        seen.push_str(&receiver.recv().await.expect("output before cancel").data);
    }
    assert_eq!(seen, "started\n");
    cancel_sender.send(()).expect("run still listening");
    let status = run.await.expect("run task");
    assert!(status.cancelled, "{status:?}");
    assert!(!status.timed_out);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn dropping_the_run_future_still_removes_the_container() {
    let Some(executor) = executor().await else {
        return;
    };
    let (sender, mut receiver) = mpsc::channel(64);
    let (_cancel_sender, cancel) = oneshot::channel();
    let run = tokio::spawn(executor.run(
        python("import time\nprint('started', flush=True)\ntime.sleep(30)\n"),
        sender,
        cancel,
    ));
    receiver.recv().await.expect("first chunk");
    assert_eq!(executor.list_containers().await.expect("list").len(), 1);
    // As if the hub's task were aborted or had panicked mid-run.
    run.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !executor.list_containers().await.expect("list").is_empty() {
        assert!(
            Instant::now() < deadline,
            "container not removed after the run was dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn max_concurrent_one_queues_the_second_run() {
    let Some(executor) = executor_with(test_limits(), 1).await else {
        return;
    };
    let program = python("import time\nprint('go', flush=True)\ntime.sleep(1)\n");
    let started = Instant::now();
    let timed_run = |request: RunRequest| {
        let (sender, mut receiver) = mpsc::channel(64);
        let (cancel_sender, cancel) = oneshot::channel::<()>();
        let future = executor.run(request, sender, cancel);
        async move {
            let run = tokio::spawn(future);
            receiver.recv().await.expect("first chunk");
            let first_output = started.elapsed();
            while receiver.recv().await.is_some() {}
            let status = run.await.expect("run task");
            drop(cancel_sender);
            (first_output, started.elapsed(), status)
        }
    };
    let ((first_a, end_a, status_a), (first_b, end_b, status_b)) =
        tokio::join!(timed_run(program.clone()), timed_run(program));
    assert_eq!(status_a.exit_code, Some(0), "{status_a:?}");
    assert_eq!(status_b.exit_code, Some(0), "{status_b:?}");
    // Whichever ran second printed only after the first had finished.
    let (earlier_end, later_first) = if first_a < first_b {
        (end_a, first_b)
    } else {
        (end_b, first_a)
    };
    assert!(
        later_first >= earlier_end - Duration::from_millis(50),
        "second run started at {later_first:?}, before the first ended at {earlier_end:?}"
    );
    assert!(end_a.max(end_b) >= Duration::from_secs(2));
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_container() {
    let Some(executor) = executor().await else {
        return;
    };
    let cases = [
        (request("main.cobol", &[("main.cobol", "")]), "no language"),
        (
            RunRequest {
                language: Some("cobol".to_owned()),
                ..python("print(1)\n")
            },
            "unknown language",
        ),
        (
            request("/etc/passwd", &[("/etc/passwd", "")]),
            "absolute path",
        ),
        (
            request("main.py", &[("main.py", ""), ("../escape.py", "")]),
            "`..`",
        ),
        (request("main.py", &[("other.py", "")]), "not among"),
    ];
    for (request, expected) in cases {
        let outcome = run(&executor, request).await;
        let error = outcome.status.error.clone().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
        assert_eq!(outcome.status.exit_code, None);
        assert!(outcome.chunks.is_empty());
    }
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn connect_sweeps_expired_orphans() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::CreateContainerOptionsBuilder;
    use chorus_sandbox::{EXPIRES_LABEL, SANDBOX_LABEL};

    if !chorus_testkit::docker() {
        return;
    }
    // An orphan as a crashed hub would leave it: labelled, expired long ago.
    let docker = engine().await;
    let name = format!("chorus-orphan-test-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(chorus_sandbox::DEFAULT_IMAGE.to_owned()),
        cmd: Some(vec!["true".to_owned()]),
        labels: Some(
            [
                (SANDBOX_LABEL.to_owned(), "1".to_owned()),
                (EXPIRES_LABEL.to_owned(), "1".to_owned()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), body)
        .await
        .expect("create orphan");

    let Some(_executor) = executor().await else {
        return;
    };
    assert_swept(&docker, &name, "the expired orphan").await;
}

#[tokio::test]
async fn cancel_while_queued_never_starts_a_container() {
    let Some(executor) = executor_with(test_limits(), 1).await else {
        return;
    };
    let sleeper = python("import time\nprint('busy', flush=True)\ntime.sleep(30)\n");

    let (busy_output, mut busy_receiver) = mpsc::channel(64);
    let (busy_cancel, cancel) = oneshot::channel();
    let busy = tokio::spawn(executor.run(sleeper.clone(), busy_output, cancel));
    busy_receiver.recv().await.expect("busy run started");

    let (queued_output, mut queued_receiver) = mpsc::channel(64);
    let (queued_cancel, cancel) = oneshot::channel();
    let queued = tokio::spawn(executor.run(sleeper, queued_output, cancel));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only the busy run has a container; the second waits for the slot.
    assert_eq!(executor.list_containers().await.expect("list").len(), 1);
    drop(queued_cancel); // a dropped sender cancels too
    let status = queued.await.expect("queued run");
    assert!(status.cancelled, "{status:?}");
    assert_eq!(status.exit_code, None);
    assert!(queued_receiver.recv().await.is_none());

    busy_cancel.send(()).expect("busy run listening");
    let status = busy.await.expect("busy run");
    assert!(status.cancelled, "{status:?}");
    assert_no_containers(&executor).await;
}

// ---- Projects (issue 15): detection, baked dependencies, build cache, diagnostics ----

/// Checks the plan's header line, runs the request, and checks it succeeded with
/// exactly `stdout`.
async fn assert_runs_as(
    executor: &DockerExecutor,
    request: RunRequest,
    summary: &str,
    stdout: &str,
) -> Outcome {
    assert_eq!(executor.plan(&request).expect("plan").summary, summary);
    let outcome = run(executor, request).await;
    assert_success(&outcome);
    assert_eq!(outcome.stdout(), stdout);
    outcome
}

/// A session id no other test (or earlier run of this test) uses, so caches start cold.
fn fresh_session(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("test-{name}-{}-{nanos}", std::process::id())
}

fn in_session(mut request: RunRequest, session: &str) -> RunRequest {
    request.session = session.to_owned();
    request
}

/// A small project using popular crates, shared with `sandbox-bench cargo`.
const SERDE_PROJECT_TOML: &str = include_str!("fixtures/cargo-serde/Cargo.toml");
const SERDE_PROJECT_MAIN: &str = include_str!("fixtures/cargo-serde/src/main.rs");

#[tokio::test]
async fn cargo_project_with_popular_crates_runs_and_its_second_run_uses_the_cache() {
    let Some(executor) = executor().await else {
        return;
    };
    let session = fresh_session("serde");
    let request = in_session(
        request(
            "demo/src/main.rs",
            &[
                ("demo/Cargo.toml", SERDE_PROJECT_TOML),
                ("demo/src/main.rs", SERDE_PROJECT_MAIN),
            ],
        ),
        &session,
    );
    let first = assert_runs_as(
        &executor,
        request.clone(),
        "cargo run --offline (Cargo.toml in demo/)",
        "json matches: true y=3\n",
    )
    .await;
    assert!(
        first.stderr().contains("Compiling serde"),
        "{}",
        first.stderr()
    );

    let second = run(&executor, request).await;
    assert_success(&second);
    assert_eq!(second.stdout(), "json matches: true y=3\n");
    // Dependencies come from the session's cache: none is compiled again. The
    // project's own crate is (its files are unpacked afresh, with new mtimes, which is
    // what cargo's freshness check goes by).
    for dependency in ["serde", "serde_json", "rand", "regex"] {
        let compiled = format!("Compiling {dependency} v");
        assert!(!second.stderr().contains(&compiled), "{}", second.stderr());
    }
    println!(
        "serde project: cold {:?}, warm {:?}",
        first.elapsed, second.elapsed
    );

    let volume = chorus_sandbox::cache_volume_name(&session);
    assert!(executor.list_caches().await.unwrap().contains(&volume));
    executor.remove_session_cache(&session).await.unwrap();
    assert!(!executor.list_caches().await.unwrap().contains(&volume));
    assert_no_containers(&executor).await;
}

const SMALL_CRATE_TOML: &str =
    "[package]\nname = \"small\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";
const SMALL_CRATE_MAIN: &str = r#"fn double(x: i32) -> i32 {
    x * 2
}

fn main() {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("{} {profile} {:?}", double(21), std::env::args().skip(1).collect::<Vec<_>>());
}

#[cfg(test)]
mod tests {
    #[test]
    fn doubles() {
        assert_eq!(super::double(2), 4);
    }
}
"#;

#[tokio::test]
async fn cargo_test_and_release_modes() {
    let Some(executor) = executor().await else {
        return;
    };
    let session = fresh_session("modes");
    let files = [
        ("Cargo.toml", SMALL_CRATE_TOML),
        ("src/main.rs", SMALL_CRATE_MAIN),
    ];
    let mut base = in_session(request("src/main.rs", &files), &session);
    base.args = vec!["a b".to_owned()];

    let plain = "cargo run --offline (Cargo.toml)";
    assert_runs_as(&executor, base.clone(), plain, "42 debug [\"a b\"]\n").await;

    let mut release = base.clone();
    release.mode = RunMode::Release;
    let summary = "cargo run --offline --release (Cargo.toml)";
    assert_runs_as(&executor, release, summary, "42 release [\"a b\"]\n").await;

    let mut test = base;
    test.mode = RunMode::Test;
    test.args = Vec::new();
    let test = run(&executor, test).await;
    assert_success(&test);
    assert!(
        test.stdout().contains("test tests::doubles ... ok"),
        "{}",
        test.stdout()
    );
    executor.remove_session_cache(&session).await.unwrap();
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_missing_crate_is_refused_by_name_before_any_container() {
    let Some(executor) = executor().await else {
        return;
    };
    let toml =
        format!("{SMALL_CRATE_TOML}\n[dependencies]\nserde = \"1\"\nnot-a-baked-crate = \"0.3\"\n");
    let request = request(
        "src/main.rs",
        &[("Cargo.toml", &toml), ("src/main.rs", SMALL_CRATE_MAIN)],
    );
    let refusal = executor
        .plan(&request)
        .expect_err("a missing crate is refused")
        .to_string();
    assert!(
        refusal.starts_with(
            "crate `not-a-baked-crate` (dependencies of Cargo.toml) is not in the sandbox image"
        ),
        "{refusal}"
    );
    assert!(
        refusal.contains("sandbox/images/baked/crates/Cargo.toml"),
        "{refusal}"
    );
    let outcome = run(&executor, request).await;
    assert_eq!(outcome.status.error.as_deref(), Some(refusal.as_str()));
    assert!(
        outcome.elapsed < Duration::from_secs(1),
        "{:?}",
        outcome.elapsed
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn node_project_start_script_uses_baked_lodash() {
    let Some(executor) = executor().await else {
        return;
    };
    // npm would run `prestart` (and `postinstall` on install); no npm, no such script.
    let package = r#"{"name": "web", "scripts": {"prestart": "echo PRE", "postinstall": "echo POST", "start": "node main.js"}, "dependencies": {"lodash": "^4.17.0"}}"#;
    let main = "const _ = require('lodash');\nconsole.log(_.chunk([1, 2, 3, 4], 2), process.argv.slice(2));\n";
    let mut request = request(
        "web/main.js",
        &[("web/package.json", package), ("web/main.js", main)],
    );
    request.args = vec!["x".to_owned()];
    assert_runs_as(
        &executor,
        request,
        "`node main.js` (scripts.start of package.json in web/)",
        "[ [ 1, 2 ], [ 3, 4 ] ] [ 'x' ]\n",
    )
    .await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn python_script_uses_numpy() {
    let Some(executor) = executor().await else {
        return;
    };
    let main = "import numpy as np\nprint(int(np.arange(10).sum()))\n";
    let request = request(
        "main.py",
        &[("requirements.txt", "numpy>=1.20\n"), ("main.py", main)],
    );
    assert_runs_as(
        &executor,
        request,
        "python3 -u main.py (requirements.txt)",
        "45\n",
    )
    .await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn makefile_run_toml_and_command_override() {
    let Some(executor) = executor().await else {
        return;
    };
    let makefile = "run: main.c\n\tgcc -o /tmp/main main.c\n\t/tmp/main\n";
    let main_c = "#include <stdio.h>\nint main(void) { puts(\"made\"); return 0; }\n";
    let make = run(
        &executor,
        request("main.c", &[("Makefile", makefile), ("main.c", main_c)]),
    )
    .await;
    assert_success(&make);
    assert!(make.stdout().ends_with("made\n"), "{}", make.stdout());

    let run_toml = "build = \"gcc -o /tmp/app main.c\"\nrun = \"/tmp/app\"\n";
    let files = [
        (".chorus/run.toml", run_toml),
        ("Makefile", makefile),
        ("main.c", main_c),
    ];
    let toml_run = run(&executor, request("main.c", &files)).await;
    assert_success(&toml_run);
    assert_eq!(toml_run.stdout(), "made\n");

    let mut command = request("main.c", &files);
    command.command = Some("echo \"$0:$1\" && ls".to_owned());
    command.args = vec!["arg".to_owned()];
    let command = run(&executor, command).await;
    assert_success(&command);
    assert_eq!(command.stdout(), "chorus-command:arg\nMakefile\nmain.c\n");
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn compile_and_runtime_errors_become_diagnostics() {
    let Some(executor) = executor().await else {
        return;
    };
    let broken = "fn main() {\n    let x = 1;\n    println!(\"{}\", y);\n}\n";
    let cargo = run(
        &executor,
        request(
            "demo/src/main.rs",
            &[
                ("demo/Cargo.toml", SMALL_CRATE_TOML),
                ("demo/src/main.rs", broken),
            ],
        ),
    )
    .await;
    assert_eq!(cargo.status.exit_code, Some(101), "{}", cargo.stderr());
    let first = cargo.status.diagnostics.first().expect("a diagnostic");
    assert_eq!(
        (first.path.as_str(), first.line, first.column),
        ("demo/src/main.rs", 3, 20)
    );
    assert_eq!(first.severity, RunDiagnosticSeverity::Error);
    assert!(
        first.message.contains("cannot find value `y`"),
        "{}",
        first.message
    );

    let python = run(
        &executor,
        request(
            "main.py",
            &[
                ("main.py", "import lib\nlib.f()\n"),
                ("lib.py", "def f():\n    return 1 / 0\n"),
            ],
        ),
    )
    .await;
    let diagnostics: Vec<_> = python
        .status
        .diagnostics
        .iter()
        .map(|d| (d.path.as_str(), d.line, d.message.as_str()))
        .collect();
    assert_eq!(
        diagnostics,
        [("lib.py", 2, "ZeroDivisionError: division by zero")]
    );

    // A clean run has none, so editors clear the previous ones.
    let clean = run(&executor, python_ok()).await;
    assert!(clean.status.diagnostics.is_empty());
    assert_no_containers(&executor).await;
}

fn python_ok() -> RunRequest {
    python("print('ok')\n")
}

#[tokio::test]
async fn a_hostile_build_script_is_contained() {
    let Some(executor) = executor().await else {
        return;
    };
    // build.rs runs with the run's lockdown: no network, read-only root, the pids
    // limit. It reports what it tried as cargo warnings, then the program runs.
    let build_rs = r#"use std::process::Command;

fn main() {
    let network = std::net::TcpStream::connect("1.1.1.1:80").is_ok();
    println!("cargo:warning=network={network}");
    let write = std::fs::write("/etc/chorus-was-here", "x").is_ok();
    println!("cargo:warning=write_outside={write}");
    let mut children = Vec::new();
    let mut refused = false;
    for _ in 0..1000 {
        match Command::new("sleep").arg("30").spawn() {
            Ok(child) => children.push(child),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    println!("cargo:warning=spawned={} refused={refused}", children.len());
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
"#;
    let session = fresh_session("hostile");
    let request = in_session(
        request(
            "src/main.rs",
            &[
                ("Cargo.toml", SMALL_CRATE_TOML),
                ("build.rs", build_rs),
                ("src/main.rs", SMALL_CRATE_MAIN),
            ],
        ),
        &session,
    );
    let outcome = run(&executor, request).await;
    assert_success(&outcome);
    let stderr = outcome.stderr();
    assert!(stderr.contains("network=false"), "{stderr}");
    assert!(stderr.contains("write_outside=false"), "{stderr}");
    assert!(
        stderr.contains("refused=true"),
        "the pids limit stops the spawning: {stderr}"
    );
    assert_eq!(outcome.stdout(), "42 debug []\n");
    executor.remove_session_cache(&session).await.unwrap();
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn one_sessions_cache_is_invisible_to_another() {
    let Some(executor) = executor().await else {
        return;
    };
    let (a, b) = (fresh_session("a"), fresh_session("b"));
    let mut write = in_session(request("x.sh", &[("x.sh", "")]), &a);
    write.command = Some("echo secret > /cache/secret && ls /cache".to_owned());
    let written = run(&executor, write).await;
    assert_success(&written);
    assert!(written.stdout().contains("secret"), "{}", written.stdout());

    let mut look = in_session(request("x.sh", &[("x.sh", "")]), &b);
    look.command = Some("ls -A /cache; test ! -e /cache/secret".to_owned());
    let looked = run(&executor, look).await;
    assert_success(&looked);
    assert_eq!(looked.stdout(), "");

    // Forgetting a session removes its volume (in the background).
    executor.forget_session(&a);
    executor.remove_session_cache(&b).await.unwrap();
    let volume = chorus_sandbox::cache_volume_name(&a);
    for _ in 0..50 {
        if !executor.list_caches().await.unwrap().contains(&volume) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!executor.list_caches().await.unwrap().contains(&volume));
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn a_build_step_past_the_compile_limit_is_stopped_and_says_so() {
    let Some(executor) = executor().await else {
        return;
    };
    // The project may lower the compile limit (never raise it above the executor's).
    let run_toml = "build = \"sleep 30\"\nrun = \"echo never\"\ncompile_timeout_secs = 1\n";
    let outcome = run(
        &executor,
        request("x.sh", &[(".chorus/run.toml", run_toml), ("x.sh", "")]),
    )
    .await;
    assert!(outcome.status.timed_out, "{:?}", outcome.status);
    assert_eq!(outcome.stdout(), "");
    assert!(
        outcome
            .stderr()
            .contains("chorus: the build was stopped at the compile limit (1 s)"),
        "{}",
        outcome.stderr()
    );
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "{:?}",
        outcome.elapsed
    );

    // A build that ignores TERM is killed two seconds later, and says so all the same.
    let run_toml =
        "build = \"trap '' TERM; sleep 30\"\nrun = \"echo never\"\ncompile_timeout_secs = 1\n";
    let stubborn = run(
        &executor,
        request("x.sh", &[(".chorus/run.toml", run_toml), ("x.sh", "")]),
    )
    .await;
    assert!(stubborn.status.timed_out, "{:?}", stubborn.status);
    assert!(
        stubborn.stderr().contains("stopped at the compile limit"),
        "{}",
        stubborn.stderr()
    );
    assert!(
        stubborn.elapsed < Duration::from_secs(10),
        "{:?}",
        stubborn.elapsed
    );
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn connect_sweeps_build_caches_past_their_ttl() {
    use bollard::models::VolumeCreateRequest;
    use chorus_sandbox::{CACHE_LABEL, CREATED_LABEL, SANDBOX_LABEL};

    if !chorus_testkit::docker() {
        return;
    }
    let docker = engine().await;
    // Two caches as earlier hubs left them: one created at the epoch, one just now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (old, fresh) = (
        chorus_sandbox::cache_volume_name(&fresh_session("old")),
        chorus_sandbox::cache_volume_name(&fresh_session("fresh")),
    );
    for (name, created) in [(&old, 0), (&fresh, now)] {
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(
                [
                    (SANDBOX_LABEL.to_owned(), "1".to_owned()),
                    (CACHE_LABEL.to_owned(), "test".to_owned()),
                    (CREATED_LABEL.to_owned(), created.to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        docker.create_volume(request).await.expect("create volume");
    }

    let Some(executor) = executor().await else {
        return;
    };
    let caches = executor.list_caches().await.unwrap();
    executor.sweep_caches().await.unwrap();
    let after = executor.list_caches().await.unwrap();
    for name in [&fresh, &old] {
        let options = bollard::query_parameters::RemoveVolumeOptionsBuilder::default().build();
        docker.remove_volume(name, Some(options)).await.ok();
    }
    assert!(!caches.contains(&old), "connect removed the expired cache");
    assert!(
        caches.contains(&fresh) && after.contains(&fresh),
        "a fresh cache stays"
    );
}

#[tokio::test]
async fn a_cargo_lock_pinning_versions_the_image_lacks_is_set_aside() {
    let Some(executor) = executor().await else {
        return;
    };
    // A lock from a machine with network: offline, cargo could not honour it.
    let toml = format!("{SMALL_CRATE_TOML}\n[dependencies]\neither = \"1\"\n");
    let lock = "version = 4\n\n[[package]]\nname = \"either\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"small\"\nversion = \"0.1.0\"\ndependencies = [\"either\"]\n";
    let request = request(
        "src/main.rs",
        &[
            ("Cargo.toml", &toml),
            ("Cargo.lock", lock),
            ("src/main.rs", SMALL_CRATE_MAIN),
        ],
    );
    let summary = "cargo run --offline (Cargo.toml; Cargo.lock pins either 1.6.0, which the image does not vendor, so it is set aside for this run)";
    assert_runs_as(&executor, request, summary, "42 debug []\n").await;
    assert_no_containers(&executor).await;
}

#[tokio::test]
async fn failing_tests_become_diagnostics() {
    let Some(executor) = executor().await else {
        return;
    };
    let failing = SMALL_CRATE_MAIN.replace("double(2), 4", "double(2), 5");
    let mut cargo = request(
        "src/main.rs",
        &[("Cargo.toml", SMALL_CRATE_TOML), ("src/main.rs", &failing)],
    );
    cargo.mode = RunMode::Test;
    let cargo = run(&executor, cargo).await;
    assert_eq!(cargo.status.exit_code, Some(101), "{}", cargo.stderr());
    let located: Vec<_> = cargo
        .status
        .diagnostics
        .iter()
        .map(|d| (d.path.as_str(), d.line))
        .collect();
    assert_eq!(located, [("src/main.rs", 14)], "{}", cargo.stdout());

    let mut pytest = request(
        "tests/test_calc.py",
        &[
            ("requirements.txt", "pytest\n"),
            (
                "tests/test_calc.py",
                "def test_add():\n    assert 1 + 1 == 3\n",
            ),
        ],
    );
    pytest.mode = RunMode::Test;
    let pytest = run(&executor, pytest).await;
    assert_eq!(pytest.status.exit_code, Some(1), "{}", pytest.stdout());
    let diagnostics: Vec<_> = pytest
        .status
        .diagnostics
        .iter()
        .map(|d| (d.path.as_str(), d.line, d.message.as_str()))
        .collect();
    assert_eq!(
        diagnostics,
        [(
            "tests/test_calc.py",
            2,
            "AssertionError: assert (1 + 1) == 3"
        )],
        "{}",
        pytest.stdout()
    );
    assert_no_containers(&executor).await;
}

/// Issue 17: the lockdown's other settings, seen from inside: the open-file
/// limit, the size of the writable tmpfs (a program filling it gets
/// ENOSPC, not the host's disk), a private `/dev/shm` as small, and
/// Docker's seccomp filter on.
#[tokio::test]
async fn nofile_tmpfs_size_and_seccomp_hold_inside() {
    let Some(executor) = executor().await else {
        return;
    };
    let program = r#"
import errno, resource
print('nofile', resource.getrlimit(resource.RLIMIT_NOFILE))
for where in ('/work', '/tmp', '/dev/shm'):
    try:
        with open(where + '/fill', 'wb') as f:
            for _ in range(64):
                f.write(b'x' * (1024 * 1024))
        print(where, 'filled')
    except OSError as err:
        print(where, 'full' if err.errno == errno.ENOSPC else err)
seccomp = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')]
print('seccomp', seccomp)
"#;
    let outcome = run(&executor, python(program)).await;
    assert_success(&outcome);
    let stdout = outcome.stdout();
    assert!(stdout.contains("nofile (64, 64)"), "{stdout}");
    for place in ["/work full", "/tmp full", "/dev/shm full"] {
        assert!(stdout.contains(place), "{place}: {stdout}");
    }
    // 2: a filter is in force (Docker's default profile).
    assert!(stdout.contains("seccomp ['2']"), "{stdout}");
    assert_no_containers(&executor).await;
}

/// Issue 17: runs are served first come, first served, and a session has
/// one run at a time (the hub's rule), so a session starting runs back to
/// back waits its turn behind every other session's: here A's second run
/// starts after B's, which was asked for in between.
#[tokio::test]
async fn a_session_running_back_to_back_waits_its_turn() {
    let Some(executor) = executor_with(test_limits(), 1).await else {
        return;
    };
    let started = Instant::now();
    let timed = |label: &'static str| {
        let program = python(&format!(
            "print('{label}', flush=True)\nimport time\ntime.sleep(0.5)\n"
        ));
        let (sender, mut receiver) = mpsc::channel(64);
        let (cancel_sender, cancel) = oneshot::channel::<()>();
        let run = tokio::spawn(executor.run(program, sender, cancel));
        async move {
            let first = receiver.recv().await.expect("output");
            let at = started.elapsed();
            while receiver.recv().await.is_some() {}
            run.await.expect("run task");
            drop(cancel_sender);
            (first.data.trim().to_owned(), at)
        }
    };
    let a1 = tokio::spawn(timed("a1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b1 = tokio::spawn(timed("b1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a2 = tokio::spawn(timed("a2"));
    let mut order = [a1.await.unwrap(), b1.await.unwrap(), a2.await.unwrap()];
    order.sort_by_key(|(_, at)| *at);
    let labels: Vec<&str> = order.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, ["a1", "b1", "a2"]);
    assert_no_containers(&executor).await;
}
