//! Configuration: one typed [`StorageConfig`] for the facade and every backend, loaded
//! with [figment](https://docs.rs/figment).
//!
//! Precedence, highest first: values set in code ([`ConfigLoader::set`]), `STORAGE_*`
//! environment variables (nested keys joined by `__`: `STORAGE_REDIS__URL` is
//! `redis.url`), a TOML file (`storage.toml` in the working directory unless
//! `STORAGE_CONFIG_FILE` or [`ConfigLoader::file`] names another), then the defaults.
//! Every key, its environment variable and its default is listed in
//! `docs/configuration.md`.
//!
//! A wrong value is a `Config` error naming the key, where the value came from (the
//! environment variable, or the file and key) and what was expected. Secrets (passwords,
//! secret keys, the password inside a URL) never appear in `Debug` output, in errors or in
//! [`LoadedConfig::entries`].

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::{Deserialize, Serialize};
pub use storage_core::redact::redact_value;
use storage_core::{Result, StorageError};

use crate::Kind;

/// The environment variable prefix.
pub const ENV_PREFIX: &str = "STORAGE_";
/// The environment variable naming the configuration file.
pub const FILE_ENV: &str = "STORAGE_CONFIG_FILE";
/// The file read when no other is named (it may be absent).
pub const DEFAULT_FILE: &str = "storage.toml";

/// A backend a kind can be routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendName {
    /// In-process, on `storage-memory` (feature `memory`).
    Memory,
    /// Redis, on `storage-redis` (feature `redis`).
    Redis,
    /// PostgreSQL, on `storage-postgres` (feature `postgres`).
    Postgres,
    /// Object storage, on `storage-object` (feature `object`).
    Object,
    /// One SQLite database file, on `storage-sqlite` (feature `sqlite`).
    Sqlite,
}

impl BackendName {
    /// Every backend.
    pub const ALL: [BackendName; 5] = [
        BackendName::Memory,
        BackendName::Redis,
        BackendName::Postgres,
        BackendName::Object,
        BackendName::Sqlite,
    ];

    /// The name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Memory => "memory",
            BackendName::Redis => "redis",
            BackendName::Postgres => "postgres",
            BackendName::Object => "object",
            BackendName::Sqlite => "sqlite",
        }
    }

    /// Whether this build of the facade includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendName::Memory => cfg!(feature = "memory"),
            BackendName::Redis => cfg!(feature = "redis"),
            BackendName::Postgres => cfg!(feature = "postgres"),
            BackendName::Object => cfg!(feature = "object"),
            BackendName::Sqlite => cfg!(feature = "sqlite"),
        }
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-kind routing: a kind without an entry goes to [`StorageConfig::backend`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutesConfig {
    /// Backend of session records.
    pub sessions: Option<BackendName>,
    /// Backend of conversation history.
    pub conversations: Option<BackendName>,
    /// Backend of checkpoints.
    pub checkpoints: Option<BackendName>,
    /// Backend of task context.
    pub task_context: Option<BackendName>,
    /// Backend of artifacts.
    pub artifacts: Option<BackendName>,
}

impl RoutesConfig {
    /// The route of `kind`, if it has one.
    pub fn get(&self, kind: Kind) -> Option<BackendName> {
        match kind {
            Kind::Sessions => self.sessions,
            Kind::Conversations => self.conversations,
            Kind::Checkpoints => self.checkpoints,
            Kind::TaskContext => self.task_context,
            Kind::Artifacts => self.artifacts,
        }
    }
}

/// Settings of the in-process memory backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// The namespace.
    pub namespace: String,
    /// Largest artifact accepted, in bytes; `None` for no limit.
    pub max_artifact_bytes: Option<u64>,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            namespace: "default".into(),
            max_artifact_bytes: None,
        }
    }
}

/// The section of a backend this build does not include: accepted (so one configuration
/// file serves builds with different features) and ignored, unless a kind is routed to
/// the backend, which is then an error naming the feature to enable.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotCompiled(Option<serde_json::Map<String, serde_json::Value>>);

impl fmt::Debug for NotCompiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotCompiled")
    }
}

/// Settings of the Redis backend (`storage_redis::RedisConfig` with the `redis` feature).
#[cfg(feature = "redis")]
pub type RedisSettings = storage_redis::RedisConfig;
/// Settings of the Redis backend (`storage_redis::RedisConfig` with the `redis` feature).
#[cfg(not(feature = "redis"))]
pub type RedisSettings = NotCompiled;

