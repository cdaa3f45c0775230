//! The whole conformance suite on one SQLite file shared by every check (each in its own
//! namespace, so namespace isolation inside one file is exercised too).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

/// One database file for the test binary, like one server.
fn path() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
            .path()
            .join("conformance.db")
    })
}

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    let config = SqliteConfig::new(path()).with_namespace(namespace);
    Arc::new(SqliteBackend::new(config).expect("valid sqlite config"))
}

storage_testkit::conformance_tests!(backend);

/// 10,000 levels of JSON through every write, on a tokio worker in a debug build: refused
/// as `InvalidInput`, no stack overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_levels_are_refused_on_a_tokio_worker() {
    let b = backend("t_hostile_depth_10k".to_owned()).await;
    b.initialize().await.unwrap();
    storage_testkit::data::refuses_hostile_depth(b, 10_000).await;
}
