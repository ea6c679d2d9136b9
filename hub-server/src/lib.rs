//! `chorus hub`: the central server that orders every edit in a session.
//!
//! Code map:
//! * [`server`] — listener, plain HTTP (`/healthz`) and WebSocket upgrade;
//! * [`connection`] — one proxy's socket: decoding, handshake, writer task;
//! * [`session`] — the per-session actor that owns documents and presence
//!   (`session/registry.rs` finds or starts it, `session/runs.rs` its code
//!   runs, `session/workspace.rs` its file tree and the caps on it,
//!   `session/moves.rs` renames and deletes in that tree);
//! * [`document`] — a document's rope, revision and op history (pure);
//! * [`storage`] — op log, snapshots, listed files and session tokens, in
//!   SQLite or PostgreSQL (`storage/schema.rs` the SQL both speak, one
//!   module per backend);
//! * [`access`] — join and read-only tokens;
//! * [`admin`] — `chorus session create|list|revoke`: the work and the
//!   text they show;
//! * [`templates`] — the starter projects `session create --template` seeds;
//! * [`tls`] — the certificate for `wss://`;
//! * [`metrics`] — what `GET /metrics` shows operators, counted through
//!   one-line hooks in the modules above (ADR 0010);
//! * [`web`] — the browser door: the page at `/s/SESSION`, its embedded
//!   bundle (built from `web/`, committed in `web-dist/`) and its origin rule.
//!
//! Architecture invariant: the session actor alone orders revisions, and it
//! never awaits a socket write.

pub mod access;
pub mod admin;
pub mod cluster;
pub mod connection;
pub mod document;
pub mod metrics;
pub mod outbound;
pub mod server;
pub mod session;
pub mod storage;
pub mod templates;
pub mod tls;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

pub use chorus_protocol::wire::WorkspaceLimits;
use chorus_sandbox::Executor;
pub use server::run;

/// Whether this hub can run code, and with what.
#[derive(Clone)]
pub enum Runner {
    Enabled(Arc<dyn Executor>),
    /// Why not, in words for the user.
    Disabled(String),
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runner::Enabled(_) => f.write_str("Runner::Enabled"),
            Runner::Disabled(reason) => write!(f, "Runner::Disabled({reason:?})"),
        }
    }
}

/// Tunables, all with defaults that suit a team-sized hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Largest client frame answered normally; bigger ones get `too_large`.
    pub max_message_bytes: usize,
    /// Frames queued per connection before it counts as too slow.
    pub outbound_queue: usize,
    /// Bytes queued per connection before it counts as too slow (one
    /// frame larger than this still reaches an empty queue).
    pub outbound_bytes: usize,
    /// Ops kept per document for transforming late client ops. 2,000 is
    /// minutes of a team typing; 10,000 cost ~1.9 MiB per document and made
    /// the document path 25% slower (cache misses; BENCHMARKS.md). Fewer
    /// when they are large: a document keeps at most
    /// [`document::MAX_HISTORY_BYTES`] of history.
    pub history_limit: usize,
    /// Simultaneous connections accepted.
    pub max_connections: usize,
    /// Simultaneous connections from one address: a team behind one NAT
    /// fits, one machine cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Sessions held in memory at once; joins to further ones are refused
    /// until some unload.
    pub max_sessions: usize,
    /// How long a stored session with nobody in it stays in memory.
    pub unload_idle_after: Duration,
    /// How long a session's shared terminal outlives the last participant:
    /// long enough for every proxy to reconnect after a network blip or a
    /// hub restart, short enough not to hold a container for nobody.
    pub terminal_orphan_grace: Duration,
    /// How long a new connection may take to say `hello`: connections that
    /// never do would otherwise hold `max_connections` slots forever.
    pub hello_timeout: Duration,
    /// How long a connection may stay silent (no frame, not even a pong to
    /// the hub's pings) before it is dropped and leaves its session.
    pub idle_timeout: Duration,
    /// Frames per second one connection may send on average; beyond it the
    /// hub reads its frames more slowly (TCP pushes back), nobody else waits.
    pub messages_per_second: u32,
    /// How many frames may come at once before pacing starts.
    pub message_burst: u32,
    /// Largest document, in characters; ops that would grow one beyond it
    /// are refused.
    pub max_document_chars: usize,
    /// Caps on each session's file tree, announced in `welcome`. Keep
    /// `max_file_bytes` within [`max_file_bytes_for`] of
    /// `max_message_bytes`, or text files under the cap cannot be `put`.
    pub workspace: WorkspaceLimits,
    pub runner: Runner,
    /// Where sessions are stored; `None` keeps them in memory only.
    pub store: Option<storage::Store>,
    /// Whether joining needs a token.
    pub access: access::Access,
    /// Serve `wss://` with this certificate instead of `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Web origins (`https://host:port`) whose pages may open a WebSocket;
    /// upgrades carrying any other `Origin` are refused. Editors' proxies
    /// send none and are not affected.
    pub allowed_origins: Vec<String>,
    /// This hub as one of several on a shared PostgreSQL database (ADR
    /// 0009); `None` for a hub alone (SQLite, in memory).
    pub cluster: Option<Arc<cluster::Cluster>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_message_bytes: chorus_protocol::wire::DEFAULT_MAX_MESSAGE_BYTES,
            outbound_queue: 4096,
            outbound_bytes: 16 * 1024 * 1024,
            history_limit: 2_000,
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_sessions: 10_000,
            unload_idle_after: Duration::from_secs(300),
            terminal_orphan_grace: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            messages_per_second: 500,
            message_burst: 2000,
            max_document_chars: 16 * 1024 * 1024,
            workspace: DEFAULT_WORKSPACE_LIMITS,
            runner: Runner::Disabled("no executor configured".into()),
            store: None,
            access: access::Access::Open,
            tls: None,
            allowed_origins: Vec::new(),
            cluster: None,
        }
    }
}