/// Settings of the PostgreSQL backend (`storage_postgres::PostgresConfig` with the
/// `postgres` feature).
#[cfg(feature = "postgres")]
pub type PostgresSettings = storage_postgres::PostgresConfig;
/// Settings of the PostgreSQL backend (`storage_postgres::PostgresConfig` with the
/// `postgres` feature).
#[cfg(not(feature = "postgres"))]
pub type PostgresSettings = NotCompiled;

/// Settings of the SQLite backend (`storage_sqlite::SqliteConfig` with the `sqlite`
/// feature).
#[cfg(feature = "sqlite")]
pub type SqliteSettings = storage_sqlite::SqliteConfig;
/// Settings of the SQLite backend (`storage_sqlite::SqliteConfig` with the `sqlite`
/// feature).
#[cfg(not(feature = "sqlite"))]
pub type SqliteSettings = NotCompiled;

/// Settings of the object-storage backend (`storage_object::ObjectConfig` with the
/// `object` feature).
#[cfg(feature = "object")]
pub type ObjectSettings = storage_object::ObjectConfig;
/// Settings of the object-storage backend (`storage_object::ObjectConfig` with the
/// `object` feature).
#[cfg(not(feature = "object"))]
pub type ObjectSettings = NotCompiled;

/// The read cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Whether reads of sessions, task context, latest checkpoints and artifact metadata
    /// are cached. Off by default: a cached read does not see what another process wrote
    /// until its entry expires (`ttl_ms`), and services usually run several processes on
    /// one store. Turn it on where this process is the only writer of what it reads, or
    /// where reads that old are acceptable.
    pub enabled: bool,
    /// Most entries held.
    pub max_entries: u64,
    /// Most bytes held (entries weighed by their encoded size).
    pub max_bytes: u64,
    /// How long an entry is served, in milliseconds; bounds how stale a read can be after a
    /// write made outside this facade.
    pub ttl_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: false,
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            ttl_ms: 5_000,
        }
    }
}

/// Retry of temporary failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Most calls per operation, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Ceiling of the first backoff, in milliseconds; doubles per attempt.
    pub initial_backoff_ms: u64,
    /// Largest backoff ceiling, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 3,
            initial_backoff_ms: 20,
            max_backoff_ms: 1_000,
        }
    }
}

/// Deadlines of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutSettings {
    /// Deadline of a read, in milliseconds; 0 for none.
    pub read_ms: u64,
    /// Deadline of a write, in milliseconds; 0 for none.
    pub write_ms: u64,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings {
            read_ms: 10_000,
            write_ms: 30_000,
        }
    }
}

/// Group commit of concurrent appends and checkpoint puts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupCommitSettings {
    /// Whether concurrent `append_message` calls on one session are stored as one batch,
    /// and concurrent `put_checkpoint` calls as one batch per lane (threads are hashed to
    /// four lanes; a thread's puts keep their order).
    pub enabled: bool,
    /// Most messages or checkpoints per batch.
    pub max_batch: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        GroupCommitSettings {
            enabled: false,
            max_batch: 256,
        }
    }
}

/// Scheduled cleanup of idle sessions, and garbage collection of orphaned artifact content
/// on object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanupSettings {
    /// Seconds between runs; 0 disables the schedule.
    pub interval_secs: u64,
    /// Sessions idle longer than this many seconds are removed.
    pub max_idle_secs: u64,
    /// Artifact content on object storage that no version references is collected once
    /// it is older than this many seconds, so saves still running are never touched.
    pub artifact_grace_secs: u64,
    /// How long each kind's history is kept; nothing is removed by default.
    pub retention: RetentionSettings,
}

/// How long each kind's history is kept: applied by the scheduled cleanup and by
/// `storectl cleanup` (see [`storage_core::retention`] for the rule). Every limit is unset
/// by default: nothing is removed until a limit is configured.
///
/// ```
/// use storage::config::StorageConfig;
///
/// let config: StorageConfig = serde_json::from_value(serde_json::json!({"cleanup": {
///     "retention": {
///         "messages": {"keep_last": 500},
///         "checkpoints": {"keep_last": 20, "max_age_secs": 604800},
///     },
/// }}))
/// .unwrap();
/// assert_eq!(config.cleanup.retention.messages.keep_last, Some(500));
/// assert!(config.cleanup.retention.context_versions.policy().is_unbounded());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Each conversation's messages.
    pub messages: KindRetention,
    /// Each context scope's versions.
    pub context_versions: KindRetention,
    /// Each checkpoint thread and namespace's checkpoints.
    pub checkpoints: KindRetention,
    /// Each artifact's versions.
    pub artifact_versions: KindRetention,
}

