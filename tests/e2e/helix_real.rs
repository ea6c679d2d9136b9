//! Real Helix 25.07 in a terminal, configured as editor-plugins/helix
//! says: two or three `hx` typing at once with other editors, cursors shown
//! as hint diagnostics on its screen, the run offered as a code action, a
//! project joined from an empty folder, and renames and deletes by others.
//!
//! Helix must be built (`scripts/ensure-helix.sh`, as `scripts/test.sh`
//! does, where its absence fails every test); under plain `cargo test`
//! without it these return at once and say so once. Logs (each instance's
//! `helix.log`, which holds its proxy's stderr) go to
//! `target/tmp/e2e-logs/<test>/hx-<name>/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::editor::{Editor, EditorKind};
use crate::support::helix::{Hx, HxOptions};
use crate::support::hub::Hub;
use crate::support::hub_client::hub_text;

const WAIT: Duration = Duration::from_secs(30);
const DOC: &str = "main.py";

fn have_helix() -> bool {
    chorus_testkit::helix().is_some()
}

/// A workspace folder holding DOC with `text`, and a `.git` so that Helix
/// takes it for the project root.
fn workspace(hub: &Hub, name: &str, text: &str) -> PathBuf {
    let dir = hub.log_dir.join(name);
    std::fs::create_dir_all(dir.join(".git")).expect("create the workspace");
    std::fs::write(dir.join(DOC), text).expect("write the document");
    dir
}

/// Starts Helix instances on DOC one after the other, each joined before
/// the next starts, so that the first one's file seeds the session.
async fn helixes(hub: &Hub, session: &str, ws: &Path, names: &[&str]) -> Vec<Hx> {
    let mut all = Vec::new();
    for name in names {
        let hx = Hx::start(hub, ws, session, name, DOC, HxOptions::default()).await;
        hx.wait_joined(DOC).await;
        all.push(hx);
    }
    all
}

/// Waits until every Helix buffer, every simulated editor and the hub hold
/// the same text for DOC, twice in a row (nothing still on its way);
/// returns it.
async fn converged(hub: &Hub, session: &str, hxs: &[Hx], others: &[&Editor]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last_agreed: Option<String> = None;
    loop {
        let hub_doc = hub_text(&hub.url, session, DOC).await;
        let mut buffers = Vec::new();
        for hx in hxs {
            buffers.push(hx.buffer().await);
        }
        let other_texts: Vec<Option<String>> = others.iter().map(|e| e.text(DOC)).collect();
        if let Ok((_, text)) = &hub_doc {
            let agreed = buffers.iter().all(|b| b == text)
                && other_texts
                    .iter()
                    .all(|t| t.as_deref() == Some(text.as_str()));
            if agreed {
                if last_agreed.as_deref() == Some(text.as_str()) {
                    return text.clone();
                }
                last_agreed = Some(text.clone());
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        }
        last_agreed = None;
        if tokio::time::Instant::now() > deadline {
            let mut report = format!("no convergence within {WAIT:?}\nhub: {hub_doc:?}\n");
            for (hx, buffer) in hxs.iter().zip(&buffers) {
                report.push_str(&format!(
                    "{}: {buffer:?}\n--- its helix.log\n{}\n",
                    hx.name,
                    hx.log_tail(40)
                ));
            }
            for (editor, text) in others.iter().zip(&other_texts) {
                report.push_str(&format!("{}: {text:?}\n", editor.name));
            }
            report.push_str(&format!("hub log:\n{}", hub.log_tail(30)));
            panic!("{report}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Keys that move Helix's cursor, in insert mode, to about `(line, col)`
/// of a buffer: up to the first line, to its start, down, right (which
/// runs on into the next lines, as in Helix it does).
fn move_keys(line: usize, col: usize) -> Vec<&'static str> {
    let mut keys = vec!["Up"; 8];
    keys.push("Home");
    keys.extend(std::iter::repeat_n("Down", line));
    keys.extend(std::iter::repeat_n("Right", col));
    keys
}

/// Types `chars` one at a time at random places of a buffer of about
/// `lines` lines, 0-`jitter_ms` apart, staying in insert mode.
async fn helix_types(hx: &Hx, seed: u64, chars: &[String], lines: usize, jitter_ms: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    hx.keys(&["i"]).await;
    for token in chars {
        let keys = move_keys(rng.random_range(0..lines), rng.random_range(0..14));
        hx.keys(&keys).await;
        hx.type_text(token).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=jitter_ms))).await;
    }
    hx.keys(&["Escape"]).await;
}

/// The simulated VS Code side: the same, through its LSP client.
async fn editor_types(editor: &Editor, seed: u64, chars: &[String], jitter_ms: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for token in chars {
        let pick = rng.random::<f64>();
        let token = token.clone();
        editor.edit_with(DOC, move |buffer| {
            // A random place that does not split a surrogate-free
            // character run: any char boundary will do for a simulation.
            let at = ((buffer.len() as f64) * pick) as usize;
            Some((at, at, token))
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=jitter_ms))).await;
    }
}

