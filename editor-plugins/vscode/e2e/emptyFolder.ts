// Issue 13 in real VS Code: a project is shared into a session with
// `chorus share` (what .gitignore leaves out stays out, a binary file is
// only listed); a VS Code opened on an empty folder with chorus.syncFiles
// joins, and the Explorer simply shows the project's files. The user
// opens main.py from the Explorer and runs it: `import helper` works, as
// the run takes the session's whole tree. An edit typed in helper.py
// reaches the other editor and the next run.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  ACTIVE_EDITOR,
  OUTPUT_EDITOR,
  STEP_TIMEOUT_MS,
  assertEqual,
  chorusBin,
  scriptedEditor,
  scriptedJoined,
  startHub,
  step,
  until,
  work,
  VsCodeWindow,
} from './harness';

const SESSION = 'files';
const MAIN = 'import helper\n\nhelper.greet()\n';
const HELPER = "def greet():\n    print('hello from helper')\n";
const TYPED = "    print('edited in vscode')\n";

/** A two-file Python project, a file .gitignore leaves out and a binary one. */
function writeProject(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.py'), MAIN);
  writeFileSync(join(dir, 'helper.py'), HELPER);
  writeFileSync(join(dir, '.gitignore'), 'secret.txt\n');
  writeFileSync(join(dir, 'secret.txt'), 'not for sharing\n');
  writeFileSync(join(dir, 'logo.png'), Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'));
}

/** The names in the Explorer's rows, top to bottom. */
async function explorerNames(code: VsCodeWindow): Promise<string[]> {
  return code.page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>('.explorer-folders-view .monaco-list-row')]
      .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
      .map((row) => row.querySelector('.label-name')?.textContent ?? ''),
  );
}

async function openFromExplorer(code: VsCodeWindow, name: string, contains: string): Promise<void> {
  await code.page
    .locator('.explorer-folders-view .monaco-list-row', { has: code.page.getByText(name, { exact: true }) })
    .click();
  await until(`${name} to show in the editor`, STEP_TIMEOUT_MS, async () =>
    (await code.renderedText()).includes(contains),
  );
}

/** Runs the active file; the run's part of the Chorus Run output once it ended. */
async function runActiveFile(code: VsCodeWindow, runsBefore: number): Promise<string> {
  await code.runCommand('Chorus: Run');
  const output = await until('the run to finish in the Chorus Run output', 120_000, async () => {
    const text = await code.renderedText(OUTPUT_EDITOR);
    return text.split('■ run').length - 1 > runsBefore ? text : undefined;
  });
  const runs = output.split('▶');
  return runs[runs.length - 1];
}

export async function emptyFolderScenario(): Promise<void> {
  const hub = await startHub('empty-folder', SESSION);

  step('sharing a project with chorus share');
  const project = join(work, 'shared-project');
  writeProject(project);
  const shared = spawnSync(
    chorusBin,
    [
      'share',
      project,
      '--hub',
      hub.url,
      '--session',
      SESSION,
      '--name',
      'Ada',
      ...(hub.token ? ['--token', hub.token] : []),
    ],
    { encoding: 'utf8', timeout: STEP_TIMEOUT_MS, env: { ...process.env, CHORUS_LOG: 'warn' } },
  );
  writeFileSync(join(hub.dir, 'chorus-share.log'), `${shared.stdout}\n${shared.stderr}`);
  if (shared.status !== 0) {
    throw new Error(`chorus share failed (status ${shared.status}):\n${shared.stderr}`);
  }
  for (const said of ['shared 3 files with session', 'listed, not synced: binary (1):\n    logo.png']) {
    if (!shared.stderr.includes(said)) {
      throw new Error(`chorus share did not say ${JSON.stringify(said)}:\n${shared.stderr}`);
    }
  }
  if (shared.stderr.includes('secret.txt')) {
    throw new Error(`chorus share mentions the ignored secret.txt:\n${shared.stderr}`);
  }

  step('a scripted editor in the shared project opens helper.py');
  const scripted = await scriptedEditor(hub, 'bot', project, 'Ada');
  scripted.open(join(project, 'helper.py'), HELPER);
  await scriptedJoined(scripted);

  const empty = join(work, 'empty-folder');
  mkdirSync(empty);
  const code = await VsCodeWindow.open({
    label: 'vscode',
    hub,
    folder: empty,
    userName: 'Joy',
    settings: { 'chorus.syncFiles': true },
  });
  try {
    assertEqual(await explorerNames(code), [], 'the Explorer of the empty folder before joining');

    step('joining with chorus.syncFiles: the project appears in the Explorer');
    await code.join(hub);
    await code.waitStatus(`${SESSION} · 2 people`);
    const names = await until('main.py and helper.py in the Explorer', STEP_TIMEOUT_MS, async () => {
      const shown = await explorerNames(code);
      return shown.includes('main.py') && shown.includes('helper.py') ? shown : undefined;
    });
    for (const hidden of ['secret.txt', 'logo.png']) {
      if (names.includes(hidden)) {
        throw new Error(`the Explorer shows ${hidden}: ${JSON.stringify(names)}`);
      }
      if (existsSync(join(empty, hidden))) {
        throw new Error(`${hidden} was written into the joiner's folder`);
      }
    }
    assertEqual(readFileSync(join(empty, 'main.py'), 'utf8'), MAIN, "main.py on the joiner's disk");
    assertEqual(readFileSync(join(empty, 'helper.py'), 'utf8'), HELPER, "helper.py on the joiner's disk");

    step('the Chorus Output channel says logo.png is listed, not written');
    await code.showOutputChannel('Chorus');
    await until('the listed-not-synced message in the Chorus Output channel', STEP_TIMEOUT_MS, async () => {
      const text = (await code.renderedText(OUTPUT_EDITOR)).replace(/\n/g, '');
      return text.includes('listed without their content') && text.includes('logo.png');
    });

    step('opening main.py from the Explorer and running it');
    await openFromExplorer(code, 'main.py', 'import helper');
    assertEqual(await code.renderedText(), MAIN, 'main.py as shown');
    const first = await runActiveFile(code, 0);
    if (!first.includes('hello from helper') || !/■ run \d+: exited with code 0/.test(first)) {
      throw new Error(`the run of main.py did not print helper's greeting and exit 0:\n${first}`);
    }

    step('typing in helper.py: the edit reaches the other editor and the next run');
    await openFromExplorer(code, 'helper.py', 'hello from helper');
    await code.page.locator(`${ACTIVE_EDITOR} .view-lines`).click();
    await code.page.keyboard.press('Control+End');
    await code.page.keyboard.type(TYPED, { delay: 10 });
    await scripted.waitFor("VS Code's edit to helper.py in the other editor", STEP_TIMEOUT_MS, () =>
      scripted.text.includes(TYPED),
    );
    assertEqual(scripted.text, HELPER + TYPED, 'helper.py in the other editor');
    await openFromExplorer(code, 'main.py', 'import helper');
    const second = await runActiveFile(code, 1);
    if (!second.includes('hello from helper\nedited in vscode') || !/exited with code 0/.test(second)) {
      throw new Error(`the second run did not take helper.py as edited:\n${second}`);
    }
  } catch (err) {
    await code.screenshot('failure');
    const status = await code.statusBarText().catch(() => '?');
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n  status bar: ${status}`);
  }
  await code.screenshot('final');
  await scripted.shutdown();
  await code.close();
}
