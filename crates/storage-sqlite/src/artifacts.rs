//! Artifacts: one row per version with its metadata and content, and a counter row per name
//! that hands out version numbers and exists exactly while the name has a version.
//!
//! Every change runs in the writer's transaction (SQLite's write lock), so a save cannot
//! slip in between removing a name's last version and removing its counter.

use rusqlite::OptionalExtension;
use storage_core::artifact::{check_artifact_size, sha256_hex, validate_artifact_address};
use storage_core::validate::validate_id;
use storage_core::{time, wire, Artifact, ArtifactMeta, Bytes, NewArtifact};

use crate::backend::{to_u64, SqliteBackend};
use crate::engine::Db;
use crate::error::SqlResult;

const TAKE_VERSION: &str =
    "INSERT INTO \"{ns}.artifact_counters\" AS a (scope, name, next_version) \
     VALUES (?1, ?2, 1) ON CONFLICT (scope, name) \
     DO UPDATE SET next_version = a.next_version + 1 RETURNING next_version - 1";
const INSERT: &str = "INSERT INTO \"{ns}.artifacts\" (scope, name, version, meta, data) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

const GET_LATEST: &str = "SELECT version, meta, data FROM \"{ns}.artifacts\" \
     WHERE scope = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1";
const GET_VERSION: &str = "SELECT version, meta, data FROM \"{ns}.artifacts\" \
     WHERE scope = ?1 AND name = ?2 AND version = ?3";
const META_LATEST: &str = "SELECT version, meta FROM \"{ns}.artifacts\" \
     WHERE scope = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1";
const META_VERSION: &str = "SELECT version, meta FROM \"{ns}.artifacts\" \
     WHERE scope = ?1 AND name = ?2 AND version = ?3";
const LIST_NAMES: &str =
    "SELECT name FROM \"{ns}.artifact_counters\" WHERE scope = ?1 ORDER BY name";
const LIST_VERSIONS: &str = "SELECT version, meta FROM \"{ns}.artifacts\" \
     WHERE scope = ?1 AND name = ?2 ORDER BY version";

const HAS_NAME: &str = "SELECT 1 FROM \"{ns}.artifact_counters\" WHERE scope = ?1 AND name = ?2";
const DELETE_ALL: &str = "DELETE FROM \"{ns}.artifacts\" WHERE scope = ?1 AND name = ?2";
/// The versions `?3..=?4` of a name, content included: one version for `delete_artifact`,
/// an oldest-first prefix for retention.
const DELETE_RANGE: &str = "DELETE FROM \"{ns}.artifacts\" \
     WHERE scope = ?1 AND name = ?2 AND version BETWEEN ?3 AND ?4";
const DROP_COUNTER_IF_EMPTY: &str = "DELETE FROM \"{ns}.artifact_counters\" \
     WHERE scope = ?1 AND name = ?2 \
     AND NOT EXISTS (SELECT 1 FROM \"{ns}.artifacts\" WHERE scope = ?1 AND name = ?2)";

const CLEAR_VERSIONS: &str = "DELETE FROM \"{ns}.artifacts\" WHERE scope = ?1";
const CLEAR_COUNTERS: &str = "DELETE FROM \"{ns}.artifact_counters\" WHERE scope = ?1";

/// Stored metadata; the row's address and version are authoritative over the record's.
fn decode_meta(scope: &str, name: &str, version: i64, meta: &[u8]) -> SqlResult<ArtifactMeta> {
    let mut decoded: ArtifactMeta = wire::decode(meta)?;
    decoded.scope = scope.to_owned();
    decoded.name = name.to_owned();
    decoded.version = to_u64(version);
    Ok(decoded)
}

/// A requested version as SQLite's integer; `None` when it cannot exist.
fn stored_version(version: u64) -> Option<i64> {
    i64::try_from(version).ok()
}

/// The version row (with its content when `with_data`) of a name, latest or exact.
fn select(
    db: &Db<'_>,
    scope: &str,
    name: &str,
    version: Option<i64>,
    with_data: bool,
) -> SqlResult<Option<(ArtifactMeta, Option<Vec<u8>>)>> {
    let read = |row: &rusqlite::Row<'_>| {
        let data = if with_data { Some(row.get(2)?) } else { None };
        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, data))
    };
    let row = match (version, with_data) {
        (None, true) => db.prepare(GET_LATEST)?.query_row((scope, name), read),
        (None, false) => db.prepare(META_LATEST)?.query_row((scope, name), read),
        (Some(v), true) => db.prepare(GET_VERSION)?.query_row((scope, name, v), read),
        (Some(v), false) => db.prepare(META_VERSION)?.query_row((scope, name, v), read),
    }
    .optional()?;
    row.map(|(version, meta, data)| Ok((decode_meta(scope, name, version, &meta)?, data)))
        .transpose()
}

