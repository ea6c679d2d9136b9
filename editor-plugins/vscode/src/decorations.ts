// Draws collaborators' cursors, selections and name labels as editor
// decorations, from the plain ranges cursors.ts computes.

import * as vscode from 'vscode';

import { cursorMarks, PALETTE, type CursorMarks, type PlainRange } from './cursors';
import type { RemoteCursorParams } from './protocol';

interface Placed {
  uri: string;
  name: string;
  params: RemoteCursorParams;
}

function toRange(range: PlainRange): vscode.Range {
  return new vscode.Range(range.start.line, range.start.character, range.end.line, range.end.character);
}

export class CursorLayer implements vscode.Disposable {
  /** One decoration type per palette colour and kind: types are costly, people are few. */
  private readonly selectionTypes = PALETTE.map((colour) =>
    vscode.window.createTextEditorDecorationType({
      backgroundColor: `${colour}55`,
      rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
    }),
  );
  private readonly caretTypes = PALETTE.map((colour) =>
    vscode.window.createTextEditorDecorationType({
      // An empty range draws nothing by itself; a zero-width box before
      // the position with a border shows as a thin caret.
      before: { contentText: '\u200b', border: `1px solid ${colour}`, margin: '0 -2px 0 0' },
      rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
    }),
  );
  private readonly labelTypes = PALETTE.map(() =>
    vscode.window.createTextEditorDecorationType({
      rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
    }),
  );
  /** The latest cursor notification per hub client id. */
  private readonly placed = new Map<number, Placed>();

  update(params: RemoteCursorParams): void {
    const previous = this.placed.get(params.clientId);
    this.placed.set(params.clientId, { uri: params.uri, name: params.name, params });
    this.redraw(previous?.uri, params.uri);
  }

  clear(clientId: number): void {
    const previous = this.placed.get(clientId);
    this.placed.delete(clientId);
    if (previous) {
      this.redraw(previous.uri);
    }
  }

  clearAll(): void {
    this.placed.clear();
    this.redraw();
  }

  /** Where a person's first cursor is, for follow mode. */
  positionOf(name: string): { uri: string; range: vscode.Range } | undefined {
    for (const placed of this.placed.values()) {
      const head = placed.params.selections?.[0]?.head;
      if (placed.name === name && head) {
        return { uri: placed.uri, range: new vscode.Range(head.line, head.character, head.line, head.character) };
      }
    }
    return undefined;
  }

  /** Redraws editors showing the given documents, or every visible one. */
  redraw(...uris: (string | undefined)[]): void {
    const wanted = new Set(uris.filter((u): u is string => u !== undefined));
    for (const editor of vscode.window.visibleTextEditors) {
      const uri = editor.document.uri.toString();
      if (wanted.size === 0 || wanted.has(uri)) {
        this.draw(editor);
      }
    }
  }

  private draw(editor: vscode.TextEditor): void {
    const doc = editor.document;
    const uri = doc.uri.toString();
    const lines = { lineCount: doc.lineCount, lineLength: (line: number) => doc.lineAt(line).text.length };
    const selections: vscode.Range[][] = PALETTE.map(() => []);
    const carets: vscode.Range[][] = PALETTE.map(() => []);
    const labels: vscode.DecorationOptions[][] = PALETTE.map(() => []);
    for (const placed of this.placed.values()) {
      if (placed.uri !== uri) {
        continue;
      }
      const marks: CursorMarks = cursorMarks(placed.params, lines);
      selections[marks.colour].push(...marks.selections.map(toRange));
      carets[marks.colour].push(...marks.carets.map(toRange));
      if (marks.label) {
        labels[marks.colour].push({
          range: toRange(marks.label),
          hoverMessage: `Chorus: ${placed.name}`,
          renderOptions: {
            after: {
              contentText: ` ${placed.name} `,
              backgroundColor: PALETTE[marks.colour],
              color: '#000000',
              fontWeight: 'bold',
              margin: '0 0 0 1em',
            },
          },
        });
      }
    }
    PALETTE.forEach((_, i) => {
      editor.setDecorations(this.selectionTypes[i], selections[i]);
      editor.setDecorations(this.caretTypes[i], carets[i]);
      editor.setDecorations(this.labelTypes[i], labels[i]);
    });
  }

  dispose(): void {
    for (const type of [...this.selectionTypes, ...this.caretTypes, ...this.labelTypes]) {
      type.dispose();
    }
  }
}
