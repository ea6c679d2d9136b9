-- :ChorusFiles: the session's files (the proxy's `chorus.files` answer,
-- lsp-proxy/src/lsp_ext.rs `Files`) offered through vim.ui.select, so that
-- a Telescope or fzf-lua ui-select override shows them in its own picker.
-- A text file opens by its path in the workspace whether or not it is on
-- disk here: the proxy fills the buffer with the session's text. A file
-- the session lists without its content cannot be opened through Chorus;
-- choosing one says why.

local state = require('chorus.state')

local M = {}

--- Why a file is listed without its content, in words (`NotSynced` in
--- protocol/src/wire.rs).
M.reasons = {
  binary = 'binary',
  tooLarge = "larger than the hub's per-file limit",
  sessionFull = "over the session's total size",
}

local function notify(msg, level)
  vim.notify('Chorus: ' .. msg, level or vim.log.levels.INFO)
end

local function size_text(bytes)
  if bytes < 1024 then
    return string.format('%d B', bytes)
  elseif bytes < 1024 * 1024 then
    return string.format('%.1f KB', bytes / 1024)
  end
  return string.format('%.1f MB', bytes / (1024 * 1024))
end

--- The workspace path of a session file.
local function local_path(file)
  if file.uri and file.uri ~= vim.NIL then
    return vim.uri_to_fname(file.uri)
  end
  return state.root .. '/' .. file.path
end

--- One line per file, as the picker shows it.
function M.format(file)
  local reason = file.notSynced
  if reason and reason ~= vim.NIL then
    return string.format('%s  (not synced: %s)', file.path, M.reasons[reason] or tostring(reason))
  end
  local here = vim.uv.fs_stat(local_path(file)) and '' or ', not on disk here'
  return string.format('%s  (%s%s)', file.path, size_text(file.size or 0), here)
end

--- Opens what the user chose.
function M.open(file)
  local reason = file.notSynced
  if reason and reason ~= vim.NIL then
    return notify(
      string.format(
        '%s is in the session without its content (%s), so it cannot be opened through Chorus.',
        file.path,
        M.reasons[reason] or tostring(reason)
      ),
      vim.log.levels.WARN
    )
  end
  local path = local_path(file)
  local bufnr = vim.fn.bufnr(path)
  if bufnr > 0 and vim.api.nvim_buf_is_loaded(bufnr) then
    -- :edit would reload it, or refuse while it has unsaved changes.
    vim.api.nvim_set_current_buf(bufnr)
  else
    -- :edit fires BufReadPost or BufNewFile, which attaches the proxy.
    vim.cmd.edit(vim.fn.fnameescape(path))
  end
end

--- Offers `answer.files` (the proxy's answer) to pick one to open.
function M.choose(answer)
  local files = type(answer) == 'table' and answer.files or {}
  if #files == 0 then
    return notify('the session has no files yet')
  end
  vim.ui.select(files, {
    prompt = 'Chorus: session ' .. (state.session or '') .. ' files',
    format_item = M.format,
    kind = 'chorus_files',
  }, function(file)
    if file then
      M.open(file)
    end
  end)
end

return M
