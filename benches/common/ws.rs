//! A benchmark's own WebSocket client of the hub: JSON frames in and out,
//! an `error` frame failing the benchmark.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any one answer may take; generous for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(120);

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// The next JSON text frame.
pub async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("the hub answered in time")
            .expect("connection open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            assert_ne!(value["type"], "error", "hub error: {value}");
            return value;
        }
    }
}

/// The next frame of type `kind`, skipping the others.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next_frame(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}
