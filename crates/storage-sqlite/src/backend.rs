//! The backend value and the store traits, each operation delegating to its implementation
//! in the store's module and finishing through [`finish`] so errors are classified and
//! named in one place.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use storage_core::carried::admit;

use async_trait::async_trait;
use serde_json::Value;
use storage_core::{
    Artifact, ArtifactMeta, ArtifactStore, BackendMetrics, BatchCreate, ChannelValue,
    ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore, CheckpointTuple,
    ContextScope, ConversationStore, ExpectedVersion, HealthStatus, Message, MessageRange,
    NewArtifact, NewMessage, NewSession, Page, PendingWrite, Result, Retention, Session,
    SessionQuery, SessionStatus, SessionStore, SessionUpdate, StorageBackend, TaskContext,
    TaskContextStore,
};

use crate::config::SqliteConfig;
use crate::engine::Engine;
use crate::error::{finish, SqlResult, BACKEND};
use crate::retention;

/// The SQLite backend: every store of the contract, in one namespace of one database file.
///
/// Cheap to share behind an `Arc`. Building it starts the writer thread and opens nothing;
/// [`StorageBackend::initialize`] creates the file (and its directory) and applies the
/// namespace's migrations.
pub struct SqliteBackend {
    pub(crate) engine: Engine,
    pub(crate) config: SqliteConfig,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("config", &self.config)
            .field("engine", &self.engine)
            .finish()
    }
}

impl SqliteBackend {
    /// Builds the backend and starts its writer thread, without touching the file.
    ///
    /// Fails with `InvalidInput` for a bad namespace and `Config` for other bad values.
    pub fn new(config: SqliteConfig) -> Result<Self> {
        config.validate()?;
        let engine = Engine::start(&config);
        Ok(SqliteBackend { engine, config })
    }

    /// The configuration the backend was built with.
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    async fn initialize_op(&self) -> SqlResult<()> {
        let ns = self.config.namespace.clone();
        self.engine
            .write(move |db| crate::schema::migrate(db, &ns))
            .await?;
        Ok(())
    }

    async fn health_op(&self) -> SqlResult<HealthStatus> {
        let started = Instant::now();
        let (sqlite_version, schema_version) = self
            .engine
            .read(|db| {
                let version: String = db
                    .conn
                    .query_row("SELECT sqlite_version()", [], |row| row.get(0))?;
                Ok((version, crate::schema::applied_version(db)?))
            })
            .await?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let details = BTreeMap::from([
            ("sqlite_version".to_owned(), sqlite_version),
            ("path".to_owned(), self.config.path.display().to_string()),
            ("namespace".to_owned(), self.config.namespace.clone()),
            (
                "schema_version".to_owned(),
                schema_version.map_or_else(|| "none".to_owned(), |v| v.to_string()),
            ),
            (
                "synchronous".to_owned(),
                self.config.synchronous.as_str().to_owned(),
            ),
        ]);
        Ok(HealthStatus {
            backend: BACKEND.to_owned(),
            healthy: true,
            latency_ms,
            details,
        })
    }
}

/// A `u64` count or number as SQLite's 64-bit integer, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A non-negative integer back as `u64`.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[async_trait]
impl SessionStore for SqliteBackend {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        let session = admit("create_session", session)?;
        finish("create_session", self.create_session_op(session).await)
    }
    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        let sessions = admit("create_sessions", sessions)?;
        finish("create_sessions", self.create_sessions_op(sessions).await)
    }
    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        finish("get_session", self.get_session_op(id).await)
    }
    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        finish("get_sessions", self.get_sessions_op(ids).await)
    }
    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        let update = admit("update_session", update)?;
        finish("update_session", self.update_session_op(id, update).await)
    }
    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        finish("end_session", self.end_session_op(id, status).await)
    }
    async fn delete_session(&self, id: &str) -> Result<bool> {
        finish("delete_session", self.delete_session_op(id).await)
    }
    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        finish("list_sessions", self.list_sessions_op(query).await)
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        let session = admit("import_session", session)?;
        finish("import_session", self.import_session_op(session).await)
    }
}

#[async_trait]
impl ConversationStore for SqliteBackend {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let message = admit("append_message", message)?;
        let appended = self.append_messages_op(session_id, vec![message]).await;
        finish(
            "append_message",
            appended.map(|mut messages| messages.remove(0)),
        )
    }
    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let messages = admit("append_messages", messages)?;
        finish(
            "append_messages",
            self.append_messages_op(session_id, messages).await,
        )
    }
    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>> {
        finish(
            "get_conversation_history",
            self.get_messages_op(session_id, MessageRange::last(limit))
                .await,
        )
    }
    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        finish(
            "get_messages",
            self.get_messages_op(session_id, range).await,
        )
    }
    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        finish(
            "pop_last_message",
            self.pop_last_message_op(session_id).await,
        )
    }
    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        finish(
            "clear_conversation",
            self.clear_conversation_op(session_id).await,
        )
    }
    async fn compact_conversation(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message> {
        let summary = admit("compact_conversation", summary)?;
        finish(
            "compact_conversation",
            self.compact_conversation_op(session_id, up_to, summary, keep_replaced)
                .await,
        )
    }
    async fn get_replaced_messages(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>> {
        finish(
            "get_replaced_messages",
            self.get_replaced_messages_op(session_id, summary_sequence)
                .await,
        )
    }
    async fn rewind_conversation(&self, session_id: &str, sequence: u64) -> Result<u64> {
        finish(
            "rewind_conversation",
            self.rewind_conversation_op(session_id, sequence).await,
        )
    }
    async fn retain_messages(&self, retention: Retention) -> Result<u64> {
        finish(
            "retain_messages",
            self.retain_op(&retention::MESSAGES, retention).await,
        )
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let messages = admit("import_messages", messages)?;
        finish(
            "import_messages",
            self.import_messages_op(session_id, messages).await,
        )
    }

    async fn list_conversation_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        finish(
            "list_conversation_ids",
            self.list_conversation_ids_op(after, limit).await,
        )
    }
}

