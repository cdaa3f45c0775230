//! Every store trait and typed extension, for one glob import.
//!
//! ```
//! use storage_core::prelude::*;
//!
//! async fn greet(storage: &dyn StorageBackend) -> storage_core::Result<u64> {
//!     let message = storage.append_message("s1", NewMessage::new("user", "hi")).await?;
//!     Ok(message.sequence)
//! }
//! ```

pub use crate::ext::{ArtifactStoreExt, CheckpointStoreExt, TaskContextStoreExt};
pub use crate::fork::{Fork, ForkExt, ThreadFork};
pub use crate::turns::{ConversationStoreExt, HistoryWindow};
pub use crate::{
    ArtifactStore, ChannelValue, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore,
    ContextScope, ConversationStore, ExpectedVersion, MessageRange, NewArtifact, NewMessage,
    NewSession, Retention, RetentionPolicy, SessionQuery, SessionStatus, SessionStore,
    SessionUpdate, StorageBackend, TaskContextStore,
};
