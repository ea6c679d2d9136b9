//! Issue 13: how long sharing a project and joining it take, and what the
//! hub holds per file.
//!
//! Generates a project in a temp dir — 999 source-like files in nested
//! folders plus a `.gitignore` (1,000 shared files, ~20 MB), and a few
//! files the `.gitignore` leaves out — then, against a fresh
//! `chorus hub --in-memory --open` per run:
//!
//! 1. **share**: runs the real `chorus share DIR --hub … --session …
//!    --name …` and times it from spawn to exit (it must report every file
//!    shared);
//! 2. **join**: starts `chorus lsp --sync-files` in an empty folder, drives
//!    it over stdio just far enough to initialize, and times from spawn
//!    until every shared file is on disk with its size;
//! 3. **memory**: the hub's `VmRSS` (`/proc/PID/status`) before the share,
//!    after it, and after the join.
//!
//! Run: `cargo bench --bench workspace_share [-- --files 1000 --mb 20
//! --runs 3]`. Without `--bench` (as under `cargo test --all-targets`) it
//! does nothing.

#[path = "common/hub.rs"]
mod hub;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};

const TIMEOUT: Duration = Duration::from_secs(300);
/// The hub's default `--max-file-bytes`; every file stays under it.
const MAX_FILE_BYTES: usize = 512 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("workspace share benchmark: run it with `cargo bench --bench workspace_share`");
        return;
    }
    let option = |name: &str, default: f64| -> f64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|at| args.get(at + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let files = option("--files", 1000.0).clamp(2.0, 20_000.0) as usize;
    let megabytes = option("--mb", 20.0).clamp(0.01, 1000.0);
    let runs = option("--runs", 3.0).clamp(1.0, 20.0) as usize;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(files, megabytes, runs));
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("chorus-bench-{}-{name}.log", std::process::id()))
}

/// One run's measurements.
struct Sample {
    share: Duration,
    join: Duration,
    rss_before_kib: u64,
    rss_shared_kib: u64,
    rss_joined_kib: u64,
}

async fn run(files: usize, megabytes: f64, runs: usize) {
    let root = tempfile::tempdir().expect("temp dir");
    let project = root.path().join("project");
    let expected = generate(&project, files, (megabytes * 1e6) as usize);
    let total: usize = expected.values().sum();
    println!(
        "project: {} shared files, {} bytes ({:.1} MB), largest {} bytes, in {}",
        expected.len(),
        total,
        total as f64 / 1e6,
        expected.values().max().copied().unwrap_or(0),
        project.display()
    );
    println!("| run | share | join (sync-files, to all on disk) | hub RSS before / after share / after join | hub RSS per file |");
    println!("|---:|---:|---:|---:|---:|");
    let mut samples = Vec::new();
    for index in 0..runs {
        let sample = one_run(root.path(), &project, &expected, index).await;
        println!(
            "| {} | {:.2} s | {:.2} s | {:.1} / {:.1} / {:.1} MiB | {:.1} KiB |",
            index + 1,
            sample.share.as_secs_f64(),
            sample.join.as_secs_f64(),
            sample.rss_before_kib as f64 / 1024.0,
            sample.rss_shared_kib as f64 / 1024.0,
            sample.rss_joined_kib as f64 / 1024.0,
            per_file_kib(&sample, expected.len()),
        );
        samples.push(sample);
    }
    let median = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "median of {runs}: share {:.2} s, join {:.2} s, hub RSS after share {:.1} MiB, {:.1} KiB per file ({} bytes of text per file on average)",
        median(samples.iter().map(|s| s.share.as_secs_f64()).collect()),
        median(samples.iter().map(|s| s.join.as_secs_f64()).collect()),
        median(samples.iter().map(|s| s.rss_shared_kib as f64 / 1024.0).collect()),
        median(samples.iter().map(|s| per_file_kib(s, expected.len())).collect()),
        total / expected.len(),
    );
}

fn per_file_kib(sample: &Sample, files: usize) -> f64 {
    (sample.rss_shared_kib as f64 - sample.rss_before_kib as f64) / files as f64
}

