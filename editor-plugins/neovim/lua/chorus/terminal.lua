-- The session's shared terminal (issue 16) in a terminal buffer: output
-- from chorus/terminalOutput goes in with nvim_chan_send, and what the user
-- types in it goes out as chorus.terminal.input, keystroke by keystroke.
-- The messages mirror lsp-proxy/src/lsp_ext.rs (TerminalStarted,
-- TerminalOutput, TerminalResized, TerminalEnded and the chorus.terminal*
-- commands).
--
-- A view shows the replay the proxy sends in answer to chorus.terminal,
-- then live output from the replay's seq on: live output that arrives
-- before the replay is inside it. A terminal our chorus.terminal opens has
-- no replay: its output starts live at seq 0, before which nothing can be
-- missing. Output while no view is open is not kept; the replay covers it
-- when one opens.

local state = require('chorus.state')

local M = {}

local BUF_NAME = 'chorus://terminal'

--- The terminal buffer, nil until :ChorusTerminal. Fields:
---   buf, chan    the buffer and its nvim_open_term channel
---   terminal_id  the terminal it shows (nil until the proxy says)
---   waiting      true until the replay arrives
---   pending      live output that came before the replay: { terminalId, seq, data }
---   next_seq     the seq of the next live output to show
---   size         the size last sent: { cols, rows }
---   ended        the terminal ended; the buffer keeps its last screen
local view = nil

--- Sends a chorus.* command through the proxy: set by init.lua, which
--- knows the client.
local send = function(_, _) end

function M.set_sender(f)
  send = f
end

local group = vim.api.nvim_create_augroup('chorus_terminal', { clear = true })

local function notify(msg, level)
  vim.notify('Chorus: ' .. msg, level or vim.log.levels.INFO)
end

--- A view that still shows the session's terminal (or is about to).
local function live_view()
  if not view or view.ended or not vim.api.nvim_buf_is_valid(view.buf) then
    return nil
  end
  local open = state.terminal and state.terminal.id
  if view.terminal_id and open and view.terminal_id ~= open then
    -- Another terminal opened since; this one ended unseen (offline).
    return nil
  end
  return view
end

--- The terminal's size in `win`: its text area, without number or sign
--- columns.
local function size_of(win)
  local info = vim.fn.getwininfo(win)[1]
  return { cols = math.max(1, info.width - info.textoff), rows = math.max(1, info.height) }
end

local function show(data)
  if data ~= nil and data ~= '' then
    vim.api.nvim_chan_send(view.chan, data)
  end
end

--- The terminal follows the most recent typist's view: tell the proxy
--- when ours changes size.
local function resized()
  local v = live_view()
  if not v or not v.terminal_id then
    return
  end
  local win = vim.fn.win_findbuf(v.buf)[1]
  if not win then
    return
  end
  local size = size_of(win)
  if v.size and v.size.cols == size.cols and v.size.rows == size.rows then
    return
  end
  v.size = size
  send('chorus.terminal.resize', { size })
end

local function watch_sizes()
  vim.api.nvim_clear_autocmds({ group = group })
  -- resized() compares with the size last sent: whichever window changed,
  -- only a change of ours is sent.
  vim.api.nvim_create_autocmd({ 'WinResized', 'VimResized' }, { group = group, callback = resized })
end

--- Shows `buf` in the window showing the old view, else in a new split
--- below, and makes that window current.
local function show_in_window(buf, old_buf)
  local win = old_buf and vim.fn.win_findbuf(old_buf)[1]
  if win then
    vim.api.nvim_win_set_buf(win, buf)
    vim.api.nvim_set_current_win(win)
  else
    win = vim.api.nvim_open_win(buf, true, { split = 'below', height = state.config.terminal_height, win = -1 })
  end
  vim.wo[win].number = false
  vim.wo[win].relativenumber = false
  vim.wo[win].signcolumn = 'no'
  return win
end