/// How many times each code point occurs.
fn code_points(text: &str) -> HashMap<char, usize> {
    let mut counts = HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    counts
}

/// `text` is `seed` plus exactly the code points typed: none lost, none
/// doubled.
fn assert_typed_once(text: &str, seed: &str, typed: &[&[String]], what: &str) {
    let mut expected = code_points(seed);
    for tokens in typed {
        for token in tokens.iter() {
            for c in token.chars() {
                *expected.entry(c).or_default() += 1;
            }
        }
    }
    let mut actual = code_points(text);
    // Helix can type after a text's final line break; Neovim, which cannot
    // show a text without one, then gives the session one back (an edit of
    // its own): line breaks may grow, never other characters.
    let breaks = actual.get(&'\n').copied().unwrap_or(0);
    if breaks >= expected.get(&'\n').copied().unwrap_or(0) {
        actual.remove(&'\n');
        expected.remove(&'\n');
    }
    let mut wrong: Vec<String> = expected
        .iter()
        .filter(|(c, n)| actual.get(c).copied().unwrap_or(0) != **n)
        .map(|(c, n)| {
            format!(
                "{c:?} expected {n}, found {}",
                actual.get(c).copied().unwrap_or(0)
            )
        })
        .collect();
    wrong.extend(
        actual
            .iter()
            .filter(|(c, _)| !expected.contains_key(c))
            .map(|(c, n)| format!("{c:?} typed by nobody, found {n}")),
    );
    assert!(wrong.is_empty(), "{what}: {wrong:?} in {text:?}");
}

/// Unique single characters from `base` on.
fn run_of(base: u32, count: u32) -> Vec<String> {
    (0..count)
        .map(|k| {
            char::from_u32(base + k)
                .expect("a valid code point")
                .to_string()
        })
        .collect()
}

