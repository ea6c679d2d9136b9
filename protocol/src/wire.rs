//! The hub protocol: JSON text frames over one WebSocket per proxy.
//!
//! ```text
//!  proxy                                   hub
//!    │ hello{protocol, session, name}  ──►   │  (first frame, always)
//!    │ ◄── welcome{clientId, participants}   │  or error{incompatible_protocol}
//!    │ open{doc, text}                 ──►   │  text seeds the doc if it is new
//!    │ ◄── opened{doc, rev, text, created}   │  the hub's text wins otherwise
//!    │ op{doc, rev, op}                ──►   │  rev = last revision the proxy saw
//!    │ ◄── ack{doc, rev}                     │  rev = revision the op became
//!    │ ◄── remote{doc, rev, op, clientId}    │  everyone else's ops, in order
//!    │ put{path, content}              ──►   │  publish one workspace file
//!    │ ◄── stored{path, created, ...}        │  (others get fileAdded)
//!    │ files{}                         ──►   │
//!    │ ◄── files{entries}                    │  the session's whole tree
//!    │ rename{from, to}                ──►   │  a file or a directory
//!    │ ◄── renamed{from, to, clientId}       │  to everyone, sender too
//!    │ delete{path}                    ──►   │  a file or a directory
//!    │ ◄── deleted{path, clientId}           │  to everyone, sender too
//!    │ run{doc, mode, command, args, stdin} ►│  mode run|test|release
//!    │ ◄── runStarted{runId, doc, plan}      │  to everyone; or error{run_refused}
//!    │ ◄── runOutput{runId, seq, data}       │  to everyone, in order
//!    │ input{text | eof | interrupt}   ──►   │  to the current run's stdin
//!    │ ◄── runInput{runId, clientId, name,…} │  to everyone, sender too; or
//!    │                                       │  error{no_run | read_only}
//!    │ ◄── runFinished{runId, result}        │  result.diagnostics: errors by file
//!    │ terminal{cols, rows}            ──►   │  open the shared terminal, or join it
//!    │ ◄── terminalStarted{terminalId,…}     │  to everyone when it opens; to the
//!    │ ◄── terminalOutput{seq, data, replay} │  sender with the recent output
//!    │ terminalInput{data}             ──►   │  keystrokes; error{no_terminal|read_only}
//!    │ terminalResize{cols, rows}      ──►   │  the sender's view; the last typist's wins
//!    │ ◄── terminalResized{cols, rows}       │  to everyone
//!    │ terminalStop{}                  ──►   │
//!    │ ◄── terminalEnded{terminalId, reason} │  to everyone
//! ```
//!
//! A session's workspace is a tree of files: each is a document (text,
//! synced with OT, opened by path like any other) or an entry listed but
//! not synced, with the reason (binary, too large, session full). Files
//! arrive by `put` (`chorus share`) or by an editor's `open` of a new path.
//! The hub orders renames and deletes with the edits (ADR 0005): a
//! document keeps its text, revision and readers when renamed, and an `op`,
//! `cursor`, `checksum`, `close` or `run` that still names a path renamed
//! lately reaches the document where it is now (acks and remotes then name
//! the new path).
//!
//! Every frame is an object with a `type`; field names are camelCase. The
//! hub answers anything it cannot accept with `error{code, message}` and
//! keeps the connection. Plugins that read these (via the proxy's custom
//! notifications) mirror the shapes declared here.

use serde::{Deserialize, Serialize};

use crate::ot::WireOp;

/// Bumped on any change an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default cap on one client frame. Documents larger than this cannot be
/// seeded through `open`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A selection in character offsets at a given revision; `anchor == head`
/// is a plain cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub anchor: u64,
    pub head: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub client_id: u64,
    pub name: String,
    /// Which editor the participant uses, as its proxy reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<String>,
}

