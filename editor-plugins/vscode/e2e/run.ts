// End-to-end test of the extension in real VS Code: a hub, code-server with
// the packaged .vsix, headless Chromium driving it through playwright-core,
// and a scripted second editor. Checks that text typed in VS Code reaches
// the other editor and back, that presence and cursors cross, and that a
// shared run streams into the "Chorus Run" Output channel.
//
// Environment: CHORUS_BIN (chorus binary), CODE_SERVER (code-server
// executable), CHORUS_VSIX (the packaged extension), CHROMIUM (default
// /usr/bin/chromium), CHORUS_E2E_ARTIFACTS (where logs and a failure
// screenshot go; default a fresh temporary directory, kept on failure).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { chromium, type Browser, type Page } from 'playwright-core';

import { ScriptedEditor, type Position } from './lspClient';

const SESSION = 'e2e';
const VS_NAME = 'Vee';
const BOT_NAME = 'Bot';
const SEED = "print('hello from the seed')\n";
// Beyond ASCII on purpose: VS Code counts columns in utf-16 units, the
// proxy in characters, and an astral emoji is two of the first, one of
// the second.
const VS_TEXT = 'typed in vscode: é 🎉 中文';
const VS_LINE = `print('${VS_TEXT}')`;
const BOT_LINE = "print('typed by bot')";
/** Whole-test limit, so that a wedged step can never hang CI. */
const TEST_TIMEOUT_MS = 6 * 60_000;
const STEP_TIMEOUT_MS = 60_000;

function env(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const chorusBin = resolve(env('CHORUS_BIN'));
const codeServer = resolve(env('CODE_SERVER'));
const vsix = resolve(env('CHORUS_VSIX'));
const chromiumPath = env('CHROMIUM', '/usr/bin/chromium');
const work = mkdtempSync(join(tmpdir(), 'chorus-vscode-e2e-'));
const artifacts = process.env.CHORUS_E2E_ARTIFACTS
  ? resolve(process.env.CHORUS_E2E_ARTIFACTS)
  : join(work, 'artifacts');
mkdirSync(artifacts, { recursive: true });

function step(text: string): void {
  console.log(`[e2e ${new Date().toISOString().slice(11, 19)}] ${text}`);
}

// Every process we start, so that any exit path can end them. They are
// started as process-group leaders: code-server's extension host and the
// chorus lsp it spawns die with their group.
const groups: ChildProcess[] = [];
let browser: Browser | undefined;
let bot: ScriptedEditor | undefined;

function startGroup(
  name: string,
  command: string,
  args: string[],
  extraEnv: Record<string, string> = {},
): ChildProcess {
  const log = createWriteStream(join(artifacts, `${name}.log`));
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

function killGroups(signal: NodeJS.Signals): void {
  for (const child of groups) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
    }
  }
}

async function cleanup(): Promise<void> {
  bot?.kill();
  if (browser) {
    await Promise.race([browser.close().catch(() => undefined), sleep(5000)]);
  }
  killGroups('SIGTERM');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && groups.some((c) => c.exitCode === null && c.signalCode === null)) {
    await sleep(100);
  }
  killGroups('SIGKILL');
}

