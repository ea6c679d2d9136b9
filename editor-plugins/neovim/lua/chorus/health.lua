-- :checkhealth chorus — is everything Chorus needs in place? The binary and
-- its version, the hub answering GET /healthz, and a new enough Neovim.

local state = require('chorus.state')

local M = {}

--- host, port of a ws://HOST:PORT/ URL (nil if it is not one).
local function host_port(url)
  local host, port = url:match('^wss?://%[?([^%]/]-)%]?:(%d+)')
  if not host then
    host = url:match('^wss?://([^:/]+)')
    port = url:match('^wss://') and 443 or 80
  end
  return host, tonumber(port)
end

--- GET /healthz over a raw vim.uv TCP socket (no curl needed). Returns the
--- HTTP status line or nil and an error.
local function healthz(host, port, timeout_ms)
  local addr = host
  if not host:match('^[%d.]+$') and not host:match(':') then
    local info = vim.uv.getaddrinfo(host, nil, { socktype = 'stream' })
    addr = info and info[1] and info[1].addr
    if not addr then
      return nil, 'cannot resolve ' .. host
    end
  end
  local tcp = vim.uv.new_tcp()
  local done, status, err = false, nil, nil
  local received = ''
  tcp:connect(addr, port, function(cerr)
    if cerr then
      err, done = cerr, true
      return
    end
    tcp:write(string.format('GET /healthz HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n', host, port))
    tcp:read_start(function(rerr, chunk)
      if rerr or not chunk then
        err = rerr
        done = true
        return
      end
      received = received .. chunk
      local line = received:match('^(HTTP/[^\r\n]+)\r?\n')
      if line then
        status, done = line, true
      end
    end)
  end)
  vim.wait(timeout_ms, function()
    return done
  end, 20)
  if not tcp:is_closing() then
    tcp:close()
  end
  if status then
    return status
  end
  return nil, err or ('no answer within ' .. timeout_ms .. ' ms')
end

function M.check()
  local health = vim.health
  health.start('Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or newer is needed (this is ' .. tostring(vim.version()) .. ')')
  end

  health.start('chorus binary')
  local bin = state.config.cmd[1]
  local path = vim.fn.exepath(bin)
  if path == '' then
    health.error(bin .. ' not found', { 'Build it (cargo build --release) and put it on PATH, or set cmd in setup()' })
  else
    health.ok('found ' .. path)
    local result = vim.system({ path, 'version' }, { text = true }):wait(5000)
    if result.code == 0 then
      health.ok('version: ' .. vim.trim(result.stdout or ''))
    else
      health.warn('`' .. path .. ' version` failed: ' .. vim.trim((result.stderr or '') .. (result.stdout or '')))
    end
  end

  health.start('hub')
  local url = state.config.hub
  local host, port = host_port(url)
  if not host or not port then
    health.error('cannot read a host and port from hub = ' .. vim.inspect(url))
  else
    local status, err = healthz(host, port, 2000)
    if status and status:match(' 200') then
      health.ok(url .. ' answers GET /healthz: ' .. status)
    elseif status then
      health.warn(url .. ' answered GET /healthz with ' .. status)
    else
      health.error(url .. ' is not reachable: ' .. tostring(err), { 'Start one with `chorus hub`' })
    end
  end

  health.start('session')
  if state.session then
    local attached = state.client_id and vim.lsp.get_client_by_id(state.client_id)
    health.ok(string.format('joined %s (workspace %s)', state.session, state.root))
    if not attached then
      health.warn('chorus lsp is not running')
    end
  else
    health.info('not in a session (:ChorusJoin <session>)')
  end
end

return M