/// The retention of one kind: at most two limits, both unset by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindRetention {
    /// Records older than this many seconds are removed (never the newest of a series).
    pub max_age_secs: Option<u64>,
    /// Only the newest this many records of each series are kept (1 or more).
    pub keep_last: Option<u64>,
}

impl KindRetention {
    /// The policy these settings describe.
    pub fn policy(&self) -> storage_core::RetentionPolicy {
        storage_core::RetentionPolicy {
            max_age: self.max_age_secs.map(std::time::Duration::from_secs),
            keep_last: self.keep_last,
        }
    }
}

impl RetentionSettings {
    /// Each kind's settings with the key prefix naming them.
    pub fn kinds(&self) -> [(&'static str, &KindRetention); 4] {
        [
            ("messages", &self.messages),
            ("context_versions", &self.context_versions),
            ("checkpoints", &self.checkpoints),
            ("artifact_versions", &self.artifact_versions),
        ]
    }
}

impl Default for CleanupSettings {
    fn default() -> Self {
        CleanupSettings {
            interval_secs: 0,
            max_idle_secs: 7 * 24 * 3600,
            artifact_grace_secs: 24 * 3600,
            retention: RetentionSettings::default(),
        }
    }
}

/// Health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// The scratch namespace the deep check writes, reads back and deletes its records in.
    pub namespace: String,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            namespace: "storage_health".into(),
        }
    }
}

/// Everything the facade and its backends are configured with.
///
/// `Debug` hides secrets (each backend's settings print their URL without its password).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The backend of every kind without a route; by default the embedded SQLite file
    /// `./.storage/storage.db`. With `sqlite` here, artifacts without a route go to the
    /// object store (by default the local directory `./.storage`): large blobs are files,
    /// not database rows. See [`StorageConfig::backend_of`].
    pub backend: BackendName,
    /// Per-kind routes.
    pub routes: RoutesConfig,
    /// The memory backend.
    pub memory: MemorySettings,
    /// The Redis backend.
    pub redis: RedisSettings,
    /// The PostgreSQL backend.
    pub postgres: PostgresSettings,
    /// The object-storage backend.
    pub object: ObjectSettings,
    /// The SQLite backend.
    pub sqlite: SqliteSettings,
    /// The read cache.
    pub cache: CacheSettings,
    /// Retries.
    pub retry: RetrySettings,
    /// Deadlines.
    pub timeouts: TimeoutSettings,
    /// Group commit.
    pub group_commit: GroupCommitSettings,
    /// Scheduled cleanup.
    pub cleanup: CleanupSettings,
    /// Health checks.
    pub health: HealthSettings,
    /// Fallback backends per kind, the circuit breaker and the journal.
    pub failover: FailoverConfig,
}

/// Failover: a kind with a fallback backend runs on a
/// [`FailoverBackend`](crate::failover::FailoverBackend) pairing its route (the primary)
/// with that fallback. Kinds sharing a primary and a fallback share one breaker and one
/// journal, in `<journal_dir>/<primary>-<fallback>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// The fallback backend of each kind that has one.
    pub fallbacks: RoutesConfig,
    /// `failover` (journal writes while the primary is down) or `dual_write`.
    pub mode: crate::failover::FailoverMode,
    /// Consecutive temporary failures of the primary that open the breaker.
    pub failure_threshold: u32,
    /// Time between health probes of a primary that is down, in ms.
    pub probe_interval_ms: u64,
    /// Consecutive healthy probes before the journal is replayed and the breaker closes.
    pub recovery_probes: u32,
    /// Directory of the journals.
    pub journal_dir: std::path::PathBuf,
    /// Deadline of each read of a primary, in ms (0: none); past it the read counts as a
    /// failure and is answered by the fallback.
    pub attempt_timeout_ms: u64,
    /// Deadline of each write of a primary, in ms (0: none).
    pub write_attempt_timeout_ms: u64,
    /// The largest streamed artifact save journaled while a primary is down, in bytes.
    pub max_journaled_stream_bytes: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        let settings = crate::failover::FailoverSettings::default();
        FailoverConfig {
            fallbacks: RoutesConfig::default(),
            mode: settings.mode,
            failure_threshold: settings.failure_threshold,
            probe_interval_ms: settings.probe_interval_ms,
            recovery_probes: settings.recovery_probes,
            journal_dir: settings.journal_dir,
            attempt_timeout_ms: settings.attempt_timeout_ms,
            write_attempt_timeout_ms: settings.write_attempt_timeout_ms,
            max_journaled_stream_bytes: settings.max_journaled_stream_bytes,
        }
    }
}

