//! Simulated editors: VS Code, Neovim and Helix as DESIGN.md §5 describes
//! them, each driving its own `chorus lsp` over stdio.
//!
//! An editor owns its buffers and behaves like a single-threaded editor:
//! every change to a buffer and the `didChange` that reports it happen
//! under one lock, so reports leave in the order the buffer changed. A
//! remote `workspace/applyEdit` is applied the moment it is processed and
//! answered only after the `didChange`(s) it caused, as real editors do.
//!
//! What differs per kind (and what the proxy must cope with):
//!
//! | | VS Code | Neovim | Helix |
//! |---|---|---|---|
//! | encodings offered | utf-16 | utf-8, utf-16, utf-32 | utf-8, utf-32, utf-16 |
//! | version step | +1 | changedtick, +1..=3 | +1 |
//! | stale versioned edit | `applied:false` | skipped, `applied:true` | `applied:false`, "document has changed" |
//! | `didChange` per applied edit | one, minified, reverse order | one per TextEdit, minified, reverse order | one, in document order |
//!
//! Typing goes through the same transaction code: one call to
//! [`Editor::edit_many_with`] is one keystroke, possibly at several cursors,
//! reported exactly like an applied edit of that kind. With
//! `full_text_changes` every report carries the whole text instead of
//! ranges, as some clients do.
//!
//! To hit the stale paths on purpose an editor can *hold* incoming
//! `applyEdit` requests (an editor busy elsewhere), keep typing, and process
//! them later.
//!
//! Files (ADR 0005): every kind renames a buffer when an `applyEdit`
//! carries a `RenameFile` as VS Code and Helix do: the file on disk moves
//! (in a real workspace folder), the buffer is closed under its old name
//! and opened under the new one (`didClose`, `didOpen`), and VS Code and
//! Helix then report the rename back (`didRenameFiles`); Neovim does not.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::hub::{chorus_bin, Hub};
use super::lsp::{LspClient, Outbox, RequestHandler};
use super::positions::{range_json, splits_crlf, to_offset, Encoding, Position, Resolved};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EditorKind {
    VsCode,
    Neovim,
    Helix,
}

impl EditorKind {
    /// `general.positionEncodings`, in the editor's order of preference.
    pub fn offered_encodings(self) -> Vec<Encoding> {
        match self {
            EditorKind::VsCode => vec![Encoding::Utf16],
            EditorKind::Neovim => vec![Encoding::Utf8, Encoding::Utf16, Encoding::Utf32],
            EditorKind::Helix => vec![Encoding::Utf8, Encoding::Utf32, Encoding::Utf16],
        }
    }

    fn client_name(self) -> &'static str {
        match self {
            EditorKind::VsCode => "Visual Studio Code",
            EditorKind::Neovim => "Neovim",
            EditorKind::Helix => "helix",
        }
    }

    /// The version a freshly opened buffer reports.
    fn initial_version(self) -> i64 {
        match self {
            EditorKind::VsCode => 1,
            EditorKind::Neovim => 2,
            EditorKind::Helix => 0,
        }
    }
}

/// How to start an editor; [`Editor::start`] fills in the usual values.
pub struct EditorOptions {
    pub kind: EditorKind,
    pub hub_url: String,
    pub session: String,
    pub name: String,
    /// Overrides the kind's `positionEncodings`.
    pub offered_encodings: Option<Vec<Encoding>>,
    /// Pass hub/session/name as `initializationOptions` instead of flags.
    pub config_via_init_options: bool,
    /// Report every change as the whole new text (a `contentChanges`
    /// entry without a range), as some clients do.
    pub full_text_changes: bool,
    /// What real VS Code does beyond DESIGN.md's table: a document has one
    /// end-of-line sequence (CRLF if its first line break is CRLF), and
    /// every line break an edit inserts is converted to it.
    pub normalize_eol: bool,
    /// Seeds Neovim's changedtick jumps.
    pub seed: u64,
    /// The session token, passed like the other settings.
    pub token: Option<String>,
    /// More `chorus lsp` arguments (e.g. `--hub-ca`).
    pub extra_args: Vec<String>,
    /// Wait this long between the `initialize` answer and `initialized`,
    /// as a busy editor may.
    pub initialized_delay: Option<Duration>,
    /// A real workspace folder; by default a path that need not exist
    /// (`/tmp/chorus-e2e/SESSION/NAME`).
    pub workspace: Option<std::path::PathBuf>,
    /// Whether the editor says it renames files for `applyEdit`
    /// (`resourceOperations`), as the three editors do.
    pub resource_operations: bool,
    /// Declare the Chorus extensions (`initializationOptions.extensions`),
    /// as the Neovim and VS Code plugins do: the proxy then sends
    /// `chorus/terminal*` instead of logging the terminal.
    pub extensions: bool,
}

impl EditorOptions {
    /// The usual editor: configured with flags, the kind's encodings.
    pub fn new(kind: EditorKind, hub: &Hub, session: &str, name: &str) -> EditorOptions {
        EditorOptions {
            token: hub.token.clone(),
            ..EditorOptions::at(kind, &hub.url, session, name)
        }
    }

    /// For a hub at `hub_url` that is not a [`Hub`] (a test's fake one).
    pub fn at(kind: EditorKind, hub_url: &str, session: &str, name: &str) -> EditorOptions {
        EditorOptions {
            kind,
            hub_url: hub_url.to_owned(),
            session: session.to_owned(),
            name: name.to_owned(),
            offered_encodings: None,
            config_via_init_options: false,
            full_text_changes: false,
            normalize_eol: false,
            seed: name.bytes().map(u64::from).sum(),
            token: None,
            extra_args: Vec::new(),
            initialized_delay: None,
            workspace: None,
            resource_operations: true,
            extensions: false,
        }
    }
}

