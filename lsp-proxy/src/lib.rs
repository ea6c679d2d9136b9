//! `chorus lsp`: the LSP server each editor runs beside its own language
//! server, bridging the editor's buffers to a Chorus hub.
//!
//! Code map:
//! * [`backend`] — the thin `LanguageServer` impl (turns calls into events);
//! * [`core`] — the single loop that owns all state and dispatches events;
//! * `documents` — the shared documents, by protocol path: join, rejoin,
//!   resync, and carrying out their sync's effects;
//! * [`sync`] — per-document two-party sync (pure; the hard part);
//! * [`presence`] — participants, cursors both ways, follow mode;
//! * `commands` — the `chorus.*` commands;
//! * [`hub_link`] — the WebSocket to the hub, with reconnect, and the
//!   loop's end of it;
//! * [`notifier`] — everything sent to the editor unasked, in order;
//! * [`runs`] — showing shared runs through standard LSP messages.
//!
//! Architecture invariants: this is the only crate that knows LSP; stdout
//! carries only LSP messages (logs go to stderr).

pub mod backend;
mod commands;
pub mod core;
mod documents;
pub mod hub_link;
pub mod notifier;
pub mod presence;
pub mod runs;
pub mod sync;
#[cfg(test)]
mod sync_sim;

use serde::Deserialize;
use tokio::sync::mpsc;
use tower_lsp_server::{LspService, Server};

/// Where to collaborate; from flags, overridable by `initializationOptions`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Settings {
    pub hub: Option<String>,
    pub session: Option<String>,
    pub name: Option<String>,
    /// The session's join or read-only token.
    pub token: Option<String>,
    /// A CA certificate (PEM file) to trust for `wss://` besides the
    /// system's.
    #[serde(alias = "hubCa")]
    pub hub_ca: Option<String>,
    /// Set by editor plugins that handle `chorus/*` notifications and send
    /// `chorus/cursor`; without it the proxy shows collaborators through
    /// standard LSP alone (cursor diagnostics) and infers the user's cursor
    /// from their edits.
    pub extensions: Option<bool>,
}

impl Settings {
    fn overridden_by(self, other: Settings) -> Settings {
        Settings {
            hub: other.hub.or(self.hub),
            session: other.session.or(self.session),
            name: other.name.or(self.name),
            token: other.token.or(self.token),
            hub_ca: other.hub_ca.or(self.hub_ca),
            extensions: other.extensions.or(self.extensions),
        }
    }
}

/// Serves LSP on stdin/stdout until the editor exits.
pub async fn run_stdio(flags: Settings) {
    let (service, socket) = LspService::build(|client| {
        let (events, rx) = mpsc::unbounded_channel();
        tokio::spawn(core::run(client, events.clone(), rx));
        backend::Backend { events, flags }
    })
    .custom_method("chorus/documentState", backend::Backend::document_state)
    .custom_method("chorus/cursor", backend::Backend::cursor)
    .finish();
    Server::new(tokio::io::stdin(), tokio::io::stdout(), socket)
        .concurrency_level(1)
        .serve(service)
        .await;
}
