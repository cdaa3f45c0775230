//! The trait implementations, one file per kind.

mod artifacts;
mod checkpoint_ids;
mod checkpoints;
mod compaction;
mod conversation;
mod conversation_head;
#[cfg(test)]
mod cost_tests;
#[cfg(test)]
mod counting_store;
mod digest;
mod gc;
mod local_listing;
mod retention;
#[cfg(test)]
mod retention_cost_tests;
mod sessions;
mod slot_stubs;
mod task_context;
mod unused_values;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::path::Path;
use storage_core::wire::{self, WireRecord};
use storage_core::{BackendMetrics, HealthStatus, Result, StorageBackend, StorageError};

use crate::config::ObjectConfig;
use crate::error::BACKEND;
use crate::keys::Keys;
use crate::recent::RecentCheckpoints;
use crate::store::{backoff, Objects};

pub use gc::{GarbageReport, DEFAULT_GARBAGE_GRACE};

/// Most compare-and-set attempts of one operation before it gives up as temporary.
const CAS_ATTEMPTS: u32 = 10_000;

/// The object-storage backend. Clones share the store and the open/closed state.
#[derive(Clone)]
pub struct ObjectBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: ObjectConfig,
    objects: Objects,
    keys: Keys,
    closed: AtomicBool,
    recent: RecentCheckpoints,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("config", &self.inner.config)
            .field("cell_mode", &self.inner.objects.mode)
            .finish()
    }
}

/// What a cell change decides after seeing the current value.
pub(crate) enum Change<T, R> {
    /// Store this value and return `R` once stored.
    Write(T, R),
    /// Store nothing and return `R`.
    Keep(R),
}

impl ObjectBackend {
    /// A backend for `config`; nothing is contacted until the first operation.
    pub fn new(config: ObjectConfig) -> Result<Self> {
        config
            .validate()
            .map_err(|err| err.with_backend(BACKEND).with_operation("new"))?;
        let objects = Objects::open(&config)
            .map_err(|err| err.with_backend(BACKEND).with_operation("new"))?;
        let keys = Keys::new(&objects.prefix, &config.namespace);
        Ok(ObjectBackend {
            inner: Arc::new(Inner {
                config,
                objects,
                keys,
                closed: AtomicBool::new(false),
                recent: RecentCheckpoints::default(),
            }),
        })
    }

    /// A backend on `store` (listing in key order, with ETags), for tests that count
    /// what operations do.
    #[cfg(test)]
    pub(crate) fn over(store: Arc<dyn object_store::ObjectStore>, namespace: &str) -> Self {
        Self::over_as(store, namespace, false)
    }

    /// [`ObjectBackend::over`] a store used as local files are (`files`: versioned cells,
    /// listings in no set order) or as memory is.
    #[cfg(test)]
    pub(crate) fn over_as(
        store: Arc<dyn object_store::ObjectStore>,
        namespace: &str,
        files: bool,
    ) -> Self {
        Self::over_objects(Self::test_objects(store, files), namespace)
    }

    /// A backend on the local directory `root` through `store` (a counting wrapper of the
    /// local store on `root`), for tests that count what a local read lists.
    #[cfg(test)]
    pub(crate) fn over_local(
        store: Arc<dyn object_store::ObjectStore>,
        root: std::path::PathBuf,
        namespace: &str,
    ) -> Self {
        let mut objects = Self::test_objects(store, true);
        objects.local_root = Some(Arc::new(root));
        Self::over_objects(objects, namespace)
    }

    /// `store` as the tests' backends use it: as local files are or as memory is.
    #[cfg(test)]
    fn test_objects(store: Arc<dyn object_store::ObjectStore>, files: bool) -> Objects {
        Objects {
            store,
            mode: if files {
                crate::store::CellMode::Versions
            } else {
                crate::store::CellMode::ETag
            },
            prefix: String::new(),
            provider: if files { "file" } else { "memory" },
            local_root: None,
            newest: Default::default(),
            local_walks: Default::default(),
        }
    }

