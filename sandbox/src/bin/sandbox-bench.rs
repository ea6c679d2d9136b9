//! Measures the cost of a sandboxed run as the hub sees it: request → first output chunk
//! and request → exit, for a cold (new container each time) Python hello world.
//!
//! Run: `cargo run --release -p chorus-sandbox --bin sandbox-bench -- [ITERATIONS]`
//! (needs the engine and image from `sandbox/scripts/ensure-docker.sh`).

use std::time::{Duration, Instant};

use chorus_sandbox::{DockerExecutor, Executor, ExecutorConfig, RunRequest};
use tokio::sync::{mpsc, oneshot};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 20,
    };
    let executor = DockerExecutor::connect(ExecutorConfig::default()).await?;
    let request = RunRequest {
        main: "main.py".to_owned(),
        files: vec![("main.py".to_owned(), "print('hello, world')\n".to_owned())],
        ..RunRequest::default()
    };

    // One unmeasured run so the image's layers are in the page cache like on a live hub.
    run_once(&executor, request.clone()).await?;

    let mut first_chunk = Vec::with_capacity(iterations);
    let mut exit = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let (to_first, to_exit) = run_once(&executor, request.clone()).await?;
        first_chunk.push(to_first);
        exit.push(to_exit);
    }
    println!("python hello world, cold container per run, {iterations} runs (+1 warm-up)");
    report("request -> first output chunk", &mut first_chunk);
    report(
        "request -> exit (status returned, container removed)",
        &mut exit,
    );
    Ok(())
}

async fn run_once(
    executor: &DockerExecutor,
    request: RunRequest,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let (sender, mut receiver) = mpsc::channel(64);
    let (_cancel_sender, cancel) = oneshot::channel();
    let started = Instant::now();
    let run = tokio::spawn(executor.run(request, sender, cancel));
    let first = receiver.recv().await.ok_or("no output")?;
    let to_first = started.elapsed();
    while receiver.recv().await.is_some() {}
    let status = run.await?;
    let to_exit = started.elapsed();
    if status.exit_code != Some(0) || !first.data.starts_with("hello") {
        return Err(format!("unexpected run: {status:?} {first:?}").into());
    }
    Ok((to_first, to_exit))
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
