//! In-process storage backend on [`dashmap`]: the reference implementation of every
//! contract in `storage-core`.
//!
//! Data lives in a [`MemoryStore`], the in-process stand-in for a server: backends built
//! from one store on the same namespace share data (as two processes sharing a Redis would),
//! backends on different namespaces never see each other's. There is no global lock: each
//! record sits behind its own map shard, and ordered indexes are lock-free skip lists.
//!
//! ```
//! use storage_core::{NewMessage, NewSession, SessionStore, ConversationStore};
//! use storage_memory::MemoryBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> storage_core::Result<()> {
//! let backend = MemoryBackend::new("agents")?;
//! backend.create_session(NewSession::new("s1", "alice")).await?;
//! let message = backend.append_message("s1", NewMessage::new("user", "hello")).await?;
//! assert_eq!(message.sequence, 1);
//! # Ok(())
//! # }
//! ```

mod backend;
mod config;
mod store;

pub use backend::MemoryBackend;
pub use config::MemoryConfig;
pub use store::MemoryStore;

/// The README's example, compiled and run as a doc test so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