/// Issue 14: two real Helix, a real Neovim (the plugin's route and the
/// plain `vim.lsp` one, by seed) and a VS Code-like editor insert at random
/// places 0-20 ms apart; every buffer and the hub agree and every character
/// typed is there exactly once. Helix refuses an edit made for a version it
/// has moved past ("outdated workspace edit"), which the proxy must carry
/// over the keystroke and send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_helix_neovim_and_vscode_typing_with_jitter_keep_every_character_once() {
    use crate::neovim::{self, Nvim, Route};
    if !have_helix() || !neovim::have_neovim() {
        return;
    }
    const COUNT: u32 = 30;
    let seed_text = "def main():\n    print('hi')\n";
    for seed in crate::support::seeds(&[1, 2, 3, 4, 5]) {
        let hub = Hub::start(&format!("helix_jitter_{seed}")).await;
        let session = format!("hx-jitter-{seed}");
        let ws = workspace(&hub, "ws", seed_text);
        let hxs = helixes(&hub, &session, &ws, &["hxa", "hxb"]).await;
        let route = if seed % 2 == 0 {
            Route::Plugin
        } else {
            Route::PlainLsp
        };
        let nvim_ws = neovim::workspace(&hub, seed_text);
        let nvim = Nvim::launch(&hub, &nvim_ws, &session, "nia", None, route).await;
        neovim::wait_joined(&nvim).await;
        let code = Editor::start(EditorKind::VsCode, &hub, &session, "code").await;
        code.open(DOC, seed_text);
        crate::support::assert_converged(&hub, &session, DOC, &[&code]).await;
        // Cyrillic, CJK, Latin Extended and Greek: two, three, two and two
        // UTF-8 bytes, one UTF-16 unit each (Helix counts in UTF-8).
        let typed = [
            run_of(0x410, COUNT),
            run_of(0x4e00, COUNT),
            run_of(0x100, COUNT),
            run_of(0x3b1, COUNT.min(25)),
        ];
        nvim.lua(&format!(
            "T.type_jittered({}, {}, {}, 20) or 'ok'",
            seed * 10 + 3,
            COUNT.min(25),
            0x3b1
        ))
        .await;
        tokio::join!(
            helix_types(&hxs[0], seed * 10, &typed[0], 3, 20),
            helix_types(&hxs[1], seed * 10 + 1, &typed[1], 3, 20),
            editor_types(&code, seed * 10 + 2, &typed[2], 20),
        );
        neovim::wait_for("all its typing done", &nvim, "T.typed", |n| {
            n == COUNT.min(25).to_string()
        })
        .await;
        let text = converged(&hub, &session, &hxs, &[&code]).await;
        neovim::wait_for("the session's text", &nvim, "T.text()", |t| t == text).await;
        let typed: Vec<&[String]> = typed.iter().map(|t| t.as_slice()).collect();
        assert_typed_once(&text, seed_text, &typed, &format!("seed {seed}"));
    }
}

/// A collaborator's cursor, sent as a hint diagnostic, is on the real
/// Helix screen and moves; `space a` offers "Run with Chorus", and choosing
/// it runs the session's code in Docker, the result in the status line
/// and the output in Helix's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_shows_cursors_as_hints_and_runs_from_space_a() {
    if !have_helix() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("helix_cursors_and_run").await;
    let session = "hx-cursors";
    let text = "print('hello from helix')\nprint('second line')\n";
    let ws = workspace(&hub, "ws", text);
    let hxs = helixes(&hub, session, &ws, &["hxa"]).await;
    let hx = &hxs[0];
    let code = Editor::start(EditorKind::VsCode, &hub, session, "code").await;
    code.open(DOC, text);
    crate::support::assert_converged(&hub, session, DOC, &[&code]).await;

    crate::helix::cursor_at(&code, DOC, 1, 6);
    hx.wait_screen("code's cursor on the second line", |screen| {
        screen
            .lines()
            .any(|l| l.contains("print('second line')") && l.contains("code is here"))
            || screen_has_hint_below(screen, "print('second line')", "code is here")
    })
    .await;
    crate::helix::cursor_at(&code, DOC, 0, 2);
    hx.wait_screen("code's cursor moved to the first line", |screen| {
        screen
            .lines()
            .any(|l| l.contains("print('hello from helix')") && l.contains("code is here"))
            || screen_has_hint_below(screen, "print('hello from helix')", "code is here")
    })
    .await;

    // As a Helix user runs it: space a, then the action by its title.
    hx.keys(&["Escape", "Space", "a"]).await;
    hx.wait_screen("the code action menu", |s| s.contains("Run with Chorus"))
        .await;
    hx.keys(&["Enter"]).await;
    hx.wait_screen("the run's result in the status line", |s| {
        s.contains("exited with code 0")
    })
    .await;
    hx.wait_log("the run's output in Helix's log", "hello from helix")
        .await;
    // The VS Code side saw the same run.
    code.wait_message("window/logMessage", "hello from helix", WAIT)
        .await;
}

