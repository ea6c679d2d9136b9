//! One proxy's WebSocket: decoding and checking its frames, the handshake,
//! and a writer task that drains the connection's bounded outbound queue.
//!
//! Bad input gets an `error` frame and the connection stays up; only frames
//! beyond the hard transport limit, a peer that cannot keep up, one that
//! does not say `hello` in time, or one that goes silent end it.
//!
//! A connection for a session another hub holds (ADR 0009) is relayed to
//! that hub: its frames are copied both ways, undecoded, after the hello.
//!
//! Silence: the hub pings every third of `idle_timeout`, and any frame
//! (a pong included: tungstenite answers pings for the peer as it reads)
//! counts as life. A peer that vanished without closing is so dropped and
//! leaves its session, instead of staying a ghost participant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chorus_protocol::wire::{
    validate_session_id, ClientMsg, DecodeError, ErrorCode, ServerMsg, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, instrument, warn};

use crate::access;
use crate::cluster::Target;
use crate::outbound::{self, Outbound};
use crate::session::{Full, JoinRequest, Registry, SessionCmd, SessionHandle};
use crate::HubConfig;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

struct Joined {
    session: SessionHandle,
    client_id: u64,
}

/// What the upgrade request said about the connection.
#[derive(Clone, Debug, Default)]
pub struct Route {
    /// The session named by the URL (`/ws/SESSION`), which the load
    /// balancer routed by; `hello` must name the same.
    pub session: Option<String>,
    /// Relayed by another hub (`x-chorus-relayed`): never relayed again.
    pub relayed: bool,
}

/// The header a relaying hub sets, with its id.
pub const RELAYED_HEADER: &str = "x-chorus-relayed";

