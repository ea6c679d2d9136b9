//! Randomized concurrent typing from several editors of mixed kinds, with
//! replayable seeds; once quiet, everyone must agree and every typed
//! character must be present exactly once.
//!
//! Each editor's keystrokes insert its own unique characters (CJK for even
//! editors, CJK Extension B — two UTF-16 units, four UTF-8 bytes — for odd
//! ones), so the final text can be checked as a set: initial characters
//! plus everything typed, minus everything some editor deleted. Line breaks
//! (LF, and CRLF for odd seeds) are the only repeated characters: typing
//! Enter adds them, deletions never remove them, so they are counted.
//! Keystrokes are inserts, deletes, replacements, Enter and multi-cursor
//! inserts (several changes in one transaction). Editors also hold
//! incoming edits now and then (busy elsewhere) while they keep typing,
//! which makes the proxies' edits stale.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::converge::CONVERGENCE_DEADLINE;
use crate::support::editor::EditorKind::{self, Helix, Neovim, VsCode};
use crate::support::positions::splits_crlf;
use crate::support::{eventually, seeds, wait_converged, Editor, EditorOptions, Hub};

const TWO_EDITOR_SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];
const FIVE_EDITOR_SEEDS: &[u64] = &[101, 102, 103, 104, 105, 106];
const FULL_TEXT_SEEDS: &[u64] = &[201, 202, 203];
const LATE_JOINER_SEEDS: &[u64] = &[301, 302, 303];
const KEYSTROKES: usize = 60;
const DOC: &str = "src/shared.rs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_type_concurrently() {
    // Every ordered pair of kinds but one; the seed picks the pair, so a
    // replayed seed gets the same editors.
    const PAIRS: [[EditorKind; 2]; 8] = [
        [Helix, Neovim],
        [VsCode, Neovim],
        [Neovim, Helix],
        [Helix, VsCode],
        [VsCode, VsCode],
        [Neovim, Neovim],
        [Helix, Helix],
        [Neovim, VsCode],
    ];
    run_seeds("two_editors_type_concurrently", TWO_EDITOR_SEEDS, |seed| {
        PAIRS[(seed % 8) as usize].map(Spec::ranged).to_vec()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_editors_type_concurrently() {
    const KINDS: [EditorKind; 3] = [VsCode, Neovim, Helix];
    run_seeds(
        "five_editors_type_concurrently",
        FIVE_EDITOR_SEEDS,
        |seed| {
            (0..5)
                .map(|i| Spec::ranged(KINDS[(i + seed as usize) % 3]))
                .collect()
        },
    )
    .await;
}

/// Editors that report every change as the whole text (no range), mixed
/// with one that reports ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_reporters_type_concurrently() {
    run_seeds(
        "full_text_reporters_type_concurrently",
        FULL_TEXT_SEEDS,
        |_| {
            vec![
                Spec {
                    kind: Helix,
                    full_text: true,
                },
                Spec::ranged(VsCode),
                Spec {
                    kind: Neovim,
                    full_text: true,
                },
            ]
        },
    )
    .await;
}

/// Two documents typed into at once, and a fourth editor joining with a
/// stale copy of both while the others type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_documents_and_a_late_joiner_while_typing() {
    const SCENARIO: Scenario = Scenario {
        docs: &["src/one.rs", "docs/two.md"],
        late_joiner: Some(Spec {
            kind: Neovim,
            full_text: false,
        }),
    };
    run_scenario_seeds(
        "two_documents_and_a_late_joiner_while_typing",
        LATE_JOINER_SEEDS,
        SCENARIO,
        |seed| {
            [VsCode, Helix, Neovim]
                .into_iter()
                .cycle()
                .skip(seed as usize % 3)
                .take(3)
                .map(Spec::ranged)
                .collect()
        },
    )
    .await;
}

/// One editor of a random session.
#[derive(Clone, Copy, Debug)]
struct Spec {
    kind: EditorKind,
    /// Reports changes as the full text instead of ranges.
    full_text: bool,
}

impl Spec {
    fn ranged(kind: EditorKind) -> Spec {
        Spec {
            kind,
            full_text: false,
        }
    }
}

