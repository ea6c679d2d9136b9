//! The `LanguageServer` face of `chorus lsp`. Deliberately thin: each call
//! becomes an [`Event`] for the core loop and returns at once.
//!
//! tower-lsp-server runs handlers concurrently unless told otherwise; the
//! server is built with `concurrency_level(1)` and `did_change` only does a
//! synchronous channel send, so changes reach the core in the order the
//! editor sent them.

use std::path::PathBuf;

use chorus_protocol::text::{Encoding, LinePos};
use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::{
    CodeAction, CodeActionOrCommand, CodeActionParams, CodeActionProviderCapability,
    CodeActionResponse, Command, CreateFilesParams, DeleteFilesParams, DidChangeTextDocumentParams,
    DidCloseTextDocumentParams, DidOpenTextDocumentParams, DidSaveTextDocumentParams,
    ExecuteCommandOptions, ExecuteCommandParams, FileOperationFilter, FileOperationPattern,
    FileOperationRegistrationOptions, InitializeParams, InitializeResult, InitializedParams,
    LSPAny, Position, PositionEncodingKind, RenameFilesParams, ResourceOperationKind,
    ServerCapabilities, ServerInfo, TextDocumentSyncCapability, TextDocumentSyncKind,
    TextDocumentSyncOptions, TextDocumentSyncSaveOptions, Uri, WorkDoneProgressOptions,
    WorkspaceFileOperationsServerCapabilities, WorkspaceServerCapabilities,
};
use tower_lsp_server::LanguageServer;

use crate::core::Event;
use crate::lsp_ext::{
    self, DocumentStateParams, DocumentStateResult, LocalCursorParams, RunArguments,
};
use crate::sync::Change;
use crate::Settings;

pub struct Backend {
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// Command-line flags; `initializationOptions` override them.
    pub(crate) flags: Settings,
}

impl Backend {
    fn send(&self, event: Event) {
        // Fails only once the core has stopped, i.e. during shutdown.
        let _ = self.events.send(event);
    }

    /// `chorus/cursor` (notification): relayed to the session.
    pub async fn cursor(&self, params: LocalCursorParams) {
        let selections = params
            .selections
            .into_iter()
            .map(|s| (line_pos(s.anchor), line_pos(s.head)))
            .collect();
        self.send(Event::Cursor {
            uri: params.uri,
            selections,
        });
    }

    /// What the transport guard says about a frame it could not pass on
    /// as sent (see transport.rs).
    pub async fn damaged(&self, params: crate::transport::Damaged) {
        let uri = params
            .uri
            .as_deref()
            .and_then(|uri| uri.parse::<tower_lsp_server::ls_types::Uri>().ok());
        self.send(Event::Damaged {
            uri,
            method: params.method,
            reason: params.reason,
        });
    }

    /// `chorus/documentState`: the proxy's view of one document, for tests
    /// and health checks; `None` for a document that is not shared.
    pub async fn document_state(
        &self,
        params: DocumentStateParams,
    ) -> Result<Option<DocumentStateResult>> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::DocumentState {
            uri: params.uri,
            reply,
        });
        answer.await.map_err(|_| Error::internal_error())
    }
}

fn line_pos(p: Position) -> LinePos {
    LinePos {
        line: p.line,
        column: p.character,
    }
}

fn negotiate_encoding(params: &InitializeParams) -> (Encoding, PositionEncodingKind) {
    let offered = params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.clone())
        .unwrap_or_default();
    // UTF-32 columns are exactly the OT unit; UTF-16 is the LSP default
    // every client must support.
    if offered.contains(&PositionEncodingKind::UTF32) {
        (Encoding::Utf32, PositionEncodingKind::UTF32)
    } else {
        (Encoding::Utf16, PositionEncodingKind::UTF16)
    }
}

/// Whether the editor renames files when a `workspace/applyEdit` carries a
/// `RenameFile` (`workspace.workspaceEdit.resourceOperations`).
fn can_rename(params: &InitializeParams) -> bool {
    params
        .capabilities
        .workspace
        .as_ref()
        .and_then(|w| w.workspace_edit.as_ref())
        .and_then(|e| e.resource_operations.as_ref())
        .is_some_and(|ops| ops.contains(&ResourceOperationKind::Rename))
}

/// The file operations the editor reports: every file and folder (the
/// proxy keeps those under the workspace root; the globs cannot name it).
fn file_operations() -> WorkspaceFileOperationsServerCapabilities {
    let everything = FileOperationRegistrationOptions {
        filters: vec![FileOperationFilter {
            scheme: Some("file".into()),
            pattern: FileOperationPattern {
                glob: "**/*".into(),
                matches: None,
                options: None,
            },
        }],
    };
    WorkspaceFileOperationsServerCapabilities {
        // Creating a file shares nothing: the session gets a file when
        // the editor opens it (didOpen), with its buffer's text.
        did_create: Some(everything.clone()),
        did_rename: Some(everything.clone()),
        did_delete: Some(everything),
        ..WorkspaceFileOperationsServerCapabilities::default()
    }
}

