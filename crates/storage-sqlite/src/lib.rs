//! The embedded SQLite backend of the `storage` workspace: every store of the contract in
//! one database file, with no server.
//!
//! Built for durability and speed together: the file is in WAL mode, a commit is fsynced
//! before it is acknowledged (`synchronous = full`, configurable), and writes go to one
//! writer thread that commits whatever is queued in one transaction (group commit), each
//! operation in its own savepoint so one failure never fails the others. Reads run on a
//! small pool of reader connections, concurrently with each other and with the writer: on
//! the caller's thread where it may block (tokio's multi-thread runtime, through
//! `block_in_place`), else on reader threads. Several processes may open the same file: writes
//! take SQLite's write lock (`BEGIN IMMEDIATE`) and wait for it up to the busy timeout.
//!
//! ```no_run
//! use std::sync::Arc;
//! use storage_core::StorageBackend;
//! use storage_sqlite::{SqliteBackend, SqliteConfig};
//!
//! # async fn run() -> storage_core::Result<()> {
//! let config = SqliteConfig::new("./.storage/storage.db").with_namespace("agents");
//! let backend: Arc<dyn StorageBackend> = Arc::new(SqliteBackend::new(config)?);
//! backend.initialize().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Tables, indexes and the read path each serves are documented in `docs/backends/sqlite.md`.

mod artifacts;
mod backend;
mod checkpoint_removal;
mod checkpoints;
mod compaction;
mod config;
mod conversation;
mod engine;
mod error;
mod import;
mod retention;
pub mod schema;
mod sessions;
mod task_context;

pub use backend::SqliteBackend;
pub use config::{SqliteConfig, Synchronous};
