//! Garbage at the hub over a raw WebSocket: every bad frame gets an
//! `error` frame with its stable code and the connection stays usable,
//! while two real proxies in the same session keep typing and converging.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::editor::EditorKind;
use crate::support::{assert_converged, Editor, Hub, HubClient};

const DOC: &str = "shared.txt";
const INITIAL: &str = "the shared document\n";

/// A frame to send and the error code it must earn.
struct Case {
    what: &'static str,
    frame: Frame,
    code: &'static str,
}

enum Frame {
    Text(String),
    Json(Value),
    Binary(Vec<u8>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_while_the_session_keeps_syncing() {
    let hub = Hub::start("bad_input_is_answered_while_the_session_keeps_syncing").await;
    let session = "garbage";
    let a = Arc::new(Editor::start(EditorKind::VsCode, &hub, session, "a").await);
    let b = Arc::new(Editor::start(EditorKind::Neovim, &hub, session, "b").await);
    a.open(DOC, INITIAL);
    b.open(DOC, INITIAL);
    assert_converged(&hub, session, DOC, &[&a, &b]).await;

    // The two editors type throughout.
    let typists: Vec<_> = [(a.clone(), 0x4E00u32), (b.clone(), 0x20000u32)]
        .into_iter()
        .enumerate()
        .map(|(index, (editor, base))| {
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(index as u64);
                for k in 0..40 {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(1..=8))).await;
                    let c = char::from_u32(base + k).expect("valid");
                    editor.edit_with(DOC, |buffer| {
                        let at = rng.random_range(0..=buffer.len());
                        Some((at, at, c.to_string()))
                    });
                }
            })
        })
        .collect();

    let mut failures = Vec::new();
    failures.extend(garbage_from_a_participant(&hub, session).await);
    failures.extend(garbage_before_joining(&hub).await);
    failures.extend(revision_older_than_the_history(&hub, session).await);

    for typist in typists {
        typist.await.expect("typing task");
    }
    let text = assert_converged(&hub, session, DOC, &[&a, &b]).await;
    let typed = text.chars().filter(|c| !INITIAL.contains(*c)).count();
    assert_eq!(typed, 80, "every keystroke survives the garbage: {text:?}");
    assert!(
        failures.is_empty(),
        "wrong answers to bad input:\n{}\nhub log:\n{}",
        failures.join("\n"),
        hub.log_tail(30)
    );
}

