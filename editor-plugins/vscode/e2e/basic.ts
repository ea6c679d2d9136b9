// The first scenario: one VS Code and a scripted editor on one file. Text
// typed in VS Code reaches the other editor and back, presence and cursors
// cross, both typing at once merges, a shared run streams into the "Chorus
// Run" Output channel, and leaving and joining again work.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  ACTIVE_EDITOR,
  OUTPUT_EDITOR,
  STEP_TIMEOUT_MS,
  assertEqual,
  scriptedEditor,
  scriptedJoined,
  sleep,
  startHub,
  step,
  until,
  work,
  VsCodeWindow,
} from './harness';
import { type Position, type ScriptedEditor } from './lspClient';

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
async function typeAtOnce(code: VsCodeWindow, scripted: ScriptedEditor, expected: string): Promise<void> {
  step('both editors typing at once');
  const page = code.page;
  const vsBurst = '# from vscode 0123456789';
  const botBurst = 'b'.repeat(12);
  scripted.type(0, '#\n');
  await until('the first line to reach VS Code', STEP_TIMEOUT_MS, async () =>
    (await code.renderedText()).startsWith('#\n'),
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
    scripted.text === merged && (await code.renderedText()) === merged ? true : undefined,
  ).catch(async (err: unknown) => {
    const shown = await code.renderedText().catch(() => '?');
    throw new Error(
      `${String(err)}\n  expected: ${JSON.stringify(merged)}\n  scripted: ${JSON.stringify(scripted.text)}\n  VS Code:  ${JSON.stringify(shown)}`,
    );
  });
}

export async function basicScenario(): Promise<void> {
  const project = join(work, 'basic-project');
  mkdirSync(project);
  const mainPy = join(project, 'main.py');
  writeFileSync(mainPy, SEED);

  step('starting the hub');
  const hub = await startHub('basic', SESSION);

  step('starting the scripted editor, which seeds main.py');
  const scripted = await scriptedEditor(hub, 'bot', project, BOT_NAME);
  scripted.open(mainPy, SEED);
  await scriptedJoined(scripted);

  const code = await VsCodeWindow.open({ label: 'vscode', hub, folder: project, userName: VS_NAME });
  try {
    await drive(code, scripted);
  } catch (err) {
    await code.screenshot('failure');
    const status = await code.statusBarText().catch(() => '?');
    writeFileSync(join(hub.dir, 'scripted-notifications.json'), JSON.stringify(scripted.notifications, null, 1));
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n  status bar: ${status}`);
  }
  await code.screenshot('final');
  await scripted.shutdown();
  await code.close();

  async function drive(code: VsCodeWindow, scripted: ScriptedEditor): Promise<void> {
    const page = code.page;
    step('opening main.py');
    await code.openFile('main.py');
    await until('main.py to show in the editor', STEP_TIMEOUT_MS, async () =>
      (await code.renderedText()).includes('hello from the seed'),
    );

    step('joining the session through the command palette');
    await code.join(hub);
    await code.waitStatus(`${SESSION} · 2 people`);
    await scripted.waitFor(`a presence notification for ${VS_NAME}`, STEP_TIMEOUT_MS, () => joinCount(scripted) > 0);

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
      async () => (await code.renderedText()) === expected,
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
    await code.screenshot('cursor');

    if (process.env.CHORUS_E2E_CONCURRENT !== '0') {
      await typeAtOnce(code, scripted, expected);
    }

    step('running main.py from VS Code');
    await code.runCommand('Chorus: Run');
    const finished = await until('the Output channel to show the run finishing', 120_000, async () => {
      const text = await code.renderedText(OUTPUT_EDITOR);
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
    await code.waitStatus(/run #\d+: exited with code 0/);

    step('leaving the session');
    const leftBefore = leftCount(scripted);
    await code.runCommand('Chorus: Leave');
    await scripted.waitFor(`${VS_NAME} to leave`, STEP_TIMEOUT_MS, () => leftCount(scripted) > leftBefore);
    await code.waitStatus('Chorus');

    step('joining again: a second client in the same window starts cleanly');
    const joinsBefore = joinCount(scripted);
    await code.join(hub);
    await scripted.waitFor(`${VS_NAME} to join again`, STEP_TIMEOUT_MS, () => joinCount(scripted) > joinsBefore);
    await code.waitStatus(`${SESSION} · 2 people`);
    scripted.type(0, '# rejoined\n');
    await until('an edit after rejoining to show in VS Code', STEP_TIMEOUT_MS, async () =>
      (await code.renderedText()).startsWith('# rejoined\n'),
    );
    await code.runCommand('Chorus: Leave');
    await scripted.waitFor(`${VS_NAME} to leave again`, STEP_TIMEOUT_MS, () => leftCount(scripted) > leftBefore + 1);
  }
}
