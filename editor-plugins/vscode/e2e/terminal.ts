// The shared terminal (issue 16): a VS Code and a scripted editor in one
// shell in the hub's sandbox. VS Code opens it from the Command Palette and
// types into its terminal tab with real keystrokes, the scripted editor
// joins and types through chorus.terminal.input, and both read the same
// Python session. Then Stop ends it for both; the scripted editor opens a
// new one, VS Code is offered it, opens it and sees what ran before it
// joined (the replay), and `exit` typed in VS Code ends it for both.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  STEP_TIMEOUT_MS,
  scriptedEditor,
  scriptedJoined,
  startHub,
  step,
  until,
  work,
  VsCodeWindow,
  type Hub,
} from './harness';
import { type ScriptedEditor } from './lspClient';

const SESSION = 'e2e-terminal';
const VS_NAME = 'Vee';
const BOT_NAME = 'Bot';
/** The scripted editor's view: not VS Code's, so that its typing resizes the terminal. */
const BOT_SIZE = { cols: 100, rows: 30 };
/** Starting the container and bash can take a while on a cold machine. */
const SHELL_TIMEOUT_MS = 120_000;

interface Output {
  terminalId: number;
  seq: number;
  data: string;
  replay?: boolean;
}

/**
 * The scripted editor's view of terminal `terminalId` as plain text: its
 * latest replay (none for a terminal it saw open), then the live output
 * from the replay's seq on (what came earlier is in the replay), without
 * escape sequences (bash and readline turn bracketed paste on and off
 * around each prompt) and with `\r\n` as `\n`.
 */
function botScreen(bot: ScriptedEditor, terminalId: number): string {
  const outputs = (bot.notificationsOf('chorus/terminalOutput') as Output[]).filter((o) => o.terminalId === terminalId);
  const replay = outputs.filter((o) => o.replay).pop();
  const from = replay?.seq ?? 0;
  const seen = new Set<number>();
  const after = outputs
    .filter((o) => !o.replay && o.seq >= from && !seen.has(o.seq) && seen.add(o.seq))
    .sort((a, b) => a.seq - b.seq);
  return plain((replay?.data ?? '') + after.map((o) => o.data).join(''));
}

/** OSC (titles), CSI (colours, modes, cursor moves) and two-byte escape sequences. */
// eslint-disable-next-line no-control-regex -- escape sequences are what it matches
const ESCAPES = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[^[\]]/g;

function plain(text: string): string {
  return text.replace(ESCAPES, '').replace(/\r/g, '');
}

function startedIds(bot: ScriptedEditor): number[] {
  return (bot.notificationsOf('chorus/terminalStarted') as { terminalId: number }[]).map((s) => s.terminalId);
}

function endedOf(bot: ScriptedEditor, terminalId: number): string | undefined {
  return (bot.notificationsOf('chorus/terminalEnded') as { terminalId: number; reason: string }[]).find(
    (e) => e.terminalId === terminalId,
  )?.reason;
}

export async function terminalScenario(): Promise<void> {
  const project = join(work, 'terminal-project');
  mkdirSync(project);
  const mainPy = join(project, 'main.py');
  writeFileSync(mainPy, "print('hello')\n");

  step('starting the hub');
  const hub = await startHub('terminal', SESSION);
  step('starting the scripted editor');
  const bot = await scriptedEditor(hub, 'bot', project, BOT_NAME);
  bot.open(mainPy, "print('hello')\n");
  await scriptedJoined(bot);

  const code = await VsCodeWindow.open({
    label: 'vscode',
    hub,
    folder: project,
    userName: VS_NAME,
    // xterm's DOM renderer, whose rows the test reads.
    settings: { 'terminal.integrated.gpuAcceleration': 'off' },
  });
  try {
    await drive(code, bot, hub);
  } catch (err) {
    await code.screenshot('failure');
    const shown = await code.terminalText().catch(() => '?');
    writeFileSync(join(hub.dir, 'bot-notifications.json'), JSON.stringify(bot.notifications, null, 1));
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n  VS Code's terminal:\n${shown}`);
  }
  await code.screenshot('final');
  await bot.shutdown();
  await code.close();
}

