//! The facade: routing by kind, and the one forwarding implementation every operation
//! runs through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;
use storage_core::{
    Artifact, ArtifactMeta, ArtifactStore, BackendMetrics, BatchCreate, ByteStream,
    ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore, CheckpointTuple,
    ConversationStore, ExpectedVersion, HealthStatus, Message, MessageRange, Metadata, NewArtifact,
    NewMessage, NewSession, Page, PendingWrite, Result, Session, SessionQuery, SessionStatus,
    SessionStore, SessionUpdate, StorageBackend, StorageError, TaskContext, TaskContextStore,
};

use crate::config::{
    BackendName, CacheSettings, GroupCommitSettings, RetrySettings, StorageConfig, TimeoutSettings,
};
use crate::group_commit::GroupCommit;
use crate::layer::{
    CacheEffect, CacheLayer, CacheTag, Layer, MetricsLayer, Operation, Outcome, RetryLayer, Stack,
    TimeoutLayer, TracingLayer,
};
use crate::Kind;

/// The layers every operation runs through, outermost first: tracing span, metrics, read
/// cache, retry, timeout.
pub type FacadeLayers = Stack<
    TracingLayer,
    Stack<Arc<MetricsLayer>, Stack<Option<Arc<CacheLayer>>, Stack<RetryLayer, TimeoutLayer>>>,
>;

/// Which backend serves each kind.
#[derive(Debug)]
pub(crate) struct Routes {
    by_kind: [Arc<dyn StorageBackend>; 5],
    /// Each backend once, with the kinds it serves.
    pub(crate) distinct: Vec<(Arc<dyn StorageBackend>, Vec<Kind>)>,
}

