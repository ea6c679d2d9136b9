// Presence bookkeeping and the status bar line.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SessionState, statusText, statusTooltip, whoLines } from '../src/status';

function joined(state: SessionState, clientId: number, name: string, editor?: string): string | undefined {
  return state.onPresence({ event: 'joined', participant: { clientId, name, editor } });
}

test('outside a session the status invites to join', () => {
  const state = new SessionState();
  assert.equal(statusText(state), '$(broadcast) Chorus');
  assert.match(statusTooltip(state, ''), /not in a session/);
});

test('the status counts me plus everyone present and says when offline', () => {
  const state = new SessionState();
  state.session = 'demo';
  assert.equal(statusText(state), '$(broadcast) demo · 1 person · offline');
  state.connected = true;
  assert.equal(statusText(state), '$(broadcast) demo · 1 person');
  assert.equal(joined(state, 4, 'Bo', 'Neovim'), 'Bo joined');
  assert.equal(statusText(state), '$(broadcast) demo · 2 people');
  assert.equal(state.onPresence({ event: 'left', clientId: 4, name: 'Bo' }), 'Bo left');
  assert.equal(statusText(state), '$(broadcast) demo · 1 person');
});

test('a cursor from someone unseen counts them as present, once', () => {
  const state = new SessionState();
  state.session = 'demo';
  state.connected = true;
  state.onCursorFrom(9, 'Cy');
  state.onCursorFrom(9, 'Cy');
  assert.equal(statusText(state), '$(broadcast) demo · 2 people');
});

test('runs and follow show in the status', () => {
  const state = new SessionState();
  state.session = 'demo';
  state.connected = true;
  joined(state, 2, 'Bo');
  state.following = 'Bo';
  state.onRunStarted({ runId: 3, name: 'Bo', doc: 'main.py' });
  assert.equal(statusText(state), '$(broadcast) demo · 2 people · following Bo · running #3');
  state.onRunFinished({ runId: 3, summary: 'exited with code 0 in 0.12 s' });
  assert.equal(statusText(state), '$(broadcast) demo · 2 people · following Bo · run #3: exited with code 0 in 0.12 s');
});

test('someone leaving stops following them', () => {
  const state = new SessionState();
  state.session = 'demo';
  joined(state, 2, 'Bo');
  state.following = 'Bo';
  state.onPresence({ event: 'left', clientId: 2 });
  assert.equal(state.following, undefined);
});

test('who lists people sorted, with their editor', () => {
  const state = new SessionState();
  state.session = 'demo';
  assert.deepEqual(whoLines(state, ''), ['session demo · you: (default name)', 'nobody else seen yet']);
  joined(state, 7, 'Zoe', 'Helix');
  joined(state, 3, 'Al');
  assert.deepEqual(whoLines(state, 'Ada'), ['session demo · you: Ada', 'Al (#3)', 'Zoe · Helix (#7)']);
  assert.deepEqual(state.names(), ['Al', 'Zoe']);
});

test('reset forgets everything', () => {
  const state = new SessionState();
  state.session = 'demo';
  joined(state, 1, 'A');
  state.reset();
  assert.equal(state.session, undefined);
  assert.equal(state.people.size, 0);
});

test('the hub link shows: read-only, offline and back, refused', () => {
  const state = new SessionState();
  state.session = 'demo';
  state.connected = true;
  assert.equal(state.onConnection({ state: 'online', session: 'demo', role: 'readOnly' }), undefined);
  assert.equal(statusText(state), '$(broadcast) demo · 1 person · read-only');
  assert.match(state.onConnection({ state: 'offline', reason: 'connection lost' }) ?? '', /offline/);
  assert.equal(statusText(state), '$(broadcast) demo · 1 person · read-only · offline');
  assert.equal(state.onConnection({ state: 'online', role: 'editor' }), 'back online');
  assert.equal(statusText(state), '$(broadcast) demo · 1 person');
  assert.match(state.onConnection({ state: 'refused', reason: 'wrong token' }) ?? '', /wrong token/);
  assert.equal(statusText(state), '$(broadcast) demo · 1 person · refused');
});

test('our hub id is the one of the latest connection', () => {
  const state = new SessionState();
  state.onConnection({ state: 'online', role: 'editor', clientId: 3 });
  assert.equal(state.clientId, 3);
  state.onConnection({ state: 'offline', reason: 'connection lost' });
  state.onConnection({ state: 'online', role: 'editor', clientId: 8 });
  assert.equal(state.clientId, 8);
  state.reset();
  assert.equal(state.clientId, undefined);
});