/// Removes the versions `low..=high` of a name with their content (its counter stays);
/// how many it removed.
pub(crate) fn delete_versions(
    db: &Db<'_>,
    scope: &str,
    name: &str,
    low: i64,
    high: i64,
) -> SqlResult<u64> {
    Ok(db
        .prepare(DELETE_RANGE)?
        .execute((scope, name, low, high))? as u64)
}

impl SqliteBackend {
    pub(crate) async fn save_artifact_op(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> SqlResult<ArtifactMeta> {
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
        let (scope, name, data) = (meta.scope.clone(), meta.name.clone(), artifact.data);
        let version = self
            .engine
            .write(move |db| {
                let version: i64 = db
                    .prepare(TAKE_VERSION)?
                    .query_row((&scope, &name), |row| row.get(0))?;
                db.prepare(INSERT)?
                    .execute((&scope, &name, version, record, &data[..]))?;
                Ok(version)
            })
            .await?;
        meta.version = to_u64(version);
        Ok(meta)
    }

    pub(crate) async fn get_artifact_op(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> SqlResult<Option<Artifact>> {
        validate_artifact_address(scope, name)?;
        let version = match version.map(stored_version) {
            Some(None) => return Ok(None),
            other => other.flatten(),
        };
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.engine
            .read(move |db| {
                Ok(
                    select(db, &scope, &name, version, true)?.map(|(meta, data)| Artifact {
                        meta,
                        data: Bytes::from(data.unwrap_or_default()),
                    }),
                )
            })
            .await
    }

    pub(crate) async fn get_artifact_meta_op(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> SqlResult<Option<ArtifactMeta>> {
        validate_artifact_address(scope, name)?;
        let version = match version.map(stored_version) {
            Some(None) => return Ok(None),
            other => other.flatten(),
        };
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.engine
            .read(move |db| Ok(select(db, &scope, &name, version, false)?.map(|(meta, _)| meta)))
            .await
    }

    pub(crate) async fn list_artifacts_op(&self, scope: &str) -> SqlResult<Vec<String>> {
        validate_id("artifact scope", scope)?;
        let scope = scope.to_owned();
        self.engine
            .read(move |db| {
                Ok(db
                    .prepare(LIST_NAMES)?
                    .query_map([&scope], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    pub(crate) async fn list_artifact_versions_op(
        &self,
        scope: &str,
        name: &str,
    ) -> SqlResult<Vec<ArtifactMeta>> {
        validate_artifact_address(scope, name)?;
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.engine
            .read(move |db| {
                let mut statement = db.prepare(LIST_VERSIONS)?;
                let mut rows = statement.query((&scope, &name))?;
                let mut metas = Vec::new();
                while let Some(row) = rows.next()? {
                    let meta = row.get_ref(1)?.as_blob()?;
                    metas.push(decode_meta(&scope, &name, row.get(0)?, meta)?);
                }
                Ok(metas)
            })
            .await
    }

    pub(crate) async fn delete_artifact_op(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> SqlResult<u64> {
        validate_artifact_address(scope, name)?;
        let version = match version.map(stored_version) {
            Some(None) => return Ok(0),
            other => other.flatten(),
        };
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.engine
            .write(move |db| {
                let known = db
                    .prepare(HAS_NAME)?
                    .query_row((&scope, &name), |_| Ok(()))
                    .optional()?;
                if known.is_none() {
                    return Ok(0);
                }
                let removed = match version {
                    None => db.prepare(DELETE_ALL)?.execute((&scope, &name))?,
                    Some(v) => delete_versions(db, &scope, &name, v, v)? as usize,
                };
                db.prepare(DROP_COUNTER_IF_EMPTY)?
                    .execute((&scope, &name))?;
                Ok(removed as u64)
            })
            .await
    }

    pub(crate) async fn clear_artifacts_op(&self, scope: &str) -> SqlResult<u64> {
        validate_id("artifact scope", scope)?;
        let scope = scope.to_owned();
        self.engine
            .write(move |db| {
                let removed = db.prepare(CLEAR_VERSIONS)?.execute([&scope])?;
                db.prepare(CLEAR_COUNTERS)?.execute([&scope])?;
                Ok(removed as u64)
            })
            .await
    }
}
