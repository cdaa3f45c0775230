//! Scheduled cleanup of expired sessions.

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
