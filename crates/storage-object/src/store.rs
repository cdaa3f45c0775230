//! The object store a URL selects, and the conditional-write primitives every operation is
//! built from.
//!
//! A *cell* is one mutable record updated by compare-and-set. Where the provider has
//! conditional updates (S3, GCS, Azure, memory) a cell is one object written with
//! `PutMode::Create` when absent and `PutMode::Update` with the ETag read. Where it has not
//! (local files), a cell is a directory of immutable versions `00000000000000000001`, ...,
//! each created with `PutMode::Create`: the highest version is the value, and creating
//! version n+1 is the compare-and-set from version n.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use storage_core::{Result, StorageError};

use crate::config::ObjectConfig;
use crate::error::{classify, is_absent, BACKEND};
use crate::keys::{legacy_terminal, number, parse_number};
pub(crate) use crate::newest::NewestVersions;

/// How long old versions of a versioned cell are kept.
const VERSION_RETENTION: Duration = Duration::from_secs(60);

/// How cells get their compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellMode {
    /// One object, `PutMode::Update` with its ETag.
    ETag,
    /// Immutable version objects created with `PutMode::Create`; the highest wins.
    Versions,
}

/// What a cell read returns, to pass back to a compare-and-set.
#[derive(Debug, Clone)]
pub(crate) enum Token {
    ETag(UpdateVersion),
    /// The version read, and when it was read.
    Version(u64, std::time::Instant),
}

/// The store and the mode its cells use.
#[derive(Debug, Clone)]
pub(crate) struct Objects {
    pub store: Arc<dyn ObjectStore>,
    pub mode: CellMode,
    /// The path prefix the URL names inside the store.
    pub prefix: String,
    /// `file`, `memory`, `s3`, `gs` or `az`.
    pub provider: &'static str,
    /// A local directory store's root as it was resolved when opened (absolute, links
    /// followed), which is where the store reads and writes even if the process changes its
    /// working directory: the root listings that read the directory itself start from.
    pub local_root: Option<Arc<std::path::PathBuf>>,
    /// The highest version this process last saw of each versioned cell, so that a read
    /// probes upward from it instead of listing every version the cell still holds.
    pub newest: Arc<NewestVersions>,
    /// Walks of a local directory's names (`local_listing`), counted for the tests that
    /// show what a read lists.
    pub local_walks: Arc<std::sync::atomic::AtomicU64>,
}

/// One process-wide in-memory store per `memory://name`, so backends built from the same
/// URL share data as processes sharing a server would.
fn memory_store(name: &str) -> Arc<InMemory> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (scheme, host, path)
}