/// What a random session looks like besides its editors.
#[derive(Clone, Copy)]
struct Scenario {
    /// Documents everyone opens; each keystroke goes to a random one.
    docs: &'static [&'static str],
    /// An editor that joins while the others type, with the file as it was
    /// before they started (so the proxy replaces its text), then types too.
    late_joiner: Option<Spec>,
}

const ONE_DOCUMENT: Scenario = Scenario {
    docs: &[DOC],
    late_joiner: None,
};

/// Runs every seed (each on a fresh hub), then fails with all the failures.
async fn run_seeds(test: &str, defaults: &[u64], specs_for: impl Fn(u64) -> Vec<Spec>) {
    run_scenario_seeds(test, defaults, ONE_DOCUMENT, specs_for).await;
}

async fn run_scenario_seeds(
    test: &str,
    defaults: &[u64],
    scenario: Scenario,
    specs_for: impl Fn(u64) -> Vec<Spec>,
) {
    let mut failures = Vec::new();
    for seed in seeds(defaults) {
        let specs = specs_for(seed);
        eprintln!("{test}: seed {seed}, editors {specs:?}");
        if let Err(err) = run_one(test, seed, &specs, scenario).await {
            failures.push(format!(
                "seed {seed} (editors {specs:?}) failed; replay with \
                 CHORUS_SEEDS={seed} cargo test --test e2e {test}\n{err}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} seed(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// What one editor typed and deleted in one document.
#[derive(Default)]
struct Keystrokes {
    inserted: Vec<char>,
    deleted: Vec<char>,
}

/// Per document, in the order of `Scenario::docs`.
type Typed = Vec<Keystrokes>;

async fn start_editor(hub: &Hub, session: &str, seed: u64, index: usize, spec: Spec) -> Editor {
    let name = format!("e{index}-{:?}", spec.kind).to_lowercase();
    let options = EditorOptions {
        full_text_changes: spec.full_text,
        seed: seed ^ ((index as u64) << 32),
        ..EditorOptions::new(spec.kind, hub, session, &name)
    };
    Editor::start_with(options, &hub.log_dir).await
}

fn spawn_typist(
    editor: Arc<Editor>,
    seed: u64,
    index: usize,
    docs: &'static [&'static str],
) -> tokio::task::JoinHandle<Typed> {
    let rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    tokio::spawn(async move { type_randomly(&editor, index, docs, rng).await })
}

async fn run_one(test: &str, seed: u64, specs: &[Spec], scenario: Scenario) -> Result<(), String> {
    let hub = Hub::start(&format!("{test}/seed-{seed}")).await;
    let session = format!("random-{seed}");
    let mut editors = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        editors.push(Arc::new(
            start_editor(&hub, &session, seed, index, *spec).await,
        ));
    }
    let line_break = if seed % 2 == 1 { "\r\n" } else { "\n" };
    let initial = initial_text(line_break);
    // Everyone has the same files on disk; the first open creates each
    // document at the hub, the others join it.
    for editor in &editors {
        for doc in scenario.docs {
            editor.open(doc, &initial);
        }
    }
    {
        let all: Vec<&Editor> = editors.iter().map(Arc::as_ref).collect();
        for doc in scenario.docs {
            let start = wait_converged(&hub, &session, doc, &all).await?;
            if start != initial {
                return Err(format!(
                    "{doc}: the joined text differs from the file: {start:?}"
                ));
            }
        }
    }

    let mut typists: Vec<_> = editors
        .iter()
        .enumerate()
        .map(|(index, editor)| spawn_typist(editor.clone(), seed, index, scenario.docs))
        .collect();

    if let Some(spec) = scenario.late_joiner {
        // Join once the others are well under way.
        let first = editors[0].clone();
        eventually(CONVERGENCE_DEADLINE, || {
            first.stats().local_changes >= KEYSTROKES / 3
        })
        .await;
        let index = editors.len();
        let late = Arc::new(start_editor(&hub, &session, seed, index, spec).await);
        for doc in scenario.docs {
            late.open(doc, &initial);
        }
        // Typing before the hub's text has replaced the stale file would be
        // `joining::typing_right_after_open_is_kept`; wait for it here.
        let replaced = eventually(CONVERGENCE_DEADLINE, || {
            scenario
                .docs
                .iter()
                .all(|doc| late.text(doc).is_some_and(|text| text != initial))
        })
        .await;
        if !replaced {
            return Err(format!(
                "the late joiner's stale files were never replaced:\n{}",
                late.describe(scenario.docs[0])
            ));
        }
        typists.push(spawn_typist(late.clone(), seed, index, scenario.docs));
        editors.push(late);
    }

    let mut typed_per_editor = Vec::new();
    for typist in typists {
        typed_per_editor.push(
            typist
                .await
                .map_err(|err| format!("a typing task failed: {err}"))?,
        );
    }
    let all: Vec<&Editor> = editors.iter().map(Arc::as_ref).collect();
    for (d, doc) in scenario.docs.iter().enumerate() {
        let text = wait_converged(&hub, &session, doc, &all).await?;
        let mut inserted = Vec::new();
        let mut deleted = BTreeSet::new();
        for typed in &typed_per_editor {
            inserted.extend(&typed[d].inserted);
            deleted.extend(&typed[d].deleted);
        }
        check_every_keystroke(&initial, &inserted, &deleted, &text).map_err(|err| {
            let states: Vec<String> = all.iter().map(|e| e.describe(doc)).collect();
            format!("{doc}: {err}\n{}", states.join("\n"))
        })?;
    }
    for editor in &all {
        let stats = editor.stats();
        eprintln!("  {}: {stats:?}", editor.name);
        // Each editor saw the others' typing arrive as applied edits; a
        // session where nothing travelled would agree trivially.
        if stats.local_changes != KEYSTROKES || stats.applied == 0 {
            return Err(format!(
                "{} typed or received nothing: {stats:?}",
                editor.name
            ));
        }
    }
    Ok(())
}

/// Types `KEYSTROKES` random keystrokes, each in a random one of `docs`,
/// with small random pauses, holding incoming edits now and then.
///
/// Editors that report full text type at several cursors too: the proxy
/// recovers such a change with a character diff, so text between the
/// cursors is left alone and concurrent deletions there survive.
async fn type_randomly(editor: &Editor, index: usize, docs: &[&str], mut rng: StdRng) -> Typed {
    // 2000 characters per editor: up to three per keystroke (multi-cursor).
    let base = if index % 2 == 0 {
        0x4E00 + index as u32 * 2000
    } else {
        0x20000 + index as u32 * 2000
    };
    let mut typed: Typed = docs.iter().map(|_| Keystrokes::default()).collect();
    let mut holding_for = 0;
    for k in 0..KEYSTROKES {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=5))).await;
        if holding_for > 0 {
            holding_for -= 1;
            if holding_for == 0 {
                editor.release();
            }
        } else if rng.random_ratio(1, 12) {
            editor.hold();
            holding_for = rng.random_range(1..=4);
        }
        let unique: [char; 3] = std::array::from_fn(|j| {
            char::from_u32(base + 3 * k as u32 + j as u32).expect("a valid scalar value")
        });
        let d = rng.random_range(0..docs.len());
        let made = editor.edit_many_with(docs[d], |buffer| {
            choose_edits(buffer, unique, true, &mut rng)
        });
        for (_, _, text, removed) in made {
            typed[d].inserted.extend(text.chars());
            typed[d].deleted.extend(removed);
        }
    }
    editor.release();
    typed
}

