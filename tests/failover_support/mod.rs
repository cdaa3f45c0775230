//! The failover backend under the testkit's fault scenarios
//! (`storage_testkit::scenarios::outage`): `storage::failover::FailoverBackend` behind the
//! facade, with a fallback in object storage under a directory (so it outlives the
//! process, as the journal does).

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storage::failover::{FailoverBackend, FailoverMode, FailoverSettings};
use storage::Storage;
use storage_core::{async_trait, StorageBackend};
use storage_testkit::scenarios::outage::{FailoverFigures, FailoverHarness, FailoverUnderTest};

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "storage-{label}-{}",
            storage_core::new_checkpoint_id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Failover mode, a breaker that opens at the first failure, probes every 100 ms.
pub fn settings(journal_dir: &Path) -> FailoverSettings {
    FailoverSettings {
        mode: FailoverMode::Failover,
        failure_threshold: 1,
        probe_interval_ms: 100,
        recovery_probes: 2,
        journal_dir: journal_dir.to_owned(),
        ..FailoverSettings::default()
    }
}

/// The facade over `failover`, without a read cache (the test reads what is stored).
pub fn facade(failover: FailoverBackend) -> Storage {
    Storage::builder(Arc::new(failover)).cache(None).build()
}

/// An object-storage backend on the local directory `dir`.
pub fn directory_fallback(dir: &Path) -> Arc<dyn StorageBackend> {
    let config = storage_object::ObjectConfig {
        url: format!("file://{}", dir.display()),
        namespace: "fallback".into(),
        ..storage_object::ObjectConfig::default()
    };
    Arc::new(storage_object::ObjectBackend::new(config).unwrap())
}

/// Opens `FailoverBackend`s for the testkit's scenarios: `adjust` changes the
/// [`settings`] (attempt deadline, threshold).
pub struct Harness {
    pub adjust: fn(&mut FailoverSettings),
}

impl Default for Harness {
    fn default() -> Self {
        Harness { adjust: |_| {} }
    }
}

/// A `FailoverBackend` and the facade over it, as the scenarios see them.
pub struct UnderTest {
    pub failover: FailoverBackend,
    pub storage: Arc<Storage>,
}

#[async_trait]
impl FailoverUnderTest for UnderTest {
    fn storage(&self) -> Arc<dyn StorageBackend> {
        self.storage.clone()
    }

    fn status(&self) -> FailoverFigures {
        let status = self.failover.status();
        FailoverFigures {
            open: status.open,
            journal_pending: status.journal_pending,
            journaled: status.journaled,
            replayed: status.replayed,
            refused: status.refused,
        }
    }

    async fn wait_until_recovered(&self, timeout: Duration) -> bool {
        self.failover.wait_until_recovered(timeout).await
    }
}

impl Harness {
    /// A new, initialized failover backend and its facade.
    pub async fn open_backend(
        &self,
        primary: Arc<dyn StorageBackend>,
        journal_dir: &Path,
        fallback_dir: &Path,
    ) -> UnderTest {
        let mut settings = settings(journal_dir);
        (self.adjust)(&mut settings);
        let failover =
            FailoverBackend::new(primary, directory_fallback(fallback_dir), settings).unwrap();
        let storage = Arc::new(facade(failover.clone()));
        storage.initialize().await.unwrap();
        UnderTest { failover, storage }
    }
}

#[async_trait]
impl FailoverHarness for Harness {
    async fn open(
        &self,
        primary: Arc<dyn StorageBackend>,
        journal_dir: &Path,
        fallback_dir: &Path,
    ) -> Box<dyn FailoverUnderTest> {
        Box::new(self.open_backend(primary, journal_dir, fallback_dir).await)
    }
}
