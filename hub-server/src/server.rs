//! The listener: accepts TCP connections (TLS-wrapped when the hub has a
//! certificate) and serves HTTP/1.1 on them with hyper, routed by axum:
//! `GET /healthz`, the browser door's pages and assets ([`crate::web`]),
//! and WebSocket upgrades, handed to tungstenite once hyper has switched
//! protocols.
//!
//! hyper rather than a hand-written head reader (ADR 0008): it bounds and
//! times out request heads, answers malformed ones correctly, and the
//! routes that come next (metrics, the browser door's files) are a line
//! each. The WebSocket stays tokio-tungstenite's, as before, so the
//! connection code does not change.
//!
//! Invariant: a WebSocket upgrade carrying an `Origin` header is refused
//! unless that origin is allowed (`--allow-origin`) or is the hub's own
//! (its page, ADR 0011): browsers send one on every cross-site connection,
//! native editors' proxies send none. Without this any web page could
//! drive a hub the user's browser reaches.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::access::Access;
use crate::connection;
use crate::session::{Registry, SessionCmd};
use crate::web;
use crate::HubConfig;

/// A request head longer than this is refused (431): nothing legitimate
/// needs it. hyper's read buffer, so at least its minimum of 8 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the hub looks for sessions revoked by `chorus session revoke`
/// (which writes to the database, not to the hub).
const REVOCATION_POLL: Duration = Duration::from_secs(1);

/// What every request handler shares.
#[derive(Clone)]
struct Hub {
    registry: Registry,
    config: HubConfig,
}

/// The connection a request came on: its peer for logs, and its slots
/// under `--max-connections` and `--max-connections-per-ip`, held until
/// the WebSocket (if any) ends.
#[derive(Clone)]
struct Conn {
    peer: String,
    _permit: Arc<OwnedSemaphorePermit>,
    _per_ip: Arc<PerIpSlot>,
}

/// Open connections by peer address: one address cannot take every slot.
#[derive(Clone, Default)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection counted against its address until dropped.
struct PerIpSlot {
    ip: IpAddr,
    counts: PerIp,
}