/// Picks one keystroke: an insert (50 %), a delete of 1–3 characters
/// (20 %), a replacement of one character (12 %), Enter (8 %; LF or CRLF,
/// followed by a character) or inserts at
/// 2–3 cursors at once (10 %, else a plain insert). Never deletes a line
/// break and never splits a CRLF pair.
fn choose_edits(
    buffer: &[char],
    unique: [char; 3],
    multi_cursor: bool,
    rng: &mut StdRng,
) -> Vec<(usize, usize, String)> {
    let deletable = |c: char| c != '\n' && c != '\r';
    let candidates: Vec<usize> = (0..buffer.len())
        .filter(|&i| deletable(buffer[i]))
        .collect();
    let cursors: Vec<usize> = (0..=buffer.len())
        .filter(|&i| !splits_crlf(buffer, i))
        .collect();
    let roll = rng.random_range(0..100);
    if roll < 50 || candidates.is_empty() {
        let at = cursors[rng.random_range(0..cursors.len())];
        return vec![(at, at, unique[0].to_string())];
    }
    if roll < 70 {
        let start = candidates[rng.random_range(0..candidates.len())];
        let wanted = rng.random_range(1..=3);
        let mut end = start + 1;
        while end - start < wanted && end < buffer.len() && deletable(buffer[end]) {
            end += 1;
        }
        return vec![(start, end, String::new())];
    }
    if roll < 82 {
        let start = candidates[rng.random_range(0..candidates.len())];
        return vec![(start, start + 1, unique[0].to_string())];
    }
    if roll < 90 {
        let at = cursors[rng.random_range(0..cursors.len())];
        // Enter and the first character of the new line, as with
        // auto-indent. A bare line break could coincide with a remote one
        // in flight, which content-based echo detection takes for the
        // echo: `stale_edits::*_same_keystroke_*` checks that case alone.
        let enter = if rng.random_bool(0.5) { "\r\n" } else { "\n" };
        return vec![(at, at, format!("{enter}{}", unique[0]))];
    }
    let n_cursors = if multi_cursor {
        rng.random_range(2..=3).min(cursors.len())
    } else {
        1
    };
    let mut places: Vec<usize> = rand::seq::index::sample(rng, cursors.len(), n_cursors)
        .into_iter()
        .map(|i| cursors[i])
        .collect();
    places.sort_unstable();
    places
        .into_iter()
        .zip(unique)
        .map(|(at, c)| (at, at, c.to_string()))
        .collect()
}