/// The default caps on a session's tree: source files are far below
/// 512 KiB (larger text is mostly generated or data, listed instead of
/// synced); 256 MiB and 20,000 files hold a large monorepo's sources while
/// bounding what one session keeps in the hub's memory.
pub const DEFAULT_WORKSPACE_LIMITS: WorkspaceLimits = WorkspaceLimits {
    max_file_bytes: 512 * 1024,
    max_session_bytes: 256 * 1024 * 1024,
    max_files: 20_000,
};

/// What a `put` frame holds besides the file's text, at most: the envelope
/// (under 100 bytes) and a path of up to 4096 bytes, escaped. A text's own
/// JSON escaping (`\n` is two bytes) is not counted: a file whose frame
/// still comes out too large is refused with `too_large` like any frame.
pub const PUT_FRAME_OVERHEAD: usize = 16 * 1024;

/// The `max_file_bytes` a hub uses: `requested`, or the default, either
/// within what one frame of `max_message_bytes` can carry. A requested cap
/// beyond it is an error saying what to change; the default is lowered to
/// fit (with a warning: text files above it will be listed, not synced).
pub fn max_file_bytes_for(requested: Option<u64>, max_message_bytes: usize) -> Result<u64, String> {
    let fits = max_message_bytes.saturating_sub(PUT_FRAME_OVERHEAD) as u64;
    match requested {
        Some(bytes) if bytes > fits => Err(format!(
            "--max-file-bytes {bytes} does not fit in one message: --max-message-bytes \
             {max_message_bytes} leaves at most {fits} bytes for a file's text (a put needs \
             {PUT_FRAME_OVERHEAD} bytes besides it); raise --max-message-bytes or lower \
             --max-file-bytes"
        )),
        Some(bytes) => Ok(bytes),
        None if DEFAULT_WORKSPACE_LIMITS.max_file_bytes > fits => {
            tracing::warn!(
                max_file_bytes = fits,
                max_message_bytes,
                "--max-message-bytes is small: text files over {fits} bytes will be listed, not synced"
            );
            Ok(fits)
        }
        None => Ok(DEFAULT_WORKSPACE_LIMITS.max_file_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_cap_fits_in_a_message() {
        let frame = chorus_protocol::wire::DEFAULT_MAX_MESSAGE_BYTES;
        assert_eq!(max_file_bytes_for(None, frame), Ok(512 * 1024));
        assert_eq!(max_file_bytes_for(Some(1000), frame), Ok(1000));
        let fits = (frame - PUT_FRAME_OVERHEAD) as u64;
        assert_eq!(max_file_bytes_for(Some(fits), frame), Ok(fits));
        let err = max_file_bytes_for(Some(fits + 1), frame).unwrap_err();
        assert!(err.contains("raise --max-message-bytes"), "{err}");
        // A small frame limit lowers the default rather than refusing.
        assert_eq!(
            max_file_bytes_for(None, 100 * 1024),
            Ok((100 * 1024 - PUT_FRAME_OVERHEAD) as u64)
        );
        assert_eq!(max_file_bytes_for(None, 10), Ok(0));
    }
}