impl FailoverConfig {
    /// The breaker and journal settings.
    pub fn settings(&self) -> crate::failover::FailoverSettings {
        crate::failover::FailoverSettings {
            mode: self.mode,
            failure_threshold: self.failure_threshold,
            probe_interval_ms: self.probe_interval_ms,
            recovery_probes: self.recovery_probes,
            journal_dir: self.journal_dir.clone(),
            attempt_timeout_ms: self.attempt_timeout_ms,
            write_attempt_timeout_ms: self.write_attempt_timeout_ms,
            max_journaled_stream_bytes: self.max_journaled_stream_bytes,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: BackendName::Sqlite,
            routes: RoutesConfig::default(),
            memory: MemorySettings::default(),
            redis: RedisSettings::default(),
            postgres: PostgresSettings::default(),
            object: ObjectSettings::default(),
            sqlite: SqliteSettings::default(),
            cache: CacheSettings::default(),
            retry: RetrySettings::default(),
            timeouts: TimeoutSettings::default(),
            group_commit: GroupCommitSettings::default(),
            cleanup: CleanupSettings::default(),
            health: HealthSettings::default(),
            failover: FailoverConfig::default(),
        }
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every section's own Debug hides its secrets.
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("routes", &self.routes)
            .field("memory", &self.memory)
            .field("redis", &self.redis)
            .field("postgres", &self.postgres)
            .field("object", &self.object)
            .field("sqlite", &self.sqlite)
            .field("cache", &self.cache)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .field("group_commit", &self.group_commit)
            .field("cleanup", &self.cleanup)
            .field("health", &self.health)
            .field("failover", &self.failover)
            .finish()
    }
}

/// The top-level keys; only `STORAGE_*` variables under one of them are configuration
/// (others, such as `STORAGE_CONFIG_FILE` or `STORAGE_TEST_REDIS_URL`, are not).
const SECTIONS: [&str; 14] = [
    "backend",
    "routes",
    "memory",
    "redis",
    "postgres",
    "object",
    "sqlite",
    "cache",
    "retry",
    "timeouts",
    "group_commit",
    "cleanup",
    "health",
    "failover",
];

impl StorageConfig {
    /// Loads from the environment, `storage.toml` (or `$STORAGE_CONFIG_FILE`) and the
    /// defaults; see [`ConfigLoader`].
    pub fn load() -> Result<Self> {
        Ok(ConfigLoader::new().load()?.config)
    }

    /// The backend `kind` is routed to: its route, else `backend`, except that artifacts
    /// without a route go to `object` when `backend` is `sqlite` (and `object` is compiled
    /// in): the embedded default keeps records in one database file and large blobs in
    /// files beside it. `routes.artifacts = "sqlite"` keeps artifacts in the database.
    pub fn backend_of(&self, kind: Kind) -> BackendName {
        match self.routes.get(kind) {
            Some(backend) => backend,
            None if kind == Kind::Artifacts
                && self.backend == BackendName::Sqlite
                && BackendName::Object.is_compiled() =>
            {
                BackendName::Object
            }
            None => self.backend,
        }
    }

    /// Checks every value; a wrong one is a `Config` error naming its key.
    pub fn validate(&self) -> Result<()> {
        self.validate_keyed().map_err(|(key, problem)| {
            StorageError::config(format!("invalid configuration: key `{key}`: {problem}"))
        })
    }

