//! Contracts of the `storage` workspace: the store traits every backend implements, the
//! domain types they exchange, the one error type, input validation and the stored wire
//! formats.
//!
//! An agent service keeps five kinds of state, each with its own trait:
//!
//! | kind | trait |
//! | --- | --- |
//! | sessions | [`SessionStore`] |
//! | conversation history | [`ConversationStore`] |
//! | workflow checkpoints (LangGraph model) | [`CheckpointStore`] |
//! | task context | [`TaskContextStore`] |
//! | artifacts | [`ArtifactStore`] |
//!
//! [`StorageBackend`] is all five plus lifecycle, health and metrics. Every trait is object
//! safe; typed conveniences live in [`ext`].
//!
//! The semantics every backend shares are enforced by the conformance suite in
//! `storage-testkit`, which each backend crate runs.

pub mod artifact;
pub mod backend;
pub mod blocking;
pub mod carried;
pub mod channel_value;
pub mod checkpoint;
pub mod compaction;
pub mod conversation;
pub mod delta;
pub mod error;
pub mod ext;
pub mod fork;
pub mod json;
pub mod kind;
pub mod operation;
pub mod page;
pub mod policy;
pub mod prelude;
pub mod redact;
pub mod retention;
pub mod retirement;
pub mod search;
pub mod session;
pub mod task_context;
pub mod time;
pub mod turns;
pub mod validate;
pub mod wire;

pub use artifact::{Artifact, ArtifactMeta, ArtifactStore, ByteStream, NewArtifact};
pub use backend::{BackendMetrics, HealthStatus, StorageBackend};
pub use channel_value::{ChannelValue, TypedBytes};
pub use checkpoint::{
    new_checkpoint_id, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery,
    CheckpointStore, CheckpointTuple, PendingWrite,
};
pub use conversation::{ConversationStore, Message, MessageRange, NewMessage};
pub use delta::ChannelHistory;
pub use error::{ErrorKind, Result, StorageError};
pub use json::Metadata;
pub use kind::Kind;
pub use operation::{Call, Dispatch, Reply};
pub use page::Page;
pub use retention::{Retention, RetentionPolicy};
pub use search::CheckpointSearch;
pub use session::{
    BatchCreate, NewSession, Session, SessionMetrics, SessionQuery, SessionStatus, SessionStore,
    SessionUpdate,
};
pub use task_context::{
    ContextScope, ExpectedVersion, MergedContext, TaskContext, TaskContextStore,
};
pub use time::Timestamp;
pub use turns::HistoryWindow;

/// Re-exported so backends and callers name the same versions.
pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use serde_json;
