//! Durable sessions: each document's latest snapshot plus the operations
//! since it, and each session's access tokens (as hashes). Embedded SQLite
//! under `--data DIR` by default, PostgreSQL with `--database postgres://…`;
//! both speak the same schema.
//!
//! Invariant: an op is in the log before its sender is acknowledged, so
//! every acknowledged character survives a crash of the hub (`kill -9`
//! included: SQLite's WAL with `synchronous = NORMAL` loses nothing when
//! only the process dies; PostgreSQL commits each insert).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_protocol::ot::{apply_to_rope, OperationSeq, WireOp};
use ropey::Rope;
use rusqlite::{params, Connection, OptionalExtension};
use tracing::{error, warn};

use crate::document::Author;

/// Operations kept in the log before they are folded into a snapshot.
pub const SNAPSHOT_EVERY: u64 = 1000;

/// Where sessions are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// `DIR/chorus.db`, embedded.
    Sqlite(PathBuf),
    /// A `postgres://` connection string.
    Postgres(String),
}

impl Database {
    /// A `--database` value: a PostgreSQL URL, or a directory for SQLite.
    pub fn parse(value: &str) -> Database {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Database::Postgres(value.to_owned())
        } else {
            Database::Sqlite(PathBuf::from(
                value.strip_prefix("sqlite://").unwrap_or(value),
            ))
        }
    }

    /// For logs: never the password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(dir) => format!("SQLite in {}", dir.join("chorus.db").display()),
            Database::Postgres(url) => {
                let host = url.rsplit('@').next().unwrap_or(url);
                let host = host
                    .trim_start_matches("postgresql://")
                    .trim_start_matches("postgres://");
                format!("PostgreSQL at {host}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("stored operation for {path} at revision {rev} is unreadable: {reason}")]
    Corrupt {
        path: String,
        rev: u64,
        reason: String,
    },
    #[error("session {0:?} already exists; revoke it first to issue new tokens")]
    SessionExists(String),
    #[error("SQLite: the commit failed: {0}")]
    Commit(String),
    #[error("the storage thread is gone")]
    Closed,
}

/// A document as stored: a snapshot and the ops logged since.
#[derive(Debug, PartialEq)]
pub struct StoredDoc {
    pub path: String,
    pub snapshot_rev: u64,
    pub snapshot_text: String,
    pub log: Vec<StoredOp>,
}

#[derive(Debug, PartialEq)]
pub struct StoredOp {
    pub rev: u64,
    pub op: OperationSeq,
    pub author: Option<Author>,
}

impl StoredDoc {
    /// The text after every logged op.
    pub fn text(&self) -> Result<String, StorageError> {
        let mut rope = Rope::from_str(&self.snapshot_text);
        for logged in &self.log {
            apply_to_rope(&mut rope, &logged.op).map_err(|e| StorageError::Corrupt {
                path: self.path.clone(),
                rev: logged.rev,
                reason: e.to_string(),
            })?;
        }
        Ok(rope.to_string())
    }
}

/// A session's access record: token hashes, never the tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAccess {
    pub join_hash: String,
    pub read_hash: String,
    pub revoked: bool,
}

/// One line of `chorus session list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: String,
    /// Seconds since the Unix epoch; `None` for sessions that only have
    /// documents (made on an `--open` hub).
    pub created_at: Option<i64>,
    pub revoked: bool,
    pub documents: i64,
}

/// A handle on the hub's storage, shared by every session actor.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.backend {
            Backend::Sqlite(_) => f.write_str("Store(SQLite)"),
            Backend::Postgres(_) => f.write_str("Store(PostgreSQL)"),
        }
    }
}

enum Backend {
    Sqlite(Sqlite),
    Postgres(Pg),
}

/// SQL is written once with `$n` placeholders, which PostgreSQL takes as
/// they are and SQLite as `?n`.
fn lite(sql: &str) -> String {
    sql.replace('$', "?")
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    snapshot_rev BIGINT NOT NULL,
    snapshot_text TEXT NOT NULL,
    PRIMARY KEY (session, path)
);
CREATE TABLE IF NOT EXISTS ops (
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    rev BIGINT NOT NULL,
    op TEXT NOT NULL,
    instance TEXT,
    seq BIGINT,
    PRIMARY KEY (session, path, rev)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    join_hash TEXT NOT NULL,
    read_hash TEXT NOT NULL,
    revoked_at BIGINT
);
";

const CREATE_DOC: &str = "INSERT INTO documents (session, path, snapshot_rev, snapshot_text) VALUES ($1, $2, 0, $3)
    ON CONFLICT (session, path) DO UPDATE SET snapshot_rev = 0, snapshot_text = excluded.snapshot_text";
const APPEND_OP: &str =
    "INSERT INTO ops (session, path, rev, op, instance, seq) VALUES ($1, $2, $3, $4, $5, $6)";
