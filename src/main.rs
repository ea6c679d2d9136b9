//! The `chorus` binary: a thin clap front over the hub and proxy crates.

mod check;
mod log;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chorus_hub::access::Access;
use chorus_hub::storage::{Database, Store};
use chorus_hub::{admin, templates};
use chorus_protocol::wire::{NotSynced, PutContent};
use chorus_sandbox::limits;
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
// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the central hub that orders and relays everyone's edits.
    Hub {
        /// Address to listen on (WebSocket at `/`, health check at `/healthz`).
        #[arg(long, default_value = "127.0.0.1:7420", env = "CHORUS_LISTEN")]
        listen: SocketAddr,
        #[command(flatten)]
        store: StoreArgs,
        /// Keep nothing: sessions live in memory and end with the hub.
        /// Needs --open, since no tokens can be issued.
        #[arg(long, conflicts_with_all = ["data", "database"])]
        in_memory: bool,
        /// Let anyone who reaches the hub join any session without a token
        /// (trusted networks, demos). Without it, sessions must be made by
        /// `chorus session create`, and joining needs one of its tokens.
        #[arg(long, env = "CHORUS_OPEN")]
        open: bool,
        /// Serve wss:// with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key", env = "CHORUS_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_cert", env = "CHORUS_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// A web origin (`https://host:port`) whose pages may connect;
        /// repeat for several. WebSocket upgrades carrying any other
        /// `Origin` are refused, so that no web page can drive the hub
        /// through a visitor's browser. Editors send no Origin.
        #[arg(long = "allow-origin", value_name = "ORIGIN", env = "CHORUS_ALLOW_ORIGIN", value_delimiter = ',', value_parser = origin)]
        allowed_origins: Vec<String>,
        /// Where the other hubs sharing this hub's PostgreSQL database reach
        /// it, to relay connections for sessions it holds (`ws://host:port/`
        /// on their network); by default the address it listens on.
        #[arg(long, value_name = "URL", env = "CHORUS_ADVERTISE")]
        advertise: Option<String>,
        /// Largest message accepted from a client, in bytes; also the
        /// largest document one can share, as its text travels in one
        /// message (proxies learn it when they join).
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_message_bytes)]
        max_message_bytes: usize,
        /// Largest document, in characters.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_document_chars)]
        max_document_chars: usize,
        /// Frames per second one connection may send before it is slowed.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().messages_per_second)]
        messages_per_second: u32,
        /// Simultaneous connections accepted.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_connections)]
        max_connections: usize,
        /// Simultaneous connections from one address.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_connections_per_ip)]
        max_connections_per_ip: usize,
        /// Sessions held in memory at once; joins to more are refused until
        /// some unload (stored sessions unload when idle).
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().max_sessions)]
        max_sessions: usize,
        /// Seconds a stored session with nobody in it stays in memory.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().unload_idle_after.as_secs_f64())]
        unload_idle_secs: f64,
        /// Seconds a session's shared terminal outlives the last
        /// participant's leaving (their proxies may be reconnecting).
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().terminal_orphan_grace.as_secs_f64())]
        terminal_orphan_secs: f64,
        /// Seconds a new connection has to say hello before it is closed.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().hello_timeout.as_secs_f64())]
        hello_timeout_secs: f64,
        /// Seconds a connection may stay silent, not even answering the
        /// hub's pings, before it is dropped and leaves its session.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().idle_timeout.as_secs_f64())]
        idle_timeout_secs: f64,
        /// Largest text file of a session's tree synced, in bytes; larger
        /// ones are listed, not synced. Must fit in one message
        /// (--max-message-bytes less 16 KiB).
        /// [default: 524288, or what fits in --max-message-bytes]
        #[arg(long)]
        max_file_bytes: Option<u64>,
        /// Text synced per session, in bytes; past it files are listed,
        /// not synced.
        #[arg(long, default_value_t = chorus_hub::DEFAULT_WORKSPACE_LIMITS.max_session_bytes)]
        max_session_bytes: u64,
        /// Files (synced or listed) per session; past it new ones are
        /// refused.
        #[arg(long, default_value_t = chorus_hub::DEFAULT_WORKSPACE_LIMITS.max_files)]
        max_files: u64,
        /// Ops kept per document for catching up late or reconnecting
        /// clients by ops; a client further behind is merged by text.
        #[arg(long, default_value_t = chorus_hub::HubConfig::default().history_limit)]
        history_limit: usize,
        #[command(flatten)]
        runs: RunArgs,
        /// Check the flags, the storage, the Docker engine and its image,
        /// and the TLS files as the hub would at start, print one line per
        /// check, and exit (0 if all pass) without listening.
        #[arg(long)]
        check: bool,
    },
    /// Run the LSP server an editor starts beside its language server.
    Lsp {
        #[command(flatten)]
        link: LinkArgs,
        /// Write the session's files into the workspace folder and keep
        /// them in step, including files nobody has open (a file differing
        /// locally is backed up to .chorus/backup/ first).
        #[arg(long, env = "CHORUS_SYNC_FILES")]
        sync_files: bool,
        /// Accepted for editors that pass it; stdio is the only transport.
        #[arg(long, hide = true)]
        stdio: bool,
    },
    /// Publish a folder to a session: every file but those .gitignore,
    /// .ignore or .chorusignore leave out (never .git/), as the
    /// session's documents. Files already in the session keep their text.
    Share {
        /// The folder to publish [default: the current folder].
        dir: Option<PathBuf>,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Create, list and revoke sessions and their tokens.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session and print its join and read-only tokens (shown
    /// once: only their hashes are stored). A revoked session can be
    /// created again, with new tokens and its documents intact.
    Create {
        /// Session name (letters, digits, `-`, `_`, `.`); random if omitted.
        id: Option<String>,
        /// Seed the new session with a runnable starter project: python,
        /// rust, node or c.
        #[arg(long, value_name = "NAME", value_parser = template_name)]
        template: Option<&'static templates::Template>,
        /// Seed the new session with a folder's files, as `chorus share`
        /// would publish them (.gitignore, .ignore and .chorusignore
        /// honoured, never .git/; binary and large files listed only).
        #[arg(long, value_name = "DIR", conflicts_with = "template")]
        from: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List stored sessions.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Invalidate a session's tokens; everyone in it is disconnected.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where to collaborate and as whom: shared by `chorus lsp` and
/// `chorus share`.
#[derive(clap::Args)]
struct LinkArgs {
    /// Hub URL, e.g. ws://127.0.0.1:7420/ or wss://hub.example.com/
    #[arg(long, env = "CHORUS_HUB")]
    hub: Option<String>,
    /// Session to join.
    #[arg(long, env = "CHORUS_SESSION")]
    session: Option<String>,
    /// Your name as collaborators see it.
    #[arg(long, env = "CHORUS_NAME")]
    name: Option<String>,
    /// The session's join or read-only token.
    #[arg(long, env = "CHORUS_TOKEN")]
    token: Option<String>,
    /// Also trust this CA certificate (PEM) for wss://, for hubs with a
    /// self-signed certificate. The system's roots are always trusted.
    #[arg(long, env = "CHORUS_HUB_CA")]
    hub_ca: Option<PathBuf>,
}

impl LinkArgs {
    /// What `chorus share` connects to; a session is required.
    fn share_target(self) -> anyhow::Result<chorus_lsp::share::ShareTarget> {
        let session = self
            .session
            .context("which session? pass --session NAME or set CHORUS_SESSION")?;
        let hub = self
            .hub
            .unwrap_or_else(|| chorus_lsp::DEFAULT_HUB.to_owned());
        let tls = if hub.starts_with("wss://") {
            let tls = chorus_lsp::hub_link::tls_config(self.hub_ca.as_deref())
                .map_err(anyhow::Error::msg)?;
            Some(tls)
        } else {
            None
        };
        Ok(chorus_lsp::share::ShareTarget {
            hub,
            session,
            name: self.name.unwrap_or_else(chorus_lsp::default_name),
            token: self.token,
            tls,
            editor: "chorus share".into(),
        })
    }
}

/// Where sessions are kept: shared by `chorus hub` and `chorus session`,
/// which must point at the same place.
#[derive(clap::Args)]
struct StoreArgs {
    /// Keep sessions in embedded SQLite under DIR
    /// [default: $XDG_DATA_HOME/chorus or ~/.local/share/chorus].
    #[arg(long, env = "CHORUS_DATA")]
    data: Option<PathBuf>,
    /// Keep sessions in PostgreSQL instead: postgres://user:pass@host/db.
    #[arg(long, env = "CHORUS_DATABASE", conflicts_with = "data")]
    database: Option<String>,
}

impl StoreArgs {
    fn database(&self) -> Database {
        if let Some(url) = &self.database {
            return Database::parse(url);
        }
        if let Some(dir) = &self.data {
            return Database::Sqlite(dir.clone());
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        Database::Sqlite(base.join("chorus"))
    }

    async fn open(&self) -> anyhow::Result<(Database, Store)> {
        let database = self.database();
        let store = Store::open(&database)
            .await
            .with_context(|| format!("cannot open {}", database.describe()))?;
        Ok((database, store))
    }
}

/// How `chorus.run` executes code; defaults are safe for shared use.
#[derive(clap::Args)]
struct RunArgs {
    /// Do not run code at all, even if a Docker engine is reachable.
    #[arg(long)]
    no_runs: bool,
    // Every limit must be positive: Docker reads 0 as "no limit", which a
    // flag must never mean by accident.
    /// Wall-clock limit per run, in seconds.
    #[arg(long, default_value_t = limits::DEFAULT_WALL_CLOCK_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    run_timeout_secs: u64,
    /// Memory per run in MiB (swap is not allowed on top).
    #[arg(long, default_value_t = limits::DEFAULT_MEMORY_MIB, value_parser = clap::value_parser!(i64).range(6..))]
    run_memory_mib: i64,
    /// Processes and threads per run.
    #[arg(long, default_value_t = limits::DEFAULT_PIDS, value_parser = clap::value_parser!(i64).range(1..))]
    run_pids: i64,
    /// CPUs per run (fractions allowed, at least 0.01).
    #[arg(long, default_value_t = limits::DEFAULT_CPUS, value_parser = cpus)]
    run_cpus: f64,
    /// Output bytes streamed per run before it is cut off.
    #[arg(long, default_value_t = limits::DEFAULT_OUTPUT_BYTES, value_parser = positive_usize)]
    run_output_bytes: usize,
    /// Time a project's build step (cargo, a run.toml build) may take, in
    /// seconds; the program then gets --run-timeout-secs on top.
    #[arg(long, default_value_t = limits::DEFAULT_COMPILE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    run_compile_timeout_secs: u64,
    /// Memory of a run with a build step, in MiB (when above --run-memory-mib).
    #[arg(long, default_value_t = limits::DEFAULT_BUILD_MEMORY_MIB, value_parser = clap::value_parser!(i64).range(6..))]
    run_build_memory_mib: i64,
    /// A session's build cache is wiped when a run finds it above this, in MiB.
    #[arg(long, default_value_t = limits::DEFAULT_CACHE_MIB, value_parser = clap::value_parser!(u64).range(1..))]
    run_cache_mib: u64,
    /// A session's shared terminal ends after this many seconds with no
    /// keystroke, output or file update.
    #[arg(long, default_value_t = chorus_sandbox::DEFAULT_TERMINAL_IDLE_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    terminal_idle_secs: u64,
    /// A session's shared terminal ends this many seconds after it opened,
    /// however busy.
    #[arg(long, default_value_t = chorus_sandbox::DEFAULT_TERMINAL_LIFETIME_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    terminal_lifetime_secs: u64,
    /// Runs and shared terminals at once on the local Docker engine (a
    /// terminal holds its place until it ends); when every engine is full,
    /// more wait in one queue, first come first served.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONCURRENT)]
    max_concurrent_runs: usize,
    /// Another Docker engine to run code on, besides the local one; repeat
    /// for several. ENDPOINT is unix:///PATH or tcp://HOST:PORT, the latter
    /// with mutual TLS only (the engine's CA, this hub's certificate and
    /// key, as PEM). capacity is the runs and terminals on it at once
    /// (default 2). Each goes to the least loaded healthy engine, a
    /// session's to the one holding its build cache while that has room.
    #[arg(
        long = "docker-engine",
        value_name = "NAME=ENDPOINT[,capacity=N][,tls-ca=PATH,tls-cert=PATH,tls-key=PATH]"
    )]
    docker_engines: Vec<chorus_sandbox::EngineConfig>,
    /// Leave the local Docker engine out: only the --docker-engine ones
    /// run code.
    #[arg(long, requires = "docker_engines")]
    no_local_docker: bool,
    /// Use this image for every language instead of the defaults.
    #[arg(long)]
    sandbox_image: Option<String>,
}

impl RunArgs {
    /// The executor these flags describe; an error only for engines that
    /// cannot make sense (an engine that does not answer disables runs, or
    /// is left out of the pool, and the hub goes on).
    async fn runner(&self) -> anyhow::Result<chorus_hub::Runner> {
        if self.no_runs {
            return Ok(chorus_hub::Runner::Disabled(
                "runs are turned off on this hub (--no-runs)".into(),
            ));
        }
        let mut config = chorus_sandbox::ExecutorConfig::default();
        config.limits.wall_clock = std::time::Duration::from_secs(self.run_timeout_secs);
        config.limits.memory_bytes = self.run_memory_mib * 1024 * 1024;
        config.limits.pids = self.run_pids;
        config.limits.nano_cpus = (self.run_cpus * 1e9) as i64;
        config.limits.output_bytes = self.run_output_bytes;
        config.limits.compile_timeout =
            std::time::Duration::from_secs(self.run_compile_timeout_secs);
        config.limits.build_memory_bytes = self.run_build_memory_mib * 1024 * 1024;
        config.limits.cache_bytes = self.run_cache_mib * 1024 * 1024;
        config.max_concurrent = self.max_concurrent_runs.max(1);
        if !self.docker_engines.is_empty() {
            let local = chorus_sandbox::EngineConfig::local(config.max_concurrent);
            config.engines = (!self.no_local_docker)
                .then_some(local)
                .into_iter()
                .chain(self.docker_engines.iter().cloned())
                .collect();
            chorus_sandbox::validate_engines(&config.engines).map_err(|why| {
                let hint = if why.ends_with(chorus_sandbox::LOCAL_ENGINE) && !self.no_local_docker {
                    " (the local engine's name; pick another, or add --no-local-docker)"
                } else {
                    ""
                };
                anyhow::anyhow!("--docker-engine: {why}{hint}")
            })?;
        }
        config.terminal.idle_timeout = std::time::Duration::from_secs(self.terminal_idle_secs);
        config.terminal.lifetime = std::time::Duration::from_secs(self.terminal_lifetime_secs);
        if let Some(image) = &self.sandbox_image {
            for language in &mut config.languages {
                language.image = image.clone();
            }
            config.terminal.image = image.clone();
        }
        Ok(
            match chorus_sandbox::DockerExecutor::connect(config).await {
                Ok(executor) => {
                    let engines: Vec<String> = executor
                        .engines_status()
                        .into_iter()
                        .map(|engine| {
                            let state = if engine.healthy { "" } else { ", down" };
                            format!("{} ({}{state})", engine.name, engine.capacity)
                        })
                        .collect();
                    tracing::info!(engines = %engines.join(", "), "runs enabled (Docker)");
                    chorus_hub::Runner::Enabled(std::sync::Arc::new(executor))
                }
                Err(err) => {
                    let reason = err.to_string();
                    tracing::warn!(%reason, "runs disabled; editing still works");
                    chorus_hub::Runner::Disabled(reason)
                }
            },
        )
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The message and its causes, never a backtrace: these are
            // users' mistakes (a busy port, a bad path), not bugs.
            eprintln!("chorus: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `err` and its causes, `: `-separated, leaving out a cause whose text
/// the message before it already shows (many errors print their source).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs always go to stderr: stdout belongs to LSP in `chorus lsp`.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CHORUS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(|| log::EscapedStderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Hub {
            listen,
            store,
            in_memory,
            open,
            tls_cert,
            tls_key,
            allowed_origins,
            advertise,
            max_message_bytes,
            max_document_chars,
            messages_per_second,
            max_connections,
            max_connections_per_ip,
            max_sessions,
            unload_idle_secs,
            terminal_orphan_secs,
            hello_timeout_secs,
            idle_timeout_secs,
            max_file_bytes,
            max_session_bytes,
            max_files,
            history_limit,
            runs,
            check,
        } => runtime.block_on(async {
            // What the flags alone decide, refused before anything opens
            // (and reported as such by --check).
            let flags = (move || -> anyhow::Result<chorus_hub::HubConfig> {
                // A cap no frame can carry.
                let max_file_bytes =
                    chorus_hub::max_file_bytes_for(max_file_bytes, max_message_bytes)
                        .map_err(anyhow::Error::msg)?;
                if in_memory && !open {
                    anyhow::bail!(
                        "--in-memory keeps no sessions, so no tokens can exist for them: add --open"
                    );
                }
                Ok(chorus_hub::HubConfig {
                    max_message_bytes,
                    max_document_chars,
                    messages_per_second,
                    max_connections,
                    max_connections_per_ip: max_connections_per_ip.max(1),
                    max_sessions: max_sessions.max(1),
                    unload_idle_after: seconds(unload_idle_secs, "--unload-idle-secs")?,
                    terminal_orphan_grace: seconds(terminal_orphan_secs, "--terminal-orphan-secs")?,
                    hello_timeout: seconds(hello_timeout_secs, "--hello-timeout-secs")?,
                    idle_timeout: seconds(idle_timeout_secs, "--idle-timeout-secs")?,
                    history_limit: history_limit.max(1),
                    workspace: chorus_hub::WorkspaceLimits {
                        max_file_bytes,
                        max_session_bytes,
                        max_files,
                    },
                    access: if open { Access::Open } else { Access::Tokens },
                    allowed_origins,
                    ..chorus_hub::HubConfig::default()
                })
            })();
            if check {
                return check::run(check::HubCheck {
                    flags: flags.map(|config| check::describe(&config, listen)),
                    store: (!in_memory).then_some(&store),
                    runs: &runs,
                    tls: tls_cert.as_deref().zip(tls_key.as_deref()),
                })
                .await;
            }
            let mut config = flags?;
            config.store = if in_memory {
                tracing::warn!("sessions are kept in memory only and end with the hub");
                None
            } else {
                // Fail now, not at the first join, if storage is unusable.
                let (database, store) = store.open().await?;
                tracing::info!(storage = %database.describe(), "sessions are stored");
                Some(store)
            };
            if config.access == Access::Open {
                tracing::warn!("--open: anyone who reaches this hub may join any session");
            }
            config.tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(chorus_hub::tls::server_config(cert, key)?),
                _ => None,
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr().context("no local address")?;
            let scheme = if config.tls.is_some() { "wss" } else { "ws" };
            // Several hubs on one PostgreSQL database are one service: each
            // session is claimed by one of them (ADR 0009).
            config.cluster = match config.store.as_ref().filter(|store| store.is_shared()) {
                Some(store) => {
                    let address = match advertise {
                        Some(address) => address,
                        None if addr.ip().is_unspecified() => anyhow::bail!(
                            "listening on {addr} with a shared database: say where the other hubs reach this one with --advertise ws://HOST:{}/",
                            addr.port()
                        ),
                        None => format!("ws://{addr}/"),
                    };
                    let cluster = chorus_hub::cluster::Cluster::join(store.clone(), address)
                        .await
                        .context("cannot take this hub's lease in the database")?;
                    Some(cluster)
                }
                None => None,
            };
            config.runner = runs.runner().await?;
            // The one line on stdout, once ready: scripts and tests read the
            // port here.
            println!("listening {scheme}://{addr}/");
            tracing::info!(%addr, "chorus hub ready");
            // SIGTERM (a deploy, systemd) drains like Ctrl-C: sessions are
            // handed over, nothing acknowledged is lost.
            let shutdown = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("cannot watch for SIGTERM")?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("shutting down: draining sessions");
                anyhow::Ok(())
            };
            let shutdown = async {
                if let Err(err) = shutdown.await {
                    tracing::warn!(cause = %err, "no SIGTERM handling; Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            };
            chorus_hub::run(listener, config, shutdown).await;
            Ok(())
        }),
        Command::Lsp {
            link,
            sync_files,
            stdio: _,
        } => {
            runtime.block_on(chorus_lsp::run_stdio(chorus_lsp::Settings {
                hub: link.hub,
                session: link.session,
                name: link.name,
                token: link.token,
                hub_ca: link.hub_ca.map(|p| p.display().to_string()),
                extensions: None,
                sync_files: sync_files.then_some(true),
            }));
            // The frame guard may be blocked reading stdin, which editors
            // keep open after `exit`: waiting for it would never end.
            runtime.shutdown_background();
            Ok(())
        }
        Command::Share { dir, link } => {
            let dir = match dir {
                Some(dir) => dir,
                None => std::env::current_dir().context("no current folder")?,
            };
            let root = dir
                .canonicalize()
                .with_context(|| format!("cannot share {}", dir.display()))?;
            let target = link.share_target()?;
            runtime.block_on(chorus_lsp::share::run_in_terminal(&root, &target))
        }
        Command::Session { command } => runtime.block_on(session_command(command)),
        Command::Version => {
            println!("chorus {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// A seeded session's files from a folder: the synced ones (path, text)
/// and the listed ones (path, size, why).
type Tree = (Vec<(String, String)>, Vec<(String, u64, NotSynced)>);

/// What `--from DIR` seeds, under the hub's default caps (`session create`
/// does not know a running hub's flags).
fn folder_tree(dir: &std::path::Path) -> anyhow::Result<Tree> {
    let limits = chorus_hub::DEFAULT_WORKSPACE_LIMITS;
    let listing = chorus_lsp::workspace::list(dir)?;
    if listing.files.len() as u64 > limits.max_files {
        anyhow::bail!(
            "{} has {} files to share; a session holds at most {}",
            dir.display(),
            listing.files.len(),
            limits.max_files
        );
    }
    for skipped in &listing.skipped {
        eprintln!("not seeded: {} ({})", skipped.path, skipped.reason);
    }
    let (mut files, mut listed) = (Vec::new(), Vec::new());
    let mut synced_bytes = 0u64;
    for file in &listing.files {
        let content = chorus_lsp::workspace::read_for_put(file, limits.max_file_bytes)
            .with_context(|| format!("cannot read {}", file.abs.display()))?;
        let path = file.path.clone();
        match content {
            PutContent::Text { text } => {
                let size = text.len() as u64;
                if synced_bytes + size <= limits.max_session_bytes {
                    synced_bytes += size;
                    files.push((path, text));
                } else {
                    listed.push((path, size, NotSynced::SessionFull));
                }
            }
            PutContent::Binary { size } => listed.push((path, size, NotSynced::Binary)),
            PutContent::TooLarge { size } => listed.push((path, size, NotSynced::TooLarge)),
        }
    }
    Ok((files, listed))
}

fn cpus(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && (0.01..=1024.0).contains(&cpus) => Ok(cpus),
        _ => Err(format!(
            "{text:?} is not a number of CPUs from 0.01 to 1024 (0 would mean no limit)"
        )),
    }
}

fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a positive whole number (0 would mean no limit)"
        )),
    }
}

/// A positive duration from a flag's seconds.
fn seconds(value: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    if !(value.is_finite() && value > 0.0 && value < 1e9) {
        anyhow::bail!("{flag} must be a positive number of seconds, not {value}");
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

/// An origin as browsers send it: scheme and host, maybe a port, no path.
fn origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not an origin like https://chorus.example.com"))?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "{text:?} is not an origin: scheme http or https, a host and maybe a port, no path"
        ));
    }
    Ok(origin.to_ascii_lowercase())
}

fn template_name(name: &str) -> Result<&'static templates::Template, String> {
    templates::find(name).ok_or_else(|| {
        format!(
            "no template {name:?}; there are {}",
            templates::names().join(", ")
        )
    })
}

