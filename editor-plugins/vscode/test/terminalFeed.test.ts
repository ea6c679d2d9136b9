// A view of the shared terminal: what it shows of the replay and live
// output, the size it shows the terminal at, and the order its requests go.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { TerminalOutputParams, TerminalStartedParams } from '../src/protocol';
import { RESET, RequestQueue, SizeFollower, TerminalFeed, type TerminalRequest } from '../src/terminalFeed';

function started(terminalId = 1, cols = 80, rows = 24): TerminalStartedParams {
  return { terminalId, clientId: 7, name: 'Ada', cols, rows };
}

function live(seq: number, data: string, terminalId = 1): TerminalOutputParams {
  return { terminalId, seq, data };
}

function replay(seq: number, data: string, terminalId = 1): TerminalOutputParams {
  return { terminalId, seq, data, replay: true };
}

test('the replay, then live output from its seq on', () => {
  const feed = new TerminalFeed();
  assert.equal(feed.started(started()), false);
  let shown = feed.output(replay(3, '$ ls\r\na b\r\n$ '));
  shown += feed.output(live(3, 'e')) + feed.output(live(4, 'cho'));
  assert.equal(shown, '$ ls\r\na b\r\n$ echo');
});

test('live output before the replay is inside it and shows once', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  // Everyone's output, sent before the hub answered this view with the replay.
  assert.equal(feed.output(live(0, '$ ')), '');
  assert.equal(feed.output(live(1, 'l')), '');
  assert.equal(feed.output(replay(2, '$ l')), '$ l');
  assert.equal(feed.output(live(2, 's')), 's');
});

test('live output that overtook its replay is shown after it, in seq order', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  feed.output(live(5, 'c'));
  feed.output(live(4, 'b'));
  feed.output(live(2, 'old'));
  assert.equal(feed.output(replay(4, 'a')), 'abc');
  assert.equal(feed.output(live(5, 'c')), '', 'a repeat is dropped');
  assert.equal(feed.output(live(6, 'd')), 'd');
});

test("another terminal's output and a replay for it are not this view's", () => {
  const feed = new TerminalFeed();
  feed.started(started(2));
  feed.output(live(0, 'x', 1));
  assert.equal(feed.output(replay(0, 'other', 1)), '');
  assert.equal(feed.output(replay(1, 'mine', 2)), 'mine');
  assert.equal(feed.output(live(1, '!', 1)), '');
  assert.equal(feed.output(live(1, '!', 2)), '!');
});

test('a replay after a reconnect redraws the screen from scratch', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  feed.output(replay(0, '$ '));
  feed.output(live(0, 'ls'));
  // The proxy rejoined the hub: the hub's terminalStarted is unasked for.
  assert.equal(feed.started(started()), true, 'ask for the replay again');
  assert.equal(feed.output(live(4, '$ ')), '', 'waits for the replay');
  assert.equal(feed.output(replay(5, '$ ls\r\nx\r\n$ ')), `${RESET}$ ls\r\nx\r\n$ `);
  assert.equal(feed.output(live(4, '$ ')), '', 'inside the replay');
  assert.equal(feed.output(live(5, 'y')), 'y');
});

test('the terminalStarted answering its own request asks for nothing more', () => {
  const feed = new TerminalFeed();
  // Someone's terminal opened as this view asked for the session's: the
  // broadcast and the answer both arrive before the replay.
  assert.equal(feed.started(started()), false);
  assert.equal(feed.started(started()), false);
  assert.equal(feed.output(replay(0, '$ ')), '$ ');
});

test('a new terminal while this one was live: follow it, with its replay', () => {
  const feed = new TerminalFeed();
  feed.started(started(1));
  feed.output(replay(0, 'one'));
  assert.equal(feed.started(started(2)), true);
  assert.equal(feed.terminalId, 2);
  assert.equal(feed.output(live(9, 'late', 1)), '');
  assert.equal(feed.output(replay(0, 'two', 2)), `${RESET}two`);
});

test('the end is written once, and nothing after it', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  feed.output(replay(0, '$ '));
  assert.equal(feed.end({ terminalId: 9, reason: 'not this one' }), '');
  assert.equal(feed.ended, false);
  assert.equal(feed.end({ terminalId: 1, reason: 'stopped by Ada' }), '\r\n[terminal ended: stopped by Ada]\r\n');
  assert.equal(feed.ended, true);
  assert.equal(feed.end({ terminalId: 1, reason: 'again' }), '');
  assert.equal(feed.output(live(0, 'x')), '');
  assert.equal(feed.started(started(2)), false, 'a later Open makes a new view');
  assert.equal(feed.close('you left the session'), '');
});

test('the view shows the terminal at its size until this user types', () => {
  const sizes = new SizeFollower();
  sizes.opened({ cols: 120, rows: 40 });
  assert.equal(sizes.terminalSized({ cols: 120, rows: 40 }), undefined, 'our own size: nothing to force');
  assert.deepEqual(sizes.terminalSized({ cols: 80, rows: 24 }), { cols: 80, rows: 24 });
  assert.equal(sizes.terminalSized({ cols: 80, rows: 24 }), undefined, 'already forced');
  assert.equal(sizes.viewSized({ cols: 80, rows: 24 }), undefined, 'the forced size is not ours to send');
  assert.equal(sizes.typing(), null, 'typing lifts it');
  assert.equal(sizes.typing(), undefined);
  assert.equal(sizes.viewSized({ cols: 120, rows: 40 }), undefined, 'back to our size, which the hub has');
  assert.deepEqual(sizes.viewSized({ cols: 100, rows: 40 }), { cols: 100, rows: 40 });
  assert.deepEqual(sizes.size, { cols: 100, rows: 40 });
});

test("the terminal taking this view's size lifts the forced one", () => {
  const sizes = new SizeFollower();
  sizes.opened({ cols: 100, rows: 30 });
  sizes.terminalSized({ cols: 60, rows: 20 });
  assert.equal(sizes.terminalSized({ cols: 100, rows: 30 }), null);
});

test('requests go one at a time, in order, keystrokes gathered meanwhile', async () => {
  const sent: TerminalRequest[] = [];
  const answers: (() => void)[] = [];
  const queue = new RequestQueue((request) => {
    sent.push(request);
    return new Promise<void>((resolve) => answers.push(resolve));
  });
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  queue.push({ kind: 'open', size: { cols: 80, rows: 24 } });
  queue.push({ kind: 'input', data: 'l' });
  queue.push({ kind: 'input', data: 's' });
  queue.push({ kind: 'resize', size: { cols: 90, rows: 24 } });
  queue.push({ kind: 'resize', size: { cols: 100, rows: 24 } });
  queue.push({ kind: 'input', data: '\r' });
  assert.equal(sent.length, 1, 'one in flight');
  for (let i = 0; i < 4; i++) {
    answers[i]();
    await settle();
  }
  assert.deepEqual(sent, [
    { kind: 'open', size: { cols: 80, rows: 24 } },
    { kind: 'input', data: 'ls' },
    { kind: 'resize', size: { cols: 100, rows: 24 } },
    { kind: 'input', data: '\r' },
  ]);
  queue.dispose();
  queue.push({ kind: 'input', data: 'x' });
  assert.equal(sent.length, 4, 'nothing after dispose');
});