/// What `put` publishes: a text file's content, or only the size of a
/// file that is not synced (the publisher does not send what the hub
/// would not keep).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PutContent {
    Text {
        text: String,
    },
    /// Not valid UTF-8, or holds NUL bytes.
    Binary {
        size: u64,
    },
    /// Over the hub's per-file cap ([`WorkspaceLimits::max_file_bytes`]).
    TooLarge {
        size: u64,
    },
}

/// Why a file in the session's tree is listed but its content not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NotSynced {
    Binary,
    TooLarge,
    /// The session's total size cap was reached.
    SessionFull,
}

/// One file of the session's tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub path: String,
    /// In bytes (UTF-8 for a document, its text now).
    pub size: u64,
    /// `None`: a document, synced like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_synced: Option<NotSynced>,
}

/// The hub's caps on a session's tree, announced in `welcome` so that a
/// publisher lists what would not be kept instead of sending it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceLimits {
    /// Largest text file synced; larger ones are listed `tooLarge`.
    pub max_file_bytes: u64,
    /// Total text synced per session; past it files are listed
    /// `sessionFull`.
    pub max_session_bytes: u64,
    /// Files (synced or listed) per session; past it `put` and new
    /// documents are refused with `too_many_files`.
    pub max_files: u64,
}

/// An op as the hub logged it: the revision it made and who sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOp {
    pub rev: u64,
    pub op: WireOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// Proxy → hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMsg {
    Hello {
        protocol: u32,
        session: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        editor: Option<String>,
        /// Stable for the life of one proxy process, across reconnects: the
        /// hub logs it with each op so the proxy can recognise its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        /// The session's join or read-only token (`chorus session create`);
        /// a hub started with `--open` needs none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Open {
        doc: String,
        text: String,
        /// Rejoining after an outage: the last revision this client saw. The
        /// hub then also sends the ops since it, if it still has them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    Op {
        doc: String,
        rev: u64,
        op: WireOp,
        /// Numbers this instance's ops per document, from 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    Close {
        doc: String,
    },
    Cursor {
        doc: String,
        rev: u64,
        selections: Vec<Selection>,
    },
    Ping {
        #[serde(default)]
        nonce: u64,
    },
    /// Run the session's code, starting from document `doc`. The hub runs
    /// its own text of every document in the session, never the sender's.
    Run {
        doc: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        /// Sent to the program's stdin first; `input` may follow.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin: Option<String>,
        /// Close the program's stdin after `stdin`. Absent means: closed
        /// when `stdin` is given (what older proxies meant by it), open
        /// for `input` otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin_eof: Option<bool>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// Run, test, or an optimised build; older proxies send none (`run`).
        #[serde(default, skip_serializing_if = "RunMode::is_run")]
        mode: RunMode,
        /// A shell command line that replaces the detected one (run in the
        /// work dir with `sh -c`); `None` lets the project decide.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    },
    /// Stop the session's current run.
    Stop {},
    /// Input for the session's current run, in this order: `text` to its
    /// stdin, then `eof` closes its stdin, then `interrupt` sends SIGINT
    /// to the program (Python raises `KeyboardInterrupt`). Told to
    /// everyone as `runInput`; refused with `no_run` when no run is
    /// going (or its stdin is closed already and `text` or `eof` come),
    /// with `read_only` for a read-only participant. The sandbox caps the
    /// input of one run (1 MiB by default): text past it is refused on
    /// the run's stderr.
    Input {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        eof: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interrupt: bool,
    },
    /// "At revision `rev` my text hashes to `hash`" (see
    /// `text::checksum`). The hub answers a mismatch with `error` and a
    /// fresh `opened` snapshot; a match, or a revision it has moved past,
    /// gets no answer.
    Checksum {
        doc: String,
        rev: u64,
        hash: String,
    },
    /// Publish one file of the sender's workspace. A text file becomes a
    /// document seeded with `text` unless the session has one at `path`
    /// already (whose text then stays: it may be live); the sender is not
    /// subscribed to it. Answered with `stored`.
    Put {
        path: String,
        content: PutContent,
    },
    /// Ask for the session's whole tree; answered with `files`.
    Files {},
    /// Move the file at `from`, or every file under the directory `from`
    /// (`from/…` to `to/…`), in one step. Answered, and told to everyone,
    /// with `renamed`; refused with `already_exists` when anything is at
    /// `to` or under it (a rename never overwrites), `unknown_document`
    /// when nothing is at `from` (nor was lately: see `renamed`),
    /// `bad_path` for an invalid path or a directory moved into itself.
    Rename {
        from: String,
        to: String,
    },
    /// Remove the file at `path`, or every file under the directory `path`,
    /// with their history. Answered, and told to everyone, with `deleted`;
    /// refused with `unknown_document` when nothing is there (nor was
    /// lately: see `deleted`).
    Delete {
        path: String,
    },
    /// Open the session's shared terminal, or join the one already open:
    /// either way the sender gets `terminalStarted` and the recent output
    /// (`terminalOutput{replay}`), and everyone gets `terminalStarted` when
    /// a new one opens. `cols`/`rows` are the sender's view (see
    /// `terminalResize`). Refused with `read_only` for a read-only
    /// participant when none is open, `runs_disabled` on a hub that cannot
    /// run code.
    Terminal {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cols: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows: Option<u16>,
    },
    /// Keystrokes for the shared terminal, as a terminal sends them
    /// (`"ls\r"`, `"\u0003"` for Ctrl-C; the one message that may hold
    /// U+0000, which is Ctrl-Space). The terminal takes the sender's size.
    /// Refused with `no_terminal` when none is open, `read_only` for a
    /// read-only participant.
    TerminalInput {
        data: String,
    },
    /// The size of the sender's view of the terminal. The terminal follows
    /// the most recent typist: it takes this size now if the sender typed
    /// last (or opened it and nobody typed since), else when the sender
    /// next types.
    TerminalResize {
        cols: u16,
        rows: u16,
    },
    /// End the shared terminal (its container and every process in it).
    TerminalStop {},
}