/// What the editor did with the `applyEdit` requests it processed.
#[derive(Clone, Debug, Default)]
pub struct EditStats {
    /// Applied to a buffer (one count per document edit).
    pub applied: usize,
    /// Refused with `applied:false` because the version was stale.
    pub rejected: usize,
    /// Skipped because the version was stale, answered `applied:true` (Neovim).
    pub skipped: usize,
    /// Local changes typed by the test.
    pub local_changes: usize,
    /// Refused because the document was not open: the editor closed it
    /// while the edit was on its way (a race LSP allows).
    pub not_open: usize,
}

struct Document {
    text: Vec<char>,
    version: i64,
    /// The line break inserted text is converted to, when normalizing.
    eol: Option<&'static str>,
}

/// Everything the editor's single "main loop" owns.
struct State {
    kind: EditorKind,
    /// The workspace's URI, for the paths of renamed buffers.
    root_uri: String,
    /// The workspace folder when it is a real one: renames move files.
    root_dir: Option<std::path::PathBuf>,
    encoding: Encoding,
    docs: HashMap<String, Document>,
    /// While true, incoming `applyEdit` requests wait in `held`.
    holding: bool,
    held: VecDeque<(Value, Value)>,
    changedtick_rng: StdRng,
    /// Things a correct proxy never makes an editor see.
    violations: Vec<String>,
    stats: EditStats,
    full_text: bool,
    normalize_eol: bool,
    /// The last few things typed and received, for failure reports.
    journal: VecDeque<String>,
}

/// How many recent events each editor keeps for failure reports;
/// `CHORUS_E2E_JOURNAL=N` keeps more when a failure needs the whole story.
fn journal_len() -> usize {
    std::env::var("CHORUS_E2E_JOURNAL")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12)
}

/// Routes the proxy's `workspace/applyEdit` requests into the editor state.
struct Handler {
    state: Arc<Mutex<State>>,
}

impl RequestHandler for Handler {
    fn handle(&self, outbox: &Outbox, id: &Value, method: &str, params: &Value) -> bool {
        match method {
            "workspace/applyEdit" => {
                let mut state = self.state.lock().unwrap();
                if state.holding {
                    state.held.push_back((id.clone(), params.clone()));
                } else {
                    state.process_apply_edit(outbox, id, params);
                }
                true
            }
            "workspace/configuration" => {
                let items = params["items"].as_array().map_or(0, Vec::len);
                outbox.respond(id, Value::Array(vec![Value::Null; items]));
                true
            }
            _ => false,
        }
    }
}

pub struct Editor {
    pub kind: EditorKind,
    pub name: String,
    /// `file:///tmp/chorus-e2e/SESSION/NAME`: each editor has its own
    /// workspace, as on different machines; documents match by relative path.
    pub root_uri: String,
    /// The encoding the proxy chose.
    pub encoding: Encoding,
    client: LspClient,
    state: Arc<Mutex<State>>,
}