impl PerIp {
    fn take(&self, ip: IpAddr, max: usize) -> Option<PerIpSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(PerIpSlot {
            ip,
            counts: self.clone(),
        })
    }
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Serves until `shutdown` completes.
pub async fn run(listener: TcpListener, config: HubConfig, shutdown: impl Future<Output = ()>) {
    let registry = Registry::default();
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let per_ip = PerIp::default();
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let watcher = (config.access == Access::Tokens)
        .then(|| config.store.clone())
        .flatten()
        .map(|store| {
            let executor = match &config.runner {
                crate::Runner::Enabled(executor) => Some(executor.clone()),
                crate::Runner::Disabled(_) => None,
            };
            tokio::spawn(watch_revocations(store, registry.clone(), executor))
        });
    let heartbeats = config
        .cluster
        .clone()
        .map(|cluster| tokio::spawn(cluster.heartbeats(registry.clone())));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::metrics::routes(&config.runner))
        .fallback(root)
        .with_state(Hub {
            registry: registry.clone(),
            config: config.clone(),
        });
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, "connection limit reached; refusing");
            tokio::spawn(refuse(socket, REFUSED_FULL));
            continue;
        };
        let Some(per_ip_slot) = per_ip.take(peer.ip(), config.max_connections_per_ip) else {
            warn!(%peer, "connection limit for this address reached; refusing");
            tokio::spawn(refuse(socket, REFUSED_PER_IP));
            continue;
        };
        let _ = socket.set_nodelay(true);
        // The kernel notices a peer that vanished (a laptop closed, a NAT
        // forgetting the flow) even on a connection nobody writes to.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10))
            .with_retries(3);
        let _ = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive);
        let conn = Conn {
            peer: peer.to_string(),
            _permit: Arc::new(permit),
            _per_ip: Arc::new(per_ip_slot),
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_http(socket, conn, app).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => serve_http(stream, conn, app).await,
                        Ok(Err(err)) => {
                            debug!(peer = %conn.peer, cause = %err, "TLS handshake failed")
                        }
                        Err(_) => debug!(peer = %conn.peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    info!("hub stopped accepting connections");
    // Hand every session over before the process ends, so that nothing
    // waits for this hub's lease to lapse and no proxy for an error.
    info!(
        sessions = registry.len(),
        "draining: handing every session over"
    );
    registry.drain(DRAIN_PATIENCE).await;
    if let Some(heartbeats) = heartbeats {
        heartbeats.abort();
    }
    if let Some(cluster) = &config.cluster {
        cluster.leave().await;
    }
    // The farewells still queued reach their proxies (each connection's
    // writer has two seconds).
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// How long a shutting-down hub waits for its sessions to hand over.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);

/// One connection's HTTP/1.1, until it closes or is upgraded.
async fn serve_http<S>(io: S, conn: Conn, app: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer.clone();
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(conn.clone());
        app.clone().oneshot(request.map(Body::new))
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(err) = served {
        debug!(%peer, cause = %err, "HTTP connection ended with an error");
    }
}

/// Everything but `/healthz` and `/metrics`: a WebSocket upgrade on any path
/// (proxies may sit behind a path prefix), else the browser door's pages,
/// else 404.
async fn root(
    State(hub): State<Hub>,
    Extension(conn): Extension<Conn>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let wants_websocket = header_is(headers, header::UPGRADE, "websocket");
    if !wants_websocket {
        let method = request.method();
        return match web::serve(request.uri().path(), web::accepts_gzip(headers)) {
            Some(page) if method == Method::GET || method == Method::HEAD => page,
            Some(_) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    if let Err(why) = origin_allowed(headers, &hub.config.allowed_origins) {
        if !web::is_own_origin(headers, hub.config.tls.is_some()) {
            warn!(peer = %conn.peer, "{why}");
            return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
        }
    }
    if !header_is(headers, header::SEC_WEBSOCKET_VERSION, "13") {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 is required\n",
        )
            .into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    // `/ws/SESSION` (at the end of any prefix): what a load balancer hashes.
    let route = connection::Route {
        session: request
            .uri()
            .path()
            .rsplit_once("/ws/")
            .map(|(_, session)| session.to_owned())
            .filter(|session| !session.is_empty()),
        relayed: headers.contains_key(connection::RELAYED_HEADER),
    };
    let Some(upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return debug!(peer = %conn.peer, cause = %err, "upgrade failed"),
        };
        let config = hub.config;
        let ws_config = WebSocketConfig::default()
            // Frames up to this size are read and answered with a
            // too_large error; beyond it the connection is cut.
            .max_message_size(Some(config.max_message_bytes * 16))
            .max_frame_size(Some(config.max_message_bytes * 16))
            // Frames are tiny keystrokes; tungstenite grows the buffer for
            // big ones. The default 128 KiB per connection dominated RSS
            // at 800 connections (BENCHMARKS.md).
            .read_buffer_size(8 * 1024);
        let io = TokioIo::new(upgraded);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
        // `conn` (and its connection slot) lives as long as the WebSocket.
        connection::serve(ws, conn.peer.clone(), hub.registry, config, route).await;
        drop(conn);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whether `name` holds `token` among its comma-separated values.
fn header_is(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|value| value.trim().eq_ignore_ascii_case(token))
}

/// A request with no `Origin` (native clients) passes; one with an origin
/// passes only if it is allowed, compared as browsers serialise it.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("<not text>");
    if allowed
        .iter()
        .any(|ok| ok.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    Err(format!(
        "refused a WebSocket from a web page at {origin}: browsers may connect only from origins \
         the hub allows (--allow-origin) and its own pages; editors' proxies send no Origin"
    ))
}

/// Tells live sessions that were revoked to send everyone away, and has
/// the executor drop what it keeps for them (their build cache). Follows
/// the revocation marks in storage (a count, see `schema.rs`), so no
/// clock is compared with another machine's.
///
/// A revocation is the only end a session has: an `--open` hub's sessions,
/// and a tokens hub's until revoked, live as long as their storage, so
/// their build caches do too (the executor caps and ages them out, which is
/// also what becomes of the cache of a session revoked while no hub ran).
async fn watch_revocations(
    store: crate::storage::Store,
    registry: Registry,
    executor: Option<Arc<dyn chorus_sandbox::Executor>>,
) {
    use std::collections::HashSet;
    // Revocations already made when the hub starts concern no live session.
    let mut mark = loop {
        match store.revoked_since(i64::MIN).await {
            Ok(revoked) => break revoked.iter().map(|(_, at)| *at).max().unwrap_or(0),
            Err(err) => warn!(cause = %err, "cannot read revoked sessions yet"),
        }
        tokio::time::sleep(REVOCATION_POLL).await;
    };
    // Two revocations committed at once may share a mark: read from the
    // last mark on, and skip what was handled.
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    loop {
        tokio::time::sleep(REVOCATION_POLL).await;
        match store.revoked_since(mark).await {
            Ok(revoked) => {
                for (id, at) in revoked {
                    if !seen.insert((id.clone(), at)) {
                        continue;
                    }
                    mark = mark.max(at);
                    if let Some(session) = registry.get(&id) {
                        session.send(SessionCmd::Revoked).await;
                    }
                    // Whether or not the session was live here: its cache
                    // outlives its actor.
                    if let Some(executor) = &executor {
                        executor.forget_session(&id);
                    }
                }
                seen.retain(|(_, at)| *at >= mark);
            }
            Err(err) => warn!(cause = %err, "cannot check for revoked sessions"),
        }
    }
}

const REFUSED_FULL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const REFUSED_PER_IP: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 51\r\nConnection: close\r\n\r\ntoo many connections from your address to this hub\n";

/// Refused before any HTTP is read: answered raw, so that refusing costs
/// no more than accepting.
async fn refuse(mut socket: TcpStream, answer: &'static [u8]) {
    let _ = socket.write_all(answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_origin(origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn only_allowed_origins_pass() {
        let allowed = vec!["https://chorus.example.com/".to_owned()];
        assert!(origin_allowed(&with_origin(None), &[]).is_ok());
        assert!(origin_allowed(&with_origin(Some("https://chorus.example.com")), &allowed).is_ok());
        let refused = origin_allowed(&with_origin(Some("https://evil.example")), &allowed);
        assert!(refused.unwrap_err().contains("https://evil.example"));
        assert!(origin_allowed(&with_origin(Some("null")), &allowed).is_err());
        assert!(origin_allowed(&with_origin(Some("http://127.0.0.1:7420")), &[]).is_err());
    }

    #[test]
    fn header_tokens_are_matched_in_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(header_is(&headers, header::CONNECTION, "upgrade"));
        assert!(!header_is(&headers, header::UPGRADE, "websocket"));
    }
}