--- :ChorusTerminal: focuses the view, or opens one and asks the proxy to
--- open the session's terminal (or join the one open) at its size.
function M.open()
  local v = live_view()
  if v then
    local win = vim.fn.win_findbuf(v.buf)[1]
    if win then
      vim.api.nvim_set_current_win(win)
    else
      show_in_window(v.buf)
    end
    vim.cmd.startinsert()
    return
  end
  local old_buf = view and vim.api.nvim_buf_is_valid(view.buf) and view.buf or nil
  local buf = vim.api.nvim_create_buf(false, true)
  local win = show_in_window(buf, old_buf)
  if old_buf then
    vim.api.nvim_buf_delete(old_buf, { force = true })
  end
  local this
  local chan = vim.api.nvim_open_term(buf, {
    on_input = function(_, _, _, data)
      -- Keys typed in an ended terminal reach nothing.
      if view == this and not this.ended then
        send('chorus.terminal.input', { { data = data } })
      end
    end,
  })
  vim.api.nvim_buf_set_name(buf, BUF_NAME)
  vim.bo[buf].bufhidden = 'hide'
  this = { buf = buf, chan = chan, waiting = true, pending = {} }
  view = this
  this.size = size_of(win)
  send('chorus.terminal', { this.size })
  watch_sizes()
  vim.cmd.startinsert()
end

--- :ChorusTerminal stop, :ChorusTerminalStop: ends it for everyone.
function M.stop()
  send('chorus.terminal.stop', {})
end

function M.on_started(params)
  local known = state.terminal and state.terminal.id
  state.terminal =
    { id = params.terminalId, client_id = params.clientId, name = params.name, cols = params.cols, rows = params.rows }
  local v = live_view()
  if v and v.waiting and not v.terminal_id then
    -- The terminal our chorus.terminal opened or joined.
    v.terminal_id = params.terminalId
  elseif known ~= params.terminalId then
    notify(string.format('%s opened the shared terminal: :ChorusTerminal to join', params.name))
  end
  vim.cmd.redrawstatus()
end

function M.on_output(params)
  local v = live_view()
  if not v or (v.terminal_id and v.terminal_id ~= params.terminalId) then
    return
  end
  if params.replay == true then
    if not v.waiting then
      return
    end
    v.terminal_id = params.terminalId
    v.waiting = false
    v.next_seq = params.seq
    show(params.data)
    for _, early in ipairs(v.pending) do
      if early.terminalId == params.terminalId and early.seq >= v.next_seq then
        show(early.data)
        v.next_seq = early.seq + 1
      end
    end
    v.pending = {}
  elseif v.waiting and params.seq == 0 then
    -- A terminal just opened: nothing came before, and a replay that
    -- still came would repeat only what is live from here.
    v.terminal_id = params.terminalId
    v.waiting = false
    v.pending = {}
    show(params.data)
    v.next_seq = 1
  elseif v.waiting then
    table.insert(v.pending, { terminalId = params.terminalId, seq = params.seq, data = params.data })
  elseif params.seq >= v.next_seq then
    show(params.data)
    v.next_seq = params.seq + 1
  end
end

function M.on_resized(params)
  if state.terminal and state.terminal.id == params.terminalId then
    state.terminal.cols, state.terminal.rows = params.cols, params.rows
  end
end

function M.on_ended(params)
  local reason = params.reason or 'ended'
  if state.terminal and state.terminal.id == params.terminalId then
    state.terminal = nil
  end
  local v = view
  if v and not v.ended and v.terminal_id == params.terminalId and vim.api.nvim_buf_is_valid(v.buf) then
    v.ended = true
    show('\r\n[terminal ended: ' .. reason .. ']\r\n')
  else
    notify('the shared terminal ended: ' .. reason)
  end
  vim.cmd.redrawstatus()
end

--- Forgets the view (leaving the session); its buffer stays, ended.
function M.reset()
  if view then
    view.ended = true
  end
  view = nil
  vim.api.nvim_clear_autocmds({ group = group })
end

--- The terminal buffer's lines, trailing blank ones dropped (for tests).
function M.text()
  if not view or not vim.api.nvim_buf_is_valid(view.buf) then
    return ''
  end
  local lines = vim.api.nvim_buf_get_lines(view.buf, 0, -1, false)
  while #lines > 0 and vim.trim(lines[#lines]) == '' do
    table.remove(lines)
  end
  return table.concat(lines, '\n')
end

--- The view's buffer, or nil (for tests).
function M.buffer()
  return view and view.buf
end

return M
