//! Benchmark 2 of issue 8 and issue 14, end to end: keystroke-to-remote
//! latency through real processes — editor A → `chorus lsp` → `chorus hub`
//! → `chorus lsp` → editor B, all on 127.0.0.1 — and what each proxy
//! spends per keystroke, on a document of a chosen size.
//!
//! Both editors are scripted as one kind of editor behaves (see
//! `tests/e2e/support/editor.rs`):
//!
//! * `--editor vscode` (default): UTF-16 positions, version +1 per change,
//!   minified `contentChanges` with `rangeLength`; a `workspace/applyEdit`
//!   whose version is stale is refused with `applied:false`, otherwise it
//!   is applied, the `didChange` it causes (the echo) is sent, and only
//!   then is the request answered.
//! * `--editor neovim`: UTF-32 positions (it offers utf-8, utf-16 and
//!   utf-32; the proxy picks utf-32), versions from `changedtick`, which
//!   jumps by 1–3 per change; a stale `applyEdit` is skipped and still
//!   answered `applied:true`; one `didChange` per applied `TextEdit`; a
//!   typed key is reported as the whole current line replaced (the
//!   line-wise way `on_lines` sees insert mode), not a minimal range.
//!
//! The seed (`--doc-kib N`, or `--doc-bytes N`; default 1 KiB) is
//! source-like text (Rust functions with comments, some non-ASCII) cut at a
//! line end; A types in the middle of it, on a line of its own. The clock
//! starts when A's `didChange` is queued for A's proxy's stdin and stops
//! when B reads the `workspace/applyEdit` request that first contains that
//! keystroke from B's proxy's stdout. Only A types and only inserts, so
//! "contains" is "B's buffer is long enough". Each proxy's CPU is
//! `utime + stime` from `/proc/PID/stat` over the typing (until B has
//! every key), divided by the keystrokes.
//!
//! The hub gets `--max-message-bytes` / `--max-document-chars` raised when
//! the seed needs it, unless `--hub-defaults` is given.
//!
//! Run: `cargo bench --bench keystroke_latency [-- --keys 1000 --rate 100
//! --doc-kib 1 --editor vscode --hub-defaults]`. Without `--bench` (as under `cargo test
//! --all-targets`) it does nothing.

#[path = "common/hub.rs"]
mod hub;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ropey::Rope;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};

const TIMEOUT: Duration = Duration::from_secs(60);
const DOC: &str = "src/main.rs";
/// The hub's default `--max-message-bytes` (`protocol::wire`).
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    VsCode,
    Neovim,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "keystroke latency benchmark: run it with `cargo bench --bench keystroke_latency`"
        );
        return;
    }
    let text_option = |name: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == name)
            .and_then(|at| args.get(at + 1))
            .map(String::as_str)
    };
    let option = |name: &str, default: f64| -> f64 {
        text_option(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let keys = option("--keys", 1000.0).clamp(1.0, 100_000.0) as usize;
    let rate = option("--rate", 100.0).clamp(1.0, 1000.0);
    let doc_bytes = match text_option("--doc-bytes") {
        Some(bytes) => bytes.parse().expect("--doc-bytes N"),
        None => (option("--doc-kib", 1.0) * 1024.0) as usize,
    }
    .clamp(64, 1 << 30);
    let kind = match text_option("--editor").unwrap_or("vscode") {
        "vscode" => Kind::VsCode,
        "neovim" => Kind::Neovim,
        other => panic!("--editor must be vscode or neovim, not {other:?}"),
    };
    // Keep the hub's default caps even where the document needs more.
    let hub_defaults = args.iter().any(|a| a == "--hub-defaults");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(keys, rate, doc_bytes, kind, hub_defaults));
}

fn chorus() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chorus"))
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("chorus-bench-{}-{name}.log", std::process::id()))
}

/// Source-like text of at most `bytes` bytes, whole lines: Rust functions
/// with doc comments, string literals (escaped in JSON) and a little
/// non-ASCII (two UTF-16 units for the emoji), ~40 bytes a line.
fn seed_text(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 512);
    let mut block = String::new();
    for item in 0.. {
        block.clear();
        let _ = write!(
            block,
            "/// Weighs item {item} of the input — “naïve” but exact.\n\
             pub fn item_{item}(input: &[u32], scale: f64) -> Option<f64> {{\n\
             \x20   let mut total = 0.0;\n\
             \x20   for (index, value) in input.iter().enumerate() {{\n\
             \x20       if index % {} == 0 {{\n\
             \x20           total += f64::from(*value) * scale;\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   tracing::debug!(item = {item}, \"weighed ✓ 🦀\");\n\
             \x20   total.is_finite().then_some(total)\n\
             }}\n\n",
            item % 7 + 2
        );
        if text.len() + block.len() > bytes {
            for line in block.split_inclusive('\n') {
                if text.len() + line.len() > bytes {
                    break;
                }
                text.push_str(line);
            }
            break;
        }
        text.push_str(&block);
    }
    text
}

