// The cursor throttle: first at once, then at most one per period, last wins.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Throttle } from '../src/throttle';

test('sends the first at once and the last after the period, dropping the middle', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const sent: number[] = [];
  const throttle = new Throttle<number>(50, (v) => sent.push(v));
  throttle.push(1);
  throttle.push(2);
  throttle.push(3);
  assert.deepEqual(sent, [1]);
  t.mock.timers.tick(50);
  assert.deepEqual(sent, [1, 3]);
  t.mock.timers.tick(50);
  assert.deepEqual(sent, [1, 3]);
  throttle.push(4);
  assert.deepEqual(sent, [1, 3, 4]);
  throttle.dispose();
  throttle.push(5);
  assert.deepEqual(sent, [1, 3, 4, 5]);
  throttle.dispose();
});