/// Bad frames from a client that has joined the session and opened the
/// document the editors are typing in.
async fn garbage_from_a_participant(hub: &Hub, session: &str) -> Vec<String> {
    let (mut raw, _) = HubClient::join(&hub.url, session, "garbage").await;
    let opened = raw.open(DOC, "").await;
    let rev = opened["rev"].as_u64().expect("opened.rev");
    let len = opened["text"]
        .as_str()
        .expect("opened.text")
        .chars()
        .count();
    let oversized = format!(
        r#"{{"type":"open","doc":"big.txt","text":"{}"}}"#,
        "x".repeat(chorus_protocol::wire::DEFAULT_MAX_MESSAGE_BYTES + 1024)
    );
    let cases = vec![
        Case {
            what: "malformed JSON",
            frame: Frame::Text(r#"{"type": "op", "doc": oops"#.into()),
            code: "bad_json",
        },
        Case {
            what: "unknown message type",
            frame: Frame::Json(json!({ "type": "dance", "doc": DOC })),
            code: "unknown_type",
        },
        Case {
            what: "op without its fields",
            frame: Frame::Json(json!({ "type": "op", "doc": DOC })),
            code: "bad_message",
        },
        Case {
            what: "op whose base length is wrong for its revision",
            frame: Frame::Json(
                json!({ "type": "op", "doc": DOC, "rev": rev, "op": [len + 5, "x"] }),
            ),
            code: "invalid_op",
        },
        Case {
            what: "op based on a future revision",
            frame: Frame::Json(
                json!({ "type": "op", "doc": DOC, "rev": rev + 1_000_000, "op": [len, "x"] }),
            ),
            code: "invalid_op",
        },
        Case {
            what: "text frame over 1 MiB",
            frame: Frame::Text(oversized),
            code: "too_large",
        },
        Case {
            what: "binary frame",
            frame: Frame::Binary(b"{\"type\":\"ping\"}".to_vec()),
            code: "binary_frame",
        },
        Case {
            what: "path escaping the workspace",
            frame: Frame::Json(json!({ "type": "open", "doc": "../outside.txt", "text": "" })),
            code: "bad_path",
        },
        Case {
            what: "path with .. inside",
            frame: Frame::Json(json!({ "type": "open", "doc": "src/../../x.txt", "text": "" })),
            code: "bad_path",
        },
        Case {
            what: "absolute path",
            frame: Frame::Json(json!({ "type": "open", "doc": "/etc/passwd", "text": "" })),
            code: "bad_path",
        },
        Case {
            what: "op on a document never opened",
            frame: Frame::Json(
                json!({ "type": "op", "doc": "never/opened.txt", "rev": 0, "op": ["x"] }),
            ),
            code: "unknown_document",
        },
        Case {
            what: "second hello",
            frame: Frame::Json(
                json!({ "type": "hello", "protocol": 1, "session": session, "name": "again" }),
            ),
            code: "already_joined",
        },
    ];
    let mut failures = Vec::new();
    for (nonce, case) in cases.into_iter().enumerate() {
        send(&mut raw, case.frame).await;
        if let Err(err) = expect_error(&mut raw, case.code).await {
            failures.push(format!("{}: {err}", case.what));
        }
        // The hub keeps the connection after answering.
        if let Err(err) = raw.ping(nonce as u64).await {
            failures.push(format!(
                "{}: connection unusable afterwards: {err}",
                case.what
            ));
            break;
        }
    }
    raw.close().await;
    failures
}

/// Bad handshakes, each on a fresh connection.
async fn garbage_before_joining(hub: &Hub) -> Vec<String> {
    let cases = [
        Case {
            what: "message before hello",
            frame: Frame::Json(json!({ "type": "open", "doc": DOC, "text": "" })),
            code: "not_joined",
        },
        Case {
            what: "wrong protocol version",
            frame: Frame::Json(
                json!({ "type": "hello", "protocol": 999, "session": "garbage", "name": "old" }),
            ),
            code: "incompatible_protocol",
        },
        Case {
            what: "invalid session id",
            frame: Frame::Json(
                json!({ "type": "hello", "protocol": 1, "session": "no spaces!", "name": "x" }),
            ),
            code: "bad_session",
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let mut raw = HubClient::connect(&hub.url).await;
        send(&mut raw, case.frame).await;
        if let Err(err) = expect_error(&mut raw, case.code).await {
            failures.push(format!("{}: {err}", case.what));
        }
        raw.close().await;
    }
    failures
}

/// An op based on a revision the hub no longer keeps history for gets
/// `stale_revision` (the client must resync). The hub keeps 2,000 ops per
/// document by default; this fills a scratch document until revision 0 is
/// gone, checking with a rev-0 op after every batch (accepted while it is
/// still in the history).
async fn revision_older_than_the_history(hub: &Hub, session: &str) -> Vec<String> {
    const BATCH: u64 = 200;
    const GIVE_UP_AFTER: u64 = 60_000;
    let (mut raw, _) = HubClient::join(&hub.url, session, "history").await;
    let doc = "scratch/history.txt";
    let opened = raw.open(doc, "").await;
    let mut rev = opened["rev"].as_u64().expect("opened.rev");
    let mut len = opened["text"]
        .as_str()
        .expect("opened.text")
        .chars()
        .count() as u64;
    while rev < GIVE_UP_AFTER {
        // Pipelined: this client is the only writer, so op i lands on rev + i.
        for i in 0..BATCH {
            let op = if len + i == 0 {
                json!(["x"])
            } else {
                json!([len + i, "x"])
            };
            raw.send_json(&json!({ "type": "op", "doc": doc, "rev": rev + i, "op": op }))
                .await;
        }
        for _ in 0..BATCH {
            match raw.wait_type("ack").await {
                Ok(ack) => rev = ack["rev"].as_u64().unwrap_or(rev + 1),
                Err(err) => return vec![format!("filling the history: {err}")],
            }
        }
        len += BATCH;
        raw.send_json(&json!({ "type": "op", "doc": doc, "rev": 0, "op": ["y"] }))
            .await;
        let answer = loop {
            match raw.recv().await {
                Ok(frame) if frame["type"] == "ack" || frame["type"] == "error" => break frame,
                Ok(_) => continue,
                Err(err) => return vec![format!("rev-0 op after {rev} ops: {err}")],
            }
        };
        if answer["type"] == "ack" {
            rev = answer["rev"].as_u64().unwrap_or(rev + 1);
            len += 1;
            continue;
        }
        raw.close().await;
        return if answer["code"] == "stale_revision" {
            Vec::new()
        } else {
            vec![format!(
                "op based on revision 0 after {rev} ops: expected stale_revision, got {answer}"
            )]
        };
    }
    vec![format!("revision 0 was still usable after {rev} ops")]
}

async fn send(raw: &mut HubClient, frame: Frame) {
    match frame {
        Frame::Text(text) => raw.send_text(text).await,
        Frame::Json(value) => raw.send_json(&value).await,
        Frame::Binary(bytes) => raw.send_binary(bytes).await,
    }
}

/// Reads frames (skipping broadcasts) until an `error`, and checks its code.
async fn expect_error(raw: &mut HubClient, code: &str) -> Result<(), String> {
    loop {
        let frame = raw.recv().await?;
        match frame["type"].as_str() {
            Some("error") if frame["code"] == code => {
                return if frame["message"].as_str().is_some_and(|m| !m.is_empty()) {
                    Ok(())
                } else {
                    Err(format!("error without a human message: {frame}"))
                };
            }
            Some("error") => return Err(format!("expected code {code:?}, got {frame}")),
            Some("remote" | "joined" | "left" | "cursor") => continue,
            _ => return Err(format!("expected an error {code:?}, got {frame}")),
        }
    }
}

/// A participant that stops reading must be dropped, not allowed to stall
/// the session: another client floods a document both have open, every op
/// is still acknowledged, the silent one ends up disconnected, and an
/// editor pair in the same session keeps syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_stops_reading_is_dropped() {
    const OPS: u64 = 8000;
    const BATCH: u64 = 200;
    // 8000 × 4 KB broadcasts: far more than the per-connection queue and
    // the socket buffers can hold for a client that never reads.
    const CHUNK: usize = 4000;
    // This test floods on purpose (32 M characters) to overrun the silent
    // reader: lift pacing and the document cap (both tested in hostile.rs)
    // out of its way.
    let mut hub = Hub::start_in_memory(
        "a_participant_that_stops_reading_is_dropped",
        &[
            "--messages-per-second",
            "1000000",
            "--max-document-chars",
            "100000000",
        ],
    )
    .await;
    let session = "flood";
    let doc = "flood.txt";
    let a = Editor::start(EditorKind::Helix, &hub, session, "a").await;
    let b = Editor::start(EditorKind::VsCode, &hub, session, "b").await;
    a.open(DOC, INITIAL);
    b.open(DOC, INITIAL);
    assert_converged(&hub, session, DOC, &[&a, &b]).await;

    let (mut silent, _) = HubClient::join(&hub.url, session, "silent").await;
    silent.open(doc, "").await;
    let (mut writer, _) = HubClient::join(&hub.url, session, "writer").await;
    let opened = writer.open(doc, "").await;
    let mut rev = opened["rev"].as_u64().expect("opened.rev");
    let chunk = "x".repeat(CHUNK);
    let started = tokio::time::Instant::now();
    let mut len = 0u64;
    while rev < OPS {
        for i in 0..BATCH {
            let op = if len == 0 && i == 0 {
                json!([chunk])
            } else {
                json!([len + i * CHUNK as u64, chunk])
            };
            writer
                .send_json(&json!({ "type": "op", "doc": doc, "rev": rev + i, "op": op }))
                .await;
        }
        for _ in 0..BATCH {
            let ack = writer.wait_type("ack").await.unwrap_or_else(|err| {
                panic!(
                    "flooding stalled after {rev} ops: {err}; hub {}",
                    hub.exit_status()
                )
            });
            rev = ack["rev"].as_u64().expect("ack.rev");
        }
        len += BATCH * CHUNK as u64;
    }
    eprintln!(
        "{OPS} ops of {CHUNK} characters acknowledged in {:?}",
        started.elapsed()
    );

    // The silent client finds its connection closed once it reads what
    // was buffered before the hub gave up on it.
    let mut frames = 0u64;
    let dropped = loop {
        match silent.recv().await {
            Ok(_) => frames += 1,
            Err(err) => break err,
        }
    };
    assert!(
        frames < OPS,
        "the silent client received all {frames} frames: the hub buffered everything"
    );
    if dropped.contains("no frame from the hub within") {
        // Still connected: say what the hub makes of it now.
        silent
            .send_json(&json!({ "type": "op", "doc": doc, "rev": rev, "op": [len, "!"] }))
            .await;
        let answer = silent.recv().await;
        panic!(
            "the silent client was not disconnected: after {frames} frames nothing came for \
             10 s, yet the connection is open; an op sent now gets {answer:?}\nhub log:\n{}",
            hub.log_tail(10)
        );
    }

    a.insert_after(DOC, "shared", " still");
    b.insert_before(DOC, "the", "> ");
    let text = assert_converged(&hub, session, DOC, &[&a, &b]).await;
    assert_eq!(text, "> the shared still document\n");
}

/// Issue 17: Docker reads a limit of 0 as "no limit", so `--run-cpus 0` or
/// `--run-memory-mib 0` used to start a hub whose runs had none. Every
/// limit flag now refuses 0, saying why, before anything starts.
#[test]
fn a_zero_run_limit_is_refused_not_taken_as_unlimited() {
    for (flag, needle) in [
        ("--run-cpus", "0 would mean no limit"),
        ("--run-memory-mib", "not in 6.."),
        ("--run-pids", "not in 1.."),
        ("--run-timeout-secs", "not in 1.."),
        ("--run-output-bytes", "0 would mean no limit"),
        ("--run-compile-timeout-secs", "not in 1.."),
        ("--run-build-memory-mib", "not in 6.."),
        ("--run-cache-mib", "not in 1.."),
    ] {
        let out = std::process::Command::new(crate::support::hub::chorus_bin())
            .args([
                "hub",
                "--in-memory",
                "--open",
                "--listen",
                "127.0.0.1:0",
                flag,
                "0",
            ])
            .output()
            .expect("run chorus hub");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} 0 was accepted");
        assert!(
            stderr.contains(flag) && stderr.contains(needle),
            "{flag}: {stderr}"
        );
    }
}

