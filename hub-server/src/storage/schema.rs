//! The one schema both backends speak, and every statement's SQL text.
//!
//! Invariant: each statement is written once, with `$n` placeholders, which
//! PostgreSQL takes as they are and the SQLite backend turns into `?n`; a
//! backend may combine statements (PostgreSQL's snapshot) but not reword
//! them, so both backends keep the same data the same way. Tables are
//! only ever added, each `IF NOT EXISTS`, so a database made by an older
//! hub gains the new ones when a newer hub opens it.

pub(super) const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS listed_files (
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (session, path)
);
";

pub(super) const CREATE_DOC: &str = "INSERT INTO documents (session, path, snapshot_rev, snapshot_text) VALUES ($1, $2, 0, $3)
    ON CONFLICT (session, path) DO UPDATE SET snapshot_rev = 0, snapshot_text = excluded.snapshot_text";
pub(super) const APPEND_OP: &str =
    "INSERT INTO ops (session, path, rev, op, instance, seq) VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) const LOAD_DOCS: &str =
    "SELECT path, snapshot_rev, snapshot_text FROM documents WHERE session = $1 ORDER BY path";
pub(super) const LOAD_OPS: &str =
    "SELECT rev, op, instance, seq FROM ops WHERE session = $1 AND path = $2 AND rev > $3 ORDER BY rev";
pub(super) const SNAPSHOT_DOC: &str =
    "UPDATE documents SET snapshot_rev = $3, snapshot_text = $4 WHERE session = $1 AND path = $2";
pub(super) const TRIM_OPS: &str = "DELETE FROM ops WHERE session = $1 AND path = $2 AND rev <= $3";
pub(super) const STORED_REV: &str =
    "SELECT MAX(r) FROM (SELECT snapshot_rev AS r FROM documents WHERE session = $1 AND path = $2
    UNION ALL SELECT rev AS r FROM ops WHERE session = $1 AND path = $2) AS revs";
pub(super) const PUT_LISTED: &str =
    "INSERT INTO listed_files (session, path, size, reason) VALUES ($1, $2, $3, $4)
    ON CONFLICT (session, path) DO UPDATE SET size = excluded.size, reason = excluded.reason";
pub(super) const DELETE_LISTED: &str = "DELETE FROM listed_files WHERE session = $1 AND path = $2";
pub(super) const LOAD_LISTED: &str =
    "SELECT path, size, reason FROM listed_files WHERE session = $1 ORDER BY path";
/// What a tree change touches: the rows at path `$2` or under it (the
/// directory `$2`, every path starting `$2/`). Character counts, in both
/// databases, so that a path's prefix is cut where `$2` ends.
macro_rules! at_or_under {
    () => {
        "session = $1 AND (path = CAST($2 AS TEXT)
        OR substr(path, 1, length(CAST($2 AS TEXT)) + 1) = CAST($2 AS TEXT) || '/')"
    };
}
/// The new path of a row moved from `$2` to `$3`: `$3` and what followed
/// `$2`.
macro_rules! moved_path {
    () => {
        "CAST($3 AS TEXT) || substr(path, length(CAST($2 AS TEXT)) + 1)"
    };
}
// A rename or delete is these three statements in one transaction (or, on
// PostgreSQL, one statement): the documents, their op logs and the listed
// files at or under a path.
pub(super) const RENAME_DOCS: &str = concat!(
    "UPDATE documents SET path = ",
    moved_path!(),
    " WHERE ",
    at_or_under!()
);
pub(super) const RENAME_OPS: &str = concat!(
    "UPDATE ops SET path = ",
    moved_path!(),
    " WHERE ",
    at_or_under!()
);
pub(super) const RENAME_LISTED: &str = concat!(
    "UPDATE listed_files SET path = ",
    moved_path!(),
    " WHERE ",
    at_or_under!()
);
pub(super) const DELETE_DOCS: &str = concat!("DELETE FROM documents WHERE ", at_or_under!());
pub(super) const DELETE_OPS: &str = concat!("DELETE FROM ops WHERE ", at_or_under!());
pub(super) const DELETE_LISTED_UNDER: &str =
    concat!("DELETE FROM listed_files WHERE ", at_or_under!());
pub(super) const GET_ACCESS: &str =
    "SELECT join_hash, read_hash, revoked_at FROM sessions WHERE id = $1";
pub(super) const CREATE_SESSION: &str =
    "INSERT INTO sessions (id, created_at, join_hash, read_hash) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, join_hash = excluded.join_hash,
        read_hash = excluded.read_hash, revoked_at = NULL
    WHERE sessions.revoked_at IS NOT NULL";
/// `revoked_at` counts revocations up rather than holding a time: the hub
/// that watches for them compares it with the last it saw, so no machine's
/// clock (the revoking one's, the hub's) takes part.
pub(super) const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at = (SELECT COALESCE(MAX(revoked_at), 0) + 1 FROM sessions)
    WHERE id = $1 AND revoked_at IS NULL";
pub(super) const REVOKED_SINCE: &str =
    "SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at >= $1";
pub(super) const LIST_SESSIONS: &str = "SELECT ids.id, s.created_at, s.revoked_at,
        (SELECT COUNT(*) FROM documents d WHERE d.session = ids.id)
    FROM (SELECT id FROM sessions UNION SELECT session FROM documents) AS ids
    LEFT JOIN sessions s ON s.id = ids.id
    ORDER BY ids.id";

/// A row of [`LOAD_DOCS`]: path, snapshot revision, snapshot text.
pub(super) type DocRow = (String, i64, String);
/// A raw row of [`LOAD_OPS`], before it is checked: revision, op as JSON,
/// author's instance and sequence number.
pub(super) type OpRow = (i64, String, Option<String>, Option<i64>);
/// A row of [`LOAD_LISTED`]: path, size in bytes, why it is not synced.
pub(super) type ListedRow = (String, i64, String);
/// A row of [`GET_ACCESS`]: join hash, read-only hash, revocation time.
pub(super) type AccessRow = (String, String, Option<i64>);
/// A row of [`LIST_SESSIONS`]: id, creation time, revocation time, number
/// of documents.
pub(super) type SessionRow = (String, Option<i64>, Option<i64>, i64);
