//! Issue 19: the browser door in real Chromium: how long the page takes to
//! load and become editable, cold and warm, and keystroke latency from the
//! page to another participant.
//!
//! A real `chorus hub` on 127.0.0.1 serves the page; Chromium is driven by
//! `web/e2e/bench.mjs` (playwright-core). A WebSocket client in this
//! process (`peer`) seeds the document and is the other participant.
//!
//! Loads: `--loads` cold (a fresh browser context: empty cache and
//! storage) and `--loads` warm (the immutable assets cached), each from
//! `goto` to the join form's script having run, and on to an editable
//! editor (join, open the file from the tree: scripted clicks included).
//!
//! Keystrokes: `--keys` keys, one at a time at `--rate` per second; the
//! clock starts when this process tells the driver to type a key and
//! stops when `peer` receives the `remote` op that inserts it: driver
//! pipe → CDP → Chromium's key event → CodeMirror → the page's OT client →
//! WebSocket → hub → peer. The pipe and CDP hop are included (well under
//! a millisecond on loopback); a person's key has its own OS input path.
//!
//! Run: `cargo bench --bench browser [-- --loads 10 --keys 300 --rate 20]`
//! (Chromium, node and `web/node_modules` needed, as for the e2e tests).
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

#[path = "common/hub.rs"]
mod hub;
#[path = "common/ws.rs"]
mod ws;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::ChildStdout;
use ws::{next_frame, next_of, send, Ws};

const TIMEOUT: Duration = Duration::from_secs(120);
const SESSION: &str = "bench-browser";
const DOC: &str = "main.py";
const SEED_TEXT: &str = "def main():\n    print('hi')\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("browser benchmark: run it with `cargo bench --bench browser`");
        return;
    }
    let option = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|at| args.get(at + 1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let loads = option("--loads", 10);
    let keys = option("--keys", 300);
    let rate = option("--rate", 20).max(1);
    let Some(chromium) = chorus_testkit::chromium() else {
        eprintln!("browser benchmark: skipped (see above)");
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(&chromium, loads, keys, rate));
}

/// Reads `remote` ops until one inserts `key`.
async fn remote_inserting(ws: &mut Ws, key: &str) {
    loop {
        let frame = next_of(ws, "remote").await;
        let inserts = frame["op"]
            .as_array()
            .is_some_and(|op| op.iter().any(|part| part.as_str() == Some(key)));
        if inserts {
            return;
        }
    }
}

/// The driver's next line.
async fn answer(from_driver: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(TIMEOUT, from_driver.next_line())
        .await
        .expect("the driver answers")
        .expect("read the driver")
        .expect("the driver exited early");
    let value: Value = serde_json::from_str(&line).expect("JSON");
    assert_ne!(value["event"], "failed", "{value}");
    value
}

/// Reads frames forever, so the hub never holds this client as a slow
/// consumer while it is not otherwise listening.
async fn drain(ws: &mut Ws) {
    loop {
        next_frame(ws).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn millis(values: &Value, field: &str) -> Vec<Duration> {
    let mut out: Vec<Duration> = values
        .as_array()
        .expect("a list of loads")
        .iter()
        .map(|load| Duration::from_secs_f64(load[field].as_f64().expect("ms") / 1000.0))
        .collect();
    out.sort();
    out
}

async fn bench(chromium: &Path, loads: u64, keys: u64, rate: u64) {
    let log = std::env::temp_dir().join("chorus-bench-browser-hub.log");
    let hub = hub::start_hub(&[], &log).await;
    let (mut peer, _) = tokio_tungstenite::connect_async(hub.url.as_str())
        .await
        .expect("connect");
    send(
        &mut peer,
        json!({ "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
                "session": SESSION, "name": "peer" }),
    )
    .await;
    next_of(&mut peer, "welcome").await;
    send(
        &mut peer,
        json!({ "type": "open", "doc": DOC, "text": SEED_TEXT }),
    )
    .await;
    next_of(&mut peer, "opened").await;

    let page_url = format!("{}s/{SESSION}", hub.url.replacen("ws://", "http://", 1));
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut driver = tokio::process::Command::new("node")
        .arg(web.join("e2e/bench.mjs"))
        .args([&page_url, DOC, &loads.to_string()])
        .env("CHROMIUM", chromium)
        .current_dir(&web)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node web/e2e/bench.mjs");
    let mut to_driver = driver.stdin.take().expect("piped");
    let mut from_driver = BufReader::new(driver.stdout.take().expect("piped")).lines();
    // The page's joins and opens reach peer meanwhile: read off alongside.
    let results = tokio::select! {
        results = answer(&mut from_driver) => results,
        _ = drain(&mut peer) => unreachable!(),
    };
    let ready = tokio::select! {
        ready = answer(&mut from_driver) => ready,
        _ = drain(&mut peer) => unreachable!(),
    };
    assert_eq!(ready["event"], "ready", "{ready}");
    // Whatever the typist's join sent peer is read before the clock starts.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), peer.next()).await {}

    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let mut latencies = Vec::new();
    for i in 0..keys {
        let key = (letters[i as usize % 26] as char).to_string();
        let sent = Instant::now();
        to_driver
            .write_all(format!("{}\n", json!({ "key": key })).as_bytes())
            .await
            .expect("write to the driver");
        remote_inserting(&mut peer, &key).await;
        latencies.push(sent.elapsed());
        let typed = answer(&mut from_driver).await;
        assert_eq!(typed["event"], "typed", "{typed}");
        tokio::time::sleep(gap.saturating_sub(sent.elapsed())).await;
    }
    let _ = to_driver.write_all(b"{\"quit\":true}\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(10), driver.wait()).await;
    drop(hub);

    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load_avg.trim());
    println!("\n## page load ({loads} loads each)");
    println!("| load | to the join form p50 | max | to an editable editor p50 | max |");
    println!("|---|---|---|---|---|");
    for kind in ["cold", "warm"] {
        let form = millis(&results[kind], "form");
        let editable = millis(&results[kind], "editable");
        println!(
            "| {kind} | {} | {} | {} | {} |",
            ms(percentile(&form, 0.5)),
            ms(*form.last().expect("loads")),
            ms(percentile(&editable, 0.5)),
            ms(*editable.last().expect("loads"))
        );
    }
    latencies.sort();
    println!("\n## keystroke in the page → remote op at another client ({keys} keys, {rate}/s)");
    println!("| p50 | p90 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} |",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("keys"))
    );
}
