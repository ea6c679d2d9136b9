//! Hostile and broken clients for the soak benchmark (issue 17): each kind
//! does one of the attacks SECURITY.md defends against, over and over,
//! until told to stop, and counts how the hub answered. They run beside
//! the well-behaved clients, whose latency and convergence are the point.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How each attack went, counted.
#[derive(Default)]
pub struct Counts {
    /// Half-sent request heads the hub cut.
    pub slow_heads_cut: AtomicU64,
    /// WebSockets that never said hello, closed by the hub.
    pub silent_closed: AtomicU64,
    /// Pings sent by the flooder (the hub reads it at its own pace).
    pub flood_frames: AtomicU64,
    /// Malformed or refused frames answered with an error.
    pub garbage_answered: AtomicU64,
    /// Clients that stopped reading and were dropped as too slow.
    pub hoarders_dropped: AtomicU64,
    /// Upgrades from a foreign web origin refused.
    pub origins_refused: AtomicU64,
    /// Wide ops based on an old revision refused as too costly.
    pub costly_refused: AtomicU64,
    /// Garbage frames the hub did not answer within 5 s (by index).
    pub garbage_unanswered: std::sync::Mutex<Vec<usize>>,
}

impl Counts {
    pub fn report(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("half-sent request heads cut", get(&self.slow_heads_cut)),
            (
                "silent WebSockets closed (no hello)",
                get(&self.silent_closed),
            ),
            ("flood pings sent", get(&self.flood_frames)),
            (
                "garbage frames answered with an error",
                get(&self.garbage_answered),
            ),
            ("non-reading clients dropped", get(&self.hoarders_dropped)),
            (
                "foreign-origin upgrades refused",
                get(&self.origins_refused),
            ),
            ("too-costly stale ops refused", get(&self.costly_refused)),
            (
                "garbage frames left unanswered",
                self.garbage_unanswered.lock().unwrap().len() as u64,
            ),
        ]
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Starts every kind of attack against the hub at `url` (port `port`).
pub fn spawn_all(
    url: &str,
    port: u16,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(slow_head(port, stop.clone(), counts.clone())));
        tasks.push(tokio::spawn(silent(
            url.to_owned(),
            stop.clone(),
            counts.clone(),
        )));
    }
    tasks.push(tokio::spawn(flood(
        url.to_owned(),
        stop.clone(),
        counts.clone(),
    )));
    tasks.push(tokio::spawn(garbage(
        url.to_owned(),
        stop.clone(),
        counts.clone(),
    )));
    tasks.push(tokio::spawn(hoard(
        url.to_owned(),
        stop.clone(),
        counts.clone(),
    )));
    tasks.push(tokio::spawn(foreign_origin(
        url.to_owned(),
        stop.clone(),
        counts.clone(),
    )));
    tasks.push(tokio::spawn(costly(url.to_owned(), stop, counts)));
    tasks
}

fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

async fn join(url: &str, session: &str, name: &str) -> Option<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let hello = json!({ "type": "hello", "protocol": chorus_protocol::wire::PROTOCOL_VERSION, "session": session, "name": name });
    ws.send(Message::text(hello.to_string())).await.ok()?;
    until_type(&mut ws, "welcome").await?;
    Some(ws)
}

async fn until_type(ws: &mut Ws, kind: &str) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).ok()?;
            if value["type"] == kind {
                return Some(value);
            }
        }
    }
}

