// Formatting a run for the Output channel.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RunFormatter } from '../src/runOutput';

function out(f: RunFormatter, stream: 'stdout' | 'stderr', data: string, seq = 0): string {
  return f.output({ runId: 1, seq, stream, data });
}

test('a run reads as header, output, result', () => {
  const f = new RunFormatter();
  let text = f.started({ runId: 1, name: 'Ada', doc: 'main.py' });
  text += out(f, 'stdout', 'hello\n');
  text += f.finished({ runId: 1, summary: 'exited with code 0 in 0.12 s' });
  assert.equal(text, '▶ run 1 · Ada · main.py\nhello\n■ run 1: exited with code 0 in 0.12 s\n');
});

test('the header says how the project runs when the hub tells', () => {
  const f = new RunFormatter();
  const text = f.started({ runId: 2, name: 'Bo', doc: 'src/main.rs', plan: 'cargo test --offline (Cargo.toml)' });
  assert.equal(text, '▶ run 2 · Bo · src/main.rs · cargo test --offline (Cargo.toml)\n');
});

test('chunks that split lines are joined back, and the result starts a new line', () => {
  const f = new RunFormatter();
  let text = f.started({ runId: 1, name: 'Ada', doc: 'a.py' });
  text += out(f, 'stdout', 'hel') + out(f, 'stdout', 'lo\nwor') + out(f, 'stdout', 'ld');
  text += f.finished({ runId: 1 });
  assert.equal(text, '▶ run 1 · Ada · a.py\nhello\nworld\n■ run 1: finished\n');
});

test('stderr lines are marked once per line, even across chunks', () => {
  const f = new RunFormatter();
  let text = out(f, 'stderr', 'Trace') + out(f, 'stderr', 'back\nValueError: x\n');
  text += out(f, 'stdout', 'ok\n');
  assert.equal(text, 'stderr: Traceback\nstderr: ValueError: x\nok\n');
});

test('switching streams mid-line starts a fresh line', () => {
  const f = new RunFormatter();
  const text = out(f, 'stdout', 'partial') + out(f, 'stderr', 'oops\n');
  assert.equal(text, 'partial\nstderr: oops\n');
});

test('CRLF output becomes plain lines', () => {
  const f = new RunFormatter();
  assert.equal(out(f, 'stdout', 'a\r\nb\r\n'), 'a\nb\n');
});

test("someone's input shows who sent it, on lines of its own", () => {
  const f = new RunFormatter();
  let text = f.started({ runId: 1, name: 'Ada', doc: 'a.py' });
  text += out(f, 'stdout', 'name? ');
  text += f.input({ runId: 1, clientId: 2, name: 'Bo', text: 'Grace\n' });
  text += out(f, 'stdout', 'hi Grace\n');
  text += f.input({ runId: 1, clientId: 2, name: 'Bo', eof: true, interrupt: true });
  assert.equal(
    text,
    '▶ run 1 · Ada · a.py\nname? \n> Grace  (from Bo)\nhi Grace\n> (end of input)  (from Bo)\n> (interrupt)  (from Bo)\n',
  );
});