/// Helix draws a diagnostic that does not fit at the end of its line on
/// the line below, under the text it points at.
fn screen_has_hint_below(screen: &str, line_text: &str, hint: &str) -> bool {
    let lines: Vec<&str> = screen.lines().collect();
    lines
        .windows(3)
        .any(|w| w[0].contains(line_text) && (w[1].contains(hint) || w[2].contains(hint)))
}

/// Issue 13 in Helix, through plain LSP and the disk: a joiner with an
/// empty folder and `--sync-files` in its languages.toml opens `main.py`,
/// gets the session's project on disk and its text in the buffer, is told
/// which files are only listed (a 50 MB binary among them), and `import
/// helper` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_joining_with_an_empty_folder_gets_the_project_and_runs_it() {
    use crate::workspace::{chorus_share, project, HELPER, MAIN};
    if !have_helix() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("helix_empty_folder").await;
    let session = "hx-files";
    // The project, with a 50 MB binary: listed, never sent.
    let shared = hub.log_dir.join("ada");
    project(&shared);
    std::fs::create_dir_all(shared.join("assets")).expect("create assets/");
    let mut big = vec![0u8; 50 << 20];
    big[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    std::fs::write(shared.join("assets/big.bin"), big).expect("write the 50 MB file");
    let (ok, stderr) = chorus_share(&hub, &shared, session).await;
    assert!(
        ok && stderr.contains("assets/big.bin"),
        "chorus share: {stderr}"
    );
    let ws = hub.log_dir.join("empty-folder");
    std::fs::create_dir_all(ws.join(".git")).expect("create the folder");
    let options = HxOptions {
        lsp_args: vec!["--sync-files".to_owned()],
        ..HxOptions::default()
    };
    let hx = Hx::start(&hub, &ws, session, "hxa", DOC, options).await;
    hx.wait_joined(DOC).await;
    let read = |name: &str| std::fs::read_to_string(ws.join(name)).ok();
    let deadline = tokio::time::Instant::now() + WAIT;
    while read("helper.py").as_deref() != Some(HELPER) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "helper.py never appeared in {}: {:?}\n{}",
            ws.display(),
            read("helper.py"),
            hx.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !ws.join("logo.png").exists(),
        "a binary is listed, not synced"
    );
    assert!(!ws.join("assets/big.bin").exists(), "so is a 50 MB one");
    // Helix shows the proxy's message in its status line and logs it.
    hx.wait_log(
        "which files are only listed",
        "listed without their content",
    )
    .await;
    let told = hx
        .log_text()
        .lines()
        .find(|l| l.contains("window/showMessage") && l.contains("listed without their content"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        told.contains("assets/big.bin") && told.contains("logo.png"),
        "{told}"
    );
    assert!(!ws.join("secret.txt").exists(), ".gitignore is honoured");
    // The buffer Helix opened on a missing file now shows the session's.
    hx.wait_buffer("main.py's session text", |b| b == MAIN)
        .await;
    hx.screen().await;
    hx.keys(&["Space", "a"]).await;
    hx.wait_screen("the code action menu", |s| s.contains("Run with Chorus"))
        .await;
    hx.keys(&["Enter"]).await;
    hx.wait_screen("the run's result", |s| s.contains("exited with code 0"))
        .await;
    hx.wait_log("`import helper` running", "hello from helper")
        .await;
}

