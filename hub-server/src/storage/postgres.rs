//! The PostgreSQL backend: four connections, a session keeping to one;
//! and the claims by which several hubs share one database (ADR 0009).
//!
//! Invariants (ADR 0003): a session's statements all go through the same
//! connection, chosen by a hash of its name, so its writes stay in order;
//! no transaction holds a shared connection, which is why a snapshot and
//! the trimming of the log are one statement, and so is a rename or a
//! delete of all three tables' rows; a broken connection is made again by
//! the next statement that needs it. In a hub (once [`Pg::set_hub`] named
//! it), every write of a session is fenced: the same statement calls
//! `chorus_fence`, which fails it unless this hub still holds the session's
//! claim at the epoch it claimed (ADR 0009); a session this hub has not
//! claimed cannot be written at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{error, warn};

use super::schema::{
    AccessRow, DocRow, ListedRow, OpRow, SessionRow, APPEND_OP, CREATE_DOC, CREATE_SESSION,
    DELETE_DOCS, DELETE_LISTED, DELETE_LISTED_UNDER, DELETE_OPS, GET_ACCESS, LIST_SESSIONS,
    LOAD_DOCS, LOAD_LISTED, LOAD_OPS, PUT_LISTED, RENAME_DOCS, RENAME_LISTED, RENAME_OPS,
    REVOKED_SINCE, REVOKE_SESSION, SCHEMA, SNAPSHOT_DOC, STORED_REV, TRIM_OPS,
};
use super::{Backend, Claim, StorageError};

