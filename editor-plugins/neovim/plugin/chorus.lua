-- Chorus user commands. Loaded automatically from the runtimepath; the
-- work itself lives in lua/chorus/ and is only required when a command runs,
-- so that having the plugin installed costs nothing at startup.

if vim.g.loaded_chorus then
  return
end
vim.g.loaded_chorus = true

local function chorus()
  return require('chorus')
end

vim.api.nvim_create_user_command('ChorusJoin', function(opts)
  chorus().join(opts.fargs[1], opts.fargs[2])
end, { nargs = '+', desc = 'Chorus: join a session (attach chorus lsp to the workspace)' })

vim.api.nvim_create_user_command('ChorusLeave', function()
  chorus().leave()
end, { nargs = 0, desc = 'Chorus: leave the session' })

vim.api.nvim_create_user_command('ChorusRun', function(opts)
  chorus().run_command(opts.args)
end, {
  nargs = '*',
  complete = function(lead, line)
    -- The mode only as the first word; files anywhere before `cmd=`/`--`.
    local words_before = #vim.split(vim.trim(line:sub(1, #line - #lead)), '%s+') - 1
    local matches = vim.fn.getcompletion(lead, 'file')
    if words_before == 0 then
      for _, mode in ipairs({ 'test', 'release', 'run', 'cmd=' }) do
        if vim.startswith(mode, lead) then
          table.insert(matches, 1, mode)
        end
      end
    end
    return matches
  end,
  desc = "Chorus: run the session's code ([test|release] [file] [-- args] or cmd=…)",
})

vim.api.nvim_create_user_command('ChorusStop', function()
  chorus().stop()
end, { nargs = 0, desc = "Chorus: stop the session's run" })

vim.api.nvim_create_user_command('ChorusInput', function(opts)
  chorus().input(opts.args, opts.bang)
end, {
  nargs = '*',
  bang = true,
  desc = "Chorus: send a line to the session's run (!: then end its input)",
})

vim.api.nvim_create_user_command('ChorusInterrupt', function()
  chorus().interrupt()
end, { nargs = 0, desc = "Chorus: interrupt the session's run (SIGINT)" })

vim.api.nvim_create_user_command('ChorusTerminal', function(opts)
  chorus().terminal(opts.args)
end, {
  nargs = '?',
  complete = function()
    return { 'stop' }
  end,
  desc = "Chorus: open or join the session's shared terminal (stop: end it for everyone)",
})

vim.api.nvim_create_user_command('ChorusTerminalStop', function()
  chorus().terminal_stop()
end, { nargs = 0, desc = "Chorus: end the session's shared terminal for everyone" })

vim.api.nvim_create_user_command('ChorusShare', function()
  chorus().share()
end, { nargs = 0, desc = 'Chorus: publish the workspace folder to the session' })

vim.api.nvim_create_user_command('ChorusResync', function()
  chorus().resync()
end, { nargs = 0, desc = "Chorus: put the session's text back in this buffer" })

vim.api.nvim_create_user_command('ChorusFiles', function()
  chorus().files()
end, { nargs = 0, desc = "Chorus: the session's files, to open one" })

vim.api.nvim_create_user_command('ChorusWho', function()
  chorus().who()
end, { nargs = 0, desc = 'Chorus: who is in the session' })

vim.api.nvim_create_user_command('ChorusFollow', function(opts)
  chorus().follow(opts.args ~= '' and opts.args or nil)
end, {
  nargs = '?',
  complete = function()
    return require('chorus').names()
  end,
  desc = 'Chorus: follow a collaborator (no name: stop following)',
})
