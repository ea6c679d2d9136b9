// Reading back what an editor told its chorus lsp: the LSP messages in a
// file written by a `tee` on the proxy's stdin (harness.ts's wrapper).
// Replaying a document's didOpen and didChange gives the text the editor
// holds, as exactly as the editor reported it — where the rendered text of
// a VS Code window could be cut by the viewport.

import { existsSync, readFileSync } from 'node:fs';

import { offsetAt, type Position } from './lspClient';

interface Message {
  method?: string;
  params?: unknown;
}

/** Every complete message in LSP framing (Content-Length headers). */
export function parseMessages(data: Buffer): Message[] {
  const messages: Message[] = [];
  let at = 0;
  for (;;) {
    const headerEnd = data.indexOf('\r\n\r\n', at);
    if (headerEnd < 0) {
      return messages;
    }
    const length = Number(/Content-Length: (\d+)/i.exec(data.subarray(at, headerEnd).toString('ascii'))?.[1]);
    if (!Number.isFinite(length) || data.length < headerEnd + 4 + length) {
      return messages;
    }
    messages.push(JSON.parse(data.subarray(headerEnd + 4, headerEnd + 4 + length).toString('utf8')) as Message);
    at = headerEnd + 4 + length;
  }
}

interface ContentChange {
  range?: { start: Position; end: Position };
  text: string;
}

/**
 * Replays the didOpen, didChange and didClose notifications of the
 * document whose URI ends with `uriSuffix` (utf-16 columns, VS Code's);
 * `onChange` sees each change with the text it removed. Returns the text
 * after the last one; undefined when the document was never opened (or
 * was closed).
 */
function replayDocument(
  messages: Message[],
  uriSuffix: string,
  onChange?: (change: ContentChange, removed: string) => void,
): string | undefined {
  let text: string | undefined;
  for (const message of messages) {
    const params = message.params as
      | { textDocument?: { uri?: string; text?: string }; contentChanges?: ContentChange[] }
      | undefined;
    if (!params?.textDocument?.uri?.endsWith(uriSuffix)) {
      continue;
    }
    if (message.method === 'textDocument/didOpen') {
      text = params.textDocument.text ?? '';
    } else if (message.method === 'textDocument/didChange' && text !== undefined) {
      for (const change of params.contentChanges ?? []) {
        const start: number = change.range ? offsetAt(text, change.range.start) : 0;
        const end: number = change.range ? offsetAt(text, change.range.end) : text.length;
        onChange?.(change, text.slice(start, end));
        text = text.slice(0, start) + change.text + text.slice(end);
      }
    } else if (message.method === 'textDocument/didClose') {
      text = undefined;
    }
  }
  return text;
}

/**
 * The text of the document whose URI ends with `uriSuffix`, replayed from
 * its last didOpen in `path`; undefined when it was never opened.
 */
export function documentFromTrace(path: string, uriSuffix: string): string | undefined {
  return existsSync(path) ? replayDocument(parseMessages(readFileSync(path)), uriSuffix) : undefined;
}

/** Occurrences of each code point. */
export function codePointCounts(texts: string[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const text of texts) {
    for (const ch of text) {
      const cp = ch.codePointAt(0) as number;
      counts.set(cp, (counts.get(cp) ?? 0) + 1);
    }
  }
  return counts;
}

/** Code points whose count differs: [code point, actual, expected]. */
export function countDifferences(
  actual: Map<number, number>,
  expected: Map<number, number>,
): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (const cp of new Set([...actual.keys(), ...expected.keys()])) {
    const a = actual.get(cp) ?? 0;
    const e = expected.get(cp) ?? 0;
    if (a !== e) {
      out.push([cp, a, e]);
    }
  }
  return out.sort((x, y) => x[0] - y[0]);
}

interface ApplyEditParams {
  edit?: {
    documentChanges?: {
      textDocument?: { uri?: string };
      edits?: { range: { start: Position; end: Position }; newText: string }[];
    }[];
  };
}

/**
 * What the user typed into the document whose URI ends with `uriSuffix`,
 * as the editor recorded it: the code points its didChange notifications
 * (in `inPath`) added and removed, less those of the proxy's applyEdit
 * requests (in `outPath`) it answered `applied: true`. An applied edit
 * that replaced text is matched with the change the editor reported for
 * it (same range, same new text), which tells what it removed; undefined
 * when no reported change matches one, as then what was typed cannot be
 * told apart.
 */
