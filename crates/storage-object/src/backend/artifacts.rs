//! Artifacts. A save writes the content to a unique data object first (in parts above the
//! multipart threshold), then creates the version record with `PutMode::Create` at the next
//! free version number: the record is the commit, so a save whose writer dies midway, or
//! that passes the size limit, leaves nothing visible. Deleting one version leaves a
//! tombstone record so its number is not handed out again while the name has versions.
//!
//! Version numbers are dense from 0, so the newest is found without listing: a `latest`
//! hint object, written after each commit, names a recent highest number, and a reader
//! checks forward from it until a number has no record. A stale or lost hint costs a few
//! extra checks, never a wrong answer. Imports may leave gaps (a source's tombstones are
//! not copied), so an import removes the hint and the next reader lists instead.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use storage_core::artifact::{check_artifact_size, validate_artifact_address};
use storage_core::carried::admit;
use storage_core::validate::validate_id;
use storage_core::wire::{self, WireRecord};
use storage_core::{
    time, Artifact, ArtifactMeta, ArtifactStore, ByteStream, Metadata, NewArtifact, Result,
    Retention, StorageError,
};

use super::digest::{digest_of, BackgroundDigest};
use super::{in_order, retention, ObjectBackend};
use crate::error::classify;
use crate::keys::{parse_number, parts_after, take_id};

/// A version record: the metadata and where the content is, or a tombstone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VersionRecord {
    pub(super) meta: Option<ArtifactMeta>,
    pub(super) data: Option<String>,
}

impl WireRecord for VersionRecord {
    const KIND: &'static str = "artifact_version";
}

/// What a save learned about the content it stored.
struct Stored {
    data: Path,
    size: u64,
    sha256: String,
}