fn same_backend(a: &Arc<dyn StorageBackend>, b: &Arc<dyn StorageBackend>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

impl Routes {
    fn new(by_kind: [Arc<dyn StorageBackend>; 5]) -> Self {
        let mut distinct: Vec<(Arc<dyn StorageBackend>, Vec<Kind>)> = Vec::new();
        for kind in Kind::ALL {
            let backend = &by_kind[kind.index()];
            match distinct.iter_mut().find(|(b, _)| same_backend(b, backend)) {
                Some((_, kinds)) => kinds.push(kind),
                None => distinct.push((backend.clone(), vec![kind])),
            }
        }
        Routes { by_kind, distinct }
    }

    pub(crate) fn of(&self, kind: Kind) -> &Arc<dyn StorageBackend> {
        &self.by_kind[kind.index()]
    }

    fn is_shared(&self, a: Kind, b: Kind) -> bool {
        same_backend(self.of(a), self.of(b))
    }
}

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
        let name = match routes.distinct.as_slice() {
            [(only, _)] => only.name(),
            _ => "routed",
        };
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

impl Storage {
    /// A builder with `backend` serving every kind and the default layer settings.
    pub fn builder(backend: Arc<dyn StorageBackend>) -> StorageBuilder {
        let defaults = StorageConfig::default();
        StorageBuilder {
            default: backend,
            routes: Default::default(),
            cache: Some(defaults.cache),
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
        let mut built: Vec<(BackendName, Arc<dyn StorageBackend>)> = Vec::new();
        let mut by_kind: [Option<Arc<dyn StorageBackend>>; 5] = Default::default();
        for kind in Kind::ALL {
            let name = config.backend_of(kind);
            let backend = match built.iter().find(|(n, _)| *n == name) {
                Some((_, backend)) => backend.clone(),
                None => {
                    let backend = crate::factory::build_backend(name, &config, None)?;
                    built.push((name, backend.clone()));
                    backend
                }
            };
            by_kind[kind.index()] = Some(backend);
        }
        crate::failover::wrap_routes(&config, &mut built, &mut by_kind)?;
        let [sessions, conversations, checkpoints, task_context, artifacts] =
            by_kind.map(|backend| backend.expect("every kind is routed"));
        let builder = StorageBuilder {
            default: sessions.clone(),
            routes: [
                Some(sessions),
                Some(conversations),
                Some(checkpoints),
                Some(task_context),
                Some(artifacts),
            ],
            cache: config.cache.enabled.then(|| config.cache.clone()),
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

    fn read(&self, name: &'static str, kind: Kind) -> Operation {
        Operation::read(name, Some(kind), self.backend_name_of(kind))
    }

    fn write(&self, name: &'static str, kind: Kind, idempotent: bool) -> Operation {
        Operation::write(name, Some(kind), self.backend_name_of(kind), idempotent)
    }

    fn lifecycle(&self, name: &'static str, read: bool) -> Operation {
        if read {
            Operation::read(name, None, self.name)
        } else {
            Operation::write(name, None, self.name, true)
        }
    }

    /// Runs `call` (which performs the operation on its backend) through every layer.
    async fn run<'a, T: Outcome>(
        &'a self,
        op: Operation,
        call: impl Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    ) -> Result<T> {
        self.layers.around(&op, &call).await
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

fn read_of(kind: Kind, group: &str, item: impl Into<String>) -> CacheEffect {
    CacheEffect::Read {
        tag: CacheTag::new(kind, group),
        item: item.into(),
    }
}

fn invalidate(kind: Kind, group: &str) -> CacheEffect {
    CacheEffect::Invalidate(vec![CacheTag::new(kind, group)])
}

fn artifact_item(name: &str, version: Option<u64>) -> String {
    match version {
        Some(version) => format!("{name}\u{0}{version}"),
        None => format!("{name}\u{0}latest"),
    }
}

pub(crate) fn copy_error(err: &StorageError) -> StorageError {
    StorageError::new(err.kind(), err.to_string())
        .with_temporary(err.is_temporary())
        .with_backend(err.backend_name())
        .with_operation(err.operation())
}

// The one forwarding implementation: each operation names itself, its kind, whether it is
// idempotent and what it means for the cache, then runs through every layer.

#[async_trait]
impl SessionStore for Storage {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        let op = self
            .write("create_session", Kind::Sessions, false)
            .subject(&session.id)
            .cache(invalidate(Kind::Sessions, &session.id));
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.create_session(session.clone())).await
    }

    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        let tags = sessions
            .iter()
            .map(|s| CacheTag::new(Kind::Sessions, s.id.as_str()))
            .collect();
        let op = self
            .write("create_sessions", Kind::Sessions, false)
            .cache(CacheEffect::Invalidate(tags));
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.create_sessions(sessions.clone())).await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        let op = self
            .read("get_session", Kind::Sessions)
            .subject(id)
            .cache(read_of(Kind::Sessions, id, ""));
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.get_session(id)).await
    }

    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        let op = self.read("get_sessions", Kind::Sessions);
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.get_sessions(ids)).await
    }

    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        let op = self
            .write("update_session", Kind::Sessions, false)
            .subject(id)
            .cache(invalidate(Kind::Sessions, id));
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.update_session(id, update.clone())).await
    }

    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        let op = self
            .write("end_session", Kind::Sessions, true)
            .subject(id)
            .cache(invalidate(Kind::Sessions, id));
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.end_session(id, status)).await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        let op = self
            .write("delete_session", Kind::Sessions, true)
            .subject(id)
            .cache(CacheEffect::Invalidate(vec![
                CacheTag::new(Kind::Sessions, id),
                CacheTag::new(Kind::TaskContext, id),
            ]));
        self.run(op, || Box::pin(self.delete_session_everywhere(id)))
            .await
    }

    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        let op = self.read("list_sessions", Kind::Sessions);
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.list_sessions(query.clone())).await
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        let op = self
            .write("import_session", Kind::Sessions, true)
            .subject(&session.id)
            .cache(invalidate(Kind::Sessions, &session.id));
        let b = self.routes.of(Kind::Sessions);
        self.run(op, || b.import_session(session.clone())).await
    }
}

