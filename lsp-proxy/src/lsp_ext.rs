//! The Chorus extensions to LSP: every `chorus/*` message, command and
//! setting that `chorus lsp` and the editor plugins exchange, as types.
//! Written for plugin authors; modelled on rust-analyzer's `lsp_ext.rs`.
//!
//! An editor with no plugin (Helix, any plain LSP client) needs none of
//! this: the proxy then speaks standard LSP alone (cursors as Hint
//! diagnostics, runs as `window/logMessage`, `$/progress` and
//! `window/showMessage`, a run's errors as diagnostics from source
//! `chorus run`, which every editor gets, plugin or not). A plugin opts in with `extensions: true` in
//! [`Settings`] and then:
//!
//! * receives, from the proxy:
//!   * [`Connection`] (`chorus/connection`) whenever the link to the hub
//!     changes: `online` after each welcome (with `role` and `clientId`),
//!     `offline` when the link drops (the proxy retries), `refused` when the
//!     hub turned it away for good (bad token, old protocol);
//!   * [`Presence`] (`chorus/presence`): `joined` for everyone already in the
//!     session at each welcome (again after every reconnect) and for each
//!     later arrival, `left` when someone leaves;
//!   * [`RemoteCursor`] (`chorus/cursor`): a collaborator's selections in a
//!     document this editor has open, in the negotiated position encoding;
//!   * [`RunStarted`], [`RunOutput`], [`RunFinished`]
//!     (`chorus/runStarted`, `chorus/runOutput`, `chorus/runFinished`): the
//!     session's shared run, whoever started it. Output comes in chunks that
//!     may split lines; `seq` orders them per run;
//!   * [`RunInput`] (`chorus/runInput`): someone's input to the run
//!     ([`INPUT`]), this user's too, with who sent it;
//!   * [`TerminalStarted`], [`TerminalOutput`], [`TerminalResized`],
//!     [`TerminalEnded`] (`chorus/terminalStarted`, `chorus/terminalOutput`,
//!     `chorus/terminalResized`, `chorus/terminalEnded`): the session's
//!     shared terminal, for the plugin to draw as a real terminal. Without
//!     the extensions the proxy logs its output instead (`window/logMessage`
//!     lines `[terminal · NAME] …`, escape sequences taken out) and says
//!     when it opens and ends (`window/showMessage`);
//! * sends to the proxy:
//!   * [`LocalCursor`] (`chorus/cursor`): the user's selections, whenever
//!     they move (throttling is the plugin's business); without a plugin the
//!     proxy infers the cursor from the user's edits;
//!   * the commands [`RUN`], [`STOP`], [`INPUT`], [`FOLLOW`], [`SHARE`],
//!     [`RESYNC`], [`FILES`], and [`TERMINAL`], [`TERMINAL_INPUT`],
//!     [`TERMINAL_RESIZE`], [`TERMINAL_STOP`] for the shared terminal,
//!     through `workspace/executeCommand` (any LSP client can send those;
//!     [`INPUT`] types a line into the terminal when no run is going);
//!   * [`DocumentState`] (`chorus/documentState`), a request for tests and
//!     health checks.
//!
//! Optional fields: a field of type `Option` may be missing (or `null`, which
//! readers must treat the same). Which ones are optional, and one example of
//! every message with all of them present, is in
//! `editor-plugins/fixtures/lsp_ext.json`, generated from these types by this
//! module's test; the VS Code and Neovim plugins' tests check themselves
//! against that file.
//!
//! Invariant: the wire shape of these messages only changes here, together
//! with the fixture; renaming a Rust field must keep its JSON name.

