// Chorus for VS Code: joins a session by starting `chorus lsp` as a language
// client for every file in the workspace folder, and shows what its chorus/*
// notifications report (people, cursors, runs, the shared terminal in
// terminal.ts). The logic that needs no editor lives in settings.ts,
// status.ts, cursors.ts, runOutput.ts and terminalFeed.ts.

import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';

import { compare, SETTLE_MS } from './bufferCheck';
import { CursorLayer } from './decorations';
import {
  Methods,
  ServerCommands,
  type ConnectionParams,
  type DocumentState,
  type LocalCursorParams,
  type PresenceParams,
  type RemoteCursorParams,
  type RunArguments,
  type InputOptions,
  type RunFinishedParams,
  type RunInputParams,
  type RunMode,
  type RunOutputParams,
  type RunStartedParams,
} from './protocol';
import { RunFormatter } from './runOutput';
import { commandLine, runOptions, type RunArgs } from './runRequest';
import {
  folderGlob,
  hubProblem,
  initializationOptions,
  normalizeSettings,
  serverCommand,
  sessionProblem,
  type ChorusSettings,
} from './settings';
import { SessionState, statusText, statusTooltip, whoLines } from './status';
import { SharedTerminal } from './terminal';
import { Throttle } from './throttle';

/** Milliseconds between two chorus/cursor notifications while moving. */
const CURSOR_THROTTLE_MS = 50;