impl ClientMsg {
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "open",
        "op",
        "close",
        "cursor",
        "ping",
        "run",
        "stop",
        "input",
        "checksum",
        "put",
        "files",
        "rename",
        "delete",
        "terminal",
        "terminalInput",
        "terminalResize",
        "terminalStop",
    ];
}

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// What a run does with the project: run it, run its tests, or build it
/// optimised and run it (Rust's `--release`; the other toolchains have no
/// such split and run as `run`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Run,
    Test,
    Release,
}

impl RunMode {
    pub fn is_run(&self) -> bool {
        *self == RunMode::Run
    }
}

/// A compiler or interpreter error located in one of the session's files,
/// read from a run's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDiagnostic {
    /// Workspace-relative path, as documents are named.
    pub path: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column in Unicode code points; 1 when the tool gives none.
    pub column: u32,
    pub severity: RunDiagnosticSeverity,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunDiagnosticSeverity {
    Error,
    Warning,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// The program's exit code, when it exited by itself.
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    pub oom_killed: bool,
    /// Output beyond the cap was dropped and the program killed.
    pub truncated: bool,
    /// Stopped by a participant (`stop`).
    pub cancelled: bool,
    pub duration_ms: u64,
    /// Why the run could not happen or failed inside the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Errors located in the session's files (compile errors first); the
    /// proxy publishes them as the editor's diagnostics until the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<RunDiagnostic>,
}

impl RunResult {
    /// A run that never started, with the reason.
    pub fn failed(error: impl Into<String>) -> Self {
        RunResult {
            error: Some(error.into()),
            ..RunResult::default()
        }
    }
}

