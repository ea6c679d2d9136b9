//! Issue 14 in real Neovim, beyond inserts: three instances edit one
//! document at random places 0-20 ms apart with inserts of every script
//! (accented Latin with combining marks, Cyrillic, CJK, emoji with skin
//! tones and ZWJ sequences), `x`, `dw` and `dd`, multi-line puts, `u` and
//! `<C-r>`, on both routes (alternating by seed), on a LF file and on a
//! CRLF one (`fileformat=dos`). The random driver is `T.edit_random` in
//! `neovim.rs`'s test helpers; replay a seed with `CHORUS_SEEDS=<seed>`.
//!
//! What must hold once everyone stops: every buffer is the hub's text and
//! every proxy is synchronized; after a first phase of inserts and puts
//! alone, the text is the seed plus everything inserted, each code point
//! exactly as often as inserted; after a second phase with deletes, undo
//! and redo, no code point is there more often than it was inserted or put
//! back by an undo or redo (Neovim's `u` undoes a collaborator's edit when
//! it was the last change, and two people undoing the same delete both put
//! the text back: that, and nothing else, may duplicate); on the CRLF file
//! every line still ends with CRLF; and nothing was repaired on the way
//! (a proxy replacing a buffer it could not trust, or the plugin finding
//! a buffer that differs from its proxy's copy), since self-healing would
//! hide a bug from the other checks.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::future::join_all;

use crate::neovim::{converged, have_neovim, lua_str, three_by, wait_for, Nvim, Route};
use crate::support::hub::Hub;

/// Units each instance may insert in one seed; a run uses about 80.
const UNITS: usize = 300;
/// Actions per instance: inserts and puts only, then everything.
const INSERT_STEPS: u32 = 40;
const MIXED_STEPS: u32 = 60;
/// `T.edit_random`'s mixes (one letter an action; see there). No `J`:
/// Neovim reports a join as two changes, a copy of the next line put at
/// the end of this one, then that line deleted, so two people joining one
/// line at once both copy it, and it is there twice. That is how Neovim
/// describes the edit, not something the proxy can tell from a copy
/// anyone made (`j` in the driver shows it).
const INSERT_MIX: &str = "iiiiiip";
const MIXED_MIX: &str = "iiippxxwduurr";

/// The units instance `instance` inserts. Each holds one code point no
/// other instance types, its carrier: accented Latin, Cyrillic, CJK and
/// emoji in turn; some carry what real text hangs on such letters (a
/// combining acute, a skin tone, a ZWJ and a second emoji), code points
/// everyone types, which are therefore only counted.
fn units(instance: usize) -> Vec<String> {
    let i = instance as u32;
    (0..UNITS)
        .map(|k| {
            let n = (k / 4) as u32;
            let carrier = |base: u32| char::from_u32(base + n).expect("a scalar value");
            match k % 4 {
                0 => {
                    let c = carrier(0xc0 + i * 120);
                    if n % 3 == 0 {
                        format!("{c}\u{301}")
                    } else {
                        c.to_string()
                    }
                }
                1 => carrier(0x400 + i * 85).to_string(),
                2 => carrier(0x4e00 + i * 1000).to_string(),
                _ => {
                    let c = carrier(0x1f900 + i * 85);
                    match n % 3 {
                        0 => c.to_string(),
                        1 => format!("{c}{}", char::from_u32(0x1f3fb + n % 5).expect("a tone")),
                        _ => format!("{c}\u{200d}\u{1f4bb}"),
                    }
                }
            }
        })
        .collect()
}

/// How often each code point occurs, whitespace aside (a put's line
/// breaks, and CR on the CRLF file, are checked otherwise).
fn counts(text: &str) -> BTreeMap<char, usize> {
    let mut counts = BTreeMap::new();
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        *counts.entry(c).or_default() += 1;
    }
    counts
}

/// Starts `T.edit_random` in every instance, instance `i` inserting from
/// `units[i]` (handed over in a file in `dir`), and waits until all are
/// done. Returns how many units each used.
async fn edit(
    nvims: &[Nvim],
    dir: &Path,
    seed: u64,
    units: &[&[String]],
    steps: u32,
    mix: &str,
) -> Vec<usize> {
    let calls: Vec<String> = nvims
        .iter()
        .enumerate()
        .map(|(i, nvim)| {
            let file = dir.join(format!("units-{}-{seed}.json", nvim.name));
            let json = serde_json::to_string(units[i]).expect("strings serialize");
            std::fs::write(&file, json).expect("write the units");
            format!(
                "T.edit_random({}, {}, {steps}, {}, 20) or 'ok'",
                seed * 10 + i as u64,
                lua_str(&file.display().to_string()),
                lua_str(mix),
            )
        })
        .collect();
    // At once: each instance starts as soon as it can.
    join_all(nvims.iter().zip(&calls).map(|(nvim, call)| nvim.lua(call))).await;
    let done = format!("{steps} ");
    let finished = nvims.iter().map(|nvim| {
        wait_for(
            "all its editing done",
            nvim,
            "T.done .. ' ' .. T.used",
            |v| v.starts_with(&done),
        )
    });
    join_all(finished)
        .await
        .iter()
        .map(|v| v[done.len()..].trim().parse().expect("T.used is a count"))
        .collect()
}

