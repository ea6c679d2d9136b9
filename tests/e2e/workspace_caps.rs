//! The caps on a session's tree as `chorus hub` flags: announced in
//! `welcome`, applied to `put`, and a per-file cap that no message could
//! carry refused at startup with what to change.

use std::process::Stdio;

use serde_json::json;

use crate::support::hub::{chorus_bin, Hub};
use crate::support::HubClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_are_flags_announced_in_welcome() {
    let hub = Hub::start_in_memory(
        "the_caps_are_flags_announced_in_welcome",
        &[
            "--max-file-bytes",
            "8",
            "--max-session-bytes",
            "100",
            "--max-files",
            "2",
        ],
    )
    .await;
    let (mut client, welcome) = HubClient::join(&hub.url, "caps", "ada").await;
    assert_eq!(
        welcome["workspace"],
        json!({ "maxFileBytes": 8, "maxSessionBytes": 100, "maxFiles": 2 })
    );
    for (path, text, not_synced) in [
        ("a.txt", "12345678", None),
        ("b.txt", "123456789", Some("tooLarge")),
    ] {
        client
            .send_json(&json!({ "type": "put", "path": path, "content": { "kind": "text", "text": text } }))
            .await;
        let stored = client.expect_type("stored").await;
        assert_eq!(stored["notSynced"].as_str(), not_synced, "{stored}");
    }
    client
        .send_json(
            &json!({ "type": "put", "path": "c.txt", "content": { "kind": "text", "text": "" } }),
        )
        .await;
    let refused = client.wait_type("stored").await.unwrap_err();
    assert!(refused.contains("too_many_files"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cap_beyond_the_message_limit_is_refused_at_startup() {
    let out = tokio::process::Command::new(chorus_bin())
        .args(["hub", "--listen", "127.0.0.1:0", "--in-memory", "--open"])
        .args(["--max-message-bytes", "65536", "--max-file-bytes", "60000"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run chorus hub");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it never listened");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-file-bytes 60000 does not fit")
            && stderr.contains("raise --max-message-bytes"),
        "{stderr}"
    );
}
