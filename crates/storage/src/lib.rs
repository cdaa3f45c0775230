//! The facade of the storage workspace: one typed async storage for AI-agent state
//! (sessions, conversation history, checkpoints, task context, artifacts) over the
//! memory, Redis, PostgreSQL and object-storage backends.
//!
//! - [`config`]: a typed [`StorageConfig`] loaded from code, `STORAGE_*` environment
//!   variables, `storage.toml` and defaults, with provenance in every error.
//! - [`Storage::from_config`] builds one backend for every kind, or a backend per kind.
//!   Each backend is a cargo feature (`memory` and `object` by default; `redis`,
//!   `postgres`, `s3`, `gcs`, `azure` opt-in).
//! - [`layer`]: metrics, tracing, timeouts, retries and a read cache, each written once
//!   around every operation; group commit of concurrent appends.
//! - [`Storage::health`] and [`Storage::spawn_cleanup`] for operations.
//! - [`failover`]: a primary and a fallback per kind, a circuit breaker, dual-write or
//!   journaled failover with replay.
//! - [`migrate`]: copies every kind of data from one backend to another, resumably, and
//!   verifies the copy.
//!
//! `Storage` implements `StorageBackend`, so it is used like any backend:
//!
//! ```
//! use storage::{BackendName, Storage, StorageConfig};
//! use storage_core::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> storage_core::Result<()> {
//! let config = StorageConfig {
//!     backend: BackendName::Memory,
//!     ..StorageConfig::default()
//! };
//! let storage = Storage::from_config(config)?;
//! storage.initialize().await?;
//! storage.create_session(NewSession::new("s1", "alice")).await?;
//! let message = storage.append_message("s1", NewMessage::new("user", "hi")).await?;
//! assert_eq!(message.sequence, 1);
//! # Ok(())
//! # }
//! ```

mod cleanup;
pub mod config;
pub mod factory;
pub mod failover;
mod group_commit;
pub mod health;
mod kind;
pub mod layer;
pub mod migrate;
mod routes;
mod storage;

pub use cleanup::{CleanupTask, RetentionReport};
pub use config::{BackendName, ConfigLoader, LoadedConfig, StorageConfig};
pub use health::HealthReport;
pub use kind::Kind;
pub use storage::{FacadeLayers, Storage, StorageBuilder};
