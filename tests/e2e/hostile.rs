//! Hostile clients: a flood of frames is paced without slowing anyone else,
//! an op that would grow a document past the hub's limit is refused with
//! the document left as it was, and connections beyond the limit are
//! refused without disturbing those already in.

use chorus_protocol::text::checksum;
use ropey::Rope;
use serde_json::json;

use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind};
use crate::support::hub::Hub;
use crate::support::hub_client::{hub_text, HubClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_paced_while_others_sync() {
    const FLOOD: u64 = 3000;
    let test = "a_flooding_client_is_paced";
    let hub = Hub::start_in_memory(test, &["--messages-per-second", "1000"]).await;
    let session = "flooded";
    let doc = "calm.txt";
    let a = Editor::start(EditorKind::VsCode, &hub, session, "a").await;
    let b = Editor::start(EditorKind::Helix, &hub, session, "b").await;
    a.open(doc, "calm\n");
    b.open(doc, "calm\n");
    assert_converged(&hub, session, doc, &[&a, &b]).await;

    let (mut flooder, _) = HubClient::join(&hub.url, session, "flooder").await;
    for nonce in 0..FLOOD {
        flooder
            .send_json(&json!({ "type": "ping", "nonce": nonce }))
            .await;
    }
    // While the hub works through the flood at its own pace, others type.
    for i in 0..10 {
        a.insert_after(doc, "calm", &format!(" a{i}"));
        b.insert_before(doc, "calm", &format!("b{i} "));
    }
    let text = assert_converged(&hub, session, doc, &[&a, &b]).await;
    assert!(text.contains("a9") && text.contains("b9 "), "{text:?}");

    // Nothing of the flood was dropped: every ping is answered, in order.
    let mut next = 0;
    while next < FLOOD {
        let frame = flooder.recv().await.expect("the flooder stays connected");
        if frame["type"] == "pong" {
            assert_eq!(frame["nonce"], next, "pongs in order");
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_past_the_document_limit_is_refused() {
    let test = "an_op_past_the_document_limit";
    let hub = Hub::start_in_memory(test, &["--max-document-chars", "100"]).await;
    let (mut client, _) = HubClient::join(&hub.url, "limits", "big").await;
    client.open("small.txt", "tiny").await;
    let huge = "x".repeat(200);
    client
        .send_json(&json!({ "type": "op", "doc": "small.txt", "rev": 0, "op": [4, huge] }))
        .await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "too_large", "{error}");
    let snapshot = client.expect_type("opened").await;
    assert_eq!(snapshot["text"], "tiny");
    // A small op still works, and the hub kept the text.
    client
        .send_json(&json!({ "type": "op", "doc": "small.txt", "rev": 0, "op": [4, "!"] }))
        .await;
    client.expect_type("ack").await;
    let (_, text) = hub_text(&hub.url, "limits", "small.txt")
        .await
        .expect("text");
    assert_eq!(text, "tiny!");
}

/// Issue 17: the cap used to be checked before the op was transformed, so
/// two inserts based on one revision, each under the cap, both got in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ops_cannot_together_pass_the_document_limit() {
    let test = "concurrent_ops_past_the_limit";
    let hub = Hub::start_in_memory(test, &["--max-document-chars", "1000"]).await;
    let (mut a, _) = HubClient::join(&hub.url, "limits", "a").await;
    let (mut b, _) = HubClient::join(&hub.url, "limits", "b").await;
    a.open("doc.txt", "").await;
    b.open("doc.txt", "").await;
    let insert =
        |ch: &str| json!({ "type": "op", "doc": "doc.txt", "rev": 0, "op": [ch.repeat(900)] });
    a.send_json(&insert("a")).await;
    a.expect_type("ack").await;
    b.send_json(&insert("b")).await;
    let error = b.expect_type("error").await;
    assert_eq!(error["code"], "too_large", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("1800"),
        "the message says how large it would be: {error}"
    );
    let snapshot = b.expect_type("opened").await;
    assert_eq!(snapshot["text"], "a".repeat(900));
    let (_, text) = hub_text(&hub.url, "limits", "doc.txt").await.expect("text");
    assert_eq!(text, "a".repeat(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_are_checked_and_a_mismatch_resyncs() {
    let hub = Hub::start("checksums_are_checked").await;
    let (mut client, _) = HubClient::join(&hub.url, "sums", "c").await;
    let opened = client.open("f.txt", "héllo\r\n").await;
    let rev = opened["rev"].as_u64().expect("rev");
    let right = checksum(&Rope::from_str("héllo\r\n"));
    client
        .send_json(&json!({ "type": "checksum", "doc": "f.txt", "rev": rev, "hash": right }))
        .await;
    // A match is not answered: the next frame is the pong.
    client
        .send_json(&json!({ "type": "ping", "nonce": 7 }))
        .await;
    let next = client.recv().await.expect("a frame");
    assert_eq!(next["type"], "pong", "{next}");

    client
        .send_json(
            &json!({ "type": "checksum", "doc": "f.txt", "rev": rev, "hash": "0000000000000000" }),
        )
        .await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "checksum_mismatch", "{error}");
    let snapshot = client.expect_type("opened").await;
    assert_eq!(snapshot["text"], "héllo\r\n");
}

/// Beyond `--max-connections`, a new connection is refused with 503 before
/// any WebSocket work; those already in keep working, and a freed slot is
/// usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_and_others_carry_on() {
    let test = "connections_beyond_the_limit";
    let hub = Hub::start_in_memory(test, &["--max-connections", "3"]).await;
    let (mut first, _) = HubClient::join(&hub.url, "crowd", "first").await;
    let (mut second, _) = HubClient::join(&hub.url, "crowd", "second").await;
    let (third, _) = HubClient::join(&hub.url, "crowd", "third").await;
    let refused = tokio_tungstenite::connect_async(hub.url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("a fourth connection must be refused with 503: {other:?}"),
    }
    first.ping(1).await.expect("the first still answers");
    second.ping(2).await.expect("the second still answers");
    third.close().await;
    // The slot is released when the hub notices the close.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(hub.url.as_str()).await {
            Ok(_) => break,
            Err(err) => assert!(
                tokio::time::Instant::now() < deadline,
                "the freed slot never became usable: {err}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    first.ping(3).await.expect("the first still answers");
}

/// A document whose text fits the frame limit but whose `open` does not
/// (JSON escapes every quote and backslash) used to be refused by the hub
/// with only a line in the proxy's log, and never synced. The proxy now
/// measures the frame it would send and tells the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_too_large_once_escaped_is_refused_with_a_message() {
    let hub = Hub::start_in_memory("a_document_too_large_once_escaped", &[]).await;
    let a = Editor::start(EditorKind::VsCode, &hub, "big", "a").await;
    // 700,000 bytes of text, 1,400,000 once every quote is escaped.
    let text = "\"".repeat(700_000);
    a.open("quotes.txt", &text);
    let shown = a
        .wait_message(
            "window/showMessage",
            "too large to share",
            std::time::Duration::from_secs(10),
        )
        .await;
    assert!(
        shown.to_string().contains("quotes.txt"),
        "the message names the file: {shown}"
    );
}

/// Issue 14: a hub started with a larger `--max-message-bytes` says so in
/// its welcome, and the proxy shares documents up to it (it used to cap
/// every document at the default, whatever the hub took). A document over
/// the default but under the hub's limit is shared and edited both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_with_a_larger_frame_limit_takes_larger_documents() {
    let limit = (8 << 20).to_string();
    let hub = Hub::start_in_memory(
        "a_hub_with_a_larger_frame_limit",
        &["--max-message-bytes", &limit],
    )
    .await;
    let a = Editor::start(EditorKind::VsCode, &hub, "big", "a").await;
    let b = Editor::start(EditorKind::Neovim, &hub, "big", "b").await;
    // 3 MB: three times the default frame limit.
    let text = "value = compute(1)\n".repeat(160_000);
    a.open("big.py", &text);
    crate::support::assert_converged(&hub, "big", "big.py", &[&a]).await;
    b.open("big.py", &text);
    crate::support::assert_converged(&hub, "big", "big.py", &[&a, &b]).await;
    a.edit("big.py", 0, 0, "# from a\n");
    b.edit_with("big.py", |buffer| {
        Some((buffer.len(), buffer.len(), "# from b\n".to_owned()))
    });
    let agreed = crate::support::assert_converged(&hub, "big", "big.py", &[&a, &b]).await;
    assert!(
        agreed.starts_with("# from a\nvalue") && agreed.ends_with("(1)\n# from b\n"),
        "{:?} … {:?}",
        &agreed[..40],
        &agreed[agreed.len() - 40..]
    );
    assert!(
        a.client()
            .notifications("window/showMessage")
            .iter()
            .all(|m| !m.to_string().contains("too large")),
        "nothing was refused"
    );
}

/// Issue 17: four connections that complete the upgrade and say nothing
/// used to hold `--max-connections 4` forever. Now each is closed when
/// its time to say hello is up, with an error saying so, and others get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_everyone_out() {
    let test = "silent_connections";
    let args = ["--max-connections", "4", "--hello-timeout-secs", "1"];
    let hub = Hub::start_in_memory(test, &args).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(HubClient::connect(&hub.url).await);
    }
    assert!(
        tokio_tungstenite::connect_async(hub.url.as_str())
            .await
            .is_err(),
        "all four slots are taken for now"
    );
    for client in &mut silent {
        let error = client.expect_type("error").await;
        assert_eq!(error["code"], "not_joined", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("hello"),
            "{error}"
        );
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if tokio_tungstenite::connect_async(hub.url.as_str())
            .await
            .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slots are freed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_client, welcome) = HubClient::join(&hub.url, "open-again", "late").await;
    assert_eq!(welcome["type"], "welcome");
}