/// Distinguishes log files of proxies that share a name (restarts).
static PROXY_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Editor {
    /// Starts `chorus lsp` with flags and completes the LSP handshake.
    pub async fn start(kind: EditorKind, hub: &Hub, session: &str, name: &str) -> Editor {
        Editor::start_with(EditorOptions::new(kind, hub, session, name), &hub.log_dir).await
    }

    pub async fn start_with(options: EditorOptions, log_dir: &Path) -> Editor {
        let kind = options.kind;
        let offered = options
            .offered_encodings
            .clone()
            .unwrap_or_else(|| kind.offered_encodings());
        let root_path = match &options.workspace {
            Some(dir) => dir.display().to_string(),
            None => format!("/tmp/chorus-e2e/{}/{}", options.session, options.name),
        };
        let root_uri = format!("file://{}", percent_encode_path(&root_path));
        let state = Arc::new(Mutex::new(State {
            kind,
            root_uri: root_uri.clone(),
            root_dir: options.workspace.clone(),
            // The LSP default until the server says otherwise.
            encoding: Encoding::Utf16,
            docs: HashMap::new(),
            holding: false,
            held: VecDeque::new(),
            changedtick_rng: StdRng::seed_from_u64(options.seed),
            violations: Vec::new(),
            stats: EditStats::default(),
            full_text: options.full_text_changes,
            normalize_eol: options.normalize_eol,
            journal: VecDeque::new(),
        }));
        let mut args = vec!["lsp".to_owned()];
        if !options.config_via_init_options {
            args.extend([
                "--hub".to_owned(),
                options.hub_url.clone(),
                "--session".to_owned(),
                options.session.clone(),
                "--name".to_owned(),
                options.name.clone(),
            ]);
            if let Some(token) = &options.token {
                args.extend(["--token".to_owned(), token.clone()]);
            }
        }
        args.extend(options.extra_args.iter().cloned());
        let serial = PROXY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let log_path = log_dir.join(format!(
            "proxy-{}-{}-{serial}.log",
            options.session, options.name
        ));
        let client = LspClient::spawn(
            &chorus_bin(),
            &args,
            log_path,
            Arc::new(Handler {
                state: state.clone(),
            }),
        );

        let mut params = json!({
            "processId": std::process::id(),
            "clientInfo": { "name": kind.client_name(), "version": "e2e" },
            "rootPath": root_path,
            "rootUri": root_uri,
            "workspaceFolders": [{ "uri": root_uri, "name": options.name }],
            "capabilities": {
                "general": {
                    "positionEncodings":
                        offered.iter().map(|enc| enc.lsp_name()).collect::<Vec<_>>(),
                },
                "workspace": {
                    "applyEdit": true,
                    "workspaceEdit": {
                        "documentChanges": true,
                        "resourceOperations": if options.resource_operations {
                            json!(["create", "rename", "delete"])
                        } else {
                            json!([])
                        },
                    },
                    "workspaceFolders": true,
                    "fileOperations": { "didCreate": true, "didRename": true, "didDelete": true },
                },
                "textDocument": {
                    "synchronization": { "dynamicRegistration": false, "didSave": true },
                    "publishDiagnostics": { "relatedInformation": true },
                },
                "window": { "workDoneProgress": true, "showMessage": {} },
            },
        });
        if options.config_via_init_options {
            params["initializationOptions"] = json!({
                "hub": options.hub_url, "session": options.session, "name": options.name,
                "token": options.token,
            });
        }
        if options.extensions {
            params["initializationOptions"]["extensions"] = json!(true);
        }
        let result = client
            .request("initialize", params)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "{} ({kind:?}): initialize: {err}\nproxy log:\n{}",
                    options.name,
                    client.log_tail(40)
                )
            });
        let encoding = negotiated_encoding(&result, &offered)
            .unwrap_or_else(|err| panic!("{} ({kind:?}): {err}", options.name));
        check_sync_kind(&result).unwrap_or_else(|err| panic!("{} ({kind:?}): {err}", options.name));
        state.lock().unwrap().encoding = encoding;
        if let Some(delay) = options.initialized_delay {
            tokio::time::sleep(delay).await;
        }
        client.notify("initialized", json!({}));

        Editor {
            kind,
            name: options.name,
            root_uri,
            encoding,
            client,
            state,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn client(&self) -> &LspClient {
        &self.client
    }

    /// The URI of a workspace-relative path, percent-encoded as editors do.
    pub fn uri(&self, path: &str) -> String {
        format!("{}/{}", self.root_uri, percent_encode_path(path))
    }

    /// Opens `path` with `text` as the buffer's content (`didOpen`).
    pub fn open(&self, path: &str, text: &str) {
        let uri = self.uri(path);
        let mut state = self.state();
        let version = state.kind.initial_version();
        let eol = state.normalize_eol.then(|| document_eol(text));
        state.docs.insert(
            uri.clone(),
            Document {
                text: text.chars().collect(),
                version,
                eol,
            },
        );
        // Sent under the lock so no applyEdit can be processed in between.
        self.client.notify(
            "textDocument/didOpen",
            json!({ "textDocument": {
                "uri": uri, "languageId": "plaintext", "version": version, "text": text,
            }}),
        );
    }

    /// Whether the editor has a buffer for `path`.
    pub fn is_open(&self, path: &str) -> bool {
        self.state().docs.contains_key(&self.uri(path))
    }

    /// The user renames the file or folder `old` to `new` (the editor's
    /// explorer): the file moves on disk (in a real workspace folder), its
    /// open buffers are closed and reopened under the new names, and the
    /// rename is reported with `didRenameFiles`, before them when
    /// `report_first`, else after.
    pub fn rename(&self, old: &str, new: &str, report_first: bool) {
        let (old_uri, new_uri) = (self.uri(old), self.uri(new));
        let mut state = self.state();
        let renamed = json!({ "files": [{ "oldUri": old_uri, "newUri": new_uri }] });
        if report_first {
            self.client
                .notify("workspace/didRenameFiles", renamed.clone());
        }
        state.move_on_disk(old, new);
        let outbox = self.client.outbox().clone();
        state.reopen_under(&outbox, &old_uri, &new_uri);
        if !report_first {
            self.client.notify("workspace/didRenameFiles", renamed);
        }
    }

    /// The user deletes the file or folder `path` (the editor's explorer):
    /// gone from disk, reported with `didDeleteFiles`; open buffers stay,
    /// as VS Code keeps an editor of a deleted file.
    pub fn delete_file(&self, path: &str) {
        let uri = self.uri(path);
        let state = self.state();
        if let Some(dir) = &state.root_dir {
            let at = dir.join(path);
            let _ = std::fs::remove_file(&at).or_else(|_| std::fs::remove_dir_all(&at));
        }
        self.client.notify(
            "workspace/didDeleteFiles",
            json!({ "files": [{ "uri": uri }] }),
        );
    }

    /// The user saves `path` (`didSave`).
    pub fn save(&self, path: &str) {
        let uri = self.uri(path);
        let state = self.state();
        if let (Some(dir), Some(doc)) = (&state.root_dir, state.docs.get(&uri)) {
            let at = dir.join(path);
            if let Some(parent) = at.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&at, String::from_iter(&doc.text));
        }
        self.client.notify(
            "textDocument/didSave",
            json!({ "textDocument": { "uri": uri } }),
        );
    }

    /// Closes `path` (`didClose`); the buffer is gone.
    pub fn close(&self, path: &str) {
        let uri = self.uri(path);
        let mut state = self.state();
        state.docs.remove(&uri);
        self.client.notify(
            "textDocument/didClose",
            json!({ "textDocument": { "uri": uri } }),
        );
    }

    pub fn text(&self, path: &str) -> Option<String> {
        let uri = self.uri(path);
        self.state()
            .docs
            .get(&uri)
            .map(|doc| doc.text.iter().collect())
    }

    /// Replaces characters `start..end` with `new_text` and reports it.
    pub fn edit(&self, path: &str, start: usize, end: usize, new_text: &str) {
        let text = new_text.to_owned();
        self.edit_with(path, |_| Some((start, end, text)))
            .expect("the edit was made");
    }

    /// Picks an edit from the current buffer and makes it, atomically with
    /// respect to incoming edits. `choose` returns `(start, end, text)` in
    /// characters, or `None` for no edit. Returns the edit and the removed
    /// characters.
    pub fn edit_with(
        &self,
        path: &str,
        choose: impl FnOnce(&[char]) -> Option<(usize, usize, String)>,
    ) -> Option<(usize, usize, String, Vec<char>)> {
        self.edit_many_with(path, |buffer| choose(buffer).into_iter().collect())
            .pop()
    }

    /// Like [`edit_with`] for several cursors: `choose` returns
    /// non-overlapping `(start, end, text)` edits of the current buffer,
    /// made and reported as one transaction. Returns each edit with the
    /// characters it removed.
    ///
    /// [`edit_with`]: Editor::edit_with
    pub fn edit_many_with(
        &self,
        path: &str,
        choose: impl FnOnce(&[char]) -> Vec<(usize, usize, String)>,
    ) -> Vec<(usize, usize, String, Vec<char>)> {
        let uri = self.uri(path);
        let mut state = self.state();
        let doc = state
            .docs
            .get(&uri)
            .unwrap_or_else(|| panic!("{}: {path} is not open", self.name));
        let edits = choose(&doc.text);
        if edits.is_empty() {
            return Vec::new();
        }
        let made = edits
            .iter()
            .map(|(start, end, text)| (*start, *end, text.clone(), doc.text[*start..*end].to_vec()))
            .collect();
        state.local_edits(self.client.outbox(), &uri, &edits);
        made
    }

    /// Inserts `text` right after the first occurrence of `anchor`.
    pub fn insert_after(&self, path: &str, anchor: &str, text: &str) {
        let at = self.find(path, anchor) + anchor.chars().count();
        self.edit(path, at, at, text);
    }

    /// Inserts `text` right before the first occurrence of `anchor`.
    pub fn insert_before(&self, path: &str, anchor: &str, text: &str) {
        let at = self.find(path, anchor);
        self.edit(path, at, at, text);
    }

    /// Replaces the first occurrence of `old` with `new`.
    pub fn replace(&self, path: &str, old: &str, new: &str) {
        let at = self.find(path, old);
        self.edit(path, at, at + old.chars().count(), new);
    }

    /// Character offset of the first occurrence of `needle` in the buffer.
    pub fn find(&self, path: &str, needle: &str) -> usize {
        let text = self
            .text(path)
            .unwrap_or_else(|| panic!("{}: {path} is not open", self.name));
        find_chars(&text, needle)
            .unwrap_or_else(|| panic!("{}: {needle:?} not found in {text:?}", self.name))
    }

    /// From now on, incoming `applyEdit` requests wait until [`release`].
    ///
    /// [`release`]: Editor::release
    pub fn hold(&self) {
        self.state().holding = true;
    }

    pub fn is_holding(&self) -> bool {
        self.state().holding
    }

    /// Processes every held `applyEdit`, oldest first, and stops holding.
    pub fn release(&self) {
        let mut state = self.state();
        state.holding = false;
        while let Some((id, params)) = state.held.pop_front() {
            state.process_apply_edit(self.client.outbox(), &id, &params);
        }
    }

    pub fn held_count(&self) -> usize {
        self.state().held.len()
    }

    pub fn stats(&self) -> EditStats {
        self.state().stats.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// The proxy's view of `path`: `{text, rev, synchronized}`.
    pub async fn document_state(&self, path: &str) -> Result<Value, String> {
        self.client
            .request("chorus/documentState", json!({ "uri": self.uri(path) }))
            .await
    }

    /// Kills the proxy process, as if it crashed.
    /// `workspace/executeCommand`: `command` with `arguments`; the
    /// result, or the error's description.
    pub async fn execute(&self, command: &str, arguments: Value) -> Result<Value, String> {
        self.client
            .request(
                "workspace/executeCommand",
                json!({ "command": command, "arguments": arguments }),
            )
            .await
    }

    /// Every line of the `window/logMessage`s so far (one message may
    /// hold several).
    pub fn log_lines(&self) -> Vec<String> {
        self.client
            .notifications("window/logMessage")
            .iter()
            .filter_map(|p| p["message"].as_str())
            .flat_map(str::lines)
            .map(str::to_owned)
            .collect()
    }

    /// Waits for a `window/logMessage` holding a line that is exactly
    /// `line`; panics with the log otherwise.
    pub async fn wait_log_line(&self, line: &str, timeout: Duration) {
        let found = self
            .client
            .wait_notification("window/logMessage", timeout, |p| {
                p["message"]
                    .as_str()
                    .is_some_and(|m| m.lines().any(|l| l == line))
            })
            .await;
        assert!(
            found.is_some(),
            "{}: no log line {line:?} within {timeout:?}; the log: {:#?}\nproxy log:\n{}",
            self.name,
            self.log_lines(),
            self.client.log_tail(30)
        );
    }

    /// Waits for a `method` notification (`window/showMessage`,
    /// `window/logMessage`) whose message contains `needle`; panics with
    /// what did arrive and the proxy's log otherwise.
    pub async fn wait_message(&self, method: &str, needle: &str, timeout: Duration) -> Value {
        self.client
            .wait_notification(method, timeout, |p| {
                p["message"].as_str().is_some_and(|m| m.contains(needle))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {method} containing {needle:?} within {timeout:?}; got {:?}\nproxy log:\n{}",
                    self.name,
                    self.client.notifications(method),
                    self.client.log_tail(30)
                )
            })
    }

    pub async fn kill_proxy(&self) {
        self.client.kill().await;
    }

    /// A multi-line description for failure reports.
    pub fn describe(&self, path: &str) -> String {
        let uri = self.uri(path);
        let state = self.state();
        let buffer = match state.docs.get(&uri) {
            Some(doc) => format!(
                "version {} text {:?}",
                doc.version,
                String::from_iter(&doc.text)
            ),
            None => "not open".to_owned(),
        };
        let mut journal: Vec<String> = state.journal.iter().map(|e| format!("    {e}")).collect();
        if let Some(err) = self.client.stream_error() {
            journal.push(format!("    proxy stdout: {err}"));
        }
        format!(
            "{} ({:?}, {}): {buffer}\n  holding {} with {} held; {:?}; violations {:?}\n  recently:\n{}",
            self.name,
            self.kind,
            self.encoding.lsp_name(),
            state.holding,
            state.held.len(),
            state.stats,
            state.violations,
            journal.join("\n"),
        )
    }
}

