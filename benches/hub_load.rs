//! Benchmarks 2 (load) and 3 (fan-out) of issue 8: many ot.js clients
//! speaking the hub protocol directly (WebSocket + JSON) to a real
//! `chorus hub` on 127.0.0.1.
//!
//! Every client follows the protocol: it types into its own copy of the
//! document, sends ops based on the last revision it saw through
//! `OtClient` (one outstanding op, later keystrokes composed into a
//! buffer), transforms remote ops against what it has in flight, and
//! applies them. At the end every session must have converged: same
//! revision and text at every client. Anything else counts as an error.
//!
//! Latency is from the keystroke (the oldest keystroke an op carries) to
//! the `remote` frame carrying it being decoded at each other client of
//! the session. Hub CPU comes from `/proc/PID/stat`, hub memory from
//! `/proc/PID/status`.
//!
//! ```text
//! cargo bench --bench hub_load -- load     # 200 sessions × 4 clients × 10/s, 30 s
//! cargo bench --bench hub_load -- fanout   # 1 session × 50 clients, one typist: ack-paced, then 100/s
//! ```
//! Options: `--sessions N --clients N --rate R --secs S` (rate 0 = as fast
//! as acks allow; with `fanout` only client 0 types). Without `--bench`
//! (as under `cargo test --all-targets`) it does nothing. All traffic goes
//! to 127.0.0.1 and every phase has a deadline.

#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hub.rs"]
mod hub;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_protocol::client::{OtClient, Outgoing};
use chorus_protocol::ot::{apply_to_rope, Operation, OperationSeq, WireOp};
use chorus_protocol::wire::{ServerMsg, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ropey::Rope;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for anything (connect, welcome, convergence) before the
/// client gives up and counts an error.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections opened at once while the load ramps up.
const CONNECT_PARALLELISM: usize = 32;

#[derive(Clone, Debug)]
struct Config {
    name: &'static str,
    sessions: usize,
    clients: usize,
    /// Keystrokes per second per typist; 0 = next keystroke as soon as the
    /// previous op is acknowledged.
    rate: f64,
    secs: f64,
    /// Only client 0 of each session types.
    one_typist: bool,
    /// Extra `chorus hub` flags.
    hub_args: &'static [&'static str],
    /// Hostile clients attack the hub while the others type (soak).
    hostile: bool,
    /// `--hubs N` (issue 18): N (1 to 3) hubs sharing PostgreSQL behind
    /// HAProxy, the hub figures summed over them; 0 (the default) is a hub
    /// alone, reached directly.
    hubs: usize,
}

/// What every client task reports into.
#[derive(Default)]
struct Shared {
    /// Keystroke time of each wire op, per sending client id, in order.
    /// By session and client id: ids are unique within a session only
    /// (several hubs each count their own).
    sent: Mutex<HashMap<(usize, u64), Vec<Instant>>>,
    errors: AtomicU64,
    error_samples: Mutex<Vec<String>>,
    keystrokes: AtomicU64,
    wire_ops: AtomicU64,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.error_samples.lock().unwrap();
        if samples.len() < 10 {
            samples.push(what);
        }
    }
}

/// One received remote op: who sent it, its index among that sender's
/// ops, and the latency.
struct Arrival {
    from: u64,
    seq: usize,
    latency: Duration,
}

