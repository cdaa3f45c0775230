//! Task context by scope, with kept versions: `context_heads` holds each scope's current
//! version (the compare-and-set token, and the row lock that orders writers of a scope);
//! `context_versions` holds every kept version under the key `(scope, version)`.
//!
//! A write is a transaction of two statements. The first checks the expectation and moves
//! the head in one statement whose row lock makes it atomic (`Any` an upsert incrementing
//! the version, `Absent` an insert doing nothing on conflict, `Exactly(v)` an update guarded
//! by `version = v`); no row back means the expectation did not hold, and nothing changed.
//! The second inserts the new version and trims the old ones. It must be a statement of its
//! own: under READ COMMITTED a statement sees the rows committed before it started, and only
//! one that starts after the head lock is held sees every version the writers before it
//! committed (a trim in the first statement would miss them and keep too many). Writers of
//! one scope thus run one after another; readers read one statement's snapshot, in which
//! the head, the new version and the trim are all there or none is.

use serde_json::Value;
use storage_core::task_context::{
    oldest_kept, validate_get, validate_import, validate_list, validate_store,
};
use storage_core::validate::validate_limit;
use storage_core::{time, wire, ContextScope, ExpectedVersion, StorageError, TaskContext};
use tokio_postgres::Row;

use crate::backend::{to_i64, to_u64, PostgresBackend};
use crate::error::PgResult;
use crate::sql::Sql;

const HEAD: &str = "SELECT version FROM context_heads WHERE scope = $1";

const STORE_ANY: &str = "INSERT INTO context_heads AS h (scope, version) VALUES ($1, 1) \
     ON CONFLICT (scope) DO UPDATE SET version = h.version + 1 RETURNING version";

const STORE_ABSENT: &str = "INSERT INTO context_heads (scope, version) VALUES ($1, 1) \
     ON CONFLICT (scope) DO NOTHING RETURNING version";

const STORE_EXACTLY: &str = "UPDATE context_heads SET version = version + 1 \
     WHERE scope = $1 AND version = $2 RETURNING version";

/// Moves the head to an imported version only if it is newer than the current one.
const IMPORT_HEAD: &str = "INSERT INTO context_heads AS h (scope, version) VALUES ($1, $2) \
     ON CONFLICT (scope) DO UPDATE SET version = EXCLUDED.version \
     WHERE h.version < EXCLUDED.version RETURNING version";

/// The new version, and the trim: a range at the start of the scope's keys, reading only
/// the versions it removes.
const PUT_VERSION: &str = "WITH trimmed AS (\
     DELETE FROM context_versions WHERE scope = $1 AND version < $3) \
     INSERT INTO context_versions (scope, version, record) VALUES ($1, $2, $4)";

/// A retention sweep's trim, as [`PUT_VERSION`]'s: a range at the start of the scope's
/// keys.
const TRIM: &str = "DELETE FROM context_versions WHERE scope = $1 AND version < $2";

/// Locks the scope's head, the row every store of the scope moves first.
const LOCK_HEAD: &str = "SELECT 1 FROM context_heads WHERE scope = $1 FOR UPDATE";

/// The current version: the last key of the scope's range.
const CURRENT: &str = "SELECT version, record FROM context_versions WHERE scope = $1 \
     ORDER BY version DESC LIMIT 1";

const AT: &str = "SELECT version, record FROM context_versions WHERE scope = $1 AND version = $2";

/// Newest first below `before`: a backward scan of the scope's range, `LIMIT n`.
const BELOW: &str = "SELECT version, record FROM context_versions \
     WHERE scope = $1 AND version < $2 ORDER BY version DESC LIMIT $3";

const DELETE_HEAD: &str = "DELETE FROM context_heads WHERE scope = $1";

/// Every version of the given scopes, once their heads are deleted (and locked) by the
/// same transaction.
pub(crate) const DELETE_VERSIONS: &str =
    "DELETE FROM context_versions WHERE scope = ANY($1::text[])";

const SCOPES: &str = "SELECT scope FROM context_heads WHERE scope > $1 ORDER BY scope LIMIT $2";

/// A stored version as the contract's value. The key columns are authoritative over the
/// copies in the record (which a store writes before it knows its version, and which a
/// release before scopes wrote with `session_id`).
fn decode(scope: &ContextScope, row: &Row) -> PgResult<TaskContext> {
    let mut context: TaskContext = wire::decode(row.get::<_, &[u8]>(1))?;
    context.scope = scope.clone();
    context.version = to_u64(row.get(0));
    Ok(context)
}

/// Takes the scope's head lock for the rest of the transaction, so stores of the scope wait
/// and later statements see every version they committed; whether the scope has a head.
pub(crate) async fn lock_head(tx: &impl Sql, key: &str) -> PgResult<bool> {
    Ok(tx.opt(LOCK_HEAD, &[&key]).await?.is_some())
}

