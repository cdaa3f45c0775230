//! What the disk tests (`disk_full`, `disk_hang`) share: a store whose every file lives in
//! one directory, the file system under test.

use std::path::Path;

use storage::config::BackendName;
use storage::StorageConfig;

/// `backend` for every kind but artifacts (SQLite: the embedded default) or for all
/// (object: the local directory), with the SQLite file, the local directory and the
/// failover journal all under `dir`.
pub fn config_on(backend: BackendName, dir: &Path) -> StorageConfig {
    let mut config = StorageConfig {
        backend,
        ..StorageConfig::default()
    };
    config.sqlite.path = dir.join("storage.db");
    config.object.url = format!("file://{}", dir.join("objects").display());
    config.failover.journal_dir = dir.join("journal");
    config
}
