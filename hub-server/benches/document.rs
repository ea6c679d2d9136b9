//! Benchmark 1 (issue 8): the hub's document path on real editing traces.
//!
//! Each trace in `/work/shared/traces` (or `$CHORUS_TRACES`) is replayed
//! three ways in the same run:
//!
//! * `ropey`: the bare rope, `remove` + `insert` per patch — the floor;
//! * `document`: every patch as an `OperationSeq` (retain/delete/insert/
//!   retain) through `Document::apply` based on the current revision, so
//!   the hub validates, applies to its rope and logs it in its history;
//! * `document, 1 behind`: two interleaved clients, every op based one
//!   revision behind, so each op is transformed once past the other
//!   client's last op before it is applied.
//!
//! Ops are built before the clock starts (the hub receives them decoded).
//! Then it holds N documents with the final text and history and reports
//! the resident memory each costs.
//!
//! Run: `cargo bench -p chorus-hub --bench document [-- TRACE...]`.
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_hub::document::Document;
use chorus_protocol::ot::{apply_to_rope, transform, OperationSeq};
use ropey::Rope;

/// What the hub keeps per document by default (`HubConfig::history_limit`).
fn history_limit() -> usize {
    chorus_hub::HubConfig::default().history_limit
}
/// Timed replays per trace and variant; the median is reported.
const REPEATS: usize = 5;
/// Documents held at once for the memory measurement.
const HELD_DOCUMENTS: usize = 50;

const TRACES: &[&str] = &[
    "automerge-paper",
    "seph-blog1",
    "rustcode",
    "sveltecomponent",
    "friendsforever_flat",
];

struct Patch {
    pos: usize,
    del: usize,
    ins: String,
}

struct Trace {
    name: String,
    patches: Vec<Patch>,
    end: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("document benchmark: run it with `cargo bench -p chorus-hub --bench document`");
        return;
    }
    let chosen: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-') && TRACES.contains(&a.as_str()))
        .map(String::as_str)
        .collect();
    let dir = std::env::var("CHORUS_TRACES").unwrap_or_else(|_| "/work/shared/traces".into());
    if let Some(at) = args.iter().position(|a| a == "--memory-of") {
        let name = &args[at + 1];
        let trace = load(&PathBuf::from(&dir).join(format!("{name}.json.gz")), name);
        println!("{}", memory(&trace));
        return;
    }
    println!(
        "| trace | edits | final chars | ropey ms | document ms | document edits/s | document / ropey | 1-behind ms | 1-behind edits/s | 1-behind / ropey |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut memory_rows = Vec::new();
    for name in TRACES {
        if !chosen.is_empty() && !chosen.contains(name) {
            continue;
        }
        let trace = load(&PathBuf::from(&dir).join(format!("{name}.json.gz")), name);
        let row = bench_trace(&trace);
        memory_rows.push(memory_in_child(&dir, name));
        println!("{row}");
    }
    println!();
    println!("| trace | documents added | RSS growth MiB | KiB per document | final text KiB | history ops kept |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in memory_rows {
        println!("{row}");
    }
}

/// The trace file, decoded straight into these types (a `Value` tree of
/// the larger traces would leave hundreds of MiB of freed heap behind that
/// the memory measurement would then reuse unseen).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceFile {
    start_content: String,
    end_content: String,
    txns: Vec<Txn>,
}

#[derive(serde::Deserialize)]
struct Txn {
    patches: Vec<(usize, usize, String)>,
}

fn load(path: &std::path::Path, name: &str) -> Trace {
    // `gzip -dc` rather than a decompression crate: one dependency fewer.
    let output = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|err| panic!("run gzip on {}: {err}", path.display()));
    assert!(
        output.status.success(),
        "gzip -dc {} failed",
        path.display()
    );
    let file: TraceFile = serde_json::from_slice(&output.stdout).expect("trace format");
    drop(output);
    assert!(file.start_content.is_empty(), "traces start empty");
    let patches = file
        .txns
        .into_iter()
        .flat_map(|txn| txn.patches)
        .map(|(pos, del, ins)| Patch { pos, del, ins })
        .collect();
    Trace {
        name: name.to_owned(),
        patches,
        end: file.end_content,
    }
}

/// The op a patch is, on a document of `len` characters.
fn patch_op(patch: &Patch, len: usize) -> OperationSeq {
    let mut op = OperationSeq::default();
    op.retain(patch.pos as u64);
    op.delete(patch.del as u64);
    if !patch.ins.is_empty() {
        op.insert(&patch.ins);
    }
    // Saturating: a bad rewrite in `one_behind_ops` must fail the length
    // check, not wrap around.
    op.retain(len.saturating_sub(patch.pos + patch.del) as u64);
    op
}

