// The page's merge by text (web/src/merge.ts): the diff reproduces its
// target exactly, and the page's offline edits land on the hub's newer
// text without undoing anyone's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apply } from '../src/ot.js';
import { diff, rebaseByText } from '../src/merge.js';

test('diff turns one text into the other, characters outside the BMP included', () => {
  let x = 0x2545f4914f6cdd1dn;
  const rand = (n: number) => {
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    return Number(x % BigInt(n));
  };
  const alphabet = ['a', 'b', '\n', '😀', '𠀀', 'Ж'];
  const word = (len: number) => Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join('');
  for (let round = 0; round < 300; round++) {
    const a = word(rand(40));
    const b = word(rand(40));
    assert.equal(apply(a, diff(a, b)), b, `${JSON.stringify(a)} → ${JSON.stringify(b)}`);
  }
});

test('offline typing lands on the hub text, the others\' edits kept', () => {
  const base = 'def main():\n    print(1)\n';
  const mine = 'X def main():\n    print(1) # 😀\n';
  const theirs = 'def main():\n    return\n    print(1)\n';
  const { send, local } = rebaseByText(base, mine, theirs);
  const merged = apply(theirs, send);
  assert.equal(merged, 'X def main():\n    return\n    print(1) # 😀\n');
  assert.equal(apply(mine, local), merged, 'the page reaches the same text');
});

test('text the hub deleted is not brought back by the page', () => {
  const base = 'one two three';
  const mine = 'one two three four';
  const theirs = 'one three';
  assert.equal(apply(theirs, rebaseByText(base, mine, theirs).send), 'one three four');
});