/// ADR 0005 in Helix: another participant renames the open file, and
/// Helix's buffer follows it to the new name (a `RenameFile` resource
/// operation); typing goes on into the renamed document. Then they delete
/// it while Helix has it open (the edit vs. delete case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_by_another_participant_moves_the_helix_buffer() {
    if !have_helix() {
        return;
    }
    let hub = Hub::start("helix_rename").await;
    let session = "hx-rename";
    let text = "def main():\n    print('hi')\n";
    let ws = workspace(&hub, "ws", text);
    let hxs = helixes(&hub, session, &ws, &["hxa"]).await;
    let hx = &hxs[0];
    let code = Editor::start(EditorKind::VsCode, &hub, session, "code").await;
    code.open(DOC, text);
    crate::support::assert_converged(&hub, session, DOC, &[&code]).await;

    code.rename(DOC, "app.py", true);
    hx.wait_screen("the buffer renamed to app.py", |s| s.contains("app.py"))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while ws.join(DOC).exists() || !ws.join("app.py").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the file never moved on disk\n{}",
            hx.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hx.keys(&["g", "g", "O"]).await;
    hx.type_text("# typed in helix").await;
    hx.keys(&["Escape"]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hub_doc = hub_text(&hub.url, session, "app.py").await;
        if hub_doc
            .as_ref()
            .is_ok_and(|(_, t)| t.starts_with("# typed in helix\n") && t.ends_with(text))
            && code.text("app.py").as_deref() == hub_doc.as_ref().ok().map(|(_, t)| t.as_str())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the typing never reached app.py: {hub_doc:?}\n{}",
            hx.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Edit vs. delete: the delete wins at the hub; Helix keeps its buffer,
    // says who deleted it, and saving shares the file anew.
    code.delete_file("app.py");
    hx.wait_screen("who deleted the file", |s| {
        s.contains("code deleted app.py from the session")
    })
    .await;
    hx.keys(&["g", "g", "O"]).await;
    hx.type_text("# kept by helix").await;
    hx.keys(&["Escape"]).await;
    let buffer = hx.buffer().await;
    // Helix continues the comment it opened a line above (`# # kept`).
    assert!(
        buffer.contains("kept by helix\n# typed in helix\ndef main():"),
        "the buffer keeps its text: {buffer:?}"
    );
    hx.command("w!").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hub_doc = hub_text(&hub.url, session, "app.py").await;
        if hub_doc.as_ref().is_ok_and(|(_, t)| *t == buffer) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saving did not share app.py again: {hub_doc:?}\n{}",
            hx.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a Helix user does to the text, in insert mode unless noted.
#[derive(Clone, Copy, Debug)]
enum HxAction {
    Type,
    Backspace,
    DeleteForward,
    Enter,
    DeleteWord,
    /// `u` in normal mode: Helix's history holds the collaborators' edits
    /// too (they came through `applyEdit`), so this may undo theirs.
    Undo,
    Redo,
    /// `C` copies the cursor to the next line; the token is typed at both.
    TwoCursors,
}

const ACTIONS: [HxAction; 12] = [
    HxAction::Type,
    HxAction::Type,
    HxAction::Type,
    HxAction::Type,
    HxAction::Type,
    HxAction::Backspace,
    HxAction::DeleteForward,
    HxAction::Enter,
    HxAction::DeleteWord,
    HxAction::Undo,
    HxAction::Redo,
    HxAction::TwoCursors,
];

/// Every script the issue names: accented Latin (precomposed and with a
/// combining accent), Cyrillic, CJK, an emoji with a skin tone and a ZWJ
/// sequence. Each instance appends its own tag so that its tokens are its
/// own.
const MIX: [&str; 6] = ["é", "ж", "字", "👍🏽", "👩‍💻", "e\u{301}"];

/// Random edits of every kind at random places; returns how many times
/// each token went in (two for two cursors).
async fn helix_edits(hx: &Hx, seed: u64, tag: char, count: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut typed = Vec::new();
    hx.keys(&["i"]).await;
    for _ in 0..count {
        let keys = move_keys(rng.random_range(0..4), rng.random_range(0..14));
        hx.keys(&keys).await;
        let token = format!("{}{tag}", MIX[rng.random_range(0..MIX.len())]);
        match ACTIONS[rng.random_range(0..ACTIONS.len())] {
            HxAction::Type => {
                hx.type_text(&token).await;
                typed.push(token);
            }
            HxAction::Backspace => hx.keys(&["BSpace"]).await,
            HxAction::DeleteForward => hx.keys(&["DC"]).await,
            HxAction::Enter => hx.keys(&["Enter"]).await,
            HxAction::DeleteWord => hx.keys(&["C-w"]).await,
            HxAction::Undo => hx.keys(&["Escape", "u", "i"]).await,
            HxAction::Redo => hx.keys(&["Escape", "U", "i"]).await,
            HxAction::TwoCursors => {
                hx.keys(&["Escape", "C", "i"]).await;
                hx.type_text(&token).await;
                hx.keys(&["Escape", ",", "i"]).await;
                typed.push(token.clone());
                typed.push(token);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=20))).await;
    }
    hx.keys(&["Escape"]).await;
    typed
}

