// After a burst of changes settles, the extension compares the document
// with the proxy's copy of it (chorus/documentState) and asks for
// chorus.resync when they differ at the same version: a change lost
// between VS Code and the proxy would otherwise leave this document
// different from everyone else's, unseen. The decision, apart from VS Code.

import type { DocumentState } from './protocol';

/** Milliseconds of quiet after a change before the document is compared. */
export const SETTLE_MS = 500;
/** Larger documents are not compared: the proxy's copy would cross the pipe after every burst. */
export const MAX_CHARS = 2 * 1024 * 1024;

export type Verdict = 'same' | 'differs' | 'skip';

/**
 * `text` at `version` (and `versionNow`, the document's version when the
 * answer came) against the proxy's `state`: comparable only when the proxy
 * has nothing in flight and both are at one version.
 */
export function compare(
  text: string,
  version: number,
  versionNow: number,
  state: DocumentState | null | undefined,
): Verdict {
  if (!state || !state.synchronized || state.version !== version || versionNow !== version) {
    return 'skip';
  }
  if (text.length > MAX_CHARS) {
    return 'skip';
  }
  return text === state.text ? 'same' : 'differs';
}