/// `utime + stime` of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn run(keys: usize, rate: f64, doc_bytes: usize, kind: Kind, hub_defaults: bool) {
    let seed = seed_text(doc_bytes);
    // What the hub must accept: the `open` frame carries the text
    // JSON-escaped, and the document's characters grow by `keys`.
    let open_frame = serde_json::to_string(&seed).expect("json").len() + 4096;
    let chars = seed.chars().count();
    let mut hub_args: Vec<String> = Vec::new();
    if open_frame > DEFAULT_MAX_MESSAGE_BYTES && !hub_defaults {
        hub_args.extend(["--max-message-bytes".into(), open_frame.to_string()]);
    }
    if chars + keys + 1024 > 16 * 1024 * 1024 && !hub_defaults {
        hub_args.extend([
            "--max-document-chars".into(),
            (chars + keys + 1024).to_string(),
        ]);
    }
    let hub_arg_refs: Vec<&str> = hub_args.iter().map(String::as_str).collect();
    let hub = hub::start_hub(&hub_arg_refs, &log_path("hub")).await;
    let url = hub.url.clone();
    println!(
        "seed: {} bytes, {} chars, {} lines; open frame ≈ {} bytes; extra hub flags: {:?}",
        seed.len(),
        chars,
        seed.lines().count(),
        open_frame - 4096,
        hub_args
    );

    let session = format!("latency-{}", std::process::id());
    let a = Editor::start(&url, &session, "a", kind).await;
    let b = Editor::start(&url, &session, "b", kind).await;
    a.open(&seed);
    // Let A's document reach the hub before B opens with the same text.
    tokio::time::sleep(Duration::from_millis(300 + (doc_bytes / 2000) as u64)).await;
    b.open(&seed);
    tokio::time::sleep(Duration::from_millis(500 + (doc_bytes / 2000) as u64)).await;
    let refused: Vec<String> = [a.messages(), b.messages()]
        .concat()
        .into_iter()
        .filter(|m| m.contains("too large"))
        .collect();
    if !refused.is_empty() {
        println!("not shared: the proxy said {refused:?}");
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
        return;
    }

    // The cursor: the end of the middle line; the warm-up's first key opens
    // a line of its own there.
    let mut cursor = {
        let state = a.state.lock().unwrap();
        let line = state.text.char_to_line(state.text.len_chars() / 2);
        state.text.line_to_char(line + 1) - 1
    };
    // Warm-up: a few keystrokes, unmeasured.
    let base_len = b.len();
    for i in 0..20 {
        a.type_at(cursor, if i % 10 == 0 { "\n" } else { "w" });
        cursor += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !b.reaches_len(base_len + 20, Duration::from_secs(20)).await {
        // E.g. an open frame over the hub's --max-message-bytes: the hub
        // answers TooLarge, which the proxy logs but does not show.
        println!(
            "not shared: the warm-up keys never reached B (hub or proxy refused the document? see {})",
            log_path("lsp-a").display()
        );
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
        return;
    }

    let base_len = b.len();
    let mut sent = Vec::with_capacity(keys);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (cpu_a0, cpu_b0) = (cpu_seconds(a.pid), cpu_seconds(b.pid));
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
    let (cpu_a, cpu_b) = (cpu_seconds(a.pid) - cpu_a0, cpu_seconds(b.pid) - cpu_b0);

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
    // The slowest keystrokes and when they were typed: periodic work (the
    // proxies' checksum audits every 5 s) shows up as equal spacing.
    let mut slowest: Vec<(Duration, f64)> = latencies
        .iter()
        .zip(&sent)
        .map(|(latency, at)| (*latency, at.duration_since(started).as_secs_f64()))
        .collect();
    slowest.sort_by_key(|(latency, _)| std::cmp::Reverse(*latency));
    let slowest: Vec<String> = slowest
        .iter()
        .take(10)
        .map(|(latency, at)| format!("{:.1} ms at {at:.2} s", latency.as_secs_f64() * 1e3))
        .collect();
    let apply_edits = arrivals.iter().filter(|(_, len)| *len > base_len).count();
    let converged = a.text() == b.text();
    assert!(converged, "A and B must end with the same text");
    latencies.sort_unstable();
    let pick = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1].as_secs_f64() * 1e3
    };
    println!("## keystroke → remote applyEdit, {kind:?}-like editors, 2 × chorus lsp + hub");
    println!(
        "{keys} keystrokes at {rate}/s ({:.1} s) in a {} byte document, {apply_edits} applyEdit requests at B, converged: {converged}",
        typing.as_secs_f64(),
        seed.len()
    );
    println!("| p50 | p90 | p99 | max | A's proxy CPU / key | B's proxy CPU / key |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.3} ms | {:.3} ms |",
        pick(50.0),
        pick(90.0),
        pick(99.0),
        pick(100.0),
        cpu_a * 1e3 / keys as f64,
        cpu_b * 1e3 / keys as f64,
    );
    println!("slowest 10: {}", slowest.join(", "));
    let violations = [a.violations(), b.violations()].concat();
    if !violations.is_empty() {
        println!("violations: {violations:?}");
    }
    let skipped = a.skipped() + b.skipped();
    if skipped > 0 {
        println!("stale applyEdits skipped (answered applied:true): {skipped}");
    }
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
    drop(hub);
}

