//! Scheduled cleanup: expired sessions, each kind's retention, and orphaned artifact
//! content on object storage.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use storage_core::{
    ArtifactStore, CheckpointStore, ConversationStore, StorageBackend, TaskContextStore,
};
use tokio::task::JoinHandle;

use crate::config::RetentionSettings;
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
    /// When the facade was built from configuration, each run then applies the
    /// `cleanup.retention` policies (see [`Storage::apply_retention`]).
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
                scheduled_retention(&storage).await;
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

/// What one retention run removed, per kind: records of each series (messages, context
/// versions, checkpoints, artifact versions), never what went with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Messages removed.
    pub messages: u64,
    /// Context versions removed.
    pub context_versions: u64,
    /// Checkpoints removed.
    pub checkpoints: u64,
    /// Artifact versions removed.
    pub artifact_versions: u64,
}

impl RetentionReport {
    /// Each kind's count with the key naming it, in the order of
    /// [`RetentionSettings::kinds`].
    pub fn kinds(&self) -> [(&'static str, u64); 4] {
        [
            ("messages", self.messages),
            ("context_versions", self.context_versions),
            ("checkpoints", self.checkpoints),
            ("artifact_versions", self.artifact_versions),
        ]
    }
}

impl Storage {
    /// The configured retention (`cleanup.retention`): what the scheduled cleanup applies
    /// and `storectl cleanup` starts from; no limits for a storage built without a
    /// configuration.
    pub fn configured_retention(&self) -> RetentionSettings {
        self.config()
            .map(|config| config.cleanup.retention.clone())
            .unwrap_or_default()
    }

    /// Applies each kind's retention (see [`storage_core::retention`]) through the facade,
    /// so each sweep goes to the backend its kind is routed to, the cache forgets what it
    /// removed and metrics count it. Every limit is resolved against one `now`, so the
    /// sweeps agree on what "older than" means. A kind without limits is not swept. A kind
    /// whose sweep fails does not stop the others: each failure is logged (`warn`) and the
    /// first is returned once every kind has run.
    ///
    /// ```
    /// # async fn run() -> storage_core::Result<()> {
    /// use std::sync::Arc;
    /// use storage::config::RetentionSettings;
    /// use storage_core::{ConversationStore, NewMessage};
    ///
    /// let storage = storage::Storage::builder(Arc::new(
    ///     storage_memory::MemoryBackend::new("app")?,
    /// ))
    /// .build();
    /// for text in ["one", "two", "three"] {
    ///     storage.append_message("s1", NewMessage::new("user", text)).await?;
    /// }
    /// let mut retention = RetentionSettings::default();
    /// retention.messages.keep_last = Some(1);
    /// retention.checkpoints.max_age_secs = Some(7 * 24 * 3600);
    /// let report = storage.apply_retention(&retention).await?;
    /// assert_eq!(report.messages, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply_retention(
        &self,
        settings: &RetentionSettings,
    ) -> storage_core::Result<RetentionReport> {
        let now = storage_core::time::now();
        let bounded = |limits: &crate::config::KindRetention| {
            let retention = limits.policy().at(now);
            (!retention.is_unbounded()).then_some(retention)
        };
        let mut report = RetentionReport::default();
        let mut first_failure = None;
        if let Some(retention) = bounded(&settings.messages) {
            let swept = self.retain_messages(retention).await;
            record("messages", swept, &mut report.messages, &mut first_failure);
        }
        if let Some(retention) = bounded(&settings.context_versions) {
            let swept = self.retain_context_versions(retention).await;
            record(
                "context_versions",
                swept,
                &mut report.context_versions,
                &mut first_failure,
            );
        }
        if let Some(retention) = bounded(&settings.checkpoints) {
            let swept = self.retain_checkpoints(retention).await;
            record(
                "checkpoints",
                swept,
                &mut report.checkpoints,
                &mut first_failure,
            );
        }
        if let Some(retention) = bounded(&settings.artifact_versions) {
            let swept = self.retain_artifact_versions(retention).await;
            record(
                "artifact_versions",
                swept,
                &mut report.artifact_versions,
                &mut first_failure,
            );
        }
        match first_failure {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }
}

/// Keeps one kind's count, or logs its failure and keeps the first: a kind that fails
/// leaves the others to run.
fn record(
    kind: &str,
    swept: storage_core::Result<u64>,
    count: &mut u64,
    first_failure: &mut Option<storage_core::StorageError>,
) {
    match swept {
        Ok(removed) => *count = removed,
        Err(err) => {
            tracing::warn!(kind, error.kind = %err.kind(), error = %err, "retention sweep failed");
            first_failure.get_or_insert(err);
        }
    }
}

async fn scheduled_retention(storage: &Storage) {
    let settings = storage.configured_retention();
    if settings == RetentionSettings::default() {
        return;
    }
    match storage.apply_retention(&settings).await {
        Ok(report) => tracing::info!(
            messages = report.messages,
            context_versions = report.context_versions,
            checkpoints = report.checkpoints,
            artifact_versions = report.artifact_versions,
            "scheduled cleanup applied retention"
        ),
        Err(err) => tracing::warn!(
            error.kind = %err.kind(),
            error = %err,
            "scheduled retention failed"
        ),
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
            checkpoint_values = report.checkpoint_values,
            message_slots = report.message_slots,
            context_versions = report.context_versions,
            compaction_objects = report.compaction_objects,
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