const LOAD_DOCS: &str =
    "SELECT path, snapshot_rev, snapshot_text FROM documents WHERE session = $1 ORDER BY path";
const LOAD_OPS: &str =
    "SELECT rev, op, instance, seq FROM ops WHERE session = $1 AND path = $2 AND rev > $3 ORDER BY rev";
const SNAPSHOT_DOC: &str =
    "UPDATE documents SET snapshot_rev = $3, snapshot_text = $4 WHERE session = $1 AND path = $2";
const TRIM_OPS: &str = "DELETE FROM ops WHERE session = $1 AND path = $2 AND rev <= $3";
const STORED_REV: &str =
    "SELECT MAX(r) FROM (SELECT snapshot_rev AS r FROM documents WHERE session = $1 AND path = $2
    UNION ALL SELECT rev AS r FROM ops WHERE session = $1 AND path = $2) AS revs";
const GET_ACCESS: &str = "SELECT join_hash, read_hash, revoked_at FROM sessions WHERE id = $1";
const CREATE_SESSION: &str =
    "INSERT INTO sessions (id, created_at, join_hash, read_hash) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, join_hash = excluded.join_hash,
        read_hash = excluded.read_hash, revoked_at = NULL
    WHERE sessions.revoked_at IS NOT NULL";
const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
const REVOKED_SINCE: &str =
    "SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at >= $1";
const LIST_SESSIONS: &str = "SELECT ids.id, s.created_at, s.revoked_at,
        (SELECT COUNT(*) FROM documents d WHERE d.session = ids.id)
    FROM (SELECT id FROM sessions UNION SELECT session FROM documents) AS ids
    LEFT JOIN sessions s ON s.id = ids.id
    ORDER BY ids.id";

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A raw row of the ops table, before it is checked.
type OpRow = (i64, String, Option<String>, Option<i64>);

