//! The hub's HTTP side: `/healthz` for load balancers; and (issue 17) a
//! web page's WebSocket refused unless its origin is allowed, while
//! editors (which send no Origin) join as before; malformed, oversized and
//! stalled request heads answered or cut, the hub serving on.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::hub_client::{http_get, HubClient};
use crate::support::Hub;

/// Opens a WebSocket to the hub as a page at `origin` would.
async fn connect_from(url: &str, origin: &str) -> Result<(), WsError> {
    let mut request = url.into_client_request().expect("a WebSocket request");
    request
        .headers_mut()
        .insert("Origin", origin.parse().expect("an origin header"));
    tokio_tungstenite::connect_async(request).await.map(|_| ())
}

/// Writes `request` raw and reads the whole answer (or until the hub closes).
async fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_ok() {
    let hub = Hub::start("healthz_answers_ok").await;
    let (status, body) = http_get(hub.port, "/healthz").await;
    assert_eq!(status, 200, "GET /healthz: status {status}, body {body:?}");
    assert_eq!(body.trim(), "ok", "GET /healthz body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_drive_the_hub_unless_its_origin_is_allowed() {
    let hub = Hub::start_in_memory(
        "web_origin",
        &["--allow-origin", "https://chorus.example.com"],
    )
    .await;
    match connect_from(&hub.url, "https://evil.example").await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
            assert!(body.contains("https://evil.example"), "{body}");
        }
        other => panic!("a cross-site upgrade must be refused with 403, got {other:?}"),
    }
    connect_from(&hub.url, "https://chorus.example.com")
        .await
        .expect("an allowed origin may connect");
    // Editors' proxies send no Origin and join as always.
    let (_client, welcome) = HubClient::join(&hub.url, "demo", "editor").await;
    assert_eq!(welcome["type"], "welcome");
    let log = hub.log_tail(200);
    assert!(
        log.contains("refused a WebSocket from a web page at https://evil.example"),
        "{log}"
    );
}

/// Issue 19 (ADR 0011): the hub's own page, served from its own address,
/// may connect with nothing allowed; any other origin may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allowed_origins_only_the_hubs_own_pages_connect() {
    let hub = Hub::start("no_web_origin").await;
    connect_from(&hub.url, &format!("http://127.0.0.1:{}", hub.port))
        .await
        .expect("a page served by the hub itself may connect");
    for origin in [
        format!("http://127.0.0.1:{}", hub.port + 1),
        format!("https://127.0.0.1:{}", hub.port),
        "https://evil.example".to_owned(),
    ] {
        assert!(
            matches!(connect_from(&hub.url, &origin).await, Err(WsError::Http(r)) if r.status() == 403),
            "a page at {origin} is refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_heads_are_answered_and_the_hub_keeps_serving() {
    let hub = Hub::start("bad_heads").await;
    let (status, body) = http_get(hub.port, "/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("This is a <strong>Chorus hub</strong>") && body.ends_with("</html>\n"),
        "the whole page, nothing cut: {body:?}"
    );
    assert_eq!(http_get(hub.port, "/nothing-here").await.0, 404);

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw(hub.port, huge.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "an oversized head: {answer:?}"
    );
    let answer = raw(hub.port, b"NONSENSE\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a malformed head: {answer:?}"
    );

    // A head that never ends is cut after the head timeout, not held.
    let mut stalled = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connect");
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "a stalled head is cut by the hub");

    assert_eq!(http_get(hub.port, "/healthz").await.0, 200);
    let (_client, welcome) = HubClient::join(&hub.url, "still", "editor").await;
    assert_eq!(welcome["type"], "welcome");
}

/// Issue 17: one address cannot take every connection slot; others still
/// get in, and a freed slot is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let hub = Hub::start_in_memory("per_ip_cap", &["--max-connections-per-ip", "2"]).await;
    let (first, _) = HubClient::join(&hub.url, "crowd", "first").await;
    let (_second, _) = HubClient::join(&hub.url, "crowd", "second").await;
    match tokio_tungstenite::connect_async(hub.url.as_str()).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
            assert_eq!(body, "too many connections from your address to this hub\n");
        }
        other => panic!("a third connection from one address must be refused, got {other:?}"),
    }
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio_tungstenite::connect_async(hub.url.as_str())
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot is usable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
