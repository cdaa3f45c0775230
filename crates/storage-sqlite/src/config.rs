//! Configuration of the SQLite backend.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storage_core::{Result, StorageError};

/// When SQLite waits for the disk (`PRAGMA synchronous`), in WAL mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Never: a crash of the machine (not of the process) can lose or corrupt recent
    /// commits. For throwaway data only.
    Off,
    /// At checkpoints only: the database stays consistent, but a power loss can undo the
    /// last commits (a process crash cannot).
    Normal,
    /// Every commit is on the disk (the WAL is fsynced) before it is acknowledged.
    #[default]
    Full,
    /// As `Full`, and the directory is also synced after the WAL is reset.
    Extra,
}

impl Synchronous {
    /// The pragma's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// Which file, which namespace, and how durable.
///
/// Several backends (in one process or many) may open the same file: writes take SQLite's
/// write lock with `BEGIN IMMEDIATE` and wait up to `busy_timeout_ms` for it. Two
/// namespaces in one file keep their tables apart (`"<namespace>.sessions"`, ...).
///
/// ```
/// use storage_sqlite::{SqliteConfig, Synchronous};
///
/// let config = SqliteConfig::new("./.storage/storage.db").with_namespace("agents");
/// assert_eq!(config.synchronous, Synchronous::Full);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file; created (with its directory) if missing.
    pub path: PathBuf,
    /// The namespace: the prefix of every table (a valid storage namespace).
    pub namespace: String,
    /// Durability of a commit; `full` by default.
    pub synchronous: Synchronous,
    /// How long a write waits for another connection's write lock, in milliseconds.
    pub busy_timeout_ms: u64,
    /// Reader threads, each with one connection (WAL readers run concurrently with each other
    /// and the writer); also the most connections of reads run on their caller's thread.
    pub readers: usize,
    /// Most write operations committed together in one transaction (group commit).
    pub max_batch: usize,
    /// Largest artifact accepted, in bytes; `None` accepts up to SQLite's own limit.
    pub max_artifact_bytes: Option<u64>,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("./.storage/storage.db"),
            namespace: "storage".into(),
            synchronous: Synchronous::Full,
            busy_timeout_ms: 5_000,
            readers: 4,
            max_batch: 256,
            max_artifact_bytes: None,
        }
    }
}

/// SQLite's default ceiling for one string or blob (`SQLITE_MAX_LENGTH`), less room for
/// the rest of the row.
const BLOB_LIMIT: u64 = 1_000_000_000 - 1024;

impl SqliteConfig {
    /// A configuration for the file at `path`, with defaults for everything else.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Sets the namespace (the table prefix).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the durability of a commit.
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets how long a write waits for another connection's lock.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        storage_core::validate::validate_namespace(&self.namespace)?;
        if self.path.as_os_str().is_empty() {
            return Err(StorageError::config("sqlite.path must not be empty"));
        }
        if self.readers == 0 {
            return Err(StorageError::config("sqlite.readers must be at least 1"));
        }
        if self.max_batch == 0 {
            return Err(StorageError::config("sqlite.max_batch must be at least 1"));
        }
        Ok(())
    }

    /// The artifact size limit in force: the configured one, capped at what a blob holds.
    pub(crate) fn artifact_limit(&self) -> u64 {
        self.max_artifact_bytes
            .map_or(BLOB_LIMIT, |limit| limit.min(BLOB_LIMIT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_values() {
        assert!(SqliteConfig::default().validate().is_ok());
        assert!(SqliteConfig::default()
            .with_namespace("Bad")
            .validate()
            .is_err());
        let no_readers = SqliteConfig {
            readers: 0,
            ..SqliteConfig::default()
        };
        assert!(no_readers.validate().is_err());
        assert!(SqliteConfig::new("").validate().is_err());
    }

    #[test]
    fn synchronous_reads_from_config_names() {
        let parsed: Synchronous = serde_json::from_str("\"normal\"").unwrap();
        assert_eq!(parsed, Synchronous::Normal);
        assert_eq!(Synchronous::default().as_str(), "FULL");
    }
}
