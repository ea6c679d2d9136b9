//! Real Helix 25.07, driven as a person drives it: in a terminal (`tmux`),
//! by keys (`send-keys`), read from the screen (`capture-pane`).
//!
//! Each instance gets its own tmux server (`-L`), its own configuration
//! (`$XDG_CONFIG_HOME/helix/{config,languages}.toml` pointing Python at
//! `chorus lsp`) and its own log (`hx -v --log`), which also holds the
//! proxy's stderr: Helix logs every line a language server writes there.
//! `$CHORUS_HELIX` names the `hx` binary (`scripts/ensure-helix.sh` builds
//! it); `chorus_testkit::helix` says whether there is one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::hub::{chorus_bin, Hub};

const WAIT: Duration = Duration::from_secs(20);

/// What an instance's configuration says besides the language server.
#[derive(Clone, Default)]
pub struct HxOptions {
    /// Extra arguments to `chorus lsp` (e.g. `--sync-files`).
    pub lsp_args: Vec<String>,
    /// The token, passed as `CHORUS_TOKEN` as the Helix README advises.
    pub token: Option<String>,
    /// More of `config.toml` (keys, say), after the tests' own settings.
    pub config: String,
}

pub struct Hx {
    pub name: String,
    /// The tmux server's socket name (`tmux -L`).
    server: String,
    pub dir: PathBuf,
    pub log: PathBuf,
}

/// The `hx` under test; each test checked it is there.
fn hx_bin() -> PathBuf {
    chorus_testkit::helix().expect("Helix 25.07 (checked when the test started)")
}

/// The runtime folder `scripts/ensure-helix.sh` keeps beside the binary:
/// without it Helix warns on every start.
fn runtime(bin: &Path) -> Option<PathBuf> {
    let runtime = bin.parent()?.parent()?.join("runtime");
    runtime.is_dir().then_some(runtime)
}

/// A TOML basic string holding `text`.
fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

