//! Cross-cutting concerns written once for every operation.
//!
//! Every call through a [`Storage`](crate::Storage) is a [`Call`](storage_core::Call) whose
//! [`Description`] comes from the one table of
//! operations in `storage_core::operation`. The facade turns it into an [`Operation`] (the
//! description plus the backend that serves it) and runs it through one [`Layer::around`]
//! hook. A layer sees the operation and a `next` function that performs the rest of the
//! stack; it may call `next` once (metrics, tracing, timeout), several times (retry) or not
//! at all (a cache hit). Layers compose with [`Stack`].
//!
//! Adding an operation to the contract therefore changes no layer.

mod cache;
mod metrics;
mod retry;
mod timeout;
mod tracing;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use storage_core::operation::Description;
pub use storage_core::operation::{Access, CacheEffect, CacheTag};
use storage_core::{ArtifactMeta, CheckpointTuple, Reply, Result, Session, TaskContext};

pub use self::cache::{CacheLayer, CacheStats};
pub use self::metrics::{MetricsLayer, OperationStats};
pub use self::retry::RetryLayer;
pub use self::timeout::TimeoutLayer;
pub use self::tracing::TracingLayer;
use crate::Kind;

/// One call through the facade, as every layer sees it.
///
/// Carries ids for tracing, never payloads.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The contract method, e.g. `get_session`.
    pub name: &'static str,
    /// The kind it addresses; `None` for lifecycle operations over every backend.
    pub kind: Option<Kind>,
    /// The backend that serves it (`memory`, `redis`, ... or `routed` for lifecycle
    /// operations over several).
    pub backend: &'static str,
    /// Read or write.
    pub access: Access,
    /// Whether running it twice has the effect of running it once, so that a temporary
    /// failure of unknown outcome may be retried.
    pub idempotent: bool,
    /// The session id, thread id or artifact scope it addresses, for tracing.
    pub subject: Option<String>,
    /// What it means for the read cache.
    pub cache: CacheEffect,
}

impl Operation {
    /// The operation `description` describes, served by `backend`.
    pub fn new(description: Description<'_>, backend: &'static str) -> Self {
        Operation {
            name: description.name,
            kind: description.kind,
            backend,
            access: description.access,
            idempotent: description.idempotent,
            subject: description.subject.map(str::to_owned),
            cache: description.cache,
        }
    }

    /// Whether the operation reads.
    pub fn is_read(&self) -> bool {
        self.access == Access::Read
    }
}

/// A value the read cache holds.
#[derive(Debug, Clone, PartialEq)]
pub enum CachedValue {
    /// A `get_session` result.
    Session(Option<Session>),
    /// A `get_task_context` result.
    TaskContext(Option<TaskContext>),
    /// A latest-checkpoint result.
    Checkpoint(Option<CheckpointTuple>),
    /// A `get_artifact_meta` result.
    ArtifactMeta(Option<ArtifactMeta>),
}

impl CachedValue {
    /// Approximate size in bytes, which the cache's byte bound weighs.
    pub fn weight(&self) -> usize {
        let encoded = match self {
            CachedValue::Session(v) => serde_json::to_vec(v),
            CachedValue::TaskContext(v) => serde_json::to_vec(v),
            CachedValue::Checkpoint(v) => serde_json::to_vec(v),
            CachedValue::ArtifactMeta(v) => serde_json::to_vec(v),
        };
        // A value that does not encode is weighed as large, so it leaves the cache first.
        encoded.map_or(usize::MAX / 2, |bytes| bytes.len() + 64)
    }

    /// The value to cache for a cacheable reply.
    pub fn of_reply(reply: &Reply) -> Option<Self> {
        Some(match reply {
            Reply::GetSession(v) => CachedValue::Session(v.clone()),
            Reply::GetContext(v) => CachedValue::TaskContext(v.clone()),
            Reply::GetCheckpoint(v) => CachedValue::Checkpoint(v.clone()),
            Reply::GetArtifactMeta(v) => CachedValue::ArtifactMeta(v.clone()),
            _ => return None,
        })
    }

    /// The reply this value stands for, if it answers the operation `name`.
    pub fn to_reply(&self, name: &str) -> Option<Reply> {
        Some(match (self, name) {
            (CachedValue::Session(v), "get_session") => Reply::GetSession(v.clone()),
            (CachedValue::TaskContext(v), "get_context") => Reply::GetContext(v.clone()),
            (CachedValue::Checkpoint(v), "get_checkpoint") => Reply::GetCheckpoint(v.clone()),
            (CachedValue::ArtifactMeta(v), "get_artifact_meta") => {
                Reply::GetArtifactMeta(v.clone())
            }
            _ => return None,
        })
    }
}

/// The rest of the stack below a layer: call it to perform the operation (again).
pub type Next<'s, 'f> = &'s (dyn Fn() -> BoxFuture<'f, Result<Reply>> + Send + Sync);

/// A concern wrapped around every operation.
pub trait Layer: Send + Sync + fmt::Debug {
    /// Runs `op` through this layer; `next` performs it through the layers below.
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>>;
}

/// Two layers, `outer` around `inner`.
#[derive(Debug, Clone)]
pub struct Stack<O, I> {
    /// Runs first.
    pub outer: O,
    /// Runs inside `outer`.
    pub inner: I,
}

impl<O: Layer, I: Layer> Layer for Stack<O, I> {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        Box::pin(async move {
            let inner = move || self.inner.around(op, next);
            self.outer.around(op, &inner).await
        })
    }
}

/// The layer that does nothing but call `next`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Layer for Identity {
    fn around<'s, 'f: 's>(
        &'s self,
        _op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        next()
    }
}

/// An optional layer: absent means pass through.
impl<L: Layer> Layer for Option<L> {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        match self {
            Some(layer) => layer.around(op, next),
            None => next(),
        }
    }
}

/// A shared layer, so the facade can read its figures while it runs.
impl<L: Layer> Layer for Arc<L> {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        L::around(self, op, next)
    }
}
