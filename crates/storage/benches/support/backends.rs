//! The backends a facade bench runs on, each built on a fresh namespace: memory, sqlite and
//! object (a local directory under `root`), s3 (a throwaway moto server, or
//! `STORAGE_TEST_S3_URL`), redis, redis-cluster (three masters) and postgres (throwaway
//! servers, or `STORAGE_TEST_*_URL` / `STORAGE_TEST_REDIS_CLUSTER_URLS`).

use std::sync::Arc;

use storage_core::StorageBackend;

/// Every backend a bench can name.
pub const ALL: [&str; 7] = [
    "memory",
    "sqlite",
    "object",
    "s3",
    "redis",
    "redis-cluster",
    "postgres",
];

/// The backend `name` on `namespace`, initialized, with `pool_size` connections for a
/// server backend (PostgreSQL, Redis) where given, else its default.
pub async fn build(
    name: &str,
    namespace: &str,
    root: &std::path::Path,
    pool_size: Option<usize>,
) -> Arc<dyn StorageBackend> {
    let backend: Arc<dyn StorageBackend> = match name {
        "memory" => Arc::new(storage_memory::MemoryBackend::new(namespace).expect("namespace")),
        "sqlite" => Arc::new(
            storage_sqlite::SqliteBackend::new(
                storage_sqlite::SqliteConfig::new(root.join("bench.db")).with_namespace(namespace),
            )
            .expect("sqlite config"),
        ),
        "object" => Arc::new(
            storage_object::ObjectBackend::new(
                storage_object::ObjectConfig::new(format!("file://{}", root.display()))
                    .with_namespace(namespace),
            )
            .expect("object config"),
        ),
        "s3" => {
            let target = storage_testkit::servers::s3::s3_target();
            let config = storage_object::ObjectConfig::new(format!("s3://{}/bench", target.bucket))
                .with_namespace(namespace)
                .with_option("aws_endpoint", target.endpoint)
                .with_option("aws_allow_http", "true")
                .with_option("aws_access_key_id", target.access_key_id)
                .with_option("aws_secret_access_key", target.secret_access_key)
                .with_option("aws_region", target.region);
            Arc::new(storage_object::ObjectBackend::new(config).expect("s3 config"))
        }
        "redis" | "redis-cluster" => {
            use storage_testkit::servers::redis::{redis_cluster_urls, redis_url};
            let mut config = match name {
                "redis" => storage_redis::RedisConfig::new(redis_url()),
                _ => storage_redis::RedisConfig::cluster(redis_cluster_urls()),
            };
            if let Some(pool_size) = pool_size {
                config = config.with_pool_size(pool_size);
            }
            Arc::new(
                storage_redis::RedisBackend::new(config.with_namespace(namespace))
                    .expect("redis config"),
            )
        }
        "postgres" => {
            let mut config = storage_postgres::PostgresConfig::from_url(
                storage_testkit::servers::postgres::postgres_url(),
            )
            .with_namespace(namespace);
            if let Some(pool_size) = pool_size {
                config = config.with_pool_size(pool_size);
            }
            Arc::new(storage_postgres::PostgresBackend::new(config).expect("postgres config"))
        }
        other => panic!("unknown backend {other}; known: {}", ALL.join(", ")),
    };
    backend.initialize().await.expect("initialize");
    backend
}