/// A scripted editor with one open buffer.
struct Editor {
    out: mpsc::UnboundedSender<Value>,
    state: Arc<Mutex<State>>,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>,
    /// B's buffer length, published after every applied `applyEdit`.
    len_rx: watch::Receiver<usize>,
    pid: u32,
    _child: Child,
}

struct State {
    kind: Kind,
    uri: String,
    text: Rope,
    version: i64,
    /// Neovim's `changedtick` steps.
    changedtick: StdRng,
    /// `(when the applyEdit was read, buffer length after it)`.
    arrivals: Vec<(Instant, usize)>,
    /// `window/showMessage` texts from the proxy.
    messages: Vec<String>,
    violations: Vec<String>,
    /// Stale edits skipped and answered `applied:true` (Neovim).
    skipped: usize,
    len_tx: watch::Sender<usize>,
}

impl State {
    fn version_step(&mut self) -> i64 {
        match self.kind {
            Kind::VsCode => 1,
            Kind::Neovim => self.changedtick.random_range(1..=3),
        }
    }
}

impl Editor {
    async fn start(url: &str, session: &str, name: &str, kind: Kind) -> Editor {
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
        let pid = child.id().expect("proxy pid");
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
            kind,
            uri: format!("file://{root}/{DOC}"),
            text: Rope::new(),
            version: 1,
            changedtick: StdRng::seed_from_u64(u64::from(name.as_bytes()[0])),
            arrivals: Vec::new(),
            messages: Vec::new(),
            violations: Vec::new(),
            skipped: 0,
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
            pid,
            _child: child,
        };
        let root_uri = format!("file://{root}");
        let (client, encodings) = match kind {
            Kind::VsCode => ("Visual Studio Code", json!(["utf-16"])),
            Kind::Neovim => ("Neovim", json!(["utf-8", "utf-16", "utf-32"])),
        };
        editor
            .request(
                1,
                "initialize",
                json!({
                    "processId": std::process::id(),
                    "clientInfo": { "name": client, "version": "bench" },
                    "rootPath": root,
                    "rootUri": root_uri,
                    "workspaceFolders": [{ "uri": root_uri, "name": name }],
                    "capabilities": {
                        "general": { "positionEncodings": encodings },
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
        state.text = Rope::from_str(text);
        let _ = state.len_tx.send(state.text.len_chars());
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
        let state = &mut *state;
        let change = match state.kind {
            Kind::VsCode => {
                let start = position(&state.text, at, state.kind);
                state.text.insert(at, key);
                json!({
                    "range": { "start": start, "end": start },
                    "rangeLength": 0,
                    "text": key,
                })
            }
            Kind::Neovim => {
                // The line as it was, replaced by the line as it is.
                let line = state.text.char_to_line(at);
                let line_start = state.text.line_to_char(line);
                let old_end = line_end(&state.text, line);
                state.text.insert(at, key);
                let new_end = old_end + key.chars().count();
                json!({
                    "range": {
                        "start": { "line": line, "character": 0 },
                        "end": { "line": line, "character": old_end - line_start },
                    },
                    "text": state.text.slice(line_start..new_end).to_string(),
                })
            }
        };
        state.version += state.version_step();
        let now = Instant::now();
        let _ = self.out.send(did_change(state, vec![change]));
        now
    }

    fn len(&self) -> usize {
        self.state.lock().unwrap().text.len_chars()
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().text.to_string()
    }

    fn arrivals(&self) -> Vec<(Instant, usize)> {
        self.state.lock().unwrap().arrivals.clone()
    }

    fn messages(&self) -> Vec<String> {
        self.state.lock().unwrap().messages.clone()
    }

    fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    fn skipped(&self) -> usize {
        self.state.lock().unwrap().skipped
    }

    /// Whether B's buffer reaches `len` characters within `wait`.
    async fn reaches_len(&self, len: usize, wait: Duration) -> bool {
        let mut rx = self.len_rx.clone();
        let reached = tokio::time::timeout(wait, rx.wait_for(|have| *have >= len)).await;
        matches!(reached, Ok(Ok(_)))
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

/// Character index of the end of `line`, before its line break.
fn line_end(text: &Rope, line: usize) -> usize {
    let start = text.line_to_char(line);
    let slice = text.line(line);
    let mut len = slice.len_chars();
    while len > 0 && matches!(slice.char(len - 1), '\n' | '\r') {
        len -= 1;
    }
    start + len
}

/// LSP position of character `idx`: UTF-16 units (VS Code) or characters
/// (Neovim, utf-32).
fn position(text: &Rope, idx: usize, kind: Kind) -> Value {
    let line = text.char_to_line(idx);
    let line_start = text.line_to_char(line);
    let character = match kind {
        Kind::VsCode => text.char_to_utf16_cu(idx) - text.char_to_utf16_cu(line_start),
        Kind::Neovim => idx - line_start,
    };
    json!({ "line": line, "character": character })
}

/// Character offset of an LSP position, clamped to its line.
fn offset(text: &Rope, pos: &Value, kind: Kind) -> usize {
    let line = pos["line"].as_u64().unwrap_or(0) as usize;
    let character = pos["character"].as_u64().unwrap_or(0) as usize;
    if line >= text.len_lines() {
        return text.len_chars();
    }
    let start = text.line_to_char(line);
    let end = line_end(text, line);
    let idx = match kind {
        Kind::VsCode => {
            let units = text.char_to_utf16_cu(start) + character;
            text.utf16_cu_to_char(units.min(text.len_utf16_cu()))
        }
        Kind::Neovim => start + character,
    };
    idx.min(end)
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
            (Some("window/showMessage"), None) => {
                let text = message["params"]["message"].as_str().unwrap_or("");
                state.lock().unwrap().messages.push(text.to_owned());
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

/// One `applyEdit` as the editor handles it. VS Code: refuse a stale
/// version, else apply every edit and report it (one minified `didChange`,
/// last edit first), and only then answer. Neovim: skip a stale edit but
/// answer `applied:true`; otherwise one `didChange` per edit, last first.
fn apply_edit(
    state: &Mutex<State>,
    out: &mpsc::UnboundedSender<Value>,
    params: &Value,
    arrived: Instant,
) -> Value {
    let mut state = state.lock().unwrap();
    let state = &mut *state;
    let kind = state.kind;
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
        match kind {
            Kind::VsCode if version != state.version => return json!({ "applied": false }),
            // `if version > 0 and buf_version > version then return`.
            Kind::Neovim if version > 0 && state.version > version => {
                state.skipped += 1;
                return json!({ "applied": true });
            }
            _ => {}
        }
    }
    let mut edits: Vec<(usize, usize, Vec<char>)> = change["edits"]
        .as_array()
        .map(|edits| {
            edits
                .iter()
                .map(|edit| {
                    (
                        offset(&state.text, &edit["range"]["start"], kind),
                        offset(&state.text, &edit["range"]["end"], kind),
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
        let old: Vec<char> = state.text.slice(start..end).chars().collect();
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
        let inserted = String::from_iter(&new[prefix..new.len() - suffix]);
        if s == e && inserted.is_empty() {
            continue;
        }
        let mut change = json!({
            "range": { "start": position(&state.text, s, kind), "end": position(&state.text, e, kind) },
            "text": inserted,
        });
        if kind == Kind::VsCode {
            let units = state.text.char_to_utf16_cu(e) - state.text.char_to_utf16_cu(s);
            change["rangeLength"] = json!(units);
        }
        state.text.remove(s..e);
        state.text.insert(s, &inserted);
        match kind {
            Kind::VsCode => changes.push(change),
            Kind::Neovim => {
                state.version += state.version_step();
                let _ = out.send(did_change(state, vec![change]));
            }
        }
    }
    if !changes.is_empty() {
        state.version += 1;
        let _ = out.send(did_change(state, changes));
    }
    let len = state.text.len_chars();
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
