//! Builds backends from configuration.

use std::sync::Arc;

use storage_core::{Result, StorageBackend, StorageError};

use crate::config::{not_compiled, BackendName, StorageConfig};

/// Builds the `backend` described by `config`, with every namespace replaced by
/// `namespace` when one is given (the deep health check's scratch namespace).
pub fn build_backend(
    backend: BackendName,
    config: &StorageConfig,
    namespace: Option<&str>,
) -> Result<Arc<dyn StorageBackend>> {
    let _ = (config, namespace);
    let built: Arc<dyn StorageBackend> = match backend {
        #[cfg(feature = "memory")]
        BackendName::Memory => {
            let mut settings =
                storage_memory::MemoryConfig::new(namespace.unwrap_or(&config.memory.namespace));
            settings.max_artifact_bytes = config.memory.max_artifact_bytes;
            Arc::new(storage_memory::MemoryBackend::from_config(settings)?)
        }
        #[cfg(feature = "redis")]
        BackendName::Redis => {
            let mut settings = config.redis.clone();
            if let Some(namespace) = namespace {
                settings.namespace = namespace.to_owned();
            }
            Arc::new(storage_redis::RedisBackend::new(settings)?)
        }
        #[cfg(feature = "postgres")]
        BackendName::Postgres => {
            let mut settings = config.postgres.clone();
            if let Some(namespace) = namespace {
                settings.namespace = namespace.to_owned();
            }
            Arc::new(storage_postgres::PostgresBackend::new(settings)?)
        }
        #[cfg(feature = "object")]
        BackendName::Object => {
            let mut settings = config.object.clone();
            if let Some(namespace) = namespace {
                settings.namespace = namespace.to_owned();
            }
            Arc::new(storage_object::ObjectBackend::new(settings)?)
        }
        #[allow(unreachable_patterns)]
        other => return Err(StorageError::config(not_compiled(other))),
    };
    Ok(built)
}
