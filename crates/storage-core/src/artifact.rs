//! Artifacts: named, versioned blobs per scope (for example a pipeline run).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, StorageError};
use crate::json::Metadata;
use crate::time::Timestamp;
use crate::validate::validate_id;

/// What is known about one stored artifact version, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// The scope.
    pub scope: String,
    /// The name within the scope.
    pub name: String,
    /// The version: 0 for the first save of a name, then 1, 2, ...
    pub version: u64,
    /// The MIME type the caller gave.
    pub content_type: String,
    /// Content length in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Free-form metadata.
    pub metadata: Metadata,
    /// When the version was saved.
    pub created_at: Timestamp,
}

/// A stored artifact version with its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// What is known about it.
    pub meta: ArtifactMeta,
    /// The content.
    pub data: Bytes,
}

/// What a caller gives to save an artifact version.
///
/// ```
/// use storage_core::NewArtifact;
///
/// let report = NewArtifact::new("text/markdown", "# Findings\n".as_bytes().to_vec());
/// assert_eq!(report.data.len(), 11);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewArtifact {
    /// The MIME type.
    pub content_type: String,
    /// The content.
    pub data: Bytes,
    /// Free-form metadata.
    pub metadata: Metadata,
}

impl NewArtifact {
    /// New content of `content_type`, without metadata.
    pub fn new(content_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        NewArtifact {
            content_type: content_type.into(),
            data: data.into(),
            metadata: Metadata::new(),
        }
    }
    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Checks an artifact address, before any I/O.
pub fn validate_artifact_address(scope: &str, name: &str) -> Result<()> {
    validate_id("artifact scope", scope)?;
    validate_id("artifact name", name)
}

/// Checks a save, before any I/O: the address, and the metadata against the
/// [input policy](crate::policy).
pub fn validate_save(scope: &str, name: &str, metadata: &Metadata) -> Result<()> {
    validate_artifact_address(scope, name)?;
    crate::policy::check_metadata("artifact metadata", metadata)
}

/// Checks an artifact for [`ArtifactStore::import_artifact`], before any I/O: its address,
/// its metadata, and that size and digest describe its content.
pub fn validate_import(artifact: &Artifact) -> Result<()> {
    let meta = &artifact.meta;
    validate_save(&meta.scope, &meta.name, &meta.metadata)?;
    crate::policy::check_imported_number("imported artifact version", meta.version)?;
    if meta.size != artifact.data.len() as u64 || meta.sha256 != sha256_hex(&artifact.data) {
        return Err(StorageError::invalid_input(format!(
            "imported artifact {:?}/{:?} version {}: size or digest does not match its content",
            meta.scope, meta.name, meta.version
        )));
    }
    Ok(())
}

/// Checks `size` against a configured limit (`None`: no limit), before anything is stored.
pub fn check_artifact_size(size: u64, limit: Option<u64>) -> Result<()> {
    match limit {
        Some(limit) if size > limit => Err(StorageError::invalid_input(format!(
            "artifact of {size} bytes exceeds the configured limit of {limit} bytes"
        ))),
        _ => Ok(()),
    }
}

/// The tighter of two optional size limits (a caller's and a backend's).
///
/// ```
/// use storage_core::artifact::tighter_limit;
///
/// assert_eq!(tighter_limit(Some(10), Some(4)), Some(4));
/// assert_eq!(tighter_limit(None, Some(4)), Some(4));
/// assert_eq!(tighter_limit(None, None), None);
/// ```
pub fn tighter_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A stream of content chunks, for saving and reading large artifacts.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Artifact storage.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Saves a new version of (scope, name) and returns its metadata. The version is one
    /// more than the highest ever saved for the name (0 for the first), so a number is
    /// never reused while the name has any version; deleting every version starts over.
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta>;

    /// A version's content and metadata (`None` for the latest version), or `None`.
    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>>;

    /// A version's metadata without its content, or `None`.
    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>>;