    #[cfg(test)]
    fn over_objects(objects: Objects, namespace: &str) -> Self {
        ObjectBackend {
            inner: Arc::new(Inner {
                config: ObjectConfig::new("memory://").with_namespace(namespace),
                objects,
                keys: Keys::new("", namespace),
                closed: AtomicBool::new(false),
                recent: RecentCheckpoints::default(),
            }),
        }
    }

    /// The embedded default: the local directory `./.storage`, namespace `default`.
    pub fn embedded() -> Result<Self> {
        Self::new(ObjectConfig::default())
    }

    /// The configuration the backend was built with.
    pub fn config(&self) -> &ObjectConfig {
        &self.inner.config
    }

    /// The underlying object store, for tools and benchmarks that compare against it.
    pub fn object_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.inner.objects.store.clone()
    }

    pub(crate) fn objects(&self) -> &Objects {
        &self.inner.objects
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn recent(&self) -> &RecentCheckpoints {
        &self.inner.recent
    }

    /// The distinct ids directly under `prefix` with an object below them, and, with a
    /// `marker`, only under `prefix/<id>/<marker>/...`; sorted, greater than `after`, at
    /// most `limit`: how conversations (marker `messages`) are enumerated.
    pub(crate) async fn list_ids_under(
        &self,
        prefix: &object_store::path::Path,
        marker: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .objects()
            .list(prefix)
            .await?
            .iter()
            .filter_map(|path| {
                let parts = crate::keys::parts_after(path, prefix);
                let (id, used) = crate::keys::take_id(&parts)?;
                let marked = match marker {
                    Some(marker) => parts.get(used).map(String::as_str) == Some(marker),
                    None => parts.len() > used,
                };
                marked.then_some(id)
            })
            .filter(|id| after.is_none_or(|after| id.as_str() > after))
            .collect();
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    /// The distinct ids directly under `prefix` that have a `marker` object one id further
    /// down (`prefix/<id>/<sub id>/<marker>/...`), sorted, greater than `after`, at most
    /// `limit`: how thread ids (marker `checkpoints`) and artifact scopes (marker
    /// `versions`) are enumerated.
    pub(crate) async fn list_ids_with(
        &self,
        prefix: &object_store::path::Path,
        marker: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .objects()
            .list(prefix)
            .await?
            .iter()
            .filter_map(|path| {
                let parts = crate::keys::parts_after(path, prefix);
                let (id, used) = crate::keys::take_id(&parts)?;
                let (_, sub_used) = crate::keys::take_id(&parts[used..])?;
                let marked = parts.get(used + sub_used).map(String::as_str) == Some(marker);
                marked.then_some(id)
            })
            .filter(|id| after.is_none_or(|after| id.as_str() > after))
            .collect();
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    /// The distinct ids whose segments come right below `root` and have more below them
    /// (thread ids under `threads/`, a thread's namespaces under its directory, a local
    /// directory's context heads, each a folder of version files), sorted.
    /// Delimiter listings only: one of `root`, plus one of each full-length segment (an
    /// id of 63 bytes or more), since only after one can an id go on; so enumerating the
    /// series costs in proportion to their number, not to what they hold.
    pub(crate) async fn ids_below(&self, root: &Path) -> Result<Vec<String>> {
        use crate::keys::{is_full_segment, parts_after, take_id};
        let decode = |dir: &Path| take_id(&parts_after(dir, root)).map(|(id, _)| id);
        let mut ids = Vec::new();
        let mut pending = Vec::new();
        for child in self.objects().common_prefixes(root).await? {
            match child.filename() {
                Some(name) if name.starts_with('i') && is_full_segment(name) => pending.push(child),
                Some(name) if name.starts_with('i') => ids.extend(decode(&child)),
                _ => {}
            }
        }
        while let Some(dir) = pending.pop() {
            let (children, objects) = self.objects().children(&dir).await?;
            // Objects right below: an id ends at `dir` (a local cell's version files).
            if objects {
                ids.extend(decode(&dir));
            }
            for child in children {
                match child.filename() {
                    Some(name) if name.starts_with('j') && is_full_segment(name) => {
                        pending.push(child)
                    }
                    Some(name) if name.starts_with('j') => ids.extend(decode(&child)),
                    // Something other than a continuation: an id ends at `dir`.
                    Some(_) => ids.extend(decode(&dir)),
                    None => {}
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Runs one operation: refuses it once the backend is closed, and names the backend and
    /// the operation in any error it returns.
    pub(crate) async fn op<T>(
        &self,
        operation: &'static str,
        body: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = if self.inner.closed.load(Ordering::Acquire) {
            Err(StorageError::connection("the object backend is closed").with_temporary(false))
        } else {
            body.await
        };
        result.map_err(|err| err.with_backend(BACKEND).with_operation(operation))
    }

    /// Reads and decodes a cell.
    pub(crate) async fn read_cell<T: WireRecord>(&self, cell: &Path) -> Result<Option<T>> {
        match self.objects().cell_read(cell).await? {
            Some((bytes, _)) => Ok(Some(wire::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Reads a cell, lets `change` decide, and writes its value if the cell is still as
    /// read; otherwise reads again. `change` sees every attempt's value and may fail.
    pub(crate) async fn modify_cell<T: WireRecord, R>(
        &self,
        cell: &Path,
        mut change: impl FnMut(Option<T>) -> Result<Change<T, R>>,
    ) -> Result<R> {
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let current = self.objects().cell_read(cell).await?;
            let (value, token) = match current {
                Some((bytes, token)) => (Some(wire::decode::<T>(&bytes)?), Some(token)),
                None => (None, None),
            };
            match change(value)? {
                Change::Keep(result) => return Ok(result),
                Change::Write(value, result) => {
                    let bytes = wire::encode(&value)?;
                    if self
                        .objects()
                        .cell_write(cell, token.as_ref(), bytes)
                        .await?
                    {
                        return Ok(result);
                    }
                }
            }
        }
        Err(StorageError::backend("too many concurrent writers on one record").with_temporary(true))
    }
}

/// Runs up to `limit` futures at once, keeping input order. The futures are made before
/// the returned future is first polled, so no borrowing closure lives across an await.
pub(crate) fn in_order<I, F, T>(limit: usize, items: I) -> impl Future<Output = Result<Vec<T>>>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T>>,
{
    use futures::{StreamExt, TryStreamExt};
    let futures: Vec<F> = items.into_iter().collect();
    futures::stream::iter(futures).buffered(limit).try_collect()
}

#[async_trait]
impl StorageBackend for ObjectBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn initialize(&self) -> Result<()> {
        self.op("initialize", async {
            // One listing proves the store answers and the credentials work.
            self.objects()
                .list(&self.keys().sessions())
                .await
                .map(|_| ())
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        Ok(())
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        let started = Instant::now();
        self.op("health_check", async {
            // A probe of its own per check, removed after: checks of several processes
            // never read each other's probe, and none is left behind.
            let unique = uuid::Uuid::now_v7().simple().to_string();
            let probe = self
                .keys()
                .namespace_root()
                .join(format!("health-{unique}"));
            self.objects().put(&probe, b"ok".to_vec()).await?;
            let read = self.objects().get(&probe).await;
            self.objects().delete(&probe).await?;
            if read?.as_deref() != Some(b"ok".as_slice()) {
                return Err(StorageError::backend(
                    "the health probe read back differs from what was written",
                ));
            }
            Ok(())
        })
        .await?;
        let details = BTreeMap::from([
            ("namespace".to_owned(), self.inner.config.namespace.clone()),
            (
                "provider".to_owned(),
                self.inner.objects.provider.to_owned(),
            ),
            (
                "cell_mode".to_owned(),
                format!("{:?}", self.inner.objects.mode),
            ),
        ]);
        Ok(HealthStatus {
            backend: BACKEND.to_owned(),
            healthy: true,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            details,
        })
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        self.op("get_metrics", async {
            Ok(BackendMetrics {
                backend: BACKEND.to_owned(),
                counters: BTreeMap::new(),
                gauges: BTreeMap::new(),
            })
        })
        .await
    }

    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        self.op("cleanup_expired_sessions", self.remove_idle(max_idle))
            .await
    }
}
