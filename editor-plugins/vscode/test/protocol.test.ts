// src/protocol.ts against editor-plugins/fixtures/lsp_ext.json, which the
// proxy's own types generate (lsp-proxy/src/lsp_ext/fixture.rs): the same
// method and command names, the same fields with the same JSON kinds, and
// agreement on which fields may be missing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import * as P from '../src/protocol';
import { initializationOptions, normalizeSettings } from '../src/settings';

// A runtime picture of each protocol.ts type. `Shape<T>` makes tsc reject a
// picture that leaves out, adds or mistypes a field of T, or marks a field
// optional that T does not (or the reverse): so what the fixture is checked
// against below is the types themselves.
type Kind = 'string' | 'number' | 'boolean' | OneOf | { arrayOf: Kind } | { object: Fields };
interface OneOf {
  oneOf: Record<string, true>;
}
type Spec = Kind | { optional: Kind };
type Fields = Record<string, Spec>;

/** May be missing or null: what the fixture's `optional` lists mean. */
type MayBeMissing<T, K extends keyof T> = undefined extends T[K] ? true : null extends T[K] ? true : false;
type KindOf<V> = [V] extends [string]
  ? string extends V
    ? 'string'
    : { oneOf: Record<V, true> }
  : [V] extends [number]
    ? 'number'
    : [V] extends [boolean]
      ? 'boolean'
      : [V] extends [readonly (infer E)[]]
        ? { arrayOf: KindOf<E> }
        : { object: Shape<V> };
type Shape<T> = {
  [K in keyof T]-?: MayBeMissing<T, K> extends true ? { optional: KindOf<NonNullable<T[K]>> } : KindOf<T[K]>;
};

const position: Shape<P.Position> = { line: 'number', character: 'number' };
const selection: Shape<P.SelectionParam> = { anchor: { object: position }, head: { object: position } };
const participant: Shape<P.Participant> = { clientId: 'number', name: 'string', editor: { optional: 'string' } };
const role = { oneOf: { editor: true, readOnly: true } } as const;
const connection: Shape<P.ConnectionParams> = {
  state: { oneOf: { online: true, offline: true, refused: true } },
  session: { optional: 'string' },
  role: { optional: role },
  clientId: { optional: 'number' },
  reason: { optional: 'string' },
};
const presenceJoined: Shape<Extract<P.PresenceParams, { event: 'joined' }>> = {
  event: { oneOf: { joined: true } },
  participant: { object: participant },
};
const presenceLeft: Shape<Extract<P.PresenceParams, { event: 'left' }>> = {
  event: { oneOf: { left: true } },
  clientId: 'number',
  name: { optional: 'string' },
};
const remoteCursor: Shape<P.RemoteCursorParams> = {
  clientId: 'number',
  name: 'string',
  uri: 'string',
  selections: { arrayOf: { object: selection } },
};
const localCursor: Shape<P.LocalCursorParams> = { uri: 'string', selections: { arrayOf: { object: selection } } };
const runStarted: Shape<P.RunStartedParams> = {
  runId: 'number',
  name: 'string',
  doc: 'string',
  plan: { optional: 'string' },
};
const runOutput: Shape<P.RunOutputParams> = {
  runId: 'number',
  seq: 'number',
  stream: { oneOf: { stdout: true, stderr: true } },
  data: 'string',
};
const runInput: Shape<P.RunInputParams> = {
  runId: 'number',
  clientId: 'number',
  name: 'string',
  text: { optional: 'string' },
  eof: { optional: 'boolean' },
  interrupt: { optional: 'boolean' },
};
const inputOptions: Shape<P.InputOptions> = {
  text: { optional: 'string' },
  eof: { optional: 'boolean' },
  interrupt: { optional: 'boolean' },
};
const runDiagnosticSeverity = { oneOf: { error: true, warning: true } } as const;
const runDiagnostic: Shape<P.RunDiagnostic> = {
  path: 'string',
  line: 'number',
  column: 'number',
  severity: runDiagnosticSeverity,
  message: 'string',
};
const runResult: Shape<P.RunResult> = {
  exitCode: { optional: 'number' },
  timedOut: 'boolean',
  oomKilled: 'boolean',
  truncated: 'boolean',
  cancelled: 'boolean',
  durationMs: 'number',
  error: { optional: 'string' },
  diagnostics: { optional: { arrayOf: { object: runDiagnostic } } },
};
const runFinished: Shape<P.RunFinishedParams> = {
  runId: 'number',
  summary: { optional: 'string' },
  result: { optional: { object: runResult } },
};
const documentStateParams: Shape<P.DocumentStateParams> = { uri: 'string' };
const documentState: Shape<P.DocumentState> = {
  text: 'string',
  rev: 'number',
  synchronized: 'boolean',
  joined: 'boolean',
  version: 'number',
};
const initOptions: Shape<P.InitializationOptions> = {
  hub: 'string',
  session: 'string',
  name: { optional: 'string' },
  token: { optional: 'string' },
  hubCa: { optional: 'string' },
  extensions: 'boolean',
  syncFiles: { optional: 'boolean' },
};
const runMode = { oneOf: { run: true, test: true, release: true } } as const;
const runOptions: Shape<P.RunOptions> = {
  stdin: { optional: 'string' },
  stdinEof: { optional: 'boolean' },
  args: { optional: { arrayOf: 'string' } },
  language: { optional: 'string' },
  mode: { optional: runMode },
  command: { optional: 'string' },
};
const requested: Shape<P.RequestedAnswer> = { requested: 'string' };
const following: Shape<P.FollowAnswer> = { following: { optional: 'string' } };
const notSynced = { oneOf: { binary: true, tooLarge: true, sessionFull: true } } as const;
const sessionFile: Shape<P.SessionFile> = {
  path: 'string',
  uri: { optional: 'string' },
  size: 'number',
  notSynced: { optional: notSynced },
};
const filesAnswer: Shape<P.FilesAnswer> = { files: { arrayOf: { object: sessionFile } } };
const terminalStarted: Shape<P.TerminalStartedParams> = {
  terminalId: 'number',
  clientId: 'number',
  name: 'string',
  cols: 'number',
  rows: 'number',
};
const terminalOutput: Shape<P.TerminalOutputParams> = {
  terminalId: 'number',
  seq: 'number',
  data: 'string',
  replay: { optional: 'boolean' },
};
const terminalResized: Shape<P.TerminalResizedParams> = {
  terminalId: 'number',
  clientId: 'number',
  cols: 'number',
  rows: 'number',
};
const terminalEnded: Shape<P.TerminalEndedParams> = { terminalId: 'number', reason: 'string' };
const terminalSize: Shape<P.TerminalSize> = { cols: 'number', rows: 'number' };
const terminalInputOptions: Shape<P.TerminalInputOptions> = { data: 'string' };

