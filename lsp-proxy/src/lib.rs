//! `chorus lsp`: the LSP server each editor runs beside its own language
//! server, bridging the editor's buffers to a Chorus hub.
//!
//! Code map:
//! * [`backend`] — the thin `LanguageServer` impl (turns calls into events);
//! * [`core`] — the single loop that owns all state and dispatches events;
//! * `documents` — the shared documents, by protocol path: join, rejoin,
//!   resync, and carrying out their sync's effects;
//! * `disk` — the session's files on disk (`syncFiles`) for those the
//!   editor does not have open: written atomically, kept in step, moved
//!   and backed up as the session renames and deletes them, and watched
//!   (`disk/watcher.rs`): what other programs change there is sent;
//! * `moves` — renames and deletes of files and directories: where paths
//!   go, and ours the hub has yet to answer (ADR 0005);
//! * [`sync`] — per-document two-party sync (pure; the hard part);
//! * [`presence`] — participants, cursors both ways, follow mode;
//! * `commands` — the `chorus.*` commands;
//! * [`hub_link`] — the WebSocket to the hub, with reconnect, and the
//!   loop's end of it;
//! * [`notifier`] — everything sent to the editor unasked, in order;
//! * [`workspace`] — the walk of a folder that sharing publishes;
//! * [`share`] — publishing a folder (`chorus share`, `chorus.share`);
//! * [`runs`] — showing shared runs through standard LSP messages;
//! * `terminal` — the shared terminal: `chorus/terminal*` for plugins,
//!   log lines without escape sequences for other editors, and the
//!   `chorus.terminal*` commands;
//! * [`lsp_ext`] — the `chorus/*` messages, commands and settings plugins
//!   speak, as types (the only place their wire shape is defined).
//!
//! Architecture invariants: this is the only crate that knows LSP; stdout
//! carries only LSP messages (logs go to stderr).

pub mod backend;
mod commands;
pub mod core;
mod disk;
mod documents;
pub mod hub_link;
pub mod lsp_ext;
mod moves;
pub mod notifier;
pub mod presence;
pub mod runs;
pub mod share;
pub mod sync;
#[cfg(test)]
mod sync_sim;
mod terminal;
pub mod transport;
pub mod workspace;

use tokio::sync::mpsc;
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::request::Request;
use tower_lsp_server::{LspService, Server};

/// Where to collaborate; from flags, overridable by `initializationOptions`.
pub use lsp_ext::Settings;

/// The hub when none is given.
pub const DEFAULT_HUB: &str = "ws://127.0.0.1:7420/";

/// The name collaborators see when none is given: the user's login name.
pub fn default_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "anonymous".into())
}

/// Serves LSP on stdin/stdout until the editor exits.
pub async fn run_stdio(flags: Settings) {
    let (service, socket) = LspService::build(|client| {
        let (events, rx) = mpsc::unbounded_channel();
        tokio::spawn(core::run(client, events.clone(), rx));
        backend::Backend { events, flags }
    })
    .custom_method(
        lsp_ext::DocumentState::METHOD,
        backend::Backend::document_state,
    )
    .custom_method(lsp_ext::LocalCursor::METHOD, backend::Backend::cursor)
    .custom_method(transport::DAMAGED_METHOD, backend::Backend::damaged)
    .finish();
    // Frames reach the server only through the guard (see transport.rs).
    let (guarded, into_server) = tokio::io::duplex(1 << 16);
    tokio::spawn(transport::guard(tokio::io::stdin(), into_server));
    Server::new(guarded, tokio::io::stdout(), socket)
        .concurrency_level(1)
        .serve(service)
        .await;
}
