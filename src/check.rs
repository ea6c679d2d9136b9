//! `chorus hub --check`: whether a hub with these flags would start and
//! serve, told one line per check, without listening.
//!
//! Each check takes the path the hub itself takes at start (the same flag
//! validation, `Store::open`, the sandbox's `DockerExecutor::connect`,
//! the TLS loader), so that a pass means the hub would get as far, and a
//! failure reads as the hub's own error would. Every check runs even
//! after one fails: an operator fixing a deployment wants the whole list.

use std::path::Path;
use std::time::Duration;

use crate::{one_line, RunArgs, StoreArgs};

/// Longest wait for the database or the Docker engine: an address that
/// drops packets would otherwise hang the check for minutes.
const REACH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Skipped,
    Failed,
}

/// The lines printed so far.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, outcome: Outcome, check: &str, detail: &str) {
        let word = match outcome {
            Outcome::Ok => "ok",
            Outcome::Skipped => "skipped",
            Outcome::Failed => {
                self.failed += 1;
                "FAILED"
            }
        };
        // One line per check whatever an error holds: scripts grep these.
        let detail = detail.replace(['\n', '\r'], " ");
        println!("{word:<7} {check}: {detail}");
    }

    fn result(&mut self, check: &str, result: anyhow::Result<String>) {
        match result {
            Ok(detail) => self.line(Outcome::Ok, check, &detail),
            Err(err) => self.line(Outcome::Failed, check, &one_line(&err)),
        }
    }
}

/// What `chorus hub` was given, as the checks need it.
pub struct HubCheck<'a> {
    /// The flags' own validation: what the hub would refuse before opening
    /// anything, or a summary of what it would do.
    pub flags: anyhow::Result<String>,
    /// `None` with `--in-memory`.
    pub store: Option<&'a StoreArgs>,
    pub runs: &'a RunArgs,
    pub tls: Option<(&'a Path, &'a Path)>,
}

/// Runs every check; an error (after the lines) if any failed.
pub async fn run(hub: HubCheck<'_>) -> anyhow::Result<()> {
    let mut report = Report::default();
    report.result("flags", hub.flags);

    match hub.store {
        None => report.line(
            Outcome::Skipped,
            "storage",
            "--in-memory: sessions are kept in memory only",
        ),
        Some(store) => report.result("storage", within(storage(store)).await),
    }

    if hub.runs.no_runs {
        report.line(
            Outcome::Skipped,
            "docker",
            "--no-runs: this hub runs no code",
        );
    } else {
        report.result("docker", within(engine(hub.runs)).await);
    }

    match hub.tls {
        None => report.line(Outcome::Skipped, "tls", "no --tls-cert: serving ws://"),
        Some((cert, key)) => report.result(
            "tls",
            chorus_hub::tls::server_config(cert, key).map(|_| {
                format!(
                    "{} and {} form a usable pair",
                    cert.display(),
                    key.display()
                )
            }),
        ),
    }

    match report.failed {
        0 => Ok(()),
        1 => anyhow::bail!("1 check failed"),
        n => anyhow::bail!("{n} checks failed"),
    }
}

/// The `flags` line of a configuration that passed: what matters most
/// to someone checking a deployment.
pub fn describe(config: &chorus_hub::HubConfig, listen: std::net::SocketAddr) -> String {
    let access = match config.access {
        chorus_hub::access::Access::Open => "anyone who reaches it may join (--open)",
        chorus_hub::access::Access::Tokens => "joining needs a token",
    };
    format!(
        "listen on {listen}, {access}, at most {} connections and {} sessions in memory",
        config.max_connections, config.max_sessions
    )
}

async fn within(
    check: impl std::future::Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<String> {
    tokio::time::timeout(REACH_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| anyhow::bail!("no answer within {} s", REACH_TIMEOUT.as_secs()))
}

/// Opens the database as the hub would (creating its tables if missing)
/// and runs a query the hub runs every second.
async fn storage(store: &StoreArgs) -> anyhow::Result<String> {
    let (database, store) = store.open().await?;
    store
        .revoked_since(i64::MAX)
        .await
        .map_err(|err| anyhow::anyhow!("{} does not answer: {err}", database.describe()))?;
    Ok(format!("{} opens and answers", database.describe()))
}

/// Connects to Docker as the hub would, which checks that the engine
/// answers and has every language's image (and, as every hub start does,
/// sweeps containers orphaned by dead hubs).
async fn engine(runs: &RunArgs) -> anyhow::Result<String> {
    let image = runs
        .sandbox_image
        .as_deref()
        .unwrap_or(chorus_sandbox::DEFAULT_IMAGE);
    match runs.runner().await? {
        chorus_hub::Runner::Enabled(executor) => {
            let engines: Vec<String> = executor
                .engines()
                .into_iter()
                .map(|engine| {
                    let state = if engine.healthy { "up" } else { "DOWN" };
                    format!("{} {state}", engine.name)
                })
                .collect();
            Ok(format!(
                "the engines answer and have {image} ({})",
                engines.join(", ")
            ))
        }
        chorus_hub::Runner::Disabled(reason) => {
            anyhow::bail!("{reason} (or pass --no-runs for a hub that runs no code)")
        }
    }
}