/// Issue 14: two real Helix with motions, inserts, deletes, newlines,
/// undo, redo and two cursors, and a VS Code-like editor typing, all at
/// once with every script. Deletes and undo take text away, so the check
/// is that all agree and that nothing is doubled: no code point is in the
/// end more often than the seed and everyone's typing put it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_helix_editing_every_way_with_every_script_converge_without_duplicates() {
    if !have_helix() {
        return;
    }
    let seed_text = "def main():\n    print('hi')\n\nmain()\n";
    for seed in crate::support::seeds(&[11, 12, 13, 14]) {
        let hub = Hub::start(&format!("helix_every_edit_{seed}")).await;
        let session = format!("hx-every-{seed}");
        let ws = workspace(&hub, "ws", seed_text);
        let hxs = helixes(&hub, &session, &ws, &["hxa", "hxb"]).await;
        let code = Editor::start(EditorKind::VsCode, &hub, &session, "code").await;
        code.open(DOC, seed_text);
        crate::support::assert_converged(&hub, &session, DOC, &[&code]).await;
        let code_typed: Vec<String> = (0..25)
            .map(|k| format!("{}C", MIX[k % MIX.len()]))
            .collect();
        let (a, b, ()) = tokio::join!(
            helix_edits(&hxs[0], seed * 10, 'A', 30),
            helix_edits(&hxs[1], seed * 10 + 1, 'B', 30),
            editor_types(&code, seed * 10 + 2, &code_typed, 20),
        );
        let text = converged(&hub, &session, &hxs, &[&code]).await;
        let mut most = code_points(seed_text);
        for token in a.iter().chain(&b).chain(&code_typed) {
            for c in token.chars() {
                *most.entry(c).or_default() += 1;
            }
        }
        for (c, n) in code_points(&text) {
            if c.is_whitespace() {
                // Enter indents as Helix likes.
                continue;
            }
            let allowed = most.get(&c).copied().unwrap_or(0);
            assert!(
                n <= allowed,
                "seed {seed}: {c:?} is there {n} times, typed at most {allowed}: {text:?}"
            );
        }
    }
}

/// Helix's own `:move` renames the file for everyone (Helix sends
/// `didRenameFiles`, which the proxy registered for): the session's
/// document moves with its text and the other editor's buffer follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_move_renames_the_file_for_everyone() {
    if !have_helix() {
        return;
    }
    let hub = Hub::start("helix_move").await;
    let session = "hx-move";
    let text = "def main():\n    print('hi')\n";
    let ws = workspace(&hub, "ws", text);
    let hxs = helixes(&hub, session, &ws, &["hxa"]).await;
    let hx = &hxs[0];
    let code = Editor::start(EditorKind::VsCode, &hub, session, "code").await;
    code.open(DOC, text);
    crate::support::assert_converged(&hub, session, DOC, &[&code]).await;

    hx.command("move app.py").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let moved = hub_text(&hub.url, session, "app.py").await;
        let old = hub_text(&hub.url, session, DOC).await;
        if moved.as_ref().is_ok_and(|(_, t)| t == text)
            && old.is_err()
            && code.is_open("app.py")
            && !code.is_open(DOC)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the move never reached the session: app.py {moved:?}, main.py {old:?}\n{}",
            hx.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    code.insert_after("app.py", "main():", "  # code");
    hx.wait_buffer("code's edit in the moved buffer", |b| {
        b.contains("main():  # code")
    })
    .await;
}

