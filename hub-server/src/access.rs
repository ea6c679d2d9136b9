//! Who may join a session: secret tokens issued by `chorus session create`,
//! one that lets its holder edit and one that lets them only watch.
//!
//! Only SHA-256 hashes of tokens are stored, so a copy of the database does
//! not let anyone in. Tokens carry 160 random bits, which makes a plain
//! comparison of hashes safe: there is nothing to learn from timing.

use chorus_protocol::wire::{ErrorCode, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::storage::{StorageError, Store};

/// Whether joining needs a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Any session name may be joined by anyone who reaches the hub: for a
    /// trusted network, demos and tests (`chorus hub --open`).
    #[default]
    Open,
    /// Only sessions made by `chorus session create`, with their tokens.
    Tokens,
}

/// The secrets handed to people; shown once, at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub join: String,
    pub read_only: String,
}

const JOIN_PREFIX: &str = "chj_";
const READ_PREFIX: &str = "chr_";

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut bytes);
    let mut token = String::with_capacity(prefix.len() + 40);
    token.push_str(prefix);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates `session` (or re-creates a revoked one) with fresh tokens.
pub async fn create_session(store: &Store, session: &str) -> Result<Tokens, StorageError> {
    let tokens = Tokens {
        join: random_token(JOIN_PREFIX),
        read_only: random_token(READ_PREFIX),
    };
    store
        .create_session(session, &hash(&tokens.join), &hash(&tokens.read_only))
        .await?;
    Ok(tokens)
}

/// Decides what a `hello` may do, or why it may not join.
pub async fn check(
    access: Access,
    store: Option<&Store>,
    session: &str,
    token: Option<&str>,
) -> Result<Role, (ErrorCode, String)> {
    if access == Access::Open {
        return Ok(Role::Editor);
    }
    let Some(store) = store else {
        return Err((
            ErrorCode::Unavailable,
            "this hub requires tokens but keeps no sessions".into(),
        ));
    };
    let record = store.session_access(session).await.map_err(|err| {
        tracing::error!(%session, cause = %err, "cannot read session access");
        (
            ErrorCode::Unavailable,
            "the hub cannot read its storage right now; try again shortly".to_owned(),
        )
    })?;
    let Some(record) = record else {
        return Err((
            ErrorCode::UnknownSession,
            format!(
                "there is no session {session:?} on this hub; create it with `chorus session create {session}`"
            ),
        ));
    };
    if record.revoked {
        return Err((
            ErrorCode::Unauthorized,
            format!("session {session:?} was revoked; ask its owner for a new token"),
        ));
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err((
            ErrorCode::Unauthorized,
            format!("session {session:?} needs a token: set chorus.token (or CHORUS_TOKEN)"),
        ));
    };
    let given = hash(token);
    if given == record.join_hash {
        Ok(Role::Editor)
    } else if given == record.read_hash {
        Ok(Role::ReadOnly)
    } else {
        Err((
            ErrorCode::Unauthorized,
            format!("wrong token for session {session:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_prefixed_and_hashed() {
        let a = random_token(JOIN_PREFIX);
        let b = random_token(JOIN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("chj_") && a.len() == 44, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn roles_come_from_the_token() {
        let dir = std::env::temp_dir().join(format!("chorus-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&crate::storage::Database::Sqlite(dir.clone()))
            .await
            .unwrap();
        let tokens = create_session(&store, "team").await.unwrap();
        let check = |session: &'static str, token: Option<String>| {
            let store = store.clone();
            async move { check(Access::Tokens, Some(&store), session, token.as_deref()).await }
        };
        assert_eq!(
            check("team", Some(tokens.join.clone())).await,
            Ok(Role::Editor)
        );
        assert_eq!(
            check("team", Some(tokens.read_only.clone())).await,
            Ok(Role::ReadOnly)
        );
        let code = |r: Result<Role, (ErrorCode, String)>| r.unwrap_err().0;
        assert_eq!(code(check("team", None).await), ErrorCode::Unauthorized);
        assert_eq!(
            code(check("team", Some("chj_nope".into())).await),
            ErrorCode::Unauthorized
        );
        assert_eq!(
            code(check("nobody", Some(tokens.join.clone())).await),
            ErrorCode::UnknownSession
        );
        store.revoke_session("team").await.unwrap();
        assert_eq!(
            code(check("team", Some(tokens.join.clone())).await),
            ErrorCode::Unauthorized
        );
        assert_eq!(
            super::check(Access::Open, None, "anything", None).await,
            Ok(Role::Editor)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
