// A real headless Neovim 0.11 with the Chorus plugin (editor-plugins/neovim)
// for the end-to-end test, as tests/e2e/neovim.rs drives it: started with
// `--listen SOCKET`, joined with :ChorusJoin, driven with `nvim --server
// SOCKET --remote-expr`. The typing runs inside Neovim (timers), so that
// its rhythm does not depend on how fast we can ask.
//
// Which Neovim: $CHORUS_NVIM, else `nvim` on the PATH. Under the full run
// (scripts/test.sh sets CHORUS_FULL_TESTS=1 and CHORUS_NVIM) a missing one
// fails; elsewhere the caller skips what needs it and says so.

import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { STEP_TIMEOUT_MS, shellQuote, sleep, startGroup, stopGroup, until, type Hub } from './harness';

const PLUGIN_DIR = resolve(__dirname, '..', '..', '..', 'neovim');

/** Neovim 0.11 or newer, or why there is none. */
export function findNeovim(): { bin: string } | { missing: string } {
  const bin = process.env.CHORUS_NVIM || 'nvim';
  const version = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const first = (version.stdout ?? '').split('\n')[0];
  const minor = Number(/^NVIM v0\.(\d+)\./.exec(first)?.[1] ?? 'NaN');
  if (version.status !== 0) {
    return { missing: `${bin} does not run (${version.error?.message ?? `status ${version.status}`})` };
  }
  if (!(minor >= 11)) {
    return { missing: `${bin} is ${first || 'of an unknown version'}; 0.11 is needed` };
  }
  return { bin };
}

/** Whether this is the full run (scripts/test.sh), where nothing may be skipped. */
export function fullRun(): boolean {
  const value = process.env.CHORUS_FULL_TESTS;
  return value !== undefined && value !== '' && value !== '0';
}

/** A Lua long-string literal holding `text`. */
function luaString(text: string): string {
  if (text.includes(']==]')) {
    throw new Error(`cannot quote ${JSON.stringify(text)} for Lua`);
  }
  return `[==[${text}]==]`;
}

/** Test helpers defined in the instance (not part of the plugin). */
const HELPERS = String.raw`
_G.T = { typed = 0, queue = {}, busy = false }
function T.buf()
  return vim.fn.bufnr(T.file)
end
-- The buffer as LSP sees it: lines joined, with the final newline.
function T.text()
  return table.concat(vim.api.nvim_buf_get_lines(T.buf(), 0, -1, false), '\n') .. '\n'
end
-- The proxy's own view of the document.
function T.proxy_state()
  local client = vim.lsp.get_clients({ name = 'chorus' })[1]
  if not client then
    return 'null'
  end
  local answer = client:request_sync('chorus/documentState', { uri = vim.uri_from_bufnr(T.buf()) }, 2000)
  return vim.json.encode(answer and answer.result or vim.NIL)
end
-- Queues units (strings of one or more code points, maybe ending in a
-- newline) to insert one by one at random grapheme cluster boundaries
-- (Neovim counts a cluster as one character with composing ones),
-- 0..max_gap ms apart: half through the API (as a plugin or a paste
-- would), half as keystrokes in insert mode; line breaks through the API
-- only, where no indenting adds to them.
function T.type_units(seed, units, max_gap)
  math.randomseed(seed)
  vim.list_extend(T.queue, units)
  if T.busy then
    return
  end
  T.busy = true
  local function step()
    local unit = table.remove(T.queue, 1)
    if not unit then
      T.busy = false
      return
    end
    local buf = T.buf()
    local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
    local row = math.random(0, #lines - 1)
    local line = lines[row + 1]
    local col = vim.fn.byteidx(line, math.random(0, vim.fn.strchars(line, 1)))
    if unit:find('\n', 1, true) or math.random(2) == 1 or vim.api.nvim_get_mode().mode ~= 'n' then
      vim.api.nvim_buf_set_text(buf, row, col, row, col, vim.split(unit, '\n', { plain = true }))
    else
      vim.api.nvim_win_set_cursor(0, { row + 1, col })
      -- escape_ks: multibyte characters may hold K_SPECIAL (0x80) bytes.
      vim.api.nvim_feedkeys('i' .. unit .. '\27', 'n', true)
    end
    T.typed = T.typed + 1
    vim.defer_fn(step, math.random(0, max_gap))
  end
  vim.defer_fn(step, math.random(0, max_gap))
end
`;

export interface NeovimOptions {
  bin: string;
  /** Names its files among the scenario's artifacts. */
  label: string;
  hub: Hub;
  folder: string;
  /** The file to edit, relative to `folder`. */
  file: string;
  userName: string;
  chorusBin: string;
}

export class Neovim {
  private constructor(
    readonly label: string,
    private readonly bin: string,
    private readonly socket: string,
    private readonly process: ChildProcess,
  ) {}