// Positional command arguments, one spec per position. Tuples do not map
// through Shape; the test below at least checks these against the
// fixture, and the tuple types beside them in protocol.ts.
const runArguments: Spec[] = [{ optional: 'string' }, { optional: { object: runOptions } }];
const followArguments: Spec[] = [{ optional: 'string' }];
const inputArguments: Spec[] = [{ object: inputOptions }];
const resyncArguments: Spec[] = [{ optional: 'string' }];
const terminalArguments: Spec[] = [{ object: terminalSize }];
const terminalInputArguments: Spec[] = [{ object: terminalInputOptions }];
const terminalResizeArguments: Spec[] = [{ object: terminalSize }];

type Direction = 'proxyToEditor' | 'editorToProxy';
interface Payload {
  direction: Direction;
  example: unknown;
  optional: string[];
}
interface Fixture {
  initializationOptions: Payload;
  notifications: Record<string, { method: string; params: Payload }>;
  requests: Record<string, { method: string; params: Payload; result: Payload }>;
  commands: Record<string, { command: string; arguments: Payload; result: Payload }>;
  enums: Record<string, string[]>;
}

const fixture = JSON.parse(readFileSync(path.resolve(__dirname, '../../../fixtures/lsp_ext.json'), 'utf8')) as Fixture;

function typeOf(value: unknown): string {
  return Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
}

/**
 * What is wrong with `value` for `kind`. A field the proxy may leave out
 * must be optional here when the proxy sends it; one we may leave out must
 * be optional there when we send it.
 */
