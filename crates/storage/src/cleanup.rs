//! Scheduled cleanup: expired sessions, and orphaned artifact content on object storage.

use std::sync::Arc;
use std::time::Duration;

use storage_core::StorageBackend;
use tokio::task::JoinHandle;

use crate::Storage;

/// A running cleanup schedule; dropping it (or calling [`CleanupTask::stop`]) stops it.
#[derive(Debug)]
pub struct CleanupTask {
    handle: JoinHandle<()>,
}

impl CleanupTask {
    /// Stops the schedule.
    pub fn stop(self) {
        self.handle.abort();
    }
}

impl Drop for CleanupTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Storage {
    /// Removes sessions idle longer than `max_idle` every `interval`, on the current tokio
    /// runtime, through the facade (so the cache forgets them and metrics count the runs).
    /// When the facade was built from configuration and a kind is stored on object
    /// storage, each run also collects orphaned artifact content older than
    /// `cleanup.artifact_grace_secs` (see [`Storage::collect_artifact_garbage`]).
    /// A failed run is logged and retried at the next tick.
    pub fn spawn_cleanup(self: &Arc<Self>, interval: Duration, max_idle: Duration) -> CleanupTask {
        let storage = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(storage) = storage.upgrade() else {
                    return;
                };
                match storage.cleanup_expired_sessions(max_idle).await {
                    Ok(removed) => {
                        tracing::info!(removed, "scheduled cleanup removed expired sessions")
                    }
                    Err(err) => tracing::warn!(
                        error.kind = %err.kind(),
                        error = %err,
                        "scheduled cleanup failed"
                    ),
                }
                scheduled_garbage_collection(&storage).await;
            }
        });
        CleanupTask { handle }
    }

    /// Starts the schedule of the configuration's `cleanup` section, if it has one
    /// (`cleanup.interval_secs` above 0).
    pub fn spawn_configured_cleanup(self: &Arc<Self>) -> Option<CleanupTask> {
        let settings = &self.config()?.cleanup;
        (settings.interval_secs > 0).then(|| {
            self.spawn_cleanup(
                Duration::from_secs(settings.interval_secs),
                Duration::from_secs(settings.max_idle_secs),
            )
        })
    }
}

#[cfg(feature = "object")]
async fn scheduled_garbage_collection(storage: &Storage) {
    let Some(grace) = storage
        .config()
        .map(|config| Duration::from_secs(config.cleanup.artifact_grace_secs))
    else {
        return;
    };
    match storage.collect_artifact_garbage(grace).await {
        Ok(Some(report)) => tracing::info!(
            data_objects = report.data_objects,
            data_bytes = report.data_bytes,
            staging_files = report.staging_files,
            staging_bytes = report.staging_bytes,
            "scheduled cleanup collected orphaned artifact content"
        ),
        Ok(None) => {}
        Err(err) => tracing::warn!(
            error.kind = %err.kind(),
            error = %err,
            "scheduled artifact garbage collection failed"
        ),
    }
}

#[cfg(not(feature = "object"))]
async fn scheduled_garbage_collection(_storage: &Storage) {}

#[cfg(feature = "object")]
impl Storage {
    /// Removes artifact content on object storage that no committed version references
    /// (left by saves whose process died before committing) and abandoned upload staging
    /// files (local directory), when older than `grace`: see
    /// [`storage_object::ObjectBackend::collect_garbage`]. Runs on the object backend of
    /// the configuration (its live namespace) when some kind is routed to it; `Ok(None)`
    /// when none is, or when the facade was not built from configuration (then call
    /// `collect_garbage` on the `ObjectBackend` itself).
    pub async fn collect_artifact_garbage(
        &self,
        grace: Duration,
    ) -> storage_core::Result<Option<storage_object::GarbageReport>> {
        let Some(config) = self.config() else {
            return Ok(None);
        };
        let on_objects = crate::Kind::ALL
            .iter()
            .any(|&kind| config.backend_of(kind) == crate::config::BackendName::Object);
        if !on_objects {
            return Ok(None);
        }
        // A second handle on the same store: the object backend keeps no state in-process
        // that collection needs, and saves of other handles and processes are safe.
        let backend = storage_object::ObjectBackend::new(config.object.clone())?;
        let report = backend.collect_garbage(grace).await;
        let _ = backend.close().await;
        report.map(Some)
    }
}