#[async_trait]
impl ArtifactStore for ObjectBackend {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        let artifact = admit("save_artifact", artifact)?;
        self.op("save_artifact", async {
            storage_core::artifact::validate_save(scope, name, &artifact.metadata)?;
            check_artifact_size(artifact.data.len() as u64, self.config().max_artifact_bytes)?;
            let data = self.keys().artifact_data(scope, name);
            let size = artifact.data.len() as u64;
            // The version lookup needs nothing from the upload: both at once.
            let (sha256, next) = tokio::try_join!(
                self.put_in_one(&data, vec![artifact.data]),
                self.next_version_number(scope, name)
            )?;
            let stored = Stored { data, size, sha256 };
            self.commit_version(
                scope,
                name,
                &artifact.content_type,
                artifact.metadata,
                stored,
                next,
            )
            .await
        })
        .await
    }

    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>> {
        self.op("get_artifact", async {
            validate_artifact_address(scope, name)?;
            let Some((meta, data)) = self.pick(scope, name, version).await? else {
                return Ok(None);
            };
            // A version deleted between reading its record and its content is gone.
            Ok(self
                .objects()
                .get(&data)
                .await?
                .map(|data| Artifact { meta, data }))
        })
        .await
    }

    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>> {
        self.op("get_artifact_meta", async {
            validate_artifact_address(scope, name)?;
            Ok(self.pick(scope, name, version).await?.map(|(meta, _)| meta))
        })
        .await
    }

    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        self.op("list_artifacts", async {
            validate_id("artifact scope", scope)?;
            let prefix = self.keys().scope(scope);
            let mut names: Vec<String> = self
                .objects()
                .list(&prefix)
                .await?
                .iter()
                .filter_map(|path| {
                    let parts = parts_after(path, &prefix);
                    let (name, used) = take_id(&parts)?;
                    (parts.get(used).map(String::as_str) == Some("versions")).then_some(name)
                })
                .collect();
            names.sort();
            names.dedup();
            Ok(names)
        })
        .await
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.op("list_artifact_scopes", async {
            storage_core::validate::validate_limit("artifact scope limit", limit)?;
            storage_core::policy::check_after("artifact scope listing cursor", after)?;
            // A scope is listed when one of its names has a version record.
            let prefix = self.keys().artifacts();
            self.list_ids_with(&prefix, "versions", after, limit).await
        })
        .await
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let artifact = admit("import_artifact", artifact)?;
        self.op("import_artifact", async {
            storage_core::artifact::validate_import(&artifact)?;
            check_artifact_size(artifact.meta.size, self.config().max_artifact_bytes)?;
            let meta = artifact.meta;
            let hint = self.keys().artifact_latest(&meta.scope, &meta.name);
            let path = self
                .keys()
                .artifact_version(&meta.scope, &meta.name, meta.version);
            if self.objects().get(&path).await?.is_some() {
                return Ok(false);
            }
            let data = self.keys().artifact_data(&meta.scope, &meta.name);
            self.objects()
                .store
                .put(&data, PutPayload::from_bytes(artifact.data))
                .await
                .map_err(classify)?;
            let record = VersionRecord {
                meta: Some(meta),
                data: Some(data.to_string()),
            };
            // The record is the commit: when another writer created it first, this
            // content is not referenced and goes.
            if self.objects().create(&path, wire::encode(&record)?).await? {
                self.objects().delete(&hint).await?;
                Ok(true)
            } else {
                let _ = self.objects().delete(&data).await;
                Ok(false)
            }
        })
        .await
    }

    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        self.op("list_artifact_versions", async {
            validate_artifact_address(scope, name)?;
            let records = self.version_records(scope, name).await?;
            Ok(records
                .into_iter()
                .filter_map(|record| record.meta)
                .collect())
        })
        .await
    }

    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        self.op("delete_artifact", async {
            validate_artifact_address(scope, name)?;
            let removed = match version {
                Some(version) => {
                    let Some(record) = self.read_version(scope, name, version).await? else {
                        return Ok(0);
                    };
                    if !self.tombstone(scope, name, version, record).await? {
                        return Ok(0);
                    }
                    1
                }
                None => {
                    let live = self.live_versions(scope, name).await?;
                    self.objects()
                        .delete_all(&self.keys().artifact(scope, name))
                        .await?;
                    return Ok(live);
                }
            };
            // A name without live versions is gone: its numbering starts over.
            if self.live_versions(scope, name).await? == 0 {
                self.objects()
                    .delete_all(&self.keys().artifact(scope, name))
                    .await?;
            }
            Ok(removed)
        })
        .await
    }

    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        self.op("clear_artifacts", async {
            validate_id("artifact scope", scope)?;
            let prefix = self.keys().scope(scope);
            let records: Vec<Path> = self
                .objects()
                .list(&prefix)
                .await?
                .into_iter()
                .filter(|path| {
                    let parts = parts_after(path, &prefix);
                    take_id(&parts).is_some_and(|(_, used)| {
                        parts.get(used).map(String::as_str) == Some("versions")
                    })
                })
                .collect();
            let read = in_order(16, records.iter().map(|path| self.objects().get(path))).await?;
            let mut live = 0;
            for bytes in read.into_iter().flatten() {
                if wire::decode::<VersionRecord>(&bytes)?.meta.is_some() {
                    live += 1;
                }
            }
            self.objects().delete_all(&prefix).await?;
            Ok(live)
        })
        .await
    }

    async fn retain_artifact_versions(&self, retention: Retention) -> Result<u64> {
        self.op("retain_artifact_versions", async {
            if !retention::admits(&retention)? {
                return Ok(0);
            }
            // Scopes and names from delimiter listings (see `ids_below`): their cost
            // follows the names, not the versions and contents below them. A name with
            // no version record left trims nothing.
            let scopes = &self.ids_below(&self.keys().artifacts()).await?;
            retention::sweep(
                "artifact_versions",
                |after: Option<String>, limit| async move {
                    Ok(scopes
                        .iter()
                        .filter(|id| after.as_ref().is_none_or(|after| *id > after))
                        .take(limit)
                        .cloned()
                        .collect())
                },
                |scope| async move {
                    let mut removed = 0;
                    for name in self.ids_below(&self.keys().scope(&scope)).await? {
                        removed += self.retain_artifact(&scope, &name, &retention).await?;
                    }
                    Ok(removed)
                },
            )
            .await
        })
        .await
    }

    async fn save_artifact_stream(
        &self,
        scope: &str,
        name: &str,
        content_type: &str,
        metadata: Metadata,
        content: ByteStream,
        max_size: Option<u64>,
    ) -> Result<ArtifactMeta> {
        let metadata = admit("save_artifact_stream", metadata)?;
        self.op("save_artifact_stream", async {
            storage_core::artifact::validate_save(scope, name, &metadata)?;
            let limit = match (max_size, self.config().max_artifact_bytes) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let (stored, next) = tokio::try_join!(
                self.store_stream(scope, name, content, limit),
                self.next_version_number(scope, name)
            )?;
            self.commit_version(scope, name, content_type, metadata, stored, next)
                .await
        })
        .await
    }

    async fn open_artifact_stream(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<(ArtifactMeta, ByteStream)>> {
        self.op("open_artifact_stream", async {
            validate_artifact_address(scope, name)?;
            let Some((meta, data)) = self.pick(scope, name, version).await? else {
                return Ok(None);
            };
            let part = self.config().part_size_bytes;
            let ranges: Vec<std::ops::Range<u64>> = (0..meta.size.div_ceil(part).max(1))
                .map(|i| i * part..((i + 1) * part).min(meta.size))
                .collect();
            let store = self.objects().store.clone();
            let body: ByteStream = if meta.size == 0 {
                futures::stream::empty().boxed()
            } else {
                // Ranged reads, a few in flight: memory stays at a few parts whatever the size.
                futures::stream::iter(ranges)
                    .map(move |range| {
                        let store = store.clone();
                        let data = data.clone();
                        async move {
                            store
                                .get_range(&data, range)
                                .await
                                .map_err(|err| classify(err).with_operation("open_artifact_stream"))
                        }
                    })
                    .buffered(self.config().transfer_concurrency)
                    .boxed()
            };
            Ok(Some((meta, body)))
        })
        .await
    }
}

