//! The backend value, its connection pool, and the store traits, each operation delegating
//! to its implementation in the store's module and finishing through
//! [`PostgresBackend::finish`] so errors are classified and named in one place.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use storage_core::carried::admit;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use storage_core::{
    Artifact, ArtifactMeta, ArtifactStore, BackendMetrics, BatchCreate, ChannelValue,
    ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointSearch, CheckpointStore,
    CheckpointTuple, ContextScope, ConversationStore, ExpectedVersion, HealthStatus, Message,
    MessageRange, NewArtifact, NewMessage, NewSession, Page, PendingWrite, Result, Retention,
    Session, SessionQuery, SessionStatus, SessionStore, SessionUpdate, StorageBackend,
    StorageError, TaskContext, TaskContextStore,
};

use crate::config::PostgresConfig;
use crate::error::{PgResult, BACKEND};
use crate::retention::Kind;
use crate::sql::Sql;
use storage_core::retirement::Retirement;

/// The PostgreSQL backend: every store of the contract, in one schema of one database.
///
/// Cheap to share behind an `Arc`; the pool opens connections lazily, and
/// [`StorageBackend::initialize`] applies the schema's migrations.
pub struct PostgresBackend {
    pub(crate) pool: Pool,
    pub(crate) config: PostgresConfig,
    /// `host:port` of the server(s), for connection errors.
    endpoint: String,
    /// Connections to retire once the server refuses a write as read-only.
    retirement: std::sync::Arc<Retirement>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("config", &self.config)
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresBackend {
    /// Builds the backend and its pool without connecting; `initialize` connects.
    ///
    /// Fails with `InvalidInput` for a bad namespace and `Config` for other bad values.
    pub fn new(config: PostgresConfig) -> Result<Self> {
        let driver_config = config.driver_config()?;
        let endpoint = endpoint(&driver_config);
        let manager_config = ManagerConfig {
            // Recycling only checks that the connection is open: a lost connection surfaces
            // as a temporary error on first use and is discarded, without a round trip per
            // checkout.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match driver_config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => {
                tls_manager(&config, driver_config, manager_config)?
            }
            _ => Manager::from_config(driver_config, tokio_postgres::NoTls, manager_config),
        };
        let connect = Duration::from_millis(config.connect_timeout_ms);
        let retirement = std::sync::Arc::new(Retirement::new());
        let pool = Pool::builder(manager)
            .pre_recycle(crate::read_only::hook(&retirement))
            .max_size(config.pool_size)
            // Without a runtime deadpool ignores its timeouts and `get` can wait forever.
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_millis(config.wait_timeout_ms)))
            .create_timeout(Some(connect))
            .recycle_timeout(Some(connect))
            .build()
            .map_err(|err| {
                StorageError::config(format!("cannot build the connection pool: {err}"))
            })?;
        Ok(PostgresBackend {
            pool,
            config,
            endpoint,
            retirement,
        })
    }

    /// Finishes an operation through [`crate::error::finish`]; a write the server refused
    /// as read-only first retires the pooled connections (see [`crate::read_only`]).
    fn finish<T>(&self, operation: &'static str, result: PgResult<T>) -> Result<T> {
        if let Err(failure) = &result {
            if failure.is_read_only() {
                self.retirement.retire_open_connections();
            }
        }
        crate::error::finish(operation, result)
    }

    /// The configuration the backend was built with.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// The schema holding the tables: the namespace.
    pub fn schema(&self) -> &str {
        &self.config.namespace
    }

    /// A pooled connection.
    ///
    /// Opening a new one is bounded by `postgres.connect_timeout_ms` (TCP, TLS and the
    /// start-up exchange together); a failure names the server, never the password.
    pub(crate) async fn client(&self) -> PgResult<Object> {
        self.pool.get().await.map_err(|err| {
            crate::error::connect_failure(err, &self.endpoint, self.config.connect_timeout_ms)
        })
    }

    async fn initialize_op(&self) -> PgResult<()> {
        if self.pool.is_closed() {
            return Err(deadpool_postgres::PoolError::Closed.into());
        }
        // A connection of its own, closed when dropped, so the advisory lock taken for the
        // migration never outlives this call.
        // Opened outside the pool, so bounded here: a server that accepts TCP and never
        // answers fails this within postgres.connect_timeout_ms.
        let connect = Duration::from_millis(self.config.connect_timeout_ms);
        let created = tokio::time::timeout(
            connect,
            deadpool::managed::Manager::create(self.pool.manager()),
        )
        .await
        .map_err(|_| deadpool_postgres::PoolError::Timeout(deadpool::managed::TimeoutType::Create))
        .and_then(|created| created.map_err(deadpool_postgres::PoolError::Backend));
        let mut wrapper = created.map_err(|err| {
            crate::error::connect_failure(err, &self.endpoint, self.config.connect_timeout_ms)
        })?;
        crate::schema::migrate(&mut wrapper, self.schema()).await
    }

    async fn health_op(&self) -> PgResult<HealthStatus> {
        let started = Instant::now();
        let client = self.client().await?;
        let row = client
            .one(
                "SELECT current_setting('server_version'), \
                 (SELECT max(version) FROM schema_migrations)",
                &[],
            )
            .await?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let server_version: String = row.get(0);
        let schema_version: Option<i32> = row.get(1);
        let status = self.pool.status();
        let details = BTreeMap::from([
            ("server_version".to_owned(), server_version),
            ("schema".to_owned(), self.schema().to_owned()),
            (
                "schema_version".to_owned(),
                schema_version.map_or_else(|| "none".to_owned(), |v| v.to_string()),
            ),
            ("pool_max_size".to_owned(), status.max_size.to_string()),
            ("pool_size".to_owned(), status.size.to_string()),
            ("pool_available".to_owned(), status.available.to_string()),
            ("pool_waiting".to_owned(), status.waiting.to_string()),
        ]);
        Ok(HealthStatus {
            backend: BACKEND.to_owned(),
            healthy: true,
            latency_ms,
            details,
        })
    }
}