/// Issue 18: an engine the hub could never use is refused at start, saying
/// what is wrong with it, rather than left out of the pool in silence.
#[test]
fn a_docker_engine_that_cannot_make_sense_is_refused() {
    for (args, needle) in [
        (
            vec!["--docker-engine", "far=tcp://127.0.0.1:2376"],
            "needs tls-ca, tls-cert and tls-key",
        ),
        (
            vec!["--docker-engine", "x=unix://relative.sock"],
            "needs an absolute path",
        ),
        (
            vec!["--docker-engine", "x=unix:///run/x.sock,capacity=0"],
            "not a positive whole number",
        ),
        (
            vec!["--docker-engine", "local=unix:///run/x.sock"],
            "two Docker engines are named local (the local engine's name",
        ),
        (
            vec![
                "--docker-engine",
                "far=tcp://127.0.0.1:2376,tls-ca=/nonexistent/ca.pem,tls-cert=/nonexistent/c.pem,tls-key=/nonexistent/k.pem",
            ],
            "tls-ca /nonexistent/ca.pem: cannot be read",
        ),
        (vec!["--no-local-docker"], "--docker-engine"),
    ] {
        let out = std::process::Command::new(crate::support::hub::chorus_bin())
            .args(["hub", "--in-memory", "--open", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("run chorus hub");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
