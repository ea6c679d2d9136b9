// The session's shared terminal in VS Code's terminal panel: a view is a
// Pseudoterminal fed by the proxy's chorus/terminal* notifications, whose
// keystrokes and size go back as chorus.terminal.* commands. Closing the
// view leaves the terminal running for the others; only Stop ends it. What
// needs no editor (seq order and replays, sizes, request order) is in
// terminalFeed.ts.

import * as vscode from 'vscode';
import { ExecuteCommandRequest, State, type LanguageClient } from 'vscode-languageclient/node';

import {
  Methods,
  ServerCommands,
  type TerminalArguments,
  type TerminalEndedParams,
  type TerminalInputArguments,
  type TerminalOutputParams,
  type TerminalResizeArguments,
  type TerminalResizedParams,
  type TerminalSize,
  type TerminalStartedParams,
  type TerminalStopArguments,
} from './protocol';
import { RequestQueue, SizeFollower, TerminalFeed, type TerminalRequest } from './terminalFeed';

export const TERMINAL_NAME = 'Chorus: shared terminal';

/** What VS Code's own terminals start with, for a view it has not laid out yet. */
const DEFAULT_SIZE: TerminalSize = { cols: 80, rows: 24 };

/** What the shared terminal needs from the extension. */
export interface TerminalHost {
  /** The session's client, running, or undefined after telling the user why not. */
  runningClient(): LanguageClient | undefined;
  /** The session's client, whatever its state: notifications from an older one are stale. */
  currentClient(): LanguageClient | undefined;
  /** Our id at the hub, to tell our own terminal from someone else's. */
  clientId(): number | undefined;
  log(line: string): void;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function toRequest(request: TerminalRequest): { command: string; arguments: unknown[] } {
  switch (request.kind) {
    case 'open': {
      const args: TerminalArguments = [request.size];
      return { command: ServerCommands.terminal, arguments: args };
    }
    case 'input': {
      const args: TerminalInputArguments = [{ data: request.data }];
      return { command: ServerCommands.terminalInput, arguments: args };
    }
    case 'resize': {
      const args: TerminalResizeArguments = [request.size];
      return { command: ServerCommands.terminalResize, arguments: args };
    }
  }
}

/** One tab in the terminal panel showing the shared terminal. */
class TerminalView implements vscode.Pseudoterminal {
  readonly feed = new TerminalFeed();
  private readonly sizes = new SizeFollower();
  private readonly requests: RequestQueue;
  private readonly written = new vscode.EventEmitter<string>();
  private readonly forcedSize = new vscode.EventEmitter<vscode.TerminalDimensions | undefined>();
  readonly onDidWrite = this.written.event;
  readonly onDidOverrideDimensions = this.forcedSize.event;
  terminal: vscode.Terminal | undefined;
  /** The user closed the tab. */
  closed = false;
  /** A request failed and the user was told; the next failures only go to the log. */
  private failing = false;

  constructor(
    readonly client: LanguageClient,
    private readonly host: TerminalHost,
  ) {
    this.requests = new RequestQueue((request) => this.send(request));
  }

  /** Whether it still shows the session's terminal as it happens. */
  get live(): boolean {
    return !this.closed && !this.feed.ended;
  }

  open(dimensions: vscode.TerminalDimensions | undefined): void {
    const size = dimensions ? { cols: dimensions.columns, rows: dimensions.rows } : DEFAULT_SIZE;
    this.sizes.opened(size);
    this.requests.push({ kind: 'open', size });
  }

  close(): void {
    this.closed = true;
    this.requests.dispose();
  }

  handleInput(data: string): void {
    if (!this.live) {
      return;
    }
    // The terminal takes this view's size with these keystrokes.
    this.force(this.sizes.release());
    this.requests.push({ kind: 'input', data });
  }

  setDimensions(dimensions: vscode.TerminalDimensions): void {
    const size = this.sizes.viewSized({ cols: dimensions.columns, rows: dimensions.rows });
    if (size && this.live) {
      this.requests.push({ kind: 'resize', size });
    }
  }

  started(params: TerminalStartedParams): void {
    this.write(this.feed.started(params));
    if (params.terminalId === this.feed.terminalId) {
      this.force(this.sizes.terminalSized(params));
    }
  }

  output(params: TerminalOutputParams): void {
    this.write(this.feed.output(params));
  }

  resized(params: TerminalResizedParams): void {
    if (this.live && params.terminalId === this.feed.terminalId) {
      this.force(this.sizes.terminalSized(params));
    }
  }