/// The tables and the function of claims (ADR 0009): PostgreSQL only,
/// since only PostgreSQL is shared by several hubs.
const CLUSTER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hubs (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS session_owners (
    session TEXT PRIMARY KEY,
    hub TEXT,
    epoch BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION chorus_fence(s TEXT, h TEXT, e BIGINT) RETURNS INT
LANGUAGE plpgsql AS $$
BEGIN
    -- FOR SHARE: a claim (an UPDATE of this row) waits until this write
    -- commits, and this write waits for a claim in flight, then sees it.
    PERFORM 1 FROM session_owners WHERE session = s AND hub = h AND epoch = e FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'hub % no longer holds session % (epoch %)', h, s, e
            USING ERRCODE = 'CH001';
    END IF;
    RETURN 1;
END $$;
";

/// The advisory lock taken while the schema is created (any number; the
/// port Chorus listens on by default).
const SCHEMA_LOCK: i64 = 7420;

/// SQLSTATE of `chorus_fence`'s refusal.
const FENCED: &str = "CH001";

const HEARTBEAT: &str = "INSERT INTO hubs (id, address, expires_at)
    VALUES ($1, $2, now() + $3 * interval '1 millisecond')
    ON CONFLICT (id) DO UPDATE SET address = excluded.address, expires_at = excluded.expires_at";
const OWNED: &str = "SELECT session, epoch FROM session_owners WHERE hub = $1";
/// Takes the session when nobody holds it, this hub does, or the holder's
/// lease lapsed (by the database's clock); every claim is a new epoch.
const CLAIM: &str = "INSERT INTO session_owners AS o (session, hub, epoch) VALUES ($1, $2, 1)
    ON CONFLICT (session) DO UPDATE SET hub = $2, epoch = o.epoch + 1
    WHERE o.hub IS NULL OR o.hub = $2
        OR NOT EXISTS (SELECT 1 FROM hubs h WHERE h.id = o.hub AND h.expires_at > now())
    RETURNING epoch";
const HOLDER: &str = "SELECT o.hub, h.address FROM session_owners o
    LEFT JOIN hubs h ON h.id = o.hub WHERE o.session = $1";
const RELEASE: &str =
    "UPDATE session_owners SET hub = NULL WHERE session = $1 AND hub = $2 AND epoch = $3";
const LEAVE: &str = "DELETE FROM hubs WHERE id = $1";

/// `writes` (whose parameters are `$1`, the session, to `$params`) as one
/// statement that fails unless this hub holds the session's claim: the
/// fence's hub and epoch are the two parameters after them.
fn fenced(writes: &[&str], params: usize) -> String {
    let ctes: Vec<String> = writes
        .iter()
        .enumerate()
        .map(|(i, write)| format!("w{i} AS ({write})"))
        .collect();
    format!(
        "WITH {} SELECT chorus_fence($1, ${}, ${})",
        ctes.join(", "),
        params + 1,
        params + 2
    )
}

/// Who this hub is and what it holds, for the fence.
#[derive(Default)]
struct Claims {
    /// Set once by a hub; `chorus session` commands leave it unset and
    /// write unfenced (they write no session's documents or log).
    hub: OnceLock<String>,
    epochs: Mutex<HashMap<String, i64>>,
}

/// A few PostgreSQL connections for the hub, each made again when it
/// breaks. A session always uses the same one, so its writes stay in order;
/// tokio-postgres pipelines concurrent queries on a connection, and more
/// than one lets the server work on several sessions at once.
pub(super) struct Pg {
    url: String,
    slots: Vec<tokio::sync::Mutex<Option<Arc<PgConn>>>>,
    claims: Claims,
}

const PG_CONNECTIONS: usize = 4;

/// A connection with the hot statement prepared once: `execute` with SQL
/// text would prepare it again each time, one more round trip per op.
struct PgConn {
    client: tokio_postgres::Client,
    append_op: tokio_postgres::Statement,
    append_op_fenced: tokio_postgres::Statement,
}

impl std::ops::Deref for PgConn {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl Pg {
    /// Creates the tables if needed and makes the hub-wide connection, so
    /// that a database that cannot be used fails here.
    pub(super) async fn open(url: &str) -> Result<Pg, StorageError> {
        // The tables first: each pooled connection prepares its
        // statements against them.
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        // Hubs starting together (a deploy, the tests) would otherwise race
        // in the catalog: `CREATE OR REPLACE FUNCTION` and even `CREATE
        // TABLE IF NOT EXISTS` fail with "tuple concurrently updated". The
        // lock is this connection's, which is closed right after.
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_lock({SCHEMA_LOCK}); {SCHEMA} {CLUSTER_SCHEMA} SELECT pg_advisory_unlock({SCHEMA_LOCK});"
            ))
            .await?;
        drop(client);
        let _ = connection.await;
        let pg = Pg::new(url.to_owned());
        pg.client("").await?;
        Ok(pg)
    }

    fn new(url: String) -> Pg {
        Pg {
            url,
            slots: (0..PG_CONNECTIONS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            claims: Claims::default(),
        }
    }

    /// From now on this is hub `id`: every session write is fenced.
    pub(super) fn set_hub(&self, id: &str) {
        let _ = self.claims.hub.set(id.to_owned());
    }

    /// The fence's parameters for `session`: `None` when unfenced (not a
    /// hub); an error when this hub holds no claim on it.
    fn fence(&self, session: &str) -> Result<Option<(&str, i64)>, StorageError> {
        let Some(hub) = self.claims.hub.get() else {
            return Ok(None);
        };
        let epochs = self.claims.epochs.lock().unwrap_or_else(|p| p.into_inner());
        match epochs.get(session) {
            Some(epoch) => Ok(Some((hub.as_str(), *epoch))),
            None => Err(StorageError::Fenced(format!(
                "hub {hub} holds no claim on session {session}"
            ))),
        }
    }

    /// Runs `writes` for `session` as one statement, fenced in a hub.
    async fn write(
        &self,
        session: &str,
        writes: &[&str],
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StorageError> {
        let client = self.client(session).await?;
        match self.fence(session)? {
            None => {
                let sql = match writes {
                    [one] => (*one).to_owned(),
                    _ => {
                        let (last, first) = writes.split_last().expect("a write");
                        let ctes: Vec<String> = first
                            .iter()
                            .enumerate()
                            .map(|(i, write)| format!("w{i} AS ({write})"))
                            .collect();
                        format!("WITH {} {last}", ctes.join(", "))
                    }
                };
                client.execute(sql.as_str(), params).await?;
            }
            Some((hub, epoch)) => {
                let sql = fenced(writes, params.len());
                let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.to_vec();
                all.push(&hub);
                all.push(&epoch);
                client
                    .query(sql.as_str(), &all)
                    .await
                    .map_err(fence_error)?;
            }
        }
        Ok(())
    }

    pub(super) async fn heartbeat(
        &self,
        address: &str,
        lease_ms: f64,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        let hub = self.claims.hub.get().map(String::as_str).unwrap_or("");
        let client = self.client("").await?;
        client
            .execute(HEARTBEAT, &[&hub, &address, &lease_ms])
            .await?;
        client
            .query(OWNED, &[&hub])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    pub(super) async fn claim(&self, session: &str) -> Result<Claim, StorageError> {
        let hub = self.claims.hub.get().map(String::as_str).unwrap_or("");
        let client = self.client(session).await?;
        if let Some(row) = client.query_opt(CLAIM, &[&session, &hub]).await? {
            let epoch: i64 = row.try_get(0)?;
            self.claims
                .epochs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(session.to_owned(), epoch);
            return Ok(Claim::Mine { epoch });
        }
        match client.query_opt(HOLDER, &[&session]).await? {
            Some(row) => Ok(Claim::Elsewhere {
                hub: row.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                address: row.try_get(1)?,
            }),
            // Released between the two statements: claim again.
            None => Ok(Claim::Elsewhere {
                hub: String::new(),
                address: None,
            }),
        }
    }

    pub(super) async fn release(&self, session: &str, epoch: i64) -> Result<(), StorageError> {
        {
            let mut epochs = self.claims.epochs.lock().unwrap_or_else(|p| p.into_inner());
            if epochs.get(session) == Some(&epoch) {
                epochs.remove(session);
            }
        }
        let hub = self.claims.hub.get().map(String::as_str).unwrap_or("");
        self.client(session)
            .await?
            .execute(RELEASE, &[&session, &hub, &epoch])
            .await?;
        Ok(())
    }

    /// The sessions this hub believes it holds, with their epochs.
    pub(super) fn held(&self) -> HashMap<String, i64> {
        self.claims
            .epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets a claim found lost, so that nothing more is written under it.
    pub(super) fn drop_claim(&self, session: &str, epoch: i64) {
        let mut epochs = self.claims.epochs.lock().unwrap_or_else(|p| p.into_inner());
        if epochs.get(session) == Some(&epoch) {
            epochs.remove(session);
        }
    }

    pub(super) async fn leave(&self) -> Result<(), StorageError> {
        let hub = self.claims.hub.get().map(String::as_str).unwrap_or("");
        self.client("").await?.execute(LEAVE, &[&hub]).await?;
        Ok(())
    }

    /// The connection for `key` (a session id; "" for hub-wide queries).
    async fn client(&self, key: &str) -> Result<Arc<PgConn>, StorageError> {
        let hash = key.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let mut slot = self.slots[hash % self.slots.len()].lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        if slot.is_some() {
            warn!("PostgreSQL connection lost; reconnecting");
        }
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                error!(cause = %err, "PostgreSQL connection ended");
            }
        });
        let append_op = client.prepare(APPEND_OP).await?;
        let append_op_fenced = client.prepare(&fenced(&[APPEND_OP], 6)).await?;
        let conn = Arc::new(PgConn {
            client,
            append_op,
            append_op_fenced,
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

impl Backend for Pg {
    async fn load_session(
        &self,
        session: &str,
    ) -> Result<(Vec<DocRow>, Vec<Vec<OpRow>>), StorageError> {
        let mut heads: Vec<DocRow> = Vec::new();
        let mut logs: Vec<Vec<OpRow>> = Vec::new();
        let client = self.client(session).await?;
        for row in client.query(LOAD_DOCS, &[&session]).await? {
            heads.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
        for (path, snapshot_rev, _) in &heads {
            let rows = client
                .query(LOAD_OPS, &[&session, path, snapshot_rev])
                .await?;
            let mut log = Vec::with_capacity(rows.len());
            for row in rows {
                log.push((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ));
            }
            logs.push(log);
        }
        Ok((heads, logs))
    }

    async fn create_doc(&self, session: &str, path: &str, text: &str) -> Result<(), StorageError> {
        self.write(session, &[CREATE_DOC], &[&session, &path, &text])
            .await
    }

    async fn append_op(
        &self,
        session: &str,
        path: &str,
        rev: i64,
        json: String,
        instance: Option<String>,
        seq: Option<i64>,
    ) -> Result<(), StorageError> {
        let fence = self.fence(session)?;
        let conn = self.client(session).await?;
        match fence {
            None => {
                conn.execute(
                    &conn.append_op,
                    &[&session, &path, &rev, &json, &instance, &seq],
                )
                .await?;
            }
            Some((hub, epoch)) => {
                conn.query(
                    &conn.append_op_fenced,
                    &[&session, &path, &rev, &json, &instance, &seq, &hub, &epoch],
                )
                .await
                .map_err(fence_error)?;
            }
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        session: &str,
        path: &str,
        rev: i64,
        text: &str,
    ) -> Result<(), StorageError> {
        // One statement, so atomic without holding a transaction on the
        // connection every session shares.
        self.write(
            session,
            &[SNAPSHOT_DOC, TRIM_OPS],
            &[&session, &path, &rev, &text],
        )
        .await
    }

    async fn stored_rev(&self, session: &str, path: &str) -> Result<Option<i64>, StorageError> {
        Ok(self
            .client(session)
            .await?
            .query_one(STORED_REV, &[&session, &path])
            .await?
            .try_get(0)?)
    }

    async fn load_listed(&self, session: &str) -> Result<Vec<ListedRow>, StorageError> {
        self.client(session)
            .await?
            .query(LOAD_LISTED, &[&session])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect()
    }

    async fn put_listed(
        &self,
        session: &str,
        path: &str,
        size: i64,
        reason: &'static str,
    ) -> Result<(), StorageError> {
        self.write(session, &[PUT_LISTED], &[&session, &path, &size, &reason])
            .await
    }

    async fn delete_listed(&self, session: &str, path: &str) -> Result<(), StorageError> {
        self.write(session, &[DELETE_LISTED], &[&session, &path])
            .await
    }

    async fn rename_paths(&self, session: &str, from: &str, to: &str) -> Result<(), StorageError> {
        // One statement, as for a snapshot: the three tables or none.
        self.write(
            session,
            &[RENAME_DOCS, RENAME_OPS, RENAME_LISTED],
            &[&session, &from, &to],
        )
        .await
    }

    async fn delete_paths(&self, session: &str, path: &str) -> Result<(), StorageError> {
        self.write(
            session,
            &[DELETE_DOCS, DELETE_OPS, DELETE_LISTED_UNDER],
            &[&session, &path],
        )
        .await
    }

    async fn create_session(
        &self,
        id: &str,
        now: i64,
        join_hash: &str,
        read_hash: &str,
    ) -> Result<u64, StorageError> {
        Ok(self
            .client(id)
            .await?
            .execute(CREATE_SESSION, &[&id, &now, &join_hash, &read_hash])
            .await?)
    }

    async fn session_access(&self, id: &str) -> Result<Option<AccessRow>, StorageError> {
        match self.client(id).await?.query_opt(GET_ACCESS, &[&id]).await? {
            Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))),
            None => Ok(None),
        }
    }

    async fn revoke_session(&self, id: &str) -> Result<u64, StorageError> {
        Ok(self
            .client(id)
            .await?
            .execute(REVOKE_SESSION, &[&id])
            .await?)
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
        self.client("")
            .await?
            .query(REVOKED_SINCE, &[&since])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    async fn list_sessions(&self) -> Result<Vec<SessionRow>, StorageError> {
        let mut out = Vec::new();
        for row in self.client("").await?.query(LIST_SESSIONS, &[]).await? {
            out.push((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ));
        }
        Ok(out)
    }
}

/// `chorus_fence`'s refusal as [`StorageError::Fenced`].
fn fence_error(err: tokio_postgres::Error) -> StorageError {
    match err.as_db_error() {
        Some(db) if db.code().code() == FENCED => StorageError::Fenced(db.message().to_owned()),
        _ => StorageError::Postgres(err),
    }
}
