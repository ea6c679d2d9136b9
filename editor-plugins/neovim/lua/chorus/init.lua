-- Chorus for Neovim: joins a session by attaching `chorus lsp` to the
-- workspace's buffers, and draws what the proxy's chorus/* notifications
-- report (presence, cursors, runs, the shared terminal). Public API: setup,
-- join, leave, run, run_command, stop, input, interrupt, share, resync,
-- files, who, follow, terminal, terminal_stop, statusline.

local state = require('chorus.state')
local cursors = require('chorus.cursors')
local check = require('chorus.check')
local run = require('chorus.run')
local terminal = require('chorus.terminal')

local M = {}

local group = vim.api.nvim_create_augroup('chorus', { clear = true })

local function notify(msg, level)
  vim.notify('Chorus: ' .. msg, level or vim.log.levels.INFO)
end

--- setup{ hub = 'ws://HOST:PORT/', name = 'Ada', cmd = {'chorus', 'lsp'},
---        root = nil, root_markers = {'.git'}, sync_files = false }
function M.setup(opts)
  state.config = vim.tbl_deep_extend('force', state.config, opts or {})
  if type(state.config.cmd) == 'string' then
    state.config.cmd = { state.config.cmd, 'lsp' }
  end
end

local function normalize(path)
  return (vim.fs.normalize(vim.fn.fnamemodify(path, ':p')):gsub('/$', ''))
end

local function workspace_root()
  if state.config.root then
    return normalize(state.config.root)
  end
  local found = vim.fs.root(0, state.config.root_markers)
  return normalize(found or vim.fn.getcwd())
end

--- Whether a buffer holds a file under the session's workspace root: only
--- those are shared (the proxy refuses paths outside it anyway).
local function shareable(bufnr)
  if not state.session or vim.bo[bufnr].buftype ~= '' then
    return false
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' then
    return false
  end
  local path = normalize(name)
  return path:sub(1, #state.root + 1) == state.root .. '/'
end

local function on_presence(params)
  if params.event == 'joined' and params.participant then
    local p = params.participant
    state.people[p.clientId] = { name = p.name, editor = p.editor }
    notify(p.name .. ' joined')
  elseif params.event == 'left' then
    state.people[params.clientId] = nil
    cursors.clear(params.clientId)
    notify((params.name or '?') .. ' left')
  end
  vim.cmd.redrawstatus()
end

-- Notification handlers run in the main loop already (Neovim schedules
-- them), so they may touch buffers directly.
local handlers = {
  ['chorus/presence'] = function(_, params)
    on_presence(params)
  end,
  ['chorus/cursor'] = function(_, params)
    -- chorus/presence names everyone, those already there when we joined
    -- included (the proxy replays them at each welcome); counting a
    -- cursor's owner here only guards against a cursor that comes first.
    if params.clientId and not state.people[params.clientId] then
      state.people[params.clientId] = { name = params.name }
    end
    cursors.on_remote(params)
  end,
  ['chorus/connection'] = function(_, params, ctx)
    state.connection = params.state
    state.role = params.role or state.role
    vim.cmd.redrawstatus()
    local waiting = state.when_online
    if params.state == 'online' then
      state.when_online = {}
      local client = vim.lsp.get_client_by_id(ctx and ctx.client_id or state.client_id)
      for _, f in ipairs(waiting) do
        if client then
          f(client)
        end
      end
    elseif params.state == 'refused' and #waiting > 0 then
      state.when_online = {}
      notify('the hub refused this proxy: ' .. (params.reason or '?'), vim.log.levels.ERROR)
    end
  end,
  ['chorus/runStarted'] = function(_, params)
    run.on_started(params)
  end,
  ['chorus/runOutput'] = function(_, params)
    run.on_output(params)
  end,
  ['chorus/runInput'] = function(_, params)
    run.on_input(params)
  end,
  ['chorus/runFinished'] = function(_, params)
    run.on_finished(params)
  end,
  ['chorus/terminalStarted'] = function(_, params)
    terminal.on_started(params)
  end,
  ['chorus/terminalOutput'] = function(_, params)
    terminal.on_output(params)
  end,
  ['chorus/terminalResized'] = function(_, params)
    terminal.on_resized(params)
  end,
  ['chorus/terminalEnded'] = function(_, params)
    terminal.on_ended(params)
  end,
  ['workspace/applyEdit'] = function(...)
    return require('chorus.edits').handler(...)
  end,
  -- Neovim's own handler echoes "LSP[chorus][Info] …"; through vim.notify
  -- the proxy's news (someone renamed or deleted your file, a run ended)
  -- reaches nvim-notify, fidget and the like, as the plugin's own does.
  ['window/showMessage'] = function(_, params)
    local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
    local message = (params.message or ''):gsub('^Chorus: ', '')
    notify(message, levels[params.type] or vim.log.levels.INFO)
  end,
}

--- initializationOptions (lsp-proxy/src/lsp_ext.rs `Settings`).
local function init_options()
  return {
    hub = state.config.hub,
    session = state.session,
    name = state.config.name,
    token = state.token,
    hubCa = state.config.hub_ca,
    -- We draw cursors ourselves and send chorus/cursor.
    extensions = true,
    -- Write the session's files into the workspace folder (nil: the
    -- proxy's --sync-files flag decides).
    syncFiles = state.config.sync_files,
  }
end

local function client_config()
  local cmd = vim.list_extend({}, state.config.cmd)
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  -- utf-32 columns are the proxy's own unit; it picks them when offered.
  capabilities.general = capabilities.general or {}
  capabilities.general.positionEncodings = { 'utf-32', 'utf-16' }
  return {
    name = 'chorus',
    cmd = cmd,
    root_dir = state.root,
    workspace_folders = {
      { uri = vim.uri_from_fname(state.root), name = vim.fs.basename(state.root) },
    },
    capabilities = capabilities,
    init_options = init_options(),
    -- Every keystroke must reach the proxy at once; Neovim's default
    -- 150 ms debounce would batch and delay edits.
    flags = { debounce_text_changes = 0 },
    handlers = handlers,
    on_exit = function(code, signal, client_id)
      if state.client_id == client_id then
        vim.schedule(function()
          if state.session then
            notify(string.format('chorus lsp exited (code %s, signal %s)', code, signal), vim.log.levels.WARN)
          end
          state.client_id = nil
        end)
      end
    end,
  }
end

--- Attaches the proxy to one buffer (vim.lsp.start reuses the running
--- client, matched by name and root_dir).
local function attach(bufnr)
  if not shareable(bufnr) then
    return
  end
  local id = vim.lsp.start(client_config(), { bufnr = bufnr })
  if id then
    state.client_id = id
  end
end

--- Joins `session`; `token` is its join or read-only token, needed unless
--- the hub runs with --open (falls back to setup's `token`, then to the
--- proxy's $CHORUS_TOKEN).
function M.join(session, token)
  if not session or session == '' then
    return notify('usage: :ChorusJoin <session> [token]', vim.log.levels.ERROR)
  end
  if state.session then
    M.leave()
  end
  state.session = session
  state.token = (token ~= nil and token ~= '') and token or state.config.token
  state.root = workspace_root()
  vim.api.nvim_clear_autocmds({ group = group })
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
    group = group,
    callback = function(ev)
      attach(ev.buf)
    end,
  })
  vim.api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI' }, {
    group = group,
    callback = function()
      cursors.on_moved()
    end,
  })
  vim.api.nvim_create_autocmd({ 'TextChanged', 'TextChangedI', 'TextChangedP' }, {
    group = group,
    callback = function(ev)
      check.schedule(ev.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      attach(bufnr)
    end
  end
  -- Keeping the session's files on disk needs the proxy running before
  -- any buffer of the workspace is open.
  if state.config.sync_files and not state.client_id then
    state.client_id = vim.lsp.start(client_config(), { attach = false })
  end
  notify(string.format('joined %s at %s (workspace %s)', session, state.config.hub, state.root))
  vim.cmd.redrawstatus()
end

function M.leave()
  if not state.session then
    return notify('not in a session')
  end
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  local session = state.session
  vim.api.nvim_clear_autocmds({ group = group })
  check.stop_all()
  cursors.clear_all()
  terminal.reset()
  state.reset()
  if client then
    client:stop()
  end
  notify('left ' .. session)
  vim.cmd.redrawstatus()
end

--- The running proxy client, or nil after telling the user why not.
local function client_or_warn()
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  if not client then
    notify('not in a session (:ChorusJoin <session>)', vim.log.levels.WARN)
  end
  return client
end

local function exec(client, command, arguments)
  client:exec_cmd({ title = command, command = command, arguments = arguments }, { bufnr = 0 }, function(err)
    if err then
      notify(command .. ': ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
  end)
end

-- The terminal view sends its keystrokes and sizes through the proxy
-- running now, whichever that is by then.
terminal.set_sender(function(command, arguments)
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  if client then
    exec(client, command, arguments)
  end
end)

local RUN_MODES = { run = true, test = true, release = true }

--- What `:ChorusRun {args}` asks for: `{ file = path or nil, options =
--- { mode, command, args } }`, or nil and why not. The words, in order:
--- `run`, `test` or `release` first (the mode); then at most one file; then
--- `cmd=…`, which takes the rest of the line as a shell command, or `--`,
--- after which every word is an argument of the program.
function M.parse_run_args(line)
  local words, options, file = {}, {}, nil
  -- A blank before `cmd=` (the padding one for the first word), so that a
  -- file whose name contains it is still a file.
  local padded = ' ' .. line
  local blank = padded:find('%scmd=')
  if blank then
    options.command = vim.trim(padded:sub(blank + 5))
    if options.command == '' then
      return nil, 'cmd= needs a command line, e.g. :ChorusRun cmd=make check'
    end
    line = padded:sub(1, blank - 1)
  end
  for word in line:gmatch('%S+') do
    table.insert(words, word)
  end
  local i = 1
  if RUN_MODES[words[1]] then
    options.mode = words[1] ~= 'run' and words[1] or nil
    i = 2
  end
  while i <= #words do
    local word = words[i]
    if word == '--' then
      if options.command then
        return nil, 'give arguments inside cmd= rather than after --'
      end
      options.args = vim.list_slice(words, i + 1)
      break
    elseif file then
      return nil, string.format('one file to run, not %s and %s (arguments go after --)', file, word)
    else
      file = word
    end
    i = i + 1
  end
  return { file = file, options = options }
end

--- `:ChorusRun {args}`: see |:ChorusRun|.
function M.run_command(line)
  local parsed, err = M.parse_run_args(line or '')
  if not parsed then
    notify(':ChorusRun: ' .. err, vim.log.levels.ERROR)
    return
  end
  M.run(parsed.file, parsed.options)
end

--- Runs the session's code: `file` (a path) or the current buffer.
--- `options` may carry stdin, args, mode ('run', 'test' or 'release')
--- and command (a shell command line instead of the detected one).
function M.run(file, options)
  local client = client_or_warn()
  if not client then
    return
  end
  local uri
  if file then
    uri = vim.uri_from_fname(normalize(file))
  else
    uri = vim.uri_from_bufnr(0)
  end
  exec(client, 'chorus.run', { uri, (options and next(options)) and options or vim.empty_dict() })
end

function M.stop()
  local client = client_or_warn()
  if client then
    exec(client, 'chorus.stop', {})
  end
end

--- Sends input to the session's run (`chorus.input`): `text` as a line
--- (a newline is added), then, with `eof`, closes the program's stdin.
--- Everyone sees it in the run buffer; a hub with no run going, or a
--- read-only session, answers with a message.
function M.input(text, eof)
  local client = client_or_warn()
  if not client then
    return
  end
  local input = {}
  if text and text ~= '' then
    input.text = text .. '\n'
  end
  if eof then
    input.eof = true
  end
  if not next(input) then
    notify(':ChorusInput: nothing to send; give the text, or use :ChorusInput! to end the input', vim.log.levels.WARN)
    return
  end
  exec(client, 'chorus.input', { input })
end

--- Interrupts the session's run (SIGINT; Python raises KeyboardInterrupt).
function M.interrupt()
  local client = client_or_warn()
  if client then
    exec(client, 'chorus.input', { { interrupt = true } })
  end
end

--- Publishes the workspace folder to the session (the proxy reports
--- progress through $/progress and the result as a message).
function M.share()
  local client = client_or_warn()
  if client then
    exec(client, 'chorus.share', {})
  end
end

--- Puts the session's text back in `bufnr` (default: the current buffer),
--- replacing the buffer whole: for a buffer that looks wrong, and what
--- the plugin does itself when the buffer differs from the proxy's copy.
function M.resync(bufnr)
  local client = client_or_warn()
  if client then
    bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
    exec(client, 'chorus.resync', { vim.uri_from_bufnr(bufnr) })
  end
end

--- Runs `f(client)` with the proxy once it is online: at once, or when
--- chorus/connection says so. Starts the proxy if no buffer of the
--- workspace has yet.
local function when_online(f)
  if not state.session then
    return notify('not in a session (:ChorusJoin <session>)', vim.log.levels.WARN)
  end
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  if client and state.connection == 'online' then
    return f(client)
  end
  if not client then
    state.connection = nil
    state.client_id = vim.lsp.start(client_config(), { attach = false })
  elseif state.connection == 'offline' then
    notify('not connected to the hub; waiting for it')
  end
  table.insert(state.when_online, f)
end

--- Lists the session's files to open one (vim.ui.select; see files.lua).
function M.files()
  when_online(function(client)
    client:exec_cmd(
      { title = 'chorus.files', command = 'chorus.files', arguments = {} },
      { bufnr = 0 },
      function(err, result)
        if err then
          return notify('chorus.files: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
        end
        require('chorus.files').choose(result)
      end
    )
  end)
end

--- `:ChorusTerminal [stop]`: opens (or focuses) the session's shared
--- terminal in a split; `stop` ends it for everyone.
function M.terminal(arg)
  if arg == 'stop' then
    return M.terminal_stop()
  elseif arg and arg ~= '' then
    return notify('usage: :ChorusTerminal [stop]', vim.log.levels.ERROR)
  end
  when_online(function()
    terminal.open()
  end)
end

function M.terminal_stop()
  local client = client_or_warn()
  if client then
    exec(client, 'chorus.terminal.stop', {})
  end
end

--- Names of the other people in the session, sorted.
function M.names()
  local names = {}
  for _, p in pairs(state.people) do
    table.insert(names, p.name)
  end
  table.sort(names)
  return names
end

function M.who()
  if not state.session then
    return notify('not in a session')
  end
  local lines = { 'session ' .. state.session .. ' · you: ' .. (state.config.name or '(default name)') }
  for id, p in pairs(state.people) do
    table.insert(lines, string.format('  %s%s (#%d)', p.name, p.editor and (' · ' .. p.editor) or '', id))
  end
  if vim.tbl_isempty(state.people) then
    table.insert(lines, '  nobody else seen yet')
  end
  notify(table.concat(lines, '\n'))
end

--- Follow a collaborator's cursor (nil: stop following).
function M.follow(name)
  if not state.session then
    return notify('not in a session')
  end
  state.following = name
  if not name then
    notify('stopped following')
  else
    notify('following ' .. name)
    local bufnr, row, col = cursors.position_of(name)
    if bufnr then
      cursors.follow_to(bufnr, { head = { line = row, character = 0 } })
      pcall(vim.api.nvim_win_set_cursor, 0, { row + 1, col })
    end
  end
  vim.cmd.redrawstatus()
end

--- Statusline component: "♪ session · N people · run state", or "".
function M.statusline()
  if not state.session then
    return ''
  end
  local parts = { '♪ ' .. state.session }
  local others = vim.tbl_count(state.people)
  table.insert(parts, string.format('%d %s', others + 1, others == 0 and 'person' or 'people'))
  if state.following then
    table.insert(parts, 'following ' .. state.following)
  end
  if state.run then
    if state.run.running then
      table.insert(parts, 'running #' .. tostring(state.run.id))
    elseif state.run.summary then
      table.insert(parts, 'run #' .. tostring(state.run.id) .. ': ' .. state.run.summary)
    end
  end
  if state.terminal then
    table.insert(parts, 'terminal')
  end
  if state.role == 'readOnly' then
    table.insert(parts, 'read-only')
  end
  if not state.client_id or state.connection == 'offline' then
    table.insert(parts, 'offline')
  elseif state.connection == 'refused' then
    table.insert(parts, 'refused')
  end
  return table.concat(parts, ' · ')
end

--- For tests and health checks: the shared state, read-only by convention.
M.state = state

--- For tests (test/lsp_ext_spec.lua): the chorus/* handlers by method, and
--- the initializationOptions a join sends.
M.handlers = handlers
M.init_options = init_options

return M
