//! Issue 18: what the fence (ADR 0009) costs per stored op.
//!
//! Against the PostgreSQL database in `CHORUS_TEST_POSTGRES`, two stores
//! append the same ops, one at a time as a session's actor does (each
//! awaited before the next, since an op is stored before it is
//! acknowledged): one as `chorus session` commands write, unfenced; one as
//! a hub writes, with this hub's lease, a claim on the session and every
//! insert calling `chorus_fence`. The two alternate in rounds of 500 so
//! that the server's caches and the machine's load treat them alike.
//!
//! Run: `cargo bench -p chorus-hub --bench fence [-- --ops 5000]`.
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

use std::time::{Duration, Instant};

use chorus_hub::storage::{Claim, Database, Store};
use chorus_protocol::ot::OperationSeq;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("fence benchmark: run it with `cargo bench -p chorus-hub --bench fence`");
        return;
    }
    let ops = args
        .iter()
        .position(|a| a == "--ops")
        .and_then(|at| args.get(at + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000usize);
    let url = std::env::var("CHORUS_TEST_POSTGRES")
        .expect("CHORUS_TEST_POSTGRES=postgres://… (scripts/ensure-postgres.sh prints it)");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(url, ops));
}

async fn bench(url: String, ops: usize) {
    let database = Database::Postgres(url);
    let plain = Store::open(&database).await.expect("open");
    let fenced = Store::open(&database).await.expect("open");
    fenced.set_hub(&format!("bench-{}", std::process::id()));
    fenced
        .heartbeat("ws://127.0.0.1:1/", Duration::from_secs(600))
        .await
        .expect("lease");
    let run = format!("{}-{}", std::process::id(), chorus_hub::storage::now_secs());
    let (plain_session, fenced_session) = (format!("fence-plain-{run}"), format!("fence-on-{run}"));
    assert!(matches!(
        fenced.claim(&fenced_session).await.expect("claim"),
        Claim::Mine { .. }
    ));
    plain
        .create_doc(&plain_session, "a.txt", "")
        .await
        .expect("doc");
    fenced
        .create_doc(&fenced_session, "a.txt", "")
        .await
        .expect("doc");

    let (mut plain_times, mut fenced_times) = (Vec::new(), Vec::new());
    let mut rev = 0u64;
    while rev < ops as u64 {
        for (store, session, times) in [
            (&plain, &plain_session, &mut plain_times),
            (&fenced, &fenced_session, &mut fenced_times),
        ] {
            for i in rev..(rev + 500).min(ops as u64) {
                let mut op = OperationSeq::default();
                op.retain(i);
                op.insert("x");
                let started = Instant::now();
                store
                    .append_op(session, "a.txt", i + 1, &op, None)
                    .await
                    .expect("append");
                times.push(started.elapsed());
            }
        }
        rev += 500;
    }
    println!("## the fence's cost per stored op ({ops} ops each, one at a time)");
    println!("| | mean | p50 | p99 |");
    println!("|---|---|---|---|");
    for (what, times) in [
        ("unfenced", &mut plain_times),
        ("fenced", &mut fenced_times),
    ] {
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "| {what} | {:.1} µs | {:.1} µs | {:.1} µs |",
            mean.as_secs_f64() * 1e6,
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6
        );
    }
    let _ = fenced.leave().await;
}
