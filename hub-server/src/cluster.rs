//! Several hubs on one PostgreSQL database as one service (ADR 0009): this
//! hub's lease, its claims on sessions, and where a connection for a
//! session claimed elsewhere goes.
//!
//! Invariants: a session's actor runs on a hub only under a claim made for
//! it (the claim's epoch fences every write it makes); claims on one hub
//! are made one at a time, and never for a session with a live actor here,
//! so two actors of one hub never share a claim; an actor whose claim the
//! database no longer shows is stopped within a heartbeat.

use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::wire::ErrorCode;
use rand::RngCore;
use tracing::{info, warn};

use crate::session::{Full, Registry, SessionCmd, SessionHandle};
use crate::storage::{Claim, Store};
use crate::HubConfig;

/// How long a hub's lease lasts without renewal: how long a dead hub's
/// sessions wait before another takes them over.
pub const LEASE: Duration = Duration::from_secs(3);
/// How often the lease is renewed and the claims checked.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a join waits for a session to become claimable (its holder's
/// lease to lapse) before it is refused as unavailable.
const CLAIM_PATIENCE: Duration = Duration::from_secs(10);
/// Between two attempts at a session held by a hub that does not answer.
const CLAIM_RETRY: Duration = Duration::from_millis(250);

/// This hub, as one of several.
pub struct Cluster {
    /// Random per process: a restarted hub is a new hub, and does not
    /// inherit the claims of the one it replaces before their lease lapses.
    pub hub_id: String,
    /// Where other hubs relay connections to this one: `ws://host:port/`.
    pub address: String,
    store: Store,
    /// Claims are made one at a time on a hub (see the invariants).
    claiming: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({} at {})", self.hub_id, self.address)
    }
}

enum Attempt {
    Local(SessionHandle),
    /// Another hub holds it; where it is, if its lease row says.
    Held(Option<String>),
}

/// Where a joining connection goes.
pub enum Target {
    Local(SessionHandle),
    /// Relay it to the hub at this address, which holds the session.
    Relay(String),
    /// Refuse it, saying why (the code is `unavailable` or `overloaded`).
    Refuse(ErrorCode, String),
}

impl Cluster {
    /// This hub on `store` (which must be shared: PostgreSQL), reachable
    /// by the other hubs at `address`. Takes its lease before it returns,
    /// so that a database that refuses fails the start.
    pub async fn join(
        store: Store,
        address: String,
    ) -> Result<Arc<Cluster>, crate::storage::StorageError> {
        let mut bytes = [0u8; 6];
        rand::rng().fill_bytes(&mut bytes);
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hub_id = format!("hub-{}-{suffix}", std::process::id());
        store.set_hub(&hub_id);
        store.heartbeat(&address, LEASE).await?;
        info!(hub = %hub_id, %address, "joined the service: sessions are claimed in the database (ADR 0009)");
        Ok(Arc::new(Cluster {
            hub_id,
            address,
            store,
            claiming: tokio::sync::Mutex::new(()),
        }))
    }

    /// Renews the lease every [`HEARTBEAT_EVERY`] and stops the actors of
    /// sessions the database says this hub no longer holds.
    pub async fn heartbeats(self: Arc<Self>, registry: Registry) {
        let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let owned = match self.store.heartbeat(&self.address, LEASE).await {
                Ok(owned) => owned,
                Err(err) => {
                    // Writes are fenced whatever happens; this only delays
                    // noticing a lost claim.
                    warn!(hub = %self.hub_id, cause = %err, "cannot renew this hub's lease");
                    continue;
                }
            };
            let owned: std::collections::HashMap<String, i64> = owned.into_iter().collect();
            for (session, epoch) in self.store.held() {
                if owned.get(&session) == Some(&epoch) {
                    continue;
                }
                warn!(session = %session, epoch, "another hub claimed this session; stopping here");
                self.store.drop_claim(&session, epoch);
                if let Some(handle) = registry.get(&session) {
                    let _ = handle.send(SessionCmd::Lost).await;
                }
            }
        }
    }

    /// Where a connection joining `session` goes: this hub's actor (claimed
    /// now if need be), or a relay to the hub holding it. `relayed`: the
    /// connection comes from another hub, and is never relayed again.
    pub async fn target(
        &self,
        session: &str,
        registry: &Registry,
        config: &HubConfig,
        relayed: bool,
    ) -> Target {
        let deadline = tokio::time::Instant::now() + CLAIM_PATIENCE;
        loop {
            match self.try_claim(session, registry, config).await {
                Err(refusal) => return refusal,
                Ok(Attempt::Local(handle)) => return Target::Local(handle),
                // A hub at our own address is an earlier process of ours,
                // dead: wait for its lease to lapse.
                Ok(Attempt::Held(Some(address))) if address != self.address => {
                    if relayed {
                        return Target::Refuse(
                            ErrorCode::Unavailable,
                            "this session is moving between hubs; reconnecting".into(),
                        );
                    }
                    return Target::Relay(address);
                }
                Ok(Attempt::Held(_)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Target::Refuse(
                    ErrorCode::Unavailable,
                    format!(
                        "session {session:?} is held by a hub that does not answer and whose \
                         lease has not lapsed yet; retrying"
                    ),
                );
            }
            tokio::time::sleep(CLAIM_RETRY).await;
        }
    }

    /// Claims the session unless this hub serves it already or another
    /// live hub holds it.
    async fn try_claim(
        &self,
        session: &str,
        registry: &Registry,
        config: &HubConfig,
    ) -> Result<Attempt, Target> {
        let _one_at_a_time = self.claiming.lock().await;
        if let Some(handle) = registry.get(session) {
            return Ok(Attempt::Local(handle));
        }
        match self.store.claim(session).await {
            Ok(Claim::Mine { epoch }) => {
                match registry.get_or_create(session, config, Some(epoch)) {
                    Ok(handle) => {
                        info!(session = %session, epoch, "session claimed");
                        Ok(Attempt::Local(handle))
                    }
                    Err(Full(max)) => {
                        let _ = self.store.release(session, epoch).await;
                        Err(Target::Refuse(
                        ErrorCode::Overloaded,
                        format!("this hub holds its limit of {max} sessions in memory; try again later"),
                    ))
                    }
                }
            }
            Ok(Claim::Elsewhere { address, .. }) => Ok(Attempt::Held(address)),
            Err(err) => Err(Target::Refuse(
                ErrorCode::Unavailable,
                format!("the hub cannot reach its storage to claim this session ({err}); retrying"),
            )),
        }
    }

    /// A clean exit: the lease goes, so nobody waits for it to lapse.
    pub async fn leave(&self) {
        if let Err(err) = self.store.leave().await {
            warn!(hub = %self.hub_id, cause = %err, "could not remove this hub's lease");
        }
    }
}
