// The Chorus extensions to LSP, as `chorus lsp` speaks them. Mirrors
// lsp-proxy/src/lsp_ext.rs, where each message is documented; the unit test
// test/protocol.test.ts holds these types to editor-plugins/fixtures/lsp_ext.json,
// which that file's types generate, so a change there fails here until
// mirrored.

/** An LSP position; VS Code only offers utf-16, so columns are utf-16. */
export interface Position {
  line: number;
  character: number;
}

/** One selection; `head` is where the cursor is, `anchor` where it started. */
export interface SelectionParam {
  anchor: Position;
  head: Position;
}

/** A participant as the hub describes them (protocol/src/wire.rs). */
export interface Participant {
  clientId: number;
  name: string;
  editor?: string;
}

/** `chorus/presence` (server → client). */
export type PresenceParams =
  | { event: 'joined'; participant: Participant }
  | { event: 'left'; clientId: number; name?: string };

/** `chorus/connection` (server → client): the proxy's link to the hub. */
export interface ConnectionParams {
  state: 'online' | 'offline' | 'refused';
  session?: string;
  /** With `online`: what the token allows. */
  role?: 'editor' | 'readOnly';
  /** With `online`: our id at the hub (as in `Participant`); new at each reconnect. */
  clientId?: number;
  /** With `offline` and `refused`: why, in words. */
  reason?: string;
}

/** `chorus/cursor` (server → client): someone's selections in one document. */
export interface RemoteCursorParams {
  clientId: number;
  name: string;
  uri: string;
  selections: SelectionParam[];
}

/** `chorus/cursor` (client → server): the user's selections. */
export interface LocalCursorParams {
  uri: string;
  selections: SelectionParam[];
}

/** `chorus/runStarted`. */
export interface RunStartedParams {
  runId: number;
  name: string;
  doc: string;
  /** What runs, for the header: `cargo test --offline (Cargo.toml)`; older hubs send none. */
  plan?: string;
}

/** `chorus/runOutput`; `data` is a chunk, not necessarily whole lines. */
export interface RunOutputParams {
  runId: number;
  seq: number;
  stream: 'stdout' | 'stderr';
  data: string;
}

/** `chorus/runInput`: someone's input to the run, as the program got it (text, then end-of-file, then interrupt). */
export interface RunInputParams {
  runId: number;
  /** Who sent it. */
  clientId: number;
  name: string;
  /** Missing for an end-of-file or interrupt alone. */
  text?: string;
  eof?: boolean;
  interrupt?: boolean;
}

/** `chorus.input`'s argument: text for the program's stdin, then end-of-file, then SIGINT. */
export interface InputOptions {
  text?: string;
  eof?: boolean;
  interrupt?: boolean;
}

/** `chorus.input [text]` or `chorus.input [options]`. */
export type InputArguments = [text: string] | [options: InputOptions];

/** How a run ended (protocol/src/wire.rs `RunResult`). */
export interface RunResult {
  /** Null when the program did not exit by itself. */
  exitCode?: number | null;
  timedOut: boolean;
  oomKilled: boolean;
  truncated: boolean;
  cancelled: boolean;
  durationMs: number;
  /** Why the run could not happen. */
  error?: string;
  /** Errors found in the output, on the session's files; the proxy also publishes them as diagnostics. */
  diagnostics?: RunDiagnostic[];
}

/** protocol/src/wire.rs `RunDiagnostic`: 1-based line, 1-based column in code points. */
export interface RunDiagnostic {
  /** Workspace-relative, `/`-separated. */
  path: string;
  line: number;
  column: number;
  severity: 'error' | 'warning';
  message: string;
}

/** What `chorus.run` does with the project (protocol/src/wire.rs `RunMode`). */
export type RunMode = 'run' | 'test' | 'release';

/** `chorus/runFinished`; `summary` is the proxy's one-line account. */
export interface RunFinishedParams {
  runId: number;
  summary?: string;
  result?: RunResult;
}

/** A terminal's or a view's size in character cells. */
export interface TerminalSize {
  cols: number;
  rows: number;
}

/**
 * `chorus/terminalStarted`: the session's shared terminal is open. To
 * everyone when it opens (`clientId`, `name`: who opened it), and to one
 * editor that joins late or sends `chorus.terminal`. `cols`/`rows`: its
 * size now.
 */
export interface TerminalStartedParams {
  terminalId: number;
  clientId: number;
  name: string;
  cols: number;
  rows: number;
}

/**
 * `chorus/terminalOutput`: raw PTY output, escape sequences included.
 * `seq` counts from 0 per terminal; a `replay` (the recent output, for one
 * editor) has the `seq` of the next live output.
 */
export interface TerminalOutputParams {
  terminalId: number;
  seq: number;
  data: string;
  replay?: boolean;
}

