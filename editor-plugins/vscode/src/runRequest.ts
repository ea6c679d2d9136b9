// What the run commands ask the proxy for: the options of `chorus.run`
// from a command's arguments, and the command line the user typed.
// No `vscode` import: unit-tested in node.

import type { RunMode, RunOptions } from './protocol';

/** Arguments the run commands accept when called programmatically (tests, keybindings). */
export interface RunArgs {
  uri?: string;
  stdin?: string;
  args?: string[];
  mode?: RunMode;
  /** A shell command line instead of the one the project's files suggest. */
  command?: string;
}

/**
 * `chorus.run`'s options for `args`, with `mode` (from the command that
 * was chosen) unless `args` names one. Only what is given is sent, so that
 * the proxy's defaults stay the proxy's.
 */
export function runOptions(args: RunArgs | undefined, mode?: RunMode): RunOptions {
  const options: RunOptions = {};
  if (args?.stdin !== undefined) {
    options.stdin = args.stdin;
  }
  if (args?.args !== undefined) {
    options.args = args.args;
  }
  const chosen = args?.mode ?? mode;
  if (chosen !== undefined && chosen !== 'run') {
    options.mode = chosen;
  }
  const command = commandLine(args?.command);
  if (command !== undefined) {
    options.command = command;
  }
  return options;
}

/** The command line typed into the input box, or undefined when there is none to run. */
export function commandLine(typed: string | undefined): string | undefined {
  const line = typed?.trim();
  return line ? line : undefined;
}
