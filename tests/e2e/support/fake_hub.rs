//! Just enough of a hub to test the proxy against messages the real hub
//! cannot be made to send on cue (a run's diagnostics, a terminal's
//! output): it welcomes everyone, opens every document as sent, answers
//! pings, records every other frame, and hands each to the test's `answer`,
//! which may send anything back through the [`Room`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chorus_protocol::wire::{ClientMsg, Participant, Role, ServerMsg, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the test does with a frame: `(room, sender's client id, frame)`.
pub type Answer = Arc<dyn Fn(&Room, u64, &ClientMsg) + Send + Sync>;

pub struct FakeHub {
    pub url: String,
    room: Room,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everyone connected, and what they sent.
#[derive(Clone, Default)]
pub struct Room {
    state: Arc<Mutex<RoomState>>,
}

#[derive(Default)]
struct RoomState {
    /// `(client id, name, queue to its socket)`, in the order welcomed.
    peers: Vec<(u64, String, mpsc::UnboundedSender<String>)>,
    /// Every frame after the hello but pings and opens, with its sender.
    received: Vec<(u64, ClientMsg)>,
}

impl Room {
    fn state(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send(&self, client_id: u64, msg: &ServerMsg) {
        for (id, _, peer) in &self.state().peers {
            if *id == client_id {
                let _ = peer.send(msg.to_json());
            }
        }
    }

    pub fn broadcast(&self, msg: &ServerMsg) {
        for (_, _, peer) in &self.state().peers {
            let _ = peer.send(msg.to_json());
        }
    }

    /// The name `client_id` said hello with.
    pub fn name_of(&self, client_id: u64) -> String {
        let state = self.state();
        let peer = state.peers.iter().find(|(id, _, _)| *id == client_id);
        peer.map_or_else(|| "?".to_owned(), |(_, name, _)| name.clone())
    }

    /// The frames received so far, in order, with their senders.
    pub fn received(&self) -> Vec<(u64, ClientMsg)> {
        self.state().received.clone()
    }
}

impl FakeHub {
    pub async fn start(answer: Answer) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("address"));
        let room = Room::default();
        let task = tokio::spawn({
            let room = room.clone();
            async move {
                let mut next_client = 1;
                while let Ok((socket, _)) = listener.accept().await {
                    let client_id = next_client;
                    next_client += 1;
                    tokio::spawn(serve(socket, client_id, room.clone(), answer.clone()));
                }
            }
        });
        FakeHub { url, room, task }
    }

    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Waits until the frames received satisfy `accept`; panics with them
    /// otherwise.
    pub async fn wait_received(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&[(u64, ClientMsg)]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.room.received();
            if accept(&received) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fake hub never received {what}; it got {received:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(socket: tokio::net::TcpStream, client_id: u64, room: Room, answer: Answer) {
    let Ok(ws) = tokio_tungstenite::accept_async(socket).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
    });
    let send = |msg: &ServerMsg| {
        let _ = tx.send(msg.to_json());
    };
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else {
            continue;
        };
        let Ok(msg) = serde_json::from_str::<ClientMsg>(text.as_str()) else {
            continue;
        };
        match msg {
            ClientMsg::Hello { session, name, .. } => {
                send(&ServerMsg::Welcome {
                    protocol: PROTOCOL_VERSION,
                    session,
                    client_id,
                    participants: Vec::<Participant>::new(),
                    role: Role::Editor,
                    workspace: None,
                    max_message_bytes: None,
                });
                room.state().peers.push((client_id, name, tx.clone()));
            }
            ClientMsg::Open { doc, text, .. } => send(&ServerMsg::Opened {
                doc,
                rev: 0,
                text,
                created: true,
                history: None,
                last_seq: None,
            }),
            ClientMsg::Ping { nonce } => send(&ServerMsg::Pong { nonce }),
            other => {
                room.state().received.push((client_id, other.clone()));
                answer(&room, client_id, &other);
            }
        }
    }
}