function readSettings(): ChorusSettings {
  const config = vscode.workspace.getConfiguration('chorus');
  return normalizeSettings({
    hub: config.get('hub'),
    name: config.get('name'),
    path: config.get('path'),
    token: config.get('token'),
    syncFiles: config.get('syncFiles'),
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Arguments the commands accept when called programmatically (tests, keybindings). */
interface JoinArgs {
  session?: string;
  token?: string;
}

class Chorus implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly state = new SessionState();
  private readonly status: vscode.StatusBarItem;
  /** The proxy's own log and window/logMessage lines. */
  private readonly log = vscode.window.createOutputChannel('Chorus');
  /** Shared runs, streamed as they happen, for everyone in the session. */
  private readonly runOutput = vscode.window.createOutputChannel('Chorus Run');
  private runFormatter = new RunFormatter();
  /** What "Run With Command…" ran last, offered again. */
  private lastCommand: string | undefined;
  private readonly cursors = new CursorLayer();
  private readonly cursorThrottle = new Throttle<LocalCursorParams>(CURSOR_THROTTLE_MS, (params) => {
    if (this.client?.state === State.Running) {
      void this.client.sendNotification(Methods.cursor, params).catch(() => undefined);
    }
  });
  private readonly disposables: vscode.Disposable[] = [];
  /** Per document, the timer of the comparison after its burst settles (bufferCheck.ts). */
  private readonly checks = new Map<string, ReturnType<typeof setTimeout>>();
  readonly terminal = new SharedTerminal({
    runningClient: () => this.clientOrWarn(),
    currentClient: () => this.client,
    clientId: () => this.state.clientId,
    log: (line) => this.log.appendLine(line),
  });

  constructor() {
    this.status = vscode.window.createStatusBarItem('chorus.status', vscode.StatusBarAlignment.Left, 100);
    this.status.name = 'Chorus';
    this.refreshStatus();
    this.status.show();
    this.disposables.push(
      vscode.window.onDidChangeTextEditorSelection((e) => this.onSelection(e)),
      vscode.window.onDidChangeVisibleTextEditors(() => this.cursors.redraw()),
      vscode.workspace.onDidChangeTextDocument((e) => this.scheduleCheck(e.document)),
    );
  }

  /** Compares `document` with the proxy's copy once its changes settle. */
  private scheduleCheck(document: vscode.TextDocument): void {
    if (!this.client || document.uri.scheme !== 'file') {
      return;
    }
    const key = document.uri.toString();
    clearTimeout(this.checks.get(key));
    this.checks.set(
      key,
      setTimeout(() => {
        this.checks.delete(key);
        void this.checkDocument(document);
      }, SETTLE_MS),
    );
  }

  private async checkDocument(document: vscode.TextDocument): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running || document.isClosed) {
      return;
    }
    const version = document.version;
    const uri = client.code2ProtocolConverter.asUri(document.uri);
    let state: DocumentState | null;
    try {
      state = await client.sendRequest<DocumentState | null>(Methods.documentState, { uri });
    } catch {
      return;
    }
    if (compare(document.getText(), version, document.version, state) === 'differs') {
      this.log.appendLine(`${document.uri.fsPath} differs from the session's copy; resyncing it`);
      await this.execute(client, ServerCommands.resync, [uri]);
    }
  }

  /** Puts the session's text back in the active document. */
  async resync(): Promise<void> {
    const client = this.clientOrWarn();
    const document = vscode.window.activeTextEditor?.document;
    if (client && document) {
      await this.execute(client, ServerCommands.resync, [client.code2ProtocolConverter.asUri(document.uri)]);
    }
  }

  private get myName(): string {
    return readSettings().name;
  }

  private refreshStatus(): void {
    this.status.text = statusText(this.state);
    this.status.tooltip = statusTooltip(this.state, this.myName);
    this.status.command = this.state.session === undefined ? 'chorus.join' : 'chorus.who';
  }

  async join(args?: JoinArgs): Promise<void> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    if (!folder) {
      void vscode.window.showErrorMessage(
        'Chorus: open the project folder first; documents are shared by their path in it.',
      );
      return;
    }
    const settings = readSettings();
    const badHub = hubProblem(settings.hub);
    if (badHub) {
      void vscode.window.showErrorMessage(`Chorus: ${badHub}`);
      return;
    }
    const session =
      args?.session ??
      (await vscode.window.showInputBox({
        title: 'Chorus: Join Session',
        prompt: `Session to join on ${settings.hub}`,
        ignoreFocusOut: true,
        validateInput: (value) => sessionProblem(value),
      }));
    if (session === undefined || sessionProblem(session)) {
      return;
    }
    let token = args?.token;
    if (token === undefined && settings.token === '') {
      token = await vscode.window.showInputBox({
        title: 'Chorus: Join Session',
        prompt: 'Join token (leave empty if the hub needs none)',
        password: true,
        ignoreFocusOut: true,
      });
      if (token === undefined) {
        return;
      }
    }
    if (this.client) {
      await this.leave(true);
    }
    await this.start(folder, settings, session, token);
  }

  private async start(
    folder: vscode.WorkspaceFolder,
    settings: ChorusSettings,
    session: string,
    token?: string,
  ): Promise<void> {
    const { command, args } = serverCommand(settings);
    const serverOptions: ServerOptions = { command, args, options: { cwd: folder.uri.fsPath } };
    const clientOptions: LanguageClientOptions = {
      // Every file in the folder: the proxy shares documents by their path
      // relative to it and refuses anything outside.
      documentSelector: [{ scheme: 'file', pattern: folderGlob(folder.uri.fsPath) }],
      workspaceFolder: folder,
      initializationOptions: initializationOptions(settings, session, token),
      outputChannel: this.log,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
    };
    const client = new LanguageClient('chorus', 'Chorus', serverOptions, clientOptions);
    this.client = client;
    this.state.reset();
    this.state.session = session;
    this.runFormatter = new RunFormatter();
    client.onNotification(Methods.presence, (params: PresenceParams) => this.onPresence(params));
    client.onNotification(Methods.connection, (params: ConnectionParams) => {
      const said = this.state.onConnection(params);
      if (said) {
        this.log.appendLine(said);
        vscode.window.setStatusBarMessage(`Chorus: ${said}`, 5000);
      }
      this.refreshStatus();
    });
    client.onNotification(Methods.cursor, (params: RemoteCursorParams) => this.onRemoteCursor(params));
    client.onNotification(Methods.runStarted, (params: RunStartedParams) => this.onRunStarted(params));
    client.onNotification(Methods.runOutput, (params: RunOutputParams) => this.onRunOutput(params));
    client.onNotification(Methods.runInput, (params: RunInputParams) => this.onRunInput(params));
    client.onNotification(Methods.runFinished, (params: RunFinishedParams) => this.onRunFinished(params));
    this.terminal.listen(client);
    client.onDidChangeState((e) => {
      if (this.client !== client) {
        return;
      }
      this.state.connected = e.newState === State.Running;
      this.refreshStatus();
    });
    this.refreshStatus();
    try {
      await client.start();
    } catch (err) {
      if (this.client === client) {
        this.client = undefined;
        this.state.reset();
        this.refreshStatus();
      }
      void vscode.window.showErrorMessage(`Chorus: could not start ${command} lsp: ${message(err)}`);
      return;
    }
    this.log.appendLine(`joined ${session} at ${settings.hub} (workspace ${folder.uri.fsPath})`);
    vscode.window.setStatusBarMessage(`Chorus: joined ${session}`, 5000);
    this.sendCursor(vscode.window.activeTextEditor);
  }

  async leave(quiet = false): Promise<void> {
    const client = this.client;
    const session = this.state.session;
    if (!client) {
      if (!quiet) {
        void vscode.window.showInformationMessage('Chorus: not in a session');
      }
      return;
    }
    this.client = undefined;
    for (const timer of this.checks.values()) {
      clearTimeout(timer);
    }
    this.checks.clear();
    this.terminal.leave();
    this.cursorThrottle.dispose();
    this.cursors.clearAll();
    this.state.reset();
    this.refreshStatus();
    try {
      await client.stop(5000);
    } catch (err) {
      this.log.appendLine(`stopping chorus lsp: ${message(err)}`);
    }
    if (!quiet) {
      vscode.window.setStatusBarMessage(`Chorus: left ${session}`, 5000);
    }
  }

  /** The running client, or undefined after telling the user why not. */
  private clientOrWarn(): LanguageClient | undefined {
    if (!this.client || this.client.state !== State.Running) {
      void vscode.window.showWarningMessage('Chorus: not in a session (Chorus: Join Session)');
      return undefined;
    }
    return this.client;
  }

  private async execute(client: LanguageClient, command: string, args: unknown[]): Promise<void> {
    try {
      await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    } catch (err) {
      void vscode.window.showErrorMessage(`Chorus: ${command}: ${message(err)}`);
    }
  }

  /** Runs the session's code from `args.uri` or the active file; `mode` is the command's. */
  async run(args?: RunArgs, mode?: RunMode): Promise<void> {
    const client = this.clientOrWarn();
    if (!client) {
      return;
    }
    const uri = args?.uri ?? vscode.window.activeTextEditor?.document.uri.toString();
    if (!uri) {
      void vscode.window.showWarningMessage('Chorus: open the file to run first');
      return;
    }
    const runArguments: RunArguments = [uri, runOptions(args, mode)];
    await this.execute(client, ServerCommands.run, runArguments);
  }

  /** "Chorus: Run With Command…": asks for a shell command line, offering the last one. */
  async runWithCommand(args?: RunArgs): Promise<void> {
    if (!this.clientOrWarn()) {
      return;
    }
    const typed =
      args?.command ??
      (await vscode.window.showInputBox({
        title: 'Chorus: Run With Command',
        prompt: "A shell command line, run in the project's folder in the session's sandbox",
        placeHolder: 'make check',
        value: this.lastCommand,
        ignoreFocusOut: true,
      }));
    const command = commandLine(typed);
    if (command === undefined) {
      return;
    }
    this.lastCommand = command;
    await this.run({ ...args, command });
  }

  async stop(): Promise<void> {
    const client = this.clientOrWarn();
    if (client) {
      await this.execute(client, ServerCommands.stop, []);
    }
  }

  /**
   * Input for the session's run: a line typed in an input box, or (with the
   * box left empty) an empty line, end of input or an interrupt picked from
   * a list. Everyone sees it in the Chorus Run output.
   */
  async sendInput(): Promise<void> {
    const client = this.clientOrWarn();
    if (!client) {
      return;
    }
    const text = await vscode.window.showInputBox({
      title: 'Chorus: Send Input to Run',
      prompt: 'A line for the running program (Enter sends it); leave empty for end of input or interrupt',
    });
    if (text === undefined) {
      return;
    }
    let options: InputOptions = { text: `${text}\n` };
    if (text === '') {
      const choices = [
        { label: 'Send an empty line', options: { text: '\n' } },
        { label: 'End of input (EOF)', options: { eof: true } },
        { label: 'Interrupt (SIGINT)', options: { interrupt: true } },
      ];
      const picked = await vscode.window.showQuickPick(choices, { title: 'Chorus: Send Input to Run' });
      if (!picked) {
        return;
      }
      options = picked.options;
    }
    await this.execute(client, ServerCommands.input, [options]);
  }

  /** Publishes the workspace folder; the proxy reports progress through $/progress. */
  async share(): Promise<void> {
    const client = this.clientOrWarn();
    if (client) {
      await this.execute(client, ServerCommands.share, []);
    }
  }

  /**
   * Follow mode is done here rather than with the proxy's chorus.follow: the
   * proxy's window/showDocument carries a selection, which would move the
   * user's own cursor and so broadcast it as theirs.
   */
  async follow(name?: string): Promise<void> {
    if (this.state.session === undefined) {
      void vscode.window.showInformationMessage('Chorus: not in a session');
      return;
    }
    let chosen = name;
    if (chosen === undefined) {
      const stop = '$(close) Stop following';
      const names = this.state.names();
      if (names.length === 0 && this.state.following === undefined) {
        void vscode.window.showInformationMessage('Chorus: nobody else is in the session yet');
        return;
      }
      const picked = await vscode.window.showQuickPick(this.state.following === undefined ? names : [...names, stop], {
        title: 'Chorus: Follow',
        placeHolder: 'Whose cursor to follow',
      });
      if (picked === undefined) {
        return;
      }
      chosen = picked === stop ? '' : picked;
    }
    this.state.following = chosen === '' ? undefined : chosen;
    this.refreshStatus();
    if (this.state.following !== undefined) {
      const at = this.cursors.positionOf(this.state.following);
      if (at) {
        await this.reveal(at.uri, at.range);
      }
    }
  }

  async who(): Promise<void> {
    const lines = whoLines(this.state, this.myName);
    if (this.state.session === undefined || this.state.people.size === 0) {
      void vscode.window.showInformationMessage(`Chorus: ${lines.join(' · ')}`);
      return;
    }
    // Picking a person follows them: the one thing one usually wants next.
    const people = [...this.state.people.values()];
    const picked = await vscode.window.showQuickPick(
      people.map((p) => ({ label: p.name, description: p.editor, detail: `#${p.clientId} · select to follow` })),
      { title: `Chorus: ${lines[0]}`, placeHolder: 'People in this session' },
    );
    if (picked) {
      await this.follow(picked.label);
    }
  }

  private onPresence(params: PresenceParams): void {
    const said = this.state.onPresence(params);
    if (params.event === 'left') {
      this.cursors.clear(params.clientId);
    }
    if (said) {
      this.log.appendLine(said);
      vscode.window.setStatusBarMessage(`Chorus: ${said}`, 5000);
    }
    this.refreshStatus();
  }

  private onRemoteCursor(params: RemoteCursorParams): void {
    this.state.onCursorFrom(params.clientId, params.name);
    this.cursors.update(params);
    if (this.state.following !== undefined && this.state.following === params.name) {
      const head = params.selections?.[0]?.head;
      if (head) {
        void this.reveal(params.uri, new vscode.Range(head.line, head.character, head.line, head.character));
      }
    }
    this.refreshStatus();
  }

  private async reveal(uri: string, range: vscode.Range): Promise<void> {
    let editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri);
    if (!editor) {
      try {
        editor = await vscode.window.showTextDocument(vscode.Uri.parse(uri), { preview: true });
      } catch (err) {
        this.log.appendLine(`follow: cannot open ${uri}: ${message(err)}`);
        return;
      }
    }
    editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  private onRunStarted(params: RunStartedParams): void {
    this.state.onRunStarted(params);
    this.runOutput.append(this.runFormatter.started(params));
    // preserveFocus: a run someone else started must not take the cursor
    // out of what you are typing.
    this.runOutput.show(true);
    this.refreshStatus();
  }

  private onRunOutput(params: RunOutputParams): void {
    this.runOutput.append(this.runFormatter.output(params));
  }

  private onRunInput(params: RunInputParams): void {
    this.runOutput.append(this.runFormatter.input(params));
  }

  private onRunFinished(params: RunFinishedParams): void {
    this.state.onRunFinished(params);
    this.runOutput.append(this.runFormatter.finished(params));
    this.refreshStatus();
  }

  private onSelection(e: vscode.TextEditorSelectionChangeEvent): void {
    this.sendCursor(e.textEditor);
  }

  private sendCursor(editor: vscode.TextEditor | undefined): void {
    const folder = vscode.workspace.workspaceFolders?.[0];
    if (!editor || !folder || !this.client || editor.document.uri.scheme !== 'file') {
      return;
    }
    if (!vscode.workspace.getWorkspaceFolder(editor.document.uri)) {
      return;
    }
    this.cursorThrottle.push({
      uri: editor.document.uri.toString(),
      selections: editor.selections.map((s) => ({
        anchor: { line: s.anchor.line, character: s.anchor.character },
        head: { line: s.active.line, character: s.active.character },
      })),
    });
  }

  async dispose(): Promise<void> {
    await this.leave(true);
    for (const d of this.disposables) {
      d.dispose();
    }
    this.cursors.dispose();
    this.status.dispose();
    this.log.dispose();
    this.runOutput.dispose();
    this.terminal.dispose();
  }
}

