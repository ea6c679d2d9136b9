//! The `chorus` binary: a thin clap front over the hub and proxy crates.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "Live collaboration for VS Code, Neovim and Helix over LSP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the central hub that orders and relays everyone's edits.
    Hub {
        /// Address to listen on (WebSocket at `/`, health check at `/healthz`).
        #[arg(long, default_value = "127.0.0.1:7420", env = "CHORUS_LISTEN")]
        listen: SocketAddr,
        /// Largest message accepted from a client, in bytes.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_message_bytes)]
        max_message_bytes: usize,
        /// Largest document, in characters.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_document_chars)]
        max_document_chars: usize,
        /// Frames per second one connection may send before it is slowed.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().messages_per_second)]
        messages_per_second: u32,
        /// Keep sessions in DIR (embedded SQLite) so they survive restarts;
        /// without it they live in memory only.
        #[arg(long, env = "CHORUS_DATA")]
        data: Option<std::path::PathBuf>,
        #[command(flatten)]
        runs: RunArgs,
    },
    /// Run the LSP server an editor starts beside its language server.
    Lsp {
        /// Hub WebSocket URL, e.g. ws://127.0.0.1:7420/
        #[arg(long, env = "CHORUS_HUB")]
        hub: Option<String>,
        /// Session to join.
        #[arg(long, env = "CHORUS_SESSION")]
        session: Option<String>,
        /// Your name as collaborators see it.
        #[arg(long, env = "CHORUS_NAME")]
        name: Option<String>,
        /// Accepted for editors that pass it; stdio is the only transport.
        #[arg(long, hide = true)]
        stdio: bool,
    },
    /// Print the version.
    Version,
}

/// How `chorus.run` executes code; defaults are safe for shared use.
#[derive(clap::Args)]
struct RunArgs {
    /// Do not run code at all, even if a Docker engine is reachable.
    #[arg(long)]
    no_runs: bool,
    /// Wall-clock limit per run, in seconds.
    #[arg(long, default_value_t = 10)]
    run_timeout_secs: u64,
    /// Memory per run in MiB (swap is not allowed on top).
    #[arg(long, default_value_t = 256)]
    run_memory_mib: i64,
    /// Processes and threads per run.
    #[arg(long, default_value_t = 128)]
    run_pids: i64,
    /// CPUs per run (fractions allowed).
    #[arg(long, default_value_t = 1.0)]
    run_cpus: f64,
    /// Output bytes streamed per run before it is cut off.
    #[arg(long, default_value_t = 1 << 20)]
    run_output_bytes: usize,
    /// Runs at once across all sessions; more wait in a queue.
    #[arg(long, default_value_t = 2)]
    max_concurrent_runs: usize,
    /// Use this image for every language instead of the defaults.
    #[arg(long)]
    sandbox_image: Option<String>,
}

impl RunArgs {
    async fn runner(&self) -> chorus_hub::Runner {
        if self.no_runs {
            return chorus_hub::Runner::Disabled(
                "runs are turned off on this hub (--no-runs)".into(),
            );
        }
        let mut config = chorus_sandbox::ExecutorConfig::default();
        config.limits.wall_clock = std::time::Duration::from_secs(self.run_timeout_secs);
        config.limits.memory_bytes = self.run_memory_mib * 1024 * 1024;
        config.limits.pids = self.run_pids;
        config.limits.nano_cpus = (self.run_cpus * 1e9) as i64;
        config.limits.output_bytes = self.run_output_bytes;
        config.max_concurrent = self.max_concurrent_runs.max(1);
        if let Some(image) = &self.sandbox_image {
            for language in &mut config.languages {
                language.image = image.clone();
            }
        }
        match chorus_sandbox::DockerExecutor::connect(config).await {
            Ok(executor) => {
                tracing::info!("runs enabled (Docker)");
                chorus_hub::Runner::Enabled(std::sync::Arc::new(executor))
            }
            Err(err) => {
                let reason = err.to_string();
                tracing::warn!(%reason, "runs disabled; editing still works");
                chorus_hub::Runner::Disabled(reason)
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs always go to stderr: stdout belongs to LSP in `chorus lsp`.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CHORUS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Hub {
            listen,
            max_message_bytes,
            max_document_chars,
            messages_per_second,
            data,
            runs,
        } => runtime.block_on(async {
            match &data {
                Some(dir) => {
                    // Fail now, not at the first join, if DIR is unusable.
                    chorus_hub::storage::Store::open(dir)
                        .with_context(|| format!("cannot use --data {}", dir.display()))?;
                    tracing::info!(data = %dir.display(), "sessions are stored");
                }
                None => tracing::warn!("sessions are kept in memory only; pass --data DIR to keep them across restarts"),
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr().context("no local address")?;
            let config = chorus_hub::HubConfig {
                max_message_bytes,
                max_document_chars,
                messages_per_second,
                runner: runs.runner().await,
                data_dir: data,
                ..chorus_hub::HubConfig::default()
            };
            // The one line on stdout, once ready: scripts and tests read the
            // port here.
            println!("listening ws://{addr}/");
            tracing::info!(%addr, "chorus hub ready");
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            chorus_hub::run(listener, config, shutdown).await;
            Ok(())
        }),
        Command::Lsp {
            hub,
            session,
            name,
            stdio: _,
        } => {
            runtime.block_on(chorus_lsp::run_stdio(chorus_lsp::Settings {
                hub,
                session,
                name,
                extensions: None,
            }));
            Ok(())
        }
        Command::Version => {
            println!("chorus {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
