//! Redis backend of the `storage` workspace, standalone or on Redis Cluster.
//!
//! [`RedisBackend`] implements every store trait of `storage-core` over a deadpool-redis
//! pool. Every key of a session, thread or artifact scope shares one hash tag (see the
//! `keys` module and `docs/backends/redis.md`), so every compound write is one Lua script on
//! one slot and works the same on a single server and on a cluster.
//!
//! ```no_run
//! use std::sync::Arc;
//! use storage_core::StorageBackend;
//! use storage_redis::{RedisBackend, RedisConfig};
//!
//! # async fn run() -> storage_core::Result<()> {
//! let config = RedisConfig::new("redis://127.0.0.1:6379").with_namespace("agents");
//! let backend: Arc<dyn StorageBackend> = Arc::new(RedisBackend::new(config)?);
//! backend.initialize().await?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod config;
mod error;
mod keys;
mod memory;
mod pool;
mod scripts;

pub use backend::RedisBackend;
pub use config::RedisConfig;
