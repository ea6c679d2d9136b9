// Where to draw a collaborator's cursors and selections, from the params of
// a chorus/cursor notification. No `vscode` import: unit-tested in node; the
// extension turns these plain ranges into decorations.

import type { Position, RemoteCursorParams } from './protocol';

export interface PlainRange {
  start: Position;
  end: Position;
}

/** What to draw for one person in one document. */
export interface CursorMarks {
  /** Highlighted selections (non-empty ones only). */
  selections: PlainRange[];
  /** Zero-width ranges at each cursor (selection head). */
  carets: PlainRange[];
  /**
   * Where the name label goes: the end of the first cursor's line, so the
   * label never pushes the text someone is typing sideways.
   */
  label: PlainRange | undefined;
  colour: number;
}

/** A person keeps one colour for the session, the same in every editor that maps by id. */
export const PALETTE = ['#e06c75', '#61afef', '#98c379', '#c678dd', '#e5c07b', '#56b6c2'];

export function colourIndex(clientId: number): number {
  return ((clientId % PALETTE.length) + PALETTE.length) % PALETTE.length;
}

/** The document as far as clamping needs it. */
export interface LineSource {
  lineCount: number;
  lineLength(line: number): number;
}

/**
 * Clamps a position to the document: a cursor can arrive computed on a
 * slightly different text (edits in flight), and VS Code would otherwise
 * throw or draw past the end.
 */
export function clamp(pos: Position, doc: LineSource): Position {
  const lastLine = Math.max(doc.lineCount - 1, 0);
  if (pos.line > lastLine) {
    return { line: lastLine, character: doc.lineLength(lastLine) };
  }
  const line = Math.max(pos.line, 0);
  return { line, character: Math.min(Math.max(pos.character, 0), doc.lineLength(line)) };
}

function before(a: Position, b: Position): boolean {
  return a.line < b.line || (a.line === b.line && a.character < b.character);
}

function same(a: Position, b: Position): boolean {
  return a.line === b.line && a.character === b.character;
}

export function cursorMarks(params: RemoteCursorParams, doc: LineSource): CursorMarks {
  const selections: PlainRange[] = [];
  const carets: PlainRange[] = [];
  for (const sel of params.selections ?? []) {
    const head = clamp(sel.head, doc);
    const anchor = clamp(sel.anchor, doc);
    if (!same(head, anchor)) {
      selections.push(before(head, anchor) ? { start: head, end: anchor } : { start: anchor, end: head });
    }
    carets.push({ start: head, end: head });
  }
  const first = carets[0];
  const eol = first && { line: first.start.line, character: doc.lineLength(first.start.line) };
  return { selections, carets, label: eol && { start: eol, end: eol }, colour: colourIndex(params.clientId) };
}