  ended(params: TerminalEndedParams): void {
    this.write(this.feed.end(params));
    if (this.feed.ended) {
      this.finish();
    }
  }

  /** Ends the view without a terminalEnded: the session was left. */
  stop(reason: string): void {
    this.write(this.feed.close(reason));
    this.finish();
  }

  private finish(): void {
    this.requests.dispose();
    this.force(this.sizes.release());
  }

  private write(text: string): void {
    if (text !== '' && !this.closed) {
      this.written.fire(text);
    }
  }

  /** Sets (a size) or lifts (null) the size VS Code shows the view at. */
  private force(size: TerminalSize | null | undefined): void {
    if (size !== undefined) {
      this.forcedSize.fire(size === null ? undefined : { columns: size.cols, rows: size.rows });
    }
  }

  private async send(request: TerminalRequest): Promise<void> {
    const params = toRequest(request);
    try {
      if (this.client.state !== State.Running) {
        throw new Error('not in a session');
      }
      await this.client.sendRequest(ExecuteCommandRequest.type, params);
      this.failing = false;
    } catch (err) {
      this.host.log(`${params.command}: ${message(err)}`);
      if (request.kind === 'open' && this.feed.terminalId === undefined) {
        this.stop(`could not open it: ${message(err)}`);
      } else if (!this.failing) {
        // Once per run of failures: a message per keystroke would bury the window.
        this.failing = true;
        void vscode.window.showWarningMessage(`Chorus: ${params.command}: ${message(err)}`);
      }
    }
  }
}

export class SharedTerminal implements vscode.Disposable {
  /** The latest view; an ended one stays in the panel for its last words. */
  private view: TerminalView | undefined;
  /** Terminals someone else opened that the user was already offered. */
  private readonly offered = new Set<number>();

  constructor(private readonly host: TerminalHost) {}

  /** Routes `client`'s terminal notifications; call for each new client. */
  listen(client: LanguageClient): void {
    const mine = (): boolean => this.host.currentClient() === client;
    const view = (): TerminalView | undefined =>
      mine() && this.view?.client === client && this.view.live ? this.view : undefined;
    client.onNotification(Methods.terminalStarted, (params: TerminalStartedParams) => {
      if (mine()) {
        this.onStarted(view(), params);
      }
    });
    // Output with no view open is dropped: opening one brings the replay.
    client.onNotification(Methods.terminalOutput, (params: TerminalOutputParams) => view()?.output(params));
    client.onNotification(Methods.terminalResized, (params: TerminalResizedParams) => view()?.resized(params));
    client.onNotification(Methods.terminalEnded, (params: TerminalEndedParams) => view()?.ended(params));
  }

  /** "Chorus: Open Shared Terminal": shows the view, or opens or joins the session's terminal in a new one. */
  open(): void {
    const client = this.host.runningClient();
    if (!client) {
      return;
    }
    if (this.view?.client === client && this.view.live) {
      this.view.terminal?.show();
      return;
    }
    const view = new TerminalView(client, this.host);
    this.view = view;
    view.terminal = vscode.window.createTerminal({ name: TERMINAL_NAME, pty: view });
    view.terminal.show();
  }

  /** "Chorus: Stop Shared Terminal": ends it for everyone. */
  async stop(): Promise<void> {
    const client = this.host.runningClient();
    if (!client) {
      return;
    }
    try {
      const args: TerminalStopArguments = [];
      await client.sendRequest(ExecuteCommandRequest.type, { command: ServerCommands.terminalStop, arguments: args });
    } catch (err) {
      void vscode.window.showErrorMessage(`Chorus: ${ServerCommands.terminalStop}: ${message(err)}`);
    }
  }

  /** The session is left: the view can no longer show it. */
  leave(): void {
    if (this.view?.live) {
      this.view.stop('you left the session');
    }
    this.offered.clear();
  }

  private onStarted(view: TerminalView | undefined, params: TerminalStartedParams): void {
    if (view) {
      view.started(params);
      return;
    }
    if (params.clientId === this.host.clientId() || this.offered.has(params.terminalId)) {
      return;
    }
    this.offered.add(params.terminalId);
    void vscode.window
      .showInformationMessage(`Chorus: ${params.name} opened the shared terminal`, 'Open')
      .then((choice) => {
        if (choice === 'Open') {
          this.open();
        }
      });
  }

  dispose(): void {
    this.view?.terminal?.dispose();
    this.view = undefined;
  }
}
