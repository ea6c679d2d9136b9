// The browser door: the page `chorus hub` serves at /s/SESSION. It speaks
// the hub's protocol (protocol/src/wire.rs) over a WebSocket to the hub
// that served it, like `chorus lsp` does, with CodeMirror 6 as the editor.
//
// The token comes from the URL fragment (`#token=…`), which browsers never
// send to a server, so it stays out of access logs and Referer headers.

import { Annotation, Compartment, EditorState, StateEffect, StateField, Transaction, type Range } from '@codemirror/state';
import { Decoration, type DecorationSet, EditorView, keymap, lineNumbers, drawSelection, WidgetType } from '@codemirror/view';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { OtClient } from './client.js';
import { changesToOp, charToUnit, opToChanges } from './cm.js';
import { apply, charCount, isNoop, type WireOp } from './ot.js';
import { checksum } from './text.js';
import { rebaseByText } from './merge.js';
import { TerminalView } from './terminal.js';

const PROTOCOL_VERSION = 1;

/// Edits that came from the hub: not sent back, not undoable here.
const fromHub = Annotation.define<boolean>();

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

interface Participant {
  clientId: number;
  name: string;
  editor?: string;
}

/// The document open in the editor and its OT client.
interface OpenDoc {
  path: string;
  client: OtClient;
  view: EditorView;
  /// This page's ops on this document are numbered from 1 (`seq`), so
  /// that after a reconnect the hub's history tells which got in (ADR 0002).
  seq: number;
  /// The `seq` of the op outstanding at the hub, if any.
  outstandingSeq?: number;
  /// Between a rejoin's `open{since}` and its `opened`: nothing is sent.
  rejoining: boolean;
  checksumTimer?: number;
}

const session = decodeURIComponent(location.pathname.replace(/^\/s\//, '').replace(/\/$/, ''));
const fragment = new URLSearchParams(location.hash.slice(1));
/// Stable for the life of this page, across reconnects (`hello.instance`).
const instance = `web-${crypto.randomUUID()}`;

let ws: WebSocket | undefined;
let joined = false;
let name = '';
let token = '';
let clientId = 0;
let role: 'editor' | 'readOnly' = 'editor';
let runState = 'no run';
let retryDelay = 250;
let fatal = false;
let doc: OpenDoc | undefined;
/// The file asked for with `open`, until its `opened` arrives.
let pendingOpen: string | undefined;
/// Everyone's last `cursor` message, shown when their file opens here.
const lastCursors = new Map<number, { clientId: number; name: string; doc: string; rev: number; selections: { anchor: number; head: number }[] }>();
/// The participant whose file and caret this page follows, if any.
let following: number | undefined;
const participants = new Map<number, Participant>();
const readOnly = new Compartment();
let terminal: TerminalView | undefined;

function send(msg: object): boolean {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  return true;
}

function online(): boolean {
  return joined && ws?.readyState === WebSocket.OPEN;
}

function status(connection?: string): void {
  if (connection) $('status').dataset.connection = connection;
  const conn = $('status').dataset.connection ?? 'offline';
  const sync = doc ? (doc.client.synchronized ? 'saved to hub' : 'sending…') : '';
  const roleText = joined ? (role === 'readOnly' ? 'read-only' : 'editor') : '';
  $('status').textContent = [conn, roleText, runState, sync].filter(Boolean).join(' · ');
  document.body.dataset.connection = conn;
  document.body.dataset.synchronized = String(doc?.client.synchronized ?? false);
}

function connect(): void {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(`${scheme}//${location.host}/ws/${encodeURIComponent(session)}`);
  status('connecting');
  ws.onopen = () => {
    retryDelay = 250;
    send({ type: 'hello', protocol: PROTOCOL_VERSION, session, name, editor: 'browser', instance, token: token || undefined });
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data as string));
  ws.onclose = () => {
    joined = false;
    ws = undefined;
    if (fatal) return;
    status('offline, reconnecting');
    // Typed text waits in the OT client meanwhile; it goes out on rejoin.
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 5000);
  };
}

