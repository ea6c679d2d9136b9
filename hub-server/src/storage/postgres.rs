//! The PostgreSQL backend: four connections, a session keeping to one.
//!
//! Invariants (ADR 0003): a session's statements all go through the same
//! connection, chosen by a hash of its name, so its writes stay in order;
//! no transaction holds a shared connection, which is why a snapshot and
//! the trimming of the log are one statement, and so is a rename or a
//! delete of all three tables' rows; a broken connection is made again by
//! the next statement that needs it.

use std::sync::Arc;

use tracing::{error, warn};

use super::schema::{
    AccessRow, DocRow, ListedRow, OpRow, SessionRow, APPEND_OP, CREATE_DOC, CREATE_SESSION,
    DELETE_DOCS, DELETE_LISTED, DELETE_LISTED_UNDER, DELETE_OPS, GET_ACCESS, LIST_SESSIONS,
    LOAD_DOCS, LOAD_LISTED, LOAD_OPS, PUT_LISTED, RENAME_DOCS, RENAME_LISTED, RENAME_OPS,
    REVOKED_SINCE, REVOKE_SESSION, SCHEMA, SNAPSHOT_DOC, STORED_REV, TRIM_OPS,
};
use super::{Backend, StorageError};

/// A few PostgreSQL connections for the hub, each made again when it
/// breaks. A session always uses the same one, so its writes stay in order;
/// tokio-postgres pipelines concurrent queries on a connection, and more
/// than one lets the server work on several sessions at once.
pub(super) struct Pg {
    url: String,
    slots: Vec<tokio::sync::Mutex<Option<Arc<PgConn>>>>,
}

const PG_CONNECTIONS: usize = 4;

/// A connection with the hot statement prepared once: `execute` with SQL
/// text would prepare it again each time, one more round trip per op.
struct PgConn {
    client: tokio_postgres::Client,
    append_op: tokio_postgres::Statement,
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
        client.batch_execute(SCHEMA).await?;
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
        }
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
        let conn = Arc::new(PgConn { client, append_op });
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
        self.client(session)
            .await?
            .execute(CREATE_DOC, &[&session, &path, &text])
            .await?;
        Ok(())
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
        let conn = self.client(session).await?;
        conn.execute(
            &conn.append_op,
            &[&session, &path, &rev, &json, &instance, &seq],
        )
        .await?;
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
        let both = format!("WITH snap AS ({SNAPSHOT_DOC}) {TRIM_OPS}");
        self.client(session)
            .await?
            .execute(both.as_str(), &[&session, &path, &rev, &text])
            .await?;
        Ok(())
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
        self.client(session)
            .await?
            .execute(PUT_LISTED, &[&session, &path, &size, &reason])
            .await?;
        Ok(())
    }

    async fn delete_listed(&self, session: &str, path: &str) -> Result<(), StorageError> {
        self.client(session)
            .await?
            .execute(DELETE_LISTED, &[&session, &path])
            .await?;
        Ok(())
    }

    async fn rename_paths(&self, session: &str, from: &str, to: &str) -> Result<(), StorageError> {
        // One statement, as for a snapshot: the three tables or none.
        let all = format!("WITH d AS ({RENAME_DOCS}), o AS ({RENAME_OPS}) {RENAME_LISTED}");
        self.client(session)
            .await?
            .execute(all.as_str(), &[&session, &from, &to])
            .await?;
        Ok(())
    }

    async fn delete_paths(&self, session: &str, path: &str) -> Result<(), StorageError> {
        let all = format!("WITH d AS ({DELETE_DOCS}), o AS ({DELETE_OPS}) {DELETE_LISTED_UNDER}");
        self.client(session)
            .await?
            .execute(all.as_str(), &[&session, &path])
            .await?;
        Ok(())
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
