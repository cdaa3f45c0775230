//! Migrations: concurrent `initialize` calls on one fresh file apply each version once;
//! running again applies nothing; namespaces in one file keep their own tables.

use std::sync::Arc;

use storage_core::{SessionStore, StorageBackend};
use storage_sqlite::{SqliteBackend, SqliteConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_initializers_apply_each_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("dir").join("m.db");
    // Six backends (six writer connections, as six processes would have) at once.
    let backends: Vec<Arc<SqliteBackend>> = (0..6)
        .map(|_| {
            Arc::new(SqliteBackend::new(SqliteConfig::new(&path).with_namespace("mig")).unwrap())
        })
        .collect();
    let runs = backends.iter().map(|b| {
        let b = b.clone();
        tokio::spawn(async move { b.initialize().await })
    });
    for run in futures::future::join_all(runs).await {
        run.unwrap().unwrap();
    }
    backends[0].initialize().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<u32> = conn
        .prepare("SELECT version FROM \"mig.schema_migrations\" ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected: Vec<u32> = (1..=storage_sqlite::schema::latest_version()).collect();
    assert_eq!(versions, expected);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let health = backends[1].health_check().await.unwrap();
    assert_eq!(
        health.details["schema_version"],
        storage_sqlite::schema::latest_version().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_opened_fails_as_connection_and_nothing_hangs() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    let backend = SqliteBackend::new(SqliteConfig::new(&path)).unwrap();
    let err = backend.initialize().await.unwrap_err();
    assert_eq!(err.kind(), storage_core::ErrorKind::Connection, "{err}");
    let err = backend.get_session("s").await.unwrap_err();
    assert_eq!(err.kind(), storage_core::ErrorKind::Connection, "{err}");
}
