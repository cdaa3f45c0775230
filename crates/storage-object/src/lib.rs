//! Object-storage backend of the `storage` workspace, on [`object_store`]: local files,
//! memory, and (behind the `aws`, `gcp` and `azure` features) S3, Google Cloud Storage and
//! Azure Blob Storage.
//!
//! A URL selects the provider (`file:///dir`, `memory://`, `s3://bucket/prefix`, ...). Every
//! change is made atomic with conditional writes only: create-if-absent
//! (`PutMode::Create`) for sequence slots, artifact versions and first-writer-wins writes,
//! and compare-and-set (`PutMode::Update` with the ETag, or on local files a new immutable
//! version object created with `Create`) for records that change. The layout is in the
//! `keys` module and `docs/backends/object.md`.
//!
//! With no configuration the backend is the local directory `./.storage`:
//!
//! ```no_run
//! use storage_core::{NewSession, SessionStore, StorageBackend};
//! use storage_object::ObjectBackend;
//!
//! # async fn run() -> storage_core::Result<()> {
//! let backend = ObjectBackend::embedded()?;
//! backend.initialize().await?;
//! backend.create_session(NewSession::new("s1", "alice")).await?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod config;
mod dir_stamp;
mod error;
mod keys;
mod newest;
mod recent;
mod store;

pub use backend::{GarbageReport, ObjectBackend, DEFAULT_GARBAGE_GRACE};
pub use config::ObjectConfig;
