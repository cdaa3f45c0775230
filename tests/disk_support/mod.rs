//! What the disk tests (`disk_full`, `disk_hang`) share: running the system's mount tools,
//! and a store whose every file lives in one directory, the file system under test.

use std::path::Path;
use std::process::Command;

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

/// Runs `program` with `args`, failing the test with what it `needs` when that fails.
pub fn run(program: &str, args: &[&str], needs: &str) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(
        status.success(),
        "{program} {args:?} failed ({status}): this test needs {needs}"
    );
}

/// Detaches the file system mounted on `path` (lazily: whatever still uses it keeps it);
/// for `Drop`, so a failure is ignored.
pub fn unmount(path: &Path) {
    let _ = Command::new("umount").arg("-l").arg(path).status();
}