use chorus_protocol::wire::{NotSynced, OutputStream, Participant, Role, RunMode, RunResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::request::Request;
use tower_lsp_server::ls_types::{Position, Uri};

#[cfg(test)]
mod fixture;

/// `initializationOptions`, and the `chorus lsp` flags they override: where
/// to collaborate. Every field is optional; a missing one keeps the flag's
/// (or environment's) value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The hub's `ws://` or `wss://` URL; `ws://127.0.0.1:7420/` if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// The session to join; without one nothing is shared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The name collaborators see; the user's login name if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The session's join or read-only token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A CA certificate (PEM file) to trust for `wss://` besides the
    /// system's. `hub_ca` is accepted too: plugins once sent that.
    #[serde(alias = "hub_ca", skip_serializing_if = "Option::is_none")]
    pub hub_ca: Option<String>,
    /// Set by editor plugins that handle `chorus/*` notifications and send
    /// `chorus/cursor`; without it the proxy shows collaborators through
    /// standard LSP alone (cursor diagnostics) and infers the user's cursor
    /// from their edits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<bool>,
    /// Write the session's files into the workspace folder and keep them
    /// in step while the session lasts, including files nobody has open
    /// (`chorus lsp --sync-files`). A file the editor has open is the
    /// editor's; a different local copy of one it has not is backed up to
    /// `.chorus/backup/` before the session's text replaces it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_files: Option<bool>,
}

impl Settings {
    /// `self` (the flags) with every field `other` (the editor's options)
    /// sets taken from `other`.
    pub fn overridden_by(self, other: Settings) -> Settings {
        Settings {
            hub: other.hub.or(self.hub),
            session: other.session.or(self.session),
            name: other.name.or(self.name),
            token: other.token.or(self.token),
            hub_ca: other.hub_ca.or(self.hub_ca),
            extensions: other.extensions.or(self.extensions),
            sync_files: other.sync_files.or(self.sync_files),
        }
    }
}

/// `chorus/connection`, proxy → editor: the proxy's link to the hub changed.
pub enum Connection {}

impl Notification for Connection {
    type Params = ConnectionParams;
    const METHOD: &'static str = "chorus/connection";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionParams {
    pub state: ConnectionState,
    pub session: String,
    /// With `online`: what this proxy's token allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// With `online`: this proxy's id at the hub, as in [`Participant`]s and
    /// [`RemoteCursorParams`]; it changes at each reconnect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<u64>,
    /// With `offline` and `refused`: why, in words for the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionState {
    /// Joined (again): edits are shared.
    Online,
    /// Lost; the proxy is retrying and keeps the user's edits meanwhile.
    Offline,
    /// The hub refused to let this proxy in; it does not retry.
    Refused,
}

/// `chorus/presence`, proxy → editor: someone joined or left the session.
pub enum Presence {}

impl Notification for Presence {
    type Params = PresenceParams;
    const METHOD: &'static str = "chorus/presence";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PresenceParams {
    /// Also sent, at each welcome, for everyone already there: a plugin
    /// needs no other way to learn who is present.
    Joined {
        participant: Participant,
    },
    Left {
        client_id: u64,
        name: String,
    },
}

/// One selection: `head` is where the cursor is, `anchor` where the
/// selection started (equal for a bare cursor).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionParam {
    pub anchor: Position,
    pub head: Position,
}

/// `chorus/cursor`, proxy → editor: a collaborator's selections in one
/// document, sent only to editors that set [`Settings::extensions`].
pub enum RemoteCursor {}

impl Notification for RemoteCursor {
    type Params = RemoteCursorParams;
    const METHOD: &'static str = "chorus/cursor";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCursorParams {
    pub client_id: u64,
    pub name: String,
    pub uri: Uri,
    /// Positioned on the proxy's copy of the text, which may be a keystroke
    /// ahead of or behind the editor's: clamp before drawing.
    pub selections: Vec<SelectionParam>,
}

/// `chorus/cursor`, editor → proxy: the user's selections in a shared
/// document (at most 64 are relayed).
pub enum LocalCursor {}

impl Notification for LocalCursor {
    type Params = LocalCursorParams;
    const METHOD: &'static str = "chorus/cursor";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalCursorParams {
    pub uri: Uri,
    pub selections: Vec<SelectionParam>,
}

/// `chorus/runStarted`, proxy → editor: a run began in the session.
pub enum RunStarted {}

