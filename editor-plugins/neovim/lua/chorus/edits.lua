-- workspace/applyEdit for the chorus client: refuses stale edits honestly
-- (applied = false), reshapes edits that touch the end of the buffer so
-- that Neovim applies each one as a single change, then hands them to
-- Neovim's own handler.
--
-- Why: an LSP range may end at (line_count, 0), just past the final
-- newline (the proxy sends that when a remote op replaces the last "\n",
-- e.g. after someone typed `o` on the last line). Neovim applies such an
-- edit in two steps (set_text, then deleting the empty last line it left),
-- reporting two didChange notifications. The proxy recognises the echo of
-- its edit by content after each didChange, so it took the first half for
-- a local edit, re-sent its edit, and all proxies looped forever. The same
-- edit, expressed without the past-the-end position, is one change.

local M = {}

--- Rewrites one TextEdit in place when it ends past the last line.
local function reshape(bufnr, edit)
  local last = vim.api.nvim_buf_line_count(bufnr)
  local r = edit.range
  local text = edit.newText
  if r['end'].line ~= last or r['end'].character ~= 0 or text:sub(-1) ~= '\n' then
    return
  end
  if not (vim.bo[bufnr].eol or vim.bo[bufnr].fixeol) then
    -- No final newline in the LSP text: (last, 0) is not a real position.
    return
  end
  local last_line = vim.api.nvim_buf_get_lines(bufnr, last - 1, last, false)[1] or ''
  local eol_pos = { line = last - 1, character = vim.str_utfindex(last_line, 'utf-32') }
  -- A CRLF file's edits end with "\r\n": the whole line ending moves.
  local eol = text:sub(-2) == '\r\n' and '\r\n' or '\n'
  if r.start.line == last then
    -- Inserting after the final newline = inserting before it, newline
    -- first: "X\n" appended to "a\n" is "a\nX\n" either way.
    r.start = eol_pos
    r['end'] = vim.deepcopy(eol_pos)
    edit.newText = eol .. text:sub(1, -1 - #eol)
  else
    -- Both the replaced text and the new one end with the final newline:
    -- keep it, replace what comes before it.
    r['end'] = eol_pos
    edit.newText = text:sub(1, -1 - #eol)
  end
end

--- Neovim's client positions use the client's offset encoding; the proxy
--- negotiates utf-32, which is what reshape() computes in.
--- The first document an edit was computed for an older version of, or nil.
local function stale_document(params)
  for _, change in ipairs(params.edit.documentChanges or {}) do
    local version = change.textDocument and change.textDocument.version
    if version and version ~= vim.NIL then
      local bufnr = vim.uri_to_bufnr(change.textDocument.uri)
      local current = vim.lsp.util.buf_versions[bufnr]
      if current and current > version then
        return change.textDocument.uri, current, version
      end
    end
  end
end

function M.handler(err, params, ctx, config)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if params and params.edit then
    -- Neovim's own handler skips a stale edit but answers applied = true
    -- (and prints "newer than edits"). Say no, as VS Code and Helix do:
    -- the proxy then rebases the edit and sends it again.
    local uri, current, version = stale_document(params)
    if uri then
      return {
        applied = false,
        failureReason = string.format('%s changed: version %d, edit for %d', uri, current, version),
      }
    end
  end
  if params and params.edit and client and client.offset_encoding == 'utf-32' then
    for _, change in ipairs(params.edit.documentChanges or {}) do
      if change.edits and change.textDocument then
        local bufnr = vim.uri_to_bufnr(change.textDocument.uri)
        if vim.api.nvim_buf_is_loaded(bufnr) then
          for _, edit in ipairs(change.edits) do
            if edit.range then
              reshape(bufnr, edit)
            end
          end
        end
      end
    end
  end
  if params then
    -- Neovim prints "Workspace edit <label>" for every labelled edit: one
    -- message per remote keystroke. Chorus edits need no announcement.
    params.label = nil
  end
  return vim.lsp.handlers['workspace/applyEdit'](err, params, ctx, config)
end

return M
