//! The whole contract of a backend: all five stores plus lifecycle, health and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::ArtifactStore;
use crate::checkpoint::CheckpointStore;
use crate::conversation::ConversationStore;
use crate::error::Result;
use crate::session::SessionStore;
use crate::task_context::TaskContextStore;

/// A backend's answer to a health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// The backend's name (`memory`, `redis`, ...).
    pub backend: String,
    /// Whether it answered correctly.
    pub healthy: bool,
    /// Round-trip time of the check, in milliseconds.
    pub latency_ms: f64,
    /// Backend-specific facts: server version, pool state, ...
    pub details: BTreeMap<String, String>,
}

/// Figures a backend reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendMetrics {
    /// The backend's name.
    pub backend: String,
    /// Monotonic counts (records stored, pool connections created, ...).
    pub counters: BTreeMap<String, u64>,
    /// Point-in-time values (pool size, idle connections, ...).
    pub gauges: BTreeMap<String, f64>,
}

/// Everything a backend provides. Object safe: use it as `Arc<dyn StorageBackend>`, and
/// upcast to any single store trait where only one kind is needed. `Debug` is required so
/// callers can keep a backend in their own `#[derive(Debug)]` types; it must not print
/// secrets.
///
/// ```
/// use std::sync::Arc;
/// use storage_core::{SessionStore, StorageBackend};
///
/// fn sessions_only(backend: Arc<dyn StorageBackend>) -> Arc<dyn SessionStore> {
///     backend
/// }
/// ```
#[async_trait]
pub trait StorageBackend:
    SessionStore
    + ConversationStore
    + CheckpointStore
    + TaskContextStore
    + ArtifactStore
    + std::fmt::Debug
    + Send
    + Sync
{
    /// A short, stable name: `memory`, `redis`, `postgres`, `object`.
    fn name(&self) -> &'static str;

    /// Prepares the backend (connects, applies migrations, loads scripts). Idempotent.
    async fn initialize(&self) -> Result<()>;

    /// Releases connections. Operations after `close` fail with `Connection`.
    async fn close(&self) -> Result<()>;

    /// Checks that the backend answers, and how fast.
    async fn health_check(&self) -> Result<HealthStatus>;

    /// The backend's own figures.
    async fn get_metrics(&self) -> Result<BackendMetrics>;

    /// Removes sessions whose last activity is older than `max_idle`, with their
    /// conversation and task context, at a cost proportional to what is removed.
    /// Returns how many sessions were removed.
    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64>;
}
