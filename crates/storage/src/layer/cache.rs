//! A read cache for sessions, task context, latest checkpoints and artifact metadata.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use storage_core::{Reply, Result};

use super::{CacheEffect, CacheTag, CachedValue, Layer, Next, Operation};
use crate::Kind;

/// Invalidation stripes: a write bumps the generation of its group's stripe, which makes
/// every entry of every group on that stripe unreachable at once.
const STRIPES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    tag: CacheTag,
    item: String,
    stripe_generation: u64,
    kind_epoch: u64,
}

/// Hit and size figures of the read cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Cacheable reads that went to the backend.
    pub misses: u64,
    /// Entries held (approximate: the cache evicts lazily).
    pub entries: u64,
    /// Weighed size held, in bytes (approximate).
    pub bytes: u64,
}

/// Answers cacheable reads (`get_session`, `get_task_context`, `get_checkpoint` of the
/// latest id, `get_artifact_meta`) from memory, on [`moka`].
///
/// Bounded by bytes (each entry is weighed by its encoded size) and by entries (each entry
/// weighs at least `max_bytes / max_entries`, so the byte bound also caps the count), with a
/// time to live. Every write through the facade invalidates what it may change, after it
/// completes and whatever its outcome. Invalidation is by generation: a read remembers the
/// generation of its group before it calls the backend and stores its answer under that
/// generation, so an answer read before a concurrent write finished can never be served
/// after that write returned.
///
/// Writes made by other processes, or through a backend directly, are seen once the
/// entry's time to live has passed. A cache problem (an entry of an unexpected type) is a
/// miss, never an error.
#[derive(Debug)]
pub struct CacheLayer {
    cache: Cache<CacheKey, CachedValue>,
    stripes: Vec<AtomicU64>,
    kind_epochs: [AtomicU64; 5],
    hasher: RandomState,
    closed: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheLayer {
    /// A cache of at most `max_entries` entries and `max_bytes` bytes, each kept at most
    /// `ttl`.
    pub fn new(max_entries: u64, max_bytes: u64, ttl: Duration) -> Self {
        let max_bytes = max_bytes.max(1);
        let floor = u32::try_from(max_bytes / max_entries.max(1))
            .unwrap_or(u32::MAX)
            .max(1);
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .time_to_live(ttl)
            .weigher(move |_key: &CacheKey, value: &CachedValue| -> u32 {
                u32::try_from(value.weight()).unwrap_or(u32::MAX).max(floor)
            })
            .build();
        CacheLayer {
            cache,
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            kind_epochs: Default::default(),
            hasher: RandomState::new(),
            closed: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn stripe(&self, tag: &CacheTag) -> &AtomicU64 {
        let index = (self.hasher.hash_one(tag) as usize) % STRIPES;
        &self.stripes[index]
    }

    fn key(&self, tag: &CacheTag, item: &str) -> CacheKey {
        CacheKey {
            tag: tag.clone(),
            item: item.to_owned(),
            stripe_generation: self.stripe(tag).load(Ordering::Acquire),
            kind_epoch: self.kind_epochs[tag.kind.index()].load(Ordering::Acquire),
        }
    }

    fn invalidate(&self, effect: &CacheEffect) {
        match effect {
            CacheEffect::None | CacheEffect::Read { .. } => {}
            CacheEffect::Invalidate(tags) => {
                for tag in tags {
                    self.stripe(tag).fetch_add(1, Ordering::AcqRel);
                }
            }
            CacheEffect::InvalidateKinds(kinds) => {
                for kind in kinds {
                    self.kind_epochs[kind.index()].fetch_add(1, Ordering::AcqRel);
                }
            }
            CacheEffect::Close => {
                self.closed.store(true, Ordering::Release);
                for epoch in &self.kind_epochs {
                    epoch.fetch_add(1, Ordering::AcqRel);
                }
                self.cache.invalidate_all();
            }
        }
    }

    /// Drops every entry of `kinds` (for writes made around the facade, such as a
    /// migration).
    pub fn invalidate_kinds(&self, kinds: &[Kind]) {
        self.invalidate(&CacheEffect::InvalidateKinds(kinds.to_vec()));
    }

    /// Current figures.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
        }
    }
}

impl Layer for CacheLayer {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        match &op.cache {
            CacheEffect::None => next(),
            CacheEffect::Read { tag, item } => Box::pin(async move {
                if self.closed.load(Ordering::Acquire) {
                    return next().await;
                }
                let key = self.key(tag, item);
                if let Some(cached) = self.cache.get(&key).await {
                    if let Some(value) = cached.to_reply(op.name) {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("storage_cache_hits_total", "operation" => op.name)
                            .increment(1);
                        return Ok(value);
                    }
                    // Not what this operation returns: drop it and read through.
                    self.cache.invalidate(&key).await;
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("storage_cache_misses_total", "operation" => op.name)
                    .increment(1);
                let result = next().await;
                if let Ok(value) = &result {
                    if let Some(cached) = CachedValue::of_reply(value) {
                        self.cache.insert(key, cached).await;
                    }
                }
                result
            }),
            effect => Box::pin(async move {
                let result = next().await;
                self.invalidate(effect);
                result
            }),
        }
    }
}
