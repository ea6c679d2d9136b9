-- The plugin against editor-plugins/fixtures/lsp_ext.json, which the proxy's
-- own types generate (lsp-proxy/src/lsp_ext/fixture.rs): every chorus/*
-- notification the proxy sends has a handler that takes the example
-- without error and keeps the fields the plugin uses; what the plugin
-- sends (initializationOptions, chorus/cursor, commands) has only fields
-- the proxy reads, and every one the proxy requires.
--
-- nvim --headless --clean -l test/lsp_ext_spec.lua <plugin dir> <fixture>
-- (tests/e2e/neovim_lsp_ext.rs runs it); exits non-zero on a failure.

local plugin_dir, fixture_path = arg[1], arg[2]
assert(plugin_dir and fixture_path, 'usage: nvim -l lsp_ext_spec.lua <plugin dir> <fixture>')
vim.opt.runtimepath:prepend(plugin_dir)

if vim.fn.exists(':ChorusRun') == 0 then
  vim.cmd.runtime('plugin/chorus.lua')
end

local fixture = vim.json.decode(table.concat(vim.fn.readfile(fixture_path), '\n'))
local chorus = require('chorus')
local state = chorus.state
local cursors = require('chorus.cursors')
local run = require('chorus.run')

local failures = {}

local function check(name, f)
  local ok, err = xpcall(f, debug.traceback)
  print((ok and 'ok   ' or 'FAIL ') .. name)
  if not ok then
    table.insert(failures, name .. ': ' .. tostring(err))
  end
end

local function eq(actual, expected, what)
  if not vim.deep_equal(actual, expected) then
    error(string.format('%s: expected %s, got %s', what, vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

--- Feeds a notification's example to the plugin's handler for its method.
local function deliver(name)
  local message = fixture.notifications[name]
  assert(message, 'no ' .. name .. ' in the fixture')
  local handler = chorus.handlers[message.method]
  assert(handler, 'no handler for ' .. message.method)
  handler(nil, message.params.example, { method = message.method, client_id = 1 })
  return message.params.example
end

--- What is wrong with `sent` (from the plugin) for `payload` (the proxy's
--- side): a field it does not read, of another type, or a required one
--- left out. Paths are written as in the fixture's `optional` lists.
local function sent_problems(sent, payload)
  local optional = {}
  for _, path in ipairs(payload.optional) do
    optional[path] = true
  end
  local problems = {}
  local function walk(value, example, path, top)
    if type(value) ~= type(example) then
      table.insert(problems, string.format('%s: sent a %s, the proxy reads a %s', path, type(value), type(example)))
    elseif type(example) ~= 'table' then
      return
    elseif vim.islist(example) and #example > 0 then
      for i, item in ipairs(value) do
        walk(item, top and example[i] or example[1], top and ('[' .. (i - 1) .. ']') or (path .. '[]'), false)
      end
      if top then
        for i = #value + 1, #example do
          if not optional['[' .. (i - 1) .. ']'] then
            table.insert(problems, string.format('[%d]: required by the proxy, not sent', i - 1))
          end
        end
      end
    else
      local prefix = path == '' and '' or (path .. '.')
      for key, field in pairs(value) do
        if example[key] == nil then
          table.insert(problems, prefix .. key .. ': sent, but the proxy does not read it')
        else
          walk(field, example[key], prefix .. key, false)
        end
      end
      for key in pairs(example) do
        if value[key] == nil and not optional[prefix .. key] then
          table.insert(problems, prefix .. key .. ': required by the proxy, not sent')
        end
      end
    end
  end
  walk(sent, payload.example, '', true)
  return problems
end

--- A stand-in for the chorus client, recording what the plugin sends.
local sent = { notifications = {}, commands = {} }
local fake_client = {
  id = 1,
  notify = function(_, method, params)
    table.insert(sent.notifications, { method = method, params = params })
  end,
  exec_cmd = function(_, command, _, handler)
    table.insert(sent.commands, command)
    sent.handler = handler
  end,
}
vim.lsp.get_client_by_id = function(id)
  return id == fake_client.id and fake_client or nil
end
vim.lsp.buf_is_attached = function()
  return true
end

-- A joined session, as :ChorusJoin leaves it, with every option set.
chorus.setup({
  hub = 'ws://127.0.0.1:7420/',
  name = 'Ada',
  token = 'chj_example',
  hub_ca = '/etc/ca.pem',
  sync_files = true,
})
state.session = 'demo'
state.token = 'chj_example'
state.root = '/home/ada/project'
state.client_id = fake_client.id

check('every chorus/* notification the proxy sends has a handler', function()
  for name, message in pairs(fixture.notifications) do
    if message.params.direction == 'proxyToEditor' then
      assert(chorus.handlers[message.method], name .. ': no handler for ' .. message.method)
    end
  end
end)

check('chorus/connection sets the link state and role', function()
  local params = deliver('connection')
  eq(state.connection, params.state, 'state.connection')
  eq(state.role, params.role, 'state.role')
end)

check('chorus/presence joined records the participant', function()
  local params = deliver('presenceJoined')
  local p = params.participant
  eq(state.people[p.clientId], { name = p.name, editor = p.editor }, 'state.people')
end)

-- The document the cursor examples are in, open with enough text.
local example_uri = fixture.notifications.remoteCursor.params.example.uri
local bufnr = vim.uri_to_bufnr(example_uri)
vim.fn.bufload(bufnr)
vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, { 'line one', 'line two', 'line three', 'line four', 'line five' })

-- Before following anyone: the plugin ignores the cursor move following makes.
check('chorus/cursor from the plugin is what the proxy reads', function()
  local local_cursor = fixture.notifications.localCursor
  vim.api.nvim_set_current_buf(bufnr)
  cursors.on_moved()
  eq(#sent.notifications, 1, 'notifications sent')
  eq(sent.notifications[1].method, local_cursor.method, 'method')
  eq(sent_problems(sent.notifications[1].params, local_cursor.params), {}, 'problems')
end)

check('chorus/cursor draws the collaborator and follows them', function()
  state.following = fixture.notifications.remoteCursor.params.example.name
  local params = deliver('remoteCursor')
  state.following = nil
  local labels = {}
  for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, cursors.ns, 0, -1, { details = true })) do
    for _, chunk in ipairs(mark[4].virt_text or {}) do
      table.insert(labels, vim.trim(chunk[1]))
    end
  end
  eq(labels, { params.name }, 'name labels drawn')
  eq(state.people[params.clientId].name, params.name, 'the cursor owner is present')
  eq(vim.api.nvim_get_current_buf(), bufnr, 'following shows their buffer')
  eq(vim.api.nvim_win_get_cursor(0)[1], params.selections[1].head.line + 1, 'following moves to their line')
end)

check('chorus/presence left forgets the participant and their cursor', function()
  local params = deliver('presenceLeft')
  eq(state.people[params.clientId], nil, 'state.people')
  eq(#vim.api.nvim_buf_get_extmarks(bufnr, cursors.ns, 0, -1, {}), 0, 'cursor marks left')
end)

check('chorus/runStarted, runOutput and runFinished fill the run buffer', function()
  local started = deliver('runStarted')
  eq(state.run.id, started.runId, 'state.run.id')
  eq(state.run.running, true, 'state.run.running')
  assert(run.text():find(started.name, 1, true) and run.text():find(started.doc, 1, true), run.text())
  assert(run.text():find(started.plan, 1, true), 'the header shows the plan: ' .. run.text())
  local output = deliver('runOutput')
  eq(output.stream, 'stderr', 'the example output stream (the marked one)')
  local first_line = vim.split(output.data, '\n', { plain = true })[1]
  assert(run.text():find('stderr: ' .. first_line, 1, true), run.text())
  local finished = deliver('runFinished')
  eq(state.run.running, false, 'state.run.running')
  eq(state.run.summary, finished.summary, 'state.run.summary')
  assert(run.text():find('# ' .. finished.summary, 1, true), run.text())
end)

check('a line cut off on stdout does not swallow the stderr that follows it', function()
  run.on_started({ runId = 99, clientId = 1, name = 'bob', doc = 'main.py' })
  run.on_output({ runId = 99, seq = 0, stream = 'stdout', data = 'hello' })
  run.on_output({ runId = 99, seq = 1, stream = 'stderr', data = 'oops\n' })
  run.on_output({ runId = 99, seq = 2, stream = 'stdout', data = '\n' })
  assert(run.text():find('hello\nstderr: oops\n', 1, true), run.text())
end)

check('chorus/runInput shows who sent what in the run buffer, on lines of its own', function()
  run.on_started({ runId = 1, clientId = 1, name = 'Ada', doc = 'main.py' })
  run.on_output({ runId = 1, seq = 0, stream = 'stdout', data = 'name? ' })
  local params = deliver('runInput')
  local line = vim.split(params.text, '\n', { plain = true })[1]
  local expected = string.format('name? \n> %s  (from %s)\n', line, params.name)
  if params.eof then
    expected = expected .. string.format('> (end of input)  (from %s)\n', params.name)
  end
  if params.interrupt then
    expected = expected .. string.format('> (interrupt)  (from %s)\n', params.name)
  end
  assert(run.text():find(expected, 1, true), run.text())
  run.on_output({ runId = 1, seq = 1, stream = 'stdout', data = 'hi\n' })
  assert(run.text():find('(from ' .. params.name .. ')\nhi\n', 1, true), run.text())
end)

check('initializationOptions carry only settings the proxy reads', function()
  local options = chorus.init_options()
  eq(sent_problems(options, fixture.initializationOptions), {}, 'problems')
  eq(options.hubCa, '/etc/ca.pem', 'hubCa')
  eq(options.syncFiles, true, 'syncFiles')
end)

check('commands from the plugin are the proxy commands, with arguments it reads', function()
  chorus.run(nil, { stdin = '1\n', args = { '-v' } })
  chorus.run(nil, nil)
  chorus.stop()
  eq(#sent.commands, 3, 'commands sent')
  local run_command, stop_command = fixture.commands.run, fixture.commands.stop
  for i = 1, 2 do
    eq(sent.commands[i].command, run_command.command, 'run command')
    eq(sent_problems(sent.commands[i].arguments, run_command.arguments), {}, 'run arguments')
  end
  eq(sent.commands[3].command, stop_command.command, 'stop command')
  eq(sent.commands[3].arguments, {}, 'stop arguments')
  chorus.share()
  eq(sent.commands[4].command, fixture.commands.share.command, 'share command')
  eq(sent_problems(sent.commands[4].arguments, fixture.commands.share.arguments), {}, 'share arguments')
  chorus.resync()
  eq(sent.commands[5].command, fixture.commands.resync.command, 'resync command')
  eq(sent_problems(sent.commands[5].arguments, fixture.commands.resync.arguments), {}, 'resync arguments')
end)

check(':ChorusRun words become chorus.run options the proxy reads', function()
  local cases = {
    { '', { options = {} } },
    { 'main.py', { file = 'main.py', options = {} } },
    { 'test', { options = { mode = 'test' } } },
    { 'release src/main.rs', { file = 'src/main.rs', options = { mode = 'release' } } },
    { 'run main.py -- -v  two', { file = 'main.py', options = { args = { '-v', 'two' } } } },
    { 'cmd=echo hi; exit 3', { options = { command = 'echo hi; exit 3' } } },
    { 'test cmd= make  check ', { options = { mode = 'test', command = 'make  check' } } },
    { 'a/cmd=x.py', { file = 'a/cmd=x.py', options = {} } },
  }
  for _, case in ipairs(cases) do
    local parsed, err = chorus.parse_run_args(case[1])
    eq(parsed, case[2], ':ChorusRun ' .. case[1] .. ' (' .. tostring(err) .. ')')
  end
  for _, bad in ipairs({ 'a.py b.py', 'cmd=', 'main.py -- -v cmd=make' }) do
    local parsed, err = chorus.parse_run_args(bad)
    assert(parsed == nil and err, ':ChorusRun ' .. bad .. ' should be refused')
  end
  local before = #sent.commands
  vim.cmd('ChorusRun test cmd=echo hi; exit 3')
  vim.cmd('ChorusRun release -- --fast')
  eq(#sent.commands, before + 2, 'commands sent')
  for i = before + 1, before + 2 do
    eq(sent.commands[i].command, fixture.commands.run.command, 'run command')
    eq(sent_problems(sent.commands[i].arguments, fixture.commands.run.arguments), {}, 'run arguments')
  end
  eq(sent.commands[before + 1].arguments[2], { mode = 'test', command = 'echo hi; exit 3' }, ':ChorusRun test cmd=')
  eq(sent.commands[before + 2].arguments[2], { mode = 'release', args = { '--fast' } }, ':ChorusRun release --')
  for _, mode in ipairs(fixture.enums.runMode) do
    assert(mode == 'run' or chorus.parse_run_args(mode).options.mode == mode, 'mode ' .. mode)
  end
end)

check(':ChorusInput, :ChorusInput! and :ChorusInterrupt send chorus.input as the proxy reads it', function()
  local before = #sent.commands
  vim.cmd('ChorusInput Ada Lovelace')
  vim.cmd('ChorusInput! last line')
  vim.cmd('ChorusInput!')
  vim.cmd('ChorusInterrupt')
  eq(#sent.commands, before + 4, 'commands sent')
  local input = fixture.commands.input
  for i = before + 1, before + 4 do
    eq(sent.commands[i].command, input.command, 'input command')
    eq(sent_problems(sent.commands[i].arguments, input.arguments), {}, 'input arguments')
  end
  eq(sent.commands[before + 1].arguments, { { text = 'Ada Lovelace\n' } }, ':ChorusInput')
  eq(sent.commands[before + 2].arguments, { { text = 'last line\n', eof = true } }, ':ChorusInput! text')
  eq(sent.commands[before + 3].arguments, { { eof = true } }, ':ChorusInput!')
  eq(sent.commands[before + 4].arguments, { { interrupt = true } }, ':ChorusInterrupt')
end)

check('chorus.files: the command, its answer listed through vim.ui.select, and opened', function()
  local files = fixture.commands.files
  state.connection = 'online'
  local listed, notes = nil, {}
  local select, notify = vim.ui.select, vim.notify
  vim.ui.select = function(items, opts, on_choice)
    listed = { items = items, opts = opts, on_choice = on_choice }
  end
  vim.notify = function(message, level)
    table.insert(notes, { message, level })
  end
  local ok, err = pcall(function()
    chorus.files()
    local command = sent.commands[#sent.commands]
    eq(command.command, files.command, 'files command')
    eq(sent_problems(command.arguments, files.arguments), {}, 'files arguments')
    -- The example (every field present) and a text file: the same
    -- without the optional notSynced, at the document the cursor examples
    -- are in.
    local answer = vim.deepcopy(files.result.example)
    local text_file = vim.deepcopy(answer.files[1])
    text_file.notSynced = nil
    text_file.uri = example_uri
    text_file.path = vim.fs.basename(vim.uri_to_fname(example_uri))
    table.insert(answer.files, text_file)
    sent.handler(nil, answer, {})
    assert(listed, 'vim.ui.select was not called')
    local lines = vim.tbl_map(listed.opts.format_item, listed.items)
    eq(#lines, 2, 'one item per file')
    local reasons = require('chorus.files').reasons
    for _, reason in ipairs(fixture.enums.notSynced) do
      assert(reasons[reason], 'no words for ' .. reason)
    end
    assert(lines[1]:find('logo.png', 1, true) and lines[1]:find(reasons.binary, 1, true), lines[1])
    assert(lines[2]:find('main.py', 1, true) and not lines[2]:find('not synced', 1, true), lines[2])
    -- A file listed without its content is not opened: the user hears why.
    vim.cmd.enew()
    local scratch = vim.api.nvim_get_current_buf()
    listed.on_choice(listed.items[1])
    eq(vim.api.nvim_get_current_buf(), scratch, 'nothing opened for logo.png')
    assert(#notes == 1 and notes[1][1]:find('logo.png', 1, true), vim.inspect(notes))
    -- A text file opens (here its buffer exists already, with changes).
    listed.on_choice(listed.items[2])
    eq(vim.api.nvim_get_current_buf(), bufnr, 'main.py shown')
  end)
  vim.ui.select, vim.notify = select, notify
  assert(ok, err)
end)

check('the shared terminal: a view shows the replay, then live output from its seq on', function()
  local terminal = require('chorus.terminal')
  local commands = fixture.commands
  local notes, notify = {}, vim.notify
  vim.notify = function(message)
    table.insert(notes, message)
  end
  local ok, err = pcall(function()
    state.connection = 'online'
    vim.cmd('ChorusTerminal')
    local opened = sent.commands[#sent.commands]
    eq(opened.command, commands.terminal.command, 'terminal command')
    eq(sent_problems(opened.arguments, commands.terminal.arguments), {}, 'terminal arguments')
    local win = vim.api.nvim_get_current_win()
    eq(vim.api.nvim_win_get_buf(win), terminal.buffer(), 'the view is the current window')
    eq(opened.arguments[1].rows, vim.api.nvim_win_get_height(win), 'rows: the window height')
    local started = fixture.notifications.terminalStarted.params.example
    local replay = fixture.notifications.terminalOutput.params.example
    eq(replay.replay, true, 'the example is a replay')
    local output = chorus.handlers['chorus/terminalOutput']
    -- Live output before the replay: the older is inside it, the newer
    -- follows it.
    output(nil, { terminalId = started.terminalId, seq = replay.seq - 1, data = 'inside\r\n' }, {})
    output(nil, { terminalId = started.terminalId, seq = replay.seq, data = 'four\r\n' }, {})
    deliver('terminalStarted')
    deliver('terminalOutput')
    output(nil, { terminalId = started.terminalId, seq = replay.seq + 1, data = 'five\r\n' }, {})
    output(nil, { terminalId = started.terminalId, seq = replay.seq, data = 'four again\r\n' }, {})
    output(nil, { terminalId = started.terminalId + 1, seq = replay.seq + 2, data = 'another terminal\r\n' }, {})
    local shown = vim.wait(2000, function()
      return terminal.text():find('five', 1, true) ~= nil
    end)
    assert(shown, 'no live output: ' .. terminal.text())
    local text = terminal.text()
    assert(text:find('bo@chorus:~$ four\nfive', 1, true), text)
    assert(not text:find('inside', 1, true) and not text:find('again', 1, true), text)
    assert(not text:find('another', 1, true), text)
    eq(notes, {}, 'no news of the terminal we opened ourselves')
    eq(state.terminal.name, started.name, 'state.terminal')

    -- Our window's size changes: the proxy hears it.
    local before = #sent.commands
    local height = vim.api.nvim_win_get_height(win) - 2
    vim.cmd.resize(height)
    -- Neovim's main loop fires WinResized; a script (-l) runs outside it.
    vim.api.nvim_exec_autocmds('WinResized', {})
    eq(#sent.commands, before + 1, 'commands sent')
    local resize = sent.commands[#sent.commands]
    eq(resize.command, commands.terminalResize.command, 'resize command')
    eq(sent_problems(resize.arguments, commands.terminalResize.arguments), {}, 'resize arguments')
    eq(resize.arguments[1].rows, height, 'the new height')

    deliver('terminalResized')
    local ended = deliver('terminalEnded')
    assert(
      vim.wait(2000, function()
        return terminal.text():find('[terminal ended: ' .. ended.reason .. ']', 1, true) ~= nil
      end),
      terminal.text()
    )
    eq(state.terminal, nil, 'state.terminal after the end')

    -- Someone else opens the next one: the user hears of it.
    chorus.handlers['chorus/terminalStarted'](
      nil,
      { terminalId = 9, clientId = 4, name = 'Cy', cols = 80, rows = 24 },
      {}
    )
    eq(notes, { 'Chorus: Cy opened the shared terminal: :ChorusTerminal to join' }, 'notes')
    -- Cy's was the last: a view of the next one, which our own
    -- chorus.terminal opens, starts with live output at seq 0.
    terminal.on_ended({ terminalId = 9, reason = 'exit' })
    vim.cmd('ChorusTerminal')
    eq(sent.commands[#sent.commands].command, commands.terminal.command, 'terminal command')
    chorus.handlers['chorus/terminalStarted'](
      nil,
      { terminalId = 10, clientId = 1, name = 'Ada', cols = 80, rows = 24 },
      {}
    )
    output(nil, { terminalId = 10, seq = 0, data = 'fresh\r\n' }, {})
    output(nil, { terminalId = 10, seq = 1, data = 'prompt$ ' }, {})
    assert(
      vim.wait(2000, function()
        return terminal.text():find('fresh\nprompt$', 1, true) ~= nil
      end),
      terminal.text()
    )
    for _, stop in ipairs({ 'ChorusTerminal stop', 'ChorusTerminalStop' }) do
      vim.cmd(stop)
      local sent_stop = sent.commands[#sent.commands]
      eq(sent_stop.command, commands.terminalStop.command, stop)
      eq(sent_stop.arguments, {}, stop .. ' arguments')
    end
  end)
  vim.notify = notify
  assert(ok, err)
end)

if #failures > 0 then
  io.stderr:write(table.concat(failures, '\n\n') .. '\n')
  os.exit(1)
end
print('all checks passed')