// The hub's frames as protocol/src/wire.rs declares them (ServerMsg);
// read field by field below, so typed loosely here.
function receive(msg: any): void {
  switch (msg.type) {
    case 'welcome':
      joined = true;
      clientId = msg.clientId;
      role = msg.role ?? 'editor';
      participants.clear();
      for (const p of msg.participants as Participant[]) participants.set(p.clientId, p);
      document.body.dataset.role = role;
      $('join').hidden = true;
      $('workspace').hidden = false;
      $('readonly-note').hidden = role !== 'readOnly';
      ($('run') as HTMLButtonElement).disabled = role === 'readOnly';
      ($('terminal-open') as HTMLButtonElement).disabled = role === 'readOnly';
      ($('terminal-stop') as HTMLButtonElement).disabled = role === 'readOnly';
      $('terminal-readonly').hidden = role !== 'readOnly';
      terminal?.reconnected();
      terminal?.setTypable(role !== 'readOnly');
      renderPeople();
      status('connected');
      send({ type: 'files' });
      if (doc) {
        // Client ids are per connection: the cursors of the last one are
        // stale, whoever is still here will send theirs again.
        doc.view.dispatch({ effects: clearCursors.of(null) });
        lastCursors.clear();
        doc.rejoining = true;
        send({ type: 'open', doc: doc.path, text: '', since: doc.client.rev });
      }
      break;
    case 'files':
      renderFiles(msg.entries);
      break;
    case 'fileAdded':
    case 'renamed':
    case 'deleted':
      if (msg.type === 'renamed' && doc && under(doc.path, msg.from)) doc.path = msg.to + doc.path.slice(msg.from.length);
      if (msg.type === 'deleted' && doc && under(doc.path, msg.path)) {
        const who = participants.get(msg.clientId)?.name ?? 'someone';
        closeDoc(`${doc.path} was deleted by ${who}`);
      }
      send({ type: 'files' });
      break;
    case 'opened':
      opened(msg);
      break;
    case 'ack':
      if (doc?.path === msg.doc) {
        acked(msg.rev);
        status();
      }
      break;
    case 'remote':
      if (doc && doc.path === msg.doc && !doc.rejoining) {
        applyRemote(doc.client.remote(msg.rev, msg.op));
        scheduleChecksum();
      }
      break;
    case 'cursor':
      lastCursors.set(msg.clientId, msg);
      if (msg.clientId === following && doc?.path !== msg.doc) openDoc(msg.doc);
      if (doc?.path === msg.doc) showCursor(msg.clientId, msg.name, msg.rev, msg.selections);
      break;
    case 'joined':
      participants.set(msg.participant.clientId, msg.participant);
      renderPeople();
      break;
    case 'left':
      participants.delete(msg.clientId);
      lastCursors.delete(msg.clientId);
      doc?.view.dispatch({ effects: setCursor.of({ clientId: msg.clientId }) });
      renderPeople();
      break;
    case 'runStarted':
      runState = `running (${msg.name})`;
      $('output').textContent = `▶ ${msg.plan || msg.doc} (started by ${msg.name})\n`;
      status();
      break;
    case 'runOutput':
      $('output').append(document.createTextNode(msg.data));
      break;
    case 'runInput':
      if (msg.text) $('output').append(document.createTextNode(msg.text));
      break;
    case 'runFinished': {
      const r = msg.result;
      const how = r.error ?? (r.cancelled ? 'stopped' : r.timedOut ? 'timed out' : `exit code ${r.exitCode}`);
      $('output').append(document.createTextNode(`\n■ ${how}\n`));
      runState = `run finished: ${how}`;
      status();
      break;
    }
    case 'terminalStarted':
      terminal?.started(msg, clientId);
      break;
    case 'terminalOutput':
      terminal?.output(msg);
      break;
    case 'terminalEnded':
      terminal?.ended(msg);
      break;
    case 'error':
      showError(msg);
      // The hub would not take the outstanding op (too old to transform,
      // or not valid on its text): fetch its snapshot and merge by text
      // (rejoined), so what was typed here is not lost.
      if (doc && msg.doc === doc.path && ['stale_revision', 'invalid_op'].includes(msg.code)) {
        doc.rejoining = true;
        send({ type: 'open', doc: doc.path, text: '' });
      }
      break;
  }
}

