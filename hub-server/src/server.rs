//! The listener: accepts TCP connections (TLS-wrapped when the hub has a
//! certificate), answers plain HTTP (`GET /healthz`) and upgrades WebSocket
//! requests on the same port.
//!
//! The HTTP request head is read here rather than by tungstenite so that one
//! port can serve both; the upgrade is then completed by hand
//! (`derive_accept_key`) and the socket handed to tungstenite as is.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

use crate::access::Access;
use crate::connection;
use crate::session::{Registry, SessionCmd};
use crate::HubConfig;

/// A request head longer than this is refused: nothing legitimate needs it.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the hub looks for sessions revoked by `chorus session revoke`
/// (which writes to the database, not to the hub).
const REVOCATION_POLL: Duration = Duration::from_secs(1);

/// Serves until `shutdown` completes.
pub async fn run(listener: TcpListener, config: HubConfig, shutdown: impl Future<Output = ()>) {
    let registry = Registry::default();
    let limit = std::sync::Arc::new(Semaphore::new(config.max_connections));
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
            tokio::spawn(refuse(socket));
            continue;
        };
        let _ = socket.set_nodelay(true);
        let registry = registry.clone();
        let config = config.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let peer = peer.to_string();
            match tls {
                None => handle_socket(socket, peer, registry, config).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => handle_socket(stream, peer, registry, config).await,
                        Ok(Err(err)) => debug!(%peer, cause = %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    info!("hub stopped accepting connections");
}

/// Tells live sessions that were revoked to send everyone away, and has
/// the executor drop what it keeps for them (their build cache).
///
/// A revocation is the only end a session has: an `--open` hub's sessions,
/// and a tokens hub's until revoked, live as long as their storage, so
/// their build caches do too (capped in size by the executor). A revoked
/// session that is created again starts with an empty cache.
async fn watch_revocations(
    store: crate::storage::Store,
    registry: Registry,
    executor: Option<std::sync::Arc<dyn chorus_sandbox::Executor>>,
) {
    let mut seen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    // Revocations from before this hub started matter too: a participant
    // cannot have joined them, but one second of overlap keeps the query
    // simple and nothing is revoked twice (`seen`).
    let mut since = crate::storage::now_secs() - 1;
    loop {
        tokio::time::sleep(REVOCATION_POLL).await;
        let checked_at = crate::storage::now_secs();
        match store.revoked_since(since).await {
            Ok(revoked) => {
                for (id, at) in revoked {
                    if seen.get(&id) == Some(&at) {
                        continue;
                    }
                    seen.insert(id.clone(), at);
                    if let Some(session) = registry.get(&id) {
                        session.send(SessionCmd::Revoked).await;
                    }
                    // Whether or not the session was live here: its cache
                    // outlives its actor.
                    if let Some(executor) = &executor {
                        executor.forget_session(&id);
                    }
                }
                since = checked_at - 1;
                seen.retain(|_, at| *at >= since);
            }
            Err(err) => warn!(cause = %err, "cannot check for revoked sessions"),
        }
    }
}

async fn refuse(mut socket: TcpStream) {
    let _ = socket
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
}

struct Head {
    method: String,
    path: String,
    websocket_key: Option<String>,
    upgrade_websocket: bool,
}

async fn read_head<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<Head> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.ok()?;
        total += n;
        if n == 0 || total > MAX_HEAD_BYTES {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut request = lines.first()?.split_whitespace();
    let method = request.next()?.to_owned();
    let path = request.next()?.to_owned();
    let mut head = Head {
        method,
        path,
        websocket_key: None,
        upgrade_websocket: false,
    };
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => head.upgrade_websocket = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => head.websocket_key = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(head)
}

async fn handle_socket<S>(socket: S, peer: String, registry: Registry, config: HubConfig)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = BufReader::new(socket);
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut reader)).await {
        Ok(Some(head)) => head,
        _ => {
            debug!(%peer, "no valid request head");
            let _ = reader
                .get_mut()
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    };
    let response: &[u8] = match (head.method.as_str(), head.path.as_str(), head.upgrade_websocket, &head.websocket_key) {
        ("GET", _, true, Some(key)) => {
            let accept = derive_accept_key(key.as_bytes());
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            let ws_config = WebSocketConfig::default()
                // Frames up to this size are read and answered with a
                // too_large error; beyond it the connection is cut.
                .max_message_size(Some(config.max_message_bytes * 16))
                .max_frame_size(Some(config.max_message_bytes * 16))
                // Frames are tiny keystrokes; tungstenite grows the buffer for
                // big ones. The default 128 KiB per connection dominated RSS
                // at 800 connections (BENCHMARKS.md).
                .read_buffer_size(8 * 1024);
            let ws = WebSocketStream::from_raw_socket(reader, Role::Server, Some(ws_config)).await;
            connection::serve(ws, peer, registry, config).await;
            return;
        }
        ("GET", "/healthz", _, _) => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        }
        ("GET", "/", _, _) => {
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Type: text/plain\r\nContent-Length: 40\r\nConnection: close\r\n\r\nthis is a Chorus hub: connect over ws://\n"
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    };
    let socket = reader.get_mut();
    let _ = socket.write_all(response).await;
    let _ = socket.shutdown().await;
}