impl Notification for RunStarted {
    type Params = RunStartedParams;
    const METHOD: &'static str = "chorus/runStarted";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStartedParams {
    pub run_id: u64,
    /// Who started it.
    pub name: String,
    /// The document run, as a path relative to the workspace root.
    pub doc: String,
    /// What runs, in one line for the run's header: `cargo test --offline
    /// (Cargo.toml in demo/)`; missing from hubs older than run plans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// `chorus/runOutput`, proxy → editor: a chunk of a run's output.
pub enum RunOutput {}

impl Notification for RunOutput {
    type Params = RunOutputParams;
    const METHOD: &'static str = "chorus/runOutput";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutputParams {
    pub run_id: u64,
    pub seq: u64,
    pub stream: OutputStream,
    /// Not necessarily whole lines, nor whole at a stream switch.
    pub data: String,
}

/// `chorus/runFinished`, proxy → editor: how a run ended.
pub enum RunFinished {}

impl Notification for RunFinished {
    type Params = RunFinishedParams;
    const METHOD: &'static str = "chorus/runFinished";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFinishedParams {
    pub run_id: u64,
    /// `exitCode` is `null` when the program did not exit by itself;
    /// `diagnostics` (missing when there are none) are also published as
    /// the editor's diagnostics, source `chorus run`, until the next run.
    pub result: RunResult,
    /// The proxy's one line for the user ("exited with code 1 in 0.12 s;
    /// error at src/main.rs:3:5").
    pub summary: String,
}

/// `chorus/runInput`, proxy → editor: someone sent input to the run
/// (`chorus.input`), as the program got it: `text`, then end-of-file, then
/// an interrupt. This editor's own input comes back this way too.
pub enum RunInput {}

impl Notification for RunInput {
    type Params = RunInputParams;
    const METHOD: &'static str = "chorus/runInput";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInputParams {
    pub run_id: u64,
    /// Who sent it.
    pub client_id: u64,
    pub name: String,
    /// What reached the program's stdin, exactly (a line ends with its
    /// `\n`); missing for an end-of-file or interrupt alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The program's stdin was closed.
    #[serde(default)]
    pub eof: bool,
    /// The program was sent SIGINT.
    #[serde(default)]
    pub interrupt: bool,
}

/// `chorus/terminalStarted`, proxy → editor: the session's shared terminal
/// is open. Sent when it opens, again when this proxy (re)joins while it is
/// open, and in answer to [`TERMINAL`]: the same `terminalId` may come more
/// than once.
pub enum TerminalStarted {}

impl Notification for TerminalStarted {
    type Params = TerminalStartedParams;
    const METHOD: &'static str = "chorus/terminalStarted";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalStartedParams {
    pub terminal_id: u64,
    /// Who opened it.
    pub client_id: u64,
    pub name: String,
    /// Its size now, in character cells.
    pub cols: u16,
    pub rows: u16,
}

/// `chorus/terminalOutput`, proxy → editor: what the shared terminal wrote.
pub enum TerminalOutput {}

impl Notification for TerminalOutput {
    type Params = TerminalOutputParams;
    const METHOD: &'static str = "chorus/terminalOutput";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalOutputParams {
    pub terminal_id: u64,
    /// From 0 within a terminal, one per chunk.
    pub seq: u64,
    /// As the terminal wrote it, escape sequences included; chunks split
    /// lines and escape sequences anywhere.
    pub data: String,
    /// The recent output, sent to this editor alone when it joins the
    /// session, or sends [`TERMINAL`], while the terminal is open: it
    /// repeats output others already had, and its `seq` is the next live
    /// chunk's. A view shows the replay, then live output whose `seq` is at
    /// least the replay's (older live output is inside the replay). A
    /// terminal that [`TERMINAL`] opens has no replay: its output is all
    /// live, from `seq` 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

/// `chorus/terminalResized`, proxy → editor: the shared terminal took the
/// size of `clientId`'s view, because they typed last.
pub enum TerminalResized {}

impl Notification for TerminalResized {
    type Params = TerminalResizedParams;
    const METHOD: &'static str = "chorus/terminalResized";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalResizedParams {
    pub terminal_id: u64,
    pub client_id: u64,
    pub cols: u16,
    pub rows: u16,
}

/// `chorus/terminalEnded`, proxy → editor: the shared terminal is over.
pub enum TerminalEnded {}

impl Notification for TerminalEnded {
    type Params = TerminalEndedParams;
    const METHOD: &'static str = "chorus/terminalEnded";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalEndedParams {
    pub terminal_id: u64,
    /// For people: "the shell exited with code 0", "stopped by Ada".
    pub reason: String,
}

/// `chorus/documentState`, editor → proxy request: the proxy's view of one
/// document; `null` for a document that is not shared.
pub enum DocumentState {}

impl Request for DocumentState {
    type Params = DocumentStateParams;
    type Result = Option<DocumentStateResult>;
    const METHOD: &'static str = "chorus/documentState";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentStateParams {
    pub uri: Uri,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentStateResult {
    /// The proxy's copy of the text.
    pub text: String,
    /// The hub revision it is based on; 0 until joined.
    pub rev: u64,
    /// Joined, with no edit of ours unacknowledged nor any edit of the hub's
    /// unapplied by the editor.
    pub synchronized: bool,
    /// Whether the hub has answered the open.
    pub joined: bool,
    /// The editor's version `text` is at: a plugin compares its buffer
    /// with `text` only at this version, and asks for [`RESYNC`] if they
    /// differ.
    pub version: i32,
}

/// `workspace/executeCommand` `chorus.run [uri] [options]`: asks the hub to
/// run the session's code from `uri` (default: the document last opened or
/// edited), as [`RunOptions`] say (`mode`: run, test or release; `command`:
/// a shell command line instead of what the project's files suggest).
/// Answers [`Requested`] with the document's path; output and the result
/// arrive as the `chorus/run*` notifications, at every participant.
pub const RUN: &str = "chorus.run";
/// `chorus.stop`, no arguments: stops the session's run. Answers
/// [`Requested`] with `"stop"`.
pub const STOP: &str = "chorus.stop";
/// `chorus.input [text]` or `chorus.input [{text, eof, interrupt}]`: input
/// for the session's current run (see [`InputArguments`]); everyone sees
/// it as [`RunInput`] and in the run's log (`> text  (from NAME)`).
/// Answers [`Requested`] with `"input"`; with no run going, or from a
/// read-only participant, the hub's refusal arrives as a message.
/// When this proxy knows of no run going but the shared terminal is open,
/// the input goes to the terminal instead, as keystrokes: the text (its
/// final line break dropped, the others as `\r`) then Enter (`\r`),
/// Ctrl-D for `eof`, Ctrl-C for `interrupt`. That is how an editor
/// without a terminal view (Helix) types into it.
pub const INPUT: &str = "chorus.input";
/// `chorus.follow [name]`: the proxy moves this editor to `name`'s cursor
/// (`window/showDocument`) as it moves; no name stops following. Answers
/// [`Following`].
pub const FOLLOW: &str = "chorus.follow";
/// `chorus.share`, no arguments: publishes the workspace folder to the
/// session in the background, as `chorus share` does (what `.gitignore`,
/// `.ignore` and `.chorusignore` leave out stays out; `.git/` always),
/// with `$/progress` while it goes and a `window/showMessage` summing up.
/// Answers [`Requested`] with `"share"`.
pub const SHARE: &str = "chorus.share";
/// `chorus.resync [uri]`: replaces the editor's text of `uri` (default: the
/// document last opened or edited) whole with the session's. What a plugin
/// asks for when its buffer differs from the proxy's copy at the same
/// version (see [`DocumentStateResult`]), and what a user runs when a
/// buffer looks wrong; typing not yet sent is overwritten. Answers
/// [`Requested`] with the document's path.
pub const RESYNC: &str = "chorus.resync";
/// `chorus.files`, no arguments: the session's files, as the hub lists
/// them when asked (so what others added, renamed or deleted since is
/// there), text files and files listed without their content alike.
/// Answers [`Files`]. A plugin offers them to open: a text file is opened
/// by its URI like any other document, whether or not it is on disk yet
/// (the proxy then fills the buffer with the session's text).
pub const FILES: &str = "chorus.files";
/// `chorus.terminal []` or `chorus.terminal [{cols, rows}]`: opens the
/// session's shared terminal, or joins the one open, with a view of that
/// size (see [`TerminalArguments`]). Answers `null`; [`TerminalStarted`]
/// follows, then the output: a replay ([`TerminalOutputParams::replay`])
/// when joining the one open.
pub const TERMINAL: &str = "chorus.terminal";
/// `chorus.terminal.input [{data}]` or `chorus.terminal.input [data]`:
/// keystrokes for the shared terminal, as a terminal sends them (`"ls\r"`,
/// `"\u0003"` for Ctrl-C); see [`TerminalInputArguments`]. Answers `null`.
pub const TERMINAL_INPUT: &str = "chorus.terminal.input";
/// `chorus.terminal.resize [{cols, rows}]`: this editor's view of the
/// terminal has that size now; the terminal takes it when this user types
/// (it follows the most recent typist). Answers `null`.
pub const TERMINAL_RESIZE: &str = "chorus.terminal.resize";
/// `chorus.terminal.stop`, no arguments: ends the shared terminal for
/// everyone. Answers `null`.
pub const TERMINAL_STOP: &str = "chorus.terminal.stop";
/// What the proxy declares in `executeCommandProvider`.
pub const COMMANDS: [&str; 11] = [
    RUN,
    STOP,
    INPUT,
    FOLLOW,
    SHARE,
    RESYNC,
    FILES,
    TERMINAL,
    TERMINAL_INPUT,
    TERMINAL_RESIZE,
    TERMINAL_STOP,
];

/// The arguments of [`INPUT`]: `[text]`, or `[{text, eof, interrupt}]`
/// (every field optional, at least one needed). `[text]` is a line: the
/// proxy ends it with `\n` unless it ends so already (what a user typing
/// `:lsp-workspace-command chorus.input Ada` in Helix means). In the
/// object, `text` goes to the program's stdin exactly as it is (a line the
/// program reads with `input()` ends with `\n`, which the plugins add);
/// `eof` then closes the program's stdin; `interrupt` then sends it SIGINT.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputArguments {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eof: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupt: bool,
}

impl InputArguments {
    /// Errors are for the user and name the command.
    pub fn from_arguments(arguments: &[Value]) -> Result<InputArguments, String> {
        const USAGE: &str =
            "chorus.input takes the text to send, or {\"text\", \"eof\": true, \"interrupt\": true}";
        let input = match arguments.first() {
            Some(Value::String(text)) => InputArguments {
                text: Some(if text.ends_with('\n') {
                    text.clone()
                } else {
                    format!("{text}\n")
                }),
                ..InputArguments::default()
            },
            Some(options @ Value::Object(_)) => {
                serde_json::from_value(options.clone()).map_err(|_| USAGE.to_owned())?
            }
            _ => return Err(USAGE.to_owned()),
        };
        if input.text.as_deref().unwrap_or_default().is_empty() && !input.eof && !input.interrupt {
            return Err(format!("{USAGE}; there was nothing to send"));
        }
        Ok(input)
    }