/// Issue 17: a peer that vanishes without closing (here: one that stops
/// reading, so it never answers the hub's pings) is dropped once silent
/// for `--idle-timeout-secs`, and the others see it leave instead of
/// keeping a ghost participant. Those who keep reading stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_silent_leaves_its_session() {
    let test = "silent_peer";
    let hub = Hub::start_in_memory(test, &["--idle-timeout-secs", "1.5"]).await;
    let (mut alive, _) = HubClient::join(&hub.url, "ghosts", "alive").await;
    let (_gone, welcome) = HubClient::join(&hub.url, "ghosts", "gone").await;
    let gone_id = welcome["clientId"].clone();
    let left = alive.expect_type("left").await;
    assert_eq!(left["clientId"], gone_id, "{left}");
    // A client that keeps talking stays in, well past the timeout.
    for nonce in 0..6 {
        alive
            .send_json(&json!({ "type": "ping", "nonce": nonce }))
            .await;
        let pong = alive.expect_type("pong").await;
        assert_eq!(pong["nonce"], nonce);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Issue 17: a client that stops reading and keeps sending cheap requests
/// answered with a whole document (here, wrong checksums) used to make the
/// hub queue a copy of the document per request, up to 4096 of them. The
/// queue is bounded in bytes now: the client is dropped as too slow, the
/// hub's memory stays flat, and everyone else carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_cannot_make_the_hub_hoard_copies() {
    const DOC_BYTES: usize = 500 * 1024;
    const REQUESTS: usize = 400; // 200 MB of answers if all were queued
    let hub = Hub::start("stops_reading").await;
    let (mut other, _) = HubClient::join(&hub.url, "hoard", "other").await;
    let big = "y".repeat(DOC_BYTES);
    other.open("big.txt", &big).await;
    let (mut hoarder, _) = HubClient::join(&hub.url, "hoard", "hoarder").await;
    hoarder.open("big.txt", "").await;
    let rss_before = hub.rss_kib();
    for _ in 0..REQUESTS {
        let wrong =
            json!({ "type": "checksum", "doc": "big.txt", "rev": 0, "hash": "0000000000000000" });
        if hoarder.try_send_json(&wrong).await.is_err() {
            break; // dropped already
        }
    }
    // The hub answers as fast as it can (slowly on a loaded machine: each
    // answer is a 500 KB snapshot); at most its byte bound of them waits
    // before the hoarder is dropped. Memory is measured then.
    let mut grown_mib = 0;
    let dropped = crate::support::eventually(std::time::Duration::from_secs(60), || {
        grown_mib = grown_mib.max(hub.rss_kib().saturating_sub(rss_before) / 1024);
        hub.log_tail(400).contains("dropping participant")
    })
    .await;
    assert!(dropped, "never dropped: {}", hub.log_tail(40));
    assert!(
        grown_mib < 64,
        "the hub grew by {grown_mib} MiB holding answers for a client that does not read"
    );
    other
        .ping(1)
        .await
        .expect("the others are served as before");
}