impl State {
    /// How much the version moves for one change.
    fn version_step(&mut self) -> i64 {
        match self.kind {
            EditorKind::Neovim => self.changedtick_rng.random_range(1..=3),
            EditorKind::VsCode | EditorKind::Helix => 1,
        }
    }

    /// Remembers what happened, for failure reports.
    fn note(&mut self, event: String) {
        if self.journal.len() >= journal_len() {
            self.journal.pop_front();
        }
        self.journal.push_back(event);
    }

    /// Changes typed in the editor (several for multiple cursors), given
    /// as `(start, end, text)` in the current buffer: applied and reported
    /// at once, as one transaction of this kind of editor.
    fn local_edits(&mut self, outbox: &Outbox, uri: &str, edits: &[(usize, usize, String)]) {
        let doc = self.docs.get(uri).expect("document is open");
        let mut replacements: Vec<Replacement> = edits
            .iter()
            .enumerate()
            .map(|(index, (start, end, text))| Replacement {
                start: *start,
                end: *end,
                text: text.chars().collect(),
                index,
            })
            .collect();
        replacements.sort_by_key(|r| (r.start, r.end, r.index));
        for r in &replacements {
            assert!(
                r.start <= r.end && r.end <= doc.text.len(),
                "bad local edit {}..{} in a buffer of {}",
                r.start,
                r.end,
                doc.text.len()
            );
            assert!(
                !splits_crlf(&doc.text, r.start) && !splits_crlf(&doc.text, r.end),
                "a local edit must not split a CRLF pair"
            );
        }
        assert!(
            replacements.windows(2).all(|w| w[0].end <= w[1].start),
            "local edits overlap: {edits:?}"
        );
        self.note(format!("typed {edits:?}"));
        self.transaction(outbox, uri, &replacements);
        self.stats.local_changes += 1;
    }

