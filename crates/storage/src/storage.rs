//! The facade: routing by kind, and the one place where it changes an operation
//! (`Storage::perform`); every other operation goes, through every layer, to the backend
//! serving its kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage_core::ext::TaskContextStoreExt;

use async_trait::async_trait;
use futures::future::BoxFuture;
use storage_core::operation::Dispatch;
use storage_core::{BackendMetrics, Call, Reply, Result, Session, SessionQuery, StorageBackend};

use crate::config::{
    CacheSettings, GroupCommitSettings, RetrySettings, StorageConfig, TimeoutSettings,
};
use crate::group_commit::GroupCommit;
use crate::health::HealthReport;
use crate::layer::{
    CacheLayer, Layer, MetricsLayer, Operation, RetryLayer, Stack, TimeoutLayer, TracingLayer,
};
use crate::routes::{route_label, Routes};
use crate::Kind;

/// The layers every operation runs through, outermost first: tracing span, metrics, read
/// cache, retry, timeout.
pub type FacadeLayers = Stack<
    TracingLayer,
    Stack<Arc<MetricsLayer>, Stack<Option<Arc<CacheLayer>>, Stack<RetryLayer, TimeoutLayer>>>,
>;

/// Assembles a [`Storage`] from backends built in code.
///
/// ```
/// use std::sync::Arc;
/// use storage::{Kind, Storage};
/// use storage_memory::MemoryBackend;
///
/// let main = Arc::new(MemoryBackend::new("app").unwrap());
/// let blobs = Arc::new(MemoryBackend::new("blobs").unwrap());
/// let storage = Storage::builder(main).route(Kind::Artifacts, blobs).build();
/// assert_eq!(storage.backend_name_of(Kind::Artifacts), "memory");
/// ```
#[derive(Debug)]
pub struct StorageBuilder {
    default: Arc<dyn StorageBackend>,
    routes: [Option<Arc<dyn StorageBackend>>; 5],
    cache: Option<CacheSettings>,
    retry: RetrySettings,
    timeouts: TimeoutSettings,
    group_commit: GroupCommitSettings,
    config: Option<StorageConfig>,
}

impl StorageBuilder {
    /// Routes `kind` to `backend` instead of the default one.
    pub fn route(mut self, kind: Kind, backend: Arc<dyn StorageBackend>) -> Self {
        self.routes[kind.index()] = Some(backend);
        self
    }
    /// Sets the read cache (`None` disables it).
    pub fn cache(mut self, cache: Option<CacheSettings>) -> Self {
        self.cache = cache;
        self
    }
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetrySettings) -> Self {
        self.retry = retry;
        self
    }
    /// Sets the deadlines.
    pub fn timeouts(mut self, timeouts: TimeoutSettings) -> Self {
        self.timeouts = timeouts;
        self
    }
    /// Sets group commit of appends.
    pub fn group_commit(mut self, group_commit: GroupCommitSettings) -> Self {
        self.group_commit = group_commit;
        self
    }

    /// The facade.
    pub fn build(self) -> Storage {
        let by_kind = Kind::ALL.map(|kind| {
            self.routes[kind.index()]
                .clone()
                .unwrap_or_else(|| self.default.clone())
        });
        let routes = Routes::new(by_kind);
        let name = routes.name();
        let metrics = Arc::new(MetricsLayer::new());
        let cache = self.cache.as_ref().map(|settings| {
            Arc::new(CacheLayer::new(
                settings.max_entries,
                settings.max_bytes,
                Duration::from_millis(settings.ttl_ms),
            ))
        });
        let layers = Stack {
            outer: TracingLayer,
            inner: Stack {
                outer: metrics.clone(),
                inner: Stack {
                    outer: cache.clone(),
                    inner: Stack {
                        outer: RetryLayer::new(
                            self.retry.max_attempts,
                            Duration::from_millis(self.retry.initial_backoff_ms),
                            Duration::from_millis(self.retry.max_backoff_ms),
                        ),
                        inner: TimeoutLayer::new(
                            Duration::from_millis(self.timeouts.read_ms),
                            Duration::from_millis(self.timeouts.write_ms),
                        ),
                    },
                },
            },
        };
        let group_commit = self
            .group_commit
            .enabled
            .then(|| Arc::new(GroupCommit::new(self.group_commit.max_batch)));
        Storage {
            routes,
            layers,
            metrics,
            cache,
            group_commit,
            config: self.config,
            name,
        }
    }
}

/// One typed storage over one backend or a backend per kind, with metrics, tracing,
/// deadlines, retries and a read cache around every operation.
///
/// `Storage` implements [`StorageBackend`] itself, so it is used exactly like a backend
/// (and the conformance suite runs on it).
#[derive(Debug)]
pub struct Storage {
    pub(crate) routes: Routes,
    layers: FacadeLayers,
    metrics: Arc<MetricsLayer>,
    cache: Option<Arc<CacheLayer>>,
    group_commit: Option<Arc<GroupCommit>>,
    pub(crate) config: Option<StorageConfig>,
    name: &'static str,
}

