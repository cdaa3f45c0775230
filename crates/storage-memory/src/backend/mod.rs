//! The trait implementations, one file per kind.

mod artifacts;
mod checkpoints;
mod conversation;
mod sessions;
mod task_context;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use storage_core::{BackendMetrics, HealthStatus, Result, StorageBackend, StorageError};

use crate::store::{MemoryStore, Namespace};
use crate::MemoryConfig;

const NAME: &str = "memory";

/// The memory backend. Clones share the same data and the same open/closed state.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    config: Arc<MemoryConfig>,
    data: Arc<Namespace>,
    closed: Arc<AtomicBool>,
}

impl MemoryBackend {
    /// A backend on a private store of its own.
    pub fn new(namespace: &str) -> Result<Self> {
        Self::with_store(&MemoryStore::new(), MemoryConfig::new(namespace))
    }

    /// A backend on a private store, with `config`.
    pub fn from_config(config: MemoryConfig) -> Result<Self> {
        Self::with_store(&MemoryStore::new(), config)
    }

    /// A backend on `config.namespace` of `store`.
    pub fn with_store(store: &MemoryStore, config: MemoryConfig) -> Result<Self> {
        storage_core::validate::validate_namespace(&config.namespace)
            .map_err(|err| err.with_backend(NAME).with_operation("new"))?;
        Ok(MemoryBackend {
            data: store.namespace(&config.namespace),
            config: Arc::new(config),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The configuration the backend was built with.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Runs one operation: refuses it once the backend is closed, and names the backend and
    /// the operation in any error it returns.
    fn op<T>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&Namespace) -> Result<T>,
    ) -> Result<T> {
        let result = if self.closed.load(Ordering::Acquire) {
            Err(StorageError::connection("the memory backend is closed"))
        } else {
            body(&self.data)
        };
        result.map_err(|err| err.with_backend(NAME).with_operation(operation))
    }
}

#[async_trait]
impl StorageBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn initialize(&self) -> Result<()> {
        self.op("initialize", |_| Ok(()))
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let started = Instant::now();
        let sessions = self.op("health_check", |data| Ok(data.sessions.len()))?;
        let details = BTreeMap::from([
            ("namespace".to_owned(), self.config.namespace.clone()),
            ("sessions".to_owned(), sessions.to_string()),
        ]);
        Ok(HealthStatus {
            backend: NAME.to_owned(),
            healthy: true,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            details,
        })
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        self.op("get_metrics", |data| {
            let gauges = BTreeMap::from([
                ("sessions".to_owned(), data.sessions.len() as f64),
                ("conversations".to_owned(), data.conversations.len() as f64),
                ("task_contexts".to_owned(), data.contexts.len() as f64),
                ("checkpoint_threads".to_owned(), data.threads.len() as f64),
                ("artifact_scopes".to_owned(), data.scopes.len() as f64),
            ]);
            Ok(BackendMetrics {
                backend: NAME.to_owned(),
                counters: BTreeMap::new(),
                gauges,
            })
        })
    }

    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        self.op("cleanup_expired_sessions", |data| {
            Ok(sessions::remove_idle(data, max_idle))
        })
    }
}