function showError(msg: { code: string; message: string }): void {
  $('error').textContent = `${msg.code}: ${msg.message}`;
  $('error').hidden = false;
  if (['unauthorized', 'unknown_session', 'bad_session', 'incompatible_protocol'].includes(msg.code)) {
    fatal = true;
    ws?.close();
    status('refused');
    $('join').hidden = false;
  }
}

function renderFiles(entries: { path: string; notSynced?: string }[]): void {
  const list = $('file-list');
  list.replaceChildren();
  for (const entry of entries) {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = entry.path;
    button.dataset.path = entry.path;
    if (entry.notSynced) {
      button.disabled = true;
      button.title = `not synced: ${entry.notSynced}`;
    }
    if (doc?.path === entry.path) button.setAttribute('aria-current', 'true');
    button.onclick = () => openDoc(entry.path);
    item.append(button);
    list.append(item);
  }
}

function renderPeople(): void {
  const list = $('people');
  list.replaceChildren();
  if (following !== undefined && !participants.has(following)) following = undefined;
  const everyone = [{ clientId, name, editor: 'browser' }, ...[...participants.values()].filter((p) => p.clientId !== clientId)];
  for (const p of everyone) {
    const item = document.createElement('li');
    item.textContent = `${p.name}${p.editor ? ` (${p.editor})` : ''}${p.clientId === clientId ? ' — you' : ''}`;
    item.className = `who c${p.clientId % 6}`;
    if (p.clientId !== clientId) {
      // Following: their file opens here and their caret stays in view.
      const follow = document.createElement('button');
      follow.type = 'button';
      follow.textContent = 'Follow';
      follow.dataset.follow = p.name;
      follow.setAttribute('aria-pressed', String(following === p.clientId));
      follow.setAttribute('aria-label', `Follow ${p.name}`);
      follow.onclick = () => {
        following = following === p.clientId ? undefined : p.clientId;
        renderPeople();
      };
      item.append(' ', follow);
    }
    list.append(item);
  }
}

/// Whether `path` is `prefix` or lies under the directory `prefix`.
function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

function closeDoc(why: string): void {
  if (!doc) return;
  doc.view.destroy();
  doc = undefined;
  (window as unknown as { chorusView?: EditorView }).chorusView = undefined;
  $('doc-title').textContent = why;
  status();
}

function openDoc(path: string): void {
  if (doc?.path === path) return;
  if (doc) {
    send({ type: 'close', doc: doc.path });
    closeDoc(path);
  }
  $('doc-title').textContent = path;
  for (const b of $('file-list').querySelectorAll('button')) {
    b.toggleAttribute('aria-current', b.dataset.path === path);
  }
  send({ type: 'open', doc: path, text: '' });
  pendingOpen = path;
}

interface LoggedOp {
  rev: number;
  op: WireOp;
  instance?: string;
  seq?: number;
}

function opened(msg: { doc: string; rev: number; text: string; history?: LoggedOp[]; lastSeq?: number }): void {
  if (doc && doc.path === msg.doc && doc.rejoining) {
    rejoined(doc, msg);
    return;
  }
  if (doc && doc.path === msg.doc) {
    // A fresh snapshot after a checksum mismatch: the hub's text wins.
    replaceText(msg.text);
    doc.client = new OtClient(msg.rev, msg.text);
    doc.outstandingSeq = undefined;
    status();
    return;
  }
  if (pendingOpen !== msg.doc) return;
  pendingOpen = undefined;
  // CodeMirror styles itself with a <style> element in a document, which
  // the page's CSP (`style-src 'self'`) refuses; in a shadow root it uses
  // constructed stylesheets instead, which CSP does not govern.
  const host = $('editor');
  const root = host.shadowRoot ?? host.attachShadow({ mode: 'open' });
  const view = new EditorView({
    parent: root,
    root,
    state: EditorState.create({
      doc: msg.text,
      extensions: [
        // Only LF breaks lines, so a CR stays a character and every
        // offset counts what the hub counts.
        EditorState.lineSeparator.of('\n'),
        lineNumbers(),
        // Long lines wrap: on a phone, sideways scrolling hides the caret.
        EditorView.lineWrapping,
        history(),
        drawSelection(),
        cursors,
        theme,
        keymap.of([...defaultKeymap, ...historyKeymap]),
        readOnly.of(role === 'readOnly' ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : []),
        EditorView.contentAttributes.of({ 'aria-label': `${msg.doc}, shared with the session` }),
        EditorView.updateListener.of((update) => {
          for (const tr of update.transactions) {
            if (tr.docChanged && !tr.annotation(fromHub)) local(changesToOp(tr.startState.doc, tr.changes));
          }
          if (update.selectionSet || update.docChanged) scheduleCursor();
        }),
      ],
    }),
  });
  doc = { path: msg.doc, client: new OtClient(msg.rev, msg.text), view, seq: 0, rejoining: false };
  // For automation and debugging (the e2e test places the cursor with it).
  (window as unknown as { chorusView: EditorView }).chorusView = view;
  for (const c of lastCursors.values()) {
    if (c.doc === msg.doc && participants.has(c.clientId)) showCursor(c.clientId, c.name, c.rev, c.selections);
  }
  status();
}