    pub fn into_arguments(self) -> Vec<Value> {
        // Cannot fail: a string and two booleans.
        vec![serde_json::to_value(self).unwrap_or_default()]
    }
}

/// The arguments of [`TERMINAL`]: `[]`, or `[{cols, rows}]` (either may be
/// missing), the size of the view the user opens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminalArguments {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
}

impl TerminalArguments {
    pub fn from_arguments(arguments: &[Value]) -> Result<TerminalArguments, String> {
        const USAGE: &str = "chorus.terminal takes no arguments, or {\"cols\": N, \"rows\": N}";
        match arguments.first() {
            None => Ok(TerminalArguments::default()),
            Some(size @ Value::Object(_)) => {
                serde_json::from_value(size.clone()).map_err(|_| USAGE.to_owned())
            }
            Some(_) => Err(USAGE.to_owned()),
        }
    }

    pub fn into_arguments(self) -> Vec<Value> {
        // Cannot fail: two numbers.
        vec![serde_json::to_value(self).unwrap_or_default()]
    }
}

/// The arguments of [`TERMINAL_INPUT`]: `[{data}]` or `[data]`, sent as
/// it is (no line break is added: `"\r"` is Enter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminalInputArguments {
    pub data: String,
}

impl TerminalInputArguments {
    pub fn from_arguments(arguments: &[Value]) -> Result<TerminalInputArguments, String> {
        const USAGE: &str =
            "chorus.terminal.input takes the keystrokes to send, or {\"data\": keystrokes}";
        let input = match arguments.first() {
            Some(Value::String(data)) => TerminalInputArguments { data: data.clone() },
            Some(input @ Value::Object(_)) => {
                serde_json::from_value(input.clone()).map_err(|_| USAGE.to_owned())?
            }
            _ => return Err(USAGE.to_owned()),
        };
        if input.data.is_empty() {
            return Err(format!("{USAGE}; there was nothing to send"));
        }
        Ok(input)
    }

