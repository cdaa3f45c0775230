//! What the stored counts (V4's triggers) cost appends and saves: two namespaces at the
//! current schema, one with the count triggers dropped (an append or save as the previous
//! release ran it), timed alternately round by round; the medians per operation are
//! printed. Run by hand:
//! `cargo test -p storage-sqlite --release --test stored_counts_cost -- --ignored --nocapture`.

use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

async fn backend(path: &std::path::Path, counted: bool) -> SqliteBackend {
    let b = SqliteBackend::new(SqliteConfig::new(path)).unwrap();
    b.initialize().await.unwrap();
    if !counted {
        let conn = rusqlite::Connection::open(path).unwrap();
        for trigger in [
            "messages_stored_insert",
            "messages_stored_delete",
            "artifacts_stored_insert",
            "artifacts_stored_delete",
        ] {
            conn.execute_batch(&format!("DROP TRIGGER \"storage.{trigger}\""))
                .unwrap();
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn appends_and_saves_with_and_without_counts() {
    let dir = tempfile::tempdir().unwrap();
    let without = backend(&dir.path().join("uncounted.db"), false).await;
    let with = backend(&dir.path().join("counted.db"), true).await;
    storage_testkit::counts::time_writes_with_and_without_counts("sqlite", &without, &with).await;
}