/// Issue 17: PostgreSQL refuses U+0000 in text, so a NUL in a document or
/// in a proxy's `instance` used to stop the session (its storage failed)
/// and the proxies' re-sends looped. Now no hub takes NUL whatever its
/// storage: a raw frame holding one is refused with a message, and an
/// editor's NUL reaches the session as U+FFFD, its buffer healed to match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_never_reaches_storage_and_the_session_goes_on() {
    let test = "nul_never_reaches_storage";
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let session = format!("nul-{}-{nanos}", std::process::id());
    let hub = Hub::start_with(
        test,
        "hub.log",
        &["--listen", "127.0.0.1:0", "--database", &url, "--open"],
    )
    .await;
    let (mut raw, _) = HubClient::join(&hub.url, &session, "raw").await;
    raw.open("a.txt", "ab").await;
    raw.send_json(&json!({ "type": "op", "doc": "a.txt", "rev": 0, "op": [1, "\u{0}", 1] }))
        .await;
    let error = raw.expect_type("error").await;
    assert_eq!(error["code"], "bad_message", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("U+0000"),
        "{error}"
    );

    let a = Editor::start(EditorKind::VsCode, &hub, &session, "a").await;
    let b = Editor::start(EditorKind::Neovim, &hub, &session, "b").await;
    a.open("a.txt", "ab");
    b.open("a.txt", "ab");
    assert_converged(&hub, &session, "a.txt", &[&a, &b]).await;
    a.edit("a.txt", 1, 1, "\u{0}");
    b.edit("a.txt", 2, 2, "!");
    let text = assert_converged(&hub, &session, "a.txt", &[&a, &b]).await;
    assert_eq!(text, "a\u{fffd}b!");
    raw.send_json(&json!({ "type": "ping", "nonce": 3 })).await;
    raw.expect_type("pong").await;
    let log = hub.log_tail(400);
    assert!(
        !log.contains("storage failed") && !log.contains("session stopped"),
        "{log}"
    );
}