    /// Like [`StorageConfig::validate`], returning the key and the problem separately.
    fn validate_keyed(&self) -> std::result::Result<(), (String, String)> {
        let at_least_one = |key: &str, value: u64| {
            if value == 0 {
                Err((key.to_owned(), "expected a number of at least 1".to_owned()))
            } else {
                Ok(())
            }
        };
        let namespace = |key: &str, value: &str| {
            storage_core::validate::validate_namespace(value)
                .map_err(|err| (key.to_owned(), err.message().to_owned()))
        };
        for kind in Kind::ALL {
            if let Some(fallback) = self.failover.fallbacks.get(kind) {
                let key = format!("failover.fallbacks.{kind}");
                if !fallback.is_compiled() {
                    return Err((key, not_compiled(fallback)));
                }
                if fallback == self.backend_of(kind) {
                    return Err((
                        key,
                        "expected a backend other than the kind's primary".into(),
                    ));
                }
            }
            let backend = self.backend_of(kind);
            if !backend.is_compiled() {
                let key = if self.routes.get(kind).is_some() {
                    format!("routes.{kind}")
                } else {
                    "backend".to_owned()
                };
                return Err((key, not_compiled(backend)));
            }
        }
        if self.uses(BackendName::Memory) {
            namespace("memory.namespace", &self.memory.namespace)?;
        }
        namespace("health.namespace", &self.health.namespace)?;
        at_least_one("cache.max_entries", self.cache.max_entries)?;
        at_least_one("cache.max_bytes", self.cache.max_bytes)?;
        at_least_one("cache.ttl_ms", self.cache.ttl_ms)?;
        at_least_one("retry.max_attempts", u64::from(self.retry.max_attempts))?;
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            return Err((
                "retry.max_backoff_ms".into(),
                "expected a value no smaller than retry.initial_backoff_ms".into(),
            ));
        }
        at_least_one("group_commit.max_batch", self.group_commit.max_batch as u64)?;
        at_least_one("cleanup.max_idle_secs", self.cleanup.max_idle_secs)?;
        for (kind, settings) in self.cleanup.retention.kinds() {
            if let Some(secs) = settings.max_age_secs {
                at_least_one(&format!("cleanup.retention.{kind}.max_age_secs"), secs)?;
            }
            if let Some(keep) = settings.keep_last {
                at_least_one(&format!("cleanup.retention.{kind}.keep_last"), keep)?;
            }
        }
        at_least_one(
            "failover.failure_threshold",
            u64::from(self.failover.failure_threshold),
        )?;
        at_least_one(
            "failover.recovery_probes",
            u64::from(self.failover.recovery_probes),
        )?;
        at_least_one(
            "failover.probe_interval_ms",
            self.failover.probe_interval_ms,
        )?;
        // A primary's attempt must end before the facade's own deadline, or a hang is cut
        // off by the facade before the breaker ever sees it. Only where a kind fails over.
        if Kind::ALL
            .iter()
            .any(|&kind| self.failover.fallbacks.get(kind).is_some())
        {
            let below = |key: &str, attempt: u64, facade: u64, facade_key: &str| {
                if attempt > 0 && facade > 0 && attempt >= facade {
                    return Err((
                        key.to_owned(),
                        format!("expected 0 (none) or a value below {facade_key} ({facade} ms)"),
                    ));
                }
                Ok(())
            };
            below(
                "failover.attempt_timeout_ms",
                self.failover.attempt_timeout_ms,
                self.timeouts.read_ms,
                "timeouts.read_ms",
            )?;
            below(
                "failover.write_attempt_timeout_ms",
                self.failover.write_attempt_timeout_ms,
                self.timeouts.write_ms,
                "timeouts.write_ms",
            )?;
        }
        self.validate_backends()
    }

    fn validate_backends(&self) -> std::result::Result<(), (String, String)> {
        let keyed = |err: StorageError, section: &str| {
            // Backends name the key in their message; find the longest known key in it.
            let message = err.message().to_owned();
            let key = config_keys(self)
                .into_iter()
                .filter(|key| key.starts_with(section) && message.contains(key.as_str()))
                .max_by_key(String::len)
                .unwrap_or_else(|| section.to_owned());
            (key, message)
        };
        #[cfg(feature = "redis")]
        if self.uses(BackendName::Redis) {
            self.redis.validate().map_err(|err| keyed(err, "redis"))?;
        }
        #[cfg(feature = "postgres")]
        if self.uses(BackendName::Postgres) {
            self.postgres
                .validate()
                .map_err(|err| keyed(err, "postgres"))?;
        }
        #[cfg(feature = "object")]
        if self.uses(BackendName::Object) {
            self.object.validate().map_err(|err| keyed(err, "object"))?;
        }
        #[cfg(feature = "sqlite")]
        if self.uses(BackendName::Sqlite) {
            self.sqlite.validate().map_err(|err| keyed(err, "sqlite"))?;
        }
        let _ = keyed;
        Ok(())
    }

    /// A copy with every backend's namespace set to `namespace` (for scratch work such as
    /// benchmarks and the deep health check).
    pub fn in_namespace(&self, namespace: &str) -> StorageConfig {
        let mut config = self.clone();
        config.memory.namespace = namespace.to_owned();
        #[cfg(feature = "redis")]
        {
            config.redis.namespace = namespace.to_owned();
        }
        #[cfg(feature = "postgres")]
        {
            config.postgres.namespace = namespace.to_owned();
        }
        #[cfg(feature = "object")]
        {
            config.object.namespace = namespace.to_owned();
        }
        #[cfg(feature = "sqlite")]
        {
            config.sqlite.namespace = namespace.to_owned();
        }
        config
    }

    /// Whether any kind is routed to `backend`, as its primary or as its fallback.
    pub fn uses(&self, backend: BackendName) -> bool {
        Kind::ALL.into_iter().any(|kind| {
            self.backend_of(kind) == backend || self.failover.fallbacks.get(kind) == Some(backend)
        })
    }
}

