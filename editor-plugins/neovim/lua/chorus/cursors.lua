-- Collaborators' cursors and selections as extmarks (one colour and a name
-- label per person), and the user's own cursor sent as chorus/cursor.

local state = require('chorus.state')

local M = {}

--- Every collaborator mark lives in this namespace (tests query it).
M.ns = vim.api.nvim_create_namespace('chorus_cursors')

-- Colours are picked by hub client id, so a person keeps theirs for the
-- whole session and everyone sees the same mapping for the same ids.
local palette = {
  '#e06c75',
  '#61afef',
  '#98c379',
  '#c678dd',
  '#e5c07b',
  '#56b6c2',
}

local function define_highlights()
  for i, colour in ipairs(palette) do
    -- default = true: a colourscheme or the user may override them.
    vim.api.nvim_set_hl(0, 'ChorusCursor' .. i, { default = true, bg = colour, fg = '#000000' })
    vim.api.nvim_set_hl(0, 'ChorusLabel' .. i, { default = true, bg = colour, fg = '#000000', bold = true })
    vim.api.nvim_set_hl(0, 'ChorusSelection' .. i, { default = true, bg = colour, blend = 60 })
  end
end
define_highlights()
vim.api.nvim_create_autocmd('ColorScheme', {
  group = vim.api.nvim_create_augroup('chorus_colours', { clear = true }),
  callback = define_highlights,
})

--- Marks placed per client id: { [client_id] = { bufnr = n, ids = {...} } }.
local marks = {}