    /// Handles one `workspace/applyEdit` the way this kind of editor does,
    /// then answers it (after any `didChange` it caused).
    fn process_apply_edit(&mut self, outbox: &Outbox, id: &Value, params: &Value) {
        let result = self.apply_workspace_edit(outbox, params);
        self.note(format!("applyEdit {} → {result}", params["edit"]));
        outbox.respond(id, result);
    }

    fn violation(&mut self, what: String) -> Value {
        self.violations.push(what.clone());
        json!({ "applied": false, "failureReason": what })
    }

    /// Moves the file or folder `old` to `new` in a real workspace folder.
    fn move_on_disk(&self, old: &str, new: &str) {
        if let Some(dir) = &self.root_dir {
            let target = dir.join(new);
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::rename(dir.join(old), target);
        }
    }

    /// Closes the buffers at or under `old_uri` and opens them under
    /// `new_uri`, as an editor does for a renamed file or folder.
    fn reopen_under(&mut self, outbox: &Outbox, old_uri: &str, new_uri: &str) {
        let mut moving: Vec<String> = self
            .docs
            .keys()
            .filter(|uri| {
                uri.strip_prefix(old_uri)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .cloned()
            .collect();
        moving.sort();
        for uri in moving {
            let renamed = format!("{new_uri}{}", &uri[old_uri.len()..]);
            let doc = self.docs.remove(&uri).expect("listed above");
            outbox.notify(
                "textDocument/didClose",
                json!({ "textDocument": { "uri": uri } }),
            );
            let version = self.kind.initial_version();
            let text = String::from_iter(&doc.text);
            outbox.notify(
                "textDocument/didOpen",
                json!({ "textDocument": {
                    "uri": renamed, "languageId": "plaintext", "version": version, "text": text,
                }}),
            );
            self.note(format!("renamed {uri} → {renamed}"));
            self.docs.insert(renamed, Document { version, ..doc });
        }
    }

    /// A `WorkspaceEdit` of resource operations: only `rename` is expected.
    fn apply_resource_operations(&mut self, outbox: &Outbox, changes: &[Value]) -> Value {
        for change in changes {
            if change["kind"] != "rename" {
                return self.violation(format!("unexpected resource operation {change}"));
            }
            let (Some(old_uri), Some(new_uri)) =
                (change["oldUri"].as_str(), change["newUri"].as_str())
            else {
                return self.violation(format!("RenameFile without its URIs: {change}"));
            };
            if !self.docs.contains_key(old_uri) {
                return json!({ "applied": false, "failureReason": "no such buffer" });
            }
            let prefix = format!("{}/", self.root_uri);
            if let (Some(old), Some(new)) =
                (old_uri.strip_prefix(&prefix), new_uri.strip_prefix(&prefix))
            {
                self.move_on_disk(old, new);
            }
            self.reopen_under(outbox, old_uri, new_uri);
            if self.kind != EditorKind::Neovim {
                outbox.notify(
                    "workspace/didRenameFiles",
                    json!({ "files": [{ "oldUri": old_uri, "newUri": new_uri }] }),
                );
            }
        }
        json!({ "applied": true })
    }

    fn apply_workspace_edit(&mut self, outbox: &Outbox, params: &Value) -> Value {
        if let Some(changes) = params["edit"]["documentChanges"].as_array() {
            if changes.iter().any(|change| change.get("kind").is_some()) {
                let changes = changes.clone();
                return self.apply_resource_operations(outbox, &changes);
            }
        }
        let edits = match parse_workspace_edit(&params["edit"]) {
            Ok(edits) => edits,
            Err(err) => return self.violation(err),
        };
        // VS Code and Helix check every document first: all or nothing.
        for (uri, version, _) in &edits {
            let Some(doc) = self.docs.get(uri) else {
                self.stats.not_open += 1;
                return json!({ "applied": false, "failureReason": "document is not open" });
            };
            let stale = version.is_some_and(|v| v != doc.version);
            match self.kind {
                EditorKind::VsCode if stale => {
                    self.stats.rejected += 1;
                    return json!({ "applied": false });
                }
                EditorKind::Helix if stale => {
                    self.stats.rejected += 1;
                    return json!({ "applied": false, "failureReason": "document has changed" });
                }
                _ => {}
            }
        }
        for (uri, version, text_edits) in edits {
            let doc_version = self.docs[&uri].version;
            // Neovim: `if version > 0 and buf_version > version then return`.
            if self.kind == EditorKind::Neovim && version.is_some_and(|v| v > 0 && doc_version > v)
            {
                self.stats.skipped += 1;
                continue;
            }
            let replacements = match self.resolve_text_edits(&uri, &text_edits) {
                Ok(replacements) => replacements,
                Err(err) => return self.violation(err),
            };
            self.transaction(outbox, &uri, &replacements);
            self.stats.applied += 1;
        }
        json!({ "applied": true })
    }

    /// Turns `TextEdit`s into sorted, non-overlapping character ranges of
    /// the current text.
    fn resolve_text_edits(
        &mut self,
        uri: &str,
        text_edits: &[Value],
    ) -> Result<Vec<Replacement>, String> {
        let encoding = self.encoding;
        let doc = self.docs.get(uri).expect("checked by the caller");
        let mut resolved = Vec::new();
        for (index, edit) in text_edits.iter().enumerate() {
            let range = &edit["range"];
            let start = Position::from_json(&range["start"])?;
            let end = Position::from_json(&range["end"])?;
            let new_text = edit["newText"]
                .as_str()
                .ok_or_else(|| format!("TextEdit without newText: {edit}"))?;
            let mut offsets = [0; 2];
            for (slot, pos) in offsets.iter_mut().zip([start, end]) {
                let found = to_offset(&doc.text, pos, encoding);
                if let Resolved::InsideCharacter(_) = found {
                    let text = String::from_iter(&doc.text);
                    self.violations.push(format!(
                        "{pos:?} ({}) falls inside a character of {text:?}",
                        encoding.lsp_name()
                    ));
                }
                *slot = found.offset();
            }
            if offsets[0] > offsets[1] {
                return Err(format!("TextEdit range ends before it starts: {edit}"));
            }
            resolved.push(Replacement {
                start: offsets[0],
                end: offsets[1],
                text: new_text.chars().collect(),
                index,
            });
        }
        // Document order; equal inserts keep their array order (LSP rule).
        resolved.sort_by_key(|r| (r.start, r.end, r.index));
        if let Some(pair) = resolved.windows(2).find(|w| w[0].end > w[1].start) {
            return Err(format!(
                "overlapping TextEdits {}..{} and {}..{} in {text_edits:?}",
                pair[0].start, pair[0].end, pair[1].start, pair[1].end
            ));
        }
        Ok(resolved)
    }

    /// Applies sorted, non-overlapping replacements as one editor
    /// transaction and reports it the way this kind of editor does.
    fn transaction(&mut self, outbox: &Outbox, uri: &str, replacements: &[Replacement]) {
        let (kind, encoding, full_text) = (self.kind, self.encoding, self.full_text);
        let normalized: Vec<Replacement>;
        let replacements = match self.docs[uri].eol {
            Some(eol) => {
                normalized = replacements
                    .iter()
                    .map(|r| Replacement {
                        text: normalize_line_breaks(&r.text, eol),
                        ..*r
                    })
                    .collect();
                &normalized
            }
            None => replacements,
        };
        match kind {
            // One edit operation; contentChanges from the last edit to the
            // first (so each range is still valid when applied in order),
            // each trimmed of what it does not change; one version step.
            EditorKind::VsCode => {
                let doc = self.docs.get_mut(uri).expect("document is open");
                let mut changes = Vec::new();
                for r in replacements.iter().rev() {
                    let (start, end, text) = minify(&doc.text, r.start, r.end, &r.text);
                    if start == end && text.is_empty() {
                        continue;
                    }
                    changes.push(content_change(kind, encoding, &doc.text, start, end, &text));
                    doc.text.splice(start..end, text);
                }
                if !changes.is_empty() {
                    doc.version += 1;
                    send_did_change(outbox, uri, doc, changes, full_text);
                }
            }
            // `apply_text_edits` walks the sorted edits backwards; every
            // `nvim_buf_set_text` fires its own on_lines, so its own
            // didChange with a new changedtick.
            // `vim.lsp.sync` then recovers the range by comparing the old
            // and new lines, which trims what did not change.
            EditorKind::Neovim => {
                for r in replacements.iter().rev() {
                    let step = self.version_step();
                    let doc = self.docs.get_mut(uri).expect("document is open");
                    let (start, end, text) = minify(&doc.text, r.start, r.end, &r.text);
                    if start == end && text.is_empty() {
                        continue;
                    }
                    let change = content_change(kind, encoding, &doc.text, start, end, &text);
                    doc.text.splice(start..end, text);
                    doc.version += step;
                    send_did_change(outbox, uri, doc, vec![change], full_text);
                }
            }
            // One transaction; `changeset_to_changes` reports it in document
            // order, each range in the text as left by the changes before it.
            EditorKind::Helix => {
                let doc = self.docs.get_mut(uri).expect("document is open");
                let mut changes = Vec::new();
                let mut shift: isize = 0;
                for r in replacements {
                    let start = (r.start as isize + shift) as usize;
                    let end = (r.end as isize + shift) as usize;
                    changes.push(content_change(
                        kind, encoding, &doc.text, start, end, &r.text,
                    ));
                    doc.text.splice(start..end, r.text.iter().copied());
                    shift += r.text.len() as isize - (r.end - r.start) as isize;
                }
                doc.version += 1;
                send_did_change(outbox, uri, doc, changes, full_text);
            }
        }
    }
}

/// VS Code's end-of-line for a text it opens: that of its first line break.
fn document_eol(text: &str) -> &'static str {
    match text.find(['\r', '\n']) {
        Some(i) if text[i..].starts_with("\r\n") => "\r\n",
        _ => "\n",
    }
}

/// Every `\r\n`, `\r` and `\n` in `text` as `eol`.
fn normalize_line_breaks(text: &[char], eol: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.iter().copied().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.extend(eol.chars());
            }
            '\n' => out.extend(eol.chars()),
            c => out.push(c),
        }
    }
    out
}