/// `(base_rev, op)` with every op based on the current revision.
fn sequential_ops(trace: &Trace) -> Vec<(u64, OperationSeq)> {
    let mut len = 0usize;
    let mut out = Vec::with_capacity(trace.patches.len());
    for (rev, patch) in trace.patches.iter().enumerate() {
        out.push((rev as u64, patch_op(patch, len)));
        len = len + patch.ins.chars().count() - patch.del;
    }
    out
}

/// Where position `pos` of the text after `prev` was before it. Where
/// `prev` deleted without inserting, the position is both before and after
/// the deleted text: `after` picks which. `None` when it lies inside what
/// `prev` inserted.
fn map_back(prev: &Patch, pos: usize, after: bool) -> Option<usize> {
    let ins = prev.ins.chars().count();
    let behind = pos >= prev.pos + ins;
    let before = pos <= prev.pos;
    match (before, behind) {
        (true, true) if after => Some(pos + prev.del),
        (true, _) => Some(pos),
        (false, true) => Some(pos - ins + prev.del),
        (false, false) => None,
    }
}

/// Two clients taking turns: op `k` is patch `k` rewritten onto the text
/// before patch `k - 1` and based one revision behind, so the hub must
/// transform it past the other client's op. Returns the ops and how many
/// are really one behind: where the patch touches what the previous one
/// inserted (or deletes across it), it cannot be written on the older text
/// and goes in based on the current revision instead.
///
/// Concurrent inserts at one place are ordered by the OT tie-break, not by
/// the trace, so the final text may be a permutation of `endContent`; it is
/// checked against an independent replay instead.
fn one_behind_ops(trace: &Trace) -> (Vec<(u64, OperationSeq)>, usize) {
    let mut lens = Vec::with_capacity(trace.patches.len() + 1);
    let mut len = 0usize;
    lens.push(0);
    for patch in &trace.patches {
        len = len + patch.ins.chars().count() - patch.del;
        lens.push(len);
    }
    let mut out = Vec::with_capacity(trace.patches.len());
    let mut behind = 0;
    // The op the hub logged last, as it logged it.
    let mut last = OperationSeq::default();
    for (rev, patch) in trace.patches.iter().enumerate() {
        let mut made = None;
        if rev > 0 {
            let prev = &trace.patches[rev - 1];
            // A deleted range keeps clear of what `prev` deleted; an
            // insert stays at one place.
            let start = map_back(prev, patch.pos, true);
            let end = map_back(prev, patch.pos + patch.del, patch.del == 0);
            if let (Some(start), Some(end)) = (start, end) {
                // A delete across the place the previous patch changed
                // cannot be written on the older text.
                let prev_ins = prev.ins.chars().count();
                let spans_prev = patch.del > 0
                    && patch.pos < prev.pos + prev_ins
                    && patch.pos + patch.del > prev.pos;
                if !spans_prev {
                    let older = Patch {
                        pos: start,
                        del: end.saturating_sub(start),
                        ins: patch.ins.clone(),
                    };
                    let older = patch_op(&older, lens[rev - 1]);
                    // Keep it only if, transformed past the op the hub
                    // really logged last, it changes the length as the
                    // patch does (the position may differ where two
                    // inserts tie).
                    let transformed = transform(&older, &last).ok().map(|(op, _)| op);
                    if let Some(op) = transformed
                        .filter(|op| op.base_len() == lens[rev] && op.target_len() == lens[rev + 1])
                    {
                        made = Some(((rev - 1) as u64, older));
                        last = op;
                        behind += 1;
                    }
                }
            }
        }
        let made = made.unwrap_or_else(|| {
            last = patch_op(patch, lens[rev]);
            (rev as u64, last.clone())
        });
        out.push(made);
    }
    (out, behind)
}

fn replay_ropey(trace: &Trace) -> (Duration, Rope) {
    let mut rope = Rope::new();
    let start = Instant::now();
    for patch in &trace.patches {
        if patch.del > 0 {
            rope.remove(patch.pos..patch.pos + patch.del);
        }
        if !patch.ins.is_empty() {
            rope.insert(patch.pos, &patch.ins);
        }
    }
    (start.elapsed(), rope)
}

fn replay_document(ops: Vec<(u64, OperationSeq)>) -> (Duration, Document) {
    let mut doc = Document::new("", history_limit());
    let start = Instant::now();
    for (base, op) in ops {
        if let Err(err) = doc.apply(base, op, None) {
            panic!(
                "Document::apply refused a trace op at rev {}: {err}",
                doc.rev()
            );
        }
    }
    (start.elapsed(), doc)
}

