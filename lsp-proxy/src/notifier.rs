//! Every message the proxy sends the editor on its own initiative goes
//! through one task, in order: output lines must not overtake each other,
//! and a run's `$/progress` end must come before its final `showMessage`.
//! (Spawning a task per message, the obvious thing, reorders them.)

use std::time::Duration;

use serde_json::Value;
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

macro_rules! chorus_notification {
    ($name:ident, $method:literal) => {
        pub enum $name {}
        impl Notification for $name {
            type Params = Value;
            const METHOD: &'static str = $method;
        }
    };
}
chorus_notification!(PresenceNotification, "chorus/presence");
chorus_notification!(ConnectionNotification, "chorus/connection");
chorus_notification!(CursorNotification, "chorus/cursor");
chorus_notification!(RunStartedNotification, "chorus/runStarted");
chorus_notification!(RunOutputNotification, "chorus/runOutput");
chorus_notification!(RunFinishedNotification, "chorus/runFinished");

/// The Chorus extensions to LSP that plugins read.
#[derive(Clone, Copy, Debug)]
pub enum Custom {
    Presence,
    /// `{state: "online"|"offline"|"refused", session, role?, reason?}`.
    Connection,
    Cursor,
    RunStarted,
    RunOutput,
    RunFinished,
}

enum Note {
    Log(MessageType, String),
    Show(MessageType, String),
    Custom(Custom, Value),
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

    /// Shows `message` and logs that it did: what the user was told is
    /// often what explains a report.
    pub fn tell_user(&self, typ: MessageType, message: impl Into<String>) {
        let message = message.into();
        info!(%message, "telling the user");
        self.show(typ, message);
    }

    pub fn custom(&self, kind: Custom, params: Value) {
        self.send(Note::Custom(kind, params));
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
        Note::Custom(kind, params) => match kind {
            Custom::Presence => {
                client
                    .send_notification::<PresenceNotification>(params)
                    .await
            }
            Custom::Cursor => client.send_notification::<CursorNotification>(params).await,
            Custom::Connection => {
                client
                    .send_notification::<ConnectionNotification>(params)
                    .await
            }
            Custom::RunStarted => {
                client
                    .send_notification::<RunStartedNotification>(params)
                    .await
            }
            Custom::RunOutput => {
                client
                    .send_notification::<RunOutputNotification>(params)
                    .await
            }
            Custom::RunFinished => {
                client
                    .send_notification::<RunFinishedNotification>(params)
                    .await
            }
        },
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