#[async_trait]
impl CheckpointStore for SqliteBackend {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        let checkpoint = admit("put_checkpoint", checkpoint)?;
        finish(
            "put_checkpoint",
            self.put_checkpoint_op(checkpoint, new_versions).await,
        )
    }
    async fn put_checkpoints(&self, puts: Vec<(Checkpoint, ChannelVersions)>) -> Result<()> {
        let puts = admit("put_checkpoints", puts)?;
        finish("put_checkpoints", self.put_checkpoints_op(puts).await)
    }
    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        finish(
            "get_checkpoint",
            self.get_checkpoint_op(thread_id, namespace, checkpoint_id)
                .await,
        )
    }
    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let query = admit("list_checkpoints", query)?;
        finish("list_checkpoints", self.list_checkpoints_op(query).await)
    }
    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, ChannelValue)>,
    ) -> Result<()> {
        let writes = admit("put_writes", writes)?;
        finish(
            "put_writes",
            self.put_writes_op(key, task_id, task_path, writes).await,
        )
    }
    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        finish("get_writes", self.get_writes_op(key).await)
    }
    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        finish("delete_thread", self.delete_thread_op(thread_id).await)
    }
    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        finish(
            "prune_checkpoints",
            self.prune_checkpoints_op(thread_id, keep_last).await,
        )
    }
    async fn retain_checkpoints(&self, retention: Retention) -> Result<u64> {
        finish(
            "retain_checkpoints",
            self.retain_op(&retention::CHECKPOINTS, retention).await,
        )
    }
    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        finish(
            "copy_thread",
            self.copy_thread_op(source_thread_id, target_thread_id)
                .await,
        )
    }
    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        finish("delete_for_runs", self.delete_for_runs_op(run_ids).await)
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        finish(
            "list_thread_ids",
            self.list_thread_ids_op(after, limit).await,
        )
    }
}

#[async_trait]
impl TaskContextStore for SqliteBackend {
    async fn get_context(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> Result<Option<TaskContext>> {
        finish("get_context", self.get_context_op(scope, version).await)
    }
    async fn list_context_versions(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TaskContext>> {
        finish(
            "list_context_versions",
            self.list_context_versions_op(scope, before, limit).await,
        )
    }
    async fn store_context(
        &self,
        scope: ContextScope,
        value: Value,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> Result<TaskContext> {
        let value = admit("store_context", value)?;
        finish(
            "store_context",
            self.store_context_op(scope, value, expected, keep_versions)
                .await,
        )
    }
    async fn delete_context(&self, scope: ContextScope) -> Result<bool> {
        finish("delete_context", self.delete_context_op(scope).await)
    }
    async fn retain_context_versions(&self, retention: Retention) -> Result<u64> {
        finish(
            "retain_context_versions",
            self.retain_op(&retention::CONTEXT_VERSIONS, retention)
                .await,
        )
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        finish(
            "import_task_context",
            self.import_task_context_op(context).await,
        )
    }

    async fn list_context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        finish(
            "list_context_scopes",
            self.list_context_scopes_op(after, limit).await,
        )
    }
}

#[async_trait]
impl ArtifactStore for SqliteBackend {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        let artifact = admit("save_artifact", artifact)?;
        finish(
            "save_artifact",
            self.save_artifact_op(scope, name, artifact).await,
        )
    }
    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>> {
        finish(
            "get_artifact",
            self.get_artifact_op(scope, name, version).await,
        )
    }
    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>> {
        finish(
            "get_artifact_meta",
            self.get_artifact_meta_op(scope, name, version).await,
        )
    }
    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        finish("list_artifacts", self.list_artifacts_op(scope).await)
    }
    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        finish(
            "list_artifact_versions",
            self.list_artifact_versions_op(scope, name).await,
        )
    }
    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        finish(
            "delete_artifact",
            self.delete_artifact_op(scope, name, version).await,
        )
    }
    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        finish("clear_artifacts", self.clear_artifacts_op(scope).await)
    }
    async fn retain_artifact_versions(&self, retention: Retention) -> Result<u64> {
        finish(
            "retain_artifact_versions",
            self.retain_op(&retention::ARTIFACT_VERSIONS, retention)
                .await,
        )
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        finish(
            "list_artifact_scopes",
            self.list_artifact_scopes_op(after, limit).await,
        )
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let artifact = admit("import_artifact", artifact)?;
        finish("import_artifact", self.import_artifact_op(artifact).await)
    }
}

#[async_trait]
impl StorageBackend for SqliteBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn initialize(&self) -> Result<()> {
        finish("initialize", self.initialize_op().await)
    }

    async fn close(&self) -> Result<()> {
        self.engine.close();
        Ok(())
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        finish("health_check", self.health_op().await)
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        let stats = &self.engine.stats;
        let counters = BTreeMap::from([
            ("commits".to_owned(), stats.commits.load(Ordering::Relaxed)),
            ("writes".to_owned(), stats.writes.load(Ordering::Relaxed)),
            ("reads".to_owned(), stats.reads.load(Ordering::Relaxed)),
        ]);
        let gauges = BTreeMap::from([("readers".to_owned(), self.config.readers as f64)]);
        Ok(BackendMetrics {
            backend: BACKEND.to_owned(),
            counters,
            gauges,
        })
    }

    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        finish(
            "cleanup_expired_sessions",
            self.cleanup_expired_sessions_op(max_idle).await,
        )
    }
}
