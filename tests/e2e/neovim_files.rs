//! Issue 13 in real Neovim: `:ChorusFiles` lists the session's tree (the
//! proxy's `chorus.files`) through `vim.ui.select`, replaced here by a
//! stub that records what it is offered and chooses an item (the rest of
//! the path is the plugin's own); a text file opens and joins the session
//! although it is not on disk, a binary one says why it cannot. Others'
//! renames and deletes of the file of a Neovim buffer reach the user
//! through `vim.notify`, naming who did what.

use std::time::Duration;

use crate::neovim::{have_neovim, wait_for, wait_joined, workspace, Nvim, Route, DOC, WAIT};
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::Hub;
use crate::support::hub_client::hub_text;
use crate::workspace::{share_project, HELPER};

/// Waits until `session`'s `doc` satisfies `accept`.
async fn wait_hub(hub: &Hub, session: &str, doc: &str, nvim: &Nvim, accept: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = hub_text(&hub.url, session, doc).await;
        if text.as_ref().is_ok_and(|(_, text)| accept(text)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{doc} in the session is {text:?}; {}'s buffer {:?}\n{}",
            nvim.name,
            nvim.text().await,
            nvim.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A joiner with an empty folder and no file open: `:ChorusFiles` starts
/// the proxy, lists main.py, helper.py, .gitignore and logo.png (binary,
/// with its reason); choosing helper.py opens the session's text, which
/// Nia then edits; choosing logo.png opens nothing and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chorus_files_lists_the_session_and_opens_a_file_that_is_not_on_disk() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_chorus_files").await;
    let session = "nvim-chorus-files";
    share_project(&hub, session).await;
    let ws = hub.log_dir.join("nia-folder");
    std::fs::create_dir_all(&ws).expect("create the folder");
    let nia = Nvim::launch(&hub, &ws, session, "nia", None, Route::NothingOpen).await;

    nia.lua("T.choose('helper.py') or 'ok'").await;
    nia.command("ChorusFiles").await;
    let offered = wait_for(
        "the files offered",
        &nia,
        "vim.json.encode(T.offered or {})",
        |o| o != "[]",
    )
    .await;
    let offered: Vec<String> = serde_json::from_str(&offered).expect("a list of lines");
    assert_eq!(offered.len(), 4, "{offered:?}");
    let line = |name: &str| {
        offered
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not offered: {offered:?}"))
    };
    assert!(
        line("logo.png").contains("not synced: binary"),
        "{offered:?}"
    );
    for text_file in ["main.py", "helper.py", ".gitignore"] {
        let shown = line(text_file);
        assert!(
            !shown.contains("not synced") && shown.contains("not on disk here"),
            "{shown:?}"
        );
    }

    wait_for("helper.py opened", &nia, "vim.fn.expand('%:t')", |name| {
        name == "helper.py"
    })
    .await;
    nia.lua("(function() T.file = 'helper.py' return 1 end)()")
        .await;
    wait_joined(&nia).await;
    wait_for(
        "the session's text in the buffer",
        &nia,
        "T.text()",
        |text| text == HELPER,
    )
    .await;
    assert_eq!(
        nia.lua("T.told('already shared')").await,
        "",
        "an empty buffer filled from the session is not news"
    );
    nia.keys("Goprint('nia was here')<Esc>").await;
    wait_hub(&hub, session, "helper.py", &nia, |text| {
        text.starts_with(HELPER) && text.contains("print('nia was here')")
    })
    .await;

    nia.lua("T.choose('logo.png') or 'ok'").await;
    nia.command("ChorusFiles").await;
    let told = wait_for(
        "why logo.png does not open",
        &nia,
        "T.told('logo.png')",
        |note| !note.is_empty(),
    )
    .await;
    assert!(
        told.contains("binary") && told.contains("cannot be opened"),
        "{told}"
    );
    assert_eq!(
        nia.lua("vim.fn.expand('%:t')").await,
        "helper.py",
        "nothing else opened"
    );
}

/// Bob (another editor) renames the file of Nia's buffer, then deletes it:
/// her buffer follows the rename and she is told who renamed it to what;
/// the delete leaves her buffer and its text, and she is told who deleted
/// it and that it is no longer shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_renaming_and_deleting_a_neovim_buffers_file_are_told() {
    if !have_neovim() {
        return;
    }
    let hub = Hub::start("neovim_moves_told").await;
    let session = "nvim-moves-told";
    let text = "x = 1\n";
    let ws = workspace(&hub, text);
    let nia = Nvim::launch(&hub, &ws, session, "nia", None, Route::Plugin).await;
    wait_joined(&nia).await;
    let bob = Editor::start(EditorKind::VsCode, &hub, session, "bob").await;
    bob.open(DOC, text);
    crate::support::assert_converged(&hub, session, DOC, &[&bob]).await;

    bob.rename(DOC, "app.py", true);
    wait_for("her buffer renamed", &nia, "vim.fn.expand('%:t')", |name| {
        name == "app.py"
    })
    .await;
    let told = wait_for("who renamed it", &nia, "T.told('renamed')", |note| {
        !note.is_empty()
    })
    .await;
    assert!(
        told.contains("bob renamed main.py to app.py") && told.contains("buffer follows"),
        "{told}"
    );
    nia.lua("(function() T.file = 'app.py' return 1 end)()")
        .await;

    bob.delete_file("app.py");
    let told = wait_for("who deleted it", &nia, "T.told('deleted')", |note| {
        !note.is_empty()
    })
    .await;
    assert!(
        told.contains("bob deleted app.py from the session") && told.contains("no longer shared"),
        "{told}"
    );
    assert_eq!(nia.lua("vim.fn.expand('%:t')").await, "app.py");
    assert_eq!(nia.text().await, text, "her buffer keeps its text");
}