    pub fn into_arguments(self) -> Vec<Value> {
        // Cannot fail: a string.
        vec![serde_json::to_value(self).unwrap_or_default()]
    }
}

/// The arguments of [`TERMINAL_RESIZE`]: `[{cols, rows}]`, both at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminalResizeArguments {
    pub cols: u16,
    pub rows: u16,
}

impl TerminalResizeArguments {
    pub fn from_arguments(arguments: &[Value]) -> Result<TerminalResizeArguments, String> {
        const USAGE: &str =
            "chorus.terminal.resize takes {\"cols\": N, \"rows\": N}, both at least 1";
        let size: TerminalResizeArguments = arguments
            .first()
            .and_then(|size| serde_json::from_value(size.clone()).ok())
            .ok_or(USAGE)?;
        if size.cols == 0 || size.rows == 0 {
            return Err(USAGE.to_owned());
        }
        Ok(size)
    }

    pub fn into_arguments(self) -> Vec<Value> {
        // Cannot fail: two numbers.
        vec![serde_json::to_value(self).unwrap_or_default()]
    }
}

/// The arguments of [`RESYNC`]: `[]` or `[uri]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResyncArguments {
    pub uri: Option<Uri>,
}

impl ResyncArguments {
    pub fn from_arguments(arguments: &[Value]) -> Result<ResyncArguments, String> {
        let uri = match arguments.first() {
            None => None,
            Some(value) => {
                let text = value
                    .as_str()
                    .ok_or("chorus.resync takes a document URI string")?;
                Some(
                    text.parse::<Uri>()
                        .map_err(|_| format!("chorus.resync: {text:?} is not a URI"))?,
                )
            }
        };
        Ok(ResyncArguments { uri })
    }