/// `host:port` of every server the driver configuration names.
fn endpoint(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(feature = "tls")]
fn tls_manager(
    config: &PostgresConfig,
    driver_config: tokio_postgres::Config,
    manager_config: ManagerConfig,
) -> Result<Manager> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &config.tls_ca_file {
        let pem = std::fs::read(path).map_err(|err| {
            StorageError::config(format!(
                "postgres.tls_ca_file {}: cannot read it: {err}",
                path.display()
            ))
        })?;
        // Every certificate of the bundle, not only the first.
        let text = String::from_utf8_lossy(&pem);
        let end = "-----END CERTIFICATE-----";
        let blocks: Vec<String> = text
            .split_inclusive(end)
            .filter(|block| block.contains(end))
            .map(str::to_owned)
            .collect();
        if blocks.is_empty() {
            return Err(StorageError::config(format!(
                "postgres.tls_ca_file {}: holds no PEM certificate",
                path.display()
            )));
        }
        for block in blocks {
            let ca = native_tls::Certificate::from_pem(block.as_bytes()).map_err(|err| {
                StorageError::config(format!(
                    "postgres.tls_ca_file {}: not a PEM certificate: {err}",
                    path.display()
                ))
            })?;
            builder.add_root_certificate(ca);
        }
    }
    let connector = builder
        .build()
        .map_err(|err| StorageError::config(format!("cannot set up TLS: {err}")))?;
    let tls = postgres_native_tls::MakeTlsConnector::new(connector);
    Ok(Manager::from_config(driver_config, tls, manager_config))
}

#[cfg(not(feature = "tls"))]
fn tls_manager(_: &PostgresConfig, _: tokio_postgres::Config, _: ManagerConfig) -> Result<Manager> {
    Err(StorageError::config(
        "postgres.tls = \"require\" needs storage-postgres built with the `tls` feature",
    ))
}

