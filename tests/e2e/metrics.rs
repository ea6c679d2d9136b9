//! Operations (issue 18 item 5): `GET /metrics` moves with what the hub
//! does, and `chorus hub --check` tells what would keep a hub from
//! starting, without starting one.

use std::process::Output;

use serde_json::json;

use crate::support::hub::{chorus_bin, log_dir, Hub};
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

/// Reads `client`'s frames until one of type `kind`, for up to a minute
/// (a sandbox container may take a while to start on a busy machine).
async fn until(client: &mut HubClient, kind: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match client.recv().await {
            Ok(frame) if frame["type"] == kind => return frame,
            Ok(frame) if frame["type"] == "error" => panic!("waiting for {kind}: {frame}"),
            Ok(_) => {}
            Err(quiet) if quiet.starts_with("no frame") => {}
            Err(err) => panic!("waiting for {kind}: {err}"),
        }
    }
    panic!("no {kind} within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_terminals_and_the_engine() {
    if !chorus_testkit::docker() {
        return;
    }
    let hub = Hub::start("metrics_runs_terminals").await;
    let (mut ada, _) = HubClient::join(&hub.url, "metrics-runs", "ada").await;
    ada.open("main.py", "print('hi')\n").await;
    ada.send_json(&json!({ "type": "run", "doc": "main.py" }))
        .await;
    until(&mut ada, "runFinished").await;
    ada.send_json(&json!({ "type": "terminal" })).await;
    until(&mut ada, "terminalStarted").await;

    let text = scrape(&hub).await;
    assert_eq!(series(&text, "chorus_hub_engine_up{engine=\"local\"}"), 1.0);
    assert_eq!(series(&text, "chorus_hub_runs_started_total"), 1.0);
    assert_eq!(series(&text, "chorus_hub_terminals_open"), 1.0);

    ada.send_json(&json!({ "type": "terminalStop" })).await;
    until(&mut ada, "terminalEnded").await;
    let text = scrape(&hub).await;
    assert_eq!(series(&text, "chorus_hub_terminals_open"), 0.0);
}

/// `chorus hub --check ARGS`.
async fn check(args: &[&str]) -> Output {
    tokio::process::Command::new(chorus_bin())
        .args(["hub", "--check"])
        .args(args)
        .output()
        .await
        .expect("run chorus hub --check")
}

fn lines(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_check_passes_a_good_configuration_without_listening() {
    let test = "hub_check_passes";
    let dir = log_dir(test);
    let data = dir.join("data");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_pem, key_pem) = (dir.join("hub.pem"), dir.join("hub-key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    // A port something else holds: checking must not try to take it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();

    let out = check(&[
        "--listen",
        &listen,
        "--data",
        data.to_str().unwrap(),
        "--no-runs",
        "--tls-cert",
        cert_pem.to_str().unwrap(),
        "--tls-key",
        key_pem.to_str().unwrap(),
    ])
    .await;
    let (stdout, stderr) = lines(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let expected = [
        "ok      flags: ",
        "ok      storage: SQLite in ",
        "skipped docker: --no-runs",
        "ok      tls: ",
    ];
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), expected.len(), "{stdout}");
    for (line, start) in got.iter().zip(expected) {
        assert!(
            line.starts_with(start),
            "{line:?} should start {start:?}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        data.join("chorus.db").exists(),
        "the hub's own open made the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_check_names_what_fails_and_exits_1() {
    let out = check(&[
        "--database",
        "postgres://nobody@127.0.0.1:1/x",
        "--no-runs",
        "--unload-idle-secs",
        "0",
        "--tls-cert",
        "/nonexistent/hub.pem",
        "--tls-key",
        "/nonexistent/hub-key.pem",
    ])
    .await;
    let (stdout, stderr) = lines(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = |check: &str| {
        stdout
            .lines()
            .find(|line| line.contains(&format!(" {check}: ")))
            .unwrap_or_else(|| panic!("no {check} line in:\n{stdout}"))
            .to_owned()
    };
    let flags = line("flags");
    assert!(flags.starts_with("FAILED "), "{flags}");
    assert!(flags.contains("--unload-idle-secs"), "{flags}");
    let storage = line("storage");
    assert!(storage.starts_with("FAILED "), "{storage}");
    assert!(storage.contains("PostgreSQL at 127.0.0.1:1/x"), "{storage}");
    let tls = line("tls");
    assert!(tls.starts_with("FAILED "), "{tls}");
    assert!(tls.contains("/nonexistent/hub.pem"), "{tls}");
    assert!(stderr.contains("3 checks failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_check_reaches_the_docker_engine() {
    if !chorus_testkit::docker() {
        return;
    }
    let out = check(&["--in-memory", "--open"]).await;
    let (stdout, stderr) = lines(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let docker = stdout
        .lines()
        .find(|line| line.contains(" docker: "))
        .unwrap_or_else(|| panic!("no docker line in:\n{stdout}"));
    assert!(docker.starts_with("ok      docker: "), "{docker}");
    assert!(docker.contains(chorus_testkit::SANDBOX_IMAGE), "{docker}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_check_reaches_postgresql() {
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    let out = check(&["--database", &url, "--no-runs"]).await;
    let (stdout, stderr) = lines(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("ok      storage: PostgreSQL at ")),
        "{stdout}"
    );
    assert!(!stdout.contains("@"), "the credentials stay out: {stdout}");
}
