// Decoration ranges from chorus/cursor params.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { clamp, colourIndex, cursorMarks, PALETTE, type LineSource } from '../src/cursors';

function lines(text: string): LineSource {
  const all = text.split('\n');
  return { lineCount: all.length, lineLength: (line) => all[line].length };
}

const at = (line: number, character: number) => ({ line, character });

test('a bare cursor gives a caret and a label at the end of its line, no selection', () => {
  const marks = cursorMarks(
    { clientId: 1, name: 'Bo', uri: 'file:///a', selections: [{ anchor: at(0, 2), head: at(0, 2) }] },
    lines('hello\nworld'),
  );
  assert.deepEqual(marks.selections, []);
  assert.deepEqual(marks.carets, [{ start: at(0, 2), end: at(0, 2) }]);
  assert.deepEqual(marks.label, { start: at(0, 5), end: at(0, 5) });
  assert.equal(marks.colour, 1);
});

test('a backwards selection is drawn start to end with the caret at its head', () => {
  const marks = cursorMarks(
    { clientId: 0, name: 'Bo', uri: 'file:///a', selections: [{ anchor: at(1, 3), head: at(0, 1) }] },
    lines('hello\nworld'),
  );
  assert.deepEqual(marks.selections, [{ start: at(0, 1), end: at(1, 3) }]);
  assert.deepEqual(marks.carets, [{ start: at(0, 1), end: at(0, 1) }]);
  assert.deepEqual(marks.label, { start: at(0, 5), end: at(0, 5) });
});

test('several selections: one caret each, one label for the first', () => {
  const marks = cursorMarks(
    {
      clientId: 2,
      name: 'Bo',
      uri: 'file:///a',
      selections: [
        { anchor: at(1, 0), head: at(1, 2) },
        { anchor: at(0, 0), head: at(0, 0) },
      ],
    },
    lines('ab\ncd'),
  );
  assert.equal(marks.carets.length, 2);
  assert.deepEqual(marks.selections, [{ start: at(1, 0), end: at(1, 2) }]);
  assert.deepEqual(marks.label, { start: at(1, 2), end: at(1, 2) });
});

test('positions past the text are clamped to it', () => {
  const doc = lines('ab\ncd');
  assert.deepEqual(clamp(at(9, 9), doc), at(1, 2));
  assert.deepEqual(clamp(at(0, 40), doc), at(0, 2));
  assert.deepEqual(clamp(at(-1, -1), doc), at(0, 0));
  assert.deepEqual(clamp(at(0, 0), lines('')), at(0, 0));
});

test('no selections means nothing to draw', () => {
  const marks = cursorMarks({ clientId: 3, name: 'Bo', uri: 'file:///a', selections: [] }, lines('x'));
  assert.deepEqual(marks.carets, []);
  assert.equal(marks.label, undefined);
});

test('colours are stable per client id and stay in the palette', () => {
  for (const id of [0, 1, 5, 6, 1234567]) {
    const i = colourIndex(id);
    assert.ok(i >= 0 && i < PALETTE.length);
    assert.equal(colourIndex(id), i);
  }
  assert.equal(colourIndex(6), colourIndex(0));
});