/// One `TextEdit` resolved to character offsets in the pre-edit text.
struct Replacement {
    start: usize,
    end: usize,
    text: Vec<char>,
    /// Position in the request's array, the tie-break for equal inserts.
    index: usize,
}

/// `(uri, version, edits)` for each document a `WorkspaceEdit` touches.
type DocumentEdits = Vec<(String, Option<i64>, Vec<Value>)>;

fn parse_workspace_edit(edit: &Value) -> Result<DocumentEdits, String> {
    let mut out = Vec::new();
    if let Some(changes) = edit.get("documentChanges").and_then(Value::as_array) {
        for change in changes {
            if change.get("kind").is_some() {
                return Err(format!("unexpected resource operation {change}"));
            }
            let uri = change["textDocument"]["uri"]
                .as_str()
                .ok_or_else(|| format!("TextDocumentEdit without a uri: {change}"))?;
            let version = change["textDocument"]["version"].as_i64();
            let edits = change["edits"]
                .as_array()
                .ok_or_else(|| format!("TextDocumentEdit without edits: {change}"))?;
            out.push((uri.to_owned(), version, edits.clone()));
        }
    } else if let Some(changes) = edit.get("changes").and_then(Value::as_object) {
        for (uri, edits) in changes {
            let edits = edits
                .as_array()
                .ok_or_else(|| format!("changes[{uri}] is not an array"))?;
            out.push((uri.clone(), None, edits.clone()));
        }
    } else {
        return Err(format!(
            "WorkspaceEdit with neither documentChanges nor changes: {edit}"
        ));
    }
    Ok(out)
}

