//! Retention over records SQLite cannot decode, planted with raw SQL: a sweep reads only
//! the expired prefix and the record that ends it, and an undecodable record that would
//! end an expired prefix counts as young, the rest of its page of series going on
//! (`storage_testkit::undecodable`).

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

/// A backend on a new file in `dir`, and a plant that overwrites a message's record
/// through a connection of its own.
async fn backend_and_plant(
    dir: &Path,
) -> (
    SqliteBackend,
    impl Fn(&'static str, u64, Vec<u8>) -> BoxFuture<'static, ()> + Sync,
) {
    let path: PathBuf = dir.join("retention.db");
    let b = SqliteBackend::new(SqliteConfig::new(&path).with_namespace("r")).unwrap();
    b.initialize().await.unwrap();
    let plant = move |session: &'static str, sequence: u64, bytes: Vec<u8>| {
        let path = path.clone();
        Box::pin(async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            let planted = conn
                .execute(
                    "UPDATE \"r.messages\" SET record = ?1 \
                     WHERE session_id = ?2 AND sequence = ?3",
                    rusqlite::params![bytes, session, i64::try_from(sequence).unwrap()],
                )
                .unwrap();
            assert_eq!(planted, 1);
        }) as BoxFuture<'static, ()>
    };
    (b, plant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_reads_the_records_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (b, plant) = backend_and_plant(dir.path()).await;
    storage_testkit::undecodable::a_sweep_never_decodes_the_records_it_keeps(&b, &plant).await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_ends_its_series_prefix_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (b, plant) = backend_and_plant(dir.path()).await;
    storage_testkit::undecodable::an_undecodable_record_ends_its_series_prefix(&b, &plant).await;
    b.close().await.unwrap();
}
