//! The PostgreSQL backend of the `storage` workspace, on deadpool-postgres and tokio-postgres.
//!
//! Every store of the contract lives in one schema per namespace, created and migrated by
//! [`StorageBackend::initialize`](storage_core::StorageBackend::initialize) under an advisory
//! lock, so several processes can start at once. Every statement is parameterized and
//! prepared once per connection; counters, sequences and compare-and-set are single
//! statements or row-locked transactions, race-free across connections and processes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use storage_core::StorageBackend;
//! use storage_postgres::{PostgresBackend, PostgresConfig};
//!
//! # async fn run() -> storage_core::Result<()> {
//! let config = PostgresConfig::from_url("postgres://app@127.0.0.1:5432/agents")
//!     .with_namespace("agents_prod");
//! let backend: Arc<dyn StorageBackend> = Arc::new(PostgresBackend::new(config)?);
//! backend.initialize().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Tables, indexes and the read path each index serves are documented in
//! `docs/backends/postgres.md`.

mod artifacts;
mod backend;
mod checkpoint_read;
mod checkpoint_removal;
mod checkpoints;
mod compaction;
mod config;
mod conversation;
mod error;
mod import;
mod read_only;
mod retention;
pub mod schema;
mod sessions;
mod sql;
mod task_context;

pub use backend::PostgresBackend;
pub use config::{PostgresConfig, TlsMode};

/// The backend's own statements and pool, for the benchmark that compares the backend with
/// the same SQL issued directly. Not a stable interface.
#[doc(hidden)]
pub mod raw {
    pub use crate::conversation::APPEND as APPEND_MESSAGES;
    pub use crate::sessions::SELECT_ONE as GET_SESSION;

    /// The backend's connection pool.
    pub fn pool(backend: &crate::PostgresBackend) -> &deadpool_postgres::Pool {
        &backend.pool
    }
}
