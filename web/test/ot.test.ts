// web/src/ot.ts and client.ts against editor-plugins/fixtures/ot.json,
// computed by chorus-protocol (protocol/tests/ot_fixture.rs): the browser
// client and the hub must agree on every apply, compose and transform,
// on texts with characters outside the BMP.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Text, ChangeSet } from '@codemirror/state';
import { apply, charCount, compose, transform, type WireOp } from '../src/ot.js';
import { OtClient } from '../src/client.js';
import { changesToOp, opToChanges } from '../src/cm.js';
import { checksum } from '../src/text.js';

const here = dirname(fileURLToPath(import.meta.url));
interface Fixture {
  apply: { text: string; op: WireOp; result: string }[];
  compose: { text: string; a: WireOp; b: WireOp; composed: WireOp; result: string }[];
  transform: { text: string; a: WireOp; b: WireOp; aPrime: WireOp; bPrime: WireOp; result: string }[];
  checksum: { text: string; hash: string }[];
}
// out/test/ at run time: the repository root is three levels up.
const fixture = JSON.parse(
  readFileSync(join(here, '../../../editor-plugins/fixtures/ot.json'), 'utf8'),
) as Fixture;

test('the fixture has cases with characters outside the BMP', () => {
  const all = fixture.apply.map((c) => c.text).join('');
  assert.ok(all.length > charCount(all), 'some text has surrogate pairs');
  assert.ok(fixture.apply.length >= 50 && fixture.transform.length >= 50);
});

test('apply gives what Rust gives', () => {
  for (const c of fixture.apply) assert.equal(apply(c.text, c.op), c.result, JSON.stringify(c));
});

test('compose gives what Rust gives', () => {
  for (const c of fixture.compose) {
    assert.deepEqual(compose(c.a, c.b), c.composed, JSON.stringify(c));
    assert.equal(apply(c.text, c.composed), c.result);
  }
});

test('transform gives what Rust gives, ties to the first op', () => {
  for (const c of fixture.transform) {
    const [aPrime, bPrime] = transform(c.a, c.b);
    assert.deepEqual(aPrime, c.aPrime, JSON.stringify(c));
    assert.deepEqual(bPrime, c.bPrime, JSON.stringify(c));
    assert.equal(apply(apply(c.text, c.b), aPrime), c.result);
  }
});

test('checksum is text::checksum', () => {
  assert.ok(fixture.checksum.length > 0);
  for (const c of fixture.checksum) assert.equal(checksum(c.text), c.hash, JSON.stringify(c.text));
});

test('CodeMirror changes and ops convert both ways through UTF-16', () => {
  for (const c of fixture.apply) {
    // LF only, as the page configures CodeMirror: a CR stays a character.
    const before = Text.of(c.text.split('\n'));
    const changes = ChangeSet.of(opToChanges(c.text, c.op), before.length);
    assert.equal(changes.apply(before).toString(), c.result, JSON.stringify(c));
    assert.equal(apply(c.text, changesToOp(before, changes)), c.result);
  }
});

test('the OT client transforms remote ops against pending ones', () => {
  // Each client's op is pending while the hub orders the other's first.
  for (const c of fixture.transform) {
    const a = new OtClient(0);
    assert.deepEqual(a.local(c.a), { rev: 0, op: c.a });
    const forA = a.remote(1, c.b);
    assert.equal(apply(apply(c.text, c.a), forA), c.result);
    assert.equal(a.ack(2), undefined);
    assert.ok(a.synchronized);
  }
  // A buffered op goes out on the ack, based on the acked revision.
  const client = new OtClient(3);
  client.local(['x', 1]);
  assert.equal(client.local([1, '😀', 1]), undefined);
  assert.equal(client.local([3, 'y']), undefined);
  assert.deepEqual(client.ack(4), { rev: 4, op: [1, '😀', 1, 'y'] });
});
