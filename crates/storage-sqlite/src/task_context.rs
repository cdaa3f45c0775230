//! Task context by scope, with kept versions: `context_heads` holds each scope's current
//! version (the compare-and-set token, and one row per scope for listing scopes);
//! `context_versions` holds every kept version under the key `(scope, version)`.
//!
//! Every write runs in the writer's transaction, which holds SQLite's write lock: no other
//! writer (thread or process) runs in between, so the expectation checked is the one that
//! holds when the version is written, and the head, the new version and the trimming of
//! the old ones commit together. A read is one statement on a reader connection, which
//! sees one committed state: never more versions than a store kept, never a gap.

use rusqlite::OptionalExtension;
use serde_json::Value;
use storage_core::task_context::{
    oldest_kept, validate_get, validate_import, validate_list, validate_store,
};
use storage_core::validate::validate_limit;
use storage_core::{time, wire, ContextScope, ExpectedVersion, StorageError, TaskContext};

use crate::backend::{to_i64, to_u64, SqliteBackend};
use crate::engine::Db;
use crate::error::SqlResult;

const HEAD: &str = "SELECT version FROM \"{ns}.context_heads\" WHERE scope = ?1";

const SET_HEAD: &str = "INSERT INTO \"{ns}.context_heads\" (scope, version) VALUES (?1, ?2) \
     ON CONFLICT (scope) DO UPDATE SET version = excluded.version";

const INSERT_VERSION: &str =
    "INSERT INTO \"{ns}.context_versions\" (scope, version, record) VALUES (?1, ?2, ?3)";

/// A range at the start of the scope's keys: reads only the versions it removes.
const TRIM: &str = "DELETE FROM \"{ns}.context_versions\" WHERE scope = ?1 AND version < ?2";

/// The current version: the last key of the scope's range.
const CURRENT: &str = "SELECT version, record FROM \"{ns}.context_versions\" \
     WHERE scope = ?1 ORDER BY version DESC LIMIT 1";

const AT: &str =
    "SELECT version, record FROM \"{ns}.context_versions\" WHERE scope = ?1 AND version = ?2";

/// Newest first below `before`: a backward scan of the scope's range, `LIMIT n`.
const BELOW: &str = "SELECT version, record FROM \"{ns}.context_versions\" \
     WHERE scope = ?1 AND version < ?2 ORDER BY version DESC LIMIT ?3";

const DELETE_HEAD: &str = "DELETE FROM \"{ns}.context_heads\" WHERE scope = ?1";
const DELETE_VERSIONS: &str = "DELETE FROM \"{ns}.context_versions\" WHERE scope = ?1";

const SCOPES: &str = "SELECT scope FROM \"{ns}.context_heads\" WHERE scope > ?1 \
     ORDER BY scope LIMIT ?2";

/// A stored version as the contract's value. The key columns are authoritative over the
/// copies in the record (which a store writes before it knows its version, and which a
/// release before scopes wrote with `session_id`).
fn decode(scope: &ContextScope, version: i64, record: &[u8]) -> SqlResult<TaskContext> {
    let mut context: TaskContext = wire::decode(record)?;
    context.scope = scope.clone();
    context.version = to_u64(version);
    Ok(context)
}

fn current_version(db: &Db<'_>, key: &str) -> SqlResult<Option<u64>> {
    let version: Option<i64> = db
        .prepare(HEAD)?
        .query_row([key], |row| row.get(0))
        .optional()?;
    Ok(version.map(to_u64))
}

/// Makes `version` the scope's current one and drops the versions below `oldest`;
/// runs in the writer's transaction, so all of it commits or none.
fn put_version(db: &Db<'_>, key: &str, version: u64, record: &[u8], oldest: u64) -> SqlResult<()> {
    let number = to_i64(version);
    db.prepare(SET_HEAD)?.execute((key, number))?;
    db.prepare(INSERT_VERSION)?.execute((key, number, record))?;
    trim(db, key, to_i64(oldest))?;
    Ok(())
}

/// Removes the scope's versions below `oldest`: a store's `keep_versions` trim, and a
/// retention sweep's. How many it removed.
pub(crate) fn trim(db: &Db<'_>, key: &str, oldest: i64) -> SqlResult<u64> {
    Ok(db.prepare(TRIM)?.execute((key, oldest))? as u64)
}

