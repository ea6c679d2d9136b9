//! Durable sessions: each document's latest snapshot plus the operations
//! since it, the files of each session's tree listed but not synced, and
//! each session's access tokens (as hashes). A rename or delete of a file
//! or directory is one transaction over all three tables' rows. Embedded SQLite
//! under `--data DIR` by default, PostgreSQL with `--database postgres://…`;
//! both speak the same schema.
//!
//! Invariant: an op is in the log before its sender is acknowledged, so
//! every acknowledged character survives a crash of the hub (`kill -9`
//! included: SQLite's WAL with `synchronous = NORMAL` loses nothing when
//! only the process dies; PostgreSQL commits each insert).
//!
//! Layout: this module is the whole public API ([`Store`]) and what both
//! backends share (checking a loaded log, type conversions); `schema` holds
//! the tables and every statement's SQL text; `sqlite` and `postgres` each
//! implement the private `Backend` trait in their own way of running
//! statements (ADR 0003: one connection on its own thread, or four
//! connections with a session keeping to one). Nothing outside this module
//! sees which backend it has.

mod postgres;
mod schema;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chorus_protocol::ot::{apply_to_rope, OperationSeq, WireOp};
use chorus_protocol::wire::NotSynced;
use ropey::Rope;

use self::postgres::Pg;
use self::schema::{AccessRow, DocRow, ListedRow, OpRow, SessionRow};
use self::sqlite::Sqlite;
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
    #[error("stored file entry {path} is unreadable: unknown reason {reason:?}")]
    CorruptEntry { path: String, reason: String },
    #[error("session {0:?} already exists; revoke it first to issue new tokens")]
    SessionExists(String),
    #[error("SQLite: the commit failed: {0}")]
    Commit(String),
    #[error("the storage thread is gone")]
    Closed,
    /// Another hub claimed the session (ADR 0009); nothing was written.
    #[error("another hub now sequences this session ({0})")]
    Fenced(String),
}

/// Who sequences a session (ADR 0009).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This hub, under this epoch: its writes are fenced by it.
    Mine { epoch: i64 },
    /// Hub `hub`, reachable at `address` (none when its lease row is gone).
    Elsewhere {
        hub: String,
        address: Option<String>,
    },
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

/// A file of a session's tree that is listed but not synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    pub path: String,
    /// In bytes, as the publisher reported it.
    pub size: u64,
    pub reason: NotSynced,
}

/// How a [`NotSynced`] reason is stored: its wire name, so that a row
/// reads the same in a database shell as in a `files` answer.
fn reason_name(reason: NotSynced) -> &'static str {
    match reason {
        NotSynced::Binary => "binary",
        NotSynced::TooLarge => "tooLarge",
        NotSynced::SessionFull => "sessionFull",
    }
}

fn parse_reason(name: &str) -> Option<NotSynced> {
    [
        NotSynced::Binary,
        NotSynced::TooLarge,
        NotSynced::SessionFull,
    ]
    .into_iter()
    .find(|reason| reason_name(*reason) == name)
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
    backend: Arc<AnyBackend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.backend {
            AnyBackend::Sqlite(_) => f.write_str("Store(SQLite)"),
            AnyBackend::Postgres(_) => f.write_str("Store(PostgreSQL)"),
        }
    }
}

/// What each backend does, in raw rows; [`Store`] does the rest (checking
/// logs, converting types, `now`) once for both.
///
/// A closed enum of backends rather than `dyn Backend`: `async fn` in a
/// trait cannot be called through `dyn` without boxing each future, and
/// the concrete futures are what lets the compiler see they are `Send`.
trait Backend {
    /// Every document of `session` and, for each, its ops after the
    /// snapshot, in the same order.
    async fn load_session(
        &self,
        session: &str,
    ) -> Result<(Vec<DocRow>, Vec<Vec<OpRow>>), StorageError>;
    async fn create_doc(&self, session: &str, path: &str, text: &str) -> Result<(), StorageError>;
    async fn append_op(
        &self,
        session: &str,
        path: &str,
        rev: i64,
        json: String,
        instance: Option<String>,
        seq: Option<i64>,
    ) -> Result<(), StorageError>;
    /// Sets the snapshot and drops the ops it covers, atomically.
    async fn snapshot(
        &self,
        session: &str,
        path: &str,
        rev: i64,
        text: &str,
    ) -> Result<(), StorageError>;
    async fn stored_rev(&self, session: &str, path: &str) -> Result<Option<i64>, StorageError>;
    /// Every listed (not synced) file of `session`, by path.
    async fn load_listed(&self, session: &str) -> Result<Vec<ListedRow>, StorageError>;
    /// Lists `path`, replacing what was listed there.
    async fn put_listed(
        &self,
        session: &str,
        path: &str,
        size: i64,
        reason: &'static str,
    ) -> Result<(), StorageError>;
    async fn delete_listed(&self, session: &str, path: &str) -> Result<(), StorageError>;
    /// Moves the documents, ops and listed files at `from` or under it to
    /// `to`, atomically.
    async fn rename_paths(&self, session: &str, from: &str, to: &str) -> Result<(), StorageError>;
    /// Deletes the documents, ops and listed files at `path` or under it,
    /// atomically.
    async fn delete_paths(&self, session: &str, path: &str) -> Result<(), StorageError>;
    /// Returns the number of rows changed: 0 when a live session has `id`.
    async fn create_session(
        &self,
        id: &str,
        now: i64,
        join_hash: &str,
        read_hash: &str,
    ) -> Result<u64, StorageError>;
    async fn session_access(&self, id: &str) -> Result<Option<AccessRow>, StorageError>;
    /// Returns the number of rows changed: 0 when no live session has `id`.
    async fn revoke_session(&self, id: &str) -> Result<u64, StorageError>;
    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StorageError>;
    async fn list_sessions(&self) -> Result<Vec<SessionRow>, StorageError>;
}

