use std::collections::BTreeMap;

use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use serde_json::Value;
use storage_core::carried::admit;
use storage_core::task_context::{
    oldest_kept, validate_get, validate_import, validate_list, validate_store,
};
use storage_core::{
    time, ContextScope, ExpectedVersion, Result, Retention, TaskContext, TaskContextStore,
};

use super::MemoryBackend;

#[async_trait]
impl TaskContextStore for MemoryBackend {
    async fn get_context(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> Result<Option<TaskContext>> {
        self.op("get_context", |data| {
            validate_get(&scope, version)?;
            let Some(versions) = data.contexts.get(&scope) else {
                return Ok(None);
            };
            Ok(match version {
                None => versions.values().next_back().cloned(),
                Some(version) => versions.get(&version).cloned(),
            })
        })
    }

    async fn list_context_versions(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TaskContext>> {
        self.op("list_context_versions", |data| {
            validate_list(&scope, limit)?;
            let Some(versions) = data.contexts.get(&scope) else {
                return Ok(Vec::new());
            };
            let below = before.unwrap_or(u64::MAX);
            Ok(versions
                .range(..below)
                .rev()
                .take(limit)
                .map(|(_, context)| context.clone())
                .collect())
        })
    }

    async fn store_context(
        &self,
        scope: ContextScope,
        value: Value,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> Result<TaskContext> {
        let value = admit("store_context", value)?;
        self.op("store_context", |data| {
            validate_store(&scope, &value, keep_versions)?;
            // The entry lock makes check, store and trim one step; a refused store leaves
            // no empty history behind.
            let entry = data.contexts.entry(scope.clone());
            let current = match &entry {
                Entry::Occupied(versions) => versions.get().keys().next_back().copied(),
                Entry::Vacant(_) => None,
            };
            let version = expected.next_version(&scope, current)?;
            let context = TaskContext {
                scope,
                value,
                version,
                updated_at: time::now(),
            };
            let mut versions = entry.or_default();
            versions.insert(version, context.clone());
            trim(&mut versions, version, keep_versions);
            Ok(context)
        })
    }

    async fn retain_context_versions(&self, retention: Retention) -> Result<u64> {
        self.op("retain_context_versions", |data| {
            retention.check()?;
            if retention.is_unbounded() {
                return Ok(0);
            }
            // One entry lock per scope, as a store's own trim.
            Ok(data
                .contexts
                .iter_mut()
                .map(|mut versions| {
                    let newest = versions.keys().next_back().copied().unwrap_or(0);
                    let expired = retention.expired_numbered_prefix(
                        newest,
                        versions.len(),
                        versions
                            .values()
                            .map(|context| (context.version, context.updated_at)),
                    );
                    let Some(&oldest_kept) = versions.keys().nth(expired) else {
                        return 0;
                    };
                    *versions = versions.split_off(&oldest_kept);
                    expired as u64
                })
                .sum())
        })
    }

    async fn delete_context(&self, scope: ContextScope) -> Result<bool> {
        self.op("delete_context", |data| {
            scope.validate()?;
            Ok(data
                .contexts
                .remove(&scope)
                .is_some_and(|(_, versions)| !versions.is_empty()))
        })
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        self.op("import_task_context", |data| {
            validate_import(&context)?;
            let entry = data.contexts.entry(context.scope.clone());
            if let Entry::Occupied(versions) = &entry {
                if versions
                    .get()
                    .keys()
                    .next_back()
                    .is_some_and(|&current| current >= context.version)
                {
                    return Ok(false);
                }
            }
            entry.or_default().insert(context.version, context);
            Ok(true)
        })
    }

    async fn list_context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        self.op("list_context_scopes", |data| {
            storage_core::validate::validate_limit("context scope limit", limit)?;
            let after = after.map(|scope| scope.key());
            let mut scopes: Vec<(String, ContextScope)> = data
                .contexts
                .iter()
                .filter(|entry| !entry.value().is_empty())
                .map(|entry| (entry.key().key(), entry.key().clone()))
                .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
                .collect();
            scopes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Ok(scopes
                .into_iter()
                .take(limit)
                .map(|(_, scope)| scope)
                .collect())
        })
    }
}

/// Drops the versions a store of `version` keeping `keep_versions` trims.
fn trim(versions: &mut BTreeMap<u64, TaskContext>, version: u64, keep_versions: u32) {
    *versions = versions.split_off(&oldest_kept(version, keep_versions));
}