let chorus: Chorus | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const instance = new Chorus();
  chorus = instance;
  context.subscriptions.push(
    vscode.commands.registerCommand('chorus.join', (args?: JoinArgs) => instance.join(args)),
    vscode.commands.registerCommand('chorus.leave', () => instance.leave()),
    vscode.commands.registerCommand('chorus.runDocument', (args?: RunArgs) => instance.run(args)),
    vscode.commands.registerCommand('chorus.runTests', (args?: RunArgs) => instance.run(args, 'test')),
    vscode.commands.registerCommand('chorus.runRelease', (args?: RunArgs) => instance.run(args, 'release')),
    vscode.commands.registerCommand('chorus.runWithCommand', (args?: RunArgs) => instance.runWithCommand(args)),
    vscode.commands.registerCommand('chorus.stopRun', () => instance.stop()),
    vscode.commands.registerCommand('chorus.sendInput', () => instance.sendInput()),
    vscode.commands.registerCommand('chorus.shareWorkspace', () => instance.share()),
    vscode.commands.registerCommand('chorus.resyncDocument', () => instance.resync()),
    vscode.commands.registerCommand('chorus.followParticipant', (name?: string) => instance.follow(name)),
    vscode.commands.registerCommand('chorus.who', () => instance.who()),
    vscode.commands.registerCommand('chorus.openTerminal', () => instance.terminal.open()),
    vscode.commands.registerCommand('chorus.stopTerminal', () => instance.terminal.stop()),
  );
}

export async function deactivate(): Promise<void> {
  await chorus?.dispose();
  chorus = undefined;
}