/// The hub's rule written out plainly, to check `Document`'s bookkeeping.
fn reference_replay(ops: &[(u64, OperationSeq)]) -> String {
    let mut rope = Rope::new();
    let mut history: Vec<OperationSeq> = Vec::with_capacity(ops.len());
    for (base, op) in ops {
        let mut op = op.clone();
        for ordered in &history[*base as usize..] {
            op = transform(&op, ordered).expect("transform").0;
        }
        apply_to_rope(&mut rope, &op).expect("apply");
        history.push(op);
    }
    rope.to_string()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn bench_trace(trace: &Trace) -> String {
    let edits = trace.patches.len();
    let sequential = sequential_ops(trace);
    let (behind_ops, behind) = one_behind_ops(trace);

    // Correctness first, untimed.
    let (_, rope) = replay_ropey(trace);
    assert!(
        rope == trace.end.as_str(),
        "{}: ropey replay differs",
        trace.name
    );
    let (_, doc) = replay_document(sequential.clone());
    assert!(
        *doc.text() == trace.end.as_str(),
        "{}: Document replay differs from endContent",
        trace.name
    );
    assert_eq!(doc.rev(), edits as u64);
    let (_, doc) = replay_document(behind_ops.clone());
    let expected = reference_replay(&behind_ops);
    assert!(
        *doc.text() == expected.as_str(),
        "{}: 1-behind replay differs from the reference",
        trace.name
    );
    assert_eq!(doc.text().len_chars(), trace.end.chars().count());
    let behind_is_end = *doc.text() == trace.end.as_str();
    drop(doc);

    let mut ropey = Vec::new();
    let mut document = Vec::new();
    let mut one_behind = Vec::new();
    for _ in 0..REPEATS {
        ropey.push(replay_ropey(trace).0);
        let ops = sequential.clone();
        document.push(replay_document(ops).0);
        let ops = behind_ops.clone();
        one_behind.push(replay_document(ops).0);
    }
    let (ropey, document, one_behind) = (median(ropey), median(document), median(one_behind));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rate = |d: Duration| edits as f64 / d.as_secs_f64();
    eprintln!(
        "{}: {behind} of {edits} ops ({:.1}%) really one behind; 1-behind text {} endContent",
        trace.name,
        100.0 * behind as f64 / edits as f64,
        if behind_is_end {
            "equals"
        } else {
            "is a reordering of (insert ties)"
        },
    );
    format!(
        "| {} | {edits} | {} | {:.1} | {:.1} | {:.2} M | {:.2}× | {:.1} | {:.2} M | {:.2}× |",
        trace.name,
        trace.end.chars().count(),
        ms(ropey),
        ms(document),
        rate(document) / 1e6,
        document.as_secs_f64() / ropey.as_secs_f64(),
        ms(one_behind),
        rate(one_behind) / 1e6,
        one_behind.as_secs_f64() / ropey.as_secs_f64(),
    )
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory per held document, measured in a fresh process so that
/// earlier runs' freed heap does not hide it: the marginal RSS growth from
/// `MEMORY_FIRST` to `MEMORY_FIRST + HELD_DOCUMENTS` documents (the first
/// ones soak up the heap freed by parsing the trace).
fn memory_in_child(dir: &str, name: &str) -> String {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args(["--bench", "--memory-of", name])
        .env("CHORUS_TRACES", dir)
        .output()
        .expect("run the memory child");
    assert!(out.status.success(), "memory child for {name} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const MEMORY_FIRST: usize = 25;

fn memory(trace: &Trace) -> String {
    let build = || {
        // Ops are built one at a time, as they would arrive, so that what
        // stays allocated is the document alone: text and history.
        let mut doc = Document::new("", history_limit());
        let mut len = 0usize;
        for patch in &trace.patches {
            let base = doc.rev();
            doc.apply(base, patch_op(patch, len), None)
                .expect("trace op applies");
            len = len + patch.ins.chars().count() - patch.del;
        }
        doc
    };
    let mut held: Vec<Document> = (0..MEMORY_FIRST).map(|_| build()).collect();
    let before = rss_kib();
    held.extend((0..HELD_DOCUMENTS).map(|_| build()));
    let after = rss_kib();
    let history = held[0].rev() - held[0].oldest_rev();
    let text_kib = held[0].text().len_bytes() as f64 / 1024.0;
    let growth = after.saturating_sub(before);
    format!(
        "| {} | {HELD_DOCUMENTS} | {:.1} | {:.0} | {text_kib:.0} | {history} |",
        trace.name,
        growth as f64 / 1024.0,
        growth as f64 / HELD_DOCUMENTS as f64,
    )
}
