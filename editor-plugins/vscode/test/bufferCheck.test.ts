// When the extension asks the proxy to put the session's text back.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { compare, MAX_CHARS } from '../src/bufferCheck';
import type { DocumentState } from '../src/protocol';

const state = (text: string, version: number, synchronized = true): DocumentState => ({
  text,
  rev: 3,
  synchronized,
  joined: true,
  version,
});

test('a document equal to the proxy copy at the same version is the same', () => {
  assert.equal(compare('a\n', 7, 7, state('a\n', 7)), 'same');
});

test('a document that differs at the same version differs', () => {
  assert.equal(compare('ab\n', 7, 7, state('a\n', 7)), 'differs');
});

test('nothing is decided across versions, in flight, unshared or huge', () => {
  assert.equal(compare('ab\n', 7, 7, state('a\n', 6)), 'skip');
  assert.equal(compare('ab\n', 7, 8, state('a\n', 7)), 'skip', 'typed while asking');
  assert.equal(compare('ab\n', 7, 7, state('a\n', 7, false)), 'skip');
  assert.equal(compare('ab\n', 7, 7, null), 'skip');
  const huge = 'x'.repeat(MAX_CHARS + 1);
  assert.equal(compare(huge, 7, 7, state('', 7)), 'skip');
});