function problems(kind: Kind, value: unknown, at: string, payload: Payload, out: string[] = []): string[] {
  const where = at === '' ? 'the payload' : at;
  if (typeof kind === 'string') {
    if (typeOf(value) !== kind) {
      out.push(`${where}: protocol.ts says ${kind}, the proxy sends ${typeOf(value)}`);
    }
  } else if ('oneOf' in kind) {
    if (typeof value !== 'string' || !(value in kind.oneOf)) {
      out.push(`${where}: ${JSON.stringify(value)} is not one of ${Object.keys(kind.oneOf).join(', ')}`);
    }
  } else if ('arrayOf' in kind) {
    if (!Array.isArray(value)) {
      out.push(`${where}: protocol.ts says a list, the proxy sends ${typeOf(value)}`);
    } else {
      value.forEach((item) => problems(kind.arrayOf, item, `${at}[]`, payload, out));
    }
  } else {
    if (typeOf(value) !== 'object') {
      out.push(`${where}: protocol.ts says an object, the proxy sends ${typeOf(value)}`);
      return out;
    }
    const fields = value as Record<string, unknown>;
    for (const key of new Set([...Object.keys(kind.object), ...Object.keys(fields)])) {
      const field = at === '' ? key : `${at}.${key}`;
      const spec = kind.object[key];
      if (spec === undefined) {
        out.push(`${field}: in the proxy's types, missing from protocol.ts`);
      } else if (!(key in fields)) {
        out.push(`${field}: in protocol.ts, not in the proxy's types`);
      } else {
        const optionalHere = typeof spec === 'object' && 'optional' in spec;
        checkOptional(optionalHere, field, payload, out);
        problems(optionalHere ? spec.optional : (spec as Kind), fields[key], field, payload, out);
      }
    }
  }
  return out;
}

function checkOptional(optionalHere: boolean, field: string, payload: Payload, out: string[]): void {
  const optionalThere = payload.optional.includes(field);
  if (payload.direction === 'proxyToEditor' && optionalThere && !optionalHere) {
    out.push(`${field}: the proxy may leave it out, protocol.ts requires it`);
  }
  if (payload.direction === 'editorToProxy' && optionalHere && !optionalThere) {
    out.push(`${field}: protocol.ts may leave it out, the proxy requires it`);
  }
}

function argumentProblems(specs: Spec[], payload: Payload): string[] {
  const out: string[] = [];
  const values = payload.example as unknown[];
  assert.equal(values.length, specs.length, 'one spec per argument');
  specs.forEach((spec, i) => {
    const optionalHere = typeof spec === 'object' && 'optional' in spec;
    checkOptional(optionalHere, `[${i}]`, payload, out);
    problems(optionalHere ? spec.optional : (spec as Kind), values[i], `[${i}]`, payload, out);
  });
  return out;
}

const notifications: Record<string, { method: string; shape: Fields }> = {
  connection: { method: P.Methods.connection, shape: connection },
  presenceJoined: { method: P.Methods.presence, shape: presenceJoined },
  presenceLeft: { method: P.Methods.presence, shape: presenceLeft },
  remoteCursor: { method: P.Methods.cursor, shape: remoteCursor },
  localCursor: { method: P.Methods.cursor, shape: localCursor },
  runStarted: { method: P.Methods.runStarted, shape: runStarted },
  runOutput: { method: P.Methods.runOutput, shape: runOutput },
  runInput: { method: P.Methods.runInput, shape: runInput },
  runFinished: { method: P.Methods.runFinished, shape: runFinished },
  terminalStarted: { method: P.Methods.terminalStarted, shape: terminalStarted },
  terminalOutput: { method: P.Methods.terminalOutput, shape: terminalOutput },
  terminalResized: { method: P.Methods.terminalResized, shape: terminalResized },
  terminalEnded: { method: P.Methods.terminalEnded, shape: terminalEnded },
};

test('every notification the proxy defines is mirrored, under its method', () => {
  assert.deepEqual(Object.keys(fixture.notifications).sort(), Object.keys(notifications).sort());
  for (const [name, { method, shape }] of Object.entries(notifications)) {
    const there = fixture.notifications[name];
    assert.equal(method, there.method, name);
    assert.deepEqual(problems({ object: shape }, there.params.example, '', there.params), [], name);
  }
});

test('chorus/documentState: method, params and answer agree', () => {
  assert.deepEqual(Object.keys(fixture.requests), ['documentState']);
  const there = fixture.requests.documentState;
  assert.equal(P.Methods.documentState, there.method);
  assert.deepEqual(problems({ object: documentStateParams }, there.params.example, '', there.params), []);
  assert.deepEqual(problems({ object: documentState }, there.result.example, '', there.result), []);
});