/// A `u64` count or number as PostgreSQL's `bigint`, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A non-negative `bigint` back as `u64`.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[async_trait]
impl SessionStore for PostgresBackend {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        let session = admit("create_session", session)?;
        self.finish("create_session", self.create_session_op(session).await)
    }
    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        let sessions = admit("create_sessions", sessions)?;
        self.finish("create_sessions", self.create_sessions_op(sessions).await)
    }
    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.finish("get_session", self.get_session_op(id).await)
    }
    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        self.finish("get_sessions", self.get_sessions_op(ids).await)
    }
    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        let update = admit("update_session", update)?;
        self.finish("update_session", self.update_session_op(id, update).await)
    }
    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        self.finish("end_session", self.end_session_op(id, status).await)
    }
    async fn delete_session(&self, id: &str) -> Result<bool> {
        self.finish("delete_session", self.delete_session_op(id).await)
    }
    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        self.finish("list_sessions", self.list_sessions_op(query).await)
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        let session = admit("import_session", session)?;
        self.finish("import_session", self.import_session_op(session).await)
    }
}

#[async_trait]
impl ConversationStore for PostgresBackend {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let message = admit("append_message", message)?;
        let appended = self.append_messages_op(session_id, vec![message]).await;
        self.finish(
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
        self.finish(
            "append_messages",
            self.append_messages_op(session_id, messages).await,
        )
    }
    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.finish(
            "get_conversation_history",
            self.get_messages_op(session_id, MessageRange::last(limit))
                .await,
        )
    }
    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        self.finish(
            "get_messages",
            self.get_messages_op(session_id, range).await,
        )
    }
    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        self.finish(
            "pop_last_message",
            self.pop_last_message_op(session_id).await,
        )
    }
    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        self.finish(
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
        self.finish(
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
        self.finish(
            "get_replaced_messages",
            self.get_replaced_messages_op(session_id, summary_sequence)
                .await,
        )
    }
    async fn rewind_conversation(&self, session_id: &str, sequence: u64) -> Result<u64> {
        self.finish(
            "rewind_conversation",
            self.rewind_conversation_op(session_id, sequence).await,
        )
    }
    async fn retain_messages(&self, retention: Retention) -> Result<u64> {
        self.finish(
            "retain_messages",
            self.retain_op(Kind::Messages, retention).await,
        )
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let messages = admit("import_messages", messages)?;
        self.finish(
            "import_messages",
            self.import_messages_op(session_id, messages).await,
        )
    }

    async fn list_conversation_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.finish(
            "list_conversation_ids",
            self.list_conversation_ids_op(after, limit).await,
        )
    }
}

#[async_trait]
impl CheckpointStore for PostgresBackend {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        let checkpoint = admit("put_checkpoint", checkpoint)?;
        self.finish(
            "put_checkpoint",
            self.put_checkpoint_op(checkpoint, new_versions).await,
        )
    }
    async fn put_checkpoints(&self, puts: Vec<(Checkpoint, ChannelVersions)>) -> Result<()> {
        let puts = admit("put_checkpoints", puts)?;
        self.finish("put_checkpoints", self.put_checkpoints_op(puts).await)
    }
    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        self.finish(
            "get_checkpoint",
            self.get_checkpoint_op(thread_id, namespace, checkpoint_id)
                .await,
        )
    }
    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let query = admit("list_checkpoints", query)?;
        self.finish("list_checkpoints", self.list_checkpoints_op(query).await)
    }
    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, ChannelValue)>,
    ) -> Result<()> {
        let writes = admit("put_writes", writes)?;
        self.finish(
            "put_writes",
            self.put_writes_op(key, task_id, task_path, writes).await,
        )
    }
    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        self.finish("get_writes", self.get_writes_op(key).await)
    }
    async fn search_checkpoints(&self, search: CheckpointSearch) -> Result<Page<CheckpointTuple>> {
        let search = admit("search_checkpoints", search)?;
        self.finish(
            "search_checkpoints",
            self.search_checkpoints_op(search).await,
        )
    }
    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        self.finish("delete_thread", self.delete_thread_op(thread_id).await)
    }
    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        self.finish(
            "prune_checkpoints",
            self.prune_checkpoints_op(thread_id, keep_last).await,
        )
    }
    async fn retain_checkpoints(&self, retention: Retention) -> Result<u64> {
        self.finish(
            "retain_checkpoints",
            self.retain_op(Kind::Checkpoints, retention).await,
        )
    }
    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        self.finish(
            "copy_thread",
            self.copy_thread_op(source_thread_id, target_thread_id)
                .await,
        )
    }
    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        self.finish("delete_for_runs", self.delete_for_runs_op(run_ids).await)
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.finish(
            "list_thread_ids",
            self.list_thread_ids_op(after, limit).await,
        )
    }
}

