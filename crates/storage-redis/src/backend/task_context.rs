//! Task contexts by scope, with their kept versions.
//!
//! A scope's versions live in two keys of one slot (a session's in the session's slot, so
//! deleting or cleaning up the session removes them in its delete script): a zset of the
//! version numbers and a hash of each version's time and value. Every store, import and
//! delete is one script on that slot, which checks the expected version, writes the new
//! one and trims those below `oldest_kept` together, so no reader sees more versions than
//! kept or a gap. Reads are scripts too, so a version is never read half-trimmed. A
//! session's context written by a release before scopes (one hash, `ctx`) reads as the
//! scope's current version until the next store or import moves it into the new keys.

use async_trait::async_trait;
use deadpool_redis::redis::Value;
use serde_json::Value as Json;
use storage_core::carried::admit;
use storage_core::task_context::{validate_get, validate_import, validate_list, validate_store};
use storage_core::validate::validate_limit;
use storage_core::{
    time, ContextScope, ExpectedVersion, Result, StorageError, TaskContext, TaskContextStore,
};

use super::{corrupt, op, parse_micros, ttl_ms, RedisBackend};
use crate::error::unexpected_reply;
use crate::pool::from_value;

/// Keys asked for per `SCAN` round trip when listing scopes.
const SCAN_COUNT: usize = 1_000;

/// One version as a context script returns it: number, updated µs, value JSON.
fn decode(scope: &ContextScope, version: &str, updated: &str, value: &str) -> Result<TaskContext> {
    Ok(TaskContext {
        scope: scope.clone(),
        value: serde_json::from_str(value)?,
        version: parse_version(version)?,
        updated_at: parse_micros(updated, "task context time")?,
    })
}

fn parse_version(version: &str) -> Result<u64> {
    version.parse().map_err(|_| corrupt("task context version"))
}

/// The flat `version, updated, value, ...` reply of a context script, decoded.
fn decode_all(scope: &ContextScope, reply: Value) -> Result<Vec<TaskContext>> {
    let parts: Vec<String> = from_value(reply, "task context versions")?;
    if parts.len() % 3 != 0 {
        return Err(unexpected_reply("task context versions not in triples"));
    }
    parts
        .chunks_exact(3)
        .map(|part| decode(scope, &part[0], &part[1], &part[2]))
        .collect()
}

#[async_trait]
impl TaskContextStore for RedisBackend {
    async fn get_context(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> Result<Option<TaskContext>> {
        async {
            validate_get(&scope, version)?;
            let keys = self.keys.context(&scope);
            let version = version.map(|v| v.to_string()).unwrap_or_default();
            let reply: Value = self
                .client
                .eval(
                    &self.scripts.get_context,
                    &keys.script_keys(),
                    &[version.as_bytes()],
                )
                .await?;
            if reply == Value::Nil {
                return Ok(None);
            }
            Ok(decode_all(&scope, reply)?.pop())
        }
        .await
        .map_err(op("get_context"))
    }

    async fn list_context_versions(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TaskContext>> {
        async {
            validate_list(&scope, limit)?;
            if before.is_some_and(|before| before <= 1) {
                return Ok(Vec::new());
            }
            let keys = self.keys.context(&scope);
            let before = before.map(|v| v.to_string()).unwrap_or_default();
            let limit = limit.to_string();
            let reply: Value = self
                .client
                .eval(
                    &self.scripts.list_context_versions,
                    &keys.script_keys(),
                    &[before.as_bytes(), limit.as_bytes()],
                )
                .await?;
            decode_all(&scope, reply)
        }
        .await
        .map_err(op("list_context_versions"))
    }

    async fn store_context(
        &self,
        scope: ContextScope,
        value: Json,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> Result<TaskContext> {
        let value = admit("store_context", value)?;
        async {
            validate_store(&scope, &value, keep_versions)?;
            let keys = self.keys.context(&scope);
            let ttl = ttl_ms(self.config.task_context_ttl_secs);
            let (mode, expected_version) = match expected {
                ExpectedVersion::Any => ("any", String::new()),
                ExpectedVersion::Absent => ("absent", String::new()),
                ExpectedVersion::Exactly(version) => ("exact", version.to_string()),
            };
            let now = time::now();
            let micros = time::to_micros(now).to_string();
            let encoded = serde_json::to_string(&value)?;
            let keep = keep_versions.to_string();
            let (stored, version): (i64, String) = self
                .client
                .eval(
                    &self.scripts.store_context,
                    &keys.script_keys(),
                    &[
                        ttl.as_bytes(),
                        mode.as_bytes(),
                        expected_version.as_bytes(),
                        micros.as_bytes(),
                        encoded.as_bytes(),
                        keep.as_bytes(),
                    ],
                )
                .await?;
            if stored == 2 {
                return Err(StorageError::invalid_input(format!(
                    "task context of {scope} is at version {version}, past which Redis holds \
                     no version number exactly"
                )));
            }
            if stored == 0 {
                let current = (!version.is_empty())
                    .then(|| parse_version(&version))
                    .transpose()?;
                // Reports the conflict in the shared wording.
                expected.next_version(&scope, current)?;
                return Err(unexpected_reply(
                    "task context store refused without a conflict",
                ));
            }
            Ok(TaskContext {
                scope: scope.clone(),
                value,
                version: parse_version(&version)?,
                updated_at: now,
            })
        }
        .await
        .map_err(op("store_context"))
    }

    async fn delete_context(&self, scope: ContextScope) -> Result<bool> {
        async {
            scope.validate()?;
            let keys = self.keys.context(&scope);
            let removed: i64 = self
                .client
                .eval(&self.scripts.delete_context, &keys.script_keys(), &[])
                .await?;
            Ok(removed == 1)
        }
        .await
        .map_err(op("delete_context"))
    }

    async fn retain_context_versions(&self, retention: storage_core::Retention) -> Result<u64> {
        self.retain_context_versions_op(retention).await
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        async {
            validate_import(&context)?;
            let keys = self.keys.context(&context.scope);
            let ttl = ttl_ms(self.config.task_context_ttl_secs);
            let version = context.version.to_string();
            let micros = time::to_micros(context.updated_at).to_string();
            let value = serde_json::to_string(&context.value)?;
            let stored: i64 = self
                .client
                .eval(
                    &self.scripts.import_context,
                    &keys.script_keys(),
                    &[
                        ttl.as_bytes(),
                        version.as_bytes(),
                        micros.as_bytes(),
                        value.as_bytes(),
                    ],
                )
                .await?;
            Ok(stored == 1)
        }
        .await
        .map_err(op("import_task_context"))
    }

    /// Walks the keyspace with `SCAN` (on a cluster, every master), as the other
    /// enumerations for migration do: a scope has a context exactly when its versions key
    /// (or an old release's context hash) exists, so there is no separate index to keep
    /// exact across slots. Each page walks the whole keyspace; meant for migrations.
    async fn list_context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        async {
            validate_limit("context scope limit", limit)?;
            let after = after.map(|scope| scope.key());
            let mut scopes = std::collections::BTreeMap::new();
            let pattern = self.keys.context_scan_pattern();
            for key in self.client.scan_keys(&pattern, SCAN_COUNT).await? {
                let Some(scope) = self.keys.context_scope_in_key(&key) else {
                    continue;
                };
                let name = scope.key();
                if after.as_ref().is_none_or(|after| name > *after) {
                    scopes.insert(name, scope);
                    if scopes.len() > limit {
                        scopes.pop_last();
                    }
                }
            }
            Ok(scopes.into_values().collect())
        }
        .await
        .map_err(op("list_context_scopes"))
    }
}
