//! The benchmarked hub: a `chorus hub` child process on a loopback port.
//!
//! Where it keeps sessions: `CHORUS_BENCH_STORE` =
//! `memory` (default), `sqlite` (a fresh directory under $TMPDIR) or
//! `postgres` (the database in `CHORUS_TEST_POSTGRES`, which
//! `scripts/ensure-postgres.sh` prints). The hub is always `--open`: the
//! benchmarks measure editing, not joining.

fn hub_store_args() -> Vec<String> {
    let store = std::env::var("CHORUS_BENCH_STORE").unwrap_or_else(|_| "memory".into());
    let mut args = match store.as_str() {
        "memory" => vec!["--in-memory".to_owned()],
        "sqlite" => {
            let dir =
                std::env::temp_dir().join(format!("chorus-bench-data-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            vec!["--data".to_owned(), dir.to_string_lossy().into_owned()]
        }
        "postgres" => {
            let url = std::env::var("CHORUS_TEST_POSTGRES")
                .expect("CHORUS_BENCH_STORE=postgres needs CHORUS_TEST_POSTGRES=postgres://…");
            vec!["--database".to_owned(), url]
        }
        other => panic!("CHORUS_BENCH_STORE must be memory, sqlite or postgres, not {other:?}"),
    };
    args.push("--open".to_owned());
    eprintln!("hub storage: {store}");
    args
}

// Each benchmark reads the fields it needs; dropping it kills the hub.
#[allow(dead_code)]
pub struct HubProcess {
    pub child: tokio::process::Child,
    /// `ws://127.0.0.1:PORT/`, as the hub printed it.
    pub url: String,
    pub pid: u32,
}

/// Starts `chorus hub` (runs off) with `extra_args`, logging to `log`, and
/// waits for its `listening` line.
#[allow(dead_code)]
pub async fn start_hub(extra_args: &[&str], log: &std::path::Path) -> HubProcess {
    let mut args = vec!["--no-runs"];
    args.extend_from_slice(extra_args);
    start_hub_with_runs(&args, log).await
}

/// [`start_hub`] with runs and terminals on (a Docker engine and the
/// sandbox image are needed).
#[allow(dead_code)]
pub async fn start_hub_with_runs(extra_args: &[&str], log: &std::path::Path) -> HubProcess {
    start_hub_at("127.0.0.1:0", hub_store_args(), extra_args, log).await
}

/// Several hubs on the PostgreSQL database in `CHORUS_TEST_POSTGRES`
/// behind HAProxy running `deploy/haproxy.cfg` (ADR 0009); `url` is the
/// balancer's. Clients must connect to `URL/ws/SESSION` for the balancer
/// to spread sessions. At most three (the config's servers).
#[allow(dead_code)]
pub async fn start_service(hubs: usize, extra_args: &[&str], log_dir: &std::path::Path) -> Service {
    assert!((1..=3).contains(&hubs), "1 to 3 hubs");
    let database = std::env::var("CHORUS_TEST_POSTGRES")
        .expect("several hubs need CHORUS_TEST_POSTGRES=postgres://…");
    // Hubs come back on their port after a kill (the failover bench).
    let free_port = chorus_testkit::stable_port;
    let mut processes = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..hubs {
        let listen = format!("127.0.0.1:{}", free_port());
        let store = vec![
            "--database".to_owned(),
            database.clone(),
            "--open".to_owned(),
        ];
        let mut args = vec!["--no-runs"];
        args.extend_from_slice(extra_args);
        let log = log_dir.join(format!("hub{}.log", i + 1));
        processes.push(start_hub_at(&listen, store, &args, &log).await);
        addresses.push(listen);
    }
    // The config names three servers: the ones not started are a port
    // nobody listens on, which the health checks mark down.
    while addresses.len() < 3 {
        addresses.push(format!("127.0.0.1:{}", free_port()));
    }
    let lb_port = free_port();
    let log = std::fs::File::create(log_dir.join("haproxy.log")).expect("haproxy log");
    let balancer = tokio::process::Command::new("haproxy")
        .args([
            "-db",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"),
        ])
        .env("CHORUS_LB_BIND", format!("127.0.0.1:{lb_port}"))
        .env("CHORUS_HUB1", &addresses[0])
        .env("CHORUS_HUB2", &addresses[1])
        .env("CHORUS_HUB3", &addresses[2])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy (apt-get install haproxy)");
    // Health checks every 500 ms, two to mark a server up or down.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    Service {
        url: format!("ws://127.0.0.1:{lb_port}/"),
        hubs: processes,
        addresses,
        _balancer: balancer,
    }
}

/// Hubs behind a balancer.
#[allow(dead_code)]
pub struct Service {
    pub url: String,
    pub hubs: Vec<HubProcess>,
    /// Each hub's `127.0.0.1:PORT`, in the config's order.
    pub addresses: Vec<String>,
    _balancer: tokio::process::Child,
}

#[allow(dead_code)]
impl Service {
    /// `kill -9` of hub `i`.
    pub async fn kill(&mut self, i: usize) {
        let _ = self.hubs[i].child.kill().await;
    }

    /// Starts hub `i` again on its address, logging to `log`.
    pub async fn restart(&mut self, i: usize, log: &std::path::Path) {
        let database = std::env::var("CHORUS_TEST_POSTGRES").expect("CHORUS_TEST_POSTGRES");
        let store = vec!["--database".to_owned(), database, "--open".to_owned()];
        self.hubs[i] = start_hub_at(&self.addresses[i], store, &["--no-runs"], log).await;
    }
}

async fn start_hub_at(
    listen: &str,
    store: Vec<String>,
    extra_args: &[&str],
    log: &std::path::Path,
) -> HubProcess {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        // Every benchmark client comes from 127.0.0.1: the per-address cap
        // is for the real world.
        .args([
            "hub",
            "--listen",
            listen,
            "--max-connections-per-ip",
            "1000000",
        ])
        .args(store)
        .args(extra_args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(
            std::fs::File::create(log).expect("create the hub log"),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chorus hub");
    let pid = child.id().expect("hub pid");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("hub printed its listening line in time")
        .expect("read hub stdout")
        .expect("hub stdout has a line");
    let url = first
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected hub line {first:?}"))
        .trim()
        .to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:"),
        "hub must be on loopback"
    );
    // Keep draining stdout so that the hub can never block on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    HubProcess { child, url, pid }
}
