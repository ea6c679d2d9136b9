//! The ot.js client state machine: one per document per proxy, facing the hub.
//!
//! ```text
//!                 local op: send it
//!  Synchronized ───────────────────────► AwaitingConfirm(outstanding)
//!       ▲                                   │          │
//!       │ ack                    local op:  │          │ remote op: transform
//!       └───────────────────────  buffer it ▼          ▼ against outstanding
//!                       AwaitingWithBuffer(outstanding, buffer)
//!                         ack: send buffer → AwaitingConfirm(buffer)
//!                         remote op: transform against outstanding, then buffer
//! ```
//!
//! At most one op is unacknowledged at a time, so the hub transforms each
//! client op against exactly the ops that client had not yet seen. `rev` is
//! the last hub revision this client has seen; it moves on every ack and
//! every remote op.

use crate::ot::{transform, OpError, OperationSeq};

#[derive(Clone, Debug, PartialEq, Default)]
pub enum State {
    #[default]
    Synchronized,
    AwaitingConfirm(OperationSeq),
    AwaitingWithBuffer(OperationSeq, OperationSeq),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct OtClient {
    pub rev: u64,
    pub state: State,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("acknowledgement received with no operation outstanding")]
    UnexpectedAck,
    #[error(transparent)]
    Op(#[from] OpError),
}

/// An op ready to go to the hub, based on revision `rev`.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub rev: u64,
    pub op: OperationSeq,
}

impl OtClient {
    pub fn new(rev: u64) -> Self {
        OtClient {
            rev,
            state: State::Synchronized,
        }
    }

    pub fn is_synchronized(&self) -> bool {
        self.state == State::Synchronized
    }

    /// A local op on the client's current text. Returns what to send now.
    pub fn local(&mut self, op: OperationSeq) -> Result<Option<Outgoing>, ClientError> {
        let (state, out) = match std::mem::take(&mut self.state) {
            State::Synchronized => (
                State::AwaitingConfirm(op.clone()),
                Some(Outgoing { rev: self.rev, op }),
            ),
            State::AwaitingConfirm(outstanding) => {
                (State::AwaitingWithBuffer(outstanding, op), None)
            }
            State::AwaitingWithBuffer(outstanding, buffer) => match buffer.compose(&op) {
                Ok(buffer) => (State::AwaitingWithBuffer(outstanding, buffer), None),
                Err(err) => {
                    self.state = State::AwaitingWithBuffer(outstanding, buffer);
                    return Err(OpError::from(err).into());
                }
            },
        };
        self.state = state;
        Ok(out)
    }

    /// The hub acknowledged the outstanding op as revision `rev`.
    pub fn ack(&mut self, rev: u64) -> Result<Option<Outgoing>, ClientError> {
        let (state, out) = match std::mem::take(&mut self.state) {
            State::Synchronized => return Err(ClientError::UnexpectedAck),
            State::AwaitingConfirm(_) => (State::Synchronized, None),
            State::AwaitingWithBuffer(_, buffer) => (
                State::AwaitingConfirm(buffer.clone()),
                Some(Outgoing { rev, op: buffer }),
            ),
        };
        self.rev = rev;
        self.state = state;
        Ok(out)
    }

    /// Another client's op, ordered by the hub as revision `rev`. Returns the
    /// op to apply to the local text.
    pub fn remote(&mut self, rev: u64, op: &OperationSeq) -> Result<OperationSeq, ClientError> {
        let (state, local_op) = match &self.state {
            State::Synchronized => (State::Synchronized, op.clone()),
            State::AwaitingConfirm(outstanding) => {
                let (outstanding, op) = transform(outstanding, op)?;
                (State::AwaitingConfirm(outstanding), op)
            }
            State::AwaitingWithBuffer(outstanding, buffer) => {
                let (outstanding, op) = transform(outstanding, op)?;
                let (buffer, op) = transform(buffer, &op)?;
                (State::AwaitingWithBuffer(outstanding, buffer), op)
            }
        };
        self.rev = rev;
        self.state = state;
        Ok(local_op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::apply_to_string;
    use crate::ot::WireOp;

    fn op(json: &str) -> OperationSeq {
        serde_json::from_str::<WireOp>(json).unwrap().0
    }

    /// A tiny in-memory hub: the ordering rule every Chorus hub follows.
    struct Hub {
        text: String,
        history: Vec<OperationSeq>,
    }

    impl Hub {
        fn receive(&mut self, rev: u64, mut incoming: OperationSeq) -> (u64, OperationSeq) {
            for ordered in &self.history[rev as usize..] {
                incoming = transform(&incoming, ordered).unwrap().0;
            }
            self.text = apply_to_string(&self.text, &incoming).unwrap();
            self.history.push(incoming.clone());
            (self.history.len() as u64, incoming)
        }
    }

    #[test]
    fn states_move_as_documented() {
        let mut client = OtClient::new(0);
        let first = client.local(op(r#"["a"]"#)).unwrap().unwrap();
        assert_eq!(first.rev, 0);
        assert!(client.local(op(r#"[1, "b"]"#)).unwrap().is_none());
        assert!(client.local(op(r#"[2, "c"]"#)).unwrap().is_none());
        assert!(matches!(client.state, State::AwaitingWithBuffer(..)));
        let buffered = client.ack(1).unwrap().unwrap();
        assert_eq!(buffered.rev, 1);
        assert_eq!(buffered.op, op(r#"[1, "bc"]"#));
        assert!(client.ack(2).unwrap().is_none());
        assert!(client.is_synchronized());
        assert_eq!(client.ack(3), Err(ClientError::UnexpectedAck));
    }

    /// The "most formidable" case from Daniel Spiewak's "Understanding and
    /// Applying Operational Transformation": the client sends a, buffers b,
    /// while the server has already ordered c and d from someone else. The
    /// client must transform c and d through both a and b, and the hub must
    /// transform a and b through c and d, and both must land on one text.
    #[test]
    fn spiewak_most_formidable_case() {
        let start = "go";
        let mut hub = Hub {
            text: start.into(),
            history: vec![],
        };
        let mut client = OtClient::new(0);
        let mut client_text = start.to_string();

        // Client: a then b, locally.
        let a = op(r#"["A", 2]"#);
        client_text = apply_to_string(&client_text, &a).unwrap();
        let sent_a = client.local(a).unwrap().unwrap();
        let b = op(r#"[3, "B"]"#);
        client_text = apply_to_string(&client_text, &b).unwrap();
        assert!(client.local(b).unwrap().is_none());

        // Another participant's c and d reach the hub first.
        let (rev_c, c) = hub.receive(0, op(r#"[1, "C", 1]"#));
        let (rev_d, d) = hub.receive(1, op(r#"[-1, 2, "D"]"#));

        // The client hears c and d before the ack of a.
        for (rev, remote) in [(rev_c, c), (rev_d, d)] {
            let local = client.remote(rev, &remote).unwrap();
            client_text = apply_to_string(&client_text, &local).unwrap();
        }
        let (rev_a, _) = hub.receive(sent_a.rev, sent_a.op);
        let sent_b = client.ack(rev_a).unwrap().unwrap();
        assert_eq!(sent_b.rev, 3);
        let (rev_b, _) = hub.receive(sent_b.rev, sent_b.op);
        assert!(client.ack(rev_b).unwrap().is_none());

        assert_eq!(client_text, hub.text);
        assert_eq!(hub.text, "ACoBD");
    }
}