/// Removes the scope's versions below `oldest`, under its head lock; how many.
pub(crate) async fn trim(tx: &impl Sql, key: &str, oldest: i64) -> PgResult<u64> {
    tx.exec(TRIM, &[&key, &oldest]).await
}

impl PostgresBackend {
    pub(crate) async fn get_context_op(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> PgResult<Option<TaskContext>> {
        validate_get(&scope, version)?;
        let key = scope.key();
        let client = self.client().await?;
        let row = match version {
            None => client.opt(CURRENT, &[&key]).await?,
            Some(version) => client.opt(AT, &[&key, &to_i64(version)]).await?,
        };
        row.map(|row| decode(&scope, &row)).transpose()
    }

    pub(crate) async fn list_context_versions_op(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> PgResult<Vec<TaskContext>> {
        validate_list(&scope, limit)?;
        let before = before.map_or(i64::MAX, to_i64);
        let limit = to_i64(limit as u64);
        let client = self.client().await?;
        let rows = client.rows(BELOW, &[&scope.key(), &before, &limit]).await?;
        rows.iter().map(|row| decode(&scope, row)).collect()
    }

    pub(crate) async fn store_context_op(
        &self,
        scope: ContextScope,
        value: Value,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> PgResult<TaskContext> {
        validate_store(&scope, &value, keep_versions)?;
        let key = scope.key();
        // The version column is authoritative; the record's copy is filled in on read.
        let mut context = TaskContext {
            scope,
            value,
            version: 0,
            updated_at: time::now(),
        };
        let record = wire::encode(&context)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let head = match expected {
            ExpectedVersion::Any => tx.opt(STORE_ANY, &[&key]).await?,
            ExpectedVersion::Absent => tx.opt(STORE_ABSENT, &[&key]).await?,
            ExpectedVersion::Exactly(version) => match i64::try_from(version) {
                Ok(version) => tx.opt(STORE_EXACTLY, &[&key, &version]).await?,
                Err(_) => None,
            },
        };
        let Some(head) = head else {
            let current = tx.opt(HEAD, &[&key]).await?.map(|row| to_u64(row.get(0)));
            // The expectation failed when the statement ran; report it with the version
            // seen now (which another writer may have moved on since).
            return Err(match expected.next_version(&context.scope, current) {
                Err(conflict) => conflict,
                Ok(_) => StorageError::conflict(format!(
                    "task context of {} changed concurrently",
                    context.scope
                )),
            }
            .into());
        };
        let version = to_u64(head.get(0));
        let oldest = to_i64(oldest_kept(version, keep_versions));
        tx.exec(PUT_VERSION, &[&key, &to_i64(version), &oldest, &record])
            .await?;
        tx.commit().await?;
        context.version = version;
        Ok(context)
    }

    pub(crate) async fn delete_context_op(&self, scope: ContextScope) -> PgResult<bool> {
        scope.validate()?;
        let key = scope.key();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The head first: its lock keeps writers of the scope out until the versions are
        // gone too, and the versions' statement then sees every version they committed.
        let existed = tx.exec(DELETE_HEAD, &[&key]).await? > 0;
        tx.exec(DELETE_VERSIONS, &[&vec![key]]).await?;
        tx.commit().await?;
        Ok(existed)
    }

    pub(crate) async fn import_task_context_op(&self, context: TaskContext) -> PgResult<bool> {
        validate_import(&context)?;
        let record = wire::encode(&context)?;
        let key = context.scope.key();
        let version = to_i64(context.version);
        // An import trims nothing: every version from 1 stays.
        let oldest = 1_i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if tx.opt(IMPORT_HEAD, &[&key, &version]).await?.is_none() {
            // The current version is this one or newer: nothing to store.
            return Ok(false);
        }
        tx.exec(PUT_VERSION, &[&key, &version, &oldest, &record])
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn list_context_scopes_op(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> PgResult<Vec<ContextScope>> {
        validate_limit("context scope limit", limit)?;
        if let Some(after) = &after {
            after.validate()?;
        }
        // Keys are never empty, so "" sorts before every one of them.
        let after = after.map(|scope| scope.key()).unwrap_or_default();
        let limit = to_i64(limit as u64);
        let client = self.client().await?;
        let rows = client.rows(SCOPES, &[&after, &limit]).await?;
        rows.iter()
            .map(|row| {
                let key: &str = row.get(0);
                // A key this release cannot parse is corrupt data, not bad input.
                ContextScope::from_key(key).map_err(|err| {
                    StorageError::serialization(format!(
                        "stored task context scope {key:?} is unreadable: {}",
                        err.message()
                    ))
                    .into()
                })
            })
            .collect()
    }
}
