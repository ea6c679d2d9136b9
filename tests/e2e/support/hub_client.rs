//! A raw WebSocket client for the hub: how tests read the authoritative
//! text and how they send it garbage.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long to wait for the hub's answer to one frame.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HubClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while looking for something else, oldest first, so a
    /// test can still inspect them.
    pub seen: Vec<Value>,
}

impl HubClient {
    pub async fn connect(url: &str) -> HubClient {
        // As large as the proxy takes (a whole document in one frame).
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(1 << 30))
            .max_frame_size(Some(1 << 30));
        let (ws, _response) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                .await
                .unwrap_or_else(|err| panic!("connect to the hub at {url}: {err}"));
        HubClient {
            ws,
            seen: Vec::new(),
        }
    }

    /// Connects and completes the handshake; returns the client and `welcome`.
    pub async fn join(url: &str, session: &str, name: &str) -> (HubClient, Value) {
        let mut client = HubClient::connect(url).await;
        client
            .send_json(&json!({
                "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
                "session": session, "name": name,
            }))
            .await;
        let welcome = client.expect_type("welcome").await;
        (client, welcome)
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send a text frame to the hub");
    }

    /// Sends without failing the test: for a client the hub may drop.
    pub async fn try_send_json(&mut self, value: &Value) -> Result<(), String> {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .map_err(|err| err.to_string())
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("send a binary frame to the hub");
    }

    /// The next JSON text frame, or an error describing what came instead.
    pub async fn recv(&mut self) -> Result<Value, String> {
        loop {
            let frame = tokio::time::timeout(ANSWER_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| format!("no frame from the hub within {ANSWER_TIMEOUT:?}"))?;
            match frame {
                None => return Err("the hub closed the connection".into()),
                Some(Err(err)) => return Err(format!("WebSocket error: {err}")),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|err| format!("hub sent non-JSON text ({err}): {text}"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("the hub closed the connection: {frame:?}"))
                }
                Some(Ok(Message::Binary(_))) => return Err("the hub sent a binary frame".into()),
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads frames until one of type `kind` arrives, keeping the others
    /// (broadcasts such as `joined` or `remote`) in `seen`. An `error`
    /// frame, when not what was asked for, fails the test.
    pub async fn expect_type(&mut self, kind: &str) -> Value {
        match self.wait_type(kind).await {
            Ok(frame) => frame,
            Err(err) => panic!("waiting for {kind:?} from the hub: {err}"),
        }
    }

    pub async fn wait_type(&mut self, kind: &str) -> Result<Value, String> {
        loop {
            let frame = self.recv().await?;
            let frame_type = frame.get("type").and_then(Value::as_str).unwrap_or("");
            if frame_type == kind {
                return Ok(frame);
            }
            if frame_type == "error" {
                return Err(format!("hub answered with an error: {frame}"));
            }
            self.seen.push(frame);
        }
    }

    /// Opens `doc` and returns the `opened` frame.
    pub async fn open(&mut self, doc: &str, text: &str) -> Value {
        self.send_json(&json!({ "type": "open", "doc": doc, "text": text }))
            .await;
        self.expect_type("opened").await
    }

    /// Sends a ping and waits for the matching pong: proof that the hub
    /// kept this connection after whatever came before.
    pub async fn ping(&mut self, nonce: u64) -> Result<(), String> {
        self.send_json(&json!({ "type": "ping", "nonce": nonce }))
            .await;
        loop {
            let frame = self.wait_type("pong").await?;
            if frame.get("nonce").and_then(Value::as_u64) == Some(nonce) {
                return Ok(());
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The hub's current text of `doc`, read by a fresh participant. Opening a
/// document that exists returns the hub's text; the empty seed is ignored.
/// A document missing from the session's tree is an error, not created.
pub async fn hub_text(url: &str, session: &str, doc: &str) -> Result<(u64, String), String> {
    hub_text_with_token(url, session, doc, None).await
}

/// [`hub_text`] on a hub that requires a token.
pub async fn hub_text_with_token(
    url: &str,
    session: &str,
    doc: &str,
    token: Option<&str>,
) -> Result<(u64, String), String> {
    let mut client = HubClient::connect(url).await;
    client
        .send_json(&json!({
            "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION,
            "session": session, "name": "e2e-observer", "token": token,
        }))
        .await;
    client.wait_type("welcome").await?;
    // Opening a missing document would create it, empty: a test polling
    // for a file someone deleted would bring it back under their feet.
    client.send_json(&json!({ "type": "files" })).await;
    let files = client.wait_type("files").await?;
    let listed = files["entries"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(|e| e["path"] == doc));
    if !listed {
        client.close().await;
        return Err(format!(
            "the hub had no document {doc:?} in session {session:?}"
        ));
    }
    client
        .send_json(&json!({ "type": "open", "doc": doc, "text": "" }))
        .await;
    let opened = client.wait_type("opened").await?;
    client.close().await;
    let text = opened
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("opened without text: {opened}"))?;
    let rev = opened.get("rev").and_then(Value::as_u64).unwrap_or(0);
    if opened.get("created").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "the hub had no document {doc:?} in session {session:?}"
        ));
    }
    Ok((rev, text.to_owned()))
}

/// `GET path` over plain HTTP/1.1; returns the status code and body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the hub over TCP");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the HTTP request");
    let mut response = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("HTTP response within the timeout")
        .expect("read the HTTP response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {response:?}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .lines()
        .any(|line| line.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Decodes a `Transfer-Encoding: chunked` body (hyper uses it when the
/// length is not declared).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