/// The trimming VS Code and Neovim apply to what they report: drop the
/// common prefix and suffix of the replaced and the inserted text, never
/// leaving a boundary inside a CRLF pair.
fn minify(text: &[char], start: usize, end: usize, new: &[char]) -> (usize, usize, Vec<char>) {
    let old = &text[start..end];
    let mut prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    while prefix > 0 && splits_crlf(text, start + prefix) {
        prefix -= 1;
    }
    let max_suffix = (old.len() - prefix).min(new.len() - prefix);
    let mut suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    while suffix > 0 && splits_crlf(text, end - suffix) {
        suffix -= 1;
    }
    (
        start + prefix,
        end - suffix,
        new[prefix..new.len() - suffix].to_vec(),
    )
}

/// A `TextDocumentContentChangeEvent` for replacing `start..end` of `text`.
fn content_change(
    kind: EditorKind,
    encoding: Encoding,
    text: &[char],
    start: usize,
    end: usize,
    new: &[char],
) -> Value {
    let mut change = json!({
        "range": range_json(text, start, end, encoding),
        "text": String::from_iter(new),
    });
    // VS Code still sends the deprecated rangeLength.
    if kind == EditorKind::VsCode {
        change["rangeLength"] = json!(encoding.len(&text[start..end]));
    }
    change
}

/// Sends one `didChange`; an editor syncing full text sends the whole
/// buffer instead of the ranges.
fn send_did_change(
    outbox: &Outbox,
    uri: &str,
    doc: &Document,
    changes: Vec<Value>,
    full_text: bool,
) {
    let changes = if full_text {
        vec![json!({ "text": String::from_iter(&doc.text) })]
    } else {
        changes
    };
    outbox.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri, "version": doc.version },
            "contentChanges": changes,
        }),
    );
}

fn negotiated_encoding(result: &Value, offered: &[Encoding]) -> Result<Encoding, String> {
    let expected = if offered.contains(&Encoding::Utf32) {
        Encoding::Utf32
    } else {
        Encoding::Utf16
    };
    let chosen = match result["capabilities"].get("positionEncoding") {
        // LSP: absent means utf-16.
        None | Some(Value::Null) => Encoding::Utf16,
        Some(value) => value
            .as_str()
            .and_then(Encoding::from_lsp_name)
            .ok_or_else(|| format!("unknown positionEncoding {value}"))?,
    };
    if chosen != expected {
        return Err(format!(
            "offered {offered:?}, the proxy chose {chosen:?}, expected {expected:?}"
        ));
    }
    Ok(chosen)
}

fn check_sync_kind(result: &Value) -> Result<(), String> {
    let sync = &result["capabilities"]["textDocumentSync"];
    let (change, open_close) = match sync {
        Value::Number(kind) => (kind.as_u64(), true),
        Value::Object(options) => (
            options.get("change").and_then(Value::as_u64),
            // Without openClose an editor sends no didOpen/didClose at all.
            options.get("openClose").and_then(Value::as_bool) == Some(true),
        ),
        other => return Err(format!("no textDocumentSync capability: {other}")),
    };
    if change != Some(2) || !open_close {
        return Err(format!(
            "textDocumentSync should be incremental with openClose, got {sync}"
        ));
    }
    Ok(())
}

/// Character offset of the first `needle` in `text`.
pub fn find_chars(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|byte| text[..byte].chars().count())
}

