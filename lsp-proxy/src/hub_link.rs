//! The proxy's WebSocket to the hub: connects (and reconnects with
//! backoff), says hello, forwards every hub frame to the core as an event
//! and writes what the core queues.

use std::time::Duration;

use chorus_protocol::wire::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::core::{Event, HubEvent};

/// Runs until the core goes away.
pub async fn run(
    url: String,
    hello: ClientMsg,
    events: mpsc::UnboundedSender<Event>,
    mut outgoing: mpsc::UnboundedReceiver<String>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Nagle off: a keystroke is one small frame that must leave now, not
        // wait for the previous one's ACK (measured: p99 keystroke latency
        // 56 ms with Nagle, 1.1 ms without; BENCHMARKS.md).
        match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
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
            Ok((ws, _)) => {
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
                                        if events.send(Event::Hub(HubEvent::Msg(msg))).is_err() {
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
