//! Access control on a hub that requires tokens (its default): sessions
//! made with `chorus session create`, join and read-only tokens, wrong or
//! missing tokens, unknown sessions, and `chorus session revoke|list`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::hub::{chorus_bin, log_dir, Hub};
use crate::support::hub_client::hub_text_with_token;
use crate::support::{eventually, HubClient};

const WAIT: Duration = Duration::from_secs(15);

pub struct Tokens {
    pub join: String,
    pub read_only: String,
}

/// `chorus session ARGS --data DIR`; returns stdout, panicking with stderr
/// on failure.
pub async fn session_cli(store_args: &[&str], args: &[&str]) -> String {
    let out = tokio::process::Command::new(chorus_bin())
        .arg("session")
        .args(args)
        .args(store_args)
        .output()
        .await
        .expect("run chorus session");
    assert!(
        out.status.success(),
        "chorus session {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Creates `session` with the CLI and reads its tokens off stdout.
pub async fn create_session(store_args: &[&str], session: &str) -> Tokens {
    create_session_with(store_args, session, &[]).await
}

/// [`create_session`] with more arguments (`--template`, `--from`).
pub async fn create_session_with(store_args: &[&str], session: &str, more: &[&str]) -> Tokens {
    let mut args = vec!["create", session];
    args.extend_from_slice(more);
    let out = session_cli(store_args, &args).await;
    let field = |key: &str| {
        out.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {key:?} line in {out:?}"))
            .to_owned()
    };
    assert_eq!(field("session"), session);
    Tokens {
        join: field("join"),
        read_only: field("read-only"),
    }
}

pub async fn start_token_hub(test: &str, data: &Path) -> Hub {
    let data = data.to_string_lossy().into_owned();
    Hub::start_with(
        test,
        "hub.log",
        &["--listen", "127.0.0.1:0", "--data", &data],
    )
    .await
}

/// Waits for a `window/showMessage` containing `needle`.
pub async fn wait_message(editor: &Editor, needle: &str) -> Value {
    editor
        .wait_message("window/showMessage", needle, WAIT)
        .await
}

fn with_token(
    kind: EditorKind,
    hub: &Hub,
    session: &str,
    name: &str,
    token: &str,
) -> EditorOptions {
    let mut options = EditorOptions::new(kind, hub, session, name);
    options.token = Some(token.to_owned());
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_joining_and_read_only_edits_are_undone() {
    let test = "tokens_gate_joining";
    let data = log_dir(&format!("{test}-data"));
    let store = ["--data", data.to_str().unwrap()];
    let tokens = create_session(&store, "team").await;
    assert_ne!(tokens.join, tokens.read_only);
    let mut hub = start_token_hub(test, &data).await;
    hub.token = Some(tokens.join.clone());
    let doc = "notes.md";

    let ada = Editor::start(EditorKind::VsCode, &hub, "team", "ada").await;
    ada.open(doc, "shared\n");
    assert_converged(&hub, "team", doc, &[&ada]).await;
    // Watching with the read-only token, configured through
    // initializationOptions as the plugins do.
    let mut options = with_token(EditorKind::Helix, &hub, "team", "viewer", &tokens.read_only);
    options.config_via_init_options = true;
    let viewer = Editor::start_with(options, &hub.log_dir).await;
    viewer.open(doc, "");
    assert_converged(&hub, "team", doc, &[&ada, &viewer]).await;
    wait_message(&viewer, "read-only").await;

    // The viewer types: the hub refuses, and the proxy puts the buffer back.
    viewer.insert_after(doc, "shared", " vandalism");
    wait_message(&viewer, "your edit to notes.md was undone").await;
    let text = assert_converged(&hub, "team", doc, &[&ada, &viewer]).await;
    assert_eq!(text, "shared\n", "the read-only edit was undone everywhere");

    // Editing goes on for the editor, and the viewer sees it.
    ada.insert_after(doc, "shared", " and edited");
    let text = assert_converged(&hub, "team", doc, &[&ada, &viewer]).await;
    assert_eq!(text, "shared and edited\n");

    // A read-only participant cannot add documents or start runs.
    let (mut raw, welcome) = join_raw(&hub.url, "team", Some(&tokens.read_only)).await;
    assert_eq!(welcome["role"], "readOnly", "{welcome}");
    raw.send_json(&serde_json::json!({"type": "open", "doc": "new.txt", "text": "x"}))
        .await;
    let refused = raw.wait_type("error").await.unwrap();
    assert_eq!(refused["code"], "read_only", "{refused}");
    raw.send_json(&serde_json::json!({"type": "run", "doc": doc}))
        .await;
    let refused = raw.wait_type("error").await.unwrap();
    assert_eq!(refused["code"], "read_only", "{refused}");
    assert!(
        hub_text_with_token(&hub.url, "team", "new.txt", Some(&tokens.join))
            .await
            .is_err(),
        "the read-only open created nothing"
    );

    // Wrong, missing and unknown: each gets a message saying which, and
    // the proxy does not keep knocking.
    let wrong = Editor::start_with(
        with_token(EditorKind::Neovim, &hub, "team", "mallory", "chj_0000"),
        &hub.log_dir,
    )
    .await;
    wait_message(&wrong, "wrong token for session \"team\"").await;
    let mut options = EditorOptions::new(EditorKind::Helix, &hub, "team", "nobody");
    options.token = None;
    let missing = Editor::start_with(options, &hub.log_dir).await;
    wait_message(&missing, "needs a token").await;
    let unknown = Editor::start(EditorKind::VsCode, &hub, "no-such-session", "lost").await;
    wait_message(&unknown, "chorus session create no-such-session").await;
    for refused in [&wrong, &missing, &unknown] {
        wait_message(refused, "Not retrying").await;
    }
    let (_, code) = refused_raw(&hub.url, "team", Some("chr_nope")).await;
    assert_eq!(code, "unauthorized");
    let (_, code) = refused_raw(&hub.url, "ghost", Some(&tokens.join)).await;
    assert_eq!(code, "unknown_session");

    // Everyone else was never disturbed.
    ada.insert_before(doc, "shared", "still ");
    let text = assert_converged(&hub, "team", doc, &[&ada, &viewer]).await;
    assert_eq!(text, "still shared and edited\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_disconnects_everyone_and_new_tokens_keep_the_documents() {
    let test = "revoking_a_session";
    let data = log_dir(&format!("{test}-data"));
    let store = ["--data", data.to_str().unwrap()];
    let old = create_session(&store, "sprint").await;
    let mut hub = start_token_hub(test, &data).await;
    hub.token = Some(old.join.clone());
    let doc = "plan.txt";
    let a = Editor::start(EditorKind::Neovim, &hub, "sprint", "a").await;
    let b = Editor::start(EditorKind::Helix, &hub, "sprint", "b").await;
    a.open(doc, "keep me\n");
    // a's text seeds the document before b opens it.
    assert_converged(&hub, "sprint", doc, &[&a]).await;
    b.open(doc, "");
    assert_converged(&hub, "sprint", doc, &[&a, &b]).await;

    // Creating it again while it is live is refused, and says why.
    let out = tokio::process::Command::new(chorus_bin())
        .args(["session", "create", "sprint"])
        .args(store)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    session_cli(&store, &["revoke", "sprint"]).await;
    for editor in [&a, &b] {
        wait_message(editor, "was revoked").await;
    }
    let listed = session_cli(&store, &["list"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with("sprint "))
        .unwrap_or_else(|| panic!("sprint not listed: {listed}"));
    assert!(line.contains("revoked"), "{line}");
    let (_, code) = refused_raw(&hub.url, "sprint", Some(&old.join)).await;
    assert_eq!(code, "unauthorized", "old tokens no longer work");

    // New tokens for the same session: its documents are still there.
    let new = create_session(&store, "sprint").await;
    hub.token = Some(new.join.clone());
    let c = Editor::start(EditorKind::VsCode, &hub, "sprint", "c").await;
    c.open(doc, "");
    let text = assert_converged(&hub, "sprint", doc, &[&c]).await;
    assert_eq!(text, "keep me\n");
    let listed = session_cli(&store, &["list"]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("sprint ") && l.contains("active")),
        "{listed}"
    );
    assert!(
        eventually(WAIT, || a
            .client()
            .notifications("window/showMessage")
            .iter()
            .any(|m| m["message"]
                .as_str()
                .is_some_and(|m| m.contains("Not retrying"))))
        .await,
        "a revoked proxy stops reconnecting"
    );
}

/// Connects with a raw client and says hello with `token`.
async fn hello(url: &str, session: &str, token: Option<&str>) -> HubClient {
    let mut client = HubClient::connect(url).await;
    client
        .send_json(&serde_json::json!({
            "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
            "session": session, "name": "raw", "token": token,
        }))
        .await;
    client
}

async fn join_raw(url: &str, session: &str, token: Option<&str>) -> (HubClient, Value) {
    let mut client = hello(url, session, token).await;
    let welcome = client.wait_type("welcome").await.unwrap();
    (client, welcome)
}

/// Says hello with `token` and expects a refusal; returns it and its code.
async fn refused_raw(url: &str, session: &str, token: Option<&str>) -> (Value, String) {
    let mut client = hello(url, session, token).await;
    let reply = client.recv().await.unwrap();
    assert_eq!(reply["type"], "error", "expected a refusal: {reply}");
    let code = reply["code"].as_str().unwrap_or_default().to_owned();
    (reply, code)
}