impl Store {
    /// Opens the database (creating the SQLite file or the PostgreSQL
    /// tables if needed).
    pub async fn open(database: &Database) -> Result<Store, StorageError> {
        let backend = match database {
            Database::Sqlite(dir) => Backend::Sqlite(Sqlite::start(open_sqlite(dir)?)),
            Database::Postgres(url) => {
                // The tables first: each pooled connection prepares its
                // statements against them.
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                let connection = tokio::spawn(connection);
                client.batch_execute(SCHEMA).await?;
                drop(client);
                let _ = connection.await;
                let pg = Pg::new(url.clone());
                pg.client("").await?;
                Backend::Postgres(pg)
            }
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// Every document of `session`: snapshot and log, checked to follow on.
    pub async fn load_session(&self, session: &str) -> Result<Vec<StoredDoc>, StorageError> {
        let mut heads: Vec<(String, i64, String)> = Vec::new();
        let mut logs: Vec<Vec<OpRow>> = Vec::new();
        match &*self.backend {
            Backend::Sqlite(db) => {
                let session = session.to_owned();
                (heads, logs) = db
                    .run(move |conn| {
                        let mut heads: Vec<(String, i64, String)> = Vec::new();
                        let mut logs: Vec<Vec<OpRow>> = Vec::new();
                        let mut stmt = conn.prepare(&lite(LOAD_DOCS))?;
                        let rows = stmt.query_map(params![session], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })?;
                        for row in rows {
                            heads.push(row?);
                        }
                        for (path, snapshot_rev, _) in &heads {
                            let mut stmt = conn.prepare_cached(&lite(LOAD_OPS))?;
                            let rows = stmt
                                .query_map(params![session, path, snapshot_rev], |row| {
                                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                                })?;
                            logs.push(rows.collect::<Result<_, _>>()?);
                        }
                        Ok((heads, logs))
                    })
                    .await?;
            }
            Backend::Postgres(pg) => {
                let client = pg.client(session).await?;
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
            }
        }
        heads
            .into_iter()
            .zip(logs)
            .map(|((path, snapshot_rev, snapshot_text), rows)| {
                check_log(path, snapshot_rev as u64, snapshot_text, rows)
            })
            .collect()
    }

    pub async fn create_doc(
        &self,
        session: &str,
        path: &str,
        text: &str,
    ) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => {
                let (session, path, text) = (session.to_owned(), path.to_owned(), text.to_owned());
                db.run(move |conn| {
                    conn.prepare_cached(&lite(CREATE_DOC))?
                        .execute(params![session, path, text])?;
                    Ok(())
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                pg.client(session)
                    .await?
                    .execute(CREATE_DOC, &[&session, &path, &text])
                    .await?;
            }
        }
        Ok(())
    }

    /// Logs the op that made revision `rev`.
    pub async fn append_op(
        &self,
        session: &str,
        path: &str,
        rev: u64,
        op: &OperationSeq,
        author: Option<&Author>,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_string(&WireOp(op.clone())).unwrap_or_default();
        let instance = author.map(|a| a.instance.to_string());
        let seq = author.map(|a| a.seq as i64);
        let rev = rev as i64;
        match &*self.backend {
            Backend::Sqlite(db) => {
                let (session, path) = (session.to_owned(), path.to_owned());
                db.run(move |conn| {
                    conn.prepare_cached(&lite(APPEND_OP))?
                        .execute(params![session, path, rev, json, instance, seq])?;
                    Ok(())
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                let conn = pg.client(session).await?;
                conn.execute(
                    &conn.append_op,
                    &[&session, &path, &rev, &json, &instance, &seq],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Folds the log up to `rev` into a snapshot with `text`.
    pub async fn snapshot(
        &self,
        session: &str,
        path: &str,
        rev: u64,
        text: &str,
    ) -> Result<(), StorageError> {
        let rev = rev as i64;
        match &*self.backend {
            Backend::Sqlite(db) => {
                let (session, path, text) = (session.to_owned(), path.to_owned(), text.to_owned());
                db.run(move |conn| {
                    // A savepoint, since the writer may be inside a batch's
                    // transaction already.
                    let sp = conn.savepoint()?;
                    sp.execute(&lite(SNAPSHOT_DOC), params![session, path, rev, text])?;
                    sp.execute(&lite(TRIM_OPS), params![session, path, rev])?;
                    sp.commit()?;
                    Ok(())
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                // One statement, so atomic without holding a transaction
                // on the connection every session shares.
                let both = format!(
                    "WITH snap AS ({SNAPSHOT_DOC}) DELETE FROM ops WHERE session = $1 AND path = $2 AND rev <= $3"
                );
                pg.client(session)
                    .await?
                    .execute(both.as_str(), &[&session, &path, &rev, &text])
                    .await?;
            }
        }
        Ok(())
    }

    /// Revision of the newest logged op or snapshot of `path`, if stored.
    pub async fn stored_rev(&self, session: &str, path: &str) -> Result<Option<u64>, StorageError> {
        let rev: Option<i64> = match &*self.backend {
            Backend::Sqlite(db) => {
                let (session, path) = (session.to_owned(), path.to_owned());
                db.run(move |conn| {
                    Ok(conn
                        .query_row(&lite(STORED_REV), params![session, path], |row| row.get(0))
                        .optional()?
                        .flatten())
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client(session)
                .await?
                .query_one(STORED_REV, &[&session, &path])
                .await?
                .try_get(0)?,
        };
        Ok(rev.map(|r| r as u64))
    }

    /// Records a session's token hashes. A revoked session may be created
    /// again (new tokens, same documents); a live one may not.
    pub async fn create_session(
        &self,
        id: &str,
        join_hash: &str,
        read_hash: &str,
    ) -> Result<(), StorageError> {
        let now = now_secs();
        let changed = match &*self.backend {
            Backend::Sqlite(db) => {
                let (id, join_hash, read_hash) =
                    (id.to_owned(), join_hash.to_owned(), read_hash.to_owned());
                db.run(move |conn| {
                    Ok(conn
                        .prepare_cached(&lite(CREATE_SESSION))?
                        .execute(params![id, now, join_hash, read_hash])?
                        as u64)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                pg.client(id)
                    .await?
                    .execute(CREATE_SESSION, &[&id, &now, &join_hash, &read_hash])
                    .await?
            }
        };
        if changed == 0 {
            return Err(StorageError::SessionExists(id.to_owned()));
        }
        Ok(())
    }

    pub async fn session_access(&self, id: &str) -> Result<Option<SessionAccess>, StorageError> {
        let row: Option<(String, String, Option<i64>)> = match &*self.backend {
            Backend::Sqlite(db) => {
                let id = id.to_owned();
                db.run(move |conn| {
                    Ok(conn
                        .query_row(&lite(GET_ACCESS), params![id], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()?)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                match pg.client(id).await?.query_opt(GET_ACCESS, &[&id]).await? {
                    Some(row) => Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
                    None => None,
                }
            }
        };
        Ok(row.map(|(join_hash, read_hash, revoked_at)| SessionAccess {
            join_hash,
            read_hash,
            revoked: revoked_at.is_some(),
        }))
    }

    /// Returns false if there was no live session of that id.
    pub async fn revoke_session(&self, id: &str) -> Result<bool, StorageError> {
        let now = now_secs();
        let changed = match &*self.backend {
            Backend::Sqlite(db) => {
                let id = id.to_owned();
                db.run(move |conn| {
                    Ok(conn
                        .prepare_cached(&lite(REVOKE_SESSION))?
                        .execute(params![id, now])? as u64)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                pg.client(id)
                    .await?
                    .execute(REVOKE_SESSION, &[&id, &now])
                    .await?
            }
        };
        Ok(changed > 0)
    }

    /// Sessions revoked at or after `since` (Unix seconds), with when.
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => {
                db.run(move |conn| {
                    let mut stmt = conn.prepare_cached(&lite(REVOKED_SINCE))?;
                    let ids = stmt
                        .query_map(params![since], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<Result<_, _>>()?;
                    Ok(ids)
                })
                .await
            }
            Backend::Postgres(pg) => pg
                .client("")
                .await?
                .query(REVOKED_SINCE, &[&since])
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect(),
        }
    }

    pub async fn list_sessions(&self) -> Result<Vec<SessionSummary>, StorageError> {
        type Row = (String, Option<i64>, Option<i64>, i64);
        let rows: Vec<Row> = match &*self.backend {
            Backend::Sqlite(db) => {
                db.run(|conn| {
                    let mut stmt = conn.prepare(&lite(LIST_SESSIONS))?;
                    let rows = stmt
                        .query_map([], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    Ok(rows)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let mut out = Vec::new();
                for row in pg.client("").await?.query(LIST_SESSIONS, &[]).await? {
                    out.push((
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                    ));
                }
                out
            }
        };
        Ok(rows
            .into_iter()
            .map(|(id, created_at, revoked_at, documents)| SessionSummary {
                id,
                created_at,
                revoked: revoked_at.is_some(),
                documents,
            })
            .collect())
    }
}

/// The hub's one SQLite connection, on a thread of its own: the session
/// actors never block a runtime thread on the disk (a WAL checkpoint's
/// fsync can take tens of milliseconds), and statements queued together
/// commit together, one transaction for a burst of ops from many sessions.
/// Each caller hears back only after the commit: acknowledged still means
/// durable.
struct Sqlite {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Runs a statement on the connection and returns what tells its caller
/// the outcome once the batch it is in has committed (or not).
type Job = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

/// Statements in one transaction at most: a bound on how long the first of
/// them waits for the commit.
const BATCH: usize = 256;

impl Sqlite {
    fn start(mut conn: Connection) -> Sqlite {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("chorus-sqlite".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let grouped = batch.len() > 1 && conn.execute_batch("BEGIN").is_ok();
                    let replies: Vec<Reply> = batch.into_iter().map(|job| job(&mut conn)).collect();
                    let failed = if grouped {
                        conn.execute_batch("COMMIT").err().map(|err| {
                            let _ = conn.execute_batch("ROLLBACK");
                            err.to_string()
                        })
                    } else {
                        None
                    };
                    for reply in replies {
                        reply(failed.as_deref());
                    }
                }
            })
            .expect("spawn the SQLite thread");
        Sqlite { jobs }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |failed: Option<&str>| {
                let result = match failed {
                    Some(err) => Err(StorageError::Commit(err.to_owned())),
                    None => result,
                };
                let _ = tx.send(result);
            })
        });
        self.jobs.send(job).map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }
}

fn open_sqlite(dir: &Path) -> Result<Connection, StorageError> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let conn = Connection::open(dir.join("chorus.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // `chorus session` commands write to the same file as a running hub.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn check_log(
    path: String,
    snapshot_rev: u64,
    snapshot_text: String,
    rows: Vec<OpRow>,
) -> Result<StoredDoc, StorageError> {
    let mut log = Vec::with_capacity(rows.len());
    let mut rev = snapshot_rev;
    for (op_rev, json, instance, seq) in rows {
        let op_rev = op_rev as u64;
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.clone(),
            rev: op_rev,
            reason,
        };
        if op_rev != rev + 1 {
            return Err(corrupt(format!("expected revision {}", rev + 1)));
        }
        let op: WireOp = serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?;
        let author = match (instance, seq) {
            (Some(instance), Some(seq)) => Some(Author {
                instance: instance.into(),
                seq: seq as u64,
            }),
            _ => None,
        };
        log.push(StoredOp {
            rev: op_rev,
            op: op.0,
            author,
        });
        rev = op_rev;
    }
    Ok(StoredDoc {
        path,
        snapshot_rev,
        snapshot_text,
        log,
    })
}

/// A few PostgreSQL connections for the hub, each made again when it
/// breaks. A session always uses the same one, so its writes stay in order;
/// tokio-postgres pipelines concurrent queries on a connection, and more
/// than one lets the server work on several sessions at once.
struct Pg {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            Database::parse("postgres://u:secret@db:5432/chorus"),
            Database::Postgres("postgres://u:secret@db:5432/chorus".into())
        );
        assert_eq!(
            Database::parse("postgres://u:secret@db:5432/chorus").describe(),
            "PostgreSQL at db:5432/chorus"
        );
        assert_eq!(
            Database::parse("/var/lib/chorus"),
            Database::Sqlite("/var/lib/chorus".into())
        );
    }
}
