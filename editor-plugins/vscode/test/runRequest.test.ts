// The run commands' options for chorus.run.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { commandLine, runOptions } from '../src/runRequest';

test('a plain run sends no options', () => {
  assert.deepEqual(runOptions(undefined), {});
  assert.deepEqual(runOptions({ uri: 'file:///w/a.py' }, 'run'), {});
});

test('the command chosen sets the mode, unless the arguments name one', () => {
  assert.deepEqual(runOptions(undefined, 'test'), { mode: 'test' });
  assert.deepEqual(runOptions({}, 'release'), { mode: 'release' });
  assert.deepEqual(runOptions({ mode: 'test' }, 'release'), { mode: 'test' });
  assert.deepEqual(runOptions({ mode: 'run' }, 'test'), {});
});

test('stdin, arguments and a command line are passed on', () => {
  assert.deepEqual(runOptions({ stdin: '1\n', args: ['-v'], command: '  echo hi; exit 3 ' }), {
    stdin: '1\n',
    args: ['-v'],
    command: 'echo hi; exit 3',
  });
});

test('a blank or cancelled command line is no command', () => {
  assert.equal(commandLine(undefined), undefined);
  assert.equal(commandLine('   '), undefined);
  assert.equal(commandLine(' make check '), 'make check');
  assert.deepEqual(runOptions({ command: ' ' }), {});
});
