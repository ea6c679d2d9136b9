//! Benchmark 2 of issue 8, end to end: keystroke-to-remote latency through
//! real processes — editor A → `chorus lsp` → `chorus hub` → `chorus lsp`
//! → editor B, all on 127.0.0.1.
//!
//! Both editors are scripted as VS Code behaves (see
//! `tests/e2e/support/editor.rs`): UTF-16 positions, version +1 per change,
//! minified `contentChanges` with `rangeLength`; a `workspace/applyEdit`
//! whose version is stale is refused with `applied:false`, otherwise it is
//! applied, the `didChange` it causes (the echo) is sent, and only then is
//! the request answered.
//!
//! A types at a steady pace at a moving cursor; the clock starts when
//! A's `didChange` is queued for A's proxy's stdin and stops when B reads the
//! `workspace/applyEdit` request that first contains that keystroke from
//! B's proxy's stdout. Only A types and only inserts, so "contains" is
//! "B's buffer is long enough".
//!
//! Run: `cargo bench --bench keystroke_latency [-- --keys 1000 --rate 100]`.
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

#[path = "common/hub.rs"]
mod hub;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};

const TIMEOUT: Duration = Duration::from_secs(20);
const DOC: &str = "src/main.rs";
const SEED_TEXT: &str = "fn main() {\n    println!(\"hello\");\n}\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "keystroke latency benchmark: run it with `cargo bench --bench keystroke_latency`"
        );
        return;
    }
    let option = |name: &str, default: f64| -> f64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|at| args.get(at + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let keys = option("--keys", 1000.0).clamp(1.0, 100_000.0) as usize;
    let rate = option("--rate", 100.0).clamp(1.0, 1000.0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(keys, rate));
}

fn chorus() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chorus"))
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("chorus-bench-{}-{name}.log", std::process::id()))
}

async fn run(keys: usize, rate: f64) {
    let hub = hub::start_hub(&[], &log_path("hub")).await;
    let url = hub.url.clone();

    let session = format!("latency-{}", std::process::id());
    let a = Editor::start(&url, &session, "a").await;
    let b = Editor::start(&url, &session, "b").await;
    a.open(SEED_TEXT);
    // Let A's document reach the hub before B opens with the same text.
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.open(SEED_TEXT);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Warm-up: a few keystrokes, unmeasured.
    let mut cursor = SEED_TEXT.find("hello").expect("seed") + 5;
    let base_len = b.len();
    for i in 0..20 {
        a.type_at(cursor, if i % 10 == 9 { "\n" } else { "w" });
        cursor += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.wait_len(base_len + 20).await;

    let base_len = b.len();
    let mut sent = Vec::with_capacity(keys);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for i in 0..keys {
        ticks.tick().await;
        let key = match i % 40 {
            39 => "\n",
            n if n % 6 == 5 => " ",
            _ => "x",
        };
        sent.push(a.type_at(cursor, key));
        cursor += 1;
    }
    let typing = started.elapsed();
    b.wait_len(base_len + keys).await;

    // Latency of keystroke k: the first applyEdit after which B holds at
    // least base_len + k + 1 characters.
    let arrivals = b.arrivals();
    let mut latencies = Vec::with_capacity(keys);
    let mut next = 0;
    for (k, sent_at) in sent.iter().enumerate() {
        while arrivals[next].1 < base_len + k + 1 {
            next += 1;
        }
        latencies.push(arrivals[next].0.saturating_duration_since(*sent_at));
    }
    let apply_edits = arrivals.iter().filter(|(_, len)| *len > base_len).count();
    let converged = a.text() == b.text();
    latencies.sort_unstable();
    let pick = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1].as_secs_f64() * 1e3
    };
    println!("## keystroke → remote applyEdit, VS Code-like editors, 2 × chorus lsp + hub");
    println!(
        "{keys} keystrokes at {rate}/s ({:.1} s), {apply_edits} applyEdit requests at B, converged: {converged}",
        typing.as_secs_f64()
    );
    println!("| p50 | p90 | p99 | max |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
        pick(50.0),
        pick(90.0),
        pick(99.0),
        pick(100.0)
    );
    let violations = [a.violations(), b.violations()].concat();
    if !violations.is_empty() {
        println!("violations: {violations:?}");
    }
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
    drop(hub);
}

/// A VS Code-like editor with one open buffer.
struct Editor {
    out: mpsc::UnboundedSender<Value>,
    state: Arc<Mutex<State>>,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>,
    /// B's buffer length, published after every applied `applyEdit`.
    len_rx: watch::Receiver<usize>,
    _child: Child,
}