/// Lines of distinct characters (ASCII, Greek, a few emoji and a lone
/// combining mark), each ended by `line_break`.
fn initial_text(line_break: &str) -> String {
    let distinct: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain('α'..='ω')
        .chain(['😀', '🎉', '👍', '\u{301}'])
        .collect();
    let mut text = String::new();
    for line in distinct.chunks(18) {
        text.extend(line);
        text.push_str(line_break);
    }
    text
}

/// The final text must hold the initial characters plus everything typed,
/// minus everything deleted, each exactly once, and every line break.
fn check_every_keystroke(
    initial: &str,
    inserted: &[char],
    deleted: &BTreeSet<char>,
    text: &str,
) -> Result<(), String> {
    let is_break = |c: &char| *c == '\n' || *c == '\r';
    let mut problems = Vec::new();
    for line_break in ['\n', '\r'] {
        let expected = initial.chars().filter(|&c| c == line_break).count()
            + inserted.iter().filter(|&&c| c == line_break).count();
        let actual = text.chars().filter(|&c| c == line_break).count();
        if actual != expected {
            problems.push(format!("{actual} {line_break:?}, expected {expected}"));
        }
    }
    let expected: BTreeSet<char> = initial
        .chars()
        .chain(inserted.iter().copied())
        .filter(|c| !is_break(c) && !deleted.contains(c))
        .collect();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in text.chars().filter(|c| !is_break(c)) {
        *counts.entry(c).or_default() += 1;
    }
    let duplicated: Vec<String> = counts
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(c, n)| format!("{c:?}×{n}"))
        .collect();
    let missing: Vec<char> = expected
        .iter()
        .filter(|c| !counts.contains_key(c))
        .copied()
        .collect();
    let unexpected: Vec<char> = counts
        .keys()
        .filter(|c| !expected.contains(c))
        .copied()
        .collect();
    if !duplicated.is_empty() {
        problems.push(format!("duplicated: {}", duplicated.join(" ")));
    }
    if !missing.is_empty() {
        problems.push(format!("typed but missing: {missing:?}"));
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "deleted or never typed, yet present: {unexpected:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "everyone agrees, but on the wrong text: {}\nfinal text: {text:?}",
            problems.join("; ")
        ))
    }
}
