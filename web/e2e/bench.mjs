// Drives the browser door in real Chromium for benches/browser.rs.
//
// 1. Page loads: `loads` times cold (a new browser context each time:
//    empty cache, no storage, as a first visit) and `loads` times warm
//    (new pages in one context that has loaded the page once, so the
//    immutable assets come from its cache). Each is timed from `goto` to
//    the join form's script having run, and on to an editable editor:
//    join (form submit) and open DOC from the file tree, as a person
//    would, scripted.
// 2. Keystrokes: one page stays open on DOC; for each stdin line
//    (`{"key": "x"}`) it types the key through the keyboard and answers
//    `{"event": "typed"}`. The bench's own WebSocket client times the key
//    to its arrival at the hub's other side, so this script has no clock
//    in that part.
//
// Usage: node e2e/bench.mjs URL DOC LOADS  (URL = http://HOST:PORT/s/SESSION)
// Environment: CHROMIUM (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';

const [url, doc, loadsArg] = process.argv.slice(2);
const loads = Number(loadsArg || 10);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});

/// One load in `page`: milliseconds to the join form, and to an editable editor.
async function load(page, name) {
  const begun = performance.now();
  await page.goto(url, { waitUntil: 'commit' });
  // app.js marks the body "not joined" once it has run.
  await page.waitForFunction(() => document.body.dataset.connection === 'not joined');
  const form = performance.now() - begun;
  await page.locator('#name').fill(name);
  await page.locator('#name').press('Enter');
  await page.locator(`#file-list button[data-path="${doc}"]`).click({ timeout: 20_000 });
  await page.locator('.cm-content[contenteditable="true"]').waitFor({ timeout: 20_000 });
  return { form, editable: performance.now() - begun };
}

try {
  const cold = [];
  for (let i = 0; i < loads; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    cold.push(await load(page, `cold${i}`));
    await context.close();
  }
  const context = await browser.newContext();
  const first = await context.newPage();
  await load(first, 'warmup');
  await first.close();
  const warm = [];
  for (let i = 0; i < loads; i++) {
    const page = await context.newPage();
    warm.push(await load(page, `warm${i}`));
    await page.close();
  }
  say({ event: 'loads', cold, warm });

  const page = await context.newPage();
  await load(page, 'typist');
  // The caret at the end of the first line: every key lands there.
  await page.evaluate(() => {
    const view = window.chorusView;
    view.dispatch({ selection: { anchor: view.state.doc.line(1).to } });
  });
  await page.locator('.cm-content').focus();
  say({ event: 'ready' });
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line);
    if (cmd.quit) break;
    await page.keyboard.type(cmd.key);
    say({ event: 'typed' });
  }
} catch (err) {
  say({ event: 'failed', error: String(err) });
  process.exitCode = 1;
}
await browser.close();
