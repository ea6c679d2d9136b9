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
        } => runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr().context("no local address")?;
            // The one line on stdout: scripts and tests read the port here.
            println!("listening ws://{addr}/");
            tracing::info!(%addr, "chorus hub ready");
            let config = chorus_hub::HubConfig {
                max_message_bytes,
                ..chorus_hub::HubConfig::default()
            };
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
            }));
            Ok(())
        }
        Command::Version => {
            println!("chorus {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
