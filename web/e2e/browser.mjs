// Drives the browser door in real Chromium for tests/e2e/browser.rs:
// opens the page, joins through its form, opens a file from its tree,
// then answers one JSON command per stdin line with one JSON line on
// stdout. Typing goes through the keyboard (CodeMirror's own input
// handling); only the caret is placed through the page's EditorView.
//
// Usage: node e2e/browser.mjs URL NAME DOC
// Environment: CHROMIUM (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const [url, name, doc] = process.argv.slice(2);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});
const page = await browser.newPage();
const problems = [];
page.on('console', (m) => {
  if (m.type() === 'error') problems.push(`console: ${m.text()}`);
});
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
await page.addInitScript(() => {
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp = (window.__csp || []).concat(`${e.violatedDirective} ${e.blockedURI}`);
  });
});

async function state() {
  return page.evaluate(() => ({
    text: window.chorusView ? window.chorusView.state.doc.toString() : null,
    synchronized: document.body.dataset.synchronized === 'true',
    connection: document.body.dataset.connection,
    role: document.body.dataset.role,
    // How often the page merged by text after the hub lost its history.
    merges: Number(document.body.dataset.merges ?? 0),
    status: document.getElementById('status').textContent,
    error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
    csp: window.__csp || [],
    editable: document.querySelector('#editor')?.shadowRoot?.querySelector('.cm-content')?.getAttribute('contenteditable') ?? null,
    readOnlyNote: !document.getElementById('readonly-note').hidden,
    // Each collaborator's caret: its name and the character it is at.
    remoteCursors: [...(document.querySelector('#editor')?.shadowRoot?.querySelectorAll('.remote-cursor') ?? [])].map((c) => {
      const view = window.chorusView;
      const at = [...view.state.doc.sliceString(0, view.posAtDOM(c))].length;
      return { name: c.dataset.name, at };
    }),
    people: [...document.querySelectorAll('#people li')].map((li) => li.textContent),
    output: document.getElementById('output').textContent,
    doc: document.getElementById('doc-title').textContent,
    terminal: [...document.querySelectorAll('#terminal .xterm-rows > div')]
      .map((row) => row.textContent.replace(/\u00a0/g, ' ').trimEnd())
      .join('\n'),
    terminalStatus: document.getElementById('terminal-status').textContent,
  }));
}

/// Inserts each unit at a random place (a code point boundary, never
/// after the final line break, see tests/e2e/browser.rs), through
/// the keyboard, `gap` ms at most apart. xorshift: a seed replays.
async function type(seed, units, gap) {
  let x = BigInt(seed) | 1n;
  const rand = (n) => {
    x ^= x << 13n; x &= (1n << 64n) - 1n;
    x ^= x >> 7n;
    x ^= x << 17n; x &= (1n << 64n) - 1n;
    return Number(x % BigInt(n));
  };
  await page.locator('.cm-content').focus();
  for (const unit of units) {
    const pick = rand(1_000_000);
    await page.evaluate((pick) => {
      const view = window.chorusView;
      const text = view.state.doc.toString();
      const points = [...text];
      let at = 0;
      for (const p of points.slice(0, pick % Math.max(points.length, 1))) at += p.length;
      view.dispatch({ selection: { anchor: at } });
    }, pick);
    await page.keyboard.type(unit);
    if (gap > 0) await page.waitForTimeout(rand(gap + 1));
  }
}

try {
  await page.goto(url);
  await page.locator('#name').fill(name);
  await page.locator('#name').press('Enter');
  await page.locator(`#file-list button[data-path="${doc}"]`).click({ timeout: 20_000 });
  await page.locator('.cm-content').waitFor({ timeout: 20_000 });
  await page.waitForFunction(() => window.chorusView !== undefined, null, { timeout: 20_000 });
  say({ event: 'ready', state: await state() });
} catch (err) {
  say({ event: 'failed', error: String(err), problems });
  await browser.close();
  process.exit(1);
}

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line);
  try {
    if (cmd.cmd === 'type') {
      await type(cmd.seed, cmd.units, cmd.gap);
      say({ event: 'typed' });
    } else if (cmd.cmd === 'cursor') {
      // Focus as a person would (a click), then the caret to character `at`.
      await page.locator('.cm-content').click();
      await page.evaluate((at) => {
        const view = window.chorusView;
        const unit = [...view.state.doc.toString()].slice(0, at).join('').length;
        view.dispatch({ selection: { anchor: unit } });
      }, cmd.at);
      say({ event: 'moved' });
    } else if (cmd.cmd === 'press') {
      // Keyboard only: focus the element as Tab would, then the key.
      await page.locator(cmd.selector).focus();
      await page.keyboard.press(cmd.key);
      say({ event: 'pressed' });
    } else if (cmd.cmd === 'keys') {
      await page.locator(cmd.selector).focus();
      await page.keyboard.type(cmd.text);
      say({ event: 'typed' });
    } else if (cmd.cmd === 'fill') {
      await page.locator(cmd.selector).fill(cmd.text);
      say({ event: 'filled' });
    } else if (cmd.cmd === 'state') {
      say({ event: 'state', state: await state(), problems });
    } else if (cmd.cmd === 'screenshot') {
      await page.emulateMedia({ colorScheme: cmd.colorScheme || 'light' });
      await page.setViewportSize({ width: cmd.width || 1280, height: cmd.height || 720 });
      await page.screenshot({ path: cmd.path, fullPage: true });
      say({ event: 'screenshot' });
    } else if (cmd.cmd === 'quit') {
      break;
    }
  } catch (err) {
    say({ event: 'failed', error: String(err), problems });
  }
}
await browser.close();