/// Catches up after a reconnect (ADR 0002): the history replayed through
/// the OT client, this page's own outstanding op recognised by its `seq`.
function rejoined(d: OpenDoc, msg: { rev: number; text: string; history?: LoggedOp[]; lastSeq?: number }): void {
  d.rejoining = false;
  if (msg.history) {
    for (const logged of msg.history) {
      if (logged.instance === instance && logged.seq !== undefined && logged.seq === d.outstandingSeq) acked(logged.rev);
      else if (logged.instance === instance && logged.seq !== undefined && logged.seq < (d.outstandingSeq ?? 0)) continue;
      else applyRemote(d.client.remote(logged.rev, logged.op));
    }
    const s = d.client.state;
    if (s.kind !== 'synchronized') send({ type: 'op', doc: d.path, rev: d.client.rev, op: s.outstanding, seq: d.outstandingSeq });
  } else if (d.client.synchronized) {
    replaceText(msg.text);
    d.client = new OtClient(msg.rev, msg.text);
    d.outstandingSeq = undefined;
  } else {
    mergeByText(d, msg.rev, msg.text, msg.lastSeq);
  }
  status();
}

/// The hub cannot rebase this page's unacknowledged edits any more (its
/// history is gone, or it refused them): the page keeps its text, the
/// hub's snapshot becomes the base, and the page's edits since the last
/// text it knew the hub had go out as one new op on it (ADR 0011).
function mergeByText(d: OpenDoc, rev: number, theirs: string, lastSeq?: number): void {
  const mine = d.view.state.doc.toString();
  let merged: ReturnType<typeof rebaseByText> | undefined;
  try {
    let base = d.client.base;
    // The outstanding op got in before the connection went (its `seq` is
    // the hub's last from this page): it is in the hub's text already, so
    // it belongs to the base, or it would be typed twice.
    const s = d.client.state;
    if (base !== undefined && s.kind !== 'synchronized' && lastSeq !== undefined && d.outstandingSeq !== undefined && lastSeq >= d.outstandingSeq) {
      base = apply(base, s.outstanding);
    }
    if (base !== undefined) merged = rebaseByText(base, mine, theirs);
  } catch {
    // The page's idea of the hub's text was wrong (the op was invalid):
    // nothing to diff against; the hub's text wins.
  }
  d.client = new OtClient(rev, theirs);
  d.outstandingSeq = undefined;
  if (!merged) {
    showError({ code: 'resync', message: 'edits made offline could not be merged and were dropped' });
    replaceText(theirs);
    return;
  }
  applyRemote(merged.local);
  local(merged.send);
  // Counted where automation and the curious can see it (the e2e test).
  document.body.dataset.merges = String(Number(document.body.dataset.merges ?? 0) + 1);
}

function local(op: WireOp): void {
  if (!doc) return;
  if (isNoop(op)) return;
  const out = doc.client.local(op);
  if (out) {
    doc.outstandingSeq = ++doc.seq;
    // Offline or rejoining, it waits as the outstanding op: the rejoin
    // sends it if the hub's history does not hold it.
    if (online() && !doc.rejoining) send({ type: 'op', doc: doc.path, rev: out.rev, op: out.op, seq: doc.outstandingSeq });
  }
  status();
}

