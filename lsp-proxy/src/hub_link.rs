//! The proxy's WebSocket to the hub: connects (and reconnects with
//! backoff), over TLS for `wss://`, says hello, forwards every hub frame to
//! the core as an event and writes what the core queues.
//!
//! [`Link`] is the core's end of it: the queue, whether the hub welcomed
//! us, and what the user has been told about the connection.
//!
//! Invariant: messages reach the hub only between its welcome and the
//! connection's end. Anything queued for an earlier connection is dropped
//! by [`run`]; the welcome's rejoin re-sends what still matters.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::wire::{ClientMsg, ErrorCode, Role, ServerMsg, DEFAULT_MAX_MESSAGE_BYTES};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tower_lsp_server::ls_types::MessageType;
use tracing::{debug, error, info, warn};

use crate::core::{Event, HubEvent};
use crate::lsp_ext::{self, ConnectionParams, ConnectionState};
use crate::notifier::Notifier;

/// How often, at most, the user hears that an edit was undone for being
/// read-only.
const READ_ONLY_NOTICE_EVERY: Duration = Duration::from_secs(5);

/// The core's end of the hub link.
pub(crate) struct Link {
    /// Queue for [`run`]'s writer; `None` when no session is configured,
    /// which means nothing is shared at all.
    outgoing: Option<mpsc::UnboundedSender<String>>,
    /// From the hub's welcome until the connection ends: see the module's
    /// invariant.
    connected: bool,
    /// Whether the user was already told the hub is unreachable, so that
    /// each retry does not say it again.
    told_offline: bool,
    /// What this proxy's token allows, as the hub said at welcome.
    role: Role,
    /// When the user was last told an edit was undone for being
    /// read-only: once per burst of typing, not once per keystroke.
    read_only_told: Option<Instant>,
    /// The session's name, for what the user and plugins are told.
    session: String,
    /// Our participant id in the session, from the last welcome: the hub
    /// names who did what with it (renames and deletes).
    client_id: Option<u64>,
    /// The largest frame the hub takes, as its welcome said (the default
    /// until then, and with hubs that do not say).
    max_message_bytes: usize,
    /// Where what the user and plugins are told goes.
    notifier: Notifier,
}

impl Link {
    pub(crate) fn new(notifier: Notifier) -> Self {
        Link {
            outgoing: None,
            connected: false,
            told_offline: false,
            role: Role::Editor,
            read_only_told: None,
            session: String::new(),
            client_id: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            notifier,
        }
    }

    /// Starts [`run`] for `session`; it reports back through `events`.
    pub(crate) fn start(
        &mut self,
        session: String,
        url: String,
        tls: Option<Arc<rustls::ClientConfig>>,
        hello: ClientMsg,
        events: mpsc::UnboundedSender<Event>,
    ) {
        self.session = session;
        let (tx, rx) = mpsc::unbounded_channel();
        self.outgoing = Some(tx);
        tokio::spawn(run(url, tls, hello, events, rx));
    }

