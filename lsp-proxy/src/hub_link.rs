//! The proxy's WebSocket to the hub: connects (and reconnects with
//! backoff), over TLS for `wss://`, says hello, forwards every hub frame to
//! the core as an event and writes what the core queues.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::wire::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

use crate::core::{Event, HubEvent};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The trust for `wss://`: the system's roots, plus `extra_ca` (PEM) for
/// hubs with a self-signed or private certificate.
pub fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped, not fatal: a private CA
    // may be all that is needed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| format!("cannot read CA certificate {}: {err}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|err| format!("bad CA certificate in {}: {err}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| err.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn connect(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<WebSocketStream<Box<dyn Io>>, String> {
    let request = url
        .into_client_request()
        .map_err(|err| format!("bad hub URL: {err}"))?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err("the hub URL must start with ws:// or wss://".into()),
    };
    let host = uri.host().ok_or("the hub URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((host_only, port))
        .await
        .map_err(|err| err.to_string())?;
    // Nagle off: a keystroke is one small frame that must leave now, not
    // wait for the previous one's ACK (measured: p99 keystroke latency
    // 56 ms with Nagle, 1.1 ms without; BENCHMARKS.md).
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if secure {
        let tls = tls.ok_or("wss:// needs a TLS configuration")?;
        let name = ServerName::try_from(host_only.to_owned())
            .map_err(|err| format!("bad host name {host_only:?}: {err}"))?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        Box::new(
            connector
                .connect(name, tcp)
                .await
                .map_err(|err| format!("TLS: {err}"))?,
        )
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, None)
        .await
        .map_err(|err| err.to_string())?;
    Ok(ws)
}

/// Runs until the core goes away, or the hub refuses this proxy for good
/// (a wrong token, say), which reconnecting cannot fix.
pub async fn run(
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    hello: ClientMsg,
    events: mpsc::UnboundedSender<Event>,
    mut outgoing: mpsc::UnboundedReceiver<String>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&url, tls.as_ref()).await {
            Err(err) => {
                let reason = format!("cannot reach the Chorus hub at {url}: {err}");
                debug!(%reason);
                if events
                    .send(Event::Hub(HubEvent::Disconnected(reason)))
                    .is_err()
                {
                    return;
                }
            }
            Ok(ws) => {
                backoff = Duration::from_millis(100);
                info!(%url, "connected to hub");
                // Frames queued for an earlier connection belong to state
                // the core is about to rebuild: drop them.
                while outgoing.try_recv().is_ok() {}
                let (mut sink, mut stream) = ws.split();
                let hello = serde_json::to_string(&hello).unwrap_or_default();
                let mut reason = String::from("hub closed the connection");
                if sink.send(Message::text(hello)).await.is_ok() {
                    loop {
                        tokio::select! {
                            frame = stream.next() => match frame {
                                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMsg>(&text) {
                                    Ok(msg) => {
                                        let fatal = matches!(&msg, ServerMsg::Error { code, .. } if code.is_fatal_for_join());
                                        if events.send(Event::Hub(HubEvent::Msg(msg))).is_err() {
                                            return;
                                        }
                                        if fatal {
                                            warn!("the hub refused this proxy; not reconnecting");
                                            return;
                                        }
                                    }
                                    Err(err) => warn!(cause = %err, "unreadable frame from hub"),
                                },
                                Some(Ok(Message::Close(_))) | None => break,
                                Some(Ok(_)) => {}
                                Some(Err(err)) => {
                                    reason = format!("connection to hub lost: {err}");
                                    break;
                                }
                            },
                            out = outgoing.recv() => match out {
                                Some(text) => {
                                    if let Err(err) = sink.send(Message::text(text)).await {
                                        reason = format!("connection to hub lost: {err}");
                                        break;
                                    }
                                }
                                None => return,
                            },
                        }
                    }
                }
                warn!(%reason, "hub connection ended");
                if events
                    .send(Event::Hub(HubEvent::Disconnected(reason)))
                    .is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
