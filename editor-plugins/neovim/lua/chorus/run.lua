-- Shared runs: streams chorus/runOutput into one scratch buffer shown in a
-- split, so that everyone in the session watches the same output live.

local state = require('chorus.state')

local M = {}

local BUF_NAME = 'chorus://run'

--- The scratch buffer, created on first use and reused for every run.
function M.buffer()
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_valid(b) and vim.api.nvim_buf_get_name(b) == BUF_NAME then
      return b
    end
  end
  local b = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_name(b, BUF_NAME)
  vim.bo[b].buftype = 'nofile'
  vim.bo[b].bufhidden = 'hide'
  vim.bo[b].swapfile = false
  vim.bo[b].filetype = 'chorusrun'
  return b
end

--- Shows the buffer in a split below unless some window shows it already.
--- The split does not take focus: a run started by someone else must not
--- pull the cursor out of what you are typing.
local function show(b)
  if #vim.fn.win_findbuf(b) > 0 then
    return
  end
  vim.api.nvim_open_win(b, false, { split = 'below', height = state.config.run_height, win = -1 })
end

local function with_modifiable(b, f)
  vim.bo[b].modifiable = true
  f()
  vim.bo[b].modifiable = false
end

--- Appends text that may end mid-line: the first piece continues the last
--- line, as output arrives in arbitrary chunks.
local function append(b, data)
  with_modifiable(b, function()
    local pieces = vim.split(data:gsub('\r\n', '\n'), '\n', { plain = true })
    local last = vim.api.nvim_buf_line_count(b)
    local tail = vim.api.nvim_buf_get_lines(b, last - 1, last, false)[1] or ''
    pieces[1] = tail .. pieces[1]
    vim.api.nvim_buf_set_lines(b, last - 1, last, false, pieces)
  end)
  -- Keep windows showing the output scrolled to its end.
  for _, win in ipairs(vim.fn.win_findbuf(b)) do
    pcall(vim.api.nvim_win_set_cursor, win, { vim.api.nvim_buf_line_count(b), 0 })
  end
end

--- Output lines of the current run that came in on stderr start a line
--- with this marker, so they can be told apart in one buffer.
local function on_new_line_prefix(b, prefix)
  local last = vim.api.nvim_buf_line_count(b)
  local tail = vim.api.nvim_buf_get_lines(b, last - 1, last, false)[1] or ''
  return tail == '' and prefix or ''
end

--- The stream of the unfinished last line of output, if it is unfinished.
local open_stream = nil

function M.on_started(params)
  open_stream = nil
  state.run = { id = params.runId, name = params.name, doc = params.doc, plan = params.plan, running = true }
  local b = M.buffer()
  -- The plan says what runs (`cargo test --offline (Cargo.toml)`); older
  -- hubs send none.
  local header = string.format('# run %d · %s · %s', params.runId, params.name, params.doc)
  if params.plan and params.plan ~= vim.NIL and params.plan ~= '' then
    header = header .. ' · ' .. params.plan
  end
  with_modifiable(b, function()
    vim.api.nvim_buf_set_lines(b, 0, -1, false, { header, '' })
  end)
  show(b)
  vim.cmd.redrawstatus()
end

function M.on_output(params)
  if state.run and state.run.id ~= params.runId then
    -- Output of a run we did not see start (joined midway): adopt it.
    state.run = { id = params.runId, running = true }
  end
  local b = M.buffer()
  local data = params.data or ''
  if data == '' then
    return
  end
  -- A line cut off on one stream and continued on the other would read as
  -- one line (the engine reads stdout and stderr apart, so their chunks
  -- interleave anywhere): start the other stream's text on a fresh line.
  if open_stream and open_stream ~= params.stream then
    append(b, '\n')
  end
  open_stream = not vim.endswith(data, '\n') and params.stream or nil
  if params.stream == 'stderr' then
    -- Mark each stderr line; split keeps partial lines intact.
    local out, first = {}, true
    for piece in (data .. '\n'):gmatch('(.-)\n') do
      local prefix = first and on_new_line_prefix(b, 'stderr: ') or 'stderr: '
      table.insert(out, piece ~= '' and (prefix .. piece) or piece)
      first = false
    end
    data = table.concat(out, '\n')
  end
  append(b, data)
  show(b)
end

--- Someone's input to the run (chorus/runInput): one `> line  (from NAME)`
--- per line sent, and `> (end of input)` / `> (interrupt)`, each on a line
--- of its own so that a prompt the program left open stays readable.
function M.on_input(params)
  local b = M.buffer()
  local lines = {}
  local text = params.text
  if type(text) == 'string' and text ~= '' then
    text = text:gsub('\r\n', '\n'):gsub('\n$', '')
    for _, line in ipairs(vim.split(text, '\n', { plain = true })) do
      table.insert(lines, line)
    end
  end
  if params.eof == true then
    table.insert(lines, '(end of input)')
  end
  if params.interrupt == true then
    table.insert(lines, '(interrupt)')
  end
  if #lines == 0 then
    return
  end
  local out = {}
  for _, line in ipairs(lines) do
    table.insert(out, string.format('> %s  (from %s)', line, params.name or '?'))
  end
  local last = vim.api.nvim_buf_line_count(b)
  local tail = vim.api.nvim_buf_get_lines(b, last - 1, last, false)[1] or ''
  append(b, (tail == '' and '' or '\n') .. table.concat(out, '\n') .. '\n')
  open_stream = nil
  show(b)
end

function M.on_finished(params)
  open_stream = nil
  local b = M.buffer()
  local summary = params.summary or 'finished'
  state.run = state.run or { id = params.runId }
  state.run.running = false
  state.run.summary = summary
  local last = vim.api.nvim_buf_line_count(b)
  local tail = vim.api.nvim_buf_get_lines(b, last - 1, last, false)[1] or ''
  append(b, (tail == '' and '' or '\n') .. '# ' .. summary)
  show(b)
  vim.cmd.redrawstatus()
end

--- Text of the run buffer (for tests and :ChorusWho-style inspection).
function M.text()
  return table.concat(vim.api.nvim_buf_get_lines(M.buffer(), 0, -1, false), '\n')
end

return M
