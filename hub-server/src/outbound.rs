//! A connection's outbound queue, bounded in bytes as well as in frames.
//!
//! Frames alone were not a bound: a client that stops reading and sends
//! cheap requests answered with a whole document (a wrong checksum, a
//! re-open) made the hub queue thousands of copies of it. The byte count
//! is added when a frame is queued and taken off when the writer has
//! written it; a queue past its budget refuses the frame, and whoever
//! queued it drops the connection as too slow, as for a full queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The sending side, cloned into the session actor.
#[derive(Clone, Debug)]
pub struct Outbound {
    frames: mpsc::Sender<Message>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The writer's side: frames in order, each released once written.
pub struct Queue {
    frames: mpsc::Receiver<Message>,
    queued: Arc<AtomicUsize>,
}

/// The queue is full (frames or bytes) or its writer is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused;

pub fn channel(max_frames: usize, max_bytes: usize) -> (Outbound, Queue) {
    let (frames, receiver) = mpsc::channel(max_frames.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    let outbound = Outbound {
        frames,
        queued: queued.clone(),
        max_bytes,
    };
    (
        outbound,
        Queue {
            frames: receiver,
            queued,
        },
    )
}

impl Outbound {
    pub fn try_send(&self, frame: Message) -> Result<(), Refused> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        // One frame larger than the whole budget still goes to an empty
        // queue: a document's snapshot must be able to reach its reader.
        if before > 0 && before + len > self.max_bytes {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return Err(Refused);
        }
        self.frames.try_send(frame).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            Refused
        })
    }

    /// Whether the writer is gone (its connection is ending), as opposed
    /// to merely behind.
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Queue {
    pub async fn recv(&mut self) -> Option<Message> {
        self.frames.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Message> {
        self.frames.try_recv().ok()
    }

    /// A frame of `len` bytes was written (or dropped): its bytes no
    /// longer count.
    pub fn release(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_bound_the_queue_and_written_frames_free_it() {
        let (outbound, mut queue) = channel(100, 10);
        assert_eq!(outbound.try_send(Message::text("123456")), Ok(()));
        assert_eq!(outbound.try_send(Message::text("1234")), Ok(()));
        assert_eq!(outbound.try_send(Message::text("1")), Err(Refused));
        assert_eq!(outbound.queued_bytes(), 10);
        let frame = queue.recv().await.unwrap();
        queue.release(frame.len());
        assert_eq!(outbound.try_send(Message::text("123")), Ok(()));
        assert_eq!(outbound.queued_bytes(), 7);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_reaches_an_empty_queue_only() {
        let (outbound, mut queue) = channel(100, 4);
        assert_eq!(outbound.try_send(Message::text("a large snapshot")), Ok(()));
        assert_eq!(outbound.try_send(Message::text("x")), Err(Refused));
        let frame = queue.recv().await.unwrap();
        queue.release(frame.len());
        assert_eq!(outbound.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn frames_bound_it_too() {
        let (outbound, _queue) = channel(1, 1000);
        assert_eq!(outbound.try_send(Message::text("a")), Ok(()));
        assert_eq!(outbound.try_send(Message::text("b")), Err(Refused));
        assert_eq!(outbound.queued_bytes(), 1);
    }
}
