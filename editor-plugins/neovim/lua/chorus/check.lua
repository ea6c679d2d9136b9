-- After each burst of changes settles, compares the buffer with the
-- proxy's copy of it (chorus/documentState) at the same version, and asks
-- the proxy to put the session's text back (chorus.resync) when they
-- differ. Why: a change lost between Neovim and the proxy would otherwise
-- leave this buffer different from everyone else's, and nobody would see
-- it until the next edit near it went wrong.

local state = require('chorus.state')

local M = {}

--- Milliseconds of quiet after a change before the buffer is compared.
M.settle_ms = 500
--- Buffers larger than this are not compared: the proxy's copy would
--- cross the pipe after every burst.
M.max_bytes = 2 * 1024 * 1024
--- Comparisons made and differences found (for :checkhealth and tests).
M.checks = 0
M.mismatches = 0

local timers = {}

--- Compares `bufnr` with the proxy's copy now, if both are at the same
--- version with nothing in flight; resyncs on a difference.
function M.check(bufnr)
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id)
  if not client or not vim.api.nvim_buf_is_loaded(bufnr) then
    return
  end
  if not vim.lsp.buf_is_attached(bufnr, client.id) then
    return
  end
  local version = vim.lsp.util.buf_versions[bufnr]
  local uri = vim.uri_from_bufnr(bufnr)
  client:request('chorus/documentState', { uri = uri }, function(err, result)
    if err or type(result) ~= 'table' or not result.synchronized then
      return
    end
    -- Only the same version can be compared; typing since means another
    -- check is coming.
    if result.version ~= version or vim.lsp.util.buf_versions[bufnr] ~= version then
      return
    end
    local text = vim.lsp._buf_get_full_text(bufnr)
    if #text > M.max_bytes then
      return
    end
    M.checks = M.checks + 1
    if text ~= result.text then
      M.mismatches = M.mismatches + 1
      require('chorus').resync(bufnr)
    end
  end, bufnr)
end

--- (Re)starts `bufnr`'s quiet timer.
function M.schedule(bufnr)
  local timer = timers[bufnr]
  if not timer then
    timer = assert(vim.uv.new_timer())
    timers[bufnr] = timer
  end
  timer:stop()
  timer:start(
    M.settle_ms,
    0,
    vim.schedule_wrap(function()
      M.check(bufnr)
    end)
  )
end

function M.stop_all()
  for bufnr, timer in pairs(timers) do
    timer:stop()
    timer:close()
    timers[bufnr] = nil
  end
end

return M