function acked(rev: number): void {
  if (!doc) return;
  const out = doc.client.ack(rev);
  doc.outstandingSeq = undefined;
  if (out) {
    doc.outstandingSeq = ++doc.seq;
    send({ type: 'op', doc: doc.path, rev: out.rev, op: out.op, seq: doc.outstandingSeq });
  }
  scheduleChecksum();
}

function applyRemote(op: WireOp): void {
  if (!doc) return;
  const text = doc.view.state.doc.toString();
  doc.view.dispatch({
    changes: opToChanges(text, op),
    annotations: [fromHub.of(true), Transaction.addToHistory.of(false)],
  });
}

function replaceText(text: string): void {
  if (!doc) return;
  doc.view.dispatch({
    changes: { from: 0, to: doc.view.state.doc.length, insert: text },
    annotations: [fromHub.of(true), Transaction.addToHistory.of(false)],
  });
}

/// Once quiet and synchronized, asks the hub whether both hold the same
/// text; a mismatch comes back as a fresh `opened`.
function scheduleChecksum(): void {
  if (!doc) return;
  const d = doc;
  clearTimeout(d.checksumTimer);
  d.checksumTimer = window.setTimeout(() => {
    if (doc === d && d.client.synchronized && online()) {
      send({ type: 'checksum', doc: d.path, rev: d.client.rev, hash: checksum(d.view.state.doc.toString()) });
    }
  }, 1000);
}

let cursorTimer: number | undefined;
function scheduleCursor(): void {
  clearTimeout(cursorTimer);
  cursorTimer = window.setTimeout(() => {
    // Offsets name the hub's text at `rev`: only meaningful with nothing pending.
    if (!doc || !doc.client.synchronized || !online()) return;
    const state = doc.view.state;
    const chars = (pos: number) => charCount(state.doc.sliceString(0, pos));
    const selections = state.selection.ranges.map((r) => ({ anchor: chars(r.anchor), head: chars(r.head) }));
    send({ type: 'cursor', doc: doc.path, rev: doc.client.rev, selections });
  }, 100);
}

interface RemoteCursor {
  clientId: number;
  name?: string;
  head?: number;
  from?: number;
  to?: number;
}
const setCursor = StateEffect.define<RemoteCursor>();
const clearCursors = StateEffect.define<null>();

class CursorWidget extends WidgetType {
  constructor(
    readonly name: string,
    readonly colour: number,
  ) {
    super();
  }
  eq(other: CursorWidget): boolean {
    return other.name === this.name && other.colour === this.colour;
  }
  toDOM(): HTMLElement {
    const el = document.createElement('span');
    el.className = `remote-cursor c${this.colour}`;
    el.dataset.name = this.name;
    el.setAttribute('aria-hidden', 'true');
    return el;
  }
}

/// Collaborators' cursors and selections, mapped through every change.
const cursors = StateField.define<{ byClient: Map<number, RemoteCursor>; deco: DecorationSet }>({
  create: () => ({ byClient: new Map(), deco: Decoration.none }),
  update(value, tr) {
    let byClient = value.byClient;
    let changed = false;
    if (tr.docChanged) {
      byClient = new Map(
        [...byClient].map(([id, c]) => [
          id,
          { ...c, head: tr.changes.mapPos(c.head ?? 0), from: tr.changes.mapPos(c.from ?? 0), to: tr.changes.mapPos(c.to ?? 0) },
        ]),
      );
      changed = true;
    }
    for (const effect of tr.effects) {
      if (effect.is(clearCursors)) {
        byClient = new Map();
        changed = true;
      }
      if (!effect.is(setCursor)) continue;
      byClient = new Map(byClient);
      if (effect.value.head === undefined) byClient.delete(effect.value.clientId);
      else byClient.set(effect.value.clientId, effect.value);
      changed = true;
    }
    if (!changed) return value;
    const ranges: Range<Decoration>[] = [];
    for (const c of byClient.values()) {
      const colour = c.clientId % 6;
      if (c.from !== c.to) ranges.push(Decoration.mark({ class: `remote-selection c${colour}` }).range(c.from!, c.to!));
      ranges.push(Decoration.widget({ widget: new CursorWidget(c.name ?? '', colour), side: 1 }).range(c.head!));
    }
    return { byClient, deco: Decoration.set(ranges, true) };
  },
  provide: (field) => EditorView.decorations.from(field, (value) => value.deco),
});

