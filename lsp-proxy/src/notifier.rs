//! Every message the proxy sends the editor on its own initiative goes
//! through one task, in order: output lines must not overtake each other,
//! and a run's `$/progress` end must come before its final `showMessage`.
//! (Spawning a task per message, the obvious thing, reorders them.)
//!
//! It also owns what the editor was last sent as this server's
//! diagnostics: `publishDiagnostics` replaces every diagnostic a server
//! gave a URI, so collaborators' cursors (for editors without a plugin) and
//! the last run's errors are kept apart here ([`DiagnosticLayers`]) and
//! published together, or the one would wipe out the other.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::notification::{Notification, Progress};
use tower_lsp_server::ls_types::{
    Diagnostic, MessageType, NumberOrString, ProgressParams, ProgressParamsValue,
    ShowDocumentParams, Uri, WorkDoneProgress,
};
use tower_lsp_server::Client;
use tracing::info;

/// How long the editor gets to accept a progress token before the
/// notifier moves on (its begin/end are then sent anyway, and ignored).
const CREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends one notification of any type; boxed so that one queue carries
/// them all, in order.
type Delivery = Box<dyn FnOnce(Client) -> BoxFuture<'static, ()> + Send>;

enum Note {
    Log(MessageType, String),
    Show(MessageType, String),
    Notification(Delivery),
    CreateProgress(NumberOrString),
    Diagnostics(Uri, Layer, Vec<Diagnostic>),
    ShowDocument(ShowDocumentParams),
    Progress(NumberOrString, WorkDoneProgress),
}

#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Note>,
    /// Set once the editor sent `initialized`: tower-lsp-server drops
    /// anything the server sends before it, and the hub's welcome (with
    /// the presence of everyone already there) can arrive sooner.
    ready: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Notifier {
    pub fn spawn(client: Client) -> Notifier {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (ready, mut is_ready) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if is_ready.wait_for(|ready| *ready).await.is_err() {
                return;
            }
            let mut layers = DiagnosticLayers::default();
            while let Some(note) = rx.recv().await {
                deliver(&client, note, &mut layers).await;
            }
        });
        Notifier {
            tx,
            ready: std::sync::Arc::new(ready),
        }
    }

    /// The editor is initialized: deliver what waited and all that follows.
    pub fn open(&self) {
        self.ready.send_replace(true);
    }

    fn send(&self, note: Note) {
        // Fails only when the server is shutting down.
        let _ = self.tx.send(note);
    }

    pub fn log(&self, typ: MessageType, message: String) {
        self.send(Note::Log(typ, message));
    }

    pub fn show(&self, typ: MessageType, message: String) {
        self.send(Note::Show(typ, message));
    }

    /// Sends a notification such as those in [`crate::lsp_ext`].
    pub fn notify<N>(&self, params: N::Params)
    where
        N: Notification + 'static,
    {
        let delivery: Delivery = Box::new(move |client: Client| {
            Box::pin(async move { client.send_notification::<N>(params).await })
        });
        self.send(Note::Notification(delivery));
    }

    /// Shows `message` and logs that it did: what the user was told is
    /// often what explains a report.
    pub fn tell_user(&self, typ: MessageType, message: impl Into<String>) {
        let message = message.into();
        info!(%message, "telling the user");
        self.show(typ, message);
    }

    /// Replaces `layer`'s diagnostics of `uri`; the editor gets them with
    /// the other layer's.
    pub fn diagnostics(&self, uri: Uri, layer: Layer, diagnostics: Vec<Diagnostic>) {
        self.send(Note::Diagnostics(uri, layer, diagnostics));
    }

    /// Asks the editor to show a document (follow mode). Not awaited beyond
    /// a short timeout: the editor may ignore it.
    pub fn show_document(&self, params: ShowDocumentParams) {
        self.send(Note::ShowDocument(params));
    }

    pub fn create_progress(&self, token: NumberOrString) {
        self.send(Note::CreateProgress(token));
    }

    pub fn progress(&self, token: NumberOrString, value: WorkDoneProgress) {
        self.send(Note::Progress(token, value));
    }
}

async fn deliver(client: &Client, note: Note, layers: &mut DiagnosticLayers) {
    match note {
        Note::Log(typ, message) => client.log_message(typ, message).await,
        Note::Show(typ, message) => client.show_message(typ, message).await,
        Note::Notification(delivery) => delivery(client.clone()).await,
        Note::Diagnostics(uri, layer, diagnostics) => {
            let all = layers.set(&uri, layer, diagnostics);
            client.publish_diagnostics(uri, all, None).await
        }
        Note::ShowDocument(params) => {
            let _ = tokio::time::timeout(CREATE_TIMEOUT, client.show_document(params)).await;
        }
        Note::CreateProgress(token) => {
            let _ =
                tokio::time::timeout(CREATE_TIMEOUT, client.create_work_done_progress(token)).await;
        }
        Note::Progress(token, value) => {
            let params = ProgressParams {
                token,
                value: ProgressParamsValue::WorkDone(value),
            };
            client.send_notification::<Progress>(params).await;
        }
    }
}

/// Who a diagnostic comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Collaborators' cursors, for editors without a plugin (`presence.rs`).
    Cursors,
    /// The session's last run (`runs.rs`).
    Run,
}

/// Each URI's diagnostics per [`Layer`], as last published.
#[derive(Default)]
struct DiagnosticLayers {
    /// Only URIs with some diagnostic: an editor told "none" is forgotten.
    by_uri: HashMap<Uri, [Vec<Diagnostic>; 2]>,
}

impl DiagnosticLayers {
    /// Replaces `layer` of `uri` and returns everything `uri` now has.
    fn set(&mut self, uri: &Uri, layer: Layer, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
        let slot = match layer {
            Layer::Cursors => 0,
            Layer::Run => 1,
        };
        let layers = self.by_uri.entry(uri.clone()).or_default();
        layers[slot] = diagnostics;
        let all: Vec<Diagnostic> = layers.iter().flatten().cloned().collect();
        if all.is_empty() {
            self.by_uri.remove(uri);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn diagnostic(message: &str) -> Diagnostic {
        Diagnostic {
            message: message.to_owned(),
            ..Diagnostic::default()
        }
    }

    #[test]
    fn a_layer_replaces_only_its_own_diagnostics() {
        let mut layers = DiagnosticLayers::default();
        let uri = Uri::from_str("file:///w/main.py").unwrap();
        let messages =
            |all: Vec<Diagnostic>| -> Vec<String> { all.into_iter().map(|d| d.message).collect() };
        let cursor = vec![diagnostic("bo is here")];
        assert_eq!(
            messages(layers.set(&uri, Layer::Cursors, cursor)),
            ["bo is here"]
        );
        let error = vec![diagnostic("NameError")];
        assert_eq!(
            messages(layers.set(&uri, Layer::Run, error)),
            ["bo is here", "NameError"]
        );
        let moved = vec![diagnostic("bo is there")];
        assert_eq!(
            messages(layers.set(&uri, Layer::Cursors, moved)),
            ["bo is there", "NameError"]
        );
        assert_eq!(
            messages(layers.set(&uri, Layer::Run, Vec::new())),
            ["bo is there"]
        );
        assert!(layers.set(&uri, Layer::Cursors, Vec::new()).is_empty());
        assert!(layers.by_uri.is_empty(), "nothing kept for a URI told none");
    }
}