async function drive(code: VsCodeWindow, bot: ScriptedEditor, hub: Hub): Promise<void> {
  const page = code.page;
  step('joining the session through the command palette');
  await code.join(hub);
  await code.waitStatus(`${SESSION} · 2 people`);

  step('VS Code opens the shared terminal');
  await code.runCommand('Chorus: Open Shared Terminal');
  await until("bash's prompt in VS Code's terminal", SHELL_TIMEOUT_MS, async () =>
    /\$ *$/m.test(await code.terminalText()),
  );
  await bot.waitFor('the terminal to open for the other editor too', STEP_TIMEOUT_MS, () => startedIds(bot).length > 0);
  const first = startedIds(bot)[0];

  step('the scripted editor joins it');
  await bot.request('workspace/executeCommand', { command: 'chorus.terminal', arguments: [BOT_SIZE] });
  await bot.waitFor('the replay, with the prompt', STEP_TIMEOUT_MS, () =>
    (bot.notificationsOf('chorus/terminalOutput') as Output[]).some(
      (o) => o.terminalId === first && o.replay && plain(o.data).endsWith('$ '),
    ),
  );

  step('VS Code starts python3 and sets x with real keystrokes');
  await code.focusTerminal();
  await page.keyboard.type('python3', { delay: 20 });
  await page.keyboard.press('Enter');
  await until("python's prompt in VS Code's terminal", STEP_TIMEOUT_MS, async () =>
    /^>>> *$/m.test(await code.terminalText()),
  );
  await page.keyboard.type('x = 2', { delay: 20 });
  await page.keyboard.press('Enter');
  await bot.waitFor("VS Code's `x = 2` run, for the other editor", STEP_TIMEOUT_MS, () =>
    botScreen(bot, first).endsWith('>>> x = 2\n>>> '),
  );

  step('the scripted editor prints x * 21');
  await bot.request('workspace/executeCommand', {
    command: 'chorus.terminal.input',
    arguments: [{ data: 'print(x * 21)\r' }],
  });
  await bot.waitFor('42 for the scripted editor', STEP_TIMEOUT_MS, () =>
    botScreen(bot, first).includes('>>> print(x * 21)\n42\n>>> '),
  );
  await until('42 in VS Code', STEP_TIMEOUT_MS, async () => {
    const rows = (await code.terminalText()).split('\n');
    const at = rows.findIndex((row) => row.endsWith('>>> print(x * 21)'));
    return at >= 0 && rows[at + 1] === '42';
  });
  await code.screenshot('forty-two');

  step('VS Code stops the shared terminal: it ends for both');
  await code.runCommand('Chorus: Stop Shared Terminal');
  await until("the end in VS Code's terminal", STEP_TIMEOUT_MS, async () =>
    /\[terminal ended: .+\]/.test(await code.terminalText()),
  );
  await bot.waitFor('the end for the other editor', STEP_TIMEOUT_MS, () => endedOf(bot, first) !== undefined);

  step('the scripted editor opens a new one: VS Code is offered it');
  await bot.request('workspace/executeCommand', { command: 'chorus.terminal', arguments: [BOT_SIZE] });
  const offer = `${BOT_NAME} opened the shared terminal`;
  await page.locator('.notification-toast', { hasText: offer }).waitFor({ state: 'visible' });
  const second = await until('a second terminal', SHELL_TIMEOUT_MS, () => startedIds(bot).find((id) => id !== first));

  step('the scripted editor runs something before VS Code joins');
  await bot.waitFor('its prompt', SHELL_TIMEOUT_MS, () => botScreen(bot, second).endsWith('$ '));
  await bot.request('workspace/executeCommand', {
    command: 'chorus.terminal.input',
    arguments: [{ data: 'echo before-vscode-$((40 + 2))\r' }],
  });
  await bot.waitFor('the echo', STEP_TIMEOUT_MS, () => botScreen(bot, second).includes('\nbefore-vscode-42\n'));

  step('VS Code takes the offer: the replay shows what ran before');
  // From the notification center: the toast may have hidden by now.
  await code.runCommand('Notifications: Show Notifications');
  await page
    .locator('.notifications-center .notification-list-item', { hasText: offer })
    .locator('.monaco-button', { hasText: 'Open' })
    .click();
  await until("the replay in VS Code's new terminal", STEP_TIMEOUT_MS, async () => {
    const text = await code.terminalText();
    return text.includes('before-vscode-42') && !text.includes('[terminal ended');
  });

  step('exit typed in VS Code ends the shell for both');
  await code.focusTerminal();
  await page.keyboard.type('exit', { delay: 20 });
  await page.keyboard.press('Enter');
  await bot.waitFor('the end of the second terminal', STEP_TIMEOUT_MS, () => endedOf(bot, second) !== undefined);
  await until("the end in VS Code's terminal", STEP_TIMEOUT_MS, async () =>
    /\[terminal ended: .+\]/.test(await code.terminalText()),
  );
}