test('commands: names, arguments and answers agree', () => {
  assert.deepEqual(Object.keys(fixture.commands).sort(), Object.keys(P.ServerCommands).sort());
  const { run, stop, input, follow, share, resync, files } = fixture.commands;
  assert.equal(P.ServerCommands.input, input.command);
  assert.deepEqual(argumentProblems(inputArguments, input.arguments), []);
  assert.deepEqual(problems({ object: requested }, input.result.example, '', input.result), []);
  assert.equal(P.ServerCommands.files, files.command);
  assert.deepEqual(argumentProblems([], files.arguments), []);
  assert.deepEqual(problems({ object: filesAnswer }, files.result.example, '', files.result), []);
  assert.equal(P.ServerCommands.resync, resync.command);
  assert.deepEqual(argumentProblems(resyncArguments, resync.arguments), []);
  assert.deepEqual(problems({ object: requested }, resync.result.example, '', resync.result), []);
  assert.equal(P.ServerCommands.run, run.command);
  assert.equal(P.ServerCommands.stop, stop.command);
  assert.equal(P.ServerCommands.follow, follow.command);
  assert.equal(P.ServerCommands.share, share.command);
  assert.deepEqual(argumentProblems(runArguments, run.arguments), []);
  assert.deepEqual(argumentProblems([], stop.arguments), []);
  assert.deepEqual(argumentProblems(followArguments, follow.arguments), []);
  assert.deepEqual(argumentProblems([], share.arguments), []);
  assert.deepEqual(problems({ object: requested }, run.result.example, '', run.result), []);
  assert.deepEqual(problems({ object: requested }, stop.result.example, '', stop.result), []);
  assert.deepEqual(problems({ object: following }, follow.result.example, '', follow.result), []);
  assert.deepEqual(problems({ object: requested }, share.result.example, '', share.result), []);
});

test("the shared terminal's commands: names and arguments agree, and they answer null", () => {
  const { terminal, terminalInput, terminalResize, terminalStop } = fixture.commands;
  assert.equal(P.ServerCommands.terminal, terminal.command);
  assert.equal(P.ServerCommands.terminalInput, terminalInput.command);
  assert.equal(P.ServerCommands.terminalResize, terminalResize.command);
  assert.equal(P.ServerCommands.terminalStop, terminalStop.command);
  assert.deepEqual(argumentProblems(terminalArguments, terminal.arguments), []);
  assert.deepEqual(argumentProblems(terminalInputArguments, terminalInput.arguments), []);
  assert.deepEqual(argumentProblems(terminalResizeArguments, terminalResize.arguments), []);
  assert.deepEqual(argumentProblems([], terminalStop.arguments), []);
  for (const { result } of [terminal, terminalInput, terminalResize, terminalStop]) {
    assert.equal(result.example, null);
  }
});

test('initializationOptions: every field the proxy reads, and only those', () => {
  const there = fixture.initializationOptions;
  assert.deepEqual(problems({ object: initOptions }, there.example, '', there), []);
  const sent = initializationOptions(normalizeSettings({ name: 'Ada', token: 't' }), 'demo');
  for (const key of Object.keys(sent)) {
    assert.ok(key in (there.example as object), `settings.ts sends ${key}, which the proxy does not read`);
  }
});

test('enums list the values the proxy has', () => {
  const keys = (kind: Spec): string[] => Object.keys((kind as OneOf).oneOf).sort();
  assert.deepEqual(keys(connection.state), [...fixture.enums.connectionState].sort());
  assert.deepEqual(keys((connection.role as { optional: Kind }).optional), [...fixture.enums.role].sort());
  assert.deepEqual(keys(runOutput.stream), [...fixture.enums.outputStream].sort());
  assert.deepEqual(keys(notSynced), [...fixture.enums.notSynced].sort());
  assert.deepEqual(keys(runMode), [...fixture.enums.runMode].sort());
  assert.deepEqual(keys(runDiagnosticSeverity), [...fixture.enums.runDiagnosticSeverity].sort());
  assert.deepEqual(Object.keys(fixture.enums).sort(), [
    'connectionState',
    'notSynced',
    'outputStream',
    'role',
    'runDiagnosticSeverity',
    'runMode',
  ]);
});

test('the checker itself notices drift', () => {
  const payload: Payload = { direction: 'proxyToEditor', example: {}, optional: ['b'] };
  assert.deepEqual(problems({ object: { a: 'string', b: 'number' } }, { a: 1, b: 2, c: true }, '', payload), [
    'a: protocol.ts says string, the proxy sends number',
    'b: the proxy may leave it out, protocol.ts requires it',
    "c: in the proxy's types, missing from protocol.ts",
  ]);
  const sending: Payload = { direction: 'editorToProxy', example: {}, optional: [] };
  assert.deepEqual(problems({ object: { a: { optional: 'string' } } }, {}, '', sending), [
    "a: in protocol.ts, not in the proxy's types",
  ]);
  assert.deepEqual(problems({ object: { a: { optional: 'string' } } }, { a: 'x' }, '', sending), [
    'a: protocol.ts may leave it out, the proxy requires it',
  ]);
});