// Last resort for paths that skip cleanup(): synchronous, so it runs on exit.
process.on('exit', () => {
  bot?.kill();
  killGroups('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killGroups('SIGKILL');
    process.exit(130);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function freePort(): Promise<number> {
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
async function until<T>(
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

function assertEqual<T>(actual: T, expected: T, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** The text of an editor as rendered, line by line in screen order. */
async function renderedText(page: Page, container: string): Promise<string> {
  return page.evaluate((selector) => {
    const root = document.querySelector(selector);
    if (!root) {
      return '';
    }
    const lines = [...root.querySelectorAll<HTMLElement>('.view-lines .view-line')];
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines.map((l) => (l.textContent ?? '').replace(/\u00a0/g, ' ')).join('\n');
  }, container);
}

const ACTIVE_EDITOR = '.editor-group-container.active .editor-instance .monaco-editor';
const OUTPUT_EDITOR = '.output-view .monaco-editor';

async function runCommand(page: Page, title: string): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input.input');
  await input.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await input.fill(`>${title}`);
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
  await row.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await page.keyboard.press('Enter');
}

/** Answers an input box whose prompt contains `prompt`. */
async function answerPrompt(page: Page, prompt: string, text: string): Promise<void> {
  await page
    .locator('.quick-input-widget', { hasText: prompt })
    .waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  const input = page.locator('.quick-input-widget input.input');
  await input.fill(text);
  await page.keyboard.press('Enter');
}

async function statusBarText(page: Page): Promise<string> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>('.statusbar-item')].map((e) => e.innerText).join(' | '),
  );
}

/**
 * Creates the session and returns its join token, on hubs that issue
 * tokens (`chorus session`); older hubs let anyone join, and get ''. The
 * token then goes through the Join prompt, as a user would paste it.
 */
function createSession(hubData: string): string {
  if (spawnSync(chorusBin, ['session', '--help'], { stdio: 'ignore' }).status !== 0) {
    return '';
  }
  const made = spawnSync(chorusBin, ['session', 'create', SESSION, '--data', hubData], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const token = /^join (\S+)$/m.exec(made.stdout ?? '')?.[1];
  if (made.status !== 0 || !token) {
    throw new Error(`chorus session create failed (status ${made.status}): ${made.stdout}${made.stderr}`);
  }
  return token;
}

async function main(): Promise<void> {
  // Detailed proxy logs in the artifacts; every chorus process inherits it.
  process.env.CHORUS_LOG ??= 'info,chorus_lsp=debug';
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
  step(`work directory ${work}`);

  const project = join(work, 'project');
  mkdirSync(project);
  const mainPy = join(project, 'main.py');
  writeFileSync(mainPy, SEED);

  step('starting the hub');
  // Its own data directory, so that nothing lands in the user's; among the
  // artifacts because its op log tells who sent what.
  const hubData = join(artifacts, 'hub-data');
  rmSync(hubData, { recursive: true, force: true });
  mkdirSync(hubData);
  const token = createSession(hubData);
  const hubPort = await freePort();
  const hub = `ws://127.0.0.1:${hubPort}/`;
  startGroup('hub', chorusBin, ['hub', '--listen', `127.0.0.1:${hubPort}`, '--data', hubData]);
  await until('the hub to answer /healthz', STEP_TIMEOUT_MS, () => httpOk(`http://127.0.0.1:${hubPort}/healthz`));

  step('starting the scripted editor, which seeds main.py');
  bot = ScriptedEditor.spawn(chorusBin, join(artifacts, 'bot-lsp.log'), join(artifacts, 'bot-trace.jsonl'));
  await bot.initialize(project, {
    hub,
    session: SESSION,
    name: BOT_NAME,
    extensions: true,
    ...(token ? { token } : {}),
  });
  bot.open(mainPy, SEED);
  const scripted = bot;
  await until('the scripted editor to join main.py', STEP_TIMEOUT_MS, async () => {
    const state = (await scripted.request('chorus/documentState', { uri: scripted.uri })) as {
      joined?: boolean;
      synchronized?: boolean;
    } | null;
    return state?.joined && state.synchronized;
  });

  // VS Code's proxy logs into an Output channel; a wrapper also keeps its
  // stderr and both directions of its LSP traffic in the artifacts, where a
  // failure can be read.
  const proxyWrapper = join(work, 'chorus-for-vscode');
  const q = (path: string): string => `'${path.replace(/'/g, "'\\''")}'`;
  writeFileSync(
    proxyWrapper,
    [
      '#!/bin/sh',
      `tee -a ${q(join(artifacts, 'vscode-lsp-in.txt'))} | ${q(chorusBin)} "$@" 2>>${q(join(artifacts, 'vscode-lsp.log'))} | tee -a ${q(join(artifacts, 'vscode-lsp-out.txt'))}`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );

  step('installing the .vsix into code-server');
  const userData = join(work, 'code-user');
  const extensions = join(work, 'code-extensions');
  mkdirSync(join(userData, 'User'), { recursive: true });
  const install = spawnSync(
    codeServer,
    ['--install-extension', vsix, '--extensions-dir', extensions, '--user-data-dir', userData],
    { encoding: 'utf8', timeout: 120_000 },
  );
  writeFileSync(join(artifacts, 'install-extension.log'), `${install.stdout}\n${install.stderr}`);
  if (install.status !== 0) {
    throw new Error(`code-server --install-extension failed (status ${install.status}): ${install.stderr}`);
  }
  writeFileSync(
    join(userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'chorus.hub': hub,
        'chorus.name': VS_NAME,
        'chorus.path': proxyWrapper,
        // Typing must produce exactly the keys typed.
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
      },
      null,
      2,
    ),
  );

  step('starting code-server');
  const codePort = await freePort();
  startGroup('code-server', codeServer, [
    '--auth',
    'none',
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--bind-addr',
    `127.0.0.1:${codePort}`,
    '--user-data-dir',
    userData,
    '--extensions-dir',
    extensions,
    project,
  ]);
  await until('code-server to answer /healthz', STEP_TIMEOUT_MS, () => httpOk(`http://127.0.0.1:${codePort}/healthz`));

  step('starting Chromium');
  browser = await chromium.launch({
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
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  try {
    await drive(page, `http://127.0.0.1:${codePort}/`, hub, token);
  } catch (err) {
    await page.screenshot({ path: join(artifacts, 'failure.png') }).catch(() => undefined);
    const status = await statusBarText(page).catch(() => '?');
    writeFileSync(join(artifacts, 'scripted-notifications.json'), JSON.stringify(bot?.notifications ?? [], null, 1));
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n  status bar: ${status}`);
  }
  await page.screenshot({ path: join(artifacts, 'final.png') }).catch(() => undefined);
}

function leftCount(scripted: ScriptedEditor): number {
  return scripted.notificationsOf('chorus/presence').filter((p) => (p as { event?: string }).event === 'left').length;
}

function joinCount(scripted: ScriptedEditor): number {
  return scripted
    .notificationsOf('chorus/presence')
    .filter((p) => (p as { participant?: { name?: string } }).participant?.name === VS_NAME).length;
}

/**
 * Both editors typing at once, in different places so that the merged text
 * is known in advance. This is where VS Code applies an edit late, after a
 * keystroke of its own made it stale (the proxy once took that echo for new
 * typing and duplicated it; lsp-proxy/src/sync.rs now expects it).
 * CHORUS_E2E_CONCURRENT=0 skips it.
 */
async function typeAtOnce(page: Page, scripted: ScriptedEditor, expected: string): Promise<void> {
  step('both editors typing at once');
  const vsBurst = '# from vscode 0123456789';
  const botBurst = 'b'.repeat(12);
  scripted.type(0, '#\n');
  await until('the first line to reach VS Code', STEP_TIMEOUT_MS, async () =>
    (await renderedText(page, ACTIVE_EDITOR)).startsWith('#\n'),
  );
  await page.locator(`${ACTIVE_EDITOR} .view-lines`).click();
  await page.keyboard.press('Control+End');
  const botTyping = (async () => {
    for (let i = 0; i < botBurst.length; i++) {
      scripted.type(1, botBurst[i]);
      await sleep(25);
    }
  })();
  await Promise.all([page.keyboard.type(`${vsBurst}\n`, { delay: 20 }), botTyping]);
  const merged = `#${botBurst}\n${expected}${vsBurst}\n`;
  await until('both editors to agree on the merged text', STEP_TIMEOUT_MS, async () =>
    scripted.text === merged && (await renderedText(page, ACTIVE_EDITOR)) === merged ? true : undefined,
  ).catch(async (err: unknown) => {
    const shown = await renderedText(page, ACTIVE_EDITOR).catch(() => '?');
    throw new Error(
      `${String(err)}\n  expected: ${JSON.stringify(merged)}\n  scripted: ${JSON.stringify(scripted.text)}\n  VS Code:  ${JSON.stringify(shown)}`,
    );
  });
}

async function drive(page: Page, codeUrl: string, hub: string, token: string): Promise<void> {
  const scripted = bot as ScriptedEditor;
  const project = join(work, 'project');
  step(`opening ${codeUrl}`);
  await page.goto(`${codeUrl}?folder=${encodeURIComponent(project)}`);
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 120_000 });
  // The extension activates on startup and shows its status item.
  await until('the Chorus status bar item (extension activated)', 120_000, async () =>
    (await statusBarText(page)).includes('Chorus'),
  );

  step('opening main.py');
  await runCommand(page, 'Go to File');
  await page.keyboard.type('main.py');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: 'main.py' }).first().waitFor();
  await page.keyboard.press('Enter');
  await until('main.py to show in the editor', STEP_TIMEOUT_MS, async () =>
    (await renderedText(page, ACTIVE_EDITOR)).includes('hello from the seed'),
  );

  step('joining the session through the command palette');
  await runCommand(page, 'Chorus: Join Session');
  await answerPrompt(page, 'Session to join', SESSION);
  await answerPrompt(page, 'Join token', token);
  await until(`the status bar to show "${SESSION} · 2 people"`, STEP_TIMEOUT_MS, async () =>
    (await statusBarText(page)).includes(`${SESSION} · 2 people`),
  );
  await scripted.waitFor(`a presence notification for ${VS_NAME}`, STEP_TIMEOUT_MS, () =>
    scripted
      .notificationsOf('chorus/presence')
      .some((p) => (p as { participant?: { name?: string } }).participant?.name === VS_NAME),
  );

  step('typing in VS Code');
  await page.locator(`${ACTIVE_EDITOR} .view-lines`).click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type(`${VS_LINE}\n`, { delay: 15 });
  await scripted.waitFor("VS Code's typing to arrive in the scripted editor", STEP_TIMEOUT_MS, () =>
    scripted.text.includes(`${VS_LINE}\n`),
  );
  assertEqual(scripted.text, `${SEED}${VS_LINE}\n`, 'the scripted editor text after VS Code typed');

  step("VS Code's cursor reaches the other editor");
  // Moved only now that both texts agree: a cursor sent while an edit is
  // still on its way is placed on the older text, close but not exact.
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('End');
  await scripted.waitFor(`a chorus/cursor from ${VS_NAME} at the end of line 2`, STEP_TIMEOUT_MS, () =>
    scripted.notificationsOf('chorus/cursor').some((p) => {
      const c = p as { name?: string; uri?: string; selections?: { head: Position; anchor: Position }[] };
      const head = c.selections?.[0]?.head;
      return c.name === VS_NAME && c.uri === scripted.uri && head?.line === 1 && head.character === VS_LINE.length;
    }),
  );
  await page.keyboard.press('Control+End');

  step('typing in the scripted editor');
  scripted.type(scripted.text.length, `${BOT_LINE}\n`);
  const expected = `${SEED}${VS_LINE}\n${BOT_LINE}\n`;
  await until(
    "the scripted editor's typing to show in VS Code",
    STEP_TIMEOUT_MS,
    async () => (await renderedText(page, ACTIVE_EDITOR)) === expected,
  );
  assertEqual(scripted.text, expected, 'the scripted editor text');

  step("the scripted editor's cursor shows in VS Code with its name");
  scripted.notify('chorus/cursor', {
    uri: scripted.uri,
    selections: [{ anchor: { line: 0, character: 0 }, head: { line: 0, character: 5 } }],
  });
  await until(`a "${BOT_NAME}" label in the editor`, STEP_TIMEOUT_MS, () =>
    page.evaluate(
      ({ selector, name }) =>
        [...document.querySelectorAll(`${selector} .view-lines span`)].some((el) =>
          getComputedStyle(el, '::after').content.includes(name),
        ),
      { selector: ACTIVE_EDITOR, name: BOT_NAME },
    ),
  );
  await page.screenshot({ path: join(artifacts, 'cursor.png') }).catch(() => undefined);

  if (process.env.CHORUS_E2E_CONCURRENT !== '0') {
    await typeAtOnce(page, scripted, expected);
  }

  step('running main.py from VS Code');
  await runCommand(page, 'Chorus: Run');
  const finished = await until('the Output channel to show the run finishing', 120_000, async () => {
    const text = await renderedText(page, OUTPUT_EDITOR);
    return text.includes('■ run') ? text : undefined;
  });
  for (const line of ['hello from the seed', VS_TEXT, 'typed by bot']) {
    if (!finished.includes(line)) {
      throw new Error(`the Chorus Run output lacks "${line}":\n${finished}`);
    }
  }
  if (!/■ run \d+: exited with code 0/.test(finished)) {
    throw new Error(`the run did not exit cleanly:\n${finished}`);
  }
  const order = ['hello from the seed', VS_TEXT, 'typed by bot'].map((l) => finished.indexOf(l));
  assertEqual(
    [...order].sort((a, b) => a - b),
    order,
    'output lines in program order',
  );
  await scripted.waitFor(
    'the run to finish for the other editor too',
    STEP_TIMEOUT_MS,
    () => scripted.notificationsOf('chorus/runFinished').length > 0,
  );
  const botOutput = scripted
    .notificationsOf('chorus/runOutput')
    .map((p) => (p as { data: string }).data)
    .join('');
  assertEqual(botOutput, `hello from the seed\n${VS_TEXT}\ntyped by bot\n`, 'run output seen by the other editor');
  await until('the status bar to show the run result', STEP_TIMEOUT_MS, async () =>
    /run #\d+: exited with code 0/.test(await statusBarText(page)),
  );

  step('leaving the session');
  const leftBefore = leftCount(scripted);
  await runCommand(page, 'Chorus: Leave');
  await scripted.waitFor(`${VS_NAME} to leave`, STEP_TIMEOUT_MS, () => leftCount(scripted) > leftBefore);
  await until('the status bar to say Chorus again', STEP_TIMEOUT_MS, async () =>
    (await statusBarText(page)).includes('Chorus'),
  );

  step('joining again: a second client in the same window starts cleanly');
  const joinsBefore = joinCount(scripted);
  await runCommand(page, 'Chorus: Join Session');
  await answerPrompt(page, 'Session to join', SESSION);
  await answerPrompt(page, 'Join token', token);
  await scripted.waitFor(`${VS_NAME} to join again`, STEP_TIMEOUT_MS, () => joinCount(scripted) > joinsBefore);
  await until(`the status bar to show "${SESSION} · 2 people" again`, STEP_TIMEOUT_MS, async () =>
    (await statusBarText(page)).includes(`${SESSION} · 2 people`),
  );
  scripted.type(0, '# rejoined\n');
  await until('an edit after rejoining to show in VS Code', STEP_TIMEOUT_MS, async () =>
    (await renderedText(page, ACTIVE_EDITOR)).startsWith('# rejoined\n'),
  );
  await runCommand(page, 'Chorus: Leave');
  await scripted.waitFor(`${VS_NAME} to leave again`, STEP_TIMEOUT_MS, () => leftCount(scripted) > leftBefore + 1);
  step(`done (hub ${hub})`);
}

const watchdog = setTimeout(() => {
  console.error(`e2e: gave up after ${TEST_TIMEOUT_MS / 1000} s; logs in ${artifacts}`);
  killGroups('SIGKILL');
  process.exit(1);
}, TEST_TIMEOUT_MS);

main()
  .then(async () => {
    await bot?.shutdown();
    await cleanup();
    clearTimeout(watchdog);
    rmSync(work, { recursive: true, force: true });
    console.log('e2e: VS Code end-to-end test passed');
  })
  .catch(async (err: unknown) => {
    console.error(`e2e FAILED: ${err instanceof Error ? err.message : String(err)}`);
    console.error(`e2e: logs and screenshot in ${artifacts} (file ${pathToFileURL(join(artifacts, 'failure.png'))})`);
    await cleanup();
    clearTimeout(watchdog);
    // The profile and extensions are only worth keeping when the logs and
    // screenshot live among them.
    if (process.env.CHORUS_E2E_ARTIFACTS) {
      rmSync(work, { recursive: true, force: true });
    }
    process.exit(1);
  });
