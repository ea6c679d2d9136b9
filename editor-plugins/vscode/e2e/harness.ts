// What every end-to-end scenario shares: the binaries from the environment,
// the work and artifacts directories, the processes started (ended on every
// exit path), a hub per scenario, scripted editors, and VS Code windows
// (code-server with the .vsix, one Chromium page each) with the few UI
// gestures the scenarios need.
//
// Environment: CHORUS_BIN (chorus binary), CODE_SERVER (code-server
// executable), CHORUS_VSIX (the packaged extension), CHROMIUM (default
// /usr/bin/chromium), CHORUS_E2E_ARTIFACTS (where logs and screenshots go;
// default a fresh temporary directory, kept on failure).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

import { ScriptedEditor } from './lspClient';

export const STEP_TIMEOUT_MS = 60_000;

function env(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

export const chorusBin = resolve(env('CHORUS_BIN'));
const codeServer = resolve(env('CODE_SERVER'));
const vsix = resolve(env('CHORUS_VSIX'));
const chromiumPath = env('CHROMIUM', '/usr/bin/chromium');
export const work = mkdtempSync(join(tmpdir(), 'chorus-vscode-e2e-'));
export const artifacts = process.env.CHORUS_E2E_ARTIFACTS
  ? resolve(process.env.CHORUS_E2E_ARTIFACTS)
  : join(work, 'artifacts');
mkdirSync(artifacts, { recursive: true });

export function checkInputs(): void {
  for (const [what, path] of [
    ['CHORUS_BIN', chorusBin],
    ['CODE_SERVER', codeServer],
    ['CHORUS_VSIX', vsix],
    ['CHROMIUM', chromiumPath],
  ]) {
    if (!existsSync(path)) {
      throw new Error(`${what}: ${path} does not exist`);
    }
  }
}

export function step(text: string): void {
  console.log(`[e2e ${new Date().toISOString().slice(11, 19)}] ${text}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A single-quoted shell word. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

// Every process we start, so that any exit path can end them. They are
// started as process-group leaders: code-server's extension host and the
// chorus lsp it spawns die with their group.
const groups: ChildProcess[] = [];
const scriptedEditors: ScriptedEditor[] = [];
let browser: Browser | undefined;

export function startGroup(
  logPath: string,
  command: string,
  args: string[],
  extraEnv: Record<string, string> = {},
): ChildProcess {
  const log = createWriteStream(logPath);
  const child = spawn(command, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...extraEnv },
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  groups.push(child);
  return child;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** Ends one group: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopGroup(child: ChildProcess, graceMs = 3000): Promise<void> {
  signalGroup(child, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    await sleep(100);
  }
  signalGroup(child, 'SIGKILL');
}

export async function cleanup(): Promise<void> {
  for (const editor of scriptedEditors) {
    editor.kill();
  }
  if (browser) {
    await Promise.race([browser.close().catch(() => undefined), sleep(5000)]);
  }
  for (const child of groups) {
    signalGroup(child, 'SIGTERM');
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && groups.some((c) => c.exitCode === null && c.signalCode === null)) {
    await sleep(100);
  }
  for (const child of groups) {
    signalGroup(child, 'SIGKILL');
  }
}

/** Last resort for paths that skip cleanup(): synchronous. */
export function killEverything(): void {
  for (const editor of scriptedEditors) {
    editor.kill();
  }
  for (const child of groups) {
    signalGroup(child, 'SIGKILL');
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function httpOk(url: string): Promise<boolean> {
  return new Promise((r) => {
    const req = get(url, (res) => {
      res.resume();
      r(res.statusCode !== undefined && res.statusCode < 500);
    });
    req.on('error', () => r(false));
    req.setTimeout(2000, () => {
      req.destroy();
      r(false);
    });
  });
}

/** Polls `check` until it returns a truthy value or the time is up. */
export async function until<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined | false> | T | undefined | false,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) {
        return value;
      }
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await sleep(250);
  }
}

export function assertEqual<T>(actual: T, expected: T, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** A hub of one scenario, with the session it created. */
export interface Hub {
  url: string;
  session: string;
  /** The session's join token ('' on hubs that issue none). */
  token: string;
  /** The scenario's artifacts directory; the hub's data is in its hub-data/. */
  dir: string;
}

/**
 * Creates the session and returns its join token, on hubs that issue
 * tokens (`chorus session`); older hubs let anyone join, and get ''. The
 * token then goes through the Join prompt, as a user would paste it.
 */
function createSession(hubData: string, session: string): string {
  if (spawnSync(chorusBin, ['session', '--help'], { stdio: 'ignore' }).status !== 0) {
    return '';
  }
  const made = spawnSync(chorusBin, ['session', 'create', session, '--data', hubData], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const token = /^join (\S+)$/m.exec(made.stdout ?? '')?.[1];
  if (made.status !== 0 || !token) {
    throw new Error(`chorus session create failed (status ${made.status}): ${made.stdout}${made.stderr}`);
  }
  return token;
}

/**
 * Starts a hub for one scenario, its data (SQLite, holding the op log: who
 * sent which op) among the scenario's artifacts.
 */
export async function startHub(scenario: string, session: string): Promise<Hub> {
  const dir = join(artifacts, scenario);
  const hubData = join(dir, 'hub-data');
  rmSync(hubData, { recursive: true, force: true });
  mkdirSync(hubData, { recursive: true });
  const token = createSession(hubData, session);
  const port = await freePort();
  startGroup(join(dir, 'hub.log'), chorusBin, ['hub', '--listen', `127.0.0.1:${port}`, '--data', hubData]);
  await until('the hub to answer /healthz', STEP_TIMEOUT_MS, () => httpOk(`http://127.0.0.1:${port}/healthz`));
  return { url: `ws://127.0.0.1:${port}/`, session, token, dir };
}

/**
 * A scripted editor (lspClient.ts) joined to `hub`'s session with `root`
 * as its workspace folder; its proxy's log and its traffic go to the
 * scenario's artifacts as `<label>-lsp.log` and `<label>-trace.jsonl`.
 */
export async function scriptedEditor(hub: Hub, label: string, root: string, name: string): Promise<ScriptedEditor> {
  const editor = ScriptedEditor.spawn(
    chorusBin,
    join(hub.dir, `${label}-lsp.log`),
    join(hub.dir, `${label}-trace.jsonl`),
  );
  scriptedEditors.push(editor);
  await editor.initialize(root, {
    hub: hub.url,
    session: hub.session,
    name,
    extensions: true,
    ...(hub.token ? { token: hub.token } : {}),
  });
  return editor;
}

/** Waits until the scripted editor's proxy has joined its open document. */
export async function scriptedJoined(editor: ScriptedEditor): Promise<void> {
  await until('the scripted editor to join its document', STEP_TIMEOUT_MS, async () => {
    const state = (await editor.request('chorus/documentState', { uri: editor.uri })) as {
      joined?: boolean;
      synchronized?: boolean;
    } | null;
    return state?.joined && state.synchronized;
  });
}

async function theBrowser(): Promise<Browser> {
  browser ??= await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: STEP_TIMEOUT_MS,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return browser;
}

let extensionsDir: Promise<string> | undefined;

/** Installs the .vsix once, into an extensions directory every window shares. */
function installedExtensions(): Promise<string> {
  extensionsDir ??= (async () => {
    step('installing the .vsix into code-server');
    const dir = join(work, 'code-extensions');
    const userData = join(work, 'install-user-data');
    const install = spawnSync(
      codeServer,
      ['--install-extension', vsix, '--extensions-dir', dir, '--user-data-dir', userData],
      { encoding: 'utf8', timeout: 120_000 },
    );
    writeFileSync(join(artifacts, 'install-extension.log'), `${install.stdout}\n${install.stderr}`);
    if (install.status !== 0) {
      throw new Error(`code-server --install-extension failed (status ${install.status}): ${install.stderr}`);
    }
    return dir;
  })();
  return extensionsDir;
}

export const ACTIVE_EDITOR = '.editor-group-container.active .editor-instance .monaco-editor';
export const OUTPUT_EDITOR = '.output-view .monaco-editor';

/** Settings every window gets: typing must produce exactly the keys typed. */
const BASE_SETTINGS = {
  'editor.autoClosingBrackets': 'never',
  'editor.autoClosingQuotes': 'never',
  'editor.autoIndent': 'none',
  'editor.quickSuggestions': { other: false, comments: false, strings: false },
  'editor.suggestOnTriggerCharacters': false,
  'editor.acceptSuggestionOnEnter': 'off',
  'editor.wordBasedSuggestions': 'off',
  'editor.parameterHints.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'update.mode': 'none',
  'git.enabled': false,
};

export interface WindowOptions {
  /** Names its files among the artifacts: `<label>-lsp-in.txt`, `<label>.png`… */
  label: string;
  hub: Hub;
  folder: string;
  /** chorus.name */
  userName: string;
  /** More user settings (chorus.syncFiles…). */
  settings?: Record<string, unknown>;
  /**
   * The page's height in pixels: renderedText reads only the lines in view,
   * so a scenario whose text grows long needs a taller page.
   */
  height?: number;
}

/**
 * One VS Code: a code-server of its own (user data apart, the extensions
 * shared) opened on `folder` in a page of a Chromium context of its own.
 */
export class VsCodeWindow {
  private constructor(
    readonly label: string,
    readonly page: Page,
    private readonly context: BrowserContext,
    private readonly server: ChildProcess,
    /** What VS Code sent its chorus lsp, every start appended (LSP framing). */
    readonly lspIn: string,
    /** What its chorus lsp answered. */
    readonly lspOut: string,
    /** The proxy's stderr. */
    readonly proxyLog: string,
    private readonly dir: string,
  ) {}

  static async open(options: WindowOptions): Promise<VsCodeWindow> {
    const { label, hub, folder } = options;
    const extensions = await installedExtensions();
    // VS Code's proxy logs into an Output channel; a wrapper also keeps its
    // stderr and both directions of its LSP traffic in the artifacts, where
    // a failure can be read.
    const lspIn = join(hub.dir, `${label}-lsp-in.txt`);
    const lspOut = join(hub.dir, `${label}-lsp-out.txt`);
    const proxyLog = join(hub.dir, `${label}-lsp.log`);
    const wrapper = join(work, `chorus-for-${hub.session}-${label}`);
    writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        `tee -a ${shellQuote(lspIn)} | ${shellQuote(chorusBin)} "$@" 2>>${shellQuote(proxyLog)} | tee -a ${shellQuote(lspOut)}`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const userData = join(work, `code-user-${hub.session}-${label}`);
    mkdirSync(join(userData, 'User'), { recursive: true });
    writeFileSync(
      join(userData, 'User', 'settings.json'),
      JSON.stringify(
        {
          'chorus.hub': hub.url,
          'chorus.name': options.userName,
          'chorus.path': wrapper,
          ...BASE_SETTINGS,
          ...options.settings,
        },
        null,
        2,
      ),
    );

    step(`${label}: starting code-server on ${folder}`);
    const port = await freePort();
    const server = startGroup(join(hub.dir, `${label}-code-server.log`), codeServer, [
      '--auth',
      'none',
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--user-data-dir',
      userData,
      '--extensions-dir',
      extensions,
      folder,
    ]);
    await until('code-server to answer /healthz', STEP_TIMEOUT_MS, () => httpOk(`http://127.0.0.1:${port}/healthz`));
    // Tall, so that every line of the concurrent scenario's text is on
    // screen: renderedText reads the DOM, which holds only lines in view.
    const context = await (
      await theBrowser()
    ).newContext({ viewport: { width: 1400, height: options.height ?? 1300 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const window = new VsCodeWindow(label, page, context, server, lspIn, lspOut, proxyLog, hub.dir);
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}`);
    await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 120_000 });
    // The extension activates on startup and shows its status item.
    await until(`${label}: the Chorus status bar item (extension activated)`, 120_000, async () =>
      (await window.statusBarText()).includes('Chorus'),
    );
    return window;
  }

  async close(): Promise<void> {
    await this.context.close().catch(() => undefined);
    await stopGroup(this.server);
  }

  async screenshot(name: string): Promise<void> {
    await this.page.screenshot({ path: join(this.dir, `${this.label}-${name}.png`) }).catch(() => undefined);
  }

  async runCommand(title: string): Promise<void> {
    const page = this.page;
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input.input');
    await input.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    await input.fill(`>${title}`);
    const rows = page.locator('.quick-input-list .monaco-list-row', { hasText: title });
    await rows.first().waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    // "Chorus: Run" also matches "Chorus: Run Tests" and the like, which
    // the palette may rank first: the row whose label is the title wins,
    // else the first (titles like "Go to File" have a "..." after them).
    const labels = await rows.locator('.label-name').allInnerTexts();
    const exact = labels.findIndex((label) => label.trim() === title);
    await rows.nth(Math.max(exact, 0)).click();
  }

  /** Answers an input box whose prompt contains `prompt`. */
  async answerPrompt(prompt: string, text: string): Promise<void> {
    await this.page
      .locator('.quick-input-widget', { hasText: prompt })
      .waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    await this.page.locator('.quick-input-widget input.input').fill(text);
    await this.page.keyboard.press('Enter');
  }

  /** Chorus: Join Session, answering its prompts as a user would. */
  async join(hub: Hub): Promise<void> {
    await this.runCommand('Chorus: Join Session');
    await this.answerPrompt('Session to join', hub.session);
    await this.answerPrompt('Join token', hub.token);
  }

  async statusBarText(): Promise<string> {
    return this.page.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('.statusbar-item')].map((e) => e.innerText).join(' | '),
    );
  }

  async waitStatus(what: string | RegExp, timeoutMs = STEP_TIMEOUT_MS): Promise<void> {
    await until(`${this.label}: the status bar to show ${String(what)}`, timeoutMs, async () => {
      const text = await this.statusBarText();
      return typeof what === 'string' ? text.includes(what) : what.test(text);
    });
  }

  /** The text of an editor as rendered, line by line in screen order. */
  async renderedText(container = ACTIVE_EDITOR): Promise<string> {
    return this.page.evaluate((selector) => {
      const root = document.querySelector(selector);
      if (!root) {
        return '';
      }
      const lines = [...root.querySelectorAll<HTMLElement>('.view-lines .view-line')];
      lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
      return lines.map((l) => (l.textContent ?? '').replace(/\u00a0/g, ' ')).join('\n');
    }, container);
  }

  /**
   * The screen of the terminal shown in the panel, row by row, trailing
   * blanks trimmed. Needs `terminal.integrated.gpuAcceleration: "off"`:
   * xterm's WebGL renderer draws on a canvas, its DOM renderer draws rows
   * of spans. Only the rows in view are there.
   */
  async terminalText(): Promise<string> {
    return this.page.evaluate(() => {
      const rows = document.querySelector('.terminal-wrapper.active .xterm-rows');
      return [...(rows?.children ?? [])]
        .map((row) => (row.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd())
        .join('\n');
    });
  }

  /** Puts the keyboard in the terminal shown in the panel. */
  async focusTerminal(): Promise<void> {
    await this.page.locator('.terminal-wrapper.active .xterm-screen').click();
  }

  /** Opens a file of the folder through Go to File. */
  async openFile(name: string): Promise<void> {
    await this.runCommand('Go to File');
    await this.page.keyboard.type(name);
    await this.page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor();
    await this.page.keyboard.press('Enter');
  }

  /** The Output panel showing `channel` (picked by its exact name). */
  async showOutputChannel(channel: string): Promise<void> {
    await this.runCommand('Output: Show Output Channels');
    const input = this.page.locator('.quick-input-widget input.input');
    await input.fill(channel);
    await this.page
      .locator('.quick-input-list .monaco-list-row .label-name', { hasText: new RegExp(`^${channel}$`) })
      .first()
      .click();
  }
}