impl Objects {
    /// Builds the store `config.url` selects.
    pub(crate) fn open(config: &ObjectConfig) -> Result<Self> {
        let (scheme, host, path) = split_url(&config.url);
        match scheme {
            "file" => {
                let dir = config.url.trim_start_matches("file://");
                if dir.is_empty() {
                    return Err(StorageError::config(
                        "object.url file:// names no directory",
                    ));
                }
                std::fs::create_dir_all(dir).map_err(|err| {
                    StorageError::config(format!(
                        "object.url: cannot create directory {dir:?}: {err}"
                    ))
                    .with_source(err)
                })?;
                // Resolved here as the store resolves its own root, once.
                let root = std::fs::canonicalize(dir).map_err(|err| {
                    StorageError::config(format!(
                        "object.url: cannot resolve directory {dir:?}: {err}"
                    ))
                    .with_source(err)
                })?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|err| classify(err).with_operation("open"))?
                    .with_fsync(config.fsync)
                    // A delete removes the directories it empties, so ids that come and
                    // go (sessions, probes, artifact names) leave no empty directories.
                    // Safe beside writers: every write goes through a staging file that
                    // recreates missing parents, and a directory holding one is not empty.
                    .with_automatic_cleanup(true);
                Ok(Objects {
                    store: Arc::new(local),
                    mode: CellMode::Versions,
                    prefix: String::new(),
                    provider: "file",
                    local_root: Some(Arc::new(root)),
                    newest: Default::default(),
                    local_walks: Default::default(),
                })
            }
            "memory" => Ok(Objects {
                store: memory_store(host),
                mode: CellMode::ETag,
                prefix: path.to_owned(),
                provider: "memory",
                local_root: None,
                newest: Default::default(),
                local_walks: Default::default(),
            }),
            "s3" | "s3a" => cloud::s3(config, host, path),
            "gs" => cloud::gcs(config, host, path),
            "az" | "abfs" | "abfss" => cloud::azure(config, host, path),
            other => Err(StorageError::config(format!(
                "object.url scheme {other:?} is not supported"
            ))),
        }
    }

    /// Whether listings come in path order: every provider's but local files', whose
    /// directory walk has no order.
    pub(crate) fn lists_in_order(&self) -> bool {
        self.provider != "file"
    }

    fn fail(&self, operation: &'static str) -> impl Fn(object_store::Error) -> StorageError {
        move |err| classify(err).with_operation(operation)
    }

    /// The object's bytes, or `None`. A key that ends an id filling its last segment is
    /// looked for first where the previous release wrote it ([`legacy_terminal`]): an
    /// object there is the record, where `put` writes and `create` finds it, also when a
    /// process of that release wrote it beside this one's key. `exists` and `delete` look
    /// at both.
    pub(crate) async fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        if let Some(legacy) = legacy_terminal(path) {
            if let Some(found) = self.get_at(&legacy).await? {
                return Ok(Some(found));
            }
        }
        self.get_at(path).await
    }

    async fn get_at(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(self.fail("get"))?)),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    /// Whether an object is at `path` (or at its previous release's key).
    pub(crate) async fn exists(&self, path: &Path) -> Result<bool> {
        Ok(self.exists_at(path).await? || self.legacy_of(path).await?.is_some())
    }

    async fn exists_at(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(err) if is_absent(&err) => Ok(false),
            Err(err) => Err(classify(err)),
        }
    }

    /// The previous release's key of `path` when an object is there: where that object's
    /// replacement goes, since on a local disk the file blocks the folder `path` needs.
    async fn legacy_of(&self, path: &Path) -> Result<Option<Path>> {
        match legacy_terminal(path) {
            Some(legacy) if self.exists_at(&legacy).await? => Ok(Some(legacy)),
            _ => Ok(None),
        }
    }

    /// Writes `data`, replacing what is there.
    pub(crate) async fn put(&self, path: &Path, data: Vec<u8>) -> Result<()> {
        let legacy = self.legacy_of(path).await?;
        self.store
            .put(legacy.as_ref().unwrap_or(path), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Writes `data` only if nothing is at `path`; returns whether it was written.
    pub(crate) async fn create(&self, path: &Path, data: Vec<u8>) -> Result<bool> {
        if self.legacy_of(path).await?.is_some() {
            return Ok(false);
        }
        let options = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(path, PutPayload::from(data), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(err) => Err(classify(err)),
        }
    }

    /// Removes the object (and any at its previous release's key); absent is fine.
    pub(crate) async fn delete(&self, path: &Path) -> Result<()> {
        if let Some(legacy) = legacy_terminal(path) {
            self.delete_at(&legacy).await?;
        }
        self.delete_at(path).await
    }

    async fn delete_at(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(err) if is_absent(&err) => Ok(()),
            Err(err) => Err(classify(err)),
        }
    }

    /// Every object under `prefix` (recursive) with its size and age, in no set order.
    pub(crate) async fn list_meta(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .or_else(|err| match err {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                err => Err(classify(err)),
            })
    }

    /// Every object under `prefix` (recursive), in key order. When `prefix` ends with an
    /// id of 63 bytes or more, the objects of the longer ids that continue it (whose next
    /// segment is a `j` continuation) are not under it, and are left out: deleting a
    /// thread, a session or an artifact must not take those of its longer namesakes.
    pub(crate) async fn list(&self, prefix: &Path) -> Result<Vec<Path>> {
        let mut paths: Vec<Path> = self
            .store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .try_filter(|path| {
                let own = path
                    .prefix_match(prefix)
                    .and_then(|mut parts| parts.next())
                    .is_none_or(|next| !crate::keys::is_continuation(next.as_ref()));
                std::future::ready(own)
            })
            .try_collect()
            .await
            .or_else(|err| match err {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                err => Err(classify(err)),
            })?;
        paths.sort();
        Ok(paths)
    }

    /// The "directories" directly under `prefix` (a delimiter listing: one request per
    /// 1,000 on S3, one directory read on local files), sorted.
    pub(crate) async fn common_prefixes(&self, prefix: &Path) -> Result<Vec<Path>> {
        Ok(self.children(prefix).await?.0)
    }

    /// One delimiter listing of `prefix`: the folders right below it, sorted, and whether
    /// any object lies right below it.
    pub(crate) async fn children(&self, prefix: &Path) -> Result<(Vec<Path>, bool)> {
        match self.store.list_with_delimiter(Some(prefix)).await {
            Ok(listing) => {
                let mut prefixes = listing.common_prefixes;
                prefixes.sort();
                Ok((prefixes, !listing.objects.is_empty()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok((Vec::new(), false)),
            Err(err) => Err(classify(err)),
        }
    }

    /// Removes every object under `prefix`; returns the paths removed.
    pub(crate) async fn delete_all(&self, prefix: &Path) -> Result<Vec<Path>> {
        let paths = self.list(prefix).await?;
        self.delete_many(paths.clone()).await?;
        Ok(paths)
    }

    /// Removes the given objects, several at a time.
    pub(crate) async fn delete_many(&self, paths: Vec<Path>) -> Result<()> {
        futures::stream::iter(paths)
            .map(|path| async move { self.delete(&path).await })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// Reads a cell: its value and the token a compare-and-set needs, or `None`.
    pub(crate) async fn cell_read(&self, cell: &Path) -> Result<Option<(Bytes, Token)>> {
        match self.mode {
            CellMode::ETag => {
                let path = cell.clone().join("cell");
                match self.store.get(&path).await {
                    Ok(result) => {
                        let version = UpdateVersion {
                            e_tag: result.meta.e_tag.clone(),
                            version: result.meta.version.clone(),
                        };
                        let bytes = result.bytes().await.map_err(self.fail("cell_read"))?;
                        Ok(Some((bytes, Token::ETag(version))))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(err) => Err(classify(err)),
                }
            }
            CellMode::Versions => {
                // The highest version may be collected between listing and reading when a
                // newer one appears: list again.
                for _ in 0..64 {
                    let read_at = std::time::Instant::now();
                    let Some(highest) = self.highest_version(cell).await? else {
                        return Ok(None);
                    };
                    if let Some(bytes) = self.get(&cell.clone().join(number(highest))).await? {
                        self.newest.set(cell, highest);
                        return Ok(Some((bytes, Token::Version(highest, read_at))));
                    }
                    self.newest.forget(cell);
                }
                Err(
                    StorageError::backend("a cell kept changing while it was read")
                        .with_temporary(true),
                )
            }
        }
    }

    /// The highest version of a versioned cell, or `None` when it has none. From the
    /// version this process last saw, if that one is younger than half the retention: then
    /// neither it nor any version above it has been collected, versions are created one
    /// after another, and the highest is the first number above it that holds nothing, found
    /// at a cost of the versions written since. Otherwise, from a listing.
    async fn highest_version(&self, cell: &Path) -> Result<Option<u64>> {
        if let Some(seen) = self.newest.get(cell) {
            if let Some(modified) = self.modified(&cell.clone().join(number(seen))).await? {
                let age = storage_core::time::now() - modified;
                if age.num_milliseconds() < (VERSION_RETENTION / 2).as_millis() as i64 {
                    // At most 64 versions written since; past that, a listing is cheaper.
                    for highest in seen..seen.saturating_add(64) {
                        if !self.exists(&cell.clone().join(number(highest + 1))).await? {
                            return Ok(Some(highest));
                        }
                    }
                }
            }
        }
        Ok(self.versions(cell).await?.pop().map(|(highest, _)| highest))
    }

    /// When the object at `path` was last written, or `None` when there is none.
    async fn modified(&self, path: &Path) -> Result<Option<storage_core::Timestamp>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    /// The versions of a cell with their modification times, ascending. One delimiter
    /// listing: the files right below the cell, never those of a longer id's cell that
    /// continues this one's id in a folder below it.
    async fn versions(&self, cell: &Path) -> Result<Vec<(u64, storage_core::Timestamp)>> {
        let objects = match self.store.list_with_delimiter(Some(cell)).await {
            Ok(listing) => listing.objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(err) => return Err(classify(err)),
        };
        let mut versions: Vec<(u64, storage_core::Timestamp)> = objects
            .into_iter()
            .filter_map(|meta| {
                let version = meta.location.filename().and_then(parse_number)?;
                Some((version, meta.last_modified))
            })
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Writes `data` to the cell if it is still as read (`expected`; `None`: absent).
    /// Returns `false`, writing nothing, if another writer came first.
    pub(crate) async fn cell_write(
        &self,
        cell: &Path,
        expected: Option<&Token>,
        data: Vec<u8>,
    ) -> Result<bool> {
        match self.mode {
            CellMode::ETag => {
                let path = cell.clone().join("cell");
                let mode = match expected {
                    None => PutMode::Create,
                    Some(Token::ETag(version)) => PutMode::Update(version.clone()),
                    Some(Token::Version(..)) => {
                        return Err(StorageError::backend("version token on an ETag cell"))
                    }
                };
                match self
                    .store
                    .put_opts(&path, PutPayload::from(data), PutOptions::from(mode))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. }
                        | object_store::Error::NotFound { .. },
                    ) => Ok(false),
                    Err(err) => Err(classify(err)),
                }
            }
            CellMode::Versions => {
                let next = match expected {
                    None => 1,
                    Some(Token::Version(version, read_at)) => {
                        // A version is collected only once it is older than
                        // `VERSION_RETENTION`; a read older than half of that may be based on
                        // a collected version, so it must be read again.
                        if read_at.elapsed() > VERSION_RETENTION / 2 {
                            return Ok(false);
                        }
                        version + 1
                    }
                    Some(Token::ETag(_)) => {
                        return Err(StorageError::backend("ETag token on a versioned cell"))
                    }
                };
                if !self.create(&cell.clone().join(number(next)), data).await? {
                    return Ok(false);
                }
                self.newest.set(cell, next);
                self.collect_versions(cell, next).await?;
                Ok(true)
            }
        }
    }

    /// Removes versions older than `VERSION_RETENTION`, keeping the two newest. A writer
    /// creates version n+1 only within half the retention after reading version n, so the
    /// slot it creates was never collected: creating into a collected slot is impossible.
    /// The listing is skipped until the oldest version the last one kept can be old
    /// enough: otherwise every write of a burst would list every version of the burst (the
    /// cell holds a minute of them), a cost growing with the burst, not with the write.
    async fn collect_versions(&self, cell: &Path, newest: u64) -> Result<()> {
        if !self.newest.collection_due(cell) {
            return Ok(());
        }
        let now = storage_core::time::now();
        // Collected when more than `retention` whole seconds old.
        let old_ms = (VERSION_RETENTION.as_secs() as i64 + 1) * 1000;
        let (old, kept): (Vec<_>, Vec<_>) =
            self.versions(cell)
                .await?
                .into_iter()
                .partition(|(v, modified)| {
                    v + 1 < newest && (now - *modified).num_milliseconds() >= old_ms
                });
        if let Some(oldest) = kept.iter().map(|(_, modified)| *modified).min() {
            let wait = old_ms - (now - oldest).num_milliseconds();
            self.newest
                .collect_after(cell, Duration::from_millis(wait.max(0) as u64));
        }
        self.delete_many(
            old.into_iter()
                .map(|(v, _)| cell.clone().join(number(v)))
                .collect(),
        )
        .await
    }

    /// Removes a cell whatever its value.
    pub(crate) async fn cell_delete(&self, cell: &Path) -> Result<bool> {
        self.newest.forget(cell);
        Ok(!self.delete_all(cell).await?.is_empty())
    }
}

/// How long to wait before compare-and-set attempt `attempt` (from 0): short, growing,
/// jittered so that competing writers spread out.
pub(crate) async fn backoff(attempt: u32) {
    if attempt == 0 {
        return;
    }
    let cap = Duration::from_micros(200u64 << attempt.min(8));
    let jitter = (uuid::Uuid::now_v7().as_u128() as u64) % (cap.as_micros() as u64 + 1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// Cloud providers, each behind its cargo feature.
mod cloud {
    use super::*;

    #[allow(unused_variables)]
    fn missing_feature(provider: &str, feature: &str) -> StorageError {
        StorageError::config(format!(
            "object.url names {provider}, but storage-object was built without its \
             `{feature}` feature"
        ))
        .with_backend(BACKEND)
    }

    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    fn client_options(
        config: &ObjectConfig,
    ) -> (object_store::ClientOptions, object_store::RetryConfig) {
        let client = object_store::ClientOptions::new()
            .with_timeout(config.request_timeout())
            .with_connect_timeout(config.connect_timeout());
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: config.retry_timeout().min(Duration::from_secs(5)),
                base: 2.0,
            },
            max_retries: config.max_retries,
            retry_timeout: config.retry_timeout(),
        };
        (client, retry)
    }

    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    fn option_error(key: &str, err: object_store::Error) -> StorageError {
        StorageError::config(format!("object.options.{key}: {err}")).with_backend(BACKEND)
    }

    #[cfg(feature = "aws")]
    pub(super) fn s3(config: &ObjectConfig, bucket: &str, prefix: &str) -> Result<Objects> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let has_credentials = config.options.contains_key("aws_access_key_id")
            || config.options.contains_key("access_key_id");
        let skip_signature = config
            .options
            .get("aws_skip_signature")
            .is_some_and(|v| v == "true");
        if !config.use_environment && !has_credentials && !skip_signature {
            return Err(StorageError::config(
                "object.options has no aws_access_key_id: give credentials in the \
                 configuration, set aws_skip_signature=true, or set use_environment",
            ));
        }
        let mut builder = if config.use_environment {
            AmazonS3Builder::from_env()
        } else {
            AmazonS3Builder::new()
        };
        let (client, retry) = client_options(config);
        // Client options first: setting them resets `allow_http`, which an option below
        // may set.
        builder = builder
            .with_client_options(client)
            .with_retry(retry)
            .with_bucket_name(bucket);
        for (key, value) in &config.options {
            let parsed: AmazonS3ConfigKey = key.parse().map_err(|err| option_error(key, err))?;
            builder = builder.with_config(parsed, value);
        }
        let store = builder.build().map_err(|err| {
            StorageError::config(format!("object.url: {err}")).with_backend(BACKEND)
        })?;
        Ok(Objects {
            store: Arc::new(store),
            mode: CellMode::ETag,
            prefix: prefix.to_owned(),
            provider: "s3",
            local_root: None,
            newest: Default::default(),
            local_walks: Default::default(),
        })
    }

    #[cfg(not(feature = "aws"))]
    pub(super) fn s3(_: &ObjectConfig, _: &str, _: &str) -> Result<Objects> {
        Err(missing_feature("S3", "aws"))
    }

    #[cfg(feature = "gcp")]
    pub(super) fn gcs(config: &ObjectConfig, bucket: &str, prefix: &str) -> Result<Objects> {
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
        let mut builder = if config.use_environment {
            GoogleCloudStorageBuilder::from_env()
        } else {
            GoogleCloudStorageBuilder::new()
        };
        let (client, retry) = client_options(config);
        builder = builder
            .with_client_options(client)
            .with_retry(retry)
            .with_bucket_name(bucket);
        for (key, value) in &config.options {
            let parsed: GoogleConfigKey = key.parse().map_err(|err| option_error(key, err))?;
            builder = builder.with_config(parsed, value);
        }
        let store = builder.build().map_err(|err| {
            StorageError::config(format!("object.url: {err}")).with_backend(BACKEND)
        })?;
        Ok(Objects {
            store: Arc::new(store),
            mode: CellMode::ETag,
            prefix: prefix.to_owned(),
            provider: "gs",
            local_root: None,
            newest: Default::default(),
            local_walks: Default::default(),
        })
    }

    #[cfg(not(feature = "gcp"))]
    pub(super) fn gcs(_: &ObjectConfig, _: &str, _: &str) -> Result<Objects> {
        Err(missing_feature("Google Cloud Storage", "gcp"))
    }

    #[cfg(feature = "azure")]
    pub(super) fn azure(config: &ObjectConfig, container: &str, prefix: &str) -> Result<Objects> {
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        let mut builder = if config.use_environment {
            MicrosoftAzureBuilder::from_env()
        } else {
            MicrosoftAzureBuilder::new()
        };
        let (client, retry) = client_options(config);
        builder = builder
            .with_client_options(client)
            .with_retry(retry)
            .with_container_name(container);
        for (key, value) in &config.options {
            let parsed: AzureConfigKey = key.parse().map_err(|err| option_error(key, err))?;
            builder = builder.with_config(parsed, value);
        }
        let store = builder.build().map_err(|err| {
            StorageError::config(format!("object.url: {err}")).with_backend(BACKEND)
        })?;
        Ok(Objects {
            store: Arc::new(store),
            mode: CellMode::ETag,
            prefix: prefix.to_owned(),
            provider: "az",
            local_root: None,
            newest: Default::default(),
            local_walks: Default::default(),
        })
    }

    #[cfg(not(feature = "azure"))]
    pub(super) fn azure(_: &ObjectConfig, _: &str, _: &str) -> Result<Objects> {
        Err(missing_feature("Azure Blob Storage", "azure"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_processes(root: &std::path::Path) -> (Objects, Objects) {
        let config = ObjectConfig::new(format!("file://{}", root.display()));
        let open = || Objects::open(&config).unwrap();
        let (a, b) = (open(), open());
        assert_eq!(a.mode, CellMode::Versions);
        (a, b)
    }

    async fn read(objects: &Objects, cell: &Path) -> Option<(Vec<u8>, u64)> {
        objects
            .cell_read(cell)
            .await
            .unwrap()
            .map(|(bytes, token)| match token {
                Token::Version(version, _) => (bytes.to_vec(), version),
                Token::ETag(_) => panic!("a versioned cell"),
            })
    }

    async fn write(objects: &Objects, cell: &Path, value: &str) {
        let token = objects
            .cell_read(cell)
            .await
            .unwrap()
            .map(|(_, token)| token);
        assert!(objects
            .cell_write(cell, token.as_ref(), value.as_bytes().to_vec())
            .await
            .unwrap());
    }

    /// A read that probes upward from the version it saw last still finds what another
    /// process wrote since, and a cell deleted and written again from 1 is not mistaken
    /// for the old one.
    #[tokio::test]
    async fn reads_from_the_last_seen_version_see_other_writers() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = two_processes(root.path());
        let cell = Path::from("cells/one");
        for step in 1..=5 {
            write(&a, &cell, &format!("a{step}")).await;
        }
        assert_eq!(read(&b, &cell).await, Some((b"a5".to_vec(), 5)));
        for step in 6..=8 {
            write(&a, &cell, &format!("a{step}")).await;
        }
        assert_eq!(b.newest.get(&cell), Some(5));
        assert_eq!(read(&b, &cell).await, Some((b"a8".to_vec(), 8)));
        assert!(b.cell_delete(&cell).await.unwrap());
        assert_eq!(read(&a, &cell).await, None);
        write(&b, &cell, "again").await;
        assert_eq!(read(&a, &cell).await, Some((b"again".to_vec(), 1)));
        // Written again past the version another process remembers: still the newest.
        let (c, _) = two_processes(root.path());
        assert_eq!(read(&c, &cell).await, Some((b"again".to_vec(), 1)));
        for step in 2..=4 {
            write(&b, &cell, &format!("b{step}")).await;
        }
        assert!(b.cell_delete(&cell).await.unwrap());
        for step in 1..=3 {
            write(&b, &cell, &format!("c{step}")).await;
        }
        assert_eq!(read(&c, &cell).await, Some((b"c3".to_vec(), 3)));
    }
}
