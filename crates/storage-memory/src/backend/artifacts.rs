use async_trait::async_trait;
use storage_core::artifact::{
    check_artifact_size, collect_bounded, sha256_hex, tighter_limit, validate_artifact_address,
    validate_import, validate_save,
};
use storage_core::carried::admit;
use storage_core::validate::{validate_id, validate_limit};
use storage_core::{
    time, Artifact, ArtifactMeta, ArtifactStore, ByteStream, Metadata, NewArtifact, Result,
    Retention,
};

use super::MemoryBackend;
use crate::store::ArtifactVersions;

#[async_trait]
impl ArtifactStore for MemoryBackend {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        let artifact = admit("save_artifact", artifact)?;
        self.op("save_artifact", |data| {
            validate_save(scope, name, &artifact.metadata)?;
            check_artifact_size(artifact.data.len() as u64, self.config.max_artifact_bytes)?;
            // Digest outside any lock: it is the expensive part of a save.
            let sha256 = sha256_hex(&artifact.data);
            let mut scope_entry = data.scopes.entry(scope.to_owned()).or_default();
            let versions = scope_entry.names.entry(name.to_owned()).or_default();
            let meta = ArtifactMeta {
                scope: scope.to_owned(),
                name: name.to_owned(),
                version: versions.next_version,
                content_type: artifact.content_type,
                size: artifact.data.len() as u64,
                sha256,
                metadata: artifact.metadata,
                created_at: time::now(),
            };
            versions.next_version += 1;
            versions.versions.insert(
                meta.version,
                Artifact {
                    meta: meta.clone(),
                    data: artifact.data,
                },
            );
            Ok(meta)
        })
    }

    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>> {
        self.op("get_artifact", |data| {
            validate_artifact_address(scope, name)?;
            Ok(data
                .scopes
                .get(scope)
                .and_then(|s| s.names.get(name).and_then(|v| v.pick(version)).cloned()))
        })
    }

    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>> {
        self.op("get_artifact_meta", |data| {
            validate_artifact_address(scope, name)?;
            Ok(data.scopes.get(scope).and_then(|s| {
                s.names
                    .get(name)
                    .and_then(|v| v.pick(version))
                    .map(|a| a.meta.clone())
            }))
        })
    }

    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        self.op("list_artifacts", |data| {
            validate_id("artifact scope", scope)?;
            Ok(data
                .scopes
                .get(scope)
                .map(|s| s.names.keys().cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        self.op("list_artifact_versions", |data| {
            validate_artifact_address(scope, name)?;
            Ok(data
                .scopes
                .get(scope)
                .and_then(|s| {
                    s.names
                        .get(name)
                        .map(|v| v.versions.values().map(|a| a.meta.clone()).collect())
                })
                .unwrap_or_default())
        })
    }

    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        self.op("delete_artifact", |data| {
            validate_artifact_address(scope, name)?;
            let Some(mut scope_entry) = data.scopes.get_mut(scope) else {
                return Ok(0);
            };
            let Some(versions) = scope_entry.names.get_mut(name) else {
                return Ok(0);
            };
            let removed = match version {
                Some(version) => u64::from(versions.versions.remove(&version).is_some()),
                None => std::mem::take(&mut versions.versions).len() as u64,
            };
            // A name without versions is gone: its numbering starts over.
            if versions.versions.is_empty() {
                scope_entry.names.remove(name);
            }
            Ok(removed)
        })
    }

    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        self.op("clear_artifacts", |data| {
            validate_id("artifact scope", scope)?;
            Ok(data.scopes.remove(scope).map_or(0, |(_, s)| {
                s.names.values().map(|v| v.versions.len() as u64).sum()
            }))
        })
    }

    async fn retain_artifact_versions(&self, retention: Retention) -> Result<u64> {
        self.op("retain_artifact_versions", |data| {
            retention.check()?;
            if retention.is_unbounded() {
                return Ok(0);
            }
            let mut removed = 0;
            for mut scope in data.scopes.iter_mut() {
                for artifact in scope.names.values_mut() {
                    let versions = &mut artifact.versions;
                    let expired = retention.expired_prefix_in(
                        versions.len(),
                        versions.values().map(|version| version.meta.created_at),
                    );
                    if let Some(&oldest_kept) = versions.keys().nth(expired) {
                        *versions = versions.split_off(&oldest_kept);
                        removed += expired as u64;
                    }
                }
            }
            Ok(removed)
        })
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.op("list_artifact_scopes", |data| {
            validate_limit("artifact scope limit", limit)?;
            storage_core::policy::check_after("artifact scope listing cursor", after)?;
            let mut scopes: Vec<String> = data
                .scopes
                .iter()
                .filter(|scope| after.is_none_or(|after| scope.key().as_str() > after))
                .filter(|scope| scope.names.values().any(|v| !v.versions.is_empty()))
                .map(|scope| scope.key().clone())
                .collect();
            scopes.sort_unstable();
            scopes.truncate(limit);
            Ok(scopes)
        })
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let artifact = admit("import_artifact", artifact)?;
        self.op("import_artifact", |data| {
            validate_import(&artifact)?;
            check_artifact_size(artifact.meta.size, self.config.max_artifact_bytes)?;
            let meta = &artifact.meta;
            let mut scope_entry = data.scopes.entry(meta.scope.clone()).or_default();
            let versions = scope_entry.names.entry(meta.name.clone()).or_default();
            if versions.versions.contains_key(&meta.version) {
                return Ok(false);
            }
            versions.next_version = versions.next_version.max(meta.version + 1);
            versions.versions.insert(meta.version, artifact);
            Ok(true)
        })
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
        self.op("save_artifact_stream", |_| {
            validate_save(scope, name, &metadata)
        })?;
        let limit = tighter_limit(max_size, self.config.max_artifact_bytes);
        let data = collect_bounded(content, limit).await.map_err(|err| {
            err.with_backend("memory")
                .with_operation("save_artifact_stream")
        })?;
        let artifact = NewArtifact {
            content_type: content_type.to_owned(),
            data,
            metadata,
        };
        self.save_artifact(scope, name, artifact).await
    }
}

impl ArtifactVersions {
    fn pick(&self, version: Option<u64>) -> Option<&Artifact> {
        match version {
            Some(version) => self.versions.get(&version),
            None => self.versions.values().next_back(),
        }
    }
}
