// Settings → how the proxy is started and what initialize carries.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  DEFAULT_SETTINGS,
  folderGlob,
  hubProblem,
  initializationOptions,
  normalizeSettings,
  serverCommand,
  sessionProblem,
} from '../src/settings';

test('blank and missing settings fall back to the defaults', () => {
  assert.deepEqual(normalizeSettings({}), DEFAULT_SETTINGS);
  assert.deepEqual(normalizeSettings({ hub: '  ', name: 3, path: '/opt/chorus ', token: '' }), {
    ...DEFAULT_SETTINGS,
    path: '/opt/chorus',
  });
});

test('initializationOptions carries hub, session and name, and declares the extensions', () => {
  const settings = normalizeSettings({ hub: 'ws://h:1/', name: 'Ada' });
  assert.deepEqual(initializationOptions(settings, ' demo '), {
    hub: 'ws://h:1/',
    session: 'demo',
    name: 'Ada',
    extensions: true,
  });
});

test('a blank name is left out so the proxy default applies', () => {
  const options = initializationOptions(normalizeSettings({}), 'demo');
  assert.equal('name' in options, false);
  assert.equal('token' in options, false);
});

test('syncFiles is sent only when the setting is on', () => {
  assert.equal('syncFiles' in initializationOptions(normalizeSettings({}), 'demo'), false);
  assert.equal('syncFiles' in initializationOptions(normalizeSettings({ syncFiles: 'yes' }), 'demo'), false);
  assert.equal(initializationOptions(normalizeSettings({ syncFiles: true }), 'demo').syncFiles, true);
});

test('the token typed at join wins over the setting, a blank one does not', () => {
  const settings = normalizeSettings({ token: 'from-settings' });
  assert.equal(initializationOptions(settings, 's', 'typed').token, 'typed');
  assert.equal(initializationOptions(settings, 's', '  ').token, 'from-settings');
  assert.equal(initializationOptions(settings, 's').token, 'from-settings');
});

test('the proxy is started as `<path> lsp`', () => {
  assert.deepEqual(serverCommand(normalizeSettings({ path: '/x/chorus' })), { command: '/x/chorus', args: ['lsp'] });
});

test('sessions and hubs are checked before starting anything', () => {
  assert.equal(sessionProblem('demo'), undefined);
  assert.match(sessionProblem('') ?? '', /required/);
  assert.match(sessionProblem('a b') ?? '', /spaces/);
  assert.equal(hubProblem('ws://127.0.0.1:7420/'), undefined);
  assert.equal(hubProblem('wss://hub.example/'), undefined);
  assert.match(hubProblem('http://x/') ?? '', /ws:\/\//);
  assert.match(hubProblem('nonsense') ?? '', /not a URL/);
});

test('the document selector glob matches the folder literally', () => {
  assert.equal(folderGlob('/home/ada/project/'), '/home/ada/project/**/*');
  assert.equal(folderGlob('/tmp/a[1]{x}*?'), '/tmp/a[[]1[]][{]x[}][*][?]/**/*');
});