local function colour_index(client_id)
  return (client_id % #palette) + 1
end

--- Byte column of a utf-32 character index in a line (the proxy negotiates
--- utf-32 with Neovim; extmarks want bytes).
local function byte_col(bufnr, row, character)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
  if not line then
    return nil
  end
  local ok, col = pcall(vim.str_byteindex, line, 'utf-32', character, false)
  if not ok or not col then
    return #line
  end
  return math.min(col, #line)
end

--- Clamps an LSP position to the buffer; returns 0-based row and byte column.
local function to_buf(bufnr, pos)
  local count = vim.api.nvim_buf_line_count(bufnr)
  local row = math.min(pos.line, count - 1)
  local col = byte_col(bufnr, row, pos.line > row and math.huge or pos.character) or 0
  return row, col
end

function M.clear(client_id)
  local placed = marks[client_id]
  if not placed then
    return
  end
  if vim.api.nvim_buf_is_valid(placed.bufnr) then
    for _, id in ipairs(placed.ids) do
      pcall(vim.api.nvim_buf_del_extmark, placed.bufnr, M.ns, id)
    end
  end
  marks[client_id] = nil
end

function M.clear_all()
  for client_id in pairs(marks) do
    M.clear(client_id)
  end
end

--- Draws one person's selections in a buffer, replacing what they had.
function M.draw(client_id, name, bufnr, selections)
  M.clear(client_id)
  local i = colour_index(client_id)
  local ids = {}
  for n, sel in ipairs(selections) do
    local hrow, hcol = to_buf(bufnr, sel.head)
    local arow, acol = to_buf(bufnr, sel.anchor)
    if arow ~= hrow or acol ~= hcol then
      local srow, scol, erow, ecol = arow, acol, hrow, hcol
      if hrow < arow or (hrow == arow and hcol < acol) then
        srow, scol, erow, ecol = hrow, hcol, arow, acol
      end
      table.insert(
        ids,
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, srow, scol, {
          end_row = erow,
          end_col = ecol,
          hl_group = 'ChorusSelection' .. i,
          priority = 150,
        })
      )
    end
    local line = vim.api.nvim_buf_get_lines(bufnr, hrow, hrow + 1, false)[1] or ''
    local opts = {
      priority = 200,
      -- The label names the person; only the first selection carries it.
      virt_text = n == 1 and { { ' ' .. name .. ' ', 'ChorusLabel' .. i } } or nil,
      virt_text_pos = n == 1 and 'eol' or nil,
      -- The mark records who it is for, so that tests and users can tell.
      right_gravity = false,
    }
    if hcol < #line then
      -- Highlight the character under their cursor like a block cursor.
      local next_col = vim.str_byteindex(line, 'utf-32', vim.str_utfindex(line, 'utf-32', hcol) + 1, false)
      opts.end_row = hrow
      opts.end_col = math.min(next_col, #line)
      opts.hl_group = 'ChorusCursor' .. i
    end
    table.insert(ids, vim.api.nvim_buf_set_extmark(bufnr, M.ns, hrow, hcol, opts))
  end
  marks[client_id] = { bufnr = bufnr, ids = ids, name = name }
end

--- Where a person's first cursor is: bufnr, row, byte col (or nil).
function M.position_of(name)
  for _, placed in pairs(marks) do
    if placed.name == name and vim.api.nvim_buf_is_valid(placed.bufnr) then
      local id = placed.ids[#placed.ids]
      local pos = vim.api.nvim_buf_get_extmark_by_id(placed.bufnr, M.ns, id, {})
      if pos[1] then
        return placed.bufnr, pos[1], pos[2]
      end
    end
  end
end

--- chorus/cursor from the proxy: someone's selections in one document.
function M.on_remote(params)
  local bufnr = vim.uri_to_bufnr(params.uri)
  if not vim.api.nvim_buf_is_loaded(bufnr) then
    -- A document this editor does not show; nothing to draw on.
    return
  end
  M.draw(params.clientId, params.name, bufnr, params.selections or {})
  if state.following and state.following == params.name then
    M.follow_to(bufnr, params.selections and params.selections[1])
  end
end

--- Follow mode: show the followed person's buffer and cursor in the current
--- window. Done here rather than through the proxy's window/showDocument so
--- that it works the same whether or not the buffer is already shown.
local following_move = false
function M.follow_to(bufnr, sel)
  if not sel then
    return
  end
  local win = vim.api.nvim_get_current_win()
  if vim.api.nvim_win_get_buf(win) ~= bufnr then
    vim.api.nvim_win_set_buf(win, bufnr)
  end
  local row, col = to_buf(bufnr, sel.head)
  -- Our own CursorMoved must not echo a cursor the user did not move.
  following_move = true
  pcall(vim.api.nvim_win_set_cursor, win, { row + 1, col })
  vim.api.nvim_win_call(win, function()
    vim.cmd('normal! zz')
  end)
end

--- LSP position (utf-32) of a window's cursor or of a mark.
local function lsp_pos(bufnr, row, col)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  col = math.min(col, #line)
  return { line = row, character = vim.str_utfindex(line, 'utf-32', col, false) }
end

--- The current selection of the current window, as {anchor, head}.
local function current_selection(bufnr)
  local cur = vim.api.nvim_win_get_cursor(0)
  local head = lsp_pos(bufnr, cur[1] - 1, cur[2])
  local mode = vim.api.nvim_get_mode().mode
  if mode:match('^[vV\22]') then
    local v = vim.fn.getpos('v')
    return { anchor = lsp_pos(bufnr, v[2] - 1, v[3] - 1), head = head }
  end
  return { anchor = head, head = head }
end

local timer = nil
local pending = false

local function send_now()
  pending = false
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  local bufnr = vim.api.nvim_get_current_buf()
  if not client or not vim.lsp.buf_is_attached(bufnr, client.id) then
    return
  end
  client:notify('chorus/cursor', {
    uri = vim.uri_from_bufnr(bufnr),
    selections = { current_selection(bufnr) },
  })
end

--- CursorMoved: send at most one chorus/cursor per throttle period, and
--- always the last position (trailing send), so that others see where the
--- cursor stopped.
function M.on_moved()
  if following_move then
    following_move = false
    return
  end
  if timer and timer:is_active() then
    pending = true
    return
  end
  send_now()
  timer = timer or vim.uv.new_timer()
  timer:start(state.config.cursor_throttle_ms, 0, function()
    if pending then
      vim.schedule(send_now)
    end
  end)
end

return M