/// Hub → proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMsg {
    Welcome {
        protocol: u32,
        session: String,
        client_id: u64,
        participants: Vec<Participant>,
        /// What the token allows; older hubs send none, meaning `editor`.
        #[serde(default)]
        role: Role,
        /// The caps on the session's tree; older hubs send none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<WorkspaceLimits>,
        /// The largest frame this hub accepts (`--max-message-bytes`), so
        /// that a proxy can tell a document too large to share from one the
        /// hub will take; older hubs send none, meaning
        /// [`DEFAULT_MAX_MESSAGE_BYTES`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_message_bytes: Option<u64>,
    },
    Opened {
        doc: String,
        rev: u64,
        text: String,
        /// True when this `open` created the document from the sent text.
        created: bool,
        /// For an `open` with `since`: every op after that revision, when
        /// the hub still has them all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history: Option<Vec<LoggedOp>>,
        /// The highest `seq` the hub applied to this document from the
        /// opener's `instance`: after an outage, tells a proxy whether its
        /// unacknowledged op got in even when `history` is too old to say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<u64>,
    },
    Ack {
        doc: String,
        rev: u64,
    },
    Remote {
        doc: String,
        rev: u64,
        op: WireOp,
        client_id: u64,
    },
    Joined {
        participant: Participant,
    },
    Left {
        client_id: u64,
        name: String,
    },
    Cursor {
        client_id: u64,
        name: String,
        doc: String,
        rev: u64,
        selections: Vec<Selection>,
    },
    Pong {
        nonce: u64,
    },
    /// Sent to every participant when a run begins.
    RunStarted {
        run_id: u64,
        client_id: u64,
        name: String,
        doc: String,
        /// What will run, for the run's header: e.g. `cargo run --offline
        /// (Cargo.toml)`; older hubs send none.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        plan: String,
    },
    /// A piece of output, in order: `seq` counts from 0 within a run.
    RunOutput {
        run_id: u64,
        seq: u64,
        stream: OutputStream,
        data: String,
    },
    RunFinished {
        run_id: u64,
        result: RunResult,
    },
    /// Someone's `input` to the current run, as it went to the program:
    /// sent to everyone (the sender too), so all see who typed what.
    RunInput {
        run_id: u64,
        client_id: u64,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        eof: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interrupt: bool,
    },
    /// The answer to `put`: `created` when the put changed the session's
    /// tree (a new file, or a file only listed until now, replaced: e.g. it
    /// became text); false when a document was at `path` already (its text
    /// stays) or the same listing was. `notSynced` when the file is only
    /// listed (and why); a put refused (`bad_path`, `read_only`,
    /// `too_many_files`) is answered with `error{doc: path}` instead.
    Stored {
        path: String,
        created: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_synced: Option<NotSynced>,
    },
    /// Another participant added a file to the session's tree (by `put`,
    /// or by opening a new document), or replaced a listed one at the same
    /// path: sent whenever `stored` says `created`.
    FileAdded {
        entry: FileEntry,
    },
    /// The answer to `files`: every file of the session, sorted by path.
    Files {
        entries: Vec<FileEntry>,
    },
    /// Participant `clientId` moved what was at `from` (a file, or a
    /// directory and every file under it) to `to`; sent to everyone, the
    /// renamer included (its answer), once stored. `from` is where the
    /// file was when the hub applied the rename: a `rename` naming a path
    /// already renamed by someone else moves the file where it went, so
    /// `from` may differ from the `rename`'s. Documents keep their text,
    /// revision and readers.
    Renamed {
        from: String,
        to: String,
        client_id: u64,
    },
    /// Participant `clientId` removed what was at `path` (a file, or a
    /// directory and every file under it); sent to everyone, the deleter
    /// included (its answer), once stored. Like `renamed`'s `from`, `path`
    /// is where the files were: a `delete` naming a path renamed meanwhile
    /// deletes the file where it went. Ops still naming a deleted
    /// document are refused with `unknown_document`; opening or putting it
    /// again creates it anew.
    Deleted {
        path: String,
        client_id: u64,
    },
    /// The session's shared terminal is open: sent to everyone when it
    /// opens (`clientId`, `name`: who opened it), and to each participant
    /// that joins the session or sends `terminal` while it is open.
    TerminalStarted {
        terminal_id: u64,
        client_id: u64,
        name: String,
        cols: u16,
        rows: u16,
    },
    /// Terminal output as the PTY wrote it (escape sequences included;
    /// bytes that are not UTF-8 become U+FFFD), to everyone, in order:
    /// `seq` counts from 0 within a terminal. `replay` marks the recent
    /// output sent to one participant that joined late (it repeats output
    /// others already had, and its `seq` is the next live one's).
    TerminalOutput {
        terminal_id: u64,
        seq: u64,
        data: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replay: bool,
    },
    /// The terminal took a new size, because `clientId` typed in a view of
    /// that size; to everyone.
    TerminalResized {
        terminal_id: u64,
        client_id: u64,
        cols: u16,
        rows: u16,
    },
    /// The shared terminal is over and its container gone; to everyone.
    TerminalEnded {
        terminal_id: u64,
        /// For people: "the shell exited with code 0", "stopped by Ada"...
        reason: String,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc: Option<String>,
    },
}

