//! Artifacts: one row per version with its metadata and content, and a counter row per name
//! that hands out version numbers and exists exactly while the name has a version.
//!
//! Saving takes the next number from the counter in the same statement that inserts the
//! version (the counter's row lock orders concurrent saves). Deleting locks the counter
//! first, so a save cannot slip in between removing the last version and removing the
//! counter.

use storage_core::artifact::{check_artifact_size, sha256_hex, validate_artifact_address};
use storage_core::validate::validate_id;
use storage_core::{time, wire, Artifact, ArtifactMeta, Bytes, NewArtifact};
use tokio_postgres::Row;

use crate::backend::{to_u64, PostgresBackend};
use crate::error::PgResult;
use crate::sql::Sql;

const SAVE: &str = "\
WITH counter AS (
    INSERT INTO artifact_counters AS a (scope, name, next_version, stored)
    VALUES ($1, $2, 1, 1)
    ON CONFLICT (scope, name)
    DO UPDATE SET next_version = a.next_version + 1, stored = a.stored + 1
    RETURNING a.next_version - 1 AS version
)
INSERT INTO artifacts (scope, name, version, meta, data)
SELECT $1, $2, version, $3, $4 FROM counter RETURNING version";

const GET_LATEST: &str = "SELECT version, meta, data FROM artifacts \
     WHERE scope = $1 AND name = $2 ORDER BY version DESC LIMIT 1";
const GET_VERSION: &str = "SELECT version, meta, data FROM artifacts \
     WHERE scope = $1 AND name = $2 AND version = $3";
const META_LATEST: &str = "SELECT version, meta FROM artifacts \
     WHERE scope = $1 AND name = $2 ORDER BY version DESC LIMIT 1";
const META_VERSION: &str = "SELECT version, meta FROM artifacts \
     WHERE scope = $1 AND name = $2 AND version = $3";
const LIST_NAMES: &str = "SELECT name FROM artifact_counters WHERE scope = $1 ORDER BY name";
const LIST_VERSIONS: &str = "SELECT version, meta FROM artifacts \
     WHERE scope = $1 AND name = $2 ORDER BY version";

const LOCK_NAME: &str = "SELECT 1 FROM artifact_counters WHERE scope = $1 AND name = $2 FOR UPDATE";
const DELETE_ALL: &str = "DELETE FROM artifacts WHERE scope = $1 AND name = $2";
/// The versions `$3..=$4` of a name, content included: one version for `delete_artifact`,
/// an oldest-first prefix for retention.
const DELETE_RANGE: &str = "DELETE FROM artifacts \
     WHERE scope = $1 AND name = $2 AND version BETWEEN $3 AND $4";
const DROP_COUNTER_IF_EMPTY: &str = "DELETE FROM artifact_counters WHERE scope = $1 AND name = $2 \
     AND NOT EXISTS (SELECT 1 FROM artifacts WHERE scope = $1 AND name = $2)";

const LOCK_SCOPE: &str = "SELECT 1 FROM artifact_counters WHERE scope = $1 FOR UPDATE";
const CLEAR_VERSIONS: &str = "DELETE FROM artifacts WHERE scope = $1";
const CLEAR_COUNTERS: &str = "DELETE FROM artifact_counters WHERE scope = $1";

/// Stored metadata; the row's address and version are authoritative over the record's.
fn decode_meta(scope: &str, name: &str, row: &Row) -> PgResult<ArtifactMeta> {
    let mut meta: ArtifactMeta = wire::decode(row.get::<_, &[u8]>(1))?;
    meta.scope = scope.to_owned();
    meta.name = name.to_owned();
    meta.version = to_u64(row.get(0));
    Ok(meta)
}

/// A requested version as `bigint`; `None` when it cannot exist.
fn stored_version(version: u64) -> Option<i64> {
    i64::try_from(version).ok()
}

/// Locks a name's counter, the row every save of the name updates; whether the name has
/// a version.
pub(crate) async fn lock_name(tx: &impl Sql, scope: &str, name: &str) -> PgResult<bool> {
    Ok(tx.opt(LOCK_NAME, &[&scope, &name]).await?.is_some())
}