async fn one_run(
    tmp: &Path,
    project: &Path,
    expected: &BTreeMap<String, usize>,
    index: usize,
) -> Sample {
    let hub = hub::start_hub(&[], &log_path(&format!("hub-{index}"))).await;
    let session = format!("share-{}-{index}", std::process::id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before_kib = rss_kib(hub.pid);

    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("share")
        .arg(project)
        .args(["--hub", &hub.url, "--session", &session, "--name", "sharer"])
        .env("CHORUS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, output)
        .await
        .expect("chorus share finished in time")
        .expect("run chorus share");
    let share = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chorus share failed:\n{stderr}");
    let said = format!("shared {} files with session", expected.len());
    assert!(stderr.contains(&said), "expected {said:?}:\n{stderr}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_shared_kib = rss_kib(hub.pid);

    let workspace = tmp.join(format!("joiner-{index}"));
    std::fs::create_dir_all(&workspace).expect("create the joiner's folder");
    let join = join(&hub.url, &session, &workspace, expected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_joined_kib = rss_kib(hub.pid);
    drop(hub);
    let _ = std::fs::remove_dir_all(&workspace);
    Sample {
        share,
        join,
        rss_before_kib,
        rss_shared_kib,
        rss_joined_kib,
    }
}

/// Starts a syncing `chorus lsp` in `workspace` and waits until every
/// expected file is there with its size; the time from spawn.
async fn join(
    url: &str,
    session: &str,
    workspace: &Path,
    expected: &BTreeMap<String, usize>,
) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["lsp", "--sync-files", "--hub", url, "--session", session])
        .args(["--name", "joiner"])
        .current_dir(workspace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(log_path("joiner")).expect("joiner log"),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chorus lsp");
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let root = workspace.display().to_string();
    let root_uri = format!("file://{root}");
    send(
        &mut stdin,
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": std::process::id(),
            "clientInfo": { "name": "Visual Studio Code", "version": "bench" },
            "rootPath": root,
            "rootUri": root_uri,
            "workspaceFolders": [{ "uri": root_uri, "name": "joiner" }],
            "capabilities": {
                "general": { "positionEncodings": ["utf-16"] },
                "workspace": { "applyEdit": true, "workspaceEdit": { "documentChanges": true } },
            },
        }}),
    )
    .await;
    // Answer whatever the proxy asks; `initialized` once initialize is
    // answered.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        while let Some(message) = read_message(&mut reader).await {
            let _ = tx.send(message);
        }
    });
    let mut initialized = false;
    let all_there = loop {
        if started.elapsed() > TIMEOUT {
            break false;
        }
        while let Ok(message) = rx.try_recv() {
            let id = message.get("id").cloned();
            match (message.get("method").and_then(Value::as_str), id) {
                (None, Some(id)) if id == json!(1) && !initialized => {
                    send(
                        &mut stdin,
                        &json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }),
                    )
                    .await;
                    initialized = true;
                }
                (Some("workspace/configuration"), Some(id)) => {
                    let items = message["params"]["items"].as_array().map_or(0, Vec::len);
                    send(
                        &mut stdin,
                        &json!({ "jsonrpc": "2.0", "id": id, "result": vec![Value::Null; items] }),
                    )
                    .await;
                }
                (Some(_), Some(id)) => {
                    send(
                        &mut stdin,
                        &json!({ "jsonrpc": "2.0", "id": id, "result": null }),
                    )
                    .await;
                }
                _ => {}
            }
        }
        if initialized && on_disk(workspace, expected) {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    let missing = expected
        .iter()
        .filter(|(path, size)| {
            std::fs::metadata(workspace.join(path.as_str()))
                .map_or(true, |m| m.len() != **size as u64)
        })
        .count();
    assert!(
        all_there,
        "the joiner's folder still misses {missing} files"
    );
    let _ = child.kill().await;
    reader.abort();
    took
}

/// Every expected file exists under `workspace` with its size.
fn on_disk(workspace: &Path, expected: &BTreeMap<String, usize>) -> bool {
    expected.iter().all(|(path, size)| {
        std::fs::metadata(workspace.join(path)).is_ok_and(|m| m.len() == *size as u64)
    })
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Writes the project: `files - 1` source-like files of 4–36 KB (scaled
/// to `bytes` in all) under nested folders, a `.gitignore`, and files it
/// leaves out (`target/`, `*.log`). Returns what must be shared: path →
/// size.
fn generate(dir: &Path, files: usize, bytes: usize) -> BTreeMap<String, usize> {
    let mut rng = StdRng::seed_from_u64(13);
    let mut expected = BTreeMap::new();
    let gitignore = "/target/\n*.log\nnode_modules/\n";
    write(dir, ".gitignore", gitignore);
    expected.insert(".gitignore".to_owned(), gitignore.len());
    let sources = files - 1;
    let mean = (bytes.saturating_sub(gitignore.len()) / sources).max(64);
    let crates = ["core", "server", "client", "protocol", "storage", "cli"];
    let kinds = [
        ("rs", "src"),
        ("rs", "tests"),
        ("ts", "web/src"),
        ("py", "scripts"),
        ("md", "docs"),
    ];
    for index in 0..sources {
        let krate = crates[index % crates.len()];
        let (ext, folder) = kinds[(index / crates.len()) % kinds.len()];
        let module = (index / 30) % 7;
        let path = format!("crates/{krate}/{folder}/module_{module}/file_{index:04}.{ext}");
        let size = rng
            .random_range(mean / 5..=mean * 9 / 5)
            .min(MAX_FILE_BYTES - 1024);
        let text = source_like(index, size);
        write(dir, &path, &text);
        expected.insert(path, text.len());
    }
    // Left out by the .gitignore: never shared, never on the joiner's disk.
    for index in 0..20 {
        write(
            dir,
            &format!("target/debug/build/out_{index}.rs"),
            &source_like(index, 8000),
        );
        write(dir, &format!("logs/run_{index}.log"), "started\nstopped\n");
    }
    expected
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("create folders");
    std::fs::write(path, text).expect("write a project file");
}

/// Whole source-like lines, `size` bytes or a little less.
fn source_like(file: usize, size: usize) -> String {
    let mut text = String::with_capacity(size + 256);
    let mut block = String::new();
    for item in 0.. {
        block.clear();
        let _ = write!(
            block,
            "/// Weighs item {item} of file {file} — “naïve” but exact.\n\
             pub fn item_{item}(input: &[u32], scale: f64) -> Option<f64> {{\n\
             \x20   let mut total = 0.0;\n\
             \x20   for (index, value) in input.iter().enumerate() {{\n\
             \x20       if index % {} == 0 {{\n\
             \x20           total += f64::from(*value) * scale;\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   total.is_finite().then_some(total)\n\
             }}\n\n",
            item % 7 + 2
        );
        for line in block.split_inclusive('\n') {
            if text.len() + line.len() > size {
                return text;
            }
            text.push_str(line);
        }
    }
    text
}

async fn send(stdin: &mut ChildStdin, message: &Value) {
    let body = message.to_string();
    let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    let _ = stdin.write_all(frame.as_bytes()).await;
    let _ = stdin.flush().await;
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