function showCursor(id: number, who: string, rev: number, selections: { anchor: number; head: number }[]): void {
  if (!doc || id === clientId) return;
  // At another revision the offsets name another text; the next cursor
  // message will be at ours.
  if (rev !== doc.client.rev || !doc.client.synchronized || selections.length === 0) return;
  const text = doc.view.state.doc.toString();
  const { anchor, head } = selections[0];
  const a = charToUnit(text, anchor);
  const h = charToUnit(text, head);
  const effects = [setCursor.of({ clientId: id, name: who, head: h, from: Math.min(a, h), to: Math.max(a, h) })];
  doc.view.dispatch({ effects: id === following ? [...effects, EditorView.scrollIntoView(h, { y: 'center' })] : effects });
}

/// Inside the shadow root the page's stylesheet does not reach; its
/// custom properties do, so light and dark follow the page.
const theme = EditorView.theme({
  '&': { color: 'var(--fg)', backgroundColor: 'var(--bg)', border: '1px solid var(--border)', minHeight: '40vh' },
  '&.cm-focused': { outline: '3px solid var(--focus)' },
  '.cm-scroller': { minHeight: '40vh' },
  '.cm-content': { fontFamily: 'ui-monospace, monospace', caretColor: 'var(--fg)' },
  '.cm-cursor, .cm-dropCursor': { borderLeftColor: 'var(--fg)' },
  '&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground, .cm-selectionBackground': {
    background: 'color-mix(in srgb, var(--accent) 35%, transparent)',
  },
  '.cm-gutters': { backgroundColor: 'var(--panel)', color: 'var(--muted)', borderRight: '1px solid var(--border)' },
  '.remote-cursor': { position: 'relative', borderLeft: '2px solid var(--c)', marginLeft: '-1px' },
  '.remote-cursor::after': {
    content: 'attr(data-name)',
    position: 'absolute',
    top: '-1.1em',
    left: '0',
    fontSize: '0.7em',
    background: 'var(--c)',
    color: '#000',
    padding: '0 2px',
    whiteSpace: 'nowrap',
  },
  '.remote-selection': { background: 'color-mix(in srgb, var(--c) 30%, transparent)' },
  '.c0': { '--c': '#e6a23c' },
  '.c1': { '--c': '#67c23a' },
  '.c2': { '--c': '#409eff' },
  '.c3': { '--c': '#f56c6c' },
  '.c4': { '--c': '#b37feb' },
  '.c5': { '--c': '#36cfc9' },
});

function start(): void {
  $('session').textContent = session;
  ($('name') as HTMLInputElement).value = fragment.get('name') ?? localStorage.getItem('chorus.name') ?? '';
  ($('token') as HTMLInputElement).value = fragment.get('token') ?? '';
  $('join').addEventListener('submit', (event) => {
    event.preventDefault();
    name = ($('name') as HTMLInputElement).value.trim() || 'guest';
    token = ($('token') as HTMLInputElement).value.trim();
    localStorage.setItem('chorus.name', name);
    fatal = false;
    $('error').hidden = true;
    connect();
  });
  $('run').addEventListener('click', () => doc && send({ type: 'run', doc: doc.path }));
  $('stop').addEventListener('click', () => send({ type: 'stop' }));
  terminal = new TerminalView(
    $('terminal'),
    send,
    () => role !== 'readOnly',
    (text) => {
      $('terminal-status').textContent = text;
    },
  );
  $('terminal-open').addEventListener('click', () => terminal?.request());
  $('terminal-stop').addEventListener('click', () => terminal?.stop());
  $('stdin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('stdin') as HTMLInputElement;
    send({ type: 'input', text: `${input.value}\n` });
    input.value = '';
  });
  status('not joined');
  ($('name') as HTMLInputElement).focus();
}

start();
