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
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        // Every benchmark client comes from 127.0.0.1: the per-address cap
        // is for the real world.
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--max-connections-per-ip",
            "1000000",
        ])
        .args(hub_store_args())
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
