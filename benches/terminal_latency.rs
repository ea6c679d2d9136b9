//! Issue 16: the shared terminal's keystroke-to-echo latency between two
//! participants, and how long a terminal takes to start.
//!
//! Against a real `chorus hub` with runs on (Docker and the sandbox image
//! needed) on 127.0.0.1, two WebSocket clients speak the hub protocol as a
//! proxy does: A opens the session's terminal and starts `cat`, B watches.
//! Then, one at a time at `--rate` keys per second, A sends a keystroke
//! (`terminalInput`) and the clock stops when B receives the terminal
//! output holding its echo (the PTY's line discipline echoes each key):
//! A → hub → container's PTY → hub → B. Every 40 keys A sends Enter, which
//! `cat` prints back, so lines stay short.
//!
//! Start time: `--starts` times, from the `terminal` message to
//! `terminalStarted` (container created, started, files in place) and to
//! the first prompt (`$ `), then `terminalStop`.
//!
//! The editors add their own hop (editor → `chorus lsp`, see §2 for what a
//! proxy costs); this measures what the terminal adds.
//!
//! Run: `cargo bench --bench terminal_latency [-- --keys 500 --rate 20
//! --starts 10]`. Without `--bench` (as under `cargo test --all-targets`)
//! it does nothing.

#[path = "common/hub.rs"]
mod hub;
#[path = "common/ws.rs"]
mod ws;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use ws::{next_frame, next_of, send, Ws};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("terminal benchmark: run it with `cargo bench --bench terminal_latency`");
        return;
    }
    let option = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|at| args.get(at + 1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let keys = option("--keys", 500);
    let rate = option("--rate", 20).max(1);
    let starts = option("--starts", 10);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(keys, rate, starts));
}

async fn join(url: &str, name: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    send(
        &mut ws,
        json!({ "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
                "session": "bench-terminal", "name": name }),
    )
    .await;
    next_of(&mut ws, "welcome").await;
    ws
}

/// Reads terminal output until it holds `needle`.
async fn output_until(ws: &mut Ws, needle: &str) {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let frame = next_frame(ws).await;
        if frame["type"] == "terminalOutput" {
            seen.push_str(frame["data"].as_str().unwrap_or(""));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(keys: u64, rate: u64, starts: u64) {
    let log = std::env::temp_dir().join("chorus-bench-terminal-hub.log");
    let hub = hub::start_hub_with_runs(&[], &log).await;
    let mut ada = join(&hub.url, "ada").await;
    let mut bob = join(&hub.url, "bob").await;

    let mut to_started = Vec::new();
    let mut to_prompt = Vec::new();
    for _ in 0..starts {
        let begun = Instant::now();
        send(
            &mut ada,
            json!({ "type": "terminal", "cols": 120, "rows": 40 }),
        )
        .await;
        next_of(&mut ada, "terminalStarted").await;
        to_started.push(begun.elapsed());
        output_until(&mut ada, "$ ").await;
        to_prompt.push(begun.elapsed());
        send(&mut ada, json!({ "type": "terminalStop" })).await;
        next_of(&mut ada, "terminalEnded").await;
        next_of(&mut bob, "terminalEnded").await;
    }

    send(
        &mut ada,
        json!({ "type": "terminal", "cols": 120, "rows": 40 }),
    )
    .await;
    output_until(&mut ada, "$ ").await;
    send(
        &mut ada,
        json!({ "type": "terminalInput", "data": "cat\r" }),
    )
    .await;
    output_until(&mut bob, "cat\r\n").await;
    // Let `cat` start reading.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut latencies = Vec::new();
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    for i in 0..keys {
        let key = if i % 40 == 39 {
            "\r".to_owned()
        } else {
            (letters[i as usize % 26] as char).to_string()
        };
        let echo = if key == "\r" {
            "\r\n".to_owned()
        } else {
            key.clone()
        };
        let sent = Instant::now();
        send(&mut ada, json!({ "type": "terminalInput", "data": key })).await;
        output_until(&mut bob, &echo).await;
        latencies.push(sent.elapsed());
        if key == "\r" {
            // `cat` prints the line back: read it before the next key.
            tokio::time::sleep(Duration::from_millis(50)).await;
            drain(&mut bob).await;
        }
        tokio::time::sleep(gap.saturating_sub(sent.elapsed())).await;
    }
    drop(hub);

    latencies.sort();
    to_started.sort();
    to_prompt.sort();
    println!("## terminal: keystroke in A → its echo at B ({keys} keys, {rate}/s)");
    println!("| p50 | p90 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} |",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
    if starts > 0 {
        println!("\n## terminal start ({starts} starts)");
        println!("| to | p50 | max |");
        println!("|---|---|---|");
        for (what, times) in [
            ("terminalStarted", &to_started),
            ("first prompt", &to_prompt),
        ] {
            println!(
                "| {what} | {} | {} |",
                ms(percentile(times, 0.5)),
                ms(*times.last().unwrap())
            );
        }
    }
}

/// Reads whatever frames are already waiting, without blocking for more.
async fn drain(ws: &mut Ws) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), ws.next()).await {}
}