/// Percent-encodes a path for a `file://` URI: everything but unreserved
/// characters and `/`, as VS Code does (so spaces and non-ASCII arrive
/// encoded, and the proxy must decode them).
pub fn percent_encode_path(path: &str) -> String {
    let mut out = String::new();
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn state(kind: EditorKind, encoding: Encoding, text: &str) -> State {
        let mut docs = HashMap::new();
        docs.insert(
            "file:///w/a".to_owned(),
            Document {
                text: chars(text),
                version: 7,
                eol: None,
            },
        );
        State {
            kind,
            root_uri: "file:///tmp/chorus-e2e/unit/editor".into(),
            root_dir: None,
            encoding,
            docs,
            holding: false,
            held: VecDeque::new(),
            changedtick_rng: StdRng::seed_from_u64(1),
            violations: Vec::new(),
            stats: EditStats::default(),
            full_text: false,
            normalize_eol: false,
            journal: VecDeque::new(),
        }
    }

    fn edit(pos: [u32; 4], text: &str) -> Value {
        json!({
            "range": {
                "start": { "line": pos[0], "character": pos[1] },
                "end": { "line": pos[2], "character": pos[3] },
            },
            "newText": text,
        })
    }

    /// Several TextEdits in one request, as LSP defines them (ranges in the
    /// original text, equal inserts in array order): every kind ends with
    /// the same buffer, its reported changes replay to that buffer, and the
    /// answer comes after them.
    #[test]
    fn multi_edit_requests_apply_and_replay() {
        let original = "a😀b\r\nc中d\r\ne";
        // Positions in utf-32: replace "😀" (0:1-0:2), insert at 1:0 twice,
        // delete "d\r\n" (1:2-2:0), append at the end (2:1).
        let edits = [
            edit([1, 0, 1, 0], "X"),
            edit([0, 1, 0, 2], "🎉🎉"),
            edit([1, 2, 2, 0], ""),
            edit([1, 0, 1, 0], "Y"),
            edit([2, 1, 2, 1], "!"),
        ];
        let expected = "a🎉🎉b\r\nXYc中e!";
        for kind in [EditorKind::VsCode, EditorKind::Neovim, EditorKind::Helix] {
            let mut st = state(kind, Encoding::Utf32, original);
            let (outbox, mut rx) = Outbox::channel();
            let params = json!({ "edit": { "documentChanges": [{
                "textDocument": { "uri": "file:///w/a", "version": 7 },
                "edits": edits,
            }]}});
            st.process_apply_edit(&outbox, &json!(1), &params);
            assert!(st.violations.is_empty(), "{kind:?}: {:?}", st.violations);
            let buffer = String::from_iter(&st.docs["file:///w/a"].text);
            assert_eq!(buffer, expected, "{kind:?}");

            let mut replay = chars(original);
            let mut notifications = 0;
            let mut last_version = 7;
            while let Ok(message) = rx.try_recv() {
                if message.get("id").is_some() {
                    assert_eq!(message["result"]["applied"], true);
                    assert!(rx.try_recv().is_err(), "{kind:?}: nothing after the answer");
                    break;
                }
                notifications += 1;
                let version = message["params"]["textDocument"]["version"]
                    .as_i64()
                    .unwrap();
                assert!(version > last_version, "{kind:?}: versions increase");
                last_version = version;
                for change in message["params"]["contentChanges"].as_array().unwrap() {
                    let start = Position::from_json(&change["range"]["start"]).unwrap();
                    let end = Position::from_json(&change["range"]["end"]).unwrap();
                    let start = to_offset(&replay, start, Encoding::Utf32).offset();
                    let end = to_offset(&replay, end, Encoding::Utf32).offset();
                    replay.splice(start..end, change["text"].as_str().unwrap().chars());
                }
            }
            assert_eq!(String::from_iter(replay), expected, "{kind:?} replay");
            let expected_notifications = if kind == EditorKind::Neovim { 5 } else { 1 };
            assert_eq!(notifications, expected_notifications, "{kind:?}");
        }
    }

    #[test]
    fn stale_requests_per_kind() {
        let params = json!({ "edit": { "documentChanges": [{
            "textDocument": { "uri": "file:///w/a", "version": 6 },
            "edits": [edit([0, 0, 0, 0], "x")],
        }]}});
        for (kind, answer) in [
            (EditorKind::VsCode, json!({ "applied": false })),
            (
                EditorKind::Helix,
                json!({ "applied": false, "failureReason": "document has changed" }),
            ),
            (EditorKind::Neovim, json!({ "applied": true })),
        ] {
            let mut st = state(kind, Encoding::Utf16, "abc");
            let (outbox, mut rx) = Outbox::channel();
            st.process_apply_edit(&outbox, &json!(9), &params);
            assert_eq!(rx.try_recv().unwrap()["result"], answer, "{kind:?}");
            assert_eq!(String::from_iter(&st.docs["file:///w/a"].text), "abc");
        }
    }

    #[test]
    fn minify_trims_and_respects_crlf() {
        let text = chars("abc\r\ndef");
        // Replacing "c\r\nd" with "c\r\nX": only "d" → "X" is reported.
        let (start, end, new) = minify(&text, 2, 6, &chars("c\r\nX"));
        assert_eq!((start, end, String::from_iter(new)), (5, 6, "X".into()));
        // Replacing "\r\n" with "\rZ\n": the prefix "\r" is not trimmed alone.
        let (start, end, new) = minify(&text, 3, 5, &chars("\rZ\n"));
        assert_eq!((start, end, String::from_iter(new)), (3, 5, "\rZ\n".into()));
        // Identical text minifies to nothing.
        let (start, end, new) = minify(&text, 0, 3, &chars("abc"));
        assert_eq!((start, end, new.len()), (3, 3, 0));
    }

    #[test]
    fn uris_are_encoded() {
        assert_eq!(percent_encode_path("a b/ü.txt"), "a%20b/%C3%BC.txt");
    }
}