#[async_trait]
impl ConversationStore for Storage {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let idempotent = message.client_id.is_some();
        let op = self
            .write("append_message", Kind::Conversations, idempotent)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        match &self.group_commit {
            Some(group) => {
                self.run(op, || {
                    Box::pin(group.append(b.clone(), session_id, message.clone()))
                })
                .await
            }
            None => {
                self.run(op, || b.append_message(session_id, message.clone()))
                    .await
            }
        }
    }

    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let idempotent = messages.iter().all(|m| m.client_id.is_some());
        let op = self
            .write("append_messages", Kind::Conversations, idempotent)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        self.run(op, || b.append_messages(session_id, messages.clone()))
            .await
    }

    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let op = self
            .read("get_conversation_history", Kind::Conversations)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        self.run(op, || b.get_conversation_history(session_id, limit))
            .await
    }

    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        let op = self
            .read("get_messages", Kind::Conversations)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        self.run(op, || b.get_messages(session_id, range)).await
    }

    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        let op = self
            .write("pop_last_message", Kind::Conversations, false)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        self.run(op, || b.pop_last_message(session_id)).await
    }

    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        let op = self
            .write("clear_conversation", Kind::Conversations, true)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        self.run(op, || b.clear_conversation(session_id)).await
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let op = self
            .write("import_messages", Kind::Conversations, true)
            .subject(session_id);
        let b = self.routes.of(Kind::Conversations);
        self.run(op, || b.import_messages(session_id, messages.clone()))
            .await
    }
}

#[async_trait]
impl CheckpointStore for Storage {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        let op = self
            .write("put_checkpoint", Kind::Checkpoints, true)
            .subject(&checkpoint.thread_id)
            .cache(invalidate(Kind::Checkpoints, &checkpoint.thread_id));
        let b = self.routes.of(Kind::Checkpoints);
        match &self.group_commit {
            Some(group) => {
                self.run(op, || {
                    Box::pin(group.put_checkpoint(
                        b.clone(),
                        checkpoint.clone(),
                        new_versions.clone(),
                    ))
                })
                .await
            }
            None => {
                self.run(op, || {
                    b.put_checkpoint(checkpoint.clone(), new_versions.clone())
                })
                .await
            }
        }
    }

    async fn put_checkpoints(&self, puts: Vec<(Checkpoint, ChannelVersions)>) -> Result<()> {
        let threads: std::collections::BTreeSet<&str> =
            puts.iter().map(|(c, _)| c.thread_id.as_str()).collect();
        let tags = threads
            .iter()
            .map(|thread| CacheTag::new(Kind::Checkpoints, *thread))
            .collect();
        let op = self
            .write("put_checkpoints", Kind::Checkpoints, true)
            .subject(threads.first().copied().unwrap_or_default())
            .cache(CacheEffect::Invalidate(tags));
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.put_checkpoints(puts.clone())).await
    }

    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        let cache = match checkpoint_id {
            None => read_of(Kind::Checkpoints, thread_id, namespace),
            Some(_) => CacheEffect::None,
        };
        let op = self
            .read("get_checkpoint", Kind::Checkpoints)
            .subject(thread_id)
            .cache(cache);
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.get_checkpoint(thread_id, namespace, checkpoint_id))
            .await
    }

    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let op = self
            .read("list_checkpoints", Kind::Checkpoints)
            .subject(&query.thread_id);
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.list_checkpoints(query.clone())).await
    }

    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, Value)>,
    ) -> Result<()> {
        let op = self
            .write("put_writes", Kind::Checkpoints, true)
            .subject(&key.thread_id)
            .cache(invalidate(Kind::Checkpoints, &key.thread_id));
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || {
            b.put_writes(key.clone(), task_id, task_path, writes.clone())
        })
        .await
    }

    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        let op = self
            .read("get_writes", Kind::Checkpoints)
            .subject(&key.thread_id);
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.get_writes(key.clone())).await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        let op = self
            .write("delete_thread", Kind::Checkpoints, true)
            .subject(thread_id)
            .cache(invalidate(Kind::Checkpoints, thread_id));
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.delete_thread(thread_id)).await
    }

    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        let op = self
            .write("prune_checkpoints", Kind::Checkpoints, true)
            .subject(thread_id)
            .cache(invalidate(Kind::Checkpoints, thread_id));
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.prune_checkpoints(thread_id, keep_last))
            .await
    }

    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        let op = self
            .write("copy_thread", Kind::Checkpoints, false)
            .subject(target_thread_id)
            .cache(invalidate(Kind::Checkpoints, target_thread_id));
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.copy_thread(source_thread_id, target_thread_id))
            .await
    }

    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        let op = self
            .write("delete_for_runs", Kind::Checkpoints, true)
            .cache(CacheEffect::InvalidateKinds(vec![Kind::Checkpoints]));
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.delete_for_runs(run_ids)).await
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let op = self.read("list_thread_ids", Kind::Checkpoints);
        let b = self.routes.of(Kind::Checkpoints);
        self.run(op, || b.list_thread_ids(after, limit)).await
    }
}

