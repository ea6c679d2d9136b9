//! The harness the hub's wire tests share: a hub running in this process
//! on a free port, and participants speaking its protocol as JSON over a
//! real WebSocket. Included by each test binary with `#[path]`; a binary
//! uses only some of it.
#![allow(dead_code)]

use std::time::Duration;

use chorus_hub::storage::{now_secs, Store};
use chorus_hub::{HubConfig, WorkspaceLimits};
use chorus_protocol::wire::PROTOCOL_VERSION;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ANSWER: Duration = Duration::from_secs(20);

/// A hub serving on a free port of this process until dropped or stopped.
pub struct TestHub {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestHub {
    pub async fn start(config: HubConfig) -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chorus_hub::run(listener, config, async {
            let _ = stopped.await;
        }));
        TestHub {
            url,
            stop: Some(stop),
            task,
        }
    }

    pub fn with(workspace: WorkspaceLimits, store: Option<Store>) -> HubConfig {
        HubConfig {
            workspace,
            store,
            ..HubConfig::default()
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One participant speaking the hub protocol as JSON.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn join(hub: &TestHub, session: &str, name: &str) -> (Client, Value) {
        Client::join_with(hub, session, name, None).await
    }

    pub async fn join_with(
        hub: &TestHub,
        session: &str,
        name: &str,
        token: Option<&str>,
    ) -> (Client, Value) {
        let (ws, _) = tokio_tungstenite::connect_async(hub.url.as_str())
            .await
            .expect("connect to the hub");
        let mut client = Client { ws };
        client
            .send(json!({
                "type": "hello", "protocol": PROTOCOL_VERSION, "session": session,
                "name": name, "token": token,
            }))
            .await;
        let welcome = client.expect("welcome").await;
        (client, welcome)
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send a frame");
    }

    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(ANSWER, self.ws.next())
                .await
                .expect("a frame from the hub in time")
                .expect("the hub kept the connection")
                .expect("a readable frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).expect("JSON");
            }
        }
    }

    /// The next frame of type `kind`; any other frame fails the test, so
    /// that nothing unexpected slips by.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
        frame
    }

    /// Reads until `kind`, returning it; frames on the way are dropped.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Every frame the hub sent this participant before answering a ping
    /// sent now: what it had to say, in order.
    pub async fn pending(&mut self) -> Vec<Value> {
        self.send(json!({ "type": "ping", "nonce": 7 })).await;
        let mut frames = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "pong" {
                return frames;
            }
            frames.push(frame);
        }
    }

    pub async fn put_text(&mut self, path: &str, text: &str) -> Value {
        self.put(path, json!({ "kind": "text", "text": text }))
            .await
    }

    /// Sends a put and returns the answer (`stored` or `error`).
    pub async fn put(&mut self, path: &str, content: Value) -> Value {
        self.send(json!({ "type": "put", "path": path, "content": content }))
            .await;
        self.recv().await
    }

    pub async fn open(&mut self, path: &str, text: &str) -> Value {
        self.send(json!({ "type": "open", "doc": path, "text": text }))
            .await;
        self.recv().await
    }

    pub async fn files(&mut self) -> Vec<Value> {
        self.send(json!({ "type": "files" })).await;
        let answer = self.expect("files").await;
        answer["entries"].as_array().expect("entries").clone()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Until the hub has seen the close: the session then forgets us.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(ANSWER, self.ws.next()).await {}
    }
}

pub fn stored(path: &str, created: bool, not_synced: Option<&str>) -> Value {
    let mut frame = json!({ "type": "stored", "path": path, "created": created });
    if let Some(reason) = not_synced {
        frame["notSynced"] = json!(reason);
    }
    frame
}

pub fn entry(path: &str, size: u64, not_synced: Option<&str>) -> Value {
    let mut entry = json!({ "path": path, "size": size });
    if let Some(reason) = not_synced {
        entry["notSynced"] = json!(reason);
    }
    entry
}

pub fn error_code(frame: &Value) -> (&str, &str) {
    assert_eq!(frame["type"], "error", "{frame}");
    (
        frame["code"].as_str().unwrap_or_default(),
        frame["doc"].as_str().unwrap_or_default(),
    )
}

pub fn scratch_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chorus-workspace-{test}-{}-{}",
        std::process::id(),
        now_secs()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh SQLite store in a scratch folder (remove the folder after).
pub async fn scratch_store(test: &str) -> (std::path::PathBuf, Store) {
    let dir = scratch_dir(test);
    let store = Store::open(&chorus_hub::storage::Database::Sqlite(dir.clone()))
        .await
        .expect("open SQLite");
    (dir, store)
}
