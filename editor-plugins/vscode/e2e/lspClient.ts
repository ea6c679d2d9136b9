// The second editor of the end-to-end test: a scripted LSP client that runs
// its own `chorus lsp` and behaves like an editor with a plugin (it declares
// the extensions, answers workspace/applyEdit by editing its text and
// reporting the change back as didChange). Modelled on the Rust tests'
// tests/e2e/support/{lsp,editor}.rs.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { pathToFileURL } from 'node:url';

export interface Position {
  line: number;
  character: number;
}
interface TextEdit {
  range: { start: Position; end: Position };
  newText: string;
}
interface Message {
  jsonrpc: '2.0';
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string };
}

/** utf-16 offset of an LSP position (JS strings are utf-16, as VS Code's are). */
export function offsetAt(text: string, pos: Position): number {
  let offset = 0;
  for (let line = 0; line < pos.line; line++) {
    const next = text.slice(offset).search(/\r\n|\r|\n/);
    if (next < 0) {
      return text.length;
    }
    offset += next + (text.startsWith('\r\n', offset + next) ? 2 : 1);
  }
  const rest = text.slice(offset);
  const eol = rest.search(/\r\n|\r|\n/);
  const lineLength = eol < 0 ? rest.length : eol;
  return offset + Math.min(pos.character, lineLength);
}

export function positionAt(text: string, offset: number): Position {
  const before = text.slice(0, offset).split(/\r\n|\r|\n/);
  return { line: before.length - 1, character: before[before.length - 1].length };
}