/// The error for a backend this build does not include.
pub(crate) fn not_compiled(backend: BackendName) -> String {
    format!(
        "the {backend} backend is not compiled into this build; enable the `{backend}` feature \
         of the `storage` crate (or of `storage-cli` for storectl)"
    )
}

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValueSource {
    /// The built-in default.
    Default,
    /// The configuration file.
    File {
        /// Its path.
        path: String,
    },
    /// An environment variable.
    Env {
        /// Its name.
        name: String,
    },
    /// A value set in code.
    Code,
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSource::Default => f.write_str("default"),
            ValueSource::File { path } => write!(f, "file {path}"),
            ValueSource::Env { name } => write!(f, "env {name}"),
            ValueSource::Code => f.write_str("code"),
        }
    }
}

/// One configuration value, redacted, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The dotted key, e.g. `redis.url`.
    pub key: String,
    /// The environment variable that sets it.
    pub env: String,
    /// The value, secrets replaced by `***`.
    pub value: serde_json::Value,
    /// Where it came from.
    pub source: ValueSource,
}

/// A loaded configuration with the provenance of every value.
///
/// `Debug` shows the configuration (secrets hidden) and never the raw layered values.
pub struct LoadedConfig {
    /// The configuration.
    pub config: StorageConfig,
    figment: Figment,
}

impl fmt::Debug for LoadedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedConfig")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LoadedConfig {
    /// Every key with its redacted value and source, sorted by key.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        let values = flatten(&serde_json::to_value(&self.config).unwrap_or_default());
        values
            .into_iter()
            .map(|(key, value)| ConfigEntry {
                env: env_name(&key),
                value: redact_value(&key, value),
                source: source_of(&self.figment, &key),
                key,
            })
            .collect()
    }
}

/// Builds a configuration from explicit values, the environment, a file and the defaults.
///
/// ```
/// use storage::config::ConfigLoader;
///
/// let loaded = ConfigLoader::new()
///     .without_env()
///     .set("memory.namespace", "agents")
///     .load()
///     .unwrap();
/// assert_eq!(loaded.config.memory.namespace, "agents");
/// ```
#[derive(Clone)]
pub struct ConfigLoader {
    file: Option<PathBuf>,
    env: bool,
    explicit: Vec<(String, serde_json::Value)>,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let explicit: Vec<(&str, serde_json::Value)> = self
            .explicit
            .iter()
            .map(|(key, value)| (key.as_str(), redact_value(key, value.clone())))
            .collect();
        f.debug_struct("ConfigLoader")
            .field("file", &self.file)
            .field("env", &self.env)
            .field("explicit", &explicit)
            .finish()
    }
}

impl Default for ConfigLoader {
    fn default() -> Self {
        Self::new()
    }
}

const EXPLICIT: &str = "value set in code";
const DEFAULTS: &str = "built-in defaults";
const ENVIRONMENT: &str = "environment";

/// A provider under a name of ours, so provenance can be told apart.
struct Labeled<P>(P, &'static str);

impl<P: Provider> Provider for Labeled<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.1)
    }
    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

