// Turning the user's `chorus.*` settings into how the proxy is started and
// what it is told in `initialize`. No `vscode` import: unit-tested in node.

import type { InitializationOptions } from './protocol';

/** The `chorus.*` settings as read from the configuration. */
export interface ChorusSettings {
  hub: string;
  name: string;
  path: string;
  token: string;
  /** Write the session's files into the workspace folder (chorus.syncFiles). */
  syncFiles: boolean;
}

export const DEFAULT_SETTINGS: ChorusSettings = {
  hub: 'ws://127.0.0.1:7420/',
  name: '',
  path: 'chorus',
  token: '',
  syncFiles: false,
};

/** Fills unset or blank values with the defaults, trimming the rest. */
export function normalizeSettings(raw: Partial<Record<keyof ChorusSettings, unknown>>): ChorusSettings {
  const pick = (key: 'hub' | 'name' | 'path' | 'token'): string => {
    const value = raw[key];
    return typeof value === 'string' && value.trim() !== '' ? value.trim() : DEFAULT_SETTINGS[key];
  };
  return {
    hub: pick('hub'),
    name: pick('name'),
    path: pick('path'),
    token: pick('token'),
    syncFiles: raw.syncFiles === true,
  };
}

/** Why a session name is unusable, or undefined when it is fine. */
export function sessionProblem(session: string): string | undefined {
  if (session.trim() === '') {
    return 'a session name is required';
  }
  if (/\s/.test(session.trim())) {
    return 'a session name has no spaces';
  }
  return undefined;
}

/** Why a hub URL is unusable, or undefined when it is fine. */
export function hubProblem(hub: string): string | undefined {
  let url: URL;
  try {
    url = new URL(hub);
  } catch {
    return `chorus.hub is not a URL: ${hub}`;
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    return `chorus.hub must be a ws:// or wss:// URL, not ${hub}`;
  }
  return undefined;
}

/**
 * The options sent in `initialize`. Blank name and token are left out
 * rather than sent empty, so that the proxy's own defaults (its flags and
 * environment) still apply.
 */
export function initializationOptions(
  settings: ChorusSettings,
  session: string,
  token?: string,
): InitializationOptions {
  const options: InitializationOptions = { hub: settings.hub, session: session.trim(), extensions: true };
  if (settings.name !== '') {
    options.name = settings.name;
  }
  const chosenToken = token !== undefined && token.trim() !== '' ? token.trim() : settings.token;
  if (chosenToken !== '') {
    options.token = chosenToken;
  }
  if (settings.syncFiles) {
    options.syncFiles = true;
  }
  return options;
}

/** How to start the proxy: everything else goes through initialize. */
export function serverCommand(settings: ChorusSettings): { command: string; args: string[] } {
  return { command: settings.path, args: ['lsp'] };
}

/**
 * A glob matching every file under `folder` (an absolute path), for the
 * client's document selector. Glob characters in the path are put in
 * brackets so that a folder named `a[1]` or `{x}` matches itself only.
 */
export function folderGlob(folder: string): string {
  const trimmed = folder.replace(/\\/g, '/').replace(/\/+$/, '');
  return `${trimmed.replace(/[[\]{}*?]/g, (c) => `[${c}]`)}/**/*`;
}