#[async_trait]
impl TaskContextStore for Storage {
    async fn get_task_context(&self, session_id: &str) -> Result<Option<TaskContext>> {
        let op = self
            .read("get_task_context", Kind::TaskContext)
            .subject(session_id)
            .cache(read_of(Kind::TaskContext, session_id, ""));
        let b = self.routes.of(Kind::TaskContext);
        self.run(op, || b.get_task_context(session_id)).await
    }

    async fn store_task_context(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> Result<TaskContext> {
        let op = self
            .write("store_task_context", Kind::TaskContext, false)
            .subject(session_id)
            .cache(invalidate(Kind::TaskContext, session_id));
        let b = self.routes.of(Kind::TaskContext);
        self.run(op, || {
            b.store_task_context(session_id, value.clone(), expected)
        })
        .await
    }

    async fn delete_task_context(&self, session_id: &str) -> Result<bool> {
        let op = self
            .write("delete_task_context", Kind::TaskContext, true)
            .subject(session_id)
            .cache(invalidate(Kind::TaskContext, session_id));
        let b = self.routes.of(Kind::TaskContext);
        self.run(op, || b.delete_task_context(session_id)).await
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let op = self
            .write("import_task_context", Kind::TaskContext, true)
            .subject(&context.session_id)
            .cache(invalidate(Kind::TaskContext, &context.session_id));
        let b = self.routes.of(Kind::TaskContext);
        self.run(op, || b.import_task_context(context.clone()))
            .await
    }
}

#[async_trait]
impl ArtifactStore for Storage {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        let op = self
            .write("save_artifact", Kind::Artifacts, false)
            .subject(scope)
            .cache(invalidate(Kind::Artifacts, scope));
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.save_artifact(scope, name, artifact.clone()))
            .await
    }

    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>> {
        let op = self.read("get_artifact", Kind::Artifacts).subject(scope);
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.get_artifact(scope, name, version)).await
    }

    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>> {
        let op = self
            .read("get_artifact_meta", Kind::Artifacts)
            .subject(scope)
            .cache(read_of(
                Kind::Artifacts,
                scope,
                artifact_item(name, version),
            ));
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.get_artifact_meta(scope, name, version))
            .await
    }

    async fn artifact_exists(&self, scope: &str, name: &str, version: Option<u64>) -> Result<bool> {
        let op = self.read("artifact_exists", Kind::Artifacts).subject(scope);
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.artifact_exists(scope, name, version))
            .await
    }

    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        let op = self.read("list_artifacts", Kind::Artifacts).subject(scope);
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.list_artifacts(scope)).await
    }

    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        let op = self
            .read("list_artifact_versions", Kind::Artifacts)
            .subject(scope);
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.list_artifact_versions(scope, name)).await
    }

    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        let op = self
            .write("delete_artifact", Kind::Artifacts, true)
            .subject(scope)
            .cache(invalidate(Kind::Artifacts, scope));
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.delete_artifact(scope, name, version))
            .await
    }

    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        let op = self
            .write("clear_artifacts", Kind::Artifacts, true)
            .subject(scope)
            .cache(invalidate(Kind::Artifacts, scope));
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.clear_artifacts(scope)).await
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let op = self.read("list_artifact_scopes", Kind::Artifacts);
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.list_artifact_scopes(after, limit)).await
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let op = self
            .write("import_artifact", Kind::Artifacts, true)
            .subject(&artifact.meta.scope)
            .cache(invalidate(Kind::Artifacts, &artifact.meta.scope));
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.import_artifact(artifact.clone())).await
    }

    async fn save_artifact_stream(
        &self,
        scope: &str,
        name: &str,
        content_type: &str,
        metadata: Metadata,
        content: ByteStream,
        max_size: Option<u64>,
    ) -> Result<ArtifactMeta> {
        // A stream is consumed by the first call; this write is never retried.
        let op = self
            .write("save_artifact_stream", Kind::Artifacts, false)
            .subject(scope)
            .cache(invalidate(Kind::Artifacts, scope));
        let b = self.routes.of(Kind::Artifacts);
        let content = Mutex::new(Some(content));
        self.run(op, || {
            let taken = content.lock().ok().and_then(|mut slot| slot.take());
            match taken {
                Some(stream) => b.save_artifact_stream(
                    scope,
                    name,
                    content_type,
                    metadata.clone(),
                    stream,
                    max_size,
                ),
                None => Box::pin(async {
                    Err(StorageError::invalid_input(
                        "the artifact stream was already consumed",
                    ))
                }),
            }
        })
        .await
    }

    async fn open_artifact_stream(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<(ArtifactMeta, ByteStream)>> {
        let op = self
            .read("open_artifact_stream", Kind::Artifacts)
            .subject(scope);
        let b = self.routes.of(Kind::Artifacts);
        self.run(op, || b.open_artifact_stream(scope, name, version))
            .await
    }
}