enum AnyBackend {
    Sqlite(Sqlite),
    Postgres(Pg),
}

/// Calls the same [`Backend`] method on whichever backend `store` has.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match &*$store.backend {
            AnyBackend::Sqlite($backend) => $call,
            AnyBackend::Postgres($backend) => $call,
        }
    };
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens the database (creating the SQLite file or the PostgreSQL
    /// tables if needed).
    pub async fn open(database: &Database) -> Result<Store, StorageError> {
        let backend = match database {
            Database::Sqlite(dir) => AnyBackend::Sqlite(Sqlite::open(dir)?),
            Database::Postgres(url) => AnyBackend::Postgres(Pg::open(url).await?),
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// Whether several hubs may share this storage, and so must claim
    /// sessions (ADR 0009): PostgreSQL.
    pub fn is_shared(&self) -> bool {
        matches!(&*self.backend, AnyBackend::Postgres(_))
    }

    /// Makes this store hub `id`'s: from now on each write of a session
    /// needs this hub's claim on it. No-op on SQLite.
    pub fn set_hub(&self, id: &str) {
        if let AnyBackend::Postgres(pg) = &*self.backend {
            pg.set_hub(id);
        }
    }

    /// Renews this hub's lease for `lease` at `address`; returns the
    /// sessions the database says it holds, with their epochs.
    pub async fn heartbeat(
        &self,
        address: &str,
        lease: std::time::Duration,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        match &*self.backend {
            AnyBackend::Postgres(pg) => pg.heartbeat(address, lease.as_secs_f64() * 1000.0).await,
            AnyBackend::Sqlite(_) => Ok(Vec::new()),
        }
    }

    /// Claims `session` for this hub if nobody live holds it.
    pub async fn claim(&self, session: &str) -> Result<Claim, StorageError> {
        match &*self.backend {
            AnyBackend::Postgres(pg) => pg.claim(session).await,
            AnyBackend::Sqlite(_) => Ok(Claim::Mine { epoch: 0 }),
        }
    }

    /// Gives up this hub's claim made at `epoch`, if it still holds it.
    pub async fn release(&self, session: &str, epoch: i64) -> Result<(), StorageError> {
        match &*self.backend {
            AnyBackend::Postgres(pg) => pg.release(session, epoch).await,
            AnyBackend::Sqlite(_) => Ok(()),
        }
    }

    /// The claims this hub believes it holds.
    pub fn held(&self) -> std::collections::HashMap<String, i64> {
        match &*self.backend {
            AnyBackend::Postgres(pg) => pg.held(),
            AnyBackend::Sqlite(_) => Default::default(),
        }
    }

    /// Forgets a claim the database says is lost: nothing more is written
    /// under it.
    pub fn drop_claim(&self, session: &str, epoch: i64) {
        if let AnyBackend::Postgres(pg) = &*self.backend {
            pg.drop_claim(session, epoch);
        }
    }

    /// Removes this hub's lease (a clean shutdown).
    pub async fn leave(&self) -> Result<(), StorageError> {
        match &*self.backend {
            AnyBackend::Postgres(pg) => pg.leave().await,
            AnyBackend::Sqlite(_) => Ok(()),
        }
    }

    /// Every document of `session`: snapshot and log, checked to follow on.
    pub async fn load_session(&self, session: &str) -> Result<Vec<StoredDoc>, StorageError> {
        let _timed = crate::metrics::storage("load_session");
        let (heads, logs) = dispatch!(self, db => db.load_session(session).await)?;
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
        let _timed = crate::metrics::storage("create_doc");
        dispatch!(self, db => db.create_doc(session, path, text).await)
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
        let _timed = crate::metrics::storage("append_op");
        let json = serde_json::to_string(&WireOp(op.clone())).unwrap_or_default();
        let instance = author.map(|a| a.instance.to_string());
        let seq = author.map(|a| a.seq as i64);
        let rev = rev as i64;
        dispatch!(self, db => db.append_op(session, path, rev, json, instance, seq).await)
    }

    /// Folds the log up to `rev` into a snapshot with `text`.
    pub async fn snapshot(
        &self,
        session: &str,
        path: &str,
        rev: u64,
        text: &str,
    ) -> Result<(), StorageError> {
        let _timed = crate::metrics::storage("snapshot");
        let rev = rev as i64;
        dispatch!(self, db => db.snapshot(session, path, rev, text).await)
    }

    /// Revision of the newest logged op or snapshot of `path`, if stored.
    pub async fn stored_rev(&self, session: &str, path: &str) -> Result<Option<u64>, StorageError> {
        let _timed = crate::metrics::storage("stored_rev");
        let rev = dispatch!(self, db => db.stored_rev(session, path).await)?;
        Ok(rev.map(|r| r as u64))
    }

    /// The files of `session` listed but not synced, by path.
    pub async fn load_listed(&self, session: &str) -> Result<Vec<ListedFile>, StorageError> {
        let _timed = crate::metrics::storage("load_listed");
        let rows = dispatch!(self, db => db.load_listed(session).await)?;
        rows.into_iter()
            .map(|(path, size, reason)| match parse_reason(&reason) {
                Some(reason) => Ok(ListedFile {
                    path,
                    size: size.max(0) as u64,
                    reason,
                }),
                None => Err(StorageError::CorruptEntry { path, reason }),
            })
            .collect()
    }

    /// Lists `path` as not synced, replacing what was listed there.
    pub async fn put_listed(
        &self,
        session: &str,
        path: &str,
        size: u64,
        reason: NotSynced,
    ) -> Result<(), StorageError> {
        let _timed = crate::metrics::storage("put_listed");
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let reason = reason_name(reason);
        dispatch!(self, db => db.put_listed(session, path, size, reason).await)
    }

    /// Takes `path` off the listed files (it became a document).
    pub async fn delete_listed(&self, session: &str, path: &str) -> Result<(), StorageError> {
        let _timed = crate::metrics::storage("delete_listed");
        dispatch!(self, db => db.delete_listed(session, path).await)
    }

    /// Moves the file at `from`, or every file under the directory `from`
    /// (`from/…` to `to/…`): documents with their op logs, and listed
    /// files, in one transaction. Nothing may be at `to` or under it.
    pub async fn rename_paths(
        &self,
        session: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        let _timed = crate::metrics::storage("rename_paths");
        dispatch!(self, db => db.rename_paths(session, from, to).await)
    }

    /// Deletes the file at `path`, or every file under the directory
    /// `path`: documents with their op logs, and listed files, in one
    /// transaction.
    pub async fn delete_paths(&self, session: &str, path: &str) -> Result<(), StorageError> {
        let _timed = crate::metrics::storage("delete_paths");
        dispatch!(self, db => db.delete_paths(session, path).await)
    }

    /// Records a session's token hashes. A revoked session may be created
    /// again (new tokens, same documents); a live one may not.
    pub async fn create_session(
        &self,
        id: &str,
        join_hash: &str,
        read_hash: &str,
    ) -> Result<(), StorageError> {
        let _timed = crate::metrics::storage("create_session");
        let now = now_secs();
        let changed =
            dispatch!(self, db => db.create_session(id, now, join_hash, read_hash).await)?;
        if changed == 0 {
            return Err(StorageError::SessionExists(id.to_owned()));
        }
        Ok(())
    }

    pub async fn session_access(&self, id: &str) -> Result<Option<SessionAccess>, StorageError> {
        let _timed = crate::metrics::storage("session_access");
        let row = dispatch!(self, db => db.session_access(id).await)?;
        Ok(row.map(|(join_hash, read_hash, revoked_at)| SessionAccess {
            join_hash,
            read_hash,
            revoked: revoked_at.is_some(),
        }))
    }

    /// Returns false if there was no live session of that id.
    pub async fn revoke_session(&self, id: &str) -> Result<bool, StorageError> {
        let _timed = crate::metrics::storage("revoke_session");
        let changed = dispatch!(self, db => db.revoke_session(id).await)?;
        Ok(changed > 0)
    }

    /// Sessions whose revocation mark is `since` or more, with the mark
    /// (marks count revocations up; older databases hold Unix seconds,
    /// which the count then continues from).
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
        let _timed = crate::metrics::storage("revoked_since");
        dispatch!(self, db => db.revoked_since(since).await)
    }

    pub async fn list_sessions(&self) -> Result<Vec<SessionSummary>, StorageError> {
        let _timed = crate::metrics::storage("list_sessions");
        let rows = dispatch!(self, db => db.list_sessions().await)?;
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

    #[test]
    fn reasons_are_stored_by_their_wire_names() {
        for reason in [
            NotSynced::Binary,
            NotSynced::TooLarge,
            NotSynced::SessionFull,
        ] {
            let wire = serde_json::to_value(reason).unwrap();
            assert_eq!(wire, reason_name(reason));
            assert_eq!(parse_reason(reason_name(reason)), Some(reason));
        }
        assert_eq!(parse_reason("huge"), None);
    }
}