#[instrument(skip_all, fields(peer = %peer))]
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    peer: String,
    registry: Registry,
    config: HubConfig,
    route: Route,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _open = crate::metrics::connection_open();
    let (mut sink, mut stream) = ws.split();
    // Room for a whole document's snapshot besides the usual traffic.
    let budget = config.outbound_bytes.max(2 * config.max_message_bytes);
    let (outbound, mut queue) = outbound::channel(config.outbound_queue, budget);
    let mut writer = tokio::spawn(async move {
        while let Some(frame) = queue.recv().await {
            // Write everything already queued, then flush once: one syscall
            // per burst instead of one per frame when fanning out.
            let len = frame.len();
            let fed = sink.feed(frame).await;
            queue.release(len);
            if fed.is_err() {
                return;
            }
            while let Some(frame) = queue.try_recv() {
                let len = frame.len();
                let fed = sink.feed(frame).await;
                queue.release(len);
                if fed.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let kick = Arc::new(Notify::new());
    let end = Arc::new(Notify::new());
    let mut pace = Pace::new(config.messages_per_second, config.message_burst);
    let mut joined: Option<Joined> = None;
    let mut kicked = false;
    let hello_by = Instant::now() + config.hello_timeout;
    let mut last_heard = Instant::now();
    let mut pings = tokio::time::interval(config.idle_timeout / 3);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pings.tick().await;
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = tokio::time::sleep_until(hello_by), if joined.is_none() => {
                let message = format!(
                    "no \"hello\" within {} s of connecting; connect again and say hello first",
                    config.hello_timeout.as_secs_f32()
                );
                debug!("{message}");
                crate::metrics::dropped(crate::metrics::Dropped::HelloTimeout);
                let _ = outbound.try_send(Message::text(error(ErrorCode::NotJoined, message).to_json()));
                break;
            }
            _ = pings.tick() => {
                if last_heard.elapsed() >= config.idle_timeout {
                    debug!(silent_for = ?last_heard.elapsed(), "peer went silent; dropping it");
                    crate::metrics::dropped(crate::metrics::Dropped::IdleTimeout);
                    break;
                }
                if outbound.try_send(Message::Ping(Default::default())).is_err() {
                    break;
                }
                continue;
            }
            _ = &mut writer => break,
            _ = kick.notified() => {
                kicked = true;
                break;
            }
            // Sent away by the session; its reason is already queued.
            _ = end.notified() => break,
        };
        last_heard = Instant::now();
        let reply = match frame {
            None => break,
            Some(Err(err)) => {
                debug!(cause = %err, "connection ended");
                crate::metrics::read_failed(&err);
                break;
            }
            Some(Ok(Message::Text(text))) => {
                pace.wait().await;
                if text.len() > config.max_message_bytes {
                    Some(error(
                        ErrorCode::TooLarge,
                        format!(
                            "message of {} bytes exceeds the limit of {} bytes",
                            text.len(),
                            config.max_message_bytes
                        ),
                    ))
                } else {
                    match ClientMsg::decode(&text) {
                        Err(DecodeError { code, message }) => Some(error(code, message)),
                        Ok(msg) => {
                            let notify = Notifies {
                                kick: &kick,
                                end: &end,
                            };
                            let flow = handle(
                                msg,
                                &mut joined,
                                &outbound,
                                notify,
                                &registry,
                                &config,
                                &route,
                            )
                            .await;
                            match flow {
                                Flow::Continue(reply) => reply,
                                Flow::Close(reply) => {
                                    crate::metrics::count_refusal(&reply);
                                    let _ = outbound.try_send(Message::text(reply.to_json()));
                                    break;
                                }
                                Flow::Relay(address) => {
                                    let notify = Notifies {
                                        kick: &kick,
                                        end: &end,
                                    };
                                    let hello = text.to_string();
                                    let relay = Relay {
                                        stream: &mut stream,
                                        outbound: &outbound,
                                        registry: &registry,
                                        config: &config,
                                        route: &route,
                                    };
                                    match relay.run(address, hello, &mut joined, notify).await {
                                        Relayed::JoinedHere => None,
                                        Relayed::Over => break,
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Some(Ok(Message::Binary(_))) => Some(error(
                ErrorCode::BinaryFrame,
                "binary frames are not part of the Chorus protocol; send JSON text frames",
            )),
            Some(Ok(Message::Close(_))) => break,
            Some(Ok(_)) => None, // ping/pong are answered by tungstenite
        };
        if let Some(reply) = reply {
            crate::metrics::count_refusal(&reply);
            if outbound.try_send(Message::text(reply.to_json())).is_err() {
                break;
            }
        }
    }
    if let Some(joined) = joined {
        joined
            .session
            .send(SessionCmd::Leave {
                client_id: joined.client_id,
            })
            .await;
    }
    drop(outbound);
    if kicked {
        // Too slow to keep: close now rather than drain its backlog.
        writer.abort();
        debug!("dropped as too slow");
        return;
    }
    // Let queued frames (a final error) reach the peer, but not forever.
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// A token bucket over one connection's frames. When it is empty the
/// reader sleeps instead of refusing: a flooding client is slowed down (its
/// TCP window fills), honest bursts pass, and nobody else is affected.
struct Pace {
    tokens: f64,
    per_second: f64,
    burst: f64,
    last: tokio::time::Instant,
}

impl Pace {
    fn new(per_second: u32, burst: u32) -> Self {
        Pace {
            tokens: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            last: tokio::time::Instant::now(),
        }
    }

    async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens < 1.0 {
            let short = (1.0 - self.tokens) / self.per_second;
            tokio::time::sleep(std::time::Duration::from_secs_f64(short)).await;
            self.last = tokio::time::Instant::now();
            self.tokens = 1.0;
        }
        self.tokens -= 1.0;
    }
}

enum Flow {
    Continue(Option<ServerMsg>),
    Close(ServerMsg),
    /// Relay the connection to the hub at this address (ADR 0009).
    Relay(String),
}

/// How long to wait for the holding hub to accept a relayed connection.
const RELAY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Between attempts at a holder that does not answer.
const RELAY_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a join keeps trying holders that do not answer.
const RELAY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

enum Relayed {
    /// The holder went away and this hub claimed the session: the
    /// connection is joined here and goes on as any other.
    JoinedHere,
    /// The relay ended (either side closed); so does the connection.
    Over,
}

/// A connection being relayed to the hub holding its session.
struct Relay<'a, S> {
    stream: &'a mut futures_util::stream::SplitStream<WebSocketStream<S>>,
    outbound: &'a Outbound,
    registry: &'a Registry,
    config: &'a HubConfig,
    route: &'a Route,
}

impl<S> Relay<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(
        self,
        mut address: String,
        hello: String,
        joined: &mut Option<Joined>,
        notify: Notifies<'_>,
    ) -> Relayed {
        let deadline = Instant::now() + RELAY_PATIENCE;
        let session = self.route_session(&hello);
        loop {
            match self.connect(&address, &session).await {
                Ok(upstream) => return self.pump(upstream, hello).await,
                Err(err) => debug!(%address, cause = %err, "the holding hub does not answer"),
            }
            if Instant::now() >= deadline {
                let message = "the hub holding this session does not answer; reconnecting";
                let _ = self.outbound.try_send(Message::text(
                    error(ErrorCode::Unavailable, message).to_json(),
                ));
                return Relayed::Over;
            }
            tokio::time::sleep(RELAY_RETRY).await;
            // The holder may be dead: once its lease lapses this hub may
            // claim the session, or another hub may have.
            let Ok(msg) = ClientMsg::decode(&hello) else {
                return Relayed::Over;
            };
            let again = Notifies {
                kick: notify.kick,
                end: notify.end,
            };
            match handle(
                msg,
                joined,
                self.outbound,
                again,
                self.registry,
                self.config,
                self.route,
            )
            .await
            {
                Flow::Continue(None) => return Relayed::JoinedHere,
                Flow::Continue(Some(reply)) | Flow::Close(reply) => {
                    let _ = self.outbound.try_send(Message::text(reply.to_json()));
                    return Relayed::Over;
                }
                Flow::Relay(next) => address = next,
            }
        }
    }

    fn route_session(&self, hello: &str) -> String {
        match ClientMsg::decode(hello) {
            Ok(ClientMsg::Hello { session, .. }) => session,
            _ => String::new(),
        }
    }

    async fn connect(
        &self,
        address: &str,
        session: &str,
    ) -> Result<WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, String>
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let base = address.trim_end_matches('/');
        let mut request = format!("{base}/ws/{session}")
            .into_client_request()
            .map_err(|err| err.to_string())?;
        let hub = self
            .config
            .cluster
            .as_ref()
            .map_or("", |cluster| cluster.hub_id.as_str());
        request.headers_mut().insert(
            RELAYED_HEADER,
            hub.parse().map_err(|_| "bad hub id".to_owned())?,
        );
        // As large as any frame the holder sends its own clients.
        let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(1 << 30))
            .max_frame_size(Some(1 << 30));
        let connecting =
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
        match tokio::time::timeout(RELAY_CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Copies frames both ways until either side ends.
    async fn pump(
        self,
        upstream: WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        hello: String,
    ) -> Relayed {
        let (mut up_sink, mut up_stream) = upstream.split();
        if up_sink.send(Message::text(hello)).await.is_err() {
            return Relayed::Over;
        }
        debug!("relaying to the hub holding the session");
        loop {
            tokio::select! {
                frame = self.stream.next() => match frame {
                    Some(Ok(frame @ (Message::Text(_) | Message::Binary(_)))) => {
                        if up_sink.send(frame).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                frame = up_stream.next() => match frame {
                    Some(Ok(frame @ Message::Text(_))) => {
                        if self.outbound.try_send(frame).is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = up_sink.close().await;
        Relayed::Over
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::error(code, message, None)
}

struct Notifies<'a> {
    kick: &'a Arc<Notify>,
    end: &'a Arc<Notify>,
}

async fn handle(
    msg: ClientMsg,
    joined: &mut Option<Joined>,
    outbound: &Outbound,
    notify: Notifies<'_>,
    registry: &Registry,
    config: &HubConfig,
    route: &Route,
) -> Flow {
    if let Some(j) = joined {
        if !j
            .session
            .send(SessionCmd::Msg {
                client_id: j.client_id,
                msg,
            })
            .await
        {
            return Flow::Close(error(ErrorCode::Overloaded, "session is shutting down"));
        }
        return Flow::Continue(None);
    }
    let ClientMsg::Hello {
        protocol,
        session,
        name,
        editor,
        instance,
        token,
    } = msg
    else {
        return Flow::Continue(Some(error(
            ErrorCode::NotJoined,
            "send \"hello\" with the protocol version, session and name first",
        )));
    };
    if protocol != PROTOCOL_VERSION {
        return Flow::Close(error(
            ErrorCode::IncompatibleProtocol,
            format!(
                "this hub speaks Chorus protocol {PROTOCOL_VERSION} but the client speaks {protocol}; upgrade chorus so both match"
            ),
        ));
    }
    if let Err(message) = validate_session_id(&session) {
        return Flow::Continue(Some(error(ErrorCode::BadSession, message)));
    }
    if let Some(routed) = route.session.as_ref().filter(|routed| **routed != session) {
        // The balancer sent this connection by the URL's session: a hello
        // for another would land on whichever hub that one hashed to.
        return Flow::Close(error(
            ErrorCode::BadSession,
            format!("connected to /ws/{routed} but said hello to session {session:?}; connect to /ws/{session}"),
        ));
    }
    let name = name.trim();
    // Names are shown in every editor and log: no line breaks or escapes.
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Flow::Continue(Some(error(
            ErrorCode::BadMessage,
            "name must be 1-64 characters, none of them control characters",
        )));
    }
    let role = match access::check(
        config.access,
        config.store.as_ref(),
        &session,
        token.as_deref(),
    )
    .await
    {
        Ok(role) => role,
        Err((code, message)) => {
            debug!(%session, ?code, "join refused");
            return Flow::Close(error(code, message));
        }
    };
    let client_id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let handle = match &config.cluster {
        Some(cluster) => match cluster
            .target(&session, registry, config, route.relayed)
            .await
        {
            Target::Local(handle) => handle,
            Target::Relay(address) => return Flow::Relay(address),
            Target::Refuse(code, message) => {
                debug!(%session, ?code, "join refused: {message}");
                return Flow::Close(error(code, message));
            }
        },
        None => match registry.get_or_create(&session, config, None) {
            Ok(handle) => handle,
            Err(Full(max)) => {
                warn!(%session, max, "session limit reached; join refused");
                return Flow::Close(error(
                    ErrorCode::Overloaded,
                    format!(
                        "this hub holds its limit of {max} sessions in memory; try again later"
                    ),
                ));
            }
        },
    };
    let sent = handle
        .send(SessionCmd::Join(JoinRequest {
            client_id,
            name: name.to_owned(),
            editor: editor.map(|e| e.chars().filter(|c| !c.is_control()).take(64).collect()),
            instance: instance.map(|i| i.chars().take(64).collect::<String>().into()),
            outbound: outbound.clone(),
            kick: notify.kick.clone(),
            end: notify.end.clone(),
            role,
        }))
        .await;
    if !sent {
        return Flow::Close(error(ErrorCode::Overloaded, "session is shutting down"));
    }
    *joined = Some(Joined {
        session: handle,
        client_id,
    });
    Flow::Continue(None)
}
