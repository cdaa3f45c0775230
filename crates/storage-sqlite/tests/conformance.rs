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
