//! The embedded SQLite backend: one connection on a thread of its own.
//!
//! Invariants: only the `chorus-sqlite` thread touches the connection; a
//! caller hears back only after the transaction holding its statement has
//! committed, so acknowledged still means durable (WAL, `synchronous =
//! NORMAL`: see ADR 0003 for what that promises).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{
    AccessRow, DocRow, ListedRow, OpRow, SessionRow, APPEND_OP, CREATE_DOC, CREATE_SESSION,
    DELETE_DOCS, DELETE_LISTED, DELETE_LISTED_UNDER, DELETE_OPS, GET_ACCESS, LIST_SESSIONS,
    LOAD_DOCS, LOAD_LISTED, LOAD_OPS, PUT_LISTED, RENAME_DOCS, RENAME_LISTED, RENAME_OPS,
    REVOKED_SINCE, REVOKE_SESSION, SCHEMA, SNAPSHOT_DOC, STORED_REV, TRIM_OPS,
};
use super::{Backend, StorageError};

/// The shared SQL text, with SQLite's `?n` for `$n`.
fn lite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The hub's one SQLite connection, on a thread of its own: the session
/// actors never block a runtime thread on the disk (a WAL checkpoint's
/// fsync can take tens of milliseconds), and statements queued together
/// commit together, one transaction for a burst of ops from many sessions.
/// Each caller hears back only after the commit: acknowledged still means
/// durable.
pub(super) struct Sqlite {
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
    /// Opens (creating if needed) `DIR/chorus.db` and starts its thread.
    pub(super) fn open(dir: &Path) -> Result<Sqlite, StorageError> {
        Ok(Sqlite::start(open_connection(dir)?))
    }

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

fn open_connection(dir: &Path) -> Result<Connection, StorageError> {
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

impl Backend for Sqlite {
    async fn load_session(
        &self,
        session: &str,
    ) -> Result<(Vec<DocRow>, Vec<Vec<OpRow>>), StorageError> {
        let session = session.to_owned();
        // One job, so the documents and their logs come from one batch.
        self.run(move |conn| {
            let mut heads: Vec<DocRow> = Vec::new();
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
                let rows = stmt.query_map(params![session, path, snapshot_rev], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?;
                logs.push(rows.collect::<Result<_, _>>()?);
            }
            Ok((heads, logs))
        })
        .await
    }

    async fn create_doc(&self, session: &str, path: &str, text: &str) -> Result<(), StorageError> {
        let (session, path, text) = (session.to_owned(), path.to_owned(), text.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(&lite(CREATE_DOC))?
                .execute(params![session, path, text])?;
            Ok(())
        })
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
        let (session, path) = (session.to_owned(), path.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(&lite(APPEND_OP))?
                .execute(params![session, path, rev, json, instance, seq])?;
            Ok(())
        })
        .await
    }

    async fn snapshot(
        &self,
        session: &str,
        path: &str,
        rev: i64,
        text: &str,
    ) -> Result<(), StorageError> {
        let (session, path, text) = (session.to_owned(), path.to_owned(), text.to_owned());
        self.run(move |conn| {
            // A savepoint, since the writer may be inside a batch's
            // transaction already.
            let sp = conn.savepoint()?;
            sp.execute(&lite(SNAPSHOT_DOC), params![session, path, rev, text])?;
            sp.execute(&lite(TRIM_OPS), params![session, path, rev])?;
            sp.commit()?;
            Ok(())
        })
        .await
    }

    async fn stored_rev(&self, session: &str, path: &str) -> Result<Option<i64>, StorageError> {
        let (session, path) = (session.to_owned(), path.to_owned());
        self.run(move |conn| {
            Ok(conn
                .query_row(&lite(STORED_REV), params![session, path], |row| row.get(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn load_listed(&self, session: &str) -> Result<Vec<ListedRow>, StorageError> {
        let session = session.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&lite(LOAD_LISTED))?;
            let rows = stmt
                .query_map(params![session], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn put_listed(
        &self,
        session: &str,
        path: &str,
        size: i64,
        reason: &'static str,
    ) -> Result<(), StorageError> {
        let (session, path) = (session.to_owned(), path.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(&lite(PUT_LISTED))?
                .execute(params![session, path, size, reason])?;
            Ok(())
        })
        .await
    }

    async fn delete_listed(&self, session: &str, path: &str) -> Result<(), StorageError> {
        let (session, path) = (session.to_owned(), path.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(&lite(DELETE_LISTED))?
                .execute(params![session, path])?;
            Ok(())
        })
        .await
    }

    async fn rename_paths(&self, session: &str, from: &str, to: &str) -> Result<(), StorageError> {
        let (session, from, to) = (session.to_owned(), from.to_owned(), to.to_owned());
        self.run(move |conn| {
            // A savepoint, as for a snapshot: all three tables or none.
            let sp = conn.savepoint()?;
            for sql in [RENAME_DOCS, RENAME_OPS, RENAME_LISTED] {
                sp.execute(&lite(sql), params![session, from, to])?;
            }
            sp.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_paths(&self, session: &str, path: &str) -> Result<(), StorageError> {
        let (session, path) = (session.to_owned(), path.to_owned());
        self.run(move |conn| {
            let sp = conn.savepoint()?;
            for sql in [DELETE_DOCS, DELETE_OPS, DELETE_LISTED_UNDER] {
                sp.execute(&lite(sql), params![session, path])?;
            }
            sp.commit()?;
            Ok(())
        })
        .await
    }

    async fn create_session(
        &self,
        id: &str,
        now: i64,
        join_hash: &str,
        read_hash: &str,
    ) -> Result<u64, StorageError> {
        let (id, join_hash, read_hash) =
            (id.to_owned(), join_hash.to_owned(), read_hash.to_owned());
        self.run(move |conn| {
            Ok(conn
                .prepare_cached(&lite(CREATE_SESSION))?
                .execute(params![id, now, join_hash, read_hash])? as u64)
        })
        .await
    }

    async fn session_access(&self, id: &str) -> Result<Option<AccessRow>, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(&lite(GET_ACCESS), params![id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?)
        })
        .await
    }

    async fn revoke_session(&self, id: &str) -> Result<u64, StorageError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn
                .prepare_cached(&lite(REVOKE_SESSION))?
                .execute(params![id])? as u64)
        })
        .await
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&lite(REVOKED_SINCE))?;
            let ids = stmt
                .query_map(params![since], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionRow>, StorageError> {
        self.run(|conn| {
            let mut stmt = conn.prepare(&lite(LIST_SESSIONS))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}