struct ClientResult {
    session: usize,
    rev: u64,
    text: String,
    arrivals: Vec<Arrival>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("hub load benchmark: run it with `cargo bench --bench hub_load -- load|fanout`");
        return;
    }
    // `--name value` options; the first other word is the mode.
    let mut options: HashMap<String, f64> = HashMap::new();
    let mut mode = "load".to_owned();
    let mut words = args.iter().filter(|a| *a != "--bench");
    let mut mode_seen = false;
    while let Some(word) = words.next() {
        if let Some(name) = word.strip_prefix("--") {
            let value = words.next().and_then(|v| v.parse().ok());
            options.insert(name.to_owned(), value.expect("--option NUMBER"));
        } else if !mode_seen {
            mode = word.clone();
            mode_seen = true;
        }
    }
    let option = |name: &str| options.get(name).copied();
    let mut configs = match mode.as_str() {
        "load" => vec![Config {
            name: "load",
            sessions: 200,
            clients: 4,
            rate: 10.0,
            secs: 30.0,
            one_typist: false,
            hub_args: &[],
            hostile: false,
            hubs: 0,
        }],
        "soak" => vec![Config {
            name: "soak: load with hostile clients",
            sessions: 200,
            clients: 4,
            rate: 10.0,
            secs: 60.0,
            one_typist: false,
            hub_args: &[],
            hostile: true,
            hubs: 0,
        }],
        "fanout" => vec![
            Config {
                name: "fanout, ack-paced",
                sessions: 1,
                clients: 50,
                rate: 0.0,
                secs: 10.0,
                one_typist: true,
                // The hub paces a connection beyond 500 frames/s by default;
                // lifted so that this measures the broadcast itself.
                hub_args: &["--messages-per-second", "1000000"],
                hostile: false,
                hubs: 0,
            },
            Config {
                name: "fanout, 100/s",
                sessions: 1,
                clients: 50,
                rate: 100.0,
                secs: 10.0,
                one_typist: true,
                hub_args: &[],
                hostile: false,
                hubs: 0,
            },
        ],
        other => panic!("unknown mode {other:?}: load, soak or fanout"),
    };
    for config in &mut configs {
        if let Some(n) = option("sessions") {
            config.sessions = n as usize;
        }
        if let Some(n) = option("clients") {
            config.clients = n as usize;
        }
        if let Some(r) = option("rate") {
            config.rate = r;
        }
        if let Some(s) = option("secs") {
            config.secs = s.min(300.0);
        }
        if let Some(n) = option("hubs") {
            config.hubs = n as usize;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for config in configs {
        runtime.block_on(run(config));
    }
}

/// The hub processes under load, and the URL clients use.
struct Hubs {
    url: String,
    pids: Vec<u32>,
    /// Dropping it stops them.
    _running: Box<dyn std::any::Any>,
}

async fn start_hubs(extra_args: &[&str], hubs: usize) -> Hubs {
    let log = std::env::temp_dir().join(format!("chorus-bench-hub-{}.log", std::process::id()));
    if hubs == 0 {
        let hub = hub::start_hub(extra_args, &log).await;
        return Hubs {
            url: hub.url.clone(),
            pids: vec![hub.pid],
            _running: Box::new(hub),
        };
    }
    let dir = std::env::temp_dir().join(format!("chorus-bench-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log dir");
    let service = hub::start_service(hubs, extra_args, &dir).await;
    println!(
        "{hubs} hubs on PostgreSQL behind HAProxy (logs in {})",
        dir.display()
    );
    Hubs {
        url: service.url.clone(),
        pids: service.hubs.iter().map(|hub| hub.pid).collect(),
        _running: Box::new(service),
    }
}

fn sum_over(pids: &[u32], measure: impl Fn(u32) -> f64) -> f64 {
    pids.iter().map(|pid| measure(*pid)).sum()
}

/// `(utime + stime)` of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / clock_ticks()
}

/// Time all threads of a process spent runnable but waiting for a CPU
/// (`/proc/PID/task/*/schedstat`, second field), in seconds.
fn run_queue_wait_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut nanos = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        nanos += stat
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    nanos as f64 / 1e9
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn run(config: Config) {
    let hub = start_hubs(config.hub_args, config.hubs).await;
    if !config.hub_args.is_empty() {
        println!("hub started with {}", config.hub_args.join(" "));
    }
    let total = config.sessions * config.clients;
    let shared = Arc::new(Shared::default());
    // Everyone joins and opens first, then typing starts at once, so every
    // client sees every op of its session.
    let ready = Arc::new(Barrier::new(total + 1));
    let done_typing = Arc::new(Barrier::new(total + 1));
    let connect_slots = Arc::new(tokio::sync::Semaphore::new(CONNECT_PARALLELISM));
    let mut tasks = Vec::with_capacity(total);
    for index in 0..total {
        let session = index / config.clients;
        let slot = index % config.clients;
        let typist = !config.one_typist || slot == 0;
        let (shared, ready, done_typing, connect_slots) = (
            shared.clone(),
            ready.clone(),
            done_typing.clone(),
            connect_slots.clone(),
        );
        let (url, config) = (hub.url.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            client(ClientArgs {
                url,
                config,
                session,
                slot,
                typist,
                shared,
                ready,
                done_typing,
                connect_slots,
            })
            .await
        }));
    }
    let start_wait = Instant::now();
    ready.wait().await;
    let ramp = start_wait.elapsed();
    let cpu_start = sum_over(&hub.pids, cpu_secs);
    let own_cpu_start = cpu_secs(std::process::id());
    let hub_wait_start = sum_over(&hub.pids, run_queue_wait_secs);
    let own_wait_start = run_queue_wait_secs(std::process::id());
    let typing_start = Instant::now();
    let stop_hostile = Arc::new(AtomicBool::new(false));
    let hostile_counts = Arc::new(hostile::Counts::default());
    let hostile_tasks = if config.hostile {
        let port = hub
            .url
            .trim_start_matches("ws://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .expect("the hub's port");
        hostile::spawn_all(&hub.url, port, stop_hostile.clone(), hostile_counts.clone())
    } else {
        Vec::new()
    };
    // The hub's memory every 5 s while the clients type.
    let pids = hub.pids.clone();
    let rss_over_time = Arc::new(Mutex::new(Vec::new()));
    let rss_samples = {
        let samples = rss_over_time.clone();
        tokio::spawn(async move {
            loop {
                let rss = pids.iter().map(|pid| status_kib(*pid, "VmRSS:")).sum();
                samples.lock().unwrap().push(rss);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };
    done_typing.wait().await;
    let typing = typing_start.elapsed();
    stop_hostile.store(true, Ordering::Relaxed);
    for task in &hostile_tasks {
        task.abort();
    }

    let mut results = Vec::with_capacity(total);
    for task in tasks {
        match task.await {
            Ok(Some(result)) => results.push(result),
            Ok(None) => {}
            Err(err) => shared.error(format!("client task panicked: {err}")),
        }
    }
    let settled = typing_start.elapsed();
    rss_samples.abort();
    let rss_over_time: Vec<u64> = rss_over_time.lock().unwrap().clone();
    let cpu = sum_over(&hub.pids, cpu_secs) - cpu_start;
    let own_cpu = cpu_secs(std::process::id()) - own_cpu_start;
    let hub_wait = sum_over(&hub.pids, run_queue_wait_secs) - hub_wait_start;
    let own_wait = run_queue_wait_secs(std::process::id()) - own_wait_start;
    let machine_load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rss: u64 = hub.pids.iter().map(|pid| status_kib(*pid, "VmRSS:")).sum();
    let hwm: u64 = hub.pids.iter().map(|pid| status_kib(*pid, "VmHWM:")).sum();
    drop(hub);

    // Convergence: every client of a session at the same revision and text.
    let mut by_session: HashMap<usize, Vec<&ClientResult>> = HashMap::new();
    for result in &results {
        by_session.entry(result.session).or_default().push(result);
    }
    for (session, clients) in &by_session {
        if clients.len() != config.clients {
            continue; // already counted as errors
        }
        let first = clients[0];
        for other in &clients[1..] {
            if other.rev != first.rev || other.text != first.text {
                shared.error(format!(
                    "session {session} did not converge: rev {} vs {}",
                    first.rev, other.rev
                ));
            }
        }
    }

    let keystrokes = shared.keystrokes.load(Ordering::Relaxed);
    let wire_ops = shared.wire_ops.load(Ordering::Relaxed);
    let mut latencies: Vec<Duration> = Vec::new();
    let mut slowest: HashMap<(usize, u64, usize), (usize, Duration)> = HashMap::new();
    for result in &results {
        for arrival in &result.arrivals {
            latencies.push(arrival.latency);
            let entry = slowest
                .entry((result.session, arrival.from, arrival.seq))
                .or_insert((0, Duration::ZERO));
            entry.0 += 1;
            entry.1 = entry.1.max(arrival.latency);
        }
    }
    let receivers = config.clients - 1;
    let mut slowest: Vec<Duration> = slowest
        .into_values()
        .filter(|(count, _)| *count == receivers)
        .map(|(_, max)| max)
        .collect();
    let errors = shared.errors.load(Ordering::Relaxed);

    println!("## {}", config.name);
    println!(
        "{} sessions × {} clients, {} typing at {}, {:.0} s typing (ramp-up {:.1} s, settled after {:.1} s)",
        config.sessions,
        config.clients,
        if config.one_typist {
            "one per session"
        } else {
            "all"
        },
        if config.rate > 0.0 {
            format!("{}/s each", config.rate)
        } else {
            "ack pace".to_owned()
        },
        typing.as_secs_f64(),
        ramp.as_secs_f64(),
        settled.as_secs_f64(),
    );
    println!("| metric | value |");
    println!("|---|---:|");
    println!("| keystrokes | {keystrokes} |");
    println!(
        "| keystrokes/s (all clients) | {:.0} |",
        keystrokes as f64 / typing.as_secs_f64()
    );
    println!("| wire ops (after composing) | {wire_ops} |");
    println!("| remote deliveries measured | {} |", latencies.len());
    println!(
        "| keystroke → remote, p50 / p99 / max | {} / {} / {} |",
        fmt_ms(percentile(&mut latencies, 50.0)),
        fmt_ms(percentile(&mut latencies, 99.0)),
        fmt_ms(percentile(&mut latencies, 100.0)),
    );
    println!(
        "| slowest receiver per op, p50 / p99 / max | {} / {} / {} |",
        fmt_ms(percentile(&mut slowest, 50.0)),
        fmt_ms(percentile(&mut slowest, 99.0)),
        fmt_ms(percentile(&mut slowest, 100.0)),
    );
    println!(
        "| hub CPU (user+sys) over the run | {:.2} s ({:.0}% of one core) |",
        cpu,
        100.0 * cpu / settled.as_secs_f64()
    );
    if wire_ops > 0 {
        println!(
            "| hub CPU per op (incl. its {} deliveries) | {:.1} µs |",
            receivers,
            cpu * 1e6 / wire_ops as f64
        );
    }
    println!(
        "| load generator (this process) CPU | {:.2} s ({:.0}% of one core) |",
        own_cpu,
        100.0 * own_cpu / settled.as_secs_f64()
    );
    println!(
        "| time runnable but waiting for a CPU: hub / generator | {:.2} s / {:.2} s |",
        hub_wait, own_wait
    );
    println!(
        "| /proc/loadavg at the end | {} |",
        machine_load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| hub RSS at the end / peak | {:.1} MiB / {:.1} MiB |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let mib: Vec<String> = rss_over_time
        .iter()
        .map(|kib| format!("{:.0}", *kib as f64 / 1024.0))
        .collect();
    println!(
        "| hub RSS every 5 s until settled (MiB) | {} |",
        mib.join(" ")
    );
    if config.hostile {
        for (what, count) in hostile_counts.report() {
            println!("| hostile: {what} | {count} |");
        }
        let unanswered = hostile_counts.garbage_unanswered.lock().unwrap().clone();
        if !unanswered.is_empty() {
            println!("garbage frames unanswered, by index: {unanswered:?}");
        }
    }
    println!("| errors | {errors} |");
    for sample in shared.error_samples.lock().unwrap().iter() {
        println!("error: {sample}");
    }
    println!();
}

fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or("–".to_owned(), |d| {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    })
}

struct ClientArgs {
    url: String,
    config: Config,
    session: usize,
    slot: usize,
    typist: bool,
    shared: Arc<Shared>,
    ready: Arc<Barrier>,
    done_typing: Arc<Barrier>,
    connect_slots: Arc<tokio::sync::Semaphore>,
}

/// One participant. Returns `None` (after counting an error) when it could
/// not even join; it still takes part in both barriers so nobody hangs.
async fn client(args: ClientArgs) -> Option<ClientResult> {
    let joined = {
        let _slot = args.connect_slots.acquire().await.expect("semaphore open");
        tokio::time::timeout(PHASE_TIMEOUT, join(&args)).await
    };
    let (ws, me, rev, text) = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(err)) => {
            args.shared.error(format!("join: {err}"));
            args.ready.wait().await;
            args.done_typing.wait().await;
            return None;
        }
        Err(_) => {
            args.shared.error("join timed out".into());
            args.ready.wait().await;
            args.done_typing.wait().await;
            return None;
        }
    };
    args.ready.wait().await;
    let mut state = ClientState {
        ws,
        me,
        ot: OtClient::new(rev),
        text: Rope::from_str(&text),
        cursor: 0,
        rng: StdRng::seed_from_u64((args.session * 1000 + args.slot) as u64),
        buffered_since: None,
        remote_seq: HashMap::new(),
        arrivals: Vec::new(),
        shared: args.shared.clone(),
        session: args.session,
    };
    args.shared
        .sent
        .lock()
        .unwrap()
        .insert((args.session, me), Vec::new());
    let result = state.type_and_listen(&args).await;
    args.done_typing.wait().await;
    let result = match result {
        Ok(()) => state.settle().await,
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        args.shared.error(format!(
            "session {} client {}: {err}",
            args.session, args.slot
        ));
        return None;
    }
    let _ = state.ws.close(None).await;
    Some(ClientResult {
        session: args.session,
        rev: state.ot.rev,
        text: state.text.to_string(),
        arrivals: state.arrivals,
    })
}

async fn join(args: &ClientArgs) -> Result<(Ws, u64, u64, String), String> {
    // Nagle off, as the hub does on its side: small frames go out at once.
    // By the session's URL, as proxies connect: a balancer hashes on it.
    let url = format!("{}ws/load-{}", args.url, args.session);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    // Frames built as JSON so that optional fields added to the protocol
    // later need no change here.
    send(
        &mut ws,
        json!({
            "type": "hello", "protocol": PROTOCOL_VERSION,
            "session": format!("load-{}", args.session), "name": format!("c{}", args.slot),
        }),
    )
    .await?;
    let me = loop {
        match recv(&mut ws).await? {
            ServerMsg::Welcome { client_id, .. } => break client_id,
            ServerMsg::Error { code, message, .. } => {
                return Err(format!("hello refused: {code:?} {message}"))
            }
            _ => {}
        }
    };
    send(
        &mut ws,
        json!({ "type": "open", "doc": "main.rs", "text": "" }),
    )
    .await?;
    loop {
        match recv(&mut ws).await? {
            ServerMsg::Opened { rev, text, .. } => return Ok((ws, me, rev, text)),
            ServerMsg::Error { code, message, .. } => {
                return Err(format!("open refused: {code:?} {message}"))
            }
            // `remote` cannot come before `opened`; joins of others can.
            _ => {}
        }
    }
}

async fn send(ws: &mut Ws, msg: serde_json::Value) -> Result<(), String> {
    ws.send(Message::text(msg.to_string()))
        .await
        .map_err(|err| format!("send: {err}"))
}

async fn recv(ws: &mut Ws) -> Result<ServerMsg, String> {
    loop {
        let frame = tokio::time::timeout(PHASE_TIMEOUT, ws.next())
            .await
            .map_err(|_| "no frame from the hub in time".to_owned())?;
        match frame {
            None => return Err("hub closed the connection".into()),
            Some(Err(err)) => return Err(format!("WebSocket: {err}")),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map_err(|err| format!("undecodable frame ({err}): {text}"))
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("hub closed: {frame:?}")),
            Some(Ok(_)) => continue,
        }
    }
}