impl ObjectBackend {
    /// Stores the content of a stream: in one put below the multipart threshold, in parts
    /// above it, where the digest is computed on a thread beside the upload. Passing `limit`
    /// aborts the upload: nothing is committed.
    async fn store_stream(
        &self,
        scope: &str,
        name: &str,
        mut content: ByteStream,
        limit: Option<u64>,
    ) -> Result<Stored> {
        let config = self.config();
        let threshold = config.multipart_threshold_bytes as usize;
        let data = self.keys().artifact_data(scope, name);
        let mut size = 0u64;
        // Below the threshold: content held in memory, hashed when it is put.
        let mut head: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        // Above it: the upload and its digest, both running.
        let mut upload: Option<(WriteMultipart, BackgroundDigest)> = None;
        let result: Result<()> = async {
            while let Some(chunk) = content.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                check_artifact_size(size, limit)?;
                match upload.as_mut() {
                    Some((writer, digest)) => {
                        digest.update(chunk.clone()).await?;
                        writer
                            .wait_for_capacity(config.transfer_concurrency)
                            .await
                            .map_err(classify)?;
                        writer.put(chunk);
                    }
                    None => {
                        buffered += chunk.len();
                        head.push(chunk);
                        if buffered >= threshold {
                            // Hashing starts before the upload exists, so a failure here
                            // leaves no multipart upload to abort.
                            let digest = BackgroundDigest::start();
                            for chunk in &head {
                                digest.update(chunk.clone()).await?;
                            }
                            let parts = self
                                .objects()
                                .store
                                .put_multipart(&data)
                                .await
                                .map_err(classify)?;
                            let mut writer = WriteMultipart::new_with_chunk_size(
                                parts,
                                config.part_size_bytes as usize,
                            );
                            for chunk in head.drain(..) {
                                writer.put(chunk);
                            }
                            upload = Some((writer, digest));
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        let sha256 = match (result, upload) {
            (Ok(()), Some((writer, digest))) => {
                writer.finish().await.map_err(classify)?;
                digest.finish().await?
            }
            (Ok(()), None) => self.put_in_one(&data, head).await?,
            (Err(err), Some((writer, _))) => {
                let _ = writer.abort().await;
                return Err(err);
            }
            (Err(err), None) => return Err(err),
        };
        Ok(Stored { data, size, sha256 })
    }

    /// Puts content held in memory as one object, its digest computed beside the put;
    /// returns the digest.
    async fn put_in_one(&self, data: &Path, chunks: Vec<Bytes>) -> Result<String> {
        let digest = digest_of(chunks.clone());
        let payload: PutPayload = chunks.into_iter().collect();
        let put = async {
            self.objects()
                .store
                .put(data, payload)
                .await
                .map_err(classify)
        };
        Ok(tokio::try_join!(digest, put)?.0)
    }

    /// Creates the version record for stored content at `next` or, when other saves took
    /// it, the first free number after: the commit point of a save.
    async fn commit_version(
        &self,
        scope: &str,
        name: &str,
        content_type: &str,
        metadata: Metadata,
        stored: Stored,
        mut next: u64,
    ) -> Result<ArtifactMeta> {
        for _ in 0..super::CAS_ATTEMPTS {
            let meta = ArtifactMeta {
                scope: scope.to_owned(),
                name: name.to_owned(),
                version: next,
                content_type: content_type.to_owned(),
                size: stored.size,
                sha256: stored.sha256.clone(),
                metadata: metadata.clone(),
                created_at: time::now(),
            };
            let record = VersionRecord {
                meta: Some(meta.clone()),
                data: Some(stored.data.to_string()),
            };
            let path = self.keys().artifact_version(scope, name, next);
            if self.objects().create(&path, wire::encode(&record)?).await? {
                // The version is committed; the hint only saves later readers a listing,
                // so failing to write it must not fail the save.
                let hint = self.keys().artifact_latest(scope, name);
                let _ = self
                    .objects()
                    .put(&hint, next.to_string().into_bytes())
                    .await;
                return Ok(meta);
            }
            next += 1;
        }
        let _ = self.objects().delete(&stored.data).await;
        Err(StorageError::backend("too many concurrent saves of one artifact").with_temporary(true))
    }

    /// Replaces the live version `version` (its record as read) by a tombstone and
    /// deletes its content; `false` when the record is a tombstone already.
    pub(super) async fn tombstone(
        &self,
        scope: &str,
        name: &str,
        version: u64,
        record: VersionRecord,
    ) -> Result<bool> {
        let Some(data) = record.data.filter(|_| record.meta.is_some()) else {
            return Ok(false);
        };
        let tombstone = VersionRecord {
            meta: None,
            data: None,
        };
        let path = self.keys().artifact_version(scope, name, version);
        self.objects().put(&path, wire::encode(&tombstone)?).await?;
        self.objects().delete(&Path::from(data)).await?;
        Ok(true)
    }

    /// The highest version number with a record (live or tombstone), if any: from the
    /// hint, checked forward, or from a listing when there is no hint.
    pub(super) async fn last_version_number(&self, scope: &str, name: &str) -> Result<Option<u64>> {
        let hint = self
            .objects()
            .get(&self.keys().artifact_latest(scope, name))
            .await?
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u64>().ok());
        let Some(mut last) = hint else {
            return Ok(self.version_numbers(scope, name).await?.last().copied());
        };
        while self
            .objects()
            .exists(&self.keys().artifact_version(scope, name, last + 1))
            .await?
        {
            last += 1;
        }
        Ok(Some(last))
    }

    /// The number the next save of this name tries first.
    async fn next_version_number(&self, scope: &str, name: &str) -> Result<u64> {
        Ok(self
            .last_version_number(scope, name)
            .await?
            .map_or(0, |v| v + 1))
    }

    /// The version numbers with a record (live or tombstone), ascending.
    async fn version_numbers(&self, scope: &str, name: &str) -> Result<Vec<u64>> {
        let mut versions: Vec<u64> = self
            .objects()
            .list(&self.keys().artifact_versions(scope, name))
            .await?
            .iter()
            .filter_map(|path| path.filename().and_then(parse_number))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The content paths the version records of a name reference (tombstones reference
    /// none), read after the caller listed the content it means to collect.
    pub(super) async fn referenced_data(
        &self,
        scope: &str,
        name: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let records = self.version_records(scope, name).await?;
        Ok(records
            .into_iter()
            .filter_map(|record| record.data)
            .collect())
    }

    /// Every stored version record of a name, oldest first, read 16 at a time.
    async fn version_records(&self, scope: &str, name: &str) -> Result<Vec<VersionRecord>> {
        let versions = self.version_numbers(scope, name).await?;
        let records = in_order(
            16,
            versions.iter().map(|&v| self.read_version(scope, name, v)),
        )
        .await?;
        Ok(records.into_iter().flatten().collect())
    }

    pub(super) async fn read_version(
        &self,
        scope: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<VersionRecord>> {
        let path = self.keys().artifact_version(scope, name, version);
        self.objects()
            .get(&path)
            .await?
            .map(|bytes| wire::decode(&bytes))
            .transpose()
    }

    async fn live_versions(&self, scope: &str, name: &str) -> Result<u64> {
        let versions = self.version_numbers(scope, name).await?;
        let records = in_order(
            16,
            versions.iter().map(|&v| self.read_version(scope, name, v)),
        )
        .await?;
        Ok(records
            .iter()
            .flatten()
            .filter(|record| record.meta.is_some())
            .count() as u64)
    }

    /// The metadata and content path of a live version (`None`: the newest live one).
    async fn pick(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<(ArtifactMeta, Path)>> {
        let live = |record: Option<VersionRecord>| {
            record.and_then(|r| Some((r.meta?, Path::from(r.data?))))
        };
        match version {
            Some(version) => Ok(live(self.read_version(scope, name, version).await?)),
            None => {
                let Some(last) = self.last_version_number(scope, name).await? else {
                    return Ok(None);
                };
                // Down past tombstones (and an import's gaps) to the newest live version.
                for version in (0..=last).rev() {
                    if let Some(found) = live(self.read_version(scope, name, version).await?) {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use storage_core::{ArtifactStore, NewArtifact};

    use crate::{ObjectBackend, ObjectConfig};

    async fn latest(backend: &ObjectBackend) -> u64 {
        let meta = backend.get_artifact_meta("scope", "name", None).await;
        meta.unwrap().expect("a live version").version
    }

    async fn save(backend: &ObjectBackend) -> u64 {
        let artifact = NewArtifact::new("text/plain", "content");
        backend
            .save_artifact("scope", "name", artifact)
            .await
            .unwrap()
            .version
    }

    /// The hint is only a starting point: stale, missing or unreadable, the newest version
    /// and the next number come out the same.
    #[tokio::test]
    async fn a_stale_missing_or_garbled_hint_gives_the_same_versions() {
        let backend = ObjectBackend::new(ObjectConfig::new("memory://")).unwrap();
        for expected in 0..3 {
            assert_eq!(save(&backend).await, expected);
        }
        let hint = backend.keys().artifact_latest("scope", "name");
        backend.objects().put(&hint, b"0".to_vec()).await.unwrap();
        assert_eq!(latest(&backend).await, 2);
        assert_eq!(save(&backend).await, 3);
        backend.objects().delete(&hint).await.unwrap();
        assert_eq!(latest(&backend).await, 3);
        assert_eq!(save(&backend).await, 4);
        backend.objects().put(&hint, b"x".to_vec()).await.unwrap();
        assert_eq!(latest(&backend).await, 4);
        assert_eq!(save(&backend).await, 5);
        // Tombstones above the last live version are walked past.
        backend
            .delete_artifact("scope", "name", Some(5))
            .await
            .unwrap();
        assert_eq!(latest(&backend).await, 4);
        assert_eq!(save(&backend).await, 6);
    }
}