    /// Whether a session is configured (and so anything is shared).
    pub(crate) fn is_configured(&self) -> bool {
        self.outgoing.is_some()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the hub said our token only lets us read.
    pub(crate) fn is_read_only(&self) -> bool {
        self.role == Role::ReadOnly
    }

    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// The largest frame the hub takes: a message longer than this is
    /// refused and its connection closed.
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Whether `client_id` is us (in the current connection).
    pub(crate) fn is_me(&self, client_id: u64) -> bool {
        self.client_id == Some(client_id)
    }

    /// Queues `msg` for the hub; dropped while not connected.
    pub(crate) fn send(&self, msg: &ClientMsg) {
        if let (Some(hub), true) = (&self.outgoing, self.connected) {
            match serde_json::to_string(msg) {
                Ok(text) => {
                    let _ = hub.send(text);
                }
                Err(err) => error!(cause = %err, "cannot encode message"),
            }
        }
    }

    /// The hub accepted us into `session` as `role`.
    pub(crate) fn welcomed(
        &mut self,
        client_id: u64,
        session: &str,
        role: Role,
        max_message_bytes: Option<u64>,
    ) {
        info!(client_id, %session, ?role, ?max_message_bytes, "joined session");
        self.connected = true;
        self.max_message_bytes = max_message_bytes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        self.client_id = Some(client_id);
        if role == Role::ReadOnly && self.role != Role::ReadOnly {
            self.notifier.tell_user(
                MessageType::INFO,
                format!("Chorus: you joined session {session} read-only: you see everyone's edits and runs, and edits you make are undone."),
            );
        }
        self.role = role;
        self.notifier
            .notify::<lsp_ext::Connection>(ConnectionParams {
                state: ConnectionState::Online,
                session: session.to_owned(),
                role: Some(role),
                client_id: Some(client_id),
                reason: None,
            });
        if self.told_offline {
            self.told_offline = false;
            self.notifier.tell_user(
                MessageType::INFO,
                format!("Chorus: connected to session {session}."),
            );
        }
    }

    /// The connection ended, or could not be made; [`run`] retries.
    pub(crate) fn disconnected(&mut self, reason: &str) {
        let was_connected = std::mem::replace(&mut self.connected, false);
        if was_connected {
            self.notifier
                .notify::<lsp_ext::Connection>(ConnectionParams {
                    state: ConnectionState::Offline,
                    session: self.session.clone(),
                    role: None,
                    client_id: None,
                    reason: Some(reason.to_owned()),
                });
        }
        if was_connected || !self.told_offline {
            self.told_offline = true;
            self.notifier.tell_user(
                MessageType::WARNING,
                format!("Chorus: {reason}. Retrying; edits are not shared until it is back."),
            );
        }
    }

    /// Tells the user about a hub error, where there is something to tell.
    /// What the error does to a document is the documents' business.
    pub(crate) fn hub_error(&mut self, code: ErrorCode, message: &str) {
        if code == ErrorCode::ChecksumMismatch {
            // The snapshot that follows resyncs the document; say it
            // loudly, it means a bug somewhere.
            error!(%message, "checksum mismatch with the hub");
            self.notifier
                .log(MessageType::ERROR, format!("Chorus: {message}"));
        }
        if code == ErrorCode::ReadOnly {
            // Typing in a read-only session refuses every keystroke; one
            // message per burst is plenty.
            let quiet = self
                .read_only_told
                .is_some_and(|at| at.elapsed() < READ_ONLY_NOTICE_EVERY);
            if !quiet {
                self.read_only_told = Some(Instant::now());
                self.notifier
                    .tell_user(MessageType::WARNING, format!("Chorus: {message}"));
            }
        } else if code.is_fatal_for_join() {
            self.notifier
                .notify::<lsp_ext::Connection>(ConnectionParams {
                    state: ConnectionState::Refused,
                    session: self.session.clone(),
                    role: None,
                    client_id: None,
                    reason: Some(message.to_owned()),
                });
            self.notifier.tell_user(
                MessageType::ERROR,
                format!("Chorus hub: {message}. Not retrying; fix the settings and restart the Chorus client."),
            );
        } else if code == ErrorCode::Unavailable {
            // Refused again at each retry while the hub's storage is down:
            // say it once, until the proxy is back.
            if !self.told_offline {
                self.notifier
                    .tell_user(MessageType::ERROR, format!("Chorus hub: {message}"));
            }
        } else if matches!(
            code,
            ErrorCode::NotJoined
                | ErrorCode::RunBusy
                | ErrorCode::RunsDisabled
                | ErrorCode::RunRefused
                | ErrorCode::NoRun
                | ErrorCode::NoTerminal
        ) || (code == ErrorCode::Overloaded && self.is_connected())
        {
            // Overloaded before the welcome refuses the join, and the
            // retries say what they need to; after it, input (a run's, the
            // terminal's) came faster than it could be taken.
            self.notifier
                .tell_user(MessageType::ERROR, format!("Chorus hub: {message}"));
        }
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
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

/// Why sending `token` to `url` would expose it, if it would: a token over
/// plain `ws://` to another machine can be read by anyone on the way and
/// lets them join the session.
pub(crate) fn token_in_clear(url: &str, token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty())?;
    let request = url.into_client_request().ok()?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "your session token goes to {host} unencrypted (ws://): anyone on the network can read it and join. Use a wss:// hub (chorus hub --tls-cert/--tls-key) unless this network is trusted."
        )
    })
}

/// The largest frame taken from the hub. The hub sends a whole document,
/// or the history to catch up on, in one frame: a hub that allows large
/// documents sends frames far over tungstenite's 16 MiB default, which used
/// to make every reconnect fail. The hub bounds what it sends; this only
/// keeps a broken one from exhausting memory.
const MAX_HUB_FRAME_BYTES: usize = 1 << 30;

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_HUB_FRAME_BYTES))
        .max_frame_size(Some(MAX_HUB_FRAME_BYTES))
}

pub(crate) async fn connect(
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
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
        .await
        .map_err(|err| err.to_string())?;
    Ok(ws)
}

/// The URL of `session` on the hub at `hub`: `/ws/SESSION` after any path
/// the hub URL has, so that a load balancer in front of several hubs can
/// route a session's connections by the URL (ADR 0009).
pub(crate) fn session_url(hub: &str, session: &str) -> String {
    format!("{}/ws/{session}", hub.trim_end_matches('/'))
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
    let session_url = match &hello {
        ClientMsg::Hello { session, .. } => session_url(&url, session),
        _ => url.clone(),
    };
    loop {
        match connect(&session_url, tls.as_ref()).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    #[test]
    fn a_token_over_plain_websocket_to_another_machine_is_flagged() {
        let token = Some("secret");
        assert!(token_in_clear("ws://hub.example.com:7420", token).is_some());
        assert!(token_in_clear("ws://10.0.0.5:7420/", token).is_some());
        assert!(token_in_clear("wss://hub.example.com", token).is_none());
        assert!(token_in_clear("ws://127.0.0.1:7420", token).is_none());
        assert!(token_in_clear("ws://localhost:7420", token).is_none());
        assert!(token_in_clear("ws://[::1]:7420", token).is_none());
        assert!(token_in_clear("ws://hub.example.com", None).is_none());
    }

    /// Issue 17: a hub allowing large documents sends one frame per
    /// document; past tungstenite's 16 MiB default the proxy refused it and
    /// could never join again.
    #[tokio::test]
    async fn frames_past_sixteen_mebibytes_are_taken() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = "x".repeat(20 << 20);
        let sent = text.clone();
        let hub = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_frame_size(None)
                .max_message_size(None);
            let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config))
                .await
                .unwrap();
            ws.send(Message::text(sent)).await.unwrap();
            ws
        });
        let mut ws = connect(&format!("ws://127.0.0.1:{port}/"), None)
            .await
            .unwrap();
        let frame = ws.next().await.unwrap().expect("the large frame is read");
        assert_eq!(frame.len(), text.len());
        drop(hub.await.unwrap());
    }
}