fn uris(files: impl IntoIterator<Item = String>) -> Vec<Uri> {
    files
        .into_iter()
        .filter_map(|uri| uri.parse::<Uri>().ok())
        .collect()
}

fn workspace_root(params: &InitializeParams) -> Option<PathBuf> {
    let folder = params
        .workspace_folders
        .as_ref()
        .and_then(|folders| folders.first())
        .map(|f| f.uri.clone());
    #[allow(deprecated)]
    let uri = folder.or_else(|| params.root_uri.clone())?;
    uri.to_file_path().map(|p| p.into_owned())
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let (encoding, kind) = negotiate_encoding(&params);
        let mut settings = self.flags.clone();
        if let Some(options) = params.initialization_options.clone() {
            match serde_json::from_value::<Settings>(options) {
                Ok(from_editor) => settings = settings.overridden_by(from_editor),
                Err(err) => {
                    return Err(Error::invalid_params(format!(
                        "initializationOptions: expected {{hub, session, name}}: {err}"
                    )))
                }
            }
        }
        self.send(Event::Init {
            settings,
            root: workspace_root(&params),
            encoding,
            editor: params.client_info.as_ref().map(|c| c.name.clone()),
            work_done_progress: params
                .capabilities
                .window
                .as_ref()
                .and_then(|w| w.work_done_progress)
                .unwrap_or(false),
            can_rename: can_rename(&params),
        });
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(kind),
                text_document_sync: Some(TextDocumentSyncCapability::Options(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        // Saving a buffer whose file was deleted from the
                        // session shares it again (ADR 0005).
                        save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                        ..TextDocumentSyncOptions::default()
                    },
                )),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: lsp_ext::COMMANDS.map(str::to_owned).to_vec(),
                    work_done_progress_options: WorkDoneProgressOptions::default(),
                }),
                code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
                workspace: Some(WorkspaceServerCapabilities {
                    workspace_folders: None,
                    file_operations: Some(file_operations()),
                }),
                ..ServerCapabilities::default()
            },
            server_info: Some(ServerInfo {
                name: "chorus".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.send(Event::Initialized);
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        self.send(Event::Open {
            uri: doc.uri,
            text: doc.text,
            version: doc.version,
        });
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let changes = params
            .content_changes
            .into_iter()
            .map(|c| Change {
                range: c.range.map(|r| (line_pos(r.start), line_pos(r.end))),
                text: c.text,
            })
            .collect();
        self.send(Event::Change {
            uri: params.text_document.uri,
            version: params.text_document.version,
            changes,
        });
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Command {
            command: params.command,
            arguments: params.arguments,
            reply,
        });
        // The core answers at once, or (chorus.files) when the hub has;
        // it never waits on the editor.
        match answer.await {
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(message)) => Err(Error {
                code: ErrorCode::InvalidParams,
                message: message.into(),
                data: None,
            }),
            Err(_) => Err(Error::internal_error()),
        }
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let (reply, answer) = oneshot::channel();
        self.send(Event::IsShared {
            uri: uri.clone(),
            reply,
        });
        if !answer.await.unwrap_or(false) {
            return Ok(None);
        }
        let run = CodeAction {
            title: "Run with Chorus".into(),
            command: Some(Command {
                title: "Run with Chorus".into(),
                command: lsp_ext::RUN.into(),
                arguments: Some(
                    RunArguments {
                        uri: Some(uri),
                        options: None,
                    }
                    .into_arguments(),
                ),
            }),
            ..CodeAction::default()
        };
        Ok(Some(vec![CodeActionOrCommand::CodeAction(run)]))
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        self.send(Event::Close {
            uri: params.text_document.uri,
        });
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        self.send(Event::Save {
            uri: params.text_document.uri,
        });
    }

    async fn did_create_files(&self, _: CreateFilesParams) {
        // Nothing to share until the editor opens the file: its didOpen
        // carries the text, and `open` creates it in the session.
    }

    async fn did_rename_files(&self, params: RenameFilesParams) {
        let renames = params
            .files
            .into_iter()
            .filter_map(|f| Some((f.old_uri.parse::<Uri>().ok()?, f.new_uri.parse().ok()?)))
            .collect();
        self.send(Event::FilesRenamed { renames });
    }

    async fn did_delete_files(&self, params: DeleteFilesParams) {
        let uris = uris(params.files.into_iter().map(|f| f.uri));
        self.send(Event::FilesDeleted { uris });
    }
}