impl ConfigLoader {
    /// Reads `$STORAGE_CONFIG_FILE` (which must then exist) or else `storage.toml` if it
    /// exists, and the environment.
    pub fn new() -> Self {
        ConfigLoader {
            file: std::env::var_os(FILE_ENV).map(PathBuf::from),
            env: true,
            explicit: Vec::new(),
        }
    }

    /// Reads `path`, which must exist, instead of the default file.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(path.as_ref().to_owned());
        self
    }

    /// Ignores `STORAGE_*` environment variables.
    pub fn without_env(mut self) -> Self {
        self.env = false;
        self
    }

    /// Sets `key` (dotted, e.g. `redis.url`) to `value`, over every other source.
    pub fn set(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.explicit.push((key.to_owned(), value));
        self
    }

    /// The layered sources, lowest precedence first.
    pub fn figment(&self) -> Result<Figment> {
        let mut figment = Figment::from(Labeled(
            Serialized::defaults(StorageConfig::default()),
            DEFAULTS,
        ));
        match &self.file {
            Some(path) if !path.is_file() => {
                return Err(StorageError::config(format!(
                    "configuration file {} does not exist",
                    path.display()
                )))
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            // Only the working directory's file: never one found in a parent directory.
            None if Path::new(DEFAULT_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_FILE))
            }
            None => {}
        }
        if self.env {
            let env = Env::prefixed(ENV_PREFIX)
                .filter(|key| {
                    let section = key.as_str().split("__").next().unwrap_or_default();
                    SECTIONS
                        .iter()
                        .any(|known| known.eq_ignore_ascii_case(section))
                })
                .split("__");
            figment = figment.merge(Labeled(env, ENVIRONMENT));
        }
        for (key, value) in &self.explicit {
            figment = figment.merge(Labeled(Serialized::default(key, value.clone()), EXPLICIT));
        }
        Ok(figment)
    }

    /// Loads, extracts and validates the configuration.
    pub fn load(&self) -> Result<LoadedConfig> {
        let figment = self.figment()?;
        let config: StorageConfig = figment
            .extract()
            .map_err(|err| describe_figment_error(err, &figment))?;
        config.validate_keyed().map_err(|(key, problem)| {
            StorageError::config(format!(
                "invalid configuration: key `{key}` from {}: {problem}",
                describe_source(&figment, &key)
            ))
        })?;
        Ok(LoadedConfig { config, figment })
    }
}

/// The environment variable of a dotted key: `redis.url` is `STORAGE_REDIS__URL`.
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn source_of(figment: &Figment, key: &str) -> ValueSource {
    let Some(metadata) = figment.find_metadata(key) else {
        return ValueSource::Default;
    };
    if let Some(Source::File(path)) = &metadata.source {
        return ValueSource::File {
            path: path.display().to_string(),
        };
    }
    match metadata.name.as_ref() {
        ENVIRONMENT => ValueSource::Env {
            name: env_name(key),
        },
        EXPLICIT => ValueSource::Code,
        _ => ValueSource::Default,
    }
}

fn describe_source(figment: &Figment, key: &str) -> String {
    match source_of(figment, key) {
        ValueSource::Default => "the built-in default".to_owned(),
        ValueSource::File { path } => format!("file {path} (key `{key}`)"),
        ValueSource::Env { name } => format!("environment variable {name}"),
        ValueSource::Code => "a value set in code".to_owned(),
    }
}

fn describe_figment_error(err: figment::Error, figment: &Figment) -> StorageError {
    let problems: Vec<String> = err
        .into_iter()
        .map(|err| {
            let key = err.path.join(".");
            let source = match (&err.metadata, key.is_empty()) {
                (_, true) => String::new(),
                (Some(metadata), false) => {
                    let from = match (&metadata.source, metadata.name.as_ref()) {
                        (Some(Source::File(path)), _) => {
                            format!("file {} (key `{key}`)", path.display())
                        }
                        (_, ENVIRONMENT) => format!("environment variable {}", env_name(&key)),
                        (_, EXPLICIT) => "a value set in code".to_owned(),
                        _ => describe_source(figment, &key),
                    };
                    format!(" from {from}")
                }
                (None, false) => format!(" from {}", describe_source(figment, &key)),
            };
            let problem = if is_sensitive(&key) {
                redacted_problem(&err.kind)
            } else {
                err.kind.to_string()
            };
            if key.is_empty() {
                format!("invalid configuration: {problem}")
            } else {
                format!("invalid configuration: key `{key}`{source}: {problem}")
            }
        })
        .collect();
    StorageError::config(problems.join("; "))
}

