//! Builds backends from configuration: the one place where a configuration becomes
//! backends, each named backend built once, with failover where it is configured.

use std::sync::Arc;

use storage_core::{Result, StorageBackend, StorageError};

use crate::config::{not_compiled, BackendName, StorageConfig};
use crate::failover::FailoverBackend;
use crate::Kind;

/// The backend of every kind (in [`Kind::ALL`] order) that `config` routes to, each named
/// backend built once. Kinds with a configured fallback run on a [`FailoverBackend`] over
/// (their route, the fallback); kinds with the same pair share one. With `namespace` (the
/// deep health check's scratch namespace) every backend uses it and nothing fails over.
pub(crate) fn build_routes(
    config: &StorageConfig,
    namespace: Option<&str>,
) -> Result<[Arc<dyn StorageBackend>; 5]> {
    let mut built: Vec<(BackendName, Arc<dyn StorageBackend>)> = Vec::new();
    let mut once = |name: BackendName| -> Result<Arc<dyn StorageBackend>> {
        if let Some((_, backend)) = built.iter().find(|(n, _)| *n == name) {
            return Ok(backend.clone());
        }
        let backend = build_backend(name, config, namespace)?;
        built.push((name, backend.clone()));
        Ok(backend)
    };
    let mut pairs: Vec<(BackendName, BackendName, Arc<dyn StorageBackend>)> = Vec::new();
    let mut routes = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        let primary_name = config.backend_of(kind);
        let primary = once(primary_name)?;
        let fallback_name = match config.failover.fallbacks.get(kind) {
            Some(fallback) if namespace.is_none() => fallback,
            _ => {
                routes.push(primary);
                continue;
            }
        };
        if let Some((_, _, shared)) = pairs
            .iter()
            .find(|(p, f, _)| *p == primary_name && *f == fallback_name)
        {
            routes.push(shared.clone());
            continue;
        }
        let fallback = once(fallback_name)?;
        let mut settings = config.failover.settings();
        settings.journal_dir = settings
            .journal_dir
            .join(format!("{primary_name}-{fallback_name}"));
        let wrapped: Arc<dyn StorageBackend> =
            Arc::new(FailoverBackend::new(primary, fallback, settings)?);
        pairs.push((primary_name, fallback_name, wrapped.clone()));
        routes.push(wrapped);
    }
    Ok(routes
        .try_into()
        .unwrap_or_else(|_| unreachable!("one route per kind")))
}

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
        #[cfg(feature = "sqlite")]
        BackendName::Sqlite => {
            let mut settings = config.sqlite.clone();
            if let Some(namespace) = namespace {
                settings.namespace = namespace.to_owned();
            }
            Arc::new(storage_sqlite::SqliteBackend::new(settings)?)
        }
        #[allow(unreachable_patterns)]
        other => return Err(StorageError::config(not_compiled(other))),
    };
    Ok(built)
}