    pub fn into_arguments(self) -> Vec<Value> {
        self.uri
            .map(|uri| Value::String(uri.as_str().to_owned()))
            .into_iter()
            .collect()
    }
}

/// The arguments of [`RUN`]: `[]`, `[uri]`, `[uri, options]`, or
/// `[options]` for the document last opened or edited (what an editor that
/// cannot name the URI sends: Helix's `:lsp-workspace-command chorus.run
/// {"mode":"test"}`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunArguments {
    pub uri: Option<Uri>,
    pub options: Option<RunOptions>,
}

impl RunArguments {
    /// Errors are for the user and name the command.
    pub fn from_arguments(arguments: &[Value]) -> Result<RunArguments, String> {
        let (uri, options) = match arguments {
            [] => (None, None),
            [options @ Value::Object(_)] => (None, Some(options)),
            [first, rest @ ..] => {
                let text = first
                    .as_str()
                    .ok_or("chorus.run takes a document URI string, then options")?;
                let uri = text
                    .parse::<Uri>()
                    .map_err(|err| format!("chorus.run: bad URI {text:?}: {err}"))?;
                (Some(uri), rest.first())
            }
        };
        let options = options.map(RunOptions::from_argument).transpose()?;
        Ok(RunArguments { uri, options })
    }

    pub fn into_arguments(self) -> Vec<Value> {
        let mut arguments: Vec<Value> = self
            .uri
            .map(|uri| Value::String(uri.as_str().to_owned()))
            .into_iter()
            .collect();
        if let Some(options) = self.options {
            // Cannot fail: strings and a list of strings.
            arguments.push(serde_json::to_value(options).unwrap_or_default());
        }
        arguments
    }
}