    /// Whether the version (`None`: any version) exists.
    async fn artifact_exists(&self, scope: &str, name: &str, version: Option<u64>) -> Result<bool> {
        Ok(self
            .get_artifact_meta(scope, name, version)
            .await?
            .is_some())
    }

    /// Names with at least one version in the scope, sorted.
    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>>;

    /// Every version of a name, oldest first.
    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>>;

    /// Removes one version (`Some`) or every version (`None`) of a name; returns how many
    /// versions were removed.
    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64>;

    /// Removes every artifact of the scope, and nothing of any other scope; returns how
    /// many versions were removed.
    async fn clear_artifacts(&self, scope: &str) -> Result<u64>;

    /// Applies `retention` to every artifact (the series is one scope and name's versions;
    /// a removed version's content goes with it): see [`crate::retention`] for the rule (an
    /// oldest-first prefix of expired records, never the newest, one atomic step per
    /// series) and the cost. Returns how many versions it removed. `keep_last` of 0 is
    /// `InvalidInput`; a retention without limits removes nothing.
    async fn retain_artifact_versions(&self, retention: crate::Retention) -> Result<u64>;

    /// Scopes with at least one artifact version, sorted, greater than `after`, at most
    /// `limit` (1 or more) of them: how `storectl migrate` finds every artifact. Backends
    /// that cannot enumerate answer `Unsupported`.
    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let _ = (after, limit);
        Err(StorageError::unsupported(
            "this backend cannot list artifact scopes",
        ))
    }

    /// Stores `artifact` at the version its metadata names, with its content type,
    /// metadata and time, for moving data between backends. A version already stored is
    /// left untouched (so importing twice stores once), and the name's next version is
    /// raised past the imported one. The digest and size in the metadata must match the
    /// content (`InvalidInput` before any I/O). Returns whether it was stored. Backends
    /// that cannot answer `Unsupported`.
    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let _ = artifact;
        Err(StorageError::unsupported(
            "this backend cannot import artifacts",
        ))
    }

    /// Saves a new version from a stream of chunks. Backends that can (object storage)
    /// stream it through a multipart upload; the default collects it first, and stops
    /// with `InvalidInput` as soon as the collected size passes `max_size`.
    async fn save_artifact_stream(
        &self,
        scope: &str,
        name: &str,
        content_type: &str,
        metadata: Metadata,
        content: ByteStream,
        max_size: Option<u64>,
    ) -> Result<ArtifactMeta> {
        let metadata = crate::carried::admit("save_artifact_stream", metadata)?;
        validate_save(scope, name, &metadata)?;
        let data = collect_bounded(content, max_size).await?;
        let artifact = NewArtifact {
            content_type: content_type.to_owned(),
            data,
            metadata,
        };
        self.save_artifact(scope, name, artifact).await
    }

    /// A version's metadata and its content as a stream of chunks, or `None`. Backends
    /// that can stream it in ranged reads; the default reads it whole.
    async fn open_artifact_stream(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<(ArtifactMeta, ByteStream)>> {
        Ok(self
            .get_artifact(scope, name, version)
            .await?
            .map(|artifact| {
                let chunks: ByteStream = stream::once(async move { Ok(artifact.data) }).boxed();
                (artifact.meta, chunks)
            }))
    }
}

/// Collects a stream into one buffer, failing with `InvalidInput` once it passes `max_size`.
pub async fn collect_bounded(content: ByteStream, max_size: Option<u64>) -> Result<Bytes> {
    let buffer = content
        .try_fold(Vec::new(), |mut buffer, chunk| async move {
            check_artifact_size((buffer.len() + chunk.len()) as u64, max_size)?;
            buffer.extend_from_slice(&chunk);
            Ok(buffer)
        })
        .await?;
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn collect_bounded_stops_at_the_limit() {
        let chunks = || -> ByteStream {
            stream::iter(vec![
                Ok(Bytes::from_static(b"abcd")),
                Ok(Bytes::from_static(b"efgh")),
            ])
            .boxed()
        };
        assert_eq!(collect_bounded(chunks(), Some(8)).await.unwrap().len(), 8);
        let err = collect_bounded(chunks(), Some(7)).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }
}
