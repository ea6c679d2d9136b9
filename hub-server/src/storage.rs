//! Durable sessions in embedded SQLite under `--data DIR`: each document's
//! latest snapshot plus the operations since it.
//!
//! Invariant: an op is in the log before its sender is acknowledged, so
//! every acknowledged character survives a crash of the hub (`kill -9`
//! included: WAL with `synchronous = NORMAL` loses nothing when only the
//! process dies). Each session actor opens its own connection; SQLite's WAL
//! lets them write side by side.

use std::path::{Path, PathBuf};

use chorus_protocol::ot::{apply_to_rope, OperationSeq, WireOp};
use ropey::Rope;
use rusqlite::{params, Connection, OptionalExtension};

use crate::document::Author;

/// Operations kept in the log before they are folded into a snapshot.
pub const SNAPSHOT_EVERY: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored operation for {path} at revision {rev} is unreadable: {reason}")]
    Corrupt {
        path: String,
        rev: u64,
        reason: String,
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

pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    snapshot_rev INTEGER NOT NULL,
    snapshot_text TEXT NOT NULL,
    PRIMARY KEY (session, path)
);
CREATE TABLE IF NOT EXISTS ops (
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    rev INTEGER NOT NULL,
    op TEXT NOT NULL,
    instance TEXT,
    seq INTEGER,
    PRIMARY KEY (session, path, rev)
);
";

impl Store {
    /// Opens (creating if needed) `DIR/chorus.db`.
    pub fn open(dir: &Path) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let conn = Connection::open(dir.join("chorus.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Session actors share the file: wait for each other's writes.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Every document of `session`: snapshot and log, checked to follow on.
    pub fn load_session(&self, session: &str) -> Result<Vec<StoredDoc>, StorageError> {
        let mut docs = Vec::new();
        let mut stmt = self.conn.prepare(
            "SELECT path, snapshot_rev, snapshot_text FROM documents WHERE session = ?1 ORDER BY path",
        )?;
        let rows = stmt.query_map(params![session], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (path, snapshot_rev, snapshot_text) = row?;
            let mut ops = self.conn.prepare_cached(
                "SELECT rev, op, instance, seq FROM ops WHERE session = ?1 AND path = ?2 AND rev > ?3 ORDER BY rev",
            )?;
            let logged = ops.query_map(params![session, path, snapshot_rev], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ))
            })?;
            let mut log = Vec::new();
            let mut rev = snapshot_rev as u64;
            for entry in logged {
                let (op_rev, json, instance, seq) = entry?;
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
            docs.push(StoredDoc {
                path,
                snapshot_rev: snapshot_rev as u64,
                snapshot_text,
                log,
            });
        }
        Ok(docs)
    }

    pub fn create_doc(&self, session: &str, path: &str, text: &str) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO documents (session, path, snapshot_rev, snapshot_text) VALUES (?1, ?2, 0, ?3)",
            params![session, path, text],
        )?;
        Ok(())
    }

    /// Logs the op that made revision `rev`.
    pub fn append_op(
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
        self.conn
            .prepare_cached(
                "INSERT INTO ops (session, path, rev, op, instance, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![session, path, rev as i64, json, instance, seq])?;
        Ok(())
    }

    /// Folds the log up to `rev` into a snapshot with `text`.
    pub fn snapshot(
        &mut self,
        session: &str,
        path: &str,
        rev: u64,
        text: &str,
    ) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE documents SET snapshot_rev = ?3, snapshot_text = ?4 WHERE session = ?1 AND path = ?2",
            params![session, path, rev as i64, text],
        )?;
        tx.execute(
            "DELETE FROM ops WHERE session = ?1 AND path = ?2 AND rev <= ?3",
            params![session, path, rev as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Revision of the newest logged op or snapshot of `path`, if stored.
    pub fn stored_rev(&self, session: &str, path: &str) -> Result<Option<u64>, StorageError> {
        let rev: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(r) FROM (SELECT snapshot_rev AS r FROM documents WHERE session = ?1 AND path = ?2
                  UNION ALL SELECT rev AS r FROM ops WHERE session = ?1 AND path = ?2)",
                params![session, path],
                |row| row.get(0),
            )
            .optional()?
            .flatten();
        Ok(rev.map(|r| r as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(json: &str) -> OperationSeq {
        serde_json::from_str::<WireOp>(json).unwrap().0
    }

    #[test]
    fn log_and_snapshots_rebuild_every_document() {
        let dir = std::env::temp_dir().join(format!("chorus-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let ada = Author {
            instance: "ada-1".into(),
            seq: 1,
        };
        store.create_doc("s", "a.txt", "hello").unwrap();
        store
            .append_op("s", "a.txt", 1, &op(r#"[5, " world"]"#), Some(&ada))
            .unwrap();
        store
            .append_op("s", "a.txt", 2, &op(r#"["¡", 11]"#), None)
            .unwrap();
        store.create_doc("s", "b.txt", "").unwrap();
        store.create_doc("other", "a.txt", "x").unwrap();
        drop(store);

        let mut store = Store::open(&dir).unwrap();
        let docs = store.load_session("s").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].path, "a.txt");
        assert_eq!(docs[0].text().unwrap(), "¡hello world");
        assert_eq!(docs[0].log[0].author, Some(ada));
        assert_eq!(docs[0].log[1].rev, 2);
        assert_eq!(docs[1].text().unwrap(), "");

        store.snapshot("s", "a.txt", 2, "¡hello world").unwrap();
        store
            .append_op("s", "a.txt", 3, &op(r#"[12, "!"]"#), None)
            .unwrap();
        assert_eq!(store.stored_rev("s", "a.txt").unwrap(), Some(3));
        let docs = store.load_session("s").unwrap();
        assert_eq!(docs[0].snapshot_rev, 2);
        assert_eq!(docs[0].log.len(), 1);
        assert_eq!(docs[0].text().unwrap(), "¡hello world!");
        assert_eq!(store.stored_rev("s", "missing").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