struct State {
    uri: String,
    text: Vec<char>,
    version: i64,
    /// `(when the applyEdit was read, buffer length after it)`.
    arrivals: Vec<(Instant, usize)>,
    violations: Vec<String>,
    len_tx: watch::Sender<usize>,
}

impl Editor {
    async fn start(url: &str, session: &str, name: &str) -> Editor {
        let mut child = Command::new(chorus())
            .args(["lsp", "--hub", url, "--session", session, "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(log_path(&format!("lsp-{name}"))).expect("proxy log"),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chorus lsp");
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (out, mut rx) = mpsc::unbounded_channel::<Value>();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let body = message.to_string();
                let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
                if stdin.write_all(frame.as_bytes()).await.is_err() || stdin.flush().await.is_err()
                {
                    return;
                }
            }
        });
        let root = format!("/tmp/chorus-bench/{session}/{name}");
        let (len_tx, len_rx) = watch::channel(0);
        let state = Arc::new(Mutex::new(State {
            uri: format!("file://{root}/{DOC}"),
            text: Vec::new(),
            version: 1,
            arrivals: Vec::new(),
            violations: Vec::new(),
            len_tx,
        }));
        let pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>> = Arc::default();
        tokio::spawn(read_loop(
            stdout,
            out.clone(),
            state.clone(),
            pending.clone(),
        ));
        let editor = Editor {
            out,
            state,
            pending,
            len_rx,
            _child: child,
        };
        let root_uri = format!("file://{root}");
        editor
            .request(
                1,
                "initialize",
                json!({
                    "processId": std::process::id(),
                    "clientInfo": { "name": "Visual Studio Code", "version": "bench" },
                    "rootPath": root,
                    "rootUri": root_uri,
                    "workspaceFolders": [{ "uri": root_uri, "name": name }],
                    "capabilities": {
                        "general": { "positionEncodings": ["utf-16"] },
                        "workspace": {
                            "applyEdit": true,
                            "workspaceEdit": { "documentChanges": true },
                            "workspaceFolders": true,
                        },
                        "textDocument": {
                            "synchronization": { "dynamicRegistration": false, "didSave": true },
                        },
                    },
                }),
            )
            .await;
        editor.notify("initialized", json!({}));
        editor
    }

    async fn request(&self, id: i64, method: &str, params: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let _ = self.out.send(json!({
            "jsonrpc": "2.0", "id": id, "method": method, "params": params,
        }));
        tokio::time::timeout(TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in time"))
            .unwrap_or_else(|_| panic!("{method}: the proxy went away"))
    }

    fn notify(&self, method: &str, params: Value) {
        let _ = self
            .out
            .send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn open(&self, text: &str) {
        let mut state = self.state.lock().unwrap();
        state.text = text.chars().collect();
        let _ = state.len_tx.send(state.text.len());
        let _ = self.out.send(json!({
            "jsonrpc": "2.0", "method": "textDocument/didOpen",
            "params": { "textDocument": {
                "uri": state.uri, "languageId": "rust", "version": state.version, "text": text,
            }},
        }));
    }

    /// Types `key` at character `at` and reports it; returns when the
    /// `didChange` was queued.
    fn type_at(&self, at: usize, key: &str) -> Instant {
        let mut state = self.state.lock().unwrap();
        let start = position(&state.text, at);
        state.text.splice(at..at, key.chars());
        state.version += 1;
        let change = json!({
            "range": { "start": start, "end": start },
            "rangeLength": 0,
            "text": key,
        });
        let now = Instant::now();
        let _ = self.out.send(did_change(&state, vec![change]));
        now
    }

    fn len(&self) -> usize {
        self.state.lock().unwrap().text.len()
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().text.iter().collect()
    }

    fn arrivals(&self) -> Vec<(Instant, usize)> {
        self.state.lock().unwrap().arrivals.clone()
    }

    fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    async fn wait_len(&self, len: usize) {
        let mut rx = self.len_rx.clone();
        let reached = tokio::time::timeout(TIMEOUT, rx.wait_for(|have| *have >= len)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "B's buffer never reached {len} characters (has {})",
            self.len()
        );
    }

    async fn shutdown(&self) -> Value {
        let answer = self.request(2, "shutdown", Value::Null).await;
        self.notify("exit", Value::Null);
        answer
    }
}

fn did_change(state: &State, changes: Vec<Value>) -> Value {
    json!({
        "jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": {
            "textDocument": { "uri": state.uri, "version": state.version },
            "contentChanges": changes,
        },
    })
}

/// LSP position (UTF-16) of character `idx`.
fn position(text: &[char], idx: usize) -> Value {
    let line = text[..idx].iter().filter(|&&c| c == '\n').count();
    let line_start = text[..idx]
        .iter()
        .rposition(|&c| c == '\n')
        .map_or(0, |i| i + 1);
    let character: usize = text[line_start..idx].iter().map(|c| c.len_utf16()).sum();
    json!({ "line": line, "character": character })
}

/// Character offset of an LSP position (UTF-16), clamped to its line.
fn offset(text: &[char], pos: &Value) -> usize {
    let line = pos["line"].as_u64().unwrap_or(0) as usize;
    let character = pos["character"].as_u64().unwrap_or(0) as usize;
    let mut idx = 0;
    for _ in 0..line {
        match text[idx..].iter().position(|&c| c == '\n') {
            Some(nl) => idx += nl + 1,
            None => return text.len(),
        }
    }
    let mut units = 0;
    while idx < text.len() && text[idx] != '\n' && units < character {
        units += text[idx].len_utf16();
        idx += 1;
    }
    idx
}

async fn read_loop(
    stdout: ChildStdout,
    out: mpsc::UnboundedSender<Value>,
    state: Arc<Mutex<State>>,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>,
) {
    let mut reader = BufReader::new(stdout);
    while let Some(message) = read_message(&mut reader).await {
        let arrived = Instant::now();
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").cloned();
        match (method, id) {
            (Some("workspace/applyEdit"), Some(id)) => {
                let result = apply_edit(&state, &out, &message["params"], arrived);
                let _ = out.send(json!({ "jsonrpc": "2.0", "id": id, "result": result }));
            }
            (Some("workspace/configuration"), Some(id)) => {
                let items = message["params"]["items"].as_array().map_or(0, Vec::len);
                let _ = out.send(json!({
                    "jsonrpc": "2.0", "id": id, "result": vec![Value::Null; items],
                }));
            }
            (Some(_), Some(id)) => {
                let _ = out.send(json!({ "jsonrpc": "2.0", "id": id, "result": null }));
            }
            (None, Some(id)) => {
                if let Some(waiter) = id
                    .as_i64()
                    .and_then(|id| pending.lock().unwrap().remove(&id))
                {
                    let _ = waiter.send(message);
                }
            }
            _ => {}
        }
    }
}

/// VS Code's handling of one `applyEdit`: refuse a stale version, else
/// apply every edit, report it (one minified `didChange`, last edit first)
/// and only then answer.
fn apply_edit(
    state: &Mutex<State>,
    out: &mpsc::UnboundedSender<Value>,
    params: &Value,
    arrived: Instant,
) -> Value {
    let mut state = state.lock().unwrap();
    let Some(change) = params["edit"]["documentChanges"]
        .as_array()
        .and_then(|c| c.first())
    else {
        state
            .violations
            .push(format!("applyEdit without documentChanges: {params}"));
        return json!({ "applied": false });
    };
    if change["textDocument"]["uri"].as_str() != Some(state.uri.as_str()) {
        return json!({ "applied": false, "failureReason": "document is not open" });
    }
    if let Some(version) = change["textDocument"]["version"].as_i64() {
        if version != state.version {
            return json!({ "applied": false });
        }
    }
    let mut edits: Vec<(usize, usize, Vec<char>)> = change["edits"]
        .as_array()
        .map(|edits| {
            edits
                .iter()
                .map(|edit| {
                    (
                        offset(&state.text, &edit["range"]["start"]),
                        offset(&state.text, &edit["range"]["end"]),
                        edit["newText"].as_str().unwrap_or("").chars().collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    edits.sort_by_key(|(start, end, _)| (*start, *end));
    let mut changes = Vec::new();
    for (start, end, new) in edits.into_iter().rev() {
        // Minify: drop what the replacement keeps at either end.
        let old = &state.text[start..end];
        let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
        let max_suffix = (old.len() - prefix).min(new.len() - prefix);
        let suffix = old
            .iter()
            .rev()
            .zip(new.iter().rev())
            .take(max_suffix)
            .take_while(|(a, b)| a == b)
            .count();
        let (s, e) = (start + prefix, end - suffix);
        let inserted: Vec<char> = new[prefix..new.len() - suffix].to_vec();
        if s == e && inserted.is_empty() {
            continue;
        }
        let range_length: usize = state.text[s..e].iter().map(|c| c.len_utf16()).sum();
        changes.push(json!({
            "range": { "start": position(&state.text, s), "end": position(&state.text, e) },
            "rangeLength": range_length,
            "text": String::from_iter(&inserted),
        }));
        state.text.splice(s..e, inserted);
    }
    if !changes.is_empty() {
        state.version += 1;
        let _ = out.send(did_change(&state, changes));
    }
    let len = state.text.len();
    state.arrivals.push((arrived, len));
    let _ = state.len_tx.send(len);
    json!({ "applied": true })
}

async fn read_message(reader: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut length = None;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}
