// A view of the shared terminal: what it shows of live output and
// replays, the size it shows the terminal at, and the order its requests go.
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

test('a terminal that just opened: live output from seq 0, no replay', () => {
  const feed = new TerminalFeed();
  assert.equal(feed.started(started()), '');
  const shown = feed.output(live(0, '$ ')) + feed.output(live(1, 'ls'));
  assert.equal(shown, '$ ls');
  assert.equal(feed.output(live(1, 'ls')), '', 'a repeat is dropped');
});

test('joining an open terminal: the replay, then live output from its seq on', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  let shown = feed.output(replay(3, '$ ls\r\na b\r\n$ '));
  shown += feed.output(live(3, 'e')) + feed.output(live(4, 'cho'));
  assert.equal(shown, '$ ls\r\na b\r\n$ echo');
});

test('live output shown before the replay is inside it: the replay redraws the screen', () => {
  const feed = new TerminalFeed();
  // Everyone's output, sent before the hub answered this view.
  assert.equal(feed.output(live(4, '$ l')), '$ l');
  assert.equal(feed.started(started()), '');
  assert.equal(feed.output(replay(5, 'x\r\n$ l')), `${RESET}x\r\n$ l`);
  assert.equal(feed.output(live(4, '$ l')), '', 'inside the replay');
  assert.equal(feed.output(live(5, 's')), 's');
});

test('live output newer than a replay that came after it is drawn again after the replay', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  assert.equal(feed.output(live(6, 'b')) + feed.output(live(5, 'a')), 'b', 'older than what is shown');
  assert.equal(feed.output(replay(6, '$ ')), `${RESET}$ b`);
  assert.equal(feed.output(live(7, 'c')), 'c');
});

test('an editor that rejoins gets a replay that replaces the screen', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  feed.output(live(0, '$ '));
  feed.output(live(1, 'ls'));
  // Away from the hub meanwhile: seq 2 to 8 never came.
  assert.equal(feed.started(started()), '', 'the same terminal');
  assert.equal(feed.output(replay(9, '$ ls\r\nx\r\n$ ')), `${RESET}$ ls\r\nx\r\n$ `);
  assert.equal(feed.output(live(9, 'y')), 'y');
});

test("another terminal's messages are not this view's", () => {
  const feed = new TerminalFeed();
  feed.started(started(2));
  assert.equal(feed.output(live(0, 'x', 1)), '');
  assert.equal(feed.output(replay(0, 'other', 1)), '');
  assert.equal(feed.output(live(0, 'mine', 2)), 'mine');
  assert.equal(feed.end({ terminalId: 1, reason: 'not this one' }), '');
  assert.equal(feed.ended, false);
});

test('a new terminal while this one was shown: its end was missed, the screen is cleared for the new one', () => {
  const feed = new TerminalFeed();
  feed.started(started(1));
  feed.output(live(0, 'one'));
  assert.equal(feed.started(started(2)), RESET);
  assert.equal(feed.terminalId, 2);
  assert.equal(feed.output(live(1, 'late', 1)), '');
  assert.equal(feed.output(live(0, 'two', 2)), 'two');
});

test('the end is written once, and nothing after it', () => {
  const feed = new TerminalFeed();
  feed.started(started());
  feed.output(live(0, '$ '));
  assert.equal(feed.end({ terminalId: 1, reason: 'stopped by Ada' }), '\r\n[terminal ended: stopped by Ada]\r\n');
  assert.equal(feed.ended, true);
  assert.equal(feed.end({ terminalId: 1, reason: 'again' }), '');
  assert.equal(feed.output(live(0, 'x')), '');
  assert.equal(feed.started(started(2)), '', 'a later Open makes a new view');
  assert.equal(feed.close('you left the session'), '');
});

test('the view shows the terminal at its size until this user types', () => {
  const sizes = new SizeFollower();
  sizes.opened({ cols: 120, rows: 40 });
  assert.equal(sizes.terminalSized({ cols: 120, rows: 40 }), undefined, 'our own size: nothing to force');
  assert.deepEqual(sizes.terminalSized({ cols: 80, rows: 24 }), { cols: 80, rows: 24 });
  assert.equal(sizes.terminalSized({ cols: 80, rows: 24 }), undefined, 'already forced');
  assert.equal(sizes.viewSized({ cols: 80, rows: 24 }), undefined, 'the forced size is not ours to send');
  assert.equal(sizes.release(), null, 'typing lifts it');
  assert.equal(sizes.release(), undefined);
  assert.equal(sizes.viewSized({ cols: 120, rows: 40 }), undefined, 'back to our size, which the hub has');
  assert.deepEqual(sizes.viewSized({ cols: 100, rows: 40 }), { cols: 100, rows: 40 });
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
