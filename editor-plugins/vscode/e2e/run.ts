// End-to-end test of the extension in real VS Code (code-server with the
// packaged .vsix, driven in headless Chromium through playwright-core),
// against a hub per scenario:
// * basic.ts: one VS Code and a scripted editor: typing both ways,
//   presence, cursors, a shared run, leaving and joining again;
// * emptyFolder.ts: a VS Code joining with an empty folder and
//   chorus.syncFiles gets the shared project in its Explorer and runs it;
// * concurrent.ts: two VS Code windows, a real Neovim and a scripted
//   editor typing at once at random places, with seeds;
// * terminal.ts: VS Code and a scripted editor in the shared terminal:
//   real keystrokes in VS Code's terminal tab, Stop, a replay on joining.
//
// Environment: see harness.ts; CHORUS_E2E_SCENARIOS (comma-separated
// names, default all) runs some only, CHORUS_E2E_SEEDS the concurrent
// scenario's seeds (concurrent.ts), CHORUS_NVIM the Neovim (neovim.ts).

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { basicScenario } from './basic';
import { concurrentScenario } from './concurrent';
import { emptyFolderScenario } from './emptyFolder';
import { artifacts, checkInputs, cleanup, killEverything, step, work } from './harness';
import { terminalScenario } from './terminal';

/** Whole-test limit, so that a wedged step can never hang CI. */
const TEST_TIMEOUT_MS = 10 * 60_000;

const SCENARIOS: [string, () => Promise<void>][] = [
  ['basic', basicScenario],
  ['empty-folder', emptyFolderScenario],
  ['concurrent', concurrentScenario],
  ['terminal', terminalScenario],
];

// Last resort for paths that skip cleanup(): synchronous, so it runs on exit.
process.on('exit', () => killEverything());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killEverything();
    process.exit(130);
  });
}

async function main(): Promise<void> {
  // Detailed proxy logs in the artifacts; every chorus process inherits it.
  process.env.CHORUS_LOG ??= 'info,chorus_lsp=debug';
  checkInputs();
  step(`work directory ${work}, artifacts in ${artifacts}`);
  const wanted = process.env.CHORUS_E2E_SCENARIOS?.split(',').map((s) => s.trim());
  for (const [name, scenario] of SCENARIOS) {
    if (wanted && !wanted.includes(name)) {
      continue;
    }
    const started = Date.now();
    step(`== scenario ${name}`);
    try {
      await scenario();
    } catch (err) {
      throw new Error(`scenario ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    step(`== scenario ${name} passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
}

const watchdog = setTimeout(() => {
  console.error(`e2e: gave up after ${TEST_TIMEOUT_MS / 1000} s; logs in ${artifacts}`);
  killEverything();
  process.exit(1);
}, TEST_TIMEOUT_MS);

main()
  .then(async () => {
    await cleanup();
    clearTimeout(watchdog);
    rmSync(work, { recursive: true, force: true });
    console.log('e2e: VS Code end-to-end test passed');
  })
  .catch(async (err: unknown) => {
    console.error(`e2e FAILED: ${err instanceof Error ? err.message : String(err)}`);
    console.error(`e2e: logs and screenshots in ${artifacts} (${pathToFileURL(join(artifacts))})`);
    await cleanup();
    clearTimeout(watchdog);
    // The profile and extensions are only worth keeping when the logs and
    // screenshots live among them.
    if (process.env.CHORUS_E2E_ARTIFACTS) {
      rmSync(work, { recursive: true, force: true });
    }
    process.exit(1);
  });