/// Sends half a request head and waits to be cut off (slowloris).
async fn slow_head(port: u16, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stopped(&stop) {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: soak\r\n").await;
        let mut rest = Vec::new();
        if tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut rest))
            .await
            .is_ok()
        {
            counts.slow_heads_cut.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Upgrades and never says hello.
async fn silent(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stopped(&stop) {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
        }
        counts.silent_closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends pings as fast as the hub reads them.
async fn flood(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stopped(&stop) {
        let Some(ws) = join(&url, "hostile-flood", "flooder").await else {
            continue;
        };
        let (mut sink, mut stream) = ws.split();
        // Pongs are read and thrown away, so the flooder is not also a
        // client that stops reading.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let mut nonce = 0u64;
        while !stopped(&stop) {
            let ping = json!({ "type": "ping", "nonce": nonce });
            if sink.send(Message::text(ping.to_string())).await.is_err() {
                break;
            }
            nonce += 1;
            counts.flood_frames.fetch_add(1, Ordering::Relaxed);
        }
        reader.abort();
    }
}

/// Frames the hub must refuse, one after another, each answered.
async fn garbage(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let frames = [
        Message::text("{not json"),
        Message::text(r#"{"type":"dance"}"#),
        Message::binary(vec![0u8; 64]),
        Message::text(r#"{"type":"op","doc":"nowhere.txt","rev":0,"op":["x"]}"#),
        Message::text(r#"{"type":"op","doc":"g.txt","rev":0,"op":["\u0000"]}"#),
        Message::text(r#"{"type":"op","doc":"g.txt","rev":0,"op":[5,"x"]}"#),
        Message::text(r#"{"type":"op","doc":"g.txt","rev":999999,"op":[2]}"#),
        Message::text(r#"{"type":"open","doc":"../../etc/passwd","text":""}"#),
    ];
    while !stopped(&stop) {
        let Some(mut ws) = join(&url, "hostile-garbage", "garbage").await else {
            continue;
        };
        let opened = json!({ "type": "open", "doc": "g.txt", "text": "ok" });
        if ws.send(Message::text(opened.to_string())).await.is_err() {
            continue;
        }
        'frames: while !stopped(&stop) {
            for (index, frame) in frames.iter().enumerate() {
                if ws.send(frame.clone()).await.is_err() {
                    break 'frames;
                }
                match tokio::time::timeout(Duration::from_secs(5), until_type(&mut ws, "error"))
                    .await
                {
                    Ok(Some(_)) => counts.garbage_answered.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        counts.garbage_unanswered.lock().unwrap().push(index);
                        break 'frames;
                    }
                };
            }
        }
    }
}

/// Opens a large document, then asks for it again and again (wrong
/// checksums) without ever reading.
async fn hoard(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let big = "h".repeat(200 * 1024);
    while !stopped(&stop) {
        let Some(mut ws) = join(&url, "hostile-hoard", "hoarder").await else {
            continue;
        };
        let open = json!({ "type": "open", "doc": "big.txt", "text": big });
        if ws.send(Message::text(open.to_string())).await.is_err() {
            continue;
        }
        let Some(opened) = until_type(&mut ws, "opened").await else {
            continue;
        };
        let rev = opened["rev"].as_u64().unwrap_or(0);
        let wrong =
            json!({ "type": "checksum", "doc": "big.txt", "rev": rev, "hash": "0000000000000000" })
                .to_string();
        loop {
            if stopped(&stop) {
                return;
            }
            match tokio::time::timeout(
                Duration::from_secs(30),
                ws.send(Message::text(wrong.clone())),
            )
            .await
            {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        counts.hoarders_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A web page's WebSocket from a foreign origin.
async fn foreign_origin(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stopped(&stop) {
        let Ok(mut request) = url.as_str().into_client_request() else {
            return;
        };
        request
            .headers_mut()
            .insert("Origin", "https://evil.example".parse().expect("header"));
        if let Err(tokio_tungstenite::tungstenite::Error::Http(response)) =
            tokio_tungstenite::connect_async(request).await
        {
            if response.status() == 403 {
                counts.origins_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The costly client's document before it types.
const BASE_CHARS: usize = 5_000;

/// Types a thousand keystrokes, then sends an op of thousands of parts
/// based on the first revision.
async fn costly(url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut round = 0u64;
    while !stopped(&stop) {
        round += 1;
        let session = format!("hostile-costly-{round}");
        let Some(mut ws) = join(&url, &session, "costly").await else {
            continue;
        };
        let open = json!({ "type": "open", "doc": "c.txt", "text": "b".repeat(BASE_CHARS) });
        if ws.send(Message::text(open.to_string())).await.is_err()
            || until_type(&mut ws, "opened").await.is_none()
        {
            continue;
        }
        let mut ok = true;
        for rev in 0..1000u64 {
            let op = json!({ "type": "op", "doc": "c.txt", "rev": rev, "op": ["k", BASE_CHARS as u64 + rev] });
            ok = ws.send(Message::text(op.to_string())).await.is_ok()
                && until_type(&mut ws, "ack").await.is_some();
            if !ok || stopped(&stop) {
                break;
            }
        }
        if !ok || stopped(&stop) {
            continue;
        }
        // 10,000 parts based on revision 0, 1,000 ops behind: 10 million
        // transform steps, past the hub's budget.
        let wide: Vec<Value> = (0..BASE_CHARS)
            .flat_map(|_| [json!("w"), json!(1)])
            .collect();
        let op = json!({ "type": "op", "doc": "c.txt", "rev": 0, "op": wide });
        if ws.send(Message::text(op.to_string())).await.is_ok() {
            if let Some(error) = until_type(&mut ws, "error").await {
                if error["code"] == "stale_revision" {
                    counts.costly_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
