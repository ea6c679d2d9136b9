-- Shared, mutable plugin state. Kept in its own module so that init.lua,
-- cursors.lua and run.lua can all see it without requiring each other in a
-- cycle.

local M = {}

--- Options from setup(), with defaults filled in.
M.config = {
  -- Hub URL; the proxy's own default is ws://127.0.0.1:7420/.
  hub = 'ws://127.0.0.1:7420/',
  -- Name shown to collaborators.
  name = nil,
  -- Default session token (`chorus session create` prints them); a token
  -- given to :ChorusJoin wins.
  token = nil,
  -- Extra CA certificate (PEM path) for a wss:// hub with its own CA.
  hub_ca = nil,
  -- How to start the proxy; arguments after it are ours.
  cmd = { 'chorus', 'lsp' },
  -- Workspace root: a path, or nil to look for root_markers from the
  -- current buffer, falling back to the current directory.
  root = nil,
  root_markers = { '.git' },
  -- Milliseconds between two chorus/cursor notifications while moving.
  cursor_throttle_ms = 50,
  -- Height of the run output split.
  run_height = 12,
  -- Height of the shared terminal's split.
  terminal_height = 15,
}

--- The session's state, cleared on leave. Fields that may be nil:
---   session     the session joined
---   token       the token it was joined with
---   connection  from chorus/connection: 'online', 'offline' or 'refused'
---               (nil before the proxy first reaches the hub)
---   role        'editor' or 'readOnly'
---   root        workspace root (absolute, no trailing slash)
---   client_id   id of the chorus lsp client
---   following   name of the collaborator being followed
---   run         the current or last run: { id, name, doc, running, summary }
---   terminal    the session's shared terminal, while open:
---               { id, client_id, name, cols, rows }
function M.reset()
  M.session = nil
  M.token = nil
  M.connection = nil
  M.role = nil
  M.root = nil
  M.client_id = nil
  --- People in the session by hub client id: { name = ..., editor = ... }.
  M.people = {}
  M.following = nil
  M.run = nil
  M.terminal = nil
  --- Functions waiting for the proxy to be online, called with its client.
  M.when_online = {}
end

M.reset()

return M
