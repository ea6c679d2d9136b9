//! `chorus session create|list|revoke`: naming, creating and revoking
//! sessions in the store, and the text each command shows.
//!
//! Invariants: tokens are shown once, at creation, and only their hashes
//! are stored (`access.rs`); what scripts read ([`Created::for_scripts`],
//! [`session_table`]) is kept apart from the notices for a person, which
//! the binary writes to stderr so that stdout stays parseable.

use chorus_protocol::wire::{validate_doc_path, validate_session_id, NotSynced};
use rand::RngCore;

use crate::access::{self, Tokens};
use crate::storage::{Database, SessionSummary, StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("bad session name {id:?}: {message}")]
    BadName { id: String, message: String },
    #[error("there is no active session {0:?} (see `chorus session list`)")]
    NotActive(String),
    #[error(
        "session {0:?} has files already; a template or a folder seeds only a session without any"
    )]
    NotEmpty(String),
    #[error("cannot seed {path:?}: {message}")]
    BadPath { path: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The name for a new session: `requested`, checked before any storage is
/// touched, or a random one.
pub fn session_id(requested: Option<String>) -> Result<String, AdminError> {
    let id = requested.unwrap_or_else(random_session_id);
    validate_session_id(&id).map_err(|message| AdminError::BadName {
        id: id.clone(),
        message,
    })?;
    Ok(id)
}

fn random_session_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}")
}

/// A session just created, with the only copy of its tokens.
#[derive(Debug)]
pub struct Created {
    pub id: String,
    pub tokens: Tokens,
}

impl Created {
    /// Three `key value` lines for scripts.
    pub fn for_scripts(&self) -> String {
        format!(
            "session {}\njoin {}\nread-only {}\n",
            self.id, self.tokens.join, self.tokens.read_only
        )
    }

    /// For the person: where it was made and what to do with the tokens.
    pub fn notice(&self, database: &Database) -> String {
        format!(
            "Created session {:?} in {}. The tokens are shown only now: give the join \
             token to people who may edit and the read-only one to those who may watch \
             (chorus.token in VS Code, `token` in the Neovim plugin, CHORUS_TOKEN for Helix).",
            self.id,
            database.describe()
        )
    }
}

/// Creates session `id` (or re-creates a revoked one) with fresh tokens.
pub async fn create(store: &Store, id: &str) -> Result<Created, AdminError> {
    let tokens = access::create_session(store, id).await?;
    Ok(Created {
        id: id.to_owned(),
        tokens,
    })
}

/// Seeds session `id`, which must have no files yet, with `files`
/// (workspace-relative path, text) as its first documents; returns how
/// many. A session some hub has loaded may not be seeded behind its back,
/// and a new one has not been: hence only sessions without files.
pub async fn seed(
    store: &Store,
    id: &str,
    files: &[(String, String)],
) -> Result<usize, AdminError> {
    seed_tree(store, id, files, &[]).await
}

/// [`seed`] with files listed but not synced as well (path, size, why),
/// as `--from DIR` finds them.
pub async fn seed_tree(
    store: &Store,
    id: &str,
    files: &[(String, String)],
    listed: &[(String, u64, NotSynced)],
) -> Result<usize, AdminError> {
    let paths = files
        .iter()
        .map(|(path, _)| path)
        .chain(listed.iter().map(|(path, ..)| path));
    for path in paths {
        validate_doc_path(path).map_err(|message| AdminError::BadPath {
            path: path.clone(),
            message,
        })?;
    }
    let has_files =
        !store.load_session(id).await?.is_empty() || !store.load_listed(id).await?.is_empty();
    if has_files {
        return Err(AdminError::NotEmpty(id.to_owned()));
    }
    for (path, text) in files {
        store.create_doc(id, path, text).await?;
    }
    for (path, size, reason) in listed {
        store.put_listed(id, path, *size, *reason).await?;
    }
    Ok(files.len() + listed.len())
}

/// Said when `chorus session list` finds nothing.
pub const NO_SESSIONS: &str = "no sessions yet; create one with `chorus session create NAME`";

/// `chorus session list`'s table: a header, then one line per session.
pub fn session_table(sessions: &[SessionSummary]) -> String {
    let mut table = format!(
        "{:<32} {:<8} {:>9}  created\n",
        "session", "state", "documents"
    );
    for s in sessions {
        let state = match (s.created_at, s.revoked) {
            (None, _) => "open",
            (Some(_), true) => "revoked",
            (Some(_), false) => "active",
        };
        let created = s.created_at.map_or_else(|| "-".to_owned(), format_utc);
        table.push_str(&format!(
            "{:<32} {:<8} {:>9}  {created}\n",
            s.id, state, s.documents
        ));
    }
    table
}

/// Revokes session `id`'s tokens; a running hub disconnects everyone in it.
pub async fn revoke(store: &Store, id: &str) -> Result<(), AdminError> {
    if !store.revoke_session(id).await? {
        return Err(AdminError::NotActive(id.to_owned()));
    }
    Ok(())
}

/// For the person, after [`revoke`].
pub fn revoked_notice(id: &str) -> String {
    format!(
        "Revoked session {id:?}: its tokens no longer work, and a running hub \
         disconnects everyone in it within seconds. Its documents are kept; \
         `chorus session create {id}` issues new tokens."
    )
}

/// `YYYY-MM-DD HH:MM UTC` without a date library: days to civil date by
/// Howard Hinnant's algorithm.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_795_350_000), "2026-11-22 12:20 UTC");
        assert_eq!(format_utc(951_825_600), "2000-02-29 12:00 UTC");
    }

    #[test]
    fn session_names() {
        assert_eq!(session_id(Some("team-1".into())).unwrap(), "team-1");
        let random = session_id(None).unwrap();
        assert!(random.starts_with("s-") && random.len() == 14, "{random}");
        assert_eq!(
            session_id(Some("a b".into())).unwrap_err().to_string(),
            "bad session name \"a b\": session id \"a b\" must be 1-64 characters of \
             letters, digits, '.', '_' or '-'"
        );
    }

    #[test]
    fn the_session_table() {
        let session = |id: &str, created_at, revoked, documents| SessionSummary {
            id: id.into(),
            created_at,
            revoked,
            documents,
        };
        let table = session_table(&[
            session("demo", None, false, 3),
            session("team", Some(951_825_600), false, 12),
            session("gone", Some(0), true, 0),
        ]);
        assert_eq!(
            table,
            "session                          state    documents  created\n\
             demo                             open             3  -\n\
             team                             active          12  2000-02-29 12:00 UTC\n\
             gone                             revoked          0  1970-01-01 00:00 UTC\n"
        );
    }

    #[tokio::test]
    async fn create_and_revoke() {
        let dir = std::env::temp_dir().join(format!("chorus-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let database = Database::Sqlite(dir.clone());
        let store = Store::open(&database).await.unwrap();
        let created = create(&store, "team").await.unwrap();
        assert!(created
            .for_scripts()
            .starts_with(&format!("session team\njoin {}\n", created.tokens.join)));
        assert!(matches!(
            create(&store, "team").await,
            Err(AdminError::Storage(StorageError::SessionExists(_)))
        ));
        revoke(&store, "team").await.unwrap();
        assert_eq!(
            revoke(&store, "team").await.unwrap_err().to_string(),
            "there is no active session \"team\" (see `chorus session list`)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