/// Issue 13's `git checkout` with real Helix on both sides: the sharer
/// shares its repository from Helix (`chorus.share`), and a checkout of
/// another branch in a terminal — files changed, created and deleted that
/// nobody has open — reaches the session and a joiner's folder and open
/// buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_checkout_beside_one_helix_reaches_another() {
    use crate::watcher::git;
    if !have_helix() || !chorus_testkit::git() {
        return;
    }
    let hub = Hub::start("helix_git_checkout").await;
    let session = "hx-checkout";
    let repo = hub.log_dir.join("repo");
    std::fs::create_dir_all(&repo).expect("create the repository");
    let write = |name: &str, text: &str| std::fs::write(repo.join(name), text).expect("write");
    git(&repo, &["init", "-q"]);
    write("notes.py", "# the same on both branches\n");
    write("main.py", "print('main branch')\n");
    write("util.py", "def util():\n    pass\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "main"]);
    git(&repo, &["checkout", "-qb", "other"]);
    write("main.py", "import extra\n\nprint('other branch')\n");
    write("extra.py", "EXTRA = 1\n");
    std::fs::remove_file(repo.join("util.py")).expect("remove util.py");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "other"]);
    git(&repo, &["checkout", "-q", "main"]);

    let sync_files = HxOptions {
        lsp_args: vec!["--sync-files".to_owned()],
        ..HxOptions::default()
    };
    let ada = Hx::start(&hub, &repo, session, "ada", "notes.py", sync_files.clone()).await;
    ada.wait_joined("notes.py").await;
    ada.command("lsp-workspace-command chorus.share").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub_text(&hub.url, session, "util.py").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the share never reached the hub\n{}",
            ada.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let joiner = hub.log_dir.join("joiner");
    std::fs::create_dir_all(joiner.join(".git")).expect("create the joiner's folder");
    let bob = Hx::start(&hub, &joiner, session, "bob", "main.py", sync_files).await;
    bob.wait_joined("main.py").await;
    let read = |name: &str| std::fs::read_to_string(joiner.join(name)).ok();
    let deadline = tokio::time::Instant::now() + WAIT;
    while read("util.py").is_none() || bob.buffer().await != "print('main branch')\n" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the joiner never got the main branch\n{}",
            bob.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // As in a terminal beside Helix.
    git(&repo, &["checkout", "-q", "other"]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let buffer = bob.buffer().await;
        let done = buffer == "import extra\n\nprint('other branch')\n"
            && read("extra.py").as_deref() == Some("EXTRA = 1\n")
            && read("util.py").is_none()
            && hub_text(&hub.url, session, "util.py").await.is_err();
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checkout never reached the joiner: buffer {buffer:?}, extra.py {:?}, util.py {:?}\n--- ada\n{}\n--- bob\n{}",
            read("extra.py"),
            read("util.py"),
            ada.log_tail(30),
            bob.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Helix configured with the keys of editor-plugins/helix/run-keys.toml,
/// as the README says to merge them.
fn with_run_keys() -> HxOptions {
    let keys = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("editor-plugins/helix/run-keys.toml"),
    )
    .expect("read run-keys.toml");
    HxOptions {
        config: keys,
        ..HxOptions::default()
    }
}

/// Runs with options from Helix, as editor-plugins/helix documents: typed
/// (`:lsp-workspace-command chorus.run {...}`, which Helix passes on as
/// JSON) and through the keys of `run-keys.toml`. The run starting with
/// the options is what Helix and the proxy do; that the command line runs
/// (`hi`, code 3) needs the sandbox side of issue 15.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_runs_tests_and_command_lines_with_options() {
    if !have_helix() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("helix_run_options").await;
    let session = "hx-run-options";
    let ws = workspace(&hub, "ws", "print('the file ran')\n");
    let options = with_run_keys();
    let ada = Hx::start(&hub, &ws, session, "ada", DOC, options).await;
    ada.wait_joined(DOC).await;

    ada.command(
        r#"lsp-workspace-command chorus.run {"mode": "test", "command": "echo hi; exit 3"}"#,
    )
    .await;
    ada.wait_log("the run to start", "[run 1 · ada] started main.py")
        .await;
    ada.wait_log("the command line's output", "[run 1 · ada] hi")
        .await;
    ada.wait_screen("the run's result", |s| s.contains("exited with code 3"))
        .await;

    // space R t: the tests, from the documented keys.
    ada.keys(&["Escape", "Space", "R", "t"]).await;
    ada.wait_log("the keyed run to start", "[run 2 · ada] started main.py")
        .await;
    ada.wait_screen("the keyed run's result", |s| s.contains("run 2 · ada"))
        .await;
}