/// Removes a scope's context with every version, in the writer's transaction; whether
/// there was one. Also how a session's removal drops the session's own context.
pub(crate) fn delete_scope(db: &Db<'_>, key: &str) -> SqlResult<bool> {
    let existed = db.prepare(DELETE_HEAD)?.execute([key])? > 0;
    db.prepare(DELETE_VERSIONS)?.execute([key])?;
    Ok(existed)
}

impl SqliteBackend {
    pub(crate) async fn get_context_op(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> SqlResult<Option<TaskContext>> {
        validate_get(&scope, version)?;
        self.engine
            .read(move |db| {
                let key = scope.key();
                let row = match version {
                    None => db.prepare(CURRENT)?.query_row([&key], version_row),
                    Some(version) => db
                        .prepare(AT)?
                        .query_row((&key, to_i64(version)), version_row),
                }
                .optional()?;
                row.map(|(version, record)| decode(&scope, version, &record))
                    .transpose()
            })
            .await
    }

    pub(crate) async fn list_context_versions_op(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> SqlResult<Vec<TaskContext>> {
        validate_list(&scope, limit)?;
        let before = before.map_or(i64::MAX, to_i64);
        let limit = to_i64(limit as u64);
        self.engine
            .read(move |db| {
                let rows: Vec<(i64, Vec<u8>)> = db
                    .prepare(BELOW)?
                    .query_map((&scope.key(), before, limit), version_row)?
                    .collect::<rusqlite::Result<_>>()?;
                rows.iter()
                    .map(|(version, record)| decode(&scope, *version, record))
                    .collect()
            })
            .await
    }

    pub(crate) async fn store_context_op(
        &self,
        scope: ContextScope,
        value: Value,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> SqlResult<TaskContext> {
        validate_store(&scope, &value, keep_versions)?;
        // Encoded before the writer thread sees it, so the writer only writes; the version
        // column fills in the record's copy on read.
        let mut context = TaskContext {
            scope,
            value,
            version: 0,
            updated_at: time::now(),
        };
        let record = wire::encode(&context)?;
        let key = context.scope.key();
        let scope = context.scope.clone();
        context.version = self
            .engine
            .write(move |db| {
                let current = current_version(db, &key)?;
                let version = expected.next_version(&scope, current)?;
                put_version(
                    db,
                    &key,
                    version,
                    &record,
                    oldest_kept(version, keep_versions),
                )?;
                Ok(version)
            })
            .await?;
        Ok(context)
    }

    pub(crate) async fn delete_context_op(&self, scope: ContextScope) -> SqlResult<bool> {
        scope.validate()?;
        let key = scope.key();
        self.engine.write(move |db| delete_scope(db, &key)).await
    }

    pub(crate) async fn import_task_context_op(&self, context: TaskContext) -> SqlResult<bool> {
        validate_import(&context)?;
        let record = wire::encode(&context)?;
        let key = context.scope.key();
        let version = context.version;
        self.engine
            .write(move |db| {
                if current_version(db, &key)?.is_some_and(|current| current >= version) {
                    return Ok(false);
                }
                // An import trims nothing.
                put_version(db, &key, version, &record, 1)?;
                Ok(true)
            })
            .await
    }

    pub(crate) async fn list_context_scopes_op(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> SqlResult<Vec<ContextScope>> {
        validate_limit("context scope limit", limit)?;
        if let Some(after) = &after {
            after.validate()?;
        }
        // Keys are never empty, so "" sorts before every one of them.
        let after = after.map(|scope| scope.key()).unwrap_or_default();
        let limit = to_i64(limit as u64);
        self.engine
            .read(move |db| {
                let keys: Vec<String> = db
                    .prepare(SCOPES)?
                    .query_map((&after, limit), |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                keys.iter().map(|key| scope_of(key)).collect()
            })
            .await
    }
}

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>)> {
    Ok((row.get(0)?, row.get(1)?))
}

/// A stored scope key back as the scope; one this release cannot parse is corrupt data,
/// not bad input.
fn scope_of(key: &str) -> SqlResult<ContextScope> {
    ContextScope::from_key(key).map_err(|err| {
        StorageError::serialization(format!(
            "stored task context scope {key:?} is unreadable: {}",
            err.message()
        ))
        .into()
    })
}