/// The problem without the offending value, for keys that may hold secrets.
fn redacted_problem(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(_, expected) => {
            format!("invalid type (value hidden), expected {expected}")
        }
        Kind::InvalidValue(_, expected) => {
            format!("invalid value (value hidden), expected {expected}")
        }
        Kind::Message(_) => "invalid value (value hidden)".to_owned(),
        other => other.to_string(),
    }
}

/// Whether a key may hold a secret or a URL with a password: one rule for the whole
/// workspace, [`storage_core::redact`].
fn is_sensitive(key: &str) -> bool {
    storage_core::redact::is_secret_key(key) || storage_core::redact::is_connection_key(key)
}

/// A `STORAGE_*` environment variable that sets no configuration key (figment ignores it
/// without a word), with the closest key's variable when one is near enough to be a typo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownEnvVar {
    /// The variable, e.g. `STORAGE_BAKEND`.
    pub name: String,
    /// The closest configuration variable, e.g. `STORAGE_BACKEND`.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownEnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} matches no configuration key", self.name)?;
        match &self.suggestion {
            Some(suggestion) => write!(f, "; did you mean {suggestion}?"),
            None => write!(
                f,
                " (nested keys are joined by `__`, e.g. STORAGE_REDIS__URL)"
            ),
        }
    }
}

/// `STORAGE_*` variables that are not configuration on purpose: the file to read, and the
/// knobs of this workspace's own tests.
const NOT_CONFIG: [&str; 1] = [FILE_ENV];
const NOT_CONFIG_PREFIXES: [&str; 2] = ["STORAGE_TEST_", "STORAGE_MIGRATE_"];

/// The `STORAGE_*` variables of this process's environment that match no configuration
/// key; see [`unknown_env_names`]. Only names are read, never values (they may be secrets).
pub fn unknown_env_vars() -> Vec<UnknownEnvVar> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    unknown_env_names(names)
}

/// Which of `names` start with `STORAGE_` but set no configuration key, each with the
/// closest key's variable (by edit distance) when it is within a typo's reach. A name under
/// a key whose default is a map or absent (e.g. `STORAGE_OBJECT__OPTIONS__AWS_REGION`)
/// matches that key.
pub fn unknown_env_names<I, S>(names: I) -> Vec<UnknownEnvVar>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let keys = config_keys(&StorageConfig::default());
    let known: Vec<String> = keys.iter().map(|key| env_name(key)).collect();
    let mut unknown: Vec<UnknownEnvVar> = names
        .into_iter()
        .filter_map(|name| {
            let name = name.as_ref();
            let upper = name.to_ascii_uppercase();
            let rest = upper.strip_prefix(ENV_PREFIX)?;
            if rest.is_empty()
                || NOT_CONFIG.contains(&upper.as_str())
                || NOT_CONFIG_PREFIXES.iter().any(|p| upper.starts_with(p))
            {
                return None;
            }
            // figment lowercases names and splits them at `__`, as `env_name` joins them.
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let matches = keys.iter().any(|known_key| {
                key == *known_key
                    || key
                        .strip_prefix(known_key.as_str())
                        .is_some_and(|tail| tail.starts_with('.'))
            });
            if matches {
                return None;
            }
            let suggestion = known
                .iter()
                .map(|candidate| (strsim::damerau_levenshtein(&upper, candidate), candidate))
                .min_by_key(|(distance, _)| *distance)
                // Within a typo's reach: a few edits, fewer for short names.
                .filter(|(distance, _)| *distance <= (rest.len() / 3).clamp(1, 4))
                .map(|(_, candidate)| candidate.clone());
            Some(UnknownEnvVar {
                name: name.to_owned(),
                suggestion,
            })
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown
}

/// Every leaf key of `config` (objects flattened with dots; arrays and nulls are leaves).
pub fn config_keys(config: &StorageConfig) -> Vec<String> {
    flatten(&serde_json::to_value(config).unwrap_or_default())
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

fn flatten(value: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            leaf => out.push((prefix.to_owned(), leaf.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out.retain(|(key, _)| !key.is_empty());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