/// Issue 16 in real Helix: a run's `input()` answered with
/// `:lsp-workspace-command chorus.input "Grace"` (a line), the echo and
/// the answer in Helix's log; then `space R e` from `run-keys.toml` ends
/// the next run's input, so its `input()` raises `EOFError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_answers_a_runs_input_and_ends_it() {
    if !have_helix() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("helix_run_input").await;
    let session = "hx-run-input";
    let ws = workspace(&hub, "ws", "name = input('name? ')\nprint('hi', name)\n");
    let options = with_run_keys();
    let ada = Hx::start(&hub, &ws, session, "ada", DOC, options).await;
    ada.wait_joined(DOC).await;

    ada.command("lsp-workspace-command chorus.run").await;
    ada.wait_log("the run to start", "[run 1 · ada] started main.py")
        .await;
    ada.command(r#"lsp-workspace-command chorus.input "Grace""#)
        .await;
    ada.wait_log("the echo", "[run 1 · ada] > Grace  (from ada)")
        .await;
    ada.wait_log("the answer", "[run 1 · ada] name? hi Grace")
        .await;
    ada.wait_screen("the run's result", |s| s.contains("exited with code 0"))
        .await;

    ada.keys(&["Escape", "Space", "R", "r"]).await;
    ada.wait_log("the second run to start", "[run 2 · ada] started main.py")
        .await;
    ada.keys(&["Escape", "Space", "R", "e"]).await;
    ada.wait_log(
        "the end of input",
        "[run 2 · ada] > (end of input)  (from ada)",
    )
    .await;
    ada.wait_log("input() at end of file", "EOFError").await;
}

/// Issue 16's shared terminal in real Helix, as its README describes it:
/// `space R o` from `run-keys.toml` opens it, bash's prompt (no line
/// break after it) shows in the log, a line typed with
/// `:lsp-workspace-command chorus.input "…"` runs, its output is logged
/// without escape sequences, and `space R x` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_types_into_the_shared_terminal_and_reads_it_in_the_log() {
    if !have_helix() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("helix_terminal").await;
    let session = "hx-terminal";
    let ws = workspace(&hub, "ws", "print('hi')\n");
    let ada = Hx::start(&hub, &ws, session, "ada", DOC, with_run_keys()).await;
    ada.wait_joined(DOC).await;

    ada.keys(&["Escape", "Space", "R", "o"]).await;
    ada.wait_screen("the terminal opening", |s| {
        s.contains("opened the shared terminal")
    })
    .await;
    ada.wait_log("bash's prompt", "[terminal · ada] nobody@chorus:/work$ ")
        .await;
    ada.command(r#"lsp-workspace-command chorus.input "echo $((6 * 7))""#)
        .await;
    ada.wait_log(
        "the line typed",
        "[terminal · ada] nobody@chorus:/work$ echo $((6 * 7))",
    )
    .await;
    ada.wait_log("its output", "[terminal · ada] 42").await;
    let logged = ada.log_text();
    let terminal_lines: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("[terminal · ada]"))
        .collect();
    assert!(
        terminal_lines
            .iter()
            .all(|line| !line.contains('\u{1b}') && !line.contains("\\u001b")),
        "escape sequences reached the log: {terminal_lines:#?}"
    );
    ada.keys(&["Escape", "Space", "R", "x"]).await;
    ada.wait_screen("the terminal's end", |s| {
        s.contains("the shared terminal ended")
    })
    .await;
}
