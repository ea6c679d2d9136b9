//! `chorus hub`: the central server that orders every edit in a session.
//!
//! Code map:
//! * [`server`] — listener, plain HTTP (`/healthz`) and WebSocket upgrade;
//! * [`connection`] — one proxy's socket: decoding, handshake, writer task;
//! * [`session`] — the per-session actor that owns documents and presence
//!   (`session/registry.rs` finds or starts it, `session/runs.rs` its code
//!   runs);
//! * [`document`] — a document's rope, revision and op history (pure);
//! * [`storage`] — op log, snapshots and session tokens, in SQLite or
//!   PostgreSQL (`storage/schema.rs` the SQL both speak, one module per
//!   backend);
//! * [`access`] — join and read-only tokens;
//! * [`admin`] — `chorus session create|list|revoke`: the work and the
//!   text they show;
//! * [`tls`] — the certificate for `wss://`.
//!
//! Architecture invariant: the session actor alone orders revisions, and it
//! never awaits a socket write.

pub mod access;
pub mod admin;
pub mod connection;
pub mod document;
pub mod server;
pub mod session;
pub mod storage;
pub mod tls;

use std::sync::Arc;

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
    /// Ops kept per document for transforming late client ops. 2,000 is
    /// minutes of a team typing; 10,000 cost ~1.9 MiB per document and made
    /// the document path 25% slower (cache misses; BENCHMARKS.md).
    pub history_limit: usize,
    /// Simultaneous connections accepted.
    pub max_connections: usize,
    /// Frames per second one connection may send on average; beyond it the
    /// hub reads its frames more slowly (TCP pushes back), nobody else waits.
    pub messages_per_second: u32,
    /// How many frames may come at once before pacing starts.
    pub message_burst: u32,
    /// Largest document, in characters; ops that would grow one beyond it
    /// are refused.
    pub max_document_chars: usize,
    pub runner: Runner,
    /// Where sessions are stored; `None` keeps them in memory only.
    pub store: Option<storage::Store>,
    /// Whether joining needs a token.
    pub access: access::Access,
    /// Serve `wss://` with this certificate instead of `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_message_bytes: chorus_protocol::wire::DEFAULT_MAX_MESSAGE_BYTES,
            outbound_queue: 4096,
            history_limit: 2_000,
            max_connections: 4096,
            messages_per_second: 500,
            message_burst: 2000,
            max_document_chars: 16 * 1024 * 1024,
            runner: Runner::Disabled("no executor configured".into()),
            store: None,
            access: access::Access::Open,
            tls: None,
        }
    }
}
