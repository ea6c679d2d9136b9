//! Operations (issue 18 item 5): `GET /metrics` moves with what the hub
//! does.

use serde_json::json;

use crate::support::hub::{log_dir, Hub};
use crate::support::hub_client::{http_get, HubClient};

/// The value of one series (`name{labels}`) in a Prometheus exposition.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {name} in /metrics:\n{text}"))
}

async fn scrape(hub: &Hub) -> String {
    let (status, body) = http_get(hub.port, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_sessions_edits_refusals_and_drops() {
    let test = "metrics_follow_the_hub";
    let data = log_dir(&format!("{test}-data"));
    let data_arg = data.to_string_lossy().into_owned();
    let hub = Hub::start_with(
        test,
        "hub.log",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            &data_arg,
            "--open",
            "--no-runs",
            // The transport's hard limit is 16 times this: 1 MiB.
            "--max-message-bytes",
            "65536",
        ],
    )
    .await;
    let session = "metrics-team";
    let doc = "notes.txt";
    let (mut a, _) = HubClient::join(&hub.url, session, "ada").await;
    let (mut b, _) = HubClient::join(&hub.url, session, "bob").await;
    a.open(doc, "").await;
    b.open(doc, "").await;

    const OPS: u64 = 6;
    for rev in 0..OPS {
        let op = if rev == 0 {
            json!(["x"])
        } else {
            json!([rev, "x"])
        };
        a.send_json(&json!({ "type": "op", "doc": doc, "rev": rev, "op": op, "seq": rev + 1 }))
            .await;
        let ack = a.expect_type("ack").await;
        assert_eq!(ack["rev"], rev + 1, "{ack}");
    }
    // A frame that is not JSON is refused; the connection stays.
    a.send_text("{ not json".into()).await;
    let refused = a.wait_type("error").await.expect("an error frame");
    assert_eq!(refused["code"], "bad_json", "{refused}");
    // A copy that disagrees with the hub's is repaired with its text.
    b.send_json(&json!({ "type": "checksum", "doc": doc, "rev": OPS, "hash": "0" }))
        .await;
    let mismatch = b.wait_type("error").await.expect("an error frame");
    assert_eq!(mismatch["code"], "checksum_mismatch", "{mismatch}");
    let repaired = b.expect_type("opened").await;
    assert_eq!(repaired["text"], "x".repeat(OPS as usize));

    let text = scrape(&hub).await;
    assert_eq!(series(&text, "chorus_hub_sessions_loaded"), 1.0);
    assert_eq!(series(&text, "chorus_hub_connections_open"), 2.0);
    assert_eq!(series(&text, "chorus_hub_participants"), 2.0);
    assert!(series(&text, "chorus_hub_ops_applied_total") >= OPS as f64);
    assert!(series(&text, "chorus_hub_op_latency_seconds_count") >= OPS as f64);
    assert!(
        series(
            &text,
            "chorus_hub_storage_latency_seconds_count{call=\"append_op\"}"
        ) >= OPS as f64
    );
    assert!(
        series(
            &text,
            "chorus_hub_storage_latency_seconds_count{call=\"load_session\"}"
        ) >= 1.0
    );
    assert_eq!(
        series(&text, "chorus_hub_refused_frames_total{code=\"bad_json\"}"),
        1.0
    );
    assert_eq!(
        series(
            &text,
            "chorus_hub_resyncs_total{code=\"checksum_mismatch\"}"
        ),
        1.0
    );
    assert_eq!(series(&text, "chorus_hub_engine_up{engine=\"local\"}"), 0.0);
    assert_eq!(series(&text, "chorus_hub_runs_active"), 0.0);
    // Who works on what is nobody's business but the session's.
    for private in [session, doc, "ada", "bob"] {
        assert!(
            !text.contains(private),
            "/metrics names {private:?}:\n{text}"
        );
    }

    // A frame past the transport's limit cannot even be read: the hub
    // drops that connection, and says why in the count.
    let mut flooder = HubClient::connect(&hub.url).await;
    let _ = flooder
        .try_send_json(&json!({ "type": "hello", "padding": "x".repeat(2 << 20) }))
        .await;
    let closed = flooder.recv().await;
    assert!(closed.is_err(), "the hub kept reading: {closed:?}");
    let text = scrape(&hub).await;
    assert_eq!(
        series(
            &text,
            "chorus_hub_dropped_clients_total{reason=\"frame_too_large\"}"
        ),
        1.0
    );
    a.ping(1).await.expect("the session goes on");
}