impl Hx {
    /// Opens `file` (relative to `workspace`) in a new Helix joined to
    /// `session` through the README's `languages.toml`.
    pub async fn start(
        hub: &Hub,
        workspace: &Path,
        session: &str,
        name: &str,
        file: &str,
        options: HxOptions,
    ) -> Hx {
        let bin = hx_bin();
        let dir = hub.log_dir.join(format!("hx-{name}"));
        let config = dir.join("config/helix");
        std::fs::create_dir_all(&config).expect("create the instance's config folder");
        let mut args = vec![
            "lsp".to_owned(),
            "--hub".to_owned(),
            hub.url.clone(),
            "--session".to_owned(),
            session.to_owned(),
            "--name".to_owned(),
            name.to_owned(),
        ];
        args.extend(options.lsp_args.iter().cloned());
        let args: Vec<String> = args.iter().map(|a| toml_str(a)).collect();
        let token = options
            .token
            .or_else(|| hub.token.clone())
            .unwrap_or_default();
        // As editor-plugins/helix/languages.toml has it, with only Chorus
        // for Python (no pylsp here).
        let languages = format!(
            "[language-server.chorus]\n\
             command = {bin}\n\
             args = [{args}]\n\
             environment = {{ CHORUS_TOKEN = {token}, CHORUS_LOG = \"debug\" }}\n\n\
             [[language]]\n\
             name = \"python\"\n\
             language-servers = [\"chorus\"]\n",
            bin = toml_str(&chorus_bin().display().to_string()),
            args = args.join(", "),
            token = toml_str(&token),
        );
        std::fs::write(config.join("languages.toml"), languages).expect("write languages.toml");
        // Popups would take the arrow keys the tests move with; the
        // collaborators' cursors (hint diagnostics) are shown on every line
        // so that the screen shows them.
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[editor]\n\
                 auto-completion = false\n\
                 auto-pairs = false\n\
                 auto-info = false\n\
                 end-of-line-diagnostics = \"hint\"\n\
                 [editor.inline-diagnostics]\n\
                 cursor-line = \"hint\"\n\
                 other-lines = \"hint\"\n\
                 [editor.lsp]\n\
                 auto-signature-help = false\n\
                 display-messages = true\n\
                 {}\n",
                options.config
            ),
        )
        .expect("write config.toml");
        let log = dir.join("helix.log");
        let server = format!("chorus-hx-{}-{}-{name}", std::process::id(), hub.port);
        let hx = Hx {
            name: name.to_owned(),
            server,
            dir: dir.clone(),
            log: log.clone(),
        };
        let mut command = format!(
            "exec {} -v --log {} {}",
            shell_quote(&bin.display().to_string()),
            shell_quote(&log.display().to_string()),
            shell_quote(file)
        );
        if let Some(runtime) = runtime(&bin) {
            command = format!(
                "HELIX_RUNTIME={} {command}",
                shell_quote(&runtime.display().to_string())
            );
        }
        let started = hx
            .tmux_command()
            .args([
                "new-session",
                "-d",
                "-s",
                "hx",
                "-x",
                "120",
                "-y",
                "30",
                "-c",
            ])
            .arg(workspace)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .arg(command)
            .status()
            .await
            .expect("run tmux");
        assert!(started.success(), "{name}: tmux new-session failed");
        // Keys sent by the test arrive at once; none is a prefix to wait on.
        hx.tmux(&["set-option", "-s", "escape-time", "0"]).await;
        hx.wait_screen("Helix to start", |s| s.contains(file)).await;
        hx
    }

    fn tmux_command(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-u", "-L", &self.server])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn tmux(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            self.tmux_command().args(args).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: tmux {args:?} did not answer in 10 s", self.name))
        .expect("run tmux");
        assert!(
            out.status.success(),
            "{}: tmux {args:?}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys by tmux's names (`Escape`, `Up`, `Enter`, `C-w`, `i`).
    pub async fn keys(&self, keys: &[&str]) {
        let mut batch: Vec<&str> = Vec::new();
        for key in keys {
            if *key == "Escape" {
                self.send(&batch).await;
                batch.clear();
                self.escape().await;
            } else {
                batch.push(key);
            }
        }
        self.send(&batch).await;
    }

    /// Escape as a terminal speaking the kitty keyboard protocol sends it,
    /// `CSI 27 u`. A bare ESC byte is ambiguous: Helix's terminal library
    /// reads it together with a key that follows in the same read as
    /// Alt+key, so on a busy machine `Escape u` became Alt-u and the `u`
    /// was lost or typed. This form cannot run into the next key.
    async fn escape(&self) {
        self.tmux(&["send-keys", "-t", "hx", "-H", "1b", "5b", "32", "37", "75"])
            .await;
    }

    async fn send(&self, keys: &[&str]) {
        if keys.is_empty() {
            return;
        }
        let mut args = vec!["send-keys", "-t", "hx"];
        args.extend_from_slice(keys);
        self.tmux(&args).await;
    }

    /// Types `text` literally (Unicode included), as from a keyboard.
    pub async fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "hx", "-l", text]).await;
    }

    /// Runs a command line (`:` in normal mode), e.g. `w!`.
    pub async fn command(&self, line: &str) {
        self.keys(&["Escape"]).await;
        self.keys(&[":"]).await;
        self.type_text(line).await;
        self.keys(&["Enter"]).await;
    }

    /// What the terminal shows now.
    pub async fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "hx"]).await
    }

    pub async fn wait_screen(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen().await;
            if accept(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: the screen never showed {what}:\n{screen}\n--- helix.log\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The whole buffer, exactly: all of it is selected and piped to a
    /// file (`:pipe-to`), which leaves the buffer and its file untouched.
    /// Helix is left in normal mode with one cursor at the start.
    pub async fn buffer(&self) -> String {
        let dump = self.dir.join("buffer.txt");
        let _ = std::fs::remove_file(&dump);
        self.keys(&["Escape", "%"]).await;
        let part = self.dir.join("buffer.part");
        self.command(&format!(
            "pipe-to cat > {} && mv {} {}",
            shell_quote(&part.display().to_string()),
            shell_quote(&part.display().to_string()),
            shell_quote(&dump.display().to_string())
        ))
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(bytes) = std::fs::read(&dump) {
                self.keys(&[";"]).await;
                return String::from_utf8(bytes)
                    .unwrap_or_else(|err| panic!("{}: the buffer is not UTF-8: {err}", self.name));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: :pipe-to never wrote the buffer; screen:\n{}\n--- helix.log\n{}",
                self.name,
                self.screen().await,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The log: Helix's own lines and the proxy's stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log_text();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the proxy has joined `doc` in the session (its debug
    /// log says so).
    pub async fn wait_joined(&self, doc: &str) {
        let needle = format!("joined the document doc={doc}");
        self.wait_log(&format!("the proxy to join {doc}"), &needle)
            .await;
    }

    /// Waits until the log (Helix's and the proxy's) holds `needle`.
    pub async fn wait_log(&self, what: &str, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.log_text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: never saw {what}\n--- helix.log\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the buffer satisfies `accept`; returns it.
    pub async fn wait_buffer(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let buffer = self.buffer().await;
            if accept(&buffer) {
                return buffer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: the buffer never showed {what}: {buffer:?}\n--- helix.log\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Hx {
    fn drop(&mut self) {
        // Helix and with it the proxy end with their terminal.
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
