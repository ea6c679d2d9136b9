//! Issue 18: how long a session is unavailable when the hub holding it is
//! killed (`kill -9`), over repeated kills.
//!
//! Three hubs on the PostgreSQL database in `CHORUS_TEST_POSTGRES` behind
//! HAProxy with `deploy/haproxy.cfg` (ADR 0009), `--sessions` sessions,
//! each with a document. Each round kills the hub that holds session 0
//! (`session_owners` in the database says which), then every session whose
//! hub it was is probed through the balancer as a proxy would reconnect,
//! but at once and every 50 ms: connect to `/ws/SESSION`, say hello, open
//! the document, send one op, wait for its ack. The time from the kill to
//! the first ack is that session's failover time: the balancer noticing
//! (health checks every 500 ms), another hub claiming once the dead one's
//! lease lapses (3 s), loading the session and storing the op. Then the
//! killed hub is restarted on its port and the next round begins.
//! Real proxies retry with a backoff from 100 ms doubling to 5 s, which
//! adds to this.
//!
//! Run: `cargo bench --bench failover [-- --rounds 10 --sessions 12]`.
//! Without `--bench` it does nothing.

#[path = "common/hub.rs"]
mod hub;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("failover benchmark: run it with `cargo bench --bench failover`");
        return;
    }
    let option = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|at| args.get(at + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, sessions) = (option("--rounds", 10), option("--sessions", 12));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(rounds, sessions));
}

/// One probe: connect, hello, open, one op, its ack.
async fn probe(url: &str, session: &str) -> Result<(), String> {
    let target = format!("{url}ws/{session}");
    let (mut ws, _) = tokio_tungstenite::connect_async(target.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let send = |value: Value| Message::text(value.to_string());
    ws.send(send(
        json!({ "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
                         "session": session, "name": "probe" }),
    ))
    .await
    .map_err(|e| e.to_string())?;
    ws.send(send(json!({ "type": "open", "doc": "f.txt", "text": "" })))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let frame = ws
            .next()
            .await
            .ok_or("closed")?
            .map_err(|e| e.to_string())?;
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        match value["type"].as_str() {
            Some("opened") => {
                let rev = value["rev"].as_u64().unwrap_or(0);
                let len = value["text"].as_str().unwrap_or("").chars().count();
                let op = if len == 0 {
                    json!(["x"])
                } else {
                    json!([len, "x"])
                };
                ws.send(send(
                    json!({ "type": "op", "doc": "f.txt", "rev": rev, "op": op }),
                ))
                .await
                .map_err(|e| e.to_string())?;
            }
            Some("ack") => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            Some("error") => return Err(value.to_string()),
            _ => {}
        }
    }
}

/// Which hub (index into `addresses`) holds each session, per the database.
async fn holders(
    db: &tokio_postgres::Client,
    sessions: &[String],
    addresses: &[String],
) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for session in sessions {
        let row = db
            .query_opt(
                "SELECT h.address FROM session_owners o JOIN hubs h ON h.id = o.hub WHERE o.session = $1",
                &[session],
            )
            .await
            .expect("query");
        let address: Option<String> = row.map(|r| r.get(0));
        out.push(address.and_then(|a| {
            addresses
                .iter()
                .position(|mine| a.trim_end_matches('/').ends_with(mine.as_str()))
        }));
    }
    out
}

async fn bench(rounds: usize, session_count: usize) {
    let url = std::env::var("CHORUS_TEST_POSTGRES").expect("CHORUS_TEST_POSTGRES=postgres://…");
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    let dir = std::env::temp_dir().join(format!("chorus-bench-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log dir");
    let mut service = hub::start_service(3, &[], &dir).await;
    let run = std::process::id();
    let sessions: Vec<String> = (0..session_count)
        .map(|i| format!("failover-{run}-{i}"))
        .collect();
    for session in &sessions {
        probe(&service.url, session).await.expect("first probe");
    }
    let mut times = Vec::new();
    for round in 0..rounds {
        let owners = holders(&db, &sessions, &service.addresses).await;
        let Some(victim) = owners[0] else {
            panic!("session 0 has no live holder");
        };
        let affected: Vec<&String> = sessions
            .iter()
            .zip(&owners)
            .filter(|(_, owner)| **owner == Some(victim))
            .map(|(session, _)| session)
            .collect();
        let killed = Instant::now();
        service.kill(victim).await;
        let probes = affected.iter().map(|session| {
            let url = service.url.clone();
            let session = (*session).clone();
            async move {
                loop {
                    let attempt =
                        tokio::time::timeout(Duration::from_secs(15), probe(&url, &session));
                    if let Ok(Ok(())) = attempt.await {
                        return killed.elapsed();
                    }
                    assert!(
                        killed.elapsed() < Duration::from_secs(60),
                        "{session} never came back"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let round_times = futures_util::future::join_all(probes).await;
        println!(
            "round {round}: killed hub {} holding {} sessions; back after {:?}",
            victim + 1,
            affected.len(),
            round_times
                .iter()
                .map(|t| format!("{:.2} s", t.as_secs_f64()))
                .collect::<Vec<_>>()
        );
        times.extend(round_times);
        service
            .restart(victim, &dir.join(format!("hub{}-{round}.log", victim + 1)))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!("\n## failover: kill -9 of the holding hub → the session's next op acknowledged");
    println!("{} sessions failed over in {rounds} kills", times.len());
    println!("| min | p50 | p90 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
        times[0].as_secs_f64(),
        at(0.5).as_secs_f64(),
        at(0.9).as_secs_f64(),
        times.last().unwrap().as_secs_f64()
    );
}