export class ScriptedEditor {
  private buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly notifications: { method: string; params: unknown }[] = [];
  private readonly listeners = new Set<() => void>();
  private exited: string | undefined;
  uri = '';
  text = '';
  version = 0;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    /** Every message both ways, one JSON per line: what a failure is read from. */
    private readonly trace: WriteStream,
  ) {
    child.stdout.on('data', (chunk: Buffer) => this.receive(chunk));
    child.on('exit', (code, signal) => {
      this.exited = `chorus lsp exited (code ${code}, signal ${signal})`;
      for (const p of this.pending.values()) {
        p.reject(new Error(this.exited));
      }
      this.pending.clear();
      this.wake();
    });
  }

  static spawn(bin: string, logPath: string, tracePath: string): ScriptedEditor {
    const child = spawn(bin, ['lsp'], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.pipe(createWriteStream(logPath));
    return new ScriptedEditor(child, createWriteStream(tracePath));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async initialize(root: string, options: Record<string, unknown>): Promise<void> {
    const rootUri = pathToFileURL(root).toString();
    await this.request('initialize', {
      processId: process.pid,
      clientInfo: { name: 'chorus-e2e-scripted-editor' },
      rootUri,
      workspaceFolders: [{ uri: rootUri, name: 'project' }],
      initializationOptions: options,
      capabilities: {
        general: { positionEncodings: ['utf-16'] },
        workspace: { applyEdit: true, workspaceEdit: { documentChanges: true } },
      },
    });
    this.notify('initialized', {});
  }

  open(path: string, text: string): void {
    this.uri = pathToFileURL(path).toString();
    this.text = text;
    this.version = 1;
    this.notify('textDocument/didOpen', {
      textDocument: { uri: this.uri, languageId: 'python', version: this.version, text },
    });
  }

  /** Types `insert` at `offset`, as one didChange, like a keystroke burst. */
  type(offset: number, insert: string): void {
    const at = positionAt(this.text, offset);
    this.text = this.text.slice(0, offset) + insert + this.text.slice(offset);
    this.version += 1;
    this.notify('textDocument/didChange', {
      textDocument: { uri: this.uri, version: this.version },
      contentChanges: [{ range: { start: at, end: at }, text: insert }],
    });
  }

  notify(method: string, params: unknown): void {
    this.send({ jsonrpc: '2.0', method, params });
  }

  request(method: string, params: unknown, timeoutMs = 10_000): Promise<unknown> {
    if (this.exited) {
      return Promise.reject(new Error(this.exited));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from chorus lsp within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  /** Waits until `check` holds, re-checking whenever a message arrives. */
  async waitFor(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
    if (check()) {
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const listener = (): void => {
        if (check()) {
          done();
          resolve();
        } else if (this.exited) {
          done();
          reject(new Error(`waiting for ${what}: ${this.exited}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for the scripted editor: ${what}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
    });
  }

  notificationsOf(method: string): unknown[] {
    return this.notifications.filter((n) => n.method === method).map((n) => n.params);
  }

  async shutdown(): Promise<void> {
    if (this.exited) {
      return;
    }
    try {
      await this.request('shutdown', null, 3000);
      this.notify('exit', null);
    } catch {
      // Killed below either way.
    }
    this.kill();
  }

  kill(): void {
    if (!this.exited) {
      this.child.kill('SIGKILL');
    }
  }

  private send(message: Message): void {
    this.trace.write(`${JSON.stringify({ at: Date.now(), out: message })}\n`);
    const body = Buffer.from(JSON.stringify(message), 'utf8');
    this.child.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
    this.child.stdin.write(body);
  }

  private wake(): void {
    for (const listener of [...this.listeners]) {
      listener();
    }
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const headerEnd = this.buffer.indexOf('\r\n\r\n');
      if (headerEnd < 0) {
        return;
      }
      const header = this.buffer.subarray(0, headerEnd).toString('ascii');
      const match = /Content-Length: (\d+)/i.exec(header);
      if (!match) {
        throw new Error(`chorus lsp wrote something that is not LSP on stdout: ${header}`);
      }
      const length = Number(match[1]);
      if (this.buffer.length < headerEnd + 4 + length) {
        return;
      }
      const body = this.buffer.subarray(headerEnd + 4, headerEnd + 4 + length).toString('utf8');
      this.buffer = this.buffer.subarray(headerEnd + 4 + length);
      this.trace.write(`${JSON.stringify({ at: Date.now(), in: JSON.parse(body) })}\n`);
      this.dispatch(JSON.parse(body) as Message);
      this.wake();
    }
  }

  private dispatch(message: Message): void {
    if (message.method !== undefined && message.id !== undefined) {
      this.answer(message);
    } else if (message.method !== undefined) {
      this.notifications.push({ method: message.method, params: message.params });
    } else if (typeof message.id === 'number') {
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) {
        waiter?.reject(new Error(`chorus lsp answered an error: ${message.error.message}`));
      } else {
        waiter?.resolve(message.result);
      }
    }
  }

  /** Server → client requests: applyEdit is applied, the rest answered null. */
  private answer(message: Message): void {
    if (message.method !== 'workspace/applyEdit') {
      this.send({ jsonrpc: '2.0', id: message.id, result: null });
      return;
    }
    const params = message.params as {
      edit: { documentChanges?: { textDocument: { uri: string; version: number | null }; edits: TextEdit[] }[] };
    };
    let applied = true;
    for (const change of params.edit.documentChanges ?? []) {
      if (change.textDocument.uri !== this.uri) {
        applied = false;
        continue;
      }
      // As VS Code does: an edit made for another version is refused.
      if (change.textDocument.version !== null && change.textDocument.version !== this.version) {
        applied = false;
        continue;
      }
      // Applied last-first so each range still means the original text, and
      // reported in that same order, which keeps every range valid in turn.
      const edits = [...change.edits].sort(
        (a, b) => offsetAt(this.text, b.range.start) - offsetAt(this.text, a.range.start),
      );
      const contentChanges = [];
      for (const edit of edits) {
        const start = offsetAt(this.text, edit.range.start);
        const end = offsetAt(this.text, edit.range.end);
        contentChanges.push({ range: edit.range, text: edit.newText });
        this.text = this.text.slice(0, start) + edit.newText + this.text.slice(end);
      }
      this.version += 1;
      // Editors report an applied edit as a didChange before answering.
      this.notify('textDocument/didChange', { textDocument: { uri: this.uri, version: this.version }, contentChanges });
    }
    this.send({ jsonrpc: '2.0', id: message.id, result: { applied } });
  }
}