struct ClientState {
    ws: Ws,
    me: u64,
    session: usize,
    ot: OtClient,
    text: Rope,
    cursor: usize,
    rng: StdRng,
    /// Oldest keystroke waiting in the OT buffer, not yet on the wire.
    buffered_since: Option<Instant>,
    /// Remote ops seen so far from each other client.
    remote_seq: HashMap<u64, usize>,
    arrivals: Vec<Arrival>,
    shared: Arc<Shared>,
}

impl ClientState {
    async fn type_and_listen(&mut self, args: &ClientArgs) -> Result<(), String> {
        let end = tokio::time::Instant::now() + Duration::from_secs_f64(args.config.secs);
        let ack_paced = args.config.rate <= 0.0;
        let period = if ack_paced {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs_f64(1.0 / args.config.rate)
        };
        // Spread the typists over the period rather than all at once.
        let phase = period.mul_f64(self.rng.random::<f64>().min(0.999));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if args.typist && ack_paced {
            self.keystroke().await?;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return Ok(()),
                _ = ticks.tick(), if args.typist && !ack_paced => self.keystroke().await?,
                frame = recv(&mut self.ws) => {
                    let acked = self.handle(frame?).await?;
                    if acked && args.typist && ack_paced && self.ot.is_synchronized() {
                        self.keystroke().await?;
                    }
                }
            }
        }
    }

    /// After typing stops: keep handling frames until this client's own op
    /// is acknowledged and the session has gone quiet.
    async fn settle(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
        loop {
            let quiet = Duration::from_millis(if self.ot.is_synchronized() { 500 } else { 5000 });
            if tokio::time::Instant::now() > deadline {
                return Err("did not settle in time".into());
            }
            match tokio::time::timeout(quiet, recv(&mut self.ws)).await {
                Ok(frame) => {
                    self.handle(frame?).await?;
                }
                Err(_) if self.ot.is_synchronized() => return Ok(()),
                Err(_) => return Err("own op never acknowledged".into()),
            }
        }
    }

    /// Handles one frame; returns whether it was an ack.
    async fn handle(&mut self, msg: ServerMsg) -> Result<bool, String> {
        match msg {
            ServerMsg::Ack { rev, .. } => {
                let next = self.ot.ack(rev).map_err(|err| err.to_string())?;
                if let Some(out) = next {
                    let since = self.buffered_since.take().unwrap_or_else(Instant::now);
                    self.send_op(out, since).await?;
                }
                Ok(true)
            }
            ServerMsg::Remote {
                rev, op, client_id, ..
            } => {
                let now = Instant::now();
                let seq = self.remote_seq.entry(client_id).or_insert(0);
                let sent = self
                    .shared
                    .sent
                    .lock()
                    .unwrap()
                    .get(&(self.session, client_id))
                    .and_then(|times| times.get(*seq).copied());
                match sent {
                    Some(sent) => self.arrivals.push(Arrival {
                        from: client_id,
                        seq: *seq,
                        latency: now.saturating_duration_since(sent),
                    }),
                    None => return Err(format!("remote op {seq} of {client_id} never sent")),
                }
                *seq += 1;
                let local = self.ot.remote(rev, &op.0).map_err(|err| err.to_string())?;
                self.cursor = shift_index(&local, self.cursor);
                apply_to_rope(&mut self.text, &local).map_err(|err| err.to_string())?;
                Ok(false)
            }
            ServerMsg::Error { code, message, .. } => Err(format!("hub error {code:?}: {message}")),
            _ => Ok(false),
        }
    }

    /// One keystroke at this client's cursor: mostly typing, some
    /// backspaces, now and then a jump elsewhere.
    async fn keystroke(&mut self) -> Result<(), String> {
        let len = self.text.len_chars();
        if self.rng.random_range(0..50) == 0 {
            self.cursor = self.rng.random_range(0..=len);
        }
        self.cursor = self.cursor.min(len);
        let mut op = OperationSeq::default();
        if self.cursor > 0 && self.rng.random_range(0..8) == 0 {
            op.retain((self.cursor - 1) as u64);
            op.delete(1);
            op.retain((len - self.cursor) as u64);
            self.cursor -= 1;
        } else {
            const KEYS: &[u8] = b"abcdefghijklmnopqrstuvwxyz  \n(){};.";
            let key = KEYS[self.rng.random_range(0..KEYS.len())] as char;
            op.retain(self.cursor as u64);
            op.insert(&key.to_string());
            op.retain((len - self.cursor) as u64);
            self.cursor += 1;
        }
        apply_to_rope(&mut self.text, &op).map_err(|err| err.to_string())?;
        self.shared.keystrokes.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        match self.ot.local(op).map_err(|err| err.to_string())? {
            Some(out) => self.send_op(out, now).await,
            None => {
                self.buffered_since.get_or_insert(now);
                Ok(())
            }
        }
    }

    async fn send_op(&mut self, out: Outgoing, since: Instant) -> Result<(), String> {
        self.shared
            .sent
            .lock()
            .unwrap()
            .get_mut(&(self.session, self.me))
            .expect("registered before typing")
            .push(since);
        self.shared.wire_ops.fetch_add(1, Ordering::Relaxed);
        send(
            &mut self.ws,
            json!({ "type": "op", "doc": "main.rs", "rev": out.rev, "op": WireOp(out.op) }),
        )
        .await
    }
}

/// Where character `idx` ends up after `op` (inserts at `idx` go before it).
fn shift_index(op: &OperationSeq, idx: usize) -> usize {
    let mut old = 0usize;
    let mut new = idx;
    for component in op.ops() {
        if old > idx {
            break;
        }
        match component {
            Operation::Retain(n) => old += *n as usize,
            Operation::Insert(s) => {
                if old <= idx {
                    new += s.chars().count();
                }
            }
            Operation::Delete(n) => {
                let n = *n as usize;
                let gone = n.min(idx.saturating_sub(old));
                new -= gone;
                old += n;
            }
        }
    }
    new
}