export function typedByUser(inPath: string, outPath: string, uriSuffix: string): Map<number, number> | undefined {
  const counts = new Map<number, number>();
  const add = (text: string, sign: number): void => {
    for (const ch of text) {
      const cp = ch.codePointAt(0) as number;
      counts.set(cp, (counts.get(cp) ?? 0) + sign);
    }
  };
  const rangeKey = (range: { start: Position; end: Position }, text: string): string =>
    JSON.stringify([range.start.line, range.start.character, range.end.line, range.end.character, text]);
  const editorSaid = existsSync(inPath) ? parseMessages(readFileSync(inPath)) : [];
  const applied = new Set<unknown>();
  for (const message of editorSaid) {
    const reply = message as { id?: unknown; result?: { applied?: boolean } };
    if (message.method === undefined && reply.result?.applied === true) {
      applied.add(reply.id);
    }
  }
  // What each reported replacement removed, by range and new text, in order.
  const removedBy = new Map<string, string[]>();
  replayDocument(editorSaid, uriSuffix, (change, removed) => {
    add(removed, -1);
    add(change.text, 1);
    if (change.range && removed) {
      const key = rangeKey(change.range, change.text);
      removedBy.set(key, [...(removedBy.get(key) ?? []), removed]);
    }
  });
  const proxySaid = existsSync(outPath) ? parseMessages(readFileSync(outPath)) : [];
  for (const message of proxySaid) {
    const request = message as { id?: unknown };
    if (message.method !== 'workspace/applyEdit' || !applied.has(request.id)) {
      continue;
    }
    for (const change of (message.params as ApplyEditParams).edit?.documentChanges ?? []) {
      if (!change.textDocument?.uri?.endsWith(uriSuffix)) {
        continue;
      }
      for (const edit of change.edits ?? []) {
        const { start, end } = edit.range;
        if (start.line !== end.line || start.character !== end.character) {
          const removed = removedBy.get(rangeKey(edit.range, edit.newText))?.shift();
          if (removed === undefined) {
            return undefined;
          }
          add(removed, 1);
        }
        add(edit.newText, -1);
      }
    }
  }
  return counts;
}

/**
 * The code points of the proxy's applyEdit requests (in `outPath`) for the
 * document whose URI ends with `uriSuffix` that the editor (in `inPath`)
 * did not answer `applied: true`: what a refused-but-applied edit would
 * have added to its buffer.
 */
export function refusedEditCodePoints(inPath: string, outPath: string, uriSuffix: string): Map<number, number> {
  const applied = new Set<unknown>();
  for (const message of existsSync(inPath) ? parseMessages(readFileSync(inPath)) : []) {
    const reply = message as { id?: unknown; result?: { applied?: boolean } };
    if (message.method === undefined && reply.result?.applied === true) {
      applied.add(reply.id);
    }
  }
  const texts: string[] = [];
  for (const message of existsSync(outPath) ? parseMessages(readFileSync(outPath)) : []) {
    const request = message as { id?: unknown };
    if (message.method !== 'workspace/applyEdit' || applied.has(request.id)) {
      continue;
    }
    for (const change of (message.params as ApplyEditParams).edit?.documentChanges ?? []) {
      if (change.textDocument?.uri?.endsWith(uriSuffix)) {
        texts.push(...(change.edits ?? []).map((edit) => edit.newText));
      }
    }
  }
  return codePointCounts(texts);
}

/**
 * The code points the editor (in `inPath`) reported inserting into the
 * document whose URI ends with `uriSuffix`, typing and applied edits alike.
 */
export function insertedByEditor(inPath: string, uriSuffix: string): Map<number, number> {
  const texts: string[] = [];
  for (const message of existsSync(inPath) ? parseMessages(readFileSync(inPath)) : []) {
    const params = message.params as { textDocument?: { uri?: string }; contentChanges?: ContentChange[] } | undefined;
    if (message.method === 'textDocument/didChange' && params?.textDocument?.uri?.endsWith(uriSuffix)) {
      texts.push(...(params.contentChanges ?? []).map((change) => change.text));
    }
  }
  return codePointCounts(texts);
}
