//! Every message the proxy sends the editor on its own initiative goes
//! through one task, in order: output lines must not overtake each other,
//! and a run's `$/progress` end must come before its final `showMessage`.
//! (Spawning a task per message, the obvious thing, reorders them.)

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
    Diagnostics(Uri, Vec<Diagnostic>),
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
            while let Some(note) = rx.recv().await {
                deliver(&client, note).await;
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

    pub fn diagnostics(&self, uri: Uri, diagnostics: Vec<Diagnostic>) {
        self.send(Note::Diagnostics(uri, diagnostics));
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

async fn deliver(client: &Client, note: Note) {
    match note {
        Note::Log(typ, message) => client.log_message(typ, message).await,
        Note::Show(typ, message) => client.show_message(typ, message).await,
        Note::Notification(delivery) => delivery(client.clone()).await,
        Note::Diagnostics(uri, diagnostics) => {
            client.publish_diagnostics(uri, diagnostics, None).await
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
