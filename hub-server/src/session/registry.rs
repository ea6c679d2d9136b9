//! The hub's sessions by id: where a connection finds its session's actor.
//!
//! Invariants: the map's lock is held only for a lookup, an insert or a
//! removal, never across an await; a session has at most one live actor,
//! and an actor that ended (revoked, its storage failed, or unloaded when
//! idle) is replaced at the next join by a new one that loads the session
//! afresh. An actor is removed only while nothing but the map holds its
//! sender, under the map's lock: no connection can be about to join it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::info;

use super::{Session, SessionCmd, SessionHandle};
use crate::HubConfig;

/// All sessions on this hub, created on first join.
#[derive(Clone, Default)]
pub struct Registry {
    sessions: Arc<Mutex<HashMap<String, SessionHandle>>>,
}

/// The hub holds as many sessions in memory as it may.
#[derive(Debug, PartialEq, Eq)]
pub struct Full(pub usize);

impl Registry {
    /// The session's live actor, or a new one; `epoch` is the claim a new
    /// one runs under on a shared database (ADR 0009).
    pub fn get_or_create(
        &self,
        id: &str,
        config: &HubConfig,
        epoch: Option<i64>,
    ) -> Result<SessionHandle, Full> {
        // Held only for a map lookup; never across an await.
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = sessions.get(id) {
            if !handle.tx.is_closed() {
                return Ok(handle.clone());
            }
            // The actor ended (revoked, or its storage failed): start a new
            // one, which loads the session afresh.
            sessions.remove(id);
        }
        if sessions.len() >= config.max_sessions {
            sessions.retain(|_, handle| !handle.tx.is_closed());
            if sessions.len() >= config.max_sessions {
                return Err(Full(config.max_sessions));
            }
        }
        info!(session = %id, "session started");
        let handle = Session::spawn(id, config, self.clone(), epoch);
        sessions.insert(id.to_owned(), handle.clone());
        Ok(handle)
    }

    /// Removes the actor `me` of session `id` if nothing but this map holds
    /// its sender and nothing waits in its queue; the actor then ends. The
    /// next join loads the session again from storage.
    pub(super) fn unload_if_unused(&self, id: &str, me: &mpsc::WeakSender<SessionCmd>) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(handle) = sessions.get(id) else {
            return false;
        };
        let Some(mine) = me.upgrade() else {
            return false;
        };
        // The map's sender and `mine`: no connection holds one.
        let unused = mine.same_channel(&handle.tx)
            && handle.tx.strong_count() == 2
            && handle.tx.capacity() == handle.tx.max_capacity();
        if unused {
            sessions.remove(id);
        }
        unused
    }

    /// The live session of this id, if any.
    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(id).filter(|h| !h.tx.is_closed()).cloned()
    }

    /// Tells every session to hand over (release its claim, send its
    /// participants to reconnect) and waits until each has, or `patience`
    /// has passed.
    pub async fn drain(&self, patience: std::time::Duration) {
        let handles: Vec<SessionHandle> = {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.values().cloned().collect()
        };
        for handle in &handles {
            let _ = handle.tx.send(SessionCmd::Drain).await;
        }
        let _ = tokio::time::timeout(patience, async {
            for handle in &handles {
                handle.tx.closed().await;
            }
        })
        .await;
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