/// The second argument of [`RUN`]; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// The program's standard input, sent first; `chorus.input` may add more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Close the program's stdin after `stdin` (`true`) or keep it open
    /// for `chorus.input` (`false`). Missing: closed when `stdin` is given,
    /// open otherwise.
    #[serde(rename = "stdinEof", skip_serializing_if = "Option::is_none")]
    pub stdin_eof: Option<bool>,
    /// Its command-line arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// The language to run it as, by name; by default the document's
    /// extension decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// `"run"` (the default), `"test"` (`cargo test`, `pytest`, `npm
    /// test`) or `"release"` (an optimised build, where the toolchain has
    /// one); anything else is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<RunMode>,
    /// A shell command line run in the project's folder instead of the
    /// one the project's files suggest (`make check`, `python3 -m unittest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl RunOptions {
    /// Lenient, as the proxy always was: a text field of the wrong type
    /// is ignored, except those that would otherwise run something the
    /// user did not mean: `args`, `mode` and `command` are checked.
    pub fn from_argument(value: &Value) -> Result<RunOptions, String> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let args = match value.get("args") {
            None | Some(Value::Null) => None,
            Some(list) => Some(
                serde_json::from_value::<Vec<String>>(list.clone())
                    .map_err(|_| "chorus.run: \"args\" must be a list of strings".to_owned())?,
            ),
        };
        let mode = match value.get("mode") {
            None | Some(Value::Null) => None,
            Some(mode) => Some(
                serde_json::from_value::<RunMode>(mode.clone()).map_err(|_| {
                    format!(
                        "chorus.run: \"mode\" must be \"run\", \"test\" or \"release\", not {mode}"
                    )
                })?,
            ),
        };
        let command = match value.get("command") {
            None | Some(Value::Null) => None,
            Some(Value::String(line)) if !line.trim().is_empty() => Some(line.clone()),
            Some(_) => {
                return Err(
                    "chorus.run: \"command\" must be a shell command line (a non-empty string)"
                        .to_owned(),
                )
            }
        };
        Ok(RunOptions {
            stdin: text("stdin"),
            stdin_eof: value.get("stdinEof").and_then(Value::as_bool),
            args,
            language: text("language"),
            mode,
            command,
        })
    }
}

/// The answer to [`RUN`], [`STOP`] and [`INPUT`]: the request went out to
/// the hub, nothing more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requested {
    /// The document's path for `chorus.run`, `"stop"` for `chorus.stop`,
    /// `"input"` for `chorus.input`, `"share"` for `chorus.share`.
    pub requested: String,
}

/// The arguments of [`FOLLOW`]: `[name]`, or none to stop following.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowArguments {
    pub name: Option<String>,
}

impl FollowArguments {
    pub fn from_arguments(arguments: &[Value]) -> Result<FollowArguments, String> {
        let name = match arguments.first() {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .ok_or("chorus.follow takes a participant's name")?
                    .to_owned(),
            ),
        };
        Ok(FollowArguments { name })
    }

    pub fn into_arguments(self) -> Vec<Value> {
        self.name.map(Value::String).into_iter().collect()
    }
}

/// The answer to [`FOLLOW`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Following {
    /// Whom this editor now follows; `null` (present, not missing) for
    /// nobody.
    pub following: Option<String>,
}

/// The answer to [`FILES`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Files {
    /// Sorted by path.
    pub files: Vec<SessionFile>,
}