/** `chorus/terminalResized`: the terminal took the size of `clientId`'s view, who typed last. */
export interface TerminalResizedParams {
  terminalId: number;
  clientId: number;
  cols: number;
  rows: number;
}

/** `chorus/terminalEnded`; `reason` is for people ("stopped by Ada"). */
export interface TerminalEndedParams {
  terminalId: number;
  reason: string;
}

/** `chorus.terminal.input`'s argument: keystrokes as a terminal sends them (`"ls\r"`). */
export interface TerminalInputOptions {
  data: string;
}

/** `chorus.terminal [size]`: open the session's terminal or join it; `size` is this view's. */
export type TerminalArguments = [size: TerminalSize];

/** `chorus.terminal.input [{data}]`. */
export type TerminalInputArguments = [options: TerminalInputOptions];

/** `chorus.terminal.resize [size]`: this view's size, which the terminal takes when this user typed last. */
export type TerminalResizeArguments = [size: TerminalSize];

/** `chorus.terminal.stop []`: end it for everyone. */
export type TerminalStopArguments = [];

/** `chorus/documentState` (client → server request). */
export interface DocumentStateParams {
  uri: string;
}

/** What `chorus/documentState` answers (null for a document not shared). */
export interface DocumentState {
  text: string;
  rev: number;
  synchronized: boolean;
  joined: boolean;
  /** The document version `text` is at: compare with the buffer only at this version. */
  version: number;
}

/** `initializationOptions` the proxy reads (lsp-proxy/src/lib.rs `Settings`). */
export interface InitializationOptions {
  hub: string;
  session: string;
  name?: string;
  /** Join token; proxies without token support ignore unknown fields. */
  token?: string;
  /** A CA certificate (PEM path) to trust for a `wss://` hub. */
  hubCa?: string;
  /** We draw cursors ourselves and send chorus/cursor. */
  extensions: true;
  /** Write the session's files into the workspace folder and keep them in step. */
  syncFiles?: boolean;
}

export const Methods = {
  presence: 'chorus/presence',
  connection: 'chorus/connection',
  cursor: 'chorus/cursor',
  runStarted: 'chorus/runStarted',
  runOutput: 'chorus/runOutput',
  runInput: 'chorus/runInput',
  runFinished: 'chorus/runFinished',
  documentState: 'chorus/documentState',
  terminalStarted: 'chorus/terminalStarted',
  terminalOutput: 'chorus/terminalOutput',
  terminalResized: 'chorus/terminalResized',
  terminalEnded: 'chorus/terminalEnded',
} as const;

/** workspace/executeCommand names the proxy offers. */
export const ServerCommands = {
  run: 'chorus.run',
  stop: 'chorus.stop',
  input: 'chorus.input',
  follow: 'chorus.follow',
  share: 'chorus.share',
  resync: 'chorus.resync',
  files: 'chorus.files',
  terminal: 'chorus.terminal',
  terminalInput: 'chorus.terminal.input',
  terminalResize: 'chorus.terminal.resize',
  terminalStop: 'chorus.terminal.stop',
} as const;

/** `chorus.run`'s second argument. */
export interface RunOptions {
  stdin?: string;
  /** Close stdin after `stdin` (missing: closed when `stdin` is given, else open for `chorus.input`). */
  stdinEof?: boolean;
  args?: string[];
  /** By name; by default the document's extension decides. */
  language?: string;
  /** Run (the default), its tests, or an optimised build. */
  mode?: RunMode;
  /** A shell command line run instead of the one the project's files suggest. */
  command?: string;
}

/** `chorus.run [uri [options]]`; without a uri the proxy runs the last active document. */
export type RunArguments = [] | [uri: string] | [uri: string, options: RunOptions];

/** `chorus.resync [uri]`: replace the document whole with the session's text. */
export type ResyncArguments = [] | [uri: string];

/** `chorus.follow [name]`; without a name, stop following. */
export type FollowArguments = [] | [name: string];

/** What `chorus.run` and `chorus.resync` (the document's path), `chorus.stop` (`"stop"`), `chorus.input` (`"input"`) and `chorus.share` (`"share"`) answer. */
export interface RequestedAnswer {
  requested: string;
}

/** What `chorus.follow` answers. */
export interface FollowAnswer {
  following: string | null;
}

/** Why the session lists a file without its content (protocol/src/wire.rs `NotSynced`). */
export type NotSynced = 'binary' | 'tooLarge' | 'sessionFull';

/** One file of the session's tree, as `chorus.files` lists it. */
export interface SessionFile {
  /** Relative to the workspace root, `/`-separated. */
  path: string;
  /** Where it is, or would be, in this workspace; missing without a folder. */
  uri?: string;
  size: number;
  /** Missing for a text file, which opens like any document. */
  notSynced?: NotSynced;
}

/** What `chorus.files` (no arguments) answers, sorted by path. */
export interface FilesAnswer {
  files: SessionFile[];
}