  static async start(options: NeovimOptions): Promise<Neovim> {
    const { bin, label, hub, folder } = options;
    const dir = join(hub.dir, label);
    mkdirSync(dir, { recursive: true });
    // The proxy's stderr and both directions of its LSP traffic into the
    // artifacts, where Neovim would only keep what it logs at its own level.
    const wrapper = join(dir, 'chorus-lsp');
    const file = (name: string): string => shellQuote(join(dir, name));
    writeFileSync(
      wrapper,
      `#!/bin/sh\ntee -a ${file('lsp-in.txt')} | ${shellQuote(options.chorusBin)} "$@" 2>>${file('lsp.log')} | tee -a ${file('lsp-out.txt')}\n`,
      { mode: 0o755 },
    );
    const init = [
      'vim.o.swapfile = false',
      "vim.o.shortmess = vim.o.shortmess .. 'F'",
      `vim.opt.rtp:prepend(${luaString(PLUGIN_DIR)})`,
      `require('chorus').setup({ hub = ${luaString(hub.url)}, name = ${luaString(options.userName)}, root = ${luaString(folder)}, cmd = { ${luaString(wrapper)}, 'lsp' } })`,
      `vim.cmd.cd(${luaString(folder)})`,
      '-- plugin/ scripts load after -u; load ours now for :ChorusJoin.',
      "vim.cmd.runtime('plugin/chorus.lua')",
      `vim.cmd(${luaString(`ChorusJoin ${hub.session} ${hub.token}`)})`,
      `vim.cmd.edit(${luaString(options.file)})`,
      HELPERS,
      `T.file = ${luaString(options.file)}`,
      '',
    ].join('\n');
    const initPath = join(dir, 'init.lua');
    writeFileSync(initPath, init);
    // Unix socket paths are short (108 bytes): not under the artifacts.
    const socket = join(tmpdir(), `chorus-e2e-${process.pid}-${label}.sock`);
    const child = startGroup(
      join(dir, 'nvim.out'),
      bin,
      ['--headless', '--clean', '-u', initPath, '--listen', socket],
      {
        XDG_STATE_HOME: join(dir, 'state'),
        XDG_DATA_HOME: join(dir, 'data'),
        XDG_CONFIG_HOME: join(dir, 'config'),
        CHORUS_LOG: 'info,chorus_lsp=debug',
      },
    );
    const nvim = new Neovim(label, bin, socket, child);
    await until(`${label}: Neovim to listen on ${socket}`, STEP_TIMEOUT_MS, async () => (await nvim.eval('1')) === '1');
    return nvim;
  }

  /** Ends Neovim and its proxy (one process group). */
  async stop(): Promise<void> {
    await stopGroup(this.process);
  }

  /** Evaluates a Vim expression; its value as text. */
  eval(expr: string): Promise<string> {
    return new Promise((resolveValue, reject) => {
      execFile(
        this.bin,
        ['--headless', '--clean', '--server', this.socket, '--remote-expr', expr],
        // A Neovim stuck must fail the test, not hang it.
        { encoding: 'utf8', timeout: 10_000 },
        (err, stdout, stderr) => {
          if (err || stderr.trim() !== '') {
            reject(new Error(`${this.label}: ${expr}: ${err?.message ?? ''} ${stderr}`));
          } else {
            resolveValue(stdout);
          }
        },
      );
    });
  }

  /** Evaluates a Lua expression that yields a string or a number. */
  lua(code: string): Promise<string> {
    return this.eval(`luaeval('${code.replace(/'/g, "''")}')`);
  }

  /** The buffer's text, as LSP sees it. */
  async text(): Promise<string> {
    return (JSON.parse(await this.lua('vim.json.encode({ T.text() })')) as string[])[0];
  }

  /** chorus/documentState from its proxy (null before it joined). */
  async proxyState(): Promise<{ text: string; synchronized: boolean; joined: boolean; rev: number } | null> {
    return JSON.parse(await this.lua('T.proxy_state()')) as {
      text: string;
      synchronized: boolean;
      joined: boolean;
      rev: number;
    } | null;
  }

  async waitJoined(): Promise<void> {
    await until(`${this.label}: its proxy to join ${this.label}'s file`, STEP_TIMEOUT_MS, async () => {
      const state = await this.proxyState();
      return state?.joined && state.synchronized;
    });
  }

  /** Starts typing `units` inside Neovim (queued after any still typing). */
  async typeUnits(seed: number, units: string[], maxGapMs: number): Promise<void> {
    const list = `vim.json.decode(${luaString(JSON.stringify(units))})`;
    await this.lua(`T.type_units(${seed}, ${list}, ${maxGapMs}) or 'ok'`);
  }

  async typed(): Promise<number> {
    return Number(await this.lua('T.typed'));
  }

  /** The plugin's buffer checks that found a difference (check.lua). */
  async mismatches(): Promise<number> {
    return Number(await this.lua("require('chorus.check').mismatches"));
  }

  async waitIdle(count: number): Promise<void> {
    await until(`${this.label}: all ${count} units typed`, STEP_TIMEOUT_MS, async () => (await this.typed()) >= count);
    await sleep(50);
  }
}