/// Removes the versions `low..=high` of a name with their content (its counter stays),
/// under the name's lock; how many it removed.
pub(crate) async fn delete_versions(
    tx: &impl Sql,
    scope: &str,
    name: &str,
    low: i64,
    high: i64,
) -> PgResult<u64> {
    tx.exec(DELETE_RANGE, &[&scope, &name, &low, &high]).await
}

impl PostgresBackend {
    pub(crate) async fn save_artifact_op(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> PgResult<ArtifactMeta> {
        storage_core::artifact::validate_save(scope, name, &artifact.metadata)?;
        let size = artifact.data.len() as u64;
        check_artifact_size(size, Some(self.config.artifact_limit()))?;
        let mut meta = ArtifactMeta {
            scope: scope.to_owned(),
            name: name.to_owned(),
            version: 0,
            content_type: artifact.content_type,
            size,
            sha256: sha256_hex(&artifact.data),
            metadata: artifact.metadata,
            created_at: time::now(),
        };
        let record = wire::encode(&meta)?;
        let data: &[u8] = &artifact.data;
        let client = self.client().await?;
        let row = client.one(SAVE, &[&scope, &name, &record, &data]).await?;
        meta.version = to_u64(row.get(0));
        Ok(meta)
    }

    pub(crate) async fn get_artifact_op(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> PgResult<Option<Artifact>> {
        validate_artifact_address(scope, name)?;
        let client = self.client().await?;
        let row = match version {
            None => client.opt(GET_LATEST, &[&scope, &name]).await?,
            Some(version) => match stored_version(version) {
                Some(version) => client.opt(GET_VERSION, &[&scope, &name, &version]).await?,
                None => None,
            },
        };
        row.map(|row| {
            Ok(Artifact {
                meta: decode_meta(scope, name, &row)?,
                data: Bytes::copy_from_slice(row.get::<_, &[u8]>(2)),
            })
        })
        .transpose()
    }

    pub(crate) async fn get_artifact_meta_op(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> PgResult<Option<ArtifactMeta>> {
        validate_artifact_address(scope, name)?;
        let client = self.client().await?;
        let row = match version {
            None => client.opt(META_LATEST, &[&scope, &name]).await?,
            Some(version) => match stored_version(version) {
                Some(version) => client.opt(META_VERSION, &[&scope, &name, &version]).await?,
                None => None,
            },
        };
        row.map(|row| decode_meta(scope, name, &row)).transpose()
    }

    pub(crate) async fn list_artifacts_op(&self, scope: &str) -> PgResult<Vec<String>> {
        validate_id("artifact scope", scope)?;
        let client = self.client().await?;
        let rows = client.rows(LIST_NAMES, &[&scope]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    pub(crate) async fn list_artifact_versions_op(
        &self,
        scope: &str,
        name: &str,
    ) -> PgResult<Vec<ArtifactMeta>> {
        validate_artifact_address(scope, name)?;
        let client = self.client().await?;
        let rows = client.rows(LIST_VERSIONS, &[&scope, &name]).await?;
        rows.iter()
            .map(|row| decode_meta(scope, name, row))
            .collect()
    }

    pub(crate) async fn delete_artifact_op(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> PgResult<u64> {
        validate_artifact_address(scope, name)?;
        let version = match version {
            None => None,
            Some(version) => match stored_version(version) {
                Some(version) => Some(version),
                None => return Ok(0),
            },
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !lock_name(&tx, scope, name).await? {
            return Ok(0);
        }
        let removed = match version {
            None => tx.exec(DELETE_ALL, &[&scope, &name]).await?,
            Some(version) => delete_versions(&tx, scope, name, version, version).await?,
        };
        tx.exec(DROP_COUNTER_IF_EMPTY, &[&scope, &name]).await?;
        tx.commit().await?;
        Ok(removed)
    }

    pub(crate) async fn clear_artifacts_op(&self, scope: &str) -> PgResult<u64> {
        validate_id("artifact scope", scope)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.rows(LOCK_SCOPE, &[&scope]).await?;
        let removed = tx.exec(CLEAR_VERSIONS, &[&scope]).await?;
        tx.exec(CLEAR_COUNTERS, &[&scope]).await?;
        tx.commit().await?;
        Ok(removed)
    }
}