async fn session_command(command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::Create {
            id,
            template,
            from,
            store,
        } => {
            // Read before anything is created: a bad folder changes nothing.
            let tree = from.as_deref().map(folder_tree).transpose()?;
            let id = admin::session_id(id)?;
            let (database, store) = store.open().await?;
            let created = admin::create(&store, &id).await?;
            // stdout is for scripts; what a person reads goes to stderr.
            print!("{}", created.for_scripts());
            eprintln!("{}", created.notice(&database));
            if let Some(template) = template {
                let files: Vec<(String, String)> = template
                    .files
                    .iter()
                    .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
                    .collect();
                admin::seed(&store, &id, &files).await?;
                eprintln!(
                    "Seeded it with the {} starter ({} files); run {} with chorus.run.",
                    template.name,
                    files.len(),
                    template.main
                );
            }
            if let (Some((files, listed)), Some(dir)) = (tree, &from) {
                admin::seed_tree(&store, &id, &files, &listed).await?;
                eprintln!(
                    "Seeded it with {} ({} files synced, {} listed but not synced).",
                    dir.display(),
                    files.len(),
                    listed.len()
                );
            }
        }
        SessionCommand::List { store } => {
            let (_, store) = store.open().await?;
            let sessions = store.list_sessions().await?;
            if sessions.is_empty() {
                eprintln!("{}", admin::NO_SESSIONS);
            }
            print!("{}", admin::session_table(&sessions));
        }
        SessionCommand::Revoke { id, store } => {
            let (_, store) = store.open().await?;
            admin::revoke(&store, &id).await?;
            eprintln!("{}", admin::revoked_notice(&id));
        }
    }
    Ok(())
}