/// What a participant may do in a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Edits, opens documents and runs code.
    #[default]
    Editor,
    /// Sees everything and moves a cursor; edits and runs are refused.
    ReadOnly,
}

/// Stable error codes; the message beside them is for humans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    BadMessage,
    BinaryFrame,
    TooLarge,
    IncompatibleProtocol,
    NotJoined,
    AlreadyJoined,
    BadSession,
    BadPath,
    UnknownDocument,
    InvalidOp,
    StaleRevision,
    Overloaded,
    /// The session already has a run going; `stop` it first.
    RunBusy,
    /// `stop` or `input` with no run going (or `input` to a closed stdin).
    NoRun,
    /// This hub cannot run code (no Docker engine, or turned off).
    RunsDisabled,
    /// The run cannot start as asked (unknown language, a project file
    /// that cannot be read, a bad mode); the message says why.
    RunRefused,
    /// A client's text differs from the hub's at the same revision.
    ChecksumMismatch,
    /// No such session on a hub that requires tokens.
    UnknownSession,
    /// The token is missing, wrong, or the session was revoked. Retrying
    /// with the same token cannot help.
    Unauthorized,
    /// A read-only participant tried to change something.
    ReadOnly,
    /// The hub cannot reach its storage; try again later.
    Unavailable,
    /// The session holds [`WorkspaceLimits::max_files`] files already.
    TooManyFiles,
    /// A `rename` onto a path that has a file, or files under it.
    AlreadyExists,
    /// `terminalInput`, `terminalResize` or `terminalStop` with no shared
    /// terminal open in the session.
    NoTerminal,
}

impl ErrorCode {
    /// Errors after which reconnecting with the same settings is futile.
    pub fn is_fatal_for_join(self) -> bool {
        matches!(
            self,
            ErrorCode::IncompatibleProtocol
                | ErrorCode::BadSession
                | ErrorCode::UnknownSession
                | ErrorCode::Unauthorized
        )
    }
}

/// Why a frame could not be decoded, ready to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl ClientMsg {
    /// Decodes one text frame, telling bad JSON, unknown types and bad
    /// fields apart so that the sender learns which it was.
    pub fn decode(text: &str) -> Result<ClientMsg, DecodeError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|err| DecodeError {
            code: ErrorCode::BadJson,
            message: format!("frame is not valid JSON: {err}"),
        })?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| DecodeError {
                code: ErrorCode::BadMessage,
                message: "frame must be an object with a string \"type\"".into(),
            })?;
        if !Self::TYPES.contains(&kind) {
            return Err(DecodeError {
                code: ErrorCode::UnknownType,
                message: format!(
                    "unknown message type {kind:?}; this hub understands {}",
                    Self::TYPES.join(", ")
                ),
            });
        }
        let kind = kind.to_owned();
        // JSON carries U+0000 only escaped; the scan is for frames that do.
        // Keystrokes are not stored, and Ctrl-Space is a NUL.
        if kind != "terminalInput" && text.contains("u0000") && holds_nul(&value) {
            return Err(DecodeError {
                code: ErrorCode::BadMessage,
                message: format!(
                    "bad {kind:?} message: it holds U+0000 (NUL), which Chorus does not share \
                     (PostgreSQL cannot store it, and a session must be movable between hubs)"
                ),
            });
        }
        serde_json::from_value(value).map_err(|err| DecodeError {
            code: ErrorCode::BadMessage,
            message: format!("bad {kind:?} message: {err}"),
        })
    }
}

