//! The hub's plain-HTTP health check, served on the WebSocket port.

use crate::support::hub_client::http_get;
use crate::support::Hub;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_ok() {
    let hub = Hub::start("healthz_answers_ok").await;
    let (status, body) = http_get(hub.port, "/healthz").await;
    assert_eq!(status, 200, "GET /healthz: status {status}, body {body:?}");
    assert_eq!(body.trim(), "ok", "GET /healthz body");
}