#[async_trait]
impl StorageBackend for Storage {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn initialize(&self) -> Result<()> {
        let op = self.lifecycle("initialize", false);
        self.run(op, || {
            Box::pin(async {
                for (backend, _) in &self.routes.distinct {
                    backend.initialize().await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let op = self.lifecycle("close", false).cache(CacheEffect::Close);
        self.run(op, || {
            Box::pin(async {
                let mut first_error = None;
                for (backend, _) in &self.routes.distinct {
                    if let Err(err) = backend.close().await {
                        first_error.get_or_insert(err);
                    }
                }
                first_error.map_or(Ok(()), Err)
            })
        })
        .await
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let op = self.lifecycle("health_check", true);
        self.run(op, || {
            Box::pin(async {
                if let [(only, _)] = self.routes.distinct.as_slice() {
                    return only.health_check().await;
                }
                let report = crate::health::check(self, false).await;
                Ok(report.summary(self.name))
            })
        })
        .await
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        let op = self.lifecycle("get_metrics", true);
        self.run(op, || {
            Box::pin(async {
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
            })
        })
        .await
    }

    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        let op = self
            .write("cleanup_expired_sessions", Kind::Sessions, true)
            .cache(CacheEffect::InvalidateKinds(vec![
                Kind::Sessions,
                Kind::TaskContext,
            ]));
        self.run(op, || Box::pin(self.cleanup_everywhere(max_idle)))
            .await
    }
}

/// A label for a backend serving some kinds: `memory[sessions+conversations]`.
pub(crate) fn route_label(name: &str, kinds: &[Kind]) -> String {
    let kinds: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    format!("{name}[{}]", kinds.join("+"))
}
