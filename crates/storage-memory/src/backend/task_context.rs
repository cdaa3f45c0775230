use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use serde_json::Value;
use storage_core::carried::admit;
use storage_core::task_context::validate_import;
use storage_core::validate::validate_id;
use storage_core::{time, ExpectedVersion, Result, TaskContext, TaskContextStore};

use super::MemoryBackend;

#[async_trait]
impl TaskContextStore for MemoryBackend {
    async fn list_task_context_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.op("list_task_context_ids", |data| {
            storage_core::validate::validate_limit("task context id limit", limit)?;
            let mut ids: Vec<String> = data
                .contexts
                .iter()
                .filter(|entry| after.is_none_or(|after| entry.key().as_str() > after))
                .map(|entry| entry.key().clone())
                .collect();
            ids.sort_unstable();
            ids.truncate(limit);
            Ok(ids)
        })
    }

    async fn get_task_context(&self, session_id: &str) -> Result<Option<TaskContext>> {
        self.op("get_task_context", |data| {
            validate_id("session id", session_id)?;
            Ok(data.contexts.get(session_id).map(|context| context.clone()))
        })
    }

    async fn store_task_context(
        &self,
        session_id: &str,
        value: Value,
        expected: ExpectedVersion,
    ) -> Result<TaskContext> {
        let value = admit("store_task_context", value)?;
        self.op("store_task_context", |data| {
            storage_core::task_context::validate_store(session_id, &value)?;
            // The entry lock makes check and store one step.
            let entry = data.contexts.entry(session_id.to_owned());
            let current = match &entry {
                Entry::Occupied(stored) => Some(stored.get().version),
                Entry::Vacant(_) => None,
            };
            let version = expected.next_version(session_id, current)?;
            let context = TaskContext {
                session_id: session_id.to_owned(),
                value,
                version,
                updated_at: time::now(),
            };
            entry.insert(context.clone());
            Ok(context)
        })
    }

    async fn delete_task_context(&self, session_id: &str) -> Result<bool> {
        self.op("delete_task_context", |data| {
            validate_id("session id", session_id)?;
            Ok(data.contexts.remove(session_id).is_some())
        })
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        self.op("import_task_context", |data| {
            validate_import(&context)?;
            match data.contexts.entry(context.session_id.clone()) {
                Entry::Occupied(stored) if stored.get().version >= context.version => Ok(false),
                entry => {
                    entry.insert(context);
                    Ok(true)
                }
            }
        })
    }
}