/// Whether any string or key in `value` holds U+0000.
pub fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, field)| key.contains('\0') || holds_nul(field)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

impl ServerMsg {
    pub fn error(code: ErrorCode, message: impl Into<String>, doc: Option<&str>) -> ServerMsg {
        ServerMsg::Error {
            code,
            message: message.into(),
            doc: doc.map(str::to_owned),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with
        // non-string keys, no fallible custom impls.
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// Checks a document path: workspace-relative, `/`-separated, no `.` or
/// `..` components, no absolute paths.
pub fn validate_doc_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("document path is empty".into());
    }
    if path.len() > 4096 {
        return Err("document path is longer than 4096 bytes".into());
    }
    let drive_letter =
        path.len() >= 2 && path.as_bytes()[0].is_ascii_alphabetic() && path.as_bytes()[1] == b':';
    if path.starts_with('/') || path.contains('\\') || drive_letter {
        return Err(format!(
            "document path {path:?} must be relative to the workspace, with / separators"
        ));
    }
    if path.contains('\0') {
        return Err("document path contains a NUL byte".into());
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "document path {path:?} must not contain empty, \".\" or \"..\" components"
            ));
        }
    }
    Ok(())
}

/// Checks a session id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn validate_session_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "session id {id:?} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_tells_errors_apart() {
        assert_eq!(
            ClientMsg::decode("{nope").unwrap_err().code,
            ErrorCode::BadJson
        );
        assert_eq!(
            ClientMsg::decode(r#"{"type":"dance"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            ClientMsg::decode("[1]").unwrap_err().code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            ClientMsg::decode(r#"{"type":"op","doc":"a","rev":0,"op":[0]}"#)
                .unwrap_err()
                .code,
            ErrorCode::BadMessage
        );
    }

    #[test]
    fn nul_is_refused_wherever_it_is() {
        let frames = [
            r#"{"type":"op","doc":"a","rev":0,"op":["x\u0000"]}"#,
            r#"{"type":"hello","protocol":1,"session":"s","name":"n","instance":"i\u0000"}"#,
            r#"{"type":"open","doc":"a","text":"\u0000"}"#,
        ];
        for frame in frames {
            let err = ClientMsg::decode(frame).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadMessage, "{frame}");
            assert!(err.message.contains("U+0000"), "{}", err.message);
        }
        // An escaped backslash before "u0000" is text, not NUL.
        assert!(ClientMsg::decode(r#"{"type":"open","doc":"a","text":"\\u0000"}"#).is_ok());
    }

    #[test]
    fn camel_case_on_the_wire() {
        let msg = ServerMsg::Remote {
            doc: "a.rs".into(),
            rev: 3,
            op: WireOp::default(),
            client_id: 7,
        };
        assert_eq!(
            msg.to_json(),
            r#"{"type":"remote","doc":"a.rs","rev":3,"op":[],"clientId":7}"#
        );
        let hello =
            ClientMsg::decode(r#"{"type":"hello","protocol":1,"session":"s","name":"n"}"#).unwrap();
        assert!(matches!(hello, ClientMsg::Hello { protocol: 1, .. }));
    }

    #[test]
    fn input_on_the_wire() {
        let input = ClientMsg::decode(r#"{"type":"input","text":"Ada\n"}"#).unwrap();
        assert_eq!(
            input,
            ClientMsg::Input {
                text: Some("Ada\n".into()),
                eof: false,
                interrupt: false
            }
        );
        assert!(matches!(
            ClientMsg::decode(r#"{"type":"input","eof":true,"interrupt":true}"#).unwrap(),
            ClientMsg::Input {
                text: None,
                eof: true,
                interrupt: true
            }
        ));
        let echo = ServerMsg::RunInput {
            run_id: 4,
            client_id: 2,
            name: "Ada".into(),
            text: Some("x\n".into()),
            eof: false,
            interrupt: true,
        };
        assert_eq!(
            echo.to_json(),
            r#"{"type":"runInput","runId":4,"clientId":2,"name":"Ada","text":"x\n","interrupt":true}"#
        );
        let run = ClientMsg::decode(r#"{"type":"run","doc":"a.py","stdinEof":false}"#).unwrap();
        assert!(matches!(
            run,
            ClientMsg::Run {
                stdin_eof: Some(false),
                ..
            }
        ));
    }

    #[test]
    fn tree_changes_on_the_wire() {
        assert_eq!(
            ClientMsg::decode(r#"{"type":"rename","from":"src","to":"lib"}"#),
            Ok(ClientMsg::Rename {
                from: "src".into(),
                to: "lib".into()
            })
        );
        assert_eq!(
            ClientMsg::decode(r#"{"type":"delete","path":"a.rs"}"#),
            Ok(ClientMsg::Delete {
                path: "a.rs".into()
            })
        );
        let renamed = ServerMsg::Renamed {
            from: "src".into(),
            to: "lib".into(),
            client_id: 2,
        };
        assert_eq!(
            renamed.to_json(),
            r#"{"type":"renamed","from":"src","to":"lib","clientId":2}"#
        );
        let deleted = ServerMsg::Deleted {
            path: "a.rs".into(),
            client_id: 2,
        };
        assert_eq!(
            deleted.to_json(),
            r#"{"type":"deleted","path":"a.rs","clientId":2}"#
        );
        let refused = ServerMsg::error(ErrorCode::AlreadyExists, "taken", Some("lib"));
        assert!(refused.to_json().contains(r#""code":"already_exists""#));
    }

    #[test]
    fn paths() {
        for good in ["a.rs", "src/main.rs", "dir/.hidden/x", "a..b"] {
            assert!(validate_doc_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "C:\\x",
            "a\\b",
            "c:/x",
        ] {
            assert!(validate_doc_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_ids() {
        assert!(validate_session_id("team-1.demo_x").is_ok());
        assert!(validate_session_id("").is_err());
        assert!(validate_session_id("a b").is_err());
        assert!(validate_session_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn terminal_messages_round_trip_and_keystrokes_may_hold_nul() {
        let input = ClientMsg::decode(r#"{"type":"terminalInput","data":"a\u0000\u0003"}"#);
        assert_eq!(
            input,
            Ok(ClientMsg::TerminalInput {
                data: "a\0\u{3}".into()
            })
        );
        assert_eq!(
            ClientMsg::decode(r#"{"type":"terminal"}"#),
            Ok(ClientMsg::Terminal {
                cols: None,
                rows: None
            })
        );
        let resize = ClientMsg::decode(r#"{"type":"terminalResize","cols":100,"rows":30}"#);
        assert_eq!(
            resize,
            Ok(ClientMsg::TerminalResize {
                cols: 100,
                rows: 30
            })
        );
        assert!(ClientMsg::decode(r#"{"type":"terminalResize","cols":-1,"rows":30}"#).is_err());
        let output = ServerMsg::TerminalOutput {
            terminal_id: 3,
            seq: 0,
            data: "$ ".into(),
            replay: true,
        };
        assert_eq!(
            output.to_json(),
            r#"{"type":"terminalOutput","terminalId":3,"seq":0,"data":"$ ","replay":true}"#
        );
        let ended = ServerMsg::TerminalEnded {
            terminal_id: 3,
            reason: "stopped by Ada".into(),
        };
        assert_eq!(
            serde_json::from_str::<ServerMsg>(&ended.to_json()).unwrap(),
            ended
        );
    }
}