/// The read cache `settings` ask for: none unless `enabled` (the default), for a builder
/// and a configuration alike.
fn cache_if_enabled(settings: CacheSettings) -> Option<CacheSettings> {
    settings.enabled.then_some(settings)
}

impl Storage {
    /// A builder with `backend` serving every kind and the default layer settings.
    pub fn builder(backend: Arc<dyn StorageBackend>) -> StorageBuilder {
        let defaults = StorageConfig::default();
        StorageBuilder {
            default: backend,
            routes: Default::default(),
            cache: cache_if_enabled(defaults.cache),
            retry: defaults.retry,
            timeouts: defaults.timeouts,
            group_commit: defaults.group_commit,
            config: None,
        }
    }

    /// Builds the backends `config` routes to (each once) and the layers it configures.
    /// Call [`StorageBackend::initialize`] before use.
    pub fn from_config(config: StorageConfig) -> Result<Self> {
        config.validate()?;
        let [sessions, conversations, checkpoints, task_context, artifacts] =
            crate::factory::build_routes(&config, None)?;
        let builder = StorageBuilder {
            default: sessions.clone(),
            routes: [
                Some(sessions),
                Some(conversations),
                Some(checkpoints),
                Some(task_context),
                Some(artifacts),
            ],
            cache: cache_if_enabled(config.cache.clone()),
            retry: config.retry.clone(),
            timeouts: config.timeouts.clone(),
            group_commit: config.group_commit.clone(),
            config: Some(config),
        };
        Ok(builder.build())
    }

    /// Loads the configuration (see [`crate::config`]) and builds from it.
    pub fn load() -> Result<Self> {
        Self::from_config(StorageConfig::load()?)
    }

    /// The configuration the facade was built from, if it was built from one.
    pub fn config(&self) -> Option<&StorageConfig> {
        self.config.as_ref()
    }