/// One file of the session's tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionFile {
    /// Relative to the workspace root, `/`-separated: the document's name
    /// in the session.
    pub path: String,
    /// Where the file is, or would be, in this editor's workspace folder;
    /// missing when the proxy has no folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<Uri>,
    /// In bytes (a text file's as UTF-8, as the session has it now).
    pub size: u64,
    /// Missing for a text file, which opens like any document; otherwise
    /// why the session lists the file without its content (it cannot be
    /// opened through Chorus).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_synced: Option<NotSynced>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn settings_take_hub_ca_in_either_spelling() {
        for key in ["hubCa", "hub_ca"] {
            let settings: Settings = serde_json::from_value(json!({ key: "/ca.pem" })).unwrap();
            assert_eq!(settings.hub_ca.as_deref(), Some("/ca.pem"), "{key}");
        }
    }

    #[test]
    fn command_arguments_are_checked_as_before() {
        assert_eq!(
            RunArguments::from_arguments(&[]),
            Ok(RunArguments {
                uri: None,
                options: None
            })
        );
        assert_eq!(
            RunArguments::from_arguments(&[json!(3)]),
            Err("chorus.run takes a document URI string, then options".to_owned())
        );
        let options_alone = RunArguments::from_arguments(&[json!({"mode": "release"})]).unwrap();
        assert_eq!(options_alone.uri, None);
        assert_eq!(
            options_alone.options.and_then(|o| o.mode),
            Some(RunMode::Release)
        );
        assert_eq!(
            RunArguments::from_arguments(&[json!("file:///a.py"), json!({"args": "x"})]),
            Err("chorus.run: \"args\" must be a list of strings".to_owned())
        );
        // Wrongly typed text fields were always ignored, not refused.
        let lenient =
            RunArguments::from_arguments(&[json!("file:///a.py"), json!({"stdin": 1})]).unwrap();
        assert_eq!(lenient.options, Some(RunOptions::default()));
        assert_eq!(
            RunArguments::from_arguments(&[json!("file:///a.py"), json!({"mode": "bench"})]),
            Err(
                "chorus.run: \"mode\" must be \"run\", \"test\" or \"release\", not \"bench\""
                    .to_owned()
            )
        );
        for command in [json!(3), json!(""), json!(["make"])] {
            let refused = RunArguments::from_arguments(&[
                json!("file:///a.py"),
                json!({ "command": command }),
            ]);
            assert!(
                refused.as_ref().is_err_and(|e| e.contains("\"command\"")),
                "{command}: {refused:?}"
            );
        }
        let test = RunArguments::from_arguments(&[
            json!("file:///a.py"),
            json!({"mode": "test", "command": "make check"}),
        ])
        .unwrap()
        .options
        .unwrap();
        assert_eq!(test.mode, Some(RunMode::Test));
        assert_eq!(test.command.as_deref(), Some("make check"));
        assert_eq!(
            TerminalInputArguments::from_arguments(&[json!("ls\r")]),
            Ok(TerminalInputArguments {
                data: "ls\r".into()
            })
        );
        assert!(
            TerminalInputArguments::from_arguments(&[json!({"data": ""})])
                .is_err_and(|e| e.contains("nothing to send"))
        );
        assert!(TerminalInputArguments::from_arguments(&[]).is_err());
        assert_eq!(
            TerminalArguments::from_arguments(&[json!({"cols": 80})]),
            Ok(TerminalArguments {
                cols: Some(80),
                rows: None
            })
        );
        assert!(TerminalArguments::from_arguments(&[json!({"cols": -1})]).is_err());
        for bad in [
            json!({"cols": 80}),
            json!({"cols": 0, "rows": 24}),
            json!(80),
        ] {
            let refused = TerminalResizeArguments::from_arguments(std::slice::from_ref(&bad));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("chorus.terminal.resize")),
                "{bad}: {refused:?}"
            );
        }
        assert_eq!(
            FollowArguments::from_arguments(&[json!(null)]),
            Err("chorus.follow takes a participant's name".to_owned())
        );
        assert_eq!(
            FollowArguments::from_arguments(&[]),
            Ok(FollowArguments { name: None })
        );
    }
}
