//! Cross-cutting concerns written once for every operation.
//!
//! Every call through a [`Storage`](crate::Storage) is described by an [`Operation`] (its
//! name, kind, backend, whether it reads or writes, whether it is safe to repeat, the id it
//! addresses and what it means for the read cache) and runs through one [`Layer::around`]
//! hook. A layer sees the operation and a `next` function that performs the rest of the
//! stack; it may call `next` once (metrics, tracing, timeout), several times (retry) or not
//! at all (a cache hit). Layers compose with [`Stack`].
//!
//! Adding an operation to the contract therefore means one entry in the facade's
//! forwarding implementation, and no change to any layer.

mod cache;
mod metrics;
mod retry;
mod timeout;
mod tracing;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use storage_core::{
    Artifact, ArtifactMeta, BackendMetrics, BatchCreate, ByteStream, CheckpointTuple, HealthStatus,
    Message, Page, PendingWrite, Result, Session, TaskContext,
};

pub use self::cache::{CacheLayer, CacheStats};
pub use self::metrics::{MetricsLayer, OperationStats};
pub use self::retry::RetryLayer;
pub use self::timeout::TimeoutLayer;
pub use self::tracing::TracingLayer;
use crate::Kind;

/// Whether an operation reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes nothing.
    Read,
    /// May change stored data.
    Write,
}

/// A group of cached entries invalidated together: one session's records, one thread's
/// checkpoints, one artifact scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheTag {
    /// The kind the entries belong to.
    pub kind: Kind,
    /// The session id, thread id or artifact scope.
    pub group: String,
}

impl CacheTag {
    /// The tag of `group` within `kind`.
    pub fn new(kind: Kind, group: impl Into<String>) -> Self {
        CacheTag {
            kind,
            group: group.into(),
        }
    }
}

/// What an operation means for the read cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEffect {
    /// Neither cached nor invalidating.
    None,
    /// A cacheable read of the entry `item` within `tag`.
    Read {
        /// The group the entry belongs to.
        tag: CacheTag,
        /// The entry within the group (a checkpoint namespace, an artifact version, ...).
        item: String,
    },
    /// A write that invalidates every entry of these groups.
    Invalidate(Vec<CacheTag>),
    /// A write that may touch any group of these kinds.
    InvalidateKinds(Vec<Kind>),
    /// The end of the facade's life: drop everything and cache nothing more.
    Close,
}

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
    /// A read of `kind` (reads are idempotent).
    pub fn read(name: &'static str, kind: Option<Kind>, backend: &'static str) -> Self {
        Operation {
            name,
            kind,
            backend,
            access: Access::Read,
            idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
    }

    /// A write of `kind`, idempotent or not.
    pub fn write(
        name: &'static str,
        kind: Option<Kind>,
        backend: &'static str,
        idempotent: bool,
    ) -> Self {
        Operation {
            access: Access::Write,
            idempotent,
            ..Self::read(name, kind, backend)
        }
    }

    /// Names the id the operation addresses.
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self
    }

    /// Sets the cache effect.
    pub fn cache(mut self, cache: CacheEffect) -> Self {
        self.cache = cache;
        self
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
}

/// A result type of an operation: what the layers may do with it.
///
/// Only the four cacheable results convert to and from [`CachedValue`]; every other result
/// uses the defaults.
pub trait Outcome: Send + 'static {
    /// The value to cache, for a cacheable result.
    fn to_cached(&self) -> Option<CachedValue> {
        None
    }
    /// The result a cached value stands for, if it is of this type.
    fn from_cached(_value: &CachedValue) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

macro_rules! uncached_outcomes {
    ($($ty:ty),* $(,)?) => { $(impl Outcome for $ty {})* };
}

uncached_outcomes!(
    (),
    bool,
    u64,
    Session,
    BatchCreate,
    Vec<Option<Session>>,
    Page<Session>,
    Message,
    Vec<Message>,
    Option<Message>,
    Vec<CheckpointTuple>,
    Vec<PendingWrite>,
    TaskContext,
    ArtifactMeta,
    Option<Artifact>,
    Vec<String>,
    Vec<ArtifactMeta>,
    Option<(ArtifactMeta, ByteStream)>,
    HealthStatus,
    BackendMetrics,
);

macro_rules! cached_outcome {
    ($ty:ty, $variant:ident) => {
        impl Outcome for $ty {
            fn to_cached(&self) -> Option<CachedValue> {
                Some(CachedValue::$variant(self.clone()))
            }
            fn from_cached(value: &CachedValue) -> Option<Self> {
                match value {
                    CachedValue::$variant(inner) => Some(inner.clone()),
                    _ => None,
                }
            }
        }
    };
}

cached_outcome!(Option<Session>, Session);
cached_outcome!(Option<TaskContext>, TaskContext);
cached_outcome!(Option<CheckpointTuple>, Checkpoint);
cached_outcome!(Option<ArtifactMeta>, ArtifactMeta);

/// The rest of the stack below a layer: call it to perform the operation (again).
pub type Next<'s, 'f, T> = &'s (dyn Fn() -> BoxFuture<'f, Result<T>> + Send + Sync);

/// A concern wrapped around every operation.
pub trait Layer: Send + Sync + fmt::Debug {
    /// Runs `op` through this layer; `next` performs it through the layers below.
    fn around<'s, 'f: 's, T: Outcome>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f, T>,
    ) -> BoxFuture<'s, Result<T>>;
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
    fn around<'s, 'f: 's, T: Outcome>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f, T>,
    ) -> BoxFuture<'s, Result<T>> {
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
    fn around<'s, 'f: 's, T: Outcome>(
        &'s self,
        _op: &'s Operation,
        next: Next<'s, 'f, T>,
    ) -> BoxFuture<'s, Result<T>> {
        next()
    }
}

/// An optional layer: absent means pass through.
impl<L: Layer> Layer for Option<L> {
    fn around<'s, 'f: 's, T: Outcome>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f, T>,
    ) -> BoxFuture<'s, Result<T>> {
        match self {
            Some(layer) => layer.around(op, next),
            None => next(),
        }
    }
}

/// A shared layer, so the facade can read its figures while it runs.
impl<L: Layer> Layer for Arc<L> {
    fn around<'s, 'f: 's, T: Outcome>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f, T>,
    ) -> BoxFuture<'s, Result<T>> {
        L::around(self, op, next)
    }
}
