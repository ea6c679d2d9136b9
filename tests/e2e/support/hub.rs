//! Starting `chorus hub` on a free port and knowing where its log is.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::lsp::log_tail;

/// The `chorus` binary under test.
pub fn chorus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chorus"))
}

/// A directory for this test's process logs, under Cargo's scratch space so
/// they survive the run for inspection.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e-logs")
        .join(test);
    // Logs of an earlier run would only confuse; those of this run (a hub
    // restarted by the same test) must stay.
    static MADE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if !made.contains(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        made.push(dir.clone());
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// A running hub. The process is killed when this is dropped.
pub struct Hub {
    /// Held only so that `kill_on_drop` ends the hub with the test.
    _child: Child,
    pub port: u16,
    /// `ws://127.0.0.1:PORT/`, as the hub printed it.
    pub url: String,
    pub log_path: PathBuf,
    /// Where the proxies of this test write their logs.
    pub log_dir: PathBuf,
    /// The token editors and observers use by default, for a hub that
    /// requires them.
    pub token: Option<String>,
}

impl Hub {
    /// Starts a hub on `127.0.0.1:0` and waits for its `listening` line.
    pub async fn start(test: &str) -> Hub {
        Hub::start_in_memory(test, &[]).await
    }

    /// A throwaway hub (`--in-memory --open`) with more arguments.
    pub async fn start_in_memory(test: &str, extra: &[&str]) -> Hub {
        let mut args = vec!["--listen", "127.0.0.1:0", "--in-memory", "--open"];
        args.extend_from_slice(extra);
        Hub::start_with(test, "hub.log", &args).await
    }

    /// Starts a hub with these arguments (after `hub`), logging to
    /// `log_name` in the test's log directory.
    pub async fn start_with(test: &str, log_name: &str, args: &[&str]) -> Hub {
        let log_dir = log_dir(test);
        let log_path = log_dir.join(log_name);
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|err| panic!("create {}: {err}", log_path.display()));
        let mut child = Command::new(chorus_bin())
            .arg("hub")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chorus hub");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "chorus hub printed nothing on stdout within 30 s; log:\n{}",
                    log_tail(&log_path, 40)
                )
            })
            .expect("read hub stdout")
            .unwrap_or_else(|| {
                panic!(
                    "chorus hub closed stdout without a listening line; log:\n{}",
                    log_tail(&log_path, 40)
                )
            });
        let url = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first stdout line from the hub: {first:?}"))
            .trim()
            .to_owned();
        let port = url
            .strip_prefix("ws://127.0.0.1:")
            .or_else(|| url.strip_prefix("wss://127.0.0.1:"))
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|port| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("cannot parse a port from {first:?}"));
        // Keep draining stdout so that a chatty hub can never block on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Hub {
            _child: child,
            port,
            url,
            log_path,
            log_dir,
            token: None,
        }
    }

    /// `kill -9`: the hub gets no chance to flush or say goodbye.
    pub async fn kill(&mut self) {
        let _ = self._child.kill().await;
    }

    /// SIGTERM: the hub drains (hands its sessions over) and exits.
    pub fn terminate(&self) {
        if let Some(pid) = self._child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// Waits up to `patience` for the hub to exit; its status, if it did.
    pub async fn wait_exit(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(patience, self._child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Whether the hub process is still running, or how it ended: for
    /// failure reports.
    pub fn exit_status(&mut self) -> String {
        match self._child.try_wait() {
            Ok(None) => "still running".into(),
            Ok(Some(status)) => format!("exited: {status}"),
            Err(err) => format!("unknown: {err}"),
        }
    }

    /// The hub's resident memory in KiB, from /proc (Linux).
    pub fn rss_kib(&self) -> u64 {
        let pid = self._child.id().expect("the hub is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}
