//! The Neovim plugin against every `chorus/*` message the proxy defines:
//! headless Neovim runs `editor-plugins/neovim/test/lsp_ext_spec.lua`, which
//! feeds each example in `editor-plugins/fixtures/lsp_ext.json` (generated
//! from `lsp-proxy/src/lsp_ext.rs`) to the plugin's handlers and checks what
//! the plugin sends against the same file. No hub or proxy runs: this catches
//! the plugin drifting from the proxy's types, quickly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The spec takes well under a second; this only stops a hung Neovim.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn neovim_plugin_handles_every_chorus_message() {
    let Some(nvim) = chorus_testkit::neovim() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plugin = root.join("editor-plugins/neovim");
    let mut child = Command::new(nvim)
        .args(["--headless", "--clean", "-l"])
        .arg(plugin.join("test/lsp_ext_spec.lua"))
        .arg(&plugin)
        .arg(root.join("editor-plugins/fixtures/lsp_ext.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nvim");
    let started = Instant::now();
    while child.try_wait().expect("wait for nvim").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("nvim's output");
    assert!(
        output.status.success(),
        "lsp_ext_spec.lua failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