/// Convergence reached by repair hides a bug: no proxy may have found its
/// editor's text untrustworthy or out of step (and replaced it with the
/// session's), nor the plugin a buffer that differs from its proxy's copy.
async fn assert_nothing_healed(nvims: &[Nvim], route: Route, what: &str) {
    for nvim in nvims {
        let log = nvim.lsp_log();
        let repairs: Vec<&str> = log
            .lines()
            .filter(|line| {
                line.contains("Z ERROR chorus_lsp") || line.contains("could not be trusted")
            })
            .collect();
        assert!(
            repairs.is_empty(),
            "{what}: {}'s proxy repaired its document:\n{}",
            nvim.name,
            repairs.join("\n")
        );
        if route == Route::Plugin {
            let mismatches = nvim.lua("require('chorus.check').mismatches").await;
            assert_eq!(
                mismatches, "0",
                "{what}: {}'s plugin found its buffer different from the proxy's copy",
                nvim.name
            );
        }
    }
}

fn assert_crlf_kept(text: &str, what: &str) {
    assert!(
        !text.replace("\r\n", "").contains(['\r', '\n']),
        "{what}: a line break that is not CRLF in {text:?}"
    );
}

async fn edit_at_random(test: &str, seed: u64, crlf: bool) {
    let routes = [(Route::PlainLsp, "plain"), (Route::Plugin, "plugin")];
    let (route, label) = routes[seed as usize % routes.len()];
    let what = format!("{label} seed {seed}");
    let hub = Hub::start(&format!("{test}_{label}_{seed}")).await;
    let session = format!("nvim-random-{label}-{seed}");
    let seed_text = if crlf {
        "def main():\r\n    print('hi')\r\n"
    } else {
        "def main():\n    print('hi')\n"
    };
    let nvims = three_by(&hub, &session, seed_text, route).await;
    if crlf {
        for nvim in &nvims {
            let format = nvim.lua("vim.bo[T.buf()].fileformat").await;
            assert_eq!(format, "dos", "{}: the file is read as CRLF", nvim.name);
        }
    }
    let all: Vec<Vec<String>> = (0..nvims.len()).map(units).collect();

    // Inserts and puts alone: everything inserted is there, once.
    let from_start: Vec<&[String]> = all.iter().map(Vec::as_slice).collect();
    let used = edit(
        &nvims,
        &hub.log_dir,
        seed,
        &from_start,
        INSERT_STEPS,
        INSERT_MIX,
    )
    .await;
    let text = converged(&hub, &session, &nvims).await;
    let mut inserted: String = all
        .iter()
        .zip(&used)
        .flat_map(|(units, &n)| units[..n].iter().map(String::as_str))
        .collect();
    assert_eq!(
        counts(&text),
        counts(&format!("{seed_text}{inserted}")),
        "{what}: after inserts and puts, code points lost or doubled in {text:?}"
    );
    if crlf {
        assert_crlf_kept(&text, &what);
    }
    assert_nothing_healed(&nvims, route, &what).await;

    // Everything: deletes, undo and redo too.
    let rest: Vec<&[String]> = all.iter().zip(&used).map(|(u, &n)| &u[n..]).collect();
    let more = edit(
        &nvims,
        &hub.log_dir,
        seed + 1000,
        &rest,
        MIXED_STEPS,
        MIXED_MIX,
    )
    .await;
    let text = converged(&hub, &session, &nvims).await;
    inserted.extend(
        rest.iter()
            .zip(&more)
            .flat_map(|(units, &n)| units[..n].iter().map(String::as_str)),
    );
    let mut restored = String::new();
    for nvim in &nvims {
        restored.push_str(&nvim.lua("table.concat(T.restored)").await);
    }
    let allowed = counts(&format!("{seed_text}{inserted}{restored}"));
    let excess: Vec<(char, usize, usize)> = counts(&text)
        .into_iter()
        .filter_map(|(c, n)| {
            let max = allowed.get(&c).copied().unwrap_or(0);
            (n > max).then_some((c, n, max))
        })
        .collect();
    assert!(
        excess.is_empty(),
        "{what}: code points more often than inserted or put back by undo/redo \
         (char, count, allowed): {excess:?}\ntext {text:?}\nundo/redo put back {restored:?}"
    );
    if crlf {
        assert_crlf_kept(&text, &what);
    }
    assert_nothing_healed(&nvims, route, &what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_neovims_editing_at_random_converge_without_duplicates() {
    if !have_neovim() {
        return;
    }
    for seed in crate::support::seeds(&[1, 2, 3, 4]) {
        edit_at_random("neovim_random", seed, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_neovims_editing_a_crlf_file_at_random_keep_crlf_and_converge() {
    if !have_neovim() {
        return;
    }
    for seed in crate::support::seeds(&[5, 6]) {
        edit_at_random("neovim_random_crlf", seed, true).await;
    }
}