/// Issue 17: every session ever joined used to stay in memory until the
/// hub restarted. A stored session with nobody in it now leaves memory
/// after `--unload-idle-secs`, and the next join loads it again, every
/// acknowledged edit there; `--max-sessions` bounds those held at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_leave_memory_and_come_back_whole() {
    let test = "idle_sessions_unload";
    let data = crate::support::hub::log_dir(test).join("data");
    let data = data.to_str().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--open",
        "--unload-idle-secs",
        "0.5",
        "--max-sessions",
        "2",
    ];
    let hub = Hub::start_with(test, "hub.log", &args).await;
    let (mut a, _) = HubClient::join(&hub.url, "kept", "a").await;
    a.open("k.txt", "kept").await;
    a.send_json(&json!({ "type": "op", "doc": "k.txt", "rev": 0, "op": [4, "!"] }))
        .await;
    a.expect_type("ack").await;
    let (_b, _) = HubClient::join(&hub.url, "second", "b").await;
    // Two sessions are held: a third is refused while both are in use.
    let mut c = HubClient::connect(&hub.url).await;
    c.send_json(&json!({ "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION, "session": "third", "name": "c" }))
        .await;
    let refused = c.expect_type("error").await;
    assert_eq!(refused["code"], "overloaded", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("2 sessions"),
        "{refused}"
    );

    drop(a);
    wait_unloaded(&hub, "kept").await;
    // Room again for a third session; once it is idle too, "kept" comes
    // back whole.
    let (c, welcome) = HubClient::join(&hub.url, "third", "c").await;
    assert_eq!(welcome["type"], "welcome");
    drop(c);
    wait_unloaded(&hub, "third").await;
    let (_, text) = hub_text(&hub.url, "kept", "k.txt").await.expect("text");
    assert_eq!(text, "kept!");
}

async fn wait_unloaded(hub: &Hub, session: &str) {
    let line = format!("session unloaded from memory (idle) session={session}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !hub.log_tail(400).contains(&line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            hub.log_tail(50)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Issue 17: what participants send reaches the hub's log escaped, one
/// event a line, and names (shown in every editor) hold no control
/// characters at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_cannot_forge_log_lines_or_names() {
    let hub = Hub::start("forged_logs").await;
    let mut eve = HubClient::connect(&hub.url).await;
    let hello = |name: &str| json!({ "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION, "session": "logs", "name": name });
    eve.send_json(&hello("eve\n2026-12-05T00:00:00Z INFO admin"))
        .await;
    let refused = eve.expect_type("error").await;
    assert_eq!(refused["code"], "bad_message", "{refused}");
    eve.send_json(&hello("eve")).await;
    eve.expect_type("welcome").await;
    eve.open("notes\nFORGED LINE.txt", "x").await;
    // Refused, which the hub logs with the document's path.
    eve.send_json(&json!({ "type": "op", "doc": "notes\nFORGED LINE.txt", "rev": 9, "op": [1] }))
        .await;
    eve.expect_type("error").await;
    let log = hub.log_tail(200);
    assert!(
        !log.lines().any(|line| line.starts_with("FORGED LINE")),
        "a path's line break started a line of its own:\n{log}"
    );
    assert!(log.contains("notes\\x0aFORGED LINE.txt"), "{log}");
}

/// Issue 17: catching up by ops is for small gaps; a history larger than
/// one message is not sent (the hub would build a frame the proxy's limit
/// may refuse, and the text is cheaper): the answer carries the text only,
/// and the proxy merges by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_larger_than_a_message_is_answered_with_the_text() {
    let hub = Hub::start_in_memory("large_history", &["--max-message-bytes", "65536"]).await;
    let (mut a, _) = HubClient::join(&hub.url, "hist", "a").await;
    a.open("h.txt", "").await;
    let line = "x".repeat(1000);
    for rev in 0..100u64 {
        let parts = if rev == 0 {
            json!([line])
        } else {
            json!([rev * 1000, line])
        };
        let op = json!({ "type": "op", "doc": "h.txt", "rev": rev, "op": parts });
        a.send_json(&op).await;
        a.expect_type("ack").await;
    }
    let (mut b, _) = HubClient::join(&hub.url, "hist", "b").await;
    b.send_json(&json!({ "type": "open", "doc": "h.txt", "text": "", "since": 0 }))
        .await;
    let opened = b.expect_type("opened").await;
    assert!(
        opened.get("history").is_none_or(|h| h.is_null()),
        "no 100 KB history in one answer"
    );
    assert_eq!(opened["text"].as_str().map(str::len), Some(100_000));
    // A small gap is still caught up by ops.
    b.send_json(&json!({ "type": "open", "doc": "h.txt", "text": "", "since": 99 }))
        .await;
    let opened = b.expect_type("opened").await;
    assert_eq!(
        opened["history"].as_array().map(Vec::len),
        Some(1),
        "{}",
        opened["rev"]
    );
}
