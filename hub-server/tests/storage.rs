//! The storage contract, against embedded SQLite and a real PostgreSQL
//! server (`CHORUS_TEST_POSTGRES`, which scripts/test.sh starts).

use chorus_hub::document::Author;
use chorus_hub::storage::ListedFile;
use chorus_hub::storage::{now_secs, Database, StorageError, Store};
use chorus_protocol::ot::{OperationSeq, WireOp};
use chorus_protocol::wire::NotSynced;

fn op(json: &str) -> OperationSeq {
    serde_json::from_str::<WireOp>(json).unwrap().0
}

/// The same checks for both backends.
async fn exercise(store: &Store, session: &str) {
    let ada = Author {
        instance: "ada-1".into(),
        seq: 1,
    };
    store.create_doc(session, "a.txt", "hello").await.unwrap();
    store
        .append_op(session, "a.txt", 1, &op(r#"[5, " world"]"#), Some(&ada))
        .await
        .unwrap();
    store
        .append_op(session, "a.txt", 2, &op(r#"["¡", 11]"#), None)
        .await
        .unwrap();
    store.create_doc(session, "b.txt", "").await.unwrap();
    let other = format!("{session}-other");
    store.create_doc(&other, "a.txt", "x").await.unwrap();

    let docs = store.load_session(session).await.unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].path, "a.txt");
    assert_eq!(docs[0].text().unwrap(), "¡hello world");
    assert_eq!(docs[0].log[0].author, Some(ada));
    assert_eq!(docs[0].log[1].rev, 2);
    assert_eq!(docs[1].text().unwrap(), "");

    store
        .snapshot(session, "a.txt", 2, "¡hello world")
        .await
        .unwrap();
    store
        .append_op(session, "a.txt", 3, &op(r#"[12, "!"]"#), None)
        .await
        .unwrap();
    assert_eq!(store.stored_rev(session, "a.txt").await.unwrap(), Some(3));
    let docs = store.load_session(session).await.unwrap();
    assert_eq!(docs[0].snapshot_rev, 2);
    assert_eq!(docs[0].log.len(), 1);
    assert_eq!(docs[0].text().unwrap(), "¡hello world!");
    assert_eq!(store.stored_rev(session, "missing").await.unwrap(), None);

    assert_eq!(store.session_access(session).await.unwrap(), None);
    store.create_session(session, "j1", "r1").await.unwrap();
    assert!(matches!(
        store.create_session(session, "j2", "r2").await,
        Err(StorageError::SessionExists(_))
    ));
    let access = store.session_access(session).await.unwrap().unwrap();
    assert_eq!((access.join_hash.as_str(), access.revoked), ("j1", false));
    // Revocation marks count up, whatever any clock says.
    let before = store
        .revoked_since(i64::MIN)
        .await
        .unwrap()
        .iter()
        .map(|(_, mark)| *mark)
        .max()
        .unwrap_or(0);
    assert!(store.revoke_session(session).await.unwrap());
    assert!(!store.revoke_session(session).await.unwrap());
    assert!(
        store
            .session_access(session)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(store
        .revoked_since(before + 1)
        .await
        .unwrap()
        .iter()
        .any(|(id, mark)| id == session && *mark > before));
    // Re-created after revoking: new tokens, the documents stay.
    store.create_session(session, "j3", "r3").await.unwrap();
    let access = store.session_access(session).await.unwrap().unwrap();
    assert_eq!((access.join_hash.as_str(), access.revoked), ("j3", false));
    let listed = store.list_sessions().await.unwrap();
    let mine = listed.iter().find(|s| s.id == session).unwrap();
    assert_eq!((mine.documents, mine.revoked), (2, false));
    assert!(mine.created_at.is_some());
    let other = listed.iter().find(|s| s.id == other).unwrap();
    assert_eq!((other.documents, other.created_at), (1, None));

    // Files listed but not synced: replaced in place, taken off by path,
    // by session.
    store
        .put_listed(session, "z.png", 10, NotSynced::Binary)
        .await
        .unwrap();
    store
        .put_listed(session, "big.csv", 1 << 40, NotSynced::TooLarge)
        .await
        .unwrap();
    store
        .put_listed(session, "z.png", 12, NotSynced::SessionFull)
        .await
        .unwrap();
    store
        .put_listed(session, "gone.txt", 1, NotSynced::Binary)
        .await
        .unwrap();
    store.delete_listed(session, "gone.txt").await.unwrap();
    store
        .put_listed(&other.id, "z.png", 1, NotSynced::Binary)
        .await
        .unwrap();
    assert_eq!(
        store.load_listed(session).await.unwrap(),
        vec![
            listing("big.csv", 1 << 40, NotSynced::TooLarge),
            listing("z.png", 12, NotSynced::SessionFull),
        ]
    );
}

/// Renames and deletes of a file or a directory: every row at the path or
/// under it, and only those (not `é.txt` beside `é/`, nor another
/// session's), with their op logs; paths cut by characters, not bytes.
async fn exercise_tree_changes(store: &Store, session: &str) {
    for path in [
        "é/a.txt",
        "é/sub/b.txt",
        "é.txt",
        "éx/c.txt",
        "k.txt",
        "k.txtx",
    ] {
        store.create_doc(session, path, "x").await.unwrap();
    }
    store
        .append_op(session, "é/a.txt", 1, &op(r#"[1, "y"]"#), None)
        .await
        .unwrap();
    store
        .put_listed(session, "é/logo.png", 1, NotSynced::Binary)
        .await
        .unwrap();
    store
        .put_listed(session, "é2.bin", 2, NotSynced::Binary)
        .await
        .unwrap();
    let other = format!("{session}-other");
    store.create_doc(&other, "é/a.txt", "mine").await.unwrap();

    store.rename_paths(session, "é", "ü/ß").await.unwrap();
    store.rename_paths(session, "k.txt", "m.txt").await.unwrap();
    let docs = store.load_session(session).await.unwrap();
    let mut paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "k.txtx",
            "m.txt",
            "é.txt",
            "éx/c.txt",
            "ü/ß/a.txt",
            "ü/ß/sub/b.txt"
        ]
    );
    let moved = docs.iter().find(|d| d.path == "ü/ß/a.txt").unwrap();
    assert_eq!(moved.text().unwrap(), "xy", "the log moved with it");
    let mut listed = store.load_listed(session).await.unwrap();
    listed.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        listed,
        vec![
            listing("é2.bin", 2, NotSynced::Binary),
            listing("ü/ß/logo.png", 1, NotSynced::Binary),
        ]
    );
    let theirs = store.load_session(&other).await.unwrap();
    assert_eq!((theirs.len(), theirs[0].path.as_str()), (1, "é/a.txt"));

    store.delete_paths(session, "ü").await.unwrap();
    store.delete_paths(session, "m.txt").await.unwrap();
    let docs = store.load_session(session).await.unwrap();
    let mut paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["k.txtx", "é.txt", "éx/c.txt"]);
    assert_eq!(
        store.load_listed(session).await.unwrap(),
        vec![listing("é2.bin", 2, NotSynced::Binary)]
    );
    // Made again at a deleted path: no op of the old one comes back.
    store.create_doc(session, "ü/ß/a.txt", "new").await.unwrap();
    assert_eq!(
        store.stored_rev(session, "ü/ß/a.txt").await.unwrap(),
        Some(0)
    );
    assert_eq!(store.load_session(&other).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_renames_and_deletes_files_and_directories() {
    let dir = std::env::temp_dir().join(format!("chorus-store-moves-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&Database::Sqlite(dir.clone())).await.unwrap();
    exercise_tree_changes(&store, "s").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_renames_and_deletes_files_and_directories() {
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    let store = Store::open(&Database::Postgres(url)).await.unwrap();
    let session = format!("moves-{}-{}", std::process::id(), now_secs());
    exercise_tree_changes(&store, &session).await;
}

fn listing(path: &str, size: u64, reason: NotSynced) -> ListedFile {
    ListedFile {
        path: path.to_owned(),
        size,
        reason,
    }
}

/// A database made before listed files existed gains their table when a
/// newer hub opens it, its documents untouched.
#[tokio::test]
async fn sqlite_from_an_older_hub_gains_the_listed_files() {
    let dir = std::env::temp_dir().join(format!("chorus-store-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let old = rusqlite::Connection::open(dir.join("chorus.db")).unwrap();
    old.execute_batch(
        "CREATE TABLE documents (session TEXT NOT NULL, path TEXT NOT NULL,
            snapshot_rev BIGINT NOT NULL, snapshot_text TEXT NOT NULL,
            PRIMARY KEY (session, path));
         INSERT INTO documents VALUES ('s', 'a.txt', 0, 'old');",
    )
    .unwrap();
    drop(old);
    let store = Store::open(&Database::Sqlite(dir.clone())).await.unwrap();
    assert_eq!(store.load_listed("s").await.unwrap(), vec![]);
    store
        .put_listed("s", "b.bin", 3, NotSynced::Binary)
        .await
        .unwrap();
    let docs = store.load_session("s").await.unwrap();
    assert_eq!(docs[0].text().unwrap(), "old");
    assert_eq!(
        store.load_listed("s").await.unwrap(),
        vec![listing("b.bin", 3, NotSynced::Binary)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sqlite_keeps_documents_ops_snapshots_and_sessions() {
    let dir = std::env::temp_dir().join(format!("chorus-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&Database::Sqlite(dir.clone())).await.unwrap();
    exercise(&store, "s").await;
    drop(store);
    // And all of it is still there after reopening.
    let store = Store::open(&Database::Sqlite(dir.clone())).await.unwrap();
    let docs = store.load_session("s").await.unwrap();
    assert_eq!(docs[0].text().unwrap(), "¡hello world!");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Needs a real server: scripts/test.sh installs and starts one and sets
/// CHORUS_TEST_POSTGRES (and there its absence fails the test).
#[tokio::test]
async fn postgres_keeps_documents_ops_snapshots_and_sessions() {
    let Some(url) = chorus_testkit::postgres() else {
        return;
    };
    let store = Store::open(&Database::Postgres(url.clone())).await.unwrap();
    // A fresh session name per run: the database outlives test runs.
    let session = format!("storage-{}-{}", std::process::id(), now_secs());
    exercise(&store, &session).await;
    drop(store);
    let store = Store::open(&Database::Postgres(url)).await.unwrap();
    let docs = store.load_session(&session).await.unwrap();
    assert_eq!(docs[0].text().unwrap(), "¡hello world!");
}
