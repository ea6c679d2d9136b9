//! Issue 15 in real Neovim: a run's errors become diagnostics (source
//! `chorus run`) on the file and line they name, in every participant's
//! Neovim, also where that file is not open nor on disk; the next run that
//! finds none clears them. Needs Docker with the sandbox image, and the
//! sandbox's output parser that fills `RunResult.diagnostics`.

use std::path::PathBuf;

use crate::neovim::{converged, have_neovim, wait_for, wait_joined, Nvim, Route};
use crate::runs::{FAILING_HELPER as HELPER, FAILING_MAIN as MAIN};
use crate::support::hub::Hub;
use crate::workspace::chorus_share;

/// Lua for `path`'s diagnostics from `chorus run`, as `[[lnum, severity]]`.
fn run_diagnostics(path: &std::path::Path) -> String {
    format!(
        "vim.json.encode(vim.tbl_map(function(d) return {{ d.lnum, d.severity }} end, \
         vim.tbl_filter(function(d) return d.source == 'chorus run' end, \
         vim.diagnostic.get(vim.fn.bufadd({})))))",
        crate::neovim::lua_str(&path.display().to_string())
    )
}

/// Ada shares a project of `files` and opens its main.py; Bob joins from
/// an empty folder. Returns both Neovims, once converged, and the folders.
async fn ada_shares_bob_joins(
    hub: &Hub,
    session: &str,
    files: &[(&str, &str)],
) -> ([Nvim; 2], PathBuf, PathBuf) {
    let project = hub.log_dir.join("ada");
    std::fs::create_dir_all(project.join(".git")).expect("create the project");
    for (path, text) in files {
        std::fs::write(project.join(path), text).expect("write a project file");
    }
    let (ok, stderr) = chorus_share(hub, &project, session).await;
    assert!(ok, "chorus share failed:\n{stderr}");
    let ada = Nvim::launch(hub, &project, session, "ada", None, Route::Plugin).await;
    wait_joined(&ada).await;
    let bobs = hub.log_dir.join("bob");
    std::fs::create_dir_all(bobs.join(".git")).expect("create bob's folder");
    let bob = Nvim::launch(hub, &bobs, session, "bob", None, Route::Plugin).await;
    wait_joined(&bob).await;
    let nvims = [ada, bob];
    converged(hub, session, &nvims).await;
    (nvims, project, bobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_error_is_a_diagnostic_in_every_neovim_until_the_next_run() {
    if !have_neovim() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("neovim_run_diagnostics").await;
    let session = "nvim-run-diagnostics";
    // Bob's folder is empty: helper.py is neither open nor on disk there.
    let (nvims, project, bobs) =
        ada_shares_bob_joins(&hub, session, &[("main.py", MAIN), ("helper.py", HELPER)]).await;
    let helpers = [project.join("helper.py"), bobs.join("helper.py")];

    nvims[1].command("ChorusRun").await;
    for (nvim, helper) in nvims.iter().zip(&helpers) {
        let text = wait_for(
            "the failing run finish",
            nvim,
            "require('chorus.run').text()",
            |t| t.contains("# exited with code"),
        )
        .await;
        assert!(text.contains("exited with code 1"), "{}: {text}", nvim.name);
        assert!(text.contains("NameError"), "{}: {text}", nvim.name);
        // Needs the sandbox's diagnostics parser (issue 15): the traceback's
        // last frame in the session's files is helper.py line 3.
        wait_for(
            "the NameError as a diagnostic on helper.py line 3",
            nvim,
            &run_diagnostics(helper),
            |d| d == "[[2,1]]",
        )
        .await;
        let summary = nvim.lua("require('chorus').state.run.summary").await;
        assert!(
            summary.contains("error at helper.py:3"),
            "{}: {summary}",
            nvim.name
        );
    }

    // Ada fixes main.py: the next run, clean, clears the diagnostic.
    nvims[0]
        .lua("vim.api.nvim_buf_set_lines(0, 2, 3, false, { \"print('fixed')\" }) or 'ok'")
        .await;
    converged(&hub, session, &nvims).await;
    nvims[0].command("ChorusRun").await;
    for (nvim, helper) in nvims.iter().zip(&helpers) {
        let text = wait_for(
            "the clean run finish",
            nvim,
            "require('chorus.run').text()",
            |t| t.contains("run 2") && t.contains("# exited with code"),
        )
        .await;
        assert!(text.contains("fixed"), "{}: {text}", nvim.name);
        assert!(text.contains("exited with code 0"), "{}: {text}", nvim.name);
        wait_for(
            "helper.py's run diagnostic cleared",
            nvim,
            &format!("#vim.json.decode({})", run_diagnostics(helper)),
            |count| count == "0",
        )
        .await;
    }
}

/// Issue 16 in real Neovim: Ada runs a program that asks for a name, Bob
/// answers it from his Neovim with `:ChorusInput`; both run buffers show
/// who answered what and the program's reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_asking_for_input_is_answered_from_another_neovim() {
    if !have_neovim() || !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("neovim_run_input").await;
    let session = "nvim-run-input";
    let program = "name = input('name? ')\nprint('hi', name)\n";
    let (nvims, _, _) = ada_shares_bob_joins(&hub, session, &[("main.py", program)]).await;

    nvims[0].command("ChorusRun").await;
    wait_for(
        "the program's prompt in Bob's run buffer",
        &nvims[1],
        "require('chorus.run').text()",
        |t| t.contains("name? "),
    )
    .await;
    nvims[1].command("ChorusInput Grace Hopper").await;
    for nvim in &nvims {
        let text = wait_for(
            "the echo and the program's answer",
            nvim,
            "require('chorus.run').text()",
            |t| t.contains("# exited with code"),
        )
        .await;
        assert!(
            text.contains("> Grace Hopper  (from bob)\nhi Grace Hopper\n"),
            "{}: {text}",
            nvim.name
        );
        assert!(text.contains("exited with code 0"), "{}: {text}", nvim.name);
    }
}