#[async_trait]
impl TaskContextStore for PostgresBackend {
    async fn get_context(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> Result<Option<TaskContext>> {
        self.finish("get_context", self.get_context_op(scope, version).await)
    }
    async fn list_context_versions(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TaskContext>> {
        self.finish(
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
        self.finish(
            "store_context",
            self.store_context_op(scope, value, expected, keep_versions)
                .await,
        )
    }
    async fn delete_context(&self, scope: ContextScope) -> Result<bool> {
        self.finish("delete_context", self.delete_context_op(scope).await)
    }
    async fn retain_context_versions(&self, retention: Retention) -> Result<u64> {
        self.finish(
            "retain_context_versions",
            self.retain_op(Kind::ContextVersions, retention).await,
        )
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        self.finish(
            "import_task_context",
            self.import_task_context_op(context).await,
        )
    }

    async fn list_context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        self.finish(
            "list_context_scopes",
            self.list_context_scopes_op(after, limit).await,
        )
    }
}

#[async_trait]
impl ArtifactStore for PostgresBackend {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        let artifact = admit("save_artifact", artifact)?;
        self.finish(
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
        self.finish(
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
        self.finish(
            "get_artifact_meta",
            self.get_artifact_meta_op(scope, name, version).await,
        )
    }
    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        self.finish("list_artifacts", self.list_artifacts_op(scope).await)
    }
    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        self.finish(
            "list_artifact_versions",
            self.list_artifact_versions_op(scope, name).await,
        )
    }
    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        self.finish(
            "delete_artifact",
            self.delete_artifact_op(scope, name, version).await,
        )
    }
    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        self.finish("clear_artifacts", self.clear_artifacts_op(scope).await)
    }
    async fn retain_artifact_versions(&self, retention: Retention) -> Result<u64> {
        self.finish(
            "retain_artifact_versions",
            self.retain_op(Kind::ArtifactVersions, retention).await,
        )
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.finish(
            "list_artifact_scopes",
            self.list_artifact_scopes_op(after, limit).await,
        )
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let artifact = admit("import_artifact", artifact)?;
        self.finish("import_artifact", self.import_artifact_op(artifact).await)
    }
}

#[async_trait]
impl StorageBackend for PostgresBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn initialize(&self) -> Result<()> {
        self.finish("initialize", self.initialize_op().await)
    }

    async fn close(&self) -> Result<()> {
        self.pool.close();
        Ok(())
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        self.finish("health_check", self.health_op().await)
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        let status = self.pool.status();
        let gauges = BTreeMap::from([
            ("pool_max_size".to_owned(), status.max_size as f64),
            ("pool_size".to_owned(), status.size as f64),
            ("pool_available".to_owned(), status.available as f64),
            ("pool_waiting".to_owned(), status.waiting as f64),
        ]);
        Ok(BackendMetrics {
            backend: BACKEND.to_owned(),
            counters: BTreeMap::new(),
            gauges,
        })
    }

    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        self.finish(
            "cleanup_expired_sessions",
            self.cleanup_expired_sessions_op(max_idle).await,
        )
    }
}
