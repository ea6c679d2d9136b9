//! The hub's sessions by id: where a connection finds its session's actor.
//!
//! Invariants: the map's lock is held only for a lookup or an insert, never
//! across an await; a session has at most one live actor, and an actor that
//! ended (revoked, or its storage failed) is replaced at the next join by a
//! new one that loads the session afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::info;

use super::{Session, SessionHandle};
use crate::HubConfig;

/// All sessions on this hub, created on first join.
#[derive(Clone, Default)]
pub struct Registry {
    sessions: Arc<Mutex<HashMap<String, SessionHandle>>>,
}

impl Registry {
    pub fn get_or_create(&self, id: &str, config: &HubConfig) -> SessionHandle {
        // Held only for a map lookup; never across an await.
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = sessions.get(id) {
            if !handle.tx.is_closed() {
                return handle.clone();
            }
            // The actor ended (revoked, or its storage failed): start a new
            // one, which loads the session afresh.
        }
        info!(session = %id, "session started");
        let handle = Session::spawn(id, config);
        sessions.insert(id.to_owned(), handle.clone());
        handle
    }

    /// The live session of this id, if any.
    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(id).filter(|h| !h.tx.is_closed()).cloned()
    }

    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
