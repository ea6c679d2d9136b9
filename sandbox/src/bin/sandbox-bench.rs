//! Measures the cost of a sandboxed run as the hub sees it: request → first output chunk
//! and request → exit.
//!
//! Run: `cargo run --release -p chorus-sandbox --bin sandbox-bench -- [MODE] [ITERATIONS]`
//! (needs the engine and image from `sandbox/scripts/ensure-docker.sh`). Modes:
//! - `hello` (default): a cold (new container each time) Python hello world.
//! - `cargo`: a Cargo project using serde, serde_json and rand, run ITERATIONS times in
//!   fresh sessions; each time the first run (cold build cache) and the second (warm).
//! - `numpy`: a Python script importing numpy.

use std::time::{Duration, Instant};

use chorus_sandbox::{DockerExecutor, Executor, ExecutorConfig, RunRequest, RunStatus, Stream};
use tokio::sync::{mpsc, oneshot};

// The project of the Docker tests' cache test (serde + serde_json + rand + regex).
const CARGO_TOML: &str = include_str!("../../tests/fixtures/cargo-serde/Cargo.toml");
const CARGO_MAIN: &str = include_str!("../../tests/fixtures/cargo-serde/src/main.rs");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let mode = match args.peek() {
        Some(arg) if arg.parse::<usize>().is_err() => args.next().unwrap_or_default(),
        _ => "hello".to_owned(),
    };
    let iterations: Option<usize> = args.next().map(|arg| arg.parse()).transpose()?;
    let executor = DockerExecutor::connect(ExecutorConfig::default()).await?;
    match mode.as_str() {
        "hello" => {
            let request = single_file("main.py", "print('hello, world')\n");
            repeated(
                &executor,
                "python hello world",
                request,
                iterations.unwrap_or(20),
            )
            .await
        }
        "numpy" => {
            let source = "import numpy as np\nprint('hello', int(np.arange(10).sum()))\n";
            let request = single_file("main.py", source);
            repeated(
                &executor,
                "python importing numpy",
                request,
                iterations.unwrap_or(20),
            )
            .await
        }
        "cargo" => cargo(&executor, iterations.unwrap_or(3)).await,
        other => Err(format!("unknown mode `{other}`: hello, cargo or numpy").into()),
    }
}

fn single_file(main: &str, source: &str) -> RunRequest {
    RunRequest {
        main: main.to_owned(),
        files: vec![(main.to_owned(), source.to_owned())],
        ..RunRequest::default()
    }
}

/// A cold container per run, `iterations` times after one unmeasured run.
async fn repeated(
    executor: &DockerExecutor,
    label: &str,
    request: RunRequest,
    iterations: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    // One unmeasured run so the image's layers are in the page cache like on a live hub.
    run_once(executor, request.clone(), "hello").await?;

    let mut first_chunk = Vec::with_capacity(iterations);
    let mut exit = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let (to_first, to_exit) = run_once(executor, request.clone(), "hello").await?;
        first_chunk.push(to_first);
        exit.push(to_exit);
    }
    println!("{label}, cold container per run, {iterations} runs (+1 warm-up)");
    report("request -> first output chunk", &mut first_chunk);
    report(
        "request -> exit (status returned, container removed)",
        &mut exit,
    );
    Ok(())
}

/// Pairs of runs of one Cargo project, each pair in a new session: the first builds
/// the dependencies into the empty cache, the second finds them there.
async fn cargo(executor: &DockerExecutor, pairs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (mut cold_first, mut cold_exit, mut warm_first, mut warm_exit) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let session = format!("sandbox-bench-{}-{pair}", std::process::id());
        let request = RunRequest {
            main: "src/main.rs".to_owned(),
            files: vec![
                ("Cargo.toml".to_owned(), CARGO_TOML.to_owned()),
                ("src/main.rs".to_owned(), CARGO_MAIN.to_owned()),
            ],
            session: session.clone(),
            ..RunRequest::default()
        };
        let cold = run_once(executor, request.clone(), "json matches: true").await;
        let warm = run_once(executor, request, "json matches: true").await;
        executor.remove_session_cache(&session).await?;
        let ((first, exit), (second_first, second_exit)) = (cold?, warm?);
        cold_first.push(first);
        cold_exit.push(exit);
        warm_first.push(second_first);
        warm_exit.push(second_exit);
    }
    println!("cargo project (serde + serde_json + rand + regex), {pairs} sessions, default limits");
    report(
        "first run (cold cache): request -> first stdout chunk",
        &mut cold_first,
    );
    report("first run (cold cache): request -> exit", &mut cold_exit);
    report(
        "second run (warm cache): request -> first stdout chunk",
        &mut warm_first,
    );
    report("second run (warm cache): request -> exit", &mut warm_exit);
    Ok(())
}

/// One run: time to its first stdout chunk and to its end, checking that the output
/// starts with `expected_start`.
async fn run_once(
    executor: &DockerExecutor,
    request: RunRequest,
    expected_start: &str,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let (sender, mut receiver) = mpsc::channel(64);
    let (_cancel_sender, cancel) = oneshot::channel();
    let started = Instant::now();
    let run = tokio::spawn(executor.run(request, sender, cancel));
    // The program's first output: builds write to stderr before it.
    let mut first = None;
    let mut to_first = Duration::ZERO;
    while let Some(chunk) = receiver.recv().await {
        if first.is_none() && chunk.stream == Stream::Stdout {
            to_first = started.elapsed();
            first = Some(chunk);
        }
    }
    let status: RunStatus = run.await?;
    let to_exit = started.elapsed();
    match first {
        Some(first) if status.exit_code == Some(0) && first.data.starts_with(expected_start) => {
            Ok((to_first, to_exit))
        }
        first => Err(format!("unexpected run: {status:?} {first:?}").into()),
    }
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |fraction: f64| {
        let index = ((samples.len() - 1) as f64 * fraction).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    println!(
        "{label}: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.9),
        at(0.0),
        at(1.0)
    );
}