    /// The name of the backend serving `kind`.
    pub fn backend_name_of(&self, kind: Kind) -> &'static str {
        self.routes.of(kind).name()
    }

    /// The backend serving `kind`, without the facade's layers.
    pub fn backend_of(&self, kind: Kind) -> Arc<dyn StorageBackend> {
        self.routes.of(kind).clone()
    }

    /// Figures per operation and backend recorded so far.
    pub fn operation_stats(&self) -> Vec<crate::layer::OperationStats> {
        self.metrics.snapshot()
    }

    /// Read-cache figures, if the cache is on.
    pub fn cache_stats(&self) -> Option<crate::layer::CacheStats> {
        self.cache.as_ref().map(|cache| cache.stats())
    }

    /// Checks every backend; in deep mode also writes, reads back and deletes one record
    /// of each kind (in the `health.namespace` scratch namespace when the facade was built
    /// from configuration, else in the live namespaces under unique ids).
    pub async fn health(&self, deep: bool) -> HealthReport {
        crate::health::check(&self.routes, self.config.as_ref(), deep).await
    }

    /// Removes a session and, where those kinds live on other backends, its conversation
    /// and task context.
    async fn delete_session_everywhere(&self, id: &str) -> Result<bool> {
        let existed = self.routes.of(Kind::Sessions).delete_session(id).await?;
        if !self.routes.is_shared(Kind::Sessions, Kind::Conversations) {
            self.routes
                .of(Kind::Conversations)
                .clear_conversation(id)
                .await?;
        }
        if !self.routes.is_shared(Kind::Sessions, Kind::TaskContext) {
            self.routes
                .of(Kind::TaskContext)
                .delete_task_context(id)
                .await?;
        }
        Ok(existed)
    }

    /// Cleanup when conversation or task context live apart from sessions: the sessions
    /// backend cannot reach them, so expired sessions are found by listing and removed one
    /// by one, each re-checked just before it goes.
    async fn cleanup_everywhere(&self, max_idle: Duration) -> Result<u64> {
        let sessions = self.routes.of(Kind::Sessions);
        if self.routes.is_shared(Kind::Sessions, Kind::Conversations)
            && self.routes.is_shared(Kind::Sessions, Kind::TaskContext)
        {
            return sessions.cleanup_expired_sessions(max_idle).await;
        }
        let max_idle_micros = i64::try_from(max_idle.as_micros()).unwrap_or(i64::MAX);
        let expired = |session: &Session| {
            let now = storage_core::time::to_micros(storage_core::time::now());
            storage_core::time::to_micros(session.last_activity)
                < now.saturating_sub(max_idle_micros)
        };
        let mut candidates = Vec::new();
        let mut cursor = None;
        loop {
            let page = sessions
                .list_sessions(SessionQuery {
                    limit: 500,
                    cursor,
                    ..SessionQuery::default()
                })
                .await?;
            candidates.extend(
                page.items
                    .iter()
                    .filter(|session| expired(session))
                    .map(|session| session.id.clone()),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut removed = 0;
        for id in candidates {
            let still_expired = sessions
                .get_session(&id)
                .await?
                .is_some_and(|session| expired(&session));
            if still_expired && self.delete_session_everywhere(&id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl Dispatch for Storage {
    fn label(&self) -> &'static str {
        self.name
    }

    /// Every operation: described by the table, run through every layer, performed by
    /// `Storage::perform`.
    async fn dispatch(&self, call: Call) -> Result<Reply> {
        let description = call.describe();
        let kind = description.kind;
        let backend = kind.map_or(self.name, |kind| self.backend_name_of(kind));
        let op = Operation::new(description, backend);
        let call = &call;
        self.layers.around(&op, &|| self.perform(call, kind)).await
    }
}

impl Storage {
    /// Where the facade changes an operation: calls that span backends (deleting a
    /// session, cleanup, lifecycle), and group commit. Everything else is the call itself,
    /// applied to the backend serving its kind.
    fn perform<'a>(&'a self, call: &'a Call, kind: Option<Kind>) -> BoxFuture<'a, Result<Reply>> {
        match (call, &self.group_commit) {
            (Call::DeleteSession { id }, _) => Box::pin(async move {
                self.delete_session_everywhere(id)
                    .await
                    .map(Reply::DeleteSession)
            }),
            (Call::CleanupExpiredSessions { max_idle }, _) => Box::pin(async move {
                self.cleanup_everywhere(*max_idle)
                    .await
                    .map(Reply::CleanupExpiredSessions)
            }),
            (
                Call::AppendMessage {
                    session_id,
                    message,
                },
                Some(group),
            ) => {
                let backend = self.routes.of(Kind::Conversations).clone();
                Box::pin(async move {
                    group
                        .append(backend, session_id, message.clone())
                        .await
                        .map(Reply::AppendMessage)
                })
            }
            (
                Call::PutCheckpoint {
                    checkpoint,
                    new_versions,
                },
                Some(group),
            ) => {
                let backend = self.routes.of(Kind::Checkpoints).clone();
                Box::pin(async move {
                    group
                        .put_checkpoint(backend, checkpoint.clone(), new_versions.clone())
                        .await
                        .map(Reply::PutCheckpoint)
                })
            }
            (Call::Initialize {}, _) => Box::pin(async move {
                for (backend, _) in &self.routes.distinct {
                    backend.initialize().await?;
                }
                Ok(Reply::Initialize(()))
            }),
            (Call::Close {}, _) => Box::pin(async move {
                let mut first_error = None;
                for (backend, _) in &self.routes.distinct {
                    if let Err(err) = backend.close().await {
                        first_error.get_or_insert(err);
                    }
                }
                first_error.map_or(Ok(Reply::Close(())), Err)
            }),
            (Call::HealthCheck {}, _) => Box::pin(async move {
                if let [(only, _)] = self.routes.distinct.as_slice() {
                    return only.health_check().await.map(Reply::HealthCheck);
                }
                let report = crate::health::check(&self.routes, self.config.as_ref(), false).await;
                Ok(Reply::HealthCheck(report.summary(self.name)))
            }),
            (Call::GetMetrics {}, _) => {
                Box::pin(async move { self.all_metrics().await.map(Reply::GetMetrics) })
            }
            (call, _) => {
                // Every call without a kind is a lifecycle call, answered above.
                let backend = self.routes.of(kind.unwrap_or(Kind::Sessions));
                Box::pin(call.apply(backend.as_ref()))
            }
        }
    }

    /// Each backend's own figures under its route label, the facade's per-operation
    /// figures and the cache's.
    async fn all_metrics(&self) -> Result<BackendMetrics> {
        let mut metrics = BackendMetrics {
            backend: self.name.to_owned(),
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
        };
        for (backend, kinds) in &self.routes.distinct {
            let own = backend.get_metrics().await?;
            let prefix = route_label(backend.name(), kinds);
            for (key, value) in own.counters {
                metrics.counters.insert(format!("{prefix}.{key}"), value);
            }
            for (key, value) in own.gauges {
                metrics.gauges.insert(format!("{prefix}.{key}"), value);
            }
        }
        for stats in self.metrics.snapshot() {
            let prefix = format!("op.{}.{}", stats.operation, stats.backend);
            metrics
                .counters
                .insert(format!("{prefix}.count"), stats.count);
            metrics
                .counters
                .insert(format!("{prefix}.errors"), stats.errors);
            metrics
                .gauges
                .insert(format!("{prefix}.p50_ms"), stats.p50_ms);
            metrics
                .gauges
                .insert(format!("{prefix}.p95_ms"), stats.p95_ms);
            metrics
                .gauges
                .insert(format!("{prefix}.p99_ms"), stats.p99_ms);
        }
        if let Some(cache) = self.cache_stats() {
            metrics.counters.insert("cache.hits".into(), cache.hits);
            metrics.counters.insert("cache.misses".into(), cache.misses);
            metrics
                .gauges
                .insert("cache.entries".into(), cache.entries as f64);
            metrics
                .gauges
                .insert("cache.bytes".into(), cache.bytes as f64);
        }
        Ok(metrics)
    }
}
